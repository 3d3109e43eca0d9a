/* torchsort.h — which elements torch's non-stable CPU sort puts first
 * (see torchsort.c). */
#ifndef CR_TORCHSORT_H
#define CR_TORCHSORT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"
#include "pool.h"

/* The sort key of a float magnitude as torch compares it: |v|'s bits, with
 * every NaN mapped to one key above +inf (torch orders all NaNs equal and
 * above every number). */
static inline uint32_t cr_torchsort_key(float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    u &= 0x7fffffffu;
    return u > 0x7f800000u ? 0x7fc00000u : u;
}

/* An element word: a key (below 2^31), or CR_TORCHSORT_TIE | index for
 * an element whose key is the caller's tie_key (index below 2^31). The
 * caller may also leave a tie untagged, as its key: the sort tags it with
 * its index in w on entry before it moves (in its first scan), so on
 * return every tie is tagged either way. */
#define CR_TORCHSORT_TIE 0x80000000u

/* A gather too large for --max-memory lives in a file-backed mapping
 * (vm/spill.h). The sort then says which words it has passed, about every
 * CR_TORCHSORT_PAGER_WORDS, so that `done` can drop their pages from RSS;
 * a later access reads them back from the page cache, so the hint changes
 * memory only, never the result. What stays resident is two scan windows
 * (each under CR_TORCHSORT_PAGER_WORDS plus a block and the pages around
 * it), the three median positions and, for topk's heap select, the heap
 * (k words, k <= n/64). NULL: the gather is in memory, nothing to say. */
#define CR_TORCHSORT_PAGER_WORDS 16384u
typedef struct cr_torchsort_pager {
    void (*done)(void *ud, const uint32_t *lo, const uint32_t *hi, bool rising);   /* spill.h's cr_spill_done */
    void *ud;
} cr_torchsort_pager;

/* Reorders w[0..n) as torch's CPU `sort`/`argsort` (stable=False) on a
 * 1-D float32 tensor orders it, as far as the partition at each boundary
 * goes. Only keys are compared (a tagged word's key is tie_key), so the
 * reordering is the one of torch's (key, index) pairs, and the tagged
 * words show where the ties go. `descending`: torch's KeyValueCompDesc
 * (argsort(descending=True)), otherwise KeyValueCompAsc. On return, for
 * every b in bounds[0..n_bounds) (0 <= b <= n) the elements at positions
 * [0, b) are exactly those a full torch sort puts there (their order
 * inside is unspecified). Ranges that hold no boundary are not sorted, so
 * the cost is about that of a selection, not a sort. n must be below 2^31.
 * `kern` supplies the block scan (its stoppers entry); any table gives the
 * same result. `pager`: see above (NULL when w is in memory). */
void cr_torchsort_partition(const cr_kernels *kern, uint32_t *w, uint64_t n, bool descending, uint32_t tie_key,
                            const uint64_t *bounds, unsigned n_bounds, const cr_torchsort_pager *pager);

/* The same on a thread pool: each partition of at least min_words words
 * (0: CR_TORCHSORT_PAR_MIN) runs on every thread of `pool` (torchsort.c
 * says how), smaller ones on the caller's; the result is the same array
 * for any pool, thread count, min_words and seg_words. The caller runs it
 * from outside a pool job (cr_pool_run is not reentrant). A spilled gather
 * takes cr_torchsort_partition (the pager's windows assume one scan). */
#define CR_TORCHSORT_PAR_MIN (1u << 20)   /* smaller partitions: the counting pass costs more than it saves */
#define CR_TORCHSORT_PAR_SEG 16384u       /* words a counted segment (64 KiB: in L2 for its second pass) */
typedef struct cr_torchsort_par {
    cr_pool *pool;          /* NULL, or one thread: serial */
    uint64_t min_words;     /* 0: CR_TORCHSORT_PAR_MIN (tests make it small) */
    uint64_t seg_words;     /* 0: CR_TORCHSORT_PAR_SEG; at least n/4096 */
} cr_torchsort_par;
void cr_torchsort_partition_par(const cr_kernels *kern, uint32_t *w, uint64_t n, bool descending, uint32_t tie_key,
                                const uint64_t *bounds, unsigned n_bounds, const cr_torchsort_par *par);

/* Reorders w[0..n) as torch's CPU `topk(v, k, largest=True)` on a 1-D
 * float32 tensor selects (TopKImpl.h: topk_impl_loop): libstdc++'s
 * partial_sort's heap select when k·64 <= n, else nth_element's
 * introselect at position k − 1, with the comparator `a > b` on the keys
 * (NaN above all). On return w[0..k) are the elements topk returns (their
 * order inside unspecified; topk's final sort does not change the set).
 * 1 <= k <= n < 2^31. `pager` as for cr_torchsort_partition. */
void cr_torchsort_topk(const cr_kernels *kern, uint32_t *w, uint64_t n, uint64_t k, uint32_t tie_key,
                       const cr_torchsort_pager *pager);

/* The same, partitioning one element at a time as libstdc++ does: the
 * reference the block partition is tested against. */
void cr_torchsort_partition_plain(uint32_t *w, uint64_t n, bool descending, uint32_t tie_key,
                                  const uint64_t *bounds, unsigned n_bounds);

#endif
