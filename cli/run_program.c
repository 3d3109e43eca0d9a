/* run_program.c — the VM run shared by merge, moe and run. */
#include <signal.h>
#include <stdio.h>

#include "run_program.h"

static volatile int interrupted;
static void on_signal(int sig) { (void)sig; interrupted = 1; }

int cr_cli_run_program(const cr_program *prog, cr_vm_options *vo, const char *cmd)
{
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    vo->interrupt = &interrupted;
    cr_error err = {0};
    cr_status st = cr_vm_run(prog, vo, &err);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (!st) return 0;
    fprintf(stderr, "crucible %s: %s\n", cmd, err.msg);
    return st == CR_ERR_INTERRUPTED ? 130 : 1;
}
