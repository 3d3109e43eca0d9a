/* run_program.h — run a compiled program for a command (merge, moe, run),
 * with SIGINT/SIGTERM/SIGHUP turned into the VM's interrupt flag, SIGPIPE
 * ignored and SIGBUS on an input mapping turned into an error for the
 * duration; and the same signal handling for other commands' long steps
 * (synth). The flag lives in the CLI, not in the library, which has no
 * globals. */
#ifndef CR_CLI_RUN_PROGRAM_H
#define CR_CLI_RUN_PROGRAM_H

#include <signal.h>

#include "gguf_hf.h"
#include "options.h"
#include "vm.h"

/* Runs prog with vo (vo->interrupt and vo->guard are set here), prints a
 * failure as "crucible CMD: message" and returns the exit status: 0, 130
 * when interrupted, 1 otherwise. prog stays owned by the caller. */
int cr_cli_run_program(const cr_program *prog, cr_vm_options *vo, const char *cmd);

/* merge and moe: OUT_DIR (o->pos[1]) checked before compiling, the recipe
 * o->pos[0] compiled (cr_cli_compile) and run into it with o's thread,
 * memory, force and quiet options; the output guard gets every path the
 * compile read. Returns the exit status (cr_cli_compile's, or as above). */
int cr_cli_compile_and_run(const cr_cli_options *o);

/* GGUF output (spec/gguf.md §8.1): wanted when --gguf-type is given or
 * `out` ends in ".gguf"; the type parsed from --gguf-type (0, or 2 after a
 * message); the type and tokenizer.ggml.pre for program p (--gguf-pre, or
 * the hash of the output's tokenizer.json): 0, or the exit status after a
 * message. */
bool cr_cli_gguf_wanted(const cr_cli_options *o, const char *out);
int cr_cli_gguf_type(const char *cmd, const char *t, cr_gguf_hf_opts *g);
int cr_cli_gguf_prepare(const cr_cli_options *o, const cr_program *p, cr_gguf_hf_opts *g);

/* Between begin and end, SIGINT, SIGTERM and SIGHUP set the returned flag
 * (cleared by begin) and SIGPIPE is ignored; end restores the previous
 * actions. */
typedef struct cr_cli_signals {
    struct sigaction old[3], old_pipe;
} cr_cli_signals;
volatile int *cr_cli_signals_begin(cr_cli_signals *s);
void cr_cli_signals_end(cr_cli_signals *s);

#endif
