/* front_support.c — synthetic models for the front end's tests.
 * Test code: plain malloc.
 */
#include "front_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <ftw.h>
#include <unistd.h>

#include "safetensors.h"

char *front_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/crucible-front-XXXXXX", base && *base ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

void front_rmtree(const char *path)
{
    if (path) nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

typedef struct tlist {
    cr_st_entry e[4096];
    size_t n;
} tlist;

static void add(tlist *t, const char *name, cr_dtype dt, int ndim, long d0, long d1)
{
    cr_st_entry *e = &t->e[t->n++];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    e->dtype = dt;
    e->ndim = (uint32_t)ndim;
    e->shape[0] = (uint64_t)d0;
    e->shape[1] = (uint64_t)d1;
}

bool front_write_model(const char *dir, const char *name, const front_model_spec *s)
{
    char path[1024], tn[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    mkdir(dir, 0755);
    if (mkdir(path, 0755) && access(path, F_OK)) return false;
    cr_dtype dt;
    if (!cr_dtype_parse(s->dtype ? s->dtype : "BF16", &dt)) return false;
    tlist *t = calloc(1, sizeof *t);
    int H = s->hidden, I = s->intermediate, V = s->vocab;
    add(t, "model.embed_tokens.weight", dt, 2, V, H);
    for (int l = 0; l < s->layers; l++) {
        static const char *const sq[] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj" };
        snprintf(tn, sizeof tn, "model.layers.%d.input_layernorm.weight", l);
        add(t, tn, dt, 1, H, 0);
        for (int k = 0; k < 4; k++) {
            snprintf(tn, sizeof tn, "model.layers.%d.%s.weight", l, sq[k]);
            add(t, tn, dt, 2, H, H);
        }
        snprintf(tn, sizeof tn, "model.layers.%d.post_attention_layernorm.weight", l);
        add(t, tn, dt, 1, H, 0);
        snprintf(tn, sizeof tn, "model.layers.%d.mlp.gate_proj.weight", l);
        add(t, tn, dt, 2, I, H);
        snprintf(tn, sizeof tn, "model.layers.%d.mlp.up_proj.weight", l);
        add(t, tn, dt, 2, I, H);
        snprintf(tn, sizeof tn, "model.layers.%d.mlp.down_proj.weight", l);
        add(t, tn, dt, 2, H, I);
    }
    add(t, "model.norm.weight", dt, 1, H, 0);
    if (s->lm_head) add(t, "lm_head.weight", dt, 2, V, H);
    const void **data = calloc(t->n, sizeof *data);
    static const uint8_t zeros[1 << 16];
    for (size_t i = 0; i < t->n; i++) data[i] = zeros;
    snprintf(path, sizeof path, "%s/%s/model.safetensors", dir, name);
    cr_error err = { 0 };
    bool ok = cr_st_write_file(cr_default_allocator(), path, t->e, data, t->n, &err) == CR_OK;
    if (!ok) fprintf(stderr, "front_write_model: %s\n", err.msg);
    for (size_t i = 0; i < t->n; i++) free((void *)t->e[i].name);
    free(data);
    free(t);
    if (ok && !s->no_config) {
        snprintf(path, sizeof path, "%s/%s/config.json", dir, name);
        FILE *f = fopen(path, "w");
        if (!f) return false;
        fprintf(f, "{\"architectures\": [\"%s\"], \"model_type\": \"mistral\", \"hidden_size\": %d, "
                   "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"vocab_size\": %d, "
                   "\"tie_word_embeddings\": %s, \"torch_dtype\": \"bfloat16\"}\n",
                s->arch ? s->arch : "MistralForCausalLM", H, I, s->layers, V, s->tie ? s->tie : s->lm_head ? "false" : "true");
        fclose(f);
    }
    return ok;
}
