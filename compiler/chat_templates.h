/* chat_templates.h — mergekit's named chat templates (`chat_template: chatml`
 * etc.), the texts of mergekit 0.1.5's _data/chat_templates/ (generated into
 * chat_templates.c), and mergekit's rule for reading a `chat_template` value
 * (spec/tokenizer-merge.md §4.1).
 */
#ifndef CR_CHAT_TEMPLATES_H
#define CR_CHAT_TEMPLATES_H

#include <stddef.h>

typedef struct cr_chat_template {
    const char *name;
    size_t len;
    const char *text;           /* the .jinja file's bytes (ends in "\n") */
} cr_chat_template;

/* The named template, or NULL. */
const cr_chat_template *cr_chat_template_find(const char *name);

typedef enum {
    CR_CHAT_AUTO,               /* "auto": the most common template of the inputs */
    CR_CHAT_NAMED,              /* a name mergekit ships */
    CR_CHAT_LITERAL,            /* Jinja text, used verbatim */
    CR_CHAT_INVALID,            /* mergekit raises "Invalid chat template" */
} cr_chat_kind;

/* mergekit 0.1.5's reading of `chat_template: s`: a name is looked up only
 * when s is under 256 bytes with no newline and no '{'; anything else is
 * Jinja text, refused when under 20 bytes or without '{'. `*named` is set
 * for CR_CHAT_NAMED. */
cr_chat_kind cr_chat_template_kind(const char *s, const cr_chat_template **named);

#endif
