/* forward.c — the decoder forward pass (see forward.h): config parsing,
 * weight binding with shape checks, the f32 matmul on the packed-panel
 * kernels of gemm.h and the attention on its nt / nn kernels, both as
 * tasks on the caller's thread pool; the bf16 path's torch-order kernels;
 * and the layer loop. MoE MLPs are in moe_forward.c.
 *
 * Shapes are written next to each buffer: T = tokens, H = hidden, I =
 * intermediate, nH/nKV = heads, hd = head_dim. A Linear weight is [out, in]
 * and y = x·Wᵀ, as in HF checkpoints.
 */
#include "forward.h"

#include "pool.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- config ------------------------------------------------------------ */

static const cJSON *jget(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static bool jnum(const cJSON *o, const char *k, double *out)
{
    const cJSON *v = jget(o, k);
    if (!cJSON_IsNumber(v)) return false;
    *out = v->valuedouble;
    return true;
}

static cr_status need_u32(const cJSON *c, const char *name, const char *k, uint32_t *out, cr_error *err)
{
    double d;
    if (!jnum(c, k, &d))
        return cr_fail(err, CR_ERR_FORMAT, "%s: config.json has no numeric '%s'", name, k);
    if (d < 1 || d > 1e9 || d != (double)(uint32_t)d)
        return cr_fail(err, CR_ERR_FORMAT, "%s: config.json '%s' = %g is not a positive integer", name, k, d);
    *out = (uint32_t)d;
    return CR_OK;
}

/* The MoE fields of mixtral / qwen2_moe / qwen3_moe (their config
 * classes' defaults); dense types keep n_experts 0. */
static cr_status moe_config(const cJSON *c, const char *name, const char *t, cr_llm_config *cfg, cr_error *err)
{
    bool mixtral = !strcmp(t, "mixtral");
    if (!mixtral && strcmp(t, "qwen2_moe") && strcmp(t, "qwen3_moe")) return CR_OK;
    cr_status st;
    const char *ne = cJSON_IsNumber(jget(c, "num_experts")) ? "num_experts" : "num_local_experts";
    if ((st = need_u32(c, name, ne, &cfg->n_experts, err)) ||
        (st = need_u32(c, name, "num_experts_per_tok", &cfg->top_k, err)))
        return st;
    if (cfg->top_k > cfg->n_experts)
        return cr_fail(err, CR_ERR_FORMAT, "%s: num_experts_per_tok %u exceeds the %u experts", name, cfg->top_k,
                       cfg->n_experts);
    cfg->moe_intermediate = cfg->intermediate;
    cfg->sparse_step = 1;
    cfg->norm_topk = mixtral;
    if (mixtral) return CR_OK;
    if ((st = need_u32(c, name, "moe_intermediate_size", &cfg->moe_intermediate, err))) return st;
    if (cJSON_IsNumber(jget(c, "decoder_sparse_step")) &&
        (st = need_u32(c, name, "decoder_sparse_step", &cfg->sparse_step, err)))
        return st;
    cfg->norm_topk = cJSON_IsTrue(jget(c, "norm_topk_prob"));
    if (!strcmp(t, "qwen2_moe") && (st = need_u32(c, name, "shared_expert_intermediate_size",
                                                  &cfg->shared_intermediate, err)))
        return st;
    const cJSON *dense = jget(c, "mlp_only_layers");
    for (const cJSON *e = cJSON_IsArray(dense) ? dense->child : NULL; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= 64)
            return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: mlp_only_layers entries must be layer numbers below 64", name);
        cfg->dense_layers |= (uint64_t)1 << (int)e->valuedouble;
    }
    return CR_OK;
}

bool cr_llm_layer_is_moe(const cr_llm_config *c, uint32_t l)
{
    if (!c->n_experts) return false;
    if (l < 64 && (c->dense_layers >> l & 1)) return false;
    return (l + 1) % c->sparse_step == 0;
}

