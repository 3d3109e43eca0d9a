/* cmd_run.c — `crucible run RECIPE.crb OUT_DIR`: load (and verify) a
 * compiled program, find its input models on this machine (--models-dir,
 * $CRUCIBLE_MODELS, the Hugging Face cache, --input NAME=DIR: as `merge`
 * finds a recipe's, compiler/bind.h) and run it (cli/run_program.h:
 * SIGINT/SIGTERM stop it cleanly, removing its temporary directory, exit
 * 130). With --part I/N only that part's shards are computed, into OUT_DIR
 * shared with the other parts (vm/part.h, formats/parts.h). */
#include <stdio.h>
#include <string.h>

#include "bind.h"
#include "commands.h"
#include "options.h"
#include "outdir.h"
#include "outguard.h"
#include "run_program.h"

int cr_cmd_run(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_RUN, argc, argv, &o)) return 2;
    const char *crb = o.pos[0], *out = o.pos[1];
    cr_vm_options opt;
    cr_vm_options_init(&opt);
    opt.quiet = o.quiet;
    opt.force = o.force;
    opt.skip_hash = o.skip_hash;
    opt.no_read_ahead = o.no_read_ahead;
    opt.no_output_stream = o.no_output_stream;
    opt.threads = o.threads;
    opt.max_memory = o.max_memory;
    opt.part = o.part;
    opt.n_parts = o.n_parts;

    cr_program p;
    cr_error err = {0};
    bool gguf = cr_cli_gguf_wanted(&o, out);
    if ((!gguf && cr_outdir_check(out, &err)) || cr_program_load(cr_default_allocator(), crb, &p, &err)) {
        fprintf(stderr, "crucible run: %s\n", err.msg);
        return 1;
    }
    /* a reference is looked up as it would be from a recipe where the
     * .crb is (beside it first), so a folder shipped with its models works */
    cr_arena ar;
    cr_arena_init(&ar, cr_default_allocator());
    cr_resolve_env env;
    cr_resolve_env_init(&env, &ar, crb, o.models_dir, true);
    cr_bind_override ov[CR_CLI_MAX_INPUTS];
    for (int i = 0; i < o.n_input_args; i++) {
        const char *eq = strchr(o.input_args[i], '=');
        ov[i].name = cr_arena_strndup(&ar, o.input_args[i], (size_t)(eq - o.input_args[i]));
        ov[i].path = eq + 1;
    }
    /* the .crb is an input too: OUT_DIR must not replace or contain it */
    cr_input_paths inputs;
    cr_input_paths_init(&inputs, cr_default_allocator());
    int rc = 1;
    if (cr_program_bind_models(&p, &env, &ar, ov, (size_t)o.n_input_args, &err) ||
        cr_input_paths_add(&inputs, crb, CR_INPUT_PATH_FILE, &err)) {
        fprintf(stderr, "crucible run: %s\n", err.msg);
    } else {
        opt.out_dir = out;
        opt.inputs = &inputs;
        cr_gguf_hf_opts g;
        if (gguf) {   /* OUT.gguf: written as `convert` would write the directory OUT */
            rc = cr_cli_gguf_prepare(&o, &p, &g);
            opt.gguf = &g;
        }
        if (!rc || !gguf) rc = cr_cli_run_program(&p, &opt, "run");
    }
    cr_input_paths_free(&inputs);
    cr_program_free(&p);
    cr_arena_free(&ar);
    return rc;
}
