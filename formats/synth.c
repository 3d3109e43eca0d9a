/* synth.c — deterministic synthetic models and seeded fine-tunes (see
 * synth.h): the tensor list of a Llama-family model, its config.json, a
 * minimal byte-level BPE tokenizer, and the streaming shard writer.
 */
#include "synth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hash.h"
#include "hfdir.h"
#include "infile.h"
#include "limits.h"
#include "mkversion.h"
#include "jsonw.h"
#include "model.h"
#include "safetensors.h"
#include "shards.h"

#define SYNTH_CHUNK 65536u              /* elements per generated chunk */
#define SYNTH_DELTA_TAG 0x64656c7461ull /* "delta": fine-tune deltas use their own stream */

/* ---- generator ------------------------------------------------------------ */

uint64_t cr_synth_name_hash(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;     /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    return h;
}

float cr_synth_normal(uint64_t seed, uint64_t name_hash, uint64_t index)
{
    uint64_t h = cr_mix64(cr_mix64(seed * 0x9e3779b97f4a7c15ull ^ cr_mix64(name_hash)) + index);
    /* every step is exact in f32, so the value is the same on every
     * compiler and ISA */
    float s = 0.0f;
    for (int k = 0; k < 4; k++) s += ((float)((h >> (16 * k)) & 0xffffu) + 0.5f) * (1.0f / 65536.0f);
    return (s - 2.0f) * 1.7320508f;
}

bool cr_synth_arch_parse(const char *s, cr_synth_arch *out)
{
    if (!strcmp(s, "llama")) *out = CR_SYNTH_LLAMA;
    else if (!strcmp(s, "mistral")) *out = CR_SYNTH_MISTRAL;
    else if (!strcmp(s, "qwen2")) *out = CR_SYNTH_QWEN2;
    else if (!strcmp(s, "qwen3")) *out = CR_SYNTH_QWEN3;
    else return false;
    return true;
}

/* ---- tensor list ----------------------------------------------------------- */

typedef struct synth_tensor {
    char *name;
    cr_dtype dtype;
    uint32_t ndim;
    uint64_t shape[CR_MAX_DIMS];
    uint64_t numel, nbytes;
    float offset, scale;                /* fresh: offset + scale * normal */
    const cr_model_tensor *src;         /* fine-tune: the base tensor */
} synth_tensor;

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const synth_tensor *)a)->name, ((const synth_tensor *)b)->name);
}

static bool add_tensor(cr_vec *v, cr_arena *ar, const char *name, cr_dtype dt, uint64_t d0, uint64_t d1,
                       float offset, float scale)
{
    synth_tensor t = {0};
    t.name = cr_arena_strdup(ar, name);
    t.dtype = dt;
    t.ndim = d1 ? 2 : 1;
    t.shape[0] = d0;
    t.shape[1] = d1;
    t.numel = d1 ? d0 * d1 : d0;
    t.nbytes = t.numel * cr_dtype_size(dt);
    t.offset = offset;
    t.scale = scale;
    return t.name && cr_vec_push(v, &t);
}

