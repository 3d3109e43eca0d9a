/* refsum.h — float32 reductions in the exact order of the libraries that
 * mergekit's NumPy code calls (see refsum.c). */
#ifndef CR_REFSUM_H
#define CR_REFSUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* NumPy's np.sum of a contiguous float32 array: 0 + pairwise sum (blocks of
 * at most 128 summed with 8 accumulators, halves split at multiples of 8). */
float cr_refsum_numpy(const float *x, uint64_t n);

/* OpenBLAS's single-threaded sdot(x, x) with its AVX2 (Haswell) kernel, as
 * np.linalg.norm(x)**2 computes it: 32 float32 lanes of fused multiply-adds
 * over the first n & ~31 elements, a fixed tree over the lanes, the tail in
 * double, rounded to float at the end. */
float cr_refsum_blas_ssq(const float *x, uint64_t n);

/* torch's CPU sum of a contiguous float32 tensor, single-threaded
 * (aten/src/ATen/native/cpu/SumKernel.cpp, cascade_sum on AVX2): 8-lane
 * vectors, 4 interleaved accumulators, a 4-level cascade, the scalar tail
 * and then the lanes added in order. Tensors of under 8 elements take the
 * scalar path (4 interleaved scalar accumulators). `reduced`: the tensor is
 * bf16/f16, whose vector load adds the two float halves of 16 values (the
 * values are in x as floats; x is overwritten). */
float cr_refsum_torch(float *x, uint64_t n, bool reduced);

/* cr_refsum_torch computed in pieces, so a kernel need not gather the whole
 * domain. torch's cascade restarts its first-level accumulators every
 * `block` elements (4 x 8 lanes over 2^lp vectors, lp fixed by n), so the
 * sum is a fixed replay over per-block partials plus a tail. Use:
 * cr_torch_sum_plan_init(n), zeroed partials (n_blocks x 32 floats) and a
 * tail buffer (n - rem_start floats); cr_torch_sum_add for every element
 * exactly once, in pieces that start at a multiple of 4 x per (`group`)
 * and end at one or at n, with pieces of one block in increasing order
 * (one thread per block); then cr_torch_sum_finish. The result is bit-for-bit
 * cr_refsum_torch's. n_blocks = 0 means the whole sum lives in the tail. */
typedef struct cr_torch_sum_plan {
    uint64_t n, per, nv, size, step, lp;
    uint64_t group;            /* elements per ILP group: 4 x per */
    uint64_t block;            /* elements per first-level block */
    uint64_t n_blocks;         /* full blocks (their partials) */
    uint64_t rem_start;        /* first element of the tail */
    bool reduced;
} cr_torch_sum_plan;

void cr_torch_sum_plan_init(cr_torch_sum_plan *pl, uint64_t n, bool reduced);
void cr_torch_sum_add(const cr_torch_sum_plan *pl, const float *x, uint64_t first, uint64_t n,
                      float *partials, float *tail);
/* tail is overwritten */
float cr_torch_sum_finish(const cr_torch_sum_plan *pl, const float *partials, float *tail);

/* torch's CPU 2-norm squared of a contiguous float32 vector along its last
 * dimension (ReduceOpsKernel.cpp, the vectorised norm-2 path on AVX2):
 * 8 lanes of rounded x*x added (no FMA), the lanes added in order, then the
 * scalar tail: its whole groups of 4 as rounded squares, the last n % 4 as
 * fused multiply-adds (torch's build contracts that loop). */
float cr_refsum_torch_ssq(const float *x, uint64_t n);

/* The in-order sums (NumPy pairwise, OpenBLAS sdot, torch norm-2) fed
 * piece by piece, in element order, with O(log n) state: what a chunked
 * kernel uses instead of gathering the domain. Feed every element exactly
 * once, in increasing index order, in pieces of any size; the result is
 * bit-for-bit the whole-vector function's (cr_refsum_numpy,
 * cr_refsum_blas_ssq, cr_refsum_torch_ssq). NumPy's pairwise leaves
 * (<= 128 elements, boundaries fixed by n) are summed as they complete and
 * combined by an explicit stack in the recursion's order; the BLAS and
 * torch kernels are sequential chains of lane accumulators, carried. */
typedef enum cr_refsum_kind { CR_REFSUM_NP, CR_REFSUM_BLAS_SSQ, CR_REFSUM_TORCH_SSQ } cr_refsum_kind;

typedef struct cr_refsum_stream {
    cr_refsum_kind kind;
    uint64_t n, pos;            /* elements in all; elements fed so far */
    /* NumPy: pending ranges of the recursion (len; left half's sum) */
    struct { uint64_t len; float left; bool have_left; } frame[64];
    unsigned depth;
    uint64_t leaf_len, fill;    /* current leaf; its elements in buf */
    float buf[128];
    float result;
    /* BLAS: 32 FMA lanes and the double tail; torch: 8 lanes, then b */
    float acc[32];
    double dot;
    float b;
    bool folded;
} cr_refsum_stream;

void cr_refsum_stream_init(cr_refsum_stream *s, cr_refsum_kind kind, uint64_t n);
void cr_refsum_stream_add(cr_refsum_stream *s, const float *x, uint64_t len);
/* call after all n elements */
float cr_refsum_stream_finish(const cr_refsum_stream *s);

