/* tokslow.h — a model directory whose tokenizer exists only in "slow" form
 * (a SentencePiece tokenizer.model, or GPT-2-style vocab.json + merges.txt,
 * and no tokenizer.json), turned into the tokenizer.json and
 * tokenizer_config.json that transformers 5.25's AutoTokenizer builds for it
 * and save_pretrained writes (mergekit 0.1.5 loads every tokenizer that
 * way; spec/tokenizer-merge.md §8).
 *
 * Converted, in a directory without tokenizer_config.json: a SentencePiece
 * BPE model (llama / mistral style, with or without byte fallback,
 * user-defined and control pieces, any normalizer spec) for the model types
 * transformers 5.25 loads as a plain TokenizersBackend
 * (SpmConverter.build_tokenizer_from_spm_proto), and GPT-2 vocab.json +
 * merges.txt for those it loads as GPT2Tokenizer; and a llama
 * tokenizer.model beside a tokenizer_config.json whose tokenizer_class is
 * LlamaTokenizer(Fast), with the options that class honours. Everything
 * else is refused by name: a Unigram SentencePiece model, a
 * tokenizer_config.json of another class or model type, or with a key or
 * value not reproduced (named), other model types.
 */
#ifndef CR_TOKSLOW_H
#define CR_TOKSLOW_H

#include "base.h"

typedef struct cJSON cJSON;
typedef struct cr_sbuf cr_sbuf;

typedef enum cr_tokslow_kind {
    CR_TOKSLOW_NONE = 0,        /* a tokenizer.json, or no tokenizer at all */
    CR_TOKSLOW_SPM,             /* tokenizer.model and no tokenizer.json */
    CR_TOKSLOW_BPE_FILES,       /* vocab.json + merges.txt and neither of the above */
} cr_tokslow_kind;

cr_tokslow_kind cr_tokslow_kind_of(const char *dir);

/* The converted tokenizer of `dir` (model `ref`, config.json model_type
 * `model_type`, NULL when unknown): *tok = tokenizer.json, *cfg =
 * tokenizer_config.json as save_pretrained writes them (the caller
 * cJSON_Deletes both; cfg's model_max_length is a raw number node).
 * Errors: UNSUPPORTED naming the model, the file and what is not converted;
 * FORMAT / IO from reading the files; NOMEM. */
cr_status cr_tokslow_convert(const cr_allocator *a, const char *dir, const char *ref, const char *model_type,
                             cJSON **tok, cJSON **cfg, cr_error *err);

/* mergekit 0.1.5's re-save of a donor's tokenizer (no
 * tokenizer_config.json; merge.py _copy_tokenizer, and mergekit-moe always):
 * the texts of tokenizer.json and tokenizer_config.json that
 * AutoTokenizer(dir).save_pretrained writes for a converted tokenizer.model.
 * `moe`: mergekit-moe first sets pad_token to the bos token (else the eos
 * token). Errors as cr_tokslow_convert's. The texts are the caller's. */
cr_status cr_tokslow_resave(const cr_allocator *a, const char *dir, const char *ref, const char *model_type, bool moe,
                            char **tok_text, size_t *tok_len, char **cfg_text, size_t *cfg_len, cr_error *err);

/* `j` as transformers writes it: tokenizers' pretty JSON (serde_json,
 * indent 2, UTF-8 kept) for tokenizer.json, and json.dumps(indent=2,
 * ensure_ascii=False) of an already key-sorted object for
 * tokenizer_config.json; both the same text for these trees. Raw nodes are
 * written verbatim. A final newline is added when `newline`. */
void cr_tokslow_print(cr_sbuf *b, const cJSON *j, bool newline);

#endif
