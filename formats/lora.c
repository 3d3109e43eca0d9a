/* lora.c — a PEFT LoRA adapter directory: its config, what crucible refuses
 * in it, and the pairing of its tensors with the base weights (lora.h).
 *
 * The rules are PEFT 0.21.2's, the release mergekit 0.1.5 merges adapters
 * with (spec/lora.md): tensor names carry the prefix "base_model.model."
 * and no adapter name; a Linear's pair is MODULE.lora_A.weight /
 * MODULE.lora_B.weight, an Embedding's MODULE.lora_embedding_A / _B; a
 * MODULE.base_layer.X tensor (saved embedding layers) and every other
 * non-LoRA tensor (modules_to_save) is loaded over the base model's tensor
 * of the same name before merging.
 */
#include "lora.h"
#include "infile.h"
#include "limits.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PREFIX "base_model.model."

static bool ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

bool cr_lora_pattern_match(const char *key, const char *module)
{
    size_t n = strlen(module), m = strlen(key);
    if (m > n || strcmp(module + n - m, key)) return false;
    return m == n || module[n - m - 1] == '.';
}

/* A config value that turns on something crucible does not apply: true
 * booleans, non-empty strings/arrays/objects and non-zero numbers. */
static bool is_set(const cJSON *v)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return false;
    if (cJSON_IsNumber(v)) return v->valuedouble != 0;
    if (cJSON_IsString(v)) return v->valuestring[0] != 0;
    if (cJSON_IsArray(v) || cJSON_IsObject(v)) return cJSON_GetArraySize(v) > 0;
    return true;
}

/* Pattern keys are regular expressions in PEFT; crucible matches literal
 * module-name suffixes ('.' taken literally) and refuses the rest. */
static cr_status check_patterns(const cJSON *pat, const char *what, const char *path, cr_error *err)
{
    if (!pat || cJSON_IsNull(pat)) return CR_OK;
    if (!cJSON_IsObject(pat)) return cr_fail(err, CR_ERR_FORMAT, "%s: %s is not an object", path, what);
    const cJSON *e;
    cJSON_ArrayForEach(e, pat) {
        if (!cJSON_IsNumber(e) || !(e->valuedouble > 0))
            return cr_fail(err, CR_ERR_FORMAT, "%s: %s['%s'] is not a positive number", path, what, e->string);
        for (const char *c = e->string; *c; c++)
            if (!(*c == '.' || *c == '_' || *c == '-' || (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
                  (*c >= 'A' && *c <= 'Z')))
                return cr_fail(err, CR_ERR_UNSUPPORTED,
                               "%s: %s key '%s' is a regular expression; crucible matches module-name suffixes only",
                               path, what, e->string);
    }
    return CR_OK;
}

/* PEFT's get_pattern_key: the first key (in file order) that matches */
static const cJSON *pattern_for(const cJSON *pat, const char *module)
{
    const cJSON *e;
    if (!pat || !cJSON_IsObject(pat)) return NULL;
    cJSON_ArrayForEach(e, pat) if (cr_lora_pattern_match(e->string, module)) return e;
    return NULL;
}

static cr_status read_config(cr_lora *l, const char *path, cJSON **cfg, cr_error *err)
{
    cr_status st = cr_json_read_object(l->arena.alloc, path, CR_LIMIT_JSON_BYTES, cfg, err);
    if (st) return st;
    const cJSON *j = *cfg;
    const cJSON *type = cJSON_GetObjectItem(j, "peft_type");
    if (!cJSON_IsString(type))
        return cr_fail(err, CR_ERR_FORMAT, "%s: no \"peft_type\" (not a PEFT adapter config)", path);
    if (strcmp(type->valuestring, "LORA"))
        return cr_fail(err, CR_ERR_UNSUPPORTED,
                       "%s: a PEFT %s adapter; crucible applies plain LoRA adapters only (peft_type LORA)",
                       path, type->valuestring);
    /* LoRA variants whose merge is not W + scale * B A */
    static const struct { const char *key, *what; } refused[] = {
        { "use_dora", "DoRA (use_dora)" },
        { "lora_bias", "LoRA biases (lora_bias)" },
        { "target_parameters", "LoRA on parameters (target_parameters)" },
        { "layer_replication", "layer_replication" },
        { "use_qalora", "QALoRA (use_qalora)" },
        { "trainable_token_indices", "trainable tokens (trainable_token_indices)" },
        { "alora_invocation_tokens", "activated LoRA (alora_invocation_tokens)" },
        { "arrow_config", "Arrow routing (arrow_config)" },
        { "use_bdlora", "BD-LoRA (use_bdlora)" },
        { "megatron_config", "Megatron parallel layers (megatron_config)" },
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (is_set(cJSON_GetObjectItem(j, refused[i].key)))
            return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: %s is not supported; crucible applies plain LoRA only",
                           path, refused[i].what);
    const cJSON *r = cJSON_GetObjectItem(j, "r"), *alpha = cJSON_GetObjectItem(j, "lora_alpha");
    if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble != floor(r->valuedouble))
        return cr_fail(err, CR_ERR_FORMAT, "%s: \"r\" is not a positive integer", path);
    if (!cJSON_IsNumber(alpha) || !isfinite(alpha->valuedouble))
        return cr_fail(err, CR_ERR_FORMAT, "%s: \"lora_alpha\" is not a number", path);
    l->r = (uint64_t)r->valuedouble;
    l->lora_alpha = alpha->valuedouble;
    l->use_rslora = cJSON_IsTrue(cJSON_GetObjectItem(j, "use_rslora"));
    l->fan_in_fan_out = cJSON_IsTrue(cJSON_GetObjectItem(j, "fan_in_fan_out"));
    if ((st = check_patterns(cJSON_GetObjectItem(j, "rank_pattern"), "rank_pattern", path, err))) return st;
    return check_patterns(cJSON_GetObjectItem(j, "alpha_pattern"), "alpha_pattern", path, err);
}

