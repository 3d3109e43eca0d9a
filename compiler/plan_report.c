/* plan_report.c — the numbers `crucible plan` prints: exact byte counts from
 * the program's tables, op counts, and the peak-memory and time estimates.
 *
 * Peak memory is the VM's own model (vm/memplan.c): the same walk decides
 * the run's thread count and which steps stream their inputs under
 * --max-memory, so the plan reports what the run will do. Bytes read count
 * every input tensor view once, files only: scratch tensors (stage outputs
 * of a multi-stage recipe) stay in memory, and a pass-through recipe reads
 * only the tensors it selects.
 */
#include "plan_report.h"
#include "memplan.h"
#include "part.h"
#include "termtext.h"

static uint64_t view_bytes(const cr_prog_input *in)
{
    return in->rows * in->cols * cr_dtype_size((cr_dtype)in->dtype);
}

cr_status cr_plan_measure(const cr_program *p, unsigned threads, uint64_t max_memory, cr_plan_numbers *n,
                          cr_error *err)
{
    *n = (cr_plan_numbers){0};
    n->n_outputs = p->n_outputs;
    n->n_shards = p->n_shards;
    n->n_kernels = p->n_kernels;
    n->n_micro_ops = p->n_code;
    n->n_top_ops = p->n_main;
    for (uint32_t i = 0; i < p->n_shards; i++) n->bytes_written += p->shards[i].file_size;
    for (uint32_t i = 0; i < p->n_aux; i++)
        n->aux_bytes += p->aux[i].kind == CR_AUX_WRITE ? p->aux[i].content.len :
                        p->files[p->aux[i].src_file].size;
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        const cr_insn *in = &p->main[pc];
        if (in->op == CR_OP_COPY) {
            n->n_copies++;
            n->bytes_read_passes += view_bytes(&p->inputs[in->a]);
        } else if (in->op == CR_OP_KERNEL) {
            const cr_prog_kernel *k = &p->kernels[in->a];
            for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++) {
                const cr_insn *u = &p->code[c];
                if (u->op == CR_OP_LOAD) n->bytes_read_passes += view_bytes(&p->inputs[u->a]);
                if (u->op == CR_OP_LOWRANK || u->op == CR_OP_LOWRANK_T) {
                    /* the adapter's A and B, mapped whole for the kernel (memplan.c) */
                    uint64_t ab = view_bytes(&p->inputs[u->a]) + view_bytes(&p->inputs[u->b]);
                    n->n_lowrank++;
                    n->lowrank_bytes += ab;
                    n->bytes_read_passes += ab;
                    n->lowrank_madds += k->rows * k->cols * p->inputs[u->a].rows;
                }
            }
        }
    }
    for (uint32_t i = 0; i < p->n_inputs; i++) {
        const cr_prog_input *v = &p->inputs[i];
        if (!v->rowmap.len) continue;
        n->gather_table_bytes += v->rowmap.len;
        if (v->kind == CR_INPUT_BLOB) { n->gather_table_bytes += v->nbytes; continue; }
        /* inputs are in stage order: a new size is a later stage's */
        if (n->vocab_rows && v->rows != n->vocab_rows && n->n_vocab_earlier < CR_ARRAY_LEN(n->vocab_earlier))
            n->vocab_earlier[n->n_vocab_earlier++] = n->vocab_rows;
        n->vocab_rows = v->rows;
        n->n_gathers++;
        bool seen = false;
        for (uint32_t j = 0; j < i && !seen; j++)
            seen = p->inputs[j].rowmap.len && p->inputs[j].kind == v->kind && p->inputs[j].file == v->file &&
                   p->inputs[j].offset == v->offset;
        if (!seen && v->kind == CR_INPUT_FILE) n->gather_mapped += v->nbytes;   /* a stage output is in memory anyway */
    }
    n->bytes_read = cr_memplan_file_bytes(p);
    cr_memplan mp;
    cr_status s = cr_memplan_init(&mp, p, threads, max_memory, NULL, err);
    if (s) return s;
    n->peak_memory = mp.peak;
    n->mem_fixed = mp.fixed;
    n->mem_heap = mp.peak_heap;
    n->mem_mapped = mp.peak_mapped;
    n->threads = mp.threads;
    n->n_streamed = mp.n_streamed;
    n->n_spill = mp.n_spill;
    n->spill_bytes = mp.spill_bytes;
    n->gather_kept = mp.gather_pool_bytes;
    n->read_window = n->bytes_read ? mp.read_window : 0;
    n->out_shards = mp.out.n_on;
    n->out_block = mp.out.block;
    n->out_slots = mp.out.slots;
    n->out_rings = mp.out.rings;
    n->out_bytes = mp.out.bytes;
    n->budget = max_memory != 0;
    n->peak_at = "-";
    if (p->n_main) {
        const cr_insn *in = &p->main[mp.peak_pc];
        if (in->op == CR_OP_COPY) n->peak_at = cr_prog_str(p, p->outputs[in->dst].name);
        else if (in->op == CR_OP_KERNEL) {
            const cr_prog_kernel *k = &p->kernels[in->a];
            for (uint32_t c = k->code_begin; c < k->code_begin + k->code_len; c++)
                if (p->code[c].op == CR_OP_LOAD) { n->peak_at = cr_prog_str(p, p->inputs[p->code[c].a].name); break; }
        }
    }
    cr_memplan_free(&mp);
    /* a spilled gather is written once and read back by its sort, in the
     * worst case from disk (the page cache usually keeps it) */
    n->est_seconds = (double)(n->bytes_read_passes + n->spill_bytes) / 2e9 +
                     (double)(n->bytes_written + n->spill_bytes) / 1e9;
    return CR_OK;
}

