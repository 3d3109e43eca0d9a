/* termtext.h — text from input files made safe to show on a terminal.
 *
 * Tensor names, shard file names, config strings and Lua error text come
 * from files anyone can write. Printed raw, an ESC in a tensor name moves
 * the cursor, recolours or retitles the user's terminal (or hides the rest
 * of a line). Everything crucible prints from an input goes through one of
 * these functions: every byte a terminal could act on is written as the
 * four characters \xNN — C0 controls (U+0000-U+001F), DEL, C1 controls
 * (U+0080-U+009F, which some terminals obey in their UTF-8 form), and each
 * byte of invalid UTF-8 (a lone 0x9B is CSI on 8-bit terminals). Valid
 * UTF-8 text otherwise passes unchanged; a backslash is kept as is, so
 * escaping twice changes nothing.
 */
#ifndef CR_TERMTEXT_H
#define CR_TERMTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* keep '\n' and '\t' (multi-line messages, Lua tracebacks); without this
 * flag they are escaped too, as a name must stay on one line */
#define CR_TEXT_KEEP_LINES 1u

/* The escaped form of s[0..n) into dst (cap bytes, cap > 0): always
 * NUL-terminated, cut before an escape or a character that would not fit.
 * Returns the length the whole escaped text has (> cap - 1: it was cut). */
size_t cr_text_safe(char *dst, size_t cap, const char *s, size_t n, unsigned flags);

/* Length of the escaped form of the NUL-terminated s. */
size_t cr_text_safe_len(const char *s, unsigned flags);

/* Writes the escaped form of the NUL-terminated s to f. */
void cr_text_fput(FILE *f, const char *s, unsigned flags);

#endif