static bool fresh_tensors(const cr_synth_opts *o, cr_vec *v, cr_arena *ar)
{
    uint64_t H = o->hidden, I = o->intermediate, hd = o->hidden / o->heads;
    uint64_t q = o->heads * hd, kv = o->kv_heads * hd;
    cr_dtype dt = o->dtype;
    char name[160];
    bool ok = add_tensor(v, ar, "model.embed_tokens.weight", dt, o->vocab, H, 0.0f, 0.02f) &&
              add_tensor(v, ar, "model.norm.weight", dt, H, 0, 1.0f, 0.02f);
    if (!o->tied) ok = ok && add_tensor(v, ar, "lm_head.weight", dt, o->vocab, H, 0.0f, 0.02f);
    for (uint32_t l = 0; ok && l < o->layers; l++) {
        static const struct { const char *suffix; int rows, cols; } mats[] = {
            /* rows/cols: 0 = hidden, 1 = q width, 2 = kv width, 3 = intermediate */
            {"self_attn.q_proj.weight", 1, 0}, {"self_attn.k_proj.weight", 2, 0},
            {"self_attn.v_proj.weight", 2, 0}, {"self_attn.o_proj.weight", 0, 1},
            {"mlp.gate_proj.weight", 3, 0},    {"mlp.up_proj.weight", 3, 0},
            {"mlp.down_proj.weight", 0, 3},
        };
        uint64_t dim[4] = {H, q, kv, I};
        for (size_t m = 0; ok && m < CR_ARRAY_LEN(mats); m++) {
            snprintf(name, sizeof name, "model.layers.%u.%s", l, mats[m].suffix);
            ok = add_tensor(v, ar, name, dt, dim[mats[m].rows], dim[mats[m].cols], 0.0f, 0.02f);
        }
        snprintf(name, sizeof name, "model.layers.%u.input_layernorm.weight", l);
        ok = ok && add_tensor(v, ar, name, dt, H, 0, 1.0f, 0.02f);
        snprintf(name, sizeof name, "model.layers.%u.post_attention_layernorm.weight", l);
        ok = ok && add_tensor(v, ar, name, dt, H, 0, 1.0f, 0.02f);
        if (o->arch == CR_SYNTH_QWEN2) {
            snprintf(name, sizeof name, "model.layers.%u.self_attn.q_proj.bias", l);
            ok = ok && add_tensor(v, ar, name, dt, q, 0, 0.0f, 0.02f);
            snprintf(name, sizeof name, "model.layers.%u.self_attn.k_proj.bias", l);
            ok = ok && add_tensor(v, ar, name, dt, kv, 0, 0.0f, 0.02f);
            snprintf(name, sizeof name, "model.layers.%u.self_attn.v_proj.bias", l);
            ok = ok && add_tensor(v, ar, name, dt, kv, 0, 0.0f, 0.02f);
        }
        if (o->arch == CR_SYNTH_QWEN3) {
            snprintf(name, sizeof name, "model.layers.%u.self_attn.q_norm.weight", l);
            ok = ok && add_tensor(v, ar, name, dt, hd, 0, 1.0f, 0.02f);
            snprintf(name, sizeof name, "model.layers.%u.self_attn.k_norm.weight", l);
            ok = ok && add_tensor(v, ar, name, dt, hd, 0, 1.0f, 0.02f);
        }
    }
    return ok;
}

/* ---- small files ---------------------------------------------------------- */

static cr_status write_file(const cr_allocator *a, const char *dir, const char *name, const char *text,
                            size_t len, cr_error *err)
{
    char *p = cr_path_join(a, dir, name);
    if (!p) return cr_fail(err, CR_ERR_NOMEM, "%s/%s: out of memory", dir, name);
    cr_status st = CR_OK;
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) st = cr_fail_errno(err, errno, "%s: cannot create", p);
    else {
        st = cr_write_at(fd, text, len, 0, p, err);
        if (close(fd) != 0 && st == CR_OK) st = cr_fail_errno(err, errno, "%s: close failed", p);
    }
    cr_free(a, p);
    return st;
}

static cr_status write_sbuf(const cr_allocator *a, const char *dir, const char *name, cr_sbuf *b, cr_error *err)
{
    size_t len;
    char *text = cr_sbuf_take(b, &len);
    if (!text) return cr_fail(err, CR_ERR_NOMEM, "%s/%s: out of memory", dir, name);
    cr_status st = write_file(a, dir, name, text, len, err);
    cr_free(a, text);
    return st;
}

static cr_status copy_file(const cr_allocator *a, const char *from_dir, const char *to_dir, const char *name,
                           cr_error *err)
{
    char *src = cr_path_join(a, from_dir, name);
    if (!src) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    char *text;
    size_t len;
    /* config.json and the tokenizer files: read whole, under the JSON limit */
    cr_status st = cr_file_read(a, src, CR_LIMIT_JSON_BYTES, name, &text, &len, err);
    if (st == CR_OK) st = write_file(a, to_dir, name, text, len, err);
    cr_free(a, text);
    cr_free(a, src);
    return st;
}

