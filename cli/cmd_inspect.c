/* cmd_inspect.c — `crucible inspect MODEL_DIR`: every tensor of a model
 * (name, dtype, shape, bytes, shard file) and the totals. Only headers are
 * read (the data is mapped, not read), so this is instant on any model size,
 * but every file is fully validated: a truncated shard is an error. Names
 * and strings from the files are escaped for the terminal (termtext.h). */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "options.h"
#include "model.h"
#include "termtext.h"

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int cr_cmd_inspect(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_INSPECT, argc, argv, &o)) return 2;
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
