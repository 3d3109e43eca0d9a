/* cmaes.h — CMA-ES, the covariance matrix adaptation evolution strategy
 * (Hansen, "The CMA Evolution Strategy: A Tutorial", arXiv:1604.00772,
 * the (mu/mu_w, lambda) algorithm of its Appendix A with its default
 * parameters), minimising a function of n real genes. Used by
 * `crucible evolve` (spec/search.md).
 *
 * Written here rather than embedded: ~250 lines of plain C with its own
 * seeded generator (xoshiro256** and Box-Muller normals) and a Jacobi
 * eigensolver, so a search is reproducible from its seed on any machine
 * with IEEE doubles and a correctly rounded sqrt (log/exp/cos come from
 * libm: the same libm gives the same search). The whole state is plain
 * numbers and can be saved and restored (cr_cmaes_state_*) for
 * checkpoint/resume.
 *
 * Use: init, then per generation ask (lambda candidates in x), evaluate,
 * tell (their fitnesses, lower is better).
 */
#ifndef CR_CMAES_H
#define CR_CMAES_H

#include "base.h"

typedef struct cr_cmaes {
    const cr_allocator *alloc;
    int n, lambda, mu;
    double *w;                  /* [mu] recombination weights, sum 1 */
    double mueff, cc, cs, c1, cmu, damps, chin;
    /* the state */
    double *mean, sigma;        /* [n] */
    double *C, *B, *D;          /* [n*n] covariance, its eigenvectors (columns), [n] sqrt eigenvalues */
    double *pc, *ps;            /* [n] evolution paths */
    long generation;
    uint64_t rng[4];
    /* scratch of one generation */
    double *x, *y;              /* [lambda*n] candidates, their steps (x = mean + sigma*y) */
    int *order;                 /* [lambda] */
    double *tmp;                /* [n] */
} cr_cmaes;

/* n genes starting at x0 with step sigma0; lambda 0: 4 + floor(3 ln n).
 * Errors: CR_ERR_ARG (n < 1, sigma0 <= 0, lambda < 2), CR_ERR_NOMEM. */
cr_status cr_cmaes_init(cr_cmaes *c, const cr_allocator *alloc, int n, const double *x0, double sigma0, int lambda,
                        uint64_t seed, cr_error *err);
void cr_cmaes_free(cr_cmaes *c);

/* Sample this generation's lambda candidates into c->x (row k = candidate k). */
void cr_cmaes_ask(cr_cmaes *c);
/* Update the distribution from the fitness of each candidate of the last ask. */
void cr_cmaes_tell(cr_cmaes *c, const double *fitness);

/* The state as numbers (mean, sigma, C, pc, ps, generation, rng) and back:
 * cr_cmaes_state_len values; restoring recomputes B and D from C. */
size_t cr_cmaes_state_len(const cr_cmaes *c);
void cr_cmaes_state_get(const cr_cmaes *c, double *out);
void cr_cmaes_state_set(cr_cmaes *c, const double *in);

#endif
