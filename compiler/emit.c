/* emit.c — the scheduler and bytecode emitter: graph -> cr_program.
 *
 * Owns the lowering rules of spec/graph-ir.md: pass levels, which kernel
 * computes which reduction, the top-k selection sequence of ops.def, scalar
 * maths between kernels, register allocation by liveness inside a kernel,
 * the fixed chunk size per domain, COPY for pass-through outputs, and the
 * PREFETCH / RELEASE / DONE / SFREE bookkeeping. Domains are emitted in
 * output order; a stage output that a later stage reads is emitted (to a
 * scratch tensor) just before its first consumer and freed after its last.
 *
 * Every step is linear (or n log n) in the graph: each domain works on its
 * own node list (built once), a kernel resets only the registers it used,
 * and no walk recurses by a depth that the recipe or method controls (a
 * method may chain 10^5 ops; the C stack would not hold that recursion).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "emit.h"
#include "bind.h"
#include "refsum.h"

#define NONE32 UINT32_MAX

/* ---- program builder ------------------------------------------------- */

typedef struct builder {
    const cr_allocator *a;
    cr_vec blobs, files, inputs, outputs, scalars, rowvecs, scratch, selects, streams,
           kernels, messages, code, main;
    bool oom;
} builder;

static uint32_t push(builder *b, cr_vec *v, const void *item)
{
    if (!cr_vec_push(v, item)) { b->oom = true; return 0; }
    return (uint32_t)(v->len - 1);
}

static cr_blob add_bytes(builder *b, const void *p, size_t n)
{
    cr_vec *v = &b->blobs;
    cr_blob bl = { v->len, n };
    if (v->len + n + 1 > v->cap) {
        size_t cap = v->cap ? v->cap : 256;
        while (cap < v->len + n + 1) cap *= 2;
        void *d = cr_realloc(v->alloc, v->data, cap);
        if (!d) { b->oom = true; return bl; }
        v->data = d;
        v->cap = cap;
    }
    if (n) memcpy((uint8_t *)v->data + v->len, p, n);
    ((uint8_t *)v->data)[v->len + n] = 0;
    v->len += n + 1;
    return bl;
}
static cr_blob add_str(builder *b, const char *s) { return add_bytes(b, s, strlen(s)); }
/* tensor data for a CR_INPUT_BLOB view: 8-byte aligned so the VM can read
 * it in place */
static cr_blob add_aligned(builder *b, const void *p, size_t n)
{
    uint8_t z = 0;
    while (b->blobs.len % 8) push(b, &b->blobs, &z);
    return add_bytes(b, p, n);
}

static void emit_main(builder *b, cr_op op, cr_dtype dt, uint32_t d, uint32_t a, uint32_t x, uint32_t c)
{
    cr_insn in = { (uint16_t)op, (uint8_t)dt, 0, d, a, x, c };
    push(b, &b->main, &in);
}

/* ---- levels ------------------------------------------------------------ */

static bool is_elementwise(uint16_t op) { return cr_gop_to_op(op) != CR_OP_COUNT; }

/* ---- emitter state ------------------------------------------------------ */

typedef struct emitter {
    const cr_graph *g;
    const cr_emit_options *o;
    builder b;
    uint32_t *level;
    uint32_t *slot;         /* scalar slot per scalar node */
    uint32_t *rowvec;       /* vector slot per ROWSUM/ROWMAX (rows) and COLSUM (columns) node */
    uint32_t *sel;          /* selection per TOPK_MASK/KTH_ABS node */
    uint32_t *stream;       /* stream per RAND node */
    uint32_t *pinput;       /* program input per graph input */
    uint32_t *scratch_of;   /* scratch index per graph input (scratch ones) */
    uint32_t *scratch_left; /* consumers still to run, per scratch index */
    uint8_t *need;          /* scratch marks, per node */
    uint8_t *dom_done;      /* per domain */
    /* per-domain lists (start[d] .. start[d + 1] into the list), ascending */
    uint32_t *dom_start, *dom_nodes;    /* the nodes of each domain */
    uint32_t *dout_start, *dout;        /* the outputs stored from each domain */
    uint32_t *dss_start, *dss;          /* scratch stored from each domain: its first graph input */
    uint32_t *dstack;       /* domains being emitted (producers before consumers) */
    uint32_t *out_index;    /* output index per stored node of the current domain */
    uint32_t *vreg;         /* node -> virtual register in the current kernel, else NONE32 */
    uint32_t *sel_seen;     /* per selection: 1 + the last domain that met it */
    cr_vec touched;         /* nodes given a vreg by the current kernel */
    cr_vec frames;          /* kvalue's explicit stack */
    cr_vec sels;            /* the first node of each selection, current domain */
    cr_vec events;          /* the current domain's top-level schedule */
} emitter;

/* Group n items by key (NONE32: left out) into start[n_keys + 1] / list,
 * each group ascending. Both arrays are allocated here; false on OOM. */
static bool group_by(const cr_allocator *a, const uint32_t *key, uint32_t n, uint32_t n_keys,
                     uint32_t **start, uint32_t **list)
{
    uint32_t *st = cr_calloc(a, (size_t)n_keys + 2, sizeof *st), total = 0;
    if (!st) return false;
    for (uint32_t i = 0; i < n; i++) if (key[i] < n_keys) st[key[i] + 1]++;
    for (uint32_t k = 0; k < n_keys; k++) st[k + 1] += st[k];
    total = st[n_keys];
    uint32_t *ls = cr_malloc(a, ((size_t)total + 1) * sizeof *ls);
    uint32_t *at = cr_malloc(a, ((size_t)n_keys + 1) * sizeof *at);
    if (!ls || !at) { cr_free(a, st); cr_free(a, ls); cr_free(a, at); return false; }
    memcpy(at, st, (size_t)n_keys * sizeof *at);
    for (uint32_t i = 0; i < n; i++) if (key[i] < n_keys) ls[at[key[i]]++] = i;
    cr_free(a, at);
    *start = st;
    *list = ls;
    return true;
}

static uint64_t dom_numel(const cr_graph_domain *d) { return d->rows * d->cols; }

static bool domain_has_rows(const emitter *e, uint32_t d)
{
    const cr_graph *g = e->g;
    for (uint32_t j = e->dom_start[d]; j < e->dom_start[d + 1]; j++) {
        const cr_node *n = &g->nodes[e->dom_nodes[j]];
        if (n->flags & CR_NODEF_DEAD) continue;
        if (n->op == CR_GOP_ROWSUM || n->op == CR_GOP_ROWMAX || n->op == CR_GOP_ROW_RANK ||
            n->op == CR_GOP_SOFTMAX || (n->kind == CR_VK_ROWS && is_elementwise(n->op)))
            return true;
    }
    return false;
}

/* Elements per chunk of domain d's kernels: 16384 (or the option's), in
 * whole rows when the domain has row ops; `base` asks for another size
 * (kfinish: the chunked sums). */
