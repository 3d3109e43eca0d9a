/* test_reader.c — the input reader (vm/reader.h) and its read plan
 * (vm/readplan.h): the plan follows the schedule (first step that names a
 * view, overlapping views read once, touching ranges made one extent);
 * the reader reads every byte once, in the plan's order, never past the
 * window, through short reads; a read error or an end of file stops it
 * with a message naming the file, for every later wait too; an interrupt
 * and a stop end it without a hang; cached blocks are skipped; the POSIX
 * source reports a file truncated under it. */
#include "harness.h"
#include "readplan.h"
#include "reader.h"
#include "support/vm_build.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- the plan ---------------------------------------------------------------------- */

TEST(plan_follows_the_schedule)
{
    vm_builder b;
    vb_init(&b);
    uint32_t f0 = vb_file(&b, "a.safetensors", 1000, 0), f1 = vb_file(&b, "b.safetensors", 1000, 0);
    /* bf16 views of 50 elements: 100 bytes each */
    uint32_t v0 = vb_input(&b, f0, CR_DTYPE_BF16, "a.x", 500, 100, 1, 50, 50);
    uint32_t v1 = vb_input(&b, f1, CR_DTYPE_BF16, "b.x", 0, 100, 1, 50, 50);
    uint32_t v2 = vb_input(&b, f0, CR_DTYPE_BF16, "a.y", 0, 100, 1, 50, 50);
    uint32_t v3 = vb_input(&b, f0, CR_DTYPE_BF16, "a.x2", 550, 100, 1, 50, 50);   /* overlaps a.x */
    uint32_t v4 = vb_input(&b, f0, CR_DTYPE_BF16, "a.z", 100, 100, 1, 50, 50);    /* touches a.y */
    vb_m(&b, CR_OP_PREFETCH, CR_DTYPE_NONE, 0, v0, 0, 0);   /* pc 0 */
    vb_m(&b, CR_OP_PREFETCH, CR_DTYPE_NONE, 0, v1, 0, 0);   /* pc 1 */
    uint32_t k0 = vb_kernel_begin(&b, 1, 50, 50, 2, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, v0, 0, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 1, v1, 0, 0);
    vb_kernel_end(&b);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k0, 0, 0);     /* pc 2 */
    vb_m(&b, CR_OP_PREFETCH, CR_DTYPE_NONE, 0, v2, 0, 0);   /* pc 3 */
    uint32_t k1 = vb_kernel_begin(&b, 1, 50, 50, 2, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, v2, 0, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 1, v4, 0, 0);
    vb_kernel_end(&b);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k1, 0, 0);     /* pc 4 */
    vb_m(&b, CR_OP_COPY, CR_DTYPE_NONE, 0, v3, 0, 0);       /* pc 5 */
    cr_program p;
    vb_build(&b, &p);
    cr_read_plan rp;
    cr_error err = {0};
    REQUIRE(cr_read_plan_init(&rp, &p, NULL, &err) == CR_OK);
    /* a.x with a.x2 (150 bytes, named first at pc 0), b.x, then a.y and
     * a.z as one extent */
    REQUIRE(rp.n_ext == 3);
    CHECK(rp.ext[0].file == f0 && rp.ext[0].off == 500 && rp.ext[0].len == 150);
    CHECK(rp.ext[1].file == f1 && rp.ext[1].off == 0 && rp.ext[1].len == 100);
    CHECK(rp.ext[2].file == f0 && rp.ext[2].off == 0 && rp.ext[2].len == 200);
    CHECK_EQ_INT(rp.total, 450);
    CHECK_EQ_INT(rp.need[0], 0);   /* hints wait for nothing */
    CHECK_EQ_INT(rp.need[2], 250);
    CHECK_EQ_INT(rp.need[4], 450);
    CHECK_EQ_INT(rp.need[5], 150);
    cr_read_plan_free(&rp);
    cr_program_free(&p);
}

/* ---- the reader over a fake source ------------------------------------------------ */

