/* outstream.c — the output stream (outstream.h): the plan that decides
 * which shards stream, the window of blocks and the writer thread.
 *
 * A shard's window is a ring of `slots` blocks: file block b lives in slot
 * b % slots while frontier <= b < frontier + slots, where the frontier is
 * the first block not yet written out. Each slot counts the bytes put in
 * it; the block is full when the count reaches the block's length (the
 * last block of a file is shorter). The writer thread takes full blocks at
 * each shard's frontier, feeds them to the shard's XXH64 state and writes
 * them, then resets the slot for the block that enters the window.
 *
 * The O_DIRECT descriptors are closed with close(2), not through the
 * cr_io table: nothing is buffered behind them, so their close has
 * nothing to report (the ordinary descriptor's fsync and close do).
 *
 * The header is never written by anyone: it is a blob of the program, so
 * a slot whose block holds header bytes starts with them copied in and
 * counted. A shard takes a ring (one of plan.rings) at its first write and
 * gives it back when its last block is out, so windows are only held for
 * shards being written.
 */
#include "outstream.h"
#include "hash.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the plan ------------------------------------------------------------- */

static uint64_t up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

typedef struct { uint64_t offset, end; } span;

static int by_start(const void *a, const void *b)
{
    uint64_t x = ((const span *)a)->offset, y = ((const span *)b)->offset;
    return x < y ? -1 : x > y;
}

/* do shard i's header and outputs tile its file exactly? (today's files
 * do; a gap would be bytes nobody writes, which a block could never count) */
static bool tiles(const cr_program *p, uint32_t i, span *tmp)
{
    const cr_prog_shard *sh = &p->shards[i];
    uint32_t n = 0;
    for (uint32_t o = 0; o < p->n_outputs; o++)
        if (p->outputs[o].shard == i && p->outputs[o].nbytes)
            tmp[n++] = (span){ p->outputs[o].offset, p->outputs[o].offset + p->outputs[o].nbytes };
    if (!n || !sh->header.len) return false;
    qsort(tmp, n, sizeof *tmp, by_start);
    uint64_t at = sh->header.len;
    for (uint32_t k = 0; k < n; k++) {
        if (tmp[k].offset != at) return false;
        at = tmp[k].end;
    }
    return at == sh->file_size;
}

typedef struct {
    uint64_t nblk, F, size;
    uint64_t *fill;
    uint32_t need;
    bool on, touched, bad;
} simshard;

typedef struct {
    const cr_program *p;
    uint64_t B;
    simshard *s;
    uint32_t open, max_open;
} sim;

static uint64_t blk_len(uint64_t size, uint64_t B, uint64_t b) { return CR_MIN(B, size - b * B); }

static void sim_advance(sim *g, simshard *s)
{
    while (s->F < s->nblk && s->fill[s->F] == blk_len(s->size, g->B, s->F)) s->F++;
}

/* bytes [lo, hi) of shard i are written, one block at a time (as
 * cr_outstream_write puts them): how far past the frontier each lands */
static void sim_write(sim *g, uint32_t i, uint64_t lo, uint64_t hi)
{
    simshard *s = &g->s[i];
    if (!s->on || s->bad || lo >= hi) return;
    if (!s->touched) {
        s->touched = true;
        if (++g->open > g->max_open) g->max_open = g->open;
    }
    while (lo < hi) {
        uint64_t b = lo / g->B, end = CR_MIN(hi, (b + 1) * g->B);
        if (b < s->F || end > s->size) { s->bad = true; return; }   /* written twice */
        uint64_t ahead = b - s->F + 1;
        if (ahead > s->need) s->need = (uint32_t)CR_MIN(ahead, (uint64_t)UINT32_MAX);
        s->fill[b] += end - lo;
        if (s->fill[b] > blk_len(s->size, g->B, b)) { s->bad = true; return; }
        lo = end;
        sim_advance(g, s);
    }
    if (s->F == s->nblk) g->open--;
}

/* replay p's main stream: KERNEL chunks in increasing order, each chunk's
 * STOREs in code order (interp_kernel.c writes them after the chunk), and
 * COPYs as one contiguous range (run_copy's pieces follow each other) */
