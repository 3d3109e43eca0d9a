/* gemm_avx512.c — gemm.h's kernels for AVX-512F CPUs: 16 lanes, an nt
 * tile of 4 tokens x 4 weight rows (16 of the 32 ZMM registers hold
 * accumulators). */
#include "gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f,avx2,fma")))
#define ISA_NAME "avx512"
#define TABLE cr_gemm_avx512
#define VW 16
#define NT_MR 4
#define PANEL_MR 12
#define PANEL_NV 2
#define NT_NR 4
#define VF __m512
#define vzero() _mm512_setzero_ps()
#define vload(p) _mm512_loadu_ps(p)
#define vbcast(f) _mm512_set1_ps(f)
#define vstore(p, x) _mm512_storeu_ps(p, x)
#define vfma(a, b, c) _mm512_fmadd_ps(a, b, c)

#define vadd(a, b) _mm512_add_ps(a, b)
#define vsub(a, b) _mm512_sub_ps(a, b)
#define vmul(a, b) _mm512_mul_ps(a, b)
#define vdiv(a, b) _mm512_div_ps(a, b)
#define vmax(a, b) _mm512_max_ps(a, b)
#define vmin(a, b) _mm512_min_ps(a, b)
#define vfloor(a) _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)
#define vpow2i(n) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23))

static TARGET inline float sfma(float a, float b, float c)
{
    return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}

/* (lo256 + hi256), then the AVX2 tree */
static TARGET inline float vhsum(__m512 v)
{
    __m256 o = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(o), _mm256_extractf128_ps(o, 1));
    __m128 h = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}

#include "gemm_body.h"

#else
const cr_gemm_kernels cr_gemm_avx512 = { "avx512", NULL, NULL, 32, 12, NULL, NULL, NULL };
#endif
