/* test_forward.c — crucible's forward pass against transformers on the tiny
 * random models in tests/fixtures/forward/ (written by
 * tests/compat/check_forward.py): hidden states at the last token for every
 * layer and logits at every position must agree to cosine >= 0.9999, and
 * the mean next-token NLL to 0.1%. Also: the C tokenizer gives the same ids
 * as the tokenizers library on the same text, results do not depend on the
 * thread count, and bad inputs fail cleanly. */
#include "harness.h"
#include "forward.h"
#include "pool.h"
#include "tokenizer.h"
#include "model.h"
#include "safetensors.h"

#include <cjson/cJSON.h>

#include <stdlib.h>

static double cosine(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) { ab += (double)a[i] * b[i]; aa += (double)a[i] * a[i]; bb += (double)b[i] * b[i]; }
    return ab / (sqrt(aa) * sqrt(bb) + 1e-30);
}

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
    *len = (size_t)n;
    return buf;
}

static void check_model(const char *name)
{
    const cr_allocator *A = cr_default_allocator();
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "tests/fixtures/forward/%s", name);
    cr_error err = { 0 };
    cr_model model;
    cr_status st = cr_model_open(A, dir, 0, &model, &err);
    CHECK_MSG(st == CR_OK, "%s: %s", name, err.msg);
    if (st) return;
    cr_llm llm;
    st = cr_llm_open(A, &model, &llm, &err);
    CHECK_MSG(st == CR_OK, "%s: %s", name, err.msg);
    if (st) { cr_model_close(&model); return; }
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    cr_st_file ex;
    st = cr_st_open(A, path, 0, &ex, &err);
    CHECK_MSG(st == CR_OK, "%s: %s", name, err.msg);
    if (st) { cr_llm_free(&llm); cr_model_close(&model); return; }
    const cr_st_tensor *tid = cr_st_find(&ex, "ids"), *ths = cr_st_find(&ex, "hidden_last");
    const cr_st_tensor *tlg = cr_st_find(&ex, "logits"), *tnll = cr_st_find(&ex, "nll");
    REQUIRE(tid && ths && tlg && tnll);
    size_t T = tid->numel, L = llm.cfg.n_layers, H = llm.cfg.hidden, V = llm.cfg.vocab;
    CHECK_EQ_INT(ths->shape[0], L + 1);
    CHECK_EQ_INT(ths->shape[1], H);
    CHECK_EQ_INT(tlg->shape[1], V);
    int32_t *ids = malloc(T * sizeof *ids);
    float *want_hs = malloc(ths->numel * sizeof(float)), *want_lg = malloc(tlg->numel * sizeof(float));
    memcpy(ids, cr_st_data(&ex, tid), T * 4);
    memcpy(want_hs, cr_st_data(&ex, ths), ths->numel * 4);
    memcpy(want_lg, cr_st_data(&ex, tlg), tlg->numel * 4);
    double want_nll;
    memcpy(&want_nll, cr_st_data(&ex, tnll), 8);

    /* the C tokenizer reproduces the ids */
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    cr_tokenizer *tok;
    REQUIRE(cr_tokenizer_load(A, path, &tok, &err) == CR_OK);
    snprintf(path, sizeof path, "%s/text.txt", dir);
    size_t tl = 0;
    char *text = read_all(path, &tl);
    cr_vec tv;
    cr_vec_init(&tv, A, sizeof(int32_t));
    CHECK(cr_tokenizer_encode(tok, text, tl, false, &tv, &err) == CR_OK);
    CHECK_EQ_INT(tv.len, T);
    CHECK(tv.len == T && !memcmp(tv.data, ids, T * 4));
    cr_vec_free(&tv);
    free(text);
    cr_tokenizer_free(tok);

    float *hs = calloc((L + 1) * H, sizeof(float)), *lg = calloc(T * V, sizeof(float));
    cr_llm_run run = { .ids = ids, .n_ids = T, .hidden_last = hs, .logits = lg, .want_nll = true };
    st = cr_llm_forward(&llm, &run, &err);
    CHECK_MSG(st == CR_OK, "%s: %s", name, err.msg);
    for (size_t l = 0; l <= L; l++) {
        double c = cosine(hs + l * H, want_hs + l * H, H);
        CHECK_MSG(c >= 0.9999, "%s: hidden state %zu cosine %.7f", name, l, c);
    }
    double worst = 1;
    for (size_t t = 0; t < T; t++) {
        double c = cosine(lg + t * V, want_lg + t * V, V);
        if (c < worst) worst = c;
    }
    CHECK_MSG(worst >= 0.9999, "%s: worst logits cosine %.7f", name, worst);
    if (getenv("CR_TEST_VERBOSE")) printf("%s: worst logits cosine %.9f, ppl %.6f vs %.6f\n", name, worst, exp(run.nll_sum / (double)run.nll_count), exp(want_nll));
    CHECK_EQ_INT(run.nll_count, T - 1);
    double nll = run.nll_sum / (double)run.nll_count;
    CHECK_MSG(fabs(exp(nll) - exp(want_nll)) <= 1e-3 * exp(want_nll), "%s: perplexity %.6f vs %.6f", name,
              exp(nll), exp(want_nll));

    /* thread count does not change a single bit */
    float *hs3 = calloc((L + 1) * H, sizeof(float));
    cr_pool *pool;
    REQUIRE(cr_pool_init(A, 3, &pool, &err) == CR_OK);
    llm.pool = pool;
    cr_llm_run run3 = { .ids = ids, .n_ids = T, .hidden_last = hs3, .want_nll = true };
    CHECK(cr_llm_forward(&llm, &run3, &err) == CR_OK);
    CHECK(!memcmp(hs, hs3, (L + 1) * H * sizeof(float)));
    CHECK(run3.nll_sum == run.nll_sum);

    /* nor does T: a prefix's logits are the full run's first rows, bit for
     * bit (each element is computed the same way in any tile) */
    size_t Tp = T - 5;
    float *lgp = calloc(Tp * V, sizeof(float));
    cr_llm_run runp = { .ids = ids, .n_ids = Tp, .logits = lgp };
    CHECK(cr_llm_forward(&llm, &runp, &err) == CR_OK);
    CHECK(!memcmp(lgp, lg, Tp * V * sizeof(float)));
    free(lgp);

    /* nll_from: only the targets from that index, and the same values */
    cr_llm_run runf = { .ids = ids, .n_ids = T, .want_nll = true, .nll_from = T - 3 };
    CHECK(cr_llm_forward(&llm, &runf, &err) == CR_OK);
    CHECK_EQ_INT(runf.nll_count, 3);
    cr_llm_run runl = { .ids = ids, .n_ids = T, .want_nll = true, .nll_from = T - 1 };
    CHECK(cr_llm_forward(&llm, &runl, &err) == CR_OK);
    CHECK_EQ_INT(runl.nll_count, 1);
    CHECK(runl.nll_sum > 0 && runl.nll_sum < runf.nll_sum);

    /* every ISA this CPU runs: perplexity within 1e-4 of transformers */
    static const char *const isas[] = { "scalar", "avx2", "avx512" };
    for (size_t i = 0; i < 3; i++) {
        const cr_gemm_kernels *k;
        if (cr_gemm_pick(isas[i], &k, &err) != CR_OK) continue;
        llm.gemm = k;
        cr_llm_run ri = { .ids = ids, .n_ids = T, .want_nll = true };
        CHECK(cr_llm_forward(&llm, &ri, &err) == CR_OK);
        double pi = exp(ri.nll_sum / (double)ri.nll_count), pw = exp(want_nll);
        CHECK_MSG(fabs(pi - pw) <= 1e-4 * pw, "%s, %s kernels: perplexity %.6f vs transformers %.6f", name, isas[i],
                  pi, pw);
    }
    llm.pool = NULL;
    cr_pool_free(pool);

    /* stop_layer: hs[0..stop] match the full run */
    memset(hs3, 0, (L + 1) * H * sizeof(float));
    cr_llm_run runs = { .ids = ids, .n_ids = T, .hidden_last = hs3, .stop_layer = (uint32_t)L - 1 };
    CHECK(cr_llm_forward(&llm, &runs, &err) == CR_OK);
    CHECK(!memcmp(hs, hs3, L * H * sizeof(float)));

    /* hs[0] is the embedding of the last token */
    float *emb = malloc(H * sizeof(float));
    cr_convert_to_f32(llm.embed.dtype, (const char *)llm.embed.data + (size_t)ids[T - 1] * H * cr_dtype_size(llm.embed.dtype), emb, H);
    CHECK(!memcmp(emb, hs, H * sizeof(float)));
    free(emb);

    /* an id outside the embedding */
    int32_t bad[2] = { 1, (int32_t)V };
    cr_llm_run rb = { .ids = bad, .n_ids = 2, .hidden_last = hs3 };
    CHECK(cr_llm_forward(&llm, &rb, &err) == CR_ERR_ARG);
    CHECK_CONTAINS(err.msg, "outside the embedding");
    cr_llm_run re = { .ids = bad, .n_ids = 0 };
    CHECK(cr_llm_forward(&llm, &re, &err) == CR_ERR_ARG);

    free(hs3); free(hs); free(lg); free(ids); free(want_hs); free(want_lg);
    cr_st_close(&ex);
    cr_llm_free(&llm);
    cr_model_close(&model);
}

