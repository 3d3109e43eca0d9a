/* jsonw.h — building text: a growable string buffer, and JSON output in the
 * two dialects crucible must match byte for byte.
 *
 *   serde_json compact (safetensors headers): no spaces, UTF-8 kept raw,
 *     control characters escaped, \u00XX in lowercase hex.
 *   Python json.dumps(indent=2) (index files, config.json): ", " / ": "
 *     separators with newlines, ensure_ascii (non-ASCII as \uXXXX, astral
 *     characters as surrogate pairs).
 *
 * A buffer remembers an allocation failure instead of returning it from
 * every append; cr_sbuf_take reports it once at the end.
 */
#ifndef CR_JSONW_H
#define CR_JSONW_H

#include "base.h"

typedef struct cJSON cJSON;

typedef struct cr_sbuf {
    const cr_allocator *alloc;
    char *data;
    size_t len, cap;
    bool failed;                /* an append ran out of memory */
} cr_sbuf;

void cr_sbuf_init(cr_sbuf *b, const cr_allocator *alloc);
void cr_sbuf_add(cr_sbuf *b, const char *s, size_t n);
void cr_sbuf_adds(cr_sbuf *b, const char *s);
void cr_sbuf_printf(cr_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The NUL-terminated text (ownership passes to the caller, free with the
 * buffer's allocator) or NULL if any append failed; the buffer is reset. */
char *cr_sbuf_take(cr_sbuf *b, size_t *len);
void cr_sbuf_free(cr_sbuf *b);

/* A JSON string literal of s[0..n). ascii: Python's ensure_ascii escaping;
 * otherwise serde_json's (UTF-8 kept). Invalid UTF-8 becomes \ufffd in
 * ascii mode and is copied as is otherwise. */
void cr_json_add_string(cr_sbuf *b, const char *s, size_t n, bool ascii);

/* Python-style number text for a double: integral values below 2^53 as
 * integers, others as the shortest %g that reads back exactly. */
void cr_json_add_number(cr_sbuf *b, double v);

/* Pretty-print a cJSON tree as Python's json.dumps(obj, indent=2) would,
 * keeping key order. `num_text`, if given, returns the original literal of
 * a number node (so 10000.0 stays 10000.0), or NULL to format the value. */
typedef const char *(*cr_json_num_text_fn)(void *ud, const cJSON *node);
void cr_json_add_pretty(cr_sbuf *b, const cJSON *item, int depth,
                        cr_json_num_text_fn num_text, void *ud);

#endif
