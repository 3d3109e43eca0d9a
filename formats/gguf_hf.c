/* gguf_hf.c — llama.cpp's convert_hf_to_gguf.py in C for the models
 * crucible writes (spec/gguf.md; the converter pinned there), reading a
 * source (gguf_hf.h: a directory, or a program's output): the metadata in
 * the converter's key order (general.*, hyperparameters, tokenizer) and
 * the tensor plan (names, order, shapes, types, Q/K permutation, stacked
 * experts), which together open the sink (gguf_sink.c fills it). Anything
 * the converter would write differently from what is ported here is
 * refused with a message, never approximated.
 */
#include "gguf_hf.h"
#include "gguf_meta.h"
#include "gguf_sink_impl.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"
#include "infile.h"
#include "limits.h"

typedef enum { ARCH_LLAMA, ARCH_QWEN2, ARCH_QWEN3 } hf_arch;

typedef struct hf_tensor {
    const cr_gguf_src_tensor *src;
    uint32_t index;              /* into the source's tensors */
    const char *shard_name;      /* basename of the shard file */
    char name[64];
    uint32_t permute_heads;      /* llama q/k: the permutation's head count (0: none) */
    int moe_w;                   /* Mixtral expert tensor: 0/1/2 for w1/w2/w3; -1 otherwise */
    uint32_t layer, expert;
} hf_tensor;


static bool is_file(const cr_gguf_src *src, const char *name)
{
    return src->exists(src->ud, name);
}

/* a JSON object file of the model directory, or *out = NULL when absent */
static cr_status read_json(const cr_allocator *a, const cr_gguf_src *src, const char *name, cJSON **out, cr_error *err)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    cr_status st = src->read(src->ud, name, &text, &len, err);
    if (st || !text) return st;
    *out = cJSON_ParseWithLength(text, len);
    cr_free(a, text);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return cr_fail(err, CR_ERR_FORMAT, "%s/%s: not a JSON object", src->dir, name);
    }
    return CR_OK;
}

/* a top-level integer of config.json (cr_model_config_int's rule for
 * undotted keys) */
static bool config_int(const cr_gguf_src *src, const char *key, long long *out)
{
    const cJSON *v = src->config ? cJSON_GetObjectItemCaseSensitive(src->config, key) : NULL;
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d <= 9007199254740992.0 && d >= -9007199254740992.0) || d != (double)(long long)d) return false;
    *out = (long long)d;
    return true;
}

static bool ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

static const char *basename_of(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* an integer JSON value (Python int) into *v */
static bool json_int(const cJSON *j, long long *v)
{
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d <= 9007199254740992.0 && d >= -9007199254740992.0) || d != (double)(long long)d) return false;
    /* cJSON cannot tell 2048.0 (a Python float, which the converter's u32
     * packing would reject) from 2048: both are accepted */
    *v = (long long)d;
    return true;
}

static cr_status arch_of(const cr_gguf_src *m, hf_arch *arch, const char **name, cr_error *err)
{
    const cJSON *archs = m->config ? cJSON_GetObjectItemCaseSensitive(m->config, "architectures") : NULL;
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    const char *s = cJSON_IsString(a0) ? a0->valuestring : NULL;
    if (s && (!strcmp(s, "LlamaForCausalLM") || !strcmp(s, "MistralForCausalLM") || !strcmp(s, "MixtralForCausalLM"))) {
        *arch = ARCH_LLAMA;
        *name = "llama";
        return CR_OK;
    }
    if (s && !strcmp(s, "Qwen2ForCausalLM")) {
        *arch = ARCH_QWEN2;
        *name = "qwen2";
        return CR_OK;
    }
    if (s && !strcmp(s, "Qwen3ForCausalLM")) {   /* Qwen3Model: Qwen2Model's path plus q/k norms */
        *arch = ARCH_QWEN3;
        *name = "qwen3";
        return CR_OK;
    }
    return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: GGUF output supports LlamaForCausalLM, MistralForCausalLM, "
                   "MixtralForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM so far; config.json architectures[0] is %s",
                   m->dir, s ? s : "missing");
}

cr_status cr_gguf_hf_check_vocab(const cr_allocator *alloc, const cr_gguf_src *m, cr_error *err)
{
    hf_arch arch;
    const char *an;
    cr_status st = arch_of(m, &arch, &an, err);
    if (st) return st;
    if (is_file(m, "tokenizer.model"))
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: the converter would write the SentencePiece vocabulary of "
                       "tokenizer.model; GGUF output of SentencePiece tokenizers is not written yet", m->dir);
    cJSON *tj = NULL;
    st = read_json(alloc, m, "tokenizer.json", &tj, err);
    if (st) return st;
    if (!tj) return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: GGUF output needs tokenizer.json", m->dir);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(tj, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    bool bpe = cJSON_IsString(type) && !strcmp(type->valuestring, "BPE");
    const cJSON *bf = cJSON_GetObjectItemCaseSensitive(model, "byte_fallback");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tj, "decoder"), "type");
    bool llama_hf = arch == ARCH_LLAMA && bpe && cJSON_IsTrue(bf) && cJSON_IsString(dec) &&
                    !strcmp(dec->valuestring, "Sequence");
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(model, "ignore_merges");
    if (llama_hf && cJSON_IsTrue(im) && !cJSON_IsTrue(bf)) llama_hf = false;  /* Llama 3: gpt2 path */
    cJSON_Delete(tj);
    if (!bpe) return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: tokenizer.json's model is not BPE", m->dir);
    if (llama_hf)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: the converter would write this byte-fallback BPE tokenizer "
                       "as a \"llama\" (LlamaHf) vocabulary, which is not written yet", m->dir);
    return CR_OK;
}

/* ---- the tensor plan --------------------------------------------------------- */

static int cmp_plan(const void *x, const void *y)
{
    const hf_tensor *a = x, *b = y;
    int c = strcmp(a->shard_name, b->shard_name);
    return c ? c : strcmp(a->src->name, b->src->name);
}

/* HF name -> GGUF name (without the suffix); false if the converter has no
 * mapping (it raises "Can not map tensor") */
