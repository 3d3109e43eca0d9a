/* graph_fixtures.c — see graph_fixtures.h. */
#include <stdio.h>
#include <string.h>
#include "graph_fixtures.h"

uint32_t cr_test_graph_inputs(cr_graph *g, uint64_t rows, uint64_t cols, cr_dtype t,
                              int n, uint32_t *nodes)
{
    uint32_t d = cr_graph_add_domain(g, rows, cols, "t.weight", 0);
    for (int i = 0; i < n; i++) {
        cr_graph_input in = { .model = (uint32_t)i, .tensor = "w", .dtype = t, .rows = rows,
                              .cols = cols, .src_rows = rows, .src_cols = cols };
        uint32_t ii = cr_graph_add_input(g, &in);
        cr_node nd = { .op = CR_GOP_INPUT, .dtype = t, .rdt = t, .kind = CR_VK_TENSOR,
                       .domain = d, .attr = ii };
        nodes[i] = cr_graph_add(g, &nd);
    }
    return d;
}

uint32_t cr_test_lua_merge(cr_lua *L, cr_graph *g, uint32_t domain, const uint32_t *nodes, int n,
                           bool base0, const char *body, bool precise, cr_error *err)
{
    char code[8192];
    snprintf(code, sizeof code, "return { merge = function(ctx)\n%s\nend }\n", body);
    int ref;
    if (cr_lua_load_chunk(L, "test.lua", code, strlen(code), &ref, err)) return CR_NO_NODE;
    static const char *models[] = {"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"};
    cr_param_value wv[8];
    cr_param_set ps[8];
    cr_lua_input ins[8];
    uint64_t shape[2] = { g->domains[domain].rows, g->domains[domain].cols };
    for (int i = 0; i < n && i < 8; i++) {
        wv[i] = (cr_param_value){ "weight", 0.25 * (i + 1), true };
        ps[i] = (cr_param_set){ &wv[i], 1 };
        ins[i] = (cr_lua_input){ .node = nodes[i], .model = models[i], .tensor = "w",
                                 .is_base = base0 && i == 0, .dtype = g->nodes[nodes[i]].dtype,
                                 .ndim = 2, .shape = shape, .params = &ps[i] };
    }
    cr_lua_call call = { .name = "t.weight", .layer = 0, .ndim = 2, .shape = shape,
                         .domain = domain, .inputs = ins, .n_inputs = (uint32_t)n,
                         .dtype = CR_DTYPE_NONE, .precise = precise, .seed = 42 };
    uint32_t result = CR_NO_NODE;
    if (cr_lua_call_merge(L, ref, g, &call, &result, err)) return CR_NO_NODE;
    return result;
}
