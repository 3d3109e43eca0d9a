/* test_spm_model.c — the SentencePiece ModelProto reader (formats/spm_model.h)
 * on hand-built protobuf bytes: defaults (score 0, type NORMAL), unknown
 * fields skipped by wire type, and each refusal with the message naming
 * the file and what is wrong. The golden tokenizer.model (pieces as
 * sentencepiece 0.2.3's SentencePieceProcessor reports them) is checked by
 * tests/e2e/gguf.sh through the converter's golden files. */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "spm_model.h"

typedef struct buf { uint8_t b[256]; size_t n; } buf;

static void put(buf *o, const void *p, size_t n) { memcpy(o->b + o->n, p, n); o->n += n; }
static void varint(buf *o, uint64_t v)
{
    do { uint8_t c = v & 0x7f; v >>= 7; if (v) c |= 0x80; put(o, &c, 1); } while (v);
}
static void field_bytes(buf *o, uint32_t num, const buf *payload)
{
    varint(o, (uint64_t)num << 3 | 2);
    varint(o, payload->n);
    put(o, payload->b, payload->n);
}
/* a SentencePiece message as field 1 of the model; score/type < 0: absent */
static void piece(buf *o, const char *text, int has_score, float score, int type)
{
    buf p = {{0}, 0}, t = {{0}, 0};
    put(&t, text, strlen(text));
    field_bytes(&p, 1, &t);
    if (has_score) { varint(&p, 2 << 3 | 5); put(&p, &score, 4); }
    if (type >= 0) { varint(&p, 3 << 3 | 0); varint(&p, (uint64_t)type); }
    field_bytes(o, 1, &p);
}

static cr_status parse(const buf *b, cr_spm_model *m, cr_error *err)
{
    memset(err, 0, sizeof *err);
    return cr_spm_parse(cr_default_allocator(), b->b, b->n, "dir/tokenizer.model", m, err);
}

TEST(pieces_and_defaults)
{
    buf b = {{0}, 0};
    piece(&b, "<unk>", 1, 0.0f, 2);
    piece(&b, "\xe2\x96\x81" "a", 1, -1.5f, -1);
    piece(&b, "b", 0, 0, 4);
    buf trainer = {{0}, 0};
    varint(&trainer, 3 << 3 | 0);
    varint(&trainer, 300);
    field_bytes(&b, 2, &trainer);            /* trainer_spec: skipped */
    varint(&b, 99 << 3 | 1);
    put(&b, "\0\0\0\0\0\0\0\0", 8);          /* an unknown fixed64 field */
    cr_spm_model m;
    cr_error err;
    REQUIRE(parse(&b, &m, &err) == CR_OK);
    CHECK_EQ_INT(m.n_pieces, 3);
    CHECK_STR(m.pieces[0].text, "<unk>");
    CHECK_EQ_INT(m.pieces[0].type, CR_SPM_UNKNOWN);
    CHECK_STR(m.pieces[1].text, "\xe2\x96\x81" "a");
    CHECK(m.pieces[1].score == -1.5f);
    CHECK_EQ_INT(m.pieces[1].type, CR_SPM_NORMAL);
    CHECK(m.pieces[2].score == 0.0f);
    CHECK_EQ_INT(m.pieces[2].type, CR_SPM_USER_DEFINED);
    cr_spm_free(&m);
}

static void refused(const buf *b, const char *why)
{
    cr_spm_model m;
    cr_error err;
    cr_status s = parse(b, &m, &err);
    CHECK_MSG(s == CR_ERR_FORMAT, "accepted (%s)", why);
    CHECK_CONTAINS(err.msg, "dir/tokenizer.model: ");
    CHECK_MSG(strstr(err.msg, why) != NULL, "'%s' lacks '%s'", err.msg, why);
}

TEST(refusals)
{
    buf b = {{0}, 0};
    refused(&b, "no pieces");
    piece(&b, "a", 0, 0, -1);
    refused(&b, "exactly one unknown piece; it has 0");
    buf d = {{0}, 0};
    piece(&d, "<unk>", 0, 0, 2);
    piece(&d, "a", 0, 0, -1);
    piece(&d, "a", 0, 0, 1);
    refused(&d, "piece 'a' is defined twice");
    buf t = {{0}, 0};
    piece(&t, "<unk>", 0, 0, 2);
    piece(&t, "x", 0, 0, 9);
    refused(&t, "unknown piece type");
    buf g = {{0}, 0};
    piece(&g, "<unk>", 0, 0, 2);
    varint(&g, 5 << 3 | 3);
    refused(&g, "group wire type");
    buf l = {{0}, 0};
    varint(&l, 1 << 3 | 2);
    varint(&l, 1000);
    put(&l, "xx", 2);
    refused(&l, "length past the end of its message at byte 3");
    buf v = {{0}, 0};
    piece(&v, "<unk>", 0, 0, 2);
    varint(&v, 5 << 3 | 0);
    put(&v, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 10);
    refused(&v, "varint over 64 bits");
    buf u = {{0}, 0};
    piece(&u, "<unk>", 0, 0, 2);
    piece(&u, "\xc3\x28", 0, 0, -1);
    refused(&u, "not UTF-8");
    buf e = {{0}, 0}, inner = {{0}, 0};
    piece(&e, "<unk>", 0, 0, 2);
    varint(&inner, 3 << 3 | 0);
    varint(&inner, 1);
    field_bytes(&e, 1, &inner);
    refused(&e, "a piece without text");
    buf tr = {{0}, 0};
    piece(&tr, "<unk>", 1, -2.0f, 2);
    tr.n -= 3;                               /* cut inside the piece */
    refused(&tr, "past the end");
}

int main(void)
{
    RUN(pieces_and_defaults);
    RUN(refusals);
    return cr_test_summary();
}
