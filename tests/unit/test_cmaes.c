/* test_cmaes.c — CMA-ES (core/cmaes.c): it minimises a shifted sphere and
 * an ill-conditioned ellipsoid (which needs the covariance adaptation and
 * the eigen decomposition to be right), the same seed gives the same
 * search bit for bit, and a state saved and restored into a fresh
 * optimiser continues exactly as the original. */
#include "harness.h"
#include "cmaes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double sphere(const double *x, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += (x[i] - 0.25 * i) * (x[i] - 0.25 * i);
    return s;
}

/* f = sum 10^(6 i/(n-1)) x_i^2: condition number 10^6 */
static double ellipsoid(const double *x, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += pow(10.0, 6.0 * i / (n - 1)) * x[i] * x[i];
    return s;
}

static double run(cr_cmaes *c, double (*f)(const double *, int), int gens)
{
    double best = INFINITY, fit[64];
    for (int g = 0; g < gens; g++) {
        cr_cmaes_ask(c);
        for (int k = 0; k < c->lambda; k++) {
            fit[k] = f(c->x + (size_t)k * c->n, c->n);
            if (fit[k] < best) best = fit[k];
        }
        cr_cmaes_tell(c, fit);
    }
    return best;
}

TEST(minimises)
{
    const cr_allocator *A = cr_default_allocator();
    cr_error err = {0};
    double x0[6] = {1, 1, 1, 1, 1, 1};
    cr_cmaes c;
    REQUIRE(cr_cmaes_init(&c, A, 6, x0, 0.5, 0, 1, &err) == CR_OK);
    CHECK_EQ_INT(c.lambda, 9);   /* 4 + floor(3 ln 6) */
    double best = run(&c, sphere, 150);
    CHECK_MSG(best < 1e-12, "sphere: best %g after 150 generations", best);
    cr_cmaes_free(&c);
    REQUIRE(cr_cmaes_init(&c, A, 6, x0, 0.5, 0, 2, &err) == CR_OK);
    best = run(&c, ellipsoid, 400);
    CHECK_MSG(best < 1e-10, "ellipsoid: best %g after 400 generations", best);
    cr_cmaes_free(&c);
}

TEST(reproducible_and_resumable)
{
    const cr_allocator *A = cr_default_allocator();
    cr_error err = {0};
    double x0[4] = {0.3, -0.2, 0.1, 0.5};
    cr_cmaes a, b, r;
    REQUIRE(cr_cmaes_init(&a, A, 4, x0, 0.3, 0, 42, &err) == CR_OK);
    REQUIRE(cr_cmaes_init(&b, A, 4, x0, 0.3, 0, 42, &err) == CR_OK);
    run(&a, ellipsoid, 10);
    run(&b, ellipsoid, 4);
    size_t n = cr_cmaes_state_len(&b);
    double *st = calloc(n, sizeof *st);
    REQUIRE(st);
    cr_cmaes_state_get(&b, st);
    REQUIRE(cr_cmaes_init(&r, A, 4, x0, 1.0, 0, 99, &err) == CR_OK);   /* other seed and step: overwritten */
    cr_cmaes_state_set(&r, st);
    run(&r, ellipsoid, 6);
    run(&b, ellipsoid, 6);
    double *sa = calloc(n, sizeof *sa), *sr = calloc(n, sizeof *sr), *sb = calloc(n, sizeof *sb);
    REQUIRE(sa && sr && sb);
    cr_cmaes_state_get(&a, sa);
    cr_cmaes_state_get(&b, sb);
    cr_cmaes_state_get(&r, sr);
    CHECK(!memcmp(sa, sb, n * sizeof *sa));
    CHECK(!memcmp(sa, sr, n * sizeof *sa));
    CHECK(!memcmp(a.x, r.x, sizeof *a.x * (size_t)a.lambda * 4));
    CHECK_EQ_INT(r.generation, 10);
    free(st); free(sa); free(sb); free(sr);
    cr_cmaes_free(&a);
    cr_cmaes_free(&b);
    cr_cmaes_free(&r);
    REQUIRE(cr_cmaes_init(&a, A, 4, x0, 0.3, 0, 43, &err) == CR_OK);
    cr_cmaes_ask(&a);
    REQUIRE(cr_cmaes_init(&b, A, 4, x0, 0.3, 0, 42, &err) == CR_OK);
    cr_cmaes_ask(&b);
    CHECK(memcmp(a.x, b.x, sizeof *a.x * 4) != 0);   /* the seed matters */
    cr_cmaes_free(&a);
    cr_cmaes_free(&b);
}

TEST(bad_arguments)
{
    cr_error err = {0};
    double x0[1] = {0};
    cr_cmaes c;
    CHECK(cr_cmaes_init(&c, cr_default_allocator(), 0, x0, 0.5, 0, 0, &err) == CR_ERR_ARG);
    CHECK(cr_cmaes_init(&c, cr_default_allocator(), 1, x0, 0, 0, 0, &err) == CR_ERR_ARG);
    CHECK(cr_cmaes_init(&c, cr_default_allocator(), 1, x0, 0.5, 1, 0, &err) == CR_ERR_ARG);
}

int main(void)
{
    RUN(minimises);
    RUN(reproducible_and_resumable);
    RUN(bad_arguments);
    return cr_test_summary();
}
