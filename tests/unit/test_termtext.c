/* test_termtext.c — names from input files escaped for a terminal
 * (core/termtext.h): controls (C0, DEL, C1) and invalid UTF-8 as \xNN, valid
 * UTF-8 kept, cutting at the buffer's end, and cr_fail's messages, which
 * name tensors and files, escaped whoever prints them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "harness.h"
#include "termtext.h"

static const char *esc(const char *s, unsigned flags)
{
    static char buf[256];
    cr_text_safe(buf, sizeof buf, s, strlen(s), flags);
    return buf;
}

TEST(escapes)
{
    CHECK_STR(esc("model.layers.0.weight", 0), "model.layers.0.weight");
    CHECK_STR(esc("a\x1b[31mb", 0), "a\\x1b[31mb");
    CHECK_STR(esc("\x07\x7f", 0), "\\x07\\x7f");
    CHECK_STR(esc("caf\xc3\xa9 \xe6\x97\xa5", 0), "caf\xc3\xa9 \xe6\x97\xa5");  /* UTF-8 kept */
    CHECK_STR(esc("x\xc2\x9b" "2J", 0), "x\\xc2\\x9b2J");                      /* C1 CSI as UTF-8 */
    CHECK_STR(esc("x\x9b" "2J", 0), "x\\x9b2J");                              /* 8-bit CSI */
    CHECK_STR(esc("\xc3(", 0), "\\xc3(");                                    /* cut sequence */
    CHECK_STR(esc("\xed\xa0\x80", 0), "\\xed\\xa0\\x80");                      /* a surrogate */
    CHECK_STR(esc("\xc0\xaf", 0), "\\xc0\\xaf");                               /* overlong '/' */
    CHECK_STR(esc("a\nb\tc", 0), "a\\x0ab\\x09c");
    CHECK_STR(esc("a\nb\tc\r", CR_TEXT_KEEP_LINES), "a\nb\tc\\x0d");
    CHECK_STR(esc("back\\slash", 0), "back\\slash");
    /* escaping twice changes nothing */
    CHECK_STR(esc(esc("a\x1b" "b", 0), 0), "a\\x1bb");
    CHECK_EQ_INT(cr_text_safe_len("a\x1b", 0), 5);
}

TEST(cut_at_the_end)
{
    char buf[6];
    /* "ab" + "\x1b" (4) does not fit in 5: cut before the escape */
    CHECK_EQ_INT(cr_text_safe(buf, sizeof buf, "ab\x1b", 3, 0), 6);
    CHECK_STR(buf, "ab");
    CHECK_EQ_INT(cr_text_safe(buf, sizeof buf, "abcde", 5, 0), 5);
    CHECK_STR(buf, "abcde");
    /* a 3-byte character is not split */
    CHECK_EQ_INT(cr_text_safe(buf, sizeof buf, "abc\xe6\x97\xa5", 6, 0), 6);
    CHECK_STR(buf, "abc");
}

TEST(fput)
{
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    REQUIRE(f);
    cr_text_fput(f, "t\x1b]0;title\x07", 0);
    fclose(f);
    CHECK_STR(text, "t\\x1b]0;title\\x07");
    free(text);
}

TEST(errors_are_escaped)
{
    cr_error err = {0};
    cr_fail(&err, CR_ERR_FORMAT, "%s: tensor '%s': bad", "m/x.safetensors", "w\x1b[2J");
    CHECK_STR(err.msg, "m/x.safetensors: tensor 'w\\x1b[2J': bad");
    /* multi-line messages (Lua tracebacks) keep their lines */
    cr_fail(&err, CR_ERR_CONFIG, "first\n  while loading '%s'", "q\x9b");
    CHECK_STR(err.msg, "first\n  while loading 'q\\x9b'");
}

int main(void)
{
    RUN(escapes);
    RUN(cut_at_the_end);
    RUN(fput);
    RUN(errors_are_escaped);
    return cr_test_summary();
}
