/* tokenizer.c — loading a tokenizer.json and running its pipeline:
 * added-token extraction -> normalizer -> normalized added tokens ->
 * pre-tokenizer -> BPE -> (post-processor), and the decoder chain back.
 *
 * Everything a loaded tokenizer owns lives in one arena (freed in one call);
 * each encode call uses its own scratch arena, so a tokenizer is shared
 * read-only between threads. Nested Sequence components are flattened into
 * step arrays at load time. The BPE merge loop is a transcription of the
 * tokenizers crate's `Word::merge_all` (a heap keyed by rank then position,
 * stale entries skipped), so ties and odd merge tables behave identically.
 */
#include "tokenizer.h"
#include "infile.h"
#include "limits.h"
#include "pretok.h"
#include "unicode.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- hash tables ------------------------------------------------------- */

/* string -> int32 (open addressing, power-of-two capacity). Keys are
 * borrowed from the tokenizer's arena. */
typedef struct str_slot { const char *key; uint32_t len; int32_t val; } str_slot;
typedef struct str_map { str_slot *slots; uint32_t cap, n; } str_map;

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h ^ (h >> 29);
}

static bool str_map_init(str_map *m, cr_arena *ar, size_t expect)
{
    uint32_t cap = 16;
    while (cap < expect * 2 + 16) cap <<= 1;
    m->slots = cr_arena_alloc(ar, (size_t)cap * sizeof *m->slots);
    m->cap = cap;
    m->n = 0;
    return m->slots != NULL;
}

static str_slot *str_map_slot(const str_map *m, const char *k, size_t n)
{
    uint32_t i = (uint32_t)hash_bytes(k, n) & (m->cap - 1);
    for (;;) {
        str_slot *s = &m->slots[i];
        if (!s->key || (s->len == n && !memcmp(s->key, k, n))) return s;
        i = (i + 1) & (m->cap - 1);
    }
}

static int32_t str_map_get(const str_map *m, const char *k, size_t n)
{
    if (!m->cap) return -1;
    str_slot *s = str_map_slot(m, k, n);
    return s->key ? s->val : -1;
}

/* Insert if absent (capacity was sized at init); returns false if present. */
static bool str_map_put(str_map *m, const char *k, size_t n, int32_t v)
{
    str_slot *s = str_map_slot(m, k, n);
    if (s->key) return false;
    s->key = k;
    s->len = (uint32_t)n;
    s->val = v;
    m->n++;
    return true;
}

/* (left id, right id) -> (rank, merged id). */
typedef struct merge_slot { uint64_t key; uint32_t rank; int32_t id; } merge_slot;
typedef struct merge_map { merge_slot *slots; uint32_t cap; } merge_map;

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static merge_slot *merge_slot_find(const merge_map *m, uint64_t key)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    uint32_t i = (uint32_t)(h >> 32) & (m->cap - 1);
    for (;;) {
        merge_slot *s = &m->slots[i];
        if (s->id < 0 || s->key == key) return s;
        i = (i + 1) & (m->cap - 1);
    }
}

static const merge_slot *merge_get(const merge_map *m, int32_t a, int32_t b)
{
    if (!m->cap) return NULL;
    merge_slot *s = merge_slot_find(m, pair_key(a, b));
    return s->id >= 0 ? s : NULL;
}

/* ---- the tokenizer ------------------------------------------------------ */

typedef struct added_token {
    const char *content; size_t len;
    const char *norm; size_t norm_len;   /* normalized content (normalized tokens) */
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
} added_token;

typedef enum norm_kind { NORM_PREPEND, NORM_REPLACE, NORM_NFC, NORM_NFD, NORM_STRIP } norm_kind;
typedef struct norm_step {
    norm_kind kind;
    const char *a; size_t alen;         /* Prepend text / Replace pattern */
    const char *b; size_t blen;         /* Replace content */
    bool left, right;                   /* Strip */
} norm_step;

typedef enum split_behavior { SB_ISOLATED, SB_REMOVED, SB_MERGED_PREV, SB_MERGED_NEXT, SB_CONTIGUOUS } split_behavior;
typedef enum pre_kind { PRE_METASPACE, PRE_BYTELEVEL, PRE_SPLIT_REGEX, PRE_SPLIT_STRING, PRE_DIGITS } pre_kind;
typedef enum prepend_scheme { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } prepend_scheme;
typedef struct pre_step {
    pre_kind kind;
    const char *rep; size_t rep_len;    /* Metaspace replacement (UTF-8) / Split string */
    prepend_scheme prepend;
    bool split;                         /* Metaspace */
    bool add_prefix_space, use_regex;   /* ByteLevel */
    cr_split_pattern pattern;           /* Split regex */
    split_behavior behavior;
    bool invert;
    bool individual_digits;
} pre_step;

typedef enum dec_kind { DEC_BYTELEVEL, DEC_METASPACE, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP } dec_kind;
typedef struct dec_step {
    dec_kind kind;
    const char *a; size_t alen, blen;   /* Metaspace replacement; Replace from/to; Strip char */
    const char *b;
    prepend_scheme prepend;
    int start, stop;                    /* Strip counts */
} dec_step;

typedef struct post_item { bool is_seq; const int32_t *ids; uint32_t n_ids; } post_item;

struct cr_tokenizer {
    const cr_allocator *alloc;
    cr_arena arena;
    char *name;
    /* BPE model */
    str_map vocab;
    merge_map merges;
    int32_t unk_id;                     /* -1: none */
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t byte_ids[256];              /* <0xHH> ids (byte_fallback); -1 absent */
    /* id -> content (added tokens override vocab, as in tokenizers) */
    const char **id_str;
    uint32_t *id_len;
    bool *id_special;
    uint32_t n_ids;
    added_token *added;
    uint32_t n_added;
    bool any_normalized_added;
    norm_step *norm; uint32_t n_norm;
    pre_step *pre; uint32_t n_pre;
    dec_step *dec; uint32_t n_dec;
    const char *dec_unsupported;        /* decoder type we cannot run, if any */
    post_item *post; uint32_t n_post;
    const char *post_unsupported;
};

/* ---- small JSON helpers ------------------------------------------------- */

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *key, bool dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

static bool jnull(const cJSON *v) { return !v || cJSON_IsNull(v); }

typedef struct loader {
    cr_tokenizer *tok;
    const char *name;
    cr_error *err;
} loader;

#define NOMEM(L) cr_fail((L)->err, CR_ERR_NOMEM, "%s: out of memory loading tokenizer", (L)->name)

static char *adup(loader *L, const char *s, size_t n) { return cr_arena_strndup(&L->tok->arena, s, n); }

/* Growable step arrays inside the arena: steps are few, so each push
 * reallocates into the arena (the old copy is simply abandoned). */
static void *push_step(loader *L, void **arr, uint32_t *n, size_t item)
{
    void *na = cr_arena_alloc(&L->tok->arena, (*n + 1) * item);
    if (!na) return NULL;
    if (*n) memcpy(na, *arr, *n * item);
    *arr = na;
    return (char *)na + (*n)++ * item;
}

/* ---- loading: model ----------------------------------------------------- */

