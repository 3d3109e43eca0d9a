/* resolve.h — finding a model reference on the local disk (no network).
 *
 * A reference `path` is looked up, in order, as: an absolute directory; a
 * directory relative to the recipe's folder; relative to the working
 * directory; `MODELS_DIR/path` (--models-dir, else $CRUCIBLE_MODELS); and
 * the Hugging Face cache ($HF_HUB_CACHE, else $HF_HOME/hub, else
 * ~/.cache/huggingface/hub) as models--ORG--NAME/snapshots/<refs/main, or
 * the only snapshot>; with a revision, snapshots/<refs/REVISION, else
 * REVISION> only.
 */
#ifndef CR_RESOLVE_H
#define CR_RESOLVE_H

#include "base.h"

typedef struct cr_resolve_env {
    const char *recipe_dir;     /* folder of the recipe file ("." if none) */
    const char *models_dir;     /* NULL: none */
    const char *hf_hub;         /* hub cache folder, NULL: none */
} cr_resolve_env;

/* Fill `env` from options and the process environment (CRUCIBLE_MODELS,
 * HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME, HOME) unless `use_env` is false.
 * Strings are allocated in `ar`. */
void cr_resolve_env_init(cr_resolve_env *env, cr_arena *ar, const char *recipe_path,
                         const char *models_dir, bool use_env);

/* The directory for `path` (arena string), or NULL when not found; then
 * `tried` (arena string) lists the places looked at. */
const char *cr_resolve_model(const cr_resolve_env *env, cr_arena *ar, const char *path,
                             const char **tried);

/* The same, `path` at `revision` (NULL: any): the revision chooses the
 * Hugging Face cache's snapshot and nothing else (a local directory has no
 * revisions, as in mergekit). *snapshot (may be NULL) is set to the
 * snapshot's name (the commit) when the cache gave the directory, else
 * NULL: what a .crb records to find the same files again. */
const char *cr_resolve_model_at(const cr_resolve_env *env, cr_arena *ar, const char *path,
                                const char *revision, const char **snapshot, const char **tried);

/* For a reference that looks like a Hub id (ORG/NAME or NAME: no leading
 * '/', '.' or '~', at most one '/'): the command that puts it into the
 * Hugging Face cache, "hf download ORG/NAME[ --revision REV]" (arena
 * string); NULL for anything else. crucible never downloads; its "not
 * found" errors quote this. */
const char *cr_resolve_fetch_command(cr_arena *ar, const char *path, const char *revision);

#endif
