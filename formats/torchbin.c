/* torchbin.c — PyTorch zip checkpoints as cr_st_files (torchbin.h).
 *
 * Only the central directory is trusted for names, and each entry's local
 * header for where its bytes start (torch pads the local header's extra
 * field to align data to 64 bytes, so the two extra lengths differ). Every
 * offset and size is checked against the file before use; the pickle's
 * storages are checked against their entries' sizes.
 */
#include "torchbin.h"
#include "pickle.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct zentry {
    const char *name;           /* arena copy */
    uint64_t data, size;        /* file offset and length of the stored bytes */
} zentry;

typedef struct zr {
    const uint8_t *p;
    uint64_t size;
    const char *path;
    cr_arena *ar;
    cr_error *err;
    zentry *e;
    uint32_t n;
} zr;

static uint64_t rd(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static bool in_file(const zr *z, uint64_t off, uint64_t len)
{
    return off <= z->size && len <= z->size - off;
}

#define ZBAD(z, ...) cr_fail((z)->err, CR_ERR_FORMAT, __VA_ARGS__)

/* the central directory's place and entry count, from the end record (and
 * the zip64 one when a field is saturated) */
static cr_status find_cd(zr *z, uint64_t *cd_off, uint64_t *cd_size, uint64_t *count)
{
    if (z->size < 22) return ZBAD(z, "%s: not a zip file (%llu bytes)", z->path, (unsigned long long)z->size);
    uint64_t lo = z->size > 22 + 65535 ? z->size - 22 - 65535 : 0;
    uint64_t eocd = UINT64_MAX;
    for (uint64_t o = z->size - 22 + 1; o-- > lo;)
        if (rd(z->p + o, 4) == 0x06054b50 && o + 22 + rd(z->p + o + 20, 2) == z->size) { eocd = o; break; }
    if (eocd == UINT64_MAX) return ZBAD(z, "%s: no zip end-of-central-directory record (a truncated file?)", z->path);
    const uint8_t *e = z->p + eocd;
    *count = rd(e + 10, 2);
    *cd_size = rd(e + 12, 4);
    *cd_off = rd(e + 16, 4);
    if (*count == 0xFFFF || *cd_size == 0xFFFFFFFF || *cd_off == 0xFFFFFFFF) {
        if (eocd < 20 || rd(z->p + eocd - 20, 4) != 0x07064b50)
            return ZBAD(z, "%s: zip64 end record locator missing", z->path);
        uint64_t z64 = rd(z->p + eocd - 20 + 8, 8);
        if (!in_file(z, z64, 56) || rd(z->p + z64, 4) != 0x06064b50)
            return ZBAD(z, "%s: zip64 end record is not where its locator says", z->path);
        *count = rd(z->p + z64 + 32, 8);
        *cd_size = rd(z->p + z64 + 40, 8);
        *cd_off = rd(z->p + z64 + 48, 8);
    }
    if (!in_file(z, *cd_off, *cd_size)) return ZBAD(z, "%s: zip central directory lies outside the file", z->path);
    if (*count > CR_LIMIT_MODEL_TENSORS * 2ull)
        return cr_fail(z->err, CR_ERR_LIMIT, "%s: %llu zip entries (limit %llu)", z->path, (unsigned long long)*count,
                       CR_LIMIT_MODEL_TENSORS * 2ull);
    return CR_OK;
}

static cr_status read_cd(zr *z)
{
    uint64_t off, size, count;
    cr_status st = find_cd(z, &off, &size, &count);
    if (st) return st;
    z->e = cr_arena_alloc(z->ar, (count ? count : 1) * sizeof *z->e);
    if (!z->e) return cr_fail(z->err, CR_ERR_NOMEM, "%s: out of memory", z->path);
    uint64_t pos = off, end = off + size;
    for (uint64_t i = 0; i < count; i++) {
        if (pos > end || end - pos < 46 || rd(z->p + pos, 4) != 0x02014b50)
            return ZBAD(z, "%s: zip central directory entry %llu is malformed", z->path, (unsigned long long)i);
        const uint8_t *c = z->p + pos;
        unsigned flags = (unsigned)rd(c + 8, 2), method = (unsigned)rd(c + 10, 2);
        uint64_t csize = rd(c + 20, 4), usize = rd(c + 24, 4);
        unsigned nlen = (unsigned)rd(c + 28, 2), xlen = (unsigned)rd(c + 30, 2), klen = (unsigned)rd(c + 32, 2);
        uint64_t lho = rd(c + 42, 4);
        if (end - pos - 46 < (uint64_t)nlen + xlen + klen)
            return ZBAD(z, "%s: zip central directory entry %llu runs past the directory", z->path, (unsigned long long)i);
        const char *name = (const char *)c + 46;
        /* zip64 extra: the saturated fields, in order usize, csize, offset */
        for (const uint8_t *x = c + 46 + nlen, *xe = x + xlen; xe - x >= 4;) {
            unsigned id = (unsigned)rd(x, 2), len = (unsigned)rd(x + 2, 2);
            if ((size_t)(xe - x - 4) < len) break;
            if (id == 1) {
                const uint8_t *q = x + 4, *qe = q + len;
                if (usize == 0xFFFFFFFF && qe - q >= 8) { usize = rd(q, 8); q += 8; }
                if (csize == 0xFFFFFFFF && qe - q >= 8) { csize = rd(q, 8); q += 8; }
                if (lho == 0xFFFFFFFF && qe - q >= 8) { lho = rd(q, 8); q += 8; }
            }
            x += 4 + len;
        }
        zentry *ze = &z->e[z->n];
        if (!(ze->name = cr_arena_strndup(z->ar, name, nlen))) return cr_fail(z->err, CR_ERR_NOMEM, "%s: out of memory", z->path);
        if (memchr(name, 0, nlen)) return ZBAD(z, "%s: a zip entry name holds a NUL byte", z->path);
        pos += 46 + (uint64_t)nlen + xlen + klen;
        if (flags & 1) return cr_fail(z->err, CR_ERR_UNSUPPORTED, "%s: zip entry '%s' is encrypted", z->path, ze->name);
        if (method != 0) {
            ze->data = UINT64_MAX;   /* compressed: refused when used */
            ze->size = method;
            z->n++;
            continue;
        }
        if (csize != usize) return ZBAD(z, "%s: stored zip entry '%s' has two different sizes", z->path, ze->name);
        if (!in_file(z, lho, 30) || rd(z->p + lho, 4) != 0x04034b50)
            return ZBAD(z, "%s: zip entry '%s': no local header at byte %llu", z->path, ze->name, (unsigned long long)lho);
        uint64_t data = lho + 30 + rd(z->p + lho + 26, 2) + rd(z->p + lho + 28, 2);
        if (!in_file(z, data, usize))
            return ZBAD(z, "%s: zip entry '%s' (%llu bytes at %llu) runs past the end of the file", z->path, ze->name,
                        (unsigned long long)usize, (unsigned long long)data);
        ze->data = data;
        ze->size = usize;
        z->n++;
    }
    return CR_OK;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const zentry *)a)->name, ((const zentry *)b)->name);
}

