/* cmaes.c — CMA-ES (core/cmaes.h). Equation numbers are those of Hansen's
 * tutorial (arXiv:1604.00772), Appendix A. */
#include <math.h>
#include <string.h>

#include "cmaes.h"
#include "hash.h"

/* ---- the generator: xoshiro256** seeded by splitmix64 -------------------- */

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t s[4])
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* uniform in (0, 1): 53 random bits, never 0 (log below) */
static double uniform(uint64_t s[4]) { return ((double)(next_u64(s) >> 11) + 0.5) * 0x1p-53; }

/* one standard normal (Box-Muller, the cosine half; one draw per pair of
 * uniforms keeps the state a plain generator with nothing cached) */
static double normal(uint64_t s[4])
{
    double u = uniform(s), v = uniform(s);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* ---- eigen decomposition of the symmetric C: cyclic Jacobi ---------------- */

/* B (columns) and D (sqrt of the eigenvalues, clamped at 0) of C (n x n,
 * row-major). n is a few dozen at most here: O(n^3) sweeps are cheap. */
static void eigen(int n, const double *C, double *B, double *D, double *A)
{
    memcpy(A, C, sizeof *A * (size_t)n * (size_t)n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) B[i * n + j] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) off += A[i * n + j] * A[i * n + j];
        if (off < 1e-30) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = A[p * n + q];
                if (apq == 0) continue;
                double theta = (A[q * n + q] - A[p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) {   /* A = J^T A J */
                    double akp = A[k * n + p], akq = A[k * n + q];
                    A[k * n + p] = c * akp - s * akq;
                    A[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) {
                    double apk = A[p * n + k], aqk = A[q * n + k];
                    A[p * n + k] = c * apk - s * aqk;
                    A[q * n + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < n; k++) {   /* B = B J */
                    double bkp = B[k * n + p], bkq = B[k * n + q];
                    B[k * n + p] = c * bkp - s * bkq;
                    B[k * n + q] = s * bkp + c * bkq;
                }
            }
    }
    for (int i = 0; i < n; i++) D[i] = A[i * n + i] > 0 ? sqrt(A[i * n + i]) : 0;
}

/* ---- the algorithm ------------------------------------------------------- */

cr_status cr_cmaes_init(cr_cmaes *c, const cr_allocator *alloc, int n, const double *x0, double sigma0, int lambda,
                        uint64_t seed, cr_error *err)
{
    memset(c, 0, sizeof *c);
    if (n < 1 || !(sigma0 > 0)) return cr_fail(err, CR_ERR_ARG, "CMA-ES needs at least one gene and a step > 0");
    if (!lambda) lambda = 4 + (int)floor(3 * log((double)n));
    if (lambda < 2) return cr_fail(err, CR_ERR_ARG, "CMA-ES needs a population of at least 2");
    c->alloc = alloc;
    c->n = n;
    c->lambda = lambda;
    c->mu = lambda / 2;
    size_t nn = (size_t)n * (size_t)n;
    c->w = cr_calloc(alloc, (size_t)c->mu, sizeof *c->w);
    c->mean = cr_calloc(alloc, (size_t)n, sizeof *c->mean);
    c->C = cr_calloc(alloc, nn, sizeof *c->C);
    c->B = cr_calloc(alloc, nn, sizeof *c->B);
    c->D = cr_calloc(alloc, (size_t)n, sizeof *c->D);
    c->pc = cr_calloc(alloc, (size_t)n, sizeof *c->pc);
    c->ps = cr_calloc(alloc, (size_t)n, sizeof *c->ps);
    c->x = cr_calloc(alloc, (size_t)lambda * (size_t)n, sizeof *c->x);
    c->y = cr_calloc(alloc, (size_t)lambda * (size_t)n, sizeof *c->y);
    c->order = cr_calloc(alloc, (size_t)lambda, sizeof *c->order);
    c->tmp = cr_calloc(alloc, nn > (size_t)n ? nn : (size_t)n, sizeof *c->tmp);
    if (!c->w || !c->mean || !c->C || !c->B || !c->D || !c->pc || !c->ps || !c->x || !c->y || !c->order || !c->tmp) {
        cr_cmaes_free(c);
        return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    }
    /* weights (A.1 with mu = lambda/2): ln(mu + 1/2) - ln(i), normalised */
    double sw = 0, sw2 = 0;
    for (int i = 0; i < c->mu; i++) sw += c->w[i] = log(c->mu + 0.5) - log(i + 1.0);
    for (int i = 0; i < c->mu; i++) { c->w[i] /= sw; sw2 += c->w[i] * c->w[i]; }
    c->mueff = 1 / sw2;
    double N = n, me = c->mueff;
    c->cc = (4 + me / N) / (N + 4 + 2 * me / N);
    c->cs = (me + 2) / (N + me + 5);
    c->c1 = 2 / ((N + 1.3) * (N + 1.3) + me);
    double cmu = 2 * (me - 2 + 1 / me) / ((N + 2) * (N + 2) + me);
    c->cmu = cmu < 1 - c->c1 ? cmu : 1 - c->c1;
    double dd = sqrt((me - 1) / (N + 1)) - 1;
    c->damps = 1 + 2 * (dd > 0 ? dd : 0) + c->cs;
    c->chin = sqrt(N) * (1 - 1 / (4 * N) + 1 / (21 * N * N));
    memcpy(c->mean, x0, sizeof *c->mean * (size_t)n);
    c->sigma = sigma0;
    for (int i = 0; i < n; i++) { c->C[i * n + i] = 1; c->B[i * n + i] = 1; c->D[i] = 1; }
    /* splitmix64 expands the seed into the four words */
    uint64_t z = seed;
    for (int i = 0; i < 4; i++) c->rng[i] = cr_splitmix64(&z);
    return CR_OK;
}

void cr_cmaes_free(cr_cmaes *c)
{
    if (!c->alloc) return;
    void *ps[] = { c->w, c->mean, c->C, c->B, c->D, c->pc, c->ps, c->x, c->y, c->order, c->tmp };
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) cr_free(c->alloc, ps[i]);
    memset(c, 0, sizeof *c);
}

