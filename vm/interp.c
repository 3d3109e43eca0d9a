/* interp.c — the VM: cr_vm_run (vm.h), the top-level stream and kernels.
 *
 * The top-level stream runs on the calling thread. A KERNEL instruction
 * becomes a pool job with one task per chunk; a task runs the kernel's
 * micro-ops over its chunk in per-thread registers, writing outputs with
 * pwrite and reductions to per-chunk (or per-row, or per-thread integer)
 * slots. After the barrier the main thread folds the reductions in chunk
 * order. Everything the interpreter indexes was checked by the verifier;
 * the checks here are the dynamic ones (sequence of selection ops, scratch
 * written before read, manifest of the files on disk).
 */
#include "vm.h"
#include "hash.h"
#include "io.h"
#include "limits.h"
#include "outdir.h"
#include "pool.h"
#include "refsum.h"
#include "rng.h"
#include "kernels/kernels.h"
#include "kernels/scalar_ops.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HIST_BINS 65536u
#define COPY_BLOCK (1u << 16)     /* elements per block of a converting COPY */

enum { SEL_IDLE, SEL_INITED, SEL_FOUND_HI, SEL_FOUND_LO, SEL_READY };

typedef struct vm_select {
    int phase;
    uint64_t k, n_chunks;
    uint64_t *hist;            /* n_threads x HIST_BINS while counting */
    uint32_t hi, threshold;    /* chosen high bin; threshold key (|v| bits) */
    uint64_t above;            /* elements with key above the current bin */
    uint64_t ties_keep;        /* elements == threshold to keep, in index order */
    uint64_t *ties;            /* per chunk: count, then exclusive prefix */
} vm_select;

typedef struct vm_thread {
    float *regs;               /* n_regs_max x chunk_max */
    uint8_t *io;               /* chunk_max x 8 bytes (conversion buffer) */
    uint64_t *keys;            /* ROWRANK sort buffer, rowrank_cols */
} vm_thread;

typedef struct vm {
    const cr_program *p;
    const cr_vm_options *opt;
    const cr_allocator *alloc;
    const cr_kernels *kern;
    cr_pool *pool;
    unsigned n_threads;
    uint64_t chunk_max, regs_max, rowrank_cols;

    uint8_t **maps;            /* per manifest file (NULL when empty) */
    int *shard_fds;
    double *scal;
    double **rowvec;
    uint8_t **scratch;         /* NULL until written by SSTORE */
    bool *scratch_ready;
    vm_select *sel;
    vm_thread *thr;
    cr_outdir outdir;
    bool outdir_open;
    const cr_io *io;           /* opt->io or the real file system */
    /* set when a tensor holds NaN or Inf: inputs as loaded, outputs as stored */
    atomic_uchar *nonfinite_in, *nonfinite_out;

    /* progress */
    struct timespec t0;
    atomic_uint_fast64_t bytes_done;
    uint64_t bytes_total;
    uint32_t tensors_done;
    cr_vm_phase phase;
    cr_progress_printer printer;
    double last_tick;

    /* first error of a parallel job */
    pthread_mutex_t err_mu;
    cr_error *err;
    cr_status job_status;
} vm;

static double now_s(const vm *m)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - m->t0.tv_sec) + (double)(t.tv_nsec - m->t0.tv_nsec) * 1e-9;
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) ? 0 : ru.ru_maxrss;
}

static void report(vm *m, bool force)
{
    if (m->opt->quiet && !m->opt->progress) return;
    double t = now_s(m);
    if (!force && t - m->last_tick < 0.05) return;
    m->last_tick = t;
    cr_vm_progress pr = {
        .phase = m->phase, .bytes_done = atomic_load(&m->bytes_done), .bytes_total = m->bytes_total,
        .tensors_done = m->tensors_done, .tensors_total = m->p->n_outputs, .elapsed_s = t,
        .peak_rss_kb = m->phase == CR_VM_PHASE_DONE ? peak_rss_kb() : 0,
    };
    if (m->opt->progress) m->opt->progress(m->opt->progress_ud, &pr);
    else cr_progress_printer_update(&m->printer, &pr);
}

static bool interrupted(const vm *m) { return m->opt->interrupt && *m->opt->interrupt; }

