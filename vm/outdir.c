/* outdir.c — the all-or-nothing output directory (outdir.h).
 *
 * Files are written into OUT_DIR.crucible-tmp-PID beside OUT_DIR (same
 * filesystem, so the final rename is atomic). Commit fsyncs the temporary
 * directory, moves any forced-over old OUT_DIR aside, renames the new one
 * into place, fsyncs the parent and only then deletes the old one: at every
 * instant either the old or the complete new directory is at OUT_DIR.
 */
#include "outdir.h"
#include "io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* remove a tree we created (or an old OUT_DIR the user forced over) */
static int remove_tree(const char *path)
{ return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static int dir_state(const char *path)   /* -1 absent, 0 empty dir, 1 non-empty dir, 2 not a dir */
{
    struct stat st;
    if (stat(path, &st)) return -1;
    if (!S_ISDIR(st.st_mode)) return 2;
    DIR *d = opendir(path);
    if (!d) return 1;
    struct dirent *e;
    int r = 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) { r = 1; break; }
    closedir(d);
    return r;
}

static char *printf_alloc(const cr_allocator *a, const char *fmt, const char *s, long n)
{
    int len = snprintf(NULL, 0, fmt, s, n);
    char *p = len >= 0 ? cr_malloc(a, (size_t)len + 1) : NULL;
    if (p) snprintf(p, (size_t)len + 1, fmt, s, n);
    return p;
}

/* mkdir -p of every directory above `path` (as mergekit's os.makedirs) */
static int make_parents(const cr_io *io, const cr_allocator *a, const char *path)
{
    char *p = cr_strdup(a, path);
    if (!p) { errno = ENOMEM; return -1; }
    int rc = 0;
    for (char *s = p + 1; *s && rc == 0; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (io->mkdir(io->ud, p, 0755) && errno != EEXIST) rc = -1;
        *s = '/';
    }
    cr_free(a, p);
    return rc;
}

cr_status cr_outdir_begin(const cr_allocator *alloc, const char *path, bool force,
                          cr_outdir *out, cr_error *err)
{
    return cr_outdir_begin_io(alloc, NULL, path, force, out, err);
}

cr_status cr_outdir_begin_io(const cr_allocator *alloc, const cr_io *io, const char *path,
                             bool force, cr_outdir *out, cr_error *err)
{
    memset(out, 0, sizeof *out);
    out->alloc = alloc;
    out->io = io ? io : cr_posix_io();
    out->force = force;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;   /* "out/" names the same directory */
    int st = dir_state(path);
    if (st == 2) return cr_fail(err, CR_ERR_ARG, "%s exists and is not a directory", path);
    if (st == 1 && !force)
        return cr_fail(err, CR_ERR_ARG, "%s exists and is not empty (use --force to replace it)", path);
    out->final_path = cr_strndup(alloc, path, n);
    if (!out->final_path) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    out->tmp_path = printf_alloc(alloc, "%s.crucible-tmp-%ld", out->final_path, (long)getpid());
    if (!out->tmp_path) { cr_outdir_free(out); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
    if (dir_state(out->tmp_path) >= 0) remove_tree(out->tmp_path);   /* a leftover of a killed run with our pid */
    if (make_parents(out->io, alloc, out->tmp_path) || out->io->mkdir(out->io->ud, out->tmp_path, 0755)) {
        cr_status s = cr_fail_errno(err, errno, "cannot create %s", out->tmp_path);
        cr_outdir_free(out);
        return s;
    }
    return CR_OK;
}

char *cr_outdir_path(const cr_outdir *o, const char *name)
{
    size_t a = strlen(o->tmp_path), b = strlen(name);
    char *p = cr_malloc(o->alloc, a + b + 2);
    if (!p) return NULL;
    memcpy(p, o->tmp_path, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* fsync a directory so the names in it are durable; errno on failure, 0 on
 * success (a file system that cannot open directories counts as success) */
static int fsync_dir(const cr_io *io, const char *path)
{
    int fd = io->open(io->ud, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) return errno == EISDIR || errno == EACCES ? 0 : errno;
    int e = io->fsync(io->ud, fd) ? errno : 0;
    if (io->close(io->ud, fd) && !e) e = errno;
    /* EINVAL: the file system does not support syncing directories */
    return e == EINVAL ? 0 : e;
}

static char *parent_of(const cr_allocator *a, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return cr_strdup(a, ".");
    if (slash == path) return cr_strdup(a, "/");
    return cr_strndup(a, path, (size_t)(slash - path));
}

cr_status cr_outdir_commit(cr_outdir *o, cr_error *err)
{
    if (o->committed) return CR_OK;
    int e = fsync_dir(o->io, o->tmp_path);
    if (e) return cr_fail_errno(err, e, "cannot sync %s", o->tmp_path);
    int st = dir_state(o->final_path);
    char *old = NULL;
    if (st == 1 || st == 2) {
        if (!o->force) return cr_fail(err, CR_ERR_ARG, "%s appeared while merging; not replacing it", o->final_path);
        if (st == 2) return cr_fail(err, CR_ERR_ARG, "%s exists and is not a directory", o->final_path);
        old = printf_alloc(o->alloc, "%s.crucible-old-%ld", o->final_path, (long)getpid());
        if (!old) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
        if (o->io->rename(o->io->ud, o->final_path, old)) {
            cr_status s = cr_fail_errno(err, errno, "cannot move old %s aside", o->final_path);
            cr_free(o->alloc, old);
            return s;
        }
    } else if (st == 0) {
        rmdir(o->final_path);   /* rename(2) replaces an empty directory anyway; this covers the rest */
    }
    if (o->io->rename(o->io->ud, o->tmp_path, o->final_path)) {
        cr_status s = cr_fail_errno(err, errno, "cannot rename %s to %s", o->tmp_path, o->final_path);
        if (old) { rename(old, o->final_path); cr_free(o->alloc, old); }
        return s;
    }
    o->committed = true;
    char *parent = parent_of(o->alloc, o->final_path);
    /* the new directory is in place; a failed sync of its parent can no
     * longer be undone, so it is not an error (the rename is atomic) */
    if (parent) { (void)fsync_dir(o->io, parent); cr_free(o->alloc, parent); }
    if (old) { remove_tree(old); cr_free(o->alloc, old); }
    return CR_OK;
}

void cr_outdir_abort(cr_outdir *o)
{
    if (o->committed || !o->tmp_path) return;
    remove_tree(o->tmp_path);
}

void cr_outdir_free(cr_outdir *o)
{
    if (!o->committed) cr_outdir_abort(o);
    cr_free(o->alloc, o->final_path);
    cr_free(o->alloc, o->tmp_path);
    o->final_path = o->tmp_path = NULL;
}
