/* io.h — the file system calls the VM makes to write an output directory,
 * behind a table of function pointers so tests can make any one of them
 * fail (fault injection, issue 8).
 *
 * cr_posix_io() is the real thing. A cr_failing_io wraps another table and
 * fails call number `fail_at` (0-based, counting every call through the
 * table) the way a full or broken disk does: with ENOSPC or EIO, or, for a
 * pwrite, by writing only part of the buffer (a short count, which callers
 * must retry). Each function follows its POSIX namesake: -1 (or a short
 * count) with errno set on failure. The counters are atomic: shard data is
 * written from worker threads.
 */
#ifndef CR_IO_H
#define CR_IO_H

#include "base.h"

#include <sys/types.h>

typedef struct cr_io {
    int (*open)(void *ud, const char *path, int flags, int mode);
    ssize_t (*pwrite)(void *ud, int fd, const void *buf, size_t n, uint64_t off);
    int (*ftruncate)(void *ud, int fd, uint64_t size);
    int (*fsync)(void *ud, int fd);
    int (*close)(void *ud, int fd);
    int (*mkdir)(void *ud, const char *path, int mode);
    int (*rename)(void *ud, const char *from, const char *to);
    /* optional (NULL: none): swap two existing paths in one atomic step
     * (Linux renameat2 RENAME_EXCHANGE). -1 with errno EINVAL, ENOSYS or
     * ENOTSUP where the file system has no such call; the caller then falls
     * back to two renames (outdir.c). */
    int (*exchange)(void *ud, const char *a, const char *b);
    /* optional (NULL: none): start writing the file's dirty pages to disk
     * without waiting for them. A hint that lets the disk work while the
     * merge computes, instead of all at the final fsync; it has no result
     * (errors surface at fsync), so fault injection leaves it out. */
    void (*writeback)(void *ud, int fd);
    void *ud;
} cr_io;

/* The process's file system (stateless; safe to share). */
const cr_io *cr_posix_io(void);

/* Write all n bytes of buf at file offset off through io, retrying short
 * counts and EINTR, in calls of at most 1 GiB. 0, or the errno of the call
 * that failed (EIO for a write of nothing). */
int cr_io_write_all(const cr_io *io, int fd, const void *buf, uint64_t n, uint64_t off);

typedef enum cr_io_fault {
    CR_IO_FAULT_EIO,      /* the call fails with EIO */
    CR_IO_FAULT_ENOSPC,   /* the call fails with ENOSPC (disk full) */
    CR_IO_FAULT_SHORT     /* a pwrite writes half and returns the short count;
                             any other call fails with EIO */
} cr_io_fault;

typedef struct cr_failing_io {
    cr_io base;               /* pass &fio.base wherever a cr_io goes */
    const cr_io *inner;
    long count;               /* calls so far (atomic) */
    long fail_at;             /* -1: never */
    cr_io_fault fault;
    long failed;              /* faults injected so far (atomic) */
    char failed_call[16];     /* name of the call that was failed ("pwrite") */
} cr_failing_io;

void cr_failing_io_init(cr_failing_io *fio, const cr_io *inner, long fail_at, cr_io_fault fault);

#endif
