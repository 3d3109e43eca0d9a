/* safetensors_write.c — the safetensors writer: the layout (tensor order,
 * offsets, header bytes) byte-identical to Python's safetensors
 * (formats-and-moe.md §5.1 "Writer"), and a whole-file writer on top of it.
 *
 * The layout is computed before any data exists so that the VM (and synth)
 * can pwrite each tensor at its final offset as soon as it is produced,
 * without holding a whole shard in memory.
 */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonw.h"

typedef struct layout_sort {
    const cr_st_entry *e;
    size_t idx;
} layout_sort;

/* dtype rank descending, then name ascending by bytes (Rust's sort) */
static int cmp_layout(const void *a, const void *b)
{
    const cr_st_entry *x = ((const layout_sort *)a)->e, *y = ((const layout_sort *)b)->e;
    if (x->dtype != y->dtype) return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

cr_status cr_st_layout(const cr_allocator *alloc, cr_st_entry *entries, size_t n,
                       const char *const *meta_kv, size_t n_meta_pairs,
                       uint8_t **header, uint64_t *header_len, uint64_t *file_size,
                       cr_error *err)
{
    *header = NULL;
    layout_sort *order = cr_calloc(alloc, n ? n : 1, sizeof *order);
    if (!order) return cr_fail(err, CR_ERR_NOMEM, "safetensors layout: out of memory");
    cr_status st = CR_OK;
    for (size_t i = 0; i < n; i++) {
        cr_st_entry *e = &entries[i];
        if (!e->name || !strcmp(e->name, "__metadata__")) {
            st = cr_fail(err, CR_ERR_ARG, "safetensors layout: invalid tensor name '%s'", e->name ? e->name : "(null)");
            goto out;
        }
        unsigned size = cr_dtype_size(e->dtype);
        if (!size || e->ndim > CR_MAX_DIMS) {
            st = cr_fail(err, CR_ERR_ARG, "safetensors layout: tensor '%s': invalid dtype or rank", e->name);
            goto out;
        }
        uint64_t numel = 1;
        for (uint32_t d = 0; d < e->ndim; d++) {
            if (e->shape[d] && numel > UINT64_MAX / e->shape[d]) {
                st = cr_fail(err, CR_ERR_LIMIT, "safetensors layout: tensor '%s': shape overflows", e->name);
                goto out;
            }
            numel *= e->shape[d];
        }
        if (numel > UINT64_MAX / size) {
            st = cr_fail(err, CR_ERR_LIMIT, "safetensors layout: tensor '%s': byte size overflows", e->name);
            goto out;
        }
        e->nbytes = numel * size;
        order[i].e = e;
        order[i].idx = i;
    }
    qsort(order, n, sizeof *order, cmp_layout);
    for (size_t i = 1; i < n; i++) {
        if (!strcmp(order[i - 1].e->name, order[i].e->name)) {
            st = cr_fail(err, CR_ERR_ARG, "safetensors layout: duplicate tensor name '%s'", order[i].e->name);
            goto out;
        }
    }

    cr_sbuf b;
    cr_sbuf_init(&b, alloc);
    cr_sbuf_add(&b, "\0\0\0\0\0\0\0\0", 8);        /* length, patched below */
    cr_sbuf_adds(&b, "{\"__metadata__\":{\"format\":");
    const char *format = "pt";
    for (size_t k = 0; k < n_meta_pairs; k++)
        if (!strcmp(meta_kv[2 * k], "format")) format = meta_kv[2 * k + 1];
    cr_json_add_string(&b, format, strlen(format), false);
    for (size_t k = 0; k < n_meta_pairs; k++) {
        if (!strcmp(meta_kv[2 * k], "format")) continue;
        cr_sbuf_add(&b, ",", 1);
        cr_json_add_string(&b, meta_kv[2 * k], strlen(meta_kv[2 * k]), false);
        cr_sbuf_add(&b, ":", 1);
        cr_json_add_string(&b, meta_kv[2 * k + 1], strlen(meta_kv[2 * k + 1]), false);
    }
    cr_sbuf_add(&b, "}", 1);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const cr_st_entry *e = order[i].e;
        cr_sbuf_add(&b, ",", 1);
        cr_json_add_string(&b, e->name, strlen(e->name), false);
        cr_sbuf_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", cr_dtype_name(e->dtype));
        for (uint32_t d = 0; d < e->ndim; d++)
            cr_sbuf_printf(&b, "%s%llu", d ? "," : "", (unsigned long long)e->shape[d]);
        cr_sbuf_printf(&b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                       (unsigned long long)(off + e->nbytes));
        off += e->nbytes;
    }
    cr_sbuf_add(&b, "}", 1);
    while ((b.len - 8) % 8) cr_sbuf_add(&b, " ", 1);
    size_t len;
    uint8_t *h = (uint8_t *)cr_sbuf_take(&b, &len);
    if (!h) { st = cr_fail(err, CR_ERR_NOMEM, "safetensors layout: out of memory"); goto out; }
    uint64_t hn = len - 8;
    for (int i = 0; i < 8; i++) h[i] = (uint8_t)(hn >> (8 * i));
    if (hn > CR_ST_MAX_HEADER) {
        cr_free(alloc, h);
        st = cr_fail(err, CR_ERR_LIMIT, "safetensors layout: header of %llu bytes exceeds the 100 MB limit",
                     (unsigned long long)hn);
        goto out;
    }
    off = len;
    for (size_t i = 0; i < n; i++) {
        entries[order[i].idx].offset = off;
        off += order[i].e->nbytes;
    }
    *header = h;
    *header_len = len;
    *file_size = off;
out:
    cr_free(alloc, order);
    return st;
}

cr_status cr_write_at(int fd, const void *buf, size_t n, uint64_t off, const char *path, cr_error *err)
{
    const unsigned char *p = buf;
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return cr_fail_errno(err, errno, "%s: write failed", path);
        if (w == 0) return cr_fail_errno(err, EIO, "%s: write failed", path);
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return CR_OK;
}

cr_status cr_st_write_file(const cr_allocator *alloc, const char *path,
                           cr_st_entry *entries, const void *const *data, size_t n,
                           cr_error *err)
{
    uint8_t *header;
    uint64_t header_len, file_size;
    cr_status st = cr_st_layout(alloc, entries, n, NULL, 0, &header, &header_len, &file_size, err);
    if (st != CR_OK) return st;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        cr_free(alloc, header);
        return cr_fail_errno(err, errno, "%s: cannot create", path);
    }
    st = cr_write_at(fd, header, (size_t)header_len, 0, path, err);
    for (size_t i = 0; st == CR_OK && i < n; i++)
        if (entries[i].nbytes)
            st = cr_write_at(fd, data[i], (size_t)entries[i].nbytes, entries[i].offset, path, err);
    if (st == CR_OK && ftruncate(fd, (off_t)file_size) != 0)
        st = cr_fail_errno(err, errno, "%s: cannot set the file size", path);
    if (close(fd) != 0 && st == CR_OK)
        st = cr_fail_errno(err, errno, "%s: close failed", path);
    if (st != CR_OK) unlink(path);       /* never leave a half-written file */
    cr_free(alloc, header);
    return st;
}
