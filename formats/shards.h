/* shards.h — how output tensors are split into safetensors shards, the
 * shard file names, the index file, and the --out-shard-size option, all as
 * mergekit does them (merge-methods.md §7.2, formats-and-moe.md §5.3).
 *
 * Planning is greedy in write order: before adding a tensor, the current
 * shard is closed if it is non-empty and the tensor would push it over the
 * limit. A tensor larger than the limit gets a shard of its own; limit 0
 * means a single shard.
 */
#ifndef CR_SHARDS_H
#define CR_SHARDS_H

#include "base.h"

#define CR_SHARD_DEFAULT_LIMIT 5000000000ull   /* mergekit's "5B" (bytes) */

typedef struct cr_shard_plan {
    const cr_allocator *alloc;
    uint32_t n_tensors;
    uint32_t n_shards;          /* >= 1 */
    uint32_t *shard_of;         /* [n_tensors]: 0-based shard of each tensor, in write order */
    uint64_t *shard_bytes;      /* [n_shards]: tensor data bytes per shard */
    uint64_t total_bytes;       /* sum of all tensor bytes (the index's total_size) */
} cr_shard_plan;

/* Plan shards for tensors of nbytes[0..n) in write order. Errors: NOMEM. */
cr_status cr_shard_plan_init(cr_shard_plan *p, const cr_allocator *alloc,
                             const uint64_t *nbytes, uint32_t n, uint64_t limit, cr_error *err);
void cr_shard_plan_free(cr_shard_plan *p);

/* File name of shard `shard` (0-based) of n_shards into buf:
 * "model.safetensors" when n_shards == 1, else
 * "model-00002-of-00005.safetensors". */
void cr_shard_file_name(char *buf, size_t cap, uint32_t shard, uint32_t n_shards);

/* Text of model.safetensors.index.json for plan p, names[] in write order:
 * {"metadata": {"total_size": T, "mergekit_version": V},
 *  "weight_map": {name: file, ...}} as Python's json.dump(indent=2) writes
 * it (no trailing newline), V being the mergekit release the output matches
 * ("0.1.5"; core/mkversion.h). Allocated with p->alloc; NULL on NOMEM. Only
 * meaningful (and only written by mergekit) when n_shards >= 2. */
char *cr_shard_index_json(const cr_shard_plan *p, const char *const *names, const char *mk_version,
                          size_t *len);

/* Parse --out-shard-size: digits, or digits with suffix k/K (1e3), m/M
 * (1e6), b/B or g/G (1e9; G is crucible's addition). "5.5B", "", "-1",
 * overflow -> CR_ERR_ARG with a message naming the text. */
cr_status cr_parse_shard_size(const char *s, uint64_t *out, cr_error *err);

#endif
