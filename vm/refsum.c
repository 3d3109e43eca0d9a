/* refsum.c — float32 reductions in the exact order of NumPy and OpenBLAS.
 *
 * mergekit's SLERP runs in NumPy float32: np.sum(v0 * v1) and
 * np.linalg.norm(v) (BLAS sdot). Their results differ from a wide
 * (f64) accumulation in the last bit, and a last-bit change of a SLERP
 * coefficient moves every element where the two terms cancel by many ulps.
 * So the VM reproduces these two summation orders exactly; the kernel ops
 * RSUM_NP and RSSQ_BLAS (ops.def) gather the values of the whole domain and
 * call these once, so the result does not depend on chunking or threads.
 *
 * Neither function is ever contracted into other arithmetic: every product
 * or sum is a separate statement, and the fused multiply-add of the BLAS
 * kernel is an explicit fmaf().
 */
#include "refsum.h"

#include <math.h>

#define NP_BLOCK 128   /* NumPy's PW_BLOCKSIZE */

static float np_pairwise(const float *a, uint64_t n)
{
    if (n < 8) {
        float res = 0.0f;
        for (uint64_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= NP_BLOCK) {
        float r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        uint64_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + (uint64_t)j];
        float lo = (r[0] + r[1]) + (r[2] + r[3]);
        float hi = (r[4] + r[5]) + (r[6] + r[7]);
        float res = lo + hi;
        for (; i < n; i++) res += a[i];
        return res;
    }
    uint64_t n2 = n / 2;
    n2 -= n2 % 8;
    float x = np_pairwise(a, n2);
    float y = np_pairwise(a + n2, n - n2);
    return x + y;
}

float cr_refsum_numpy(const float *x, uint64_t n)
{
    float s = np_pairwise(x, n);
    return 0.0f + s;   /* the reduction starts from the identity */
}

float cr_refsum_blas_ssq(const float *x, uint64_t n)
{
    uint64_t n1 = n & ~(uint64_t)31;
    float acc[32] = {0};
    for (uint64_t i = 0; i < n1; i += 32)
        for (int l = 0; l < 32; l++) acc[l] = fmaf(x[i + (uint64_t)l], x[i + (uint64_t)l], acc[l]);
    /* four 8-lane registers: fold the upper halves, then the registers
     * pairwise, then two horizontal adds (sdot_microk_haswell-2.c) */
    float h[4][4], c[4];
    for (int r = 0; r < 4; r++)
        for (int l = 0; l < 4; l++) h[r][l] = acc[r * 8 + l] + acc[r * 8 + l + 4];
    for (int l = 0; l < 4; l++) {
        float a = h[0][l] + h[1][l];
        float b = h[2][l] + h[3][l];
        c[l] = a + b;
    }
    float d0 = c[0] + c[1], d1 = c[2] + c[3];
    float mydot = d0 + d1;
    double dot = 0.0;
    for (uint64_t i = n1; i < n; i++) {
        float p = x[i] * x[i];
        dot += (double)p;
    }
    double t = dot + (double)mydot;
    return (float)t;
}

/* ---- torch (SumKernel.cpp) ------------------------------------------------ */

#define T_LEVELS 4
#define T_ILP 4
#define T_MAXW 8

static unsigned ceil_log2(uint64_t x)
{
    unsigned r = 0;
    while (((uint64_t)1 << r) < x) r++;
    return r;
}

/* multi_row_sum + row_sum over nv "vectors" of w floats: vector v is
 * x[v*w .. v*w+w). Leaves the w-lane result in out. */
static void torch_row_sum(const float *x, uint64_t nv, int w, float *out)
{
    uint64_t size = nv / T_ILP;
    unsigned lp = ceil_log2(size) / T_LEVELS;
    if (lp < 4) lp = 4;
    uint64_t step = (uint64_t)1 << lp, mask = step - 1;
    float acc[T_LEVELS][T_ILP][T_MAXW] = {{{0}}};
    uint64_t i = 0;
    while (i + step <= size) {
        for (uint64_t j = 0; j < step; j++, i++)
            for (int k = 0; k < T_ILP; k++)
                for (int l = 0; l < w; l++) acc[0][k][l] += x[(i * T_ILP + (uint64_t)k) * (uint64_t)w + (uint64_t)l];
        for (int j = 1; j < T_LEVELS; j++) {
            for (int k = 0; k < T_ILP; k++)
                for (int l = 0; l < w; l++) { acc[j][k][l] += acc[j - 1][k][l]; acc[j - 1][k][l] = 0.0f; }
            if ((i & (mask << ((unsigned)j * lp))) != 0) break;
        }
    }
    for (; i < size; i++)
        for (int k = 0; k < T_ILP; k++)
            for (int l = 0; l < w; l++) acc[0][k][l] += x[(i * T_ILP + (uint64_t)k) * (uint64_t)w + (uint64_t)l];
    for (int j = 1; j < T_LEVELS; j++)
        for (int k = 0; k < T_ILP; k++)
            for (int l = 0; l < w; l++) acc[0][k][l] += acc[j][k][l];
    for (uint64_t v = size * T_ILP; v < nv; v++)
        for (int l = 0; l < w; l++) acc[0][0][l] += x[v * (uint64_t)w + (uint64_t)l];
    for (int k = 1; k < T_ILP; k++)
        for (int l = 0; l < w; l++) acc[0][0][l] += acc[0][k][l];
    for (int l = 0; l < w; l++) out[l] = acc[0][0][l];
}

float cr_refsum_torch(float *x, uint64_t n, bool reduced)
{
    float lanes[T_MAXW];
    /* bf16/f16 load 16 values a vector and add its two float halves */
    uint64_t per = reduced ? 2 * T_MAXW : T_MAXW;
    if (n < per) {
        torch_row_sum(x, n, 1, lanes);
        return 0.0f + lanes[0];
    }
    uint64_t nv = n / per;
    if (reduced)   /* in place: write index 8i+l never passes read index 16i+l */
        for (uint64_t i = 0; i < nv; i++)
            for (uint64_t l = 0; l < T_MAXW; l++) x[i * T_MAXW + l] = x[i * per + l] + x[i * per + T_MAXW + l];
    torch_row_sum(x, nv, T_MAXW, lanes);
    float acc = 0.0f;
    for (uint64_t k = nv * per; k < n; k++) acc += x[k];
    for (int l = 0; l < T_MAXW; l++) acc += lanes[l];
    return 0.0f + acc;
}

float cr_refsum_torch_ssq(const float *x, uint64_t n)
{
    float acc[8] = {0};
    uint64_t d = 0;
    for (; d < n - (n % 8); d += 8)
        for (int l = 0; l < 8; l++) {
            float p = x[d + (uint64_t)l] * x[d + (uint64_t)l];
            acc[l] += p;
        }
    float b = acc[0];
    for (int l = 1; l < 8; l++) b += acc[l];
    for (; d < n; d++) {
        float p = x[d] * x[d];
        b += p;
    }
    return b;
}
