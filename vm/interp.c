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
#include "inputguard.h"
#include "io.h"
#include "limits.h"
#include "memplan.h"
#include "outdir.h"
#include "outguard.h"
#include "outhash.h"
#include "pool.h"
#include "refsum.h"
#include "scalar.h"
#include "torchsort.h"
#include "writeback.h"
#include "npmath.h"
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
    uint64_t ties_total;       /* elements == threshold */
    uint64_t *ties;            /* per chunk: count, then exclusive prefix */
    /* torch tie order (TORCH_DESC/ASC): one word per element of the whole
     * domain while gathering (its key, or a tie's index: torchsort.h), then
     * one bit per element: a kept tie */
    int torch_order;           /* 0, CR_OP_TORCH_DESC or CR_OP_TORCH_ASC */
    uint32_t *kv;
    bool partitioned;          /* kv is in torch's order up to k */
    /* the kernel whose TORCH_DESC/ASC gathers this selection, and whether
     * memplan runs it one gather at a time (serial); `early`: the gather
     * was filled by the HIST_LO pass instead (gather_early) */
    uint32_t torch_kernel;
    bool torch_whole, early;   /* torch_whole: that kernel is neither serial nor streamed */
    uint64_t *tiebits;
    uint32_t *lowor;           /* per thread: OR of the low 16 key bits seen by HIST_HI */
    /* every key in the chosen high bin is hi<<16 (values that are bf16, or
     * rounded to it): the threshold is known after SEL_FIND_HI, so HIST_LO
     * counts the ties per chunk instead, and TIE_COUNT has nothing to do */
    bool direct;
} vm_select;

typedef struct vm_thread {
    float *regs;               /* n_regs_max x chunk_max */
    uint8_t *io;               /* chunk_max x 8 bytes (conversion buffer) */
    uint64_t *keys;            /* ROWRANK sort buffer, rowrank_cols */
    double *lanes;             /* rsum_max x 8: RSUM lanes carried over blocks */
    uint64_t *carry;           /* code_max: per micro-op state carried over blocks */
} vm_thread;

typedef struct vm {
    const cr_program *p;
    const cr_vm_options *opt;
    const cr_allocator *alloc;
    const cr_kernels *kern;
    cr_pool *pool;
    unsigned n_threads;
    cr_memplan mem;            /* thread count and streamed steps (memplan.h) */
    uint64_t chunk_max, regs_max, rowrank_cols;
    uint64_t rsum_max, code_max, store_max;   /* per kernel: RSUMs, micro-ops, STOREs */

    uint8_t **maps;            /* per manifest file (NULL when empty) */
    /* per manifest file, for the files opened so far (n_opened): identity
     * at open, re-checked before the commit, and the mapping published to
     * opt->guard (inputguard.h) */
    cr_file_id *ids;
    cr_input_region *regions;
    uint32_t n_opened;
    int *shard_fds;
    uint64_t *shard_hash;      /* XXH64 of each finished shard (outhash.h) */
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
    /* per input: a finished kernel has checked all of it for NaN/Inf, so
     * the later passes over it (a TIES merge reads each input four times)
     * need not */
    bool *in_checked;

    /* progress */
    struct timespec t0;
    atomic_uint_fast64_t bytes_done;
    uint64_t written_back;     /* bytes_done at the last start_writeback */
    cr_writeback *writeback;   /* NULL: no write-back hints */
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

/* Polled between chunks: an interrupt, or a read past the end of an input
 * that shrank (opt->guard). The latter's message is replaced by
 * check_inputs' naming the file. */
static bool input_faulted(const vm *m) { return m->opt->guard && cr_input_guard_faulted(m->opt->guard); }
static bool stopping(const vm *m) { return interrupted(m) || input_faulted(m); }
static cr_status stop_status(const vm *m) { return input_faulted(m) ? CR_ERR_RUNTIME : CR_ERR_INTERRUPTED; }
static const char *stop_msg(const vm *m) { return input_faulted(m) ? "an input changed while it was being read" : "interrupted"; }

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

/* an RSUM_TORCH whose chunks hold whole cascade blocks: per-block partials
 * and the tail instead of a copy of the domain (refsum.h) */
typedef struct ktsum {
    cr_torch_sum_plan plan;
    float *partials, *tail;
} ktsum;

typedef struct kjob {
    vm *m;
    const cr_prog_kernel *k;
    const cr_insn *code;
    uint64_t n, n_chunks;
    uint32_t n_rsum, n_store;
    uint32_t *rsum_slot;       /* per micro-op: index among the RSUMs */
    uint32_t *store_slot;      /* per micro-op: index among the STOREs */
    uint64_t block;            /* elements per block (cr_kernel_block) */
    size_t stage;              /* bytes of one STORE's staging area in vm_thread.io */
    double *partials;          /* n_chunks x n_rsum */
    float **gather;            /* per micro-op: the whole domain's values (RSUM_TORCH off its blocks) */
    /* RSUM_NP, RSSQ_BLAS, RSSQ_TORCH and the *_COL sums: in element order
     * (refsum.h). A chunk copies its values to its thread's buffer; once
     * chunk c - 1 has fed its stream (j->turn == c), chunk c feeds its own. */
    uint32_t n_ord;
    uint32_t *ord_slot;        /* per micro-op: index among them */
    cr_refsum_stream *ord;     /* n_ord (the scalar sums) */
    cr_colsum *col;            /* n_ord (the *_COL sums: state != NULL) */
    float *ordbuf;             /* threads x n_ord x chunk */
    uint64_t turn;             /* the chunk whose turn it is to feed */
    bool sync;                 /* mu and cv are initialised */
    ktsum *tsum;               /* per micro-op: RSUM_TORCH summed in pieces (else gathered) */
    /* streaming (memplan.h): chunks run at most `ahead` past the first
     * unfinished one, and the pages behind it are dropped every `step` */
    bool stream;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint8_t *done;             /* per chunk */
    uint64_t prefix;           /* chunks [0, prefix) are finished */
    uint64_t dropped;          /* pages before chunk `dropped` are gone */
    uint64_t ahead, step;
    uint32_t *views;           /* distinct file views the kernel loads */
    uint32_t n_views;
} kjob;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static inline uint32_t mag_key(float v) { return cr_f32_bits(v) & 0x7fffffffu; }

/* elements base.. of a torch tie-order gather: each one's key, a tie's index */
static void gather_words(uint32_t *kv, uint32_t T, const float *a, uint64_t base, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t key = cr_torchsort_key(a[i]);
        kv[base + i] = key == T ? CR_TORCHSORT_TIE | (uint32_t)(base + i) : key;
    }
}

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

/* acos/sin/cos over registers: correctly rounded to f32 (f64 libm). The
 * operand is a per-row value broadcast along the row, so a run of equal
 * bits reuses the previous result: one libm call per row, not per element. */
static void kernel_trig(cr_op op, float *d, const float *a, size_t n)
{
    uint32_t prev = 0;
    float prev_r = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &a[i], sizeof bits);
        if (i == 0 || bits != prev) {
            double x = a[i];
            prev_r = (float)(op == CR_OP_ACOS ? acos(x) : op == CR_OP_SIN ? sin(x) : cos(x));
            prev = bits;
        }
        d[i] = prev_r;
    }
}

/* how many of a[0..n) have magnitude key T; 32-bit partial counts so the
 * loop vectorises at full width */
static uint64_t count_key(const float *a, size_t n, uint32_t T)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n;) {
        size_t len = CR_MIN(n - i, (size_t)1 << 30);
        uint32_t cnt = 0;
        for (size_t e = 0; e < len; e++) cnt += mag_key(a[i + e]) == T;
        total += cnt;
        i += len;
    }
    return total;
}

/* TOPK_MASK over one block: d = 1 for keys above the threshold, and for
 * keys equal to it while the running tie rank *before is below ties_keep.
 * When the block's ties are all kept or all dropped (nearly always) the
 * loop has no branch and no carried state, so it vectorises. */
static void mask_above(uint32_t T, float tie, const float *a, float *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t key = mag_key(a[i]);
        d[i] = key > T ? 1.0f : key == T ? tie : 0.0f;
    }
}

/* The same in torch's tie order: the kept ties are marked in s->tiebits.
 * The vector loop drops every tie, then the few kept ones are set (a tie
 * is rare, so that branch is predicted). */
static void topk_mask_tiebits(const vm_select *s, const float *a, float *d, size_t n, uint64_t base)
{
    const uint32_t T = s->threshold;
    mask_above(T, 0.0f, a, d, n);
    for (size_t i = 0; i < n; i++) {
        if (mag_key(a[i]) != T) continue;
        uint64_t e = base + i;
        d[i] = (float)(s->tiebits[e >> 6] >> (e & 63) & 1);
    }
}

static void topk_mask(const vm_select *s, const float *a, float *d, size_t n, uint64_t *before)
{
    const uint32_t T = s->threshold;
    uint64_t eq = count_key(a, n, T);
    if (*before >= s->ties_keep || *before + eq <= s->ties_keep) {
        mask_above(T, *before + eq <= s->ties_keep ? 1.0f : 0.0f, a, d, n);
        *before += eq;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t key = mag_key(a[i]);
        float keep = 0;
        if (key > T) keep = 1;
        else if (key == T) keep = (*before)++ < s->ties_keep ? 1.0f : 0.0f;
        d[i] = keep;
    }
}

