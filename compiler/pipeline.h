/* pipeline.h — the one compile pipeline, source to verified program:
 *   kind -> front end (YAML file or text, Lua recipe, mergekit-moe config)
 *   -> graph -> passes -> emit -> layout -> aux files -> verify
 * with the paths it read (formats/outguard.h). The CLI's recipe commands (merge,
 * plan, explain, compile, moe), the tests and the fuzzers all call
 * cr_compile; only tests of one stage alone call the stages themselves. */
#ifndef CR_PIPELINE_H
#define CR_PIPELINE_H

#include "compile.h"
#include "diag.h"
#include "method.h"
#include "moe.h"
#include "outguard.h"

/* What the source is. AUTO: a mergekit-moe config (cr_moe_file_is_moe) goes
 * to compiler/moe.h, a `.lua` file to the Lua recipe front end, anything
 * else (and text in memory) to the YAML one. */
typedef enum cr_source_kind {
    CR_SOURCE_AUTO, CR_SOURCE_YAML, CR_SOURCE_LUA, CR_SOURCE_MOE
} cr_source_kind;

typedef struct cr_pipeline_options {
    const cr_allocator *alloc;      /* NULL: cr_default_allocator() */
    const char *path;               /* the recipe or config; with `text`, its name */
    const char *text;               /* YAML in memory instead of reading `path` */
    size_t text_len;
    cr_source_kind kind;
    const char *models_dir;         /* --models-dir; NULL: $CRUCIBLE_MODELS */
    const char *methods_dir;        /* --methods; used when `methods` is NULL */
    cr_method_registry *methods;    /* the caller's registry; NULL: one opened for the call */
    bool header_only;               /* open models header-only (plan, explain, compile) */
    bool allow_crimes, no_env;      /* cr_frontend_options */
    bool has_lora_merge_dtype;      /* cr_frontend_options */
    cr_dtype lora_merge_dtype;
    cr_compile_options compile;     /* passes, --dump, seed, precision, shard size */
    bool copy_tokenizer, write_card;    /* aux files (compiler/aux_files.h) */
    const char *out_dir;            /* OUT_DIR as given, for the model card (NULL: none) */
    /* mergekit-moe configs (compiler/moe.h) */
    cr_moe_layout moe_layout;
    bool gate_f32, moe_same_source;
    unsigned threads;               /* forward-pass threads of `hidden` gates */
    bool collect_inputs;            /* fill result.inputs */
    bool recipe_text;               /* keep the recipe's text in the program (provenance of a .crb) */
    FILE *diags_out;                /* print the front end's diagnostics here as soon as it
                                     * ends, before any --dump output (NULL: only keep them) */
} cr_pipeline_options;

/* Where a failure happened; the CLI words and exits by it. */
typedef enum cr_compile_stage {
    CR_STAGE_SETUP,     /* the method registry (--methods) */
    CR_STAGE_FRONTEND,  /* the source: diagnostics, or err when there are none */
    CR_STAGE_MIDDLE,    /* graph, passes, emit, layout: err, about the recipe */
    CR_STAGE_FINISH,    /* aux files, final verify, input paths */
} cr_compile_stage;

typedef struct cr_compile_result {
    cr_source_kind kind;        /* what the source was (never AUTO) */
    cr_plan plan;               /* empty for a MoE config */
    cr_graph graph;
    cr_program program;         /* verified, with its aux records */
    cr_input_paths inputs;      /* the recipe, Lua method files, model directories
                                 * (a MoE's experts come with the program's manifest) */
    cr_diags diags;             /* the front end's, warnings included */
    cr_compile_stage failed;    /* on failure */
    cr_method_registry *own_methods;    /* private: opened for the call (the plan points into it) */
} cr_compile_result;

/* Compile o->path (or o->text). On every return *r is initialised and must
 * be released with cr_compile_result_free; on failure r->failed says which
 * stage failed, with r->diags and err saying why. */
cr_status cr_compile(const cr_pipeline_options *o, cr_compile_result *r, cr_error *err);
void cr_compile_result_free(cr_compile_result *r);

/* Free what only the compiler needed (graph, plan with its open models,
 * the method registry) and keep the program, the input paths and the
 * diagnostics: what running the program still uses. */
void cr_compile_result_release_compiler(cr_compile_result *r);

#endif
