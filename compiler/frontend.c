/* frontend.c — recipe -> cr_plan: resolution, planning and validation.
 *
 * Owns the mergekit planning semantics (merge-methods.md §5.3-5.8, §7.3):
 * `models:` normalised to one slice with the base appended, slices
 * renumbered, pre weights from the first slice and post weights from the
 * last, parameters evaluated per tensor with the right name and layer
 * position, inputs deduplicated by model, outputs sorted into mergekit's
 * write order. Models are opened header-only when asked; a later stage's
 * reference to an earlier stage's `name:` becomes a plan model with stage
 * >= 0 whose tensors are that stage's outputs; a `model+adapter` model
 * gets its PEFT adapter attached and checked here (lora_attach,
 * spec/lora.md). Parsing lives in config.c, evaluation in params.c, names
 * -> architecture in arch.c, paths in resolve.c.
 */
#include "frontend.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "infile.h"
#include "limits.h"
#include "config.h"
#include "params.h"
#include "resolve.h"
#include "tokstage.h"
#include "yaml_tree.h"

#define MAX_TENSOR_ERRORS 20    /* per stage; more are counted, not shown */

typedef struct fe_tensor {
    const char *name;
    cr_dtype dtype;
    uint32_t ndim;
    uint64_t shape[CR_MAX_DIMS];
} fe_tensor;

/* What planning needs to know about one model, from a file or a stage. */
typedef struct fe_model {
    fe_tensor *tensors;         /* sorted by name */
    uint32_t n;
    cr_arch arch;
    long long n_layers;
    const char *layers_key;     /* config key holding the layer count */
    const char *arch_name;      /* config.json architectures[0] */
    const cr_model *file;       /* the opened model; NULL for a stage's output */
    bool untied;                /* config.json says tie_word_embeddings: false */
    bool ok;                    /* usable (opened and analysed) */
} fe_model;

typedef struct fe_src {
    int model;                  /* plan model index */
    long long a, b;             /* layer range */
    const cr_params *params;    /* source-level; NULL for an appended base */
    cr_src_loc loc;
    const char *ypath;
} fe_src;

typedef struct fe_slice {
    fe_src *srcs;               /* after dedupe by model */
    uint32_t n;
    int base;                   /* plan model index or -1 */
    const cr_params *params;
    cr_src_loc loc;
    const char *ypath;
    uint32_t index;
} fe_slice;

typedef struct fe {
    const cr_allocator *alloc;
    cr_arena *ar;               /* the plan's arena */
    cr_diags *d;
    const cr_frontend_options *opt;
    cr_method_registry *reg;
    cr_resolve_env env;
    cr_vec models;              /* cr_plan_model */
    cr_vec fmodels;             /* fe_model *, parallel to models */
    cr_vec stages;              /* cr_plan_stage */
    cr_config *cfgs;
    uint32_t n_cfgs;
    bool *stage_used;
    cr_vec once;                /* char *: keys of diagnostics already given */
    int tensor_errors;
    bool oom;
    /* current stage */
    const cr_config *cfg;
    const cr_method_info *method;
    cr_plan_stage *st;
    cr_vec tensors;             /* cr_plan_tensor */
    bool mixed_dtypes;
} fe;

static void *fe_alloc(fe *f, size_t n)
{
    void *p = cr_arena_alloc(f->ar, n ? n : 1);
    if (!p) f->oom = true;
    return p;
}

