/* program.c — a program's lifetime, its verifier and the .crb file format.
 *
 * The verifier is the VM's only line of defence against a crafted or
 * corrupted .crb: after it accepts a program, the interpreter may index any
 * table with any operand and read or write any view or output without
 * further checks. So it checks every index, every size (with overflow-safe
 * arithmetic), every operand against its kind in cr_op_table, and every
 * byte range against the extent it lives in. The .crb layout is in
 * spec/bytecode.md: a fixed header, a section table, and each table stored
 * as raw little-endian records whose sizes the header declares.
 */
#include "program.h"
#include "limits.h"
#include "hash.h"
#include "infile.h"
#include "outdir.h"
#include "outguard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cr_program_free(cr_program *p)
{
    if (!p || !p->alloc) return;
    const cr_allocator *a = p->alloc;
    cr_free(a, p->blobs);
    cr_free(a, p->bound);
    cr_free(a, p->models);
    cr_free(a, p->files);
    cr_free(a, p->inputs);
    cr_free(a, p->shards);
    cr_free(a, p->outputs);
    cr_free(a, p->aux);
    cr_free(a, p->scalar_init);
    cr_free(a, p->rowvecs);
    cr_free(a, p->scratch);
    cr_free(a, p->selects);
    cr_free(a, p->streams);
    cr_free(a, p->kernels);
    cr_free(a, p->messages);
    cr_free(a, p->code);
    cr_free(a, p->main);
    memset(p, 0, sizeof *p);
}

/* ---- verifier ------------------------------------------------------------ */

static unsigned dtype_size(unsigned t)
{
    switch (t) {
#define X(name, str, size) case CR_DTYPE_##name: return size;
    CR_DTYPE_LIST(X)
#undef X
    }
    return 0;
}

static bool mul_ok(uint64_t a, uint64_t b, uint64_t *r)
{
    if (a && b > UINT64_MAX / a) return false;
    *r = a * b;
    return true;
}

static bool add_ok(uint64_t a, uint64_t b, uint64_t *r)
{
    if (b > UINT64_MAX - a) return false;
    *r = a + b;
    return true;
}

/* the pool a blob lies in (the bound pool when its offset is tagged) */
static const uint8_t *blob_pool(const cr_program *p, cr_blob *b, uint64_t *n)
{
    if (b->off & CR_BLOB_BOUND) {
        b->off &= ~CR_BLOB_BOUND;
        *n = p->n_bound_bytes;
        return p->bound;
    }
    *n = p->n_blob_bytes;
    return p->blobs;
}

static bool blob_ok(const cr_program *p, cr_blob b)
{
    uint64_t end, n;
    blob_pool(p, &b, &n);
    return add_ok(b.off, b.len, &end) && end <= n;
}

/* a string blob of at most `limit` bytes: in range, NUL at len, no NUL inside */
static bool text_ok(const cr_program *p, cr_blob b, uint64_t limit)
{
    uint64_t end, n;
    const uint8_t *pool = blob_pool(p, &b, &n);
    if (!add_ok(b.off, b.len, &end) || end >= n || b.len > limit) return false;
    const uint8_t *s = pool + b.off;
    return s[b.len] == 0 && memchr(s, 0, b.len) == NULL;
}

static bool str_ok(const cr_program *p, cr_blob b) { return text_ok(p, b, CR_LIMIT_NAME); }

/* a path inside a model's directory: relative, no "." or ".." component,
 * so a .crb reads nothing outside the models it names */
static bool rel_ok(const cr_program *p, cr_blob b)
{
    if (!str_ok(p, b) || b.len == 0) return false;
    const char *s = cr_prog_str(p, b);
    if (s[0] == '/') return false;
    for (const char *c = s; *c;) {
        size_t n = strcspn(c, "/");
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) return false;
        c += n + (c[n] == '/');
    }
    return s[b.len - 1] != '/';
}

/* a file name inside OUT_DIR: one non-empty component, not "." or "..",
 * so a program can never write outside its output directory */
static bool out_name_ok(const cr_program *p, cr_blob b)
{
    if (!str_ok(p, b) || b.len == 0) return false;
    const char *s = cr_prog_str(p, b);
    return !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

static bool is_value_dtype(unsigned t)
{ return t == CR_DTYPE_F16 || t == CR_DTYPE_BF16 || t == CR_DTYPE_F32 || t == CR_DTYPE_F64; }
static bool is_load_dtype(unsigned t)
{ return is_value_dtype(t) || t == CR_DTYPE_F8_E4M3 || t == CR_DTYPE_F8_E5M2; }
static bool is_store_dtype(unsigned t) { return is_value_dtype(t); }

static bool pad_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) if (p[i]) return false;
    return true;
}

/* numel of an input view; false on overflow */
static bool view_numel(const cr_prog_input *in, uint64_t *n) { return mul_ok(in->rows, in->cols, n); }
static uint64_t output_numel(const cr_prog_output *o)
{
    uint64_t n = 1;
    for (unsigned d = 0; d < o->ndim; d++) if (!mul_ok(n, o->shape[d], &n)) return UINT64_MAX;
    return n;
}

/* a verified file's name for messages: its path inside its model, else as given */
static const char *file_name(const cr_program *p, uint32_t i) { return cr_prog_str(p, p->files[i].rel); }
static const char *in_name(const cr_program *p, uint32_t i)
{ return i < p->n_inputs && str_ok(p, p->inputs[i].name) ? cr_prog_str(p, p->inputs[i].name) : "?"; }
static const char *out_name(const cr_program *p, uint32_t i)
{ return i < p->n_outputs && str_ok(p, p->outputs[i].name) ? cr_prog_str(p, p->outputs[i].name) : "?"; }
/* a dtype code from a program, named when it is one */
static const char *dtype_str(unsigned t) { return t < CR_DTYPE_COUNT ? cr_dtype_name((cr_dtype)t) : "(invalid)"; }

static cr_status verify_tables(const cr_program *p, cr_error *err)
{
#define LIM(n, lim, what) if ((n) > (lim)) return cr_fail(err, CR_ERR_LIMIT, \
        "program has %llu %s (limit %llu)", (unsigned long long)(n), what, (unsigned long long)(lim))
    LIM(p->n_blob_bytes, CR_LIMIT_BLOB_BYTES, "blob bytes");
    LIM(p->n_files, CR_LIMIT_FILES, "input files");
    LIM(p->n_inputs, CR_LIMIT_INPUTS, "input views");
    LIM(p->n_shards, CR_LIMIT_SHARDS, "shards");
    LIM(p->n_outputs, CR_LIMIT_OUTPUTS, "outputs");
    LIM(p->n_aux, CR_LIMIT_AUX, "aux files");
    LIM(p->n_scalars, CR_LIMIT_SCALARS, "scalar slots");
    LIM(p->n_rowvecs, CR_LIMIT_ROWVECS, "row vectors");
    LIM(p->n_scratch, CR_LIMIT_SCRATCH, "scratch tensors");
    LIM(p->n_selects, CR_LIMIT_SELECTS, "selection states");
    LIM(p->n_streams, CR_LIMIT_STREAMS, "random streams");
    LIM(p->n_kernels, CR_LIMIT_KERNELS, "kernels");
    LIM(p->n_messages, CR_LIMIT_MESSAGES, "messages");
    LIM(p->n_code, CR_LIMIT_CODE, "kernel micro-ops");
    LIM(p->n_main, CR_LIMIT_MAIN, "top-level instructions");
    LIM(p->n_models, CR_LIMIT_FILES, "input models");