void cr_cmaes_ask(cr_cmaes *c)
{
    int n = c->n;
    for (int k = 0; k < c->lambda; k++) {
        double *y = c->y + (size_t)k * n, *x = c->x + (size_t)k * n;
        for (int i = 0; i < n; i++) c->tmp[i] = c->D[i] * normal(c->rng);   /* D z */
        for (int i = 0; i < n; i++) {                                       /* y = B D z (A.2) */
            double s = 0;
            for (int j = 0; j < n; j++) s += c->B[i * n + j] * c->tmp[j];
            y[i] = s;
            x[i] = c->mean[i] + c->sigma * s;
        }
    }
}

void cr_cmaes_tell(cr_cmaes *c, const double *fitness)
{
    int n = c->n, lambda = c->lambda;
    /* rank by fitness; ties by index, so the order is fully determined */
    for (int k = 0; k < lambda; k++) c->order[k] = k;
    for (int i = 1; i < lambda; i++)
        for (int j = i; j > 0; j--) {
            int a = c->order[j - 1], b = c->order[j];
            if (fitness[b] < fitness[a] || (fitness[b] == fitness[a] && b < a)) {
                c->order[j - 1] = b;
                c->order[j] = a;
            } else break;
        }
    /* y_w = sum w_i y_{i:lambda}; mean += sigma y_w (A.3) */
    double *yw = c->tmp;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int r = 0; r < c->mu; r++) s += c->w[r] * c->y[(size_t)c->order[r] * n + i];
        yw[i] = s;
        c->mean[i] += c->sigma * s;
    }
    /* C^(-1/2) y_w = B D^-1 B^T y_w, for the step-size path (A.4) */
    double ps_norm2 = 0;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < n; j++) {
            double bt = 0;   /* (B^T y_w)_j / D_j */
            for (int k = 0; k < n; k++) bt += c->B[k * n + j] * yw[k];
            s += c->B[i * n + j] * (c->D[j] > 0 ? bt / c->D[j] : 0);
        }
        c->ps[i] = (1 - c->cs) * c->ps[i] + sqrt(c->cs * (2 - c->cs) * c->mueff) * s;
        ps_norm2 += c->ps[i] * c->ps[i];
    }
    double ps_norm = sqrt(ps_norm2);
    double denom = sqrt(1 - pow(1 - c->cs, 2.0 * (double)(c->generation + 1)));
    int hsig = ps_norm / denom / c->chin < 1.4 + 2.0 / (n + 1);
    for (int i = 0; i < n; i++)   /* A.5 */
        c->pc[i] = (1 - c->cc) * c->pc[i] + hsig * sqrt(c->cc * (2 - c->cc) * c->mueff) * yw[i];
    /* covariance: rank-one and rank-mu updates (A.6) */
    double dh = (1 - hsig) * c->cc * (2 - c->cc);
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double rmu = 0;
            for (int r = 0; r < c->mu; r++)
                rmu += c->w[r] * c->y[(size_t)c->order[r] * n + i] * c->y[(size_t)c->order[r] * n + j];
            double v = (1 - c->c1 - c->cmu) * c->C[i * n + j] + c->c1 * (c->pc[i] * c->pc[j] + dh * c->C[i * n + j]) +
                       c->cmu * rmu;
            c->C[i * n + j] = c->C[j * n + i] = v;
        }
    /* step size (A.7) */
    c->sigma *= exp((c->cs / c->damps) * (ps_norm / c->chin - 1));
    c->generation++;
    double *A = cr_malloc(c->alloc, sizeof *A * (size_t)n * (size_t)n);
    if (A) {   /* out of memory: keep the old B and D, a valid (stale) basis */
        eigen(n, c->C, c->B, c->D, A);
        cr_free(c->alloc, A);
    }
}

