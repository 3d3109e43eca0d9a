/* moe_forward.c — the sparse MLP of Mixtral, Qwen2-MoE and Qwen3-MoE
 * layers (forward.h): binding the router and experts in every layout
 * crucible and transformers write, and the f32 routed computation as
 * transformers 5 does it (MixtralSparseMoeBlock, Qwen2MoeSparseMoeBlock,
 * Qwen3MoeSparseMoeBlock): router logits x·Gᵀ, softmax in f32, top-k,
 * optional renormalisation, each expert's SwiGLU on its tokens times
 * their weights, plus Qwen2-MoE's shared expert times sigmoid(x·g). The
 * matmuls are forward.c's (cr_llm_matmul, on the pool).
 */
#include "forward.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A view of rows [r0, r0 + rows) of a stacked tensor as a [rows, cols]
 * weight. */
static cr_llm_weight view(const cr_model *m, const cr_model_tensor *mt, size_t r0, uint32_t rows, uint32_t cols)
{
    cr_llm_weight w = { 0 };
    const char *base = cr_st_data(&m->shards[mt->shard], mt->info);
    w.data = base + r0 * cols * cr_dtype_size(mt->info->dtype);
    w.dtype = mt->info->dtype;
    w.rows = rows;
    w.cols = cols;
    return w;
}

static cr_status fused(const cr_model *model, uint32_t l, const char *what, uint32_t E, uint32_t rows, uint32_t cols,
                       const cr_model_tensor **out, cr_error *err)
{
    char nm[160];
    snprintf(nm, sizeof nm, "model.layers.%u.mlp.experts.%s", l, what);
    const cr_model_tensor *mt = cr_model_find(model, nm);
    if (!mt) return cr_fail(err, CR_ERR_FORMAT, "%s: tensor %s is missing", model->dir, nm);
    const cr_st_tensor *t = mt->info;
    if (t->dtype != CR_DTYPE_F32 && t->dtype != CR_DTYPE_F16 && t->dtype != CR_DTYPE_BF16)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s (F32, F16, BF16 supported)", model->dir, nm,
                       cr_dtype_name(t->dtype));
    if (t->ndim != 3 || t->shape[0] != E || t->shape[1] != rows || t->shape[2] != cols)
        return cr_fail(err, CR_ERR_FORMAT, "%s: tensor %s is not [%u,%u,%u]", model->dir, nm, E, rows, cols);
    if (!cr_st_data(&model->shards[mt->shard], t))
        return cr_fail(err, CR_ERR_ARG, "%s: model was opened header-only", model->dir);
    *out = mt;
    return CR_OK;
}

