/* test_frontend.c — the YAML front end: diagnostics, YAML tree, config
 * parsing, parameter evaluation (TV15), planning on synthetic models, and
 * every example recipe (examples/, examples/invalid/) against the expectations
 * written in its comments:
 *   # expect-outputs: N tensors, L layers
 *   # expect-error line N: TEXT      (an error on that line containing TEXT)
 *   # expect-warning line N: TEXT
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "support/front_support.h"
#include "config.h"
#include "diag.h"
#include "frontend.h"
#include "params.h"
#include "yaml_tree.h"

static char *g_tmp, *g_models;

static const cr_allocator *A(void) { return cr_default_allocator(); }

static bool diag_has(const cr_diags *d, cr_diag_level level, int line, const char *text)
{
    for (size_t i = 0; i < d->items.len; i++) {
        const cr_diag *g = &CR_VEC_AT(&d->items, cr_diag, i);
        if (g->level != level || (line > 0 && g->loc.line != line)) continue;
        char buf[2048];
        snprintf(buf, sizeof buf, "%s: %s | %s", g->path ? g->path : "", g->msg, g->hint ? g->hint : "");
        if (strstr(buf, text)) return true;
    }
    return false;
}

static cr_status compile_text(const char *text, cr_plan *plan, cr_diags *d)
{
    cr_frontend_options opt = { .models_dir = g_models, .header_only = true, .no_env = true };
    cr_error err = { 0 };
    cr_diags_init(d, A());
    return cr_frontend_yaml_text(A(), "test.yml", text, strlen(text), &opt, plan, d, &err);
}

static const cr_plan_tensor *find_out(const cr_plan_stage *st, const char *name)
{
    for (uint32_t i = 0; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}

/* ---- diag / yaml / config / params -------------------------------------- */

TEST(suggest_is_plausible_only)
{
    static const char *const c[] = { "weight", "density", "gamma", "t", "lambda", "slerp", "dare_ties" };
    CHECK_STR(cr_suggest("wieght", c, 7), "weight");
    CHECK_STR(cr_suggest("desnity", c, 7), "density");
    CHECK_STR(cr_suggest("slerpp", c, 7), "slerp");
    CHECK_STR(cr_suggest("dare-ties", c, 7), "dare_ties");
    CHECK(cr_suggest("x", c, 7) == NULL || !strcmp(cr_suggest("x", c, 7), "t"));
    CHECK(cr_suggest("completely_different", c, 7) == NULL);
    CHECK(cr_suggest("lambda", c, 7) == NULL);   /* exact match is not a suggestion */
}

TEST(diag_print_format)
{
    cr_diags d;
    cr_diags_init(&d, A());
    cr_diag_add(&d, CR_DIAG_ERROR, (cr_src_loc){ "config.yml", 7, 14 }, "models[2].parameters.weight",
                "did you mean 'weight'?", "bad %s", "value");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_diags_print(&d, f);
    fclose(f);
    CHECK_STR(buf, "config.yml:7:14: error: models[2].parameters.weight: bad value\n  hint: did you mean 'weight'?\n");
    CHECK_EQ_INT(d.n_errors, 1);
    free(buf);
    cr_diags_free(&d);
}

TEST(yaml_positions_and_documents)
{
    const char *text = "a: 1\nb:\n  - x\n  - [1, 2]\n---\nname: two\n";
    cr_ytree t;
    cr_diags d;
    cr_diags_init(&d, A());
    REQUIRE(cr_ytree_parse(A(), "t.yml", text, strlen(text), &t, &d, NULL) == CR_OK);
    CHECK_EQ_INT(t.n_docs, 2);
    cr_ynode *b = cr_ynode_get(t.docs[0].root, "b");
    REQUIRE(b && b->kind == CR_YNODE_SEQ && b->n_items == 2);
    CHECK_EQ_INT(b->items[1]->line, 4);
    CHECK_EQ_INT(b->items[1]->col, 5);
    CHECK_CONTAINS(t.docs[1].text, "name: two");
    CHECK(strstr(t.docs[0].text, "name: two") == NULL);
    cr_ytree_free(&t);
    cr_diags_free(&d);
}

