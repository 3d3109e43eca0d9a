/* tokwrite.c — the files a tokenizer merge writes (see tokwrite.h), as
 * mergekit 0.1.5 (transformers 5) or 0.1.4 (transformers 4, v4_files) saves them:
 * tokenizer.json is the source's (the base's stripped), its added_tokens
 * followed by the tokens the union appended, by id; tokenizer_config.json
 * is the source's init arguments as transformers 5 saves them for a
 * tokenizers-backed tokenizer (keys sorted, indent 2, no
 * added_tokens_decoder, no chat_template, add_bos/eos_token folded into the
 * post-processor); the chat template goes to chat_template.jinja.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aux_files.h"
#include "infile.h"
#include "jsonw.h"
#include "limits.h"
#include "tokwrite.h"

/* an added_tokens entry's text ("" without one) */
static const char *content_of(const cJSON *e)
{
    const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "content"));
    return t ? t : "";
}

static int cmp_key(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string, y->string);
}

/* sorts the n (>= 1) children of o with cmp, relinking cJSON's list (whose
 * first item's prev is the last); items: room for n pointers */
static void sort_children(cJSON *o, cJSON **items, int n, int (*cmp)(const void *, const void *))
{
    int i = 0;
    for (cJSON *c = o->child; c; c = c->next) items[i++] = c;
    qsort(items, (size_t)n, sizeof *items, cmp);
    for (i = 0; i < n; i++) {
        items[i]->prev = i ? items[i - 1] : items[n - 1];
        items[i]->next = i + 1 < n ? items[i + 1] : NULL;
    }
    o->child = items[0];
}

/* sort an object's keys (json.dumps(sort_keys=True)) */
static void sort_keys(cJSON *o)
{
    int n = cJSON_GetArraySize(o);
    cJSON *items[4096];
    if (n >= 2 && n <= (int)CR_ARRAY_LEN(items)) sort_children(o, items, n, cmp_key);
}

static cr_status write_json(cr_program *p, const char *name, const cJSON *j, cr_error *err)
{
    cr_sbuf b;
    cr_sbuf_init(&b, p->alloc);
    cr_json_add_pretty(&b, j, 0, NULL, NULL);
    cr_sbuf_adds(&b, "\n");
    size_t len;
    char *text = cr_sbuf_take(&b, &len);
    if (!text) return cr_fail(err, CR_ERR_NOMEM, "out of memory writing %s", name);
    cr_status s = cr_program_aux_write(p, name, text, len, err);
    cr_free(p->alloc, text);
    return s;
}

/* ---- mergekit 0.1.4: transformers 4's save_pretrained --------------------- */

static const char *const roles[] = { "bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                                     "cls_token", "mask_token" };

static int cmp_id(const void *a, const void *b)
{
    double x = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(*(const cJSON *const *)a, "id"));
    double y = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(*(const cJSON *const *)b, "id"));
    return x < y ? -1 : x > y;
}

static const cJSON *added_entry(const cJSON *added, const char *text)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, added)
        if (text && !strcmp(content_of(e), text)) return e;
    return NULL;
}

static const char *role_text(const cJSON *v)
{
    if (cJSON_IsString(v)) return v->valuestring;
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "content"));
}

/* {content, lstrip, normalized, rstrip, single_word[, special]} of an added token */
static cJSON *flags_of(const cJSON *e, bool with_special)
{
    cJSON *o = cJSON_CreateObject();
    static const char *const keys[] = { "lstrip", "normalized", "rstrip", "single_word", "special" };
    bool ok = o && cJSON_AddStringToObject(o, "content", content_of(e));
    for (size_t i = 0; i < CR_ARRAY_LEN(keys) - !with_special && ok; i++)
        ok = cJSON_AddBoolToObject(o, keys[i], cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, keys[i]))) != NULL;
    if (!ok) { cJSON_Delete(o); return NULL; }
    return o;
}

/* transformers 4.57 (mergekit 0.1.4) saves a PreTrainedTokenizerFast as:
 * tokenizer.json with every added token by id, the special tokens of
 * tokenizer_config.json registered as added tokens (special, not
 * normalized); tokenizer_config.json with `added_tokens_decoder` (id ->
 * flags) and `extra_special_tokens`, the chat template moved out to
 * chat_template.jinja; special_tokens_map.json with each role's flags.
 * Edits `added` (inside tj) and `cfg`; writes the last two files. */
