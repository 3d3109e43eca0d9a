/* test_refsum.c — the library summation orders of vm/refsum.c agree to the
 * bit with NumPy 2.4 / OpenBLAS 0.3.31 (Haswell kernel) / torch 2.15 (CPU,
 * AVX2, one thread) on fixed vectors. The expected bits were printed by
 * those libraries (np.sum, x.dot(x), torch.sum, torch.norm(dim=-1), and
 * torch.sum of the bf16-rounded vector); the "wide" f64 sum differs from
 * them in most rows, so the test tells the orders apart. */
#include "harness.h"
#include "base.h"
#include "refsum.h"
#include "dtype.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>

typedef struct ref_row {
    uint64_t n;
    uint32_t np_sum, blas_ssq, torch_sum, torch_norm, torch_sum_bf16;
} ref_row;

static const ref_row refs[] = {
    { 5, 0x3fb4eec5, 0x3f28fbd4, 0x3fb4eec6, 0x3f4ffd6f, 0x3fb50000 },
    { 20, 0x3f581982, 0x40697e49, 0x3f581983, 0x3ff47ce1, 0x3f570000 },
    { 100, 0x3f19902c, 0x4183e562, 0x3f19902b, 0x4081eef4, 0x3f160000 },
    { 1000, 0x3f0c15ae, 0x431c65a0, 0x3f0c15b0, 0x41481813, 0x3f030000 },
    { 1340, 0x3f1f27f0, 0x43520904, 0x3f1f27fa, 0x4167e1a8, 0x3f180000 },
    { 4099, 0x3ffa4d7c, 0x442025b0, 0x3ffa4d80, 0x41ca7a94, 0x3fed0000 },
};

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static float bf16_round(float f)
{
    uint32_t u = bits(f);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

/* x[i] = sin(ph i) (1 + i mod 7) / 8, computed in double, rounded */
static void fill_ph(float *x, uint64_t n, double ph)
{
    for (uint64_t i = 0; i < n; i++) x[i] = (float)(sin((double)i * ph) * (double)(1 + i % 7) / 8.0);
}
static void fill(float *x, uint64_t n) { fill_ph(x, n, 0.37); }

static float xs[4101], tmp[4101];   /* the longest refs and tail_refs row */

TEST(numpy_pairwise_sum)
{
    for (size_t r = 0; r < CR_ARRAY_LEN(refs); r++) {
        fill(xs, refs[r].n);
        CHECK_EQ_INT(bits(cr_refsum_numpy(xs, refs[r].n)), refs[r].np_sum);
    }
}

TEST(openblas_sdot_sum_of_squares)
{
    for (size_t r = 0; r < CR_ARRAY_LEN(refs); r++) {
        fill(xs, refs[r].n);
        CHECK_EQ_INT(bits(cr_refsum_blas_ssq(xs, refs[r].n)), refs[r].blas_ssq);
    }
}

TEST(torch_cascade_sum)
{
    for (size_t r = 0; r < CR_ARRAY_LEN(refs); r++) {
        fill(xs, refs[r].n);
        CHECK_EQ_INT(bits(cr_refsum_torch(xs, refs[r].n, false)), refs[r].torch_sum);
        /* bf16: the values rounded to bf16, 16-value loads, result rounded */
        for (uint64_t i = 0; i < refs[r].n; i++) tmp[i] = bf16_round(xs[i]);
        CHECK_EQ_INT(bits(bf16_round(cr_refsum_torch(tmp, refs[r].n, true))), refs[r].torch_sum_bf16);
    }
}

/* torch.linalg.vector_norm of fill(n) with n % 4 != 0: the tail's last
 * n % 4 squares are fused multiply-adds in torch (of n = 1..3000 only 591
 * gives other bits with rounded squares) */
static const struct { uint64_t n; uint32_t norm; } tail_refs[] = {
    { 7, 0x3fa532b0 }, { 13, 0x3fcb2a92 }, { 591, 0x4119b43f }, { 1027, 0x414ade85 }, { 4101, 0x41ca8558 },
};

TEST(torch_norm2)
{
    for (size_t r = 0; r < CR_ARRAY_LEN(refs); r++) {
        fill(xs, refs[r].n);
        CHECK_EQ_INT(bits(sqrtf(cr_refsum_torch_ssq(xs, refs[r].n))), refs[r].torch_norm);
    }
    for (size_t r = 0; r < CR_ARRAY_LEN(tail_refs); r++) {
        fill(xs, tail_refs[r].n);
        CHECK_MSG(bits(sqrtf(cr_refsum_torch_ssq(xs, tail_refs[r].n))) == tail_refs[r].norm, "n=%llu",
                  (unsigned long long)tail_refs[r].n);
    }
}

/* mergekit 0.1.5's slerp statistics (slerp.py, chunks of 2^20): torch's
 * vector_norm(stack(chunk norms)) of fill(n) and stack(chunk sums).sum() of
 * fill(n) * fill_ph(n, 0.23), printed by torch 2.15, fed in pieces that cut
 * the chunks anywhere; the whole-tensor norm and sum differ in 3 of 4 */
TEST(torch_chunked_sums)
{
    static const struct { uint64_t n; uint32_t norm, dot, whole_norm, whole_dot; } cref[] = {
        { (1u << 20) + 4163, 0x43cac998, 0xbfa2529b, 0x43cac998, 0xbfa25298 },
        { (2u << 20) + 5, 0x440f1bca, 0x3fa10c52, 0x440f1bc7, 0x3fa10c7e },
    };
    const uint64_t pieces[] = { 1000, 16384, 77777, 3u << 20 };
    for (size_t r = 0; r < CR_ARRAY_LEN(cref); r++) {
        uint64_t n = cref[r].n;
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        REQUIRE(x && y);
        fill(x, n);
        fill_ph(y, n, 0.23);
        for (uint64_t i = 0; i < n; i++) y[i] = x[i] * y[i];
        for (size_t q = 0; q < CR_ARRAY_LEN(pieces); q++) {
            cr_chunksum cs[2];
            void *st[2];
            for (int k = 0; k < 2; k++) {
                st[k] = malloc(cr_chunksum_state_bytes((cr_chunksum_kind)k, n));
                REQUIRE(st[k]);
                cr_chunksum_init(&cs[k], (cr_chunksum_kind)k, n, st[k]);
            }
            for (uint64_t f = 0; f < n; f += pieces[q]) {
                uint64_t len = n - f < pieces[q] ? n - f : pieces[q];
                cr_chunksum_add(&cs[CR_CHUNKSUM_TORCH], y + f, len);
                cr_chunksum_add(&cs[CR_CHUNKSUM_TORCH_NORM], x + f, len);
            }
            CHECK_MSG(bits(sqrtf(cr_chunksum_finish(&cs[CR_CHUNKSUM_TORCH_NORM]))) == cref[r].norm,
                      "norm n=%llu piece %llu", (unsigned long long)n, (unsigned long long)pieces[q]);
            CHECK_MSG(bits(cr_chunksum_finish(&cs[CR_CHUNKSUM_TORCH])) == cref[r].dot,
                      "dot n=%llu piece %llu", (unsigned long long)n, (unsigned long long)pieces[q]);
            free(st[0]);
            free(st[1]);
        }
        CHECK_EQ_INT(bits(sqrtf(cr_refsum_torch_ssq(x, n))), cref[r].whole_norm);
        CHECK_EQ_INT(bits(cr_refsum_torch(y, n, false)), cref[r].whole_dot);
        free(x);
        free(y);
    }
}

/* the orders really differ from a wide sum (else the tests above prove
 * nothing about order) */
TEST(orders_are_distinct)
{
    int differ = 0;
    for (size_t r = 0; r < CR_ARRAY_LEN(refs); r++) {
        fill(xs, refs[r].n);
        double w = 0;
        for (uint64_t i = 0; i < refs[r].n; i++) w += xs[i];
        if (bits((float)w) != refs[r].np_sum) differ++;
        if (bits((float)w) != refs[r].torch_sum) differ++;
    }
    CHECK(differ >= 6);
}

/* the pieced torch sum (what a chunked kernel computes) is the whole one,
 * for sizes on both sides of block and level boundaries, pieces of one
 * group up to many blocks, f32 and bf16 */
TEST(torch_sum_in_pieces)
{
    const uint64_t ns[] = { 0, 1, 7, 8, 15, 16, 17, 63, 64, 65, 1000, 1024, 1025, 4099, 65536, 65537 + 64,
                            (1u << 20) + 3, (1u << 22) - 16, 5000000 };
    uint64_t state = 88172645463325252ull;
    for (size_t t = 0; t < sizeof ns / sizeof *ns; t++)
        for (int red = 0; red < 2; red++) {
            uint64_t n = ns[t];
            float *x = malloc((n ? n : 1) * sizeof *x), *y = malloc((n ? n : 1) * sizeof *y);
            for (uint64_t i = 0; i < n; i++) {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                float v = (float)((double)(state >> 11) / 9007199254740992.0 - 0.37) * 3.0f;
                x[i] = red ? cr_bits_f32(cr_f32_bits(v) & 0xffff0000u) : v;
            }
            memcpy(y, x, (n ? n : 1) * sizeof *x);
            float whole = cr_refsum_torch(y, n, red);
            cr_torch_sum_plan pl;
            cr_torch_sum_plan_init(&pl, n, red);
            float *part = calloc(pl.n_blocks * 32 + 1, sizeof *part);
            float *tail = malloc((n - pl.rem_start + 1) * sizeof *tail);
            uint64_t piece = pl.group * (1 + t % 5);
            for (uint64_t f = 0; f < n; f += piece)
                cr_torch_sum_add(&pl, x + f, f, n - f < piece ? n - f : piece, part, tail);
            float pieced = cr_torch_sum_finish(&pl, part, tail);
            CHECK_MSG(bits(whole) == bits(pieced), "n=%llu reduced=%d: %a vs %a", (unsigned long long)n, red,
                      whole, pieced);
            free(x); free(y); free(part); free(tail);
        }
}

/* the in-order streams (what a chunked kernel feeds) give the whole-vector
 * bits, for sizes around leaf, lane and 2^k boundaries and pieces of 1 to
 * thousands of elements that cut leaves anywhere */
TEST(sums_streamed_in_order)
{
    const uint64_t ns[] = { 0, 1, 5, 7, 8, 9, 31, 32, 33, 127, 128, 129, 136, 255, 256, 257, 1000, 1340, 4099,
                            16384, 16385, 65536 + 24, 100003, (1u << 20) + 3, 3000017 };
    const uint64_t pieces[] = { 1, 3, 8, 100, 1024, 16384, 77777 };
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (size_t t = 0; t < sizeof ns / sizeof *ns; t++) {
        uint64_t n = ns[t];
        float *x = malloc((n ? n : 1) * sizeof *x);
        for (uint64_t i = 0; i < n; i++) {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            x[i] = (float)((double)(state >> 11) / 9007199254740992.0 - 0.41) * 2.5f;
        }
        float want[3] = { cr_refsum_numpy(x, n), cr_refsum_blas_ssq(x, n), cr_refsum_torch_ssq(x, n) };
        for (int kind = 0; kind < 3; kind++)
            for (size_t q = 0; q < sizeof pieces / sizeof *pieces; q++) {
                if (n > 200000 && pieces[q] < 100) continue;
                cr_refsum_stream st;
                cr_refsum_stream_init(&st, (cr_refsum_kind)kind, n);
                uint64_t piece = pieces[q];
                for (uint64_t f = 0, i = 0; f < n; f += piece, i++) {
                    /* vary the piece: pieces need not be equal */
                    uint64_t len = piece + (i % 3 == 1 ? 5 : 0);
                    if (len > n - f) len = n - f;
                    cr_refsum_stream_add(&st, x + f, len);
                    f += len - piece;
                }
                float got = cr_refsum_stream_finish(&st);
                CHECK_MSG(bits(got) == bits(want[kind]), "kind %d n=%llu piece %llu: %a vs %a", kind,
                          (unsigned long long)n, (unsigned long long)piece, got, want[kind]);
            }
        free(x);
    }
}

int main(void)
{
    RUN(sums_streamed_in_order);
    RUN(torch_sum_in_pieces);
    RUN(numpy_pairwise_sum);
    RUN(openblas_sdot_sum_of_squares);
    RUN(torch_cascade_sum);
    RUN(torch_norm2);
    RUN(torch_chunked_sums);
    RUN(orders_are_distinct);
    return cr_test_summary();
}
