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

/* A safetensors tensor made of consecutive outputs (e.g. MoE fused expert
 * tensors stacked from several source tensors): outputs first ..
 * first+count-1, one dtype, whose bytes fill the tensor in order. */
typedef struct cr_layout_tensor {
    uint32_t first, count;
    const char *name;           /* header name; NULL: the first output's */
    uint32_t ndim;
    uint64_t shape[CR_MAX_DIMS];
} cr_layout_tensor;

/* cr_layout_outputs over tensors instead of outputs: sharding, header and
 * index entries per tensor, each part's offset right after the previous
 * part's bytes. groups NULL: one tensor per output. CR_ERR_ARG when the
 * tensors do not cover the outputs in order or a shape disagrees with the
 * parts' bytes. */
cr_status cr_layout_tensors(cr_program *p, uint64_t max_shard_bytes, const cr_layout_tensor *groups,
                            uint32_t n_groups, cr_error *err);

/* Append bytes to p's blob pool (NUL-terminated; the NUL is not counted). */
cr_status cr_program_add_blob(cr_program *p, const void *data, size_t n, cr_blob *out, cr_error *err);

#endif
