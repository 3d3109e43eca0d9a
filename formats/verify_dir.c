/* verify_dir.c — `crucible verify`'s checks of a model directory
 * (verify_dir.h).
 *
 * The check goes on after a problem so that one run names everything that
 * is wrong (a flipped byte in one shard and a missing other shard are two
 * lines). Follow-on noise is avoided where it would mislead: total_size is
 * compared only when every shard opened, since a missing shard already
 * explains the difference.
 */
#include "verify_dir.h"
#include "infile.h"
#include "limits.h"
#include "outhash.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct wm_entry {
    const char *name;           /* owned by the cJSON tree */
    uint32_t shard;             /* index into the shard list */
} wm_entry;

typedef struct shard_info {
    const char *file;           /* owned by the cJSON tree */
    char *path;
    bool present, opened;
    cr_st_file st;
    uint32_t n_mapped;          /* weight_map entries naming it */
    const char *first_tensor;   /* one of them, for messages */
    bool hash_recorded;
    uint64_t hash;
} shard_info;

typedef struct vctx {
    const cr_allocator *a;
    const char *dir;
    cr_verify_report *rep;
    bool nomem;
} vctx;

bool cr_verify_report_add(cr_verify_report *r, const cr_allocator *a, const char *fmt, ...)
{
    r->n_problems_total++;
    if (r->n_problems >= CR_VERIFY_MAX_PROBLEMS) return true;
    if (!r->problems && !(r->problems = cr_calloc(a, CR_VERIFY_MAX_PROBLEMS, sizeof *r->problems))) return false;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? cr_malloc(a, (size_t)n + 1) : NULL;
    if (!s) return false;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    r->problems[r->n_problems++] = s;
    return true;
}

#define problem(c, ...) \
    do { if (!cr_verify_report_add((c)->rep, (c)->a, __VA_ARGS__)) (c)->nomem = true; } while (0)

/* 1 regular file, 0 absent, -1 something else */
static int file_kind(const char *path)
{
    struct stat sb;
    if (stat(path, &sb)) return 0;
    return S_ISREG(sb.st_mode) ? 1 : -1;
}

static int cmp_wm(const void *x, const void *y)
{
    return strcmp(((const wm_entry *)x)->name, ((const wm_entry *)y)->name);
}

static const wm_entry *wm_find(const wm_entry *wm, uint32_t n, const char *name)
{
    wm_entry key = { name, 0 };
    return bsearch(&key, wm, n, sizeof *wm, cmp_wm);
}

