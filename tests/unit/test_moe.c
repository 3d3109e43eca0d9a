/* test_moe.c — mergekit-moe: config parsing and diagnostics, is_bad_config,
 * writer selection, the tensor map of both Mixtral and Qwen3 layouts and
 * Qwen2-MoE, the layout per --mergekit-version,
 * random gates, and a whole build (synthetic base + 2 experts) run on the
 * VM with expert tensors checked byte for byte against their sources. */
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

#include "harness.h"
#include "support/io_support.h"
#include "model.h"
#include "moe.h"
#include "moe_config.h"
#include "synth.h"
#include "vm.h"

static const cr_allocator *AL;

static cr_status parse(const char *text, cr_moe_config *c, cr_diags *d)
{
    cr_error err = {0};
    cr_diags_init(d, AL);
    return cr_moe_config_parse(AL, "moe.yml", text, strlen(text), c, d, &err);
}

static const cr_diag *diag_at(const cr_diags *d, size_t i) { return &((const cr_diag *)d->items.data)[i]; }

/* the first error diagnostic, or NULL */
static const cr_diag *first_error(const cr_diags *d)
{
    for (size_t i = 0; i < d->items.len; i++)
        if (diag_at(d, i)->level == CR_DIAG_ERROR) return diag_at(d, i);
    return NULL;
}

TEST(parse_full)
{
    cr_moe_config c;
    cr_diags d;
    const char *y = "base_model: m/base\n"
                    "gate_mode: cheap_embed\n"
                    "dtype: torch.float16\n"
                    "experts_per_token: 1\n"
                    "experts:\n"
                    "  - source_model: a\n"
                    "    positive_prompts: [\"x\", \"y\"]\n"
                    "    negative_prompts:\n"
                    "      - z\n"
                    "    residual_scale: 0.5\n"
                    "  - source_model: b\n"
                    "    positive_prompts: [\"w\"]\n"
                    "architecture: Mixtral\n";
    CHECK_EQ_INT(parse(y, &c, &d), CR_OK);
    CHECK_STR(c.base_model, "m/base");
    CHECK_EQ_INT(c.gate_mode, CR_MOE_GATE_CHEAP_EMBED);
    CHECK_EQ_INT(c.dtype, CR_DTYPE_F16);
    CHECK_EQ_INT(c.experts_per_token, 1);
    REQUIRE(c.n_experts == 2);
    CHECK_EQ_INT(c.experts[0].n_positive, 2);
    CHECK_STR(c.experts[0].positive[1], "y");
    CHECK_EQ_INT(c.experts[0].n_negative, 1);
    CHECK(c.experts[0].has_residual && c.experts[0].residual_scale == 0.5);
    CHECK(!c.experts[1].has_residual && c.experts[1].negative == NULL);
    CHECK_STR(c.architecture, "Mixtral");
    CHECK(c.text && strstr(c.text, "gate_mode: cheap_embed"));
    CHECK_EQ_INT(d.n_errors, 0);
    CHECK(cr_moe_config_validate(&c, false, &d));
    cr_moe_config_free(&c);
    cr_diags_free(&d);
}

TEST(parse_defaults_and_errors)
{
    cr_moe_config c;
    cr_diags d;
    CHECK_EQ_INT(parse("base_model: b\nexperts:\n  - source_model: a\n", &c, &d), CR_OK);
    CHECK_EQ_INT(c.gate_mode, CR_MOE_GATE_HIDDEN);
    CHECK_EQ_INT(c.experts_per_token, 2);
    CHECK_EQ_INT(c.dtype, CR_DTYPE_NONE);
    CHECK(c.experts[0].positive == NULL);
    cr_moe_config_free(&c);
    cr_diags_free(&d);

    /* unknown gate mode: error at its value, with a suggestion */
    CHECK_EQ_INT(parse("base_model: b\ngate_mode: hiden\nexperts:\n  - source_model: a\n", &c, &d), CR_ERR_CONFIG);
    const cr_diag *e = first_error(&d);
    REQUIRE(e);
    CHECK_EQ_INT(e->loc.line, 2);
    CHECK_EQ_INT(e->loc.col, 12);
    CHECK_STR(e->path, "gate_mode");
    CHECK_CONTAINS(e->hint, "hidden");
    cr_moe_config_free(&c);
    cr_diags_free(&d);

    /* prompts not a list: error names experts[1].positive_prompts */
    CHECK_EQ_INT(parse("base_model: b\nexperts:\n  - source_model: a\n  - source_model: c\n    positive_prompts: 3\n",
                       &c, &d), CR_ERR_CONFIG);
    e = first_error(&d);
    REQUIRE(e);
    CHECK_STR(e->path, "experts[1].positive_prompts");
    CHECK_EQ_INT(e->loc.line, 5);
    cr_moe_config_free(&c);
    cr_diags_free(&d);

    /* missing base_model and a bad dtype */
    CHECK_EQ_INT(parse("dtype: int8\nexperts: []\n", &c, &d), CR_ERR_CONFIG);
    CHECK_EQ_INT(d.n_errors, 2);
    cr_moe_config_free(&c);
    cr_diags_free(&d);

    /* unknown key: warning with suggestion, not an error */
    CHECK_EQ_INT(parse("base_model: b\nexperts:\n  - source_model: a\n    positve_prompts: [x]\n", &c, &d), CR_OK);
    CHECK_EQ_INT(d.n_warnings, 1);
    CHECK_CONTAINS(diag_at(&d, 0)->hint, "positive_prompts");
    cr_moe_config_free(&c);
    cr_diags_free(&d);
}

