/* layout.h — where each output tensor lands: shard files and their
 * safetensors headers (mergekit's sharding, merge-methods.md §7.2). */
#ifndef CR_LAYOUT_H
#define CR_LAYOUT_H

#include "program.h"

/* Split p's outputs over shards in output order (a new shard starts when
 * the next tensor would pass max_shard_bytes; 0 = one shard), compute each
 * shard's header with cr_st_layout, set every output's shard and offset,
 * and, for more than one shard, add model.safetensors.index.json as an aux
 * file. Grows p's blob pool. */
cr_status cr_layout_outputs(cr_program *p, uint64_t max_shard_bytes, cr_error *err);

/* Append bytes to p's blob pool (NUL-terminated; the NUL is not counted). */
cr_status cr_program_add_blob(cr_program *p, const void *data, size_t n, cr_blob *out, cr_error *err);

#endif