/* record the first error of a job; later ones are dropped */
static int job_fail(vm *m, cr_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int job_fail(vm *m, cr_status s, const char *fmt, ...)
{
    pthread_mutex_lock(&m->err_mu);
    if (!m->job_status) {
        m->job_status = s;
        if (m->err) {
            m->err->status = s;
            m->err->sys_errno = 0;
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(m->err->msg, sizeof m->err->msg, fmt, ap);
            va_end(ap);
        }
    }
    pthread_mutex_unlock(&m->err_mu);
    return (int)s;
}

static unsigned dt_size(unsigned t)
{
    switch (t) {
#define X(name, str, size) case CR_DTYPE_##name: return size;
    CR_DTYPE_LIST(X)
#undef X
    }
    return 0;
}

static double round_dt(unsigned dt, double v)
{
    switch (dt) {
    case CR_DTYPE_F32: return (float)v;
    case CR_DTYPE_BF16: return el_round_bf16((float)v);
    case CR_DTYPE_F16: return el_round_f16((float)v);
    default: return v;
    }
}

static const char *S(const vm *m, cr_blob b) { return cr_prog_str(m->p, b); }

static int write_all(const cr_io *io, int fd, const void *buf, uint64_t n, uint64_t off)
{
    const uint8_t *b = buf;
    while (n) {
        size_t part = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t w = io->pwrite(io->ud, fd, b, part, off);
        if (w < 0) { if (errno == EINTR) continue; return errno; }
        if (w == 0) return EIO;
        b += w; n -= (uint64_t)w; off += (uint64_t)w;
    }
    return 0;
}

/* base address of an input view's tensor (offset already applied) */
static const uint8_t *view_base(const vm *m, const cr_prog_input *in)
{
    if (in->kind == CR_INPUT_SCRATCH) return m->scratch[in->file] + in->offset;
    if (in->kind == CR_INPUT_BLOB) return m->p->blobs + in->offset;
    return m->maps[in->file] + in->offset;
}

/* ---- kernels -------------------------------------------------------------- */

typedef struct kjob {
    vm *m;
    const cr_prog_kernel *k;
    const cr_insn *code;
    uint64_t n, n_chunks;
    uint32_t n_rsum;
    uint32_t *rsum_slot;       /* per micro-op: index among the RSUMs */
    double *partials;          /* n_chunks x n_rsum */
    float **gather;            /* per micro-op: the whole domain's values (RSUM_NP, RSSQ_BLAS) */
} kjob;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static inline uint32_t mag_key(float v) { return cr_f32_bits(v) & 0x7fffffffu; }

static void load_view(const vm *m, const cr_prog_input *in, uint64_t base, uint64_t n, float *dst)
{
    unsigned sz = dt_size(in->dtype);
    const uint8_t *src = view_base(m, in);
    if (in->row_stride == in->cols || in->rows <= 1) {
        m->kern->load((cr_dtype)in->dtype, src + base * sz, dst, (size_t)n);
        return;
    }
    uint64_t e = base, end = base + n;
    while (e < end) {
        uint64_t r = e / in->cols, c = e % in->cols;
        uint64_t len = CR_MIN(in->cols - c, end - e);
        m->kern->load((cr_dtype)in->dtype, src + (r * in->row_stride + c) * sz, dst + (e - base), (size_t)len);
        e += len;
    }
}

static bool any_nonfinite(const float *v, size_t n)
{
    unsigned bad = 0;
    for (size_t i = 0; i < n; i++) bad |= (cr_f32_bits(v[i]) & 0x7f800000u) == 0x7f800000u;
    return bad;
}

/* NaN/Inf test on stored bytes of a float dtype (exponent all ones) */
static bool any_nonfinite_raw(cr_dtype t, const uint8_t *b, uint64_t n)
{
    unsigned bad = 0;
    switch (t) {
    case CR_DTYPE_F32:
        for (uint64_t i = 0; i < n; i++) { uint32_t u; memcpy(&u, b + 4 * i, 4); bad |= (u & 0x7f800000u) == 0x7f800000u; }
        break;
    case CR_DTYPE_BF16:
        for (uint64_t i = 0; i < n; i++) { uint16_t u; memcpy(&u, b + 2 * i, 2); bad |= (u & 0x7f80u) == 0x7f80u; }
        break;
    case CR_DTYPE_F16:
        for (uint64_t i = 0; i < n; i++) { uint16_t u; memcpy(&u, b + 2 * i, 2); bad |= (u & 0x7c00u) == 0x7c00u; }
        break;
    case CR_DTYPE_F64:
        for (uint64_t i = 0; i < n; i++) { uint64_t u; memcpy(&u, b + 8 * i, 8); bad |= (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull; }
        break;
    default: break;   /* integers and f8 carry no NaN we report */
    }
    return bad;
}

/* "OUT_DIR/model.safetensors": the name the user will see after the rename */
static void output_path(const vm *m, uint32_t shard, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", m->outdir.final_path ? m->outdir.final_path : m->opt->out_dir,
             S(m, m->p->shards[shard].file_name));
}

static int kernel_chunk(void *ud, uint64_t c, unsigned thread)
{
    kjob *j = ud;
    vm *m = j->m;
    const cr_program *p = m->p;
    const cr_prog_kernel *k = j->k;
    const cr_kernels *K = m->kern;
    if (interrupted(m)) return job_fail(m, CR_ERR_INTERRUPTED, "interrupted");
    vm_thread *t = &m->thr[thread];
    uint64_t base = c * k->chunk;
    size_t n = (size_t)CR_MIN(k->chunk, j->n - base);
    float *R = t->regs;
#define REG(i) (R + (size_t)(i) * k->chunk)
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        const cr_insn *in = &j->code[pc];
        float *d = REG(in->dst);
        switch ((cr_op)in->op) {
        case CR_OP_MOV: case CR_OP_NEG: case CR_OP_ABS: case CR_OP_SIGN: case CR_OP_SQRT:
        case CR_OP_EXP: case CR_OP_LOG: case CR_OP_NOT:
            K->unary((cr_op)in->op, d, REG(in->a), n);
            K->round((cr_dtype)in->dtype, d, n);
            break;
        case CR_OP_ADD: case CR_OP_SUB: case CR_OP_MUL: case CR_OP_DIV: case CR_OP_MIN: case CR_OP_MAX:
        case CR_OP_GT: case CR_OP_GE: case CR_OP_LT: case CR_OP_LE: case CR_OP_EQ: case CR_OP_NE:
        case CR_OP_AND: case CR_OP_OR:
            K->binary((cr_op)in->op, d, REG(in->a), REG(in->b), n);
            K->round((cr_dtype)in->dtype, d, n);
            break;
        case CR_OP_WHERE:
            K->where(d, REG(in->a), REG(in->b), REG(in->c), n);
            K->round((cr_dtype)in->dtype, d, n);
            break;
        case CR_OP_LOAD:
            load_view(m, &p->inputs[in->a], base, n, d);
            if (any_nonfinite(d, n)) atomic_store_explicit(&m->nonfinite_in[in->a], 1, memory_order_relaxed);
            break;
        case CR_OP_SPLAT: {
            float v = (float)m->scal[in->a];
            for (size_t i = 0; i < n; i++) d[i] = v;
            break;
        }
        case CR_OP_ROWB: {
            const double *w = m->rowvec[in->a];
            for (size_t i = 0; i < n;) {
                uint64_t row = (base + i) / k->cols;
                size_t len = (size_t)CR_MIN(k->cols - (base + i) % k->cols, n - i);
                float v = (float)w[row];
                for (size_t e = 0; e < len; e++) d[i + e] = v;
                i += len;
            }
            break;
        }
        case CR_OP_RAND:
            cr_rng_uniform(p->seed, p->streams[in->a].key, base, d, n);
            break;
        case CR_OP_STORE: {
            const cr_prog_output *o = &p->outputs[in->dst];
            unsigned sz = dt_size(o->dtype);
            if (any_nonfinite(REG(in->a), n)) atomic_store_explicit(&m->nonfinite_out[in->dst], 1, memory_order_relaxed);
            K->store((cr_dtype)o->dtype, REG(in->a), t->io, n);
            int e = write_all(m->io, m->shard_fds[o->shard], t->io, (uint64_t)n * sz, o->offset + base * sz);
            if (e) {
                char path[4096];
                output_path(m, o->shard, path, sizeof path);
                return job_fail(m, CR_ERR_IO, "writing %s to %s: %s", S(m, o->name), path, strerror(e));
            }
            atomic_fetch_add(&m->bytes_done, (uint64_t)n * sz);
            break;
        }
        case CR_OP_SSTORE: {
            const cr_prog_scratch *s = &p->scratch[in->dst];
            K->store((cr_dtype)s->dtype, REG(in->a), m->scratch[in->dst] + base * dt_size(s->dtype), n);
            break;
        }
        case CR_OP_RSUM: {
            double lanes[8] = {0};
            K->sum8(REG(in->a), n, lanes);
            j->partials[c * j->n_rsum + j->rsum_slot[pc]] = cr_sum8_combine(lanes);
            break;
        }
        case CR_OP_RSUM_NP: case CR_OP_RSSQ_BLAS: case CR_OP_RSUM_TORCH: case CR_OP_RSSQ_TORCH:
            memcpy(j->gather[pc] + base, REG(in->a), n * sizeof(float));
            break;
        case CR_OP_RSUM_ROW_TORCH: case CR_OP_RSSQ_ROW_TORCH: {
            /* rows are whole inside a chunk; a copy, since the torch sum
             * may work in place */
            double *w = m->rowvec[in->dst];
            float *tmp = (float *)t->io;
            for (size_t i = 0; i < n; i += (size_t)k->cols) {
                uint64_t row = (base + i) / k->cols;
                float v;
                if (in->op == CR_OP_RSSQ_ROW_TORCH) {
                    v = cr_refsum_torch_ssq(REG(in->a) + i, k->cols);
                } else {
                    memcpy(tmp, REG(in->a) + i, (size_t)k->cols * sizeof(float));
                    v = cr_refsum_torch(tmp, k->cols, false);
                }
                w[row] = round_dt(in->dtype, v);
            }
            break;
        }
        case CR_OP_RSUM_ROW: case CR_OP_RMAX_ROW: {
            double *w = m->rowvec[in->dst];
            const float *a = REG(in->a);
            for (size_t i = 0; i < n; i += (size_t)k->cols) {
                uint64_t row = (base + i) / k->cols;
                if (in->op == CR_OP_RSUM_ROW) {
                    double lanes[8] = {0};
                    K->sum8(a + i, (size_t)k->cols, lanes);
                    w[row] = round_dt(in->dtype, cr_sum8_combine(lanes));
                } else {
                    float mx = -INFINITY;
                    for (size_t e = 0; e < k->cols; e++) mx = el_max(a[i + e], mx);
                    w[row] = round_dt(in->dtype, mx);
                }
            }
            break;
        }
        case CR_OP_ROWRANK: {
            const float *a = REG(in->a);
            for (size_t i = 0; i < n; i += (size_t)k->cols) {
                for (uint64_t e = 0; e < k->cols; e++) t->keys[e] = (uint64_t)mag_key(a[i + e]) << 32 | e;
                qsort(t->keys, (size_t)k->cols, sizeof *t->keys, cmp_u64);
                for (uint64_t r = 0; r < k->cols; r++) d[i + (uint32_t)t->keys[r]] = (float)(r + 1);
            }
            break;
        }
        case CR_OP_HIST_HI: case CR_OP_HIST_LO: {
            vm_select *s = &m->sel[in->dst];
            uint64_t *h = s->hist + (size_t)thread * HIST_BINS;
            const float *a = REG(in->a);
            if (in->op == CR_OP_HIST_HI) {
                for (size_t i = 0; i < n; i++) h[mag_key(a[i]) >> 16]++;
            } else if (s->k) {
                for (size_t i = 0; i < n; i++) {
                    uint32_t key = mag_key(a[i]);
                    if (key >> 16 == s->hi) h[key & 0xffffu]++;
                }
            }
            break;
        }
        case CR_OP_TIE_COUNT: {
            vm_select *s = &m->sel[in->dst];
            const float *a = REG(in->a);
            uint64_t cnt = 0;
            if (s->k) for (size_t i = 0; i < n; i++) cnt += mag_key(a[i]) == s->threshold;
            s->ties[c] = cnt;
            break;
        }
        case CR_OP_TOPK_MASK: {
            const vm_select *s = &m->sel[in->b];
            const float *a = REG(in->a);
            if (!s->k) { for (size_t i = 0; i < n; i++) d[i] = 0; break; }
            uint64_t before = s->ties[c];   /* ties in earlier chunks */
            for (size_t i = 0; i < n; i++) {
                uint32_t key = mag_key(a[i]);
                float keep = 0;
                if (key > s->threshold) keep = 1;
                else if (key == s->threshold) keep = before++ < s->ties_keep ? 1.0f : 0.0f;
                d[i] = keep;
            }
            break;
        }
        default:
            return job_fail(m, CR_ERR_RUNTIME, "op %s inside a kernel", cr_op_table[in->op].name);
        }
    }
#undef REG
    if (thread == 0) report(m, false);
    return 0;
}

