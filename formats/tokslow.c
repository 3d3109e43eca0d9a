/* tokslow.c — transformers 5.25's slow-to-fast conversion (tokslow.h) of a
 * SentencePiece tokenizer.model and of GPT-2 vocab.json + merges.txt
 * (GPT2Tokenizer.__init__ with its defaults). For SentencePiece, read from
 * the 5.25 wheel:
 * TokenizersBackend.convert_to_native_format → _convert_from_sentencepiece
 * (SentencePieceExtractor.extract, then, for a plain TokenizersBackend,
 * SpmConverter.build_tokenizer_from_spm_proto with legacy=True), then
 * TokenizersBackend.__init__ (a post-processor built by
 * update_post_processor with add_bos/add_eos false, since the converted
 * tokenizer has none; the special tokens registered as added tokens).
 * With a tokenizer_config.json naming LlamaTokenizer: extract's vocabulary
 * and generate_merges, then LlamaTokenizer.__init__ with the config's
 * options (build_llama).
 *
 * The tree is built in the key order tokenizers serialises, so that
 * cr_tokslow_print writes the bytes transformers writes.
 */
#include "tokslow.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "infile.h"
#include "jsonw.h"
#include "spm_model.h"

#define SPM_BYTES_LIMIT (256ull << 20)

static bool has(const char *dir, const char *name)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

cr_tokslow_kind cr_tokslow_kind_of(const char *dir)
{
    if (!dir || has(dir, "tokenizer.json")) return CR_TOKSLOW_NONE;
    if (has(dir, "tokenizer.model")) return CR_TOKSLOW_SPM;
    if (has(dir, "vocab.json") && has(dir, "merges.txt")) return CR_TOKSLOW_BPE_FILES;
    return CR_TOKSLOW_NONE;
}

/* ---- small builders ---------------------------------------------------------- */

static cJSON *replace(const char *kind, const char *pattern, const char *content)
{
    cJSON *r = cJSON_CreateObject(), *p = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "type", "Replace");
    cJSON_AddStringToObject(p, kind, pattern);
    cJSON_AddItemToObject(r, "pattern", p);
    cJSON_AddStringToObject(r, "content", content);
    return r;
}

static cJSON *typed(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

/* a TemplateProcessing piece: {kind: {id, type_id}}, kind "Sequence"
 * (id "A"/"B") or "SpecialToken" (id the token's text) */
static cJSON *template_item(const char *kind, const char *id, int type_id)
{
    cJSON *o = cJSON_CreateObject(), *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "id", id);
    cJSON_AddNumberToObject(s, "type_id", type_id);
    cJSON_AddItemToObject(o, kind, s);
    return o;
}

static cJSON *seq_item(const char *id, int type_id) { return template_item("Sequence", id, type_id); }

static char *base64(const cr_allocator *a, const uint8_t *p, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = cr_malloc(a, (n + 2) / 3 * 4 + 1), *q = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *q++ = t[v >> 18 & 63];
        *q++ = t[v >> 12 & 63];
        *q++ = i + 1 < n ? t[v >> 6 & 63] : '=';
        *q++ = i + 2 < n ? t[v & 63] : '=';
    }
    *q = 0;
    return o;
}

