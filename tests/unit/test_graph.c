/* test_graph.c — the graph IR: verifier, CSE, DCE, folding, fusion flag and
 * pass levels. */
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "support/graph_fixtures.h"
#include "emit.h"
#include "passes.h"
#include "scalar.h"

static uint32_t node(cr_graph *g, cr_gop op, uint32_t a, uint32_t b, cr_vkind k, uint32_t d)
{
    cr_node n = { .op = (uint16_t)op, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32, .kind = (uint8_t)k,
                  .domain = d, .n_in = (uint8_t)cr_gop_arity(op), .in = { a, b } };
    return cr_graph_add(g, &n);
}

static uint32_t cnst(cr_graph *g, double v)
{
    cr_node n = { .op = CR_GOP_CONST, .dtype = CR_DTYPE_F64, .rdt = CR_DTYPE_F64, .kind = CR_VK_SCALAR,
                  .domain = CR_NO_DOMAIN, .value = v, .flags = CR_NODEF_WEAK };
    return cr_graph_add(g, &n);
}

static void out(cr_graph *g, uint32_t n, uint32_t d)
{
    cr_graph_output o = { .node = n, .domain = d, .name = "o", .dtype = CR_DTYPE_F32, .ndim = 2,
                          .shape = { 4, 8 } };
    cr_graph_add_output(g, &o);
}

static int live(const cr_graph *g, cr_gop op)
{
    int n = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++)
        n += g->nodes[i].op == op && !(g->nodes[i].flags & CR_NODEF_DEAD);
    return n;
}

TEST(verify_catches_bad_graphs)
{
    cr_graph g;
    cr_graph_init(&g, cr_default_allocator());
    uint32_t in[2];
    uint32_t d = cr_test_graph_inputs(&g, 4, 8, CR_DTYPE_F32, 2, in);
    uint32_t a = node(&g, CR_GOP_ADD, in[0], in[1], CR_VK_TENSOR, d);
    out(&g, a, d);
    cr_error err = {0};
    CHECK(cr_graph_verify(&g, &err) == CR_OK);
    g.nodes[a].in[1] = a;                       /* a cycle */
    CHECK(cr_graph_verify(&g, &err) != CR_OK);
    CHECK_CONTAINS(err.msg, "breaks order");
    g.nodes[a].in[1] = in[1];
    g.nodes[a].kind = CR_VK_SCALAR;             /* wrong kind */
    CHECK(cr_graph_verify(&g, &err) != CR_OK);
    CHECK_CONTAINS(err.msg, "kind");
    g.nodes[a].kind = CR_VK_TENSOR;
    uint32_t d2 = cr_graph_add_domain(&g, 2, 2, "other", 0);
    g.nodes[in[1]].domain = d2;                 /* mixed domains */
    CHECK(cr_graph_verify(&g, &err) != CR_OK);
    CHECK_CONTAINS(err.msg, "domains");
    cr_graph_free(&g);
}

TEST(cse_merges_duplicates)
{
    cr_graph g;
    cr_graph_init(&g, cr_default_allocator());
    uint32_t in[2];
    uint32_t d = cr_test_graph_inputs(&g, 4, 8, CR_DTYPE_F32, 2, in);
    uint32_t a1 = node(&g, CR_GOP_ADD, in[0], in[1], CR_VK_TENSOR, d);
    uint32_t a2 = node(&g, CR_GOP_ADD, in[0], in[1], CR_VK_TENSOR, d);
    uint32_t s1 = node(&g, CR_GOP_SUB, in[0], in[1], CR_VK_TENSOR, d);   /* differs */
    uint32_t m = node(&g, CR_GOP_MUL, a1, a2, CR_VK_TENSOR, d);
    uint32_t r = node(&g, CR_GOP_ADD, m, s1, CR_VK_TENSOR, d);
    out(&g, r, d);
    cr_error err = {0};
    REQUIRE(cr_pass_cse(&g, &err) == CR_OK);
    CHECK(g.nodes[a2].flags & CR_NODEF_DEAD);
    CHECK_EQ_INT(g.nodes[m].in[0], a1);
    CHECK_EQ_INT(g.nodes[m].in[1], a1);
    CHECK(!(g.nodes[s1].flags & CR_NODEF_DEAD));
    CHECK(cr_graph_verify(&g, &err) == CR_OK);
    cr_graph_free(&g);
}