/* One chunk of a kernel. A blockable kernel (no row ops) runs its micro-ops
 * over blocks of j->block elements rather than the whole chunk, so its
 * registers stay in cache; everything carried between blocks (RSUM lanes,
 * tie counts, the TOPK_MASK tie rank, STORE bytes written once per chunk)
 * is kept so the result is the one of a single whole-chunk pass. */
static int kernel_chunk_body(kjob *j, uint64_t c, unsigned thread)
{
    vm *m = j->m;
    const cr_program *p = m->p;
    const cr_prog_kernel *k = j->k;
    const cr_kernels *K = m->kern;
    if (stopping(m)) return job_fail(m, stop_status(m), "%s", stop_msg(m));
    vm_thread *t = &m->thr[thread];
    const uint64_t cbase = c * k->chunk;
    const size_t cn = (size_t)CR_MIN(k->chunk, j->n - cbase);
    const size_t B = (size_t)j->block;
    float *R = t->regs;
    double *lanes = t->lanes;          /* per RSUM: 8 lanes carried over blocks */
    uint64_t *carry = t->carry;        /* per micro-op: tie rank of TOPK_MASK */
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        const cr_insn *in = &j->code[pc];
        if (in->op == CR_OP_RSUM) memset(lanes + 8 * (size_t)j->rsum_slot[pc], 0, 8 * sizeof *lanes);
        else if (in->op == CR_OP_TOPK_MASK) carry[pc] = m->sel[in->b].ties[c];   /* ties in earlier chunks */
        else if ((in->op == CR_OP_TIE_COUNT && !m->sel[in->dst].direct) ||
                 (in->op == CR_OP_HIST_LO && m->sel[in->dst].direct))
            m->sel[in->dst].ties[c] = 0;
    }
#define REG(i) (R + (size_t)(i) * B)
    for (size_t off = 0; off < cn; off += B) {
    const uint64_t base = cbase + off;
    const size_t n = CR_MIN(B, cn - off);
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        const cr_insn *in = &j->code[pc];
        float *d = REG(in->dst);
        switch ((cr_op)in->op) {
        case CR_OP_MOV: case CR_OP_NEG: case CR_OP_ABS: case CR_OP_SIGN: case CR_OP_SQRT:
        case CR_OP_EXP: case CR_OP_LOG: case CR_OP_NOT:
            if (in->dtype == CR_DTYPE_BF16) { K->unary_bf16((cr_op)in->op, d, REG(in->a), n); break; }
            K->unary((cr_op)in->op, d, REG(in->a), n);
            K->round((cr_dtype)in->dtype, d, n);
            break;
        case CR_OP_ADD: case CR_OP_SUB: case CR_OP_MUL: case CR_OP_DIV: case CR_OP_MIN: case CR_OP_MAX:
        case CR_OP_GT: case CR_OP_GE: case CR_OP_LT: case CR_OP_LE: case CR_OP_EQ: case CR_OP_NE:
        case CR_OP_AND: case CR_OP_OR:
            if (in->dtype == CR_DTYPE_BF16) { K->binary_bf16((cr_op)in->op, d, REG(in->a), REG(in->b), n); break; }
            K->binary((cr_op)in->op, d, REG(in->a), REG(in->b), n);
            K->round((cr_dtype)in->dtype, d, n);
            break;
        case CR_OP_WHERE:
            if (in->dtype == CR_DTYPE_BF16) { K->where_bf16(d, REG(in->a), REG(in->b), REG(in->c), n); break; }
            K->where(d, REG(in->a), REG(in->b), REG(in->c), n);
            K->round((cr_dtype)in->dtype, d, n);
            break;
        case CR_OP_ACOS: case CR_OP_SIN: case CR_OP_COS:
            /* per-row coefficients: few distinct values, so libm in f64 is
             * affordable; rounded like the top-level op */
            kernel_trig((cr_op)in->op, d, REG(in->a), n);
            K->round((cr_dtype)in->dtype, d, n);
            break;
        case CR_OP_LOAD:
        {
            const cr_prog_input *v = &p->inputs[in->a];
            load_view(m, v, base, n, d);
            /* a contiguous 16-bit view is checked on its stored bits: half the bytes */
            if (m->in_checked[in->a]) break;
            bool bad = (v->row_stride == v->cols || v->rows <= 1) && dt_size(v->dtype) == 2
                           ? any_nonfinite_raw((cr_dtype)v->dtype, view_base(m, v) + base * 2, n)
                           : any_nonfinite(d, n);
            if (bad) atomic_store_explicit(&m->nonfinite_in[in->a], 1, memory_order_relaxed);
        }
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
        case CR_OP_COLB: {
            const double *w = m->rowvec[in->a];
            uint64_t col = base % k->cols;
            for (size_t i = 0; i < n; i++) {
                d[i] = (float)w[col];
                if (++col == k->cols) col = 0;
            }
            break;
        }
        case CR_OP_RAND:
            K->uniform(p->seed, p->streams[in->a].key, base, d, n);
            break;
        case CR_OP_STORE: {
            /* staged per chunk, written with one pwrite after the last block */
            const cr_prog_output *o = &p->outputs[in->dst];
            unsigned sz = dt_size(o->dtype);
            if (any_nonfinite(REG(in->a), n)) atomic_store_explicit(&m->nonfinite_out[in->dst], 1, memory_order_relaxed);
            K->store((cr_dtype)o->dtype, REG(in->a), t->io + (size_t)j->store_slot[pc] * j->stage + off * sz, n);
            break;
        }
        case CR_OP_SSTORE: {
            const cr_prog_scratch *s = &p->scratch[in->dst];
            K->store((cr_dtype)s->dtype, REG(in->a), m->scratch[in->dst] + base * dt_size(s->dtype), n);
            break;
        }
        case CR_OP_RSUM:
            K->sum8(REG(in->a), n, lanes + 8 * (size_t)j->rsum_slot[pc]);
            break;
        case CR_OP_RSUM_NP: case CR_OP_RSSQ_BLAS: case CR_OP_RSUM_TORCH: case CR_OP_RSSQ_TORCH:
            if (j->tsum && j->tsum[pc].partials) {
                const ktsum *ts = &j->tsum[pc];
                cr_torch_sum_add(&ts->plan, REG(in->a), base, n, ts->partials, ts->tail);
                break;
            }
            if (j->ord_slot && j->ord_slot[pc] != UINT32_MAX) {
                float *buf = j->ordbuf + ((size_t)thread * j->n_ord + j->ord_slot[pc]) * k->chunk;
                memcpy(buf + off, REG(in->a), n * sizeof(float));
                break;
            }
            memcpy(j->gather[pc] + base, REG(in->a), n * sizeof(float));
            break;
        case CR_OP_RSUM_COL: case CR_OP_RSUM_COL_TORCH: case CR_OP_RSSQ_COL_TORCH: {
            /* fed to the column state in chunk order (kernel_chunk_ordered) */
            float *buf = j->ordbuf + ((size_t)thread * j->n_ord + j->ord_slot[pc]) * k->chunk;
            memcpy(buf + off, REG(in->a), n * sizeof(float));
            break;
        }
        case CR_OP_RSUM_ROW_TORCH: case CR_OP_RSSQ_ROW_TORCH: {
            /* rows are whole inside a chunk (such kernels run the chunk as
             * one block); a copy, since the torch sum may work in place */
            double *w = m->rowvec[in->dst];
            float *tmp = (float *)(void *)(t->io + (size_t)j->n_store * j->stage);
            for (size_t i = 0; i < n; i += (size_t)k->cols) {
                uint64_t row = (base + i) / k->cols;
                float v;
                if (in->op == CR_OP_RSSQ_ROW_TORCH) {
                    v = cr_refsum_torch_ssq(REG(in->a) + i, k->cols);
                } else {
                    memcpy(tmp, REG(in->a) + i, (size_t)k->cols * sizeof(float));
                    v = cr_refsum_torch(tmp, k->cols, false);
                }
                w[row] = cr_scalar_round(in->dtype, v);
            }
            break;
        }
        case CR_OP_RSUM_ROW: case CR_OP_RMAX_ROW: {
            double *w = m->rowvec[in->dst];
            const float *a = REG(in->a);
            for (size_t i = 0; i < n; i += (size_t)k->cols) {
                uint64_t row = (base + i) / k->cols;
                if (in->op == CR_OP_RSUM_ROW) {
                    double rl[8] = {0};
                    K->sum8(a + i, (size_t)k->cols, rl);
                    w[row] = cr_scalar_round(in->dtype, cr_sum8_combine(rl));
                } else {
                    float mx = -INFINITY;
                    for (size_t e = 0; e < k->cols; e++) mx = el_max(a[i + e], mx);
                    w[row] = cr_scalar_round(in->dtype, mx);
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
                uint32_t lo = 0;
                for (size_t i = 0; i < n; i++) { uint32_t key = mag_key(a[i]); h[key >> 16]++; lo |= key; }
                s->lowor[thread] |= lo & 0xffffu;
            } else if (s->direct) {
                s->ties[c] += count_key(a, n, s->threshold);
                if (s->early) gather_words(s->kv, s->threshold, a, base, n);
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
            if (s->direct) break;   /* counted by HIST_LO */
            if (s->k) s->ties[c] += count_key(a, n, s->threshold);
            break;
        }
        case CR_OP_TORCH_DESC: case CR_OP_TORCH_ASC: {
            const vm_select *s = &m->sel[in->dst];
            if (s->kv && !s->early) gather_words(s->kv, s->threshold, REG(in->a), base, n);
            break;
        }
        case CR_OP_TOPK_MASK: {
            const vm_select *s = &m->sel[in->b];
            const float *a = REG(in->a);
            if (!s->k) { for (size_t i = 0; i < n; i++) d[i] = 0; break; }
            if (s->tiebits) topk_mask_tiebits(s, a, d, n, base);
            else topk_mask(s, a, d, n, &carry[pc]);
            break;
        }
        default:
            return job_fail(m, CR_ERR_RUNTIME, "op %s inside a kernel", cr_op_table[in->op].name);
        }
    }
    }
#undef REG
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        const cr_insn *in = &j->code[pc];
        if (in->op == CR_OP_RSUM) {
            j->partials[c * j->n_rsum + j->rsum_slot[pc]] = cr_sum8_combine(lanes + 8 * (size_t)j->rsum_slot[pc]);
        } else if (in->op == CR_OP_STORE) {
            const cr_prog_output *o = &p->outputs[in->dst];
            unsigned sz = dt_size(o->dtype);
            int e = write_all(m->io, m->shard_fds[o->shard], t->io + (size_t)j->store_slot[pc] * j->stage,
                              (uint64_t)cn * sz, o->offset + cbase * sz);
            if (e) {
                char path[4096];
                output_path(m, o->shard, path, sizeof path);
                return job_fail(m, CR_ERR_IO, "writing %s to %s: %s", S(m, o->name), path, strerror(e));
            }
            atomic_fetch_add(&m->bytes_done, (uint64_t)cn * sz);
        }
    }
    if (thread == 0) report(m, false);
    return 0;
}

