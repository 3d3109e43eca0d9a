/* vm_build.c — test helpers to hand-build programs and inputs (vm_build.h). */
#include "vm_build.h"

#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"
#include "vm.h"

static unsigned dsize(cr_dtype t)
{
    switch (t) {
#define X(name, str, size) case CR_DTYPE_##name: return size;
    CR_DTYPE_LIST(X)
#undef X
    default: return 0;
    }
}

static const char *dname(cr_dtype t)
{
    switch (t) {
#define X(name, str, size) case CR_DTYPE_##name: return str;
    CR_DTYPE_LIST(X)
#undef X
    default: return "?";
    }
}

void vb_init(vm_builder *b)
{
    memset(b, 0, sizeof *b);
    b->alloc = cr_default_allocator();
    cr_vec_init(&b->blobs, b->alloc, 1);
    cr_vec_init(&b->files, b->alloc, sizeof(cr_prog_file));
    cr_vec_init(&b->inputs, b->alloc, sizeof(cr_prog_input));
    cr_vec_init(&b->shards, b->alloc, sizeof(cr_prog_shard));
    cr_vec_init(&b->outputs, b->alloc, sizeof(cr_prog_output));
    cr_vec_init(&b->aux, b->alloc, sizeof(cr_prog_aux));
    cr_vec_init(&b->scalars, b->alloc, sizeof(double));
    cr_vec_init(&b->rowvecs, b->alloc, sizeof(cr_prog_rowvec));
    cr_vec_init(&b->scratch, b->alloc, sizeof(cr_prog_scratch));
    cr_vec_init(&b->selects, b->alloc, sizeof(cr_prog_select));
    cr_vec_init(&b->streams, b->alloc, sizeof(cr_prog_stream));
    cr_vec_init(&b->kernels, b->alloc, sizeof(cr_prog_kernel));
    cr_vec_init(&b->messages, b->alloc, sizeof(cr_blob));
    cr_vec_init(&b->code, b->alloc, sizeof(cr_insn));
    cr_vec_init(&b->main, b->alloc, sizeof(cr_insn));
    b->cur_kernel = -1;
    uint8_t zero = 0;
    cr_vec_push(&b->blobs, &zero);   /* blob offset 0 holds "" */
}

void vb_free(vm_builder *b)
{
    cr_vec *all[] = { &b->blobs, &b->files, &b->inputs, &b->shards, &b->outputs, &b->aux, &b->scalars,
                      &b->rowvecs, &b->scratch, &b->selects, &b->streams, &b->kernels, &b->messages,
                      &b->code, &b->main };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cr_vec_free(all[i]);
}

cr_blob vb_bytes(vm_builder *b, const void *data, size_t n)
{
    cr_blob r = { b->blobs.len, n };
    for (size_t i = 0; i < n; i++) cr_vec_push(&b->blobs, (const uint8_t *)data + i);
    return r;
}

cr_blob vb_str(vm_builder *b, const char *s)
{
    cr_blob r = vb_bytes(b, s, strlen(s) + 1);
    r.len--;
    return r;
}

#define PUSH(vec, rec) (cr_vec_push(&b->vec, &(rec)), (uint32_t)(b->vec.len - 1))

uint32_t vb_file(vm_builder *b, const char *path, uint64_t size, uint64_t hash)
{
    cr_blob s = vb_str(b, path);
    cr_prog_file f = { .model = CR_PROG_NO_MODEL, .rel = s, .path = s, .size = size, .hash = hash };
    return PUSH(files, f);
}

uint32_t vb_input(vm_builder *b, uint32_t file, cr_dtype dt, const char *name, uint64_t offset,
                  uint64_t nbytes, uint64_t rows, uint64_t cols, uint64_t row_stride)
{
    cr_prog_input in;
    memset(&in, 0, sizeof in);
    in.file = file; in.dtype = (uint8_t)dt; in.kind = CR_INPUT_FILE;
    in.name = vb_str(b, name); in.offset = offset; in.nbytes = nbytes;
    in.rows = rows; in.cols = cols; in.row_stride = row_stride;
    return PUSH(inputs, in);
}

uint32_t vb_output(vm_builder *b, const char *name, cr_dtype dt, uint64_t rows, uint64_t cols)
{
    cr_prog_output o;
    memset(&o, 0, sizeof o);
    o.name = vb_str(b, name);
    o.dtype = (uint8_t)dt;
    if (rows) { o.ndim = 2; o.shape[0] = rows; o.shape[1] = cols; }
    else { o.ndim = 1; o.shape[0] = cols; }
    o.nbytes = (rows ? rows : 1) * cols * dsize(dt);
    uint32_t i = PUSH(outputs, o);
    b->pending[b->n_pending++] = i;
    return i;
}

