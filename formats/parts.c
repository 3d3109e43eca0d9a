/* parts.c — part manifests, publishing a part, checking and assembling the
 * parts of a partitioned run (parts.h, spec/parts.md).
 *
 * Every file crucible puts in OUT goes through a temporary name of its own
 * (NAME.crucible-tmp-PID, or the part's cr_outdir) and one rename, so a
 * reader, or a killed process, never leaves half a file under a final
 * name; a re-run meets only whole files, which it compares by content.
 */
#include "parts.h"
#include "infile.h"
#include "io.h"
#include "jsonw.h"
#include "limits.h"
#include "outdir.h"
#include "outguard.h"
#include "outhash.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *cr_parts_dir_of(const cr_allocator *a, const char *out, uint32_t part, uint32_t n_parts)
{
    int len = snprintf(NULL, 0, "%s/%s/part-%u-of-%u", out, CR_PARTS_DIR, part, n_parts);
    char *p = len > 0 ? cr_malloc(a, (size_t)len + 1) : NULL;
    if (p) snprintf(p, (size_t)len + 1, "%s/%s/part-%u-of-%u", out, CR_PARTS_DIR, part, n_parts);
    return p;
}

bool cr_parts_present(const char *out)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", out, CR_PARTS_DIR);
    return !stat(path, &st) && S_ISDIR(st.st_mode);
}

static int mkdir_p(const char *path)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) && errno != EEXIST) return -1;
        *s = '/';
    }
    return mkdir(p, 0755) && errno != EEXIST ? -1 : 0;
}

cr_status cr_parts_begin(const cr_allocator *alloc, const char *out, uint32_t part, uint32_t n_parts,
                         const cr_input_paths *inputs, const cr_io *io, cr_outdir *od, cr_error *err)
{
    if (!out || !*out) return cr_fail(err, CR_ERR_ARG, "the output directory name is empty");
    cr_status s = cr_outguard_check(inputs, out, "output directory", err);
    if (s) return s;
    struct stat st;
    if (!stat(out, &st) && !S_ISDIR(st.st_mode)) return cr_fail(err, CR_ERR_ARG, "%s exists and is not a directory", out);
    char parts[PATH_MAX];
    snprintf(parts, sizeof parts, "%s/%s", out, CR_PARTS_DIR);
    if (mkdir_p(parts)) return cr_fail_errno(err, errno, "cannot create %s", parts);
    char *dir = cr_parts_dir_of(alloc, out, part, n_parts);
    if (!dir) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    /* the part's own directory is crucible's: a previous run of the same
     * part is replaced at the commit */
    cr_outdir_options oo = { .force = true, .io = io, .inputs = NULL };
    s = cr_outdir_begin(alloc, dir, &oo, od, err);
    cr_free(alloc, dir);
    return s;
}

/* ---- manifests ---------------------------------------------------------- */

static void add_files(cJSON *arr, const cr_part_file *f, uint32_t n, bool with_part)
{
    for (uint32_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", f[i].file);
        cJSON_AddNumberToObject(o, "size", (double)f[i].size);
        if (with_part) cJSON_AddNumberToObject(o, "part", f[i].part);
        if (f[i].hashed) {
            char hex[17];
            cr_hash_hex(f[i].hash, hex);
            cJSON_AddStringToObject(o, "xxh64", hex);
        }
        cJSON_AddItemToArray(arr, o);
    }
}

static char *manifest_text(const cr_allocator *a, const cr_part_manifest *m)
{
    cJSON *root = cJSON_CreateObject();
    char hex[17];
    cr_hash_hex(m->program, hex);
    cJSON_AddNumberToObject(root, "crucible_parts", 1);
    cJSON_AddNumberToObject(root, "part", m->part);
    cJSON_AddNumberToObject(root, "parts", m->n_parts);
    cJSON_AddStringToObject(root, "program", hex);
    cJSON_AddStringToObject(root, "recipe", m->recipe ? m->recipe : "");
    cJSON_AddStringToObject(root, "crucible", m->tool_version ? m->tool_version : "");
    add_files(cJSON_AddArrayToObject(root, "shards"), m->shards, m->n_shards, true);
    add_files(cJSON_AddArrayToObject(root, "aux"), m->aux, m->n_aux, false);
    cr_sbuf b;
    cr_sbuf_init(&b, a);
    cr_json_add_pretty(&b, root, 0, NULL, NULL);
    cr_sbuf_adds(&b, "\n");
    cJSON_Delete(root);
    return cr_sbuf_take(&b, NULL);
}