cr_status cr_llm_bind_moe(const cr_model *model, cr_llm *m, uint32_t l, cr_error *err)
{
    const cr_llm_config *c = &m->cfg;
    cr_llm_layer *L = &m->layers[l];
    uint32_t E = c->n_experts, H = c->hidden, I = c->moe_intermediate;
    char nm[200];
    cr_status st;
    L->experts = cr_calloc(m->alloc, E, sizeof *L->experts);
    if (!L->experts) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    snprintf(nm, sizeof nm, "model.layers.%u.block_sparse_moe.gate.weight", l);
    bool classic_mixtral = cr_model_find(model, nm) != NULL;
    if (!classic_mixtral) snprintf(nm, sizeof nm, "model.layers.%u.mlp.gate.weight", l);
    if ((st = cr_llm_bind_weight(model, nm, E, H, false, &L->router, err))) return st;
    snprintf(nm, sizeof nm, "model.layers.%u.mlp.experts.gate_up_proj", l);
    if (cr_model_find(model, nm)) {
        /* transformers 5 / mergekit 0.1.5: expert e's gate rows, then its up rows */
        const cr_model_tensor *gu, *dn;
        if ((st = fused(model, l, "gate_up_proj", E, 2 * I, H, &gu, err)) ||
            (st = fused(model, l, "down_proj", E, H, I, &dn, err)))
            return st;
        for (uint32_t e = 0; e < E; e++) {
            L->experts[e].gate = view(model, gu, (size_t)e * 2 * I, I, H);
            L->experts[e].up = view(model, gu, (size_t)e * 2 * I + I, I, H);
            L->experts[e].down = view(model, dn, (size_t)e * H, H, I);
        }
    } else {
        for (uint32_t e = 0; e < E; e++) {
            cr_llm_expert *x = &L->experts[e];
            static const char *const classic[3] = { "w1", "w3", "w2" }, *const proj[3] = { "gate_proj", "up_proj", "down_proj" };
            cr_llm_weight *dst[3] = { &x->gate, &x->up, &x->down };
            for (int k = 0; k < 3; k++) {
                if (classic_mixtral)
                    snprintf(nm, sizeof nm, "model.layers.%u.block_sparse_moe.experts.%u.%s.weight", l, e, classic[k]);
                else
                    snprintf(nm, sizeof nm, "model.layers.%u.mlp.experts.%u.%s.weight", l, e, proj[k]);
                if ((st = cr_llm_bind_weight(model, nm, k == 2 ? H : I, k == 2 ? I : H, false, dst[k], err))) return st;
            }
        }
    }
    if (c->shared_intermediate) {
        uint32_t S = c->shared_intermediate;
        snprintf(nm, sizeof nm, "model.layers.%u.mlp.shared_expert.gate_proj.weight", l);
        if ((st = cr_llm_bind_weight(model, nm, S, H, false, &L->shared.gate, err))) return st;
        snprintf(nm, sizeof nm, "model.layers.%u.mlp.shared_expert.up_proj.weight", l);
        if ((st = cr_llm_bind_weight(model, nm, S, H, false, &L->shared.up, err))) return st;
        snprintf(nm, sizeof nm, "model.layers.%u.mlp.shared_expert.down_proj.weight", l);
        if ((st = cr_llm_bind_weight(model, nm, H, S, false, &L->shared.down, err))) return st;
        snprintf(nm, sizeof nm, "model.layers.%u.mlp.shared_expert_gate.weight", l);
        /* an nn.Linear(H, 1): [1, H], which bind reads as a vector */
        const cr_model_tensor *mt = cr_model_find(model, nm);
        if (!mt || mt->info->ndim != 2 || mt->info->shape[0] != 1 || mt->info->shape[1] != H)
            return cr_fail(err, CR_ERR_FORMAT, "%s: tensor %s is missing or not [1,%u]", model->dir, nm, H);
        if (mt->info->dtype != CR_DTYPE_F32 && mt->info->dtype != CR_DTYPE_F16 && mt->info->dtype != CR_DTYPE_BF16)
            return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s", model->dir, nm,
                           cr_dtype_name(mt->info->dtype));
        L->shared_gate = view(model, mt, 0, 1, H);
    }
    return CR_OK;
}

/* y[T, H] = down(silu(gate(x)) * up(x)) for one expert on its tokens;
 * g, u: [T, I] scratch */
static cr_status swiglu(const cr_llm *m, const cr_llm_expert *e, const float *x, size_t T, float *g, float *u, float *y,
                        cr_error *err)
{
    cr_status st;
    if ((st = cr_llm_matmul(m, x, T, &e->gate, NULL, g, err)) || (st = cr_llm_matmul(m, x, T, &e->up, NULL, u, err)))
        return st;
    size_t n = T * e->gate.rows;
    for (size_t i = 0; i < n; i++) {
        float z = g[i];
        g[i] = z / (1.0f + expf(-z)) * u[i];
    }
    return cr_llm_matmul(m, g, T, &e->down, NULL, y, err);
}

