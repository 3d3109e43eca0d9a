/* test_model.c — model directories: single file, sharded index (and every
 * way an index can be wrong), pytorch-only and empty directories, config
 * getters with dotted keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model.h"
#include "harness.h"
#include "support/io_support.h"

static char *g_dir;

/* write a safetensors file of F32 tensors named names[0..n) with n elements each */
static void write_st(const char *dir, const char *file, const char *const *names, int n)
{
    cr_st_entry e[8];
    float data[8][8];
    const void *ptrs[8];
    for (int i = 0; i < n; i++) {
        e[i] = (cr_st_entry){.name = names[i], .dtype = CR_DTYPE_F32, .ndim = 1, .shape = {(uint64_t)(i + 1)}};
        for (int j = 0; j < 8; j++) data[i][j] = (float)(10 * i + j);
        ptrs[i] = data[i];
    }
    char *p = io_join(dir, file);
    cr_error err = {0};
    if (cr_st_write_file(cr_default_allocator(), p, e, ptrs, (size_t)n, &err) != CR_OK)
        fprintf(stderr, "write_st: %s\n", err.msg);
    free(p);
}

static char *mkdir_in(const char *name)
{
    char *d = io_join(g_dir, name);
    mkdir(d, 0755);
    return d;
}

static void put(const char *dir, const char *file, const char *text)
{
    char *p = io_join(dir, file);
    io_write_text(p, text);
    free(p);
}

TEST(single_file)
{
    char *d = mkdir_in("single");
    const char *names[3] = {"model.norm.weight", "lm_head.weight", "model.embed_tokens.weight"};
    write_st(d, "model.safetensors", names, 3);
    put(d, "config.json", "{\"num_hidden_layers\": 4, \"torch_dtype\": \"bfloat16\", "
                          "\"text_config\": {\"num_hidden_layers\": 7, \"x\": {\"y\": 2}}, \"rope_theta\": 10000.0,"
                          "\"a.b\": 3, \"eps\": 1e-5}");
    cr_model m;
    cr_error err = {0};
    REQUIRE(cr_model_open(cr_default_allocator(), d, 0, &m, &err) == CR_OK);
    CHECK_EQ_INT(m.n_tensors, 3);
    CHECK_EQ_INT(m.n_shards, 1);
    CHECK_STR(m.tensors[0].info->name, "lm_head.weight");
    CHECK_STR(m.tensors[2].info->name, "model.norm.weight");
    CHECK_EQ_INT(m.total_bytes, 4 * (1 + 2 + 3));
    const cr_model_tensor *t = cr_model_find(&m, "model.embed_tokens.weight");
    REQUIRE(t);
    CHECK_EQ_INT(t->info->numel, 3);
    CHECK(((const float *)cr_st_data(&m.shards[t->shard], t->info))[2] == 22.0f);
    CHECK(cr_model_find(&m, "nope") == NULL);
    long long v = 0;
    CHECK(cr_model_config_int(&m, "num_hidden_layers", &v) && v == 4);
    CHECK(cr_model_config_int(&m, "text_config.num_hidden_layers", &v) && v == 7);
    CHECK(cr_model_config_int(&m, "text_config.x.y", &v) && v == 2);
    CHECK(cr_model_config_int(&m, "a.b", &v) && v == 3);
    CHECK(!cr_model_config_int(&m, "eps", &v));
    CHECK(!cr_model_config_int(&m, "text_config.missing", &v));
    CHECK(cr_model_config_int(&m, "rope_theta", &v) && v == 10000);
    CHECK_STR(cr_model_config_str(&m, "torch_dtype"), "bfloat16");
    CHECK(cr_model_config_str(&m, "num_hidden_layers") == NULL);
    cr_model_close(&m);
    free(d);
}

static const char *A[2] = {"a.0", "a.1"};
static const char *B[1] = {"b.0"};

static char *sharded_dir(const char *name, const char *index)
{
    char *d = mkdir_in(name);
    write_st(d, "model-00001-of-00002.safetensors", A, 2);
    write_st(d, "model-00002-of-00002.safetensors", B, 1);
    put(d, "model.safetensors.index.json", index);
    return d;
}