typedef struct fake {
    pthread_mutex_t mu;
    uint64_t sizes[2];
    uint64_t read_to[2];       /* bytes read so far, per file (reads must be in order within an extent) */
    uint64_t requested;        /* bytes asked for, all files: the reader's position */
    uint64_t allowed;          /* what the test has allowed so far (set before each need) */
    int past_window, out_of_order;
    size_t short_max;          /* 0: full reads */
    long calls, fail_call;     /* fail_call: this call fails with EIO (-1: never) */
    uint64_t eof_at[2];        /* reads at or past this offset of the file return 0 */
    bool cached0;              /* file 0 is "in memory" */
    const cr_read_plan *plan;
    uint32_t ext;              /* the extent being read */
    uint64_t ext_done;
} fake;

static ssize_t fake_pread(void *ud, uint32_t file, void *buf, size_t n, uint64_t off)
{
    fake *f = ud;
    pthread_mutex_lock(&f->mu);
    long call = f->calls++;
    if (f->requested + n > f->allowed) f->past_window++;
    /* the read order: the plan's extents, byte after byte */
    while (f->ext < f->plan->n_ext && f->ext_done == f->plan->ext[f->ext].len) { f->ext++; f->ext_done = 0; }
    if (f->ext < f->plan->n_ext && f->cached0)   /* cached extents are skipped, not read */
        while (f->ext < f->plan->n_ext && f->plan->ext[f->ext].file == 0) { f->ext++; f->ext_done = 0; }
    if (f->ext >= f->plan->n_ext || f->plan->ext[f->ext].file != file || f->plan->ext[f->ext].off + f->ext_done != off)
        f->out_of_order++;
    pthread_mutex_unlock(&f->mu);
    if (call == f->fail_call) { errno = EIO; return -1; }
    if (off >= f->eof_at[file]) return 0;
    if (f->short_max && n > f->short_max) n = f->short_max;
    memset(buf, (int)(off & 0xff), n);
    pthread_mutex_lock(&f->mu);
    f->requested += n;
    f->ext_done += n;
    pthread_mutex_unlock(&f->mu);
    return (ssize_t)n;
}

static bool fake_cached(void *ud, uint32_t file, uint64_t off, uint64_t n)
{
    (void)off; (void)n;
    return ((fake *)ud)->cached0 && file == 0;
}

static const char *fake_name(void *ud, uint32_t file)
{
    (void)ud;
    return file ? "models/b/model.safetensors" : "models/a/model.safetensors";
}

/* extents alternating between two files of 40 MiB, in 5 MiB pieces */
static void fake_plan(cr_read_plan *rp, cr_read_extent *ext)
{
    *rp = (cr_read_plan){0};
    for (uint32_t i = 0; i < 16; i++) {
        ext[i] = (cr_read_extent){ .file = i & 1, .off = (uint64_t)(i / 2) * (5 << 20), .len = 5 << 20 };
        rp->total += ext[i].len;
    }
    rp->ext = ext;
    rp->n_ext = 16;
}

static void fake_init(fake *f, const cr_read_plan *rp)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->plan = rp;
    f->sizes[0] = f->sizes[1] = 40 << 20;
    f->eof_at[0] = f->eof_at[1] = UINT64_MAX;
    f->fail_call = -1;
}

static cr_status need(cr_reader *r, fake *f, uint64_t pos, uint64_t window, cr_error *err)
{
    pthread_mutex_lock(&f->mu);
    if (pos + window > f->allowed) f->allowed = pos + window;
    pthread_mutex_unlock(&f->mu);
    return cr_reader_need(r, pos, err);
}

