/* options.h — command-line options shared by merge, plan, explain and
 * compile (mergekit-yaml's options with their meaning, plus crucible's),
 * and the compile-a-recipe pipeline they share. */
#ifndef CR_CLI_OPTIONS_H
#define CR_CLI_OPTIONS_H

#include <stdio.h>
#include "base.h"
#include "graph.h"
#include "plan.h"
#include "program.h"
#include "outguard.h"

typedef struct cr_cli_options {
    const char *cmd;
    const char *pos[2];         /* CONFIG, OUT_DIR */
    int n_pos;
    const char *output;         /* -o */
    uint64_t out_shard_size;    /* bytes; default 5B */
    uint64_t seed;
    bool have_seed;
    bool copy_tokenizer, write_card, allow_crimes, quiet, precise, force;
    int verbose;
    unsigned threads;
    uint64_t max_memory;
    const char *models_dir, *methods_dir;
    uint32_t disabled_passes;
    const char *dump;
    /* mergekit-moe configs (compiler/moe.h) */
    int moe_layout;             /* cr_moe_layout: --moe-layout classic|fused */
    bool gate_f32;              /* --gate-precision f32 (moe hidden gates; default bf16) */
    bool moe_same_source;       /* --i-understand-this-is-not-useful-without-training */
    bool require_hash;          /* verify: --require-hash */
} cr_cli_options;

/* A size for --max-memory: bytes, or a number (decimals allowed) with a
 * binary suffix K, M, G, T, optionally followed by "i" and/or "B" ("8G",
 * "512MiB", "1.5GB"). False when malformed or out of range. */
bool cr_cli_parse_size(const char *s, uint64_t *out);

/* The most worker threads --threads takes (merge, run, moe, plan). */
#define CR_CLI_MAX_THREADS 1024u

/* What the value of option `opt` is ("a number of threads"), or NULL when
 * `opt` takes no value. Covers the options of every command. */
const char *cr_cli_value_what(const char *opt);

/* False, after printing "crucible CMD: --threads needs a value (a number of
 * threads)", when argv[i] is an option that takes a value and none follows
 * (it is the last argument, or the next one is a --long option). */
bool cr_cli_has_value(const char *cmd, int argc, char **argv, int i);

/* A --threads value: a whole number in 1..max. Prints the problem, naming
 * `opt` and the value, and returns false otherwise. */
bool cr_cli_parse_threads(const char *cmd, const char *opt, const char *val, unsigned max, unsigned *out);

/* Parse argv (argv[0] is the command). Prints the problem and returns false
 * on a bad option or a wrong number of positional arguments. */
bool cr_cli_parse(int argc, char **argv, int n_positional, const char *usage, cr_cli_options *o);

/* Front end + compiler: recipe -> verified program. A mergekit-moe config
 * (a mapping with `experts` and no `merge_method`/`models`/`slices`) goes
 * through compiler/moe.h instead; *plan is then left empty. Aux files are
 * planned when out_dir is given. When `inputs` is not NULL, every path
 * compiling read is added to it (the recipe, Lua method files, model
 * directories; vm/outguard.h), for the output check. Prints diagnostics to stderr. Returns the exit status
 * (0 ok, 1 runtime failure, 2 invalid recipe); on 0 the caller frees *prog
 * and *plan (cr_plan_free) and *g (cr_graph_free). */
int cr_cli_compile(const cr_cli_options *o, bool header_only, const char *out_dir,
                   cr_plan *plan, cr_graph *g, cr_program *prog, cr_input_paths *inputs);

#endif
