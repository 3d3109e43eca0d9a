/* cmd_plan.c — `crucible plan CONFIG`: everything a merge will read, write
 * and need, from headers only. Exit 0 if the merge can run, 2 if not. */
#include "commands.h"
#include "options.h"
#include "plan_report.h"

int cr_cmd_plan(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_PLAN, argc, argv, &o)) return 2;
    cr_compile_result r;
    int rc = cr_cli_compile(&o, true, NULL, false, &r);
    if (rc) return 2;
    cr_plan_numbers n;
    cr_error err = {0};
    if (cr_plan_measure(&r.program, o.threads, o.max_memory, &n, &err)) {
        fprintf(stderr, "crucible plan: %s\n", err.msg);
        rc = 2;
    } else {
        cr_plan_print(&r.program, &n, stdout);
    }
    cr_compile_result_free(&r);
    return rc;
}