static void run_fake(fake *f, const cr_read_plan *rp, uint64_t step, cr_status want, const char *want_msg)
{
    cr_read_source src = { .pread = fake_pread, .cached = fake_cached, .name = fake_name, .ud = f };
    const uint64_t window = CR_READ_WINDOW_MIN;
    f->allowed = window;   /* before the thread starts */
    cr_reader *r;
    cr_error err = {0};
    REQUIRE(cr_reader_start(cr_default_allocator(), rp, &src, window, NULL, &r, &err) == CR_OK);
    cr_status s = CR_OK;
    for (uint64_t pos = step; !s; pos += step) {
        if (pos > rp->total) pos = rp->total;
        s = need(r, f, pos, window, &err);
        if (pos == rp->total) break;
    }
    CHECK_EQ_INT(s, want);
    if (want_msg) CHECK_CONTAINS(err.msg, want_msg);
    if (want) {   /* every later wait gets the same error */
        cr_error again = {0};
        CHECK_EQ_INT(cr_reader_need(r, rp->total, &again), want);
        CHECK_STR(again.msg, err.msg);
    }
    cr_reader_stats st;
    cr_reader_stop(r, &st);
    CHECK_EQ_INT(f->past_window, 0);
    CHECK_EQ_INT(f->out_of_order, 0);
    if (!want) {
        CHECK_EQ_INT(st.bytes_read + st.bytes_cached, rp->total);
        CHECK_EQ_INT(f->requested, st.bytes_read);
    }
    pthread_mutex_destroy(&f->mu);
}

TEST(reads_in_order_within_the_window)
{
    cr_read_extent ext[16];
    cr_read_plan rp;
    fake_plan(&rp, ext);
    fake f;
    fake_init(&f, &rp);
    run_fake(&f, &rp, 3 << 20, CR_OK, NULL);   /* steps of 3 MiB: the reader must wait for them */
    fake_init(&f, &rp);
    run_fake(&f, &rp, 100003, CR_OK, NULL);    /* small odd steps */
}

TEST(short_reads)
{
    cr_read_extent ext[16];
    cr_read_plan rp;
    fake_plan(&rp, ext);
    fake f;
    fake_init(&f, &rp);
    f.short_max = 100000;   /* not a divisor of anything */
    run_fake(&f, &rp, 7 << 20, CR_OK, NULL);
    CHECK(f.calls > (long)(rp.total / 100000));
}

TEST(cached_blocks_are_skipped)
{
    cr_read_extent ext[16];
    cr_read_plan rp;
    fake_plan(&rp, ext);
    fake f;
    fake_init(&f, &rp);
    f.cached0 = true;
    run_fake(&f, &rp, 4 << 20, CR_OK, NULL);
    CHECK_EQ_INT(f.requested, rp.total / 2);   /* file 1 only */
}

TEST(end_of_file_names_the_file)
{
    cr_read_extent ext[16];
    cr_read_plan rp;
    fake_plan(&rp, ext);
    fake f;
    fake_init(&f, &rp);
    f.eof_at[1] = 12 << 20;   /* file b "truncated" at 12 MiB */
    run_fake(&f, &rp, 2 << 20, CR_ERR_RUNTIME, "input models/b/model.safetensors ends at byte 12582912, before the "
             "tensors the program reads (the file was truncated while the merge read it)");
}

TEST(read_error_names_the_file)
{
    cr_read_extent ext[16];
    cr_read_plan rp;
    fake_plan(&rp, ext);
    fake f;
    fake_init(&f, &rp);
    f.fail_call = (long)((50u << 20) / CR_READ_BUF);   /* 50 MiB in: the 11th extent (file a, at 25 MiB) */
    run_fake(&f, &rp, 1 << 20, CR_ERR_IO, "reading input models/a/model.safetensors at byte 26214400: Input/output error");
}

