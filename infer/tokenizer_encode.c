/* tokenizer_encode.c — running a loaded tokenizer (tokenizer.c): added
 * tokens, normalizer, pre-tokenizer and BPE to encode; the decoder chain to
 * decode. The BPE merge loop is a transcription of the tokenizers crate's
 * `Word::merge_all` (a heap keyed by rank then position, stale entries
 * skipped), so ties and odd merge tables behave identically. Each call uses
 * its own scratch arena: a tokenizer is shared read-only between threads. */
#include "tokenizer_impl.h"
#include "unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- encode: pieces ------------------------------------------------------ */

/* A span of text on its way through the pipeline, or a finished added
 * token (id >= 0). at_start: the span begins at offset 0 of the original
 * input (Metaspace prepend_scheme "first"). */
typedef struct piece { const char *s; size_t n; int32_t id; bool at_start; } piece;

typedef struct enc {
    const cr_tokenizer *t;
    cr_arena *ar;
    cr_error *err;
} enc;

#define TOK_NOMEM(E) cr_fail((E)->err, CR_ERR_NOMEM, "out of memory while tokenizing")

static bool push_piece(cr_vec *v, const char *s, size_t n, int32_t id, bool at_start)
{
    if (n == 0 && id < 0) return true;
    piece p = { s, n, id, at_start };
    return cr_vec_push(v, &p) != NULL;
}

static bool is_word_char(uint32_t cp) { return cr_uni_is_letter(cp) || cr_uni_is_number(cp) || cp == '_'; }

/* Code point just before byte offset i of s (i > 0). */
static uint32_t cp_before(const char *s, size_t i)
{
    size_t j = i - 1;
    while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
    uint32_t cp = 0;
    if (!cr_utf8_decode(s + j, i - j, &cp)) cp = (unsigned char)s[i - 1];
    return cp;
}

/* Split one text piece on the added tokens of one kind (normalized or
 * not), leftmost-longest, applying single_word / lstrip / rstrip as
 * tokenizers' AddedVocabulary::find_matches does. */
static cr_status split_added(enc *E, const piece *in, bool normalized, cr_vec *out)
{
    const cr_tokenizer *t = E->t;
    const char *s = in->s;
    size_t n = in->n, pos = 0, last = 0;
    while (pos < n) {
        /* leftmost-longest match at or after pos */
        size_t best_at = n, best_len = 0;
        const added_token *best = NULL;
        for (size_t i = pos; i < n && !best; i++) {
            for (uint32_t k = 0; k < t->n_added; k++) {
                const added_token *a = &t->added[k];
                if (a->normalized != normalized) continue;
                const char *c = normalized ? a->norm : a->content;
                size_t cl = normalized ? a->norm_len : a->len;
                if (cl == 0 || cl > n - i || c[0] != s[i] || memcmp(c, s + i, cl)) continue;
                if (cl > best_len) { best = a; best_len = cl; best_at = i; }
            }
        }
        if (!best) break;
        size_t start = best_at, stop = best_at + best_len;
        pos = stop;
        if (best->single_word) {
            uint32_t cp;
            bool start_ok = start == 0 || !is_word_char(cp_before(s, start));
            bool stop_ok = stop == n || !cr_utf8_decode(s + stop, n - stop, &cp) || !is_word_char(cp);
            if (!start_ok || !stop_ok) continue;
        }
        if (best->lstrip) {
            size_t ns = start;
            while (ns > 0 && cr_uni_is_space(cp_before(s, ns))) {
                size_t j = ns - 1;
                while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
                ns = j;
            }
            start = ns > last ? ns : last;
        }
        if (best->rstrip) {
            uint32_t cp;
            size_t l;
            while (stop < n && (l = cr_utf8_decode(s + stop, n - stop, &cp)) && cr_uni_is_space(cp)) stop += l;
            pos = stop;
        }
        if (start > last && !push_piece(out, s + last, start - last, -1, in->at_start && last == 0)) return TOK_NOMEM(E);
        if (!push_piece(out, s + start, stop - start, best->id, false)) return TOK_NOMEM(E);
        last = stop;
    }
    if (last < n && !push_piece(out, s + last, n - last, -1, in->at_start && last == 0)) return TOK_NOMEM(E);
    return CR_OK;
}

