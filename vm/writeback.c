/* writeback.c — the write-back thread (writeback.h). */
#include "writeback.h"

#include <pthread.h>
#include <string.h>

struct cr_writeback {
    const cr_allocator *alloc;
    const cr_io *io;
    int *fds;
    uint32_t n_fds;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool pending, quit;
};

static void *writeback_main(void *ud)
{
    cr_writeback *w = ud;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->pending && !w->quit) pthread_cond_wait(&w->cv, &w->mu);
        if (w->quit) break;
        w->pending = false;
        pthread_mutex_unlock(&w->mu);
        for (uint32_t i = 0; i < w->n_fds; i++)
            if (w->fds[i] >= 0) w->io->writeback(w->io->ud, w->fds[i]);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

cr_writeback *cr_writeback_start(const cr_allocator *a, const cr_io *io, const int *fds, uint32_t n)
{
    if (!io->writeback || !n) return NULL;
    cr_writeback *w = cr_calloc(a, 1, sizeof *w);
    if (!w) return NULL;
    w->fds = cr_malloc(a, n * sizeof *w->fds);
    if (!w->fds) { cr_free(a, w); return NULL; }
    memcpy(w->fds, fds, n * sizeof *fds);
    w->alloc = a;
    w->io = io;
    w->n_fds = n;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, writeback_main, w)) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        cr_free(a, w->fds);
        cr_free(a, w);
        return NULL;
    }
    return w;
}

void cr_writeback_kick(cr_writeback *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->pending = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void cr_writeback_stop(cr_writeback *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    cr_free(w->alloc, w->fds);
    cr_free(w->alloc, w);
}
