/* reader.c — the input reader thread (reader.h) and its POSIX source.
 *
 * One thread walks the plan's extents block by block. Before it reads a
 * block it announces the bytes up to one block past it, so that while it
 * waits in pread for this block the disk already works on the next. The
 * state it shares with the VM's main thread is three positions in the
 * read order under one mutex: `done` (read), `allowed` (the furthest the
 * compute asked for plus the window) and the first error.
 */
#include "reader.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct cr_reader {
    const cr_allocator *alloc;
    const cr_read_plan *plan;
    cr_read_source src;
    uint64_t window;
    volatile int *interrupt;
    uint8_t *buf;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    uint64_t done, allowed;
    bool quit, finished;       /* finished: the thread has returned */
    cr_status status;
    int sys_errno;
    char msg[512];
    cr_reader_stats stats;     /* bytes_*: the thread's; waits: the caller's */
};

/* A position in the read order: extent e, byte off of its file. */
typedef struct cursor { uint32_t e; uint64_t off, pos; } cursor;

static bool at_end(const cr_reader *r, const cursor *c) { return c->e >= r->plan->n_ext; }

/* the contiguous bytes from c, at most `max`, all in one extent */
static uint64_t piece(const cr_reader *r, const cursor *c, uint64_t max)
{
    const cr_read_extent *x = &r->plan->ext[c->e];
    uint64_t left = x->off + x->len - c->off;
    return left < max ? left : max;
}

static void advance(const cr_reader *r, cursor *c, uint64_t n)
{
    c->off += n;
    c->pos += n;
    const cr_read_extent *x = &r->plan->ext[c->e];
    if (c->off == x->off + x->len && ++c->e < r->plan->n_ext) c->off = r->plan->ext[c->e].off;
}