static uint64_t domain_chunk(const emitter *e, uint32_t d, bool rows, uint64_t base)
{
    const cr_graph_domain *dm = &e->g->domains[d];
    if (!base) base = e->o && e->o->chunk ? e->o->chunk : 16384;
    uint64_t numel = dom_numel(dm);
    if (numel == 0) return 1;
    if (rows) {
        uint64_t k = dm->cols ? base / dm->cols : 1;
        if (k == 0) k = 1;
        if (k > dm->rows) k = dm->rows;
        return k * dm->cols;
    }
    return base < numel ? base : numel;
}

/* ---- kernel generation ------------------------------------------------- */

enum { IT_STORE, IT_SSTORE, IT_RED, IT_HIST_HI, IT_HIST_LO, IT_TIE };

typedef struct item {
    int type;
    uint32_t node;      /* the node whose register value the item consumes */
    uint32_t target;    /* output / scratch / reduction node / selection */
    uint32_t level;     /* kernel level */
} item;

typedef struct kgen {
    emitter *e;
    cr_vec ops;         /* cr_insn with virtual registers */
    uint32_t *vreg;     /* node -> virtual register or NONE32 */
    uint32_t n_virt;
} kgen;

static bool op_reg(cr_op op, int operand)
{
    char k = cr_op_table[op].kinds[operand];
    return k == 'v' || k == 'r';
}

static void kpush(kgen *k, cr_op op, cr_dtype dt, uint32_t d, uint32_t a, uint32_t b, uint32_t c)
{
    cr_insn in = { (uint16_t)op, (uint8_t)dt, 0, d, a, b, c };
    if (!cr_vec_push(&k->ops, &in)) k->e->b.oom = true;
}

static void kset(kgen *k, uint32_t n, uint32_t r)
{
    k->vreg[n] = r;
    if (!cr_vec_push(&k->e->touched, &n)) k->e->b.oom = true;
}

/* How many inputs kvalue computes before node n's own op: none for values
 * read from a slot, vector, input or stream. */
static int kinputs(const cr_node *nd)
{
    if (nd->kind == CR_VK_SCALAR || nd->op == CR_GOP_ROWSUM || nd->op == CR_GOP_ROWMAX ||
        nd->op == CR_GOP_COLSUM || nd->op == CR_GOP_INPUT || nd->op == CR_GOP_RAND || nd->op == CR_GOP_TAIL ||
        nd->op == CR_GOP_LORA)
        return 0;
    if (nd->op == CR_GOP_ROW_RANK || nd->op == CR_GOP_TOPK_MASK) return 1;
    return nd->n_in;
}

/* Node n's own micro-ops into virtual register r, once its inputs have
 * registers. */
static void kop(kgen *k, uint32_t n, uint32_t r)
{
    const emitter *e = k->e;
    const cr_node *nd = &e->g->nodes[n];
    if (nd->kind == CR_VK_SCALAR) {
        kpush(k, CR_OP_SPLAT, CR_DTYPE_NONE, r, e->slot[n], 0, 0);
    } else if (nd->op == CR_GOP_ROWSUM || nd->op == CR_GOP_ROWMAX) {
        kpush(k, CR_OP_ROWB, CR_DTYPE_NONE, r, e->rowvec[n], 0, 0);
    } else if (nd->op == CR_GOP_COLSUM) {
        kpush(k, CR_OP_COLB, CR_DTYPE_NONE, r, e->rowvec[n], 0, 0);
    } else if (nd->op == CR_GOP_INPUT) {
        kpush(k, CR_OP_LOAD, CR_DTYPE_NONE, r, e->pinput[nd->attr], 0, 0);
    } else if (nd->op == CR_GOP_LORA) {
        /* reads the two views itself (not domain-sized, never LOADed) */
        kpush(k, nd->attr ? CR_OP_LOWRANK_T : CR_OP_LOWRANK, CR_DTYPE_NONE, r,
              e->pinput[e->g->nodes[nd->in[0]].attr], e->pinput[e->g->nodes[nd->in[1]].attr], 0);
    } else if (nd->op == CR_GOP_RAND) {
        kpush(k, CR_OP_RAND, CR_DTYPE_NONE, r, e->stream[n], 0, 0);
    } else if (nd->op == CR_GOP_TAIL) {
        kpush(k, CR_OP_TAIL, CR_DTYPE_NONE, r, e->slot[nd->in[0]], 0, 0);
    } else if (nd->op == CR_GOP_ROW_RANK) {
        uint32_t x = k->vreg[nd->in[0]];
        if (nd->rdt == CR_DTYPE_F32 || nd->rdt == CR_DTYPE_F64) {
            kpush(k, CR_OP_ROWRANK, CR_DTYPE_NONE, r, x, 0, 0);
        } else {
            uint32_t t = r;
            r = k->n_virt++;
            kpush(k, CR_OP_ROWRANK, CR_DTYPE_NONE, t, x, 0, 0);
            kpush(k, CR_OP_MOV, nd->rdt, r, t, 0, 0);
        }
    } else if (nd->op == CR_GOP_SOFTMAX) {
        kpush(k, CR_OP_SOFTMAX_TORCH, nd->rdt, r, k->vreg[nd->in[0]], 0, 0);
    } else if (nd->op == CR_GOP_TOPK_MASK) {
        kpush(k, CR_OP_TOPK_MASK, CR_DTYPE_NONE, r, k->vreg[nd->in[0]], e->sel[n], 0);
    } else {
        uint32_t a[3] = {0, 0, 0};
        for (int i = 0; i < nd->n_in; i++) a[i] = k->vreg[nd->in[i]];
        kpush(k, cr_gop_to_op(nd->op), nd->rdt, r, a[0], a[1], a[2]);
    }
    kset(k, n, r);
}

typedef struct kframe { uint32_t node, reg, next; } kframe;

/* Start node n: a leaf is emitted at once, an op waits on the stack for
 * its inputs. Registers are numbered in visiting order. */
static void kvisit(kgen *k, uint32_t n)
{
    uint32_t r = k->n_virt++;
    if (kinputs(&k->e->g->nodes[n]) == 0) { kop(k, n, r); return; }
    kframe f = { n, r, 0 };
    if (!cr_vec_push(&k->e->frames, &f)) k->e->b.oom = true;
}

/* Emit micro-ops computing node n into a virtual register (memoised):
 * inputs first, in order, depth first. The walk keeps its own stack
 * because a method can chain any number of ops. On OOM the result is
 * meaningless and b.oom is set (kfinish reports it). */
