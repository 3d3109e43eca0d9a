/* graph_fixtures.h — helpers for the graph/Lua/emitter tests: a graph with
 * one domain and some file inputs, and running a Lua merge snippet on it. */
#ifndef CR_TEST_GRAPH_FIXTURES_H
#define CR_TEST_GRAPH_FIXTURES_H

#include "graph.h"
#include "lua_api.h"

/* Add a domain rows x cols and n INPUT nodes (dtype t) reading model i's
 * tensor "w"; node ids in nodes[]. Returns the domain. */
uint32_t cr_test_graph_inputs(cr_graph *g, uint64_t rows, uint64_t cols, cr_dtype t,
                              int n, uint32_t *nodes);

/* Run `return { merge = function(ctx) BODY end }` with the given inputs
 * (input 0 is the base when base0) and global params; result node or
 * CR_NO_NODE with err filled. */
uint32_t cr_test_lua_merge(cr_lua *L, cr_graph *g, uint32_t domain, const uint32_t *nodes, int n,
                           bool base0, const char *body, bool precise, cr_error *err);



/* Write DIR/m.safetensors holding n tensors "w0".."w{n-1}" of rows x cols
 * f32 values (tensor i, element j = (i + 1) * 0.25 + j * 0.01 - 0.3 ... a
 * fixed pattern, returned in vals[i][j] when vals is not NULL), and add a
 * domain plus one INPUT node per tensor reading it. Returns the domain, or
 * UINT32_MAX on failure. */
uint32_t cr_test_graph_file_inputs(cr_graph *g, const char *dir, uint64_t rows, uint64_t cols,
                                   int n, uint32_t *nodes, float **vals);
float cr_test_pattern(int tensor, uint64_t j);
#endif
