/* test_emit.c — graphs built through the Lua API are scheduled and emitted
 * into programs that pass cr_program_verify, with the op sequences the
 * execution model prescribes (levels, selection passes, COPY, fusion). */
#include <stdlib.h>
#include <unistd.h>
#include "harness.h"
#include "support/graph_fixtures.h"
#include "emit.h"
#include "layout.h"
#include "passes.h"

static char tmpdir[256];

typedef struct fx { cr_graph g; cr_lua *L; uint32_t d, in[4]; } fx;

static bool setup(fx *f, uint64_t rows, uint64_t cols)
{
    cr_graph_init(&f->g, cr_default_allocator());
    cr_error err;
    if (cr_lua_open(cr_default_allocator(), NULL, &f->L, &err)) return false;
    f->d = cr_test_graph_file_inputs(&f->g, tmpdir, rows, cols, 3, f->in, NULL);
    return f->d != UINT32_MAX;
}

static void teardown(fx *f) { cr_lua_close(f->L); cr_graph_free(&f->g); }

/* merge body -> output -> passes -> program; returns status */
static cr_status compile(fx *f, const char *body, bool fuse, cr_program *p, cr_error *err)
{
    uint32_t r = cr_test_lua_merge(f->L, &f->g, f->d, f->in, 3, true, body, false, err);
    if (r == CR_NO_NODE) return CR_ERR_CONFIG;
    cr_graph_output o = { .node = r, .domain = f->d, .name = "t.weight", .dtype = CR_DTYPE_F32, .ndim = 2,
                          .shape = { f->g.domains[f->d].rows, f->g.domains[f->d].cols } };
    cr_graph_add_output(&f->g, &o);
    cr_status st;
    if ((st = cr_graph_verify(&f->g, err)) || (st = cr_pass_fold(&f->g, err)) ||
        (st = cr_pass_cse(&f->g, err)) || (st = cr_pass_dce(&f->g, err))) return st;
    if (fuse && (st = cr_pass_fuse(&f->g, err))) return st;
    if ((st = cr_graph_verify(&f->g, err))) return st;
    cr_emit_options eo = { .chunk = 16 };
    if ((st = cr_emit_program(&f->g, &eo, p, err))) return st;
    if ((st = cr_layout_outputs(p, 0, err)) || (st = cr_program_verify(p, err))) {
        cr_program_free(p);
        return st;
    }
    return CR_OK;
}

static int count_main(const cr_program *p, cr_op op)
{
    int n = 0;
    for (uint32_t i = 0; i < p->n_main; i++) n += p->main[i].op == op;
    return n;
}
static int count_code(const cr_program *p, cr_op op)
{
    int n = 0;
    for (uint32_t i = 0; i < p->n_code; i++) n += p->code[i].op == op;
    return n;
}

TEST(linear_is_one_kernel)
{
    fx f;
    REQUIRE(setup(&f, 4, 8));
    cr_program p;
    cr_error err = {0};
    cr_status st = compile(&f, "local xs = ctx.inputs\n"
                               "local ws = cr.weights_of(xs, 'float32')\n"
                               "local t = {}\nfor i, x in ipairs(xs) do t[i] = ws[i] * x end\n"
                               "return cr.sum_of(t) / cr.sum_of(ws)", true, &p, &err);
    CHECK_MSG(st == CR_OK, "%s", err.msg);
    REQUIRE(st == CR_OK);
    CHECK_EQ_INT(p.n_kernels, 1);
    CHECK_EQ_INT(count_code(&p, CR_OP_LOAD), 3);
    CHECK_EQ_INT(count_code(&p, CR_OP_STORE), 1);
    CHECK_EQ_INT(count_main(&p, CR_OP_DONE), 1);
    CHECK_EQ_INT(count_main(&p, CR_OP_RELEASE), 3);
    CHECK_EQ_INT(count_main(&p, CR_OP_PREFETCH), 3);
    CHECK_EQ_INT(p.n_shards, 1);
    CHECK_STR(cr_prog_str(&p, p.shards[0].file_name), "model.safetensors");
    /* the weights fold: Σw = 0.25 + 0.5 + 0.75 = 1.5 is a constant slot */
    bool found = false;
    for (uint32_t i = 0; i < p.n_scalars; i++) found |= p.scalar_init[i] == 1.5;
    CHECK(found);
    CHECK_EQ_INT(count_main(&p, CR_OP_ADD), 0);
    cr_program_free(&p);
    teardown(&f);
}

TEST(passthrough_is_copy)
{
    fx f;
    REQUIRE(setup(&f, 4, 8));
    cr_program p;
    cr_error err = {0};
    REQUIRE(compile(&f, "return ctx.inputs[2]:cast('float32')", true, &p, &err) == CR_OK);
    CHECK_EQ_INT(p.n_kernels, 0);
    CHECK_EQ_INT(count_main(&p, CR_OP_COPY), 1);
    cr_program_free(&p);
    teardown(&f);
}

