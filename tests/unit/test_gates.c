/* test_gates.c — mergekit-moe gate math (formats-and-moe.md §1.7, §1.10):
 * cheap_embed on the reference's hand-computed vectors, hidden gates on the
 * tiny transformers-built Llama (layer 0 = normalised mean of the prompts'
 * last-token embeddings; later layers = forward-pass states), prompt
 * tokenization with BOS glued as text, and the random transforms. */
#include "harness.h"
#include "infer/gates.h"
#include "model.h"

#include <stdlib.h>

TEST(cheap_embed_reference_vectors)
{
    /* X = [[1,0,0],[0,1,0],[0,0,1],[1,1,0],[0,1,1]] */
    float X[15] = { 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1 };
    cr_llm_weight e = { X, CR_DTYPE_F32, 5, 3 };
    int32_t p0[] = { 1, 3 }, p1[] = { 1, 4, 2 }, n0[] = { 1, 0 };
    cr_id_list pos[] = { { p0, 2 }, { p1, 3 } }, neg[] = { { n0, 2 } };
    float g[3];
    cr_error err;
    REQUIRE(cr_gate_cheap_embed(cr_default_allocator(), &e, 5, pos, 2, NULL, 0, g, &err) == CR_OK);
    CHECK_NEAR(g[0], 0.218218, 1e-6);
    CHECK_NEAR(g[1], 0.872872, 1e-6);
    CHECK_NEAR(g[2], 0.436436, 1e-6);
    REQUIRE(cr_gate_cheap_embed(cr_default_allocator(), &e, 5, pos, 2, neg, 1, g, &err) == CR_OK);
    CHECK_NEAR(g[0], -0.723216, 1e-6);
    CHECK_NEAR(g[1], 0.245217, 1e-6);
    CHECK_NEAR(g[2], 0.645622, 1e-6);
    int32_t bad[] = { 5 };
    cr_id_list pb[] = { { bad, 1 } };
    CHECK(cr_gate_cheap_embed(cr_default_allocator(), &e, 5, pb, 1, NULL, 0, g, &err) == CR_ERR_ARG);
    /* an id below the embedding rows but past config vocab_size */
    int32_t past[] = { 4 };
    cr_id_list pp[] = { { past, 1 } };
    CHECK(cr_gate_cheap_embed(cr_default_allocator(), &e, 4, pp, 1, NULL, 0, g, &err) == CR_ERR_ARG);
}

static double cosine(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) { ab += (double)a[i] * b[i]; aa += (double)a[i] * a[i]; bb += (double)b[i] * b[i]; }
    return ab / sqrt(aa * bb);
}