static void sim_run(sim *g)
{
    const cr_program *p = g->p;
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        const cr_insn *in = &p->main[pc];
        if (in->op == CR_OP_COPY) {
            const cr_prog_output *o = &p->outputs[in->dst];
            if (o->shard < p->n_shards) sim_write(g, o->shard, o->offset, o->offset + o->nbytes);
            continue;
        }
        if (in->op != CR_OP_KERNEL) continue;
        const cr_prog_kernel *k = &p->kernels[in->a];
        uint64_t n = k->rows * k->cols;
        if (!k->chunk) continue;
        for (uint64_t c = 0; c * k->chunk < n; c++) {
            uint64_t cbase = c * k->chunk, cn = CR_MIN(k->chunk, n - cbase);
            for (uint32_t i = 0; i < k->code_len; i++) {
                const cr_insn *st = &p->code[k->code_begin + i];
                if (st->op != CR_OP_STORE) continue;
                const cr_prog_output *o = &p->outputs[st->dst];
                if (o->shard >= p->n_shards) continue;
                uint64_t sz = cr_dtype_size((cr_dtype)o->dtype);
                sim_write(g, o->shard, o->offset + cbase * sz, o->offset + (cbase + cn) * sz);
            }
        }
    }
}

/* one replay at block size B over the shards marked in on[]; the shards
 * that turn out unfit are cleared in on[]. Returns false on no memory. */
static bool simulate(const cr_program *p, uint64_t B, uint8_t *on, uint32_t *need, uint32_t *rings,
                     const cr_allocator *a)
{
    sim g = { .p = p, .B = B };
    g.s = cr_calloc(a, p->n_shards, sizeof *g.s);
    if (!g.s) return false;
    bool ok = true;
    for (uint32_t i = 0; i < p->n_shards && ok; i++) {
        simshard *s = &g.s[i];
        s->on = on[i];
        if (!s->on) continue;
        s->size = p->shards[i].file_size;
        s->nblk = (s->size + B - 1) / B;
        s->fill = cr_calloc(a, s->nblk, sizeof *s->fill);
        if (!s->fill) { ok = false; break; }
        uint64_t h = p->shards[i].header.len;   /* in the slots from the start */
        for (uint64_t b = 0; b * B < h; b++) s->fill[b] = CR_MIN(h, (b + 1) * B) - b * B;
        sim_advance(&g, s);
    }
    if (ok) sim_run(&g);
    for (uint32_t i = 0; i < p->n_shards; i++) {
        simshard *s = &g.s[i];
        if (ok && s->on && (s->bad || !s->touched || s->F != s->nblk)) on[i] = 0;
        need[i] = ok && on[i] ? s->need : 0;
        cr_free(a, s->fill);
    }
    *rings = g.max_open;
    cr_free(a, g.s);
    return ok;
}

