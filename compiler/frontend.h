/* frontend.h — a mergekit YAML recipe file -> validated cr_plan.
 *
 * The whole front end in one call: parse the YAML (every document is a
 * stage), type-check each config, resolve model references to local
 * directories, open their safetensors headers, infer the architecture from
 * tensor names, list every output tensor with its sources in mergekit's
 * write order, evaluate every parameter, and validate all of it before a
 * byte of tensor data is read. Problems are collected in `diags` (all of
 * them, each with file, line, column and YAML path).
 */
#ifndef CR_FRONTEND_H
#define CR_FRONTEND_H

#include "base.h"
#include "diag.h"
#include "method.h"
#include "plan.h"

typedef struct cr_frontend_options {
    const char *models_dir;        /* --models-dir; NULL: $CRUCIBLE_MODELS */
    cr_method_registry *methods;   /* NULL: a built-in registry opened for the call */
    bool header_only;              /* open models header-only (plan, explain) */
    bool allow_crimes;             /* allow models whose architectures differ */
    bool no_env;                   /* ignore CRUCIBLE_MODELS and the HF cache variables */
    bool has_lora_merge_dtype;     /* --lora-merge-dtype given: */
    cr_dtype lora_merge_dtype;     /* model+lora references read as this dtype (else stored dtypes) */
    bool copy_tokenizer;           /* --copy-tokenizer (cr_plan.copy_tokenizer) */
} cr_frontend_options;

/* Compile `recipe_path` into `out`. `opt` may be NULL (defaults).
 * Returns CR_OK (warnings may be in `diags`), CR_ERR_CONFIG when the recipe
 * has errors (all in `diags`), CR_ERR_UNSUPPORTED when it uses a feature
 * crucible does not implement yet (also as diagnostics), CR_ERR_IO when the
 * file cannot be read, CR_ERR_NOMEM. `err` gets a one-line summary.
 * On every return `out` is initialised and must be released with
 * cr_plan_free; it owns the opened models. */
cr_status cr_frontend_yaml(const cr_allocator *alloc, const char *recipe_path,
                           const cr_frontend_options *opt, cr_plan *out, cr_diags *diags,
                           cr_error *err);

/* The same from text in memory; `name` is used as the file name in
 * diagnostics and to resolve relative model paths (its folder). */
cr_status cr_frontend_yaml_text(const cr_allocator *alloc, const char *name, const char *text,
                                size_t len, const cr_frontend_options *opt, cr_plan *out,
                                cr_diags *diags, cr_error *err);

#endif