/* ---- encode: normalizer -------------------------------------------------- */

static char *replace_all(cr_arena *ar, const char *s, size_t n, const char *a, size_t al,
                         const char *b, size_t bl, size_t *out_len)
{
    size_t count = 0;
    for (size_t i = 0; i + al <= n;) {
        if (!memcmp(s + i, a, al)) { count++; i += al; } else i++;
    }
    size_t len = n + count * bl - count * al;
    char *o = cr_arena_alloc(ar, len + 1);
    if (!o) return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        if (i + al <= n && !memcmp(s + i, a, al)) { memcpy(o + w, b, bl); w += bl; i += al; }
        else o[w++] = s[i++];
    }
    *out_len = w;
    return o;
}

cr_status cr_tok_normalize(const cr_tokenizer *t, cr_arena *ar, const char *s, size_t n,
                                char **out, size_t *out_len, cr_error *err)
{
    const char *cur = s;
    size_t len = n;
    for (uint32_t i = 0; i < t->n_norm; i++) {
        const norm_step *st = &t->norm[i];
        char *o = NULL;
        size_t ol = 0;
        switch (st->kind) {
        case NORM_PREPEND:
            if (!len) continue;   /* Prepend leaves an empty string alone */
            if (!(o = cr_arena_alloc(ar, st->alen + len + 1))) goto nomem;
            memcpy(o, st->a, st->alen);
            memcpy(o + st->alen, cur, len);
            ol = st->alen + len;
            break;
        case NORM_REPLACE:
            if (!(o = replace_all(ar, cur, len, st->a, st->alen, st->b, st->blen, &ol))) goto nomem;
            break;
        case NORM_NFC:
        case NORM_NFD: {
            char *tmp;
            cr_status rc = cr_uni_normalize(t->alloc, cur, len, st->kind == NORM_NFC, &tmp, &ol, err);
            if (rc) return rc;
            o = cr_arena_strndup(ar, tmp, ol);
            cr_free(t->alloc, tmp);
            if (!o) goto nomem;
            break;
        }
        case NORM_STRIP: {
            size_t a = 0, b = len;
            uint32_t cp;
            size_t l;
            while (st->left && a < b && (l = cr_utf8_decode(cur + a, b - a, &cp)) && cr_uni_is_space(cp)) a += l;
            while (st->right && b > a && cr_uni_is_space(cp_before(cur, b))) {
                b--;
                while (b > a && ((unsigned char)cur[b] & 0xC0) == 0x80) b--;
            }
            o = (char *)cur + a;   /* a view: no copy needed */
            ol = b - a;
            break;
        }
        }
        cur = o;
        len = ol;
    }
    *out = (char *)cur;
    *out_len = len;
    return CR_OK;
nomem:
    return cr_fail(err, CR_ERR_NOMEM, "out of memory while normalizing");
}

/* ---- encode: pre-tokenizer ----------------------------------------------- */

typedef struct seg { size_t a, b; bool match; } seg;

/* Turn the segments of one piece into pieces per the split behaviour
 * (tokenizers' NormalizedString::split). */
static cr_status apply_behavior(enc *E, const piece *in, seg *sg, size_t n_sg, split_behavior bh,
                                bool invert, cr_vec *out)
{
    if (invert) for (size_t i = 0; i < n_sg; i++) sg[i].match = !sg[i].match;
    size_t w = 0;
    bool prev = false;
    switch (bh) {
    case SB_ISOLATED: w = n_sg; break;
    case SB_REMOVED:
        for (size_t i = 0; i < n_sg; i++) if (!sg[i].match) sg[w++] = sg[i];
        break;
    case SB_MERGED_PREV:
        for (size_t i = 0; i < n_sg; i++) {
            if (sg[i].match && !prev && w) sg[w - 1].b = sg[i].b;
            else sg[w++] = sg[i];
            prev = sg[i].match;
        }
        break;
    case SB_MERGED_NEXT: {
        /* walk backwards, merging a match into the segment after it */
        size_t r = n_sg;
        for (size_t k = n_sg; k-- > 0;) {
            bool m = sg[k].match;
            if (m && !prev && r < n_sg) sg[r].a = sg[k].a;
            else sg[--r] = sg[k];
            prev = m;
        }
        memmove(sg, sg + r, (n_sg - r) * sizeof *sg);
        w = n_sg - r;
        break;
    }
    case SB_CONTIGUOUS:
        for (size_t i = 0; i < n_sg; i++) {
            if (w && sg[i].match == prev) sg[w - 1].b = sg[i].b;
            else sg[w++] = sg[i];
            prev = sg[i].match;
        }
        break;
    }
    for (size_t i = 0; i < w; i++)
        if (!push_piece(out, in->s + sg[i].a, sg[i].b - sg[i].a, -1, in->at_start && sg[i].a == 0))
            return TOK_NOMEM(E);
    return CR_OK;
}

