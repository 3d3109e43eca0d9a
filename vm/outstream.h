/* outstream.h — one writer per output shard: the merge's bytes go into a
 * small window of aligned blocks, and one thread writes the full blocks in
 * file order with O_DIRECT, hashing them on the way.
 *
 * Why: at 1.1B the output write was the largest single cost of every
 * method (bench/RESULTS.md, "Issue 19, session 4"): buffered pwrites from
 * the workers copied every byte into the page cache (copy_folio 14-19% of
 * the profile), the workers spun on ext4's inode lock of the one file
 * (rwsem_spin_on_owner up to 13%), and the hasher read every byte back.
 * Direct writes of 4 MiB blocks cost almost no CPU and the shard hash is
 * fed from the blocks, so nothing is read back.
 *
 * Writers (kernel chunks on any thread, COPY, the shard header) copy their
 * bytes into the block(s) of the window [frontier, frontier + slots) of a
 * shard and add what they filled to the block's count; a writer whose
 * bytes lie beyond the window waits until the frontier moves. Whether that
 * can deadlock is decided before the run (cr_outstream_plan_init): the
 * plan replays the program's writes in program order and takes, for each
 * piece, how far past the frontier it lands; a shard whose schedule needs
 * more blocks than the window holds keeps the per-chunk pwrite and the
 * hasher thread (hasher.h). The rule and why it suffices: spec/vm.md,
 * "Writing the outputs".
 */
#ifndef CR_OUTSTREAM_H
#define CR_OUTSTREAM_H

#include "base.h"
#include "io.h"
#include "program.h"

/* Window sizes: 4 MiB blocks (dd here: 8 MiB O_DIRECT blocks wrote 2.2 GB
 * in 1.5 s with 0.2 s sys, buffered 4.5-6.6 s with 3.3-5.4 s sys), 64 MiB
 * of them per shard without a budget; under --max-memory smaller blocks,
 * down to CR_OUTSTREAM_BLOCK_MIN, as the headroom allows. */
#define CR_OUTSTREAM_BLOCK      (4ull << 20)
#define CR_OUTSTREAM_BLOCK_MIN  (64ull << 10)
#define CR_OUTSTREAM_WINDOW     (64ull << 20)
/* O_DIRECT wants offsets, lengths and buffers aligned to the logical block
 * size (512 or 4096 bytes); 4096 covers both. */
#define CR_OUTSTREAM_ALIGN      4096u

/* The decision, made once per program (memplan.c keeps it, `plan` prints
 * it). */
typedef struct cr_outstream_plan {
    uint64_t block;       /* bytes per block (0: no shard streams) */
    uint32_t slots;       /* blocks in one shard's window */
    uint32_t rings;       /* windows alive at once (shards written at the same time) */
    uint64_t bytes;       /* resident bytes the windows touch at most (memplan counts them) */
    uint32_t n_on;        /* shards streamed */
    uint8_t *on;          /* per shard: 1 = streamed, 0 = today's pwrite path; NULL when n_shards is 0 */
    uint32_t *need;       /* per shard: blocks its schedule needs in the window (0: not eligible) */
    const cr_allocator *alloc;
} cr_outstream_plan;

/* Decide which shards of p go through the stream, with at most `room`
 * bytes of windows (UINT64_MAX: no budget, CR_OUTSTREAM_WINDOW per
 * shard). A shard streams when its header and outputs tile the file (no
 * gap, no overlap) and the writes of p's main stream, replayed in program
 * order, never land more than `slots` blocks past its frontier, nor more
 * than CR_OUTSTREAM_WINDOW bytes past it (a schedule far from file order
 * keeps the per-chunk path rather than a window of much of the file,
 * budget or not). Allocates
 * sp->on/need with a (free with cr_outstream_plan_free). Errors:
 * CR_ERR_NOMEM. */
cr_status cr_outstream_plan_init(cr_outstream_plan *sp, const cr_program *p, uint64_t room, const cr_allocator *a,
                                 cr_error *err);
void cr_outstream_plan_free(cr_outstream_plan *sp);

typedef struct cr_outstream cr_outstream;

/* Start the writer thread for the plan's shards. bfds[i] is shard i's
 * ordinary descriptor (already ftruncated to its size); dfds[i] one opened
 * with O_DIRECT, or -1 (the blocks go through bfds[i]: O_DIRECT refused);
 * the stream owns and closes the dfds, also when it returns NULL. paths[i]
 * names shard i in messages. `interrupt` (may be NULL) stops waiting
 * writers. NULL when the thread or the memory is not to be had: the caller
 * writes those shards itself (same bytes). */
cr_outstream *cr_outstream_start(const cr_allocator *a, const cr_io *io, const cr_program *p,
                                 const cr_outstream_plan *sp, const int *bfds, const int *dfds,
                                 const char *const *paths, const volatile int *interrupt);

/* Is shard i streamed by s? (s may be NULL) */
bool cr_outstream_on(const cr_outstream *s, uint32_t shard);

/* Put bytes [off, off + n) of shard `shard` (thread-safe; waits while they
 * lie beyond the window). Errors: the stream's first failure (CR_ERR_IO
 * naming the tensor and the shard's path, and errno), CR_ERR_INTERRUPTED,
 * CR_ERR_RUNTIME for bytes written twice (a program the plan did not
 * describe). */
cr_status cr_outstream_write(cr_outstream *s, uint32_t shard, uint64_t off, const void *buf, uint64_t n,
                             cr_error *err);

/* After the last write: wait for the thread to write every block, join it
 * and put each streamed shard's XXH64 in hashes[i]. *direct gets the
 * blocks written with O_DIRECT (may be NULL). Errors: as for write, and
 * CR_ERR_RUNTIME when a shard's bytes were not all written. The stream is
 * freed either way (its dfds closed). */
cr_status cr_outstream_finish(cr_outstream *s, uint64_t *hashes, uint64_t *direct, cr_error *err);

/* Stop without finishing (a failed run): wake every waiting writer, join
 * the thread and free. NULL is fine. Call before the bfds are closed. */
void cr_outstream_abort(cr_outstream *s);

#endif
