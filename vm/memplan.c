/* memplan.c — the memory model of a run (memplan.h): a walk over the
 * program's top-level stream that keeps the bytes each step holds.
 *
 * What is counted, and why (spec/plan.md has the measurements):
 * - mapped input pages: a kernel's LOADs fault in every page of the views
 *   they read (plus Linux's fault-around block at the edges); they stay
 *   resident until the RELEASE after the tensor's last kernel, or, for a
 *   streamed step, a bounded window behind the chunks in flight;
 * - per-thread buffers as far as kernels write them: a kernel with r
 *   registers and chunk c writes (r - 1) x c + min(c, numel) floats of the
 *   register file, not the whole allocation sized for the largest kernel;
 * - heap that comes and goes: scratch tensors from their SSTORE to SFREE,
 *   selection histograms from SEL_INIT to SEL_FIND_LO (tie counts stay),
 *   per-kernel partial sums, the library-order sums' per-thread chunk
 *   buffers (or RSUM_TORCH's block partials, or the chunked sums'
 *   per-thread work and one float per 2^20-chunk) and per-column states,
 *   torch tie-order gathers, or for a gather kept in a file (spill.h) the
 *   window of it that is resident while it is filled and sorted;
 * - the program tables and a measured baseline for the process itself.
 * Address-space reservations that are never touched cost nothing and are
 * not counted.
 */
#include "memplan.h"
#include "pool.h"
#include "limits.h"
#include "refsum.h"
#include "runbuf.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HIST_BYTES CR_RUN_HIST_BYTES   /* one thread's selection histogram (runbuf.h) */

static uint64_t up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
static uint64_t down(uint64_t v, uint64_t a) { return v / a * a; }

static unsigned dsize(unsigned t) { return cr_dtype_size((cr_dtype)t); }

/* bytes from a view's offset to the end of its last element */
static uint64_t view_extent(const cr_prog_input *in)
{
    if (!in->rows || !in->cols) return 0;
    if (in->rowmap.len) return in->nbytes;      /* a row gather may touch every stored row */
    return ((in->rows - 1) * in->row_stride + in->cols) * dsize(in->dtype);
}

/* resident bytes once a view has been read whole: its pages, widened to
 * the fault-around blocks at both ends */
static uint64_t view_resident(const cr_prog_input *in)
{
    uint64_t e = view_extent(in);
    if (!e) return 0;
    return up(in->offset + e, CR_MEM_FAULT_AROUND) - down(in->offset, CR_MEM_FAULT_AROUND);
}

/* resident bytes of a view read by a streamed kernel: the chunks in flight
 * and not yet dropped, widened the same way, at most the whole view */
static uint64_t view_window(const cr_prog_input *in, uint64_t chunk, unsigned threads)
{
    if (in->rowmap.len) return view_resident(in);   /* never dropped while the kernel runs */
    uint64_t chunks = (uint64_t)(CR_MEM_STREAM_AHEAD + CR_MEM_STREAM_STEP) * threads;
    uint64_t stride = in->cols && in->row_stride > in->cols ? in->row_stride : in->cols;
    uint64_t w = chunks * chunk * dsize(in->dtype);
    if (in->cols && stride != in->cols) w = w / in->cols * stride + stride * dsize(in->dtype);
    w += 3 * CR_MEM_FAULT_AROUND;
    return CR_MIN(w, view_resident(in));
}

/* canonical id per FILE input: views of the same (file, offset) share one,
 * so a tensor read through two views counts once */
typedef struct canon_key { uint32_t file; uint64_t offset; uint32_t index; } canon_key;

static int cmp_key(const void *a, const void *b)
{
    const canon_key *x = a, *y = b;
    if (x->file != y->file) return x->file < y->file ? -1 : 1;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static uint32_t *canon_ids(const cr_program *p, const cr_allocator *a, uint32_t *n_ids)
{
    uint32_t *id = cr_calloc(a, p->n_inputs + 1, sizeof *id);
    canon_key *k = cr_calloc(a, p->n_inputs + 1, sizeof *k);
    if (!id || !k) { cr_free(a, id); cr_free(a, k); return NULL; }
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->n_inputs; i++)
        if (p->inputs[i].kind == CR_INPUT_FILE) k[n++] = (canon_key){ p->inputs[i].file, p->inputs[i].offset, i };
    qsort(k, n, sizeof *k, cmp_key);
    uint32_t c = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (i && (k[i].file != k[i - 1].file || k[i].offset != k[i - 1].offset)) c++;
        id[k[i].index] = c + 1;   /* 0: not a file input */
    }
    *n_ids = n ? c + 2 : 1;
    cr_free(a, k);
    return id;
}

