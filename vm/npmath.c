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
