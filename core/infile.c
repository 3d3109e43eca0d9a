/* infile.c — whole small input files under a limit, and strict JSON text
 * (infile.h). */
#include "infile.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* "16 MiB" for whole MiB, else "N bytes" */
static void limit_text(char *buf, size_t cap, uint64_t limit)
{
    if (limit >= (1u << 20) && !(limit & ((1u << 20) - 1)))
        snprintf(buf, cap, "%llu MiB", (unsigned long long)(limit >> 20));
    else
        snprintf(buf, cap, "%llu bytes", (unsigned long long)limit);
}

cr_status cr_file_read(const cr_allocator *alloc, const char *path, uint64_t limit, const char *what,
                       char **out, size_t *len, cr_error *err)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return cr_fail_errno(err, errno, "%s: cannot open %s", path, what);
    cr_status st = CR_OK;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        /* room for one byte past the limit: reading it is how a file that
         * is too large is told from one of exactly the limit */
        if (n == cap) {
            if ((uint64_t)n > limit) break;
            uint64_t want = cap ? (uint64_t)cap * 2 : 65536;
            if (want > limit + 1) want = limit + 1;
            if (want > SIZE_MAX - 1) want = SIZE_MAX - 1;
            char *nb = cr_realloc(alloc, buf, (size_t)want + 1);
            if (!nb) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory reading the %s", path, what); goto done; }
            buf = nb;
            cap = (size_t)want;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (!got) break;
    }
    if (ferror(f)) { st = cr_fail_errno(err, errno ? errno : EIO, "%s: cannot read %s", path, what); goto done; }
    if ((uint64_t)n > limit) {
        char lt[32];
        limit_text(lt, sizeof lt, limit);
        st = cr_fail(err, CR_ERR_LIMIT, "%s: %s larger than %s", path, what, lt);
        goto done;
    }
    if (!buf) {
        buf = cr_malloc(alloc, 1);
        if (!buf) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory reading the %s", path, what); goto done; }
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    buf = NULL;
done:
    cr_free(alloc, buf);
    fclose(f);
    return st;
}

cr_status cr_json_check_text(const char *path, const char *where, const char *text, size_t n, cr_error *err)
{
    const unsigned char *s = (const unsigned char *)text;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (!in_string) {
            if (c == '"') in_string = true;
            else if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r')
                return cr_fail(err, CR_ERR_FORMAT, "%s: control character U+%04X outside a JSON string at %s %zu",
                               path, c, where, i);
            continue;
        }
        if (c == '"') { in_string = false; continue; }
        if (c < 0x20)
            return cr_fail(err, CR_ERR_FORMAT, "%s: raw control character U+%04X inside a JSON string at %s %zu "
                           "(JSON requires it escaped)", path, c, where, i);
        if (c != '\\' || i + 1 >= n) continue;
        if (s[i + 1] == 'u' && i + 5 < n && !memcmp(s + i + 2, "0000", 4))
            return cr_fail(err, CR_ERR_FORMAT, "%s: \\u0000 inside a JSON string at %s %zu (crucible cannot hold "
                           "a NUL in a name or value)", path, where, i);
        i++;    /* the escaped character: \" does not end the string */
    }
    return CR_OK;
}

cr_status cr_json_read_object(const cr_allocator *alloc, const char *path, uint64_t limit, cJSON **out,
                              cr_error *err)
{
    *out = NULL;
    char *text;
    size_t len;
    cr_status st = cr_file_read(alloc, path, limit, "JSON file", &text, &len, err);
    if (st) return st;
    if ((st = cr_json_check_text(path, "byte", text, len, err))) {
        cr_free(alloc, text);
        return st;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, false);
    size_t at = end ? (size_t)(end - text) : 0;
    bool trailing = false;
    if (j) for (const char *q = end; q < text + len; q++)
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') { trailing = true; break; }
    cr_free(alloc, text);
    if (!j || trailing) {
        cJSON_Delete(j);
        return cr_fail(err, CR_ERR_FORMAT, "%s: not valid JSON (near byte %zu)", path, at);
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return cr_fail(err, CR_ERR_FORMAT, "%s: not a JSON object", path);
    }
    *out = j;
    return CR_OK;
}
