/* writeback.h — a thread that starts the output shards' write-back while
 * the merge computes.
 *
 * Linux writes dirty pages out only once they pass a threshold (10% of RAM
 * by default), so a merge whose output is smaller than that would write
 * everything at the final fsync, after the computing: compute + write
 * instead of about the larger of the two. Asking for write-back as tensors
 * finish (cr_io.writeback, sync_file_range on Linux) fixes that, but the
 * call blocks while the disk queue is full, so it runs here, off the VM's
 * threads: a kick returns at once, and kicks that arrive while a pass runs
 * fold into one more pass.
 */
#ifndef CR_WRITEBACK_H
#define CR_WRITEBACK_H

#include "base.h"
#include "io.h"

typedef struct cr_writeback cr_writeback;

/* Start the thread for files fds[0..n) (copied; -1 entries are skipped).
 * Returns NULL when `io` has no writeback hook or the thread cannot be
 * created: write-back is a hint, and the merge is the same without it. */
cr_writeback *cr_writeback_start(const cr_allocator *a, const cr_io *io, const int *fds, uint32_t n);

/* Ask for one more pass over the files; never blocks on the disk. */
void cr_writeback_kick(cr_writeback *w);

/* Let the current pass finish, join the thread and free it (NULL is
 * fine). Call before the files are closed. */
void cr_writeback_stop(cr_writeback *w);

#endif