TEST(sharded)
{
    char *d = sharded_dir("sharded",
        "{\"metadata\": {\"total_size\": 16}, \"weight_map\": {\"b.0\": \"model-00002-of-00002.safetensors\","
        " \"a.1\": \"model-00001-of-00002.safetensors\"}}");
    cr_model m;
    cr_error err = {0};
    REQUIRE(cr_model_open(cr_default_allocator(), d, 0, &m, &err) == CR_OK);
    CHECK(m.config == NULL);
    CHECK_EQ_INT(m.n_shards, 2);
    CHECK_EQ_INT(m.n_tensors, 2);         /* a.0 is in a shard but unmapped: ignored */
    CHECK_STR(m.tensors[0].info->name, "a.1");
    /* ... and counted, for a warning */
    CHECK_EQ_INT(m.n_unlisted, 1);
    CHECK(m.first_unlisted && !strcmp(m.first_unlisted, "a.0"));
    const char *holder = cr_model_unlisted_shard(&m, "a.0");
    CHECK(holder && strstr(holder, "model-00001-of-00002.safetensors"));
    CHECK(cr_model_unlisted_shard(&m, "a.1") == NULL);
    CHECK(cr_model_unlisted_shard(&m, "zz") == NULL);
    const cr_model_tensor *t = cr_model_find(&m, "b.0");
    REQUIRE(t);
    CHECK_STR(m.shards[t->shard].path + strlen(m.shards[t->shard].path) - 32, "model-00002-of-00002.safetensors");
    CHECK_EQ_INT(m.total_bytes, 4 + 8);
    cr_model_close(&m);
    /* header-only opening */
    REQUIRE(cr_model_open(cr_default_allocator(), d, CR_ST_HEADER_ONLY, &m, &err) == CR_OK);
    CHECK(m.shards[0].map == NULL);
    cr_model_close(&m);
    free(d);
}

static void expect_fail(const char *name, const char *index, cr_status want_st, const char *want)
{
    char *d = sharded_dir(name, index);
    cr_model m;
    cr_error err = {0};
    cr_status st = cr_model_open(cr_default_allocator(), d, 0, &m, &err);
    CHECK_MSG(st == want_st, "%s: status %d: %s", name, st, err.msg);
    CHECK_CONTAINS(err.msg, d);
    CHECK_CONTAINS(err.msg, want);
    free(d);
}

