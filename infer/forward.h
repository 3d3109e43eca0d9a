/* forward.h — a Llama / Mistral / Qwen2 / Qwen3 decoder forward pass (and
 * the Mixtral / Qwen2-MoE / Qwen3-MoE sparse MLPs, moe_forward.c) over
 * the weights of an opened model directory (formats/model.h).
 *
 * Used for mergekit-moe's `hidden` gates (the residual stream entering each
 * layer at the last prompt token) and for `crucible eval` (perplexity). The
 * whole prompt runs as one [T, H] block: no KV cache, causal mask, f32
 * activations — or, with cr_llm_run.bf16, activations rounded to bf16
 * exactly where transformers rounds them on CPU (mergekit-moe's gates),
 * with optional left padding. Weights stay in the mmapped safetensors shards in their
 * stored dtype (F32, F16 or BF16); the f32 matmul converts a block of rows
 * at a time (F32 rows are read in place) and multiplies it with every token
 * by the blocked SIMD kernels of gemm.h. Matmuls and attention run as tasks
 * on a borrowed thread pool (core/pool.h) by weight-row block / (head,
 * query block); every output element is computed by the same code whatever
 * the thread count, so results do not depend on it.
 *
 * Math: ../shared/reference/formats-and-moe.md §2 (RMSNorm with eps inside
 * the root, HF half-split RoPE with default / linear / dynamic / llama3
 * scaling, grouped-query attention, SwiGLU, Qwen2 q/k/v biases, Qwen3 q/k
 * norms, Mistral sliding window). Spec: spec/inference.md.
 */
#ifndef CR_INFER_FORWARD_H
#define CR_INFER_FORWARD_H

#include "base.h"
#include "dtype.h"
#include "gemm.h"
#include "model.h"

typedef struct cr_pool cr_pool;

typedef enum cr_rope_type {
    CR_ROPE_DEFAULT,
    CR_ROPE_LINEAR,
    CR_ROPE_DYNAMIC,
    CR_ROPE_LLAMA3
} cr_rope_type;

typedef struct cr_llm_config {
    char model_type[32];        /* "llama", "mistral", "qwen2", "qwen3" */
    uint32_t n_layers, hidden, intermediate;
    uint32_t n_heads, n_kv_heads, head_dim;
    uint32_t vocab;             /* rows of embed_tokens */
    uint32_t max_pos;           /* max_position_embeddings (0 if absent) */
    uint32_t sliding_window;    /* 0: none */
    float rms_eps;
    float rope_theta;
    cr_rope_type rope_type;
    float rope_factor, low_freq_factor, high_freq_factor;
    uint32_t rope_orig_max_pos;
    bool qkv_bias;              /* Qwen2, or attention_bias */
    bool o_bias, mlp_bias;
    bool qk_norm;               /* Qwen3, Qwen3-MoE */
    bool tie_word_embeddings;
    /* MoE (mixtral, qwen2_moe, qwen3_moe; 0 experts: dense) */
    uint32_t n_experts, top_k;
    uint32_t moe_intermediate;      /* each routed expert's I */
    uint32_t shared_intermediate;   /* Qwen2-MoE's shared expert (0: none) */
    uint32_t sparse_step;           /* decoder_sparse_step (1: every layer) */
    bool norm_topk;                 /* renormalise the top-k weights (Mixtral: always) */
    uint64_t dense_layers;          /* bit l: mlp_only_layers (layers < 64) */
} cr_llm_config;

/* One weight: a borrowed view of a tensor in a mapped shard. */
typedef struct cr_llm_weight {
    const void *data;           /* NULL: absent (optional weights) */
    cr_dtype dtype;
    uint32_t rows, cols;        /* [out, in]; vectors have rows == 1 */
} cr_llm_weight;

/* One MoE expert's SwiGLU MLP (views into stacked tensors when fused). */
typedef struct cr_llm_expert {
    cr_llm_weight gate, up, down;
} cr_llm_expert;

typedef struct cr_llm_layer {
    cr_llm_weight in_norm, post_norm;
    cr_llm_weight q, k, v, o, q_bias, k_bias, v_bias, o_bias;
    cr_llm_weight q_norm, k_norm;
    cr_llm_weight gate, up, down, gate_bias, up_bias, down_bias;
    /* MoE layers (moe.data of the router non-NULL): router [E, H], the
     * routed experts, the shared expert and its [1, H] gate (Qwen2-MoE) */
    cr_llm_weight router, shared_gate;
    cr_llm_expert *experts, shared;
} cr_llm_layer;

typedef struct cr_llm {
    const cr_allocator *alloc;
    const cr_model *model;      /* borrowed; must outlive the cr_llm */
    cr_llm_config cfg;
    cr_llm_weight embed, norm, lm_head;   /* lm_head.data NULL: no head */
    cr_llm_layer *layers;
    float *inv_freq;            /* [rotary_dim / 2], before dynamic scaling */
    cr_pool *pool;              /* borrowed: the threads of matmul/attention; NULL = the caller's only */
    const cr_gemm_kernels *gemm;  /* f32 kernels; cr_llm_open picks the CPU's best ($CRUCIBLE_ISA) */
} cr_llm;

/* Read the config and bind every weight of `model` (opened with data, not
 * header-only). Checks model_type (llama, mistral, qwen2, qwen3), hidden_act
 * (silu), rope type, and every tensor's presence, dtype (F32/F16/BF16) and
 * shape; errors name the tensor or config key (CR_ERR_FORMAT,
 * CR_ERR_UNSUPPORTED; an unknown or unsupported $CRUCIBLE_ISA as
 * cr_gemm_pick). pool is NULL (one thread); set it after opening. */
