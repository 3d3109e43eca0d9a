/* ranksort.h — the sort behind ROWRANK: a row's (|a| key << 32 | column)
 * words in ascending order.
 *
 * The words are distinct (the column is in the low half), so every correct
 * sort gives the same order; this one is a least-significant-digit radix
 * sort on the key's four bytes, stable, over words written in column order,
 * so equal keys stay in column order: the order of sorting the whole
 * 64-bit words. It replaced qsort, which was 77% of the CPU of a DELLA
 * merge (`perf`, bench quick della-3: msort_with_tmp + cmp_u64); a byte
 * whose values all fall in one bucket (the exponent byte of similar
 * magnitudes, usually) is skipped. Header-only, used by interp_kernel.c.
 *
 * cr_rank_row ranks a whole row. When the row is short enough for a column
 * to fit 16 bits and every key's low 16 bits are zero (bf16-valued rows:
 * DELLA ranks bf16 task vectors), it sorts 32-bit words (key's high half <<
 * 16 | column), the same order in half the memory traffic, and counts only
 * the two bytes that can differ: counting all four put every element's
 * increments of the two always-zero bytes on one counter each, a chain of
 * store-to-load dependencies that was most of the sort's time (`perf
 * annotate`, della-3 at 1.1B: ROWRANK 57% of the CPU).
 */
#ifndef CR_RANKSORT_H
#define CR_RANKSORT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Sort w[0..n) ascending by its high 32 bits, keeping the given order among
 * equal ones; tmp has room for n words. n below 2^32. */
static inline void cr_rank_sort(uint64_t *w, uint64_t *tmp, size_t n)
{
    if (n < 2) return;
    uint32_t cnt[4][256];
    memset(cnt, 0, sizeof cnt);
    for (size_t i = 0; i < n; i++) {
        uint32_t k = (uint32_t)(w[i] >> 32);
        cnt[0][k & 255]++;
        cnt[1][k >> 8 & 255]++;
        cnt[2][k >> 16 & 255]++;
        cnt[3][k >> 24]++;
    }
    uint64_t *src = w, *dst = tmp;
    for (unsigned p = 0; p < 4; p++) {
        unsigned shift = 32 + 8 * p;
        if (cnt[p][src[0] >> shift & 255] == n) continue;   /* one bucket: nothing moves */
        uint32_t off[256], sum = 0;
        for (unsigned b = 0; b < 256; b++) {
            off[b] = sum;
            sum += cnt[p][b];
        }
        for (size_t i = 0; i < n; i++) dst[off[src[i] >> shift & 255]++] = src[i];
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != w) memcpy(w, src, n * sizeof *w);
}

/* |a|'s bits with the sign cleared: ascending as the magnitudes, NaNs last
 * (interp.h's mag_key) */
static inline uint32_t cr_rank_key(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u & 0x7fffffffu;
}

/* d[e] = rank 1..n of |a[e]| in the row (ascending by cr_rank_key, equal
 * keys in column order), as floats. scratch has room for 2n 64-bit words;
 * n below 2^24 (the ranks are exact in f32). */
static inline void cr_rank_row(const float *a, float *d, size_t n, uint64_t *scratch)
{
    if (n <= 65536) {
        uint32_t *w = (uint32_t *)scratch, *tmp = w + n;
        uint32_t lo = 0;
        for (size_t e = 0; e < n; e++) {
            uint32_t k = cr_rank_key(a[e]);
            lo |= k;
            w[e] = (k & 0xffff0000u) | (uint32_t)e;
        }
        if ((lo & 0xffffu) == 0) {
            /* two copies of each count, even and odd elements, so runs of
             * one bucket (the exponent byte) are two chains at half length */
            uint32_t cnt[2][2][256];
            memset(cnt, 0, sizeof cnt);
            size_t e = 0;
            for (; e + 1 < n; e += 2) {
                uint32_t k0 = w[e] >> 16, k1 = w[e + 1] >> 16;
                cnt[0][0][k0 & 255]++;
                cnt[0][1][k0 >> 8]++;
                cnt[1][0][k1 & 255]++;
                cnt[1][1][k1 >> 8]++;
            }
            if (e < n) {
                cnt[0][0][w[e] >> 16 & 255]++;
                cnt[0][1][w[e] >> 24]++;
            }
            uint32_t *src = w, *dst = tmp;
            for (unsigned p = 0; p < 2; p++) {
                unsigned shift = 16 + 8 * p;
                unsigned b0 = src[0] >> shift & 255;
                if (cnt[0][p][b0] + cnt[1][p][b0] == n) continue;   /* one bucket: nothing moves */
                uint32_t off[256], sum = 0;
                for (unsigned b = 0; b < 256; b++) {
                    off[b] = sum;
                    sum += cnt[0][p][b] + cnt[1][p][b];
                }
                for (size_t i = 0; i < n; i++) dst[off[src[i] >> shift & 255]++] = src[i];
                uint32_t *t = src;
                src = dst;
                dst = t;
            }
            for (size_t r = 0; r < n; r++) d[src[r] & 0xffffu] = (float)(r + 1);
            return;
        }
    }
    for (size_t e = 0; e < n; e++) scratch[e] = (uint64_t)cr_rank_key(a[e]) << 32 | e;
    cr_rank_sort(scratch, scratch + n, n);
    for (size_t r = 0; r < n; r++) d[(uint32_t)scratch[r]] = (float)(r + 1);
}

#endif