TEST(dce_removes_unused)
{
    cr_graph g;
    cr_graph_init(&g, cr_default_allocator());
    uint32_t in[3];
    uint32_t d = cr_test_graph_inputs(&g, 4, 8, CR_DTYPE_F32, 3, in);
    uint32_t unused = node(&g, CR_GOP_MUL, in[0], in[2], CR_VK_TENSOR, d);
    uint32_t a = node(&g, CR_GOP_ADD, in[0], in[1], CR_VK_TENSOR, d);
    out(&g, a, d);
    cr_error err = {0};
    REQUIRE(cr_pass_dce(&g, &err) == CR_OK);
    CHECK(g.nodes[unused].flags & CR_NODEF_DEAD);
    CHECK(g.nodes[in[2]].flags & CR_NODEF_DEAD);
    CHECK(!(g.nodes[a].flags & CR_NODEF_DEAD));
    CHECK_EQ_INT(live(&g, CR_GOP_INPUT), 2);
    cr_graph_free(&g);
}

TEST(fold_constants_and_casts)
{
    cr_graph g;
    cr_graph_init(&g, cr_default_allocator());
    uint32_t in[1];
    uint32_t d = cr_test_graph_inputs(&g, 4, 8, CR_DTYPE_BF16, 1, in);
    uint32_t c = node(&g, CR_GOP_ADD, cnst(&g, 0.1), cnst(&g, 0.2), CR_VK_SCALAR, CR_NO_DOMAIN);
    g.nodes[c].dtype = g.nodes[c].rdt = CR_DTYPE_BF16;      /* rounded to bf16 */
    uint32_t up = node(&g, CR_GOP_MOV, in[0], 0, CR_VK_TENSOR, d);          /* bf16 -> f32: no-op */
    uint32_t down = node(&g, CR_GOP_MOV, up, 0, CR_VK_TENSOR, d);
    g.nodes[down].dtype = g.nodes[down].rdt = CR_DTYPE_F16;                 /* rounds: kept */
    uint32_t m = node(&g, CR_GOP_MUL, down, c, CR_VK_TENSOR, d);
    out(&g, m, d);
    cr_error err = {0};
    REQUIRE(cr_pass_fold(&g, &err) == CR_OK);
    CHECK_EQ_INT(g.nodes[c].op, CR_GOP_CONST);
    CHECK(g.nodes[c].value == cr_scalar_round(CR_DTYPE_BF16, 0.1 + 0.2));
    CHECK(g.nodes[c].value != 0.1 + 0.2);
    CHECK(g.nodes[up].flags & CR_NODEF_DEAD);
    CHECK_EQ_INT(g.nodes[down].in[0], in[0]);
    CHECK(!(g.nodes[down].flags & CR_NODEF_DEAD));
    CHECK(cr_graph_verify(&g, &err) == CR_OK);
    cr_graph_free(&g);
}

TEST(levels)
{
    cr_graph g;
    cr_graph_init(&g, cr_default_allocator());
    uint32_t in[2];
    uint32_t d = cr_test_graph_inputs(&g, 4, 8, CR_DTYPE_F32, 2, in);
    uint32_t a = node(&g, CR_GOP_ADD, in[0], in[1], CR_VK_TENSOR, d);       /* 0 */
    uint32_t s = node(&g, CR_GOP_SUM, a, 0, CR_VK_SCALAR, d);              /* 1 */
    uint32_t q = node(&g, CR_GOP_SQRT, s, 0, CR_VK_SCALAR, d);             /* 1 */
    uint32_t b = node(&g, CR_GOP_DIV, a, q, CR_VK_TENSOR, d);              /* 1 */
    uint32_t k = cnst(&g, 3);
    uint32_t t = node(&g, CR_GOP_TOPK_MASK, b, k, CR_VK_TENSOR, d);        /* 1 + 3 */
    uint32_t x = node(&g, CR_GOP_KTH_ABS, b, k, CR_VK_SCALAR, d);          /* 1 + 2 */
    uint32_t r = node(&g, CR_GOP_ROWSUM, t, 0, CR_VK_ROWS, d);             /* 5 */
    uint32_t *lv = cr_graph_levels(&g);
    REQUIRE(lv);
    CHECK_EQ_INT(lv[a], 0);
    CHECK_EQ_INT(lv[s], 1);
    CHECK_EQ_INT(lv[q], 1);
    CHECK_EQ_INT(lv[b], 1);
    CHECK_EQ_INT(lv[t], 4);
    CHECK_EQ_INT(lv[x], 3);
    CHECK_EQ_INT(lv[r], 5);
    cr_free(g.alloc, lv);
    cr_graph_free(&g);
}

