/* moe_hfconfig.c — config.json per MoE writer and mergekit release
 * (moe_hfconfig.h). The 0.1.5 rules were read from transformers 5.25's
 * configuration_utils.py, modeling_rope_utils.py and the config classes,
 * and are checked against real mergekit-moe 0.1.5 output by
 * tests/compat/check_moe.py.
 */
#include "moe_hfconfig.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"

static bool set_item(cJSON *o, const char *key, cJSON *v)
{
    if (!v) return false;
    if (cJSON_GetObjectItemCaseSensitive(o, key)) return cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
    return cJSON_AddItemToObject(o, key, v);
}

static cJSON *get(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static bool is_null(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* ---- number spelling ------------------------------------------------------- */

/* Python's repr of a float: the shortest digits that read back, fixed
 * notation for 1e-4 <= |x| < 1e16 (with ".0" when integral), else d.ddde±XX. */
static void py_float(double x, char *out, size_t n)
{
    if (isnan(x)) { snprintf(out, n, "NaN"); return; }
    if (isinf(x)) { snprintf(out, n, x < 0 ? "-Infinity" : "Infinity"); return; }
    if (x == 0) { snprintf(out, n, signbit(x) ? "-0.0" : "0.0"); return; }
    char t[48];
    for (int p = 1; p <= 17; p++) {
        snprintf(t, sizeof t, "%.*e", p - 1, x);
        if (strtod(t, NULL) == x) break;
    }
    const char *s = t;
    bool neg = *s == '-';
    if (neg) s++;
    char dig[24];
    size_t nd = 0;
    for (; *s && *s != 'e'; s++)
        if (*s != '.' && nd < sizeof dig - 1) dig[nd++] = *s;
    int e = *s == 'e' ? atoi(s + 1) : 0;
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    dig[nd] = 0;
    int decpt = e + 1;
    char *o = out, *end = out + n - 1;
#define PUT(c) do { if (o < end) *o++ = (c); } while (0)
    if (neg) PUT('-');
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            PUT('0'); PUT('.');
            for (int i = 0; i < -decpt; i++) PUT('0');
            for (size_t i = 0; i < nd; i++) PUT(dig[i]);
        } else {
            for (int i = 0; i < decpt; i++) PUT((size_t)i < nd ? dig[i] : '0');
            PUT('.');
            if ((size_t)decpt >= nd) PUT('0');
            for (size_t i = (size_t)decpt; i < nd; i++) PUT(dig[i]);
        }
        *o = 0;
    } else {
        PUT(dig[0]);
        if (nd > 1) { PUT('.'); for (size_t i = 1; i < nd; i++) PUT(dig[i]); }
        *o = 0;
        size_t used = (size_t)(o - out);
        snprintf(o, n - used, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
#undef PUT
}

/* keys whose values the config classes hold as Python floats: a value
 * crucible adds (a class default) is spelt as a float */
static const char *const float_keys[] = { "rms_norm_eps", "initializer_range", "attention_dropout", "rope_theta",
                                          "router_aux_loss_coef", "router_jitter_noise", "factor",
                                          "partial_rotary_factor" };

typedef struct num_ctx { const char *text; bool v5; char buf[64]; } num_ctx;

/* the first `"key": literal` of the base text whose value is v */
static const char *base_literal(num_ctx *nc, const char *key, double v)
{
    if (!nc->text || !key) return NULL;
    char pat[160];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    for (const char *at = strstr(nc->text, pat); at; at = strstr(at + 1, pat)) {
        const char *p = at + strlen(pat);
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        size_t n = strcspn(p, ",}] \t\r\n");
        if (!n || n >= sizeof nc->buf) continue;
        memcpy(nc->buf, p, n);
        nc->buf[n] = 0;
        char *end;
        double x = strtod(nc->buf, &end);
        if (*end == 0 && x == v) return nc->buf;
    }
    return NULL;
}

/* 0.1.4: literals as the base spelt them ("10000.0" stays so). 0.1.5:
 * Python's json of the value's Python type — an int stays an int, a float
 * is repr'd ("1e-5" becomes "1e-05"); the type is the base literal's, else
 * the class field's (float_keys), else int when integral. */
static const char *num_text(void *ud, const cJSON *node)
{
    num_ctx *nc = ud;
    const char *key = node->string;
    double v = node->valuedouble;
    if (!nc->v5) {
        if (key && !strcmp(key, "router_jitter_noise") && v == 0) return "0.0";
        return base_literal(nc, key, v);
    }
    const char *lit = base_literal(nc, key, v);
    bool is_float;
    if (lit) is_float = strpbrk(lit, ".eEIN") != NULL;
    else {
        is_float = v != floor(v) || fabs(v) >= 9007199254740992.0;
        for (size_t i = 0; key && i < CR_ARRAY_LEN(float_keys); i++)
            if (!strcmp(key, float_keys[i])) is_float = true;
    }
    if (is_float) py_float(v, nc->buf, sizeof nc->buf);
    else snprintf(nc->buf, sizeof nc->buf, "%.0f", v);
    return nc->buf;
}

/* ---- 0.1.4 (transformers 4) -------------------------------------------------- */

static bool keys_v4(cJSON *cfg, const cr_moe_hfconfig_in *in)
{
    bool q2 = in->arch == CR_MOE_ARCH_QWEN2, q3 = in->arch == CR_MOE_ARCH_QWEN3, ok = true;
    cJSON *arch = cJSON_CreateArray();
    if (arch) cJSON_AddItemToArray(arch, cJSON_CreateString(q2 ? "Qwen2MoeForCausalLM" : q3 ? "Qwen3MoeForCausalLM"
                                                                                        : "MixtralForCausalLM"));
    ok &= set_item(cfg, "architectures", arch);
    ok &= set_item(cfg, "model_type", cJSON_CreateString(q2 ? "qwen2_moe" : q3 ? "qwen3_moe" : "mixtral"));
    ok &= set_item(cfg, q2 || q3 ? "num_experts" : "num_local_experts", cJSON_CreateNumber(in->n_experts));
    ok &= set_item(cfg, "num_experts_per_tok", cJSON_CreateNumber((double)in->experts_per_token));
    if (q2) ok &= set_item(cfg, "shared_expert_intermediate_size", cJSON_CreateNumber(in->intermediate));
    if (q2 || q3) {
        ok &= set_item(cfg, "moe_intermediate_size", cJSON_CreateNumber(in->intermediate));
        ok &= set_item(cfg, "decoder_sparse_step", cJSON_CreateNumber(1));
        ok &= set_item(cfg, "norm_topk_prob", cJSON_CreateTrue());
    }
    if (q2) ok &= set_item(cfg, "use_sliding_window", cJSON_CreateFalse());
    if (!q3) ok &= set_item(cfg, "sliding_window", cJSON_CreateNull());
    /* class defaults that transformers serialises (MixtralConfig,
     * Qwen2MoeConfig, Qwen3MoeConfig); loaders do not need them, mergekit's
     * output has them */
    ok &= set_item(cfg, "output_router_logits", cJSON_CreateFalse());
    ok &= set_item(cfg, "router_aux_loss_coef", cJSON_CreateNumber(0.001));
    if (!q2 && !q3) {
        ok &= set_item(cfg, "router_jitter_noise", cJSON_CreateNumber(0.0));
    } else {
        ok &= set_item(cfg, "mlp_only_layers", cJSON_CreateArray());
        if (q2) ok &= set_item(cfg, "qkv_bias", cJSON_CreateTrue());
    }
    /* the dtype key as the base has it (transformers >= 4.56 writes `dtype`);
     * Mixtral writes null when unknown, the Qwen writers leave it */
    const char *dkey = get(cfg, "dtype") ? "dtype" : "torch_dtype";
    if (in->out_dtype != CR_DTYPE_NONE)
        ok &= set_item(cfg, dkey, cJSON_CreateString(cr_dtype_torch_name(in->out_dtype)));
    else if (!q2 && !q3)
        ok &= set_item(cfg, dkey, cJSON_CreateNull());
    return ok;
}

/* ---- 0.1.5 (transformers 5) -------------------------------------------------- */

/* A config class's declared fields and their defaults (JSON text); a field
 * the dict lacks is added with its default when the class is built. */
typedef struct field { const char *key, *json; } field;

static const field llama_fields[] = {
    { "vocab_size", "32000" }, { "hidden_size", "4096" }, { "intermediate_size", "11008" },
    { "num_hidden_layers", "32" }, { "num_attention_heads", "32" }, { "num_key_value_heads", "null" },
    { "hidden_act", "\"silu\"" }, { "max_position_embeddings", "2048" }, { "initializer_range", "0.02" },
    { "rms_norm_eps", "1e-06" }, { "use_cache", "true" }, { "pad_token_id", "null" }, { "bos_token_id", "1" },
    { "eos_token_id", "2" }, { "pretraining_tp", "1" }, { "tie_word_embeddings", "false" },
    { "attention_bias", "false" }, { "attention_dropout", "0.0" }, { "mlp_bias", "false" }, { "head_dim", "null" },
    { NULL, NULL } };
static const field mistral_fields[] = {
    { "vocab_size", "32000" }, { "hidden_size", "4096" }, { "intermediate_size", "14336" },
    { "num_hidden_layers", "32" }, { "num_attention_heads", "32" }, { "num_key_value_heads", "8" },
    { "head_dim", "null" }, { "hidden_act", "\"silu\"" }, { "max_position_embeddings", "131072" },
    { "initializer_range", "0.02" }, { "rms_norm_eps", "1e-06" }, { "use_cache", "true" }, { "pad_token_id", "null" },
    { "bos_token_id", "1" }, { "eos_token_id", "2" }, { "tie_word_embeddings", "false" },
    { "sliding_window", "4096" }, { "attention_dropout", "0.0" }, { NULL, NULL } };
static const field mixtral_fields[] = {
    { "vocab_size", "32000" }, { "hidden_size", "4096" }, { "intermediate_size", "14336" },
    { "num_hidden_layers", "32" }, { "num_attention_heads", "32" }, { "num_key_value_heads", "8" },
    { "head_dim", "null" }, { "hidden_act", "\"silu\"" }, { "max_position_embeddings", "131072" },
    { "initializer_range", "0.02" }, { "rms_norm_eps", "1e-05" }, { "use_cache", "true" }, { "pad_token_id", "null" },
    { "bos_token_id", "1" }, { "eos_token_id", "2" }, { "tie_word_embeddings", "false" },
    { "sliding_window", "null" }, { "attention_dropout", "0.0" }, { "num_experts_per_tok", "2" },
    { "num_local_experts", "8" }, { "output_router_logits", "false" }, { "router_aux_loss_coef", "0.001" },
    { "router_jitter_noise", "0.0" }, { NULL, NULL } };
static const field qwen3_fields[] = {
    { "vocab_size", "151936" }, { "hidden_size", "4096" }, { "intermediate_size", "22016" },
    { "num_hidden_layers", "32" }, { "num_attention_heads", "32" }, { "num_key_value_heads", "32" },
    { "head_dim", "128" }, { "hidden_act", "\"silu\"" }, { "max_position_embeddings", "32768" },
    { "initializer_range", "0.02" }, { "rms_norm_eps", "1e-06" }, { "use_cache", "true" },
    { "tie_word_embeddings", "false" }, { "attention_bias", "false" }, { "use_sliding_window", "false" },
    { "sliding_window", "4096" }, { "max_window_layers", "28" }, { "layer_types", "null" },
    { "attention_dropout", "0.0" }, { "pad_token_id", "null" }, { "bos_token_id", "null" },
    { "eos_token_id", "null" }, { NULL, NULL } };
static const field qwen2_fields[] = {
    { "vocab_size", "151936" }, { "hidden_size", "4096" }, { "intermediate_size", "22016" },
    { "num_hidden_layers", "32" }, { "num_attention_heads", "32" }, { "num_key_value_heads", "32" },
    { "hidden_act", "\"silu\"" }, { "max_position_embeddings", "32768" }, { "initializer_range", "0.02" },
    { "rms_norm_eps", "1e-06" }, { "use_cache", "true" }, { "tie_word_embeddings", "false" },
    { "use_sliding_window", "false" }, { "sliding_window", "4096" }, { "max_window_layers", "28" },
    { "layer_types", "null" }, { "attention_dropout", "0.0" }, { "pad_token_id", "null" },
    { "bos_token_id", "null" }, { "eos_token_id", "null" }, { NULL, NULL } };
static const field qwen2_moe_fields[] = {
    { "vocab_size", "151936" }, { "hidden_size", "2048" }, { "intermediate_size", "5632" },
    { "num_hidden_layers", "24" }, { "num_attention_heads", "16" }, { "num_key_value_heads", "16" },
    { "hidden_act", "\"silu\"" }, { "max_position_embeddings", "32768" }, { "initializer_range", "0.02" },
    { "rms_norm_eps", "1e-06" }, { "use_cache", "true" }, { "tie_word_embeddings", "false" },
    { "use_sliding_window", "false" }, { "sliding_window", "4096" }, { "max_window_layers", "28" },
    { "attention_dropout", "0.0" }, { "decoder_sparse_step", "1" }, { "moe_intermediate_size", "1408" },
    { "shared_expert_intermediate_size", "5632" }, { "num_experts_per_tok", "4" }, { "num_experts", "60" },
    { "norm_topk_prob", "false" }, { "output_router_logits", "false" }, { "router_aux_loss_coef", "0.001" },
    { "mlp_only_layers", "null" }, { "qkv_bias", "true" }, { "layer_types", "null" }, { "pad_token_id", "null" },
    { "bos_token_id", "null" }, { "eos_token_id", "null" }, { NULL, NULL } };
/* Qwen3MoeConfig's num_experts is stored as num_local_experts (attribute_map) */
static const field qwen3_moe_fields[] = {
    { "vocab_size", "151936" }, { "hidden_size", "2048" }, { "intermediate_size", "6144" },
    { "num_hidden_layers", "24" }, { "num_attention_heads", "32" }, { "num_key_value_heads", "4" },
    { "hidden_act", "\"silu\"" }, { "max_position_embeddings", "32768" }, { "initializer_range", "0.02" },
    { "rms_norm_eps", "1e-06" }, { "use_cache", "true" }, { "tie_word_embeddings", "false" },
    { "attention_bias", "false" }, { "use_sliding_window", "false" }, { "sliding_window", "4096" },
    { "attention_dropout", "0.0" }, { "decoder_sparse_step", "1" }, { "moe_intermediate_size", "768" },
    { "num_experts_per_tok", "8" }, { "num_local_experts", "128" }, { "norm_topk_prob", "false" },
    { "output_router_logits", "false" }, { "router_aux_loss_coef", "0.001" }, { "mlp_only_layers", "null" },
    { "pad_token_id", "null" }, { "bos_token_id", "null" }, { "eos_token_id", "null" }, { NULL, NULL } };

static bool fill(cJSON *cfg, const field *f)
{
    for (; f->key; f++)
        if (!get(cfg, f->key) && !set_item(cfg, f->key, cJSON_Parse(f->json))) return false;
    return true;
}

static double num(const cJSON *cfg, const char *key, double dflt)
{
    const cJSON *v = get(cfg, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* __post_init__ of Llama / Mistral / Mixtral: head_dim = hidden / heads
 * and num_key_value_heads = heads when None */
static bool post_init_llama(cJSON *cfg, bool head_dim)
{
    bool ok = true;
    double heads = num(cfg, "num_attention_heads", 32);
    if (head_dim && is_null(get(cfg, "head_dim")) && heads > 0)
        ok &= set_item(cfg, "head_dim", cJSON_CreateNumber(floor(num(cfg, "hidden_size", 4096) / heads)));
    if (is_null(get(cfg, "num_key_value_heads"))) ok &= set_item(cfg, "num_key_value_heads", cJSON_CreateNumber(heads));
    return ok;
}

static bool layer_types(cJSON *cfg, bool qwen2_moe)
{
    if (!is_null(get(cfg, "layer_types"))) return true;
    cJSON *lt = cJSON_CreateArray();
    bool sw = !is_null(get(cfg, "sliding_window")), use = cJSON_IsTrue(get(cfg, "use_sliding_window"));
    double L = num(cfg, "num_hidden_layers", 32), mwl = num(cfg, "max_window_layers", 28);
    for (double i = 0; lt && i < L && i < 1e6; i++) {
        bool sliding = qwen2_moe ? fmod(i + 1, 2) != 0 && i < mwl && use : sw && i >= mwl;
        cJSON_AddItemToArray(lt, cJSON_CreateString(sliding ? "sliding_attention" : "full_attention"));
    }
    return set_item(cfg, "layer_types", lt);
}

/* Qwen2 / Qwen3: sliding_window only with use_sliding_window,
 * num_key_value_heads = heads when None, layer_types */
static bool post_init_qwen(cJSON *cfg)
{
    bool ok = true;
    if (!cJSON_IsTrue(get(cfg, "use_sliding_window"))) ok &= set_item(cfg, "sliding_window", cJSON_CreateNull());
    if (is_null(get(cfg, "num_key_value_heads")))
        ok &= set_item(cfg, "num_key_value_heads", cJSON_CreateNumber(num(cfg, "num_attention_heads", 32)));
    return ok && layer_types(cfg, false);
}

/* Qwen2-MoE / Qwen3-MoE: mlp_only_layers [] when None; sliding_window
 * without use_sliding_window is 0 (Qwen2-MoE) or None (Qwen3-MoE);
 * Qwen2-MoE's own layer_types rule */
static bool post_init_qwen_moe(cJSON *cfg, bool qwen2)
{
    bool ok = true;
    if (is_null(get(cfg, "mlp_only_layers"))) ok &= set_item(cfg, "mlp_only_layers", cJSON_CreateArray());
    if (!cJSON_IsTrue(get(cfg, "use_sliding_window")))
        ok &= set_item(cfg, "sliding_window", qwen2 ? cJSON_CreateNumber(0) : cJSON_CreateNull());
    return ok && (!qwen2 || layer_types(cfg, true));
}

/* RotaryEmbeddingConfigMixin.convert_rope_params_to_dict +
 * standardize_rope_params (flat, not per layer type): rope_scaling (else
 * rope_parameters, else {}) with rope_theta (default 10000.0),
 * partial_rotary_factor, rope_type (its `type`, else "default") and, for
 * llama3 / yarn / longrope, original_max_position_embeddings. The old keys
 * are not kept. */
static bool rope_v5(cJSON *cfg)
{
    cJSON *rs = get(cfg, "rope_scaling"), *rpar = get(cfg, "rope_parameters");
    cJSON *rp = NULL;
    if (cJSON_IsObject(rs) && rs->child) rp = cJSON_Duplicate(rs, true);
    else if (cJSON_IsObject(rpar)) rp = cJSON_Duplicate(rpar, true);
    else rp = cJSON_CreateObject();
    if (!rp) return false;
    bool ok = true;
    cJSON *theta = get(cfg, "rope_theta"), *prf = get(cfg, "partial_rotary_factor");
    if (!get(rp, "rope_theta"))
        ok &= cJSON_AddItemToObject(rp, "rope_theta", theta ? cJSON_Duplicate(theta, true) : cJSON_CreateNumber(10000.0));
    if (prf && !is_null(prf) && !get(rp, "partial_rotary_factor"))
        ok &= cJSON_AddItemToObject(rp, "partial_rotary_factor", cJSON_Duplicate(prf, true));
    if (!get(rp, "rope_type")) {
        cJSON *t = get(rp, "type");
        ok &= cJSON_AddItemToObject(rp, "rope_type", t ? cJSON_Duplicate(t, true) : cJSON_CreateString("default"));
    }
    const char *type = cJSON_GetStringValue(get(rp, "rope_type"));
    if (type && (!strcmp(type, "llama3") || !strcmp(type, "yarn") || !strcmp(type, "longrope"))) {
        cJSON *omp = get(cfg, "original_max_position_embeddings");
        if (omp) ok &= set_item(rp, "original_max_position_embeddings", cJSON_Duplicate(omp, true));
        else if (!get(rp, "original_max_position_embeddings") && get(cfg, "max_position_embeddings"))
            ok &= set_item(rp, "original_max_position_embeddings",
                           cJSON_Duplicate(get(cfg, "max_position_embeddings"), true));
    }
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "rope_scaling");
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "rope_theta");
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "partial_rotary_factor");
    return set_item(cfg, "rope_parameters", rp) && ok;
}

/* to_diff_dict: values equal to a bare PreTrainedConfig's are not written,
 * nor _name_or_path; transformers_version would be the running
 * transformers' (crucible writes none) */
static void drop_pretrained_defaults(cJSON *cfg)
{
    static const char *const always[] = { "_name_or_path", "transformers_version", "torch_dtype" };
    for (size_t i = 0; i < CR_ARRAY_LEN(always); i++) cJSON_DeleteItemFromObjectCaseSensitive(cfg, always[i]);
    static const char *const defaults[][2] = {
        { "chunk_size_feed_forward", "0" }, { "is_encoder_decoder", "false" }, { "output_attentions", "false" },
        { "output_hidden_states", "false" }, { "problem_type", "null" }, { "return_dict", "true" },
        { "id2label", "{\"0\": \"LABEL_0\", \"1\": \"LABEL_1\"}" }, { "label2id", "{\"LABEL_0\": 0, \"LABEL_1\": 1}" },
    };
    for (size_t i = 0; i < CR_ARRAY_LEN(defaults); i++) {
        cJSON *v = get(cfg, defaults[i][0]);
        if (!v) continue;
        cJSON *d = cJSON_Parse(defaults[i][1]);
        if (d && cJSON_Compare(v, d, true)) cJSON_DeleteItemFromObjectCaseSensitive(cfg, defaults[i][0]);
        cJSON_Delete(d);
    }
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp((*(cJSON *const *)a)->string, (*(cJSON *const *)b)->string);
}

/* json.dumps(sort_keys=True): every object's keys in code point order */
static bool sort_keys(const cr_allocator *al, cJSON *o)
{
    bool ok = true;
    for (cJSON *c = o->child; c; c = c->next) ok &= sort_keys(al, c);
    if (!cJSON_IsObject(o) || !o->child) return ok;
    size_t n = 0;
    for (cJSON *c = o->child; c; c = c->next) n++;
    cJSON **v = cr_malloc(al, sizeof *v * n);
    if (!v) return false;
    n = 0;
    for (cJSON *c = o->child; c; c = c->next) v[n++] = c;
    qsort(v, n, sizeof *v, cmp_key);
    for (size_t i = 0; i < n; i++) {
        v[i]->prev = i ? v[i - 1] : v[n - 1];   /* cJSON: the head's prev is the tail */
        v[i]->next = i + 1 < n ? v[i + 1] : NULL;
    }
    o->child = v[0];
    cr_free(al, v);
    return ok;
}

static bool set_arch(cJSON *cfg, const char *cls, const char *type)
{
    cJSON *arch = cJSON_CreateArray();
    if (arch) cJSON_AddItemToArray(arch, cJSON_CreateString(cls));
    bool ok = set_item(cfg, "architectures", arch);
    return set_item(cfg, "model_type", cJSON_CreateString(type)) && ok;
}

static bool keys_v5(const cr_allocator *al, cJSON *cfg, const cr_moe_hfconfig_in *in)
{
    bool ok = true;
    const char *mt = cJSON_GetStringValue(get(cfg, "model_type"));
    mt = mt ? mt : "";
    drop_pretrained_defaults(cfg);
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "dtype");
    ok &= rope_v5(cfg);
    /* the base loaded into its class (AutoConfig) */
    if (!strcmp(mt, "qwen2")) ok &= fill(cfg, qwen2_fields) && post_init_qwen(cfg);
    else if (!strcmp(mt, "qwen3")) ok &= fill(cfg, qwen3_fields) && post_init_qwen(cfg);
    else if (!strcmp(mt, "mistral")) ok &= fill(cfg, mistral_fields) && post_init_llama(cfg, true);
    else ok &= fill(cfg, llama_fields) && post_init_llama(cfg, true);
    double I = num(cfg, "intermediate_size", in->intermediate);
    if (in->arch == CR_MOE_ARCH_QWEN3) {
        /* Qwen3MoeConfig(**base.to_dict()) */
        ok &= fill(cfg, qwen3_moe_fields) && post_init_qwen_moe(cfg, false);
        ok &= set_arch(cfg, "Qwen3MoeForCausalLM", "qwen3_moe");
        ok &= set_item(cfg, "num_local_experts", cJSON_CreateNumber(in->n_experts));
        ok &= set_item(cfg, "num_experts_per_tok", cJSON_CreateNumber((double)in->experts_per_token));
        ok &= set_item(cfg, "decoder_sparse_step", cJSON_CreateNumber(1));
        ok &= set_item(cfg, "norm_topk_prob", cJSON_CreateTrue());
        ok &= set_item(cfg, "moe_intermediate_size", cJSON_CreateNumber(I));
    } else if (in->arch == CR_MOE_ARCH_QWEN2) {
        /* Qwen2MoeConfig(**base.to_dict()) */
        ok &= fill(cfg, qwen2_moe_fields) && post_init_qwen_moe(cfg, true);
        ok &= set_arch(cfg, "Qwen2MoeForCausalLM", "qwen2_moe");
        ok &= set_item(cfg, "num_experts", cJSON_CreateNumber(in->n_experts));
        ok &= set_item(cfg, "num_experts_per_tok", cJSON_CreateNumber((double)in->experts_per_token));
        ok &= set_item(cfg, "decoder_sparse_step", cJSON_CreateNumber(1));
        ok &= set_item(cfg, "norm_topk_prob", cJSON_CreateTrue());
        ok &= set_item(cfg, "sliding_window", cJSON_CreateNull());
        ok &= set_item(cfg, "use_sliding_window", cJSON_CreateFalse());
        ok &= set_item(cfg, "shared_expert_intermediate_size", cJSON_CreateNumber(I));
        ok &= set_item(cfg, "moe_intermediate_size", cJSON_CreateNumber(I));
    } else {
        /* MixtralConfig(**MistralConfig(**base.to_dict()).to_dict()), the
         * Mistral step (skipped for a mistral base) with sliding_window None */
        if (strcmp(mt, "mistral")) {
            ok &= fill(cfg, mistral_fields) && post_init_llama(cfg, true);
            ok &= set_item(cfg, "sliding_window", cJSON_CreateNull());
        }
        ok &= fill(cfg, mixtral_fields) && post_init_llama(cfg, false);
        ok &= set_arch(cfg, "MixtralForCausalLM", "mixtral");
        ok &= set_item(cfg, "num_local_experts", cJSON_CreateNumber(in->n_experts));
        ok &= set_item(cfg, "num_experts_per_tok", cJSON_CreateNumber((double)in->experts_per_token));
        ok &= set_item(cfg, "sliding_window", cJSON_CreateNull());
    }
    /* `dtype`, dropped when unknown (None is PreTrainedConfig's default) */
    if (in->out_dtype != CR_DTYPE_NONE)
        ok &= set_item(cfg, "dtype", cJSON_CreateString(cr_dtype_torch_name(in->out_dtype)));
    return ok && sort_keys(al, cfg);
}

