/* cmd_extract_lora.c — `crucible extract-lora`: mergekit-extract-lora
 * (mergekit 0.1.5, scripts/extract_lora.py) on two model directories.
 *
 * Modules are what transformers' named_modules() would give, read from the
 * fine-tune's tensor names: MODULE.weight (+ MODULE.bias). A 2-D weight is
 * a Linear, the input embedding (compiler/arch.h) an Embedding, anything
 * else (norms) a module mergekit cannot decompose. A tied model's lm_head
 * is the input embedding, as mergekit loads it. Per decomposed module:
 * delta = fine-tune - base in the weights' dtype, its truncated SVD
 * (core/svd.h) at min(--max-rank, min(rows, cols)) (fewer with
 * --sv-epsilon), A = sqrt(S) Vh, B = U sqrt(S) (or S Vh, U), written in
 * the weights' dtype; embeddings are decomposed transposed (PEFT's
 * lora_embedding_A is r x vocab). The output directory appears complete or
 * not at all and is never an input (formats/outdir.h).
 */
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "commands.h"
#include "jsonw.h"
#include "model.h"
#include "options.h"
#include "outdir.h"
#include "outguard.h"
#include "pool.h"
#include "run_program.h"
#include "safetensors.h"
#include "svd.h"

#include <cjson/cJSON.h>

#define PREFIX "base_model.model."

typedef struct xl_out {            /* one output tensor */
    cr_st_entry e;
    const void *data;               /* mapped input, or owned (freed with `owned`) */
    void *owned;
} xl_out;

typedef struct xl {
    const cr_allocator *alloc;
    cr_arena ar;
    cr_cli_options co;
    cr_model base, ft;
    cr_pool *pool;
    regex_t *inc, *exc;
    int n_inc, n_exc;
    const char **save;              /* modules_to_save keys, in order */
    int n_save, cap_save;
    xl_out *out;
    uint32_t n_out, cap_out;
    const char **ranked;            /* decomposed modules and their ranks */
    uint64_t *ranks;
    uint32_t n_ranked;
    uint32_t max_rank;
    double sv_epsilon;
    bool embed_lora;
} xl;

static const char *last_component(const char *name)
{
    const char *d = strrchr(name, '.');
    return d ? d + 1 : name;
}

static bool any_match(const regex_t *r, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (regexec(&r[i], s, 0, NULL, 0) == 0) return true;
    return false;
}

static bool in_save(const xl *x, const char *name)
{
    for (int i = 0; i < x->n_save; i++)
        if (!strcmp(x->save[i], name) || !strcmp(x->save[i], last_component(name))) return true;
    return false;
}

static cr_status add_save(xl *x, const char *key, cr_error *err)
{
    for (int i = 0; i < x->n_save; i++)
        if (!strcmp(x->save[i], key)) return CR_OK;
    if (x->n_save == x->cap_save) {
        int nc = x->cap_save ? 2 * x->cap_save : 16;
        const char **s = cr_arena_alloc(&x->ar, nc * sizeof *s);
        if (!s) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
        if (x->n_save) memcpy(s, x->save, x->n_save * sizeof *s);
        x->save = s, x->cap_save = nc;
    }
    x->save[x->n_save++] = cr_arena_strdup(&x->ar, key);
    return x->save[x->n_save - 1] ? CR_OK : cr_fail(err, CR_ERR_NOMEM, "out of memory");
}

static xl_out *add_out(xl *x, const char *name, cr_dtype dt, uint32_t ndim, const uint64_t *shape, cr_error *err)
{
    if (x->n_out == x->cap_out) {
        uint32_t nc = x->cap_out ? 2 * x->cap_out : 64;
        xl_out *o = cr_realloc(x->alloc, x->out, nc * sizeof *o);
        if (!o) { cr_fail(err, CR_ERR_NOMEM, "out of memory"); return NULL; }
        x->out = o, x->cap_out = nc;
    }
    xl_out *o = &x->out[x->n_out++];
    memset(o, 0, sizeof *o);
    o->e.name = cr_arena_strdup(&x->ar, name);
    o->e.dtype = dt;
    o->e.ndim = ndim;
    memcpy(o->e.shape, shape, ndim * sizeof *shape);
    if (!o->e.name) { cr_fail(err, CR_ERR_NOMEM, "out of memory"); return NULL; }
    return o;
}