static cr_status pre_step_run(enc *E, const pre_step *st, const piece *in, cr_vec *out, cr_vec *segs)
{
    const char *s = in->s;
    size_t n = in->n;
    segs->len = 0;
    switch (st->kind) {
    case PRE_METASPACE: {
        size_t ol;
        char *o = replace_all(E->ar, s, n, " ", 1, st->rep, st->rep_len, &ol);
        if (!o) return TOK_NOMEM(E);
        bool starts = ol >= st->rep_len && !memcmp(o, st->rep, st->rep_len);
        if (!starts && (st->prepend == PREPEND_ALWAYS || (st->prepend == PREPEND_FIRST && in->at_start))) {
            char *p = cr_arena_alloc(E->ar, ol + st->rep_len + 1);
            if (!p) return TOK_NOMEM(E);
            memcpy(p, st->rep, st->rep_len);
            memcpy(p + st->rep_len, o, ol);
            o = p;
            ol += st->rep_len;
        }
        piece np = { o, ol, -1, in->at_start };
        if (!st->split) return push_piece(out, o, ol, -1, in->at_start) ? CR_OK : TOK_NOMEM(E);
        size_t last = 0;
        for (size_t i = 0; i + st->rep_len <= ol;) {
            if (memcmp(o + i, st->rep, st->rep_len)) { i++; continue; }
            seg g1 = { last, i, false }, g2 = { i, i + st->rep_len, true };
            if (i > last && !cr_vec_push(segs, &g1)) return TOK_NOMEM(E);
            if (!cr_vec_push(segs, &g2)) return TOK_NOMEM(E);
            i += st->rep_len;
            last = i;
        }
        seg g = { last, ol, false };
        if (last < ol && !cr_vec_push(segs, &g)) return TOK_NOMEM(E);
        return apply_behavior(E, &np, segs->data, segs->len, SB_MERGED_NEXT, false, out);
    }
    case PRE_BYTELEVEL: {
        const char *src = s;
        size_t sl = n;
        if (st->add_prefix_space && (n == 0 || s[0] != ' ')) {
            char *p = cr_arena_alloc(E->ar, n + 2);
            if (!p) return TOK_NOMEM(E);
            p[0] = ' ';
            memcpy(p + 1, s, n);
            src = p;
            sl = n + 1;
        }
        /* split first (on the original bytes), then map every byte */
        cr_vec tmp;
        cr_vec_init(&tmp, E->t->alloc, sizeof(piece));
        if (st->use_regex) {
            for (size_t i = 0; i < sl;) {
                size_t m = cr_split_match(CR_SPLIT_GPT2, src + i, sl - i);
                if (!push_piece(&tmp, src + i, m, -1, false)) { cr_vec_free(&tmp); return TOK_NOMEM(E); }
                i += m;
            }
        } else if (!push_piece(&tmp, src, sl, -1, false)) {
            cr_vec_free(&tmp);
            return TOK_NOMEM(E);
        }
        for (size_t k = 0; k < tmp.len; k++) {
            const piece *p = &CR_VEC_AT(&tmp, piece, k);
            char *o = cr_arena_alloc(E->ar, p->n * 2 + 1);
            if (!o) { cr_vec_free(&tmp); return TOK_NOMEM(E); }
            size_t w = 0;
            for (size_t i = 0; i < p->n; i++) w += cr_utf8_encode(cr_byte_to_unicode((uint8_t)p->s[i]), o + w);
            if (!push_piece(out, o, w, -1, false)) { cr_vec_free(&tmp); return TOK_NOMEM(E); }
        }
        cr_vec_free(&tmp);
        return CR_OK;
    }
    case PRE_SPLIT_REGEX:
        for (size_t i = 0; i < n;) {
            size_t m = cr_split_match(st->pattern, s + i, n - i);
            seg g = { i, i + m, true };
            if (!cr_vec_push(segs, &g)) return TOK_NOMEM(E);
            i += m;
        }
        return apply_behavior(E, in, segs->data, segs->len, st->behavior, st->invert, out);
    case PRE_SPLIT_STRING: {
        size_t last = 0;
        for (size_t i = 0; i + st->rep_len <= n;) {
            if (memcmp(s + i, st->rep, st->rep_len)) { i++; continue; }
            seg g1 = { last, i, false }, g2 = { i, i + st->rep_len, true };
            if (i > last && !cr_vec_push(segs, &g1)) return TOK_NOMEM(E);
            if (!cr_vec_push(segs, &g2)) return TOK_NOMEM(E);
            i += st->rep_len;
            last = i;
        }
        seg g = { last, n, false };
        if (last < n && !cr_vec_push(segs, &g)) return TOK_NOMEM(E);
        return apply_behavior(E, in, segs->data, segs->len, st->behavior, st->invert, out);
    }
    case PRE_DIGITS: {
        size_t last = 0;
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t l = cr_utf8_decode(s + i, n - i, &cp);
            if (!l) l = 1, cp = 0;
            if (cr_uni_is_number(cp)) {
                seg g1 = { last, i, false }, g2 = { i, i + l, true };
                if (i > last && !cr_vec_push(segs, &g1)) return TOK_NOMEM(E);
                if (!cr_vec_push(segs, &g2)) return TOK_NOMEM(E);
                last = i + l;
            }
            i += l;
        }
        seg g = { last, n, false };
        if (last < n && !cr_vec_push(segs, &g)) return TOK_NOMEM(E);
        return apply_behavior(E, in, segs->data, segs->len,
                              st->individual_digits ? SB_ISOLATED : SB_CONTIGUOUS, false, out);
    }
    }
    return CR_OK;
}

