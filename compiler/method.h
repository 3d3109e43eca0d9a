/* method.h — the registry of merge methods and what each declares.
 *
 * Every method, built-in or user-written, is a Lua file (stdlib/NAME.lua embedded
 * in the binary, `lua:path.lua` from a recipe, or NAME.lua under --methods
 * DIR). Its declaration (parameters with scope, kind, default and required
 * flag; whether a base model is required; how many inputs it takes) is read
 * from the file's returned table without running any merge, so the front end
 * can validate a recipe before a byte of tensor data is read.
 */
#ifndef CR_METHOD_H
#define CR_METHOD_H

#include "base.h"

typedef enum cr_param_scope { CR_PARAM_GLOBAL, CR_PARAM_MODEL } cr_param_scope;
typedef enum cr_param_kind { CR_PARAM_NUMBER, CR_PARAM_BOOL } cr_param_kind;

typedef struct cr_param_decl {
    const char *name;
    cr_param_scope scope;
    cr_param_kind kind;
    bool required;
    bool has_default;   /* false: default is "none" */
    double dflt;
} cr_param_decl;

typedef enum cr_base_rule {
    CR_BASE_UNUSED,     /* a base, if given, is an ordinary input */
    CR_BASE_OPTIONAL,
    CR_BASE_REQUIRED
} cr_base_rule;

typedef struct cr_method_info {
    const char *name;           /* "ties", or the user file's method name */
    const char *pretty;         /* "TIES" (model card) */
    const char *url;            /* reference link or NULL */
    const char *source;         /* "stdlib/ties.lua" or the user file path */
    cr_base_rule base;
    int min_inputs, max_inputs; /* non-base inputs; max -1 = unbounded */
    const cr_param_decl *params;
    uint32_t n_params;
} cr_method_info;

typedef struct cr_method_registry cr_method_registry;

/* user_dir: the --methods DIR (NULL if none). */
cr_status cr_methods_open(const cr_allocator *alloc, const char *user_dir,
                          cr_method_registry **out, cr_error *err);
/* The same with the Lua state's limits (NULL or 0 fields: core/limits.h's);
 * tests and fuzzing lower them to make a runaway script cheap. */
typedef struct cr_lua_limits cr_lua_limits;
cr_status cr_methods_open_limits(const cr_allocator *alloc, const char *user_dir,
                                 const cr_lua_limits *limits, cr_method_registry **out, cr_error *err);
void cr_methods_close(cr_method_registry *r);
/* Look a method up by name ("ties"), by "lua:PATH" (PATH relative to
 * `relative_to`, the recipe's directory) or by a name found in the user
 * dir. NULL with err filled when unknown or when the Lua file fails to load
 * (the message carries the script's file and line). */
const cr_method_info *cr_methods_find(cr_method_registry *r, const char *name,
                                      const char *relative_to, cr_error *err);
/* Call fn with the path of every method file read so far (lua:PATH and
 * --methods files; not the embedded stdlib): inputs of the run, which its
 * output must not overwrite (formats/outguard.h). */
void cr_methods_each_file(const cr_method_registry *r, void (*fn)(void *ud, const char *path), void *ud);
/* Names of all built-in methods (for "did you mean"). */
size_t cr_methods_builtin_names(const cr_method_registry *r, const char *const **names);
const cr_param_decl *cr_method_param(const cr_method_info *m, const char *name);

#endif
