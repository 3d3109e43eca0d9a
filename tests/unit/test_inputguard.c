/* test_inputguard.c — inputs that change underneath a run (vm/inputguard.h):
 * a file's recorded identity against each kind of change (rewritten in
 * place with the same size, truncated, renamed over, removed); the SIGBUS
 * guard turning a read past the end of a truncated mapping into zeros and a
 * record of the file; and the VM failing, naming the file and leaving no
 * output, when its input is rewritten, truncated or replaced while it runs
 * (the change is made from the progress callback at the start of the run,
 * so the test does not depend on timing). */
#include "harness.h"
#include "support/io_support.h"
#include "support/vm_build.h"
#include "inputguard.h"
#include "vm.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The test's SIGBUS handler needs the guard through a static, as the CLI's
 * does (cli/run_program.c): test binaries only. */
static cr_input_guard *volatile test_guard;
static struct sigaction old_bus;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    cr_input_guard *g = test_guard;
    if (g && cr_input_guard_on_sigbus(g, si->si_addr)) return;
    sigaction(SIGBUS, &old_bus, NULL);
}

static void bus_handler_install(cr_input_guard *g)
{
    test_guard = g;
    struct sigaction sa = {0};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &old_bus);
}

static void bus_handler_remove(void)
{
    sigaction(SIGBUS, &old_bus, NULL);
    test_guard = NULL;
}

/* A file's times set far back, so that a write in the same clock tick as
 * the recording still moves its mtime (timestamps are coarse-grained). */
static void age(const char *path)
{
    struct timespec ts[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
    utimensat(AT_FDCWD, path, ts, 0);
}

static bool record(const char *path, cr_file_id *id)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return false;
    cr_error err = {0};
    bool ok = cr_file_id_of_fd(fd, path, id, &err) == CR_OK;
    close(fd);
    return ok;
}

static bool overwrite_same_size(const char *path, off_t at)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0) return false;
    const char x[8] = "XXXXXXXX";
    bool ok = pwrite(fd, x, sizeof x, at) == (ssize_t)sizeof x;
    return close(fd) == 0 && ok;
}

TEST(file_id_detects_each_change)
{
    char *dir = io_tmpdir("inputguard");
    char *p = io_join(dir, "in.bin"), *q = io_join(dir, "other.bin");
    char buf[4096];
    memset(buf, 7, sizeof buf);
    cr_file_id id;
    cr_error err = {0};

    REQUIRE(io_write_file(p, buf, sizeof buf));
    age(p);
    REQUIRE(record(p, &id));
    CHECK_EQ_INT(id.size, 4096);
    CHECK_MSG(cr_file_id_check(p, &id, &err) == CR_OK, "unchanged: %s", err.msg);

    /* rewritten in place, same size */
    REQUIRE(overwrite_same_size(p, 100));
    CHECK(cr_file_id_check(p, &id, &err) == CR_ERR_RUNTIME);
    CHECK_CONTAINS(err.msg, "in.bin changed while it was being read (written to");

    /* truncated */
    REQUIRE(io_write_file(p, buf, sizeof buf));
    REQUIRE(record(p, &id));
    REQUIRE(truncate(p, 1000) == 0);
    CHECK(cr_file_id_check(p, &id, &err) == CR_ERR_RUNTIME);
    CHECK_CONTAINS(err.msg, "in.bin changed while it was being read (4096 bytes, now 1000)");

    /* replaced by rename, even with the same bytes, size and times */
    REQUIRE(io_write_file(p, buf, sizeof buf));
    age(p);
    REQUIRE(record(p, &id));
    REQUIRE(io_write_file(q, buf, sizeof buf));
    age(q);
    REQUIRE(rename(q, p) == 0);
    CHECK(cr_file_id_check(p, &id, &err) == CR_ERR_RUNTIME);
    CHECK_CONTAINS(err.msg, "in.bin changed while it was being read (replaced by another file)");

    /* removed */
    REQUIRE(record(p, &id));
    REQUIRE(unlink(p) == 0);
    CHECK(cr_file_id_check(p, &id, &err) == CR_ERR_RUNTIME);
    CHECK_CONTAINS(err.msg, "in.bin changed while it was being read (removed");

    free(p);
    free(q);
    io_rmtree(dir);
    free(dir);
}