cr_status cr_llm_moe_mlp(const cr_llm *m, const cr_llm_layer *L, const float *x, size_t T, float *y, cr_error *err)
{
    const cr_llm_config *c = &m->cfg;
    size_t E = c->n_experts, K = c->top_k, H = c->hidden;
    size_t I = c->moe_intermediate > c->shared_intermediate ? c->moe_intermediate : c->shared_intermediate;
    const cr_allocator *A = m->alloc;
    float *logits = cr_malloc(A, T * E * sizeof(float));      /* [T, E] */
    float *wsel = cr_malloc(A, T * K * sizeof(float));        /* [T, K] routing weights */
    uint32_t *isel = cr_malloc(A, T * K * sizeof(uint32_t));  /* [T, K] experts */
    float *xe = cr_malloc(A, T * H * sizeof(float));          /* [Te, H] one expert's tokens */
    float *ye = cr_malloc(A, T * H * sizeof(float));
    float *g = cr_malloc(A, T * I * sizeof(float)), *u = cr_malloc(A, T * I * sizeof(float));
    size_t *tok = cr_malloc(A, T * sizeof(size_t));
    float *tw = cr_malloc(A, T * sizeof(float));
    cr_status st = CR_OK;
    if (!logits || !wsel || !isel || !xe || !ye || !g || !u || !tok || !tw) {
        st = cr_fail(err, CR_ERR_NOMEM, "out of memory for the MoE layer (%zu tokens)", T);
        goto out;
    }
    if ((st = cr_llm_matmul(m, x, T, &L->router, NULL, logits, err))) goto out;
    for (size_t t = 0; t < T; t++) {
        float *p = logits + t * E, mx = -INFINITY, sum = 0;
        for (size_t e = 0; e < E; e++) if (p[e] > mx) mx = p[e];
        for (size_t e = 0; e < E; e++) { p[e] = expf(p[e] - mx); sum += p[e]; }
        for (size_t e = 0; e < E; e++) p[e] /= sum;
        /* top-k by selection: the largest first, ties to the lower index */
        float ksum = 0;
        for (size_t k = 0; k < K; k++) {
            size_t best = E;
            for (size_t e = 0; e < E; e++) {
                bool taken = false;
                for (size_t j = 0; j < k; j++) taken |= isel[t * K + j] == e;
                if (!taken && (best == E || p[e] > p[best])) best = e;
            }
            isel[t * K + k] = (uint32_t)best;
            wsel[t * K + k] = p[best];
            ksum += p[best];
        }
        if (c->norm_topk)
            for (size_t k = 0; k < K; k++) wsel[t * K + k] /= ksum;
    }
    memset(y, 0, T * H * sizeof(float));
    for (size_t e = 0; e < E; e++) {
        size_t n = 0;
        for (size_t t = 0; t < T; t++)
            for (size_t k = 0; k < K; k++)
                if (isel[t * K + k] == e) { tok[n] = t; tw[n] = wsel[t * K + k]; n++; }
        if (!n) continue;
        for (size_t i = 0; i < n; i++) memcpy(xe + i * H, x + tok[i] * H, H * sizeof(float));
        if ((st = swiglu(m, &L->experts[e], xe, n, g, u, ye, err))) goto out;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < H; j++) y[tok[i] * H + j] += ye[i * H + j] * tw[i];
    }
    if (L->shared_gate.data) {
        if ((st = swiglu(m, &L->shared, x, T, g, u, ye, err))) goto out;
        if ((st = cr_llm_matmul(m, x, T, &L->shared_gate, NULL, tw, err))) goto out;   /* [T, 1] */
        for (size_t t = 0; t < T; t++) {
            float s = 1.0f / (1.0f + expf(-tw[t]));
            for (size_t j = 0; j < H; j++) y[t * H + j] += s * ye[t * H + j];
        }
    }
out:
    cr_free(A, logits); cr_free(A, wsel); cr_free(A, isel); cr_free(A, xe); cr_free(A, ye);
    cr_free(A, g); cr_free(A, u); cr_free(A, tok); cr_free(A, tw);
    return st;
}
