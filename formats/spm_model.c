/* spm_model.c — a strict reader of SentencePiece's ModelProto pieces
 * (spm_model.h). Protobuf wire format: each field is a varint key
 * (number << 3 | wire type) then a varint (0), 8 bytes (1), a varint
 * length and that many bytes (2), or 4 bytes (5). Two passes over the
 * buffer: count pieces and text bytes, then fill, so the result is two
 * allocations whatever the vocabulary size.
 */
#include "spm_model.h"

#include <stdlib.h>
#include <string.h>

typedef struct pb {
    const uint8_t *p;
    size_t off, end;            /* the current message is [off, end) */
    const char *what;
    cr_error *err;
} pb;

static cr_status pb_fail(pb *b, const char *why)
{
    return cr_fail(b->err, CR_ERR_FORMAT, "%s: not a SentencePiece model: %s at byte %zu", b->what, why, b->off);
}

static cr_status pb_varint(pb *b, uint64_t *v)
{
    uint64_t r = 0;
    for (int i = 0; i < 10; i++) {
        if (b->off >= b->end) return pb_fail(b, "truncated varint");
        uint8_t c = b->p[b->off++];
        if (i == 9 && c > 1) return pb_fail(b, "varint over 64 bits");
        r |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) { *v = r; return CR_OK; }
    }
    return pb_fail(b, "varint over 10 bytes");
}

/* One field's key; for wire type 2 also its payload [*p0, *p1). */
static cr_status pb_field(pb *b, uint32_t *num, uint32_t *wt, size_t *p0, size_t *p1, uint64_t *val)
{
    uint64_t key;
    cr_status s = pb_varint(b, &key);
    if (s) return s;
    *num = (uint32_t)(key >> 3);
    *wt = (uint32_t)(key & 7);
    if (key >> 3 == 0 || key >> 3 > 0x1fffffff) return pb_fail(b, "field number out of range");
    switch (*wt) {
    case 0: return pb_varint(b, val);
    case 1:
        if (b->end - b->off < 8) return pb_fail(b, "truncated 64-bit field");
        b->off += 8;
        return CR_OK;
    case 5:
        if (b->end - b->off < 4) return pb_fail(b, "truncated 32-bit field");
        *val = (uint64_t)b->p[b->off] | (uint64_t)b->p[b->off + 1] << 8 | (uint64_t)b->p[b->off + 2] << 16 |
               (uint64_t)b->p[b->off + 3] << 24;
        b->off += 4;
        return CR_OK;
    case 2: {
        uint64_t n;
        if ((s = pb_varint(b, &n))) return s;
        if (n > b->end - b->off) return pb_fail(b, "length past the end of its message");
        *p0 = b->off;
        *p1 = b->off + (size_t)n;
        b->off += (size_t)n;
        return CR_OK;
    }
    default: return pb_fail(b, "unknown or group wire type");
    }
}

static bool utf8_ok(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c == 0) return false;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) { k = 1; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { k = 2; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { k = 3; cp = c & 0x07; }
        else return false;
        if (n - i <= k) return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += k + 1;
    }
    return true;
}

/* One SentencePiece message [p0, p1): its text range, score and type. */
static cr_status parse_piece(pb *outer, size_t p0, size_t p1, size_t *t0, size_t *t1, float *score, cr_spm_type *type)
{
    pb b = {outer->p, p0, p1, outer->what, outer->err};
    bool have_text = false;
    *score = 0.0f;
    *type = CR_SPM_NORMAL;
    while (b.off < b.end) {
        uint32_t num, wt;
        size_t a0 = 0, a1 = 0;
        uint64_t v = 0;
        cr_status s = pb_field(&b, &num, &wt, &a0, &a1, &v);
        if (s) return s;
        if (num == 1) {
            if (wt != 2) return pb_fail(&b, "piece text is not a string");
            if (!utf8_ok(b.p + a0, a1 - a0)) return pb_fail(&b, "piece text is not UTF-8 without NUL");
            *t0 = a0, *t1 = a1, have_text = true;
        } else if (num == 2) {
            if (wt != 5) return pb_fail(&b, "piece score is not a 32-bit float");
            uint32_t u = (uint32_t)v;
            memcpy(score, &u, 4);
        } else if (num == 3) {
            if (wt != 0) return pb_fail(&b, "piece type is not a varint");
            if (v < CR_SPM_NORMAL || v > CR_SPM_BYTE) return pb_fail(&b, "unknown piece type");
            *type = (cr_spm_type)v;
        }
    }
    if (!have_text || *t1 == *t0) return pb_fail(&b, "a piece without text");
    return CR_OK;
}

