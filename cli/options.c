/* options.c — the option table's parser and --help (cli/options.def), and
 * the recipe-taking commands' (merge, plan, explain, compile, moe) call of
 * the compile pipeline (compiler/pipeline.h) with their options. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "limits.h"
#include "shards.h"

/* ---- the commands and the option table ----------------------------------- */

enum {
    C_MERGE = 1u << CR_CMD_MERGE, C_PLAN = 1u << CR_CMD_PLAN, C_EXPLAIN = 1u << CR_CMD_EXPLAIN,
    C_COMPILE = 1u << CR_CMD_COMPILE, C_RUN = 1u << CR_CMD_RUN, C_MOE = 1u << CR_CMD_MOE,
    C_SYNTH = 1u << CR_CMD_SYNTH, C_INSPECT = 1u << CR_CMD_INSPECT, C_DIFF = 1u << CR_CMD_DIFF,
    C_EVAL = 1u << CR_CMD_EVAL, C_VERIFY = 1u << CR_CMD_VERIFY, C_OPS = 1u << CR_CMD_OPS,
    C_CONVERT = 1u << CR_CMD_CONVERT,
    C_ASSEMBLE = 1u << CR_CMD_ASSEMBLE,
    C_EXTRACT_LORA = 1u << CR_CMD_EXTRACT_LORA,
};

typedef enum opt_kind { OWN, MK, NOOP, REFUSED } opt_kind;

typedef struct option {
    const char *names;          /* "--threads|-j|--num-threads" */
    bool neg;                   /* --no-NAME accepted */
    const char *value, *what;   /* placeholder and description of the value; NULL for a flag */
    opt_kind kind;
    uint32_t cmds;
    const char *dflt, *help;
} option;