/* length in code points (Python's len) */
static size_t u8len(const char *s)
{
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* byte offset of code point k */
static size_t u8off(const char *s, size_t k)
{
    size_t i = 0;
    for (; s[i] && k; k--) do i++; while (((unsigned char)s[i] & 0xc0) == 0x80);
    return i;
}

/* ---- the merges: normal pieces ranked by (-score, id, left, right) ----------- */

typedef struct piece_ref { const char *text; float score; uint32_t id; } piece_ref;

static int cmp_text(const void *x, const void *y)
{
    return strcmp(((const piece_ref *)x)->text, ((const piece_ref *)y)->text);
}

static int cmp_rank(const void *x, const void *y)
{
    const piece_ref *a = x, *b = y;
    double sa = -(double)a->score, sb = -(double)b->score;
    if (sa != sb) return sa < sb ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static const piece_ref *find(const piece_ref *by, uint32_t n, const char *t)
{
    piece_ref k = { t, 0, 0 };
    return bsearch(&k, by, n, sizeof *by, cmp_text);
}

/* Appends to `out` every split of `t` into two pieces of `by` (sorted by
 * text), as [left, right] pairs in order of the left part's length, which is
 * (left, right) order. *buf / *cap: a scratch buffer the caller frees. */
static cr_status add_splits(const cr_allocator *a, const piece_ref *by, uint32_t n, const char *t, char **buf,
                            size_t *cap, cJSON *out, cr_error *err)
{
    size_t tl = strlen(t), cps = u8len(t);
    if (tl + 1 > *cap) {
        cr_free(a, *buf);
        *cap = 2 * tl + 16;
        if (!(*buf = cr_malloc(a, *cap))) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    }
    for (size_t k = 1; k < cps; k++) {
        size_t o = u8off(t, k);
        memcpy(*buf, t, o);
        (*buf)[o] = 0;
        if (!find(by, n, *buf) || !find(by, n, t + o)) continue;
        cJSON *pair = cJSON_CreateArray();
        if (!pair || !cJSON_AddItemToArray(out, pair) || !cJSON_AddItemToArray(pair, cJSON_CreateString(*buf)) ||
            !cJSON_AddItemToArray(pair, cJSON_CreateString(t + o)))
            return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    }
    return CR_OK;
}

static cr_status merges(const cr_allocator *a, const cr_spm_model *m, cJSON *out, cr_error *err)
{
    uint32_t n = 0;
    piece_ref *by = cr_calloc(a, m->n_pieces + 1, sizeof *by), *rank = cr_calloc(a, m->n_pieces + 1, sizeof *rank);
    char *buf = NULL;
    size_t cap = 0;
    cr_status s = CR_OK;
    if (!by || !rank) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
    for (uint32_t i = 0; i < m->n_pieces; i++)
        if (m->pieces[i].type == CR_SPM_NORMAL) by[n++] = (piece_ref){ m->pieces[i].text, m->pieces[i].score, i };
    memcpy(rank, by, n * sizeof *by);
    qsort(by, n, sizeof *by, cmp_text);
    qsort(rank, n, sizeof *rank, cmp_rank);
    for (uint32_t r = 0; r < n && !s; r++) s = add_splits(a, by, n, rank[r].text, &buf, &cap, out, err);
out:
    cr_free(a, by);
    cr_free(a, rank);
    cr_free(a, buf);
    return s;
}

/* Python's re.escape */
static void re_escape(cr_sbuf *b, const char *s)
{
    for (; *s; s++) {
        if (strchr("()[]{}?*+-|^$\\.&~# \t\n\r\v\f", *s)) cr_sbuf_add(b, "\\", 1);
        cr_sbuf_add(b, s, 1);
    }
}

typedef struct ud_ref { const char *text; size_t len; uint32_t id; } ud_ref;

static int cmp_ud(const void *x, const void *y)
{
    const ud_ref *a = x, *b = y;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;     /* Python's sort is stable */
}

/* ---- the conversion ------------------------------------------------------------ */

static cr_status build(const cr_allocator *a, const cr_spm_model *m, const char *what, cJSON **tok, cJSON **cfg,
                       cr_error *err)
{
    const cr_spm_spec *sp = &m->spec;
    cJSON *j = cJSON_CreateObject(), *c = cJSON_CreateObject();
    *tok = j;
    *cfg = c;
    if (!j || !c) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    uint32_t n_ud = 0;
    for (uint32_t i = 0; i < m->n_pieces; i++) n_ud += m->pieces[i].type == CR_SPM_USER_DEFINED;
    cJSON_AddStringToObject(j, "version", "1.0");
    cJSON_AddNullToObject(j, "truncation");
    cJSON_AddNullToObject(j, "padding");
    /* added tokens: the unk/bos/eos pieces the trainer spec names (the
     * special tokens), then the control pieces (extra special tokens), all
     * special and not normalized, by id */
    cJSON *added = cJSON_AddArrayToObject(j, "added_tokens");
    bool *is_added = cr_calloc(a, m->n_pieces, sizeof *is_added);
    if (!is_added) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    const int32_t ids[] = { sp->unk_id, sp->bos_id, sp->eos_id };
    const char *const texts[] = { sp->unk_piece, sp->bos_piece, sp->eos_piece };
    const char *const roles[] = { "unk_token", "bos_token", "eos_token" };
    cr_status s = CR_OK;
    for (int r = 0; r < 3 && !s; r++) {
        if (ids[r] < 0) continue;
        uint32_t i = 0;
        while (i < m->n_pieces && strcmp(m->pieces[i].text, texts[r])) i++;
        if (i == m->n_pieces)
            s = cr_fail(err, CR_ERR_UNSUPPORTED, "%s: its %s '%s' is not a piece of the model: not converted", what,
                        roles[r], texts[r]);
        else
            is_added[i] = true;
    }
    cJSON *extra = cJSON_CreateArray();
    for (uint32_t i = 0; i < m->n_pieces && !s; i++) {
        if (m->pieces[i].type == CR_SPM_CONTROL) {
            is_added[i] = true;
            cJSON_AddItemToArray(extra, cJSON_CreateString(m->pieces[i].text));
        }
        if (!is_added[i]) continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToArray(added, e);
        cJSON_AddNumberToObject(e, "id", i);
        cJSON_AddStringToObject(e, "content", m->pieces[i].text);
        cJSON_AddFalseToObject(e, "single_word");
        cJSON_AddFalseToObject(e, "lstrip");
        cJSON_AddFalseToObject(e, "rstrip");
        cJSON_AddFalseToObject(e, "normalized");
        cJSON_AddTrueToObject(e, "special");
    }
    cr_free(a, is_added);
    if (s) { cJSON_Delete(extra); return s; }
    /* normalizer, in SentencePiece's order */
    cJSON *norm = typed("Sequence"), *nl = cJSON_AddArrayToObject(norm, "normalizers");
    cJSON_AddItemToObject(j, "normalizer", norm);
    if (sp->charsmap) {
        char *b64 = base64(a, sp->charsmap, sp->charsmap_len);
        if (!b64) { cJSON_Delete(extra); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
        cJSON *pc = typed("Precompiled");
        cJSON_AddStringToObject(pc, "precompiled_charsmap", b64);
        cJSON_AddItemToArray(nl, pc);
        cr_free(a, b64);
    }
    if (sp->remove_extra_whitespaces) {
        cJSON_AddItemToArray(nl, replace("Regex", "\\A +| +\\z", ""));
        cJSON_AddItemToArray(nl, replace("Regex", " {2,}", " "));
    }
    if (sp->escape_whitespaces) cJSON_AddItemToArray(nl, replace("String", " ", "\xe2\x96\x81"));
    if (sp->add_dummy_prefix) cJSON_AddItemToArray(nl, replace("Regex", "\\A\xe2\x96\x81", "\xe2\x96\x81\xe2\x96\x81"));
    /* pre-tokenizer: the dummy prefix, then user-defined pieces isolated */
    if (sp->add_dummy_prefix || n_ud) {
        cJSON *pre = typed("Sequence"), *pl = cJSON_AddArrayToObject(pre, "pretokenizers");
        cJSON_AddItemToObject(j, "pre_tokenizer", pre);
        if (sp->add_dummy_prefix) {
            cJSON *ms = typed("Metaspace");
            cJSON_AddStringToObject(ms, "replacement", "\xe2\x96\x81");
            cJSON_AddStringToObject(ms, "prepend_scheme", "always");
            cJSON_AddFalseToObject(ms, "split");
            cJSON_AddItemToArray(pl, ms);
        }
        if (n_ud) {
            ud_ref *ud = cr_calloc(a, n_ud, sizeof *ud);
            if (!ud) { cJSON_Delete(extra); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
            uint32_t k = 0;
            for (uint32_t i = 0; i < m->n_pieces; i++)
                if (m->pieces[i].type == CR_SPM_USER_DEFINED) ud[k++] = (ud_ref){ m->pieces[i].text, u8len(m->pieces[i].text), i };
            qsort(ud, n_ud, sizeof *ud, cmp_ud);
            cr_sbuf pb;
            cr_sbuf_init(&pb, a);
            for (uint32_t i = 0; i < n_ud; i++) {
                if (i) cr_sbuf_add(&pb, "|", 1);
                re_escape(&pb, ud[i].text);
            }
            cr_free(a, ud);
            size_t len;
            char *pat = cr_sbuf_take(&pb, &len);
            if (!pat) { cJSON_Delete(extra); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
            cJSON *sp2 = typed("Split"), *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "Regex", pat);
            cJSON_AddItemToObject(sp2, "pattern", p);
            cJSON_AddStringToObject(sp2, "behavior", "Isolated");
            cJSON_AddFalseToObject(sp2, "invert");
            cJSON_AddItemToArray(pl, sp2);
            cr_free(a, pat);
        }
    } else {
        cJSON_AddNullToObject(j, "pre_tokenizer");
    }
    /* post-processor: update_post_processor with add_bos/add_eos false */
    cJSON *pp = typed("TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(pp, "single"), *pair = cJSON_AddArrayToObject(pp, "pair");
    cJSON_AddItemToArray(single, seq_item("A", 0));
    cJSON_AddItemToArray(pair, seq_item("A", 0));
    cJSON_AddItemToArray(pair, seq_item("B", 1));
    cJSON_AddObjectToObject(pp, "special_tokens");
    cJSON_AddItemToObject(j, "post_processor", pp);
    /* decoder */
    cJSON *dec = typed("Sequence"), *dl = cJSON_AddArrayToObject(dec, "decoders");
    cJSON_AddItemToObject(j, "decoder", dec);
    cJSON_AddItemToArray(dl, replace("String", "\xe2\x96\x81", " "));
    if (sp->byte_fallback) cJSON_AddItemToArray(dl, typed("ByteFallback"));
    if (sp->add_dummy_prefix) {
        cJSON_AddItemToArray(dl, typed("Fuse"));
        cJSON *st = typed("Strip");
        cJSON_AddStringToObject(st, "content", " ");
        cJSON_AddNumberToObject(st, "start", 1);
        cJSON_AddNumberToObject(st, "stop", 0);
        cJSON_AddItemToArray(dl, st);
    } else if (sp->byte_fallback) {
        cJSON_AddItemToArray(dl, typed("Fuse"));
    }
    /* the BPE model: every piece at its id, merges from the normal pieces */
    cJSON *mo = typed("BPE");
    cJSON_AddItemToObject(j, "model", mo);
    cJSON_AddNullToObject(mo, "dropout");
    cJSON_AddStringToObject(mo, "unk_token", sp->unk_piece);
    cJSON_AddNullToObject(mo, "continuing_subword_prefix");
    cJSON_AddNullToObject(mo, "end_of_word_suffix");
    cJSON_AddTrueToObject(mo, "fuse_unk");
    cJSON_AddBoolToObject(mo, "byte_fallback", sp->byte_fallback);
    cJSON_AddBoolToObject(mo, "ignore_merges", n_ud > 0);
    cJSON *vocab = cJSON_AddObjectToObject(mo, "vocab");
    for (uint32_t i = 0; i < m->n_pieces; i++) cJSON_AddNumberToObject(vocab, m->pieces[i].text, i);
    cJSON *mg = cJSON_AddArrayToObject(mo, "merges");
    if (!mg || (s = merges(a, m, mg, err))) { cJSON_Delete(extra); return s ? s : cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
    /* tokenizer_config.json (keys sorted, as save_pretrained writes them) */
    cJSON_AddStringToObject(c, "backend", "tokenizers");
    if (sp->bos_id >= 0) cJSON_AddStringToObject(c, "bos_token", sp->bos_piece);
    if (sp->eos_id >= 0) cJSON_AddStringToObject(c, "eos_token", sp->eos_piece);
    cJSON_AddItemToObject(c, "extra_special_tokens", extra);    /* [] too */
    /* `is_local` for a directory; `local_files_only` as when HF_HUB_OFFLINE
     * is unset; VERY_LARGE_INTEGER (formats/hfdir.c writes the same) */
    cJSON_AddTrueToObject(c, "is_local");
    cJSON_AddFalseToObject(c, "local_files_only");
    cJSON_AddRawToObject(c, "model_max_length", "1000000000000000019884624838656");
    cJSON_AddStringToObject(c, "tokenizer_class", "TokenizersBackend");
    if (sp->unk_id >= 0) cJSON_AddStringToObject(c, "unk_token", sp->unk_piece);
    return CR_OK;
}

/* ---- tokenizer_class LlamaTokenizer (tokenizer_config.json beside the model) -- */

/* LlamaTokenizer's merges: SentencePieceExtractor.extract → generate_merges
 * (vocab) with no scores: every piece (of any type) in id order, each of its
 * splits whose halves are both pieces, left part shortest first */
static cr_status merges_by_id(const cr_allocator *a, const cr_spm_model *m, cJSON *out, cr_error *err)
{
    piece_ref *by = cr_calloc(a, m->n_pieces + 1, sizeof *by);
    char *buf = NULL;
    size_t cap = 0;
    cr_status s = CR_OK;
    if (!by) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < m->n_pieces; i++) by[i] = (piece_ref){ m->pieces[i].text, 0, i };
    qsort(by, m->n_pieces, sizeof *by, cmp_text);
    for (uint32_t i = 0; i < m->n_pieces && !s; i++)
        s = add_splits(a, by, m->n_pieces, m->pieces[i].text, &buf, &cap, out, err);
    cr_free(a, by);
    cr_free(a, buf);
    return s;
}

/* the tokenizer_config.json keys LlamaTokenizer's conversion honours */
typedef struct llama_opts {
    const char *tok[3];             /* unk, bos, eos texts */
    bool add_bos, add_eos, legacy, prefix, clean, sysprompt;
    const cJSON *add_prefix_space;  /* bool or null, written back */
    const cJSON *max_len;           /* number, or NULL: VERY_LARGE_INTEGER */
    bool pad_null, sp_kwargs;       /* "pad_token": null, "sp_model_kwargs": {} given */
    const char *padding_side;
} llama_opts;

/* a special token: a string, or an AddedToken with the flags transformers'
 * conversion keeps as they are for these (none stripped, not normalized) */
static const char *token_text(const cJSON *v)
{
    if (cJSON_IsString(v)) return v->valuestring;
    if (!cJSON_IsObject(v)) return NULL;
    const char *content = NULL;
    for (const cJSON *f = v->child; f; f = f->next) {
        if (!strcmp(f->string, "__type")) {
            if (!cJSON_IsString(f) || strcmp(f->valuestring, "AddedToken")) return NULL;
        } else if (!strcmp(f->string, "content")) {
            if (!cJSON_IsString(f)) return NULL;
            content = f->valuestring;
        } else if (!strcmp(f->string, "lstrip") || !strcmp(f->string, "rstrip") ||
                   !strcmp(f->string, "single_word") || !strcmp(f->string, "normalized")) {
            if (!cJSON_IsFalse(f)) return NULL;
        } else if (!strcmp(f->string, "special")) {
            if (!cJSON_IsBool(f)) return NULL;
        } else {
            return NULL;
        }
    }
    return content;
}

static cr_status llama_options(const cJSON *tc, const char *ref, const char *path, llama_opts *o, cr_error *err)
{
    *o = (llama_opts){ .tok = { "<unk>", "<s>", "</s>" }, .prefix = true };
    static const char *const roles[] = { "unk_token", "bos_token", "eos_token" };
    for (const cJSON *f = tc->child; f; f = f->next) {
        const char *k = f->string;
        bool ok = true;
        int r = -1;
        for (int i = 0; i < 3; i++)
            if (!strcmp(k, roles[i])) r = i;
        if (r >= 0) ok = (o->tok[r] = token_text(f)) != NULL;
        else if (!strcmp(k, "tokenizer_class")) ok = cJSON_IsString(f);
        else if (!strcmp(k, "add_bos_token")) ok = cJSON_IsBool(f), o->add_bos = cJSON_IsTrue(f);
        else if (!strcmp(k, "add_eos_token")) ok = cJSON_IsBool(f), o->add_eos = cJSON_IsTrue(f);
        else if (!strcmp(k, "legacy")) ok = cJSON_IsBool(f), o->legacy = cJSON_IsTrue(f);
        else if (!strcmp(k, "clean_up_tokenization_spaces")) ok = cJSON_IsBool(f), o->clean = cJSON_IsTrue(f);
        else if (!strcmp(k, "use_default_system_prompt")) ok = cJSON_IsBool(f), o->sysprompt = cJSON_IsTrue(f);
        else if (!strcmp(k, "add_prefix_space")) {
            ok = cJSON_IsBool(f) || cJSON_IsNull(f);
            o->add_prefix_space = f;
            o->prefix = !cJSON_IsFalse(f);
        } else if (!strcmp(k, "model_max_length")) {
            /* an integer, written back as Python writes it */
            ok = cJSON_IsNumber(f) && f->valuedouble >= 0 &&
                 (f->valuedouble >= 1e30 || (f->valuedouble < 9007199254740992.0 &&
                                             f->valuedouble == (double)(long long)f->valuedouble));
            o->max_len = f;
        } else if (!strcmp(k, "pad_token")) ok = o->pad_null = cJSON_IsNull(f);
        else if (!strcmp(k, "sp_model_kwargs")) ok = o->sp_kwargs = cJSON_IsObject(f) && !f->child;
        else if (!strcmp(k, "padding_side")) {
            ok = cJSON_IsString(f) && (!strcmp(f->valuestring, "left") || !strcmp(f->valuestring, "right"));
            o->padding_side = f->valuestring;
        } else {
            return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: %s: key '%s' is not one crucible reproduces for a "
                           "tokenizer.model converted by LlamaTokenizer: not supported yet", ref, path, k);
        }
        if (!ok)
            return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: %s: this value of key '%s' is not one crucible reproduces "
                           "for a tokenizer.model converted by LlamaTokenizer: not supported yet", ref, path, k);
    }
    return CR_OK;
}

static void add_token(cJSON *added, double id, const char *text, bool special)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddItemToArray(added, e);
    cJSON_AddNumberToObject(e, "id", id);
    cJSON_AddStringToObject(e, "content", text);
    cJSON_AddFalseToObject(e, "single_word");
    cJSON_AddFalseToObject(e, "lstrip");
    cJSON_AddFalseToObject(e, "rstrip");
    cJSON_AddFalseToObject(e, "normalized");
    cJSON_AddBoolToObject(e, "special", special);
}

static cJSON *special_item(const char *id, int type_id) { return template_item("SpecialToken", id, type_id); }

/* LlamaTokenizer.__init__ on the extracted vocabulary and merges: BPE
 * (no unk_token, fuse_unk, byte_fallback always), no normalizer, one
 * Metaspace pre-tokenizer (prepend "first" unless legacy, "never" without
 * a prefix space), the decoder with Strip only with a prefix space; then
 * TokenizersBackend.__init__: the special tokens (a text that is no piece
 * gets the next id, in unk/bos/eos order) and the control and user-defined
 * pieces (extract's additional_special_tokens; user-defined ones not
 * special) as added tokens, and update_post_processor with add_bos/add_eos */
static cr_status build_llama(const cr_allocator *a, const cr_spm_model *m, const llama_opts *o, cJSON **tok,
                             cJSON **cfg, cr_error *err)
{
    cJSON *j = cJSON_CreateObject(), *c = cJSON_CreateObject();
    *tok = j;
    *cfg = c;
    if (!j || !c) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    double role_id[3];
    uint32_t next = m->n_pieces;
    bool *is_role = cr_calloc(a, m->n_pieces + 1, sizeof *is_role);
    if (!is_role) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (int r = 0; r < 3; r++) {
        uint32_t i = 0;
        while (i < m->n_pieces && strcmp(m->pieces[i].text, o->tok[r])) i++;
        role_id[r] = -1;
        for (int q = 0; q < r; q++)
            if (!strcmp(o->tok[q], o->tok[r])) role_id[r] = role_id[q];
        if (role_id[r] >= 0) continue;
        if (i < m->n_pieces) is_role[i] = true, role_id[r] = i;
        else role_id[r] = next++;
    }
    cJSON_AddStringToObject(j, "version", "1.0");
    cJSON_AddNullToObject(j, "truncation");
    cJSON_AddNullToObject(j, "padding");
    cJSON *added = cJSON_AddArrayToObject(j, "added_tokens"), *extra = cJSON_CreateArray();
    for (uint32_t i = 0; i < m->n_pieces; i++) {
        int t = m->pieces[i].type;
        bool x = t == CR_SPM_CONTROL || t == CR_SPM_USER_DEFINED;
        if (x) cJSON_AddItemToArray(extra, cJSON_CreateString(m->pieces[i].text));
        if (x || is_role[i]) add_token(added, i, m->pieces[i].text, is_role[i] || t == CR_SPM_CONTROL);
    }
    cr_free(a, is_role);
    for (uint32_t id = m->n_pieces; id < next; id++)
        for (int r = 0; r < 3; r++)
            if (role_id[r] == id) { add_token(added, id, o->tok[r], true); break; }
    cJSON_AddNullToObject(j, "normalizer");
    cJSON *ms = typed("Metaspace");
    cJSON_AddStringToObject(ms, "replacement", "\xe2\x96\x81");
    cJSON_AddStringToObject(ms, "prepend_scheme", !o->prefix ? "never" : o->legacy ? "always" : "first");
    cJSON_AddFalseToObject(ms, "split");
    cJSON_AddItemToObject(j, "pre_tokenizer", ms);
    /* "[bos:0 ]$A:0[ eos:0]" and the pair "single[ bos:1] $B:1[ eos:1]" */
    cJSON *pp = typed("TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(pp, "single"), *pair = cJSON_AddArrayToObject(pp, "pair");
    const char *bos = o->tok[1], *eos = o->tok[2];
    if (o->add_bos) cJSON_AddItemToArray(single, special_item(bos, 0));
    cJSON_AddItemToArray(single, seq_item("A", 0));
    if (o->add_eos) cJSON_AddItemToArray(single, special_item(eos, 0));
    for (int t = 0; t < 2; t++) {
        if (o->add_bos) cJSON_AddItemToArray(pair, special_item(bos, t));
        cJSON_AddItemToArray(pair, seq_item(t ? "B" : "A", t));
        if (o->add_eos) cJSON_AddItemToArray(pair, special_item(eos, t));
    }
    /* a map: tokenizers writes it sorted by key */
    cJSON *st = cJSON_AddObjectToObject(pp, "special_tokens");
    const char *keys[2];
    double kid[2];
    int nk = 0;
    if (o->add_bos) keys[nk] = bos, kid[nk++] = role_id[1];
    if (o->add_eos && !(nk && !strcmp(keys[0], eos))) keys[nk] = eos, kid[nk++] = role_id[2];
    if (nk == 2 && strcmp(keys[0], keys[1]) > 0) {
        const char *tk = keys[0];
        double ti = kid[0];
        keys[0] = keys[1], kid[0] = kid[1], keys[1] = tk, kid[1] = ti;
    }
    for (int i = 0; i < nk; i++) {
        cJSON *e = cJSON_AddObjectToObject(st, keys[i]);
        cJSON_AddStringToObject(e, "id", keys[i]);
        cJSON *ids = cJSON_AddArrayToObject(e, "ids"), *tks = cJSON_AddArrayToObject(e, "tokens");
        cJSON_AddItemToArray(ids, cJSON_CreateNumber(kid[i]));
        cJSON_AddItemToArray(tks, cJSON_CreateString(keys[i]));
    }
    cJSON_AddItemToObject(j, "post_processor", pp);
    cJSON *dec = typed("Sequence"), *dl = cJSON_AddArrayToObject(dec, "decoders");
    cJSON_AddItemToObject(j, "decoder", dec);
    cJSON_AddItemToArray(dl, replace("String", "\xe2\x96\x81", " "));
    cJSON_AddItemToArray(dl, typed("ByteFallback"));
    cJSON_AddItemToArray(dl, typed("Fuse"));
    if (o->prefix) {
        cJSON *sp = typed("Strip");
        cJSON_AddStringToObject(sp, "content", " ");
        cJSON_AddNumberToObject(sp, "start", 1);
        cJSON_AddNumberToObject(sp, "stop", 0);
        cJSON_AddItemToArray(dl, sp);
    }
    cJSON *mo = typed("BPE");
    cJSON_AddItemToObject(j, "model", mo);
    cJSON_AddNullToObject(mo, "dropout");
    cJSON_AddNullToObject(mo, "unk_token");
    cJSON_AddNullToObject(mo, "continuing_subword_prefix");
    cJSON_AddNullToObject(mo, "end_of_word_suffix");
    cJSON_AddTrueToObject(mo, "fuse_unk");
    cJSON_AddTrueToObject(mo, "byte_fallback");
    cJSON_AddFalseToObject(mo, "ignore_merges");
    cJSON *vocab = cJSON_AddObjectToObject(mo, "vocab");
    for (uint32_t i = 0; i < m->n_pieces; i++) cJSON_AddNumberToObject(vocab, m->pieces[i].text, i);
    cJSON *mg = cJSON_AddArrayToObject(mo, "merges");
    cr_status s = mg ? merges_by_id(a, m, mg, err) : cr_fail(err, CR_ERR_NOMEM, "out of memory");
    if (s) { cJSON_Delete(extra); return s; }
    /* tokenizer_config.json: init_kwargs (add_bos/add_eos_token dropped,
     * legacy not kept), keys sorted */
    if (o->add_prefix_space) cJSON_AddItemToObject(c, "add_prefix_space", cJSON_Duplicate(o->add_prefix_space, 0));
    else cJSON_AddNullToObject(c, "add_prefix_space");
    cJSON_AddStringToObject(c, "backend", "tokenizers");
    cJSON_AddStringToObject(c, "bos_token", bos);
    cJSON_AddBoolToObject(c, "clean_up_tokenization_spaces", o->clean);
    cJSON_AddStringToObject(c, "eos_token", eos);
    cJSON_AddItemToObject(c, "extra_special_tokens", extra);
    cJSON_AddTrueToObject(c, "is_local");
    cJSON_AddFalseToObject(c, "local_files_only");
    if (o->max_len && o->max_len->valuedouble < 1e30) {
        char nb[32];
        snprintf(nb, sizeof nb, "%.0f", o->max_len->valuedouble);
        cJSON_AddRawToObject(c, "model_max_length", nb);
    } else {
        cJSON_AddRawToObject(c, "model_max_length", "1000000000000000019884624838656");
    }
    if (o->pad_null) cJSON_AddNullToObject(c, "pad_token");
    if (o->padding_side) cJSON_AddStringToObject(c, "padding_side", o->padding_side);
    if (o->sp_kwargs) cJSON_AddObjectToObject(c, "sp_model_kwargs");
    cJSON_AddStringToObject(c, "tokenizer_class", "LlamaTokenizer");
    cJSON_AddStringToObject(c, "unk_token", o->tok[0]);
    cJSON_AddBoolToObject(c, "use_default_system_prompt", o->sysprompt);
    return CR_OK;
}

/* ---- GPT-2 style vocab.json + merges.txt ---------------------------------------- */

typedef struct vocab_ref { const char *text; double id; } vocab_ref;

static int cmp_vid(const void *x, const void *y)
{
    const vocab_ref *a = x, *b = y;
    return a->id < b->id ? -1 : a->id > b->id;
}

static cJSON *bytelevel(bool add_prefix_space)
{
    cJSON *o = typed("ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", add_prefix_space);
    cJSON_AddTrueToObject(o, "trim_offsets");
    cJSON_AddTrueToObject(o, "use_regex");
    return o;
}

/* GPT2Tokenizer.__init__ with its defaults: BPE(vocab, merges,
 * continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False),
 * ByteLevel pre-tokenizer (no prefix space) and decoder; unk, bos and eos
 * "<|endoftext|>" (an added token: its vocabulary id, else the next id) */
static cr_status build_gpt2(const cr_allocator *a, const char *dir, const char *ref, cJSON **tok, cJSON **cfg,
                            cr_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    cJSON *vj;
    cr_status s = cr_json_read_object(a, path, SPM_BYTES_LIMIT, &vj, err);
    if (s) return s;
    int nv = cJSON_GetArraySize(vj);
    vocab_ref *by = cr_calloc(a, (size_t)nv + 1, sizeof *by);
    char *mtext = NULL;
    size_t mlen = 0;
    cJSON *j = NULL, *c = NULL;
    if (!by) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
    int k = 0;
    for (const cJSON *v = vj->child; v; v = v->next) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 2147483647.0 ||
            v->valuedouble != (double)(long long)v->valuedouble) {
            s = cr_fail(err, CR_ERR_FORMAT, "%s: token '%s' has no integer id", path, v->string);
            goto out;
        }
        by[k++] = (vocab_ref){ v->string, v->valuedouble };
    }
    /* tokenizers writes the vocabulary by id */
    qsort(by, (size_t)nv, sizeof *by, cmp_vid);
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    if ((s = cr_file_read(a, path, SPM_BYTES_LIMIT, "merges.txt", &mtext, &mlen, err))) goto out;
    j = cJSON_CreateObject();
    c = cJSON_CreateObject();
    if (!j || !c) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
    static const char eot[] = "<|endoftext|>";
    const cJSON *eid = cJSON_GetObjectItemCaseSensitive(vj, eot);
    double max_id = nv ? by[nv - 1].id : -1;
    cJSON_AddStringToObject(j, "version", "1.0");
    cJSON_AddNullToObject(j, "truncation");
    cJSON_AddNullToObject(j, "padding");
    cJSON *added = cJSON_AddArrayToObject(j, "added_tokens"), *e = cJSON_CreateObject();
    cJSON_AddItemToArray(added, e);
    cJSON_AddNumberToObject(e, "id", eid ? eid->valuedouble : max_id + 1);
    cJSON_AddStringToObject(e, "content", eot);
    cJSON_AddFalseToObject(e, "single_word");
    cJSON_AddFalseToObject(e, "lstrip");
    cJSON_AddFalseToObject(e, "rstrip");
    cJSON_AddFalseToObject(e, "normalized");
    cJSON_AddTrueToObject(e, "special");
    cJSON_AddNullToObject(j, "normalizer");
    cJSON_AddItemToObject(j, "pre_tokenizer", bytelevel(false));
    cJSON *pp = typed("TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(pp, "single"), *pair = cJSON_AddArrayToObject(pp, "pair");
    cJSON_AddItemToArray(single, seq_item("A", 0));
    cJSON_AddItemToArray(pair, seq_item("A", 0));
    cJSON_AddItemToArray(pair, seq_item("B", 1));
    cJSON_AddObjectToObject(pp, "special_tokens");
    cJSON_AddItemToObject(j, "post_processor", pp);
    cJSON_AddItemToObject(j, "decoder", bytelevel(true));
    cJSON *mo = typed("BPE");
    cJSON_AddItemToObject(j, "model", mo);
    cJSON_AddNullToObject(mo, "dropout");
    cJSON_AddNullToObject(mo, "unk_token");
    cJSON_AddStringToObject(mo, "continuing_subword_prefix", "");
    cJSON_AddStringToObject(mo, "end_of_word_suffix", "");
    cJSON_AddFalseToObject(mo, "fuse_unk");
    cJSON_AddFalseToObject(mo, "byte_fallback");
    cJSON_AddFalseToObject(mo, "ignore_merges");
    cJSON *vocab = cJSON_AddObjectToObject(mo, "vocab");
    for (int i = 0; i < nv; i++) cJSON_AddNumberToObject(vocab, by[i].text, by[i].id);
    cJSON *mg = cJSON_AddArrayToObject(mo, "merges");
    /* merges.txt as tokenizers reads it: "#version" lines skipped, every
     * other line exactly two parts split on one space, both in the vocabulary */
    size_t line = 0;
    for (char *p = mtext; p < mtext + mlen && !s;) {
        char *nl = memchr(p, '\n', (size_t)(mtext + mlen - p)), *end = nl ? nl : mtext + mlen;
        line++;
        if (end > p && end[-1] == '\r') end[-1] = 0;
        *end = 0;
        if (strncmp(p, "#version", 8)) {
            char *sp = strchr(p, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                s = cr_fail(err, CR_ERR_FORMAT, "%s:%zu: a merge is two tokens separated by one space", path, line);
                break;
            }
            *sp = 0;
            if (!cJSON_GetObjectItemCaseSensitive(vj, p) || !cJSON_GetObjectItemCaseSensitive(vj, sp + 1)) {
                s = cr_fail(err, CR_ERR_FORMAT, "%s:%zu: merge '%s %s' names a token that vocab.json lacks", path, line,
                            p, sp + 1);
                break;
            }
            cJSON *pr = cJSON_CreateArray();
            cJSON_AddItemToArray(mg, pr);
            cJSON_AddItemToArray(pr, cJSON_CreateString(p));
            cJSON_AddItemToArray(pr, cJSON_CreateString(sp + 1));
        }
        p = end + 1;
    }
    if (s) goto out;
    (void)ref;
    cJSON_AddFalseToObject(c, "add_prefix_space");
    cJSON_AddStringToObject(c, "backend", "tokenizers");
    cJSON_AddStringToObject(c, "bos_token", eot);
    cJSON_AddStringToObject(c, "eos_token", eot);
    cJSON_AddStringToObject(c, "errors", "replace");
    cJSON_AddTrueToObject(c, "is_local");
    cJSON_AddFalseToObject(c, "local_files_only");
    cJSON_AddRawToObject(c, "model_max_length", "1000000000000000019884624838656");
    cJSON_AddNullToObject(c, "pad_token");
    cJSON_AddStringToObject(c, "tokenizer_class", "GPT2Tokenizer");
    cJSON_AddStringToObject(c, "unk_token", eot);
out:
    cJSON_Delete(vj);
    cr_free(a, by);
    cr_free(a, mtext);
    if (s) { cJSON_Delete(j); cJSON_Delete(c); j = c = NULL; }
    *tok = j;
    *cfg = c;
    return s;
}

/* model types transformers 5.25 maps to GPT2Tokenizer */
static bool gpt2_class(const char *model_type)
{
    static const char *const types[] = { "gpt2", "gpt_neo", "gptj", "phi", "starcoder2", "codegen" };
    for (size_t i = 0; model_type && i < sizeof types / sizeof *types; i++)
        if (!strcmp(model_type, types[i])) return true;
    return false;
}

/* model types transformers 5.25 maps to TokenizersBackend (no class of
 * their own; the list formats/hfdir.c keeps for the re-save fallback) */
static bool plain_backend(const char *model_type)
{
    static const char *const plain[] = { "llama", "mistral", "mixtral", "olmo2", "stablelm",
                                         "deepseek_v3", "granite", "exaone", "llama4" };
    for (size_t i = 0; model_type && i < sizeof plain / sizeof *plain; i++)
        if (!strcmp(model_type, plain[i])) return true;
    return false;
}

cr_status cr_tokslow_convert(const cr_allocator *a, const char *dir, const char *ref, const char *model_type,
                             cJSON **tok, cJSON **cfg, cr_error *err)
{
    *tok = *cfg = NULL;
    cr_tokslow_kind k = cr_tokslow_kind_of(dir);
    if (k == CR_TOKSLOW_NONE) return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: no slow tokenizer to convert", ref);
    const char *file = k == CR_TOKSLOW_SPM ? "a SentencePiece tokenizer.model" : "GPT-2-style vocab.json + merges.txt";
    bool with_cfg = has(dir, "tokenizer_config.json");
    /* a model that is none of the inputs (a tokenizer source) was not
     * opened: its config.json says */
    char path[4096];
    cJSON *conf = NULL;
    if (!model_type) {
        cr_error e2 = { 0 };
        snprintf(path, sizeof path, "%s/config.json", dir);
        if (!cr_json_read_object(a, path, 1u << 24, &conf, &e2))
            model_type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(conf, "model_type"));
    }
    bool ok = k == CR_TOKSLOW_SPM ? plain_backend(model_type) : gpt2_class(model_type);
    char mt[64];
    snprintf(mt, sizeof mt, "%s", model_type ? model_type : "?");
    cJSON_Delete(conf);
    if (!ok)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: its tokenizer is %s without tokenizer.json, and transformers "
                       "builds model type '%s' from it in a way crucible does not convert: not supported yet", ref,
                       file, mt);
    /* with a tokenizer_config.json, AutoTokenizer builds its
     * tokenizer_class; crucible reproduces LlamaTokenizer(Fast) for a llama
     * (other model types map the class elsewhere: mistral's is a plain
     * TokenizersBackend that still reads the config) */
    cJSON *tc = NULL;
    llama_opts lo;
    if (with_cfg) {
        snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
        cr_status s = cr_json_read_object(a, path, 1u << 24, &tc, err);
        if (s) return s;
        const char *cls = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tc, "tokenizer_class"));
        if (k != CR_TOKSLOW_SPM || strcmp(mt, "llama") || !cls ||
            (strcmp(cls, "LlamaTokenizer") && strcmp(cls, "LlamaTokenizerFast"))) {
            s = cr_fail(err, CR_ERR_UNSUPPORTED, "%s: its tokenizer is %s with a tokenizer_config.json and no "
                        "tokenizer.json (%s: tokenizer_class %s, model type '%s'); crucible converts that only for "
                        "tokenizer_class LlamaTokenizer or LlamaTokenizerFast of a llama SentencePiece model: not "
                        "supported yet", ref, file, path, cls ? cls : "unset", mt);
        } else {
            s = llama_options(tc, ref, path, &lo, err);
        }
        if (s) { cJSON_Delete(tc); return s; }
    }
    if (k == CR_TOKSLOW_BPE_FILES) return build_gpt2(a, dir, ref, tok, cfg, err);
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    char *raw;
    size_t len;
    cr_status s = cr_file_read(a, path, SPM_BYTES_LIMIT, "tokenizer.model", &raw, &len, err);
    if (s) { cJSON_Delete(tc); return s; }
    cr_spm_model m;
    s = cr_spm_parse(a, (const uint8_t *)raw, len, path, &m, err);
    cr_free(a, raw);
    if (s) { cJSON_Delete(tc); return s; }
    if (m.spec.model_type != 2)
        s = cr_fail(err, CR_ERR_UNSUPPORTED, "%s: %s is a SentencePiece %s model; crucible converts BPE models only "
                    "(as llama and mistral ship): not supported yet", ref, path,
                    m.spec.model_type == 1 ? "Unigram" : "word/char");
    else if (tc)
        s = build_llama(a, &m, &lo, tok, cfg, err);
    else
        s = build(a, &m, path, tok, cfg, err);
    cJSON_Delete(tc);     /* lo points into it: used above */
    cr_spm_free(&m);
    if (s) {
        cJSON_Delete(*tok);
        cJSON_Delete(*cfg);
        *tok = *cfg = NULL;
    }
    return s;
}

