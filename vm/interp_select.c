/* interp_select.c — top-k selections at run time (ops.def's SEL_* and
 * kernel selection ops): the state machine of main's SEL_INIT,
 * SEL_FIND_HI/LO, SEL_PREFIX; the per-chunk helpers the kernel body calls
 * (counting keys, the TOPK_MASK masks, gathering); and torch's tie order:
 * allocating the gather, replaying torch's sort (torchsort.h) and marking
 * the ties it keeps. Which kernels only count ties or may gather early is
 * the compiler's word (CR_KERNEL_TIES_ONLY, CR_KERNEL_EARLY_GATHER); what
 * is decided here is what the data decides (direct mode, whether ties
 * straddle the k-th position).
 */
#include "interp.h"
#include "torchsort.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* elements base.. of a torch tie-order gather: each one's key, a tie's index */
void vm_gather_words(uint32_t *kv, uint32_t T, const float *a, uint64_t base, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t key = cr_torchsort_key(a[i]);
        kv[base + i] = key == T ? CR_TORCHSORT_TIE | (uint32_t)(base + i) : key;
    }
}

/* the same without tagging: each element's key (the HIST_HI pass of a
 * HI_GATHER kernel; the sort tags the ties). restrict: the buffers never
 * overlap, and without it (the build has -fno-strict-aliasing) the loop
 * does not vectorise */
void vm_gather_keys(uint32_t *restrict kv, const float *restrict a, size_t n)
{
    for (size_t i = 0; i < n; i++) kv[i] = cr_torchsort_key(a[i]);
}

/* how many of a[0..n) have magnitude key T; 32-bit partial counts so the
 * loop vectorises at full width */
uint64_t vm_count_key(const float *a, size_t n, uint32_t T)
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
 * Sixteen elements at a time: the vector loop drops every tie and notes
 * whether the group held one; the few groups that do set their kept ties
 * (one pass over a and d instead of two: this was 5% of a TIES merge's
 * CPU as two loops). */
void vm_topk_mask_tiebits(const vm_select *s, const float *a, float *d, size_t n, uint64_t base)
{
    const uint32_t T = s->threshold;
    for (size_t i = 0; i < n; i += 16) {
        size_t len = CR_MIN((size_t)16, n - i);
        unsigned any = 0;
        if (len == 16)   /* a fixed trip count: one vector compare */
            for (size_t j = 0; j < 16; j++) {
                uint32_t key = mag_key(a[i + j]);
                d[i + j] = key > T ? 1.0f : 0.0f;
                any |= key == T;
            }
        else
            for (size_t j = 0; j < len; j++) {
                uint32_t key = mag_key(a[i + j]);
                d[i + j] = key > T ? 1.0f : 0.0f;
                any |= key == T;
            }
        if (!any) continue;
        for (size_t j = 0; j < len; j++) {
            if (mag_key(a[i + j]) != T) continue;
            uint64_t e = base + i + j;
            d[i + j] = (float)(s->tiebits[e >> 6] >> (e & 63) & 1);
        }
    }
}