static const option options[CR_OPT_COUNT] = {
#define OPT(id, names, neg, value, what, kind, cmds, dflt, help) \
    [CR_OPT_##id] = { names, neg, value, what, kind, cmds, dflt, help },
#include "options.def"
#undef OPT
};

typedef struct command {
    const char *name;
    const char *summary;        /* its line in `crucible --help` */
    int n_pos;                  /* positional arguments it takes */
    const char *usage, *about;  /* after "usage: crucible "; what it does (lines) */
    const char *mk_title;       /* the heading of mergekit's options, if it has them */
} command;

static const command commands[CR_CMD_COUNT] = {
    [CR_CMD_MERGE] = {
        "merge", "merge CONFIG OUT_DIR        compile and run a mergekit YAML (or Lua) recipe",
        2, "merge CONFIG OUT_DIR [options]",
        "compile and run a mergekit YAML (or Lua) recipe; OUT_DIR appears complete or not at all\n",
        "mergekit-yaml's options (same meaning)" },
    [CR_CMD_PLAN] = {
        "plan", "plan CONFIG|RECIPE.crb      what a merge will read, write and need, before running",
        1, "plan CONFIG|RECIPE.crb [options]",
        "what a merge will read, write and need, from headers only; exit 0 if it can run, 2 if not;\n"
        "--part I/N: part I's figures and every part's (options other than these apply to a CONFIG)\n",
        "mergekit-yaml's options (same meaning)" },
    [CR_CMD_EXPLAIN] = {
        "explain", "explain CONFIG|RECIPE.crb   the bytecode as a table (--dump=PASS for the IR)",
        1, "explain CONFIG|RECIPE.crb [options]",
        "the bytecode as a table (options apply to a CONFIG); --dump=PASS prints the graph IR\n",
        "mergekit-yaml's options (same meaning)" },
    [CR_CMD_COMPILE] = {
        "compile", "compile CONFIG -o OUT.crb   compile a recipe to a re-runnable program",
        1, "compile CONFIG -o OUT.crb [options]",
        "compile a recipe to a program that `crucible run` re-runs bit for bit; an existing\n"
        "OUT.crb is replaced only with --force, and never when it is an input\n",
        "mergekit-yaml's options (same meaning)" },
    [CR_CMD_RUN] = {
        "run", "run RECIPE.crb OUT_DIR      run a compiled program",
        2, "run RECIPE.crb OUT_DIR [options]",
        "run a compiled merge program; OUT_DIR appears complete or not at all. Its input\n"
        "models are found as `merge` finds a recipe's: beside RECIPE.crb, in the working\n"
        "directory, in --models-dir (else $CRUCIBLE_MODELS), in the Hugging Face cache at the\n"
        "recorded snapshot; every file must have its recorded size and content hash\n"
        "CRUCIBLE_ISA=scalar|avx2|avx512 forces a kernel set\n", NULL },
    [CR_CMD_MOE] = {
        "moe", "moe CONFIG OUT_DIR          build a Mixture of Experts (mergekit-moe config)",
        2, "moe CONFIG OUT_DIR [options]",
        "build a Mixture of Experts from a mergekit-moe config\n",
        "mergekit-moe's options (same meaning)" },
    [CR_CMD_SYNTH] = {
        "synth", "synth OUT_DIR [options]     write a deterministic synthetic model",
        1, "synth OUT_DIR --arch llama|mistral|qwen2|qwen3 --layers N --hidden H --intermediate I\n"
        "           --heads A --kv-heads K --vocab V [options]\n"
        "       crucible synth OUT_DIR --from BASE_DIR --delta-scale X [options]",
        "write a deterministic synthetic model (or a seeded fine-tune of one); every weight is\n"
        "a function of (seed, tensor name, element index)\n", NULL },
    [CR_CMD_INSPECT] = {
        "inspect", "inspect MODEL_DIR|FILE.gguf list a model's tensors",
        1, "inspect MODEL_DIR|FILE.gguf",
        "list a model's tensors (name, dtype, shape, bytes, shard file) and totals; of a GGUF\n"
        "file, its metadata keys (arrays abbreviated) and tensors (type, ne, bytes, offset),\n"
        "after checking every rule of llama.cpp's loader\n", NULL },
    [CR_CMD_DIFF] = {
        "diff", "diff A B                    compare two models tensor by tensor",
        2, "diff A B [--all]",
        "compare two models tensor by tensor; exit 0 if identical, 1 if not, 2 on error\n", NULL },
    [CR_CMD_EVAL] = {
        "eval", "eval MODEL --text FILE      perplexity of a model on a text",
        1, "eval MODEL_DIR --text FILE [--text FILE...] [options]",
        "perplexity (mean next-token NLL) of the model on each FILE, tokenized with\n"
        "MODEL_DIR/tokenizer.json as transformers' tokenizer(text) does, in windows of\n"
        "--max-tokens that start --stride tokens apart (the Hugging Face perplexity guide)\n", NULL },
    [CR_CMD_VERIFY] = {
        "verify", "verify OUT_DIR              check a written model: structure, index, shard hashes",
        1, "verify OUT_DIR [options]",
        "re-validates every shard, checks that the index covers every tensor exactly once\n"
        "and its total_size, and recomputes the shard hashes crucible recorded in the index;\n"
        "first removes what a killed crucible left beside OUT_DIR (OUT_DIR.crucible-tmp-PID)\n", NULL },
    [CR_CMD_OPS] = {
        "ops", "ops [--markdown]            the VM's op table",
        0, "ops [--markdown]", "the VM's op table\n", NULL },
    [CR_CMD_CONVERT] = {
        "convert", "convert MODEL_DIR OUT.gguf  write a model as GGUF (llama.cpp)",
        2, "convert MODEL_DIR OUT.gguf [options]",
        "write a model directory as a GGUF file byte for byte as llama.cpp's convert_hf_to_gguf.py\n"
        "would (spec/gguf.md); OUT.gguf appears complete or not at all, is replaced only with\n"
        "--force, and never when it is an input\n", NULL },
    [CR_CMD_ASSEMBLE] = {
        "assemble", "assemble OUT_DIR            finish a partitioned run (run --part I/N)",
        1, "assemble OUT_DIR [options]",
        "check every part's manifest and shards in OUT_DIR (written by `crucible run X.crb\n"
        "OUT_DIR --part I/N`), then write the index, config, tokenizer files and model card as\n"
        "a single run does and remove OUT_DIR/crucible-parts (spec/parts.md)\n", NULL },
    [CR_CMD_EXTRACT_LORA] = {
        "extract-lora", "extract-lora [options]      a LoRA adapter from a fine-tune (--model FT --base-model BASE --out-path OUT)",
        0, "extract-lora --model FT_DIR --base-model BASE_DIR --out-path OUT_DIR [options]",
        "decompose (fine-tune - base) per Linear/Embedding module by truncated SVD, as\n"
        "mergekit-extract-lora does, into a PEFT adapter (adapter_config.json,\n"
        "adapter_model.safetensors); OUT_DIR appears complete or not at all (spec/lora.md)\n",
        "mergekit-extract-lora's options (same meaning)" },
};

const char *cr_cli_command_name(cr_cli_cmd cmd) { return commands[cmd].name; }
const char *cr_cli_command_summary(cr_cli_cmd cmd) { return commands[cmd].summary; }


/* Does `arg` (up to `len` bytes) name option `o`? *neg: it is "--no-NAME". */
static bool names_match(const option *o, const char *arg, size_t len, bool *neg)
{
    *neg = false;
    for (const char *p = o->names; *p;) {
        size_t n = strcspn(p, "|");
        if (n == len && !strncmp(p, arg, n)) return true;
        if (p == o->names && o->neg && len == n + 3 && !strncmp(arg, "--no-", 5) && !strncmp(arg + 5, p + 2, n - 2)) {
            *neg = true;
            return true;
        }
        p += n + (p[n] == '|');
    }
    return false;
}

/* The option `arg` names (up to '=' for a value option), or -1. */
static int find_option(cr_cli_cmd cmd, const char *arg, bool *neg, const char **inline_val)
{
    *inline_val = NULL;
    size_t len = strlen(arg);
    for (int i = 0; i < CR_OPT_COUNT; i++) {
        if (!(options[i].cmds & (1u << cmd))) continue;
        if (names_match(&options[i], arg, len, neg)) return i;
        const char *eq = strchr(arg, '=');
        if (eq && options[i].value && names_match(&options[i], arg, (size_t)(eq - arg), neg) && !*neg) {
            *inline_val = eq + 1;
            return i;
        }
    }
    return -1;
}

/* The passes that --no-pass (optional only) or --dump takes, "fold, cse,
 * dce or fuse", from the compiler's pass table. */
static const char *pass_list(bool optional_only, char *buf, size_t cap)
{
    size_t n = 0, k = 0, total = 0;
    for (int p = 0; p < CR_PASS_COUNT; p++) total += !optional_only || cr_pass_optional((cr_pass_id)p);
    buf[0] = 0;
    for (int p = 0; p < CR_PASS_COUNT && n < cap; p++) {
        if (optional_only && !cr_pass_optional((cr_pass_id)p)) continue;
        k++;
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", k == 1 ? "" : k == total ? " or " : ", ", cr_pass_name((cr_pass_id)p));
    }
    return buf;
}

/* what the value is: the table's text; the passes from the pass table */
static const char *value_what(int id, char *buf, size_t cap)
{
    if (id != CR_OPT_NO_PASS && id != CR_OPT_DUMP) return options[id].what;
    char list[160];
    snprintf(buf, cap, "a pass: %s", pass_list(id == CR_OPT_NO_PASS, list, sizeof list));
    return buf;
}

const char *cr_cli_option_names(cr_cli_opt id)
{
    return options[id].names;
}

/* ---- values ---------------------------------------------------------------- */

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    /* digits only: strtoull would take "-1" (wrapped) and " 7" */
    if (!s || !(*s >= '0' && *s <= '9')) return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno) return false;
    *out = v;
    return true;
}

