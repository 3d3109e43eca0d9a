/* safetensors.c — opening safetensors files: the header is checked against
 * every rule of the format (formats-and-moe.md §5.1, mirroring the Rust
 * reader plus duplicate-name and metadata checks, and the JSON text as
 * strictly as serde_json reads it: infile.h) before any tensor is
 * handed out, so later code may trust shapes and offsets. The writer side
 * is in safetensors_write.c.
 *
 * Everything the open file owns (names, tables, metadata) lives in one
 * arena; the data is a read-only mmap of the whole file.
 */
#include "safetensors.h"
#include "utf8.h"
#include "limits.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "infile.h"
#include "jsonw.h"

/* JSON numbers are doubles in cJSON; integers above 2^53 would be rounded,
 * so they are refused (no real file comes near). */
#define ST_MAX_JSON_INT 9007199254740992.0

typedef struct st_private {
    cr_arena arena;
    size_t map_len;
} st_private;

static void st_free_private(cr_st_file *f)
{
    st_private *p = f->owned;
    if (f->map) munmap((void *)f->map, p ? p->map_len : 0);
    if (p) {
        cr_arena_free(&p->arena);
        cr_free(f->alloc, p);
    }
    cr_free(f->alloc, f->path);
    memset(f, 0, sizeof *f);
}

void cr_st_close(cr_st_file *f)
{
    if (f && f->alloc) st_free_private(f);
}

static bool json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0) || d > ST_MAX_JSON_INT || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

/* "[2,2]" for messages */
static void shape_text(char *buf, size_t cap, const uint64_t *shape, uint32_t ndim)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (uint32_t i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%llu", i ? "," : "", (unsigned long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* One header entry -> t, checking rules 6, 8, 9, 10 of §5.1. */
static cr_status parse_entry(const char *path, const cJSON *e, cr_st_tensor *t, cr_error *err)
{
    const char *name = t->name;
    if (!cJSON_IsObject(e))
        return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': header entry is not a JSON object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    if (!cr_dtype_parse(dt->valuestring, &t->dtype))
        return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name, dt->valuestring);
    if (!cJSON_IsArray(sh))
        return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': missing or non-array \"shape\"", path, name);
    int rank = cJSON_GetArraySize(sh);
    if (rank > CR_MAX_DIMS)
        return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': rank %d exceeds the limit of %d dimensions",
                       path, name, rank, CR_MAX_DIMS);
    t->ndim = (uint32_t)rank;
    t->numel = 1;
    bool overflow = false;
    int i = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        if (!json_uint(d, &t->shape[i]))
            return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': shape entry %d is not a non-negative integer",
                           path, name, i);
        if (t->shape[i] && t->numel > UINT64_MAX / t->shape[i]) overflow = true;
        t->numel *= t->shape[i];
    }
    char stext[200];
    shape_text(stext, sizeof stext, t->shape, t->ndim);
    unsigned size = cr_dtype_size(t->dtype);
    if (overflow || t->numel > UINT64_MAX / size)
        return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': shape %s overflows a 64-bit byte count", path, name, stext);
    uint64_t nbytes = t->numel * size;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        !json_uint(off->child, &t->begin) || !json_uint(off->child->next, &t->end))
        return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" must be two non-negative integers",
                       path, name);
    if (t->end < t->begin)
        return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu] end before they begin",
                       path, name, (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end - t->begin != nbytes)
        return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu] but shape %s %s needs %llu bytes",
                       path, name, (unsigned long long)t->begin, (unsigned long long)t->end, stext,
                       cr_dtype_name(t->dtype), (unsigned long long)nbytes);
    return CR_OK;
}

static int cmp_by_name(const void *a, const void *b, void *ud)
{
    const cr_st_tensor *t = ud;
    return strcmp(t[*(const uint32_t *)a].name, t[*(const uint32_t *)b].name);
}