TEST(guard_turns_a_read_past_eof_into_zeros)
{
    long page = sysconf(_SC_PAGESIZE);
    char *dir = io_tmpdir("inputguard");
    char *p = io_join(dir, "in.bin");
    size_t len = (size_t)page * 3;
    unsigned char *buf = malloc(len);
    REQUIRE(buf);
    memset(buf, 0x5a, len);
    REQUIRE(io_write_file(p, buf, len));
    int fd = open(p, O_RDONLY);
    REQUIRE(fd >= 0);
    const volatile unsigned char *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    REQUIRE(map != MAP_FAILED);

    cr_input_guard g;
    cr_input_guard_init(&g);
    cr_input_region r[2] = { { 0, 0 }, { (uintptr_t)map, (uintptr_t)map + len } };
    cr_input_guard_set(&g, r, 2);
    CHECK_EQ_INT(cr_input_guard_faulted(&g), 0);
    /* an address outside every region is not the guard's */
    CHECK(!cr_input_guard_on_sigbus(&g, buf));

    CHECK_EQ_INT(map[0], 0x5a);
    REQUIRE(truncate(p, page) == 0);
    bus_handler_install(&g);
    unsigned char past = map[2 * page + 5];   /* SIGBUS without the guard */
    bus_handler_remove();
    CHECK_EQ_INT(past, 0);
    CHECK_EQ_INT(cr_input_guard_faulted(&g), 2);
    CHECK_EQ_INT(map[0], 0x5a);               /* the pages still in the file are untouched */

    cr_input_guard_clear(&g);
    CHECK(!cr_input_guard_on_sigbus(&g, (const void *)(map + page + 1)));
    munmap((void *)map, len);
    free(buf);
    free(p);
    io_rmtree(dir);
    free(dir);
}

/* ---- the VM --------------------------------------------------------------- */

enum { ROWS = 64, COLS = 64 };   /* 16 KiB of f32: the data spans several pages */

static void build_copy(cr_program *p, const char *in_path)
{
    static float a[ROWS * COLS];
    for (int i = 0; i < ROWS * COLS; i++) a[i] = (float)(i % 97) * 0.25f - 5.0f;
    const char *na[] = { "a" };
    cr_dtype dt[] = { CR_DTYPE_F32 };
    uint64_t shape[][2] = { { ROWS, COLS } }, off;
    const void *da[] = { a };
    uint64_t size = vb_write_safetensors(in_path, 1, na, dt, shape, da, &off);
    vm_builder b;
    vb_init(&b);
    uint32_t f = vb_file(&b, in_path, size, 0);
    uint32_t in = vb_input(&b, f, CR_DTYPE_F32, "a", off, ROWS * COLS * 4, ROWS, COLS, COLS);
    uint32_t o = vb_output(&b, "a", CR_DTYPE_F32, ROWS, COLS);
    vb_shard(&b, "model.safetensors");
    uint32_t k = vb_kernel_begin(&b, ROWS, COLS, 256, 1, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, in, 0, 0);
    vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o, 0, 0, 0);
    vb_kernel_end(&b);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k, 0, 0);
    vb_m(&b, CR_OP_DONE, CR_DTYPE_NONE, o, 0, 0, 0);
    vb_build(&b, p);
}

typedef enum change { CHANGE_NONE, CHANGE_REWRITE, CHANGE_TRUNCATE, CHANGE_REPLACE } change;

typedef struct change_ctx {
    change what;
    const char *path, *other;
    bool done;
} change_ctx;

/* at the start of the main stream: the input is mapped, nothing read yet */
static void change_input(void *ud, const cr_vm_progress *pr)
{
    change_ctx *c = ud;
    if (pr->phase != CR_VM_PHASE_RUN || c->done) return;
    c->done = true;
    if (c->what == CHANGE_REWRITE) overwrite_same_size(c->path, 9000);
    if (c->what == CHANGE_TRUNCATE) truncate(c->path, 64);
    if (c->what == CHANGE_REPLACE) {
        size_t n;
        unsigned char *bytes = vb_read_file(c->path, &n);
        if (bytes && io_write_file(c->other, bytes, n)) rename(c->other, c->path);
        free(bytes);
    }
}

