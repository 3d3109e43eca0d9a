/* test_tokslow.c — slow tokenizers converted as transformers 5.25 converts
 * them (formats/tokslow.h): for each fixture (tests/fixtures/tokslow/, made
 * by tests/compat/gen_tokslow_fixtures.py from real AutoTokenizer +
 * save_pretrained runs) the tokenizer.json crucible writes has the sha256 of
 * transformers' and the tokenizer_config.json is byte for byte transformers'.
 * The fixtures cover SentencePiece BPE with byte fallback, user-defined and
 * control pieces, no dummy prefix, a pad piece without bos, no control
 * pieces, an NFKC charsmap (the golden tok_s2), and GPT-2 vocab.json +
 * merges.txt (the golden tok_g1), and the llama_* fixtures: a
 * tokenizer.model with a tokenizer_config.json naming LlamaTokenizer(Fast)
 * and its options (add_bos/add_eos, legacy, add_prefix_space, special
 * tokens as AddedTokens, specials that are no piece, Llama-2's config as
 * shipped); then each refusal names the model and what is not converted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "harness.h"
#include "hash.h"
#include "infile.h"
#include "jsonw.h"
#include "spm_model.h"
#include "tokslow.h"

static char *read_text(const char *path, size_t *len)
{
    char *t = NULL;
    cr_error err = { 0 };
    if (cr_file_read(cr_default_allocator(), path, 1u << 26, "fixture", &t, len, &err)) return NULL;
    return t;
}

static void check_fixture(const char *name, const char *dir, const char *mt)
{
    const cr_allocator *a = cr_default_allocator();
    char *tt = NULL, *tc = NULL, path[512];
    size_t tl, cl, el;
    cr_error err = { 0 };
    cr_status s = cr_tokslow_resave(a, dir, name, mt, false, &tt, &tl, &tc, &cl, &err);
    CHECK_MSG(s == CR_OK, "%s: %s", name, err.msg);
    if (s) return;
    uint8_t h[32];
    cr_sha256(tt, tl, h);
    char hex[65];
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", h[i]);
    snprintf(path, sizeof path, "tests/fixtures/tokslow/%s.expected/tokenizer.json.sha256", name);
    char *want = read_text(path, &el);
    CHECK_MSG(want && !strncmp(want, hex, 64), "%s: tokenizer.json sha256 %s, transformers' %.64s", name, hex,
              want ? want : "?");
    free(want);
    snprintf(path, sizeof path, "tests/fixtures/tokslow/%s.expected/tokenizer_config.json", name);
    want = read_text(path, &el);
    CHECK_MSG(want && el == cl && !memcmp(want, tc, cl), "%s: tokenizer_config.json\n%s\ntransformers writes\n%s", name,
              tc, want ? want : "?");
    free(want);
    cr_free(a, tt);
    cr_free(a, tc);
}

TEST(converted_as_transformers)
{
    check_fixture("spm_s1", "tests/golden/models/tok_s1", "llama");
    check_fixture("spm_s2", "tests/golden/models/tok_s2", "llama");
    check_fixture("gpt2_g1", "tests/golden/models/tok_g1", "gpt2");
    check_fixture("spm_ud", "tests/fixtures/tokslow/spm_ud", "mistral");
    check_fixture("spm_nodummy", "tests/fixtures/tokslow/spm_nodummy", "llama");
    check_fixture("spm_pad", "tests/fixtures/tokslow/spm_pad", "llama");
    /* model type read from config.json (a tokenizer source that is no input) */
    check_fixture("spm_noctl", "tests/fixtures/tokslow/spm_noctl", NULL);
}

TEST(llama_tokenizer_class)
{
    check_fixture("llama_l2", "tests/fixtures/tokslow/llama_l2", "llama");
    check_fixture("llama_fast_be", "tests/fixtures/tokslow/llama_fast_be", "llama");
    check_fixture("llama_ud_legacy", "tests/fixtures/tokslow/llama_ud_legacy", "llama");
    check_fixture("llama_pad_nops", "tests/fixtures/tokslow/llama_pad_nops", "llama");
    check_fixture("llama_s2", "tests/fixtures/tokslow/llama_s2", NULL);
}

