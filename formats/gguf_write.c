/* gguf_write.c — the GGUF v3 writer's pieces: KV encoding, the layout of
 * header, tensor infos and data (spec/gguf.md §1), and the row conversions
 * the converter applies (numpy f16, gguf-py bf16, ggml's Q8_0 reference).
 *
 * The encoding is gguf-py's GGUFWriter: little-endian, strings as u64
 * length + bytes without NUL, arrays as element type + u64 count + untagged
 * elements, tensor data and the end of the tensor table padded with zeros
 * to 32 bytes. Python ints in arrays are INT32 there, hence the i32 arrays.
 */
#include "gguf.h"

#include <math.h>
#include <string.h>

#include "dtype.h"

const char *cr_ggml_type_name(cr_ggml_type t)
{
    switch (t) {
    case CR_GGML_F32: return "F32";
    case CR_GGML_F16: return "F16";
    case CR_GGML_Q4_0: return "Q4_0";
    case CR_GGML_Q8_0: return "Q8_0";
    case CR_GGML_BF16: return "BF16";
    }
    return NULL;
}

unsigned cr_ggml_block_elems(cr_ggml_type t)
{
    switch (t) {
    case CR_GGML_F32: case CR_GGML_F16: case CR_GGML_BF16: return 1;
    case CR_GGML_Q4_0: case CR_GGML_Q8_0: return 32;
    }
    return 0;
}

unsigned cr_ggml_block_bytes(cr_ggml_type t)
{
    switch (t) {
    case CR_GGML_F32: return 4;
    case CR_GGML_F16: case CR_GGML_BF16: return 2;
    case CR_GGML_Q4_0: return 18;
    case CR_GGML_Q8_0: return 34;
    }
    return 0;
}

/* ---- KV ------------------------------------------------------------------ */

void cr_gguf_kv_init(cr_gguf_kv *kv, const cr_allocator *alloc)
{
    memset(kv, 0, sizeof *kv);
    cr_sbuf_init(&kv->buf, alloc);
}

void cr_gguf_kv_free(cr_gguf_kv *kv)
{
    for (uint64_t i = 0; i < kv->n; i++) cr_free(kv->buf.alloc, kv->keys[i]);
    cr_free(kv->buf.alloc, kv->keys);
    cr_sbuf_free(&kv->buf);
    kv->keys = NULL;
    kv->n = 0;
}

bool cr_gguf_kv_has(const cr_gguf_kv *kv, const char *key)
{
    for (uint64_t i = 0; i < kv->n; i++)
        if (!strcmp(kv->keys[i], key)) return true;
    return false;
}

static void put_u32(cr_sbuf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    cr_sbuf_add(b, (const char *)x, 4);
}

static void put_u64(cr_sbuf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
    cr_sbuf_add(b, (const char *)x, 8);
}

static void put_str(cr_sbuf *b, const char *s)
{
    size_t n = strlen(s);
    put_u64(b, n);
    cr_sbuf_add(b, s, n);
}

/* the key and its type; false after an allocation failure */
static bool kv_begin(cr_gguf_kv *kv, const char *key, cr_gguf_vtype type)
{
    if (kv->failed) return false;
    if (kv->n == kv->cap) {
        uint32_t cap = kv->cap ? kv->cap * 2 : 32;
        char **k = cr_calloc(kv->buf.alloc, cap, sizeof *k);
        if (!k) { kv->failed = true; return false; }
        if (kv->n) memcpy(k, kv->keys, (size_t)kv->n * sizeof *k);
        cr_free(kv->buf.alloc, kv->keys);
        kv->keys = k;
        kv->cap = cap;
    }
    char *copy = cr_strdup(kv->buf.alloc, key);
    if (!copy) { kv->failed = true; return false; }
    kv->keys[kv->n++] = copy;
    put_str(&kv->buf, key);
    put_u32(&kv->buf, (uint32_t)type);
    return true;
}

void cr_gguf_kv_str(cr_gguf_kv *kv, const char *key, const char *s)
{
    if (kv_begin(kv, key, CR_GGUF_STRING)) put_str(&kv->buf, s);
}

void cr_gguf_kv_u32(cr_gguf_kv *kv, const char *key, uint32_t v)
{
    if (kv_begin(kv, key, CR_GGUF_U32)) put_u32(&kv->buf, v);
}

void cr_gguf_kv_i32(cr_gguf_kv *kv, const char *key, int32_t v)
{
    if (kv_begin(kv, key, CR_GGUF_I32)) put_u32(&kv->buf, (uint32_t)v);
}

void cr_gguf_kv_f32(cr_gguf_kv *kv, const char *key, float v)
{
    if (kv_begin(kv, key, CR_GGUF_F32)) put_u32(&kv->buf, cr_f32_bits(v));
}