uint32_t vb_shard(vm_builder *b, const char *file_name)
{
    char json[8192];
    size_t len = 0;
    uint64_t off = 0;
    uint32_t shard = (uint32_t)b->shards.len;
    len += (size_t)snprintf(json + len, sizeof json - len, "{");
    for (unsigned i = 0; i < b->n_pending; i++) {
        cr_prog_output *o = &CR_VEC_AT(&b->outputs, cr_prog_output, b->pending[i]);
        const char *nm = (const char *)b->blobs.data + o->name.off;
        len += (size_t)snprintf(json + len, sizeof json - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                                i ? "," : "", nm, dname((cr_dtype)o->dtype));
        for (unsigned d = 0; d < o->ndim; d++)
            len += (size_t)snprintf(json + len, sizeof json - len, "%s%llu", d ? "," : "", (unsigned long long)o->shape[d]);
        len += (size_t)snprintf(json + len, sizeof json - len, "],\"data_offsets\":[%llu,%llu]}",
                                (unsigned long long)off, (unsigned long long)(off + o->nbytes));
        off += o->nbytes;
    }
    len += (size_t)snprintf(json + len, sizeof json - len, "}");
    while ((8 + len) % 8) json[len++] = ' ';
    uint8_t hdr[8200];
    uint64_t hl = len;
    for (int i = 0; i < 8; i++) hdr[i] = (uint8_t)(hl >> (8 * i));
    memcpy(hdr + 8, json, len);
    cr_prog_shard sh = { vb_str(b, file_name), vb_bytes(b, hdr, 8 + len), 8 + len + off };
    off = 8 + len;
    for (unsigned i = 0; i < b->n_pending; i++) {
        cr_prog_output *o = &CR_VEC_AT(&b->outputs, cr_prog_output, b->pending[i]);
        o->shard = shard;
        o->offset = off;
        off += o->nbytes;
    }
    b->n_pending = 0;
    return PUSH(shards, sh);
}

uint32_t vb_aux_write(vm_builder *b, const char *dest, const char *content)
{
    cr_prog_aux x;
    memset(&x, 0, sizeof x);
    x.dest = vb_str(b, dest);
    x.kind = CR_AUX_WRITE;
    x.content = vb_bytes(b, content, strlen(content));
    return PUSH(aux, x);
}

uint32_t vb_aux_copy(vm_builder *b, const char *dest, uint32_t file)
{
    cr_prog_aux x;
    memset(&x, 0, sizeof x);
    x.dest = vb_str(b, dest);
    x.kind = CR_AUX_COPY;
    x.src_file = file;
    return PUSH(aux, x);
}

uint32_t vb_scalar(vm_builder *b, double init) { return PUSH(scalars, init); }
uint32_t vb_rowvec(vm_builder *b, uint64_t len) { cr_prog_rowvec r = { len, 0 }; return PUSH(rowvecs, r); }
uint32_t vb_scratch(vm_builder *b, cr_dtype dt, uint64_t numel)
{
    cr_prog_scratch s;
    memset(&s, 0, sizeof s);
    s.dtype = (uint8_t)dt;
    s.numel = numel;
    return PUSH(scratch, s);
}
uint32_t vb_select(vm_builder *b, uint64_t n, uint64_t chunk) { cr_prog_select s = { n, chunk }; return PUSH(selects, s); }
uint32_t vb_stream(vm_builder *b, uint64_t key) { cr_prog_stream s = { key }; return PUSH(streams, s); }
uint32_t vb_message(vm_builder *b, const char *text) { cr_blob m = vb_str(b, text); return PUSH(messages, m); }

uint32_t vb_kernel_begin(vm_builder *b, uint64_t rows, uint64_t cols, uint64_t chunk, uint32_t n_regs, uint32_t flags)
{
    cr_prog_kernel k = { rows, cols, chunk, (uint32_t)b->code.len, 0, n_regs, flags };
    uint32_t i = PUSH(kernels, k);
    b->cur_kernel = (int)i;
    return i;
}

void vb_k(vm_builder *b, cr_op op, cr_dtype dt, uint32_t d, uint32_t a, uint32_t bb, uint32_t c)
{
    cr_insn in = { (uint16_t)op, (uint8_t)dt, 0, d, a, bb, c };
    cr_vec_push(&b->code, &in);
    CR_VEC_AT(&b->kernels, cr_prog_kernel, b->cur_kernel).code_len++;
}

void vb_kernel_end(vm_builder *b) { b->cur_kernel = -1; }

void vb_m(vm_builder *b, cr_op op, cr_dtype dt, uint32_t d, uint32_t a, uint32_t bb, uint32_t c)
{
    cr_insn in = { (uint16_t)op, (uint8_t)dt, 0, d, a, bb, c };
    cr_vec_push(&b->main, &in);
}