static uint32_t kvalue(kgen *k, uint32_t n)
{
    if (k->vreg[n] != NONE32) return k->vreg[n];
    cr_vec *st = &k->e->frames;
    const cr_node *nodes = k->e->g->nodes;
    st->len = 0;
    kvisit(k, n);
    while (st->len && !k->e->b.oom) {
        kframe *f = &((kframe *)st->data)[st->len - 1];
        const cr_node *nd = &nodes[f->node];
        if ((int)f->next < kinputs(nd)) {
            uint32_t in = nd->in[f->next++];
            if (k->vreg[in] == NONE32) kvisit(k, in);
            continue;
        }
        kframe done = *f;
        st->len--;
        kop(k, done.node, done.reg);
    }
    return k->vreg[n];
}

/* Allocate registers by liveness and append the kernel to the program. */
static cr_status kfinish(kgen *k, uint32_t domain, uint64_t chunk, bool rows, cr_error *err)
{
    emitter *e = k->e;
    builder *b = &e->b;
    if (b->oom) return cr_fail(err, CR_ERR_NOMEM, "out of memory emitting a kernel");
    cr_insn *ops = k->ops.data;
    size_t n = k->ops.len;
    uint32_t *last = cr_calloc(b->a, k->n_virt + 1, sizeof *last);
    uint32_t *phys = cr_calloc(b->a, k->n_virt + 1, sizeof *phys);
    if (!last || !phys) {
        cr_free(b->a, last); cr_free(b->a, phys);
        return cr_fail(err, CR_ERR_NOMEM, "out of memory allocating registers");
    }
    for (size_t pc = 0; pc < n; pc++) {
        uint32_t *opnd[3] = { &ops[pc].a, &ops[pc].b, &ops[pc].c };
        for (int i = 0; i < 3; i++)
            if (op_reg(ops[pc].op, i + 1)) last[*opnd[i]] = (uint32_t)pc;
    }
    /* mergekit 0.1.5's chunked sums (RSUM/RSSQ_TORCH_CHUNKS) reduce chunks
     * of 2^20 that are independent until the final sum: a kernel whose
     * chunks cover whole ones reduces them in each chunk's task, where
     * 16384-element chunks had to feed one in-order stream after another
     * (vm/interp_kernel.c; slerp at 1.1B: the two threads took turns).
     * Not with selection ops (their state is per domain chunk) nor when
     * the option fixes the chunk; the other kernels keep small chunks, so
     * staging stays small. */
    bool chunk_sums = false, selects = false;
    for (size_t pc = 0; pc < n; pc++) {
        chunk_sums |= cr_op_table[ops[pc].op].red == CR_RED_CHUNK_TORCH || cr_op_table[ops[pc].op].red == CR_RED_CHUNK_TORCH_NORM;
        selects |= cr_op_table[ops[pc].op].red == CR_RED_SELECT || ops[pc].op == CR_OP_TOPK_MASK;
    }
    if (chunk_sums && !selects && !(e->o && e->o->chunk)) chunk = domain_chunk(e, domain, rows, CR_REFSUM_CHUNK);
    uint8_t used[256] = {0};
    uint32_t n_regs = 0;
    cr_prog_kernel kr = { e->g->domains[domain].rows, e->g->domains[domain].cols, chunk,
                          (uint32_t)b->code.len, (uint32_t)n, 0, rows ? CR_KERNEL_ROWS : 0 };
    for (size_t pc = 0; pc < n; pc++) {
        cr_insn in = ops[pc];
        uint32_t *opnd[3] = { &in.a, &in.b, &in.c };
        uint32_t srcs[3];
        int ns = 0;
        for (int i = 0; i < 3; i++)
            if (op_reg(in.op, i + 1)) { srcs[ns++] = *opnd[i]; *opnd[i] = phys[*opnd[i]]; }
        if (op_reg(in.op, 0)) {
            uint32_t v = in.dst, r = 0;
            while (r < 256 && used[r]) r++;
            if (r >= 256) {
                cr_free(b->a, last); cr_free(b->a, phys);
                return cr_fail(err, CR_ERR_LIMIT, "%s: a kernel needs more than 256 registers",
                               e->g->domains[domain].name ? e->g->domains[domain].name : "tensor");
            }
            used[r] = 1;
            phys[v] = r;
            in.dst = r;
            n_regs = CR_MAX(n_regs, r + 1);
            /* a value nobody reads (cannot happen for well-formed kernels) */
            if (last[v] <= pc) used[r] = 0;
        }
        /* free sources whose last use is this instruction (after dst is
         * chosen, so no op ever writes a register it reads) */
        for (int i = 0; i < ns; i++)
            if (last[srcs[i]] == pc) used[phys[srcs[i]]] = 0;
        push(b, &b->code, &in);
    }
    kr.n_regs = n_regs ? n_regs : 1;
    uint32_t ki = push(b, &b->kernels, &kr);
    emit_main(b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, ki, 0, 0);
    cr_free(b->a, last);
    cr_free(b->a, phys);
    return b->oom ? cr_fail(err, CR_ERR_NOMEM, "out of memory emitting a kernel") : CR_OK;
}

/* the reduction op of a whole-tensor SUM node, by its summation order */
static cr_op sum_op(const cr_node *t)
{
    switch ((cr_sum_order)t->attr) {
    case CR_SUM_NUMPY: return CR_OP_RSUM_NP;
    case CR_SUM_BLAS_SSQ: return CR_OP_RSSQ_BLAS;
    case CR_SUM_TORCH: return CR_OP_RSUM_TORCH;
    case CR_SUM_TORCH_SSQ: return CR_OP_RSSQ_TORCH;
    case CR_SUM_TORCH_CHUNKS: return CR_OP_RSUM_TORCH_CHUNKS;
    case CR_SUM_TORCH_SSQ_CHUNKS: return CR_OP_RSSQ_TORCH_CHUNKS;
    case CR_SUM_WIDE: break;
    }
    return CR_OP_RSUM;
}

/* the reduction op of a per-column COLSUM node, by its summation order */
static cr_op colsum_op(const cr_node *t)
{
    uint64_t order = t->attr & CR_COLSUM_ORDER_MASK;
    if (order == CR_SUM_TORCH) return CR_OP_RSUM_COL_TORCH;
    if (order == CR_SUM_TORCH_SSQ) return CR_OP_RSSQ_COL_TORCH;
    return CR_OP_RSUM_COL;
}