void vm_topk_mask(const vm_select *s, const float *a, float *d, size_t n, uint64_t *before)
{
    const uint32_t T = s->threshold;
    uint64_t eq = vm_count_key(a, n, T);
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

/* The output tensor a selection serves, for messages: the first output
 * stored by a kernel that uses selection x ("?" when none is, e.g. a
 * selection whose value feeds only scalars). Searched only on failure. */
const char *vm_sel_output_name(const vm *m, uint32_t x)
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

static bool spilled(const vm *m, uint32_t x) { return m->mem.spill && m->mem.spill[x]; }

/* Bytes the kept (idle) buffers count against memplan's gather_keep. */
static uint64_t kept_bytes(const vm *m)
{
    uint64_t b = 0;
    for (unsigned i = 0; i < m->gathers.n; i++) b += cr_gather_bytes(m->gathers.cap[i]);
    return b;
}

/* Free kept buffers, largest first, until they and the excess of the
 * pooled gathers in use fit m->gather_limit. */
static void gather_trim(vm *m)
{
    while (m->gathers.n && kept_bytes(m) + m->gather_excess > m->gather_limit) {
        unsigned big = 0;
        for (unsigned i = 1; i < m->gathers.n; i++)
            if (m->gathers.cap[i] > m->gathers.cap[big]) big = i;
        cr_free(m->alloc, m->gathers.buf[big]);
        m->gathers.n--;
        m->gathers.buf[big] = m->gathers.buf[m->gathers.n];
        m->gathers.cap[big] = m->gathers.cap[m->gathers.n];
    }
}

/* Under a budget, before main step pc: the kept buffers (and the excess
 * of pooled gathers in use) may hold the step's gather_keep (memplan.h)
 * plus n words of each gather the step may still take, which memplan
 * counts at this step as fresh: the HIST_LO selections of an
 * EARLY_GATHER kernel, its torch-order ones (only the largest when the
 * kernel gathers one at a time), spilled ones aside. Each take spends
 * its n words of that (gather_alloc), so the step stays within the
 * predicted peak whichever buffers it reuses. */
void vm_gather_limit(vm *m, uint32_t pc)
{
    if (!m->mem.gather_keep) return;
    const cr_insn *in = &m->p->main[pc];
    uint64_t pending = 0, largest = 0;
    if (in->op == CR_OP_KERNEL) {
        const cr_prog_kernel *k = &m->p->kernels[in->a];
        const cr_insn *code = m->p->code + k->code_begin;
        for (uint32_t c = 0; c < k->code_len; c++) {
            const cr_insn *u = &code[c];
            bool early = u->op == CR_OP_HIST_LO && (k->flags & CR_KERNEL_EARLY_GATHER);
            if ((!early && !cr_op_torch_order(u->op)) || u->dst >= m->p->n_selects || m->sel[u->dst].kv ||
                spilled(m, u->dst))
                continue;
            bool dup = false;
            for (uint32_t d = 0; d < c && !dup; d++)
                dup = code[d].dst == u->dst && (cr_op_torch_order(code[d].op) || code[d].op == CR_OP_HIST_LO);
            if (dup) continue;
            uint64_t b = cr_gather_bytes(m->p->selects[u->dst].n);
            pending += b;
            largest = CR_MAX(largest, b);
        }
        if (m->mem.stream[pc] & CR_MEM_SERIAL_GATHERS) pending = largest;
    }
    m->gather_limit = m->mem.gather_keep[pc] + pending;
    gather_trim(m);
}

/* A gather's buffer goes back to the pool when memplan keeps gathers
 * between tensors (memplan.h gather_pool) and, under a budget, the pool
 * stays within the step's gather_keep; else to the allocator. */
void vm_gather_free(vm *m, uint32_t x)
{
    vm_select *s = &m->sel[x];
    if (s->spill.base) cr_spill_close(&s->spill);
    else if (s->kv && m->mem.gather_pool) {
        /* the gather in use, counted at its n words, leaves room for that */
        m->gather_excess -= s->kv_excess;
        if (m->gather_limit != UINT64_MAX) m->gather_limit += cr_gather_bytes(m->p->selects[x].n);
        if (kept_bytes(m) + m->gather_excess + cr_gather_bytes(s->kv_cap) > m->gather_limit) cr_free(m->alloc, s->kv);
        else {
            uint32_t *drop;
            uint64_t drop_cap;
            cr_gather_pool_put(&m->gathers, s->kv, s->kv_cap, &drop, &drop_cap);
            cr_free(m->alloc, drop);
        }
    } else cr_free(m->alloc, s->kv);
    s->kv = NULL;
    s->kv_cap = 0;
    s->kv_excess = 0;
    s->partitioned = false;
}

/* A gather of n words for selection x (the old one freed): a kept buffer
 * when one holds n words (its pages are resident already: no faults, no
 * zeroing; every word of [0, n) is written before it is read), else a
 * fresh one on the heap, or where memplan says it does not fit
 * --max-memory, in a file in the run's temporary output directory
 * (spill.h). */
static cr_status gather_alloc(vm *m, uint32_t x, uint64_t n, cr_error *err)
{
    vm_select *s = &m->sel[x];
    vm_gather_free(m, x);
    if (spilled(m, x)) {
        char what[512];
        snprintf(what, sizeof what, "the tie-order gather of %s (%llu MiB)", vm_sel_output_name(m, x),
                 (unsigned long long)((n * 4 + (1 << 20) - 1) >> 20));
        cr_status st = cr_spill_open(&s->spill, m->io, m->opt->gguf ? m->gguf_parent : m->outdir.tmp_path, (n ? n : 1) * sizeof *s->kv, what, err);
        if (st) return st;
        s->kv = (uint32_t *)s->spill.base;
        s->kv_cap = n;
        return CR_OK;
    }
    if (m->mem.gather_pool) {
        uint32_t *drop;
        uint64_t drop_cap;
        if (cr_gather_pool_take(&m->gathers, n, &s->kv, &s->kv_cap, &drop, &drop_cap)) {
            /* memplan counts n words of it; the rest is kept bytes moved to use */
            s->kv_excess = cr_gather_bytes(s->kv_cap) - cr_gather_bytes(n);
            m->gather_excess += s->kv_excess;
            m->gather_limit -= m->gather_limit == UINT64_MAX ? 0 : CR_MIN(m->gather_limit, cr_gather_bytes(n));
            return CR_OK;
        }
        cr_free(m->alloc, drop);
        if (m->gather_limit != UINT64_MAX) {   /* a fresh one: what is kept must shrink by n words */
            m->gather_limit -= CR_MIN(m->gather_limit, cr_gather_bytes(n));
            gather_trim(m);
        }
    }
    s->kv = cr_malloc(m->alloc, (size_t)n * sizeof *s->kv);
    if (!s->kv) return cr_fail(err, CR_ERR_NOMEM, "out of memory gathering the top-k selection of %s (%llu elements)",
                               vm_sel_output_name(m, x), (unsigned long long)n);
    s->kv_cap = n;
    return CR_OK;
}

/* A streamed kernel has filled elements [from, to) of the spilled gathers
 * it fills: their pages leave RSS with the inputs' (interp_kernel.c). */
void vm_gather_drop(const vm *m, const cr_prog_kernel *k, uint64_t from, uint64_t to)
{
    const cr_insn *code = m->p->code + k->code_begin;
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        if (!cr_op_torch_order(code[pc].op)) continue;
        const vm_select *s = &m->sel[code[pc].dst];
        if (s->spill.base && s->kv) cr_spill_done(&s->spill, s->kv + from, s->kv + to, true);
    }
}