static const zentry *find_entry(const zr *z, const char *name)
{
    zentry key = { .name = name };
    return z->n ? bsearch(&key, z->e, z->n, sizeof key, cmp_entry) : NULL;
}

static cr_status need_stored(const zr *z, const zentry *e)
{
    if (e->data == UINT64_MAX)
        return cr_fail(z->err, CR_ERR_UNSUPPORTED, "%s: zip entry '%s' is compressed (method %llu); torch.save "
                       "writes stored entries, and crucible reads tensors in place, so it reads only those (re-save "
                       "with torch.save, or convert the model to safetensors)", z->path, e->name,
                       (unsigned long long)e->size);
    return CR_OK;
}

static cr_status refuse_legacy(const zr *z)
{
    if (z->size >= 262 && !memcmp(z->p + 257, "ustar", 5))
        return cr_fail(z->err, CR_ERR_UNSUPPORTED, "%s: a PyTorch checkpoint in the legacy tar format (PyTorch < 0.4); "
                       "crucible reads only the zip format of torch.save since PyTorch 1.6: load and re-save it with "
                       "a current PyTorch, or convert it to safetensors", z->path);
    if (z->size >= 2 && z->p[0] == 0x80 && z->p[1] <= 5)
        return cr_fail(z->err, CR_ERR_UNSUPPORTED, "%s: a PyTorch checkpoint in the legacy (pre-zip, PyTorch < 1.6) "
                       "format; crucible reads only the zip format of torch.save since PyTorch 1.6: load and re-save "
                       "it with a current PyTorch, or convert it to safetensors", z->path);
    return cr_fail(z->err, CR_ERR_FORMAT, "%s: not a PyTorch checkpoint (no zip signature)", z->path);
}