bool cr_cli_parse_size(const char *s, uint64_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v >= 0) || *s == '-' || *s == '+') return false;
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 0x1p10; end++; break;
    case 'm': case 'M': mul = 0x1p20; end++; break;
    case 'g': case 'G': mul = 0x1p30; end++; break;
    case 't': case 'T': mul = 0x1p40; end++; break;
    default: break;
    }
    if (mul > 1 && *end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end || !(v * mul < 0x1p64)) return false;
    *out = (uint64_t)(v * mul);
    return true;
}

/* A --threads value: a whole number in 1..CR_LIMIT_THREADS. */
static bool parse_threads(const char *cmd, const char *opt, const char *val, unsigned *out)
{
    uint64_t t = 0;
    bool digits = val[0] != 0;
    for (const char *p = val; *p && digits; p++) digits = *p >= '0' && *p <= '9';
    /* strtoull saturates, so a 30-digit count is "too many", not wrapped */
    if (digits) t = strtoull(val, NULL, 10);
    if (!digits || t < 1 || t > CR_LIMIT_THREADS) {
        fprintf(stderr, "crucible %s: %s wants a whole number of threads from 1 to %u (leave it out to use all cores), got '%s'\n",
                cmd, opt, CR_LIMIT_THREADS, val);
        return false;
    }
    *out = (unsigned)t;
    return true;
}

