/* emit.h — schedule a graph and emit it as a cr_program (vm/program.h).
 *
 * Scheduling model (spec/graph-ir.md): tensor values are recomputed inside
 * every kernel that needs them, from mmapped inputs. Each node has a pass
 * level (inputs 0, elementwise = max of inputs, a reduction one more than its
 * input, a top-k selection three more); per domain, one kernel runs per level
 * with every reduction due then, and the last one stores the outputs.
 */
#ifndef CR_EMIT_H
#define CR_EMIT_H

#include "graph.h"
#include "program.h"
#include "mkversion.h"

typedef struct cr_emit_options {
    uint64_t chunk;             /* target elements per chunk (0: 16384) */
    uint64_t seed;
    cr_mk_version mk_version;   /* recorded in the program */
    const char *recipe_name;    /* for messages; may be NULL */
} cr_emit_options;

/* Emit the program for g: files, inputs, outputs (shard 0, offsets left 0
 * for cr_layout_outputs to fill), scalars, kernels and the main stream. The
 * caller owns *out (cr_program_free). Files of file inputs come from the
 * graph inputs' path/size fields. */
cr_status cr_emit_program(const cr_graph *g, const cr_emit_options *o, cr_program *out,
                          cr_error *err);

#endif
