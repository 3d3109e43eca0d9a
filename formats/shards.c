/* shards.c — output shard planning, shard names, the index file text and
 * the shard-size option (see shards.h for the rules). */
#include "shards.h"

#include <stdio.h>
#include <string.h>

#include "jsonw.h"

cr_status cr_shard_plan_init(cr_shard_plan *p, const cr_allocator *alloc,
                             const uint64_t *nbytes, uint32_t n, uint64_t limit, cr_error *err)
{
    memset(p, 0, sizeof *p);
    p->alloc = alloc;
    p->n_tensors = n;
    p->shard_of = cr_calloc(alloc, n ? n : 1, sizeof *p->shard_of);
    p->shard_bytes = cr_calloc(alloc, n ? n : 1, sizeof *p->shard_bytes);
    if (!p->shard_of || !p->shard_bytes) {
        cr_shard_plan_free(p);
        return cr_fail(err, CR_ERR_NOMEM, "shard plan: out of memory");
    }
    uint32_t cur = 0, in_cur = 0;
    uint64_t size = 0;
    for (uint32_t i = 0; i < n; i++) {
        /* written as "size + nbytes > limit" without overflowing */
        if (in_cur && limit > 0 && (nbytes[i] > limit || size > limit - nbytes[i])) {
            cur++;
            in_cur = 0;
            size = 0;
        }
        p->shard_of[i] = cur;
        p->shard_bytes[cur] += nbytes[i];
        size += nbytes[i];
        in_cur++;
        p->total_bytes += nbytes[i];
    }
    p->n_shards = cur + 1;
    return CR_OK;
}

void cr_shard_plan_free(cr_shard_plan *p)
{
    if (!p->alloc) return;
    cr_free(p->alloc, p->shard_of);
    cr_free(p->alloc, p->shard_bytes);
    memset(p, 0, sizeof *p);
}

void cr_shard_file_name(char *buf, size_t cap, uint32_t shard, uint32_t n_shards)
{
    if (n_shards <= 1) snprintf(buf, cap, "model.safetensors");
    else snprintf(buf, cap, "model-%05u-of-%05u.safetensors", shard + 1, n_shards);
}

char *cr_shard_index_json(const cr_shard_plan *p, const char *const *names, const char *mk_version,
                          size_t *len)
{
    cr_sbuf b;
    cr_sbuf_init(&b, p->alloc);
    cr_sbuf_printf(&b, "{\n  \"metadata\": {\n    \"total_size\": %llu,\n    \"mergekit_version\": \"%s\"\n  },\n"
                   "  \"weight_map\": {", (unsigned long long)p->total_bytes, mk_version);
    char file[64];
    for (uint32_t i = 0; i < p->n_tensors; i++) {
        cr_sbuf_adds(&b, i ? ",\n    " : "\n    ");
        cr_json_add_string(&b, names[i], strlen(names[i]), true);
        cr_sbuf_adds(&b, ": ");
        cr_shard_file_name(file, sizeof file, p->shard_of[i], p->n_shards);
        cr_json_add_string(&b, file, strlen(file), true);
    }
    cr_sbuf_adds(&b, p->n_tensors ? "\n  }\n}" : "}\n}");
    return cr_sbuf_take(&b, len);
}

cr_status cr_parse_shard_size(const char *s, uint64_t *out, cr_error *err)
{
    size_t n = s ? strlen(s) : 0;
    uint64_t mult = 1;
    if (n > 0) {
        switch (s[n - 1]) {
        case 'k': case 'K': mult = 1000ull; n--; break;
        case 'm': case 'M': mult = 1000000ull; n--; break;
        case 'b': case 'B': case 'g': case 'G': mult = 1000000000ull; n--; break;
        default: break;
        }
    }
    if (n == 0)
        return cr_fail(err, CR_ERR_ARG, "shard size '%s': expected an integer with an optional k, M or B suffix",
                       s ? s : "");
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return cr_fail(err, CR_ERR_ARG, "shard size '%s': expected an integer with an optional k, M or B suffix "
                           "(decimals such as 5.5B are not accepted)", s);
        if (v > (UINT64_MAX - 9) / 10)
            return cr_fail(err, CR_ERR_ARG, "shard size '%s': too large", s);
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > UINT64_MAX / mult) return cr_fail(err, CR_ERR_ARG, "shard size '%s': too large", s);
    *out = v * mult;
    return CR_OK;
}