static const char *arch_class(cr_synth_arch a)
{
    return a == CR_SYNTH_QWEN3 ? "Qwen3ForCausalLM" : a == CR_SYNTH_QWEN2 ? "Qwen2ForCausalLM"
         : a == CR_SYNTH_MISTRAL ? "MistralForCausalLM" : "LlamaForCausalLM";
}

static const char *arch_type(cr_synth_arch a)
{
    return a == CR_SYNTH_QWEN3 ? "qwen3" : a == CR_SYNTH_QWEN2 ? "qwen2" : a == CR_SYNTH_MISTRAL ? "mistral" : "llama";
}

/* config.json in transformers' layout (sorted keys, indent 2); Qwen3's as
 * its Hub checkpoints have it (transformers 4.x keys) */
static void config_json(cr_sbuf *b, const cr_synth_opts *o)
{
    bool qwen3 = o->arch == CR_SYNTH_QWEN3, qwen = o->arch == CR_SYNTH_QWEN2 || qwen3;
    bool mistral = o->arch == CR_SYNTH_MISTRAL;
    cr_sbuf_printf(b, "{\n  \"architectures\": [\n    \"%s\"\n  ],\n", arch_class(o->arch));
    if ((!qwen && !mistral) || qwen3) cr_sbuf_adds(b, "  \"attention_bias\": false,\n");
    cr_sbuf_adds(b, "  \"attention_dropout\": 0.0,\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n");
    cr_sbuf_printf(b, "  \"head_dim\": %u,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": %u,\n",
                   o->hidden / o->heads, o->hidden);
    cr_sbuf_printf(b, "  \"initializer_range\": 0.02,\n  \"intermediate_size\": %u,\n", o->intermediate);
    if (qwen) cr_sbuf_printf(b, "  \"max_position_embeddings\": 2048,\n  \"max_window_layers\": %u,\n", o->layers);
    else cr_sbuf_adds(b, "  \"max_position_embeddings\": 2048,\n");
    if (!qwen && !mistral) cr_sbuf_adds(b, "  \"mlp_bias\": false,\n");
    cr_sbuf_printf(b, "  \"model_type\": \"%s\",\n  \"num_attention_heads\": %u,\n  \"num_hidden_layers\": %u,\n"
                   "  \"num_key_value_heads\": %u,\n", arch_type(o->arch), o->heads, o->layers, o->kv_heads);
    if (!qwen && !mistral) cr_sbuf_adds(b, "  \"pretraining_tp\": 1,\n");
    cr_sbuf_printf(b, "  \"rms_norm_eps\": %s,\n  \"rope_scaling\": null,\n  \"rope_theta\": %s,\n",
                   qwen ? "1e-06" : "1e-05", qwen ? "1000000.0" : "10000.0");
    if (qwen || mistral) cr_sbuf_adds(b, "  \"sliding_window\": null,\n");
    cr_sbuf_printf(b, "  \"tie_word_embeddings\": %s,\n  \"torch_dtype\": \"%s\",\n  \"use_cache\": true,\n",
                   o->tied ? "true" : "false", cr_dtype_torch_name(o->dtype));
    if (qwen) cr_sbuf_adds(b, "  \"use_sliding_window\": false,\n");
    cr_sbuf_printf(b, "  \"vocab_size\": %u\n}\n", o->vocab);
}

/* GPT-2's byte -> printable code point map (tokenizers byte_level.rs) */
static uint32_t byte_char(unsigned byte)
{
    if ((byte >= '!' && byte <= '~') || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae && byte <= 0xff))
        return byte;
    uint32_t n = 0;
    for (unsigned b = 0; b < byte; b++)
        if (!((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))) n++;
    return 256 + n;
}

