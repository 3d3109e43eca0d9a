/* test_gates.c — mergekit-moe gate math (formats-and-moe.md §1.7, §1.10):
 * cheap_embed on the reference's hand-computed vectors, hidden gates on the
 * tiny transformers-built Llama (layer 0 = normalised mean of the prompts'
 * last-token embeddings; later layers = forward-pass states), prompt
 * tokenization with BOS glued as text, and the random transforms. */
#include "harness.h"
#include "gates.h"
#include "pool.h"
#include "model.h"

#include <stdlib.h>
#include <string.h>

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
    const cr_gate_hidden_opts f32 = { CR_GATE_POOL_LAST, CR_GATE_PRECISION_F32, -1 };
    REQUIRE(cr_gate_hidden(&llm, &f32, pos, 3, NULL, 0, g, &err) == CR_OK);
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
    REQUIRE(cr_gate_hidden(&llm, &f32, pos, 2, pos + 2, 1, gn, &err) == CR_OK);
    CHECK(cosine(gn + H, g + H, H) < 0.9999);
    REQUIRE(cr_gate_hidden(&llm, &f32, pos, 1, pos, 1, gn, &err) == CR_OK);
    for (size_t k = 0; k < L * H; k++) CHECK(gn[k] == 0.0f);
    CHECK(cr_gate_hidden(&llm, &f32, pos, 0, NULL, 0, gn, &err) == CR_ERR_ARG);
    free(g); free(gn); free(e); free(row); free(hs); free(m1);
    for (int i = 0; i < 3; i++) cr_vec_free(&v[i]);
    cr_tokenizer_free(tok);
    cr_llm_free(&llm);
    cr_model_close(&model);
}

/* mergekit-moe's gates on the forward fixtures (tests/compat/
 * gen_gate_fixtures.py ran mergekit.moe.router.get_gate_params): the prompt
 * lists run as left-padded bf16 batches. Prompts as in that script. */
static const char *fx_pos[2][2] = { { "The quick brown fox", "numbers 12345 and more" },
                                    { "x", "a much longer prompt that runs well past thirty-two tokens, so the batch "
                                           "is long" } };
static const char *fx_neg[2][1] = { { "café and emoji 😀" }, { NULL } };

/* max over layers of max|a-b| / max|b| (the compat bar), and how many
 * elements differ at all */
static double gate_rel(const float *a, const float *b, size_t L, size_t E, size_t e, size_t H, size_t *n_diff)
{
    double worst = 0;
    for (size_t l = 0; l < L; l++) {
        double md = 0, mb = 0;
        for (size_t i = 0; i < H; i++) {
            float x = a[l * H + i], y = b[(l * E + e) * H + i];
            if (fabs(x - y) > md) md = fabs(x - y);
            if (fabs(y) > mb) mb = fabs(y);
            *n_diff += x != y;
        }
        if (md / mb > worst) worst = md / mb;
    }
    return worst;
}

