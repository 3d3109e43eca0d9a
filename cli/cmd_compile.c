/* cmd_compile.c — `crucible compile CONFIG -o OUT.crb`: a program anyone can
 * re-run bit for bit with `crucible run`, on any machine that has its
 * models: the .crb names each input by its model and path inside it, with
 * its size and content hash (read here, whole; --skip-hash: sizes only). */
#include "commands.h"
#include "options.h"
#include "outguard.h"

#include <sys/stat.h>

int cr_cmd_compile(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_COMPILE, argc, argv, &o)) return 2;
    if (!o.output) { fprintf(stderr, "crucible compile: -o OUT.crb is required\n"); return 2; }
    struct stat st;
    if (!o.output[0]) { fprintf(stderr, "crucible compile: -o: the output file name is empty\n"); return 1; }
    if (!o.force && !lstat(o.output, &st)) {
        fprintf(stderr, "crucible compile: %s exists (use --force to replace it)\n", o.output);
        return 1;
    }
    cr_compile_result r;   /* r.inputs: the .crb must not replace one of them (formats/outguard.h) */
    int rc = cr_cli_compile(&o, true, NULL, true, &r);
    if (rc) return rc;
    cr_error err = {0};
    /* cr_program_save writes beside the target and renames it into place */
    if (cr_input_paths_add_program(&r.inputs, &r.program, &err) ||
        (!o.skip_hash && cr_program_hash_inputs(&r.program, &err)) ||
        cr_outguard_check(&r.inputs, o.output, "output file", &err) ||
        cr_program_save(&r.program, o.output, &err)) {
        fprintf(stderr, "crucible compile: %s\n", err.msg);
        rc = 1;
    }
    cr_compile_result_free(&r);
    return rc;
}
