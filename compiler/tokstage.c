/* tokstage.c — what each stage's output directory holds of a tokenizer
 * (see tokstage.h), and the chat template a directory or a recipe's
 * `chat_template:` stands for (spec/tokenizer-merge.md §4).
 *
 * mergekit-multi runs stage k as run_merge(recipe_k, dir_k): with a
 * tokenizer merge, dir_k gets the merged tokenizer as transformers 5 saves
 * it and config.json's vocab_size set to the merged size (padded); without
 * one, --copy-tokenizer copies the donor's tokenizer files (the donor being
 * a directory, or an earlier stage's directory holding its own) and
 * config.json keeps the donor's vocab_size. A later stage that names stage
 * k as a model loads dir_k: its get_vocab(), its special tokens and its
 * vocab_size are what is decided here, so tokmerge.c reads a stage input
 * as it reads a directory.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "chat_templates.h"
#include "infile.h"
#include "limits.h"
#include "tokslow.h"
#include "tokstage.h"
#include "tokwrite.h"

static char *dup_str(const cr_allocator *a, const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s);
    char *d = cr_malloc(a, n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

char *cr_tokstage_model_template(const cr_allocator *alloc, const char *dir)
{
    char path[4096];
    struct stat sb;
    char *text = NULL;
    size_t len;
    cr_error e = { 0 };
    if (!dir) return NULL;
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    if (stat(path, &sb) == 0)
        return cr_file_read(alloc, path, CR_LIMIT_JSON_BYTES, "chat template", &text, &len, &e) ? NULL : text;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    cJSON *j = NULL;
    if (stat(path, &sb) || cr_json_read_object(alloc, path, CR_LIMIT_JSON_BYTES, &j, &e)) return NULL;
    /* a string, or a list of {name, template} whose "default" entry counts */
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "chat_template"), *found = NULL;
    if (cJSON_IsString(t)) found = t;
    const cJSON *it;
    if (cJSON_IsArray(t)) cJSON_ArrayForEach(it, t) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
        if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default"))
            found = cJSON_GetObjectItemCaseSensitive(it, "template");
    }
    if (cJSON_IsString(found)) text = dup_str(alloc, found->valuestring);
    cJSON_Delete(j);
    return text;
}

/* Python's str.strip() for the ASCII white space it removes (\t\n\v\f\r,
 * \x1c-\x1f, space); other Unicode white space is left (a listed difference) */
static void py_strip(char *s)
{
    size_t a = 0, n = strlen(s);
#define WS(c) ((c) == ' ' || ((c) >= 9 && (c) <= 13) || ((c) >= 0x1c && (c) <= 0x1f))
    while (a < n && WS((unsigned char)s[a])) a++;
    while (n > a && WS((unsigned char)s[n - 1])) n--;
#undef WS
    memmove(s, s + a, n - a);
    s[n - a] = 0;
}

/* `chat_template: auto`: the most common stripped template among stage
 * si's models, ties to the first seen (mergekit's Counter.most_common over
 * referenced_models(); crucible's order is the recipe's, base first). A
 * stage output counts with the template its directory holds (mergekit-multi
 * loads that directory's tokenizer). NULL: none has one. */
static char *auto_template(const cr_allocator *alloc, const cr_plan *plan, const cr_tokstage *stages, uint32_t si)
{
    char *t[256];
    uint32_t n = 0;
    const cr_plan_stage *st = si < plan->n_stages && plan->stages[si].models ? &plan->stages[si] : NULL;
    uint32_t n_models = st ? st->n_models : plan->n_models;
    for (uint32_t q = 0; q < n_models && n < CR_ARRAY_LEN(t); q++) {
        const cr_plan_model *pm = &plan->models[st ? st->models[q] : q];
        char *s = NULL;
        if (pm->stage >= 0) s = stages ? dup_str(alloc, stages[pm->stage].tmpl) : NULL;
        else if (pm->path) s = cr_tokstage_model_template(alloc, pm->path);
        if (s) py_strip(s);
        if (s && *s) t[n++] = s;
        else cr_free(alloc, s);
    }
    int best = -1, best_count = 0;
    for (uint32_t i = 0; i < n; i++) {
        int c = 0;
        for (uint32_t j = 0; j < n; j++) c += !strcmp(t[i], t[j]);
        if (c > best_count) best = (int)i, best_count = c;
    }
    for (uint32_t i = 0; i < n; i++)
        if ((int)i != best) cr_free(alloc, t[i]);
    return best >= 0 ? t[best] : NULL;
}