/* A loaded manifest: the cJSON tree owns the strings. */
typedef struct loaded {
    cJSON *root;
    cr_part_manifest m;
} loaded;

static bool get_u64(const cJSON *o, const char *key, uint64_t *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 9007199254740992.0) return false;
    *v = (uint64_t)x->valuedouble;
    return true;
}

static bool read_files(const cr_allocator *a, const cJSON *arr, cr_part_file **out, uint32_t *n, bool with_part)
{
    *out = NULL;
    *n = 0;
    if (!cJSON_IsArray(arr)) return false;
    int cnt = cJSON_GetArraySize(arr);
    if (cnt < 0 || (unsigned)cnt > CR_LIMIT_MODEL_SHARDS + 1024u) return false;
    cr_part_file *f = cr_calloc(a, (size_t)cnt + 1, sizeof *f);
    if (!f) return false;
    uint32_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "file");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(e, "xxh64");
        uint64_t part = 0;
        if (!cJSON_IsString(name) || !*name->valuestring || strchr(name->valuestring, '/') ||
            !strcmp(name->valuestring, ".") || !strcmp(name->valuestring, "..") ||
            !get_u64(e, "size", &f[i].size) || (with_part && !get_u64(e, "part", &part))) {
            cr_free(a, f);
            return false;
        }
        f[i].file = name->valuestring;
        f[i].part = (uint32_t)part;
        if (h) {
            if (!cJSON_IsString(h) || !cr_hash_parse_hex(h->valuestring, &f[i].hash)) { cr_free(a, f); return false; }
            f[i].hashed = true;
        }
    }
    *out = f;
    *n = i;
    return true;
}

static void loaded_free(const cr_allocator *a, loaded *l)
{
    cr_free(a, l->m.shards);
    cr_free(a, l->m.aux);
    cJSON_Delete(l->root);
    memset(l, 0, sizeof *l);
}

/* Read DIR/manifest.json. Errors: FORMAT naming the file, IO, NOMEM. */
static cr_status manifest_load(const cr_allocator *a, const char *dir, loaded *l, cr_error *err)
{
    memset(l, 0, sizeof *l);
    char *path = cr_path_join(a, dir, CR_PARTS_MANIFEST);
    if (!path) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    cr_status s = cr_json_read_object(a, path, CR_LIMIT_JSON_BYTES, &l->root, err);
    if (!s) {
        uint64_t part, parts, ver;
        const cJSON *prog = cJSON_GetObjectItemCaseSensitive(l->root, "program");
        const cJSON *rec = cJSON_GetObjectItemCaseSensitive(l->root, "recipe");
        const cJSON *tool = cJSON_GetObjectItemCaseSensitive(l->root, "crucible");
        if (!get_u64(l->root, "crucible_parts", &ver) || ver != 1 || !get_u64(l->root, "part", &part) ||
            !get_u64(l->root, "parts", &parts) || !part || part > parts || parts > CR_LIMIT_SHARDS ||
            !cJSON_IsString(prog) || !cr_hash_parse_hex(prog->valuestring, &l->m.program) ||
            !read_files(a, cJSON_GetObjectItemCaseSensitive(l->root, "shards"), &l->m.shards, &l->m.n_shards, true) ||
            !read_files(a, cJSON_GetObjectItemCaseSensitive(l->root, "aux"), &l->m.aux, &l->m.n_aux, false)) {
            s = cr_fail(err, CR_ERR_FORMAT, "%s: not a part manifest crucible writes", path);
        } else {
            l->m.part = (uint32_t)part;
            l->m.n_parts = (uint32_t)parts;
            l->m.recipe = cJSON_IsString(rec) ? rec->valuestring : "";
            l->m.tool_version = cJSON_IsString(tool) ? tool->valuestring : "";
        }
    }
    if (s) loaded_free(a, l);
    cr_free(a, path);
    return s;
}

/* ---- writing files ------------------------------------------------------ */

static int write_all(int fd, const void *buf, size_t n)
{
    const char *b = buf;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return w < 0 ? errno : EIO;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* path written with data, fsynced (O_EXCL: never over an existing file) */
static cr_status write_new(const char *path, const void *data, size_t len, cr_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return cr_fail_errno(err, errno, "cannot create %s", path);
    int e = write_all(fd, data, len);
    if (!e && fsync(fd)) e = errno;
    if (close(fd) && !e) e = errno;
    if (e) { unlink(path); return cr_fail_errno(err, e, "cannot write %s", path); }
    return CR_OK;
}

static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return 0;
    int e = fsync(fd) && errno != EINVAL ? errno : 0;
    close(fd);
    return e;
}

