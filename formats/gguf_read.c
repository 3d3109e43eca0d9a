/* gguf_read.c — opening a GGUF file with every rule of ggml's
 * gguf_init_from_file_impl checked before anything is handed out
 * (spec/gguf.md §1.1), plus crucible's own: version 3 only, no nested
 * arrays, zero padding. The file is mapped read-only; strings are copied
 * out, so the caller never reads past a bound. Errors name the file, the
 * byte offset and the key or tensor.
 */
#include "gguf_read.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_STRING (1ull << 30)     /* GGUF_MAX_STRING_LENGTH */
#define MAX_ARRAY (1ull << 30)

/* every ggml type with its block (gguf-py GGML_QUANT_SIZES, the pinned copy) */
static const struct { uint32_t id; const char *name; uint32_t block, bytes; } types[] = {
    {0, "F32", 1, 4},        {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},      {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},     {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},   {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},  {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},  {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82},  {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},       {27, "I64", 1, 8},        {28, "F64", 1, 8},        {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},      {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
    {40, "NVFP4", 64, 36},   {41, "Q1_0", 128, 18},    {42, "Q2_0", 64, 18},
};

const char *cr_gguf_type_info(uint32_t id, uint32_t *block, uint32_t *bytes)
{
    for (size_t i = 0; i < CR_ARRAY_LEN(types); i++)
        if (types[i].id == id) {
            if (block) *block = types[i].block;
            if (bytes) *bytes = types[i].bytes;
            return types[i].name;
        }
    return NULL;
}

/* scalar value sizes by GGUF value type; 0 for STRING / ARRAY */
static unsigned vsize(uint32_t t)
{
    static const unsigned s[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < 13 ? s[t] : 0;
}

typedef struct cur {
    const uint8_t *p;
    uint64_t off, size;
    const char *path;
    cr_error *err;
} cur;

static cr_status need(cur *c, uint64_t n, const char *what)
{
    if (n > c->size - c->off)
        return cr_fail(c->err, CR_ERR_FORMAT, "%s: truncated at byte %llu reading %s", c->path,
                       (unsigned long long)c->off, what);
    return CR_OK;
}

static uint64_t rd(cur *c, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v |= (uint64_t)c->p[c->off + i] << (8 * i);
    c->off += n;
    return v;
}

static cr_status rd_u32(cur *c, uint32_t *v, const char *what)
{
    cr_status st = need(c, 4, what);
    if (!st) *v = (uint32_t)rd(c, 4);
    return st;
}

static cr_status rd_u64(cur *c, uint64_t *v, const char *what)
{
    cr_status st = need(c, 8, what);
    if (!st) *v = rd(c, 8);
    return st;
}

/* a string: its bytes stay in the map; *s / *n point at them */
static cr_status rd_str(cur *c, const char **s, uint64_t *n, const char *what)
{
    cr_status st = rd_u64(c, n, what);
    if (st) return st;
    if (*n > MAX_STRING) return cr_fail(c->err, CR_ERR_FORMAT, "%s: %s at byte %llu is %llu bytes long (limit 1 GiB)",
                                        c->path, what, (unsigned long long)(c->off - 8), (unsigned long long)*n);
    if ((st = need(c, *n, what))) return st;
    *s = (const char *)c->p + c->off;
    c->off += *n;
    return CR_OK;
}

static char *copy_str(const cr_allocator *a, const char *s, uint64_t n)
{
    char *o = cr_malloc(a, (size_t)n + 1);
    if (o) { memcpy(o, s, (size_t)n); o[n] = 0; }
    return o;
}

void cr_gguf_close(cr_gguf_file *f)
{
    if (!f || !f->alloc) return;
    for (uint64_t i = 0; i < f->n_kv; i++) cr_free(f->alloc, f->kv[i].key);
    for (uint64_t i = 0; i < f->n_tensors; i++) cr_free(f->alloc, f->tensors[i].name);
    cr_free(f->alloc, f->kv);
    cr_free(f->alloc, f->tensors);
    if (f->map && f->size) munmap((void *)f->map, (size_t)f->size);
    cr_free(f->alloc, f->path);
    memset(f, 0, sizeof *f);
}

static cr_status parse(cr_gguf_file *f, cr_error *err)
{
    cur c = {.p = f->map, .off = 0, .size = f->size, .path = f->path, .err = err};
    cr_status st = need(&c, 24, "the header");
    if (st) return st;
    if (memcmp(f->map, "GGUF", 4)) return cr_fail(err, CR_ERR_FORMAT, "%s: not a GGUF file (bad magic)", f->path);
    c.off = 4;
    f->version = (uint32_t)rd(&c, 4);
    if (f->version != 3)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: GGUF version %u (%s); crucible reads version 3", f->path, f->version,
                       f->version == 0x03000000u ? "a big-endian file" : f->version < 3 ? "obsolete" : "newer");
    uint64_t nt = rd(&c, 8), nkv = rd(&c, 8);
    /* each KV takes at least 13 bytes and each tensor info at least 33 */
    if (nkv > f->size / 13 || nt > f->size / 33)
        return cr_fail(err, CR_ERR_FORMAT, "%s: %llu keys and %llu tensors cannot fit in %llu bytes", f->path,
                       (unsigned long long)nkv, (unsigned long long)nt, (unsigned long long)f->size);
    f->kv = cr_calloc(f->alloc, nkv ? (size_t)nkv : 1, sizeof *f->kv);
    f->tensors = cr_calloc(f->alloc, nt ? (size_t)nt : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors) return cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", f->path);
    f->alignment = 32;
    for (uint64_t i = 0; i < nkv; i++) {
        const char *k;
        uint64_t kn;
        if ((st = rd_str(&c, &k, &kn, "a key"))) return st;
        if (!kn) return cr_fail(err, CR_ERR_FORMAT, "%s: key %llu is empty", f->path, (unsigned long long)i);
        cr_gguf_kv_info *kv = &f->kv[i];
        if (!(kv->key = copy_str(f->alloc, k, kn))) return cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", f->path);
        f->n_kv = i + 1;
        if (strlen(kv->key) != kn) return cr_fail(err, CR_ERR_FORMAT, "%s: key %llu holds a NUL byte", f->path, (unsigned long long)i);
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(f->kv[j].key, kv->key)) return cr_fail(err, CR_ERR_FORMAT, "%s: key '%s' appears twice", f->path, kv->key);
        if ((st = rd_u32(&c, &kv->type, kv->key))) return st;
        if (kv->type > 12) return cr_fail(err, CR_ERR_FORMAT, "%s: key '%s': value type %u is not a GGUF type", f->path, kv->key, kv->type);
        uint32_t et = kv->type;
        uint64_t count = 1;
        if (kv->type == 9) {
            if ((st = rd_u32(&c, &et, kv->key)) || (st = rd_u64(&c, &count, kv->key))) return st;
            if (et > 12 || et == 9)
                return cr_fail(err, CR_ERR_FORMAT, "%s: key '%s': array element type %u is not allowed", f->path, kv->key, et);
            if (count > MAX_ARRAY)
                return cr_fail(err, CR_ERR_FORMAT, "%s: key '%s': %llu elements (limit 2^30)", f->path, kv->key, (unsigned long long)count);
            kv->arr_type = et;
            kv->arr_n = count;
        }
        kv->value_off = c.off;
        if (et == 8) {
            for (uint64_t e = 0; e < count; e++) {
                const char *s;
                uint64_t sn;
                if ((st = rd_str(&c, &s, &sn, kv->key))) return st;
            }
        } else {
            uint64_t bytes = count * vsize(et);
            if ((st = need(&c, bytes, kv->key))) return st;
            c.off += bytes;
        }
        kv->value_len = c.off - kv->value_off;
        if (!strcmp(kv->key, "general.alignment")) {
            if (kv->type != 4) return cr_fail(err, CR_ERR_FORMAT, "%s: general.alignment is not a UINT32", f->path);
            uint32_t al = (uint32_t)(f->map[kv->value_off] | f->map[kv->value_off + 1] << 8 |
                                     f->map[kv->value_off + 2] << 16 | (uint32_t)f->map[kv->value_off + 3] << 24);
            if (!al || (al & (al - 1))) return cr_fail(err, CR_ERR_FORMAT, "%s: general.alignment %u is not a power of two", f->path, al);
            f->alignment = al;
        }
    }
    uint64_t expect = 0;
    for (uint64_t i = 0; i < nt; i++) {
        const char *s;
        uint64_t sn;
        if ((st = rd_str(&c, &s, &sn, "a tensor name"))) return st;
        cr_gguf_tensor_info *t = &f->tensors[i];
        if (!sn || sn > 63)
            return cr_fail(err, CR_ERR_FORMAT, "%s: tensor %llu: a name must have 1 to 63 bytes, got %llu", f->path,
                           (unsigned long long)i, (unsigned long long)sn);
        if (!(t->name = copy_str(f->alloc, s, sn))) return cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", f->path);
        f->n_tensors = i + 1;
        if (strlen(t->name) != sn) return cr_fail(err, CR_ERR_FORMAT, "%s: tensor %llu: the name holds a NUL byte", f->path, (unsigned long long)i);
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(f->tensors[j].name, t->name)) return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s' appears twice", f->path, t->name);
        if ((st = rd_u32(&c, &t->n_dims, t->name))) return st;
        if (t->n_dims < 1 || t->n_dims > 4)
            return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': %u dimensions (1 to 4)", f->path, t->name, t->n_dims);
        uint64_t numel = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if ((st = rd_u64(&c, &t->ne[d], t->name))) return st;
            if (t->ne[d] >> 63) return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': negative dimension", f->path, t->name);
            if (t->ne[d] && numel > (uint64_t)INT64_MAX / t->ne[d])
                return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': the element count overflows", f->path, t->name);
            numel *= t->ne[d];
        }
        uint32_t block, bytes;
        if ((st = rd_u32(&c, &t->type, t->name))) return st;
        if (!cr_gguf_type_info(t->type, &block, &bytes))
            return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': ggml type %u is unknown", f->path, t->name, t->type);
        if (t->ne[0] % block)
            return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': %llu columns are not a multiple of the %s block (%u)",
                           f->path, t->name, (unsigned long long)t->ne[0], cr_gguf_type_info(t->type, NULL, NULL), block);
        t->nbytes = numel / block * bytes;
        if ((st = rd_u64(&c, &t->offset, t->name))) return st;
        if (t->offset != expect)
            return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': data offset %llu, expected %llu (tensors are packed in order)",
                           f->path, t->name, (unsigned long long)t->offset, (unsigned long long)expect);
        uint64_t padded = (t->nbytes + f->alignment - 1) / f->alignment * f->alignment;
        if (padded < t->nbytes || expect + padded < expect)
            return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': the data size overflows", f->path, t->name);
        expect += padded;
    }
    uint64_t data = nt ? (c.off + f->alignment - 1) / f->alignment * f->alignment : c.off;
    if (data < c.off || data > f->size || expect > f->size - data)
        return cr_fail(err, CR_ERR_FORMAT, "%s: the tensor data needs %llu bytes from byte %llu; the file has %llu",
                       f->path, (unsigned long long)expect, (unsigned long long)data, (unsigned long long)f->size);
    for (uint64_t o = c.off; o < data; o++)
        if (f->map[o]) return cr_fail(err, CR_ERR_FORMAT, "%s: padding byte %llu before the data is not zero", f->path, (unsigned long long)o);
    for (uint64_t i = 0; i < nt; i++) {
        cr_gguf_tensor_info *t = &f->tensors[i];
        uint64_t end = data + t->offset + t->nbytes, pend = data + (i + 1 < nt ? f->tensors[i + 1].offset : expect);
        for (uint64_t o = end; o < pend; o++)
            if (f->map[o]) return cr_fail(err, CR_ERR_FORMAT, "%s: padding after tensor '%s' is not zero", f->path, t->name);
        t->offset += data;
    }
    f->data_start = data;
    f->data_bytes = expect;
    return CR_OK;
}

cr_status cr_gguf_open(const cr_allocator *alloc, const char *path, cr_gguf_file *f, cr_error *err)
{
    memset(f, 0, sizeof *f);
    f->alloc = alloc;
    if (!(f->path = cr_strdup(alloc, path))) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cr_status st = cr_fail_errno(err, errno, "cannot open %s", path);
        cr_gguf_close(f);
        return st;
    }
    struct stat sb;
    cr_status st = CR_OK;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) st = cr_fail(err, CR_ERR_IO, "%s: not a regular file", path);
    if (st == CR_OK && sb.st_size > 0) {
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) st = cr_fail_errno(err, errno, "cannot map %s", path);
        else { f->map = m; f->size = (uint64_t)sb.st_size; }
    }
    close(fd);
    if (st == CR_OK) st = parse(f, err);
    if (st) cr_gguf_close(f);
    return st;
}

bool cr_gguf_is_gguf(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char m[4];
    struct stat sb;
    bool r = !fstat(fd, &sb) && S_ISREG(sb.st_mode) && read(fd, m, 4) == 4 && !memcmp(m, "GGUF", 4);
    close(fd);
    return r;
}