static bool bad_value(const cr_cli_options *o, const char *opt, const char *wants, const char *val)
{
    fprintf(stderr, "crucible %s: %s wants %s, got '%s'\n", o->cmd, opt, wants, val);
    return false;
}

/* Checks option `id`'s value and sets the field it has. `opt` is its name. */
static bool apply(cr_cli_options *o, int id, const char *opt, bool neg, const char *val)
{
    cr_error err = {0};
    char buf[200];
    switch ((cr_cli_opt)id) {
    case CR_OPT_COPY_TOKENIZER: o->copy_tokenizer = !neg; break;
    case CR_OPT_WRITE_MODEL_CARD: o->write_card = !neg; break;
    case CR_OPT_ALLOW_CRIMES: o->allow_crimes = !neg; break;
    case CR_OPT_UNSAFE_TRUNCATE_EMBEDDINGS: o->unsafe_truncate_embeddings = !neg; break;
    case CR_OPT_I_UNDERSTAND: o->moe_same_source = true; break;
    case CR_OPT_VERBOSE: o->verbose++; break;
    case CR_OPT_QUIET: o->quiet = !neg; break;
    case CR_OPT_XL_DISTRIBUTE_SCALE: o->xl_no_distribute_scale = neg; break;
    case CR_OPT_XL_EMBED_LORA: o->xl_embed_lora = !neg; break;
    case CR_OPT_BOS: o->no_bos = neg; break;
    case CR_OPT_PRECISE: o->precise = true; break;
    case CR_OPT_FORCE: o->force = true; break;
    case CR_OPT_REQUIRE_HASH: o->require_hash = true; break;
    case CR_OPT_SKIP_HASH: o->skip_hash = true; break;
    case CR_OPT_READ_AHEAD: o->no_read_ahead = neg; break;
    case CR_OPT_OUTPUT_STREAM: o->no_output_stream = neg; break;
    case CR_OPT_MODELS_DIR: o->models_dir = val; break;
    case CR_OPT_TRANSFORMERS_CACHE:
        /* mergekit passes it to huggingface_hub as cache_dir: the hub cache
         * itself. The command line is the process's own: the resolver
         * (compiler/resolve.h) reads it from the environment as HF_HUB_CACHE */
        if (!*val) return bad_value(o, opt, "a directory", val);
        if (setenv("HF_HUB_CACHE", val, 1)) {
            fprintf(stderr, "crucible %s: %s: cannot set HF_HUB_CACHE\n", o->cmd, opt);
            return false;
        }
        break;
    case CR_OPT_SAFE_SERIALIZATION:
        if (neg) {
            fprintf(stderr, "crucible %s: %s is not supported (mergekit would write pytorch_model.bin; crucible writes "
                    "only safetensors, which transformers loads the same way)\n", o->cmd, opt);
            return false;
        }
        break;
    case CR_OPT_INPUT: {
        const char *eq = strchr(val, '=');
        if (!eq || eq == val || !eq[1]) return bad_value(o, opt, "NAME=DIR (a model name as `explain` lists it)", val);
        if (o->n_input_args == CR_CLI_MAX_INPUTS) {
            fprintf(stderr, "crucible %s: more than %d %s options\n", o->cmd, CR_CLI_MAX_INPUTS, opt);
            return false;
        }
        o->input_args[o->n_input_args++] = val;
        break;
    }
    case CR_OPT_XL_SAVE_MODULE:
    case CR_OPT_XL_EXCLUDE_REGEX:
    case CR_OPT_XL_INCLUDE_REGEX:
        if (o->n_list_args == CR_CLI_MAX_INPUTS) {
            fprintf(stderr, "crucible %s: more than %d %s options\n", o->cmd, CR_CLI_MAX_INPUTS, opt);
            return false;
        }
        o->list_ids[o->n_list_args] = id;
        o->list_args[o->n_list_args++] = val;
        break;
    case CR_OPT_TEXT:
        if (o->n_text_args == CR_CLI_MAX_INPUTS) {
            fprintf(stderr, "crucible %s: more than %d %s options\n", o->cmd, CR_CLI_MAX_INPUTS, opt);
            return false;
        }
        o->text_args[o->n_text_args++] = val;
        break;
    case CR_OPT_METHODS: o->methods_dir = val; break;
    case CR_OPT_OUTPUT: o->output = val; break;
    case CR_OPT_LORA_MERGE_DTYPE: {
        /* mergekit's dtype_from_name: these three, with or without "torch." */
        cr_dtype t;
        if (!cr_dtype_parse_torch(val, &t) || (t != CR_DTYPE_BF16 && t != CR_DTYPE_F16 && t != CR_DTYPE_F32))
            return bad_value(o, opt, "bfloat16, float16 or float32", val);
        o->lora_merge_dtype = (int)t + 1;
        break;
    }
    case CR_OPT_MERGEKIT_VERSION: {
        cr_mk_version v;
        if (!cr_mk_parse(val, &v)) return bad_value(o, opt, "0.1.4 or 0.1.5", val);
        o->mk_version = (int)v;
        break;
    }
    case CR_OPT_MOE_LAYOUT:
        if (!strcmp(val, "classic")) o->moe_layout = CR_MOE_LAYOUT_CLASSIC;
        else if (!strcmp(val, "fused")) o->moe_layout = CR_MOE_LAYOUT_FUSED;
        else return bad_value(o, opt, "classic or fused", val);
        break;
    case CR_OPT_GATE_PRECISION:
        if (!strcmp(val, "bf16")) o->gate_f32 = false;
        else if (!strcmp(val, "f32")) o->gate_f32 = true;
        else return bad_value(o, opt, "bf16 or f32", val);
        break;
    case CR_OPT_OUT_SHARD_SIZE:
    case CR_OPT_SHARD_SIZE:
        if (cr_parse_shard_size(val, id == CR_OPT_SHARD_SIZE ? &o->shard_size : &o->out_shard_size, &err)) {
            fprintf(stderr, "crucible %s: %s: %s\n", o->cmd, opt, err.msg);
            return false;
        }
        break;
    case CR_OPT_RANDOM_SEED:
    case CR_OPT_SEED:
        if (!parse_u64(val, &o->seed)) return bad_value(o, opt, "an integer", val);
        o->have_seed = true;
        break;
    case CR_OPT_THREADS:
        return parse_threads(o->cmd, opt, val, &o->threads);
    case CR_OPT_WRITE_THREADS: {
        unsigned t;
        return parse_threads(o->cmd, opt, val, &t);
    }
    case CR_OPT_PART: {
        unsigned i = 0, n = 0;
        int end = 0;
        if (sscanf(val, "%u/%u%n", &i, &n, &end) != 2 || val[end] || !n || i < 1 || i > n || n > CR_LIMIT_SHARDS ||
            !strchr("123456789", val[0]))
            return bad_value(o, opt, "I/N, a part I from 1 to N (such as 2/8)", val);
        o->part = i;
        o->n_parts = n;
        break;
    }
    case CR_OPT_MAX_MEMORY:
        if (!cr_cli_parse_size(val, &o->max_memory)) return bad_value(o, opt, "a size like 8G", val);
        break;
    case CR_OPT_NO_PASS: {
        int p = cr_pass_find(val);
        if (p < 0 || !cr_pass_optional((cr_pass_id)p)) {
            fprintf(stderr, "crucible %s: --no-pass=%s: not a pass that can be switched off (%s)\n", o->cmd, val,
                    pass_list(true, buf, sizeof buf));
            return false;
        }
        o->disabled_passes |= 1u << p;
        break;
    }
    case CR_OPT_DUMP:
        if (cr_pass_find(val) < 0) {
            fprintf(stderr, "crucible %s: --dump=%s: unknown pass (%s)\n", o->cmd, val, pass_list(false, buf, sizeof buf));
            return false;
        }
        o->dump = val;
        break;
    default: break;   /* NOOP, or read by the command from o->val */
    }
    return true;
}