/* is_bad_config, check by check */
static bool valid(const char *y, bool allow)
{
    cr_moe_config c;
    cr_diags d;
    bool ok = parse(y, &c, &d) == CR_OK && cr_moe_config_validate(&c, allow, &d);
    cr_moe_config_free(&c);
    cr_diags_free(&d);
    return ok;
}

TEST(validate)
{
    const char *two = "base_model: b\nexperts:\n  - source_model: a\n    positive_prompts: [x]\n"
                      "  - source_model: c\n    positive_prompts: [y]\n";
    CHECK(valid(two, false));
    char buf[512];
    snprintf(buf, sizeof buf, "experts_per_token: 0\n%s", two);
    CHECK(!valid(buf, false));
    snprintf(buf, sizeof buf, "experts_per_token: 3\n%s", two);
    CHECK(!valid(buf, false));
    /* random needs no prompts; uniform_random does (QUIRK) */
    CHECK(valid("base_model: b\ngate_mode: random\nexperts:\n  - source_model: a\n  - source_model: a\n", false));
    CHECK(!valid("base_model: b\ngate_mode: uniform_random\nexperts:\n  - source_model: a\n  - source_model: c\n", false));
    /* identical prompts */
    CHECK(!valid("base_model: b\nexperts:\n  - source_model: a\n    positive_prompts: [x]\n"
                 "  - source_model: c\n    positive_prompts: [x]\n", false));
    /* same source model, unless allowed */
    const char *same = "base_model: b\nexperts:\n  - source_model: a\n    positive_prompts: [x]\n"
                       "  - source_model: a\n    positive_prompts: [y]\n";
    CHECK(!valid(same, false));
    CHECK(valid(same, true));
    /* one expert outside random: rejected (QUIRK) */
    CHECK(!valid("base_model: b\nexperts_per_token: 1\nexperts:\n  - source_model: a\n    positive_prompts: [x]\n", true));

    /* the error's location is the experts list */
    cr_moe_config c;
    cr_diags d;
    REQUIRE(parse(same, &c, &d) == CR_OK);
    CHECK(!cr_moe_config_validate(&c, false, &d));
    const cr_diag *e = first_error(&d);
    REQUIRE(e);
    CHECK_EQ_INT(e->loc.line, 3);
    CHECK_CONTAINS(e->msg, "same source_model");
    cr_moe_config_free(&c);
    cr_diags_free(&d);
}

TEST(file_detection)
{
    char *dir = io_tmpdir("moe");
    char *a = io_join(dir, "moe.yml"), *b = io_join(dir, "merge.yml");
    io_write_text(a, "base_model: x\nexperts:\n  - source_model: y\n");
    io_write_text(b, "merge_method: linear\nmodels:\n  - model: y\n");
    CHECK(cr_moe_file_is_moe(AL, a));
    CHECK(!cr_moe_file_is_moe(AL, b));
    CHECK(!cr_moe_file_is_moe(AL, "/nonexistent/moe.yml"));
    io_rmtree(dir);
    free(a); free(b); free(dir);
}

static cr_status select_arch(const char *y, const char *const *types, cr_moe_arch *out, cr_error *err)
{
    cr_moe_config c;
    cr_diags d;
    cr_status st = parse(y, &c, &d);
    if (!st) st = cr_moe_select_arch(&c, types, out, err);
    cr_moe_config_free(&c);
    cr_diags_free(&d);
    return st;
}

