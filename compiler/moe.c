/* moe.c — a mergekit-moe config compiled into a program (moe.h): models
 * opened and checked, the writer's tensor map, the router gates computed at
 * compile time (infer/gates.h, vm/rng.h), the graph built and sent through
 * the same passes / emitter / layout as a merge, then the aux files
 * (config.json per writer, tokenizer copies, the config verbatim, a card).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aux_files.h"
#include "bind.h"
#include "hfdir.h"
#include "infile.h"
#include "forward.h"
#include "gates.h"
#include "tokenizer.h"
#include "limits.h"
#include "jsonw.h"
#include "model.h"
#include "moe.h"
#include "tokslow.h"
#include "moe_hfconfig.h"
#include "pool.h"
#include "resolve.h"
#include "rng.h"

/* ---- tensor map ------------------------------------------------------------ */

static bool push_tensor(cr_vec *v, const cr_moe_tensor *t) { return cr_vec_push(v, t) != NULL; }

/* layer index of "model.layers.N.…", or -1 */
static long layer_of(const char *name)
{
    static const char pre[] = "model.layers.";
    if (strncmp(name, pre, sizeof pre - 1)) return -1;
    const char *p = name + sizeof pre - 1;
    if (*p < '0' || *p > '9') return -1;
    long l = 0;
    while (*p >= '0' && *p <= '9') l = l * 10 + (*p++ - '0');
    return *p == '.' ? l : -1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

cr_status cr_moe_map_tensors(cr_moe_arch arch, cr_moe_layout layout, const cr_moe_dims *dm,
                             const char *const *base_names, uint32_t n_base, cr_arena *ar,
                             cr_moe_tensor **out, uint32_t *n_out, cr_error *err)
{
    *out = NULL;
    *n_out = 0;
    if (arch >= CR_MOE_ARCH_COUNT)
        return cr_fail(err, CR_ERR_ARG, "unknown MoE writer %d", (int)arch);
    if ((arch == CR_MOE_ARCH_QWEN2 || arch == CR_MOE_ARCH_DEEPSEEK) && layout == CR_MOE_LAYOUT_FUSED)
        return cr_fail(err, CR_ERR_ARG, "--moe-layout fused applies to Mixtral and Qwen3 MoE only (%s has "
                       "one layout)", arch == CR_MOE_ARCH_QWEN2 ? "Qwen2-MoE" : "DeepSeek MoE");
    bool ds = arch == CR_MOE_ARCH_DEEPSEEK;
    bool fused = layout == CR_MOE_LAYOUT_FUSED;
    const char **names = cr_arena_alloc(ar, sizeof *names * (n_base + 1));
    if (!names) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    memcpy(names, base_names, sizeof *names * n_base);
    qsort(names, n_base, sizeof *names, cmp_str);
    cr_vec v;
    cr_vec_init(&v, ar->alloc, sizeof(cr_moe_tensor));
    bool ok = true;
    uint64_t H = dm->hidden, I = dm->intermediate, E = dm->n_experts;
#define T(...) do { cr_moe_tensor t_ = { __VA_ARGS__ }; ok &= push_tensor(&v, &t_); } while (0)
#define NAME(...) cr_arena_printf(ar, __VA_ARGS__)
    /* base: embed, then each layer's non-MLP tensors, then the rest */
    for (uint32_t i = 0; i < n_base; i++)
        if (!strcmp(names[i], "model.embed_tokens.weight")) T(.name = names[i], .src = CR_MOE_SRC_BASE, .src_name = names[i]);
    for (uint32_t l = 0; l < dm->n_layers; l++) {
        bool has_bias[3] = { false, false, false };
        for (uint32_t i = 0; i < n_base; i++) {
            if (layer_of(names[i]) != (long)l || strstr(names[i], ".mlp.")) continue;
            T(.name = names[i], .src = CR_MOE_SRC_BASE, .src_name = names[i], .layer = l);
            for (int k = 0; k < 3; k++) {
                char b[128];
                snprintf(b, sizeof b, "model.layers.%u.self_attn.%c_proj.bias", l, "qkv"[k]);
                if (!strcmp(names[i], b)) has_bias[k] = true;
            }
        }
        /* Qwen2-MoE always has q/k/v biases: zeros for a llama/mistral base,
         * sized with hd = H / n_heads as mergekit does */
        if (arch == CR_MOE_ARCH_QWEN2) {
            uint64_t hd = dm->n_heads ? H / dm->n_heads : 0;
            for (int k = 0; k < 3; k++)
                if (!has_bias[k])
                    T(.name = NAME("model.layers.%u.self_attn.%c_proj.bias", l, "qkv"[k]), .src = CR_MOE_SRC_ZEROS,
                      .layer = l, .ndim = 1, .shape = { (k == 0 ? dm->n_heads : dm->n_kv_heads) * hd });
        }
    }
    for (uint32_t i = 0; i < n_base; i++)
        if (layer_of(names[i]) < 0 && strcmp(names[i], "model.embed_tokens.weight"))
            T(.name = names[i], .src = CR_MOE_SRC_BASE, .src_name = names[i]);
    /* experts */
    static const char *mlp[3] = { "gate_proj", "down_proj", "up_proj" };   /* w1, w2, w3 */
    for (uint32_t l = 0; l < dm->n_layers; l++) {
        if (fused) {
            T(.name = NAME("model.layers.%u.mlp.experts.gate_up_proj", l), .src = CR_MOE_SRC_FUSED_GATE_UP, .layer = l,
              .ndim = 3, .shape = { E, 2 * I, H });
            T(.name = NAME("model.layers.%u.mlp.experts.down_proj", l), .src = CR_MOE_SRC_FUSED_DOWN, .layer = l,
              .down = true, .ndim = 3, .shape = { E, H, I });
            continue;
        }
        for (uint32_t e = 0; e < dm->n_experts; e++)
            for (int k = 0; k < 3; k++) {
                int w = arch == CR_MOE_ARCH_MIXTRAL ? k : (k == 0 ? 0 : k == 1 ? 2 : 1);  /* qwen*: gate, up, down */
                const char *src = NAME("model.layers.%u.mlp.%s.weight", l, mlp[w]);
                const char *nm = arch == CR_MOE_ARCH_MIXTRAL
                                     ? NAME("model.layers.%u.block_sparse_moe.experts.%u.w%d.weight", l, e, w + 1)
                                     : NAME("model.layers.%u.mlp.experts.%u.%s.weight", l, e, mlp[w]);
                T(.name = nm, .src = CR_MOE_SRC_EXPERT, .expert = e, .layer = l, .src_name = src, .down = w == 1,
                  .ndim = 2, .shape = { w == 1 ? H : I, w == 1 ? I : H });
            }
        /* Qwen2-MoE: mlp.shared_expert.*; DeepSeek: mlp.shared_experts.* */
        if (dm->shared)
            for (int k = 0; k < 3; k++) {
                int w = k == 0 ? 0 : k == 1 ? 2 : 1;
                T(.name = NAME("model.layers.%u.mlp.shared_expert%s.%s.weight", l, ds ? "s" : "", mlp[w]),
                  .src = CR_MOE_SRC_SHARED,
                  .layer = l, .src_name = NAME("model.layers.%u.mlp.%s.weight", l, mlp[w]), .down = w == 1,
                  .ndim = 2, .shape = { w == 1 ? H : I, w == 1 ? I : H });
            }
    }
    /* routers */
    for (uint32_t l = 0; l < dm->n_layers; l++) {
        const char *nm = arch != CR_MOE_ARCH_MIXTRAL || fused
                             ? NAME("model.layers.%u.mlp.gate.weight", l)
                             : NAME("model.layers.%u.block_sparse_moe.gate.weight", l);
        T(.name = nm, .src = CR_MOE_SRC_ROUTER, .layer = l, .ndim = 2, .shape = { E, H });
        if (arch == CR_MOE_ARCH_QWEN2)
            T(.name = NAME("model.layers.%u.mlp.shared_expert_gate.weight", l), .src = CR_MOE_SRC_SHARED_GATE,
              .layer = l, .ndim = 2, .shape = { 1, H });
    }
#undef T
#undef NAME
    cr_moe_tensor *res = ok ? cr_arena_alloc(ar, sizeof *res * (v.len + 1)) : NULL;
    if (res) memcpy(res, v.data, sizeof *res * v.len);
    uint32_t n = (uint32_t)v.len;
    cr_vec_free(&v);
    if (!res) return cr_fail(err, CR_ERR_NOMEM, "out of memory mapping MoE tensors");
    for (uint32_t i = 0; i < n; i++)
        if (!res[i].name) return cr_fail(err, CR_ERR_NOMEM, "out of memory mapping MoE tensors");
    *out = res;
    *n_out = n;
    return CR_OK;
}

/* ---- gates ------------------------------------------------------------------ */

void cr_moe_random_gates(cr_moe_gate_mode mode, uint64_t seed, uint32_t L, uint32_t G, uint32_t H,
                         float *u, float *out)
{
    size_t n = (size_t)L * G * H;
    if (mode == CR_MOE_GATE_RANDOM) {
        cr_rng_uniform(seed, CR_MOE_GATE_STREAM, 0, u, 2 * ((n + 1) / 2));
        cr_gate_random_from_uniform(u, n, out);
    } else {
        cr_rng_uniform(seed, CR_MOE_GATE_STREAM, 0, u, n);
        cr_gate_uniform_from_uniform(u, n, H, out);
    }
}

typedef struct mb {
    const cr_allocator *al;
    const cr_moe_config *c;
    const cr_moe_options *o;
    cr_arena ar;
    struct mmodel { const char *ref, *dir, *revision; cr_model m; bool opened; } models[256];
    uint32_t n_models;
    uint32_t base, *expert, *shared;    /* model indices */
    cr_moe_dims dims;
    cr_moe_arch arch;
    cr_moe_layout layout;               /* resolved */
    cr_dtype out_dtype;                 /* NONE: keep each tensor's */
    uint32_t G;                         /* gated experts */
    float *gates;                       /* [L, G, H] */
} mb;

static cr_status open_model(mb *b, const cr_resolve_env *env, const char *ref, bool data, uint32_t *idx,
                            cr_error *err)
{
    for (uint32_t i = 0; i < b->n_models; i++)
        if (!strcmp(b->models[i].ref, ref)) { *idx = i; return CR_OK; }
    if (b->n_models == CR_ARRAY_LEN(b->models))
        return cr_fail(err, CR_ERR_LIMIT, "more than %zu distinct models", CR_ARRAY_LEN(b->models));
    /* mergekit-moe reads every model through local_path(), which asserts
     * that no LoRA is attached: `model+adapter` is not an MoE input */
    if (strchr(ref, '+'))
        return cr_fail(err, CR_ERR_UNSUPPORTED,
                       "%s: model '%s' is a LoRA reference (`model+adapter`); mergekit-moe refuses them too: "
                       "merge the adapter first (`crucible merge` with passthrough) and name that model",
                       b->c->path, ref);
    /* mergekit's `path@revision`: the revision picks the Hugging Face
     * cache's snapshot, as in merge recipes (resolve.h) */
    const char *path = ref, *revision = NULL, *at = strrchr(ref, '@');
    if (at && at != ref && at[1] && !strchr(at, '/')) {
        path = cr_arena_strndup(&b->ar, ref, (size_t)(at - ref));
        revision = at + 1;
        if (!path) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    }
    const char *tried = NULL;
    const char *snapshot = NULL;
    const char *dir = cr_resolve_model_at(env, &b->ar, path, revision, &snapshot, &tried);
    if (!dir) {
        const char *fetch = cr_resolve_fetch_command(&b->ar, path, revision);
        return cr_fail(err, CR_ERR_CONFIG, "%s: model '%s' not found (looked in %s)%s%s%s", b->c->path, ref,
                       tried ? tried : "?", fetch ? "; crucible never downloads: `" : "", fetch ? fetch : "",
                       fetch ? "` fetches it into the Hugging Face cache" : "");
    }
    struct mmodel *m = &b->models[b->n_models];
    m->ref = ref;
    m->dir = dir;
    m->revision = snapshot;
    cr_status st = cr_model_open(b->al, dir, data ? 0 : CR_ST_HEADER_ONLY, &m->m, err);
    if (st) return st;
    m->opened = true;
    *idx = b->n_models++;
    return CR_OK;
}

/* The prompts p[0..n) of one list (`what`: "positive_prompts") as token
 * ids. max_tokens (0: none) bounds each prompt, BOS included: see
 * prompt_cap. */
static cr_status tokenize_list(mb *b, const cr_tokenizer *tok, const char *bos, const char *const *p, uint32_t n,
                               size_t max_tokens, const char *what, cr_vec *vecs, cr_id_list *lists, cr_error *err)
{
    for (uint32_t i = 0; i < n; i++) {
        cr_vec_init(&vecs[i], b->al, sizeof(int32_t));
        cr_status st = cr_gate_tokenize_prompt(tok, bos, p[i], &vecs[i], err);
        if (st) return st;
        if (max_tokens && vecs[i].len > max_tokens)
            return cr_fail(err, CR_ERR_CONFIG, "%s[%u] is %zu tokens long; a hidden gate runs each prompt through "
                           "the base model, and prompts are limited to %zu tokens (%s)", what, i, vecs[i].len,
                           max_tokens, max_tokens == CR_LIMIT_MOE_PROMPT_TOKENS
                               ? "CR_LIMIT_MOE_PROMPT_TOKENS" : "the model's max_position_embeddings");
        lists[i] = (cr_id_list){ vecs[i].data, vecs[i].len };
    }
    return CR_OK;
}

/* The tokenizer file `name` of the base parsed, or NULL (absent or bad). */
static cJSON *read_tok_json(mb *b, const struct mmodel *base, const char *name, bool *exists)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", base->dir, name);
    char *text;
    size_t len;
    cr_error e = {0};
    cr_status st = cr_file_read(b->al, path, CR_LIMIT_JSON_BYTES, name, &text, &len, &e);
    /* a file that cannot be opened is absent; one that cannot be read is bad */
    *exists = st != CR_ERR_IO || (e.sys_errno != ENOENT && e.sys_errno != ENOTDIR && e.sys_errno != EACCES);
    if (st) return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    cr_free(b->al, text);
    return j;
}