cr_status cr_llm_config_parse(const cJSON *c, const char *name, cr_llm_config *cfg, cr_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    if (!cJSON_IsObject(c)) return cr_fail(err, CR_ERR_FORMAT, "%s: no config.json", name);
    const cJSON *mt = jget(c, "model_type");
    if (!cJSON_IsString(mt)) return cr_fail(err, CR_ERR_FORMAT, "%s: config.json has no model_type", name);
    const char *t = mt->valuestring;
    static const char *const types[] = { "llama", "mistral", "qwen2", "qwen3", "mixtral", "qwen2_moe", "qwen3_moe" };
    bool known = false;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) known |= !strcmp(t, types[i]);
    if (!known)
        return cr_fail(err, CR_ERR_UNSUPPORTED,
                       "%s: model_type '%s' has no forward pass in crucible (llama, mistral, qwen2, qwen3, mixtral, "
                       "qwen2_moe, qwen3_moe)", name, t);
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", t);
    cr_status st;
    if ((st = need_u32(c, name, "num_hidden_layers", &cfg->n_layers, err)) ||
        (st = need_u32(c, name, "hidden_size", &cfg->hidden, err)) ||
        (st = need_u32(c, name, "intermediate_size", &cfg->intermediate, err)) ||
        (st = need_u32(c, name, "num_attention_heads", &cfg->n_heads, err)))
        return st;
    cfg->n_kv_heads = cfg->n_heads;
    if (cJSON_IsNumber(jget(c, "num_key_value_heads")) &&
        (st = need_u32(c, name, "num_key_value_heads", &cfg->n_kv_heads, err)))
        return st;
    if (cfg->n_heads % cfg->n_kv_heads)
        return cr_fail(err, CR_ERR_FORMAT, "%s: num_attention_heads %u is not a multiple of num_key_value_heads %u",
                       name, cfg->n_heads, cfg->n_kv_heads);
    if (cJSON_IsNumber(jget(c, "head_dim"))) {
        if ((st = need_u32(c, name, "head_dim", &cfg->head_dim, err))) return st;
    } else {
        if (cfg->hidden % cfg->n_heads)
            return cr_fail(err, CR_ERR_FORMAT, "%s: hidden_size %u is not a multiple of num_attention_heads %u",
                           name, cfg->hidden, cfg->n_heads);
        cfg->head_dim = cfg->hidden / cfg->n_heads;
    }
    if (cfg->head_dim % 2) return cr_fail(err, CR_ERR_FORMAT, "%s: head_dim %u is odd", name, cfg->head_dim);
    double d;
    cfg->rms_eps = jnum(c, "rms_norm_eps", &d) ? (float)d : 1e-6f;
    if (jnum(c, "max_position_embeddings", &d) && d > 0) cfg->max_pos = (uint32_t)d;
    if (jnum(c, "sliding_window", &d) && d > 0) {
        /* Qwen2 keeps a sliding_window value but only uses it with
         * use_sliding_window; Mistral uses it whenever it is set */
        const cJSON *use = jget(c, "use_sliding_window");
        if (!cJSON_IsBool(use) || cJSON_IsTrue(use)) cfg->sliding_window = (uint32_t)d;
    }
    const cJSON *act = jget(c, "hidden_act");
    if (cJSON_IsString(act) && strcmp(act->valuestring, "silu"))
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (silu only)", name, act->valuestring);
    double prf;
    if (jnum(c, "partial_rotary_factor", &prf) && prf != 1.0)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: partial_rotary_factor %g is not supported", name, prf);
    bool qwen2 = !strcmp(t, "qwen2") || !strcmp(t, "qwen2_moe");
    cfg->qkv_bias = qwen2 || cJSON_IsTrue(jget(c, "attention_bias"));
    cfg->o_bias = !qwen2 && cJSON_IsTrue(jget(c, "attention_bias"));
    cfg->mlp_bias = cJSON_IsTrue(jget(c, "mlp_bias"));
    cfg->qk_norm = !strcmp(t, "qwen3") || !strcmp(t, "qwen3_moe");
    if ((st = moe_config(c, name, t, cfg, err))) return st;
    const cJSON *tie = jget(c, "tie_word_embeddings");
    cfg->tie_word_embeddings = cJSON_IsBool(tie) ? cJSON_IsTrue(tie) : false;

    /* RoPE: v4 puts rope_theta / rope_scaling at the top level, v5 nests
     * both in rope_parameters; the type is rope_type or (older) type */
    const cJSON *rp = jget(c, "rope_parameters");
    const cJSON *rs = jget(c, "rope_scaling");
    cfg->rope_theta = 10000.0f;
    if (jnum(c, "rope_theta", &d)) cfg->rope_theta = (float)d;
    if (cJSON_IsObject(rp) && jnum(rp, "rope_theta", &d)) cfg->rope_theta = (float)d;
    const cJSON *sc = cJSON_IsObject(rs) ? rs : cJSON_IsObject(rp) ? rp : NULL;
    cfg->rope_type = CR_ROPE_DEFAULT;
    cfg->rope_factor = 1.0f;
    if (sc) {
        const cJSON *ty = jget(sc, "rope_type");
        if (!cJSON_IsString(ty)) ty = jget(sc, "type");
        const char *tn = cJSON_IsString(ty) ? ty->valuestring : "default";
        if (jnum(sc, "factor", &d)) cfg->rope_factor = (float)d;
        if (!strcmp(tn, "default")) cfg->rope_type = CR_ROPE_DEFAULT;
        else if (!strcmp(tn, "linear")) cfg->rope_type = CR_ROPE_LINEAR;
        else if (!strcmp(tn, "dynamic")) cfg->rope_type = CR_ROPE_DYNAMIC;
        else if (!strcmp(tn, "llama3")) {
            cfg->rope_type = CR_ROPE_LLAMA3;
            double lo, hi, om;
            if (!jnum(sc, "low_freq_factor", &lo) || !jnum(sc, "high_freq_factor", &hi) ||
                !jnum(sc, "original_max_position_embeddings", &om))
                return cr_fail(err, CR_ERR_FORMAT, "%s: llama3 rope scaling needs low_freq_factor, high_freq_factor "
                               "and original_max_position_embeddings", name);
            cfg->low_freq_factor = (float)lo;
            cfg->high_freq_factor = (float)hi;
            cfg->rope_orig_max_pos = (uint32_t)om;
        } else {
            return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: rope type '%s' is not supported (default, linear, dynamic, llama3)",
                           name, tn);
        }
        if (cfg->rope_type != CR_ROPE_DEFAULT && !(cfg->rope_factor > 0))
            return cr_fail(err, CR_ERR_FORMAT, "%s: rope scaling factor must be positive", name);
    }
    return CR_OK;
}

/* ---- weights ------------------------------------------------------------ */

cr_status cr_llm_bind_weight(const cr_model *m, const char *name, uint32_t rows, uint32_t cols, bool optional,
                             cr_llm_weight *w, cr_error *err)
{
    memset(w, 0, sizeof *w);
    const cr_model_tensor *mt = cr_model_find(m, name);
    if (!mt) {
        if (optional) return CR_OK;
        return cr_fail(err, CR_ERR_FORMAT, "%s: tensor %s is missing", m->dir, name);
    }
    const cr_st_tensor *t = mt->info;
    if (t->dtype != CR_DTYPE_F32 && t->dtype != CR_DTYPE_F16 && t->dtype != CR_DTYPE_BF16)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s (F32, F16, BF16 supported)", m->dir, name,
                       cr_dtype_name(t->dtype));
    bool ok = rows == 1 ? (t->ndim == 1 && t->shape[0] == cols)
                        : (t->ndim == 2 && t->shape[0] == rows && (cols == 0 || t->shape[1] == cols));
    if (!ok) {
        char got[64] = "";
        size_t w0 = 0;
        for (uint32_t i = 0; i < t->ndim && w0 < sizeof got - 24; i++)
            w0 += (size_t)snprintf(got + w0, sizeof got - w0, "%s%llu", i ? "," : "", (unsigned long long)t->shape[i]);
        if (rows == 1)
            return cr_fail(err, CR_ERR_FORMAT, "%s: tensor %s has shape [%s], expected [%u]", m->dir, name, got, cols);
        return cr_fail(err, CR_ERR_FORMAT, "%s: tensor %s has shape [%s], expected [%u,%u]", m->dir, name, got, rows, cols);
    }
    const void *data = cr_st_data(&m->shards[mt->shard], t);
    if (!data) return cr_fail(err, CR_ERR_ARG, "%s: model was opened header-only", m->dir);
    w->data = data;
    w->dtype = t->dtype;
    w->rows = rows;
    w->cols = t->ndim == 2 ? (uint32_t)t->shape[1] : cols;
    return CR_OK;
}