/* the sort's pager for a spilled gather (torchsort.h) */
static void pager_done(void *ud, const uint32_t *lo, const uint32_t *hi, bool rising)
{
    cr_spill_done(ud, lo, hi, rising);
}

/* Before a kernel with TORCH_DESC/ASC/TOPK: record the order, and gather only
 * when the ties at the threshold do not all fit (otherwise the threshold
 * alone decides). */
cr_status vm_torch_gather_begin(vm *m, const cr_insn *in, uint64_t n, cr_error *err)
{
    vm_select *s = &m->sel[in->dst];
    s->torch_order = in->op;
    if (s->early) return CR_OK;   /* filled by the HIST_LO pass */
    vm_gather_free(m, in->dst);
    if (!needs_gather(s)) return CR_OK;
    if (n >= CR_TORCHSORT_TIE)
        return cr_fail(err, CR_ERR_LIMIT, "%s: torch's tie order for a top-k selection over %llu elements (limit 2^31)",
                       vm_sel_output_name(m, in->dst), (unsigned long long)n);
    return gather_alloc(m, in->dst, n, err);
}

/* a sort the whole pool can share (torchsort.h: cr_torchsort_partition_par):
 * a large gather in memory, not topk's */
static bool pool_sortable(const vm *m, uint32_t x)
{
    const vm_select *s = &m->sel[x];
    return cr_pool_threads(m->pool) > 1 && !s->spill.base && s->torch_order != CR_OP_TORCH_TOPK &&
           m->p->selects[x].n >= CR_TORCHSORT_PAR_MIN;
}