static const char *fe_printf(fe *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *fe_printf(fe *f, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *s = cr_arena_strdup(f->ar, buf);
    if (!s) f->oom = true;
    return s ? s : "";
}

/* true the first time `key` is seen: one diagnostic per problem, not per
 * tensor. */
static bool first_time(fe *f, const char *key)
{
    for (size_t i = 0; i < f->once.len; i++)
        if (!strcmp(CR_VEC_AT(&f->once, const char *, i), key)) return false;
    const char *k = cr_arena_strdup(f->ar, key);
    if (!k || !cr_vec_push(&f->once, &k)) f->oom = true;
    return true;
}

static bool tensor_error_slot(fe *f)
{
    return ++f->tensor_errors <= MAX_TENSOR_ERRORS;
}

static cr_plan_model *pmodel(fe *f, int i) { return &CR_VEC_AT(&f->models, cr_plan_model, i); }
static fe_model *fmodel(fe *f, int i) { return CR_VEC_AT(&f->fmodels, fe_model *, i); }

static const fe_tensor *fe_find(const fe_model *m, const char *name)
{
    uint32_t lo = 0, hi = m->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->tensors[mid].name, name);
        if (!c) return &m->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static int cmp_fe_tensor(const void *a, const void *b)
{
    return strcmp(((const fe_tensor *)a)->name, ((const fe_tensor *)b)->name);
}

/* ---- models ------------------------------------------------------------ */

static bool analyse(fe *f, fe_model *m)
{
    const char **names = fe_alloc(f, m->n * sizeof *names);
    if (!names) return false;
    for (uint32_t i = 0; i < m->n; i++) names[i] = m->tensors[i].name;
    if (cr_arch_analyse(f->ar, names, m->n, &m->arch)) { f->oom = true; return false; }
    return true;
}

/* `model+lora` (spec/lora.md): open the adapter and check it against the
 * model's tensors, as PEFT would when loading it; with --lora-merge-dtype
 * every floating tensor of the model reads as that dtype. false (reported)
 * when the reference cannot be used. */
static bool lora_attach(fe *f, int idx, const cr_model_ref *ref, fe_model *m)
{
    cr_plan_model *pm = pmodel(f, idx);
    const char *snapshot = NULL, *tried = NULL;
    const char *dir = cr_resolve_model_at(&f->env, f->ar, ref->lora, ref->lora_revision, &snapshot, &tried);
    if (!dir) {
        cr_diag_add(f->d, CR_DIAG_ERROR, ref->loc, ref->ypath,
                    "crucible never downloads; put the adapter there, or pass --models-dir DIR (or set CRUCIBLE_MODELS)",
                    "LoRA adapter '%s' of '%s' not found (looked in %s)", ref->lora, ref->text, tried ? tried : "?");
        return false;
    }
    cr_lora *l = cr_calloc(f->alloc, 1, sizeof *l);
    if (!l) { f->oom = true; return false; }
    cr_error err = { 0 };
    cr_status st = cr_lora_open(f->alloc, dir, l, &err);
    if (st) {
        cr_free(f->alloc, l);
        if (st == CR_ERR_NOMEM) f->oom = true;
        cr_diag_add(f->d, CR_DIAG_ERROR, ref->loc, ref->ypath, NULL, "cannot apply LoRA '%s': %s", ref->text, err.msg);
        return false;
    }
    pm->lora = l;
    pm->lora_ref = ref->lora_revision ? cr_arena_printf(f->ar, "%s@%s", ref->lora, ref->lora_revision) : ref->lora;
    pm->lora_lookup = ref->lora;
    pm->lora_revision = snapshot;
    pm->lora_dir = dir;
    pm->lora_dtype = f->opt->has_lora_merge_dtype ? f->opt->lora_merge_dtype : CR_DTYPE_NONE;
    /* PEFT sets fan_in_fan_out for transformers' Conv1D (GPT-2) whatever
     * the config says, and clears it for nn.Linear */
    const cJSON *mt = m->file->config ? cJSON_GetObjectItemCaseSensitive(m->file->config, "model_type") : NULL;
    pm->lora_conv1d = cJSON_IsString(mt) && !strcmp(mt->valuestring, "gpt2");
    bool ok = true;
    for (uint32_t i = 0; i < l->n_targets; i++) {
        const cr_lora_target *t = &l->targets[i];
        const fe_tensor *w = fe_find(m, t->weight);
        const cr_st_tensor *a = cr_st_find(&l->st, t->a), *b = cr_st_find(&l->st, t->b);
        bool tr = t->embedding || (pm->lora_conv1d && !t->embedding);
        uint64_t want0 = tr ? a->shape[1] : b->shape[0], want1 = tr ? b->shape[0] : a->shape[1];
        if (!w) {
            cr_diag_add(f->d, CR_DIAG_ERROR, ref->loc, ref->ypath, NULL,
                        "LoRA '%s' changes '%s', which model '%s' does not have (an adapter for another model?)",
                        ref->lora, t->weight, ref->path);
            ok = false;
        } else if (w->ndim != 2 || w->shape[0] != want0 || w->shape[1] != want1) {
            cr_diag_add(f->d, CR_DIAG_ERROR, ref->loc, ref->ypath, NULL,
                        "LoRA '%s': '%s' and '%s' make a [%llu, %llu] delta but '%s' of '%s' is not that shape",
                        ref->lora, t->b, t->a, (unsigned long long)want0, (unsigned long long)want1, t->weight,
                        ref->path);
            ok = false;
        } else if (!cr_dtype_is_float(w->dtype)) {
            cr_diag_add(f->d, CR_DIAG_ERROR, ref->loc, ref->ypath, NULL, "LoRA '%s': '%s' of '%s' is not floating point",
                        ref->lora, t->weight, ref->path);
            ok = false;
        }
    }
    for (uint32_t i = 0; i < l->n_replaced; i++) {
        const cr_lora_replace *r = &l->replaced[i];
        const fe_tensor *w = fe_find(m, r->weight);
        const cr_st_tensor *src = cr_st_find(&l->st, r->src);
        if (!w || w->ndim != src->ndim || memcmp(w->shape, src->shape, sizeof(uint64_t) * w->ndim)) {
            cr_diag_add(f->d, CR_DIAG_ERROR, ref->loc, ref->ypath,
                        w ? "an adapter saved after resizing the embeddings needs the resized model" : NULL,
                        "LoRA '%s': '%s' replaces '%s', which model '%s' %s", ref->lora, r->src, r->weight, ref->path,
                        w ? "has in another shape" : "does not have");
            ok = false;
        }
    }
    if (pm->lora_dtype != CR_DTYPE_NONE)
        for (uint32_t i = 0; i < m->n; i++)
            if (cr_dtype_is_float(m->tensors[i].dtype)) m->tensors[i].dtype = pm->lora_dtype;
    return ok;
}

static void model_from_file(fe *f, int idx, const cr_model_ref *ref)
{
    cr_plan_model *pm = pmodel(f, idx);
    fe_model *m = fmodel(f, idx);
    const char *tried = NULL;
    const char *snapshot = NULL;
    const char *dir = cr_resolve_model_at(&f->env, f->ar, ref->path, ref->revision, &snapshot, &tried);
    if (!dir) {
        const char *fetch = cr_resolve_fetch_command(f->ar, ref->path, ref->revision);
        const char *hint = fetch ? cr_arena_printf(f->ar, "crucible never downloads: `%s` puts it into the Hugging Face "
                                                   "cache, where crucible looks; or put the model in a directory and "
                                                   "pass --models-dir DIR (or set CRUCIBLE_MODELS)", fetch) : NULL;
        cr_diag_add(f->d, CR_DIAG_ERROR, ref->loc, ref->ypath,
                    hint ? hint : "crucible never downloads; put the model there, or pass --models-dir DIR (or set CRUCIBLE_MODELS)",
                    "model '%s' not found (looked in %s)", ref->text, tried ? tried : "?");
        return;
    }
    pm->path = dir;
    pm->lookup = ref->path;
    pm->revision = snapshot;
    cr_error err = { 0 };
    cr_status st = cr_model_open(f->alloc, dir, f->opt->header_only ? CR_ST_HEADER_ONLY : 0,
                                 &pm->model, &err);
    if (st) {
        if (st == CR_ERR_NOMEM) f->oom = true;
        cr_diag_add(f->d, CR_DIAG_ERROR, ref->loc, ref->ypath, NULL, "cannot open model '%s': %s",
                    ref->text, err.msg);
        return;
    }
    pm->opened = true;
    const cr_model *cm = &pm->model;
    m->file = cm;
    const cJSON *tie = cm->config ? cJSON_GetObjectItemCaseSensitive(cm->config, "tie_word_embeddings") : NULL;
    m->untied = cJSON_IsFalse(tie);
    if (cm->n_unlisted)
        cr_diag_add(f->d, CR_DIAG_WARNING, ref->loc, ref->ypath,
                    "transformers would load them; add them to weight_map if they belong to the model",
                    "model '%s': %s/%s does not list %u tensor%s that shard '%s' holds "
                    "(first: '%s'); like mergekit, crucible reads only the listed tensors",
                    ref->text, dir, cm->index_name ? cm->index_name : "model.safetensors.index.json", cm->n_unlisted, cm->n_unlisted == 1 ? "" : "s",
                    cm->shards[cm->first_unlisted_shard].path, cm->first_unlisted);
    m->n = cm->n_tensors;
    m->tensors = fe_alloc(f, cm->n_tensors * sizeof *m->tensors);
    if (!m->tensors) return;
    for (uint32_t i = 0; i < cm->n_tensors; i++) {
        const cr_st_tensor *t = cm->tensors[i].info;
        m->tensors[i].name = t->name;
        m->tensors[i].dtype = t->dtype;
        m->tensors[i].ndim = t->ndim;
        memcpy(m->tensors[i].shape, t->shape, sizeof t->shape);
    }
    qsort(m->tensors, m->n, sizeof *m->tensors, cmp_fe_tensor);
    if (!analyse(f, m)) return;
    static const char *const keys[] = { "num_hidden_layers", "n_layer", "num_layers",
                                        "text_config.num_hidden_layers" };
    long long cfg_layers = -1;
    for (size_t i = 0; i < CR_ARRAY_LEN(keys) && cfg_layers < 0; i++)
        if (cr_model_config_int(cm, keys[i], &cfg_layers)) m->layers_key = keys[i];
    if (cm->config) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(cm->config, "architectures");
        const cJSON *a0 = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
        if (cJSON_IsString(a0)) m->arch_name = cr_arena_strdup(f->ar, a0->valuestring);
    }
    m->n_layers = m->arch.n_layers;
    if (ref->lora && !lora_attach(f, idx, ref, m)) return;
    if (cfg_layers >= 0) {
        if (cfg_layers > m->arch.n_layers) {
            cr_diag_add(f->d, CR_DIAG_ERROR, ref->loc, ref->ypath, NULL,
                        "model '%s': config.json says %s = %lld but tensors exist for %lld layers",
                        ref->text, m->layers_key, cfg_layers, m->arch.n_layers);
            return;
        }
        if (cfg_layers < m->arch.n_layers)
            cr_diag_add(f->d, CR_DIAG_WARNING, ref->loc, ref->ypath, NULL,
                        "model '%s': tensors exist for %lld layers but %s = %lld; the extra layers are ignored",
                        ref->text, m->arch.n_layers, m->layers_key, cfg_layers);
        m->n_layers = cfg_layers;
    }
    for (long long l = 0; l < m->n_layers; l++) {
        if (m->arch.layers[l].n_rests == 0) {
            cr_diag_add(f->d, CR_DIAG_ERROR, ref->loc, ref->ypath, NULL,
                        "model '%s' has no tensors for layer %lld (%s.%lld.*)", ref->text, l,
                        m->arch.layer_prefix, l);
            return;
        }
    }
    m->ok = true;
}

