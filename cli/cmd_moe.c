/* cmd_moe.c — `crucible moe CONFIG OUT_DIR`: mergekit-moe. The config is
 * compiled into a program (compiler/moe.h: tensor map, router gates computed
 * at compile time, casts) and run on the VM like a merge, so the output
 * directory appears atomically or not at all. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "moe_config.h"
#include "options.h"
#include "run_program.h"

int cr_cmd_moe(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_MOE, argc, argv, &o)) return 2;
    if (!cr_moe_file_is_moe(cr_default_allocator(), o.pos[0])) {
        fprintf(stderr, "crucible moe: %s is not a mergekit-moe config (it needs `experts` and no "
                        "`merge_method`); for merges use `crucible merge`\n", o.pos[0]);
        return 2;
    }
    return cr_cli_compile_and_run(&o);
}
