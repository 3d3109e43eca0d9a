/* tokgraph.h — a vocabulary tensor's inputs permuted into the merged
 * tokenizer's vocabulary (mergekit 0.1.5's PermutedVocabulary) as graph
 * nodes: row gathers plus the default rows (spec/tokenizer-merge.md §5.3).
 */
#ifndef CR_TOKGRAPH_H
#define CR_TOKGRAPH_H

#include "graph.h"
#include "tokmerge.h"

/* For output tensor `name` on domain d (tm->n_pad rows): files[0..k) are
 * the file views of its k inputs (whole stored tensors, 2-D), in source
 * order. Sets nodes[j] to input j's permuted tensor, of dtype *dt (the
 * promoted dtype of the inputs after the recipe's `dtype` cast). */
cr_status cr_tokgraph_inputs(const cr_tokmerge *tm, const cr_plan *plan, const cr_plan_stage *st, const char *name,
                             uint32_t d, const cr_graph_input *files, uint32_t k, cr_graph *g, uint32_t *nodes,
                             cr_dtype *dt, cr_error *err);

#endif