static cr_status v4_files(cr_program *p, cJSON *tj, cJSON *added, cJSON *cfg, cr_error *err)
{
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tj, "model"), "vocab");
    for (size_t r = 0; r < CR_ARRAY_LEN(roles); r++) {
        const char *t = role_text(cJSON_GetObjectItemCaseSensitive(cfg, roles[r]));
        const cJSON *id = cJSON_IsObject(vocab) && t ? cJSON_GetObjectItemCaseSensitive(vocab, t) : NULL;
        if (!t || added_entry(added, t) || !cJSON_IsNumber(id)) continue;
        cJSON *n = cJSON_CreateObject();
        if (!n || !cJSON_AddItemToArray(added, n)) { cJSON_Delete(n); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
        bool ok = cJSON_AddNumberToObject(n, "id", id->valuedouble) && cJSON_AddStringToObject(n, "content", t);
        static const char *const flag[] = { "single_word", "lstrip", "rstrip", "normalized", "special" };
        for (size_t i = 0; i < CR_ARRAY_LEN(flag) && ok; i++)
            ok = cJSON_AddBoolToObject(n, flag[i], i == 4) != NULL;
        if (!ok) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    }
    /* added_tokens by id */
    int n = cJSON_GetArraySize(added);
    if (n > 1) {
        cJSON **items = cr_malloc(p->alloc, (size_t)n * sizeof *items);
        if (!items) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
        sort_children(added, items, n, cmp_id);
        cr_free(p->alloc, items);
    }
    cJSON *dec = cJSON_CreateObject(), *map = cJSON_CreateObject();
    bool ok = dec && map;
    const cJSON *e;
    cJSON_ArrayForEach(e, added) {
        char key[32];
        snprintf(key, sizeof key, "%.0f", cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "id")));
        cJSON *f = ok ? flags_of(e, true) : NULL;
        if (!(ok = f && cJSON_AddItemToObject(dec, key, f))) { cJSON_Delete(f); break; }
    }
    for (size_t r = 0; r < CR_ARRAY_LEN(roles) && ok; r++) {
        const cJSON *en = added_entry(added, role_text(cJSON_GetObjectItemCaseSensitive(cfg, roles[r])));
        cJSON *f = en ? flags_of(en, false) : NULL;
        if (en && !(ok = f && cJSON_AddItemToObject(map, roles[r], f))) cJSON_Delete(f);
    }
    cJSON *extra = cJSON_GetObjectItemCaseSensitive(cfg, "additional_special_tokens");
    cJSON *arr = ok && cJSON_IsArray(extra) ? cJSON_AddArrayToObject(map, "additional_special_tokens") : NULL;
    if (ok && cJSON_IsArray(extra) && !arr) ok = false;
    if (arr) cJSON_ArrayForEach(e, extra) {
        const cJSON *en = added_entry(added, role_text(e));
        cJSON *f = en && ok ? flags_of(en, false) : NULL;
        if (en && !(ok = f && cJSON_AddItemToArray(arr, f))) { cJSON_Delete(f); break; }
    }
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "chat_template");
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "added_tokens_decoder");
    if (ok) ok = cJSON_AddItemToObject(cfg, "added_tokens_decoder", dec);
    if (ok) dec = NULL;     /* cfg owns it */
    if (ok && !cJSON_GetObjectItemCaseSensitive(cfg, "extra_special_tokens"))
        ok = cJSON_AddObjectToObject(cfg, "extra_special_tokens") != NULL;
    if (ok && !cJSON_GetObjectItemCaseSensitive(cfg, "tokenizer_class"))
        ok = cJSON_AddStringToObject(cfg, "tokenizer_class", "PreTrainedTokenizerFast") != NULL;
    cr_status s = ok ? CR_OK : cr_fail(err, CR_ERR_NOMEM, "out of memory writing tokenizer_config.json");
    sort_keys(cfg);
    sort_keys(map);
    if (!s) s = write_json(p, "tokenizer_config.json", cfg, err);
    if (!s) s = write_json(p, "special_tokens_map.json", map, err);
    cJSON_Delete(dec);
    cJSON_Delete(map);
    return s;
}

/* the source's tokenizer.json (the base's stripped) with the appended
 * tokens; *added points at its added_tokens. The caller owns *tok. */
static cr_status merged_json(const cr_tokmerge *tm, cJSON **tok, cJSON **added_out, cr_error *err)
{
    *tok = NULL;
    cJSON *tj = cJSON_Duplicate(tm->tok_json, true);
    if (!tj) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    cJSON *added = cJSON_GetObjectItemCaseSensitive(tj, "added_tokens");
    if (!added) added = cJSON_AddArrayToObject(tj, "added_tokens");
    bool v014 = tm->mk == CR_MK_0_1_4;
    const cJSON *e;
    cJSON_ArrayForEach(e, tm->added_out) {
        /* 0.1.4's re-added tokens: keys replace an earlier entry's flags */
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "content"));
        for (int i = cJSON_GetArraySize(added) - 1; v014 && text && i >= 0; i--)
            if (!strcmp(text, content_of(cJSON_GetArrayItem(added, i))))
                cJSON_DeleteItemFromArray(added, i);
        cJSON *d = cJSON_Duplicate(e, true);
        if (!d || !added || !cJSON_AddItemToArray(added, d)) { cJSON_Delete(d); cJSON_Delete(tj); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
    }
    *tok = tj;
    *added_out = added;
    return CR_OK;
}

