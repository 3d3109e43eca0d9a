/* test_spill.c — a torch tie-order gather kept in a file (vm/spill.h) sorts
 * to the same words as one in memory, holding only a window of the file in
 * RSS; the file never has a name in its directory, and a failure to make
 * it is an error naming the directory (spec/vm.md, torch tie order).
 *
 * The window is measured as the mapping's Rss in /proc/self/smaps, sampled
 * at every pager call (Linux only; elsewhere that check is skipped).
 */
#include "harness.h"
#include "base.h"
#include "io.h"
#include "memplan.h"
#include "spill.h"
#include "torchsort.h"
#include "support/io_support.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

static char *g_tmp;

/* Rss of the mapping that holds addr, KiB (-1: unknown) */
static long mapping_rss_kb(const void *addr)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    bool in = false;
    long kb = -1;
    uintptr_t a = (uintptr_t)addr;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {   /* a mapping's first line */
            in = a >= lo && a < hi;
            continue;
        }
        if (in && sscanf(line, "Rss: %ld kB", &kb) == 1) break;
    }
    fclose(f);
    return kb;
}

typedef struct probe { cr_spill *sp; long max_kb; unsigned calls; } probe;

static void probe_done(void *ud, const uint32_t *lo, const uint32_t *hi, bool rising)
{
    probe *pr = ud;
    long kb = mapping_rss_kb(pr->sp->base);
    if (kb > pr->max_kb) pr->max_kb = kb;
    pr->calls++;
    cr_spill_done(pr->sp, lo, hi, rising);
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* words of a bf16-like |delta| gather: few distinct keys, the one at n/3
 * tagged as the tie with its index */
static void fill(uint32_t *w, uint64_t n, uint64_t seed, uint32_t *tie)
{
    uint64_t st = seed;
    for (uint64_t i = 0; i < n; i++) w[i] = 0x3c000000u + ((uint32_t)(xorshift(&st) % 3000) << 16);
    *tie = w[n / 3];
    for (uint64_t i = 0; i < n; i++)
        if (w[i] == *tie) w[i] = CR_TORCHSORT_TIE | (uint32_t)i;
}

TEST(spilled_sort_is_the_same)
{
    const uint64_t n = (4u << 20) + 12345;   /* 16 MiB of words */
    uint32_t *mem = malloc(n * 4);
    REQUIRE(mem != NULL);
    /* 0: partition desc, 1: asc, 2: topk by heap select (k*64 <= n), 3: topk by introselect */
    for (int mode = 0; mode < 4; mode++) {
        cr_spill sp;
        cr_error err = {0};
        REQUIRE(cr_spill_open(&sp, NULL, g_tmp, n * 4, "a test gather", &err) == CR_OK);
        CHECK_EQ_INT(io_count_entries(g_tmp, ""), 2);   /* "." and "..": no name while it is used */
        uint32_t tie, *w = (uint32_t *)sp.base;
        fill(mem, n, 77 + mode, &tie);
        memcpy(w, mem, n * 4);
        cr_spill_done(&sp, w, w + n, true);
        probe pr = { &sp, 0, 0 };
        cr_torchsort_pager pg = { probe_done, &pr };
        uint64_t k = mode == 2 ? n / 100 : n / 2 + 7;
        if (mode < 2) {
            cr_torchsort_partition(&cr_kernels_scalar, mem, n, mode == 0, tie, &k, 1, NULL);
            cr_torchsort_partition(&cr_kernels_scalar, w, n, mode == 0, tie, &k, 1, &pg);
        } else {
            cr_torchsort_topk(&cr_kernels_scalar, mem, n, k, tie, NULL);
            cr_torchsort_topk(&cr_kernels_scalar, w, n, k, tie, &pg);
        }
        CHECK_MSG(memcmp(mem, w, n * 4) == 0, "mode %d: the spilled sort moved words differently", mode);
        CHECK(pr.calls > 0);
        /* the window memplan counts (CR_MEM_SPILL_SORT), and topk's heap */
        long limit = (long)((CR_MEM_SPILL_SORT + (mode == 2 ? k * 4 : 0)) >> 10);
        if (pr.max_kb >= 0)
            CHECK_MSG(pr.max_kb <= limit, "mode %d: %ld KiB of the gather resident, the model allows %ld", mode,
                      pr.max_kb, limit);
        cr_spill_close(&sp);
        CHECK(sp.base == NULL);
    }
    CHECK_EQ_INT(io_count_entries(g_tmp, ""), 2);
    free(mem);
}

/* a file system without O_TMPFILE: the spill gets a name and loses it at once */
static int no_tmpfile_open(void *ud, const char *path, int flags, int mode)
{
    const cr_io *inner = ud;
#ifdef O_TMPFILE
    if ((flags & O_TMPFILE) == O_TMPFILE) { errno = EOPNOTSUPP; return -1; }
#endif
    return inner->open(inner->ud, path, flags, mode);
}

TEST(spill_without_tmpfile_leaves_no_name)
{
    cr_io io = *cr_posix_io();
    io.open = no_tmpfile_open;
    io.ud = (void *)cr_posix_io();
    cr_spill sp;
    cr_error err = {0};
    REQUIRE(cr_spill_open(&sp, &io, g_tmp, 1 << 20, "a test gather", &err) == CR_OK);
    CHECK_EQ_INT(io_count_entries(g_tmp, ""), 2);
    ((uint32_t *)sp.base)[12345] = 7;
    CHECK_EQ_INT(((uint32_t *)sp.base)[12345], 7);
    CHECK_EQ_INT(((uint32_t *)sp.base)[12346], 0);
    cr_spill_close(&sp);
}

TEST(spill_failure_names_the_directory)
{
    cr_spill sp;
    cr_error err = {0};
    const char *gone = io_scratch(g_tmp, "no-such-dir");
    CHECK(cr_spill_open(&sp, NULL, gone, 1 << 20, "the tie-order gather of x.weight", &err) == CR_ERR_IO);
    CHECK_CONTAINS(err.msg, "no-such-dir");
    CHECK_CONTAINS(err.msg, "x.weight");
    CHECK(sp.base == NULL);
    /* an injected failure of the open (a full or broken disk) */
    cr_failing_io fio;
    cr_failing_io_init(&fio, cr_posix_io(), 0, CR_IO_FAULT_ENOSPC);
    CHECK(cr_spill_open(&sp, &fio.base, g_tmp, 1 << 20, "the tie-order gather of x.weight", &err) == CR_ERR_IO);
    CHECK_CONTAINS(err.msg, "No space left");
    CHECK_EQ_INT(io_count_entries(g_tmp, ""), 2);
}

int main(void)
{
    g_tmp = io_tmpdir("spill");
    if (!g_tmp) { fprintf(stderr, "cannot create a temporary directory\n"); return 1; }
    RUN(spilled_sort_is_the_same);
    RUN(spill_without_tmpfile_leaves_no_name);
    RUN(spill_failure_names_the_directory);
    io_rmtree(g_tmp);
    free(g_tmp);
    return cr_test_summary();
}
