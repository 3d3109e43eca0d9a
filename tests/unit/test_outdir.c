/* test_outdir.c — the output is never an input; replacing it is atomic
 * (spec/reliability.md §8.1, issue 13 items 1, 6, 7, 10).
 *
 * Overlaps: an output that is an input directory, an ancestor of one, a
 * directory inside one, a symlink to one, reached through "new/../", or an
 * input symlink pointing into the output is refused by cr_outdir_begin with
 * force, naming both paths, and nothing is touched. Stale leftovers: a
 * record of a dead process is cleaned (and said), a live one or a directory
 * without a record is kept. Crashes: a child process runs begin + commit
 * over an existing directory through a cr_io that _exit()s before call k,
 * for every k; afterwards OUT_DIR is the old or the complete new directory
 * (with the exchange: always; with the two-rename fallback: after the next
 * begin's clean-up), and nothing else is left beside it.
 */
#include "harness.h"
#include "base.h"
#include "io.h"
#include "outdir.h"
#include "outguard.h"
#include "support/io_support.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char *g_tmp;

static const char *in_tmp(const char *name) { return io_scratch(g_tmp, name); }

typedef struct notes { int n; char last[2048]; char all[8192]; } notes;

static void take_note(void *ud, const char *msg)
{
    notes *n = ud;
    n->n++;
    snprintf(n->last, sizeof n->last, "%s", msg);
    size_t l = strlen(n->all);
    snprintf(n->all + l, sizeof n->all - l, "%s\n", msg);
}

static bool text_is(const char *path, const char *want)
{
    char *t = io_read_file(path, NULL);
    bool ok = t && !strcmp(t, want);
    free(t);
    return ok;
}

/* models/a/{model.safetensors,config.json}, r.yml, inputs declared as a
 * merge declares them */
static void make_inputs(cr_input_paths *ip)
{
    mkdir(in_tmp("models"), 0755);
    mkdir(in_tmp("models/a"), 0755);
    io_write_text(in_tmp("models/a/model.safetensors"), "weights");
    io_write_text(in_tmp("models/a/config.json"), "{}");
    io_write_text(in_tmp("r.yml"), "recipe");
    cr_input_paths_init(ip, cr_default_allocator());
    cr_error err;
    cr_input_paths_add(ip, in_tmp("r.yml"), CR_INPUT_PATH_FILE, &err);
    cr_input_paths_add(ip, in_tmp("models/a"), CR_INPUT_PATH_DIR, &err);
    cr_input_paths_add(ip, in_tmp("models/a/model.safetensors"), CR_INPUT_PATH_FILE, &err);
}

static bool inputs_intact(void)
{
    return text_is(in_tmp("models/a/model.safetensors"), "weights") && text_is(in_tmp("models/a/config.json"), "{}") &&
           text_is(in_tmp("r.yml"), "recipe");
}

/* begin with force must refuse `out`, naming it and `input_part` */
static void expect_refused(const cr_input_paths *ip, const char *out, const char *why, const char *input_part)
{
    for (int force = 0; force < 2; force++) {
        cr_outdir o;
        cr_error err = {0};
        cr_outdir_options oo = { .force = force, .inputs = ip };
        cr_status st = cr_outdir_begin(cr_default_allocator(), out, &oo, &o, &err);
        CHECK_MSG(st == CR_ERR_ARG, "%s (force %d): status %d: %s", out, force, (int)st, err.msg);
        if (st == CR_OK) { cr_outdir_abort(&o); cr_outdir_free(&o); continue; }
        CHECK_CONTAINS(err.msg, why);
        CHECK_CONTAINS(err.msg, input_part);
        char name[1024];
        snprintf(name, sizeof name, "%s", out);
        for (size_t l = strlen(name); l > 1 && name[l - 1] == '/'; l--) name[l - 1] = 0;
        CHECK_CONTAINS(err.msg, name);
    }
    CHECK_MSG(inputs_intact(), "%s: inputs changed", out);
    CHECK_EQ_INT(io_count_entries(g_tmp, "crucible-"), 0);
    CHECK_EQ_INT(io_count_entries(in_tmp("models"), "crucible-"), 0);
}