cr_status cr_llm_open(const cr_allocator *alloc, const cr_model *model, cr_llm *out, cr_error *err);
void cr_llm_free(cr_llm *m);

/* Parse the architecture fields of a config.json object (what cr_llm_open
 * uses); vocab is left 0. */
cr_status cr_llm_config_parse(const cJSON *config, const char *name, cr_llm_config *cfg, cr_error *err);

/* One forward pass over ids[0..n_ids) at positions 0..n_ids-1. Every
 * output pointer is optional (NULL: not computed):
 *   hidden_last [ (n_layers + 1) * hidden ]: HF's hidden_states at the last
 *       position — hs[l] for l < n_layers is the residual stream entering
 *       layer l (hs[0] = embeddings), hs[n_layers] = final norm of the last
 *       layer's output;
 *   hidden_all [ (n_layers + 1) * n_ids * hidden ]: the same at every
 *       position;
 *   logits [ n_ids * vocab ] (needs an lm_head or tied embeddings);
 *   want_nll: nll_sum = sum over t < n_ids-1 with t+1 >= nll_from of
 *       -log softmax(logits[t])[ids[t+1]] (double), nll_count = how many.
 *       Computed in blocks of positions so the [T, vocab] logits never
 *       exist at once; without `logits`, positions before nll_from-1 skip
 *       the head entirely (sliding-window evaluation).
 * stop_layer (0 = all): stop once hs[stop_layer] is known (gates need
 * hs[0..L-1] only), so later outputs are not filled. Errors: CR_ERR_ARG for
 * an id outside the embedding or an empty input, CR_ERR_UNSUPPORTED for
 * logits without a head, CR_ERR_NOMEM. */
typedef struct cr_llm_run {
    const int32_t *ids;
    size_t n_ids;
    float *hidden_last;
    float *hidden_all;
    float *logits;
    bool want_nll;
    size_t nll_from;            /* first target index scored (0 or 1: all) */
    double nll_sum;
    size_t nll_count;
    uint32_t stop_layer;
    /* bf16: emulate transformers running the model in torch.bfloat16 on CPU
     * (what mergekit-moe's `hidden` gates do): weights rounded to bf16 and
     * every activation rounded to bf16 where torch rounds it — after each
     * Linear (f32 accumulation), inside RMSNorm before the weight multiply
     * and after it, RoPE tables and both products and their sum, the SDPA
     * output (scores/softmax in f32, probabilities rounded to bf16 before
     * P·V, as the CPU flash-attention kernel does), SiLU, the gate·up
     * product and each residual add. spec/inference.md lists the points. */
    bool bf16;
    /* n_pad: ids[0..n_pad) are left padding (a padded batch row): they are
     * masked out as keys, positions still count from 0 at ids[0] (HF's
     * position_ids without a cache), and a padding query row attends to
     * nothing, so its attention output is 0 (torch's SDPA on a fully masked
     * row). n_pad < n_ids. */
    size_t n_pad;
    /* bf16 only: the batch had padding somewhere, so transformers handed
     * SDPA an explicit mask instead of is_causal, which changes how the
     * flash kernel blocks the keys of prompts longer than 32 tokens. */
    bool sdpa_mask;
} cr_llm_run;

cr_status cr_llm_forward(const cr_llm *m, cr_llm_run *run, cr_error *err);

/* y[T, rows] = x[T, cols] · Wᵀ (+ bias): the row-parallel matmul in f32,
 * exposed for tests. */
cr_status cr_llm_matmul(const cr_llm *m, const float *x, size_t T, const cr_llm_weight *w,
                        const cr_llm_weight *bias, float *y, cr_error *err);

/* Bind tensor `name` of model as a [rows, cols] matrix (rows == 1: a
 * [cols] vector; cols 0: any) in F32/F16/BF16. optional: a missing tensor
 * leaves w->data NULL. Errors name the tensor (CR_ERR_FORMAT,
 * CR_ERR_UNSUPPORTED). */
cr_status cr_llm_bind_weight(const cr_model *m, const char *name, uint32_t rows, uint32_t cols, bool optional,
                             cr_llm_weight *w, cr_error *err);

/* moe_forward.c: bind layer l's router and experts (any of the layouts
 * crucible and transformers write: Mixtral's block_sparse_moe.experts.E.
 * w1/w2/w3, per-expert mlp.experts.E.{gate,up,down}_proj, or the fused
 * mlp.experts.gate_up_proj [E, 2I, H] / down_proj [E, H, I]; Qwen2-MoE's
 * shared expert), allocating L->experts. Errors name the tensor. */
cr_status cr_llm_bind_moe(const cr_model *model, cr_llm *m, uint32_t l, cr_error *err);
/* y[T, H] = the sparse MLP of layer L on x[T, H] (f32): router softmax in
 * f32, top-k (ties to the lower expert), optional renormalisation, each
 * expert's SwiGLU on the tokens routed to it scaled by their weights, plus
 * the sigmoid-gated shared expert. */
cr_status cr_llm_moe_mlp(const cr_llm *m, const cr_llm_layer *L, const float *x, size_t T, float *y, cr_error *err);
bool cr_llm_layer_is_moe(const cr_llm_config *c, uint32_t l);

#endif
