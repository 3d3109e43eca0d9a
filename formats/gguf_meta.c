/* gguf_meta.c — general.* naming keys as gguf-py's metadata.py derives
 * them (Metadata.load / apply_metadata_heuristic / get_model_id_components /
 * id_to_title, utility.size_label). The Python regexes are matched by hand,
 * ASCII only; a name with other bytes is refused rather than guessed.
 */
#include "gguf_meta.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "infile.h"
#include "limits.h"

/* ---- Python string helpers (ASCII) ------------------------------------------ */

static bool ci_eq(const char *a, size_t n, const char *b)
{
    if (strlen(b) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)a[i]) != b[i]) return false;
    return true;
}

static bool all_digits(const char *s, size_t n)
{
    if (!n) return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return false;
    return true;
}

/* str.title(): a letter after a letter is lowered, others raised */
static void py_title(char *w)
{
    bool prev = false;
    for (; *w; w++) {
        bool alpha = isalpha((unsigned char)*w) != 0;
        if (alpha) *w = (char)(prev ? tolower((unsigned char)*w) : toupper((unsigned char)*w));
        prev = alpha;
    }
}

/* re.match(r'^(v\d+(?:\.\d+)*|\d.*)$', w) */
static bool title_keeps(const char *w)
{
    if (isdigit((unsigned char)w[0])) return true;
    if (w[0] != 'v') return false;
    const char *p = w + 1;
    while (true) {
        if (!isdigit((unsigned char)*p)) return false;
        while (isdigit((unsigned char)*p)) p++;
        if (!*p) return true;
        if (*p != '.') return false;
        p++;
    }
}

char *cr_gguf_id_to_title(const cr_allocator *a, const char *s)
{
    size_t n = strlen(s);
    char *out = cr_malloc(a, n + 1), *o = out;
    if (!out) return NULL;
    const char *p = s;
    while (*p) {
        while (*p == '-' || isspace((unsigned char)*p)) p++;
        if (!*p) break;
        const char *q = p;
        while (*q && *q != '-' && !isspace((unsigned char)*q)) q++;
        if (o != out) *o++ = ' ';
        char *w = o;
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        *o = 0;
        bool lower = false, upper = false;
        for (char *c = w; *c; c++) {
            lower |= islower((unsigned char)*c) != 0;
            upper |= isupper((unsigned char)*c) != 0;
        }
        if (lower && !upper && !title_keeps(w)) py_title(w);
        p = q;
    }
    *o = 0;
    return out;
}

void cr_gguf_size_label(uint64_t n, char out[48])
{
    double d = (double)n, s;
    const char *suf;
    if (d > 1e12) { s = d * 1e-12; suf = "T"; }
    else if (d > 1e9) { s = d * 1e-9; suf = "B"; }
    else if (d > 1e6) { s = d * 1e-6; suf = "M"; }
    else { s = d * 1e-3; suf = "K"; }
    char digits[48];
    snprintf(digits, sizeof digits, "%.0f", nearbyint(s));   /* round(): half to even */
    const char *z = digits;
    while (*z == '0') z++;
    int fix = 2 - (int)strlen(z);
    snprintf(out, 48, "%.*f%s", fix > 0 ? fix : 0, s, suf);
}

/* ---- get_model_id_components ---------------------------------------------------- */

enum { T_VERSION = 1, T_TYPE = 2, T_SIZE = 4, T_FINETUNE = 8, T_BASE = 16 };

/* (v|iter)?\d+([.]\d+)* */
static bool re_version(const char *p, size_t n)
{
    size_t i = 0;
    if (n >= 4 && ci_eq(p, 4, "iter") && n > 4 && isdigit((unsigned char)p[4])) i = 4;
    else if (n && (p[0] == 'v' || p[0] == 'V')) i = 1;
    while (true) {
        size_t s = i;
        while (i < n && isdigit((unsigned char)p[i])) i++;
        if (i == s) return false;
        if (i == n) return true;
        if (p[i] != '.') return false;
        i++;
    }
}

