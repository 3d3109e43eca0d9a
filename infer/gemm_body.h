/* gemm_body.h — the nt / nn kernels of gemm.h written once over a small
 * vector vocabulary; gemm_scalar.c, gemm_avx2.c and gemm_avx512.c define
 * it and include this file, which defines the table named by TABLE.
 *
 * Vocabulary (VW lanes of f32):
 *   VF, TARGET, TABLE, ISA_NAME
 *   vzero() vload(p) vbcast(f)
 *   vfma(a, b, c)   a*b + c lane-wise (one rounding on SIMD, two in scalar)
 *   sfma(a, b, c)   the same for one float (tails)
 *   vhsum(v)        the lanes summed in one fixed tree
 *   vadd vsub vmul vdiv vmax vmin (a, b), vfloor(a)   lane-wise
 *   vpow2i(n)       2^n for lanes holding integers n in [-126, 127]
 *   NT_MR, NT_NR    the nt register tile: tokens x weight rows
 *   PANEL_MR, PANEL_NV  the panel register tile: tokens x weight vectors
 *
 * Every output element is computed by the same sequence of operations in
 * a full tile and in the one-element edge code, which is what makes the
 * results independent of T, of the block split and of the thread count.
 */

/* fully unroll the loops over a register tile, so that the accumulators
 * live in registers (clang otherwise keeps a 12 x 2 tile on the stack) */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define UNROLL _Pragma("clang loop unroll(full)")

/* ---- nt: y = x · wᵀ, both operands contiguous along k ------------------- */

static TARGET float nt_one(const float *x, const float *w, size_t K)
{
    VF acc = vzero();
    size_t kv = K / VW * VW, k = 0;
    for (; k < kv; k += VW) acc = vfma(vload(x + k), vload(w + k), acc);
    float s = vhsum(acc);
    for (; k < K; k++) s = sfma(x[k], w[k], s);
    return s;
}

static TARGET void nt_tile(const float *x, size_t ldx, const float *w, size_t ldw, float *y, size_t ldy, size_t K)
{
    VF acc[NT_MR][NT_NR];
    UNROLL for (int i = 0; i < NT_MR; i++)
        UNROLL for (int j = 0; j < NT_NR; j++) acc[i][j] = vzero();
    size_t kv = K / VW * VW;
    for (size_t k = 0; k < kv; k += VW) {
        VF wv[NT_NR];
        UNROLL for (int j = 0; j < NT_NR; j++) wv[j] = vload(w + j * ldw + k);
        UNROLL for (int i = 0; i < NT_MR; i++) {
            VF xv = vload(x + i * ldx + k);
            UNROLL for (int j = 0; j < NT_NR; j++) acc[i][j] = vfma(xv, wv[j], acc[i][j]);
        }
    }
    UNROLL for (int i = 0; i < NT_MR; i++)
        UNROLL for (int j = 0; j < NT_NR; j++) {
            float s = vhsum(acc[i][j]);
            for (size_t k = kv; k < K; k++) s = sfma(x[i * ldx + k], w[j * ldw + k], s);
            y[i * ldy + j] = s;
        }
}

/* Tokens in register tiles of NT_MR, each against all N rows in tiles of
 * NT_NR: the NT_MR token rows stay in L1 while the weight block (the
 * caller keeps it small enough for L2) streams past. */
static TARGET void v_nt(const float *x, size_t ldx, const float *w, size_t ldw, float *y, size_t ldy, size_t T,
                        size_t N, size_t K)
{
    size_t t = 0;
    for (; t + NT_MR <= T; t += NT_MR) {
        size_t n = 0;
        for (; n + NT_NR <= N; n += NT_NR) nt_tile(x + t * ldx, ldx, w + n * ldw, ldw, y + t * ldy + n, ldy, K);
        for (; n < N; n++)
            UNROLL for (int i = 0; i < NT_MR; i++) y[(t + i) * ldy + n] = nt_one(x + (t + i) * ldx, w + n * ldw, K);
    }
    for (; t < T; t++)
        for (size_t n = 0; n < N; n++) y[t * ldy + n] = nt_one(x + t * ldx, w + n * ldw, K);
}

/* ---- nn: y = a · b, b contiguous along n --------------------------------- */

#define NN_MR 4

