/* hfdir.c — config.json patching, the tokenizer copy list and the model
 * card (see hfdir.h). config.json is re-printed from a cJSON tree; number
 * literals are carried over verbatim from the donor text (cJSON keeps only
 * doubles, and 10000.0 turning into 10000 could change a config's types). */
#include "hfdir.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jsonw.h"

/* ---- number literals ------------------------------------------------------ */

typedef struct num_lit {
    const cJSON *node;
    const char *text;
} num_lit;

typedef struct num_table {
    num_lit *items;
    size_t n;
} num_table;

/* number tokens of a JSON text in document order (strings skipped) */
static size_t scan_numbers(const char *s, size_t len, cr_arena *ar, const char **out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        char c = s[i];
        if (c == '"') {
            for (i++; i < len && s[i] != '"'; i++)
                if (s[i] == '\\') i++;
            i++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i;
            while (j < len && (strchr("+-.eE", s[j]) || (s[j] >= '0' && s[j] <= '9'))) j++;
            if (n < cap) out[n] = cr_arena_strndup(ar, s + i, j - i);
            n++;
            i = j;
        } else {
            i++;
        }
    }
    return n;
}

static void collect_nodes(const cJSON *item, const cJSON **out, size_t cap, size_t *n)
{
    if (cJSON_IsNumber(item)) {
        if (*n < cap) out[*n] = item;
        (*n)++;
    }
    for (const cJSON *c = (cJSON_IsObject(item) || cJSON_IsArray(item)) ? item->child : NULL; c; c = c->next)
        collect_nodes(c, out, cap, n);
}

static int cmp_lit(const void *a, const void *b)
{
    const cJSON *x = ((const num_lit *)a)->node, *y = ((const num_lit *)b)->node;
    return x < y ? -1 : x > y;
}

static const char *lit_lookup(void *ud, const cJSON *node)
{
    num_table *t = ud;
    num_lit key = {node, NULL};
    num_lit *r = t->items ? bsearch(&key, t->items, t->n, sizeof *t->items, cmp_lit) : NULL;
    /* a literal is used only while the node still holds the value it was
     * parsed with (an edited node is printed from its value) */
    if (!r || strtod(r->text, NULL) != node->valuedouble) return NULL;
    return r->text;
}

/* ---- config.json ---------------------------------------------------------- */

static cJSON *parent_of(cJSON *root, const char *key, const char **leaf)
{
    cJSON *obj = root;
    const char *k = key;
    for (const char *dot; (dot = strchr(k, '.'));) {
        cJSON *c = NULL;
        for (cJSON *x = obj->child; x; x = x->next)
            if (x->string && strlen(x->string) == (size_t)(dot - k) && !memcmp(x->string, k, (size_t)(dot - k)))
                c = x;
        if (!cJSON_IsObject(c)) return NULL;
        obj = c;
        k = dot + 1;
    }
    *leaf = k;
    return obj;
}

static bool set_number(cJSON *obj, const char *key, double v)
{
    /* ReplaceItemInObject (unlike ViaPointer) gives the new item its key */
    if (cJSON_GetObjectItemCaseSensitive(obj, key)) {
        cJSON *n = cJSON_CreateNumber(v);
        return n && cJSON_ReplaceItemInObjectCaseSensitive(obj, key, n);
    }
    return cJSON_AddNumberToObject(obj, key, v) != NULL;
}

static bool set_dtype(cJSON *obj, const char *name)
{
    cJSON *s = cJSON_CreateString(name);
    if (!s) return false;
    if (cJSON_GetObjectItemCaseSensitive(obj, "torch_dtype")) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(obj, "torch_dtype", s)) return false;
    } else if (!cJSON_AddItemToObject(obj, "torch_dtype", s)) {
        return false;
    }
    if (cJSON_GetObjectItemCaseSensitive(obj, "dtype")) {
        cJSON *d = cJSON_CreateString(name);
        if (!d || !cJSON_ReplaceItemInObjectCaseSensitive(obj, "dtype", d)) return false;
    }
    return true;
}

