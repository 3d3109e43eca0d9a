/* cmd_ops.c — `crucible ops`: not implemented yet (replace this stub). */
#include "commands.h"

int cr_cmd_ops(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cr_cmd_not_implemented("ops");
}
