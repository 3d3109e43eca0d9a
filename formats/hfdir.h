/* hfdir.h — the non-weight contents of a Hugging Face output directory, as
 * pure functions that return text or lists (the VM, synth and moe write
 * them): the patched config.json, which tokenizer files to copy from the
 * donor, and the README.md model card (merge-methods.md §7.1, §7.4, §7.5;
 * formats-and-moe.md §6).
 */
#ifndef CR_HFDIR_H
#define CR_HFDIR_H

#include "base.h"

typedef struct cr_hf_config_edit {
    /* torch dtype name written to torch_dtype (and to dtype if the donor
     * has that key); NULL keeps the donor's */
    const char *dtype_name;
    /* transformers 5 (mergekit 0.1.5) writes the dtype as `dtype` only:
     * the donor's `dtype` (else its `torch_dtype`, else dtype_name) keeps
     * its place, the other key goes; dtype_name, if set, is the value */
    bool dtype_key_only;
    /* layer-count key ("num_hidden_layers", or dotted like
     * "text_config.num_hidden_layers"); NULL leaves the depth alone */
    const char *layer_key;
    long long n_layers;
    /* vocabulary-size key (dotted allowed) set to vocab_size, as mergekit's
     * _update_config_vocab after a tokenizer merge; NULL: unchanged */
    const char *vocab_key;
    long long vocab_size;
} cr_hf_config_edit;

/* Patch a donor config.json text: set the dtype keys; set the layer count
 * and, when it changes, resize the per-layer lists beside it (layer_types
 * truncated or extended by repeating its pattern, max_window_layers clamped
 * to the new depth). Everything else is kept, in the donor's key order and
 * number spelling; the output is indent-2 JSON with a final newline, as
 * transformers writes. `donor_name` names the file in errors. Result
 * allocated with alloc. Errors: FORMAT (not a JSON object; the layer key's
 * parent object missing), NOMEM. */
cr_status cr_hf_patch_config(const cr_allocator *alloc, const char *donor_text, size_t len,
                             const char *donor_name, const cr_hf_config_edit *edit,
                             char **out, size_t *out_len, cr_error *err);

/* The tokenizer and auxiliary files mergekit copies from a donor directory
 * (§7.5), in its order, keeping only those that exist: mergekit 0.1.4's six
 * (tokenizer_config.json ... merges.txt), or with `all` 0.1.5's ten
 * (chat_template.jinja, generation_config.json, chat_template.json,
 * video_preprocessor_config.json added). Nothing is copied unless the donor
 * has tokenizer_config.json plus tokenizer.json or tokenizer.model. Writes
 * up to `cap` static names into out; returns the count. */
size_t cr_hf_tokenizer_files(const char *donor_dir, bool all, const char **out, size_t cap);

/* mergekit 0.1.5's fallback when the donor has no tokenizer_config.json:
 * transformers 5.25's AutoTokenizer + save_pretrained. crucible reproduces
 * it only where that is a plain TokenizersBackend over the donor's
 * tokenizer.json: a tokenizer.json and neither tokenizer_config.json nor
 * tokenizer.model, and a config.json model_type that transformers maps to
 * no tokenizer class of its own (`model_type`; NULL refuses). The output
 * is then tokenizer.json as the donor has it (tokenizers re-serialises it:
 * the same bytes when the donor's was written by tokenizers) and this
 * tokenizer_config.json text; NULL when the fallback does not apply. */
const char *cr_hf_resaved_tokenizer_config(const char *donor_dir, const char *model_type);

/* mergekit's Hub-id rule for the card: not starting with '/' or '~', at
 * most one '/', and not an existing local path (no network check). */
bool cr_hf_is_hub_id(const char *path);

typedef struct cr_hf_card {
    const char *out_path;        /* title = its basename */
    const char *method;          /* registry name, e.g. "ties" */
    const char *method_pretty;   /* e.g. "TIES"; NULL: the registry name */
    const char *method_url;      /* paper link; NULL or "": none */
    const char *base_model;      /* NULL if the merge has none */
    bool base_not_named;         /* slerp: the base is listed as a merged model, not as "a base" */
    const char *const *models;   /* every referenced model in config order ("model+lora" allowed) */
    size_t n_models;
    const char *config_yaml;     /* the recipe text, verbatim */
    const char *mergekit_version;    /* the release reproduced ("0.1.5"); NULL: not said */
    const char *provenance;          /* what else made these bytes (crucible version, op table,
                                      * seed, precision), one sentence; NULL: not said */
} cr_hf_card;

/* README.md text (allocated with alloc; NULL on NOMEM). */
char *cr_hf_model_card(const cr_allocator *alloc, const cr_hf_card *card, size_t *len);

#endif
