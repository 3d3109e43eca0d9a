/* aux_files.c — config.json, tokenizer files, model card and recipe copy as
 * aux records of a program (see aux_files.h). The donor is the last stage's
 * donor model, followed back through stage outputs to a real directory.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "aux_files.h"
#include "bind.h"
#include "chat_templates.h"
#include "hfdir.h"
#include "infile.h"
#include "jsonw.h"
#include "limits.h"
#include "layout.h"
#include "tokwrite.h"
#include "tokslow.h"

static cr_status add_aux(cr_program *p, cr_prog_aux *a, cr_error *err)
{
    cr_prog_aux *na = cr_realloc(p->alloc, p->aux, sizeof *na * (p->n_aux + 1));
    if (!na) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    p->aux = na;
    p->aux[p->n_aux++] = *a;
    return CR_OK;
}

cr_status cr_program_aux_write(cr_program *p, const char *dest, const char *text, size_t len, cr_error *err)
{
    cr_prog_aux a = { .kind = CR_AUX_WRITE };
    cr_status st = cr_program_add_blob(p, text, len, &a.content, err);
    if (!st) st = cr_program_add_blob(p, dest, strlen(dest), &a.dest, err);
    return st ? st : add_aux(p, &a, err);
}

cr_status cr_program_aux_copy(cr_program *p, const char *dest, const cr_input_file *src, cr_error *err)
{
    struct stat sb;
    if (stat(src->path, &sb)) return cr_fail_errno(err, errno, "%s", src->path);
    cr_input_file f = *src;
    f.size = (uint64_t)sb.st_size;
    cr_prog_aux a = { .kind = CR_AUX_COPY };
    cr_status st = cr_program_add_input_file(p, &f, &a.src_file, err);
    if (!st) st = cr_program_add_blob(p, dest, strlen(dest), &a.dest, err);
    return st ? st : add_aux(p, &a, err);
}

/* ---- chat_template (spec/tokenizer-merge.md §4) ----------------------------- */

/* A model's own template as transformers 5 loads it, or NULL: chat_template.jinja
 * first, else tokenizer_config.json's `chat_template` (a string, or a list of
 * {name, template} whose "default" entry counts). Caller frees with alloc. */
static char *model_template(const cr_allocator *alloc, const char *dir)
{
    char path[4096];
    struct stat sb;
    char *text = NULL;
    size_t len;
    cr_error e = { 0 };
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    if (stat(path, &sb) == 0)
        return cr_file_read(alloc, path, CR_LIMIT_JSON_BYTES, "chat template", &text, &len, &e) ? NULL : text;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    cJSON *j = NULL;
    if (stat(path, &sb) || cr_json_read_object(alloc, path, CR_LIMIT_JSON_BYTES, &j, &e)) return NULL;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "chat_template"), *found = NULL;
    if (cJSON_IsString(t)) found = t;
    const cJSON *it;
    if (cJSON_IsArray(t)) cJSON_ArrayForEach(it, t) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
        if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default"))
            found = cJSON_GetObjectItemCaseSensitive(it, "template");
    }
    if (cJSON_IsString(found)) {
        len = strlen(found->valuestring);
        if ((text = cr_malloc(alloc, len + 1))) memcpy(text, found->valuestring, len + 1);
    }
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

/* `chat_template: auto`: the most common stripped template among the input
 * models, ties to the first seen (mergekit's Counter.most_common over its
 * model order; crucible's is the recipe's). NULL: none has one. */