static bool word_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* i?q\d(_\w)* | b?fp?(16|32) */
static bool re_type(const char *p, size_t n)
{
    size_t i = n && (p[0] == 'i' || p[0] == 'I') ? 1 : 0;
    if (i + 1 < n + 1 && i < n && (p[i] == 'q' || p[i] == 'Q') && i + 1 < n && isdigit((unsigned char)p[i + 1])) {
        size_t r = i + 2;
        bool ok = (n - r) % 2 == 0;
        for (size_t k = r; ok && k < n; k += 2) ok = p[k] == '_' && word_char(p[k + 1]);
        if (ok) return true;
    }
    i = 0;
    if (i < n && (p[i] == 'b' || p[i] == 'B')) i++;
    if (i >= n || (p[i] != 'f' && p[i] != 'F')) return false;
    i++;
    if (i < n && (p[i] == 'p' || p[i] == 'P')) i++;
    return n - i == 2 && (!memcmp(p + i, "16", 2) || !memcmp(p + i, "32", 2));
}

/* (([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl) */
static bool re_size(const char *p, size_t n)
{
    static const char *const words[] = {"small", "mini", "medium", "large", "xl", "xxl"};
    for (size_t k = 0; k < CR_ARRAY_LEN(words); k++)
        if (ci_eq(p, n, words[k])) return true;
    size_t i = 0;
    if (n && (p[0] == 'a' || p[0] == 'A')) {
        i = 1;
    } else {
        size_t j = 0;
        while (j < n && isdigit((unsigned char)p[j])) j++;
        if (j && j < n && (p[j] == 'x' || p[j] == 'X')) i = j + 1;
    }
    size_t s = i;
    while (i < n && isdigit((unsigned char)p[i])) i++;
    if (i == s) return false;
    if (i < n && (p[i] == '.' || p[i] == '_') && i + 1 < n && isdigit((unsigned char)p[i + 1])) {
        i++;
        while (i < n && isdigit((unsigned char)p[i])) i++;
    }
    if (i >= n || !strchr("kmbtKMBT", p[i])) return false;
    i++;
    if (i < n && isdigit((unsigned char)p[i])) i++;
    return i == n;
}

typedef struct idc {
    char *full, *org, *basename, *finetune, *version, *size_label;
} idc;

static char *join_parts(cr_arena *ar, char **parts, const unsigned *types, int n, unsigned want, unsigned not_want,
                        bool dedup)
{
    size_t len = 0;
    for (int i = 0; i < n; i++) len += strlen(parts[i]) + 1;
    char *out = cr_arena_alloc(ar, len + 1);
    if (!out) return NULL;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (!(types[i] & want) || (types[i] & not_want)) continue;
        bool seen = false;
        for (int j = 0; dedup && j < i; j++)
            if ((types[j] & want) && !strcmp(parts[j], parts[i])) seen = true;
        if (seen) continue;
        if (out[0]) strcat(out, "-");
        strcat(out, parts[i]);
    }
    return out[0] ? out : NULL;
}