static const cr_st_tensor *tensor_of(const cr_model *m, const char *name, const void **data)
{
    const cr_model_tensor *t = cr_model_find(m, name);
    if (!t) return NULL;
    *data = cr_st_data(&m->shards[t->shard], t->info);
    return t->info;
}

/* Save `name` (from the fine-tune, or `src` for a tied head) whole. */
static cr_status save_whole(xl *x, const char *name, const char *src, cr_error *err)
{
    const void *d;
    const cr_st_tensor *t = tensor_of(&x->ft, src, &d);
    if (!t) return CR_OK;
    char *n = cr_arena_printf(&x->ar, PREFIX "%s", name);
    xl_out *o = n ? add_out(x, n, t->dtype, t->ndim, t->shape, err) : NULL;
    if (!o) return n ? err->status : cr_fail(err, CR_ERR_NOMEM, "out of memory");
    o->data = d;
    return CR_OK;
}

/* fine-tune - base as torch computes it (in the promoted dtype, rounded to
 * it), as float32; NULL with err set on failure. */
static float *task_vector(xl *x, const char *name, const char *src, cr_dtype *dt, uint64_t *rows, uint64_t *cols,
                          cr_error *err)
{
    const void *fd, *bd;
    const cr_st_tensor *f = tensor_of(&x->ft, src, &fd), *b = tensor_of(&x->base, src, &bd);
    if (!b) { cr_fail(err, CR_ERR_FORMAT, "%s: the base model has no tensor '%s'", x->base.dir, src); return NULL; }
    if (f->ndim != 2 || b->ndim != 2 || f->shape[0] != b->shape[0] || f->shape[1] != b->shape[1]) {
        cr_fail(err, CR_ERR_FORMAT, "%s: '%s' has shape %llux%llu in the fine-tune and another in the base", name,
                src, (unsigned long long)f->shape[0], (unsigned long long)f->shape[1]);
        return NULL;
    }
    if (!cr_dtype_is_float(f->dtype) || !cr_dtype_is_float(b->dtype) || f->dtype == CR_DTYPE_F64) {
        cr_fail(err, CR_ERR_UNSUPPORTED, "'%s': dtype %s (bfloat16, float16 or float32 only)", src,
                cr_dtype_name(f->dtype));
        return NULL;
    }
    *dt = cr_dtype_promote(f->dtype, b->dtype);
    *rows = f->shape[0], *cols = f->shape[1];
    uint64_t n = f->numel;
    float *fv = cr_malloc(x->alloc, n * sizeof *fv), *bv = cr_malloc(x->alloc, n * sizeof *bv);
    if (!fv || !bv) {
        cr_free(x->alloc, fv), cr_free(x->alloc, bv);
        cr_fail(err, CR_ERR_NOMEM, "out of memory for '%s' (%llu elements)", src, (unsigned long long)n);
        return NULL;
    }
    cr_convert_to_f32(f->dtype, fd, fv, n);
    cr_convert_to_f32(b->dtype, bd, bv, n);
    for (uint64_t i = 0; i < n; i++) {
        float v = fv[i] - bv[i];
        fv[i] = *dt == CR_DTYPE_BF16 ? cr_round_bf16(v) : *dt == CR_DTYPE_F16 ? cr_round_f16(v) : v;
    }
    cr_free(x->alloc, bv);
    return fv;
}