/* A special token's text as transformers' tokenizer sees it: `key`
 * (bos_token, eos_token) from special_tokens_map.json when it names the key
 * (transformers lets that file override tokenizer_config.json), else as
 * tokenizer_config.json declares it — a string or an added-token object;
 * null or absent: none (Qwen2 has no bos_token in either, although its
 * config.json names a bos_token_id). With neither file: the token of
 * config.json's `key`_id. The BOS text is what mergekit glues in front of
 * each prompt. Returns an arena string or NULL. */
static const char *special_text(mb *b, const struct mmodel *base, const cr_tokenizer *tok, const char *key)
{
    bool has_map, has_cfg;
    cJSON *map = read_tok_json(b, base, "special_tokens_map.json", &has_map);
    cJSON *cfg = read_tok_json(b, base, "tokenizer_config.json", &has_cfg);
    const char *res = NULL;
    if (!has_map && !has_cfg) {
        long long id;
        char ck[32];
        snprintf(ck, sizeof ck, "%s_id", key);
        if (cr_model_config_int(&base->m, ck, &id)) res = cr_tokenizer_id_to_token(tok, (int32_t)id);
    } else {
        const cJSON *bt = map ? cJSON_GetObjectItemCaseSensitive(map, key) : NULL;
        if (!bt && cfg) bt = cJSON_GetObjectItemCaseSensitive(cfg, key);
        if (cJSON_IsObject(bt)) bt = cJSON_GetObjectItemCaseSensitive(bt, "content");
        if (cJSON_IsString(bt) && bt->valuestring[0]) res = cr_arena_strdup(&b->ar, bt->valuestring);
    }
    cJSON_Delete(map);
    cJSON_Delete(cfg);
    return res;
}

