/* refsum.c — float32 reductions in the exact order of NumPy and OpenBLAS.
 *
 * mergekit's SLERP runs in NumPy float32: np.sum(v0 * v1) and
 * np.linalg.norm(v) (BLAS sdot). Their results differ from a wide
 * (f64) accumulation in the last bit, and a last-bit change of a SLERP
 * coefficient moves every element where the two terms cancel by many ulps.
 * So the VM reproduces these summation orders exactly. The kernel ops
 * RSUM_NP, RSSQ_BLAS and RSSQ_TORCH (ops.def) feed the streams at the end
 * of this file chunk by chunk in element order (the *_COL ops feed the
 * per-column state after them the same way), and RSUM_TORCH sums
 * per-block partials (cr_torch_sum_*), so no op holds a copy of its domain
 * and the result does not depend on chunking or threads.
 *
 * Neither function is ever contracted into other arithmetic: every product
 * or sum is a separate statement, and the fused multiply-add of the BLAS
 * kernel is an explicit fmaf().
 */
#include "refsum.h"

#include <math.h>
#include <string.h>

#define NP_BLOCK 128   /* NumPy's PW_BLOCKSIZE */

static float np_pairwise(const float *a, uint64_t n)
{
    if (n < 8) {
        float res = 0.0f;
        for (uint64_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= NP_BLOCK) {
        float r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        uint64_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + (uint64_t)j];
        float lo = (r[0] + r[1]) + (r[2] + r[3]);
        float hi = (r[4] + r[5]) + (r[6] + r[7]);
        float res = lo + hi;
        for (; i < n; i++) res += a[i];
        return res;
    }
    uint64_t n2 = n / 2;
    n2 -= n2 % 8;
    float x = np_pairwise(a, n2);
    float y = np_pairwise(a + n2, n - n2);
    return x + y;
}

float cr_refsum_numpy(const float *x, uint64_t n)
{
    float s = np_pairwise(x, n);
    return 0.0f + s;   /* the reduction starts from the identity */
}

/* OpenBLAS's sdot kernel ends with four 8-lane registers: fold the upper
 * halves, then the registers pairwise, then two horizontal adds
 * (sdot_microk_haswell-2.c). */
static float blas_fold(const float acc[32])
{
    float h[4][4], c[4];
    for (int r = 0; r < 4; r++)
        for (int l = 0; l < 4; l++) h[r][l] = acc[r * 8 + l] + acc[r * 8 + l + 4];
    for (int l = 0; l < 4; l++) {
        float a = h[0][l] + h[1][l];
        float b = h[2][l] + h[3][l];
        c[l] = a + b;
    }
    float d0 = c[0] + c[1], d1 = c[2] + c[3];
    return d0 + d1;
}

float cr_refsum_blas_ssq(const float *x, uint64_t n)
{
    uint64_t n1 = n & ~(uint64_t)31;
    float acc[32] = {0};
    for (uint64_t i = 0; i < n1; i += 32)
        for (int l = 0; l < 32; l++) acc[l] = fmaf(x[i + (uint64_t)l], x[i + (uint64_t)l], acc[l]);
    float mydot = blas_fold(acc);
    double dot = 0.0;
    for (uint64_t i = n1; i < n; i++) {
        float p = x[i] * x[i];
        dot += (double)p;
    }
    double t = dot + (double)mydot;
    return (float)t;
}

/* ---- torch (SumKernel.cpp) ------------------------------------------------ */

#define T_LEVELS 4
#define T_ILP 4
#define T_MAXW 8

static unsigned ceil_log2(uint64_t x)
{
    unsigned r = 0;
    while (((uint64_t)1 << r) < x) r++;
    return r;
}

/* multi_row_sum + row_sum over nv "vectors" of w floats: vector v is
 * x[v*w .. v*w+w). Leaves the w-lane result in out. */
