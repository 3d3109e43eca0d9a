/* tokmerge.c — the vocabulary side of mergekit 0.1.5's tokenizer merge
 * (tokenizer/build.py; spec/tokenizer-merge.md §1, §5.2), read from each
 * input's tokenizer.json / tokenizer_config.json / config.json with cJSON.
 *
 * `get_vocab()` is the tokenizer.json `model.vocab` map with the added
 * tokens over it; transformers also registers the special tokens named in
 * tokenizer_config.json as added tokens, which decides where they fall in
 * the union (§1.4). mergekit iterates get_vocab() in Rust HashMap order and
 * its models in Python set order, so its union ids change from run to run;
 * crucible fixes the order to models in recipe order (base first), tokens
 * by ascending id, which is one of mergekit's outputs (the goldens pin
 * mergekit to it: tests/golden/gen_tokmerge.py).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hash.h"
#include "infile.h"
#include "limits.h"
#include "config.h"
#include "tokmerge.h"
#include "tokslow.h"
#include "tokstage.h"

/* ---- a string -> int map (open addressing; keys are borrowed) ---------- */

typedef struct smap { const char **key; int32_t *val; uint32_t cap; } smap;

static bool smap_init(const cr_allocator *a, smap *m, size_t n)
{
    uint32_t cap = 16;
    while (cap < 2 * n + 16) cap *= 2;
    m->cap = cap;
    m->key = cr_calloc(a, cap, sizeof *m->key);
    m->val = cr_calloc(a, cap, sizeof *m->val);
    return m->key && m->val;
}

static void smap_free(const cr_allocator *a, smap *m)
{
    cr_free(a, m->key);
    cr_free(a, m->val);
    m->key = NULL;
    m->val = NULL;
}

static uint32_t smap_slot(const smap *m, const char *k)
{
    uint32_t i = (uint32_t)cr_xxh64(k, strlen(k), 0) & (m->cap - 1);
    while (m->key[i] && strcmp(m->key[i], k)) i = (i + 1) & (m->cap - 1);
    return i;
}

static int32_t *smap_get(const smap *m, const char *k)
{
    uint32_t i = smap_slot(m, k);
    return m->key[i] ? &m->val[i] : NULL;
}

/* the caller sized the map for every key it puts */
static void smap_put(smap *m, const char *k, int32_t v)
{
    uint32_t i = smap_slot(m, k);
    m->key[i] = k;
    m->val[i] = v;
}

/* ---- one model's tokenizer ------------------------------------------------ */

typedef struct tm_ent { const char *text; int32_t id; const cJSON *item; } tm_ent;

typedef struct tm_tok {
    bool loaded;
    cJSON *json, *cfg;
    tm_ent *ent;                /* get_vocab(): one entry per text */
    uint32_t n_ent;
    smap map;                   /* text -> index in ent */
    tm_ent *added;              /* added tokens (and registered specials), by id */
    uint32_t n_added;
    long long n_model;          /* len(model.vocab): transformers' tokenizer.vocab_size */
    long long V;                /* config vocab size, -1 unknown */
    bool converted;             /* json/cfg converted from a slow tokenizer (formats/tokslow.c) */
} tm_tok;

static void tok_free(const cr_allocator *a, tm_tok *t)
{
    cJSON_Delete(t->json);
    cJSON_Delete(t->cfg);
    cr_free(a, t->ent);
    cr_free(a, t->added);
    smap_free(a, &t->map);
    memset(t, 0, sizeof *t);
}

static int ent_by_id(const void *x, const void *y)
{
    const tm_ent *a = x, *b = y;
    if (a->id != b->id) return a->id < b->id ? -1 : 1;
    return strcmp(a->text, b->text);
}

/* text -> id, appending a new text */
static void ent_set(tm_tok *t, const char *text, int32_t id)
{
    int32_t *e = smap_get(&t->map, text);
    if (e) { t->ent[*e].id = id; return; }
    t->ent[t->n_ent] = (tm_ent){ text, id, NULL };
    smap_put(&t->map, text, (int32_t)t->n_ent++);
}

static const char *special_text(const cJSON *v)
{
    if (cJSON_IsString(v)) return v->valuestring;
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "content"));
}

/* get_vocab() of model m's tokenizer: a directory's files, or what an
 * earlier stage's directory holds (compiler/tokstage.h); the base stripped
 * to its config vocab_size when `strip` */
