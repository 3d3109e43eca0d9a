/* cmd_inspect.c — `crucible inspect`: not implemented yet (replace this stub). */
#include "commands.h"

int cr_cmd_inspect(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cr_cmd_not_implemented("inspect");
}