static bool map_name(const char *hf, hf_arch arch, char out[64], bool *is_q, bool *is_k, hf_tensor *t)
{
    *is_q = *is_k = false;
    t->moe_w = -1;
    if (arch == ARCH_LLAMA) {
        /* Mixtral: model.layers.N.block_sparse_moe.experts.E.wK.weight, stacked later */
        unsigned layer, e, w;
        int used = 0;
        if (sscanf(hf, "model.layers.%u.block_sparse_moe.experts.%u.w%u.weight%n", &layer, &e, &w, &used) == 3 &&
            used && !hf[used] && w >= 1 && w <= 3) {
            t->moe_w = (int)w - 1;
            t->layer = layer;
            t->expert = e;
            return true;
        }
    }
    const char *suffix = strrchr(hf, '.');
    if (!suffix || (strcmp(suffix, ".weight") && strcmp(suffix, ".bias"))) return false;
    size_t stem = (size_t)(suffix - hf);
    char s[256];
    if (stem >= sizeof s) return false;
    memcpy(s, hf, stem);
    s[stem] = 0;
    const char *g = NULL;
    if (!strcmp(s, "model.embed_tokens")) g = "token_embd";
    else if (!strcmp(s, "model.norm")) g = "output_norm";
    else if (!strcmp(s, "lm_head")) g = "output";
    if (g) {
        snprintf(out, 64, "%s%s", g, suffix);
        return true;
    }
    unsigned layer;
    int used = 0;
    if (sscanf(s, "model.layers.%u.%n", &layer, &used) != 1 || !used || !isdigit((unsigned char)s[13])) return false;
    /* the layer number must be plain decimal as written */
    const char *rest = s + used;
    static const struct { const char *hf, *gg; } map[] = {
        {"input_layernorm", "attn_norm"}, {"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"},
        {"self_attn.v_proj", "attn_v"}, {"self_attn.o_proj", "attn_output"},
        {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
        {"mlp.down_proj", "ffn_down"}, {"block_sparse_moe.gate", "ffn_gate_inp"},
    };
    for (size_t i = 0; i < CR_ARRAY_LEN(map); i++) {
        if (strcmp(rest, map[i].hf)) continue;
        snprintf(out, 64, "blk.%u.%s%s", layer, map[i].gg, suffix);
        *is_q = arch == ARCH_LLAMA && i == 1;
        *is_k = arch == ARCH_LLAMA && i == 2;
        return true;
    }
    if (arch == ARCH_QWEN3 && (!strcmp(rest, "self_attn.q_norm") || !strcmp(rest, "self_attn.k_norm"))) {
        snprintf(out, 64, "blk.%u.attn_%c_norm%s", layer, rest[10], suffix);
        return true;
    }
    return false;
}

/* spec/gguf.md §6.4; Q4_0 (§7.5): llama-quantize's choice for its Q4_0
 * with --output-tensor-type q8_0 (the output matrix, or the embedding when
 * it is tied, and attn_k/attn_v of 8-expert models in Q8_0) */
static cr_ggml_type out_type(const char *name, uint32_t n_dims, uint64_t ne0, cr_ggml_type ftype, bool tied,
                             long long n_expert)
{
    size_t n = strlen(name);
    if (n_dims <= 1 || (n >= 12 && !strcmp(name + n - 12, "_norm.weight")) || n < 7 || strcmp(name + n - 7, ".weight") ||
        ends_with(name, ".ffn_gate_inp.weight"))
        return CR_GGML_F32;
    if (ftype == CR_GGML_Q4_0 &&
        (!strcmp(name, "output.weight") || (tied && !strcmp(name, "token_embd.weight")) ||
         (n_expert == 8 && (ends_with(name, ".attn_k.weight") || ends_with(name, ".attn_v.weight")))))
        ftype = CR_GGML_Q8_0;
    if ((ftype == CR_GGML_Q8_0 || ftype == CR_GGML_Q4_0) && ne0 % 32) return CR_GGML_F16;    /* QuantError -> F16 */
    return ftype;
}

/* ---- metadata ------------------------------------------------------------------ */

typedef struct meta_ctx {
    const cr_allocator *a;
    const cr_gguf_src *m;
    cr_gguf_kv *kv;
    const char *arch;
    cr_error *err;
} meta_ctx;

static const cJSON *cfg(const meta_ctx *c, const char *key)
{
    const cJSON *v = c->m->config ? cJSON_GetObjectItemCaseSensitive(c->m->config, key) : NULL;
    return cJSON_IsNull(v) ? NULL : v;
}

static const cJSON *cfg_first(const meta_ctx *c, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const cJSON *v = cfg(c, keys[i]);
        if (v) return v;
    }
    return NULL;
}

static cr_status put_u32_json(meta_ctx *c, const char *key, const cJSON *v, const char *what)
{
    long long x;
    if (!json_int(v, &x) || x < 0 || x > 0xffffffffLL)
        return cr_fail(c->err, CR_ERR_FORMAT, "%s: config.json %s is not an integer in 0..2^32-1", c->m->dir, what);
    char k[128];
    snprintf(k, sizeof k, key, c->arch);
    cr_gguf_kv_u32(c->kv, k, (uint32_t)x);
    return CR_OK;
}

static cr_status put_f32_json(meta_ctx *c, const char *key, const cJSON *v, const char *what)
{
    if (!cJSON_IsNumber(v)) return cr_fail(c->err, CR_ERR_FORMAT, "%s: %s is not a number", c->m->dir, what);
    char k[128];
    snprintf(k, sizeof k, key, c->arch);
    cr_gguf_kv_f32(c->kv, k, (float)v->valuedouble);    /* double, then RNE to binary32 as struct.pack('f') */
    return CR_OK;
}

static cr_status put_general(meta_ctx *c, const cr_gguf_param_count *pc)
{
    cr_status st;
    cr_gguf_kv_str(c->kv, "general.type", "model");
    /* sampling keys from generation_config.json, in the writer's order */
    cJSON *gen = NULL;
    if ((st = read_json(c->a, c->m, "generation_config.json", &gen, c->err))) return st;
    static const struct { const char *json, *alt, *key; char type; } samp[] = {
        {"sequence", NULL, "general.sampling.sequence", 's'}, {"top_k", NULL, "general.sampling.top_k", 'i'},
        {"top_p", NULL, "general.sampling.top_p", 'f'}, {"min_p", NULL, "general.sampling.min_p", 'f'},
        {"xtc_probability", NULL, "general.sampling.xtc_probability", 'f'},
        {"xtc_threshold", NULL, "general.sampling.xtc_threshold", 'f'},
        {"temperature", NULL, "general.sampling.temp", 'f'},
        {"penalty_last_n", NULL, "general.sampling.penalty_last_n", 'i'},
        {"penalty_repeat", "repetition_penalty", "general.sampling.penalty_repeat", 'f'},
        {"mirostat", NULL, "general.sampling.mirostat", 'i'}, {"mirostat_tau", NULL, "general.sampling.mirostat_tau", 'f'},
        {"mirostat_eta", NULL, "general.sampling.mirostat_eta", 'f'},
    };
    for (size_t i = 0; gen && i < CR_ARRAY_LEN(samp) && st == CR_OK; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(gen, samp[i].json);
        if (!v && samp[i].alt) v = cJSON_GetObjectItemCaseSensitive(gen, samp[i].alt);
        if (!v || cJSON_IsNull(v)) continue;
        long long x;
        if (samp[i].type == 's' && cJSON_IsString(v)) { if (*v->valuestring) cr_gguf_kv_str(c->kv, samp[i].key, v->valuestring); }
        else if (samp[i].type == 'i' && json_int(v, &x) && x >= INT32_MIN && x <= INT32_MAX) cr_gguf_kv_i32(c->kv, samp[i].key, (int32_t)x);
        else if (samp[i].type == 'f' && cJSON_IsNumber(v)) cr_gguf_kv_f32(c->kv, samp[i].key, (float)v->valuedouble);
        else st = cr_fail(c->err, CR_ERR_FORMAT, "%s: generation_config.json %s has a type the converter does not write",
                          c->m->dir, samp[i].json);
    }
    cJSON_Delete(gen);
    if (st) return st;
    /* general.name and friends: README front matter, config _name_or_path,
     * the directory's name (gguf_meta.h) */
    const cJSON *nop = cfg(c, "_name_or_path");
    cr_gguf_general g;
    char *card = NULL;
    size_t card_len = 0;
    if ((st = c->m->read(c->m->ud, "README.md", &card, &card_len, c->err))) return st;
    st = cr_gguf_general_load(c->a, c->m->dir, card, card_len, cJSON_IsString(nop) && *nop->valuestring ? nop->valuestring : NULL,
                              pc, &g, c->err);
    cr_free(c->a, card);
    if (st == CR_OK) cr_gguf_general_put(&g, c->kv);
    cr_gguf_general_free(&g);
    return st;
}

