/* gguf_hf.h — a Hugging Face model directory written as GGUF the way
 * llama.cpp's convert_hf_to_gguf.py writes it (spec/gguf.md §2-§7):
 * the same metadata keys in the same order, the same tensor names, order,
 * shapes and types, the Q/K row permutation of llama-style models, and the
 * same bytes (f32, f16, bf16, Q8_0).
 *
 * What this first version covers, and refuses otherwise (naming what and
 * why): LlamaForCausalLM / MistralForCausalLM / MixtralForCausalLM in the
 * classic expert layout (architecture "llama") and
 * Qwen2ForCausalLM ("qwen2"); the gpt2 (byte-level BPE), SentencePiece
 * (tokenizer.model) and LlamaHf (byte-fallback BPE) tokenizer paths;
 * rope scaling absent, "default", "linear" or "yarn"; model cards whose
 * front matter formats/gguf_meta.h reads.
 */
#ifndef CR_GGUF_HF_H
#define CR_GGUF_HF_H

#include "base.h"
#include "gguf.h"
#include "dtype.h"
#include "io.h"
#include "model.h"

typedef struct cJSON cJSON;

typedef struct cr_gguf_hf_opts {
    cr_ggml_type ftype;          /* F32, F16, BF16, Q8_0 (the converter's --outtype) or Q4_0 (§7.5) */
    bool auto_type;              /* --outtype auto: ftype from the first 2-D+ bf16/f16 tensor, else F16 */
    const char *pre;             /* tokenizer.ggml.pre (infer/gguf_pre.h chooses it) */
    volatile const int *interrupt;   /* polled between tensors; may be NULL */
    bool tensors_only;           /* plan the tensors, write no metadata (diff's name map) */
} cr_gguf_hf_opts;

/* What the converter reads of a model directory, wherever it comes from: a
 * directory on disk (`convert`), or the output a program is about to write
 * (`merge ... OUT.gguf`: its output tensor table and aux files, vm/). */
typedef struct cr_gguf_src_tensor {
    const char *name;
    const char *shard;           /* the shard file's name: the converter reads shards in name order */
    cr_dtype dtype;              /* the bytes cr_gguf_sink_write receives */
    uint32_t ndim;
    uint64_t shape[CR_MAX_DIMS]; /* torch order */
    uint64_t numel;
} cr_gguf_src_tensor;

typedef struct cr_gguf_src {
    const char *dir;             /* named in messages; its last component is the directory name the
                                    converter derives general.name from */
    const cJSON *config;         /* config.json; NULL if absent */
    const cr_gguf_src_tensor *tensors;
    uint32_t n_tensors;
    /* A small file of the directory by name ("tokenizer.json"): *data
     * (allocated with the sink's allocator, NUL-terminated, *len bytes) or
     * NULL when there is no such regular file. */
    cr_status (*read)(void *ud, const char *name, char **data, size_t *len, cr_error *err);
    bool (*exists)(void *ud, const char *name);
    void *ud;
} cr_gguf_src;

/* A model directory on disk as a source: m (opened, header-only is enough)
 * gives the config and tensors; files are read from m->dir. *owned holds
 * the source's tables (free with cr_free after the source's last use). */
cr_status cr_gguf_src_of_model(const cr_allocator *alloc, const cr_model *m, cr_gguf_src *src, void **owned,
                               cr_error *err);

/* true when the converter takes the SentencePiece path (the source has
 * tokenizer.model; spec/gguf.md §4.3): tokenizer.ggml.pre is then
 * "default" and no pre-tokenizer hash is needed. */
bool cr_gguf_vocab_spm(const cr_gguf_src *m);

/* false when the converter's path for the source writes tokenizer.ggml.pre
 * "default" itself (SentencePiece, or LlamaHf: a LlamaModel whose
 * tokenizer.json is BPE with byte fallback and a Sequence decoder), so no
 * pre-tokenizer hash is taken; true for the gpt2 path (and when the source
 * is unreadable: cr_gguf_hf_check_vocab then says why). */
bool cr_gguf_hf_needs_pre(const cr_allocator *alloc, const cr_gguf_src *m);

/* CR_OK when the source's tokenizer takes a path the port writes: the
 * SentencePiece, LlamaHf or gpt2 one (which needs a tokenizer.ggml.pre);
 * otherwise CR_ERR_UNSUPPORTED saying which path it would take. */
cr_status cr_gguf_hf_check_vocab(const cr_allocator *alloc, const cr_gguf_src *m, cr_error *err);

/* ---- the sink: a GGUF file being filled ------------------------------------
 *
 * cr_gguf_sink_open plans the whole file from the source before any tensor
 * data exists (names, order, types, the Q/K permutation, stacked experts,
 * the metadata, every offset) and, given a file, writes the header at 0 and
 * sizes the file. Tensor data then arrives in any order and from any
 * thread, as element ranges of the source tensors in their source dtype:
 * each range is widened to f32, converted (f32/f16/bf16/Q8_0/Q4_0), its
 * rows moved to their permuted place, and pwritten at its final offset.
 * The bytes are therefore those `convert` writes from the same tensors on
 * disk, whoever feeds the sink. A quantised range must start and end on a
 * 32-element block (a row end is one: ne0 % 32 == 0 for those types).
 */
typedef struct cr_gguf_sink cr_gguf_sink;

/* fd < 0: plan only (cr_gguf_sink_size; writes are refused). io NULL: POSIX.
 * Errors: UNSUPPORTED (what the converter would do differently, named),
 * FORMAT, IO, NOMEM. */
cr_status cr_gguf_sink_open(const cr_allocator *alloc, const cr_gguf_src *src, const cr_gguf_hf_opts *o,
                            const cr_io *io, int fd, const char *path, cr_gguf_sink **out, cr_error *err);
uint64_t cr_gguf_sink_size(const cr_gguf_sink *s);
uint64_t cr_gguf_sink_header_size(const cr_gguf_sink *s);
/* the file type written (auto resolved) and the pre-tokenizer name */
cr_ggml_type cr_gguf_sink_ftype(const cr_gguf_sink *s);
/* Elements [e0, e0 + n) of source tensor `t`, row-major in its dtype.
 * Thread-safe for disjoint ranges. A tensor the converter drops
 * (rotary_emb.inv_freq) accepts and ignores its data. Errors: RUNTIME (a
 * non-finite value for a quantised type, a misaligned range), IO. */
cr_status cr_gguf_sink_write(cr_gguf_sink *s, uint32_t t, uint64_t e0, const void *data, uint64_t n, cr_error *err);
void cr_gguf_sink_free(cr_gguf_sink *s);
/* Where source tensor t lands: the GGUF tensor's name, its place among
 * stacked experts, and the Q/K permutation's head count (0: none); false
 * when the converter drops it. */
bool cr_gguf_sink_target(const cr_gguf_sink *s, uint32_t t, const char **name, uint32_t *slot, uint32_t *heads);
/* The output row of input row r of a Q/K matrix of `rows` rows permuted
 * with `heads` heads (spec/gguf.md §6.3). */
uint64_t cr_gguf_permute_row(uint64_t r, uint64_t rows, uint32_t heads);

/* The converter on directory m: plan, then every tensor fed from its
 * mapping. *file_size receives the size. */
cr_status cr_gguf_hf_write(const cr_allocator *alloc, const cr_model *m, const cr_gguf_hf_opts *o, int fd,
                           const char *path, uint64_t *file_size, cr_error *err);

#endif