TEST(output_never_an_input)
{
    cr_input_paths ip;
    make_inputs(&ip);
    expect_refused(&ip, in_tmp("models/a"), "is the input", "models/a");
    expect_refused(&ip, in_tmp("models/a/"), "is the input", "models/a");
    expect_refused(&ip, in_tmp("models"), "contains the input", "models/a");
    expect_refused(&ip, g_tmp, "contains the input", "");
    expect_refused(&ip, in_tmp("models/a/sub"), "inside the input model directory", "models/a");
    expect_refused(&ip, in_tmp("models/a/sub/deeper"), "inside the input model directory", "models/a");
    expect_refused(&ip, in_tmp("nothere/../models/a"), "is the input", "models/a");
    /* a symlink to the input directory, absolute and relative */
    REQUIRE(symlink(in_tmp("models/a"), in_tmp("link")) == 0);
    expect_refused(&ip, in_tmp("link"), "is the input", "models/a");
    REQUIRE(symlink("models", in_tmp("rlink")) == 0);
    expect_refused(&ip, in_tmp("rlink"), "contains the input", "models/a");
    CHECK_MSG(io_exists(in_tmp("link")) && io_exists(in_tmp("rlink")), "%s", "links removed");
    unlink(in_tmp("link"));
    unlink(in_tmp("rlink"));
    /* a sibling is fine */
    cr_outdir o;
    cr_error err = {0};
    cr_outdir_options oo = { .force = true, .inputs = &ip };
    CHECK_MSG(cr_outdir_begin(cr_default_allocator(), in_tmp("merged"), &oo, &o, &err) == CR_OK, "%s", err.msg);
    cr_outdir_free(&o);
    CHECK(!io_exists(in_tmp("merged")));
    CHECK_EQ_INT(io_count_entries(g_tmp, "crucible-"), 0);
    cr_input_paths_free(&ip);
    io_rmtree(in_tmp("models"));
    unlink(in_tmp("r.yml"));
}

TEST(input_symlink_into_output)
{
    /* the recipe names "lnk", which points into the directory to replace */
    REQUIRE(mkdir(in_tmp("zone"), 0755) == 0 && mkdir(in_tmp("zone/m"), 0755) == 0);
    REQUIRE(io_write_text(in_tmp("zone/m/model.safetensors"), "w"));
    REQUIRE(symlink(in_tmp("zone/m"), in_tmp("lnk")) == 0);
    cr_input_paths ip;
    cr_input_paths_init(&ip, cr_default_allocator());
    cr_error err = {0};
    cr_input_paths_add(&ip, in_tmp("lnk"), CR_INPUT_PATH_DIR, &err);
    cr_input_paths_add(&ip, in_tmp("lnk/model.safetensors"), CR_INPUT_PATH_FILE, &err);
    cr_outdir o;
    cr_outdir_options oo = { .force = true, .inputs = &ip };
    CHECK_EQ_INT(cr_outdir_begin(cr_default_allocator(), in_tmp("zone"), &oo, &o, &err), CR_ERR_ARG);
    CHECK_CONTAINS(err.msg, "contains the input");
    CHECK_CONTAINS(err.msg, "lnk");
    CHECK(text_is(in_tmp("zone/m/model.safetensors"), "w"));
    /* the same check for one output file (compile -o) */
    CHECK_EQ_INT(cr_outguard_check(&ip, in_tmp("zone/m/model.safetensors"), "output file", &err), CR_ERR_ARG);
    CHECK_CONTAINS(err.msg, "output file");
    CHECK_EQ_INT(cr_outguard_check(&ip, in_tmp("zone/m/new.crb"), "output file", &err), CR_ERR_ARG);
    CHECK_CONTAINS(err.msg, "inside the input model directory");
    CHECK_EQ_INT(cr_outguard_check(&ip, in_tmp("zone.crb"), "output file", &err), CR_OK);
    cr_input_paths_free(&ip);
    unlink(in_tmp("lnk"));
    io_rmtree(in_tmp("zone"));
}