/* Drop the mapped pages of `file` in [lo, hi), widened to Linux's
 * fault-around blocks (hi rounded up when `out`, else down: a fault at or
 * after hi maps no page below its own block) and clipped to the map. The
 * map is private and never written, so a page another view still reads
 * just faults in again from the page cache. */
static void drop_pages(const vm *m, uint32_t file, uintptr_t lo, uintptr_t hi, bool out)
{
    const uintptr_t fa = (uintptr_t)CR_MEM_FAULT_AROUND;
    uintptr_t base = (uintptr_t)m->maps[file], end = base + m->p->files[file].size;
    if (!m->maps[file]) return;
    lo &= ~(fa - 1);
    hi = out ? (hi + fa - 1) & ~(fa - 1) : hi & ~(fa - 1);
    if (lo < base) lo = base;
    if (hi > end) hi = end;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* address of element e of a file view (e may be the view's size) */
static uintptr_t view_addr(const vm *m, const cr_prog_input *in, uint64_t e)
{
    uint64_t sz = dt_size(in->dtype);
    if (in->cols && e >= in->rows * in->cols)
        return (uintptr_t)(m->maps[in->file] + in->offset + ((in->rows - 1) * in->row_stride + in->cols) * sz);
    uint64_t r = in->cols ? e / in->cols : 0, c = in->cols ? e % in->cols : 0;
    return (uintptr_t)(m->maps[in->file] + in->offset + (r * in->row_stride + c) * sz);
}

/* drop the pages of chunks [from, to) of every file view the kernel reads
 * (`last`: through the views' ends) */
static void stream_drop(const kjob *j, uint64_t from, uint64_t to, bool last)
{
    for (uint32_t i = 0; i < j->n_views; i++) {
        const cr_prog_input *in = &j->m->p->inputs[j->views[i]];
        drop_pages(j->m, in->file, view_addr(j->m, in, from * j->k->chunk),
                   view_addr(j->m, in, last ? j->n : to * j->k->chunk), last);
    }
}

/* chunk c's turn to feed the in-order sums (chunks are claimed in
 * increasing order, so c - 1 is running or done; a failed chunk still
 * passes the turn on) */
static void kernel_chunk_ordered(kjob *j, uint64_t c, unsigned thread, bool ok)
{
    pthread_mutex_lock(&j->mu);
    while (j->turn != c) pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    if (ok) {
        uint64_t cn = CR_MIN(j->k->chunk, j->n - c * j->k->chunk);
        for (uint32_t i = 0; i < j->n_ord; i++) {
            const float *buf = j->ordbuf + ((size_t)thread * j->n_ord + i) * j->k->chunk;
            if (j->col[i].state) cr_colsum_add(&j->col[i], buf, cn);
            else cr_refsum_stream_add(&j->ord[i], buf, cn);
        }
    }
    pthread_mutex_lock(&j->mu);
    j->turn = c + 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static int kernel_chunk(void *ud, uint64_t c, unsigned thread)
{
    kjob *j = ud;
    if (!j->stream) {
        int r = kernel_chunk_body(j, c, thread);
        if (j->n_ord) kernel_chunk_ordered(j, c, thread, r == 0);
        return r;
    }
    pthread_mutex_lock(&j->mu);
    while (c >= j->prefix + j->ahead) pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    /* a failed chunk still counts as finished, or the others would wait */
    int r = kernel_chunk_body(j, c, thread);
    if (j->n_ord) kernel_chunk_ordered(j, c, thread, r == 0);
    uint64_t from = 0, to = 0;
    pthread_mutex_lock(&j->mu);
    j->done[c] = 1;
    uint64_t before = j->prefix;
    while (j->prefix < j->n_chunks && j->done[j->prefix]) j->prefix++;
    if (j->prefix != before) pthread_cond_broadcast(&j->cv);
    if (j->prefix - j->dropped >= j->step) { from = j->dropped; to = j->dropped = j->prefix; }
    pthread_mutex_unlock(&j->mu);
    if (to > from) stream_drop(j, from, to, false);
    return r;
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
        case CR_OP_TIE_COUNT: case CR_OP_TORCH_DESC: case CR_OP_TORCH_ASC: need = SEL_FOUND_LO; x = in->dst; break;
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

/* Before a kernel with TORCH_DESC/ASC: record the order, and gather only
 * when the ties at the threshold do not all fit (otherwise the threshold
 * alone decides). */
static void warn(const vm *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* the tensor a kernel works on, for messages: its first file LOAD's */
static const char *kernel_tensor(const vm *m, const cr_insn *code, uint32_t n)
{
    for (uint32_t pc = 0; pc < n; pc++)
        if (code[pc].op == CR_OP_LOAD && m->p->inputs[code[pc].a].kind == CR_INPUT_FILE)
            return S(m, m->p->inputs[code[pc].a].name);
    return "?";
}

/* The output tensor a selection serves, for messages: the first output
 * stored by a kernel that uses selection x ("?" when none is, e.g. a
 * selection whose value feeds only scalars). Searched only on failure. */
static const char *sel_output_name(const vm *m, uint32_t x)
{
    const cr_program *p = m->p;
    for (uint32_t k = 0; k < p->n_kernels; k++) {
        const cr_insn *code = p->code + p->kernels[k].code_begin;
        uint32_t n = p->kernels[k].code_len;
        bool uses = false;
        for (uint32_t i = 0; i < n && !uses; i++) {
            const char *kinds = cr_op_table[code[i].op].kinds;
            uint32_t ops[4] = { code[i].dst, code[i].a, code[i].b, code[i].c };
            for (int j = 0; j < 4; j++) uses |= kinds[j] == 'x' && ops[j] == x;
        }
        for (uint32_t i = 0; i < n && uses; i++)
            if (cr_op_table[code[i].op].kinds[0] == 'o') return S(m, p->outputs[code[i].dst].name);
    }
    return "?";
}

/* torch's order matters only when some but not all threshold ties are kept */
static bool needs_gather(const vm_select *s) { return s->k && s->ties_keep < s->ties_total; }

/* a fresh gather of n words for selection x (the old one freed) */
static cr_status gather_alloc(vm *m, uint32_t x, uint64_t n, cr_error *err)
{
    vm_select *s = &m->sel[x];
    cr_free(m->alloc, s->kv);
    s->partitioned = false;
    s->kv = cr_malloc(m->alloc, (size_t)n * sizeof *s->kv);
    if (!s->kv) return cr_fail(err, CR_ERR_NOMEM, "out of memory gathering the top-k selection of %s (%llu elements)",
                               sel_output_name(m, x), (unsigned long long)n);
    return CR_OK;
}

static cr_status torch_gather_begin(vm *m, const cr_insn *in, const cr_insn *code, uint32_t code_len, uint64_t n,
                                    cr_error *err)
{
    vm_select *s = &m->sel[in->dst];
    s->torch_order = in->op;
    if (s->early) return CR_OK;   /* filled by the HIST_LO pass */
    cr_free(m->alloc, s->kv);
    s->kv = NULL;
    s->partitioned = false;
    if (!needs_gather(s)) return CR_OK;
    if (m->mem.torch_fallback && m->mem.torch_fallback[in->dst]) {
        /* memplan: the gather does not fit --max-memory; ties in index order */
        uint64_t kept = s->ties_keep, dropped = s->ties_total - s->ties_keep;
        warn(m, "%s (selection %u): torch's tie order (a %llu MiB gather) does not fit --max-memory; %llu of %llu elements "
                "tied at the top-k threshold kept in index order instead, up to %llu may differ from mergekit",
             kernel_tensor(m, code, code_len), in->dst, (unsigned long long)((n * 4 + (1 << 20) - 1) >> 20),
             (unsigned long long)kept, (unsigned long long)s->ties_total,
             (unsigned long long)(2 * CR_MIN(kept, dropped)));
        return CR_OK;
    }
    if (n >= CR_TORCHSORT_TIE)
        return cr_fail(err, CR_ERR_LIMIT, "%s: torch's tie order for a top-k selection over %llu elements (limit 2^31)",
                       sel_output_name(m, in->dst), (unsigned long long)n);
    return gather_alloc(m, in->dst, n, err);
}

/* replay torch's sort of a gathered selection up to the k-th position */
static void torch_partition(vm *m, uint32_t x)
{
    vm_select *s = &m->sel[x];
    uint64_t n = m->p->selects[x].n;
    bool desc = s->torch_order == CR_OP_TORCH_DESC;
    uint64_t bound = desc ? s->k : n - s->k;
    cr_torchsort_partition(m->kern, s->kv, n, desc, s->threshold, &bound, 1);
    s->partitioned = true;
}

typedef struct partition_job {
    vm *m;
    const cr_insn *prefix;     /* a run of SEL_PREFIX instructions */
} partition_job;

static int partition_task(void *ud, uint64_t task, unsigned thread)
{
    (void)thread;
    const partition_job *j = ud;
    torch_partition(j->m, j->prefix[task].dst);
    return 0;
}

/* The SEL_PREFIXes that follow one another in main (one per model of a
 * tensor) replay independent sorts: run them side by side on the pool. */
static void partition_run(vm *m, const cr_insn *prefix, uint32_t n_left)
{
    uint32_t n = 0;
    while (n < n_left && prefix[n].op == CR_OP_SEL_PREFIX && m->sel[prefix[n].dst].kv &&
           !m->sel[prefix[n].dst].partitioned && m->sel[prefix[n].dst].phase == SEL_FOUND_LO)
        n++;
    if (n < 2) return;
    partition_job j = { m, prefix };
    cr_pool_run(m->pool, n, partition_task, &j);
}

/* SEL_PREFIX of a gathered selection: replay torch's sort up to the k-th
 * position (unless partition_run did) and mark the ties that land among
 * the kept elements. */
static cr_status torch_ties(vm *m, uint32_t x, cr_error *err)
{
    vm_select *s = &m->sel[x];
    uint64_t n = m->p->selects[x].n;
    bool desc = s->torch_order == CR_OP_TORCH_DESC;
    uint64_t bound = desc ? s->k : n - s->k;
    if (!s->partitioned) torch_partition(m, x);
    s->partitioned = false;
    s->early = false;
    cr_free(m->alloc, s->tiebits);
    s->tiebits = cr_calloc(m->alloc, (size_t)(n / 64 + 1), sizeof *s->tiebits);
    if (!s->tiebits)
        return cr_fail(err, CR_ERR_NOMEM, "out of memory for the top-k selection of %s", sel_output_name(m, x));
    uint64_t lo = desc ? 0 : bound, hi = desc ? bound : n, kept = 0;
    for (uint64_t p = lo; p < hi; p++) {
        if (!(s->kv[p] & CR_TORCHSORT_TIE)) continue;
        uint64_t e = s->kv[p] & ~CR_TORCHSORT_TIE;
        s->tiebits[e >> 6] |= (uint64_t)1 << (e & 63);
        kept++;
    }
    cr_free(m->alloc, s->kv);
    s->kv = NULL;
    if (kept != s->ties_keep)
        return cr_fail(err, CR_ERR_RUNTIME, "%s: torch order kept %llu ties at the top-k threshold, expected %llu (values changed between passes?)",
                       sel_output_name(m, x), (unsigned long long)kept, (unsigned long long)s->ties_keep);
    return CR_OK;
}

/* reductions in a library's order: RSUM_TORCH in pieces or gathered, the
 * others fed in element order (in_order_kind) */
static bool is_gather_op(uint16_t op)
{
    return op == CR_OP_RSUM_NP || op == CR_OP_RSSQ_BLAS || op == CR_OP_RSUM_TORCH || op == CR_OP_RSSQ_TORCH;
}

static int in_order_kind(uint16_t op)
{
    switch (op) {
    case CR_OP_RSUM_NP: return CR_REFSUM_NP;
    case CR_OP_RSSQ_BLAS: return CR_REFSUM_BLAS_SSQ;
    case CR_OP_RSSQ_TORCH: return CR_REFSUM_TORCH_SSQ;
    default: return -1;
    }
}

/* the per-column sums, also fed in element order */
static int col_kind(uint16_t op)
{
    switch (op) {
    case CR_OP_RSUM_COL: return CR_COLSUM_WIDE;
    case CR_OP_RSUM_COL_TORCH: return CR_COLSUM_TORCH;
    case CR_OP_RSSQ_COL_TORCH: return CR_COLSUM_TORCH_SSQ;
    default: return -1;
    }
}

/* a kernel whose only effects are TIE_COUNTs of direct selections (already
 * counted) computes nothing anyone reads: it is skipped */
static bool kernel_is_idle(const vm *m, const cr_insn *code, uint32_t n)
{
    bool any = false;
    for (uint32_t pc = 0; pc < n; pc++) {
        const cr_insn *in = &code[pc];
        switch (in->op) {
        case CR_OP_TIE_COUNT:
            if (!m->sel[in->dst].direct) return false;
            any = true;
            break;
        case CR_OP_TORCH_DESC: case CR_OP_TORCH_ASC: {
            const vm_select *s = &m->sel[in->dst];
            if (needs_gather(s) && !s->early) return false;   /* a fallback warns there */
            any = true;
            break;
        }
        case CR_OP_TOPK_MASK:
            break;   /* registers only */
        default:
            if (!cr_op_registers_only((cr_op)in->op)) return false;
            break;
        }
    }
    return any;
}

/* In direct mode (bf16 values: the threshold is known once the high bits
 * are counted) the HIST_LO pass can fill a selection's torch tie-order
 * gather as it counts the ties, and the pass that would only gather is
 * skipped (kernel_is_idle): a TIES merge reads its inputs three times, not
 * four. Only where both passes hold their inputs whole (neither streamed)
 * and the gather would run whole (not one at a time, not in index order):
 * the two passes then map the same views, so memory is memplan's for the
 * gathering pass. */
static cr_status gather_early(vm *m, uint32_t ki, bool stream, const cr_insn *code, uint32_t n, cr_error *err)
{
    if (stream) return CR_OK;
    for (uint32_t pc = 0; pc < n; pc++) {
        const cr_insn *in = &code[pc];
        if (in->op != CR_OP_HIST_LO) continue;
        vm_select *s = &m->sel[in->dst];
        if (!s->direct || !needs_gather(s) || !s->torch_order || !s->torch_whole || s->torch_kernel == ki ||
            s->early || (m->mem.torch_fallback && m->mem.torch_fallback[in->dst]))
            continue;
        uint64_t elems = m->p->selects[in->dst].n;
        if (elems >= CR_TORCHSORT_TIE) continue;   /* the gathering pass reports it */
        cr_status st = gather_alloc(m, in->dst, elems, err);
        if (st) return st;
        s->early = true;
    }
    return CR_OK;
}

/* ops that need whole rows in one pass: their kernels run a chunk as one block */
static cr_status run_kernel(vm *m, uint32_t ki, bool stream, bool serial, cr_error *err)
{
    const cr_program *p = m->p;
    const cr_prog_kernel *k = &p->kernels[ki];
    cr_status s = kernel_precheck(m, ki, k, err);
    if (s) return s;
    kjob j = { .m = m, .k = k, .code = p->code + k->code_begin, .n = k->rows * k->cols };
    j.n_chunks = (j.n + k->chunk - 1) / k->chunk;
    j.block = cr_kernel_block(p, k);
    j.stage = (size_t)k->chunk * 8;
    j.store_slot = cr_calloc(m->alloc, k->code_len ? k->code_len : 1, sizeof *j.store_slot);
    if (!j.store_slot) return cr_fail(err, CR_ERR_NOMEM, "out of memory for kernel %u", ki);
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        if (j.code[pc].op == CR_OP_RSUM) j.n_rsum++;
        if (j.code[pc].op == CR_OP_STORE) j.store_slot[pc] = j.n_store++;
    }
    if (j.n_rsum) {
        j.rsum_slot = cr_calloc(m->alloc, k->code_len, sizeof *j.rsum_slot);
        j.partials = cr_calloc(m->alloc, (size_t)j.n_chunks ? (size_t)j.n_chunks * j.n_rsum : 1, sizeof *j.partials);
        if (!j.rsum_slot || !j.partials) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory for kernel %u partial sums", ki); goto out; }
        uint32_t r = 0;
        for (uint32_t pc = 0; pc < k->code_len; pc++) if (j.code[pc].op == CR_OP_RSUM) j.rsum_slot[pc] = r++;
    }
    for (uint32_t pc = 0; pc < k->code_len; pc++)
        j.n_ord += in_order_kind(j.code[pc].op) >= 0 || col_kind(j.code[pc].op) >= 0;
    if (j.n_ord) {
        j.ord_slot = cr_calloc(m->alloc, k->code_len, sizeof *j.ord_slot);
        j.ord = cr_calloc(m->alloc, j.n_ord, sizeof *j.ord);
        j.col = cr_calloc(m->alloc, j.n_ord, sizeof *j.col);
        j.ordbuf = cr_malloc(m->alloc, (size_t)m->n_threads * j.n_ord * k->chunk * sizeof(float));
        if (!j.ord_slot || !j.ord || !j.col || !j.ordbuf) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory for kernel %u sums", ki); goto out; }
        uint32_t r = 0;
        for (uint32_t pc = 0; pc < k->code_len; pc++) {
            int kind = in_order_kind(j.code[pc].op), ckind = col_kind(j.code[pc].op);
            j.ord_slot[pc] = kind >= 0 || ckind >= 0 ? r : UINT32_MAX;
            if (kind >= 0) cr_refsum_stream_init(&j.ord[r++], (cr_refsum_kind)kind, j.n);
            if (ckind < 0) continue;
            void *state = cr_malloc(m->alloc, cr_colsum_state_bytes((cr_colsum_kind)ckind, k->cols) + 1);
            if (!state) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory for kernel %u column sums", ki); goto out; }
            cr_colsum_init(&j.col[r++], (cr_colsum_kind)ckind, k->rows, k->cols, state);
        }
    }
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        if (!is_gather_op(j.code[pc].op) || in_order_kind(j.code[pc].op) >= 0) continue;
        if (j.code[pc].op == CR_OP_RSUM_TORCH) {
            /* in pieces when every chunk (and block) holds whole cascade blocks */
            cr_torch_sum_plan pl;
            cr_torch_sum_plan_init(&pl, j.n, j.code[pc].dtype == CR_DTYPE_BF16 || j.code[pc].dtype == CR_DTYPE_F16);
            if (pl.n_blocks && k->chunk % pl.block == 0 && j.block % pl.group == 0) {
                if (!j.tsum) j.tsum = cr_calloc(m->alloc, k->code_len, sizeof *j.tsum);
                if (!j.tsum) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory for kernel %u sums", ki); goto out; }
                ktsum *ts = &j.tsum[pc];
                ts->plan = pl;
                ts->partials = cr_calloc(m->alloc, (size_t)pl.n_blocks * 32, sizeof(float));
                ts->tail = cr_malloc(m->alloc, (size_t)(j.n - pl.rem_start + 1) * sizeof(float));
                if (!ts->partials || !ts->tail) {
                    s = cr_fail(err, CR_ERR_NOMEM, "out of memory for kernel %u sums", ki);
                    goto out;
                }
                continue;
            }
        }
        if (!j.gather) j.gather = cr_calloc(m->alloc, k->code_len, sizeof *j.gather);
        if (j.gather) j.gather[pc] = cr_malloc(m->alloc, (size_t)(j.n ? j.n : 1) * sizeof(float));
        if (!j.gather || !j.gather[pc]) {
            s = cr_fail(err, CR_ERR_NOMEM, "out of memory gathering kernel %u for its sum", ki);
            goto out;
        }
    }
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        const cr_insn *in = &j.code[pc];
        if ((in->op == CR_OP_TIE_COUNT && !m->sel[in->dst].direct) || (in->op == CR_OP_HIST_LO && m->sel[in->dst].direct))
            memset(m->sel[in->dst].ties, 0, (size_t)j.n_chunks * sizeof(uint64_t));
    }
    if ((s = gather_early(m, ki, stream, j.code, k->code_len, err))) goto out;
    if (kernel_is_idle(m, j.code, k->code_len)) goto out;
    if (stream && j.n_chunks) {
        j.done = cr_calloc(m->alloc, (size_t)j.n_chunks, 1);
        j.views = cr_calloc(m->alloc, k->code_len, sizeof *j.views);
        if (!j.done || !j.views) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory for kernel %u", ki); goto out; }
        for (uint32_t pc = 0; pc < k->code_len; pc++) {
            const cr_insn *in = &j.code[pc];
            if (in->op != CR_OP_LOAD || p->inputs[in->a].kind != CR_INPUT_FILE) continue;
            bool dup = false;
            for (uint32_t v = 0; v < j.n_views && !dup; v++) dup = j.views[v] == in->a;
            if (!dup) j.views[j.n_views++] = in->a;
        }
        j.stream = true;
        j.ahead = (uint64_t)CR_MEM_STREAM_AHEAD * m->n_threads;
        j.step = (uint64_t)CR_MEM_STREAM_STEP * m->n_threads;
    }
    if (j.stream || j.n_ord) {
        pthread_mutex_init(&j.mu, NULL);
        pthread_cond_init(&j.cv, NULL);
        j.sync = true;
    }
    /* `serial` (memplan): a kernel whose only effects are tie counts and
     * torch tie-order gathers runs once per gather, each sorted as soon as
     * it is complete, so one gather is alive at a time (the tie counts are
     * recounted, the same, each pass) */
    uint32_t n_torch = 0;
    for (uint32_t pc = 0; pc < k->code_len; pc++)
        n_torch += j.code[pc].op == CR_OP_TORCH_DESC || j.code[pc].op == CR_OP_TORCH_ASC;
    const uint32_t n_pass = serial && n_torch > 1 ? n_torch : 1;
    for (uint32_t pass = 0; pass < n_pass && !s; pass++) {
        const cr_insn *mine = NULL;
        for (uint32_t pc = 0, t = 0; pc < k->code_len && !s; pc++) {
            const cr_insn *in = &j.code[pc];
            if (in->op != CR_OP_TORCH_DESC && in->op != CR_OP_TORCH_ASC) continue;
            if (n_pass == 1 || t == pass) s = torch_gather_begin(m, mine = in, j.code, k->code_len, j.n, err);
            t++;
        }
        if (s) break;
        if (pass) {
            for (uint32_t pc = 0; pc < k->code_len; pc++)
                if (j.code[pc].op == CR_OP_TIE_COUNT && !m->sel[j.code[pc].dst].direct)
                    memset(m->sel[j.code[pc].dst].ties, 0, (size_t)j.n_chunks * sizeof(uint64_t));
            if (j.done) memset(j.done, 0, (size_t)j.n_chunks);
            j.prefix = j.dropped = j.turn = 0;
        }
        m->job_status = CR_OK;
        m->err = err;
        cr_pool_run(m->pool, j.n_chunks, kernel_chunk, &j);
        if (j.stream) stream_drop(&j, j.dropped, j.n_chunks, true);
        if ((s = m->job_status)) break;
        if (n_pass > 1 && m->sel[mine->dst].kv) s = torch_ties(m, mine->dst, err);
    }
    for (uint32_t pc = 0; !s && pc < k->code_len; pc++)
        if (j.code[pc].op == CR_OP_LOAD) m->in_checked[j.code[pc].a] = true;
    if (j.sync) {
        pthread_mutex_destroy(&j.mu);
        pthread_cond_destroy(&j.cv);
    }
    if (s) goto out;
    /* fold reductions in chunk order: the result is independent of threads */
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        const cr_insn *in = &j.code[pc];
        if (in->op == CR_OP_RSUM) {
            double acc = 0;
            for (uint64_t c = 0; c < j.n_chunks; c++) acc += j.partials[c * j.n_rsum + j.rsum_slot[pc]];
            m->scal[in->dst] = cr_scalar_round(in->dtype, acc);
        } else if (j.tsum && j.tsum[pc].partials) {
            ktsum *ts = &j.tsum[pc];
            m->scal[in->dst] = cr_scalar_round(in->dtype, cr_torch_sum_finish(&ts->plan, ts->partials, ts->tail));
        } else if (j.ord_slot && j.ord_slot[pc] != UINT32_MAX && j.col[j.ord_slot[pc]].state) {
            double *w = m->rowvec[in->dst];
            cr_colsum_finish(&j.col[j.ord_slot[pc]], w);
            for (uint64_t c = 0; c < k->cols; c++) w[c] = cr_scalar_round(in->dtype, w[c]);
        } else if (j.ord_slot && j.ord_slot[pc] != UINT32_MAX) {
            m->scal[in->dst] = cr_scalar_round(in->dtype, cr_refsum_stream_finish(&j.ord[j.ord_slot[pc]]));
        } else if (is_gather_op(in->op)) {
            m->scal[in->dst] = cr_scalar_round(in->dtype, cr_refsum_torch(j.gather[pc], j.n,
                                                                        in->dtype == CR_DTYPE_BF16 || in->dtype == CR_DTYPE_F16));
        } else if (in->op == CR_OP_SSTORE) {
            m->scratch_ready[in->dst] = true;
        }
    }
out:
    for (uint32_t pc = 0; j.gather && pc < k->code_len; pc++) cr_free(m->alloc, j.gather[pc]);
    cr_free(m->alloc, j.gather);
    for (uint32_t pc = 0; j.tsum && pc < k->code_len; pc++) {
        cr_free(m->alloc, j.tsum[pc].partials);
        cr_free(m->alloc, j.tsum[pc].tail);
    }
    cr_free(m->alloc, j.tsum);
    for (uint32_t i = 0; j.col && i < j.n_ord; i++) cr_free(m->alloc, j.col[i].state);
    cr_free(m->alloc, j.col);
    cr_free(m->alloc, j.ord_slot);
    cr_free(m->alloc, j.ord);
    cr_free(m->alloc, j.ordbuf);
    cr_free(m->alloc, j.rsum_slot);
    cr_free(m->alloc, j.store_slot);
    cr_free(m->alloc, j.partials);
    cr_free(m->alloc, j.done);
    cr_free(m->alloc, j.views);
    return s;
}

/* ---- top-level ops ---------------------------------------------------------- */

static cr_status run_copy(vm *m, const cr_insn *ins, bool stream, cr_error *err)
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
    /* streamed (memplan.h): blocks of CR_MEM_COPY_BLOCK bytes, each
     * dropped once written */
    stream = stream && in->kind == CR_INPUT_FILE;
    uintptr_t dropped = stream ? view_addr(m, in, 0) : 0;
    uint64_t max_same = stream ? CR_MAX(CR_MEM_COPY_BLOCK / isz, 1) : (uint64_t)1 << 26;
    for (uint64_t r = 0; r < in->rows; r++) {
        const uint8_t *row = src + r * in->row_stride * isz;
        for (uint64_t c = 0; c < in->cols;) {
            if (stopping(m)) return cr_fail(err, stop_status(m), "%s", stop_msg(m));
            uint64_t len = CR_MIN(in->cols - c, in->dtype == o->dtype ? max_same : (uint64_t)COPY_BLOCK);
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
            if (stream) {
                uintptr_t at = (uintptr_t)(row + c * isz);
                drop_pages(m, in->file, dropped, at, false);
                dropped = CR_MAX(dropped, at & ~((uintptr_t)CR_MEM_FAULT_AROUND - 1));
            }
            report(m, false);
        }
    }
    if (stream) drop_pages(m, in->file, dropped, view_addr(m, in, in->rows * in->cols), true);
    return CR_OK;
}