/* ---- DeepSeek MoE (0.1.5) ---------------------------------------------------- */

/* DeepseekMoE._generate_config: base_config.to_dict() (not the diff dict)
 * plus its keys, json.dump(indent=4). transformers 5's to_dict is the
 * instance __dict__ in assignment order: PreTrainedConfig's attributes set
 * before the class fields, the fields in declaration order (rope_parameters
 * after tie_word_embeddings), then _name_or_path (the path transformers
 * loaded; crucible: base_model as given), model_type, the base's other keys
 * and output_attentions. `dtype` is the base's (None when it has none);
 * `torch_dtype` the output dtype, appended. transformers_version (first in
 * mergekit's file) is not written, like the other writers. */
static cJSON *take(cJSON *cfg, const char *key, const char *dflt)
{
    cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(cfg, key);
    return v ? v : cJSON_Parse(dflt);
}

static bool put(cJSON *out, const char *key, cJSON *v)
{
    if (!v) return false;
    cJSON_AddItemToObject(out, key, v);
    return true;
}

static cJSON *deepseek_v5(cJSON *cfg, const cr_moe_hfconfig_in *in)
{
    bool ok = true;
    const char *mt = cJSON_GetStringValue(get(cfg, "model_type"));
    bool mistral = mt && !strcmp(mt, "mistral");
    cJSON *dt = cJSON_DetachItemFromObjectCaseSensitive(cfg, "dtype"), *tdt = get(cfg, "torch_dtype");
    if (!dt || cJSON_IsNull(dt)) {
        cJSON_Delete(dt);
        dt = tdt && cJSON_IsString(tdt) ? cJSON_Duplicate(tdt, true) : cJSON_CreateNull();
    }
    static const char *const drop[] = { "torch_dtype", "transformers_version", "architectures", "model_type",
                                        "_name_or_path" };
    for (size_t i = 0; i < CR_ARRAY_LEN(drop); i++) cJSON_DeleteItemFromObjectCaseSensitive(cfg, drop[i]);
    ok &= rope_v5(cfg);
    const field *fields = mistral ? mistral_fields : llama_fields;
    ok &= fill(cfg, fields) && post_init_llama(cfg, true);
    cJSON *out = cJSON_CreateObject();
    if (!out) { cJSON_Delete(dt); return NULL; }
    cJSON *arch = cJSON_CreateArray();
    if (arch) cJSON_AddItemToArray(arch, cJSON_CreateString("DeepseekForCausalLM"));
    ok &= put(out, "architectures", arch);
    ok &= put(out, "output_hidden_states", take(cfg, "output_hidden_states", "false"));
    ok &= put(out, "return_dict", take(cfg, "return_dict", "true"));
    ok &= put(out, "dtype", dt);
    ok &= put(out, "chunk_size_feed_forward", take(cfg, "chunk_size_feed_forward", "0"));
    ok &= put(out, "is_encoder_decoder", take(cfg, "is_encoder_decoder", "false"));
    ok &= put(out, "id2label", take(cfg, "id2label", "{\"0\": \"LABEL_0\", \"1\": \"LABEL_1\"}"));
    ok &= put(out, "label2id", take(cfg, "label2id", "{\"LABEL_0\": 0, \"LABEL_1\": 1}"));
    ok &= put(out, "problem_type", take(cfg, "problem_type", "null"));
    for (const field *f = fields; f->key; f++) {
        ok &= put(out, f->key, take(cfg, f->key, f->json));
        if (!strcmp(f->key, "tie_word_embeddings")) ok &= put(out, "rope_parameters", take(cfg, "rope_parameters", "{}"));
    }
    cJSON *oa = take(cfg, "output_attentions", "false");
    ok &= put(out, "_name_or_path", cJSON_CreateString(in->name_or_path ? in->name_or_path : ""));
    ok &= put(out, "model_type", cJSON_CreateString("deepseek"));
    /* keys no class declares (set from kwargs), in the base's order */
    while (cfg->child) {
        cJSON *v = cJSON_DetachItemViaPointer(cfg, cfg->child);
        cJSON_AddItemToObject(out, v->string, v);
    }
    ok &= put(out, "output_attentions", oa);
    ok &= put(out, "n_routed_experts", cJSON_CreateNumber(in->n_experts));
    ok &= put(out, "n_shared_experts", in->n_shared ? cJSON_CreateNumber(in->n_shared) : cJSON_CreateNull());
    ok &= put(out, "num_experts_per_tok", cJSON_CreateNumber((double)in->experts_per_token));
    ok &= put(out, "first_k_dense_replace", cJSON_CreateNumber(0));
    ok &= put(out, "moe_layer_freq", cJSON_CreateNumber(1));
    ok &= put(out, "scoring_func", cJSON_CreateString("softmax"));
    ok &= put(out, "norm_topk_prob", cJSON_CreateTrue());
    ok &= put(out, "moe_intermediate_size", cJSON_Duplicate(get(out, "intermediate_size"), true));
    cJSON *am = cJSON_CreateObject();
    if (am) {
        cJSON_AddStringToObject(am, "AutoConfig", "deepseek-ai/deepseek-moe-16b-base--configuration_deepseek.DeepseekConfig");
        cJSON_AddStringToObject(am, "AutoModel", "deepseek-ai/deepseek-moe-16b-base--modeling_deepseek.DeepseekModel");
        cJSON_AddStringToObject(am, "AutoModelForCausalLM",
                                "deepseek-ai/deepseek-moe-16b-base--modeling_deepseek.DeepseekForCausalLM");
    }
    ok &= put(out, "auto_map", am);
    if (in->out_dtype != CR_DTYPE_NONE)
        ok &= put(out, "torch_dtype", cJSON_CreateString(cr_dtype_torch_name(in->out_dtype)));
    if (!ok) { cJSON_Delete(out); return NULL; }
    return out;
}

