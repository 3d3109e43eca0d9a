/* npmath.c — NumPy's float32 sin and cos, bit for bit.
 *
 * mergekit's SLERP calls np.sin on float32 NumPy scalars. NumPy does not
 * call libm for these: its SIMD loop (loops_trigonometric, the same for a
 * 0-d array, which is one lane of a partial vector) reduces x by π/2 with
 * a three-constant Cody-Waite step and evaluates minimax polynomials on
 * [-π/4, π/4], every multiply-add fused. Its results are within ~1 ulp but
 * not correctly rounded, and a SLERP coefficient 1 ulp off moves every
 * element where the two terms cancel. This file performs the same float
 * operations in the same order (fmaf where NumPy fuses), so the results are
 * identical. Outside NumPy's reduction range (|x| > 117435.992 for sin,
 * 71476.0625 for cos) NumPy calls the C library, and so does this file.
 */
#include "npmath.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static float sine_poly(float x, float x2)
{
    float r = fmaf(0x1.7d3bbcp-19f, x2, -0x1.a06bbap-13f);
    r = fmaf(r, x2, 0x1.11119ap-07f);
    r = fmaf(r, x2, -0x1.555556p-03f);
    r = fmaf(r, x2, 0.0f);
    return fmaf(r, x, x);
}

static float cosine_poly(float x2)
{
    float r = fmaf(0x1.98e616p-16f, x2, -0x1.6c06dcp-10f);
    r = fmaf(r, x2, 0x1.55553cp-05f);
    r = fmaf(r, x2, -0x1.000000p-01f);
    return fmaf(r, x2, 0x1.000000p+00f);
}

static float np_sincos(float x, int cosine)
{
    if (isnan(x)) return NAN;
    if (!(fabsf(x) <= (cosine ? 71476.0625f : 117435.992f))) return cosine ? cosf(x) : sinf(x);
    /* quadrant = rint(x * 2/π): fused multiply-add of 1.5 * 2^23, then
     * subtract it (the volatile keeps a compiler from folding the pair) */
    volatile float magic = 0x1.800000p+23f;
    float q = fmaf(x, 0x1.45f306p-1f, magic);
    q = q - magic;
    float r = fmaf(q, -0x1.921fb0p+00f, x);
    r = fmaf(q, -0x1.5110b4p-22f, r);
    r = fmaf(q, -0x1.846988p-48f, r);
    float r2 = r * r;
    int iq = (int)q + cosine;
    float v = (iq & 1) == 0 ? sine_poly(r, r2) : cosine_poly(r2);
    return (iq & 2) ? 0.0f - v : v;
}

float cr_np_sinf(float x) { return np_sincos(x, 0); }
float cr_np_cosf(float x) { return np_sincos(x, 1); }

/* np.arccos of a float32: NumPy (without AVX-512's SVML) calls the C
 * library's acosf. On glibc up to at least 2.36 that is the classic Sun
 * fdlibm float algorithm (sysdeps/ieee754/flt-32/e_acosf.c), about 1 ulp
 * and not correctly rounded; these are its operations, in float, unfused
 * (checked equal to glibc 2.36's acosf on every 7th float in [-1, 1]). A
 * glibc with a correctly rounded acosf would differ in θ's last bit. */
static float acos_poly_ratio(float z)
{
    float p = z * (0x1.555556p-3f + z * (-0x1.4d6120p-2f + z * (0x1.9c1550p-3f +
              z * (-0x1.48228cp-5f + z * (0x1.9efe08p-11f + z * 0x1.23de10p-15f)))));
    float q = 1.0f + z * (-0x1.33a272p+1f + z * (0x1.02ae5ap+1f + z * (-0x1.6066c2p-1f +
              z * 0x1.3b8c5cp-4f)));
    return p / q;
}

float cr_glibc_acosf(float x)
{
    const float pi = 0x1.921fb4p+1f, pio2_hi = 0x1.921fb4p+0f, pio2_lo = 0x1.4442d0p-24f;
    float ax = fabsf(x);
    if (ax == 1.0f) return x > 0 ? 0.0f : pi + 2.0f * pio2_lo;
    if (!(ax < 1.0f)) return (x - x) / (x - x);
    if (ax < 0.5f) {
        if (ax <= 0x1p-26f) return pio2_hi + pio2_lo;
        float z = x * x;
        float r = acos_poly_ratio(z);
        return pio2_hi - (x - (pio2_lo - x * r));
    }
    if (x < 0) {
        float z = (1.0f + x) * 0.5f;
        float r = acos_poly_ratio(z);
        float s = sqrtf(z);
        float w = r * s - pio2_lo;
        return pi - 2.0f * (s + w);
    }
    float z = (1.0f - x) * 0.5f;
    float s = sqrtf(z);
    uint32_t u;
    memcpy(&u, &s, 4);
    u &= 0xfffff000u;
    float df;
    memcpy(&df, &u, 4);
    float c = (z - df * df) / (s + df);
    float r = acos_poly_ratio(z);
    float w = r * s + c;
    return 2.0f * (df + w);
}