TEST(writer_selection)
{
    const char *plain = "base_model: b\nexperts:\n  - source_model: a\n  - source_model: c\n";
    const char *llama3[] = { "llama", "llama", "llama" };
    const char *mistral3[] = { "mistral", "mistral", "mistral" };
    const char *mixed[] = { "llama", "mistral", "llama" };
    const char *qwen3[] = { "qwen3", "qwen3", "qwen3" };
    const char *qwen2_4[] = { "qwen2", "qwen2", "qwen2", "qwen2" };
    cr_moe_arch a;
    cr_error err = {0};
    CHECK_EQ_INT(select_arch(plain, llama3, &a, &err), CR_OK);
    CHECK_EQ_INT(a, CR_MOE_ARCH_MIXTRAL);
    CHECK_EQ_INT(select_arch(plain, mistral3, &a, &err), CR_OK);
    CHECK_EQ_INT(select_arch(plain, mixed, &a, &err), CR_ERR_CONFIG);
    CHECK_CONTAINS(err.msg, "no MoE writer");
    /* qwen3 models: the Qwen3 MoE writer */
    CHECK_EQ_INT(select_arch(plain, qwen3, &a, &err), CR_OK);
    CHECK_EQ_INT(a, CR_MOE_ARCH_QWEN3);
    /* a prompted shared expert: Qwen MoE */
    const char *shared_p = "base_model: b\nexperts:\n  - source_model: a\n  - source_model: c\n"
                           "shared_experts:\n  - source_model: s\n    positive_prompts: [x]\n";
    CHECK_EQ_INT(select_arch(shared_p, qwen2_4, &a, &err), CR_OK);
    CHECK_EQ_INT(a, CR_MOE_ARCH_QWEN2);
    const char *llama4[] = { "llama", "llama", "llama", "llama" };
    CHECK_EQ_INT(select_arch(shared_p, llama4, &a, &err), CR_OK);
    CHECK_EQ_INT(a, CR_MOE_ARCH_QWEN2);
    /* a prompt-less shared expert with llama: DeepSeek */
    const char *shared_np = "base_model: b\nexperts:\n  - source_model: a\n  - source_model: c\n"
                            "shared_experts:\n  - source_model: s\n";
    CHECK_EQ_INT(select_arch(shared_np, llama4, &a, &err), CR_OK);
    CHECK_EQ_INT(a, CR_MOE_ARCH_DEEPSEEK);
    /* qwen2 models without a shared expert: nobody */
    CHECK_EQ_INT(select_arch(plain, qwen2_4, &a, &err), CR_ERR_CONFIG);
    /* architecture prefix: 'qwen2' matches nothing (QUIRK), 'mix' is Mixtral */
    CHECK_EQ_INT(select_arch("base_model: b\narchitecture: qwen2\nexperts:\n  - source_model: a\n", llama3, &a, &err),
                 CR_ERR_CONFIG);
    CHECK_CONTAINS(err.msg, "qwen2");
    CHECK_EQ_INT(select_arch("base_model: b\narchitecture: MIX\nexperts:\n  - source_model: a\n  - source_model: c\n",
                             llama3, &a, &err), CR_OK);
    CHECK_EQ_INT(select_arch("base_model: b\narchitecture: deep\nexperts:\n  - source_model: a\n  - source_model: c\n",
                             llama3, &a, &err), CR_OK);
    CHECK_EQ_INT(a, CR_MOE_ARCH_DEEPSEEK);
}

static const cr_moe_tensor *find_t(const cr_moe_tensor *t, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return &t[i];
    return NULL;
}

static const char *base_names[] = {
    "lm_head.weight", "model.embed_tokens.weight", "model.norm.weight",
    "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
    "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
    "model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
    "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
    "model.layers.1.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight",
    "model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
    "model.layers.1.self_attn.v_proj.weight", "model.layers.1.self_attn.o_proj.weight",
    "model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight",
};

TEST(tensor_map_mixtral_classic)
{
    cr_arena ar;
    cr_arena_init(&ar, AL);
    cr_moe_dims dm = { .n_layers = 2, .hidden = 16, .intermediate = 32, .n_heads = 2, .n_kv_heads = 1, .n_experts = 3 };
    cr_moe_tensor *t;
    uint32_t n;
    cr_error err = {0};
    REQUIRE(cr_moe_map_tensors(CR_MOE_ARCH_MIXTRAL, CR_MOE_LAYOUT_CLASSIC, &dm, base_names, CR_ARRAY_LEN(base_names),
                               &ar, &t, &n, &err) == CR_OK);
    /* 3 globals + 2x6 per-layer base + 2 layers x 3 experts x 3 + 2 routers */
    CHECK_EQ_INT(n, 3 + 12 + 18 + 2);
    CHECK_STR(t[0].name, "model.embed_tokens.weight");
    const cr_moe_tensor *w2 = find_t(t, n, "model.layers.1.block_sparse_moe.experts.2.w2.weight");
    REQUIRE(w2);
    CHECK_EQ_INT(w2->src, CR_MOE_SRC_EXPERT);
    CHECK_EQ_INT(w2->expert, 2);
    CHECK_STR(w2->src_name, "model.layers.1.mlp.down_proj.weight");
    CHECK(w2->down && w2->shape[0] == 16 && w2->shape[1] == 32);
    const cr_moe_tensor *w1 = find_t(t, n, "model.layers.0.block_sparse_moe.experts.0.w1.weight");
    REQUIRE(w1);
    CHECK_STR(w1->src_name, "model.layers.0.mlp.gate_proj.weight");
    const cr_moe_tensor *w3 = find_t(t, n, "model.layers.0.block_sparse_moe.experts.0.w3.weight");
    REQUIRE(w3);
    CHECK_STR(w3->src_name, "model.layers.0.mlp.up_proj.weight");
    CHECK(w3->shape[0] == 32 && w3->shape[1] == 16 && !w3->down);
    const cr_moe_tensor *g = find_t(t, n, "model.layers.1.block_sparse_moe.gate.weight");
    REQUIRE(g);
    CHECK(g->src == CR_MOE_SRC_ROUTER && g->layer == 1 && g->shape[0] == 3 && g->shape[1] == 16);
    CHECK(g == &t[n - 1]);   /* routers come last */
    for (uint32_t i = 0; i < n; i++) CHECK_MSG(!strstr(t[i].name, ".mlp."), "%s", t[i].name);
    CHECK(find_t(t, n, "lm_head.weight") != NULL);
    cr_arena_free(&ar);
}

