/* run_program.h — run a compiled program for a command (merge, moe, run),
 * with SIGINT/SIGTERM turned into the VM's interrupt flag for the duration.
 * The flag lives in the CLI, not in the library, which has no globals. */
#ifndef CR_CLI_RUN_PROGRAM_H
#define CR_CLI_RUN_PROGRAM_H

#include "vm.h"

/* Runs prog with vo (vo->interrupt is set here), prints a failure as
 * "crucible CMD: message" and returns the exit status: 0, 130 when
 * interrupted, 1 otherwise. prog stays owned by the caller. */
int cr_cli_run_program(const cr_program *prog, cr_vm_options *vo, const char *cmd);

#endif