/* ---- encode: BPE ---------------------------------------------------------- */

typedef struct sym { int32_t id; int32_t prev, next; bool dead; } sym;
typedef struct hmerge { uint32_t rank; uint32_t pos; int32_t new_id; } hmerge;

static bool hm_less(const hmerge *a, const hmerge *b)
{ return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos); }

static bool heap_push(cr_vec *h, hmerge m)
{
    if (!cr_vec_push(h, &m)) return false;
    hmerge *d = h->data;
    size_t i = h->len - 1;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hm_less(&d[i], &d[p])) break;
        hmerge x = d[i]; d[i] = d[p]; d[p] = x;
        i = p;
    }
    return true;
}

static hmerge heap_pop(cr_vec *h)
{
    hmerge *d = h->data;
    hmerge top = d[0];
    d[0] = d[--h->len];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->len && hm_less(&d[l], &d[m])) m = l;
        if (r < h->len && hm_less(&d[r], &d[m])) m = r;
        if (m == i) break;
        hmerge x = d[i]; d[i] = d[m]; d[m] = x;
        i = m;
    }
    return top;
}

static bool add_sym(cr_vec *syms, int32_t id)
{
    sym s = { id, (int32_t)syms->len - 1, (int32_t)syms->len + 1, false };
    return cr_vec_push(syms, &s) != NULL;
}