TEST(tensor_map_mixtral_fused)
{
    cr_arena ar;
    cr_arena_init(&ar, AL);
    cr_moe_dims dm = { .n_layers = 2, .hidden = 16, .intermediate = 32, .n_heads = 2, .n_kv_heads = 1, .n_experts = 4 };
    cr_moe_tensor *t;
    uint32_t n;
    cr_error err = {0};
    REQUIRE(cr_moe_map_tensors(CR_MOE_ARCH_MIXTRAL, CR_MOE_LAYOUT_FUSED, &dm, base_names, CR_ARRAY_LEN(base_names),
                               &ar, &t, &n, &err) == CR_OK);
    CHECK_EQ_INT(n, 3 + 12 + 4 + 2);
    const cr_moe_tensor *gu = find_t(t, n, "model.layers.1.mlp.experts.gate_up_proj");
    REQUIRE(gu);
    CHECK(gu->src == CR_MOE_SRC_FUSED_GATE_UP && gu->ndim == 3 && gu->shape[0] == 4 && gu->shape[1] == 64 &&
          gu->shape[2] == 16);
    const cr_moe_tensor *dn = find_t(t, n, "model.layers.0.mlp.experts.down_proj");
    REQUIRE(dn);
    CHECK(dn->shape[0] == 4 && dn->shape[1] == 16 && dn->shape[2] == 32 && dn->down);
    CHECK(find_t(t, n, "model.layers.0.mlp.gate.weight") != NULL);
    CHECK(find_t(t, n, "model.layers.0.block_sparse_moe.gate.weight") == NULL);
    cr_arena_free(&ar);
}

/* Qwen3 MoE: fused under 0.1.5 (mergekit 0.1.5's names), classic
 * mlp.experts.{e}.*_proj under 0.1.4; base tensors incl. q_norm/k_norm kept */
TEST(tensor_map_qwen3)
{
    static const char *q3_names[] = {
        "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
        "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
        "model.layers.0.self_attn.q_norm.weight", "model.layers.0.self_attn.k_norm.weight",
        "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
        "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight",
        "model.layers.0.mlp.down_proj.weight",
    };
    cr_arena ar;
    cr_arena_init(&ar, AL);
    cr_moe_dims dm = { .n_layers = 1, .hidden = 16, .intermediate = 32, .n_heads = 2, .n_kv_heads = 1, .n_experts = 3 };
    cr_moe_tensor *t;
    uint32_t n;
    cr_error err = {0};
    cr_moe_layout l = cr_moe_layout_resolve(CR_MOE_LAYOUT_DEFAULT, CR_MOE_ARCH_QWEN3, CR_MK_0_1_5);
    CHECK_EQ_INT(l, CR_MOE_LAYOUT_FUSED);
    REQUIRE(cr_moe_map_tensors(CR_MOE_ARCH_QWEN3, l, &dm, q3_names, CR_ARRAY_LEN(q3_names), &ar, &t, &n, &err) == CR_OK);
    CHECK_EQ_INT(n, 3 + 8 + 2 + 1);
    const cr_moe_tensor *gu = find_t(t, n, "model.layers.0.mlp.experts.gate_up_proj");
    REQUIRE(gu);
    CHECK(gu->src == CR_MOE_SRC_FUSED_GATE_UP && gu->shape[0] == 3 && gu->shape[1] == 64 && gu->shape[2] == 16);
    CHECK(find_t(t, n, "model.layers.0.self_attn.q_norm.weight") && find_t(t, n, "model.layers.0.self_attn.k_norm.weight"));
    CHECK(find_t(t, n, "model.layers.0.mlp.gate.weight") != NULL);
    CHECK(find_t(t, n, "model.layers.0.self_attn.q_proj.bias") == NULL);   /* no zero biases: Qwen2-MoE only */
    l = cr_moe_layout_resolve(CR_MOE_LAYOUT_DEFAULT, CR_MOE_ARCH_QWEN3, CR_MK_0_1_4);
    CHECK_EQ_INT(l, CR_MOE_LAYOUT_CLASSIC);
    REQUIRE(cr_moe_map_tensors(CR_MOE_ARCH_QWEN3, l, &dm, q3_names, CR_ARRAY_LEN(q3_names), &ar, &t, &n, &err) == CR_OK);
    CHECK_EQ_INT(n, 3 + 8 + 9 + 1);
    const cr_moe_tensor *e = find_t(t, n, "model.layers.0.mlp.experts.2.down_proj.weight");
    REQUIRE(e);
    CHECK(e->src == CR_MOE_SRC_EXPERT && e->expert == 2 && e->down && e->shape[0] == 16 && e->shape[1] == 32);
    CHECK(find_t(t, n, "model.layers.0.mlp.gate.weight") != NULL);
    cr_arena_free(&ar);
}

/* the layout a --mergekit-version writes by default; --moe-layout wins */
TEST(layout_per_version)
{
    CHECK_EQ_INT(cr_moe_layout_resolve(CR_MOE_LAYOUT_DEFAULT, CR_MOE_ARCH_MIXTRAL, CR_MK_DEFAULT), CR_MOE_LAYOUT_FUSED);
    CHECK_EQ_INT(cr_moe_layout_resolve(CR_MOE_LAYOUT_DEFAULT, CR_MOE_ARCH_MIXTRAL, CR_MK_0_1_5), CR_MOE_LAYOUT_FUSED);
    CHECK_EQ_INT(cr_moe_layout_resolve(CR_MOE_LAYOUT_DEFAULT, CR_MOE_ARCH_MIXTRAL, CR_MK_0_1_4), CR_MOE_LAYOUT_CLASSIC);
    CHECK_EQ_INT(cr_moe_layout_resolve(CR_MOE_LAYOUT_DEFAULT, CR_MOE_ARCH_QWEN2, CR_MK_0_1_5), CR_MOE_LAYOUT_CLASSIC);
    CHECK_EQ_INT(cr_moe_layout_resolve(CR_MOE_LAYOUT_CLASSIC, CR_MOE_ARCH_MIXTRAL, CR_MK_0_1_5), CR_MOE_LAYOUT_CLASSIC);
    CHECK_EQ_INT(cr_moe_layout_resolve(CR_MOE_LAYOUT_FUSED, CR_MOE_ARCH_MIXTRAL, CR_MK_0_1_4), CR_MOE_LAYOUT_FUSED);
}

