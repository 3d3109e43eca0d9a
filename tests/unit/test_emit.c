/* test_emit.c — graphs built through the Lua API are scheduled and emitted
 * into programs that pass cr_program_verify, with the op sequences the
 * execution model prescribes (levels, selection passes, COPY, fusion). */
#include <stdlib.h>
#include <unistd.h>
#include "harness.h"
#include "support/graph_fixtures.h"
#include "compile.h"
#include "emit.h"
#include "layout.h"
#include "passes.h"
#include "safetensors.h"
#include "vm.h"

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

/* merge body -> output -> passes (a bit per switched-off pass: 1 fold,
 * 2 cse, 4 dce, 8 fuse) -> program; returns status */
static cr_status compile_ex(fx *f, const char *body, unsigned off, cr_dtype out_dt, cr_program *p,
                            cr_error *err)
{
    uint32_t r = cr_test_lua_merge(f->L, &f->g, f->d, f->in, 3, true, body, false, err);
    if (r == CR_NO_NODE) return CR_ERR_CONFIG;
    cr_graph_output o = { .node = r, .domain = f->d, .name = "t.weight", .dtype = out_dt, .ndim = 2,
                          .shape = { f->g.domains[f->d].rows, f->g.domains[f->d].cols } };
    cr_graph_add_output(&f->g, &o);
    static const cr_pass_id bits[] = { CR_PASS_FOLD, CR_PASS_CSE, CR_PASS_DCE, CR_PASS_FUSE };
    cr_compile_options co = { .chunk = 16 };
    for (int i = 0; i < 4; i++)
        if (off & (1u << i)) co.disabled |= 1u << bits[i];
    return cr_compile_graph(&f->g, &co, NULL, NULL, 0, p, err);
}

