/* gguf_meta.h — the general.* naming keys of a GGUF file as llama.cpp's
 * converter derives them (gguf-py metadata.py, spec/gguf.md §3.1): the model
 * card's YAML front matter, config.json's _name_or_path and the model
 * directory's name, each split into name / organization / basename /
 * finetune / version / size label by get_model_id_components, ported
 * exactly for ASCII names.
 *
 * The front matter is read for the shape crucible's own model card has
 * (top-level `key: scalar`, `key: []`, `key:` followed by `- scalar` items);
 * other YAML, and keys whose handling is not ported, are refused by name.
 */
#ifndef CR_GGUF_META_H
#define CR_GGUF_META_H

#include "base.h"
#include "gguf.h"

/* gguf-py get_total_parameter_count over the tensors as written: the total,
 * the non-expert part, one expert's share of the stacked "_exps." tensors,
 * and the mean expert count (0 without experts) */
typedef struct cr_gguf_param_count {
    uint64_t total, shared, expert;
    uint64_t expert_count;
} cr_gguf_param_count;

typedef struct cr_gguf_base_model {
    char *name, *organization, *version, *repo_url;   /* NULL: not written */
} cr_gguf_base_model;

typedef struct cr_gguf_general {
    char *name, *organization, *basename, *finetune, *version, *size_label, *license;
    bool have_base_models;       /* the card has base_model (a count is written, even 0) */
    cr_gguf_base_model *base_models;
    uint32_t n_base_models;
    char **tags;
    uint32_t n_tags;
    bool have_tags;
    char **languages;
    uint32_t n_languages;
    bool have_languages;
    void *owned;                 /* private */
} cr_gguf_general;

/* Derive the keys for the model directory `dir` (its README.md text is
 * `card`, card_len bytes, NULL when there is none),
 * config.json's _name_or_path (NULL if absent), and the parameter counts of
 * the tensors as written (the size label when the names give none: "NxM"
 * with experts). Errors: UNSUPPORTED (a name or card the port does not cover, named),
 * FORMAT, IO, NOMEM. */
cr_status cr_gguf_general_load(const cr_allocator *alloc, const char *dir, const char *card, size_t card_len,
                               const char *name_or_path,
                               const cr_gguf_param_count *pc, cr_gguf_general *g, cr_error *err);
/* Append the keys in set_gguf_meta_model's order, from general.name on. */
void cr_gguf_general_put(const cr_gguf_general *g, cr_gguf_kv *kv);
void cr_gguf_general_free(cr_gguf_general *g);

/* Python's id_to_title and model_weight_count_rounded_notation(n, 2), for tests */
char *cr_gguf_id_to_title(const cr_allocator *alloc, const char *s);
void cr_gguf_size_label(uint64_t n, char out[48]);

#endif
