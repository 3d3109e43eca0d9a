/* diag.h — compiler diagnostics, collected so the user sees all at once.
 *
 * A diagnostic names the file, line and column (1-based; 0 when unknown),
 * the YAML path of the offending value (`models[2].parameters.weight`) and
 * says what is wrong and, in `hint`, what would be right. Printed as
 *   config.yml:7:14: error: models[2].parameters.weight: ... 
 *     hint: did you mean 'weight'?
 */
#ifndef CR_DIAG_H
#define CR_DIAG_H

#include <stdio.h>
#include "base.h"

typedef enum cr_diag_level { CR_DIAG_NOTE, CR_DIAG_WARNING, CR_DIAG_ERROR } cr_diag_level;

typedef struct cr_src_loc {
    const char *file;   /* NULL when not from a file */
    int line, col;
} cr_src_loc;

typedef struct cr_diag {
    cr_diag_level level;
    cr_src_loc loc;
    const char *path;   /* YAML path or NULL */
    const char *msg;
    const char *hint;   /* NULL if none */
} cr_diag;

typedef struct cr_diags {
    cr_arena arena;     /* owns the strings */
    cr_vec items;       /* cr_diag */
    int n_errors, n_warnings;
    bool oom;           /* a diagnostic could not be recorded */
} cr_diags;

void cr_diags_init(cr_diags *d, const cr_allocator *alloc);
void cr_diags_free(cr_diags *d);
/* Record one diagnostic; strings are copied. hint may be NULL. */
void cr_diag_add(cr_diags *d, cr_diag_level level, cr_src_loc loc, const char *path,
                 const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Print all, in the order recorded. */
void cr_diags_print(const cr_diags *d, FILE *out);

/* The closest candidate to `word` by edit distance, or NULL if none is
 * close enough to be a plausible misspelling. */
const char *cr_suggest(const char *word, const char *const *candidates, size_t n);

#endif
