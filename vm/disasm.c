/* disasm.c — programs and the op table as text: `crucible explain` prints a
 * program like SQL's EXPLAIN (one row per instruction, kernels with their
 * micro-ops indented beneath), and spec/opcodes.md is generated from
 * ops.def by cr_ops_markdown, so the reference can never drift from the
 * table (tests/unit/test_program.c fails when the file is stale).
 */
#include "vm.h"

#include <inttypes.h>
#include <string.h>

static const char *dtype_name(unsigned t)
{
    switch (t) {
#define X(name, str, size) case CR_DTYPE_##name: return str;
    CR_DTYPE_LIST(X)
#undef X
    }
    return "";
}

static const char *kind_word(char k)
{
    switch (k) {
    case 'v': return "value";
    case 'r': return "register";
    case 's': return "scalar slot";
    case 'w': return "vector slot";
    case 'i': return "input view";
    case 'o': return "output tensor";
    case 'k': return "kernel";
    case 't': return "scratch tensor";
    case 'x': return "selection state";
    case 'n': return "random stream";
    case 'b': return "message";
    default: return "-";
    }
}

static char operand_prefix(char kind, bool in_kernel)
{
    if (kind == 'v') return in_kernel ? 'r' : 's';
    switch (kind) {
    case 'r': return 'r';
    case 's': return 's';
    case 'w': return 'w';
    case 'i': return 'i';
    case 'o': return 'o';
    case 'k': return 'k';
    case 't': return 't';
    case 'x': return 'x';
    case 'n': return 'n';
    case 'b': return 'm';
    default: return 0;
    }
}

/* a short comment naming what the operands refer to */
static void comment(const cr_program *p, const cr_insn *in, char *buf, size_t n)
{
    const cr_op_info *info = &cr_op_table[in->op];
    buf[0] = 0;
    switch (in->op) {
    case CR_OP_LOAD: case CR_OP_PREFETCH: case CR_OP_RELEASE: {
        const cr_prog_input *v = &p->inputs[in->a];
        snprintf(buf, n, "%s %s [%" PRIu64 "x%" PRIu64 "]%s", cr_prog_str(p, v->name), dtype_name(v->dtype),
                 v->rows, v->cols, v->kind == CR_INPUT_SCRATCH ? " (scratch)" : v->kind == CR_INPUT_BLOB ? " (blob)" : "");
        if (v->rowmap.len) { size_t l = strlen(buf); snprintf(buf + l, n - l, " (rows gathered)"); }
        if (v->kind == CR_INPUT_FILE) {
            size_t l = strlen(buf);
            const cr_prog_file *vf = &p->files[v->file];
            if (vf->model != CR_PROG_NO_MODEL) {
                /* by model, as the .crb names it: "in base: model.safetensors", "of base" */
                char label[CR_LIMIT_NAME];
                if (in->op != CR_OP_LOAD) snprintf(buf + l, n - l, " in %s", cr_program_file_label(p, v->file, label, sizeof label));
                else snprintf(buf + l, n - l, " of %s", cr_prog_str(p, p->models[vf->model].ref));
                return;
            }
            const char *path = cr_prog_str(p, vf->path);
            if (in->op != CR_OP_LOAD) {
                snprintf(buf + l, n - l, " in %s", path);
            } else {
                /* a kernel row names the model (its directory) only */
                const char *end = strrchr(path, '/'), *start = end;
                while (start && start > path && start[-1] != '/') start--;
                if (end && start) snprintf(buf + l, n - l, " of %.*s", (int)(end - start), start);
            }
        }
        return;
    }
    case CR_OP_LOWRANK: case CR_OP_LOWRANK_T: {
        /* the adapter's two matrices: "B [m x r] @ A [r x n]" */
        const cr_prog_input *a = &p->inputs[in->a], *b = &p->inputs[in->b];
        snprintf(buf, n, "%s [%" PRIu64 "x%" PRIu64 "] @ %s [%" PRIu64 "x%" PRIu64 "]%s", cr_prog_str(p, b->name),
                 b->rows, b->cols, cr_prog_str(p, a->name), a->rows, a->cols,
                 in->op == CR_OP_LOWRANK_T ? ", transposed" : "");
        return;
    }
    case CR_OP_STORE: case CR_OP_DONE: {
        const cr_prog_output *o = &p->outputs[in->dst];
        snprintf(buf, n, "%s %s -> %s", cr_prog_str(p, o->name), dtype_name(o->dtype),
                 cr_prog_str(p, p->shards[o->shard].file_name));
        return;
    }
    case CR_OP_COPY: {
        const cr_prog_output *o = &p->outputs[in->dst];
        const cr_prog_input *v = &p->inputs[in->a];
        snprintf(buf, n, "%s %s -> %s %s", cr_prog_str(p, v->name), dtype_name(v->dtype),
                 cr_prog_str(p, o->name), dtype_name(o->dtype));
        return;
    }
    case CR_OP_SPLAT:
        snprintf(buf, n, "s%u (init %g)", in->a, p->scalar_init[in->a]);
        return;
    case CR_OP_KERNEL: {
        const cr_prog_kernel *k = &p->kernels[in->a];
        snprintf(buf, n, "%" PRIu64 "x%" PRIu64 " in chunks of %" PRIu64 ", %u regs%s", k->rows, k->cols,
                 k->chunk, k->n_regs, k->flags & CR_KERNEL_ROWS ? ", whole rows" : "");
        return;
    }
    case CR_OP_CHECK:
        snprintf(buf, n, "\"%s\"", cr_prog_str(p, p->messages[in->c]));
        return;
    case CR_OP_RAND:
        snprintf(buf, n, "stream key %" PRIu64, p->streams[in->a].key);
        return;
    case CR_OP_TAIL:
        snprintf(buf, n, "1 on the last s%u (init %g) elements", in->a, p->scalar_init[in->a]);
        return;
    default:
        snprintf(buf, n, "%s", info->synopsis);
        if ((info->flags & CR_OPF_ELEM) && in->dtype != CR_DTYPE_F32 && in->dtype != CR_DTYPE_F64) {
            size_t l = strlen(buf);
            snprintf(buf + l, n - l, "; rounded to %s", dtype_name(in->dtype));
        }
        return;
    }
}

