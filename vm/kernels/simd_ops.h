/* simd_ops.h — the elementwise entries of simd_body.h, included twice:
 * with RND(x) = x and SUFFIX(f) = f (v_unary, v_binary, v_where), and with
 * RND(x) = vround_bf16(x) and SUFFIX(f) = f##_bf16 (the same ops followed by
 * rounding to bf16 in the register, without a second pass over memory).
 * Tails go to the scalar table's entry of the same name. No include guard:
 * that is the point. */

static TARGET void SUFFIX(v_unary)(cr_op op, float *d, const float *a, size_t n)
{
    size_t i = 0, nv = n / VW * VW;
    switch (op) {
    case CR_OP_MOV: for (; i < nv; i += VW) vstore(d + i, RND(vload(a + i))); break;
    case CR_OP_NEG: for (; i < nv; i += VW) vstore(d + i, RND(vxor_bits(vload(a + i), VSIGN))); break;
    case CR_OP_ABS: for (; i < nv; i += VW) vstore(d + i, RND(vandnot_bits(VSIGN, vload(a + i)))); break;
    case CR_OP_SIGN:
        for (; i < nv; i += VW) {
            VF x = vload(a + i), z = vset1(0.0f);
            VF r = vblend(vcmp(x, z, _CMP_GT_OQ), z, vset1(1.0f));
            r = vblend(vcmp(x, z, _CMP_LT_OQ), r, vset1(-1.0f));
            vstore(d + i, RND(vblend(vcmp(x, x, _CMP_UNORD_Q), r, x)));
        }
        break;
    case CR_OP_SQRT: for (; i < nv; i += VW) vstore(d + i, RND(vsqrt(vload(a + i)))); break;
    case CR_OP_NOT:
        for (; i < nv; i += VW)
            vstore(d + i, RND(vblend(vcmp(vload(a + i), vset1(0.0f), _CMP_EQ_OQ), vset1(0.0f), vset1(1.0f))));
        break;
    default: break;   /* exp, log: libm per element, like the reference */
    }
    SUFFIX(cr_kernels_scalar.unary)(op, d + i, a + i, n - i);
}

static TARGET void SUFFIX(v_binary)(cr_op op, float *d, const float *a, const float *b, size_t n)
{
    size_t i = 0, nv = n / VW * VW;
    const VF one = vset1(1.0f), zero = vset1(0.0f);
#define VLOOP(expr) for (; i < nv; i += VW) { VF x = vload(a + i), y = vload(b + i); vstore(d + i, RND(expr)); } break
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
    SUFFIX(cr_kernels_scalar.binary)(op, d + i, a + i, b + i, n - i);
}

static TARGET void SUFFIX(v_where)(float *d, const float *c, const float *a, const float *b, size_t n)
{
    size_t i = 0, nv = n / VW * VW;
    for (; i < nv; i += VW)
        vstore(d + i, RND(vblend(vcmp(vload(c + i), vset1(0.0f), _CMP_EQ_OQ), vload(a + i), vload(b + i))));
    SUFFIX(cr_kernels_scalar.where)(d + i, c + i, a + i, b + i, n - i);
}