uint64_t cr_memplan_file_bytes(const cr_program *p)
{
    uint32_t n_ids;
    const cr_allocator *a = p->alloc ? p->alloc : cr_default_allocator();
    uint32_t *id = canon_ids(p, a, &n_ids);
    uint8_t *got = id ? cr_calloc(a, n_ids, 1) : NULL;
    uint64_t total = 0;
    for (uint32_t pc = 0; got && pc < p->n_main; pc++) {
        const cr_insn *in = &p->main[pc];
        if (in->op == CR_OP_COPY && id[in->a] && !got[id[in->a]]) {
            got[id[in->a]] = 1;
            total += view_extent(&p->inputs[in->a]);
        }
        if (in->op != CR_OP_KERNEL) continue;
        const cr_prog_kernel *k = &p->kernels[in->a];
        for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++) {
            const cr_insn *u = &p->code[c];
            bool lr = u->op == CR_OP_LOWRANK || u->op == CR_OP_LOWRANK_T;
            if (u->op != CR_OP_LOAD && !lr) continue;
            for (int o = 0; o < (lr ? 2 : 1); o++) {
                uint32_t v = o ? u->b : u->a;
                if (!id[v] || got[id[v]]) continue;
                got[id[v]] = 1;
                total += view_extent(&p->inputs[v]);
            }
        }
    }
    cr_free(a, got);
    cr_free(a, id);
    return total;
}

void cr_memplan_each_select(const cr_program *p, uint32_t pc, void (*fn)(uint32_t x, void *ctx), void *ctx)
{
    const cr_insn *in = &p->main[pc];
    if (in->op == CR_OP_SEL_PREFIX) fn(in->dst, ctx);
    if (in->op != CR_OP_KERNEL) return;
    const cr_prog_kernel *k = &p->kernels[in->a];
    for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++) {
        const cr_insn *u = &p->code[c];
        const char *kinds = cr_op_table[u->op].kinds;
        const uint32_t ops[4] = { u->dst, u->a, u->b, u->c };
        for (int j = 0; j < 4; j++)
            if (kinds[j] == 'x') fn(ops[j], ctx);
    }
}

typedef struct sel_last_ctx { uint32_t *last, pc; } sel_last_ctx;
static void set_last(uint32_t x, void *ctx)
{
    sel_last_ctx *c = ctx;
    c->last[x] = c->pc;
}

void cr_memplan_sel_last(const cr_program *p, uint32_t *last)
{
    for (uint32_t x = 0; x < p->n_selects; x++) last[x] = UINT32_MAX;
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        sel_last_ctx c = { last, pc };
        cr_memplan_each_select(p, pc, set_last, &c);
    }
}

static uint64_t program_bytes(const cr_program *p)
{
    return p->n_blob_bytes + (uint64_t)p->n_files * sizeof *p->files + (uint64_t)p->n_inputs * sizeof *p->inputs +
           (uint64_t)p->n_shards * sizeof *p->shards + (uint64_t)p->n_outputs * sizeof *p->outputs +
           (uint64_t)p->n_aux * sizeof *p->aux + (uint64_t)p->n_scalars * 8 * 2 +
           (uint64_t)p->n_kernels * sizeof *p->kernels + (uint64_t)(p->n_code + p->n_main) * sizeof(cr_insn) +
           (uint64_t)(p->n_inputs + p->n_outputs) * 2;   /* the VM's NaN flags */
}

/* one walk at a fixed thread count; returns whether every step fits */
typedef struct walk {
    const cr_program *p;
    unsigned threads;
    uint64_t budget;          /* 0: none */
    const uint32_t *id;
    uint64_t *mapped;         /* per canonical id: resident bytes now */
    uint8_t *sel_live, *scr_live;
    uint8_t *sel_bits;        /* per selection: its torch tie bits are allocated */
    uint32_t *sel_last;       /* per selection: cr_memplan_sel_last */
    uint8_t *spill;           /* out: per selection (memplan.h spill) */
    uint8_t *stream;          /* out: per main pc */
    /* gathers kept between tensors (gatherpool.h): the VM's pool replayed
     * with capacities only; held = its buffers' bytes, in use or kept */
    bool pool;
    cr_gather_pool gp;
    uint64_t *taken;          /* capacities a kernel takes, returned after it */
    uint8_t *gathered;        /* per selection: some kernel gathers it in torch's order */
    uint64_t *pre;            /* per selection: the capacity a HI_GATHER pass took for it (0: none) */
    uint64_t held, held_max;
    uint64_t *cur;            /* per main pc: the largest total the step reaches (gather_keep) */
    uint64_t fixed, peak, peak_heap, peak_mapped;
    uint32_t peak_pc, n_streamed;
    uint32_t bad_pc;          /* first step over budget */
    uint64_t bad_need;
} walk;