static cr_status emit_kernel(emitter *e, uint32_t domain, const item *its, size_t n_items,
                             uint64_t chunk, bool rows, const uint32_t *out_index, cr_error *err)
{
    kgen k = { .e = e, .vreg = e->vreg };
    cr_vec_init(&k.ops, e->b.a, sizeof(cr_insn));
    e->touched.len = 0;
    for (size_t i = 0; i < n_items; i++) {
        const item *it = &its[i];
        uint32_t v = kvalue(&k, it->node);
        const cr_node *t = &e->g->nodes[it->target];
        switch (it->type) {
        case IT_STORE: kpush(&k, CR_OP_STORE, CR_DTYPE_NONE, out_index[it->target], v, 0, 0); break;
        case IT_SSTORE: kpush(&k, CR_OP_SSTORE, CR_DTYPE_NONE, it->target, v, 0, 0); break;
        case IT_RED:
            if (t->op == CR_GOP_SUM) kpush(&k, sum_op(t), t->rdt, e->slot[it->target], v, 0, 0);
            else if (t->op == CR_GOP_COLSUM) kpush(&k, colsum_op(t), t->rdt, e->rowvec[it->target], v, 0, 0);
            else if (t->op == CR_GOP_ROWSUM && t->attr == CR_SUM_TORCH)
                kpush(&k, CR_OP_RSUM_ROW_TORCH, t->rdt, e->rowvec[it->target], v, 0, 0);
            else if (t->op == CR_GOP_ROWSUM && t->attr == CR_SUM_TORCH_SSQ)
                kpush(&k, CR_OP_RSSQ_ROW_TORCH, t->rdt, e->rowvec[it->target], v, 0, 0);
            else kpush(&k, t->op == CR_GOP_ROWSUM ? CR_OP_RSUM_ROW : CR_OP_RMAX_ROW, t->rdt,
                       e->rowvec[it->target], v, 0, 0);
            break;
        case IT_HIST_HI: kpush(&k, CR_OP_HIST_HI, CR_DTYPE_NONE, e->sel[it->target], v, 0, 0); break;
        case IT_HIST_LO: kpush(&k, CR_OP_HIST_LO, CR_DTYPE_NONE, e->sel[it->target], v, 0, 0); break;
        case IT_TIE:
            kpush(&k, CR_OP_TIE_COUNT, CR_DTYPE_NONE, e->sel[it->target], v, 0, 0);
            if (t->attr == CR_TIES_TORCH_DESC || t->attr == CR_TIES_TORCH_ASC || t->attr == CR_TIES_TORCH_TOPK)
                kpush(&k, t->attr == CR_TIES_TORCH_DESC ? CR_OP_TORCH_DESC
                          : t->attr == CR_TIES_TORCH_ASC ? CR_OP_TORCH_ASC : CR_OP_TORCH_TOPK,
                      CR_DTYPE_NONE, e->sel[it->target], v, 0, 0);
            break;
        }
    }
    cr_status st = kfinish(&k, domain, chunk, rows, err);
    cr_vec_free(&k.ops);
    /* only this kernel's registers are reset: a whole-graph reset per
     * kernel made emitting quadratic in the number of tensors */
    for (size_t i = 0; i < e->touched.len; i++) e->vreg[((uint32_t *)e->touched.data)[i]] = NONE32;
    return st;
}

/* ---- top-level scalar maths ----------------------------------------------- */

static void emit_scalar(emitter *e, uint32_t n)
{
    const cr_node *nd = &e->g->nodes[n];
    builder *b = &e->b;
    if (nd->op == CR_GOP_CONST || nd->op == CR_GOP_SUM) return;   /* init value / RSUM */
    if (nd->op == CR_GOP_KTH_ABS) {
        emit_main(b, CR_OP_SEL_VALUE, CR_DTYPE_NONE, e->slot[n], e->sel[n], 0, 0);
        if (nd->rdt != CR_DTYPE_F64)
            emit_main(b, CR_OP_MOV, nd->rdt, e->slot[n], e->slot[n], 0, 0);
        return;
    }
    uint32_t a[3] = {0, 0, 0};
    for (int i = 0; i < nd->n_in; i++) a[i] = e->slot[nd->in[i]];
    emit_main(b, cr_gop_to_op(nd->op), nd->rdt, e->slot[n], a[0], a[1], a[2]);
}

/* the selection's first kernel level: its input and k are both ready */
static uint32_t sel_level(const emitter *e, uint32_t n)
{
    const cr_node *nd = &e->g->nodes[n];
    return CR_MAX(e->level[nd->in[0]], e->level[nd->in[1]]);
}

/* ---- one domain ------------------------------------------------------------ */

/* One top-level step of a domain's schedule: at level p, phase 0 are the
 * selection steps due (SEL_FIND_HI/LO, SEL_PREFIX), 1 the scalar maths, 2
 * the SEL_INITs, 3 the kernel items; within a phase, node (or item) order. */
typedef struct event { uint32_t p, phase, key, what; } event;

static int event_cmp(const void *x, const void *y)
{
    const event *a = x, *b = y;
    if (a->p != b->p) return a->p < b->p ? -1 : 1;
    if (a->phase != b->phase) return a->phase < b->phase ? -1 : 1;
    if (a->key != b->key) return a->key < b->key ? -1 : 1;
    return a->what < b->what ? -1 : a->what > b->what;
}

/* The fuse pass's kernel for domain d's work at level p (graph.h), or
 * CR_NO_KERNEL when fusion is off. */
static uint32_t kernel_at(const cr_graph *g, uint32_t d, uint32_t p)
{
    if (!g->kernel_start || p >= g->kernel_start[d + 1] - g->kernel_start[d]) return CR_NO_KERNEL;
    return g->kernel_start[d] + p;
}

static void add_event(emitter *e, uint32_t p, uint32_t phase, uint32_t key, uint32_t what)
{
    event ev = { p, phase, key, what };
    if (!cr_vec_push(&e->events, &ev)) e->b.oom = true;
}

