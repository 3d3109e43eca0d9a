/* unicode.c — UTF-8, character classes and canonical normalisation for the
 * tokenizer (see unicode.h). Tables are binary-searched; NFC follows the
 * standard algorithm: full canonical decomposition (Hangul algorithmically),
 * stable sort of each run of non-starters by combining class, then
 * canonical composition of starter + unblocked mark. */
#include "unicode.h"

#include <string.h>

static bool in_ranges(const uint32_t (*r)[2], uint32_t n, uint32_t cp)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (cp < r[mid][0]) hi = mid;
        else if (cp > r[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

bool cr_uni_is_letter(uint32_t cp)
{
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return in_ranges(cr_uni_letters, cr_uni_letters_len, cp);
}

bool cr_uni_is_number(uint32_t cp)
{
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return in_ranges(cr_uni_numbers, cr_uni_numbers_len, cp);
}

bool cr_uni_is_space(uint32_t cp)
{
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x3000:
        return true;
    }
    return cp >= 0x2000 && cp <= 0x200A;
}

unsigned cr_uni_ccc(uint32_t cp)
{
    if (cp < 0x300) return 0;
    uint32_t lo = 0, hi = cr_uni_ccc_table_len;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (cp < cr_uni_ccc_table[mid][0]) hi = mid;
        else if (cp > cr_uni_ccc_table[mid][1]) lo = mid + 1;
        else return cr_uni_ccc_table[mid][2];
    }
    return 0;
}

/* Hangul syllable constants (Unicode §3.12). */
enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7,
       L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT,
       S_COUNT = L_COUNT * N_COUNT };

static const uint32_t *find_decomp(uint32_t cp)
{
    uint32_t lo = 0, hi = cr_uni_decomp_len;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (cp < cr_uni_decomp[mid][0]) hi = mid;
        else if (cp > cr_uni_decomp[mid][0]) lo = mid + 1;
        else return cr_uni_decomp[mid];
    }
    return NULL;
}

/* Appends the full canonical decomposition of cp; returns false on OOM. */
static bool push_cp(cr_vec *v, uint32_t cp) { return cr_vec_push(v, &cp) != NULL; }

static bool decompose(cr_vec *v, uint32_t cp, int depth)
{
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE;
        if (!push_cp(v, L_BASE + s / N_COUNT)) return false;
        if (!push_cp(v, V_BASE + (s % N_COUNT) / T_COUNT)) return false;
        if (s % T_COUNT && !push_cp(v, T_BASE + s % T_COUNT)) return false;
        return true;
    }
    const uint32_t *d = cp >= 0xC0 && depth < 8 ? find_decomp(cp) : NULL;
    if (!d) return push_cp(v, cp);
    if (!decompose(v, d[1], depth + 1)) return false;
    return d[2] ? decompose(v, d[2], depth + 1) : true;
}

static uint32_t compose_pair(uint32_t a, uint32_t b)
{
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 &&
        b > T_BASE && b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    uint32_t lo = 0, hi = cr_uni_compose_len;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        const uint32_t *e = cr_uni_compose[mid];
        if (a < e[0] || (a == e[0] && b < e[1])) hi = mid;
        else if (a > e[0] || b > e[1]) lo = mid + 1;
        else return e[2];
    }
    return 0;
}

cr_status cr_uni_normalize(const cr_allocator *alloc, const char *s, size_t n,
                           bool compose, char **out, size_t *out_len, cr_error *err)
{
    cr_vec cps;
    cr_vec_init(&cps, alloc, sizeof(uint32_t));
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = cr_utf8_decode(s + i, n - i, &cp);
        if (!l) {
            cr_vec_free(&cps);
            return cr_fail(err, CR_ERR_FORMAT, "invalid UTF-8 at byte %zu", i);
        }
        if (!decompose(&cps, cp, 0)) {
            cr_vec_free(&cps);
            return cr_fail(err, CR_ERR_NOMEM, "out of memory normalising text");
        }
        i += l;
    }
    uint32_t *c = cps.data;
    size_t m = cps.len;
    /* Canonical ordering: insertion sort inside runs of non-starters
     * (stable, and runs are short). */
    for (size_t i = 1; i < m; i++) {
        unsigned ci = cr_uni_ccc(c[i]);
        if (!ci) continue;
        size_t j = i;
        uint32_t x = c[i];
        while (j > 0 && cr_uni_ccc(c[j - 1]) > ci) { c[j] = c[j - 1]; j--; }
        c[j] = x;
    }
    if (compose && m) {
        size_t starter = 0, w = 1;
        bool have_starter = cr_uni_ccc(c[0]) == 0;
        unsigned last_cc = have_starter ? 0 : 256;
        for (size_t i = 1; i < m; i++) {
            unsigned cc = cr_uni_ccc(c[i]);
            uint32_t comp = 0;
            /* blocked if a mark of equal or higher class sits in between */
            if (have_starter && (last_cc < cc || (last_cc == 0 && w == starter + 1)))
                comp = compose_pair(c[starter], c[i]);
            if (comp) { c[starter] = comp; continue; }
            if (cc == 0) { starter = w; have_starter = true; last_cc = 0; }
            else last_cc = cc;
            c[w++] = c[i];
        }
        m = w;
    }
    char *buf = cr_malloc(alloc, m * 4 + 1);
    if (!buf) {
        cr_vec_free(&cps);
        return cr_fail(err, CR_ERR_NOMEM, "out of memory normalising text");
    }
    size_t len = 0;
    for (size_t i = 0; i < m; i++) len += cr_utf8_encode(c[i], buf + len);
    buf[len] = 0;
    cr_vec_free(&cps);
    *out = buf;
    *out_len = len;
    return CR_OK;
}
