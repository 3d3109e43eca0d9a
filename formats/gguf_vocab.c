/* gguf_vocab.c — the tokenizer metadata of a GGUF file as llama.cpp's
 * converter writes it (spec/gguf.md §4): the path it takes (SentencePiece
 * when the directory has tokenizer.model, else for llama LlamaHf when
 * tokenizer.json is byte-fallback BPE, else the gpt2 byte-level BPE of
 * tokenizer.json), that path's token list, scores and types, then
 * gguf.SpecialVocab's merges, special token ids, add_*_token flags, chat
 * template and normalizer flags. What the port does not cover is refused
 * by name.
 */
#include "gguf_vocab.h"
#include "spm_model.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct vocab_ctx {
    const cr_allocator *a;
    const cr_gguf_src *m;
    cr_gguf_kv *kv;
    cr_error *err;
} vocab_ctx;

static bool is_file(const cr_gguf_src *src, const char *name)
{
    return src->exists(src->ud, name);
}

static const cJSON *cfg(const vocab_ctx *c, const char *key)
{
    return c->m->config ? cJSON_GetObjectItemCaseSensitive(c->m->config, key) : NULL;
}

cr_status cr_gguf_src_json(const cr_allocator *a, const cr_gguf_src *src, const char *name, cJSON **out, cr_error *err)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    cr_status st = src->read(src->ud, name, &text, &len, err);
    if (st || !text) return st;
    *out = cJSON_ParseWithLength(text, len);
    cr_free(a, text);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return cr_fail(err, CR_ERR_FORMAT, "%s/%s: not a JSON object", src->dir, name);
    }
    return CR_OK;
}

bool cr_gguf_json_int(const cJSON *j, long long *v)
{
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d <= 9007199254740992.0 && d >= -9007199254740992.0) || d != (double)(long long)d) return false;
    /* cJSON cannot tell 2048.0 (a Python float, which the converter's u32
     * packing would reject) from 2048: both are accepted */
    *v = (long long)d;
    return true;
}

/* a tokenizer_config value: a string, a {content} object, or absent */
static const char *tc_token(const cJSON *tc, const char *key, bool *present)
{
    const cJSON *v = tc ? cJSON_GetObjectItemCaseSensitive(tc, key) : NULL;
    *present = v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !*v->valuestring);
    if (cJSON_IsString(v)) return v->valuestring;
    return NULL;   /* a dict never equals a template token id in the Python comparisons */
}

static bool same(const char *a, const char *b) { return a && b && !strcmp(a, b); }

static bool looks_special(const char *t)
{
    size_t n = strlen(t);
    if (!strcmp(t, "<pad>") || !strcmp(t, "<mask>") || !strcmp(t, "<2mass>") || !strcmp(t, "[@BOS@]")) return true;
    if (n >= 4 && !strncmp(t, "<|", 2) && !strcmp(t + n - 2, "|>")) return true;
    if (n >= 8 && !strncmp(t, "<\xef\xbd\x9c", 4) && !strcmp(t + n - 4, "\xef\xbd\x9c>")) return true;
    if (n >= 8 && !strncmp(t, "<unused", 7) && t[n - 1] == '>') return true;
    return false;
}

enum { N_TYPES_MAX = 9 };
typedef struct special_state {
    const char *types[N_TYPES_MAX];
    int n_types;
    const char *id_typ[N_TYPES_MAX];
    long long id_val[N_TYPES_MAX];
    int n_ids;
    const char *add_typ[N_TYPES_MAX];
    bool add_val[N_TYPES_MAX];
    int n_add;
} special_state;

static int add_find(const special_state *s, const char *typ)
{
    for (int i = 0; i < s->n_add; i++) if (!strcmp(s->add_typ[i], typ)) return i;
    return -1;
}

static void add_set(special_state *s, const char *typ, bool v, bool only_if_unset)
{
    int i = add_find(s, typ);
    if (i >= 0) { if (!only_if_unset) s->add_val[i] = v; return; }
    s->add_typ[s->n_add] = typ;
    s->add_val[s->n_add++] = v;
}

static cr_status set_special(special_state *s, const char *typ, const cJSON *tid, long long n_vocab, const char *dir,
                             cr_error *err)
{
    long long v;
    if (!tid || cJSON_IsBool(tid) || !cr_gguf_json_int(tid, &v)) return CR_OK;   /* not an int: ignored */
    if (v < 0) return cr_fail(err, CR_ERR_FORMAT, "%s: invalid value for special token type %s: %lld", dir, typ, v);
    if (n_vocab >= 0 && v >= n_vocab) return CR_OK;   /* out of range: skipped with a warning */
    for (int i = 0; i < s->n_ids; i++) if (!strcmp(s->id_typ[i], typ)) return CR_OK;
    if (v > 0xffffffffLL) return cr_fail(err, CR_ERR_FORMAT, "%s: special token %s id %lld too large", dir, typ, v);
    s->id_typ[s->n_ids] = typ;
    s->id_val[s->n_ids++] = v;
    return CR_OK;
}

static const char *sp_id(const cJSON *item)
{
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
    const cJSON *id = st ? cJSON_GetObjectItemCaseSensitive(st, "id") : NULL;
    return cJSON_IsString(id) && *id->valuestring ? id->valuestring : NULL;
}

