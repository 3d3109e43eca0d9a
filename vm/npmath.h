/* npmath.h — NumPy's float32 sin and cos, bit for bit (see npmath.c). */
#ifndef CR_NPMATH_H
#define CR_NPMATH_H

/* np.sin / np.cos of a float32 value as NumPy 2.x computes them on an
 * x86-64 CPU with FMA (its SIMD loop; one lane of it for a scalar). */
float cr_np_sinf(float x);
float cr_np_cosf(float x);

/* np.arccos of a float32 as NumPy computes it on x86-64 without AVX-512:
 * glibc's acosf (the fdlibm float algorithm; glibc 2.36). */
float cr_glibc_acosf(float x);

#endif
