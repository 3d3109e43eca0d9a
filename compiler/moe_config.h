/* moe_config.h — a mergekit-moe config (formats-and-moe.md §1.2) as typed
 * data: parsing from the YAML tree with located diagnostics, mergekit's
 * validation (is_bad_config, §1.3) and the choice of output architecture
 * (select_output_arch, §1.4). Building the output is moe.h's concern.
 */
#ifndef CR_MOE_CONFIG_H
#define CR_MOE_CONFIG_H

#include "base.h"
#include "diag.h"
#include "dtype.h"
#include "yaml_tree.h"

typedef enum cr_moe_gate_mode {
    CR_MOE_GATE_HIDDEN,         /* also `hidden_last` */
    CR_MOE_GATE_HIDDEN_AVG,     /* mean over all (padded) positions */
    CR_MOE_GATE_CHEAP_EMBED,
    CR_MOE_GATE_RANDOM,
    CR_MOE_GATE_UNIFORM_RANDOM
} cr_moe_gate_mode;

typedef struct cr_moe_expert {
    const char *source_model;
    cr_src_loc loc;             /* of the expert's mapping */
    const char **positive;      uint32_t n_positive;   /* NULL: no prompts */
    const char **negative;      uint32_t n_negative;
    bool has_noise, has_residual;
    double noise_scale, residual_scale;
} cr_moe_expert;

typedef struct cr_moe_config {
    cr_arena arena;             /* owns everything below */
    cr_ytree tree;
    const char *path;
    const char *text;           /* verbatim, for mergekit_moe_config.yml */
    const char *base_model;
    cr_moe_gate_mode gate_mode;
    const char *gate_mode_name; /* as written (default "hidden") */
    cr_dtype dtype;             /* CR_DTYPE_NONE: null */
    long long experts_per_token;
    cr_moe_expert *experts;     uint32_t n_experts;
    cr_moe_expert *shared;      uint32_t n_shared;
    const char *architecture;   /* NULL: not set */
    cr_src_loc loc_experts_per_token, loc_experts, loc_architecture, loc_gate_mode;
} cr_moe_config;

/* Parse text (len bytes) named `file`. Problems become diagnostics with
 * file:line:col and YAML path; returns CR_ERR_CONFIG if any is an error.
 * On any return release `out` with cr_moe_config_free. */
cr_status cr_moe_config_parse(const cr_allocator *alloc, const char *file, const char *text, size_t len,
                              cr_moe_config *out, cr_diags *d, cr_error *err);
/* Read a file and parse it (CR_ERR_IO when unreadable). */
cr_status cr_moe_config_load(const cr_allocator *alloc, const char *path, cr_moe_config *out,
                             cr_diags *d, cr_error *err);
void cr_moe_config_free(cr_moe_config *c);

/* True if the YAML file looks like a mergekit-moe config: a mapping with
 * `experts` and without `merge_method` / `models` / `slices`. False when it
 * cannot be read or parsed (the merge front end then reports the problem). */
bool cr_moe_file_is_moe(const cr_allocator *alloc, const char *path);

/* mergekit's is_bad_config, checks in its order; each failure is an error
 * diagnostic at the offending value. allow_same_source is mergekit's
 * --i-understand-this-is-not-useful-without-training. Returns true if valid. */
bool cr_moe_config_validate(const cr_moe_config *c, bool allow_same_source, cr_diags *d);

typedef enum cr_moe_arch {
    CR_MOE_ARCH_MIXTRAL, CR_MOE_ARCH_DEEPSEEK, CR_MOE_ARCH_QWEN2, CR_MOE_ARCH_QWEN3,
    CR_MOE_ARCH_COUNT
} cr_moe_arch;

/* mergekit's writer name ("Mixtral", "DeepSeek MoE", "Qwen MoE", "Qwen3 MoE"). */
const char *cr_moe_arch_name(cr_moe_arch a);

/* select_output_arch: `types` holds the model_type of the base, then of each
 * routed expert, then of each shared expert (1 + n_experts + n_shared
 * strings; NULL for unknown). Errors (CR_ERR_CONFIG) say which writer
 * refused what. */
cr_status cr_moe_select_arch(const cr_moe_config *c, const char *const *types, cr_moe_arch *out,
                             cr_error *err);

#endif
