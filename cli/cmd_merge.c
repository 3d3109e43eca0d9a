/* cmd_merge.c — `crucible merge CONFIG OUT_DIR`: compile the recipe and run
 * it on the VM. Accepts mergekit-yaml's options with their meaning. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "options.h"
#include "run_program.h"

int cr_cmd_merge(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_MERGE, argc, argv, &o)) return 2;
    return cr_cli_compile_and_run(&o);
}