#undef LIM
    if (p->flags & ~(uint32_t)CR_PROG_FLAGS_ALL)
        return cr_fail(err, CR_ERR_FORMAT, "program flags 0x%x has unknown bits", p->flags);
    if (p->tool_version.len && !str_ok(p, p->tool_version))
        return cr_fail(err, CR_ERR_FORMAT, "tool_version blob out of range");
    if (p->mergekit_version.len && !str_ok(p, p->mergekit_version))
        return cr_fail(err, CR_ERR_FORMAT, "mergekit_version blob out of range");
    if (p->recipe_name.len && !str_ok(p, p->recipe_name))
        return cr_fail(err, CR_ERR_FORMAT, "recipe_name blob out of range");

    if (p->recipe_text.len && !text_ok(p, p->recipe_text, CR_LIMIT_BLOB_BYTES))
        return cr_fail(err, CR_ERR_FORMAT, "recipe_text blob out of range");

    for (uint32_t i = 0; i < p->n_models; i++) {
        const cr_prog_model *m = &p->models[i];
        if (!str_ok(p, m->ref) || !m->ref.len || !str_ok(p, m->lookup) || !m->lookup.len ||
            !str_ok(p, m->revision) || strchr(cr_prog_str(p, m->revision), '/'))
            return cr_fail(err, CR_ERR_FORMAT, "model %u: reference, lookup or revision blob out of range", i);
    }
    for (uint32_t i = 0; i < p->n_files; i++) {
        const cr_prog_file *f = &p->files[i];
        bool unbound = !f->path.off && !f->path.len;
        if (f->pad) return cr_fail(err, CR_ERR_FORMAT, "file %u: padding not zero", i);
        if (f->model == CR_PROG_NO_MODEL) {
            if (!str_ok(p, f->rel) || !f->rel.len || !str_ok(p, f->path) || !f->path.len)
                return cr_fail(err, CR_ERR_FORMAT, "file %u: path blob out of range", i);
        } else if (f->model >= p->n_models) {
            return cr_fail(err, CR_ERR_FORMAT, "file %u: model %u out of range", i, f->model);
        } else if (!rel_ok(p, f->rel)) {
            return cr_fail(err, CR_ERR_FORMAT, "file %u: its path inside model %s must be relative, "
                           "without . or .. components", i, cr_prog_str(p, p->models[f->model].ref));
        } else if (!unbound && (!(f->path.off & CR_BLOB_BOUND) || !str_ok(p, f->path) || !f->path.len)) {
            return cr_fail(err, CR_ERR_FORMAT, "file %u: bound path out of range", i);
        }
    }

    for (uint32_t i = 0; i < p->n_inputs; i++) {
        const cr_prog_input *in = &p->inputs[i];
        if (!str_ok(p, in->name)) return cr_fail(err, CR_ERR_FORMAT, "input %u: name blob out of range", i);
        const char *nm = cr_prog_str(p, in->name);
        if (!pad_zero(in->pad, sizeof in->pad)) return cr_fail(err, CR_ERR_FORMAT, "input %u (%s): padding not zero", i, nm);
        unsigned sz = dtype_size(in->dtype);
        if (!sz) return cr_fail(err, CR_ERR_FORMAT, "input %u (%s): invalid dtype %u", i, nm, in->dtype);
        if (in->cols > in->row_stride && in->rows > 1)
            return cr_fail(err, CR_ERR_FORMAT, "input %u (%s): row_stride %llu < cols %llu", i, nm,
                           (unsigned long long)in->row_stride, (unsigned long long)in->cols);
        uint64_t numel, extent = 0;
        if (!view_numel(in, &numel)) return cr_fail(err, CR_ERR_FORMAT, "input %u (%s): size overflows", i, nm);
        if (in->rowmap.len) {
            /* every gathered row lies inside the tensor */
            uint64_t t;
            if (in->rowmap.len != in->rows * 4 || in->rowmap.off % 4 || !add_ok(in->rowmap.off, in->rowmap.len, &t) ||
                t > p->n_blob_bytes || !p->blobs)
                return cr_fail(err, CR_ERR_FORMAT, "input %u (%s): bad row table", i, nm);
            const uint32_t *map = (const uint32_t *)(const void *)(p->blobs + in->rowmap.off);
            for (uint64_t r = 0; r < in->rows; r++) {
                if (map[r] == CR_ROWMAP_ZERO) continue;
                uint64_t e;
                if (!mul_ok(map[r], in->row_stride, &t) || !add_ok(t, in->cols, &t) || !mul_ok(t, sz, &e) ||
                    e > in->nbytes)
                    return cr_fail(err, CR_ERR_FORMAT, "input %u (%s): row table entry %llu (row %u) past the tensor",
                                   i, nm, (unsigned long long)r, map[r]);
            }
        } else if (numel) {
            uint64_t t;
            if (!mul_ok(in->rows - 1, in->row_stride, &t) || !add_ok(t, in->cols, &t) || !mul_ok(t, sz, &extent))
                return cr_fail(err, CR_ERR_FORMAT, "input %u (%s): extent overflows", i, nm);
        }
        uint64_t end;
        if (extent > in->nbytes || !add_ok(in->offset, in->nbytes, &end))
            return cr_fail(err, CR_ERR_FORMAT, "input %u (%s): view of %llu bytes exceeds its tensor's %llu bytes",
                           i, nm, (unsigned long long)extent, (unsigned long long)in->nbytes);
        if (in->kind == CR_INPUT_FILE) {
            if (in->file >= p->n_files) return cr_fail(err, CR_ERR_FORMAT, "input %u (%s): file %u out of range", i, nm, in->file);
            if (end > p->files[in->file].size)
                return cr_fail(err, CR_ERR_FORMAT, "input %u (%s): bytes %llu..%llu past the end of %s (%llu bytes)",
                               i, nm, (unsigned long long)in->offset, (unsigned long long)end,
                               file_name(p, in->file), (unsigned long long)p->files[in->file].size);
        } else if (in->kind == CR_INPUT_SCRATCH) {
            if (in->file >= p->n_scratch) return cr_fail(err, CR_ERR_FORMAT, "input %u (%s): scratch %u out of range", i, nm, in->file);
            const cr_prog_scratch *s = &p->scratch[in->file];
            uint64_t sbytes;
            if (s->dtype != in->dtype) return cr_fail(err, CR_ERR_FORMAT, "input %u (%s): dtype differs from scratch %u", i, nm, in->file);
            if (!mul_ok(s->numel, sz, &sbytes) || end > sbytes)
                return cr_fail(err, CR_ERR_FORMAT, "input %u (%s): view past the end of scratch %u", i, nm, in->file);
        } else if (in->kind == CR_INPUT_BLOB) {
            if (in->file != 0 || in->offset % 8)
                return cr_fail(err, CR_ERR_FORMAT, "input %u (%s): blob input with file %u, offset %llu (need 0, 8-aligned)",
                               i, nm, in->file, (unsigned long long)in->offset);
            if (end > p->n_blob_bytes)
                return cr_fail(err, CR_ERR_FORMAT, "input %u (%s): bytes %llu..%llu past the end of the blob pool (%llu bytes)",
                               i, nm, (unsigned long long)in->offset, (unsigned long long)end,
                               (unsigned long long)p->n_blob_bytes);
        } else {
            return cr_fail(err, CR_ERR_FORMAT, "input %u (%s): unknown kind %u", i, nm, in->kind);
        }
    }

    for (uint32_t i = 0; i < p->n_scratch; i++) {
        const cr_prog_scratch *s = &p->scratch[i];
        uint64_t b;
        if (!is_store_dtype(s->dtype) || !pad_zero(s->pad, sizeof s->pad) || !mul_ok(s->numel, 8, &b))
            return cr_fail(err, CR_ERR_FORMAT, "scratch %u: invalid dtype, padding or size", i);
    }

    for (uint32_t i = 0; i < p->n_shards; i++) {
        const cr_prog_shard *s = &p->shards[i];
        if (!out_name_ok(p, s->file_name))
            return cr_fail(err, CR_ERR_FORMAT, "shard %u: file name must be a plain name inside OUT_DIR", i);
        if (!blob_ok(p, s->header) || s->header.len > s->file_size)
            return cr_fail(err, CR_ERR_FORMAT, "shard %u (%s): header blob out of range", i, cr_prog_str(p, s->file_name));
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(cr_prog_str(p, s->file_name), cr_prog_str(p, p->shards[j].file_name)))
                return cr_fail(err, CR_ERR_FORMAT, "shards %u and %u have the same file name %s", j, i, cr_prog_str(p, s->file_name));
    }

    for (uint32_t i = 0; i < p->n_outputs; i++) {
        const cr_prog_output *o = &p->outputs[i];
        if (!str_ok(p, o->name)) return cr_fail(err, CR_ERR_FORMAT, "output %u: name blob out of range", i);
        const char *nm = cr_prog_str(p, o->name);
        unsigned sz = dtype_size(o->dtype);
        if (!sz || !pad_zero(o->pad, sizeof o->pad) || o->ndim > CR_MAX_DIMS)
            return cr_fail(err, CR_ERR_FORMAT, "output %u (%s): invalid dtype, rank or padding", i, nm);
        for (unsigned d = o->ndim; d < CR_MAX_DIMS; d++)
            if (o->shape[d]) return cr_fail(err, CR_ERR_FORMAT, "output %u (%s): shape beyond its rank not zero", i, nm);
        uint64_t numel = output_numel(o), bytes, end;
        if (numel == UINT64_MAX || !mul_ok(numel, sz, &bytes) || bytes != o->nbytes)
            return cr_fail(err, CR_ERR_FORMAT, "output %u (%s): nbytes %llu does not match its shape and dtype",
                           i, nm, (unsigned long long)o->nbytes);
        if (o->shard >= p->n_shards) return cr_fail(err, CR_ERR_FORMAT, "output %u (%s): shard %u out of range", i, nm, o->shard);
        const cr_prog_shard *s = &p->shards[o->shard];
        if (o->offset < s->header.len || !add_ok(o->offset, o->nbytes, &end) || end > s->file_size)
            return cr_fail(err, CR_ERR_FORMAT, "output %u (%s): bytes %llu..+%llu outside the data of shard %s",
                           i, nm, (unsigned long long)o->offset, (unsigned long long)o->nbytes, cr_prog_str(p, s->file_name));
    }
    /* no two outputs overlap: sort (shard, offset) and compare neighbours */
    if (p->n_outputs > 1) {
        uint32_t *ord = cr_malloc(p->alloc, (size_t)p->n_outputs * sizeof *ord);
        if (!ord) return cr_fail(err, CR_ERR_NOMEM, "verifying outputs: out of memory");
        for (uint32_t i = 0; i < p->n_outputs; i++) ord[i] = i;
        /* insertion sort would be quadratic on 10^6 outputs; use a bottom-up
         * merge sort with a second buffer */
        uint32_t *tmp = cr_malloc(p->alloc, (size_t)p->n_outputs * sizeof *tmp);
        if (!tmp) { cr_free(p->alloc, ord); return cr_fail(err, CR_ERR_NOMEM, "verifying outputs: out of memory"); }
        uint32_t n = p->n_outputs;
        for (uint32_t w = 1; w < n; w = w * 2 > n ? n : w * 2) {
            for (uint32_t lo = 0; lo < n; lo += 2 * w) {
                uint32_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
                uint32_t a = lo, b = mid, k = lo;
                while (a < mid || b < hi) {
                    bool take_a;
                    if (a >= mid) take_a = false;
                    else if (b >= hi) take_a = true;
                    else {
                        const cr_prog_output *x = &p->outputs[ord[a]], *y = &p->outputs[ord[b]];
                        take_a = x->shard < y->shard || (x->shard == y->shard && x->offset <= y->offset);
                    }
                    tmp[k++] = take_a ? ord[a++] : ord[b++];
                }
            }
            memcpy(ord, tmp, (size_t)n * sizeof *ord);
            if (w * 2 > n) break;
        }
        cr_status st = CR_OK;
        for (uint32_t i = 1; i < n && st == CR_OK; i++) {
            const cr_prog_output *x = &p->outputs[ord[i - 1]], *y = &p->outputs[ord[i]];
            if (x->shard == y->shard && x->offset + x->nbytes > y->offset && x->nbytes && y->nbytes)
                st = cr_fail(err, CR_ERR_FORMAT, "outputs %s and %s overlap in shard %s",
                             out_name(p, ord[i - 1]), out_name(p, ord[i]), cr_prog_str(p, p->shards[x->shard].file_name));
        }
        cr_free(p->alloc, tmp);
        cr_free(p->alloc, ord);
        if (st) return st;
    }

    for (uint32_t i = 0; i < p->n_aux; i++) {
        const cr_prog_aux *x = &p->aux[i];
        if (!out_name_ok(p, x->dest))
            return cr_fail(err, CR_ERR_FORMAT, "aux %u: destination must be a plain name inside OUT_DIR", i);
        const char *d = cr_prog_str(p, x->dest);
        if (x->kind == CR_AUX_WRITE) {
            if (!blob_ok(p, x->content) || x->src_file)
                return cr_fail(err, CR_ERR_FORMAT, "aux %u (%s): content blob out of range", i, d);
        } else if (x->kind == CR_AUX_COPY) {
            if (x->src_file >= p->n_files || x->content.off || x->content.len)
                return cr_fail(err, CR_ERR_FORMAT, "aux %u (%s): source file %u out of range", i, d, x->src_file);
        } else {
            return cr_fail(err, CR_ERR_FORMAT, "aux %u (%s): unknown kind %u", i, d, x->kind);
        }
        for (uint32_t j = 0; j < p->n_shards; j++)
            if (!strcmp(d, cr_prog_str(p, p->shards[j].file_name)))
                return cr_fail(err, CR_ERR_FORMAT, "aux %u: %s is also a shard", i, d);
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(d, cr_prog_str(p, p->aux[j].dest)))
                return cr_fail(err, CR_ERR_FORMAT, "aux %u and %u both write %s", j, i, d);
    }

    for (uint32_t i = 0; i < p->n_rowvecs; i++)
        if (p->rowvecs[i].len > CR_LIMIT_ROWVEC_LEN)
            return cr_fail(err, CR_ERR_LIMIT, "row vector %u: %llu elements (limit %llu)", i,
                           (unsigned long long)p->rowvecs[i].len, (unsigned long long)CR_LIMIT_ROWVEC_LEN);
    for (uint32_t i = 0; i < p->n_selects; i++)
        if (p->selects[i].chunk == 0)
            return cr_fail(err, CR_ERR_FORMAT, "selection %u: chunk is 0", i);
    for (uint32_t i = 0; i < p->n_messages; i++)
        if (!str_ok(p, p->messages[i])) return cr_fail(err, CR_ERR_FORMAT, "message %u: blob out of range", i);
    return CR_OK;
}

