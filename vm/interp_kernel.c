/* interp_kernel.c — kernel execution: one KERNEL instruction of main.
 *
 * vm_run_kernel prepares a job (reduction slots, staging layout from
 * runbuf.h, the library-order sums' streams, streaming windows) and runs it
 * on the pool, one task per chunk; kernel_chunk_body runs the micro-ops
 * over a chunk in per-thread registers, writing outputs with pwrite and
 * reductions to per-chunk (or per-row, or per-thread) slots. After the
 * barrier the main thread folds the reductions in chunk order, so no
 * result depends on the thread count. How each reduction is combined is
 * ops.def's RED column; the selection ops call interp_select.c.
 */
#include "interp.h"
#include "ranksort.h"
#include "refsum.h"
#include "scalar.h"
#include "torchsoftmax.h"
#include "torchsort.h"
#include "kernels/scalar_ops.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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
    uint64_t *store_off;       /* per micro-op: a STORE's staging offset in vm_thread.io (runbuf.h) */
    uint64_t tmp_off;          /* the torch row sums' row copy in vm_thread.io */
    uint64_t block;            /* elements per block (cr_kernel_block) */
    double *partials;          /* n_chunks x n_rsum */
    float **gather;            /* per micro-op: the whole domain's values (RSUM_TORCH off its blocks) */
    /* RSUM_NP, RSSQ_BLAS, RSSQ_TORCH, the *_COL and *_CHUNKS sums: in element order
     * (refsum.h). A chunk copies its values to its thread's buffer; once
     * chunk c - 1 has fed its stream (j->turn == c), chunk c feeds its own.
     * When the kernel's chunks cover whole chunks of 2^20 (`whole`,
     * cr_chunksum_whole), the *_CHUNKS sums need no turn: each VM chunk
     * reduces its own 2^20-chunks block by block, through its thread's
     * `work` (a norm's stream, a sum's cascade partials), into one float each. */
    uint32_t n_ord, n_turn;    /* n_turn: those that take the turn */
    uint32_t *ord_slot;        /* per micro-op: index among them */
    cr_refsum_stream *ord;     /* n_ord (the scalar sums) */
    cr_colsum *col;            /* n_ord (the *_COL sums: state != NULL) */
    cr_chunksum *chunks;       /* n_ord (the *_CHUNKS sums: parts != NULL) */
    bool whole;                /* the *_CHUNKS sums run without the turn */
    uint32_t n_buf, n_work;
    uint32_t *buf_of;          /* n_ord: index in a thread's ordbuf, or (whole *_CHUNKS) in its work */
    float *ordbuf;             /* threads x n_buf x chunk */
    uint8_t *work;             /* threads x n_work x work_bytes */
    size_t work_bytes;         /* cr_chunksum_work_bytes */
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

static void load_view(const vm *m, const cr_prog_input *in, uint64_t base, uint64_t n, float *dst)
{
    unsigned sz = dt_size(in->dtype);
    const uint8_t *src = view_base(m, in);
    if (in->rowmap.len) {
        /* a row gather: each view row from its stored row, or zeros */
        const uint32_t *map = (const uint32_t *)(const void *)(m->p->blobs + in->rowmap.off);
        for (uint64_t e = base, end = base + n; e < end;) {
            uint64_t r = e / in->cols, c = e % in->cols;
            uint64_t len = CR_MIN(in->cols - c, end - e);
            if (map[r] == CR_ROWMAP_ZERO) memset(dst + (e - base), 0, (size_t)len * sizeof *dst);
            else m->kern->load((cr_dtype)in->dtype, src + ((uint64_t)map[r] * in->row_stride + c) * sz,
                               dst + (e - base), (size_t)len);
            e += len;
        }
        return;
    }
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

/* n elements of a strided column of dtype t (stride in elements) -> f32 */
static void load_strided(const vm *m, cr_dtype t, const uint8_t *src, uint64_t stride, float *dst, size_t n)
{
    unsigned sz = dt_size(t);
    switch (t) {
    case CR_DTYPE_F32: for (size_t i = 0; i < n; i++) memcpy(&dst[i], src + i * stride * 4, 4); break;
    case CR_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, src + i * stride * 2, 2); dst[i] = cr_bf16_to_f32(h); }
        break;
    case CR_DTYPE_F16:
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, src + i * stride * 2, 2); dst[i] = cr_f16_to_f32(h); }
        break;
    default: for (size_t i = 0; i < n; i++) m->kern->load(t, src + i * stride * sz, &dst[i], 1); break;
    }
}

