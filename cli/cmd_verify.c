/* cmd_verify.c — `crucible verify OUT_DIR`: re-validate a written model
 * (formats/verify_dir.h) and print one line per problem, or a one-line summary.
 * Exit 0 when the directory passed, 1 when something is wrong (or, with
 * --require-hash, when no shard hashes are recorded), 2 on bad usage. */
#include <stdio.h>

#include "commands.h"
#include "options.h"
#include "termtext.h"
#include "outdir.h"
#include "parts.h"
#include "verify_dir.h"

int cr_cmd_verify(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_VERIFY, argc, argv, &o)) return 2;
    const char *dir = o.pos[0];
    /* what a killed crucible left beside DIR (outdir.h): removed, or an
     * interrupted replace finished, before DIR is checked */
    cr_outdir_clean_stale(cr_default_allocator(), dir, NULL, NULL);
    cr_verify_report rep;
    cr_error err = {0};
    if (cr_parts_present(dir)) {
        /* a partitioned run not yet assembled: what is missing or damaged,
         * by part (formats/parts.h) */
        if (cr_parts_check(cr_default_allocator(), dir, &rep, &err)) {
            fprintf(stderr, "crucible verify: %s\n", err.msg);
            cr_verify_report_free(&rep);
            return 1;
        }
        for (uint32_t i = 0; i < rep.n_problems; i++) {
            fputs("crucible verify: ", stderr);
            cr_text_fput(stderr, rep.problems[i], 0);
            fputc('\n', stderr);
        }
        if (rep.n_problems_total)
            fprintf(stderr, "crucible verify: %s: FAILED: the parts of a partitioned run, not assembled, with %u "
                    "problem%s\n", dir, rep.n_problems_total, rep.n_problems_total == 1 ? "" : "s");
        else
            fprintf(stderr, "crucible verify: %s: FAILED: every part is complete, but the output is not assembled "
                    "(run `crucible assemble %s`)\n", dir, dir);
        cr_verify_report_free(&rep);
        return 1;
    }
    if (cr_verify_dir(cr_default_allocator(), dir, &rep, &err)) {
        fprintf(stderr, "crucible verify: %s\n", err.msg);
        cr_verify_report_free(&rep);
        return 1;
    }
    for (uint32_t i = 0; i < rep.n_problems; i++) {
        fputs("crucible verify: ", stderr);
        cr_text_fput(stderr, rep.problems[i], 0);   /* they name tensors and files of the model */
        fputc('\n', stderr);
    }
    if (rep.n_problems_total > rep.n_problems)
        fprintf(stderr, "crucible verify: ... and %u more problems\n", rep.n_problems_total - rep.n_problems);
    int rc = 0;
    char what[160];
    snprintf(what, sizeof what, "%u shard%s, %u tensors, %llu bytes", rep.n_shards, rep.n_shards == 1 ? "" : "s",
             rep.n_tensors, (unsigned long long)rep.total_bytes);
    if (rep.n_problems_total) {
        fprintf(stderr, "crucible verify: %s: FAILED (%u problem%s; %s)\n", dir, rep.n_problems_total,
                rep.n_problems_total == 1 ? "" : "s", what);
        rc = 1;
    } else if (!rep.hashes_recorded) {
        if (o.require_hash) {
            fprintf(stderr, "crucible verify: %s: structure ok (%s) but no shard hashes are recorded "
                    "(--require-hash)\n", dir, what);
            rc = 1;
        } else if (!o.quiet) {
            printf("%s: structure ok (%s); NO shard hashes recorded (not written by crucible?), "
                   "contents not checked\n", dir, what);
        }
    } else if (!o.quiet) {
        printf("%s: ok (%s; %u shard hash%s match, xxh64)\n", dir, what, rep.n_hash_ok,
               rep.n_hash_ok == 1 ? "" : "es");
    }
    cr_verify_report_free(&rep);
    return rc;
}
