/* config.c — YAML node tree -> typed mergekit config (config.h).
 *
 * Mirrors mergekit/config.py's pydantic models: the same keys, the same value
 * shapes, the same "exactly one of models/slices/modules" rule. Differences
 * on purpose: unknown keys are warned about (mergekit ignores them silently),
 * a bare {filter, value} mapping and a bad dtype name are errors here rather
 * than at evaluation/load time, and features crucible does not implement yet
 * (tokenizer `tokens:` overrides, multi-module recipes,
 * override_architecture) are parsed and then refused with "not supported
 * yet"; tokenizer sources that need a vocabulary permutation are refused
 * later, in compiler/tokident.c, where the tokenizers are read. Parsing never stops at the first problem.
 */
#include "config.h"
#include "chat_templates.h"
#include "limits.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pctx {
    cr_arena *ar;
    cr_diags *d;
    const char *file;
    cr_config *cfg;
    bool oom;
} pctx;

static cr_src_loc at(pctx *c, const cr_ynode *n)
{
    return (cr_src_loc){ c->file, n ? n->line : 0, n ? n->col : 0 };
}

static const char *sub(pctx *c, const char *path, const char *key)
{
    char *s = path && path[0] ? cr_arena_printf(c->ar, "%s.%s", path, key)
                              : cr_arena_strdup(c->ar, key);
    if (!s) c->oom = true;
    return s ? s : "";
}

static const char *idx(pctx *c, const char *path, uint32_t i)
{
    char *s = cr_arena_printf(c->ar, "%s[%u]", path, i);
    if (!s) c->oom = true;
    return s ? s : "";
}

#define ERR(c, node, path, hint, ...) \
    cr_diag_add((c)->d, CR_DIAG_ERROR, at((c), (node)), (path), (hint), __VA_ARGS__)

static void unsupported(pctx *c, const cr_ynode *n, const char *path, const char *what)
{
    ERR(c, n, path, NULL, "%s: not supported yet", what);
    c->cfg->unsupported = true;
}

/* Warn about keys of `map` not in `known` (NULL-terminated), with a
 * suggestion when one is close. */
static void check_keys(pctx *c, const cr_ynode *map, const char *path, const char *const *known)
{
    size_t n_known = 0;
    while (known[n_known]) n_known++;
    for (uint32_t i = 0; i < map->n_items; i++) {
        const cr_ynode *k = map->keys[i];
        bool ok = false;
        for (size_t j = 0; j < n_known && !ok; j++) ok = !strcmp(k->str, known[j]);
        if (ok) continue;
        const char *s = cr_suggest(k->str, known, n_known);
        char hint[160];
        if (s) snprintf(hint, sizeof hint, "did you mean '%s'?", s);
        cr_diag_add(c->d, CR_DIAG_WARNING, at(c, k), sub(c, path, k->str), s ? hint : NULL,
                    "unknown key '%s' is ignored (as mergekit does)", k->str);
    }
}

static const char *scalar_str(pctx *c, const cr_ynode *n, const char *path, const char *what)
{
    if (!n || n->kind != CR_YNODE_SCALAR || cr_ynode_is_null(n)) {
        ERR(c, n, path, NULL, "%s must be a string, not %s", what, cr_ynode_kind_name(n));
        return NULL;
    }
    return n->str;
}

/* ---- model references ------------------------------------------------- */

static bool split_at(cr_arena *ar, const char *s, size_t len, const char **path,
                     const char **rev, const char **why)
{
    const char *a = memchr(s, '@', len);
    if (a && memchr(a + 1, '@', len - (size_t)(a + 1 - s))) {
        *why = "more than one '@' in a model reference";
        return false;
    }
    size_t plen = a ? (size_t)(a - s) : len;
    if (plen == 0) { *why = "empty model path"; return false; }
    *path = cr_arena_strndup(ar, s, plen);
    *rev = a ? cr_arena_strndup(ar, a + 1, len - plen - 1) : NULL;
    if (a && !(*rev)[0]) { *why = "empty revision after '@'"; return false; }
    return true;
}