static void row(const cr_program *p, FILE *out, const char *addr, const cr_insn *in, bool in_kernel, int indent)
{
    const cr_op_info *info = &cr_op_table[in->op];
    char ops[64] = "", c[512];
    size_t l = 0;
    uint32_t v[4] = { in->dst, in->a, in->b, in->c };
    for (int i = 0; i < 4; i++) {
        char pre = operand_prefix(info->kinds[i], in_kernel);
        if (!pre) continue;
        l += (size_t)snprintf(ops + l, sizeof ops - l, "%s%c%u", l ? " " : "", pre, v[i]);
        if (l >= sizeof ops) break;
    }
    comment(p, in, c, sizeof c);
    bool rounds = info->flags & CR_OPF_ROUNDS;
    fprintf(out, "%-8s %*s%-*s %-5s %-22s %s\n", addr, indent, "", 12 - indent, info->name,
            rounds ? dtype_name(in->dtype) : "", ops, c);
}

/* the manifest by model, and the provenance a .crb carries */
void cr_program_explain_inputs(const cr_program *p, FILE *out)
{
    fprintf(out, "provenance: crucible %s, op table %016" PRIx64 ", mergekit %s, seed %" PRIu64 ", %s\n",
            p->tool_version.len ? cr_prog_str(p, p->tool_version) : "?", cr_op_table_fingerprint(),
            p->mergekit_version.len ? cr_prog_str(p, p->mergekit_version) : "?", p->seed,
            p->flags & CR_PROG_PRECISE ? "--precise" : "torch rounding (no --precise)");
    bool hashes = !(p->flags & CR_PROG_SKIP_HASH);
    fprintf(out, "inputs: %u model%s, %u file%s; %s\n", p->n_models, p->n_models == 1 ? "" : "s",
            p->n_files, p->n_files == 1 ? "" : "s",
            hashes ? "content hash = XXH64 of the whole file, checked by run (--skip-hash: sizes only)"
                   : "content hashes not recorded: run checks sizes only");
    for (uint32_t m = 0; m <= p->n_models; m++) {
        bool any = false;
        for (uint32_t i = 0; i < p->n_files; i++) {
            const cr_prog_file *f = &p->files[i];
            if (m < p->n_models ? f->model != m : f->model != CR_PROG_NO_MODEL) continue;
            if (!any) {
                if (m < p->n_models) {
                    const cr_prog_model *pm = &p->models[m];
                    fprintf(out, "  model %s", cr_prog_str(p, pm->ref));
                    if (pm->revision.len) fprintf(out, " (Hugging Face snapshot %s)", cr_prog_str(p, pm->revision));
                    fputc('\n', out);
                } else {
                    fprintf(out, "  files of no model (paths as given)\n");
                }
                any = true;
            }
            const char *name = cr_prog_str(p, f->rel);
            fprintf(out, "    %-40s %12" PRIu64 " bytes  ", name, f->size);
            if (f->hash) fprintf(out, "xxh64 %016" PRIx64, f->hash);
            else fputs("hash not recorded", out);
            if (f->path.len && strcmp(cr_prog_str(p, f->path), name)) fprintf(out, "  at %s", cr_prog_str(p, f->path));
            fputc('\n', out);
        }
    }
    if (p->recipe_text.len) {
        fprintf(out, "recipe (%" PRIu64 " bytes):\n", p->recipe_text.len);
        const char *t = cr_prog_str(p, p->recipe_text);
        while (*t) {
            size_t n = strcspn(t, "\n");
            fprintf(out, "  | %.*s\n", (int)n, t);
            t += n + (t[n] == '\n');
        }
    }
}

