/* pool.c — persistent pthread pool with atomic task claiming (pool.h). */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "limits.h"

typedef struct worker {
    cr_pool *pool;
    pthread_t tid;
    unsigned index;
} worker;

struct cr_pool {
    const cr_allocator *alloc;
    unsigned n_threads;
    worker *workers;           /* n_threads - 1 of them */
    unsigned n_started;

    pthread_mutex_t mu;
    pthread_cond_t wake;       /* a new job (or shutdown) */
    pthread_cond_t done;       /* a worker finished its share */
    uint64_t generation;       /* bumped per job, under mu */
    unsigned busy;             /* workers still in the current job */
    bool shutdown;

    /* the current job; written under mu before the generation bump */
    cr_pool_task_fn fn;
    void *ud;
    uint64_t n_tasks;
    atomic_uint_fast64_t next;
    atomic_int result;
};

static void work(cr_pool *p, unsigned thread)
{
    for (;;) {
        if (atomic_load_explicit(&p->result, memory_order_relaxed)) return;
        uint64_t t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= p->n_tasks) return;
        int r = p->fn(p->ud, t, thread);
        if (r) {
            int zero = 0;
            atomic_compare_exchange_strong(&p->result, &zero, r);
        }
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    cr_pool *p = w->pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->shutdown && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->shutdown) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        work(p, w->index);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

cr_status cr_pool_init(const cr_allocator *alloc, unsigned n_threads, cr_pool **out, cr_error *err)
{
    *out = NULL;
    if (n_threads == 0) n_threads = 1;
    cr_pool *p = cr_calloc(alloc, 1, sizeof *p);
    if (!p) return cr_fail(err, CR_ERR_NOMEM, "out of memory creating the thread pool");
    p->alloc = alloc;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
    atomic_init(&p->result, 0);
    if (n_threads > 1) {
        p->workers = cr_calloc(alloc, n_threads - 1, sizeof *p->workers);
        if (!p->workers) { cr_pool_free(p); return cr_fail(err, CR_ERR_NOMEM, "out of memory creating the thread pool"); }
        for (unsigned i = 0; i + 1 < n_threads; i++) {
            worker *w = &p->workers[i];
            w->pool = p;
            w->index = i + 1;
            int e = pthread_create(&w->tid, NULL, worker_main, w);
            if (e) { cr_pool_free(p); return cr_fail_errno(err, e, "cannot start worker thread %u", i + 1); }
            p->n_started++;
        }
    }
    *out = p;
    return CR_OK;
}

unsigned cr_pool_threads(const cr_pool *p) { return p->n_threads; }

int cr_pool_run(cr_pool *p, uint64_t n_tasks, cr_pool_task_fn fn, void *ud)
{
    if (n_tasks == 0) return 0;
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ud = ud;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    atomic_store(&p->result, 0);
    /* wake workers only when there is more than one task to share */
    bool share = p->n_started > 0 && n_tasks > 1;
    if (share) {
        p->busy = p->n_started;
        p->generation++;
        pthread_cond_broadcast(&p->wake);
    }
    pthread_mutex_unlock(&p->mu);
    work(p, 0);
    if (share) {
        pthread_mutex_lock(&p->mu);
        while (p->busy) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    return atomic_load(&p->result);
}

void cr_pool_free(cr_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->shutdown = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n_started; i++) pthread_join(p->workers[i].tid, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    cr_free(p->alloc, p->workers);
    cr_free(p->alloc, p);
}

unsigned cr_threads_resolve(unsigned requested)
{
    if (!requested) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        requested = n > 0 ? (unsigned)(n < (long)CR_LIMIT_THREADS ? n : (long)CR_LIMIT_THREADS) : 1;
    }
    return requested > CR_LIMIT_THREADS ? CR_LIMIT_THREADS : requested;
}
