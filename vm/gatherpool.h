/* gatherpool.h — torch tie-order gathers kept between tensors.
 *
 * A TIES-family merge gathers one 32-bit word per element for each model's
 * selection of each tensor (interp_select.c). Allocated fresh per tensor,
 * every page of every gather is a page fault and a zeroed page: at 1.1B
 * (TinyLlama shapes, 3 fine-tunes) about 2.6 GB of them, 18% of the CPU of
 * a ties merge in `perf` (exc_page_fault under vm_gather_words). A run
 * therefore hands freed gathers to this pool and takes them back for the
 * next tensor: a layer's q/k/v/o/gate/up/down gathers reuse the buffers of
 * the layer before, already resident. Under --max-memory the VM frees kept
 * buffers down to memplan's bound for each step (memplan.h gather_keep).
 *
 * One policy, two users: the VM keeps the buffers, the memory model
 * (memplan.c) replays the same calls with NULL buffers to count what the
 * pool holds, so `plan` predicts the run's RSS. Taking gives the smallest
 * buffer that holds n words; when none does, the largest smaller one is
 * given back first (it would never fit a gather this size again before a
 * larger buffer would), so the pool holds no more buffers than a kernel
 * gathers at once, each no larger than the largest gather so far.
 * Header-only: a few comparisons over at most CR_GATHER_POOL_MAX entries.
 */
#ifndef CR_GATHERPOOL_H
#define CR_GATHERPOOL_H

#include <stddef.h>
#include <stdint.h>

#define CR_GATHER_POOL_MAX 16   /* buffers kept; a TIES kernel gathers one per model */

typedef struct cr_gather_pool {
    uint32_t *buf[CR_GATHER_POOL_MAX];
    uint64_t cap[CR_GATHER_POOL_MAX];   /* words */
    unsigned n;
} cr_gather_pool;

/* Take the smallest buffer of at least n words out of the pool: 1, with it
 * in *buf and its capacity in *cap. 0 when none fits; then the largest
 * (smaller) buffer, if any, is taken out into *drop / *drop_cap for the
 * caller to free before it allocates (*drop_cap 0: none). */
static inline int cr_gather_pool_take(cr_gather_pool *gp, uint64_t n, uint32_t **buf, uint64_t *cap,
                                      uint32_t **drop, uint64_t *drop_cap)
{
    unsigned best = gp->n, big = gp->n;
    *drop = NULL;
    *drop_cap = 0;
    for (unsigned i = 0; i < gp->n; i++) {
        if (gp->cap[i] >= n && (best == gp->n || gp->cap[i] < gp->cap[best])) best = i;
        if (gp->cap[i] < n && (big == gp->n || gp->cap[i] > gp->cap[big])) big = i;
    }
    int found = best != gp->n;
    unsigned i = found ? best : big;
    if (i == gp->n) return 0;
    if (found) { *buf = gp->buf[i]; *cap = gp->cap[i]; }
    else { *drop = gp->buf[i]; *drop_cap = gp->cap[i]; }
    gp->n--;
    gp->buf[i] = gp->buf[gp->n];
    gp->cap[i] = gp->cap[gp->n];
    return found;
}

/* Give a buffer of cap words back. When the pool is full the smallest
 * buffer (this one or a kept one) is returned in *drop / *drop_cap to be
 * freed (*drop_cap 0: none). */
static inline void cr_gather_pool_put(cr_gather_pool *gp, uint32_t *buf, uint64_t cap, uint32_t **drop,
                                      uint64_t *drop_cap)
{
    *drop = NULL;
    *drop_cap = 0;
    if (gp->n < CR_GATHER_POOL_MAX) {
        gp->buf[gp->n] = buf;
        gp->cap[gp->n++] = cap;
        return;
    }
    unsigned small = 0;
    for (unsigned i = 1; i < gp->n; i++)
        if (gp->cap[i] < gp->cap[small]) small = i;
    if (gp->cap[small] >= cap) { *drop = buf; *drop_cap = cap; return; }
    *drop = gp->buf[small];
    *drop_cap = gp->cap[small];
    gp->buf[small] = buf;
    gp->cap[small] = cap;
}

#endif
