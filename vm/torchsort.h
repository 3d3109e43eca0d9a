/* torchsort.h — which elements torch's non-stable CPU sort puts first
 * (see torchsort.c). */
#ifndef CR_TORCHSORT_H
#define CR_TORCHSORT_H

#include <stdbool.h>
#include <stdint.h>

/* The sort key of a float magnitude as torch compares it: |v|'s bits, with
 * every NaN mapped to one key above +inf (torch orders all NaNs equal and
 * above every number). */
uint32_t cr_torchsort_key(float v);

/* Reorders kv[0..n) as torch's CPU `sort`/`argsort` (stable=False) on a
 * 1-D float32 tensor orders it, as far as the partition at each boundary
 * goes. kv[i] holds (key << 32 | index); only the key is compared.
 * `descending`: torch's KeyValueCompDesc (argsort(descending=True)),
 * otherwise KeyValueCompAsc. On return, for every b in bounds[0..n_bounds)
 * (0 <= b <= n) the elements at positions [0, b) are exactly those a full
 * torch sort puts there (their order inside is unspecified).
 * Ranges that hold no boundary are not sorted, so the cost is about that of
 * a selection, not a sort. n must be below 2^32 (the index field). */
void cr_torchsort_partition(uint64_t *kv, uint64_t n, bool descending,
                            const uint64_t *bounds, unsigned n_bounds);

#endif