TEST(bad_names_fail_at_begin)
{
    cr_outdir o;
    cr_error err = {0};
    CHECK_EQ_INT(cr_outdir_begin(cr_default_allocator(), "", NULL, &o, &err), CR_ERR_ARG);
    CHECK_CONTAINS(err.msg, "empty");
    CHECK_EQ_INT(cr_outdir_check("", &err), CR_ERR_ARG);
    /* a dangling link */
    REQUIRE(symlink(in_tmp("nowhere"), in_tmp("dangling")) == 0);
    CHECK(cr_outdir_check(in_tmp("dangling"), &err) != CR_OK);
    CHECK_CONTAINS(err.msg, "symbolic link");
    unlink(in_tmp("dangling"));
    /* under a regular file */
    REQUIRE(io_write_text(in_tmp("plain"), "x"));
    CHECK(cr_outdir_check(in_tmp("plain/out"), &err) != CR_OK);
    CHECK_CONTAINS(err.msg, "plain");
    unlink(in_tmp("plain"));
    /* a parent that takes no entries (root ignores permission bits) */
    if (geteuid() != 0) {
        REQUIRE(mkdir(in_tmp("ro"), 0555) == 0);
        CHECK_EQ_INT(cr_outdir_check(in_tmp("ro/out"), &err), CR_ERR_IO);
        CHECK_CONTAINS(err.msg, "ro/out");
        chmod(in_tmp("ro"), 0755);
        rmdir(in_tmp("ro"));
    }
}

TEST(symlink_to_empty_dir_is_followed)
{
    REQUIRE(mkdir(in_tmp("target"), 0755) == 0);
    REQUIRE(symlink("target", in_tmp("tlink")) == 0);
    cr_outdir o;
    cr_error err = {0};
    REQUIRE(cr_outdir_begin(cr_default_allocator(), in_tmp("tlink"), NULL, &o, &err) == CR_OK);
    char *p = cr_outdir_path(&o, "new.txt");
    CHECK(p && io_write_text(p, "new"));
    cr_free(cr_default_allocator(), p);
    CHECK_MSG(cr_outdir_commit(&o, &err) == CR_OK, "%s", err.msg);
    cr_outdir_free(&o);
    struct stat st;
    CHECK(lstat(in_tmp("tlink"), &st) == 0 && S_ISLNK(st.st_mode));
    CHECK(text_is(in_tmp("target/new.txt"), "new"));
    CHECK_EQ_INT(io_count_entries(g_tmp, "crucible-"), 0);
    unlink(in_tmp("tlink"));
    io_rmtree(in_tmp("target"));
}

/* ---- stale leftovers ------------------------------------------------------- */

static long dead_pid(void)
{
    pid_t c = fork();
    if (c == 0) _exit(0);
    waitpid(c, NULL, 0);
    return (long)c;
}

static void leave(const char *out, const char *kind, long pid, const char *record)
{
    char p[1200];
    snprintf(p, sizeof p, "%s.crucible-%s-%ld", out, kind, pid);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s.crucible-%s-%ld/part.safetensors", out, kind, pid);
    io_write_text(p, "partial");
    if (record) {
        snprintf(p, sizeof p, "%s.crucible-owner-%ld", out, pid);
        io_write_text(p, record);
    }
}

static bool left(const char *out, const char *kind, long pid)
{
    char p[1200];
    snprintf(p, sizeof p, "%s.crucible-%s-%ld", out, kind, pid);
    return io_exists(p);
}

