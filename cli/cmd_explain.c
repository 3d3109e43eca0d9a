/* cmd_explain.c — `crucible explain`: not implemented yet (replace this stub). */
#include "commands.h"

int cr_cmd_explain(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cr_cmd_not_implemented("explain");
}