static const char *seq_id(const cJSON *item)
{
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(item, "Sequence");
    const cJSON *id = st ? cJSON_GetObjectItemCaseSensitive(st, "id") : NULL;
    return cJSON_IsString(id) ? id->valuestring : NULL;
}

static cr_status parse_post(const cJSON *proc, special_state *s, const cJSON *tc, const char **bos, const char **cls,
                            const char **eos, const char **sep, const char *dir, cr_error *err)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(proc, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    if (!strcmp(t, "ByteLevel")) {
        add_set(s, "bos", false, true);
        add_set(s, "eos", false, true);
        return CR_OK;
    }
    if (strcmp(t, "TemplateProcessing"))
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: tokenizer.json post-processor %s is not read for GGUF yet", dir, t);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(proc, "single");
    const cJSON *pair = cJSON_GetObjectItemCaseSensitive(proc, "pair");
    int ns = cJSON_IsArray(single) ? cJSON_GetArraySize(single) : 0;
    int np = cJSON_IsArray(pair) ? cJSON_GetArraySize(pair) : 0;
    const char *first = NULL, *last = NULL;
    if (ns > 1) {
        if ((first = sp_id(cJSON_GetArrayItem(single, 0)))) {
            if (!tc) *bos = first;
            else if (!same(first, *bos) && !same(first, *cls))
                return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: TemplateProcessing starts with %s, which is not the bos "
                               "token; the converter's rewrite of tokenizer_config is not ported", dir, first);
            add_set(s, "bos", same(first, *bos) || same(first, *cls), false);
        }
        if ((last = sp_id(cJSON_GetArrayItem(single, ns - 1)))) {
            if (!tc) *eos = last;
            else if (!same(last, *eos))
                return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: TemplateProcessing ends with %s, which is not the eos "
                               "token; the converter's eot/eom rewrite is not ported", dir, last);
            add_set(s, "eos", true, false);
        }
    }
    if (np) {
        int start = first && same(sp_id(cJSON_GetArrayItem(pair, 0)), first) ? 1 : 0;
        int stop = last && same(sp_id(cJSON_GetArrayItem(pair, np - 1)), last) ? np - 1 : np;
        if (stop - start > 0) {
            const char *a = seq_id(cJSON_GetArrayItem(pair, start)), *b = seq_id(cJSON_GetArrayItem(pair, stop - 1));
            if (same(a, "A") && same(b, "B") && stop - start - 2 > 0) {
                int inner0 = start + 1, n_inner = stop - start - 2;
                bool add_sep = false;
                const char *e = sp_id(cJSON_GetArrayItem(pair, inner0));
                if (e && (same(e, *sep) || same(e, *eos)) && !last) add_sep = true;
                if (n_inner == 2) {
                    const char *e2 = sp_id(cJSON_GetArrayItem(pair, inner0 + 1));
                    if (e2 && (same(e2, *sep) || same(e2, *eos))) add_sep = true;
                }
                add_set(s, "sep", add_sep, false);
                if (add_sep && !*sep && tc)
                    return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: TemplateProcessing pair adds a separator the "
                                   "tokenizer_config does not name; not ported", dir);
            }
        }
    }
    return CR_OK;
}

/* gguf.SpecialVocab(dir, load_merges, n_vocab).add_to_gguf: merges (only
 * with load_merges), special token ids (n_vocab < 0: no range check), the
 * add_*_token flags, the chat template, the normalizer flags. tj and tc may
 * be NULL (no tokenizer.json / tokenizer_config.json). */
