/* tokident.c — the identity case of tokenizer merging (see tokident.h).
 * mergekit 0.1.5 with identical tokenizers: the union adds nothing, the base
 * is not stripped, every permutation maps id i to i, so tensors are those
 * of the recipe without the key (checked on real runs); only the written
 * tokenizer files remain, taken from the source model. Anything that would
 * make the permutation move, drop or add a row is refused here.
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "infile.h"
#include "limits.h"
#include "tokident.h"

typedef struct {
    cJSON *json;
    const cJSON *vocab, *added;
    long long n;                /* len(get_vocab()) */
} tok_info;

/* model.vocab with added tokens over it: N distinct texts holding ids 0..N-1 */
static cr_status load(const cr_allocator *a, const cr_plan_model *m, tok_info *t, cr_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", m->path);
    cr_status s = cr_json_read_object(a, path, CR_LIMIT_JSON_BYTES, &t->json, err);
    if (s) {
        char why[512];
        snprintf(why, sizeof why, "%s", err ? err->msg : "?");
        return cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer_source: cannot read %s's tokenizer.json (%s): "
                       "tokenizer merging needs every input's tokenizer.json", m->ref, why);
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(t->json, "model");
    t->vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    t->added = cJSON_GetObjectItemCaseSensitive(t->json, "added_tokens");
    if (!cJSON_IsObject(t->vocab) || (t->added && !cJSON_IsArray(t->added)))
        return cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer_source: %s's tokenizer.json has no model.vocab mapping "
                       "(only BPE-style vocabularies are read so far)", m->ref);
    long long n = cJSON_GetArraySize(t->vocab), max_id = -1;
    const cJSON *e, *v;
    cJSON_ArrayForEach(e, t->vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0) return cr_fail(err, CR_ERR_FORMAT, "%s: bad id for token in model.vocab", path);
        if ((long long)e->valuedouble > max_id) max_id = (long long)e->valuedouble;
    }
    cJSON_ArrayForEach(e, t->added) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content"), *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!cJSON_IsString(c) || !cJSON_IsNumber(id) || id->valuedouble < 0)
            return cr_fail(err, CR_ERR_FORMAT, "%s: an added_tokens entry without content and id", path);
        v = cJSON_GetObjectItemCaseSensitive(t->vocab, c->valuestring);
        if (!v) n++;
        else if (v->valuedouble != id->valuedouble)
            return cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer_source: %s's added token '%s' moves a vocabulary id: "
                           "not supported yet", m->ref, c->valuestring);
        if ((long long)id->valuedouble > max_id) max_id = (long long)id->valuedouble;
    }
    /* ids 0..N-1 with N texts: a gap would leave a repeated id (mergekit would index past the end) */
    if (max_id + 1 != n)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer_source: %s's tokenizer ids are not 0..%lld "
                       "(%lld tokens, highest id %lld): not supported", m->ref, n - 1, n, max_id);
    t->n = n;
    return CR_OK;
}

cr_status cr_tokenizer_identity(const cr_allocator *a, const cr_plan *plan, const cr_plan_stage *st, int donor,
                                int *src_model, cr_error *err)
{
    const char *why_all = "mergekit then permutes the embedding rows into a merged vocabulary, "
                          "which is not supported yet (only inputs that share one tokenizer)";
    tok_info first = { 0 }, cur = { 0 };
    int first_m = -1;
    cr_status s = CR_OK;
    for (uint32_t i = 0; i < plan->n_models && !s; i++) {
        const cr_plan_model *m = &plan->models[i];
        if (m->stage >= 0) {
            s = cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer_source in a multi-stage recipe (input %s is a stage): "
                        "not supported yet", m->ref);
            break;
        }
        tok_info *t = first_m < 0 ? &first : &cur;
        if ((s = load(a, m, t, err))) break;
        long long vs;
        if (!m->opened || !(cr_model_config_int(&m->model, "vocab_size", &vs) ||
                            cr_model_config_int(&m->model, "text_config.vocab_size", &vs))) {
            s = cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer_source: %s's config.json gives no vocab_size: not supported yet", m->ref);
            break;
        }
        if (vs != t->n) {
            s = cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer_source: %s has vocab_size %lld but its tokenizer %lld tokens; %s",
                        m->ref, vs, t->n, vs > t->n ? "mergekit drops the padding rows (or pads to pad_to_multiple_of): "
                        "not supported yet" : "mergekit strips the tokens past vocab_size: not supported yet");
            break;
        }
        if (first_m < 0) {
            first_m = (int)i;
            continue;
        }
        const char *what = !cJSON_Compare(first.vocab, cur.vocab, true) ? "vocabularies"
                           : (first.added || cur.added) && !cJSON_Compare(first.added, cur.added, true) ? "added tokens"
                           : NULL;
        cJSON_Delete(cur.json);
        cur.json = NULL;
        if (what) s = cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer_source: %s and %s have different tokenizer %s: %s",
                              plan->models[first_m].ref, m->ref, what, why_all);
    }
    cJSON_Delete(cur.json);
    long long n = first.n;
    cJSON_Delete(first.json);
    if (s) return s;
    if (st->tokenizer_pad > 0 && n % st->tokenizer_pad)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer.pad_to_multiple_of %ld pads %lld tokens to %lld rows: "
                       "padding rows are not supported yet", st->tokenizer_pad, n,
                       (n + st->tokenizer_pad - 1) / st->tokenizer_pad * st->tokenizer_pad);
    const char *ts = st->tokenizer_source;
    if (!strcmp(ts, "base") || !strcmp(ts, "union")) {
        if (donor < 0) return cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer_source %s: no base model", ts);
        *src_model = donor;
        return CR_OK;
    }
    for (uint32_t i = 0; i < plan->n_models; i++)
        if (plan->models[i].ref && !strcmp(plan->models[i].ref, ts)) {
            *src_model = (int)i;
            return CR_OK;
        }
    return cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer_source '%s' is not one of the recipe's models: "
                   "a tokenizer from another model is not supported yet", ts);
}