static cr_status emit_domain_body(emitter *e, uint32_t d, cr_error *err)
{
    const cr_graph *g = e->g;
    builder *b = &e->b;
    cr_status st;
    const uint32_t *dn = e->dom_nodes + e->dom_start[d];
    uint32_t n_dn = e->dom_start[d + 1] - e->dom_start[d];
    uint32_t *out_index = e->out_index;

    /* what this domain must compute (inputs of a domain's node are in the
     * domain or constants) */
    for (uint32_t j = 0; j < n_dn; j++) e->need[dn[j]] = 0;
    cr_vec items;
    cr_vec_init(&items, b->a, sizeof(item));
    e->sels.len = 0;
    e->events.len = 0;
    uint32_t store_level = 0;
    for (uint32_t j = e->dout_start[d]; j < e->dout_start[d + 1]; j++) {
        uint32_t o = e->dout[j];
        uint32_t n = g->outputs[o].node;
        /* a trailing cast to the stored dtype is the store's own conversion */
        while (g->nodes[n].op == CR_GOP_MOV && g->nodes[n].rdt == g->outputs[o].dtype &&
               g->nodes[n].kind == CR_VK_TENSOR)
            n = g->nodes[n].in[0];
        out_index[n] = o;
        e->need[n] = 1;
        item it = { IT_STORE, n, n, 0 };
        if (g->nodes[n].kind == CR_VK_SCALAR) {
            cr_vec_free(&items);
            return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: the merge result is a scalar, not a tensor",
                           g->outputs[o].name);
        }
        store_level = CR_MAX(store_level, e->level[n]);
        if (!cr_vec_push(&items, &it)) b->oom = true;
    }
    /* one SSTORE per scratch tensor */
    for (uint32_t j = e->dss_start[d]; j < e->dss_start[d + 1]; j++) {
        uint32_t i = e->dss[j];
        uint32_t n = g->inputs[i].src_node;
        e->need[n] = 1;
        item it = { IT_SSTORE, n, e->scratch_of[i], 0 };
        store_level = CR_MAX(store_level, e->level[n]);
        if (!cr_vec_push(&items, &it)) b->oom = true;
    }
    for (uint32_t j = n_dn; j-- > 0;) {
        if (!e->need[dn[j]]) continue;
        const cr_node *n = &g->nodes[dn[j]];
        for (int k = 0; k < n->n_in; k++)
            if (g->nodes[n->in[k]].domain == d) e->need[n->in[k]] = 1;
    }
    /* reductions and selection passes become kernel items; a selection's
     * passes are emitted for the first of its nodes */
    for (uint32_t j = 0; j < n_dn; j++) {
        uint32_t i = dn[j];
        if (!e->need[i]) continue;
        const cr_node *n = &g->nodes[i];
        if (n->op == CR_GOP_SUM || n->op == CR_GOP_ROWSUM || n->op == CR_GOP_ROWMAX || n->op == CR_GOP_COLSUM) {
            item it = { IT_RED, n->in[0], i, e->level[n->in[0]] };
            if (!cr_vec_push(&items, &it)) b->oom = true;
        } else if ((n->op == CR_GOP_TOPK_MASK || n->op == CR_GOP_KTH_ABS) && e->sel_seen[e->sel[i]] != d + 1) {
            e->sel_seen[e->sel[i]] = d + 1;
            if (!cr_vec_push(&e->sels, &i)) b->oom = true;
            uint32_t L = sel_level(e, i);
            item a = { IT_HIST_HI, n->in[0], i, L }, bb = { IT_HIST_LO, n->in[0], i, L + 1 },
                 c = { IT_TIE, n->in[0], i, L + 2 };
            if (!cr_vec_push(&items, &a) || !cr_vec_push(&items, &bb) || !cr_vec_push(&items, &c))
                b->oom = true;
        }
    }
    item *its = items.data;
    for (size_t i = 0; i < items.len; i++)
        if (its[i].type == IT_STORE || its[i].type == IT_SSTORE) its[i].level = store_level;
    if (b->oom) { cr_vec_free(&items); return cr_fail(err, CR_ERR_NOMEM, "out of memory scheduling"); }

    bool rows = domain_has_rows(e, d);
    uint64_t chunk = domain_chunk(e, d, rows, 0);
    const uint32_t *sels = e->sels.data;
    for (size_t j = 0; j < e->sels.len; j++)
        ((cr_prog_select *)b->selects.data)[e->sel[sels[j]]].chunk = chunk;

    /* a pass-through output: COPY */
    const cr_node *only = items.len == 1 && its[0].type == IT_STORE ? &g->nodes[its[0].node] : NULL;
    if (only && only->op == CR_GOP_INPUT && !g->inputs[only->attr].scratch && !g->inputs[only->attr].rowmap &&
        g->inputs[only->attr].rows == g->inputs[only->attr].src_rows &&
        g->inputs[only->attr].cols == g->inputs[only->attr].src_cols) {
        emit_main(b, CR_OP_COPY, CR_DTYPE_NONE, out_index[its[0].node], e->pinput[only->attr], 0, 0);
    } else {
        /* the schedule, level by level, sorted once (a per-level scan of the
         * domain would be quadratic in a chain of reductions) */
        for (size_t j = 0; j < e->sels.len; j++) {
            uint32_t L = sel_level(e, sels[j]);
            for (uint32_t q = 1; q <= 3; q++)
                if (L + q <= store_level) add_event(e, L + q, 0, sels[j], q);
            if (L <= store_level) add_event(e, L, 2, sels[j], 0);
        }
        for (uint32_t j = 0; j < n_dn; j++) {
            uint32_t i = dn[j];
            if (e->need[i] && g->nodes[i].kind == CR_VK_SCALAR && e->level[i] <= store_level)
                add_event(e, e->level[i], 1, i, 0);
        }
        for (size_t i = 0; i < items.len; i++)
            if (its[i].level <= store_level) add_event(e, its[i].level, 3, (uint32_t)i, 0);
        if (b->oom) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory scheduling"); goto done; }
        event *ev = e->events.data;
        size_t n_ev = e->events.len;
        if (n_ev) qsort(ev, n_ev, sizeof *ev, event_cmp);
        for (size_t x = 0; x < n_ev;) {
            const event *v = &ev[x];
            if (v->phase == 0) {
                cr_op step = v->what == 1 ? CR_OP_SEL_FIND_HI : v->what == 2 ? CR_OP_SEL_FIND_LO : CR_OP_SEL_PREFIX;
                emit_main(b, step, CR_DTYPE_NONE, e->sel[v->key], 0, 0, 0);
            } else if (v->phase == 1) {
                emit_scalar(e, v->key);
            } else if (v->phase == 2) {
                emit_main(b, CR_OP_SEL_INIT, CR_DTYPE_NONE, e->sel[v->key], e->slot[g->nodes[v->key].in[1]], 0, 0);
            } else {
                /* the items of level p are the run ev[x..y); the fuse pass's
                 * kernel of (d, p) takes them all, else each is its own */
                size_t y = x;
                while (y < n_ev && ev[y].p == v->p && ev[y].phase == 3) y++;
                size_t per = kernel_at(g, d, v->p) != CR_NO_KERNEL ? y - x : 1;
                item *sel_items = cr_malloc(b->a, per * sizeof(item));
                if (!sel_items) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto done; }
                st = CR_OK;
                for (size_t m = x; m < y && !st; m += per) {
                    for (size_t q = 0; q < per; q++) sel_items[q] = its[ev[m + q].key];
                    st = emit_kernel(e, d, sel_items, per, chunk, rows, out_index, err);
                }
                cr_free(b->a, sel_items);
                if (st) goto done;
                x = y;
                continue;
            }
            x++;
        }
    }
    for (uint32_t j = e->dout_start[d]; j < e->dout_start[d + 1]; j++)
        emit_main(b, CR_OP_DONE, CR_DTYPE_NONE, e->dout[j], 0, 0, 0);
    for (uint32_t j = 0; j < n_dn; j++) {
        uint32_t i = dn[j];
        const cr_node *n = &g->nodes[i];
        if (!e->need[i] || n->op != CR_GOP_INPUT) continue;
        const cr_graph_input *in = &g->inputs[n->attr];
        if (!in->scratch) {
            emit_main(b, CR_OP_RELEASE, CR_DTYPE_NONE, 0, e->pinput[n->attr], 0, 0);
        } else {
            uint32_t s = e->scratch_of[n->attr];
            if (s != NONE32 && --e->scratch_left[s] == 0)
                emit_main(b, CR_OP_SFREE, CR_DTYPE_NONE, s, 0, 0, 0);
        }
    }
    st = b->oom ? cr_fail(err, CR_ERR_NOMEM, "out of memory emitting") : CR_OK;
