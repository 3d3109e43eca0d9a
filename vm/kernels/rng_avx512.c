/* rng_avx512.c — RAND's uniform floats (vm/rng.h) sixteen Philox blocks a
 * vector, for the AVX-512 table.
 *
 * The same function as cr_rng_uniform, bit for bit, and the same scheme as
 * rng_avx2.c (mask blends of VPMULUDQ pairs for the 32x32->64 products, two
 * interleaved groups so the multiplier is not left waiting on a round's
 * chain) with twice the lanes: 32 blocks, 128 floats a call, and the xor
 * pairs in one VPTERNLOGD. RAND was 7% of the CPU of della-3 at 1.1B and
 * more of dare_ties (one number per parameter per model, twice) with the
 * AVX2 generator on this table. Blocks whose 64-bit counter would carry
 * between lanes, unaligned heads and tails go to the scalar function.
 */
#include "kernels.h"
#include "rng.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f")))

static TARGET inline void mulhilo(__m512i a, __m512i m, __m512i *hi, __m512i *lo)
{
    __m512i pe = _mm512_mul_epu32(a, m);                            /* even lanes */
    __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);     /* odd lanes */
    *lo = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
}

/* the 64 floats of sixteen blocks' words c0..c3 (lane b = block b), in
 * element order: per 128-bit lane the 4x4 transpose of rng_avx2.c's put32,
 * then the lanes' 4x4 transpose */
static TARGET inline void put64(__m512i c0, __m512i c1, __m512i c2, __m512i c3, float *u)
{
    const __m512 scale = _mm512_set1_ps(1.0f / 16777216.0f);
    __m512 f0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(c0, 8)), scale);
    __m512 f1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(c1, 8)), scale);
    __m512 f2 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(c2, 8)), scale);
    __m512 f3 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(c3, 8)), scale);
    __m512 t0 = _mm512_unpacklo_ps(f0, f1), t1 = _mm512_unpackhi_ps(f0, f1);
    __m512 t2 = _mm512_unpacklo_ps(f2, f3), t3 = _mm512_unpackhi_ps(f2, f3);
    /* in 128-bit lane L, a_j holds block 4L+j's four floats */
    __m512 a0 = _mm512_shuffle_ps(t0, t2, 0x44), a1 = _mm512_shuffle_ps(t0, t2, 0xEE);
    __m512 a2 = _mm512_shuffle_ps(t1, t3, 0x44), a3 = _mm512_shuffle_ps(t1, t3, 0xEE);
    __m512 p0 = _mm512_shuffle_f32x4(a0, a1, _MM_SHUFFLE(1, 0, 1, 0));   /* a0.L0 a0.L1 a1.L0 a1.L1 */
    __m512 p1 = _mm512_shuffle_f32x4(a2, a3, _MM_SHUFFLE(1, 0, 1, 0));
    __m512 p2 = _mm512_shuffle_f32x4(a0, a1, _MM_SHUFFLE(3, 2, 3, 2));   /* a0.L2 a0.L3 a1.L2 a1.L3 */
    __m512 p3 = _mm512_shuffle_f32x4(a2, a3, _MM_SHUFFLE(3, 2, 3, 2));
    _mm512_storeu_ps(u, _mm512_shuffle_f32x4(p0, p1, _MM_SHUFFLE(2, 0, 2, 0)));        /* blocks 0..3 */
    _mm512_storeu_ps(u + 16, _mm512_shuffle_f32x4(p0, p1, _MM_SHUFFLE(3, 1, 3, 1)));   /* 4..7 */
    _mm512_storeu_ps(u + 32, _mm512_shuffle_f32x4(p2, p3, _MM_SHUFFLE(2, 0, 2, 0)));   /* 8..11 */
    _mm512_storeu_ps(u + 48, _mm512_shuffle_f32x4(p2, p3, _MM_SHUFFLE(3, 1, 3, 1)));   /* 12..15 */
}

/* 128 floats for blocks blk .. blk+31 (elements 4*blk ..), the low word of
 * blk not wrapping within the 32 */
static TARGET void philox32(uint32_t k0, uint32_t k1, uint64_t blk, uint64_t stream, float *u)
{
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512i a0 = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)blk), lane);
    __m512i b0 = _mm512_add_epi32(a0, _mm512_set1_epi32(16));
    __m512i a1 = _mm512_set1_epi32((int)(uint32_t)(blk >> 32)), b1 = a1;
    __m512i a2 = _mm512_set1_epi32((int)(uint32_t)stream), b2 = a2;
    __m512i a3 = _mm512_set1_epi32((int)(uint32_t)(stream >> 32)), b3 = a3;
    const __m512i m0 = _mm512_set1_epi32((int)0xD2511F53u), m1 = _mm512_set1_epi32((int)0xCD9E8D57u);
    for (int r = 0; r < 10; r++) {
        if (r) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        const __m512i K0 = _mm512_set1_epi32((int)k0), K1 = _mm512_set1_epi32((int)k1);
        __m512i ahi0, alo0, ahi1, alo1, bhi0, blo0, bhi1, blo1;
        mulhilo(a0, m0, &ahi0, &alo0);
        mulhilo(b0, m0, &bhi0, &blo0);
        mulhilo(a2, m1, &ahi1, &alo1);
        mulhilo(b2, m1, &bhi1, &blo1);
        a0 = _mm512_ternarylogic_epi32(ahi1, a1, K0, 0x96);   /* three-way xor */
        b0 = _mm512_ternarylogic_epi32(bhi1, b1, K0, 0x96);
        a1 = alo1; b1 = blo1;
        a2 = _mm512_ternarylogic_epi32(ahi0, a3, K1, 0x96);
        b2 = _mm512_ternarylogic_epi32(bhi0, b3, K1, 0x96);
        a3 = alo0; b3 = blo0;
    }
    put64(a0, a1, a2, a3, u);
    put64(b0, b1, b2, b3, u + 64);
}

void cr_rng_uniform_avx512(uint64_t seed, uint64_t stream, uint64_t first, float *u, size_t n)
{
    const uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    size_t head = (size_t)((4 - first % 4) % 4);
    if (head > n) head = n;
    if (head) cr_rng_uniform(seed, stream, first, u, head);
    size_t j = head;
    while (n - j >= 128) {
        uint64_t blk = (first + j) / 4;
        if ((uint32_t)blk > 0xFFFFFFE0u) cr_rng_uniform(seed, stream, first + j, u + j, 128);
        else philox32(k0, k1, blk, stream, u + j);
        j += 128;
    }
    if (j < n) cr_rng_uniform_avx2(seed, stream, first + j, u + j, n - j);   /* its 64-float steps, then scalar */
}

#else
void cr_rng_uniform_avx512(uint64_t seed, uint64_t stream, uint64_t first, float *u, size_t n)
{
    cr_rng_uniform(seed, stream, first, u, n);
}
#endif
