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
#include "gguf_vocab.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtype.h"
#include "infile.h"
#include "limits.h"

/* QWEN2MOE/QWEN3MOE: Qwen2MoeModel (Qwen3MoeModel inherits it): per-expert
 * mlp.experts.E.{down,gate,up}_proj stacked, a shared expert and its gate */
typedef enum { ARCH_LLAMA, ARCH_QWEN2, ARCH_QWEN3, ARCH_QWEN2MOE, ARCH_QWEN3MOE } hf_arch;

typedef struct hf_tensor {
    const cr_gguf_src_tensor *src;
    uint32_t index;              /* into the source's tensors */
    const char *shard_name;      /* basename of the shard file */
    char name[64];
    uint32_t permute_heads;      /* llama q/k: the permutation's head count (0: none) */
    int moe_w;                   /* expert tensor: its place in the stacking order (Mixtral w1/w2/w3, Qwen
                                    down/gate/up); -1 otherwise */
    uint32_t layer, expert;
    bool gate_up;                /* a fused mlp.experts.gate_up_proj [E, 2F, H]: gate and up outputs */
} hf_tensor;


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
    if (s && !strcmp(s, "Qwen2MoeForCausalLM")) {
        *arch = ARCH_QWEN2MOE;
        *name = "qwen2moe";
        return CR_OK;
    }
    if (s && !strcmp(s, "Qwen3MoeForCausalLM")) {
        *arch = ARCH_QWEN3MOE;
        *name = "qwen3moe";
        return CR_OK;
    }
    return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: GGUF output supports LlamaForCausalLM, MistralForCausalLM, "
                   "MixtralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen2MoeForCausalLM and "
                   "Qwen3MoeForCausalLM so far; config.json architectures[0] is %s",
                   m->dir, s ? s : "missing");
}

cr_status cr_gguf_hf_check_vocab(const cr_allocator *alloc, const cr_gguf_src *m, cr_error *err)
{
    hf_arch arch;
    const char *an;
    cr_status st = arch_of(m, &arch, &an, err);
    if (st) return st;
    if (cr_gguf_vocab_spm(m)) return CR_OK;   /* set_vocab tries _set_vocab_sentencepiece first */
    cJSON *tj = NULL;
    st = cr_gguf_src_json(alloc, m, "tokenizer.json", &tj, err);
    if (st) return st;
    if (!tj) return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: GGUF output needs tokenizer.json", m->dir);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tj, "model"), "type");
    bool bpe = cJSON_IsString(type) && !strcmp(type->valuestring, "BPE");
    cJSON_Delete(tj);
    if (!bpe) return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: tokenizer.json's model is not BPE", m->dir);
    return CR_OK;
}

