/* main.c — the crucible command line: finds the subcommand and calls it.
 * Each subcommand lives in cli/cmd_NAME.c and calls the library. */
#include <stdio.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "base.h"
#include "commands.h"
#include "options.h"

/* the function of each command; names, usage and options: cli/options.c */
static int (*const commands[CR_CMD_COUNT])(int argc, char **argv) = {
    [CR_CMD_MERGE] = cr_cmd_merge,     [CR_CMD_PLAN] = cr_cmd_plan,     [CR_CMD_EXPLAIN] = cr_cmd_explain,
    [CR_CMD_COMPILE] = cr_cmd_compile, [CR_CMD_RUN] = cr_cmd_run,       [CR_CMD_MOE] = cr_cmd_moe,
    [CR_CMD_SYNTH] = cr_cmd_synth,     [CR_CMD_INSPECT] = cr_cmd_inspect, [CR_CMD_DIFF] = cr_cmd_diff,
    [CR_CMD_EVAL] = cr_cmd_eval,       [CR_CMD_VERIFY] = cr_cmd_verify, [CR_CMD_OPS] = cr_cmd_ops,
    [CR_CMD_CONVERT] = cr_cmd_convert,
    [CR_CMD_ASSEMBLE] = cr_cmd_assemble, [CR_CMD_EXTRACT_LORA] = cr_cmd_extract_lora,
};

static void usage(FILE *out)
{
    fprintf(out, "usage: crucible COMMAND [ARGS]\n\ncommands:\n");
    for (int i = 0; i < CR_CMD_COUNT; i++)
        fprintf(out, "  %s\n", cr_cli_command_summary((cr_cli_cmd)i));
    fprintf(out, "  soup MODEL... OUT           a greedy (--greedy --eval FILE) or --uniform model soup\n");
    fprintf(out, "  evolve CONFIG.yml OUT_DIR   CMA-ES search over a merge's parameters\n");
    fprintf(out, "\n`crucible COMMAND --help` for a command's options.\n");
}

int cr_cmd_not_implemented(const char *name)
{
    fprintf(stderr, "crucible %s: not implemented yet\n", name);
    return 2;
}

int main(int argc, char **argv)
{
#ifdef __GLIBC__
    /* A fixed threshold: blocks of 256 KiB and more (scratch tensors,
     * histograms, gathers) are mapped and unmapped, so freed memory leaves
     * RSS at once. glibc's default raises the threshold after the first such
     * free and then keeps freed blocks in the heap, which made RSS drift from
     * vm/memplan.c's model by tens of MiB on multi-stage recipes. */
    mallopt(M_MMAP_THRESHOLD, 256 << 10);
#endif
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("crucible %s\n", CR_VERSION_STRING);
        return 0;
    }
    /* soup and evolve parse their own options (MODEL... is variadic) */
    if (!strcmp(argv[1], "soup")) return cr_cmd_soup(argc - 1, argv + 1);
    if (!strcmp(argv[1], "evolve")) return cr_cmd_evolve(argc - 1, argv + 1);
    for (int i = 0; i < CR_CMD_COUNT; i++)
        if (!strcmp(argv[1], cr_cli_command_name((cr_cli_cmd)i)))
            return commands[i](argc - 1, argv + 1);
    fprintf(stderr, "crucible: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
