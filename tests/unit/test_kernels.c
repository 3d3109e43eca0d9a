/* test_kernels.c — every SIMD kernel table against the scalar reference on
 * sizes that hit every tail (1, 7, 15, 16, 17, 31, 33, 1000003), with
 * f32/bf16/f16 loads and stores, special values (NaN, inf, subnormals,
 * signed zeros, bf16/f16 rounding ties) included. Elementwise results must
 * be bit-identical; sums too, because every table accumulates in the same
 * eight f64 lanes (kernels.h), so the documented tolerance is zero. Tables
 * the CPU cannot run are skipped and reported. */
#include "harness.h"
#include "kernels/kernels.h"
#include "ranksort.h"
#include "rng.h"

#include <stdlib.h>
#include <string.h>

static const size_t sizes[] = { 1, 7, 15, 16, 17, 31, 33, 1000003 };
enum { MAXN = 1000003 };

static uint32_t rng_state = 12345;
static uint32_t rnd(void) { rng_state = rng_state * 1664525u + 1013904223u; return rng_state; }
static float bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static void fill(float *x, size_t n, int flavour)
{
    static const uint32_t special[] = {
        0x7fc00000u, 0xffc00000u, 0x7f800000u, 0xff800000u, 0x00000000u, 0x80000000u,
        0x00000001u, 0x807fffffu, 0x3f808000u, 0x3f818000u, 0x3f80c000u, 0x477ff000u,
        0x477fefffu, 0x33800000u, 0x387fe000u, 0x38800000u, 0x7f7fffffu, 0x3f800000u,
    };
    for (size_t i = 0; i < n; i++) {
        uint32_t r = rnd();
        if (flavour == 0 && r % 16 == 0) x[i] = bits(special[(r >> 8) % (sizeof special / sizeof *special)]);
        else if (flavour == 1) x[i] = (float)((int)(r % 7) - 3);            /* small ints: ties for min/max/eq */
        else x[i] = bits((r & 0x80000000u) | (0x30000000u + (r >> 4) % 0x1c000000u));
    }
}

static int diff_bits(const float *a, const float *b, size_t n, size_t *where)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t x, y;
        memcpy(&x, a + i, 4);
        memcpy(&y, b + i, 4);
        if (x != y) { *where = i; return 1; }
    }
    return 0;
}

