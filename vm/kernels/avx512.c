/* avx512.c — the kernel table for AVX-512F CPUs.
 *
 * The vocabulary of simd_body.h with 512-bit vectors and mask registers.
 * bf16 stores use the integer RNE sequence, not VCVTNEPS2BF16: that
 * instruction (AVX512-BF16) treats subnormal inputs as zero, which torch's
 * conversion does not, so it would break bit-parity on tiny weights; the
 * integer sequence is four ALU ops per 16 lanes and the store is memory-
 * bound either way. Sums take 8 floats at a time into one 8-lane f64
 * vector, the same lanes and order as the scalar reference.
 */
#include "kernels.h"
#include "scalar_ops.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f,avx2,fma,f16c")))
#define ISA_NAME "avx512"
#define TABLE cr_kernels_avx512
#define STOPPERS cr_stoppers_avx512   /* the torch tie-order partition's block scan */
#define UNIFORM cr_rng_uniform_avx512   /* RAND: rng_avx512.c */
#define VW 16
#define VF __m512
#define vload(p) _mm512_loadu_ps(p)
#define vstore(p, x) _mm512_storeu_ps(p, x)
#define vset1(f) _mm512_set1_ps(f)
#define vadd _mm512_add_ps
#define vsub _mm512_sub_ps
#define vmul _mm512_mul_ps
#define vdiv _mm512_div_ps
#define vsqrt _mm512_sqrt_ps
#define vfma _mm512_fmadd_ps
#define vany_nan(x) (_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q) != 0)
#define vmin_raw _mm512_min_ps
#define vmax_raw _mm512_max_ps
#define vcmp(a, b, p) _mm512_cmp_ps_mask(a, b, p)
#define vblend(m, f, t) _mm512_mask_blend_ps(m, f, t)
#define vxor_bits(a, b) _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)))
#define vandnot_bits(a, b) _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)))

static TARGET inline __m512 vround_bf16_(__m512 x)
{
    __m512i u = _mm512_castps_si512(x);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
    __m512i q = _mm512_or_si512(u, _mm512_set1_epi32(0x00400000));
    r = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), r, q);
    return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32((int)0xffff0000u)));
}
#define vround_bf16 vround_bf16_

static TARGET inline __m512 vload_bf16_(const uint16_t *p)
{
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
#define vload_bf16 vload_bf16_

static TARGET inline void vstore_bf16_(uint16_t *p, __m512 x)
{
    __m512i r = _mm512_srli_epi32(_mm512_castps_si512(vround_bf16_(x)), 16);
    _mm256_storeu_si256((__m256i *)(void *)p, _mm512_cvtepi32_epi16(r));
}
#define vstore_bf16 vstore_bf16_

static TARGET inline __m512 canon_nan(__m512 x)
{
    __m512i s = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u));
    __m512 q = _mm512_castsi512_ps(_mm512_or_si512(s, _mm512_set1_epi32(0x7fc00000)));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x, q);
}

static TARGET inline __m512 vload_f16_(const uint16_t *p)
{ return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p)); }
#define vload_f16 vload_f16_

static TARGET inline void vstore_f16_(uint16_t *p, __m512 x)
{
    _mm256_storeu_si256((__m256i *)(void *)p, _mm512_cvtps_ph(canon_nan(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
#define vstore_f16 vstore_f16_

static TARGET inline __m512 vround_f16_(__m512 x)
{ return _mm512_cvtph_ps(_mm512_cvtps_ph(canon_nan(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)); }
#define vround_f16 vround_f16_

#define VSUM_ACC __m512d
#define vsum8_init(acc, l) ((acc) = _mm512_loadu_pd(l))
#define vsum8(acc, p) ((acc) = _mm512_add_pd((acc), _mm512_cvtps_pd(_mm256_loadu_ps(p))))
#define vsum8_done(acc, l) _mm512_storeu_pd(l, acc)

#include "simd_body.h"

#else
const cr_kernels cr_kernels_avx512 = { "avx512", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
#endif