TEST(kinds_and_specs)
{
    CHECK(cr_tokslow_kind_of("tests/golden/models/tok_s1") == CR_TOKSLOW_SPM);
    CHECK(cr_tokslow_kind_of("tests/golden/models/tok_g1") == CR_TOKSLOW_BPE_FILES);
    CHECK(cr_tokslow_kind_of("tests/golden/models/tok_a") == CR_TOKSLOW_NONE);
    /* the trainer / normalizer specs the conversion reads */
    size_t len;
    char *raw = read_text("tests/fixtures/tokslow/spm_pad/tokenizer.model", &len);
    REQUIRE(raw);
    cr_spm_model m;
    cr_error err = { 0 };
    REQUIRE(cr_spm_parse(cr_default_allocator(), (const uint8_t *)raw, len, "spm_pad", &m, &err) == CR_OK);
    CHECK_EQ_INT(m.spec.model_type, 2);
    CHECK(m.spec.byte_fallback);
    CHECK_EQ_INT(m.spec.unk_id, 0);
    CHECK_EQ_INT(m.spec.bos_id, -1);
    CHECK_EQ_INT(m.spec.eos_id, 2);
    CHECK_EQ_INT(m.spec.pad_id, 3);
    CHECK_STR(m.spec.pad_piece, "<pad>");
    CHECK(m.spec.add_dummy_prefix);
    CHECK(!m.spec.charsmap);
    cr_spm_free(&m);
    free(raw);
}

/* a llama_l2 copy whose tokenizer_config.json is `cfg` */
static void refused_cfg(const char *mt, const char *cfg, const char *want)
{
    char dir[] = "/tmp/crucible-tokslow-XXXXXX", path[128];
    REQUIRE(mkdtemp(dir));
    size_t len;
    char *raw = read_text("tests/fixtures/tokslow/llama_l2/tokenizer.model", &len);
    REQUIRE(raw);
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    fwrite(raw, 1, len, f);
    fclose(f);
    free(raw);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    REQUIRE((f = fopen(path, "w")));
    fputs(cfg, f);
    fclose(f);
    cJSON *t = NULL, *c = NULL;
    cr_error err = { 0 };
    CHECK(cr_tokslow_convert(cr_default_allocator(), dir, "modelX", mt, &t, &c, &err) == CR_ERR_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "modelX");
    CHECK_CONTAINS(err.msg, "tokenizer_config.json");
    CHECK_CONTAINS(err.msg, want);
    CHECK(!t && !c);
    remove(path);
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    remove(path);
    rmdir(dir);
}

static void refused(const char *dir, const char *mt, const char *want)
{
    cJSON *t = NULL, *c = NULL;
    cr_error err = { 0 };
    CHECK(cr_tokslow_convert(cr_default_allocator(), dir, "modelX", mt, &t, &c, &err) == CR_ERR_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "modelX");
    CHECK_CONTAINS(err.msg, want);
    CHECK(!t && !c);
}

TEST(refusals)
{
    refused("tests/fixtures/tokslow/spm_unigram", "llama", "Unigram");
    refused("tests/golden/models/tok_s1", "qwen2", "model type 'qwen2'");
    refused("tests/golden/models/tok_g1", "llama", "vocab.json + merges.txt");
    refused("tests/golden/models/tok_a", "llama", "no slow tokenizer");
    /* with a tokenizer_config.json: other classes and model types (mistral
     * maps LlamaTokenizer to a plain TokenizersBackend), keys and values
     * not reproduced, each named */
    refused_cfg("mistral", "{\"tokenizer_class\": \"LlamaTokenizer\"}", "model type 'mistral'");
    refused_cfg("llama", "{\"tokenizer_class\": \"T5Tokenizer\"}", "tokenizer_class T5Tokenizer");
    refused_cfg("llama", "{\"add_bos_token\": true}", "tokenizer_class unset");
    refused_cfg("llama", "{\"tokenizer_class\": \"LlamaTokenizer\", \"added_tokens_decoder\": {}}",
                "key 'added_tokens_decoder'");
    refused_cfg("llama", "{\"tokenizer_class\": \"LlamaTokenizer\", \"bos_token\": {\"content\": \"<s>\", "
                "\"lstrip\": true}}", "value of key 'bos_token'");
    refused_cfg("llama", "{\"tokenizer_class\": \"LlamaTokenizer\", \"pad_token\": \"<unk>\"}",
                "value of key 'pad_token'");
}

int main(void)
{
    RUN(converted_as_transformers);
    RUN(llama_tokenizer_class);
    RUN(kinds_and_specs);
    RUN(refusals);
    return cr_test_summary();
}