/* Check operand `which` (0 = dst .. 3 = c) of kind `kind`. `kernel` is NULL
 * at top level. */
static cr_status check_operand(const cr_program *p, const cr_prog_kernel *kernel, uint32_t kidx,
                               const char *where, uint32_t pc, const cr_insn *in, int which,
                               char kind, cr_error *err)
{
    uint32_t v = which == 0 ? in->dst : which == 1 ? in->a : which == 2 ? in->b : in->c;
    uint64_t bound;
    const char *what;
    const char *opn = cr_op_table[in->op].name;
    if (kind == 'v') kind = kernel ? 'r' : 's';
    switch (kind) {
    case '-':
        if (v) return cr_fail(err, CR_ERR_FORMAT, "%s %u (%s): unused operand %d is %u, not 0", where, pc, opn, which, v);
        return CR_OK;
    case 'r':
        if (!kernel) return cr_fail(err, CR_ERR_FORMAT, "%s %u (%s): register operand outside a kernel", where, pc, opn);
        bound = kernel->n_regs; what = "register"; break;
    case 's': bound = p->n_scalars; what = "scalar slot"; break;
    case 'w': bound = p->n_rowvecs; what = "row vector"; break;
    case 'i': bound = p->n_inputs; what = "input"; break;
    case 'o': bound = p->n_outputs; what = "output"; break;
    case 'k': bound = p->n_kernels; what = "kernel"; break;
    case 't': bound = p->n_scratch; what = "scratch tensor"; break;
    case 'x': bound = p->n_selects; what = "selection state"; break;
    case 'n': bound = p->n_streams; what = "random stream"; break;
    case 'b': bound = p->n_messages; what = "message"; break;
    default:
        return cr_fail(err, CR_ERR_FORMAT, "%s %u (%s): op table kind '%c' unknown", where, pc, opn, kind);
    }
    if (v >= bound)
        return cr_fail(err, CR_ERR_FORMAT, "%s %u (%s): %s %u out of range (%llu)%s", where, pc, opn, what, v,
                       (unsigned long long)bound, kernel ? "" : "");
    (void)kidx;
    return CR_OK;
}

