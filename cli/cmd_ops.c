/* cmd_ops.c — `crucible ops [--markdown]`: the VM's op table, as a plain
 * list or as the markdown of spec/opcodes.md. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "options.h"
#include "vm.h"

int cr_cmd_ops(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_OPS, argc, argv, &o)) return 2;
    bool md = o.val[CR_OPT_MARKDOWN] != NULL;
    if (md) { cr_ops_markdown(stdout); return 0; }
    for (int i = 0; i < CR_OP_COUNT; i++) {
        const cr_op_info *o = &cr_op_table[i];
        const char *ctx = o->ctx == CR_CTX_KERNEL ? "kernel" : o->ctx == CR_CTX_TOP ? "top" : "both";
        printf("%-12s %-6s %s  %s\n", o->name, ctx, o->kinds, o->synopsis);
    }
    return 0;
}
