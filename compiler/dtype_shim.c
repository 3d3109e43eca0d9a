/* dtype_shim.c — TEMPORARY weak stand-ins for the dtype helpers of vm/dtype.h
 * until branch `io` (which owns vm/dtype.c) is merged; delete on merge. */
#include "dtype.h"

static const char *const names[] = {
#define X(name, str, size) str,
    CR_DTYPE_LIST(X)
#undef X
};
static const unsigned sizes[] = {
#define X(name, str, size) size,
    CR_DTYPE_LIST(X)
#undef X
};

__attribute__((weak)) const char *cr_dtype_name(cr_dtype t)
{ return t < CR_DTYPE_COUNT ? names[t] : NULL; }
__attribute__((weak)) unsigned cr_dtype_size(cr_dtype t)
{ return t < CR_DTYPE_COUNT ? sizes[t] : 0; }
__attribute__((weak)) bool cr_dtype_is_float(cr_dtype t)
{ return t == CR_DTYPE_F16 || t == CR_DTYPE_BF16 || t == CR_DTYPE_F32 || t == CR_DTYPE_F64 ||
         t == CR_DTYPE_F8_E4M3 || t == CR_DTYPE_F8_E5M2; }
__attribute__((weak)) cr_dtype cr_dtype_promote(cr_dtype a, cr_dtype b)
{
    if (a == b) return a;
    if ((a == CR_DTYPE_BF16 && b == CR_DTYPE_F16) || (a == CR_DTYPE_F16 && b == CR_DTYPE_BF16))
        return CR_DTYPE_F32;
    return sizes[a] >= sizes[b] ? a : b;
}
__attribute__((weak)) bool cr_dtype_parse_torch(const char *s, cr_dtype *out)
{
    if (!strncmp(s, "torch.", 6)) s += 6;
    static const struct { const char *n; cr_dtype t; } m[] = {
        {"bfloat16", CR_DTYPE_BF16}, {"float16", CR_DTYPE_F16}, {"float32", CR_DTYPE_F32},
        {"float64", CR_DTYPE_F64}, {"int64", CR_DTYPE_I64}, {"bool", CR_DTYPE_BOOL}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (!strcmp(s, m[i].n)) { *out = m[i].t; return true; }
    return false;
}
__attribute__((weak)) const char *cr_dtype_torch_name(cr_dtype t)
{
    switch (t) {
    case CR_DTYPE_BF16: return "bfloat16"; case CR_DTYPE_F16: return "float16";
    case CR_DTYPE_F32: return "float32"; case CR_DTYPE_F64: return "float64";
    case CR_DTYPE_I64: return "int64"; case CR_DTYPE_BOOL: return "bool";
    default: return NULL;
    }
}
__attribute__((weak)) float cr_f16_to_f32(uint16_t h)
{
    uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) { float f = (float)m * (1.0f / 16777216.0f); return s ? -f : f; }
    if (e == 31) return cr_bits_f32(s | 0x7f800000u | (m << 13));
    return cr_bits_f32(s | ((e + 112) << 23) | (m << 13));
}
__attribute__((weak)) uint16_t cr_f32_to_f16(float f)
{
    uint32_t u = cr_f32_bits(f), s = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(s | 0x7e00u);
    if (a >= 0x477ff000u) return (uint16_t)(s | 0x7c00u);          /* rounds to inf */
    if (a < 0x38800000u) {                                          /* subnormal */
        float v = cr_bits_f32(a) * 16777216.0f;                     /* exact scaling */
        uint32_t m = (uint32_t)v; float r = v - (float)m;
        if (r > 0.5f || (r == 0.5f && (m & 1))) m++;
        return (uint16_t)(s | m);
    }
    uint32_t e = (a >> 23) - 112, m = a & 0x7fffff;
    uint32_t h = (e << 10) | (m >> 13), rem = m & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(s | h);
}
__attribute__((weak)) bool cr_dtype_parse(const char *s, cr_dtype *out)
{
    for (int i = 0; i < CR_DTYPE_COUNT; i++)
        if (!strcmp(s, names[i])) { *out = (cr_dtype)i; return true; }
    return false;
}