cr_status cr_llm_open(const cr_allocator *alloc, const cr_model *model, cr_llm *out, cr_error *err)
{
    memset(out, 0, sizeof *out);
    out->alloc = alloc;
    out->model = model;
    cr_llm_config *c = &out->cfg;
    cr_status st = cr_llm_config_parse(model->config, model->dir, c, err);
    if (st) return st;
    if ((st = cr_gemm_pick(NULL, &out->gemm, err))) return st;
    const cr_model_tensor *e = cr_model_find(model, "model.embed_tokens.weight");
    if (!e || e->info->ndim != 2)
        return cr_fail(err, CR_ERR_FORMAT, "%s: tensor model.embed_tokens.weight is missing or not 2-D", model->dir);
    if (e->info->shape[0] > 0x7fffffff) return cr_fail(err, CR_ERR_LIMIT, "%s: vocabulary too large", model->dir);
    c->vocab = (uint32_t)e->info->shape[0];
    uint32_t H = c->hidden, I = c->intermediate, qd = c->n_heads * c->head_dim, kd = c->n_kv_heads * c->head_dim;
    if ((st = cr_llm_bind_weight(model, "model.embed_tokens.weight", c->vocab, H, false, &out->embed, err)) ||
        (st = cr_llm_bind_weight(model, "model.norm.weight", 1, H, false, &out->norm, err)) ||
        (st = cr_llm_bind_weight(model, "lm_head.weight", c->vocab, H, true, &out->lm_head, err)))
        return st;
    if (!out->lm_head.data && c->tie_word_embeddings) out->lm_head = out->embed;
    out->layers = cr_calloc(alloc, c->n_layers, sizeof *out->layers);
    if (!out->layers) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    char nm[160];
#define BIND(field, suffix, r, cc, opt) do { \
        snprintf(nm, sizeof nm, "model.layers.%u.%s", l, suffix); \
        if ((st = cr_llm_bind_weight(model, nm, r, cc, opt, &L->field, err))) goto fail; } while (0)
    for (uint32_t l = 0; l < c->n_layers; l++) {
        cr_llm_layer *L = &out->layers[l];
        BIND(in_norm, "input_layernorm.weight", 1, H, false);
        BIND(post_norm, "post_attention_layernorm.weight", 1, H, false);
        BIND(q, "self_attn.q_proj.weight", qd, H, false);
        BIND(k, "self_attn.k_proj.weight", kd, H, false);
        BIND(v, "self_attn.v_proj.weight", kd, H, false);
        BIND(o, "self_attn.o_proj.weight", H, qd, false);
        BIND(q_bias, "self_attn.q_proj.bias", 1, qd, !c->qkv_bias);
        BIND(k_bias, "self_attn.k_proj.bias", 1, kd, !c->qkv_bias);
        BIND(v_bias, "self_attn.v_proj.bias", 1, kd, !c->qkv_bias);
        BIND(o_bias, "self_attn.o_proj.bias", 1, H, !c->o_bias);
        if (c->qk_norm) {
            BIND(q_norm, "self_attn.q_norm.weight", 1, c->head_dim, false);
            BIND(k_norm, "self_attn.k_norm.weight", 1, c->head_dim, false);
        }
        if (cr_llm_layer_is_moe(c, l)) {
            if ((st = cr_llm_bind_moe(model, out, l, err))) goto fail;
            continue;
        }
        BIND(gate, "mlp.gate_proj.weight", I, H, false);
        BIND(up, "mlp.up_proj.weight", I, H, false);
        BIND(down, "mlp.down_proj.weight", H, I, false);
        BIND(gate_bias, "mlp.gate_proj.bias", 1, I, !c->mlp_bias);
        BIND(up_bias, "mlp.up_proj.bias", 1, I, !c->mlp_bias);
        BIND(down_bias, "mlp.down_proj.bias", 1, H, !c->mlp_bias);
    }
#undef BIND
    /* inv_freq as HF computes it, in f32: 1 / theta^(2j/d) */
    uint32_t half = c->head_dim / 2;
    out->inv_freq = cr_malloc(alloc, half * sizeof(float));
    if (!out->inv_freq) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto fail; }
    for (uint32_t j = 0; j < half; j++) {
        float ex = (float)(2 * j) / (float)c->head_dim;
        float inv = 1.0f / powf(c->rope_theta, ex);
        if (c->rope_type == CR_ROPE_LINEAR) inv /= c->rope_factor;
        if (c->rope_type == CR_ROPE_LLAMA3) {
            /* modeling_rope_utils._compute_llama3_parameters */
            float om = (float)c->rope_orig_max_pos;
            float lo_wl = om / c->low_freq_factor, hi_wl = om / c->high_freq_factor;
            float wl = 2.0f * (float)M_PI / inv;
            if (wl > lo_wl) inv = inv / c->rope_factor;
            else if (wl >= hi_wl) {
                float s = (om / wl - c->low_freq_factor) / (c->high_freq_factor - c->low_freq_factor);
                inv = (1.0f - s) * inv / c->rope_factor + s * inv;
            }
        }
        out->inv_freq[j] = inv;
    }
    return CR_OK;
fail:
    cr_llm_free(out);
    return st;
}

void cr_llm_free(cr_llm *m)
{
    if (!m || !m->alloc) return;
    for (uint32_t l = 0; m->layers && l < m->cfg.n_layers; l++) cr_free(m->alloc, m->layers[l].experts);
    cr_free(m->alloc, m->layers);
    cr_free(m->alloc, m->inv_freq);
    m->layers = NULL;
    m->inv_freq = NULL;
}

/* ---- threads ------------------------------------------------------------ */

/* fn(ctx, begin, end, scratch) over [0, n) cut into n_tasks contiguous
 * ranges, claimed by the threads of m->pool (core/pool.h; NULL: all on the
 * calling thread). Each thread has its own scratch of scratch_floats. */
typedef void (*range_fn)(void *ctx, size_t begin, size_t end, float *scratch);

typedef struct pf_job {
    range_fn fn;
    void *ctx;
    size_t n, n_tasks, scratch_floats;
    float *scratch;
} pf_job;

static int pf_task(void *ud, uint64_t task, unsigned thread)
{
    const pf_job *j = ud;
    size_t b = j->n * task / j->n_tasks, e = j->n * (task + 1) / j->n_tasks;
    if (b < e) j->fn(j->ctx, b, e, j->scratch ? j->scratch + thread * j->scratch_floats : NULL);
    return 0;
}

static cr_status parallel_for(const cr_llm *m, size_t n, size_t n_tasks, range_fn fn, void *ctx,
                              size_t scratch_floats, cr_error *err)
{
    if (n == 0) return CR_OK;
    unsigned nt = m->pool ? cr_pool_threads(m->pool) : 1;
    if (n_tasks > n) n_tasks = n;
    if (n_tasks == 0) n_tasks = 1;
    pf_job j = { fn, ctx, n, n_tasks, scratch_floats, NULL };
    if (scratch_floats) {
        j.scratch = cr_malloc(m->alloc, nt * scratch_floats * sizeof(float));
        if (!j.scratch) return cr_fail(err, CR_ERR_NOMEM, "out of memory (thread scratch)");
    }
    if (m->pool && n_tasks > 1) cr_pool_run(m->pool, n_tasks, pf_task, &j);
    else for (size_t t = 0; t < n_tasks; t++) pf_task(&j, t, 0);
    cr_free(m->alloc, j.scratch);
    return CR_OK;
}

/* tasks for n independent items: a few per thread, so that threads that
 * finish early take more */
static size_t task_count(const cr_llm *m, size_t n)
{
    size_t nt = m->pool ? cr_pool_threads(m->pool) : 1;
    return nt == 1 ? 1 : (n < 4 * nt ? n : 4 * nt);
}