/* dynamic checks before a kernel runs: selection phases and scratch state */
static cr_status kernel_precheck(vm *m, uint32_t ki, const cr_prog_kernel *k, cr_error *err)
{
    const cr_program *p = m->p;
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        const cr_insn *in = &p->code[k->code_begin + pc];
        int need = -1;
        uint32_t x = 0;
        switch (in->op) {
        case CR_OP_HIST_HI: need = SEL_INITED; x = in->dst; break;
        case CR_OP_HIST_LO: need = SEL_FOUND_HI; x = in->dst; break;
        case CR_OP_TIE_COUNT: need = SEL_FOUND_LO; x = in->dst; break;
        case CR_OP_TOPK_MASK: need = SEL_READY; x = in->b; break;
        case CR_OP_LOAD: {
            const cr_prog_input *v = &p->inputs[in->a];
            if (v->kind != CR_INPUT_SCRATCH) break;
            if (!m->scratch_ready[v->file])
                return cr_fail(err, CR_ERR_RUNTIME, "kernel %u reads scratch %u (%s) before it is written",
                               ki, v->file, S(m, v->name));
            break;
        }
        case CR_OP_SSTORE:
            if (!m->scratch[in->dst]) {
                const cr_prog_scratch *s = &p->scratch[in->dst];
                m->scratch[in->dst] = cr_malloc(m->alloc, (size_t)(s->numel * dt_size(s->dtype)) + 1);
                if (!m->scratch[in->dst]) return cr_fail(err, CR_ERR_NOMEM, "out of memory for scratch %u", in->dst);
            }
            m->scratch_ready[in->dst] = false;
            break;
        default: break;
        }
        if (need >= 0 && m->sel[x].phase != need)
            return cr_fail(err, CR_ERR_RUNTIME, "kernel %u: %s on selection %u out of sequence (see ops.def)",
                           ki, cr_op_table[in->op].name, x);
    }
    return CR_OK;
}

