/* test_tokenizer.c — crucible's tokenizer against the Hugging Face
 * tokenizers library: the fixtures in tests/fixtures/tokenizers/ were
 * written by tests/compat/check_tokenizer.py (ids with and without special
 * tokens, and decoded text) and must be reproduced exactly. Also the byte
 * map, the split scanners on hand-derived examples, NFC, error paths and
 * allocation-failure cleanup. */
#include "harness.h"
#include "tokenizer.h"
#include "pretok.h"
#include "unicode.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    if (buf) buf[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

static bool ids_equal(const cr_vec *v, const cJSON *arr, char *why, size_t why_len)
{
    size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;
    bool ok = v->len == n;
    for (const cJSON *e = arr->child; e && ok; e = e->next, i++)
        ok = CR_VEC_AT(v, int32_t, i) == (int32_t)e->valuedouble;
    if (!ok) {
        size_t w = (size_t)snprintf(why, why_len, "got [");
        for (size_t k = 0; k < v->len && w < why_len - 16; k++)
            w += (size_t)snprintf(why + w, why_len - w, "%d ", CR_VEC_AT(v, int32_t, k));
        w += (size_t)snprintf(why + w, why_len - w, "] want [");
        for (const cJSON *e = arr->child; e && w < why_len - 16; e = e->next)
            w += (size_t)snprintf(why + w, why_len - w, "%d ", (int)e->valuedouble);
        snprintf(why + w, why_len - w, "]");
    }
    return ok;
}

static void check_fixture(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/tokenizers/%s.json", name);
    cr_error err = { 0 };
    cr_tokenizer *tok = NULL;
    cr_status st = cr_tokenizer_load(cr_default_allocator(), path, &tok, &err);
    CHECK_MSG(st == CR_OK, "%s: load failed: %s", name, err.msg);
    if (st) return;
    snprintf(path, sizeof path, "tests/fixtures/tokenizers/%s.cases.json", name);
    char *text = read_all(path, NULL);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    CHECK_MSG(cJSON_GetArraySize(cases) > 20, "%s: no cases", name);
    int n_case = 0;
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next, n_case++) {
        const char *s = cJSON_GetObjectItem(c, "text")->valuestring;
        char why[2048];
        for (int special = 0; special < 2; special++) {
            cr_vec ids;
            cr_vec_init(&ids, cr_default_allocator(), sizeof(int32_t));
            st = cr_tokenizer_encode(tok, s, strlen(s), special, &ids, &err);
            CHECK_MSG(st == CR_OK, "%s case %d: encode failed: %s", name, n_case, err.msg);
            const cJSON *want = cJSON_GetObjectItem(c, special ? "ids_special" : "ids");
            if (st == CR_OK && !ids_equal(&ids, want, why, sizeof why))
                CHECK_MSG(0, "%s case %d (special=%d) \"%s\": %s", name, n_case, special, s, why);
            if (!special && st == CR_OK) {
                char *dec;
                size_t dl;
                st = cr_tokenizer_decode(tok, ids.data, ids.len, false, &dec, &dl, &err);
                CHECK_MSG(st == CR_OK, "%s case %d: decode failed: %s", name, n_case, err.msg);
                const char *wd = cJSON_GetObjectItem(c, "decoded")->valuestring;
                if (st == CR_OK)
                    CHECK_MSG(dl == strlen(wd) && !memcmp(dec, wd, dl), "%s case %d decode: \"%.*s\" want \"%s\"",
                              name, n_case, (int)dl, dec, wd);
                free(dec);
            }
            cr_vec_free(&ids);
        }
    }
    cJSON_Delete(root);
    free(text);
    cr_tokenizer_free(tok);
}

TEST(fixture_qwen2) { check_fixture("qwen2"); }
TEST(fixture_llama3) { check_fixture("llama3"); }
TEST(fixture_gpt2) { check_fixture("gpt2"); }
TEST(fixture_llama2_legacy) { check_fixture("llama2"); }
TEST(fixture_metaspace_first) { check_fixture("metaspace"); }

