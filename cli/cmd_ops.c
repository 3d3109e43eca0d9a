/* cmd_ops.c — `crucible ops [--markdown]`: the VM's op table, as a plain
 * list or as the markdown of spec/opcodes.md. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "vm.h"

int cr_cmd_ops(int argc, char **argv)
{
    bool md = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--markdown")) md = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: crucible ops [--markdown]\n  the VM's op table (--markdown: spec/opcodes.md)\n");
            return 0;
        } else {
            fprintf(stderr, "crucible ops: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (md) { cr_ops_markdown(stdout); return 0; }
    for (int i = 0; i < CR_OP_COUNT; i++) {
        const cr_op_info *o = &cr_op_table[i];
        const char *ctx = o->ctx == CR_CTX_KERNEL ? "kernel" : o->ctx == CR_CTX_TOP ? "top" : "both";
        printf("%-12s %-6s %s  %s\n", o->name, ctx, o->kinds, o->synopsis);
    }
    return 0;
}