TEST(hidden_gates_on_tiny_llama)
{
    const cr_allocator *A = cr_default_allocator();
    cr_error err = { 0 };
    cr_model model;
    REQUIRE(cr_model_open(A, "tests/fixtures/forward/llama", 0, &model, &err) == CR_OK);
    cr_llm llm;
    REQUIRE(cr_llm_open(A, &model, &llm, &err) == CR_OK);
    cr_tokenizer *tok;
    REQUIRE(cr_tokenizer_load(A, "tests/fixtures/forward/llama/tokenizer.json", &tok, &err) == CR_OK);
    const char *prompts[] = { "The quick brown fox", "numbers 12345 and more", "café and emoji 😀" };
    cr_vec v[3];
    cr_id_list pos[3];
    for (int i = 0; i < 3; i++) {
        cr_vec_init(&v[i], A, sizeof(int32_t));
        REQUIRE(cr_gate_tokenize_prompt(tok, "<s>", prompts[i], &v[i], &err) == CR_OK);
        pos[i] = (cr_id_list){ v[i].data, v[i].len };
        CHECK_EQ_INT(((int32_t *)v[i].data)[0], 1);    /* "<s>" text became the BOS id */
    }
    size_t L = llm.cfg.n_layers, H = llm.cfg.hidden;
    float *g = calloc(L * H, sizeof(float)), *gn = calloc(L * H, sizeof(float));
    REQUIRE(cr_gate_hidden(&llm, pos, 3, NULL, 0, g, &err) == CR_OK);
    /* layer 0: normalised mean of last-token embeddings */
    float *e = calloc(H, sizeof(float)), *row = calloc(H, sizeof(float));
    for (int i = 0; i < 3; i++) {
        int32_t id = pos[i].ids[pos[i].n - 1];
        cr_convert_to_f32(llm.embed.dtype, (const char *)llm.embed.data + (size_t)id * H * 2, row, H);
        for (size_t k = 0; k < H; k++) e[k] += row[k] / 3.0f;
    }
    CHECK(cosine(g, e, H) > 0.999999);
    for (size_t l = 0; l < L; l++) {
        double nn = 0;
        for (size_t k = 0; k < H; k++) nn += (double)g[l * H + k] * g[l * H + k];
        CHECK_NEAR(nn, 1.0, 1e-5);
    }
    /* layer 1: mean of hs[1] from single forward passes */
    float *hs = calloc((L + 1) * H, sizeof(float)), *m1 = calloc(H, sizeof(float));
    for (int i = 0; i < 3; i++) {
        cr_llm_run run = { .ids = pos[i].ids, .n_ids = pos[i].n, .hidden_last = hs };
        REQUIRE(cr_llm_forward(&llm, &run, &err) == CR_OK);
        for (size_t k = 0; k < H; k++) m1[k] += hs[H + k];
    }
    CHECK(cosine(g + H, m1, H) > 0.999999);
    /* a negative prompt changes the direction; identical pos/neg gives ~0 -> eps clamp, no NaN */
    REQUIRE(cr_gate_hidden(&llm, pos, 2, pos + 2, 1, gn, &err) == CR_OK);
    CHECK(cosine(gn + H, g + H, H) < 0.9999);
    REQUIRE(cr_gate_hidden(&llm, pos, 1, pos, 1, gn, &err) == CR_OK);
    for (size_t k = 0; k < L * H; k++) CHECK(gn[k] == 0.0f);
    CHECK(cr_gate_hidden(&llm, pos, 0, NULL, 0, gn, &err) == CR_ERR_ARG);
    free(g); free(gn); free(e); free(row); free(hs); free(m1);
    for (int i = 0; i < 3; i++) cr_vec_free(&v[i]);
    cr_tokenizer_free(tok);
    cr_llm_free(&llm);
    cr_model_close(&model);
}

TEST(random_transforms)
{
    enum { N = 20000 };
    float *u = malloc(N * sizeof(float)), *z = malloc(N * sizeof(float));
    uint64_t s = 88172645463325252ull;
    for (int i = 0; i < N; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; u[i] = (float)(s >> 40) * (1.0f / 16777216.0f); }
    cr_gate_random_from_uniform(u, N, z);
    double m = 0, v = 0;
    for (int i = 0; i < N; i++) m += z[i];
    m /= N;
    for (int i = 0; i < N; i++) v += (z[i] - m) * (z[i] - m);
    v /= N;
    CHECK_NEAR(m, 0.0, 0.03);
    CHECK_NEAR(v, 1.0, 0.05);
    cr_gate_uniform_from_uniform(u, N, 16, z);
    float lo = 1, hi = -1;
    for (int i = 0; i < N; i++) { if (z[i] < lo) lo = z[i]; if (z[i] > hi) hi = z[i]; }
    CHECK(lo >= -0.25f && hi < 0.25f && lo < -0.24f && hi > 0.24f);
    float zero = 0, out;
    cr_gate_uniform_from_uniform(&zero, 1, 4, &out);
    CHECK(out == -0.5f);
    free(u); free(z);
}

int main(void)
{
    RUN(cheap_embed_reference_vectors);
    RUN(hidden_gates_on_tiny_llama);
    RUN(random_transforms);
    return cr_test_summary();
}
