/* moe_config.c — parsing, validating and choosing the writer for a
 * mergekit-moe config (moe_config.h). mergekit's schema is pydantic; here
 * every key is checked by hand so each problem points at its line, and
 * unknown keys are warned about with a "did you mean" (pydantic ignores
 * them, so they are not errors).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "moe_config.h"
#include "infile.h"
#include "limits.h"

typedef struct ctx {
    cr_moe_config *c;
    cr_diags *d;
} ctx;

static cr_src_loc at(const ctx *x, const cr_ynode *n)
{
    cr_src_loc l = { x->c->path, n ? n->line : 0, n ? n->col : 0 };
    return l;
}

#define ERR(x, node, path, hint, ...) \
    cr_diag_add((x)->d, CR_DIAG_ERROR, at((x), (node)), (path), (hint), __VA_ARGS__)

static const char *top_keys[] = { "base_model", "gate_mode", "dtype", "experts_per_token", "experts",
                                  "shared_experts", "architecture" };
static const char *expert_keys[] = { "source_model", "positive_prompts", "negative_prompts", "noise_scale",
                                     "residual_scale" };

static void warn_unknown(ctx *x, const cr_ynode *map, const char *path, const char *const *keys, size_t n)
{
    for (uint32_t i = 0; i < map->n_items; i++) {
        const char *k = map->keys[i]->str;
        size_t j = 0;
        while (j < n && strcmp(k, keys[j])) j++;
        if (j < n) continue;
        const char *s = cr_suggest(k, keys, n);
        char hint[128];
        if (s) snprintf(hint, sizeof hint, "did you mean '%s'?", s);
        cr_diag_add(x->d, CR_DIAG_WARNING, at(x, map->keys[i]), path, s ? hint : NULL,
                    "unknown key '%s' (ignored, as mergekit-moe does)", k);
    }
}

static const char *scalar_str(ctx *x, const cr_ynode *n, const char *path)
{
    if (n->kind != CR_YNODE_SCALAR || (n->plain && cr_ynode_is_null(n))) {
        ERR(x, n, path, NULL, "expected a string, got %s", cr_ynode_kind_name(n));
        return NULL;
    }
    return n->str;
}

/* a list of strings, or null; *out NULL when null */
static bool prompt_list(ctx *x, const cr_ynode *n, const char *path, const char ***out, uint32_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!n || (n->kind == CR_YNODE_SCALAR && n->plain && cr_ynode_is_null(n))) return true;
    if (n->kind != CR_YNODE_SEQ) {
        ERR(x, n, path, "write a YAML list of prompts", "expected a list of strings, got %s",
            cr_ynode_kind_name(n));
        return false;
    }
    const char **v = cr_arena_alloc(&x->c->arena, sizeof *v * (n->n_items + 1));
    if (!v) return false;
    for (uint32_t i = 0; i < n->n_items; i++) {
        const cr_ynode *it = n->items[i];
        if (it->kind != CR_YNODE_SCALAR) {
            char p[256];
            snprintf(p, sizeof p, "%s[%u]", path, i);
            ERR(x, it, p, NULL, "expected a string, got %s", cr_ynode_kind_name(it));
            return false;
        }
        v[i] = it->str;
    }
    *out = v;
    *n_out = n->n_items;
    return true;
}

static bool opt_number(ctx *x, const cr_ynode *n, const char *path, bool *has, double *out)
{
    *has = false;
    if (!n || (n->kind == CR_YNODE_SCALAR && n->plain && cr_ynode_is_null(n))) return true;
    if (!cr_ynode_number(n, false, out)) {
        ERR(x, n, path, NULL, "expected a number, got '%s'", n->kind == CR_YNODE_SCALAR ? n->str : cr_ynode_kind_name(n));
        return false;
    }
    if (!isfinite(*out)) {   /* .nan / .inf / 1e400 would poison every expert tensor */
        ERR(x, n, path, NULL, "expected a finite number, got '%s'", n->str);
        return false;
    }
    *has = true;
    return true;
}

