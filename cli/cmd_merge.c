/* cmd_merge.c — `crucible merge CONFIG OUT_DIR`: compile the recipe and run
 * it on the VM. Accepts mergekit-yaml's options with their meaning. */
#include <string.h>

#include "commands.h"
#include "options.h"
#include "run_program.h"

static const char usage[] =
    "usage: crucible merge CONFIG OUT_DIR [options]\n"
    "  mergekit-yaml options: --out-shard-size SIZE  --random-seed N  --[no-]copy-tokenizer\n"
    "    --allow-crimes  --[no-]write-model-card  --lazy-unpickle  --clone-tensors  -v  --quiet\n"
    "  crucible options: --threads N  --max-memory SIZE  --models-dir DIR  --methods DIR\n"
    "    --precise  --force  --no-pass=fold|cse|dce|fuse\n";

int cr_cmd_merge(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(argc, argv, 2, usage, &o)) return 2;
    cr_plan plan;
    cr_graph g;
    cr_program prog;
    int rc = cr_cli_compile(&o, false, o.pos[1], &plan, &g, &prog);
    if (rc) return rc;
    cr_graph_free(&g);
    cr_vm_options vo;
    cr_vm_options_init(&vo);
    vo.out_dir = o.pos[1];
    vo.force = o.force;
    vo.threads = o.threads;
    vo.max_memory = o.max_memory;
    vo.quiet = o.quiet;
    vo.skip_hash = true;   /* just compiled from the same files */
    rc = cr_cli_run_program(&prog, &vo, "merge");
    cr_program_free(&prog);
    cr_plan_free(&plan);
    return rc;
}
