/* test_lora.c — the PEFT adapter reader (formats/lora.h) on the adapters
 * PEFT 0.21.2 wrote for the golden LoRA cases (tests/golden/models/lora_*:
 * plain, rsLoRA with bf16 weights, embedding LoRA with modules_to_save,
 * rank_pattern / alpha_pattern), its refusals on adapters it must not
 * apply, written here, and the front end planning a `model+adapter` recipe
 * with the N-th allocation failing, for every N: a clean error, nothing
 * leaked. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "frontend.h"
#include "lora.h"
#include "harness.h"
#include "support/io_support.h"

#define MODELS "tests/golden/models/"

static bool open_ok(const char *dir, cr_lora *l)
{
    cr_error err = {0};
    cr_status st = cr_lora_open(cr_default_allocator(), dir, l, &err);
    if (st) fprintf(stderr, "cr_lora_open(%s): %s\n", dir, err.msg);
    return st == CR_OK;
}

TEST(plain)
{
    cr_lora l;
    REQUIRE(open_ok(MODELS "lora_qkvo", &l));
    CHECK_EQ_INT(l.r, 4);
    CHECK_EQ_INT(l.n_targets, 8);   /* q, k, v, o in 2 layers */
    CHECK_EQ_INT(l.n_replaced, 0);
    const cr_lora_target *t = cr_lora_find_target(&l, "model.layers.1.self_attn.k_proj.weight");
    REQUIRE(t);
    CHECK_STR(t->a, "base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight");
    CHECK_STR(t->b, "base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight");
    CHECK_EQ_INT(t->rank, 4);
    CHECK(t->scale == 2.0);       /* 8 / 4 */
    CHECK(!t->embedding);
    CHECK(!cr_lora_find_target(&l, "model.layers.1.mlp.up_proj.weight"));
    cr_lora_close(&l);
}

TEST(rslora)
{
    cr_lora l;
    REQUIRE(open_ok(MODELS "lora_mlp_rs", &l));
    CHECK(l.use_rslora);
    const cr_lora_target *t = cr_lora_find_target(&l, "model.layers.0.mlp.down_proj.weight");
    REQUIRE(t);
    CHECK(t->scale == 12.0 / sqrt(6.0));
    cr_lora_close(&l);
}

TEST(embedding_and_modules_to_save)
{
    cr_lora l;
    REQUIRE(open_ok(MODELS "lora_embed", &l));
    const cr_lora_target *t = cr_lora_find_target(&l, "model.embed_tokens.weight");
    REQUIRE(t);
    CHECK(t->embedding);
    CHECK_STR(t->a, "base_model.model.model.embed_tokens.lora_embedding_A");
    CHECK(t->scale == 5.0 / 3.0);
    /* modules_to_save (lm_head) and the saved embedding base layer */
    CHECK_EQ_INT(l.n_replaced, 2);
    const cr_lora_replace *r = cr_lora_find_replace(&l, "lm_head.weight");
    REQUIRE(r);
    CHECK_STR(r->src, "base_model.model.lm_head.weight");
    r = cr_lora_find_replace(&l, "model.embed_tokens.weight");
    REQUIRE(r);
    CHECK_STR(r->src, "base_model.model.model.embed_tokens.base_layer.weight");
    cr_lora_close(&l);
}

TEST(patterns)
{
    cr_lora l;
    REQUIRE(open_ok(MODELS "lora_pattern", &l));
    const cr_lora_target *v = cr_lora_find_target(&l, "model.layers.0.self_attn.v_proj.weight");
    const cr_lora_target *q0 = cr_lora_find_target(&l, "model.layers.0.self_attn.q_proj.weight");
    const cr_lora_target *q1 = cr_lora_find_target(&l, "model.layers.1.self_attn.q_proj.weight");
    REQUIRE(v && q0 && q1);
    CHECK_EQ_INT(v->rank, 2);       /* rank_pattern v_proj: 2 */
    CHECK(v->scale == 4.0);
    CHECK(q0->scale == 2.0);
    CHECK(q1->scale == 0.75);       /* alpha_pattern layers.1.self_attn.q_proj: 3 */
    CHECK(cr_lora_pattern_match("v_proj", "model.layers.0.self_attn.v_proj"));
    CHECK(!cr_lora_pattern_match("v_proj", "model.layers.0.self_attn.xv_proj"));
    cr_lora_close(&l);
}

/* an adapter directory with this config and lora_qkvo's tensors */
static char *adapter_with(const char *tag, const char *config, bool tensors)
{
    char *dir = io_tmpdir(tag);
    char *p = io_join(dir, "adapter_config.json");
    io_write_file(p, config, strlen(config));
    free(p);
    if (tensors) {
        p = io_join(dir, "adapter_model.safetensors");
        size_t n = 0;
        char *bytes = io_read_file(MODELS "lora_qkvo/adapter_model.safetensors", &n);
        if (bytes) io_write_file(p, bytes, n);
        free(bytes);
        free(p);
    }
    return dir;
}