TEST(interrupt_and_stop)
{
    cr_read_extent ext[16];
    cr_read_plan rp;
    fake_plan(&rp, ext);
    fake f;
    fake_init(&f, &rp);
    cr_read_source src = { .pread = fake_pread, .name = fake_name, .ud = &f };
    f.allowed = UINT64_MAX;
    volatile int stop = 1;   /* interrupted before the first block */
    cr_reader *r;
    cr_error err = {0};
    REQUIRE(cr_reader_start(cr_default_allocator(), &rp, &src, CR_READ_WINDOW_MIN, &stop, &r, &err) == CR_OK);
    CHECK_EQ_INT(cr_reader_need(r, rp.total, &err), CR_ERR_INTERRUPTED);
    cr_reader_stop(r, NULL);
    /* stopped while it waits for the compute to ask for more: no hang */
    fake_init(&f, &rp);
    f.allowed = UINT64_MAX;
    REQUIRE(cr_reader_start(cr_default_allocator(), &rp, &src, CR_READ_WINDOW_MIN, NULL, &r, &err) == CR_OK);
    CHECK_EQ_INT(cr_reader_need(r, 1, &err), CR_OK);
    cr_reader_stop(r, NULL);
    /* stopped at once, before it has read anything */
    fake_init(&f, &rp);
    f.allowed = UINT64_MAX;
    REQUIRE(cr_reader_start(cr_default_allocator(), &rp, &src, CR_READ_WINDOW_MIN, NULL, &r, &err) == CR_OK);
    cr_reader_stop(r, NULL);
    pthread_mutex_destroy(&f.mu);
}

/* ---- the POSIX source ------------------------------------------------------------- */

TEST(posix_source_truncated_file)
{
    char *dir = vb_tempdir();
    REQUIRE(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/in.safetensors", dir);
    const size_t size = 3u << 20;
    uint8_t *data = malloc(size);
    REQUIRE(data);
    for (size_t i = 0; i < size; i++) data[i] = (uint8_t)(i * 7);
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp && fwrite(data, 1, size, fp) == size);
    fclose(fp);
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    uint8_t *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    REQUIRE(map != MAP_FAILED);
    cr_read_extent ext[2] = { { 0, 1 << 20, 2 << 20 }, { 0, 0, 1 << 20 } };
    cr_read_plan rp = { .ext = ext, .n_ext = 2, .total = 3 << 20 };
    int fds[1] = { fd };
    uint8_t *maps[1] = { map };
    uint64_t sizes[1] = { size };
    const char *names[1] = { path };
    cr_read_posix px = { fds, maps, sizes, names, 1 };
    cr_read_source src;
    cr_read_source_posix(&px, &src);
    /* whole: every byte read (or found cached), and the map agrees */
    cr_reader *r;
    cr_error err = {0};
    REQUIRE(cr_reader_start(cr_default_allocator(), &rp, &src, CR_READ_WINDOW, NULL, &r, &err) == CR_OK);
    CHECK_EQ_INT(cr_reader_need(r, rp.total, &err), CR_OK);
    cr_reader_stats st;
    cr_reader_stop(r, &st);
    CHECK_EQ_INT(st.bytes_read + st.bytes_cached, rp.total);
    CHECK(memcmp(map, data, size) == 0);
    /* truncated to 1.5 MiB under the reader: the file is named */
    REQUIRE(truncate(path, 3u << 19) == 0);
    REQUIRE(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
    REQUIRE(cr_reader_start(cr_default_allocator(), &rp, &src, CR_READ_WINDOW, NULL, &r, &err) == CR_OK);
    CHECK_EQ_INT(cr_reader_need(r, rp.total, &err), CR_ERR_RUNTIME);
    CHECK_CONTAINS(err.msg, path);
    CHECK_CONTAINS(err.msg, "ends at byte 1572864");
    cr_reader_stop(r, NULL);
    munmap(map, size);
    close(fd);
    free(data);
    vb_rmtree(dir);
    free(dir);
}

int main(void)
{
    RUN(plan_follows_the_schedule);
    RUN(reads_in_order_within_the_window);
    RUN(short_reads);
    RUN(cached_blocks_are_skipped);
    RUN(end_of_file_names_the_file);
    RUN(read_error_names_the_file);
    RUN(interrupt_and_stop);
    RUN(posix_source_truncated_file);
    return cr_test_summary();
}