static cr_status load_model(loader *L, const cJSON *model)
{
    cr_tokenizer *t = L->tok;
    const char *type = jstr(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (type && strcmp(type, "BPE"))
        return cr_fail(L->err, CR_ERR_UNSUPPORTED, "%s: tokenizer model type '%s' is not supported (only BPE)", L->name, type);
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        return cr_fail(L->err, CR_ERR_FORMAT, "%s: model has no vocab object or merges array%s", L->name,
                       type ? "" : " (is the model BPE?)");
    const cJSON *csp = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
    const cJSON *eow = cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix");
    if ((!jnull(csp) && !(cJSON_IsString(csp) && !*csp->valuestring)) ||
        (!jnull(eow) && !(cJSON_IsString(eow) && !*eow->valuestring)))
        return cr_fail(L->err, CR_ERR_UNSUPPORTED, "%s: BPE continuing_subword_prefix / end_of_word_suffix are not supported", L->name);
    t->byte_fallback = jbool(model, "byte_fallback", false);
    t->fuse_unk = jbool(model, "fuse_unk", false);
    t->ignore_merges = jbool(model, "ignore_merges", false);

    size_t n_vocab = (size_t)cJSON_GetArraySize(vocab);
    if (!str_map_init(&t->vocab, &t->arena, n_vocab)) return NOMEM(L);
    int64_t max_id = -1;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 0x7fffffff ||
            e->valuedouble != (double)(int32_t)e->valuedouble)
            return cr_fail(L->err, CR_ERR_FORMAT, "%s: vocab entry '%s' has no valid id", L->name, e->string);
        size_t n = strlen(e->string);
        char *k = adup(L, e->string, n);
        if (!k) return NOMEM(L);
        if (!str_map_put(&t->vocab, k, n, (int32_t)e->valuedouble))
            return cr_fail(L->err, CR_ERR_FORMAT, "%s: duplicate vocab entry '%s'", L->name, e->string);
        if (e->valuedouble > max_id) max_id = (int64_t)e->valuedouble;
    }
    t->n_ids = (uint32_t)(max_id + 1);

    size_t n_merges = (size_t)cJSON_GetArraySize(merges);
    uint32_t cap = 16;
    while (cap < n_merges * 2 + 16) cap <<= 1;
    t->merges.slots = cr_arena_alloc(&t->arena, (size_t)cap * sizeof *t->merges.slots);
    if (!t->merges.slots) return NOMEM(L);
    t->merges.cap = cap;
    for (uint32_t i = 0; i < cap; i++) t->merges.slots[i].id = -1;
    char buf[512];
    uint32_t rank = 0;
    for (const cJSON *m = merges->child; m; m = m->next) {
        const char *a, *b;
        size_t alen, blen;
        if (cJSON_IsString(m)) {
            /* legacy "a b": split at the (single) space; skip "#version" */
            const char *s = m->valuestring;
            if (rank == 0 && !strncmp(s, "#version", 8)) continue;
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return cr_fail(L->err, CR_ERR_FORMAT, "%s: merge %u '%s' is not two tokens separated by one space", L->name, rank, s);
            a = s; alen = (size_t)(sp - s); b = sp + 1; blen = strlen(b);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
                   cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            a = m->child->valuestring; alen = strlen(a);
            b = m->child->next->valuestring; blen = strlen(b);
        } else {
            return cr_fail(L->err, CR_ERR_FORMAT, "%s: merge %u is neither \"a b\" nor [a, b]", L->name, rank);
        }
        int32_t ia = str_map_get(&t->vocab, a, alen), ib = str_map_get(&t->vocab, b, blen);
        if (ia < 0 || ib < 0)
            return cr_fail(L->err, CR_ERR_FORMAT, "%s: merge %u names a token not in the vocab ('%.*s')", L->name, rank,
                           (int)(ia < 0 ? alen : blen), ia < 0 ? a : b);
        if (alen + blen >= sizeof buf)
            return cr_fail(L->err, CR_ERR_LIMIT, "%s: merge %u result longer than %zu bytes", L->name, rank, sizeof buf);
        memcpy(buf, a, alen);
        memcpy(buf + alen, b, blen);
        int32_t im = str_map_get(&t->vocab, buf, alen + blen);
        if (im < 0)
            return cr_fail(L->err, CR_ERR_FORMAT, "%s: merge %u result '%.*s' is not in the vocab", L->name, rank,
                           (int)(alen + blen), buf);
        /* tokenizers collects the merges into a HashMap: a duplicated pair
         * keeps the later rank */
        merge_slot *s = merge_slot_find(&t->merges, pair_key(ia, ib));
        s->key = pair_key(ia, ib);
        s->rank = rank;
        s->id = im;
        rank++;
    }

    t->unk_id = -1;
    const char *unk = jstr(model, "unk_token");
    if (unk) {
        t->unk_id = str_map_get(&t->vocab, unk, strlen(unk));
        if (t->unk_id < 0)
            return cr_fail(L->err, CR_ERR_FORMAT, "%s: unk_token '%s' is not in the vocab", L->name, unk);
    }
    for (int b = 0; b < 256; b++) {
        char k[8];
        snprintf(k, sizeof k, "<0x%02X>", b);
        t->byte_ids[b] = str_map_get(&t->vocab, k, 6);
    }
    return CR_OK;
}

/* ---- loading: components ------------------------------------------------ */

static cr_status load_normalizer(loader *L, const cJSON *n)
{
    if (jnull(n)) return CR_OK;
    cr_tokenizer *t = L->tok;
    const char *type = jstr(n, "type");
    if (!type) return cr_fail(L->err, CR_ERR_FORMAT, "%s: normalizer without a type", L->name);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        if (!cJSON_IsArray(list)) return cr_fail(L->err, CR_ERR_FORMAT, "%s: Sequence normalizer without a list", L->name);
        for (const cJSON *c = list->child; c; c = c->next) {
            cr_status st = load_normalizer(L, c);
            if (st) return st;
        }
        return CR_OK;
    }
    norm_step s = { 0 };
    if (!strcmp(type, "Prepend")) {
        const char *p = jstr(n, "prepend");
        if (!p) return cr_fail(L->err, CR_ERR_FORMAT, "%s: Prepend normalizer without 'prepend'", L->name);
        s.kind = NORM_PREPEND;
        s.alen = strlen(p);
        if (!(s.a = adup(L, p, s.alen))) return NOMEM(L);
    } else if (!strcmp(type, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const char *from = jstr(pat, "String"), *to = jstr(n, "content");
        if (!from || !to)
            return cr_fail(L->err, CR_ERR_UNSUPPORTED, "%s: Replace normalizer needs a String pattern and content (Regex patterns are not supported)", L->name);
        if (!*from) return cr_fail(L->err, CR_ERR_FORMAT, "%s: Replace normalizer with an empty pattern", L->name);
        s.kind = NORM_REPLACE;
        s.alen = strlen(from);
        s.blen = strlen(to);
        if (!(s.a = adup(L, from, s.alen)) || !(s.b = adup(L, to, s.blen))) return NOMEM(L);
    } else if (!strcmp(type, "NFC")) {
        s.kind = NORM_NFC;
    } else if (!strcmp(type, "NFD")) {
        s.kind = NORM_NFD;
    } else if (!strcmp(type, "Strip")) {
        s.kind = NORM_STRIP;
        s.left = jbool(n, "strip_left", true);
        s.right = jbool(n, "strip_right", true);
    } else {
        return cr_fail(L->err, CR_ERR_UNSUPPORTED, "%s: normalizer '%s' is not supported", L->name, type);
    }
    norm_step *d = push_step(L, (void **)&t->norm, &t->n_norm, sizeof s);
    if (!d) return NOMEM(L);
    *d = s;
    return CR_OK;
}