size_t cr_cmaes_state_len(const cr_cmaes *c) { return (size_t)c->n * (size_t)c->n + 3u * (size_t)c->n + 2 + 8; }

void cr_cmaes_state_get(const cr_cmaes *c, double *o)
{
    int n = c->n;
    for (int i = 0; i < n; i++) *o++ = c->mean[i];
    *o++ = c->sigma;
    for (int i = 0; i < n * n; i++) *o++ = c->C[i];
    for (int i = 0; i < n; i++) *o++ = c->pc[i];
    for (int i = 0; i < n; i++) *o++ = c->ps[i];
    *o++ = (double)c->generation;
    for (int i = 0; i < 4; i++) {   /* 32-bit halves: exact in a double */
        *o++ = (double)(c->rng[i] >> 32);
        *o++ = (double)(c->rng[i] & 0xffffffffu);
    }
}

void cr_cmaes_state_set(cr_cmaes *c, const double *in)
{
    int n = c->n;
    for (int i = 0; i < n; i++) c->mean[i] = *in++;
    c->sigma = *in++;
    for (int i = 0; i < n * n; i++) c->C[i] = *in++;
    for (int i = 0; i < n; i++) c->pc[i] = *in++;
    for (int i = 0; i < n; i++) c->ps[i] = *in++;
    c->generation = (long)*in++;
    for (int i = 0; i < 4; i++) {
        uint64_t hi = (uint64_t)*in++, lo = (uint64_t)*in++;
        c->rng[i] = hi << 32 | lo;
    }
    double *A = cr_malloc(c->alloc, sizeof *A * (size_t)n * (size_t)n);
    if (A) {
        eigen(n, c->C, c->B, c->D, A);
        cr_free(c->alloc, A);
    }
}