static cr_status verify_insn(const cr_program *p, const cr_prog_kernel *k, uint32_t kidx,
                             const char *where, uint32_t pc, const cr_insn *in, cr_error *err)
{
    if (in->op >= CR_OP_COUNT) return cr_fail(err, CR_ERR_FORMAT, "%s %u: unknown op %u", where, pc, in->op);
    const cr_op_info *info = &cr_op_table[in->op];
    if (k && !(info->ctx & CR_CTX_KERNEL))
        return cr_fail(err, CR_ERR_FORMAT, "%s %u: top-level op %s inside kernel %u", where, pc, info->name, kidx);
    if (!k && !(info->ctx & CR_CTX_TOP))
        return cr_fail(err, CR_ERR_FORMAT, "%s %u: kernel op %s at top level", where, pc, info->name);
    if (in->pad) return cr_fail(err, CR_ERR_FORMAT, "%s %u (%s): padding not zero", where, pc, info->name);
    bool rounds = info->flags & CR_OPF_ROUNDS;
    if (rounds ? !is_value_dtype(in->dtype) : (in->dtype != CR_DTYPE_NONE && in->dtype >= CR_DTYPE_COUNT))
        return cr_fail(err, CR_ERR_FORMAT, "%s %u (%s): invalid dtype %u", where, pc, info->name, in->dtype);
    for (int i = 0; i < 4; i++) {
        cr_status s = check_operand(p, k, kidx, where, pc, in, i, info->kinds[i], err);
        if (s) return s;
    }
    return CR_OK;
}