static void torch_row_sum(const float *x, uint64_t nv, int w, float *out)
{
    uint64_t size = nv / T_ILP;
    unsigned lp = ceil_log2(size) / T_LEVELS;
    if (lp < 4) lp = 4;
    uint64_t step = (uint64_t)1 << lp, mask = step - 1;
    float acc[T_LEVELS][T_ILP][T_MAXW] = {{{0}}};
    uint64_t i = 0;
    while (i + step <= size) {
        for (uint64_t j = 0; j < step; j++, i++)
            for (int k = 0; k < T_ILP; k++)
                for (int l = 0; l < w; l++) acc[0][k][l] += x[(i * T_ILP + (uint64_t)k) * (uint64_t)w + (uint64_t)l];
        for (int j = 1; j < T_LEVELS; j++) {
            for (int k = 0; k < T_ILP; k++)
                for (int l = 0; l < w; l++) { acc[j][k][l] += acc[j - 1][k][l]; acc[j - 1][k][l] = 0.0f; }
            if ((i & (mask << ((unsigned)j * lp))) != 0) break;
        }
    }
    for (; i < size; i++)
        for (int k = 0; k < T_ILP; k++)
            for (int l = 0; l < w; l++) acc[0][k][l] += x[(i * T_ILP + (uint64_t)k) * (uint64_t)w + (uint64_t)l];
    for (int j = 1; j < T_LEVELS; j++)
        for (int k = 0; k < T_ILP; k++)
            for (int l = 0; l < w; l++) acc[0][k][l] += acc[j][k][l];
    for (uint64_t v = size * T_ILP; v < nv; v++)
        for (int l = 0; l < w; l++) acc[0][0][l] += x[v * (uint64_t)w + (uint64_t)l];
    for (int k = 1; k < T_ILP; k++)
        for (int l = 0; l < w; l++) acc[0][0][l] += acc[0][k][l];
    for (int l = 0; l < w; l++) out[l] = acc[0][0][l];
}

float cr_refsum_torch(float *x, uint64_t n, bool reduced)
{
    float lanes[T_MAXW];
    /* bf16/f16 load 16 values a vector and add its two float halves */
    uint64_t per = reduced ? 2 * T_MAXW : T_MAXW;
    if (n < per) {
        torch_row_sum(x, n, 1, lanes);
        return 0.0f + lanes[0];
    }
    uint64_t nv = n / per;
    if (reduced)   /* in place: write index 8i+l never passes read index 16i+l */
        for (uint64_t i = 0; i < nv; i++)
            for (uint64_t l = 0; l < T_MAXW; l++) x[i * T_MAXW + l] = x[i * per + l] + x[i * per + T_MAXW + l];
    torch_row_sum(x, nv, T_MAXW, lanes);
    float acc = 0.0f;
    for (uint64_t k = nv * per; k < n; k++) acc += x[k];
    for (int l = 0; l < T_MAXW; l++) acc += lanes[l];
    return 0.0f + acc;
}

void cr_torch_sum_plan_init(cr_torch_sum_plan *pl, uint64_t n, bool reduced)
{
    *pl = (cr_torch_sum_plan){ .n = n, .reduced = reduced, .per = reduced ? 2 * T_MAXW : T_MAXW };
    pl->group = T_ILP * pl->per;
    if (n < pl->per) { pl->lp = 4; pl->step = 16; pl->block = pl->step * pl->group; return; }
    pl->nv = n / pl->per;
    pl->size = pl->nv / T_ILP;
    unsigned lp = ceil_log2(pl->size) / T_LEVELS;
    if (lp < 4) lp = 4;
    pl->lp = lp;
    pl->step = (uint64_t)1 << lp;
    pl->block = pl->step * pl->group;
    pl->n_blocks = pl->size / pl->step;
    pl->rem_start = pl->n_blocks * pl->block;
}

