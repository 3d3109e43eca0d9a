/* ops.c — the op table, generated from ops.def. */
#include "program.h"
#include "hash.h"

#include <string.h>

const cr_op_info cr_op_table[CR_OP_COUNT] = {
#define CR_OP(name, str, ctx, kinds, flags, synopsis) \
    [CR_OP_##name] = { str, ctx, kinds, flags, synopsis },
#include "ops.def"
#undef CR_OP
};

/* Opcodes are indices into this table, so a .crb is only meaningful to a
 * crucible with the same table: the fingerprint covers every op's position,
 * name, context, operand kinds and flags (not the synopsis, which is prose). */
uint64_t cr_op_table_fingerprint(void)
{
    uint64_t h = 0;
    for (int i = 0; i < CR_OP_COUNT; i++) {
        const cr_op_info *o = &cr_op_table[i];
        h = cr_xxh64(o->name, strlen(o->name), h);
        uint32_t meta[3] = { (uint32_t)i, (uint32_t)o->ctx, o->flags };
        h = cr_xxh64(meta, sizeof meta, h);
        h = cr_xxh64(o->kinds, 4, h);
    }
    return h;
}

bool cr_op_registers_only(cr_op op)
{
    switch (op) {
    case CR_OP_MOV: case CR_OP_NEG: case CR_OP_ABS: case CR_OP_SIGN: case CR_OP_SQRT:
    case CR_OP_EXP: case CR_OP_LOG: case CR_OP_NOT:
    case CR_OP_ADD: case CR_OP_SUB: case CR_OP_MUL: case CR_OP_DIV: case CR_OP_MIN: case CR_OP_MAX:
    case CR_OP_GT: case CR_OP_GE: case CR_OP_LT: case CR_OP_LE: case CR_OP_EQ: case CR_OP_NE:
    case CR_OP_AND: case CR_OP_OR: case CR_OP_WHERE:
    case CR_OP_LOAD: case CR_OP_SPLAT: case CR_OP_ROWB: case CR_OP_COLB: case CR_OP_RAND:
        return true;
    default:
        return false;
    }
}