/* Index of the plan model for `ref`, creating it on first use; -1 when the
 * reference cannot be used (already reported). `outputs[k]` is stage k's
 * output view (NULL if that stage failed). */
static int get_model(fe *f, const cr_model_ref *ref, uint32_t cur_stage, fe_model **outputs)
{
    for (size_t i = 0; i < f->models.len; i++)
        if (!strcmp(pmodel(f, (int)i)->ref, ref->text)) return fmodel(f, (int)i)->ok ? (int)i : -1;
    int stage = -1;
    for (uint32_t k = 0; k < f->n_cfgs; k++) {
        if (!f->cfgs[k].name || strcmp(f->cfgs[k].name, ref->text)) continue;
        if (k >= cur_stage) {
            cr_diag_add(f->d, CR_DIAG_ERROR, ref->loc, ref->ypath,
                        "stages run in file order; move that document above this one",
                        "'%s' names a stage defined %s", ref->text,
                        k == cur_stage ? "by this document" : "later in the file");
            return -1;
        }
        stage = (int)k;
    }
    cr_plan_model pm = { .ref = cr_arena_strdup(f->ar, ref->text), .stage = stage };
    fe_model *m = fe_alloc(f, sizeof *m);
    if (!pm.ref || !m) return -1;
    if (!cr_vec_push(&f->models, &pm)) { f->oom = true; return -1; }
    if (!cr_vec_push(&f->fmodels, &m)) { f->oom = true; f->models.len--; return -1; }
    int idx = (int)f->models.len - 1;
    if (stage >= 0) {
        f->stage_used[stage] = true;
        if (outputs[stage]) *m = *outputs[stage];
        else cr_diag_add(f->d, CR_DIAG_NOTE, ref->loc, ref->ypath, NULL,
                         "stage '%s' has errors, so this stage is not checked further", ref->text);
    } else {
        model_from_file(f, idx, ref);
    }
    return m->ok ? idx : -1;
}

/* ---- parameters ------------------------------------------------------- */

static void warn_params(fe *f, const cr_params *ps, bool model_level)
{
    const cr_method_info *m = f->method;
    const char *names[64];
    size_t n_names = 0;
    for (uint32_t i = 0; i < m->n_params && n_names < 64; i++) names[n_names++] = m->params[i].name;
    for (uint32_t i = 0; ps && i < ps->n; i++) {
        const cr_param *p = &ps->items[i];
        const cr_param_decl *d = cr_method_param(m, p->name);
        if (!d) {
            const char *s = cr_suggest(p->name, names, n_names);
            const char *hint = s ? fe_printf(f, "did you mean '%s'?", s)
                                 : n_names ? NULL : fe_printf(f, "'%s' takes no parameters", m->name);
            cr_diag_add(f->d, CR_DIAG_WARNING, p->loc, p->path, hint,
                        "'%s' is not a parameter of merge method '%s'; it is ignored (as mergekit does)",
                        p->name, m->name);
        } else if (model_level && d->scope == CR_PARAM_GLOBAL) {
            cr_diag_add(f->d, CR_DIAG_WARNING, p->loc, p->path,
                        "move it to the slice or top-level parameters",
                        "'%s' is a global parameter of '%s'; mergekit never reads it at model level, so it is ignored",
                        p->name, m->name);
        }
    }
}

static void check_bool(fe *f, const cr_param_decl *d, double v, const cr_param *from)
{
    if (d->kind != CR_PARAM_BOOL || v == 0.0 || v == 1.0 || !from) return;
    if (!first_time(f, fe_printf(f, "bool|%p", (const void *)from))) return;
    cr_diag_add(f->d, CR_DIAG_ERROR, from->loc, from->path,
                "a gradient of booleans interpolates to fractions; give true/false per filter instead",
                "'%s' is a boolean but evaluates to %g", d->name, v);
}

static bool resolve_params(fe *f, const cr_params *const *levels, size_t n_levels,
                           cr_param_scope scope, const char *name, double t, bool waive_required,
                           const char *who, cr_src_loc loc, const char *ypath, cr_param_set *out)
{
    const cr_method_info *m = f->method;
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->n_params; i++) n += m->params[i].scope == scope;
    out->items = fe_alloc(f, n * sizeof *out->items);
    out->n = 0;
    if (!out->items) return false;
    bool ok = true;
    for (uint32_t i = 0; i < m->n_params; i++) {
        const cr_param_decl *d = &m->params[i];
        if (d->scope != scope) continue;
        cr_param_value *v = &out->items[out->n++];
        v->name = d->name;
        const cr_param *from = NULL;
        if (cr_params_lookup(levels, n_levels, d->name, name, t, &v->value, &from)) {
            v->present = true;
            check_bool(f, d, v->value, from);
        } else if (d->has_default) {
            v->value = d->dflt;
            v->present = true;
        } else if (d->required && !waive_required) {
            ok = false;
            if (first_time(f, fe_printf(f, "req|%u|%s|%s|%s", (unsigned)(f->st - (cr_plan_stage *)f->stages.data),
                                        d->name, who ? who : "", ypath ? ypath : "")))
                cr_diag_add(f->d, CR_DIAG_ERROR, loc, ypath,
                            scope == CR_PARAM_MODEL
                                ? fe_printf(f, "add `parameters: {%s: ...}` to this model, its slice or the top level", d->name)
                                : fe_printf(f, "add `%s:` under the top-level `parameters:`", d->name),
                            "missing required parameter '%s'%s%s (first needed for tensor %s)", d->name,
                            who ? " for model " : "", who ? who : "", name);
        }
    }
    return ok;
}

/* ---- tensors ------------------------------------------------------------ */

static const char *shape_str(fe *f, uint32_t ndim, const uint64_t *shape)
{
    char buf[160];
    size_t k = 0;
    buf[k++] = '[';
    for (uint32_t i = 0; i < ndim && k < sizeof buf - 24; i++)
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%llu", i ? ", " : "", (unsigned long long)shape[i]);
    snprintf(buf + k, sizeof buf - k, "]");
    return fe_printf(f, "%s", buf);
}

