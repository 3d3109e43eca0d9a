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
#include "hfdir.h"
#include "infile.h"
#include "jsonw.h"
#include "limits.h"
#include "layout.h"
#include "tokstage.h"
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

static cr_status aux_model(cr_program *p, const cr_plan *plan, const cr_aux_options *o, const cr_plan_stage *last,
                           int donor, const char *donor_dir, bool v015, const cr_tokstage *ts, cr_error *err);
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
    /* a tokenizer merge in any stage: what each stage's directory holds
     * (compiler/tokstage.c; the output's is the last stage's) */
    /* also a chat template in a multi-stage recipe: a stage directory's
     * chat_template.jinja is what a later stage copies or counts for `auto` */
    cr_tokstage *ts = NULL;
    bool any = false;
    for (uint32_t i = 0; i < plan->n_stages; i++)
        any |= plan->stages[i].tokenizer_source != NULL || (plan->n_stages > 1 && plan->stages[i].chat_template);
    if (donor_dir && any) {
        if ((s = cr_tokstages_build(p->alloc, plan, plan->n_stages, o && o->copy_tokenizer,
                                    v015 ? CR_MK_0_1_5 : CR_MK_0_1_4, &ts, err)))
            return s;
    }
    s = aux_model(p, plan, o, last, donor, donor_dir, v015, ts, err);
    cr_tokstages_free(p->alloc, ts, plan->n_stages);
    if (!s) s = aux_card(p, plan, o, last, err);
    return s;
}