static cr_status bpe_word(enc *E, const char *w, size_t n, cr_vec *ids)
{
    const cr_tokenizer *t = E->t;
    if (t->ignore_merges) {
        int32_t id = str_map_get(&t->vocab, w, n);
        if (id >= 0) return cr_vec_push(ids, &id) ? CR_OK : TOK_NOMEM(E);
    }
    cr_vec syms, heap;
    cr_vec_init(&syms, t->alloc, sizeof(sym));
    cr_vec_init(&heap, t->alloc, sizeof(hmerge));
    cr_status st = CR_OK;
    bool pending_unk = false;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = cr_utf8_decode(w + i, n - i, &cp);
        if (!l) l = 1;
        int32_t id = str_map_get(&t->vocab, w + i, l);
        if (id >= 0) {
            if (pending_unk && !add_sym(&syms, t->unk_id)) goto nomem;
            pending_unk = false;
            if (!add_sym(&syms, id)) goto nomem;
            i += l;
            continue;
        }
        if (t->byte_fallback) {
            bool all = true;
            for (size_t k = 0; k < l; k++) all = all && t->byte_ids[(unsigned char)w[i + k]] >= 0;
            if (all) {
                /* tokenizers adds the byte tokens without flushing a
                 * pending unk first; keep that order */
                for (size_t k = 0; k < l; k++)
                    if (!add_sym(&syms, t->byte_ids[(unsigned char)w[i + k]])) goto nomem;
                i += l;
                continue;
            }
        }
        if (t->unk_id < 0) {
            st = cr_fail(E->err, CR_ERR_RUNTIME, "%s: character U+%04X has no token and the tokenizer has no unk token",
                         t->name, cp);
            goto out;
        }
        if (pending_unk && !t->fuse_unk && !add_sym(&syms, t->unk_id)) goto nomem;
        pending_unk = true;
        i += l;
    }
    if (pending_unk && !add_sym(&syms, t->unk_id)) goto nomem;
    if (syms.len) CR_VEC_AT(&syms, sym, syms.len - 1).next = -1;

    sym *sy = syms.data;
    for (size_t i = 0; i + 1 < syms.len; i++) {
        const merge_slot *m = merge_get(&t->merges, sy[i].id, sy[i + 1].id);
        if (m && !heap_push(&heap, (hmerge){ m->rank, (uint32_t)i, m->id })) goto nomem;
    }
    while (heap.len) {
        hmerge top = heap_pop(&heap);
        sym *cur = &sy[top.pos];
        if (cur->dead || cur->next < 0) continue;
        sym *right = &sy[cur->next];
        const merge_slot *m = merge_get(&t->merges, cur->id, right->id);
        if (!m || m->id != top.new_id) continue;
        cur->id = top.new_id;
        right->dead = true;
        cur->next = right->next;
        if (right->next >= 0) sy[right->next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) {
            const merge_slot *pm = merge_get(&t->merges, sy[cur->prev].id, cur->id);
            if (pm && !heap_push(&heap, (hmerge){ pm->rank, (uint32_t)cur->prev, pm->id })) goto nomem;
        }
        if (cur->next >= 0) {
            const merge_slot *nm = merge_get(&t->merges, cur->id, sy[cur->next].id);
            if (nm && !heap_push(&heap, (hmerge){ nm->rank, top.pos, nm->id })) goto nomem;
        }
    }
    for (size_t i = 0; i < syms.len; i++)
        if (!sy[i].dead && !cr_vec_push(ids, &sy[i].id)) goto nomem;
    goto out;
nomem:
    st = TOK_NOMEM(E);
out:
    cr_vec_free(&syms);
    cr_vec_free(&heap);
    return st;
}

/* ---- encode: the pipeline ------------------------------------------------- */