static void expect_refused(const char *config, bool tensors, cr_status want, const char *msg)
{
    char *dir = adapter_with("lora", config, tensors);
    cr_lora l;
    cr_error err = {0};
    cr_status st = cr_lora_open(cr_default_allocator(), dir, &l, &err);
    CHECK_EQ_INT(st, want);
    CHECK_CONTAINS(err.msg, msg);
    CHECK_CONTAINS(err.msg, dir);
    if (st == CR_OK) cr_lora_close(&l);
    io_rmtree(dir);
    free(dir);
}

TEST(refusals)
{
    expect_refused("{\"peft_type\": \"LOHA\", \"r\": 4}", true, CR_ERR_UNSUPPORTED, "a PEFT LOHA adapter");
    expect_refused("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"use_dora\": true}", true,
                   CR_ERR_UNSUPPORTED, "DoRA (use_dora) is not supported");
    expect_refused("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"lora_bias\": true}", true,
                   CR_ERR_UNSUPPORTED, "LoRA biases");
    expect_refused("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"rank_pattern\": {\"^q.*\": 2}}", true,
                   CR_ERR_UNSUPPORTED, "is a regular expression");
    expect_refused("{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8}", true, CR_ERR_FORMAT,
                   "has rank 4, the config says r = 8");
    expect_refused("{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8}", false, CR_ERR_FORMAT,
                   "no adapter_model.safetensors");
    expect_refused("{\"r\": 4}", true, CR_ERR_FORMAT, "no \"peft_type\"");
}

TEST(frontend_every_allocation)
{
    const char *text =
        "models:\n"
        "  - model: lora_base_bf16+lora_embed\n"
        "    parameters: {weight: 0.5}\n"
        "  - model: {model: {path: lora_base_bf16}, lora: {path: lora_pattern}}\n"
        "    parameters: {weight: 0.5}\n"
        "merge_method: linear\n";
    /* the method registry is opened once: its own allocations are test_faults' */
    cr_method_registry *reg = NULL;
    cr_error rerr = {0};
    REQUIRE(cr_methods_open(cr_default_allocator(), NULL, &reg, &rerr) == CR_OK);
    cr_frontend_options opt = { .models_dir = MODELS, .no_env = true, .has_lora_merge_dtype = true,
                                .lora_merge_dtype = CR_DTYPE_F32, .methods = reg, .header_only = true };
    long n;
    int nomem = 0;
    cr_status st = CR_ERR_NOMEM;
    for (n = 0; n < 100000; n++) {
        cr_failing_allocator fa;
        cr_failing_allocator_init(&fa, cr_default_allocator(), n, false);
        cr_plan plan;
        cr_diags d;
        cr_error err = { 0 };
        cr_diags_init(&d, &fa.base);
        st = cr_frontend_yaml_text(&fa.base, "lora.yml", text, strlen(text), &opt, &plan, &d, &err);
        if (st == CR_OK) {
            /* the adapters are attached, the model reads as float32 */
            CHECK(plan.n_models == 2 && plan.models[0].lora && plan.models[1].lora);
            CHECK(plan.n_models == 2 && plan.models[1].lora_dtype == CR_DTYPE_F32);
            CHECK(plan.n_stages == 1 && plan.stages[0].n_tensors > 0 &&
                  plan.stages[0].tensors[0].sources[0].dtype == CR_DTYPE_F32);
        }
        cr_plan_free(&plan);
        cr_diags_free(&d);
        CHECK_MSG(fa.live == 0, "allocation %ld failed: %ld blocks leaked", n, fa.live);
        if (st == CR_OK && fa.count <= n) break;
        if (st != CR_OK) {
            CHECK_MSG(st == CR_ERR_NOMEM || st == CR_ERR_CONFIG, "allocation %ld failed: status %s (%s)", n,
                      cr_status_name(st), err.msg);
            nomem += st == CR_ERR_NOMEM || d.n_errors > 0;
        }
        if (cr_test_g.current_failed) break;
    }
    CHECK_EQ_INT(st, CR_OK);
    CHECK_MSG(nomem > 10, "only %d runs failed over %ld fault points", nomem, n);
    printf("front end with adapters: %ld allocation fault points, %d failed cleanly\n", n, nomem);
    cr_methods_close(reg);
}

int main(void)
{
    RUN(plain);
    RUN(rslora);
    RUN(embedding_and_modules_to_save);
    RUN(patterns);
    RUN(refusals);
    RUN(frontend_every_allocation);
    return cr_test_summary();
}