cr_status cr_tokstage_resolve_template(const cr_allocator *a, const cr_plan *plan, const cr_tokstage *stages,
                                       uint32_t si, const char *ct, char **out, cr_error *err)
{
    const cr_chat_template *named;
    cr_chat_kind k = cr_chat_template_kind(ct, &named);
    *out = NULL;
    if (k == CR_CHAT_AUTO) {
        *out = auto_template(a, plan, stages, si);
        return CR_OK;
    }
    if (!(*out = dup_str(a, k == CR_CHAT_NAMED ? named->text : ct))) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    return CR_OK;
}

/* mergekit 0.1.4 looks every chat_template value up as a file
 * `_data/chat_templates/VALUE.jinja` before it takes it for Jinja text, and
 * the lookup raises OSError (ENAMETOOLONG) when a '/'-separated part of
 * that name is longer than NAME_MAX (255 bytes on Linux), so such a literal
 * template fails the merge there (0.1.5 skips the lookup for text longer
 * than 255 bytes or holding '{' or a newline). Refused at plan time. */
cr_status cr_tokstage_check_014_template(const char *ct, cr_error *err)
{
    const char *part = ct;
    for (const char *c = ct;; c++) {
        if (*c && *c != '/') continue;
        size_t len = (size_t)(c - part) + (*c ? 0 : strlen(".jinja"));
        if (len > 255)
            return cr_fail(err, CR_ERR_CONFIG, "chat_template: mergekit 0.1.4 first looks the value up as a named "
                           "template file, and a %zu-byte file name fails there (OSError: File name too long); "
                           "mergekit 0.1.5 accepts it (--mergekit-version 0.1.5), or keep each '/'-separated part "
                           "of the template under 250 bytes", len);
        if (!*c) return CR_OK;
        part = c + 1;
    }
}

/* config.json vocab_size of a directory (-1: unknown) */
static long long dir_vocab(const cr_plan_model *pm)
{
    long long vs;
    return pm->opened && (cr_model_config_int(&pm->model, "vocab_size", &vs) ||
                          cr_model_config_int(&pm->model, "text_config.vocab_size", &vs)) ? vs : -1;
}