/* replay torch's sort of a gathered selection up to the k-th position
 * (on_pool: from the main thread, its large partitions on every thread) */
static void torch_partition(vm *m, uint32_t x, bool on_pool)
{
    vm_select *s = &m->sel[x];
    uint64_t n = m->p->selects[x].n;
    bool desc = s->torch_order != CR_OP_TORCH_ASC;
    uint64_t bound = desc ? s->k : n - s->k;
    cr_torchsort_pager pg = { pager_done, &s->spill };
    const cr_torchsort_pager *pager = s->spill.base ? &pg : NULL;
    if (s->torch_order == CR_OP_TORCH_TOPK) cr_torchsort_topk(m->kern, s->kv, n, s->k, s->threshold, pager);
    else if (on_pool) {
        cr_torchsort_par par = { m->pool, 0, 0 };
        cr_torchsort_partition_par(m->kern, s->kv, n, desc, s->threshold, &bound, 1, &par);
    } else cr_torchsort_partition(m->kern, s->kv, n, desc, s->threshold, &bound, 1, pager);
    if (pager) cr_spill_done(&s->spill, s->kv, s->kv + n, true);
    s->partitioned = true;
}

/* the tie bits of a selection about to be marked (freed by the next
 * SEL_INIT or vm_sel_release) */
static cr_status tiebits_alloc(vm *m, uint32_t x, cr_error *err)
{
    vm_select *s = &m->sel[x];
    uint64_t n = m->p->selects[x].n;
    cr_free(m->alloc, s->tiebits);
    s->tiebits = cr_calloc(m->alloc, (size_t)(n / 64 + 1), sizeof *s->tiebits);
    if (!s->tiebits)
        return cr_fail(err, CR_ERR_NOMEM, "out of memory for the top-k selection of %s", vm_sel_output_name(m, x));
    return CR_OK;
}

/* Mark the ties that torch's order puts among the kept elements of a
 * partitioned gather in s->tiebits; returns how many (touches only this
 * selection, so the selections of a tensor mark side by side) */
static uint64_t torch_mark(vm *m, uint32_t x)
{
    vm_select *s = &m->sel[x];
    uint64_t n = m->p->selects[x].n;
    bool desc = s->torch_order != CR_OP_TORCH_ASC;
    uint64_t bound = desc ? s->k : n - s->k;
    uint64_t lo = desc ? 0 : bound, hi = desc ? bound : n, kept = 0, dropped = lo;
    for (uint64_t p = lo; p < hi; p++) {
        if (s->spill.base && p - dropped >= CR_TORCHSORT_PAGER_WORDS) {   /* a spilled gather: a window */
            cr_spill_done(&s->spill, s->kv + dropped, s->kv + p, true);
            dropped = p;
        }
        /* ties are a small part of the kept words: skip sixteen words
         * without one at a time (a loop that vectorises; vm_torch_ties was
         * 4% of a TIES merge's CPU one word at a time) */
        if ((p & 15) == 0 && hi - p >= 16) {
            uint32_t any = 0;
            for (unsigned j = 0; j < 16; j++) any |= s->kv[p + j];
            if (!(any & CR_TORCHSORT_TIE)) { p += 15; continue; }
        }
        if (!(s->kv[p] & CR_TORCHSORT_TIE)) continue;
        uint64_t e = s->kv[p] & ~CR_TORCHSORT_TIE;
        s->tiebits[e >> 6] |= (uint64_t)1 << (e & 63);
        kept++;
    }
    return kept;
}