static cr_status put_special_vocab(vocab_ctx *c, const cJSON *tj, const cJSON *tc, bool load_merges, long long n_vocab)
{
    const cr_allocator *a = c->a;
    const char *dir = c->m->dir;
    cJSON *ctj = NULL;
    char *jinja = NULL;
    const char **merges = NULL;
    size_t n_merges = 0;
    cr_status st = CR_OK;
    const cJSON *it;
    const cJSON *model = tj ? cJSON_GetObjectItemCaseSensitive(tj, "model") : NULL;
    const cJSON *added = tj ? cJSON_GetObjectItemCaseSensitive(tj, "added_tokens") : NULL;
    cJSON_ArrayForEach(it, added) {
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it, "content"))) {
            return cr_fail(c->err, CR_ERR_FORMAT, "%s: tokenizer.json added_tokens entry is invalid", dir);
        }
    }

    /* merges */
    const cJSON *jm = load_merges ? cJSON_GetObjectItemCaseSensitive(model, "merges") : NULL;
    int nm = cJSON_IsArray(jm) ? cJSON_GetArraySize(jm) : 0;
    if (nm) {
        merges = cr_calloc(a, (size_t)nm, sizeof *merges);
        char **mo = cr_calloc(a, (size_t)nm, sizeof *mo);
        if (!merges || !mo) { cr_free(a, mo); st = cr_fail(c->err, CR_ERR_NOMEM, "out of memory"); goto out; }
        bool pairs = cJSON_IsArray(cJSON_GetArrayItem(jm, 0));
        cJSON_ArrayForEach(it, jm) {
            if (!pairs && cJSON_IsString(it)) { merges[n_merges++] = it->valuestring; continue; }
            const cJSON *p0 = cJSON_GetArrayItem(it, 0), *p1 = cJSON_GetArrayItem(it, 1);
            if (!pairs || !cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2 || !cJSON_IsString(p0) || !cJSON_IsString(p1)) {
                st = cr_fail(c->err, CR_ERR_FORMAT, "%s: tokenizer.json merges: unknown format", dir);
                break;
            }
            /* part0 " " part1, a space inside a part written as U+0120 */
            cr_sbuf b;
            cr_sbuf_init(&b, a);
            for (int k = 0; k < 2; k++) {
                if (k) cr_sbuf_add(&b, " ", 1);
                for (const char *q = (k ? p1 : p0)->valuestring; *q; q++) {
                    if (*q == ' ') cr_sbuf_add(&b, "\xc4\xa0", 2);
                    else cr_sbuf_add(&b, q, 1);
                }
            }
            char *m = cr_sbuf_take(&b, NULL);
            if (!m) { st = cr_fail(c->err, CR_ERR_NOMEM, "out of memory"); break; }
            mo[n_merges] = m;
            merges[n_merges++] = m;
        }
        if (st == CR_OK) cr_gguf_kv_arr_str(c->kv, "tokenizer.ggml.merges", merges, n_merges);
        for (size_t k = 0; k < n_merges; k++) cr_free(a, mo[k]);
        cr_free(a, mo);
        if (st) goto out;
    } else if (load_merges && is_file(c->m, "merges.txt")) {
        st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: merges from merges.txt are not read for GGUF yet", dir);
        goto out;
    }

    /* SpecialVocab: special tokens */
    special_state s = {.types = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"}, .n_types = 7};
    bool has_bos, has_cls, has_eos, has_sep;
    const char *bos = tc_token(tc, "bos_token", &has_bos), *cls = tc_token(tc, "cls_token", &has_cls);
    const char *eos = tc_token(tc, "eos_token", &has_eos), *sep = tc_token(tc, "sep_token", &has_sep);
    if ((!has_bos && has_cls) || (!has_eos && has_sep)) {
        st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: cls/sep standing in for bos/eos is not ported", dir);
        goto out;
    }
    const cJSON *pp = tj ? cJSON_GetObjectItemCaseSensitive(tj, "post_processor") : NULL;
    if (pp && !cJSON_IsNull(pp)) {
        const cJSON *procs = cJSON_GetObjectItemCaseSensitive(pp, "processors");
        if (cJSON_IsArray(procs)) {
            cJSON_ArrayForEach(it, procs) if ((st = parse_post(it, &s, tc, &bos, &cls, &eos, &sep, dir, c->err))) goto out;
        } else if ((st = parse_post(pp, &s, tc, &bos, &cls, &eos, &sep, dir, c->err))) {
            goto out;
        }
    }
    const char *chat = NULL;
    bool lowercase = false, strip = false, has_lower = false, has_strip = false;
    const cJSON *normalizer = tj ? cJSON_GetObjectItemCaseSensitive(tj, "normalizer") : NULL;
    if (normalizer && !cJSON_IsNull(normalizer)) {
        /* Lowercase / StripAccents / BertNormalizer / Sequence of them */
        const cJSON *stack[16];
        int sp = 0;
        stack[sp++] = normalizer;
        while (sp) {
            const cJSON *nz = stack[--sp];
            const cJSON *ty = cJSON_GetObjectItemCaseSensitive(nz, "type");
            const char *t = cJSON_IsString(ty) ? ty->valuestring : "";
            if (!strcmp(t, "Lowercase")) { has_lower = lowercase = true; }
            else if (!strcmp(t, "StripAccents")) { has_strip = strip = true; }
            else if (!strcmp(t, "BertNormalizer")) { st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: BertNormalizer is not read for GGUF", dir); goto out; }
            else if (!strcmp(t, "Sequence")) {
                /* pushed in reverse so they are visited in order; only the last setting counts */
                const cJSON *ns = cJSON_GetObjectItemCaseSensitive(nz, "normalizers");
                int cnt = cJSON_IsArray(ns) ? cJSON_GetArraySize(ns) : 0;
                for (int k = cnt - 1; k >= 0 && sp < 16; k--) stack[sp++] = cJSON_GetArrayItem(ns, k);
            }
        }
    }
    if (tc) {
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(tc, "chat_template");
        if (ct && !cJSON_IsNull(ct)) {
            if (!cJSON_IsString(ct)) { st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: a chat_template list is not written yet", dir); goto out; }
            chat = ct->valuestring;
        } else if (!ct && is_file(c->m, "chat_template.jinja")) {
            size_t len = 0;
            if ((st = c->m->read(c->m->ud, "chat_template.jinja", &jinja, &len, c->err))) goto out;
            if (!jinja || is_file(c->m, "additional_chat_templates") || strlen(jinja) != len) {
                st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: this chat template layout is not read for GGUF yet", dir);
                goto out;
            }
            chat = jinja;
        } else if (!ct) {
            if ((st = cr_gguf_src_json(a, c->m, "chat_template.json", &ctj, c->err))) goto out;
            const cJSON *x = ctj ? cJSON_GetObjectItemCaseSensitive(ctj, "chat_template") : NULL;
            if (x && !cJSON_IsString(x) && !cJSON_IsNull(x)) { st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: a chat_template list is not written yet", dir); goto out; }
            if (cJSON_IsString(x)) chat = x->valuestring;
        }
        for (int k = 0; k < s.n_types; k++) {
            char key[64];
            snprintf(key, sizeof key, "add_%s_token", s.types[k]);
            const cJSON *ae = cJSON_GetObjectItemCaseSensitive(tc, key);
            if (cJSON_IsBool(ae)) add_set(&s, s.types[k], cJSON_IsTrue(ae), true);
            snprintf(key, sizeof key, "%s_token", s.types[k]);
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(tc, key);
            const char *content = NULL;
            if (cJSON_IsString(e)) content = e->valuestring;
            else if (cJSON_IsObject(e)) {
                const cJSON *ec = cJSON_GetObjectItemCaseSensitive(e, "content");
                if (cJSON_IsString(ec)) content = ec->valuestring;
            }
            if (!content) continue;
            cJSON_ArrayForEach(it, added) {
                if (!strcmp(cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring, content)) {
                    if ((st = set_special(&s, s.types[k], cJSON_GetObjectItemCaseSensitive(it, "id"), n_vocab, dir, c->err))) goto out;
                    break;
                }
            }
        }
    }
    for (int k = 0; k < s.n_types; k++) {
        char key[64];
        snprintf(key, sizeof key, "%s_token_id", s.types[k]);
        const cJSON *v = cfg(c, key);
        if (!v) {
            const cJSON *txt = cfg(c, "text_config");
            v = txt ? cJSON_GetObjectItemCaseSensitive(txt, key) : NULL;
        }
        if ((st = set_special(&s, s.types[k], v, n_vocab, dir, c->err))) goto out;
    }
    static const struct { const char *typ, *key; } idk[] = {
        {"bos", "tokenizer.ggml.bos_token_id"}, {"eos", "tokenizer.ggml.eos_token_id"},
        {"unk", "tokenizer.ggml.unknown_token_id"}, {"sep", "tokenizer.ggml.seperator_token_id"},
        {"pad", "tokenizer.ggml.padding_token_id"}, {"mask", "tokenizer.ggml.mask_token_id"},
    };
    for (int i = 0; i < s.n_ids; i++)
        for (size_t k = 0; k < CR_ARRAY_LEN(idk); k++)
            if (!strcmp(idk[k].typ, s.id_typ[i])) cr_gguf_kv_u32(c->kv, idk[k].key, (uint32_t)s.id_val[i]);
    for (int i = 0; i < s.n_add; i++) {
        char key[64];
        if (strcmp(s.add_typ[i], "bos") && strcmp(s.add_typ[i], "eos") && strcmp(s.add_typ[i], "sep")) continue;
        snprintf(key, sizeof key, "tokenizer.ggml.add_%s_token", s.add_typ[i]);
        cr_gguf_kv_bool(c->kv, key, s.add_val[i]);
    }
    if (chat && *chat) cr_gguf_kv_str(c->kv, "tokenizer.chat_template", chat);
    if (has_lower) cr_gguf_kv_bool(c->kv, "tokenizer.ggml.normalizer.lowercase", lowercase);
    if (has_strip) cr_gguf_kv_bool(c->kv, "tokenizer.ggml.normalizer.strip_accents", strip);
out:
    cr_free(a, merges);
    cr_free(a, jinja);
    cJSON_Delete(ctj);
    return st;
}

/* _set_vocab_gpt2: get_vocab_base's tokens and types, then SpecialVocab with merges */
static cr_status put_vocab_gpt2(vocab_ctx *c, const cJSON *tj, const cJSON *tc, const char *pre)
{
    const cr_allocator *a = c->a;
    const char *dir = c->m->dir;
    const char **tokens = NULL;
    int32_t *types = NULL;
    char **owned = NULL;
    size_t n_owned = 0;
    long long nv = 0;
    cr_status st = CR_OK;
    if (!tj) return cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: GGUF output needs tokenizer.json", dir);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(tj, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(tj, "added_tokens");
    if (!cJSON_IsObject(vocab)) { st = cr_fail(c->err, CR_ERR_FORMAT, "%s: tokenizer.json model.vocab is not an object", dir); goto out; }
    long long max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        long long id;
        if (!cr_gguf_json_int(it, &id) || id < 0 || id > 0x7fffffff) { st = cr_fail(c->err, CR_ERR_FORMAT, "%s: tokenizer.json vocab id of '%s' is invalid", dir, it->string); goto out; }
        max_id = CR_MAX(max_id, id);
    }
    cJSON_ArrayForEach(it, added) {
        long long id;
        if (!cr_gguf_json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &id) || id < 0 || id > 0x7fffffff ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it, "content"))) {
            st = cr_fail(c->err, CR_ERR_FORMAT, "%s: tokenizer.json added_tokens entry is invalid", dir);
            goto out;
        }
        max_id = CR_MAX(max_id, id);
    }
    if (!cr_gguf_json_int(cfg(c, "vocab_size"), &nv)) nv = max_id + 1;   /* len(tokenizer.vocab) when ids are dense (verify) */
    if (max_id >= nv || nv <= 0 || nv > 0x7fffffff) {
        st = cr_fail(c->err, CR_ERR_FORMAT, "%s: the tokenizer's largest id %lld is not below vocab_size %lld", dir, max_id, nv);
        goto out;
    }
    tokens = cr_calloc(a, (size_t)nv, sizeof *tokens);
    types = cr_calloc(a, (size_t)nv, sizeof *types);
    owned = cr_calloc(a, (size_t)nv, sizeof *owned);
    if (!tokens || !types || !owned) { st = cr_fail(c->err, CR_ERR_NOMEM, "out of memory"); goto out; }
    cJSON_ArrayForEach(it, vocab) { long long id; cr_gguf_json_int(it, &id); if (!tokens[id]) tokens[id] = it->string; types[id] = 1; }
    /* added tokens: transformers' vocab maps their content to their id */
    cJSON_ArrayForEach(it, added) {
        long long id;
        cr_gguf_json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &id);
        tokens[id] = cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring;
    }
    for (long long i = 0; i < nv; i++) {
        if (!tokens[i]) {
            char buf[32];
            snprintf(buf, sizeof buf, "[PAD%lld]", i);
            if (!(owned[n_owned] = cr_strdup(a, buf))) { st = cr_fail(c->err, CR_ERR_NOMEM, "out of memory"); goto out; }
            tokens[i] = owned[n_owned++];
            types[i] = 5;
            continue;
        }
        /* "token in added_vocab" is by content; added_tokens_decoder[i] is the id's entry */
        const cJSON *by_content = NULL, *by_id = NULL;
        cJSON_ArrayForEach(it, added) {
            long long id;
            cr_gguf_json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &id);
            if (!by_content && !strcmp(cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring, tokens[i])) by_content = it;
            if (id == i) by_id = it;
        }
        if (!by_content) { types[i] = 1; continue; }
        if (!by_id) { st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: token %lld ('%s') is an added token under another id", dir, i, tokens[i]); goto out; }
        const cJSON *norm = cJSON_GetObjectItemCaseSensitive(by_id, "normalized");
        const cJSON *spec = cJSON_GetObjectItemCaseSensitive(by_id, "special");
        if (cJSON_IsTrue(spec) || looks_special(tokens[i])) {
            types[i] = 3;
        } else {
            /* USER_DEFINED; a non-normalized one goes through decode(encode()) in the converter */
            if (!cJSON_IsTrue(norm) || strstr(tokens[i], "\xe2\x96\x81")) {
                st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: added token '%s' is not special; the converter's "
                             "re-encoding of such tokens is not ported", dir, tokens[i]);
                goto out;
            }
            types[i] = 4;
        }
    }
    cr_gguf_kv_str(c->kv, "tokenizer.ggml.model", "gpt2");
    cr_gguf_kv_str(c->kv, "tokenizer.ggml.pre", pre);
    cr_gguf_kv_arr_str(c->kv, "tokenizer.ggml.tokens", tokens, (size_t)nv);
    cr_gguf_kv_arr_i32(c->kv, "tokenizer.ggml.token_type", types, (size_t)nv);
    st = put_special_vocab(c, tj, tc, true, -1);
