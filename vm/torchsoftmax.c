/* torchsoftmax.c — torch's CPU softmax along the last dimension, bit for bit.
 *
 * mergekit's arcee_fusion calls F.softmax(x, dim=-1). On the CPU torch runs
 * `_vec_softmax_lastdim` (aten/src/ATen/native/cpu/SoftMaxKernel.cpp): a
 * float32 row is max-reduced with `vec::reduce_all`, exponentiated with
 * Vectorized<float>::exp() (SLEEF's expf u10), sum-reduced with
 * `reduce_all` again, and multiplied by r = 1/S; a bf16/f16 row is widened
 * to float32 and takes the same steps in a variant whose scalar tail calls
 * std::exp (glibc's expf) and adds sequentially, then is rounded once. The
 * sum order (lanes, then a shuffle tree) depends on the vector width the
 * kernel was dispatched with: 8 float lanes on AVX2, 16 on AVX-512 (this
 * kernel is registered for AVX-512 too, unlike torch's sum kernels, so
 * torch 2.15 on an AVX-512 host takes 16 lanes unless
 * ATEN_CPU_CAPABILITY=avx2; the VM op uses 8, the dispatch of the golden
 * cases). This file replays those float operations in scalar code (fmaf
 * where SLEEF and glibc fuse), so the result is the same on every host and
 * ISA.
 *
 * Checked against torch 2.15.0 (tests/compat/torch_softmax.py and the
 * fixture it writes, tests/unit/test_torchsoftmax.c) and, on every float
 * in [-110, 105], against SLEEF's Sleef_expf8_u10avx2 and
 * Sleef_expf16_u10avx512f in libtorch_cpu.so and glibc 2.36's expf.
 */
#include "torchsoftmax.h"

#include <math.h>
#include <string.h>

