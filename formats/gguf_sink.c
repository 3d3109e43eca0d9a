/* gguf_sink.c — filling a planned GGUF file (gguf_hf.h's sink): tensor
 * bytes converted and placed from any thread, and `convert`'s feeding of
 * the sink from a model directory on disk. The plan is gguf_hf.c's. */
#include "gguf_sink_impl.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "infile.h"
#include "limits.h"

static void sink_free_parts(cr_gguf_sink *s)
{
    cr_free(s->alloc, s->path);
    cr_free(s->alloc, s->gt);
    cr_free(s->alloc, s->outs);
    cr_free(s->alloc, s->dst);
    cr_free(s->alloc, s->slot);
    cr_free(s->alloc, s->heads);
}

void cr_gguf_sink_free(cr_gguf_sink *s)
{
    if (!s) return;
    sink_free_parts(s);
    cr_free(s->alloc, s);
}

uint64_t cr_gguf_sink_size(const cr_gguf_sink *s) { return s->size; }

bool cr_gguf_sink_target(const cr_gguf_sink *s, uint32_t t, const char **name, uint32_t *slot, uint32_t *heads)
{
    if (t >= s->src->n_tensors || s->dst[t] == UINT32_MAX) return false;
    *name = s->outs[s->dst[t]].name;
    *slot = s->slot[t];
    *heads = s->heads[t];
    return true;
}

uint64_t cr_gguf_permute_row(uint64_t r, uint64_t rows, uint32_t heads)
{
    if (!heads) return r;
    /* input row s = h*hd + t goes to h*hd + 2*(t % half) + t / half (§6.3) */
    uint64_t hd = rows / heads, half = hd / 2, h = r / hd, tt = r % hd;
    return h * hd + 2 * (tt % half) + tt / half;
}
uint64_t cr_gguf_sink_header_size(const cr_gguf_sink *s) { return s->header_len; }
cr_ggml_type cr_gguf_sink_ftype(const cr_gguf_sink *s) { return s->ftype; }

/* Elements are converted in pieces of SINK_PIECE (a multiple of 32, so a
 * piece that starts on a block holds whole blocks), on the stack: the
 * sink is called from the VM's worker threads with no buffer of its own. */
enum { SINK_PIECE = 2048 };

cr_status cr_gguf_sink_write(cr_gguf_sink *s, uint32_t t, uint64_t e0, const void *data, uint64_t n, cr_error *err)
{
    const cr_gguf_src_tensor *in = &s->src->tensors[t];
    if (s->fd < 0) return cr_fail(err, CR_ERR_ARG, "GGUF: %s is planned only", s->path);
    if (s->dst[t] == UINT32_MAX) return CR_OK;   /* dropped by the converter */
    const cr_gguf_tensor *g = &s->gt[s->dst[t]];
    const hf_out *u = &s->outs[s->dst[t]];
    uint64_t cols = g->ne[0], part = g->nbytes / u->n_src, rows = cols ? in->numel / cols : 0;
    /* a fused gate_up_proj [E, 2F, H]: row e*2F + j goes to gate row e*F + j (j < F), else to up
     * (the next output) row e*F + j - F; each half holds half the rows */
    uint64_t half = u->split ? in->shape[1] / 2 : 0;
    uint64_t obytes = rows ? part / (half ? rows / 2 : rows) : 0;   /* bytes of one output row */
    unsigned bel = cr_ggml_block_elems(g->type), bby = cr_ggml_block_bytes(g->type), es = cr_dtype_size(in->dtype);
    if (e0 % bel || ((e0 + n) % bel && (e0 + n) % cols))
        return cr_fail(err, CR_ERR_RUNTIME, "GGUF: a write of tensor '%s' at element %llu (%llu elements) does not "
                       "cover whole %s blocks", in->name, (unsigned long long)e0, (unsigned long long)n,
                       cr_ggml_type_name(g->type));
    uint32_t heads = s->heads[t];
    const uint8_t *src = data;
    float f[SINK_PIECE];
    uint8_t o[SINK_PIECE * 4];
    bool quant = g->type == CR_GGML_Q8_0 || g->type == CR_GGML_Q4_0;
    for (uint64_t e = e0, end = e0 + n; e < end;) {
        uint64_t r = e / cols, c = e % cols;
        uint64_t len = CR_MIN(CR_MIN(cols - c, end - e), (uint64_t)SINK_PIECE);
        cr_convert_to_f32(in->dtype, src + (e - e0) * es, f, (size_t)len);
        if (quant)
            for (uint64_t j = 0; j < len; j++)
                if (!isfinite(f[j]))
                    return cr_fail(err, CR_ERR_RUNTIME, "tensor '%s' element %llu is not finite; %s cannot hold it",
                                   in->name, (unsigned long long)(e + j), cr_ggml_type_name(g->type));
        cr_gguf_row_convert(g->type, f, (size_t)len, o);
        uint64_t dst = cr_gguf_permute_row(r, in->shape[0], heads), base = g->offset;
        if (half) {
            uint64_t ex = r / (2 * half), j = r % (2 * half);
            dst = ex * half + j % half;
            if (j >= half) base = s->gt[s->dst[t] + 1].offset;
        }
        uint64_t nb = len / bel * bby, at = base + s->slot[t] * part + dst * obytes + c / bel * bby;
        int ew = cr_io_write_all(s->io, s->fd, o, nb, at);
        if (ew) return cr_fail_errno(err, ew, "writing %s to %s", in->name, s->path);
        e += len;
    }
    return CR_OK;
}

