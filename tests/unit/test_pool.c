/* test_pool.c — the thread pool: every task runs exactly once, jobs can be
 * repeated many times, a failing task stops the job, thread ids in range;
 * the one thread-count rule (cr_threads_resolve). */
#include "harness.h"
#include "pool.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "limits.h"

typedef struct job { atomic_int *hits; unsigned n_threads; atomic_int bad_thread; uint64_t fail_at; } job;

static int task(void *ud, uint64_t t, unsigned thread)
{
    job *j = ud;
    if (thread >= j->n_threads) atomic_store(&j->bad_thread, 1);
    atomic_fetch_add(&j->hits[t], 1);
    return t == j->fail_at ? 7 : 0;
}

TEST(every_task_once)
{
    for (unsigned nt = 1; nt <= 4; nt++) {
        cr_pool *p;
        cr_error err = {0};
        REQUIRE(cr_pool_init(cr_default_allocator(), nt, &p, &err) == CR_OK);
        CHECK_EQ_INT(cr_pool_threads(p), nt);
        enum { T = 1000 };
        atomic_int *hits = calloc(T, sizeof *hits);
        for (int rep = 0; rep < 200; rep++) {
            job j = { hits, nt, 0, UINT64_MAX };
            uint64_t n = (uint64_t)(rep % 7 == 0 ? 1 : rep % 13 == 0 ? 0 : T);
            for (int i = 0; i < T; i++) atomic_store(&hits[i], 0);
            CHECK_EQ_INT(cr_pool_run(p, n, task, &j), 0);
            int wrong = 0;
            for (uint64_t i = 0; i < T; i++) wrong += atomic_load(&hits[i]) != (i < n ? 1 : 0);
            CHECK_EQ_INT(wrong, 0);
            CHECK_EQ_INT(atomic_load(&j.bad_thread), 0);
        }
        free(hits);
        cr_pool_free(p);
    }
}

TEST(failure_stops_the_job)
{
    cr_pool *p;
    cr_error err = {0};
    REQUIRE(cr_pool_init(cr_default_allocator(), 3, &p, &err) == CR_OK);
    enum { T = 100000 };
    atomic_int *hits = calloc(T, sizeof *hits);
    job j = { hits, 3, 0, 10 };
    CHECK_EQ_INT(cr_pool_run(p, T, task, &j), 7);
    int ran = 0;
    for (int i = 0; i < T; i++) ran += atomic_load(&hits[i]);
    CHECK(ran < T);          /* stopped early */
    CHECK(atomic_load(&hits[10]) == 1);
    /* the pool is usable after a failed job */
    j.fail_at = UINT64_MAX;
    for (int i = 0; i < T; i++) atomic_store(&hits[i], 0);
    CHECK_EQ_INT(cr_pool_run(p, T, task, &j), 0);
    ran = 0;
    for (int i = 0; i < T; i++) ran += atomic_load(&hits[i]);
    CHECK_EQ_INT(ran, T);
    free(hits);
    cr_pool_free(p);
}

/* --threads N is N; left out (0), every online core, at most CR_LIMIT_THREADS */
TEST(thread_rule)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned cores = n > 0 ? (unsigned)n : 1;
    if (cores > CR_LIMIT_THREADS) cores = CR_LIMIT_THREADS;
    CHECK_EQ_INT(cr_threads_resolve(0), cores);
    CHECK_EQ_INT(cr_threads_resolve(1), 1);
    CHECK_EQ_INT(cr_threads_resolve(3), 3);
    CHECK_EQ_INT(cr_threads_resolve(CR_LIMIT_THREADS), CR_LIMIT_THREADS);
    CHECK_EQ_INT(cr_threads_resolve(CR_LIMIT_THREADS + 1), CR_LIMIT_THREADS);
}

/* tsan: runs threads; tools/sanitize.sh thread runs this test */
int main(void)
{
    RUN(every_task_once);
    RUN(failure_stops_the_job);
    RUN(thread_rule);
    return cr_test_summary();
}