typedef struct partition_job {
    vm *m;
    const cr_insn *prefix;     /* a run of SEL_PREFIX instructions */
    bool mark_only;            /* sorted already: mark the kept ties */
} partition_job;

static int partition_task(void *ud, uint64_t task, unsigned thread)
{
    (void)thread;
    const partition_job *j = ud;
    vm_select *s = &j->m->sel[j->prefix[task].dst];
    if (!j->mark_only) torch_partition(j->m, j->prefix[task].dst, false);
    s->marked = torch_mark(j->m, j->prefix[task].dst);
    return 0;
}

/* The SEL_PREFIXes that follow one another in main (one per model of a
 * tensor) replay independent sorts and mark their ties: run them side by
 * side on the pool (three models on two threads: the marking, done one
 * selection after another on the main thread, was a serial stretch after
 * each tensor's sorts; bench/RESULTS.md). The sorts a round of one sort a
 * thread leaves over (three models on eight threads, or a lone one)
 * would run with the other threads idle: when large, each of those runs on
 * the whole pool instead (torchsort.h, cr_torchsort_partition_par; it reads
 * the words twice, so it pays only where several threads would idle:
 * three left over on eight threads, not one on two or three on four). */
cr_status vm_partition_run(vm *m, const cr_insn *prefix, uint32_t n_left, cr_error *err)
{
    uint32_t n = 0;
    while (n < n_left && prefix[n].op == CR_OP_SEL_PREFIX && m->sel[prefix[n].dst].kv &&
           !m->sel[prefix[n].dst].partitioned && m->sel[prefix[n].dst].phase == SEL_FOUND_LO)
        n++;
    /* A pool-wide sort costs 1.4-1.7 times a thread's CPU (the words are
     * read twice), so the rest go to the pool only where that is well under
     * the round they would take: 3r < 2T, and at least four threads. On two
     * threads (one sort left over, the other thread idle) it measured
     * slower: ties-3 at 1.1B-2L, 2 cores shared with other work, wall
     * +19% against sorting it on one thread (bench/RESULTS.md, session 4). */
    const uint32_t threads = cr_pool_threads(m->pool);
    uint32_t rest = n % threads;
    if (threads < 4 || 3 * rest >= 2 * threads) rest = 0;
    for (uint32_t i = n - rest; i < n; i++)
        if (!pool_sortable(m, prefix[i].dst)) rest = 0;
    if (n < 2 && !rest) return CR_OK;
    for (uint32_t i = 0; i < n; i++) {
        cr_status st = tiebits_alloc(m, prefix[i].dst, err);
        if (st) return st;
    }
    partition_job j = { m, prefix, false };
    cr_pool_run(m->pool, n - rest, partition_task, &j);
    if (!rest) return CR_OK;
    for (uint32_t i = n - rest; i < n; i++) torch_partition(m, prefix[i].dst, true);
    partition_job marks = { m, prefix + (n - rest), true };
    cr_pool_run(m->pool, rest, partition_task, &marks);
    return CR_OK;
}

/* SEL_PREFIX of a gathered selection: replay torch's sort up to the k-th
 * position and mark the ties that land among the kept elements (unless
 * partition_run did both), then check the count. */
cr_status vm_torch_ties(vm *m, uint32_t x, cr_error *err)
{
    vm_select *s = &m->sel[x];
    if (!s->partitioned) {
        torch_partition(m, x, false);
        cr_status st = tiebits_alloc(m, x, err);
        if (st) { vm_gather_free(m, x); return st; }
        s->marked = torch_mark(m, x);
    }
    uint64_t kept = s->marked;
    s->partitioned = false;
    s->early = SEL_EARLY_NONE;
    vm_gather_free(m, x);
    if (kept != s->ties_keep)
        return cr_fail(err, CR_ERR_RUNTIME, "%s: torch order kept %llu ties at the top-k threshold, expected %llu (values changed between passes?)",
                       vm_sel_output_name(m, x), (unsigned long long)kept, (unsigned long long)s->ties_keep);
    return CR_OK;
}