/* ---- kernels -------------------------------------------------------------- */

/* f32 -> nearest bf16 (ties to even), returned as f32: what torch's
 * .to(torch.bfloat16) and every bf16 kernel's final store do. */
static inline float bf(float x) { return cr_round_bf16(x); }

static void bf_round(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = bf(x[i]);
}

/* The bf16 path's dot product: products of bf16 values are exact in f32,
 * so only the summation order decides the f32 sum, and a different sum can
 * round to a different bf16. Eight lanes reduced as AVX2 reduces a vector
 * ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)) match torch's CPU bf16 GEMM on
 * the fixtures where the plain dot() above does not. */
static float dot_bf16(const float *a, const float *b, size_t n)
{
    float l[8] = { 0 };
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) l[k] += a[i + k] * b[i + k];
    float s = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static const void *row_ptr(const cr_llm_weight *w, size_t r)
{
    return (const char *)w->data + r * w->cols * cr_dtype_size(w->dtype);
}

static void load_row(const cr_llm_weight *w, size_t r, float *dst)
{
    cr_convert_to_f32(w->dtype, row_ptr(w, r), dst, w->cols);
}

typedef struct mm_ctx {
    const cr_llm *m;
    const float *x;
    size_t T;
    const cr_llm_weight *w, *bias;
    float *y;
    bool bf16;          /* weights and outputs rounded to bf16 */
    size_t nb;          /* f32: weight rows per block */
    const float *xp;    /* f32: x packed in tiles of gemm->mr rows (cr_gemm_pack_x) */
} mm_ctx;

/* bf16 (gates): rows [begin, end) of W, each converted once and dotted
 * with every x[t] in the order that matches torch's bf16 GEMM */
static void mm_range_bf16(void *p, size_t begin, size_t end, float *row)
{
    const mm_ctx *c = p;
    size_t in = c->w->cols, out = c->w->rows;
    float b = 0;
    for (size_t r = begin; r < end; r++) {
        load_row(c->w, r, row);
        bf_round(row, in);
        if (c->bias && c->bias->data) {
            float bb;
            cr_convert_to_f32(c->bias->dtype, (const char *)c->bias->data + r * cr_dtype_size(c->bias->dtype), &bb, 1);
            b = bf(bb);
        }
        /* products of bf16 values are exact in f32, the sum is f32
         * (oneDNN's bf16 GEMM accumulates in f32), bias added before the
         * single rounding of the output */
        for (size_t t = 0; t < c->T; t++) c->y[t * out + r] = bf(dot_bf16(c->x + t * in, row, in) + b);
    }
}

/* f32: weight-row blocks [begin, end) of nb rows. The block is converted
 * to f32 and packed into panels once (cr_gemm_pack_w; bf16/f16 read in
 * place from the mapped shard) and multiplied with the packed tokens
 * (matmul packs them once per call) CR_MM_TCHUNK tokens at a time, so
 * that those tokens and the packed block both stay in L2.
 * scratch: (nb + pw) · K floats. */
#define CR_MM_TCHUNK 96     /* a multiple of every ISA's tile height (4, 6, 12) */

static void mm_range_f32(void *p, size_t begin, size_t end, float *wf)
{
    const mm_ctx *c = p;
    const cr_gemm_kernels *g = c->m->gemm;
    size_t K = c->w->cols, N = c->w->rows, pw = g->pw, mr = g->mr;
    float *tmp = wf + c->nb * K;
    for (size_t blk = begin; blk < end; blk++) {
        size_t r0 = blk * c->nb, r1 = r0 + c->nb < N ? r0 + c->nb : N;
        size_t np = (r1 - r0 + pw - 1) / pw;
        for (size_t q = 0; q < np; q++) {
            size_t n = r1 - r0 - q * pw < pw ? r1 - r0 - q * pw : pw;
            cr_gemm_pack_w(g, c->w->dtype, row_ptr(c->w, r0 + q * pw), n, K, wf + q * pw * K, tmp);
        }
        for (size_t t0 = 0; t0 < c->T; t0 += CR_MM_TCHUNK) {
            size_t nt = c->T - t0 < CR_MM_TCHUNK ? c->T - t0 : CR_MM_TCHUNK;
            for (size_t q = 0; q < np; q++) {
                size_t n = r1 - r0 - q * pw < pw ? r1 - r0 - q * pw : pw;
                for (size_t t = 0; t < nt; t += mr)
                    g->panel(c->xp + (t0 + t) * K, wf + q * pw * K, c->y + (t0 + t) * N + r0 + q * pw, N,
                             nt - t < mr ? nt - t : mr, n, K);
            }
        }
        if (c->bias && c->bias->data) {
            float *b = tmp;
            for (size_t r = r0; r < r1; r += K) {
                size_t m = r1 - r < K ? r1 - r : K;
                cr_convert_to_f32(c->bias->dtype, (const char *)c->bias->data + r * cr_dtype_size(c->bias->dtype), b, m);
                for (size_t t = 0; t < c->T; t++)
                    for (size_t i = 0; i < m; i++) c->y[t * N + r + i] += b[i];
            }
        }
    }
}

/* weight rows per block: about 512 KiB of packed f32 (the block stays in
 * L2 while the tokens stream past), a whole number of panels */
static size_t mm_block_rows(const cr_gemm_kernels *g, size_t K)
{
    size_t nb = (131072 / (K ? K : 1)) / g->pw * g->pw;
    return nb < g->pw ? g->pw : nb;
}

static cr_status matmul(const cr_llm *m, const float *x, size_t T, const cr_llm_weight *w,
                        const cr_llm_weight *bias, float *y, bool bf16, cr_error *err)
{
    mm_ctx c = { m, x, T, w, bias, y, bf16, 0, NULL };
    if (bf16) return parallel_for(m, w->rows, task_count(m, w->rows), mm_range_bf16, &c, w->cols + 1, err);
    const cr_gemm_kernels *g = m->gemm;
    size_t K = w->cols, tiles = (T + g->mr - 1) / g->mr;
    float *xp = cr_malloc(m->alloc, tiles * g->mr * K * sizeof(float));
    if (!xp) return cr_fail(err, CR_ERR_NOMEM, "out of memory (packed activations, %zu tokens)", T);
    for (size_t i = 0; i < tiles; i++)
        cr_gemm_pack_x(g, x + i * g->mr * K, K, T - i * g->mr < g->mr ? T - i * g->mr : g->mr, K, xp + i * g->mr * K);
    c.xp = xp;
    c.nb = mm_block_rows(g, K);
    size_t nblk = (w->rows + c.nb - 1) / c.nb;
    cr_status st = parallel_for(m, nblk, nblk, mm_range_f32, &c, (c.nb + g->pw) * K, err);
    cr_free(m->alloc, xp);
    return st;
}

