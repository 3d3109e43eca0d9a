/* tokwrite.h — the tokenizer files of a tokenizer merge, as mergekit 0.1.5
 * saves them through transformers 5 (spec/tokenizer-merge.md §1.6) or
 * 0.1.4 through transformers 4 (§7). */
#ifndef CR_TOKWRITE_H
#define CR_TOKWRITE_H

#include "program.h"
#include "tokmerge.h"

/* The two JSON files as transformers 5 saves the merged tokenizer (what a
 * later stage of a multi-stage recipe loads, compiler/tokstage.h). The
 * caller owns *tok and *cfg (cJSON_Delete). */
cr_status cr_tokmerge_render(const cr_allocator *a, const cr_tokmerge *tm, cJSON **tok, cJSON **cfg, cr_error *err);

/* Adds tokenizer.json, tokenizer_config.json (and under 0.1.4,
 * tm->mk, special_tokens_map.json) and (when `tmpl` is not NULL)
 * chat_template.jinja as aux records of p. */
cr_status cr_tokmerge_write(cr_program *p, const cr_plan *plan, const cr_tokmerge *tm, const char *tmpl,
                            cr_error *err);

/* mergekit 0.1.4's _copy_tokenizer with a chat_template: the tokenizer of
 * `dir` (tokenizer.json and tokenizer_config.json, both required) loaded
 * and saved again through transformers 4, with `tmpl` (NULL: none) as its
 * chat_template.jinja. Errors: the files cannot be read or parsed. */
cr_status cr_tokwrite_resave_v4(cr_program *p, const char *dir, const char *tmpl, cr_error *err);

#endif