static int cmp_by_offset(const void *a, const void *b, void *ud)
{
    const cr_st_tensor *t = ud;
    const cr_st_tensor *x = &t[*(const uint32_t *)a], *y = &t[*(const uint32_t *)b];
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Parse and check the header bytes; fills f's tables from the arena. */
static cr_status parse_header(cr_st_file *f, const char *hdr, uint64_t n, unsigned flags, cr_error *err)
{
    st_private *p = f->owned;
    const char *path = f->path;
    if (!cr_utf8_check(hdr, (size_t)n, NULL))
        return cr_fail(err, CR_ERR_FORMAT, "%s: header is not valid UTF-8", path);
    /* what cJSON lets through and serde_json refuses (a raw NUL would cut
     * a tensor name short) */
    cr_status cst = cr_json_check_text(path, "header byte", hdr, (size_t)n, err);
    if (cst) return cst;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)n, &end, false);
    if (!root) {
        size_t at = end && end >= hdr ? (size_t)(end - hdr) : 0;
        return cr_fail(err, CR_ERR_FORMAT, "%s: header is not valid JSON (near byte %zu of %llu)",
                       path, at, (unsigned long long)n);
    }
    cr_status st = CR_OK;
    for (const char *q = end; q < hdr + n; q++) {
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            st = cr_fail(err, CR_ERR_FORMAT, "%s: header has data after its JSON object (byte %zu)",
                         path, (size_t)(q - hdr));
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        st = cr_fail(err, CR_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto done;
    }
    uint32_t n_entries = 0, n_meta_objs = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (c->string && !strcmp(c->string, "__metadata__")) n_meta_objs++;
        else n_entries++;
    }
    if (n_entries > CR_LIMIT_ST_TENSORS) {
        st = cr_fail(err, CR_ERR_LIMIT, "%s: header lists %u tensors (limit %u)", path, n_entries, CR_LIMIT_ST_TENSORS);
        goto done;
    }
    if (n_meta_objs > 1) {
        st = cr_fail(err, CR_ERR_FORMAT, "%s: duplicate \"__metadata__\" entry in the header", path);
        goto done;
    }
    f->tensors = cr_arena_alloc(&p->arena, sizeof *f->tensors * (n_entries ? n_entries : 1));
    f->by_name = cr_arena_alloc(&p->arena, sizeof *f->by_name * (n_entries ? n_entries : 1));
    uint32_t *by_off = cr_arena_alloc(&p->arena, sizeof *by_off * (n_entries ? n_entries : 1));
    if (!f->tensors || !f->by_name || !by_off) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory reading header", path); goto done; }

    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__")) continue;
        if (!cJSON_IsObject(c)) {
            st = cr_fail(err, CR_ERR_FORMAT, "%s: \"__metadata__\" is not an object of strings", path);
            goto done;
        }
        uint32_t k = (uint32_t)cJSON_GetArraySize(c);
        f->meta_keys = cr_arena_alloc(&p->arena, sizeof(char *) * (k ? k : 1));
        f->meta_values = cr_arena_alloc(&p->arena, sizeof(char *) * (k ? k : 1));
        if (!f->meta_keys || !f->meta_values) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", path); goto done; }
        for (const cJSON *m = c->child; m; m = m->next) {
            if (!cJSON_IsString(m)) {
                st = cr_fail(err, CR_ERR_FORMAT, "%s: \"__metadata__\" value of '%s' is not a string", path, m->string);
                goto done;
            }
            for (uint32_t j = 0; j < f->n_meta; j++) {
                if (!strcmp(f->meta_keys[j], m->string)) {
                    st = cr_fail(err, CR_ERR_FORMAT, "%s: duplicate \"__metadata__\" key '%s'", path, m->string);
                    goto done;
                }
            }
            f->meta_keys[f->n_meta] = cr_arena_strdup(&p->arena, m->string);
            f->meta_values[f->n_meta] = cr_arena_strdup(&p->arena, m->valuestring);
            if (!f->meta_keys[f->n_meta] || !f->meta_values[f->n_meta]) {
                st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", path);
                goto done;
            }
            f->n_meta++;
        }
    }

    for (const cJSON *c = root->child; c; c = c->next) {
        if (!strcmp(c->string, "__metadata__")) continue;
        cr_st_tensor *t = &f->tensors[f->n_tensors];
        if (strlen(c->string) > CR_LIMIT_NAME) {
            st = cr_fail(err, CR_ERR_LIMIT, "%s: a tensor name is %zu bytes long (limit %u)", path,
                         strlen(c->string), CR_LIMIT_NAME);
            goto done;
        }
        t->name = cr_arena_strdup(&p->arena, c->string);
        if (!t->name) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", path); goto done; }
        if ((st = parse_entry(path, c, t, err)) != CR_OK) goto done;
        f->by_name[f->n_tensors] = f->n_tensors;
        by_off[f->n_tensors] = f->n_tensors;
        f->n_tensors++;
    }

    qsort_r(f->by_name, f->n_tensors, sizeof *f->by_name, cmp_by_name, f->tensors);
    for (uint32_t i = 1; i < f->n_tensors; i++) {
        const char *a = f->tensors[f->by_name[i - 1]].name, *b = f->tensors[f->by_name[i]].name;
        if (!strcmp(a, b)) {
            st = cr_fail(err, CR_ERR_FORMAT, "%s: duplicate tensor name '%s' in the header", path, a);
            goto done;
        }
    }

    /* rule 7: sorted by offsets, the tensors tile [0, last end) exactly */
    qsort_r(by_off, f->n_tensors, sizeof *by_off, cmp_by_offset, f->tensors);
    uint64_t pos = 0;
    const char *prev = NULL;
    for (uint32_t i = 0; i < f->n_tensors; i++) {
        const cr_st_tensor *t = &f->tensors[by_off[i]];
        if (t->begin > pos) {
            if (prev)
                st = cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': gap of %llu bytes after tensor '%s' (which ends at %llu, this begins at %llu)",
                             path, t->name, (unsigned long long)(t->begin - pos), prev,
                             (unsigned long long)pos, (unsigned long long)t->begin);
            else
                st = cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': data begins at %llu, but the first tensor must begin at 0",
                             path, t->name, (unsigned long long)t->begin);
            goto done;
        }
        if (t->begin < pos) {
            st = cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu] overlap tensor '%s' (which ends at %llu)",
                         path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end, prev,
                         (unsigned long long)pos);
            goto done;
        }
        pos = t->end;
        prev = t->name;
    }

    /* rule 11: the data ends exactly at the end of the file */
    uint64_t data_end = f->data_start + pos;
    if (data_end < f->file_size) {
        st = cr_fail(err, CR_ERR_FORMAT, "%s: %llu trailing bytes after the tensor data (data ends at byte %llu, file has %llu)",
                     path, (unsigned long long)(f->file_size - data_end), (unsigned long long)data_end,
                     (unsigned long long)f->file_size);
        goto done;
    }
    if (data_end > f->file_size && !(flags & CR_ST_HEADER_ONLY)) {
        st = cr_fail(err, CR_ERR_FORMAT, "%s: file is truncated: tensor data ends at byte %llu but the file has %llu bytes",
                     path, (unsigned long long)data_end, (unsigned long long)f->file_size);
        goto done;
    }