TEST(tensor_map_qwen2)
{
    cr_arena ar;
    cr_arena_init(&ar, AL);
    cr_moe_dims dm = { .n_layers = 2, .hidden = 16, .intermediate = 32, .n_heads = 4, .n_kv_heads = 2, .n_experts = 2,
                       .shared = true };
    cr_moe_tensor *t;
    uint32_t n;
    cr_error err = {0};
    REQUIRE(cr_moe_map_tensors(CR_MOE_ARCH_QWEN2, CR_MOE_LAYOUT_CLASSIC, &dm, base_names, CR_ARRAY_LEN(base_names),
                               &ar, &t, &n, &err) == CR_OK);
    /* + 3 zero biases per layer, 2 experts + shared x 3 mats, router + shared gate */
    CHECK_EQ_INT(n, 3 + 2 * (6 + 3) + 2 * 9 + 2 * 2);
    const cr_moe_tensor *e = find_t(t, n, "model.layers.0.mlp.experts.1.up_proj.weight");
    REQUIRE(e);
    CHECK_STR(e->src_name, "model.layers.0.mlp.up_proj.weight");
    const cr_moe_tensor *s = find_t(t, n, "model.layers.1.mlp.shared_expert.down_proj.weight");
    REQUIRE(s);
    CHECK(s->src == CR_MOE_SRC_SHARED && s->down);
    const cr_moe_tensor *kb = find_t(t, n, "model.layers.1.self_attn.k_proj.bias");
    REQUIRE(kb);
    CHECK(kb->src == CR_MOE_SRC_ZEROS && kb->ndim == 1 && kb->shape[0] == 8);   /* 2 kv heads x 16/4 */
    const cr_moe_tensor *qb = find_t(t, n, "model.layers.1.self_attn.q_proj.bias");
    REQUIRE(qb);
    CHECK_EQ_INT(qb->shape[0], 16);
    const cr_moe_tensor *sg = find_t(t, n, "model.layers.0.mlp.shared_expert_gate.weight");
    REQUIRE(sg);
    CHECK(sg->src == CR_MOE_SRC_SHARED_GATE && sg->shape[0] == 1 && sg->shape[1] == 16);
    CHECK(find_t(t, n, "model.layers.0.mlp.gate.weight") != NULL);
    /* fused is Mixtral and Qwen3 only */
    CHECK_EQ_INT(cr_moe_map_tensors(CR_MOE_ARCH_QWEN2, CR_MOE_LAYOUT_FUSED, &dm, base_names, 3, &ar, &t, &n, &err),
                 CR_ERR_ARG);
    CHECK_EQ_INT(cr_moe_map_tensors(CR_MOE_ARCH_DEEPSEEK, CR_MOE_LAYOUT_FUSED, &dm, base_names, 3, &ar, &t, &n, &err),
                 CR_ERR_ARG);
    /* DeepSeek: experts as Qwen's, mlp.shared_experts.*, routers only */
    REQUIRE(cr_moe_map_tensors(CR_MOE_ARCH_DEEPSEEK, CR_MOE_LAYOUT_CLASSIC, &dm, base_names, 3, &ar, &t, &n, &err) == CR_OK);
    CHECK(find_t(t, n, "model.layers.1.mlp.experts.0.gate_proj.weight") != NULL);
    const cr_moe_tensor *se = find_t(t, n, "model.layers.1.mlp.shared_experts.down_proj.weight");
    REQUIRE(se);
    CHECK(se->src == CR_MOE_SRC_SHARED && se->down);
    CHECK(find_t(t, n, "model.layers.0.mlp.shared_expert_gate.weight") == NULL);
    CHECK(find_t(t, n, "model.layers.0.self_attn.q_proj.bias") == NULL);
    CHECK(!strcmp(t[n - 1].name, "model.layers.1.mlp.gate.weight"));
    cr_arena_free(&ar);
}

TEST(random_gates)
{
    enum { L = 3, G = 2, H = 8, N = L * G * H };
    float u[N + 2], a[N], b[N], c[N];
    cr_moe_random_gates(CR_MOE_GATE_RANDOM, 42, L, G, H, u, a);
    cr_moe_random_gates(CR_MOE_GATE_RANDOM, 42, L, G, H, u, b);
    cr_moe_random_gates(CR_MOE_GATE_RANDOM, 43, L, G, H, u, c);
    CHECK(!memcmp(a, b, sizeof a));
    CHECK(memcmp(a, c, sizeof a));
    double mean = 0, var = 0;
    for (int i = 0; i < N; i++) mean += a[i];
    mean /= N;
    for (int i = 0; i < N; i++) var += (a[i] - mean) * (a[i] - mean);
    var /= N;
    CHECK(fabs(mean) < 0.5 && var > 0.4 && var < 2.0);   /* standard normal, 48 samples */
    cr_moe_random_gates(CR_MOE_GATE_UNIFORM_RANDOM, 42, L, G, H, u, a);
    float lim = 1.0f / sqrtf((float)H);
    bool in = true;
    for (int i = 0; i < N; i++) in &= a[i] >= -lim && a[i] < lim;
    CHECK(in);
}