/* One output tensor: `in_names[i]` is source i's input name (NULL: the
 * model lacks it). */
static void add_tensor(fe *f, const fe_slice *sl, const char *out_name, int layer, double t,
                       const char *const *in_names)
{
    const cr_method_info *m = f->method;
    bool optional = cr_arch_is_tied_head(out_name);
    bool is_embed = cr_arch_is_embed(out_name);
    cr_plan_tensor pt = { .name = out_name, .layer = layer, .is_embed = is_embed,
                          .optional = optional, .loc = sl->loc };
    pt.sources = fe_alloc(f, sl->n * sizeof *pt.sources);
    if (!pt.sources) return;
    bool any_real = false;
    for (uint32_t i = 0; i < sl->n; i++) any_real |= in_names[i] != NULL;
    if (!any_real) return;   /* optional tensor nobody has */
    bool ok = true;
    for (uint32_t i = 0; i < sl->n; i++) {
        const fe_src *s = &sl->srcs[i];
        fe_model *fm = fmodel(f, s->model);
        const char *in = in_names[i];
        if (!in && optional && fm->arch.embed) {
            /* tied weights (§2.3), unless the model says they are not tied:
             * then its head is missing, and the embedding is not it */
            if (fm->untied) {
                ok = false;
                const char *shard = fm->file ? cr_model_unlisted_shard(fm->file, out_name) : NULL;
                if (tensor_error_slot(f))
                    cr_diag_add(f->d, CR_DIAG_ERROR, s->loc, s->ypath,
                                shard ? "add the tensor to the index's weight_map"
                                      : "set tie_word_embeddings: true in config.json if the model does tie them",
                                "model '%s' has no tensor '%s' and its config.json sets tie_word_embeddings: false, "
                                "so its token embedding cannot stand in for it%s%s%s%s%s%s%s",
                                pmodel(f, s->model)->ref, out_name,
                                shard ? " (" : "", shard ? pmodel(f, s->model)->path : "",
                                shard ? "/" : "",
                                shard && fm->file->index_name ? fm->file->index_name : "",
                                shard ? " does not list it, but shard '" : "",
                                shard ? shard : "", shard ? "' holds it)" : "");
                continue;
            }
            in = fm->arch.embed;
        }
        if (!in) {
            if (optional) continue;
            ok = false;
            if (tensor_error_slot(f))
                cr_diag_add(f->d, CR_DIAG_ERROR, s->loc, s->ypath, NULL,
                            "model '%s' has no tensor for output '%s'", pmodel(f, s->model)->ref, out_name);
            continue;
        }
        const fe_tensor *ti = fe_find(fm, in);
        if (!ti) {
            ok = false;
            if (tensor_error_slot(f))
                cr_diag_add(f->d, CR_DIAG_ERROR, s->loc, s->ypath, NULL,
                            "model '%s' has no tensor '%s'", pmodel(f, s->model)->ref, in);
            continue;
        }
        if (!cr_dtype_is_float(ti->dtype)) {
            /* The VM computes in floating point; an integer or boolean
             * tensor (U8, I64, BOOL ...) is refused here, by name, rather
             * than by the bytecode verifier or a conversion at run time. */
            ok = false;
            if (tensor_error_slot(f))
                cr_diag_add(f->d, CR_DIAG_ERROR, s->loc, s->ypath,
                            "crucible merges F32, F16, BF16, F64 and F8 (E4M3, E5M2) tensors",
                            "tensor '%s' of model '%s' is %s, which crucible cannot merge or copy",
                            in, pmodel(f, s->model)->ref, cr_dtype_name(ti->dtype));
            continue;
        }
        cr_plan_source *ps = &pt.sources[pt.n_sources++];
        ps->model = (uint32_t)s->model;
        ps->tensor = in;
        ps->is_base = s->model == sl->base;
        ps->dtype = ti->dtype;
        ps->ndim = ti->ndim;
        memcpy(ps->shape, ti->shape, sizeof ps->shape);
        const cr_params *levels[] = { s->params, sl->params, &f->cfg->module_params, &f->cfg->params };
        bool waive = ps->is_base && m->base != CR_BASE_UNUSED;
        resolve_params(f, levels, 4, CR_PARAM_MODEL, in, t, waive, pmodel(f, s->model)->ref, s->loc,
                       s->ypath, &ps->params);
    }
    const cr_params *glevels[] = { sl->params, &f->cfg->module_params, &f->cfg->params };
    resolve_params(f, glevels, 3, CR_PARAM_GLOBAL, out_name, t, false, NULL, f->cfg->method_loc,
                   "merge_method", &pt.params);
    /* Shapes agree, except embeddings (rectified to the common submatrix). */
    for (uint32_t i = 1; i < pt.n_sources && ok; i++) {
        const cr_plan_source *a = &pt.sources[0], *b = &pt.sources[i];
        if (a->dtype != b->dtype) f->mixed_dtypes = true;
        bool same = a->ndim == b->ndim && !memcmp(a->shape, b->shape, a->ndim * sizeof a->shape[0]);
        if (same || (is_embed && a->ndim == 2 && b->ndim == 2)) continue;
        ok = false;
        /* one error per pair of models: the rest of the tensors differ too */
        if (first_time(f, fe_printf(f, "shape|%u|%u|%u", (unsigned)(f->st - (cr_plan_stage *)f->stages.data),
                                    a->model, b->model)))
            cr_diag_add(f->d, CR_DIAG_ERROR, sl->loc, sl->ypath,
                        "models merged together must have the same architecture and size",
                        "shape mismatch for '%s': %s is %s in '%s' but %s in '%s'", out_name, a->tensor,
                        shape_str(f, a->ndim, a->shape), pmodel(f, a->model)->ref,
                        shape_str(f, b->ndim, b->shape), pmodel(f, b->model)->ref);
    }
    if (!cr_vec_push(&f->tensors, &pt)) f->oom = true;
}

/* ---- slices -------------------------------------------------------------- */

/* mergekit keys a tensor's inputs by model: a model listed twice keeps its
 * first position and takes the later entry's tensor (§2.3). */
static void dedupe(fe_slice *sl)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < sl->n; i++) {
        uint32_t j = 0;
        while (j < k && sl->srcs[j].model != sl->srcs[i].model) j++;
        if (j < k) {
            sl->srcs[j].a = sl->srcs[i].a;
            sl->srcs[j].b = sl->srcs[i].b;
        } else {
            sl->srcs[k++] = sl->srcs[i];
        }
    }
    sl->n = k;
}