/* LOWRANK / LOWRANK_T over elements [base, base + n) of a rows x cols
 * domain (ops.def): each element a float32 FMA chain over k in order from
 * 0, run as whole-row pieces with the ISA's fma over the piece, so every
 * ISA gives the same bits. `w` is the thread's scratch: r + 2 x block
 * floats (runbuf.c). A (r x n) is read a row piece at a time, B (m x r) a
 * row (plain) or a column piece (transposed). */
static void lowrank(const vm *m, const cr_insn *in, uint64_t cols, uint64_t base, size_t n, float *d, float *w,
                    size_t block)
{
    const cr_prog_input *A = &m->p->inputs[in->a], *B = &m->p->inputs[in->b];
    const uint8_t *pa = view_base(m, A), *pb = view_base(m, B);
    unsigned sa = dt_size(A->dtype), sb = dt_size(B->dtype);
    const uint64_t r = A->rows;
    float *coef = w, *tmp = w + r, *splat = w + r + block;
    bool t = in->op == CR_OP_LOWRANK_T;
    for (size_t i = 0; i < n;) {
        uint64_t row = (base + i) / cols, col = (base + i) % cols;
        size_t len = (size_t)CR_MIN(cols - col, n - i);
        float *out = d + i;
        /* the row's coefficients: B[row, :] (plain) or A[:, row] (transposed) */
        if (t) load_strided(m, (cr_dtype)A->dtype, pa + row * sa, A->row_stride, coef, (size_t)r);
        else m->kern->load((cr_dtype)B->dtype, pb + row * B->row_stride * sb, coef, (size_t)r);
        memset(out, 0, len * sizeof *out);
        for (uint64_t k = 0; k < r; k++) {
            if (t) load_strided(m, (cr_dtype)B->dtype, pb + (col * B->row_stride + k) * sb, B->row_stride, tmp, len);
            else m->kern->load((cr_dtype)A->dtype, pa + (k * A->row_stride + col) * sa, tmp, len);
            for (size_t e = 0; e < len; e++) splat[e] = coef[k];
            m->kern->fma(out, splat, tmp, out, len);
        }
        i += len;
    }
}

static bool any_nonfinite(const float *v, size_t n)
{
    unsigned bad = 0;
    for (size_t i = 0; i < n; i++) bad |= (cr_f32_bits(v[i]) & 0x7f800000u) == 0x7f800000u;
    return bad;
}

/* NaN/Inf test on stored bytes of a float dtype (exponent all ones) */
bool vm_any_nonfinite_raw(cr_dtype t, const uint8_t *b, uint64_t n)
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

