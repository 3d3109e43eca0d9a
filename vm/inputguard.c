/* inputguard.c — a file's identity recorded and re-checked (stat), and the
 * address ranges of the input mappings for a SIGBUS handler (what to do
 * with a read past the end of an input that shrank). See inputguard.h for
 * why both exist and spec/reliability.md §8.2 for what each detects.
 */
#include "inputguard.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void id_from_stat(const struct stat *sb, cr_file_id *out)
{
    out->dev = (uint64_t)sb->st_dev;
    out->ino = (uint64_t)sb->st_ino;
    out->size = (uint64_t)sb->st_size;
    out->mtime_s = (int64_t)sb->st_mtim.tv_sec;
    out->mtime_ns = (int64_t)sb->st_mtim.tv_nsec;
    out->ctime_s = (int64_t)sb->st_ctim.tv_sec;
    out->ctime_ns = (int64_t)sb->st_ctim.tv_nsec;
}

cr_status cr_file_id_of_fd(int fd, const char *path, cr_file_id *out, cr_error *err)
{
    struct stat sb;
    if (fstat(fd, &sb)) return cr_fail_errno(err, errno, "input %s: cannot stat", path);
    id_from_stat(&sb, out);
    return CR_OK;
}

cr_status cr_file_id_check(const char *path, const cr_file_id *was, cr_error *err)
{
    struct stat sb;
    if (stat(path, &sb)) {
        int e = errno;
        return cr_fail(err, CR_ERR_RUNTIME, "input %s changed while it was being read (%s: %s)", path,
                       e == ENOENT ? "removed" : "cannot stat it", strerror(e));
    }
    cr_file_id now;
    id_from_stat(&sb, &now);
    if (now.dev != was->dev || now.ino != was->ino)
        return cr_fail(err, CR_ERR_RUNTIME, "input %s changed while it was being read (replaced by another file)",
                       path);
    if (now.size != was->size)
        return cr_fail(err, CR_ERR_RUNTIME, "input %s changed while it was being read (%llu bytes, now %llu)", path,
                       (unsigned long long)was->size, (unsigned long long)now.size);
    if (now.mtime_s != was->mtime_s || now.mtime_ns != was->mtime_ns)
        return cr_fail(err, CR_ERR_RUNTIME, "input %s changed while it was being read (written to: its "
                       "modification time moved)", path);
    /* ctime moves on any write, truncate, chmod, link or utimes (which
     * could set mtime back), and no one can set it */
    if (now.ctime_s != was->ctime_s || now.ctime_ns != was->ctime_ns)
        return cr_fail(err, CR_ERR_RUNTIME, "input %s changed while it was being read (its status-change time "
                       "moved: written, truncated or its times reset)", path);
    return CR_OK;
}

void cr_input_guard_init(cr_input_guard *g)
{
    atomic_init(&g->regions, NULL);
    atomic_init(&g->n_regions, 0);
    atomic_init(&g->faulted, 0);
    g->page = (uintptr_t)sysconf(_SC_PAGESIZE);
}

void cr_input_guard_set(cr_input_guard *g, const cr_input_region *regions, uint32_t n)
{
    atomic_store(&g->faulted, 0);
    atomic_store(&g->n_regions, 0);
    atomic_store(&g->regions, regions);
    atomic_store(&g->n_regions, n);   /* last: a handler sees n only with its array */
}

void cr_input_guard_clear(cr_input_guard *g)
{
    atomic_store(&g->n_regions, 0);
    atomic_store(&g->regions, NULL);
}

bool cr_input_guard_on_sigbus(cr_input_guard *g, const void *addr)
{
    uint32_t n = atomic_load(&g->n_regions);
    const cr_input_region *r = atomic_load(&g->regions);
    uintptr_t a = (uintptr_t)addr;
    for (uint32_t i = 0; r && i < n; i++) {
        if (a < r[i].lo || a >= r[i].hi) continue;
        /* The file no longer backs this page: put zeros there instead, so
         * the load completes; the run fails at its next check, naming the
         * file. mmap is not on POSIX's async-signal-safe list, but on Linux
         * it is the bare system call (runtimes map pages from SIGSEGV and
         * SIGBUS handlers the same way). MAP_FIXED over part of the
         * read-only input mapping; the run's munmap of the whole range
         * removes it with the rest. */
        void *page = (void *)(a & ~(g->page - 1));
        if (mmap(page, g->page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
            return false;
        unsigned none = 0;
        atomic_compare_exchange_strong(&g->faulted, &none, i + 1);
        return true;
    }
    return false;
}

uint32_t cr_input_guard_faulted(const cr_input_guard *g)
{
    return atomic_load(&g->faulted);
}