static cr_status id_components(cr_arena *ar, const char *id, uint64_t total, idc *r, cr_error *err)
{
    memset(r, 0, sizeof *r);
    for (const char *c = id; *c; c++)
        if ((unsigned char)*c >= 0x80 || (*c != ' ' && !isgraph((unsigned char)*c)))
            return cr_fail(err, CR_ERR_UNSUPPORTED, "GGUF: the model name '%s' is not plain ASCII; llama.cpp's naming "
                           "of it is not ported", id);
    if (strchr(id, ' ')) {
        r->full = cr_arena_strdup(ar, id);
        return r->full ? CR_OK : cr_fail(err, CR_ERR_NOMEM, "out of memory");
    }
    const char *slash = strchr(id, '/');
    if (slash) {
        r->org = cr_arena_strndup(ar, id, (size_t)(slash - id));
        r->full = cr_arena_strdup(ar, slash + 1);
        if (r->org && r->org[0] == '.') r->org = NULL;
        if (r->org && !r->org[0])
            return cr_fail(err, CR_ERR_UNSUPPORTED, "GGUF: the model id '%s' has an empty organisation; not ported", id);
    } else {
        r->full = cr_arena_strdup(ar, id);
    }
    if (!r->full) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    char *parts[64];
    unsigned types[64];
    int n = 0;
    for (const char *p = r->full; *p;) {
        const char *q = strchr(p, '-');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len) {
            if (n == 64) return cr_fail(err, CR_ERR_UNSUPPORTED, "GGUF: the model name '%s' has too many parts", id);
            if (!(parts[n] = cr_arena_strndup(ar, p, len))) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
            types[n++] = 0;
        }
        if (!q) break;
        p = q + 1;
    }
    for (int i = 0; i < n; i++) {
        char *part = parts[i];
        size_t len = strlen(part);
        if (re_version(part, len)) {
            types[i] |= T_VERSION;
        } else if (re_type(part, len)) {
            types[i] |= T_TYPE;
            for (char *c = part; *c; c++) *c = (char)toupper((unsigned char)*c);
        } else if (i > 0 && re_size(part, len)) {
            for (char *c = part; *c; c++) if (*c == '_') *c = '.';
            if (isdigit((unsigned char)part[len - 1])) {       /* bloom-7b1 -> 7.1b */
                char *np = cr_arena_alloc(ar, len + 2);
                if (!np) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
                memcpy(np, part, len - 2);
                np[len - 2] = '.';
                np[len - 1] = part[len - 1];
                np[len] = part[len - 2];
                np[len + 1] = 0;
                part = parts[i] = np;
                len++;
            }
            if (len > 1 && isdigit((unsigned char)part[len - 2]) && strchr("kmbt", part[len - 1]))
                part[len - 1] = (char)toupper((unsigned char)part[len - 1]);
            /* float(part[:-1]) succeeds only for digits[.digits] here */
            const char *dot = memchr(part, '.', len - 1);
            bool num = dot ? all_digits(part, (size_t)(dot - part)) && all_digits(dot + 1, (size_t)(part + len - 1 - dot - 1))
                           : all_digits(part, len - 1);
            if (total && num) {
                char tmp[64];
                snprintf(tmp, sizeof tmp, "%.*s", (int)(len - 1), part);
                const char *k = strchr(" KMBT", part[len - 1]);
                int idx = k ? (int)(k - " KMBT") : -1;
                double label = strtod(tmp, NULL) * pow(1000.0, idx);
                if (fabs(label - (double)total) > (double)(7 * total / 8)) {
                    types[i] |= T_FINETUNE;
                    part[len - 1] = (char)tolower((unsigned char)part[len - 1]);
                }
            }
            if (!types[i]) types[i] |= T_SIZE;
        } else if (i > 0 && (ci_eq(part, len, "chat") || ci_eq(part, len, "instruct") || ci_eq(part, len, "vision") ||
                             ci_eq(part, len, "lora"))) {
            types[i] |= T_FINETUNE;
        }
    }
    /* word-based size labels are dropped when a number-based one exists */
    bool numeric = false;
    for (int i = 0; i < n; i++)
        if (types[i] & T_SIZE)
            for (const char *c = parts[i]; *c; c++) numeric |= isdigit((unsigned char)*c) != 0;
    if (numeric)
        for (int i = 0; i < n; i++) {
            if (!(types[i] & T_SIZE)) continue;
            bool alpha = true;
            for (const char *c = parts[i]; *c; c++) alpha &= isalpha((unsigned char)*c) != 0;
            if (alpha) types[i] &= ~(unsigned)T_SIZE;
        }
    bool at_start = true;
    for (int i = 0; i < n; i++) {
        if (at_start && ((!types[i] && isalpha((unsigned char)parts[i][0])) || (types[i] & T_VERSION))) {
            types[i] |= T_BASE;
        } else {
            at_start = false;
            if (!types[i]) types[i] |= T_FINETUNE;
        }
    }
    for (int i = n - 1; i >= 0; i--) {
        if ((types[i] & T_BASE) && (types[i] & ~(unsigned)T_BASE)) types[i] &= ~(unsigned)T_BASE;
        else break;
    }
    r->basename = join_parts(ar, parts, types, n, T_BASE, 0, false);
    r->size_label = join_parts(ar, parts, types, n, T_SIZE, 0, true);
    r->finetune = join_parts(ar, parts, types, n, T_FINETUNE, 0, false);
    r->version = join_parts(ar, parts, types, n, T_VERSION, T_BASE, false);
    if (!r->size_label && !r->finetune && !r->version) r->basename = NULL;
    return CR_OK;
}

/* ---- the model card's front matter ---------------------------------------------- */

typedef struct card_val {
    const char *key;
    bool is_list, is_none;
    char **items;                /* list items, or items[0] = the scalar */
    int n;
} card_val;

static bool yaml_plain_is_string(const char *s)
{
    static const char *const special[] = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"};
    for (size_t i = 0; i < CR_ARRAY_LEN(special); i++)
        if (ci_eq(s, strlen(s), special[i])) return false;
    if (!*s || strchr("[]{}&*!|>'\"%@`#,?:-", s[0])) return false;
    /* anything PyYAML might read as a number (int, float, sexagesimal,
     * .inf/.nan): a leading digit, or a sign or dot before a digit or '.' */
    const char *d = s + (s[0] == '+' || s[0] == '-');
    if (isdigit((unsigned char)d[0]) || (d[0] == '.' && (isdigit((unsigned char)d[1]) || isalpha((unsigned char)d[1]))))
        return false;
    return !strstr(s, ": ") && !strstr(s, " #");
}

