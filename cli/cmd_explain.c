/* cmd_explain.c — `crucible explain CONFIG|RECIPE.crb`: the bytecode as a
 * table, like SQL's EXPLAIN; --dump=PASS prints the graph IR after a pass. */
#include <string.h>
#include "commands.h"
#include "options.h"
#include "vm.h"

int cr_cmd_explain(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_EXPLAIN, argc, argv, &o)) return 2;
    size_t len = strlen(o.pos[0]);
    cr_program prog;
    if (len > 4 && !strcmp(o.pos[0] + len - 4, ".crb")) {
        cr_error err = {0};
        if (cr_program_load(cr_default_allocator(), o.pos[0], &prog, &err)) {
            fprintf(stderr, "crucible explain: %s\n", err.msg);
            return 1;
        }
        cr_program_explain(&prog, stdout);
        cr_program_free(&prog);
        return 0;
    }
    cr_compile_result r;
    int rc = cr_cli_compile(&o, true, NULL, false, &r);
    if (rc) return rc;
    if (!o.dump) cr_program_explain(&r.program, stdout);
    cr_compile_result_free(&r);
    return 0;
}