/* ---- publishing a part -------------------------------------------------- */

static bool listed(const loaded *old, const char *file)
{
    if (!old->root) return false;
    for (uint32_t i = 0; i < old->m.n_shards; i++)
        if (old->m.shards[i].hashed && !strcmp(old->m.shards[i].file, file)) return true;
    return false;
}

cr_status cr_parts_publish(const cr_allocator *a, const char *out, cr_outdir *od, const cr_part_manifest *m,
                           bool force, cr_error *err)
{
    /* the files the previous run of this part wrote (its manifest) are
     * crucible's and may be replaced */
    loaded old = {0};
    cr_error ignore;
    if (manifest_load(a, od->final_path, &old, &ignore)) memset(&old, 0, sizeof old);
    cr_status s = CR_OK;
    for (uint32_t i = 0; i < m->n_shards && !s; i++) {
        const cr_part_file *f = &m->shards[i];
        if (f->part != m->part) continue;
        char *src = cr_outdir_path(od, f->file), *dst = cr_path_join(a, out, f->file);
        if (!src || !dst) s = cr_fail(err, CR_ERR_NOMEM, "out of memory");
        struct stat st;
        if (!s && !lstat(dst, &st)) {
            uint64_t h = 0, size = 0;
            cr_error e;
            bool same = S_ISREG(st.st_mode) && !cr_hash_path(a, dst, &h, &size, &e) && size == f->size && h == f->hash;
            if (same) {
                unlink(src);   /* the same bytes are in place already (a re-run) */
            } else if (!S_ISREG(st.st_mode)) {
                s = cr_fail(err, CR_ERR_ARG, "%s exists and is not a regular file; not replacing it", dst);
            } else if (!force && !listed(&old, f->file)) {
                s = cr_fail(err, CR_ERR_ARG, "%s exists with other bytes than part %u of %u computed, and no "
                            "manifest of this part lists it (crucible did not write it): remove it or use --force",
                            dst, m->part, m->n_parts);
            } else if (rename(src, dst)) {
                s = cr_fail_errno(err, errno, "cannot rename %s to %s", src, dst);
            }
        } else if (!s && rename(src, dst)) {
            s = cr_fail_errno(err, errno, "cannot rename %s to %s", src, dst);
        }
        cr_free(a, src);
        cr_free(a, dst);
    }
    loaded_free(a, &old);
    if (s) return s;
    int e = sync_dir(out);
    if (e) return cr_fail_errno(err, e, "cannot sync %s", out);
    char *text = manifest_text(a, m);
    char *path = cr_outdir_path(od, CR_PARTS_MANIFEST);
    if (!text || !path) s = cr_fail(err, CR_ERR_NOMEM, "out of memory");
    else s = write_new(path, text, strlen(text), err);
    cr_free(a, text);
    cr_free(a, path);
    if (!s) s = cr_outdir_commit(od, err);
    return s;
}

/* ---- checking the parts ------------------------------------------------- */

typedef struct pctx {
    const cr_allocator *a;
    const char *out;
    cr_verify_report *rep;
    bool nomem;
    loaded *parts;             /* [n_parts], root NULL when missing */
    uint32_t n_parts;
    uint64_t program;
} pctx;

#define problem(c, ...) \
    do { if (!cr_verify_report_add((c)->rep, (c)->a, __VA_ARGS__)) (c)->nomem = true; } while (0)

