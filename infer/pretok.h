/* pretok.h — hand-written scanners for the pre-tokenizer split regexes of
 * GPT-2, Llama-3 and Qwen2 (no regex library: crucible depends on none), and
 * the GPT-2 byte <-> unicode map of the ByteLevel pre-tokenizer.
 *
 * Each scanner answers "how long is the regex match that starts here". The
 * three patterns match at every position (their alternatives cover every
 * character), so splitting is: match, cut, repeat. The alternatives are
 * tried in the pattern's order with Oniguruma's leftmost-first, greedy,
 * backtracking semantics; the comments in pretok.c derive each one.
 */
#ifndef CR_INFER_PRETOK_H
#define CR_INFER_PRETOK_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef enum cr_split_pattern {
    CR_SPLIT_GPT2,    /* 's|'t|...| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    CR_SPLIT_LLAMA3,  /* (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|... */
    CR_SPLIT_QWEN2    /* as LLAMA3 with \p{N} (one digit per piece) */
} cr_split_pattern;

/* Which scanner implements this regex source text (as it appears in
 * tokenizer.json after JSON unescaping); false if none does. */
bool cr_split_pattern_from_regex(const char *regex, cr_split_pattern *out);

/* Byte length (>= 1) of the match starting at s[0], where s[0..n) is
 * valid UTF-8 and n > 0. */
size_t cr_split_match(cr_split_pattern p, const char *s, size_t n);

/* GPT-2 bytes_to_unicode: the code point standing for byte b. */
uint32_t cr_byte_to_unicode(uint8_t b);
/* Inverse: the byte for code point cp, or -1 if cp stands for no byte. */
int cr_unicode_to_byte(uint32_t cp);

#endif
