/* stoppers_avx512.c — one block of the torch tie-order partition's stoppers
 * (torchsort.c), sixteen words a compare.
 *
 * The same function as the scalar one: the ascending offsets of the words
 * whose key is on the stopping side of the pivot. AVX-512F compares into a
 * mask register and VPCOMPRESSD packs the offsets of the set bits, so no
 * table is needed (stoppers_avx2.c looks each 8-bit mask up in one); the
 * sixteen offsets are narrowed to 16 bits and stored at once (the buffer
 * has room: fewer stoppers than words scanned). Measured on the bench
 * machine (Xeon, 2 cores, TIES of 3 bf16 models at hidden 2048): the
 * stoppers were 17% of the CPU with the AVX2 kernel.
 */
#include "kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f,popcnt")))

TARGET unsigned cr_stoppers_avx512(const uint32_t *w, unsigned n, uint32_t pivot_key, uint32_t tie_key, bool le,
                                   uint16_t *ofs)
{
    const __m512i pk = _mm512_set1_epi32((int)pivot_key), tk = _mm512_set1_epi32((int)tie_key);
    const __m512i sixteen = _mm512_set1_epi32(16);
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    unsigned cnt = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_loadu_si512((const void *)(w + i));
        /* a tagged word (bit 31, negative as signed) compares as the tie key;
         * keys are below 2^31 */
        __mmask16 tagged = _mm512_cmplt_epi32_mask(v, _mm512_setzero_si512());
        __m512i key = _mm512_mask_blend_epi32(tagged, v, tk);
        /* le: !(key > pk); otherwise !(pk > key) */
        __mmask16 stop = le ? _mm512_cmple_epi32_mask(key, pk) : _mm512_cmpge_epi32_mask(key, pk);
        __m512i o = _mm512_maskz_compress_epi32(stop, idx);
        _mm256_storeu_si256((__m256i *)(void *)(ofs + cnt), _mm512_cvtepi32_epi16(o));
        cnt += (unsigned)__builtin_popcount((unsigned)stop);
        idx = _mm512_add_epi32(idx, sixteen);
    }
    for (; i < n; i++) {   /* a last group of eight */
        uint32_t key = w[i] & 0x80000000u ? tie_key : w[i];
        if (le ? key <= pivot_key : key >= pivot_key) ofs[cnt++] = (uint16_t)i;
    }
    return cnt;
}
#endif