/* kernel-specific rules: domains of views, outputs, selections agree */
static cr_status verify_kernel(const cr_program *p, uint32_t ki, cr_error *err)
{
    const cr_prog_kernel *k = &p->kernels[ki];
    uint64_t n, end, work;
    if (k->n_regs == 0 || k->n_regs > CR_LIMIT_REGS)
        return cr_fail(err, CR_ERR_LIMIT, "kernel %u: %u registers (limit %u)", ki, k->n_regs, CR_LIMIT_REGS);
    if (k->chunk == 0 || k->chunk > CR_LIMIT_CHUNK)
        return cr_fail(err, CR_ERR_LIMIT, "kernel %u: chunk %llu not in 1..%llu", ki, (unsigned long long)k->chunk,
                       (unsigned long long)CR_LIMIT_CHUNK);
    if (!mul_ok(k->rows, k->cols, &n)) return cr_fail(err, CR_ERR_FORMAT, "kernel %u: domain size overflows", ki);
    if (!mul_ok((uint64_t)k->n_regs * 4, k->chunk, &work) || work > CR_LIMIT_KERNEL_WORK)
        return cr_fail(err, CR_ERR_LIMIT, "kernel %u: %u registers of %llu elements exceed the per-thread work limit",
                       ki, k->n_regs, (unsigned long long)k->chunk);
    if (k->flags & ~(uint32_t)CR_KERNEL_FLAGS_ALL) return cr_fail(err, CR_ERR_FORMAT, "kernel %u: unknown flags 0x%x", ki, k->flags);
    if (!add_ok(k->code_begin, k->code_len, &end) || end > p->n_code)
        return cr_fail(err, CR_ERR_FORMAT, "kernel %u: code %u..+%u outside the code table (%u)", ki,
                       k->code_begin, k->code_len, p->n_code);
    bool rows = k->flags & CR_KERNEL_ROWS;
    uint8_t written[CR_LIMIT_REGS] = {0};
    for (uint32_t pc = k->code_begin; pc < end; pc++) {
        const cr_insn *in = &p->code[pc];
        cr_status s = verify_insn(p, k, ki, "code", pc, in, err);
        if (s) return s;
        const cr_op_info *info = &cr_op_table[in->op];
        if (info->flags & CR_OPF_ROWS) rows = true;
        /* every register read was written earlier in this body */
        for (int i = 1; i < 4; i++) {
            char kd = info->kinds[i];
            uint32_t r = i == 1 ? in->a : i == 2 ? in->b : in->c;
            if ((kd == 'v' || kd == 'r') && !written[r])
                return cr_fail(err, CR_ERR_FORMAT, "code %u (%s) in kernel %u: register r%u read before it is written",
                               pc, info->name, ki, r);
        }
        if (info->kinds[0] == 'v' || info->kinds[0] == 'r') written[in->dst] = 1;
        switch (in->op) {
        case CR_OP_LOAD: {
            const cr_prog_input *v = &p->inputs[in->a];
            uint64_t vn;
            view_numel(v, &vn);
            if (vn != n || !is_load_dtype(v->dtype))
                return cr_fail(err, CR_ERR_FORMAT, "code %u (load) in kernel %u: input %s has %llu elements of dtype %s, domain %llu",
                               pc, ki, in_name(p, in->a), (unsigned long long)vn, dtype_str(v->dtype), (unsigned long long)n);
            break;
        }
        case CR_OP_LOWRANK: case CR_OP_LOWRANK_T: {
            /* a: r x n (A), b: m x r (B); the domain is m x n, or n x m transposed */
            const cr_prog_input *a = &p->inputs[in->a], *b = &p->inputs[in->b];
            bool t = in->op == CR_OP_LOWRANK_T;
            if (a->rows != b->cols || a->rows == 0 || a->rows > CR_LIMIT_LORA_RANK ||
                (t ? (a->cols < k->rows || b->rows < k->cols) : (b->rows < k->rows || a->cols < k->cols)) ||
                !is_load_dtype(a->dtype) || !is_load_dtype(b->dtype))
                return cr_fail(err, CR_ERR_FORMAT,
                               "code %u (%s) in kernel %u: inputs %s [%llux%llu] and %s [%llux%llu] do not make a "
                               "[%llux%llu] domain with a product of rank 1..%u", pc, info->name, ki, in_name(p, in->a),
                               (unsigned long long)a->rows, (unsigned long long)a->cols, in_name(p, in->b),
                               (unsigned long long)b->rows, (unsigned long long)b->cols,
                               (unsigned long long)k->rows, (unsigned long long)k->cols, CR_LIMIT_LORA_RANK);
            break;
        }
        case CR_OP_STORE: {
            const cr_prog_output *o = &p->outputs[in->dst];
            if (output_numel(o) != n || !is_store_dtype(o->dtype))
                return cr_fail(err, CR_ERR_FORMAT, "code %u (store) in kernel %u: output %s size or dtype does not fit the domain",
                               pc, ki, out_name(p, in->dst));
            break;
        }
        case CR_OP_SSTORE:
            if (p->scratch[in->dst].numel != n)
                return cr_fail(err, CR_ERR_FORMAT, "code %u (sstore) in kernel %u: scratch %u size differs from the domain", pc, ki, in->dst);
            break;
        case CR_OP_ROWB: case CR_OP_RSUM_ROW: case CR_OP_RMAX_ROW:
        case CR_OP_RSUM_ROW_TORCH: case CR_OP_RSSQ_ROW_TORCH: {
            uint32_t w = in->op == CR_OP_ROWB ? in->a : in->dst;
            if (p->rowvecs[w].len != k->rows)
                return cr_fail(err, CR_ERR_FORMAT, "code %u (%s) in kernel %u: row vector %u has %llu elements, domain %llu rows",
                               pc, info->name, ki, w, (unsigned long long)p->rowvecs[w].len, (unsigned long long)k->rows);
            break;
        }
        case CR_OP_COLB: case CR_OP_RSUM_COL: case CR_OP_RSUM_COL_TORCH: case CR_OP_RSSQ_COL_TORCH: {
            uint32_t w = in->op == CR_OP_COLB ? in->a : in->dst;
            if (p->rowvecs[w].len != k->cols)
                return cr_fail(err, CR_ERR_FORMAT, "code %u (%s) in kernel %u: column vector %u has %llu elements, domain %llu columns",
                               pc, info->name, ki, w, (unsigned long long)p->rowvecs[w].len, (unsigned long long)k->cols);
            if (p->rowvecs[w].rows > k->rows || (p->rowvecs[w].rows && in->op != CR_OP_RSUM_COL_TORCH &&
                                                 in->op != CR_OP_COLB))
                return cr_fail(err, CR_ERR_FORMAT, "code %u (%s) in kernel %u: column vector %u sums %llu rows of %llu",
                               pc, info->name, ki, w, (unsigned long long)p->rowvecs[w].rows, (unsigned long long)k->rows);
            break;
        }
        case CR_OP_ROWRANK:
            if (k->cols > CR_LIMIT_ROWRANK_COLS)
                return cr_fail(err, CR_ERR_LIMIT, "code %u (rowrank) in kernel %u: rows of %llu elements (limit %llu)",
                               pc, ki, (unsigned long long)k->cols, (unsigned long long)CR_LIMIT_ROWRANK_COLS);
            break;
        case CR_OP_HIST_HI: case CR_OP_HIST_LO: case CR_OP_TIE_COUNT: case CR_OP_TOPK_MASK:
        case CR_OP_TORCH_DESC: case CR_OP_TORCH_ASC: case CR_OP_TORCH_TOPK: {
            uint32_t x = in->op == CR_OP_TOPK_MASK ? in->b : in->dst;
            if (p->selects[x].n != n || p->selects[x].chunk != k->chunk)
                return cr_fail(err, CR_ERR_FORMAT, "code %u (%s) in kernel %u: selection %u is over %llu elements in chunks of %llu, kernel over %llu in chunks of %llu",
                               pc, info->name, ki, x, (unsigned long long)p->selects[x].n, (unsigned long long)p->selects[x].chunk,
                               (unsigned long long)n, (unsigned long long)k->chunk);
            break;
        }
        default: break;
        }
    }
    if (rows && (k->cols == 0 || k->chunk % k->cols))
        return cr_fail(err, CR_ERR_FORMAT, "kernel %u: needs whole rows but chunk %llu is not a multiple of cols %llu",
                       ki, (unsigned long long)k->chunk, (unsigned long long)k->cols);
    return CR_OK;
}

/* ---- kernel flags: facts the compiler states for the VM ------------------ */

/* TIE_COUNT, HIST_LO and the torch-order ops (CR_OPF_TORCH_ORDER): the
 * selection ops whose only effect is on the tie counts (HIST_LO's low-bits
 * histogram is one until the threshold is found) and the torch tie-order
 * gather */
static bool is_tie_op(uint16_t op)
{
    return op == CR_OP_TIE_COUNT || op == CR_OP_HIST_LO || cr_op_torch_order(op);
}

/* TIES_ONLY: some tie op, and every other micro-op writes only a register
 * (TOPK_MASK reads its selection into one) */
static bool ties_only(const cr_insn *code, uint32_t n)
{
    bool any = false;
    for (uint32_t pc = 0; pc < n; pc++) {
        uint16_t op = code[pc].op;
        if (is_tie_op(op)) any = true;
        else if (op != CR_OP_TOPK_MASK && !(cr_op_table[op].flags & CR_OPF_REGS)) return false;
    }
    return any;
}

/* per selection: 1 when some kernel gathers it in torch's tie order */
static uint8_t *torch_gathered(const cr_program *p)
{
    uint8_t *g = cr_calloc(p->alloc, p->n_selects + 1, 1);
    for (uint32_t c = 0; g && c < p->n_code; c++)
        if ((cr_op_torch_order(p->code[c].op)) && p->code[c].dst < p->n_selects)
            g[p->code[c].dst] = 1;
    return g;
}

/* EARLY_GATHER: a HIST_LO on a selection that another kernel gathers */
static bool early_gather(const cr_program *p, const cr_prog_kernel *k, const uint8_t *gathered)
{
    const cr_insn *code = p->code + k->code_begin;
    bool hist = false, gathers = false;
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        if (code[pc].op == CR_OP_HIST_LO && gathered[code[pc].dst]) hist = true;
        if (cr_op_torch_order(code[pc].op)) gathers = true;
    }
    return hist && !gathers;
}

/* register r holds bf16 values at code[pc]: its last writer before pc
 * rounds to BF16 (an elementwise op) or loads a BF16 view */