out:
    for (size_t k = 0; k < n_owned; k++) cr_free(a, owned[k]);
    cr_free(a, owned);
    cr_free(a, tokens);
    cr_free(a, types);
    return st;
}

/* Python truthiness of a JSON value (token_data.get("special")) */
static bool py_truthy(const cJSON *v)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return false;
    if (cJSON_IsNumber(v)) return v->valuedouble != 0;
    if (cJSON_IsString(v)) return v->valuestring[0] != 0;
    if (cJSON_IsArray(v) || cJSON_IsObject(v)) return v->child != NULL;
    return true;
}

/* a decimal id as Python's int(key) of a JSON object key, for the plain
 * digits every real file has; anything else is refused by the caller */
static bool key_id(const char *k, long long *v)
{
    if (!*k || strlen(k) > 12) return false;
    for (const char *s = k; *s; s++) if (*s < '0' || *s > '9') return false;
    *v = strtoll(k, NULL, 10);
    return true;
}

/* _set_vocab_sentencepiece / _create_vocab_sentencepiece (spec/gguf.md
 * §4.3): tokenizer.model's pieces over vocab_size "[PADi]" slots, then
 * added_tokens.json and tokenizer_config's added_tokens_decoder, then
 * SpecialVocab without merges and with n_vocab. */
