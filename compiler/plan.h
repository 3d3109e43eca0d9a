/* plan.h — a recipe after the front end: every output tensor with its
 * sources and resolved parameters. The hand-off between the front ends
 * (YAML: compiler/yaml_*.c, Lua recipes) and graph building.
 *
 * Nothing here has read tensor data: shapes and dtypes come from the
 * safetensors headers. A multi-stage recipe has one stage per YAML document;
 * a later stage's model may be an earlier stage's output (plan model with
 * stage >= 0), which the graph builder wires to that stage's tensors
 * instead of a file.
 */
#ifndef CR_PLAN_H
#define CR_PLAN_H

#include "base.h"
#include "dtype.h"
#include "diag.h"
#include "method.h"
#include "lora.h"
#include "model.h"

/* A resolved parameter value. mergekit hands every value to a method as a
 * float (booleans as 0/1); `present` false means "no value" (falls back to
 * the method default, or none). */
typedef struct cr_param_value {
    const char *name;
    double value;
    bool present;
} cr_param_value;

typedef struct cr_param_set {
    cr_param_value *items;
    uint32_t n;
} cr_param_set;

typedef struct cr_plan_model {
    const char *ref;            /* as written in the recipe */
    const char *path;           /* resolved directory; NULL for a stage output */
    const char *lookup;         /* what was resolved: ref without "@revision" (NULL: ref) */
    const char *revision;       /* the Hugging Face snapshot it resolved to; NULL: none */
    int stage;                  /* >= 0: output of that stage; -1: a directory */
    cr_model model;             /* opened when stage < 0 */
    bool opened;
    /* `model+lora` (spec/lora.md): the adapter, opened header-only and
     * checked against the model's tensors (NULL: none); the reference the
     * program names its file by, what was looked up, the snapshot and the
     * directory (as for the model above) */
    cr_lora *lora;
    const char *lora_ref, *lora_lookup, *lora_revision, *lora_dir;
    /* Conv1D weights (GPT-2): PEFT merges their deltas transposed */
    bool lora_conv1d;
    /* --lora-merge-dtype: the model as transformers loads it, every
     * floating tensor cast to this dtype; CR_DTYPE_NONE: stored dtypes */
    cr_dtype lora_dtype;
} cr_plan_model;

typedef struct cr_plan_source {
    uint32_t model;             /* index into plan->models */
    const char *tensor;         /* input tensor name in that model */
    bool is_base;
    cr_dtype dtype;             /* stored dtype (from the header / stage) */
    uint32_t ndim;
    uint64_t shape[CR_MAX_DIMS];
    cr_param_set params;        /* per-model, resolved against `tensor` */
} cr_plan_source;

typedef struct cr_plan_tensor {
    const char *name;           /* output name */
    int layer;                  /* output layer index; -1 for pre/post weights */
    bool is_embed;              /* embedding-like (vocab rows): rectify applies */
    bool optional;
    cr_plan_source *sources;    /* source order (base included where mergekit has it) */
    uint32_t n_sources;
    cr_param_set params;        /* global, resolved against `name` */
    cr_src_loc loc;             /* where the slice/model list is declared */
    const cr_method_info *method; /* this tensor's method (Lua recipes); NULL: the stage's */
} cr_plan_tensor;

typedef struct cr_plan_stage {
    const char *name;           /* `name:` of the document, or "merge" */
    const cr_method_info *method;
    cr_src_loc method_loc;
    int base_model;             /* plan model index or -1 */
    cr_dtype dtype;             /* `dtype` (compute) or CR_DTYPE_NONE */
    cr_dtype out_dtype;         /* `out_dtype` or CR_DTYPE_NONE */
    cr_plan_tensor *tensors;    /* in mergekit's write order */
    uint32_t n_tensors;
    int donor_model;            /* config.json / tokenizer donor */
    long long num_layers_out;   /* -1: keep the donor's */
    const char *num_layers_key; /* e.g. "num_hidden_layers" */
    const char *recipe_text;    /* this document's YAML text, verbatim */
    const char *chat_template;  /* `chat_template:` or NULL (compiler/chat_templates.h) */
    const char *tokenizer_source; /* "base", "union", a model reference, or NULL (compiler/tokmerge.h) */
    const char *tokenizer_source_dir; /* a model-reference source resolved on disk (NULL: not found or
                                 * base/union); used when it is none of the inputs */
    const char *tokenizer_source_tried; /* where the resolver looked when it was not found */
    long tokenizer_pad;         /* tokenizer.pad_to_multiple_of, 0: none */
    uint64_t vocab_rows;        /* rows of the permuted vocabulary tensors of a stage that a later stage
                                 * reads (0: not permuted) */
    const struct cr_token_cfg *tokens; /* tokenizer.tokens (compiler/config.h), YAML order */
    uint32_t n_tokens;
    /* the stage's models (mergekit's referenced_models()): the base first,
     * then in recipe order of first appearance; NULL: not listed (every
     * plan model counts) */
    const uint32_t *models;
    uint32_t n_models;
} cr_plan_stage;

typedef struct cr_plan {
    cr_arena arena;             /* owns everything above */
    const char *recipe_path;
    const char *recipe_text;    /* whole file, verbatim (mergekit_config.yml) */
    cr_plan_model *models;
    uint32_t n_models;
    cr_plan_stage *stages;      /* the last stage is the one written out */
    uint32_t n_stages;
    /* --copy-tokenizer: every stage's output carries its donor's tokenizer
     * (mergekit-multi passes the option to each stage), which a later
     * stage's tokenizer merge reads (compiler/tokstage.h) */
    bool copy_tokenizer;
    /* the registry the front end opened itself (no registry given): method
     * infos and parameter names point into it, so it lives as long as the
     * plan; closed by cr_plan_free */
    cr_method_registry *owned_methods;
} cr_plan;

/* Value of a parameter in a set, or `dflt` when absent. */
double cr_param_get(const cr_param_set *s, const char *name, double dflt);
bool cr_param_has(const cr_param_set *s, const char *name);

void cr_plan_free(cr_plan *p);   /* closes opened models, frees the arena */

#endif
