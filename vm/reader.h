/* reader.h — the input reader: a thread that reads a run's input files
 * sequentially, in large blocks, in the order the compiler's schedule
 * needs them (readplan.h), a bounded window ahead of the compute.
 *
 * The VM keeps reading the inputs through its read-only mappings; the
 * reader's job is that the pages are in the page cache before a step
 * touches them, read at the disk's pace: each block is announced ahead
 * (POSIX_FADV_WILLNEED: the disk queue stays full) and then read with
 * pread into a small reused buffer, which returns once the block is in
 * the cache. Blocks already cached are skipped (mincore), so a warm run
 * costs a few system calls. A step waits (cr_reader_need) until the
 * reader has read through what it needs; the reader never reads past the
 * furthest position asked for plus the window, so the page cache it fills
 * ahead of the compute is bounded. spec/vm.md "Reading the inputs" has
 * the measurements behind the mechanism.
 *
 * The reader reads through a cr_read_source so that tests can give short
 * reads, errors and ends of file; cr_read_source_posix is the real one.
 */
#ifndef CR_READER_H
#define CR_READER_H

#include "base.h"
#include "readplan.h"

#include <sys/types.h>

/* Bytes read per block, and announced ahead of the block being read (two
 * blocks in flight keep a virtio disk at its sequential pace). */
#define CR_READ_BLOCK      (8ull << 20)
/* The reader's copy buffer (RSS: memplan counts it), re-used by every
 * pread so that it stays in the cache. */
#define CR_READ_BUF        (64ull << 10)
/* Window of page cache read ahead of the furthest position a step asked
 * for: without --max-memory this much; under it, the budget's headroom
 * over the planned peak, at least two blocks (memplan.h read_window). */
#define CR_READ_WINDOW     (256ull << 20)
#define CR_READ_WINDOW_MIN (2 * CR_READ_BLOCK)

typedef struct cr_read_source {
    /* pread(2)'s contract: bytes read, 0 at the end of the file, -1 and
     * errno; a short count is not an error */
    ssize_t (*pread)(void *ud, uint32_t file, void *buf, size_t n, uint64_t off);
    /* optional: start reading [off, off + n) without waiting */
    void (*announce)(void *ud, uint32_t file, uint64_t off, uint64_t n);
    /* optional: true when every byte of [off, off + n) is in memory */
    bool (*cached)(void *ud, uint32_t file, uint64_t off, uint64_t n);
    /* the file's name, for messages */
    const char *(*name)(void *ud, uint32_t file);
    void *ud;
} cr_read_source;

/* The real source over n files: fds[i] open for reading (the reader sets
 * POSIX_FADV_RANDOM on them: it says itself what to read ahead), maps[i]
 * their mappings (for mincore; NULL: never cached), names[i] for messages.
 * The arrays are borrowed for the reader's life. */
typedef struct cr_read_posix {
    const int *fds;
    uint8_t *const *maps;
    const uint64_t *sizes;
    const char *const *names;
    uint32_t n;
} cr_read_posix;
void cr_read_source_posix(cr_read_posix *px, cr_read_source *out);

typedef struct cr_reader cr_reader;

typedef struct cr_reader_stats {
    uint64_t bytes_read;       /* read with pread (not cached when the reader came) */
    uint64_t bytes_cached;     /* skipped: in memory already */
    uint64_t waits;            /* cr_reader_need calls that had to wait */
} cr_reader_stats;

/* Start reading plan's extents from src, at most `window` bytes past the
 * furthest position asked for (the first window from the start). interrupt
 * (may be NULL) is polled between blocks. The plan and src are borrowed
 * until cr_reader_stop. Errors: CR_ERR_NOMEM, CR_ERR_IO (no thread). */
cr_status cr_reader_start(const cr_allocator *a, const cr_read_plan *plan, const cr_read_source *src, uint64_t window,
                          volatile int *interrupt, cr_reader **out, cr_error *err);
/* Wait until the first `pos` bytes of the read order are read, and let
 * the reader go on to pos + window. Errors: the reader's, for every call
 * from the first failure on: CR_ERR_IO (a read failed: the message names
 * the file and offset), CR_ERR_RUNTIME (the file ended early: it was
 * truncated while the merge ran), CR_ERR_INTERRUPTED. */
cr_status cr_reader_need(cr_reader *r, uint64_t pos, cr_error *err);
/* Stop the reader (it finishes the pread in progress), join its thread
 * and free it; NULL is ignored. stats (may be NULL) receives its counts. */
void cr_reader_stop(cr_reader *r, cr_reader_stats *stats);

#endif