static bool parse_expert(ctx *x, const cr_ynode *n, const char *path, cr_moe_expert *e)
{
    memset(e, 0, sizeof *e);
    e->loc = at(x, n);
    if (n->kind != CR_YNODE_MAP) {
        ERR(x, n, path, "each expert is a mapping with source_model and positive_prompts",
            "expected a mapping, got %s", cr_ynode_kind_name(n));
        return false;
    }
    warn_unknown(x, n, path, expert_keys, CR_ARRAY_LEN(expert_keys));
    char p[256];
    bool ok = true;
    const cr_ynode *sm = cr_ynode_get(n, "source_model");
    snprintf(p, sizeof p, "%s.source_model", path);
    if (!sm) {
        ERR(x, n, path, NULL, "expert has no source_model");
        ok = false;
    } else if (!(e->source_model = scalar_str(x, sm, p))) {
        ok = false;
    }
    snprintf(p, sizeof p, "%s.positive_prompts", path);
    ok &= prompt_list(x, cr_ynode_get(n, "positive_prompts"), p, &e->positive, &e->n_positive);
    snprintf(p, sizeof p, "%s.negative_prompts", path);
    ok &= prompt_list(x, cr_ynode_get(n, "negative_prompts"), p, &e->negative, &e->n_negative);
    snprintf(p, sizeof p, "%s.noise_scale", path);
    ok &= opt_number(x, cr_ynode_get(n, "noise_scale"), p, &e->has_noise, &e->noise_scale);
    snprintf(p, sizeof p, "%s.residual_scale", path);
    ok &= opt_number(x, cr_ynode_get(n, "residual_scale"), p, &e->has_residual, &e->residual_scale);
    return ok;
}

static bool expert_list(ctx *x, const cr_ynode *n, const char *key, cr_moe_expert **out, uint32_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (n->kind != CR_YNODE_SEQ) {
        ERR(x, n, key, NULL, "expected a list of experts, got %s", cr_ynode_kind_name(n));
        return false;
    }
    cr_moe_expert *v = cr_arena_alloc(&x->c->arena, sizeof *v * (n->n_items + 1));
    if (!v) return false;
    bool ok = true;
    for (uint32_t i = 0; i < n->n_items; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s[%u]", key, i);
        ok &= parse_expert(x, n->items[i], p, &v[i]);
    }
    *out = v;
    *n_out = n->n_items;
    return ok;
}

static const struct { const char *name; cr_moe_gate_mode mode; } gate_modes[] = {
    { "hidden", CR_MOE_GATE_HIDDEN }, { "hidden_last", CR_MOE_GATE_HIDDEN },
    { "hidden_avg", CR_MOE_GATE_HIDDEN_AVG }, { "cheap_embed", CR_MOE_GATE_CHEAP_EMBED },
    { "random", CR_MOE_GATE_RANDOM }, { "uniform_random", CR_MOE_GATE_UNIFORM_RANDOM },
};

