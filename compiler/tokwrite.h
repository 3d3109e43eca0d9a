/* tokwrite.h — the tokenizer files of a tokenizer merge, as mergekit 0.1.5
 * saves them through transformers 5 (spec/tokenizer-merge.md §1.6). */
#ifndef CR_TOKWRITE_H
#define CR_TOKWRITE_H

#include "program.h"
#include "tokmerge.h"

/* The two JSON files as transformers 5 saves the merged tokenizer (what a
 * later stage of a multi-stage recipe loads, compiler/tokstage.h). The
 * caller owns *tok and *cfg (cJSON_Delete). */
cr_status cr_tokmerge_render(const cr_allocator *a, const cr_tokmerge *tm, cJSON **tok, cJSON **cfg, cr_error *err);

/* Adds tokenizer.json, tokenizer_config.json and (when `tmpl` is not NULL)
 * chat_template.jinja as aux records of p. */
cr_status cr_tokmerge_write(cr_program *p, const cr_plan *plan, const cr_tokmerge *tm, const char *tmpl,
                            cr_error *err);

#endif
