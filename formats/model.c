/* model.c — opening a Hugging Face model directory: finding its weights the
 * way mergekit does (model.safetensors, then model.safetensors.index.json;
 * then pytorch_model.bin.index.json, then pytorch_model.bin, read in place
 * by torchbin.h),
 * validating the shard index, parsing config.json, and a name-sorted table
 * of every tensor across shards for binary search.
 */
#include "model.h"
#include "infile.h"
#include "torchbin.h"
#include "limits.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool file_in(const cr_allocator *a, const char *dir, const char *name)
{
    char *p = cr_path_join(a, dir, name);
    bool r = p && is_file(p);
    cr_free(a, p);
    return r;
}

/* The path to open for `path` (buf holds it when fs maps it); NULL when
 * fs knows no such file. Without fs, path itself. */
static const char *fs_path(const cr_model_fs *fs, const char *path, char *buf, size_t cap)
{
    return fs ? fs->map(fs->ud, path, buf, cap) : path;
}

static bool is_file_fs(const cr_model_fs *fs, const char *path)
{
    char buf[64];
    return fs ? fs_path(fs, path, buf, sizeof buf) != NULL : is_file(path);
}

static cr_status parse_json_file(const cr_allocator *a, const char *path, cJSON **out, cr_error *err)
{
    return cr_json_read_object(a, path, CR_LIMIT_JSON_BYTES, out, err);
}

void cr_model_close(cr_model *m)
{
    if (!m || !m->alloc) return;
    for (uint32_t i = 0; i < m->n_shards; i++) cr_st_close(&m->shards[i]);
    cr_free(m->alloc, m->shards);
    cr_free(m->alloc, m->tensors);
    cJSON_Delete(m->config);
    cr_free(m->alloc, m->dir);
    memset(m, 0, sizeof *m);
}

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const cr_model_tensor *)a)->info->name, ((const cr_model_tensor *)b)->info->name);
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A shard by its name, as mergekit chooses: *.safetensors, else a
 * PyTorch zip. */
static cr_status open_shard(const cr_allocator *a, const cr_model_fs *fs, const char *path, unsigned flags,
                            cr_st_file *out, cr_error *err)
{
    /* the kind by the file's name; the bytes where fs keeps them */
    char buf[64];
    const char *real = fs_path(fs, path, buf, sizeof buf);
    if (!real) return cr_fail(err, CR_ERR_IO, "%s: cannot open: no such file", path);
    size_t n = strlen(path);
    if (n >= 12 && !strcmp(path + n - 12, ".safetensors")) return cr_st_open(a, real, flags, out, err);
    return cr_torchbin_open(a, real, flags, out, err);
}

/* model.safetensors.index.json: every mapped file opens, every mapped
 * tensor is in its shard, no key twice. Tensors a shard holds beyond what
 * the map lists are not part of the model, as in mergekit (count_unlisted
 * counts them for a warning). */
