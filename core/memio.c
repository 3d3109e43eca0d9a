/* memio.c — the VM's output file system in memory (core/memio.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memio.h"

static cr_memio_file *find(cr_memio *m, const char *path)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->files[i].path && !strcmp(m->files[i].path, path)) return &m->files[i];
    return NULL;
}

static cr_memio_file *add(cr_memio *m, const char *path, int fd)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        cr_memio_file *f = cr_realloc(m->alloc, m->files, cap * sizeof *f);
        if (!f) return NULL;
        m->files = f;
        m->cap = cap;
    }
    char *p = cr_strdup(m->alloc, path);
    if (!p) return NULL;
    m->files[m->n] = (cr_memio_file){ .path = p, .fd = fd };
    return &m->files[m->n++];
}

static int mem_open(void *ud, const char *path, int flags, int mode)
{
    (void)mode;
    cr_memio *m = ud;
    pthread_mutex_lock(&m->lock);
    int rc = -1, e = 0;
    cr_memio_file *f = find(m, path);
    if ((flags & O_TMPFILE) == O_TMPFILE) {
        /* a spill file (O_TMPFILE holds O_DIRECTORY's bit): anonymous
         * memory, never named */
        if ((rc = memfd_create("crucible-spill", MFD_CLOEXEC)) < 0) e = errno;
    } else if (flags & O_DIRECTORY) {
        /* fsync of a directory: nothing to sync; a descriptor to close */
        if (!f || f->fd >= 0) e = ENOENT;
        else if ((rc = memfd_create("crucible-dir", MFD_CLOEXEC)) < 0) e = errno;
    } else if (f && f->fd >= 0) {
        if ((flags & O_CREAT) && (flags & O_EXCL)) e = EEXIST;
        else if ((rc = fcntl(f->fd, F_DUPFD_CLOEXEC, 0)) < 0) e = errno;
        else if ((flags & O_TRUNC) && ftruncate(rc, 0)) { e = errno; close(rc); rc = -1; }
    } else if (f) {
        e = EISDIR;
    } else if (!(flags & O_CREAT)) {
        e = ENOENT;
    } else {
        const char *base = strrchr(path, '/');
        int fd = memfd_create(base ? base + 1 : path, MFD_CLOEXEC);
        if (fd < 0) e = errno;
        else if ((rc = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) { e = errno; close(fd); }
        else if (!add(m, path, fd)) { e = ENOMEM; close(fd); close(rc); rc = -1; }
    }
    pthread_mutex_unlock(&m->lock);
    if (rc < 0) errno = e;
    return rc;
}

static ssize_t mem_pwrite(void *ud, int fd, const void *buf, size_t n, uint64_t off)
{
    (void)ud;
    return pwrite(fd, buf, n, (off_t)off);
}

static int mem_ftruncate(void *ud, int fd, uint64_t size) { (void)ud; return ftruncate(fd, (off_t)size); }
static int mem_fsync(void *ud, int fd) { (void)ud; (void)fd; return 0; }
static int mem_close(void *ud, int fd) { (void)ud; return close(fd); }

static int mem_mkdir(void *ud, const char *path, int mode)
{
    (void)mode;
    cr_memio *m = ud;
    pthread_mutex_lock(&m->lock);
    int rc = 0, e = 0;
    if (find(m, path)) { rc = -1; e = EEXIST; }
    else if (!add(m, path, -1)) { rc = -1; e = ENOMEM; }
    pthread_mutex_unlock(&m->lock);
    if (rc) errno = e;
    return rc;
}

/* from and every path under it take the new prefix */
static int mem_rename(void *ud, const char *from, const char *to)
{
    cr_memio *m = ud;
    size_t fl = strlen(from), tl = strlen(to);
    pthread_mutex_lock(&m->lock);
    int rc = 0, e = 0;
    if (!find(m, from)) { rc = -1; e = ENOENT; }
    else if (find(m, to)) { rc = -1; e = EEXIST; }
    for (size_t i = 0; !rc && i < m->n; i++) {
        char *p = m->files[i].path;
        if (strncmp(p, from, fl) || (p[fl] && p[fl] != '/')) continue;
        size_t rest = strlen(p + fl);
        char *q = cr_malloc(m->alloc, tl + rest + 1);
        if (!q) { rc = -1; e = ENOMEM; break; }
        memcpy(q, to, tl);
        memcpy(q + tl, p + fl, rest + 1);
        cr_free(m->alloc, p);
        m->files[i].path = q;
    }
    pthread_mutex_unlock(&m->lock);
    if (rc) errno = e;
    return rc;
}

cr_status cr_memio_init(cr_memio *m, const cr_allocator *alloc, cr_error *err)
{
    memset(m, 0, sizeof *m);
    m->alloc = alloc;
    int fd = memfd_create("crucible-probe", MFD_CLOEXEC);
    if (fd < 0) return cr_fail_errno(err, errno, "memory files (memfd_create) are not available");
    close(fd);
    pthread_mutex_init(&m->lock, NULL);
    m->io = (cr_io){ .open = mem_open, .pwrite = mem_pwrite, .ftruncate = mem_ftruncate, .fsync = mem_fsync,
                     .close = mem_close, .mkdir = mem_mkdir, .rename = mem_rename, .ud = m };
    return CR_OK;
}

void cr_memio_free(cr_memio *m)
{
    if (!m->alloc) return;
    for (size_t i = 0; i < m->n; i++) {
        if (m->files[i].fd >= 0) close(m->files[i].fd);
        cr_free(m->alloc, m->files[i].path);
    }
    cr_free(m->alloc, m->files);
    pthread_mutex_destroy(&m->lock);
    memset(m, 0, sizeof *m);
}

const char *cr_memio_path(cr_memio *m, const char *path, char *buf, size_t cap)
{
    pthread_mutex_lock(&m->lock);
    cr_memio_file *f = find(m, path);
    int fd = f ? f->fd : -1;
    pthread_mutex_unlock(&m->lock);
    if (fd < 0) return NULL;
    int n = snprintf(buf, cap, "/proc/self/fd/%d", fd);
    return n > 0 && (size_t)n < cap ? buf : NULL;
}

uint64_t cr_memio_bytes(cr_memio *m)
{
    uint64_t total = 0;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n; i++) {
        struct stat sb;
        if (m->files[i].fd >= 0 && !fstat(m->files[i].fd, &sb)) total += (uint64_t)sb.st_size;
    }
    pthread_mutex_unlock(&m->lock);
    return total;
}