/* PREFETCH: read the view's pages into the page cache (not into RSS);
 * RELEASE: drop them from RSS, widened to fault-around blocks so that pages
 * a neighbour's fault mapped in go too (drop_pages) */
static void advise(vm *m, const cr_prog_input *in, int advice)
{
    if (in->kind != CR_INPUT_FILE || !in->nbytes || !m->maps[in->file]) return;
    if (advice == MADV_DONTNEED) {
        drop_pages(m, in->file, (uintptr_t)(m->maps[in->file] + in->offset),
                   (uintptr_t)(m->maps[in->file] + in->offset + in->nbytes), true);
        return;
    }
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)(m->maps[in->file] + in->offset), e = a + in->nbytes;
    a &= ~(uintptr_t)(pg - 1);
    madvise((void *)a, e - a, advice);
}

static cr_status sel_init(vm *m, uint32_t x, double kv, cr_error *err)
{
    vm_select *s = &m->sel[x];
    const cr_prog_select *ps = &m->p->selects[x];
    if (!(kv >= 0) || kv != floor(kv) || kv > (double)ps->n)
        return cr_fail(err, CR_ERR_RUNTIME,
                       "output tensor %s: a top-k selection (topk_mask / kth_largest_abs) got k = %g, "
                       "not a whole number in 0..%llu (the number of elements)",
                       sel_output_name(m, x), kv, (unsigned long long)ps->n);
    s->k = (uint64_t)kv;
    cr_free(m->alloc, s->tiebits);
    s->tiebits = NULL;
    s->n_chunks = (ps->n + ps->chunk - 1) / ps->chunk;
    if (!s->hist) s->hist = cr_malloc(m->alloc, (size_t)m->n_threads * HIST_BINS * sizeof *s->hist);
    if (!s->ties) s->ties = cr_calloc(m->alloc, s->n_chunks ? (size_t)s->n_chunks : 1, sizeof *s->ties);
    if (!s->lowor) s->lowor = cr_calloc(m->alloc, m->n_threads, sizeof *s->lowor);
    if (!s->hist || !s->ties || !s->lowor)
        return cr_fail(err, CR_ERR_NOMEM, "out of memory for the top-k selection of %s", sel_output_name(m, x));
    memset(s->hist, 0, (size_t)m->n_threads * HIST_BINS * sizeof *s->hist);
    memset(s->lowor, 0, m->n_threads * sizeof *s->lowor);
    s->direct = false;
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
            if (hi) {
                s->hi = b;
                s->above = cum;
                uint32_t lo = 0;
                for (unsigned t = 0; t < m->n_threads; t++) lo |= s->lowor[t];
                if (!lo) { s->direct = true; s->threshold = b << 16; s->ties_keep = s->k - cum; s->ties_total = cnt; }
            }
            else { s->threshold = s->hi << 16 | b; s->ties_keep = s->k - cum; s->ties_total = cnt; }
            break;
        }
        cum += cnt;
    }
    memset(s->hist, 0, (size_t)m->n_threads * HIST_BINS * sizeof *s->hist);
}

