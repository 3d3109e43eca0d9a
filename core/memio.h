/* memio.h — an output file system in memory for the VM (a cr_io, io.h):
 * the sink of a run whose output is scored and thrown away (candidate
 * merges, cli/candidate.h) instead of written as a model directory.
 *
 * Every file the VM creates is an anonymous memory file (Linux
 * memfd_create): real descriptors, so pwrite, ftruncate and mmap work
 * unchanged (the VM's spill files too), but no file system holds them and
 * they vanish with the cr_memio. Directories are names only. The table
 * keeps one descriptor of each file by path; rename moves a path and
 * every path under it, as the VM's final rename of its temporary
 * directory does. cr_memio_path gives a path that opens a file for
 * reading ("/proc/self/fd/N"), which is how a model is opened from the
 * memory (formats/model.h cr_model_open_fs).
 *
 * Thread safety: open, close, mkdir and rename take a mutex (the VM opens
 * from its main thread; pwrite from workers goes straight to the
 * descriptor).
 */
#ifndef CR_MEMIO_H
#define CR_MEMIO_H

#include <pthread.h>

#include "io.h"

typedef struct cr_memio_file {
    char *path;
    int fd;         /* kept until cr_memio_free; -1 for a directory */
} cr_memio_file;

typedef struct cr_memio {
    cr_io io;                   /* pass &m.io wherever a cr_io goes */
    const cr_allocator *alloc;
    pthread_mutex_t lock;
    cr_memio_file *files;
    size_t n, cap;
} cr_memio;

/* Errors: CR_ERR_UNSUPPORTED where memfd_create is missing (not Linux). */
cr_status cr_memio_init(cr_memio *m, const cr_allocator *alloc, cr_error *err);
/* Close every memory file: their memory goes back to the system once no
 * mapping holds them. */
void cr_memio_free(cr_memio *m);
/* A path that opens the file `path` for reading, written into buf, or
 * NULL when there is no such file (or buf is too small). */
const char *cr_memio_path(cr_memio *m, const char *path, char *buf, size_t cap);
/* Bytes of every memory file (their sizes). */
uint64_t cr_memio_bytes(cr_memio *m);

#endif
