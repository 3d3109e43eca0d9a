/* tokenizer_impl.h — what the tokenizer's loader (tokenizer.c) and its
 * encoder/decoder (tokenizer_encode.c) share: the loaded tokenizer's
 * layout and its hash tables. Private to infer/. */
#ifndef CR_TOKENIZER_IMPL_H
#define CR_TOKENIZER_IMPL_H

#include "tokenizer.h"
#include "pretok.h"

#include <string.h>

/* ---- hash tables ------------------------------------------------------- */

/* string -> int32 (open addressing, power-of-two capacity). Keys are
 * borrowed from the tokenizer's arena. */
typedef struct str_slot { const char *key; uint32_t len; int32_t val; } str_slot;
typedef struct str_map { str_slot *slots; uint32_t cap, n; } str_map;

static inline uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h ^ (h >> 29);
}

static inline bool str_map_init(str_map *m, cr_arena *ar, size_t expect)
{
    uint32_t cap = 16;
    while (cap < expect * 2 + 16) cap <<= 1;
    m->slots = cr_arena_alloc(ar, (size_t)cap * sizeof *m->slots);
    m->cap = cap;
    m->n = 0;
    return m->slots != NULL;
}

static inline str_slot *str_map_slot(const str_map *m, const char *k, size_t n)
{
    uint32_t i = (uint32_t)hash_bytes(k, n) & (m->cap - 1);
    for (;;) {
        str_slot *s = &m->slots[i];
        if (!s->key || (s->len == n && !memcmp(s->key, k, n))) return s;
        i = (i + 1) & (m->cap - 1);
    }
}

static inline int32_t str_map_get(const str_map *m, const char *k, size_t n)
{
    if (!m->cap) return -1;
    str_slot *s = str_map_slot(m, k, n);
    return s->key ? s->val : -1;
}

/* Insert if absent (capacity was sized at init); returns false if present. */
static inline bool str_map_put(str_map *m, const char *k, size_t n, int32_t v)
{
    str_slot *s = str_map_slot(m, k, n);
    if (s->key) return false;
    s->key = k;
    s->len = (uint32_t)n;
    s->val = v;
    m->n++;
    return true;
}

/* (left id, right id) -> (rank, merged id). */
typedef struct merge_slot { uint64_t key; uint32_t rank; int32_t id; } merge_slot;
typedef struct merge_map { merge_slot *slots; uint32_t cap; } merge_map;

static inline uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static inline merge_slot *merge_slot_find(const merge_map *m, uint64_t key)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    uint32_t i = (uint32_t)(h >> 32) & (m->cap - 1);
    for (;;) {
        merge_slot *s = &m->slots[i];
        if (s->id < 0 || s->key == key) return s;
        i = (i + 1) & (m->cap - 1);
    }
}

static inline const merge_slot *merge_get(const merge_map *m, int32_t a, int32_t b)
{
    if (!m->cap) return NULL;
    merge_slot *s = merge_slot_find(m, pair_key(a, b));
    return s->id >= 0 ? s : NULL;
}

/* ---- the tokenizer ------------------------------------------------------ */

typedef struct added_token {
    const char *content; size_t len;
    const char *norm; size_t norm_len;   /* normalized content (normalized tokens) */
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
} added_token;

typedef enum norm_kind { NORM_PREPEND, NORM_REPLACE, NORM_NFC, NORM_NFD, NORM_STRIP } norm_kind;
typedef struct norm_step {
    norm_kind kind;
    const char *a; size_t alen;         /* Prepend text / Replace pattern */
    const char *b; size_t blen;         /* Replace content */
    bool left, right;                   /* Strip */
} norm_step;

typedef enum split_behavior { SB_ISOLATED, SB_REMOVED, SB_MERGED_PREV, SB_MERGED_NEXT, SB_CONTIGUOUS } split_behavior;
typedef enum pre_kind { PRE_METASPACE, PRE_BYTELEVEL, PRE_SPLIT_REGEX, PRE_SPLIT_STRING, PRE_DIGITS } pre_kind;
typedef enum prepend_scheme { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } prepend_scheme;
typedef struct pre_step {
    pre_kind kind;
    const char *rep; size_t rep_len;    /* Metaspace replacement (UTF-8) / Split string */
    prepend_scheme prepend;
    bool split;                         /* Metaspace */
    bool add_prefix_space, use_regex;   /* ByteLevel */
    cr_split_pattern pattern;           /* Split regex */
    split_behavior behavior;
    bool invert;
    bool individual_digits;
} pre_step;

typedef enum dec_kind { DEC_BYTELEVEL, DEC_METASPACE, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP } dec_kind;
typedef struct dec_step {
    dec_kind kind;
    const char *a; size_t alen, blen;   /* Metaspace replacement; Replace from/to; Strip char */
    const char *b;
    prepend_scheme prepend;
    int start, stop;                    /* Strip counts */
} dec_step;

typedef struct post_item { bool is_seq; const int32_t *ids; uint32_t n_ids; } post_item;

struct cr_tokenizer {
    const cr_allocator *alloc;
    cr_arena arena;
    char *name;
    /* BPE model */
    str_map vocab;
    merge_map merges;
    int32_t unk_id;                     /* -1: none */
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t byte_ids[256];              /* <0xHH> ids (byte_fallback); -1 absent */
    /* id -> content (added tokens override vocab, as in tokenizers) */
    const char **id_str;
    uint32_t *id_len;
    bool *id_special;
    uint32_t n_ids;
    added_token *added;
    uint32_t n_added;
    bool any_normalized_added;
    norm_step *norm; uint32_t n_norm;
    pre_step *pre; uint32_t n_pre;
    dec_step *dec; uint32_t n_dec;
    const char *dec_unsupported;        /* decoder type we cannot run, if any */
    post_item *post; uint32_t n_post;
    const char *post_unsupported;
};

/* Runs the tokenizer's normalizer over s[0..n) into ar (tokenizer_encode.c);
 * the loader uses it for normalized added tokens. */
cr_status cr_tok_normalize(const cr_tokenizer *t, cr_arena *ar, const char *s, size_t n,
                                char **out, size_t *out_len, cr_error *err);

#endif