/* After every WRITEBACK_STEP bytes of output, have the shards' dirty pages
 * written out while the merge goes on (writeback.h) */
#define WRITEBACK_STEP (64u << 20)

static void start_writeback(vm *m)
{
    uint64_t done = atomic_load(&m->bytes_done);
    if (!m->writeback || done < m->written_back + WRITEBACK_STEP) return;
    cr_writeback_kick(m->writeback);
    m->written_back = done;
}

static cr_status run_main(vm *m, cr_error *err)
{
    const cr_program *p = m->p;
    double *S_ = m->scal;
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        const cr_insn *in = &p->main[pc];
        if (stopping(m)) return cr_fail(err, stop_status(m), "%s", stop_msg(m));
        double a = 0, b = 0, c = 0, r;
        const char *kinds = cr_op_table[in->op].kinds;
        if (kinds[1] == 'v' || kinds[1] == 's') a = S_[in->a];
        if (kinds[2] == 'v' || kinds[2] == 's') b = S_[in->b];
        if (kinds[3] == 'v' || kinds[3] == 's') c = S_[in->c];
        if (cr_scalar_apply((cr_op)in->op, a, b, c, &r)) {
            S_[in->dst] = cr_scalar_round(in->dtype, r);
            continue;
        }
        cr_status st = CR_OK;
        switch ((cr_op)in->op) {
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
                if (s->kv) {
                    partition_run(m, in, p->n_main - pc);
                    if ((st = torch_ties(m, in->dst, err))) return st;
                }
            } else if (s->k && !(in->op == CR_OP_SEL_FIND_LO && s->direct)) {
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
        case CR_OP_KERNEL: st = run_kernel(m, in->a, m->mem.stream[pc] & CR_MEM_STREAMED,
                                                  m->mem.stream[pc] & CR_MEM_SERIAL_GATHERS, err); break;
        case CR_OP_COPY: st = run_copy(m, in, m->mem.stream[pc] & CR_MEM_STREAMED, err); break;
        case CR_OP_PREFETCH: advise(m, &p->inputs[in->a], MADV_WILLNEED); continue;
        case CR_OP_RELEASE: advise(m, &p->inputs[in->a], MADV_DONTNEED); continue;
        case CR_OP_DONE: m->tensors_done++; report(m, false); start_writeback(m); continue;
        case CR_OP_SFREE:
            cr_free(m->alloc, m->scratch[in->dst]);
            m->scratch[in->dst] = NULL;
            m->scratch_ready[in->dst] = false;
            continue;
        default:
            return cr_fail(err, CR_ERR_RUNTIME, "main %u: op %s not valid at top level", pc, cr_op_table[in->op].name);
        }
        if (st) return st;
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
        if (stopping(m)) return job_fail(m, stop_status(m), "%s", stop_msg(m));
        uint64_t len = CR_MIN(block, f->size - off);
        /* the map has no read-around (MADV_RANDOM): read this block and
         * the next ahead */
        if (off == 0) madvise(m->maps[i], (size_t)len, MADV_WILLNEED);
        if (off + len < f->size)
            madvise(m->maps[i] + off + len, (size_t)CR_MIN(block, f->size - off - len), MADV_WILLNEED);
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
        /* the identity is re-checked before the commit (check_inputs) */
        cr_status is = cr_file_id_of_fd(fd, path, &m->ids[i], err);
        if (is) { close(fd); return is; }
        uint64_t size = m->ids[i].size;
        if (size != p->files[i].size) {
            close(fd);
            return cr_fail(err, CR_ERR_RUNTIME, "input %s is %llu bytes but the program was compiled for %llu bytes "
                           "(the file changed or is truncated)", path, (unsigned long long)size,
                           (unsigned long long)p->files[i].size);
        }
        if (size > 0) {
            void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (map == MAP_FAILED) { int e = errno; close(fd); return cr_fail_errno(err, e, "cannot map %s", path); }
            m->maps[i] = map;
            m->regions[i].lo = (uintptr_t)map;
            m->regions[i].hi = (uintptr_t)map + (uintptr_t)size;
            /* no read-around on faults (read_ahead_kb, often MiBs): PREFETCH
             * reads exactly the views the program needs, so a pass-through
             * recipe does not read the tensors it skips (spec/plan.md) */
            madvise(map, (size_t)size, MADV_RANDOM);
        }
        close(fd);   /* the mapping keeps the file */
        m->n_opened = i + 1;
        if (hashing && p->files[i].hash) to_hash += p->files[i].size;
    }
    /* before any read of the maps */
    if (m->opt->guard) cr_input_guard_set(m->opt->guard, m->regions, p->n_files);
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

