/* manifest.c — a program's input manifest at this machine: binding each
 * file to the path it is read at, naming a file for messages, and
 * recording content hashes (program.h).
 *
 * A .crb names a model's file by the model's reference and the file's path
 * inside the model (spec/bytecode.md, "Inputs"); where that is on this
 * machine is a binding, kept in a pool of its own so that binding after
 * compiling or loading never moves the program's blobs and saving never
 * writes a path of the machine that compiled it. Resolving references to
 * directories is the compiler's (compiler/bind.h: the same resolver as a
 * recipe's models).
 */
#include "program.h"
#include "hash.h"
#include "limits.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

cr_status cr_program_bind_file(cr_program *p, uint32_t i, const char *path, cr_error *err)
{
    size_t len = strlen(path);
    if (i >= p->n_files) return cr_fail(err, CR_ERR_ARG, "binding file %u of %u", i, p->n_files);
    if (!len || len > CR_LIMIT_NAME)
        return cr_fail(err, CR_ERR_LIMIT, "input path of %zu bytes (limit %u)", len, CR_LIMIT_NAME);
    if (p->n_bound_bytes + len + 1 > CR_LIMIT_BLOB_BYTES)
        return cr_fail(err, CR_ERR_LIMIT, "bound input paths exceed %llu bytes", (unsigned long long)CR_LIMIT_BLOB_BYTES);
    uint8_t *nb = cr_realloc(p->alloc, p->bound, (size_t)(p->n_bound_bytes + len + 1));
    if (!nb) return cr_fail(err, CR_ERR_NOMEM, "out of memory binding %s", path);
    p->bound = nb;
    memcpy(nb + p->n_bound_bytes, path, len + 1);
    p->files[i].path = (cr_blob){ p->n_bound_bytes | CR_BLOB_BOUND, len };
    p->n_bound_bytes += len + 1;
    return CR_OK;
}

uint32_t cr_program_first_unbound(const cr_program *p)
{
    for (uint32_t i = 0; i < p->n_files; i++)
        if (!p->files[i].path.len) return i;
    return UINT32_MAX;
}

const char *cr_program_file_label(const cr_program *p, uint32_t i, char *buf, size_t n)
{
    const cr_prog_file *f = &p->files[i];
    if (f->model == CR_PROG_NO_MODEL) snprintf(buf, n, "%s", cr_prog_str(p, f->rel));
    else snprintf(buf, n, "%s: %s", cr_prog_str(p, p->models[f->model].ref), cr_prog_str(p, f->rel));
    return buf;
}

/* XXH64 of the whole file at `path`, read in blocks (no map: a file that
 * shrinks is an error, not a SIGBUS) */
static cr_status hash_file(const cr_allocator *al, const char *path, uint64_t size, uint64_t *out, cr_error *err)
{
    enum { BLOCK = 8u << 20 };
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cr_fail_errno(err, errno, "input %s", path);
    uint8_t *buf = cr_malloc(al, BLOCK);
    if (!buf) { close(fd); return cr_fail(err, CR_ERR_NOMEM, "out of memory hashing %s", path); }
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    cr_xxh64_state st;
    cr_xxh64_init(&st, 0);
    uint64_t done = 0;
    cr_status s = CR_OK;
    for (;;) {
        ssize_t n = read(fd, buf, BLOCK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { s = cr_fail_errno(err, errno, "reading %s", path); break; }
        if (n == 0) break;
        cr_xxh64_update(&st, buf, (size_t)n);
        done += (uint64_t)n;
    }
    if (!s && done != size)
        s = cr_fail(err, CR_ERR_RUNTIME, "input %s is %llu bytes, %llu when compiled (it changed meanwhile)",
                    path, (unsigned long long)done, (unsigned long long)size);
    cr_free(al, buf);
    close(fd);
    if (!s) *out = cr_xxh64_final(&st);
    return s;
}

cr_status cr_program_hash_inputs(cr_program *p, cr_error *err)
{
    for (uint32_t i = 0; i < p->n_files; i++) {
        if (!p->files[i].path.len) {
            char l[CR_LIMIT_NAME];
            return cr_fail(err, CR_ERR_ARG, "input %s is not bound to a path", cr_program_file_label(p, i, l, sizeof l));
        }
        cr_status s = hash_file(p->alloc, cr_prog_str(p, p->files[i].path), p->files[i].size, &p->files[i].hash, err);
        if (s) return s;
    }
    p->flags &= ~(uint32_t)CR_PROG_SKIP_HASH;
    return CR_OK;
}