/* reductions that gather the whole domain and sum it in a library's order */
static bool is_gather_op(uint16_t op)
{
    return op == CR_OP_RSUM_NP || op == CR_OP_RSSQ_BLAS || op == CR_OP_RSUM_TORCH || op == CR_OP_RSSQ_TORCH;
}

/* the library-order sum of a gathered domain (vm/refsum.c) */
static float gather_sum(const cr_insn *in, float *x, uint64_t n)
{
    switch ((cr_op)in->op) {
    case CR_OP_RSUM_NP: return cr_refsum_numpy(x, n);
    case CR_OP_RSSQ_BLAS: return cr_refsum_blas_ssq(x, n);
    case CR_OP_RSSQ_TORCH: return cr_refsum_torch_ssq(x, n);
    default: return cr_refsum_torch(x, n, in->dtype == CR_DTYPE_BF16 || in->dtype == CR_DTYPE_F16);
    }
}

static cr_status run_kernel(vm *m, uint32_t ki, cr_error *err)
{
    const cr_program *p = m->p;
    const cr_prog_kernel *k = &p->kernels[ki];
    cr_status s = kernel_precheck(m, ki, k, err);
    if (s) return s;
    kjob j = { .m = m, .k = k, .code = p->code + k->code_begin, .n = k->rows * k->cols };
    j.n_chunks = (j.n + k->chunk - 1) / k->chunk;
    for (uint32_t pc = 0; pc < k->code_len; pc++)
        if (j.code[pc].op == CR_OP_RSUM) j.n_rsum++;
    if (j.n_rsum) {
        j.rsum_slot = cr_calloc(m->alloc, k->code_len, sizeof *j.rsum_slot);
        j.partials = cr_calloc(m->alloc, (size_t)j.n_chunks ? (size_t)j.n_chunks * j.n_rsum : 1, sizeof *j.partials);
        if (!j.rsum_slot || !j.partials) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory for kernel %u partial sums", ki); goto out; }
        uint32_t r = 0;
        for (uint32_t pc = 0; pc < k->code_len; pc++) if (j.code[pc].op == CR_OP_RSUM) j.rsum_slot[pc] = r++;
    }
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        if (!is_gather_op(j.code[pc].op)) continue;
        if (!j.gather) j.gather = cr_calloc(m->alloc, k->code_len, sizeof *j.gather);
        if (j.gather) j.gather[pc] = cr_malloc(m->alloc, (size_t)(j.n ? j.n : 1) * sizeof(float));
        if (!j.gather || !j.gather[pc]) {
            s = cr_fail(err, CR_ERR_NOMEM, "out of memory gathering kernel %u for its sum", ki);
            goto out;
        }
    }
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        const cr_insn *in = &j.code[pc];
        if (in->op == CR_OP_TIE_COUNT) memset(m->sel[in->dst].ties, 0, (size_t)j.n_chunks * sizeof(uint64_t));
    }
    m->job_status = CR_OK;
    m->err = err;
    cr_pool_run(m->pool, j.n_chunks, kernel_chunk, &j);
    if ((s = m->job_status)) goto out;
    /* fold reductions in chunk order: the result is independent of threads */
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        const cr_insn *in = &j.code[pc];
        if (in->op == CR_OP_RSUM) {
            double acc = 0;
            for (uint64_t c = 0; c < j.n_chunks; c++) acc += j.partials[c * j.n_rsum + j.rsum_slot[pc]];
            m->scal[in->dst] = round_dt(in->dtype, acc);
        } else if (is_gather_op(in->op)) {
            m->scal[in->dst] = round_dt(in->dtype, gather_sum(in, j.gather[pc], j.n));
        } else if (in->op == CR_OP_SSTORE) {
            m->scratch_ready[in->dst] = true;
        }
    }
out:
    for (uint32_t pc = 0; j.gather && pc < k->code_len; pc++) cr_free(m->alloc, j.gather[pc]);
    cr_free(m->alloc, j.gather);
    cr_free(m->alloc, j.rsum_slot);
    cr_free(m->alloc, j.partials);
    return s;
}

/* ---- top-level ops ---------------------------------------------------------- */

static cr_status run_copy(vm *m, const cr_insn *ins, cr_error *err)
{
    const cr_program *p = m->p;
    const cr_prog_output *o = &p->outputs[ins->dst];
    const cr_prog_input *in = &p->inputs[ins->a];
    if (in->kind == CR_INPUT_SCRATCH && !m->scratch_ready[in->file])
        return cr_fail(err, CR_ERR_RUNTIME, "copy to %s reads scratch %u before it is written", S(m, o->name), in->file);
    int fd = m->shard_fds[o->shard];
    unsigned isz = dt_size(in->dtype), osz = dt_size(o->dtype);
    const uint8_t *src = view_base(m, in);
    uint64_t out_off = o->offset;
    for (uint64_t r = 0; r < in->rows; r++) {
        const uint8_t *row = src + r * in->row_stride * isz;
        for (uint64_t c = 0; c < in->cols;) {
            if (interrupted(m)) return cr_fail(err, CR_ERR_INTERRUPTED, "interrupted");
            uint64_t len = CR_MIN(in->cols - c, in->dtype == o->dtype ? (uint64_t)1 << 26 : (uint64_t)COPY_BLOCK);
            if (any_nonfinite_raw((cr_dtype)in->dtype, row + c * isz, len)) {
                atomic_store_explicit(&m->nonfinite_in[ins->a], 1, memory_order_relaxed);
                atomic_store_explicit(&m->nonfinite_out[ins->dst], 1, memory_order_relaxed);
            }
            int e;
            if (in->dtype == o->dtype) {
                e = write_all(m->io, fd, row + c * isz, len * isz, out_off);
            } else {
                float *tmp = m->thr[0].regs;
                m->kern->load((cr_dtype)in->dtype, row + c * isz, tmp, (size_t)len);
                m->kern->store((cr_dtype)o->dtype, tmp, m->thr[0].io, (size_t)len);
                e = write_all(m->io, fd, m->thr[0].io, len * osz, out_off);
            }
            if (e) {
                char path[4096];
                output_path(m, o->shard, path, sizeof path);
                return cr_fail(err, CR_ERR_IO, "writing %s to %s: %s", S(m, o->name), path, strerror(e));
            }
            out_off += len * osz;
            atomic_fetch_add(&m->bytes_done, len * osz);
            c += len;
            report(m, false);
        }
    }
    return CR_OK;
}