static bool parse_part_name(const char *name, uint32_t *i, uint32_t *n, int *tail)
{
    unsigned a, b;
    int end = 0;
    if (sscanf(name, "part-%u-of-%u%n", &a, &b, &end) != 2 || !a || a > b || b > CR_LIMIT_SHARDS) return false;
    *i = a;
    *n = b;
    *tail = end;
    return true;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void note_stale(void *ud, const char *msg)
{
    (void)ud;
    fprintf(stderr, "crucible: %s\n", msg);
}

/* Load every manifest; the part count is the largest N seen (they must
 * agree). */
static void load_parts(pctx *c)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", c->out, CR_PARTS_DIR);
    DIR *d = opendir(dir);
    if (!d) { problem(c, "%s: %s", dir, strerror(errno)); return; }
    struct dirent *e;
    uint32_t n = 0;
    cr_vec names;
    cr_vec_init(&names, c->a, sizeof(char *));
    while ((e = readdir(d))) {
        uint32_t i, k;
        int tail;
        if (!parse_part_name(e->d_name, &i, &k, &tail)) continue;
        char *nm = cr_strdup(c->a, e->d_name);
        if (!nm || !cr_vec_push(&names, &nm)) { cr_free(c->a, nm); c->nomem = true; break; }
    }
    closedir(d);
    /* a killed part's temporary directory first: removed when its owner
     * record proves the process gone (outdir.h) */
    for (size_t x = 0; x < names.len; x++) {
        const char *nm = ((char **)names.data)[x];
        uint32_t i, k;
        int tail;
        parse_part_name(nm, &i, &k, &tail);
        if (strncmp(nm + tail, ".crucible-owner-", 16)) continue;
        char base[PATH_MAX];
        snprintf(base, sizeof base, "%s/%.*s", dir, tail, nm);
        cr_outdir_clean_stale(c->a, base, note_stale, NULL);
    }
    for (size_t x = 0; x < names.len; x++) {
        const char *nm = ((char **)names.data)[x];
        uint32_t i, k;
        int tail;
        parse_part_name(nm, &i, &k, &tail);
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, nm);
        struct stat st;
        if (lstat(path, &st)) continue;   /* removed above */
        if (nm[tail]) {
            if (strstr(nm + tail, ".crucible-tmp-"))
                problem(c, "%s: part %u of %u is still running (or was left by a process crucible cannot prove "
                        "gone); wait for it", path, i, k);
            continue;
        }
        if (!n) {
            n = k;
            c->parts = cr_calloc(c->a, n + 1, sizeof *c->parts);
            if (!c->parts) { c->nomem = true; break; }
            c->n_parts = n;
        }
        if (k != n) {
            problem(c, "%s: a part of %u parts, but %s holds parts of %u: parts of different runs are mixed "
                    "(remove the other run's part directories)", path, k, dir, n);
            continue;
        }
        loaded l;
        cr_error err;
        cr_status s = manifest_load(c->a, path, &l, &err);
        if (s == CR_ERR_NOMEM) { c->nomem = true; break; }
        if (s) { problem(c, "part %u of %u: %s (re-run that part)", i, k, err.msg); continue; }
        if (l.m.part != i || l.m.n_parts != k) {
            problem(c, "%s/%s: says part %u of %u, its directory part %u of %u", path, CR_PARTS_MANIFEST, l.m.part,
                    l.m.n_parts, i, k);
            loaded_free(c->a, &l);
            continue;
        }
        c->parts[i - 1] = l;
    }
    for (size_t x = 0; x < names.len; x++) cr_free(c->a, ((char **)names.data)[x]);
    cr_vec_free(&names);
    if (!n && !c->nomem && !c->rep->n_problems_total)
        problem(c, "%s: no finished part (no part-I-of-N/%s): run the parts first", dir, CR_PARTS_MANIFEST);
}

static const loaded *first_part(const pctx *c)
{
    for (uint32_t i = 0; i < c->n_parts; i++) if (c->parts[i].root) return &c->parts[i];
    return NULL;
}

static void check_file(pctx *c, const char *path, const cr_part_file *f, const char *whose, uint32_t part)
{
    struct stat st;
    if (stat(path, &st)) {
        problem(c, "%s: missing (%s; re-run part %u of %u)", path, whose, part, c->n_parts);
        return;
    }
    if (!S_ISREG(st.st_mode)) { problem(c, "%s: not a regular file (%s)", path, whose); return; }
    if ((uint64_t)st.st_size != f->size) {
        problem(c, "%s: %llu bytes, %s records %llu (re-run part %u of %u)", path, (unsigned long long)st.st_size,
                whose, (unsigned long long)f->size, part, c->n_parts);
        return;
    }
    uint64_t h;
    cr_error e;
    cr_status s = cr_hash_path(c->a, path, &h, NULL, &e);
    if (s == CR_ERR_NOMEM) { c->nomem = true; return; }
    if (s) { problem(c, "%s", e.msg); return; }
    if (h != f->hash) {
        char want[17], got[17];
        cr_hash_hex(f->hash, want);
        cr_hash_hex(h, got);
        problem(c, "%s: content hash mismatch: %s records xxh64 %s, the file hashes to %s (the file changed "
                "after it was written; re-run part %u of %u)", path, whose, want, got, part, c->n_parts);
    }
}