static cr_status put_vocab_spm(vocab_ctx *c, const cJSON *tj, const cJSON *tc)
{
    enum { T_NORMAL = 1, T_UNKNOWN = 2, T_CONTROL = 3, T_USER = 4, T_UNUSED = 5, T_BYTE = 6 };
    const cr_allocator *a = c->a;
    const char *dir = c->m->dir;
    char *raw = NULL;
    size_t raw_len = 0;
    cr_spm_model sp;
    memset(&sp, 0, sizeof sp);
    cJSON *atj = NULL;
    const char **tokens = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    char **owned = NULL;
    size_t n_owned = 0;
    cr_status st = c->m->read(c->m->ud, "tokenizer.model", &raw, &raw_len, c->err);
    if (st == CR_OK && !raw) st = cr_fail(c->err, CR_ERR_IO, "%s: cannot read tokenizer.model", dir);
    if (st == CR_OK) {
        char *w = cr_malloc(a, strlen(dir) + 32);
        if (!w) st = cr_fail(c->err, CR_ERR_NOMEM, "out of memory");
        else {
            sprintf(w, "%s/tokenizer.model", dir);
            st = cr_spm_parse(a, (const uint8_t *)raw, raw_len, w, &sp, c->err);
            cr_free(a, w);
        }
    }
    if (st) goto out;
    long long nv = 0;
    if (!cr_gguf_json_int(cfg(c, "vocab_size"), &nv) || nv == 0) nv = sp.n_pieces;   /* find_hparam(...) or vocab_size() */
    if (nv < 0 || nv > 0x7fffffff) { st = cr_fail(c->err, CR_ERR_FORMAT, "%s: vocab_size %lld is invalid", dir, nv); goto out; }
    if ((st = cr_gguf_src_json(a, c->m, "added_tokens.json", &atj, c->err))) goto out;
    const cJSON *dec = tc ? cJSON_GetObjectItemCaseSensitive(tc, "added_tokens_decoder") : NULL;
    size_t n_extra = (size_t)cJSON_GetArraySize(atj) + (size_t)(cJSON_IsObject(dec) ? cJSON_GetArraySize(dec) : 0);
    tokens = cr_calloc(a, (size_t)nv ? (size_t)nv : 1, sizeof *tokens);
    scores = cr_calloc(a, (size_t)nv ? (size_t)nv : 1, sizeof *scores);
    types = cr_calloc(a, (size_t)nv ? (size_t)nv : 1, sizeof *types);
    owned = cr_calloc(a, (size_t)nv + n_extra + 1, sizeof *owned);
    if (!tokens || !scores || !types || !owned) { st = cr_fail(c->err, CR_ERR_NOMEM, "out of memory"); goto out; }
    for (long long i = 0; i < nv; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "[PAD%lld]", i);
        if (!(owned[n_owned] = cr_strdup(a, buf))) { st = cr_fail(c->err, CR_ERR_NOMEM, "out of memory"); goto out; }
        tokens[i] = owned[n_owned++];
        scores[i] = -10000.0f;
        types[i] = T_UNUSED;
    }
    for (uint32_t i = 0; i < sp.n_pieces && i < (uint64_t)nv; i++) {
        const cr_spm_piece *p = &sp.pieces[i];
        tokens[i] = p->text;
        scores[i] = p->score;
        /* IsUnknown / IsControl / IsUnused / IsByte; USER_DEFINED reads as NORMAL */
        types[i] = p->type == CR_SPM_UNKNOWN ? T_UNKNOWN : p->type == CR_SPM_CONTROL ? T_CONTROL
                 : p->type == CR_SPM_UNUSED ? T_UNUSED : p->type == CR_SPM_BYTE ? T_BYTE : T_NORMAL;
    }
    const cJSON *it;
    if (atj) {
        cJSON_ArrayForEach(it, atj) {
            long long id;
            if (!cr_gguf_json_int(it, &id) || id < 0) {
                st = cr_fail(c->err, CR_ERR_FORMAT, "%s/added_tokens.json: the id of '%s' is not a token id", dir, it->string);
                goto out;
            }
            if (id >= nv) continue;   /* ignored with a warning */
            tokens[id] = it->string;
            scores[id] = -1000.0f;
            types[id] = T_USER;
        }
    }
    if (dec && !cJSON_IsObject(dec)) {
        st = cr_fail(c->err, CR_ERR_FORMAT, "%s/tokenizer_config.json: added_tokens_decoder is not an object", dir);
        goto out;
    }
    cJSON_ArrayForEach(it, dec) {
        long long id;
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!key_id(it->string, &id) || !cJSON_IsObject(it) || !cJSON_IsString(content)) {
            st = cr_fail(c->err, CR_ERR_FORMAT, "%s/tokenizer_config.json: added_tokens_decoder entry '%s' is not an id "
                         "with a content string", dir, it->string);
            goto out;
        }
        if (id >= nv) continue;
        const char *t = content->valuestring;
        if (py_truthy(cJSON_GetObjectItemCaseSensitive(it, "special")) || looks_special(t)) {
            types[id] = T_CONTROL;
            tokens[id] = t;
        } else {
            /* pre-normalised user-defined spaces: U+2581 becomes ' ' */
            cr_sbuf b;
            cr_sbuf_init(&b, a);
            for (const char *q = t; *q;) {
                if (!strncmp(q, "\xe2\x96\x81", 3)) { cr_sbuf_add(&b, " ", 1); q += 3; }
                else cr_sbuf_add(&b, q++, 1);
            }
            char *r = cr_sbuf_take(&b, NULL);
            if (!r) { st = cr_fail(c->err, CR_ERR_NOMEM, "out of memory"); goto out; }
            owned[n_owned++] = r;
            types[id] = T_USER;
            tokens[id] = r;
        }
        scores[id] = -1000.0f;
    }
    cr_gguf_kv_str(c->kv, "tokenizer.ggml.model", "llama");
    cr_gguf_kv_str(c->kv, "tokenizer.ggml.pre", "default");
    cr_gguf_kv_arr_str(c->kv, "tokenizer.ggml.tokens", tokens, (size_t)nv);
    cr_gguf_kv_arr_f32(c->kv, "tokenizer.ggml.scores", scores, (size_t)nv);
    cr_gguf_kv_arr_i32(c->kv, "tokenizer.ggml.token_type", types, (size_t)nv);
    st = put_special_vocab(c, tj, tc, false, nv);