/* indent 2 -> json.dump's indent 4 (strings are escaped: every line break
 * is structure), no final newline */
static char *reindent4(const cr_allocator *al, const char *t, size_t *len)
{
    cr_sbuf sb;
    cr_sbuf_init(&sb, al);
    bool bol = true;
    for (const char *p = t; *p; p++) {
        if (bol && *p == ' ') { cr_sbuf_adds(&sb, "  "); continue; }
        bol = *p == '\n';
        if (bol && !p[1]) break;
        char c[2] = { *p, 0 };
        cr_sbuf_adds(&sb, c);
    }
    return cr_sbuf_take(&sb, len);
}

cr_status cr_moe_hfconfig(const cr_allocator *alloc, const cr_moe_hfconfig_in *in, char **text, size_t *len,
                          cr_error *err)
{
    *text = NULL;
    *len = 0;
    if (in->arch >= CR_MOE_ARCH_COUNT)
        return cr_fail(err, CR_ERR_ARG, "no config.json for MoE writer %d", (int)in->arch);
    /* every writer's config goes through transformers 5 under 0.1.5, the
     * Qwen MoE one too (its tensors are unchanged) */
    bool v5 = cr_mk_resolve(in->mk_version) == CR_MK_0_1_5;
    if (in->arch == CR_MOE_ARCH_DEEPSEEK && !v5)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "the DeepSeek MoE writer's config.json under --mergekit-version 0.1.4 "
                       "(transformers 4's to_dict) is not reproduced; use 0.1.5");
    cJSON *cfg = cJSON_Duplicate(in->base, true);
    if (!cfg) return cr_fail(err, CR_ERR_NOMEM, "out of memory writing config.json");
    if (in->arch == CR_MOE_ARCH_DEEPSEEK) {
        cJSON *out = deepseek_v5(cfg, in);
        cJSON_Delete(cfg);
        if (!out) return cr_fail(err, CR_ERR_NOMEM, "out of memory writing config.json");
        cr_sbuf sb;
        cr_sbuf_init(&sb, alloc);
        num_ctx nc = { .text = in->base_text, .v5 = true };
        cr_json_add_pretty(&sb, out, 0, num_text, &nc);
        cJSON_Delete(out);
        size_t n2;
        char *t2 = cr_sbuf_take(&sb, &n2);
        char *t = t2 ? reindent4(alloc, t2, len) : NULL;
        cr_free(alloc, t2);
        if (!t) return cr_fail(err, CR_ERR_NOMEM, "out of memory writing config.json");
        *text = t;
        return CR_OK;
    }
    bool ok = v5 ? keys_v5(alloc, cfg, in) : keys_v4(cfg, in);
    cr_sbuf sb;
    cr_sbuf_init(&sb, alloc);
    num_ctx nc = { .text = in->base_text, .v5 = v5 };
    if (ok) {
        cr_json_add_pretty(&sb, cfg, 0, num_text, &nc);
        cr_sbuf_adds(&sb, "\n");
    }
    cJSON_Delete(cfg);
    char *t = cr_sbuf_take(&sb, len);
    if (!ok || !t) {
        cr_free(alloc, t);
        return cr_fail(err, CR_ERR_NOMEM, "out of memory writing config.json");
    }
    *text = t;
    return CR_OK;
}