TEST(norm_needs_two_passes)
{
    fx f;
    REQUIRE(setup(&f, 4, 8));
    cr_program p;
    cr_error err = {0};
    REQUIRE(compile(&f, "local a = ctx.inputs[1]\nreturn a / a:norm() + a:sum()", true, &p, &err) == CR_OK);
    CHECK_EQ_INT(p.n_kernels, 2);
    CHECK_EQ_INT(count_code(&p, CR_OP_RSUM), 2);
    CHECK_EQ_INT(count_main(&p, CR_OP_SQRT), 1);
    /* the sqrt runs between the kernels */
    int k = 0, sqrt_at = -1, k2 = -1;
    for (uint32_t i = 0; i < p.n_main; i++) {
        if (p.main[i].op == CR_OP_KERNEL && ++k == 2) k2 = (int)i;
        if (p.main[i].op == CR_OP_SQRT) sqrt_at = (int)i;
    }
    CHECK(sqrt_at >= 0 && sqrt_at < k2);
    cr_program_free(&p);
    teardown(&f);
}

TEST(no_fuse_means_more_kernels)
{
    fx f;
    REQUIRE(setup(&f, 4, 8));
    cr_program p;
    cr_error err = {0};
    REQUIRE(compile(&f, "local a = ctx.inputs[1]\nreturn a / a:norm() + a:sum()", false, &p, &err) == CR_OK);
    CHECK_EQ_INT(p.n_kernels, 3);
    cr_program_free(&p);
    teardown(&f);
}

TEST(topk_sequence)
{
    fx f;
    REQUIRE(setup(&f, 4, 8));
    cr_program p;
    cr_error err = {0};
    REQUIRE(compile(&f, "local d = ctx.inputs[2] - ctx.inputs[1]\n"
                        "return ctx.inputs[1] + d * cr.topk_mask(d, 10) + cr.kth_largest_abs(d, 10)",
                        true, &p, &err) == CR_OK);
    static const cr_op want[] = { CR_OP_SEL_INIT, CR_OP_KERNEL, CR_OP_SEL_FIND_HI, CR_OP_KERNEL,
                                  CR_OP_SEL_FIND_LO, CR_OP_SEL_VALUE, CR_OP_KERNEL, CR_OP_SEL_PREFIX,
                                  CR_OP_KERNEL };
    size_t w = 0;
    for (uint32_t i = 0; i < p.n_main && w < CR_ARRAY_LEN(want); i++)
        if (p.main[i].op == want[w]) w++;
    CHECK_EQ_INT(w, CR_ARRAY_LEN(want));
    CHECK_EQ_INT(p.n_selects, 1);
    CHECK_EQ_INT(p.selects[0].n, 32);
    CHECK_EQ_INT(p.selects[0].chunk, p.kernels[0].chunk);
    CHECK_EQ_INT(count_code(&p, CR_OP_TOPK_MASK), 1);
    cr_program_free(&p);
    teardown(&f);
}

TEST(row_ops_use_whole_rows)
{
    fx f;
    REQUIRE(setup(&f, 6, 5));
    cr_program p;
    cr_error err = {0};
    REQUIRE(compile(&f, "local a = ctx.inputs[1]\nreturn cr.row_rank(a) / a:row_norm()", true, &p, &err) == CR_OK);
    CHECK_EQ_INT(p.n_kernels, 2);
    for (uint32_t k = 0; k < p.n_kernels; k++) {
        CHECK(p.kernels[k].flags & CR_KERNEL_ROWS);
        CHECK_EQ_INT(p.kernels[k].chunk % 5, 0);
    }
    CHECK_EQ_INT(p.n_rowvecs, 1);
    cr_program_free(&p);
    teardown(&f);
}

TEST(register_reuse)
{
    fx f;
    REQUIRE(setup(&f, 4, 8));
    cr_program p;
    cr_error err = {0};
    /* a long chain needs few registers */
    REQUIRE(compile(&f, "local a = ctx.inputs[1]\nlocal x = a\n"
                        "for i = 1, 50 do x = cr.abs(x + a) * 0.5 end\nreturn x", true, &p, &err) == CR_OK);
    CHECK(p.kernels[0].n_regs <= 4);
    CHECK(p.n_code > 100);
    cr_program_free(&p);
    teardown(&f);
}

TEST(rand_streams)
{
    fx f;
    REQUIRE(setup(&f, 4, 8));
    cr_program p;
    cr_error err = {0};
    REQUIRE(compile(&f, "local a = ctx.inputs[1]\n"
                        "return cr.where(cr.lt(cr.rand(ctx, 1), 0.5), a, 0) + cr.where(cr.lt(cr.rand(ctx, 2), 0.5), a, 0)",
                        true, &p, &err) == CR_OK);
    CHECK_EQ_INT(p.n_streams, 2);
    CHECK(p.streams[0].key != p.streams[1].key);
    cr_program_free(&p);
    teardown(&f);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cr_test_emit_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(linear_is_one_kernel);
    RUN(passthrough_is_copy);
    RUN(norm_needs_two_passes);
    RUN(no_fuse_means_more_kernels);
    RUN(topk_sequence);
    RUN(row_ops_use_whole_rows);
    RUN(register_reuse);
    RUN(rand_streams);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) {}
    return cr_test_summary();
}