static cr_status parse_behavior(loader *L, const cJSON *n, split_behavior *out)
{
    const char *b = jstr(n, "behavior");
    if (!b || !strcmp(b, "Isolated")) *out = SB_ISOLATED;
    else if (!strcmp(b, "Removed")) *out = SB_REMOVED;
    else if (!strcmp(b, "MergedWithPrevious")) *out = SB_MERGED_PREV;
    else if (!strcmp(b, "MergedWithNext")) *out = SB_MERGED_NEXT;
    else if (!strcmp(b, "Contiguous")) *out = SB_CONTIGUOUS;
    else return cr_fail(L->err, CR_ERR_UNSUPPORTED, "%s: Split behavior '%s' is not supported", L->name, b);
    return CR_OK;
}

static cr_status parse_prepend(loader *L, const cJSON *n, prepend_scheme *out)
{
    const char *p = jstr(n, "prepend_scheme");
    if (!p) { *out = jbool(n, "add_prefix_space", true) ? PREPEND_ALWAYS : PREPEND_NEVER; return CR_OK; }
    if (!strcmp(p, "always")) *out = PREPEND_ALWAYS;
    else if (!strcmp(p, "first")) *out = PREPEND_FIRST;
    else if (!strcmp(p, "never")) *out = PREPEND_NEVER;
    else return cr_fail(L->err, CR_ERR_FORMAT, "%s: unknown Metaspace prepend_scheme '%s'", L->name, p);
    return CR_OK;
}

static cr_status load_pretok(loader *L, const cJSON *n)
{
    if (jnull(n)) return CR_OK;
    cr_tokenizer *t = L->tok;
    const char *type = jstr(n, "type");
    if (!type) return cr_fail(L->err, CR_ERR_FORMAT, "%s: pre_tokenizer without a type", L->name);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "pretokenizers");
        if (!cJSON_IsArray(list)) return cr_fail(L->err, CR_ERR_FORMAT, "%s: Sequence pre_tokenizer without a list", L->name);
        for (const cJSON *c = list->child; c; c = c->next) {
            cr_status st = load_pretok(L, c);
            if (st) return st;
        }
        return CR_OK;
    }
    pre_step s = { 0 };
    cr_status st;
    if (!strcmp(type, "Metaspace")) {
        const char *rep = jstr(n, "replacement");
        s.kind = PRE_METASPACE;
        if (!rep) rep = "\xE2\x96\x81";
        s.rep_len = strlen(rep);
        if (!(s.rep = adup(L, rep, s.rep_len))) return NOMEM(L);
        if ((st = parse_prepend(L, n, &s.prepend))) return st;
        s.split = jbool(n, "split", true);
    } else if (!strcmp(type, "ByteLevel")) {
        s.kind = PRE_BYTELEVEL;
        s.add_prefix_space = jbool(n, "add_prefix_space", true);
        s.use_regex = jbool(n, "use_regex", true);
        s.pattern = CR_SPLIT_GPT2;
    } else if (!strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const char *rx = jstr(pat, "Regex"), *lit = jstr(pat, "String");
        if ((st = parse_behavior(L, n, &s.behavior))) return st;
        s.invert = jbool(n, "invert", false);
        if (rx) {
            s.kind = PRE_SPLIT_REGEX;
            if (!cr_split_pattern_from_regex(rx, &s.pattern))
                return cr_fail(L->err, CR_ERR_UNSUPPORTED,
                               "%s: Split regex is not one crucible implements (GPT-2, Llama-3, Qwen2): %.200s", L->name, rx);
        } else if (lit && *lit) {
            s.kind = PRE_SPLIT_STRING;
            s.rep_len = strlen(lit);
            if (!(s.rep = adup(L, lit, s.rep_len))) return NOMEM(L);
        } else {
            return cr_fail(L->err, CR_ERR_FORMAT, "%s: Split pre_tokenizer without a Regex or String pattern", L->name);
        }
    } else if (!strcmp(type, "Digits")) {
        s.kind = PRE_DIGITS;
        s.individual_digits = jbool(n, "individual_digits", false);
    } else {
        return cr_fail(L->err, CR_ERR_UNSUPPORTED, "%s: pre_tokenizer '%s' is not supported", L->name, type);
    }
    pre_step *d = push_step(L, (void **)&t->pre, &t->n_pre, sizeof s);
    if (!d) return NOMEM(L);
    *d = s;
    return CR_OK;
}

/* Decoders only matter for decode; an unknown one is remembered and
 * reported by cr_tokenizer_decode rather than failing the load. */
static cr_status load_decoder(loader *L, const cJSON *n)
{
    if (jnull(n)) return CR_OK;
    cr_tokenizer *t = L->tok;
    const char *type = jstr(n, "type");
    if (!type) { t->dec_unsupported = "(untyped)"; return CR_OK; }
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "decoders");
        for (const cJSON *c = cJSON_IsArray(list) ? list->child : NULL; c; c = c->next) {
            cr_status st = load_decoder(L, c);
            if (st) return st;
        }
        return CR_OK;
    }
    dec_step s = { 0 };
    if (!strcmp(type, "ByteLevel")) {
        s.kind = DEC_BYTELEVEL;
    } else if (!strcmp(type, "Metaspace")) {
        const char *rep = jstr(n, "replacement");
        s.kind = DEC_METASPACE;
        if (!rep) rep = "\xE2\x96\x81";
        s.alen = strlen(rep);
        if (!(s.a = adup(L, rep, s.alen))) return NOMEM(L);
        cr_status st = parse_prepend(L, n, &s.prepend);
        if (st) return st;
    } else if (!strcmp(type, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const char *from = jstr(pat, "String"), *to = jstr(n, "content");
        if (!from || !to || !*from) { t->dec_unsupported = "Replace (Regex)"; return CR_OK; }
        s.kind = DEC_REPLACE;
        s.alen = strlen(from);
        s.blen = strlen(to);
        if (!(s.a = adup(L, from, s.alen)) || !(s.b = adup(L, to, s.blen))) return NOMEM(L);
    } else if (!strcmp(type, "ByteFallback")) {
        s.kind = DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        s.kind = DEC_FUSE;
    } else if (!strcmp(type, "Strip")) {
        const char *c = jstr(n, "content");
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(n, "start");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(n, "stop");
        s.kind = DEC_STRIP;
        if (!c) c = " ";
        s.alen = strlen(c);
        if (!(s.a = adup(L, c, s.alen))) return NOMEM(L);
        s.start = cJSON_IsNumber(a) ? a->valueint : 0;
        s.stop = cJSON_IsNumber(b) ? b->valueint : 0;
    } else {
        t->dec_unsupported = adup(L, type, strlen(type));
        return t->dec_unsupported ? CR_OK : NOMEM(L);
    }
    dec_step *d = push_step(L, (void **)&t->dec, &t->n_dec, sizeof s);
    if (!d) return NOMEM(L);
    *d = s;
    return CR_OK;
}

/* Post-processors only matter with add_special; like decoders, an unknown
 * one is reported when used. */