static void add_utf8(cr_sbuf *b, uint32_t cp)
{
    char s[4];
    size_t n;
    if (cp < 0x80) { s[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { s[0] = (char)(0xc0 | (cp >> 6)); s[1] = (char)(0x80 | (cp & 0x3f)); n = 2; }
    else { s[0] = (char)(0xe0 | (cp >> 12)); s[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); s[2] = (char)(0x80 | (cp & 0x3f)); n = 3; }
    cr_json_add_string(b, s, n, false);
}

/* A byte-level BPE tokenizer with no merges: ids 0-2 are <unk>, <s>, </s>,
 * then one token per byte (as far as the vocabulary allows), then filler
 * tokens up to vocab_size so every embedding row has a token. */
static void tokenizer_json(cr_sbuf *b, uint32_t vocab)
{
    static const char *const special[3] = {"<unk>", "<s>", "</s>"};
    cr_sbuf_adds(b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
    for (int i = 0; i < 3; i++)
        cr_sbuf_printf(b, "%s\n    {\"id\": %d, \"content\": \"%s\", \"single_word\": false, \"lstrip\": false, "
                       "\"rstrip\": false, \"normalized\": false, \"special\": true}", i ? "," : "", i, special[i]);
    cr_sbuf_adds(b, "\n  ],\n  \"normalizer\": null,\n"
                    "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true},\n"
                    "  \"post_processor\": null,\n"
                    "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n"
                    "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": \"<unk>\",\n"
                    "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n"
                    "    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n    \"vocab\": {");
    for (uint32_t id = 0; id < vocab; id++) {
        cr_sbuf_adds(b, id ? ",\n      " : "\n      ");
        if (id < 3) cr_json_add_string(b, special[id], strlen(special[id]), false);
        else if (id < 3 + 256) add_utf8(b, byte_char(id - 3));
        else cr_sbuf_printf(b, "\"<|extra_%u|>\"", id - 259);
        cr_sbuf_printf(b, ": %u", id);
    }
    cr_sbuf_adds(b, "\n    },\n    \"merges\": []\n  }\n}\n");
}

static cr_status write_aux_files(const cr_allocator *a, const char *dir, const cr_synth_opts *o, cr_error *err)
{
    cr_sbuf b;
    cr_sbuf_init(&b, a);
    config_json(&b, o);
    cr_status st = write_sbuf(a, dir, "config.json", &b, err);
    if (st != CR_OK) return st;
    cr_sbuf_adds(&b, "{\n  \"_from_model_config\": true,\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n");
    if ((st = write_sbuf(a, dir, "generation_config.json", &b, err)) != CR_OK) return st;
    cr_sbuf_adds(&b, "{\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n  \"bos_token\": \"<s>\",\n"
                     "  \"clean_up_tokenization_spaces\": false,\n  \"eos_token\": \"</s>\",\n"
                     "  \"model_max_length\": 2048,\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n"
                     "  \"unk_token\": \"<unk>\"\n}\n");
    if ((st = write_sbuf(a, dir, "tokenizer_config.json", &b, err)) != CR_OK) return st;
    cr_sbuf_adds(&b, "{\n  \"bos_token\": \"<s>\",\n  \"eos_token\": \"</s>\",\n  \"unk_token\": \"<unk>\"\n}\n");
    if ((st = write_sbuf(a, dir, "special_tokens_map.json", &b, err)) != CR_OK) return st;
    tokenizer_json(&b, o->vocab);
    return write_sbuf(a, dir, "tokenizer.json", &b, err);
}

/* ---- streaming tensor writer ------------------------------------------------ */

typedef struct synth_ctx {
    const cr_allocator *alloc;
    const cr_synth_opts *o;
    const cr_model *base;           /* fine-tune mode */
    float *f;                       /* SYNTH_CHUNK floats */
    unsigned char *bytes;           /* SYNTH_CHUNK * 8 bytes */
} synth_ctx;

static cr_status write_tensor(synth_ctx *c, int fd, const char *path, const synth_tensor *t, uint64_t offset,
                              cr_error *err)
{
    const cr_synth_opts *o = c->o;
    unsigned esize = cr_dtype_size(t->dtype);
    const unsigned char *src = t->src ? cr_st_data(&c->base->shards[t->src->shard], t->src->info) : NULL;
    bool delta = t->src && cr_dtype_is_float(t->dtype) && (!o->only || strstr(t->name, o->only));
    uint64_t h = cr_synth_name_hash(t->name);
    for (uint64_t i = 0; i < t->numel; i += SYNTH_CHUNK) {
        if (o->interrupt && *o->interrupt) return cr_fail(err, CR_ERR_INTERRUPTED, "interrupted");
        size_t n = (size_t)CR_MIN((uint64_t)SYNTH_CHUNK, t->numel - i);
        const void *out = c->bytes;
        if (t->src && !delta) {
            out = src + i * esize;              /* copied bit for bit */
        } else if (t->src) {
            cr_convert_to_f32(t->dtype, src + i * esize, c->f, n);
            for (size_t j = 0; j < n; j++)
                c->f[j] += (float)o->delta_scale * cr_synth_normal(o->seed, h ^ SYNTH_DELTA_TAG, i + j);
            cr_convert_from_f32(t->dtype, c->f, c->bytes, n);
        } else {
            for (size_t j = 0; j < n; j++) c->f[j] = t->offset + t->scale * cr_synth_normal(o->seed, h, i + j);
            cr_convert_from_f32(t->dtype, c->f, c->bytes, n);
        }
        cr_status st = cr_write_at(fd, out, n * esize, offset + i * esize, path, err);
        if (st != CR_OK) return st;
        /* the base's pages are read once: drop them so memory stays O(chunk) */
        if (t->src) cr_st_release_bytes(&c->base->shards[t->src->shard], t->src->info, 0, (i + n) * esize);
    }
    return CR_OK;
}

static cr_status write_shard(synth_ctx *c, const char *dir, const char *file, const synth_tensor *ts,
                             const uint32_t *idx, uint32_t n, cr_error *err)
{
    const cr_allocator *a = c->alloc;
    cr_st_entry *e = cr_calloc(a, n ? n : 1, sizeof *e);
    char *path = cr_path_join(a, dir, file);
    uint8_t *header = NULL;
    uint64_t hlen, fsize;
    int fd = -1;
    cr_status st = CR_OK;
    if (!e || !path) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", dir); goto out; }
    for (uint32_t i = 0; i < n; i++) {
        const synth_tensor *t = &ts[idx[i]];
        e[i] = (cr_st_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim};
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
    }
    if ((st = cr_st_layout(a, e, n, NULL, 0, &header, &hlen, &fsize, err)) != CR_OK) goto out;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) { st = cr_fail_errno(err, errno, "%s: cannot create", path); goto out; }
    if ((st = cr_write_at(fd, header, (size_t)hlen, 0, path, err)) != CR_OK) goto out;
    for (uint32_t i = 0; i < n && st == CR_OK; i++)
        st = write_tensor(c, fd, path, &ts[idx[i]], e[i].offset, err);
    if (st == CR_OK && ftruncate(fd, (off_t)fsize) != 0) st = cr_fail_errno(err, errno, "%s: cannot size", path);
out:
    if (fd >= 0 && close(fd) != 0 && st == CR_OK) st = cr_fail_errno(err, errno, "%s: close failed", path);
    cr_free(a, header);
    cr_free(a, path);
    cr_free(a, e);
    return st;
}

static cr_status check_opts(const cr_synth_opts *o, cr_error *err)
{
    if (!o->layers || !o->hidden || !o->intermediate || !o->heads || !o->kv_heads || !o->vocab)
        return cr_fail(err, CR_ERR_ARG, "synth: --layers, --hidden, --intermediate, --heads, --kv-heads and --vocab must be positive");
    if (o->hidden % o->heads)
        return cr_fail(err, CR_ERR_ARG, "synth: --hidden %u is not a multiple of --heads %u", o->hidden, o->heads);
    if (o->heads % o->kv_heads)
        return cr_fail(err, CR_ERR_ARG, "synth: --heads %u is not a multiple of --kv-heads %u", o->heads, o->kv_heads);
    if (o->vocab < 3)
        return cr_fail(err, CR_ERR_ARG, "synth: --vocab must be at least 3 (the special tokens)");
    if (o->dtype != CR_DTYPE_F32 && o->dtype != CR_DTYPE_F16 && o->dtype != CR_DTYPE_BF16)
        return cr_fail(err, CR_ERR_ARG, "synth: dtype must be bfloat16, float16 or float32");
    return CR_OK;
}

cr_status cr_synth_write(const cr_allocator *alloc, const char *dir, const cr_synth_opts *o, cr_error *err)
{
    cr_status st = CR_OK;
    cr_arena ar;
    cr_arena_init(&ar, alloc);
    cr_vec tv;
    cr_vec_init(&tv, alloc, sizeof(synth_tensor));
    cr_model base;
    bool have_base = false;
    cr_shard_plan plan = {0};
    uint64_t *sizes = NULL;
    uint32_t *idx = NULL;
    const char **names = NULL;
    synth_ctx c = {.alloc = alloc, .o = o};

    if (o->from) {
        if ((st = cr_model_open(alloc, o->from, 0, &base, err)) != CR_OK) goto out;
        have_base = true;
        c.base = &base;
        for (uint32_t i = 0; i < base.n_tensors; i++) {
            const cr_st_tensor *info = base.tensors[i].info;
            synth_tensor t = {.name = (char *)info->name, .dtype = info->dtype, .ndim = info->ndim,
                              .numel = info->numel, .nbytes = info->end - info->begin, .src = &base.tensors[i]};
            memcpy(t.shape, info->shape, sizeof t.shape);
            if (!cr_vec_push(&tv, &t)) { st = cr_fail(err, CR_ERR_NOMEM, "synth: out of memory"); goto out; }
        }
    } else {
        if ((st = check_opts(o, err)) != CR_OK) goto out;
        if (!fresh_tensors(o, &tv, &ar)) { st = cr_fail(err, CR_ERR_NOMEM, "synth: out of memory"); goto out; }
    }
    synth_tensor *ts = tv.data;
    uint32_t n = (uint32_t)tv.len;
    /* write order: sorted by name, as mergekit's writes come out */
    qsort(ts, n, sizeof *ts, cmp_tensor_name);

    sizes = cr_calloc(alloc, n ? n : 1, sizeof *sizes);
    idx = cr_calloc(alloc, n ? n : 1, sizeof *idx);
    names = cr_calloc(alloc, n ? n : 1, sizeof *names);
    c.f = cr_calloc(alloc, SYNTH_CHUNK, sizeof *c.f);
    c.bytes = cr_calloc(alloc, SYNTH_CHUNK, 8);
    if (!sizes || !idx || !names || !c.f || !c.bytes) { st = cr_fail(err, CR_ERR_NOMEM, "synth: out of memory"); goto out; }
    for (uint32_t i = 0; i < n; i++) { sizes[i] = ts[i].nbytes; names[i] = ts[i].name; }
    if ((st = cr_shard_plan_init(&plan, alloc, sizes, n, o->shard_size, err)) != CR_OK) goto out;

    for (uint32_t s = 0; s < plan.n_shards && st == CR_OK; s++) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < n; i++)
            if (plan.shard_of[i] == s) idx[k++] = i;
        char file[64];
        cr_shard_file_name(file, sizeof file, s, plan.n_shards);
        st = write_shard(&c, dir, file, ts, idx, k, err);
    }
    if (st != CR_OK) goto out;
    if (plan.n_shards > 1) {
        size_t len;
        char *text = cr_shard_index_json(&plan, names, cr_mk_name(CR_MK_DEFAULT), &len);
        if (!text) { st = cr_fail(err, CR_ERR_NOMEM, "synth: out of memory"); goto out; }
        st = write_file(alloc, dir, "model.safetensors.index.json", text, len, err);
        cr_free(alloc, text);
        if (st != CR_OK) goto out;
    }

    if (have_base) {
        const char *files[16];
        size_t nf = cr_hf_tokenizer_files(o->from, true, files, CR_ARRAY_LEN(files));
        if (base.config) st = copy_file(alloc, o->from, dir, "config.json", err);
        for (size_t i = 0; i < nf && st == CR_OK; i++) st = copy_file(alloc, o->from, dir, files[i], err);
    } else {
        st = write_aux_files(alloc, dir, o, err);
    }
out:
    cr_shard_plan_free(&plan);
    cr_free(alloc, sizes);
    cr_free(alloc, idx);
    cr_free(alloc, names);
    cr_free(alloc, c.f);
    cr_free(alloc, c.bytes);
    cr_vec_free(&tv);
    cr_arena_free(&ar);
    if (have_base) cr_model_close(&base);
    return st;
}