static cr_status prompt_gates(mb *b, cr_error *err)
{
    const cr_moe_config *c = b->c;
    const struct mmodel *base = &b->models[b->base];
    uint32_t L = b->dims.n_layers, H = b->dims.hidden, G = b->G;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", base->dir);
    cr_tokenizer *tok = NULL;
    cr_llm llm;
    memset(&llm, 0, sizeof llm);
    cr_pool *pool = NULL;
    float *tmp = NULL;
    cr_status st = cr_tokenizer_load(b->al, path, &tok, err);
    if (st) return st;
    if ((st = cr_llm_open(b->al, &base->m, &llm, err))) goto done;
    if ((st = cr_pool_init(b->al, cr_threads_resolve(b->o->threads), &pool, err))) goto done;
    llm.pool = pool;
    long long vocab;
    const char *bos = special_text(b, base, tok, "bos_token");
    /* mergekit: padding_side = left, pad_token_id = bos_token_id, or the eos
     * token when there is no bos */
    const char *pad = bos ? bos : special_text(b, base, tok, "eos_token");
    bool hidden = c->gate_mode == CR_MOE_GATE_HIDDEN || c->gate_mode == CR_MOE_GATE_HIDDEN_AVG;
    cr_gate_hidden_opts hopts = {
        .pool = c->gate_mode == CR_MOE_GATE_HIDDEN_AVG ? CR_GATE_POOL_AVG : CR_GATE_POOL_LAST,
        .precision = b->o->gate_f32 ? CR_GATE_PRECISION_F32 : CR_GATE_PRECISION_BF16,
        .pad_id = pad ? cr_tokenizer_token_id(tok, pad) : -1,
    };
    if (!cr_model_config_int(&base->m, "vocab_size", &vocab)) vocab = llm.cfg.vocab;
    /* The forward pass of a hidden gate costs time quadratic in a prompt's
     * length, and past the model's context its hidden states are positions
     * it never saw: prompts are capped at the context, and at a fixed limit
     * for models that declare none or a huge one (spec/moe.md).
     * cheap_embed only sums embeddings (linear): no cap. */
    size_t cap = 0;
    if (hidden) {
        cap = CR_LIMIT_MOE_PROMPT_TOKENS;
        if (llm.cfg.max_pos && llm.cfg.max_pos < cap) cap = llm.cfg.max_pos;
    }
    tmp = cr_malloc(b->al, sizeof *tmp * (size_t)L * H);
    if (!tmp) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto done; }
    for (uint32_t gi = 0; gi < G && !st; gi++) {
        const cr_moe_expert *e = gi < c->n_experts ? &c->experts[gi] : &c->shared[gi - c->n_experts];
        uint32_t np = e->n_positive, nn = e->n_negative;
        cr_vec *vecs = cr_calloc(b->al, np + nn + 1, sizeof *vecs);
        cr_id_list *lists = cr_calloc(b->al, np + nn + 1, sizeof *lists);
        if (!vecs || !lists) st = cr_fail(err, CR_ERR_NOMEM, "out of memory");
        if (!st) st = tokenize_list(b, tok, bos, e->positive, np, cap, "positive_prompts", vecs, lists, err);
        if (!st) st = tokenize_list(b, tok, bos, e->negative, nn, cap, "negative_prompts", vecs + np, lists + np, err);
        if (!st && hidden) {
            st = cr_gate_hidden(&llm, &hopts, lists, np, lists + np, nn, tmp, err);
        } else if (!st) {
            st = cr_gate_cheap_embed(b->al, &llm.embed, (uint32_t)vocab, lists, np, lists + np, nn, tmp, err);
            for (uint32_t l = 1; l < L && !st; l++) memcpy(tmp + (size_t)l * H, tmp, sizeof *tmp * H);
        }
        if (st) {
            char m[sizeof err->msg];
            snprintf(m, sizeof m, "%s", err->msg);
            cr_fail(err, st, "%s: gate of %s[%u] (%s): %s", c->path, gi < c->n_experts ? "experts" : "shared_experts",
                    gi < c->n_experts ? gi : gi - c->n_experts, e->source_model, m);
        }
        for (uint32_t l = 0; l < L && !st; l++)
            memcpy(b->gates + ((size_t)l * G + gi) * H, tmp + (size_t)l * H, sizeof *tmp * H);
        for (uint32_t i = 0; vecs && i < np + nn; i++) cr_vec_free(&vecs[i]);
        cr_free(b->al, vecs);
        cr_free(b->al, lists);
    }
