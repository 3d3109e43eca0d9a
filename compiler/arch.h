/* arch.h — a model's architecture read from its tensor names alone.
 *
 * There is no per-architecture table. Layer tensors are the ones named
 * `<prefix>.<digits>.<rest>` for the prefix holding the most distinct layer
 * indices (`model.layers`, `gpt_neox.layers`, `transformer.h`,
 * `model.decoder.layers`, ...). The other tensors are "pre" weights when
 * they are input embeddings (token / position embeddings) and "post" weights
 * otherwise (final norm, lm_head) — the split mergekit's architecture files
 * make by hand. Buffers mergekit never writes (`rotary_emb.inv_freq`) are
 * left out.
 */
#ifndef CR_ARCH_H
#define CR_ARCH_H

#include "base.h"

typedef struct cr_arch_layer {
    const char **rests;         /* suffixes after "<prefix>.<i>.", name order */
    uint32_t n_rests;
} cr_arch_layer;

typedef struct cr_arch {
    const char *layer_prefix;   /* NULL when the model has no layer tensors */
    long long n_layers;         /* highest layer index + 1 (0 if none) */
    cr_arch_layer *layers;      /* n_layers entries (a missing index has none) */
    const char **pre, **post;   /* full tensor names, name order */
    uint32_t n_pre, n_post;
    const char *embed;          /* the input token embedding (tied lm_head source) or NULL */
} cr_arch;

/* Analyse `names` (any order; the strings must outlive the result). All
 * memory from `ar`. CR_ERR_NOMEM only. */
cr_status cr_arch_analyse(cr_arena *ar, const char *const *names, uint32_t n, cr_arch *out);

/* Embedding-like tensors (vocabulary rows), where mergekit's `is_embed`
 * applies: embed_tokens, lm_head, wte, embed_in, embed_out,
 * word_embeddings. */
bool cr_arch_is_embed(const char *name);
/* Output heads that mergekit treats as optional and tied to the input
 * embedding (lm_head, embed_out). */
bool cr_arch_is_tied_head(const char *name);

#endif
