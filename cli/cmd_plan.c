/* cmd_plan.c — `crucible plan CONFIG|RECIPE.crb`: everything a merge will
 * read, write and need, from headers only; with --part I/N, part I's and
 * every part's figures (compiler/plan_report.h). Exit 0 if the merge can
 * run, 2 if not. */
#include <string.h>

#include "commands.h"
#include "options.h"
#include "plan_report.h"

static int report(const cr_cli_options *o, const cr_program *p)
{
    cr_plan_numbers n;
    cr_error err = {0};
    cr_status s = o->n_parts ? cr_plan_print_parts(p, o->part, o->n_parts, o->threads, o->max_memory, stdout, &err)
                             : cr_plan_measure(p, o->threads, o->max_memory, &n, &err);
    if (s) {
        fprintf(stderr, "crucible plan: %s\n", err.msg);
        return 2;
    }
    if (!o->n_parts) cr_plan_print(p, &n, stdout);
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
        int rc = report(&o, &prog);
        cr_program_free(&prog);
        return rc;
    }
    cr_compile_result r;
    int rc = cr_cli_compile(&o, true, NULL, false, &r);
    if (rc) return 2;
    rc = report(&o, &r.program);
    cr_compile_result_free(&r);
    return rc;
}