/* ---- printing ---------------------------------------------------------------- */

static void indent(cr_sbuf *b, int d)
{
    cr_sbuf_add(b, "\n", 1);
    for (int i = 0; i < d; i++) cr_sbuf_add(b, "  ", 2);
}

static void print(cr_sbuf *b, const cJSON *j, int d)
{
    if (cJSON_IsRaw(j)) { cr_sbuf_adds(b, j->valuestring); return; }
    if (cJSON_IsNull(j)) { cr_sbuf_adds(b, "null"); return; }
    if (cJSON_IsTrue(j)) { cr_sbuf_adds(b, "true"); return; }
    if (cJSON_IsFalse(j)) { cr_sbuf_adds(b, "false"); return; }
    if (cJSON_IsNumber(j)) { cr_json_add_number(b, j->valuedouble); return; }
    if (cJSON_IsString(j)) { cr_json_add_string(b, j->valuestring, strlen(j->valuestring), false); return; }
    bool obj = cJSON_IsObject(j);
    if (!j->child) { cr_sbuf_adds(b, obj ? "{}" : "[]"); return; }
    cr_sbuf_add(b, obj ? "{" : "[", 1);
    for (const cJSON *c = j->child; c; c = c->next) {
        indent(b, d + 1);
        if (obj) {
            cr_json_add_string(b, c->string, strlen(c->string), false);
            cr_sbuf_add(b, ": ", 2);
        }
        print(b, c, d + 1);
        if (c->next) cr_sbuf_add(b, ",", 1);
    }
    indent(b, d);
    cr_sbuf_add(b, obj ? "}" : "]", 1);
}