/* a scalar: plain string, 'single' ('' escapes) or "double" without escapes */
static char *yaml_scalar(cr_arena *ar, const char *s)
{
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ') n--;
    if (n >= 2 && s[0] == '\'' && s[n - 1] == '\'') {
        char *o = cr_arena_alloc(ar, n), *w = o;
        if (!o) return NULL;
        for (size_t i = 1; i + 1 < n; i++) {
            if (s[i] == '\'') { if (s[i + 1] != '\'' || i + 2 >= n) return NULL; i++; }
            *w++ = s[i];
        }
        *w = 0;
        return o;
    }
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        if (memchr(s + 1, '\\', n - 2) || memchr(s + 1, '"', n - 2)) return NULL;
        return cr_arena_strndup(ar, s + 1, n - 2);
    }
    char *o = cr_arena_strndup(ar, s, n);
    return o && yaml_plain_is_string(o) ? o : NULL;
}

static cr_status read_card(cr_arena *ar, const cr_allocator *a, const char *dir, const char *card, size_t len,
                           card_val **vals, int *n_vals, cr_error *err)
{
    *vals = NULL;
    *n_vals = 0;
    if (!card) return CR_OK;   /* no card */
    char *path = cr_path_join(a, dir, "README.md");   /* for messages */
    if (!path) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    const char *text = card;
    cr_status st = CR_OK;
    card_val *v = cr_arena_alloc(ar, 64 * sizeof *v);
    int nv = 0;
    if (!v) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
    /* splitlines(); the first line must be exactly "---" */
    char *textc = cr_arena_strndup(ar, text, len);
    if (!textc) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
    char *p = textc, *end = textc + len;
    int line_no = 0;
    card_val *cur = NULL;
    while (p < end) {
        char *e = p;
        while (e < end && *e != '\n' && *e != '\r') e++;
        char *next = e < end ? e + 1 : e;
        if (e < end && *e == '\r' && next < end && *next == '\n') next++;
        *e = 0;
        line_no++;
        if (line_no == 1) {
            if (strcmp(p, "---")) break;          /* no front matter */
            p = next;
            continue;
        }
        if (!strcmp(p, "---")) break;
        if (memchr(p, '\t', (size_t)(e - p))) {
            st = cr_fail(err, CR_ERR_UNSUPPORTED, "%s line %d: tabs in the front matter are not read for GGUF", path, line_no);
            goto out;
        }
        char *s = p;
        p = next;
        if (!*s || s[0] == '#') continue;
        if (!strncmp(s, "- ", 2) || !strcmp(s, "-")) {
            if (!cur || !cur->is_list || cur->n >= 256) {
                st = cr_fail(err, CR_ERR_UNSUPPORTED, "%s line %d: front matter shape not read for GGUF", path, line_no);
                goto out;
            }
            if (!cur->items) cur->items = cr_arena_alloc(ar, 256 * sizeof(char *));
            char *item = cur->items ? yaml_scalar(ar, s + 2) : NULL;
            if (!item) {
                st = cr_fail(err, CR_ERR_UNSUPPORTED, "%s line %d: '%s' is not a plain string item; not read for GGUF",
                             path, line_no, s);
                goto out;
            }
            cur->items[cur->n++] = item;
            cur->is_none = false;
            continue;
        }
        char *colon = strchr(s, ':');
        bool key_ok = colon && colon > s;
        for (char *c = s; key_ok && c < colon; c++) key_ok = isalnum((unsigned char)*c) || *c == '_';
        if (!key_ok || nv == 64 || (colon[1] && colon[1] != ' ')) {
            st = cr_fail(err, CR_ERR_UNSUPPORTED, "%s line %d: '%s': front matter shape not read for GGUF", path, line_no, s);
            goto out;
        }
        cur = &v[nv++];
        memset(cur, 0, sizeof *cur);
        cur->key = cr_arena_strndup(ar, s, (size_t)(colon - s));
        char *val = colon + 1;
        while (*val == ' ') val++;
        if (!*val) { cur->is_list = true; cur->is_none = true; continue; }
        if (!strcmp(val, "[]")) { cur->is_list = true; continue; }
        cur->items = cr_arena_alloc(ar, sizeof(char *));
        if (!cur->items || !(cur->items[0] = yaml_scalar(ar, val))) {
            st = cr_fail(err, CR_ERR_UNSUPPORTED, "%s line %d: '%s' is not a plain string value; not read for GGUF",
                         path, line_no, s);
            goto out;
        }
        cur->n = 1;
    }
    *vals = v;
    *n_vals = nv;
out:
    cr_free(a, path);
    return st;
}