static void advise(vm *m, const cr_prog_input *in, int advice)
{
    if (in->kind != CR_INPUT_FILE || !in->nbytes || !m->maps[in->file]) return;
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)(m->maps[in->file] + in->offset), e = a + in->nbytes;
    a &= ~(uintptr_t)(pg - 1);
    if (advice == MADV_DONTNEED) {
        /* only whole pages inside the tensor: a neighbour may still be needed */
        uintptr_t a2 = ((uintptr_t)(m->maps[in->file] + in->offset) + (uintptr_t)pg - 1) & ~(uintptr_t)(pg - 1);
        e &= ~(uintptr_t)(pg - 1);
        if (e <= a2) return;
        a = a2;
    }
    madvise((void *)a, e - a, advice);
}

static cr_status sel_init(vm *m, uint32_t x, double kv, cr_error *err)
{
    vm_select *s = &m->sel[x];
    const cr_prog_select *ps = &m->p->selects[x];
    if (!(kv >= 0) || kv != floor(kv) || kv > (double)ps->n)
        return cr_fail(err, CR_ERR_RUNTIME, "selection %u: k = %g is not a whole number in 0..%llu", x, kv,
                       (unsigned long long)ps->n);
    s->k = (uint64_t)kv;
    s->n_chunks = (ps->n + ps->chunk - 1) / ps->chunk;
    if (!s->hist) s->hist = cr_malloc(m->alloc, (size_t)m->n_threads * HIST_BINS * sizeof *s->hist);
    if (!s->ties) s->ties = cr_calloc(m->alloc, s->n_chunks ? (size_t)s->n_chunks : 1, sizeof *s->ties);
    if (!s->hist || !s->ties) return cr_fail(err, CR_ERR_NOMEM, "out of memory for selection %u", x);
    memset(s->hist, 0, (size_t)m->n_threads * HIST_BINS * sizeof *s->hist);
    s->phase = SEL_INITED;
    return CR_OK;
}

/* find the bin (from the top) where the running count reaches k */
static void sel_find(vm *m, vm_select *s, bool hi)
{
    uint64_t cum = hi ? 0 : s->above;
    for (uint32_t b = HIST_BINS; b-- > 0;) {
        uint64_t cnt = 0;
        for (unsigned t = 0; t < m->n_threads; t++) cnt += s->hist[(size_t)t * HIST_BINS + b];
        if (cum + cnt >= s->k) {
            if (hi) { s->hi = b; s->above = cum; }
            else { s->threshold = s->hi << 16 | b; s->ties_keep = s->k - cum; }
            break;
        }
        cum += cnt;
    }
    memset(s->hist, 0, (size_t)m->n_threads * HIST_BINS * sizeof *s->hist);
}

static cr_status run_main(vm *m, cr_error *err)
{
    const cr_program *p = m->p;
    double *S_ = m->scal;
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        const cr_insn *in = &p->main[pc];
        if (interrupted(m)) return cr_fail(err, CR_ERR_INTERRUPTED, "interrupted");
        double a = 0, b = 0, r = 0;
        const char *kinds = cr_op_table[in->op].kinds;
        if (kinds[1] == 'v' || kinds[1] == 's') a = S_[in->a];
        if (kinds[2] == 'v' || kinds[2] == 's') b = S_[in->b];
        cr_status st = CR_OK;
        switch ((cr_op)in->op) {
        case CR_OP_MOV: r = a; break;
        case CR_OP_ADD: r = a + b; break;
        case CR_OP_SUB: r = a - b; break;
        case CR_OP_MUL: r = a * b; break;
        case CR_OP_DIV: r = a / b; break;
        case CR_OP_NEG: r = -a; break;
        case CR_OP_ABS: r = fabs(a); break;
        case CR_OP_SIGN: r = a != a ? a : a > 0 ? 1 : a < 0 ? -1 : 0; break;
        case CR_OP_SQRT: r = sqrt(a); break;
        case CR_OP_EXP: r = exp(a); break;
        case CR_OP_LOG: r = log(a); break;
        case CR_OP_MIN: r = a != a ? a : b != b ? b : a < b ? a : b; break;
        case CR_OP_MAX: r = a != a ? a : b != b ? b : a > b ? a : b; break;
        case CR_OP_GT: r = a > b; break;
        case CR_OP_GE: r = a >= b; break;
        case CR_OP_LT: r = a < b; break;
        case CR_OP_LE: r = a <= b; break;
        case CR_OP_EQ: r = a == b; break;
        case CR_OP_NE: r = a != b; break;
        case CR_OP_AND: r = a != 0 && b != 0; break;
        case CR_OP_OR: r = a != 0 || b != 0; break;
        case CR_OP_NOT: r = a == 0; break;
        case CR_OP_WHERE: r = a != 0 ? b : S_[in->c]; break;
        case CR_OP_ACOS: r = acos(a); break;
        case CR_OP_SIN: r = sin(a); break;
        case CR_OP_COS: r = cos(a); break;
        case CR_OP_TRUNC: r = trunc(a); break;
        case CR_OP_CHECK:
            if (a == 0) return cr_fail(err, CR_ERR_RUNTIME, "%s", S(m, p->messages[in->c]));
            continue;
        case CR_OP_SEL_INIT: st = sel_init(m, in->dst, a, err); break;
        case CR_OP_SEL_FIND_HI: case CR_OP_SEL_FIND_LO: case CR_OP_SEL_PREFIX: {
            vm_select *s = &m->sel[in->dst];
            int need = in->op == CR_OP_SEL_FIND_HI ? SEL_INITED : in->op == CR_OP_SEL_FIND_LO ? SEL_FOUND_HI : SEL_FOUND_LO;
            if (s->phase != need)
                return cr_fail(err, CR_ERR_RUNTIME, "main %u: %s on selection %u out of sequence", pc,
                               cr_op_table[in->op].name, in->dst);
            if (in->op == CR_OP_SEL_PREFIX) {
                uint64_t acc = 0;
                for (uint64_t c = 0; c < s->n_chunks; c++) { uint64_t t = s->ties[c]; s->ties[c] = acc; acc += t; }
            } else if (s->k) {
                sel_find(m, s, in->op == CR_OP_SEL_FIND_HI);
            }
            if (in->op == CR_OP_SEL_FIND_LO) {
                /* counting is over: a program may hold many selections,
                 * but only the one being counted keeps its histograms */
                cr_free(m->alloc, s->hist);
                s->hist = NULL;
            }
            s->phase = need + 1;
            continue;
        }
        case CR_OP_SEL_VALUE: {
            const vm_select *s = &m->sel[in->a];
            if (s->phase < SEL_FOUND_LO)
                return cr_fail(err, CR_ERR_RUNTIME, "main %u: sel_value before sel_find_lo on selection %u", pc, in->a);
            S_[in->dst] = s->k ? cr_bits_f32(s->threshold) : 0.0;
            continue;
        }
        case CR_OP_KERNEL: st = run_kernel(m, in->a, err); break;
        case CR_OP_COPY: st = run_copy(m, in, err); break;
        case CR_OP_PREFETCH: advise(m, &p->inputs[in->a], MADV_WILLNEED); continue;
        case CR_OP_RELEASE: advise(m, &p->inputs[in->a], MADV_DONTNEED); continue;
        case CR_OP_DONE: m->tensors_done++; report(m, false); continue;
        case CR_OP_SFREE:
            cr_free(m->alloc, m->scratch[in->dst]);
            m->scratch[in->dst] = NULL;
            m->scratch_ready[in->dst] = false;
            continue;
        default:
            return cr_fail(err, CR_ERR_RUNTIME, "main %u: op %s not valid at top level", pc, cr_op_table[in->op].name);
        }
        if (st) return st;
        if (cr_op_table[in->op].flags & CR_OPF_ELEM || in->op == CR_OP_ACOS || in->op == CR_OP_SIN ||
            in->op == CR_OP_COS || in->op == CR_OP_TRUNC)
            S_[in->dst] = round_dt(in->dtype, r);
    }
    return CR_OK;
}

