/* ops.c — the op table, generated from ops.def, its fingerprint, and the
 * compile-time checks that keep the table's columns consistent. */
#include "program.h"
#include "hash.h"

#include <string.h>

const cr_op_info cr_op_table[CR_OP_COUNT] = {
#define CR_OP(name, str, ctx, kinds, flags, red, synopsis) \
    [CR_OP_##name] = { str, ctx, kinds, flags, CR_RED_##red, synopsis },
#include "ops.def"
#undef CR_OP
};

/* One row per op (the enum and the table come from the same lines; this
 * counts the rows a third way, so a row the enum lost cannot pass). */
enum {
    OPS_ROWS = 0
#define CR_OP(name, str, ctx, kinds, flags, red, synopsis) + 1
#include "ops.def"
#undef CR_OP
};
_Static_assert(OPS_ROWS == CR_OP_COUNT, "ops.def rows and cr_op disagree");
_Static_assert(sizeof cr_op_table / sizeof cr_op_table[0] == CR_OP_COUNT, "op table size");
_Static_assert((CR_OPF_TORCH_ORDER << 1) == (1u << CR_OPF_BITS), "CR_OPF_BITS names every flag");

/* Column rules, checked per row at compile time: a reduction has a RED kind
 * and only a reduction has one; an elementwise op rounds and touches only
 * registers; a reduction's RED kind is not NONE, and an op that runs
 * blocks of whole rows (unblocked) needs whole rows in a chunk. */
#define CR_OP(name, str, ctx, kinds, flags, red, synopsis)                                                  \
    _Static_assert(!((flags) & CR_OPF_REDUCE) == (CR_RED_##red == CR_RED_NONE), #name ": REDUCE iff RED");   \
    _Static_assert(!((flags) & CR_OPF_ELEM) || (((flags) & CR_OPF_ROUNDS) && ((flags) & CR_OPF_REGS)),     \
                   #name ": an elementwise op rounds and writes only a register");                           \
    _Static_assert(!((flags) & CR_OPF_UNBLOCKED) || ((flags) & CR_OPF_ROWS), #name ": UNBLOCKED needs ROWS");
#include "ops.def"
#undef CR_OP

/* Opcodes are indices into this table, so a .crb is only meaningful to a
 * crucible with the same table: the fingerprint covers every op's position,
 * name, context, operand kinds, flags and reduction kind (not the synopsis,
 * which is prose, nor the graph column, which is the compiler's). */
uint64_t cr_op_table_fingerprint(void)
{
    uint64_t h = 0;
    for (int i = 0; i < CR_OP_COUNT; i++) {
        const cr_op_info *o = &cr_op_table[i];
        h = cr_xxh64(o->name, strlen(o->name), h);
        uint32_t meta[4] = { (uint32_t)i, (uint32_t)o->ctx, o->flags, (uint32_t)o->red };
        h = cr_xxh64(meta, sizeof meta, h);
        h = cr_xxh64(o->kinds, 4, h);
    }
    return h;
}
