/* scalar.c — the reference kernel table (kernels.h) and ISA selection.
 * Every SIMD table is tested against this one, bit for bit. */
#include "kernels.h"
#include "cpu.h"
#include "rng.h"
#include "scalar_ops.h"

#include <stdlib.h>
#include <string.h>

static void s_unary(cr_op op, float *d, const float *a, size_t n)
{
    switch (op) {
    case CR_OP_MOV:  if (d != a) memmove(d, a, n * sizeof *d); break;
    case CR_OP_NEG:  for (size_t i = 0; i < n; i++) d[i] = el_neg(a[i]); break;
    case CR_OP_ABS:  for (size_t i = 0; i < n; i++) d[i] = el_abs(a[i]); break;
    case CR_OP_SIGN: for (size_t i = 0; i < n; i++) d[i] = el_sign(a[i]); break;
    case CR_OP_SQRT: for (size_t i = 0; i < n; i++) d[i] = sqrtf(a[i]); break;
    /* exp and log correctly rounded (libm in double, rounded once), as at
     * top level: the C library's expf/logf are not (glibc's logf misses on
     * ~1 % of floats near 1, 9 % of arcee_fusion's p/q ratios, where torch's
     * float32 log, MKL's, misses on 1 %), and differ between libraries */
    case CR_OP_EXP:  for (size_t i = 0; i < n; i++) d[i] = (float)exp((double)a[i]); break;
    case CR_OP_LOG:  for (size_t i = 0; i < n; i++) d[i] = (float)log((double)a[i]); break;
    case CR_OP_NOT:  for (size_t i = 0; i < n; i++) d[i] = a[i] == 0 ? 1.0f : 0.0f; break;
    default: abort();   /* the interpreter only passes unary ops: a bug */
    }
}

static void s_binary(cr_op op, float *d, const float *a, const float *b, size_t n)
{
#define LOOP(expr) for (size_t i = 0; i < n; i++) { float x = a[i], y = b[i]; d[i] = (expr); } break
    switch (op) {
    case CR_OP_ADD: LOOP(x + y);
    case CR_OP_SUB: LOOP(x - y);
    case CR_OP_MUL: LOOP(x * y);
    case CR_OP_DIV: LOOP(x / y);
    case CR_OP_MIN: LOOP(el_min(x, y));
    case CR_OP_MAX: LOOP(el_max(x, y));
    case CR_OP_GT:  LOOP(x > y ? 1.0f : 0.0f);
    case CR_OP_GE:  LOOP(x >= y ? 1.0f : 0.0f);
    case CR_OP_LT:  LOOP(x < y ? 1.0f : 0.0f);
    case CR_OP_LE:  LOOP(x <= y ? 1.0f : 0.0f);
    case CR_OP_EQ:  LOOP(x == y ? 1.0f : 0.0f);
    case CR_OP_NE:  LOOP(x != y ? 1.0f : 0.0f);
    case CR_OP_AND: LOOP((x != 0 && y != 0) ? 1.0f : 0.0f);
    case CR_OP_OR:  LOOP((x != 0 || y != 0) ? 1.0f : 0.0f);
    default: abort();
    }
#undef LOOP
}

static void s_where(float *d, const float *c, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) d[i] = c[i] != 0 ? a[i] : b[i];
}

static void s_fma(float *d, const float *a, const float *b, const float *c, size_t n)
{
    for (size_t i = 0; i < n; i++) d[i] = el_fma(a[i], b[i], c[i]);
}

static void s_round(cr_dtype t, float *x, size_t n)
{
    if (t == CR_DTYPE_BF16) for (size_t i = 0; i < n; i++) x[i] = el_round_bf16(x[i]);
    else if (t == CR_DTYPE_F16) for (size_t i = 0; i < n; i++) x[i] = el_round_f16(x[i]);
}

static void s_unary_bf16(cr_op op, float *d, const float *a, size_t n)
{ s_unary(op, d, a, n); s_round(CR_DTYPE_BF16, d, n); }
static void s_binary_bf16(cr_op op, float *d, const float *a, const float *b, size_t n)
{ s_binary(op, d, a, b, n); s_round(CR_DTYPE_BF16, d, n); }
static void s_where_bf16(float *d, const float *c, const float *a, const float *b, size_t n)
{ s_where(d, c, a, b, n); s_round(CR_DTYPE_BF16, d, n); }