bool cr_model_ref_parse(cr_arena *ar, const char *s, cr_model_ref *out, const char **why)
{
    memset(out, 0, sizeof *out);
    const char *plus = strchr(s, '+');
    if (plus && strchr(plus + 1, '+')) { *why = "more than one '+' in a model reference"; return false; }
    size_t mlen = plus ? (size_t)(plus - s) : strlen(s);
    if (!split_at(ar, s, mlen, &out->path, &out->revision, why)) return false;
    if (plus && !split_at(ar, plus + 1, strlen(plus + 1), &out->lora, &out->lora_revision, why))
        return false;
    out->text = cr_arena_strdup(ar, s);
    return out->text && out->path;
}

static bool path_rev_map(pctx *c, const cr_ynode *n, const char *path, const char **p,
                         const char **rev)
{
    if (n->kind == CR_YNODE_SCALAR) {
        *p = scalar_str(c, n, path, "model path");
        return *p != NULL;
    }
    if (n->kind != CR_YNODE_MAP) {
        ERR(c, n, path, NULL, "expected a path or {path, revision}, not %s", cr_ynode_kind_name(n));
        return false;
    }
    static const char *const keys[] = { "path", "revision", NULL };
    check_keys(c, n, path, keys);
    const cr_ynode *pn = cr_ynode_get(n, "path"), *rn = cr_ynode_get(n, "revision");
    if (!pn) { ERR(c, n, path, NULL, "missing 'path'"); return false; }
    *p = scalar_str(c, pn, sub(c, path, "path"), "path");
    if (rn && !cr_ynode_is_null(rn)) *rev = scalar_str(c, rn, sub(c, path, "revision"), "revision");
    return *p != NULL;
}

/* Parse a model reference; refuses what crucible cannot do yet. */
static bool parse_ref(pctx *c, const cr_ynode *n, const char *path, cr_model_ref *out)
{
    memset(out, 0, sizeof *out);
    if (!n || cr_ynode_is_null(n)) {
        ERR(c, n, path, NULL, "missing model reference");
        return false;
    }
    if (n->kind == CR_YNODE_SCALAR) {
        const char *why = NULL;
        if (!cr_model_ref_parse(c->ar, n->str, out, &why)) {
            if (!why) c->oom = true;
            else ERR(c, n, path, "write `path`, `path@revision` or `path+lora`", "%s", why);
            return false;
        }
    } else if (n->kind == CR_YNODE_MAP) {
        static const char *const keys[] = { "model", "lora", "override_architecture", NULL };
        check_keys(c, n, path, keys);
        const cr_ynode *m = cr_ynode_get(n, "model"), *l = cr_ynode_get(n, "lora"),
                       *o = cr_ynode_get(n, "override_architecture");
        if (!m) { ERR(c, n, path, NULL, "model reference mapping needs 'model'"); return false; }
        if (!path_rev_map(c, m, sub(c, path, "model"), &out->path, &out->revision)) return false;
        if (l && !cr_ynode_is_null(l) &&
            !path_rev_map(c, l, sub(c, path, "lora"), &out->lora, &out->lora_revision))
            return false;
        if (o && !cr_ynode_is_null(o))
            out->override_arch = scalar_str(c, o, sub(c, path, "override_architecture"), "override_architecture");
        /* Canonical text, the same as the string form would give. */
        out->text = cr_arena_printf(c->ar, "%s%s%s%s%s%s%s", out->path,
                                    out->revision ? "@" : "", out->revision ? out->revision : "",
                                    out->lora ? "+" : "", out->lora ? out->lora : "",
                                    out->lora_revision ? "@" : "",
                                    out->lora_revision ? out->lora_revision : "");
        if (!out->text) { c->oom = true; return false; }
    } else {
        ERR(c, n, path, NULL, "a model reference must be a string or a mapping, not %s",
            cr_ynode_kind_name(n));
        return false;
    }
    out->loc = at(c, n);
    out->ypath = path;
    bool ok = true;
    /* a model's or a LoRA's revision chooses its Hugging Face cache
     * snapshot (resolve.h); the adapter is opened with the model
     * (frontend.c, spec/lora.md) */
    if (out->override_arch) { unsupported(c, n, path, "override_architecture"); ok = false; }
    return ok;
}

/* ---- parameter settings ----------------------------------------------- */

static bool parse_setting(pctx *c, const cr_ynode *n, const char *path, cr_setting *out, int depth);