/* After the last read of the inputs (aux copies included), before the
 * commit: has any input changed since it was opened? Run after a failure
 * too, since a changed input may be its cause (a copy's write from a
 * truncated mapping fails with EFAULT, a kernel stops on a guarded fault):
 * the change is then reported instead, unless the run was interrupted by a
 * signal. Returns the run's status s or the change's. */
static cr_status check_inputs(vm *m, cr_status s, cr_error *err)
{
    if (s == CR_ERR_INTERRUPTED && interrupted(m)) return s;
    uint32_t faulted = m->opt->guard && m->n_opened ? cr_input_guard_faulted(m->opt->guard) : 0;
    if (faulted)
        return cr_fail(err, CR_ERR_RUNTIME, "input %s changed while it was being read (a read past its end "
                       "failed: the file shrank)", S(m, m->p->files[faulted - 1].path));
    for (uint32_t i = 0; i < m->n_opened; i++) {
        cr_error e;
        if (cr_file_id_check(S(m, m->p->files[i].path), &m->ids[i], &e)) {
            if (err) *err = e;
            return e.status;
        }
    }
    return s;
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
        uint64_t n_rsum = 0, n_store = 0;
        for (uint32_t pc = 0; pc < k->code_len; pc++) {
            uint16_t op = p->code[k->code_begin + pc].op;
            if (op == CR_OP_ROWRANK) m->rowrank_cols = CR_MAX(m->rowrank_cols, k->cols);
            n_rsum += op == CR_OP_RSUM;
            n_store += op == CR_OP_STORE;
        }
        m->rsum_max = CR_MAX(m->rsum_max, n_rsum);
        m->store_max = CR_MAX(m->store_max, n_store);
        m->code_max = CR_MAX(m->code_max, k->code_len);
    }
    /* the thread count, and under --max-memory the steps that stream their
     * inputs, come from the memory model `crucible plan` reports */
    cr_status ms = cr_memplan_init(&m->mem, p, m->opt->threads, m->opt->max_memory, A, err);
    if (ms) return ms;
    unsigned threads = m->mem.threads;
    m->n_threads = threads;
    cr_status s = cr_pool_init(A, threads, &m->pool, err);
    if (s) return s;
    m->thr = cr_calloc(A, threads, sizeof *m->thr);
    if (!m->thr) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (unsigned t = 0; t < threads; t++) {
        m->thr[t].regs = cr_malloc(A, (size_t)(m->regs_max * m->chunk_max * 4));
        /* one staging area per STORE of a kernel, plus one for conversions */
        m->thr[t].io = cr_malloc(A, (size_t)(m->chunk_max * 8 * (m->store_max + 1)));
        m->thr[t].lanes = cr_malloc(A, (size_t)(m->rsum_max ? m->rsum_max : 1) * 8 * sizeof(double));
        m->thr[t].carry = cr_malloc(A, (size_t)(m->code_max ? m->code_max : 1) * sizeof(uint64_t));
        if (!m->thr[t].lanes || !m->thr[t].carry) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
        m->thr[t].keys = m->rowrank_cols ? cr_malloc(A, (size_t)(m->rowrank_cols * 8)) : NULL;
        if (!m->thr[t].regs || !m->thr[t].io || (m->rowrank_cols && !m->thr[t].keys))
            return cr_fail(err, CR_ERR_NOMEM, "out of memory for thread buffers (%llu bytes each)",
                           (unsigned long long)(m->regs_max * m->chunk_max * 4));
    }
    m->maps = cr_calloc(A, p->n_files ? p->n_files : 1, sizeof *m->maps);
    m->ids = cr_calloc(A, p->n_files ? p->n_files : 1, sizeof *m->ids);
    m->regions = cr_calloc(A, p->n_files ? p->n_files : 1, sizeof *m->regions);
    m->scal = cr_calloc(A, p->n_scalars ? p->n_scalars : 1, sizeof *m->scal);
    m->rowvec = cr_calloc(A, p->n_rowvecs ? p->n_rowvecs : 1, sizeof *m->rowvec);
    m->scratch = cr_calloc(A, p->n_scratch ? p->n_scratch : 1, sizeof *m->scratch);
    m->scratch_ready = cr_calloc(A, p->n_scratch ? p->n_scratch : 1, sizeof *m->scratch_ready);
    m->sel = cr_calloc(A, p->n_selects ? p->n_selects : 1, sizeof *m->sel);
    m->nonfinite_in = cr_calloc(A, p->n_inputs ? p->n_inputs : 1, sizeof *m->nonfinite_in);
    m->nonfinite_out = cr_calloc(A, p->n_outputs ? p->n_outputs : 1, sizeof *m->nonfinite_out);
    m->in_checked = cr_calloc(A, p->n_inputs ? p->n_inputs : 1, sizeof *m->in_checked);
    if (!m->nonfinite_in || !m->nonfinite_out || !m->in_checked) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    m->shard_fds = cr_malloc(A, (p->n_shards ? p->n_shards : 1) * sizeof *m->shard_fds);
    if (!m->maps || !m->ids || !m->regions || !m->scal || !m->rowvec || !m->scratch || !m->scratch_ready || !m->sel ||
        !m->shard_fds)
        return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < p->n_shards; i++) m->shard_fds[i] = -1;
    /* which kernel gathers each selection in torch's order (gather_early) */
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        if (p->main[pc].op != CR_OP_KERNEL) continue;
        const cr_prog_kernel *k = &p->kernels[p->main[pc].a];
        for (uint32_t i = 0; i < k->code_len; i++) {
            const cr_insn *in = &p->code[k->code_begin + i];
            if (in->op != CR_OP_TORCH_DESC && in->op != CR_OP_TORCH_ASC) continue;
            m->sel[in->dst].torch_order = in->op;
            m->sel[in->dst].torch_kernel = p->main[pc].a;
            m->sel[in->dst].torch_whole = !(m->mem.stream[pc] & (CR_MEM_SERIAL_GATHERS | CR_MEM_STREAMED));
        }
    }
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

