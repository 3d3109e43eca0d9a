/* diff_gguf.c — `crucible diff` when A or B is a GGUF file (spec/gguf.md
 * §8.4).
 *
 * Two GGUF files: the metadata key by key (missing, type, value), then the
 * tensors by name: type and ne, identical bytes, and else the values
 * dequantised to f32 (F32, F16, BF16, Q8_0, Q4_0), so `diff m-f16.gguf
 * m-q4_0.gguf` measures what quantising lost. A GGUF file against a model
 * directory: the directory's tensors are mapped as llama.cpp's converter
 * maps them (names, the Q/K row permutation, stacked experts;
 * formats/gguf_hf.h) and compared as f32 with the file's values; the
 * metadata is not compared. Exit 0 if identical, 1 if different, 2 on
 * error.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "gguf.h"
#include "gguf_hf.h"
#include "gguf_read.h"
#include "limits.h"
#include "model.h"
#include "termtext.h"

typedef struct stats {
    uint64_t n_diff;
    double max_abs;
} stats;

static void add_stats(stats *s, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (cr_f32_bits(a[i]) == cr_f32_bits(b[i])) continue;
        s->n_diff++;
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) s->max_abs = NAN;
        else if (!isnan(s->max_abs) && d > s->max_abs) s->max_abs = d;
    }
}

static uint64_t numel_of(const cr_gguf_tensor_info *t)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) n *= t->ne[d];
    return n;
}

static void ne_str(char *buf, size_t cap, const cr_gguf_tensor_info *t)
{
    size_t n = (size_t)snprintf(buf, cap, "%s{", cr_gguf_type_info(t->type, NULL, NULL));
    for (uint32_t d = 0; d < t->n_dims && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%llu", d ? "," : "", (unsigned long long)t->ne[d]);
    if (n < cap) snprintf(buf + n, cap - n, "}");
}

static const char *safe(const char *name, char *buf)
{
    cr_text_safe(buf, 4 * CR_LIMIT_NAME + 1, name, strlen(name), 0);
    return buf;
}

static const cr_gguf_kv_info *find_kv(const cr_gguf_file *f, const char *key)
{
    for (uint64_t i = 0; i < f->n_kv; i++) if (!strcmp(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

static const cr_gguf_tensor_info *find_t(const cr_gguf_file *f, const char *name)
{
    for (uint64_t i = 0; i < f->n_tensors; i++) if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

/* a scalar or string value, for the "key" lines */
static void put_value(const cr_gguf_file *f, const cr_gguf_kv_info *kv)
{
    const uint8_t *p = f->map + kv->value_off;
    uint64_t u = 0;
    if (kv->type == 9) { printf("array of %llu", (unsigned long long)kv->arr_n); return; }
    if (kv->type == 8) {
        uint64_t n = kv->value_len - 8;
        char buf[4 * 80 + 1];
        cr_text_safe(buf, sizeof buf, (const char *)p + 8, (size_t)CR_MIN(n, (uint64_t)80), 0);
        printf("\"%s%s\"", buf, n > 80 ? "..." : "");
        return;
    }
    memcpy(&u, p, (size_t)CR_MIN(kv->value_len, (uint64_t)8));   /* little-endian */
    if (kv->type == 6) printf("%.9g", (double)cr_bits_f32((uint32_t)u));
    else if (kv->type == 12) { double d; memcpy(&d, &u, 8); printf("%.17g", d); }
    else if (kv->type == 7) printf("%s", u ? "true" : "false");
    else if (kv->type == 1 || kv->type == 3 || kv->type == 5 || kv->type == 11) {
        unsigned bits = (unsigned)kv->value_len * 8;
        long long v = bits < 64 ? (long long)(u << (64 - bits)) >> (64 - bits) : (long long)u;
        printf("%lld", v);
    } else printf("%llu", (unsigned long long)u);
}