/* ---- setup: manifest, maps, buffers, output files ------------------------------ */

typedef struct hash_job { vm *m; uint64_t *got; } hash_job;

static int hash_file(void *ud, uint64_t i, unsigned thread)
{
    hash_job *h = ud;
    vm *m = h->m;
    (void)thread;
    const cr_prog_file *f = &m->p->files[i];
    if (!f->hash) return 0;   /* not recorded: size check only */
    cr_xxh64_state st;
    cr_xxh64_init(&st, 0);
    const uint64_t block = 16u << 20;
    for (uint64_t off = 0; off < f->size; off += block) {
        if (interrupted(m)) return job_fail(m, CR_ERR_INTERRUPTED, "interrupted");
        uint64_t len = CR_MIN(block, f->size - off);
        cr_xxh64_update(&st, m->maps[i] + off, (size_t)len);
        /* drop hashed pages: hashing a 100 GB model must not fill RSS */
        madvise(m->maps[i] + off, (size_t)len, MADV_DONTNEED);
        atomic_fetch_add(&m->bytes_done, len);
        if (thread == 0) report(m, false);
    }
    h->got[i] = cr_xxh64_final(&st);
    return 0;
}

static cr_status open_inputs(vm *m, cr_error *err)
{
    const cr_program *p = m->p;
    uint64_t to_hash = 0;
    bool hashing = !m->opt->skip_hash && !(p->flags & CR_PROG_SKIP_HASH);
    for (uint32_t i = 0; i < p->n_files; i++) {
        const char *path = S(m, p->files[i].path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return cr_fail_errno(err, errno, "input %s", path);
        struct stat st;
        if (fstat(fd, &st)) { int e = errno; close(fd); return cr_fail_errno(err, e, "input %s", path); }
        if ((uint64_t)st.st_size != p->files[i].size) {
            close(fd);
            return cr_fail(err, CR_ERR_RUNTIME, "input %s is %llu bytes but the program was compiled for %llu bytes "
                           "(the file changed or is truncated)", path, (unsigned long long)st.st_size,
                           (unsigned long long)p->files[i].size);
        }
        if (st.st_size > 0) {
            void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (map == MAP_FAILED) { int e = errno; close(fd); return cr_fail_errno(err, e, "cannot map %s", path); }
            m->maps[i] = map;
        }
        close(fd);   /* the mapping keeps the file */
        if (hashing && p->files[i].hash) to_hash += p->files[i].size;
    }
    if (!to_hash) return CR_OK;
    uint64_t *got = cr_calloc(m->alloc, p->n_files, sizeof *got);
    if (!got) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    m->bytes_total = to_hash;
    m->job_status = CR_OK;
    m->err = err;
    hash_job h = { m, got };
    /* files without a recorded hash are skipped inside the task by size 0 work */
    cr_pool_run(m->pool, p->n_files, hash_file, &h);
    cr_status s = m->job_status;
    for (uint32_t i = 0; !s && i < p->n_files; i++) {
        if (!p->files[i].hash || got[i] == p->files[i].hash) continue;
        s = cr_fail(err, CR_ERR_RUNTIME, "input %s has content hash %016llx but the program was compiled for %016llx "
                    "(the file changed; --skip-hash checks sizes only)", S(m, p->files[i].path),
                    (unsigned long long)got[i], (unsigned long long)p->files[i].hash);
    }
    cr_free(m->alloc, got);
    atomic_store(&m->bytes_done, 0);
    return s;
}

/* working memory the run needs besides the mapped inputs */
static uint64_t working_memory(const vm *m, unsigned threads)
{
    const cr_program *p = m->p;
    uint64_t per_thread = m->regs_max * m->chunk_max * 4 + m->chunk_max * 8 + m->rowrank_cols * 8;
    uint64_t total = per_thread * threads + (uint64_t)p->n_scalars * 8;
    for (uint32_t i = 0; i < p->n_rowvecs; i++) total += p->rowvecs[i].len * 8;
    for (uint32_t i = 0; i < p->n_scratch; i++) total += p->scratch[i].numel * dt_size(p->scratch[i].dtype);
    if (p->n_selects) total += (uint64_t)threads * HIST_BINS * 8;   /* one selection counting at a time */
    return total;
}

static cr_status setup(vm *m, cr_error *err)
{
    const cr_program *p = m->p;
    const cr_allocator *A = m->alloc;
    /* sizes of per-thread buffers: the largest kernel decides */
    m->chunk_max = COPY_BLOCK;
    m->regs_max = 1;
    for (uint32_t i = 0; i < p->n_kernels; i++) {
        const cr_prog_kernel *k = &p->kernels[i];
        uint64_t chunk = CR_MIN(k->chunk, CR_MAX(k->rows * k->cols, 1));
        m->chunk_max = CR_MAX(m->chunk_max, k->chunk);
        m->regs_max = CR_MAX(m->regs_max, k->n_regs);
        (void)chunk;
        for (uint32_t pc = 0; pc < k->code_len; pc++)
            if (p->code[k->code_begin + pc].op == CR_OP_ROWRANK) m->rowrank_cols = CR_MAX(m->rowrank_cols, k->cols);
    }
    unsigned threads = m->opt->threads;
    if (!threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 1;
    }
    if (threads > CR_LIMIT_THREADS) threads = CR_LIMIT_THREADS;
    if (m->opt->max_memory) {
        while (threads > 1 && working_memory(m, threads) > m->opt->max_memory) threads--;
        if (working_memory(m, threads) > m->opt->max_memory)
            return cr_fail(err, CR_ERR_LIMIT, "the program needs %llu bytes of working memory with one thread; "
                           "--max-memory allows %llu", (unsigned long long)working_memory(m, 1),
                           (unsigned long long)m->opt->max_memory);
    }
    m->n_threads = threads;
    cr_status s = cr_pool_init(A, threads, &m->pool, err);
    if (s) return s;
    m->thr = cr_calloc(A, threads, sizeof *m->thr);
    if (!m->thr) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (unsigned t = 0; t < threads; t++) {
        m->thr[t].regs = cr_malloc(A, (size_t)(m->regs_max * m->chunk_max * 4));
        m->thr[t].io = cr_malloc(A, (size_t)(m->chunk_max * 8));
        m->thr[t].keys = m->rowrank_cols ? cr_malloc(A, (size_t)(m->rowrank_cols * 8)) : NULL;
        if (!m->thr[t].regs || !m->thr[t].io || (m->rowrank_cols && !m->thr[t].keys))
            return cr_fail(err, CR_ERR_NOMEM, "out of memory for thread buffers (%llu bytes each)",
                           (unsigned long long)(m->regs_max * m->chunk_max * 4));
    }
    m->maps = cr_calloc(A, p->n_files ? p->n_files : 1, sizeof *m->maps);
    m->scal = cr_calloc(A, p->n_scalars ? p->n_scalars : 1, sizeof *m->scal);
    m->rowvec = cr_calloc(A, p->n_rowvecs ? p->n_rowvecs : 1, sizeof *m->rowvec);
    m->scratch = cr_calloc(A, p->n_scratch ? p->n_scratch : 1, sizeof *m->scratch);
    m->scratch_ready = cr_calloc(A, p->n_scratch ? p->n_scratch : 1, sizeof *m->scratch_ready);
    m->sel = cr_calloc(A, p->n_selects ? p->n_selects : 1, sizeof *m->sel);
    m->nonfinite_in = cr_calloc(A, p->n_inputs ? p->n_inputs : 1, sizeof *m->nonfinite_in);
    m->nonfinite_out = cr_calloc(A, p->n_outputs ? p->n_outputs : 1, sizeof *m->nonfinite_out);
    if (!m->nonfinite_in || !m->nonfinite_out) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    m->shard_fds = cr_malloc(A, (p->n_shards ? p->n_shards : 1) * sizeof *m->shard_fds);
    if (!m->maps || !m->scal || !m->rowvec || !m->scratch || !m->scratch_ready || !m->sel || !m->shard_fds)
        return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < p->n_shards; i++) m->shard_fds[i] = -1;
    if (p->n_scalars) memcpy(m->scal, p->scalar_init, (size_t)p->n_scalars * sizeof *m->scal);
    for (uint32_t i = 0; i < p->n_rowvecs; i++) {
        m->rowvec[i] = cr_calloc(A, p->rowvecs[i].len ? (size_t)p->rowvecs[i].len : 1, sizeof(double));
        if (!m->rowvec[i]) return cr_fail(err, CR_ERR_NOMEM, "out of memory for row vector %u", i);
    }
    return CR_OK;
}

