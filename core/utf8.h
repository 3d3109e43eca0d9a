/* utf8.h — the one UTF-8 decoder, encoder and validator.
 *
 * Used by the safetensors reader (header names must be UTF-8), the JSON
 * writer (\u escapes), terminal-safe text and the tokenizer. Well-formed
 * means RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
 */
#ifndef CR_UTF8_H
#define CR_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decode one UTF-8 scalar at s[0..n). Returns its length in bytes (1..4)
 * and stores the code point, or returns 0 for an invalid or truncated
 * sequence (overlong forms and surrogates are invalid) or n == 0. */
size_t cr_utf8_decode(const char *s, size_t n, uint32_t *cp);
/* Encode cp into out (4 bytes room); returns the length. */
size_t cr_utf8_encode(uint32_t cp, char *out);
/* True if s[0..n) is well-formed UTF-8; *bad (may be NULL) gets the first
 * bad offset. */
bool cr_utf8_check(const char *s, size_t n, size_t *bad);

#endif