static uint32_t diff_kv(const cr_gguf_file *a, const cr_gguf_file *b, bool all)
{
    uint32_t n = 0;
    char nbuf[4 * CR_LIMIT_NAME + 1];
    for (uint64_t i = 0; i < a->n_kv; i++) {
        const cr_gguf_kv_info *x = &a->kv[i], *y = find_kv(b, x->key);
        if (!y) { printf("key only in A  %s\n", safe(x->key, nbuf)); n++; continue; }
        if (x->type != y->type || x->arr_type != y->arr_type || x->value_len != y->value_len ||
            memcmp(a->map + x->value_off, b->map + y->value_off, (size_t)x->value_len)) {
            printf("key differs  %s: ", safe(x->key, nbuf));
            put_value(a, x);
            printf(" vs ");
            put_value(b, y);
            printf("\n");
            n++;
        } else if (all) {
            printf("key same     %s\n", safe(x->key, nbuf));
        }
    }
    for (uint64_t i = 0; i < b->n_kv; i++)
        if (!find_kv(a, b->kv[i].key)) { printf("key only in B  %s\n", safe(b->kv[i].key, nbuf)); n++; }
    return n;
}

typedef struct tally { uint32_t same, val_diff, type_diff, only_a, only_b; } tally;

static void report(tally *t, const char *name, const char *sa, const char *sb, uint64_t numel, const stats *s,
                   bool bytes_same, bool all)
{
    bool type_same = !strcmp(sa, sb);
    if (!type_same) t->type_diff++;
    if (s->n_diff) {
        printf("differs     %s %s%s%s: %llu of %llu elements differ, max |a-b| %.9g\n", name, sa, type_same ? "" : " vs ",
               type_same ? "" : sb, (unsigned long long)s->n_diff, (unsigned long long)numel, s->max_abs);
        if (type_same) t->val_diff++;
    } else if (!type_same) {
        printf("type        %s: %s vs %s, equal values\n", name, sa, sb);
    } else {
        if (all) printf("same        %s %s: identical bytes: %s\n", name, sa, bytes_same ? "yes" : "no");
        t->same++;
    }
}

/* two GGUF files: metadata, then tensors (values compared a row of ne[0] at a time) */
static int gguf_vs_gguf(const cr_gguf_file *a, const cr_gguf_file *b, bool all)
{
    const cr_allocator *al = cr_default_allocator();
    char nbuf[4 * CR_LIMIT_NAME + 1];
    uint32_t kdiff = diff_kv(a, b, all);
    tally t = {0};
    uint64_t max_row = 1;
    for (uint64_t i = 0; i < a->n_tensors; i++) max_row = CR_MAX(max_row, a->tensors[i].ne[0]);
    for (uint64_t i = 0; i < b->n_tensors; i++) max_row = CR_MAX(max_row, b->tensors[i].ne[0]);
    float *fa = cr_malloc(al, (size_t)max_row * sizeof *fa), *fb = cr_malloc(al, (size_t)max_row * sizeof *fb);
    if (!fa || !fb) { cr_free(al, fa); cr_free(al, fb); fprintf(stderr, "crucible diff: out of memory\n"); return 2; }
    int rc = 0;
    for (uint64_t i = 0; i < a->n_tensors && !rc; i++) {
        const cr_gguf_tensor_info *x = &a->tensors[i], *y = find_t(b, x->name);
        const char *name = safe(x->name, nbuf);
        if (!y) { printf("only in A   %s\n", name); t.only_a++; continue; }
        char sa[160], sb[160];
        ne_str(sa, sizeof sa, x);
        ne_str(sb, sizeof sb, y);
        bool same_ne = x->n_dims == y->n_dims && !memcmp(x->ne, y->ne, x->n_dims * sizeof x->ne[0]);
        if (!same_ne) { printf("type        %s: %s vs %s\n", name, sa, sb); t.type_diff++; continue; }
        bool bytes_same = x->type == y->type && !memcmp(a->map + x->offset, b->map + y->offset, (size_t)x->nbytes);
        stats s = {0};
        uint64_t cols = x->ne[0], rows = cols ? numel_of(x) / cols : 0;
        uint64_t ra = rows ? x->nbytes / rows : 0, rb = rows ? y->nbytes / rows : 0;
        for (uint64_t r = 0; r < rows && !bytes_same; r++) {
            if (!cr_gguf_dequant(x->type, a->map + x->offset + r * ra, (size_t)cols, fa) ||
                !cr_gguf_dequant(y->type, b->map + y->offset + r * rb, (size_t)cols, fb)) {
                fprintf(stderr, "crucible diff: %s: %s or %s values are not read yet\n", name,
                        cr_gguf_type_info(x->type, NULL, NULL), cr_gguf_type_info(y->type, NULL, NULL));
                rc = 2;
                break;
            }
            add_stats(&s, fa, fb, (size_t)cols);
        }
        if (!rc) report(&t, name, sa, sb, numel_of(x), &s, bytes_same, all);
    }
    for (uint64_t i = 0; i < b->n_tensors && !rc; i++)
        if (!find_t(a, b->tensors[i].name)) { printf("only in B   %s\n", safe(b->tensors[i].name, nbuf)); t.only_b++; }
    cr_free(al, fa);
    cr_free(al, fb);
    if (rc) return rc;
    bool identical = !kdiff && !t.only_a && !t.only_b && !t.type_diff && !t.val_diff;
    printf("%s: %u identical, %u with different values, %u with different type/shape, %u only in A, %u only in B, "
           "%u metadata keys differ\n", identical ? "identical" : "different", t.same, t.val_diff, t.type_diff, t.only_a,
           t.only_b, kdiff);
    return identical ? 0 : 1;
}

