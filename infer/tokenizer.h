/* tokenizer.h — a Hugging Face tokenizer.json (BPE models) read in C.
 *
 * Covers what Llama-2/Mistral (SentencePiece-style BPE with byte fallback),
 * Llama-3 and Qwen2 (byte-level BPE with split regexes) ship: added tokens
 * (matched before the normalizer, or after it for `normalized: true`
 * tokens), normalizers Prepend / Replace(string) / NFC / NFD / Sequence,
 * pre-tokenizers Metaspace / ByteLevel / Split (the GPT-2, Llama-3 and Qwen2
 * regexes, or a literal string) / Digits / Sequence, the BPE model with
 * merges in both JSON forms, byte_fallback, fuse_unk, ignore_merges, and the
 * decoders needed to turn ids back into text (ByteLevel, Metaspace, Replace,
 * ByteFallback, Fuse, Strip, Sequence). Anything else in the file is
 * refused at load time with CR_ERR_UNSUPPORTED naming the component, never
 * silently ignored. Spec: spec/inference.md.
 *
 * A loaded tokenizer is immutable: encode and decode may run on several
 * threads at once.
 */
#ifndef CR_INFER_TOKENIZER_H
#define CR_INFER_TOKENIZER_H

#include "base.h"

typedef struct cr_tokenizer cr_tokenizer;

/* Load `path` (a tokenizer.json). On success *out is a new tokenizer owned
 * by the caller (cr_tokenizer_free). Errors: CR_ERR_IO (cannot read),
 * CR_ERR_FORMAT (bad JSON, a merge naming a token not in the vocab, ...),
 * CR_ERR_UNSUPPORTED (a model other than BPE, an unknown normalizer,
 * pre-tokenizer regex, decoder or post-processor), CR_ERR_NOMEM. */
cr_status cr_tokenizer_load(const cr_allocator *alloc, const char *path,
                            cr_tokenizer **out, cr_error *err);
/* Same from JSON text in memory; `name` is used in messages. */
cr_status cr_tokenizer_load_json(const cr_allocator *alloc, const char *json, size_t len,
                                 const char *name, cr_tokenizer **out, cr_error *err);
void cr_tokenizer_free(cr_tokenizer *tok);

/* Encode text[0..len) (UTF-8) and append the ids (int32_t) to `ids`, a
 * cr_vec the caller initialised with item size sizeof(int32_t).
 * add_special applies the post-processor (e.g. Llama's "<s> $A"); mergekit
 * and perplexity evaluation pass false. Errors: CR_ERR_FORMAT for invalid
 * UTF-8 (the byte offset is named), CR_ERR_RUNTIME when a character has no
 * token and no unk token exists, CR_ERR_NOMEM. */
cr_status cr_tokenizer_encode(const cr_tokenizer *tok, const char *text, size_t len,
                              bool add_special, cr_vec *ids, cr_error *err);

/* Decode ids back to bytes through the decoder chain. *out is allocated with
 * the tokenizer's allocator and NUL-terminated (the text itself may hold
 * NUL bytes, so use *out_len). skip_special drops special added tokens.
 * Errors: CR_ERR_ARG for an id with no token, CR_ERR_NOMEM. */
cr_status cr_tokenizer_decode(const cr_tokenizer *tok, const int32_t *ids, size_t n,
                              bool skip_special, char **out, size_t *out_len, cr_error *err);

/* Id of a token's exact content (added tokens first, then the vocab), or -1. */
int32_t cr_tokenizer_token_id(const cr_tokenizer *tok, const char *content);
/* Content of an id (added token or vocab entry), or NULL. Owned by tok. */
const char *cr_tokenizer_id_to_token(const cr_tokenizer *tok, int32_t id);
/* One past the largest id (vocab and added tokens). */
uint32_t cr_tokenizer_n_ids(const cr_tokenizer *tok);

#endif