cr_status cr_tokmerge_render(const cr_allocator *a, const cr_tokmerge *tm, cJSON **tok, cJSON **cfg, cr_error *err)
{
    (void)a;
    *tok = *cfg = NULL;
    cJSON *tj, *added;
    cr_status s = merged_json(tm, &tj, &added, err);
    if (s) return s;
    cJSON *c = tm->src_cfg ? cJSON_Duplicate(tm->src_cfg, true) : cJSON_CreateObject();
    if (!c) { cJSON_Delete(tj); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
    /* a converted slow tokenizer's: written like a tokenizer.json source's
     * (no is_local / local_files_only, spec/compat.md; model_max_length is
     * transformers' default, VERY_LARGE_INTEGER, either way) */
    if (tm->src_converted) {
        static const char *const gone[] = { "is_local", "local_files_only", "model_max_length" };
        for (size_t i = 0; i < CR_ARRAY_LEN(gone); i++) cJSON_DeleteItemFromObjectCaseSensitive(c, gone[i]);
    }
    static const char *const drop[] = { "added_tokens_decoder", "additional_special_tokens", "chat_template",
                                        "add_bos_token", "add_eos_token" };
    for (size_t i = 0; i < CR_ARRAY_LEN(drop); i++) cJSON_DeleteItemFromObjectCaseSensitive(c, drop[i]);
    const char *cls = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "tokenizer_class"));
    if (!cls || !strcmp(cls, "PreTrainedTokenizerFast")) {
        cJSON_DeleteItemFromObjectCaseSensitive(c, "tokenizer_class");
        cJSON_AddStringToObject(c, "tokenizer_class", "TokenizersBackend");
    }
    if (!cJSON_GetObjectItemCaseSensitive(c, "backend")) cJSON_AddStringToObject(c, "backend", "tokenizers");
    sort_keys(c);
    *tok = tj;
    *cfg = c;
    return CR_OK;
}

cr_status cr_tokmerge_write(cr_program *p, const cr_plan *plan, const cr_tokmerge *tm, const char *tmpl,
                            cr_error *err)
{
    (void)plan;
    cJSON *tj, *cfg, *added;
    cr_status s;
    if (tm->mk == CR_MK_0_1_4) {
        /* transformers 4 starts from the source's init arguments as they are */
        if ((s = merged_json(tm, &tj, &added, err))) return s;
        cfg = tm->src_cfg ? cJSON_Duplicate(tm->src_cfg, true) : cJSON_CreateObject();
        s = cfg ? v4_files(p, tj, added, cfg, err) : cr_fail(err, CR_ERR_NOMEM, "out of memory");
        if (!s) s = write_json(p, "tokenizer.json", tj, err);
    } else {
        s = cr_tokmerge_render(p->alloc, tm, &tj, &cfg, err);
        if (s) return s;
        s = write_json(p, "tokenizer.json", tj, err);
        if (!s) s = write_json(p, "tokenizer_config.json", cfg, err);
    }
    cJSON_Delete(tj);
    cJSON_Delete(cfg);
    if (!s && tmpl) s = cr_program_aux_write(p, "chat_template.jinja", tmpl, strlen(tmpl), err);
    return s;
}

cr_status cr_tokwrite_resave_v4(cr_program *p, const char *dir, const char *tmpl, cr_error *err)
{
    char path[4096];
    cJSON *tj = NULL, *cfg = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    cr_status s = cr_json_read_object(p->alloc, path, CR_LIMIT_JSON_BYTES, &tj, err);
    if (s) return s;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if ((s = cr_json_read_object(p->alloc, path, CR_LIMIT_JSON_BYTES, &cfg, err))) { cJSON_Delete(tj); return s; }
    cJSON *added = cJSON_GetObjectItemCaseSensitive(tj, "added_tokens");
    if (!cJSON_IsArray(added)) {
        cJSON_DeleteItemFromObjectCaseSensitive(tj, "added_tokens");
        added = cJSON_AddArrayToObject(tj, "added_tokens");
    }
    s = added ? v4_files(p, tj, added, cfg, err) : cr_fail(err, CR_ERR_NOMEM, "out of memory");
    if (!s) s = write_json(p, "tokenizer.json", tj, err);
    if (!s && tmpl) s = cr_program_aux_write(p, "chat_template.jinja", tmpl, strlen(tmpl), err);
    cJSON_Delete(tj);
    cJSON_Delete(cfg);
    return s;
}