static bool scalar_value(pctx *c, const cr_ynode *n, const char *path, double *v)
{
    bool b;
    if (cr_ynode_bool(n, &b)) { *v = b ? 1.0 : 0.0; return true; }
    if (cr_ynode_number(n, true, v)) {
        /* mergekit takes .nan, .inf and 1e400 (inf) and writes NaN into
         * every tensor; no merge parameter means anything when infinite. */
        if (isfinite(*v)) return true;
        ERR(c, n, path, "merge parameters must be finite numbers (mergekit would write NaN or Inf into every tensor)",
            "'%s' is not a finite number (it reads as %g)", n->str, *v);
        return false;
    }
    ERR(c, n, path, "parameter values are numbers, booleans, lists of numbers (a gradient) or lists of {filter, value}",
        "'%s' is not a number", n->str);
    return false;
}

static bool parse_cond_list(pctx *c, const cr_ynode *n, const char *path, cr_setting *out, int depth)
{
    cr_cond *conds = cr_arena_alloc(c->ar, n->n_items * sizeof *conds);
    if (!conds) { c->oom = true; return false; }
    bool ok = true;
    for (uint32_t i = 0; i < n->n_items; i++) {
        const cr_ynode *e = n->items[i];
        const char *ep = idx(c, path, i);
        if (e->kind != CR_YNODE_MAP) {
            ERR(c, e, ep, "do not mix numbers and {filter, value} entries in one list",
                "expected a {filter, value} mapping, not %s", cr_ynode_kind_name(e));
            ok = false;
            continue;
        }
        static const char *const keys[] = { "filter", "value", NULL };
        check_keys(c, e, ep, keys);
        const cr_ynode *f = cr_ynode_get(e, "filter"), *v = cr_ynode_get(e, "value");
        if (f && !cr_ynode_is_null(f)) {
            if (f->kind != CR_YNODE_SCALAR) {
                ERR(c, f, sub(c, ep, "filter"), NULL, "filter must be a string");
                ok = false;
            } else if (strcmp(f->str, "*")) {
                conds[i].filter = f->str;
            }
        }
        if (!v) {
            ERR(c, e, ep, NULL, "conditional entry has no 'value'");
            ok = false;
            continue;
        }
        ok &= parse_setting(c, v, sub(c, ep, "value"), &conds[i].value, depth + 1);
    }
    out->kind = CR_SETTING_COND;
    out->conds = conds;
    out->n_conds = n->n_items;
    return ok;
}

static bool parse_setting(pctx *c, const cr_ynode *n, const char *path, cr_setting *out, int depth)
{
    memset(out, 0, sizeof *out);
    out->loc = at(c, n);
    out->path = path;
    if (depth > CR_LIMIT_PARAM_DEPTH) { ERR(c, n, path, NULL, "parameter nested more than %d levels deep", CR_LIMIT_PARAM_DEPTH); return false; }
    if (cr_ynode_is_null(n)) { out->kind = CR_SETTING_NONE; return true; }
    if (n->kind == CR_YNODE_SCALAR) {
        out->kind = CR_SETTING_SCALAR;
        return scalar_value(c, n, path, &out->scalar);
    }
    if (n->kind == CR_YNODE_MAP) {
        if (cr_ynode_get(n, "value") || cr_ynode_get(n, "filter"))
            ERR(c, n, path, "write it as a list: `- filter: ...` / `  value: ...`",
                "a single {filter, value} mapping must be inside a list (mergekit fails on it with \"Unexpected setting value\")");
        else
            ERR(c, n, path, NULL, "a parameter value cannot be a mapping");
        return false;
    }
    if (n->n_items == 0) { ERR(c, n, path, NULL, "empty list as a parameter value"); return false; }
    if (n->items[0]->kind == CR_YNODE_MAP) return parse_cond_list(c, n, path, out, depth);
    double *g = cr_arena_alloc(c->ar, n->n_items * sizeof *g);
    if (!g) { c->oom = true; return false; }
    bool ok = true;
    for (uint32_t i = 0; i < n->n_items; i++) {
        const cr_ynode *e = n->items[i];
        if (e->kind != CR_YNODE_SCALAR || cr_ynode_is_null(e)) {
            ERR(c, e, idx(c, path, i), "a gradient is a list of numbers",
                "gradient entries must be numbers, not %s", cr_ynode_kind_name(e));
            ok = false;
            continue;
        }
        ok &= scalar_value(c, e, idx(c, path, i), &g[i]);
    }
    out->kind = CR_SETTING_GRADIENT;
    out->grad = g;
    out->n_grad = n->n_items;
    return ok;
}