static void check_all(pctx *c)
{
    load_parts(c);
    if (c->nomem || !c->n_parts) return;
    const loaded *ref = first_part(c);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s", c->out, CR_PARTS_DIR);
    for (uint32_t i = 0; i < c->n_parts; i++) {
        const loaded *l = &c->parts[i];
        if (!l->root) {
            problem(c, "part %u of %u is missing: no %s/part-%u-of-%u/%s (run `crucible run PROGRAM.crb %s "
                    "--part %u/%u`)", i + 1, c->n_parts, dir, i + 1, c->n_parts, CR_PARTS_MANIFEST, c->out, i + 1,
                    c->n_parts);
            continue;
        }
        if (!ref) continue;
        bool same = l->m.program == ref->m.program && l->m.n_shards == ref->m.n_shards;
        for (uint32_t s = 0; same && s < l->m.n_shards; s++)
            same = !strcmp(l->m.shards[s].file, ref->m.shards[s].file) && l->m.shards[s].size == ref->m.shards[s].size &&
                   l->m.shards[s].part == ref->m.shards[s].part;
        if (!same) {
            char a[17], b[17];
            cr_hash_hex(l->m.program, a);
            cr_hash_hex(ref->m.program, b);
            problem(c, "part %u of %u is of another program (%s) than part %u (%s): parts of different runs are "
                    "mixed in %s", i + 1, c->n_parts, a, ref->m.part, b, dir);
        }
    }
    if (c->rep->n_problems_total || !ref) return;
    c->program = ref->m.program;
    for (uint32_t s = 0; s < ref->m.n_shards && !c->nomem; s++) {
        const cr_part_file *f = &ref->m.shards[s];
        if (!f->part || f->part > c->n_parts) { problem(c, "%s: shard %s of no part", dir, f->file); continue; }
        const loaded *w = &c->parts[f->part - 1];
        const cr_part_file *mine = &w->m.shards[s];
        char whose[64];
        snprintf(whose, sizeof whose, "part %u of %u's manifest", f->part, c->n_parts);
        if (!mine->hashed) { problem(c, "%s: no hash for its shard %s", whose, f->file); continue; }
        char *path = cr_path_join(c->a, c->out, f->file);
        if (!path) { c->nomem = true; return; }
        check_file(c, path, mine, whose, f->part);
        cr_free(c->a, path);
    }
    const loaded *p1 = &c->parts[0];
    for (uint32_t x = 0; x < p1->m.n_aux && !c->nomem; x++) {
        char path[PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/part-1-of-%u/%s/%s", dir, c->n_parts, CR_PARTS_AUX, p1->m.aux[x].file);
        if (!p1->m.aux[x].hashed) { problem(c, "%s: no hash recorded", path); continue; }
        check_file(c, path, &p1->m.aux[x], "part 1's manifest", 1);
    }
}

static void pctx_free(pctx *c)
{
    if (c->parts) for (uint32_t i = 0; i < c->n_parts; i++) loaded_free(c->a, &c->parts[i]);
    cr_free(c->a, c->parts);
}

cr_status cr_parts_check(const cr_allocator *a, const char *out, cr_verify_report *rep, cr_error *err)
{
    memset(rep, 0, sizeof *rep);
    rep->alloc = a;
    pctx c = { .a = a, .out = out, .rep = rep };
    check_all(&c);
    pctx_free(&c);
    if (c.nomem) return cr_fail(err, CR_ERR_NOMEM, "out of memory checking the parts in %s", out);
    return CR_OK;
}

/* ---- assembling --------------------------------------------------------- */

/* the bytes of aux file x as the output holds them: the index with every
 * shard's hash added (the VM's single run does the same) */
static cr_status aux_bytes(pctx *c, const cr_part_file *x, char **data, size_t *len, cr_error *err)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s/part-1-of-%u/%s/%s", c->out, CR_PARTS_DIR, c->n_parts, CR_PARTS_AUX, x->file);
    cr_status s = cr_file_read(c->a, path, CR_LIMIT_JSON_BYTES, "file", data, len, err);
    if (s || strcmp(x->file, CR_INDEX_FILE)) return s;
    const loaded *p1 = &c->parts[0];
    const char **names = cr_calloc(c->a, p1->m.n_shards + 1, sizeof *names);
    uint64_t *hashes = cr_calloc(c->a, p1->m.n_shards + 1, sizeof *hashes);
    if (!names || !hashes) s = cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; !s && i < p1->m.n_shards; i++) {
        const cr_part_file *f = &p1->m.shards[i];
        names[i] = f->file;
        hashes[i] = c->parts[f->part - 1].m.shards[i].hash;
    }
    char *with = NULL;
    size_t wlen = 0;
    cr_error e = {0};
    if (!s) {
        cr_status h = cr_index_add_hashes(c->a, *data, *len, names, hashes, p1->m.n_shards, &with, &wlen, &e);
        if (h == CR_ERR_FORMAT) fprintf(stderr, "crucible: warning: %s; shard hashes not recorded\n", e.msg);
        else if (h) s = cr_fail(err, h, "%s", e.msg);
        else { cr_free(c->a, *data); *data = with; *len = wlen; }
    }
    cr_free(c->a, names);
    cr_free(c->a, hashes);
    if (s) { cr_free(c->a, *data); *data = NULL; }
    return s;
}