static cr_status aux_model(cr_program *p, const cr_plan *plan, const cr_aux_options *o, const cr_plan_stage *last,
                           int donor, const char *donor_dir, bool v015, const cr_tokstage *ts, cr_error *err)
{
    cr_status s = CR_OK;
    const cr_tokstage *fin = ts ? &ts[plan->n_stages - 1] : NULL;
    const cr_tokmerge *tm = fin ? fin->tm : NULL;
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
            /* config.json as the stages leave it: each stage's directory
             * has its donor's, with the stage's dtype and layer count set;
             * the nearest stage along the donor chain that sets one wins */
            const cr_plan_stage *ds = last, *ls = last;
            for (int guard = 0; guard < 64; guard++) {
                int dm = ds->donor_model;
                if (ds->out_dtype != CR_DTYPE_NONE || ds->dtype != CR_DTYPE_NONE || dm < 0 || plan->models[dm].stage < 0) break;
                ds = &plan->stages[plan->models[dm].stage];
            }
            for (int guard = 0; guard < 64; guard++) {
                int dm = ls->donor_model;
                if (ls->num_layers_out >= 0 || dm < 0 || plan->models[dm].stage < 0) break;
                ls = &plan->stages[plan->models[dm].stage];
            }
            cr_dtype dt = ds->out_dtype != CR_DTYPE_NONE ? ds->out_dtype : ds->dtype;
            cr_hf_config_edit edit = { .dtype_name = dt != CR_DTYPE_NONE ? cr_dtype_torch_name(dt) : NULL,
                                       .dtype_key_only = v015,
                                       .layer_key = ls->num_layers_out >= 0 ? ls->num_layers_key : NULL,
                                       .n_layers = ls->num_layers_out };
            /* the merged vocabulary's size, this stage's or an earlier one's
             * that the donor's directory carries */
            long long vs = -1;
            bool has = cr_model_config_int(&plan->models[donor].model, "vocab_size", &vs) ||
                       cr_model_config_int(&plan->models[donor].model, "text_config.vocab_size", &vs);
            if ((tm && !tm->identity) || (fin && fin->vocab_size >= 0 && has && fin->vocab_size != vs)) {
                edit.vocab_key = cr_model_config_int(&plan->models[donor].model, "vocab_size", &vs) ||
                                 !cr_model_config_int(&plan->models[donor].model, "text_config.vocab_size", &vs)
                                     ? "vocab_size" : "text_config.vocab_size";
                edit.vocab_size = tm && !tm->identity ? tm->n_pad : (uint64_t)fin->vocab_size;
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
        /* with a tokenizer merge in some stage (compiler/tokstage.c): the
         * files the last stage leaves, a directory's copied (the identity
         * permutation: the source's files as they are, under 0.1.5), or a
         * merged tokenizer written (compiler/tokwrite.c; always under
         * 0.1.4, whose transformers 4 save_pretrained adds
         * special_tokens_map.json and added_tokens_decoder to any
         * tokenizer). A source that is none of the inputs has no input
         * files to copy (a .crb binds only inputs): always written. */
        if (fin) tok_model = fin->files;
        if (fin && fin->written >= 0) {
            s = cr_tokmerge_write(p, plan, ts[fin->written].tm, fin->tmpl, err);
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
            /* with `chat_template:` 0.1.5 re-saves a tokenizer.model beside
             * a tokenizer_config.json too (merge.py _copy_tokenizer): the
             * conversion replaces the copied files where crucible makes it
             * (LlamaTokenizer), else they are copied as before */
            bool slow = v015 && cr_tokslow_kind_of(tok_dir) != CR_TOKSLOW_NONE;
            if (slow && (!n || last->chat_template)) {
                cr_error e2 = { 0 };
                if (cr_tokslow_resave(p->alloc, tok_dir, plan->models[tok_model].ref, mt, false, &conv_tok,
                                      &conv_tok_len, &conv_cfg, &conv_cfg_len, &e2))
                    conv_tok = conv_cfg = NULL;
                else
                    n = 0;
                /* the donor's own template goes with it, as transformers loads it */
                snprintf(path, sizeof path, "%s/chat_template.jinja", tok_dir);
                struct stat sb;
                if (conv_tok && !stat(path, &sb) && S_ISREG(sb.st_mode)) names[n++] = "chat_template.jinja";
            }
            bool have_tok = n || conv_tok;
            /* `chat_template:` replaces the donor's template; with no tokenizer
             * to go with it mergekit saves none (it warns). With stages
             * (compiler/tokstage.c) the last stage's directory decides: its
             * own `chat_template:`, or an earlier stage's whose directory it
             * copies (mergekit-multi wrote chat_template.jinja there) */
            char *tmpl = NULL;
            const char *ct = last->chat_template;
            if (fin) {
                if (fin->tmpl_set && have_tok && !(tmpl = cr_strdup(p->alloc, fin->tmpl)))
                    s = cr_fail(err, CR_ERR_NOMEM, "out of memory");
                ct = fin->tmpl_set ? fin->tmpl : ct;
            } else if (ct && have_tok) {
                if (!v015) s = cr_tokstage_check_014_template(ct, err);
                if (!s) s = cr_tokstage_resolve_template(p->alloc, plan, NULL, plan->n_stages - 1, ct, &tmpl, err);
            }
            if (s) {
                cr_free(p->alloc, conv_tok);
                cr_free(p->alloc, conv_cfg);
                return s;
            }
            /* 0.1.4 re-saves the donor's tokenizer through transformers 4
             * whenever chat_template is set (merge.py _copy_tokenizer), the
             * donor's own template kept when `auto` finds none */
            bool has_json = false, has_cfg = false;
            for (size_t i = 0; i < n; i++) {
                has_json = has_json || !strcmp(names[i], "tokenizer.json");
                has_cfg = has_cfg || !strcmp(names[i], "tokenizer_config.json");
            }
            /* ... and a stage's directory re-saved so passes on its files
             * without the template (compiler/tokstage.c) */
            bool v4_resaved = fin && fin->v4_resaved && !fin->tmpl_set;
            if ((ct || v4_resaved) && !v015 && has_json && has_cfg) {
                if (!tmpl && !v4_resaved) tmpl = cr_tokstage_model_template(p->alloc, tok_dir);
                s = cr_tokwrite_resave_v4(p, tok_dir, tmpl, err);
                cr_free(p->alloc, tmpl);
                return s;
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