/* A TIES_ONLY kernel (the compiler says its only effects are tie counts
 * and torch tie-order gathers) whose counts are already known (direct
 * selections) and whose gathers are not needed or already filled computes
 * nothing anyone reads: it is skipped. */
bool vm_kernel_is_idle(const vm *m, const cr_prog_kernel *k)
{
    if (!(k->flags & CR_KERNEL_TIES_ONLY)) return false;
    const cr_insn *code = m->p->code + k->code_begin;
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        const cr_insn *in = &code[pc];
        if (in->op == CR_OP_TIE_COUNT && !m->sel[in->dst].direct) return false;
        /* HIST_LO: histograms unless direct; then it counts ties, which
         * nothing reads when they all fit or torch's order picks them from
         * a gather the HIST_HI pass filled (TOPK_MASK reads the tie bits) */
        if (in->op == CR_OP_HIST_LO) {
            const vm_select *s = &m->sel[in->dst];
            if (s->k && (!s->direct || (needs_gather(s) && s->early != SEL_EARLY_HI))) return false;
        }
        if ((cr_op_torch_order(in->op)) && needs_gather(&m->sel[in->dst]) &&
            !m->sel[in->dst].early)
            return false;
    }
    return true;
}

/* A selection's torch tie-order gather may be filled before the kernel
 * that would gather it, which is then skipped (vm_kernel_is_idle), where
 * that kernel and this one hold their inputs whole (neither streamed) and
 * the gather would run whole (not one at a time, not in index order):
 *  - HI_GATHER, without --max-memory (gathers from the pool, as memplan
 *    replays it): the HIST_HI pass writes each element's plain key, since
 *    the threshold is not known yet, and the sort tags the ties as it
 *    first reads them (torchsort.h). With bf16 values the threshold is
 *    then known (direct mode), the HIST_LO pass has nothing left to do
 *    either, and a TIES merge reads its inputs twice, not three times
 *    (ties-3 at 1.1B-2L: bench/RESULTS.md). Filled on the chance that the
 *    ties at the threshold do not all fit (nearly always, in bf16); when
 *    they do, vm_sel_found gives it back unsorted.
 *  - EARLY_GATHER, in direct mode: the HIST_LO pass writes the words with
 *    the ties tagged as it counts them; memory is memplan's for the
 *    gathering pass, since the two passes map the same views. */
cr_status vm_gather_early(vm *m, uint32_t ki, bool stream, cr_error *err)
{
    const cr_prog_kernel *k = &m->p->kernels[ki];
    /* HI_GATHER holds gathers across kernels the way memplan replays the
     * unbounded pool; under a budget gathers are counted from HIST_LO */
    bool hi = (k->flags & CR_KERNEL_HI_GATHER) && m->mem.gather_pool && !m->mem.gather_keep;
    if (stream || !(hi || (k->flags & CR_KERNEL_EARLY_GATHER))) return CR_OK;
    const cr_insn *code = m->p->code + k->code_begin;
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        const cr_insn *in = &code[pc];
        if (in->op != (hi ? CR_OP_HIST_HI : CR_OP_HIST_LO)) continue;
        vm_select *s = &m->sel[in->dst];
        uint64_t elems = m->p->selects[in->dst].n;
        bool wanted = hi ? s->k > 0 && s->k < elems : s->direct && needs_gather(s);
        if (!wanted || !s->torch_order || !s->torch_whole || s->torch_kernel == ki || s->early || s->kv ||
            spilled(m, in->dst))
            continue;
        if (elems >= CR_TORCHSORT_TIE) continue;   /* the gathering pass reports it */
        cr_status st = gather_alloc(m, in->dst, elems, err);
        if (st) return st;
        s->early = hi ? SEL_EARLY_HI : SEL_EARLY_LO;
    }
    return CR_OK;
}