static const card_val *card_get(const card_val *v, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i].key, key)) return &v[i];
    return NULL;
}

/* ---- load and put ---------------------------------------------------------------- */

static void fill_from(cr_gguf_general *g, cr_arena *ar, const cr_allocator *a, const idc *c)
{
    if (!g->name && c->full) g->name = cr_gguf_id_to_title(a, c->full);
    if (!g->organization && c->org) g->organization = cr_gguf_id_to_title(a, c->org);
    if (!g->basename && c->basename) g->basename = cr_arena_strdup(ar, c->basename);
    if (!g->finetune && c->finetune) g->finetune = cr_arena_strdup(ar, c->finetune);
    if (!g->version && c->version) g->version = cr_arena_strdup(ar, c->version);
    if (!g->size_label && c->size_label) g->size_label = cr_arena_strdup(ar, c->size_label);
}

cr_status cr_gguf_general_load(const cr_allocator *alloc, const char *dir, const char *card_text, size_t card_len,
                               const char *name_or_path,
                               const cr_gguf_param_count *pc, cr_gguf_general *g, cr_error *err)
{
    uint64_t total_params = pc->total;
    memset(g, 0, sizeof *g);
    cr_arena *ar = cr_calloc(alloc, 1, sizeof *ar);
    if (!ar) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    cr_arena_init(ar, alloc);
    g->owned = ar;
    card_val *card;
    int nc;
    cr_status st = read_card(ar, alloc, dir, card_text, card_len, &card, &nc, err);
    if (st) return st;
    static const char *const unported[] = {
        "name", "author", "version", "organization", "description", "finetune", "basename", "size_label", "url", "doi",
        "uuid", "repo_url", "model_name", "model_author", "model_version", "model_organization", "model_description",
        "model_finetune", "model_basename", "model_size_label", "model_url", "model_doi", "model_uuid",
        "model_repo_url", "model_creator", "model_type", "datasets", "dataset", "dataset_sources", "license_name",
        "license_link"};
    for (size_t i = 0; i < CR_ARRAY_LEN(unported); i++)
        if (card_get(card, nc, unported[i]))
            return cr_fail(err, CR_ERR_UNSUPPORTED, "%s/README.md: front matter key '%s' is read by llama.cpp's converter; "
                           "its handling is not ported yet", dir, unported[i]);
    const card_val *bm = card_get(card, nc, "base_model");
    if (!bm) bm = card_get(card, nc, "base_models");
    if (!bm) bm = card_get(card, nc, "base_model_sources");
    if (bm) {
        g->have_base_models = true;
        g->base_models = cr_arena_alloc(ar, (size_t)(bm->n ? bm->n : 1) * sizeof *g->base_models);
        if (!g->base_models) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
        for (int i = 0; i < bm->n; i++) {
            const char *id = bm->items[i];
            if (!strncmp(id, "http://", 7) || !strncmp(id, "https://", 8) || !strncmp(id, "ssh://", 6))
                return cr_fail(err, CR_ERR_UNSUPPORTED, "%s/README.md: base_model URL '%s' is not ported yet", dir, id);
            idc c;
            if ((st = id_components(ar, id, total_params, &c, err))) return st;
            cr_gguf_base_model *b = &g->base_models[g->n_base_models++];
            if (c.full && !(b->name = cr_gguf_id_to_title(alloc, c.full))) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
            if (c.org && !(b->organization = cr_gguf_id_to_title(alloc, c.org))) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
            b->version = c.version;
            if (c.org && c.full) b->repo_url = cr_arena_printf(ar, "https://huggingface.co/%s/%s", c.org, c.full);
        }
    }
    const card_val *lic = card_get(card, nc, "license");
    if (lic && lic->n > 1) return cr_fail(err, CR_ERR_UNSUPPORTED, "%s/README.md: a license list is not ported yet", dir);
    if (lic && lic->n == 1 && !lic->is_list) g->license = lic->items[0];
    /* tags then pipeline_tag; languages then language (use_array_model_card_metadata appends) */
    const char *tag_keys[2] = {"tags", "pipeline_tag"}, *lang_keys[2] = {"languages", "language"};
    for (int pass = 0; pass < 2; pass++) {
        const char *const *keys = pass ? lang_keys : tag_keys;
        char ***list = pass ? &g->languages : &g->tags;
        uint32_t *count = pass ? &g->n_languages : &g->n_tags;
        bool *have = pass ? &g->have_languages : &g->have_tags;
        for (int k = 0; k < 2; k++) {
            const card_val *cv = card_get(card, nc, keys[k]);
            if (!cv || cv->is_none) continue;
            char **nl = cr_arena_alloc(ar, (*count + (uint32_t)cv->n + 1) * sizeof(char *));
            if (!nl) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
            if (*count) memcpy(nl, *list, *count * sizeof(char *));
            for (int i = 0; i < cv->n; i++) nl[(*count)++] = cv->items[i];
            *list = nl;
            *have = true;
        }
    }
    /* _name_or_path (at most one '/'), then the directory's name */
    idc c;
    if (name_or_path) {
        int slashes = 0;
        for (const char *p = name_or_path; *p; p++) slashes += *p == '/';
        if (slashes <= 1) {
            if ((st = id_components(ar, name_or_path, total_params, &c, err))) return st;
            fill_from(g, ar, alloc, &c);
        }
    }
    size_t n = strlen(dir);
    char *d = cr_arena_strdup(ar, dir);
    if (!d) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    while (n > 1 && d[n - 1] == '/') d[--n] = 0;
    const char *base = strrchr(d, '/') ? strrchr(d, '/') + 1 : d;
    if ((st = id_components(ar, base, total_params, &c, err))) return st;
    fill_from(g, ar, alloc, &c);
    if (!g->name) g->name = cr_gguf_id_to_title(alloc, base);   /* never reached: the directory gives one */
    if (!g->name) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    if (!g->size_label && total_params) {
        char label[48];
        if (pc->expert_count) {
            char r[48];
            cr_gguf_size_label(pc->shared + pc->expert, r);
            snprintf(label, sizeof label, "%llux%s", (unsigned long long)pc->expert_count, r);
        } else {
            cr_gguf_size_label(total_params, label);
        }
        g->size_label = cr_arena_strdup(ar, label);
    }
    return CR_OK;
}

