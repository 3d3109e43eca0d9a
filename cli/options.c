/* options.c — shared option parsing and the compile pipeline of the
 * recipe-taking commands (merge, plan, explain, compile). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "aux_files.h"
#include "compile.h"
#include "frontend.h"
#include "lua_recipe.h"
#include "moe.h"
#include "outguard.h"
#include "shards.h"

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

/* Every option of every command that takes a value, with what the value
 * is: one table, so that a missing value is reported the same way by each
 * command's parser. */
static const struct { const char *name, *what; } value_options[] = {
    { "--threads", "a number of threads" },     { "-j", "a number of threads" },
    { "--num-threads", "a number of threads" }, { "--max-memory", "a size such as 8G" },
    { "--out-shard-size", "a size such as 5B or 2G" }, { "--random-seed", "an integer" },
    { "--models-dir", "a directory" },          { "--methods", "a directory" },
    { "-o", "a file name" },                    { "--output", "a file name" },
    { "--no-pass", "a pass: fold, cse, dce or fuse" },
    { "--dump", "a pass: build, verify, fold, cse, dce or fuse" },
    { "--moe-layout", "classic or fused" },     { "--gate-precision", "bf16 or f32" },
    { "--device", "a device name" },            { "--text", "a text file" },
    { "--max-tokens", "a number of tokens" },
};

const char *cr_cli_value_what(const char *opt)
{
    for (size_t i = 0; i < sizeof value_options / sizeof *value_options; i++)
        if (!strcmp(opt, value_options[i].name)) return value_options[i].what;
    return NULL;
}

bool cr_cli_has_value(const char *cmd, int argc, char **argv, int i)
{
    const char *what = cr_cli_value_what(argv[i]);
    if (!what) return true;
    /* "--threads --quiet": the next word is another option, not the value */
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (next && !(next[0] == '-' && next[1] == '-' && next[2])) return true;
    fprintf(stderr, "crucible %s: %s needs a value (%s)\n", cmd, argv[i], what);
    return false;
}

bool cr_cli_parse_threads(const char *cmd, const char *opt, const char *val, unsigned max, unsigned *out)
{
    uint64_t t = 0;
    bool digits = val[0] != 0;
    for (const char *p = val; *p && digits; p++) digits = *p >= '0' && *p <= '9';
    /* strtoull saturates, so a 30-digit count is "too many", not wrapped */
    if (digits) t = strtoull(val, NULL, 10);
    if (!digits || t < 1 || t > max) {
        fprintf(stderr, "crucible %s: %.*s wants a whole number of threads from 1 to %u (leave it out to use all cores), got '%s'\n",
                cmd, (int)strcspn(opt, "="), opt, max, val);
        return false;
    }
    *out = (unsigned)t;
    return true;
}

