/* termtext.c — escaping text from input files for a terminal (termtext.h). */
#include "termtext.h"
#include "utf8.h"

#include <stdint.h>
#include <string.h>

/* Calls emit(ud, piece, len) for each piece of the escaped text. */
typedef void (*emit_fn)(void *ud, const char *p, size_t n);

static void escape(const char *str, size_t n, unsigned flags, emit_fn emit, void *ud)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        uint32_t cp = 0;
        size_t len = cr_utf8_decode((const char *)s + i, n - i, &cp);
        bool keep = (flags & CR_TEXT_KEEP_LINES) && (cp == '\n' || cp == '\t');
        bool control = len && (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f));
        if (len && (!control || keep)) {
            emit(ud, (const char *)s + i, len);
            i += len;
            continue;
        }
        /* a control character (all its bytes) or one byte of invalid UTF-8 */
        size_t k = len ? len : 1;
        for (size_t j = 0; j < k; j++) {
            char e[4] = { '\\', 'x', hex[s[i + j] >> 4], hex[s[i + j] & 15] };
            emit(ud, e, 4);
        }
        i += k;
    }
}

typedef struct buf_sink {
    char *dst;
    size_t cap, len;        /* len: the whole escaped length so far */
    bool full;              /* a piece did not fit: nothing more is written */
} buf_sink;

static void buf_emit(void *ud, const char *p, size_t n)
{
    buf_sink *b = ud;
    if (!b->full && b->len + n < b->cap) memcpy(b->dst + b->len, p, n);
    else if (!b->full) { b->full = true; b->dst[b->len] = 0; }
    b->len += n;
}

size_t cr_text_safe(char *dst, size_t cap, const char *s, size_t n, unsigned flags)
{
    buf_sink b = { .dst = dst, .cap = cap };
    escape(s, n, flags, buf_emit, &b);
    if (!b.full) dst[b.len] = 0;
    return b.len;
}

static void count_emit(void *ud, const char *p, size_t n)
{
    (void)p;
    *(size_t *)ud += n;
}

size_t cr_text_safe_len(const char *s, unsigned flags)
{
    size_t n = 0;
    escape(s, strlen(s), flags, count_emit, &n);
    return n;
}

static void file_emit(void *ud, const char *p, size_t n)
{
    fwrite(p, 1, n, (FILE *)ud);
}

void cr_text_fput(FILE *f, const char *s, unsigned flags)
{
    escape(s, strlen(s), flags, file_emit, f);
}