static bool check_slice(fe *f, fe_slice *sl, bool from_models)
{
    const cr_method_info *m = f->method;
    bool ok = true;
    long long len0 = sl->srcs[0].b - sl->srcs[0].a;
    for (uint32_t i = 0; i < sl->n; i++) {
        fe_src *s = &sl->srcs[i];
        fe_model *fm = fmodel(f, s->model);
        if (s->b > fm->n_layers) {
            cr_diag_add(f->d, CR_DIAG_ERROR, s->loc, fe_printf(f, "%s.layer_range", s->ypath),
                        fe_printf(f, "'%s' has %lld layers: valid ranges lie within [0, %lld]",
                                  pmodel(f, s->model)->ref, fm->n_layers, fm->n_layers),
                        "layer_range [%lld, %lld] is outside the model", s->a, s->b);
            ok = false;
        }
        if (s->b - s->a != len0) {
            cr_diag_add(f->d, CR_DIAG_ERROR, s->loc, fe_printf(f, "%s.layer_range", s->ypath),
                        "all sources of a slice must have the same number of layers",
                        "this source has %lld layers but the slice's first source has %lld",
                        s->b - s->a, len0);
            ok = false;
        }
    }
    dedupe(sl);
    bool base_in = false;
    for (uint32_t i = 0; i < sl->n; i++) base_in |= sl->srcs[i].model == sl->base;
    if (m->base == CR_BASE_REQUIRED && sl->base < 0) {
        if (first_time(f, "nobase"))
            cr_diag_add(f->d, CR_DIAG_ERROR, f->cfg->method_loc, "base_model",
                        "add `base_model: NAME` (one of the models)",
                        "merge method '%s' requires a base_model", m->name);
        return false;
    }
    if (sl->base >= 0 && m->base != CR_BASE_UNUSED && !base_in) {
        cr_diag_add(f->d, CR_DIAG_ERROR, sl->loc, sl->ypath, "list the base model among this slice's sources",
                    "base_model '%s' is not among this slice's sources; '%s' needs the base tensor",
                    pmodel(f, sl->base)->ref, m->name);
        return false;
    }
    uint32_t others = sl->n - (base_in && m->base != CR_BASE_UNUSED ? 1 : 0);
    if ((int)others < m->min_inputs || (m->max_inputs >= 0 && (int)others > m->max_inputs)) {
        char want[64];
        if (m->min_inputs == m->max_inputs) snprintf(want, sizeof want, "exactly %d", m->min_inputs);
        else if (m->max_inputs < 0) snprintf(want, sizeof want, "at least %d", m->min_inputs);
        else snprintf(want, sizeof want, "%d to %d", m->min_inputs, m->max_inputs);
        const char *hint = NULL;
        if (from_models && m->base == CR_BASE_UNUSED && sl->base >= 0)
            hint = fe_printf(f, "mergekit appends base_model to the models list; '%s' does not use a base, so remove base_model", m->name);
        cr_diag_add(f->d, CR_DIAG_ERROR, sl->loc, sl->ypath, hint,
                    "merge method '%s' takes %s input model%s%s, but %s %u", m->name, want,
                    m->max_inputs == 1 && m->min_inputs == 1 ? "" : "s",
                    m->base != CR_BASE_UNUSED ? " besides the base" : "",
                    from_models ? "the recipe gives" : "this slice has", others);
        ok = false;
    }
    return ok;
}

static void plan_layers(fe *f, const fe_slice *sl, const char *out_prefix, long long out_start)
{
    long long L = sl->srcs[0].b - sl->srcs[0].a;
    const char **in = fe_alloc(f, sl->n * sizeof *in);
    if (!in) return;
    fe_model *ref = fmodel(f, sl->srcs[0].model);
    for (long long j = 0; j < L && !f->oom; j++) {
        const cr_arch_layer *lay = &ref->arch.layers[sl->srcs[0].a + j];
        double t = cr_layer_position(j, L);
        for (uint32_t r = 0; r < lay->n_rests; r++) {
            const char *rest = lay->rests[r];
            for (uint32_t i = 0; i < sl->n; i++) {
                fe_model *fm = fmodel(f, sl->srcs[i].model);
                const char *name = fe_printf(f, "%s.%lld.%s", fm->arch.layer_prefix, sl->srcs[i].a + j, rest);
                in[i] = fe_find(fm, name) ? name : NULL;
            }
            add_tensor(f, sl, fe_printf(f, "%s.%lld.%s", out_prefix, out_start + j, rest),
                       (int)(out_start + j), t, in);
        }
    }
}

/* Pre or post weights: the union of the slice's models' pre (post) names,
 * in name order; the input name is the output name for every source. */
static void plan_edge(fe *f, const fe_slice *sl, bool pre)
{
    const char **in = fe_alloc(f, sl->n * sizeof *in);
    if (!in) return;
    cr_vec names;
    cr_vec_init(&names, f->alloc, sizeof(char *));
    for (uint32_t i = 0; i < sl->n; i++) {
        fe_model *fm = fmodel(f, sl->srcs[i].model);
        const char **list = pre ? fm->arch.pre : fm->arch.post;
        uint32_t n = pre ? fm->arch.n_pre : fm->arch.n_post;
        for (uint32_t k = 0; k < n; k++) {
            bool dup = false;
            for (size_t q = 0; q < names.len && !dup; q++) dup = !strcmp(CR_VEC_AT(&names, const char *, q), list[k]);
            if (!dup && !cr_vec_push(&names, &list[k])) f->oom = true;
        }
    }
    for (size_t q = 0; q < names.len && !f->oom; q++) {
        const char *name = CR_VEC_AT(&names, const char *, q);
        for (uint32_t i = 0; i < sl->n; i++)
            in[i] = fe_find(fmodel(f, sl->srcs[i].model), name) ? name : NULL;
        add_tensor(f, sl, name, -1, 0.0, in);
    }
    cr_vec_free(&names);
}

/* §7.3: sort by the byte-wise largest input name, ties in planning order. */
typedef struct sort_item {
    const char *key;
    size_t order;
    cr_plan_tensor t;
} sort_item;

static int cmp_sort_item(const void *a, const void *b)
{
    const sort_item *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c) return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void finish_tensors(fe *f)
{
    size_t n = f->tensors.len;
    sort_item *items = cr_calloc(f->alloc, n ? n : 1, sizeof *items);
    f->st->tensors = fe_alloc(f, n * sizeof *f->st->tensors);
    if (!items || !f->st->tensors) { cr_free(f->alloc, items); f->oom = true; return; }
    for (size_t i = 0; i < n; i++) {
        cr_plan_tensor *t = &CR_VEC_AT(&f->tensors, cr_plan_tensor, i);
        items[i].t = *t;
        items[i].order = i;
        items[i].key = t->n_sources ? t->sources[0].tensor : t->name;
        for (uint32_t k = 1; k < t->n_sources; k++)
            if (strcmp(t->sources[k].tensor, items[i].key) > 0) items[i].key = t->sources[k].tensor;
    }
    qsort(items, n, sizeof *items, cmp_sort_item);
    for (size_t i = 0; i < n; i++) f->st->tensors[i] = items[i].t;
    f->st->n_tensors = (uint32_t)n;
    cr_free(f->alloc, items);
}

