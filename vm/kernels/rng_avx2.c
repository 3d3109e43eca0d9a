/* rng_avx2.c — RAND's uniform floats (vm/rng.h) eight Philox blocks at a time.
 *
 * The same function as cr_rng_uniform, bit for bit: the counter, key and
 * word-to-float mapping are those of rng.h; only the evaluation is vector
 * (AVX2: sixteen blocks, eight 32x32->64 products per VPMULUDQ pair). DARE draws
 * one number per parameter per model, twice (statistics pass and output
 * pass), so the scalar generator was the largest cost of a dare_ties merge.
 * Blocks whose 64-bit counter would carry between lanes, unaligned heads
 * and tails go to the scalar function. Used by the AVX2 table and for the
 * tails of rng_avx512.c's.
 */
#include "kernels.h"
#include "rng.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET __attribute__((target("avx2")))

static TARGET inline void mulhilo(__m256i a, __m256i m, __m256i *hi, __m256i *lo)
{
    __m256i pe = _mm256_mul_epu32(a, m);                            /* lanes 0,2,4,6 */
    __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);     /* lanes 1,3,5,7 */
    *lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
}

/* the 32 floats of eight blocks' words c0..c3 (lane b = block b), in element order */
static TARGET inline void put32(__m256i c0, __m256i c1, __m256i c2, __m256i c3, float *u)
{
    const __m256 scale = _mm256_set1_ps(1.0f / 16777216.0f);
    __m256 f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(c0, 8)), scale);
    __m256 f1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(c1, 8)), scale);
    __m256 f2 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(c2, 8)), scale);
    __m256 f3 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(c3, 8)), scale);
    /* word-major (4 x 8 blocks) to element order (block-major) */
    __m256 t0 = _mm256_unpacklo_ps(f0, f1), t1 = _mm256_unpackhi_ps(f0, f1);
    __m256 t2 = _mm256_unpacklo_ps(f2, f3), t3 = _mm256_unpackhi_ps(f2, f3);
    __m256 a0 = _mm256_shuffle_ps(t0, t2, 0x44), a1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 a2 = _mm256_shuffle_ps(t1, t3, 0x44), a3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    _mm256_storeu_ps(u, _mm256_permute2f128_ps(a0, a1, 0x20));
    _mm256_storeu_ps(u + 8, _mm256_permute2f128_ps(a2, a3, 0x20));
    _mm256_storeu_ps(u + 16, _mm256_permute2f128_ps(a0, a1, 0x31));
    _mm256_storeu_ps(u + 24, _mm256_permute2f128_ps(a2, a3, 0x31));
}

/* 64 floats for blocks blk .. blk+15 (elements 4*blk ..), the low word of
 * blk not wrapping within the sixteen. Two groups of eight are interleaved:
 * a round is a chain of multiply, blend and xor, so one group alone would
 * leave the multiplier idle most of the time. */
static TARGET void philox16(uint32_t k0, uint32_t k1, uint64_t blk, uint64_t stream, float *u)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i a0 = _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)blk), lane);
    __m256i b0 = _mm256_add_epi32(a0, _mm256_set1_epi32(8));
    __m256i a1 = _mm256_set1_epi32((int)(uint32_t)(blk >> 32)), b1 = a1;
    __m256i a2 = _mm256_set1_epi32((int)(uint32_t)stream), b2 = a2;
    __m256i a3 = _mm256_set1_epi32((int)(uint32_t)(stream >> 32)), b3 = a3;
    const __m256i m0 = _mm256_set1_epi32((int)0xD2511F53u), m1 = _mm256_set1_epi32((int)0xCD9E8D57u);
    for (int r = 0; r < 10; r++) {
        if (r) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        const __m256i K0 = _mm256_set1_epi32((int)k0), K1 = _mm256_set1_epi32((int)k1);
        __m256i ahi0, alo0, ahi1, alo1, bhi0, blo0, bhi1, blo1;
        mulhilo(a0, m0, &ahi0, &alo0);
        mulhilo(b0, m0, &bhi0, &blo0);
        mulhilo(a2, m1, &ahi1, &alo1);
        mulhilo(b2, m1, &bhi1, &blo1);
        a0 = _mm256_xor_si256(_mm256_xor_si256(ahi1, a1), K0);
        b0 = _mm256_xor_si256(_mm256_xor_si256(bhi1, b1), K0);
        a1 = alo1; b1 = blo1;
        a2 = _mm256_xor_si256(_mm256_xor_si256(ahi0, a3), K1);
        b2 = _mm256_xor_si256(_mm256_xor_si256(bhi0, b3), K1);
        a3 = alo0; b3 = blo0;
    }
    put32(a0, a1, a2, a3, u);
    put32(b0, b1, b2, b3, u + 32);
}

void cr_rng_uniform_avx2(uint64_t seed, uint64_t stream, uint64_t first, float *u, size_t n)
{
    const uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    size_t j = 0;
    size_t head = (size_t)((4 - first % 4) % 4);
    if (head > n) head = n;
    if (head) cr_rng_uniform(seed, stream, first, u, head);
    j = head;
    while (n - j >= 64) {
        uint64_t blk = (first + j) / 4;
        if ((uint32_t)blk > 0xFFFFFFF0u) cr_rng_uniform(seed, stream, first + j, u + j, 64);
        else philox16(k0, k1, blk, stream, u + j);
        j += 64;
    }
    if (j < n) cr_rng_uniform(seed, stream, first + j, u + j, n - j);
}

#else
void cr_rng_uniform_avx2(uint64_t seed, uint64_t stream, uint64_t first, float *u, size_t n)
{
    cr_rng_uniform(seed, stream, first, u, n);
}
#endif
