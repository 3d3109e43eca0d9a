/* cmd_explain.c — `crucible explain CONFIG|RECIPE.crb`: the bytecode as a
 * table, like SQL's EXPLAIN; --dump=PASS prints the graph IR after a pass. */
#include <string.h>
#include "commands.h"
#include "options.h"

static const char usage[] =
    "usage: crucible explain CONFIG|RECIPE.crb [--dump=PASS] [--no-pass=PASS] [--models-dir DIR]\n";

/* A plain listing until the VM's disassembler (cr_program_explain, vm/disasm.c
 * on branch `vm`) is merged; then this goes. */
static void listing(const cr_program *p, FILE *out)
{
    fprintf(out, "%-5s %-12s %-5s %6s %6s %6s %6s  %s\n", "addr", "op", "dtype", "dst", "a", "b", "c", "synopsis");
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        const cr_insn *in = &p->main[pc];
        const cr_op_info *op = &cr_op_table[in->op];
        fprintf(out, "%-5u %-12s %-5s %6u %6u %6u %6u  %s\n", pc, op->name,
                in->dtype < CR_DTYPE_COUNT ? cr_dtype_name((cr_dtype)in->dtype) : "", in->dst, in->a,
                in->b, in->c, op->synopsis);
        if (in->op != CR_OP_KERNEL) continue;
        const cr_prog_kernel *k = &p->kernels[in->a];
        fprintf(out, "      kernel %u: %llux%llu, chunk %llu, %u registers%s\n", in->a,
                (unsigned long long)k->rows, (unsigned long long)k->cols, (unsigned long long)k->chunk,
                k->n_regs, k->flags & CR_KERNEL_ROWS ? ", whole rows" : "");
        for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++) {
            const cr_insn *m = &p->code[c];
            fprintf(out, "        %-10s %-5s %6u %6u %6u %6u\n", cr_op_table[m->op].name,
                    m->dtype < CR_DTYPE_COUNT ? cr_dtype_name((cr_dtype)m->dtype) : "", m->dst, m->a, m->b, m->c);
        }
    }
}

int cr_cmd_explain(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(argc, argv, 1, usage, &o)) return 2;
    size_t len = strlen(o.pos[0]);
    cr_program prog;
    if (len > 4 && !strcmp(o.pos[0] + len - 4, ".crb")) {
        cr_error err = {0};
        if (cr_program_load(cr_default_allocator(), o.pos[0], &prog, &err)) {
            fprintf(stderr, "crucible explain: %s\n", err.msg);
            return 1;
        }
        listing(&prog, stdout);
        cr_program_free(&prog);
        return 0;
    }
    cr_plan plan;
    cr_graph g;
    int rc = cr_cli_compile(&o, true, NULL, &plan, &g, &prog);
    if (rc) return rc;
    if (!o.dump) listing(&prog, stdout);
    cr_program_free(&prog);
    cr_graph_free(&g);
    cr_plan_free(&plan);
    return 0;
}