static cr_status load_post(loader *L, const cJSON *n)
{
    if (jnull(n)) return CR_OK;
    cr_tokenizer *t = L->tok;
    const char *type = jstr(n, "type");
    if (!type) { t->post_unsupported = "(untyped)"; return CR_OK; }
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "processors");
        for (const cJSON *c = cJSON_IsArray(list) ? list->child : NULL; c; c = c->next) {
            cr_status st = load_post(L, c);
            if (st) return st;
        }
        return CR_OK;
    }
    if (!strcmp(type, "ByteLevel")) return CR_OK;   /* offsets only; ids unchanged */
    if (strcmp(type, "TemplateProcessing")) {
        t->post_unsupported = adup(L, type, strlen(type));
        return t->post_unsupported ? CR_OK : NOMEM(L);
    }
    if (t->n_post) { t->post_unsupported = "two TemplateProcessing"; return CR_OK; }
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(n, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(n, "special_tokens");
    if (!cJSON_IsArray(single)) return cr_fail(L->err, CR_ERR_FORMAT, "%s: TemplateProcessing without 'single'", L->name);
    for (const cJSON *it = single->child; it; it = it->next) {
        post_item item = { 0 };
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(it, "Sequence");
        if (sq) {
            item.is_seq = true;
        } else if (sp) {
            const char *name = jstr(sp, "id");
            const cJSON *def = name ? cJSON_GetObjectItemCaseSensitive(specials, name) : NULL;
            const cJSON *ids = cJSON_GetObjectItemCaseSensitive(def, "ids");
            if (!cJSON_IsArray(ids))
                return cr_fail(L->err, CR_ERR_FORMAT, "%s: TemplateProcessing special token '%s' has no ids", L->name,
                               name ? name : "?");
            int32_t *v = cr_arena_alloc(&t->arena, sizeof *v * (size_t)(cJSON_GetArraySize(ids) + 1));
            if (!v) return NOMEM(L);
            for (const cJSON *i = ids->child; i; i = i->next) v[item.n_ids++] = (int32_t)i->valuedouble;
            item.ids = v;
        } else {
            return cr_fail(L->err, CR_ERR_FORMAT, "%s: TemplateProcessing item is neither SpecialToken nor Sequence", L->name);
        }
        post_item *d = push_step(L, (void **)&t->post, &t->n_post, sizeof item);
        if (!d) return NOMEM(L);
        *d = item;
    }
    return CR_OK;
}

static cr_status run_normalizer(const cr_tokenizer *t, cr_arena *ar, const char *s, size_t n,
                                char **out, size_t *out_len, cr_error *err);

static cr_status load_added(loader *L, const cJSON *list)
{
    cr_tokenizer *t = L->tok;
    if (jnull(list)) return CR_OK;
    if (!cJSON_IsArray(list)) return cr_fail(L->err, CR_ERR_FORMAT, "%s: added_tokens is not a list", L->name);
    int n = cJSON_GetArraySize(list);
    t->added = cr_arena_alloc(&t->arena, sizeof *t->added * (size_t)(n + 1));
    if (!t->added) return NOMEM(L);
    for (const cJSON *e = list->child; e; e = e->next) {
        const char *c = jstr(e, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!c || !*c || !cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 0x7fffffff)
            return cr_fail(L->err, CR_ERR_FORMAT, "%s: added token without content or id", L->name);
        added_token *a = &t->added[t->n_added++];
        a->len = strlen(c);
        if (!(a->content = adup(L, c, a->len))) return NOMEM(L);
        a->id = (int32_t)id->valuedouble;
        a->single_word = jbool(e, "single_word", false);
        a->lstrip = jbool(e, "lstrip", false);
        a->rstrip = jbool(e, "rstrip", false);
        a->normalized = jbool(e, "normalized", true);
        a->special = jbool(e, "special", false);
        if ((uint32_t)a->id >= t->n_ids) t->n_ids = (uint32_t)a->id + 1;
    }
    return CR_OK;
}

/* After the normalizer is known: normalized contents of normalized added
 * tokens, and the id -> content table. */
static cr_status finish_tables(loader *L)
{
    cr_tokenizer *t = L->tok;
    for (uint32_t i = 0; i < t->n_added; i++) {
        added_token *a = &t->added[i];
        if (!a->normalized) continue;
        char *o;
        size_t ol;
        cr_status st = run_normalizer(t, &t->arena, a->content, a->len, &o, &ol, L->err);
        if (st) return st;
        a->norm = o;
        a->norm_len = ol;
        if (ol) t->any_normalized_added = true;
    }
    t->id_str = cr_arena_alloc(&t->arena, sizeof *t->id_str * (size_t)(t->n_ids + 1));
    t->id_len = cr_arena_alloc(&t->arena, sizeof *t->id_len * (size_t)(t->n_ids + 1));
    t->id_special = cr_arena_alloc(&t->arena, sizeof *t->id_special * (size_t)(t->n_ids + 1));
    if (!t->id_str || !t->id_len || !t->id_special) return NOMEM(L);
    for (uint32_t i = 0; i < t->vocab.cap; i++) {
        const str_slot *s = &t->vocab.slots[i];
        if (!s->key) continue;
        if (t->id_str[s->val])
            return cr_fail(L->err, CR_ERR_FORMAT, "%s: vocab id %d is used twice ('%s')", L->name, s->val, s->key);
        t->id_str[s->val] = s->key;
        t->id_len[s->val] = s->len;
    }
    for (uint32_t i = 0; i < t->n_added; i++) {
        const added_token *a = &t->added[i];
        /* tokenizers (0.23) hands out the normalized form of a normalized
         * added token as its id's string (decode then sees "▁zork", not
         * "zork"); matched against the library by the llama2 fixture */
        bool use_norm = a->normalized && t->n_norm && a->norm_len;
        t->id_str[a->id] = use_norm ? a->norm : a->content;
        t->id_len[a->id] = (uint32_t)(use_norm ? a->norm_len : a->len);
        t->id_special[a->id] = a->special;
    }
    return CR_OK;
}