static const char *step_name(const cr_program *p, uint32_t pc)
{
    const cr_insn *in = &p->main[pc];
    if (in->op == CR_OP_COPY) return cr_prog_str(p, p->outputs[in->dst].name);
    const cr_prog_kernel *k = &p->kernels[in->a];
    for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++)
        if (p->code[c].op == CR_OP_STORE) return cr_prog_str(p, p->outputs[p->code[c].dst].name);
    for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++)
        if (p->code[c].op == CR_OP_LOAD) return cr_prog_str(p, p->inputs[p->code[c].a].name);
    return "?";
}

uint64_t cr_kernel_block(const cr_program *p, const cr_prog_kernel *k)
{
    if (k->chunk <= CR_KERNEL_BLOCK) return k->chunk;
    for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++)
        if (cr_op_table[p->code[c].op].flags & CR_OPF_UNBLOCKED) {
            /* whole rows, as few as make CR_KERNEL_BLOCK elements: the
             * chunk holds whole rows (program.c checks it), so every block
             * does too; one chunk of 16384 as one block kept each register
             * in L2 (DELLA's probability ops on ROWRANK, 19% of della-3's
             * CPU in v_binary_bf16) */
            if (!k->cols || k->chunk % k->cols) return k->chunk;
            uint64_t b = (CR_KERNEL_BLOCK + k->cols - 1) / k->cols * k->cols;
            return b < k->chunk ? b : k->chunk;
        }
    return CR_KERNEL_BLOCK;
}

/* the per-thread buffers a run allocates (runbuf.h), as resident pages:
 * each buffer is written from its start, so its pages are touched up to
 * the largest kernel's need */
static uint64_t thread_bytes(const cr_program *p, unsigned threads, uint64_t page)
{
    cr_run_thread_bufs b;
    cr_run_thread_bufs_of(p, &b);
    uint64_t small = b.lanes + b.carry;   /* malloc'd beside other heap, not whole pages */
    uint64_t per = up(b.regs, page) + up(b.io, page) + up(b.keys, page) + small;
    uint64_t t0 = up(b.regs0, page) + up(b.io0, page) + up(b.keys, page) + small;
    return per * (threads - 1) + t0;
}

bool cr_mem_can_rechunk(const cr_program *p, const cr_prog_kernel *k)
{
    bool sums = false;
    for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++) {
        const cr_op_info *o = &cr_op_table[p->code[c].op];
        if (o->red == CR_RED_SELECT || p->code[c].op == CR_OP_TOPK_MASK) return false;
        sums |= cr_op_chunksum_kind((cr_op)p->code[c].op) >= 0;
    }
    return sums && cr_mem_small_chunk(k) < k->chunk;
}

uint64_t cr_mem_small_chunk(const cr_prog_kernel *k)
{
    const uint64_t small = 16384;   /* the compiler's chunk for every other kernel (emit.c domain_chunk) */
    if (!(k->flags & CR_KERNEL_ROWS) || !k->cols) return CR_MIN(small, k->chunk);
    uint64_t rows = small / k->cols ? small / k->cols : 1;
    return CR_MIN(rows * k->cols, k->chunk);
}

/* whether kernel k's inputs fit the budget whole at its own chunk, with
 * its chunked sums' floats and per-thread work (else it streams, and a
 * rechunkable kernel streams in small chunks) */
static bool fits_whole(const walk *w, const cr_program *p, const cr_prog_kernel *k, uint64_t heap, uint64_t mapped,
                       uint64_t page)
{
    const uint64_t numel = k->rows * k->cols;
    uint64_t need = 0;
    for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++) {
        const cr_insn *u = &p->code[c];
        if (cr_op_chunksum_kind((cr_op)u->op) >= 0)
            need += up(cr_chunksum_parts_bytes(numel) + 1, page) + up(w->threads * cr_chunksum_work_bytes(numel), page);
        uint32_t id = u->op == CR_OP_LOAD ? w->id[u->a] : 0;
        if (!id) continue;
        bool dup = false;
        for (uint32_t d = k->code_begin; d < c && !dup; d++)
            dup = p->code[d].op == CR_OP_LOAD && w->id[p->code[d].a] == id;
        uint64_t full = view_resident(&p->inputs[u->a]);
        if (!dup && full > w->mapped[id]) need += full - w->mapped[id];
    }
    return w->fixed + heap + mapped + need <= w->budget;
}

/* resident bytes of a spilled gather of n words while a streamed kernel
 * fills it: the chunks in flight and not yet dropped (interp_kernel.c
 * drops them with the inputs' pages), widened to fault-around blocks */
static uint64_t spill_window(uint64_t n, uint64_t chunk, unsigned threads, uint64_t page)
{
    uint64_t chunks = (uint64_t)(CR_MEM_STREAM_AHEAD + CR_MEM_STREAM_STEP) * threads;
    return CR_MIN(chunks * chunk * 4 + 3 * CR_MEM_FAULT_AROUND, up(n * 4, page));
}

