/* svd.c — truncated SVD by randomized subspace iteration (svd.h).
 *
 * With l = k + oversample sampled directions (at most min(m, n)):
 *   Y = A X (X an n x l seeded test matrix), Q = orth(Y);
 *   power_iters times: Z = orth(A^T Q), Q = orth(A Z);
 *   B = Q^T A (l x n), B = G S Vt by one-sided Jacobi on B's rows;
 *   A ~ (Q G) S Vt, keeping the k largest.
 * Everything past reading A is float64, so the only float32 rounding is
 * A's own. The two products with A are the whole cost (2 m n l flops
 * each); they run on the pool, rows (A X) or column blocks (A^T Q) per
 * task, each output element summed over A's index in order, so the result
 * does not depend on the thread count. mergekit calls torch.linalg.svd in
 * float32 (the full decomposition); spec/lora.md gives the measured
 * reconstruction errors against it.
 */
#include "svd.h"
#include "hash.h"
#include "pool.h"

#include <math.h>
#include <string.h>

enum { ROWS_PER_TASK = 16, COLS_PER_TASK = 64, MAX_SWEEPS = 80, DEFAULT_POWER_ITERS = 4 };

/* ---- the two products with A, on the pool ---------------------------------- */

typedef struct prod {
    const float *a;
    uint64_t m, n;
    uint32_t l;
    const double *x;    /* A X: X n x l; A^T Q: Q m x l */
    double *y;          /* A X: m x l;   A^T Q: n x l */
} prod;

static int task_ax(void *ud, uint64_t task, unsigned thread)
{
    (void)thread;
    const prod *p = ud;
    uint64_t r1 = (task + 1) * ROWS_PER_TASK < p->m ? (task + 1) * ROWS_PER_TASK : p->m;
    for (uint64_t r = task * ROWS_PER_TASK; r < r1; r++) {
        double *y = p->y + r * p->l;
        memset(y, 0, p->l * sizeof *y);
        const float *ar = p->a + r * p->n;
        for (uint64_t j = 0; j < p->n; j++) {
            double v = ar[j];
            const double *x = p->x + j * p->l;
            for (uint32_t c = 0; c < p->l; c++) y[c] += v * x[c];
        }
    }
    return 0;
}

static int task_atq(void *ud, uint64_t task, unsigned thread)
{
    (void)thread;
    const prod *p = ud;
    uint64_t j0 = task * COLS_PER_TASK, j1 = j0 + COLS_PER_TASK < p->n ? j0 + COLS_PER_TASK : p->n;
    memset(p->y + j0 * p->l, 0, (j1 - j0) * p->l * sizeof *p->y);
    for (uint64_t r = 0; r < p->m; r++) {
        const float *ar = p->a + r * p->n;
        const double *q = p->x + r * p->l;
        for (uint64_t j = j0; j < j1; j++) {
            double v = ar[j];
            double *y = p->y + j * p->l;
            for (uint32_t c = 0; c < p->l; c++) y[c] += v * q[c];
        }
    }
    return 0;
}

static void run_tasks(cr_pool *pool, uint64_t n_tasks, cr_pool_task_fn fn, prod *p)
{
    if (pool) { cr_pool_run(pool, n_tasks, fn, p); return; }
    for (uint64_t t = 0; t < n_tasks; t++) fn(p, t, 0);
}

/* y (m x l) = A x (x n x l) */
static void mul_ax(cr_pool *pool, const float *a, uint64_t m, uint64_t n, uint32_t l, const double *x, double *y)
{
    prod p = { a, m, n, l, x, y };
    run_tasks(pool, (m + ROWS_PER_TASK - 1) / ROWS_PER_TASK, task_ax, &p);
}

/* y (n x l) = A^T q (q m x l) */
static void mul_atq(cr_pool *pool, const float *a, uint64_t m, uint64_t n, uint32_t l, const double *q, double *y)
{
    prod p = { a, m, n, l, q, y };
    run_tasks(pool, (n + COLS_PER_TASK - 1) / COLS_PER_TASK, task_atq, &p);
}

