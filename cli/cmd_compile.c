/* cmd_compile.c — `crucible compile`: not implemented yet (replace this stub). */
#include "commands.h"

int cr_cmd_compile(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cr_cmd_not_implemented("compile");
}
