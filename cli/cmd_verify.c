/* cmd_verify.c — `crucible verify`: not implemented yet (replace this stub). */
#include "commands.h"

int cr_cmd_verify(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cr_cmd_not_implemented("verify");
}