static void parse_root(ctx *x, const cr_ynode *root)
{
    cr_moe_config *c = x->c;
    if (!root || root->kind != CR_YNODE_MAP) {
        ERR(x, root, NULL, NULL, "a mergekit-moe config is a mapping with base_model and experts");
        return;
    }
    warn_unknown(x, root, NULL, top_keys, CR_ARRAY_LEN(top_keys));
    const cr_ynode *n;
    if (!(n = cr_ynode_get(root, "base_model"))) ERR(x, root, NULL, NULL, "missing required key base_model");
    else c->base_model = scalar_str(x, n, "base_model");

    c->gate_mode = CR_MOE_GATE_HIDDEN;
    c->gate_mode_name = "hidden";
    if ((n = cr_ynode_get(root, "gate_mode"))) {
        c->loc_gate_mode = at(x, n);
        const char *s = scalar_str(x, n, "gate_mode");
        if (s) {
            size_t i = 0;
            while (i < CR_ARRAY_LEN(gate_modes) && strcmp(s, gate_modes[i].name)) i++;
            if (i == CR_ARRAY_LEN(gate_modes)) {
                const char *names[CR_ARRAY_LEN(gate_modes)];
                for (size_t j = 0; j < CR_ARRAY_LEN(gate_modes); j++) names[j] = gate_modes[j].name;
                const char *sg = cr_suggest(s, names, CR_ARRAY_LEN(names));
                char hint[128];
                snprintf(hint, sizeof hint, sg ? "did you mean '%s'?" : "one of hidden, cheap_embed, random%s",
                         sg ? sg : "");
                ERR(x, n, "gate_mode", hint, "unknown gate_mode '%s'", s);
            } else {
                c->gate_mode = gate_modes[i].mode;
                c->gate_mode_name = gate_modes[i].name;
            }
        }
    }

    c->dtype = CR_DTYPE_NONE;
    if ((n = cr_ynode_get(root, "dtype")) && !(n->kind == CR_YNODE_SCALAR && n->plain && cr_ynode_is_null(n))) {
        const char *s = scalar_str(x, n, "dtype");
        if (s && !cr_dtype_parse_torch(s, &c->dtype))
            ERR(x, n, "dtype", "one of bfloat16, float16, float32", "unknown dtype '%s'", s);
        else if (s && c->dtype != CR_DTYPE_BF16 && c->dtype != CR_DTYPE_F16 && c->dtype != CR_DTYPE_F32)
            ERR(x, n, "dtype", "use bfloat16, float16 or float32", "output dtype '%s' is not supported yet", s);
    }

    c->experts_per_token = 2;
    if ((n = cr_ynode_get(root, "experts_per_token"))) {
        c->loc_experts_per_token = at(x, n);
        if (!cr_ynode_int(n, &c->experts_per_token))
            ERR(x, n, "experts_per_token", NULL, "expected an integer, got '%s'",
                n->kind == CR_YNODE_SCALAR ? n->str : cr_ynode_kind_name(n));
    }

    if (!(n = cr_ynode_get(root, "experts"))) {
        ERR(x, root, NULL, NULL, "missing required key experts");
    } else {
        c->loc_experts = at(x, n);
        expert_list(x, n, "experts", &c->experts, &c->n_experts);
    }
    if ((n = cr_ynode_get(root, "shared_experts")) && !(n->kind == CR_YNODE_SCALAR && n->plain && cr_ynode_is_null(n)))
        expert_list(x, n, "shared_experts", &c->shared, &c->n_shared);

    if ((n = cr_ynode_get(root, "architecture")) && !(n->kind == CR_YNODE_SCALAR && n->plain && cr_ynode_is_null(n))) {
        c->loc_architecture = at(x, n);
        c->architecture = scalar_str(x, n, "architecture");
    }
}

cr_status cr_moe_config_parse(const cr_allocator *alloc, const char *file, const char *text, size_t len,
                              cr_moe_config *out, cr_diags *d, cr_error *err)
{
    memset(out, 0, sizeof *out);
    cr_arena_init(&out->arena, alloc);
    out->path = cr_arena_strdup(&out->arena, file ? file : "<config>");
    if (!out->path) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    cr_status st = cr_ytree_parse_in(&out->arena, out->path, text, len, &out->tree, d, err);
    if (st) return st;
    out->text = out->tree.text;
    if (out->tree.n_docs != 1) {
        cr_src_loc l = { out->path, out->tree.n_docs > 1 ? out->tree.docs[1].line : 1, 1 };
        cr_diag_add(d, CR_DIAG_ERROR, l, NULL, NULL, "a mergekit-moe config is one YAML document (found %u)",
                    out->tree.n_docs);
        return cr_fail(err, CR_ERR_CONFIG, "%s: invalid config", out->path);
    }
    int before = d->n_errors;
    ctx x = { out, d };
    parse_root(&x, out->tree.docs[0].root);
    if (d->oom) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    if (d->n_errors > before) return cr_fail(err, CR_ERR_CONFIG, "%s: invalid config", out->path);
    return CR_OK;
}

cr_status cr_moe_config_load(const cr_allocator *alloc, const char *path, cr_moe_config *out, cr_diags *d,
                             cr_error *err)
{
    memset(out, 0, sizeof *out);
    cr_arena_init(&out->arena, alloc);
    char *text;
    size_t len;
    cr_status st = cr_file_read(alloc, path, CR_LIMIT_RECIPE_BYTES, "MoE config", &text, &len, err);
    if (st) return st;
    cr_arena_free(&out->arena);
    st = cr_moe_config_parse(alloc, path, text, len, out, d, err);
    cr_free(alloc, text);
    return st;
}

