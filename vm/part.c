/* part.c — shards to parts, and the slice of `main` a part runs (part.h).
 *
 * The slice is a liveness walk over `main` from the end: a set of needed
 * scalar slots, row/column vectors, scratch tensors and selections, grown
 * by the reads of every kept instruction. Nothing is removed from the sets
 * (no "kill" on a write): the emitter gives every scalar, vector, scratch
 * tensor and selection its own slot (compiler/emit.c), so a value is
 * written by the instructions of one tensor only, and keeping every writer
 * of a needed slot keeps a selection's whole sequence (SEL_INIT, the
 * counting kernels, SEL_FIND_*, SEL_PREFIX). Page hints (PREFETCH,
 * RELEASE), DONE and SFREE follow what was kept, in a forward pass.
 */
#include "part.h"

#include <stdlib.h>
#include <string.h>

typedef struct shard_size { uint64_t size; uint32_t index; } shard_size;

static int by_size_desc(const void *x, const void *y)
{
    const shard_size *a = x, *b = y;
    if (a->size != b->size) return a->size > b->size ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

void cr_part_assign(const cr_program *p, uint32_t n_parts, uint32_t *shard_part)
{
    if (!p->n_shards || !n_parts) return;
    shard_size *s = cr_malloc(p->alloc, (size_t)p->n_shards * sizeof *s);
    uint64_t *load = cr_calloc(p->alloc, n_parts, sizeof *load);
    if (!s || !load) {
        /* out of memory: round robin, still deterministic */
        for (uint32_t i = 0; i < p->n_shards; i++) shard_part[i] = i % n_parts;
    } else {
        for (uint32_t i = 0; i < p->n_shards; i++) s[i] = (shard_size){ p->shards[i].file_size, i };
        qsort(s, p->n_shards, sizeof *s, by_size_desc);
        for (uint32_t i = 0; i < p->n_shards; i++) {
            uint32_t best = 0;
            for (uint32_t q = 1; q < n_parts; q++) if (load[q] < load[best]) best = q;
            shard_part[s[i].index] = best;
            load[best] += s[i].size;
        }
    }
    cr_free(p->alloc, s);
    cr_free(p->alloc, load);
}

typedef struct live {
    uint8_t *scal, *vec, *scr, *sel, *in;
} live;

/* operand `v` of kind `k` is read (kernel: registers are not tracked) */
static void mark_read(const cr_program *p, live *L, char k, uint32_t v, bool top)
{
    switch (k) {
    case 'v': if (top) L->scal[v] = 1; break;
    case 's': L->scal[v] = 1; break;
    case 'w': L->vec[v] = 1; break;
    case 'x': L->sel[v] = 1; break;
    case 't': L->scr[v] = 1; break;
    case 'i':
        L->in[v] = 1;
        if (p->inputs[v].kind == CR_INPUT_SCRATCH) L->scr[p->inputs[v].file] = 1;
        break;
    default: break;
    }
}

/* does writing operand `v` of kind `k` matter to the part? */
static bool write_needed(const cr_program *p, const live *L, const uint8_t *shard_in, char k, uint32_t v, bool top)
{
    switch (k) {
    case 'v': return top && L->scal[v];
    case 's': return L->scal[v];
    case 'w': return L->vec[v];
    case 'x': return L->sel[v];
    case 't': return L->scr[v];
    case 'o': return shard_in[p->outputs[v].shard] != 0;
    default: return false;
    }
}

static uint32_t operand(const cr_insn *in, int i) { return i == 0 ? in->dst : i == 1 ? in->a : i == 2 ? in->b : in->c; }

/* Selection ops read and write their state (dst): a kept one keeps the
 * state needed. */
static void mark_insn(const cr_program *p, live *L, const cr_insn *in, bool top)
{
    const char *kinds = cr_op_table[in->op].kinds;
    for (int i = 1; i < 4; i++) mark_read(p, L, kinds[i], operand(in, i), top);
    if (kinds[0] == 'x') L->sel[in->dst] = 1;
}

static bool insn_needed(const cr_program *p, const live *L, const uint8_t *shard_in, const cr_insn *in, bool top)
{
    const char *kinds = cr_op_table[in->op].kinds;
    return write_needed(p, L, shard_in, kinds[0], in->dst, top);
}

cr_status cr_part_slice(const cr_program *p, const uint8_t *shard_in, cr_insn **main_out, uint32_t *n_out,
                        cr_error *err)
{
    const cr_allocator *A = p->alloc;
    live L = {
        cr_calloc(A, p->n_scalars + 1, 1), cr_calloc(A, p->n_rowvecs + 1, 1), cr_calloc(A, p->n_scratch + 1, 1),
        cr_calloc(A, p->n_selects + 1, 1), cr_calloc(A, p->n_inputs + 1, 1),
    };
    uint8_t *keep = cr_calloc(A, p->n_main + 1, 1);
    cr_insn *out = cr_malloc(A, ((size_t)p->n_main + 1) * sizeof *out);
    cr_status s = CR_OK;
    if (!L.scal || !L.vec || !L.scr || !L.sel || !L.in || !keep || !out) {
        s = cr_fail(err, CR_ERR_NOMEM, "out of memory slicing the program");
        goto done;
    }
    for (uint32_t pc = p->n_main; pc-- > 0;) {
        const cr_insn *in = &p->main[pc];
        switch ((cr_op)in->op) {
        case CR_OP_PREFETCH: case CR_OP_RELEASE: case CR_OP_DONE: case CR_OP_SFREE:
            continue;   /* forward pass below */
        case CR_OP_CHECK:
            keep[pc] = L.scal[in->a];
            continue;
        case CR_OP_KERNEL: {
            const cr_prog_kernel *k = &p->kernels[in->a];
            const cr_insn *code = p->code + k->code_begin;
            bool need = false;
            for (uint32_t i = 0; i < k->code_len && !need; i++) need = insn_needed(p, &L, shard_in, &code[i], false);
            if (!need) continue;
            keep[pc] = 1;
            for (uint32_t i = 0; i < k->code_len; i++) mark_insn(p, &L, &code[i], false);
            continue;
        }
        default:
            if (!insn_needed(p, &L, shard_in, in, true)) continue;
            keep[pc] = 1;
            mark_insn(p, &L, in, true);
            continue;
        }
    }
    uint32_t n = 0;
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        const cr_insn *in = &p->main[pc];
        bool k = keep[pc];
        if (in->op == CR_OP_PREFETCH || in->op == CR_OP_RELEASE) k = L.in[in->a];
        else if (in->op == CR_OP_DONE) k = shard_in[p->outputs[in->dst].shard] != 0;
        else if (in->op == CR_OP_SFREE) k = L.scr[in->dst];
        if (k) out[n++] = *in;
    }
    *main_out = out;
    *n_out = n;
    out = NULL;
done:
    cr_free(A, L.scal); cr_free(A, L.vec); cr_free(A, L.scr); cr_free(A, L.sel); cr_free(A, L.in);
    cr_free(A, keep);
    cr_free(A, out);
    return s;
}