void cr_gguf_kv_bool(cr_gguf_kv *kv, const char *key, bool v)
{
    if (kv_begin(kv, key, CR_GGUF_BOOL)) cr_sbuf_add(&kv->buf, v ? "\1" : "\0", 1);
}

void cr_gguf_kv_arr_str(cr_gguf_kv *kv, const char *key, const char *const *s, size_t n)
{
    if (!kv_begin(kv, key, CR_GGUF_ARRAY)) return;
    put_u32(&kv->buf, CR_GGUF_STRING);
    put_u64(&kv->buf, n);
    for (size_t i = 0; i < n; i++) put_str(&kv->buf, s[i]);
}

void cr_gguf_kv_arr_i32(cr_gguf_kv *kv, const char *key, const int32_t *v, size_t n)
{
    if (!kv_begin(kv, key, CR_GGUF_ARRAY)) return;
    put_u32(&kv->buf, CR_GGUF_I32);
    put_u64(&kv->buf, n);
    for (size_t i = 0; i < n; i++) put_u32(&kv->buf, (uint32_t)v[i]);
}

void cr_gguf_kv_arr_f32(cr_gguf_kv *kv, const char *key, const float *v, size_t n)
{
    if (!kv_begin(kv, key, CR_GGUF_ARRAY)) return;
    put_u32(&kv->buf, CR_GGUF_F32);
    put_u64(&kv->buf, n);
    for (size_t i = 0; i < n; i++) put_u32(&kv->buf, cr_f32_bits(v[i]));
}

/* ---- layout ---------------------------------------------------------------- */

static uint64_t pad_to(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

cr_status cr_gguf_layout(const cr_allocator *alloc, const cr_gguf_kv *kv, cr_gguf_tensor *t, size_t n,
                         uint8_t **header, uint64_t *header_len, uint64_t *file_size, cr_error *err)
{
    *header = NULL;
    if (kv->failed || kv->buf.failed) return cr_fail(err, CR_ERR_NOMEM, "GGUF metadata: out of memory");
    for (uint64_t i = 0; i < kv->n; i++)
        for (uint64_t j = i + 1; j < kv->n; j++)
            if (!strcmp(kv->keys[i], kv->keys[j]))
                return cr_fail(err, CR_ERR_ARG, "GGUF metadata: key '%s' is set twice", kv->keys[i]);
    uint64_t data = 0;
    for (size_t i = 0; i < n; i++) {
        cr_gguf_tensor *e = &t[i];
        size_t len = e->name ? strlen(e->name) : 0;
        if (!len || len > CR_GGUF_MAX_NAME)
            return cr_fail(err, CR_ERR_ARG, "GGUF tensor '%s': a name must have 1 to %u bytes", e->name ? e->name : "",
                           CR_GGUF_MAX_NAME);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(t[j].name, e->name)) return cr_fail(err, CR_ERR_ARG, "GGUF tensor '%s' appears twice", e->name);
        unsigned be = cr_ggml_block_elems(e->type), bb = cr_ggml_block_bytes(e->type);
        if (!be || e->n_dims < 1 || e->n_dims > 4)
            return cr_fail(err, CR_ERR_ARG, "GGUF tensor '%s': invalid type or rank", e->name);
        if (e->ne[0] % be)
            return cr_fail(err, CR_ERR_ARG, "GGUF tensor '%s': %s needs rows of a multiple of %u elements, got %llu",
                           e->name, cr_ggml_type_name(e->type), be, (unsigned long long)e->ne[0]);
        uint64_t numel = 1;
        for (uint32_t d = 0; d < e->n_dims; d++) {
            if (e->ne[d] && numel > (UINT64_MAX >> 8) / e->ne[d])
                return cr_fail(err, CR_ERR_LIMIT, "GGUF tensor '%s': shape overflows", e->name);
            numel *= e->ne[d];
        }
        e->nbytes = numel / be * bb;
        e->offset = data;          /* relative for now */
        data += pad_to(e->nbytes, CR_GGUF_ALIGN);
        if (data > (UINT64_MAX >> 2)) return cr_fail(err, CR_ERR_LIMIT, "GGUF: the tensor data overflows");
    }
    cr_sbuf b;
    cr_sbuf_init(&b, alloc);
    cr_sbuf_add(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, n);
    put_u64(&b, kv->n);
    cr_sbuf_add(&b, kv->buf.data ? kv->buf.data : "", kv->buf.len);
    for (size_t i = 0; i < n; i++) {
        put_str(&b, t[i].name);
        put_u32(&b, t[i].n_dims);
        for (uint32_t d = 0; d < t[i].n_dims; d++) put_u64(&b, t[i].ne[d]);
        put_u32(&b, (uint32_t)t[i].type);
        put_u64(&b, t[i].offset);
    }
    /* gguf-py pads the tensor table only when there are tensors (§1) */
    size_t target = n ? (size_t)pad_to(b.len, CR_GGUF_ALIGN) : b.len;
    static const char zeros[CR_GGUF_ALIGN];
    if (target > b.len) cr_sbuf_add(&b, zeros, target - b.len);
    size_t len;
    char *text = cr_sbuf_take(&b, &len);
    if (!text) return cr_fail(err, CR_ERR_NOMEM, "GGUF header: out of memory");
    for (size_t i = 0; i < n; i++) t[i].offset += len;
    *header = (uint8_t *)text;
    *header_len = len;
    *file_size = len + data;
    return CR_OK;
}

