/* gemm_avx2.c — gemm.h's kernels for AVX2 + FMA CPUs (x86-64-v3), with
 * __attribute__((target)) so the rest of crucible builds for any x86-64.
 * The nt tile is 4 tokens x 3 weight rows: 12 accumulators, 3 weight
 * vectors and one token vector fill the 16 YMM registers. */
#include "gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma")))
#define ISA_NAME "avx2"
#define TABLE cr_gemm_avx2
#define VW 8
#define NT_MR 4
#define PANEL_MR 6
#define PANEL_NV 2
#define NT_NR 3
#define VF __m256
#define vzero() _mm256_setzero_ps()
#define vload(p) _mm256_loadu_ps(p)
#define vbcast(f) _mm256_set1_ps(f)
#define vstore(p, x) _mm256_storeu_ps(p, x)
#define vfma(a, b, c) _mm256_fmadd_ps(a, b, c)

#define vadd(a, b) _mm256_add_ps(a, b)
#define vsub(a, b) _mm256_sub_ps(a, b)
#define vmul(a, b) _mm256_mul_ps(a, b)
#define vdiv(a, b) _mm256_div_ps(a, b)
#define vmax(a, b) _mm256_max_ps(a, b)
#define vmin(a, b) _mm256_min_ps(a, b)
#define vfloor(a) _mm256_floor_ps(a)
#define vpow2i(n) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23))

static TARGET inline float sfma(float a, float b, float c)
{
    return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}

/* (lo128 + hi128), then (0+2, 1+3), then (0 + 1): gemm_scalar.c's tree */
static TARGET inline float vhsum(__m256 v)
{
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 h = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}

#include "gemm_body.h"

#else
/* not x86-64: cr_gemm_pick never selects it; the scalar kernels stand in */
const cr_gemm_kernels cr_gemm_avx2 = { "avx2", NULL, NULL, 16, 6, NULL, NULL, NULL };
#endif
