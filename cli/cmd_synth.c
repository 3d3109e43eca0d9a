/* cmd_synth.c — `crucible synth`: writes a deterministic synthetic model
 * (or a seeded fine-tune of one) through formats/synth.c. The directory appears
 * complete or not at all (formats/outdir.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "options.h"
#include "shards.h"
#include "outdir.h"
#include "run_program.h"
#include "outguard.h"
#include "synth.h"

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
    cr_cli_options co;
    if (!cr_cli_parse(CR_CMD_SYNTH, argc, argv, &co)) return 2;
    const char *out = co.pos[0];
    cr_synth_opts o = {.arch = CR_SYNTH_LLAMA, .dtype = CR_DTYPE_BF16, .shard_size = co.shard_size,
                       .seed = co.seed, .tied = co.val[CR_OPT_TIED] != NULL,
                       .from = co.val[CR_OPT_FROM], .only = co.val[CR_OPT_ONLY]};
    const struct { cr_cli_opt id; uint32_t *dst; } dims[] = {
        { CR_OPT_LAYERS, &o.layers }, { CR_OPT_HIDDEN, &o.hidden }, { CR_OPT_INTERMEDIATE, &o.intermediate },
        { CR_OPT_HEADS, &o.heads }, { CR_OPT_KV_HEADS, &o.kv_heads }, { CR_OPT_VOCAB, &o.vocab },
    };
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++) {
        const char *v = co.val[dims[i].id];
        if (v && !parse_u32(v, dims[i].dst)) {
            const char *name = cr_cli_option_names(dims[i].id);
            fprintf(stderr, "crucible synth: %.*s '%s' is not a non-negative integer\n", (int)strcspn(name, "|"), name, v);
            return 2;
        }
    }
    const char *v = co.val[CR_OPT_ARCH];
    if (v && !cr_synth_arch_parse(v, &o.arch)) {
        fprintf(stderr, "crucible synth: unknown --arch '%s' (llama, mistral, qwen2, qwen3)\n", v);
        return 2;
    }
    if ((v = co.val[CR_OPT_DTYPE]) && (!cr_dtype_parse_torch(v, &o.dtype) ||
        (o.dtype != CR_DTYPE_BF16 && o.dtype != CR_DTYPE_F16 && o.dtype != CR_DTYPE_F32))) {
        fprintf(stderr, "crucible synth: --dtype '%s' (bfloat16, float16, float32)\n", v);
        return 2;
    }
    if ((v = co.val[CR_OPT_DELTA_SCALE])) {
        char *end;
        o.delta_scale = strtod(v, &end);
        if (!*v || *end) { fprintf(stderr, "crucible synth: --delta-scale '%s' is not a number\n", v); return 2; }
    }
    if (o.from && !co.val[CR_OPT_DELTA_SCALE]) { fprintf(stderr, "crucible synth: --from needs --delta-scale\n"); return 2; }
    if (!o.from && !co.val[CR_OPT_ARCH]) { fprintf(stderr, "crucible synth: --arch is required (or --from BASE_DIR)\n"); return 2; }

    cr_error err = {0};
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