bool cr_cli_parse(int argc, char **argv, int n_positional, const char *usage, cr_cli_options *o)
{
    memset(o, 0, sizeof *o);
    o->cmd = argv[0];
    o->out_shard_size = 5000000000ull;
    o->copy_tokenizer = o->write_card = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
#define TAKES(name) ((!strcmp(a, name) && i + 1 < argc && (val = argv[++i])) || \
                     (!strncmp(a, name "=", strlen(name) + 1) && (val = a + strlen(name) + 1)))
        if (!cr_cli_has_value(o->cmd, argc, argv, i)) return false;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { printf("%s", usage); exit(0); }
        else if (!strcmp(a, "--copy-tokenizer")) o->copy_tokenizer = true;
        else if (!strcmp(a, "--no-copy-tokenizer")) o->copy_tokenizer = false;
        else if (!strcmp(a, "--write-model-card")) o->write_card = true;
        else if (!strcmp(a, "--no-write-model-card")) o->write_card = false;
        else if (!strcmp(a, "--allow-crimes")) o->allow_crimes = true;
        else if (!strcmp(a, "--no-allow-crimes")) o->allow_crimes = false;
        else if (!strcmp(a, "--lazy-unpickle") || !strcmp(a, "--no-lazy-unpickle") ||
                 !strcmp(a, "--clone-tensors") || !strcmp(a, "--no-clone-tensors")) {
            /* no numeric effect in mergekit; accepted for compatibility */
        }
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) o->verbose++;
        else if (!strcmp(a, "--quiet")) o->quiet = true;
        else if (!strcmp(a, "--precise")) o->precise = true;
        else if (!strcmp(a, "--force")) o->force = true;
        else if (!strcmp(a, "--require-hash")) o->require_hash = true;
        else if (!strcmp(a, "--i-understand-this-is-not-useful-without-training")) o->moe_same_source = true;
        else if (TAKES("--moe-layout")) {
            if (!strcmp(val, "classic")) o->moe_layout = CR_MOE_LAYOUT_CLASSIC;
            else if (!strcmp(val, "fused")) o->moe_layout = CR_MOE_LAYOUT_FUSED;
            else { fprintf(stderr, "crucible %s: --moe-layout wants classic or fused, got '%s'\n", o->cmd, val); return false; }
        }
        else if (TAKES("--gate-precision")) {
            if (!strcmp(val, "bf16")) o->gate_f32 = false;
            else if (!strcmp(val, "f32")) o->gate_f32 = true;
            else { fprintf(stderr, "crucible %s: --gate-precision wants bf16 or f32, got '%s'\n", o->cmd, val); return false; }
        }
        else if (TAKES("--out-shard-size")) {
            cr_error err;
            if (cr_parse_shard_size(val, &o->out_shard_size, &err)) {
                fprintf(stderr, "crucible %s: --out-shard-size: %s\n", o->cmd, err.msg);
                return false;
            }
        } else if (TAKES("--random-seed")) {
            if (!parse_u64(val, &o->seed)) { fprintf(stderr, "crucible %s: --random-seed wants an integer, got '%s'\n", o->cmd, val); return false; }
            o->have_seed = true;
        } else if (TAKES("--threads") || TAKES("-j") || TAKES("--num-threads")) {
            if (!cr_cli_parse_threads(o->cmd, a, val, CR_CLI_MAX_THREADS, &o->threads)) return false;
        } else if (TAKES("--max-memory")) {
            if (!cr_cli_parse_size(val, &o->max_memory)) { fprintf(stderr, "crucible %s: --max-memory wants a size like 8G, got '%s'\n", o->cmd, val); return false; }
        } else if (TAKES("--models-dir")) o->models_dir = val;
        else if (TAKES("--methods")) o->methods_dir = val;
        else if (TAKES("-o") || TAKES("--output")) o->output = val;
        else if (TAKES("--no-pass")) {
            int p = cr_pass_find(val);
            if (p < 0 || !cr_pass_optional((cr_pass_id)p)) {
                fprintf(stderr, "crucible %s: --no-pass=%s: not a pass that can be switched off (fold, cse, dce, fuse)\n", o->cmd, val);
                return false;
            }
            o->disabled_passes |= 1u << p;
        } else if (TAKES("--dump")) {
            if (cr_pass_find(val) < 0) {
                fprintf(stderr, "crucible %s: --dump=%s: unknown pass (build, verify, fold, cse, dce, fuse)\n", o->cmd, val);
                return false;
            }
            o->dump = val;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "crucible %s: unknown option '%s'\n%s", o->cmd, a, usage);
            return false;
        } else if (o->n_pos < n_positional) {
            o->pos[o->n_pos++] = a;
        } else {
            fprintf(stderr, "crucible %s: unexpected argument '%s'\n%s", o->cmd, a, usage);
            return false;
        }
#undef TAKES
    }
    if (o->n_pos != n_positional) {
        fprintf(stderr, "%s", usage);
        return false;
    }
    return true;
}

static int compile_moe(const cr_cli_options *o, const char *out_dir, cr_graph *g, cr_program *prog)
{
    const cr_allocator *al = cr_default_allocator();
    cr_error err = {0};
    cr_diags diags;
    cr_diags_init(&diags, al);
    cr_moe_config cfg;
    cr_status st = cr_moe_config_load(al, o->pos[0], &cfg, &diags, &err);
    cr_moe_options mo = { .models_dir = o->models_dir, .seed = o->seed, .layout = (cr_moe_layout)o->moe_layout,
                          .allow_same_source = o->moe_same_source, .copy_tokenizer = o->copy_tokenizer,
                          .write_card = o->write_card, .out_path = out_dir, .threads = o->threads, .gate_f32 = o->gate_f32,
                          .compile = { .precise = o->precise, .seed = o->seed, .max_shard_bytes = o->out_shard_size,
                                       .disabled = o->disabled_passes, .dump = o->dump, .dump_out = stdout } };
    if (!st) st = cr_moe_compile(al, &cfg, &mo, g, prog, &diags, &err);
    cr_diags_print(&diags, stderr);
    if (st && (!diags.n_errors || (st != CR_ERR_CONFIG)))
        fprintf(stderr, "crucible %s: %s\n", o->cmd, err.msg);
    int rc = !st ? 0 : st == CR_ERR_CONFIG || st == CR_ERR_UNSUPPORTED ? 2 : 1;
    cr_moe_config_free(&cfg);
    cr_diags_free(&diags);
    if (rc) cr_graph_free(g);
    return rc;
}

