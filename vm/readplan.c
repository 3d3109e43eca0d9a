/* readplan.c — the read order of a run (readplan.h): every file view the
 * main stream names, by the first step that names it, merged into ranges
 * and extents.
 *
 * Three sorts, n log n in the views named (a 70B merge names tens of
 * thousands): by (file, offset) to merge overlapping views into ranges,
 * each taking the earliest step of its views; by (step, file, offset) for
 * the read order; the steps' needs are then each view's range end.
 */
#include "readplan.h"

#include <stdlib.h>

typedef struct ref {
    uint32_t file, pc, range;  /* range: index of the merged range, after the first sort */
    uint32_t input;
    uint64_t lo, hi;
} ref;

typedef struct range {
    uint32_t file, pc;         /* pc: the first step that names any of it */
    uint64_t lo, hi, end;      /* end: read-order position of hi */
} range;

/* bytes from a view's offset to the end of its last element (memplan.c's
 * view_extent: a row gather may touch every stored row) */
static uint64_t extent_of(const cr_prog_input *in)
{
    if (!in->rows || !in->cols) return 0;
    if (in->rowmap.len) return in->nbytes;
    return ((in->rows - 1) * in->row_stride + in->cols) * cr_dtype_size((cr_dtype)in->dtype);
}

static int by_file_lo(const void *a, const void *b)
{
    const ref *x = a, *y = b;
    if (x->file != y->file) return x->file < y->file ? -1 : 1;
    if (x->lo != y->lo) return x->lo < y->lo ? -1 : 1;
    return x->pc < y->pc ? -1 : x->pc > y->pc;
}

static int by_pc(const void *a, const void *b)
{
    const range *x = a, *y = b;
    if (x->pc != y->pc) return x->pc < y->pc ? -1 : 1;
    if (x->file != y->file) return x->file < y->file ? -1 : 1;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

typedef struct refs { ref *r; uint32_t n, cap; const cr_allocator *a; bool oom; } refs;

static void add(refs *v, const cr_program *p, uint32_t input, uint32_t pc)
{
    if (input >= p->n_inputs) return;
    const cr_prog_input *in = &p->inputs[input];
    uint64_t e = extent_of(in);
    if (in->kind != CR_INPUT_FILE || !e || in->file >= p->n_files) return;
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 64;
        ref *r = cr_realloc(v->a, v->r, (size_t)cap * sizeof *r);
        if (!r) { v->oom = true; return; }
        v->r = r;
        v->cap = cap;
    }
    v->r[v->n++] = (ref){ .file = in->file, .pc = pc, .input = input, .lo = in->offset, .hi = in->offset + e };
}

/* the views main step pc reads (PREFETCH: will read) */
static void step_refs(refs *v, const cr_program *p, uint32_t pc)
{
    const cr_insn *in = &p->main[pc];
    if (in->op == CR_OP_PREFETCH || in->op == CR_OP_COPY) { add(v, p, in->a, pc); return; }
    if (in->op != CR_OP_KERNEL || in->a >= p->n_kernels) return;
    const cr_prog_kernel *k = &p->kernels[in->a];
    for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++) {
        const cr_insn *u = &p->code[c];
        if (u->op == CR_OP_LOAD) add(v, p, u->a, pc);
        else if (u->op == CR_OP_LOWRANK || u->op == CR_OP_LOWRANK_T) { add(v, p, u->a, pc); add(v, p, u->b, pc); }
    }
}

cr_status cr_read_plan_init(cr_read_plan *rp, const cr_program *p, const cr_allocator *a, cr_error *err)
{
    *rp = (cr_read_plan){0};
    if (!a) a = p->alloc ? p->alloc : cr_default_allocator();
    rp->alloc = a;
    rp->n_main = p->n_main;
    refs v = { .a = a };
    for (uint32_t pc = 0; pc < p->n_main; pc++) step_refs(&v, p, pc);
    range *rg = NULL;
    uint32_t n_rg = 0;
    rp->need = cr_calloc(a, p->n_main + 1, sizeof *rp->need);
    if (v.oom || !rp->need) goto oom;
    if (v.n) {
        qsort(v.r, v.n, sizeof *v.r, by_file_lo);
        rg = cr_malloc(a, (size_t)v.n * sizeof *rg);
        if (!rg) goto oom;
        /* overlapping views of a file: one range, at its earliest step */
        for (uint32_t i = 0; i < v.n; i++) {
            ref *r = &v.r[i];
            range *last = n_rg ? &rg[n_rg - 1] : NULL;
            if (last && last->file == r->file && r->lo < last->hi) {
                if (r->hi > last->hi) last->hi = r->hi;
                if (r->pc < last->pc) last->pc = r->pc;
            } else {
                rg[n_rg++] = (range){ .file = r->file, .pc = r->pc, .lo = r->lo, .hi = r->hi };
            }
            r->range = n_rg - 1;
        }
        /* the read order: ranges by step; each range learns its end position */
        range *sorted = cr_malloc(a, (size_t)n_rg * sizeof *sorted);
        if (!sorted) goto oom;
        for (uint32_t i = 0; i < n_rg; i++) { sorted[i] = rg[i]; sorted[i].end = i; }   /* end: the index, for now */
        qsort(sorted, n_rg, sizeof *sorted, by_pc);
        rp->ext = cr_malloc(a, (size_t)n_rg * sizeof *rp->ext);
        if (!rp->ext) { cr_free(a, sorted); goto oom; }
        uint64_t at = 0;
        for (uint32_t i = 0; i < n_rg; i++) {
            range *s = &sorted[i];
            uint64_t len = s->hi - s->lo;
            cr_read_extent *e = rp->n_ext ? &rp->ext[rp->n_ext - 1] : NULL;
            if (e && e->file == s->file && e->off + e->len == s->lo) e->len += len;
            else rp->ext[rp->n_ext++] = (cr_read_extent){ .file = s->file, .off = s->lo, .len = len };
            at += len;
            rg[s->end].end = at;
        }
        rp->total = at;
        cr_free(a, sorted);
        for (uint32_t i = 0; i < v.n; i++) {
            const ref *r = &v.r[i];
            uint8_t op = p->main[r->pc].op;
            if (op == CR_OP_PREFETCH) continue;   /* a hint: the step that reads it waits */
            if (rg[r->range].end > rp->need[r->pc]) rp->need[r->pc] = rg[r->range].end;
        }
    }
    cr_free(a, rg);
    cr_free(a, v.r);
    return CR_OK;
oom:
    cr_free(a, rg);
    cr_free(a, v.r);
    cr_read_plan_free(rp);
    return cr_fail(err, CR_ERR_NOMEM, "out of memory planning the reads");
}

void cr_read_plan_free(cr_read_plan *rp)
{
    if (rp->alloc) {
        cr_free(rp->alloc, rp->ext);
        cr_free(rp->alloc, rp->need);
    }
    rp->ext = NULL;
    rp->need = NULL;
    rp->n_ext = 0;
}
