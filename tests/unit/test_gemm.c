/* test_gemm.c — the forward pass's f32 kernels (infer/gemm.h) on every ISA
 * this CPU runs, on shapes that hit every tile and tail: nt and nn agree
 * with a double-precision reference to float accuracy, each element is
 * bit-identical whichever tile computes it (a full run against 1x1 runs),
 * and the AVX2 / AVX-512 tables stay within reassociation distance of the
 * scalar reference; the vectorised exp (exp_sum, silu_mul) stays within
 * 2 ulp of exp on every lane and tail, its sums within float accuracy of
 * a double reference. */
#include "harness.h"
#include "gemm.h"

#include <stdlib.h>

static float frand(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void fill(float *x, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) x[i] = frand(&seed);
}

static void check_table(const cr_gemm_kernels *k)
{
    static const size_t Ts[] = { 1, 3, 4, 7, 9 }, Ns[] = { 1, 5, 12, 13, 40 }, Ks[] = { 1, 7, 8, 16, 33, 70 };
    for (size_t a = 0; a < 5; a++)
        for (size_t b = 0; b < 5; b++)
            for (size_t c = 0; c < 6; c++) {
                size_t T = Ts[a], N = Ns[b], K = Ks[c], ldx = K + 3, ldw = K + 1, ldy = N + 2;
                float *x = malloc(T * ldx * sizeof(float)), *w = malloc(N * ldw * sizeof(float));
                float *y = calloc(T * ldy, sizeof(float)), *z = calloc(T * ldy, sizeof(float));
                fill(x, T * ldx, 7 + (uint32_t)(a * 31 + c));
                fill(w, N * ldw, 11 + (uint32_t)(b * 17 + c));
                /* nt */
                k->nt(x, ldx, w, ldw, y, ldy, T, N, K);
                double worst = 0;
                bool same = true;
                for (size_t t = 0; t < T; t++)
                    for (size_t n = 0; n < N; n++) {
                        double r = 0, mag = 0;
                        for (size_t i = 0; i < K; i++) {
                            r += (double)x[t * ldx + i] * w[n * ldw + i];
                            mag += fabs((double)x[t * ldx + i] * w[n * ldw + i]);
                        }
                        double e = fabs(y[t * ldy + n] - r) / (mag + 1e-30);
                        if (e > worst) worst = e;
                        float one;
                        k->nt(x + t * ldx, ldx, w + n * ldw, ldw, &one, 1, 1, 1, K);
                        same &= one == y[t * ldy + n];
                    }
                CHECK_MSG(worst < 1e-6, "%s nt T=%zu N=%zu K=%zu: error %.3g", k->name, T, N, K, worst);
                CHECK_MSG(same, "%s nt T=%zu N=%zu K=%zu: an element differs from its 1x1 run", k->name, T, N, K);
                /* nn: y[T, N] = x[T, K] · b[K, N] with b = w viewed as [K, N] */
                if (K * N <= N * ldw) {
                    k->nn(x, ldx, w, N, z, ldy, T, N, K);
                    worst = 0;
                    same = true;
                    for (size_t t = 0; t < T; t++)
                        for (size_t n = 0; n < N; n++) {
                            double r = 0, mag = 0;
                            for (size_t u = 0; u < K; u++) {
                                r += (double)x[t * ldx + u] * w[u * N + n];
                                mag += fabs((double)x[t * ldx + u] * w[u * N + n]);
                            }
                            double e = fabs(z[t * ldy + n] - r) / (mag + 1e-30);
                            if (e > worst) worst = e;
                            float one;
                            k->nn(x + t * ldx, ldx, w + n, N, &one, 1, 1, 1, K);
                            same &= one == z[t * ldy + n];
                        }
                    CHECK_MSG(worst < 1e-6, "%s nn T=%zu N=%zu U=%zu: error %.3g", k->name, T, N, K, worst);
                    CHECK_MSG(same, "%s nn T=%zu N=%zu U=%zu: an element differs from its 1x1 run", k->name, T, N, K);
                }
                free(x); free(w); free(y); free(z);
            }
}

/* panel: bf16 weights packed with cr_gemm_pack_w, tokens with
 * cr_gemm_pack_x; every row equals the row computed alone (rows = 1) */