cr_status cr_llm_matmul(const cr_llm *m, const float *x, size_t T, const cr_llm_weight *w,
                        const cr_llm_weight *bias, float *y, cr_error *err)
{
    return matmul(m, x, T, w, bias, y, false, err);
}

/* y = w ⊙ x / sqrt(mean(x²) + eps), over n elements (f32 like HF, which
 * upcasts to f32 for the norm). */
static void rmsnorm(float *y, const float *x, const float *w, size_t n, float eps)
{
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (size_t i = 0; i < n; i++) y[i] = w[i] * (x[i] * r);
}

/* Σ x[i]² in f32 summed in the order of torch's CPU sum over a contiguous
 * row (SumKernel.cpp vectorized_inner_sum with AVX2 vectors of 8): four
 * vector accumulators per row of four vectors, cascaded in levels of 16
 * rows (multi_row_sum), the leftover vectors into accumulator 0, the four
 * accumulators folded left to right, then the scalar tail and the eight
 * lanes added one by one. The variance decides how RMSNorm rounds to bf16,
 * and a double sum differs from torch's in the last f32 bit often enough
 * to flip roundings. */
static float torch_sumsq_f32(const float *x, size_t n)
{
    enum { V = 8, R = 4, LV = 4 };
    size_t nv = n / V, size = nv / R;
    float acc[LV][R][V];
    memset(acc, 0, sizeof acc);
    unsigned cl = 0;
    while (((size_t)1 << cl) < size) cl++;
    unsigned lp = cl / LV > 4 ? cl / LV : 4;
    size_t step = (size_t)1 << lp, mask = step - 1, i = 0;
#define ADD_ROW(row) for (int k = 0; k < R; k++) for (int e = 0; e < V; e++) { \
        float v = x[((row) * R + k) * V + e]; acc[0][k][e] += v * v; }
    while (i + step <= size) {
        for (size_t j = 0; j < step; j++, i++) ADD_ROW(i);
        for (int j = 1; j < LV; j++) {
            for (int k = 0; k < R; k++)
                for (int e = 0; e < V; e++) { acc[j][k][e] += acc[j - 1][k][e]; acc[j - 1][k][e] = 0; }
            if (i & (mask << (j * lp))) break;
        }
    }
    for (; i < size; i++) ADD_ROW(i);
#undef ADD_ROW
    for (int j = 1; j < LV; j++)
        for (int k = 0; k < R; k++)
            for (int e = 0; e < V; e++) acc[0][k][e] += acc[j][k][e];
    for (size_t r = size * R; r < nv; r++)
        for (int e = 0; e < V; e++) { float v = x[r * V + e]; acc[0][0][e] += v * v; }
    for (int k = 1; k < R; k++)
        for (int e = 0; e < V; e++) acc[0][0][e] += acc[0][k][e];
    float s = 0;
    for (size_t t = nv * V; t < n; t++) s += x[t] * x[t];
    for (int e = 0; e < V; e++) s += acc[0][0][e];
    return s;
}

/* LlamaRMSNorm on bf16 input: variance = mean of the f32 squares (torch's
 * sum order, then / n), normalised in f32, cast back to bf16
 * (`hidden_states.to(input_dtype)`), then multiplied by the bf16 weight and
 * rounded again. In place is fine (the sum is taken first). */
static void rmsnorm_bf16(float *y, const float *x, const float *w, size_t n, float eps)
{
    float r = 1.0f / sqrtf(torch_sumsq_f32(x, n) / (float)n + eps);
    for (size_t i = 0; i < n; i++) y[i] = bf(w[i] * bf(x[i] * r));
}

/* HF rotate_half RoPE on one head vector of hd: pairs (j, j + hd/2). */
static void rope(float *v, const float *cosv, const float *sinv, uint32_t hd)
{
    uint32_t h = hd / 2;
    for (uint32_t j = 0; j < h; j++) {
        float a = v[j], b = v[j + h];
        v[j] = a * cosv[j] - b * sinv[j];
        v[j + h] = b * cosv[j] + a * sinv[j];
    }
}

/* the same in bf16: q*cos and rotate_half(q)*sin each rounded, then their
 * sum (the tables are already bf16) */
static void rope_bf16(float *v, const float *cosv, const float *sinv, uint32_t hd)
{
    uint32_t h = hd / 2;
    for (uint32_t j = 0; j < h; j++) {
        float a = v[j], b = v[j + h];
        v[j] = bf(bf(a * cosv[j]) + bf(-b * sinv[j]));
        v[j + h] = bf(bf(b * cosv[j]) + bf(a * sinv[j]));
    }
}

typedef struct attn_ctx {
    const cr_llm_config *c;
    const float *q, *k, *v;     /* [T, nH*hd], [T, nKV*hd], [T, nKV*hd] */
    float *o;                   /* [T, nH*hd] */
    size_t T;
    size_t n_pad;               /* keys [0, n_pad) masked; those query rows give 0 */
    bool bf16;
    bool masked;                /* bf16: SDPA got an explicit mask (padded batch) */
    const cr_gemm_kernels *gemm;
} attn_ctx;

/* torch's Vectorized<float>::fexp_u20 (AVX2), the exp the CPU
 * flash-attention kernel uses for reduced-precision inputs: a degree-3
 * polynomial for 2^frac and the exponent built by integer arithmetic.
 * Reproduced bit for bit (fmaf = the FMA instructions) because its error
 * decides how the probabilities round to bf16. */
static float fexp_u20(float x)
{
    const float log2e = 1.44269502163f;            /* 0x3fb8aa3b */
    const float lo = -87.3365478516f, hi = 88.7228393555f;  /* 0xc2aeac50, 0x42b17218 */
    if (x < lo) return 0.0f;
    if (x > hi) return INFINITY;
    float src = x * log2e;
    float fr = src - floorf(src);
    float r = fmaf(fr, -0.079204240219773236f, -0.22433836478672356f);
    r = fmaf(fr, r, 0.30354260500649682f);
    r = fmaf(fr, r, 0.00010703434948458272f);
    src -= r;
    float t = fmaf(8388608.0f, src, 1065353216.0f);
    int32_t bits = (int32_t)t;                      /* cvttps: truncation */
    float y;
    memcpy(&y, &bits, 4);
    return y;
}

#define CR_SDPA_LANES 8        /* AVX2 Vectorized<float>::size() */
#define CR_SDPA_KV_SPLIT 512

/* One query row the way at::native cpu_flash_attention computes it in
 * bf16 (FlashAttentionKernel.cpp): keys in blocks of 512 over the row's key
 * range (the whole sequence with a mask; with is_causal only up to the end
 * of the row's query block), scores q·k·scale in f32 with -inf where masked,
 * per block max, exps by fexp_u20 over whole 8-lane groups and expf over the
 * tail, the f32 sum reduced lane-wise, the exps stored as bf16 for P·V
 * (f32 accumulation), online rescaling between blocks, finally out·(1/sum)
 * rounded to bf16. */