TEST(bad_indexes)
{
    expect_fail("no_map", "{\"metadata\": {}}", CR_ERR_FORMAT, "weight_map");
    expect_fail("bad_json", "{\"weight_map\": {", CR_ERR_FORMAT, "not valid JSON");
    expect_fail("missing_file", "{\"weight_map\": {\"a.0\": \"model-00003-of-00003.safetensors\"}}", CR_ERR_FORMAT,
                "does not exist");
    expect_fail("missing_tensor", "{\"weight_map\": {\"zz\": \"model-00001-of-00002.safetensors\"}}", CR_ERR_FORMAT,
                "tensor 'zz' is mapped to 'model-00001-of-00002.safetensors'");
    expect_fail("wrong_shard", "{\"weight_map\": {\"b.0\": \"model-00001-of-00002.safetensors\"}}", CR_ERR_FORMAT,
                "no such tensor");
    expect_fail("dup_key", "{\"weight_map\": {\"a.0\": \"model-00001-of-00002.safetensors\","
                           " \"a.0\": \"model-00001-of-00002.safetensors\"}}", CR_ERR_FORMAT, "appears twice");
    expect_fail("escape", "{\"weight_map\": {\"a.0\": \"../x.safetensors\"}}", CR_ERR_FORMAT, "not a file");
    expect_fail("non_string", "{\"weight_map\": {\"a.0\": 3}}", CR_ERR_FORMAT, "not a file name");
    /* a corrupt shard is reported with the shard's own path */
    char *d = sharded_dir("corrupt_shard", "{\"weight_map\": {\"b.0\": \"model-00002-of-00002.safetensors\"}}");
    char *p = io_join(d, "model-00002-of-00002.safetensors");
    io_write_file(p, "\x04\0\0\0\0\0\0\0{}", 10);
    cr_model m;
    cr_error err = {0};
    CHECK_EQ_INT(cr_model_open(cr_default_allocator(), d, 0, &m, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "model-00002-of-00002.safetensors");
    free(p);
    free(d);
}

/* index and config.json text with what cJSON accepted and JSON does not:
 * a raw control character or \u0000 in a key would cut the name short
 * ("a.1<NUL>zz" read as "a.1"). Each is an error naming the file and the
 * byte. */
static void expect_bad_json(const char *name, const char *file, const char *text, size_t n, const char *want)
{
    char *d = sharded_dir(name, "{\"weight_map\": {\"a.1\": \"model-00001-of-00002.safetensors\"}}");
    char *p = io_join(d, file);
    io_write_file(p, text, n);
    cr_model m;
    cr_error err = {0};
    cr_status st = cr_model_open(cr_default_allocator(), d, 0, &m, &err);
    CHECK_MSG(st == CR_ERR_FORMAT, "%s: status %d: %s", name, st, err.msg);
    if (st == CR_OK) cr_model_close(&m);
    CHECK_CONTAINS(err.msg, p);
    CHECK_CONTAINS(err.msg, want);
    free(p);
    free(d);
}

TEST(control_characters_in_json)
{
#define T(s) s, sizeof(s) - 1
    expect_bad_json("idx_nul", "model.safetensors.index.json",
                    T("{\"weight_map\": {\"a.1\0zz\": \"model-00001-of-00002.safetensors\"}}"),
                    "raw control character U+0000 inside a JSON string at byte 20");
    expect_bad_json("idx_escaped_nul", "model.safetensors.index.json",
                    T("{\"weight_map\": {\"a.1\\u0000zz\": \"model-00001-of-00002.safetensors\"}}"),
                    "\\u0000 inside a JSON string at byte 20");
    expect_bad_json("idx_ctl_in_file", "model.safetensors.index.json",
                    T("{\"weight_map\": {\"a.1\": \"model-00001-of-00002.safetensors\x1b\"}}"), "U+001B");
    expect_bad_json("cfg_nul", "config.json", T("{\"model_type\": \"lla\0ma\", \"num_hidden_layers\": 2}"),
                    "U+0000");
    expect_bad_json("cfg_ctl_between", "config.json", T("{\"num_hidden_layers\":\x0c 2}"), "outside a JSON string");
#undef T
}

TEST(other_dirs)
{
    cr_model m;
    cr_error err = {0};
    char *d = mkdir_in("pytorch");
    put(d, "pytorch_model.bin", "PK");   /* read (torchbin.h), and refused as no zip */
    CHECK_EQ_INT(cr_model_open(cr_default_allocator(), d, 0, &m, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "pytorch_model.bin: not a PyTorch checkpoint");
    free(d);
    d = mkdir_in("empty");
    CHECK_EQ_INT(cr_model_open(cr_default_allocator(), d, 0, &m, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "no model weights");
    free(d);
    d = io_join(g_dir, "does-not-exist");
    CHECK_EQ_INT(cr_model_open(cr_default_allocator(), d, 0, &m, &err), CR_ERR_IO);
    CHECK_CONTAINS(err.msg, "does-not-exist");
    free(d);
    d = mkdir_in("badconfig");
    write_st(d, "model.safetensors", B, 1);
    put(d, "config.json", "{\"a\": }");
    CHECK_EQ_INT(cr_model_open(cr_default_allocator(), d, 0, &m, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "config.json");
    free(d);
}

TEST(allocation_failures)
{
    char *d = sharded_dir("alloc", "{\"weight_map\": {\"b.0\": \"model-00002-of-00002.safetensors\","
                                   " \"a.1\": \"model-00001-of-00002.safetensors\"}}");
    put(d, "config.json", "{\"x\": 1}");
    int ok = 0;
    for (long k = 0; k < 60; k++) {
        cr_failing_allocator fa;
        cr_failing_allocator_init(&fa, cr_default_allocator(), k, false);
        cr_model m;
        cr_error err = {0};
        cr_status st = cr_model_open(&fa.base, d, 0, &m, &err);
        CHECK_MSG(st == CR_OK || st == CR_ERR_NOMEM, "k=%ld: %s", k, err.msg);
        if (st == CR_OK) { ok++; cr_model_close(&m); }
        CHECK_EQ_INT(fa.live, 0);
    }
    CHECK(ok > 0);
    free(d);
}

int main(void)
{
    g_dir = io_tmpdir("model");
    if (!g_dir) return 1;
    RUN(single_file);
    RUN(sharded);
    RUN(bad_indexes);
    RUN(control_characters_in_json);
    RUN(other_dirs);
    RUN(allocation_failures);
    io_rmtree(g_dir);
    free(g_dir);
    return cr_test_summary();
}