TEST(yaml_limits)
{
    /* billion laughs: each level doubles; aliases are capped */
    char text[8192];
    size_t k = (size_t)snprintf(text, sizeof text, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 40; i++)
        k += (size_t)snprintf(text + k, sizeof text - k, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n",
                              i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
    cr_ytree t;
    cr_diags d;
    cr_diags_init(&d, A());
    CHECK(cr_ytree_parse(A(), "bomb.yml", text, k, &t, &d, NULL) == CR_ERR_CONFIG);
    CHECK(d.n_errors >= 1);
    cr_ytree_free(&t);
    cr_diags_free(&d);

    char deep[1024];
    memset(deep, '[', 200);
    memset(deep + 200, ']', 200);
    cr_diags_init(&d, A());
    CHECK(cr_ytree_parse(A(), "deep.yml", deep, 400, &t, &d, NULL) == CR_ERR_CONFIG);
    CHECK(diag_has(&d, CR_DIAG_ERROR, 0, "nesting deeper"));
    cr_ytree_free(&t);
    cr_diags_free(&d);

    const char *dup = "a: 1\na: 2\n";
    cr_diags_init(&d, A());
    CHECK(cr_ytree_parse(A(), "dup.yml", dup, strlen(dup), &t, &d, NULL) == CR_ERR_CONFIG);
    CHECK(diag_has(&d, CR_DIAG_ERROR, 2, "duplicate key 'a'"));
    cr_ytree_free(&t);
    cr_diags_free(&d);
}

static cr_status parse_cfg(const char *text, cr_arena *ar, cr_ytree *t, cr_config *cfg, cr_diags *d)
{
    cr_diags_init(d, A());
    cr_arena_init(ar, A());
    cr_status st = cr_ytree_parse_in(ar, "c.yml", text, strlen(text), t, d, NULL);
    if (st) return st;
    return cr_config_parse(ar, t, 0, cfg, d);
}

TEST(config_reports_all_errors_and_warns_unknown_keys)
{
    const char *text =
        "merge_method: ties\n"
        "modles: []\n"                                   /* unknown key, close to models */
        "models:\n"
        "  - model: a\n"
        "    parameters: {weight: abc}\n"                /* not a number */
        "  - model: {model: b, override_architecture: X}\n" /* unsupported */
        "dtype: fp16\n";                                 /* bad dtype */
    cr_arena ar;
    cr_ytree t;
    cr_config cfg;
    cr_diags d;
    CHECK(parse_cfg(text, &ar, &t, &cfg, &d) == CR_ERR_CONFIG);
    CHECK(diag_has(&d, CR_DIAG_WARNING, 2, "did you mean 'models'?"));
    CHECK(diag_has(&d, CR_DIAG_ERROR, 5, "models[0].parameters.weight: 'abc' is not a number"));
    CHECK(diag_has(&d, CR_DIAG_ERROR, 6, "not supported yet"));
    CHECK(diag_has(&d, CR_DIAG_ERROR, 7, "write 'float16'"));
    CHECK_EQ_INT(d.n_errors, 3);
    CHECK(cfg.unsupported);
    cr_arena_free(&ar);
    cr_diags_free(&d);
}

TEST(config_values)
{
    const char *text =
        "merge_method: linear\n"
        "models:\n"
        "  - model: a\n"
        "    parameters:\n"
        "      weight: '0.25'\n"
        "      flag: yes\n"
        "      g: [0, true, 1]\n"
        "      c:\n"
        "        - filter: mlp\n"
        "          value: [1, 2]\n"
        "        - value: 3\n"
        "dtype: torch.bfloat16\n";
    cr_arena ar;
    cr_ytree t;
    cr_config cfg;
    cr_diags d;
    REQUIRE(parse_cfg(text, &ar, &t, &cfg, &d) == CR_OK);
    const cr_params *p = &cfg.models[0].params;
    REQUIRE(p->n == 4);
    CHECK(p->items[0].value.kind == CR_SETTING_SCALAR && p->items[0].value.scalar == 0.25);
    CHECK(p->items[1].value.scalar == 1.0);
    CHECK(p->items[2].value.kind == CR_SETTING_GRADIENT && p->items[2].value.grad[1] == 1.0);
    CHECK(p->items[3].value.kind == CR_SETTING_COND && p->items[3].value.n_conds == 2);
    CHECK(cfg.dtype == CR_DTYPE_BF16);
    CHECK_STR(cfg.models[0].ypath, "models[0]");
    cr_arena_free(&ar);
    cr_diags_free(&d);
}

TEST(tv15_gradient_filters_fallthrough)
{
    double g5[] = { 0, 0.5, 0.3, 0.7, 1 };
    cr_setting grad = { .kind = CR_SETTING_GRADIENT, .grad = g5, .n_grad = 5 };
    double v = -1;
    /* (a) 40-layer slice */
    CHECK(cr_setting_eval(&grad, "x", cr_layer_position(0, 40), &v)); CHECK_NEAR(v, 0.0, 1e-12);
    CHECK(cr_setting_eval(&grad, "x", cr_layer_position(1, 40), &v)); CHECK_NEAR(v, 0.0512821, 1e-7);
    CHECK(cr_setting_eval(&grad, "x", cr_layer_position(10, 40), &v)); CHECK_NEAR(v, 0.4948718, 1e-7);
    CHECK(cr_setting_eval(&grad, "x", cr_layer_position(20, 40), &v)); CHECK_NEAR(v, 0.3205128, 1e-7);
    CHECK(cr_setting_eval(&grad, "x", cr_layer_position(39, 40), &v)); CHECK_NEAR(v, 1.0, 1e-12);
    CHECK(cr_setting_eval(&grad, "x", 0.0, &v)); CHECK_NEAR(v, 0.0, 1e-12);       /* pre/post t = 0 */
    CHECK(cr_setting_eval(&grad, "x", cr_layer_position(0, 1), &v)); CHECK_NEAR(v, 1.0, 1e-12); /* one-layer slice */
    /* (b) substring filter `layers.1` */
    cr_cond c1[] = { { "layers.1", { .kind = CR_SETTING_SCALAR, .scalar = 7 } } };
    cr_setting cond = { .kind = CR_SETTING_COND, .conds = c1, .n_conds = 1 };
    int hits = 0;
    for (int l = 0; l < 40; l++) {
        char name[64];
        snprintf(name, sizeof name, "model.layers.%d.mlp.up_proj.weight", l);
        if (cr_setting_eval(&cond, name, 0, &v)) hits++;
        CHECK(cr_setting_eval(&cond, name, 0, &v) == (l == 1 || (l >= 10 && l <= 19)));
    }
    CHECK_EQ_INT(hits, 11);
    /* (c) source-level [{filter: mlp, value: 0.5}] with global weight: 1 */
    cr_cond c2[] = { { "mlp", { .kind = CR_SETTING_SCALAR, .scalar = 0.5 } } };
    cr_param src_p[] = { { .name = "weight", .value = { .kind = CR_SETTING_COND, .conds = c2, .n_conds = 1 } } };
    cr_param glob_p[] = { { .name = "weight", .value = { .kind = CR_SETTING_SCALAR, .scalar = 1 } } };
    cr_params src = { src_p, 1 }, glob = { glob_p, 1 };
    const cr_params *levels[] = { &src, NULL, NULL, &glob };
    CHECK(cr_params_lookup(levels, 4, "weight", "model.layers.3.mlp.down_proj.weight", 0.5, &v, NULL));
    CHECK_NEAR(v, 0.5, 0);
    CHECK(cr_params_lookup(levels, 4, "weight", "model.layers.3.self_attn.q_proj.weight", 0.5, &v, NULL));
    CHECK_NEAR(v, 1.0, 0);
    CHECK(!cr_params_lookup(levels, 4, "density", "model.norm.weight", 0, &v, NULL));
}

/* the diagnostic at line:col with this YAML path, whose message contains text */
static bool diag_at(const cr_diags *d, int line, int col, const char *path, const char *text)
{
    for (size_t i = 0; i < d->items.len; i++) {
        const cr_diag *g = &CR_VEC_AT(&d->items, cr_diag, i);
        if (g->level == CR_DIAG_ERROR && g->loc.line == line && g->loc.col == col && g->path &&
            !strcmp(g->path, path) && strstr(g->msg, text))
            return true;
    }
    return false;
}

/* mergekit turns .nan / .inf / 1e400 into a model of NaN; crucible refuses
 * each, all at once, at the value's line:col with its YAML path */
TEST(config_non_finite_parameters)
{
    const char *text =
        "merge_method: slerp\n"
        "base_model: a\n"
        "slices:\n"
        "  - sources:\n"
        "      - model: a\n"
        "        layer_range: [0, 2]\n"
        "        parameters: {weight: 1e400}\n"
        "      - model: b\n"
        "        layer_range: [0, 2]\n"
        "    parameters:\n"
        "      t: [0, .nan, 1]\n"
        "    residual_weight: .inf\n"
        "parameters:\n"
        "  t: -.Inf\n"
        "  density: [{filter: mlp, value: .NaN}, {value: 0.5}]\n"
        "  ok: 1e300\n";
    cr_arena ar;
    cr_ytree t;
    cr_config cfg;
    cr_diags d;
    CHECK(parse_cfg(text, &ar, &t, &cfg, &d) == CR_ERR_CONFIG);
    CHECK(diag_at(&d, 7, 30, "slices[0].sources[0].parameters.weight", "'1e400' is not a finite number"));
    CHECK(diag_at(&d, 11, 14, "slices[0].parameters.t[1]", "'.nan' is not a finite number"));
    CHECK(diag_at(&d, 12, 22, "slices[0].residual_weight", "finite number"));
    CHECK(diag_at(&d, 14, 6, "parameters.t", "'-.Inf' is not a finite number"));
    CHECK(diag_at(&d, 15, 34, "parameters.density[0].value", "'.NaN' is not a finite number"));
    CHECK_EQ_INT(d.n_errors, 5);   /* 1e300 is finite */
    if (cr_test_g.current_failed) cr_diags_print(&d, stderr);
    cr_arena_free(&ar);
    cr_diags_free(&d);
}

/* ---- planning ---------------------------------------------------------- */

TEST(plan_gradient_slerp)
{
    cr_plan plan;
    cr_diags d;
    cr_status st = compile_text(
        "slices:\n"
        "  - sources:\n"
        "      - model: mistral-ft-a\n"
        "        layer_range: [0, 32]\n"
        "      - model: mistral-ft-b\n"
        "        layer_range: [0, 32]\n"
        "merge_method: slerp\n"
        "base_model: mistral-ft-a\n"
        "parameters:\n"
        "  t:\n"
        "    - filter: self_attn\n"
        "      value: [0, 0.5, 0.3, 0.7, 1]\n"
        "    - value: 0.5\n", &plan, &d);
    if (st) cr_diags_print(&d, stderr);
    REQUIRE(st == CR_OK);
    REQUIRE(plan.n_stages == 1);
    const cr_plan_stage *s = &plan.stages[0];
    CHECK_EQ_INT(s->n_tensors, 291);
    CHECK_STR(s->tensors[0].name, "lm_head.weight");          /* §7.3 write order */
    CHECK_STR(s->tensors[1].name, "model.embed_tokens.weight");
    CHECK_STR(s->tensors[s->n_tensors - 1].name, "model.norm.weight");
    const cr_plan_tensor *q = find_out(s, "model.layers.10.self_attn.q_proj.weight");
    REQUIRE(q);
    /* 32 layers: t = 10/31 */
    double x = 10.0 / 31 * 4;
    int i0 = (int)x;
    double g[] = { 0, 0.5, 0.3, 0.7, 1 }, want = (1 - (x - i0)) * g[i0] + (x - i0) * g[i0 + 1];
    CHECK_NEAR(cr_param_get(&q->params, "t", -1), want, 1e-15);
    CHECK_NEAR(cr_param_get(&find_out(s, "model.layers.10.mlp.up_proj.weight")->params, "t", -1), 0.5, 0);
    CHECK_EQ_INT(q->n_sources, 2);
    CHECK(q->sources[0].is_base && !q->sources[1].is_base);
    CHECK(find_out(s, "model.embed_tokens.weight")->is_embed);
    CHECK_EQ_INT(s->num_layers_out, 32);
    CHECK_STR(s->num_layers_key, "num_hidden_layers");
    cr_plan_free(&plan);
    cr_diags_free(&d);
}

TEST(plan_models_appends_base_and_defaults)
{
    cr_plan plan;
    cr_diags d;
    cr_status st = compile_text(
        "models:\n"
        "  - model: mistral-ft-a\n"
        "    parameters: {weight: 1.0}\n"
        "  - model: mistral-ft-b\n"
        "    parameters:\n"
        "      weight:\n"
        "        - filter: mlp\n"
        "          value: 0.5\n"
        "parameters: {weight: -1}\n"
        "merge_method: ties\n"
        "base_model: mistral-base\n", &plan, &d);
    if (st) cr_diags_print(&d, stderr);
    REQUIRE(st == CR_OK);
    const cr_plan_stage *s = &plan.stages[0];
    const cr_plan_tensor *t = find_out(s, "model.layers.0.mlp.up_proj.weight");
    REQUIRE(t && t->n_sources == 3);
    CHECK_STR(plan.models[t->sources[2].model].ref, "mistral-base");
    CHECK(t->sources[2].is_base);
    CHECK_NEAR(cr_param_get(&t->sources[2].params, "weight", 9), -1.0, 0);  /* global reaches the base too */
    CHECK_NEAR(cr_param_get(&t->sources[1].params, "weight", 9), 0.5, 0);
    CHECK_NEAR(cr_param_get(&t->sources[1].params, "density", 9), 1.0, 0);  /* default */
    CHECK_NEAR(cr_param_get(&t->params, "normalize", 9), 1.0, 0);          /* ties default */
    const cr_plan_tensor *a = find_out(s, "model.layers.0.self_attn.o_proj.weight");
    CHECK_NEAR(cr_param_get(&a->sources[1].params, "weight", 9), -1.0, 0);  /* falls through */
    CHECK_EQ_INT(s->num_layers_out, -1);
    CHECK_EQ_INT(s->base_model, t->sources[2].model);
    CHECK_EQ_INT(s->donor_model, s->base_model);
    cr_plan_free(&plan);
    cr_diags_free(&d);
}

TEST(plan_passthrough_tv15d)
{
    cr_plan plan;
    cr_diags d;
    cr_status st = compile_text(
        "slices:\n"
        "  - sources: [{model: mistral-ft-a, layer_range: [0, 24]}]\n"
        "  - sources: [{model: mistral-ft-b, layer_range: [12, 32]}]\n"
        "merge_method: passthrough\n", &plan, &d);
    if (st) cr_diags_print(&d, stderr);
    REQUIRE(st == CR_OK);
    const cr_plan_stage *s = &plan.stages[0];
    CHECK_EQ_INT(s->num_layers_out, 44);
    CHECK_EQ_INT(s->n_tensors, 3 + 44 * 9);
    const cr_plan_tensor *t = find_out(s, "model.layers.24.mlp.down_proj.weight");
    REQUIRE(t && t->n_sources == 1);
    CHECK_STR(t->sources[0].tensor, "model.layers.12.mlp.down_proj.weight");
    CHECK_STR(plan.models[t->sources[0].model].ref, "mistral-ft-b");
    CHECK_EQ_INT(t->layer, 24);
    CHECK_STR(plan.models[find_out(s, "model.embed_tokens.weight")->sources[0].model].ref, "mistral-ft-a");
    CHECK_STR(plan.models[find_out(s, "model.norm.weight")->sources[0].model].ref, "mistral-ft-b");
    CHECK_STR(plan.models[find_out(s, "lm_head.weight")->sources[0].model].ref, "mistral-ft-b");
    CHECK(!cr_param_has(&t->sources[0].params, "scale"));
    cr_plan_free(&plan);
    cr_diags_free(&d);
}

TEST(plan_tied_lm_head)
{
    cr_plan plan;
    cr_diags d;
    /* tied-a has no lm_head: it contributes its embed_tokens (§2.3) */
    cr_status st = compile_text(
        "models:\n"
        "  - model: tied-a\n"
        "  - model: mistral-ft-a\n"
        "parameters: {weight: 0.5}\n"
        "merge_method: linear\n", &plan, &d);
    if (st) cr_diags_print(&d, stderr);
    REQUIRE(st == CR_OK);
    const cr_plan_tensor *h = find_out(&plan.stages[0], "lm_head.weight");
    REQUIRE(h && h->n_sources == 2);
    CHECK(h->optional);
    CHECK_STR(h->sources[0].tensor, "model.embed_tokens.weight");
    CHECK_STR(h->sources[1].tensor, "lm_head.weight");
    cr_plan_free(&plan);
    /* nobody has lm_head: it is not written */
    st = compile_text("models: [{model: tied-a}]\nparameters: {weight: 1}\nmerge_method: linear\n", &plan, &d);
    REQUIRE(st == CR_OK);
    CHECK(find_out(&plan.stages[0], "lm_head.weight") == NULL);
    CHECK_EQ_INT(plan.stages[0].n_tensors, 2 + 32 * 9);
    cr_plan_free(&plan);
    cr_diags_free(&d);
}

/* A model without lm_head whose config says tie_word_embeddings: false
 * has lost its head: its embedding is not a stand-in (it used to be taken
 * silently). An error naming the model and the tensor. */
TEST(plan_untied_missing_head)
{
    cr_plan plan;
    cr_diags d;
    cr_status st = compile_text(
        "models:\n"
        "  - model: untied-no-head\n"
        "  - model: mistral-ft-a\n"
        "parameters: {weight: 0.5}\n"
        "merge_method: linear\n", &plan, &d);
    CHECK_EQ_INT(st, CR_ERR_CONFIG);
    CHECK(diag_has(&d, CR_DIAG_ERROR, 2, "model 'untied-no-head' has no tensor 'lm_head.weight' and its config.json "
                                          "sets tie_word_embeddings: false"));
    cr_plan_free(&plan);
    cr_diags_free(&d);
}

TEST(plan_multistage)
{
    cr_plan plan;
    cr_diags d;
    cr_frontend_options opt = { .models_dir = g_models, .header_only = true, .no_env = true };
    cr_error err = { 0 };
    cr_diags_init(&d, A());
    cr_status st = cr_frontend_yaml(A(), "examples/multistage.yml", &opt, &plan, &d, &err);
    if (st) cr_diags_print(&d, stderr);
    REQUIRE(st == CR_OK);
    REQUIRE(plan.n_stages == 3);
    CHECK_STR(plan.stages[0].name, "stage-dare");
    int staged = 0;
    for (uint32_t i = 0; i < plan.n_models; i++) {
        if (plan.models[i].stage >= 0) {
            staged++;
            CHECK(plan.models[i].path == NULL && !plan.models[i].opened);
        }
    }
    CHECK_EQ_INT(staged, 2);
    const cr_plan_tensor *t = find_out(&plan.stages[2], "model.layers.3.self_attn.k_proj.weight");
    REQUIRE(t && t->n_sources == 2);
    CHECK_EQ_INT(plan.models[t->sources[0].model].stage, 1);
    CHECK(t->sources[0].dtype == CR_DTYPE_BF16);
    CHECK_CONTAINS(plan.stages[1].recipe_text, "stage-ties");
    CHECK(strstr(plan.stages[1].recipe_text, "stage-dare\nmodels") == NULL);
    CHECK_CONTAINS(plan.recipe_text, "---");
    cr_plan_free(&plan);
    cr_diags_free(&d);
}

/* U8 tensors (or I64, BOOL ...) cannot be computed on: refused by name at
 * plan time, not by the bytecode verifier at run time */
TEST(plan_integer_input_tensor)
{
    const char *text =
        "models:\n"
        "  - model: mistral-ft-a\n"
        "    parameters: {weight: 0.5}\n"
        "  - model: u8-model\n"
        "    parameters: {weight: 0.5}\n"
        "merge_method: linear\n"
        "dtype: float32\n";
    cr_plan plan;
    cr_diags d;
    CHECK(compile_text(text, &plan, &d) == CR_ERR_CONFIG);
    CHECK(diag_has(&d, CR_DIAG_ERROR, 4, "models[1]: tensor 'model.embed_tokens.weight' of model 'u8-model' is U8"));
    CHECK(diag_has(&d, CR_DIAG_ERROR, 4, "crucible merges F32, F16, BF16"));
    if (cr_test_g.current_failed) cr_diags_print(&d, stderr);
    cr_plan_free(&plan);
    cr_diags_free(&d);
}

TEST(allocation_failures_are_clean)
{
    /* Every allocation of a small compile fails once in turn: the result is
     * an error or success, never a crash or a leak. */
    const char *text = "models:\n  - model: mistral-ft-a\n  - model: mistral-ft-b\n"
                       "parameters: {weight: 1}\nmerge_method: linear\n";
    cr_frontend_options opt = { .models_dir = g_models, .header_only = true, .no_env = true };
    int failures = 0;
    for (long n = 0; n < 400; n += 3) {
        cr_failing_allocator fa;
        cr_failing_allocator_init(&fa, A(), n, false);
        cr_plan plan;
        cr_diags d;
        cr_error err = { 0 };
        cr_diags_init(&d, &fa.base);
        cr_status st = cr_frontend_yaml_text(&fa.base, "t.yml", text, strlen(text), &opt, &plan, &d, &err);
        failures += st != CR_OK;
        cr_plan_free(&plan);
        cr_diags_free(&d);
        CHECK_MSG(fa.live == 0, "leak after failing allocation %ld: %ld blocks", n, fa.live);
    }
    CHECK(failures > 0);
}

/* ---- the examples --------------------------------------------------------- */

static void check_example(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) { CHECK_MSG(0, "cannot open %s", path); return; }
    char line[1024];
    int want_tensors = -1, want_layers = -1, n_expect = 0;
    struct { int level, line; char text[512]; } ex[16];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        int t, l;
        if (sscanf(line, "# expect-outputs: %d tensors, %d layers", &t, &l) == 2) {
            want_tensors = t;
            want_layers = l;
        }
        const char *kinds[] = { "# expect-error line ", "# expect-warning line " };
        for (int k = 0; k < 2; k++) {
            size_t kl = strlen(kinds[k]);
            if (strncmp(line, kinds[k], kl) || n_expect >= 16) continue;
            const char *colon = strchr(line + kl, ':');
            if (!colon) continue;
            ex[n_expect].level = k == 0 ? CR_DIAG_ERROR : CR_DIAG_WARNING;
            ex[n_expect].line = atoi(line + kl);
            snprintf(ex[n_expect].text, sizeof ex[n_expect].text, "%s", colon + 2);
            n_expect++;
        }
    }
    fclose(f);
    CHECK_MSG(want_tensors >= 0 || n_expect > 0, "%s carries no expectation comment", path);
    cr_plan plan;
    cr_diags d;
    cr_frontend_options opt = { .models_dir = g_models, .header_only = true, .no_env = true };
    cr_error err = { 0 };
    cr_diags_init(&d, A());
    cr_status st = cr_frontend_yaml(A(), path, &opt, &plan, &d, &err);
    bool want_error = false;
    for (int i = 0; i < n_expect; i++) {
        want_error |= ex[i].level == CR_DIAG_ERROR;
        CHECK_MSG(diag_has(&d, (cr_diag_level)ex[i].level, ex[i].line, ex[i].text),
                  "%s: expected %s on line %d containing \"%s\"", path,
                  ex[i].level == CR_DIAG_ERROR ? "an error" : "a warning", ex[i].line, ex[i].text);
    }
    if (want_error) {
        CHECK_MSG(st == CR_ERR_CONFIG || st == CR_ERR_UNSUPPORTED, "%s: status %s", path, cr_status_name(st));
    } else {
        CHECK_MSG(st == CR_OK, "%s: status %s (%s)", path, cr_status_name(st), err.msg);
    }
    if (want_tensors >= 0 && st == CR_OK) {
        const cr_plan_stage *s = &plan.stages[plan.n_stages - 1];
        int max_layer = -1;
        for (uint32_t i = 0; i < s->n_tensors; i++) max_layer = CR_MAX(max_layer, s->tensors[i].layer);
        CHECK_MSG((int)s->n_tensors == want_tensors, "%s: %u tensors, expected %d", path, s->n_tensors, want_tensors);
        CHECK_MSG(max_layer + 1 == want_layers, "%s: %d layers, expected %d", path, max_layer + 1, want_layers);
    }
    if (getenv("CRUCIBLE_TEST_VERBOSE") || cr_test_g.current_failed) cr_diags_print(&d, stderr);
    cr_plan_free(&plan);
    cr_diags_free(&d);
}