static cr_status put_hparams(meta_ctx *c, bool llama, cr_ggml_type ftype)
{
    cr_status st = CR_OK;
    static const char *const k_layers[] = {"n_layers", "num_hidden_layers", "n_layer", "num_layers"};
    static const char *const k_ctx[] = {"max_position_embeddings", "n_ctx", "n_positions", "max_length",
                                        "max_sequence_length", "model_max_length"};
    static const char *const k_embd[] = {"hidden_size", "n_embd", "dim"};
    static const char *const k_ff[] = {"prefix_dense_intermediate_size", "dense_intermediate_size",
                                       "intermediate_size", "n_inner", "hidden_dim"};
    static const char *const k_head[] = {"num_attention_heads", "n_head", "n_heads"};
    static const char *const k_kv[] = {"num_key_value_heads", "n_kv_heads"};
    const cJSON *v = cfg_first(c, k_layers, CR_ARRAY_LEN(k_layers));
    if (!v) return cr_fail(c->err, CR_ERR_FORMAT, "%s: config.json has no num_hidden_layers", c->m->dir);
    if ((st = put_u32_json(c, "%s.block_count", v, "num_hidden_layers"))) return st;
    if ((v = cfg_first(c, k_ctx, CR_ARRAY_LEN(k_ctx))) && (st = put_u32_json(c, "%s.context_length", v, "max_position_embeddings"))) return st;
    if ((v = cfg_first(c, k_embd, CR_ARRAY_LEN(k_embd))) && (st = put_u32_json(c, "%s.embedding_length", v, "hidden_size"))) return st;
    if ((v = cfg_first(c, k_ff, CR_ARRAY_LEN(k_ff))) && (st = put_u32_json(c, "%s.feed_forward_length", v, "intermediate_size"))) return st;
    if ((v = cfg_first(c, k_head, CR_ARRAY_LEN(k_head))) && (st = put_u32_json(c, "%s.attention.head_count", v, "num_attention_heads"))) return st;
    if ((v = cfg_first(c, k_kv, CR_ARRAY_LEN(k_kv))) && (st = put_u32_json(c, "%s.attention.head_count_kv", v, "num_key_value_heads"))) return st;
    const cJSON *ic = cfg(c, "is_causal");
    if (cJSON_IsFalse(ic))
        return cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: is_causal false is not written yet", c->m->dir);
    /* rope: rope_parameters, else rope_scaling, else {} */
    const cJSON *rp = cfg(c, "rope_parameters");
    if (!rp) rp = cfg(c, "rope_scaling");
    if (rp && !cJSON_IsObject(rp)) return cr_fail(c->err, CR_ERR_FORMAT, "%s: rope_scaling is not an object", c->m->dir);
    const cJSON *rtype = rp ? cJSON_GetObjectItemCaseSensitive(rp, "rope_type") : NULL;
    if (!rtype && rp) rtype = cJSON_GetObjectItemCaseSensitive(rp, "type");
    const char *rt = cJSON_IsString(rtype) ? rtype->valuestring : "default";
    const cJSON *factor = rp ? cJSON_GetObjectItemCaseSensitive(rp, "factor") : NULL;
    if (rp && cJSON_GetObjectItemCaseSensitive(rp, "full_attention"))
        return cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: per-layer-type rope parameters are not written yet", c->m->dir);
    if (!strcmp(rt, "linear") && cJSON_IsNumber(factor)) {
        char k[128];
        snprintf(k, sizeof k, "%s.rope.scaling.type", c->arch);
        cr_gguf_kv_str(c->kv, k, "linear");
        if ((st = put_f32_json(c, "%s.rope.scaling.factor", factor, "rope factor"))) return st;
    } else if (!strcmp(rt, "yarn") && cJSON_IsNumber(factor)) {
        char k[128];
        snprintf(k, sizeof k, "%s.rope.scaling.type", c->arch);
        cr_gguf_kv_str(c->kv, k, "yarn");
        if ((st = put_f32_json(c, "%s.rope.scaling.factor", factor, "rope factor"))) return st;
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(rp, "original_max_position_embeddings");
        if (!o) return cr_fail(c->err, CR_ERR_FORMAT, "%s: yarn rope scaling without original_max_position_embeddings", c->m->dir);
        if ((st = put_u32_json(c, "%s.rope.scaling.original_context_length", o, "original_max_position_embeddings"))) return st;
        static const struct { const char *j, *alt, *key; } y[] = {
            {"extrapolation_factor", NULL, "%s.rope.scaling.yarn_ext_factor"},
            {"attention_factor", "attn_factor", "%s.rope.scaling.yarn_attn_factor"},
            {"beta_fast", NULL, "%s.rope.scaling.yarn_beta_fast"}, {"beta_slow", NULL, "%s.rope.scaling.yarn_beta_slow"},
        };
        for (size_t i = 0; i < CR_ARRAY_LEN(y); i++) {
            const cJSON *x = cJSON_GetObjectItemCaseSensitive(rp, y[i].j);
            if ((!x || cJSON_IsNull(x)) && y[i].alt) x = cJSON_GetObjectItemCaseSensitive(rp, y[i].alt);
            if (x && !cJSON_IsNull(x) && (st = put_f32_json(c, y[i].key, x, y[i].j))) return st;
        }
    } else if (strcmp(rt, "default") && !(!strcmp(rt, "linear") || !strcmp(rt, "yarn"))) {
        return cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: rope scaling type '%s' is not written to GGUF yet", c->m->dir, rt);
    }
    if (rp && cJSON_GetObjectItemCaseSensitive(rp, "mrope_section"))
        return cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: mrope_section is not written yet", c->m->dir);
    const cJSON *theta = rp ? cJSON_GetObjectItemCaseSensitive(rp, "rope_theta") : NULL;
    if (!theta || cJSON_IsNull(theta)) theta = cfg(c, "rope_theta");
    if (theta && (st = put_f32_json(c, "%s.rope.freq_base", theta, "rope_theta"))) return st;
    static const char *const k_rms[] = {"rms_norm_eps", "norm_eps"};
    if ((v = cfg_first(c, k_rms, CR_ARRAY_LEN(k_rms))) && (st = put_f32_json(c, "%s.attention.layer_norm_rms_epsilon", v, "rms_norm_eps"))) return st;
    static const char *const k_lne[] = {"layer_norm_eps", "layer_norm_epsilon", "norm_epsilon", "n_group", "topk_group",
                                        "score_function", "scoring_func", "score_func", "moe_router_activation",
                                        "moe_router_activation_func", "expert_selection_fn"};
    if ((v = cfg_first(c, k_lne, CR_ARRAY_LEN(k_lne))))
        return cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: config.json %s is not written to GGUF yet", c->m->dir, v->string);
    static const char *const k_ne[] = {"num_local_experts", "num_experts", "n_routed_experts"};
    static const char *const k_nu[] = {"num_experts_per_tok", "num_experts_per_token", "top_k_experts"};
    if ((v = cfg_first(c, k_ne, CR_ARRAY_LEN(k_ne))) && (st = put_u32_json(c, "%s.expert_count", v, "num_local_experts"))) return st;
    if ((v = cfg_first(c, k_nu, CR_ARRAY_LEN(k_nu))) && (st = put_u32_json(c, "%s.expert_used_count", v, "num_experts_per_tok"))) return st;
    const cJSON *hd = cfg(c, "head_dim");
    if (hd) {
        if ((st = put_u32_json(c, "%s.attention.key_length", hd, "head_dim"))) return st;
        if ((st = put_u32_json(c, "%s.attention.value_length", hd, "head_dim"))) return st;
    }
    uint32_t ft = ftype == CR_GGML_F32 ? 0 : ftype == CR_GGML_F16 ? 1 : ftype == CR_GGML_BF16 ? 32 : ftype == CR_GGML_Q4_0 ? 2 : 7;
    cr_gguf_kv_u32(c->kv, "general.file_type", ft);
    if (llama) {
        const cJSON *vs = cfg(c, "vocab_size");
        if (!vs) return cr_fail(c->err, CR_ERR_FORMAT, "%s: config.json has no vocab_size", c->m->dir);
        if ((st = put_u32_json(c, "%s.vocab_size", vs, "vocab_size"))) return st;
        long long dim, h, n;
        if (hd) {
            if ((st = put_u32_json(c, "%s.rope.dimension_count", hd, "head_dim"))) return st;
        } else if (json_int(cfg(c, "hidden_size"), &h) && json_int(cfg(c, "num_attention_heads"), &n) && n > 0) {
            dim = h / n;
            char k[128];
            snprintf(k, sizeof k, "%s.rope.dimension_count", c->arch);
            cr_gguf_kv_u32(c->kv, k, (uint32_t)dim);
        } else {
            return cr_fail(c->err, CR_ERR_FORMAT, "%s: config.json needs head_dim or hidden_size and num_attention_heads", c->m->dir);
        }
    }
    cr_gguf_kv_u32(c->kv, "general.quantization_version", 2);
    return CR_OK;
}