cr_status cr_outstream_plan_init(cr_outstream_plan *sp, const cr_program *p, uint64_t room, const cr_allocator *a,
                                 cr_error *err)
{
    memset(sp, 0, sizeof *sp);
    sp->alloc = a;
    if (!p->n_shards) return CR_OK;
    sp->on = cr_calloc(a, p->n_shards, 1);
    sp->need = cr_calloc(a, p->n_shards, sizeof *sp->need);
    span *tmp = cr_malloc(a, (p->n_outputs ? p->n_outputs : 1) * sizeof *tmp);
    if (!sp->on || !sp->need || !tmp) {
        cr_free(a, tmp);
        cr_outstream_plan_free(sp);
        return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    }
    uint8_t *fit = cr_malloc(a, p->n_shards);
    if (!fit) { cr_free(a, tmp); cr_outstream_plan_free(sp); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
    for (uint32_t i = 0; i < p->n_shards; i++) fit[i] = tiles(p, i, tmp);
    cr_free(a, tmp);
    /* the largest block whose windows fit the room */
    for (uint64_t B = CR_OUTSTREAM_BLOCK; B >= CR_OUTSTREAM_BLOCK_MIN; B /= 4) {
        memcpy(sp->on, fit, p->n_shards);
        uint32_t rings = 0;
        /* twice: the second replay counts only the shards that stay. A
         * shard whose schedule runs far from file order (a frankenmerge's
         * layers renumbered: "layers.10" sorts before "layers.2") would
         * need a window of much of the file: it keeps today's path, whose
         * memory does not grow with the disorder. */
        bool ok = simulate(p, B, sp->on, sp->need, &rings, a);
        for (uint32_t i = 0; ok && i < p->n_shards; i++)
            if (sp->on[i] && (uint64_t)sp->need[i] * B > CR_OUTSTREAM_WINDOW) sp->on[i] = 0;
        if (!ok || !simulate(p, B, sp->on, sp->need, &rings, a)) {
            cr_free(a, fit);
            cr_outstream_plan_free(sp);
            return cr_fail(err, CR_ERR_NOMEM, "out of memory");
        }
        uint32_t need = 0;
        uint64_t nblk = 0, size = 0;
        for (uint32_t i = 0; i < p->n_shards; i++) {
            if (!sp->on[i]) continue;
            need = CR_MAX(need, sp->need[i]);
            size = CR_MAX(size, p->shards[i].file_size);
            nblk = CR_MAX(nblk, (p->shards[i].file_size + B - 1) / B);
        }
        if (!need || !rings) break;   /* nothing streams */
        uint64_t slots = CR_MIN(CR_MAX((uint64_t)need, CR_OUTSTREAM_WINDOW / B), nblk);
        /* resident: what the slots touch (a window larger than the file
         * touches only the file's pages), plus the alignment's page */
        uint64_t ring = CR_MIN(slots * B, up(size, CR_OUTSTREAM_ALIGN)) + CR_OUTSTREAM_ALIGN;
        if (room != UINT64_MAX && rings * ring > room) {
            uint64_t fits = room / rings > CR_OUTSTREAM_ALIGN ? (room / rings - CR_OUTSTREAM_ALIGN) / B : 0;
            if (fits < need) continue;   /* a smaller block, or nothing */
            slots = fits;
            ring = CR_MIN(slots * B, up(size, CR_OUTSTREAM_ALIGN)) + CR_OUTSTREAM_ALIGN;
        }
        sp->block = B;
        sp->slots = (uint32_t)slots;
        sp->rings = rings;
        sp->bytes = rings * ring;
        for (uint32_t i = 0; i < p->n_shards; i++) sp->n_on += sp->on[i];
        break;
    }
    cr_free(a, fit);
    if (!sp->block) {
        memset(sp->on, 0, p->n_shards);
        sp->n_on = 0;
    }
    return CR_OK;
}

void cr_outstream_plan_free(cr_outstream_plan *sp)
{
    if (sp->alloc) {
        cr_free(sp->alloc, sp->on);
        cr_free(sp->alloc, sp->need);
    }
    sp->on = NULL;
    sp->need = NULL;
    sp->n_on = 0;
    sp->block = 0;
}

/* ---- the stream ------------------------------------------------------------- */

typedef struct {
    uint8_t *raw, *base;          /* base: raw aligned to CR_OUTSTREAM_ALIGN */
    atomic_uint_fast64_t *fill;   /* per slot: bytes put in it */
    bool busy;                    /* under mu */
} oring;

typedef struct {
    bool on;
    int bfd, dfd;                 /* dfd: O_DIRECT, or -1 */
    bool direct_ok;               /* an O_DIRECT write went through */
    uint64_t size, nblk;
    const uint8_t *header;
    uint64_t header_len;
    uint64_t F;                   /* frontier block (under mu; the thread moves it) */
    int ring;                     /* -1: none held (under mu) */
    oring *r;                     /* rings[ring], read by writers after they saw ring set under mu */
    const char *path;
    cr_xxh64_state st;            /* the writer thread's */
} oshard;

struct cr_outstream {
    const cr_allocator *alloc;
    const cr_io *io;
    const cr_program *p;
    const volatile int *interrupt;
    uint64_t B;
    uint32_t slots, n_rings;
    oshard *sh;
    oring *rings;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work;          /* to the thread: a block is full, or finish/quit */
    pthread_cond_t moved;         /* to writers: a frontier moved, a ring is free, or failure */
    /* under mu */
    bool finishing, quit, failed;
    cr_status status;
    cr_error err;
    uint64_t direct_blocks;
};

static uint64_t s_blk_len(const cr_outstream *s, const oshard *h, uint64_t b)
{
    return blk_len(h->size, s->B, b);
}

/* block b enters the window in slot b % slots: count the header bytes it
 * holds, copied in (under mu, before any writer may touch the slot) */
static void slot_enter(cr_outstream *s, oshard *h, uint64_t b)
{
    uint8_t *slot = h->r->base + (b % s->slots) * s->B;
    uint64_t lo = b * s->B, hi = CR_MIN(h->header_len, lo + s->B);
    uint64_t n = hi > lo ? hi - lo : 0;
    if (n) memcpy(slot, h->header + lo, (size_t)n);
    atomic_store_explicit(&h->r->fill[b % s->slots], n, memory_order_release);
}

static bool block_full(const cr_outstream *s, const oshard *h)
{
    return h->ring >= 0 && h->F < h->nblk &&
           atomic_load_explicit(&h->r->fill[h->F % s->slots], memory_order_acquire) == s_blk_len(s, h, h->F);
}

/* the output whose bytes include file offset `off` of shard i (for messages) */
static const char *tensor_at(const cr_outstream *s, uint32_t i, uint64_t off)
{
    const cr_program *p = s->p;
    for (uint32_t o = 0; o < p->n_outputs; o++)
        if (p->outputs[o].shard == i && off >= p->outputs[o].offset && off < p->outputs[o].offset + p->outputs[o].nbytes)
            return cr_prog_str(p, p->outputs[o].name);
    return "the header";
}

/* write block b of shard i: full, aligned blocks with O_DIRECT while the
 * file system takes them; the last, shorter block (and every block once
 * O_DIRECT was refused) through the ordinary descriptor */
static int put_block(cr_outstream *s, oshard *h, uint64_t b, const uint8_t *buf, uint64_t len)
{
    uint64_t off = b * s->B;
    if (h->dfd >= 0 && len % CR_OUTSTREAM_ALIGN == 0) {
        int e = cr_io_write_all(s->io, h->dfd, buf, len, off);
        if (!e) { h->direct_ok = true; s->direct_blocks++; return 0; }
        /* refused at the first write (tmpfs on old kernels, some FUSE and
         * NFS): the same blocks, buffered. A short O_DIRECT write that then
         * fails leaves nothing the buffered rewrite does not cover. */
        if (e != EINVAL || h->direct_ok) return e;
        close(h->dfd);
        h->dfd = -1;
    }
    return cr_io_write_all(s->io, h->bfd, buf, len, off);
}

static void fail_locked(cr_outstream *s, cr_status st, const cr_error *e)
{
    if (!s->failed) {
        s->failed = true;
        s->status = st;
        s->err = *e;
    }
    pthread_cond_broadcast(&s->moved);
    pthread_cond_broadcast(&s->work);
}

static void *writer_main(void *ud)
{
    cr_outstream *s = ud;
    const cr_program *p = s->p;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->quit || s->failed) break;
        oshard *h = NULL;
        uint32_t i = 0;
        for (; i < p->n_shards; i++)
            if (s->sh[i].on && block_full(s, &s->sh[i])) { h = &s->sh[i]; break; }
        if (!h) {
            if (s->finishing) break;
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        uint64_t b = h->F, len = s_blk_len(s, h, b);
        const uint8_t *buf = h->r->base + (b % s->slots) * s->B;
        pthread_mutex_unlock(&s->mu);
        cr_xxh64_update(&h->st, buf, (size_t)len);
        int e = put_block(s, h, b, buf, len);
        pthread_mutex_lock(&s->mu);
        if (e) {
            cr_error er = {0};
            cr_fail_errno(&er, e, "writing %s to %s", tensor_at(s, i, b * s->B), h->path);
            fail_locked(s, CR_ERR_IO, &er);
            break;
        }
        h->F++;
        if (h->F == h->nblk) {   /* the shard is out: its window goes back */
            h->r->busy = false;
            h->ring = -1;
        } else if (h->F + s->slots - 1 < h->nblk) {
            slot_enter(s, h, h->F + s->slots - 1);
        }
        pthread_cond_broadcast(&s->moved);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void stream_free(cr_outstream *s)
{
    if (s->sh)
        for (uint32_t i = 0; i < s->p->n_shards; i++)
            if (s->sh[i].dfd >= 0) close(s->sh[i].dfd);
    if (s->rings)
        for (uint32_t r = 0; r < s->n_rings; r++) {
            cr_free(s->alloc, s->rings[r].raw);
            cr_free(s->alloc, (void *)s->rings[r].fill);
        }
    cr_free(s->alloc, s->rings);
    cr_free(s->alloc, s->sh);
    cr_free(s->alloc, s);
}

cr_outstream *cr_outstream_start(const cr_allocator *a, const cr_io *io, const cr_program *p,
                                 const cr_outstream_plan *sp, const int *bfds, const int *dfds,
                                 const char *const *paths, const volatile int *interrupt)
{
    cr_outstream *s = sp->n_on ? cr_calloc(a, 1, sizeof *s) : NULL;
    if (!s) {
        for (uint32_t i = 0; i < p->n_shards; i++) if (dfds[i] >= 0) close(dfds[i]);
        return NULL;
    }
    s->alloc = a;
    s->io = io;
    s->p = p;
    s->interrupt = interrupt;
    s->B = sp->block;
    s->slots = sp->slots;
    s->n_rings = sp->rings;
    s->sh = cr_calloc(a, p->n_shards, sizeof *s->sh);
    s->rings = cr_calloc(a, s->n_rings, sizeof *s->rings);
    if (!s->sh || !s->rings) {
        if (s->sh) for (uint32_t i = 0; i < p->n_shards; i++) s->sh[i].dfd = -1;
        for (uint32_t i = 0; i < p->n_shards; i++) if (dfds[i] >= 0) close(dfds[i]);
        stream_free(s);
        return NULL;
    }
    for (uint32_t i = 0; i < p->n_shards; i++) {
        oshard *h = &s->sh[i];
        h->on = sp->on[i] && bfds[i] >= 0;
        h->dfd = dfds[i];
        if (!h->on && h->dfd >= 0) { close(h->dfd); h->dfd = -1; }
        h->bfd = bfds[i];
        h->size = p->shards[i].file_size;
        h->nblk = (h->size + s->B - 1) / s->B;
        h->header = p->blobs + p->shards[i].header.off;
        h->header_len = p->shards[i].header.len;
        h->ring = -1;
        h->path = paths[i];
        cr_xxh64_init(&h->st, 0);
    }
    /* the windows: allocated whole, touched only as blocks fill them */
    uint64_t ring_bytes = (uint64_t)s->slots * s->B;
    for (uint32_t r = 0; r < s->n_rings; r++) {
        oring *g = &s->rings[r];
        g->raw = cr_malloc(a, (size_t)(ring_bytes + CR_OUTSTREAM_ALIGN));
        g->fill = cr_calloc(a, s->slots, sizeof *g->fill);
        if (!g->raw || !g->fill) { stream_free(s); return NULL; }
        g->base = (uint8_t *)(((uintptr_t)g->raw + CR_OUTSTREAM_ALIGN - 1) & ~(uintptr_t)(CR_OUTSTREAM_ALIGN - 1));
        for (uint32_t k = 0; k < s->slots; k++) atomic_init(&g->fill[k], 0);
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->moved, NULL);
    if (pthread_create(&s->thread, NULL, writer_main, s)) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->work);
        pthread_cond_destroy(&s->moved);
        stream_free(s);
        return NULL;
    }
    return s;
}

