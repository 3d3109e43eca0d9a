/* options.h — the command-line options of every command: one table
 * (cli/options.def) that parses them and prints each command's --help;
 * and the recipe commands' call of the compile pipeline with them.
 * Sizes, thread counts and pass names are parsed here only. */
#ifndef CR_CLI_OPTIONS_H
#define CR_CLI_OPTIONS_H

#include <stdio.h>
#include "base.h"
#include "pipeline.h"

enum { CR_CLI_MAX_INPUTS = 256 };   /* --input options of one command */

/* The commands, in `crucible --help`'s order. */
typedef enum cr_cli_cmd {
    CR_CMD_MERGE, CR_CMD_PLAN, CR_CMD_EXPLAIN, CR_CMD_COMPILE, CR_CMD_RUN, CR_CMD_MOE,
    CR_CMD_SYNTH, CR_CMD_INSPECT, CR_CMD_DIFF, CR_CMD_EVAL, CR_CMD_VERIFY, CR_CMD_OPS, CR_CMD_CONVERT, CR_CMD_ASSEMBLE,
    CR_CMD_EXTRACT_LORA,
    CR_CMD_COUNT
} cr_cli_cmd;

/* The command's name ("merge") and its line in `crucible --help`. */
const char *cr_cli_command_name(cr_cli_cmd cmd);
const char *cr_cli_command_summary(cr_cli_cmd cmd);

/* One id per row of cli/options.def: CR_OPT_THREADS, CR_OPT_OUT_SHARD_SIZE ... */
typedef enum cr_cli_opt {
#define OPT(id, names, neg, value, what, kind, cmds, dflt, help) CR_OPT_##id,
#include "options.def"
#undef OPT
    CR_OPT_COUNT
} cr_cli_opt;

typedef struct cr_cli_options {
    const char *cmd;
    const char *pos[2];         /* CONFIG, OUT_DIR (or the command's own) */
    int n_pos;
    const char *output;         /* -o */
    uint64_t out_shard_size;    /* bytes; default 5B */
    uint64_t seed;
    bool have_seed;
    bool copy_tokenizer, write_card, allow_crimes, quiet, precise, force;
    bool unsafe_truncate_embeddings;
    bool no_bos;                /* eval: --no-bos */
    int verbose;
    unsigned threads;           /* 0: not given (cr_default_threads()) */
    uint64_t max_memory;
    const char *models_dir, *methods_dir;
    uint32_t disabled_passes;
    const char *dump;
    /* mergekit-moe configs (compiler/moe.h) */
    int mk_version;             /* cr_mk_version: --mergekit-version (0: the current release) */
    int lora_merge_dtype;       /* --lora-merge-dtype: its cr_dtype + 1 (0: not given) */
    int moe_layout;             /* cr_moe_layout: --moe-layout classic|fused */
    bool gate_f32;              /* --gate-precision f32 (moe hidden gates; default bf16) */
    bool moe_same_source;       /* --i-understand-this-is-not-useful-without-training */
    bool require_hash;          /* verify: --require-hash */
    bool skip_hash;             /* run, compile: --skip-hash */
    bool no_read_ahead;         /* merge, moe, run: --no-read-ahead */
    bool no_output_stream;      /* merge, moe, run: --no-output-stream */
    const char *input_args[CR_CLI_MAX_INPUTS];  /* run: each --input NAME=DIR, in order */
    int n_input_args;
    const char *text_args[CR_CLI_MAX_INPUTS];   /* eval: each --text FILE, in order */
    int n_text_args;
    /* extract-lora: each --save-module / -e / -i, in order, with its option */
    const char *list_args[CR_CLI_MAX_INPUTS];
    cr_cli_opt list_ids[CR_CLI_MAX_INPUTS];
    int n_list_args;
    bool xl_no_distribute_scale, xl_embed_lora;   /* extract-lora: --no-distribute-scale, --embed-lora */
    uint64_t shard_size;        /* synth: --shard-size (0: one shard) */
    uint32_t part, n_parts;     /* run, plan: --part I/N (n_parts 0: not given) */
    /* Every option given, by id: its value as typed ("" for a flag), the
     * last one when repeated; NULL when not given. The parser checks the
     * values of sizes, thread counts, seeds, passes and choices; a command
     * reads the others (synth's dimensions, eval's --text) from here. */
    const char *val[CR_OPT_COUNT];
} cr_cli_options;

/* A size for --max-memory: bytes, or a number (decimals allowed) with a
 * binary suffix K, M, G, T, optionally followed by "i" and/or "B" ("8G",
 * "512MiB", "1.5GB"). False when malformed or out of range. Shard sizes
 * (--out-shard-size, --shard-size) count as mergekit does instead
 * (cr_parse_shard_size, formats/shards.h: k, M, B = 10^3, 10^6, 10^9). */
bool cr_cli_parse_size(const char *s, uint64_t *out);

/* Parse argv (argv[0] is the command's name) with the option table:
 * options anywhere, as "--opt VALUE" or "--opt=VALUE", and the command's
 * positional arguments. --help prints the command's help to stdout and
 * exits 0. Returns false after printing the problem, naming the option and
 * the value ("crucible merge: --threads needs a value (a number of
 * threads)", "unknown option '--x'"), or the usage for a wrong number of
 * positional arguments; the caller exits 2. */
bool cr_cli_parse(cr_cli_cmd cmd, int argc, char **argv, cr_cli_options *o);

/* Option `id`'s names as the table has them, "|"-separated, the first
 * being the one messages use ("--threads|-j|--num-threads"). */
const char *cr_cli_option_names(cr_cli_opt id);

/* The compile pipeline (compiler/pipeline.h) on the recipe o->pos[0] with
 * o's options; aux files name out_dir; `inputs`: collect the paths
 * compiling read (formats/outguard.h) into r->inputs. Prints the diagnostics and
 * any failure to stderr. Returns the exit status (0 ok, 1 runtime failure,
 * 2 invalid recipe); on 0 the caller frees *r (cr_compile_result_free). */
int cr_cli_compile(const cr_cli_options *o, bool header_only, const char *out_dir, bool inputs,
                   cr_compile_result *r);

#endif