static void put_opt(cr_gguf_kv *kv, const char *key, const char *v)
{
    if (v && *v) cr_gguf_kv_str(kv, key, v);    /* add_string skips an empty value */
}

void cr_gguf_general_put(const cr_gguf_general *g, cr_gguf_kv *kv)
{
    put_opt(kv, "general.name", g->name);
    put_opt(kv, "general.version", g->version);
    put_opt(kv, "general.organization", g->organization);
    put_opt(kv, "general.finetune", g->finetune);
    put_opt(kv, "general.basename", g->basename);
    put_opt(kv, "general.size_label", g->size_label);
    put_opt(kv, "general.license", g->license);
    if (g->have_base_models) {
        cr_gguf_kv_u32(kv, "general.base_model.count", g->n_base_models);
        for (uint32_t i = 0; i < g->n_base_models; i++) {
            const cr_gguf_base_model *b = &g->base_models[i];
            char key[96];
            snprintf(key, sizeof key, "general.base_model.%u.name", i);
            put_opt(kv, key, b->name);
            snprintf(key, sizeof key, "general.base_model.%u.version", i);
            put_opt(kv, key, b->version);
            snprintf(key, sizeof key, "general.base_model.%u.organization", i);
            put_opt(kv, key, b->organization);
            snprintf(key, sizeof key, "general.base_model.%u.repo_url", i);
            put_opt(kv, key, b->repo_url);
        }
    }
    if (g->have_tags && g->n_tags) cr_gguf_kv_arr_str(kv, "general.tags", (const char *const *)g->tags, g->n_tags);
    if (g->have_languages && g->n_languages)
        cr_gguf_kv_arr_str(kv, "general.languages", (const char *const *)g->languages, g->n_languages);
}

void cr_gguf_general_free(cr_gguf_general *g)
{
    cr_arena *ar = g->owned;
    if (!ar) return;
    const cr_allocator *a = ar->alloc;
    for (uint32_t i = 0; i < g->n_base_models; i++) {
        cr_free(a, g->base_models[i].name);
        cr_free(a, g->base_models[i].organization);
    }
    cr_free(a, g->name);
    cr_free(a, g->organization);
    cr_arena_free(ar);
    cr_free(a, ar);
    memset(g, 0, sizeof *g);
}