void cr_torch_sum_add(const cr_torch_sum_plan *pl, const float *x, uint64_t first, uint64_t n,
                      float *partials, float *tail)
{
    uint64_t e = 0;
    /* whole groups below the tail: one vector of each of the 4 accumulators */
    for (; first + e < pl->rem_start && e + pl->group <= n; e += pl->group) {
        float *acc = partials + (first + e) / pl->block * (T_ILP * T_MAXW);
        const float *g = x + e;
        if (pl->reduced) {
            for (int k = 0; k < T_ILP; k++)
                for (int l = 0; l < T_MAXW; l++) {
                    float v = g[k * 16 + l] + g[k * 16 + 8 + l];
                    acc[k * T_MAXW + l] += v;
                }
        } else {
            for (int k = 0; k < T_ILP * T_MAXW; k++) acc[k] += g[k];
        }
    }
    for (; e < n; e++) tail[first + e - pl->rem_start] = x[e];
}

float cr_torch_sum_finish(const cr_torch_sum_plan *pl, const float *partials, float *tail)
{
    if (pl->n < pl->per) return cr_refsum_torch(tail, pl->n, pl->reduced);
    /* the cascade of torch_row_sum's while loop over the block partials */
    float acc[T_LEVELS][T_ILP][T_MAXW] = {{{0}}};
    const uint64_t mask = pl->step - 1;
    uint64_t i = 0;
    for (uint64_t b = 0; b < pl->n_blocks; b++) {
        memcpy(acc[0], partials + b * (T_ILP * T_MAXW), sizeof acc[0]);
        i += pl->step;
        for (unsigned j = 1; j < T_LEVELS; j++) {
            for (int k = 0; k < T_ILP; k++)
                for (int l = 0; l < T_MAXW; l++) { acc[j][k][l] += acc[j - 1][k][l]; acc[j - 1][k][l] = 0.0f; }
            if ((i & (mask << (j * pl->lp))) != 0) break;
        }
    }
    /* the tail: reduce its vectors in place as cr_refsum_torch does */
    const uint64_t v0 = pl->rem_start / pl->per, nvt = pl->nv - v0;
    if (pl->reduced)
        for (uint64_t v = 0; v < nvt; v++)
            for (uint64_t l = 0; l < T_MAXW; l++) tail[v * T_MAXW + l] = tail[v * 16 + l] + tail[v * 16 + 8 + l];
    const float *x = tail;   /* reduced vectors; vector v of the whole is x[(v - v0) * 8 ..] */
    for (; i < pl->size; i++)
        for (int k = 0; k < T_ILP; k++)
            for (int l = 0; l < T_MAXW; l++) acc[0][k][l] += x[((i * T_ILP + (uint64_t)k) - v0) * T_MAXW + (uint64_t)l];
    for (int j = 1; j < T_LEVELS; j++)
        for (int k = 0; k < T_ILP; k++)
            for (int l = 0; l < T_MAXW; l++) acc[0][k][l] += acc[j][k][l];
    for (uint64_t v = pl->size * T_ILP; v < pl->nv; v++)
        for (int l = 0; l < T_MAXW; l++) acc[0][0][l] += x[(v - v0) * T_MAXW + (uint64_t)l];
    for (int k = 1; k < T_ILP; k++)
        for (int l = 0; l < T_MAXW; l++) acc[0][0][l] += acc[0][k][l];
    float s = 0.0f;
    for (uint64_t k = pl->nv * pl->per; k < pl->n; k++) s += tail[k - pl->rem_start];
    for (int l = 0; l < T_MAXW; l++) s += acc[0][0][l];
    return 0.0f + s;
}

/* One element of torch's norm-2 tail (the last n % 8): torch 2.15's AVX2
 * build adds the squares of whole groups of 4 rounded, then contracts the
 * last n % 4 into fused multiply-adds (measured in the venv on 6,000
 * vectors of 1 to 51,429 elements: bit for bit; the rounded-square reading
 * misses about one sum in ten on tails with n % 4 != 0). */
static float torch_ssq_tail(float b, float x, uint64_t i, uint64_t n)
{
    if (i < n - n % 4) {
        float p = x * x;
        return b + p;
    }
    return fmaf(x, x, b);
}