/* rows [0, R) of a (R <= NN_MR), columns n0 .. n0 + NC*VW */
#define NN_TILE(NAME, R, NC)                                                                               \
    static TARGET void NAME(const float *a, size_t lda, const float *b, size_t ldb, float *y, size_t ldy,   \
                            size_t U)                                                                      \
    {                                                                                                      \
        VF acc[R][NC];                                                                                     \
        UNROLL for (int i = 0; i < R; i++)                                                                        \
            UNROLL for (int c = 0; c < NC; c++) acc[i][c] = vzero();                                              \
        for (size_t u = 0; u < U; u++) {                                                                   \
            VF bv[NC];                                                                                     \
            UNROLL for (int c = 0; c < NC; c++) bv[c] = vload(b + u * ldb + c * VW);                              \
            UNROLL for (int i = 0; i < R; i++) {                                                                  \
                VF av = vbcast(a[i * lda + u]);                                                            \
                UNROLL for (int c = 0; c < NC; c++) acc[i][c] = vfma(av, bv[c], acc[i][c]);                       \
            }                                                                                              \
        }                                                                                                  \
        UNROLL for (int i = 0; i < R; i++)                                                                        \
            UNROLL for (int c = 0; c < NC; c++) vstore(y + i * ldy + c * VW, acc[i][c]);                         \
    }

NN_TILE(nn_4x2, NN_MR, 2)
NN_TILE(nn_4x1, NN_MR, 1)
NN_TILE(nn_1x2, 1, 2)
NN_TILE(nn_1x1, 1, 1)

static TARGET void v_nn(const float *a, size_t lda, const float *b, size_t ldb, float *y, size_t ldy, size_t T,
                        size_t N, size_t U)
{
    size_t nv = N / VW * VW;
    for (size_t t = 0; t < T;) {
        bool four = t + NN_MR <= T;
        size_t n = 0;
        for (; n + 2 * VW <= nv; n += 2 * VW) {
            if (four) nn_4x2(a + t * lda, lda, b + n, ldb, y + t * ldy + n, ldy, U);
            else nn_1x2(a + t * lda, lda, b + n, ldb, y + t * ldy + n, ldy, U);
        }
        for (; n < nv; n += VW) {
            if (four) nn_4x1(a + t * lda, lda, b + n, ldb, y + t * ldy + n, ldy, U);
            else nn_1x1(a + t * lda, lda, b + n, ldb, y + t * ldy + n, ldy, U);
        }
        size_t rows = four ? NN_MR : 1;
        for (size_t i = 0; i < rows; i++)
            for (size_t m = nv; m < N; m++) {
                float s = 0;
                for (size_t u = 0; u < U; u++) s = sfma(a[(t + i) * lda + u], b[u * ldb + m], s);
                y[(t + i) * ldy + m] = s;
            }
        t += rows;
    }
}

/* ---- panel: y = x · W_blockᵀ, both operands packed k-major --------------- */

/* One tile: PANEL_MR packed token rows against one packed panel of
 * PANEL_NV vectors (pw columns). Per k, PANEL_NV weight loads and
 * PANEL_MR broadcasts from one pointer feed PANEL_MR·PANEL_NV FMAs, with
 * no horizontal sums. Every y element is the chain acc = fma(x[t, k],
 * w[k, n], acc) over k = 0..K-1 from 0, whichever tile it is in; rows past
 * `rows` (zero padding) and columns past `nc` are computed, not stored. */
static TARGET void v_panel(const float *xp, const float *wp, float *y, size_t ldy, size_t rows, size_t nc, size_t K)
{
    VF acc[PANEL_MR][PANEL_NV];
    UNROLL for (int i = 0; i < PANEL_MR; i++)
        UNROLL for (int c = 0; c < PANEL_NV; c++) acc[i][c] = vzero();
    for (size_t k = 0; k < K; k++) {
        VF wv[PANEL_NV];
        UNROLL for (int c = 0; c < PANEL_NV; c++) wv[c] = vload(wp + k * PANEL_NV * VW + c * VW);
        UNROLL for (int i = 0; i < PANEL_MR; i++) {
            VF xb = vbcast(xp[k * PANEL_MR + i]);
            UNROLL for (int c = 0; c < PANEL_NV; c++) acc[i][c] = vfma(xb, wv[c], acc[i][c]);
        }
    }
    UNROLL for (int i = 0; i < PANEL_MR; i++) {
        if ((size_t)i >= rows) break;
        if (nc == PANEL_NV * VW) {
            UNROLL for (int c = 0; c < PANEL_NV; c++) vstore(y + i * ldy + c * VW, acc[i][c]);
        } else {
            float tmp[PANEL_NV * VW];
            UNROLL for (int c = 0; c < PANEL_NV; c++) vstore(tmp + c * VW, acc[i][c]);
            for (size_t n = 0; n < nc; n++) y[i * ldy + n] = tmp[n];
        }
    }
}