done:
    cr_free(b->al, tmp);
    if (llm.layers || llm.inv_freq) cr_llm_free(&llm);
    cr_pool_free(pool);
    cr_tokenizer_free(tok);
    return st;
}

static cr_status compute_gates(mb *b, cr_error *err)
{
    const cr_moe_config *c = b->c;
    bool random = c->gate_mode == CR_MOE_GATE_RANDOM || c->gate_mode == CR_MOE_GATE_UNIFORM_RANDOM;
    bool shared_prompts = c->n_shared && c->shared[0].positive;
    b->G = c->n_experts + ((shared_prompts || random) ? c->n_shared : 0);
    size_t n = (size_t)b->dims.n_layers * b->G * b->dims.hidden;
    b->gates = cr_arena_alloc(&b->ar, sizeof(float) * (n + 1));
    if (!b->gates) return cr_fail(err, CR_ERR_NOMEM, "out of memory for the gates");
    if (random) {
        float *u = cr_malloc(b->al, sizeof(float) * (n + 2));
        if (!u) return cr_fail(err, CR_ERR_NOMEM, "out of memory for the gates");
        cr_moe_random_gates(c->gate_mode, b->o->seed, b->dims.n_layers, b->G, b->dims.hidden, u, b->gates);
        cr_free(b->al, u);
        return CR_OK;
    }
    return prompt_gates(b, err);
}

/* ---- graph ------------------------------------------------------------------- */

static void view_2d(uint32_t ndim, const uint64_t *shape, uint64_t *rows, uint64_t *cols)
{
    *rows = ndim >= 2 ? shape[0] : 1;
    *cols = 1;
    for (uint32_t i = ndim >= 2 ? 1 : 0; i < ndim; i++) *cols *= shape[i];
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ull; }
    return h;
}

static uint32_t gnode(cr_graph *g, cr_gop op, cr_dtype dt, uint32_t d, uint32_t a, uint32_t b2)
{
    cr_node n = { .op = (uint16_t)op, .dtype = (uint8_t)dt, .rdt = (uint8_t)dt, .kind = CR_VK_TENSOR,
                  .domain = d, .n_in = (uint8_t)cr_gop_arity(op), .in = { a, b2 } };
    return a == CR_NO_NODE || (n.n_in > 1 && b2 == CR_NO_NODE) ? CR_NO_NODE : cr_graph_add(g, &n);
}

static uint32_t wconst(cr_graph *g, double v)
{
    cr_node k = { .op = CR_GOP_CONST, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F64, .kind = CR_VK_SCALAR,
                  .domain = CR_NO_DOMAIN, .flags = CR_NODEF_WEAK, .value = v };
    return cr_graph_add(g, &k);
}

/* noise_scale: x + z·scale in x's dtype (mergekit: tensor +
 * randn_like(tensor) * noise_scale). z is an approximately standard normal
 * value, the Irwin–Hall sum of four counter-based RAND streams keyed by the
 * output name, centred and scaled to unit variance: (Σu − 2)·√3, within
 * ±2√3 (graph value ops have no cos, so no Box–Muller here). Rounded to x's
 * dtype like randn_like; crucible's numbers, not torch's. */
static uint32_t add_noise(cr_graph *g, uint32_t d, const char *name, cr_dtype dt, double scale, uint32_t x)
{
    uint64_t h = fnv1a(1469598103934665603ull, name);
    const cr_dtype F = CR_DTYPE_F32;
    uint32_t sum = CR_NO_NODE;
    for (int i = 0; i < 4; i++) {
        char key[32];
        snprintf(key, sizeof key, "/noise-%d", i);
        cr_node r = { .op = CR_GOP_RAND, .kind = CR_VK_TENSOR, .dtype = F, .rdt = F, .domain = d,
                      .attr = fnv1a(h, key) };
        uint32_t u = cr_graph_add(g, &r);
        sum = i == 0 ? u : gnode(g, CR_GOP_ADD, F, d, sum, u);
    }
    uint32_t z = gnode(g, CR_GOP_MUL, F, d, gnode(g, CR_GOP_SUB, F, d, sum, wconst(g, 2.0)), wconst(g, 1.7320508075688772));
    if (dt != F) z = gnode(g, CR_GOP_MOV, dt, d, z, 0);
    uint32_t zs = gnode(g, CR_GOP_MUL, dt, d, z, wconst(g, scale));
    return gnode(g, CR_GOP_ADD, dt, d, x, zs);
}

