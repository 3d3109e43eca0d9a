/* test_faults.c — fault injection (issue 8).
 *
 * Allocation: for N = 0, 1, 2, ... the N-th allocation of a whole operation
 * fails (cr_failing_allocator); every run must end in CR_ERR_NOMEM or
 * another clean error, with nothing left allocated, until N passes the
 * operation's total count, when it must succeed. Operations: the YAML front
 * end on a small TIES recipe (models opened fully), loading a .crb, and a
 * VM run of a small program.
 *
 * File system: for every call the VM makes through its cr_io table, a run
 * where that call fails with EIO, with ENOSPC, or (pwrite) writes short.
 * A failed run must name a file, leave no output directory and no temporary
 * directory, and not touch the inputs; a short write must be retried and
 * give the same bytes as a clean run.
 */
#include "harness.h"
#include "base.h"
#include "frontend.h"
#include "io.h"
#include "outdir.h"
#include "program.h"
#include "vm.h"
#include "support/front_support.h"
#include "support/io_support.h"
#include "support/rel_support.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *g_tmp;      /* scratch root */
static char *g_models;   /* synthetic models for the front end */

static const char *in_tmp(const char *name) { return io_scratch(g_tmp, name); }

/* ---- allocation failures ---------------------------------------------- */

TEST(frontend_every_allocation)
{
    const char *text =
        "models:\n"
        "  - model: mistral-base\n"
        "  - model: mistral-ft-a\n"
        "    parameters: {density: 0.5, weight: 0.5}\n"
        "  - model: mistral-ft-b\n"
        "    parameters: {density: [0.2, 0.8], weight: 0.3}\n"
        "merge_method: ties\n"
        "base_model: mistral-base\n"
        "parameters: {normalize: true}\n"
        "dtype: bfloat16\n";
    cr_frontend_options opt = { .models_dir = g_models, .no_env = true };
    long n;
    int nomem = 0;
    cr_status st = CR_ERR_NOMEM;
    for (n = 0; n < 100000; n++) {
        cr_failing_allocator fa;
        cr_failing_allocator_init(&fa, cr_default_allocator(), n, false);
        cr_plan plan;
        cr_diags d;
        cr_error err = { 0 };
        cr_diags_init(&d, &fa.base);
        st = cr_frontend_yaml_text(&fa.base, in_tmp("ties.yml"), text, strlen(text), &opt, &plan, &d, &err);
        cr_plan_free(&plan);
        cr_diags_free(&d);
        CHECK_MSG(fa.live == 0, "allocation %ld failed: %ld blocks leaked", n, fa.live);
        if (st == CR_OK && fa.count <= n) break;          /* the N-th allocation never happened */
        CHECK_MSG(st != CR_OK || fa.count > n, "allocation %ld", n);
        if (st != CR_OK) {
            CHECK_MSG(st == CR_ERR_NOMEM || st == CR_ERR_CONFIG || st == CR_ERR_IO,
                      "allocation %ld failed: status %s (%s)", n, cr_status_name(st), err.msg);
            CHECK_MSG(err.msg[0], "allocation %ld failed: no message", n);
            nomem += st == CR_ERR_NOMEM;
        }
        if (cr_test_g.current_failed) break;
    }
    CHECK_EQ_INT(st, CR_OK);
    CHECK_MSG(nomem > 10, "only %d runs reported CR_ERR_NOMEM over %ld fault points", nomem, n);
    printf("front end: %ld allocation fault points, %d reported NOMEM\n", n, nomem);
}

TEST(program_load_every_allocation)
{
    const char *dir = in_tmp("load");
    REQUIRE(mkdir(dir, 0755) == 0);
    cr_program p;
    REQUIRE(rel_build_linear(&p, dir));
    char crb[1100];
    snprintf(crb, sizeof crb, "%s/p.crb", dir);
    cr_error err = { 0 };
    REQUIRE(cr_program_save(&p, crb, &err) == CR_OK);
    cr_program_free(&p);
    long n;
    cr_status st = CR_ERR_NOMEM;
    for (n = 0; n < 10000; n++) {
        cr_failing_allocator fa;
        cr_failing_allocator_init(&fa, cr_default_allocator(), n, false);
        st = cr_program_load(&fa.base, crb, &p, &err);
        if (st == CR_OK) cr_program_free(&p);
        CHECK_MSG(fa.live == 0, "allocation %ld failed: %ld blocks leaked", n, fa.live);
        if (st == CR_OK) break;
        CHECK_MSG(st == CR_ERR_NOMEM, "allocation %ld: %s (%s)", n, cr_status_name(st), err.msg);
        if (cr_test_g.current_failed) break;
    }
    CHECK_EQ_INT(st, CR_OK);
    CHECK(n > 3);
    printf("crb load: %ld allocation fault points\n", n);
    io_rmtree(dir);
}

