/* test_synth.c — synthetic models: determinism, tensor names and shapes
 * per architecture, sharding, the config, and fine-tune deltas that touch
 * only the selected tensors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model.h"
#include "synth.h"
#include "harness.h"
#include "support/io_support.h"

static char *g_dir;

static char *synth(const char *name, const cr_synth_opts *o)
{
    char *d = io_join(g_dir, name);
    mkdir(d, 0755);
    cr_error err = {0};
    cr_status st = cr_synth_write(cr_default_allocator(), d, o, &err);
    if (st != CR_OK) { fprintf(stderr, "synth %s: %s\n", name, err.msg); free(d); return NULL; }
    return d;
}

static const cr_synth_opts tiny = {
    .arch = CR_SYNTH_QWEN2, .layers = 2, .hidden = 32, .intermediate = 48, .heads = 4, .kv_heads = 2,
    .vocab = 270, .dtype = CR_DTYPE_F32, .seed = 7,
};

TEST(generator)
{
    uint64_t h = cr_synth_name_hash("x");
    CHECK(cr_synth_normal(1, h, 5) == cr_synth_normal(1, h, 5));
    CHECK(cr_synth_normal(1, h, 5) != cr_synth_normal(2, h, 5));
    CHECK(cr_synth_normal(1, h, 5) != cr_synth_normal(1, h, 6));
    double sum = 0, sq = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double v = cr_synth_normal(3, h, (uint64_t)i);
        sum += v;
        sq += v * v;
        if (fabs(v) > 3.4642) { CHECK(!"value outside the Irwin-Hall range"); break; }
    }
    CHECK_NEAR(sum / n, 0.0, 0.01);
    CHECK_NEAR(sq / n, 1.0, 0.02);
}

TEST(fresh_model)
{
    char *d = synth("fresh", &tiny);
    REQUIRE(d);
    cr_model m;
    cr_error err = {0};
    REQUIRE(cr_model_open(cr_default_allocator(), d, 0, &m, &err) == CR_OK);
    /* 3 global + 2 layers * (7 matrices + 2 norms + 3 biases) */
    CHECK_EQ_INT(m.n_tensors, 3 + 2 * 12);
    const cr_model_tensor *t = cr_model_find(&m, "model.layers.1.self_attn.k_proj.weight");
    REQUIRE(t);
    CHECK_EQ_INT(t->info->shape[0], 16);     /* kv_heads * head_dim = 2 * 8 */
    CHECK_EQ_INT(t->info->shape[1], 32);
    CHECK(cr_model_find(&m, "model.layers.0.self_attn.v_proj.bias") != NULL);
    t = cr_model_find(&m, "model.layers.0.mlp.down_proj.weight");
    REQUIRE(t);
    CHECK_EQ_INT(t->info->shape[0], 32);
    CHECK_EQ_INT(t->info->shape[1], 48);
    const float *w = cr_st_data(&m.shards[t->shard], t->info);
    uint64_t h = cr_synth_name_hash("model.layers.0.mlp.down_proj.weight");
    CHECK(w[17] == 0.02f * cr_synth_normal(7, h, 17));
    t = cr_model_find(&m, "model.norm.weight");
    REQUIRE(t);
    const float *nw = cr_st_data(&m.shards[t->shard], t->info);
    for (int i = 0; i < 32; i++) CHECK(nw[i] > 0.9f && nw[i] < 1.1f);
    long long v;
    CHECK(cr_model_config_int(&m, "head_dim", &v) && v == 8);
    CHECK(cr_model_config_int(&m, "vocab_size", &v) && v == 270);
    CHECK_STR(cr_model_config_str(&m, "model_type"), "qwen2");
    CHECK_STR(cr_model_config_str(&m, "torch_dtype"), "float32");
    cr_model_close(&m);
    char *tok = io_join(d, "tokenizer.json");
    CHECK(io_exists(tok));
    free(tok);
    free(d);
}

/* qwen3: no biases, per-head q/k norms, a qwen3 config (the Qwen3 MoE
 * writer's input) */
TEST(qwen3_model)
{
    cr_synth_opts o = tiny;
    o.arch = CR_SYNTH_QWEN3;
    char *d = synth("qwen3", &o);
    REQUIRE(d);
    cr_model m;
    cr_error err = {0};
    REQUIRE(cr_model_open(cr_default_allocator(), d, 0, &m, &err) == CR_OK);
    /* 3 global + 2 layers * (7 matrices + 2 norms + q/k norms) */
    CHECK_EQ_INT(m.n_tensors, 3 + 2 * 11);
    const cr_model_tensor *t = cr_model_find(&m, "model.layers.1.self_attn.k_norm.weight");
    REQUIRE(t);
    CHECK(t->info->ndim == 1 && t->info->shape[0] == 8);    /* head_dim */
    const float *kn = cr_st_data(&m.shards[t->shard], t->info);
    for (int i = 0; i < 8; i++) CHECK(kn[i] > 0.9f && kn[i] < 1.1f);
    CHECK(cr_model_find(&m, "model.layers.0.self_attn.q_norm.weight") != NULL);
    CHECK(cr_model_find(&m, "model.layers.0.self_attn.q_proj.bias") == NULL);
    const char *mt = cr_model_config_str(&m, "model_type");
    CHECK(mt && !strcmp(mt, "qwen3"));
    cr_model_close(&m);
    free(d);
}