/* a selection's tie bits leave the count after their last use (vm_sel_release) */
typedef struct release_ctx { walk *w; uint32_t pc; uint64_t page; uint64_t *heap; } release_ctx;
static void release_bits(uint32_t x, void *ctx)
{
    release_ctx *c = ctx;
    if (!c->w->sel_bits[x] || c->w->sel_last[x] != c->pc) return;
    *c->heap -= up((c->w->p->selects[x].n / 64 + 1) * 8, c->page);
    c->w->sel_bits[x] = 0;
}

/* a gather of n words from the pool: a kept buffer, or a fresh one held
 * from here on; returns its capacity */
static uint64_t pool_take(walk *w, uint64_t n, uint64_t page)
{
    uint32_t *buf, *drop;
    uint64_t cap, drop_cap;
    if (!cr_gather_pool_take(&w->gp, n, &buf, &cap, &drop, &drop_cap)) {
        if (drop_cap) w->held -= up(drop_cap * 4, page);
        w->held += up(n * 4, page);
        w->held_max = CR_MAX(w->held_max, w->held);
        cap = n;
    }
    return cap;
}

static void note(walk *w, uint32_t pc, uint64_t heap, uint64_t mapped)
{
    heap += w->held;
    uint64_t total = w->fixed + heap + mapped;
    w->cur[pc] = CR_MAX(w->cur[pc], total);
    if (total > w->peak) { w->peak = total; w->peak_heap = heap; w->peak_mapped = mapped; w->peak_pc = pc; }
    if (w->budget && total > w->budget && w->bad_pc == UINT32_MAX) { w->bad_pc = pc; w->bad_need = total; }
}