/* ---- small dense helpers --------------------------------------------------- */

static double dot(const double *x, const double *y, uint64_t n)
{
    double s = 0;
    for (uint64_t i = 0; i < n; i++) s += x[i] * y[i];
    return s;
}

/* dst (cols x rows) = src (rows x cols) transposed */
static void transpose(const double *src, uint64_t rows, uint64_t cols, double *dst)
{
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t c = 0; c < cols; c++) dst[c * rows + r] = src[r * cols + c];
}

/* Orthonormalise the l columns of the len x l row-major matrix `m` in
 * place by modified Gram-Schmidt, twice ("twice is enough", Giraud et al.
 * 2005). A column that is (numerically) in the span of the earlier ones
 * becomes zero: the matrix had rank < l, and the span is already whole. */
static void orthonormalise(double *m, uint64_t len, uint32_t l, double *scratch)
{
    transpose(m, len, l, scratch);          /* column c at scratch + c * len */
    for (uint32_t c = 0; c < l; c++) {
        double *v = scratch + (uint64_t)c * len;
        double norm0 = sqrt(dot(v, v, len));
        for (int pass = 0; pass < 2; pass++)
            for (uint32_t b = 0; b < c; b++) {
                const double *w = scratch + (uint64_t)b * len;
                double h = dot(w, v, len);
                if (h != 0) for (uint64_t i = 0; i < len; i++) v[i] -= h * w[i];
            }
        double norm = sqrt(dot(v, v, len));
        if (!(norm > 1e-12 * norm0) || !(norm0 > 0)) memset(v, 0, len * sizeof *v);
        else for (uint64_t i = 0; i < len; i++) v[i] /= norm;
    }
    transpose(scratch, l, len, m);
}

/* One-sided Jacobi (Hestenes) on the l rows (length n) of b: rotates pairs
 * of rows until all are orthogonal, accumulating the rotations in the
 * columns of g (l x l, column c at g + c * l, starting from I). */
static void jacobi_rows(double *b, uint32_t l, uint64_t n, double *g)
{
    memset(g, 0, (uint64_t)l * l * sizeof *g);
    for (uint32_t i = 0; i < l; i++) g[(uint64_t)i * l + i] = 1;
    for (int sweep = 0; sweep < MAX_SWEEPS; sweep++) {
        bool rotated = false;
        for (uint32_t i = 0; i + 1 < l; i++)
            for (uint32_t j = i + 1; j < l; j++) {
                double *bi = b + (uint64_t)i * n, *bj = b + (uint64_t)j * n;
                double alpha = dot(bi, bi, n), beta = dot(bj, bj, n), gamma = dot(bi, bj, n);
                if (!(alpha > 0) || !(beta > 0) || fabs(gamma) <= 1e-15 * sqrt(alpha) * sqrt(beta)) continue;
                rotated = true;
                double zeta = (beta - alpha) / (2 * gamma);
                double t = (zeta >= 0 ? 1.0 : -1.0) / (fabs(zeta) + sqrt(1 + zeta * zeta));
                double c = 1 / sqrt(1 + t * t), s = c * t;
                for (uint64_t x = 0; x < n; x++) {
                    double u = bi[x], v = bj[x];
                    bi[x] = c * u - s * v;
                    bj[x] = s * u + c * v;
                }
                double *gi = g + (uint64_t)i * l, *gj = g + (uint64_t)j * l;
                for (uint32_t x = 0; x < l; x++) {
                    double u = gi[x], v = gj[x];
                    gi[x] = c * u - s * v;
                    gj[x] = s * u + c * v;
                }
            }
        if (!rotated) break;
    }
}

