/* spill.h — scratch that does not fit --max-memory, kept in a file.
 *
 * A torch tie-order gather needs the whole domain at once (the sort moves
 * words across all of it), so it cannot stream like an input. When the
 * memory model (memplan.h) finds it does not fit the budget, the VM puts
 * it in a file-backed shared mapping instead of the heap: the code that
 * fills and sorts it is unchanged (so the result is torch's order, the
 * same bytes as an unlimited run), and as it moves on it drops the pages
 * behind it from RSS (cr_spill_done); the kernel writes them back to the
 * file or keeps them in its page cache, and a later access reads them in
 * again. Memory is then a window, at the cost of that I/O.
 *
 * The file is made inside the run's temporary output directory (never
 * beside a file the user owns) with O_TMPFILE, or, where the file system
 * has no O_TMPFILE, under a fresh name that is unlinked at once: it has
 * no name while the run uses it, so it is gone after success, failure,
 * SIGINT and even SIGKILL. Its blocks are reserved up front (fallocate),
 * so a full disk is an error here, not a SIGBUS in the middle of a sort.
 */
#ifndef CR_SPILL_H
#define CR_SPILL_H

#include "base.h"

struct cr_io;

typedef struct cr_spill {
    uint8_t *base;      /* the mapping; NULL when closed */
    uint64_t bytes;
} cr_spill;

/* Map `bytes` (> 0) of a new unnamed file in directory `dir`, opened
 * through `io` (io.h, so fault injection reaches it). `what` names the
 * data for messages ("the tie-order gather of TENSOR"). On success
 * sp->base is zero-filled, readable and writable. Errors: CR_ERR_IO
 * (cannot create, reserve or map; the message names dir and what),
 * CR_ERR_LIMIT (bytes do not fit the address space). */
cr_status cr_spill_open(cr_spill *sp, const struct cr_io *io, const char *dir, uint64_t bytes, const char *what,
                        cr_error *err);

/* Drop the pages of [lo, hi) (addresses in the mapping) from RSS, in
 * CR_MEM_FAULT_AROUND blocks (memplan.h: a read fault maps a whole such
 * block of page-cached file). A caller moving up through the mapping
 * (`rising`) has both ends rounded down, one moving down both rounded up:
 * the block it is in stays, and its next range, which starts where this
 * one ended, drops it, so every block goes once the caller is past it.
 * The data stays: a later access reads it back. */
void cr_spill_done(const cr_spill *sp, const void *lo, const void *hi, bool rising);

/* Unmap (the file goes with its last reference). Safe on a closed spill. */
void cr_spill_close(cr_spill *sp);

#endif
