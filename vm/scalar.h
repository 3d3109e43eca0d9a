/* scalar.h — the semantics of one top-level value op (ops.def's "v"/"s"
 * operands): computed in f64, then rounded to the instruction's dtype.
 * The VM's main loop runs these, and the compiler's constant folding calls
 * the same functions, so a folded constant is the number the VM would have
 * produced: folding can never change an output byte. */
#ifndef CR_SCALAR_H
#define CR_SCALAR_H

#include <stdbool.h>
#include "dtype.h"
#include "program.h"

/* f64 result of value op `op` on operands a, b, c (unused ones ignored);
 * false when `op` is not a pure value op (kernels, selections, I/O...).
 * NaN rules as the kernels' (vm/kernels/scalar_ops.h): min/max return a
 * NaN operand, sign keeps NaN, comparisons are false on NaN but ne. */
bool cr_scalar_apply(cr_op op, double a, double b, double c, double *out);

/* v rounded to dtype `dt` (f32/bf16/f16: round to nearest even through
 * f32; any other dtype: unchanged, f64). */
double cr_scalar_round(cr_dtype dt, double v);

#endif