static cr_status add_tensor(mb *b, cr_graph *g, const cr_moe_tensor *t, cr_error *err)
{
    const cr_moe_config *c = b->c;
    cr_graph_input gi = { .tensor = t->src_name ? t->src_name : t->name };
    uint32_t ndim = t->ndim;
    uint64_t shape[CR_MAX_DIMS] = {0};
    memcpy(shape, t->shape, sizeof t->shape);
    const cr_moe_expert *ex = NULL;
    float *zeros = NULL;
    if (t->src == CR_MOE_SRC_BASE || t->src == CR_MOE_SRC_EXPERT || t->src == CR_MOE_SRC_SHARED) {
        uint32_t mi = t->src == CR_MOE_SRC_BASE ? b->base : t->src == CR_MOE_SRC_EXPERT ? b->expert[t->expert] : b->shared[0];
        ex = t->src == CR_MOE_SRC_EXPERT ? &c->experts[t->expert] : t->src == CR_MOE_SRC_SHARED ? &c->shared[0] : NULL;
        const struct mmodel *m = &b->models[mi];
        const cr_model_tensor *mt = cr_model_find(&m->m, t->src_name);
        if (!mt) return cr_fail(err, CR_ERR_CONFIG, "%s: model %s has no tensor %s", t->name, m->ref, t->src_name);
        if (ndim) {
            bool same = mt->info->ndim == ndim;
            for (uint32_t i = 0; same && i < ndim; i++) same = mt->info->shape[i] == shape[i];
            if (!same)
                return cr_fail(err, CR_ERR_CONFIG, "%s: %s of %s has shape [%llu, %llu], expected [%llu, %llu] "
                               "(intermediate_size/hidden_size of the base)", t->name, t->src_name, m->ref,
                               (unsigned long long)mt->info->shape[0],
                               (unsigned long long)(mt->info->ndim > 1 ? mt->info->shape[1] : 0),
                               (unsigned long long)shape[0], (unsigned long long)shape[1]);
        }
        if (!cr_dtype_is_float(mt->info->dtype))   /* as compiler/frontend.c refuses them for merges */
            return cr_fail(err, CR_ERR_CONFIG, "%s: tensor %s of %s is %s, which crucible cannot copy or convert "
                           "(it handles F32, F16, BF16, F64 and F8 tensors)", t->name, t->src_name, m->ref,
                           cr_dtype_name(mt->info->dtype));
        ndim = mt->info->ndim;
        memcpy(shape, mt->info->shape, sizeof shape);
        const cr_st_file *f = &m->m.shards[mt->shard];
        gi.model = mi;
        gi.path = f->path;
        gi.model_ref = gi.model_lookup = m->ref;
        gi.model_rev = m->revision;
        gi.model_dir = m->dir;
        gi.file_size = f->file_size;
        gi.offset = f->data_start + mt->info->begin;
        gi.nbytes = mt->info->end - mt->info->begin;
        gi.dtype = mt->info->dtype;
    } else if (t->src == CR_MOE_SRC_ROUTER || t->src == CR_MOE_SRC_SHARED_GATE) {
        uint64_t H = b->dims.hidden, E = c->n_experts;
        uint64_t first = t->src == CR_MOE_SRC_ROUTER ? 0 : E;
        uint64_t n = t->src == CR_MOE_SRC_ROUTER ? E : 1;
        if (first + n > b->G) return cr_fail(err, CR_ERR_CONFIG, "%s: the shared expert has no gate vector", t->name);
        gi.blob = b->gates + ((uint64_t)t->layer * b->G + first) * H;
        gi.nbytes = n * H * sizeof(float);
        gi.dtype = CR_DTYPE_F32;
        gi.tensor = t->name;
    } else if (t->src == CR_MOE_SRC_ZEROS) {
        uint64_t n = 1;
        for (uint32_t i = 0; i < ndim; i++) n *= shape[i];
        zeros = cr_calloc(b->al, (size_t)n + 1, sizeof(float));
        if (!zeros) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
        gi.blob = zeros;
        gi.nbytes = n * sizeof(float);
        gi.dtype = CR_DTYPE_F32;
        gi.tensor = t->name;
    } else {
        /* fused tensors are split into per-expert outputs by add_stored */
        return cr_fail(err, CR_ERR_ARG, "%s: a fused tensor reached add_tensor", t->name);
    }
    uint64_t rows, cols;
    view_2d(ndim, shape, &rows, &cols);
    gi.rows = gi.src_rows = rows;
    gi.cols = gi.src_cols = cols;
    uint32_t d = cr_graph_add_domain(g, rows, cols, t->name, 0);
    uint32_t ii = d == UINT32_MAX ? UINT32_MAX : cr_graph_add_input(g, &gi);
    cr_free(b->al, zeros);
    if (ii == UINT32_MAX) return cr_fail(err, CR_ERR_NOMEM, "out of memory building the graph");
    cr_node in = { .op = CR_GOP_INPUT, .dtype = (uint8_t)gi.dtype, .rdt = (uint8_t)gi.dtype, .kind = CR_VK_TENSOR,
                   .domain = d, .attr = ii };
    uint32_t r = cr_graph_add(g, &in);
    cr_dtype cur = gi.dtype;
    if (r != CR_NO_NODE && ex && ex->has_noise) r = add_noise(g, d, t->name, cur, ex->noise_scale, r);
    /* residual_scale multiplies down_proj in its stored dtype (mergekit:
     * tensor * float), applied to any expert that sets it (QUIRK, kept) */
    if (r != CR_NO_NODE && ex && ex->has_residual && t->down) {
        cr_node k = { .op = CR_GOP_CONST, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F64, .kind = CR_VK_SCALAR,
                      .domain = CR_NO_DOMAIN, .flags = CR_NODEF_WEAK, .value = ex->residual_scale };
        uint32_t kn = cr_graph_add(g, &k);
        cr_node mul = { .op = CR_GOP_MUL, .dtype = (uint8_t)cur, .rdt = (uint8_t)cur, .kind = CR_VK_TENSOR,
                        .domain = d, .n_in = 2, .in = { r, kn } };
        r = kn == CR_NO_NODE ? CR_NO_NODE : cr_graph_add(g, &mul);
    }
    cr_dtype out = b->out_dtype != CR_DTYPE_NONE ? b->out_dtype : cur;
    if (r != CR_NO_NODE && out != cur) {
        cr_node cast = { .op = CR_GOP_MOV, .dtype = (uint8_t)out, .rdt = (uint8_t)out, .kind = CR_VK_TENSOR,
                         .domain = d, .n_in = 1, .in = { r } };
        r = cr_graph_add(g, &cast);
    }
    if (r == CR_NO_NODE) return cr_graph_add_failed(g, t->name, err);
    if (out != CR_DTYPE_F32 && out != CR_DTYPE_BF16 && out != CR_DTYPE_F16 && out != CR_DTYPE_F64)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: dtype %s cannot be written yet", t->name, cr_dtype_name(out));
    cr_graph_output go = { .node = r, .domain = d, .name = t->name, .dtype = out, .ndim = ndim };
    memcpy(go.shape, shape, sizeof go.shape);
    if (cr_graph_add_output(g, &go) == UINT32_MAX) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    return CR_OK;
}