done:
    cr_vec_free(&items);
    return st;
}

/* Emit domain d after the earlier-stage domains whose results it reads
 * (each once). Depth-first with an explicit stack: stages may chain. */
static cr_status emit_domain(emitter *e, uint32_t d, cr_error *err)
{
    if (e->dom_done[d]) return CR_OK;
    const cr_graph *g = e->g;
    uint32_t *at = e->dstack + g->n_domains;   /* per stacked domain: next node to look at */
    uint32_t n = 0;
    e->dom_done[d] = 1;
    e->dstack[n] = d; at[n++] = e->dom_start[d];
    while (n) {
        uint32_t top = e->dstack[n - 1], pd = NONE32;
        while (at[n - 1] < e->dom_start[top + 1] && pd == NONE32) {
            const cr_node *nd = &g->nodes[e->dom_nodes[at[n - 1]++]];
            if (nd->op != CR_GOP_INPUT || (nd->flags & CR_NODEF_DEAD)) continue;
            const cr_graph_input *in = &g->inputs[nd->attr];
            if (in->scratch && !e->dom_done[g->nodes[in->src_node].domain]) pd = g->nodes[in->src_node].domain;
        }
        if (pd != NONE32) {
            e->dom_done[pd] = 1;
            e->dstack[n] = pd; at[n++] = e->dom_start[pd];
            continue;
        }
        n--;
        cr_status st = emit_domain_body(e, top, err);
        if (st) return st;
    }
    return CR_OK;
}

/* ---- tables ---------------------------------------------------------------- */

/* An open-addressing table of indices, found by a hash of what they index
 * (the caller compares); sized for n entries at most half full. */
typedef struct itab { uint32_t *slot; uint64_t mask; } itab;

static bool itab_init(const cr_allocator *a, itab *t, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    t->mask = cap - 1;
    t->slot = cr_malloc(a, cap * sizeof *t->slot);
    if (t->slot) memset(t->slot, 0xff, cap * sizeof *t->slot);
    return t->slot != NULL;
}

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33; h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) { h ^= (uint8_t)*s; h *= 1099511628211ull; }
    return mix64(h);
}

/* The program file of graph input `gi`'s shard, added on first use
 * (files: a table sized for one file per input). b->files holds, per
 * program file, the graph input that named it first; the records are made
 * after the tables (add_files), so that they are the manifest's. */
static uint32_t file_index(emitter *e, itab *files, uint32_t gi)
{
    builder *b = &e->b;
    const char *path = e->g->inputs[gi].path ? e->g->inputs[gi].path : "?";
    uint64_t h = str_hash(path) & files->mask;
    for (;; h = (h + 1) & files->mask) {
        uint32_t i = files->slot[h];
        if (i == NONE32) break;
        const cr_graph_input *f = &e->g->inputs[((const uint32_t *)b->files.data)[i]];
        if (!strcmp(f->path ? f->path : "?", path)) return i;
    }
    uint32_t i = push(b, &b->files, &gi);
    if (!b->oom) files->slot[h] = i;
    return i;
}

/* The manifest: each file named by its model and bound to its path
 * (compiler/bind.h), in file_index's order. */
static cr_status add_files(const cr_graph *g, const cr_vec *first, cr_program *out, cr_error *err)
{
    for (size_t i = 0; i < first->len; i++) {
        const cr_graph_input *in = &g->inputs[((const uint32_t *)first->data)[i]];
        cr_input_file f = { .ref = in->model_ref, .lookup = in->model_lookup, .revision = in->model_rev,
                            .dir = in->model_dir, .path = in->path ? in->path : "?", .size = in->file_size };
        if (!f.dir) f.ref = NULL;   /* built without a model (tests): the path as given */
        uint32_t idx;
        cr_status st = cr_program_add_input_file(out, &f, &idx, err);
        if (st) return st;
    }
    return CR_OK;
}