/* Per-column sums of a rows x cols row-major matrix (one value per column),
 * fed in element order in pieces of any size, like the streams above:
 * CR_COLSUM_WIDE adds each column in row order in double; CR_COLSUM_TORCH
 * is torch's float32 x.sum(dim=0) (outer reduction, SumKernel.cpp on AVX2);
 * CR_COLSUM_TORCH_SSQ is torch.norm(x, dim=0)**2's float32 sum of rounded
 * squares in row order. For cols == 1 torch reduces a contiguous vector
 * instead: use cr_refsum_torch / cr_refsum_torch_ssq. The caller owns
 * `state`: cr_colsum_state_bytes(kind, cols) bytes (zeroed by init) that
 * must outlive s. */
typedef enum cr_colsum_kind { CR_COLSUM_WIDE, CR_COLSUM_TORCH, CR_COLSUM_TORCH_SSQ } cr_colsum_kind;

typedef struct cr_colsum {
    cr_colsum_kind kind;
    uint64_t rows, cols, pos;   /* pos: elements fed so far */
    uint64_t chained;           /* TORCH: columns [0, chained) are one cascade chain */
    uint64_t ilp_rows;          /* TORCH: rows in row_sum's interleaved chains */
    unsigned lp_chain, lp_ilp;  /* TORCH: cascade level powers */
    bool folded;                /* TORCH: the interleaved chains are folded */
    void *state;                /* per column: double (WIDE), 16 floats (TORCH), float (SSQ) */
} cr_colsum;

size_t cr_colsum_state_bytes(cr_colsum_kind kind, uint64_t cols);
void cr_colsum_init(cr_colsum *s, cr_colsum_kind kind, uint64_t rows, uint64_t cols, void *state);
void cr_colsum_add(cr_colsum *s, const float *x, uint64_t len);
/* after all rows x cols elements: out[c] = column c's sum (float32 values
 * for the torch kinds); the state is left folded */
void cr_colsum_finish(cr_colsum *s, double *out);

/* mergekit 0.1.5's slerp statistics (merge_methods/slerp.py: chunks of
 * _CHUNK_ELEMENTS = 2^20 elements), fed in element order like the streams
 * above. CR_CHUNKSUM_TORCH: the chunks' torch sums (cr_refsum_torch of
 * each chunk) summed by torch's 1-D sum; CR_CHUNKSUM_TORCH_NORM: the chunks'
 * torch norms (sqrtf of cr_refsum_torch_ssq) squared and summed in the
 * norm-2 order, so that sqrtf of the result is vector_norm(stack(norms)).
 * Up to one chunk the results are cr_refsum_torch and (after sqrtf)
 * sqrtf(cr_refsum_torch_ssq) themselves. The caller owns `state`:
 * cr_chunksum_state_bytes(kind, n) bytes (one float per chunk, and for the
 * sum a chunk's values) that must outlive s. finish may be called once. */
#define CR_REFSUM_CHUNK ((uint64_t)1 << 20)

typedef enum cr_chunksum_kind { CR_CHUNKSUM_TORCH, CR_CHUNKSUM_TORCH_NORM } cr_chunksum_kind;

typedef struct cr_chunksum {
    cr_chunksum_kind kind;
    uint64_t n, pos;            /* elements in all; fed so far */
    cr_refsum_stream cur;       /* NORM: the current chunk */
    float *parts;               /* per chunk: its sum or norm (state) */
    float *buf;                 /* SUM: the current chunk's values (state) */
} cr_chunksum;

size_t cr_chunksum_state_bytes(cr_chunksum_kind kind, uint64_t n);
void cr_chunksum_init(cr_chunksum *s, cr_chunksum_kind kind, uint64_t n, void *state);
void cr_chunksum_add(cr_chunksum *s, const float *x, uint64_t len);
float cr_chunksum_finish(cr_chunksum *s);

/* The same sums computed chunk by chunk in any order and any thread: when
 * every VM chunk of `vm_chunk` elements covers whole chunks of 2^20
 * (cr_chunksum_whole: vm_chunk a multiple of 2^20, or the whole tensor),
 * each VM chunk reduces its own chunks and only the final sum or norm over
 * one float per chunk waits for all of them. Such a state holds the floats
 * alone (cr_chunksum_parts_bytes; init with cr_chunksum_init_parts, never
 * fed with cr_chunksum_add). cr_chunksum_add_at feeds elements
 * [first, first + len) in element order within each chunk, from one
 * thread per chunk, through that thread's `work`: for the norm a
 * cr_refsum_stream (the chunk's TORCH_SSQ stream), for the sum
 * cr_chunksum_work_floats(n) floats (the chunk's torch cascade partials,
 * cr_torch_sum_add). The sum's pieces must start at a multiple of the
 * cascade's group (cr_chunksum_pieces_ok(n, step): pieces that start at
 * multiples of `step` inside each chunk are fine). A chunk's float is
 * stored when its last element arrives. The bits are cr_chunksum_add's:
 * each chunk's reduction is the same whole-vector one, not a copy of it
 * (no 4 MiB buffer per thread: slerp at 1.1B faulted in fresh huge pages
 * for one each kernel). */
bool cr_chunksum_whole(uint64_t vm_chunk, uint64_t n);
size_t cr_chunksum_parts_bytes(uint64_t n);
size_t cr_chunksum_work_floats(uint64_t n);
/* bytes of one thread's `work` for either kind, a multiple of 64 */
size_t cr_chunksum_work_bytes(uint64_t n);
bool cr_chunksum_pieces_ok(uint64_t n, uint64_t step);
void cr_chunksum_init_parts(cr_chunksum *s, cr_chunksum_kind kind, uint64_t n, float *parts);
void cr_chunksum_add_at(cr_chunksum *s, void *work, uint64_t first, const float *x, uint64_t len);

#endif
