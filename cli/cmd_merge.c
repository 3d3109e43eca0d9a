/* cmd_merge.c — `crucible merge CONFIG OUT_DIR`: compile the recipe and run
 * it on the VM. Accepts mergekit-yaml's options with their meaning. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "options.h"
#include "outdir.h"
#include "outguard.h"
#include "run_program.h"

int cr_cmd_merge(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_MERGE, argc, argv, &o)) return 2;
    /* a bad OUT_DIR fails before compiling, not after the merge */
    cr_error err = {0};
    if (cr_outdir_check(o.pos[1], &err)) { fprintf(stderr, "crucible %s: %s\n", o.cmd, err.msg); return 1; }
    cr_compile_result r;   /* r.inputs: recipe, method files, model dirs: never the output */
    int rc = cr_cli_compile(&o, false, o.pos[1], true, &r);
    if (rc) return rc;
    cr_graph_free(&r.graph);
    cr_graph_init(&r.graph, cr_default_allocator());
    cr_vm_options vo;
    cr_vm_options_init(&vo);
    vo.out_dir = o.pos[1];
    vo.force = o.force;
    vo.threads = o.threads;
    vo.max_memory = o.max_memory;
    vo.quiet = o.quiet;
    vo.skip_hash = true;   /* just compiled from the same files */
    vo.inputs = &r.inputs;
    rc = cr_cli_run_program(&r.program, &vo, "merge");
    cr_compile_result_free(&r);
    return rc;
}