static cr_status decompose(xl *x, const char *module, const char *src, bool transpose, cr_error *err)
{
    cr_dtype dt;
    uint64_t rows, cols;
    float *tv = task_vector(x, module, src, &dt, &rows, &cols, err);
    if (!tv) return err->status;
    if (transpose) {    /* task_vector.T */
        float *t = cr_malloc(x->alloc, rows * cols * sizeof *t);
        if (!t) { cr_free(x->alloc, tv); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
        for (uint64_t r = 0; r < rows; r++)
            for (uint64_t c = 0; c < cols; c++) t[c * rows + r] = tv[r * cols + c];
        cr_free(x->alloc, tv);
        tv = t;
        uint64_t s = rows; rows = cols; cols = s;
    }
    uint64_t mn = rows < cols ? rows : cols;
    uint32_t k = (uint32_t)(x->max_rank < mn ? x->max_rank : mn);
    double *s = cr_malloc(x->alloc, k * sizeof *s), *u = cr_malloc(x->alloc, rows * k * sizeof *u);
    double *vt = cr_malloc(x->alloc, k * cols * sizeof *vt);
    cr_status st = !s || !u || !vt ? cr_fail(err, CR_ERR_NOMEM, "out of memory for the SVD of '%s'", src)
                                   : cr_svd_truncated(x->alloc, x->pool, tv, rows, cols, k, NULL, s, u, vt, err);
    cr_free(x->alloc, tv);
    if (st == CR_OK && x->sv_epsilon > 0) {
        uint32_t keep = 0;
        while (keep < k && s[keep] > x->sv_epsilon) keep++;
        k = keep;
        if (k == 0)
            st = cr_fail(err, CR_ERR_UNSUPPORTED, "'%s': no singular value above --sv-epsilon %g (a rank-0 adapter)",
                         src, x->sv_epsilon);
    }
    float *a = NULL, *b = NULL;
    if (st == CR_OK) {
        a = cr_malloc(x->alloc, k * cols * sizeof *a);
        b = cr_malloc(x->alloc, rows * k * sizeof *b);
        if (!a || !b) st = cr_fail(err, CR_ERR_NOMEM, "out of memory");
    }
    if (st == CR_OK) {
        /* torch: sqrt of the float32 values; diag(scale) @ vh is one rounded product */
        bool dist = !x->co.xl_no_distribute_scale;
        for (uint32_t i = 0; i < k; i++) {
            float sv = (float)s[i], sa = dist ? sqrtf(sv) : sv, sb = dist ? sqrtf(sv) : 1.0f;
            for (uint64_t c = 0; c < cols; c++) a[i * cols + c] = sa * (float)vt[i * cols + c];
            for (uint64_t r = 0; r < rows; r++) b[r * k + i] = (float)u[r * k + i] * sb;
        }
        char *base = cr_arena_strdup(&x->ar, module);
        const char *an = cr_arena_printf(&x->ar, PREFIX "%s.%s", base, transpose ? "lora_embedding_A" : "lora_A.weight");
        const char *bn = cr_arena_printf(&x->ar, PREFIX "%s.%s", base, transpose ? "lora_embedding_B" : "lora_B.weight");
        uint64_t ash[2] = { k, cols }, bsh[2] = { rows, k };
        xl_out *oa = an ? add_out(x, an, dt, 2, ash, err) : NULL;
        xl_out *ob = oa && bn ? add_out(x, bn, dt, 2, bsh, err) : NULL;
        if (!oa || !ob) st = err->status ? err->status : cr_fail(err, CR_ERR_NOMEM, "out of memory");
        else {
            oa = &x->out[x->n_out - 2];
            unsigned es = cr_dtype_size(dt);
            void *ab = cr_malloc(x->alloc, k * cols * es), *bb = cr_malloc(x->alloc, rows * k * es);
            if (!ab || !bb) { cr_free(x->alloc, ab), cr_free(x->alloc, bb); st = cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
            else {
                cr_convert_from_f32(dt, a, ab, k * cols);
                cr_convert_from_f32(dt, b, bb, rows * k);
                oa->data = oa->owned = ab;
                ob->data = ob->owned = bb;
                x->ranked[x->n_ranked] = base;
                x->ranks[x->n_ranked++] = k;
            }
        }
    }
    cr_free(x->alloc, a), cr_free(x->alloc, b);
    cr_free(x->alloc, s), cr_free(x->alloc, u), cr_free(x->alloc, vt);
    return st;
}

/* MODULE.bias of a decomposed module: lora_B.bias = fine-tune - base */
static cr_status bias_delta(xl *x, const char *module, cr_error *err)
{
    const char *bn = cr_arena_printf(&x->ar, "%s.bias", module);
    const void *fd, *bd;
    const cr_st_tensor *f = bn ? tensor_of(&x->ft, bn, &fd) : NULL, *b = f ? tensor_of(&x->base, bn, &bd) : NULL;
    if (!f) return CR_OK;
    if (!b || b->numel != f->numel)
        return cr_fail(err, CR_ERR_FORMAT, "%s: the base model has no tensor '%s' of its shape", x->base.dir, bn);
    cr_dtype dt = cr_dtype_promote(f->dtype, b->dtype);
    float *fv = cr_malloc(x->alloc, f->numel * 4), *bv = cr_malloc(x->alloc, f->numel * 4);
    void *o = cr_malloc(x->alloc, f->numel * cr_dtype_size(dt));
    cr_status st = CR_OK;
    if (!fv || !bv || !o) st = cr_fail(err, CR_ERR_NOMEM, "out of memory");
    else {
        cr_convert_to_f32(f->dtype, fd, fv, f->numel);
        cr_convert_to_f32(b->dtype, bd, bv, f->numel);
        for (uint64_t i = 0; i < f->numel; i++) fv[i] -= bv[i];
        cr_convert_from_f32(dt, fv, o, f->numel);
        const char *on = cr_arena_printf(&x->ar, PREFIX "%s.lora_B.bias", module);
        xl_out *out = on ? add_out(x, on, dt, f->ndim, f->shape, err) : NULL;
        if (!out) st = err->status ? err->status : cr_fail(err, CR_ERR_NOMEM, "out of memory");
        else out->data = out->owned = o, o = NULL;
    }
    cr_free(x->alloc, fv), cr_free(x->alloc, bv), cr_free(x->alloc, o);
    return st;
}

static bool should_extract(const xl *x, const char *name)
{
    if (x->n_inc && !any_match(x->inc, x->n_inc, name)) return false;
    return !any_match(x->exc, x->n_exc, name);
}

/* mergekit's plan_extraction over the modules, in name order */
static cr_status plan_and_decompose(xl *x, cr_error *err)
{
    const char **names = cr_arena_alloc(&x->ar, (x->ft.n_tensors + 1) * sizeof *names);
    if (!names) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < x->ft.n_tensors; i++) names[i] = x->ft.tensors[i].info->name;
    cr_arch arch;
    cr_status st = cr_arch_analyse(&x->ar, names, x->ft.n_tensors, &arch);
    if (st) return cr_fail(err, st, "out of memory");
    /* a tied model's lm_head: transformers has the module, mergekit loads the embedding */
    const char *tied_head = NULL;
    if (arch.embed && !cr_model_find(&x->ft, "lm_head.weight") && x->ft.config &&
        cJSON_IsTrue(cJSON_GetObjectItem(x->ft.config, "tie_word_embeddings")))
        tied_head = "lm_head.weight";
    uint32_t n = x->ft.n_tensors + (tied_head ? 1 : 0);
    x->ranked = cr_arena_alloc(&x->ar, n * sizeof *x->ranked);
    x->ranks = cr_arena_alloc(&x->ar, n * sizeof *x->ranks);
    if (!x->ranked || !x->ranks) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    if (x->embed_lora && arch.embed) {
        const cr_model_tensor *fe = cr_model_find(&x->ft, arch.embed), *be = cr_model_find(&x->base, arch.embed);
        if (be && fe->info->shape[0] != be->info->shape[0]) {
            fprintf(stderr, "crucible extract-lora: vocabulary sizes differ (fine-tune %llu, base %llu): "
                    "embeddings saved whole, --embed-lora off (as mergekit)\n",
                    (unsigned long long)fe->info->shape[0], (unsigned long long)be->info->shape[0]);
            x->embed_lora = false;
        }
    }
    /* transformers' module order where it shows (the order of modules_to_save):
     * the input embedding first, the output heads last */
    uint32_t *order = cr_arena_alloc(&x->ar, (n + 1) * sizeof *order), n_order = 0;
    if (!order) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (int pass = 0; pass < 3; pass++)
        for (uint32_t i = 0; i < n; i++) {
            const char *w = i < x->ft.n_tensors ? names[i] : tied_head;
            bool in = arch.embed && !strcmp(w, arch.embed), head = cr_arch_is_tied_head(w);
            if ((pass == 0 && in) || (pass == 1 && !in && !head) || (pass == 2 && head && !in)) order[n_order++] = i;
        }
    for (uint32_t oi = 0; oi < n_order && st == CR_OK; oi++) {
        uint32_t i = order[oi];
        const char *w = i < x->ft.n_tensors ? names[i] : tied_head;
        const char *src = i < x->ft.n_tensors ? w : arch.embed;
        size_t len = strlen(w);
        if (len < 7 || strcmp(w + len - 7, ".weight")) continue;
        char *module = cr_arena_strndup(&x->ar, w, len - 7);
        if (!module) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
        const cr_model_tensor *t = cr_model_find(&x->ft, src);
        bool is_embed_in = arch.embed && !strcmp(src, arch.embed) && src == w;
        bool is_embed_out = !is_embed_in && cr_arch_is_tied_head(w);
        bool linear = !is_embed_in && t->info->ndim == 2;
        const char *key = last_component(module);
        if (!x->embed_lora && (is_embed_in || is_embed_out) && !any_match(x->exc, x->n_exc, module))
            if ((st = add_save(x, key, err))) return st;
        if (in_save(x, module)) {
            if ((st = save_whole(x, w, src, err))) return st;
            char *bn = cr_arena_printf(&x->ar, "%s.bias", module);
            if (bn && (st = save_whole(x, bn, bn, err))) return st;
        } else if (should_extract(x, module)) {
            if (linear || is_embed_in) {
                if (!x->co.quiet) fprintf(stderr, "crucible extract-lora: %s\n", module);
                st = decompose(x, module, src, is_embed_in, err);
                if (st == CR_OK) st = bias_delta(x, module, err);
            } else if (!x->co.val[CR_OPT_XL_SKIP_UNDECOMPOSABLE]) {
                if ((st = add_save(x, key, err))) return st;
                if ((st = save_whole(x, w, src, err))) return st;
                char *bn = cr_arena_printf(&x->ar, "%s.bias", module);
                if (bn && (st = save_whole(x, bn, bn, err))) return st;
            }
        }
    }
    return st;
}

static void json_str(cr_sbuf *b, const char *s) { cr_json_add_string(b, s, strlen(s), true); }

/* adapter_config.json as mergekit's make_config_dict, json.dump(indent=4) */
static cr_status write_config(xl *x, const char *path, cr_error *err)
{
    uint64_t r = 0;
    for (uint32_t i = 0; i < x->n_ranked; i++) if (x->ranks[i] > r) r = x->ranks[i];
    /* target_modules: the distinct last components (a Python set; sorted here) */
    const char **keys = cr_arena_alloc(&x->ar, (x->n_ranked + 1) * sizeof *keys);
    uint32_t n_keys = 0;
    if (!keys) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < x->n_ranked; i++) {
        const char *k = last_component(x->ranked[i]);
        uint32_t j = 0;
        while (j < n_keys && strcmp(keys[j], k) < 0) j++;
        if (j < n_keys && !strcmp(keys[j], k)) continue;
        memmove(keys + j + 1, keys + j, (n_keys - j) * sizeof *keys);
        keys[j] = k, n_keys++;
    }
    cr_sbuf b;
    cr_sbuf_init(&b, x->alloc);
    cr_sbuf_adds(&b, "{\n    \"base_model_name_or_path\": ");
    json_str(&b, x->co.val[CR_OPT_XL_BASE_MODEL]);
    cr_sbuf_adds(&b, ",\n    \"peft_type\": \"LORA\",\n    \"use_rslora\": false,\n    \"target_modules\": [");
    for (uint32_t i = 0; i < n_keys; i++) { cr_sbuf_adds(&b, i ? ",\n        " : "\n        "); json_str(&b, keys[i]); }
    cr_sbuf_adds(&b, n_keys ? "\n    ],\n    \"modules_to_save\": [" : "],\n    \"modules_to_save\": [");
    for (int i = 0; i < x->n_save; i++) { cr_sbuf_adds(&b, i ? ",\n        " : "\n        "); json_str(&b, x->save[i]); }
    cr_sbuf_printf(&b, "%s,\n    \"task_type\": \"CAUSAL_LM\",\n    \"r\": %llu,\n    \"lora_alpha\": %llu,\n",
                   x->n_save ? "\n    ]" : "]", (unsigned long long)r, (unsigned long long)r);
    for (int pat = 0; pat < 2; pat++) {
        cr_sbuf_adds(&b, pat ? "    \"alpha_pattern\": {" : "    \"rank_pattern\": {");
        bool any = false;
        for (uint32_t i = 0; i < x->n_ranked; i++) {
            if (x->ranks[i] == r) continue;
            cr_sbuf_adds(&b, any ? ",\n        " : "\n        ");
            json_str(&b, x->ranked[i]);
            cr_sbuf_printf(&b, ": %llu", (unsigned long long)x->ranks[i]);
            any = true;
        }
        cr_sbuf_adds(&b, any ? "\n    },\n" : "},\n");
    }
    cr_sbuf_adds(&b, "    \"lora_dropout\": 0.0,\n    \"fan_in_fan_out\": false,\n    \"inference_mode\": true\n}");
    size_t len;
    char *text = cr_sbuf_take(&b, &len);
    if (!text) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(text, 1, len, f) == len;
    if (f && fclose(f)) ok = false;
    cr_free(x->alloc, text);
    return ok ? CR_OK : cr_fail_errno(err, errno, "%s: cannot write", path);
}

