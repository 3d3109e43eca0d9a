/* gemm.h — the forward pass's f32 matrix kernels, one table per ISA
 * (scalar reference, AVX2+FMA, AVX-512F), chosen once per model.
 *
 * Two shapes cover a decoder layer:
 *   nt: y[t, n] = Σ_k x[t, k] · w[n, k]   (a Linear, x·Wᵀ; attention's Q·Kᵀ)
 *   nn: y[t, n] = Σ_u a[t, u] · b[u, n]   (attention's P·V)
 * Both operands are f32; the forward pass converts a block of bf16/f16
 * weight rows to f32 once per call (gemm.c) and reuses it for every token.
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
} cr_gemm_kernels;

extern const cr_gemm_kernels cr_gemm_scalar;
extern const cr_gemm_kernels cr_gemm_avx2;
extern const cr_gemm_kernels cr_gemm_avx512;

/* The table for `want` ("scalar", "avx2", "avx512", "auto"; NULL or ""
 * reads $CRUCIBLE_ISA, as the VM does), else the best this CPU runs.
 * Errors: CR_ERR_ARG for an unknown name, CR_ERR_UNSUPPORTED when the CPU
 * lacks the ISA asked for. *out is static. */
cr_status cr_gemm_pick(const char *want, const cr_gemm_kernels **out, cr_error *err);

#endif