/* transformers 5's one key: `dtype` = name, else the donor's `dtype`, else
 * its `torch_dtype` (as PretrainedConfig reads them); in the place of the
 * donor's `dtype`, else of its `torch_dtype`, else last; no key at all
 * when there is no value. */
static bool set_dtype_only(cJSON *obj, const char *name)
{
    cJSON *d = cJSON_GetObjectItemCaseSensitive(obj, "dtype");
    cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "torch_dtype");
    if (!name && !d && !t) return true;
    cJSON *v = name ? cJSON_CreateString(name) : cJSON_Duplicate(d ? d : t, true);
    if (!v) return false;
    if (d) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(obj, "dtype", v)) return false;
        if (t) cJSON_DeleteItemFromObjectCaseSensitive(obj, "torch_dtype");
        return true;
    }
    if (!t) return cJSON_AddItemToObject(obj, "dtype", v) != 0;
    /* in torch_dtype's place: added (so that cJSON gives it its key),
     * detached, and put where torch_dtype was (which this deletes) */
    if (!cJSON_AddItemToObject(obj, "dtype", v)) return false;
    cJSON_DetachItemViaPointer(obj, v);
    if (!cJSON_ReplaceItemViaPointer(obj, t, v)) { cJSON_Delete(v); return false; }
    return true;
}

/* layer_types of length `old` becomes length `n`: truncated, or extended by
 * repeating from its start (the pattern of sliding/full attention repeats
 * with a fixed period in every config seen). */
static bool resize_layer_types(cJSON *obj, long long old, long long n)
{
    cJSON *lt = cJSON_GetObjectItemCaseSensitive(obj, "layer_types");
    if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != old || old <= 0) return true;
    while (cJSON_GetArraySize(lt) > n) cJSON_DeleteItemFromArray(lt, cJSON_GetArraySize(lt) - 1);
    for (long long i = old; i < n; i++) {
        cJSON *src = cJSON_GetArrayItem(lt, (int)(i % old));
        cJSON *dup = cJSON_Duplicate(src, true);
        if (!dup) return false;
        cJSON_AddItemToArray(lt, dup);
    }
    return true;
}

