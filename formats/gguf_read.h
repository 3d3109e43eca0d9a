/* gguf_read.h — reading a GGUF file's metadata and tensor table, validated
 * as strictly as ggml's loader (spec/gguf.md §1.1): magic and version 3,
 * string and array lengths inside the file (and at most 1 GiB / 2^30
 * elements), non-empty unique keys, value types 0..12 (no nested arrays),
 * general.alignment a UINT32 power of two, tensor names of 1..63 bytes and
 * unique, 1..4 non-negative dimensions whose product fits int64, a known
 * ggml type whose block divides ne[0], data offsets packed exactly in
 * order and inside the file, and zero padding.
 */
#ifndef CR_GGUF_READ_H
#define CR_GGUF_READ_H

#include "base.h"

typedef struct cr_gguf_kv_info {
    char *key;
    uint32_t type;               /* GGUF value type (gguf.h cr_gguf_vtype) */
    uint32_t arr_type;           /* for ARRAY: the element type */
    uint64_t arr_n;              /* for ARRAY: the element count */
    uint64_t value_off;          /* file offset of the value (of the first element for ARRAY) */
    uint64_t value_len;          /* its bytes (all elements for ARRAY) */
} cr_gguf_kv_info;

typedef struct cr_gguf_tensor_info {
    char *name;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;               /* ggml type id */
    uint64_t offset;             /* absolute file offset */
    uint64_t nbytes;
} cr_gguf_tensor_info;

typedef struct cr_gguf_file {
    const cr_allocator *alloc;
    char *path;
    const uint8_t *map;          /* the whole file, read-only */
    uint64_t size;
    uint32_t version, alignment;
    uint64_t data_start, data_bytes;
    cr_gguf_kv_info *kv;
    uint64_t n_kv;
    cr_gguf_tensor_info *tensors;
    uint64_t n_tensors;
} cr_gguf_file;

/* Errors: IO (cannot open or map), FORMAT (a rule above, naming the byte,
 * key or tensor), UNSUPPORTED (another version), NOMEM. */
cr_status cr_gguf_open(const cr_allocator *alloc, const char *path, cr_gguf_file *out, cr_error *err);
void cr_gguf_close(cr_gguf_file *f);
/* whether `path` is a regular file starting with "GGUF" */
bool cr_gguf_is_gguf(const char *path);
/* the name of ggml type `id` and its block (elements, bytes), or NULL */
const char *cr_gguf_type_info(uint32_t id, uint32_t *block, uint32_t *bytes);

#endif
