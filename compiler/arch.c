/* arch.c — architecture from tensor names (arch.h).
 *
 * One pass finds every `<prefix>.<digits>.` candidate and counts distinct
 * indices per prefix; the winner's tensors are grouped by layer. Everything
 * else is split into pre/post by name: what embeds tokens or positions comes
 * before the layers, the rest after, which is how mergekit's hand-written
 * architecture files for llama, mistral, qwen, gemma, gpt2 and gpt-neox
 * split them.
 */
#include "arch.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYER_INDEX 100000

typedef struct prefix_stat {
    const char *name;       /* arena copy */
    size_t len;
    uint8_t *seen;          /* MAX_LAYER_INDEX flags, allocated lazily */
    long long n_distinct, max_index, n_tensors;
} prefix_stat;

/* First ".<digits>." in `s`: prefix length and index; false if none. */
static bool find_layer(const char *s, size_t *plen, long long *index, const char **rest)
{
    for (const char *p = strchr(s, '.'); p; p = strchr(p + 1, '.')) {
        const char *q = p + 1;
        if (!isdigit((unsigned char)*q)) continue;
        long long v = 0;
        while (isdigit((unsigned char)*q) && v <= MAX_LAYER_INDEX) v = v * 10 + (*q++ - '0');
        if (*q != '.' || v >= MAX_LAYER_INDEX || p == s) continue;
        *plen = (size_t)(p - s);
        *index = v;
        *rest = q + 1;
        return true;
    }
    return false;
}

static bool contains_component(const char *name, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = strstr(name, word); p; p = strstr(p + 1, word)) {
        bool start = p == name || p[-1] == '.';
        bool end = p[wl] == 0 || p[wl] == '.';
        if (start && end) return true;
    }
    return false;
}

bool cr_arch_is_tied_head(const char *name)
{
    return contains_component(name, "lm_head") || contains_component(name, "embed_out");
}

bool cr_arch_is_embed(const char *name)
{
    static const char *const words[] = { "embed_tokens", "lm_head", "wte", "embed_in",
                                         "embed_out", "word_embeddings" };
    for (size_t i = 0; i < CR_ARRAY_LEN(words); i++)
        if (contains_component(name, words[i])) return true;
    return false;
}

static bool is_input_embedding(const char *name)
{
    static const char *const words[] = { "embed_tokens", "wte", "wpe", "embed_in", "word_embeddings",
                                         "embed_positions", "position_embeddings",
                                         "token_type_embeddings", "embeddings" };
    for (size_t i = 0; i < CR_ARRAY_LEN(words); i++)
        if (contains_component(name, words[i])) return true;
    return false;
}

static bool is_token_embedding(const char *name)
{
    return contains_component(name, "embed_tokens") || contains_component(name, "wte") ||
           contains_component(name, "embed_in") || contains_component(name, "word_embeddings");
}

static bool skipped(const char *name)
{
    size_t n = strlen(name);
    return (n >= 9 && !strcmp(name + n - 9, ".inv_freq"));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

cr_status cr_arch_analyse(cr_arena *ar, const char *const *names, uint32_t n, cr_arch *out)
{
    memset(out, 0, sizeof *out);
    const cr_allocator *alloc = ar->alloc;
    cr_status st = CR_OK;
    cr_vec stats;
    cr_vec_init(&stats, alloc, sizeof(prefix_stat));
    const char **sorted = cr_arena_alloc(ar, (n ? n : 1) * sizeof *sorted);
    if (!sorted) return CR_ERR_NOMEM;
    memcpy(sorted, names, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_str);

    for (uint32_t i = 0; i < n && !st; i++) {
        size_t plen;
        long long index;
        const char *rest;
        if (skipped(sorted[i]) || !find_layer(sorted[i], &plen, &index, &rest)) continue;
        prefix_stat *ps = NULL;
        for (size_t k = 0; k < stats.len; k++) {
            prefix_stat *c = &CR_VEC_AT(&stats, prefix_stat, k);
            if (c->len == plen && !memcmp(c->name, sorted[i], plen)) ps = c;
        }
        if (!ps) {
            prefix_stat fresh = { cr_arena_strndup(ar, sorted[i], plen), plen,
                                  cr_calloc(alloc, MAX_LAYER_INDEX, 1), 0, -1, 0 };
            if (!fresh.name || !fresh.seen || !(ps = cr_vec_push(&stats, &fresh))) {
                cr_free(alloc, fresh.seen);
                st = CR_ERR_NOMEM;
                break;
            }
        }
        ps->n_tensors++;
        if (!ps->seen[index]) { ps->seen[index] = 1; ps->n_distinct++; }
        if (index > ps->max_index) ps->max_index = index;
    }
    prefix_stat *best = NULL;
    for (size_t k = 0; k < stats.len; k++) {
        prefix_stat *c = &CR_VEC_AT(&stats, prefix_stat, k);
        if (!best || c->n_distinct > best->n_distinct ||
            (c->n_distinct == best->n_distinct && c->n_tensors > best->n_tensors))
            best = c;
    }
    if (!st && best) {
        out->layer_prefix = best->name;
        out->n_layers = best->max_index + 1;
        out->layers = cr_arena_alloc(ar, (size_t)out->n_layers * sizeof *out->layers);
        if (!out->layers) st = CR_ERR_NOMEM;
    }
    /* Two passes over the sorted names: count, then fill. */
    uint32_t *counts = NULL;
    if (!st && out->n_layers) {
        counts = cr_calloc(alloc, (size_t)out->n_layers, sizeof *counts);
        if (!counts) st = CR_ERR_NOMEM;
    }
    if (!st) {
        out->pre = cr_arena_alloc(ar, (n ? n : 1) * sizeof(char *));
        out->post = cr_arena_alloc(ar, (n ? n : 1) * sizeof(char *));
        if (!out->pre || !out->post) st = CR_ERR_NOMEM;
    }
    for (int pass = 0; pass < 2 && !st; pass++) {
        if (pass == 1) {
            for (long long l = 0; l < out->n_layers && !st; l++) {
                out->layers[l].rests = cr_arena_alloc(ar, (counts[l] ? counts[l] : 1) * sizeof(char *));
                if (!out->layers[l].rests) st = CR_ERR_NOMEM;
            }
            if (st) break;
        }
        for (uint32_t i = 0; i < n; i++) {
            const char *s = sorted[i];
            if (skipped(s)) continue;
            size_t plen;
            long long index;
            const char *rest;
            bool is_layer = out->layer_prefix && find_layer(s, &plen, &index, &rest) &&
                            plen == best->len && !memcmp(s, best->name, plen);
            if (is_layer) {
                if (pass == 0) counts[index]++;
                else out->layers[index].rests[out->layers[index].n_rests++] = rest;
            } else if (pass == 1) {
                if (is_input_embedding(s)) out->pre[out->n_pre++] = s;
                else out->post[out->n_post++] = s;
                if (!out->embed && is_token_embedding(s)) out->embed = s;
            }
        }
    }
    cr_free(alloc, counts);
    for (size_t k = 0; k < stats.len; k++) cr_free(alloc, CR_VEC_AT(&stats, prefix_stat, k).seen);
    cr_vec_free(&stats);
    return st;
}