/* the kind of an adapter tensor and the module it belongs to */
enum { T_A, T_B, T_EMB_A, T_EMB_B, T_REPLACE };

static int classify(cr_arena *ar, const char *name, const char **module)
{
    static const struct { const char *suffix; int kind; } sfx[] = {
        { ".lora_A.weight", T_A }, { ".lora_B.weight", T_B },
        { ".lora_embedding_A", T_EMB_A }, { ".lora_embedding_B", T_EMB_B },
    };
    const char *s = strncmp(name, PREFIX, strlen(PREFIX)) ? name : name + strlen(PREFIX);
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++)
        if (ends_with(s, sfx[i].suffix)) {
            *module = cr_arena_strndup(ar, s, strlen(s) - strlen(sfx[i].suffix));
            return sfx[i].kind;
        }
    *module = s;
    return T_REPLACE;
}

static int cmp_target(const void *x, const void *y)
{
    return strcmp(((const cr_lora_target *)x)->weight, ((const cr_lora_target *)y)->weight);
}

static int cmp_replace(const void *x, const void *y)
{
    return strcmp(((const cr_lora_replace *)x)->weight, ((const cr_lora_replace *)y)->weight);
}

static cr_lora_target *target_for(cr_lora *l, const char *weight, bool emb, uint32_t *cap)
{
    for (uint32_t i = 0; i < l->n_targets; i++)
        if (!strcmp(l->targets[i].weight, weight)) return &l->targets[i];
    if (l->n_targets == *cap) {
        uint32_t nc = *cap ? 2 * *cap : 16;
        cr_lora_target *t = cr_arena_alloc(&l->arena, nc * sizeof *t);
        if (!t) return NULL;
        if (l->n_targets) memcpy(t, l->targets, l->n_targets * sizeof *t);
        l->targets = t;
        *cap = nc;
    }
    cr_lora_target *t = &l->targets[l->n_targets++];
    memset(t, 0, sizeof *t);
    t->weight = weight;
    t->embedding = emb;
    return t;
}

