/* test_graph_scale.c — deep graphs and many tensors (spec/reliability.md
 * §8.4): a method that chains 100,000 operations, `cr.sum_of` over 100,000
 * terms and a chain of 100,000 stage outputs compile without overflowing
 * the C stack; the graph-node limit fails cleanly at its edge, naming the
 * script line; and a graph of 100,000 output tensors compiles (the emitter
 * was quadratic in tensors: this test ran for hours before the fix — it
 * fails by never finishing, not by a timing assertion).
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "support/graph_fixtures.h"
#include "compile.h"
#include "emit.h"
#include "layout.h"
#include "limits.h"
#include "passes.h"

/* the middle end: fold, cse, dce, fuse, then emit, lay out and verify the program */
static cr_status compile_graph(cr_graph *g, cr_program *p, cr_error *err)
{
    cr_compile_options co = { .chunk = 16 };
    return cr_compile_graph(g, &co, NULL, NULL, 0, p, err);
}

static void add_out(cr_graph *g, uint32_t node, uint32_t d, const char *name)
{
    cr_graph_output o = { .node = node, .domain = d, .name = name, .dtype = CR_DTYPE_F32, .ndim = 2,
                          .shape = { g->domains[d].rows, g->domains[d].cols } };
    cr_graph_add_output(g, &o);
}

/* the fixture's inputs with a place in a file, as the program verifier wants */
static uint32_t file_inputs(cr_graph *g, uint64_t rows, uint64_t cols, int n, uint32_t *nodes)
{
    uint32_t d = cr_test_graph_inputs(g, rows, cols, CR_DTYPE_F32, n, nodes);
    for (uint32_t i = 0; i < g->n_inputs; i++) {
        g->inputs[i].path = "m.safetensors";
        g->inputs[i].file_size = 1u << 20;
        g->inputs[i].offset = 8;
        g->inputs[i].nbytes = rows * cols * 4;
    }
    return d;
}

/* Run a merge body on one 4 x 8 domain with two f32 inputs and compile the
 * result; the program's kernel micro-op count in *n_code. */
static cr_status lua_compile(const char *body, uint32_t max_nodes, uint32_t *n_code, cr_error *err)
{
    cr_graph g;
    cr_graph_init(&g, cr_default_allocator());
    cr_lua *L;
    cr_status st = cr_lua_open(cr_default_allocator(), NULL, &L, err);
    if (st) { cr_graph_free(&g); return st; }
    uint32_t in[2];
    uint32_t d = file_inputs(&g, 4, 8, 2, in);
    if (max_nodes) g.max_nodes = max_nodes;
    uint32_t r = cr_test_lua_merge(L, &g, d, in, 2, true, body, false, err);
    if (r == CR_NO_NODE) {
        st = CR_ERR_CONFIG;
    } else {
        add_out(&g, r, d, "t.weight");
        cr_program p;
        if (!(st = compile_graph(&g, &p, err))) {
            *n_code = p.n_code;
            cr_program_free(&p);
        }
    }
    cr_lua_close(L);
    cr_graph_free(&g);
    return st;
}

TEST(chain_of_100k_ops_compiles)
{
    cr_error err = {0};
    uint32_t n_code = 0;
    /* one kernel evaluating x * c 100,000 times over: the emitter walked
     * this chain recursively and overflowed the stack */
    cr_status st = lua_compile("local x = ctx.inputs[1]\n"
                               "for i = 1, 100000 do x = x * 1.0001 end\n"
                               "return x", 0, &n_code, &err);
    CHECK_MSG(st == CR_OK, "%s", err.msg);
    CHECK(n_code >= 100000);
}

TEST(sum_of_100k_terms_compiles)
{
    cr_error err = {0};
    uint32_t n_code = 0;
    /* distinct terms: sum_of cascades every 16 values as torch does, and
     * cse would merge the equal block sums of a repeating list */
    cr_status st = lua_compile("local t = {}\n"
                               "for i = 1, 100000 do t[i] = ctx.inputs[1 + i % 2] * (1 + i / 2^20) end\n"
                               "return cr.sum_of(t)", 0, &n_code, &err);
    CHECK_MSG(st == CR_OK, "%s", err.msg);
    CHECK(n_code >= 100000);
}

TEST(node_limit_at_its_edge)
{
    const char *body = "local x = ctx.inputs[1]\n"
                       "for i = 1, 1000 do x = x + ctx.inputs[2] end\n"
                       "return x";
    /* how many nodes the graph holds after this body: the fixture's two
     * inputs plus what the method adds */
    cr_graph g;
    cr_graph_init(&g, cr_default_allocator());
    CHECK_EQ_INT(g.max_nodes, CR_LIMIT_GRAPH_NODES);
    cr_lua *L;
    cr_error err = {0};
    REQUIRE(cr_lua_open(cr_default_allocator(), NULL, &L, &err) == CR_OK);
    uint32_t in[2];
    uint32_t d = cr_test_graph_inputs(&g, 4, 8, CR_DTYPE_F32, 2, in);
    REQUIRE(cr_test_lua_merge(L, &g, d, in, 2, true, body, false, &err) != CR_NO_NODE);
    uint32_t total = g.n_nodes;
    cr_lua_close(L);
    cr_graph_free(&g);

    uint32_t n_code = 0;
    cr_status st = lua_compile(body, total, &n_code, &err);
    CHECK_MSG(st == CR_OK, "the limit itself passes: %s", err.msg);
    st = lua_compile(body, total - 1, &n_code, &err);
    CHECK(st != CR_OK);
    CHECK_CONTAINS(err.msg, "limit of");
    CHECK_CONTAINS(err.msg, "CR_LIMIT_GRAPH_NODES");
    CHECK_CONTAINS(err.msg, "t.weight");      /* the tensor being merged */
    CHECK_CONTAINS(err.msg, "test.lua:3");    /* the line that made the node */

    /* nodes made in C (per-tensor glue, MoE gates) meet the same limit */
    cr_graph_init(&g, cr_default_allocator());
    d = cr_test_graph_inputs(&g, 4, 8, CR_DTYPE_F32, 2, in);
    g.max_nodes = g.n_nodes + 1;
    cr_node add = { .op = CR_GOP_ADD, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32, .kind = CR_VK_TENSOR,
                    .domain = d, .n_in = 2, .in = { in[0], in[1] } };
    CHECK(cr_graph_add(&g, &add) != CR_NO_NODE);
    CHECK(cr_graph_add(&g, &add) == CR_NO_NODE);
    CHECK_EQ_INT(cr_graph_add_failed(&g, "t.weight", &err), CR_ERR_LIMIT);
    CHECK_CONTAINS(err.msg, "t.weight: the merge graph reached its limit of");
    cr_graph_free(&g);
}