static cr_status load_tok(const cr_allocator *a, const cr_plan *plan, const cr_tokstage *stages,
                          const cr_plan_model *m, bool strip, cr_mk_version mk, tm_tok *t, cr_error *err)
{
    const char *where = m->path ? m->path : m->ref;
    cr_status s = cr_tokstage_model(a, plan, stages, m, &t->json, &t->cfg, &t->V, &t->converted, err);
    if (s) return s;
    /* transformers 4.57 (mergekit 0.1.4) converts a slow tokenizer with its
     * own converters and slow-tokenizer classes, not reproduced */
    if (t->converted && mk == CR_MK_0_1_4)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s has only a slow tokenizer (tokenizer.model, or vocab.json + "
                       "merges.txt): converting it as transformers 4 does is not supported yet under "
                       "--mergekit-version 0.1.4 (--mergekit-version 0.1.5 converts it as transformers 5 does)",
                       m->ref);
    cJSON *model = cJSON_GetObjectItemCaseSensitive(t->json, "model");
    cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    cJSON *added = cJSON_GetObjectItemCaseSensitive(t->json, "added_tokens");
    if (!(cJSON_IsObject(vocab) || cJSON_IsArray(vocab)) || (added && !cJSON_IsArray(added)))
        return cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer merge: %s's tokenizer.json has no model.vocab", m->ref);
    size_t cap = (size_t)cJSON_GetArraySize(vocab) + (size_t)cJSON_GetArraySize(added) + 16;
    t->ent = cr_calloc(a, cap, sizeof *t->ent);
    t->added = cr_calloc(a, cap, sizeof *t->added);
    if (!t->ent || !t->added || !smap_init(a, &t->map, cap)) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    const cJSON *v;
    int32_t idx = 0;
    cJSON_ArrayForEach(v, vocab) {
        /* BPE/WordPiece: {text: id}; Unigram: [[text, score], ...] by id */
        const char *text = cJSON_IsArray(vocab) ? cJSON_GetStringValue(cJSON_GetArrayItem(v, 0)) : v->string;
        double id = cJSON_IsArray(vocab) ? idx : v->valuedouble;
        if (!text || (!cJSON_IsArray(vocab) && !cJSON_IsNumber(v)) || id < 0 || id > INT32_MAX)
            return cr_fail(err, CR_ERR_FORMAT, "%s/tokenizer.json: a bad model.vocab entry", where);
        ent_set(t, text, (int32_t)id);
        idx++;
    }
    t->n_model = t->n_ent;
    cJSON_ArrayForEach(v, added) {
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "content"));
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(v, "id");
        if (!text || !cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > INT32_MAX)
            return cr_fail(err, CR_ERR_FORMAT, "%s/tokenizer.json: an added_tokens entry without content and id", where);
        ent_set(t, text, (int32_t)id->valuedouble);
        t->added[t->n_added++] = (tm_ent){ text, (int32_t)id->valuedouble, v };
    }
    /* transformers registers the special tokens of tokenizer_config.json
     * as added tokens (at their vocabulary ids) */
    static const char *const roles[] = { "bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                                         "cls_token", "mask_token" };
    const char *sp[64];
    size_t n_sp = 0;
    for (size_t i = 0; i < CR_ARRAY_LEN(roles); i++) {
        const char *x = special_text(cJSON_GetObjectItemCaseSensitive(t->cfg, roles[i]));
        if (x) sp[n_sp++] = x;
    }
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(t->cfg, "additional_special_tokens"))
        if (n_sp < CR_ARRAY_LEN(sp) && special_text(v)) sp[n_sp++] = special_text(v);
    for (size_t i = 0; i < n_sp && t->n_added < cap; i++) {
        int32_t *e = smap_get(&t->map, sp[i]);
        if (!e) continue;
        bool have = false;
        for (uint32_t j = 0; j < t->n_added && !have; j++) have = !strcmp(t->added[j].text, sp[i]);
        /* item: an object without flags marks it (special, not normalized) */
        if (!have) t->added[t->n_added++] = (tm_ent){ t->ent[*e].text, t->ent[*e].id, t->cfg };
    }
    qsort(t->added, t->n_added, sizeof *t->added, ent_by_id);
    t->loaded = true;
    if (!strip) return CR_OK;
    /* get_stripped_tokenizer: the base loses every token with id >= V */
    long long V = t->V >= 0 ? t->V : (long long)t->n_ent;
    uint32_t unused = 0;
    for (uint32_t i = 0; i < t->n_ent; i++) unused += t->ent[i].id >= V;
    if (!unused) return CR_OK;
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(model, "type"));
    if (!type || strcmp(type, "BPE"))
        return cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer merge: Tokenizer for %s has type %s, but only BPE is "
                       "currently supported for tokenizer merge (it has %u tokens past vocab_size %lld)", m->ref,
                       type ? type : "?", unused, V);
    /* the tokenizer.json edit: added tokens, vocabulary, merges */
    smap gone;
    if (!smap_init(a, &gone, unused)) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < t->n_ent; i++)
        if (t->ent[i].id >= V) smap_put(&gone, t->ent[i].text, 1);
    for (int i = cJSON_GetArraySize(added) - 1; i >= 0; i--)
        if (cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(added, i), "id")->valuedouble >= (double)V)
            cJSON_DeleteItemFromArray(added, i);
    cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    for (int i = cJSON_GetArraySize(merges) - 1; i >= 0; i--) {
        const cJSON *mg = cJSON_GetArrayItem(merges, i);
        bool drop = false;
        if (cJSON_IsString(mg)) {
            const char *sp1 = strchr(mg->valuestring, ' ');
            if (!sp1 || strchr(sp1 + 1, ' ')) {
                smap_free(a, &gone);
                return cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer merge: %s: Unexpected merge format: '%s'", m->ref,
                               mg->valuestring);
            }
            char left[1024];
            size_t l = (size_t)(sp1 - mg->valuestring);
            if (l >= sizeof left) l = sizeof left - 1;
            memcpy(left, mg->valuestring, l);
            left[l] = 0;
            drop = smap_get(&gone, left) || smap_get(&gone, sp1 + 1);
        } else {
            const cJSON *x;
            cJSON_ArrayForEach(x, mg) if (cJSON_IsString(x) && smap_get(&gone, x->valuestring)) drop = true;
        }
        if (drop) cJSON_DeleteItemFromArray(merges, i);
    }
    smap_free(a, &gone);
    /* the vocabulary: drop the entries (the texts stay alive in the JSON
     * until the vocab keys are deleted: delete those last) */
    uint32_t k = 0, ka = 0;
    for (uint32_t i = 0; i < t->n_ent; i++)
        if (t->ent[i].id < V) t->ent[k++] = t->ent[i];
    for (uint32_t i = 0; i < t->n_added; i++)
        if (t->added[i].id < V) t->added[ka++] = t->added[i];
    t->n_ent = k;
    t->n_added = ka;
    memset(t->map.key, 0, t->map.cap * sizeof *t->map.key);
    for (uint32_t i = 0; i < t->n_ent; i++) smap_put(&t->map, t->ent[i].text, (int32_t)i);
    if (cJSON_IsObject(vocab)) {
        cJSON *x = vocab->child, *nx;
        for (; x; x = nx) {
            nx = x->next;
            if (x->valuedouble >= (double)V) {
                /* the text may be the key of an entry kept through added_tokens: re-point it */
                int32_t *e = smap_get(&t->map, x->string);
                if (e && t->ent[*e].text == x->string) continue;
                cJSON_Delete(cJSON_DetachItemViaPointer(vocab, x));
            }
        }
    }
    return CR_OK;
}

