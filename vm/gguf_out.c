/* gguf_out.c — a program's output directory as the GGUF converter's source
 * (gguf_out.h): the output tensor table and the aux files, read from the
 * program's blobs and its inputs. */
#include "gguf_out.h"

#include <cjson/cJSON.h>
#include <string.h>

#include "infile.h"
#include "limits.h"

typedef struct prog_src {
    const cr_allocator *alloc;
    const cr_program *p;
    uint8_t *const *maps;
    cJSON *config;
    cr_gguf_src_tensor *tensors;
} prog_src;

static const cr_prog_aux *find_aux(const cr_program *p, const char *name)
{
    for (uint32_t i = 0; i < p->n_aux; i++)
        if (!strcmp(cr_prog_str(p, p->aux[i].dest), name)) return &p->aux[i];
    return NULL;
}

cr_status cr_program_aux_read(const cr_allocator *alloc, const cr_program *p, uint8_t *const *maps, const char *name,
                              char **data, size_t *len, cr_error *err)
{
    *data = NULL;
    *len = 0;
    const cr_prog_aux *x = find_aux(p, name);
    if (!x) return CR_OK;
    if (x->kind == CR_AUX_COPY && !maps && !p->files[x->src_file].path.len)
        return cr_fail(err, CR_ERR_UNSUPPORTED, "%s is copied from an input model that is not bound to a directory "
                       "here (plan the recipe instead of its .crb)", name);
    if (x->kind == CR_AUX_COPY && !maps)
        return cr_file_read(alloc, cr_prog_str(p, p->files[x->src_file].path), CR_LIMIT_JSON_BYTES, name, data, len, err);
    const uint8_t *src;
    uint64_t n;
    if (x->kind == CR_AUX_WRITE) { src = p->blobs + x->content.off; n = x->content.len; }
    else { src = maps[x->src_file]; n = p->files[x->src_file].size; }
    if (n > CR_LIMIT_JSON_BYTES)
        return cr_fail(err, CR_ERR_LIMIT, "%s is %llu bytes, more than GGUF metadata reads (%llu)", name,
                       (unsigned long long)n, (unsigned long long)CR_LIMIT_JSON_BYTES);
    char *d = cr_malloc(alloc, (size_t)n + 1);
    if (!d) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    if (n) memcpy(d, src, (size_t)n);
    d[n] = 0;
    *data = d;
    *len = (size_t)n;
    return CR_OK;
}

static cr_status src_read(void *ud, const char *name, char **data, size_t *len, cr_error *err)
{
    prog_src *s = ud;
    return cr_program_aux_read(s->alloc, s->p, s->maps, name, data, len, err);
}

static bool src_exists(void *ud, const char *name)
{
    prog_src *s = ud;
    return find_aux(s->p, name) != NULL;
}

void cr_program_gguf_src_free(const cr_allocator *alloc, void *owned)
{
    prog_src *s = owned;
    if (!s) return;
    cJSON_Delete(s->config);
    cr_free(alloc, s->tensors);
    cr_free(alloc, s);
}

cr_status cr_program_gguf_src(const cr_allocator *alloc, const cr_program *p, uint8_t *const *maps, const char *dir,
                              cr_gguf_src *src, void **owned, cr_error *err)
{
    *owned = NULL;
    prog_src *s = cr_calloc(alloc, 1, sizeof *s);
    if (!s) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    s->alloc = alloc;
    s->p = p;
    s->maps = maps;
    s->tensors = cr_calloc(alloc, p->n_outputs ? p->n_outputs : 1, sizeof *s->tensors);
    if (!s->tensors) { cr_program_gguf_src_free(alloc, s); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
    for (uint32_t i = 0; i < p->n_outputs; i++) {
        const cr_prog_output *o = &p->outputs[i];
        cr_gguf_src_tensor *t = &s->tensors[i];
        t->name = cr_prog_str(p, o->name);
        t->shard = cr_prog_str(p, p->shards[o->shard].file_name);
        t->dtype = (cr_dtype)o->dtype;
        t->ndim = o->ndim;
        t->numel = 1;
        for (uint32_t d = 0; d < o->ndim; d++) {
            t->shape[d] = o->shape[d];
            t->numel *= o->shape[d];
        }
    }
    char *cfg = NULL;
    size_t len = 0;
    cr_status st = cr_program_aux_read(alloc, p, maps, "config.json", &cfg, &len, err);
    if (st) { cr_program_gguf_src_free(alloc, s); return st; }
    if (cfg) {
        s->config = cJSON_ParseWithLength(cfg, len);
        cr_free(alloc, cfg);
        if (!cJSON_IsObject(s->config)) {
            cr_program_gguf_src_free(alloc, s);
            return cr_fail(err, CR_ERR_FORMAT, "the output's config.json is not a JSON object");
        }
    }
    memset(src, 0, sizeof *src);
    src->dir = dir;
    src->config = s->config;
    src->tensors = s->tensors;
    src->n_tensors = p->n_outputs;
    src->read = src_read;
    src->exists = src_exists;
    src->ud = s;
    *owned = s;
    return CR_OK;
}

bool cr_gguf_out_is_gguf(const char *out)
{
    size_t n = strlen(out);
    return n > 5 && !strcmp(out + n - 5, ".gguf");
}

char *cr_gguf_out_dir_name(const cr_allocator *alloc, const char *out)
{
    size_t n = strlen(out);
    if (cr_gguf_out_is_gguf(out)) n -= 5;
    char *d = cr_malloc(alloc, n + 1);
    if (!d) return NULL;
    memcpy(d, out, n);
    d[n] = 0;
    return d;
}