static void fail(cr_reader *r, cr_status s, int e, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void fail(cr_reader *r, cr_status s, int e, const char *fmt, ...)
{
    pthread_mutex_lock(&r->mu);
    if (!r->status) {
        r->status = s;
        r->sys_errno = e;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->msg, sizeof r->msg, fmt, ap);
        va_end(ap);
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* read [off, off + n) of file into the buffer, piece by piece; false on
 * failure (recorded) */
static bool read_block(cr_reader *r, uint32_t file, uint64_t off, uint64_t n)
{
    while (n) {
        size_t want = n < CR_READ_BUF ? (size_t)n : (size_t)CR_READ_BUF;
        ssize_t got = r->src.pread(r->src.ud, file, r->buf, want, off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            int e = errno;
            fail(r, CR_ERR_IO, e, "reading input %s at byte %llu: %s", r->src.name(r->src.ud, file),
                 (unsigned long long)off, strerror(e));
            return false;
        }
        if (got == 0) {
            fail(r, CR_ERR_RUNTIME, 0, "input %s ends at byte %llu, before the tensors the program reads "
                 "(the file was truncated while the merge read it)", r->src.name(r->src.ud, file),
                 (unsigned long long)off);
            return false;
        }
        off += (uint64_t)got;
        n -= (uint64_t)got;
    }
    return true;
}

static void *reader_main(void *ud)
{
    cr_reader *r = ud;
    cursor at = { 0, r->plan->n_ext ? r->plan->ext[0].off : 0, 0 };
    cursor said = at;   /* announced up to here */
    while (!at_end(r, &at)) {
        pthread_mutex_lock(&r->mu);
        while (!r->quit && at.pos >= r->allowed) pthread_cond_wait(&r->cv, &r->mu);
        uint64_t allowed = r->allowed;
        bool quit = r->quit;
        pthread_mutex_unlock(&r->mu);
        if (quit) break;
        if (r->interrupt && *r->interrupt) { fail(r, CR_ERR_INTERRUPTED, 0, "interrupted"); break; }
        uint64_t n = piece(r, &at, CR_READ_BLOCK);
        if (n > allowed - at.pos) n = allowed - at.pos;
        uint32_t file = r->plan->ext[at.e].file;
        bool cached = r->src.cached && r->src.cached(r->src.ud, file, at.off, n);
        if (!cached && r->src.announce) {
            /* this block and the next, within the window */
            uint64_t to = at.pos + n + CR_READ_BLOCK;
            if (to > allowed) to = allowed;
            if (said.pos < at.pos) said = at;
            while (!at_end(r, &said) && said.pos < to) {
                uint64_t k = piece(r, &said, to - said.pos);
                r->src.announce(r->src.ud, r->plan->ext[said.e].file, said.off, k);
                advance(r, &said, k);
            }
        }
        if (!cached && !read_block(r, file, at.off, n)) break;
        advance(r, &at, n);
        pthread_mutex_lock(&r->mu);
        if (cached) r->stats.bytes_cached += n;
        else r->stats.bytes_read += n;
        r->done = at.pos;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_lock(&r->mu);
    r->finished = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

cr_status cr_reader_start(const cr_allocator *a, const cr_read_plan *plan, const cr_read_source *src, uint64_t window,
                          volatile int *interrupt, cr_reader **out, cr_error *err)
{
    *out = NULL;
    cr_reader *r = cr_calloc(a, 1, sizeof *r);
    if (!r) return cr_fail(err, CR_ERR_NOMEM, "out of memory for the input reader");
    r->buf = cr_malloc(a, (size_t)CR_READ_BUF);
    if (!r->buf) { cr_free(a, r); return cr_fail(err, CR_ERR_NOMEM, "out of memory for the input reader"); }
    r->alloc = a;
    r->plan = plan;
    r->src = *src;
    r->window = window < CR_READ_WINDOW_MIN ? CR_READ_WINDOW_MIN : window;
    r->interrupt = interrupt;
    r->allowed = r->window;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    int e = pthread_create(&r->thread, NULL, reader_main, r);
    if (e) {
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
        cr_free(a, r->buf);
        cr_free(a, r);
        return cr_fail_errno(err, e, "cannot start the input reader thread");
    }
    *out = r;
    return CR_OK;
}

cr_status cr_reader_need(cr_reader *r, uint64_t pos, cr_error *err)
{
    pthread_mutex_lock(&r->mu);
    if (pos + r->window > r->allowed) {
        r->allowed = pos + r->window;
        pthread_cond_broadcast(&r->cv);
    }
    if (r->done < pos && !r->status && !r->finished) r->stats.waits++;
    while (r->done < pos && !r->status && !r->finished) pthread_cond_wait(&r->cv, &r->mu);
    cr_status s = r->done >= pos ? CR_OK : r->status;
    if (!s && r->done < pos) {   /* a bug: a position past the plan's end, or the reader stopped */
        s = CR_ERR_RUNTIME;
        snprintf(r->msg, sizeof r->msg, "the input reader stopped at byte %llu of %llu, before byte %llu a step needs",
                 (unsigned long long)r->done, (unsigned long long)r->plan->total, (unsigned long long)pos);
    }
    if (s) {
        if (err) {
            err->status = s;
            err->sys_errno = r->sys_errno;
            snprintf(err->msg, sizeof err->msg, "%s", r->msg);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return s;
}

void cr_reader_stop(cr_reader *r, cr_reader_stats *stats)
{
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->quit = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    if (stats) *stats = r->stats;
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    cr_free(r->alloc, r->buf);
    cr_free(r->alloc, r);
}

/* ---- the POSIX source ----------------------------------------------------------- */

static ssize_t px_pread(void *ud, uint32_t file, void *buf, size_t n, uint64_t off)
{
    cr_read_posix *px = ud;
    return pread(px->fds[file], buf, n, (off_t)off);
}

static void px_announce(void *ud, uint32_t file, uint64_t off, uint64_t n)
{
    cr_read_posix *px = ud;
    posix_fadvise(px->fds[file], (off_t)off, (off_t)n, POSIX_FADV_WILLNEED);
}

/* mincore over the mapping: 1 byte a page, 4 KiB of vector at a time */
static bool px_cached(void *ud, uint32_t file, uint64_t off, uint64_t n)
{
    cr_read_posix *px = ud;
    if (!px->maps[file]) return false;
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t page = pg > 0 ? (uint64_t)pg : 4096;
    uint64_t lo = off / page * page, hi = off + n;
    if (hi > px->sizes[file]) hi = px->sizes[file];
    unsigned char vec[4096];
    while (lo < hi) {
        uint64_t len = hi - lo, cap = (uint64_t)sizeof vec * page;
        if (len > cap) len = cap;
        if (mincore(px->maps[file] + lo, (size_t)len, vec)) return false;
        for (uint64_t i = 0; i < (len + page - 1) / page; i++)
            if (!(vec[i] & 1)) return false;
        lo += len;
    }
    return true;
}

static const char *px_name(void *ud, uint32_t file)
{
    cr_read_posix *px = ud;
    return px->names[file];
}

void cr_read_source_posix(cr_read_posix *px, cr_read_source *out)
{
    for (uint32_t i = 0; i < px->n; i++)
        if (px->fds[i] >= 0) posix_fadvise(px->fds[i], 0, 0, POSIX_FADV_RANDOM);
    *out = (cr_read_source){ .pread = px_pread, .announce = px_announce, .cached = px_cached, .name = px_name, .ud = px };
}
