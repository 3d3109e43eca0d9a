/* test_npmath.c — NumPy's float32 np.sin / np.arccos (vm/npmath.c) and
 * torch's sort tie order (vm/torchsort.c) agree to the bit with NumPy 2.4.6
 * (AVX2+FMA dispatch, glibc 2.36 acosf) and torch 2.15 on fixed inputs. The
 * expected bits were printed by those libraries; every sin/acos row is one
 * where the library is not correctly rounded, so a libm-in-double answer
 * fails it. */
#include "harness.h"
#include "base.h"
#include "npmath.h"
#include "torchsort.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float flt(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* {x, np.sin(x)} and {x, np.arccos(x)} */
static const uint32_t sins[][2] = {
    {0x401bf5fb, 0x3f25d6c8}, {0x402042a4, 0x3f185f98}, {0x3f5fec54, 0x3f44711f}, {0x4048283f, 0x3c6799a8},
};
static const uint32_t acoss[][2] = {
    {0x3e7e134c, 0x3fa8f79e}, {0xbeb3c28d, 0x3ff6fb02}, {0x3ef0985c, 0x3f8a7206}, {0x3f0744b5, 0x3f81cdba},
};

TEST(numpy_sin_bits)
{
    for (size_t i = 0; i < CR_ARRAY_LEN(sins); i++) {
        float x = flt(sins[i][0]);
        CHECK(bits(cr_np_sinf(x)) == sins[i][1]);
        CHECK(bits((float)sin((double)x)) != sins[i][1]);   /* not correctly rounded */
    }
    CHECK(bits(cr_np_cosf(0.0f)) == bits(1.0f));
    CHECK(isnan(cr_np_sinf(NAN)));
}

TEST(numpy_arccos_bits)
{
    for (size_t i = 0; i < CR_ARRAY_LEN(acoss); i++) {
        float x = flt(acoss[i][0]);
        CHECK(bits(cr_glibc_acosf(x)) == acoss[i][1]);
        CHECK(bits((float)acos((double)x)) != acoss[i][1]);
    }
    CHECK(cr_glibc_acosf(1.0f) == 0.0f);
    CHECK(isnan(cr_glibc_acosf(1.5f)));
}

/* w[i] = (7i + 3) mod 5 over 40 elements: torch.argsort(w, descending=True)[:13]
 * and torch.sort(w).indices[27:] (sorted here) */
TEST(torch_sort_ties)
{
    static const uint32_t desc[13] = {0, 3, 8, 13, 15, 18, 20, 23, 25, 28, 30, 33, 38};
    static const uint32_t asc[13] = {3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28, 33, 38};
    for (int dir = 0; dir < 2; dir++) {
        /* the 3s tie at both boundaries: tagged with their index; the 4s
         * are kept whatever the order */
        uint32_t kv[40];
        const uint32_t three = cr_torchsort_key(3.0f);
        for (uint32_t i = 0; i < 40; i++) {
            uint32_t key = cr_torchsort_key((float)((i * 7 + 3) % 5));
            kv[i] = key == three ? CR_TORCHSORT_TIE | i : key;
        }
        uint64_t bound = dir ? 13 : 27;
        cr_torchsort_partition(&cr_kernels_scalar, kv, 40, dir == 1, three, &bound, 1, NULL);
        int seen[40] = {0};
        for (uint32_t i = 0; i < 40; i++)
            if ((i * 7 + 3) % 5 == 4) seen[i] = 1;
        for (uint32_t p = dir ? 0 : 27; p < (dir ? 13u : 40u); p++)
            if (kv[p] & CR_TORCHSORT_TIE) seen[kv[p] & ~CR_TORCHSORT_TIE] = 1;
        const uint32_t *want = dir ? desc : asc;
        int ok = 1;
        for (int j = 0; j < 13; j++) ok &= seen[want[j]];
        int cnt = 0;
        for (int i = 0; i < 40; i++) cnt += seen[i];
        CHECK(ok && cnt == 13);
    }
}

/* w[i] = (a·i + b) mod m over n elements: which of the ties at the k-th
 * value torch.topk(w, k) returns (torch 2.15, recorded; sce's mask). The
 * kept tie indices, sorted, are summarised as count and sum of (j+1)·t_j. */
