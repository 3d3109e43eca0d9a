/* cmd_convert.c — `crucible convert MODEL_DIR OUT.gguf`: llama.cpp's
 * convert_hf_to_gguf.py in C (formats/gguf_hf.h, spec/gguf.md). The file is
 * written beside OUT.gguf under a name of crucible's own, fsynced and
 * renamed into place, so OUT.gguf is complete or untouched; an existing
 * OUT.gguf is replaced only with --force, and never when it is an input. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "gguf_hf.h"
#include "gguf_pre.h"
#include "model.h"
#include "options.h"
#include "outdir.h"
#include "outguard.h"
#include "run_program.h"

int cr_cmd_convert(int argc, char **argv)
{
    cr_cli_options co;
    if (!cr_cli_parse(CR_CMD_CONVERT, argc, argv, &co)) return 2;
    const char *dir = co.pos[0], *out = co.pos[1];
    cr_gguf_hf_opts o;
    if (cr_cli_gguf_type("convert", co.val[CR_OPT_GGUF_TYPE], &o)) return 2;
    const char *pre = co.val[CR_OPT_GGUF_PRE];
    if (pre && !cr_gguf_pre_known(pre)) {
        fprintf(stderr, "crucible convert: --gguf-pre '%s' is not a pre-tokenizer llama.cpp knows\n", pre);
        return 2;
    }
    if (!out[0]) { fprintf(stderr, "crucible convert: the output file name is empty\n"); return 2; }
    struct stat sb;
    if (!co.force && !lstat(out, &sb)) {
        fprintf(stderr, "crucible convert: %s exists (use --force to replace it)\n", out);
        return 1;
    }

    const cr_allocator *a = cr_default_allocator();
    cr_error err = {0};
    cr_model m;
    memset(&m, 0, sizeof m);
    cr_input_paths inputs;
    cr_input_paths_init(&inputs, a);
    cr_outfile of;
    memset(&of, 0, sizeof of);
    const char *tmp = NULL;
    int fd = -1;
    cr_cli_signals sigs;
    const volatile int *interrupt = NULL;
    bool sig = false;
    cr_status st = cr_input_paths_add(&inputs, dir, CR_INPUT_PATH_DIR, &err);
    if (st == CR_OK) st = cr_outguard_check(&inputs, out, "output file", &err);
    if (st == CR_OK) st = cr_model_open(a, dir, 0, &m, &err);
    cr_gguf_src src;
    void *src_owned = NULL;
    if (st == CR_OK) st = cr_gguf_src_of_model(a, &m, &src, &src_owned, &err);
    if (st == CR_OK) st = cr_gguf_hf_check_vocab(a, &src, &err);
    if (st == CR_OK && !cr_gguf_hf_needs_pre(a, &src)) pre = "default";   /* the SentencePiece / LlamaHf paths write it */
    if (st == CR_OK && !pre) {
        char *tj = cr_path_join(a, dir, "tokenizer.json");
        char hex[65];
        st = tj ? cr_gguf_pre_detect(a, tj, &pre, hex, &err) : cr_fail(&err, CR_ERR_NOMEM, "out of memory");
        cr_free(a, tj);
    }
    o.pre = pre;
    if (st == CR_OK) {
        /* a killed run's OUT.crucible-tmp-PID goes first (outdir.h) */
        st = cr_outfile_begin(a, out, NULL, NULL, &of, &err);
        if (st == CR_OK) {
            tmp = of.tmp_path;
            fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            if (fd < 0) st = cr_fail_errno(&err, errno, "cannot create %s", tmp);
        }
    }
    if (st == CR_OK) {
        interrupt = (const volatile int *)cr_cli_signals_begin(&sigs);
        sig = true;
        o.interrupt = interrupt;
        uint64_t size = 0;
        st = cr_gguf_hf_write(a, &m, &o, fd, tmp, &size, &err);
        if (st == CR_OK && fsync(fd)) st = cr_fail_errno(&err, errno, "cannot sync %s", tmp);
        if (close(fd) && st == CR_OK) st = cr_fail_errno(&err, errno, "cannot write %s", tmp);
        fd = -1;
        if (st == CR_OK && rename(tmp, out)) st = cr_fail_errno(&err, errno, "cannot rename %s to %s", tmp, out);
        if (st != CR_OK) unlink(tmp);
        if (st == CR_OK && !co.quiet)
            fprintf(stderr, "crucible convert: wrote %s (%llu bytes, tokenizer.ggml.pre %s)\n", out,
                    (unsigned long long)size, pre);
    }
    if (fd >= 0) { close(fd); unlink(tmp); }
    if (sig) cr_cli_signals_end(&sigs);
    cr_outfile_end(&of);
    cr_free(a, src_owned);
    cr_model_close(&m);
    cr_input_paths_free(&inputs);
    if (st != CR_OK) {
        fprintf(stderr, "crucible convert: %s\n", err.msg);
        return st == CR_ERR_INTERRUPTED ? 130 : 1;
    }
    return 0;
}
