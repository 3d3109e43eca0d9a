/* dtype.c — dtype names, sizes and parsing, torch's float promotion, and the
 * scalar reference conversions between f32 and the narrow float formats
 * (f16 with subnormals and round-to-nearest-even, f8 E4M3/E5M2 decoding).
 * The bf16 conversions are inline in dtype.h because every kernel uses them.
 */
#include "dtype.h"

#include <math.h>

static const char *const dtype_names[CR_DTYPE_COUNT] = {
#define X(name, str, size) str,
    CR_DTYPE_LIST(X)
#undef X
};

static const unsigned char dtype_sizes[CR_DTYPE_COUNT] = {
#define X(name, str, size) size,
    CR_DTYPE_LIST(X)
#undef X
};

const char *cr_dtype_name(cr_dtype t)
{
    return (unsigned)t < CR_DTYPE_COUNT ? dtype_names[t] : NULL;
}

unsigned cr_dtype_size(cr_dtype t)
{
    return (unsigned)t < CR_DTYPE_COUNT ? dtype_sizes[t] : 0;
}

bool cr_dtype_parse(const char *s, cr_dtype *out)
{
    if (!s) return false;
    for (int i = 0; i < CR_DTYPE_COUNT; i++) {
        if (!strcmp(s, dtype_names[i])) {
            *out = (cr_dtype)i;
            return true;
        }
    }
    return false;
}

/* torch names: the dtypes mergekit's `dtype:` accepts (bfloat16, float16,
 * float32, int64) plus the other spellings torch prints, so that a donor
 * config.json's torch_dtype can be read back. */
static const struct { const char *name; cr_dtype t; } torch_names[] = {
    {"bfloat16", CR_DTYPE_BF16}, {"float16", CR_DTYPE_F16}, {"half", CR_DTYPE_F16},
    {"float32", CR_DTYPE_F32},   {"float", CR_DTYPE_F32},   {"float64", CR_DTYPE_F64},
    {"double", CR_DTYPE_F64},    {"int64", CR_DTYPE_I64},   {"long", CR_DTYPE_I64},
    {"int32", CR_DTYPE_I32},     {"int", CR_DTYPE_I32},     {"int16", CR_DTYPE_I16},
    {"short", CR_DTYPE_I16},     {"int8", CR_DTYPE_I8},     {"uint8", CR_DTYPE_U8},
    {"uint16", CR_DTYPE_U16},    {"uint32", CR_DTYPE_U32},  {"uint64", CR_DTYPE_U64},
    {"bool", CR_DTYPE_BOOL},     {"float8_e4m3fn", CR_DTYPE_F8_E4M3},
    {"float8_e5m2", CR_DTYPE_F8_E5M2},
};

bool cr_dtype_parse_torch(const char *s, cr_dtype *out)
{
    if (!s) return false;
    if (!strncmp(s, "torch.", 6)) s += 6;
    for (size_t i = 0; i < sizeof torch_names / sizeof torch_names[0]; i++) {
        if (!strcmp(s, torch_names[i].name)) {
            *out = torch_names[i].t;
            return true;
        }
    }
    return false;
}

const char *cr_dtype_torch_name(cr_dtype t)
{
    /* the first entry for each dtype in torch_names is torch's own name */
    for (size_t i = 0; i < sizeof torch_names / sizeof torch_names[0]; i++)
        if (torch_names[i].t == t) return torch_names[i].name;
    return NULL;
}

bool cr_dtype_is_float(cr_dtype t)
{
    switch (t) {
    case CR_DTYPE_F16: case CR_DTYPE_BF16: case CR_DTYPE_F32: case CR_DTYPE_F64:
    case CR_DTYPE_F8_E4M3: case CR_DTYPE_F8_E5M2:
        return true;
    default:
        return false;
    }
}

cr_dtype cr_dtype_promote(cr_dtype a, cr_dtype b)
{
    if (a == b) return a;
    if ((a == CR_DTYPE_BF16 && b == CR_DTYPE_F16) || (a == CR_DTYPE_F16 && b == CR_DTYPE_BF16))
        return CR_DTYPE_F32;
    /* f8 formats promote like the narrow 16-bit ones: to the other operand
     * if it is wider, to f32 between the two f8 kinds (as torch does). */
    unsigned sa = cr_dtype_size(a), sb = cr_dtype_size(b);
    if (sa == sb) return CR_DTYPE_F32;
    return sa > sb ? a : b;
}

/* ---- f8 (decode only) -------------------------------------------------- */

float cr_f8e4m3_to_f32(uint8_t v)
{
    /* float8_e4m3fn: bias 7, no infinities, S.1111.111 is NaN, max 448 */
    unsigned exp = (v >> 3) & 0xfu, mant = v & 7u;
    float r;
    if (exp == 0xf && mant == 7) r = NAN;
    else if (exp == 0) r = ldexpf((float)mant, -9);            /* mant/8 * 2^-6 */
    else r = ldexpf((float)(8u + mant), (int)exp - 10);        /* (1+m/8) 2^(e-7) */
    return (v & 0x80u) ? -r : r;
}

float cr_f8e5m2_to_f32(uint8_t v)
{
    /* float8_e5m2 is the top byte of an IEEE f16 */
    return cr_f16_to_f32((uint16_t)((uint16_t)v << 8));
}

/* ---- bulk conversion --------------------------------------------------- */

void cr_convert_to_f32(cr_dtype src_type, const void *src, float *dst, size_t n)
{
    const unsigned char *s = src;
    switch (src_type) {
    case CR_DTYPE_F32:
        memmove(dst, src, n * 4);
        break;
    case CR_DTYPE_F64:
        for (size_t i = 0; i < n; i++) { double d; memcpy(&d, s + 8 * i, 8); dst[i] = (float)d; }
        break;
    case CR_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, s + 2 * i, 2); dst[i] = cr_bf16_to_f32(h); }
        break;
    case CR_DTYPE_F16:
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, s + 2 * i, 2); dst[i] = cr_f16_to_f32(h); }
        break;
    case CR_DTYPE_F8_E4M3:
        for (size_t i = 0; i < n; i++) dst[i] = cr_f8e4m3_to_f32(s[i]);
        break;
    case CR_DTYPE_F8_E5M2:
        for (size_t i = 0; i < n; i++) dst[i] = cr_f8e5m2_to_f32(s[i]);
        break;
    default:
        /* integer tensors are never converted to f32 by the VM; callers
         * check cr_dtype_is_float first. Zero-fill so a bug reads as zeros,
         * not as uninitialised memory. */
        memset(dst, 0, n * sizeof *dst);
        break;
    }
}

void cr_convert_from_f32(cr_dtype dst_type, const float *src, void *dst, size_t n)
{
    unsigned char *d = dst;
    switch (dst_type) {
    case CR_DTYPE_F32:
        memmove(dst, src, n * 4);
        break;
    case CR_DTYPE_F64:
        for (size_t i = 0; i < n; i++) { double v = src[i]; memcpy(d + 8 * i, &v, 8); }
        break;
    case CR_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) { uint16_t h = cr_f32_to_bf16(src[i]); memcpy(d + 2 * i, &h, 2); }
        break;
    case CR_DTYPE_F16:
        for (size_t i = 0; i < n; i++) { uint16_t h = cr_f32_to_f16(src[i]); memcpy(d + 2 * i, &h, 2); }
        break;
    default:
        /* storing to f8 or integers is not offered (see dtype.h) */
        memset(dst, 0, n * cr_dtype_size(dst_type));
        break;
    }
}