cr_status cr_tokenizer_load_json(const cr_allocator *alloc, const char *json, size_t len,
                                 const char *name, cr_tokenizer **out, cr_error *err)
{
    *out = NULL;
    cr_tokenizer *t = cr_calloc(alloc, 1, sizeof *t);
    if (!t) return cr_fail(err, CR_ERR_NOMEM, "%s: out of memory loading tokenizer", name);
    t->alloc = alloc;
    cr_arena_init(&t->arena, alloc);
    loader L = { t, name, err };
    cJSON *root = cJSON_ParseWithLength(json, len);
    cr_status st = CR_OK;
    if (!root || !cJSON_IsObject(root)) {
        st = cr_fail(err, CR_ERR_FORMAT, "%s: not a JSON object (parse error near byte %ld)", name,
                     root ? 0L : (long)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - json : -1));
        goto done;
    }
    if (!(t->name = cr_arena_strdup(&t->arena, name))) { st = NOMEM(&L); goto done; }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) { st = cr_fail(err, CR_ERR_FORMAT, "%s: no 'model' object", name); goto done; }
    if ((st = load_model(&L, model))) goto done;
    if ((st = load_added(&L, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")))) goto done;
    if ((st = load_normalizer(&L, cJSON_GetObjectItemCaseSensitive(root, "normalizer")))) goto done;
    if ((st = load_pretok(&L, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer")))) goto done;
    if ((st = load_decoder(&L, cJSON_GetObjectItemCaseSensitive(root, "decoder")))) goto done;
    if ((st = load_post(&L, cJSON_GetObjectItemCaseSensitive(root, "post_processor")))) goto done;
    st = finish_tables(&L);
done:
    cJSON_Delete(root);
    if (st) { cr_tokenizer_free(t); return st; }
    *out = t;
    return CR_OK;
}

cr_status cr_tokenizer_load(const cr_allocator *alloc, const char *path,
                            cr_tokenizer **out, cr_error *err)
{
    *out = NULL;
    /* not cr_json_read_object: tokenizer.json may hold "\u0000" tokens,
     * which its strict check refuses (they are not tensor names;
     * spec/reliability.md). The JSON limit: these files run to tens of MiB. */
    char *buf;
    size_t len;
    cr_status st = cr_file_read(alloc, path, CR_LIMIT_JSON_BYTES, "tokenizer", &buf, &len, err);
    if (st) return st;
    st = cr_tokenizer_load_json(alloc, buf, len, path, out, err);
    cr_free(alloc, buf);
    return st;
}

void cr_tokenizer_free(cr_tokenizer *tok)
{
    if (!tok) return;
    const cr_allocator *a = tok->alloc;
    cr_arena_free(&tok->arena);
    cr_free(a, tok);
}

int32_t cr_tokenizer_token_id(const cr_tokenizer *tok, const char *content)
{
    size_t n = strlen(content);
    for (uint32_t i = 0; i < tok->n_added; i++)
        if (tok->added[i].len == n && !memcmp(tok->added[i].content, content, n)) return tok->added[i].id;
    return str_map_get(&tok->vocab, content, n);
}

const char *cr_tokenizer_id_to_token(const cr_tokenizer *tok, int32_t id)
{
    return id >= 0 && (uint32_t)id < tok->n_ids ? tok->id_str[id] : NULL;
}

uint32_t cr_tokenizer_n_ids(const cr_tokenizer *tok) { return tok->n_ids; }

/* ---- encode: pieces ------------------------------------------------------ */

/* A span of text on its way through the pipeline, or a finished added
 * token (id >= 0). at_start: the span begins at offset 0 of the original
 * input (Metaspace prepend_scheme "first"). */
typedef struct piece { const char *s; size_t n; int32_t id; bool at_start; } piece;

typedef struct enc {
    const cr_tokenizer *t;
    cr_arena *ar;
    cr_error *err;
} enc;

#define TOK_NOMEM(E) cr_fail((E)->err, CR_ERR_NOMEM, "out of memory while tokenizing")

static bool push_piece(cr_vec *v, const char *s, size_t n, int32_t id, bool at_start)
{
    if (n == 0 && id < 0) return true;
    piece p = { s, n, id, at_start };
    return cr_vec_push(v, &p) != NULL;
}

static bool is_word_char(uint32_t cp) { return cr_uni_is_letter(cp) || cr_uni_is_number(cp) || cp == '_'; }

/* Code point just before byte offset i of s (i > 0). */
static uint32_t cp_before(const char *s, size_t i)
{
    size_t j = i - 1;
    while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
    uint32_t cp = 0;
    if (!cr_utf8_decode(s + j, i - j, &cp)) cp = (unsigned char)s[i - 1];
    return cp;
}

/* Split one text piece on the added tokens of one kind (normalized or
 * not), leftmost-longest, applying single_word / lstrip / rstrip as
 * tokenizers' AddedVocabulary::find_matches does. */
static cr_status split_added(enc *E, const piece *in, bool normalized, cr_vec *out)
{
    const cr_tokenizer *t = E->t;
    const char *s = in->s;
    size_t n = in->n, pos = 0, last = 0;
    while (pos < n) {
        /* leftmost-longest match at or after pos */
        size_t best_at = n, best_len = 0;
        const added_token *best = NULL;
        for (size_t i = pos; i < n && !best; i++) {
            for (uint32_t k = 0; k < t->n_added; k++) {
                const added_token *a = &t->added[k];
                if (a->normalized != normalized) continue;
                const char *c = normalized ? a->norm : a->content;
                size_t cl = normalized ? a->norm_len : a->len;
                if (cl == 0 || cl > n - i || c[0] != s[i] || memcmp(c, s + i, cl)) continue;
                if (cl > best_len) { best = a; best_len = cl; best_at = i; }
            }
        }
        if (!best) break;
        size_t start = best_at, stop = best_at + best_len;
        pos = stop;
        if (best->single_word) {
            uint32_t cp;
            bool start_ok = start == 0 || !is_word_char(cp_before(s, start));
            bool stop_ok = stop == n || !cr_utf8_decode(s + stop, n - stop, &cp) || !is_word_char(cp);
            if (!start_ok || !stop_ok) continue;
        }
        if (best->lstrip) {
            size_t ns = start;
            while (ns > 0 && cr_uni_is_space(cp_before(s, ns))) {
                size_t j = ns - 1;
                while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
                ns = j;
            }
            start = ns > last ? ns : last;
        }
        if (best->rstrip) {
            uint32_t cp;
            size_t l;
            while (stop < n && (l = cr_utf8_decode(s + stop, n - stop, &cp)) && cr_uni_is_space(cp)) stop += l;
            pos = stop;
        }
        if (start > last && !push_piece(out, s + last, start - last, -1, in->at_start && last == 0)) return TOK_NOMEM(E);
        if (!push_piece(out, s + start, stop - start, best->id, false)) return TOK_NOMEM(E);
        last = stop;
    }
    if (last < n && !push_piece(out, s + last, n - last, -1, in->at_start && last == 0)) return TOK_NOMEM(E);
    return CR_OK;
}

/* ---- encode: normalizer -------------------------------------------------- */

static char *replace_all(cr_arena *ar, const char *s, size_t n, const char *a, size_t al,
                         const char *b, size_t bl, size_t *out_len)
{
    size_t count = 0;
    for (size_t i = 0; i + al <= n;) {
        if (!memcmp(s + i, a, al)) { count++; i += al; } else i++;
    }
    size_t len = n + count * bl - count * al;
    char *o = cr_arena_alloc(ar, len + 1);
    if (!o) return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        if (i + al <= n && !memcmp(s + i, a, al)) { memcpy(o + w, b, bl); w += bl; i += al; }
        else o[w++] = s[i++];
    }
    *out_len = w;
    return o;
}

static cr_status run_normalizer(const cr_tokenizer *t, cr_arena *ar, const char *s, size_t n,
                                char **out, size_t *out_len, cr_error *err)
{
    const char *cur = s;
    size_t len = n;
    for (uint32_t i = 0; i < t->n_norm; i++) {
        const norm_step *st = &t->norm[i];
        char *o = NULL;
        size_t ol = 0;
        switch (st->kind) {
        case NORM_PREPEND:
            if (!len) continue;   /* Prepend leaves an empty string alone */
            if (!(o = cr_arena_alloc(ar, st->alen + len + 1))) goto nomem;
            memcpy(o, st->a, st->alen);
            memcpy(o + st->alen, cur, len);
            ol = st->alen + len;
            break;
        case NORM_REPLACE:
            if (!(o = replace_all(ar, cur, len, st->a, st->alen, st->b, st->blen, &ol))) goto nomem;
            break;
        case NORM_NFC:
        case NORM_NFD: {
            char *tmp;
            cr_status rc = cr_uni_normalize(t->alloc, cur, len, st->kind == NORM_NFC, &tmp, &ol, err);
            if (rc) return rc;
            o = cr_arena_strndup(ar, tmp, ol);
            cr_free(t->alloc, tmp);
            if (!o) goto nomem;
            break;
        }
        case NORM_STRIP: {
            size_t a = 0, b = len;
            uint32_t cp;
            size_t l;
            while (st->left && a < b && (l = cr_utf8_decode(cur + a, b - a, &cp)) && cr_uni_is_space(cp)) a += l;
            while (st->right && b > a && cr_uni_is_space(cp_before(cur, b))) {
                b--;
                while (b > a && ((unsigned char)cur[b] & 0xC0) == 0x80) b--;
            }
            o = (char *)cur + a;   /* a view: no copy needed */
            ol = b - a;
            break;
        }
        }
        cur = o;
        len = ol;
    }
    *out = (char *)cur;
    *out_len = len;
    return CR_OK;
nomem:
    return cr_fail(err, CR_ERR_NOMEM, "out of memory while normalizing");
}

/* ---- encode: pre-tokenizer ----------------------------------------------- */

typedef struct seg { size_t a, b; bool match; } seg;

/* Turn the segments of one piece into pieces per the split behaviour
 * (tokenizers' NormalizedString::split). */
static cr_status apply_behavior(enc *E, const piece *in, seg *sg, size_t n_sg, split_behavior bh,
                                bool invert, cr_vec *out)
{
    if (invert) for (size_t i = 0; i < n_sg; i++) sg[i].match = !sg[i].match;
    size_t w = 0;
    bool prev = false;
    switch (bh) {
    case SB_ISOLATED: w = n_sg; break;
    case SB_REMOVED:
        for (size_t i = 0; i < n_sg; i++) if (!sg[i].match) sg[w++] = sg[i];
        break;
    case SB_MERGED_PREV:
        for (size_t i = 0; i < n_sg; i++) {
            if (sg[i].match && !prev && w) sg[w - 1].b = sg[i].b;
            else sg[w++] = sg[i];
            prev = sg[i].match;
        }
        break;
    case SB_MERGED_NEXT: {
        /* walk backwards, merging a match into the segment after it */
        size_t r = n_sg;
        for (size_t k = n_sg; k-- > 0;) {
            bool m = sg[k].match;
            if (m && !prev && r < n_sg) sg[r].a = sg[k].a;
            else sg[--r] = sg[k];
            prev = m;
        }
        memmove(sg, sg + r, (n_sg - r) * sizeof *sg);
        w = n_sg - r;
        break;
    }
    case SB_CONTIGUOUS:
        for (size_t i = 0; i < n_sg; i++) {
            if (w && sg[i].match == prev) sg[w - 1].b = sg[i].b;
            else sg[w++] = sg[i];
            prev = sg[i].match;
        }
        break;
    }
    for (size_t i = 0; i < w; i++)
        if (!push_piece(out, in->s + sg[i].a, sg[i].b - sg[i].a, -1, in->at_start && sg[i].a == 0))
            return TOK_NOMEM(E);
    return CR_OK;
}

static cr_status pre_step_run(enc *E, const pre_step *st, const piece *in, cr_vec *out, cr_vec *segs)
{
    const char *s = in->s;
    size_t n = in->n;
    segs->len = 0;
    switch (st->kind) {
    case PRE_METASPACE: {
        size_t ol;
        char *o = replace_all(E->ar, s, n, " ", 1, st->rep, st->rep_len, &ol);
        if (!o) return TOK_NOMEM(E);
        bool starts = ol >= st->rep_len && !memcmp(o, st->rep, st->rep_len);
        if (!starts && (st->prepend == PREPEND_ALWAYS || (st->prepend == PREPEND_FIRST && in->at_start))) {
            char *p = cr_arena_alloc(E->ar, ol + st->rep_len + 1);
            if (!p) return TOK_NOMEM(E);
            memcpy(p, st->rep, st->rep_len);
            memcpy(p + st->rep_len, o, ol);
            o = p;
            ol += st->rep_len;
        }
        piece np = { o, ol, -1, in->at_start };
        if (!st->split) return push_piece(out, o, ol, -1, in->at_start) ? CR_OK : TOK_NOMEM(E);
        size_t last = 0;
        for (size_t i = 0; i + st->rep_len <= ol;) {
            if (memcmp(o + i, st->rep, st->rep_len)) { i++; continue; }
            seg g1 = { last, i, false }, g2 = { i, i + st->rep_len, true };
            if (i > last && !cr_vec_push(segs, &g1)) return TOK_NOMEM(E);
            if (!cr_vec_push(segs, &g2)) return TOK_NOMEM(E);
            i += st->rep_len;
            last = i;
        }
        seg g = { last, ol, false };
        if (last < ol && !cr_vec_push(segs, &g)) return TOK_NOMEM(E);
        return apply_behavior(E, &np, segs->data, segs->len, SB_MERGED_NEXT, false, out);
    }
    case PRE_BYTELEVEL: {
        const char *src = s;
        size_t sl = n;
        if (st->add_prefix_space && (n == 0 || s[0] != ' ')) {
            char *p = cr_arena_alloc(E->ar, n + 2);
            if (!p) return TOK_NOMEM(E);
            p[0] = ' ';
            memcpy(p + 1, s, n);
            src = p;
            sl = n + 1;
        }
        /* split first (on the original bytes), then map every byte */
        cr_vec tmp;
        cr_vec_init(&tmp, E->t->alloc, sizeof(piece));
        if (st->use_regex) {
            for (size_t i = 0; i < sl;) {
                size_t m = cr_split_match(CR_SPLIT_GPT2, src + i, sl - i);
                if (!push_piece(&tmp, src + i, m, -1, false)) { cr_vec_free(&tmp); return TOK_NOMEM(E); }
                i += m;
            }
        } else if (!push_piece(&tmp, src, sl, -1, false)) {
            cr_vec_free(&tmp);
            return TOK_NOMEM(E);
        }
        for (size_t k = 0; k < tmp.len; k++) {
            const piece *p = &CR_VEC_AT(&tmp, piece, k);
            char *o = cr_arena_alloc(E->ar, p->n * 2 + 1);
            if (!o) { cr_vec_free(&tmp); return TOK_NOMEM(E); }
            size_t w = 0;
            for (size_t i = 0; i < p->n; i++) w += cr_utf8_encode(cr_byte_to_unicode((uint8_t)p->s[i]), o + w);
            if (!push_piece(out, o, w, -1, false)) { cr_vec_free(&tmp); return TOK_NOMEM(E); }
        }
        cr_vec_free(&tmp);
        return CR_OK;
    }
    case PRE_SPLIT_REGEX:
        for (size_t i = 0; i < n;) {
            size_t m = cr_split_match(st->pattern, s + i, n - i);
            seg g = { i, i + m, true };
            if (!cr_vec_push(segs, &g)) return TOK_NOMEM(E);
            i += m;
        }
        return apply_behavior(E, in, segs->data, segs->len, st->behavior, st->invert, out);
    case PRE_SPLIT_STRING: {
        size_t last = 0;
        for (size_t i = 0; i + st->rep_len <= n;) {
            if (memcmp(s + i, st->rep, st->rep_len)) { i++; continue; }
            seg g1 = { last, i, false }, g2 = { i, i + st->rep_len, true };
            if (i > last && !cr_vec_push(segs, &g1)) return TOK_NOMEM(E);
            if (!cr_vec_push(segs, &g2)) return TOK_NOMEM(E);
            i += st->rep_len;
            last = i;
        }
        seg g = { last, n, false };
        if (last < n && !cr_vec_push(segs, &g)) return TOK_NOMEM(E);
        return apply_behavior(E, in, segs->data, segs->len, st->behavior, st->invert, out);
    }
    case PRE_DIGITS: {
        size_t last = 0;
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t l = cr_utf8_decode(s + i, n - i, &cp);
            if (!l) l = 1, cp = 0;
            if (cr_uni_is_number(cp)) {
                seg g1 = { last, i, false }, g2 = { i, i + l, true };
                if (i > last && !cr_vec_push(segs, &g1)) return TOK_NOMEM(E);
                if (!cr_vec_push(segs, &g2)) return TOK_NOMEM(E);
                last = i + l;
            }
            i += l;
        }
        seg g = { last, n, false };
        if (last < n && !cr_vec_push(segs, &g)) return TOK_NOMEM(E);
        return apply_behavior(E, in, segs->data, segs->len,
                              st->individual_digits ? SB_ISOLATED : SB_CONTIGUOUS, false, out);
    }
    }
    return CR_OK;
}

/* ---- encode: BPE ---------------------------------------------------------- */

typedef struct sym { int32_t id; int32_t prev, next; bool dead; } sym;
typedef struct hmerge { uint32_t rank; uint32_t pos; int32_t new_id; } hmerge;

static bool hm_less(const hmerge *a, const hmerge *b)
{ return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos); }

static bool heap_push(cr_vec *h, hmerge m)
{
    if (!cr_vec_push(h, &m)) return false;
    hmerge *d = h->data;
    size_t i = h->len - 1;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hm_less(&d[i], &d[p])) break;
        hmerge x = d[i]; d[i] = d[p]; d[p] = x;
        i = p;
    }
    return true;
}