static cr_status write_card(xl *x, const char *path, cr_error *err)
{
    /* the output directory's own name (mergekit: os.path.basename) */
    const char *out = x->co.val[CR_OPT_XL_OUT_PATH];
    int len = (int)strlen(out);
    while (len > 1 && out[len - 1] == '/') len--;
    int start = len;
    while (start > 0 && out[start - 1] != '/') start--;
    FILE *f = fopen(path, "wb");
    if (!f) return cr_fail_errno(err, errno, "%s: cannot write", path);
    fprintf(f, "---\nbase_model:\n- %s\nlibrary_name: peft\ntags:\n- mergekit\n- peft\n---\n"
            "# %.*s\n\nThis is a LoRA extracted from a language model. It was extracted by `crucible extract-lora` "
            "(as mergekit-extract-lora).\n\n## LoRA Details\n\nThis LoRA adapter was extracted from %s and uses "
            "%s as a base.\n", x->co.val[CR_OPT_XL_BASE_MODEL], len - start, out + start,
            x->co.val[CR_OPT_XL_MODEL], x->co.val[CR_OPT_XL_BASE_MODEL]);
    return fclose(f) ? cr_fail_errno(err, errno, "%s: cannot write", path) : CR_OK;
}

static cr_status extract(xl *x, const cr_outdir *od, cr_error *err)
{
    cr_status st = plan_and_decompose(x, err);
    if (st) return st;
    if (x->n_ranked == 0)
        return cr_fail(err, CR_ERR_ARG, "no module to decompose (check --include-regex / --exclude-regex)");
    cr_st_entry *e = cr_malloc(x->alloc, x->n_out * sizeof *e);
    const void **d = cr_malloc(x->alloc, x->n_out * sizeof *d);
    char *sp = cr_outdir_path(od, "adapter_model.safetensors");
    char *cp = cr_outdir_path(od, "adapter_config.json"), *rp = cr_outdir_path(od, "README.md");
    if (!e || !d || !sp || !cp || !rp) st = cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; st == CR_OK && i < x->n_out; i++) e[i] = x->out[i].e, d[i] = x->out[i].data;
    if (st == CR_OK) st = cr_st_write_file(x->alloc, sp, e, d, x->n_out, err);
    if (st == CR_OK) st = write_config(x, cp, err);
    if (st == CR_OK) st = write_card(x, rp, err);
    cr_free(x->alloc, e), cr_free(x->alloc, d);
    cr_free(x->alloc, sp), cr_free(x->alloc, cp), cr_free(x->alloc, rp);
    return st;
}