/* The stage's outputs as a model a later stage can reference. */
static fe_model *stage_output_model(fe *f, long long n_layers, const char *arch_name)
{
    fe_model *m = fe_alloc(f, sizeof *m);
    if (!m) return NULL;
    const cr_plan_stage *st = f->st;
    m->n = st->n_tensors;
    m->tensors = fe_alloc(f, m->n * sizeof *m->tensors);
    if (!m->tensors) return NULL;
    for (uint32_t i = 0; i < st->n_tensors; i++) {
        const cr_plan_tensor *t = &st->tensors[i];
        fe_tensor *o = &m->tensors[i];
        o->name = t->name;
        const cr_plan_source *ref = &t->sources[0];
        for (uint32_t k = 0; k < t->n_sources; k++)
            if (t->sources[k].is_base) ref = &t->sources[k];
        o->ndim = ref->ndim;
        memcpy(o->shape, ref->shape, sizeof o->shape);
        bool all2d = true;
        for (uint32_t k = 0; k < t->n_sources; k++) all2d &= t->sources[k].ndim == 2;
        if (t->is_embed && all2d && st->vocab_rows)     /* permuted by the stage's tokenizer merge */
            o->shape[0] = st->vocab_rows;
        else if (t->is_embed && ref->ndim == 2)   /* rectified: the common submatrix */
            for (uint32_t k = 0; k < t->n_sources; k++)
                for (int d = 0; d < 2; d++)
                    if (t->sources[k].shape[d] < o->shape[d]) o->shape[d] = t->sources[k].shape[d];
        o->dtype = st->out_dtype != CR_DTYPE_NONE ? st->out_dtype
                 : st->dtype != CR_DTYPE_NONE ? st->dtype : ref->dtype;
    }
    qsort(m->tensors, m->n, sizeof *m->tensors, cmp_fe_tensor);
    if (!analyse(f, m)) return NULL;
    m->n_layers = n_layers;
    m->layers_key = st->num_layers_key;
    m->arch_name = arch_name;
    m->ok = m->arch.n_layers == n_layers;
    return m;
}

/* ---- one stage ------------------------------------------------------------ */

/* A stage that a later stage reads and that merges tokenizers: the rows
 * of its vocabulary tensors, the merged vocabulary's (padded) size, which
 * the later stage sees (compiler/tokstage.c decides the tokenizers of the
 * stages so far, as mergekit-multi leaves them in their directories). */
static void stage_vocab(fe *f, uint32_t s)
{
    cr_plan view = { .models = f->models.data, .n_models = (uint32_t)f->models.len,
                     .stages = f->stages.data, .n_stages = s + 1, .copy_tokenizer = f->opt->copy_tokenizer };
    cr_tokstage *ts = NULL;
    cr_error err = { 0 };
    /* the front end does not know --mergekit-version: 0.1.5's vocabulary
     * (0.1.4 refuses a tokenizer merge before the last stage when the
     * graph is built, compiler/tokstage.c) */
    if (cr_tokstages_build(f->alloc, &view, s + 1, f->opt->copy_tokenizer, CR_MK_0_1_5, &ts, &err)) {
        if (err.status == CR_ERR_NOMEM) f->oom = true;
        else cr_diag_add(f->d, CR_DIAG_ERROR, f->cfg->loc, NULL, NULL, "stage '%s': %s", f->st->name, err.msg);
        return;
    }
    const cr_tokmerge *tm = ts[s].tm;
    f->st->vocab_rows = tm && !tm->identity ? tm->n_pad : 0;
    cr_tokstages_free(f->alloc, ts, s + 1);
}

