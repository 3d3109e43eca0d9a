/* bind.c — input files by model: recording them (compile) and binding them
 * to this machine's paths (run); see bind.h.
 *
 * Binding checks what it cheaply can before the VM starts: that each file
 * exists with the size it had when compiled, with a message that names the
 * model and the file; the content hash is checked by the VM, which reads
 * the bytes anyway and keeps the files' identities until its commit.
 */
#include "bind.h"
#include "layout.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static cr_status add_str(cr_program *p, const char *s, cr_blob *out, cr_error *err)
{
    return cr_program_add_blob(p, s, strlen(s), out, err);
}

/* index of the model named `ref`, added on first use */
static cr_status model_index(cr_program *p, const cr_input_file *f, uint32_t *out, cr_error *err)
{
    for (uint32_t i = 0; i < p->n_models; i++)
        if (!strcmp(cr_prog_str(p, p->models[i].ref), f->ref)) { *out = i; return CR_OK; }
    cr_prog_model m;
    cr_status st = add_str(p, f->ref, &m.ref, err);
    if (!st) st = add_str(p, f->lookup ? f->lookup : f->ref, &m.lookup, err);
    if (!st) st = add_str(p, f->revision ? f->revision : "", &m.revision, err);
    if (st) return st;
    cr_prog_model *nm = cr_realloc(p->alloc, p->models, sizeof *nm * (p->n_models + 1));
    if (!nm) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    p->models = nm;
    nm[p->n_models] = m;
    *out = p->n_models++;
    return CR_OK;
}

cr_status cr_program_add_input_file(cr_program *p, const cr_input_file *f, uint32_t *index, cr_error *err)
{
    cr_prog_file pf = { .model = CR_PROG_NO_MODEL, .size = f->size };
    cr_status st;
    if (f->ref) {
        size_t dl = strlen(f->dir);
        while (dl > 1 && f->dir[dl - 1] == '/') dl--;
        const char *rel = f->path + dl;
        if (strncmp(f->path, f->dir, dl) || *rel != '/')
            return cr_fail(err, CR_ERR_ARG, "input %s is not inside the directory %s of model %s", f->path, f->dir, f->ref);
        while (*rel == '/') rel++;
        if ((st = model_index(p, f, &pf.model, err)) || (st = add_str(p, rel, &pf.rel, err))) return st;
    } else if ((st = add_str(p, f->path, &pf.rel, err))) {
        return st;
    } else {
        pf.path = pf.rel;
    }
    cr_prog_file *nf = cr_realloc(p->alloc, p->files, sizeof *nf * (p->n_files + 1));
    if (!nf) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    p->files = nf;
    nf[p->n_files] = pf;
    *index = p->n_files++;
    return f->ref ? cr_program_bind_file(p, *index, f->path, err) : CR_OK;
}

/* the last override naming a or b (the last one given wins, as for every option) */
static const char *override_for(const cr_bind_override *ov, size_t n_ov, const char *a, const char *b)
{
    for (size_t i = n_ov; i-- > 0;)
        if (!strcmp(ov[i].name, a) || (b && !strcmp(ov[i].name, b))) return ov[i].path;
    return NULL;
}

/* does some model or file of no model answer to `name`? */
static bool names_input(const cr_program *p, const char *name)
{
    for (uint32_t m = 0; m < p->n_models; m++)
        if (!strcmp(cr_prog_str(p, p->models[m].ref), name) || !strcmp(cr_prog_str(p, p->models[m].lookup), name))
            return true;
    for (uint32_t i = 0; i < p->n_files; i++)
        if (p->files[i].model == CR_PROG_NO_MODEL && !strcmp(cr_prog_str(p, p->files[i].rel), name)) return true;
    return false;
}

cr_status cr_program_bind_models(cr_program *p, const cr_resolve_env *env, cr_arena *ar,
                                 const cr_bind_override *ov, size_t n_ov, cr_error *err)
{
    for (size_t j = 0; j < n_ov; j++)
        if (!names_input(p, ov[j].name))
            return cr_fail(err, CR_ERR_ARG, "--input %s=%s: the program has no input model or file named %s "
                           "(`crucible explain` lists them)", ov[j].name, ov[j].path, ov[j].name);
    const char **dirs = cr_arena_alloc(ar, sizeof *dirs * (p->n_models + 1));
    if (!dirs) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t m = 0; m < p->n_models; m++) {
        const cr_prog_model *pm = &p->models[m];
        const char *ref = cr_prog_str(p, pm->ref), *lookup = cr_prog_str(p, pm->lookup);
        const char *rev = pm->revision.len ? cr_prog_str(p, pm->revision) : NULL;
        const char *dir = override_for(ov, n_ov, ref, lookup);
        if (dir) {
            struct stat sb;
            if (stat(dir, &sb) || !S_ISDIR(sb.st_mode))
                return cr_fail(err, CR_ERR_CONFIG, "--input %s=%s: not a directory", ref, dir);
        } else {
            const char *tried = NULL;
            dir = cr_resolve_model_at(env, ar, lookup, rev, NULL, &tried);
            const char *fetch = dir ? NULL : cr_resolve_fetch_command(ar, lookup, rev);
            if (!dir)
                return cr_fail(err, CR_ERR_CONFIG, "input model '%s'%s%s not found (looked in %s); "
                               "pass --models-dir DIR, or --input %s=DIR%s%s%s", ref, rev ? " at revision " : "",
                               rev ? rev : "", tried ? tried : "?", ref, fetch ? " (crucible never downloads: `" : "",
                               fetch ? fetch : "", fetch ? "` fetches it into the Hugging Face cache)" : "");
        }
        dirs[m] = dir;
    }
    for (uint32_t i = 0; i < p->n_files; i++) {
        cr_prog_file *f = &p->files[i];
        const char *path;
        if (f->model == CR_PROG_NO_MODEL) {
            path = override_for(ov, n_ov, cr_prog_str(p, f->rel), NULL);
            if (!path) path = cr_prog_str(p, f->rel);
        } else {
            path = cr_arena_printf(ar, "%s/%s", dirs[f->model], cr_prog_str(p, f->rel));
        }
        if (!path) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
        char label[2 * CR_LIMIT_NAME + 8], name[CR_LIMIT_NAME];
        cr_program_file_label(p, i, name, sizeof name);
        /* "ft: model.safetensors (B/ft/model.safetensors)"; a path as given once */
        if (strcmp(name, path)) snprintf(label, sizeof label, "%s (%s)", name, path);
        else snprintf(label, sizeof label, "%s", path);
        struct stat sb;
        if (stat(path, &sb))
            return cr_fail_errno(err, errno, "input %s", label);
        if (!S_ISREG(sb.st_mode))
            return cr_fail(err, CR_ERR_RUNTIME, "input %s is not a regular file", label);
        if ((uint64_t)sb.st_size != f->size)
            return cr_fail(err, CR_ERR_RUNTIME, "input %s is %llu bytes, but the program was compiled for "
                           "%llu bytes: not the file it was compiled from", label,
                           (unsigned long long)sb.st_size, (unsigned long long)f->size);
        if (path == cr_prog_str(p, f->rel)) { f->path = f->rel; continue; }   /* no model: read where given */
        cr_status st = cr_program_bind_file(p, i, path, err);
        if (st) return st;
    }
    return CR_OK;
}