done:
    cJSON_Delete(root);
    return st;
}

static cr_status pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    unsigned char *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return CR_ERR_IO;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return CR_OK;
}

cr_status cr_st_open_foreign(const cr_allocator *alloc, const char *path, cr_st_file *out, cr_arena **arena,
                             cr_error *err)
{
    memset(out, 0, sizeof *out);
    out->alloc = alloc;
    out->path = cr_strdup(alloc, path);
    st_private *p = cr_calloc(alloc, 1, sizeof *p);
    if (!out->path || !p) {
        cr_free(alloc, p);
        cr_st_close(out);
        return cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", path);
    }
    cr_arena_init(&p->arena, alloc);
    out->owned = p;
    *arena = &p->arena;
    return CR_OK;
}

cr_status cr_st_open(const cr_allocator *alloc, const char *path, unsigned flags,
                     cr_st_file *out, cr_error *err)
{
    cr_arena *arena;
    cr_status st = cr_st_open_foreign(alloc, path, out, &arena, err);
    if (st) return st;
    st_private *p = out->owned;
    char *hdr_copy = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = cr_fail_errno(err, errno, "%s: cannot open", path);
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) { st = cr_fail_errno(err, errno, "%s: cannot stat", path); goto fail; }
    if (!S_ISREG(sb.st_mode)) { st = cr_fail(err, CR_ERR_FORMAT, "%s: not a regular file", path); goto fail; }
    out->file_size = (uint64_t)sb.st_size;
    if (out->file_size < 8) {
        st = cr_fail(err, CR_ERR_FORMAT, "%s: file is %llu bytes, too small for a safetensors header (at least 8)",
                     path, (unsigned long long)out->file_size);
        goto fail;
    }
    unsigned char lenbuf[8];
    if (pread_all(fd, lenbuf, 8, 0) != CR_OK) { st = cr_fail_errno(err, errno ? errno : EIO, "%s: cannot read", path); goto fail; }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | lenbuf[i];
    if (n > CR_ST_MAX_HEADER) {
        st = cr_fail(err, CR_ERR_FORMAT, "%s: header length %llu exceeds the limit of %llu bytes",
                     path, (unsigned long long)n, (unsigned long long)CR_ST_MAX_HEADER);
        goto fail;
    }
    if (n > out->file_size - 8) {
        st = cr_fail(err, CR_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%llu bytes)",
                     path, (unsigned long long)n, (unsigned long long)out->file_size);
        goto fail;
    }
    out->data_start = 8 + n;
    const char *hdr;
    if (flags & CR_ST_HEADER_ONLY) {
        hdr_copy = cr_malloc(alloc, n ? (size_t)n : 1);
        if (!hdr_copy) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory for the header", path); goto fail; }
        if (n && pread_all(fd, hdr_copy, (size_t)n, 8) != CR_OK) {
            st = cr_fail_errno(err, errno ? errno : EIO, "%s: cannot read the header", path);
            goto fail;
        }
        hdr = hdr_copy;
    } else {
        void *m = mmap(NULL, (size_t)out->file_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) { st = cr_fail_errno(err, errno, "%s: cannot map", path); goto fail; }
        out->map = m;
        p->map_len = (size_t)out->file_size;
        hdr = (const char *)out->map + 8;
    }
    st = parse_header(out, hdr, n, flags, err);
    if (st != CR_OK) goto fail;
    cr_free(alloc, hdr_copy);
    close(fd);
    return CR_OK;