static void check_panel(const cr_gemm_kernels *k)
{
    static const size_t Ks[] = { 1, 5, 16, 37 };
    size_t pw = k->pw, mr = k->mr;
    size_t ncs[] = { 1, pw / 2 + 1, pw }, rowss[] = { 1, mr - 1, mr };
    for (size_t c = 0; c < 4; c++)
        for (size_t a = 0; a < 3; a++)
            for (size_t b = 0; b < 3; b++) {
                size_t K = Ks[c], nc = ncs[a], rows = rowss[b];
                uint16_t *wb = malloc(nc * K * 2);
                float *w = malloc(nc * K * sizeof(float)), *x = malloc(rows * K * sizeof(float));
                float *wp = malloc(K * pw * sizeof(float)), *tmp = malloc(K * pw * sizeof(float));
                float *xp = malloc(K * mr * sizeof(float)), *x1 = malloc(K * mr * sizeof(float));
                float *y = calloc(rows * nc, sizeof(float)), one[64];
                fill(w, nc * K, 3 + (uint32_t)(c + nc));
                fill(x, rows * K, 5 + (uint32_t)(c * 7 + rows));
                for (size_t i = 0; i < nc * K; i++) { wb[i] = cr_f32_to_bf16(w[i]); w[i] = cr_bf16_to_f32(wb[i]); }
                cr_gemm_pack_w(k, CR_DTYPE_BF16, wb, nc, K, wp, tmp);
                cr_gemm_pack_x(k, x, K, rows, K, xp);
                k->panel(xp, wp, y, nc, rows, nc, K);
                double worst = 0;
                bool same = true;
                for (size_t t = 0; t < rows; t++) {
                    cr_gemm_pack_x(k, x + t * K, K, 1, K, x1);
                    k->panel(x1, wp, one, nc, 1, nc, K);
                    for (size_t n = 0; n < nc; n++) {
                        double r = 0, mag = 0;
                        for (size_t i = 0; i < K; i++) {
                            r += (double)x[t * K + i] * w[n * K + i];
                            mag += fabs((double)x[t * K + i] * w[n * K + i]);
                        }
                        double e = fabs(y[t * nc + n] - r) / (mag + 1e-30);
                        if (e > worst) worst = e;
                        same &= one[n] == y[t * nc + n];
                    }
                }
                CHECK_MSG(worst < 1e-6, "%s panel rows=%zu nc=%zu K=%zu: error %.3g", k->name, rows, nc, K, worst);
                CHECK_MSG(same, "%s panel rows=%zu nc=%zu K=%zu: a row differs from its run alone", k->name, rows, nc,
                          K);
                free(wb); free(w); free(x); free(wp); free(tmp); free(xp); free(x1); free(y);
            }
}

/* x in [-90, 12] on n that hits the lanes, the chunks and the tail */
static void check_exp(const cr_gemm_kernels *k)
{
    static const size_t ns[] = { 1, 7, 8, 17, 129, 300, 1000 };
    for (size_t a = 0; a < 7; a++) {
        size_t n = ns[a];
        float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *u = malloc(n * sizeof(float));
        uint32_t seed = 5 + (uint32_t)a;
        for (size_t i = 0; i < n; i++) x[i] = 51.0f * frand(&seed) - 39.0f;
        if (n > 1) x[1] = -90.0f;           /* below the clamp: ~0 */
        if (n > 3) x[3] = 0.0f;             /* e^0 = 1 exactly */
        float mx = 2.5f;
        double sum = k->exp_sum(y, x, mx, n), ref = 0, worst = 0;
        for (size_t i = 0; i < n; i++) {
            double r = exp((double)x[i] - (double)mx);
            ref += r;
            if (x[i] - mx < -87.0f) { CHECK(y[i] < 1e-37f); continue; }
            double e = fabs(y[i] - r) / r;
            if (e > worst) worst = e;
        }
        CHECK_MSG(worst < 2.5e-7, "%s exp n=%zu: relative error %.3g", k->name, n, worst);
        CHECK_MSG(fabs(sum - ref) / ref < 1e-6, "%s exp_sum n=%zu: %.9g against %.9g", k->name, n, sum, ref);
        CHECK(k->exp_sum(NULL, x, mx, n) == sum);
        if (n > 3) CHECK(k->exp_sum(NULL, x + 3, 0.0f, 1) == 1.0);
        /* silu(g)·u against double */
        for (size_t i = 0; i < n; i++) { x[i] = 40.0f * frand(&seed); u[i] = frand(&seed); y[i] = x[i]; }
        k->silu_mul(y, u, n);
        worst = 0;
        for (size_t i = 0; i < n; i++) {
            double r = (double)x[i] / (1.0 + exp(-(double)x[i])) * u[i];
            double e = fabs(y[i] - r) / (fabs(r) + 1e-30);
            if (e > worst) worst = e;
        }
        CHECK_MSG(worst < 1e-6, "%s silu_mul n=%zu: relative error %.3g", k->name, n, worst);
        free(x); free(y); free(u);
    }
}

TEST(every_isa)
{
    static const char *const names[] = { "scalar", "avx2", "avx512" };
    int ran = 0;
    for (size_t i = 0; i < 3; i++) {
        const cr_gemm_kernels *k;
        cr_error err;
        if (cr_gemm_pick(names[i], &k, &err) != CR_OK) continue;
        CHECK(!strcmp(k->name, names[i]));
        check_table(k);
        check_panel(k);
        check_exp(k);
        ran++;
    }
    CHECK(ran >= 1);
}

TEST(pick_errors)
{
    const cr_gemm_kernels *k;
    cr_error err;
    CHECK(cr_gemm_pick("sse9", &k, &err) == CR_ERR_ARG);
    CHECK_CONTAINS(err.msg, "sse9");
    CHECK(cr_gemm_pick("scalar", &k, &err) == CR_OK && k == &cr_gemm_scalar);
}

int main(void)
{
    RUN(every_isa);
    RUN(pick_errors);
    return cr_test_summary();
}
