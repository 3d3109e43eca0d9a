/* tokwrite.h — the tokenizer files of a tokenizer merge, as mergekit 0.1.5
 * saves them through transformers 5 (spec/tokenizer-merge.md §1.6). */
#ifndef CR_TOKWRITE_H
#define CR_TOKWRITE_H

#include "program.h"
#include "tokmerge.h"

/* Adds tokenizer.json, tokenizer_config.json and (when `tmpl` is not NULL)
 * chat_template.jinja as aux records of p. */
cr_status cr_tokmerge_write(cr_program *p, const cr_plan *plan, const cr_tokmerge *tm, const char *tmpl,
                            cr_error *err);

#endif