TEST(vm_run_every_allocation)
{
    const char *dir = in_tmp("vmalloc");
    REQUIRE(mkdir(dir, 0755) == 0);
    cr_program p;
    REQUIRE(rel_build_linear(&p, dir));
    char out[1100];
    snprintf(out, sizeof out, "%s/out", dir);
    long n;
    cr_status st = CR_ERR_NOMEM;
    for (n = 0; n < 10000; n++) {
        cr_failing_allocator fa;
        cr_failing_allocator_init(&fa, cr_default_allocator(), n, false);
        cr_vm_options o;
        cr_vm_options_init(&o);
        o.out_dir = out;
        o.threads = 2;
        o.quiet = true;
        o.alloc = &fa.base;
        cr_error err = { 0 };
        st = cr_vm_run(&p, &o, &err);
        CHECK_MSG(fa.live == 0, "allocation %ld failed: %ld blocks leaked", n, fa.live);
        if (st == CR_OK) break;
        CHECK_MSG(st == CR_ERR_NOMEM, "allocation %ld: %s (%s)", n, cr_status_name(st), err.msg);
        CHECK_MSG(!io_exists(out), "allocation %ld: output directory left behind", n);
        CHECK_MSG(io_count_entries(dir, "crucible-tmp") == 0, "allocation %ld: temporary directory left", n);
        if (cr_test_g.current_failed) break;
    }
    CHECK_EQ_INT(st, CR_OK);
    CHECK(io_exists(out));
    CHECK(n > 3);
    printf("vm run: %ld allocation fault points\n", n);
    cr_program_free(&p);
    io_rmtree(dir);
}

/* ---- file system failures ---------------------------------------------- */

static cr_status run_io(const cr_program *p, const char *out, const cr_io *io, cr_error *err)
{
    cr_vm_options o;
    cr_vm_options_init(&o);
    o.out_dir = out;
    o.threads = 1;
    o.quiet = true;
    o.io = io;
    return cr_vm_run(p, &o, err);
}

static bool same_file(const char *a, const char *b)
{
    size_t la, lb;
    char *x = io_read_file(a, &la), *y = io_read_file(b, &lb);
    bool same = x && y && la == lb && !memcmp(x, y, la);
    free(x);
    free(y);
    return same;
}