cr_status cr_svd_truncated(const cr_allocator *alloc, cr_pool *pool, const float *a, uint64_t m, uint64_t n,
                           uint32_t k, const cr_svd_options *opt, double *s, double *u, double *vt, cr_error *err)
{
    uint64_t mn = m < n ? m : n;
    if (m == 0 || n == 0 || k == 0 || k > mn)
        return cr_fail(err, CR_ERR_ARG, "svd: rank %u of a %llu x %llu matrix", k, (unsigned long long)m,
                       (unsigned long long)n);
    cr_svd_options o = opt ? *opt : (cr_svd_options){0};
    uint64_t over = o.oversample ? o.oversample : (k / 2 > 10 ? k / 2 : 10);
    uint32_t l = (uint32_t)(k + over < mn ? k + over : mn);
    /* a whole sampled space is already exact: no power iterations */
    int iters = l == mn ? 0 : (int)(o.power_iters ? o.power_iters : DEFAULT_POWER_ITERS);

    uint64_t big = (m > n ? m : n) * (uint64_t)l;
    double *q = cr_malloc(alloc, m * (uint64_t)l * sizeof *q);       /* m x l */
    double *z = cr_malloc(alloc, n * (uint64_t)l * sizeof *z);       /* n x l */
    double *scratch = cr_malloc(alloc, big * sizeof *scratch);
    double *g = cr_malloc(alloc, (uint64_t)l * l * sizeof *g);
    double *norm = cr_malloc(alloc, l * sizeof *norm);
    uint32_t *order = cr_malloc(alloc, l * sizeof *order);
    if (!q || !z || !scratch || !g || !norm || !order) {
        cr_free(alloc, q), cr_free(alloc, z), cr_free(alloc, scratch), cr_free(alloc, g);
        cr_free(alloc, norm), cr_free(alloc, order);
        return cr_fail(err, CR_ERR_NOMEM, "svd: out of memory for a %llu x %llu matrix (rank %u)",
                       (unsigned long long)m, (unsigned long long)n, k);
    }

    uint64_t state = o.seed ^ 0x5eedc0debeefull;
    for (uint64_t i = 0; i < n * (uint64_t)l; i++)
        z[i] = (double)(int64_t)(cr_splitmix64(&state) >> 11) * 0x1p-52 - 1.0;   /* the test matrix: uniform in [-1, 1) */
    mul_ax(pool, a, m, n, l, z, q);
    orthonormalise(q, m, l, scratch);
    for (int it = 0; it < iters; it++) {
        mul_atq(pool, a, m, n, l, q, z);
        orthonormalise(z, n, l, scratch);
        mul_ax(pool, a, m, n, l, z, q);
        orthonormalise(q, m, l, scratch);
    }
    mul_atq(pool, a, m, n, l, q, z);        /* B^T = A^T Q */
    double *b = scratch;                    /* l x n */
    transpose(z, n, l, b);
    jacobi_rows(b, l, n, g);

    for (uint32_t i = 0; i < l; i++) norm[i] = sqrt(dot(b + (uint64_t)i * n, b + (uint64_t)i * n, n));
    for (uint32_t i = 0; i < l; i++) order[i] = i;
    for (uint32_t i = 1; i < l; i++) {      /* insertion sort, descending, stable */
        uint32_t v = order[i], j = i;
        while (j > 0 && norm[order[j - 1]] < norm[v]) { order[j] = order[j - 1]; j--; }
        order[j] = v;
    }
    for (uint32_t t = 0; t < k; t++) {
        uint32_t i = order[t];
        s[t] = norm[i];
        const double *bi = b + (uint64_t)i * n;
        for (uint64_t x = 0; x < n; x++) vt[t * n + x] = norm[i] > 0 ? bi[x] / norm[i] : 0;
        const double *gi = g + (uint64_t)i * l;
        for (uint64_t r = 0; r < m; r++) u[r * k + t] = norm[i] > 0 ? dot(q + r * l, gi, l) : 0;
    }
    cr_free(alloc, q), cr_free(alloc, z), cr_free(alloc, scratch), cr_free(alloc, g);
    cr_free(alloc, norm), cr_free(alloc, order);
    return CR_OK;
}