/* ---- a directory on disk as the source ------------------------------------------ */

typedef struct dir_src { const cr_allocator *a; const char *dir; } dir_src;

static bool dir_exists(void *ud, const char *name)
{
    dir_src *d = ud;
    char *p = cr_path_join(d->a, d->dir, name);
    struct stat sb;
    bool r = p && stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
    cr_free(d->a, p);
    return r;
}

static cr_status dir_read(void *ud, const char *name, char **data, size_t *len, cr_error *err)
{
    dir_src *d = ud;
    *data = NULL;
    *len = 0;
    if (!dir_exists(ud, name)) return CR_OK;
    char *p = cr_path_join(d->a, d->dir, name);
    if (!p) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    cr_status st = cr_file_read(d->a, p, CR_LIMIT_JSON_BYTES, name, data, len, err);
    cr_free(d->a, p);
    return st;
}

cr_status cr_gguf_src_of_model(const cr_allocator *alloc, const cr_model *m, cr_gguf_src *src, void **owned,
                               cr_error *err)
{
    /* one block: the directory reader, then the tensor table */
    size_t head = (sizeof(dir_src) + 15) / 16 * 16;
    uint8_t *blk = cr_calloc(alloc, 1, head + (m->n_tensors ? m->n_tensors : 1) * sizeof(cr_gguf_src_tensor));
    if (!blk) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    dir_src *d = (dir_src *)blk;
    d->a = alloc;
    d->dir = m->dir;
    cr_gguf_src_tensor *t = (cr_gguf_src_tensor *)(blk + head);
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        const cr_st_tensor *in = m->tensors[i].info;
        t[i].name = in->name;
        t[i].shard = m->shards[m->tensors[i].shard].path;
        t[i].dtype = in->dtype;
        t[i].ndim = in->ndim;
        memcpy(t[i].shape, in->shape, sizeof t[i].shape);
        t[i].numel = in->numel;
    }
    *owned = blk;
    memset(src, 0, sizeof *src);
    src->dir = m->dir;
    src->config = m->config;
    src->tensors = t;
    src->n_tensors = m->n_tensors;
    src->read = dir_read;
    src->exists = dir_exists;
    src->ud = d;
    return CR_OK;
}

cr_status cr_gguf_hf_write(const cr_allocator *alloc, const cr_model *m, const cr_gguf_hf_opts *o, int fd,
                           const char *path, uint64_t *file_size, cr_error *err)
{
    cr_gguf_src src;
    void *ts = NULL;
    cr_status st = cr_gguf_src_of_model(alloc, m, &src, &ts, err);
    if (st) return st;
    cr_gguf_sink *s = NULL;
    st = cr_gguf_sink_open(alloc, &src, o, NULL, fd, path, &s, err);
    /* each tensor from its mapping, a row block at a time */
    for (uint32_t i = 0; st == CR_OK && i < m->n_tensors; i++) {
        if (o->interrupt && *o->interrupt) { st = cr_fail(err, CR_ERR_INTERRUPTED, "interrupted"); break; }
        const cr_st_tensor *in = m->tensors[i].info;
        const cr_st_file *sf = &m->shards[m->tensors[i].shard];
        const uint8_t *data = cr_st_data(sf, in);
        uint64_t cols = in->ndim ? in->shape[in->ndim - 1] : 1, step = cols ? CR_MAX((uint64_t)1, ((uint64_t)1 << 20) / cols) * cols : 0;
        for (uint64_t e = 0; st == CR_OK && e < in->numel; e += step)
            st = cr_gguf_sink_write(s, i, e, data + e * cr_dtype_size(in->dtype), CR_MIN(step, in->numel - e), err);
        cr_st_release(sf, in);
    }
    if (st == CR_OK) *file_size = cr_gguf_sink_size(s);
    cr_gguf_sink_free(s);
    cr_free(alloc, ts);
    return st;
}