static int run_examples_in(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".yml")) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        check_example(path);
        n++;
    }
    closedir(d);
    return n;
}

TEST(examples)
{
    CHECK(run_examples_in("examples") >= 6);
}

TEST(invalid_examples)
{
    CHECK(run_examples_in("examples/invalid") >= 15);
}

int main(void)
{
    g_tmp = front_tmpdir();
    if (!g_tmp) { fprintf(stderr, "no temp dir\n"); return 1; }
    size_t n = strlen(g_tmp) + 16;
    g_models = malloc(n);
    snprintf(g_models, n, "%s/models", g_tmp);
    front_model_spec m = { .layers = 32, .hidden = 8, .intermediate = 16, .vocab = 32, .dtype = "BF16", .lm_head = true };
    const char *names[] = { "mistral-base", "mistral-ft-a", "mistral-ft-b", "mistral-ft-c", "mistral-math" };
    bool ok = true;
    for (size_t i = 0; i < 5; i++) ok &= front_write_model(g_models, names[i], &m);
    front_model_spec wide = m;
    wide.hidden = 16;
    ok &= front_write_model(g_models, "mistral-wide", &wide);
    front_model_spec tied = m;
    tied.lm_head = false;
    ok &= front_write_model(g_models, "tied-a", &tied);
    front_model_spec untied = tied;
    untied.tie = "false";       /* no lm_head, yet not tied: a broken model */
    ok &= front_write_model(g_models, "untied-no-head", &untied);
    front_model_spec llama = m;
    llama.arch = "LlamaForCausalLM";
    ok &= front_write_model(g_models, "llama-small", &llama);
    front_model_spec u8 = m;
    u8.dtype = "U8";
    ok &= front_write_model(g_models, "u8-model", &u8);
    if (!ok) { fprintf(stderr, "cannot write synthetic models\n"); return 1; }

    RUN(suggest_is_plausible_only);
    RUN(diag_print_format);
    RUN(yaml_positions_and_documents);
    RUN(yaml_limits);
    RUN(config_reports_all_errors_and_warns_unknown_keys);
    RUN(config_values);
    RUN(config_non_finite_parameters);
    RUN(tv15_gradient_filters_fallthrough);
    RUN(plan_gradient_slerp);
    RUN(plan_models_appends_base_and_defaults);
    RUN(plan_passthrough_tv15d);
    RUN(plan_tied_lm_head);
    RUN(plan_untied_missing_head);
    RUN(plan_multistage);
    RUN(plan_integer_input_tensor);
    RUN(allocation_failures_are_clean);
    RUN(examples);
    RUN(invalid_examples);
    front_rmtree(g_tmp);
    free(g_tmp);
    free(g_models);
    return cr_test_summary();
}