TEST(stale_temporaries)
{
    const char *out = in_tmp("stale");
    char rec[128];
    /* a dead process's record and directory: removed, and said */
    long dead = dead_pid();
    snprintf(rec, sizeof rec, "crucible-owner %ld 0 -\n", dead);
    leave(out, "tmp", dead, rec);
    /* a live process: kept */
    pid_t live = fork();
    if (live == 0) { pause(); _exit(0); }
    unsigned long long st = 0;
    for (int i = 0; i < 1000 && !(st = cr_outdir_proc_start(live)); i++) usleep(1000);
    snprintf(rec, sizeof rec, "crucible-owner %ld %llu -\n", (long)live, st);
    leave(out, "tmp", live, rec);
    /* a live pid with another start time: the pid was reused; removed */
    long reused = (long)getppid();
    snprintf(rec, sizeof rec, "crucible-owner %ld 1 -\n", reused);
    leave(out, "tmp", reused, rec);
    /* no record: not provably crucible's; kept and said */
    long foreign = dead_pid();
    leave(out, "tmp", foreign, NULL);
    /* a record naming another pid than its name: kept */
    long liar = dead_pid();
    snprintf(rec, sizeof rec, "crucible-owner %ld 0 -\n", liar + 1);
    leave(out, "tmp", liar, rec);

    notes n = {0};
    cr_outdir o;
    cr_error err = {0};
    cr_outdir_options oo = { .note = take_note, .note_ud = &n };
    REQUIRE(cr_outdir_begin(cr_default_allocator(), out, &oo, &o, &err) == CR_OK);
    cr_outdir_free(&o);
    CHECK_MSG(!left(out, "tmp", dead), "%s", "dead process's temporary kept");
    CHECK_MSG(!left(out, "tmp", reused), "%s", "reused pid's temporary kept");
    CHECK_MSG(left(out, "tmp", live), "%s", "live process's temporary removed");
    CHECK_MSG(left(out, "tmp", foreign), "%s", "temporary without a record removed");
    CHECK_MSG(left(out, "tmp", liar), "%s", "temporary with a mismatched record removed");
    char want[128];
    snprintf(want, sizeof want, "stale.crucible-tmp-%ld, left by crucible process %ld", dead, dead);
    CHECK_CONTAINS(n.all, want);
    snprintf(want, sizeof want, "stale.crucible-tmp-%ld alone", foreign);
    CHECK_CONTAINS(n.all, want);
    kill(live, SIGKILL);
    waitpid(live, NULL, 0);
    /* now dead: the next clean-up takes it */
    n = (notes){0};
    CHECK(cr_outdir_clean_stale(cr_default_allocator(), out, take_note, &n) == 1);
    CHECK(!left(out, "tmp", live));
    char p[1200];
    snprintf(p, sizeof p, "%s.crucible-owner-%ld", out, (long)live);
    CHECK(!io_exists(p));
    snprintf(p, sizeof p, "%s.crucible-tmp-%ld", out, foreign);
    io_rmtree(p);
    snprintf(p, sizeof p, "%s.crucible-tmp-%ld", out, liar);
    io_rmtree(p);
    snprintf(p, sizeof p, "%s.crucible-owner-%ld", out, liar);
    unlink(p);
    CHECK_EQ_INT(io_count_entries(g_tmp, "crucible-"), 0);
}

/* ---- crashes between the steps of a replace ------------------------------- */

/* A cr_io that ends the process before call number `crash_at` (0-based),
 * as SIGKILL would; exchange removed for the fallback. */
typedef struct crash_io { cr_io base; const cr_io *in; long count, crash_at; } crash_io;

static void tick(crash_io *c) { if (c->count++ == c->crash_at) _exit(77); }
static int c_open(void *ud, const char *p, int f, int m) { crash_io *c = ud; tick(c); return c->in->open(c->in->ud, p, f, m); }
static ssize_t c_pwrite(void *ud, int fd, const void *b, size_t n, uint64_t off)
{ crash_io *c = ud; tick(c); return c->in->pwrite(c->in->ud, fd, b, n, off); }
static int c_ftruncate(void *ud, int fd, uint64_t s) { crash_io *c = ud; tick(c); return c->in->ftruncate(c->in->ud, fd, s); }
static int c_fsync(void *ud, int fd) { crash_io *c = ud; tick(c); return c->in->fsync(c->in->ud, fd); }
static int c_close(void *ud, int fd) { crash_io *c = ud; tick(c); return c->in->close(c->in->ud, fd); }
static int c_mkdir(void *ud, const char *p, int m) { crash_io *c = ud; tick(c); return c->in->mkdir(c->in->ud, p, m); }
static int c_rename(void *ud, const char *a, const char *b) { crash_io *c = ud; tick(c); return c->in->rename(c->in->ud, a, b); }
static int c_exchange(void *ud, const char *a, const char *b) { crash_io *c = ud; tick(c); return c->in->exchange(c->in->ud, a, b); }

/* 0: the old directory at out, 1: the complete new one, -1: neither */
static int which(const char *out)
{
    char a[1200], b[1200];
    snprintf(a, sizeof a, "%s/keep.txt", out);
    snprintf(b, sizeof b, "%s/new.txt", out);
    if (text_is(a, "old") && !io_exists(b)) return 0;
    if (text_is(b, "new") && !io_exists(a)) return 1;
    return -1;
}

