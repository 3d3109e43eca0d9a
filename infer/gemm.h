/* gemm.h — the forward pass's f32 matrix kernels, one table per ISA
 * (scalar reference, AVX2+FMA, AVX-512F), chosen once per model.
 *
 * Two shapes cover a decoder layer:
 *   nt: y[t, n] = Σ_k x[t, k] · w[n, k]   (a Linear, x·Wᵀ; attention's Q·Kᵀ)
 *   nn: y[t, n] = Σ_u a[t, u] · b[u, n]   (attention's P·V)
 * Both operands are f32; the forward pass converts a block of bf16/f16
 * weight rows to f32 once per call (gemm.c) and reuses it for every token.
 *
 * The Linear layers use a third shape, panel: weights and tokens are packed
 * k-major (cr_gemm_pack_w, cr_gemm_pack_x) so that each k step is a broadcast of x[t, k]
 * times a few weight vectors — no horizontal sums; each y element is the
 * FMA chain over k = 0..K-1 (multiply-then-add in the scalar table).
 *
 * Summation order: nt accumulates k in VW lanes (lane = k mod VW, in
 * increasing k, one FMA per step; the scalar table multiplies then adds),
 * folds the lanes in one fixed tree and adds the tail k ≥ K/VW·VW in
 * order; nn accumulates u in increasing order. Each output element is
 * computed the same way whichever tile or thread computes it, so results
 * never depend on the thread count or on T. Across ISAs they differ by
 * float reassociation and FMA contraction only (tests/unit/test_gemm.c
 * bounds it; perplexity stays within 1e-4 of transformers on every ISA).
 */
#ifndef CR_INFER_GEMM_H
#define CR_INFER_GEMM_H

#include "base.h"
#include "dtype.h"

typedef struct cr_gemm_kernels {
    const char *name;   /* "scalar", "avx2", "avx512" */
    /* y[t*ldy + n] = Σ_{k<K} x[t*ldx + k] · w[n*ldw + k], t < T, n < N */
    void (*nt)(const float *x, size_t ldx, const float *w, size_t ldw, float *y, size_t ldy, size_t T, size_t N,
               size_t K);
    /* y[t*ldy + n] = Σ_{u<U} a[t*lda + u] · b[u*ldb + n], t < T, n < N */
    void (*nn)(const float *a, size_t lda, const float *b, size_t ldb, float *y, size_t ldy, size_t T, size_t N,
               size_t U);
    /* panel width (weight rows of one packed panel) and tile height
     * (token rows of one packed tile) */
    size_t pw, mr;
    /* one tile: y[t*ldy + n] = Σ_{k<K} xp[k*mr + t] · wp[k*pw + n] for
     * t < rows <= mr, n < nc <= pw: token rows packed by cr_gemm_pack_x
     * against weight rows packed by cr_gemm_pack_w */
    void (*panel)(const float *xp, const float *wp, float *y, size_t ldy, size_t rows, size_t nc, size_t K);
    /* y[i] = exp(x[i] - mx) for i < n (y may be x, or NULL to store
     * nothing); returns Σ exp(x[i] - mx). A polynomial exp within 2 ulp
     * (gemm_body.h), summed in a fixed order per ISA. */
    double (*exp_sum)(float *y, const float *x, float mx, size_t n);
    /* g[i] = g[i] / (1 + exp(-g[i])) · u[i] (SiLU(gate) · up), i < n */
    void (*silu_mul)(float *g, const float *u, size_t n);
} cr_gemm_kernels;

/* Pack weight rows [0, n) (n <= k->pw; dtype t, K columns, src = the first
 * row) as f32 k-major: dst[i*pw + j] = W[j][i], rows j >= n zero. dst holds
 * K*pw floats; tmp is scratch of K*pw floats. */
void cr_gemm_pack_w(const cr_gemm_kernels *k, cr_dtype t, const void *src, size_t n, size_t K, float *dst,
                    float *tmp);
/* Pack token rows [0, rows) (rows <= k->mr) of x (row stride ldx) k-major:
 * dst[i*mr + r] = x[r][i], rows r >= rows zero. dst holds K*mr floats. */
void cr_gemm_pack_x(const cr_gemm_kernels *k, const float *x, size_t ldx, size_t rows, size_t K, float *dst);

extern const cr_gemm_kernels cr_gemm_scalar;
extern const cr_gemm_kernels cr_gemm_avx2;
extern const cr_gemm_kernels cr_gemm_avx512;

/* The table for `want` ("scalar", "avx2", "avx512", "auto"; NULL or ""
 * reads $CRUCIBLE_ISA, as the VM does), else the best this CPU runs.
 * Errors: CR_ERR_ARG for an unknown name, CR_ERR_UNSUPPORTED when the CPU
 * lacks the ISA asked for. *out is static. */
cr_status cr_gemm_pick(const char *want, const cr_gemm_kernels **out, cr_error *err);

#endif
