/* cmd_inspect.c — `crucible inspect MODEL_DIR`: every tensor of a model
 * (name, dtype, shape, bytes, shard file) and the totals; `crucible inspect
 * FILE.gguf`: a GGUF file's metadata (arrays abbreviated) and tensor table.
 * Only headers are read (the data is mapped, not read), so this is instant
 * on any model size, but every file is fully validated: a truncated shard
 * is an error. Names and strings from the files are escaped for the
 * terminal (termtext.h). */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "options.h"
#include "model.h"
#include "gguf_read.h"
#include "termtext.h"

static const char *const vtype_names[13] = {"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
                                            "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"};

static uint64_t le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* one value of type t at p; strings are cut at 60 bytes; returns its size */
static uint64_t print_value(uint32_t t, const uint8_t *p)
{
    switch (t) {
    case 0: printf("%u", (unsigned)p[0]); return 1;
    case 1: printf("%d", (int)(int8_t)p[0]); return 1;
    case 2: printf("%u", (unsigned)le(p, 2)); return 2;
    case 3: printf("%d", (int)(int16_t)le(p, 2)); return 2;
    case 4: printf("%u", (unsigned)le(p, 4)); return 4;
    case 5: printf("%d", (int)(int32_t)le(p, 4)); return 4;
    case 6: { uint32_t u = (uint32_t)le(p, 4); float f; memcpy(&f, &u, 4); printf("%.9g", (double)f); return 4; }
    case 7: printf("%s", p[0] ? "true" : "false"); return 1;
    case 10: printf("%llu", (unsigned long long)le(p, 8)); return 8;
    case 11: printf("%lld", (long long)le(p, 8)); return 8;
    case 12: { uint64_t u = le(p, 8); double d; memcpy(&d, &u, 8); printf("%.17g", d); return 8; }
    case 8: {
        uint64_t n = le(p, 8);
        char buf[256];
        size_t shown = n > 60 ? 60 : (size_t)n;
        cr_text_safe(buf, sizeof buf, (const char *)p + 8, shown, 0);
        printf("\"%s%s\"", buf, n > shown ? "..." : "");
        return 8 + n;
    }
    }
    return 0;
}

static int inspect_gguf(const char *path)
{
    cr_gguf_file f;
    cr_error err = {0};
    if (cr_gguf_open(cr_default_allocator(), path, &f, &err) != CR_OK) {
        fprintf(stderr, "crucible inspect: %s\n", err.msg);
        return 1;
    }
    printf("GGUF v%u: %llu keys, %llu tensors, alignment %u, data at byte %llu\n", f.version,
           (unsigned long long)f.n_kv, (unsigned long long)f.n_tensors, f.alignment, (unsigned long long)f.data_start);
    for (uint64_t i = 0; i < f.n_kv; i++) {
        const cr_gguf_kv_info *kv = &f.kv[i];
        cr_text_fput(stdout, kv->key, 0);
        const uint8_t *p = f.map + kv->value_off;
        if (kv->type == 9) {
            printf("  ARRAY[%s] %llu  [", vtype_names[kv->arr_type], (unsigned long long)kv->arr_n);
            for (uint64_t e = 0; e < kv->arr_n && e < 6; e++) {
                if (e) printf(", ");
                p += print_value(kv->arr_type, p);
            }
            printf("%s]\n", kv->arr_n > 6 ? ", ..." : "");
        } else {
            printf("  %s  ", vtype_names[kv->type]);
            print_value(kv->type, p);
            putchar('\n');
        }
    }
    size_t w = 4;
    for (uint64_t i = 0; i < f.n_tensors; i++) w = CR_MAX(w, cr_text_safe_len(f.tensors[i].name, 0));
    printf("%-*s  %-7s  %-20s  %14s  %s\n", (int)w, "name", "type", "ne", "bytes", "offset");
    uint64_t params = 0;
    for (uint64_t i = 0; i < f.n_tensors; i++) {
        const cr_gguf_tensor_info *t = &f.tensors[i];
        char ne[160];
        size_t n = (size_t)snprintf(ne, sizeof ne, "{");
        uint64_t numel = 1;
        for (uint32_t d = 0; d < t->n_dims && n < sizeof ne; d++) {
            n += (size_t)snprintf(ne + n, sizeof ne - n, "%s%llu", d ? ", " : "", (unsigned long long)t->ne[d]);
            numel *= t->ne[d];
        }
        if (n < sizeof ne) snprintf(ne + n, sizeof ne - n, "}");
        cr_text_fput(stdout, t->name, 0);
        printf("%*s  %-7s  %-20s  %14llu  %llu\n", (int)(w - cr_text_safe_len(t->name, 0)), "",
               cr_gguf_type_info(t->type, NULL, NULL), ne, (unsigned long long)t->nbytes, (unsigned long long)t->offset);
        params += numel;
    }
    printf("total: %llu tensors, %llu parameters, %llu bytes of data, file %llu bytes\n", (unsigned long long)f.n_tensors,
           (unsigned long long)params, (unsigned long long)f.data_bytes, (unsigned long long)f.size);
    cr_gguf_close(&f);
    return 0;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int cr_cmd_inspect(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_INSPECT, argc, argv, &o)) return 2;
    if (cr_gguf_is_gguf(o.pos[0])) return inspect_gguf(o.pos[0]);
    cr_model m;
    cr_error err = {0};
    if (cr_model_open(cr_default_allocator(), o.pos[0], 0, &m, &err) != CR_OK) {
        fprintf(stderr, "crucible inspect: %s\n", err.msg);
        return 1;
    }
    size_t w = 4;
    for (uint32_t i = 0; i < m.n_tensors; i++) w = CR_MAX(w, cr_text_safe_len(m.tensors[i].info->name, 0));
    printf("%-*s  %-7s  %-20s  %14s  %s\n", (int)w, "name", "dtype", "shape", "bytes", "file");
    uint64_t params = 0;
    for (uint32_t i = 0; i < m.n_tensors; i++) {
        const cr_st_tensor *t = m.tensors[i].info;
        char shape[160];
        size_t n = (size_t)snprintf(shape, sizeof shape, "[");
        for (uint32_t d = 0; d < t->ndim && n < sizeof shape; d++)
            n += (size_t)snprintf(shape + n, sizeof shape - n, "%s%llu", d ? ", " : "", (unsigned long long)t->shape[d]);
        if (n < sizeof shape) snprintf(shape + n, sizeof shape - n, "]");
        cr_text_fput(stdout, t->name, 0);
        printf("%*s  %-7s  %-20s  %14llu  ", (int)(w - cr_text_safe_len(t->name, 0)), "", cr_dtype_name(t->dtype),
               shape, (unsigned long long)(t->end - t->begin));
        cr_text_fput(stdout, base_name(m.shards[m.tensors[i].shard].path), 0);
        putchar('\n');
        params += t->numel;
    }
    printf("total: %u tensors, %llu parameters, %llu bytes in %u file%s\n", m.n_tensors,
           (unsigned long long)params, (unsigned long long)m.total_bytes, m.n_shards, m.n_shards == 1 ? "" : "s");
    long long layers;
    const char *type = cr_model_config_str(&m, "model_type");
    if (type) {
        printf("config: model_type ");
        cr_text_fput(stdout, type, 0);
    }
    if (cr_model_config_int(&m, "num_hidden_layers", &layers)) printf("%s%lld layers", type ? ", " : "config: ", layers);
    if (type || cr_model_config_int(&m, "num_hidden_layers", &layers)) printf("\n");
    cr_model_close(&m);
    return 0;
}