static void crash_replace(bool exchange)
{
    const char *out = in_tmp(exchange ? "xchg" : "fallback");
    char keep[1200];
    snprintf(keep, sizeof keep, "%s/keep.txt", out);
    int crashes = 0, absent_after_crash = 0;
    if (exchange) {
        /* a file system without RENAME_EXCHANGE takes the fallback, tested below */
        REQUIRE(mkdir(in_tmp("x1"), 0755) == 0 && mkdir(in_tmp("x2"), 0755) == 0);
        bool have = cr_posix_io()->exchange(NULL, in_tmp("x1"), in_tmp("x2")) == 0;
        rmdir(in_tmp("x1"));
        rmdir(in_tmp("x2"));
        if (!have) { printf("note: no RENAME_EXCHANGE where %s is; skipped\n", g_tmp); return; }
    }
    for (long k = 0; k < 64; k++) {
        io_rmtree(out);
        REQUIRE(mkdir(out, 0755) == 0 && io_write_text(keep, "old"));
        pid_t c = fork();
        if (c == 0) {
            crash_io cio = { .in = cr_posix_io(), .crash_at = k };
            cio.base = (cr_io){ .open = c_open, .pwrite = c_pwrite, .ftruncate = c_ftruncate, .fsync = c_fsync,
                                .close = c_close, .mkdir = c_mkdir, .rename = c_rename,
                                .exchange = exchange ? c_exchange : NULL, .ud = &cio };
            cr_outdir o;
            cr_error err = {0};
            cr_outdir_options oo = { .force = true, .io = &cio.base };
            if (cr_outdir_begin(cr_default_allocator(), out, &oo, &o, &err)) _exit(1);
            char *p = cr_outdir_path(&o, "new.txt");
            if (!p || !io_write_text(p, "new")) _exit(1);
            cr_free(cr_default_allocator(), p);
            cr_status st = cr_outdir_commit(&o, &err);
            cr_outdir_free(&o);
            _exit(st ? 1 : 0);
        }
        int ws;
        REQUIRE(waitpid(c, &ws, 0) == c && WIFEXITED(ws));
        int code = WEXITSTATUS(ws);
        CHECK_MSG(code == 0 || code == 77, "call %ld: the replace failed (%d)", k, code);
        if (code == 0) {
            CHECK_MSG(which(out) == 1, "call %ld: finished but the output is not the new one", k);
            CHECK_EQ_INT(io_count_entries(g_tmp, "crucible-"), 0);
            break;
        }
        crashes++;
        int now = which(out);
        if (now < 0) absent_after_crash++;
        if (exchange)
            CHECK_MSG(now >= 0, "crash before call %ld: the output is neither the old nor the new directory", k);
        /* the next run's clean-up: afterwards old or new, nothing beside */
        notes n = {0};
        cr_outdir_clean_stale(cr_default_allocator(), out, take_note, &n);
        CHECK_MSG(which(out) >= 0, "crash before call %ld, after clean-up: neither old nor new (%s)", k, n.all);
        if (io_count_entries(g_tmp, "crucible-")) {
            CHECK_MSG(false, "crash before call %ld: left beside OUT after clean-up: %s", k, n.all);
            DIR *d = opendir(g_tmp);
            for (struct dirent *e; d && (e = readdir(d));) if (strstr(e->d_name, "crucible-")) fprintf(stderr, "  left: %s\n", e->d_name);
            if (d) closedir(d);
        }
        if (now == 1 && which(out) != 1) CHECK_MSG(false, "call %ld: clean-up undid a finished replace", k);
    }
    CHECK(crashes > 5);
    /* the fallback has a moment without OUT, which the clean-up repairs */
    if (!exchange) CHECK_MSG(absent_after_crash > 0, "%s", "no crash point between the two renames");
    io_rmtree(out);
}

TEST(crash_during_exchange_replace) { crash_replace(true); }
TEST(crash_during_fallback_replace) { crash_replace(false); }

int main(void)
{
    g_tmp = io_tmpdir("outdir");
    if (!g_tmp) { fprintf(stderr, "cannot create a temporary directory\n"); return 1; }
    RUN(output_never_an_input);
    RUN(input_symlink_into_output);
    RUN(bad_names_fail_at_begin);
    RUN(symlink_to_empty_dir_is_followed);
    RUN(stale_temporaries);
    RUN(crash_during_exchange_replace);
    RUN(crash_during_fallback_replace);
    io_rmtree(g_tmp);
    free(g_tmp);
    return cr_test_summary();
}
