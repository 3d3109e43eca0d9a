/* lora.h — reading a PEFT LoRA adapter directory (spec/lora.md).
 *
 * An adapter is adapter_config.json plus adapter_model.safetensors, as
 * PEFT's save_pretrained writes them. Opening one reads the config, refuses
 * every adapter that is not plain LoRA (another peft_type, DoRA, LoRA
 * biases, ...) naming what is unsupported, reads the safetensors header and
 * pairs the tensors: for each base weight the adapter changes, the A and B
 * tensors and the scale PEFT merges with (lora_alpha / r, or / sqrt(r)
 * with use_rslora, after rank_pattern / alpha_pattern); and the base
 * weights the adapter replaces outright (modules_to_save, saved embedding
 * base layers). No tensor data is read here.
 */
#ifndef CR_LORA_H
#define CR_LORA_H

#include "base.h"
#include "safetensors.h"

/* One base weight changed by W + scale * (B A). */
typedef struct cr_lora_target {
    const char *weight;     /* base tensor name ("model.layers.0.self_attn.q_proj.weight") */
    const char *a, *b;      /* adapter tensor names: A is r x in, B is out x r */
    uint64_t rank;          /* r: rows of A */
    double alpha;           /* lora_alpha after alpha_pattern */
    double scale;           /* alpha / r, or alpha / sqrt(r) with use_rslora */
    /* lora_embedding_A/B: the delta is (B A) transposed (vocab x dim) and
     * PEFT rounds it to the weight's dtype before adding (Embedding.merge),
     * where a Linear's float32 delta is added and rounded once */
    bool embedding;
} cr_lora_target;

/* One base weight the adapter replaces with a tensor of its own. */
typedef struct cr_lora_replace {
    const char *weight;     /* base tensor name */
    const char *src;        /* adapter tensor name */
} cr_lora_replace;

typedef struct cr_lora {
    cr_arena arena;         /* owns every string and array below */
    const char *dir;
    const char *file;       /* adapter_model.safetensors's path */
    cr_st_file st;          /* its header (CR_ST_HEADER_ONLY) */
    uint64_t r;             /* the config's r */
    double lora_alpha;
    bool use_rslora;
    bool fan_in_fan_out;
    cr_lora_target *targets;   uint32_t n_targets;    /* sorted by weight name */
    cr_lora_replace *replaced; uint32_t n_replaced;   /* sorted by weight name */
} cr_lora;

/* Open the adapter in directory `dir`. Errors: CR_ERR_UNSUPPORTED for an
 * adapter crucible cannot apply (the message names the feature and the
 * file), CR_ERR_FORMAT for a malformed config or tensor set (naming the
 * tensor), CR_ERR_IO / CR_ERR_NOMEM. On success the caller closes it with
 * cr_lora_close; on failure nothing needs closing. */
cr_status cr_lora_open(const cr_allocator *alloc, const char *dir, cr_lora *out, cr_error *err);
void cr_lora_close(cr_lora *l);

/* The target or replacement for base weight `weight`, NULL if none. */
const cr_lora_target *cr_lora_find_target(const cr_lora *l, const char *weight);
const cr_lora_replace *cr_lora_find_replace(const cr_lora *l, const char *weight);

/* PEFT's pattern match (peft.utils.other.get_pattern_key) for a literal
 * key: `module` equals `key` or ends with "." key. */
bool cr_lora_pattern_match(const char *key, const char *module);

#endif
