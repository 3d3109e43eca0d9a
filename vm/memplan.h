/* memplan.h — the memory model of a run: how much resident memory (RSS)
 * a program needs, step by step, and which steps must read their inputs
 * in a bounded window to stay under a budget.
 *
 * One model, two users: `crucible plan` prints its prediction, and the VM
 * (interp.c) runs by its decisions — the thread count and, per top-level
 * step, whether mapped input pages are released while the step reads
 * ("streaming") or only after the tensor's last kernel (RELEASE). The
 * model counts what the process touches, not what it reserves: mapped
 * input pages (they are RSS until madvise drops them), heap buffers as far
 * as kernels write them, scratch tensors alive at once, selection
 * histograms, per-kernel partials, and a measured process baseline.
 * spec/plan.md describes it and how close it comes.
 */
#ifndef CR_MEMPLAN_H
#define CR_MEMPLAN_H

#include "base.h"
#include "gatherpool.h"
#include "outstream.h"
#include "program.h"
#include "reader.h"
#include "refsum.h"

/* Process baseline: binary, libc, libyaml, Lua and the stacks as far as
 * touched, plus the heap the compiler leaves behind (measured: 3.3 to 3.6
 * MiB for `crucible plan` and for merges without kernels, x86-64 Linux,
 * glibc, release build). */
#define CR_MEM_BASELINE      (7ull << 19)   /* 3.5 MiB */
/* Linux maps up to this many bytes of page-cached file around a faulting
 * address (fault_around_bytes, default 64 KiB), so releases are rounded out
 * to it. */
#define CR_MEM_FAULT_AROUND  (64ull << 10)
/* Streaming steps: a chunk waits until it is fewer than AHEAD x threads
 * chunks past the first unfinished one; pages are dropped every STEP x
 * threads finished chunks; a streamed COPY drops every COPY_BLOCK bytes. */
#define CR_MEM_STREAM_AHEAD  4u
#define CR_MEM_STREAM_STEP   2u
#define CR_MEM_COPY_BLOCK    (1ull << 20)
/* A kernel's chunk runs its micro-ops over blocks of this many elements:
 * 13 registers of 1024 floats stay in L1/L2, where whole 16384-element
 * registers would stream through L3 — unless a row op needs whole rows. A multiple
 * of 8 (the RSUM lanes) and of 4 (a Philox block). */
#define CR_KERNEL_BLOCK      1024u

/* The library whose order a reduction follows (ops.def's RED column): the
 * cr_refsum_kind of a scalar sum fed in element order, the cr_colsum_kind
 * of a per-column sum, or -1. */
_Static_assert(CR_RED_BLAS_SSQ - CR_RED_NP == CR_REFSUM_BLAS_SSQ && CR_RED_TORCH_SSQ - CR_RED_NP == CR_REFSUM_TORCH_SSQ &&
               CR_REFSUM_NP == 0, "CR_RED_NP.. follow cr_refsum_kind");
_Static_assert(CR_RED_COL_TORCH - CR_RED_COL_WIDE == CR_COLSUM_TORCH &&
               CR_RED_COL_TORCH_SSQ - CR_RED_COL_WIDE == CR_COLSUM_TORCH_SSQ && CR_COLSUM_WIDE == 0,
               "CR_RED_COL_* follow cr_colsum_kind");
_Static_assert(CR_RED_CHUNK_TORCH_NORM - CR_RED_CHUNK_TORCH == CR_CHUNKSUM_TORCH_NORM && CR_CHUNKSUM_TORCH == 0,
               "CR_RED_CHUNK_* follow cr_chunksum_kind");
static inline int cr_op_refsum_kind(cr_op op)
{
    cr_op_red r = cr_op_table[op].red;
    return r >= CR_RED_NP && r <= CR_RED_TORCH_SSQ ? (int)(r - CR_RED_NP) : -1;
}
static inline int cr_op_colsum_kind(cr_op op)
{
    cr_op_red r = cr_op_table[op].red;
    return r >= CR_RED_COL_WIDE && r <= CR_RED_COL_TORCH_SSQ ? (int)(r - CR_RED_COL_WIDE) : -1;
}
static inline int cr_op_chunksum_kind(cr_op op)
{
    cr_op_red r = cr_op_table[op].red;
    return r >= CR_RED_CHUNK_TORCH && r <= CR_RED_CHUNK_TORCH_NORM ? (int)(r - CR_RED_CHUNK_TORCH) : -1;
}

/* Elements per block of kernel k: CR_KERNEL_BLOCK, or its whole chunk when
 * the chunk is smaller; when an op needs a row's elements together
 * (CR_OPF_UNBLOCKED in ops.def: the row sums, RMAX_ROW, ROWRANK), whole
 * rows, as few as make CR_KERNEL_BLOCK elements (at most the chunk). */
uint64_t cr_kernel_block(const cr_program *p, const cr_prog_kernel *k);

/* The resident bytes of a gather buffer of `words` words as the VM counts
 * it against gather_keep: glibc maps a block this large on its own, with
 * a 16-byte header, in 4 KiB pages (x86-64). */
static inline uint64_t cr_gather_bytes(uint64_t words) { return (words * 4 + 16 + 4095) / 4096 * 4096; }

/* cr_memplan.stream flags. STREAMED: the step (KERNEL or COPY) releases
 * input pages as it reads. SERIAL_GATHERS: a kernel whose only effects are
 * tie counts and two or more torch tie-order gathers runs once per gather,
 * sorting each before the next, so one gather is alive at a time (its
 * inputs are read once per pass). */
enum { CR_MEM_STREAMED = 1, CR_MEM_SERIAL_GATHERS = 2, CR_MEM_SMALL_CHUNKS = 4 };

