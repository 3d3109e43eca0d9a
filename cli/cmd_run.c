/* cmd_run.c — `crucible run`: not implemented yet (replace this stub). */
#include "commands.h"

int cr_cmd_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cr_cmd_not_implemented("run");
}
