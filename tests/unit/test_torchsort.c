/* test_torchsort.c — torch's tie order on the thread pool
 * (cr_torchsort_partition_par, vm/torchsort.c): splitting one partition
 * across threads (counting stoppers by segment, pairing them by ordinal,
 * resuming the loop after the last pair surely swapped) must give exactly
 * the array the element-at-a-time libstdc++ loop gives. Small min_words
 * and seg_words send every partition of these small arrays through the
 * parallel path, so segment and piece edges fall everywhere. */
#include "harness.h"
#include "base.h"
#include "pool.h"
#include "torchsort.h"

#include <stdint.h>
#include <string.h>

static uint64_t xorshift(uint64_t *st)
{
    *st ^= *st << 13;
    *st ^= *st >> 7;
    *st ^= *st << 17;
    return *st;
}

enum { SHAPES = 8 };

/* shape: 0 all ties, 1 three keys, 2 200 keys, 3 random, 4 sorted runs,
 * 5 reversed runs, 6 NaN keys among few, 7 two keys (one rare) */
static uint32_t fill(uint32_t *a, uint64_t n, int shape, uint64_t *st, bool tag)
{
    const uint32_t nan_key = 0x7fc00000u;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t r = (uint32_t)xorshift(st);
        uint32_t key = shape == 0   ? 0x3f800000u
                       : shape == 1 ? 0x3f000000u + r % 3
                       : shape == 2 ? 0x3f000000u + r % 200
                       : shape == 3 ? r & 0x7f7fffffu
                       : shape == 4 ? (uint32_t)(i / 7)
                       : shape == 5 ? (uint32_t)((n - i) / 5)
                       : shape == 6 ? (r % 5 == 0 ? nan_key : 0x3f000000u + r % 4)
                                    : (r % 97 == 0 ? 2u : 1u);
        a[i] = key;
    }
    uint32_t tie = a[n / 3];
    if (tag)
        for (uint64_t i = 0; i < n; i++)
            if (a[i] == tie) a[i] = CR_TORCHSORT_TIE | (uint32_t)i;
    return tie;
}

TEST(parallel_partition_is_libstdcxx)
{
    const cr_allocator *al = cr_default_allocator();
    const cr_kernels *tables[] = { &cr_kernels_scalar, &cr_kernels_avx2, &cr_kernels_avx512 };
    static const uint64_t sizes[] = { 17, 100, 255, 256, 257, 1000, 4095, 4097, 20011, 65536, 100003 };
    static const uint64_t segs[] = { 1, 63, 256, 1000 };
    cr_pool *pools[4];
    for (unsigned t = 0; t < 4; t++) {
        cr_error err = {0};
        REQUIRE(cr_pool_init(al, t + 1, &pools[t], &err) == CR_OK);
    }
    uint64_t st = 0x9e3779b97f4a7c15ull;
    int mismatches = 0, cases = 0;
    for (size_t si = 0; si < CR_ARRAY_LEN(sizes); si++) {
        uint64_t n = sizes[si];
        uint32_t *a = cr_malloc(al, n * 4), *b = cr_malloc(al, n * 4), *c = cr_malloc(al, n * 4);
        REQUIRE(a && b && c);
        for (int shape = 0; shape < SHAPES; shape++) {
            for (int tagged = 0; tagged < 2; tagged++) {
                uint32_t tie = fill(a, n, shape, &st, tagged);
                for (int desc = 0; desc < 2; desc++) {
                    uint64_t bounds[][2] = { { n / 2, n / 3 + 1 }, { 1, 1 }, { n - 1, n - 1 }, { n / 10, n / 10 } };
                    int bi = (int)(xorshift(&st) % 4);
                    memcpy(c, a, n * 4);
                    cr_torchsort_partition_plain(c, n, desc, tie, bounds[bi], 2);
                    for (unsigned t = 0; t < 4; t++) {
                        const cr_kernels *kern = tables[(t + (unsigned)shape) % 3];
                        if (!cr_kernels_supported(kern)) kern = &cr_kernels_scalar;
                        cr_torchsort_par par = { pools[t], 17, segs[(si + t) % CR_ARRAY_LEN(segs)] };
                        memcpy(b, a, n * 4);
                        cr_torchsort_partition_par(kern, b, n, desc, tie, bounds[bi], 2, &par);
                        mismatches += memcmp(b, c, n * 4) != 0;
                        cases++;
                    }
                }
            }
        }
        cr_free(al, a);
        cr_free(al, b);
        cr_free(al, c);
    }
    for (unsigned t = 0; t < 4; t++) cr_pool_free(pools[t]);
    CHECK(cases == (int)CR_ARRAY_LEN(sizes) * SHAPES * 2 * 2 * 4);
    CHECK_MSG(mismatches == 0, "%d of %d parallel partitions differ from libstdc++'s", mismatches, cases);
}

/* the default thresholds on a gather above CR_TORCHSORT_PAR_MIN (the size
 * the VM sorts in parallel), against the serial block partition */
TEST(parallel_partition_default_sizes)
{
    const cr_allocator *al = cr_default_allocator();
    const uint64_t n = 3 * (uint64_t)CR_TORCHSORT_PAR_MIN + 12345;
    uint32_t *a = cr_malloc(al, n * 4), *b = cr_malloc(al, n * 4);
    REQUIRE(a && b);
    cr_pool *pool;
    cr_error err = {0};
    REQUIRE(cr_pool_init(al, 3, &pool, &err) == CR_OK);
    const cr_kernels *kern = cr_kernels_supported(&cr_kernels_avx512) ? &cr_kernels_avx512 : &cr_kernels_scalar;
    uint64_t st = 0x2545f4914f6cdd1dull;
    int mismatches = 0;
    for (int shape = 1; shape < 4; shape++) {
        uint32_t tie = fill(a, n, shape, &st, false);
        memcpy(b, a, n * 4);
        uint64_t bound = n / 3;
        cr_torchsort_partition(kern, a, n, true, tie, &bound, 1, NULL);
        cr_torchsort_par par = { pool, 0, 0 };
        cr_torchsort_partition_par(kern, b, n, true, tie, &bound, 1, &par);
        mismatches += memcmp(a, b, n * 4) != 0;
    }
    cr_pool_free(pool);
    cr_free(al, a);
    cr_free(al, b);
    CHECK_EQ_INT(mismatches, 0);
}

/* tsan: the pieces of one partition on the pool's threads */
int main(void)
{
    RUN(parallel_partition_is_libstdcxx);
    RUN(parallel_partition_default_sizes);
    return cr_test_summary();
}