cr_status cr_hf_patch_config(const cr_allocator *alloc, const char *donor_text, size_t len,
                             const char *donor_name, const cr_hf_config_edit *edit,
                             char **out, size_t *out_len, cr_error *err)
{
    *out = NULL;
    cr_arena ar;
    cr_arena_init(&ar, alloc);
    num_table tab = {0};
    cr_status st = CR_OK;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(donor_text, len, &end, false);
    if (!cJSON_IsObject(root)) {
        st = cr_fail(err, CR_ERR_FORMAT, "%s: not a JSON object", donor_name);
        goto out;
    }
    /* text after the object is refused, as cr_model_open refuses it: it
     * would also put number literals out of step with the nodes, and a
     * number like 5e400 would then be written back as Infinity, which no
     * JSON reader here accepts (found by fuzz_config_json) */
    for (const char *q = end; q < donor_text + len; q++)
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            st = cr_fail(err, CR_ERR_FORMAT, "%s: not valid JSON (text after the object at byte %zu)",
                         donor_name, (size_t)(q - donor_text));
            goto out;
        }
    /* pair number nodes with their literals before any edit */
    size_t n_nodes = 0;
    collect_nodes(root, NULL, 0, &n_nodes);
    const char **lits = cr_arena_alloc(&ar, sizeof *lits * (n_nodes + 1));
    const cJSON **nodes = cr_arena_alloc(&ar, sizeof *nodes * (n_nodes + 1));
    tab.items = cr_arena_alloc(&ar, sizeof *tab.items * (n_nodes + 1));
    if (!lits || !nodes || !tab.items) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", donor_name); goto out; }
    size_t n_lits = scan_numbers(donor_text, len, &ar, lits, n_nodes);
    size_t k = 0;
    collect_nodes(root, nodes, n_nodes, &k);
    if (n_lits == n_nodes) {
        for (size_t i = 0; i < n_nodes; i++) {
            if (!lits[i]) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", donor_name); goto out; }
            tab.items[i] = (num_lit){nodes[i], lits[i]};
        }
        tab.n = n_nodes;
        qsort(tab.items, tab.n, sizeof *tab.items, cmp_lit);
    }

    bool ok = true;
    if (edit && edit->dtype_key_only) ok = set_dtype_only(root, edit->dtype_name);
    else if (edit && edit->dtype_name) ok = set_dtype(root, edit->dtype_name);
    if (ok && edit && edit->layer_key) {
        const char *leaf;
        cJSON *obj = parent_of(root, edit->layer_key, &leaf);
        if (!obj) {
            st = cr_fail(err, CR_ERR_FORMAT, "%s: has no object for the layer-count key '%s'", donor_name, edit->layer_key);
            goto out;
        }
        cJSON *cur = cJSON_GetObjectItemCaseSensitive(obj, leaf);
        /* a count that is not a sane integer (1e20, -3, 1.5) is "unknown":
         * converting it to long long would be undefined (found by fuzz_config_json) */
        double oldd = cJSON_IsNumber(cur) ? cur->valuedouble : -1;
        long long old = oldd >= 0 && oldd <= 1e9 && oldd == (double)(long long)oldd ? (long long)oldd : -1;
        ok = set_number(obj, leaf, (double)edit->n_layers);
        if (ok && old != edit->n_layers) {
            ok = resize_layer_types(obj, old, edit->n_layers);
            cJSON *mw = cJSON_GetObjectItemCaseSensitive(obj, "max_window_layers");
            if (ok && cJSON_IsNumber(mw) && mw->valuedouble > (double)edit->n_layers)
                ok = set_number(obj, "max_window_layers", (double)edit->n_layers);
        }
        if (ok && obj != root && edit->dtype_key_only &&
            (cJSON_GetObjectItemCaseSensitive(obj, "torch_dtype") || cJSON_GetObjectItemCaseSensitive(obj, "dtype")))
            ok = set_dtype_only(obj, edit->dtype_name);
        else if (ok && obj != root && edit->dtype_name && cJSON_GetObjectItemCaseSensitive(obj, "torch_dtype"))
            ok = set_dtype(obj, edit->dtype_name);
    }
    if (ok && edit && edit->vocab_key) {
        const char *leaf;
        cJSON *obj = parent_of(root, edit->vocab_key, &leaf);
        if (obj) ok = set_number(obj, leaf, (double)edit->vocab_size);
    }
    if (!ok) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", donor_name); goto out; }

    cr_sbuf b;
    cr_sbuf_init(&b, alloc);
    cr_json_add_pretty(&b, root, 0, lit_lookup, &tab);
    cr_sbuf_add(&b, "\n", 1);
    *out = cr_sbuf_take(&b, out_len);
    if (!*out) st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", donor_name);
out:
    cJSON_Delete(root);
    cr_arena_free(&ar);
    return st;
}

/* ---- tokenizer files -------------------------------------------------------- */

static bool exists_in(const char *dir, const char *name)
{
    char buf[4096];
    size_t dl = strlen(dir);
    if (dl + strlen(name) + 2 > sizeof buf) return false;
    memcpy(buf, dir, dl);
    buf[dl] = '/';
    strcpy(buf + dl + 1, name);
    struct stat sb;
    return stat(buf, &sb) == 0 && S_ISREG(sb.st_mode);
}

size_t cr_hf_tokenizer_files(const char *donor_dir, bool all, const char **out, size_t cap)
{
    static const char *const files[] = {
        "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer.model",
        "added_tokens.json", "merges.txt",
        /* mergekit 0.1.5 only */
        "chat_template.jinja", "generation_config.json", "chat_template.json", "video_preprocessor_config.json",
    };
    if (!exists_in(donor_dir, "tokenizer_config.json") ||
        !(exists_in(donor_dir, "tokenizer.json") || exists_in(donor_dir, "tokenizer.model")))
        return 0;
    size_t n = 0, n_files = all ? CR_ARRAY_LEN(files) : 6;
    for (size_t i = 0; i < n_files && n < cap; i++)
        if (exists_in(donor_dir, files[i])) out[n++] = files[i];
    return n;
}

