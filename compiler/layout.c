/* layout.c — shard planning and safetensors headers for a program's outputs.
 *
 * Owns mergekit's sharding rule (flush before a tensor that would pass the
 * limit; a lone oversized tensor gets its own shard), its file names, and
 * the index json. Header bytes come from cr_st_layout (vm/safetensors.h), so
 * they are byte-identical to Python's safetensors.
 */
#include <stdio.h>
#include <string.h>
#include "layout.h"
#include "safetensors.h"

cr_status cr_program_add_blob(cr_program *p, const void *data, size_t n, cr_blob *out, cr_error *err)
{
    uint8_t *nb = cr_realloc(p->alloc, p->blobs, p->n_blob_bytes + n + 1);
    if (!nb) return cr_fail(err, CR_ERR_NOMEM, "out of memory growing the blob pool");
    p->blobs = nb;
    memcpy(nb + p->n_blob_bytes, data, n);
    nb[p->n_blob_bytes + n] = 0;
    *out = (cr_blob){ p->n_blob_bytes, n };
    p->n_blob_bytes += n + 1;
    return CR_OK;
}

/* JSON string escaping for tensor names in the index */
static size_t json_escape(char *dst, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[8];
        const char *w = tmp;
        if (c == '"' || c == '\\') { tmp[0] = '\\'; tmp[1] = (char)c; tmp[2] = 0; }
        else if (c < 0x20) snprintf(tmp, sizeof tmp, "\\u%04x", c);
        else { tmp[0] = (char)c; tmp[1] = 0; }
        for (; *w; w++) { if (dst && n < cap) dst[n] = *w; n++; }
    }
    return n;
}

cr_status cr_layout_outputs(cr_program *p, uint64_t max_shard_bytes, cr_error *err)
{
    uint32_t n = p->n_outputs;
    uint32_t *shard_of = cr_calloc(p->alloc, n + 1, sizeof *shard_of);
    if (!shard_of) return cr_fail(err, CR_ERR_NOMEM, "out of memory planning shards");
    uint32_t n_shards = 0;
    uint64_t cur = 0;
    bool open = false;
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t sz = p->outputs[i].nbytes;
        total += sz;
        if (open && max_shard_bytes > 0 && cur + sz > max_shard_bytes) { open = false; cur = 0; }
        if (!open) { n_shards++; open = true; }
        shard_of[i] = n_shards - 1;
        cur += sz;
    }
    if (n_shards == 0) n_shards = 1;   /* an empty model still gets its file */
    cr_status st = CR_OK;
    cr_prog_shard *shards = cr_calloc(p->alloc, n_shards, sizeof *shards);
    cr_st_entry *ents = cr_calloc(p->alloc, n + 1, sizeof *ents);
    uint32_t *idx = cr_calloc(p->alloc, n + 1, sizeof *idx);
    if (!shards || !ents || !idx) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory planning shards"); goto done; }
    for (uint32_t s = 0; s < n_shards && !st; s++) {
        size_t m = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (shard_of[i] != s) continue;
            const cr_prog_output *o = &p->outputs[i];
            ents[m] = (cr_st_entry){ .name = cr_prog_str(p, o->name), .dtype = (cr_dtype)o->dtype,
                                     .ndim = o->ndim };
            memcpy(ents[m].shape, o->shape, sizeof o->shape);
            idx[m++] = i;
        }
        uint8_t *header;
        uint64_t header_len, file_size;
        if ((st = cr_st_layout(p->alloc, ents, m, NULL, 0, &header, &header_len, &file_size, err))) break;
        char name[64];
        if (n_shards == 1) snprintf(name, sizeof name, "model.safetensors");
        else snprintf(name, sizeof name, "model-%05u-of-%05u.safetensors", s + 1, n_shards);
        /* names point into the blob pool, which add_blob may move: copy offsets first */
        for (size_t k = 0; k < m; k++) {
            p->outputs[idx[k]].shard = s;
            p->outputs[idx[k]].offset = ents[k].offset;
        }
        st = cr_program_add_blob(p, header, header_len, &shards[s].header, err);
        cr_free(p->alloc, header);
        if (!st) st = cr_program_add_blob(p, name, strlen(name), &shards[s].file_name, err);
        shards[s].file_size = file_size;
    }
    if (!st && n_shards > 1) {
        /* model.safetensors.index.json, weight_map in write order, indent 2 */
        size_t cap = 256;
        for (uint32_t i = 0; i < n; i++) cap += 2 * json_escape(NULL, 0, cr_prog_str(p, p->outputs[i].name)) + 64;
        char *j = cr_malloc(p->alloc, cap);
        if (!j) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory"); goto done; }
        size_t at = (size_t)snprintf(j, cap, "{\n  \"metadata\": {\n    \"total_size\": %llu,\n"
                                     "    \"mergekit_version\": \"0.1.4\"\n  },\n  \"weight_map\": {",
                                     (unsigned long long)total);
        for (uint32_t i = 0; i < n; i++) {
            at += (size_t)snprintf(j + at, cap - at, "%s\n    \"", i ? "," : "");
            at += json_escape(j + at, cap - at, cr_prog_str(p, p->outputs[i].name));
            at += (size_t)snprintf(j + at, cap - at, "\": \"model-%05u-of-%05u.safetensors\"",
                                   shard_of[i] + 1, n_shards);
        }
        at += (size_t)snprintf(j + at, cap - at, "\n  }\n}");
        cr_prog_aux aux = { .kind = CR_AUX_WRITE };
        st = cr_program_add_blob(p, j, at, &aux.content, err);
        if (!st) st = cr_program_add_blob(p, "model.safetensors.index.json", 28, &aux.dest, err);
        cr_free(p->alloc, j);
        if (!st) {
            cr_prog_aux *na = cr_realloc(p->alloc, p->aux, sizeof *na * (p->n_aux + 1));
            if (!na) st = cr_fail(err, CR_ERR_NOMEM, "out of memory");
            else { p->aux = na; p->aux[p->n_aux++] = aux; }
        }
    }
    if (!st) {
        cr_free(p->alloc, p->shards);
        p->shards = shards;
        p->n_shards = n_shards;
        shards = NULL;
    }
done:
    cr_free(p->alloc, shards);
    cr_free(p->alloc, ents);
    cr_free(p->alloc, idx);
    cr_free(p->alloc, shard_of);
    return st;
}