static bool run_walk(walk *w, uint64_t page)
{
    const cr_program *p = w->p;
    uint64_t heap = 0, mapped = 0;
    w->peak = w->fixed;
    w->peak_heap = w->peak_mapped = 0;
    w->peak_pc = 0;
    w->n_streamed = 0;
    w->bad_pc = UINT32_MAX;
    memset(w->sel_bits, 0, p->n_selects + 1);
    memset(w->spill, 0, p->n_selects + 1);
    w->gp.n = 0;
    w->held = w->held_max = 0;
    memset(w->pre, 0, (p->n_selects + 1) * sizeof *w->pre);
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        const cr_insn *in = &p->main[pc];
        uint64_t heap0 = heap, mapped0 = mapped;
        w->stream[pc] = 0;
        w->cur[pc] = 0;
        switch ((cr_op)in->op) {
        case CR_OP_SEL_INIT:
            if (!w->sel_live[in->dst]) {
                const cr_prog_select *s = &p->selects[in->dst];
                heap += w->threads * HIST_BYTES + ((s->n + s->chunk - 1) / (s->chunk ? s->chunk : 1)) * 8;
                w->sel_live[in->dst] = 1;
            }
            break;
        case CR_OP_SEL_FIND_LO:
            if (w->sel_live[in->dst] == 1) { heap -= w->threads * HIST_BYTES; w->sel_live[in->dst] = 2; }
            break;
        case CR_OP_SFREE:
            if (w->scr_live[in->dst]) {
                heap -= up(p->scratch[in->dst].numel * dsize(p->scratch[in->dst].dtype) + 1, page);
                w->scr_live[in->dst] = 0;
            }
            break;
        case CR_OP_RELEASE: {
            uint32_t c = w->id[in->a];
            if (c) { mapped -= w->mapped[c]; w->mapped[c] = 0; }
            break;
        }
        case CR_OP_COPY: {
            const cr_prog_input *v = &p->inputs[in->a];
            uint32_t c = w->id[in->a];
            if (!c) { note(w, pc, heap, mapped); break; }
            uint64_t full = view_resident(v), have = w->mapped[c];
            uint64_t need = full > have ? full - have : 0;
            if (w->budget && w->fixed + heap + mapped + need > w->budget) {
                w->stream[pc] = CR_MEM_STREAMED;
                w->n_streamed++;
                note(w, pc, heap, mapped - have + CR_MIN(full, CR_MEM_COPY_BLOCK + 3 * CR_MEM_FAULT_AROUND));
                mapped -= have;
                w->mapped[c] = 0;
            } else {
                mapped += need;
                w->mapped[c] = CR_MAX(have, full);
                note(w, pc, heap, mapped);
            }
            break;
        }
        case CR_OP_KERNEL: {
            cr_prog_kernel kk = p->kernels[in->a];
            const cr_prog_kernel *k = &kk;
            uint64_t numel = k->rows * k->cols;
            if (w->budget && cr_mem_can_rechunk(p, k) && !fits_whole(w, p, k, heap, mapped, page)) {
                kk.chunk = cr_mem_small_chunk(k);
                w->stream[pc] |= CR_MEM_SMALL_CHUNKS;
            }
            uint64_t n_chunks = k->chunk ? (numel + k->chunk - 1) / k->chunk : 0;
            uint64_t trans = 0, n_rsum = 0, n_work = 0, gath = 0, gath1 = 0, bits = 0;
            uint32_t n_spill = 0, n_taken = 0;
            /* a HI_GATHER pass takes the gathers of its bf16 selections
             * from the pool (vm_gather_early): held from here, not from the
             * gathering kernel, which then takes nothing */
            for (uint32_t c = k->code_begin; w->pool && (k->flags & CR_KERNEL_HI_GATHER) && c < k->code_begin + k->code_len; c++) {
                const cr_insn *u = &p->code[c];
                if (u->op != CR_OP_HIST_HI || !w->gathered[u->dst] || w->pre[u->dst]) continue;
                w->pre[u->dst] = pool_take(w, p->selects[u->dst].n, page);
            }
            for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++) {
                const cr_insn *u = &p->code[c];
                if (u->op == CR_OP_RSUM) n_rsum++;
                /* sums in element order: each thread's copy of its chunk */
                if (cr_op_refsum_kind((cr_op)u->op) >= 0)
                    trans += w->threads * up(CR_MIN(k->chunk, numel) * 4, page);
                /* per-column sums: the same chunk copies and the column state */
                if (cr_op_colsum_kind((cr_op)u->op) >= 0) {
                    cr_colsum_kind ck = (cr_colsum_kind)cr_op_colsum_kind((cr_op)u->op);
                    trans += w->threads * up(CR_MIN(k->chunk, numel) * 4, page) +
                             up(cr_colsum_state_bytes(ck, k->cols) + 1, page);
                }
                /* chunked sums (slerp 0.1.5): the same chunk copies and a chunk of
                 * values; or, when each chunk reduces its own 2^20-chunks, one
                 * cr_chunksum_work_bytes per thread (interp_kernel.c) */
                if (cr_op_chunksum_kind((cr_op)u->op) >= 0) {
                    cr_chunksum_kind ck = (cr_chunksum_kind)cr_op_chunksum_kind((cr_op)u->op);
                    if (cr_chunksum_whole(k->chunk, numel) && cr_chunksum_pieces_ok(numel, cr_kernel_block(p, k))) {
                        n_work++;
                        trans += up(cr_chunksum_parts_bytes(numel) + 1, page);
                    } else {
                        trans += w->threads * up(CR_MIN(k->chunk, numel) * 4, page) +
                                 up(cr_chunksum_state_bytes(ck, numel) + 1, page);
                    }
                }
                if (cr_op_table[u->op].red == CR_RED_TORCH) {   /* interp_kernel.c: in pieces when chunks hold whole blocks */
                    cr_torch_sum_plan pl;
                    cr_torch_sum_plan_init(&pl, numel, u->dtype == CR_DTYPE_BF16 || u->dtype == CR_DTYPE_F16);
                    if (pl.n_blocks && k->chunk % pl.block == 0 && cr_kernel_block(p, k) % pl.group == 0)
                        trans += up(pl.n_blocks * 32 * 4, page) + up((numel - pl.rem_start + 1) * 4, page);
                    else
                        trans += up((numel ? numel : 1) * 4, page);
                }
                /* a torch tie order gathers one word per element of its
                 * selection when the threshold's ties don't all fit: assume
                 * they don't (bf16 deltas nearly always tie there); then
                 * one bit per element, kept until the next SEL_INIT */
                if (cr_op_torch_order(u->op)) {
                    uint64_t n = p->selects[u->dst].n;
                    if (w->pool) {
                        uint64_t cap = w->pre[u->dst] ? w->pre[u->dst] : pool_take(w, n, page);
                        w->pre[u->dst] = 0;
                        w->taken[n_taken++] = cap;
                    } else {
                        gath += up(n * 4, page);
                        gath1 = CR_MAX(gath1, up(n * 4, page));
                    }
                    if (!w->sel_bits[u->dst]) bits += up((n / 64 + 1) * 8, page);
                }
                if (u->op == CR_OP_SSTORE && !w->scr_live[u->dst]) {
                    heap += up(p->scratch[u->dst].numel * dsize(p->scratch[u->dst].dtype) + 1, page);
                    w->scr_live[u->dst] = 1;
                }
            }
            if (n_rsum) trans += up(n_chunks * n_rsum * 8, page);
            if (n_work) trans += up(w->threads * n_work * cr_chunksum_work_bytes(numel) + 1, page);
            /* LOWRANK's A and B: every chunk reads them whole, so they
             * stay mapped, streamed or not, until their RELEASE */
            for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++) {
                const cr_insn *u = &p->code[c];
                if (u->op != CR_OP_LOWRANK && u->op != CR_OP_LOWRANK_T) continue;
                for (int o = 0; o < 2; o++) {
                    uint32_t v = o ? u->b : u->a, id = w->id[v];
                    uint64_t full = id ? view_resident(&p->inputs[v]) : 0;
                    if (full > w->mapped[id]) { mapped += full - w->mapped[id]; w->mapped[id] = full; }
                }
            }
            /* the views this kernel reads, each once */
            uint64_t need = 0, have = 0, window = 0;
            for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++) {
                const cr_insn *u = &p->code[c];
                uint32_t id = u->op == CR_OP_LOAD ? w->id[u->a] : 0;
                if (!id) continue;
                bool dup = false;
                for (uint32_t d = k->code_begin; d < c && !dup; d++)
                    dup = p->code[d].op == CR_OP_LOAD && w->id[p->code[d].a] == id;
                if (dup) continue;
                uint64_t full = view_resident(&p->inputs[u->a]);
                have += w->mapped[id];
                need += full > w->mapped[id] ? full - w->mapped[id] : 0;
                window += view_window(&p->inputs[u->a], k->chunk, w->threads);
            }
            trans += gath + bits;
            if (w->budget && w->fixed + heap + trans + mapped + need > w->budget) {
                w->stream[pc] |= CR_MEM_STREAMED;
                w->n_streamed++;
                /* the gathers one at a time, when that is allowed and fits */
                if (gath > gath1 && (k->flags & CR_KERNEL_TIES_ONLY) && w->fixed + heap + trans + mapped - have + window > w->budget &&
                    w->fixed + heap + trans - gath + gath1 + mapped - have + window <= w->budget) {
                    trans -= gath - gath1;
                    w->stream[pc] |= CR_MEM_SERIAL_GATHERS;
                }
                /* even streamed, the tie-order gathers do not fit: the last
                 * ones go to a file (spill.h), until the rest fit; a
                 * spilled gather holds the window of chunks in flight */
                for (uint32_t c = k->code_begin + k->code_len; c-- > k->code_begin;) {
                    const cr_insn *u = &p->code[c];
                    if (w->fixed + heap + trans + mapped - have + window <= w->budget) break;
                    if (!cr_op_torch_order(u->op) || w->spill[u->dst]) continue;
                    uint64_t n = p->selects[u->dst].n;
                    trans -= (w->stream[pc] & CR_MEM_SERIAL_GATHERS ? gath1 : up(n * 4, page)) -
                             spill_window(n, k->chunk, w->threads, page);
                    if (w->stream[pc] & CR_MEM_SERIAL_GATHERS) {   /* the spills bound memory: all in one pass */
                        w->stream[pc] &= (uint8_t)~CR_MEM_SERIAL_GATHERS;
                        trans += gath - up(n * 4, page);
                    }
                    w->spill[u->dst] = 1;
                    n_spill++;
                }
                note(w, pc, heap + trans, mapped - have + window);
                mapped -= have;
                for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++)
                    if (p->code[c].op == CR_OP_LOAD && w->id[p->code[c].a]) w->mapped[w->id[p->code[c].a]] = 0;
            } else {
                mapped += need;
                for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++) {
                    const cr_insn *u = &p->code[c];
                    uint32_t id = u->op == CR_OP_LOAD ? w->id[u->a] : 0;
                    if (id) w->mapped[id] = CR_MAX(w->mapped[id], view_resident(&p->inputs[u->a]));
                }
                note(w, pc, heap + trans, mapped);
            }
            /* the SEL_PREFIXes after the kernel sort its gathers side by
             * side (vm_partition_run): those in memory whole, each spilled
             * one through its window (and topk's heap, up to n/64 words) */
            if (n_spill) {
                uint64_t sorts = 0, spilled = 0;
                for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++) {
                    const cr_insn *u = &p->code[c];
                    if (!cr_op_torch_order(u->op)) continue;
                    uint64_t n = p->selects[u->dst].n;
                    if (!w->spill[u->dst]) sorts += up(n * 4, page);
                    else if (spilled++ < w->threads)
                        sorts += CR_MEM_SPILL_SORT + (u->op == CR_OP_TORCH_TOPK ? up(n * 4 / 64, page) : 0);
                }
                note(w, pc, heap + bits + sorts, mapped);
            }
            for (uint32_t t = 0; t < n_taken; t++) {   /* the SEL_PREFIXes give them back */
                uint32_t *drop;
                uint64_t drop_cap;
                cr_gather_pool_put(&w->gp, NULL, w->taken[t], &drop, &drop_cap);
                if (drop_cap) w->held -= up(drop_cap * 4, page);
            }
            for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++) {
                const cr_insn *u = &p->code[c];
                if (cr_op_torch_order(u->op) && !w->sel_bits[u->dst]) {
                    heap += up((p->selects[u->dst].n / 64 + 1) * 8, page);
                    w->sel_bits[u->dst] = 1;
                }
            }
            break;
        }
        default: break;
        }
        /* tie bits past their last use are freed (interp.c) */
        release_ctx rc = { w, pc, page, &heap };
        cr_memplan_each_select(p, pc, release_bits, &rc);
        w->cur[pc] = CR_MAX(w->cur[pc], w->fixed + w->held + CR_MAX(heap0, heap) + CR_MAX(mapped0, mapped));
    }
    return w->bad_pc == UINT32_MAX;
}