/* 1: OUT/NAME holds exactly data; 0: absent; -1: something else */
static int same_file(const cr_allocator *a, const char *path, const char *data, size_t len)
{
    struct stat st;
    if (lstat(path, &st)) return 0;
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != len) return -1;
    char *have = NULL;
    size_t hl = 0;
    cr_error e;
    if (cr_file_read(a, path, len + 1, "file", &have, &hl, &e)) return -1;
    int r = hl == len && !memcmp(have, data, len) ? 1 : -1;
    cr_free(a, have);
    return r;
}

cr_status cr_parts_assemble(const cr_allocator *a, const char *out, bool force, cr_verify_report *rep, cr_error *err)
{
    memset(rep, 0, sizeof *rep);
    rep->alloc = a;
    pctx c = { .a = a, .out = out, .rep = rep };
    cr_status s = CR_OK;
    if (!cr_parts_present(out)) {
        s = cr_fail(err, CR_ERR_ARG, "%s: no %s directory, so no parts to assemble (`crucible run X.crb %s --part "
                    "I/N` writes them)", out, CR_PARTS_DIR, out);
        goto done;
    }
    check_all(&c);
    if (c.nomem) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory checking the parts in %s", out); goto done; }
    if (rep->n_problems_total) {
        s = cr_fail(err, CR_ERR_RUNTIME, "%s: %u problem%s with the parts; nothing assembled", out,
                    rep->n_problems_total, rep->n_problems_total == 1 ? "" : "s");
        goto done;
    }
    const loaded *p1 = &c.parts[0];
    /* twice: first every conflict, then the writes (the index last) */
    for (int pass = 0; pass < 2 && !s; pass++) {
        for (uint32_t k = 0; k <= p1->m.n_aux && !s; k++) {
            /* the index last: once it is there, everything is */
            uint32_t x = k;
            uint32_t idx = p1->m.n_aux;
            for (uint32_t q = 0; q < p1->m.n_aux; q++) if (!strcmp(p1->m.aux[q].file, CR_INDEX_FILE)) idx = q;
            if (k == p1->m.n_aux) { if (idx == p1->m.n_aux) break; x = idx; }
            else if (k == idx) continue;
            char *data = NULL;
            size_t len = 0;
            if ((s = aux_bytes(&c, &p1->m.aux[x], &data, &len, err))) break;
            char *dst = cr_path_join(a, out, p1->m.aux[x].file);
            if (!dst) { cr_free(a, data); s = cr_fail(err, CR_ERR_NOMEM, "out of memory"); break; }
            int same = same_file(a, dst, data, len);
            if (pass == 0 && same < 0 && !force)
                s = cr_fail(err, CR_ERR_ARG, "%s exists with other bytes than the assembled output's; crucible "
                            "did not write it: remove it or use --force", dst);
            if (pass == 1 && same != 1) {
                char tmp[PATH_MAX + 64];
                snprintf(tmp, sizeof tmp, "%s.crucible-tmp-%ld", dst, (long)getpid());
                unlink(tmp);   /* our own pid's name: a leftover of this process id */
                s = write_new(tmp, data, len, err);
                if (!s && rename(tmp, dst)) { s = cr_fail_errno(err, errno, "cannot rename %s to %s", tmp, dst); unlink(tmp); }
            }
            cr_free(a, dst);
            cr_free(a, data);
        }
    }
    if (!s) {
        int e = sync_dir(out);
        if (e) s = cr_fail_errno(err, e, "cannot sync %s", out);
    }
    if (!s) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/%s", out, CR_PARTS_DIR);
        if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT))
            s = cr_fail_errno(err, errno, "cannot remove %s", dir);
        else (void)sync_dir(out);
    }
done:
    pctx_free(&c);
    return s;
}