static bool bf16_values(const cr_program *p, const cr_insn *code, uint32_t pc, uint32_t r)
{
    while (pc-- > 0) {
        const cr_insn *in = &code[pc];
        char d = cr_op_table[in->op].kinds[0];   /* 'r' or 'v' (a value: a register inside kernels) */
        if ((d != 'r' && d != 'v') || in->dst != r) continue;
        if (in->op == CR_OP_LOAD) return in->a < p->n_inputs && p->inputs[in->a].dtype == CR_DTYPE_BF16;
        return (cr_op_table[in->op].flags & CR_OPF_ELEM) && in->dtype == CR_DTYPE_BF16;
    }
    return false;
}

/* HI_GATHER: a HIST_HI of bf16 values on a selection that another kernel
 * gathers (bf16: the selection runs in direct mode, so the gather is the
 * only thing left for the later passes to do, and ties at the threshold
 * are all but certain, so it is rarely filled for nothing) */
static bool hi_gather(const cr_program *p, const cr_prog_kernel *k, const uint8_t *gathered)
{
    const cr_insn *code = p->code + k->code_begin;
    bool hist = false, gathers = false;
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        if (code[pc].op == CR_OP_HIST_HI && gathered[code[pc].dst] && bf16_values(p, code, pc, code[pc].a)) hist = true;
        if (cr_op_torch_order(code[pc].op)) gathers = true;
    }
    return hist && !gathers;
}

void cr_program_mark_kernels(cr_program *p)
{
    uint8_t *gathered = torch_gathered(p);
    for (uint32_t i = 0; i < p->n_kernels; i++) {
        cr_prog_kernel *k = &p->kernels[i];
        k->flags &= ~(uint32_t)(CR_KERNEL_TIES_ONLY | CR_KERNEL_EARLY_GATHER | CR_KERNEL_HI_GATHER);
        if (ties_only(p->code + k->code_begin, k->code_len)) k->flags |= CR_KERNEL_TIES_ONLY;
        if (gathered && early_gather(p, k, gathered)) k->flags |= CR_KERNEL_EARLY_GATHER;
        if (gathered && hi_gather(p, k, gathered)) k->flags |= CR_KERNEL_HI_GATHER;
    }
    cr_free(p->alloc, gathered);   /* without it (out of memory) no kernel claims an early gather */
}

/* a flag the code does not bear out would make the VM skip work or gather
 * what nobody sorts: refused (an absent flag only costs time) */
static cr_status verify_kernel_flags(const cr_program *p, cr_error *err)
{
    uint8_t *gathered = torch_gathered(p);
    if (!gathered) return cr_fail(err, CR_ERR_NOMEM, "out of memory verifying the program");
    cr_status s = CR_OK;
    for (uint32_t i = 0; i < p->n_kernels && !s; i++) {
        const cr_prog_kernel *k = &p->kernels[i];
        if ((k->flags & CR_KERNEL_TIES_ONLY) && !ties_only(p->code + k->code_begin, k->code_len))
            s = cr_fail(err, CR_ERR_FORMAT, "kernel %u: flagged ties-only but has other effects", i);
        else if ((k->flags & CR_KERNEL_EARLY_GATHER) && !early_gather(p, k, gathered))
            s = cr_fail(err, CR_ERR_FORMAT, "kernel %u: flagged early-gather but counts no selection another kernel gathers", i);
        else if ((k->flags & CR_KERNEL_HI_GATHER) && !hi_gather(p, k, gathered))
            s = cr_fail(err, CR_ERR_FORMAT, "kernel %u: flagged hi-gather but counts no bf16 selection another kernel gathers", i);
    }
    cr_free(p->alloc, gathered);
    return s;
}

cr_status cr_program_verify(const cr_program *p, cr_error *err)
{
    if (!p->alloc) return cr_fail(err, CR_ERR_FORMAT, "program has no allocator");
    if (p->n_blob_bytes && !p->blobs) return cr_fail(err, CR_ERR_FORMAT, "program has blob bytes but no pool");
    cr_status s = verify_tables(p, err);
    if (s) return s;
    for (uint32_t k = 0; k < p->n_kernels; k++)
        if ((s = verify_kernel(p, k, err))) return s;
    if ((s = verify_kernel_flags(p, err))) return s;
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        const cr_insn *in = &p->main[pc];
        if ((s = verify_insn(p, NULL, 0, "main", pc, in, err))) return s;
        if (in->op == CR_OP_COPY) {
            const cr_prog_input *v = &p->inputs[in->a];
            const cr_prog_output *o = &p->outputs[in->dst];
            uint64_t vn;
            view_numel(v, &vn);
            if (v->rowmap.len)
                return cr_fail(err, CR_ERR_FORMAT, "main %u (copy): input %s gathers rows (only a kernel load may)",
                               pc, in_name(p, in->a));
            if (vn != output_numel(o))
                return cr_fail(err, CR_ERR_FORMAT, "main %u (copy): input %s has %llu elements, output %s %llu",
                               pc, in_name(p, in->a), (unsigned long long)vn, out_name(p, in->dst),
                               (unsigned long long)output_numel(o));
            if (v->dtype != o->dtype && !(is_load_dtype(v->dtype) && is_store_dtype(o->dtype)))
                return cr_fail(err, CR_ERR_FORMAT, "main %u (copy): cannot convert %s from %s to %s",
                               pc, in_name(p, in->a), dtype_str(v->dtype), dtype_str(o->dtype));
        }
    }
    return CR_OK;
}

/* ---- .crb files ---------------------------------------------------------- */

#define CRB_MAGIC "CRUCIBLE"
#define CRB_VERSION 6u   /* 3: kernel flags TIES_ONLY and EARLY_GATHER; 4: mergekit_version;
                            5: portable inputs (models, files by model and relative path), recipe_text;
                            6: kernel flag HI_GATHER, HIST_LO kernels TIES_ONLY */
#define CRB_ENDIAN 0x01020304u

typedef struct crb_header {
    char magic[8];
    uint32_t version;
    uint32_t endian;          /* CRB_ENDIAN as written by the producer */
    uint32_t header_size;     /* sizeof(crb_header) */
    uint32_t section_size;    /* sizeof(crb_section) */
    uint32_t n_sections;
    uint32_t flags;           /* cr_program.flags */
    uint64_t seed;
    uint64_t op_table;        /* cr_op_table_fingerprint() of the producer */
    cr_blob tool_version;
    cr_blob mergekit_version;
    cr_blob recipe_name;
    cr_blob recipe_text;
    uint64_t file_size;       /* whole file */
    uint64_t body_hash;       /* XXH64 of bytes [header_size, file_size) */
} crb_header;

typedef struct crb_section {
    uint32_t id;
    uint32_t record_size;     /* sizeof the record type; the loader checks it */
    uint64_t count;
    uint64_t offset;          /* from the start of the file, 8-aligned */
} crb_section;

enum {
    SEC_BLOBS = 1, SEC_FILES, SEC_INPUTS, SEC_SHARDS, SEC_OUTPUTS, SEC_AUX, SEC_SCALARS,
    SEC_ROWVECS, SEC_SCRATCH, SEC_SELECTS, SEC_STREAMS, SEC_KERNELS, SEC_MESSAGES,
    SEC_CODE, SEC_MAIN, SEC_MODELS, SEC_COUNT_ = SEC_MODELS
};

typedef struct sec_desc {
    const char *name;
    size_t record_size;
    uint64_t limit;
    size_t data_off;          /* offsetof the array pointer in cr_program */
    size_t count_off;         /* offsetof the count (uint32_t, or uint64_t for blobs) */
} sec_desc;