/* ---- tokenizer metadata: _set_vocab_gpt2, then SpecialVocab (spec/gguf.md §4.2, §4.4) ---- */

/* a tokenizer_config value: a string, a {content} object, or absent */
static const char *tc_token(const cJSON *tc, const char *key, bool *present)
{
    const cJSON *v = tc ? cJSON_GetObjectItemCaseSensitive(tc, key) : NULL;
    *present = v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !*v->valuestring);
    if (cJSON_IsString(v)) return v->valuestring;
    return NULL;   /* a dict never equals a template token id in the Python comparisons */
}

static bool same(const char *a, const char *b) { return a && b && !strcmp(a, b); }

static bool looks_special(const char *t)
{
    size_t n = strlen(t);
    if (!strcmp(t, "<pad>") || !strcmp(t, "<mask>") || !strcmp(t, "<2mass>") || !strcmp(t, "[@BOS@]")) return true;
    if (n >= 4 && !strncmp(t, "<|", 2) && !strcmp(t + n - 2, "|>")) return true;
    if (n >= 8 && !strncmp(t, "<\xef\xbd\x9c", 4) && !strcmp(t + n - 4, "\xef\xbd\x9c>")) return true;
    if (n >= 8 && !strncmp(t, "<unused", 7) && t[n - 1] == '>') return true;
    return false;
}

enum { N_TYPES_MAX = 9 };
typedef struct special_state {
    const char *types[N_TYPES_MAX];
    int n_types;
    const char *id_typ[N_TYPES_MAX];
    long long id_val[N_TYPES_MAX];
    int n_ids;
    const char *add_typ[N_TYPES_MAX];
    bool add_val[N_TYPES_MAX];
    int n_add;
} special_state;

static int add_find(const special_state *s, const char *typ)
{
    for (int i = 0; i < s->n_add; i++) if (!strcmp(s->add_typ[i], typ)) return i;
    return -1;
}

static void add_set(special_state *s, const char *typ, bool v, bool only_if_unset)
{
    int i = add_find(s, typ);
    if (i >= 0) { if (!only_if_unset) s->add_val[i] = v; return; }
    s->add_typ[s->n_add] = typ;
    s->add_val[s->n_add++] = v;
}

static cr_status set_special(special_state *s, const char *typ, const cJSON *tid, const char *dir, cr_error *err)
{
    long long v;
    if (!tid || cJSON_IsBool(tid) || !json_int(tid, &v)) return CR_OK;   /* not an int: ignored */
    if (v < 0) return cr_fail(err, CR_ERR_FORMAT, "%s: invalid value for special token type %s: %lld", dir, typ, v);
    for (int i = 0; i < s->n_ids; i++) if (!strcmp(s->id_typ[i], typ)) return CR_OK;
    if (v > 0xffffffffLL) return cr_fail(err, CR_ERR_FORMAT, "%s: special token %s id %lld too large", dir, typ, v);
    s->id_typ[s->n_ids] = typ;
    s->id_val[s->n_ids++] = v;
    return CR_OK;
}

static const char *sp_id(const cJSON *item)
{
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
    const cJSON *id = st ? cJSON_GetObjectItemCaseSensitive(st, "id") : NULL;
    return cJSON_IsString(id) && *id->valuestring ? id->valuestring : NULL;
}

static const char *seq_id(const cJSON *item)
{
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(item, "Sequence");
    const cJSON *id = st ? cJSON_GetObjectItemCaseSensitive(st, "id") : NULL;
    return cJSON_IsString(id) ? id->valuestring : NULL;
}

static cr_status parse_post(const cJSON *proc, special_state *s, const cJSON *tc, const char **bos, const char **cls,
                            const char **eos, const char **sep, const char *dir, cr_error *err)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(proc, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    if (!strcmp(t, "ByteLevel")) {
        add_set(s, "bos", false, true);
        add_set(s, "eos", false, true);
        return CR_OK;
    }
    if (strcmp(t, "TemplateProcessing"))
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: tokenizer.json post-processor %s is not read for GGUF yet", dir, t);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(proc, "single");
    const cJSON *pair = cJSON_GetObjectItemCaseSensitive(proc, "pair");
    int ns = cJSON_IsArray(single) ? cJSON_GetArraySize(single) : 0;
    int np = cJSON_IsArray(pair) ? cJSON_GetArraySize(pair) : 0;
    const char *first = NULL, *last = NULL;
    if (ns > 1) {
        if ((first = sp_id(cJSON_GetArrayItem(single, 0)))) {
            if (!tc) *bos = first;
            else if (!same(first, *bos) && !same(first, *cls))
                return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: TemplateProcessing starts with %s, which is not the bos "
                               "token; the converter's rewrite of tokenizer_config is not ported", dir, first);
            add_set(s, "bos", same(first, *bos) || same(first, *cls), false);
        }
        if ((last = sp_id(cJSON_GetArrayItem(single, ns - 1)))) {
            if (!tc) *eos = last;
            else if (!same(last, *eos))
                return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: TemplateProcessing ends with %s, which is not the eos "
                               "token; the converter's eot/eom rewrite is not ported", dir, last);
            add_set(s, "eos", true, false);
        }
    }
    if (np) {
        int start = first && same(sp_id(cJSON_GetArrayItem(pair, 0)), first) ? 1 : 0;
        int stop = last && same(sp_id(cJSON_GetArrayItem(pair, np - 1)), last) ? np - 1 : np;
        if (stop - start > 0) {
            const char *a = seq_id(cJSON_GetArrayItem(pair, start)), *b = seq_id(cJSON_GetArrayItem(pair, stop - 1));
            if (same(a, "A") && same(b, "B") && stop - start - 2 > 0) {
                int inner0 = start + 1, n_inner = stop - start - 2;
                bool add_sep = false;
                const char *e = sp_id(cJSON_GetArrayItem(pair, inner0));
                if (e && (same(e, *sep) || same(e, *eos)) && !last) add_sep = true;
                if (n_inner == 2) {
                    const char *e2 = sp_id(cJSON_GetArrayItem(pair, inner0 + 1));
                    if (e2 && (same(e2, *sep) || same(e2, *eos))) add_sep = true;
                }
                add_set(s, "sep", add_sep, false);
                if (add_sep && !*sep && tc)
                    return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: TemplateProcessing pair adds a separator the "
                                   "tokenizer_config does not name; not ported", dir);
            }
        }
    }
    return CR_OK;
}