static void human(char *buf, size_t cap, uint64_t b)
{
    const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4) { v /= 1024; i++; }
    snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

void cr_plan_name_stages(const cr_plan *plan, cr_plan_numbers *n)
{
    if (!n->vocab_rows || plan->n_stages < 2) return;
    uint32_t m = 0;
    for (uint32_t k = 0; k + 1 < plan->n_stages && m < CR_ARRAY_LEN(n->vocab_earlier); k++) {
        if (!plan->stages[k].vocab_rows) continue;
        n->vocab_earlier[m] = plan->stages[k].vocab_rows;
        n->vocab_earlier_name[m++] = plan->stages[k].name;
    }
    /* without a merge of its own the last stage shows the last earlier
     * one's vocabulary as the line's */
    if (m && !plan->stages[plan->n_stages - 1].tokenizer_source && n->vocab_earlier[m - 1] == n->vocab_rows) m--;
    n->n_vocab_earlier = m;
}

void cr_plan_print(const cr_program *p, const cr_plan_numbers *n, FILE *out)
{
    char a[32], b[32], c[32], d[32], f[32], h[32], m[32];
    human(a, sizeof a, n->bytes_read);
    human(b, sizeof b, n->bytes_read_passes);
    human(c, sizeof c, n->bytes_written);
    human(d, sizeof d, n->peak_memory);
    human(f, sizeof f, n->mem_fixed);
    human(h, sizeof h, n->mem_heap);
    human(m, sizeof m, n->mem_mapped);
    fputs("recipe          ", out);
    cr_text_fput(out, p->recipe_name.len ? cr_prog_str(p, p->recipe_name) : "-", 0);   /* a file name */
    fputc('\n', out);
    fprintf(out, "inputs          %u files, %u tensor views\n", p->n_files, p->n_inputs);
    fprintf(out, "read            %s (%llu bytes) from input files; %s loaded counting every pass\n", a,
            (unsigned long long)n->bytes_read, b);
    fprintf(out, "write           %s (%llu bytes) in %u shard%s, %u tensors, %u aux files\n", c,
            (unsigned long long)n->bytes_written, n->n_shards, n->n_shards == 1 ? "" : "s",
            n->n_outputs, p->n_aux);
    fprintf(out, "program         %u kernels (%u micro-ops), %u top-level ops, %u copies\n",
            n->n_kernels, n->n_micro_ops, n->n_top_ops, n->n_copies);
    fprintf(out, "state           %u scalars, %u row vectors, %u selections, %u random streams, %u scratch\n",
            p->n_scalars, p->n_rowvecs, p->n_selects, p->n_streams, p->n_scratch);
    char ow[40] = "";
    if (n->out_bytes) {
        char w[32];
        human(w, sizeof w, n->out_bytes);
        snprintf(ow, sizeof ow, " + %s output window", w);
    }
    fprintf(out, "peak memory     ~%s RSS (%llu bytes) with %u thread%s, at %s: %s fixed + %s heap + %s mapped inputs%s\n",
            d, (unsigned long long)n->peak_memory, n->threads, n->threads == 1 ? "" : "s", n->peak_at, f, h, m, ow);
    if (n->n_lowrank) {
        char lb[32];
        human(lb, sizeof lb, n->lowrank_bytes);
        fprintf(out, "lora            %u low-rank products W + s*(B A) (lowrank ops), %s of A and B, %.3g G multiply-adds; "
                "no merged copy is written\n", n->n_lowrank, lb, (double)n->lowrank_madds / 1e9);
    }
    if (n->n_streamed)
        fprintf(out, "streamed        %u steps read their inputs in a window to fit --max-memory\n", n->n_streamed);
    if (n->n_spill) {
        char sp[32];
        human(sp, sizeof sp, n->spill_bytes);
        fprintf(out, "spill           %s (%llu bytes) to a file in the output's temporary directory: the tie-order "
                "gather%s of %u top-k selection%s, which do%s not fit --max-memory (same bytes, more I/O)\n", sp,
                (unsigned long long)n->spill_bytes, n->n_spill == 1 ? "" : "s", n->n_spill, n->n_spill == 1 ? "" : "s",
                n->n_spill == 1 ? "es" : "");
    }
    if (n->vocab_rows) {
        char t[32], g[32];
        human(t, sizeof t, n->gather_table_bytes);
        human(g, sizeof g, n->gather_mapped);
        fprintf(out, "vocabulary      %llu tokens after the tokenizer merge", (unsigned long long)n->vocab_rows);
        for (uint32_t i = 0; i < n->n_vocab_earlier; i++)
            fprintf(out, "%s%s%s%llu", i ? ", " : " (earlier stages: ", n->vocab_earlier_name[i] ? n->vocab_earlier_name[i] : "",
                    n->vocab_earlier_name[i] ? " " : "", (unsigned long long)n->vocab_earlier[i]);
        fprintf(out, "%s; embedding permutation: %u row gathers, %s of tables in the program, %s of input tensors "
                "mapped whole (in peak memory)\n", n->n_vocab_earlier ? ")" : "", n->n_gathers, t, g);
    }
    if (n->gather_kept) {
        char g[32];
        human(g, sizeof g, n->gather_kept);
        fprintf(out, "gathers kept    %s (%llu bytes) of tie-order gathers reused from tensor to tensor %s\n", g,
                (unsigned long long)n->gather_kept,
                n->budget ? "at most, each step keeping only what fits under its predicted peak"
                          : "(counted in the peak)");
    }
    if (n->read_window) {
        char w[32];
        human(w, sizeof w, n->read_window);
        fprintf(out, "read-ahead      %s (%llu bytes): a reader thread reads the inputs in schedule order, in %llu MiB "
                "blocks, up to this far ahead of the compute (page cache, not RSS%s)\n", w, (unsigned long long)n->read_window,
                (unsigned long long)(CR_READ_BLOCK >> 20), n->budget ? "; within --max-memory's headroom" : "");
    }
    if (n->out_shards) {
        char w[32];
        human(w, sizeof w, n->out_bytes);
        fprintf(out, "output stream   %u of %u shard%s written by one thread in %llu KiB blocks with O_DIRECT, hashed from "
                "the blocks; window %u blocks, %u at once: %s (%llu bytes, in the peak)\n", n->out_shards, n->n_shards,
                n->n_shards == 1 ? "" : "s", (unsigned long long)(n->out_block >> 10), n->out_slots, n->out_rings, w,
                (unsigned long long)n->out_bytes);
    }
    fprintf(out, "time            ~%.1f s (estimate at 2 GB/s read, 1 GB/s write)\n", n->est_seconds);
}