void cr_program_explain(const cr_program *p, FILE *out)
{
    fprintf(out, "program %s: seed %" PRIu64 ", %u inputs from %u files, %u outputs in %u shards, %u aux files\n",
            p->recipe_name.len ? cr_prog_str(p, p->recipe_name) : "(unnamed)", p->seed,
            p->n_inputs, p->n_files, p->n_outputs, p->n_shards, p->n_aux);
    if (p->mergekit_version.len)
        fprintf(out, "computes as mergekit %s (crucible %s)\n", cr_prog_str(p, p->mergekit_version),
                p->tool_version.len ? cr_prog_str(p, p->tool_version) : "?");
    cr_program_explain_inputs(p, out);
    fprintf(out, "%-8s %-12s %-5s %-22s %s\n", "addr", "op", "dtype", "operands", "comment");
    fprintf(out, "%-8s %-12s %-5s %-22s %s\n", "----", "--", "-----", "--------", "-------");
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        const cr_insn *in = &p->main[pc];
        char addr[16];
        snprintf(addr, sizeof addr, "%u", pc);
        row(p, out, addr, in, false, 0);
        if (in->op == CR_OP_KERNEL) {
            const cr_prog_kernel *k = &p->kernels[in->a];
            for (uint32_t j = 0; j < k->code_len; j++) {
                snprintf(addr, sizeof addr, "  %u.%u", pc, j);
                row(p, out, addr, &p->code[k->code_begin + j], true, 2);
            }
        }
    }
    for (uint32_t i = 0; i < p->n_aux; i++) {
        const cr_prog_aux *x = &p->aux[i];
        if (x->kind == CR_AUX_WRITE)
            fprintf(out, "aux      write %s (%" PRIu64 " bytes)\n", cr_prog_str(p, x->dest), x->content.len);
        else
        {
            char l[CR_LIMIT_NAME];
            fprintf(out, "aux      copy  %s <- %s\n", cr_prog_str(p, x->dest), cr_program_file_label(p, x->src_file, l, sizeof l));
        }
    }
}

void cr_ops_markdown(FILE *out)
{
    fprintf(out, "# VM opcodes\n\n"
                 "Generated from `vm/ops.def` by `crucible ops --markdown`; do not edit by hand\n"
                 "(`tests/unit/test_program.c` fails when this file is stale).\n\n"
                 "Operand kinds: `v` value (register in a kernel, scalar slot at top level),\n"
                 "`r` register, `s` scalar slot, `w` vector slot (row or column), `i` input view, `o` output\n"
                 "tensor, `k` kernel, `t` scratch tensor, `x` selection state, `n` random\n"
                 "stream, `b` message, `-` unused (must be 0). Context: where the op may\n"
                 "appear (kernel micro-op, top-level instruction, or both). Flags: `elem`\n"
                 "elementwise (fusable, SIMD tables), `reduce` (with how the VM combines it),\n"
                 "`rows` whole rows in a chunk, `reads`/`writes` tensor data, `rounds` the\n"
                 "dtype field rounds the result, `regs` writes only a register, `unblocked`\n"
                 "its kernel runs blocks of whole rows. The semantics of rounding, reductions and\n"
                 "selection are in spec/vm.md.\n\n");
    fprintf(out, "| op | context | dst | a | b | c | flags | synopsis |\n");
    fprintf(out, "|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < CR_OP_COUNT; i++) {
        const cr_op_info *o = &cr_op_table[i];
        const char *ctx = o->ctx == CR_CTX_KERNEL ? "kernel" : o->ctx == CR_CTX_TOP ? "top" : "both";
        char flags[128] = "";
        size_t l = 0;
        static const char *const fn[] = { "elem", "reduce", "rows", "reads", "writes", "rounds", "regs", "unblocked", "torch order" };
        _Static_assert(sizeof fn / sizeof fn[0] == CR_OPF_BITS, "a name for every CR_OPF_ bit");
        static const char *const red[] = { "", "wide", "numpy", "blas", "torch norm", "torch", "per row",
                                           "per column", "per column torch", "per column torch norm",
                                           "torch, chunks of 2^20", "torch norm, chunks of 2^20", "selection" };
        _Static_assert(sizeof red / sizeof red[0] == CR_RED_SELECT + 1, "a name for every cr_op_red");
        for (int b = 0; b < CR_OPF_BITS; b++) {
            if (!(o->flags & (1u << b))) continue;
            l += (size_t)snprintf(flags + l, sizeof flags - l, "%s%s", l ? ", " : "", fn[b]);
            /* how the VM combines the reduction (ops.def RED) */
            if ((1u << b) == CR_OPF_REDUCE) l += (size_t)snprintf(flags + l, sizeof flags - l, " (%s)", red[o->red]);
        }
        fprintf(out, "| `%s` | %s |", o->name, ctx);
        for (int k = 0; k < 4; k++) fprintf(out, " %s |", o->kinds[k] == '-' ? "" : kind_word(o->kinds[k]));
        fprintf(out, " %s | ", flags);
        for (const char *s = o->synopsis; *s; s++) {
            if (*s == '|') fputs("\\|", out);
            else fputc(*s, out);
        }
        fprintf(out, " |\n");
    }
}