/* ---- row conversions --------------------------------------------------------- */

void cr_gguf_row_f16(const float *x, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        uint16_t h = cr_f32_to_f16(x[i]);
        out[2 * i] = (uint8_t)h;
        out[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

void cr_gguf_row_bf16(const float *x, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t u = cr_f32_bits(x[i]);
        if ((u & 0x7fffffffu) > 0x7f800000u) u = (u & 0xffff0000u) | (64u << 16);
        uint16_t h = (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
        out[2 * i] = (uint8_t)h;
        out[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

void cr_gguf_row_q8_0(const float *x, size_t n, uint8_t *out)
{
    for (size_t b = 0; b < n / 32; b++, x += 32, out += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            float a = fabsf(x[j]);
            amax = amax > a ? amax : a;     /* ggml's MAX(a, b): ((a) > (b) ? (a) : (b)) */
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = cr_f32_to_f16(d);
        out[0] = (uint8_t)h;
        out[1] = (uint8_t)(h >> 8);
        for (int j = 0; j < 32; j++) {
            float v = x[j] * id;
            out[2 + j] = (uint8_t)(int8_t)roundf(v);
        }
    }
}

void cr_gguf_row_q4_0(const float *x, size_t n, uint8_t *out)
{
    for (size_t b = 0; b < n / 32; b++, x += 32, out += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }   /* the first of the largest */
        float d = max / -8;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = cr_f32_to_f16(d);
        out[0] = (uint8_t)h;
        out[1] = (uint8_t)(h >> 8);
        for (int j = 0; j < 16; j++) {
            /* two statements: no contraction of x*id + 8.5 into an FMA (spec/gguf.md §7.2) */
            float x0 = x[j] * id, x1 = x[j + 16] * id;
            x0 += 8.5f;
            x1 += 8.5f;
            int q0 = (int8_t)x0, q1 = (int8_t)x1;
            out[2 + j] = (uint8_t)((q0 < 15 ? q0 : 15) | (q1 < 15 ? q1 : 15) << 4);
        }
    }
}

void cr_gguf_row_convert(cr_ggml_type type, const float *x, size_t n, uint8_t *out)
{
    switch (type) {
    case CR_GGML_F32:
        for (size_t i = 0; i < n; i++) {
            uint32_t u = cr_f32_bits(x[i]);
            for (int k = 0; k < 4; k++) out[4 * i + k] = (uint8_t)(u >> (8 * k));
        }
        break;
    case CR_GGML_F16: cr_gguf_row_f16(x, n, out); break;
    case CR_GGML_BF16: cr_gguf_row_bf16(x, n, out); break;
    case CR_GGML_Q8_0: cr_gguf_row_q8_0(x, n, out); break;
    case CR_GGML_Q4_0: cr_gguf_row_q4_0(x, n, out); break;
    }
}

bool cr_gguf_dequant(uint32_t type, const uint8_t *src, size_t n, float *out)
{
    switch (type) {
    case CR_GGML_F32:
        for (size_t i = 0; i < n; i++)
            out[i] = cr_bits_f32((uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 | (uint32_t)src[4 * i + 2] << 16 |
                                 (uint32_t)src[4 * i + 3] << 24);
        return true;
    case CR_GGML_F16:
        for (size_t i = 0; i < n; i++) out[i] = cr_f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
        return true;
    case CR_GGML_BF16:
        for (size_t i = 0; i < n; i++) out[i] = cr_bf16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
        return true;
    case CR_GGML_Q8_0:
        for (size_t b = 0; b < n / 32; b++, src += 34) {
            float d = cr_f16_to_f32((uint16_t)(src[0] | src[1] << 8));
            for (int j = 0; j < 32; j++) out[32 * b + j] = (float)(int8_t)src[2 + j] * d;
        }
        return true;
    case CR_GGML_Q4_0:
        for (size_t b = 0; b < n / 32; b++, src += 18) {
            float d = cr_f16_to_f32((uint16_t)(src[0] | src[1] << 8));
            for (int j = 0; j < 16; j++) {
                out[32 * b + j] = (float)((src[2 + j] & 15) - 8) * d;
                out[32 * b + j + 16] = (float)((src[2 + j] >> 4) - 8) * d;
            }
        }
        return true;
    }
    return false;
}