fail:
    cr_free(alloc, hdr_copy);
    if (fd >= 0) close(fd);
    cr_st_close(out);
    return st;
}


void cr_st_adopt_map(cr_st_file *f, const uint8_t *map, size_t len)
{
    st_private *p = f->owned;
    f->map = map;
    p->map_len = len;
}

cr_status cr_st_index_names(cr_st_file *f, cr_error *err)
{
    st_private *p = f->owned;
    f->by_name = cr_arena_alloc(&p->arena, (f->n_tensors ? f->n_tensors : 1) * sizeof *f->by_name);
    if (!f->by_name) return cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", f->path);
    for (uint32_t i = 0; i < f->n_tensors; i++) f->by_name[i] = i;
    qsort_r(f->by_name, f->n_tensors, sizeof *f->by_name, cmp_by_name, f->tensors);
    for (uint32_t i = 1; i < f->n_tensors; i++) {
        const char *a = f->tensors[f->by_name[i - 1]].name, *b = f->tensors[f->by_name[i]].name;
        if (!strcmp(a, b)) return cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s' appears twice", f->path, a);
    }
    return CR_OK;
}

const cr_st_tensor *cr_st_find(const cr_st_file *f, const char *name)
{
    uint32_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const cr_st_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

const void *cr_st_data(const cr_st_file *f, const cr_st_tensor *t)
{
    if (!f->map) return NULL;
    return f->map + f->data_start + t->begin;
}

void cr_st_release(const cr_st_file *f, const cr_st_tensor *t)
{
    cr_st_release_bytes(f, t, 0, t->end - t->begin);
}

void cr_st_release_bytes(const cr_st_file *f, const cr_st_tensor *t, uint64_t off, uint64_t len)
{
    uint64_t size = t->end - t->begin;
    if (!f->map || off >= size) return;
    if (len > size - off) len = size - off;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)(f->map + f->data_start + t->begin + off);
    uintptr_t hi = lo + (uintptr_t)len;
    lo = (lo + page - 1) & ~(page - 1);      /* only whole pages of this tensor */
    hi &= ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

uint64_t cr_st_expected_size(const cr_st_file *f)
{
    if (f->container_size) return f->container_size;
    uint64_t end = 0;
    for (uint32_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].end > end) end = f->tensors[i].end;
    return f->data_start + end;
}