static char *auto_template(const cr_allocator *alloc, const cr_plan *plan)
{
    char *t[256];
    uint32_t n = 0;
    for (uint32_t i = 0; i < plan->n_models && n < CR_ARRAY_LEN(t); i++) {
        if (plan->models[i].stage >= 0 || !plan->models[i].path) continue;
        char *s = model_template(alloc, plan->models[i].path);
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

/* the text `chat_template: ct` stands for (§4.1); NULL for `auto` with no
 * template among the inputs */
static cr_status resolve_template(cr_program *p, const cr_plan *plan, const char *ct, char **out, cr_error *err)
{
    const cr_chat_template *named;
    cr_chat_kind k = cr_chat_template_kind(ct, &named);
    *out = NULL;
    if (k == CR_CHAT_AUTO) {
        *out = auto_template(p->alloc, plan);
        return CR_OK;
    }
    const char *src = k == CR_CHAT_NAMED ? named->text : ct;
    size_t len = strlen(src);
    if (!(*out = cr_malloc(p->alloc, len + 1))) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    memcpy(*out, src, len + 1);
    return CR_OK;
}

static cr_status aux_model(cr_program *p, const cr_plan *plan, const cr_aux_options *o, const cr_plan_stage *last,
                           int donor, const char *donor_dir, bool v015, const cr_tokmerge *tm, cr_error *err);
static cr_status aux_card(cr_program *p, const cr_plan *plan, const cr_aux_options *o, const cr_plan_stage *last,
                          cr_error *err);

cr_status cr_program_add_aux(cr_program *p, const cr_plan *plan, const cr_aux_options *o, cr_error *err)
{
    if (!plan->n_stages) return CR_OK;
    const cr_plan_stage *last = &plan->stages[plan->n_stages - 1];
    const cr_plan_stage *st = last;
    int donor = st->donor_model;
    for (int guard = 0; donor >= 0 && plan->models[donor].stage >= 0 && guard < 64; guard++) {
        st = &plan->stages[plan->models[donor].stage];
        donor = st->donor_model;
    }
    const char *donor_dir = donor >= 0 ? plan->models[donor].path : NULL;
    /* the release reproduced: 0.1.5 runs on transformers 5 (config.json's
     * `dtype` key) and copies four more tokenizer-side files */
    bool v015 = !(p->mergekit_version.len && !strcmp(cr_prog_str(p, p->mergekit_version), "0.1.4"));
    cr_status s = CR_OK;
    /* a tokenizer merge: the output vocabulary (compiler/tokmerge.c) */
    cr_tokmerge *tm = NULL;
    /* an earlier stage's tokenizer would have to be carried through its output */
    for (uint32_t i = 0; i + 1 < plan->n_stages; i++)
        if (plan->stages[i].tokenizer_source)
            return cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer_source in stage '%s' of a multi-stage recipe: "
                           "not supported yet", plan->stages[i].name);
    if (donor_dir && last->tokenizer_source) {
        if (!v015)
            return cr_fail(err, CR_ERR_UNSUPPORTED, "tokenizer_source under --mergekit-version 0.1.4: not supported yet "
                           "(only mergekit 0.1.5's file layout is reproduced)");
        if ((s = cr_tokmerge_build(p->alloc, plan, last, donor, &tm, err))) return s;
    }
    s = aux_model(p, plan, o, last, donor, donor_dir, v015, tm, err);
    cr_tokmerge_free(p->alloc, tm);
    if (!s) s = aux_card(p, plan, o, last, err);
    return s;
}

static cr_status aux_model(cr_program *p, const cr_plan *plan, const cr_aux_options *o, const cr_plan_stage *last,
                           int donor, const char *donor_dir, bool v015, const cr_tokmerge *tm, cr_error *err)
{
    cr_status s = CR_OK;
    char path[4096];
    if (donor_dir) {
        snprintf(path, sizeof path, "%s/config.json", donor_dir);
        size_t len;
        char *text = NULL;
        struct stat sb;
        /* a donor without config.json gives none; one that cannot be read is an error */
        if (stat(path, &sb) == 0 &&
            (s = cr_file_read(p->alloc, path, CR_LIMIT_JSON_BYTES, "config", &text, &len, err)))
            return s;
        if (text) {
            cr_dtype dt = last->out_dtype != CR_DTYPE_NONE ? last->out_dtype : last->dtype;
            cr_hf_config_edit edit = { .dtype_name = dt != CR_DTYPE_NONE ? cr_dtype_torch_name(dt) : NULL,
                                       .dtype_key_only = v015,
                                       .layer_key = last->num_layers_out >= 0 ? last->num_layers_key : NULL,
                                       .n_layers = last->num_layers_out };
            if (tm && !tm->identity) {
                long long vs;
                edit.vocab_key = cr_model_config_int(&plan->models[donor].model, "vocab_size", &vs) ||
                                 !cr_model_config_int(&plan->models[donor].model, "text_config.vocab_size", &vs)
                                     ? "vocab_size" : "text_config.vocab_size";
                edit.vocab_size = tm->n_pad;
            }
            char *out;
            size_t out_len;
            s = cr_hf_patch_config(p->alloc, text, len, path, &edit, &out, &out_len, err);
            cr_free(p->alloc, text);
            if (s) return s;
            s = cr_program_aux_write(p, "config.json", out, out_len, err);
            cr_free(p->alloc, out);
            if (s) return s;
        }
        /* the tokenizer written: the donor's (--copy-tokenizer), or with
         * tokenizer_source the source model's whatever the flag (mergekit
         * then always saves its merged tokenizer) */
        int tok_model = o && o->copy_tokenizer ? donor : -1;
        /* the identity permutation: the source's files as they are; else
         * the merged tokenizer, written (compiler/tokwrite.c) */
        /* a converted slow tokenizer has no tokenizer.json to copy: written */
        if (tm) tok_model = tm->identity && !tm->src_cfg ? tm->src_model : -1;
        /* a source that is none of the inputs has no input files to copy
         * (a .crb binds only inputs): always written */
        if (tm && (!tm->identity || tm->src_model < 0 || tm->src_cfg)) {
            char *tmpl = NULL;
            if (last->chat_template && (s = resolve_template(p, plan, last->chat_template, &tmpl, err))) return s;
            /* without one (or `auto` finding none) the source keeps its own */
            if (!tmpl) tmpl = model_template(p->alloc, tm->src_dir);
            s = cr_tokmerge_write(p, plan, tm, tmpl, err);
            cr_free(p->alloc, tmpl);
            if (s) return s;
        }
        if (tok_model >= 0) {
            const char *names[32];
            const char *tok_dir = plan->models[tok_model].path;
            size_t n = cr_hf_tokenizer_files(tok_dir, v015, names, CR_ARRAY_LEN(names));
            /* a donor with tokenizer.json but no tokenizer_config.json: 0.1.5
             * re-saves it through transformers 5, reproduced where that is
             * faithful (formats/hfdir.h); 0.1.4 (transformers 4) writes none */
            const char *resaved = NULL;
            const char *mt = cr_model_config_str(&plan->models[tok_model].model, "model_type");
            if (!n && v015) {
                resaved = cr_hf_resaved_tokenizer_config(tok_dir, mt);
                if (resaved) names[n++] = "tokenizer.json";
            }
            /* a donor with only a slow tokenizer (tokenizer.model, or
             * vocab.json + merges.txt): 0.1.5
             * re-saves what transformers converts it to (formats/tokslow.h);
             * one crucible does not convert gets no tokenizer, as before */
            char *conv_tok = NULL, *conv_cfg = NULL;
            size_t conv_tok_len = 0, conv_cfg_len = 0;
            if (!n && v015 && cr_tokslow_kind_of(tok_dir) != CR_TOKSLOW_NONE) {
                cr_error e2 = { 0 };
                if (cr_tokslow_resave(p->alloc, tok_dir, plan->models[tok_model].ref, mt, false, &conv_tok,
                                      &conv_tok_len, &conv_cfg, &conv_cfg_len, &e2))
                    conv_tok = conv_cfg = NULL;
                /* the donor's own template goes with it, as transformers loads it */
                snprintf(path, sizeof path, "%s/chat_template.jinja", tok_dir);
                struct stat sb;
                if (conv_tok && !stat(path, &sb) && S_ISREG(sb.st_mode)) names[n++] = "chat_template.jinja";
            }
            bool have_tok = n || conv_tok;
            /* `chat_template:` replaces the donor's template; with no tokenizer
             * to go with it mergekit saves none (it warns) */
            char *tmpl = NULL;
            const char *ct = last->chat_template;
            if (ct && have_tok) {
                if (!v015)
                    return cr_fail(err, CR_ERR_UNSUPPORTED, "chat_template under --mergekit-version 0.1.4: not supported yet "
                                   "(only mergekit 0.1.5's file layout is reproduced)");
                const cr_chat_template *named;
                cr_chat_kind k = cr_chat_template_kind(ct, &named);
                if (k == CR_CHAT_AUTO) {
                    tmpl = auto_template(p->alloc, plan);
                } else {
                    const char *src = k == CR_CHAT_NAMED ? named->text : ct;
                    size_t len = strlen(src);
                    if (!(tmpl = cr_malloc(p->alloc, len + 1))) {
                        cr_free(p->alloc, conv_tok);
                        cr_free(p->alloc, conv_cfg);
                        return cr_fail(err, CR_ERR_NOMEM, "out of memory");
                    }
                    memcpy(tmpl, src, len + 1);
                }
            }
            bool own_template = tmpl != NULL;
            if (tmpl) {
                s = cr_program_aux_write(p, "chat_template.jinja", tmpl, strlen(tmpl), err);
                cr_free(p->alloc, tmpl);
            }
            if (!s && conv_tok) s = cr_program_aux_write(p, "tokenizer.json", conv_tok, conv_tok_len, err);
            if (!s && conv_cfg) s = cr_program_aux_write(p, "tokenizer_config.json", conv_cfg, conv_cfg_len, err);
            cr_free(p->alloc, conv_tok);
            cr_free(p->alloc, conv_cfg);
            if (s) return s;
            for (size_t i = 0; i < n && !s; i++) {
                if (own_template && !strcmp(names[i], "chat_template.jinja")) continue;
                snprintf(path, sizeof path, "%s/%s", tok_dir, names[i]);
                const cr_plan_model *dm = &plan->models[tok_model];
                cr_input_file src = { .ref = dm->ref, .lookup = dm->lookup, .revision = dm->revision,
                                      .dir = tok_dir, .path = path };
                s = cr_program_aux_copy(p, names[i], &src, err);
            }
            if (!s && resaved) s = cr_program_aux_write(p, "tokenizer_config.json", resaved, strlen(resaved), err);
            if (s) return s;
        }
    }
    return s;
}

static cr_status aux_card(cr_program *p, const cr_plan *plan, const cr_aux_options *o, const cr_plan_stage *last,
                          cr_error *err)
{
    cr_status s = CR_OK;
    if (o && o->write_card) {
        const char *models[256];
        size_t n_models = 0;
        for (uint32_t i = 0; i < plan->n_models && n_models < CR_ARRAY_LEN(models); i++)
            if (plan->models[i].stage < 0) models[n_models++] = plan->models[i].ref;
        const cr_method_info *m = last->method;
        /* the provenance a .crb carries (spec/bytecode.md), so the card says how to get these bytes again */
        cr_sbuf pb;
        cr_sbuf_init(&pb, p->alloc);
        cr_sbuf_printf(&pb, "Made by crucible %s (VM op table %016llx) with random seed %llu and %s; "
                       "`crucible compile` of the configuration below gives a program that re-runs it byte for byte.",
                       p->tool_version.len ? cr_prog_str(p, p->tool_version) : "?",
                       (unsigned long long)cr_op_table_fingerprint(), (unsigned long long)p->seed,
                       p->flags & CR_PROG_PRECISE ? "`--precise` (f32 throughout, one rounding at the end)"
                                                  : "torch's rounding after each operation");
        /* the commits that models from the Hugging Face cache resolved to */
        bool any = false;
        for (uint32_t i = 0; i < plan->n_models; i++) {
            const cr_plan_model *pm = &plan->models[i];
            if (pm->stage >= 0 || !pm->revision) continue;
            cr_sbuf_printf(&pb, "%s`%s` at commit `%s`", any ? ", " : " Hugging Face snapshots read: ",
                           pm->lookup ? pm->lookup : pm->ref, pm->revision);
            any = true;
        }
        if (any) cr_sbuf_add(&pb, ".", 1);
        char *prov = cr_sbuf_take(&pb, NULL);
        if (!prov) return cr_fail(err, CR_ERR_NOMEM, "out of memory writing the model card");
        cr_hf_card card = {
            .out_path = o->out_path ? o->out_path : "merged",
            .method = m ? m->name : "?", .method_pretty = m ? m->pretty : NULL,
            .method_url = m ? m->url : NULL,
            .base_model = last->base_model >= 0 ? plan->models[last->base_model].ref : NULL,
            .base_not_named = m && !strcmp(m->name, "slerp"),
            .models = models, .n_models = n_models,
            .config_yaml = plan->recipe_text ? plan->recipe_text : "",
            .mergekit_version = p->mergekit_version.len ? cr_prog_str(p, p->mergekit_version) : NULL,
            .provenance = prov };
        size_t len;
        char *text = cr_hf_model_card(p->alloc, &card, &len);
        cr_free(p->alloc, prov);
        if (!text) return cr_fail(err, CR_ERR_NOMEM, "out of memory writing the model card");
        s = cr_program_aux_write(p, "README.md", text, len, err);
        cr_free(p->alloc, text);
        if (!s && plan->recipe_text)
            s = cr_program_aux_write(p, "mergekit_config.yml", plan->recipe_text, strlen(plan->recipe_text), err);
    }
    return s;
}