/* ---- the merge ---------------------------------------------------------- */

/* an added_tokens entry for a token appended by add_tokens: a plain text
 * gets AddedToken(special=False, normalized=True); an added token keeps
 * its model's flags (a registered special token: special, not normalized) */
static bool add_entry(cJSON *arr, const char *text, uint32_t id, const cJSON *from)
{
    cJSON *e = cJSON_CreateObject();
    if (!e || !cJSON_AddItemToArray(arr, e)) { cJSON_Delete(e); return false; }
    bool ok = cJSON_AddNumberToObject(e, "id", id) && cJSON_AddStringToObject(e, "content", text);
    static const char *const flags[] = { "single_word", "lstrip", "rstrip", "normalized", "special" };
    for (size_t i = 0; i < CR_ARRAY_LEN(flags) && ok; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(from, flags[i]);
        bool v = from ? cJSON_IsTrue(f) : i == 3;
        if (from && !f) v = i == 4;     /* registered special */
        ok = cJSON_AddBoolToObject(e, flags[i], v) != NULL;
    }
    return ok;
}

static cr_status fail_tok(const cr_plan_model *m, cr_error *err)
{
    char why[512];
    snprintf(why, sizeof why, "%s", err ? err->msg : "?");
    /* the converter's refusals name the model and the file already */
    if (cr_tokslow_kind_of(m->path) != CR_TOKSLOW_NONE)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer merge: %s", why);
    return cr_fail(err, CR_ERR_UNSUPPORTED,
                   "tokenizer merge: cannot read %s's tokenizer (%s)", m->ref, why);
}