static bool compile_regexes(xl *x)
{
    x->inc = cr_arena_alloc(&x->ar, (x->co.n_list_args + 1) * sizeof *x->inc);
    x->exc = cr_arena_alloc(&x->ar, (x->co.n_list_args + 1) * sizeof *x->exc);
    if (!x->inc || !x->exc) return false;
    for (int i = 0; i < x->co.n_list_args; i++) {
        cr_cli_opt id = x->co.list_ids[i];
        const char *v = x->co.list_args[i];
        if (id == CR_OPT_XL_SAVE_MODULE) {
            cr_error err = {0};
            if (add_save(x, v, &err)) return false;
            continue;
        }
        regex_t *r = id == CR_OPT_XL_INCLUDE_REGEX ? &x->inc[x->n_inc] : &x->exc[x->n_exc];
        if (regcomp(r, v, REG_EXTENDED | REG_NOSUB)) {
            fprintf(stderr, "crucible extract-lora: %s '%s' is not a valid (POSIX extended) regular expression\n",
                    id == CR_OPT_XL_INCLUDE_REGEX ? "--include-regex" : "--exclude-regex", v);
            return false;
        }
        if (id == CR_OPT_XL_INCLUDE_REGEX) x->n_inc++; else x->n_exc++;
    }
    return true;
}