typedef struct collect { cr_input_paths *ip; cr_status st; cr_error *err; } collect;

static void collect_method(void *ud, const char *path)
{
    collect *c = ud;
    if (!c->st) c->st = cr_input_paths_add(c->ip, path, CR_INPUT_PATH_FILE, c->err);
}

/* every path compiling read: the recipe, method files, model directories */
static int collect_inputs(const cr_cli_options *o, const cr_method_registry *methods, const cr_plan *plan,
                          cr_input_paths *ip)
{
    cr_error err = {0};
    collect c = { ip, cr_input_paths_add(ip, o->pos[0], CR_INPUT_PATH_FILE, &err), &err };
    if (methods) cr_methods_each_file(methods, collect_method, &c);
    for (uint32_t i = 0; plan && i < plan->n_models && !c.st; i++)
        if (plan->models[i].stage < 0 && plan->models[i].path)
            c.st = cr_input_paths_add(ip, plan->models[i].path, CR_INPUT_PATH_DIR, &err);
    if (!c.st) return 0;
    fprintf(stderr, "crucible %s: %s\n", o->cmd, err.msg);
    return 1;
}

int cr_cli_compile(const cr_cli_options *o, bool header_only, const char *out_dir,
                   cr_plan *plan, cr_graph *g, cr_program *prog, cr_input_paths *inputs)
{
    if (cr_moe_file_is_moe(cr_default_allocator(), o->pos[0])) {
        memset(plan, 0, sizeof *plan);
        cr_graph_init(g, cr_default_allocator());
        int rc = compile_moe(o, out_dir, g, prog);
        /* the experts' directories come with the program's manifest */
        if (!rc && inputs && (rc = collect_inputs(o, NULL, NULL, inputs))) { cr_program_free(prog); cr_graph_free(g); }
        return rc;
    }
    const cr_allocator *al = cr_default_allocator();
    cr_error err = {0};
    cr_method_registry *methods = NULL;
    cr_diags diags;
    cr_diags_init(&diags, al);
    memset(plan, 0, sizeof *plan);
    cr_graph_init(g, al);
    int rc = 0;
    if (cr_methods_open(al, o->methods_dir, &methods, &err)) {
        fprintf(stderr, "crucible %s: %s\n", o->cmd, err.msg);
        rc = 2;
        goto fail;
    }
    cr_frontend_options fo = { .models_dir = o->models_dir, .methods = methods,
                               .header_only = header_only, .allow_crimes = o->allow_crimes };
    cr_status st = cr_frontend_recipe(al, o->pos[0], &fo, plan, &diags, &err);
    cr_diags_print(&diags, stderr);
    if (st) {
        if (!diags.n_errors) fprintf(stderr, "crucible %s: %s\n", o->cmd, err.msg);
        rc = st == CR_ERR_NOMEM || st == CR_ERR_IO ? 1 : 2;
        goto fail;
    }
    cr_compile_options co = { .precise = o->precise, .seed = o->seed, .max_shard_bytes = o->out_shard_size,
                              .disabled = o->disabled_passes, .dump = o->dump, .dump_out = stdout };
    if ((st = cr_compile_plan(plan, methods, &co, g, prog, &err))) {
        fprintf(stderr, "%s: error: %s\n", o->pos[0], err.msg);
        rc = st == CR_ERR_CONFIG || st == CR_ERR_UNSUPPORTED ? 2 : 1;
        goto fail;
    }
    cr_aux_options ao = { .copy_tokenizer = o->copy_tokenizer, .write_card = o->write_card,
                          .out_path = out_dir };
    if ((st = cr_program_add_aux(prog, plan, &ao, &err)) || (st = cr_program_verify(prog, &err))) {
        fprintf(stderr, "crucible %s: %s\n", o->cmd, err.msg);
        cr_program_free(prog);
        rc = 1;
        goto fail;
    }
    if (inputs && (rc = collect_inputs(o, methods, plan, inputs))) {
        cr_program_free(prog);
        goto fail;
    }
    cr_methods_close(methods);
    cr_diags_free(&diags);
    return 0;
fail:
    cr_methods_close(methods);
    cr_diags_free(&diags);
    cr_plan_free(plan);
    cr_graph_free(g);
    return rc;
}
