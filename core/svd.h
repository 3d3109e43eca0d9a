/* svd.h — a truncated singular value decomposition of a float32 matrix,
 * for `crucible extract-lora` (spec/lora.md, "Extracting").
 *
 * Randomized subspace iteration (Halko, Martinsson, Tropp 2011, algorithm
 * 4.4) in float64: a seeded test matrix, power iterations with
 * re-orthonormalisation, then the exact SVD of the small projected matrix
 * by one-sided Jacobi. When the sampled subspace is the whole row or column
 * space (rank + oversampling >= min(m, n)) the result is the exact SVD up
 * to rounding. Deterministic: the same bits for any thread count (each
 * output element is one sum in a fixed order, whichever thread makes it).
 */
#ifndef CR_SVD_H
#define CR_SVD_H

#include "base.h"

struct cr_pool;

typedef struct cr_svd_options {
    uint32_t oversample;        /* extra sampled directions; 0: max(10, k / 2) */
    uint32_t power_iters;       /* 0: the default (4) */
    uint64_t seed;              /* of the test matrix */
} cr_svd_options;

/* The k leading singular triplets of the m x n row-major matrix `a`
 * (1 <= k <= min(m, n)): s[k] descending and non-negative, u (m x k,
 * row-major, orthonormal columns where s > 0) and vt (k x n, row-major,
 * orthonormal rows where s > 0), all caller-allocated. A direction whose
 * singular value is 0 may come back as zeros in u and vt. `pool` may be
 * NULL (one thread); opt may be NULL (defaults). Errors: CR_ERR_ARG (bad
 * sizes), CR_ERR_NOMEM. */
cr_status cr_svd_truncated(const cr_allocator *alloc, struct cr_pool *pool, const float *a, uint64_t m,
                           uint64_t n, uint32_t k, const cr_svd_options *opt, double *s, double *u,
                           double *vt, cr_error *err);

#endif
