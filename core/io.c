/* io.c — the POSIX file system table and the fault-injecting wrapper
 * (io.h). */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

static int px_open(void *ud, const char *path, int flags, int mode)
{ (void)ud; return open(path, flags, (mode_t)mode); }
static ssize_t px_pwrite(void *ud, int fd, const void *buf, size_t n, uint64_t off)
{ (void)ud; return pwrite(fd, buf, n, (off_t)off); }
static int px_ftruncate(void *ud, int fd, uint64_t size)
{ (void)ud; return ftruncate(fd, (off_t)size); }
static int px_fsync(void *ud, int fd) { (void)ud; return fsync(fd); }
static int px_close(void *ud, int fd) { (void)ud; return close(fd); }
static int px_mkdir(void *ud, const char *path, int mode) { (void)ud; return mkdir(path, (mode_t)mode); }
static int px_rename(void *ud, const char *from, const char *to) { (void)ud; return rename(from, to); }
/* the system call directly: glibc before 2.28 has no renameat2 wrapper */
static int px_exchange(void *ud, const char *a, const char *b)
{
    (void)ud;
#if defined(__linux__) && defined(SYS_renameat2)
    return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, 2 /* RENAME_EXCHANGE */);
#else
    (void)a; (void)b;
    errno = ENOSYS;
    return -1;
#endif
}
static void px_writeback(void *ud, int fd)
{
    (void)ud;
#if defined(__linux__)
    (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd;
#endif
}

static const cr_io posix_io = {
    .open = px_open, .pwrite = px_pwrite, .ftruncate = px_ftruncate, .fsync = px_fsync, .close = px_close,
    .mkdir = px_mkdir, .rename = px_rename, .exchange = px_exchange, .writeback = px_writeback, .ud = NULL
};

const cr_io *cr_posix_io(void) { return &posix_io; }

int cr_io_write_all(const cr_io *io, int fd, const void *buf, uint64_t n, uint64_t off)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = io->pwrite(io->ud, fd, p, (size_t)CR_MIN(n, (uint64_t)1 << 30), off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno ? errno : EIO;
        }
        if (w == 0) return EIO;
        p += w;
        off += (uint64_t)w;
        n -= (uint64_t)w;
    }
    return 0;
}

/* ---- fault injection -------------------------------------------------- */

/* true when this call is the one to fail; records which call it was */
static bool should_fail(cr_failing_io *f, const char *call)
{
    long idx = __atomic_fetch_add(&f->count, 1, __ATOMIC_RELAXED);
    if (f->fail_at < 0 || idx != f->fail_at) return false;
    __atomic_fetch_add(&f->failed, 1, __ATOMIC_RELAXED);
    snprintf(f->failed_call, sizeof f->failed_call, "%s", call);
    errno = f->fault == CR_IO_FAULT_ENOSPC ? ENOSPC : EIO;
    return true;
}

static int fi_open(void *ud, const char *path, int flags, int mode)
{
    cr_failing_io *f = ud;
    if (should_fail(f, "open")) return -1;
    return f->inner->open(f->inner->ud, path, flags, mode);
}

static ssize_t fi_pwrite(void *ud, int fd, const void *buf, size_t n, uint64_t off)
{
    cr_failing_io *f = ud;
    if (should_fail(f, "pwrite")) {
        if (f->fault != CR_IO_FAULT_SHORT || n < 2) return -1;
        return f->inner->pwrite(f->inner->ud, fd, buf, n / 2, off);
    }
    return f->inner->pwrite(f->inner->ud, fd, buf, n, off);
}

static int fi_ftruncate(void *ud, int fd, uint64_t size)
{
    cr_failing_io *f = ud;
    if (should_fail(f, "ftruncate")) return -1;
    return f->inner->ftruncate(f->inner->ud, fd, size);
}

static int fi_fsync(void *ud, int fd)
{
    cr_failing_io *f = ud;
    if (should_fail(f, "fsync")) return -1;
    return f->inner->fsync(f->inner->ud, fd);
}

static int fi_close(void *ud, int fd)
{
    cr_failing_io *f = ud;
    /* the descriptor is released even when close reports an error, as on
     * Linux; otherwise a failed close would leak it */
    int r = f->inner->close(f->inner->ud, fd);
    if (should_fail(f, "close")) return -1;
    return r;
}

static int fi_mkdir(void *ud, const char *path, int mode)
{
    cr_failing_io *f = ud;
    if (should_fail(f, "mkdir")) return -1;
    return f->inner->mkdir(f->inner->ud, path, mode);
}

static int fi_rename(void *ud, const char *from, const char *to)
{
    cr_failing_io *f = ud;
    if (should_fail(f, "rename")) return -1;
    return f->inner->rename(f->inner->ud, from, to);
}

static int fi_exchange(void *ud, const char *a, const char *b)
{
    cr_failing_io *f = ud;
    if (should_fail(f, "exchange")) return -1;
    if (!f->inner->exchange) { errno = ENOSYS; return -1; }
    return f->inner->exchange(f->inner->ud, a, b);
}

void cr_failing_io_init(cr_failing_io *fio, const cr_io *inner, long fail_at, cr_io_fault fault)
{
    fio->base = (cr_io){ .open = fi_open, .pwrite = fi_pwrite, .ftruncate = fi_ftruncate, .fsync = fi_fsync,
                         .close = fi_close, .mkdir = fi_mkdir, .rename = fi_rename, .exchange = fi_exchange,
                         .writeback = NULL, .ud = fio };
    fio->inner = inner ? inner : cr_posix_io();
    fio->count = 0;
    fio->fail_at = fail_at;
    fio->fault = fault;
    fio->failed = 0;
    fio->failed_call[0] = 0;
}