/* ---- a whole build on synthetic models --------------------------------------- */

static bool synth(const char *dir, const char *from, uint64_t seed)
{
    cr_synth_opts o = { .arch = CR_SYNTH_LLAMA, .layers = 2, .hidden = 16, .intermediate = 32, .heads = 2,
                        .kv_heads = 1, .vocab = 64, .dtype = CR_DTYPE_BF16, .seed = seed, .from = from,
                        .delta_scale = from ? 0.1 : 0 };
    cr_error err = {0};
    mkdir(dir, 0755);
    cr_status st = cr_synth_write(AL, dir, &o, &err);
    if (st) fprintf(stderr, "synth: %s\n", err.msg);
    return st == CR_OK;
}

static const uint8_t *tensor_bytes(const cr_model *m, const char *name, uint64_t *n)
{
    const cr_model_tensor *t = cr_model_find(m, name);
    if (!t) return NULL;
    *n = t->info->end - t->info->begin;
    return m->shards[t->shard].map + m->shards[t->shard].data_start + t->info->begin;
}

static cr_status build_and_run(const char *cfg_path, const char *out, uint64_t seed, cr_error *err)
{
    cr_moe_config c;
    cr_diags d;
    cr_diags_init(&d, AL);
    cr_status st = cr_moe_config_load(AL, cfg_path, &c, &d, err);
    cr_graph g;
    cr_graph_init(&g, AL);
    cr_program p;
    cr_moe_options o = { .seed = seed, .layout = CR_MOE_LAYOUT_CLASSIC, .copy_tokenizer = true, .write_card = true,
                         .out_path = out, .compile = { .seed = seed } };
    if (!st) st = cr_moe_compile(AL, &c, &o, &g, &p, &d, err);
    if (d.n_errors) cr_diags_print(&d, stderr);
    if (!st) {
        cr_vm_options vo;
        cr_vm_options_init(&vo);
        vo.out_dir = out;
        vo.quiet = true;
        vo.threads = 2;
        st = cr_vm_run(&p, &vo, err);
        cr_program_free(&p);
    }
    cr_graph_free(&g);
    cr_moe_config_free(&c);
    cr_diags_free(&d);
    return st;
}

