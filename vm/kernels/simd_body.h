/* simd_body.h — the SIMD kernel table written once over a small vector
 * vocabulary. An ISA file (avx2.c, avx512.c) defines the vocabulary below
 * and includes this file, which defines the exported table named by TABLE.
 * No op here names an ISA; each op's element semantics are those of
 * scalar_ops.h, which also handles every tail.
 *
 * Vocabulary (VW lanes of f32):
 *   VF, VM                  vector of floats, comparison mask
 *   TARGET                  function attribute enabling the ISA
 *   vload(p) vstore(p,x) vset1(f)
 *   vadd vsub vmul vdiv vsqrt vfma(a, b, c) (a * b + c, one rounding)
 *   vany_nan(x)             does any lane of x hold a NaN?
 *   vmin_raw vmax_raw       x86 semantics: (a < b ? a : b), b if either is NaN
 *   vcmp(a, b, PRED)        _CMP_* predicate -> VM
 *   vblend(m, f, t)         m ? t : f
 *   vand_bits vxor_bits     bitwise on floats
 *   vload_bf16 vstore_bf16 vround_bf16
 *   vload_f16 vstore_f16 vround_f16
 *   vsum8(acc, p)           add 8 floats at p to the 8 f64 lanes
 */

#define VSIGN vset1(-0.0f)

/* v_unary, v_binary, v_where, then the same with bf16 rounding fused
 * (simd_ops.h included twice with RND set to each) */
#define RND(x) (x)
#define SUFFIX(name) name
#include "simd_ops.h"
#undef RND
#undef SUFFIX
#define RND(x) vround_bf16(x)
#define SUFFIX(name) name##_bf16
#include "simd_ops.h"
#undef RND
#undef SUFFIX


/* FMA lanes; a vector with a NaN result is redone by the reference, whose
 * NaN rule does not depend on the instruction encoding */
static TARGET void v_fma(float *d, const float *a, const float *b, const float *c, size_t n)
{
    size_t i = 0, nv = n / VW * VW;
    for (; i < nv; i += VW) {
        VF r = vfma(vload(a + i), vload(b + i), vload(c + i));
        if (vany_nan(r)) cr_kernels_scalar.fma(d + i, a + i, b + i, c + i, VW);
        else vstore(d + i, r);
    }
    cr_kernels_scalar.fma(d + i, a + i, b + i, c + i, n - i);
}

static TARGET void v_round(cr_dtype t, float *x, size_t n)
{
    size_t i = 0, nv = n / VW * VW;
    if (t == CR_DTYPE_BF16) for (; i < nv; i += VW) vstore(x + i, vround_bf16(vload(x + i)));
    else if (t == CR_DTYPE_F16) for (; i < nv; i += VW) vstore(x + i, vround_f16(vload(x + i)));
    else return;
    cr_kernels_scalar.round(t, x + i, n - i);
}

static TARGET void v_load(cr_dtype t, const void *src, float *dst, size_t n)
{
    size_t i = 0, nv = n / VW * VW;
    const uint16_t *h = src;
    if (t == CR_DTYPE_BF16) for (; i < nv; i += VW) vstore(dst + i, vload_bf16(h + i));
    else if (t == CR_DTYPE_F16) for (; i < nv; i += VW) vstore(dst + i, vload_f16(h + i));
    else { cr_kernels_scalar.load(t, src, dst, n); return; }
    cr_kernels_scalar.load(t, h + i, dst + i, n - i);
}

static TARGET void v_store(cr_dtype t, const float *src, void *dst, size_t n)
{
    size_t i = 0, nv = n / VW * VW;
    uint16_t *h = dst;
    if (t == CR_DTYPE_BF16) for (; i < nv; i += VW) vstore_bf16(h + i, vload(src + i));
    else if (t == CR_DTYPE_F16) for (; i < nv; i += VW) vstore_f16(h + i, vload(src + i));
    else { cr_kernels_scalar.store(t, src, dst, n); return; }
    cr_kernels_scalar.store(t, src + i, h + i, n - i);
}

static TARGET void v_sum8(const float *a, size_t n, double lanes[8])
{
    size_t i = 0, n8 = n / 8 * 8;
    VSUM_ACC acc;
    vsum8_init(acc, lanes);
    for (; i < n8; i += 8) vsum8(acc, a + i);
    vsum8_done(acc, lanes);
    for (; i < n; i++) lanes[i & 7] += (double)a[i];
}

const cr_kernels TABLE = {
    ISA_NAME, v_unary, v_binary, v_where, v_fma, v_round, v_load, v_store, v_sum8, v_unary_bf16, v_binary_bf16, v_where_bf16,
    UNIFORM, STOPPERS
};