#define SD(nm, T, lim, arr, cnt) { nm, sizeof(T), lim, offsetof(cr_program, arr), offsetof(cr_program, cnt) }
static const sec_desc sections[SEC_COUNT_ + 1] = {
    [SEC_BLOBS]    = SD("blobs", uint8_t, CR_LIMIT_BLOB_BYTES, blobs, n_blob_bytes),
    [SEC_FILES]    = SD("files", cr_prog_file, CR_LIMIT_FILES, files, n_files),
    [SEC_INPUTS]   = SD("inputs", cr_prog_input, CR_LIMIT_INPUTS, inputs, n_inputs),
    [SEC_SHARDS]   = SD("shards", cr_prog_shard, CR_LIMIT_SHARDS, shards, n_shards),
    [SEC_OUTPUTS]  = SD("outputs", cr_prog_output, CR_LIMIT_OUTPUTS, outputs, n_outputs),
    [SEC_AUX]      = SD("aux", cr_prog_aux, CR_LIMIT_AUX, aux, n_aux),
    [SEC_SCALARS]  = SD("scalars", double, CR_LIMIT_SCALARS, scalar_init, n_scalars),
    [SEC_ROWVECS]  = SD("rowvecs", cr_prog_rowvec, CR_LIMIT_ROWVECS, rowvecs, n_rowvecs),
    [SEC_SCRATCH]  = SD("scratch", cr_prog_scratch, CR_LIMIT_SCRATCH, scratch, n_scratch),
    [SEC_SELECTS]  = SD("selects", cr_prog_select, CR_LIMIT_SELECTS, selects, n_selects),
    [SEC_STREAMS]  = SD("streams", cr_prog_stream, CR_LIMIT_STREAMS, streams, n_streams),
    [SEC_KERNELS]  = SD("kernels", cr_prog_kernel, CR_LIMIT_KERNELS, kernels, n_kernels),
    [SEC_MESSAGES] = SD("messages", cr_blob, CR_LIMIT_MESSAGES, messages, n_messages),
    [SEC_CODE]     = SD("code", cr_insn, CR_LIMIT_CODE, code, n_code),
    [SEC_MAIN]     = SD("main", cr_insn, CR_LIMIT_MAIN, main, n_main),
    [SEC_MODELS]   = SD("models", cr_prog_model, CR_LIMIT_FILES, models, n_models),
};

static uint64_t sec_count(const cr_program *p, int id)
{
    const char *base = (const char *)p + sections[id].count_off;
    if (id == SEC_BLOBS) return *(const uint64_t *)(const void *)base;
    return *(const uint32_t *)(const void *)base;
}

static const void *sec_data(const cr_program *p, int id)
{ return *(void *const *)(const void *)((const char *)p + sections[id].data_off); }

static bool host_is_little(void) { uint32_t x = 1; uint8_t b; memcpy(&b, &x, 1); return b == 1; }

/* The .crb bytes of p (header included, body hash set) in *buf (p->alloc);
 * `what` names the file for messages. */
static cr_status serialise(const cr_program *p, const char *what, uint8_t **out, uint64_t *out_len, cr_error *err)
{
    if (!host_is_little()) return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: .crb files are little-endian; this host is not", what);
    crb_section secs[SEC_COUNT_];
    uint64_t off = sizeof(crb_header) + sizeof secs;
    for (int id = 1; id <= SEC_COUNT_; id++) {
        crb_section *c = &secs[id - 1];
        c->id = (uint32_t)id;
        c->record_size = (uint32_t)sections[id].record_size;
        c->count = sec_count(p, id);
        c->offset = off;
        off += (c->count * c->record_size + 7) & ~(uint64_t)7;
    }
    if (off > CR_LIMIT_CRB_BYTES) return cr_fail(err, CR_ERR_LIMIT, "%s: program would be %llu bytes (limit %llu)", what,
                                                 (unsigned long long)off, (unsigned long long)CR_LIMIT_CRB_BYTES);
    uint8_t *buf = cr_calloc(p->alloc, 1, (size_t)off);
    /* a model's file is saved without the path it is bound to here: a
     * .crb names its inputs by model and relative path only */
    cr_prog_file *files = p->n_files ? cr_malloc(p->alloc, (size_t)p->n_files * sizeof *files) : NULL;
    if (!buf || (p->n_files && !files)) {
        cr_free(p->alloc, buf);
        cr_free(p->alloc, files);
        return cr_fail(err, CR_ERR_NOMEM, "%s: out of memory serialising the program", what);
    }
    for (uint32_t i = 0; i < p->n_files; i++) {
        files[i] = p->files[i];
        files[i].path = files[i].model == CR_PROG_NO_MODEL ? files[i].rel : (cr_blob){ 0, 0 };
    }
    crb_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CRB_MAGIC, 8);
    h.version = CRB_VERSION;
    h.endian = CRB_ENDIAN;
    h.header_size = sizeof h;
    h.section_size = sizeof(crb_section);
    h.n_sections = SEC_COUNT_;
    h.flags = p->flags;
    h.seed = p->seed;
    h.op_table = cr_op_table_fingerprint();
    h.tool_version = p->tool_version;
    h.mergekit_version = p->mergekit_version;
    h.recipe_name = p->recipe_name;
    h.recipe_text = p->recipe_text;
    h.file_size = off;
    memcpy(buf + sizeof h, secs, sizeof secs);
    for (int id = 1; id <= SEC_COUNT_; id++) {
        const crb_section *c = &secs[id - 1];
        const void *data = id == SEC_FILES ? files : sec_data(p, id);
        if (c->count) memcpy(buf + c->offset, data, (size_t)(c->count * c->record_size));
    }
    cr_free(p->alloc, files);
    h.body_hash = cr_xxh64(buf + sizeof h, (size_t)(off - sizeof h), 0);
    memcpy(buf, &h, sizeof h);
    *out = buf;
    *out_len = off;
    return CR_OK;
}

cr_status cr_program_body_hash(const cr_program *p, uint64_t *out, cr_error *err)
{
    uint8_t *buf;
    uint64_t len;
    cr_status s = serialise(p, "program", &buf, &len, err);
    if (s) return s;
    crb_header h;
    memcpy(&h, buf, sizeof h);
    *out = h.body_hash;
    cr_free(p->alloc, buf);
    return CR_OK;
}

cr_status cr_program_save(const cr_program *p, const char *path, cr_error *err)
{
    cr_status s = cr_program_verify(p, err);
    if (s) return s;
    uint8_t *buf;
    uint64_t off;
    if ((s = serialise(p, path, &buf, &off, err))) return s;

    /* write beside the target and rename, so a reader never sees half a file */
    /* (a name of crucible's own, so no file of the user's is clobbered;
     * synced before the rename, so the new name never holds half a file) */
    cr_outfile of;
    if ((s = cr_outfile_begin(p->alloc, path, NULL, NULL, &of, err))) { cr_free(p->alloc, buf); return s; }
    const char *tmp = of.tmp_path;
    FILE *f = fopen(tmp, "wbx");
    if (!f) {
        s = cr_fail_errno(err, errno, "cannot create %s", tmp);
    } else {
        bool ok = fwrite(buf, 1, (size_t)off, f) == off;
        int e = errno;
        ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
        if (!e) e = errno;
        ok = (fclose(f) == 0) && ok;
        if (!ok) { s = cr_fail_errno(err, e ? e : EIO, "cannot write %s", tmp); remove(tmp); }
        else if (rename(tmp, path)) { s = cr_fail_errno(err, errno, "cannot rename %s to %s", tmp, path); remove(tmp); }
    }
    cr_outfile_end(&of);
    cr_free(p->alloc, buf);
    return s;
}

