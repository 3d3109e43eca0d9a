/* build_graph.c — a cr_plan becomes a graph: one merge() call per output
 * tensor of every stage, on symbolic inputs.
 *
 * Owns the per-tensor glue of merge-methods.md §1: the 2-D view of every
 * input, embeddings whose vocabulary sizes differ (mergekit 0.1.4: the
 * common submatrix; 0.1.5: an error, or the common first rows under
 * --unsafe-truncate-embeddings), the load-time cast to the recipe's
 * `dtype` (0.1.5 without one: to the group's promoted dtype), the save-time
 * cast to `out_dtype`, wiring a later stage's inputs to an earlier
 * stage's result (read back through a scratch tensor), and reading a
 * `model+adapter` tensor as PEFT's merge_and_unload leaves it
 * (model_input: W + s·(B·A) as graph ops, spec/lora.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build_graph.h"
#include "lua_api.h"
#include "tokgraph.h"
#include "tokstage.h"

/* rows x cols of a tensor viewed as dim0 x (the rest); 1-D is one row */
static void view_2d(uint32_t ndim, const uint64_t *shape, uint64_t *rows, uint64_t *cols)
{
    uint64_t numel = 1;
    for (uint32_t i = 0; i < ndim; i++) numel *= shape[i];
    if (ndim >= 2) { *rows = shape[0]; *cols = shape[0] ? numel / shape[0] : 0; }
    else { *rows = 1; *cols = numel; }
}

