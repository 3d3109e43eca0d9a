/* commands.h — one function per subcommand, each in cli/cmd_NAME.c.
 * argv[0] is the subcommand name. Return the process exit status. */
#ifndef CR_CLI_COMMANDS_H
#define CR_CLI_COMMANDS_H

#include <stdbool.h>

int cr_cmd_merge(int argc, char **argv);
int cr_cmd_plan(int argc, char **argv);
int cr_cmd_explain(int argc, char **argv);
int cr_cmd_compile(int argc, char **argv);
int cr_cmd_run(int argc, char **argv);
int cr_cmd_synth(int argc, char **argv);
int cr_cmd_convert(int argc, char **argv);
int cr_cmd_inspect(int argc, char **argv);
int cr_cmd_diff(int argc, char **argv);
/* diff when A or B is a GGUF file (diff_gguf.c): the exit status */
int cr_cli_diff_gguf(const char *a, const char *b, bool all);
int cr_cmd_moe(int argc, char **argv);
int cr_cmd_eval(int argc, char **argv);
int cr_cmd_soup(int argc, char **argv);
int cr_cmd_evolve(int argc, char **argv);
int cr_cmd_verify(int argc, char **argv);
int cr_cmd_ops(int argc, char **argv);
int cr_cmd_assemble(int argc, char **argv);
int cr_cmd_extract_lora(int argc, char **argv);

/* The message and exit status of a command that does not exist yet. */
int cr_cmd_not_implemented(const char *name);

#endif
