/* jsonw.c — string buffer and the two JSON output dialects (see jsonw.h). */
#include "jsonw.h"
#include "utf8.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cr_sbuf_init(cr_sbuf *b, const cr_allocator *alloc)
{
    b->alloc = alloc;
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

static bool sbuf_reserve(cr_sbuf *b, size_t extra)
{
    if (b->failed) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2) { b->failed = true; return false; }
        cap *= 2;
    }
    char *d = cr_realloc(b->alloc, b->data, cap);
    if (!d) { b->failed = true; return false; }
    b->data = d;
    b->cap = cap;
    return true;
}

void cr_sbuf_add(cr_sbuf *b, const char *s, size_t n)
{
    if (!sbuf_reserve(b, n)) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void cr_sbuf_adds(cr_sbuf *b, const char *s) { cr_sbuf_add(b, s, strlen(s)); }

void cr_sbuf_printf(cr_sbuf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) { b->failed = true; va_end(ap2); return; }
    if (sbuf_reserve(b, (size_t)n)) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

char *cr_sbuf_take(cr_sbuf *b, size_t *len)
{
    if (!b->failed && !b->data) sbuf_reserve(b, 0);
    if (b->failed) { cr_sbuf_free(b); return NULL; }
    b->data[b->len] = 0;
    char *d = b->data;
    if (len) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

void cr_sbuf_free(cr_sbuf *b)
{
    cr_free(b->alloc, b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

void cr_json_add_string(cr_sbuf *b, const char *str, size_t n, bool ascii)
{
    const unsigned char *s = (const unsigned char *)str;
    cr_sbuf_add(b, "\"", 1);
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        switch (c) {
        case '"': cr_sbuf_add(b, "\\\"", 2); i++; continue;
        case '\\': cr_sbuf_add(b, "\\\\", 2); i++; continue;
        case '\n': cr_sbuf_add(b, "\\n", 2); i++; continue;
        case '\r': cr_sbuf_add(b, "\\r", 2); i++; continue;
        case '\t': cr_sbuf_add(b, "\\t", 2); i++; continue;
        case '\b': cr_sbuf_add(b, "\\b", 2); i++; continue;
        case '\f': cr_sbuf_add(b, "\\f", 2); i++; continue;
        default: break;
        }
        if (c < 0x20) { cr_sbuf_printf(b, "\\u%04x", c); i++; continue; }
        if (c < 0x80 || !ascii) {
            /* serde_json copies everything else (0x7f and UTF-8 included) */
            size_t j = i + 1;
            while (j < n && s[j] >= 0x20 && s[j] != '"' && s[j] != '\\' && (!ascii || s[j] < 0x80)) j++;
            cr_sbuf_add(b, (const char *)s + i, j - i);
            i = j;
            continue;
        }
        uint32_t cp;
        size_t len = cr_utf8_decode((const char *)s + i, n - i, &cp);
        if (!len) { cr_sbuf_adds(b, "\\ufffd"); i++; continue; }
        if (cp >= 0x10000) {
            cp -= 0x10000;
            cr_sbuf_printf(b, "\\u%04x\\u%04x", 0xd800u + (cp >> 10), 0xdc00u + (cp & 0x3ffu));
        } else {
            cr_sbuf_printf(b, "\\u%04x", cp);
        }
        i += len;
    }
    cr_sbuf_add(b, "\"", 1);
}

void cr_json_add_number(cr_sbuf *b, double v)
{
    if (isnan(v)) { cr_sbuf_adds(b, "NaN"); return; }
    if (isinf(v)) { cr_sbuf_adds(b, v > 0 ? "Infinity" : "-Infinity"); return; }
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        cr_sbuf_printf(b, "%.0f", v);
        return;
    }
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    cr_sbuf_adds(b, tmp);
}

static void indent(cr_sbuf *b, int depth)
{
    cr_sbuf_add(b, "\n", 1);
    for (int i = 0; i < depth; i++) cr_sbuf_add(b, "  ", 2);
}

void cr_json_add_pretty(cr_sbuf *b, const cJSON *item, int depth,
                        cr_json_num_text_fn num_text, void *ud)
{
    if (cJSON_IsObject(item) || cJSON_IsArray(item)) {
        bool obj = cJSON_IsObject(item);
        const cJSON *c = item->child;
        if (!c) { cr_sbuf_adds(b, obj ? "{}" : "[]"); return; }
        cr_sbuf_add(b, obj ? "{" : "[", 1);
        for (; c; c = c->next) {
            indent(b, depth + 1);
            if (obj) {
                const char *k = c->string ? c->string : "";
                cr_json_add_string(b, k, strlen(k), true);
                cr_sbuf_add(b, ": ", 2);
            }
            cr_json_add_pretty(b, c, depth + 1, num_text, ud);
            if (c->next) cr_sbuf_add(b, ",", 1);
        }
        indent(b, depth);
        cr_sbuf_add(b, obj ? "}" : "]", 1);
    } else if (cJSON_IsString(item)) {
        const char *s = item->valuestring ? item->valuestring : "";
        cr_json_add_string(b, s, strlen(s), true);
    } else if (cJSON_IsNumber(item)) {
        const char *t = num_text ? num_text(ud, item) : NULL;
        if (t) cr_sbuf_adds(b, t);
        else cr_json_add_number(b, item->valuedouble);
    } else if (cJSON_IsBool(item)) {
        cr_sbuf_adds(b, cJSON_IsTrue(item) ? "true" : "false");
    } else {
        cr_sbuf_adds(b, "null");
    }
}
