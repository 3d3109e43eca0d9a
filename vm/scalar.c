/* scalar.c — top-level value ops, shared by the VM and constant folding. */
#include "scalar.h"
#include "npmath.h"

#include <math.h>

bool cr_scalar_apply(cr_op op, double a, double b, double c, double *out)
{
    double r;
    switch (op) {
    case CR_OP_MOV: r = a; break;
    case CR_OP_ADD: r = a + b; break;
    case CR_OP_SUB: r = a - b; break;
    case CR_OP_MUL: r = a * b; break;
    case CR_OP_DIV: r = a / b; break;
    case CR_OP_NEG: r = -a; break;
    case CR_OP_ABS: r = fabs(a); break;
    case CR_OP_SIGN: r = a != a ? a : a > 0 ? 1 : a < 0 ? -1 : 0; break;
    case CR_OP_SQRT: r = sqrt(a); break;
    case CR_OP_EXP: r = exp(a); break;
    case CR_OP_LOG: r = log(a); break;
    case CR_OP_MIN: r = a != a ? a : b != b ? b : a < b ? a : b; break;
    case CR_OP_MAX: r = a != a ? a : b != b ? b : a > b ? a : b; break;
    case CR_OP_GT: r = a > b; break;
    case CR_OP_GE: r = a >= b; break;
    case CR_OP_LT: r = a < b; break;
    case CR_OP_LE: r = a <= b; break;
    case CR_OP_EQ: r = a == b; break;
    case CR_OP_NE: r = a != b; break;
    case CR_OP_AND: r = a != 0 && b != 0; break;
    case CR_OP_OR: r = a != 0 || b != 0; break;
    case CR_OP_NOT: r = a == 0; break;
    case CR_OP_WHERE: r = a != 0 ? b : c; break;
    case CR_OP_ACOS: r = acos(a); break;
    case CR_OP_SIN: r = sin(a); break;
    case CR_OP_COS: r = cos(a); break;
    case CR_OP_TRUNC: r = trunc(a); break;
    case CR_OP_ACOS_NP: r = cr_glibc_acosf((float)a); break;
    case CR_OP_SIN_NP: r = cr_np_sinf((float)a); break;
    case CR_OP_COS_NP: r = cr_np_cosf((float)a); break;
    default: return false;
    }
    *out = r;
    return true;
}

double cr_scalar_round(cr_dtype dt, double v)
{
    switch (dt) {
    case CR_DTYPE_F32: return (float)v;
    case CR_DTYPE_BF16: return cr_round_bf16((float)v);
    case CR_DTYPE_F16: return cr_round_f16((float)v);
    default: return v;
    }
}