/* One stored tensor: one output, or for the fused layout one output per
 * expert matrix (gate_up_proj: expert e's gate_proj then its up_proj;
 * down_proj: expert e's down_proj), laid out back to back as one tensor. */
static cr_status add_stored(mb *b, cr_graph *g, const cr_moe_tensor *t, cr_layout_tensor *grp, cr_error *err)
{
    uint32_t first = g->n_outputs;
    cr_status st = CR_OK;
    if (t->src == CR_MOE_SRC_FUSED_GATE_UP || t->src == CR_MOE_SRC_FUSED_DOWN) {
        bool gu = t->src == CR_MOE_SRC_FUSED_GATE_UP;
        uint64_t H = b->dims.hidden, I = b->dims.intermediate;
        /* with no output dtype, torch.stack promotes experts of different
         * dtypes (bf16 + f16 or anything + f32: f32; + f64: f64), so the
         * parts are cast to that (one tensor has one dtype) */
        cr_dtype keep = b->out_dtype;
        if (keep == CR_DTYPE_NONE) {
            cr_dtype common = CR_DTYPE_NONE;
            bool f64 = false;
            for (uint32_t e = 0; e < b->dims.n_experts; e++)
                for (int k = 0; k < (gu ? 2 : 1); k++) {
                    char src[160];
                    snprintf(src, sizeof src, "model.layers.%u.mlp.%s.weight", t->layer,
                             gu ? (k == 0 ? "gate_proj" : "up_proj") : "down_proj");
                    const cr_model_tensor *mt = cr_model_find(&b->models[b->expert[e]].m, src);
                    if (!mt) continue;      /* add_tensor reports it */
                    f64 |= mt->info->dtype == CR_DTYPE_F64;
                    common = common == CR_DTYPE_NONE || common == mt->info->dtype ? mt->info->dtype : CR_DTYPE_F32;
                }
            b->out_dtype = f64 ? CR_DTYPE_F64 : common;
        }
        for (uint32_t e = 0; e < b->dims.n_experts && !st; e++)
            for (int k = 0; k < (gu ? 2 : 1) && !st; k++) {
                const char *mat = gu ? (k == 0 ? "gate_proj" : "up_proj") : "down_proj";
                char src[160], nm[256];
                snprintf(src, sizeof src, "model.layers.%u.mlp.%s.weight", t->layer, mat);
                snprintf(nm, sizeof nm, "%s[%u] (%s)", t->name, e, mat);
                cr_moe_tensor piece = { .name = nm, .src = CR_MOE_SRC_EXPERT, .expert = e, .layer = t->layer,
                                        .src_name = src, .down = !gu, .ndim = 2,
                                        .shape = { gu ? I : H, gu ? H : I } };
                st = add_tensor(b, g, &piece, err);
            }
        b->out_dtype = keep;
        *grp = (cr_layout_tensor){ .first = first, .count = g->n_outputs - first, .name = t->name, .ndim = 3 };
        memcpy(grp->shape, t->shape, sizeof t->shape);
        return st;
    }
    if ((st = add_tensor(b, g, t, err))) return st;
    const cr_graph_output *o = &g->outputs[first];
    *grp = (cr_layout_tensor){ .first = first, .count = 1, .ndim = o->ndim };
    memcpy(grp->shape, o->shape, sizeof grp->shape);
    return CR_OK;
}

/* ---- aux files ------------------------------------------------------------------ */

static cr_status add_config(mb *b, cr_program *p, cr_error *err)
{
    const struct mmodel *base = &b->models[b->base];
    if (!base->m.config) return cr_fail(err, CR_ERR_CONFIG, "base model %s has no config.json", base->ref);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", base->dir);
    /* the base's own text, for its number literals (an unreadable file: none) */
    char *text_in = NULL;
    size_t len_in;
    cr_error e = {0};
    cr_file_read(b->al, path, CR_LIMIT_JSON_BYTES, "config", &text_in, &len_in, &e);
    cr_moe_hfconfig_in in = { .base = base->m.config, .base_text = text_in, .arch = b->arch,
                              .mk_version = b->o->compile.mk_version, .n_experts = b->dims.n_experts,
                              .n_shared = b->c->n_shared, .name_or_path = b->c->base_model,
                              .experts_per_token = b->c->experts_per_token, .intermediate = b->dims.intermediate,
                              .out_dtype = b->out_dtype };
    char *text;
    size_t len;
    cr_status st = cr_moe_hfconfig(b->al, &in, &text, &len, err);
    cr_free(b->al, text_in);
    if (st) return st;
    st = cr_program_aux_write(p, "config.json", text, len, err);
    cr_free(b->al, text);
    return st;
}