/* After SEL_FIND_LO: a gather the HIST_HI pass filled goes back unsorted
 * when the threshold's ties all fit after all (the threshold decides) */
void vm_sel_found(vm *m, uint32_t x)
{
    vm_select *s = &m->sel[x];
    if (s->early != SEL_EARLY_HI || needs_gather(s)) return;
    vm_gather_free(m, x);
    s->early = SEL_EARLY_NONE;
}

/* After main step pc: free the tie bits of the selections it was the last
 * step to make or read (cr_memplan_sel_last), as the memory model counts.
 * A TIES merge holds one selection per model per tensor, so without this
 * the bits (n/8 bytes each) of every tensor so far would stay. */
typedef struct release_ctx { vm *m; uint32_t pc; } release_ctx;
static void release_tiebits(uint32_t x, void *ctx)
{
    release_ctx *c = ctx;
    if (c->m->sel_last[x] != c->pc) return;
    cr_free(c->m->alloc, c->m->sel[x].tiebits);
    c->m->sel[x].tiebits = NULL;
}

void vm_sel_release(vm *m, uint32_t pc)
{
    release_ctx c = { m, pc };
    cr_memplan_each_select(m->p, pc, release_tiebits, &c);
}

cr_status vm_sel_init(vm *m, uint32_t x, double kv, cr_error *err)
{
    vm_select *s = &m->sel[x];
    const cr_prog_select *ps = &m->p->selects[x];
    if (!(kv >= 0) || kv != floor(kv) || kv > (double)ps->n)
        return cr_fail(err, CR_ERR_RUNTIME,
                       "output tensor %s: a top-k selection (topk_mask / kth_largest_abs) got k = %g, "
                       "not a whole number in 0..%llu (the number of elements)",
                       vm_sel_output_name(m, x), kv, (unsigned long long)ps->n);
    s->k = (uint64_t)kv;
    cr_free(m->alloc, s->tiebits);
    s->tiebits = NULL;
    vm_gather_free(m, x);   /* none is left by a run that got this far; a new selection starts clean */
    s->early = SEL_EARLY_NONE;
    s->n_chunks = (ps->n + ps->chunk - 1) / ps->chunk;
    if (!s->hist) s->hist = cr_malloc(m->alloc, (size_t)m->n_threads * CR_RUN_HIST_BINS * sizeof *s->hist);
    if (!s->ties) s->ties = cr_calloc(m->alloc, s->n_chunks ? (size_t)s->n_chunks : 1, sizeof *s->ties);
    if (!s->lowor) s->lowor = cr_calloc(m->alloc, m->n_threads, sizeof *s->lowor);
    if (!s->hist || !s->ties || !s->lowor)
        return cr_fail(err, CR_ERR_NOMEM, "out of memory for the top-k selection of %s", vm_sel_output_name(m, x));
    memset(s->hist, 0, (size_t)m->n_threads * CR_RUN_HIST_BINS * sizeof *s->hist);
    memset(s->lowor, 0, m->n_threads * sizeof *s->lowor);
    s->direct = false;
    s->phase = SEL_INITED;
    return CR_OK;
}

/* find the bin (from the top) where the running count reaches k */
void vm_sel_find(vm *m, vm_select *s, bool hi)
{
    uint64_t cum = hi ? 0 : s->above;
    for (uint32_t b = CR_RUN_HIST_BINS; b-- > 0;) {
        uint64_t cnt = 0;
        for (unsigned t = 0; t < m->n_threads; t++) cnt += s->hist[(size_t)t * CR_RUN_HIST_BINS + b];
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
    memset(s->hist, 0, (size_t)m->n_threads * CR_RUN_HIST_BINS * sizeof *s->hist);
}

