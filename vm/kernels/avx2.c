/* avx2.c — the kernel table for AVX2 + FMA + F16C CPUs (x86-64-v3).
 *
 * Defines the vector vocabulary of simd_body.h with 256-bit intrinsics.
 * Functions carry __attribute__((target)) so the rest of crucible builds for
 * any x86-64. bf16 rounding is the integer RNE sequence of scalar_ops.h;
 * f16 uses F16C with NaN lanes replaced by a canonical quiet NaN first, so
 * the result matches the reference bit for bit. No FMA instruction is used
 * (it would change the last bit of a*b+c) except by the fma entry.
 */
#include "kernels.h"
#include "scalar_ops.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma,f16c")))
#define ISA_NAME "avx2"
#define TABLE cr_kernels_avx2
#define STOPPERS cr_stoppers_avx2   /* the torch tie-order partition's block scan */
#define UNIFORM cr_rng_uniform_avx2   /* RAND: rng_avx2.c */
#define VW 8
#define VF __m256
#define vload(p) _mm256_loadu_ps(p)
#define vstore(p, x) _mm256_storeu_ps(p, x)
#define vset1(f) _mm256_set1_ps(f)
#define vadd _mm256_add_ps
#define vsub _mm256_sub_ps
#define vmul _mm256_mul_ps
#define vdiv _mm256_div_ps
#define vsqrt _mm256_sqrt_ps
#define vfma _mm256_fmadd_ps
#define vany_nan(x) (_mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)) != 0)
#define vmin_raw _mm256_min_ps
#define vmax_raw _mm256_max_ps
#define vcmp(a, b, p) _mm256_cmp_ps(a, b, p)
#define vblend(m, f, t) _mm256_blendv_ps(f, t, m)
#define vxor_bits _mm256_xor_ps
#define vandnot_bits _mm256_andnot_ps

static TARGET inline __m256 vround_bf16_(__m256 x)
{
    __m256i u = _mm256_castps_si256(x);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb);
    __m256i q = _mm256_or_si256(u, _mm256_set1_epi32(0x00400000));
    __m256 isnan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    r = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(q), isnan));
    return _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32((int)0xffff0000u)));
}
#define vround_bf16 vround_bf16_

static TARGET inline __m256 vload_bf16_(const uint16_t *p)
{
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
#define vload_bf16 vload_bf16_

static TARGET inline void vstore_bf16_(uint16_t *p, __m256 x)
{
    __m256i r = _mm256_srli_epi32(_mm256_castps_si256(vround_bf16_(x)), 16);
    __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xD8);
    _mm_storeu_si128((__m128i *)(void *)p, _mm256_castsi256_si128(packed));
}
#define vstore_bf16 vstore_bf16_

/* NaN lanes -> sign | canonical quiet NaN, which F16C turns into sign|0x7E00 */
static TARGET inline __m256 canon_nan(__m256 x)
{
    __m256 q = _mm256_or_ps(_mm256_and_ps(x, _mm256_set1_ps(-0.0f)), _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000)));
    return _mm256_blendv_ps(x, q, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

static TARGET inline __m256 vload_f16_(const uint16_t *p)
{ return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p)); }
#define vload_f16 vload_f16_

static TARGET inline void vstore_f16_(uint16_t *p, __m256 x)
{
    _mm_storeu_si128((__m128i *)(void *)p, _mm256_cvtps_ph(canon_nan(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
#define vstore_f16 vstore_f16_

static TARGET inline __m256 vround_f16_(__m256 x)
{ return _mm256_cvtph_ps(_mm256_cvtps_ph(canon_nan(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)); }
#define vround_f16 vround_f16_

/* eight f64 lanes as two 4-lane accumulators: lanes 0-3 and 4-7 */
typedef struct { __m256d lo, hi; } avx2_acc;
#define VSUM_ACC avx2_acc
#define vsum8_init(acc, l) ((acc).lo = _mm256_loadu_pd(l), (acc).hi = _mm256_loadu_pd((l) + 4))
#define vsum8(acc, p) do { __m256 x_ = _mm256_loadu_ps(p); \
        (acc).lo = _mm256_add_pd((acc).lo, _mm256_cvtps_pd(_mm256_castps256_ps128(x_))); \
        (acc).hi = _mm256_add_pd((acc).hi, _mm256_cvtps_pd(_mm256_extractf128_ps(x_, 1))); } while (0)
#define vsum8_done(acc, l) (_mm256_storeu_pd(l, (acc).lo), _mm256_storeu_pd((l) + 4, (acc).hi))

#include "simd_body.h"

#else
/* not an x86-64 build: the table exists so the name resolves; the CPU check
 * in cr_kernels_supported never selects it */
const cr_kernels cr_kernels_avx2 = { "avx2", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
#endif
