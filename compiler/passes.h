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
/* Kernel fusion: groups the work into kernels, one per pass level of each
 * domain (cr_graph.kernel_start / kernel_of), which the emitter follows;
 * --dump=fuse prints the groups. Off: one kernel per reduction, selection
 * pass and store, each recomputing its inputs. */
cr_status cr_pass_fuse(cr_graph *g, cr_error *err);

#endif
