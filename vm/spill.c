/* spill.c — scratch in an unnamed file mapping (spill.h). */
#include "spill.h"
#include "io.h"
#include "memplan.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* An unnamed file in dir: O_TMPFILE where the file system has it (the file
 * never has a name), else a fresh name unlinked at once. -1 with errno. */
static int unnamed_file(const cr_io *io, const char *dir)
{
#ifdef O_TMPFILE
    int fd = io->open(io->ud, dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) return fd;
#endif
    char path[4096];
    for (unsigned i = 0; i < 1000; i++) {
        snprintf(path, sizeof path, "%s/.crucible-spill-%u", dir, i);
        int fd = io->open(io->ud, path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0) {
            unlink(path);
            return fd;
        }
        if (errno != EEXIST) return -1;
    }
    errno = EEXIST;
    return -1;
}

cr_status cr_spill_open(cr_spill *sp, const cr_io *io, const char *dir, uint64_t bytes, const char *what,
                        cr_error *err)
{
    *sp = (cr_spill){0};
    if (!io) io = cr_posix_io();
    if ((uint64_t)(size_t)bytes != bytes || (uint64_t)(off_t)bytes != bytes)
        return cr_fail(err, CR_ERR_LIMIT, "%s: %llu bytes do not fit this system's address space", what,
                       (unsigned long long)bytes);
    int fd = unnamed_file(io, dir);
    if (fd < 0) return cr_fail_errno(err, errno, "cannot create a file in %s for %s (--max-memory spills it)", dir, what);
    /* blocks reserved now: a full disk must not be a SIGBUS mid-sort */
    int e = io->ftruncate(io->ud, fd, bytes) ? errno : posix_fallocate(fd, 0, (off_t)bytes);
    void *map = MAP_FAILED;
    if (!e) {
        map = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) e = errno;
    }
    io->close(io->ud, fd);   /* the mapping keeps the file */
    if (e) return cr_fail_errno(err, e, "cannot reserve %llu MiB in %s for %s (--max-memory spills it)",
                                (unsigned long long)((bytes + (1 << 20) - 1) >> 20), dir, what);
    sp->base = map;
    sp->bytes = bytes;
    return CR_OK;
}

/* an address rounded to a fault-around block of the address space (where
 * the kernel's windows lie), clipped to the mapping */
static uintptr_t block_edge(const cr_spill *sp, uintptr_t a, bool up)
{
    const uintptr_t fa = (uintptr_t)CR_MEM_FAULT_AROUND, base = (uintptr_t)sp->base, end = base + sp->bytes;
    a = up ? (a + fa - 1) & ~(fa - 1) : a & ~(fa - 1);
    return a < base ? base : a > end ? end : a;
}

void cr_spill_done(const cr_spill *sp, const void *lo, const void *hi, bool rising)
{
    if (!sp->base) return;
    uintptr_t a = block_edge(sp, (uintptr_t)lo, !rising), b = block_edge(sp, (uintptr_t)hi, !rising);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

void cr_spill_close(cr_spill *sp)
{
    if (sp->base) munmap(sp->base, (size_t)sp->bytes);
    *sp = (cr_spill){0};
}