static uint64_t f64_bits(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }
static double f64_of(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }
static float f32_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* SLEEF 3.x, src/libm/sleefsimdsp.c: xexpf, as built for AVX2 and AVX-512F
 * (vmla = fused multiply-add; vrint = round to nearest even; vldexp2 = two
 * multiplications by powers of two). Ported from SLEEF, Copyright Naoki
 * Shibata and contributors 2010 - 2025, distributed under the Boost
 * Software License, Version 1.0 (http://www.boost.org/LICENSE_1_0.txt). */
static float pow2i(int q) { return f32_of((uint32_t)(q + 0x7f) << 23); }

/* fmaf without a call where it is cheap: a*b is exact in double, so the
 * double sum rounds once, and rounding that to float is the fused result
 * unless it landed exactly on a float midpoint (or outside the normal
 * float range), where the C library's fmaf decides. A build without FMA
 * instructions calls fmaf out of line, ~4x the cost of this. */
static float fma32(float a, float b, float c)
{
    double r = (double)a * (double)b + (double)c;
    uint64_t u = f64_bits(r), e = u >> 52 & 0x7ff;
    if (r == 0 || ((u & 0x1fffffff) != 0x10000000 && e >= 1023 - 126 && e <= 1023 + 127)) return (float)r;
    return fmaf(a, b, c);
}

float cr_sleef_expf(float d)
{
    if (isnan(d)) return d + d;
    if (d < -104.0f) return 0.0f;             /* vandnot(d < -104, u) */
    if (100.0f < d) return INFINITY;          /* vsel(100 < d, inf, u) */
    /* round to nearest even: |d * log2(e)| < 2^22, so adding and
     * subtracting 1.5 * 2^23 leaves the integer (cvtps2dq's rounding) */
    float t = d * 1.442695040888963407359924681001892137426645954152985934135449406931f;
    float qf = (t + 0x1.8p23f) - 0x1.8p23f;
    int q = (int)qf;
    float s = fma32(qf, -0.693145751953125f, d);
    s = fma32(qf, -1.428606765330187045e-06f, s);
    float u = 0.000198527617612853646278381f;
    u = fma32(u, s, 0.00139304355252534151077271f);
    u = fma32(u, s, 0.00833336077630519866943359f);
    u = fma32(u, s, 0.0416664853692054748535156f);
    u = fma32(u, s, 0.166666671633720397949219f);
    u = fma32(u, s, 0.5f);
    u = 1.0f + fma32(s * s, u, s);
    u = u * pow2i(q >> 1) * pow2i(q - (q >> 1));
    return u;
}

/* glibc's expf (sysdeps/ieee754/flt-32/e_expf.c, from Arm's Optimized
 * Routines; the table and coefficients are e_exp2f_data.c's): exp(x) =
 * 2^(k/32) * 2^(r/32) with a cubic in r, in double. x86-64 glibc runs the
 * __expf_fma build on FMA hosts, where GCC fuses every multiply-add
 * (including the range reduction's two uses of InvLn2N * x). The special
 * cases (|x| >= 88, NaN) follow the C code. */
static const uint64_t exp2f_tab[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};

float cr_glibc_expf(float x)
{
    if (isnan(x)) return x + x;
    if (fabsf(x) >= 88.0f) {
        if (x == -INFINITY) return 0.0f;
        if (x == INFINITY) return x;
        if (x > 0x1.62e42ep6f) return INFINITY;
        if (x < -0x1.9fe368p6f) return 0.0f;
    }
    const double N = 32, inv_ln2_n = 0x1.71547652b82fep+0 * 32, shift = 0x1.8p+52;
    const double c0 = 0x1.c6af84b912394p-5 / N / N / N, c1 = 0x1.ebfce50fac4f3p-3 / N / N,
                 c2 = 0x1.62e42ff0c52d6p-1 / N;
    double xd = x;
    double kd = fma(inv_ln2_n, xd, shift);
    uint64_t ki = f64_bits(kd);
    kd -= shift;
    double r = fma(inv_ln2_n, xd, -kd);
    uint64_t t = exp2f_tab[ki % 32] + (ki << 47);
    double s = f64_of(t);
    double z = fma(c0, r, c1);
    double r2 = r * r;
    double y = fma(c2, r, 1.0);
    y = fma(z, r2, y);
    return (float)(y * s);
}

/* vec::maximum: NaN if either is NaN (an all-ones NaN in torch) */
static float vmax(float a, float b) { return isnan(a) || isnan(b) ? NAN : (a > b ? a : b); }

/* vec_reduce_all's shuffle tree over `lanes` accumulators: lane l takes
 * lane l ^ w for w = lanes/2, ..., 1 (permute2f128 / shuffle_f32x4, then
 * shuffle_ps 0x4E and 0xB1); lane 0 is the result. acc is overwritten. */
static float tree(float *acc, unsigned lanes, bool is_max)
{
    for (unsigned w = lanes / 2; w >= 1; w /= 2)
        for (unsigned l = 0; l < w; l++)
            acc[l] = is_max ? vmax(acc[l], acc[l + w]) : acc[l] + acc[l + w];
    return acc[0];
}

/* vec::reduce_all over a contiguous row (functional_base.h): under one
 * vector, lane 0 combined with each value in turn; else the first vector
 * is the accumulator, each later full vector is combined lane-wise, a
 * partial last vector updates only its lanes, then the tree. */
static float reduce_all(const float *x, uint64_t n, unsigned lanes, bool is_max)
{
    if (n < lanes) {
        float acc = x[0];
        for (uint64_t i = 1; i < n; i++) acc = is_max ? vmax(acc, x[i]) : acc + x[i];
        return acc;
    }
    float acc[16];
    for (unsigned l = 0; l < lanes; l++) acc[l] = x[l];
    for (uint64_t i = lanes; i < n; i++) {
        unsigned l = (unsigned)(i % lanes);
        acc[l] = is_max ? vmax(acc[l], x[i]) : acc[l] + x[i];
    }
    return tree(acc, lanes, is_max);
}

static void softmax_f32(const float *x, float *out, uint64_t n, unsigned lanes)
{
    float mx = reduce_all(x, n, lanes, true);
    for (uint64_t i = 0; i < n; i++) out[i] = cr_sleef_expf(x[i] - mx);
    float r = 1.0f / reduce_all(out, n, lanes, false);
    for (uint64_t i = 0; i < n; i++) out[i] = out[i] * r;
}

/* the reduced-float kernel: max over whole bf16 vectors (2 x lanes values,
 * both float halves into one accumulator), the tree, then std::max over
 * the rest; exp and lane sums over whole float vectors, the tree, then
 * glibc's expf and sequential adds over the rest; 1/S; products. */
static void softmax_reduced(const float *x, float *out, uint64_t n, unsigned lanes)
{
    float acc[16];
    uint64_t wide = 2 * (uint64_t)lanes, nv = n - n % wide;
    for (unsigned l = 0; l < lanes; l++) acc[l] = -INFINITY;
    for (uint64_t i = 0; i < nv; i++) acc[i % lanes] = vmax(acc[i % lanes], x[i]);
    float mx = tree(acc, lanes, true);
    for (uint64_t i = nv; i < n; i++) mx = mx < x[i] ? x[i] : mx;    /* std::max */
    for (unsigned l = 0; l < lanes; l++) acc[l] = 0.0f;
    uint64_t nf = n - n % lanes;
    for (uint64_t i = 0; i < nf; i++) {
        out[i] = cr_sleef_expf(x[i] - mx);
        acc[i % lanes] += out[i];
    }
    float sum = tree(acc, lanes, false);
    for (uint64_t i = nf; i < n; i++) {
        out[i] = cr_glibc_expf(x[i] - mx);
        sum += out[i];
    }
    float r = 1.0f / sum;
    for (uint64_t i = 0; i < n; i++) out[i] = out[i] * r;
}

void cr_torch_softmax_row(const float *x, float *out, uint64_t n, unsigned lanes, bool reduced)
{
    if (n == 0) return;
    if (lanes != CR_TORCH_LANES_AVX2) lanes = CR_TORCH_LANES_AVX512;
    if (reduced) softmax_reduced(x, out, n, lanes);
    else softmax_f32(x, out, n, lanes);
}