static hmerge heap_pop(cr_vec *h)
{
    hmerge *d = h->data;
    hmerge top = d[0];
    d[0] = d[--h->len];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->len && hm_less(&d[l], &d[m])) m = l;
        if (r < h->len && hm_less(&d[r], &d[m])) m = r;
        if (m == i) break;
        hmerge x = d[i]; d[i] = d[m]; d[m] = x;
        i = m;
    }
    return top;
}

static bool add_sym(cr_vec *syms, int32_t id)
{
    sym s = { id, (int32_t)syms->len - 1, (int32_t)syms->len + 1, false };
    return cr_vec_push(syms, &s) != NULL;
}

static cr_status bpe_word(enc *E, const char *w, size_t n, cr_vec *ids)
{
    const cr_tokenizer *t = E->t;
    if (t->ignore_merges) {
        int32_t id = str_map_get(&t->vocab, w, n);
        if (id >= 0) return cr_vec_push(ids, &id) ? CR_OK : TOK_NOMEM(E);
    }
    cr_vec syms, heap;
    cr_vec_init(&syms, t->alloc, sizeof(sym));
    cr_vec_init(&heap, t->alloc, sizeof(hmerge));
    cr_status st = CR_OK;
    bool pending_unk = false;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = cr_utf8_decode(w + i, n - i, &cp);
        if (!l) l = 1;
        int32_t id = str_map_get(&t->vocab, w + i, l);
        if (id >= 0) {
            if (pending_unk && !add_sym(&syms, t->unk_id)) goto nomem;
            pending_unk = false;
            if (!add_sym(&syms, id)) goto nomem;
            i += l;
            continue;
        }
        if (t->byte_fallback) {
            bool all = true;
            for (size_t k = 0; k < l; k++) all = all && t->byte_ids[(unsigned char)w[i + k]] >= 0;
            if (all) {
                /* tokenizers adds the byte tokens without flushing a
                 * pending unk first; keep that order */
                for (size_t k = 0; k < l; k++)
                    if (!add_sym(&syms, t->byte_ids[(unsigned char)w[i + k]])) goto nomem;
                i += l;
                continue;
            }
        }
        if (t->unk_id < 0) {
            st = cr_fail(E->err, CR_ERR_RUNTIME, "%s: character U+%04X has no token and the tokenizer has no unk token",
                         t->name, cp);
            goto out;
        }
        if (pending_unk && !t->fuse_unk && !add_sym(&syms, t->unk_id)) goto nomem;
        pending_unk = true;
        i += l;
    }
    if (pending_unk && !add_sym(&syms, t->unk_id)) goto nomem;
    if (syms.len) CR_VEC_AT(&syms, sym, syms.len - 1).next = -1;

    sym *sy = syms.data;
    for (size_t i = 0; i + 1 < syms.len; i++) {
        const merge_slot *m = merge_get(&t->merges, sy[i].id, sy[i + 1].id);
        if (m && !heap_push(&heap, (hmerge){ m->rank, (uint32_t)i, m->id })) goto nomem;
    }
    while (heap.len) {
        hmerge top = heap_pop(&heap);
        sym *cur = &sy[top.pos];
        if (cur->dead || cur->next < 0) continue;
        sym *right = &sy[cur->next];
        const merge_slot *m = merge_get(&t->merges, cur->id, right->id);
        if (!m || m->id != top.new_id) continue;
        cur->id = top.new_id;
        right->dead = true;
        cur->next = right->next;
        if (right->next >= 0) sy[right->next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) {
            const merge_slot *pm = merge_get(&t->merges, sy[cur->prev].id, cur->id);
            if (pm && !heap_push(&heap, (hmerge){ pm->rank, (uint32_t)cur->prev, pm->id })) goto nomem;
        }
        if (cur->next >= 0) {
            const merge_slot *nm = merge_get(&t->merges, cur->id, sy[cur->next].id);
            if (nm && !heap_push(&heap, (hmerge){ nm->rank, top.pos, nm->id })) goto nomem;
        }
    }
    for (size_t i = 0; i < syms.len; i++)
        if (!sy[i].dead && !cr_vec_push(ids, &sy[i].id)) goto nomem;
    goto out;