static void compare_table(const cr_kernels *K)
{
    const cr_kernels *S = &cr_kernels_scalar;
    float *a = malloc(MAXN * 4), *b = malloc(MAXN * 4), *c = malloc(MAXN * 4);
    float *r1 = malloc(MAXN * 4), *r2 = malloc(MAXN * 4);
    uint8_t *io1 = malloc(MAXN * 8), *io2 = malloc(MAXN * 8);
    static const cr_op unary[] = { CR_OP_MOV, CR_OP_NEG, CR_OP_ABS, CR_OP_SIGN, CR_OP_SQRT, CR_OP_EXP, CR_OP_LOG, CR_OP_NOT };
    static const cr_op binary[] = { CR_OP_ADD, CR_OP_SUB, CR_OP_MUL, CR_OP_DIV, CR_OP_MIN, CR_OP_MAX, CR_OP_GT, CR_OP_GE,
                                    CR_OP_LT, CR_OP_LE, CR_OP_EQ, CR_OP_NE, CR_OP_AND, CR_OP_OR };
    static const cr_dtype dts[] = { CR_DTYPE_F32, CR_DTYPE_BF16, CR_DTYPE_F16, CR_DTYPE_F64 };
    size_t w;
    for (int fl = 0; fl < 3; fl++) {
        fill(a, MAXN, fl); fill(b, MAXN, fl); fill(c, MAXN, fl % 2);
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
            size_t n = sizes[si];
            /* offset by 1 so vectors start unaligned too */
            const float *A = n < MAXN ? a + 1 : a, *B = n < MAXN ? b + 1 : b, *C = n < MAXN ? c + 1 : c;
            for (size_t u = 0; u < sizeof unary / sizeof *unary; u++) {
                S->unary(unary[u], r1, A, n);
                K->unary(unary[u], r2, A, n);
                CHECK_MSG(!diff_bits(r1, r2, n, &w), "%s %s n=%zu flavour %d: element %zu (%08x): %08x vs %08x",
                          K->name, cr_op_table[unary[u]].name, n, fl, w, 0u, *(uint32_t *)(void *)&r1[w], *(uint32_t *)(void *)&r2[w]);
            }
            for (size_t o = 0; o < sizeof binary / sizeof *binary; o++) {
                S->binary(binary[o], r1, A, B, n);
                K->binary(binary[o], r2, A, B, n);
                CHECK_MSG(!diff_bits(r1, r2, n, &w), "%s %s n=%zu flavour %d: element %zu differs",
                          K->name, cr_op_table[binary[o]].name, n, fl, w);
            }
            S->where(r1, C, A, B, n);
            K->where(r2, C, A, B, n);
            CHECK_MSG(!diff_bits(r1, r2, n, &w), "%s where n=%zu: element %zu differs", K->name, n, w);
            S->fma(r1, A, B, C, n);
            K->fma(r2, A, B, C, n);
            CHECK_MSG(!diff_bits(r1, r2, n, &w), "%s fma n=%zu flavour %d: element %zu: %08x vs %08x", K->name, n, fl,
                      w, *(uint32_t *)(void *)&r1[w], *(uint32_t *)(void *)&r2[w]);
            /* the fused bf16 entries are the op then round(BF16), in both tables */
            for (size_t u = 0; u < sizeof unary / sizeof *unary; u++) {
                S->unary(unary[u], r1, A, n);
                S->round(CR_DTYPE_BF16, r1, n);
                for (int tb = 0; tb < 2; tb++) {
                    (tb ? K : S)->unary_bf16(unary[u], r2, A, n);
                    CHECK_MSG(!diff_bits(r1, r2, n, &w), "%s %s_bf16 n=%zu: element %zu differs", (tb ? K : S)->name,
                              cr_op_table[unary[u]].name, n, w);
                }
            }
            for (size_t o = 0; o < sizeof binary / sizeof *binary; o++) {
                S->binary(binary[o], r1, A, B, n);
                S->round(CR_DTYPE_BF16, r1, n);
                for (int tb = 0; tb < 2; tb++) {
                    (tb ? K : S)->binary_bf16(binary[o], r2, A, B, n);
                    CHECK_MSG(!diff_bits(r1, r2, n, &w), "%s %s_bf16 n=%zu: element %zu differs", (tb ? K : S)->name,
                              cr_op_table[binary[o]].name, n, w);
                }
            }
            S->where(r1, C, A, B, n);
            S->round(CR_DTYPE_BF16, r1, n);
            for (int tb = 0; tb < 2; tb++) {
                (tb ? K : S)->where_bf16(r2, C, A, B, n);
                CHECK_MSG(!diff_bits(r1, r2, n, &w), "%s where_bf16 n=%zu: element %zu differs", (tb ? K : S)->name, n, w);
            }
            for (int t = 0; t < 3; t++) {
                memcpy(r1, A, n * 4); memcpy(r2, A, n * 4);
                S->round(dts[t], r1, n);
                K->round(dts[t], r2, n);
                CHECK_MSG(!diff_bits(r1, r2, n, &w), "%s round %d n=%zu: element %zu (%a) differs", K->name, t, n, w, A[w]);
            }
            for (int t = 0; t < 4; t++) {
                unsigned sz = dts[t] == CR_DTYPE_F64 ? 8 : dts[t] == CR_DTYPE_F32 ? 4 : 2;
                S->store(dts[t], A, io1, n);
                K->store(dts[t], A, io2, n);
                CHECK_MSG(!memcmp(io1, io2, n * sz), "%s store dtype %d n=%zu differs", K->name, dts[t], n);
                /* loads from arbitrary bit patterns (NaN payloads, subnormals) */
                for (size_t i = 0; i < n * sz; i++) io1[i] = (uint8_t)rnd();
                S->load(dts[t], io1, r1, n);
                K->load(dts[t], io1, r2, n);
                CHECK_MSG(!diff_bits(r1, r2, n, &w), "%s load dtype %d n=%zu: element %zu differs (%08x vs %08x)", K->name,
                          dts[t], n, w, *(uint32_t *)(void *)&r1[w], *(uint32_t *)(void *)&r2[w]);
            }
            double l1[8] = {0}, l2[8] = {0};
            /* sums of finite values only: NaN + inf would compare unequal */
            for (size_t i = 0; i < n; i++) r1[i] = isfinite(A[i]) ? A[i] : 1.5f;
            S->sum8(r1, n, l1);
            K->sum8(r1, n, l2);
            CHECK_MSG(cr_sum8_combine(l1) == cr_sum8_combine(l2), "%s sum n=%zu: %.17g vs %.17g", K->name, n,
                      cr_sum8_combine(l1), cr_sum8_combine(l2));
        }
    }
    free(a); free(b); free(c); free(r1); free(r2); free(io1); free(io2);
}