static void plan_stage(fe *f, uint32_t s, fe_model **outputs)
{
    const cr_config *cfg = &f->cfgs[s];
    f->cfg = cfg;
    f->st = &CR_VEC_AT(&f->stages, cr_plan_stage, s);
    f->tensor_errors = 0;
    f->mixed_dtypes = false;
    cr_vec_init(&f->tensors, f->alloc, sizeof(cr_plan_tensor));
    cr_plan_stage *st = f->st;
    int errors_before = f->d->n_errors;
    st->name = cfg->name ? cfg->name : "merge";
    st->method_loc = cfg->method_loc;
    st->base_model = -1;
    st->dtype = cfg->dtype;
    st->out_dtype = cfg->out_dtype;
    st->donor_model = -1;
    st->num_layers_out = -1;
    st->recipe_text = cfg->text;
    st->chat_template = cfg->chat_template;
    st->tokenizer_source = cfg->tokenizer_source;
    st->tokenizer_pad = cfg->tokenizer_pad;
    /* a model source may be none of the inputs (mergekit loads its
     * tokenizer all the same): found now, read by compiler/tokmerge.c */
    if (cfg->tokenizer_source && strcmp(cfg->tokenizer_source, "base") && strcmp(cfg->tokenizer_source, "union")) {
        cr_model_ref tr;
        const char *why = NULL;
        if (cr_model_ref_parse(f->ar, cfg->tokenizer_source, &tr, &why))
            st->tokenizer_source_dir = cr_resolve_model_at(&f->env, f->ar, tr.path, tr.revision, NULL,
                                                            &st->tokenizer_source_tried);
    }
    st->tokens = cfg->tokens;
    st->n_tokens = cfg->n_tokens;

    /* Method. */
    if (cfg->merge_method) {
        cr_error err = { 0 };
        f->method = cr_methods_find(f->reg, cfg->merge_method, f->env.recipe_dir, &err);
        if (!f->method) {
            const char *const *names;
            size_t n = cr_methods_builtin_names(f->reg, &names);
            const char *sug = cr_suggest(cfg->merge_method, names, n);
            cr_diag_add(f->d, CR_DIAG_ERROR, cfg->method_loc, "merge_method",
                        sug ? fe_printf(f, "did you mean '%s'?", sug) : NULL, "%s", err.msg);
        }
    } else {
        f->method = NULL;
    }
    st->method = f->method;

#define GET(ref) get_model(f, (ref), s, outputs)
    int base = -1;
    if (cfg->has_base) base = GET(&cfg->base);
    st->base_model = base;

    fe_slice *slices = NULL;
    uint32_t n_slices = 0;
    bool ok = true;
    if (cfg->form == CR_CONFIG_MODELS && cfg->n_models) {
        n_slices = 1;
        slices = fe_alloc(f, sizeof *slices);
        if (!slices) return;
        fe_slice *sl = &slices[0];
        sl->srcs = fe_alloc(f, (cfg->n_models + 1) * sizeof *sl->srcs);
        if (!sl->srcs) return;
        sl->base = base;
        sl->loc = cfg->models_loc;
        sl->ypath = strncmp(cfg->models[0].ypath, "modules", 7) ? "models" : "modules.default.models";
        bool base_listed = false;
        for (uint32_t i = 0; i < cfg->n_models; i++) {
            const cr_source *src = &cfg->models[i];
            int mi = GET(&src->model);
            if (mi < 0) { ok = false; continue; }
            base_listed |= mi == base;
            sl->srcs[sl->n++] = (fe_src){ mi, 0, fmodel(f, mi)->n_layers, &src->params, src->loc, src->ypath };
        }
        if (base >= 0 && !base_listed)   /* §5.3: the base joins as an extra source */
            sl->srcs[sl->n++] = (fe_src){ base, 0, fmodel(f, base)->n_layers, NULL, cfg->base.loc, "base_model" };
    } else if (cfg->form == CR_CONFIG_SLICES && cfg->n_slices) {
        n_slices = cfg->n_slices;
        slices = fe_alloc(f, n_slices * sizeof *slices);
        if (!slices) return;
        for (uint32_t k = 0; k < n_slices; k++) {
            const cr_slice *cs = &cfg->slices[k];
            fe_slice *sl = &slices[k];
            sl->index = k;
            sl->loc = cs->loc;
            sl->ypath = cs->ypath;
            sl->params = &cs->params;
            sl->base = base;
            if (cs->has_base) { sl->base = GET(&cs->base); if (sl->base < 0) ok = false; }
            sl->srcs = fe_alloc(f, (cs->n_sources ? cs->n_sources : 1) * sizeof *sl->srcs);
            if (!sl->srcs) return;
            for (uint32_t i = 0; i < cs->n_sources; i++) {
                const cr_source *src = &cs->sources[i];
                int mi = GET(&src->model);
                if (mi < 0) { ok = false; continue; }
                sl->srcs[sl->n++] = (fe_src){ mi, src->range[0], src->range[1], &src->params, src->loc, src->ypath };
            }
        }
    } else {
        return;   /* config errors already reported */
    }
#undef GET
    if (!f->method || !ok || f->oom) return;
    /* mergekit's referenced_models() in recipe order: the base, then every
     * source as first named (a tokenizer merge's model order) */
    uint32_t *mods = fe_alloc(f, (f->models.len + 1) * sizeof *mods);
    if (!mods) return;
    if (base >= 0) mods[st->n_models++] = (uint32_t)base;
    for (uint32_t k = 0; k < n_slices; k++)
        for (uint32_t i = 0; i < slices[k].n; i++) {
            bool seen = false;
            for (uint32_t j = 0; j < st->n_models && !seen; j++) seen = mods[j] == (uint32_t)slices[k].srcs[i].model;
            if (!seen) mods[st->n_models++] = (uint32_t)slices[k].srcs[i].model;
        }
    st->models = mods;
    for (uint32_t k = 0; k < n_slices; k++) {
        if (slices[k].n == 0) return;
        ok &= check_slice(f, &slices[k], cfg->form == CR_CONFIG_MODELS);
    }
    if (!ok) return;

    /* Parameter names, once per level. */
    warn_params(f, &cfg->params, false);
    warn_params(f, &cfg->module_params, false);
    if (cfg->form == CR_CONFIG_MODELS)
        for (uint32_t i = 0; i < cfg->n_models; i++) warn_params(f, &cfg->models[i].params, true);
    for (uint32_t k = 0; k < cfg->n_slices; k++) {
        warn_params(f, &cfg->slices[k].params, false);
        for (uint32_t i = 0; i < cfg->slices[k].n_sources; i++)
            warn_params(f, &cfg->slices[k].sources[i].params, true);
    }

    /* Architecture agreement. */
    int donor = base >= 0 ? base : slices[0].srcs[0].model;
    st->donor_model = donor;
    fe_model *dm = fmodel(f, donor);
    for (uint32_t k = 0; k < n_slices && !f->opt->allow_crimes; k++) {
        for (uint32_t i = 0; i < slices[k].n; i++) {
            fe_model *fm = fmodel(f, slices[k].srcs[i].model);
            bool differ = (fm->arch_name && dm->arch_name && strcmp(fm->arch_name, dm->arch_name)) ||
                          (fm->arch.layer_prefix && dm->arch.layer_prefix &&
                           strcmp(fm->arch.layer_prefix, dm->arch.layer_prefix));
            if (differ && first_time(f, fe_printf(f, "crime|%u|%d", s, slices[k].srcs[i].model))) {
                cr_diag_add(f->d, CR_DIAG_ERROR, slices[k].srcs[i].loc, slices[k].srcs[i].ypath,
                            "pass --allow-crimes to merge different architectures anyway",
                            "model '%s' (%s) has a different architecture from '%s' (%s)",
                            pmodel(f, slices[k].srcs[i].model)->ref,
                            fm->arch_name ? fm->arch_name : fm->arch.layer_prefix,
                            pmodel(f, donor)->ref, dm->arch_name ? dm->arch_name : dm->arch.layer_prefix);
                ok = false;
            }
        }
    }
    if (!ok) return;
    st->num_layers_key = dm->layers_key;
    const char *out_prefix = dm->arch.layer_prefix ? dm->arch.layer_prefix
                                                   : fmodel(f, slices[0].srcs[0].model)->arch.layer_prefix;

    /* Pre weights from the first slice. */
    plan_edge(f, &slices[0], true);
    long long out_layers = 0;
    for (uint32_t k = 0; k < n_slices && !f->oom; k++) {
        plan_layers(f, &slices[k], out_prefix ? out_prefix : "layers", out_layers);
        out_layers += slices[k].srcs[0].b - slices[k].srcs[0].a;
    }
    /* Post weights from the last slice, with mergekit's pairing quirk: only
     * as many of its sources as the first slice has (§5.4). */
    fe_slice last = slices[n_slices - 1];
    if (last.n > slices[0].n) last.n = slices[0].n;
    plan_edge(f, &last, false);
    if (cfg->form == CR_CONFIG_SLICES) st->num_layers_out = out_layers;
    if (f->mixed_dtypes && cfg->dtype == CR_DTYPE_NONE)
        cr_diag_add(f->d, CR_DIAG_WARNING, cfg->loc, NULL, "set `dtype:` to choose the compute dtype",
                    "input models store tensors in different dtypes; without `dtype` they are promoted as torch does");
    if (f->tensor_errors > MAX_TENSOR_ERRORS)
        cr_diag_add(f->d, CR_DIAG_NOTE, cfg->loc, NULL, NULL, "%d more tensor errors not shown",
                    f->tensor_errors - MAX_TENSOR_ERRORS);
    finish_tensors(f);
    if (f->oom || f->d->n_errors > errors_before) return;
    if (s + 1 < f->n_cfgs && st->tokenizer_source) stage_vocab(f, s);
    if (f->d->n_errors > errors_before) return;
    outputs[s] = stage_output_model(f, cfg->form == CR_CONFIG_SLICES ? out_layers : dm->n_layers,
                                    dm->arch_name);
}

/* ---- the whole recipe ------------------------------------------------------ */

/* Move what was built into the plan (so cr_plan_free can close models even
 * after an error). */
static void publish(fe *f, cr_plan *out)
{
    size_t nm = f->models.len, ns = f->stages.len;
    cr_plan_model *models = nm ? cr_arena_alloc(f->ar, nm * sizeof *models) : NULL;
    cr_plan_stage *stages = ns ? cr_arena_alloc(f->ar, ns * sizeof *stages) : NULL;
    if ((nm && !models) || (ns && !stages)) {
        f->oom = true;
        for (size_t i = 0; i < nm; i++) {
            if (pmodel(f, (int)i)->opened) cr_model_close(&pmodel(f, (int)i)->model);
            if (pmodel(f, (int)i)->lora) {
                cr_lora_close(pmodel(f, (int)i)->lora);
                cr_free(f->alloc, pmodel(f, (int)i)->lora);
            }
        }
        nm = ns = 0;
    } else {
        if (nm) memcpy(models, f->models.data, nm * sizeof *models);
        if (ns) memcpy(stages, f->stages.data, ns * sizeof *stages);
    }
    out->models = models;
    out->n_models = (uint32_t)nm;
    out->stages = stages;
    out->n_stages = (uint32_t)ns;
    out->copy_tokenizer = f->opt->copy_tokenizer;
}