TEST(byte_map)
{
    CHECK_EQ_INT(cr_byte_to_unicode(0x00), 0x100);
    CHECK_EQ_INT(cr_byte_to_unicode(0x0A), 0x10A);
    CHECK_EQ_INT(cr_byte_to_unicode(0x20), 0x120);
    CHECK_EQ_INT(cr_byte_to_unicode(0x7F), 0x121);
    CHECK_EQ_INT(cr_byte_to_unicode(0xA0), 0x142);
    CHECK_EQ_INT(cr_byte_to_unicode(0xAD), 0x143);
    CHECK_EQ_INT(cr_byte_to_unicode('A'), 'A');
    CHECK_EQ_INT(cr_byte_to_unicode(0xFF), 0xFF);
    for (int b = 0; b < 256; b++) CHECK_EQ_INT(cr_unicode_to_byte(cr_byte_to_unicode((uint8_t)b)), b);
    CHECK_EQ_INT(cr_unicode_to_byte(0x144), -1);
    CHECK_EQ_INT(cr_unicode_to_byte(0x20), -1);
}

/* Split s with pattern p and join the pieces with '|'. */
static void split_join(cr_split_pattern p, const char *s, char *out)
{
    size_t n = strlen(s), w = 0;
    for (size_t i = 0; i < n;) {
        size_t m = cr_split_match(p, s + i, n - i);
        if (i) out[w++] = '|';
        memcpy(out + w, s + i, m);
        w += m;
        i += m;
    }
    out[w] = 0;
}

TEST(split_scanners)
{
    char o[256];
    split_join(CR_SPLIT_LLAMA3, "a  b", o);            CHECK_STR(o, "a| | b");
    split_join(CR_SPLIT_LLAMA3, "12345 x", o);         CHECK_STR(o, "123|45| x");
    split_join(CR_SPLIT_QWEN2, "12345", o);            CHECK_STR(o, "1|2|3|4|5");
    split_join(CR_SPLIT_GPT2, "12345 67", o);          CHECK_STR(o, "12345| 67");
    split_join(CR_SPLIT_LLAMA3, "I'M here", o);        CHECK_STR(o, "I|'M| here");
    split_join(CR_SPLIT_GPT2, "I'M here", o);          CHECK_STR(o, "I|'|M| here");
    split_join(CR_SPLIT_LLAMA3, "x  \n\n  y", o);      CHECK_STR(o, "x|  \n\n| | y");
    split_join(CR_SPLIT_LLAMA3, "!!!\n\nz", o);        CHECK_STR(o, "!!!\n\n|z");
    split_join(CR_SPLIT_LLAMA3, " ?!x", o);            CHECK_STR(o, " ?!|x");
    split_join(CR_SPLIT_LLAMA3, "end   ", o);          CHECK_STR(o, "end|   ");
    split_join(CR_SPLIT_LLAMA3, "\tword", o);          CHECK_STR(o, "\tword");
    cr_split_pattern p;
    CHECK(!cr_split_pattern_from_regex("\\w+", &p));
}

TEST(nfc)
{
    char *o;
    size_t n;
    cr_error err;
    REQUIRE(cr_uni_normalize(cr_default_allocator(), "e\xCC\x81", 3, true, &o, &n, &err) == CR_OK);
    CHECK_STR(o, "\xC3\xA9");                  /* é composed */
    free(o);
    REQUIRE(cr_uni_normalize(cr_default_allocator(), "\xC3\xA9", 2, false, &o, &n, &err) == CR_OK);
    CHECK_STR(o, "e\xCC\x81");                 /* NFD */
    free(o);
    /* Hangul: U+1100 U+1161 U+11A8 -> U+AC01 */
    REQUIRE(cr_uni_normalize(cr_default_allocator(), "\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", 9, true, &o, &n, &err) == CR_OK);
    CHECK_STR(o, "\xEA\xB0\x81");
    free(o);
    /* marks reorder by combining class: a + dot below(220) after acute(230) */
    REQUIRE(cr_uni_normalize(cr_default_allocator(), "a\xCC\x81\xCC\xA3", 5, false, &o, &n, &err) == CR_OK);
    CHECK_STR(o, "a\xCC\xA3\xCC\x81");
    free(o);
    CHECK(cr_uni_normalize(cr_default_allocator(), "\xFF", 1, true, &o, &n, &err) == CR_ERR_FORMAT);
}