/* ---- parsing and help -------------------------------------------------------- */

static void print_usage(cr_cli_cmd cmd, FILE *out)
{
    fprintf(out, "usage: crucible %s\n", commands[cmd].usage);
}

static void help(cr_cli_cmd cmd, FILE *out);

bool cr_cli_parse(cr_cli_cmd cmd, int argc, char **argv, cr_cli_options *o)
{
    memset(o, 0, sizeof *o);
    o->cmd = commands[cmd].name;
    o->out_shard_size = 5000000000ull;
    o->copy_tokenizer = o->write_card = true;
    char buf[200];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1]) {
            if (o->n_pos < commands[cmd].n_pos) {
                o->pos[o->n_pos++] = a;
                continue;
            }
            fprintf(stderr, "crucible %s: unexpected argument '%s'\n", o->cmd, a);
            print_usage(cmd, stderr);
            return false;
        }
        bool neg;
        const char *val;
        /* -vv, -vvv: click's cluster of mergekit's counted -v */
        if (a[1] == 'v' && a[2] && strspn(a + 1, "v") == strlen(a + 1)) {
            int v = find_option(cmd, "-v", &neg, &val);
            if (v >= 0) {
                for (const char *c = a + 1; *c; c++) apply(o, v, "-v", false, NULL);
                o->val[v] = "";
                continue;
            }
        }
        int id = find_option(cmd, a, &neg, &val);
        if (id < 0) {
            fprintf(stderr, "crucible %s: unknown option '%s'\n", o->cmd, a);
            print_usage(cmd, stderr);
            fprintf(stderr, "`crucible %s --help` lists its options\n", o->cmd);
            return false;
        }
        const option *op = &options[id];
        char name[64];   /* the name as typed, without "=VALUE" */
        snprintf(name, sizeof name, "%.*s", (int)strcspn(a, "="), a);
        /* before its value: a refused option needs none */
        if (op->kind == REFUSED) {
            fprintf(stderr, "crucible %s: %s is not supported (%s)\n", o->cmd, name, op->help);
            return false;
        }
        if (op->value && !val) {
            /* "--threads --quiet": the next word is another option, not the value */
            const char *next = i + 1 < argc ? argv[i + 1] : NULL;
            if (!next || (next[0] == '-' && next[1] == '-' && next[2])) {
                fprintf(stderr, "crucible %s: %s needs a value (%s)\n", o->cmd, name, value_what(id, buf, sizeof buf));
                return false;
            }
            val = argv[++i];
        }
        if (id == CR_OPT_HELP) {
            help(cmd, stdout);
            exit(0);
        }
        o->val[id] = val ? val : "";
        if (!apply(o, id, name, neg, val)) return false;
    }
    if (o->n_pos < commands[cmd].n_pos) {
        print_usage(cmd, stderr);
        fprintf(stderr, "`crucible %s --help` lists its options\n", o->cmd);
        return false;
    }
    return true;
}