/* GGUF file g against model directory m; `g_is_a` orders the output */
static int gguf_vs_dir(const cr_gguf_file *g, const cr_model *m, bool g_is_a, bool all)
{
    const cr_allocator *al = cr_default_allocator();
    char nbuf[4 * CR_LIMIT_NAME + 1];
    cr_error err = {0};
    cr_gguf_src src;
    void *owned = NULL;
    cr_gguf_sink *plan = NULL;
    cr_gguf_hf_opts o = {.ftype = CR_GGML_F32, .tensors_only = true};
    cr_status st = cr_gguf_src_of_model(al, m, &src, &owned, &err);
    if (!st) st = cr_gguf_sink_open(al, &src, &o, NULL, -1, NULL, &plan, &err);
    if (st) {
        fprintf(stderr, "crucible diff: %s: the directory's tensors have no GGUF names: %s\n", m->dir, err.msg);
        cr_free(al, owned);
        return 2;
    }
    uint64_t max_row = 1;
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        const cr_st_tensor *in = m->tensors[i].info;
        max_row = CR_MAX(max_row, in->ndim ? in->shape[in->ndim - 1] : 1);
    }
    float *fg = cr_malloc(al, (size_t)max_row * sizeof *fg), *fm = cr_malloc(al, (size_t)max_row * sizeof *fm);
    bool *seen = cr_calloc(al, g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *seen);
    tally t = {0};
    int rc = !fg || !fm || !seen ? 2 : 0;
    if (rc) fprintf(stderr, "crucible diff: out of memory\n");
    /* tensor by tensor of the directory, in name order */
    for (uint32_t i = 0; i < m->n_tensors && !rc; i++) {
        const cr_st_tensor *in = m->tensors[i].info;
        const char *gname;
        uint32_t slot, heads;
        const cr_gguf_tensor_info *x = NULL;
        if (cr_gguf_sink_target(plan, i, &gname, &slot, &heads)) x = find_t(g, gname);
        if (!x) {
            printf("only in %s   %s\n", g_is_a ? "B" : "A", safe(in->name, nbuf));
            if (g_is_a) t.only_b++; else t.only_a++;
            continue;
        }
        seen[x - g->tensors] = true;
        uint64_t cols = x->ne[0], numel = numel_of(x), rows = cols ? in->numel / cols : 0;
        uint64_t n_slots = in->numel ? numel / in->numel : 0, gb = cols && numel ? x->nbytes / (numel / cols) : 0;
        char sg[160], sm[160], label[2 * CR_LIMIT_NAME + 8];
        ne_str(sg, sizeof sg, x);
        size_t k = (size_t)snprintf(sm, sizeof sm, "%s[", cr_dtype_name(in->dtype));
        for (uint32_t d = 0; d < in->ndim && k < sizeof sm; d++)
            k += (size_t)snprintf(sm + k, sizeof sm - k, "%s%llu", d ? "," : "", (unsigned long long)in->shape[d]);
        if (k < sizeof sm) snprintf(sm + k, sizeof sm - k, "]");
        snprintf(label, sizeof label, "%s", safe(in->name, nbuf));
        if (n_slots > 1) snprintf(label + strlen(label), sizeof label - strlen(label), " (%s[%u])", gname, slot);
        else if (strcmp(gname, in->name)) snprintf(label + strlen(label), sizeof label - strlen(label), " (%s)", gname);
        if (!rows || in->numel * n_slots != numel || cols != (in->ndim ? in->shape[in->ndim - 1] : 1)) {
            printf("type        %s: %s vs %s\n", label, g_is_a ? sg : sm, g_is_a ? sm : sg);
            t.type_diff++;
            continue;
        }
        const uint8_t *data = cr_st_data(&m->shards[m->tensors[i].shard], in);
        unsigned es = cr_dtype_size(in->dtype);
        stats s = {0};
        for (uint64_t r = 0; r < rows && !rc; r++) {
            uint64_t gr = (uint64_t)slot * rows + cr_gguf_permute_row(r, in->shape[0], heads);
            if (!cr_gguf_dequant(x->type, g->map + x->offset + gr * gb, (size_t)cols, fg)) {
                fprintf(stderr, "crucible diff: %s: %s values are not read yet\n", gname, cr_gguf_type_info(x->type, NULL, NULL));
                rc = 2;
                break;
            }
            cr_convert_to_f32(in->dtype, data + r * cols * es, fm, (size_t)cols);
            add_stats(&s, g_is_a ? fg : fm, g_is_a ? fm : fg, (size_t)cols);
        }
        cr_st_release(&m->shards[m->tensors[i].shard], in);
        /* a stacked expert is one of several; the types always differ in kind (GGUF vs safetensors) */
        if (!rc) {
            if (s.n_diff) {
                printf("differs     %s %s vs %s: %llu of %llu elements differ, max |a-b| %.9g\n", label,
                       g_is_a ? sg : sm, g_is_a ? sm : sg, (unsigned long long)s.n_diff, (unsigned long long)in->numel,
                       s.max_abs);
                t.val_diff++;
            } else {
                if (all) printf("same        %s %s vs %s: equal values\n", label, g_is_a ? sg : sm, g_is_a ? sm : sg);
                t.same++;
            }
        }
    }
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++)
        if (!seen[i]) {
            printf("only in %s   %s\n", g_is_a ? "A" : "B", safe(g->tensors[i].name, nbuf));
            if (g_is_a) t.only_a++; else t.only_b++;
        }
    cr_free(al, fg);
    cr_free(al, fm);
    cr_free(al, seen);
    cr_gguf_sink_free(plan);
    cr_free(al, owned);
    if (rc) return rc;
    bool identical = !t.only_a && !t.only_b && !t.type_diff && !t.val_diff;
    printf("%s: %u with equal values, %u with different values, %u with different shape, %u only in A, %u only in B "
           "(GGUF against a directory: values as f32, metadata not compared)\n",
           identical ? "identical" : "different", t.same, t.val_diff, t.type_diff, t.only_a, t.only_b);
    return identical ? 0 : 1;
}

