/* outdir.c — the all-or-nothing output directory (outdir.h).
 *
 * Files are written into OUT_DIR.crucible-tmp-PID beside OUT_DIR (same
 * file system, so renames are atomic). OUT_DIR.crucible-owner-PID is
 * created before the temporary directory and removed after everything
 * else, so every crucible-tmp-N / crucible-old-N that a process can leave
 * behind has a record naming that process; a later run removes only what
 * such a record covers, and only once the process is gone. The record sits
 * beside OUT_DIR, not inside the temporary directory, so it never becomes
 * part of the output and still describes the temporary name after an
 * exchange has put the old OUT_DIR there.
 */
#include "outdir.h"
#include "io.h"
#include "outguard.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* remove a tree we created (or an old OUT_DIR the user forced over);
 * FTW_PHYS: a symlink inside is removed, never followed; FTW_MOUNT: a file
 * system mounted inside is left alone (its mount point then stays) */
static int remove_tree(const char *path)
{ return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT); }

static bool exists_l(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

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

/* "OUT.crucible-KIND-PID" */
static char *sibling(const cr_allocator *a, const char *final, const char *kind, long pid)
{
    int len = snprintf(NULL, 0, "%s.crucible-%s-%ld", final, kind, pid);
    char *p = len >= 0 ? cr_malloc(a, (size_t)len + 1) : NULL;
    if (p) snprintf(p, (size_t)len + 1, "%s.crucible-%s-%ld", final, kind, pid);
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

static void note(cr_outdir_note_fn fn, void *ud, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note(cr_outdir_note_fn fn, void *ud, const char *fmt, ...)
{
    char msg[1024 + 2 * PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (fn) fn(ud, msg);
    else fprintf(stderr, "crucible: %s\n", msg);
}

/* ---- which process made a record -------------------------------------- */

/* A process as the owner record names it. `start` is the start time in
 * clock ticks since boot (/proc/PID/stat field 22) and `boot` the kernel's
 * boot id: together with the pid they tell a reused pid from the owner.
 * Both are 0 / "" where /proc is not available. */
typedef struct proc_id {
    long pid;
    unsigned long long start;
    char boot[40];
} proc_id;

unsigned long long cr_outdir_proc_start(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *s = strrchr(buf, ')');   /* the command name may hold spaces and ')' */
    if (!s) return 0;
    int field = 2;
    for (s++; *s && field < 22; s++)
        if (*s == ' ') field++;
    return field == 22 ? strtoull(s, NULL, 10) : 0;
}

static void boot_id(char out[40])
{
    out[0] = 0;
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (!f) return;
    if (!fgets(out, 40, f)) out[0] = 0;
    fclose(f);
    out[strcspn(out, "\n")] = 0;
}

static bool proc_alive(const proc_id *rec)
{
    if (rec->pid <= 0) return false;
    if (kill((pid_t)rec->pid, 0) && errno == ESRCH) return false;
    char boot[40];
    boot_id(boot);
    if (rec->boot[0] && boot[0] && strcmp(rec->boot, boot)) return false;   /* made before a reboot */
    unsigned long long start = cr_outdir_proc_start(rec->pid);
    if (rec->start && start && start != rec->start) return false;           /* the pid was reused */
    return true;
}

/* The record's text is "crucible-owner PID START BOOT". It is stored as
 * the target of a symbolic link, which appears with its whole text in one
 * step (a process killed while writing a regular file would leave an empty
 * record that proves nothing, and litter); where the file system has no
 * symbolic links, as a small regular file. */
static bool read_record(const char *path, long pid, proc_id *rec)
{
    char line[160];
    ssize_t n = readlink(path, line, sizeof line - 1);
    if (n < 0) {
        FILE *f = fopen(path, "r");
        if (!f) return false;
        n = fgets(line, sizeof line, f) ? (ssize_t)strlen(line) : -1;
        fclose(f);
        if (n < 0) return false;
    }
    line[n] = 0;
    memset(rec, 0, sizeof *rec);
    if (sscanf(line, "crucible-owner %ld %llu %39s", &rec->pid, &rec->start, rec->boot) < 2) return false;
    if (!strcmp(rec->boot, "-")) rec->boot[0] = 0;
    return rec->pid == pid;
}

static cr_status write_record(const cr_io *io, const char *path, cr_error *err)
{
    proc_id me = { (long)getpid(), 0, "" };
    me.start = cr_outdir_proc_start(me.pid);
    boot_id(me.boot);
    char line[160];
    int len = snprintf(line, sizeof line, "crucible-owner %ld %llu %s", me.pid, me.start, me.boot[0] ? me.boot : "-");
    if (!symlink(line, path)) return CR_OK;
    if (errno != EPERM && errno != ENOTSUP && errno != EOPNOTSUPP && errno != ENOSYS)
        return cr_fail_errno(err, errno, "cannot create %s", path);
    int fd = io->open(io->ud, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return cr_fail_errno(err, errno, "cannot create %s", path);
    ssize_t w = io->pwrite(io->ud, fd, line, (size_t)len, 0);
    int e = w == len ? 0 : w < 0 ? errno : EIO;
    if (io->close(io->ud, fd) && !e) e = errno;
    if (e) { unlink(path); return cr_fail_errno(err, e, "cannot write %s", path); }
    return CR_OK;
}

/* ---- stale leftovers ---------------------------------------------------- */

/* the digits after `prefix` in `name` as a pid; -1 if not exactly that */
static long pid_after(const char *name, const char *prefix, size_t plen)
{
    if (strncmp(name, prefix, plen)) return -1;
    const char *d = name + plen;
    if (!*d || strlen(d) > 9) return -1;
    for (const char *s = d; *s; s++) if (*s < '0' || *s > '9') return -1;
    return strtol(d, NULL, 10);
}

static void split_path(const char *path, char *parent, size_t cap, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (!slash) { snprintf(parent, cap, "."); *base = path; return; }
    if (slash == path) snprintf(parent, cap, "/");
    else snprintf(parent, cap, "%.*s", (int)(slash - path), path);
    *base = slash + 1;
}

/* One dead owner's leftovers: finish or undo its replace, then remove. */
static void clean_owner(const cr_allocator *a, const char *final, long pid, const char *record,
                        cr_outdir_note_fn fn, void *ud)
{
    char *tmp = sibling(a, final, "tmp", pid), *old = sibling(a, final, "old", pid);
    if (!tmp || !old) { cr_free(a, tmp); cr_free(a, old); return; }
    bool have_tmp = exists_l(tmp), have_old = exists_l(old);
    if (!exists_l(final) && have_old) {
        /* killed between the two renames of a replace without exchange:
         * crucible-old exists only once the temporary directory was
         * complete and synced, so the replace is finished, as asked */
        if (have_tmp && !rename(tmp, final)) {
            note(fn, ud, "%s: completed the replace that process %ld was killed in (its new output was complete)", final, pid);
            have_tmp = false;
        } else if (!have_tmp && !rename(old, final)) {
            note(fn, ud, "%s: put back the directory that process %ld had moved aside", final, pid);
            have_old = false;
        }
    }
    if (have_tmp && !remove_tree(tmp))
        note(fn, ud, "removed %s, left by crucible process %ld which is no longer running", tmp, pid);
    if (have_old && !remove_tree(old))
        note(fn, ud, "removed %s (the directory process %ld was replacing), left by that process which is no longer running",
             old, pid);
    if (!exists_l(tmp) && !exists_l(old)) unlink(record);
    cr_free(a, tmp);
    cr_free(a, old);
}

int cr_outdir_clean_stale(const cr_allocator *alloc, const char *path_in, cr_outdir_note_fn fn, void *ud)
{
    char path[PATH_MAX];
    size_t n = strlen(path_in);
    while (n > 1 && path_in[n - 1] == '/') n--;
    if (!n || n >= sizeof path) return -1;
    memcpy(path, path_in, n);
    path[n] = 0;
    char parent[PATH_MAX];
    const char *base;
    split_path(path, parent, sizeof parent, &base);
    char owner_pfx[NAME_MAX + 32], tmp_pfx[NAME_MAX + 32], old_pfx[NAME_MAX + 32];
    snprintf(owner_pfx, sizeof owner_pfx, "%s.crucible-owner-", base);
    snprintf(tmp_pfx, sizeof tmp_pfx, "%s.crucible-tmp-", base);
    snprintf(old_pfx, sizeof old_pfx, "%s.crucible-old-", base);
    size_t lo = strlen(owner_pfx), lt = strlen(tmp_pfx), ld = strlen(old_pfx);
    DIR *d = opendir(parent);
    if (!d) return -1;
    cr_vec owners, orphans;   /* pids; names (allocated) */
    cr_vec_init(&owners, alloc, sizeof(long));
    cr_vec_init(&orphans, alloc, sizeof(char *));
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid;
        if ((pid = pid_after(e->d_name, owner_pfx, lo)) >= 0) {
            cr_vec_push(&owners, &pid);
        } else if (pid_after(e->d_name, tmp_pfx, lt) >= 0 || pid_after(e->d_name, old_pfx, ld) >= 0) {
            char *name = cr_strdup(alloc, e->d_name);
            if (name && !cr_vec_push(&orphans, &name)) cr_free(alloc, name);
        }
    }
    closedir(d);
    int handled = 0;
    for (size_t i = 0; i < owners.len; i++) {
        long pid = ((long *)owners.data)[i];
        char *record = sibling(alloc, path, "owner", pid);
        if (!record) break;
        proc_id rec;
        if (read_record(record, pid, &rec) && !proc_alive(&rec)) {
            clean_owner(alloc, path, pid, record, fn, ud);
            handled++;
        }
        cr_free(alloc, record);
    }
    /* a crucible-tmp/-old name with no record: not provably ours */
    for (size_t i = 0; i < orphans.len; i++) {
        char *name = ((char **)orphans.data)[i];
        const char *dash = strrchr(name, '-');
        long pid = strtol(dash + 1, NULL, 10);
        char *record = sibling(alloc, path, "owner", pid);
        proc_id dead = { pid, 0, "" };
        char full[PATH_MAX + NAME_MAX + 2];
        snprintf(full, sizeof full, "%s/%s", parent, name);
        if (record && exists_l(full) && !exists_l(record) && !proc_alive(&dead))
            note(fn, ud, "left %s/%s alone: no %s%ld record proves crucible made it (remove it yourself if it is not needed)",
                 parent, name, owner_pfx, pid);
        cr_free(alloc, record);
        cr_free(alloc, name);
    }
    cr_vec_free(&owners);
    cr_vec_free(&orphans);
    return handled;
}

/* ---- a single output file ------------------------------------------------ */

cr_status cr_outfile_begin(const cr_allocator *alloc, const char *path, cr_outdir_note_fn fn, void *ud,
                           cr_outfile *out, cr_error *err)
{
    memset(out, 0, sizeof *out);
    out->alloc = alloc;
    if (!path || !*path) return cr_fail(err, CR_ERR_ARG, "the output file name is empty");
    cr_outdir_clean_stale(alloc, path, fn, ud);
    out->tmp_path = sibling(alloc, path, "tmp", (long)getpid());
    char *owner = out->tmp_path ? sibling(alloc, path, "owner", (long)getpid()) : NULL;
    if (!owner) { cr_outfile_end(out); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
    /* the record first: a temporary file never exists without one */
    cr_status s = write_record(cr_posix_io(), owner, err);
    if (s) { cr_free(alloc, owner); cr_outfile_end(out); return s; }
    out->owner_path = owner;
    return CR_OK;
}

void cr_outfile_end(cr_outfile *f)
{
    if (!f->alloc) return;   /* zeroed: never begun */
    if (f->owner_path) unlink(f->owner_path);
    cr_free(f->alloc, f->owner_path);
    cr_free(f->alloc, f->tmp_path);
    f->owner_path = f->tmp_path = NULL;
}

/* ---- begin / commit ------------------------------------------------------- */

/* The checks of cr_outdir_check; `final` receives the path to replace
 * (the link's target when `path` is a symlink to a directory), `given` the
 * name without trailing slashes; both PATH_MAX bytes. */
static cr_status check_path(const char *path, bool force, const cr_input_paths *inputs, char *given, char *final,
                            cr_error *err)
{
    if (!path || !*path) return cr_fail(err, CR_ERR_ARG, "the output directory name is empty");
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;   /* "out/" names the same directory */
    if (n >= PATH_MAX) return cr_fail(err, CR_ERR_ARG, "output directory %s: name too long", path);
    memcpy(given, path, n);
    given[n] = 0;
    strcpy(final, given);
    struct stat lst, st;
    if (!lstat(given, &lst) && S_ISLNK(lst.st_mode)) {
        /* write to the link's target and keep the link, as mergekit's
         * writing into the linked directory does */
        if (stat(given, &st)) return cr_fail_errno(err, errno, "output directory %s is a symbolic link to nothing", given);
        if (!S_ISDIR(st.st_mode)) return cr_fail(err, CR_ERR_ARG, "%s exists and is not a directory", given);
        if (!realpath(given, final)) return cr_fail_errno(err, errno, "cannot resolve %s", given);
    }
    /* before the emptiness check: an input is refused, force or not, by
     * saying why */
    cr_status s = cr_outguard_check(inputs, given, "output directory", err);
    if (s) return s;
    int ds = dir_state(final);
    if (ds == 2) return cr_fail(err, CR_ERR_ARG, "%s exists and is not a directory", given);
    if (ds == 1 && !force)
        return cr_fail(err, CR_ERR_ARG, "%s exists and is not empty (use --force to replace it)", given);
    /* the temporary directory goes beside final: its nearest existing
     * ancestor must take new entries */
    char anc[PATH_MAX];
    strcpy(anc, final);
    for (;;) {
        char *slash = strrchr(anc, '/');
        if (!slash) { strcpy(anc, "."); break; }
        if (slash == anc) slash[1] = 0;
        else *slash = 0;
        if (!stat(anc, &st) || !strcmp(anc, "/")) break;
    }
    if (access(anc, W_OK | X_OK))
        return cr_fail_errno(err, errno, "cannot create output directory %s: %s does not allow it", given, anc);
    return CR_OK;
}

cr_status cr_outdir_check(const char *path, cr_error *err)
{
    char given[PATH_MAX], final[PATH_MAX];
    return check_path(path, true, NULL, given, final, err);
}

cr_status cr_outdir_begin(const cr_allocator *alloc, const char *path, const cr_outdir_options *opt,
                          cr_outdir *out, cr_error *err)
{
    static const cr_outdir_options none = {0};
    if (!opt) opt = &none;
    memset(out, 0, sizeof *out);
    out->alloc = alloc;
    out->io = opt->io ? opt->io : cr_posix_io();
    out->force = opt->force;
    char given[PATH_MAX], final[PATH_MAX];
    cr_status s = check_path(path, opt->force, opt->inputs, given, final, err);
    if (s) return s;
    /* a killed run's leftovers; finishing its replace may fill final */
    if (cr_outdir_clean_stale(alloc, final, opt->note, opt->note_ud) > 0 &&
        (s = check_path(path, opt->force, NULL, given, final, err)))
        return s;
    out->final_path = cr_strdup(alloc, final);
    out->tmp_path = out->final_path ? sibling(alloc, final, "tmp", (long)getpid()) : NULL;
    out->owner_path = out->tmp_path ? sibling(alloc, final, "owner", (long)getpid()) : NULL;
    if (!out->owner_path) { cr_outdir_free(out); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
    if (make_parents(out->io, alloc, out->tmp_path)) {
        s = cr_fail_errno(err, errno, "cannot create the parent directories of %s", given);
    } else if ((s = write_record(out->io, out->owner_path, err))) {
        /* s set */
    } else if (out->io->mkdir(out->io->ud, out->tmp_path, 0755)) {
        int e = errno;
        unlink(out->owner_path);
        s = cr_fail_errno(err, e, "cannot create %s", out->tmp_path);
    }
    if (s) {
        cr_free(alloc, out->owner_path);   /* not ours to remove now (it may be another run's) */
        out->owner_path = NULL;
        cr_free(alloc, out->tmp_path);
        out->tmp_path = NULL;
        cr_outdir_free(out);
    }
    return s;
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

/* Put the complete temporary directory at final_path over a non-empty
 * old one; *displaced receives the path now holding the old directory. */
static cr_status replace(cr_outdir *o, char **displaced, cr_error *err)
{
    const cr_io *io = o->io;
    if (io->exchange) {
        if (!io->exchange(io->ud, o->tmp_path, o->final_path)) {
            *displaced = cr_strdup(o->alloc, o->tmp_path);   /* the old directory is there now */
            return CR_OK;
        }
        if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP && errno != EOPNOTSUPP)
            return cr_fail_errno(err, errno, "cannot exchange %s with %s", o->tmp_path, o->final_path);
    }
    /* two renames; killed between them, the next begin finishes (outdir.h) */
    char *old = sibling(o->alloc, o->final_path, "old", (long)getpid());
    if (!old) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    if (io->rename(io->ud, o->final_path, old)) {
        cr_status s = cr_fail_errno(err, errno, "cannot move old %s aside", o->final_path);
        cr_free(o->alloc, old);
        return s;
    }
    if (io->rename(io->ud, o->tmp_path, o->final_path)) {
        cr_status s = cr_fail_errno(err, errno, "cannot rename %s to %s", o->tmp_path, o->final_path);
        rename(old, o->final_path);
        cr_free(o->alloc, old);
        return s;
    }
    *displaced = old;
    return CR_OK;
}

cr_status cr_outdir_commit(cr_outdir *o, cr_error *err)
{
    if (o->committed) return CR_OK;
    int e = fsync_dir(o->io, o->tmp_path);
    if (e) return cr_fail_errno(err, e, "cannot sync %s", o->tmp_path);
    int st = dir_state(o->final_path);
    char *displaced = NULL;
    if (st == 2) return cr_fail(err, CR_ERR_ARG, "%s exists and is not a directory", o->final_path);
    if (st == 1) {
        if (!o->force) return cr_fail(err, CR_ERR_ARG, "%s appeared while merging; not replacing it", o->final_path);
        cr_status s = replace(o, &displaced, err);
        if (s) return s;
    } else if (o->io->rename(o->io->ud, o->tmp_path, o->final_path)) {
        /* rename(2) replaces an empty directory; a file system that does
         * not gets it removed first */
        int re = errno;
        if (st != 0 || (re != EEXIST && re != ENOTEMPTY) || rmdir(o->final_path) ||
            o->io->rename(o->io->ud, o->tmp_path, o->final_path))
            return cr_fail_errno(err, re, "cannot rename %s to %s", o->tmp_path, o->final_path);
    }
    o->committed = true;
    char *parent = parent_of(o->alloc, o->final_path);
    /* the new directory is in place; a failed sync of its parent can no
     * longer be undone, so it is not an error (the rename is atomic) */
    if (parent) { (void)fsync_dir(o->io, parent); cr_free(o->alloc, parent); }
    if (displaced) { remove_tree(displaced); cr_free(o->alloc, displaced); }
    unlink(o->owner_path);   /* last: until here a kill leaves a record */
    return CR_OK;
}

void cr_outdir_abort(cr_outdir *o)
{
    if (o->committed || !o->tmp_path) return;
    remove_tree(o->tmp_path);
    if (o->owner_path) unlink(o->owner_path);
}

void cr_outdir_free(cr_outdir *o)
{
    if (!o->committed) cr_outdir_abort(o);
    cr_free(o->alloc, o->final_path);
    cr_free(o->alloc, o->tmp_path);
    cr_free(o->alloc, o->owner_path);
    o->final_path = o->tmp_path = o->owner_path = NULL;
}
