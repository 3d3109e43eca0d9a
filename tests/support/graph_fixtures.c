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

#include "safetensors.h"

float cr_test_pattern(int tensor, uint64_t j)
{
    /* varied signs and magnitudes, a few exact ties */
    int64_t k = (int64_t)((j * 7919u + (uint64_t)tensor * 104729u) % 97u) - 48;
    return (float)k * 0.03125f * (float)(tensor + 1);
}

uint32_t cr_test_graph_file_inputs(cr_graph *g, const char *dir, uint64_t rows, uint64_t cols,
                                   int n, uint32_t *nodes, float **vals)
{
    const cr_allocator *a = cr_default_allocator();
    char path[4096];
    snprintf(path, sizeof path, "%s/m%u.safetensors", dir, g->n_domains);
    cr_st_entry ents[8];
    const void *data[8];
    float *buf[8];
    char names[8][8];
    for (int i = 0; i < n; i++) {
        buf[i] = cr_malloc(a, sizeof(float) * rows * cols + 4);
        for (uint64_t j = 0; j < rows * cols; j++) buf[i][j] = cr_test_pattern(i, j);
        snprintf(names[i], sizeof names[i], "w%d", i);
        ents[i] = (cr_st_entry){ .name = names[i], .dtype = CR_DTYPE_F32, .ndim = 2, .shape = { rows, cols } };
        data[i] = buf[i];
        if (vals) vals[i] = buf[i];
    }
    cr_error err;
    uint32_t d = UINT32_MAX;
    cr_st_file f;
    if (cr_st_write_file(a, path, ents, data, (size_t)n, &err) ||
        cr_st_open(a, path, CR_ST_HEADER_ONLY, &f, &err)) {
        fprintf(stderr, "fixture: %s\n", err.msg);
        goto out;
    }
    d = cr_graph_add_domain(g, rows, cols, "t.weight", 0);
    for (int i = 0; i < n; i++) {
        const cr_st_tensor *t = cr_st_find(&f, names[i]);
        cr_graph_input in = { .model = (uint32_t)i, .tensor = names[i], .dtype = CR_DTYPE_F32,
                              .rows = rows, .cols = cols, .src_rows = rows, .src_cols = cols,
                              .path = path, .file_size = f.file_size,
                              .offset = f.data_start + t->begin, .nbytes = t->end - t->begin };
        uint32_t ii = cr_graph_add_input(g, &in);
        cr_node nd = { .op = CR_GOP_INPUT, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32,
                       .kind = CR_VK_TENSOR, .domain = d, .attr = ii };
        nodes[i] = cr_graph_add(g, &nd);
    }
    cr_st_close(&f);
out:
    if (!vals) for (int i = 0; i < n; i++) cr_free(a, buf[i]);
    return d;
}
