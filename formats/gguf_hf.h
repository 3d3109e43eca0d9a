/* gguf_hf.h — a Hugging Face model directory written as GGUF the way
 * llama.cpp's convert_hf_to_gguf.py writes it (spec/gguf.md §2-§7):
 * the same metadata keys in the same order, the same tensor names, order,
 * shapes and types, the Q/K row permutation of llama-style models, and the
 * same bytes (f32, f16, bf16, Q8_0).
 *
 * What this first version covers, and refuses otherwise (naming what and
 * why): LlamaForCausalLM / MistralForCausalLM / MixtralForCausalLM in the
 * classic expert layout (architecture "llama") and
 * Qwen2ForCausalLM ("qwen2"); the gpt2 (byte-level BPE) tokenizer path;
 * rope scaling absent, "default", "linear" or "yarn"; model cards whose
 * front matter formats/gguf_meta.h reads.
 */
#ifndef CR_GGUF_HF_H
#define CR_GGUF_HF_H

#include "base.h"
#include "gguf.h"
#include "model.h"

typedef struct cr_gguf_hf_opts {
    cr_ggml_type ftype;          /* F32, F16, BF16 or Q8_0 (the converter's --outtype) */
    bool auto_type;              /* --outtype auto: ftype from the first 2-D+ bf16/f16 tensor, else F16 */
    const char *pre;             /* tokenizer.ggml.pre (infer/gguf_pre.h chooses it) */
    volatile const int *interrupt;   /* polled between tensors; may be NULL */
} cr_gguf_hf_opts;

/* CR_OK when the directory's tokenizer takes the converter's gpt2 path (the
 * only one written so far), so a tokenizer.ggml.pre is needed; otherwise
 * CR_ERR_UNSUPPORTED saying which path it would take. */
cr_status cr_gguf_hf_check_vocab(const cr_allocator *alloc, const cr_model *m, cr_error *err);

/* Write the GGUF of model `m` (opened from m->dir with data) to the open
 * file `fd` (named `path` in messages): the header at 0, every tensor at
 * its offset, the file sized exactly. *file_size receives the size. */
cr_status cr_gguf_hf_write(const cr_allocator *alloc, const cr_model *m, const cr_gguf_hf_opts *o, int fd,
                           const char *path, uint64_t *file_size, cr_error *err);

#endif