cr_status cr_program_load(const cr_allocator *alloc, const char *path, cr_program *out, cr_error *err)
{
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t len = 0;
    cr_status s = cr_file_read(alloc, path, CR_LIMIT_CRB_BYTES, "program", &text, &len, err);
    if (s) return s;
    uint8_t *buf = (uint8_t *)text;
    long sz = (long)len;
    if ((size_t)sz < sizeof(crb_header)) { s = cr_fail(err, CR_ERR_FORMAT, "%s: not a crucible program (%ld bytes, too short for the header)", path, sz); goto done; }

    crb_header h;
    memcpy(&h, buf, sizeof h);
    if (memcmp(h.magic, CRB_MAGIC, 8)) { s = cr_fail(err, CR_ERR_FORMAT, "%s: not a crucible program (bad magic)", path); goto done; }
    if (h.endian != CRB_ENDIAN) { s = cr_fail(err, CR_ERR_FORMAT, "%s: written with a different byte order (endian marker 0x%08x)", path, h.endian); goto done; }
    if (h.version != CRB_VERSION) { s = cr_fail(err, CR_ERR_UNSUPPORTED, "%s: format version %u, this crucible reads version %u", path, h.version, CRB_VERSION); goto done; }
    if (h.header_size != sizeof h || h.section_size != sizeof(crb_section)) {
        s = cr_fail(err, CR_ERR_FORMAT, "%s: header/section record sizes %u/%u, expected %zu/%zu", path,
                    h.header_size, h.section_size, sizeof h, sizeof(crb_section));
        goto done;
    }
    if (h.file_size != (uint64_t)sz) { s = cr_fail(err, CR_ERR_FORMAT, "%s: truncated or extended: header says %llu bytes, file has %ld", path, (unsigned long long)h.file_size, sz); goto done; }
    if (h.n_sections > CR_LIMIT_SECTIONS || sizeof h + (uint64_t)h.n_sections * sizeof(crb_section) > (uint64_t)sz) {
        s = cr_fail(err, CR_ERR_FORMAT, "%s: section table of %u entries does not fit", path, h.n_sections);
        goto done;
    }
    uint64_t hash = cr_xxh64(buf + sizeof h, (size_t)sz - sizeof h, 0);
    if (hash != h.body_hash) { s = cr_fail(err, CR_ERR_FORMAT, "%s: corrupted (checksum %016llx, header says %016llx)", path, (unsigned long long)hash, (unsigned long long)h.body_hash); goto done; }

    if (h.op_table != cr_op_table_fingerprint()) {
        s = cr_fail(err, CR_ERR_UNSUPPORTED, "%s: compiled for another instruction set (op table %016llx, this crucible's is %016llx); "
                    "compile the recipe again with this crucible", path, (unsigned long long)h.op_table,
                    (unsigned long long)cr_op_table_fingerprint());
        goto done;
    }

    out->alloc = alloc;
    out->seed = h.seed;
    out->flags = h.flags;
    out->tool_version = h.tool_version;
    out->mergekit_version = h.mergekit_version;
    out->recipe_name = h.recipe_name;
    out->recipe_text = h.recipe_text;
    bool seen[SEC_COUNT_ + 1] = {0};
    for (uint32_t i = 0; i < h.n_sections; i++) {
        crb_section c;
        memcpy(&c, buf + sizeof h + (size_t)i * sizeof c, sizeof c);
        if (c.id < 1 || c.id > SEC_COUNT_ || seen[c.id]) { s = cr_fail(err, CR_ERR_FORMAT, "%s: section %u has unknown or repeated id %u", path, i, c.id); goto done; }
        seen[c.id] = true;
        const sec_desc *d = &sections[c.id];
        if (c.record_size != d->record_size) { s = cr_fail(err, CR_ERR_FORMAT, "%s: section %s records are %u bytes, expected %zu", path, d->name, c.record_size, d->record_size); goto done; }
        if (c.count > d->limit) { s = cr_fail(err, CR_ERR_LIMIT, "%s: section %s has %llu records (limit %llu)", path, d->name, (unsigned long long)c.count, (unsigned long long)d->limit); goto done; }
        uint64_t bytes = c.count * c.record_size, end;
        if (c.offset % 8 || !add_ok(c.offset, bytes, &end) || end > (uint64_t)sz || c.offset < sizeof h) {
            s = cr_fail(err, CR_ERR_FORMAT, "%s: section %s (%llu bytes at %llu) outside the file", path, d->name, (unsigned long long)bytes, (unsigned long long)c.offset);
            goto done;
        }
        if (!c.count) continue;
        void *arr = cr_malloc(alloc, (size_t)bytes);
        if (!arr) { s = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory loading section %s", path, d->name); goto done; }
        memcpy(arr, buf + c.offset, (size_t)bytes);
        *(void **)(void *)((char *)out + d->data_off) = arr;
        char *cnt = (char *)out + d->count_off;
        if (c.id == SEC_BLOBS) *(uint64_t *)(void *)cnt = c.count;
        else *(uint32_t *)(void *)cnt = (uint32_t)c.count;
    }
    if ((s = cr_program_verify(out, err))) {
        /* prefix the file name so the user knows which program is bad */
        char m[sizeof err->msg];
        if (err) { snprintf(m, sizeof m, "%s: %s", path, err->msg); memcpy(err->msg, m, sizeof m); }
    }
done:
    cr_free(alloc, buf);
    if (s) cr_program_free(out);
    return s;
}

/* The input-path list is the output guard's (formats/outguard.h); filling it
 * from a program is the VM's, which owns the program's layout. */
cr_status cr_input_paths_add_program(cr_input_paths *ip, const cr_program *p, cr_error *err)
{
    for (uint32_t i = 0; i < p->n_files; i++) {
        if (!p->files[i].path.len) continue;   /* not bound: read nowhere yet */
        const char *path = cr_prog_str(p, p->files[i].path);
        cr_status s = cr_input_paths_add(ip, path, CR_INPUT_PATH_FILE, err);
        if (s) return s;
        /* its model directory: the folder holding it, when that is laid out
         * as one (a config.json beside the weights, or a PEFT adapter's
         * adapter_config.json). A program built by other means may read
         * loose files from a folder that is no model (tests do); the files
         * themselves are still guarded. */
        const char *slash = strrchr(path, '/');
        size_t dl = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
        char *cfg = cr_malloc(ip->alloc, dl + sizeof "/adapter_config.json");
        if (!cfg) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
        memcpy(cfg, slash ? path : ".", dl);
        memcpy(cfg + dl, "/config.json", sizeof "/config.json");
        struct stat st;
        bool model_dir = !stat(cfg, &st);
        memcpy(cfg + dl, "/adapter_config.json", sizeof "/adapter_config.json");
        model_dir = model_dir || !stat(cfg, &st);
        cfg[dl] = 0;
        s = model_dir ? cr_input_paths_add(ip, cfg, CR_INPUT_PATH_DIR, err) : CR_OK;
        cr_free(ip->alloc, cfg);
        if (s) return s;
    }
    return CR_OK;
}
