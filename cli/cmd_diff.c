/* cmd_diff.c — `crucible diff A B`: compares two models tensor by tensor
 * (GGUF files: diff_gguf.c):
 * names only in one, dtype/shape differences, and for tensors of equal
 * type the number of differing elements (bitwise), the largest absolute
 * difference, the Frobenius norm of the difference (the figure extract-lora's
 * reconstruction errors are given in, spec/lora.md) and whether the bytes
 * are identical. Exit 0 if the models hold
 * identical tensors, 1 if they differ, 2 on error. Tensor names are
 * escaped for the terminal (termtext.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "gguf_read.h"
#include "options.h"
#include "model.h"
#include "limits.h"
#include "termtext.h"

#define DIFF_CHUNK 65536

static void shape_str(char *buf, size_t cap, const cr_st_tensor *t)
{
    size_t n = (size_t)snprintf(buf, cap, "%s[", cr_dtype_name(t->dtype));
    for (uint32_t d = 0; d < t->ndim && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%llu", d ? "," : "", (unsigned long long)t->shape[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* bitwise-differing elements and the max |a-b| (NaN if any side is NaN) */
static void compare(const cr_st_file *sa, const cr_st_file *sb, const cr_st_tensor *t, const cr_st_tensor *tb,
                    const unsigned char *a, const unsigned char *b,
                    uint64_t *n_diff, double *max_abs, double *l2, float *fa, float *fb)
{
    unsigned es = cr_dtype_size(t->dtype);
    bool is_float = cr_dtype_is_float(t->dtype);
    *n_diff = 0;
    *max_abs = 0;
    double sq = 0;
    for (uint64_t i = 0; i < t->numel; i += DIFF_CHUNK) {
        size_t n = (size_t)CR_MIN((uint64_t)DIFF_CHUNK, t->numel - i);
        const unsigned char *pa = a + i * es, *pb = b + i * es;
        /* each page is read once; dropping it keeps memory flat on big models */
        if (i) {
            cr_st_release_bytes(sa, t, 0, i * es);
            cr_st_release_bytes(sb, tb, 0, i * es);
        }
        if (!memcmp(pa, pb, n * es)) continue;
        if (is_float && t->dtype != CR_DTYPE_F64) {
            cr_convert_to_f32(t->dtype, pa, fa, n);
            cr_convert_to_f32(t->dtype, pb, fb, n);
        }
        for (size_t j = 0; j < n; j++) {
            if (!memcmp(pa + j * es, pb + j * es, es)) continue;
            (*n_diff)++;
            double d;
            if (t->dtype == CR_DTYPE_F64) {
                double x, y;
                memcpy(&x, pa + j * es, 8);
                memcpy(&y, pb + j * es, 8);
                d = fabs(x - y);
            } else if (is_float) {
                d = fabs((double)fa[j] - (double)fb[j]);
            } else {
                long long x = 0, y = 0;
                memcpy(&x, pa + j * es, es);       /* little-endian, zero-extended */
                memcpy(&y, pb + j * es, es);
                d = fabs((double)x - (double)y);
            }
            sq += d * d;
            if (isnan(d)) *max_abs = NAN;        /* NaN against a number: report NaN */
            else if (!isnan(*max_abs) && d > *max_abs) *max_abs = d;
        }
    }
    *l2 = sqrt(sq);
}

/* a tensor name escaped for the terminal, in buf (4 * CR_LIMIT_NAME + 1) */
static const char *safe(const char *name, char *buf)
{
    cr_text_safe(buf, 4 * CR_LIMIT_NAME + 1, name, strlen(name), 0);
    return buf;
}

int cr_cmd_diff(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_DIFF, argc, argv, &o)) return 2;
    bool all = o.val[CR_OPT_ALL] != NULL;
    const char *pa = o.pos[0], *pb = o.pos[1];
    if (cr_gguf_is_gguf(pa) || cr_gguf_is_gguf(pb)) return cr_cli_diff_gguf(pa, pb, all);
    const cr_allocator *al = cr_default_allocator();
    cr_model a, b;
    cr_error err = {0};
    if (cr_model_open(al, pa, 0, &a, &err) != CR_OK) { fprintf(stderr, "crucible diff: %s\n", err.msg); return 2; }
    if (cr_model_open(al, pb, 0, &b, &err) != CR_OK) {
        fprintf(stderr, "crucible diff: %s\n", err.msg);
        cr_model_close(&a);
        return 2;
    }
    float *fa = cr_calloc(al, DIFF_CHUNK, sizeof *fa), *fb = cr_calloc(al, DIFF_CHUNK, sizeof *fb);
    if (!fa || !fb) {
        fprintf(stderr, "crucible diff: out of memory\n");
        cr_free(al, fa); cr_free(al, fb);
        cr_model_close(&a); cr_model_close(&b);
        return 2;
    }
    char nbuf[4 * CR_LIMIT_NAME + 1];
    uint32_t i = 0, j = 0, only_a = 0, only_b = 0, type_diff = 0, val_diff = 0, same = 0;
    while (i < a.n_tensors || j < b.n_tensors) {
        int c = i >= a.n_tensors ? 1 : j >= b.n_tensors ? -1 : strcmp(a.tensors[i].info->name, b.tensors[j].info->name);
        if (c < 0) { printf("only in A   %s\n", safe(a.tensors[i++].info->name, nbuf)); only_a++; continue; }
        if (c > 0) { printf("only in B   %s\n", safe(b.tensors[j++].info->name, nbuf)); only_b++; continue; }
        const cr_st_tensor *ta = a.tensors[i].info, *tb = b.tensors[j].info;
        const char *name = safe(ta->name, nbuf);
        char sa[128], sb[128];
        shape_str(sa, sizeof sa, ta);
        shape_str(sb, sizeof sb, tb);
        if (strcmp(sa, sb)) {
            printf("type        %s: %s vs %s\n", name, sa, sb);
            type_diff++;
        } else {
            const unsigned char *da = cr_st_data(&a.shards[a.tensors[i].shard], ta);
            const unsigned char *db = cr_st_data(&b.shards[b.tensors[j].shard], tb);
            uint64_t nd;
            double mx, l2;
            compare(&a.shards[a.tensors[i].shard], &b.shards[b.tensors[j].shard], ta, tb, da, db, &nd, &mx, &l2, fa, fb);
            cr_st_release(&a.shards[a.tensors[i].shard], ta);
            cr_st_release(&b.shards[b.tensors[j].shard], tb);
            if (nd) {
                printf("differs     %s %s: %llu of %llu elements differ, max |a-b| %.9g, ||a-b||_F %.6g, identical bytes: no\n",
                       name, sa, (unsigned long long)nd, (unsigned long long)ta->numel, mx, l2);
                val_diff++;
            } else {
                if (all) printf("same        %s %s: identical bytes: yes\n", name, sa);
                same++;
            }
        }
        i++;
        j++;
    }
    bool identical = !only_a && !only_b && !type_diff && !val_diff;
    printf("%s: %u identical, %u with different values, %u with different dtype/shape, %u only in A, %u only in B\n",
           identical ? "identical" : "different", same, val_diff, type_diff, only_a, only_b);
    cr_free(al, fa);
    cr_free(al, fb);
    cr_model_close(&a);
    cr_model_close(&b);
    return identical ? 0 : 1;
}