TEST(sharded_and_deterministic)
{
    cr_synth_opts o = tiny;
    o.arch = CR_SYNTH_LLAMA;
    o.dtype = CR_DTYPE_BF16;
    o.tied = true;
    o.shard_size = 4000;
    char *d1 = synth("sh1", &o), *d2 = synth("sh2", &o);
    REQUIRE(d1 && d2);
    cr_model m;
    cr_error err = {0};
    REQUIRE(cr_model_open(cr_default_allocator(), d1, 0, &m, &err) == CR_OK);
    CHECK_EQ_INT(m.n_shards, 11);
    CHECK(cr_model_find(&m, "lm_head.weight") == NULL);
    CHECK(cr_model_find(&m, "model.layers.0.self_attn.q_proj.bias") == NULL);
    CHECK_EQ_INT(m.n_tensors, 2 + 2 * 9);
    cr_model_close(&m);
    /* the same options give the same bytes */
    const char *files[2] = {"model.safetensors.index.json", "model-00002-of-00011.safetensors"};
    for (int i = 0; i < 2; i++) {
        char *a = io_join(d1, files[i]), *b = io_join(d2, files[i]);
        size_t la, lb;
        char *ta = io_read_file(a, &la), *tb = io_read_file(b, &lb);
        CHECK_MSG(ta && tb && la == lb && !memcmp(ta, tb, la), "%s differs or is missing", files[i]);
        free(ta); free(tb); free(a); free(b);
    }
    char *cfg = io_join(d1, "config.json");
    char *text = io_read_file(cfg, NULL);
    CHECK_CONTAINS(text, "\"tie_word_embeddings\": true");
    CHECK_CONTAINS(text, "\"torch_dtype\": \"bfloat16\"");
    free(text);
    free(cfg);
    free(d1);
    free(d2);
}

TEST(fine_tune)
{
    char *base = synth("base", &tiny);
    REQUIRE(base);
    cr_synth_opts o = {.from = base, .delta_scale = 0.01, .only = "mlp.up_proj", .seed = 9};
    char *ft = synth("ft", &o);
    REQUIRE(ft);
    cr_model a, b;
    cr_error err = {0};
    REQUIRE(cr_model_open(cr_default_allocator(), base, 0, &a, &err) == CR_OK);
    REQUIRE(cr_model_open(cr_default_allocator(), ft, 0, &b, &err) == CR_OK);
    REQUIRE(a.n_tensors == b.n_tensors);
    int changed = 0;
    for (uint32_t i = 0; i < a.n_tensors; i++) {
        const cr_st_tensor *ta = a.tensors[i].info, *tb = b.tensors[i].info;
        CHECK_STR(ta->name, tb->name);
        const float *x = cr_st_data(&a.shards[a.tensors[i].shard], ta);
        const float *y = cr_st_data(&b.shards[b.tensors[i].shard], tb);
        bool same = !memcmp(x, y, ta->end - ta->begin);
        if (strstr(ta->name, "mlp.up_proj")) {
            CHECK(!same);
            changed++;
            for (uint64_t j = 0; j < ta->numel; j++)
                CHECK(fabsf(y[j] - x[j]) <= 0.01f * 3.47f);
        } else {
            CHECK_MSG(same, "%s changed", ta->name);
        }
    }
    CHECK_EQ_INT(changed, 2);
    CHECK(b.config != NULL);
    cr_model_close(&a);
    cr_model_close(&b);
    char *tok = io_join(ft, "tokenizer.json");
    CHECK(io_exists(tok));
    free(tok);
    free(base);
    free(ft);
}

TEST(bad_options)
{
    cr_synth_opts o = tiny;
    o.heads = 5;
    char *d = io_join(g_dir, "bad");
    mkdir(d, 0755);
    cr_error err = {0};
    CHECK_EQ_INT(cr_synth_write(cr_default_allocator(), d, &o, &err), CR_ERR_ARG);
    CHECK_CONTAINS(err.msg, "multiple of --heads");
    o = tiny;
    o.kv_heads = 3;
    CHECK_EQ_INT(cr_synth_write(cr_default_allocator(), d, &o, &err), CR_ERR_ARG);
    o = tiny;
    o.dtype = CR_DTYPE_I64;
    CHECK_EQ_INT(cr_synth_write(cr_default_allocator(), d, &o, &err), CR_ERR_ARG);
    cr_synth_opts f = {.from = "/nonexistent/model", .delta_scale = 1};
    CHECK_EQ_INT(cr_synth_write(cr_default_allocator(), d, &f, &err), CR_ERR_IO);
    CHECK_CONTAINS(err.msg, "/nonexistent/model");
    free(d);
}

int main(void)
{
    g_dir = io_tmpdir("synth");
    if (!g_dir) return 1;
    RUN(generator);
    RUN(fresh_model);
    RUN(qwen3_model);
    RUN(sharded_and_deterministic);
    RUN(fine_tune);
    RUN(bad_options);
    io_rmtree(g_dir);
    free(g_dir);
    return cr_test_summary();
}
