/* hasher.h — a thread that hashes each output shard's finished prefix
 * while the merge computes the rest.
 *
 * A shard's hash (formats/outhash.h) is XXH64 of the whole file, and XXH64
 * is a stream: fed the file in order, in pieces of any size, it gives the
 * same digest. The VM writes tensors in no fixed order, but the bytes
 * before the first unfinished tensor (in file order) never change again,
 * so this thread follows that frontier, reading the new bytes back through
 * the page cache as tensors complete. At the end only the bytes after the
 * frontier at the last write remain (in a merge that writes in file order,
 * the last tensor), instead of the whole file: at 1.1B that was 0.45-1.1 s
 * of one thread after the last write (bench/RESULTS.md, "Issue 19: the
 * shard hash").
 *
 * Writers report each pwrite of an output's bytes (cr_hasher_wrote, one
 * atomic subtraction; the thread is woken only when a tensor completes).
 */
#ifndef CR_HASHER_H
#define CR_HASHER_H

#include "base.h"
#include "program.h"

typedef struct cr_hasher cr_hasher;

/* Start the thread for program p's shards: shard_fds[i] is shard i's open
 * descriptor, -1 for a shard this run does not write (a partitioned run),
 * which gets no hash. The shards' headers must be written already.
 * `interrupt` (may be NULL) is polled between 128 KiB blocks. `sync` (tests):
 * the writer that completes a tensor waits until the thread has hashed up
 * to the new frontier, so that what is left at the end does not depend on
 * scheduling. NULL when the thread or memory is not to be had: the caller
 * hashes the finished files instead (same digests). */
cr_hasher *cr_hasher_start(const cr_allocator *a, const cr_program *p, const int *shard_fds,
                           const volatile int *interrupt, bool sync);

/* `bytes` more bytes of output `output` are in its shard (called after the
 * pwrite returned; thread-safe). */
void cr_hasher_wrote(cr_hasher *h, uint32_t output, uint64_t bytes);

/* After the last write: let the thread hash what is left, join it and put
 * each written shard's XXH64 in hashes[i] (shards not written are left
 * alone). *tail gets the bytes hashed by the passes that began after
 * this call (a pass under way goes on uncounted). *complete is
 * false when the writes did not add up to each output's size exactly (an
 * output written twice, or not fully): then hashes are not filled and the
 * caller hashes the finished files. Errors: the thread's first (CR_ERR_IO
 * naming the shard, CR_ERR_INTERRUPTED). The hasher is freed either way. */
cr_status cr_hasher_finish(cr_hasher *h, uint64_t *hashes, uint64_t *tail, bool *complete, cr_error *err);

/* Stop without finishing (a failed run): join the thread and free it.
 * NULL is fine. Call before the shard files are closed. */
void cr_hasher_abort(cr_hasher *h);

#endif