/* Hash each finished shard (one task per shard), reading it back through
 * its descriptor: tensors were written in no particular order, so only the
 * finished file has a well-defined hash. */
static int hash_shard(void *ud, uint64_t i, unsigned thread)
{
    vm *m = ud;
    (void)thread;
    const cr_prog_shard *sh = &m->p->shards[i];
    cr_error e = {0};
    cr_status s = cr_hash_fd(m->alloc, m->shard_fds[i], sh->file_size, m->opt->interrupt, S(m, sh->file_name),
                             &m->shard_hash[i], &e);
    return s ? job_fail(m, s, "%s", e.msg) : 0;
}

static cr_status hash_shards(vm *m, cr_error *err)
{
    m->shard_hash = cr_calloc(m->alloc, m->p->n_shards ? m->p->n_shards : 1, sizeof *m->shard_hash);
    if (!m->shard_hash) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    m->job_status = CR_OK;
    m->err = err;
    cr_pool_run(m->pool, m->p->n_shards, hash_shard, m);
    return m->job_status;
}

/* The index aux with the shard hashes added to its metadata (*out owned by
 * the caller), or *out = NULL when x is not the index. An index in a layout
 * crucible does not write (a hand-made .crb) is written as it is, with a
 * warning: the output is still valid, `crucible verify` reports no hashes. */
static void warn(const vm *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static cr_status index_with_hashes(vm *m, const cr_prog_aux *x, char **out, size_t *len, cr_error *err)
{
    const cr_program *p = m->p;
    *out = NULL;
    if (x->kind != CR_AUX_WRITE || strcmp(S(m, x->dest), CR_INDEX_FILE)) return CR_OK;
    const char **names = cr_calloc(m->alloc, p->n_shards ? p->n_shards : 1, sizeof *names);
    if (!names) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < p->n_shards; i++) names[i] = S(m, p->shards[i].file_name);
    cr_error e = {0};
    cr_status s = cr_index_add_hashes(m->alloc, (const char *)p->blobs + x->content.off, (size_t)x->content.len,
                                      names, m->shard_hash, p->n_shards, out, len, &e);
    cr_free(m->alloc, names);
    if (s == CR_ERR_FORMAT) { warn(m, "%s; shard hashes not recorded", e.msg); return CR_OK; }
    if (s) return cr_fail(err, s, "%s", e.msg);
    return CR_OK;
}

