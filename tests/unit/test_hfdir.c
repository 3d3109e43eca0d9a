/* test_hfdir.c — config.json patching (dtype keys, layer count, per-layer
 * lists, literals kept), the tokenizer copy list and the model card. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hfdir.h"
#include "harness.h"
#include "support/io_support.h"

static char *patch(const char *text, const cr_hf_config_edit *e)
{
    char *out = NULL;
    size_t len;
    cr_error err = {0};
    cr_status st = cr_hf_patch_config(cr_default_allocator(), text, strlen(text), "donor/config.json", e, &out, &len, &err);
    if (st != CR_OK) fprintf(stderr, "patch: %s\n", err.msg);
    return out;
}

TEST(config_dtype_and_literals)
{
    const char *donor = "{\"architectures\":[\"LlamaForCausalLM\"],\"rope_theta\":10000.0,\"rms_norm_eps\":1e-05,"
                        "\"num_hidden_layers\":4,\"torch_dtype\":\"float32\",\"dtype\":\"float32\",\"name\":\"caf\xc3\xa9\","
                        "\"empty\":{},\"big\":12345678901234567890,\"t\":true,\"n\":null}";
    cr_hf_config_edit e = {.dtype_name = "bfloat16"};
    char *out = patch(donor, &e);
    REQUIRE(out);
    const char *want =
        "{\n"
        "  \"architectures\": [\n"
        "    \"LlamaForCausalLM\"\n"
        "  ],\n"
        "  \"rope_theta\": 10000.0,\n"
        "  \"rms_norm_eps\": 1e-05,\n"
        "  \"num_hidden_layers\": 4,\n"
        "  \"torch_dtype\": \"bfloat16\",\n"
        "  \"dtype\": \"bfloat16\",\n"
        "  \"name\": \"caf\\u00e9\",\n"
        "  \"empty\": {},\n"
        "  \"big\": 12345678901234567890,\n"
        "  \"t\": true,\n"
        "  \"n\": null\n"
        "}\n";
    CHECK_STR(out, want);
    free(out);
    /* torch_dtype is added when absent; dtype is not */
    out = patch("{\"a\": 1}", &e);
    CHECK_STR(out, "{\n  \"a\": 1,\n  \"torch_dtype\": \"bfloat16\"\n}\n");
    free(out);
    char *o2 = NULL;
    size_t len;
    cr_error err = {0};
    CHECK_EQ_INT(cr_hf_patch_config(cr_default_allocator(), "[1]", 3, "x/config.json", &e, &o2, &len, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "x/config.json");
    /* text after the object is refused (it used to put literals out of step:
     * 5e400 came back as Infinity, which cr_model_open cannot read) */
    const char *tail = "{\"x\": 5e400} 7";
    CHECK_EQ_INT(cr_hf_patch_config(cr_default_allocator(), tail, strlen(tail), "x/config.json", &e, &o2, &len, &err),
                 CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "x/config.json: not valid JSON (text after the object at byte 13)");
    CHECK(o2 == NULL);
    /* without the tail the literal is kept */
    out = patch("{\"x\": 5e400}\n", &e);
    CHECK_STR(out, "{\n  \"x\": 5e400,\n  \"torch_dtype\": \"bfloat16\"\n}\n");
    free(out);
}

/* mergekit 0.1.5 saves config.json with transformers 5, which writes the
 * dtype as `dtype` only (checked on a real 0.1.5 run: a donor with
 * torch_dtype float32 gives "dtype": "float32", or the recipe's dtype; with
 * both keys the donor's `dtype` wins; with neither and no recipe dtype there
 * is no key). crucible keeps the donor's other keys and order. */