static void s_load(cr_dtype t, const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    switch (t) {
    case CR_DTYPE_F32: memcpy(dst, s, n * 4); break;
    case CR_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, s + 2 * i, 2); dst[i] = cr_bits_f32((uint32_t)h << 16); }
        break;
    case CR_DTYPE_F16:
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, s + 2 * i, 2); dst[i] = cr_f16_to_f32(h); }
        break;
    case CR_DTYPE_F64:
        for (size_t i = 0; i < n; i++) { double v; memcpy(&v, s + 8 * i, 8); dst[i] = (float)v; }
        break;
    case CR_DTYPE_F8_E4M3: for (size_t i = 0; i < n; i++) dst[i] = el_f8e4m3_to_f32(s[i]); break;
    case CR_DTYPE_F8_E5M2: for (size_t i = 0; i < n; i++) dst[i] = el_f8e5m2_to_f32(s[i]); break;
    default: abort();   /* the verifier admits only the dtypes above */
    }
}

static void s_store(cr_dtype t, const float *src, void *dst, size_t n)
{
    uint8_t *d = dst;
    switch (t) {
    case CR_DTYPE_F32: memcpy(d, src, n * 4); break;
    case CR_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) { uint16_t h = (uint16_t)(el_bf16_round_bits(cr_f32_bits(src[i])) >> 16); memcpy(d + 2 * i, &h, 2); }
        break;
    case CR_DTYPE_F16:
        for (size_t i = 0; i < n; i++) { uint16_t h = cr_f32_to_f16(src[i]); memcpy(d + 2 * i, &h, 2); }
        break;
    case CR_DTYPE_F64:
        for (size_t i = 0; i < n; i++) { double v = src[i]; memcpy(d + 8 * i, &v, 8); }
        break;
    default: abort();
    }
}

static void s_sum8(const float *a, size_t n, double lanes[8])
{
    for (size_t i = 0; i < n; i++) lanes[i & 7] += (double)a[i];
}

/* branch-free: the offset is always written, the count advances by the test */
static unsigned s_stoppers(const uint32_t *w, unsigned n, uint32_t pivot_key, uint32_t tie_key, bool le, uint16_t *ofs)
{
    unsigned cnt = 0;
    if (le)
        for (unsigned i = 0; i < n; i++) {
            uint32_t key = w[i] & 0x80000000u ? tie_key : w[i];
            ofs[cnt] = (uint16_t)i;
            cnt += key <= pivot_key;
        }
    else
        for (unsigned i = 0; i < n; i++) {
            uint32_t key = w[i] & 0x80000000u ? tie_key : w[i];
            ofs[cnt] = (uint16_t)i;
            cnt += key >= pivot_key;
        }
    return cnt;
}

const cr_kernels cr_kernels_scalar = {
    "scalar", s_unary, s_binary, s_where, s_fma, s_round, s_load, s_store, s_sum8, s_unary_bf16, s_binary_bf16, s_where_bf16,
    cr_rng_uniform, s_stoppers
};

bool cr_kernels_supported(const cr_kernels *k)
{
    if (k == &cr_kernels_scalar) return true;
    cr_cpu_features f = cr_cpu_detect();
    if (k == &cr_kernels_avx2) return f.avx2;
    if (k == &cr_kernels_avx512) return f.avx512;
    return false;
}

cr_status cr_kernels_pick(const char *want, const cr_kernels **out, cr_error *err)
{
    static const cr_kernels *const all[] = { &cr_kernels_avx512, &cr_kernels_avx2, &cr_kernels_scalar };
    if (!want || !*want) want = getenv("CRUCIBLE_ISA");
    if (want && *want && strcmp(want, "auto")) {
        for (size_t i = 0; i < CR_ARRAY_LEN(all); i++) {
            if (strcmp(want, all[i]->name)) continue;
            if (!cr_kernels_supported(all[i]))
                return cr_fail(err, CR_ERR_UNSUPPORTED, "ISA %s requested but this CPU does not support it", want);
            *out = all[i];
            return CR_OK;
        }
        return cr_fail(err, CR_ERR_ARG, "unknown ISA '%s' (scalar, avx2, avx512 or auto)", want);
    }
    for (size_t i = 0; i < CR_ARRAY_LEN(all); i++)
        if (cr_kernels_supported(all[i])) { *out = all[i]; return CR_OK; }
    *out = &cr_kernels_scalar;
    return CR_OK;
}