static cr_status pair_tensors(cr_lora *l, const cJSON *cfg, cr_error *err)
{
    const cr_st_file *f = &l->st;
    uint32_t cap = 0;
    l->replaced = cr_arena_alloc(&l->arena, (f->n_tensors + 1) * sizeof *l->replaced);
    if (!l->replaced) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < f->n_tensors; i++) {
        const char *name = f->tensors[i].name, *module = NULL;
        int kind = classify(&l->arena, name, &module);
        if (!module) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
        if (kind == T_REPLACE) {
            if (strstr(module, "lora_"))
                return cr_fail(err, CR_ERR_UNSUPPORTED, "%s: tensor '%s' is not a LoRA A/B pair crucible knows",
                               l->file, name);
            /* MODULE.base_layer.X is loaded into MODULE.X */
            const char *bl = strstr(module, ".base_layer.");
            const char *w = bl ? cr_arena_printf(&l->arena, "%.*s%s", (int)(bl - module), module,
                                                 bl + strlen(".base_layer"))
                               : module;
            if (!w) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
            l->replaced[l->n_replaced++] = (cr_lora_replace){ .weight = w, .src = name };
            continue;
        }
        bool emb = kind == T_EMB_A || kind == T_EMB_B;
        const char *w = cr_arena_printf(&l->arena, "%s.weight", module);
        cr_lora_target *t = w ? target_for(l, w, emb, &cap) : NULL;
        if (!t) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
        if (t->embedding != emb)
            return cr_fail(err, CR_ERR_FORMAT, "%s: module '%s' has both Linear and Embedding LoRA tensors",
                           l->file, module);
        const char **slot = kind == T_A || kind == T_EMB_A ? &t->a : &t->b;
        *slot = name;
    }
    const cJSON *rp = cJSON_GetObjectItem(cfg, "rank_pattern"), *ap = cJSON_GetObjectItem(cfg, "alpha_pattern");
    for (uint32_t i = 0; i < l->n_targets; i++) {
        cr_lora_target *t = &l->targets[i];
        if (!t->a || !t->b)
            return cr_fail(err, CR_ERR_FORMAT, "%s: the LoRA of '%s' has no %s tensor", l->file, t->weight,
                           t->a ? "B" : "A");
        const cr_st_tensor *a = cr_st_find(&l->st, t->a), *b = cr_st_find(&l->st, t->b);
        if (a->ndim != 2 || b->ndim != 2 || a->shape[0] != b->shape[1])
            return cr_fail(err, CR_ERR_FORMAT,
                           "%s: '%s' and '%s' are not r x in and out x r matrices of one rank r", l->file, t->a, t->b);
        if (!cr_dtype_is_float(a->dtype) || !cr_dtype_is_float(b->dtype))
            return cr_fail(err, CR_ERR_FORMAT, "%s: '%s' / '%s' are not floating point", l->file, t->a, t->b);
        t->rank = a->shape[0];
        size_t ml = strlen(t->weight) - strlen(".weight");
        char module[CR_LIMIT_NAME];
        if (ml >= sizeof module) return cr_fail(err, CR_ERR_LIMIT, "%s: tensor name '%s' is too long", l->file, t->a);
        memcpy(module, t->weight, ml);
        module[ml] = 0;
        const cJSON *pr = pattern_for(rp, module), *pa = pattern_for(ap, module);
        uint64_t r = pr ? (uint64_t)pr->valuedouble : l->r;
        if (r != t->rank)
            return cr_fail(err, CR_ERR_FORMAT, "%s: '%s' has rank %llu, the config says r = %llu%s", l->file, t->a,
                           (unsigned long long)t->rank, (unsigned long long)r, pr ? " (rank_pattern)" : "");
        t->alpha = pa ? pa->valuedouble : l->lora_alpha;
        /* LoraLayer.update_layer: lora_alpha / math.sqrt(r) or lora_alpha / r, in Python floats */
        t->scale = l->use_rslora ? t->alpha / sqrt((double)r) : t->alpha / (double)r;
    }
    if (l->n_targets) qsort(l->targets, l->n_targets, sizeof *l->targets, cmp_target);
    if (l->n_replaced) qsort(l->replaced, l->n_replaced, sizeof *l->replaced, cmp_replace);
    for (uint32_t i = 0; i + 1 < l->n_replaced; i++)
        if (!strcmp(l->replaced[i].weight, l->replaced[i + 1].weight))
            return cr_fail(err, CR_ERR_FORMAT, "%s: '%s' and '%s' both replace '%s'", l->file, l->replaced[i].src,
                           l->replaced[i + 1].src, l->replaced[i].weight);
    return CR_OK;
}

static bool file_exists(const cr_allocator *a, const char *dir, const char *name)
{
    char *p = cr_path_join(a, dir, name);
    struct stat sb;
    bool r = p && stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
    cr_free(a, p);
    return r;
}

cr_status cr_lora_open(const cr_allocator *alloc, const char *dir, cr_lora *out, cr_error *err)
{
    memset(out, 0, sizeof *out);
    cr_arena_init(&out->arena, alloc);
    cJSON *cfg = NULL;
    cr_status st = CR_OK;
    char *cpath = cr_path_join(alloc, dir, "adapter_config.json");
    out->dir = cr_arena_strdup(&out->arena, dir);
    out->file = cr_arena_printf(&out->arena, "%s/adapter_model.safetensors", dir);
    if (!cpath || !out->dir || !out->file) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto done; }
    if (!file_exists(alloc, dir, "adapter_config.json")) {
        st = cr_fail(err, CR_ERR_FORMAT, "%s: no adapter_config.json (not a PEFT adapter directory)", dir);
        goto done;
    }
    if ((st = read_config(out, cpath, &cfg, err))) goto done;
    if (!file_exists(alloc, dir, "adapter_model.safetensors")) {
        st = file_exists(alloc, dir, "adapter_model.bin")
                 ? cr_fail(err, CR_ERR_UNSUPPORTED,
                           "%s: adapter_model.bin (a PyTorch pickle) is not read yet; save the adapter with "
                           "safe_serialization=True (adapter_model.safetensors)", dir)
                 : cr_fail(err, CR_ERR_FORMAT, "%s: no adapter_model.safetensors", dir);
        goto done;
    }
    if ((st = cr_st_open(alloc, out->file, CR_ST_HEADER_ONLY, &out->st, err))) goto done;
    st = pair_tensors(out, cfg, err);
    if (st) cr_st_close(&out->st);
done:
    cJSON_Delete(cfg);
    cr_free(alloc, cpath);
    if (st) cr_arena_free(&out->arena);
    return st;
}

void cr_lora_close(cr_lora *l)
{
    cr_st_close(&l->st);
    cr_arena_free(&l->arena);
    memset(l, 0, sizeof *l);
}

const cr_lora_target *cr_lora_find_target(const cr_lora *l, const char *weight)
{
    cr_lora_target key = { .weight = weight };
    return l->n_targets ? bsearch(&key, l->targets, l->n_targets, sizeof key, cmp_target) : NULL;
}

const cr_lora_replace *cr_lora_find_replace(const cr_lora *l, const char *weight)
{
    cr_lora_replace key = { .weight = weight };
    return l->n_replaced ? bsearch(&key, l->replaced, l->n_replaced, sizeof key, cmp_replace) : NULL;
}