TEST(errors)
{
    cr_error err = { 0 };
    cr_tokenizer *tok = NULL;
    const cr_allocator *a = cr_default_allocator();
    CHECK(cr_tokenizer_load(a, "tests/fixtures/tokenizers/nope.json", &tok, &err) == CR_ERR_IO);
    CHECK_CONTAINS(err.msg, "nope.json");
    const char *bad = "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}";
    CHECK(cr_tokenizer_load_json(a, bad, strlen(bad), "t.json", &tok, &err) == CR_ERR_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "WordPiece");
    const char *rx = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                     "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\w+\"},\"behavior\":\"Isolated\"}}";
    CHECK(cr_tokenizer_load_json(a, rx, strlen(rx), "t.json", &tok, &err) == CR_ERR_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "Split regex");
    const char *merge = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}";
    CHECK(cr_tokenizer_load_json(a, merge, strlen(merge), "t.json", &tok, &err) == CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "not in the vocab");
    CHECK(cr_tokenizer_load_json(a, "{", 1, "t.json", &tok, &err) == CR_ERR_FORMAT);
    /* no unk and an unknown character */
    const char *ok = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[[\"a\",\"b\"]]}}";
    REQUIRE(cr_tokenizer_load_json(a, ok, strlen(ok), "t.json", &tok, &err) == CR_OK);
    cr_vec ids;
    cr_vec_init(&ids, a, sizeof(int32_t));
    CHECK(cr_tokenizer_encode(tok, "abab", 4, false, &ids, &err) == CR_OK);
    CHECK_EQ_INT(ids.len, 2);
    CHECK_EQ_INT(CR_VEC_AT(&ids, int32_t, 0), 2);
    ids.len = 0;
    CHECK(cr_tokenizer_encode(tok, "abc", 3, false, &ids, &err) == CR_ERR_RUNTIME);
    CHECK_CONTAINS(err.msg, "U+0063");
    CHECK(cr_tokenizer_encode(tok, "a\xC3", 2, false, &ids, &err) == CR_ERR_FORMAT);
    int32_t badid = 7;
    char *dec;
    size_t dl;
    CHECK(cr_tokenizer_decode(tok, &badid, 1, false, &dec, &dl, &err) == CR_ERR_ARG);
    cr_vec_free(&ids);
    cr_tokenizer_free(tok);
}

/* Leftmost tie-break: "aaaa" with the single merge "a a" gives "aa aa". */
TEST(bpe_ties)
{
    const cr_allocator *a = cr_default_allocator();
    cr_error err;
    cr_tokenizer *tok;
    const char *j = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"aa\":1},\"merges\":[\"a a\"]}}";
    REQUIRE(cr_tokenizer_load_json(a, j, strlen(j), "t.json", &tok, &err) == CR_OK);
    cr_vec ids;
    cr_vec_init(&ids, a, sizeof(int32_t));
    REQUIRE(cr_tokenizer_encode(tok, "aaaaa", 5, false, &ids, &err) == CR_OK);
    CHECK_EQ_INT(ids.len, 3);
    CHECK_EQ_INT(CR_VEC_AT(&ids, int32_t, 0), 1);
    CHECK_EQ_INT(CR_VEC_AT(&ids, int32_t, 1), 1);
    CHECK_EQ_INT(CR_VEC_AT(&ids, int32_t, 2), 0);
    cr_vec_free(&ids);
    cr_tokenizer_free(tok);
}

/* Every allocation failure during load and encode is reported and leaks
 * nothing. */
TEST(alloc_failures)
{
    size_t len;
    char *json = read_all("tests/fixtures/tokenizers/llama2.json", &len);
    REQUIRE(json);
    int failures = 0;
    for (long k = 0; k < 400; k++) {
        cr_failing_allocator fa;
        cr_failing_allocator_init(&fa, cr_default_allocator(), k, false);
        cr_error err;
        cr_tokenizer *tok = NULL;
        cr_status st = cr_tokenizer_load_json(&fa.base, json, len, "llama2.json", &tok, &err);
        if (st == CR_OK) {
            cr_vec ids;
            cr_vec_init(&ids, &fa.base, sizeof(int32_t));
            st = cr_tokenizer_encode(tok, "<s>Hello wörld 😀", strlen("<s>Hello wörld 😀"), true, &ids, &err);
            cr_vec_free(&ids);
            cr_tokenizer_free(tok);
        }
        if (st != CR_OK) { failures++; CHECK_EQ_INT(st, CR_ERR_NOMEM); }
        CHECK_EQ_INT(fa.live, 0);
        if (st == CR_OK && fa.count <= k) break;   /* ran past every allocation */
    }
    CHECK(failures > 3);
    free(json);
}

int main(void)
{
    RUN(fixture_qwen2);
    RUN(fixture_llama3);
    RUN(fixture_gpt2);
    RUN(fixture_llama2_legacy);
    RUN(fixture_metaspace_first);
    RUN(byte_map);
    RUN(split_scanners);
    RUN(nfc);
    RUN(errors);
    RUN(bpe_ties);
    RUN(alloc_failures);
    return cr_test_summary();
}