float cr_refsum_torch_ssq(const float *x, uint64_t n)
{
    float acc[8] = {0};
    uint64_t d = 0;
    for (; d < n - (n % 8); d += 8)
        for (int l = 0; l < 8; l++) {
            float p = x[d + (uint64_t)l] * x[d + (uint64_t)l];
            acc[l] += p;
        }
    float b = acc[0];
    for (int l = 1; l < 8; l++) b += acc[l];
    for (; d < n; d++) b = torch_ssq_tail(b, x[d], d, n);
    return b;
}

/* ---- in order, in pieces (refsum.h) ---------------------------------------- */

/* NumPy: the length of the left half of a range np_pairwise splits */
static uint64_t np_half(uint64_t len)
{
    uint64_t n2 = len / 2;
    return n2 - n2 % 8;
}

/* descend from the top frame to its first leaf */
static void np_descend(cr_refsum_stream *s)
{
    while (s->frame[s->depth - 1].len > NP_BLOCK) {
        uint64_t h = np_half(s->frame[s->depth - 1].len);
        s->frame[s->depth].len = h;
        s->frame[s->depth].have_left = false;
        s->depth++;
    }
    s->leaf_len = s->frame[s->depth - 1].len;
    s->fill = 0;
}

/* a leaf's sum is known: return it up the recursion (x + y at each level
 * whose right half it completes), then move to the next leaf */
static void np_leaf_done(cr_refsum_stream *s, float v)
{
    s->depth--;   /* the leaf's own frame */
    while (s->depth) {
        uint64_t len = s->frame[s->depth - 1].len;
        if (!s->frame[s->depth - 1].have_left) {
            s->frame[s->depth - 1].left = v;
            s->frame[s->depth - 1].have_left = true;
            s->frame[s->depth].len = len - np_half(len);
            s->frame[s->depth].have_left = false;
            s->depth++;
            np_descend(s);
            return;
        }
        v = s->frame[s->depth - 1].left + v;
        s->depth--;
    }
    s->result = v;
    s->leaf_len = 0;
}

void cr_refsum_stream_init(cr_refsum_stream *s, cr_refsum_kind kind, uint64_t n)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->n = n;
    if (kind == CR_REFSUM_NP && n) {
        s->frame[0].len = n;
        s->depth = 1;
        np_descend(s);
    }
}

