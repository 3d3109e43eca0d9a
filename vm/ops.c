/* ops.c — the op table, generated from ops.def. */
#include "program.h"

const cr_op_info cr_op_table[CR_OP_COUNT] = {
#define CR_OP(name, str, ctx, kinds, flags, synopsis) \
    [CR_OP_##name] = { str, ctx, kinds, flags, synopsis },
#include "ops.def"
#undef CR_OP
};