int cr_cli_diff_gguf(const char *pa, const char *pb, bool all)
{
    const cr_allocator *al = cr_default_allocator();
    bool ga = cr_gguf_is_gguf(pa), gb = cr_gguf_is_gguf(pb);
    cr_gguf_file fa, fb;
    cr_model m;
    cr_error err = {0};
    memset(&fa, 0, sizeof fa);
    memset(&fb, 0, sizeof fb);
    memset(&m, 0, sizeof m);
    cr_status st = CR_OK;
    bool oa = false, ob = false;   /* a failed open cleans up after itself */
    if (ga) oa = !(st = cr_gguf_open(al, pa, &fa, &err));
    if (!st && gb) ob = !(st = cr_gguf_open(al, pb, &fb, &err));
    if (!st && !(ga && gb)) st = cr_model_open(al, ga ? pb : pa, 0, &m, &err);
    int rc = 2;
    if (st) fprintf(stderr, "crucible diff: %s\n", err.msg);
    else if (ga && gb) rc = gguf_vs_gguf(&fa, &fb, all);
    else rc = gguf_vs_dir(ga ? &fa : &fb, &m, ga, all);
    if (oa) cr_gguf_close(&fa);
    if (ob) cr_gguf_close(&fb);
    cr_model_close(&m);
    return rc;
}
