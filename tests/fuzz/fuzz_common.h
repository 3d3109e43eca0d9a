/* fuzz_common.h — helpers shared by the libFuzzer targets in tests/fuzz/.
 *
 * Each target defines LLVMFuzzerTestOneInput and may be built three ways:
 * with libFuzzer (tools/fuzz.sh), with tests/fuzz/replay.c's main() as a
 * plain program, or included into tests/unit/test_fuzz_replay.c (which
 * renames the entry point, hence every helper here is static and every
 * target's own state carries the target's prefix). Fixtures that need files
 * (model directories) are created once per process in a mkdtemp() directory
 * removed at exit. All library allocation goes through a leak-checking
 * cr_failing_allocator: a block still live after cleanup aborts the run, so
 * the replay finds leaks even without LeakSanitizer. Test code: plain malloc.
 */
#ifndef CR_FUZZ_COMMON_H
#define CR_FUZZ_COMMON_H

#include "base.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* abort with a message: the fuzzer records the input as a crash */
#define FUZZ_ASSERT(cond, ...) do { if (!(cond)) {                       \
        fprintf(stderr, "fuzz assertion failed: %s: ", #cond);           \
        fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)

static inline bool fuzz_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return (fclose(f) == 0) && ok;
}

/* An anonymous in-memory file holding data; *path receives /proc/self/fd/N.
 * Returns the fd (close it after use) or -1. */
static inline int fuzz_memfd(const void *data, size_t n, char *path, size_t cap)
{
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0) return -1;
    const uint8_t *p = data;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w <= 0) { close(fd); return -1; }
        done += (size_t)w;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

static inline int fuzz_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static inline void fuzz_rmtree(const char *path)
{
    if (path) nftw(path, fuzz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* a fresh mkdtemp() directory (malloc'd path) or NULL */
static inline char *fuzz_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    size_t n = strlen(base) + strlen(tag) + 32;
    char *p = malloc(n);
    if (!p) return NULL;
    snprintf(p, n, "%s/crfuzz-%s-XXXXXX", base, tag);
    if (!mkdtemp(p)) { free(p); return NULL; }
    return p;
}

static inline char *fuzz_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* a safetensors file: header text json (padded to 8) + data_bytes zeros */
static inline bool fuzz_write_st(const char *path, const char *json, size_t data_bytes)
{
    size_t n = strlen(json), pad = (8 - n % 8) % 8, total = 8 + n + pad + data_bytes;
    unsigned char *buf = calloc(1, total);
    if (!buf) return false;
    uint64_t hl = n + pad;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 8, json, n);
    memset(buf + 8 + n, ' ', pad);
    bool ok = fuzz_write_file(path, buf, total);
    free(buf);
    return ok;
}

/* leak-checking allocator for one input */
static inline void fuzz_alloc_begin(cr_failing_allocator *fa)
{
    cr_failing_allocator_init(fa, cr_default_allocator(), -1, false);
}

static inline void fuzz_alloc_end(const cr_failing_allocator *fa, const char *what)
{
    FUZZ_ASSERT(fa->live == 0, "%s leaked %ld blocks", what, fa->live);
}

#endif
