/* cmd_plan.c — `crucible plan CONFIG|RECIPE.crb`: everything a merge will
 * read, write and need, from headers only; with --part I/N, part I's and
 * every part's figures (compiler/plan_report.h). Exit 0 if the merge can
 * run, 2 if not. */
#include <string.h>

#include "commands.h"
#include "gguf_out.h"
#include "options.h"
#include "plan_report.h"
#include "run_program.h"

/* --gguf-type: the GGUF file `merge CONFIG merged.gguf` would write instead
 * of the shards (spec/gguf.md §8.2), laid out exactly: its size and header.
 * The name matters (general.name, and the card's title, which plan
 * compiles as "merged"): another OUT.gguf differs by a few header bytes. */
static int report_gguf(const cr_cli_options *o, const cr_program *p)
{
    cr_gguf_hf_opts g;
    int rc = cr_cli_gguf_prepare(o, p, &g);
    if (rc) return 2;
    const cr_allocator *a = cr_default_allocator();
    cr_error err = {0};
    cr_gguf_src src;
    void *owned = NULL;
    cr_gguf_sink *s = NULL;
    cr_status st = cr_program_gguf_src(a, p, NULL, "merged", &src, &owned, &err);
    if (!st) st = cr_gguf_sink_open(a, &src, &g, NULL, -1, NULL, &s, &err);
    if (!st)
        printf("gguf            %llu bytes as merged.gguf (%s, header %llu bytes, tokenizer.ggml.pre %s)\n",
               (unsigned long long)cr_gguf_sink_size(s), cr_ggml_type_name(cr_gguf_sink_ftype(s)),
               (unsigned long long)cr_gguf_sink_header_size(s), g.pre);
    else fprintf(stderr, "crucible plan: %s\n", err.msg);
    cr_gguf_sink_free(s);
    cr_program_gguf_src_free(a, owned);
    return st ? 2 : 0;
}

static int report(const cr_cli_options *o, const cr_program *p, const cr_plan *plan)
{
    cr_plan_numbers n;
    cr_error err = {0};
    cr_status s = o->n_parts ? cr_plan_print_parts(p, o->part, o->n_parts, o->threads, o->max_memory, stdout, &err)
                             : cr_plan_measure(p, o->threads, o->max_memory, &n, &err);
    if (s) {
        fprintf(stderr, "crucible plan: %s\n", err.msg);
        return 2;
    }
    if (!o->n_parts) {
        if (plan) cr_plan_name_stages(plan, &n);
        cr_plan_print(p, &n, stdout);
    }
    if (cr_cli_gguf_wanted(o, NULL)) return report_gguf(o, p);
    return 0;
}

int cr_cmd_plan(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_PLAN, argc, argv, &o)) return 2;
    size_t len = strlen(o.pos[0]);
    if (len > 4 && !strcmp(o.pos[0] + len - 4, ".crb")) {
        /* a compiled program: its tables are all plan needs (no input is opened) */
        cr_program prog;
        cr_error err = {0};
        if (cr_program_load(cr_default_allocator(), o.pos[0], &prog, &err)) {
            fprintf(stderr, "crucible plan: %s\n", err.msg);
            return 2;
        }
        int rc = report(&o, &prog, NULL);
        cr_program_free(&prog);
        return rc;
    }
    cr_compile_result r;
    int rc = cr_cli_compile(&o, true, NULL, false, &r);
    if (rc) return 2;
    rc = report(&o, &r.program, &r.plan);
    cr_compile_result_free(&r);
    return rc;
}