static cr_status open_index(cr_model *m, const char *index_path, unsigned flags, const cr_model_fs *fs,
                            cr_error *err)
{
    const cr_allocator *a = m->alloc;
    cJSON *idx = NULL;
    const char **names = NULL, **files = NULL;
    char buf[64];
    cr_status st = parse_json_file(a, fs_path(fs, index_path, buf, sizeof buf), &idx, err);
    if (st != CR_OK) return st;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
    if (!cJSON_IsObject(wm)) {
        st = cr_fail(err, CR_ERR_FORMAT, "%s: missing \"weight_map\" object", index_path);
        goto out;
    }
    int n_items = cJSON_GetArraySize(wm);
    if ((unsigned)n_items > CR_LIMIT_MODEL_TENSORS) {
        st = cr_fail(err, CR_ERR_LIMIT, "%s: weight_map has %d entries (limit %u)", index_path, n_items,
                     CR_LIMIT_MODEL_TENSORS);
        goto out;
    }
    uint32_t n = (uint32_t)n_items;
    names = cr_calloc(a, n ? n : 1, sizeof *names);
    files = cr_calloc(a, n ? n : 1, sizeof *files);
    m->shards = cr_calloc(a, n ? n : 1, sizeof *m->shards);
    m->tensors = cr_calloc(a, n ? n : 1, sizeof *m->tensors);
    if (!names || !files || !m->shards || !m->tensors) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", index_path); goto out; }
    uint32_t i = 0;
    for (const cJSON *e = wm->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e)) {
            st = cr_fail(err, CR_ERR_FORMAT, "%s: weight_map entry '%s' is not a file name", index_path, e->string);
            goto out;
        }
        const char *fn = e->valuestring;
        if (!*fn || strchr(fn, '/') || !strcmp(fn, ".") || !strcmp(fn, "..")) {
            st = cr_fail(err, CR_ERR_FORMAT, "%s: weight_map entry '%s' names '%s', which is not a file in the model directory",
                         index_path, e->string, fn);
            goto out;
        }
        names[i] = e->string;
    }
    qsort(names, n, sizeof *names, cmp_str_ptr);
    for (i = 1; i < n; i++) {
        if (!strcmp(names[i - 1], names[i])) {
            st = cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s' appears twice in weight_map", index_path, names[i]);
            goto out;
        }
    }
    /* shards in order of first mention */
    i = 0;
    for (const cJSON *e = wm->child; e; e = e->next, i++) {
        uint32_t s;
        for (s = 0; s < m->n_shards; s++)
            if (!strcmp(files[s], e->valuestring)) break;
        if (s == m->n_shards) {
            if (s >= CR_LIMIT_MODEL_SHARDS) {
                st = cr_fail(err, CR_ERR_LIMIT, "%s: more than %u shard files", index_path, CR_LIMIT_MODEL_SHARDS);
                goto out;
            }
            files[s] = e->valuestring;
            char *p = cr_path_join(a, m->dir, e->valuestring);
            if (!p) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", index_path); goto out; }
            if (!is_file_fs(fs, p)) {
                st = cr_fail(err, CR_ERR_FORMAT, "%s: shard '%s' (holding tensor '%s') does not exist",
                             index_path, e->valuestring, e->string);
                cr_free(a, p);
                goto out;
            }
            st = open_shard(a, fs, p, flags, &m->shards[s], err);
            cr_free(a, p);
            if (st != CR_OK) goto out;
            m->n_shards++;
        }
        const cr_st_tensor *t = cr_st_find(&m->shards[s], e->string);
        if (!t) {
            st = cr_fail(err, CR_ERR_FORMAT, "%s: tensor '%s' is mapped to '%s', but that shard has no such tensor",
                         index_path, e->string, e->valuestring);
            goto out;
        }
        m->tensors[i].info = t;
        m->tensors[i].shard = s;
        m->n_tensors++;
    }
out:
    cr_free(a, names);
    cr_free(a, files);
    cJSON_Delete(idx);
    return st;
}

/* n_unlisted / first_unlisted: a shard holds more tensors than the index
 * maps to it. Only then are its tensors looked up one by one. */
static cr_status count_unlisted(cr_model *m, cr_error *err)
{
    uint32_t *listed = cr_calloc(m->alloc, m->n_shards ? m->n_shards : 1, sizeof *listed);
    if (!listed) return cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", m->dir);
    for (uint32_t i = 0; i < m->n_tensors; i++) listed[m->tensors[i].shard]++;
    for (uint32_t s = 0; s < m->n_shards; s++) {
        const cr_st_file *f = &m->shards[s];
        if (listed[s] == f->n_tensors) continue;
        for (uint32_t k = 0; k < f->n_tensors; k++) {
            const cr_model_tensor *t = cr_model_find(m, f->tensors[k].name);
            if (t && t->info == &f->tensors[k]) continue;
            if (!m->first_unlisted) {
                m->first_unlisted = f->tensors[k].name;
                m->first_unlisted_shard = s;
            }
            m->n_unlisted++;
        }
    }
    cr_free(m->alloc, listed);
    return CR_OK;
}

const char *cr_model_unlisted_shard(const cr_model *m, const char *name)
{
    if (!m->n_unlisted) return NULL;
    for (uint32_t s = 0; s < m->n_shards; s++) {
        const cr_st_tensor *t = cr_st_find(&m->shards[s], name);
        const cr_model_tensor *mt = t ? cr_model_find(m, name) : NULL;
        if (t && (!mt || mt->info != t)) return m->shards[s].path;
    }
    return NULL;
}

/* a model of one weights file */
static cr_status open_single(cr_model *out, const cr_model_fs *fs, const char *path, unsigned flags, cr_error *err)
{
    const cr_allocator *alloc = out->alloc;
    out->shards = cr_calloc(alloc, 1, sizeof *out->shards);
    if (!out->shards) return cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", out->dir);
    cr_status st = open_shard(alloc, fs, path, flags, &out->shards[0], err);
    if (st != CR_OK) return st;
    out->n_shards = 1;
    const cr_st_file *f = &out->shards[0];
    out->tensors = cr_calloc(alloc, f->n_tensors ? f->n_tensors : 1, sizeof *out->tensors);
    if (!out->tensors) return cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", out->dir);
    for (uint32_t i = 0; i < f->n_tensors; i++) out->tensors[i].info = &f->tensors[i];
    out->n_tensors = f->n_tensors;
    return CR_OK;
}

cr_status cr_model_open(const cr_allocator *alloc, const char *dir, unsigned flags,
                        cr_model *out, cr_error *err)
{
    return cr_model_open_fs(alloc, dir, flags, NULL, out, err);
}