static cr_status add_card(mb *b, cr_program *p, cr_error *err)
{
    const cr_moe_config *c = b->c;
    cr_sbuf sb;
    cr_sbuf_init(&sb, b->al);
    const char *title = b->o->out_path ? strrchr(b->o->out_path, '/') : NULL;
    title = title && title[1] ? title + 1 : b->o->out_path ? b->o->out_path : "moe";
    cr_sbuf_printf(&sb, "---\nbase_model:\n- %s\n", c->base_model);
    for (uint32_t i = 0; i < c->n_experts; i++) cr_sbuf_printf(&sb, "- %s\n", c->experts[i].source_model);
    for (uint32_t i = 0; i < c->n_shared; i++) cr_sbuf_printf(&sb, "- %s\n", c->shared[i].source_model);
    cr_sbuf_printf(&sb, "library_name: transformers\ntags:\n- mergekit\n- moe\n- crucible\n---\n# %s\n\n", title);
    cr_sbuf_printf(&sb, "This is a Mixture of Experts model built from dense models with crucible "
                        "(a reimplementation of [mergekit](https://github.com/arcee-ai/mergekit)'s `mergekit-moe`, "
                        "as mergekit %s writes it: `--mergekit-version %s`).\n\n",
                   cr_mk_name(b->o->compile.mk_version), cr_mk_name(b->o->compile.mk_version));
    cr_sbuf_printf(&sb, "## Architecture\n\n- writer: %s (%s)\n- base model (attention, embeddings, norms): %s\n"
                        "- routed experts: %u, %lld active per token (%s expert tensors)\n- gate mode: `%s`\n",
                   cr_moe_arch_name(b->arch),
                   b->arch == CR_MOE_ARCH_QWEN2 ? "Qwen2MoeForCausalLM"
                   : b->arch == CR_MOE_ARCH_QWEN3 ? "Qwen3MoeForCausalLM" : "MixtralForCausalLM",
                   c->base_model, c->n_experts, c->experts_per_token,
                   b->layout == CR_MOE_LAYOUT_FUSED ? "fused" : "per-expert", c->gate_mode_name);
    if (c->gate_mode == CR_MOE_GATE_RANDOM || c->gate_mode == CR_MOE_GATE_UNIFORM_RANDOM)
        cr_sbuf_printf(&sb, "- random seed: %llu (crucible's counter-based generator; not torch's)\n",
                       (unsigned long long)b->o->seed);
    cr_sbuf_printf(&sb, "\n## Experts\n\n| # | source model | positive prompts | negative prompts |\n|---|---|---|---|\n");
    for (uint32_t i = 0; i < c->n_experts + c->n_shared; i++) {
        const cr_moe_expert *e = i < c->n_experts ? &c->experts[i] : &c->shared[i - c->n_experts];
        if (i < c->n_experts) cr_sbuf_printf(&sb, "| %u | %s | %u | %u |\n", i, e->source_model, e->n_positive, e->n_negative);
        else cr_sbuf_printf(&sb, "| shared | %s | %u | %u |\n", e->source_model, e->n_positive, e->n_negative);
    }
    cr_sbuf_printf(&sb, "\nThe router rows are gate vectors computed from the prompts; the model is a starting "
                        "point and usually needs fine-tuning to route well.\n\n## Configuration\n\n```yaml\n%s%s```\n",
                   c->text ? c->text : "", c->text && c->text[0] && c->text[strlen(c->text) - 1] != '\n' ? "\n" : "");
    size_t len;
    char *text = cr_sbuf_take(&sb, &len);
    if (!text) return cr_fail(err, CR_ERR_NOMEM, "out of memory writing the model card");
    cr_status st = cr_program_aux_write(p, "README.md", text, len, err);
    cr_free(b->al, text);
    return st;
}

static cr_status add_aux(mb *b, cr_program *p, cr_error *err)
{
    cr_status st = add_config(b, p, err);
    const char *dir = b->models[b->base].dir;
    if (!st && b->o->copy_tokenizer) {
        const char *names[32];
        size_t n = cr_hf_tokenizer_files(dir, true, names, CR_ARRAY_LEN(names));
        /* tokenizer.json alone: what 0.1.5's save_pretrained writes, where
         * crucible can reproduce it (formats/hfdir.h); else none, as before */
        const char *resaved = NULL;
        if (!n && cr_mk_resolve(b->o->compile.mk_version) == CR_MK_0_1_5) {
            resaved = cr_hf_resaved_tokenizer_config(dir, cr_model_config_str(&b->models[b->base].m, "model_type"));
            if (resaved) names[n++] = "tokenizer.json";
        }
        /* a slow tokenizer (tokenizer.model, vocab.json + merges.txt, with or
         * without a tokenizer_config.json): mergekit-moe re-saves what
         * transformers converts it to, pad token set (formats/tokslow.h),
         * instead of the files; one crucible does not convert is copied, or
         * without a tokenizer_config.json gets none, as before */
        if (cr_mk_resolve(b->o->compile.mk_version) == CR_MK_0_1_5 && cr_tokslow_kind_of(dir) != CR_TOKSLOW_NONE) {
            char *tt, *tc;
            size_t tl, cl;
            cr_error e2 = { 0 };
            if (!cr_tokslow_resave(b->al, dir, b->models[b->base].ref, cr_model_config_str(&b->models[b->base].m, "model_type"),
                                   true, &tt, &tl, &tc, &cl, &e2)) {
                st = cr_program_aux_write(p, "tokenizer.json", tt, tl, err);
                if (!st) st = cr_program_aux_write(p, "tokenizer_config.json", tc, cl, err);
                cr_free(b->al, tt);
                cr_free(b->al, tc);
                n = 0;
            }
        }
        char path[4096];
        for (size_t i = 0; i < n && !st; i++) {
            /* mergekit-moe saves the tokenizer only: no generation_config.json */
            if (!strcmp(names[i], "generation_config.json")) continue;
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            const struct mmodel *m = &b->models[b->base];
            cr_input_file src = { .ref = m->ref, .revision = m->revision, .dir = dir, .path = path };
            st = cr_program_aux_copy(p, names[i], &src, err);
        }
        if (!st && resaved) st = cr_program_aux_write(p, "tokenizer_config.json", resaved, strlen(resaved), err);
    }
    if (!st && b->o->write_card && b->c->text) {
        st = cr_program_aux_write(p, "mergekit_moe_config.yml", b->c->text, strlen(b->c->text), err);
        if (!st) st = add_card(b, p, err);
    }
    return st;
}