cr_status cr_plan_measure_part(const cr_program *p, uint32_t part, uint32_t n_parts, unsigned threads,
                               uint64_t max_memory, cr_plan_numbers *n, cr_error *err)
{
    uint32_t *where = cr_calloc(p->alloc, p->n_shards + 1, sizeof *where);
    uint8_t *in = cr_calloc(p->alloc, p->n_shards + 1, 1);
    cr_insn *main = NULL;
    uint32_t n_main = 0;
    cr_status s = !where || !in ? cr_fail(err, CR_ERR_NOMEM, "out of memory") : CR_OK;
    if (!s) {
        cr_part_assign(p, n_parts, where);
        for (uint32_t i = 0; i < p->n_shards; i++) in[i] = where[i] == part - 1;
        s = cr_part_slice(p, in, &main, &n_main, err);
    }
    if (!s) {
        cr_program view = *p;
        view.main = main;
        view.n_main = n_main;
        s = cr_plan_measure(&view, threads, max_memory, n, err);
    }
    if (!s) {
        /* what this part writes: its shards, their tensors; part 1 the aux files */
        n->bytes_written = 0;
        n->n_shards = n->n_outputs = 0;
        for (uint32_t i = 0; i < p->n_shards; i++)
            if (in[i]) { n->bytes_written += p->shards[i].file_size; n->n_shards++; }
        for (uint32_t i = 0; i < p->n_outputs; i++) n->n_outputs += in[p->outputs[i].shard];
        if (part != 1) n->aux_bytes = 0;
        n->n_kernels = n->n_micro_ops = 0;
        for (uint32_t pc = 0; pc < n_main; pc++)
            if (main[pc].op == CR_OP_KERNEL) { n->n_kernels++; n->n_micro_ops += p->kernels[main[pc].a].code_len; }
        n->est_seconds = (double)(n->bytes_read_passes + n->spill_bytes) / 2e9 +
                         (double)(n->bytes_written + n->spill_bytes) / 1e9;
    }
    cr_free(p->alloc, where);
    cr_free(p->alloc, in);
    cr_free(p->alloc, main);
    return s;
}