static void attn_row_bf16(const attn_ctx *a, size_t h, size_t t, float scale, float *s, float *o)
{
    const cr_llm_config *c = a->c;
    uint32_t hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    size_t qs = (size_t)c->n_heads * hd, ks = (size_t)c->n_kv_heads * hd, kvh = h / group, T = a->T;
    const float *q = a->q + t * qs + h * hd;
    size_t lo = c->sliding_window && t + 1 > c->sliding_window ? t + 1 - c->sliding_window : 0;
    if (lo < a->n_pad) lo = a->n_pad;
    size_t nk = T;
    if (!a->masked) {
        size_t qsplit = T >= 768 ? 256 : T >= 192 ? 64 : 32, m0 = t - t % qsplit;
        nk = m0 + qsplit < T ? m0 + qsplit : T;
    }
    float mx_old = -INFINITY, sum = 0;
    for (size_t n = 0; n < nk; n += CR_SDPA_KV_SPLIT) {
        size_t kb = nk - n < CR_SDPA_KV_SPLIT ? nk - n : CR_SDPA_KV_SPLIT;
        float mx = -INFINITY;
        for (size_t j = 0; j < kb; j++) {
            size_t u = n + j;
            s[j] = u >= lo && u <= t ? dot_bf16(q, a->k + u * ks + kvh * hd, hd) * scale : -INFINITY;
            if (s[j] > mx) mx = s[j];
        }
        if (mx_old > mx) mx = mx_old;
        if (mx == -INFINITY) continue;      /* nothing visible yet: block adds 0 */
        float lane[CR_SDPA_LANES] = { 0 };
        size_t nv = kb / CR_SDPA_LANES * CR_SDPA_LANES;
        for (size_t j = 0; j < nv; j++) {
            float e = fexp_u20(s[j] - mx);
            lane[j % CR_SDPA_LANES] += e;
            s[j] = bf(e);
        }
        float ts = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
        for (size_t j = nv; j < kb; j++) {
            float e = expf(s[j] - mx);
            ts += e;
            s[j] = bf(e);
        }
        float et = expf(mx_old - mx);
        sum = ts + et * sum;
        if (n > 0)
            for (uint32_t d = 0; d < hd; d++) o[d] *= et;
        mx_old = mx;
        for (size_t j = 0; j < kb; j++) {
            if (s[j] == 0.0f) continue;
            const float *v = a->v + (n + j) * ks + kvh * hd;
            for (uint32_t d = 0; d < hd; d++) o[d] += s[j] * v[d];
        }
    }
    if (!(sum > 0)) {
        for (uint32_t d = 0; d < hd; d++) o[d] = 0;
        return;
    }
    float rs = 1.0f / sum;
    for (uint32_t d = 0; d < hd; d++) o[d] = bf(o[d] * rs);
}

/* bf16 (gates), heads [begin, end): one query row at a time the way
 * torch's CPU flash-attention kernel computes it (attn_row_bf16). */
static void attn_range_bf16(void *p, size_t begin, size_t end, float *s)
{
    const attn_ctx *a = p;
    const cr_llm_config *c = a->c;
    uint32_t hd = c->head_dim;
    size_t qs = (size_t)c->n_heads * hd;
    float bscale = (float)pow((double)hd, -0.5);   /* HF's head_dim**-0.5, a Python float */
    for (size_t h = begin; h < end; h++)
        for (size_t t = 0; t < a->T; t++) {
            float *o = a->o + t * qs + h * hd;
            for (uint32_t j = 0; j < hd; j++) o[j] = 0;
            if (t < a->n_pad) continue;     /* every key masked: SDPA gives 0 */
            attn_row_bf16(a, h, t, bscale, s, o);
        }
}

#define CR_ATTN_QBLOCK 64

/* first key row t may see: the sliding window and the left padding */
static size_t attn_lo(const attn_ctx *a, size_t t)
{
    uint32_t w = a->c->sliding_window;
    size_t lo = w && t + 1 > w ? t + 1 - w : 0;
    return lo < a->n_pad ? a->n_pad : lo;
}

/* f32, tasks [begin, end) = (head, block of CR_ATTN_QBLOCK queries):
 * S = Q·Kᵀ over the keys the block can see (the nt kernel), scaled,
 * masked (causal, window, padding) and softmaxed per row in f32 as HF
 * does, then O = P·V (the nn kernel). A row that sees no key (a padding
 * row) gets P = 0, so O = 0 as SDPA gives. s: [QBLOCK, T]. */
static void attn_range_f32(void *p, size_t begin, size_t end, float *s)
{
    const attn_ctx *a = p;
    const cr_llm_config *c = a->c;
    const cr_gemm_kernels *g = a->gemm;
    size_t hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    size_t qs = (size_t)c->n_heads * hd, ks = (size_t)c->n_kv_heads * hd, T = a->T;
    size_t nqb = (T + CR_ATTN_QBLOCK - 1) / CR_ATTN_QBLOCK;
    float scale = 1.0f / sqrtf((float)hd);
    for (size_t task = begin; task < end; task++) {
        size_t h = task / nqb, t0 = task % nqb * CR_ATTN_QBLOCK, kvh = h / group;
        size_t t1 = t0 + CR_ATTN_QBLOCK < T ? t0 + CR_ATTN_QBLOCK : T;
        size_t lo0 = attn_lo(a, t0);
        if (lo0 > t0) lo0 = t0;          /* padding rows see nothing; keep the range valid */
        size_t nk = t1 - lo0, nq = t1 - t0;
        g->nt(a->q + t0 * qs + h * hd, qs, a->k + lo0 * ks + kvh * hd, ks, s, nk, nq, nk, hd);
        for (size_t i = 0; i < nq; i++) {
            size_t t = t0 + i, lo = attn_lo(a, t);
            float *row = s + i * nk;
            float mx = -INFINITY;
            for (size_t u = lo; u <= t; u++) {
                float v = row[u - lo0] * scale;
                row[u - lo0] = v;
                if (v > mx) mx = v;
            }
            float sum = t >= lo ? (float)g->exp_sum(row + (lo - lo0), row + (lo - lo0), mx, t + 1 - lo) : 0.0f;
            for (size_t u = lo0; u < t1; u++) {
                bool seen = u >= lo && u <= t;
                row[u - lo0] = seen ? row[u - lo0] / sum : 0.0f;
            }
        }
        g->nn(s, nk, a->v + lo0 * ks + kvh * hd, ks, a->o + t0 * qs + h * hd, qs, nq, hd, nk);
    }
}

/* ---- the forward pass ----------------------------------------------------- */

static void to_f32(const cr_llm_weight *w, float *dst, bool bf16)
{
    cr_convert_to_f32(w->dtype, w->data, dst, w->cols);
    if (bf16) bf_round(dst, w->cols);
}