bool cr_gguf_hf_needs_pre(const cr_allocator *alloc, const cr_gguf_src *m)
{
    hf_arch arch;
    const char *an;
    cr_error err = {0};
    if (arch_of(m, &arch, &an, &err)) return true;   /* check_vocab says why */
    if (cr_gguf_vocab_spm(m)) return false;
    if (arch != ARCH_LLAMA) return true;
    cJSON *tj = NULL;
    if (cr_gguf_src_json(alloc, m, "tokenizer.json", &tj, &err) || !tj) return true;
    bool hf = cr_gguf_vocab_is_llama_hf(tj);
    cJSON_Delete(tj);
    return !hf;
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
    if (arch == ARCH_QWEN2MOE || arch == ARCH_QWEN3MOE) {
        /* Qwen2MoeModel.modify_tensors stacks down_proj, gate_proj, up_proj in that order */
        static const char *const qw[3] = {"down_proj", "gate_proj", "up_proj"};
        unsigned layer, e;
        char w[16];
        int used = 0;
        if (sscanf(hf, "model.layers.%u.mlp.experts.%u.%15[a-z_].weight%n", &layer, &e, w, &used) == 3 && used &&
            !hf[used])
            for (int k = 0; k < 3; k++)
                if (!strcmp(w, qw[k])) {
                    t->moe_w = k;
                    t->layer = layer;
                    t->expert = e;
                    return true;
                }
        /* a program's output (`moe … OUT.gguf`) holds a fused tensor as per-expert pieces
         * (compiler/moe.c: "…experts.gate_up_proj[E] (gate_proj)"), stacked like per-expert
         * tensors: the same bytes as the converter's split of the whole tensor */
        char w2[16];
        used = 0;
        if (sscanf(hf, "model.layers.%u.mlp.experts.%15[a-z_][%u] (%15[a-z_])%n", &layer, w, &e, w2, &used) == 4 &&
            used && !hf[used] && (!strcmp(w, "gate_up_proj") || !strcmp(w, "down_proj")))
            for (int k = 0; k < 3; k++)
                if (!strcmp(w2, qw[k]) && (k == 0) == !strcmp(w, "down_proj")) {
                    t->moe_w = k;
                    t->layer = layer;
                    t->expert = e;
                    return true;
                }
        /* transformers 5's fused experts (with or without .weight): down_proj [E, H, F] passes whole
         * as ffn_down_exps, gate_up_proj [E, 2F, H] splits on dim -2 into ffn_gate_exps (first F rows
         * of each expert) and ffn_up_exps (the rest), which follows it in the file */
        used = 0;
        if (sscanf(hf, "model.layers.%u.mlp.experts.%15[a-z_]%n", &layer, w, &used) == 2 && used &&
            (!hf[used] || !strcmp(hf + used, ".weight"))) {
            if (!strcmp(w, "down_proj")) {
                snprintf(out, 64, "blk.%u.ffn_down_exps.weight", layer);
                return true;
            }
            if (!strcmp(w, "gate_up_proj")) {
                snprintf(out, 64, "blk.%u.ffn_gate_exps.weight", layer);
                t->gate_up = true;
                t->layer = layer;
                return true;
            }
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
        /* qwen2moe (tensor_mapping.py) */
        {"mlp.gate", "ffn_gate_inp"}, {"mlp.shared_expert_gate", "ffn_gate_inp_shexp"},
        {"mlp.shared_expert.gate_proj", "ffn_gate_shexp"}, {"mlp.shared_expert.up_proj", "ffn_up_shexp"},
        {"mlp.shared_expert.down_proj", "ffn_down_shexp"},
    };
    for (size_t i = 0; i < CR_ARRAY_LEN(map); i++) {
        if (strcmp(rest, map[i].hf)) continue;
        if (i >= 10 && arch != ARCH_QWEN2MOE && arch != ARCH_QWEN3MOE) break;
        /* a dense MLP inside a Qwen MoE (mlp_only_layers, decoder_sparse_step): the qwen2moe /
         * qwen3moe tensor lists have no ffn_gate/up/down, so the converter cannot map it */
        if (i >= 6 && i <= 8 && (arch == ARCH_QWEN2MOE || arch == ARCH_QWEN3MOE)) break;
        snprintf(out, 64, "blk.%u.%s%s", layer, map[i].gg, suffix);
        *is_q = arch == ARCH_LLAMA && i == 1;
        *is_k = arch == ARCH_LLAMA && i == 2;
        return true;
    }
    if ((arch == ARCH_QWEN3 || arch == ARCH_QWEN3MOE) && (!strcmp(rest, "self_attn.q_norm") || !strcmp(rest, "self_attn.k_norm"))) {
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
        ends_with(name, ".ffn_gate_inp.weight") || ends_with(name, ".ffn_gate_inp_shexp.weight"))
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
    if (!cr_gguf_json_int(v, &x) || x < 0 || x > 0xffffffffLL)
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
    if ((st = cr_gguf_src_json(c->a, c->m, "generation_config.json", &gen, c->err))) return st;
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
        else if (samp[i].type == 'i' && cr_gguf_json_int(v, &x) && x >= INT32_MIN && x <= INT32_MAX) cr_gguf_kv_i32(c->kv, samp[i].key, (int32_t)x);
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

static cr_status put_hparams(meta_ctx *c, bool llama, bool qwen_moe, cr_ggml_type ftype)
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
    } else if (!strcasecmp(rt, "llama3")) {
        /* no keys: LlamaModel writes a rope_freqs.weight tensor instead (rope_llama3) */
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
        } else if (cr_gguf_json_int(cfg(c, "hidden_size"), &h) && cr_gguf_json_int(cfg(c, "num_attention_heads"), &n) && n > 0) {
            dim = h / n;
            char k[128];
            snprintf(k, sizeof k, "%s.rope.dimension_count", c->arch);
            cr_gguf_kv_u32(c->kv, k, (uint32_t)dim);
        } else {
            return cr_fail(c->err, CR_ERR_FORMAT, "%s: config.json needs head_dim or hidden_size and num_attention_heads", c->m->dir);
        }
    }
    if (qwen_moe) {   /* Qwen2MoeModel.set_gguf_parameters, after the base class's keys */
        const cJSON *v;
        if ((v = cfg(c, "moe_intermediate_size")) &&
            (st = put_u32_json(c, "%s.expert_feed_forward_length", v, "moe_intermediate_size")))
            return st;
        if ((v = cfg(c, "shared_expert_intermediate_size")) &&
            (st = put_u32_json(c, "%s.expert_shared_feed_forward_length", v, "shared_expert_intermediate_size")))
            return st;
    }
    cr_gguf_kv_u32(c->kv, "general.quantization_version", 2);
    return CR_OK;
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