TEST(simd_tables_match_scalar)
{
    const cr_kernels *tables[] = { &cr_kernels_avx2, &cr_kernels_avx512 };
    int ran = 0;
    for (size_t i = 0; i < 2; i++) {
        if (!cr_kernels_supported(tables[i])) { printf("skipped %s: not supported by this CPU\n", tables[i]->name); continue; }
        compare_table(tables[i]);
        ran++;
    }
    printf("compared %d SIMD table(s) with the scalar reference\n", ran);
}

/* RAND: every table's generator gives the scalar one's floats for any start
 * (aligned or not to a Philox block), length, and near a 2^32 block carry */
TEST(uniform_matches_scalar)
{
    const cr_kernels *tables[] = { &cr_kernels_avx2, &cr_kernels_avx512 };
    float u1[300], u2[300];
    /* ... and where the AVX-512 generator's 32 blocks end at the carry
     * (0xFFFFFFE0 + 31 is the last that does not wrap) or would cross it */
    const uint64_t firsts[] = { 0, 1, 2, 3, 5, 1000003, ((uint64_t)0xFFFFFFF0u) * 4 + 1, ((uint64_t)1 << 34) * 4 - 40,
                                ((uint64_t)0xFFFFFFC0u) * 4, ((uint64_t)0xFFFFFFC1u) * 4, ((uint64_t)0x1FFFFFFC0u) * 4 + 2 };
    for (size_t i = 0; i < 2; i++) {
        if (!cr_kernels_supported(tables[i])) continue;
        const cr_kernels *K = tables[i];
        for (size_t f = 0; f < sizeof firsts / sizeof *firsts; f++)
            for (size_t n = 0; n <= 300; n += (n < 70 ? 1 : n < 250 ? 23 : 1)) {
                cr_rng_uniform(0x123456789abcdefull, 77, firsts[f], u1, n);
                for (size_t e = 0; e < 300; e++) u2[e] = -1.0f;
                K->uniform(0x123456789abcdefull, 77, firsts[f], u2, n);
                CHECK_MSG(memcmp(u1, u2, n * sizeof *u1) == 0, "%s uniform first=%llu n=%zu", K->name,
                          (unsigned long long)firsts[f], n);
                CHECK_MSG(n == 300 || u2[n] == -1.0f, "%s uniform wrote past n=%zu", K->name, n);
            }
    }
}

/* the scalar reference itself, on values whose answers are known */
TEST(scalar_reference_known_values)
{
    const cr_kernels *S = &cr_kernels_scalar;
    float in[] = { 1.00390625f /* bf16 tie -> even 1.0 */, 1.01171875f /* tie -> 1.015625 */, 65520.0f, 65504.0f,
                   5.9604644775390625e-08f /* smallest f16 subnormal */, 2.98e-08f, -0.0f };
    uint16_t h[7];
    S->store(CR_DTYPE_BF16, in, h, 2);
    CHECK_EQ_INT(h[0], 0x3f80);
    CHECK_EQ_INT(h[1], 0x3f82);
    S->store(CR_DTYPE_F16, in + 2, h, 5);
    CHECK_EQ_INT(h[0], 0x7c00);   /* 65520 rounds to inf */
    CHECK_EQ_INT(h[1], 0x7bff);
    CHECK_EQ_INT(h[2], 0x0001);
    CHECK_EQ_INT(h[3], 0x0000);   /* below half the smallest subnormal */
    CHECK_EQ_INT(h[4], 0x8000);
    float nan = bits(0x7fc12345u), back;
    S->store(CR_DTYPE_F16, &nan, h, 1);
    CHECK_EQ_INT(h[0], 0x7e00);
    uint16_t sub = 0x03ff;
    S->load(CR_DTYPE_F16, &sub, &back, 1);
    CHECK(back == 1023.0f / 16777216.0f);
    uint8_t f8 = 0x38;   /* e4m3: exponent 7 -> 1.0 */
    S->load(CR_DTYPE_F8_E4M3, &f8, &back, 1);
    CHECK(back == 1.0f);
    float mm[2] = { NAN, 1 }, o[2];
    S->binary(CR_OP_MIN, o, mm, mm + 1, 1);
    CHECK(isnan(o[0]));
    S->binary(CR_OP_MAX, o, mm + 1, mm, 1);
    CHECK(isnan(o[0]));
}

