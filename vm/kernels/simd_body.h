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
 *   vadd vsub vmul vdiv vsqrt
 *   vmin_raw vmax_raw       x86 semantics: (a < b ? a : b), b if either is NaN
 *   vcmp(a, b, PRED)        _CMP_* predicate -> VM
 *   vblend(m, f, t)         m ? t : f
 *   vand_bits vxor_bits     bitwise on floats
 *   vload_bf16 vstore_bf16 vround_bf16
 *   vload_f16 vstore_f16 vround_f16
 *   vsum8(acc, p)           add 8 floats at p to the 8 f64 lanes
 */

#define VSIGN vset1(-0.0f)

static TARGET void v_unary(cr_op op, float *d, const float *a, size_t n)
{
    size_t i = 0, nv = n / VW * VW;
    switch (op) {
    case CR_OP_MOV: if (d != a) memmove(d, a, n * sizeof *d); return;
    case CR_OP_NEG: for (; i < nv; i += VW) vstore(d + i, vxor_bits(vload(a + i), VSIGN)); break;
    case CR_OP_ABS: for (; i < nv; i += VW) vstore(d + i, vandnot_bits(VSIGN, vload(a + i))); break;
    case CR_OP_SIGN:
        for (; i < nv; i += VW) {
            VF x = vload(a + i), z = vset1(0.0f);
            VF r = vblend(vcmp(x, z, _CMP_GT_OQ), z, vset1(1.0f));
            r = vblend(vcmp(x, z, _CMP_LT_OQ), r, vset1(-1.0f));
            vstore(d + i, vblend(vcmp(x, x, _CMP_UNORD_Q), r, x));
        }
        break;
    case CR_OP_SQRT: for (; i < nv; i += VW) vstore(d + i, vsqrt(vload(a + i))); break;
    case CR_OP_NOT:
        for (; i < nv; i += VW)
            vstore(d + i, vblend(vcmp(vload(a + i), vset1(0.0f), _CMP_EQ_OQ), vset1(0.0f), vset1(1.0f)));
        break;
    default: break;   /* exp, log: libm per element, like the reference */
    }
    cr_kernels_scalar.unary(op, d + i, a + i, n - i);
}

static TARGET void v_binary(cr_op op, float *d, const float *a, const float *b, size_t n)
{
    size_t i = 0, nv = n / VW * VW;
    const VF one = vset1(1.0f), zero = vset1(0.0f);
#define VLOOP(expr) for (; i < nv; i += VW) { VF x = vload(a + i), y = vload(b + i); vstore(d + i, (expr)); } break
#define VCMP(pred) VLOOP(vblend(vcmp(x, y, pred), zero, one))
    switch (op) {
    case CR_OP_ADD: VLOOP(vadd(x, y));
    case CR_OP_SUB: VLOOP(vsub(x, y));
    case CR_OP_MUL: VLOOP(vmul(x, y));
    case CR_OP_DIV: VLOOP(vdiv(x, y));
    case CR_OP_MIN: VLOOP(vblend(vcmp(x, x, _CMP_UNORD_Q), vmin_raw(x, y), x));
    case CR_OP_MAX: VLOOP(vblend(vcmp(x, x, _CMP_UNORD_Q), vmax_raw(x, y), x));
    case CR_OP_GT: VCMP(_CMP_GT_OQ);
    case CR_OP_GE: VCMP(_CMP_GE_OQ);
    case CR_OP_LT: VCMP(_CMP_LT_OQ);
    case CR_OP_LE: VCMP(_CMP_LE_OQ);
    case CR_OP_EQ: VCMP(_CMP_EQ_OQ);
    case CR_OP_NE: VCMP(_CMP_NEQ_UQ);
    case CR_OP_AND:
        VLOOP(vblend(vcmp(x, zero, _CMP_EQ_OQ), vblend(vcmp(y, zero, _CMP_EQ_OQ), one, zero), zero));
    case CR_OP_OR:
        VLOOP(vblend(vcmp(x, zero, _CMP_EQ_OQ), one, vblend(vcmp(y, zero, _CMP_EQ_OQ), one, zero)));
    default: break;
    }
#undef VCMP
#undef VLOOP
    cr_kernels_scalar.binary(op, d + i, a + i, b + i, n - i);
}

static TARGET void v_where(float *d, const float *c, const float *a, const float *b, size_t n)
{
    size_t i = 0, nv = n / VW * VW;
    for (; i < nv; i += VW)
        vstore(d + i, vblend(vcmp(vload(c + i), vset1(0.0f), _CMP_EQ_OQ), vload(a + i), vload(b + i)));
    cr_kernels_scalar.where(d + i, c + i, a + i, b + i, n - i);
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
    ISA_NAME, v_unary, v_binary, v_where, v_round, v_load, v_store, v_sum8, cr_rng_uniform_avx2
};
