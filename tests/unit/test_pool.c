/* test_pool.c — the thread pool: every task runs exactly once, jobs can be
 * repeated many times, a failing task stops the job, thread ids in range. */
#include "harness.h"
#include "pool.h"

#include <stdatomic.h>
#include <stdlib.h>

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

int main(void)
{
    RUN(every_task_once);
    RUN(failure_stops_the_job);
    return cr_test_summary();
}