static cr_status make_tables(emitter *e, cr_error *err)
{
    const cr_graph *g = e->g;
    builder *b = &e->b;
    /* which graph inputs / nodes are used at all */
    memset(e->need, 0, g->n_nodes);
    for (uint32_t o = 0; o < g->n_outputs; o++) e->need[g->outputs[o].node] = 1;
    for (uint32_t i = g->n_nodes; i-- > 0;) {
        if (!e->need[i]) continue;
        const cr_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++) e->need[n->in[k]] = 1;
        if (n->op == CR_GOP_INPUT && g->inputs[n->attr].scratch) e->need[g->inputs[n->attr].src_node] = 1;
    }
    /* scratch tensors: one per stored node (vreg, unused until kernels,
     * maps a stored node to its scratch meanwhile) */
    for (uint32_t i = 0; i < g->n_inputs; i++) e->scratch_of[i] = NONE32;
    uint32_t n_scratch = 0;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const cr_node *n = &g->nodes[i];
        if (!e->need[i] || n->op != CR_GOP_INPUT || !g->inputs[n->attr].scratch) continue;
        const cr_graph_input *in = &g->inputs[n->attr];
        uint32_t s = e->vreg[in->src_node];
        if (s == NONE32) {
            const cr_graph_domain *sd = &g->domains[g->nodes[in->src_node].domain];
            cr_prog_scratch sc = { .dtype = (uint8_t)in->dtype, .numel = dom_numel(sd) };
            s = push(b, &b->scratch, &sc);
            e->vreg[in->src_node] = s;
            n_scratch++;
        }
        e->scratch_of[n->attr] = s;
    }
    for (uint32_t i = 0; i < g->n_inputs; i++)
        if (g->inputs[i].scratch) e->vreg[g->inputs[i].src_node] = NONE32;
    e->scratch_left = cr_calloc(b->a, n_scratch + 1, sizeof(uint32_t));
    if (!e->scratch_left) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const cr_node *n = &g->nodes[i];
        if (e->need[i] && n->op == CR_GOP_INPUT && e->scratch_of[n->attr] != NONE32)
            e->scratch_left[e->scratch_of[n->attr]]++;
    }
    /* program inputs */
    itab files, sels;
    if (!itab_init(b->a, &files, g->n_inputs)) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < g->n_inputs; i++) {
        const cr_graph_input *in = &g->inputs[i];
        cr_prog_input pi = { .dtype = (uint8_t)in->dtype, .rows = in->rows, .cols = in->cols,
                             .row_stride = in->src_cols };
        char name[512];
        if (in->blob) {
            pi.kind = CR_INPUT_BLOB;
            pi.file = 0;
            pi.offset = add_aligned(b, in->blob, (size_t)in->nbytes).off;
            pi.nbytes = in->nbytes;
            snprintf(name, sizeof name, "%s (computed)", in->tensor ? in->tensor : "?");
        } else if (in->scratch) {
            if (e->scratch_of[i] == NONE32) { e->pinput[i] = NONE32; continue; }
            pi.kind = CR_INPUT_SCRATCH;
            pi.file = e->scratch_of[i];
            pi.offset = 0;
            pi.nbytes = in->src_rows * in->src_cols * cr_dtype_size(in->dtype);
            snprintf(name, sizeof name, "%s (stage output)", in->tensor ? in->tensor : "?");
        } else {
            pi.kind = CR_INPUT_FILE;
            pi.file = file_index(e, &files, i);
            pi.offset = in->offset;
            pi.nbytes = in->nbytes;
            snprintf(name, sizeof name, "%s", in->tensor ? in->tensor : "?");
        }
        if (in->rowmap) pi.rowmap = add_aligned(b, in->rowmap, (size_t)in->rows * sizeof *in->rowmap);
        pi.name = add_str(b, name);
        e->pinput[i] = push(b, &b->inputs, &pi);
    }
    cr_free(b->a, files.slot);
    /* nodes that share a selection: same input, k and tie order */
    if (!itab_init(b->a, &sels, g->n_nodes)) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    /* scalar slots, row vectors, selections, streams */
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const cr_node *n = &g->nodes[i];
        e->slot[i] = e->rowvec[i] = e->sel[i] = e->stream[i] = NONE32;
        if (!e->need[i]) continue;
        if (n->kind == CR_VK_SCALAR) {
            double v = n->op == CR_GOP_CONST ? n->value : 0;
            e->slot[i] = push(b, &b->scalars, &v);
        }
        if (n->op == CR_GOP_ROWSUM || n->op == CR_GOP_ROWMAX || n->op == CR_GOP_COLSUM) {
            const cr_graph_domain *dm = &g->domains[n->domain];
            cr_prog_rowvec rv = { n->op == CR_GOP_COLSUM ? dm->cols : dm->rows,
                                  n->op == CR_GOP_COLSUM ? n->attr >> CR_COLSUM_ROWS_SHIFT : 0 };
            e->rowvec[i] = push(b, &b->rowvecs, &rv);
        }
        if (n->op == CR_GOP_TOPK_MASK || n->op == CR_GOP_KTH_ABS) {
            uint64_t h = mix64(((uint64_t)n->in[0] << 32 | n->in[1]) ^ mix64(n->attr)) & sels.mask;
            for (;; h = (h + 1) & sels.mask) {
                uint32_t j = sels.slot[h];
                if (j == NONE32) break;
                const cr_node *m = &g->nodes[j];
                if (m->in[0] == n->in[0] && m->in[1] == n->in[1] && m->attr == n->attr) {
                    e->sel[i] = e->sel[j];
                    break;
                }
            }
            if (e->sel[i] == NONE32) {
                cr_prog_select s = { dom_numel(&g->domains[n->domain]), 1 };
                e->sel[i] = push(b, &b->selects, &s);
                sels.slot[h] = i;
            }
        }
        if (n->op == CR_GOP_RAND) {
            cr_prog_stream s = { n->attr };
            e->stream[i] = push(b, &b->streams, &s);
        }
    }
    /* outputs (laid out later) */
    for (uint32_t o = 0; o < g->n_outputs; o++) {
        const cr_graph_output *go = &g->outputs[o];
        cr_prog_output po = { .name = add_str(b, go->name), .dtype = (uint8_t)go->dtype,
                              .ndim = (uint8_t)go->ndim };
        uint64_t numel = 1;
        for (uint32_t k = 0; k < go->ndim; k++) { po.shape[k] = go->shape[k]; numel *= go->shape[k]; }
        po.nbytes = numel * cr_dtype_size(go->dtype);
        push(b, &b->outputs, &po);
    }
    cr_free(b->a, sels.slot);
    for (uint32_t m = 0; m < g->n_messages; m++) {
        cr_blob bl = add_str(b, g->messages[m]);
        push(b, &b->messages, &bl);
    }
    return b->oom ? cr_fail(err, CR_ERR_NOMEM, "out of memory building tables") : CR_OK;
}

/* move a vec's storage into a program array */
#define TAKE(field, nfield, vec, T) do { out->field = (T *)(vec).data; out->nfield = (uint32_t)(vec).len; \
        (vec).data = NULL; (vec).len = (vec).cap = 0; } while (0)

