/* gguf_sink_impl.h — private to gguf_hf.c (which plans a GGUF file and
 * opens the sink) and gguf_sink.c (which fills it): the sink's state. */
#ifndef CR_GGUF_SINK_IMPL_H
#define CR_GGUF_SINK_IMPL_H

#include "gguf_hf.h"

/* one tensor of the GGUF file: one source, or E stacked experts (§6.3) */
typedef struct hf_out {
    char name[64];
    uint32_t first, n_src;       /* into the source index list */
    uint32_t n_dims;
    uint64_t shape[4];           /* torch order */
    uint32_t permute_heads;
    bool split;                  /* the gate half of a fused gate_up_proj; the up half is the next output */
} hf_out;

struct cr_gguf_sink {
    const cr_allocator *alloc;
    const cr_io *io;
    int fd;
    char *path;
    const cr_gguf_src *src;      /* borrowed: names in messages */
    cr_ggml_type ftype;
    uint64_t size, header_len;
    cr_gguf_tensor *gt;
    hf_out *outs;
    size_t n_out;
    /* per source tensor: the GGUF tensor it lands in (UINT32_MAX: dropped),
     * its place among stacked experts, the permutation's head count */
    uint32_t *dst, *slot, *heads;
};

/* pwrite all n bytes at off through io: 0 or an errno */

#endif