int cr_cmd_extract_lora(int argc, char **argv)
{
    xl x = { .alloc = cr_default_allocator(), .max_rank = 128 };
    if (!cr_cli_parse(CR_CMD_EXTRACT_LORA, argc, argv, &x.co)) return 2;
    const char *need[] = { "--model", "--base-model", "--out-path" };
    const cr_cli_opt ids[] = { CR_OPT_XL_MODEL, CR_OPT_XL_BASE_MODEL, CR_OPT_XL_OUT_PATH };
    for (int i = 0; i < 3; i++)
        if (!x.co.val[ids[i]] || !*x.co.val[ids[i]]) {
            fprintf(stderr, "crucible extract-lora: %s is required\n", need[i]);
            return 2;
        }
    for (int i = 0; i < 2; i++)
        if (strchr(x.co.val[ids[i]], '+')) {
            fprintf(stderr, "crucible extract-lora: %s '%s': model+adapter references are not supported here "
                    "(merge the adapter first: a recipe with that model)\n", need[i], x.co.val[ids[i]]);
            return 2;
        }
    const char *v;
    if ((v = x.co.val[CR_OPT_XL_MAX_RANK])) {
        char *end;
        errno = 0;
        unsigned long r = strtoul(v, &end, 10);
        if (errno || !*v || *end || *v == '-' || r < 1 || r > 1u << 30) {
            fprintf(stderr, "crucible extract-lora: --max-rank wants a positive integer, got '%s'\n", v);
            return 2;
        }
        x.max_rank = (uint32_t)r;
    }
    if ((v = x.co.val[CR_OPT_XL_SV_EPSILON])) {
        char *end;
        x.sv_epsilon = strtod(v, &end);
        if (!*v || *end || !isfinite(x.sv_epsilon)) {
            fprintf(stderr, "crucible extract-lora: --sv-epsilon wants a number, got '%s'\n", v);
            return 2;
        }
    }
    x.embed_lora = x.co.xl_embed_lora;
    cr_arena_init(&x.ar, x.alloc);
    int rc = 1;
    if (!compile_regexes(&x)) { cr_arena_free(&x.ar); return 2; }

    cr_error err = {0};
    const char *model = x.co.val[CR_OPT_XL_MODEL], *base = x.co.val[CR_OPT_XL_BASE_MODEL];
    cr_input_paths inputs;
    cr_input_paths_init(&inputs, x.alloc);
    cr_status st = cr_input_paths_add(&inputs, model, CR_INPUT_PATH_DIR, &err);
    if (st == CR_OK) st = cr_input_paths_add(&inputs, base, CR_INPUT_PATH_DIR, &err);
    bool ft_open = false, base_open = false;
    if (st == CR_OK && (st = cr_model_open(x.alloc, model, 0, &x.ft, &err)) == CR_OK) ft_open = true;
    if (st == CR_OK && (st = cr_model_open(x.alloc, base, 0, &x.base, &err)) == CR_OK) base_open = true;
    if (st == CR_OK) st = cr_pool_init(x.alloc, cr_threads_resolve(x.co.threads), &x.pool, &err);
    cr_outdir od;
    cr_cli_signals sigs;
    volatile int *interrupt = cr_cli_signals_begin(&sigs);
    if (st == CR_OK) {
        cr_outdir_options oo = { .force = x.co.force, .inputs = &inputs };
        st = cr_outdir_begin(x.alloc, x.co.val[CR_OPT_XL_OUT_PATH], &oo, &od, &err);
        if (st == CR_OK) {
            st = extract(&x, &od, &err);
            if (st == CR_OK && *interrupt) st = cr_fail(&err, CR_ERR_INTERRUPTED, "interrupted");
            if (st == CR_OK) st = cr_outdir_commit(&od, &err);
            cr_outdir_abort(&od);
            cr_outdir_free(&od);
        }
    }
    cr_cli_signals_end(&sigs);
    cr_input_paths_free(&inputs);
    if (st == CR_OK) {
        rc = 0;
        if (!x.co.quiet)
            fprintf(stderr, "crucible extract-lora: %u modules decomposed, %d saved whole, adapter in %s\n",
                    x.n_ranked, x.n_save, x.co.val[CR_OPT_XL_OUT_PATH]);
    } else {
        fprintf(stderr, "crucible extract-lora: %s\n", err.msg);
        rc = st == CR_ERR_INTERRUPTED ? 130 : st == CR_ERR_ARG ? 2 : 1;
    }
    for (uint32_t i = 0; i < x.n_out; i++) cr_free(x.alloc, x.out[i].owned);
    cr_free(x.alloc, x.out);
    for (int i = 0; i < x.n_inc; i++) regfree(&x.inc[i]);
    for (int i = 0; i < x.n_exc; i++) regfree(&x.exc[i]);
    cr_pool_free(x.pool);
    if (ft_open) cr_model_close(&x.ft);
    if (base_open) cr_model_close(&x.base);
    cr_arena_free(&x.ar);
    return rc;
}