void cr_moe_config_free(cr_moe_config *c)
{
    cr_arena_free(&c->arena);
    memset(c, 0, sizeof *c);
}

bool cr_moe_file_is_moe(const cr_allocator *alloc, const char *path)
{
    cr_diags d;
    cr_diags_init(&d, alloc);
    cr_ytree t;
    cr_error err = {0};
    bool yes = false;
    if (!cr_ytree_load(alloc, path, &t, &d, &err) && t.n_docs == 1 && t.docs[0].root &&
        t.docs[0].root->kind == CR_YNODE_MAP) {
        const cr_ynode *r = t.docs[0].root;
        yes = cr_ynode_get(r, "experts") && !cr_ynode_get(r, "merge_method") && !cr_ynode_get(r, "models") &&
              !cr_ynode_get(r, "slices");
    }
    cr_ytree_free(&t);
    cr_diags_free(&d);
    return yes;
}

/* ---- is_bad_config ------------------------------------------------------- */

static bool same_list(const char *const *a, uint32_t na, const char *const *b, uint32_t nb)
{
    if ((a == NULL) != (b == NULL) || na != nb) return false;
    for (uint32_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i])) return false;
    return true;
}

bool cr_moe_config_validate(const cr_moe_config *c, bool allow_same_source, cr_diags *d)
{
    ctx x = { (cr_moe_config *)c, d };
    if (c->experts_per_token < 1) {
        cr_diag_add(d, CR_DIAG_ERROR, c->loc_experts_per_token, "experts_per_token", NULL,
                    "experts_per_token must be at least 1 (got %lld)", c->experts_per_token);
        return false;
    }
    if ((long long)c->n_experts < c->experts_per_token) {
        cr_diag_add(d, CR_DIAG_ERROR, c->loc_experts, "experts", "add experts or lower experts_per_token",
                    "%u expert%s but experts_per_token is %lld", c->n_experts, c->n_experts == 1 ? "" : "s",
                    c->experts_per_token);
        return false;
    }
    if (c->gate_mode == CR_MOE_GATE_RANDOM) return true;
    for (uint32_t i = 0; i < c->n_experts; i++) {
        if (!c->experts[i].positive) {
            char p[64];
            snprintf(p, sizeof p, "experts[%u]", i);
            cr_diag_add(d, CR_DIAG_ERROR, c->experts[i].loc, p,
                        "add positive_prompts, or use gate_mode: random",
                        "gate_mode %s needs positive_prompts for every expert", c->gate_mode_name);
            return false;
        }
    }
    /* mergekit compares expert 0 with experts 1..E-1: with one expert the
     * test is vacuously true and the config is rejected (QUIRK, kept) */
    bool all_same = true;
    for (uint32_t i = 1; i < c->n_experts; i++) {
        const cr_moe_expert *a = &c->experts[0], *b = &c->experts[i];
        if (!same_list(a->positive, a->n_positive, b->positive, b->n_positive) ||
            !same_list(a->negative, a->n_negative, b->negative, b->n_negative))
            all_same = false;
    }
    if (all_same) {
        cr_diag_add(d, CR_DIAG_ERROR, c->loc_experts, "experts", "give each expert its own prompts",
                    c->n_experts == 1 ? "one expert: mergekit-moe rejects a single expert outside gate_mode random"
                                      : "every expert has the same prompts, so the gates could not tell them apart");
        return false;
    }
    bool same_src = true;
    for (uint32_t i = 1; i < c->n_experts; i++)
        if (strcmp(c->experts[0].source_model, c->experts[i].source_model)) same_src = false;
    if (same_src && !allow_same_source) {
        cr_diag_add(d, CR_DIAG_ERROR, c->loc_experts, "experts",
                    "pass --i-understand-this-is-not-useful-without-training to allow it",
                    "every expert has the same source_model");
        return false;
    }
    (void)x;
    return true;
}

