/* tokmerge.h — mergekit 0.1.5's tokenizer merge at compile time
 * (spec/tokenizer-merge.md §1, §5.2): every input's tokenizer read with
 * cJSON, the base stripped to its vocab_size, the output vocabulary of
 * `tokenizer_source` base / union / a model built, and for every input model
 * the permutation from output ids to its own rows. The graph builder turns
 * these into row gathers (§5.3); the aux writer writes the tokenizer.
 */
#ifndef CR_TOKMERGE_H
#define CR_TOKMERGE_H

#include <cjson/cJSON.h>

#include "mkversion.h"
#include "plan.h"

typedef struct cr_tokmerge {
    cr_arena arena;             /* owns everything below */
    uint32_t n;                 /* output vocabulary size N (ids 0..N-1) */
    uint32_t n_pad;             /* rows written: N rounded up to pad_to_multiple_of */
    const char **tokens;        /* output id -> token text */
    /* per plan model: its row for each output id, -1 when it lacks the
     * token; NULL for models that are stage outputs */
    int32_t **perm;
    long long *vocab_size;      /* per plan model: its config vocab size (-1: unknown) */
    int base;                   /* plan model the vocabulary is built from (§1.2) */
    int src_model;              /* plan model whose tokenizer is the output (base / model source);
                                 * -1: a model source that is none of the inputs */
    int src_stage;              /* the output's tokenizer is this earlier stage's (-1: a directory's) */
    const char *src_dir;        /* the directory of that tokenizer's files (borrowed from the plan;
                                 * NULL: an earlier stage's output, compiler/tokstage.h) */
    bool identity;              /* every permutation i -> i over every model's rows: the plain merge */
    cr_mk_version mk;           /* the release reproduced: 0.1.4 (transformers 4) or 0.1.5 */
    uint32_t n_added_out;       /* tokens appended past the source's vocabulary */
    /* per tokenizer.tokens entry: the plan model its source names (-1: not
     * an input) and, for model_token, the raw row (token_id, or the id of
     * `token` in that model's tokenizer) */
    int *cfg_model;
    long long *cfg_row;
    uint32_t *cfg_id;           /* the entry's token's output id */
    cJSON *tok_json;            /* the source's tokenizer.json (the base's stripped) */
    cJSON *src_cfg;             /* the source's tokenizer_config.json (NULL: none) */
    cJSON *added_out;           /* added_tokens entries of the appended tokens, by id */
    /* the source's tokenizer was converted from a slow one
     * (formats/tokslow.c): no tokenizer.json to copy, and src_cfg is the
     * converter's tokenizer_config.json */
    bool src_converted;
} cr_tokmerge;

struct cr_tokstage;

/* Builds the merge for stage `si` of the plan (its tokenizer_source set).
 * Its donor model (the base when there is one, else the first model) is
 * the base of the merge. `stages` says what the directories of stages
 * [0, si) hold (compiler/tokstage.h); an input that is an earlier stage's
 * output is read from there (NULL: no input is a stage). `mk` is the
 * mergekit release reproduced. Errors name the model and what mergekit
 * would do. */
cr_status cr_tokmerge_build(const cr_allocator *a, const cr_plan *plan, uint32_t si,
                            const struct cr_tokstage *stages, cr_mk_version mk, cr_tokmerge **out,
                            cr_error *err);
void cr_tokmerge_free(const cr_allocator *a, cr_tokmerge *t);

#endif