static bool plain_file_name(const char *s)
{
    return *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

/* Open and check one shard: present, valid safetensors, every tensor in it
 * mapped to it, every tensor mapped to it present. */
static void check_shard(vctx *c, shard_info *sh, uint32_t si, const wm_entry *wm, uint32_t n_wm,
                        const shard_info *shards, const char *index_path)
{
    int kind = file_kind(sh->path);
    if (kind == 0 && !sh->n_mapped) {
        problem(c, "%s: missing shard (named in %s's metadata.%s)", sh->path, index_path, CR_INDEX_HASH_KEY);
        return;
    }
    if (kind == 0) {
        problem(c, "%s: missing shard (the index maps %u tensor%s to it, e.g. '%s')", sh->path, sh->n_mapped,
                sh->n_mapped == 1 ? "" : "s", sh->first_tensor);
        return;
    }
    if (kind < 0) { problem(c, "%s: not a regular file", sh->path); return; }
    sh->present = true;
    cr_error e = {0};
    cr_status s = cr_st_open(c->a, sh->path, 0, &sh->st, &e);
    if (s == CR_ERR_NOMEM) { c->nomem = true; return; }
    if (s) { problem(c, "%s", e.msg); return; }
    sh->opened = true;
    c->rep->n_tensors += sh->st.n_tensors;
    for (uint32_t i = 0; i < sh->st.n_tensors; i++) {
        const cr_st_tensor *t = &sh->st.tensors[i];
        c->rep->total_bytes += t->end - t->begin;
        if (!wm) continue;
        const wm_entry *w = wm_find(wm, n_wm, t->name);
        if (!w) problem(c, "%s: tensor '%s' is missing from the index (%s)", sh->path, t->name, index_path);
        else if (w->shard != si)
            problem(c, "%s: tensor '%s' is also in %s, where the index maps it", sh->path, t->name,
                    shards[w->shard].file);
    }
}

static void check_hashes(vctx *c, shard_info *shards, uint32_t n_shards, const cJSON *hashes,
                         const char *index_path)
{
    if (!cJSON_IsObject(hashes)) {
        problem(c, "%s: metadata.%s is not an object of shard file -> hash", index_path, CR_INDEX_HASH_KEY);
        return;
    }
    for (const cJSON *h = hashes->child; h; h = h->next) {
        uint32_t s;
        for (s = 0; s < n_shards; s++) if (!strcmp(shards[s].file, h->string)) break;
        uint64_t v;
        if (s == n_shards) continue;   /* not a plain file name: reported by check_index */
        if (!cJSON_IsString(h) || !cr_hash_parse_hex(h->valuestring, &v))
            problem(c, "%s: metadata.%s['%s'] is not 16 hex digits", index_path, CR_INDEX_HASH_KEY, h->string);
        else if (shards[s].hash_recorded)
            problem(c, "%s: metadata.%s lists '%s' twice", index_path, CR_INDEX_HASH_KEY, h->string);
        else { shards[s].hash_recorded = true; shards[s].hash = v; }
    }
    for (uint32_t s = 0; s < n_shards; s++) {
        shard_info *sh = &shards[s];
        if (!sh->hash_recorded) {
            problem(c, "%s: no hash recorded for it in %s (the index records hashes for other shards)", sh->path,
                    index_path);
            continue;
        }
        if (!sh->present) continue;   /* already reported missing */
        uint64_t got;
        cr_error e = {0};
        cr_status st = cr_hash_path(c->a, sh->path, &got, NULL, &e);
        if (st == CR_ERR_NOMEM) { c->nomem = true; return; }
        if (st) { problem(c, "%s", e.msg); continue; }
        if (got != sh->hash) {
            char want_hex[17], got_hex[17];
            cr_hash_hex(sh->hash, want_hex);
            cr_hash_hex(got, got_hex);
            problem(c, "%s: content hash mismatch: the index records xxh64 %s, the file hashes to %s "
                    "(the file changed after it was written)", sh->path, want_hex, got_hex);
        } else {
            c->rep->n_hash_ok++;
        }
    }
}

static void check_index(vctx *c, const char *index_path)
{
    cJSON *root = NULL;
    wm_entry *wm = NULL;
    shard_info *shards = NULL;
    uint32_t n_wm = 0, n_shards = 0;
    cr_error err = { 0 };
    cr_status st = cr_json_read_object(c->a, index_path, CR_LIMIT_JSON_BYTES, &root, &err);
    if (st == CR_ERR_NOMEM) c->nomem = true;
    if (st) { problem(c, "%s", err.msg); goto out; }
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if (!cJSON_IsObject(map)) { problem(c, "%s: no \"weight_map\" object", index_path); goto out; }
    int n_items = cJSON_GetArraySize(map);
    if ((unsigned)n_items > CR_LIMIT_MODEL_TENSORS) {
        problem(c, "%s: weight_map has %d entries (limit %u)", index_path, n_items, CR_LIMIT_MODEL_TENSORS);
        goto out;
    }
    wm = cr_calloc(c->a, n_items ? (size_t)n_items : 1, sizeof *wm);
    const cJSON *hashes = cJSON_GetObjectItemCaseSensitive(meta, CR_INDEX_HASH_KEY);
    int n_hashes = cJSON_IsObject(hashes) ? cJSON_GetArraySize(hashes) : 0;
    if ((unsigned)n_hashes > CR_LIMIT_MODEL_SHARDS) {
        problem(c, "%s: metadata.%s has %d entries (limit %u)", index_path, CR_INDEX_HASH_KEY, n_hashes,
                CR_LIMIT_MODEL_SHARDS);
        goto out;
    }
    uint32_t cap = (uint32_t)n_items + (uint32_t)n_hashes;
    shards = cr_calloc(c->a, cap ? cap : 1, sizeof *shards);
    if (!wm || !shards) { c->nomem = true; goto out; }
    for (const cJSON *e = map->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !plain_file_name(e->valuestring)) {
            problem(c, "%s: weight_map entry '%s' does not name a file in the directory", index_path, e->string);
            continue;
        }
        uint32_t s;
        for (s = 0; s < n_shards; s++) if (!strcmp(shards[s].file, e->valuestring)) break;
        if (s == n_shards) {
            if (n_shards >= CR_LIMIT_MODEL_SHARDS) {
                problem(c, "%s: more than %u shard files", index_path, CR_LIMIT_MODEL_SHARDS);
                goto out;
            }
            shards[s].file = e->valuestring;
            shards[s].first_tensor = e->string;
            if (!(shards[s].path = cr_path_join(c->a, c->dir, e->valuestring))) { c->nomem = true; goto out; }
            n_shards++;
        }
        shards[s].n_mapped++;
        wm[n_wm++] = (wm_entry){ e->string, s };
    }
    qsort(wm, n_wm, sizeof *wm, cmp_wm);
    for (uint32_t i = 1; i < n_wm; i++)
        if (!strcmp(wm[i - 1].name, wm[i].name))
            problem(c, "%s: tensor '%s' appears twice in weight_map", index_path, wm[i].name);
    /* a shard with a hash but no weight_map entry (an index that lost
     * every tensor of a shard) is still opened, so its tensors are named */
    if (cJSON_IsObject(hashes)) {
        for (const cJSON *h = hashes->child; h; h = h->next) {
            uint32_t s;
            for (s = 0; s < n_shards; s++) if (!strcmp(shards[s].file, h->string)) break;
            if (s < n_shards) continue;
            if (!plain_file_name(h->string) || n_shards >= cap) {
                problem(c, "%s: metadata.%s names '%s', which is not a shard of this index", index_path,
                        CR_INDEX_HASH_KEY, h->string);
                continue;
            }
            problem(c, "%s: metadata.%s records a hash for %s, but weight_map maps no tensor to it", index_path,
                    CR_INDEX_HASH_KEY, h->string);
            shards[s].file = h->string;
            shards[s].first_tensor = "";
            if (!(shards[s].path = cr_path_join(c->a, c->dir, h->string))) { c->nomem = true; goto out; }
            n_shards++;
        }
    }
    c->rep->n_shards = n_shards;
    bool all_opened = true;
    for (uint32_t s = 0; s < n_shards && !c->nomem; s++) {
        check_shard(c, &shards[s], s, wm, n_wm, shards, index_path);
        all_opened &= shards[s].opened;
    }
    /* every mapped tensor is where the index says */
    for (uint32_t i = 0; i < n_wm && !c->nomem; i++) {
        const shard_info *sh = &shards[wm[i].shard];
        if (sh->opened && !cr_st_find(&sh->st, wm[i].name))
            problem(c, "%s: tensor '%s' is mapped to %s, which does not hold it", index_path, wm[i].name, sh->file);
    }
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(meta, "total_size");
    if (!cJSON_IsObject(meta)) problem(c, "%s: no \"metadata\" object", index_path);
    else if (!cJSON_IsNumber(total)) problem(c, "%s: metadata has no numeric \"total_size\"", index_path);
    else if (all_opened && total->valuedouble != (double)c->rep->total_bytes)
        problem(c, "%s: metadata.total_size is %.0f but the shards' tensors hold %llu bytes", index_path,
                total->valuedouble, (unsigned long long)c->rep->total_bytes);
    if (hashes && !c->nomem) {
        c->rep->hashes_recorded = true;
        check_hashes(c, shards, n_shards, hashes, index_path);
    }
out:
    if (shards) for (uint32_t s = 0; s < n_shards; s++) {
        if (shards[s].opened) cr_st_close(&shards[s].st);
        cr_free(c->a, shards[s].path);
    }
    cr_free(c->a, shards);
    cr_free(c->a, wm);
    cJSON_Delete(root);
}