TEST(config_dtype_key_only)
{
    cr_hf_config_edit e = {.dtype_name = "bfloat16", .dtype_key_only = true};
    char *out = patch("{\"a\": 1, \"torch_dtype\": \"float32\", \"b\": 2}", &e);
    CHECK_STR(out, "{\n  \"a\": 1,\n  \"dtype\": \"bfloat16\",\n  \"b\": 2\n}\n");
    free(out);
    out = patch("{\"torch_dtype\": \"float32\", \"a\": 1, \"dtype\": \"float16\"}", &e);
    CHECK_STR(out, "{\n  \"a\": 1,\n  \"dtype\": \"bfloat16\"\n}\n");
    free(out);
    out = patch("{\"a\": 1}", &e);
    CHECK_STR(out, "{\n  \"a\": 1,\n  \"dtype\": \"bfloat16\"\n}\n");
    free(out);
    /* no recipe dtype: the donor's value under the one key */
    cr_hf_config_edit keep = {.dtype_key_only = true};
    out = patch("{\"torch_dtype\": \"float32\", \"a\": 1}", &keep);
    CHECK_STR(out, "{\n  \"dtype\": \"float32\",\n  \"a\": 1\n}\n");
    free(out);
    out = patch("{\"torch_dtype\": \"float32\", \"dtype\": \"float16\"}", &keep);
    CHECK_STR(out, "{\n  \"dtype\": \"float16\"\n}\n");
    free(out);
    out = patch("{\"a\": 1}", &keep);
    CHECK_STR(out, "{\n  \"a\": 1\n}\n");
    free(out);
    /* a nested config with the layer key is patched the same way */
    const char *vlm = "{\"text_config\": {\"num_hidden_layers\": 4, \"torch_dtype\": \"float16\"}, \"torch_dtype\": \"float16\"}";
    cr_hf_config_edit e2 = {.dtype_name = "float32", .dtype_key_only = true,
                            .layer_key = "text_config.num_hidden_layers", .n_layers = 8};
    out = patch(vlm, &e2);
    REQUIRE(out);
    CHECK_STR(out, "{\n  \"text_config\": {\n    \"num_hidden_layers\": 8,\n    \"dtype\": \"float32\"\n  },\n"
                   "  \"dtype\": \"float32\"\n}\n");
    free(out);
}

