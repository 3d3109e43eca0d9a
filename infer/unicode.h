/* unicode.h — the little Unicode the tokenizer needs: UTF-8 decoding and
 * encoding, the letter / number / whitespace classes of the pre-tokenizer
 * regexes, and NFD/NFC normalisation.
 *
 * Classes come from infer/unicode_tables.c, generated once from Python's
 * unicodedata by tools/gen_unicode.py (committed; the build does not run
 * it). Whitespace is the regex `\s` of Oniguruma / Rust, i.e. the Unicode
 * White_Space property, which is short enough to list by hand.
 */
#ifndef CR_INFER_UNICODE_H
#define CR_INFER_UNICODE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "base.h"
#include "utf8.h"   /* cr_utf8_decode/encode/check, used with the classes below */

extern const char cr_unicode_version[];
extern const uint32_t cr_uni_letters[][2], cr_uni_letters_len;
extern const uint32_t cr_uni_numbers[][2], cr_uni_numbers_len;
extern const uint32_t cr_uni_decomp[][3], cr_uni_decomp_len;
extern const uint32_t cr_uni_ccc_table[][3], cr_uni_ccc_table_len;
extern const uint32_t cr_uni_compose[][3], cr_uni_compose_len;


bool cr_uni_is_letter(uint32_t cp);     /* general category L* */
bool cr_uni_is_number(uint32_t cp);     /* general category N* */
bool cr_uni_is_space(uint32_t cp);      /* White_Space */
unsigned cr_uni_ccc(uint32_t cp);       /* canonical combining class */

/* Canonical normalisation of UTF-8 text s[0..n) into a new buffer allocated
 * with alloc (*out, *out_len; NUL-terminated). compose=false gives NFD,
 * true gives NFC. Input must be valid UTF-8 (CR_ERR_FORMAT otherwise). */
cr_status cr_uni_normalize(const cr_allocator *alloc, const char *s, size_t n,
                           bool compose, char **out, size_t *out_len, cr_error *err);

#endif