static bool parse_params(pctx *c, const cr_ynode *n, const char *path, cr_params *out)
{
    memset(out, 0, sizeof *out);
    if (!n || cr_ynode_is_null(n)) return true;
    if (n->kind != CR_YNODE_MAP) {
        ERR(c, n, path, NULL, "parameters must be a mapping of name: value, not %s", cr_ynode_kind_name(n));
        return false;
    }
    cr_param *items = cr_arena_alloc(c->ar, (n->n_items ? n->n_items : 1) * sizeof *items);
    if (!items) { c->oom = true; return false; }
    bool ok = true;
    for (uint32_t i = 0; i < n->n_items; i++) {
        items[i].name = n->keys[i]->str;
        items[i].loc = at(c, n->keys[i]);
        items[i].path = sub(c, path, n->keys[i]->str);
        ok &= parse_setting(c, n->items[i], items[i].path, &items[i].value, 0);
    }
    out->items = items;
    out->n = n->n_items;
    return ok;
}

/* ---- sources, slices, models ------------------------------------------ */

static bool parse_range(pctx *c, const cr_ynode *n, const char *path, cr_source *s)
{
    s->range_loc = at(c, n);
    if (n->kind != CR_YNODE_SEQ || n->n_items != 2) {
        ERR(c, n, path, "write layer_range: [start, end] (end exclusive)",
            "layer_range must be a list of two integers");
        return false;
    }
    for (int i = 0; i < 2; i++) {
        if (!cr_ynode_int(n->items[i], &s->range[i])) {
            ERR(c, n->items[i], idx(c, path, (uint32_t)i), NULL, "layer_range bound must be an integer");
            return false;
        }
    }
    if (s->range[0] < 0 || s->range[1] <= s->range[0]) {
        ERR(c, n, path, "layer_range is half-open: [a, b] takes layers a .. b-1, so b must exceed a",
            "invalid layer_range [%lld, %lld]", s->range[0], s->range[1]);
        return false;
    }
    s->has_range = true;
    return true;
}

static bool parse_source(pctx *c, const cr_ynode *n, const char *path, cr_source *s, bool in_slice)
{
    memset(s, 0, sizeof *s);
    s->loc = at(c, n);
    s->ypath = path;
    if (n->kind == CR_YNODE_SCALAR && !in_slice) {
        /* `models: [a, b]` is not mergekit syntax; say what is. */
        ERR(c, n, path, "write `- model: NAME`", "expected a mapping with 'model'");
        return false;
    }
    if (n->kind != CR_YNODE_MAP) {
        ERR(c, n, path, NULL, "expected a mapping with 'model', not %s", cr_ynode_kind_name(n));
        return false;
    }
    static const char *const slice_keys[] = { "model", "layer_range", "parameters", NULL };
    static const char *const model_keys[] = { "model", "parameters", NULL };
    check_keys(c, n, path, in_slice ? slice_keys : model_keys);
    bool ok = true;
    const cr_ynode *m = cr_ynode_get(n, "model");
    if (!m) { ERR(c, n, path, NULL, "missing 'model'"); ok = false; }
    else ok &= parse_ref(c, m, sub(c, path, "model"), &s->model);
    if (in_slice) {
        const cr_ynode *r = cr_ynode_get(n, "layer_range");
        if (!r || cr_ynode_is_null(r)) {
            ERR(c, n, path, "slice sources need layer_range: [start, end]", "missing 'layer_range'");
            ok = false;
        } else {
            ok &= parse_range(c, r, sub(c, path, "layer_range"), s);
        }
    }
    ok &= parse_params(c, cr_ynode_get(n, "parameters"), sub(c, path, "parameters"), &s->params);
    return ok;
}

static bool parse_models(pctx *c, const cr_ynode *n, const char *path, cr_config *cfg)
{
    cfg->form = CR_CONFIG_MODELS;
    cfg->models_loc = at(c, n);
    if (n->kind != CR_YNODE_SEQ || n->n_items == 0) {
        ERR(c, n, path, NULL, "models must be a non-empty list");
        return false;
    }
    cfg->models = cr_arena_alloc(c->ar, n->n_items * sizeof *cfg->models);
    if (!cfg->models) { c->oom = true; return false; }
    cfg->n_models = n->n_items;
    bool ok = true;
    for (uint32_t i = 0; i < n->n_items; i++)
        ok &= parse_source(c, n->items[i], idx(c, path, i), &cfg->models[i], false);
    return ok;
}

