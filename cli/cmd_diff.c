/* cmd_diff.c — `crucible diff`: not implemented yet (replace this stub). */
#include "commands.h"

int cr_cmd_diff(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cr_cmd_not_implemented("diff");
}
