/* cmd_compile.c — `crucible compile CONFIG -o OUT.crb`: a program anyone can
 * re-run bit for bit with `crucible run`. */
#include "commands.h"
#include "options.h"

static const char usage[] =
    "usage: crucible compile CONFIG -o OUT.crb [merge options]\n";

int cr_cmd_compile(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(argc, argv, 1, usage, &o)) return 2;
    if (!o.output) { fprintf(stderr, "%s", usage); return 2; }
    cr_plan plan;
    cr_graph g;
    cr_program prog;
    int rc = cr_cli_compile(&o, true, NULL, &plan, &g, &prog);
    if (rc) return rc;
    cr_error err = {0};
    if (cr_program_save(&prog, o.output, &err)) {
        fprintf(stderr, "crucible compile: %s\n", err.msg);
        rc = 1;
    }
    cr_program_free(&prog);
    cr_graph_free(&g);
    cr_plan_free(&plan);
    return rc;
}