static bool parse_slices(pctx *c, const cr_ynode *n, const char *path, cr_config *cfg)
{
    cfg->form = CR_CONFIG_SLICES;
    cfg->models_loc = at(c, n);
    if (n->kind != CR_YNODE_SEQ || n->n_items == 0) {
        ERR(c, n, path, NULL, "slices must be a non-empty list");
        return false;
    }
    cfg->slices = cr_arena_alloc(c->ar, n->n_items * sizeof *cfg->slices);
    if (!cfg->slices) { c->oom = true; return false; }
    cfg->n_slices = n->n_items;
    bool ok = true;
    for (uint32_t i = 0; i < n->n_items; i++) {
        const cr_ynode *sn = n->items[i];
        cr_slice *sl = &cfg->slices[i];
        sl->ypath = idx(c, path, i);
        sl->loc = at(c, sn);
        if (sn->kind != CR_YNODE_MAP) {
            ERR(c, sn, sl->ypath, NULL, "a slice must be a mapping with 'sources'");
            ok = false;
            continue;
        }
        static const char *const keys[] = { "sources", "base_model", "parameters", "residual_weight", NULL };
        check_keys(c, sn, sl->ypath, keys);
        const cr_ynode *src = cr_ynode_get(sn, "sources");
        const char *sp = sub(c, sl->ypath, "sources");
        if (!src || src->kind != CR_YNODE_SEQ || src->n_items == 0) {
            ERR(c, src ? src : sn, sp, NULL, "a slice needs a non-empty 'sources' list");
            ok = false;
        } else {
            sl->sources = cr_arena_alloc(c->ar, src->n_items * sizeof *sl->sources);
            if (!sl->sources) { c->oom = true; return false; }
            sl->n_sources = src->n_items;
            for (uint32_t j = 0; j < src->n_items; j++)
                ok &= parse_source(c, src->items[j], idx(c, sp, j), &sl->sources[j], true);
        }
        const cr_ynode *b = cr_ynode_get(sn, "base_model");
        if (b && !cr_ynode_is_null(b)) {
            sl->has_base = parse_ref(c, b, sub(c, sl->ypath, "base_model"), &sl->base);
            ok &= sl->has_base;
        }
        ok &= parse_params(c, cr_ynode_get(sn, "parameters"), sub(c, sl->ypath, "parameters"), &sl->params);
        const cr_ynode *rw = cr_ynode_get(sn, "residual_weight");
        double dummy;
        if (rw && !cr_ynode_is_null(rw) && (!cr_ynode_number(rw, true, &dummy) || !isfinite(dummy))) {
            ERR(c, rw, sub(c, sl->ypath, "residual_weight"), NULL, "residual_weight must be a finite number");
            ok = false;
        }
    }
    return ok;
}

static bool parse_modules(pctx *c, const cr_ynode *n, cr_config *cfg)
{
    if (n->kind != CR_YNODE_MAP || n->n_items == 0) {
        ERR(c, n, "modules", NULL, "modules must be a mapping of module name to {models | slices}");
        return false;
    }
    if (n->n_items != 1 || strcmp(n->keys[0]->str, "default")) {
        unsupported(c, n, "modules", "multi-module recipes (modules other than a single 'default')");
        return false;
    }
    const cr_ynode *m = n->items[0];
    if (m->kind != CR_YNODE_MAP) {
        ERR(c, m, "modules.default", NULL, "a module must be a mapping");
        return false;
    }
    static const char *const keys[] = { "models", "slices", "parameters", NULL };
    check_keys(c, m, "modules.default", keys);
    const cr_ynode *mo = cr_ynode_get(m, "models"), *sl = cr_ynode_get(m, "slices");
    bool ok = parse_params(c, cr_ynode_get(m, "parameters"), "modules.default.parameters",
                           &cfg->module_params);
    if (!!mo == !!sl) {
        ERR(c, m, "modules.default", NULL, "a module needs exactly one of 'models' or 'slices'");
        return false;
    }
    if (mo) return parse_models(c, mo, "modules.default.models", cfg) && ok;
    return parse_slices(c, sl, "modules.default.slices", cfg) && ok;
}

