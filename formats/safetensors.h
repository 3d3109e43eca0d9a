/* safetensors.h — reading and writing safetensors files.
 *
 * Reader: the file is mmapped and every rule of the format is checked before
 * any tensor is handed out (../shared/reference/formats-and-moe.md §5.1):
 * size >= 8, header length <= 100 MB and inside the file, UTF-8 JSON object,
 * known dtypes, shapes whose byte size matches data_offsets, offsets
 * contiguous from 0 with no gap or overlap, data ending exactly at EOF, no
 * duplicate names, __metadata__ string -> string. Errors name the file and
 * the tensor.
 *
 * Writer: the layout (tensor order, offsets, header bytes) is computed up
 * front, byte-identical to Python's safetensors.torch.save_file: tensors
 * sorted by dtype rank descending then name, compact JSON with __metadata__
 * first, header padded with spaces to a multiple of 8. Tensor data is then
 * written at its final offset, in any order, by anyone holding the layout.
 */
#ifndef CR_SAFETENSORS_H
#define CR_SAFETENSORS_H

#include "base.h"
#include "dtype.h"
#include "limits.h"    /* CR_MAX_DIMS */

#define CR_ST_MAX_HEADER CR_LIMIT_ST_HEADER   /* limits.h */

typedef struct cr_st_tensor {
    const char *name;           /* owned by the file */
    cr_dtype dtype;
    uint32_t ndim;
    uint64_t shape[CR_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;        /* byte offsets relative to data start */
} cr_st_tensor;

typedef struct cr_st_file {
    const cr_allocator *alloc;
    char *path;
    uint64_t file_size;
    uint64_t data_start;        /* 8 + header length */
    const uint8_t *map;         /* whole file mapped read-only; NULL if header-only */
    cr_st_tensor *tensors;      /* in header order */
    uint32_t n_tensors;
    uint32_t *by_name;          /* indices sorted by name, for cr_st_find */
    char **meta_keys, **meta_values;
    uint32_t n_meta;
    void *owned;                /* private storage */
    /* A PyTorch zip (torchbin.h) read as this record: the tensors sit inside
     * a container that goes on past the last of them, so its whole size is
     * what a .crb records. 0 for safetensors. */
    uint64_t container_size;
} cr_st_file;

enum {
    /* Read and validate the header only; the data may be absent (a file
     * truncated after its header still opens). Used by `plan`. */
    CR_ST_HEADER_ONLY = 1u << 0
};

cr_status cr_st_open(const cr_allocator *alloc, const char *path, unsigned flags,
                     cr_st_file *out, cr_error *err);
void cr_st_close(cr_st_file *f);
/* For readers of other containers (torchbin.c) that hand their tensors out
 * as a cr_st_file with data_start 0 and absolute begin/end: an empty open
 * record for `path`, whose tables the caller allocates from *arena (owned by
 * the record; cr_st_close frees it). */
cr_status cr_st_open_foreign(const cr_allocator *alloc, const char *path, cr_st_file *out, cr_arena **arena,
                             cr_error *err);
/* The record owns `map` (len bytes, from mmap) from now on. */
void cr_st_adopt_map(cr_st_file *f, const uint8_t *map, size_t len);
/* After the caller filled tensors/n_tensors: the by-name table (from the
 * arena); a name twice is a FORMAT error naming it. */
cr_status cr_st_index_names(cr_st_file *f, cr_error *err);

/* Binary search by name; NULL if absent. */
const cr_st_tensor *cr_st_find(const cr_st_file *f, const char *name);
/* The size a complete file with this header has (8 + header + data). For a
 * header-only open of a truncated file this differs from file_size; the
 * compiler records it in the input manifest. */
uint64_t cr_st_expected_size(const cr_st_file *f);
/* Pointer to a tensor's bytes (NULL for a header-only file). */
const void *cr_st_data(const cr_st_file *f, const cr_st_tensor *t);

/* Tell the kernel the mapped pages wholly inside tensor t are no longer
 * needed (madvise MADV_DONTNEED on a read-only mapping: they are dropped
 * and re-read from the file if touched again). Keeps the resident set of a
 * pass over a large model bounded. No-op for header-only files. */
void cr_st_release(const cr_st_file *f, const cr_st_tensor *t);
/* The same for bytes [off, off+len) of tensor t's data (clamped to it). */
void cr_st_release_bytes(const cr_st_file *f, const cr_st_tensor *t, uint64_t off, uint64_t len);

/* ---- writer ------------------------------------------------------------- */

typedef struct cr_st_entry {
    const char *name;
    cr_dtype dtype;
    uint32_t ndim;
    uint64_t shape[CR_MAX_DIMS];
    uint64_t offset;            /* filled by cr_st_layout: absolute file offset */
    uint64_t nbytes;            /* filled by cr_st_layout */
} cr_st_entry;

/* Compute the layout of a file holding `entries` (order in the array does
 * not matter): fills each entry's offset and nbytes, and returns the header
 * bytes (8-byte length + JSON + padding, allocated with alloc) and the total
 * file size. Metadata is {"format":"pt"} plus any extra string pairs. */
cr_status cr_st_layout(const cr_allocator *alloc, cr_st_entry *entries, size_t n,
                       const char *const *meta_kv, size_t n_meta_pairs,
                       uint8_t **header, uint64_t *header_len, uint64_t *file_size,
                       cr_error *err);

/* Write a whole file from in-memory tensors (data[i] holds entries[i]'s
 * bytes). Used by synth and tests; the VM writes through the layout. */
cr_status cr_st_write_file(const cr_allocator *alloc, const char *path,
                           cr_st_entry *entries, const void *const *data, size_t n,
                           cr_error *err);

/* pwrite all n bytes of buf at file offset off (retrying short writes and
 * EINTR); errors name `path`. For writers that stream through a layout. */
cr_status cr_write_at(int fd, const void *buf, size_t n, uint64_t off, const char *path,
                      cr_error *err);

#endif