void cr_tokslow_print(cr_sbuf *b, const cJSON *j, bool newline)
{
    print(b, j, 0);
    if (newline) cr_sbuf_add(b, "\n", 1);
}

cr_status cr_tokslow_resave(const cr_allocator *a, const char *dir, const char *ref, const char *model_type, bool moe,
                            char **tok_text, size_t *tok_len, char **cfg_text, size_t *cfg_len, cr_error *err)
{
    *tok_text = *cfg_text = NULL;
    cJSON *tok, *cfg;
    cr_status s = cr_tokslow_convert(a, dir, ref, model_type, &tok, &cfg, err);
    if (s) return s;
    if (moe) {
        /* tokenizer.pad_token_id = bos_token_id; else pad_token = eos_token */
        const char *pad = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cfg, "bos_token"));
        if (!pad) pad = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cfg, "eos_token"));
        /* padding_side = "left" is written where it is an init argument
         * (LlamaTokenizer's config gave one); a pad_token given (null) is
         * replaced in place */
        if (cJSON_GetObjectItemCaseSensitive(cfg, "padding_side") &&
            !cJSON_ReplaceItemInObjectCaseSensitive(cfg, "padding_side", cJSON_CreateString("left")))
            s = cr_fail(err, CR_ERR_NOMEM, "out of memory");
        if (pad && cJSON_GetObjectItemCaseSensitive(cfg, "pad_token")) {
            if (!s && !cJSON_ReplaceItemInObjectCaseSensitive(cfg, "pad_token", cJSON_CreateString(pad)))
                s = cr_fail(err, CR_ERR_NOMEM, "out of memory");
        } else if (pad && !s) {
            cJSON *after = cfg->child;
            while (after && strcmp(after->string, "pad_token") < 0) after = after->next;
            cJSON *v = cJSON_AddStringToObject(cfg, "pad_token", pad);     /* appended with its key */
            if (!v) {
                s = cr_fail(err, CR_ERR_NOMEM, "out of memory");
            } else if (after) {
                /* moved before the first key that sorts after it (cJSON keeps
                 * child->prev as the last item) */
                cJSON_DetachItemViaPointer(cfg, v);
                v->next = after;
                v->prev = after->prev;
                if (after == cfg->child) cfg->child = v;
                else after->prev->next = v;
                after->prev = v;
            }
        }
    }
    cr_sbuf b;
    cr_sbuf_init(&b, a);
    if (!s) {
        cr_tokslow_print(&b, tok, false);
        if (!(*tok_text = cr_sbuf_take(&b, tok_len))) s = cr_fail(err, CR_ERR_NOMEM, "out of memory");
    }
    if (!s) {
        cr_tokslow_print(&b, cfg, true);
        if (!(*cfg_text = cr_sbuf_take(&b, cfg_len))) s = cr_fail(err, CR_ERR_NOMEM, "out of memory");
    }
    cJSON_Delete(tok);
    cJSON_Delete(cfg);
    if (s) {
        cr_free(a, *tok_text);
        *tok_text = NULL;
    }
    return s;
}