/* a range of the input buffer the spec points at until it is copied */
typedef struct spec_ranges { size_t r0[5], r1[5]; bool set[5]; } spec_ranges; /* 4 pieces, charsmap */

static cr_status parse_spec(pb *outer, uint32_t which, size_t p0, size_t p1, cr_spm_spec *sp, spec_ranges *rg)
{
    pb b = {outer->p, p0, p1, outer->what, outer->err};
    while (b.off < b.end) {
        uint32_t num, wt;
        size_t a0 = 0, a1 = 0;
        uint64_t v = 0;
        cr_status s = pb_field(&b, &num, &wt, &a0, &a1, &v);
        if (s) return s;
        /* int32 fields are sign-extended varints */
        int32_t i32 = (int32_t)(int64_t)v;
        if (which == 2) {
            if (num == 3 && wt == 0) sp->model_type = i32;
            else if (num == 35 && wt == 0) sp->byte_fallback = v != 0;
            else if (num >= 40 && num <= 43 && wt == 0) {
                int32_t *ids[] = {&sp->unk_id, &sp->bos_id, &sp->eos_id, &sp->pad_id};
                *ids[num - 40] = i32;
            } else if (num >= 45 && num <= 48) {
                if (wt != 2) return pb_fail(&b, "special piece is not a string");
                if (!utf8_ok(b.p + a0, a1 - a0)) return pb_fail(&b, "special piece is not UTF-8 without NUL");
                rg->r0[num - 45] = a0, rg->r1[num - 45] = a1, rg->set[num - 45] = true;
            }
        } else {
            if (num == 2) {
                if (wt != 2) return pb_fail(&b, "precompiled_charsmap is not bytes");
                rg->r0[4] = a0, rg->r1[4] = a1, rg->set[4] = true;
            } else if (num == 3 && wt == 0) sp->add_dummy_prefix = v != 0;
            else if (num == 4 && wt == 0) sp->remove_extra_whitespaces = v != 0;
            else if (num == 5 && wt == 0) sp->escape_whitespaces = v != 0;
        }
    }
    return CR_OK;
}

/* pass 0 counts (pieces, text bytes) and reads the specs; pass 1 fills */
static cr_status walk(pb *b, cr_spm_model *m, char *text, uint32_t *n_pieces, size_t *n_text, cr_spm_spec *sp,
                      spec_ranges *rg)
{
    uint32_t np = 0;
    size_t nt = 0;
    while (b->off < b->end) {
        uint32_t num, wt;
        size_t p0 = 0, p1 = 0;
        uint64_t v = 0;
        cr_status s = pb_field(b, &num, &wt, &p0, &p1, &v);
        if (s) return s;
        if ((num == 2 || num == 3) && sp) {
            if (wt != 2) return pb_fail(b, "a spec field is not a message");
            if ((s = parse_spec(b, num, p0, p1, sp, rg))) return s;
            continue;
        }
        if (num != 1) continue;
        if (wt != 2) return pb_fail(b, "pieces field is not a message");
        size_t t0 = 0, t1 = 0;
        float score;
        cr_spm_type type;
        if ((s = parse_piece(b, p0, p1, &t0, &t1, &score, &type))) return s;
        if (np >= CR_SPM_MAX_PIECES) return pb_fail(b, "too many pieces");
        if (m) {
            memcpy(text + nt, b->p + t0, t1 - t0);
            text[nt + (t1 - t0)] = 0;
            m->pieces[np] = (cr_spm_piece){text + nt, score, type};
        }
        np++;
        nt += t1 - t0 + 1;
    }
    *n_pieces = np;
    *n_text = nt;
    return CR_OK;
}