nomem:
    st = TOK_NOMEM(E);
out:
    cr_vec_free(&syms);
    cr_vec_free(&heap);
    return st;
}

/* ---- encode: the pipeline ------------------------------------------------- */

cr_status cr_tokenizer_encode(const cr_tokenizer *tok, const char *text, size_t len,
                              bool add_special, cr_vec *ids, cr_error *err)
{
    size_t bad;
    if (!cr_utf8_check(text, len, &bad))
        return cr_fail(err, CR_ERR_FORMAT, "text is not valid UTF-8 (byte %zu)", bad);
    if (add_special && tok->post_unsupported)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: post_processor '%s' is not supported (encode without special tokens)",
                       tok->name, tok->post_unsupported);
    cr_arena ar;
    cr_arena_init(&ar, tok->alloc);
    enc E = { tok, &ar, err };
    cr_vec a, b, segs, body;
    cr_vec_init(&a, tok->alloc, sizeof(piece));
    cr_vec_init(&b, tok->alloc, sizeof(piece));
    cr_vec_init(&segs, tok->alloc, sizeof(seg));
    cr_vec_init(&body, tok->alloc, sizeof(int32_t));
    cr_status st;
    piece whole = { text, len, -1, true };
    if ((st = split_added(&E, &whole, false, &a))) goto out;

    /* normalize each free piece, then match normalized added tokens in it */
    for (size_t i = 0; i < a.len; i++) {
        piece p = CR_VEC_AT(&a, piece, i);
        if (p.id >= 0) { if (!cr_vec_push(&b, &p)) { st = TOK_NOMEM(&E); goto out; } continue; }
        char *o;
        size_t ol;
        if ((st = run_normalizer(tok, &ar, p.s, p.n, &o, &ol, err))) goto out;
        piece np = { o, ol, -1, p.at_start };
        if (tok->any_normalized_added) { if ((st = split_added(&E, &np, true, &b))) goto out; }
        else if (!push_piece(&b, o, ol, -1, p.at_start)) { st = TOK_NOMEM(&E); goto out; }
    }

    /* pre-tokenize: each step maps the current list of pieces to a new one */
    for (uint32_t k = 0; k < tok->n_pre; k++) {
        a.len = 0;
        for (size_t i = 0; i < b.len; i++) {
            piece p = CR_VEC_AT(&b, piece, i);
            if (p.id >= 0) { if (!cr_vec_push(&a, &p)) { st = TOK_NOMEM(&E); goto out; } continue; }
            if ((st = pre_step_run(&E, &tok->pre[k], &p, &a, &segs))) goto out;
        }
        cr_vec t = a; a = b; b = t;
    }

    for (size_t i = 0; i < b.len; i++) {
        const piece *p = &CR_VEC_AT(&b, piece, i);
        if (p->id >= 0) { if (!cr_vec_push(&body, &p->id)) { st = TOK_NOMEM(&E); goto out; } continue; }
        if ((st = bpe_word(&E, p->s, p->n, &body))) goto out;
    }

    if (add_special && tok->n_post) {
        for (uint32_t k = 0; k < tok->n_post; k++) {
            const post_item *it = &tok->post[k];
            if (it->is_seq) {
                for (size_t i = 0; i < body.len; i++)
                    if (!cr_vec_push(ids, &CR_VEC_AT(&body, int32_t, i))) { st = TOK_NOMEM(&E); goto out; }
            } else {
                for (uint32_t i = 0; i < it->n_ids; i++)
                    if (!cr_vec_push(ids, &it->ids[i])) { st = TOK_NOMEM(&E); goto out; }
            }
        }
    } else {
        for (size_t i = 0; i < body.len; i++)
            if (!cr_vec_push(ids, &CR_VEC_AT(&body, int32_t, i))) { st = TOK_NOMEM(&E); goto out; }
    }
