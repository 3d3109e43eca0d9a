/* config.h — one YAML document of a recipe as a typed mergekit config.
 *
 * This is the recipe exactly as written, checked for shape and type but not
 * yet resolved against any model: `models:` is kept as a list (it becomes a
 * slice only once layer counts are known), model references are still text,
 * parameter settings are still unevaluated (scalar, gradient or conditional
 * list; see params.h). Every value carries its file position and YAML path
 * so later stages can point at it.
 */
#ifndef CR_CONFIG_H
#define CR_CONFIG_H

#include "base.h"
#include "diag.h"
#include "dtype.h"
#include "yaml_tree.h"

typedef enum cr_setting_kind {
    CR_SETTING_NONE,        /* `weight: null`: no value (falls through) */
    CR_SETTING_SCALAR,
    CR_SETTING_GRADIENT,
    CR_SETTING_COND         /* list of {filter, value} */
} cr_setting_kind;

typedef struct cr_cond cr_cond;

typedef struct cr_setting {
    cr_setting_kind kind;
    double scalar;
    const double *grad;
    uint32_t n_grad;
    const cr_cond *conds;
    uint32_t n_conds;
    cr_src_loc loc;
    const char *path;       /* YAML path, e.g. parameters.t[1].value */
} cr_setting;

struct cr_cond {
    const char *filter;     /* NULL: matches everything (also "*") */
    cr_setting value;
};

typedef struct cr_param {
    const char *name;
    cr_setting value;
    cr_src_loc loc;         /* of the key */
    const char *path;       /* parameters.weight */
} cr_param;

typedef struct cr_params {
    const cr_param *items;
    uint32_t n;
} cr_params;

/* `path[@revision][+lora[@revision]]` or the mapping form. */
typedef struct cr_model_ref {
    const char *text;       /* canonical string form; identity of the model */
    const char *path;
    const char *revision;   /* NULL if none */
    const char *lora;       /* NULL if none */
    const char *lora_revision;
    const char *override_arch;
    cr_src_loc loc;
    const char *ypath;
} cr_model_ref;

typedef struct cr_source {
    cr_model_ref model;
    bool has_range;
    long long range[2];     /* half-open [a, b) */
    cr_src_loc range_loc;
    cr_params params;
    cr_src_loc loc;
    const char *ypath;      /* slices[0].sources[1] or models[2] */
} cr_source;

typedef struct cr_slice {
    cr_source *sources;
    uint32_t n_sources;
    bool has_base;
    cr_model_ref base;      /* slice-level base_model */
    cr_params params;
    cr_src_loc loc;
    const char *ypath;
} cr_slice;

typedef enum cr_config_form { CR_CONFIG_MODELS, CR_CONFIG_SLICES } cr_config_form;

/* one `tokenizer.tokens` entry (mergekit tokenizer/config.py,
 * spec/tokenizer-merge.md §2): where the row of TOKEN comes from when a
 * model lacks it, or for every model with `force` */
typedef enum cr_token_src {
    CR_TOKSRC_NONE = 0,         /* no source: an error if a default is needed */
    CR_TOKSRC_MODEL,            /* that model's row of the token */
    CR_TOKSRC_MODEL_TOKEN,      /* that model's row of `token` (text) or `token_id` */
    CR_TOKSRC_ZERO
} cr_token_src;

typedef struct cr_token_cfg {
    const char *token;
    cr_token_src kind;
    const char *model;          /* MODEL, MODEL_TOKEN: the reference as written */
    const char *src_token;      /* MODEL_TOKEN by text, else NULL */
    long long src_id;           /* MODEL_TOKEN by id (src_token NULL) */
    bool force;
    cr_src_loc loc;
} cr_token_cfg;

typedef struct cr_config {
    const char *file;
    uint32_t doc;               /* document index in the file */
    const char *name;           /* `name:` (multi-stage recipes) or NULL */
    cr_src_loc name_loc;
    const char *merge_method;
    cr_src_loc method_loc;
    bool has_base;
    cr_model_ref base;
    cr_config_form form;
    cr_source *models;          /* form MODELS */
    uint32_t n_models;
    cr_src_loc models_loc;
    cr_slice *slices;           /* form SLICES */
    uint32_t n_slices;
    cr_params params;           /* top-level */
    cr_params module_params;    /* modules.default.parameters */
    cr_dtype dtype, out_dtype;  /* CR_DTYPE_NONE when absent */
    cr_src_loc dtype_loc, out_dtype_loc;
    const char *tokenizer_source; /* `tokenizer_source` / `tokenizer.source` ("union" default) or NULL */
    struct cr_token_cfg *tokens;  /* `tokenizer.tokens`, in YAML order */
    uint32_t n_tokens;
    long tokenizer_pad;         /* `tokenizer.pad_to_multiple_of` (0: none) */
    cr_src_loc tokenizer_loc;
    const char *chat_template;  /* `chat_template:` (valid, see chat_templates.h) or NULL */
    cr_src_loc chat_template_loc;
    const char *text;           /* verbatim document text */
    cr_src_loc loc;             /* document start */
    bool unsupported;           /* an error was "not supported yet" */
} cr_config;

/* Parse document `doc` of `t` into `out`; all memory comes from `ar`.
 * Every problem found is recorded in `diags` (errors and warnings for
 * unknown keys); the parse continues after an error so the user sees all of
 * them. Returns CR_OK if no error was recorded, CR_ERR_CONFIG otherwise, or
 * CR_ERR_NOMEM. */
cr_status cr_config_parse(cr_arena *ar, const cr_ytree *t, uint32_t doc, cr_config *out,
                          cr_diags *diags);

/* mergekit's dtype names: bfloat16, float16, float32, int64, each optionally
 * prefixed "torch.". */
bool cr_config_dtype(const char *s, cr_dtype *out);

/* A model reference from its string form (`path@rev+lora`); false with a
 * message in `why` (static text) when malformed. */
bool cr_model_ref_parse(cr_arena *ar, const char *s, cr_model_ref *out, const char **why);

#endif