void cr_refsum_stream_add(cr_refsum_stream *s, const float *x, uint64_t len)
{
    switch (s->kind) {
    case CR_REFSUM_NP:
        while (len) {
            uint64_t take = s->leaf_len - s->fill;
            if (take > len) take = len;
            if (!s->fill && take == s->leaf_len) {
                np_leaf_done(s, np_pairwise(x, take));   /* whole leaf in the piece */
            } else {
                memcpy(s->buf + s->fill, x, (size_t)take * sizeof *x);
                s->fill += take;
                if (s->fill == s->leaf_len) np_leaf_done(s, np_pairwise(s->buf, s->leaf_len));
            }
            x += take;
            len -= take;
        }
        return;
    case CR_REFSUM_BLAS_SSQ: {
        const uint64_t n1 = s->n & ~(uint64_t)31;
        uint64_t i = s->pos, e = 0;
        for (; e < len && i < n1 && (i & 31); e++, i++)   /* to a lane boundary */
            s->acc[i & 31] = fmaf(x[e], x[e], s->acc[i & 31]);
        if (i < n1 && e < len) {
            /* whole rows of the 32 lanes, in local accumulators the compiler
             * keeps in vector registers: the same chains (lane l fmas the
             * elements l mod 32 in increasing order), so the same bits,
             * without a lane index per element (the TORCH_SSQ rewrite;
             * slerp 0.1.4's norms run in the kernels' ordered turn) */
            uint64_t rows = (len - e < n1 - i ? len - e : n1 - i) / 32;
            float a[32];
            memcpy(a, s->acc, sizeof a);
            for (uint64_t r = 0; r < rows; r++, e += 32, i += 32)
                for (int l = 0; l < 32; l++) a[l] = fmaf(x[e + (uint64_t)l], x[e + (uint64_t)l], a[l]);
            memcpy(s->acc, a, sizeof a);
        }
        for (; e < len && i < n1; e++, i++) s->acc[i & 31] = fmaf(x[e], x[e], s->acc[i & 31]);
        for (; e < len; e++) {
            float p = x[e] * x[e];
            s->dot += (double)p;
        }
        s->pos += len;
        return;
    }
    case CR_REFSUM_TORCH_SSQ: {
        const uint64_t n8 = s->n - s->n % 8;
        uint64_t i = s->pos, e = 0;
        for (; e < len && i < n8 && (i & 7); e++, i++) {   /* to a lane boundary */
            float p = x[e] * x[e];
            s->acc[i & 7] += p;
        }
        if (i < n8 && e < len) {
            /* whole rows of the 8 lanes, in local accumulators the compiler
             * keeps in one vector register: the same chains (lane l adds
             * the rounded squares of elements l mod 8 in increasing order),
             * so the same bits, without a lane index per element. slerp
             * 0.1.5's chunk norms run in the kernel's ordered turn, so this
             * loop was a serial quarter of slerp's CPU (bench/RESULTS.md). */
            uint64_t rows = (len - e < n8 - i ? len - e : n8 - i) / 8;
            float a[8];
            memcpy(a, s->acc, sizeof a);
            for (uint64_t r = 0; r < rows; r++, e += 8, i += 8)
                for (int l = 0; l < 8; l++) {
                    float p = x[e + (uint64_t)l] * x[e + (uint64_t)l];
                    a[l] += p;
                }
            memcpy(s->acc, a, sizeof a);
        }
        for (; e < len && i < n8; e++, i++) {
            float p = x[e] * x[e];
            s->acc[i & 7] += p;
        }
        if (i == n8 && !s->folded) {   /* the lanes are complete: fold them once */
            float b = s->acc[0];
            for (int l = 1; l < 8; l++) b += s->acc[l];
            s->b = b;
            s->folded = true;
        }
        for (; e < len; e++, i++) s->b = torch_ssq_tail(s->b, x[e], i, s->n);
        s->pos += len;
        return;
    }
    }
}

float cr_refsum_stream_finish(const cr_refsum_stream *s)
{
    switch (s->kind) {
    case CR_REFSUM_NP:
        return s->n ? 0.0f + s->result : 0.0f + 0.0f;
    case CR_REFSUM_BLAS_SSQ: {
        float mydot = blas_fold(s->acc);
        double t = s->dot + (double)mydot;
        return (float)t;
    }
    case CR_REFSUM_TORCH_SSQ:
        if (!s->folded) {   /* never fed: n == 0 */
            float b = s->acc[0];
            for (int l = 1; l < 8; l++) b += s->acc[l];
            return b;
        }
        return s->b;
    }
    return 0.0f;
}

/* ---- per-column sums (dim 0 of a row-major matrix) -------------------------
 *
 * torch reduces a non-innermost dimension with an "outer" reduction: every
 * column is its own sequential chain over the rows, vectorised across
 * columns. sum() (SumKernel.cpp vectorized_outer_sum on AVX2, or
 * scalar_outer_sum under 8 columns) gives the columns of whole 32-column
 * groups (4-column groups under 8 columns) one cascade chain
 * (multi_row_sum) and the rest row_sum's four interleaved chains, rows
 * r % 4, with the tail rows and the chains added at the end. norm()
 * (binary_kernel_reduce with NormTwoOps) adds rounded squares in row order.
 * Measured against torch 2.15 on shapes 7x13 ... 1000x45 and 70000x2, one
 * and two threads: bit for bit. A one-column matrix is a contiguous vector
 * (torch's inner reduction): callers use cr_refsum_torch /
 * cr_refsum_torch_ssq for it. */