static cr_status run(fe *f, const cr_ytree *tree, cr_plan *out, cr_error *err)
{
    /* Documents with content are the stages. */
    uint32_t n_docs = 0;
    for (uint32_t i = 0; i < tree->n_docs; i++) n_docs += !cr_ynode_is_null(tree->docs[i].root);
    if (n_docs == 0) {
        cr_diag_add(f->d, CR_DIAG_ERROR, (cr_src_loc){ tree->file, 1, 1 }, NULL,
                    "a recipe needs at least merge_method and models", "the recipe is empty");
        return CR_ERR_CONFIG;
    }
    f->cfgs = fe_alloc(f, n_docs * sizeof *f->cfgs);
    f->stage_used = fe_alloc(f, n_docs * sizeof *f->stage_used);
    fe_model **outputs = fe_alloc(f, n_docs * sizeof *outputs);
    if (!f->cfgs || !f->stage_used || !outputs) return CR_ERR_NOMEM;
    bool parse_failed = false, unsupported = false;
    for (uint32_t i = 0; i < tree->n_docs; i++) {
        if (cr_ynode_is_null(tree->docs[i].root)) continue;
        cr_config *c = &f->cfgs[f->n_cfgs++];
        cr_status st = cr_config_parse(f->ar, tree, i, c, f->d);
        if (st == CR_ERR_NOMEM) return cr_fail(err, st, "out of memory");
        parse_failed |= st != CR_OK;
        unsupported |= c->unsupported;
    }
    /* Stage names: every document but the last needs one, all distinct. */
    for (uint32_t i = 0; i < f->n_cfgs && f->n_cfgs > 1; i++) {
        const cr_config *c = &f->cfgs[i];
        if (!c->name && i + 1 < f->n_cfgs) {
            cr_diag_add(f->d, CR_DIAG_ERROR, c->loc, NULL,
                        "later documents refer to an earlier stage's output by its name",
                        "in a multi-document recipe every document but the last needs `name:`");
            parse_failed = true;
        }
        for (uint32_t k = 0; k < i && c->name; k++) {
            if (f->cfgs[k].name && !strcmp(f->cfgs[k].name, c->name)) {
                cr_diag_add(f->d, CR_DIAG_ERROR, c->name_loc, "name", NULL,
                            "stage name '%s' is already used at line %d", c->name, f->cfgs[k].name_loc.line);
                parse_failed = true;
            }
        }
    }
    if (parse_failed) return unsupported ? CR_ERR_UNSUPPORTED : CR_ERR_CONFIG;

    for (uint32_t s = 0; s < f->n_cfgs; s++) {
        cr_plan_stage blank = { 0 };
        if (!cr_vec_push(&f->stages, &blank)) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    }
    for (uint32_t s = 0; s < f->n_cfgs && !f->oom; s++) {
        plan_stage(f, s, outputs);
        cr_vec_free(&f->tensors);
    }
    for (uint32_t s = 0; s + 1 < f->n_cfgs; s++)
        if (!f->stage_used[s])
            cr_diag_add(f->d, CR_DIAG_WARNING, f->cfgs[s].name_loc, "name", NULL,
                        "stage '%s' is never used by a later stage", f->cfgs[s].name);
    (void)out;
    if (f->oom) return cr_fail(err, CR_ERR_NOMEM, "out of memory planning %s", tree->file);
    if (f->d->n_errors) return CR_ERR_CONFIG;
    return CR_OK;
}

cr_status cr_frontend_yaml_text(const cr_allocator *alloc, const char *name, const char *text,
                                size_t len, const cr_frontend_options *opt, cr_plan *out,
                                cr_diags *diags, cr_error *err)
{
    static const cr_frontend_options defaults = { 0 };
    if (!opt) opt = &defaults;
    memset(out, 0, sizeof *out);
    cr_arena_init(&out->arena, alloc);
    int errors_before = diags->n_errors;
    cr_ytree tree;
    /* The tree lives in the plan's arena: stage names, document texts and
     * file names in diagnostics locations stay valid as long as the plan. */
    cr_status st = cr_ytree_parse_in(&out->arena, name, text, len, &tree, diags, err);
    out->recipe_path = tree.file;
    out->recipe_text = tree.text;
    if (st) return st;
    fe f = { .alloc = alloc, .ar = &out->arena, .d = diags, .opt = opt, .reg = opt->methods };
    cr_vec_init(&f.models, alloc, sizeof(cr_plan_model));
    cr_vec_init(&f.fmodels, alloc, sizeof(fe_model *));
    cr_vec_init(&f.stages, alloc, sizeof(cr_plan_stage));
    cr_vec_init(&f.once, alloc, sizeof(char *));
    cr_vec_init(&f.tensors, alloc, sizeof(cr_plan_tensor));
    cr_resolve_env_init(&f.env, &out->arena, name, opt->models_dir, !opt->no_env);
    if (!f.reg) st = cr_methods_open(alloc, NULL, &f.reg, err);
    if (st == CR_OK) {
        st = run(&f, &tree, out, err);
    }
    if (!opt->methods) out->owned_methods = f.reg;   /* plan infos point into it */
    publish(&f, out);
    cr_vec_free(&f.models);
    cr_vec_free(&f.fmodels);
    cr_vec_free(&f.stages);
    cr_vec_free(&f.once);
    cr_vec_free(&f.tensors);
    if (f.oom && st == CR_OK) st = cr_fail(err, CR_ERR_NOMEM, "out of memory");
    if (st == CR_ERR_CONFIG || st == CR_ERR_UNSUPPORTED || (st == CR_OK && diags->n_errors > errors_before)) {
        bool unsup = false;
        for (uint32_t i = 0; i < f.n_cfgs; i++) unsup |= f.cfgs[i].unsupported;
        st = unsup ? CR_ERR_UNSUPPORTED : CR_ERR_CONFIG;
        cr_fail(err, st, "%s: %d error%s in the recipe", name, diags->n_errors - errors_before,
                diags->n_errors - errors_before == 1 ? "" : "s");
    }
    return st;
}

cr_status cr_frontend_yaml(const cr_allocator *alloc, const char *recipe_path,
                           const cr_frontend_options *opt, cr_plan *out, cr_diags *diags,
                           cr_error *err)
{
    memset(out, 0, sizeof *out);
    cr_arena_init(&out->arena, alloc);
    char *buf;
    size_t len;
    cr_status st = cr_file_read(alloc, recipe_path, CR_LIMIT_RECIPE_BYTES, "recipe", &buf, &len, err);
    if (st == CR_OK)
        st = cr_frontend_yaml_text(alloc, recipe_path, buf, len, opt, out, diags, err);
    cr_free(alloc, buf);
    return st;
}
