/* tokenizer.c — loading a tokenizer.json into the steps of its pipeline:
 * added-token extraction -> normalizer -> normalized added tokens ->
 * pre-tokenizer -> BPE -> (post-processor), and the decoder chain back.
 * Running them is tokenizer_encode.c.
 *
 * Everything a loaded tokenizer owns lives in one arena (freed in one call),
 * so a tokenizer is shared read-only between threads. Nested Sequence
 * components are flattened into step arrays at load time.
 */
#include "tokenizer_impl.h"
#include "infile.h"
#include "limits.h"
#include "pretok.h"
#include "unicode.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        cr_status st = cr_tok_normalize(t, &t->arena, a->content, a->len, &o, &ol, L->err);
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