TEST(vm_run_every_io_fault)
{
    const char *dir = in_tmp("vmio");
    REQUIRE(mkdir(dir, 0755) == 0);
    cr_program p;
    REQUIRE(rel_build_linear(&p, dir));
    char ref[1100], out[1100], in_a[1100], in_b[1100], saved_a[1100], saved_b[1100];
    snprintf(ref, sizeof ref, "%s/ref", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(in_a, sizeof in_a, "%s/a.safetensors", dir);
    snprintf(in_b, sizeof in_b, "%s/b.safetensors", dir);
    snprintf(saved_a, sizeof saved_a, "%s/a.saved", g_tmp);
    snprintf(saved_b, sizeof saved_b, "%s/b.saved", g_tmp);
    size_t n;
    char *d = io_read_file(in_a, &n);
    REQUIRE(d && io_write_file(saved_a, d, n));
    free(d);
    d = io_read_file(in_b, &n);
    REQUIRE(d && io_write_file(saved_b, d, n));
    free(d);

    /* a clean run through the wrapper counts the calls */
    cr_failing_io fio;
    cr_failing_io_init(&fio, NULL, -1, CR_IO_FAULT_EIO);
    cr_error err = { 0 };
    REQUIRE(run_io(&p, ref, &fio.base, &err) == CR_OK);
    long total = fio.count;
    CHECK(total >= 10);
    const char *files[] = { "model.safetensors", "config.json", "a-copy.safetensors" };

    static const char *const kinds[] = { "EIO", "ENOSPC", "short write" };
    int failed_runs = 0, ok_runs = 0;
    for (int kind = 0; kind < 3; kind++) {
        for (long k = 0; k < total; k++) {
            cr_failing_io_init(&fio, NULL, k, (cr_io_fault)kind);
            memset(&err, 0, sizeof err);
            cr_status st = run_io(&p, out, &fio.base, &err);
            CHECK_EQ_INT(fio.failed, 1);
            if (st == CR_OK) {
                /* only a retried short write, or the parent's sync after the
                 * final rename, may succeed, and then with the same bytes */
                ok_runs++;
                CHECK_MSG(kind == CR_IO_FAULT_SHORT && !strcmp(fio.failed_call, "pwrite")
                          ? true : k >= total - 3,
                          "%s in %s (call %ld) was ignored", kinds[kind], fio.failed_call, k);
                for (size_t f = 0; f < CR_ARRAY_LEN(files); f++) {
                    char a[1200], b[1200];
                    snprintf(a, sizeof a, "%s/%s", ref, files[f]);
                    snprintf(b, sizeof b, "%s/%s", out, files[f]);
                    CHECK_MSG(same_file(a, b), "%s in %s (call %ld): %s differs", kinds[kind],
                              fio.failed_call, k, files[f]);
                }
                io_rmtree(out);
            } else {
                failed_runs++;
                CHECK_MSG(st == CR_ERR_IO, "%s in %s (call %ld): %s: %s", kinds[kind], fio.failed_call, k,
                          cr_status_name(st), err.msg);
                CHECK_MSG(strstr(err.msg, dir) || strstr(err.msg, ".safetensors") || strstr(err.msg, ".json"),
                          "%s in %s (call %ld): message names no file: %s", kinds[kind], fio.failed_call, k, err.msg);
                const char *want = kind == CR_IO_FAULT_ENOSPC ? "No space left" : "Input/output error";
                CHECK_MSG(strstr(err.msg, want), "%s in %s (call %ld): %s", kinds[kind], fio.failed_call, k, err.msg);
                CHECK_MSG(!io_exists(out), "%s in %s (call %ld): output directory exists", kinds[kind],
                          fio.failed_call, k);
            }
            CHECK_MSG(io_count_entries(dir, "crucible-tmp") == 0, "%s in %s (call %ld): temporary directory left",
                      kinds[kind], fio.failed_call, k);
            CHECK_MSG(same_file(in_a, saved_a) && same_file(in_b, saved_b), "%s in %s (call %ld): input changed",
                      kinds[kind], fio.failed_call, k);
            if (cr_test_g.current_failed) { fprintf(stderr, "  (last message: %s)\n", err.msg); goto done; }
        }
    }
done:
    CHECK(failed_runs > 2 * total);
    printf("vm run: %ld I/O fault points x 3 kinds: %d failed cleanly, %d recovered\n", total, failed_runs, ok_runs);
    cr_program_free(&p);
    io_rmtree(dir);
}

TEST(outdir_rename_fault_keeps_old_output)
{
    /* --force over an existing directory: a failed final rename puts the
     * old directory back, untouched */
    const char *dir = in_tmp("force");
    REQUIRE(mkdir(dir, 0755) == 0);
    char out[1100], keep[1200];
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(keep, sizeof keep, "%s/out/keep.txt", dir);
    REQUIRE(mkdir(out, 0755) == 0 && io_write_text(keep, "old"));
    for (long k = 0; k < 12; k++) {
        cr_failing_io fio;
        cr_failing_io_init(&fio, NULL, k, CR_IO_FAULT_EIO);
        cr_outdir o;
        cr_error err = { 0 };
        cr_outdir_options oo = { .force = true, .io = &fio.base };
        cr_status st = cr_outdir_begin(cr_default_allocator(), out, &oo, &o, &err);
        if (st == CR_OK) {
            char *p = cr_outdir_path(&o, "new.txt");
            CHECK(p && io_write_text(p, "new"));
            cr_free(cr_default_allocator(), p);
            st = cr_outdir_commit(&o, &err);
        }
        bool calls_left = fio.count > k;
        cr_outdir_free(&o);
        if (!calls_left) break;
        char *t = io_read_file(keep, NULL);
        if (st == CR_OK) {
            CHECK_MSG(!t, "call %ld (%s): old output kept after success", k, fio.failed_call);
            /* restore the old directory for the next fault point */
            io_rmtree(out);
            REQUIRE(mkdir(out, 0755) == 0 && io_write_text(keep, "old"));
        } else {
            CHECK_MSG(t && !strcmp(t, "old"), "call %ld (%s): old output lost: %s", k, fio.failed_call, err.msg);
        }
        free(t);
        CHECK_MSG(io_count_entries(dir, "crucible-") == 0, "call %ld (%s): temporary directory left", k,
                  fio.failed_call);
    }
    io_rmtree(dir);
}

/* tsan: runs threads; tools/sanitize.sh thread runs this test */
int main(void)
{
    g_tmp = io_tmpdir("faults");
    if (!g_tmp) return 1;
    g_models = io_join(g_tmp, "models");
    front_model_spec m = { .arch = "MistralForCausalLM", .layers = 2, .hidden = 8, .intermediate = 16,
                           .vocab = 32, .dtype = "BF16", .lm_head = true };
    if (!front_write_model(g_models, "mistral-base", &m) || !front_write_model(g_models, "mistral-ft-a", &m) ||
        !front_write_model(g_models, "mistral-ft-b", &m)) {
        fprintf(stderr, "cannot write models\n");
        return 1;
    }
    RUN(frontend_every_allocation);
    RUN(program_load_every_allocation);
    RUN(vm_run_every_allocation);
    RUN(vm_run_every_io_fault);
    RUN(outdir_rename_fault_keeps_old_output);
    io_rmtree(g_tmp);
    free(g_models);
    free(g_tmp);
    return cr_test_summary();
}
