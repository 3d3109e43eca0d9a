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

#endif
