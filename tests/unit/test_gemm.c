/* test_gemm.c — the forward pass's f32 kernels (infer/gemm.h) on every ISA
 * this CPU runs, on shapes that hit every tile and tail: nt and nn agree
 * with a double-precision reference to float accuracy, each element is
 * bit-identical whichever tile computes it (a full run against 1x1 runs),
 * and the AVX2 / AVX-512 tables stay within reassociation distance of the
 * scalar reference. */
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