cr_status cr_plan_print_parts(const cr_program *p, uint32_t part, uint32_t n_parts, unsigned threads,
                              uint64_t max_memory, FILE *out, cr_error *err)
{
    cr_plan_numbers n;
    cr_status s = cr_plan_measure_part(p, part, n_parts, threads, max_memory, &n, err);
    if (s) return s;
    fprintf(out, "part            %u of %u (shards balanced by bytes, spec/parts.md)\n", part, n_parts);
    cr_program shown = *p;   /* part 1 stages the aux files */
    if (part != 1) shown.n_aux = 0;
    cr_plan_print(&shown, &n, out);
    fprintf(out, "\nparts           shards  write        read         peak memory  time\n");
    double slowest = 0, total = 0;
    for (uint32_t i = 1; i <= n_parts && !s; i++) {
        if ((s = cr_plan_measure_part(p, i, n_parts, threads, max_memory, &n, err))) break;
        char w[32], r[32], pk[32];
        human(w, sizeof w, n.bytes_written);
        human(r, sizeof r, n.bytes_read);
        human(pk, sizeof pk, n.peak_memory);
        fprintf(out, "%s %6u/%-6u %6u  %-12s %-12s %-12s ~%.2f s\n", i == part ? "=>" : "  ", i, n_parts,
                n.n_shards, w, r, pk, n.est_seconds);
        if (n.est_seconds > slowest) slowest = n.est_seconds;
        total += n.est_seconds;
    }
    if (!s) {
        cr_plan_numbers whole;
        if (!(s = cr_plan_measure(p, threads, max_memory, &whole, err)))
            fprintf(out, "whole run       ~%.2f s; %u parts side by side ~%.2f s (the slowest part), %.2f s of work "
                    "in all\n", whole.est_seconds, n_parts, slowest, total);
    }
    return s;
}
