/* cmd_assemble.c — `crucible assemble OUT_DIR`: finish a partitioned run
 * (formats/parts.h, spec/parts.md). Every part's manifest must be there and
 * of one program, every shard in place with its recorded size and hash;
 * then the index (with every shard's hash), config, tokenizer files and
 * model card are written as a single run writes them, and
 * OUT_DIR/crucible-parts is removed. Exit 0 when assembled, 1 when a part
 * is missing or damaged (each named), 2 on bad usage. */
#include <stdio.h>

#include "commands.h"
#include "options.h"
#include "parts.h"
#include "termtext.h"

int cr_cmd_assemble(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_ASSEMBLE, argc, argv, &o)) return 2;
    const char *dir = o.pos[0];
    cr_verify_report rep;
    cr_error err = {0};
    cr_status s = cr_parts_assemble(cr_default_allocator(), dir, o.force, &rep, &err);
    for (uint32_t i = 0; i < rep.n_problems; i++) {
        fputs("crucible assemble: ", stderr);
        cr_text_fput(stderr, rep.problems[i], 0);
        fputc('\n', stderr);
    }
    if (rep.n_problems_total > rep.n_problems)
        fprintf(stderr, "crucible assemble: ... and %u more problems\n", rep.n_problems_total - rep.n_problems);
    cr_verify_report_free(&rep);
    if (s) {
        fprintf(stderr, "crucible assemble: %s\n", err.msg);
        return 1;
    }
    if (!o.quiet) printf("%s: assembled\n", dir);
    return 0;
}