void vb_build(vm_builder *b, cr_program *p)
{
    memset(p, 0, sizeof *p);
    p->alloc = b->alloc;
    p->seed = b->seed;
#define TAKE(arr, cnt, vec) p->arr = b->vec.data; p->cnt = (uint32_t)b->vec.len; b->vec.data = NULL; b->vec.len = b->vec.cap = 0
    p->blobs = b->blobs.data; p->n_blob_bytes = b->blobs.len; b->blobs.data = NULL; b->blobs.len = b->blobs.cap = 0;
    TAKE(files, n_files, files);
    TAKE(inputs, n_inputs, inputs);
    TAKE(shards, n_shards, shards);
    TAKE(outputs, n_outputs, outputs);
    TAKE(aux, n_aux, aux);
    TAKE(scalar_init, n_scalars, scalars);
    TAKE(rowvecs, n_rowvecs, rowvecs);
    TAKE(scratch, n_scratch, scratch);
    TAKE(selects, n_selects, selects);
    TAKE(streams, n_streams, streams);
    TAKE(kernels, n_kernels, kernels);
    TAKE(messages, n_messages, messages);
    TAKE(code, n_code, code);
    TAKE(main, n_main, main);
#undef TAKE
    vb_free(b);
}

uint64_t vb_write_safetensors(const char *path, int n, const char *const *names, const cr_dtype *dts,
                              const uint64_t (*shape)[2], const void *const *data, uint64_t *offsets_out)
{
    char json[8192];
    size_t len = 0;
    uint64_t off = 0, nbytes[64];
    len += (size_t)snprintf(json + len, sizeof json - len, "{");
    for (int i = 0; i < n; i++) {
        uint64_t numel = (shape[i][0] ? shape[i][0] : 1) * shape[i][1];
        nbytes[i] = numel * dsize(dts[i]);
        if (shape[i][0])
            len += (size_t)snprintf(json + len, sizeof json - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%llu,%llu],\"data_offsets\":[%llu,%llu]}",
                                    i ? "," : "", names[i], dname(dts[i]), (unsigned long long)shape[i][0],
                                    (unsigned long long)shape[i][1], (unsigned long long)off, (unsigned long long)(off + nbytes[i]));
        else
            len += (size_t)snprintf(json + len, sizeof json - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%llu],\"data_offsets\":[%llu,%llu]}",
                                    i ? "," : "", names[i], dname(dts[i]), (unsigned long long)shape[i][1],
                                    (unsigned long long)off, (unsigned long long)(off + nbytes[i]));
        off += nbytes[i];
    }
    len += (size_t)snprintf(json + len, sizeof json - len, "}");
    while ((8 + len) % 8) json[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    uint8_t hl[8];
    for (int i = 0; i < 8; i++) hl[i] = (uint8_t)((uint64_t)len >> (8 * i));
    fwrite(hl, 1, 8, f);
    fwrite(json, 1, len, f);
    uint64_t pos = 8 + len;
    for (int i = 0; i < n; i++) {
        offsets_out[i] = pos;
        fwrite(data[i], 1, (size_t)nbytes[i], f);
        pos += nbytes[i];
    }
    fclose(f);
    return pos;
}

unsigned char *vb_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    unsigned char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) { buf[n] = 0; *len = (size_t)n; }
    return buf;
}

char *vb_tempdir(void)
{
    char tmpl[] = "/tmp/crucible-vm-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)ftw;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

void vb_rmtree(const char *path) { nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

int vb_run_count_diffs(const cr_program *p, const char *out_dir, unsigned threads, uint64_t max_memory,
                       const void *want, uint64_t n, const char *label, cr_error *err)
{
    cr_vm_options vo;
    cr_vm_options_init(&vo);
    vo.out_dir = out_dir;
    vo.quiet = true;
    vo.threads = threads;
    vo.max_memory = max_memory;
    vo.skip_hash = true;
    if (cr_vm_run(p, &vo, err)) return -1;
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    cr_st_file sf;
    if (cr_st_open(cr_default_allocator(), path, 0, &sf, err)) return -1;
    const cr_st_tensor *t = cr_st_find(&sf, "t.weight");
    int bad = !t || t->numel != n ? -1 : 0;
    for (uint64_t e = 0; bad >= 0 && e < n; e++) {
        uint32_t got, exp;
        memcpy(&got, (const char *)cr_st_data(&sf, t) + 4 * e, 4);
        memcpy(&exp, (const char *)want + 4 * e, 4);
        if (got != exp && bad++ < 3)
            fprintf(stderr, "%s element %" PRIu64 ": want %08x have %08x\n", label, e, exp, got);
    }
    cr_st_close(&sf);
    return bad;
}
