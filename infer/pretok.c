/* pretok.c — the GPT-2 / Llama-3 / Qwen2 split scanners and the byte-level
 * map (see pretok.h). The patterns, as tokenizer.json spells them:
 *
 *   GPT-2:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *            ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   Qwen2:  the Llama-3 pattern with \p{N} in place of \p{N}{1,3}.
 *
 * At a position the alternatives are tried left to right; the first that
 * can match wins, and inside it quantifiers are greedy with backtracking.
 */
#include "pretok.h"
#include "unicode.h"

#include <string.h>

static const char RX_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RX_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RX_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

bool cr_split_pattern_from_regex(const char *regex, cr_split_pattern *out)
{
    if (!strcmp(regex, RX_GPT2)) { *out = CR_SPLIT_GPT2; return true; }
    if (!strcmp(regex, RX_LLAMA3)) { *out = CR_SPLIT_LLAMA3; return true; }
    if (!strcmp(regex, RX_QWEN2)) { *out = CR_SPLIT_QWEN2; return true; }
    return false;
}

/* A decoded view of the text: code point and byte offset at index i. The
 * scanners look a few characters ahead, so they decode on demand. */
typedef struct cursor {
    const char *s;
    size_t n;
} cursor;

/* Code point at byte offset off (off < n), its length in *len. Input is
 * valid UTF-8 (checked by the caller); a bad byte reads as itself. */
static uint32_t at(const cursor *c, size_t off, size_t *len)
{
    uint32_t cp;
    size_t l = cr_utf8_decode(c->s + off, c->n - off, &cp);
    if (!l) { cp = (unsigned char)c->s[off]; l = 1; }
    *len = l;
    return cp;
}

static bool is_l(uint32_t cp) { return cr_uni_is_letter(cp); }
static bool is_n(uint32_t cp) { return cr_uni_is_number(cp); }
static bool is_s(uint32_t cp) { return cr_uni_is_space(cp); }
static bool is_crlf(uint32_t cp) { return cp == '\r' || cp == '\n'; }
static bool is_punct(uint32_t cp) { return !is_s(cp) && !is_l(cp) && !is_n(cp); }

/* End offset of the run of chars satisfying pred starting at off. */
static size_t run(const cursor *c, size_t off, bool (*pred)(uint32_t))
{
    while (off < c->n) {
        size_t l;
        if (!pred(at(c, off, &l))) break;
        off += l;
    }
    return off;
}

/* 's|'t|'re|'ve|'m|'ll|'d, optionally case-insensitive: match length or 0. */
static size_t contraction(const cursor *c, bool fold)
{
    if (c->n < 2 || c->s[0] != '\'') return 0;
    char a = c->s[1], b = c->n > 2 ? c->s[2] : 0;
    if (fold) {
        if (a >= 'A' && a <= 'Z') a = (char)(a + 32);
        if (b >= 'A' && b <= 'Z') b = (char)(b + 32);
    }
    if (a == 's' || a == 't') return 2;
    if ((a == 'r' || a == 'v') && b == 'e') return 3;
    if (a == 'm') return 2;
    if (a == 'l' && b == 'l') return 3;
    if (a == 'd') return 2;
    return 0;
}

/* \s+(?!\S) then \s+, for a whitespace run starting at 0: the run, minus
 * its last character when a non-space follows and the run is longer than
 * one character (the lookahead backtracks by one; a single space followed
 * by a word falls through to plain \s+, which takes it whole). */
static size_t space_tail(const cursor *c)
{
    size_t end = run(c, 0, is_s);
    if (end == c->n) return end;
    /* find the start of the last whitespace char of the run */
    size_t last = 0, off = 0;
    while (off < end) { size_t l; at(c, off, &l); last = off; off += l; }
    return last > 0 ? last : end;
}

static size_t match_gpt2(const cursor *c)
{
    size_t l0, m;
    if ((m = contraction(c, false))) return m;
    uint32_t c0 = at(c, 0, &l0);
    size_t start = 0;
    if (c0 == ' ' && l0 < c->n) start = l0;   /* the optional leading space */
    for (int pass = 0; pass < 2; pass++) {
        size_t st = pass == 0 ? start : 0;
        if (pass == 1 && start == 0) break;    /* nothing to backtrack */
        if (st >= c->n) continue;
        size_t l;
        uint32_t cp = at(c, st, &l);
        if (is_l(cp)) return run(c, st, is_l);
        if (is_n(cp)) return run(c, st, is_n);
        if (is_punct(cp)) return run(c, st, is_punct);
    }
    return space_tail(c);
}

static size_t match_llama(const cursor *c, bool qwen)
{
    size_t l0, l1, m;
    if ((m = contraction(c, true))) return m;
    uint32_t c0 = at(c, 0, &l0);
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (is_l(c0)) return run(c, 0, is_l);
    if (!is_crlf(c0) && !is_n(c0) && l0 < c->n && is_l(at(c, l0, &l1)))
        return run(c, l0, is_l);
    /* \p{N}{1,3} or \p{N} */
    if (is_n(c0)) {
        size_t off = l0;
        for (int k = 1; k < (qwen ? 1 : 3) && off < c->n; k++) {
            size_t l;
            if (!is_n(at(c, off, &l))) break;
            off += l;
        }
        return off;
    }
    /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
    size_t st = (c0 == ' ' && l0 < c->n && is_punct(at(c, l0, &l1))) ? l0 : 0;
    if (is_punct(at(c, st, &l1))) {
        size_t end = run(c, st, is_punct);
        return run(c, end, is_crlf);
    }
    /* c0 is whitespace from here on. \s*[\r\n]+ : the whitespace run cut
     * just after its last \r or \n, if it has one. */
    size_t end = run(c, 0, is_s), off = 0, cut = 0;
    while (off < end) {
        size_t l;
        uint32_t cp = at(c, off, &l);
        off += l;
        if (is_crlf(cp)) cut = off;
    }
    if (cut) return cut;
    return space_tail(c);
}

size_t cr_split_match(cr_split_pattern p, const char *s, size_t n)
{
    cursor c = { s, n };
    size_t m = p == CR_SPLIT_GPT2 ? match_gpt2(&c) : match_llama(&c, p == CR_SPLIT_QWEN2);
    return m ? m : 1;
}

uint32_t cr_byte_to_unicode(uint8_t b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    /* the 68 other bytes, in increasing order, take U+0100.. */
    unsigned k;
    if (b <= 0x20) k = b;                       /* 0x00-0x20: 33 bytes */
    else if (b <= 0xA0) k = 33 + (b - 0x7F);    /* 0x7F-0xA0: 34 bytes */
    else k = 67;                                /* 0xAD */
    return 0x100 + k;
}

int cr_unicode_to_byte(uint32_t cp)
{
    if (cp < 0x100) {
        uint8_t b = (uint8_t)cp;
        return cr_byte_to_unicode(b) == cp ? (int)cp : -1;
    }
    if (cp > 0x143) return -1;
    unsigned k = cp - 0x100;
    if (k <= 32) return (int)k;
    if (k <= 66) return (int)(0x7F + (k - 33));
    return 0xAD;
}
