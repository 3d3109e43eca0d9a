/* gguf_pre.h — the value of a GGUF file's `tokenizer.ggml.pre`, chosen as
 * llama.cpp's converter chooses it (spec/gguf.md §5): encode a fixed test
 * text with the model's tokenizer (post-processor applied), hash the ids'
 * Python list text with SHA-256, look the hash up in the converter's table.
 */
#ifndef CR_INFER_GGUF_PRE_H
#define CR_INFER_GGUF_PRE_H

#include "base.h"

/* The converter's test text (350 code points, 431 UTF-8 bytes). */
extern const char cr_gguf_chktxt[];
#define CR_GGUF_CHKTXT_LEN 431u

/* The converter's chkhsh of `ids`: sha256 of "[1, 2, 3]" as lowercase hex.
 * Errors: NOMEM, LIMIT. */
cr_status cr_gguf_chkhsh(const cr_allocator *alloc, const int32_t *ids, size_t n, char hex[65], cr_error *err);
/* The pre name of a hash, or NULL if the table has none. */
const char *cr_gguf_pre_lookup(const char *hex);
/* true if `name` is one of the table's names (what --gguf-pre accepts) */
bool cr_gguf_pre_known(const char *name);

/* Load tokenizer.json at `path`, hash the test text's ids and look the
 * hash up: *pre is the name (static storage), hex the hash. No entry:
 * CR_ERR_UNSUPPORTED naming the hash and --gguf-pre. Tokenizer errors are
 * passed on. */
cr_status cr_gguf_pre_detect(const cr_allocator *alloc, const char *path, const char **pre, char hex[65],
                             cr_error *err);

/* The same for the text of a tokenizer.json (`what` names it). */
cr_status cr_gguf_pre_detect_json(const cr_allocator *alloc, const char *json, size_t len, const char *what,
                                  const char **pre, char hex[65], cr_error *err);

#endif
