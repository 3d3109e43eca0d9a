/* tokident.h — `tokenizer_source` / `tokenizer.source` in the one case
 * crucible handles so far: every input model has the same tokenizer
 * vocabulary, so mergekit's embedding permutation is the identity and the
 * merge is the ordinary one (spec/tokenizer-merge.md §5.0).
 */
#ifndef CR_TOKIDENT_H
#define CR_TOKIDENT_H

#include "plan.h"

/* Checks that every input model of `plan` (stage < 0) has a tokenizer.json
 * with the same `model.vocab` and `added_tokens`, ids exactly 0..N-1, and a
 * config vocab size of N (so mergekit neither strips, pads nor permutes),
 * that `st->tokenizer_pad` does not change N, and finds the model whose
 * tokenizer mergekit writes: the base (`base`, `union`: stage donor) or the
 * named input. *src_model is that model's index in plan->models. Anything else is
 * CR_ERR_UNSUPPORTED naming the models and what differs. */
cr_status cr_tokenizer_identity(const cr_allocator *a, const cr_plan *plan, const cr_plan_stage *st, int donor,
                                int *src_model, cr_error *err);

#endif