/* FMA rounds once (torch's contracted addcmul_), in every table, and its
 * NaN is the first NaN operand whatever encoding the compiler chose */
TEST(fma_rounds_once)
{
    const cr_kernels *tables[] = { &cr_kernels_scalar, &cr_kernels_avx2, &cr_kernels_avx512 };
    float a[20], b[20], c[20], d[20];
    for (int i = 0; i < 20; i++) { a[i] = b[i] = 1.0f + 0x1p-12f; c[i] = -1.0f; }
    /* a*b = 1 + 2^-11 + 2^-24: rounded first it would lose the 2^-24 */
    a[3] = bits(0x7fa00001u);                     /* signalling NaN a: returned quiet */
    b[3] = bits(0xffc00002u);
    b[5] = bits(0xffc00002u); c[5] = bits(0x7fc00003u);   /* b before c */
    a[17] = INFINITY; b[17] = 0.0f;              /* inf * 0: the default NaN */
    c[19] = bits(0x7fc00003u);
    for (size_t t = 0; t < 3; t++) {
        if (!cr_kernels_supported(tables[t])) continue;
        tables[t]->fma(d, a, b, c, 20);
        for (int i = 0; i < 20; i++) {
            uint32_t want = i == 3 ? 0x7fe00001u : i == 5 ? 0xffc00002u : i == 17 ? 0xffc00000u
                            : i == 19 ? 0x7fc00003u : cr_f32_bits(0x1p-11f + 0x1p-24f);
            CHECK_MSG(cr_f32_bits(d[i]) == want, "%s fma element %d: %08x, want %08x", tables[t]->name, i,
                      cr_f32_bits(d[i]), want);
        }
    }
}

TEST(pick_isa)
{
    const cr_kernels *k;
    cr_error err = {0};
    CHECK(cr_kernels_pick("scalar", &k, &err) == CR_OK && k == &cr_kernels_scalar);
    CHECK_EQ_INT(cr_kernels_pick("sse9", &k, &err), CR_ERR_ARG);
    CHECK_CONTAINS(err.msg, "unknown ISA");
    CHECK(cr_kernels_pick(NULL, &k, &err) == CR_OK && cr_kernels_supported(k));
}

/* tsan: runs threads; tools/sanitize.sh thread runs this test */
/* The torch tie-order partition's block scan (stoppers): each SIMD kernel
 * gives the scalar reference's offsets on random blocks of keys and tagged
 * ties, for both sides and lengths that are and are not a multiple of 16
 * (the AVX-512 kernel compresses sixteen words at a time). */
TEST(stoppers_match_scalar)
{
    static const unsigned lens[] = { 8, 16, 24, 248, 256 };
    unsigned (*const fns[])(const uint32_t *, unsigned, uint32_t, uint32_t, bool, uint16_t *) = {
        cr_stoppers_avx2, cr_stoppers_avx512 };
    const cr_kernels *tables[] = { &cr_kernels_avx2, &cr_kernels_avx512 };
    uint32_t w[256];
    uint16_t want[256 + 16], got[256 + 16];
    uint64_t st = 12345;
    int bad = 0, runs = 0;
    for (int rep = 0; rep < 200; rep++) {
        for (unsigned i = 0; i < 256; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t key = (uint32_t)(st >> 33) % (rep % 2 ? 7u : 100000u);
            w[i] = (st >> 20) % 5 == 0 ? 0x80000000u | i : key;   /* a tagged tie */
        }
        uint32_t pivot = w[rep % 256] & 0x7fffffffu, tie = (uint32_t)(rep % 7);
        for (size_t li = 0; li < CR_ARRAY_LEN(lens); li++)
            for (int le = 0; le < 2; le++) {
                unsigned nw = cr_kernels_scalar.stoppers(w, lens[li], pivot, tie, le, want);
                for (size_t t = 0; t < CR_ARRAY_LEN(fns); t++) {
                    if (!cr_kernels_supported(tables[t])) continue;
                    CHECK(tables[t]->stoppers == fns[t]);
                    unsigned ng = fns[t](w, lens[li], pivot, tie, le, got);
                    bad += ng != nw || memcmp(got, want, nw * sizeof *got) != 0;
                    runs++;
                }
            }
    }
    CHECK_MSG(bad == 0, "%d of %d stoppers blocks differ from the scalar kernel", bad, runs);
}

/* ROWRANK's radix sort (vm/ranksort.h) orders a row's (key << 32 | column)
 * words as sorting the whole words does: rows with many equal keys, one
 * key for all (every byte skipped), NaN-like and zero keys, short rows. */