static cr_status put_vocab_gpt2(meta_ctx *c, bool llama, const char *pre)
{
    const cr_allocator *a = c->a;
    const char *dir = c->m->dir;
    cJSON *tj = NULL, *tc = NULL, *ctj = NULL;
    char *jinja = NULL;
    const char **tokens = NULL;
    int32_t *types = NULL;
    char **owned = NULL;
    size_t n_owned = 0;
    const char **merges = NULL;
    size_t n_merges = 0;
    long long nv = 0;
    cr_status st = read_json(a, c->m, "tokenizer.json", &tj, c->err);
    if (st == CR_OK) st = read_json(a, c->m, "tokenizer_config.json", &tc, c->err);
    if (st) goto out;
    if (llama && tc) {
        const cJSON *aps = cJSON_GetObjectItemCaseSensitive(tc, "add_prefix_space");
        if (cJSON_IsBool(aps)) cr_gguf_kv_bool(c->kv, "tokenizer.ggml.add_space_prefix", cJSON_IsTrue(aps));
        else if (aps && !cJSON_IsNull(aps)) { st = cr_fail(c->err, CR_ERR_FORMAT, "%s: add_prefix_space is not a bool", dir); goto out; }
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(tj, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(tj, "added_tokens");
    if (!cJSON_IsObject(vocab)) { st = cr_fail(c->err, CR_ERR_FORMAT, "%s: tokenizer.json model.vocab is not an object", dir); goto out; }
    long long max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        long long id;
        if (!json_int(it, &id) || id < 0 || id > 0x7fffffff) { st = cr_fail(c->err, CR_ERR_FORMAT, "%s: tokenizer.json vocab id of '%s' is invalid", dir, it->string); goto out; }
        max_id = CR_MAX(max_id, id);
    }
    cJSON_ArrayForEach(it, added) {
        long long id;
        if (!json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &id) || id < 0 || id > 0x7fffffff ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it, "content"))) {
            st = cr_fail(c->err, CR_ERR_FORMAT, "%s: tokenizer.json added_tokens entry is invalid", dir);
            goto out;
        }
        max_id = CR_MAX(max_id, id);
    }
    if (!json_int(cfg(c, "vocab_size"), &nv)) nv = max_id + 1;   /* len(tokenizer.vocab) when ids are dense (verify) */
    if (max_id >= nv || nv <= 0 || nv > 0x7fffffff) {
        st = cr_fail(c->err, CR_ERR_FORMAT, "%s: the tokenizer's largest id %lld is not below vocab_size %lld", dir, max_id, nv);
        goto out;
    }
    tokens = cr_calloc(a, (size_t)nv, sizeof *tokens);
    types = cr_calloc(a, (size_t)nv, sizeof *types);
    owned = cr_calloc(a, (size_t)nv, sizeof *owned);
    if (!tokens || !types || !owned) { st = cr_fail(c->err, CR_ERR_NOMEM, "out of memory"); goto out; }
    cJSON_ArrayForEach(it, vocab) { long long id; json_int(it, &id); if (!tokens[id]) tokens[id] = it->string; types[id] = 1; }
    /* added tokens: transformers' vocab maps their content to their id */
    cJSON_ArrayForEach(it, added) {
        long long id;
        json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &id);
        tokens[id] = cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring;
    }
    for (long long i = 0; i < nv; i++) {
        if (!tokens[i]) {
            char buf[32];
            snprintf(buf, sizeof buf, "[PAD%lld]", i);
            if (!(owned[n_owned] = cr_strdup(a, buf))) { st = cr_fail(c->err, CR_ERR_NOMEM, "out of memory"); goto out; }
            tokens[i] = owned[n_owned++];
            types[i] = 5;
            continue;
        }
        /* "token in added_vocab" is by content; added_tokens_decoder[i] is the id's entry */
        const cJSON *by_content = NULL, *by_id = NULL;
        cJSON_ArrayForEach(it, added) {
            long long id;
            json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &id);
            if (!by_content && !strcmp(cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring, tokens[i])) by_content = it;
            if (id == i) by_id = it;
        }
        if (!by_content) { types[i] = 1; continue; }
        if (!by_id) { st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: token %lld ('%s') is an added token under another id", dir, i, tokens[i]); goto out; }
        const cJSON *norm = cJSON_GetObjectItemCaseSensitive(by_id, "normalized");
        const cJSON *spec = cJSON_GetObjectItemCaseSensitive(by_id, "special");
        if (cJSON_IsTrue(spec) || looks_special(tokens[i])) {
            types[i] = 3;
        } else {
            /* USER_DEFINED; a non-normalized one goes through decode(encode()) in the converter */
            if (!cJSON_IsTrue(norm) || strstr(tokens[i], "\xe2\x96\x81")) {
                st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: added token '%s' is not special; the converter's "
                             "re-encoding of such tokens is not ported", dir, tokens[i]);
                goto out;
            }
            types[i] = 4;
        }
    }
    cr_gguf_kv_str(c->kv, "tokenizer.ggml.model", "gpt2");
    cr_gguf_kv_str(c->kv, "tokenizer.ggml.pre", pre);
    cr_gguf_kv_arr_str(c->kv, "tokenizer.ggml.tokens", tokens, (size_t)nv);
    cr_gguf_kv_arr_i32(c->kv, "tokenizer.ggml.token_type", types, (size_t)nv);

    /* SpecialVocab: merges */
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(model, "merges");
    int nm = cJSON_IsArray(jm) ? cJSON_GetArraySize(jm) : 0;
    if (nm) {
        merges = cr_calloc(a, (size_t)nm, sizeof *merges);
        char **mo = cr_calloc(a, (size_t)nm, sizeof *mo);
        if (!merges || !mo) { cr_free(a, mo); st = cr_fail(c->err, CR_ERR_NOMEM, "out of memory"); goto out; }
        bool pairs = cJSON_IsArray(cJSON_GetArrayItem(jm, 0));
        cJSON_ArrayForEach(it, jm) {
            if (!pairs && cJSON_IsString(it)) { merges[n_merges++] = it->valuestring; continue; }
            const cJSON *p0 = cJSON_GetArrayItem(it, 0), *p1 = cJSON_GetArrayItem(it, 1);
            if (!pairs || !cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2 || !cJSON_IsString(p0) || !cJSON_IsString(p1)) {
                st = cr_fail(c->err, CR_ERR_FORMAT, "%s: tokenizer.json merges: unknown format", dir);
                break;
            }
            /* part0 " " part1, a space inside a part written as U+0120 */
            cr_sbuf b;
            cr_sbuf_init(&b, a);
            for (int k = 0; k < 2; k++) {
                if (k) cr_sbuf_add(&b, " ", 1);
                for (const char *q = (k ? p1 : p0)->valuestring; *q; q++) {
                    if (*q == ' ') cr_sbuf_add(&b, "\xc4\xa0", 2);
                    else cr_sbuf_add(&b, q, 1);
                }
            }
            char *m = cr_sbuf_take(&b, NULL);
            if (!m) { st = cr_fail(c->err, CR_ERR_NOMEM, "out of memory"); break; }
            mo[n_merges] = m;
            merges[n_merges++] = m;
        }
        if (st == CR_OK) cr_gguf_kv_arr_str(c->kv, "tokenizer.ggml.merges", merges, n_merges);
        for (size_t k = 0; k < n_merges; k++) cr_free(a, mo[k]);
        cr_free(a, mo);
        if (st) goto out;
    } else if (is_file(c->m, "merges.txt")) {
        st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: merges from merges.txt are not read for GGUF yet", dir);
        goto out;
    }

    /* SpecialVocab: special tokens */
    special_state s = {.types = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"}, .n_types = 7};
    bool has_bos, has_cls, has_eos, has_sep;
    const char *bos = tc_token(tc, "bos_token", &has_bos), *cls = tc_token(tc, "cls_token", &has_cls);
    const char *eos = tc_token(tc, "eos_token", &has_eos), *sep = tc_token(tc, "sep_token", &has_sep);
    if ((!has_bos && has_cls) || (!has_eos && has_sep)) {
        st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: cls/sep standing in for bos/eos is not ported", dir);
        goto out;
    }
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(tj, "post_processor");
    if (pp && !cJSON_IsNull(pp)) {
        const cJSON *procs = cJSON_GetObjectItemCaseSensitive(pp, "processors");
        if (cJSON_IsArray(procs)) {
            cJSON_ArrayForEach(it, procs) if ((st = parse_post(it, &s, tc, &bos, &cls, &eos, &sep, dir, c->err))) goto out;
        } else if ((st = parse_post(pp, &s, tc, &bos, &cls, &eos, &sep, dir, c->err))) {
            goto out;
        }
    }
    const char *chat = NULL;
    bool lowercase = false, strip = false, has_lower = false, has_strip = false;
    const cJSON *normalizer = cJSON_GetObjectItemCaseSensitive(tj, "normalizer");
    if (normalizer && !cJSON_IsNull(normalizer)) {
        /* Lowercase / StripAccents / BertNormalizer / Sequence of them */
        const cJSON *stack[16];
        int sp = 0;
        stack[sp++] = normalizer;
        while (sp) {
            const cJSON *nz = stack[--sp];
            const cJSON *ty = cJSON_GetObjectItemCaseSensitive(nz, "type");
            const char *t = cJSON_IsString(ty) ? ty->valuestring : "";
            if (!strcmp(t, "Lowercase")) { has_lower = lowercase = true; }
            else if (!strcmp(t, "StripAccents")) { has_strip = strip = true; }
            else if (!strcmp(t, "BertNormalizer")) { st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: BertNormalizer is not read for GGUF", dir); goto out; }
            else if (!strcmp(t, "Sequence")) {
                /* pushed in reverse so they are visited in order; only the last setting counts */
                const cJSON *ns = cJSON_GetObjectItemCaseSensitive(nz, "normalizers");
                int cnt = cJSON_IsArray(ns) ? cJSON_GetArraySize(ns) : 0;
                for (int k = cnt - 1; k >= 0 && sp < 16; k--) stack[sp++] = cJSON_GetArrayItem(ns, k);
            }
        }
    }
    if (tc) {
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(tc, "chat_template");
        if (ct && !cJSON_IsNull(ct)) {
            if (!cJSON_IsString(ct)) { st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: a chat_template list is not written yet", dir); goto out; }
            chat = ct->valuestring;
        } else if (!ct && is_file(c->m, "chat_template.jinja")) {
            size_t len = 0;
            if ((st = c->m->read(c->m->ud, "chat_template.jinja", &jinja, &len, c->err))) goto out;
            if (!jinja || is_file(c->m, "additional_chat_templates") || strlen(jinja) != len) {
                st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: this chat template layout is not read for GGUF yet", dir);
                goto out;
            }
            chat = jinja;
        } else if (!ct) {
            if ((st = read_json(a, c->m, "chat_template.json", &ctj, c->err))) goto out;
            const cJSON *x = ctj ? cJSON_GetObjectItemCaseSensitive(ctj, "chat_template") : NULL;
            if (x && !cJSON_IsString(x) && !cJSON_IsNull(x)) { st = cr_fail(c->err, CR_ERR_UNSUPPORTED, "%s: a chat_template list is not written yet", dir); goto out; }
            if (cJSON_IsString(x)) chat = x->valuestring;
        }
        for (int k = 0; k < s.n_types; k++) {
            char key[64];
            snprintf(key, sizeof key, "add_%s_token", s.types[k]);
            const cJSON *ae = cJSON_GetObjectItemCaseSensitive(tc, key);
            if (cJSON_IsBool(ae)) add_set(&s, s.types[k], cJSON_IsTrue(ae), true);
            snprintf(key, sizeof key, "%s_token", s.types[k]);
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(tc, key);
            const char *content = NULL;
            if (cJSON_IsString(e)) content = e->valuestring;
            else if (cJSON_IsObject(e)) {
                const cJSON *ec = cJSON_GetObjectItemCaseSensitive(e, "content");
                if (cJSON_IsString(ec)) content = ec->valuestring;
            }
            if (!content) continue;
            cJSON_ArrayForEach(it, added) {
                if (!strcmp(cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring, content)) {
                    if ((st = set_special(&s, s.types[k], cJSON_GetObjectItemCaseSensitive(it, "id"), dir, c->err))) goto out;
                    break;
                }
            }
        }
    }
    for (int k = 0; k < s.n_types; k++) {
        char key[64];
        snprintf(key, sizeof key, "%s_token_id", s.types[k]);
        const cJSON *v = cfg(c, key);
        if (!v) {
            const cJSON *txt = cfg(c, "text_config");
            v = txt ? cJSON_GetObjectItemCaseSensitive(txt, key) : NULL;
        }
        if ((st = set_special(&s, s.types[k], v, dir, c->err))) goto out;
    }
    static const struct { const char *typ, *key; } idk[] = {
        {"bos", "tokenizer.ggml.bos_token_id"}, {"eos", "tokenizer.ggml.eos_token_id"},
        {"unk", "tokenizer.ggml.unknown_token_id"}, {"sep", "tokenizer.ggml.seperator_token_id"},
        {"pad", "tokenizer.ggml.padding_token_id"}, {"mask", "tokenizer.ggml.mask_token_id"},
    };
    for (int i = 0; i < s.n_ids; i++)
        for (size_t k = 0; k < CR_ARRAY_LEN(idk); k++)
            if (!strcmp(idk[k].typ, s.id_typ[i])) cr_gguf_kv_u32(c->kv, idk[k].key, (uint32_t)s.id_val[i]);
    for (int i = 0; i < s.n_add; i++) {
        char key[64];
        if (strcmp(s.add_typ[i], "bos") && strcmp(s.add_typ[i], "eos") && strcmp(s.add_typ[i], "sep")) continue;
        snprintf(key, sizeof key, "tokenizer.ggml.add_%s_token", s.add_typ[i]);
        cr_gguf_kv_bool(c->kv, key, s.add_val[i]);
    }
    if (chat && *chat) cr_gguf_kv_str(c->kv, "tokenizer.chat_template", chat);
    if (has_lower) cr_gguf_kv_bool(c->kv, "tokenizer.ggml.normalizer.lowercase", lowercase);
    if (has_strip) cr_gguf_kv_bool(c->kv, "tokenizer.ggml.normalizer.strip_accents", strip);
out:
    for (size_t k = 0; k < n_owned; k++) cr_free(a, owned[k]);
    cr_free(a, owned);
    cr_free(a, tokens);
    cr_free(a, types);
    cr_free(a, merges);
    cr_free(a, jinja);
    cJSON_Delete(ctj);
    cJSON_Delete(tc);
    cJSON_Delete(tj);
    return st;
}

/* Qwen3Model._is_qwen3_reranker: a reranker gets a classifier head and
 * other keys, which are not ported */
static cr_status refuse_reranker(const cr_allocator *a, const cr_gguf_src *m, cr_error *err)
{
    const cJSON *nop = m->config ? cJSON_GetObjectItemCaseSensitive(m->config, "_name_or_path") : NULL;
    const cJSON *mt = m->config ? cJSON_GetObjectItemCaseSensitive(m->config, "model_type") : NULL;
    const char *hints[3] = {basename_of(m->dir), cJSON_IsString(nop) ? nop->valuestring : "",
                            cJSON_IsString(mt) ? mt->valuestring : ""};
    char *card = NULL;
    size_t len = 0;
    cr_status st = m->read(m->ud, "README.md", &card, &len, err);
    if (st) return st;
    bool rr = false;
    for (size_t i = 0; card && i < len; i++) card[i] = (char)tolower((unsigned char)card[i]);
    if (card && (strstr(card, "# qwen3-reranker") || strstr(card, "# qwen3-vl-reranker"))) rr = true;
    cr_free(a, card);
    for (int i = 0; i < 3 && !rr; i++) {
        char low[256];
        size_t n = strlen(hints[i]);
        if (n >= sizeof low) n = sizeof low - 1;
        for (size_t k = 0; k < n; k++) low[k] = (char)tolower((unsigned char)hints[i][k]);
        low[n] = 0;
        rr = strstr(low, "qwen3-reranker") || strstr(low, "qwen3-vl-reranker");
    }
    return rr ? cr_fail(err, CR_ERR_UNSUPPORTED, "%s: the converter writes a Qwen3 reranker (its name or model card says "
                        "so) with a classifier head, which is not ported", m->dir)
              : CR_OK;
}

/* ---- the plan: the sink opened (its writes: gguf_sink.c) ------------------------------ */

cr_status cr_gguf_sink_open(const cr_allocator *alloc, const cr_gguf_src *m, const cr_gguf_hf_opts *o,
                            const cr_io *io, int fd, const char *path, cr_gguf_sink **sink_out, cr_error *err)
{
    *sink_out = NULL;
    hf_arch arch;
    const char *arch_name;
    cr_status st = arch_of(m, &arch, &arch_name, err);
    if (st) return st;
    if (!o->tensors_only && (st = cr_gguf_hf_check_vocab(alloc, m, err))) return st;
    if (arch == ARCH_QWEN3 && !o->tensors_only && (st = refuse_reranker(alloc, m, err))) return st;
    long long n_head = 0, n_kv = 0;
    if (arch == ARCH_LLAMA) {
        if ((!config_int(m, "n_heads", &n_head) && !config_int(m, "num_attention_heads", &n_head)) ||
            n_head <= 0)
            return cr_fail(err, CR_ERR_FORMAT, "%s: config.json num_attention_heads is missing", m->dir);
        /* modify_tensors' find_hparam(["n_kv_heads", "num_key_value_heads"]) raises when both are absent */
        if (!config_int(m, "n_kv_heads", &n_kv) && !config_int(m, "num_key_value_heads", &n_kv))
            return cr_fail(err, CR_ERR_FORMAT, "%s: config.json has no num_key_value_heads (llama.cpp's converter "
                           "needs it to permute k_proj)", m->dir);
        if (n_kv <= 0) return cr_fail(err, CR_ERR_FORMAT, "%s: config.json num_key_value_heads is invalid", m->dir);
    }

    /* the plan: shard files in name order, each shard's tensors by name */
    hf_tensor *plan = cr_calloc(alloc, m->n_tensors ? m->n_tensors : 1, sizeof *plan);
    cr_gguf_tensor *gt = cr_calloc(alloc, m->n_tensors ? m->n_tensors : 1, sizeof *gt);
    cr_gguf_sink *sk = cr_calloc(alloc, 1, sizeof *sk);
    cr_gguf_kv kv;
    cr_gguf_kv_init(&kv, alloc);
    uint8_t *header = NULL;
    hf_out *outs = NULL;
    uint32_t *srcs = NULL;
    long long *counts = NULL;
    if (!plan || !gt || !sk) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
    sk->alloc = alloc;
    sk->io = io ? io : cr_posix_io();
    sk->fd = fd;
    sk->src = m;
    sk->path = cr_strdup(alloc, path ? path : m->dir);
    sk->dst = cr_malloc(alloc, (m->n_tensors ? m->n_tensors : 1) * sizeof *sk->dst);
    sk->slot = cr_calloc(alloc, m->n_tensors ? m->n_tensors : 1, sizeof *sk->slot);
    sk->heads = cr_calloc(alloc, m->n_tensors ? m->n_tensors : 1, sizeof *sk->heads);
    if (!sk->path || !sk->dst || !sk->slot || !sk->heads) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
    for (uint32_t i = 0; i < m->n_tensors; i++) sk->dst[i] = UINT32_MAX;
    size_t n = 0;
    uint64_t total_params = 0;
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        const cr_gguf_src_tensor *mt = &m->tensors[i];
        const char *nm = mt->name;
        if (ends_with(nm, ".attention.masked_bias") || ends_with(nm, ".attention.bias") ||
            ends_with(nm, ".rotary_emb.inv_freq"))
            continue;
        hf_tensor *t = &plan[n];
        t->src = mt;
        t->index = i;
        t->shard_name = basename_of(mt->shard);
        bool is_q, is_k;
        bool mapped = map_name(nm, arch, t->name, &is_q, &is_k, t);
        if (!mapped && strstr(nm, ".mlp.experts.")) {
            st = cr_fail(err, CR_ERR_UNSUPPORTED, "%s: tensor '%s' is in the fused expert layout (mergekit 0.1.5's "
                         "default), which llama.cpp's converter cannot map; write the experts with --moe-layout classic "
                         "(or --mergekit-version 0.1.4) for GGUF", m->dir, nm);
            goto out;
        }
        if (!mapped) {
            st = cr_fail(err, CR_ERR_UNSUPPORTED, "%s: tensor '%s' has no GGUF name for %s (the converter cannot map it)",
                         m->dir, nm, arch_name);
            goto out;
        }
        if (is_q || is_k) {
            uint32_t heads = (uint32_t)(is_q ? n_head : n_kv);
            uint64_t rows = mt->shape[0];
            if (mt->ndim != 2) {
                st = cr_fail(err, CR_ERR_UNSUPPORTED, "%s: tensor '%s': permuting a q/k bias is not written yet", m->dir, nm);
                goto out;
            }
            if (rows % heads || (rows / heads) % 2) {
                st = cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': %llu rows do not split into %u heads of even size",
                             m->dir, nm, (unsigned long long)rows, heads);
                goto out;
            }
            t->permute_heads = heads;
        }
        if (mt->ndim < 1 || mt->ndim > 4) {
            st = cr_fail(err, CR_ERR_UNSUPPORTED, "%s: tensor '%s' has rank %u", m->dir, nm, mt->ndim);
            goto out;
        }
        if (!cr_dtype_is_float(mt->dtype) || mt->dtype == CR_DTYPE_F64) {
            st = cr_fail(err, CR_ERR_UNSUPPORTED, "%s: tensor '%s' is %s; GGUF conversion reads f32, f16 and bf16",
                         m->dir, nm, cr_dtype_name(mt->dtype));
            goto out;
        }
        total_params += mt->numel;
        n++;
    }
    qsort(plan, n, sizeof *plan, cmp_plan);
    cr_gguf_hf_opts oo = *o;
    if (o->auto_type) {
        /* the converter's GUESSED file type: the first tensor of 2+ dimensions,
         * in checkpoint order, that is bf16 or f16 (f32 ones are passed over) */
        oo.ftype = CR_GGML_F16;
        for (size_t i = 0; i < n; i++) {
            const cr_gguf_src_tensor *in = plan[i].src;
            if (in->ndim < 2) continue;
            if (in->dtype == CR_DTYPE_BF16) { oo.ftype = CR_GGML_BF16; break; }
            if (in->dtype == CR_DTYPE_F16) { oo.ftype = CR_GGML_F16; break; }
        }
    }
    o = &oo;
    /* the file's tensors in the converter's order: a layer's experts are
     * buffered and emitted, stacked w1, w2, w3, where its 3*E-th arrives */
    long long n_exp = 0;
    uint32_t max_layer = 0;
    bool any_moe = false;
    for (size_t i = 0; i < n; i++)
        if (plan[i].moe_w >= 0) { any_moe = true; max_layer = CR_MAX(max_layer, plan[i].layer); }
    if (any_moe && (!config_int(m, "num_local_experts", &n_exp) || n_exp <= 0 || n_exp > 4096)) {
        st = cr_fail(err, CR_ERR_FORMAT, "%s: expert tensors but no valid num_local_experts in config.json", m->dir);
        goto out;
    }
    outs = cr_calloc(alloc, n ? n : 1, sizeof *outs);
    srcs = cr_calloc(alloc, n ? n : 1, sizeof *srcs);
    counts = cr_calloc(alloc, (size_t)max_layer + 1, sizeof *counts);
    if (!outs || !srcs || !counts) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
    size_t n_out = 0, n_srcs = 0;
    for (size_t i = 0; i < n; i++) {
        if (plan[i].moe_w < 0) {
            hf_out *u = &outs[n_out++];
            memcpy(u->name, plan[i].name, sizeof u->name);
            u->first = (uint32_t)n_srcs;
            u->n_src = 1;
            srcs[n_srcs++] = (uint32_t)i;
            u->n_dims = plan[i].src->ndim;
            memcpy(u->shape, plan[i].src->shape, sizeof(uint64_t) * u->n_dims);
            u->permute_heads = plan[i].permute_heads;
            continue;
        }
        if (plan[i].expert >= (uint64_t)n_exp) {
            st = cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': expert %u of %lld", m->dir, plan[i].src->name,
                         plan[i].expert, n_exp);
            goto out;
        }
        if (++counts[plan[i].layer] < 3 * n_exp) continue;
        static const char *const wname[3] = {"ffn_gate_exps", "ffn_down_exps", "ffn_up_exps"};
        for (int w = 0; w < 3; w++) {
            hf_out *u = &outs[n_out++];
            snprintf(u->name, sizeof u->name, "blk.%u.%s.weight", plan[i].layer, wname[w]);
            u->first = (uint32_t)n_srcs;
            u->n_src = (uint32_t)n_exp;
            for (long long e = 0; e < n_exp; e++) {
                size_t k = 0;
                while (k < n && !(plan[k].moe_w == w && plan[k].layer == plan[i].layer && plan[k].expert == (uint32_t)e)) k++;
                const cr_gguf_src_tensor *x = k < n ? plan[k].src : NULL;
                const cr_gguf_src_tensor *x0 = e ? plan[srcs[u->first]].src : x;
                if (!x || x->ndim != 2 || x->shape[0] != x0->shape[0] || x->shape[1] != x0->shape[1]) {
                    st = cr_fail(err, CR_ERR_FORMAT, "%s: layer %u expert %lld w%d is missing or its shape differs", m->dir,
                                 plan[i].layer, e, w + 1);
                    goto out;
                }
                srcs[n_srcs++] = (uint32_t)k;
            }
            const cr_gguf_src_tensor *x0 = plan[srcs[u->first]].src;
            u->n_dims = 3;
            u->shape[0] = (uint64_t)n_exp;
            u->shape[1] = x0->shape[0];
            u->shape[2] = x0->shape[1];
        }
    }
    for (uint32_t l = 0; any_moe && l <= max_layer; l++)
        if (counts[l] && counts[l] != 3 * n_exp) {
            st = cr_fail(err, CR_ERR_FORMAT, "%s: layer %u has %lld expert tensors, expected %lld", m->dir, l,
                         (long long)counts[l], 3 * n_exp);
            goto out;
        }
    bool has_output = false;
    for (size_t i = 0; i < n_out; i++) has_output |= !strcmp(outs[i].name, "output.weight");
    uint64_t shared = 0, expert_params = 0, expert_sum = 0, n_exp_t = 0;
    for (size_t i = 0; i < n_out; i++) {
        hf_out *u = &outs[i];
        gt[i].name = u->name;
        gt[i].n_dims = u->n_dims;
        uint64_t numel = 1;
        for (uint32_t d = 0; d < u->n_dims; d++) {
            gt[i].ne[d] = u->shape[u->n_dims - 1 - d];
            numel *= u->shape[d];
        }
        gt[i].type = out_type(u->name, u->n_dims, gt[i].ne[0], o->ftype, !has_output, n_exp);
        if (strstr(u->name, "_exps.") && u->n_dims >= 3 && u->shape[0]) {   /* get_total_parameter_count */
            expert_params += numel / u->shape[0];
            expert_sum += u->shape[0];
            n_exp_t++;
        } else {
            shared += numel;
        }
    }
    cr_gguf_param_count pc = {.total = total_params, .shared = shared, .expert = expert_params,
                              .expert_count = n_exp_t ? expert_sum / n_exp_t : 0};

    meta_ctx c = {.a = alloc, .m = m, .kv = &kv, .arch = arch_name, .err = err};
    cr_gguf_kv_str(&kv, "general.architecture", arch_name);
    if (!o->tensors_only) {
        if ((st = put_general(&c, &pc))) goto out;
        if ((st = put_hparams(&c, arch == ARCH_LLAMA, o->ftype))) goto out;
        if ((st = put_vocab_gpt2(&c, arch == ARCH_LLAMA, o->pre))) goto out;
    }

    uint64_t header_len, size;
    if ((st = cr_gguf_layout(alloc, &kv, gt, n_out, &header, &header_len, &size, err))) goto out;
    /* where each source tensor lands */
    for (size_t i = 0; i < n_out; i++)
        for (uint32_t k = 0; k < outs[i].n_src; k++) {
            const hf_tensor *pt = &plan[srcs[outs[i].first + k]];
            sk->dst[pt->index] = (uint32_t)i;
            sk->slot[pt->index] = k;
            sk->heads[pt->index] = outs[i].permute_heads;
        }
    if (fd >= 0) {
        if (sk->io->ftruncate(sk->io->ud, fd, size)) { st = cr_fail_errno(err, errno, "cannot size %s", sk->path); goto out; }
        int e = cr_gguf_write_all(sk->io, fd, header, header_len, 0);
        if (e) { st = cr_fail_errno(err, e, "cannot write %s", sk->path); goto out; }
    }
    sk->ftype = o->ftype;
    sk->size = size;
    sk->header_len = header_len;
    sk->gt = gt;
    sk->outs = outs;
    sk->n_out = n_out;
    gt = NULL;
    outs = NULL;
    *sink_out = sk;
    sk = NULL;
out:
    if (sk) cr_gguf_sink_free(sk);
    cr_free(alloc, outs);
    cr_free(alloc, srcs);
    cr_free(alloc, counts);
    cr_free(alloc, header);
    cr_gguf_kv_free(&kv);
    cr_free(alloc, gt);
    cr_free(alloc, plan);
    return st;
}
