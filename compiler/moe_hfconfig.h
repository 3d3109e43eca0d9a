/* moe_hfconfig.h — the config.json a mergekit-moe writer saves, per
 * mergekit release (spec/moe.md, "config.json").
 *
 * mergekit builds it with transformers: the base config loaded into its
 * class, passed to the MoE config class, a few keys set, saved. 0.1.4 ran
 * under transformers 4 and is reproduced as the base's keys in their order
 * with the writer's keys and the class defaults transformers 4 writes; 0.1.5 runs under transformers 5, whose config
 * classes fill every declared field, move `rope_theta` / `rope_scaling`
 * into `rope_parameters`, rename `torch_dtype` to `dtype`, drop values
 * equal to PreTrainedConfig's defaults and sort the keys — reproduced here
 * rule by rule for the classes the writers pass through (Llama, Mistral,
 * Qwen2, Qwen3, Mixtral, Qwen2-MoE, Qwen3-MoE). The DeepSeek writer
 * instead json.dumps the loaded base's full to_dict() plus its keys
 * (0.1.5 only).
 */
#ifndef CR_MOE_HFCONFIG_H
#define CR_MOE_HFCONFIG_H

#include "base.h"
#include "dtype.h"
#include "mkversion.h"
#include "moe_config.h"

typedef struct cJSON cJSON;

typedef struct cr_moe_hfconfig_in {
    const cJSON *base;          /* the base model's config.json */
    const char *base_text;      /* its text, for number spellings (NULL: none) */
    cr_moe_arch arch;
    cr_mk_version mk_version;
    uint32_t n_experts;         /* routed */
    uint32_t n_shared;          /* shared experts (DeepSeek: n_shared_experts) */
    const char *name_or_path;   /* DeepSeek: `_name_or_path`, base_model as the config gives it */
    long long experts_per_token;
    uint32_t intermediate;      /* the base's intermediate_size */
    cr_dtype out_dtype;         /* CR_DTYPE_NONE: unknown */
} cr_moe_hfconfig_in;

/* The config.json text (indent 2, newline-terminated; DeepSeek: indent 4,
 * no final newline, as json.dump) into *text (freed by the caller with
 * `alloc`). Errors: CR_ERR_NOMEM, CR_ERR_UNSUPPORTED for DeepSeek under
 * 0.1.4 (transformers 4's to_dict is not reproduced). */
cr_status cr_moe_hfconfig(const cr_allocator *alloc, const cr_moe_hfconfig_in *in, char **text, size_t *len,
                          cr_error *err);

#endif