static cr_status create_shards(vm *m, cr_error *err)
{
    const cr_program *p = m->p;
    for (uint32_t i = 0; i < p->n_shards; i++) {
        const cr_prog_shard *sh = &p->shards[i];
        char *path = cr_outdir_path(&m->outdir, S(m, sh->file_name));
        if (!path) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
        int fd = m->io->open(m->io->ud, path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0644);
        cr_status s = CR_OK;
        if (fd < 0) s = cr_fail_errno(err, errno, "cannot create %s", path);
        else {
            m->shard_fds[i] = fd;
            int e = write_all(m->io, fd, p->blobs + sh->header.off, sh->header.len, 0);
            if (!e && m->io->ftruncate(m->io->ud, fd, sh->file_size)) e = errno;
            if (e) s = cr_fail_errno(err, e, "cannot write %s", path);
        }
        cr_free(m->alloc, path);
        if (s) return s;
    }
    return CR_OK;
}

static cr_status write_aux(vm *m, cr_error *err)
{
    const cr_program *p = m->p;
    for (uint32_t i = 0; i < p->n_aux; i++) {
        const cr_prog_aux *x = &p->aux[i];
        char *path = cr_outdir_path(&m->outdir, S(m, x->dest));
        if (!path) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
        const uint8_t *data;
        uint64_t len;
        if (x->kind == CR_AUX_WRITE) { data = p->blobs + x->content.off; len = x->content.len; }
        else { data = m->maps[x->src_file]; len = p->files[x->src_file].size; }
        cr_status s = CR_OK;
        int fd = m->io->open(m->io->ud, path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0) s = cr_fail_errno(err, errno, "cannot create %s", path);
        else {
            int e = len ? write_all(m->io, fd, data, len, 0) : 0;
            if (!e && m->io->fsync(m->io->ud, fd)) e = errno;
            if (m->io->close(m->io->ud, fd) && !e) e = errno;
            if (e) s = cr_fail_errno(err, e, "cannot write %s", path);
        }
        cr_free(m->alloc, path);
        if (s) return s;
    }
    return CR_OK;
}