/* ---- the whole build ---------------------------------------------------------------- */

static cr_status build(mb *b, cr_graph *g, cr_program *out, cr_diags *d, cr_error *err)
{
    const cr_moe_config *c = b->c;
    const cr_moe_options *o = b->o;
    if (!cr_moe_config_validate(c, o->allow_same_source, d))
        return cr_fail(err, CR_ERR_CONFIG, "%s: invalid MoE config", c->path);
    for (uint32_t i = 1; i < c->n_shared; i++)
        if ((c->shared[i].positive != NULL) != (c->shared[0].positive != NULL))
            return cr_fail(err, CR_ERR_CONFIG, "%s: shared experts must all have prompts or all have none", c->path);
    cr_resolve_env env;
    cr_resolve_env_init(&env, &b->ar, c->path, o->models_dir, true);
    bool data = c->gate_mode == CR_MOE_GATE_HIDDEN || c->gate_mode == CR_MOE_GATE_HIDDEN_AVG ||
                c->gate_mode == CR_MOE_GATE_CHEAP_EMBED;
    b->expert = cr_arena_alloc(&b->ar, sizeof(uint32_t) * (c->n_experts + 1));
    b->shared = cr_arena_alloc(&b->ar, sizeof(uint32_t) * (c->n_shared + 1));
    const char **types = cr_arena_alloc(&b->ar, sizeof(char *) * (1 + c->n_experts + c->n_shared));
    if (!b->expert || !b->shared || !types) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    cr_status st = open_model(b, &env, c->base_model, data, &b->base, err);
    for (uint32_t i = 0; i < c->n_experts && !st; i++)
        st = open_model(b, &env, c->experts[i].source_model, false, &b->expert[i], err);
    for (uint32_t i = 0; i < c->n_shared && !st; i++)
        st = open_model(b, &env, c->shared[i].source_model, false, &b->shared[i], err);
    if (st) return st;
    types[0] = cr_model_config_str(&b->models[b->base].m, "model_type");
    for (uint32_t i = 0; i < c->n_experts; i++) types[1 + i] = cr_model_config_str(&b->models[b->expert[i]].m, "model_type");
    for (uint32_t i = 0; i < c->n_shared; i++)
        types[1 + c->n_experts + i] = cr_model_config_str(&b->models[b->shared[i]].m, "model_type");
    if ((st = cr_moe_select_arch(c, types, &b->arch, err))) return st;

    const cr_model *bm = &b->models[b->base].m;
    long long L, H, I, nh, nkv;
    if (!cr_model_config_int(bm, "num_hidden_layers", &L) || !cr_model_config_int(bm, "hidden_size", &H) ||
        !cr_model_config_int(bm, "intermediate_size", &I) || !cr_model_config_int(bm, "num_attention_heads", &nh))
        return cr_fail(err, CR_ERR_CONFIG, "base model %s: config.json lacks num_hidden_layers, hidden_size, "
                       "intermediate_size or num_attention_heads", c->base_model);
    if (!cr_model_config_int(bm, "num_key_value_heads", &nkv)) nkv = nh;
    if (L < 1 || H < 1 || I < 1 || nh < 1 || nkv < 1 || L > 100000 || H > (1 << 20) || I > (1 << 22))
        return cr_fail(err, CR_ERR_CONFIG, "base model %s: implausible config sizes", c->base_model);
    b->dims = (cr_moe_dims){ (uint32_t)L, (uint32_t)H, (uint32_t)I, (uint32_t)nh, (uint32_t)nkv, c->n_experts,
                             c->n_shared > 0 };
    b->out_dtype = c->dtype;
    if (b->out_dtype == CR_DTYPE_NONE) {
        const char *dn = cr_model_config_str(bm, "torch_dtype");
        if (!dn) dn = cr_model_config_str(bm, "dtype");
        if (dn && !cr_dtype_parse_torch(dn, &b->out_dtype)) b->out_dtype = CR_DTYPE_NONE;
    }
    const char **names = cr_arena_alloc(&b->ar, sizeof(char *) * (bm->n_tensors + 1));
    if (!names) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < bm->n_tensors; i++) names[i] = bm->tensors[i].info->name;
    cr_moe_tensor *ts;
    uint32_t n_ts;
    b->layout = cr_moe_layout_resolve(o->layout, b->arch, o->compile.mk_version);
    if ((st = cr_moe_map_tensors(b->arch, b->layout, &b->dims, names, bm->n_tensors, &b->ar, &ts, &n_ts, err)))
        return st;
    if ((st = compute_gates(b, err))) return st;
    cr_layout_tensor *groups = cr_arena_alloc(&b->ar, sizeof *groups * (n_ts + 1));
    if (!groups) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < n_ts && !st; i++) st = add_stored(b, g, &ts[i], &groups[i], err);
    if (st) return st;
    if ((st = cr_compile_graph(g, &o->compile, c->path, groups, n_ts, out, err))) return st;
    if ((st = add_aux(b, out, err)) || (st = cr_program_verify(out, err))) {
        cr_program_free(out);
        return st;
    }
    return CR_OK;
}

cr_status cr_moe_compile(const cr_allocator *alloc, const cr_moe_config *c, const cr_moe_options *o,
                         cr_graph *g, cr_program *out, cr_diags *d, cr_error *err)
{
    memset(out, 0, sizeof *out);
    mb *b = cr_calloc(alloc, 1, sizeof *b);
    if (!b) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    b->al = alloc;
    b->c = c;
    b->o = o;
    cr_arena_init(&b->ar, alloc);
    cr_status st = build(b, g, out, d, err);
    for (uint32_t i = 0; i < b->n_models; i++)
        if (b->models[i].opened) cr_model_close(&b->models[i].m);
    cr_arena_free(&b->ar);
    cr_free(alloc, b);
    return st;
}
