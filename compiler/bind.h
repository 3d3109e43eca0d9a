/* bind.h — a program's input files named by model (vm/program.h,
 * cr_prog_model): recorded so when compiling, and found again on this
 * machine when a .crb runs, the way `merge` finds a recipe's models
 * (resolve.h), so that a .crb runs wherever its models are.
 */
#ifndef CR_BIND_H
#define CR_BIND_H

#include "program.h"
#include "resolve.h"

/* A file the compiler reads at run time, with the model it belongs to. */
typedef struct cr_input_file {
    const char *ref;        /* the model's reference as the recipe wrote it; NULL: a file of no model */
    const char *lookup;     /* what the resolver looked up (ref without "@revision"); NULL: ref */
    const char *revision;   /* the Hugging Face snapshot it resolved to; NULL: none */
    const char *dir;        /* the model's directory, which holds `path` */
    const char *path;       /* where it is read now */
    uint64_t size;          /* bytes */
} cr_input_file;

/* Append f to p's manifest (its model added on first use), bound to
 * f->path; *index is its files[] index. Errors: NOMEM, CR_ERR_ARG when
 * `path` does not lie inside `dir`. */
cr_status cr_program_add_input_file(cr_program *p, const cr_input_file *f, uint32_t *index, cr_error *err);

/* `--input NAME=PATH`: NAME a model's reference (or what was looked up) and
 * PATH its directory; or NAME the recorded path of a file of no model and
 * PATH that file. */
typedef struct cr_bind_override { const char *name, *path; } cr_bind_override;

/* Bind every file of p (a loaded .crb): a model's directory is the
 * override that names it, else its lookup resolved with env exactly as a
 * recipe's model is (resolve.h), the Hugging Face cache at the recorded
 * snapshot; a file of no model stays at its recorded path unless an
 * override names it. Then every file must exist with its recorded size
 * (its content hash is the VM's to check). Strings live in `ar`.
 * Errors: CR_ERR_ARG for an override that names no input; CR_ERR_CONFIG for
 * a model not found (naming it and where it was looked for); CR_ERR_RUNTIME
 * for a file missing or of another size, naming the model and the file. */
cr_status cr_program_bind_models(cr_program *p, const cr_resolve_env *env, cr_arena *ar,
                                 const cr_bind_override *ov, size_t n_ov, cr_error *err);

#endif
