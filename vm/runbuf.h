/* runbuf.h — the buffers a run allocates, sized in one place.
 *
 * The interpreter allocates them (interp_run.c setup, interp_kernel.c's
 * staging layout, interp_select.c's histograms) and the memory model
 * (memplan.c) counts them: both ask these functions, so `crucible plan`'s
 * per-thread figure is what a run allocates, byte for byte
 * (tests/unit/test_memplan.c compares them after a real run). Sizes are
 * exact: a kernel that wrote past them would be a heap overflow the
 * sanitizer builds report, not a silently wrong prediction.
 */
#ifndef CR_RUNBUF_H
#define CR_RUNBUF_H

#include "program.h"

/* a selection's histogram: one counter per 16-bit key half, per thread */
#define CR_RUN_HIST_BINS   65536u
#define CR_RUN_HIST_BYTES  ((uint64_t)CR_RUN_HIST_BINS * sizeof(uint64_t))
/* elements per block of a converting COPY (thread 0's buffers) */
#define CR_RUN_COPY_BLOCK  (1u << 16)

/* Per-thread buffers, bytes. regs: the register file, n_regs registers one
 * block long (cr_kernel_block), the last as long as a block can be; io:
 * each STORE's staged chunk and the torch row sums' copy of a row
 * (cr_run_stage_layout); keys: ROWRANK's sort keys or LOWRANK's scratch; lanes: 8 doubles per
 * RSUM; carry: one word per micro-op. Thread 0 also converts COPYs
 * (CR_RUN_COPY_BLOCK elements as f32 in regs, as the output dtype in io),
 * so its regs0 and io0 may be larger. */
typedef struct cr_run_thread_bufs {
    uint64_t regs, io, keys, lanes, carry;
    uint64_t regs0, io0;
} cr_run_thread_bufs;

void cr_run_thread_bufs_of(const cr_program *p, cr_run_thread_bufs *b);

/* Bytes of every thread's buffers together: what setup allocates. */
uint64_t cr_run_thread_bytes(const cr_run_thread_bufs *b, unsigned threads);

/* The layout of kernel k's staging buffer (io): when store_off is not
 * NULL, store_off[pc] is the byte offset of the STORE at micro-op pc's
 * staged chunk; *tmp_off (if not NULL) that of the row copy the torch row
 * sums use. Returns the bytes the kernel needs. */
uint64_t cr_run_stage_layout(const cr_program *p, const cr_prog_kernel *k, uint64_t *store_off, uint64_t *tmp_off);

#endif