const char *cr_hf_resaved_tokenizer_config(const char *donor_dir, const char *model_type)
{
    /* model types transformers 5.25 loads as TokenizersBackend (no entry
     * of their own in TOKENIZER_MAPPING); others rebuild the tokenizer in
     * their own class (Qwen2Tokenizer, GemmaTokenizer, ...) and write more;
     * each checked by tests/compat/check_tokenizer_resave.py */
    static const char *const plain[] = { "llama", "mistral", "mixtral", "olmo2", "stablelm",
                                         "deepseek_v3", "granite", "exaone", "llama4" };
    /* `is_local` for a directory; `local_files_only` as when HF_HUB_OFFLINE
     * is unset (mergekit run offline writes true); VERY_LARGE_INTEGER */
    static const char config[] = "{\n"
                                 "  \"backend\": \"tokenizers\",\n"
                                 "  \"is_local\": true,\n"
                                 "  \"local_files_only\": false,\n"
                                 "  \"model_max_length\": 1000000000000000019884624838656,\n"
                                 "  \"tokenizer_class\": \"TokenizersBackend\"\n"
                                 "}\n";
    if (!model_type || !exists_in(donor_dir, "tokenizer.json") || exists_in(donor_dir, "tokenizer_config.json") ||
        exists_in(donor_dir, "tokenizer.model"))
        return NULL;
    for (size_t i = 0; i < CR_ARRAY_LEN(plain); i++)
        if (!strcmp(model_type, plain[i])) return config;
    return NULL;
}

/* ---- model card --------------------------------------------------------------- */

bool cr_hf_is_hub_id(const char *path)
{
    if (!path || !*path || path[0] == '/' || path[0] == '~') return false;
    int slashes = 0;
    for (const char *p = path; *p; p++) slashes += *p == '/';
    if (slashes > 1) return false;
    struct stat sb;
    return stat(path, &sb) != 0;
}