/* n output tensors of 2 x 4, each a weighted sum of three file inputs (the
 * shape of a linear merge of three models). */
static void many_tensors(cr_graph *g, uint32_t n)
{
    for (uint32_t t = 0; t < n; t++) {
        char name[64];
        snprintf(name, sizeof name, "model.layers.%u.w", t);
        uint32_t d = cr_graph_add_domain(g, 2, 4, name, 0);
        uint32_t acc = CR_NO_NODE;
        for (uint32_t m = 0; m < 3; m++) {
            cr_graph_input gi = { .model = m, .tensor = name, .dtype = CR_DTYPE_F32, .rows = 2, .cols = 4,
                                  .src_rows = 2, .src_cols = 4, .path = m == 0 ? "a.safetensors" : "b.safetensors",
                                  .file_size = 1u << 30, .offset = 8 + 32ull * t, .nbytes = 32 };
            uint32_t ii = cr_graph_add_input(g, &gi);
            cr_node x = { .op = CR_GOP_INPUT, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32,
                          .kind = CR_VK_TENSOR, .domain = d, .attr = ii };
            cr_node w = { .op = CR_GOP_CONST, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32,
                          .kind = CR_VK_SCALAR, .domain = CR_NO_DOMAIN, .value = 0.25 * (m + 1) };
            uint32_t xn = cr_graph_add(g, &x), wn = cr_graph_add(g, &w);
            cr_node mul = { .op = CR_GOP_MUL, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32,
                            .kind = CR_VK_TENSOR, .domain = d, .n_in = 2, .in = { xn, wn } };
            uint32_t p = cr_graph_add(g, &mul);
            if (acc == CR_NO_NODE) { acc = p; continue; }
            cr_node add = { .op = CR_GOP_ADD, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32,
                            .kind = CR_VK_TENSOR, .domain = d, .n_in = 2, .in = { acc, p } };
            acc = cr_graph_add(g, &add);
        }
        add_out(g, acc, d, name);
    }
}

TEST(many_tensors_compile)
{
    enum { N = 100000 };
    cr_graph g;
    cr_graph_init(&g, cr_default_allocator());
    many_tensors(&g, N);
    cr_program p;
    cr_error err = {0};
    cr_status st = compile_graph(&g, &p, &err);
    CHECK_MSG(st == CR_OK, "%s", err.msg);
    if (st == CR_OK) {
        CHECK_EQ_INT(p.n_outputs, N);
        CHECK_EQ_INT(p.n_kernels, N);
        CHECK_EQ_INT(p.n_files, 2);         /* shard paths shared, not one per input */
        cr_program_free(&p);
    }
    cr_graph_free(&g);
}

/* Stage s reads stage s-1's result through scratch: a chain of n domains
 * that the emitter must emit producers-first. */
TEST(chain_of_stages_compiles)
{
    enum { N = 100000 };
    cr_graph g;
    cr_graph_init(&g, cr_default_allocator());
    uint32_t in[1];
    uint32_t d = file_inputs(&g, 2, 4, 1, in);
    uint32_t prev = in[0];
    for (uint32_t s = 1; s <= N; s++) {
        uint32_t ds = cr_graph_add_domain(&g, 2, 4, "t.weight", (int)s);
        cr_graph_input gi = { .scratch = true, .tensor = "t.weight", .src_node = prev, .dtype = CR_DTYPE_F32,
                              .rows = 2, .cols = 4, .src_rows = 2, .src_cols = 4 };
        uint32_t ii = cr_graph_add_input(&g, &gi);
        cr_node x = { .op = CR_GOP_INPUT, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32,
                      .kind = CR_VK_TENSOR, .domain = ds, .attr = ii };
        cr_node neg = { .op = CR_GOP_NEG, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32,
                        .kind = CR_VK_TENSOR, .domain = ds, .n_in = 1 };
        neg.in[0] = cr_graph_add(&g, &x);
        prev = cr_graph_add(&g, &neg);
        d = ds;
    }
    add_out(&g, prev, d, "t.weight");
    cr_program p;
    cr_error err = {0};
    cr_status st = compile_graph(&g, &p, &err);
    CHECK_MSG(st == CR_OK, "%s", err.msg);
    if (st == CR_OK) {
        CHECK_EQ_INT(p.n_scratch, N);
        CHECK_EQ_INT(p.n_kernels, N + 1);
        cr_program_free(&p);
    }
    cr_graph_free(&g);
}

int main(void)
{
    RUN(chain_of_100k_ops_compiles);
    RUN(sum_of_100k_terms_compiles);
    RUN(node_limit_at_its_edge);
    RUN(many_tensors_compile);
    RUN(chain_of_stages_compiles);
    return cr_test_summary();
}