typedef struct bufs {
    float *h, *x, *q, *k, *v, *att, *g, *u, *cosb, *sinb, *wv;
} bufs;

static cr_status head_outputs(const cr_llm *m, cr_llm_run *run, const float *xn, cr_error *err);

cr_status cr_llm_forward(const cr_llm *m, cr_llm_run *run, cr_error *err)
{
    const cr_llm_config *c = &m->cfg;
    size_t T = run->n_ids;
    run->nll_sum = 0;
    run->nll_count = 0;
    if (T == 0) return cr_fail(err, CR_ERR_ARG, "forward pass on an empty token sequence");
    if (run->n_pad >= T) return cr_fail(err, CR_ERR_ARG, "forward pass with %zu padding positions of %zu", run->n_pad, T);
    const bool B = run->bf16;
    void (*norm)(float *, const float *, const float *, size_t, float) = B ? rmsnorm_bf16 : rmsnorm;
    for (size_t t = 0; t < T; t++)
        if (run->ids[t] < 0 || (uint32_t)run->ids[t] >= c->vocab)
            return cr_fail(err, CR_ERR_ARG, "token id %d at position %zu is outside the embedding (%u rows)",
                           run->ids[t], t, c->vocab);
    if ((run->logits || run->want_nll) && !m->lm_head.data)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: no lm_head.weight and tie_word_embeddings is false", m->model->dir);
    size_t H = c->hidden, I = c->intermediate, hd = c->head_dim;
    size_t qd = (size_t)c->n_heads * hd, kd = (size_t)c->n_kv_heads * hd;
    size_t wmax = H > I ? H : I;
    if (qd > wmax) wmax = qd;
    bufs b = { 0 };
    const cr_allocator *A = m->alloc;
    cr_status st = CR_OK;
    b.h = cr_malloc(A, T * H * sizeof(float));      /* [T, H] residual stream */
    b.x = cr_malloc(A, T * wmax * sizeof(float));   /* [T, max(H, I, qd)] normed input / scratch */
    b.q = cr_malloc(A, T * qd * sizeof(float));     /* [T, nH*hd] */
    b.k = cr_malloc(A, T * kd * sizeof(float));     /* [T, nKV*hd] */
    b.v = cr_malloc(A, T * kd * sizeof(float));
    b.att = cr_malloc(A, T * (qd > H ? qd : H) * sizeof(float));   /* [T, max(nH*hd, H)] attention output; MoE output */
    b.g = cr_malloc(A, T * I * sizeof(float));      /* [T, I] gate, then silu(gate)*up */
    b.u = cr_malloc(A, T * I * sizeof(float));      /* [T, I] up */
    b.cosb = cr_malloc(A, T * (hd / 2) * sizeof(float));
    b.sinb = cr_malloc(A, T * (hd / 2) * sizeof(float));
    b.wv = cr_malloc(A, (wmax + 2 * hd) * sizeof(float)); /* one norm weight vector (+ q/k norm) */
    if (!b.h || !b.x || !b.q || !b.k || !b.v || !b.att || !b.g || !b.u || !b.cosb || !b.sinb || !b.wv) {
        st = cr_fail(err, CR_ERR_NOMEM, "out of memory for activations (%zu tokens)", T);
        goto out;
    }

    /* RoPE tables [T, hd/2]. Dynamic NTK rescales theta only past
     * max_position_embeddings. */
    {
        size_t half = hd / 2;
        float scale_theta = 1.0f;
        bool dyn = c->rope_type == CR_ROPE_DYNAMIC && c->max_pos && T > c->max_pos;
        if (dyn) {
            double base = c->rope_theta * pow((c->rope_factor * (double)T / c->max_pos) - (c->rope_factor - 1),
                                              (double)hd / (double)(hd - 2));
            scale_theta = (float)base;
        }
        for (size_t j = 0; j < half; j++) {
            float inv = m->inv_freq[j];
            if (dyn) inv = 1.0f / powf(scale_theta, (float)(2 * j) / (float)hd);
            for (size_t t = 0; t < T; t++) {
                float ang = (float)t * inv;
                /* HF computes the tables in f32 and casts them to the
                 * activation dtype */
                b.cosb[t * half + j] = B ? bf(cosf(ang)) : cosf(ang);
                b.sinb[t * half + j] = B ? bf(sinf(ang)) : sinf(ang);
            }
        }
    }

    for (size_t t = 0; t < T; t++) load_row(&m->embed, (size_t)run->ids[t], b.h + t * H);
    if (B) bf_round(b.h, T * H);

    uint32_t stop = run->stop_layer && run->stop_layer < c->n_layers ? run->stop_layer : c->n_layers;
    for (uint32_t l = 0;; l++) {
        /* record hs[l], the residual stream entering layer l */
        if (l < c->n_layers) {
            if (run->hidden_last) memcpy(run->hidden_last + (size_t)l * H, b.h + (T - 1) * H, H * sizeof(float));
            if (run->hidden_all) memcpy(run->hidden_all + (size_t)l * T * H, b.h, T * H * sizeof(float));
        }
        if (l == stop) break;
        const cr_llm_layer *L = &m->layers[l];
        float *nw = b.wv;
        to_f32(&L->in_norm, nw, B);
        for (size_t t = 0; t < T; t++) norm(b.x + t * H, b.h + t * H, nw, H, c->rms_eps);
        if ((st = matmul(m, b.x, T, &L->q, &L->q_bias, b.q, B, err)) ||
            (st = matmul(m, b.x, T, &L->k, &L->k_bias, b.k, B, err)) ||
            (st = matmul(m, b.x, T, &L->v, &L->v_bias, b.v, B, err)))
            goto out;
        if (c->qk_norm) {
            float *qn = b.wv, *kn = b.wv + hd;
            to_f32(&L->q_norm, qn, B);
            to_f32(&L->k_norm, kn, B);
            /* per-head RMSNorm over hd, in place (rmsnorm reads each
             * element before writing it) */
            for (size_t t = 0; t < T; t++) {
                for (size_t h = 0; h < c->n_heads; h++)
                    norm(b.q + t * qd + h * hd, b.q + t * qd + h * hd, qn, hd, c->rms_eps);
                for (size_t h = 0; h < c->n_kv_heads; h++)
                    norm(b.k + t * kd + h * hd, b.k + t * kd + h * hd, kn, hd, c->rms_eps);
            }
        }
        for (size_t t = 0; t < T; t++) {
            const float *cs = b.cosb + t * (hd / 2), *sn = b.sinb + t * (hd / 2);
            void (*rot)(float *, const float *, const float *, uint32_t) = B ? rope_bf16 : rope;
            for (size_t h = 0; h < c->n_heads; h++) rot(b.q + t * qd + h * hd, cs, sn, (uint32_t)hd);
            for (size_t h = 0; h < c->n_kv_heads; h++) rot(b.k + t * kd + h * hd, cs, sn, (uint32_t)hd);
        }
        attn_ctx ac = { c, b.q, b.k, b.v, b.att, T, run->n_pad, B, run->sdpa_mask, m->gemm };
        if (B) {
            size_t srow = T < CR_SDPA_KV_SPLIT ? CR_SDPA_KV_SPLIT : T;
            st = parallel_for(m, c->n_heads, task_count(m, c->n_heads), attn_range_bf16, &ac, srow, err);
        } else {
            size_t n = c->n_heads * ((T + CR_ATTN_QBLOCK - 1) / CR_ATTN_QBLOCK);
            st = parallel_for(m, n, n, attn_range_f32, &ac, CR_ATTN_QBLOCK * T, err);
        }
        if (st) goto out;
        if ((st = matmul(m, b.att, T, &L->o, &L->o_bias, b.x, B, err))) goto out;
        if (B) for (size_t i = 0; i < T * H; i++) b.h[i] = bf(b.h[i] + b.x[i]);
        else for (size_t i = 0; i < T * H; i++) b.h[i] += b.x[i];

        to_f32(&L->post_norm, nw, B);
        for (size_t t = 0; t < T; t++) norm(b.x + t * H, b.h + t * H, nw, H, c->rms_eps);
        if (L->router.data) {
            if (B) { st = cr_fail(err, CR_ERR_UNSUPPORTED, "the bf16 forward pass has no MoE layers"); goto out; }
            if ((st = cr_llm_moe_mlp(m, L, b.x, T, b.att, err))) goto out;
            for (size_t i = 0; i < T * H; i++) b.h[i] += b.att[i];
            continue;
        }
        if ((st = matmul(m, b.x, T, &L->gate, &L->gate_bias, b.g, B, err)) ||
            (st = matmul(m, b.x, T, &L->up, &L->up_bias, b.u, B, err)))
            goto out;
        if (B) {
            /* act_fn(gate) and the product with up are separate bf16 ops */
            for (size_t i = 0; i < T * I; i++) {
                float z = b.g[i];
                b.g[i] = bf(bf(z / (1.0f + expf(-z))) * b.u[i]);
            }
        } else {
            m->gemm->silu_mul(b.g, b.u, T * I);
        }
        if ((st = matmul(m, b.g, T, &L->down, &L->down_bias, b.x, B, err))) goto out;
        if (B) for (size_t i = 0; i < T * H; i++) b.h[i] = bf(b.h[i] + b.x[i]);
        else for (size_t i = 0; i < T * H; i++) b.h[i] += b.x[i];
    }
    if (stop == c->n_layers) {
        /* hs[L] = final norm of the last layer's output, as HF reports it */
        float *nw = b.wv;
        to_f32(&m->norm, nw, B);
        for (size_t t = 0; t < T; t++) norm(b.x + t * H, b.h + t * H, nw, H, c->rms_eps);
        size_t L = c->n_layers;
        if (run->hidden_last) memcpy(run->hidden_last + L * H, b.x + (T - 1) * H, H * sizeof(float));
        if (run->hidden_all) memcpy(run->hidden_all + L * T * H, b.x, T * H * sizeof(float));
        if (run->logits || run->want_nll) st = head_outputs(m, run, b.x, err);
    }
out:
    cr_free(A, b.h); cr_free(A, b.x); cr_free(A, b.q); cr_free(A, b.k); cr_free(A, b.v);
    cr_free(A, b.att); cr_free(A, b.g); cr_free(A, b.u); cr_free(A, b.cosb); cr_free(A, b.sinb);
    cr_free(A, b.wv);
    return st;
}