static void check_mergekit_gates(const char *name, const char *bos, const char *pad)
{
    const cr_allocator *A = cr_default_allocator();
    char dir[128], path[256];
    snprintf(dir, sizeof dir, "tests/fixtures/forward/%s", name);
    cr_error err = { 0 };
    cr_model model;
    REQUIRE(cr_model_open(A, dir, 0, &model, &err) == CR_OK);
    cr_llm llm;
    REQUIRE(cr_llm_open(A, &model, &llm, &err) == CR_OK);
    cr_pool *pool;
    REQUIRE(cr_pool_init(A, 2, &pool, &err) == CR_OK);
    llm.pool = pool;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    cr_tokenizer *tok;
    REQUIRE(cr_tokenizer_load(A, path, &tok, &err) == CR_OK);
    snprintf(path, sizeof path, "tests/fixtures/gates/%s.safetensors", name);
    cr_st_file ex;
    REQUIRE(cr_st_open(A, path, 0, &ex, &err) == CR_OK);
    size_t L = llm.cfg.n_layers, H = llm.cfg.hidden, E = 2;
    int32_t pad_id = cr_tokenizer_token_id(tok, pad);
    CHECK(pad_id >= 0);
    float *g = calloc(L * H, sizeof(float));
    for (size_t e = 0; e < E; e++) {
        cr_vec v[3];
        cr_id_list lists[3];
        size_t np = 2, nn = fx_neg[e][0] ? 1 : 0;
        for (size_t i = 0; i < np + nn; i++) {
            cr_vec_init(&v[i], A, sizeof(int32_t));
            const char *text = i < np ? fx_pos[e][i] : fx_neg[e][i - np];
            REQUIRE(cr_gate_tokenize_prompt(tok, bos, text, &v[i], &err) == CR_OK);
            lists[i] = (cr_id_list){ v[i].data, v[i].len };
        }
        /* the padded batches mergekit built: left padding with pad_id, our ids after it */
        for (int k = 0; k < 2; k++) {
            char tn[32];
            snprintf(tn, sizeof tn, "ids_e%zu_%s", e, k ? "neg" : "pos");
            const cr_st_tensor *t = cr_st_find(&ex, tn);
            size_t first = k ? np : 0, n = k ? nn : np;
            CHECK((t != NULL) == (n > 0));
            if (!t) continue;
            size_t B = t->shape[0], T = t->shape[1];
            CHECK_EQ_INT(B, n);
            const int32_t *want = cr_st_data(&ex, t);
            for (size_t b = 0; b < B && b < n; b++) {
                const cr_id_list *p = &lists[first + b];
                CHECK_MSG(p->n <= T, "%s %s[%zu]: %zu tokens, batch %zu", name, tn, b, p->n, T);
                for (size_t j = 0; j < T && p->n <= T; j++) {
                    int32_t id = j < T - p->n ? pad_id : p->ids[j - (T - p->n)];
                    CHECK_MSG(want[b * T + j] == id, "%s %s[%zu][%zu]: %d, mergekit %d", name, tn, b, j, id,
                              want[b * T + j]);
                }
            }
        }
        for (int avg = 0; avg < 2; avg++) {
            const cr_st_tensor *t = cr_st_find(&ex, avg ? "hidden_avg" : "hidden");
            REQUIRE(t && t->numel == L * E * H);
            const float *want = cr_st_data(&ex, t);
            cr_gate_hidden_opts o = { avg ? CR_GATE_POOL_AVG : CR_GATE_POOL_LAST, CR_GATE_PRECISION_BF16, pad_id };
            REQUIRE(cr_gate_hidden(&llm, &o, lists, np, lists + np, nn, g, &err) == CR_OK);
            size_t nd = 0;
            double rel = gate_rel(g, want, L, E, e, H, &nd);
            CHECK_MSG(rel <= 1e-3, "%s expert %zu %s: max rel diff %g (%zu of %zu elements differ)", name, e,
                      avg ? "hidden_avg" : "hidden", rel, nd, L * H);
            /* bf16 rounding reproduced: nearly every element is mergekit's exact value */
            CHECK_MSG(nd * 50 <= L * H, "%s expert %zu: %zu of %zu elements differ", name, e, nd, L * H);
            /* the f32 option runs each prompt unpadded: hidden_avg then
             * leaves the pads out, which moves it far from mergekit's */
            o.precision = CR_GATE_PRECISION_F32;
            REQUIRE(cr_gate_hidden(&llm, &o, lists, np, lists + np, nn, g, &err) == CR_OK);
            nd = 0;
            rel = gate_rel(g, want, L, E, e, H, &nd);
            if (avg) CHECK_MSG(rel > 1e-2, "%s expert %zu f32 hidden_avg: rel %g", name, e, rel);
            else CHECK_MSG(rel < 5e-2 && nd > 0, "%s expert %zu f32 hidden: rel %g", name, e, rel);
        }
        /* prompts of different lengths and no pad token: refused like transformers */
        cr_gate_hidden_opts nopad = { CR_GATE_POOL_LAST, CR_GATE_PRECISION_BF16, -1 };
        if (e == 1) CHECK(cr_gate_hidden(&llm, &nopad, lists, np, NULL, 0, g, &err) == CR_ERR_ARG);
        for (size_t i = 0; i < np + nn; i++) cr_vec_free(&v[i]);
    }
    free(g);
    cr_st_close(&ex);
    cr_tokenizer_free(tok);
    cr_pool_free(pool);
    cr_llm_free(&llm);
    cr_model_close(&model);
}

TEST(mergekit_gates_llama) { check_mergekit_gates("llama", "<s>", "<s>"); }
TEST(mergekit_gates_qwen2) { check_mergekit_gates("qwen2", NULL, "<|endoftext|>"); }

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
    RUN(mergekit_gates_llama);
    RUN(mergekit_gates_qwen2);
    RUN(random_transforms);
    return cr_test_summary();
}