static void topk_ties(uint32_t n, uint32_t a, uint32_t b, uint32_t m, uint32_t k, float kth,
                      uint64_t *count, uint64_t *hash)
{
    uint32_t *kv = malloc(n * sizeof *kv);
    const uint32_t tie = cr_torchsort_key(kth);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t key = cr_torchsort_key((float)((i * a + b) % m));
        kv[i] = key == tie ? CR_TORCHSORT_TIE | i : key;
    }
    cr_torchsort_topk(&cr_kernels_scalar, kv, n, k, tie, NULL);
    uint8_t *kept = calloc(n, 1);
    for (uint32_t p = 0; p < k; p++)
        if (kv[p] & CR_TORCHSORT_TIE) kept[kv[p] & ~CR_TORCHSORT_TIE] = 1;
    *count = 0;
    *hash = 0;
    for (uint32_t i = 0; i < n; i++)
        if (kept[i]) *hash += ++*count * i;
    free(kv);
    free(kept);
}

TEST(torch_topk_ties)
{
    uint64_t c, h;
    /* nth_element: 13 of 40 = the eight 4s and the 3s {0, 15, 20, 25, 30} */
    topk_ties(40, 7, 3, 5, 13, 3.0f, &c, &h);
    CHECK_EQ_INT(c, 5);
    CHECK_EQ_INT(h, 1 * 0 + 2 * 15 + 3 * 20 + 4 * 25 + 5 * 30);
    /* nth_element over 3000 with 68 of the 4s kept, not the lowest indices */
    topk_ties(3000, 37, 11, 9, 1400, 4.0f, &c, &h);
    CHECK_EQ_INT(c, 68);
    CHECK_EQ_INT(h, 5847510);
    /* partial_sort (4·64 <= 300): {2, 6, 10, 14} */
    topk_ties(300, 13, 5, 4, 4, 3.0f, &c, &h);
    CHECK_EQ_INT(c, 4);
    CHECK_EQ_INT(h, 1 * 2 + 2 * 6 + 3 * 10 + 4 * 14);
}

/* The block partition (a block of stoppers at a time, no branch per
 * element) must make exactly the swaps of libstdc++'s element-at-a-time
 * loop: the whole arrays are compared, for both directions, on inputs with
 * few or many distinct keys, sorted and reversed runs, and sizes around
 * the block length, with every kernel table this CPU runs. */
static uint64_t xorshift(uint64_t *st)
{
    *st ^= *st << 13;
    *st ^= *st >> 7;
    *st ^= *st << 17;
    return *st;
}

TEST(torch_sort_block_partition_is_libstdcxx)
{
    const cr_allocator *al = cr_default_allocator();
    const cr_kernels *tables[] = { &cr_kernels_scalar, &cr_kernels_avx2, &cr_kernels_avx512 };
    static const uint64_t sizes[] = { 17, 255, 256, 257, 511, 513, 1000, 4099, 65537, 300007 };
    uint64_t st = 0x9e3779b97f4a7c15ull;
    int mismatches = 0, cases = 0;
    for (size_t si = 0; si < CR_ARRAY_LEN(sizes); si++) {
        uint64_t n = sizes[si];
        uint32_t *a = cr_malloc(al, n * 4), *b = cr_malloc(al, n * 4);
        CHECK(a && b);
        if (!a || !b) { cr_free(al, a); cr_free(al, b); return; }
        for (int shape = 0; shape < 5; shape++) {
            uint32_t distinct = shape == 0 ? 3 : shape == 1 ? 200 : 1u << 30;
            uint32_t tie = 0;
            for (uint64_t i = 0; i < n; i++) {
                uint32_t key = shape == 3 ? (uint32_t)(i / 7) : shape == 4 ? (uint32_t)((n - i) / 5)
                                          : (uint32_t)(xorshift(&st) % distinct);
                if (i == n / 3) tie = key;
                a[i] = key;
            }
            for (uint64_t i = 0; i < n; i++)
                if (a[i] == tie) a[i] = CR_TORCHSORT_TIE | (uint32_t)i;
            for (int desc = 0; desc < 2; desc++) {
                uint64_t bounds[2] = { n / 2, n / 3 + 1 };
                uint32_t *c = cr_malloc(al, n * 4);
                CHECK(c != NULL);
                if (!c) continue;
                memcpy(c, a, n * 4);
                cr_torchsort_partition_plain(c, n, desc, tie, bounds, 2);
                for (size_t ki = 0; ki < CR_ARRAY_LEN(tables); ki++) {
                    if (!cr_kernels_supported(tables[ki])) continue;
                    memcpy(b, a, n * 4);
                    cr_torchsort_partition(tables[ki], b, n, desc, tie, bounds, 2, NULL);
                    mismatches += memcmp(b, c, n * 4) != 0;
                }
                cases++;
                cr_free(al, c);
            }
        }
        cr_free(al, a);
        cr_free(al, b);
    }
    CHECK(cases == (int)CR_ARRAY_LEN(sizes) * 10);
    CHECK(mismatches == 0);
}