out:
    for (size_t k = 0; k < n_owned; k++) cr_free(a, owned[k]);
    cr_free(a, owned);
    cr_free(a, tokens);
    cr_free(a, scores);
    cr_free(a, types);
    cJSON_Delete(atj);
    cr_spm_free(&sp);
    cr_free(a, raw);
    return st;
}

bool cr_gguf_vocab_is_llama_hf(const cJSON *tj)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(tj, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tj, "decoder"), "type");
    return cJSON_IsString(type) && !strcmp(type->valuestring, "BPE") &&
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback")) && cJSON_IsString(dec) &&
           !strcmp(dec->valuestring, "Sequence");
}

/* a tokenizer_config / special_tokens_map entry's content (a string or {content}) */
static const char *named_content(const cJSON *e)
{
    if (cJSON_IsString(e)) return e->valuestring;
    const cJSON *c = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "content") : NULL;
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

/* _set_vocab_llama_hf / gguf.LlamaHfVocab (spec/gguf.md §4.3) as
 * transformers 5's TokenizersBackend presents tokenizer.json: the base
 * vocabulary (model.vocab, ids 0..n-1) with score -1000 and type BYTE for
 * <0xHH>, CONTROL for the named special tokens, else NORMAL; then the added
 * tokens past it in id order (CONTROL if named special, else USER_DEFINED);
 * no padding to vocab_size; SpecialVocab without merges, n_vocab = the
 * count. What transformers might build differently (another tokenizer
 * class, extra special token lists) is refused. */