static void shape_str(char *buf, size_t n, uint32_t ndim, const uint64_t *shape)
{
    size_t at = (size_t)snprintf(buf, n, "[");
    for (uint32_t i = 0; i < ndim && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%llu", i ? ", " : "", (unsigned long long)shape[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

typedef struct stage_out { const char *name; uint32_t node; cr_dtype dtype; uint64_t rows, cols; } stage_out;

/* Lookups that would otherwise scan per tensor (quadratic in tensors): the
 * complete size of every shard, computed once, and each earlier stage's
 * outputs sorted by name (a stage may read any earlier stage, not only the
 * one before it: mergekit-multi's stages form a DAG). */
typedef struct build_ctx {
    uint64_t **shard_size;      /* [model][shard], UINT64_MAX until computed */
    stage_out **outs;           /* [stage]: its outputs, sorted by name */
    uint32_t *n_outs;
    const cr_tokmerge *tm;      /* the current stage's tokenizer merge (NULL: none, or the identity) */
} build_ctx;

static int stage_out_cmp(const void *a, const void *b)
{
    return strcmp(((const stage_out *)a)->name, ((const stage_out *)b)->name);
}

static const stage_out *find_prev(const build_ctx *c, int stage, const char *name)
{
    stage_out key = { .name = name };
    return stage >= 0 && c->n_outs[stage] ? bsearch(&key, c->outs[stage], c->n_outs[stage], sizeof key, stage_out_cmp)
                                          : NULL;
}

static uint64_t shard_size(build_ctx *c, const cr_plan_model *pm, uint32_t model, uint32_t shard)
{
    uint64_t *s = &c->shard_size[model][shard];
    if (*s == UINT64_MAX) *s = cr_st_expected_size(&pm->model.shards[shard]);   /* plan may open truncated files */
    return *s;
}

/* The graph input that reads tensor `ti` of file `f` of model `pm` (the
 * adapter's file when `lora`), viewed rows x cols. */
static cr_graph_input file_tensor(build_ctx *bc, const cr_plan_model *pm, uint32_t model, const cr_st_file *f,
                                  uint32_t shard, bool lora, const cr_st_tensor *ti, uint64_t rows, uint64_t cols)
{
    cr_graph_input gi = { .model = model, .tensor = ti->name, .dtype = ti->dtype, .rows = rows, .cols = cols };
    view_2d(ti->ndim, ti->shape, &gi.src_rows, &gi.src_cols);
    gi.path = f->path;
    gi.model_ref = lora ? pm->lora_ref : pm->ref;
    gi.model_lookup = lora ? pm->lora_lookup : pm->lookup;
    gi.model_rev = lora ? pm->lora_revision : pm->revision;
    gi.model_dir = lora ? pm->lora_dir : pm->path;
    gi.file_size = lora ? cr_st_expected_size(f) : shard_size(bc, pm, model, shard);
    gi.offset = f->data_start + ti->begin;
    gi.nbytes = ti->end - ti->begin;
    return gi;
}

/* The graph input that reads an earlier stage's output `s->tensor`,
 * viewed rows x cols. */
static cr_status stage_tensor(const cr_plan *plan, const build_ctx *bc, const cr_plan_tensor *t,
                              const cr_plan_source *s, uint64_t rows, uint64_t cols, cr_graph_input *out,
                              cr_error *err)
{
    const stage_out *p = find_prev(bc, plan->models[s->model].stage, s->tensor);
    if (!p)
        return cr_fail(err, CR_ERR_CONFIG, "%s: stage '%s' produces no tensor %s", t->name,
                       plan->stages[plan->models[s->model].stage].name, s->tensor);
    *out = (cr_graph_input){ .model = s->model, .tensor = s->tensor, .rows = rows, .cols = cols, .scratch = true,
                             .src_node = p->node, .dtype = p->dtype, .src_rows = p->rows, .src_cols = p->cols };
    return CR_OK;
}

/* An INPUT node of `gi` in domain d; CR_NO_NODE on failure. */
static uint32_t input_node(cr_graph *g, const cr_graph_input *gi, uint32_t d)
{
    uint32_t ii = cr_graph_add_input(g, gi);
    if (ii == UINT32_MAX) return CR_NO_NODE;
    cr_node n = { .op = CR_GOP_INPUT, .dtype = (uint8_t)gi->dtype, .rdt = (uint8_t)gi->dtype,
                  .kind = CR_VK_TENSOR, .domain = d, .attr = ii };
    return cr_graph_add(g, &n);
}

/* A file input node of tensor `ti` in file `f` of model `pm` (the
 * adapter's file when `lora`), viewed rows x cols; CR_NO_NODE on failure. */
static uint32_t file_input(cr_graph *g, build_ctx *bc, const cr_plan_model *pm, uint32_t model, const cr_st_file *f,
                           uint32_t shard, bool lora, const cr_st_tensor *ti, uint64_t rows, uint64_t cols, uint32_t d)
{
    cr_graph_input gi = file_tensor(bc, pm, model, f, shard, lora, ti, rows, cols);
    return input_node(g, &gi, d);
}

static uint32_t add1(cr_graph *g, cr_gop op, cr_dtype dt, uint32_t d, uint32_t a, uint32_t b, int n_in)
{
    if (a == CR_NO_NODE || (n_in > 1 && b == CR_NO_NODE)) return CR_NO_NODE;
    cr_node n = { .op = (uint16_t)op, .dtype = (uint8_t)dt, .rdt = (uint8_t)dt, .kind = CR_VK_TENSOR, .domain = d,
                  .n_in = (uint8_t)n_in, .in = { a, b } };
    return cr_graph_add(g, &n);
}

/* Tensor `tensor` of model `pm` as mergekit reads it after merging the
 * model's LoRA with PEFT (spec/lora.md): the adapter's own tensor where it
 * replaces the weight (cast to the weight's dtype, as loading it into the
 * model does), then W + scale * (B A), the product in float32 (LOWRANK),
 * times the scale as a float32 scalar, added in float32 and rounded once to
 * W's dtype (a Linear), or rounded to W's dtype before the add (an
 * Embedding); every floating tensor cast to --lora-merge-dtype first when
 * given. Without a LoRA: the plain input. CR_NO_NODE on failure. */
static uint32_t model_input(cr_graph *g, build_ctx *bc, const cr_plan_model *pm, uint32_t model,
                            const char *tensor, uint64_t rows, uint64_t cols, uint32_t d, const char **why)
{
    const cr_model_tensor *mt = cr_model_find(&pm->model, tensor);
    if (!mt) { *why = "no such tensor"; return CR_NO_NODE; }
    const cr_lora *l = pm->lora;
    const cr_lora_replace *rep = l ? cr_lora_find_replace(l, tensor) : NULL;
    uint32_t w = rep ? file_input(g, bc, pm, model, &l->st, 0, true, cr_st_find(&l->st, rep->src), rows, cols, d)
                     : file_input(g, bc, pm, model, &pm->model.shards[mt->shard], mt->shard, false, mt->info, rows,
                                  cols, d);
    cr_dtype wdt = mt->info->dtype;
    if (l && cr_dtype_is_float(wdt) && pm->lora_dtype != CR_DTYPE_NONE) wdt = pm->lora_dtype;
    if (w != CR_NO_NODE && g->nodes[w].dtype != wdt) w = add1(g, CR_GOP_MOV, wdt, d, w, 0, 1);
    const cr_lora_target *t = l ? cr_lora_find_target(l, tensor) : NULL;
    if (!t || w == CR_NO_NODE) return w;
    const cr_st_tensor *ta = cr_st_find(&l->st, t->a), *tb = cr_st_find(&l->st, t->b);
    uint32_t a = file_input(g, bc, pm, model, &l->st, 0, true, ta, ta->shape[0], ta->shape[1], d);
    uint32_t b = file_input(g, bc, pm, model, &l->st, 0, true, tb, tb->shape[0], tb->shape[1], d);
    bool tr = t->embedding || pm->lora_conv1d;
    if (a == CR_NO_NODE || b == CR_NO_NODE) return CR_NO_NODE;
    cr_node lr = { .op = CR_GOP_LORA, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32, .kind = CR_VK_TENSOR,
                   .domain = d, .n_in = 2, .in = { a, b }, .attr = tr };
    uint32_t ba = cr_graph_add(g, &lr);
    /* torch multiplies a float32 tensor by a Python float as a float32 scalar */
    cr_node sc = { .op = CR_GOP_CONST, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32, .kind = CR_VK_SCALAR,
                   .domain = CR_NO_DOMAIN, .value = (double)(float)t->scale, .flags = CR_NODEF_WEAK };
    uint32_t s = cr_graph_add(g, &sc);
    uint32_t delta = s == CR_NO_NODE ? CR_NO_NODE : add1(g, CR_GOP_MUL, CR_DTYPE_F32, d, ba, s, 2);
    if (t->embedding && delta != CR_NO_NODE) delta = add1(g, CR_GOP_MOV, wdt, d, delta, 0, 1);
    return delta == CR_NO_NODE ? CR_NO_NODE : add1(g, CR_GOP_ADD, wdt, d, w, delta, 2);
}

/* The whole stored tensor behind input `s` of a vocabulary tensor under a
 * tokenizer merge: the row gather (compiler/tokgraph.c) reads it as it is
 * stored, so the view is its own shape. A LoRA's delta is not permuted:
 * such an input is refused. */
static cr_status perm_source(const cr_plan *plan, build_ctx *bc, const cr_plan_tensor *t, const cr_plan_source *s,
                             cr_graph_input *out, cr_error *err)
{
    const cr_plan_model *pm = &plan->models[s->model];
    if (pm->stage >= 0) {
        cr_status st = stage_tensor(plan, bc, t, s, 0, 0, out, err);
        if (st) return st;
    } else {
        if (!pm->opened) return cr_fail(err, CR_ERR_CONFIG, "%s: model %s is not open", t->name, pm->ref);
        if (pm->lora)
            return cr_fail(err, CR_ERR_UNSUPPORTED,
                           "%s: model %s carries a LoRA adapter; a tokenizer merge that permutes its vocabulary "
                           "rows is not supported yet (merge the adapter first, then merge the tokenizers)",
                           t->name, pm->ref);
        const cr_model_tensor *mt = cr_model_find(&pm->model, s->tensor);
        if (!mt) return cr_fail(err, CR_ERR_CONFIG, "%s: model %s has no tensor %s", t->name, pm->ref, s->tensor);
        *out = file_tensor(bc, pm, s->model, &pm->model.shards[mt->shard], mt->shard, false, mt->info, 0, 0);
    }
    out->rows = out->src_rows;
    out->cols = out->src_cols;
    return CR_OK;
}

static cr_status build_tensor(const cr_plan *plan, uint32_t si, const cr_plan_tensor *t,
                              cr_method_registry *methods, cr_lua *L, int ref, const cr_build_options *o, cr_graph *g,
                              build_ctx *bc, stage_out *mine, cr_error *err)
{
    const cr_plan_stage *st = &plan->stages[si];
    if (t->n_sources == 0) return cr_fail(err, CR_ERR_CONFIG, "%s: no model has this tensor", t->name);
    /* shapes: equal, or rectified for embeddings (all 2-D) */
    const cr_plan_source *s0 = &t->sources[0];
    bool differ = false, all2d = true;
    uint64_t R = UINT64_MAX, C = UINT64_MAX;
    for (uint32_t i = 0; i < t->n_sources; i++) {
        const cr_plan_source *s = &t->sources[i];
        if (s->ndim != s0->ndim || memcmp(s->shape, s0->shape, sizeof(uint64_t) * s->ndim)) differ = true;
        if (s->ndim != 2) all2d = false;
        else { R = CR_MIN(R, s->shape[0]); C = CR_MIN(C, s->shape[1]); }
    }
    uint32_t ndim = s0->ndim;
    uint64_t shape[CR_MAX_DIMS];
    memcpy(shape, s0->shape, sizeof shape);
    /* a vocabulary tensor under a tokenizer merge: every input permuted
     * into the output vocabulary (compiler/tokgraph.c) */
    bool perm = bc->tm && t->is_embed && all2d;
    if (perm) {
        shape[0] = bc->tm->n_pad;
    } else if (differ) {
        if (!(t->is_embed && all2d)) {
            char a[128], b[128];
            for (uint32_t i = 1; i < t->n_sources; i++) {
                const cr_plan_source *s = &t->sources[i];
                if (s->ndim != s0->ndim || memcmp(s->shape, s0->shape, sizeof(uint64_t) * s->ndim)) {
                    shape_str(a, sizeof a, s0->ndim, s0->shape);
                    shape_str(b, sizeof b, s->ndim, s->shape);
                    return cr_fail(err, CR_ERR_CONFIG, "%s: %s has shape %s but %s has %s", t->name,
                                   plan->models[s0->model].ref, a, plan->models[s->model].ref, b);
                }
            }
        }
        if (cr_mk_resolve(o ? o->mk_version : CR_MK_DEFAULT) != CR_MK_0_1_4) {
            /* mergekit 0.1.5 (base.py: validate_tensors, preprocessing.py:
             * truncate_vocabulary): only the vocabulary axis (rows) may
             * differ, and only when told to cut it */
            char a[128], b[128];
            for (uint32_t i = 1; i < t->n_sources; i++) {
                const cr_plan_source *s = &t->sources[i];
                if (!memcmp(s->shape, s0->shape, sizeof(uint64_t) * 2)) continue;
                shape_str(a, sizeof a, s0->ndim, s0->shape);
                shape_str(b, sizeof b, s->ndim, s->shape);
                if (s->shape[1] != s0->shape[1])
                    return cr_fail(err, CR_ERR_CONFIG,
                                   "%s: %s has shape %s but %s has %s: only the vocabulary (rows) may differ",
                                   t->name, plan->models[s0->model].ref, a, plan->models[s->model].ref, b);
                if (!o || !o->unsafe_truncate_embeddings)
                    return cr_fail(err, CR_ERR_CONFIG,
                                   "%s: vocabulary sizes differ: %s has shape %s but %s has %s; mergekit 0.1.5 "
                                   "refuses to merge them (--unsafe-truncate-embeddings keeps the first %llu rows "
                                   "of each, assuming the same token ids; --mergekit-version 0.1.4 merges the "
                                   "common submatrix)", t->name, plan->models[s0->model].ref, a,
                                   plan->models[s->model].ref, b, (unsigned long long)R);
            }
        }
        shape[0] = R;
        shape[1] = C;
    }
    uint64_t rows, cols;
    view_2d(ndim, shape, &rows, &cols);
    uint32_t d = cr_graph_add_domain(g, rows, cols, t->name, (int)si);
    if (d == UINT32_MAX) return cr_fail(err, CR_ERR_NOMEM, "out of memory building the graph");

    cr_lua_input ins[64];
    cr_graph_input files[64];
    if (t->n_sources > CR_ARRAY_LEN(ins))
        return cr_fail(err, CR_ERR_LIMIT, "%s: more than %zu input models", t->name, CR_ARRAY_LEN(ins));
    for (uint32_t i = 0; i < t->n_sources; i++) {
        const cr_plan_source *s = &t->sources[i];
        const cr_plan_model *pm = &plan->models[s->model];
        if (perm) {     /* gathered below, once every input is known */
            cr_status ps = perm_source(plan, bc, t, s, &files[i], err);
            if (ps) return ps;
            ins[i] = (cr_lua_input){ .node = CR_NO_NODE, .model = pm->ref, .tensor = s->tensor,
                                     .is_base = s->is_base, .ndim = ndim, .shape = shape, .params = &s->params };
            continue;
        }
        uint32_t node;
        if (pm->stage >= 0) {
            cr_graph_input gi;
            cr_status ss = stage_tensor(plan, bc, t, s, rows, cols, &gi, err);
            if (ss) return ss;
            node = input_node(g, &gi, d);
        } else {
            if (!pm->opened) return cr_fail(err, CR_ERR_CONFIG, "%s: model %s is not open", t->name, pm->ref);
            const char *why = NULL;
            node = model_input(g, bc, pm, s->model, s->tensor, rows, cols, d, &why);
            if (why) return cr_fail(err, CR_ERR_CONFIG, "%s: model %s has no tensor %s", t->name, pm->ref, s->tensor);
        }
        cr_dtype idt = node == CR_NO_NODE ? CR_DTYPE_NONE : (cr_dtype)g->nodes[node].dtype;
        /* mergekit casts every loaded tensor to the recipe's dtype */
        if (node != CR_NO_NODE && st->dtype != CR_DTYPE_NONE && st->dtype != idt) {
            cr_node c = { .op = CR_GOP_MOV, .dtype = (uint8_t)st->dtype, .rdt = (uint8_t)st->dtype,
                          .kind = CR_VK_TENSOR, .domain = d, .n_in = 1, .in = { node } };
            node = cr_graph_add(g, &c);
        }
        if (node == CR_NO_NODE) return cr_graph_add_failed(g, t->name, err);
        ins[i] = (cr_lua_input){ .node = node, .model = plan->models[s->model].ref, .tensor = s->tensor,
                                 .is_base = s->is_base, .dtype = g->nodes[node].dtype,
                                 .ndim = s->ndim, .shape = s->shape, .params = &s->params };
    }
    if (perm) {
        uint32_t nodes[64];
        cr_dtype dt;
        cr_status ps = cr_tokgraph_inputs(bc->tm, plan, st, t->name, d, files, t->n_sources, g, nodes, &dt, err);
        if (ps) return ps;
        for (uint32_t i = 0; i < t->n_sources; i++) {
            ins[i].node = nodes[i];
            ins[i].dtype = dt;
        }
    }
    /* mergekit 0.1.5 (merge_methods/base.py: _execute_resolved) casts every
     * input of the group, base included, to torch.promote_types over all of
     * them when the recipe names no dtype; 0.1.4 left it to each method */
    if (cr_mk_resolve(o ? o->mk_version : CR_MK_DEFAULT) != CR_MK_0_1_4 && st->dtype == CR_DTYPE_NONE &&
        t->n_sources > 1) {
        cr_dtype p = ins[0].dtype;
        for (uint32_t i = 1; i < t->n_sources; i++) p = cr_dtype_promote(p, ins[i].dtype);
        for (uint32_t i = 0; i < t->n_sources; i++) {
            if (ins[i].dtype == p) continue;
            cr_node c = { .op = CR_GOP_MOV, .dtype = (uint8_t)p, .rdt = (uint8_t)p,
                          .kind = CR_VK_TENSOR, .domain = d, .n_in = 1, .in = { ins[i].node } };
            if ((ins[i].node = cr_graph_add(g, &c)) == CR_NO_NODE) return cr_graph_add_failed(g, t->name, err);
            ins[i].dtype = p;
        }
    }
    const cr_method_info *method = t->method ? t->method : st->method;
    if (t->method) {
        cr_status ms = cr_methods_lua(methods, t->method, &L, &ref, err);
        if (ms) return ms;
    }
    cr_lua_call call = { .method = method, .name = t->name, .layer = t->layer, .ndim = ndim,
                         .shape = shape, .is_embed = t->is_embed, .optional = t->optional,
                         .domain = d, .inputs = ins, .n_inputs = t->n_sources, .params = &t->params,
                         .dtype = st->dtype, .precise = o && o->precise, .seed = o ? o->seed : 0,
                         .mk_version = o ? o->mk_version : CR_MK_DEFAULT };
    uint32_t r;
    cr_status s = cr_lua_call_merge(L, ref, g, &call, &r, err);
    if (s) return s;
    if (g->nodes[r].kind == CR_VK_SCALAR)
        return cr_fail(err, CR_ERR_CONFIG, "%s: method %s returned a scalar, not a tensor", t->name,
                       method->name);
    cr_dtype out = st->out_dtype != CR_DTYPE_NONE ? st->out_dtype : (cr_dtype)g->nodes[r].dtype;
    if (out != CR_DTYPE_F32 && out != CR_DTYPE_BF16 && out != CR_DTYPE_F16 && out != CR_DTYPE_F64)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: result dtype %s cannot be written yet", t->name,
                       cr_dtype_name(out) ? cr_dtype_name(out) : "?");
    if (out != g->nodes[r].dtype || g->nodes[r].rdt != out) {
        cr_node c = { .op = CR_GOP_MOV, .dtype = (uint8_t)out, .rdt = (uint8_t)out,
                      .kind = CR_VK_TENSOR, .domain = d, .n_in = 1, .in = { r } };
        if ((r = cr_graph_add(g, &c)) == CR_NO_NODE) return cr_graph_add_failed(g, t->name, err);
    }
    *mine = (stage_out){ t->name, r, out, rows, cols };
    if (si + 1 == plan->n_stages) {
        cr_graph_output go = { .node = r, .domain = d, .name = t->name, .dtype = out, .ndim = ndim };
        memcpy(go.shape, shape, sizeof shape);
        if (cr_graph_add_output(g, &go) == UINT32_MAX) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    }
    return CR_OK;
}

cr_status cr_build_graph(const cr_plan *plan, cr_method_registry *methods, const cr_build_options *o,
                         cr_graph *g, cr_error *err)
{
    stage_out *cur = NULL;
    build_ctx bc = { 0 };
    cr_status s = CR_OK;
    bc.shard_size = cr_calloc(g->alloc, plan->n_models + 1, sizeof *bc.shard_size);
    bc.outs = cr_calloc(g->alloc, plan->n_stages + 1, sizeof *bc.outs);
    bc.n_outs = cr_calloc(g->alloc, plan->n_stages + 1, sizeof *bc.n_outs);
    if (!bc.shard_size || !bc.outs || !bc.n_outs) s = cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t m = 0; bc.shard_size && m < plan->n_models && !s; m++) {
        uint32_t n = plan->models[m].opened ? plan->models[m].model.n_shards : 0;
        if (!(bc.shard_size[m] = cr_malloc(g->alloc, ((size_t)n + 1) * sizeof **bc.shard_size)))
            s = cr_fail(err, CR_ERR_NOMEM, "out of memory");
        else memset(bc.shard_size[m], 0xff, ((size_t)n + 1) * sizeof **bc.shard_size);
    }
    /* the tokenizer merge in any stage (mergekit 0.1.5's
     * PermutedVocabulary, or 0.1.4's PermutedEmbeddings:
     * compiler/tokgraph.c), each stage seeing the tokenizers the earlier
     * stages' directories hold (compiler/tokstage.c) */
    cr_tokstage *ts = NULL;
    bool any = false;
    for (uint32_t si = 0; si < plan->n_stages; si++) any |= plan->stages[si].tokenizer_source != NULL;
    if (!s && any)
        s = cr_tokstages_build(g->alloc, plan, plan->n_stages, plan->copy_tokenizer, o ? o->mk_version : CR_MK_DEFAULT,
                               &ts, err);
    for (uint32_t si = 0; si < plan->n_stages && !s; si++) {
        const cr_plan_stage *st = &plan->stages[si];
        bc.tm = ts && ts[si].tm && !ts[si].tm->identity ? ts[si].tm : NULL;
        cr_lua *L;
        int ref;
        if (!st->method) { s = cr_fail(err, CR_ERR_CONFIG, "stage %s has no method", st->name); break; }
        if ((s = cr_methods_lua(methods, st->method, &L, &ref, err))) break;
        cur = cr_calloc(g->alloc, st->n_tensors + 1, sizeof *cur);
        if (!cur) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory"); break; }
        for (uint32_t ti = 0; ti < st->n_tensors && !s; ti++)
            s = build_tensor(plan, si, &st->tensors[ti], methods, L, ref, o, g, &bc, &cur[ti], err);
        bc.outs[si] = cur;
        bc.n_outs[si] = st->n_tensors;
        cur = NULL;
        if (!s) qsort(bc.outs[si], bc.n_outs[si], sizeof *bc.outs[si], stage_out_cmp);
    }
    for (uint32_t si = 0; bc.outs && si < plan->n_stages; si++) cr_free(g->alloc, bc.outs[si]);
    cr_free(g->alloc, bc.outs);
    cr_free(g->alloc, bc.n_outs);
    cr_tokstages_free(g->alloc, ts, plan->n_stages);
    for (uint32_t m = 0; bc.shard_size && m < plan->n_models; m++) cr_free(g->alloc, bc.shard_size[m]);
    cr_free(g->alloc, bc.shard_size);
    return s;
}
