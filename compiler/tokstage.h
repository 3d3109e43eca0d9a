/* tokstage.h — the tokenizer each stage's output directory holds, as
 * mergekit-multi 0.1.5 leaves it (spec/tokenizer-merge.md §5.0): every
 * stage is a run_merge of its own into an intermediate directory, which
 * gets the stage's merged tokenizer (a tokenizer merge) or its donor's
 * tokenizer files (--copy-tokenizer), a chat template, and a config.json
 * whose vocab_size the merge may have changed. A later stage loads that
 * directory as a model, so its tokenizer merge reads these. crucible keeps
 * stage outputs in the graph: this decides at plan time, stage by stage,
 * what the directory would hold, without writing it.
 */
#ifndef CR_TOKSTAGE_H
#define CR_TOKSTAGE_H

#include "tokmerge.h"

typedef struct cr_tokstage {
    cr_tokmerge *tm;            /* the stage's tokenizer merge (NULL: none) */
    int written;                /* the stage whose merged tokenizer the directory holds (-1: none) */
    int files;                  /* else the plan model (a directory) whose tokenizer files it holds (-1: none) */
    long long vocab_size;       /* its config.json vocab_size (-1: unknown) */
    char *tmpl;                 /* its chat template (NULL: none) */
    bool tmpl_set;              /* tmpl is a `chat_template:` of this stage or of one it copies from, which
                                 * mergekit wrote as the directory's chat_template.jinja in place of the
                                 * files directory's own template */
    bool v4_resaved;            /* 0.1.4: the directory holds the files directory's tokenizer as transformers 4
                                 * re-saved it for an earlier stage's `chat_template:`, without that template
                                 * (0.1.4's _copy_tokenizer does not copy chat_template.jinja) */
} cr_tokstage;

/* Decides stages [0, n) of `plan` in order (each stage's tokenizer merge
 * sees the earlier stages' directories). `copy_tokenizer`: mergekit-multi
 * passes --copy-tokenizer to every stage. `mk`: the mergekit release
 * reproduced; under 0.1.4 a tokenizer merge in a stage before the plan's
 * last is refused (not supported yet), and a merged tokenizer is always
 * written (transformers 4 re-saves even the identity). *out: n entries,
 * freed with cr_tokstages_free. Errors are the tokenizer merge's, naming
 * the model. */
cr_status cr_tokstages_build(const cr_allocator *a, const cr_plan *plan, uint32_t n, bool copy_tokenizer,
                             cr_mk_version mk, cr_tokstage **out, cr_error *err);
void cr_tokstages_free(const cr_allocator *a, cr_tokstage *s, uint32_t n);

/* The tokenizer files a plan model's directory holds: for a directory,
 * its own (*json / *cfg read from it, NULL when absent; a directory with
 * only a slow tokenizer converted as transformers 5 does, formats/tokslow.h,
 * *converted set); for a stage output, what `stages` says that stage's
 * directory holds (rendered from its merge, or the donor directory's, read
 * or converted). *V: its config vocab_size (-1: unknown). No tokenizer.json
 * (and no slow tokenizer) is an error. The caller owns *json and *cfg
 * (cJSON_Delete; *cfg NULL when there is none). */
cr_status cr_tokstage_model(const cr_allocator *a, const cr_plan *plan, const cr_tokstage *stages,
                            const cr_plan_model *m, cJSON **json, cJSON **cfg, long long *V, bool *converted,
                            cr_error *err);

/* A model directory's own chat template as transformers 5 loads it
 * (chat_template.jinja, else tokenizer_config.json's), or NULL; and the
 * text `chat_template: ct` of stage `si` stands for (spec/tokenizer-merge.md
 * §4; NULL for `auto` when none of the stage's models has one). `auto`
 * counts the stage's own models (mergekit's referenced_models()), an
 * earlier stage's output by the template `stages` says its directory holds
 * (NULL `stages`: stage outputs count as having none). Both malloc'd with
 * `a`. */
char *cr_tokstage_model_template(const cr_allocator *a, const char *dir);
cr_status cr_tokstage_resolve_template(const cr_allocator *a, const cr_plan *plan, const cr_tokstage *stages,
                                       uint32_t si, const char *ct, char **out, cr_error *err);

/* mergekit 0.1.4 first looks every `chat_template:` value up as a file
 * name; a '/'-separated part longer than NAME_MAX fails there. Refuses
 * such a value (CR_ERR_CONFIG), else CR_OK. */
cr_status cr_tokstage_check_014_template(const char *ct, cr_error *err);

#endif
