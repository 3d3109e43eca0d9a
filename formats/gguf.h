/* gguf.h — writing GGUF v3 files (spec/gguf.md §1): the metadata key/value
 * area, the tensor table and its layout, and the per-row value conversions
 * (f16, bf16, Q8_0) bit-identical to llama.cpp's converter and ggml's
 * reference quantisers.
 *
 * As for safetensors, the whole layout (header bytes, every tensor's offset)
 * is computed before any data exists, so tensor data can be pwritten at its
 * final offset in any order. The writer is little-endian only.
 */
#ifndef CR_GGUF_H
#define CR_GGUF_H

#include "base.h"
#include "jsonw.h"

#define CR_GGUF_ALIGN 32u            /* general.alignment's default; never written */
#define CR_GGUF_MAX_NAME 63u         /* GGML_MAX_NAME - 1 */

/* ggml tensor types crucible writes (GGMLQuantizationType codes) */
typedef enum cr_ggml_type {
    CR_GGML_F32 = 0,
    CR_GGML_F16 = 1,
    CR_GGML_Q4_0 = 2,
    CR_GGML_Q8_0 = 8,
    CR_GGML_BF16 = 30
} cr_ggml_type;

/* KV value types (gguf.h GGUF_TYPE_*) */
typedef enum cr_gguf_vtype {
    CR_GGUF_U8 = 0, CR_GGUF_I8 = 1, CR_GGUF_U16 = 2, CR_GGUF_I16 = 3, CR_GGUF_U32 = 4,
    CR_GGUF_I32 = 5, CR_GGUF_F32 = 6, CR_GGUF_BOOL = 7, CR_GGUF_STRING = 8, CR_GGUF_ARRAY = 9,
    CR_GGUF_U64 = 10, CR_GGUF_I64 = 11, CR_GGUF_F64 = 12
} cr_gguf_vtype;

/* "F32", "Q8_0", ... or NULL */
const char *cr_ggml_type_name(cr_ggml_type t);
/* elements per block and bytes per block (0 for an unknown type) */
unsigned cr_ggml_block_elems(cr_ggml_type t);
unsigned cr_ggml_block_bytes(cr_ggml_type t);

/* ---- the KV area ------------------------------------------------------- */

/* Keys are appended in order, encoded at once. A failed allocation is
 * remembered (the buffer's `failed`) and reported by cr_gguf_layout; a
 * duplicate key is reported there too. */
typedef struct cr_gguf_kv {
    cr_sbuf buf;                 /* encoded KVs */
    uint64_t n;
    char **keys;                 /* for the duplicate check and lookups */
    uint32_t cap;
    bool failed;
} cr_gguf_kv;

void cr_gguf_kv_init(cr_gguf_kv *kv, const cr_allocator *alloc);
void cr_gguf_kv_free(cr_gguf_kv *kv);
bool cr_gguf_kv_has(const cr_gguf_kv *kv, const char *key);
void cr_gguf_kv_str(cr_gguf_kv *kv, const char *key, const char *s);
void cr_gguf_kv_u32(cr_gguf_kv *kv, const char *key, uint32_t v);
void cr_gguf_kv_i32(cr_gguf_kv *kv, const char *key, int32_t v);
void cr_gguf_kv_f32(cr_gguf_kv *kv, const char *key, float v);
void cr_gguf_kv_bool(cr_gguf_kv *kv, const char *key, bool v);
void cr_gguf_kv_arr_str(cr_gguf_kv *kv, const char *key, const char *const *s, size_t n);
void cr_gguf_kv_arr_i32(cr_gguf_kv *kv, const char *key, const int32_t *v, size_t n);
void cr_gguf_kv_arr_f32(cr_gguf_kv *kv, const char *key, const float *v, size_t n);

/* ---- tensors and layout ------------------------------------------------- */

typedef struct cr_gguf_tensor {
    const char *name;            /* at most CR_GGUF_MAX_NAME bytes */
    uint32_t n_dims;             /* 1..4 */
    uint64_t ne[4];              /* ne[0] fastest: the torch shape reversed */
    cr_ggml_type type;
    uint64_t offset;             /* filled by cr_gguf_layout: absolute file offset */
    uint64_t nbytes;             /* filled by cr_gguf_layout */
} cr_gguf_tensor;

/* Lay out a file: header, KVs, tensor infos in array order, padding to
 * CR_GGUF_ALIGN, then each tensor's data padded to CR_GGUF_ALIGN. Fills
 * each tensor's offset and nbytes; *header (allocated, *header_len bytes =
 * the data start, padding included) is written at offset 0; *file_size
 * covers the last tensor's padding. Errors: ARG (a name too long or
 * repeated, a bad rank or type, ne[0] not a multiple of the block size, a
 * repeated key), LIMIT (sizes overflow), NOMEM. */
cr_status cr_gguf_layout(const cr_allocator *alloc, const cr_gguf_kv *kv, cr_gguf_tensor *t, size_t n,
                         uint8_t **header, uint64_t *header_len, uint64_t *file_size, cr_error *err);

/* ---- value conversion (one row of n f32 values) ------------------------- */

/* numpy astype(float16): IEEE round to nearest even (crucible's f32->f16) */
void cr_gguf_row_f16(const float *x, size_t n, uint8_t *out);
/* gguf-py BF16.quantize_blocks: RNE; a NaN keeps its sign and high payload
 * bits and gets the quiet bit (u & 0xffff0000 | 0x00400000) */
void cr_gguf_row_bf16(const float *x, size_t n, uint8_t *out);
/* ggml quantize_row_q8_0_ref (spec/gguf.md §7.2): n a multiple of 32, all
 * arithmetic in binary32 without contraction. The values must be finite
 * (the caller checks: ggml's int8 cast of a NaN is undefined). */
void cr_gguf_row_q8_0(const float *x, size_t n, uint8_t *out);
/* ggml quantize_row_q4_0_ref (= gguf-py's numpy Q4_0): per block of 32 the
 * first element of largest magnitude m, d = m / -8, nibbles
 * min(15, trunc(x / d + 8.5)), element j in the low nibble of byte j and
 * element j + 16 in its high nibble. Finite values only, as for Q8_0. */
void cr_gguf_row_q4_0(const float *x, size_t n, uint8_t *out);
/* The values of n elements (a multiple of the type's block) of ggml type
 * `type` (F32, F16, BF16, Q8_0, Q4_0) as f32: ggml's dequantize_row_*.
 * false for another type. */
bool cr_gguf_dequant(uint32_t type, const uint8_t *src, size_t n, float *out);
/* Convert one row to `type` (F32 copies little-endian bytes). */
void cr_gguf_row_convert(cr_ggml_type type, const float *x, size_t n, uint8_t *out);

#endif