bool cr_config_dtype(const char *s, cr_dtype *out)
{
    if (!strncmp(s, "torch.", 6)) s += 6;
    if (!strcmp(s, "bfloat16")) *out = CR_DTYPE_BF16;
    else if (!strcmp(s, "float16")) *out = CR_DTYPE_F16;
    else if (!strcmp(s, "float32")) *out = CR_DTYPE_F32;
    else if (!strcmp(s, "int64")) *out = CR_DTYPE_I64;
    else return false;
    return true;
}

static bool parse_dtype(pctx *c, const cr_ynode *n, const char *key, cr_dtype *out, cr_src_loc *loc)
{
    *out = CR_DTYPE_NONE;
    if (!n || cr_ynode_is_null(n)) return true;
    *loc = at(c, n);
    const char *s = scalar_str(c, n, key, key);
    if (!s) return false;
    if (cr_config_dtype(s, out)) return true;
    static const struct { const char *alias, *name; } aliases[] = {
        { "bf16", "bfloat16" }, { "bfloat", "bfloat16" }, { "fp16", "float16" }, { "f16", "float16" },
        { "half", "float16" }, { "float", "float32" }, { "fp32", "float32" }, { "f32", "float32" },
        { "BF16", "bfloat16" }, { "FP16", "float16" }, { "F16", "float16" }, { "FP32", "float32" },
        { "F32", "float32" }, { "float64", "float32" },
    };
    const char *want = NULL;
    for (size_t i = 0; i < CR_ARRAY_LEN(aliases); i++)
        if (!strcmp(s, aliases[i].alias)) want = aliases[i].name;
    char hint[200];
    snprintf(hint, sizeof hint, "%s%s%smergekit accepts bfloat16, float16, float32 or int64 (optionally prefixed 'torch.')",
             want ? "write '" : "", want ? want : "", want ? "'; " : "");
    ERR(c, n, key, hint, "unknown dtype '%s' (mergekit would fail when loading)", s);
    return false;
}

static const char *const top_keys[] = {
    "merge_method", "base_model", "models", "slices", "modules", "parameters", "dtype",
    "out_dtype", "tokenizer_source", "tokenizer", "chat_template", "name", NULL
};