/* A gather may hold its ties untagged, as plain keys (the TIES pass that
 * fills it runs before the threshold is known): the sort tags each one
 * with its index on entry before it moves, so the result is the array the
 * tagged input gives, for the partition (every direction, ranges with and
 * without a bound, sizes under and around a block) and for topk. */
TEST(torch_sort_tags_untagged_ties)
{
    const cr_allocator *al = cr_default_allocator();
    const cr_kernels *tables[] = { &cr_kernels_scalar, &cr_kernels_avx2, &cr_kernels_avx512 };
    static const uint64_t sizes[] = { 1, 2, 5, 16, 17, 40, 255, 256, 257, 513, 4099, 65537 };
    uint64_t st = 0x2545f4914f6cdd1dull;
    int mismatches = 0, cases = 0;
    for (size_t si = 0; si < CR_ARRAY_LEN(sizes); si++) {
        uint64_t n = sizes[si];
        uint32_t *raw = cr_malloc(al, n * 4), *tagged = cr_malloc(al, n * 4), *a = cr_malloc(al, n * 4),
                 *b = cr_malloc(al, n * 4);
        CHECK(raw && tagged && a && b);
        if (!raw || !tagged || !a || !b) { cr_free(al, raw); cr_free(al, tagged); cr_free(al, a); cr_free(al, b); return; }
        for (int shape = 0; shape < 3; shape++) {
            uint32_t distinct = shape == 0 ? 3 : shape == 1 ? 40 : 1000;
            for (uint64_t i = 0; i < n; i++) raw[i] = (uint32_t)(xorshift(&st) % distinct) + 0x3f000000u;
            uint32_t tie = raw[n / 2];
            for (uint64_t i = 0; i < n; i++) tagged[i] = raw[i] == tie ? CR_TORCHSORT_TIE | (uint32_t)i : raw[i];
            for (size_t ki = 0; ki < CR_ARRAY_LEN(tables); ki++) {
                if (!cr_kernels_supported(tables[ki])) continue;
                for (int desc = 0; desc < 2; desc++) {
                    uint64_t bounds[][2] = { { n / 2, n / 3 + 1 }, { 0, n }, { 1, 1 } };
                    for (int bi = 0; bi < 3; bi++) {
                        memcpy(a, raw, n * 4);
                        memcpy(b, tagged, n * 4);
                        cr_torchsort_partition(tables[ki], a, n, desc, tie, bounds[bi], 2, NULL);
                        cr_torchsort_partition(tables[ki], b, n, desc, tie, bounds[bi], 2, NULL);
                        mismatches += memcmp(a, b, n * 4) != 0;
                        cases++;
                    }
                }
                uint64_t ks[] = { 1, n / 2 + 1, n };
                for (int kj = 0; kj < 3; kj++) {
                    memcpy(a, raw, n * 4);
                    memcpy(b, tagged, n * 4);
                    cr_torchsort_topk(tables[ki], a, n, ks[kj], tie, NULL);
                    cr_torchsort_topk(tables[ki], b, n, ks[kj], tie, NULL);
                    mismatches += memcmp(a, b, n * 4) != 0;
                    cases++;
                }
            }
        }
        cr_free(al, raw);
        cr_free(al, tagged);
        cr_free(al, a);
        cr_free(al, b);
    }
    CHECK(cases > 0);
    CHECK_MSG(mismatches == 0, "%d of %d sorts differ from the tagged input's", mismatches, cases);
}

int main(void)
{
    RUN(numpy_sin_bits);
    RUN(numpy_arccos_bits);
    RUN(torch_sort_ties);
    RUN(torch_topk_ties);
    RUN(torch_sort_block_partition_is_libstdcxx);
    RUN(torch_sort_tags_untagged_ties);
    return cr_test_summary();
}
