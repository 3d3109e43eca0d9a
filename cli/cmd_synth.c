/* cmd_synth.c — `crucible synth`: not implemented yet (replace this stub). */
#include "commands.h"

int cr_cmd_synth(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cr_cmd_not_implemented("synth");
}