bool cr_outstream_on(const cr_outstream *s, uint32_t shard) { return s && s->sh[shard].on; }

/* wait on `moved` for at most 20 ms, so an interrupt is seen */
static void wait_moved(cr_outstream *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 20 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    pthread_cond_timedwait(&s->moved, &s->mu, &ts);
}

cr_status cr_outstream_write(cr_outstream *s, uint32_t shard, uint64_t off, const void *buf, uint64_t n,
                             cr_error *err)
{
    oshard *h = &s->sh[shard];
    const uint8_t *src = buf;
    while (n) {
        uint64_t b = off / s->B, boff = off - b * s->B, len = CR_MIN(n, s->B - boff);
        pthread_mutex_lock(&s->mu);
        for (;;) {
            if (s->failed) break;
            if (s->interrupt && *s->interrupt) {
                pthread_mutex_unlock(&s->mu);
                return cr_fail(err, CR_ERR_INTERRUPTED, "interrupted");
            }
            if (b >= h->nblk || b < h->F || (h->ring < 0 && h->F == h->nblk)) {
                cr_error e = {0};
                cr_fail(&e, CR_ERR_RUNTIME, "output stream: bytes of %s in %s written twice or past its end",
                        tensor_at(s, shard, off), h->path);
                fail_locked(s, CR_ERR_RUNTIME, &e);
                break;
            }
            if (h->ring < 0) {   /* the shard's first write: take a window */
                uint32_t r = 0;
                while (r < s->n_rings && s->rings[r].busy) r++;
                if (r == s->n_rings) { wait_moved(s); continue; }
                s->rings[r].busy = true;
                h->ring = (int)r;
                h->r = &s->rings[r];
                for (uint64_t k = h->F; k < h->F + s->slots && k < h->nblk; k++) slot_enter(s, h, k);
                pthread_cond_signal(&s->work);   /* header blocks may be full already */
            }
            if (b < h->F + s->slots) break;
            wait_moved(s);
        }
        if (s->failed) {
            cr_status st = cr_fail(err, s->status, "%s", s->err.msg);
            err->sys_errno = s->err.sys_errno;
            pthread_mutex_unlock(&s->mu);
            return st;
        }
        oring *r = h->r;
        pthread_mutex_unlock(&s->mu);
        memcpy(r->base + (b % s->slots) * s->B + boff, src, (size_t)len);
        uint64_t was = atomic_fetch_add_explicit(&r->fill[b % s->slots], len, memory_order_acq_rel);
        if (was + len == s_blk_len(s, h, b)) {
            pthread_mutex_lock(&s->mu);
            pthread_cond_signal(&s->work);
            pthread_mutex_unlock(&s->mu);
        }
        src += len;
        off += len;
        n -= len;
    }
    return CR_OK;
}