static cr_status write_aux(vm *m, cr_error *err)
{
    const cr_program *p = m->p;
    for (uint32_t i = 0; i < p->n_aux; i++) {
        const cr_prog_aux *x = &p->aux[i];
        char *indexed = NULL;
        size_t indexed_len = 0;
        cr_status s = index_with_hashes(m, x, &indexed, &indexed_len, err);
        if (s) return s;
        char *path = cr_outdir_path(&m->outdir, S(m, x->dest));
        if (!path) { cr_free(m->alloc, indexed); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
        const uint8_t *data;
        uint64_t len;
        if (indexed) { data = (const uint8_t *)indexed; len = indexed_len; }
        else if (x->kind == CR_AUX_WRITE) { data = p->blobs + x->content.off; len = x->content.len; }
        else { data = m->maps[x->src_file]; len = p->files[x->src_file].size; }
        if (!indexed && x->kind != CR_AUX_WRITE && data && len)
            madvise((void *)data, (size_t)len, MADV_WILLNEED);   /* no read-around */
        int fd = m->io->open(m->io->ud, path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0) s = cr_fail_errno(err, errno, "cannot create %s", path);
        else {
            int e = len ? write_all(m->io, fd, data, len, 0) : 0;
            if (!e && m->io->fsync(m->io->ud, fd)) e = errno;
            if (m->io->close(m->io->ud, fd) && !e) e = errno;
            if (e) s = cr_fail_errno(err, e, "cannot write %s", path);
        }
        cr_free(m->alloc, path);
        cr_free(m->alloc, indexed);
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
    cr_memplan_free(&m->mem);
    if (m->thr) for (unsigned t = 0; t < m->n_threads; t++) {
        cr_free(A, m->thr[t].regs); cr_free(A, m->thr[t].io); cr_free(A, m->thr[t].keys);
        cr_free(A, m->thr[t].lanes); cr_free(A, m->thr[t].carry);
    }
    cr_free(A, m->thr);
    if (m->opt->guard) cr_input_guard_clear(m->opt->guard);   /* before the unmapping */
    if (m->maps) for (uint32_t i = 0; i < p->n_files; i++)
        if (m->maps[i]) munmap(m->maps[i], (size_t)p->files[i].size);
    cr_free(A, m->maps);
    cr_free(A, m->ids);
    cr_free(A, m->regions);
    if (m->shard_fds) for (uint32_t i = 0; i < p->n_shards; i++) if (m->shard_fds[i] >= 0) close(m->shard_fds[i]);
    cr_free(A, m->shard_fds);
    cr_free(A, m->shard_hash);
    cr_free(A, m->scal);
    if (m->rowvec) for (uint32_t i = 0; i < p->n_rowvecs; i++) cr_free(A, m->rowvec[i]);
    cr_free(A, m->rowvec);
    if (m->scratch) for (uint32_t i = 0; i < p->n_scratch; i++) cr_free(A, m->scratch[i]);
    cr_free(A, m->scratch);
    cr_free(A, m->scratch_ready);
    if (m->sel) for (uint32_t i = 0; i < p->n_selects; i++) {
        cr_free(A, m->sel[i].hist); cr_free(A, m->sel[i].ties); cr_free(A, m->sel[i].lowor);
        cr_free(A, m->sel[i].kv); cr_free(A, m->sel[i].tiebits);
    }
    cr_free(A, m->sel);
    cr_free(A, (void *)m->nonfinite_in);
    cr_free(A, m->in_checked);
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

/* NaN/Inf: one line for the inputs that hold some and one for the outputs,
 * each naming the first few tensors and counting the rest. A whole model
 * that comes out NaN (linear with weights summing to zero, as in mergekit)
 * is one warning, not one per tensor. */
enum { NONFINITE_NAMED = 3 };

static void name_append(char *buf, size_t cap, size_t *len, const char *s)
{
    int k = snprintf(buf + *len, cap - *len, "%s", s);
    if (k > 0) *len += (size_t)k < cap - *len ? (size_t)k : cap - *len - 1;
}

static void warn_nonfinite(const vm *m)
{
    const cr_program *p = m->p;
    char names[768];
    size_t len = 0;
    uint32_t n_in = 0;
    const char *one_in = NULL, *one_file = NULL;
    names[0] = 0;
    for (uint32_t i = 0; i < p->n_inputs; i++) {
        if (!atomic_load(&m->nonfinite_in[i])) continue;
        const cr_prog_input *v = &p->inputs[i];
        if (v->kind != CR_INPUT_FILE) continue;
        bool seen = false;   /* several views of one tensor: count it once */
        for (uint32_t j = 0; j < i && !seen; j++)
            seen = atomic_load(&m->nonfinite_in[j]) && p->inputs[j].kind == v->kind && p->inputs[j].file == v->file &&
                   p->inputs[j].offset == v->offset;
        if (seen) continue;
        if (n_in < NONFINITE_NAMED) {
            if (n_in) name_append(names, sizeof names, &len, ", ");
            name_append(names, sizeof names, &len, S(m, v->name));
            name_append(names, sizeof names, &len, " in ");
            name_append(names, sizeof names, &len, S(m, p->files[v->file].path));
        }
        if (!n_in) { one_in = S(m, v->name); one_file = S(m, p->files[v->file].path); }
        n_in++;
    }
    if (n_in == 1) warn(m, "input tensor %s in %s contains NaN or Inf", one_in, one_file);
    else if (n_in > 1)
        warn(m, "%u input tensors contain NaN or Inf: %s%s", n_in, names, n_in > NONFINITE_NAMED ? ", ..." : "");

    uint32_t n_out = 0;
    const char *one_out = NULL;
    len = 0;
    names[0] = 0;
    for (uint32_t i = 0; i < p->n_outputs; i++) {
        if (!atomic_load(&m->nonfinite_out[i])) continue;
        if (n_out < NONFINITE_NAMED) {
            if (n_out) name_append(names, sizeof names, &len, ", ");
            name_append(names, sizeof names, &len, S(m, p->outputs[i].name));
        }
        if (!n_out) one_out = S(m, p->outputs[i].name);
        n_out++;
    }
    const char *why = n_in ? "" : " (the inputs have none: the merge produced them)";
    if (n_out == 1) warn(m, "output tensor %s contains NaN or Inf%s", one_out, why);
    else if (n_out > 1)
        warn(m, "%u of %u output tensors contain NaN or Inf%s: %s%s", n_out, p->n_outputs, why, names,
             n_out > NONFINITE_NAMED ? ", ..." : "");
}

void cr_vm_options_init(cr_vm_options *opt) { memset(opt, 0, sizeof *opt); }

/* Open the output directory, declaring every path the run reads: the
 * manifest's files, their model directories, and opt->inputs. */
static cr_status begin_outdir(vm *m, cr_error *err)
{
    cr_input_paths inputs;
    cr_input_paths_init(&inputs, m->alloc);
    /* the caller's paths first: they are named as the user wrote them */
    cr_status s = cr_input_paths_add_all(&inputs, m->opt->inputs, err);
    if (!s) s = cr_input_paths_add_program(&inputs, m->p, err);
    if (!s) {
        cr_outdir_options oo = { .force = m->opt->force, .io = m->io, .inputs = &inputs };
        s = cr_outdir_begin(m->alloc, m->opt->out_dir, &oo, &m->outdir, err);
        m->outdir_open = !s;
    }
    cr_input_paths_free(&inputs);
    return s;
}

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
    /* the output is checked against every input, and created, before a
     * byte of input is read (spec/reliability.md §8.1) */
    if (!s) s = begin_outdir(m, err);
    if (!s) s = open_inputs(m, err);
    uint64_t hashed = atomic_load(&m->bytes_done);
    if (!s) s = create_shards(m, err);
    if (!s) {
        m->phase = CR_VM_PHASE_RUN;
        atomic_store(&m->bytes_done, 0);
        m->bytes_total = 0;
        for (uint32_t i = 0; i < p->n_outputs; i++) m->bytes_total += p->outputs[i].nbytes;
        report(m, true);
        m->writeback = cr_writeback_start(m->alloc, m->io, m->shard_fds, p->n_shards);
        s = run_main(m, err);
        cr_writeback_stop(m->writeback);
        m->writeback = NULL;
    }
    if (!s) { m->phase = CR_VM_PHASE_FINISH; s = hash_shards(m, err); }
    if (!s) s = write_aux(m, err);
    if (!s) s = finish_shards(m, err);
    if (!s && interrupted(m)) s = cr_fail(err, CR_ERR_INTERRUPTED, "interrupted");
    s = check_inputs(m, s, err);
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
