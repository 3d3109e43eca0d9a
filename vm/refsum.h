/* refsum.h — float32 reductions in the exact order of the libraries that
 * mergekit's NumPy code calls (see refsum.c). */
#ifndef CR_REFSUM_H
#define CR_REFSUM_H

#include <stdbool.h>
#include <stdint.h>

/* NumPy's np.sum of a contiguous float32 array: 0 + pairwise sum (blocks of
 * at most 128 summed with 8 accumulators, halves split at multiples of 8). */
float cr_refsum_numpy(const float *x, uint64_t n);

/* OpenBLAS's single-threaded sdot(x, x) with its AVX2 (Haswell) kernel, as
 * np.linalg.norm(x)**2 computes it: 32 float32 lanes of fused multiply-adds
 * over the first n & ~31 elements, a fixed tree over the lanes, the tail in
 * double, rounded to float at the end. */
float cr_refsum_blas_ssq(const float *x, uint64_t n);

/* torch's CPU sum of a contiguous float32 tensor, single-threaded
 * (aten/src/ATen/native/cpu/SumKernel.cpp, cascade_sum on AVX2): 8-lane
 * vectors, 4 interleaved accumulators, a 4-level cascade, the scalar tail
 * and then the lanes added in order. Tensors of under 8 elements take the
 * scalar path (4 interleaved scalar accumulators). `reduced`: the tensor is
 * bf16/f16, whose vector load adds the two float halves of 16 values (the
 * values are in x as floats; x is overwritten). */
float cr_refsum_torch(float *x, uint64_t n, bool reduced);

/* torch's CPU 2-norm squared of a contiguous float32 vector along its last
 * dimension (ReduceOpsKernel.cpp, the vectorised norm-2 path on AVX2):
 * 8 lanes of rounded x*x added (no FMA), the lanes added in order, then the
 * scalar tail. */
float cr_refsum_torch_ssq(const float *x, uint64_t n);

#endif
