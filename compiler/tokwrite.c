/* tokwrite.c — the files a tokenizer merge writes (see tokwrite.h):
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

static int cmp_key(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string, y->string);
}

/* sort an object's keys (json.dumps(sort_keys=True)) */
static void sort_keys(cJSON *o)
{
    int n = cJSON_GetArraySize(o);
    if (n < 2) return;
    cJSON *items[4096];
    if (n > (int)CR_ARRAY_LEN(items)) return;
    int i = 0;
    for (cJSON *c = o->child; c; c = c->next) items[i++] = c;
    qsort(items, (size_t)n, sizeof *items, cmp_key);
    for (i = 0; i < n; i++) {
        items[i]->prev = i ? items[i - 1] : items[n - 1];
        items[i]->next = i + 1 < n ? items[i + 1] : NULL;
    }
    o->child = items[0];
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

cr_status cr_tokmerge_write(cr_program *p, const cr_plan *plan, const cr_tokmerge *tm, const char *tmpl,
                            cr_error *err)
{
    (void)plan;
    cJSON *tj = cJSON_Duplicate(tm->tok_json, true);
    if (!tj) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    cJSON *added = cJSON_GetObjectItemCaseSensitive(tj, "added_tokens");
    if (!added) added = cJSON_AddArrayToObject(tj, "added_tokens");
    const cJSON *e;
    cJSON_ArrayForEach(e, tm->added_out) {
        cJSON *d = cJSON_Duplicate(e, true);
        if (!d || !added || !cJSON_AddItemToArray(added, d)) { cJSON_Delete(d); cJSON_Delete(tj); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
    }
    cr_status s = write_json(p, "tokenizer.json", tj, err);
    cJSON_Delete(tj);
    if (s) return s;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", tm->src_dir);
    cJSON *cfg = NULL;
    cr_error e2 = { 0 };
    if (tm->src_cfg) cfg = cJSON_Duplicate(tm->src_cfg, true);
    else if (cr_json_read_object(p->alloc, path, CR_LIMIT_JSON_BYTES, &cfg, &e2)) cfg = cJSON_CreateObject();
    if (!cfg) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    /* a converted slow tokenizer's: written like a tokenizer.json source's
     * (no is_local / local_files_only, spec/compat.md; model_max_length is
     * transformers' default, VERY_LARGE_INTEGER, either way) */
    if (tm->src_cfg) {
        static const char *const gone[] = { "is_local", "local_files_only", "model_max_length" };
        for (size_t i = 0; i < CR_ARRAY_LEN(gone); i++) cJSON_DeleteItemFromObjectCaseSensitive(cfg, gone[i]);
    }
    static const char *const drop[] = { "added_tokens_decoder", "additional_special_tokens", "chat_template",
                                        "add_bos_token", "add_eos_token" };
    for (size_t i = 0; i < CR_ARRAY_LEN(drop); i++) cJSON_DeleteItemFromObjectCaseSensitive(cfg, drop[i]);
    const char *cls = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cfg, "tokenizer_class"));
    if (!cls || !strcmp(cls, "PreTrainedTokenizerFast")) {
        cJSON_DeleteItemFromObjectCaseSensitive(cfg, "tokenizer_class");
        cJSON_AddStringToObject(cfg, "tokenizer_class", "TokenizersBackend");
    }
    if (!cJSON_GetObjectItemCaseSensitive(cfg, "backend")) cJSON_AddStringToObject(cfg, "backend", "tokenizers");
    sort_keys(cfg);
    s = write_json(p, "tokenizer_config.json", cfg, err);
    cJSON_Delete(cfg);
    if (!s && tmpl) s = cr_program_aux_write(p, "chat_template.jinja", tmpl, strlen(tmpl), err);
    return s;
}