/* the fuse pass groups each domain's work by pass level: a reduction sits
 * in the kernel of its input's level, an elementwise node in its own
 * level's; scalar maths and constants in none; --dump=fuse lists them */
TEST(fuse_groups_nodes_into_kernels)
{
    cr_graph g;
    cr_graph_init(&g, cr_default_allocator());
    cr_error err = {0};
    uint32_t in[2], in2[1];
    uint32_t d = cr_test_graph_inputs(&g, 4, 8, CR_DTYPE_F32, 2, in);
    uint32_t a = node(&g, CR_GOP_ADD, in[0], in[1], CR_VK_TENSOR, d);       /* level 0 */
    uint32_t s = node(&g, CR_GOP_SUM, a, 0, CR_VK_SCALAR, d);              /* level 1 */
    uint32_t q = node(&g, CR_GOP_SQRT, s, 0, CR_VK_SCALAR, d);
    uint32_t b = node(&g, CR_GOP_DIV, a, q, CR_VK_TENSOR, d);              /* level 1 */
    uint32_t r = node(&g, CR_GOP_ROWSUM, b, 0, CR_VK_ROWS, d);             /* level 2 */
    out(&g, b, d);
    uint32_t d2 = cr_test_graph_inputs(&g, 2, 2, CR_DTYPE_F32, 1, in2);
    out(&g, in2[0], d2);
    CHECK(!g.kernel_of);
    REQUIRE(cr_pass_fuse(&g, &err) == CR_OK);
    REQUIRE(g.kernel_of && g.kernel_start);
    CHECK_EQ_INT(g.n_kernels, 4);              /* d: levels 0, 1, 2; d2: level 0 */
    CHECK_EQ_INT(g.kernel_start[d], 0);
    CHECK_EQ_INT(g.kernel_start[d2], 3);
    CHECK_EQ_INT(g.kernel_of[in[0]], 0);
    CHECK_EQ_INT(g.kernel_of[a], 0);
    CHECK_EQ_INT(g.kernel_of[s], 0);           /* accumulated by the level-0 kernel */
    CHECK_EQ_INT(g.kernel_of[q], CR_NO_KERNEL);
    CHECK_EQ_INT(g.kernel_of[b], 1);
    CHECK_EQ_INT(g.kernel_of[r], 1);
    CHECK_EQ_INT(g.kernel_of[in2[0]], 3);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    REQUIRE(f);
    cr_graph_dump(&g, f);
    fclose(f);
    char want[200];
    snprintf(want, sizeof want, "kernel 1 = @d%u level 1: %%%u %%%u\n", d, b, r);
    CHECK_MSG(strstr(text, want) != NULL, "no '%s' in:\n%s", want, text);
    free(text);
    cr_graph_free(&g);
}

TEST(allocation_failures_are_reported)
{
    /* the graph and the Lua state survive an allocator that fails early */
    for (long n = 0; n < 40; n++) {
        cr_failing_allocator fa;
        cr_failing_allocator_init(&fa, cr_default_allocator(), n, true);
        cr_graph g;
        cr_graph_init(&g, &fa.base);
        uint32_t in[2];
        (void)cr_test_graph_inputs(&g, 4, 8, CR_DTYPE_F32, 2, in);
        cr_lua *L = NULL;
        cr_error err = {0};
        cr_status st = cr_lua_open(&fa.base, NULL, &L, &err);
        CHECK(st == CR_OK || st == CR_ERR_NOMEM || st == CR_ERR_CONFIG);
        cr_lua_close(L);
        cr_graph_free(&g);
        CHECK_EQ_INT(fa.live, 0);
    }
}

int main(void)
{
    RUN(verify_catches_bad_graphs);
    RUN(cse_merges_duplicates);
    RUN(dce_removes_unused);
    RUN(fold_constants_and_casts);
    RUN(levels);
    RUN(fuse_groups_nodes_into_kernels);
    RUN(allocation_failures_are_reported);
    return cr_test_summary();
}
