/* runbuf.c — the sizes of a run's buffers (runbuf.h), asked by the
 * interpreter that allocates them and by the memory model that counts
 * them. */
#include "runbuf.h"
#include "memplan.h"

/* staged areas start 64-byte aligned (a cache line, the widest store) */
static uint64_t align64(uint64_t v) { return (v + 63) & ~(uint64_t)63; }

uint64_t cr_run_stage_layout(const cr_program *p, const cr_prog_kernel *k, uint64_t *store_off, uint64_t *tmp_off)
{
    uint64_t n = CR_MIN(k->chunk, k->rows * k->cols), at = 0;
    bool row_copy = false;
    for (uint32_t pc = 0; pc < k->code_len; pc++) {
        const cr_insn *u = &p->code[k->code_begin + pc];
        if (u->op == CR_OP_RSUM_ROW_TORCH) row_copy = true;
        if (u->op != CR_OP_STORE) continue;
        if (store_off) store_off[pc] = at;
        at = align64(at + n * cr_dtype_size((cr_dtype)p->outputs[u->dst].dtype));
    }
    if (tmp_off) *tmp_off = at;
    return at + (row_copy ? k->cols * sizeof(float) : 0);
}

void cr_run_thread_bufs_of(const cr_program *p, cr_run_thread_bufs *b)
{
    *b = (cr_run_thread_bufs){0};
    for (uint32_t i = 0; i < p->n_kernels; i++) {
        const cr_prog_kernel *k = &p->kernels[i];
        uint64_t n = CR_MIN(k->chunk, k->rows * k->cols);
        if (!n) continue;   /* runs no chunk */
        uint64_t block = cr_kernel_block(p, k), rsums = 0;
        b->regs = CR_MAX(b->regs, ((uint64_t)(k->n_regs ? k->n_regs - 1 : 0) * block + CR_MIN(block, n)) * sizeof(float));
        b->io = CR_MAX(b->io, cr_run_stage_layout(p, k, NULL, NULL));
        for (uint32_t pc = 0; pc < k->code_len; pc++) {
            uint16_t op = p->code[k->code_begin + pc].op;
            if (op == CR_OP_ROWRANK) b->keys = CR_MAX(b->keys, k->cols * sizeof(uint64_t));
            /* LOWRANK's coefficients and two pieces (interp_kernel.c lowrank); shares `keys` with ROWRANK */
            if (op == CR_OP_LOWRANK || op == CR_OP_LOWRANK_T)
                b->keys = CR_MAX(b->keys, (p->inputs[p->code[k->code_begin + pc].a].rows + 2 * block) * sizeof(float));
            rsums += op == CR_OP_RSUM;
        }
        b->lanes = CR_MAX(b->lanes, rsums * 8 * sizeof(double));
        b->carry = CR_MAX(b->carry, k->code_len * sizeof(uint64_t));
    }
    b->regs0 = b->regs;
    b->io0 = b->io;
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        const cr_insn *in = &p->main[pc];
        if (in->op != CR_OP_COPY) continue;
        const cr_prog_input *v = &p->inputs[in->a];
        unsigned osz = cr_dtype_size((cr_dtype)p->outputs[in->dst].dtype);
        if (v->dtype == p->outputs[in->dst].dtype) continue;   /* written straight from the map */
        uint64_t len = CR_MIN((uint64_t)CR_RUN_COPY_BLOCK, v->cols);
        b->regs0 = CR_MAX(b->regs0, len * sizeof(float));
        b->io0 = CR_MAX(b->io0, len * osz);
    }
}

uint64_t cr_run_thread_bytes(const cr_run_thread_bufs *b, unsigned threads)
{
    if (!threads) return 0;
    uint64_t rest = b->regs + b->io + b->keys + b->lanes + b->carry;
    return b->regs0 + b->io0 + b->keys + b->lanes + b->carry + rest * (threads - 1);
}
