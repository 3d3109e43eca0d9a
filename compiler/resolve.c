/* resolve.c — model reference -> local directory (resolve.h).
 *
 * Only directories are accepted: a model is a Hugging Face model folder.
 * The Hugging Face cache is read the way huggingface_hub lays it out, so a
 * model downloaded once with the Hub tools is found offline.
 */
#include "resolve.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool is_dir(const char *p)
{
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

void cr_resolve_env_init(cr_resolve_env *env, cr_arena *ar, const char *recipe_path,
                         const char *models_dir, bool use_env)
{
    memset(env, 0, sizeof *env);
    const char *slash = recipe_path ? strrchr(recipe_path, '/') : NULL;
    env->recipe_dir = slash ? cr_arena_strndup(ar, recipe_path, (size_t)(slash - recipe_path) + (slash == recipe_path))
                            : ".";
    env->models_dir = models_dir;
    if (!use_env) return;
    if (!env->models_dir) {
        const char *m = getenv("CRUCIBLE_MODELS");
        if (m && *m) env->models_dir = cr_arena_strdup(ar, m);
    }
    const char *hub = getenv("HF_HUB_CACHE"), *home = getenv("HF_HOME");
    const char *xdg = getenv("XDG_CACHE_HOME"), *user = getenv("HOME");
    if (hub && *hub) env->hf_hub = cr_arena_strdup(ar, hub);
    else if (home && *home) env->hf_hub = cr_arena_printf(ar, "%s/hub", home);
    else if (xdg && *xdg) env->hf_hub = cr_arena_printf(ar, "%s/huggingface/hub", xdg);
    else if (user && *user) env->hf_hub = cr_arena_printf(ar, "%s/.cache/huggingface/hub", user);
}

/* The revision a refs/ file names (arena string), or NULL. */
static const char *read_ref(cr_arena *ar, const char *repo, const char *name)
{
    if (strchr(name, '/') || strstr(name, "..")) return NULL;
    char *ref = cr_arena_printf(ar, "%s/refs/%s", repo, name);
    FILE *f = ref ? fopen(ref, "r") : NULL;
    if (!f) return NULL;
    char rev[128] = { 0 };
    size_t n = fread(rev, 1, sizeof rev - 1, f);
    fclose(f);
    while (n && (rev[n - 1] == '\n' || rev[n - 1] == ' ' || rev[n - 1] == '\r')) rev[--n] = 0;
    return n && !strchr(rev, '/') ? cr_arena_strdup(ar, rev) : NULL;
}

/* models--ORG--NAME/snapshots/<rev>: refs/main names the revision; without
 * it, a single snapshot is unambiguous. With `revision`: refs/REVISION (a
 * branch or tag), else REVISION itself (a commit). *name: the snapshot's. */
static const char *hf_snapshot(cr_arena *ar, const char *hub, const char *id, const char *revision,
                               const char **name)
{
    if (!hub || id[0] == '/' || id[0] == '.' || strstr(id, "..")) return NULL;
    const char *slash = strchr(id, '/');
    if (slash && strchr(slash + 1, '/')) return NULL;
    char *repo = slash ? cr_arena_printf(ar, "%s/models--%.*s--%s", hub, (int)(slash - id), id, slash + 1)
                       : cr_arena_printf(ar, "%s/models--%s", hub, id);
    if (!repo) return NULL;
    if (!is_dir(repo)) return NULL;
    if (revision) {
        if (!revision[0] || strchr(revision, '/') || !strcmp(revision, ".") || !strcmp(revision, "..")) return NULL;
        const char *rev = read_ref(ar, repo, revision);
        if (!rev) rev = revision;
        char *snap = cr_arena_printf(ar, "%s/snapshots/%s", repo, rev);
        if (!is_dir(snap)) return NULL;
        *name = rev;
        return snap;
    }
    const char *rev = read_ref(ar, repo, "main");
    if (rev) {
        char *snap = cr_arena_printf(ar, "%s/snapshots/%s", repo, rev);
        if (is_dir(snap)) { *name = rev; return snap; }
    }
    char *snaps = cr_arena_printf(ar, "%s/snapshots", repo);
    DIR *d = snaps ? opendir(snaps) : NULL;
    if (!d) return NULL;
    const char *only = NULL, *only_name = NULL;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        count++;
        only = cr_arena_printf(ar, "%s/%s", snaps, e->d_name);
        only_name = cr_arena_strdup(ar, e->d_name);
    }
    closedir(d);
    if (count != 1 || !is_dir(only)) return NULL;
    *name = only_name;
    return only;
}

const char *cr_resolve_model(const cr_resolve_env *env, cr_arena *ar, const char *path,
                             const char **tried)
{
    return cr_resolve_model_at(env, ar, path, NULL, NULL, tried);
}

const char *cr_resolve_model_at(const cr_resolve_env *env, cr_arena *ar, const char *path,
                                const char *revision, const char **snapshot, const char **tried)
{
    *tried = NULL;
    if (snapshot) *snapshot = NULL;
    if (path[0] == '/') {
        *tried = path;
        return is_dir(path) ? path : NULL;
    }
    const char *cands[3] = {
        cr_arena_printf(ar, "%s/%s", env->recipe_dir, path),
        path,
        env->models_dir ? cr_arena_printf(ar, "%s/%s", env->models_dir, path) : NULL,
    };
    for (size_t i = 0; i < 3; i++)
        if (cands[i] && is_dir(cands[i])) return cands[i];
    const char *name = NULL;
    const char *snap = hf_snapshot(ar, env->hf_hub, path, revision, &name);
    if (snap) {
        if (snapshot) *snapshot = name;
        return snap;
    }
    /* the recipe's folder and the working directory, each named once (the
     * same place when the recipe lies in the working directory), spelt as
     * the reference was: "./nope", not "././nope" */
    bool rel = !strncmp(path, "./", 2) || !strncmp(path, "../", 3);
    bool same = !strcmp(env->recipe_dir, ".");
    const char *in_recipe = same ? NULL : cands[0];
    *tried = cr_arena_printf(ar, "%s%s%s%s%s%s%s%s%s%s%s", in_recipe ? in_recipe : "", in_recipe ? ", " : "",
                             rel ? "" : "./", path,
                             env->models_dir ? ", " : "", env->models_dir ? cands[2] : "",
                             env->hf_hub ? ", the Hugging Face cache in " : "",
                             env->hf_hub ? env->hf_hub : "",
                             env->hf_hub && revision ? " at revision " : "",
                             env->hf_hub && revision ? revision : "",
                             env->models_dir ? "" : " (no --models-dir / CRUCIBLE_MODELS set)");
    return NULL;
}

const char *cr_resolve_fetch_command(cr_arena *ar, const char *path, const char *revision)
{
    if (!path[0] || path[0] == '/' || path[0] == '.' || path[0] == '~') return NULL;
    const char *slash = strchr(path, '/');
    if (slash && (slash == path || !slash[1] || strchr(slash + 1, '/'))) return NULL;
    for (const char *c = path; *c; c++)
        if (*c == ' ' || *c == '\'' || *c == '"' || *c == '\\' || *c == '$' || *c == '`') return NULL;
    if (revision && strpbrk(revision, " '\"\\$`")) revision = NULL;
    return cr_arena_printf(ar, "hf download %s%s%s", path, revision ? " --revision " : "", revision ? revision : "");
}