cr_status cr_verify_dir(const cr_allocator *alloc, const char *dir, cr_verify_report *rep, cr_error *err)
{
    memset(rep, 0, sizeof *rep);
    rep->alloc = alloc;
    vctx c = { alloc, dir, rep, false };
    struct stat sb;
    char *index = cr_path_join(alloc, dir, CR_INDEX_FILE), *single = cr_path_join(alloc, dir, "model.safetensors");
    if (!index || !single) c.nomem = true;
    else if (stat(dir, &sb)) problem(&c, "%s: %s", dir, strerror(errno));
    else if (!S_ISDIR(sb.st_mode)) problem(&c, "%s: not a directory", dir);
    else if (file_kind(index) == 1) {
        /* crucible writes an index even for one shard (outhash.h); loaders
         * that read model.safetensors first see the same tensors */
        rep->has_index = true;
        check_index(&c, index);
    } else if (file_kind(single) == 1) {
        shard_info sh = { .file = "model.safetensors", .path = single, .n_mapped = 0, .first_tensor = "" };
        rep->n_shards = 1;
        check_shard(&c, &sh, 0, NULL, 0, NULL, NULL);
        if (sh.opened) cr_st_close(&sh.st);
    } else {
        problem(&c, "%s: no model weights (neither %s nor model.safetensors)", dir, CR_INDEX_FILE);
    }
    cr_free(alloc, index);
    cr_free(alloc, single);
    if (c.nomem) return cr_fail(err, CR_ERR_NOMEM, "out of memory verifying %s", dir);
    return CR_OK;
}

void cr_verify_report_free(cr_verify_report *rep)
{
    if (!rep->alloc) return;
    for (uint32_t i = 0; i < rep->n_problems; i++) cr_free(rep->alloc, rep->problems[i]);
    cr_free(rep->alloc, rep->problems);
    memset(rep, 0, sizeof *rep);
}