static cr_status put_vocab_llama_hf(vocab_ctx *c, const cJSON *tj, const cJSON *tc)
{
    enum { T_NORMAL = 1, T_CONTROL = 3, T_USER = 4, T_BYTE = 6 };
    static const char *const named[] = {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                                        "mask_token"};
    const cr_allocator *a = c->a;
    const char *dir = c->m->dir;
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tj, "model"), "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(tj, "added_tokens");
    const cJSON *cls = tc ? cJSON_GetObjectItemCaseSensitive(tc, "tokenizer_class") : NULL;
    if (cls && !(cJSON_IsString(cls) && !strcmp(cls->valuestring, "PreTrainedTokenizerFast")))
        return cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: a byte-fallback BPE tokenizer (the converter's LlamaHf path) "
                       "with tokenizer_class %s: only PreTrainedTokenizerFast, which reads tokenizer.json as it is, "
                       "is ported", dir, cJSON_IsString(cls) ? cls->valuestring : "(not a string)");
    const char *extra[] = {"additional_special_tokens", "extra_special_tokens"};
    for (size_t k = 0; k < 2; k++) {
        const cJSON *x = tc ? cJSON_GetObjectItemCaseSensitive(tc, extra[k]) : NULL;
        if (py_truthy(x))
            return cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: tokenizer_config %s is not ported for the LlamaHf path",
                           dir, extra[k]);
    }
    if (!cJSON_IsObject(vocab)) return cr_fail(c->err, CR_ERR_FORMAT, "%s: tokenizer.json model.vocab is not an object", dir);
    int n_base = cJSON_GetArraySize(vocab), n_added = cJSON_GetArraySize(added);
    size_t cap = (size_t)n_base + (size_t)n_added + 1;
    const char **tokens = cr_calloc(a, cap, sizeof *tokens);
    float *scores = cr_calloc(a, cap, sizeof *scores);
    int32_t *types = cr_calloc(a, cap, sizeof *types);
    long long *added_id = cr_calloc(a, cap, sizeof *added_id);
    cJSON *stm = NULL;
    cr_status st = CR_OK;
    if (!tokens || !scores || !types || !added_id) { st = cr_fail(c->err, CR_ERR_NOMEM, "out of memory"); goto out; }
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        long long id;
        if (!cr_gguf_json_int(it, &id) || id < 0 || id >= n_base || tokens[id]) {
            st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: tokenizer.json vocab ids are not 0..%d each once ('%s')", dir,
                         n_base - 1, it->string);
            goto out;
        }
        tokens[id] = it->string;
    }
    /* added tokens: those inside the base vocabulary must be its tokens; the rest follow in id order */
    int n_tail = 0;
    cJSON_ArrayForEach(it, added) {
        long long id;
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cr_gguf_json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &id) || id < 0 || id > 0x7fffffff ||
            !cJSON_IsString(content)) {
            st = cr_fail(c->err, CR_ERR_FORMAT, "%s: tokenizer.json added_tokens entry is invalid", dir);
            goto out;
        }
        const cJSON *in_vocab = cJSON_GetObjectItemCaseSensitive(vocab, content->valuestring);
        long long vid;
        if (id < n_base ? strcmp(tokens[id], content->valuestring)
                        : (in_vocab && cr_gguf_json_int(in_vocab, &vid) && vid != id)) {
            st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: added token '%s' (id %lld) disagrees with model.vocab", dir,
                         content->valuestring, id);
            goto out;
        }
        if (id >= n_base) added_id[n_tail++] = id;
    }
    /* sorted(get_added_vocab(), key=id): ids are distinct */
    for (int i = 1; i < n_tail; i++)
        for (int j = i; j > 0 && added_id[j - 1] > added_id[j]; j--) {
            long long t = added_id[j]; added_id[j] = added_id[j - 1]; added_id[j - 1] = t;
        }
    for (int i = 1; i < n_tail; i++)
        if (added_id[i] == added_id[i - 1]) { st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: two added tokens have id %lld", dir, added_id[i]); goto out; }
    /* all_special_tokens: the named ones of tokenizer_config (special_tokens_map.json must agree) */
    if ((st = cr_gguf_src_json(a, c->m, "special_tokens_map.json", &stm, c->err))) goto out;
    long long special_ids[CR_ARRAY_LEN(named)];
    int n_special = 0;
    for (size_t k = 0; k < CR_ARRAY_LEN(named); k++) {
        const char *t = tc ? named_content(cJSON_GetObjectItemCaseSensitive(tc, named[k])) : NULL;
        const char *u = stm ? named_content(cJSON_GetObjectItemCaseSensitive(stm, named[k])) : NULL;
        if (u && (!t || strcmp(t, u))) {
            st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: special_tokens_map.json %s differs from tokenizer_config's; "
                         "not ported for the LlamaHf path", dir, named[k]);
            goto out;
        }
        if (!t) continue;
        long long id = -1;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(vocab, t);
        if (!v || !cr_gguf_json_int(v, &id)) {
            id = -1;
            cJSON_ArrayForEach(it, added)
                if (!strcmp(cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring, t))
                    cr_gguf_json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &id);
        }
        if (id < 0) {
            st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: special token '%s' (%s) is not in tokenizer.json; "
                         "transformers would add it", dir, t, named[k]);
            goto out;
        }
        special_ids[n_special++] = id;
    }
    for (int i = 0; i < n_base; i++) {
        const char *t = tokens[i];
        bool special = false;
        for (int k = 0; k < n_special; k++) special |= special_ids[k] == i;
        bool byte = strlen(t) == 6 && !strncmp(t, "<0x", 3) && isxdigit((unsigned char)t[3]) &&
                    isxdigit((unsigned char)t[4]) && t[5] == '>';
        types[i] = byte ? T_BYTE : special ? T_CONTROL : T_NORMAL;
        scores[i] = -1000.0f;
    }
    for (int i = 0; i < n_tail; i++) {
        const char *t = NULL;
        cJSON_ArrayForEach(it, added) {
            long long id;
            cr_gguf_json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &id);
            if (id == added_id[i]) t = cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring;
        }
        bool special = false;
        for (int k = 0; k < n_special; k++) special |= special_ids[k] == added_id[i];
        tokens[n_base + i] = t;
        scores[n_base + i] = -1000.0f;
        types[n_base + i] = special ? T_CONTROL : T_USER;
    }
    size_t n = (size_t)n_base + (size_t)n_tail;
    cr_gguf_kv_str(c->kv, "tokenizer.ggml.model", "llama");
    cr_gguf_kv_str(c->kv, "tokenizer.ggml.pre", "default");
    cr_gguf_kv_arr_str(c->kv, "tokenizer.ggml.tokens", tokens, n);
    cr_gguf_kv_arr_f32(c->kv, "tokenizer.ggml.scores", scores, n);
    cr_gguf_kv_arr_i32(c->kv, "tokenizer.ggml.token_type", types, n);
    st = put_special_vocab(c, tj, tc, false, (long long)n);
