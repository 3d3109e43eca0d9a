/* kernels.h — the per-ISA kernel table the interpreter calls.
 *
 * Each entry works on a run of n f32 values (a register of one chunk, or a
 * row segment of one). The scalar table (scalar.c) is the reference; the
 * AVX2 and AVX-512 tables must give bit-identical results for every entry
 * (tests/unit/test_kernels.c checks it on sizes that hit every tail):
 * elementwise ops use no FMA (the fma entry aside) and the same NaN rules,
 * and sums accumulate in the same eight f64 lanes in the same order (see
 * sum8 below), so even reductions do not depend on the ISA. The table is chosen once per run
 * (cr_kernels_pick); nothing in the interpreter names an ISA.
 */
#ifndef CR_KERNELS_H
#define CR_KERNELS_H

#include "base.h"
#include "program.h"

typedef struct cr_kernels {
    const char *name;                    /* "scalar", "avx2", "avx512" */
    /* MOV NEG ABS SIGN SQRT EXP LOG NOT */
    void (*unary)(cr_op op, float *d, const float *a, size_t n);
    /* ADD SUB MUL DIV MIN MAX GT GE LT LE EQ NE AND OR */
    void (*binary)(cr_op op, float *d, const float *a, const float *b, size_t n);
    /* d = c != 0 ? a : b */
    void (*where)(float *d, const float *c, const float *a, const float *b, size_t n);
    /* d = a * b + c rounded once (FMA; NaN rule of scalar_ops.h el_fma) */
    void (*fma)(float *d, const float *a, const float *b, const float *c, size_t n);
    /* round in place to BF16 or F16 and back (other dtypes: no-op) */
    void (*round)(cr_dtype t, float *x, size_t n);
    /* n contiguous elements of dtype t -> f32 (F16, BF16, F32, F64, F8_*) */
    void (*load)(cr_dtype t, const void *src, float *dst, size_t n);
    /* f32 -> n contiguous elements of dtype t (F16, BF16, F32, F64), RNE */
    void (*store)(cr_dtype t, const float *src, void *dst, size_t n);
    /* lanes[i % 8] += (double)a[i] for i = 0..n-1, in increasing i */
    void (*sum8)(const float *a, size_t n, double lanes[8]);
    /* unary, binary and where followed by round(BF16), in one pass: the
     * common case of bf16 merges, where a separate rounding pass was the
     * largest single cost of a kernel */
    void (*unary_bf16)(cr_op op, float *d, const float *a, size_t n);
    void (*binary_bf16)(cr_op op, float *d, const float *a, const float *b, size_t n);
    void (*where_bf16)(float *d, const float *c, const float *a, const float *b, size_t n);
    /* RAND: the uniform floats of rng.h for elements first .. first+n-1 */
    void (*uniform)(uint64_t seed, uint64_t stream, uint64_t first, float *u, size_t n);
    /* one block of torch's tie-order partition (torchsort.c): the ascending
     * offsets i < n of the words whose key (w & CR_TORCHSORT_TIE ? tie_key
     * : w) is <= pivot_key (le) or >= pivot_key (!le); returns how many.
     * n is a multiple of 8 below 2^16; ofs has room for n + 8 entries. */
    unsigned (*stoppers)(const uint32_t *w, unsigned n, uint32_t pivot_key, uint32_t tie_key, bool le, uint16_t *ofs);
} cr_kernels;

/* cr_rng_uniform evaluated eight Philox blocks at a time (rng_avx2.c) */
void cr_rng_uniform_avx2(uint64_t seed, uint64_t stream, uint64_t first, float *u, size_t n);
/* and sixteen blocks a vector with AVX-512F (rng_avx512.c) */
void cr_rng_uniform_avx512(uint64_t seed, uint64_t stream, uint64_t first, float *u, size_t n);
/* the stoppers kernel eight words at a time (stoppers_avx2.c) */
unsigned cr_stoppers_avx2(const uint32_t *w, unsigned n, uint32_t pivot_key, uint32_t tie_key, bool le, uint16_t *ofs);
/* the same sixteen words at a time with VPCOMPRESSD (stoppers_avx512.c) */
unsigned cr_stoppers_avx512(const uint32_t *w, unsigned n, uint32_t pivot_key, uint32_t tie_key, bool le, uint16_t *ofs);

extern const cr_kernels cr_kernels_scalar;
extern const cr_kernels cr_kernels_avx2;
extern const cr_kernels cr_kernels_avx512;

/* Combine the eight lanes of sum8 in the one fixed order. */
static inline double cr_sum8_combine(const double l[8])
{ return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7])); }

/* Does this CPU run table k? */
bool cr_kernels_supported(const cr_kernels *k);

/* Choose the kernel table: `want` ("scalar", "avx2", "avx512") if given,
 * else $CRUCIBLE_ISA if set, else the best the CPU supports. Errors:
 * CR_ERR_ARG for an unknown name, CR_ERR_UNSUPPORTED when the CPU lacks the
 * requested ISA. The result is static (never freed). */
cr_status cr_kernels_pick(const char *want, const cr_kernels **out, cr_error *err);

#endif