static void help(cr_cli_cmd cmd, FILE *out)
{
    print_usage(cmd, out);
    fputs(commands[cmd].about, out);
    char buf[200];
    /* mergekit's options first (as mergekit-yaml --help lists them), then crucible's */
    for (int pass = 0; pass < 2; pass++) {
        bool mk = pass == 0, any = false;
        if (mk && !commands[cmd].mk_title) continue;
        for (int i = 0; i < CR_OPT_COUNT; i++) {
            const option *op = &options[i];
            if (!(op->cmds & (1u << cmd)) || (op->kind != OWN) != mk) continue;
            if (!any) {
                fprintf(out, "\n%s:\n", mk ? commands[cmd].mk_title : commands[cmd].mk_title ? "crucible's options" : "options");
                any = true;
            }
            /* "--[no-]copy-tokenizer", "--threads N, -j N, --num-threads N" */
            char names[160];
            size_t n = 0;
            for (const char *p = op->names; *p && n < sizeof names;) {
                size_t k = strcspn(p, "|");
                bool first = p == op->names;
                n += (size_t)snprintf(names + n, sizeof names - n, "%s%s%.*s%s%s", first ? "" : ", ",
                                      first && op->neg ? "--[no-]" : "", (int)(first && op->neg ? k - 2 : k),
                                      first && op->neg ? p + 2 : p, op->value ? " " : "", op->value ? op->value : "");
                p += k + (p[k] == '|');
            }
            /* a long name gets its own line, the description below it */
            if (strlen(names) > 28) fprintf(out, "  %s\n  %-28s %s", names, "", op->help);
            else fprintf(out, "  %-28s %s", names, op->help);
            if (op->kind == NOOP) fputs(" (accepted; changes nothing here)", out);
            if (op->kind == REFUSED) fputs(" (refused)", out);
            if (i == CR_OPT_NO_PASS || i == CR_OPT_DUMP) fprintf(out, "; %s", value_what(i, buf, sizeof buf) + 2);
            if (op->dflt) fprintf(out, " [default: %s]", op->dflt);
            fputc('\n', out);
        }
    }
}