/* thread's copy of in-order sum `slot`'s values */
static float *ord_buf(const kjob *j, unsigned thread, uint32_t slot)
{
    return j->ordbuf + ((size_t)thread * j->n_buf + j->buf_of[slot]) * j->k->chunk;
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
    if (stopping(m)) return vm_job_fail(m, stop_status(m), "%s", stop_msg(m));
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
        const cr_op_info *info = &cr_op_table[in->op];
        if (info->flags & CR_OPF_ELEM) {
            /* elementwise value ops (ops.def ELEM): the ISA's unary and
             * binary tables take the op; WHERE and FMA are the ternary ops */
            if (in->op == CR_OP_FMA) {
                K->fma(d, REG(in->a), REG(in->b), REG(in->c), n);
            } else if (in->op == CR_OP_WHERE) {
                if (in->dtype == CR_DTYPE_BF16) { K->where_bf16(d, REG(in->a), REG(in->b), REG(in->c), n); continue; }
                K->where(d, REG(in->a), REG(in->b), REG(in->c), n);
            } else if (info->kinds[2] == 'v') {
                if (in->dtype == CR_DTYPE_BF16) { K->binary_bf16((cr_op)in->op, d, REG(in->a), REG(in->b), n); continue; }
                K->binary((cr_op)in->op, d, REG(in->a), REG(in->b), n);
            } else {
                if (in->dtype == CR_DTYPE_BF16) { K->unary_bf16((cr_op)in->op, d, REG(in->a), n); continue; }
                K->unary((cr_op)in->op, d, REG(in->a), n);
            }
            K->round((cr_dtype)in->dtype, d, n);
            continue;
        }
        switch ((cr_op)in->op) {
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
            bool bad = (v->row_stride == v->cols || v->rows <= 1) && !v->rowmap.len && dt_size(v->dtype) == 2
                           ? vm_any_nonfinite_raw((cr_dtype)v->dtype, view_base(m, v) + base * 2, n)
                           : any_nonfinite(d, n);
            if (bad) atomic_store_explicit(&m->nonfinite_in[in->a], 1, memory_order_relaxed);
        }
            break;
        case CR_OP_LOWRANK: case CR_OP_LOWRANK_T:
            lowrank(m, in, k->cols, base, n, d, (float *)t->keys, B);
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
        case CR_OP_TAIL: {
            /* the last m elements of the domain: global index >= n - m */
            double m_ = m->scal[in->a];
            uint64_t start = m_ >= (double)j->n ? 0 : j->n - (uint64_t)m_;
            for (size_t i = 0; i < n; i++) d[i] = base + i >= start ? 1.0f : 0.0f;
            break;
        }
        case CR_OP_RAND:
            K->uniform(p->seed, p->streams[in->a].key, base, d, n);
            break;
        case CR_OP_STORE: {
            /* staged per chunk, written with one pwrite after the last block */
            const cr_prog_output *o = &p->outputs[in->dst];
            unsigned sz = dt_size(o->dtype);
            if (m->shard_fds[o->shard] < 0 && !m->gguf) break;   /* another part's shard (vm/part.h) */
            if (any_nonfinite(REG(in->a), n)) atomic_store_explicit(&m->nonfinite_out[in->dst], 1, memory_order_relaxed);
            K->store((cr_dtype)o->dtype, REG(in->a), t->io + j->store_off[pc] + off * sz, n);
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
                memcpy(ord_buf(j, thread, j->ord_slot[pc]) + off, REG(in->a), n * sizeof(float));
                break;
            }
            memcpy(j->gather[pc] + base, REG(in->a), n * sizeof(float));
            break;
        case CR_OP_RSUM_COL: case CR_OP_RSUM_COL_TORCH: case CR_OP_RSSQ_COL_TORCH:
        case CR_OP_RSUM_TORCH_CHUNKS: case CR_OP_RSSQ_TORCH_CHUNKS:
            /* fed to the column or chunk state in chunk order (kernel_chunk_ordered),
             * or reduced here when the chunks hold whole 2^20-chunks */
            if (j->whole && j->chunks[j->ord_slot[pc]].parts) {
                void *w = j->work + ((size_t)thread * j->n_work + j->buf_of[j->ord_slot[pc]]) * j->work_bytes;
                cr_chunksum_add_at(&j->chunks[j->ord_slot[pc]], w, base, REG(in->a), n);
                break;
            }
            memcpy(ord_buf(j, thread, j->ord_slot[pc]) + off, REG(in->a), n * sizeof(float));
            break;
        case CR_OP_RSUM_ROW_TORCH: case CR_OP_RSSQ_ROW_TORCH: {
            /* rows are whole inside a chunk (such kernels run the chunk as
             * one block); a copy, since the torch sum may work in place */
            double *w = m->rowvec[in->dst];
            float *tmp = (float *)(void *)(t->io + j->tmp_off);
            for (size_t i = 0; i < n; i += (size_t)k->cols) {
                uint64_t row = (base + i) / k->cols;
                float v;
                if (in->op == CR_OP_RSSQ_ROW_TORCH) {
                    v = cr_refsum_torch_ssq(REG(in->a) + i, k->cols);
                } else {
                    memcpy(tmp, REG(in->a) + i, (size_t)k->cols * sizeof(float));
                    v = cr_refsum_torch(tmp, k->cols, in->dtype == CR_DTYPE_BF16 || in->dtype == CR_DTYPE_F16);
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
            for (size_t i = 0; i < n; i += (size_t)k->cols)
                cr_rank_row(a + i, d + i, (size_t)k->cols, t->keys);   /* keys holds 2 x cols */
            break;
        }
        case CR_OP_SOFTMAX_TORCH: {
            /* rows are whole inside a chunk (the kernel runs it as one
             * block); a bf16/f16 dtype picks torch's reduced-float kernel;
             * AVX2's lanes: the dispatch crucible reproduces (compat.md) */
            bool reduced = in->dtype == CR_DTYPE_BF16 || in->dtype == CR_DTYPE_F16;
            for (size_t i = 0; i < n; i += (size_t)k->cols)
                cr_torch_softmax_row(REG(in->a) + i, d + i, k->cols, CR_TORCH_LANES_AVX2, reduced);
            K->round((cr_dtype)in->dtype, d, n);
            break;
        }
        case CR_OP_HIST_HI: case CR_OP_HIST_LO: {
            vm_select *s = &m->sel[in->dst];
            uint64_t *h = s->hist + (size_t)thread * CR_RUN_HIST_BINS;
            const float *a = REG(in->a);
            if (in->op == CR_OP_HIST_HI) {
                uint32_t lo = 0;
                for (size_t i = 0; i < n; i++) { uint32_t key = mag_key(a[i]); h[key >> 16]++; lo |= key; }
                s->lowor[thread] |= lo & 0xffffu;
                /* and the gather's plain keys (torchsort.h: NaN as one key),
                 * in a loop of their own that vectorises (the block is in
                 * cache; inside the histogram's loop the stores were scalar) */
                if (s->early == SEL_EARLY_HI) vm_gather_keys(s->kv + base, a, n);
            } else if (s->direct) {
                s->ties[c] += vm_count_key(a, n, s->threshold);
                if (s->early == SEL_EARLY_LO) vm_gather_words(s->kv, s->threshold, a, base, n);
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
            if (s->k) s->ties[c] += vm_count_key(a, n, s->threshold);
            break;
        }
        case CR_OP_TORCH_DESC: case CR_OP_TORCH_ASC: case CR_OP_TORCH_TOPK: {
            const vm_select *s = &m->sel[in->dst];
            if (s->kv && !s->early) vm_gather_words(s->kv, s->threshold, REG(in->a), base, n);
            break;
        }
        case CR_OP_TOPK_MASK: {
            const vm_select *s = &m->sel[in->b];
            const float *a = REG(in->a);
            if (!s->k) { for (size_t i = 0; i < n; i++) d[i] = 0; break; }
            if (s->tiebits) vm_topk_mask_tiebits(s, a, d, n, base);
            else vm_topk_mask(s, a, d, n, &carry[pc]);
            break;
        }
        default:
            return vm_job_fail(m, CR_ERR_RUNTIME, "op %s inside a kernel", cr_op_table[in->op].name);
        }
    }
    }
#undef REG
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        const cr_insn *in = &j->code[pc];
        if (in->op == CR_OP_RSUM) {
            j->partials[c * j->n_rsum + j->rsum_slot[pc]] = cr_sum8_combine(lanes + 8 * (size_t)j->rsum_slot[pc]);
        } else if (in->op == CR_OP_STORE) {
            cr_error we = {0};
            if (vm_put_output(m, in->dst, cbase, t->io + j->store_off[pc], cn, &we))
                return vm_job_fail(m, we.status, "%s", we.msg);
        }
    }
    if (thread == 0) vm_report(m, false);
    return 0;
}