cr_status cr_config_parse(cr_arena *ar, const cr_ytree *t, uint32_t doc, cr_config *out,
                          cr_diags *diags)
{
    memset(out, 0, sizeof *out);
    int errors_before = diags->n_errors;
    pctx c = { ar, diags, t->file, out, false };
    const cr_ydoc *d = &t->docs[doc];
    const cr_ynode *root = d->root;
    out->file = t->file;
    out->doc = doc;
    out->text = d->text;
    out->loc = (cr_src_loc){ t->file, d->line, 1 };
    out->dtype = out->out_dtype = CR_DTYPE_NONE;
    if (!root || root->kind != CR_YNODE_MAP) {
        cr_diag_add(diags, CR_DIAG_ERROR, root ? at(&c, root) : out->loc, NULL, NULL,
                    "a recipe must be a mapping with merge_method and models/slices, not %s",
                    cr_ynode_kind_name(root));
        return CR_ERR_CONFIG;
    }
    check_keys(&c, root, "", top_keys);

    const cr_ynode *n = cr_ynode_get(root, "name");
    if (n && !cr_ynode_is_null(n)) {
        out->name = scalar_str(&c, n, "name", "name");
        out->name_loc = at(&c, n);
    }
    n = cr_ynode_get(root, "merge_method");
    if (!n || cr_ynode_is_null(n)) {
        ERR(&c, n ? n : root, "merge_method", "for example `merge_method: linear`", "missing merge_method");
    } else {
        out->merge_method = scalar_str(&c, n, "merge_method", "merge_method");
        out->method_loc = at(&c, n);
    }
    n = cr_ynode_get(root, "base_model");
    if (n && !cr_ynode_is_null(n)) out->has_base = parse_ref(&c, n, "base_model", &out->base);

    const cr_ynode *mo = cr_ynode_get(root, "models"), *sl = cr_ynode_get(root, "slices"),
                   *md = cr_ynode_get(root, "modules");
    int n_forms = !!mo + !!sl + !!md;
    if (n_forms != 1) {
        ERR(&c, root, NULL, "a recipe lists its inputs under exactly one of them",
            n_forms ? "give only one of 'models', 'slices' and 'modules'"
                    : "missing 'models' (or 'slices')");
    } else if (mo) {
        parse_models(&c, mo, "models", out);
    } else if (sl) {
        parse_slices(&c, sl, "slices", out);
    } else {
        parse_modules(&c, md, out);
    }
    parse_params(&c, cr_ynode_get(root, "parameters"), "parameters", &out->params);
    parse_dtype(&c, cr_ynode_get(root, "dtype"), "dtype", &out->dtype, &out->dtype_loc);
    parse_dtype(&c, cr_ynode_get(root, "out_dtype"), "out_dtype", &out->out_dtype, &out->out_dtype_loc);

    const cr_ynode *ts = cr_ynode_get(root, "tokenizer_source"), *tk = cr_ynode_get(root, "tokenizer");
    if (ts && cr_ynode_is_null(ts)) ts = NULL;
    if (tk && cr_ynode_is_null(tk)) tk = NULL;
    if (ts && tk) {
        ERR(&c, tk, "tokenizer", NULL, "give either 'tokenizer_source' or 'tokenizer', not both");
    } else if (ts) {
        if (ts->kind != CR_YNODE_SCALAR) ERR(&c, ts, "tokenizer_source", NULL, "tokenizer_source must be union, base or a model");
        else out->tokenizer_source = scalar_str(&c, ts, "tokenizer_source", "tokenizer_source");
        out->tokenizer_loc = at(&c, ts);
    } else if (tk) {
        if (tk->kind != CR_YNODE_MAP) ERR(&c, tk, "tokenizer", NULL, "tokenizer must be a mapping");
        else {
            static const char *const keys[] = { "source", "tokens", "pad_to_multiple_of", NULL };
            check_keys(&c, tk, "tokenizer", keys);
            const cr_ynode *src = cr_ynode_get(tk, "source"), *tok = cr_ynode_get(tk, "tokens"),
                           *pad = cr_ynode_get(tk, "pad_to_multiple_of");
            /* mergekit's default source is union */
            out->tokenizer_source = "union";
            if (src && !cr_ynode_is_null(src)) {
                if (src->kind != CR_YNODE_SCALAR) ERR(&c, src, "tokenizer.source", NULL, "tokenizer.source must be union, base or a model");
                else out->tokenizer_source = scalar_str(&c, src, "tokenizer.source", "tokenizer.source");
            }
            out->tokenizer_loc = at(&c, tk);
            if (tok && !cr_ynode_is_null(tok))
                unsupported(&c, tok, "tokenizer.tokens", "token overrides (tokenizer.tokens) need mergekit's embedding "
                            "permutation; only a tokenizer every input shares");
            if (pad && !cr_ynode_is_null(pad)) {
                const char *ps = scalar_str(&c, pad, "tokenizer.pad_to_multiple_of", "pad_to_multiple_of");
                char *end = NULL;
                long v = ps ? strtol(ps, &end, 10) : -1;
                if (!ps || !*ps || *end || v < 0)
                    ERR(&c, pad, "tokenizer.pad_to_multiple_of", NULL, "pad_to_multiple_of must be a whole number >= 0");
                else out->tokenizer_pad = v;
            }
        }
    }
    const cr_ynode *ct = cr_ynode_get(root, "chat_template");
    if (ct && !cr_ynode_is_null(ct)) {
        if (ct->kind != CR_YNODE_SCALAR) {
            ERR(&c, ct, "chat_template", NULL, "chat_template must be a string");
        } else {
            const char *s = scalar_str(&c, ct, "chat_template", "chat_template");
            /* mergekit 0.1.5 finds a bad template only after writing every tensor */
            if (s && *s && cr_chat_template_kind(s, NULL) == CR_CHAT_INVALID)
                ERR(&c, ct, "chat_template",
                    "give auto, alpaca, chatml, exaone, llama3, mistral or Jinja text (20 bytes or more, with '{')",
                    "invalid chat template '%.60s' (mergekit 0.1.5 fails on it)", s);
            else if (s && *s) {
                out->chat_template = s;
                out->chat_template_loc = at(&c, ct);
            }
        }
    }
    if (c.oom) return CR_ERR_NOMEM;
    return diags->n_errors > errors_before ? CR_ERR_CONFIG : CR_OK;
}
