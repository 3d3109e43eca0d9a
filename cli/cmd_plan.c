/* cmd_plan.c — `crucible plan`: not implemented yet (replace this stub). */
#include "commands.h"

int cr_cmd_plan(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cr_cmd_not_implemented("plan");
}