TEST(build_random_on_vm)
{
    char *dir = io_tmpdir("moe");
    char *base = io_join(dir, "base"), *e1 = io_join(dir, "e1"), *e2 = io_join(dir, "e2");
    REQUIRE(synth(base, NULL, 1) && synth(e1, base, 2) && synth(e2, base, 3));
    char *cfg = io_join(dir, "moe.yml");
    char text[1024];
    snprintf(text, sizeof text,
             "base_model: %s\ngate_mode: random\nexperts:\n  - source_model: %s\n    residual_scale: 0.5\n"
             "  - source_model: %s\n", base, e1, e2);
    io_write_text(cfg, text);
    char *out = io_join(dir, "out");
    cr_error err = {0};
    cr_status st = build_and_run(cfg, out, 7, &err);
    CHECK_MSG(st == CR_OK, "%s", err.msg);
    REQUIRE(st == CR_OK);
    cr_model mo, m1, m2;
    REQUIRE(cr_model_open(AL, out, 0, &mo, &err) == CR_OK);
    REQUIRE(cr_model_open(AL, e1, 0, &m1, &err) == CR_OK);
    REQUIRE(cr_model_open(AL, e2, 0, &m2, &err) == CR_OK);
    uint64_t na, nb;
    /* expert 1's up_proj (w3) is a bit copy of e2's */
    const uint8_t *a = tensor_bytes(&mo, "model.layers.1.block_sparse_moe.experts.1.w3.weight", &na);
    const uint8_t *b = tensor_bytes(&m2, "model.layers.1.mlp.up_proj.weight", &nb);
    REQUIRE(a && b);
    CHECK(na == nb && !memcmp(a, b, na));
    a = tensor_bytes(&mo, "model.layers.0.block_sparse_moe.experts.0.w1.weight", &na);
    b = tensor_bytes(&m1, "model.layers.0.mlp.gate_proj.weight", &nb);
    REQUIRE(a && b);
    CHECK(na == nb && !memcmp(a, b, na));
    /* expert 0's down_proj is scaled by 0.5: exact in bf16 */
    a = tensor_bytes(&mo, "model.layers.0.block_sparse_moe.experts.0.w2.weight", &na);
    b = tensor_bytes(&m1, "model.layers.0.mlp.down_proj.weight", &nb);
    REQUIRE(a && b && na == nb);
    bool halved = true;
    for (uint64_t i = 0; i < na / 2; i++) {
        uint16_t x, y;
        memcpy(&x, a + 2 * i, 2);
        memcpy(&y, b + 2 * i, 2);
        halved &= cr_bf16_to_f32(x) == 0.5f * cr_bf16_to_f32(y);
    }
    CHECK(halved);
    /* the router is the bf16 of the random gates for this seed */
    float u[2 * 2 * 16 + 2], gates[2 * 2 * 16];
    cr_moe_random_gates(CR_MOE_GATE_RANDOM, 7, 2, 2, 16, u, gates);
    a = tensor_bytes(&mo, "model.layers.1.block_sparse_moe.gate.weight", &na);
    REQUIRE(a && na == 2 * 16 * 2);
    bool same = true;
    for (int i = 0; i < 32; i++) {
        uint16_t x;
        memcpy(&x, a + 2 * i, 2);
        same &= x == cr_f32_to_bf16(gates[32 + i]);
    }
    CHECK(same);
    /* the rest of the directory */
    char *p = io_join(out, "config.json");
    char *cj = io_read_file(p, NULL);
    CHECK_CONTAINS(cj, "\"MixtralForCausalLM\"");
    CHECK_CONTAINS(cj, "\"num_local_experts\": 2");
    CHECK_CONTAINS(cj, "\"model_type\": \"mixtral\"");
    free(cj); free(p);
    p = io_join(out, "mergekit_moe_config.yml");
    char *y = io_read_file(p, NULL);
    CHECK(y && !strcmp(y, text));
    free(y); free(p);
    p = io_join(out, "README.md");
    CHECK(io_exists(p));
    free(p);
    p = io_join(out, "tokenizer.json");
    CHECK(io_exists(p));
    free(p);
    cr_model_close(&mo);

    /* the fused layout: gate_up_proj[e] = gate_proj over up_proj, down_proj[e] */
    char *outf = io_join(dir, "fused");
    cr_moe_config fc;
    cr_diags d;
    cr_diags_init(&d, AL);
    REQUIRE(cr_moe_config_load(AL, cfg, &fc, &d, &err) == CR_OK);
    cr_graph g;
    cr_graph_init(&g, AL);
    cr_program prog;
    cr_moe_options fo = { .seed = 7, .layout = CR_MOE_LAYOUT_FUSED, .compile = { .seed = 7 } };
    st = cr_moe_compile(AL, &fc, &fo, &g, &prog, &d, &err);
    CHECK_MSG(st == CR_OK, "%s", err.msg);
    if (st == CR_OK) {
        cr_vm_options vo;
        cr_vm_options_init(&vo);
        vo.out_dir = outf;
        vo.quiet = true;
        CHECK(cr_vm_run(&prog, &vo, &err) == CR_OK);
        cr_program_free(&prog);
    }
    cr_graph_free(&g);
    cr_moe_config_free(&fc);
    cr_diags_free(&d);
    REQUIRE(cr_model_open(AL, outf, 0, &mo, &err) == CR_OK);
    const cr_model_tensor *gt = cr_model_find(&mo, "model.layers.1.mlp.experts.gate_up_proj");
    REQUIRE(gt && gt->info->ndim == 3 && gt->info->shape[0] == 2 && gt->info->shape[1] == 64 && gt->info->shape[2] == 16);
    a = tensor_bytes(&mo, "model.layers.1.mlp.experts.gate_up_proj", &na);
    uint64_t piece = 32 * 16 * 2;
    REQUIRE(a && na == 4 * piece);
    b = tensor_bytes(&m2, "model.layers.1.mlp.gate_proj.weight", &nb);
    CHECK(b && nb == piece && !memcmp(a + 2 * piece, b, piece));
    b = tensor_bytes(&m2, "model.layers.1.mlp.up_proj.weight", &nb);
    CHECK(b && nb == piece && !memcmp(a + 3 * piece, b, piece));
    b = tensor_bytes(&m1, "model.layers.1.mlp.up_proj.weight", &nb);
    CHECK(b && nb == piece && !memcmp(a + piece, b, piece));
    a = tensor_bytes(&mo, "model.layers.0.mlp.experts.down_proj", &na);
    b = tensor_bytes(&m2, "model.layers.0.mlp.down_proj.weight", &nb);
    CHECK(a && b && na == 2 * nb && !memcmp(a + nb, b, nb));
    CHECK(cr_model_find(&mo, "model.layers.0.mlp.gate.weight") != NULL);
    cr_model_close(&mo);
    cr_model_close(&m1);
    cr_model_close(&m2);
    io_rmtree(dir);
    free(base); free(e1); free(e2); free(cfg); free(out); free(outf); free(dir);
}

TEST(build_errors)
{
    char *dir = io_tmpdir("moe");
    char *base = io_join(dir, "base");
    REQUIRE(synth(base, NULL, 1));
    char *cfg = io_join(dir, "moe.yml");
    char text[1024];
    cr_error err = {0};
    char *out = io_join(dir, "out");
    /* a missing expert model: named, no output */
    snprintf(text, sizeof text, "base_model: %s\ngate_mode: random\nexperts:\n  - source_model: %s/nope\n"
             "  - source_model: %s\n", base, dir, base);
    io_write_text(cfg, text);
    CHECK_EQ_INT(build_and_run(cfg, out, 1, &err), CR_ERR_CONFIG);
    CHECK_CONTAINS(err.msg, "nope");
    CHECK(!io_exists(out));
    /* hidden_avg is built now: it gets as far as the missing expert model */
    snprintf(text, sizeof text, "base_model: %s\ngate_mode: hidden_avg\nexperts:\n  - source_model: %s\n"
             "    positive_prompts: [a]\n  - source_model: %s/x\n    positive_prompts: [b]\n", base, base, base);
    io_write_text(cfg, text);
    CHECK_EQ_INT(build_and_run(cfg, out, 1, &err), CR_ERR_CONFIG);
    CHECK_CONTAINS(err.msg, "/x' not found");
    CHECK(!io_exists(out));
    io_rmtree(dir);
    free(base); free(cfg); free(out); free(dir);
}

