/* gates.h — mergekit-moe router vectors (formats-and-moe.md §1.7) as
 * library functions: `hidden`, `cheap_embed`, and the transforms behind
 * `random` / `uniform_random`. The `crucible moe` command (config, writers)
 * is not here; it calls these per expert and stacks the results.
 *
 * Prompts are token-id lists produced the mergekit way:
 * cr_gate_tokenize_prompt glues the BOS *text* in front of the prompt and
 * encodes with add_special = false, so the added-token matcher turns it into
 * the BOS id and the first word is tokenized as tokenizer.json says.
 */
#ifndef CR_INFER_GATES_H
#define CR_INFER_GATES_H

#include "base.h"
#include "forward.h"
#include "tokenizer.h"

typedef struct cr_id_list {
    const int32_t *ids;
    size_t n;
} cr_id_list;

/* ids of (bos ? bos : "") + prompt, appended to `ids` (int32_t items). */
cr_status cr_gate_tokenize_prompt(const cr_tokenizer *tok, const char *bos, const char *prompt,
                                  cr_vec *ids, cr_error *err);

/* How `hidden` gates read the hidden states. */
typedef enum cr_gate_pool {
    CR_GATE_POOL_LAST,          /* `hidden` / `hidden_last`: the last position */
    CR_GATE_POOL_AVG            /* `hidden_avg`: the mean over all positions */
} cr_gate_pool;

typedef enum cr_gate_precision {
    /* mergekit-moe's computation (default): the prompts of one list run as
     * one left-padded batch (pad id `pad_id`, positions 0..T-1 counted from
     * the first pad, pads masked as keys; T = the longest prompt) through
     * the model in bf16 as transformers runs it on CPU (cr_llm_run.bf16);
     * the batch means, the difference and the normalisation are bf16 ops
     * like torch's, so the gates are bf16 values. With CR_GATE_POOL_AVG the
     * mean runs over all T positions, pads included (mergekit's quirk). */
    CR_GATE_PRECISION_BF16,
    /* f32 throughout, each prompt unpadded at positions 0..n-1, sums in
     * double: closer to the model's exact maths, not to mergekit's bytes.
     * CR_GATE_POOL_AVG averages the prompt's own positions only. */
    CR_GATE_PRECISION_F32
} cr_gate_precision;

typedef struct cr_gate_hidden_opts {
    cr_gate_pool pool;
    cr_gate_precision precision;
    int32_t pad_id;             /* BF16: the padding id (tokenizer pad = bos, else eos); < 0: none, and
                                 * prompts of different lengths are refused (CR_ERR_ARG) like
                                 * transformers refuses to pad */
} cr_gate_hidden_opts;

/* `hidden` gate of one expert: out[l*H .. l*H+H) for l = 0..L-1 is
 *   normalize( mean_p pool(hs[l](pos_p)) − mean_q pool(hs[l](neg_q)) )
 * with hs[l] the residual stream entering layer l (hs[0] = embeddings) and
 * pool per opts (LAST: the last position; AVG: the mean over positions),
 * normalize(v) = v / max(|v|, 1e-8) per layer (mergekit's router.py).
 * opts NULL = { LAST, BF16, pad_id -1 }. n_neg may be 0. Needs n_pos >= 1
 * and non-empty prompts (CR_ERR_ARG). The forward pass stops before the
 * last layer. */
cr_status cr_gate_hidden(const cr_llm *llm, const cr_gate_hidden_opts *opts, const cr_id_list *pos, size_t n_pos,
                         const cr_id_list *neg, size_t n_neg, float *out, cr_error *err);

/* `cheap_embed` gate (one [H] vector; mergekit repeats it for every layer):
 *   c = normalize(Σ over all tokens of all positive prompts of E[id])
 *   if negatives: c = normalize(c − normalize(Σ over negative tokens E[id]))
 * computed in f32 from the embedding rows as stored. Ids must be < vocab
 * (mergekit's one-hot width = config vocab_size): CR_ERR_ARG otherwise. */
cr_status cr_gate_cheap_embed(const cr_allocator *alloc, const cr_llm_weight *embed, uint32_t vocab, const cr_id_list *pos, size_t n_pos,
                              const cr_id_list *neg, size_t n_neg, float *out, cr_error *err);

/* `random`: standard normal values (not normalised) from 2·ceil(n/2)
 * uniforms u in [0, 1) by Box–Muller: z0 = r cos(2πu1), z1 = r sin(2πu1),
 * r = sqrt(−2 ln(1 − u0)). The uniforms come from crucible's counter-based
 * RNG (vm/rng.h, cr_rng_uniform) keyed by the seed, so gates never depend
 * on threads. */
void cr_gate_random_from_uniform(const float *u, size_t n, float *out);
/* `uniform_random`: (2u − 1)/sqrt(H), i.e. U[−1/√H, 1/√H) like nn.Linear's
 * default init. */
void cr_gate_uniform_from_uniform(const float *u, size_t n, uint32_t hidden, float *out);

#endif
