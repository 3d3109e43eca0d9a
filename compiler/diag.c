/* diag.c — collecting and printing compiler diagnostics, and "did you mean".
 *
 * Diagnostics are appended to a vector; their strings live in the diags'
 * arena so a caller can hand them around freely until cr_diags_free. If an
 * allocation fails the diagnostic is dropped and `oom` is set, so the caller
 * can still report "out of memory" instead of silently losing errors. The
 * suggestion helper is a plain Levenshtein distance with a threshold that
 * grows with the word's length, so `wieght` finds `weight` but `t` does not
 * find `lambda`.
 */
#include "diag.h"
#include "termtext.h"

#include <stdlib.h>
#include <string.h>

void cr_diags_init(cr_diags *d, const cr_allocator *alloc)
{
    cr_arena_init(&d->arena, alloc);
    cr_vec_init(&d->items, alloc, sizeof(cr_diag));
    d->n_errors = d->n_warnings = 0;
    d->oom = false;
}

void cr_diags_free(cr_diags *d)
{
    cr_vec_free(&d->items);
    cr_arena_free(&d->arena);
    d->n_errors = d->n_warnings = 0;
}

void cr_diag_add(cr_diags *d, cr_diag_level level, cr_src_loc loc, const char *path,
                 const char *hint, const char *fmt, ...)
{
    cr_diag g = { .level = level, .loc = loc };
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *msg = n >= 0 ? cr_arena_alloc(&d->arena, (size_t)n + 1) : NULL;
    if (msg) vsnprintf(msg, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    g.msg = msg;
    g.path = path ? cr_arena_strdup(&d->arena, path) : NULL;
    g.hint = hint ? cr_arena_strdup(&d->arena, hint) : NULL;
    g.loc.file = loc.file ? cr_arena_strdup(&d->arena, loc.file) : NULL;
    /* Counts are kept even when recording fails, so a caller never mistakes
     * an out-of-memory diagnostic for a clean recipe. */
    if (level == CR_DIAG_ERROR) d->n_errors++;
    else if (level == CR_DIAG_WARNING) d->n_warnings++;
    if (!msg || (path && !g.path) || (hint && !g.hint) || (loc.file && !g.loc.file) ||
        !cr_vec_push(&d->items, &g))
        d->oom = true;
}

static const char *level_name(cr_diag_level l)
{
    switch (l) {
    case CR_DIAG_NOTE: return "note";
    case CR_DIAG_WARNING: return "warning";
    case CR_DIAG_ERROR: return "error";
    }
    return "error";
}

void cr_diags_print(const cr_diags *d, FILE *out)
{
    for (size_t i = 0; i < d->items.len; i++) {
        const cr_diag *g = &CR_VEC_AT(&d->items, cr_diag, i);
        /* names in messages come from the recipe and the models: escaped
         * for the terminal (termtext.h) */
        if (g->loc.file) {
            cr_text_fput(out, g->loc.file, 0);
            if (g->loc.line > 0) fprintf(out, ":%d", g->loc.line);
            if (g->loc.line > 0 && g->loc.col > 0) fprintf(out, ":%d", g->loc.col);
            fputs(": ", out);
        }
        fprintf(out, "%s: ", level_name(g->level));
        if (g->path && g->path[0]) {
            cr_text_fput(out, g->path, 0);
            fputs(": ", out);
        }
        if (g->msg) cr_text_fput(out, g->msg, CR_TEXT_KEEP_LINES);
        fputc('\n', out);
        if (g->hint) {
            fputs("  hint: ", out);
            cr_text_fput(out, g->hint, CR_TEXT_KEEP_LINES);
            fputc('\n', out);
        }
    }
    if (d->oom) fputs("error: out of memory while recording diagnostics; some are missing\n", out);
}

/* Edit distance (insert, delete, substitute, adjacent swap) of two short
 * words; words longer than 64 bytes are never "close". */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return (size_t)-1;
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

const char *cr_suggest(const char *word, const char *const *candidates, size_t n)
{
    if (!word || !*word) return NULL;
    size_t len = strlen(word);
    /* Plausible misspelling: 1 edit for short words, about a third of the
     * length for longer ones (`dare-ties` -> `dare_ties`, `slerpp` -> `slerp`). */
    size_t limit = len <= 3 ? 1 : len <= 5 ? 2 : len / 3 + 1;
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        if (!candidates[i] || !strcmp(candidates[i], word)) continue;
        size_t dist = edit_distance(word, candidates[i]);
        size_t clen = strlen(candidates[i]);
        size_t lim = CR_MIN(limit, clen <= 3 ? 1 : clen / 2);
        if (dist <= lim && dist < best_d) {
            best = candidates[i];
            best_d = dist;
        }
    }
    return best;
}
