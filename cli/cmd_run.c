/* cmd_run.c — `crucible run RECIPE.crb OUT_DIR`: load (and verify) a
 * compiled program and run it (cli/run_program.h: SIGINT/SIGTERM stop it
 * cleanly, removing its temporary directory, exit 130). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "options.h"
#include "outdir.h"
#include "outguard.h"
#include "run_program.h"

static int usage(FILE *f)
{
    fprintf(f, "usage: crucible run RECIPE.crb OUT_DIR [--threads N] [--max-memory SIZE] [--quiet] [--force] [--skip-hash]\n"
               "  run a compiled merge program; OUT_DIR appears complete or not at all\n"
               "  --threads N        worker threads (default: all cores)\n"
               "  --max-memory SIZE  bound on the VM's working memory (e.g. 8G); fewer threads if needed\n"
               "  --quiet            no progress output\n"
               "  --force            replace OUT_DIR if it exists and is not empty\n"
               "  --skip-hash        check input sizes only, not content hashes\n"
               "  CRUCIBLE_ISA=scalar|avx2|avx512 forces a kernel set\n");
    return f == stdout ? 0 : 2;
}

int cr_cmd_run(int argc, char **argv)
{
    const char *crb = NULL, *out = NULL;
    cr_vm_options opt;
    cr_vm_options_init(&opt);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout);
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) opt.quiet = true;
        else if (!strcmp(a, "--force")) opt.force = true;
        else if (!strcmp(a, "--skip-hash")) opt.skip_hash = true;
        else if (!cr_cli_has_value("run", argc, argv, i)) return 2;
        else if (!strcmp(a, "--threads") || !strcmp(a, "--max-memory")) {
            const char *v = argv[++i];
            if (!strcmp(a, "--threads")) {
                if (!cr_cli_parse_threads("run", a, v, CR_CLI_MAX_THREADS, &opt.threads)) return 2;
            } else if (!cr_cli_parse_size(v, &opt.max_memory)) {
                fprintf(stderr, "crucible run: --max-memory %s: expected a size like 8G or 512M\n", v);
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "crucible run: unknown option '%s'\n", a);
            return usage(stderr);
        } else if (!crb) crb = a;
        else if (!out) out = a;
        else { fprintf(stderr, "crucible run: unexpected argument '%s'\n", a); return usage(stderr); }
    }
    if (!crb || !out) return usage(stderr);

    cr_program p;
    cr_error err = {0};
    if (cr_outdir_check(out, &err) || cr_program_load(cr_default_allocator(), crb, &p, &err)) {
        fprintf(stderr, "crucible run: %s\n", err.msg);
        return 1;
    }
    /* the .crb is an input too: OUT_DIR must not replace or contain it */
    cr_input_paths inputs;
    cr_input_paths_init(&inputs, cr_default_allocator());
    int rc = 1;
    if (cr_input_paths_add(&inputs, crb, CR_INPUT_PATH_FILE, &err)) {
        fprintf(stderr, "crucible run: %s\n", err.msg);
    } else {
        opt.out_dir = out;
        opt.inputs = &inputs;
        rc = cr_cli_run_program(&p, &opt, "run");
    }
    cr_input_paths_free(&inputs);
    cr_program_free(&p);
    return rc;
}