/* NLL of positions [begin, end) of one logits block (per-position results,
 * summed in order by the caller so the total never depends on threads) */
typedef struct nll_ctx {
    const float *lg;        /* [nb, V] */
    size_t t0, V;
    const int32_t *ids;
    double *out;            /* [nb] */
    const cr_gemm_kernels *gemm;
} nll_ctx;

static void nll_range(void *p, size_t begin, size_t end, float *scratch)
{
    (void)scratch;
    const nll_ctx *c = p;
    for (size_t i = begin; i < end; i++) {
        const float *row = c->lg + i * c->V;
        float mx = -INFINITY;
        for (size_t j = 0; j < c->V; j++) if (row[j] > mx) mx = row[j];
        /* the kernels' f32 exp (within 2 ulp, a fifth of expf's time over
         * the vocabulary), lanes summed in f32 per chunk, chunks in double:
         * the NLL moves by ~1e-7 */
        double sum = c->gemm->exp_sum(NULL, row, mx, c->V);
        c->out[i] = -((double)row[c->ids[c->t0 + i + 1]] - (double)mx - log(sum));
    }
}

#define CR_HEAD_BLOCK 256

/* Logits and NLL from the final-normed states xn [T, H], in blocks of
 * positions so that at most [block, V] logits exist at once. Without
 * `logits`, positions before the first scored prediction are skipped. */
static cr_status head_outputs(const cr_llm *m, cr_llm_run *run, const float *xn, cr_error *err)
{
    size_t T = run->n_ids, H = m->cfg.hidden, V = m->cfg.vocab;
    size_t block = CR_HEAD_BLOCK;
    size_t first = run->nll_from > 1 ? run->nll_from - 1 : 0;   /* position predicting ids[nll_from] */
    if (run->logits) first = 0;
    float *lg = run->logits ? NULL : cr_malloc(m->alloc, block * V * sizeof(float));
    double *nll = cr_malloc(m->alloc, block * sizeof(double));
    cr_status st = CR_OK;
    if ((!run->logits && !lg) || !nll) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory for logits"); goto out; }
    for (size_t t0 = first; t0 < T; t0 += block) {
        size_t nb = T - t0 < block ? T - t0 : block;
        float *dst = run->logits ? run->logits + t0 * V : lg;
        if ((st = cr_llm_matmul(m, xn + t0 * H, nb, &m->lm_head, NULL, dst, err))) break;
        if (!run->want_nll) continue;
        size_t np = t0 + nb < T ? nb : nb - 1;    /* the last position predicts nothing */
        size_t skip = run->nll_from > 1 && run->nll_from - 1 > t0 ? run->nll_from - 1 - t0 : 0;
        if (np <= skip) continue;
        nll_ctx nc = { dst + skip * V, t0 + skip, V, run->ids, nll, m->gemm };
        if ((st = parallel_for(m, np - skip, task_count(m, np - skip), nll_range, &nc, 0, err))) break;
        for (size_t i = 0; i < np - skip; i++) run->nll_sum += nll[i];
        run->nll_count += np - skip;
    }
out:
    cr_free(m->alloc, lg);
    cr_free(m->alloc, nll);
    return st;
}
