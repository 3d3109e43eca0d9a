/* cmd_synth.c — `crucible synth`: writes a deterministic synthetic model
 * (or a seeded fine-tune of one) through vm/synth.c. The directory appears
 * complete or not at all (vm/outdir.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "shards.h"
#include "outdir.h"
#include "run_program.h"
#include "outguard.h"
#include "synth.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: crucible synth OUT_DIR --arch llama|mistral|qwen2 --layers N --hidden H\n"
            "           --intermediate I --heads A --kv-heads K --vocab V\n"
            "           [--dtype bfloat16|float16|float32] [--seed S] [--tied] [--shard-size SIZE]\n"
            "       crucible synth OUT_DIR --from BASE_DIR --delta-scale X [--seed S] [--only SUBSTRING]\n"
            "           [--shard-size SIZE]\n"
            "Every weight is a function of (seed, tensor name, element index).\n");
}

static bool parse_u32(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || !*s || *end || s[0] == '-' || v > 0xffffffffUL) return false;
    *out = (uint32_t)v;
    return true;
}

int cr_cmd_synth(int argc, char **argv)
{
    cr_synth_opts o = {.arch = CR_SYNTH_LLAMA, .dtype = CR_DTYPE_BF16, .shard_size = 0};
    const char *out = NULL;
    bool have_arch = false, have_delta = false;
    cr_error err = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--tied")) { o.tied = true; continue; }
        if (a[0] != '-') {
            if (out) { fprintf(stderr, "crucible synth: unexpected argument '%s'\n", a); return 2; }
            out = a;
            continue;
        }
        if (i + 1 >= argc) { fprintf(stderr, "crucible synth: %s needs a value\n", a); return 2; }
        const char *v = argv[++i];
        uint32_t *dim = !strcmp(a, "--layers") ? &o.layers : !strcmp(a, "--hidden") ? &o.hidden
                      : !strcmp(a, "--intermediate") ? &o.intermediate : !strcmp(a, "--heads") ? &o.heads
                      : !strcmp(a, "--kv-heads") ? &o.kv_heads : !strcmp(a, "--vocab") ? &o.vocab : NULL;
        if (dim) {
            if (!parse_u32(v, dim)) { fprintf(stderr, "crucible synth: %s '%s' is not a non-negative integer\n", a, v); return 2; }
        } else if (!strcmp(a, "--arch")) {
            if (!cr_synth_arch_parse(v, &o.arch)) { fprintf(stderr, "crucible synth: unknown --arch '%s' (llama, mistral, qwen2)\n", v); return 2; }
            have_arch = true;
        } else if (!strcmp(a, "--dtype")) {
            if (!cr_dtype_parse_torch(v, &o.dtype) ||
                (o.dtype != CR_DTYPE_BF16 && o.dtype != CR_DTYPE_F16 && o.dtype != CR_DTYPE_F32)) {
                fprintf(stderr, "crucible synth: --dtype '%s' (bfloat16, float16, float32)\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            o.seed = strtoull(v, &end, 10);
            if (errno || !*v || *end || v[0] == '-') { fprintf(stderr, "crucible synth: --seed '%s' is not an integer\n", v); return 2; }
        } else if (!strcmp(a, "--shard-size")) {
            if (cr_parse_shard_size(v, &o.shard_size, &err) != CR_OK) { fprintf(stderr, "crucible synth: %s\n", err.msg); return 2; }
        } else if (!strcmp(a, "--from")) {
            o.from = v;
        } else if (!strcmp(a, "--delta-scale")) {
            char *end;
            o.delta_scale = strtod(v, &end);
            if (!*v || *end) { fprintf(stderr, "crucible synth: --delta-scale '%s' is not a number\n", v); return 2; }
            have_delta = true;
        } else if (!strcmp(a, "--only")) {
            o.only = v;
        } else {
            fprintf(stderr, "crucible synth: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!out) { usage(stderr); return 2; }
    if (o.from && !have_delta) { fprintf(stderr, "crucible synth: --from needs --delta-scale\n"); return 2; }
    if (!o.from && !have_arch) { fprintf(stderr, "crucible synth: --arch is required (or --from BASE_DIR)\n"); return 2; }

    /* --from BASE_DIR is read: the output must not overlap it (outguard.h) */
    cr_input_paths inputs;
    cr_input_paths_init(&inputs, cr_default_allocator());
    cr_status st = o.from ? cr_input_paths_add(&inputs, o.from, CR_INPUT_PATH_DIR, &err) : CR_OK;
    cr_outdir od;
    cr_cli_signals sigs;   /* SIGINT/TERM/HUP: the temporary directory is removed */
    o.interrupt = cr_cli_signals_begin(&sigs);
    cr_outdir_options oo = { .inputs = &inputs };
    if (st == CR_OK) st = cr_outdir_begin(cr_default_allocator(), out, &oo, &od, &err);
    cr_input_paths_free(&inputs);
    if (st == CR_OK) {
        st = cr_synth_write(cr_default_allocator(), od.tmp_path, &o, &err);
        if (st == CR_OK && *o.interrupt) st = cr_fail(&err, CR_ERR_INTERRUPTED, "interrupted");
        if (st == CR_OK) st = cr_outdir_commit(&od, &err);
        cr_outdir_abort(&od);
        cr_outdir_free(&od);
    }
    cr_cli_signals_end(&sigs);
    if (st != CR_OK) {
        fprintf(stderr, "crucible synth: %s\n", err.msg);
        return st == CR_ERR_INTERRUPTED ? 130 : 1;
    }
    return 0;
}