static int cmp_word(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

TEST(rank_sort_matches_qsort)
{
    enum { MAXC = 5000 };
    static uint64_t w[MAXC], want[MAXC], tmp[MAXC];
    static const size_t lens[] = { 0, 1, 2, 3, 17, 512, 4999 };
    uint64_t st = 777;
    int bad = 0;
    for (int shape = 0; shape < 4; shape++)
        for (size_t li = 0; li < CR_ARRAY_LEN(lens); li++) {
            size_t n = lens[li];
            for (size_t e = 0; e < n; e++) {
                st = st * 6364136223846793005ull + 1442695040888963407ull;
                uint32_t k = shape == 0 ? (uint32_t)(st >> 33)                      /* all bytes vary */
                           : shape == 1 ? 0x3c000000u + ((uint32_t)(st >> 40) % 9 << 16)   /* bf16-like, many ties */
                           : shape == 2 ? 0x7fc00000u                               /* one key (NaN) everywhere */
                           : (uint32_t)(st >> 60) * 0x01010101u;                    /* few keys, every byte */
                w[e] = (uint64_t)k << 32 | e;
            }
            memcpy(want, w, n * sizeof *w);
            if (n) qsort(want, n, sizeof *want, cmp_word);
            cr_rank_sort(w, tmp, n);
            bad += n && memcmp(w, want, n * sizeof *w) != 0;
        }
    CHECK_MSG(bad == 0, "%d rows sorted differently from qsort", bad);
}

/* cr_rank_row against ranks from qsort of the 64-bit (key << 32 | column)
 * words, on both of its paths: bf16-valued rows up to the 16-bit column
 * limit (32-bit words) and rows past it or with f32 keys (64-bit words);
 * one column, ties, NaN and zero keys, one key everywhere, a single f32
 * value in a bf16 row (which must take the 64-bit path). */
static uint64_t rank_want[70000];

TEST(rank_row_matches_qsort)
{
    static float a[70000], d[70000];
    static uint64_t scratch[2 * 70000];
    static const size_t lens[] = { 1, 2, 3, 17, 2048, 5632, 65535, 65536, 65537, 70000 };
    uint64_t st = 4242;
    int bad = 0, rows = 0;
    for (int shape = 0; shape < 6; shape++)
        for (size_t li = 0; li < CR_ARRAY_LEN(lens); li++) {
            size_t n = lens[li];
            for (size_t e = 0; e < n; e++) {
                st = st * 6364136223846793005ull + 1442695040888963407ull;
                uint32_t r = (uint32_t)(st >> 32);
                uint32_t u = shape == 0 ? (r & 0x80000000u) | (0x30000000u + (r >> 4) % 0x0c000000u)  /* spread */
                           : shape == 1 ? (r & 0x80000000u) | (0x3a000000u + (r >> 8) % 0x00800000u)  /* one exponent */
                           : shape == 2 ? (r % 5 == 0 ? 0x7fc00000u : r % 5 == 1 ? 0x80000000u : r % 5 == 2 ? 0u
                                           : (r & 0x80000000u) | 0x3b000000u | (r >> 8 & 0x00ff0000u))  /* NaN, zeros, ties */
                           : shape == 3 ? 0x3f800000u                                          /* one key */
                           : r;                                                                /* f32: every bit */
                if (shape != 4) u &= 0xffff0000u;          /* bf16-valued */
                if (shape == 5 && e == n / 2) u |= 1;      /* one f32 value in a bf16 row */
                a[e] = bits(u);
                rank_want[e] = (uint64_t)(u & 0x7fffffffu) << 32 | e;
            }
            qsort(rank_want, n, sizeof *rank_want, cmp_word);
            for (size_t e = 0; e < n; e++) d[e] = 0.0f;
            cr_rank_row(a, d, n, scratch);
            int row_bad = 0;
            for (size_t r = 0; r < n; r++) row_bad |= d[(uint32_t)rank_want[r]] != (float)(r + 1);
            bad += row_bad;
            rows++;
        }
    CHECK_MSG(bad == 0, "%d of %d rows ranked differently from qsort", bad, rows);
}

int main(void)
{
    RUN(scalar_reference_known_values);
    RUN(fma_rounds_once);
    RUN(pick_isa);
    RUN(simd_tables_match_scalar);
    RUN(uniform_matches_scalar);
    RUN(stoppers_match_scalar);
    RUN(rank_sort_matches_qsort);
    RUN(rank_row_matches_qsort);
    return cr_test_summary();
}
