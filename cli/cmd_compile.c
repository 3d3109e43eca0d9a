/* cmd_compile.c — `crucible compile CONFIG -o OUT.crb`: a program anyone can
 * re-run bit for bit with `crucible run`. */
#include "commands.h"
#include "options.h"
#include "outguard.h"

#include <sys/stat.h>

int cr_cmd_compile(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_COMPILE, argc, argv, &o)) return 2;
    if (!o.output) { fprintf(stderr, "crucible compile: -o OUT.crb is required\n"); return 2; }
    struct stat st;
    if (!o.output[0]) { fprintf(stderr, "crucible compile: -o: the output file name is empty\n"); return 1; }
    if (!o.force && !lstat(o.output, &st)) {
        fprintf(stderr, "crucible compile: %s exists (use --force to replace it)\n", o.output);
        return 1;
    }
    cr_plan plan;
    cr_graph g;
    cr_program prog;
    cr_input_paths inputs;   /* the .crb must not replace one of them (vm/outguard.h) */
    cr_input_paths_init(&inputs, cr_default_allocator());
    int rc = cr_cli_compile(&o, true, NULL, &plan, &g, &prog, &inputs);
    if (rc) { cr_input_paths_free(&inputs); return rc; }
    cr_error err = {0};
    /* cr_program_save writes beside the target and renames it into place */
    if (cr_input_paths_add_program(&inputs, &prog, &err) ||
        cr_outguard_check(&inputs, o.output, "output file", &err) ||
        cr_program_save(&prog, o.output, &err)) {
        fprintf(stderr, "crucible compile: %s\n", err.msg);
        rc = 1;
    }
    cr_input_paths_free(&inputs);
    cr_program_free(&prog);
    cr_graph_free(&g);
    cr_plan_free(&plan);
    return rc;
}
