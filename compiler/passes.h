/* passes.h — the graph optimisation passes (spec/graph-ir.md). Each keeps
 * node indices stable (removed nodes are flagged dead) and must not change
 * a single output bit: tests run every example with each pass switched off. */
#ifndef CR_PASSES_H
#define CR_PASSES_H

#include "graph.h"

/* Constant folding: scalar ops on constants become constants (computed as
 * the VM's top level would: f64, rounded to the node's dtype), and casts
 * that cannot change a kernel value are bypassed. */
cr_status cr_pass_fold(cr_graph *g, cr_error *err);
/* Common subexpression elimination: identical nodes are merged. */
cr_status cr_pass_cse(cr_graph *g, cr_error *err);
/* Dead node elimination: nodes no output needs are flagged dead. */
cr_status cr_pass_dce(cr_graph *g, cr_error *err);
/* Kernel fusion: all work of one pass level over a domain shares a kernel
 * (off: one kernel per reduction / store, each recomputing its inputs). */
cr_status cr_pass_fuse(cr_graph *g, cr_error *err);

#endif
