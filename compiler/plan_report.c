/* plan_report.c — the numbers `crucible plan` prints: exact byte counts from
 * the program's tables, op counts, and the peak-memory and time estimates.
 *
 * Peak memory model: every thread holds one chunk per register of the
 * largest kernel (n_regs x chunk x 4 bytes), plus partial results (one
 * double per chunk per reduction, 2 x 64 Ki counters per selection), plus
 * every scratch tensor alive at once (bounded by the sum of scratch sizes),
 * plus the mapped-page window (the inputs of the current and the prefetched
 * tensor, which the kernel dropped after RELEASE), plus 32 MiB of fixed
 * overhead (program, thread stacks, Lua is gone by then).
 */
#include <unistd.h>
#include "plan_report.h"

static uint64_t view_bytes(const cr_prog_input *in)
{
    return in->rows * in->cols * cr_dtype_size((cr_dtype)in->dtype);
}

void cr_plan_measure(const cr_program *p, unsigned threads, cr_plan_numbers *n)
{
    *n = (cr_plan_numbers){0};
    if (!threads) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        threads = c > 0 ? (unsigned)c : 1;
    }
    n->n_outputs = p->n_outputs;
    n->n_shards = p->n_shards;
    n->n_kernels = p->n_kernels;
    n->n_micro_ops = p->n_code;
    n->n_top_ops = p->n_main;
    for (uint32_t i = 0; i < p->n_shards; i++) n->bytes_written += p->shards[i].file_size;
    for (uint32_t i = 0; i < p->n_aux; i++)
        n->aux_bytes += p->aux[i].kind == CR_AUX_WRITE ? p->aux[i].content.len :
                        p->files[p->aux[i].src_file].size;
    uint8_t *seen = cr_calloc(p->alloc, p->n_inputs + 1, 1);
    uint64_t kernel_ws = 0, window = 0, cur_window = 0, prev_window = 0;
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        const cr_insn *in = &p->main[pc];
        if (in->op == CR_OP_COPY) {
            n->n_copies++;
            n->bytes_read += view_bytes(&p->inputs[in->a]);
            n->bytes_read_passes += view_bytes(&p->inputs[in->a]);
        } else if (in->op == CR_OP_KERNEL) {
            const cr_prog_kernel *k = &p->kernels[in->a];
            uint64_t ws = (uint64_t)k->n_regs * k->chunk * 4;
            kernel_ws = CR_MAX(kernel_ws, ws);
            for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++) {
                if (p->code[c].op != CR_OP_LOAD) continue;
                const cr_prog_input *v = &p->inputs[p->code[c].a];
                n->bytes_read_passes += view_bytes(v);
                if (seen && !seen[p->code[c].a] && v->kind == CR_INPUT_FILE) {
                    seen[p->code[c].a] = 1;
                    n->bytes_read += view_bytes(v);
                    cur_window += v->nbytes;
                }
            }
        } else if (in->op == CR_OP_DONE) {
            window = CR_MAX(window, cur_window + prev_window);
            prev_window = cur_window;
            cur_window = 0;
        }
    }
    window = CR_MAX(window, cur_window + prev_window);
    cr_free(p->alloc, seen);
    uint64_t scratch = 0, partials = 0;
    for (uint32_t i = 0; i < p->n_scratch; i++)
        scratch += p->scratch[i].numel * cr_dtype_size((cr_dtype)p->scratch[i].dtype);
    for (uint32_t i = 0; i < p->n_selects; i++)
        partials = CR_MAX(partials, 2 * 65536 * 8 + (p->selects[i].n / p->selects[i].chunk + 1) * 8);
    for (uint32_t i = 0; i < p->n_rowvecs; i++) partials = CR_MAX(partials, p->rowvecs[i].len * 16);
    n->peak_memory = threads * kernel_ws + partials + scratch + window + (32ull << 20);
    n->est_seconds = (double)n->bytes_read_passes / 2e9 + (double)n->bytes_written / 1e9;
}

static void human(char *buf, size_t cap, uint64_t b)
{
    const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4) { v /= 1024; i++; }
    snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

void cr_plan_print(const cr_program *p, const cr_plan_numbers *n, FILE *out)
{
    char a[32], b[32], c[32], d[32];
    human(a, sizeof a, n->bytes_read);
    human(b, sizeof b, n->bytes_read_passes);
    human(c, sizeof c, n->bytes_written);
    human(d, sizeof d, n->peak_memory);
    fprintf(out, "recipe          %s\n", p->recipe_name.len ? cr_prog_str(p, p->recipe_name) : "-");
    fprintf(out, "inputs          %u files, %u tensor views\n", p->n_files, p->n_inputs);
    fprintf(out, "read            %s (%llu bytes); %s counting every pass\n", a,
            (unsigned long long)n->bytes_read, b);
    fprintf(out, "write           %s (%llu bytes) in %u shard%s, %u tensors, %u aux files\n", c,
            (unsigned long long)n->bytes_written, n->n_shards, n->n_shards == 1 ? "" : "s",
            n->n_outputs, p->n_aux);
    fprintf(out, "program         %u kernels (%u micro-ops), %u top-level ops, %u copies\n",
            n->n_kernels, n->n_micro_ops, n->n_top_ops, n->n_copies);
    fprintf(out, "state           %u scalars, %u row vectors, %u selections, %u random streams, %u scratch\n",
            p->n_scalars, p->n_rowvecs, p->n_selects, p->n_streams, p->n_scratch);
    fprintf(out, "peak memory     ~%s (estimate: threads x registers x chunk x 4 + scratch + mapped window + 32 MiB)\n", d);
    fprintf(out, "time            ~%.1f s (estimate at 2 GB/s read, 1 GB/s write)\n", n->est_seconds);
}