/* SMALL_CHUNKS: a kernel compiled with chunks of 2^20 for its chunked sums
 * (compiler/emit.c kfinish) whose inputs do not fit the budget whole runs
 * streamed in chunks of cr_mem_small_chunk instead (the same bits, through
 * the in-order turn), so its window of chunks in flight stays as small as
 * any other kernel's: 6 x threads chunks of 2^20 floats would be 48 MiB a
 * view at 2 threads. cr_mem_can_rechunk: the kernel holds chunked sums, no
 * selection, and chunks larger than that. */
bool cr_mem_can_rechunk(const cr_program *p, const cr_prog_kernel *k);
uint64_t cr_mem_small_chunk(const cr_prog_kernel *k);

/* A spilled gather's resident window while it is sorted: each scan side
 * holds under three fault-around blocks (the block it reads, the one the
 * fault maps ahead, the one not yet dropped: torchsort.h's pager drops
 * every CR_TORCHSORT_PAGER_WORDS = one block), plus the pivot and the
 * median positions and the final scan's blocks. */
#define CR_MEM_SPILL_SORT    (10 * CR_MEM_FAULT_AROUND)

typedef struct cr_memplan {
    unsigned threads;        /* threads the run uses (after --max-memory) */
    uint64_t peak;           /* predicted peak RSS, bytes */
    uint64_t fixed;          /* baseline + program tables + thread buffers */
    uint64_t thread_bytes;   /* the thread buffers a run allocates (runbuf.h), all threads */
    uint64_t peak_heap;      /* heap beyond `fixed` at the peak step */
    uint64_t peak_mapped;    /* mapped input pages at the peak step */
    uint32_t peak_pc;        /* main-stream index of the peak step */
    uint32_t n_streamed;     /* steps that release input pages as they read */
    uint8_t *stream;         /* per main instruction: CR_MEM_* flags */
    /* per selection: 1 = its torch tie-order gather (TORCH_DESC/ASC/TOPK)
     * would hold more than the budget allows, so the VM keeps it in a file
     * (spill.h) and holds only a window of it; NULL when none */
    uint8_t *spill;
    uint32_t n_spill;        /* selections marked */
    uint64_t spill_bytes;    /* bytes of those gathers (each written once, read back by the sort) */
    /* freed torch tie-order gathers are kept for the next tensor's
     * (gatherpool.h) instead of faulting fresh zeroed pages; without a
     * budget the model counts the buffers kept from their first use to the
     * end, at most gather_pool_bytes */
    bool gather_pool;
    uint64_t gather_pool_bytes;
    /* under a budget the pool runs too, bounded per main step: while step
     * pc runs, the kept (idle) gathers plus what pooled buffers in use
     * hold beyond their gathers' n words stay within gather_keep[pc] bytes
     * (the VM frees kept buffers to get there). gather_keep[pc] is the
     * room between the step's modelled total (with every gather in use
     * counted at n words) and the predicted peak, so the peak, and the
     * budget, hold whatever the pool keeps; gather_pool_bytes is then the
     * largest of them. NULL: no budget, no bound (the pool is replayed). */
    uint64_t *gather_keep;
    /* the input reader (reader.h): its copy buffer is in `fixed` when the
     * program reads files; read_window is how far it reads ahead of the
     * compute into the page cache (not RSS): CR_READ_WINDOW, or under a
     * budget the headroom over the peak, at least CR_READ_WINDOW_MIN */
    uint64_t read_window;
    /* the output stream (outstream.h): which shards go through it and its
     * windows, whose bytes (out.bytes) are in `peak`; under a budget they
     * get the headroom over the rest of the peak, and a shard whose
     * schedule needs more than fits keeps the per-chunk pwrite */
    cr_outstream_plan out;
    const cr_allocator *alloc;   /* owns `stream`, `spill` and `gather_keep` */
} cr_memplan;

/* The model of running p with `threads` threads (0: online cores) under
 * max_memory bytes of RSS (0: no limit). With a limit, steps whose mapped
 * inputs would not fit are streamed, torch tie-order gathers that still do
 * not fit are gathered one at a time or spilled to a file (mp->spill), and
 * the thread count is lowered until every step fits. mp->stream is allocated with `a` (p->alloc if NULL);
 * release with cr_memplan_free. Errors: CR_ERR_LIMIT when the program does
 * not fit with one thread (the message names the step's tensor and the
 * bytes it needs), CR_ERR_NOMEM. */
cr_status cr_memplan_init(cr_memplan *mp, const cr_program *p, unsigned threads, uint64_t max_memory,
                          const cr_allocator *a, cr_error *err);
void cr_memplan_free(cr_memplan *mp);

/* Per selection, the main pc of the last KERNEL whose micro-ops name it or
 * of its last SEL_PREFIX, whichever is later (UINT32_MAX: none): the last
 * step that makes or reads its tie bits. The VM frees them after that
 * step and the model stops counting them there; last[] holds
 * p->n_selects entries. */
void cr_memplan_sel_last(const cr_program *p, uint32_t *last);

/* Call fn(x, ctx) for each selection state main step pc makes or reads:
 * a SEL_PREFIX's destination, every 'x' operand of a KERNEL's micro-ops
 * (in code order; a state may come more than once). The one definition of
 * "uses" that sel_last, the VM's release of tie bits and the model share. */
void cr_memplan_each_select(const cr_program *p, uint32_t pc, void (*fn)(uint32_t x, void *ctx), void *ctx);

/* Distinct bytes of input files the run reads (every tensor view once;
 * scratch and blobs are memory, not reads). */
uint64_t cr_memplan_file_bytes(const cr_program *p);

#endif
