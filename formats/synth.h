/* synth.h — deterministic synthetic Hugging Face models, for tests, demos
 * and benchmarks: a Llama/Mistral/Qwen2/Qwen3-shaped model of any size whose
 * every weight is a pure function of (seed, tensor name, element index),
 * and "fine-tunes" derived from a base model by adding seeded deltas.
 *
 * Writing streams: each shard's layout is computed first, then every
 * tensor is produced in fixed-size chunks and pwritten at its final
 * offset, so memory use does not grow with the model (multi-GB models are
 * fine). Values do not depend on the chunk size.
 */
#ifndef CR_SYNTH_H
#define CR_SYNTH_H

#include "base.h"
#include "dtype.h"

typedef enum cr_synth_arch {
    CR_SYNTH_LLAMA,
    CR_SYNTH_MISTRAL,
    CR_SYNTH_QWEN2,
    CR_SYNTH_QWEN3              /* no q/k/v biases; per-head q_norm / k_norm */
} cr_synth_arch;

typedef struct cr_synth_opts {
    cr_synth_arch arch;
    uint32_t layers, hidden, intermediate, heads, kv_heads, vocab;
    cr_dtype dtype;             /* F32, F16 or BF16 */
    uint64_t seed;
    bool tied;                  /* no lm_head.weight; tie_word_embeddings true */
    uint64_t shard_size;        /* bytes per shard (mergekit rule); 0: one shard */
    /* fine-tune mode: when `from` is set, the tensors, dtypes, config and
     * tokenizer come from that model and only seed, delta_scale, only and
     * shard_size are used */
    const char *from;
    double delta_scale;
    const char *only;           /* deltas only on tensors whose name contains this; NULL: all */
    volatile int *interrupt;    /* polled between chunks; non-zero stops with CR_ERR_INTERRUPTED */
} cr_synth_opts;

/* "llama"/"mistral"/"qwen2"/"qwen3" -> arch; false if unknown */
bool cr_synth_arch_parse(const char *s, cr_synth_arch *out);

/* Write the model into `dir`, an existing empty directory (the caller makes
 * it appear atomically). Errors: ARG (inconsistent sizes: hidden not a
 * multiple of heads, heads not a multiple of kv_heads, zero sizes, vocab <
 * 3, unsupported dtype), IO, NOMEM, INTERRUPTED, and any error opening
 * `from`. */
cr_status cr_synth_write(const cr_allocator *alloc, const char *dir, const cr_synth_opts *opts,
                         cr_error *err);

/* The generator: an approximately N(0,1) value (Irwin-Hall of four 16-bit
 * uniforms, scaled to unit variance, in [-2√3, 2√3]) for element `index`
 * of the tensor whose name hashes to `name_hash`. */
uint64_t cr_synth_name_hash(const char *name);
float cr_synth_normal(uint64_t seed, uint64_t name_hash, uint64_t index);

#endif