cr_status cr_tokstage_model(const cr_allocator *a, const cr_plan *plan, const cr_tokstage *stages,
                            const cr_plan_model *m, cJSON **json, cJSON **cfg, long long *V, bool *converted,
                            cr_error *err)
{
    *json = *cfg = NULL;
    *V = -1;
    *converted = false;
    if (m->stage >= 0) {
        if (!stages)
            return cr_fail(err, CR_ERR_CONFIG, "tokenizer merge: %s is an earlier stage's output", m->ref);
        const cr_tokstage *d = &stages[m->stage];
        *V = d->vocab_size;
        if (d->written >= 0) return cr_tokmerge_render(a, stages[d->written].tm, json, cfg, err);
        if (d->files < 0)
            return cr_fail(err, CR_ERR_CONFIG, "stage '%s' leaves no tokenizer in its directory (it merges no "
                           "tokenizers, and --no-copy-tokenizer or its donor has none)", m->ref);
        m = &plan->models[d->files];
    } else {
        *V = dir_vocab(m);
    }
    if (cr_tokslow_kind_of(m->path) != CR_TOKSLOW_NONE) {
        /* only a slow tokenizer: what transformers 5 converts it to (a
         * stage copying it re-saves that, as mergekit 0.1.5 does) */
        const char *mt = m->opened ? cr_model_config_str(&m->model, "model_type") : NULL;
        cr_status s = cr_tokslow_convert(a, m->path, m->ref, mt, json, cfg, err);
        *converted = !s;
        return s;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", m->path);
    cr_status s = cr_json_read_object(a, path, CR_LIMIT_JSON_BYTES, json, err);
    if (s) return s;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", m->path);
    cr_error e2 = { 0 };
    if (cr_json_read_object(a, path, CR_LIMIT_JSON_BYTES, cfg, &e2)) *cfg = NULL;
    return CR_OK;
}

/* stage entry d takes what model i's directory holds (a directory: its
 * own files; a stage output: that stage's). Under 0.1.4 (`v014`) a copy
 * leaves chat_template.jinja behind: a stage directory whose template a
 * `chat_template:` set (transformers 4 re-saved it, the template in that
 * file only) passes on its re-saved files without a template. */
static cr_status inherit(const cr_allocator *a, const cr_plan *plan, const cr_tokstage *ts, int i, bool v014,
                         cr_tokstage *d, cr_error *err)
{
    const cr_plan_model *pm = &plan->models[i];
    cr_free(a, d->tmpl);
    d->tmpl = NULL;
    d->tmpl_set = d->v4_resaved = false;
    if (pm->stage >= 0) {
        const cr_tokstage *from = &ts[pm->stage];
        d->written = from->written;
        d->files = from->files;
        if (v014 && from->files >= 0 && (from->tmpl_set || from->v4_resaved)) {
            d->v4_resaved = true;
            return CR_OK;
        }
        d->tmpl_set = from->tmpl_set;
        d->tmpl = dup_str(a, from->tmpl);
        if (from->tmpl && !d->tmpl) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    } else {
        d->files = i;
        d->tmpl = cr_tokstage_model_template(a, pm->path);
    }
    return CR_OK;
}

static long long model_vocab(const cr_plan *plan, const cr_tokstage *ts, int i)
{
    if (i < 0) return -1;
    const cr_plan_model *pm = &plan->models[i];
    return pm->stage >= 0 ? ts[pm->stage].vocab_size : dir_vocab(pm);
}

cr_status cr_tokstages_build(const cr_allocator *a, const cr_plan *plan, uint32_t n, bool copy_tokenizer,
                             cr_mk_version mk, cr_tokstage **out, cr_error *err)
{
    *out = NULL;
    bool v014 = cr_mk_resolve(mk) == CR_MK_0_1_4;
    /* 0.1.4: only the last stage's tokenizer merge is reproduced (its
     * transformers 4 files and PermutedEmbeddings were matched for one
     * run_merge; an intermediate directory's tokenizer is not) */
    for (uint32_t k = 0; v014 && k < n && k + 1 < plan->n_stages; k++)
        if (plan->stages[k].tokenizer_source)
            return cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer_source in stage '%s', before the last stage of a "
                           "multi-stage recipe: not supported yet under --mergekit-version 0.1.4 "
                           "(--mergekit-version 0.1.5 merges it)", plan->stages[k].name);
    cr_tokstage *ts = cr_calloc(a, (size_t)n + 1, sizeof *ts);
    if (!ts) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    cr_status s = CR_OK;
    for (uint32_t k = 0; k < n && !s; k++) {
        const cr_plan_stage *st = &plan->stages[k];
        cr_tokstage *d = &ts[k];
        d->written = d->files = -1;
        d->vocab_size = model_vocab(plan, ts, st->donor_model);
        if (st->tokenizer_source) {
            if ((s = cr_tokmerge_build(a, plan, k, ts, mk, &d->tm, err))) break;
            const cr_tokmerge *tm = d->tm;
            /* mergekit saves the merged tokenizer and sets vocab_size to
             * its size (padded); crucible copies the source's files when
             * nothing changed (the same tokenizer), except for 0.1.4,
             * whose transformers 4 save adds special_tokens_map.json and
             * added_tokens_decoder to any tokenizer (compiler/tokwrite.c),
             * and for a converted slow tokenizer (no tokenizer.json) */
            d->vocab_size = tm->n_pad;
            if (tm->identity && tm->src_model >= 0 && !v014 && !tm->src_converted) {
                s = inherit(a, plan, ts, tm->src_model, v014, d, err);
            } else {
                d->written = (int)k;
                if (tm->src_stage >= 0) d->tmpl = dup_str(a, ts[tm->src_stage].tmpl);
                else d->tmpl = cr_tokstage_model_template(a, tm->src_dir);
            }
        } else if (copy_tokenizer && st->donor_model >= 0) {
            s = inherit(a, plan, ts, st->donor_model, v014, d, err);
        }
        /* `chat_template:` replaces the template of a tokenizer the stage
         * saves (`auto` finding none keeps it); a later stage copying this
         * directory's tokenizer copies that chat_template.jinja */
        if (!s && st->chat_template && (d->written >= 0 || d->files >= 0)) {
            char *t = NULL;
            if (v014 && (s = cr_tokstage_check_014_template(st->chat_template, err))) break;
            s = cr_tokstage_resolve_template(a, plan, ts, k, st->chat_template, &t, err);
            if (t) { cr_free(a, d->tmpl); d->tmpl = t; d->tmpl_set = true; }
        }
    }
    if (s) { cr_tokstages_free(a, ts, n); return s; }
    *out = ts;
    return CR_OK;
}

void cr_tokstages_free(const cr_allocator *a, cr_tokstage *s, uint32_t n)
{
    if (!s) return;
    for (uint32_t k = 0; k < n; k++) {
        cr_tokmerge_free(a, s[k].tm);
        cr_free(a, s[k].tmpl);
    }
    cr_free(a, s);
}