TEST(llama_bf16_gqa_llama3_rope) { check_model("llama"); }
TEST(qwen2_bias_tied) { check_model("qwen2"); }

TEST(config_errors)
{
    cr_error err;
    cr_llm_config c;
    cJSON *j = cJSON_Parse("{\"model_type\":\"gpt2\"}");
    CHECK(cr_llm_config_parse(j, "m", &c, &err) == CR_ERR_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "gpt2");
    cJSON_Delete(j);
    j = cJSON_Parse("{\"model_type\":\"llama\",\"num_hidden_layers\":2,\"hidden_size\":8,"
                    "\"intermediate_size\":16,\"num_attention_heads\":2}");
    CHECK(cr_llm_config_parse(j, "m", &c, &err) == CR_OK);
    CHECK_EQ_INT(c.head_dim, 4);
    CHECK_EQ_INT(c.n_kv_heads, 2);
    CHECK_NEAR(c.rope_theta, 10000.0, 0);
    CHECK_NEAR(c.rms_eps, 1e-6, 1e-12);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"model_type\":\"mistral\",\"num_hidden_layers\":2,\"hidden_size\":8,"
                    "\"intermediate_size\":16,\"num_attention_heads\":2,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4}}");
    CHECK(cr_llm_config_parse(j, "m", &c, &err) == CR_ERR_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "yarn");
    cJSON_Delete(j);
    j = cJSON_Parse("{\"model_type\":\"llama\",\"num_hidden_layers\":2,\"hidden_size\":8,"
                    "\"intermediate_size\":16,\"num_attention_heads\":2,\"rope_theta\":5e5,"
                    "\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":2}}");
    CHECK(cr_llm_config_parse(j, "m", &c, &err) == CR_OK);
    CHECK_EQ_INT(c.rope_type, CR_ROPE_LINEAR);
    CHECK_NEAR(c.rope_theta, 5e5, 0);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"model_type\":\"llama\",\"num_hidden_layers\":2,\"hidden_size\":8,"
                    "\"intermediate_size\":16,\"num_attention_heads\":3}");
    CHECK(cr_llm_config_parse(j, "m", &c, &err) == CR_ERR_FORMAT);
    cJSON_Delete(j);
}

int main(void)
{
    RUN(llama_bf16_gqa_llama3_rope);
    RUN(qwen2_bias_tied);
    RUN(config_errors);
    return cr_test_summary();
}