/* The options' part of the pipeline's: o's recipe with its flags. */
int cr_cli_compile(const cr_cli_options *o, bool header_only, const char *out_dir, bool inputs,
                   cr_compile_result *r)
{
    cr_pipeline_options po = {
        .path = o->pos[0], .models_dir = o->models_dir, .methods_dir = o->methods_dir,
        .header_only = header_only, .allow_crimes = o->allow_crimes,
        .has_lora_merge_dtype = o->lora_merge_dtype != 0, .lora_merge_dtype = (cr_dtype)(o->lora_merge_dtype - 1),
        .compile = { .precise = o->precise, .seed = o->seed, .mk_version = (cr_mk_version)o->mk_version,
                     .unsafe_truncate_embeddings = o->unsafe_truncate_embeddings, .max_shard_bytes = o->out_shard_size,
                     .disabled = o->disabled_passes, .dump = o->dump, .dump_out = stdout },
        .copy_tokenizer = o->copy_tokenizer, .write_card = o->write_card, .out_dir = out_dir,
        .moe_layout = (cr_moe_layout)o->moe_layout, .gate_f32 = o->gate_f32,
        .moe_same_source = o->moe_same_source, .threads = o->threads, .collect_inputs = inputs,
        .recipe_text = true,
        .diags_out = stderr };
    cr_error err = {0};
    cr_status st = cr_compile(&po, r, &err);
    if (!st) return 0;
    bool moe = r->kind == CR_SOURCE_MOE;
    int rc = 1;
    switch (r->failed) {
    case CR_STAGE_SETUP:
        fprintf(stderr, "crucible %s: %s\n", o->cmd, err.msg);
        rc = 2;
        break;
    case CR_STAGE_FRONTEND:
        /* the diagnostics say it, unless there are none (or a MoE failed past its checks) */
        if (!r->diags.n_errors || (moe && st != CR_ERR_CONFIG)) fprintf(stderr, "crucible %s: %s\n", o->cmd, err.msg);
        if (moe) rc = st == CR_ERR_CONFIG || st == CR_ERR_UNSUPPORTED ? 2 : 1;
        else rc = st == CR_ERR_NOMEM || st == CR_ERR_IO ? 1 : 2;
        break;
    case CR_STAGE_MIDDLE:
        fprintf(stderr, "%s: error: %s\n", o->pos[0], err.msg);
        rc = st == CR_ERR_CONFIG || st == CR_ERR_UNSUPPORTED ? 2 : 1;
        break;
    case CR_STAGE_FINISH:
        fprintf(stderr, "crucible %s: %s\n", o->cmd, err.msg);
        break;
    }
    cr_compile_result_free(r);
    return rc;
}