/* ids exactly 0..n-1, one text each (mergekit indexes rows by id) */
static cr_status check_ids(const cr_plan_model *m, const tm_tok *t, cr_error *err)
{
    for (uint32_t i = 0; i < t->n_ent; i++)
        if ((uint32_t)t->ent[i].id != i)
            return cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer merge: %s's tokenizer ids are not 0..%u "
                           "(mergekit indexes past the end for a gap): not supported", m->ref, t->n_ent - 1);
    return CR_OK;
}

void cr_tokmerge_free(const cr_allocator *a, cr_tokmerge *t)
{
    if (!t) return;
    cJSON_Delete(t->tok_json);
    cJSON_Delete(t->src_cfg);
    cJSON_Delete(t->added_out);
    cr_arena_free(&t->arena);
    cr_free(a, t);
}

cr_status cr_tokmerge_build(const cr_allocator *a, const cr_plan *plan, uint32_t si, const cr_tokstage *stages,
                            cr_mk_version mk, cr_tokmerge **out, cr_error *err)
{
    *out = NULL;
    uint32_t nm = plan->n_models;
    const cr_plan_stage *st = &plan->stages[si];
    int base = st->base_model >= 0 ? st->base_model : st->donor_model;
    if (base < 0) return cr_fail(err, CR_ERR_CONFIG, "tokenizer merge: the recipe has no model");
    cr_tokmerge *tm = cr_calloc(a, 1, sizeof *tm);
    tm_tok *T = cr_calloc(a, nm + 1, sizeof *T);
    tm_tok srcT = { 0 };
    smap om = { 0 };
    const char **ov = NULL;
    const tm_ent **oa = NULL;
    if (!tm || !T) { cr_free(a, tm); cr_free(a, T); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
    cr_arena_init(&tm->arena, a);
    tm->base = base;
    tm->src_model = base;
    tm->mk = cr_mk_resolve(mk);
    bool v014 = tm->mk == CR_MK_0_1_4;
    cr_status s = CR_OK;
    /* the stage's models (referenced_models()), base first, then in recipe
     * order of first appearance (compiler/frontend.c); a plan from a front
     * end that does not list them: every plan model */
    uint32_t *ord = cr_calloc(a, nm + 1, sizeof *ord), n_ord = 1;
    if (!ord) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
    ord[0] = (uint32_t)base;
    for (uint32_t q = 0; q < (st->n_models ? st->n_models : nm); q++) {
        uint32_t i = st->n_models ? st->models[q] : q;
        if (i != (uint32_t)base && i < nm) ord[n_ord++] = i;
    }
    /* §1.2: the stripped base, every other input as is (one without a
     * readable tokenizer uses the base's vocabulary, as mergekit does) */
    if ((s = load_tok(a, plan, stages, &plan->models[base], true, tm->mk, &T[base], err))) {
        s = fail_tok(&plan->models[base], err);
        goto out;
    }
    for (uint32_t q = 1; q < n_ord; q++) {
        uint32_t i = ord[q];
        cr_error e2 = { 0 };
        if (!load_tok(a, plan, stages, &plan->models[i], false, tm->mk, &T[i], &e2)) continue;
        tok_free(a, &T[i]);
        /* a tokenizer transformers would load some other way (a
         * sentencepiece model, a tokenizer.json crucible cannot read)
         * would give mergekit its vocabulary; only a model with no
         * tokenizer at all falls back to the base's, as in mergekit */
        char path[4096];
        static const char *const other[] = { "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json" };
        /* a slow tokenizer the converter refuses, or a stage output whose
         * directory holds a tokenizer crucible cannot read: refused */
        const cr_tokstage *sd = plan->models[i].stage >= 0 && stages ? &stages[plan->models[i].stage] : NULL;
        if (cr_tokslow_kind_of(plan->models[i].path) != CR_TOKSLOW_NONE || (sd && (sd->written >= 0 || sd->files >= 0))) {
            if (err) *err = e2;
            s = fail_tok(&plan->models[i], err);
            goto out;
        }
        /* a stage whose directory holds no tokenizer: the base's vocabulary */
        for (size_t f = 0; f < CR_ARRAY_LEN(other) && plan->models[i].path; f++) {
            snprintf(path, sizeof path, "%s/%s", plan->models[i].path, other[f]);
            if (!access(path, F_OK)) {
                s = cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer merge: %s has %s but crucible cannot read its "
                            "tokenizer (%s): a tokenizer merge needs every input's tokenizer.json",
                            plan->models[i].ref, other[f], e2.msg);
                goto out;
            }
        }
    }
    /* the output vocabulary: the source's get_vocab(), ids 0..N-1 */
    const char *ts = st->tokenizer_source;
    const tm_tok *src = &T[base];
    int src_model = base, sm_stage = -1;
    if (strcmp(ts, "base") && strcmp(ts, "union")) {
        src_model = -1;
        for (uint32_t q = 0; q < n_ord && src_model < 0; q++)
            if (plan->models[ord[q]].ref && !strcmp(plan->models[ord[q]].ref, ts)) src_model = (int)ord[q];
        /* none of the inputs: mergekit loads its tokenizer all the same
         * (AutoTokenizer, not stripped); its rows come from the inputs'
         * permutations like any other output token's */
        cr_plan_model other = { .ref = ts, .path = st->tokenizer_source_dir, .stage = -1 };
        /* an earlier stage named only as the source: mergekit-multi loads
         * its directory like any model */
        for (uint32_t k = 0; k < si && src_model < 0 && !other.path; k++)
            if (plan->stages[k].name && !strcmp(plan->stages[k].name, ts)) other.stage = (int)k;
        const cr_plan_model *sm = src_model >= 0 ? &plan->models[src_model] : &other;
        if (!sm->path && sm->stage < 0) {
            s = cr_fail(err, CR_ERR_CONFIG, "tokenizer_source '%s' not found (looked in %s): it is none of the "
                        "recipe's models, and crucible never downloads", ts,
                        st->tokenizer_source_tried ? st->tokenizer_source_tried : "?");
            goto out;
        }
        /* loaded afresh, not stripped */
        sm_stage = sm->stage;
        if ((s = load_tok(a, plan, stages, sm, false, tm->mk, &srcT, err))) { s = fail_tok(sm, err); goto out; }
        if ((s = check_ids(sm, &srcT, err))) goto out;
        src = &srcT;
        tm->src_dir = sm->path;
    } else {
        tm->src_dir = plan->models[base].path;
        if ((s = check_ids(&plan->models[base], src, err))) goto out;
    }
    tm->src_model = src_model;
    size_t total = 16 + st->n_tokens;
    for (uint32_t i = 0; i < nm; i++) total += T[i].n_ent;
    total += src->n_ent;
    if (!smap_init(a, &om, total) || !(ov = cr_calloc(a, total, sizeof *ov)) || !(oa = cr_calloc(a, total, sizeof *oa))) {
        s = cr_fail(err, CR_ERR_NOMEM, "out of memory");
        goto out;
    }
    uint32_t n = 0;
    const char **tokens = cr_arena_alloc(&tm->arena, total * sizeof *tokens);
    if (!tokens) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
    for (uint32_t i = 0; i < src->n_ent; i++) {
        tokens[i] = src->ent[i].text;
        smap_put(&om, src->ent[i].text, (int32_t)i);
    }
    n = src->n_ent;
    if (!(tm->added_out = cJSON_CreateArray())) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
    if (!strcmp(ts, "union")) {
        /* build_union_tokenizer: every model's tokens in range (ordered
         * set), and its added tokens in range (first settings win) */
        smap sv, sa;
        uint32_t n_ov = 0, n_oa = 0;
        if (!smap_init(a, &sv, total) || !smap_init(a, &sa, total)) {
            smap_free(a, &sv);
            s = cr_fail(err, CR_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (uint32_t k = 0; k < n_ord; k++) {
            tm_tok *t = &T[ord[k]];
            if (!t->loaded) continue;
            long long Vm = t->V >= 0 ? t->V : t->n_model;
            tm_ent *by = cr_malloc(a, (t->n_ent + 1) * sizeof *by);
            if (!by) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory"); break; }
            memcpy(by, t->ent, t->n_ent * sizeof *by);
            qsort(by, t->n_ent, sizeof *by, ent_by_id);
            for (uint32_t j = 0; j < t->n_ent; j++)
                if (by[j].id < Vm && !smap_get(&sv, by[j].text)) { smap_put(&sv, by[j].text, 1); ov[n_ov++] = by[j].text; }
            cr_free(a, by);
            for (uint32_t j = 0; j < t->n_added; j++)
                if (t->added[j].id < Vm && !smap_get(&sa, t->added[j].text)) {
                    smap_put(&sa, t->added[j].text, 1);
                    oa[n_oa++] = &t->added[j];
                }
        }
        /* add_tokens: new texts take the next ids; a text the vocabulary
         * has keeps its id */
        for (uint32_t j = 0; j < n_ov && !s; j++)
            if (!smap_get(&sa, ov[j]) && !smap_get(&om, ov[j])) {
                smap_put(&om, ov[j], (int32_t)n);
                if (!add_entry(tm->added_out, ov[j], n, NULL)) s = cr_fail(err, CR_ERR_NOMEM, "out of memory");
                tokens[n++] = ov[j];
            }
        for (uint32_t j = 0; j < n_oa && !s; j++)
            if (!smap_get(&om, oa[j]->text)) {
                smap_put(&om, oa[j]->text, (int32_t)n);
                if (!add_entry(tm->added_out, oa[j]->text, n, oa[j]->item)) s = cr_fail(err, CR_ERR_NOMEM, "out of memory");
                tokens[n++] = oa[j]->text;
            }
        smap_free(a, &sv);
        smap_free(a, &sa);
        if (s) goto out;
    }
    /* tokenizer.tokens: a key the vocabulary lacks is added (a plain text).
     * mergekit 0.1.4 calls add_tokens for every key: one the vocabulary
     * has keeps its id but becomes an added token with a plain text's
     * flags (special false, normalized true), an added token included */
    for (uint32_t k = 0; k < st->n_tokens; k++) {
        const char *t = st->tokens[k].token;
        int32_t *have = smap_get(&om, t);
        if (have && v014) {
            /* its entry replaces any earlier one (compiler/tokwrite.c) */
            if (!add_entry(tm->added_out, t, (uint32_t)*have, NULL)) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
            continue;
        }
        if (have || n >= total) continue;
        smap_put(&om, t, (int32_t)n);
        if (!add_entry(tm->added_out, t, n, NULL)) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
        tokens[n++] = t;
    }
    /* the rows `model_token` names: by id, or the text's id in that
     * model's tokenizer (mergekit's original_vocabs: the base stripped) */
    tm->cfg_model = cr_arena_alloc(&tm->arena, ((size_t)st->n_tokens + 1) * sizeof *tm->cfg_model);
    tm->cfg_row = cr_arena_alloc(&tm->arena, ((size_t)st->n_tokens + 1) * sizeof *tm->cfg_row);
    tm->cfg_id = cr_arena_alloc(&tm->arena, ((size_t)st->n_tokens + 1) * sizeof *tm->cfg_id);
    if (!tm->cfg_model || !tm->cfg_row || !tm->cfg_id) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
    for (uint32_t k = 0; k < st->n_tokens; k++) {
        const cr_token_cfg *c = &st->tokens[k];
        tm->cfg_model[k] = -1;
        tm->cfg_row[k] = c->src_id;
        tm->cfg_id[k] = *smap_get(&om, c->token);
        for (uint32_t q = 0; c->model && q < n_ord && tm->cfg_model[k] < 0; q++)
            if (plan->models[ord[q]].ref && !strcmp(plan->models[ord[q]].ref, c->model)) tm->cfg_model[k] = (int)ord[q];
        if (c->kind != CR_TOKSRC_MODEL_TOKEN || !c->src_token || tm->cfg_model[k] < 0) continue;
        const tm_tok *mt = &T[tm->cfg_model[k]];
        int32_t *e = mt->loaded ? smap_get(&mt->map, c->src_token) : NULL;
        if (!e) {
            s = cr_fail(err, CR_ERR_CONFIG, "%s:%d:%d: tokenizer.tokens.%s: Token '%s' not found in model %s",
                        c->loc.file ? c->loc.file : "recipe", c->loc.line, c->loc.col, c->token, c->src_token, c->model);
            goto out;
        }
        tm->cfg_row[k] = mt->ent[*e].id;
    }
    tm->n = n;
    tm->n_added_out = n - src->n_ent;
    tm->n_pad = st->tokenizer_pad > 0 && n % st->tokenizer_pad ? (uint32_t)((n / st->tokenizer_pad + 1) * st->tokenizer_pad) : n;
    /* own copies of the texts (the JSON goes away) */
    tm->tokens = cr_arena_alloc(&tm->arena, (n + 1) * sizeof *tm->tokens);
    tm->perm = cr_arena_alloc(&tm->arena, (nm + 1) * sizeof *tm->perm);
    tm->vocab_size = cr_arena_alloc(&tm->arena, (nm + 1) * sizeof *tm->vocab_size);
    if (!tm->tokens || !tm->perm || !tm->vocab_size) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
    for (uint32_t i = 0; i < n; i++)
        if (!(tm->tokens[i] = cr_arena_strdup(&tm->arena, tokens[i]))) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
    /* §1.5: the permutations */
    tm->identity = !strcmp(ts, "base") || !strcmp(ts, "union") ? tm->n_added_out == 0 : true;
    tm->identity = tm->identity && tm->n_pad == n && !st->n_tokens;
    for (uint32_t i = 0; i < nm; i++) {
        tm->perm[i] = NULL;
        tm->vocab_size[i] = -1;
    }
    for (uint32_t q = 0; q < n_ord && !s; q++) {
        uint32_t i = ord[q];
        const tm_tok *mv = T[i].loaded ? &T[i] : &T[base];
        long long V = T[i].loaded ? T[i].V : -1;
        if (V < 0) {
            long long vs;
            const cr_plan_model *pm = &plan->models[i];
            V = pm->opened && (cr_model_config_int(&pm->model, "vocab_size", &vs) ||
                               cr_model_config_int(&pm->model, "text_config.vocab_size", &vs)) ? vs
              : pm->stage >= 0 && stages && stages[pm->stage].vocab_size >= 0 ? stages[pm->stage].vocab_size
              : mv->n_ent;
        }
        tm->vocab_size[i] = V;
        int32_t *p = tm->perm[i] = cr_arena_alloc(&tm->arena, ((size_t)n + 1) * sizeof *p);
        if (!p) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory"); break; }
        if (V != n) tm->identity = false;
        /* `source: base` adds the tokens: keys to the base's own tokenizer
         * object, so the base then has them at their new ids (its padding
         * rows, or mergekit's KeyError past its vocab_size) */
        bool own = (int)i == base && !strcmp(ts, "base");
        for (uint32_t j = 0; j < n; j++) {
            int32_t *e = smap_get(&mv->map, tm->tokens[j]);
            if (!e && own && j >= src->n_ent) e = &(int32_t){ -1 };
            if (!e) { p[j] = -1; tm->identity = false; continue; }
            int32_t id = *e < 0 ? (int32_t)j : mv->ent[*e].id;
            if (id >= V) {
                s = cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer merge: model '%s': token '%s' of the output vocabulary "
                            "has id %d >= its vocab_size %lld (mergekit 0.1.5 fails with a KeyError)",
                            plan->models[i].ref, tm->tokens[j], id, V);
                break;
            }
            p[j] = id;
            if ((uint32_t)id != j) tm->identity = false;
        }
    }
    if (s) goto out;
    /* the output tokenizer.json: the source's (stripped), union tokens
     * appended (compiler/tokwrite.c renders the files) */
    tm->src_stage = src == &srcT ? sm_stage : plan->models[base].stage;
    tm_tok *from = src == &srcT ? &srcT : &T[base];
    tm->tok_json = from->json;
    tm->src_cfg = from->cfg;
    tm->src_converted = from->converted;
    from->json = from->cfg = NULL;
out:
    for (uint32_t i = 0; i < nm; i++) {
        /* tokens[] borrowed texts of these JSONs: copied above */
        tok_free(a, &T[i]);
    }
    tok_free(a, &srcT);
    cr_free(a, T);
    cr_free(a, ord);
    smap_free(a, &om);
    cr_free(a, ov);
    cr_free(a, oa);
    if (s) { cr_tokmerge_free(a, tm); return s; }
    *out = tm;
    return CR_OK;
}
