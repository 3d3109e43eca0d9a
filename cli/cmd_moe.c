/* cmd_moe.c — `crucible moe CONFIG OUT_DIR`: mergekit-moe. The config is
 * compiled into a program (compiler/moe.h: tensor map, router gates computed
 * at compile time, casts) and run on the VM like a merge, so the output
 * directory appears atomically or not at all. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "moe_config.h"
#include "options.h"
#include "outdir.h"
#include "outguard.h"
#include "run_program.h"

int cr_cmd_moe(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_MOE, argc, argv, &o)) return 2;
    if (!cr_moe_file_is_moe(cr_default_allocator(), o.pos[0])) {
        fprintf(stderr, "crucible moe: %s is not a mergekit-moe config (it needs `experts` and no "
                        "`merge_method`); for merges use `crucible merge`\n", o.pos[0]);
        return 2;
    }
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
    rc = cr_cli_run_program(&r.program, &vo, "moe");
    cr_compile_result_free(&r);
    return rc;
}
