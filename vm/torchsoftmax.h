/* torchsoftmax.h — torch's CPU softmax along the last dimension, bit for
 * bit (see torchsoftmax.c). */
#ifndef CR_TORCHSOFTMAX_H
#define CR_TORCHSOFTMAX_H

#include <stdbool.h>
#include <stdint.h>

/* The lane width of torch's float vectors in its softmax kernel: 8 as
 * dispatched on an AVX2 CPU, 16 on an AVX-512 one (the kernel is one of
 * the few torch also compiles for AVX-512). */
enum { CR_TORCH_LANES_AVX2 = 8, CR_TORCH_LANES_AVX512 = 16 };

/* F.softmax(x, dim=-1) of one row of n values, single-threaded, as torch
 * 2.x's `_vec_softmax_lastdim` computes it with `lanes`-wide vectors.
 * `reduced`: the row is bf16/f16 (its values exactly representable there),
 * which takes torch's reduced-float kernel; the results are then the
 * float32 values before torch's final rounding to the dtype, which the
 * caller applies (one rounding, nearest even). out may equal x. NaN/Inf
 * inputs give what torch gives up to NaN payloads. */
void cr_torch_softmax_row(const float *x, float *out, uint64_t n, unsigned lanes, bool reduced);

/* One lane of SLEEF's Sleef_expf8_u10 / Sleef_expf16_u10 (xexpf, FMA
 * build): Vectorized<float>::exp() in torch's AVX2 and AVX-512 code. */
float cr_sleef_expf(float x);

/* glibc's expf as x86-64 runs it on a CPU with FMA (the __expf_fma
 * variant of sysdeps/ieee754/flt-32/e_expf.c, glibc 2.27 and later):
 * what torch's scalar tails call through std::exp. */
float cr_glibc_expf(float x);

#endif