/* ---- exp: the softmaxes, the NLL's log-sum-exp and SiLU ------------------ */

/* exp(x) as Cephes' expf: x clamped to [-87.3, 88.0], n = floor(x·log2e +
 * ½), r = x − n·ln2 in two parts, a degree-6 polynomial for e^r and the
 * exponent n put in by integer arithmetic. Within 2 ulp of exp over the
 * clamped range (test_gemm); below it gives ~1e-38 instead of 0, which no
 * sum here can see. Lanes and the one-float tail run the same steps. */
#define EXP_LO (-87.3f)
#define EXP_HI 88.0f
#define EXP_L2E 1.44269504088896341f
#define EXP_C1 0.693359375f
#define EXP_C2 (-2.12194440e-4f)
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

static TARGET inline VF vexp(VF x)
{
    x = vmin(vmax(x, vbcast(EXP_LO)), vbcast(EXP_HI));
    VF n = vfloor(vfma(x, vbcast(EXP_L2E), vbcast(0.5f)));
    VF r = vfma(n, vbcast(-EXP_C1), x);
    r = vfma(n, vbcast(-EXP_C2), r);
    VF p = vfma(vbcast(EXP_P0), r, vbcast(EXP_P1));
    p = vfma(p, r, vbcast(EXP_P2));
    p = vfma(p, r, vbcast(EXP_P3));
    p = vfma(p, r, vbcast(EXP_P4));
    p = vfma(p, r, vbcast(EXP_P5));
    p = vfma(p, vmul(r, r), vadd(r, vbcast(1.0f)));
    return vmul(p, vpow2i(n));
}

static TARGET inline float sexp(float x)
{
    x = x < EXP_LO ? EXP_LO : x > EXP_HI ? EXP_HI : x;
    float n = floorf(sfma(x, EXP_L2E, 0.5f));
    float r = sfma(n, -EXP_C1, x);
    r = sfma(n, -EXP_C2, r);
    float p = sfma(EXP_P0, r, EXP_P1);
    p = sfma(p, r, EXP_P2);
    p = sfma(p, r, EXP_P3);
    p = sfma(p, r, EXP_P4);
    p = sfma(p, r, EXP_P5);
    p = sfma(p, r * r, r + 1.0f);
    int32_t bits = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, 4);
    return p * s;
}

#define EXP_CHUNK (16 * VW)

/* y[i] = exp(x[i] − mx) (y may be x; NULL stores nothing); returns the sum:
 * lanes summed in f32 over chunks of EXP_CHUNK, each chunk's vhsum added
 * to a double in order, then the tail one by one. */
static TARGET double v_exp_sum(float *y, const float *x, float mx, size_t n)
{
    double sum = 0;
    size_t i = 0, nv = n / VW * VW;
    VF m = vbcast(mx);
    while (i < nv) {
        size_t end = nv - i < EXP_CHUNK ? nv : i + EXP_CHUNK;
        VF acc = vzero();
        for (; i < end; i += VW) {
            VF e = vexp(vsub(vload(x + i), m));
            if (y) vstore(y + i, e);
            acc = vadd(acc, e);
        }
        sum += vhsum(acc);
    }
    for (; i < n; i++) {
        float e = sexp(x[i] - mx);
        if (y) y[i] = e;
        sum += e;
    }
    return sum;
}

/* g[i] = silu(g[i]) · u[i] = g / (1 + exp(−g)) · u */
static TARGET void v_silu_mul(float *g, const float *u, size_t n)
{
    size_t i = 0, nv = n / VW * VW;
    for (; i < nv; i += VW) {
        VF z = vload(g + i);
        VF e = vexp(vsub(vzero(), z));
        vstore(g + i, vmul(vdiv(z, vadd(vbcast(1.0f), e)), vload(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + sexp(-g[i])) * u[i];
}

const cr_gemm_kernels TABLE = { ISA_NAME, v_nt, v_nn, PANEL_NV * VW, PANEL_MR, v_panel, v_exp_sum, v_silu_mul };