/* Drop the mapped pages of `file` in [lo, hi), widened to Linux's
 * fault-around blocks (hi rounded up when `out`, else down: a fault at or
 * after hi maps no page below its own block) and clipped to the map. The
 * map is private and never written, so a page another view still reads
 * just faults in again from the page cache. */
void vm_drop_pages(const vm *m, uint32_t file, uintptr_t lo, uintptr_t hi, bool out)
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
uintptr_t vm_view_addr(const vm *m, const cr_prog_input *in, uint64_t e)
{
    uint64_t sz = dt_size(in->dtype);
    if (in->cols && e >= in->rows * in->cols)
        return (uintptr_t)(m->maps[in->file] + in->offset + ((in->rows - 1) * in->row_stride + in->cols) * sz);
    uint64_t r = in->cols ? e / in->cols : 0, c = in->cols ? e % in->cols : 0;
    return (uintptr_t)(m->maps[in->file] + in->offset + (r * in->row_stride + c) * sz);
}

/* drop the pages of chunks [from, to) of every file view the kernel reads
 * (`last`: through the views' ends), and of the spilled gathers it fills */
static void stream_drop(const kjob *j, uint64_t from, uint64_t to, bool last)
{
    vm_gather_drop(j->m, j->k, from * j->k->chunk, last ? j->n : to * j->k->chunk);
    for (uint32_t i = 0; i < j->n_views; i++) {
        const cr_prog_input *in = &j->m->p->inputs[j->views[i]];
        vm_drop_pages(j->m, in->file, vm_view_addr(j->m, in, from * j->k->chunk),
                   vm_view_addr(j->m, in, last ? j->n : to * j->k->chunk), last);
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
            if (j->whole && j->chunks[i].parts) continue;   /* reduced in the chunk's task */
            const float *buf = ord_buf(j, thread, i);
            if (j->col[i].state) cr_colsum_add(&j->col[i], buf, cn);
            else if (j->chunks[i].parts) cr_chunksum_add(&j->chunks[i], buf, cn);
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
        if (j->n_turn) kernel_chunk_ordered(j, c, thread, r == 0);
        return r;
    }
    pthread_mutex_lock(&j->mu);
    while (c >= j->prefix + j->ahead) pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    /* a failed chunk still counts as finished, or the others would wait */
    int r = kernel_chunk_body(j, c, thread);
    if (j->n_turn) kernel_chunk_ordered(j, c, thread, r == 0);
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
        case CR_OP_TIE_COUNT: case CR_OP_TORCH_DESC: case CR_OP_TORCH_ASC: case CR_OP_TORCH_TOPK: need = SEL_FOUND_LO; x = in->dst; break;
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

/* How the VM combines each reduction is ops.def's RED column: RSUM_TORCH
 * in pieces or gathered, the other library-order sums fed in element order
 * (refsum streams, per-column states). */
static bool is_library_sum(uint16_t op)
{
    cr_op_red r = cr_op_table[op].red;
    return r == CR_RED_NP || r == CR_RED_BLAS_SSQ || r == CR_RED_TORCH_SSQ || r == CR_RED_TORCH;
}

/* one KERNEL of main: prepare the job, run its chunks, fold its reductions */
cr_status vm_run_kernel(vm *m, uint32_t ki, bool stream, bool serial, bool small, cr_error *err)
{
    const cr_program *p = m->p;
    /* `small` (memplan: CR_MEM_SMALL_CHUNKS): the kernel's 2^20-element
     * chunks run as small ones, its chunked sums through the turn */
    cr_prog_kernel kk = p->kernels[ki];
    if (small) kk.chunk = cr_mem_small_chunk(&kk);
    const cr_prog_kernel *k = &kk;
    cr_status s = kernel_precheck(m, ki, k, err);
    if (s) return s;
    kjob j = { .m = m, .k = k, .code = p->code + k->code_begin, .n = k->rows * k->cols };
    j.n_chunks = (j.n + k->chunk - 1) / k->chunk;
    j.block = cr_kernel_block(p, k);
    j.store_off = cr_calloc(m->alloc, k->code_len ? k->code_len : 1, sizeof *j.store_off);
    if (!j.store_off) return cr_fail(err, CR_ERR_NOMEM, "out of memory for kernel %u", ki);
    cr_run_stage_layout(p, k, j.store_off, &j.tmp_off);
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        if (j.code[pc].op == CR_OP_RSUM) j.n_rsum++;
        if (j.code[pc].op == CR_OP_STORE) j.n_store++;
    }
    if (j.n_rsum) {
        j.rsum_slot = cr_calloc(m->alloc, k->code_len, sizeof *j.rsum_slot);
        j.partials = cr_calloc(m->alloc, (size_t)j.n_chunks ? (size_t)j.n_chunks * j.n_rsum : 1, sizeof *j.partials);
        if (!j.rsum_slot || !j.partials) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory for kernel %u partial sums", ki); goto out; }
        uint32_t r = 0;
        for (uint32_t pc = 0; pc < k->code_len; pc++) if (j.code[pc].op == CR_OP_RSUM) j.rsum_slot[pc] = r++;
    }
    for (uint32_t pc = 0; pc < k->code_len; pc++)
        j.n_ord += cr_op_refsum_kind((cr_op)j.code[pc].op) >= 0 || cr_op_colsum_kind((cr_op)j.code[pc].op) >= 0 ||
                   cr_op_chunksum_kind((cr_op)j.code[pc].op) >= 0;
    if (j.n_ord) {
        /* whole 2^20-chunks in each VM chunk, and blocks the torch sum can take as pieces */
        j.whole = cr_chunksum_whole(k->chunk, j.n) && cr_chunksum_pieces_ok(j.n, j.block);
        j.ord_slot = cr_calloc(m->alloc, k->code_len, sizeof *j.ord_slot);
        j.ord = cr_calloc(m->alloc, j.n_ord, sizeof *j.ord);
        j.col = cr_calloc(m->alloc, j.n_ord, sizeof *j.col);
        j.chunks = cr_calloc(m->alloc, j.n_ord, sizeof *j.chunks);
        j.buf_of = cr_calloc(m->alloc, j.n_ord, sizeof *j.buf_of);
        if (!j.ord_slot || !j.ord || !j.col || !j.chunks || !j.buf_of) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory for kernel %u sums", ki); goto out; }
        for (uint32_t pc = 0, r = 0; pc < k->code_len; pc++) {
            int chkind = cr_op_chunksum_kind((cr_op)j.code[pc].op);
            if (cr_op_refsum_kind((cr_op)j.code[pc].op) < 0 && cr_op_colsum_kind((cr_op)j.code[pc].op) < 0 && chkind < 0) continue;
            bool own = j.whole && chkind >= 0;   /* reduced in the chunk's task: no copy, no turn */
            j.buf_of[r++] = own ? j.n_work++ : j.n_buf++;
            j.n_turn += !own;
        }
        j.work_bytes = cr_chunksum_work_bytes(j.n);
        j.ordbuf = cr_malloc(m->alloc, (size_t)m->n_threads * j.n_buf * k->chunk * sizeof(float) + 1);
        j.work = cr_malloc(m->alloc, (size_t)m->n_threads * j.n_work * j.work_bytes + 1);
        if (!j.ordbuf || !j.work) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory for kernel %u sums", ki); goto out; }
        uint32_t r = 0;
        for (uint32_t pc = 0; pc < k->code_len; pc++) {
            int kind = cr_op_refsum_kind((cr_op)j.code[pc].op), ckind = cr_op_colsum_kind((cr_op)j.code[pc].op);
            int chkind = cr_op_chunksum_kind((cr_op)j.code[pc].op);
            j.ord_slot[pc] = kind >= 0 || ckind >= 0 || chkind >= 0 ? r : UINT32_MAX;
            if (kind >= 0) cr_refsum_stream_init(&j.ord[r++], (cr_refsum_kind)kind, j.n);
            if (chkind >= 0 && j.whole) {
                float *parts = cr_malloc(m->alloc, cr_chunksum_parts_bytes(j.n) + 1);
                if (!parts) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory for kernel %u chunked sums", ki); goto out; }
                cr_chunksum_init_parts(&j.chunks[r++], (cr_chunksum_kind)chkind, j.n, parts);
                continue;
            }
            if (chkind >= 0) {
                void *parts = cr_malloc(m->alloc, cr_chunksum_state_bytes((cr_chunksum_kind)chkind, j.n) + 1);
                if (!parts) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory for kernel %u chunked sums", ki); goto out; }
                cr_chunksum_init(&j.chunks[r++], (cr_chunksum_kind)chkind, j.n, parts);
                continue;
            }
            if (ckind < 0) continue;
            void *state = cr_malloc(m->alloc, cr_colsum_state_bytes((cr_colsum_kind)ckind, k->cols) + 1);
            if (!state) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory for kernel %u column sums", ki); goto out; }
            uint64_t rows = p->rowvecs[j.code[pc].dst].rows;   /* the first rows only, or all */
            cr_colsum_init(&j.col[r++], (cr_colsum_kind)ckind, rows ? rows : k->rows, k->cols, state);
        }
    }
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        if (!is_library_sum(j.code[pc].op) || cr_op_refsum_kind((cr_op)j.code[pc].op) >= 0) continue;
        if (cr_op_table[j.code[pc].op].red == CR_RED_TORCH) {
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
    if ((s = vm_gather_early(m, ki, stream, err))) goto out;
    if (vm_kernel_is_idle(m, k)) {
        m->kernels_idle++;
        goto out;
    }
    m->kernels_run++;
    if (stream && j.n_chunks) {
        j.done = cr_calloc(m->alloc, (size_t)j.n_chunks, 1);
        j.views = cr_calloc(m->alloc, k->code_len, sizeof *j.views);
        if (!j.done || !j.views) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory for kernel %u", ki); goto out; }
        for (uint32_t pc = 0; pc < k->code_len; pc++) {
            const cr_insn *in = &j.code[pc];
            /* a row gather reads its rows in any order: its pages stay
             * until the view is released (memplan charges it whole) */
            if (in->op != CR_OP_LOAD || p->inputs[in->a].kind != CR_INPUT_FILE || p->inputs[in->a].rowmap.len) continue;
            bool dup = false;
            for (uint32_t v = 0; v < j.n_views && !dup; v++) dup = j.views[v] == in->a;
            if (!dup) j.views[j.n_views++] = in->a;
        }
        j.stream = true;
        j.ahead = (uint64_t)CR_MEM_STREAM_AHEAD * m->n_threads;
        j.step = (uint64_t)CR_MEM_STREAM_STEP * m->n_threads;
    }
    if (j.stream || j.n_turn) {
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
        n_torch += cr_op_torch_order(j.code[pc].op);
    const uint32_t n_pass = serial && n_torch > 1 ? n_torch : 1;
    for (uint32_t pass = 0; pass < n_pass && !s; pass++) {
        const cr_insn *mine = NULL;
        for (uint32_t pc = 0, t = 0; pc < k->code_len && !s; pc++) {
            const cr_insn *in = &j.code[pc];
            if (!cr_op_torch_order(in->op)) continue;
            if (n_pass == 1 || t == pass) s = vm_torch_gather_begin(m, mine = in, j.n, err);
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
        if (n_pass > 1 && m->sel[mine->dst].kv) s = vm_torch_ties(m, mine->dst, err);
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
        } else if (j.ord_slot && j.ord_slot[pc] != UINT32_MAX && j.chunks[j.ord_slot[pc]].parts) {
            m->scal[in->dst] = cr_scalar_round(in->dtype, cr_chunksum_finish(&j.chunks[j.ord_slot[pc]]));
        } else if (j.ord_slot && j.ord_slot[pc] != UINT32_MAX && j.col[j.ord_slot[pc]].state) {
            double *w = m->rowvec[in->dst];
            cr_colsum_finish(&j.col[j.ord_slot[pc]], w);
            for (uint64_t c = 0; c < k->cols; c++) w[c] = cr_scalar_round(in->dtype, w[c]);
        } else if (j.ord_slot && j.ord_slot[pc] != UINT32_MAX) {
            m->scal[in->dst] = cr_scalar_round(in->dtype, cr_refsum_stream_finish(&j.ord[j.ord_slot[pc]]));
        } else if (is_library_sum(in->op)) {
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
    for (uint32_t i = 0; j.chunks && i < j.n_ord; i++) cr_free(m->alloc, j.chunks[i].parts);
    cr_free(m->alloc, j.col);
    cr_free(m->alloc, j.chunks);
    cr_free(m->alloc, j.ord_slot);
    cr_free(m->alloc, j.ord);
    cr_free(m->alloc, j.ordbuf);
    cr_free(m->alloc, j.buf_of);
    cr_free(m->alloc, j.work);
    cr_free(m->alloc, j.rsum_slot);
    cr_free(m->alloc, j.store_off);
    cr_free(m->alloc, j.partials);
    cr_free(m->alloc, j.done);
    cr_free(m->alloc, j.views);
    return s;
}

