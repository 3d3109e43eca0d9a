/* main.c — the crucible command line: finds the subcommand and calls it.
 * Each subcommand lives in cli/cmd_NAME.c and calls the library. */
#include <stdio.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "base.h"
#include "commands.h"

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"merge",   cr_cmd_merge,   "merge CONFIG OUT_DIR        compile and run a mergekit YAML (or Lua) recipe"},
    {"plan",    cr_cmd_plan,    "plan CONFIG                 what a merge will read, write and need, before running"},
    {"explain", cr_cmd_explain, "explain CONFIG|RECIPE.crb   the bytecode as a table (--dump=PASS for the IR)"},
    {"compile", cr_cmd_compile, "compile CONFIG -o OUT.crb   compile a recipe to a re-runnable program"},
    {"run",     cr_cmd_run,     "run RECIPE.crb OUT_DIR      run a compiled program"},
    {"moe",     cr_cmd_moe,     "moe CONFIG OUT_DIR          build a Mixture of Experts (mergekit-moe config)"},
    {"synth",   cr_cmd_synth,   "synth OUT_DIR [options]     write a deterministic synthetic model"},
    {"inspect", cr_cmd_inspect, "inspect MODEL_DIR           list a model's tensors"},
    {"diff",    cr_cmd_diff,    "diff A B                    compare two models tensor by tensor"},
    {"eval",    cr_cmd_eval,    "eval MODEL --text FILE      perplexity of a model on a text"},
    {"verify",  cr_cmd_verify,  "verify OUT_DIR              check a written model: structure, index, shard hashes"},
    {"ops",     cr_cmd_ops,     "ops [--markdown]            the VM's op table"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: crucible COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < CR_ARRAY_LEN(commands); i++)
        fprintf(out, "  %s\n", commands[i].summary);
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
    for (size_t i = 0; i < CR_ARRAY_LEN(commands); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "crucible: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