/* Under a budget, the bytes kept gathers may hold while each main step
 * runs (memplan.h gather_keep): the predicted peak less the step's total
 * and less the gathers the VM holds at it that the walk counts only at
 * their gathering kernel: from the first kernel that may take them (a
 * HIST_LO pass of an EARLY_GATHER kernel fills them early, interp_select.c
 * vm_gather_early) to their SEL_PREFIX. Spilled gathers are files, not
 * pooled. */
static cr_status keep_limits(cr_memplan *mp, const walk *w, uint64_t page, cr_error *err)
{
    const cr_program *p = w->p;
    const cr_allocator *a = mp->alloc;
    uint32_t ns = p->n_selects;
    uint32_t *first = cr_calloc(a, ns + 1, sizeof *first), *gpc = cr_calloc(a, ns + 1, sizeof *gpc),
             *end = cr_calloc(a, ns + 1, sizeof *end);
    uint64_t *in_use = cr_calloc(a, p->n_main + 1, sizeof *in_use);
    mp->gather_keep = cr_calloc(a, p->n_main + 1, sizeof *mp->gather_keep);
    cr_status s = CR_OK;
    if (!first || !gpc || !end || !in_use || !mp->gather_keep) {
        s = cr_fail(err, CR_ERR_NOMEM, "out of memory planning memory");
        goto out;
    }
    for (uint32_t x = 0; x < ns; x++) first[x] = gpc[x] = end[x] = UINT32_MAX;
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        const cr_insn *in = &p->main[pc];
        if (in->op == CR_OP_SEL_PREFIX && in->dst < ns) end[in->dst] = pc;
        if (in->op != CR_OP_KERNEL) continue;
        const cr_prog_kernel *k = &p->kernels[in->a];
        for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++) {
            const cr_insn *u = &p->code[c];
            if (u->dst >= ns) continue;
            bool early = u->op == CR_OP_HIST_LO && (k->flags & CR_KERNEL_EARLY_GATHER) && w->gathered[u->dst];
            if (!early && !cr_op_torch_order(u->op)) continue;
            if (first[u->dst] == UINT32_MAX) first[u->dst] = pc;
            if (cr_op_torch_order(u->op)) gpc[u->dst] = pc;
        }
    }
    for (uint32_t x = 0; x < ns; x++) {
        if (first[x] == UINT32_MAX || w->spill[x]) continue;
        uint32_t last = end[x] != UINT32_MAX && end[x] > first[x] ? end[x] : p->n_main - 1;
        for (uint32_t pc = first[x]; pc <= last; pc++)
            if (pc != gpc[x]) in_use[pc] += up(p->selects[x].n * 4, page);
    }
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        uint64_t used = w->cur[pc] + in_use[pc];
        mp->gather_keep[pc] = w->peak > used ? w->peak - used : 0;
        mp->gather_pool_bytes = CR_MAX(mp->gather_pool_bytes, mp->gather_keep[pc]);
    }