size_t cr_colsum_state_bytes(cr_colsum_kind kind, uint64_t cols)
{
    switch (kind) {
    case CR_COLSUM_WIDE: return (size_t)cols * sizeof(double);
    case CR_COLSUM_TORCH: return (size_t)cols * T_LEVELS * T_ILP * sizeof(float);
    case CR_COLSUM_TORCH_SSQ: return (size_t)cols * sizeof(float);
    }
    return 0;
}

void cr_colsum_init(cr_colsum *s, cr_colsum_kind kind, uint64_t rows, uint64_t cols, void *state)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->rows = rows;
    s->cols = cols;
    s->state = state;
    memset(state, 0, cr_colsum_state_bytes(kind, cols));
    s->chained = cols >= T_MAXW ? cols / 32 * 32 : cols / 4 * 4;
    s->lp_chain = ceil_log2(rows) / T_LEVELS;
    s->lp_ilp = ceil_log2(rows / T_ILP) / T_LEVELS;
    if (s->lp_chain < 4) s->lp_chain = 4;
    if (s->lp_ilp < 4) s->lp_ilp = 4;
    s->ilp_rows = rows / T_ILP * T_ILP;
}

/* one cascade step of a chain after its block ending at count i: acc[j]
 * (stride apart) takes acc[j - 1] up the levels while i is a multiple */
static void col_cascade(float *acc, unsigned lanes, uint64_t i, unsigned lp)
{
    const uint64_t mask = ((uint64_t)1 << lp) - 1;
    for (unsigned j = 1; j < T_LEVELS; j++) {
        for (unsigned k = 0; k < lanes; k++) {
            acc[j * T_ILP + k] += acc[(j - 1) * T_ILP + k];
            acc[(j - 1) * T_ILP + k] = 0.0f;
        }
        if ((i & (mask << (j * lp))) != 0) break;
    }
}

/* row_sum's chains are complete: multi_row_sum's final fold of the levels */
static void col_fold_ilp(cr_colsum *s)
{
    float *st = s->state;
    for (uint64_t c = s->chained; c < s->cols; c++) {
        float *a = st + c * T_LEVELS * T_ILP;
        for (unsigned j = 1; j < T_LEVELS; j++)
            for (unsigned k = 0; k < T_ILP; k++) a[k] += a[j * T_ILP + k];
    }
    s->folded = true;
}

/* columns [c0, c0 + n) of row r */
static void col_row(cr_colsum *s, uint64_t r, uint64_t c0, const float *x, uint64_t n)
{
    switch (s->kind) {
    case CR_COLSUM_WIDE: {
        double *w = s->state;
        for (uint64_t e = 0; e < n; e++) w[c0 + e] += (double)x[e];
        return;
    }
    case CR_COLSUM_TORCH_SSQ: {
        float *a = s->state;
        for (uint64_t e = 0; e < n; e++) {
            float p = x[e] * x[e];
            a[c0 + e] += p;
        }
        return;
    }
    case CR_COLSUM_TORCH: {
        float *st = s->state;
        const uint64_t step_c = (uint64_t)1 << s->lp_chain, step_i = (uint64_t)1 << s->lp_ilp;
        const bool flush_c = (r + 1) % step_c == 0;
        const uint64_t g = r / T_ILP, k = r % T_ILP;
        const bool in_ilp = r < s->ilp_rows;
        const bool flush_i = in_ilp && k == T_ILP - 1 && (g + 1) % step_i == 0;
        for (uint64_t e = 0; e < n; e++) {
            uint64_t c = c0 + e;
            float *a = st + c * T_LEVELS * T_ILP;
            if (c < s->chained) {
                a[0] += x[e];
                if (flush_c) col_cascade(a, 1, r + 1, s->lp_chain);
            } else if (in_ilp) {
                a[k] += x[e];
                if (flush_i) col_cascade(a, T_ILP, g + 1, s->lp_ilp);
            } else {
                a[0] += x[e];   /* row_sum's tail rows, after the fold */
            }
        }
        return;
    }
    }
}