/* ---- select_output_arch --------------------------------------------------- */

static const char *arch_names[CR_MOE_ARCH_COUNT] = { "Mixtral", "DeepSeek MoE", "Qwen MoE", "Qwen3 MoE" };

const char *cr_moe_arch_name(cr_moe_arch a) { return a < CR_MOE_ARCH_COUNT ? arch_names[a] : "?"; }

static bool has_prompts(const cr_moe_expert *e) { return e->positive != NULL; }

static bool all_types_in(const char *const *types, size_t n, const char *const *allowed, size_t n_allowed)
{
    const char *first = types[0];
    for (size_t i = 0; i < n; i++) {
        if (!types[i] || !first || strcmp(types[i], first)) return false;
    }
    for (size_t j = 0; j < n_allowed; j++)
        if (!strcmp(first, allowed[j])) return true;
    return false;
}

static bool supports(const cr_moe_config *c, const char *const *types, cr_moe_arch a)
{
    static const char *llama_mistral[] = { "llama", "mistral" };
    static const char *qwen2[] = { "llama", "mistral", "qwen2" };
    static const char *qwen3[] = { "qwen3" };
    size_t routed = 1 + c->n_experts, all = routed + c->n_shared;
    switch (a) {
    case CR_MOE_ARCH_MIXTRAL:
        return c->n_shared == 0 && all_types_in(types, routed, llama_mistral, 2);
    case CR_MOE_ARCH_DEEPSEEK:
        return c->n_shared <= 1 && (c->n_shared == 0 || !has_prompts(&c->shared[0])) &&
               all_types_in(types, all, llama_mistral, 2);
    case CR_MOE_ARCH_QWEN2:
        return c->n_shared == 1 && (has_prompts(&c->shared[0]) || c->gate_mode == CR_MOE_GATE_RANDOM) &&
               all_types_in(types, all, qwen2, 3);
    case CR_MOE_ARCH_QWEN3:
        return c->n_shared == 0 && all_types_in(types, routed, qwen3, 1);
    default:
        return false;
    }
}

cr_status cr_moe_select_arch(const cr_moe_config *c, const char *const *types, cr_moe_arch *out, cr_error *err)
{
    bool cand[CR_MOE_ARCH_COUNT];
    bool any_name = false;
    for (int a = 0; a < CR_MOE_ARCH_COUNT; a++) {
        cand[a] = true;
        if (c->architecture) {
            size_t n = strlen(c->architecture);
            cand[a] = strncasecmp(arch_names[a], c->architecture, n) == 0;
        }
        any_name |= cand[a];
    }
    if (!any_name)
        return cr_fail(err, CR_ERR_CONFIG,
                       "%s:%d:%d: architecture '%s' matches no writer (a case-insensitive prefix of Mixtral, "
                       "DeepSeek MoE, Qwen MoE or Qwen3 MoE; note 'qwen2' matches none, as in mergekit)",
                       c->path, c->loc_architecture.line, c->loc_architecture.col, c->architecture);
    int pick = -1;
    for (int a = 0; a < CR_MOE_ARCH_COUNT; a++) {
        if (!cand[a] || !supports(c, types, (cr_moe_arch)a)) continue;
        if (a == CR_MOE_ARCH_MIXTRAL) { pick = a; break; }
        if (pick < 0) pick = a;
    }
    if (pick < 0)
        return cr_fail(err, CR_ERR_CONFIG,
                       "%s: no MoE writer accepts this config (base model_type '%s', %u shared expert%s): "
                       "Mixtral needs llama/mistral models and no shared expert; DeepSeek MoE needs llama/mistral models and at "
                       "most one shared expert without prompts; Qwen MoE needs exactly one "
                       "shared expert with prompts (or gate_mode random) and llama/mistral/qwen2 models; "
                       "Qwen3 MoE needs qwen3 models and no shared expert",
                       c->path, types[0] ? types[0] : "?", c->n_shared, c->n_shared == 1 ? "" : "s");
    *out = (cr_moe_arch)pick;
    return CR_OK;
}
