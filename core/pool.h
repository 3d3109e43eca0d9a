/* pool.h — the persistent thread pool of the VM and of the forward pass
 * (infer/forward.c). It lives in core/ so that both layers share it.
 *
 * Workers are created once per run and sleep on a condition variable
 * between jobs. A job is `n_tasks` independent tasks (a kernel's chunks);
 * every thread, the caller included, claims the next task from an atomic
 * counter until none are left, and cr_pool_run returns only when all claimed
 * tasks have finished (the barrier at a kernel's end). Which thread runs a
 * task is unspecified, so tasks must write results to per-task slots; the
 * VM's determinism rests on that (spec/vm.md).
 */
#ifndef CR_POOL_H
#define CR_POOL_H

#include "base.h"

typedef struct cr_pool cr_pool;

/* A task: returns 0 to go on, non-zero to stop the job (no new tasks are
 * claimed; tasks already running finish). `thread` is 0..n_threads-1,
 * 0 being the caller of cr_pool_run. */
typedef int (*cr_pool_task_fn)(void *ud, uint64_t task, unsigned thread);

/* Start n_threads - 1 workers (n_threads >= 1). *out is owned by the caller
 * and released with cr_pool_free. Errors: CR_ERR_NOMEM, CR_ERR_IO
 * (pthread_create failed). */
cr_status cr_pool_init(const cr_allocator *alloc, unsigned n_threads, cr_pool **out, cr_error *err);
unsigned cr_pool_threads(const cr_pool *p);
/* Run tasks 0..n_tasks-1; returns the first non-zero task result (0 if all
 * succeeded). Not reentrant: one job at a time, from one thread. */
int cr_pool_run(cr_pool *p, uint64_t n_tasks, cr_pool_task_fn fn, void *ud);
/* Join the workers and free the pool (NULL is fine). */
void cr_pool_free(cr_pool *p);

/* The one thread-count rule (spec/architecture.md, "Command-line options"):
 * `requested` when it is not 0, else the number of online cores; at most
 * CR_LIMIT_THREADS, at least 1. The VM, `plan`'s memory model, MoE gates
 * and `eval` all resolve --threads through it. */
unsigned cr_threads_resolve(unsigned requested);

#endif