/* everything but the mapping: the table of tensors of the zip in z */
static cr_status parse(zr *z, cr_st_file *f)
{
    if (z->size < 4 || rd(z->p, 4) != 0x04034b50) return refuse_legacy(z);
    cr_status st = read_cd(z);
    if (st) return st;
    qsort(z->e, z->n, sizeof *z->e, cmp_entry);
    /* the pickle: the one entry named PREFIX/data.pkl */
    const zentry *pk = NULL;
    for (uint32_t i = 0; i < z->n; i++) {
        const char *s = z->e[i].name, *sl = strchr(s, '/');
        if (sl && !strcmp(sl + 1, "data.pkl")) {
            if (pk) return ZBAD(z, "%s: two pickles ('%s' and '%s')", z->path, pk->name, s);
            pk = &z->e[i];
        }
    }
    if (!pk) return ZBAD(z, "%s: a zip file without PREFIX/data.pkl (not written by torch.save)", z->path);
    if ((st = need_stored(z, pk))) return st;
    size_t plen = (size_t)(strchr(pk->name, '/') - pk->name) + 1;
    char *name = cr_arena_alloc(z->ar, plen + 80);
    if (!name) return cr_fail(z->err, CR_ERR_NOMEM, "%s: out of memory", z->path);
    memcpy(name, pk->name, plen);
    strcpy(name + plen, "byteorder");
    const zentry *bo = find_entry(z, name);
    if (bo) {
        if ((st = need_stored(z, bo))) return st;
        if (bo->size != 6 || memcmp(z->p + bo->data, "little", 6))
            return cr_fail(z->err, CR_ERR_UNSUPPORTED, "%s: tensors saved big-endian ('%s' is not \"little\")", z->path, bo->name);
    }
    char *what = cr_arena_printf(z->ar, "%s (%s)", z->path, pk->name);
    if (!what) return cr_fail(z->err, CR_ERR_NOMEM, "%s: out of memory", z->path);
    cr_pickle_tensor *pt;
    uint32_t n;
    if ((st = cr_pickle_state_dict(z->ar, z->p + pk->data, (size_t)pk->size, what, &pt, &n, z->err))) return st;
    f->tensors = cr_arena_alloc(z->ar, (n ? n : 1) * sizeof *f->tensors);
    if (!f->tensors) return cr_fail(z->err, CR_ERR_NOMEM, "%s: out of memory", z->path);
    for (uint32_t i = 0; i < n; i++) {
        const cr_pickle_tensor *p = &pt[i];
        strcpy(name + plen, "data/");
        strcpy(name + plen + 5, p->storage);   /* a key is at most 64 bytes (pickle.c) */
        const zentry *e = find_entry(z, name);
        if (!e) return ZBAD(z, "%s: tensor '%s': its storage '%s' has no zip entry", z->path, p->name, name);
        if ((st = need_stored(z, e))) return st;
        unsigned es = cr_dtype_size(p->dtype);
        if (p->storage_numel * es != e->size)
            return ZBAD(z, "%s: tensor '%s': storage '%s' holds %llu bytes, but the pickle says %llu elements of %u bytes",
                        z->path, p->name, name, (unsigned long long)e->size, (unsigned long long)p->storage_numel, es);
        cr_st_tensor *t = &f->tensors[i];
        t->name = p->name;
        t->dtype = p->dtype;
        t->ndim = p->ndim;
        memcpy(t->shape, p->shape, sizeof t->shape);
        t->numel = p->numel;
        t->begin = e->data + p->offset * es;
        t->end = t->begin + p->numel * es;
    }
    f->n_tensors = n;
    f->data_start = 0;
    f->container_size = z->size;
    return cr_st_index_names(f, z->err);
}

cr_status cr_torchbin_open_mem(const cr_allocator *alloc, const char *path, const uint8_t *data, size_t len,
                               cr_st_file *out, cr_error *err)
{
    cr_arena *ar;
    cr_status st = cr_st_open_foreign(alloc, path, out, &ar, err);
    if (st) return st;
    out->file_size = len;
    zr z = { .p = data, .size = len, .path = path, .ar = ar, .err = err };
    if ((st = parse(&z, out))) cr_st_close(out);
    return st;
}

cr_status cr_torchbin_open(const cr_allocator *alloc, const char *path, unsigned flags, cr_st_file *out,
                           cr_error *err)
{
    cr_arena *ar;
    cr_status st = cr_st_open_foreign(alloc, path, out, &ar, err);
    if (st) return st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { st = cr_fail_errno(err, errno, "%s: cannot open", path); goto fail; }
    struct stat sb;
    if (fstat(fd, &sb) != 0) { st = cr_fail_errno(err, errno, "%s: cannot stat", path); goto fail; }
    if (!S_ISREG(sb.st_mode)) { st = cr_fail(err, CR_ERR_FORMAT, "%s: not a regular file", path); goto fail; }
    out->file_size = (uint64_t)sb.st_size;
    if (!out->file_size) { st = cr_fail(err, CR_ERR_FORMAT, "%s: an empty file", path); goto fail; }
    void *m = mmap(NULL, (size_t)out->file_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) { st = cr_fail_errno(err, errno, "%s: cannot map", path); goto fail; }
    cr_st_adopt_map(out, m, (size_t)out->file_size);
    close(fd);
    fd = -1;
    zr z = { .p = m, .size = out->file_size, .path = path, .ar = ar, .err = err };
    if ((st = parse(&z, out))) goto fail;
    if (flags & CR_ST_HEADER_ONLY) {
        munmap(m, (size_t)out->file_size);
        cr_st_adopt_map(out, NULL, 0);
    }
    return CR_OK;
fail:
    if (fd >= 0) close(fd);
    cr_st_close(out);
    return st;
}