/* a YAML scalar as PyYAML would accept it back: plain when obviously safe */
static void yaml_scalar(cr_sbuf *b, const char *s)
{
    bool plain = *s != 0;
    for (const char *p = s; *p && plain; p++)
        plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                *p == '_' || *p == '.' || *p == '/' || *p == '-';
    if (plain && (s[0] == '-' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9'))) plain = false;
    static const char *const reserved[] = {"true", "false", "yes", "no", "on", "off", "null", "True", "False",
                                           "Yes", "No", "On", "Off", "Null", "NULL", "TRUE", "FALSE", "y", "n"};
    for (size_t i = 0; plain && i < CR_ARRAY_LEN(reserved); i++)
        if (!strcmp(s, reserved[i])) plain = false;
    if (plain) { cr_sbuf_adds(b, s); return; }
    cr_sbuf_add(b, "'", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '\'') cr_sbuf_add(b, "''", 2);
        else cr_sbuf_add(b, p, 1);
    }
    cr_sbuf_add(b, "'", 1);
}

/* "[id](https://huggingface.co/id)" for Hub ids, the path otherwise */
static void link(cr_sbuf *b, const char *s, size_t n)
{
    char tmp[2048];
    if (n >= sizeof tmp) n = sizeof tmp - 1;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    if (cr_hf_is_hub_id(tmp)) cr_sbuf_printf(b, "[%s](https://huggingface.co/%s)", tmp, tmp);
    else cr_sbuf_adds(b, tmp);
}

static void model_md(cr_sbuf *b, const char *ref)
{
    const char *plus = strchr(ref, '+');
    if (!plus) { link(b, ref, strlen(ref)); return; }
    link(b, ref, (size_t)(plus - ref));
    cr_sbuf_adds(b, " + ");
    link(b, plus + 1, strlen(plus + 1));
}

static bool seen_before(const char *const *models, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (!strcmp(models[j], models[i])) return true;
    return false;
}

char *cr_hf_model_card(const cr_allocator *alloc, const cr_hf_card *c, size_t *len)
{
    cr_sbuf b;
    cr_sbuf_init(&b, alloc);
    /* front matter: PyYAML's dump with sorted keys */
    cr_sbuf_adds(&b, "---\nbase_model:");
    size_t n_hub = 0;
    for (size_t i = 0; i < c->n_models; i++) {
        if (seen_before(c->models, i)) continue;
        const char *ref = c->models[i];
        const char *plus = strchr(ref, '+');
        char part[2048];
        for (int side = 0; side < (plus ? 2 : 1); side++) {
            const char *s = side ? plus + 1 : ref;
            size_t n = side || !plus ? strlen(s) : (size_t)(plus - ref);
            if (n >= sizeof part) n = sizeof part - 1;
            memcpy(part, s, n);
            part[n] = 0;
            if (!cr_hf_is_hub_id(part)) continue;
            cr_sbuf_adds(&b, "\n- ");
            yaml_scalar(&b, part);
            n_hub++;
        }
    }
    if (!n_hub) cr_sbuf_adds(&b, " []");
    cr_sbuf_adds(&b, "\nlibrary_name: transformers\ntags:\n- merge\n- crucible\n- mergekit\n\n---\n");

    /* title: the output directory's basename */
    const char *path = c->out_path ? c->out_path : "";
    size_t end = strlen(path);
    while (end > 1 && path[end - 1] == '/') end--;
    size_t start = end;
    while (start > 0 && path[start - 1] != '/') start--;
    cr_sbuf_adds(&b, "# ");
    if (end > start && !(end - start == 1 && path[start] == '/')) cr_sbuf_add(&b, path + start, end - start);
    else cr_sbuf_adds(&b, "Untitled Model (1)");
    cr_sbuf_adds(&b, "\n\nThis is a merge of pre-trained language models created with crucible, "
                     "a compiler for [mergekit](https://github.com/arcee-ai/mergekit) merge recipes");
    if (c->mergekit_version)
        cr_sbuf_printf(&b, ", computing as mergekit %s does (`--mergekit-version %s`)", c->mergekit_version,
                       c->mergekit_version);
    cr_sbuf_adds(&b, ".\n\n");
    if (c->provenance && *c->provenance) cr_sbuf_printf(&b, "%s\n\n", c->provenance);
    cr_sbuf_adds(&b, "## Merge Details\n### Merge Method\n\nThis model was merged using the ");
    const char *pretty = c->method_pretty && *c->method_pretty ? c->method_pretty : c->method;
    if (c->method_url && *c->method_url) cr_sbuf_printf(&b, "[%s](%s)", pretty, c->method_url);
    else cr_sbuf_adds(&b, pretty);
    cr_sbuf_adds(&b, " merge method");
    const char *base = c->base_not_named ? NULL : c->base_model;
    if (base) {
        cr_sbuf_adds(&b, " using ");
        model_md(&b, base);
        cr_sbuf_adds(&b, " as a base");
    }
    cr_sbuf_adds(&b, ".\n\n### Models Merged\n\nThe following models were included in the merge:\n");
    bool first = true;
    for (size_t i = 0; i < c->n_models; i++) {
        if (seen_before(c->models, i) || (base && !strcmp(c->models[i], base))) continue;
        cr_sbuf_adds(&b, first ? "* " : "\n* ");
        model_md(&b, c->models[i]);
        first = false;
    }
    cr_sbuf_adds(&b, "\n\n### Configuration\n\nThe following YAML configuration was used to produce this model:\n\n```yaml\n");
    cr_sbuf_adds(&b, c->config_yaml ? c->config_yaml : "");
    cr_sbuf_adds(&b, "\n```\n");
    return cr_sbuf_take(&b, len);
}