static cr_status compile(fx *f, const char *body, bool fuse, cr_program *p, cr_error *err)
{
    return compile_ex(f, body, fuse ? 0 : 8, CR_DTYPE_F32, p, err);
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

/* Run p into DIR/out and return model.safetensors' bytes (malloc'd). */
static uint8_t *run_program(const cr_program *p, const char *name, size_t *len, cr_error *err)
{
    char out[512];
    snprintf(out, sizeof out, "%s/%s", tmpdir, name);
    cr_vm_options vo;
    cr_vm_options_init(&vo);
    vo.out_dir = out;
    vo.quiet = true;
    vo.threads = 2;
    vo.skip_hash = true;
    if (cr_vm_run(p, &vo, err)) return NULL;
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    uint8_t *buf = malloc(1 << 20);
    *len = fread(buf, 1, 1 << 20, fp);
    fclose(fp);
    return buf;
}

static const char *numeric_body =
    "local xs, ws, t = {}, cr.weights_of(ctx.inputs, 'bfloat16'), {}\n"
    "for i, x in ipairs(ctx.inputs) do xs[i] = x:cast('bfloat16'); t[i] = ws[i] * xs[i] end\n"
    "local s = cr.sum_of(t) / cr.sum_of(ws)\n"
    "local d = xs[2] - xs[1]\n"
    "return s / s:norm() + cr.abs(d) * 0.5 - cr.where(cr.gt(d, 0), d, 0) * d:row_max()";

/* the same arithmetic, one element at a time, as torch would round it */
static float reference(uint64_t j, uint64_t rows, uint64_t cols, double norm)
{
    float x[3], w[3], t[3];
    for (int i = 0; i < 3; i++) {
        x[i] = cr_round_bf16(cr_test_pattern(i, j));
        w[i] = cr_round_bf16(0.25f * (float)(i + 1));
        t[i] = cr_round_bf16(w[i] * x[i]);
    }
    float s = cr_round_bf16(cr_round_bf16(t[0] + t[1] + t[2]) / cr_round_bf16(w[0] + w[1] + w[2]));
    (void)s;
    float sum = (t[0] + t[1]) + t[2];
    float ws = (w[0] + w[1]) + w[2];
    s = cr_round_bf16(cr_round_bf16(sum) / cr_round_bf16(ws));
    float d = cr_round_bf16(x[1] - x[0]);
    uint64_t r = j / cols;
    float rmax = -INFINITY;
    for (uint64_t c = 0; c < cols; c++) {
        uint64_t jj = r * cols + c;
        float d2 = cr_round_bf16(cr_round_bf16(cr_test_pattern(1, jj)) - cr_round_bf16(cr_test_pattern(0, jj)));
        if (d2 > rmax) rmax = d2;
    }
    (void)rows;
    float a = cr_round_bf16(s / (float)norm);
    float b = cr_round_bf16(cr_round_bf16(fabsf(d)) * 0.5f);
    float c = cr_round_bf16((d > 0 ? d : 0.0f) * rmax);
    return cr_round_bf16(cr_round_bf16(a + b) - c);
}

TEST(runs_and_matches_scalar_reference)
{
    const uint64_t rows = 37, cols = 29;     /* odd sizes: SIMD tails, partial chunks */
    uint8_t *bytes[16] = {0};
    size_t lens[16] = {0};
    for (unsigned off = 0; off < 16; off++) {
        fx f;
        cr_graph_init(&f.g, cr_default_allocator());
        cr_error err = {0};
        REQUIRE(cr_lua_open(cr_default_allocator(), NULL, &f.L, &err) == CR_OK);
        f.d = cr_test_graph_file_inputs(&f.g, tmpdir, rows, cols, 3, f.in, NULL);
        cr_program p;
        cr_status st = compile_ex(&f, numeric_body, off, CR_DTYPE_BF16, &p, &err);
        CHECK_MSG(st == CR_OK, "off=%u: %s", off, err.msg);
        if (st == CR_OK) {
            char name[32];
            snprintf(name, sizeof name, "run%u", off);
            bytes[off] = run_program(&p, name, &lens[off], &err);
            CHECK_MSG(bytes[off] != NULL, "off=%u: %s", off, err.msg);
            cr_program_free(&p);
        }
        teardown(&f);
    }
    REQUIRE(bytes[0]);
    /* numbers: read back through the safetensors reader */
    char path[600];
    snprintf(path, sizeof path, "%s/run0/model.safetensors", tmpdir);
    cr_st_file sf;
    cr_error err = {0};
    REQUIRE(cr_st_open(cr_default_allocator(), path, 0, &sf, &err) == CR_OK);
    const cr_st_tensor *t = cr_st_find(&sf, "t.weight");
    REQUIRE(t && t->dtype == CR_DTYPE_BF16 && t->numel == rows * cols);
    const uint16_t *got = cr_st_data(&sf, t);
    /* the norm of s, summed wide and rounded as the VM does */
    double acc = 0;
    for (uint64_t j = 0; j < rows * cols; j++) {
        float x[3], w[3], tt[3];
        for (int i = 0; i < 3; i++) {
            x[i] = cr_round_bf16(cr_test_pattern(i, j));
            w[i] = cr_round_bf16(0.25f * (float)(i + 1));
            tt[i] = cr_round_bf16(w[i] * x[i]);
        }
        float s = cr_round_bf16(cr_round_bf16((tt[0] + tt[1]) + tt[2]) / cr_round_bf16((w[0] + w[1]) + w[2]));
        acc += (double)s * s;
    }
    double norm = cr_round_bf16((float)sqrt((double)(float)acc));
    int bad = 0;
    for (uint64_t j = 0; j < rows * cols; j++) {
        float want = reference(j, rows, cols, norm);
        float have = cr_bf16_to_f32(got[j]);
        if (cr_f32_bits(want) != cr_f32_bits(have) && bad++ < 5)
            fprintf(stderr, "element %llu: want %.9g have %.9g\n", (unsigned long long)j, want, have);
    }
    CHECK_EQ_INT(bad, 0);
    cr_st_close(&sf);
    /* every combination of switched-off passes gives identical bytes */
    for (unsigned off = 1; off < 16; off++) {
        CHECK_MSG(bytes[off] && lens[off] == lens[0] && !memcmp(bytes[off], bytes[0], lens[0]),
                  "passes off mask %u changes the output", off);
        free(bytes[off]);
    }
    free(bytes[0]);
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
    RUN(runs_and_matches_scalar_reference);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) {}
    return cr_test_summary();
}
