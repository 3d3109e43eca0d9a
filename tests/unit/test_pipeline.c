/* test_pipeline.c — cr_compile (compiler/pipeline.h), the one way from a
 * source to a program: a recipe file and the same text in memory give the
 * same bytes; the result lists the paths compiling read (formats/outguard.h);
 * a failure names its stage; --no-pass=fuse gives other kernels but the
 * same outputs' layout; a MoE config is recognised by kind. Runs from the
 * repository root on the golden models. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "harness.h"
#include "infile.h"
#include "limits.h"
#include "pipeline.h"

#define CASE "tests/golden/cases/ties_d05/recipe.yml"

static char *g_models;

/* compile `o` and save the program to `path`; false on failure */
static bool compile_save(const cr_pipeline_options *o, const char *path, cr_compile_result *r)
{
    cr_error err = {0};
    if (cr_compile(o, r, &err)) {
        cr_diags_print(&r->diags, stderr);
        fprintf(stderr, "%s\n", err.msg);
        return false;
    }
    return cr_program_save(&r->program, path, &err) == CR_OK;
}

static bool same_file(const char *a, const char *b)
{
    char *ta = NULL, *tb = NULL;
    size_t la = 0, lb = 0;
    cr_error err = {0};
    bool same = !cr_file_read(cr_default_allocator(), a, 1u << 30, "program", &ta, &la, &err) &&
                !cr_file_read(cr_default_allocator(), b, 1u << 30, "program", &tb, &lb, &err) &&
                la == lb && !memcmp(ta, tb, la);
    free(ta);
    free(tb);
    return same;
}

TEST(file_and_text_give_the_same_program)
{
    cr_pipeline_options o = { .path = CASE, .models_dir = g_models, .header_only = true, .no_env = true,
                              .compile = { .seed = 42 }, .collect_inputs = true };
    cr_compile_result r1, r2;
    REQUIRE(compile_save(&o, "/tmp/crucible-pipeline-1.crb", &r1));
    CHECK_EQ_INT(r1.kind, CR_SOURCE_YAML);
    CHECK(r1.program.n_outputs > 0);
    /* the recipe and every model directory it read */
    CHECK(r1.inputs.n >= 3);
    CHECK(r1.inputs.n && !strcmp(r1.inputs.items[0].path, CASE));
    for (uint32_t i = 1; i < r1.inputs.n; i++) CHECK_EQ_INT(r1.inputs.items[i].kind, CR_INPUT_PATH_DIR);
    char *text = NULL;
    size_t len = 0;
    cr_error err = {0};
    REQUIRE(cr_file_read(cr_default_allocator(), CASE, CR_LIMIT_RECIPE_BYTES, "recipe", &text, &len, &err) == CR_OK);
    o.text = text;
    o.text_len = len;
    o.collect_inputs = false;
    CHECK(compile_save(&o, "/tmp/crucible-pipeline-2.crb", &r2));
    CHECK_EQ_INT(r2.inputs.n, 0);
    CHECK(same_file("/tmp/crucible-pipeline-1.crb", "/tmp/crucible-pipeline-2.crb"));
    free(text);
    cr_compile_result_free(&r1);
    cr_compile_result_free(&r2);
    unlink("/tmp/crucible-pipeline-1.crb");
    unlink("/tmp/crucible-pipeline-2.crb");
}

/* fusion is a pass: off, the program has more kernels and no grouping */
TEST(fuse_pass_can_be_switched_off)
{
    cr_pipeline_options o = { .path = CASE, .models_dir = g_models, .header_only = true, .no_env = true };
    cr_compile_result on, off;
    cr_error err = {0};
    REQUIRE(cr_compile(&o, &on, &err) == CR_OK);
    o.compile.disabled = 1u << CR_PASS_FUSE;
    REQUIRE(cr_compile(&o, &off, &err) == CR_OK);
    CHECK(on.graph.kernel_of != NULL);
    CHECK(off.graph.kernel_of == NULL);
    CHECK(on.program.n_kernels < off.program.n_kernels);
    CHECK_EQ_INT(on.program.n_outputs, off.program.n_outputs);
    cr_compile_result_free(&on);
    cr_compile_result_free(&off);
}

TEST(failures_name_their_stage)
{
    cr_compile_result r;
    cr_error err = {0};
    static const char bad[] = "models:\n  - model: nope\nmerge_method: linear\n";
    cr_pipeline_options o = { .path = "bad.yml", .text = bad, .text_len = sizeof bad - 1,
                              .models_dir = g_models, .header_only = true, .no_env = true };
    CHECK(cr_compile(&o, &r, &err) != CR_OK);
    CHECK_EQ_INT(r.failed, CR_STAGE_FRONTEND);
    CHECK(r.diags.n_errors > 0);
    cr_compile_result_free(&r);
    /* no memory at all: the method registry is the first thing to fail */
    cr_failing_allocator fa;
    cr_failing_allocator_init(&fa, cr_default_allocator(), 0, true);
    cr_pipeline_options m = { .alloc = &fa.base, .path = CASE, .models_dir = g_models, .header_only = true,
                              .no_env = true, .kind = CR_SOURCE_YAML };
    CHECK_EQ_INT(cr_compile(&m, &r, &err), CR_ERR_NOMEM);
    CHECK_EQ_INT(r.failed, CR_STAGE_SETUP);
    cr_compile_result_free(&r);
    CHECK_EQ_INT(fa.live, 0);
}

TEST(a_moe_config_is_its_own_kind)
{
    static const char moe[] =
        "base_model: base\ngate_mode: random\nexperts:\n  - source_model: b\n    positive_prompts: [\"x\"]\n";
    FILE *f = fopen("/tmp/crucible-pipeline-moe.yml", "w");
    REQUIRE(f);
    fputs(moe, f);
    fclose(f);
    cr_pipeline_options o = { .path = "/tmp/crucible-pipeline-moe.yml", .models_dir = g_models,
                              .header_only = true, .no_env = true };
    cr_compile_result r;
    cr_error err = {0};
    cr_compile(&o, &r, &err);   /* the golden models may not make a MoE; the kind is what counts */
    CHECK_EQ_INT(r.kind, CR_SOURCE_MOE);
    CHECK_EQ_INT(r.plan.n_stages, 0);
    cr_compile_result_free(&r);
    unlink("/tmp/crucible-pipeline-moe.yml");
}

int main(void)
{
    g_models = realpath("tests/golden/models", NULL);
    if (!g_models) { fprintf(stderr, "run from the repository root\n"); return 1; }
    RUN(file_and_text_give_the_same_program);
    RUN(fuse_pass_can_be_switched_off);
    RUN(failures_name_their_stage);
    RUN(a_moe_config_is_its_own_kind);
    free(g_models);
    return cr_test_summary();
}