void cr_colsum_add(cr_colsum *s, const float *x, uint64_t len)
{
    while (len && s->cols) {
        uint64_t r = s->pos / s->cols, c = s->pos % s->cols;
        if (r >= s->rows) return;       /* a sum over the first rows only */
        uint64_t seg = s->cols - c < len ? s->cols - c : len;
        if (s->kind == CR_COLSUM_TORCH && r >= s->ilp_rows && !s->folded) col_fold_ilp(s);
        col_row(s, r, c, x, seg);
        x += seg;
        len -= seg;
        s->pos += seg;
    }
}

void cr_colsum_finish(cr_colsum *s, double *out)
{
    switch (s->kind) {
    case CR_COLSUM_WIDE: {
        const double *w = s->state;
        for (uint64_t c = 0; c < s->cols; c++) out[c] = w[c];
        return;
    }
    case CR_COLSUM_TORCH_SSQ: {
        const float *a = s->state;
        for (uint64_t c = 0; c < s->cols; c++) out[c] = a[c];
        return;
    }
    case CR_COLSUM_TORCH: {
        if (!s->folded) col_fold_ilp(s);
        float *st = s->state;
        for (uint64_t c = 0; c < s->cols; c++) {
            float *a = st + c * T_LEVELS * T_ILP;
            float v = a[0];
            if (c < s->chained)
                for (unsigned j = 1; j < T_LEVELS; j++) v += a[j * T_ILP];
            else
                for (unsigned k = 1; k < T_ILP; k++) v += a[k];
            out[c] = v;
        }
        return;
    }
    }
}

/* ---- mergekit 0.1.5's slerp statistics over chunks of 2^20 ------------------
 *
 * slerp.py reduces a tensor in chunks of _CHUNK_ELEMENTS: per chunk a
 * torch norm (vector_norm over the chunk) and a torch sum; the chunk norms
 * are then the input of one more vector_norm (a contiguous [K] vector to
 * torch: rounded squares in the norm-2 order above) and the chunk sums of
 * one more sum (torch's 1-D cascade). A norm chunk is a TORCH_SSQ stream,
 * a sum chunk is buffered (its cascade depends on its length) and summed
 * when complete; either way the values arrive in element order. */

static uint64_t chunk_count(uint64_t n) { return (n + CR_REFSUM_CHUNK - 1) / CR_REFSUM_CHUNK; }
static uint64_t chunk_len(uint64_t n, uint64_t c)
{
    uint64_t left = n - c * CR_REFSUM_CHUNK;
    return left < CR_REFSUM_CHUNK ? left : CR_REFSUM_CHUNK;
}

size_t cr_chunksum_state_bytes(cr_chunksum_kind kind, uint64_t n)
{
    size_t b = (size_t)chunk_count(n) * sizeof(float);
    if (kind == CR_CHUNKSUM_TORCH) b += (size_t)chunk_len(n, 0) * sizeof(float);
    return b;
}

void cr_chunksum_init(cr_chunksum *s, cr_chunksum_kind kind, uint64_t n, void *state)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->n = n;
    s->parts = state;
    if (kind == CR_CHUNKSUM_TORCH) s->buf = s->parts + chunk_count(n);
    else cr_refsum_stream_init(&s->cur, CR_REFSUM_TORCH_SSQ, chunk_len(n, 0));
}

