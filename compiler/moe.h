/* moe.h — building a Mixture-of-Experts model from dense ones (mergekit-moe,
 * formats-and-moe.md §1; spec/moe.md) through the merge pipeline: a typed
 * config (moe_config.h) becomes a compiler graph — input views for the
 * tensors copied from the base and the experts, an elementwise scale for
 * residual_scale, casts to the output dtype, and compile-time blob inputs
 * for the router gates — which is then optimised, emitted as a cr_program
 * with its aux files (config.json, tokenizer, mergekit_moe_config.yml,
 * README.md) and run by cr_vm_run like any merge.
 */
#ifndef CR_MOE_H
#define CR_MOE_H

#include <stdio.h>
#include "compile.h"
#include "diag.h"
#include "graph.h"
#include "mkversion.h"
#include "moe_config.h"
#include "program.h"

typedef enum cr_moe_layout {
    CR_MOE_LAYOUT_DEFAULT,  /* --moe-layout unset: what the --mergekit-version writes (cr_moe_layout_resolve) */
    CR_MOE_LAYOUT_CLASSIC,  /* one tensor per expert matrix: block_sparse_moe.experts.{e}.w1/w2/w3 (Mixtral),
                             * mlp.experts.{e}.{gate,up,down}_proj (Qwen MoE, Qwen3 MoE) */
    CR_MOE_LAYOUT_FUSED     /* transformers-v5 mlp.experts.gate_up_proj / down_proj (Mixtral, Qwen3 MoE) */
} cr_moe_layout;

/* The layout a writer uses: an explicit --moe-layout wins; else mergekit
 * 0.1.5 writes Mixtral and Qwen3 MoE fused, and everything else (0.1.4,
 * Qwen MoE) is classic. */
static inline cr_moe_layout cr_moe_layout_resolve(cr_moe_layout l, cr_moe_arch arch, cr_mk_version v)
{
    if (l != CR_MOE_LAYOUT_DEFAULT) return l;
    return cr_mk_resolve(v) == CR_MK_0_1_5 && (arch == CR_MOE_ARCH_MIXTRAL || arch == CR_MOE_ARCH_QWEN3)
               ? CR_MOE_LAYOUT_FUSED : CR_MOE_LAYOUT_CLASSIC;
}

/* Where an output tensor's values come from. */
typedef enum cr_moe_src {
    CR_MOE_SRC_BASE,        /* base tensor `src_name` */
    CR_MOE_SRC_EXPERT,      /* routed expert `expert`'s tensor `src_name` */
    CR_MOE_SRC_SHARED,      /* the shared expert's tensor `src_name` */
    CR_MOE_SRC_ROUTER,      /* the [E, H] router of `layer` */
    CR_MOE_SRC_SHARED_GATE, /* the [1, H] shared-expert gate of `layer` */
    CR_MOE_SRC_ZEROS,       /* zeros (Qwen2-MoE q/k/v biases of a llama base) */
    CR_MOE_SRC_FUSED_GATE_UP, /* [E, 2I, H]: every expert's gate_proj over up_proj */
    CR_MOE_SRC_FUSED_DOWN   /* [E, H, I]: every expert's down_proj */
} cr_moe_src;

typedef struct cr_moe_tensor {
    const char *name;       /* output name */
    cr_moe_src src;
    uint32_t expert;        /* CR_MOE_SRC_EXPERT */
    uint32_t layer;
    const char *src_name;   /* BASE / EXPERT / SHARED; the MLP name for FUSED_* */
    bool down;              /* a down_proj: residual_scale applies */
    uint32_t ndim;
    uint64_t shape[3];
} cr_moe_tensor;

typedef struct cr_moe_dims {
    uint32_t n_layers, hidden, intermediate, n_heads, n_kv_heads;
    uint32_t n_experts;
    bool shared;            /* one shared expert (Qwen2-MoE, DeepSeek MoE) */
} cr_moe_dims;

/* The output tensors in write order (formats-and-moe.md §1.5, §1.8):
 * base_names (the base's tensor names, any order) give the non-MLP tensors
 * (embed first, then per layer in name order, then the rest); then the
 * experts per layer; then the routers. Names and the result array live in
 * `ar`. `layout` is resolved (not DEFAULT). Errors: CR_ERR_ARG for a fused
 * Qwen MoE or DeepSeek MoE. Base
 * shapes are not known here (ndim 0) except for generated tensors. */
cr_status cr_moe_map_tensors(cr_moe_arch arch, cr_moe_layout layout, const cr_moe_dims *dims,
                             const char *const *base_names, uint32_t n_base, cr_arena *ar,
                             cr_moe_tensor **out, uint32_t *n_out, cr_error *err);

/* Gate vectors [L, G, H] for `random` / `uniform_random`: uniforms from
 * vm/rng.h keyed by (seed, CR_MOE_GATE_STREAM), then gates.h's transforms.
 * out holds L*G*H floats. */
#define CR_MOE_GATE_STREAM 0x6d6f652d67617465ull   /* "moe-gate" */
void cr_moe_random_gates(cr_moe_gate_mode mode, uint64_t seed, uint32_t L, uint32_t G, uint32_t H,
                         float *u_scratch, float *out);

typedef struct cr_moe_options {
    const char *models_dir;     /* --models-dir (NULL: $CRUCIBLE_MODELS etc.) */
    uint64_t seed;              /* --random-seed */
    cr_moe_layout layout;       /* --moe-layout (DEFAULT: per compile.mk_version, cr_moe_layout_resolve) */
    bool allow_same_source;     /* --i-understand-this-is-not-useful-without-training */
    bool copy_tokenizer, write_card;
    const char *out_path;       /* OUT_DIR as given, for the card (NULL: none) */
    unsigned threads;           /* forward-pass threads for `hidden` (0: cr_threads_resolve) */
    bool gate_f32;              /* --gate-precision f32: hidden gates in f32, prompts unpadded
                                 * (default: bf16 padded batch, mergekit's numbers; gates.h) */
    cr_compile_options compile;
} cr_moe_options;

/* Config -> verified program with aux files. Validation problems are
 * diagnostics (CR_ERR_CONFIG); missing models / tensors and shape
 * mismatches are CR_ERR_CONFIG errors naming model and tensor; the
 * DeepSeek writer under 0.1.4 is CR_ERR_UNSUPPORTED. g is initialised by the caller and freed by it;
 * *out is freed by the caller on success. */
cr_status cr_moe_compile(const cr_allocator *alloc, const cr_moe_config *c, const cr_moe_options *o,
                         cr_graph *g, cr_program *out, cr_diags *d, cr_error *err);

#endif