/* ---- llama3 rope: LlamaModel.generate_extra_tensors (spec/gguf.md §6.5) ---------------- */

static double rp_num(const cJSON *rp, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rp, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* One factor from one frequency, as torch evaluates the converter's loop:
 * each tensor op in f32, each Python scalar rounded to f32 where it meets
 * the tensor, x / t as reciprocal(t) * x (Tensor.__rtruediv__). The
 * volatile stores keep every intermediate an f32 rounding. */
static float llama3_factor(float freq, double factor, double lo, double hi, double old)
{
    volatile float wl = (1.0f / freq) * (float)(2.0 * M_PI);
    if (wl < (float)(old / hi)) return 1.0f;
    if (wl > (float)(old / lo)) return (float)factor;
    volatile float s = (1.0f / wl) * (float)old;
    s = s - (float)lo;
    s = s / (float)(hi - lo);
    volatile float a = (1.0f - s) / (float)factor;
    a = a + s;
    return 1.0f / a;
}

/* *n = 0 when the config has no llama3 rope. freqs = 1 / base ** (arange(0,
 * dim, 2, f32) / dim) is torch's pow of an f32 tensor: on x86 its elements
 * below 16 * floor(n / 16) go through SLEEF's SIMD powf (AVX2: 16 a loop
 * step; AVX-512: 32, a subset), the rest through std::pow, i.e. libm powf,
 * which is called here. SLEEF's result is within 1 ulp of the exact power
 * and so one of the two floats around it, as is powf's: where powf's
 * neighbours would give another factor, the converter's bytes are unknown
 * and the config is refused, naming the element, unless (base, dim) is one
 * where torch's SIMD pow was compared with powf on every element and found
 * equal, on AVX2 and AVX-512 (tests/golden/gguf/check_rope_pow.py). */
static const struct { float base; long long dim; } rope_pow_checked[] = {
    {10000.0f, 64}, {10000.0f, 128}, {500000.0f, 64}, {500000.0f, 128}, {1000000.0f, 64},
};

static cr_status rope_llama3(const cr_allocator *a, const cr_gguf_src *m, float **out, uint32_t *n_out, cr_error *err)
{
    *out = NULL;
    *n_out = 0;
    const cJSON *rp = m->config ? cJSON_GetObjectItemCaseSensitive(m->config, "rope_parameters") : NULL;
    if (!cJSON_IsObject(rp)) rp = m->config ? cJSON_GetObjectItemCaseSensitive(m->config, "rope_scaling") : NULL;
    if (!cJSON_IsObject(rp)) return CR_OK;
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(rp, "rope_type");
    if (!rt) rt = cJSON_GetObjectItemCaseSensitive(rp, "type");
    if (!cJSON_IsString(rt) || strcasecmp(rt->valuestring, "llama3")) return CR_OK;
    double base = rp_num(rp, "rope_theta", NAN);
    if (isnan(base)) {   /* the converter mirrors the top-level rope_theta into rope_parameters */
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(m->config, "rope_theta");
        base = cJSON_IsNumber(t) ? t->valuedouble : 10000.0;
    }
    long long dim = 0, hidden = 0, heads = 0;
    if (!config_int(m, "head_dim", &dim)) {
        if (!config_int(m, "hidden_size", &hidden) || !config_int(m, "num_attention_heads", &heads) || heads <= 0)
            return cr_fail(err, CR_ERR_FORMAT, "%s: llama3 rope needs head_dim or hidden_size and num_attention_heads", m->dir);
        dim = hidden / heads;
    }
    double factor = rp_num(rp, "factor", 8.0), lo = rp_num(rp, "low_freq_factor", 1.0);
    double hi = rp_num(rp, "high_freq_factor", 4.0), old = rp_num(rp, "original_max_position_embeddings", 8192);
    if (dim <= 0 || dim > 65536 || !(base > 0 && isfinite(base)) || !(lo > 0) || !(hi > 0) || lo == hi ||
        !isfinite(factor) || factor == 0 || !(old > 0 && isfinite(old)))
        return cr_fail(err, CR_ERR_FORMAT, "%s: llama3 rope parameters out of range (head dim %lld, rope_theta %g, "
                       "factor %g, low/high_freq_factor %g/%g, original_max_position_embeddings %g)",
                       m->dir, dim, base, factor, lo, hi, old);
    uint32_t n = (uint32_t)((dim + 1) / 2), simd = n / 16 * 16;
    for (size_t i = 0; i < CR_ARRAY_LEN(rope_pow_checked); i++)
        if (rope_pow_checked[i].base == (float)base && rope_pow_checked[i].dim == dim) simd = 0;
    float *f = cr_malloc(a, n * sizeof *f);
    if (!f) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t k = 0; k < n; k++) {
        volatile float t = (float)(2 * k) / (float)dim;
        volatile float p = powf((float)base, t);
        float freq = 1.0f / p;
        f[k] = llama3_factor(freq, factor, lo, hi, old);
        if (k >= simd) continue;
        float pd = nextafterf(p, 0.0f), pu = nextafterf(p, INFINITY);
        float fd = llama3_factor(1.0f / pd, factor, lo, hi, old), fu = llama3_factor(1.0f / pu, factor, lo, hi, old);
        if (memcmp(&fd, &f[k], 4) || memcmp(&fu, &f[k], 4)) {
            cr_free(a, f);
            return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: llama3 rope factor %u of %u (rope_theta %g, head dim %lld) falls "
                           "between the bands, where llama.cpp's converter takes torch's SIMD powf, whose last bit "
                           "crucible does not reproduce; the rope_freqs.weight it writes is not known", m->dir, k, n,
                           base, dim);
        }
    }
    *out = f;
    *n_out = n;
    return CR_OK;
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
    cr_gguf_tensor *gt = cr_calloc(alloc, 2 * (size_t)m->n_tensors + 1, sizeof *gt);   /* outs: see below */
    cr_gguf_sink *sk = cr_calloc(alloc, 1, sizeof *sk);
    cr_gguf_kv kv;
    cr_gguf_kv_init(&kv, alloc);
    uint8_t *header = NULL;
    hf_out *outs = NULL;
    uint32_t *srcs = NULL;
    long long *counts = NULL;
    float *rope = NULL;   /* llama3 rope_freqs.weight, the file's first tensor (§6.1) */
    uint32_t n_rope = 0;
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
        if (t->gate_up && (mt->ndim != 3 || mt->shape[1] % 2)) {   /* Qwen2MoeModel's ValueError */
            st = cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': a fused gate_up_proj must be [experts, 2*F, hidden]",
                         m->dir, nm);
            goto out;
        }
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
    /* find_hparam(["num_local_experts", "num_experts"]) */
    if (any_moe && ((!config_int(m, "num_local_experts", &n_exp) && !config_int(m, "num_experts", &n_exp)) || n_exp <= 0 ||
                    n_exp > 4096)) {
        st = cr_fail(err, CR_ERR_FORMAT, "%s: expert tensors but no valid num_local_experts / num_experts in config.json",
                     m->dir);
        goto out;
    }
    /* a fused gate_up_proj makes two outputs from one source */
    if (arch == ARCH_LLAMA && (st = rope_llama3(alloc, m, &rope, &n_rope, err))) goto out;
    outs = cr_calloc(alloc, 2 * n + 1, sizeof *outs);
    srcs = cr_calloc(alloc, n ? 2 * n : 1, sizeof *srcs);
    counts = cr_calloc(alloc, (size_t)max_layer + 1, sizeof *counts);
    if (!outs || !srcs || !counts) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto out; }
    size_t n_out = 0, n_srcs = 0;
    if (n_rope) {   /* no source: its data is written with the header */
        hf_out *u = &outs[n_out++];
        snprintf(u->name, sizeof u->name, "rope_freqs.weight");
        u->n_dims = 1;
        u->shape[0] = n_rope;
    }
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
            if (plan[i].gate_up) {   /* gate [E, F, H], then up beside it (the sink writes dst + 1) */
                u->shape[1] /= 2;
                hf_out *up = &outs[n_out++];
                *up = *u;
                snprintf(up->name, sizeof up->name, "blk.%u.ffn_up_exps.weight", plan[i].layer);
                up->first = (uint32_t)n_srcs;
                srcs[n_srcs++] = (uint32_t)i;
                u->split = true;
            }
            continue;
        }
        if (plan[i].expert >= (uint64_t)n_exp) {
            st = cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s': expert %u of %lld", m->dir, plan[i].src->name,
                         plan[i].expert, n_exp);
            goto out;
        }
        if (++counts[plan[i].layer] < 3 * n_exp) continue;
        static const char *const mixtral_w[3] = {"ffn_gate_exps", "ffn_down_exps", "ffn_up_exps"};
        static const char *const qwen_w[3] = {"ffn_down_exps", "ffn_gate_exps", "ffn_up_exps"};
        const char *const *wname = arch == ARCH_LLAMA ? mixtral_w : qwen_w;
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
                    st = cr_fail(err, CR_ERR_FORMAT, "%s: layer %u expert %lld %s is missing or its shape differs", m->dir,
                                 plan[i].layer, e, wname[w]);
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
    cr_gguf_param_count pc = {.total = total_params + n_rope, .shared = shared, .expert = expert_params,
                              .expert_count = n_exp_t ? expert_sum / n_exp_t : 0};

    meta_ctx c = {.a = alloc, .m = m, .kv = &kv, .arch = arch_name, .err = err};
    cr_gguf_kv_str(&kv, "general.architecture", arch_name);
    if (!o->tensors_only) {
        if ((st = put_general(&c, &pc))) goto out;
        if ((st = put_hparams(&c, arch == ARCH_LLAMA, arch == ARCH_QWEN2MOE || arch == ARCH_QWEN3MOE, o->ftype)))
            goto out;
        if ((st = cr_gguf_vocab_put(alloc, m, &kv, arch == ARCH_LLAMA, o->pre, err))) goto out;
    }

    uint64_t header_len, size;
    if ((st = cr_gguf_layout(alloc, &kv, gt, n_out, &header, &header_len, &size, err))) goto out;
    /* where each source tensor lands */
    for (size_t i = 0; i < n_out; i++)
        for (uint32_t k = 0; k < outs[i].n_src; k++) {
            const hf_tensor *pt = &plan[srcs[outs[i].first + k]];
            if (i && outs[i - 1].split) continue;   /* a gate_up_proj's up half: its gate's dst + 1 */
            sk->dst[pt->index] = (uint32_t)i;
            sk->slot[pt->index] = k;
            sk->heads[pt->index] = outs[i].permute_heads;
        }
    if (fd >= 0) {
        if (sk->io->ftruncate(sk->io->ud, fd, size)) { st = cr_fail_errno(err, errno, "cannot size %s", sk->path); goto out; }
        int e = cr_io_write_all(sk->io, fd, header, header_len, 0);
        if (!e && n_rope) {
            uint8_t *le = (uint8_t *)rope;   /* f32 little-endian in place */
            for (uint32_t k = 0; k < n_rope; k++) {
                uint32_t u;
                memcpy(&u, &rope[k], 4);
                for (int b = 0; b < 4; b++) le[4 * k + b] = (uint8_t)(u >> (8 * b));
            }
            e = cr_io_write_all(sk->io, fd, rope, (uint64_t)n_rope * 4, gt[0].offset);
        }
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
    cr_free(alloc, rope);
    cr_free(alloc, header);
    cr_gguf_kv_free(&kv);
    cr_free(alloc, gt);
    cr_free(alloc, plan);
    return st;
}