static void stream_join(cr_outstream *s)
{
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->moved);
}

cr_status cr_outstream_finish(cr_outstream *s, uint64_t *hashes, uint64_t *direct, cr_error *err)
{
    pthread_mutex_lock(&s->mu);
    s->finishing = true;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    stream_join(s);
    cr_status st = CR_OK;
    if (s->failed) {
        st = cr_fail(err, s->status, "%s", s->err.msg);
        err->sys_errno = s->err.sys_errno;
    }
    for (uint32_t i = 0; !st && i < s->p->n_shards; i++) {
        oshard *h = &s->sh[i];
        if (!h->on) continue;
        if (h->F != h->nblk)
            st = cr_fail(err, CR_ERR_RUNTIME, "output stream: %s was not written whole (%llu of %llu blocks)", h->path,
                         (unsigned long long)h->F, (unsigned long long)h->nblk);
        else hashes[i] = cr_xxh64_final(&h->st);
    }
    if (direct) *direct = s->direct_blocks;
    stream_free(s);
    return st;
}

void cr_outstream_abort(cr_outstream *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->quit = true;
    pthread_cond_broadcast(&s->work);
    pthread_cond_broadcast(&s->moved);
    pthread_mutex_unlock(&s->mu);
    stream_join(s);
    stream_free(s);
}
