/* cmd_merge.c — `crucible merge`: not implemented yet (replace this stub). */
#include "commands.h"

int cr_cmd_merge(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cr_cmd_not_implemented("merge");
}
