/* gguf_vocab.h — private to formats/gguf_*.c: the tokenizer metadata of a
 * GGUF file (gguf_vocab.c) and the JSON helpers the planner shares with it. */
#ifndef CR_GGUF_VOCAB_H
#define CR_GGUF_VOCAB_H

#include "gguf_hf.h"

/* The converter's set_vocab for a source: `llama` for LlamaModel (its
 * add_prefix_space key), `pre` the gpt2 path's tokenizer.ggml.pre.
 * Errors: UNSUPPORTED (a tokenizer feature not ported, named), FORMAT, IO, NOMEM. */
cr_status cr_gguf_vocab_put(const cr_allocator *a, const cr_gguf_src *m, cr_gguf_kv *kv, bool llama, const char *pre,
                            cr_error *err);

/* LlamaHfVocab's test on tokenizer.json: BPE with byte_fallback and a
 * Sequence decoder (the converter's LlamaModel then takes that path) */
bool cr_gguf_vocab_is_llama_hf(const cJSON *tj);

/* a JSON object file of the source, or *out = NULL when absent; FORMAT when not an object */
cr_status cr_gguf_src_json(const cr_allocator *a, const cr_gguf_src *src, const char *name, cJSON **out, cr_error *err);
/* an integer JSON value (Python int) into *v */
bool cr_gguf_json_int(const cJSON *j, long long *v);

#endif
