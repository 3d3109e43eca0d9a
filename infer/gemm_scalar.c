/* gemm_scalar.c — the reference table of gemm.h, and the ISA choice.
 *
 * Eight lanes emulated with a struct so the order of every sum is the one
 * the SIMD tables use with VW = 8 (AVX2); products and sums are rounded
 * separately (no FMA), so this table runs on any CPU. */
#include "gemm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

#define TARGET
#define ISA_NAME "scalar"
#define TABLE cr_gemm_scalar
#define VW 8
#define NT_MR 4
#define PANEL_MR 4
#define PANEL_NV 2
#define NT_NR 4

typedef struct { float l[VW]; } VF;

static inline VF vzero(void) { VF v; for (int i = 0; i < VW; i++) v.l[i] = 0; return v; }
static inline VF vload(const float *p) { VF v; for (int i = 0; i < VW; i++) v.l[i] = p[i]; return v; }
static inline VF vbcast(float f) { VF v; for (int i = 0; i < VW; i++) v.l[i] = f; return v; }
static inline void vstore(float *p, VF v) { for (int i = 0; i < VW; i++) p[i] = v.l[i]; }
static inline VF vfma(VF a, VF b, VF c)
{
    for (int i = 0; i < VW; i++) {
        float p = a.l[i] * b.l[i];   /* two roundings: a separate statement is never contracted */
        c.l[i] = c.l[i] + p;
    }
    return c;
}
static inline float sfma(float a, float b, float c) { float p = a * b; return c + p; }
#define LANEWISE(NAME, EXPR) \
    static inline VF NAME(VF a, VF b) { VF v; for (int i = 0; i < VW; i++) { float x = a.l[i], y = b.l[i]; v.l[i] = EXPR; } return v; }
LANEWISE(vadd, x + y)
LANEWISE(vsub, x - y)
LANEWISE(vmul, x * y)
LANEWISE(vdiv, x / y)
LANEWISE(vmax, x > y ? x : y)
LANEWISE(vmin, x < y ? x : y)
static inline VF vfloor(VF a) { for (int i = 0; i < VW; i++) a.l[i] = floorf(a.l[i]); return a; }
static inline VF vpow2i(VF n)
{
    for (int i = 0; i < VW; i++) {
        int32_t bits = ((int32_t)n.l[i] + 127) << 23;
        memcpy(&n.l[i], &bits, 4);
    }
    return n;
}
/* the AVX2 tree: (lo128 + hi128), then (0+2, 1+3), then (0 + 1) */
static inline float vhsum(VF v)
{
    float q0 = v.l[0] + v.l[4], q1 = v.l[1] + v.l[5], q2 = v.l[2] + v.l[6], q3 = v.l[3] + v.l[7];
    return (q0 + q2) + (q1 + q3);
}

#include "gemm_body.h"

void cr_gemm_pack_w(const cr_gemm_kernels *k, cr_dtype t, const void *src, size_t n, size_t K, float *dst,
                    float *tmp)
{
    size_t pw = k->pw;
    cr_convert_to_f32(t, src, tmp, n * K);      /* the rows are contiguous in the shard */
    for (size_t i = 0; i < K; i++) {
        float *d = dst + i * pw;
        size_t j = 0;
        for (; j < n; j++) d[j] = tmp[j * K + i];
        for (; j < pw; j++) d[j] = 0.0f;
    }
}

void cr_gemm_pack_x(const cr_gemm_kernels *k, const float *x, size_t ldx, size_t rows, size_t K, float *dst)
{
    size_t mr = k->mr;
    for (size_t i = 0; i < K; i++) {
        float *d = dst + i * mr;
        size_t r = 0;
        for (; r < rows; r++) d[r] = x[r * ldx + i];
        for (; r < mr; r++) d[r] = 0.0f;
    }
}

cr_status cr_gemm_pick(const char *want, const cr_gemm_kernels **out, cr_error *err)
{
    cr_cpu_features f = cr_cpu_detect();
    const cr_gemm_kernels *best = f.avx512 ? &cr_gemm_avx512 : f.avx2 ? &cr_gemm_avx2 : &cr_gemm_scalar;
    if (!want || !*want) want = getenv("CRUCIBLE_ISA");
    if (!want || !*want || !strcmp(want, "auto")) { *out = best; return CR_OK; }
    const cr_gemm_kernels *k = !strcmp(want, "scalar") ? &cr_gemm_scalar
                             : !strcmp(want, "avx2")   ? &cr_gemm_avx2
                             : !strcmp(want, "avx512") ? &cr_gemm_avx512 : NULL;
    if (!k) return cr_fail(err, CR_ERR_ARG, "unknown ISA '%s' (scalar, avx2, avx512 or auto)", want);
    if ((k == &cr_gemm_avx2 && !f.avx2) || (k == &cr_gemm_avx512 && !f.avx512))
        return cr_fail(err, CR_ERR_UNSUPPORTED, "ISA %s requested but this CPU does not support it", want);
    *out = k;
    return CR_OK;
}
