/* cmd_verify.c — `crucible verify OUT_DIR`: checking each shard against the
 * hash recorded in the index metadata is a later issue (the writer does not
 * record shard hashes yet), so this command says so and fails. */
#include "commands.h"

int cr_cmd_verify(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cr_cmd_not_implemented("verify (shard hashes are not recorded in index metadata yet)");
}