TEST(noise_and_blob_inputs)
{
    char *dir = io_tmpdir("moe");
    char *base = io_join(dir, "base"), *e1 = io_join(dir, "e1");
    REQUIRE(synth(base, NULL, 1) && synth(e1, base, 2));
    char *cfg = io_join(dir, "moe.yml");
    char text[1024];
    snprintf(text, sizeof text, "base_model: %s\ngate_mode: random\ndtype: float32\nexperts:\n"
             "  - source_model: %s\n    noise_scale: 0.01\n  - source_model: %s\n", base, e1, base);
    io_write_text(cfg, text);
    char *out = io_join(dir, "out");
    cr_error err = {0};
    REQUIRE(build_and_run(cfg, out, 3, &err) == CR_OK);
    cr_model mo, m1;
    REQUIRE(cr_model_open(AL, out, 0, &mo, &err) == CR_OK);
    REQUIRE(cr_model_open(AL, e1, 0, &m1, &err) == CR_OK);
    uint64_t na, nb;
    const uint8_t *a = tensor_bytes(&mo, "model.layers.0.block_sparse_moe.experts.0.w3.weight", &na);
    const uint8_t *b = tensor_bytes(&m1, "model.layers.0.mlp.up_proj.weight", &nb);
    REQUIRE(a && b && na == 2 * nb);   /* f32 output of a bf16 source */
    int changed = 0;
    bool bounded = true;
    for (uint64_t i = 0; i < nb / 2; i++) {
        float x;
        uint16_t y;
        memcpy(&x, a + 4 * i, 4);
        memcpy(&y, b + 2 * i, 2);
        float dlt = fabsf(x - cr_bf16_to_f32(y));
        changed += dlt > 0;
        bounded &= dlt <= 0.01f * 3.4642f + 1e-6f;
    }
    CHECK(changed > (int)(nb / 2) * 9 / 10);
    CHECK(bounded);
    cr_model_close(&mo);
    cr_model_close(&m1);

    /* the compiled program carries the gates as blob inputs; the verifier
     * keeps them inside the pool and aligned, and .crb round-trips them */
    cr_moe_config c;
    cr_diags d;
    cr_diags_init(&d, AL);
    REQUIRE(cr_moe_config_load(AL, cfg, &c, &d, &err) == CR_OK);
    cr_graph g;
    cr_graph_init(&g, AL);
    cr_program p;
    cr_moe_options o = { .seed = 3 };
    REQUIRE(cr_moe_compile(AL, &c, &o, &g, &p, &d, &err) == CR_OK);
    uint32_t blob = UINT32_MAX;
    for (uint32_t i = 0; i < p.n_inputs; i++)
        if (p.inputs[i].kind == CR_INPUT_BLOB) { blob = i; break; }
    REQUIRE(blob != UINT32_MAX);
    CHECK(cr_program_verify(&p, &err) == CR_OK);
    char *crb = io_join(dir, "moe.crb");
    REQUIRE(cr_program_save(&p, crb, &err) == CR_OK);
    cr_program q;
    REQUIRE(cr_program_load(AL, crb, &q, &err) == CR_OK);
    CHECK(q.inputs[blob].kind == CR_INPUT_BLOB &&
          !memcmp(q.blobs + q.inputs[blob].offset, p.blobs + p.inputs[blob].offset, p.inputs[blob].nbytes));
    cr_program_free(&q);
    cr_prog_input keep = p.inputs[blob];
    p.inputs[blob].offset = (p.n_blob_bytes + 7) & ~7ull;   /* aligned, past the pool */
    CHECK_EQ_INT(cr_program_verify(&p, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "blob pool");
    p.inputs[blob] = keep;
    p.inputs[blob].offset += 4;
    CHECK_EQ_INT(cr_program_verify(&p, &err), CR_ERR_FORMAT);
    p.inputs[blob] = keep;
    p.inputs[blob].file = 1;
    CHECK_EQ_INT(cr_program_verify(&p, &err), CR_ERR_FORMAT);
    p.inputs[blob] = keep;
    CHECK(cr_program_verify(&p, &err) == CR_OK);
    cr_program_free(&p);
    cr_graph_free(&g);
    cr_moe_config_free(&c);
    cr_diags_free(&d);
    io_rmtree(dir);
    free(base); free(e1); free(cfg); free(out); free(crb); free(dir);
}

int main(void)
{
    AL = cr_default_allocator();
    RUN(parse_full);
    RUN(parse_defaults_and_errors);
    RUN(validate);
    RUN(file_detection);
    RUN(writer_selection);
    RUN(tensor_map_mixtral_classic);
    RUN(tensor_map_mixtral_fused);
    RUN(tensor_map_qwen3);
    RUN(layout_per_version);
    RUN(tensor_map_qwen2);
    RUN(random_gates);
    RUN(build_random_on_vm);
    RUN(build_errors);
    RUN(noise_and_blob_inputs);
    return cr_test_summary();
}
