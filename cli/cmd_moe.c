/* cmd_moe.c — `crucible moe`: not implemented yet (replace this stub). */
#include "commands.h"

int cr_cmd_moe(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cr_cmd_not_implemented("moe");
}