/* names in dir other than keep */
static int others_in(const char *dir, const char *keep)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, keep)) n++;
    closedir(d);
    return n;
}

static cr_status run_with(change what, unsigned threads, bool guard, bool reader, char *msg, size_t msg_len,
                          bool *out_exists)
{
    char *dir = io_tmpdir("inputguard-vm");
    char *in = io_join(dir, "in.safetensors"), *other = io_join(dir, "new.bin"), *out = io_join(dir, "out");
    cr_program p;
    build_copy(&p, in);
    age(in);
    cr_error err = {0};
    cr_status s = cr_program_verify(&p, &err);
    cr_input_guard g;
    cr_input_guard_init(&g);
    change_ctx c = { what, in, other, false };
    if (!s) {
        cr_vm_options o;
        cr_vm_options_init(&o);
        o.out_dir = out;
        o.threads = threads;
        o.quiet = true;
        o.progress = change_input;
        o.progress_ud = &c;
        o.no_read_ahead = !reader;
        if (guard) { o.guard = &g; bus_handler_install(&g); }
        s = cr_vm_run(&p, &o, &err);
        if (guard) bus_handler_remove();
    }
    snprintf(msg, msg_len, "%s", s ? err.msg : "");
    *out_exists = others_in(dir, "in.safetensors") != 0;   /* neither out nor out.crucible-tmp-* */
    cr_program_free(&p);
    free(in);
    free(other);
    free(out);
    io_rmtree(dir);
    free(dir);
    return s;
}

TEST(vm_fails_naming_an_input_that_changed)
{
    char msg[1024];
    bool left;
    CHECK_MSG(run_with(CHANGE_NONE, 1, true, true, msg, sizeof msg, &left) == CR_OK, "%s", msg);
    CHECK(left);   /* the output itself */

    for (unsigned threads = 1; threads <= 3; threads += 2) {
        CHECK_EQ_INT(run_with(CHANGE_REWRITE, threads, true, true, msg, sizeof msg, &left), CR_ERR_RUNTIME);
        CHECK_CONTAINS(msg, "in.safetensors changed while it was being read (written to");
        CHECK(!left);

        /* reads past the new end fault: the guard turns them into this
         * (without the input reader, whose pread would meet the end first) */
        CHECK_EQ_INT(run_with(CHANGE_TRUNCATE, threads, true, false, msg, sizeof msg, &left), CR_ERR_RUNTIME);
        CHECK_CONTAINS(msg, "in.safetensors changed while it was being read (a read past its end failed");
        CHECK(!left);
        /* with the reader (vm/reader.h): its pread or a fault, whichever
         * comes first, and the stat check names the change */
        CHECK_EQ_INT(run_with(CHANGE_TRUNCATE, threads, true, true, msg, sizeof msg, &left), CR_ERR_RUNTIME);
        CHECK_CONTAINS(msg, "in.safetensors changed while it was being read (");
        CHECK(!left);

        /* the mapping still holds the old file: the stat check sees the new one */
        CHECK_EQ_INT(run_with(CHANGE_REPLACE, threads, true, true, msg, sizeof msg, &left), CR_ERR_RUNTIME);
        CHECK_CONTAINS(msg, "in.safetensors changed while it was being read (replaced by another file)");
        CHECK(!left);
    }
    /* without a guard (a library user with no SIGBUS handler) a change that
     * does not fault is still caught by the stat check */
    CHECK_EQ_INT(run_with(CHANGE_REWRITE, 1, false, true, msg, sizeof msg, &left), CR_ERR_RUNTIME);
    CHECK_CONTAINS(msg, "changed while it was being read");
    CHECK(!left);
}

int main(void)
{
    RUN(file_id_detects_each_change);
    RUN(guard_turns_a_read_past_eof_into_zeros);
    RUN(vm_fails_naming_an_input_that_changed);
    return cr_test_summary();
}