TEST(config_layers)
{
    const char *donor = "{\"num_hidden_layers\": 4, \"max_window_layers\": 4, \"layer_types\": "
                        "[\"sliding_attention\", \"full_attention\", \"sliding_attention\", \"full_attention\"]}";
    cr_hf_config_edit e = {.layer_key = "num_hidden_layers", .n_layers = 6};
    char *out = patch(donor, &e);
    REQUIRE(out);
    CHECK_CONTAINS(out, "\"num_hidden_layers\": 6,");
    CHECK_CONTAINS(out, "\"max_window_layers\": 4,");
    CHECK_CONTAINS(out, "\"full_attention\",\n    \"sliding_attention\",\n    \"full_attention\"\n  ]");
    free(out);
    e.n_layers = 2;
    out = patch(donor, &e);
    CHECK_CONTAINS(out, "\"num_hidden_layers\": 2,");
    CHECK_CONTAINS(out, "\"max_window_layers\": 2,");
    CHECK_CONTAINS(out, "[\n    \"sliding_attention\",\n    \"full_attention\"\n  ]");
    free(out);
    /* dotted key: nested object patched, top level untouched */
    const char *vlm = "{\"num_hidden_layers\": 9, \"text_config\": {\"num_hidden_layers\": 4, \"torch_dtype\": \"float16\"}}";
    cr_hf_config_edit e2 = {.dtype_name = "float32", .layer_key = "text_config.num_hidden_layers", .n_layers = 8};
    out = patch(vlm, &e2);
    REQUIRE(out);
    CHECK_CONTAINS(out, "\"num_hidden_layers\": 9,");
    CHECK_CONTAINS(out, "\"num_hidden_layers\": 8,\n    \"torch_dtype\": \"float32\"");
    free(out);
    cr_hf_config_edit e3 = {.layer_key = "vision.num_layers", .n_layers = 3};
    char *o = NULL;
    size_t len;
    cr_error err = {0};
    CHECK_EQ_INT(cr_hf_patch_config(cr_default_allocator(), vlm, strlen(vlm), "c.json", &e3, &o, &len, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "vision.num_layers");
}

TEST(tokenizer_files)
{
    char *d = io_tmpdir("hf");
    const char *out[16];
    char *p = io_join(d, "tokenizer.json");
    io_write_text(p, "{}");
    CHECK_EQ_INT(cr_hf_tokenizer_files(d, true, out, 16), 0);   /* no tokenizer_config.json */
    /* ... which mergekit 0.1.5 re-saves, reproduced for model types that
     * transformers loads as a plain TokenizersBackend */
    const char *tc = cr_hf_resaved_tokenizer_config(d, "llama");
    REQUIRE(tc != NULL);
    CHECK_CONTAINS(tc, "\"tokenizer_class\": \"TokenizersBackend\"");
    CHECK(cr_hf_resaved_tokenizer_config(d, "mixtral") == tc);
    CHECK(cr_hf_resaved_tokenizer_config(d, "qwen2") == NULL);    /* Qwen2Tokenizer rebuilds it */
    CHECK(cr_hf_resaved_tokenizer_config(d, NULL) == NULL);
    free(p);
    const char *files[] = {"tokenizer_config.json", "generation_config.json", "merges.txt", "vocab.json"};
    for (int i = 0; i < 4; i++) { p = io_join(d, files[i]); io_write_text(p, "{}"); free(p); }
    size_t n = cr_hf_tokenizer_files(d, true, out, 16);
    REQUIRE(n == 4);
    CHECK_STR(out[0], "tokenizer_config.json");
    CHECK_STR(out[1], "tokenizer.json");
    CHECK_STR(out[2], "merges.txt");
    CHECK_STR(out[3], "generation_config.json");
    CHECK(cr_hf_resaved_tokenizer_config(d, "llama") == NULL);    /* copied, not re-saved */
    CHECK_EQ_INT(cr_hf_tokenizer_files(d, true, out, 2), 2);
    /* mergekit 0.1.4 copies only the first six names */
    n = cr_hf_tokenizer_files(d, false, out, 16);
    REQUIRE(n == 3);
    CHECK_STR(out[2], "merges.txt");
    io_rmtree(d);
    free(d);
}

TEST(model_card)
{
    CHECK(cr_hf_is_hub_id("org/model"));
    CHECK(cr_hf_is_hub_id("gpt2"));
    CHECK(!cr_hf_is_hub_id("/abs/path"));
    CHECK(!cr_hf_is_hub_id("~/m"));
    CHECK(!cr_hf_is_hub_id("a/b/c"));
    CHECK(!cr_hf_is_hub_id("."));            /* exists locally */
    const char *models[3] = {"org/base", "org/ft-1+org/lora", "/local/ft2"};
    cr_hf_card c = {
        .out_path = "/out/my-merge/", .method = "ties", .method_pretty = "TIES",
        .method_url = "https://arxiv.org/abs/2306.01708", .base_model = "org/base",
        .models = models, .n_models = 3, .config_yaml = "merge_method: ties\n",
    };
    size_t len;
    char *card = cr_hf_model_card(cr_default_allocator(), &c, &len);
    REQUIRE(card);
    const char *want =
        "---\n"
        "base_model:\n"
        "- org/base\n"
        "- org/ft-1\n"
        "- org/lora\n"
        "library_name: transformers\n"
        "tags:\n"
        "- merge\n"
        "- crucible\n"
        "- mergekit\n"
        "\n"
        "---\n"
        "# my-merge\n";
    CHECK(!strncmp(card, want, strlen(want)));
    CHECK_CONTAINS(card, "merged using the [TIES](https://arxiv.org/abs/2306.01708) merge method using "
                         "[org/base](https://huggingface.co/org/base) as a base.\n");
    CHECK_CONTAINS(card, "included in the merge:\n* [org/ft-1](https://huggingface.co/org/ft-1) + "
                         "[org/lora](https://huggingface.co/org/lora)\n* /local/ft2\n\n### Configuration");
    CHECK_CONTAINS(card, "```yaml\nmerge_method: ties\n\n```\n");
    CHECK_EQ_INT(len, strlen(card));
    free(card);
    /* slerp: no base sentence, every model listed; no Hub ids -> [] */
    const char *local[2] = {"/m/a", "/m/b"};
    cr_hf_card s = {.out_path = "", .method = "slerp", .base_model = "/m/a", .base_not_named = true,
                    .models = local, .n_models = 2, .config_yaml = "x"};
    card = cr_hf_model_card(cr_default_allocator(), &s, &len);
    REQUIRE(card);
    CHECK_CONTAINS(card, "base_model: []\n");
    CHECK_CONTAINS(card, "# Untitled Model (1)\n");
    CHECK_CONTAINS(card, "using the slerp merge method.\n");
    CHECK_CONTAINS(card, "* /m/a\n* /m/b\n");
    free(card);
}

int main(void)
{
    RUN(config_dtype_and_literals);
    RUN(config_dtype_key_only);
    RUN(config_layers);
    RUN(tokenizer_files);
    RUN(model_card);
    return cr_test_summary();
}