void cr_chunksum_add(cr_chunksum *s, const float *x, uint64_t len)
{
    while (len) {
        const uint64_t c = s->pos / CR_REFSUM_CHUNK, at = s->pos % CR_REFSUM_CHUNK;
        const uint64_t clen = chunk_len(s->n, c);
        const uint64_t take = clen - at < len ? clen - at : len;
        if (s->kind == CR_CHUNKSUM_TORCH) memcpy(s->buf + at, x, (size_t)take * sizeof *x);
        else cr_refsum_stream_add(&s->cur, x, take);
        s->pos += take;
        x += take;
        len -= take;
        if (at + take < clen) continue;
        if (s->kind == CR_CHUNKSUM_TORCH) {
            s->parts[c] = cr_refsum_torch(s->buf, clen, false);
        } else {
            s->parts[c] = sqrtf(cr_refsum_stream_finish(&s->cur));   /* the chunk's norm, f32 */
            if (s->pos < s->n) cr_refsum_stream_init(&s->cur, CR_REFSUM_TORCH_SSQ, chunk_len(s->n, c + 1));
        }
    }
}

float cr_chunksum_finish(cr_chunksum *s)
{
    const uint64_t k = chunk_count(s->n);
    if (s->kind == CR_CHUNKSUM_TORCH) return cr_refsum_torch(s->parts, k, false);
    return cr_refsum_torch_ssq(s->parts, k);
}

bool cr_chunksum_whole(uint64_t vm_chunk, uint64_t n)
{
    return vm_chunk && (vm_chunk % CR_REFSUM_CHUNK == 0 || vm_chunk >= n);
}

size_t cr_chunksum_parts_bytes(uint64_t n) { return (size_t)chunk_count(n) * sizeof(float); }

/* the cascade partials of the longest chunk and a tail (shorter than a block) */
size_t cr_chunksum_work_floats(uint64_t n)
{
    cr_torch_sum_plan pl;
    cr_torch_sum_plan_init(&pl, chunk_len(n, 0), false);
    return (size_t)(pl.n_blocks * 32 + pl.block);
}

size_t cr_chunksum_work_bytes(uint64_t n)
{
    size_t b = cr_chunksum_work_floats(n) * sizeof(float);
    if (b < sizeof(cr_refsum_stream)) b = sizeof(cr_refsum_stream);
    return (b + 63) / 64 * 64;
}

static bool pieces_fit(uint64_t clen, uint64_t step)
{
    cr_torch_sum_plan pl;
    cr_torch_sum_plan_init(&pl, clen, false);
    return step % pl.group == 0;
}

bool cr_chunksum_pieces_ok(uint64_t n, uint64_t step)
{
    if (step >= n) return true;                   /* one piece per chunk */
    if (!step || CR_REFSUM_CHUNK % step) return false;   /* pieces would not restart at each chunk */
    return pieces_fit(chunk_len(n, 0), step) && pieces_fit(chunk_len(n, chunk_count(n) - 1), step);
}

void cr_chunksum_init_parts(cr_chunksum *s, cr_chunksum_kind kind, uint64_t n, float *parts)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->n = n;
    s->parts = parts;
}

void cr_chunksum_add_at(cr_chunksum *s, void *work, uint64_t first, const float *x, uint64_t len)
{
    while (len) {
        const uint64_t c = first / CR_REFSUM_CHUNK, at = first % CR_REFSUM_CHUNK;
        const uint64_t clen = chunk_len(s->n, c);
        const uint64_t take = clen - at < len ? clen - at : len;
        if (s->kind == CR_CHUNKSUM_TORCH_NORM) {
            cr_refsum_stream *st = work;
            if (at == 0) cr_refsum_stream_init(st, CR_REFSUM_TORCH_SSQ, clen);
            cr_refsum_stream_add(st, x, take);
            if (at + take == clen) s->parts[c] = sqrtf(cr_refsum_stream_finish(st));   /* the chunk's norm, f32 */
        } else {
            cr_torch_sum_plan pl;
            cr_torch_sum_plan_init(&pl, clen, false);
            float *partials = work, *tail = partials + pl.n_blocks * 32;
            if (at == 0) memset(partials, 0, (size_t)pl.n_blocks * 32 * sizeof *partials);
            cr_torch_sum_add(&pl, x, at, take, partials, tail);
            if (at + take == clen) s->parts[c] = cr_torch_sum_finish(&pl, partials, tail);
        }
        first += take;
        x += take;
        len -= take;
    }
}
