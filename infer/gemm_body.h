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
 *   NT_MR, NT_NR    the nt register tile: tokens x weight rows
 *
 * Every output element is computed by the same sequence of operations in
 * a full tile and in the one-element edge code, which is what makes the
 * results independent of T, of the block split and of the thread count.
 */

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
    for (int i = 0; i < NT_MR; i++)
        for (int j = 0; j < NT_NR; j++) acc[i][j] = vzero();
    size_t kv = K / VW * VW;
    for (size_t k = 0; k < kv; k += VW) {
        VF wv[NT_NR];
        for (int j = 0; j < NT_NR; j++) wv[j] = vload(w + j * ldw + k);
        for (int i = 0; i < NT_MR; i++) {
            VF xv = vload(x + i * ldx + k);
            for (int j = 0; j < NT_NR; j++) acc[i][j] = vfma(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < NT_MR; i++)
        for (int j = 0; j < NT_NR; j++) {
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
            for (int i = 0; i < NT_MR; i++) y[(t + i) * ldy + n] = nt_one(x + (t + i) * ldx, w + n * ldw, K);
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
        for (int i = 0; i < R; i++)                                                                        \
            for (int c = 0; c < NC; c++) acc[i][c] = vzero();                                              \
        for (size_t u = 0; u < U; u++) {                                                                   \
            VF bv[NC];                                                                                     \
            for (int c = 0; c < NC; c++) bv[c] = vload(b + u * ldb + c * VW);                              \
            for (int i = 0; i < R; i++) {                                                                  \
                VF av = vbcast(a[i * lda + u]);                                                            \
                for (int c = 0; c < NC; c++) acc[i][c] = vfma(av, bv[c], acc[i][c]);                       \
            }                                                                                              \
        }                                                                                                  \
        for (int i = 0; i < R; i++)                                                                        \
            for (int c = 0; c < NC; c++) vstore(y + i * ldy + c * VW, acc[i][c]);                         \
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

const cr_gemm_kernels TABLE = { ISA_NAME, v_nt, v_nn };
