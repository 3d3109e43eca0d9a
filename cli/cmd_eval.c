/* cmd_eval.c — `crucible eval`: not implemented yet (replace this stub). */
#include "commands.h"

int cr_cmd_eval(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cr_cmd_not_implemented("eval");
}