cr_status cr_tokenizer_encode(const cr_tokenizer *tok, const char *text, size_t len,
                              bool add_special, cr_vec *ids, cr_error *err)
{
    size_t bad;
    if (!cr_utf8_check(text, len, &bad))
        return cr_fail(err, CR_ERR_FORMAT, "text is not valid UTF-8 (byte %zu)", bad);
    if (add_special && tok->post_unsupported)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: post_processor '%s' is not supported (encode without special tokens)",
                       tok->name, tok->post_unsupported);
    cr_arena ar;
    cr_arena_init(&ar, tok->alloc);
    enc E = { tok, &ar, err };
    cr_vec a, b, segs, body;
    cr_vec_init(&a, tok->alloc, sizeof(piece));
    cr_vec_init(&b, tok->alloc, sizeof(piece));
    cr_vec_init(&segs, tok->alloc, sizeof(seg));
    cr_vec_init(&body, tok->alloc, sizeof(int32_t));
    cr_status st;
    piece whole = { text, len, -1, true };
    if ((st = split_added(&E, &whole, false, &a))) goto out;

    /* normalize each free piece, then match normalized added tokens in it */
    for (size_t i = 0; i < a.len; i++) {
        piece p = CR_VEC_AT(&a, piece, i);
        if (p.id >= 0) { if (!cr_vec_push(&b, &p)) { st = TOK_NOMEM(&E); goto out; } continue; }
        char *o;
        size_t ol;
        if ((st = cr_tok_normalize(tok, &ar, p.s, p.n, &o, &ol, err))) goto out;
        piece np = { o, ol, -1, p.at_start };
        if (tok->any_normalized_added) { if ((st = split_added(&E, &np, true, &b))) goto out; }
        else if (!push_piece(&b, o, ol, -1, p.at_start)) { st = TOK_NOMEM(&E); goto out; }
    }

    /* pre-tokenize: each step maps the current list of pieces to a new one */
    for (uint32_t k = 0; k < tok->n_pre; k++) {
        a.len = 0;
        for (size_t i = 0; i < b.len; i++) {
            piece p = CR_VEC_AT(&b, piece, i);
            if (p.id >= 0) { if (!cr_vec_push(&a, &p)) { st = TOK_NOMEM(&E); goto out; } continue; }
            if ((st = pre_step_run(&E, &tok->pre[k], &p, &a, &segs))) goto out;
        }
        cr_vec t = a; a = b; b = t;
    }

    for (size_t i = 0; i < b.len; i++) {
        const piece *p = &CR_VEC_AT(&b, piece, i);
        if (p->id >= 0) { if (!cr_vec_push(&body, &p->id)) { st = TOK_NOMEM(&E); goto out; } continue; }
        if ((st = bpe_word(&E, p->s, p->n, &body))) goto out;
    }

    if (add_special && tok->n_post) {
        for (uint32_t k = 0; k < tok->n_post; k++) {
            const post_item *it = &tok->post[k];
            if (it->is_seq) {
                for (size_t i = 0; i < body.len; i++)
                    if (!cr_vec_push(ids, &CR_VEC_AT(&body, int32_t, i))) { st = TOK_NOMEM(&E); goto out; }
            } else {
                for (uint32_t i = 0; i < it->n_ids; i++)
                    if (!cr_vec_push(ids, &it->ids[i])) { st = TOK_NOMEM(&E); goto out; }
            }
        }
    } else {
        for (size_t i = 0; i < body.len; i++)
            if (!cr_vec_push(ids, &CR_VEC_AT(&body, int32_t, i))) { st = TOK_NOMEM(&E); goto out; }
    }
out:
    cr_vec_free(&a);
    cr_vec_free(&b);
    cr_vec_free(&segs);
    cr_vec_free(&body);
    cr_arena_free(&ar);
    return st;
}

/* ---- decode ------------------------------------------------------------- */

typedef struct dtok { const char *s; size_t n; } dtok;

static bool parse_byte_token(const char *s, size_t n, uint8_t *b)
{
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return false;
    unsigned v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return false;
    }
    *b = (uint8_t)v;
    return true;
}