out:
    cJSON_Delete(stm);
    cr_free(a, tokens);
    cr_free(a, scores);
    cr_free(a, types);
    cr_free(a, added_id);
    return st;
}

cr_status cr_gguf_vocab_put(const cr_allocator *a, const cr_gguf_src *m, cr_gguf_kv *kv, bool llama, const char *pre,
                            cr_error *err)
{
    vocab_ctx c = {a, m, kv, err};
    cJSON *tj = NULL, *tc = NULL;
    cr_status st = cr_gguf_src_json(a, m, "tokenizer.json", &tj, err);
    if (st == CR_OK) st = cr_gguf_src_json(a, m, "tokenizer_config.json", &tc, err);
    if (st == CR_OK && llama && tc) {
        /* LlamaModel.set_vocab, before either path */
        const cJSON *aps = cJSON_GetObjectItemCaseSensitive(tc, "add_prefix_space");
        if (cJSON_IsBool(aps)) cr_gguf_kv_bool(kv, "tokenizer.ggml.add_space_prefix", cJSON_IsTrue(aps));
        else if (aps && !cJSON_IsNull(aps)) st = cr_fail(err, CR_ERR_FORMAT, "%s: add_prefix_space is not a bool", m->dir);
    }
    if (st == CR_OK) {
        /* LlamaModel.set_vocab: sentencepiece, else llama_hf, else gpt2; Qwen2Model: no llama_hf */
        if (cr_gguf_vocab_spm(m)) st = put_vocab_spm(&c, tj, tc);
        else if (llama && tj && cr_gguf_vocab_is_llama_hf(tj)) st = put_vocab_llama_hf(&c, tj, tc);
        else st = put_vocab_gpt2(&c, tj, tc, pre);
    }
    cJSON_Delete(tc);
    cJSON_Delete(tj);
    return st;
}

bool cr_gguf_vocab_spm(const cr_gguf_src *m)
{
    return is_file(m, "tokenizer.model");
}
