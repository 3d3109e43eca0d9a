/* hasher.c — the prefix-hashing thread (hasher.h).
 *
 * Each shard keeps its outputs sorted by file offset and a cursor at the
 * first one not yet complete; the frontier is that output's offset (the
 * file's size once all are complete). A pass advances every cursor and
 * feeds [hashed, frontier) to the shard's XXH64 state in HASHER_BLOCK
 * reads. Bytes between outputs (none in the files crucible writes today)
 * are the ftruncate's zeros, never written, so they belong to the prefix.
 */
#include "hasher.h"
#include "outhash.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* The read buffer: smaller than the end-of-merge hash's CR_HASH_BLOCK
 * because it lives while the merge runs, inside --max-memory's budget
 * (budget_exact.sh's 8M ties went 100 KB over with 1 MiB); 128 KiB keeps
 * it in L2 and the syscalls at ~3,400 per 418 MB shard. */
#define HASHER_BLOCK (128u << 10)

typedef struct {
    int fd;                   /* -1: not written by this run */
    uint32_t *outs;           /* its outputs by offset */
    uint32_t n_outs, cursor;  /* outs[cursor] is the first not complete */
    uint64_t hashed;          /* bytes [0, hashed) are in st */
    cr_xxh64_state st;
} hshard;

struct cr_hasher {
    const cr_allocator *alloc;
    const cr_program *p;
    const volatile int *interrupt;
    bool sync;
    atomic_uint_fast64_t *left;   /* per output: bytes not yet written */
    hshard *sh;
    uint8_t *buf;
    pthread_t thread;
    atomic_bool quit;
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* to the thread: work or finish */
    pthread_cond_t done_cv;   /* from the thread: a pass ended, or it exited */
    /* under mu */
    bool pending, finishing, exited;
    uint64_t requested, passed;   /* sync: completions asked for, and covered by a finished pass */
    uint64_t tail;
    cr_status status;
    cr_error err;
};

typedef struct { uint64_t offset; uint32_t output; } by_off;

static int by_offset(const void *a, const void *b)
{
    uint64_t x = ((const by_off *)a)->offset, y = ((const by_off *)b)->offset;
    return x < y ? -1 : x > y;
}

/* one pass over every shard; `fin`: the bytes count towards the tail */
static cr_status hash_pass(cr_hasher *h, bool fin, cr_error *err)
{
    const cr_program *p = h->p;
    for (uint32_t i = 0; i < p->n_shards; i++) {
        hshard *s = &h->sh[i];
        if (s->fd < 0) continue;
        while (s->cursor < s->n_outs &&
               atomic_load_explicit(&h->left[s->outs[s->cursor]], memory_order_acquire) == 0)
            s->cursor++;
        uint64_t frontier = s->cursor < s->n_outs ? p->outputs[s->outs[s->cursor]].offset : p->shards[i].file_size;
        const char *name = cr_prog_str(p, p->shards[i].file_name);
        while (s->hashed < frontier) {
            if (atomic_load_explicit(&h->quit, memory_order_relaxed))
                return cr_fail(err, CR_ERR_INTERRUPTED, "interrupted");
            uint64_t to = CR_MIN(frontier, s->hashed + HASHER_BLOCK);
            cr_status st = cr_hash_fd_range(&s->st, s->fd, s->hashed, to, h->buf, HASHER_BLOCK, h->interrupt,
                                            name, err);
            if (st) return st;
            if (fin) h->tail += to - s->hashed;   /* only this thread writes it until the join */
            s->hashed = to;
        }
    }
    return CR_OK;
}

static void *hasher_main(void *ud)
{
    cr_hasher *h = ud;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (!h->pending && !h->finishing && !atomic_load(&h->quit)) pthread_cond_wait(&h->cv, &h->mu);
        if (atomic_load(&h->quit)) break;
        bool fin = h->finishing;
        uint64_t ticket = h->requested;
        h->pending = false;
        pthread_mutex_unlock(&h->mu);
        cr_error e = {0};
        cr_status st = hash_pass(h, fin, &e);
        pthread_mutex_lock(&h->mu);
        h->passed = ticket;
        pthread_cond_broadcast(&h->done_cv);
        if (st) { h->status = st; h->err = e; break; }
        if (fin) break;
    }
    h->exited = true;
    pthread_cond_broadcast(&h->done_cv);
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

static void hasher_free(cr_hasher *h)
{
    if (h->sh)
        for (uint32_t i = 0; i < h->p->n_shards; i++) cr_free(h->alloc, h->sh[i].outs);
    cr_free(h->alloc, h->sh);
    cr_free(h->alloc, (void *)h->left);
    cr_free(h->alloc, h->buf);
    cr_free(h->alloc, h);
}

cr_hasher *cr_hasher_start(const cr_allocator *a, const cr_program *p, const int *shard_fds,
                           const volatile int *interrupt, bool sync)
{
    cr_hasher *h = cr_calloc(a, 1, sizeof *h);
    if (!h) return NULL;
    h->alloc = a;
    h->p = p;
    h->interrupt = interrupt;
    h->sync = sync;
    h->left = cr_calloc(a, p->n_outputs ? p->n_outputs : 1, sizeof *h->left);
    h->sh = cr_calloc(a, p->n_shards ? p->n_shards : 1, sizeof *h->sh);
    h->buf = cr_malloc(a, HASHER_BLOCK);
    if (!h->left || !h->sh || !h->buf) { hasher_free(h); return NULL; }
    for (uint32_t i = 0; i < p->n_outputs; i++) {
        atomic_init(&h->left[i], p->outputs[i].nbytes);
        if (p->outputs[i].shard < p->n_shards) h->sh[p->outputs[i].shard].n_outs++;
    }
    by_off *order = cr_malloc(a, (p->n_outputs ? p->n_outputs : 1) * sizeof *order);
    if (!order) { hasher_free(h); return NULL; }
    for (uint32_t i = 0; i < p->n_outputs; i++) order[i] = (by_off){ p->outputs[i].offset, i };
    qsort(order, p->n_outputs, sizeof *order, by_offset);
    for (uint32_t i = 0; i < p->n_shards; i++) {
        hshard *s = &h->sh[i];
        s->fd = shard_fds[i];
        cr_xxh64_init(&s->st, 0);
        s->outs = cr_malloc(a, (s->n_outs ? s->n_outs : 1) * sizeof *s->outs);
        if (!s->outs) { cr_free(a, order); hasher_free(h); return NULL; }
        s->n_outs = 0;
    }
    for (uint32_t i = 0; i < p->n_outputs; i++) {
        uint32_t o = order[i].output;
        if (p->outputs[o].shard < p->n_shards) { hshard *s = &h->sh[p->outputs[o].shard]; s->outs[s->n_outs++] = o; }
    }
    cr_free(a, order);
    atomic_init(&h->quit, false);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    pthread_cond_init(&h->done_cv, NULL);
    h->pending = true;   /* the headers */
    if (pthread_create(&h->thread, NULL, hasher_main, h)) {
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        pthread_cond_destroy(&h->done_cv);
        hasher_free(h);
        return NULL;
    }
    return h;
}

void cr_hasher_wrote(cr_hasher *h, uint32_t output, uint64_t bytes)
{
    if (!h || !bytes) return;
    uint64_t before = atomic_fetch_sub_explicit(&h->left[output], bytes, memory_order_acq_rel);
    if (before != bytes) return;   /* not complete yet (or written twice: finish notices) */
    pthread_mutex_lock(&h->mu);
    h->pending = true;
    uint64_t ticket = ++h->requested;
    pthread_cond_signal(&h->cv);
    if (h->sync)
        while (h->passed < ticket && !h->exited) pthread_cond_wait(&h->done_cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
}

static void hasher_join(cr_hasher *h)
{
    pthread_join(h->thread, NULL);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    pthread_cond_destroy(&h->done_cv);
}

cr_status cr_hasher_finish(cr_hasher *h, uint64_t *hashes, uint64_t *tail, bool *complete, cr_error *err)
{
    pthread_mutex_lock(&h->mu);
    h->finishing = true;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    hasher_join(h);
    const cr_program *p = h->p;
    cr_status st = h->status;
    if (st) cr_fail(err, st, "%s", h->err.msg);
    *complete = true;
    for (uint32_t i = 0; !st && i < p->n_outputs; i++)
        if (atomic_load(&h->left[i]) != 0) *complete = false;
    for (uint32_t i = 0; !st && i < p->n_shards; i++) {
        const hshard *s = &h->sh[i];
        if (s->fd < 0) continue;
        if (s->hashed != p->shards[i].file_size) *complete = false;
        else hashes[i] = cr_xxh64_final(&s->st);
    }
    *tail = h->tail;
    hasher_free(h);
    return st;
}

void cr_hasher_abort(cr_hasher *h)
{
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    atomic_store(&h->quit, true);
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    hasher_join(h);
    hasher_free(h);
}