cr_status cr_model_open_fs(const cr_allocator *alloc, const char *dir, unsigned flags, const cr_model_fs *fs,
                           cr_model *out, cr_error *err)
{
    memset(out, 0, sizeof *out);
    out->alloc = alloc;
    out->dir = cr_strdup(alloc, dir);
    if (!out->dir) return cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", dir);
    cr_status st = CR_OK;
    char *p = NULL;
    char buf[64];
    struct stat sb;
    if (fs) { /* directories are names only */ }
    else if (stat(dir, &sb) != 0) { st = cr_fail_errno(err, errno, "%s: cannot open model directory", dir); goto fail; }
    else if (!S_ISDIR(sb.st_mode)) { st = cr_fail(err, CR_ERR_FORMAT, "%s: not a directory (a model is a directory holding config.json and *.safetensors)", dir); goto fail; }

    p = cr_path_join(alloc, dir, "config.json");
    if (!p) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", dir); goto fail; }
    if (is_file_fs(fs, p) && (st = parse_json_file(alloc, fs_path(fs, p, buf, sizeof buf), &out->config, err)) != CR_OK)
        goto fail;
    cr_free(alloc, p);

    p = cr_path_join(alloc, dir, "model.safetensors");
    if (!p) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", dir); goto fail; }
    if (is_file_fs(fs, p)) {
        if ((st = open_single(out, fs, p, flags, err)) != CR_OK) goto fail;
    } else {
        cr_free(alloc, p);
        p = cr_path_join(alloc, dir, "model.safetensors.index.json");
        if (!p) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", dir); goto fail; }
        if (is_file_fs(fs, p)) {
            out->index_name = "model.safetensors.index.json";
            if ((st = open_index(out, p, flags, fs, err)) != CR_OK) goto fail;
        } else if (!fs && file_in(alloc, dir, "pytorch_model.bin.index.json")) {
            /* mergekit: the index before the single file */
            cr_free(alloc, p);
            p = cr_path_join(alloc, dir, "pytorch_model.bin.index.json");
            if (!p) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", dir); goto fail; }
            out->index_name = "pytorch_model.bin.index.json";
            if ((st = open_index(out, p, flags, fs, err)) != CR_OK) goto fail;
        } else if (!fs && file_in(alloc, dir, "pytorch_model.bin")) {
            cr_free(alloc, p);
            p = cr_path_join(alloc, dir, "pytorch_model.bin");
            if (!p) { st = cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", dir); goto fail; }
            if ((st = open_single(out, NULL, p, flags, err)) != CR_OK) goto fail;
        } else {
            st = cr_fail(err, CR_ERR_FORMAT,
                         "%s: no model weights found (looked for model.safetensors, model.safetensors.index.json, "
                         "pytorch_model.bin.index.json and pytorch_model.bin)", dir);
            goto fail;
        }
    }
    cr_free(alloc, p);
    p = NULL;
    qsort(out->tensors, out->n_tensors, sizeof *out->tensors, cmp_tensor);
    for (uint32_t i = 0; i < out->n_tensors; i++)
        out->total_bytes += out->tensors[i].info->end - out->tensors[i].info->begin;
    if ((st = count_unlisted(out, err)) != CR_OK) goto fail;
    return CR_OK;
fail:
    cr_free(alloc, p);
    cr_model_close(out);
    return st;
}

const cr_model_tensor *cr_model_find(const cr_model *m, const char *name)
{
    uint32_t lo = 0, hi = m->n_tensors;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->tensors[mid].info->name, name);
        if (c == 0) return &m->tensors[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

/* Walk "a.b.c" through nested objects. A key that itself contains dots is
 * tried whole first, so {"a.b": 1} is found too. */
static const cJSON *config_lookup(const cJSON *obj, const char *key)
{
    if (!cJSON_IsObject(obj)) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v) return v;
    for (const char *dot = strchr(key, '.'); dot; dot = strchr(dot + 1, '.')) {
        for (const cJSON *c = obj->child; c; c = c->next) {
            size_t n = (size_t)(dot - key);
            if (c->string && strlen(c->string) == n && !memcmp(c->string, key, n)) {
                const cJSON *r = config_lookup(c, dot + 1);
                if (r) return r;
            }
        }
    }
    return NULL;
}

bool cr_model_config_int(const cr_model *m, const char *key, long long *out)
{
    const cJSON *v = config_lookup(m->config, key);
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    /* range first: converting an out-of-range double is undefined (found by fuzz_config_json) */
    if (!(d <= 9007199254740992.0 && d >= -9007199254740992.0) || d != (double)(long long)d) return false;
    *out = (long long)d;
    return true;
}

const char *cr_model_config_str(const cr_model *m, const char *key)
{
    const cJSON *v = config_lookup(m->config, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