static cr_status finish_shards(vm *m, cr_error *err)
{
    for (uint32_t i = 0; i < m->p->n_shards; i++) {
        int fd = m->shard_fds[i];
        m->shard_fds[i] = -1;
        int e = m->io->fsync(m->io->ud, fd) ? errno : 0;
        if (m->io->close(m->io->ud, fd) && !e) e = errno;
        if (e) return cr_fail_errno(err, e, "cannot write shard %s", S(m, m->p->shards[i].file_name));
    }
    return CR_OK;
}

static void teardown(vm *m)
{
    const cr_program *p = m->p;
    const cr_allocator *A = m->alloc;
    cr_pool_free(m->pool);
    if (m->thr) for (unsigned t = 0; t < m->n_threads; t++) {
        cr_free(A, m->thr[t].regs); cr_free(A, m->thr[t].io); cr_free(A, m->thr[t].keys);
    }
    cr_free(A, m->thr);
    if (m->maps) for (uint32_t i = 0; i < p->n_files; i++)
        if (m->maps[i]) munmap(m->maps[i], (size_t)p->files[i].size);
    cr_free(A, m->maps);
    if (m->shard_fds) for (uint32_t i = 0; i < p->n_shards; i++) if (m->shard_fds[i] >= 0) close(m->shard_fds[i]);
    cr_free(A, m->shard_fds);
    cr_free(A, m->scal);
    if (m->rowvec) for (uint32_t i = 0; i < p->n_rowvecs; i++) cr_free(A, m->rowvec[i]);
    cr_free(A, m->rowvec);
    if (m->scratch) for (uint32_t i = 0; i < p->n_scratch; i++) cr_free(A, m->scratch[i]);
    cr_free(A, m->scratch);
    cr_free(A, m->scratch_ready);
    if (m->sel) for (uint32_t i = 0; i < p->n_selects; i++) { cr_free(A, m->sel[i].hist); cr_free(A, m->sel[i].ties); }
    cr_free(A, m->sel);
    cr_free(A, (void *)m->nonfinite_in);
    cr_free(A, (void *)m->nonfinite_out);
    if (m->outdir_open) cr_outdir_free(&m->outdir);   /* removes the temp dir unless committed */
    pthread_mutex_destroy(&m->err_mu);
}

static void warn(const vm *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(const vm *m, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (m->opt->warn) m->opt->warn(m->opt->warn_ud, msg);
    else fprintf(stderr, "crucible: warning: %s\n", msg);
}

/* NaN/Inf: name every input tensor that holds some, and every output that
 * does; say when the merge produced them from finite inputs. */
static void warn_nonfinite(const vm *m)
{
    const cr_program *p = m->p;
    bool any_in = false;
    for (uint32_t i = 0; i < p->n_inputs; i++) {
        if (!atomic_load(&m->nonfinite_in[i])) continue;
        const cr_prog_input *v = &p->inputs[i];
        bool seen = false;   /* several views of one tensor: report it once */
        for (uint32_t j = 0; j < i && !seen; j++)
            seen = atomic_load(&m->nonfinite_in[j]) && p->inputs[j].kind == v->kind && p->inputs[j].file == v->file &&
                   p->inputs[j].offset == v->offset;
        any_in = true;
        if (seen) continue;
        if (v->kind == CR_INPUT_FILE)
            warn(m, "input tensor %s in %s contains NaN or Inf", S(m, v->name), S(m, p->files[v->file].path));
    }
    for (uint32_t i = 0; i < p->n_outputs; i++)
        if (atomic_load(&m->nonfinite_out[i]))
            warn(m, "output tensor %s contains NaN or Inf%s", S(m, p->outputs[i].name),
                 any_in ? "" : " (the inputs have none: the merge produced them)");
}

void cr_vm_options_init(cr_vm_options *opt) { memset(opt, 0, sizeof *opt); }

cr_status cr_vm_run(const cr_program *p, const cr_vm_options *opt, cr_error *err)
{
    if (!opt->out_dir) return cr_fail(err, CR_ERR_ARG, "no output directory given");
    vm m_, *m = &m_;
    memset(m, 0, sizeof *m);
    m->p = p;
    m->opt = opt;
    m->alloc = opt->alloc ? opt->alloc : p->alloc;
    m->io = opt->io ? opt->io : cr_posix_io();
    pthread_mutex_init(&m->err_mu, NULL);
    clock_gettime(CLOCK_MONOTONIC, &m->t0);
    atomic_init(&m->bytes_done, 0);
    m->last_tick = -1;
    cr_progress_printer_init(&m->printer, opt->progress_file);

    cr_status s = cr_kernels_pick(opt->isa, &m->kern, err);
    if (!s) s = setup(m, err);
    m->phase = CR_VM_PHASE_CHECK;
    if (!s) s = open_inputs(m, err);
    uint64_t hashed = atomic_load(&m->bytes_done);
    if (!s) {
        s = cr_outdir_begin_io(m->alloc, m->io, opt->out_dir, opt->force, &m->outdir, err);
        m->outdir_open = !s;
    }
    if (!s) s = create_shards(m, err);
    if (!s) {
        m->phase = CR_VM_PHASE_RUN;
        atomic_store(&m->bytes_done, 0);
        m->bytes_total = 0;
        for (uint32_t i = 0; i < p->n_outputs; i++) m->bytes_total += p->outputs[i].nbytes;
        report(m, true);
        s = run_main(m, err);
    }
    if (!s) { m->phase = CR_VM_PHASE_FINISH; s = write_aux(m, err); }
    if (!s) s = finish_shards(m, err);
    if (!s && interrupted(m)) s = cr_fail(err, CR_ERR_INTERRUPTED, "interrupted");
    if (!s) s = cr_outdir_commit(&m->outdir, err);
    if (!s) {
        m->phase = CR_VM_PHASE_DONE;
        warn_nonfinite(m);
        report(m, true);
        if (opt->stats) {
            opt->stats->elapsed_s = now_s(m);
            opt->stats->bytes_written = atomic_load(&m->bytes_done);
            opt->stats->bytes_hashed = hashed;
            opt->stats->peak_rss_kb = peak_rss_kb();
            opt->stats->threads = m->n_threads;
            opt->stats->isa = m->kern->name;
        }
    }
    teardown(m);
    return s;
}