cr_status cr_emit_program(const cr_graph *g, const cr_emit_options *o, cr_program *out, cr_error *err)
{
    memset(out, 0, sizeof *out);
    emitter e = { .g = g, .o = o };
    builder *b = &e.b;
    b->a = g->alloc;
    cr_vec *vecs[] = { &b->blobs, &b->files, &b->inputs, &b->outputs, &b->scalars, &b->rowvecs,
                       &b->scratch, &b->selects, &b->streams, &b->kernels, &b->messages, &b->code,
                       &b->main };
    size_t sizes[] = { 1, sizeof(uint32_t), sizeof(cr_prog_input), sizeof(cr_prog_output),
                       sizeof(double), sizeof(cr_prog_rowvec), sizeof(cr_prog_scratch),
                       sizeof(cr_prog_select), sizeof(cr_prog_stream), sizeof(cr_prog_kernel),
                       sizeof(cr_blob), sizeof(cr_insn), sizeof(cr_insn) };
    for (size_t i = 0; i < CR_ARRAY_LEN(vecs); i++) cr_vec_init(vecs[i], b->a, sizes[i]);
    size_t nn = g->n_nodes ? g->n_nodes : 1, ni = g->n_inputs ? g->n_inputs : 1;
    e.level = cr_graph_levels(g);
    e.slot = cr_malloc(b->a, nn * 4); e.rowvec = cr_malloc(b->a, nn * 4);
    e.sel = cr_malloc(b->a, nn * 4); e.stream = cr_malloc(b->a, nn * 4);
    e.pinput = cr_malloc(b->a, ni * 4); e.scratch_of = cr_malloc(b->a, ni * 4);
    e.need = cr_malloc(b->a, nn);
    e.dom_done = cr_calloc(b->a, g->n_domains + 1, 1);
    e.dstack = cr_malloc(b->a, ((size_t)g->n_domains + 1) * 2 * sizeof *e.dstack);
    e.out_index = cr_malloc(b->a, nn * 4);
    e.vreg = cr_malloc(b->a, nn * 4);
    cr_vec_init(&e.touched, b->a, sizeof(uint32_t));
    cr_vec_init(&e.frames, b->a, sizeof(kframe));
    cr_vec_init(&e.sels, b->a, sizeof(uint32_t));
    cr_vec_init(&e.events, b->a, sizeof(event));
    cr_status st;
    if (!e.level || !e.slot || !e.rowvec || !e.sel || !e.stream || !e.pinput || !e.scratch_of ||
        !e.need || !e.dom_done || !e.dstack || !e.out_index || !e.vreg) {
        st = cr_fail(err, CR_ERR_NOMEM, "out of memory emitting the program");
        goto done;
    }
    memset(e.vreg, 0xff, nn * 4);
    add_str(b, "");   /* blob offset 0 is the empty string */
    if ((st = make_tables(&e, err))) goto done;
    /* per-domain lists: nodes, outputs, and the scratch tensors each stores
     * (the first graph input of each) */
    {
        uint32_t nk = CR_MAX(CR_MAX(g->n_nodes, g->n_outputs), g->n_inputs);
        uint32_t *key = cr_malloc(b->a, ((size_t)nk + 1) * sizeof *key);
        bool ok = key != NULL;
        if (ok) {
            for (uint32_t i = 0; i < g->n_nodes; i++) key[i] = g->nodes[i].domain;
            ok = group_by(b->a, key, g->n_nodes, g->n_domains, &e.dom_start, &e.dom_nodes);
        }
        if (ok) {
            for (uint32_t o = 0; o < g->n_outputs; o++) key[o] = g->outputs[o].domain;
            ok = group_by(b->a, key, g->n_outputs, g->n_domains, &e.dout_start, &e.dout);
        }
        if (ok) {
            /* vreg marks the scratch tensors already claimed, then is reset */
            for (uint32_t i = 0; i < g->n_inputs; i++) {
                uint32_t s = e.scratch_of[i];
                key[i] = NONE32;
                if (!g->inputs[i].scratch || s == NONE32 || e.vreg[s] != NONE32) continue;
                e.vreg[s] = i;
                key[i] = g->nodes[g->inputs[i].src_node].domain;
            }
            for (uint32_t i = 0; i < g->n_inputs; i++)
                if (e.scratch_of[i] != NONE32) e.vreg[e.scratch_of[i]] = NONE32;
            ok = group_by(b->a, key, g->n_inputs, g->n_domains, &e.dss_start, &e.dss);
        }
        e.sel_seen = ok ? cr_calloc(b->a, (size_t)b->selects.len + 1, sizeof *e.sel_seen) : NULL;
        cr_free(b->a, key);
        if (!e.sel_seen) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory emitting the program"); goto done; }
    }
    cr_blob version = add_str(b, CR_VERSION_STRING);
    cr_blob mk_version = add_str(b, cr_mk_name(o ? o->mk_version : CR_MK_DEFAULT));
    /* the file's name only: a .crb holds no path of the machine that made it */
    const char *rname = o && o->recipe_name ? o->recipe_name : "";
    const char *rslash = strrchr(rname, '/');
    cr_blob recipe = add_str(b, rslash && rslash[1] ? rslash + 1 : rname);

    /* scalar maths that depend on no tensor (when fold is off) run first */
    for (uint32_t i = 0; i < g->n_nodes; i++)
        if (e.need[i] && g->nodes[i].kind == CR_VK_SCALAR && g->nodes[i].domain == CR_NO_DOMAIN)
            emit_scalar(&e, i);
    /* domains in output order; producers are pulled in by their consumers */
    uint32_t prev_prefetch = NONE32;
    for (uint32_t oi = 0; oi < g->n_outputs; oi++) {
        uint32_t d = g->outputs[oi].domain;
        if (e.dom_done[d]) continue;
        /* prefetch this domain's file inputs (unless done already), then the next one's */
        uint32_t next = NONE32;
        for (uint32_t oj = oi + 1; oj < g->n_outputs && next == NONE32; oj++)
            if (g->outputs[oj].domain != d && !e.dom_done[g->outputs[oj].domain]) next = g->outputs[oj].domain;
        for (int pass = 0; pass < 2; pass++) {
            uint32_t pd = pass == 0 ? d : next;
            if (pd == NONE32 || pd == prev_prefetch) continue;
            for (uint32_t j = e.dom_start[pd]; j < e.dom_start[pd + 1]; j++) {
                const cr_node *n = &g->nodes[e.dom_nodes[j]];
                if (n->op == CR_GOP_INPUT && !(n->flags & CR_NODEF_DEAD) &&
                    !g->inputs[n->attr].scratch && e.pinput[n->attr] != NONE32)
                    emit_main(b, CR_OP_PREFETCH, CR_DTYPE_NONE, 0, e.pinput[n->attr], 0, 0);
            }
            if (pass == 1) prev_prefetch = pd;
        }
        if ((st = emit_domain(&e, d, err))) goto done;
    }
    if (b->oom) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory emitting the program"); goto done; }

    out->alloc = b->a;
    out->tool_version = version;
    out->mergekit_version = mk_version;
    out->recipe_name = recipe;
    out->seed = o ? o->seed : 0;
    out->flags = CR_PROG_SKIP_HASH;
    out->blobs = b->blobs.data; out->n_blob_bytes = b->blobs.len;
    b->blobs.data = NULL;
    TAKE(inputs, n_inputs, b->inputs, cr_prog_input);
    TAKE(outputs, n_outputs, b->outputs, cr_prog_output);
    TAKE(scalar_init, n_scalars, b->scalars, double);
    TAKE(rowvecs, n_rowvecs, b->rowvecs, cr_prog_rowvec);
    TAKE(scratch, n_scratch, b->scratch, cr_prog_scratch);
    TAKE(selects, n_selects, b->selects, cr_prog_select);
    TAKE(streams, n_streams, b->streams, cr_prog_stream);
    TAKE(kernels, n_kernels, b->kernels, cr_prog_kernel);
    TAKE(messages, n_messages, b->messages, cr_blob);
    TAKE(code, n_code, b->code, cr_insn);
    TAKE(main, n_main, b->main, cr_insn);
    cr_program_mark_kernels(out);   /* what the VM would otherwise pattern-match at run time */
    st = add_files(g, &b->files, out, err);
done:
    for (size_t i = 0; i < CR_ARRAY_LEN(vecs); i++) cr_vec_free(vecs[i]);
    cr_free(b->a, e.level); cr_free(b->a, e.slot); cr_free(b->a, e.rowvec); cr_free(b->a, e.sel);
    cr_free(b->a, e.stream); cr_free(b->a, e.pinput); cr_free(b->a, e.scratch_of);
    cr_free(b->a, e.need); cr_free(b->a, e.dom_done); cr_free(b->a, e.scratch_left);
    cr_free(b->a, e.dstack); cr_free(b->a, e.out_index); cr_free(b->a, e.vreg);
    cr_free(b->a, e.dom_start); cr_free(b->a, e.dom_nodes); cr_free(b->a, e.dout_start);
    cr_free(b->a, e.dout); cr_free(b->a, e.dss_start); cr_free(b->a, e.dss);
    cr_free(b->a, e.sel_seen);
    cr_vec_free(&e.touched); cr_vec_free(&e.frames); cr_vec_free(&e.sels); cr_vec_free(&e.events);
    if (st) cr_program_free(out);
    return st;
}