static int cmp_piece(const void *x, const void *y)
{
    return strcmp((*(const cr_spm_piece *const *)x)->text, (*(const cr_spm_piece *const *)y)->text);
}

/* what SentencePieceProcessor's loader refuses (model_interface.cc
 * InitializePieces): a piece defined twice, no unknown piece or two */
static cr_status check_pieces(const cr_spm_model *m, const char *what, cr_error *err)
{
    uint32_t n_unk = 0;
    for (uint32_t i = 0; i < m->n_pieces; i++) n_unk += m->pieces[i].type == CR_SPM_UNKNOWN;
    if (n_unk != 1)
        return cr_fail(err, CR_ERR_FORMAT, "%s: a SentencePiece model needs exactly one unknown piece; it has %u", what, n_unk);
    const cr_spm_piece **by = cr_calloc(m->alloc, m->n_pieces, sizeof *by);
    if (!by) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < m->n_pieces; i++) by[i] = &m->pieces[i];
    qsort(by, m->n_pieces, sizeof *by, cmp_piece);
    cr_status s = CR_OK;
    for (uint32_t i = 1; i < m->n_pieces && !s; i++)
        if (!strcmp(by[i - 1]->text, by[i]->text))
            s = cr_fail(err, CR_ERR_FORMAT, "%s: SentencePiece piece '%s' is defined twice", what, by[i]->text);
    cr_free(m->alloc, by);
    return s;
}

cr_status cr_spm_parse(const cr_allocator *alloc, const uint8_t *buf, size_t len, const char *what,
                       cr_spm_model *out, cr_error *err)
{
    memset(out, 0, sizeof *out);
    out->alloc = alloc;
    pb b = {buf, 0, len, what, err};
    uint32_t np;
    size_t nt;
    cr_spm_spec *sp = &out->spec;
    *sp = (cr_spm_spec){ .model_type = 1, .unk_id = 0, .bos_id = 1, .eos_id = 2, .pad_id = -1,
                         .add_dummy_prefix = true, .remove_extra_whitespaces = true, .escape_whitespaces = true };
    spec_ranges rg = { 0 };
    cr_status s = walk(&b, NULL, NULL, &np, &nt, sp, &rg);
    if (s) return s;
    if (!np) return cr_fail(err, CR_ERR_FORMAT, "%s: not a SentencePiece model: no pieces", what);
    size_t ns = 0;
    for (int i = 0; i < 5; i++) ns += (rg.set[i] ? rg.r1[i] - rg.r0[i] : 0) + 1;
    out->pieces = cr_calloc(alloc, np, sizeof *out->pieces);
    out->text = cr_malloc(alloc, nt);
    out->spec_buf = cr_malloc(alloc, ns);
    if (!out->pieces || !out->text || !out->spec_buf) { cr_spm_free(out); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
    /* the spec's strings (proto defaults when absent) and charsmap */
    static const char *const defaults[] = {"<unk>", "<s>", "</s>", "<pad>"};
    const char **pieces[] = {&sp->unk_piece, &sp->bos_piece, &sp->eos_piece, &sp->pad_piece};
    size_t off = 0;
    for (int i = 0; i < 5; i++) {
        size_t n = rg.set[i] ? rg.r1[i] - rg.r0[i] : 0;
        uint8_t *d = out->spec_buf + off;
        if (n) memcpy(d, buf + rg.r0[i], n);
        d[n] = 0;
        off += n + 1;
        if (i < 4) *pieces[i] = rg.set[i] ? (const char *)d : defaults[i];
        else if (n) sp->charsmap = d, sp->charsmap_len = n;
    }
    b.off = 0;
    if ((s = walk(&b, out, out->text, &np, &nt, NULL, NULL))) { cr_spm_free(out); return s; }
    out->n_pieces = np;
    if ((s = check_pieces(out, what, err))) cr_spm_free(out);
    return s;
}

void cr_spm_free(cr_spm_model *m)
{
    if (!m->alloc) return;
    cr_free(m->alloc, m->pieces);
    cr_free(m->alloc, m->text);
    cr_free(m->alloc, m->spec_buf);
    m->pieces = NULL;
    m->text = NULL;
    m->spec_buf = NULL;
    m->n_pieces = 0;
}