static cr_status dec_step_run(const dec_step *st, cr_arena *ar, cr_vec *toks, cr_error *err)
{
    dtok *tk = toks->data;
    size_t n = toks->len;
    switch (st->kind) {
    case DEC_BYTELEVEL:
    case DEC_FUSE: {
        size_t total = 0;
        for (size_t i = 0; i < n; i++) total += tk[i].n;
        char *o = cr_arena_alloc(ar, total + 1);
        if (!o) goto nomem;
        size_t w = 0;
        for (size_t i = 0; i < n; i++) {
            if (st->kind == DEC_FUSE) { memcpy(o + w, tk[i].s, tk[i].n); w += tk[i].n; continue; }
            /* map chars back to bytes; a token with an unmapped char keeps its bytes */
            size_t w0 = w;
            bool ok = true;
            for (size_t j = 0; j < tk[i].n;) {
                uint32_t cp;
                size_t l = cr_utf8_decode(tk[i].s + j, tk[i].n - j, &cp);
                int byte = l ? cr_unicode_to_byte(cp) : -1;
                if (byte < 0) { ok = false; break; }
                o[w++] = (char)byte;
                j += l;
            }
            if (!ok) { w = w0; memcpy(o + w, tk[i].s, tk[i].n); w += tk[i].n; }
        }
        tk[0] = (dtok){ o, w };
        toks->len = n ? 1 : 0;
        return CR_OK;
    }
    case DEC_METASPACE:
        for (size_t i = 0; i < n; i++) {
            size_t ol;
            char *o = replace_all(ar, tk[i].s, tk[i].n, st->a, st->alen, " ", 1, &ol);
            if (!o) goto nomem;
            if (i == 0 && st->prepend != PREPEND_NEVER && ol && o[0] == ' ') { o++; ol--; }
            tk[i] = (dtok){ o, ol };
        }
        return CR_OK;
    case DEC_REPLACE:
        for (size_t i = 0; i < n; i++) {
            size_t ol;
            char *o = replace_all(ar, tk[i].s, tk[i].n, st->a, st->alen, st->b, st->blen, &ol);
            if (!o) goto nomem;
            tk[i] = (dtok){ o, ol };
        }
        return CR_OK;
    case DEC_BYTEFALLBACK: {
        size_t w = 0;
        for (size_t i = 0; i < n;) {
            uint8_t byte;
            if (!parse_byte_token(tk[i].s, tk[i].n, &byte)) { tk[w++] = tk[i++]; continue; }
            size_t j = i;
            char *o = cr_arena_alloc(ar, (n - i) * 3 + 1);
            if (!o) goto nomem;
            size_t ol = 0;
            while (j < n && parse_byte_token(tk[j].s, tk[j].n, &byte)) o[ol++] = (char)byte, j++;
            if (cr_utf8_check(o, ol, NULL)) {
                tk[w++] = (dtok){ o, ol };
            } else {
                /* invalid bytes: one U+FFFD per byte token, as tokenizers does */
                for (size_t k = i; k < j; k++) tk[w++] = (dtok){ "\xEF\xBF\xBD", 3 };
            }
            i = j;
        }
        toks->len = w;
        return CR_OK;
    }
    case DEC_STRIP:
        for (size_t i = 0; i < n; i++) {
            const char *s = tk[i].s;
            size_t l = tk[i].n;
            for (int k = 0; k < st->start && l >= st->alen && !memcmp(s, st->a, st->alen); k++) { s += st->alen; l -= st->alen; }
            for (int k = 0; k < st->stop && l >= st->alen && !memcmp(s + l - st->alen, st->a, st->alen); k++) l -= st->alen;
            tk[i] = (dtok){ s, l };
        }
        return CR_OK;
    }
    return CR_OK;
nomem:
    return cr_fail(err, CR_ERR_NOMEM, "out of memory while decoding");
}

cr_status cr_tokenizer_decode(const cr_tokenizer *tok, const int32_t *ids, size_t n,
                              bool skip_special, char **out, size_t *out_len, cr_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (tok->dec_unsupported)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: decoder '%s' is not supported", tok->name, tok->dec_unsupported);
    cr_arena ar;
    cr_arena_init(&ar, tok->alloc);
    cr_vec toks;
    cr_vec_init(&toks, tok->alloc, sizeof(dtok));
    cr_status st = CR_OK;
    for (size_t i = 0; i < n; i++) {
        const char *s = cr_tokenizer_id_to_token(tok, ids[i]);
        if (!s) { st = cr_fail(err, CR_ERR_ARG, "%s: token id %d does not exist", tok->name, ids[i]); goto done; }
        if (skip_special && tok->id_special[ids[i]]) continue;
        dtok d = { s, tok->id_len[ids[i]] };
        if (!cr_vec_push(&toks, &d)) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory while decoding"); goto done; }
    }
    for (uint32_t k = 0; k < tok->n_dec && toks.len; k++)
        if ((st = dec_step_run(&tok->dec[k], &ar, &toks, err))) goto done;
    size_t total = 0;
    for (size_t i = 0; i < toks.len; i++) total += CR_VEC_AT(&toks, dtok, i).n;
    char *o = cr_malloc(tok->alloc, total + 1);
    if (!o) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory while decoding"); goto done; }
    size_t w = 0;
    for (size_t i = 0; i < toks.len; i++) {
        const dtok *d = &CR_VEC_AT(&toks, dtok, i);
        memcpy(o + w, d->s, d->n);
        w += d->n;
    }
    o[w] = 0;
    *out = o;
    *out_len = w;
done:
    cr_vec_free(&toks);
    cr_arena_free(&ar);
    return st;
}
