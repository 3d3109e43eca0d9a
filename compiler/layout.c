/* layout.c — shard planning and safetensors headers for a program's outputs.
 *
 * Applies mergekit's sharding rule, file names and index json (formats/shards.h)
 * to the program's outputs. Header bytes come from cr_st_layout
 * (formats/safetensors.h), so they are byte-identical to Python's safetensors.
 */
#include <stdio.h>
#include <string.h>
#include "layout.h"
#include "safetensors.h"
#include "mkversion.h"
#include "shards.h"

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

static cr_status add_aux_blob(cr_program *p, const char *dest, const char *text, size_t len, cr_error *err)
{
    cr_prog_aux aux = { .kind = CR_AUX_WRITE };
    cr_status st = cr_program_add_blob(p, text, len, &aux.content, err);
    if (!st) st = cr_program_add_blob(p, dest, strlen(dest), &aux.dest, err);
    if (st) return st;
    cr_prog_aux *na = cr_realloc(p->alloc, p->aux, sizeof *na * (p->n_aux + 1));
    if (!na) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    p->aux = na;
    p->aux[p->n_aux++] = aux;
    return CR_OK;
}

cr_status cr_layout_tensors(cr_program *p, uint64_t max_shard_bytes, const cr_layout_tensor *groups,
                            uint32_t n_groups, cr_error *err)
{
    uint32_t n = groups ? n_groups : p->n_outputs;
    uint64_t *nbytes = cr_calloc(p->alloc, n + 1, sizeof *nbytes);
    const char **names = cr_calloc(p->alloc, n + 1, sizeof *names);
    cr_st_entry *ents = cr_calloc(p->alloc, n + 1, sizeof *ents);
    uint32_t *idx = cr_calloc(p->alloc, n + 1, sizeof *idx);
    cr_layout_tensor *ts = cr_calloc(p->alloc, n + 1, sizeof *ts);
    cr_prog_shard *shards = NULL;
    cr_shard_plan plan = {0};
    cr_status st = CR_OK;
    if (!nbytes || !names || !ents || !idx || !ts) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory planning shards"); goto done; }
    /* one tensor per output unless grouped; a group's parts are consecutive
     * outputs of one dtype whose bytes fill the tensor in order */
    uint32_t next = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (groups) {
            ts[i] = groups[i];
        } else {
            const cr_prog_output *o = &p->outputs[i];
            ts[i] = (cr_layout_tensor){ .first = i, .count = 1, .ndim = o->ndim };
            memcpy(ts[i].shape, o->shape, sizeof ts[i].shape);
        }
        if (ts[i].first != next || !ts[i].count || ts[i].first + ts[i].count > p->n_outputs) {
            st = cr_fail(err, CR_ERR_ARG, "layout: tensor %u does not cover the next outputs in order", i);
            goto done;
        }
        next += ts[i].count;
        uint64_t want = cr_dtype_size((cr_dtype)p->outputs[ts[i].first].dtype);
        for (uint32_t d = 0; d < ts[i].ndim; d++) want *= ts[i].shape[d];
        for (uint32_t k = ts[i].first; k < ts[i].first + ts[i].count; k++) {
            nbytes[i] += p->outputs[k].nbytes;
            if (p->outputs[k].dtype != p->outputs[ts[i].first].dtype) {
                st = cr_fail(err, CR_ERR_ARG, "layout: parts of one tensor with different dtypes");
                goto done;
            }
        }
        if (nbytes[i] != want) {
            st = cr_fail(err, CR_ERR_ARG, "layout: tensor %u: parts hold %llu bytes, its shape %llu", i,
                         (unsigned long long)nbytes[i], (unsigned long long)want);
            goto done;
        }
    }
    if (next != p->n_outputs) { st = cr_fail(err, CR_ERR_ARG, "layout: tensors leave outputs uncovered"); goto done; }
    if ((st = cr_shard_plan_init(&plan, p->alloc, nbytes, n, max_shard_bytes, err))) goto done;
    shards = cr_calloc(p->alloc, plan.n_shards, sizeof *shards);
    if (!shards) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory planning shards"); goto done; }
    for (uint32_t s = 0; s < plan.n_shards && !st; s++) {
        size_t m = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (plan.shard_of[i] != s) continue;
            const cr_prog_output *o = &p->outputs[ts[i].first];
            ents[m] = (cr_st_entry){ .name = ts[i].name ? ts[i].name : cr_prog_str(p, o->name),
                                     .dtype = (cr_dtype)o->dtype, .ndim = ts[i].ndim };
            memcpy(ents[m].shape, ts[i].shape, sizeof ts[i].shape);
            idx[m++] = i;
        }
        uint8_t *header;
        uint64_t header_len, file_size;
        if ((st = cr_st_layout(p->alloc, ents, m, NULL, 0, &header, &header_len, &file_size, err))) break;
        char name[64];
        cr_shard_file_name(name, sizeof name, s, plan.n_shards);
        /* names point into the blob pool, which add_blob may move: copy offsets first */
        for (size_t k = 0; k < m; k++) {
            const cr_layout_tensor *t = &ts[idx[k]];
            uint64_t off = ents[k].offset;
            for (uint32_t j = t->first; j < t->first + t->count; j++) {
                p->outputs[j].shard = s;
                p->outputs[j].offset = off;
                off += p->outputs[j].nbytes;
            }
        }
        st = cr_program_add_blob(p, header, header_len, &shards[s].header, err);
        cr_free(p->alloc, header);
        if (!st) st = cr_program_add_blob(p, name, strlen(name), &shards[s].file_name, err);
        shards[s].file_size = file_size;
    }
    if (!st) {
        /* mergekit writes the index only for two or more shards; crucible
         * always does, since the VM records the shard hashes in it
         * (formats/outhash.h). Loaders read a lone model.safetensors first. */
        for (uint32_t i = 0; i < n; i++)
            names[i] = ts[i].name ? ts[i].name : cr_prog_str(p, p->outputs[ts[i].first].name);
        size_t len;
        const char *mk = p->mergekit_version.len ? cr_prog_str(p, p->mergekit_version) : cr_mk_name(CR_MK_DEFAULT);
        char *json = cr_shard_index_json(&plan, names, mk, &len);
        if (!json) st = cr_fail(err, CR_ERR_NOMEM, "out of memory writing the shard index");
        else {
            st = add_aux_blob(p, "model.safetensors.index.json", json, len, err);
            cr_free(p->alloc, json);
        }
    }
    if (!st) {
        cr_free(p->alloc, p->shards);
        p->shards = shards;
        p->n_shards = plan.n_shards;
        shards = NULL;
    }
done:
    cr_shard_plan_free(&plan);
    cr_free(p->alloc, shards);
    cr_free(p->alloc, ents);
    cr_free(p->alloc, idx);
    cr_free(p->alloc, names);
    cr_free(p->alloc, nbytes);
    cr_free(p->alloc, ts);
    return st;
}

cr_status cr_layout_outputs(cr_program *p, uint64_t max_shard_bytes, cr_error *err)
{
    return cr_layout_tensors(p, max_shard_bytes, NULL, 0, err);
}