out:
    cr_vec_free(&a);
    cr_vec_free(&b);
    cr_vec_free(&segs);
    cr_vec_free(&body);
    cr_arena_free(&ar);
    return st;
}

/* ---- decode ------------------------------------------------------------- */

typedef struct dtok { const char *s; size_t n; } dtok;

static bool parse_byte_token(const char *s, size_t n, uint8_t *b)
{
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return false;
    unsigned v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return false;
    }
    *b = (uint8_t)v;
    return true;
}

static cr_status dec_step_run(const dec_step *st, cr_arena *ar, cr_vec *toks, cr_error *err)
{
    dtok *tk = toks->data;
    size_t n = toks->len;
    switch (st->kind) {
    case DEC_BYTELEVEL:
    case DEC_FUSE: {
        size_t total = 0;
        for (size_t i = 0; i < n; i++) total += tk[i].n;
        char *o = cr_arena_alloc(ar, total + 1);
        if (!o) goto nomem;
        size_t w = 0;
        for (size_t i = 0; i < n; i++) {
            if (st->kind == DEC_FUSE) { memcpy(o + w, tk[i].s, tk[i].n); w += tk[i].n; continue; }
            /* map chars back to bytes; a token with an unmapped char keeps its bytes */
            size_t w0 = w;
            bool ok = true;
            for (size_t j = 0; j < tk[i].n;) {
                uint32_t cp;
                size_t l = cr_utf8_decode(tk[i].s + j, tk[i].n - j, &cp);
                int byte = l ? cr_unicode_to_byte(cp) : -1;
                if (byte < 0) { ok = false; break; }
                o[w++] = (char)byte;
                j += l;
            }
            if (!ok) { w = w0; memcpy(o + w, tk[i].s, tk[i].n); w += tk[i].n; }
        }
        tk[0] = (dtok){ o, w };
        toks->len = n ? 1 : 0;
        return CR_OK;
    }
    case DEC_METASPACE:
        for (size_t i = 0; i < n; i++) {
            size_t ol;
            char *o = replace_all(ar, tk[i].s, tk[i].n, st->a, st->alen, " ", 1, &ol);
            if (!o) goto nomem;
            if (i == 0 && st->prepend != PREPEND_NEVER && ol && o[0] == ' ') { o++; ol--; }
            tk[i] = (dtok){ o, ol };
        }
        return CR_OK;
    case DEC_REPLACE:
        for (size_t i = 0; i < n; i++) {
            size_t ol;
            char *o = replace_all(ar, tk[i].s, tk[i].n, st->a, st->alen, st->b, st->blen, &ol);
            if (!o) goto nomem;
            tk[i] = (dtok){ o, ol };
        }
        return CR_OK;
    case DEC_BYTEFALLBACK: {
        size_t w = 0;
        for (size_t i = 0; i < n;) {
            uint8_t byte;
            if (!parse_byte_token(tk[i].s, tk[i].n, &byte)) { tk[w++] = tk[i++]; continue; }
            size_t j = i;
            char *o = cr_arena_alloc(ar, (n - i) * 3 + 1);
            if (!o) goto nomem;
            size_t ol = 0;
            while (j < n && parse_byte_token(tk[j].s, tk[j].n, &byte)) o[ol++] = (char)byte, j++;
            if (cr_utf8_check(o, ol, NULL)) {
                tk[w++] = (dtok){ o, ol };
            } else {
                /* invalid bytes: one U+FFFD per byte token, as tokenizers does */
                for (size_t k = i; k < j; k++) tk[w++] = (dtok){ "\xEF\xBF\xBD", 3 };
            }
            i = j;
        }
        toks->len = w;
        return CR_OK;
    }
    case DEC_STRIP:
        for (size_t i = 0; i < n; i++) {
            const char *s = tk[i].s;
            size_t l = tk[i].n;
            for (int k = 0; k < st->start && l >= st->alen && !memcmp(s, st->a, st->alen); k++) { s += st->alen; l -= st->alen; }
            for (int k = 0; k < st->stop && l >= st->alen && !memcmp(s + l - st->alen, st->a, st->alen); k++) l -= st->alen;
            tk[i] = (dtok){ s, l };
        }
        return CR_OK;
    }
    return CR_OK;
nomem:
    return cr_fail(err, CR_ERR_NOMEM, "out of memory while decoding");
}

cr_status cr_tokenizer_decode(const cr_tokenizer *tok, const int32_t *ids, size_t n,
                              bool skip_special, char **out, size_t *out_len, cr_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (tok->dec_unsupported)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: decoder '%s' is not supported", tok->name, tok->dec_unsupported);
    cr_arena ar;
    cr_arena_init(&ar, tok->alloc);
    cr_vec toks;
    cr_vec_init(&toks, tok->alloc, sizeof(dtok));
    cr_status st = CR_OK;
    for (size_t i = 0; i < n; i++) {
        const char *s = cr_tokenizer_id_to_token(tok, ids[i]);
        if (!s) { st = cr_fail(err, CR_ERR_ARG, "%s: token id %d does not exist", tok->name, ids[i]); goto done; }
        if (skip_special && tok->id_special[ids[i]]) continue;
        dtok d = { s, tok->id_len[ids[i]] };
        if (!cr_vec_push(&toks, &d)) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory while decoding"); goto done; }
    }
    for (uint32_t k = 0; k < tok->n_dec && toks.len; k++)
        if ((st = dec_step_run(&tok->dec[k], &ar, &toks, err))) goto done;
    size_t total = 0;
    for (size_t i = 0; i < toks.len; i++) total += CR_VEC_AT(&toks, dtok, i).n;
    char *o = cr_malloc(tok->alloc, total + 1);
    if (!o) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory while decoding"); goto done; }
    size_t w = 0;
    for (size_t i = 0; i < toks.len; i++) {
        const dtok *d = &CR_VEC_AT(&toks, dtok, i);
        memcpy(o + w, d->s, d->n);
        w += d->n;
    }
    o[w] = 0;
    *out = o;
    *out_len = w;
done:
    cr_vec_free(&toks);
    cr_arena_free(&ar);
    return st;
}