out:
    cr_free(a, first);
    cr_free(a, gpc);
    cr_free(a, end);
    cr_free(a, in_use);
    return s;
}

cr_status cr_memplan_init(cr_memplan *mp, const cr_program *p, unsigned threads, uint64_t max_memory,
                          const cr_allocator *a, cr_error *err)
{
    *mp = (cr_memplan){0};
    if (!a) a = p->alloc ? p->alloc : cr_default_allocator();
    mp->alloc = a;
    threads = cr_threads_resolve(threads);
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t page = pg > 0 ? (uint64_t)pg : 4096;
    /* freed gathers are kept for the next tensor (gatherpool.h): without a
     * budget the walk replays the pool; with one it counts every gather as
     * fresh and keep_limits bounds what the pool may keep at each step */
    walk w = { .p = p, .budget = max_memory, .pool = max_memory == 0 };
    uint32_t n_ids = 0;
    w.id = canon_ids(p, a, &n_ids);
    w.mapped = cr_calloc(a, n_ids, sizeof *w.mapped);
    w.sel_live = cr_calloc(a, p->n_selects + 1, 1);
    w.scr_live = cr_calloc(a, p->n_scratch + 1, 1);
    w.sel_bits = cr_calloc(a, p->n_selects + 1, 1);
    w.spill = cr_calloc(a, p->n_selects + 1, 1);
    w.sel_last = cr_calloc(a, p->n_selects + 1, sizeof *w.sel_last);
    w.taken = cr_calloc(a, p->n_code + 1, sizeof *w.taken);
    w.gathered = cr_calloc(a, p->n_selects + 1, 1);
    w.pre = cr_calloc(a, p->n_selects + 1, sizeof *w.pre);
    w.cur = cr_calloc(a, p->n_main + 1, sizeof *w.cur);
    mp->stream = cr_calloc(a, p->n_main + 1, 1);
    w.stream = mp->stream;
    cr_status s = CR_OK;
    if (!w.id || !w.mapped || !w.sel_live || !w.scr_live || !w.sel_bits || !w.spill || !w.sel_last || !w.taken ||
        !w.gathered || !w.pre || !w.cur || !mp->stream) {
        s = cr_fail(err, CR_ERR_NOMEM, "out of memory planning memory");
        goto out;
    }
    cr_memplan_sel_last(p, w.sel_last);
    for (uint32_t c = 0; c < p->n_code; c++)
        if (cr_op_torch_order(p->code[c].op) && p->code[c].dst < p->n_selects) w.gathered[p->code[c].dst] = 1;
    uint64_t rowvecs = 0;
    for (uint32_t i = 0; i < p->n_rowvecs; i++) rowvecs += up(p->rowvecs[i].len * 8, page);
    /* the input reader's buffer, when there is something to read */
    uint64_t reader = cr_memplan_file_bytes(p) ? CR_READ_BUF : 0;
    /* fewer threads only when spilling gathers is not enough: a spill
     * costs I/O in the steps that gather, fewer threads cost every step */
    for (;;) {
        w.threads = threads;
        /* program tables rounded to 64 KiB: names and paths make the exact
         * size vary by a few bytes, the prediction should not */
        w.fixed = CR_MEM_BASELINE + up(program_bytes(p), 64 << 10) + thread_bytes(p, threads, page) + rowvecs + reader;
        for (uint32_t i = 0; i < n_ids; i++) w.mapped[i] = 0;
        memset(w.sel_live, 0, p->n_selects + 1);
        memset(w.scr_live, 0, p->n_scratch + 1);
        if (run_walk(&w, page) || threads == 1) break;
        threads--;
    }
    if (w.bad_pc != UINT32_MAX) {
        s = cr_fail(err, CR_ERR_LIMIT, "%s needs about %llu MiB with one thread (reading its inputs in a window); "
                    "--max-memory allows %llu MiB", step_name(p, w.bad_pc),
                    (unsigned long long)((w.bad_need + (1 << 20) - 1) >> 20),
                    (unsigned long long)(max_memory >> 20));
        goto out;
    }
    mp->threads = threads;
    {
        cr_run_thread_bufs b;
        cr_run_thread_bufs_of(p, &b);
        mp->thread_bytes = cr_run_thread_bytes(&b, threads);
    }
    if ((s = cr_outstream_plan_init(&mp->out, p, max_memory ? (max_memory > w.peak ? max_memory - w.peak : 0) : UINT64_MAX,
                                    a, err)))
        goto out;
    mp->peak = w.peak + mp->out.bytes;
    mp->read_window = CR_READ_WINDOW;
    if (max_memory) {
        uint64_t room = max_memory > mp->peak ? max_memory - mp->peak : 0;
        mp->read_window = CR_MAX(CR_MIN(room, (uint64_t)CR_READ_WINDOW), (uint64_t)CR_READ_WINDOW_MIN);
    }
    mp->fixed = w.fixed;
    mp->peak_heap = w.peak_heap;
    mp->peak_mapped = w.peak_mapped;
    mp->peak_pc = w.peak_pc;
    mp->n_streamed = w.n_streamed;
    mp->gather_pool = true;
    mp->gather_pool_bytes = w.held_max;
    if (max_memory && (s = keep_limits(mp, &w, page, err))) goto out;
    for (uint32_t i = 0; i < p->n_selects; i++)
        if (w.spill[i]) {
            mp->n_spill++;
            mp->spill_bytes += p->selects[i].n * 4;
        }
    if (mp->n_spill) {
        mp->spill = w.spill;
        w.spill = NULL;
    }
out:
    cr_free(a, (void *)w.id);
    cr_free(a, w.mapped);
    cr_free(a, w.sel_live);
    cr_free(a, w.scr_live);
    cr_free(a, w.sel_bits);
    cr_free(a, w.spill);
    cr_free(a, w.sel_last);
    cr_free(a, w.taken);
    cr_free(a, w.gathered);
    cr_free(a, w.pre);
    cr_free(a, w.cur);
    if (s) {
        cr_free(a, mp->stream);
        cr_free(a, mp->gather_keep);
        cr_free(a, mp->spill);
        cr_outstream_plan_free(&mp->out);
        mp->stream = NULL;
        mp->gather_keep = NULL;
        mp->spill = NULL;
    }
    return s;
}

void cr_memplan_free(cr_memplan *mp)
{
    if (mp->alloc) {
        cr_free(mp->alloc, mp->stream);
        cr_free(mp->alloc, mp->spill);
        cr_free(mp->alloc, mp->gather_keep);
    }
    cr_outstream_plan_free(&mp->out);
    mp->stream = NULL;
    mp->spill = NULL;
    mp->gather_keep = NULL;
}
