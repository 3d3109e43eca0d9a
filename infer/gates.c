/* gates.c — router vector math for mergekit-moe (see gates.h): `hidden` /
 * `hidden_avg` in mergekit's bf16 padded-batch form or in f32, cheap_embed,
 * and the random transforms. In f32 and cheap_embed, sums are accumulated
 * in double and rounded once, so the order of prompts does not matter
 * beyond the last bit; the bf16 path rounds where torch rounds. */
#include "gates.h"

#include <math.h>
#include <string.h>

#include "dtype.h"

cr_status cr_gate_tokenize_prompt(const cr_tokenizer *tok, const char *bos, const char *prompt,
                                  cr_vec *ids, cr_error *err)
{
    size_t bl = bos ? strlen(bos) : 0, pl = strlen(prompt);
    char *text = cr_malloc(ids->alloc, bl + pl + 1);
    if (!text) return cr_fail(err, CR_ERR_NOMEM, "out of memory tokenizing a prompt");
    if (bl) memcpy(text, bos, bl);
    memcpy(text + bl, prompt, pl + 1);
    cr_status st = cr_tokenizer_encode(tok, text, bl + pl, false, ids, err);
    cr_free(ids->alloc, text);
    return st;
}

static void normalize(double *v, size_t n)
{
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += v[i] * v[i];
    double nrm = sqrt(ss);
    if (nrm < 1e-8) nrm = 1e-8;
    for (size_t i = 0; i < n; i++) v[i] /= nrm;
}

/* ---- f32: each prompt unpadded, sums in double ---------------------------- */

/* acc[L*H] += pool(hs[l]) of each prompt */
static cr_status sum_hidden_f32(const cr_llm *llm, cr_gate_pool pool, const cr_id_list *ps, size_t n, double *acc,
                                float *hs, cr_error *err)
{
    size_t L = llm->cfg.n_layers, H = llm->cfg.hidden;
    for (size_t p = 0; p < n; p++) {
        size_t T = ps[p].n;
        if (!T) return cr_fail(err, CR_ERR_ARG, "prompt %zu tokenizes to nothing", p);
        cr_llm_run run = { .ids = ps[p].ids, .n_ids = T, .stop_layer = (uint32_t)(L - 1) };
        if (pool == CR_GATE_POOL_AVG) run.hidden_all = hs;
        else run.hidden_last = hs;
        cr_status st = cr_llm_forward(llm, &run, err);
        if (st) return st;
        if (pool == CR_GATE_POOL_LAST) {
            for (size_t i = 0; i < L * H; i++) acc[i] += hs[i];
            continue;
        }
        for (size_t l = 0; l < L; l++)
            for (size_t i = 0; i < H; i++) {
                double sum = 0;
                for (size_t t = 0; t < T; t++) sum += hs[(l * T + t) * H + i];
                acc[l * H + i] += sum / (double)T;
            }
    }
    return CR_OK;
}

static cr_status gate_f32(const cr_llm *llm, cr_gate_pool pool, const cr_id_list *pos, size_t n_pos,
                          const cr_id_list *neg, size_t n_neg, size_t max_T, float *out, cr_error *err)
{
    size_t L = llm->cfg.n_layers, H = llm->cfg.hidden;
    const cr_allocator *A = llm->alloc;
    double *p = cr_calloc(A, L * H, sizeof(double)), *q = cr_calloc(A, L * H, sizeof(double));
    float *hs = cr_calloc(A, (L + 1) * (pool == CR_GATE_POOL_AVG ? max_T : 1) * H, sizeof(float));
    cr_status st = CR_OK;
    if (!p || !q || !hs) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory computing gates"); goto out; }
    if ((st = sum_hidden_f32(llm, pool, pos, n_pos, p, hs, err))) goto out;
    if (n_neg && (st = sum_hidden_f32(llm, pool, neg, n_neg, q, hs, err))) goto out;
    for (size_t l = 0; l < L; l++) {
        double *v = p + l * H;
        for (size_t i = 0; i < H; i++) v[i] = v[i] / (double)n_pos - (n_neg ? q[l * H + i] / (double)n_neg : 0.0);
        normalize(v, H);
        for (size_t i = 0; i < H; i++) out[l * H + i] = (float)v[i];
    }
out:
    cr_free(A, p);
    cr_free(A, q);
    cr_free(A, hs);
    return st;
}

/* ---- bf16: mergekit's padded batch ------------------------------------------ */

#define BF cr_round_bf16

/* mergekit's get_hidden_states for one prompt list: res[L*H] (bf16 values) =
 * mean over the batch of pool(hs[l]). torch reduces bf16 tensors with f32
 * accumulation and one rounding, and `x / n` is a bf16 op (rounded). */
static cr_status batch_hidden_bf16(const cr_llm *llm, const cr_gate_hidden_opts *o, const cr_id_list *ps, size_t n,
                                   float *res, float *hs, int32_t *ids, float *acc, cr_error *err)
{
    size_t L = llm->cfg.n_layers, H = llm->cfg.hidden, T = 0;
    for (size_t p = 0; p < n; p++) {
        if (!ps[p].n) return cr_fail(err, CR_ERR_ARG, "prompt %zu tokenizes to nothing", p);
        if (ps[p].n > T) T = ps[p].n;
    }
    bool padded = false;
    for (size_t p = 0; p < n; p++) padded |= ps[p].n < T;
    if (padded && o->pad_id < 0)
        return cr_fail(err, CR_ERR_ARG, "prompts of different lengths need padding, and the tokenizer has neither a "
                       "bos nor an eos token to pad with (use --gate-precision f32)");
    for (size_t i = 0; i < L * H; i++) acc[i] = 0;
    for (size_t p = 0; p < n; p++) {
        size_t np = T - ps[p].n;
        for (size_t t = 0; t < np; t++) ids[t] = o->pad_id;
        memcpy(ids + np, ps[p].ids, ps[p].n * sizeof *ids);
        cr_llm_run run = { .ids = ids, .n_ids = T, .stop_layer = (uint32_t)(L - 1), .bf16 = true, .n_pad = np,
                           .sdpa_mask = padded };
        if (o->pool == CR_GATE_POOL_AVG) run.hidden_all = hs;
        else run.hidden_last = hs;
        cr_status st = cr_llm_forward(llm, &run, err);
        if (st) return st;
        if (o->pool == CR_GATE_POOL_LAST) {
            for (size_t i = 0; i < L * H; i++) acc[i] += hs[i];
            continue;
        }
        /* hidden_states.sum(dim=2) / seq_len, pads included */
        for (size_t l = 0; l < L; l++)
            for (size_t i = 0; i < H; i++) {
                float sum = 0;
                for (size_t t = 0; t < T; t++) sum += hs[(l * T + t) * H + i];
                acc[l * H + i] += BF(BF(sum) / (float)T);
            }
    }
    /* .sum(dim=1) / batch */
    for (size_t i = 0; i < L * H; i++) res[i] = BF(BF(acc[i]) / (float)n);
    return CR_OK;
}

static cr_status gate_bf16(const cr_llm *llm, const cr_gate_hidden_opts *o, const cr_id_list *pos, size_t n_pos,
                           const cr_id_list *neg, size_t n_neg, size_t max_T, float *out, cr_error *err)
{
    size_t L = llm->cfg.n_layers, H = llm->cfg.hidden;
    const cr_allocator *A = llm->alloc;
    float *q = cr_calloc(A, L * H, sizeof(float)), *acc = cr_calloc(A, L * H, sizeof(float));
    float *hs = cr_calloc(A, (L + 1) * (o->pool == CR_GATE_POOL_AVG ? max_T : 1) * H, sizeof(float));
    int32_t *ids = cr_calloc(A, max_T, sizeof(int32_t));
    cr_status st = CR_OK;
    if (!q || !acc || !hs || !ids) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory computing gates"); goto out; }
    if ((st = batch_hidden_bf16(llm, o, pos, n_pos, out, hs, ids, acc, err))) goto out;
    if (n_neg) {
        if ((st = batch_hidden_bf16(llm, o, neg, n_neg, q, hs, ids, acc, err))) goto out;
        for (size_t i = 0; i < L * H; i++) out[i] = BF(out[i] - q[i]);
    }
    /* hidden_states /= hidden_states.norm(dim=-1).clamp(min=1e-8): the norm
     * is accumulated in f32 and rounded to bf16, the division rounded too */
    for (size_t l = 0; l < L; l++) {
        float *v = out + l * H, ss = 0;
        for (size_t i = 0; i < H; i++) ss += v[i] * v[i];
        float nrm = BF(sqrtf(ss)), lo = BF(1e-8f);
        if (!(nrm >= lo)) nrm = lo;
        for (size_t i = 0; i < H; i++) v[i] = BF(v[i] / nrm);
    }
out:
    cr_free(A, q);
    cr_free(A, acc);
    cr_free(A, hs);
    cr_free(A, ids);
    return st;
}

cr_status cr_gate_hidden(const cr_llm *llm, const cr_gate_hidden_opts *opts, const cr_id_list *pos, size_t n_pos,
                         const cr_id_list *neg, size_t n_neg, float *out, cr_error *err)
{
    static const cr_gate_hidden_opts dflt = { CR_GATE_POOL_LAST, CR_GATE_PRECISION_BF16, -1 };
    const cr_gate_hidden_opts *o = opts ? opts : &dflt;
    if (!n_pos) return cr_fail(err, CR_ERR_ARG, "hidden gate needs at least one positive prompt");
    size_t max_T = 1;
    for (size_t p = 0; p < n_pos; p++) if (pos[p].n > max_T) max_T = pos[p].n;
    for (size_t p = 0; p < n_neg; p++) if (neg[p].n > max_T) max_T = neg[p].n;
    if (o->precision == CR_GATE_PRECISION_F32) return gate_f32(llm, o->pool, pos, n_pos, neg, n_neg, max_T, out, err);
    return gate_bf16(llm, o, pos, n_pos, neg, n_neg, max_T, out, err);
}

static cr_status sum_embed(const cr_llm_weight *e, uint32_t vocab, const cr_id_list *ps, size_t n, double *acc,
                           float *row, cr_error *err)
{
    size_t H = e->cols, es = cr_dtype_size(e->dtype);
    for (size_t p = 0; p < n; p++)
        for (size_t t = 0; t < ps[p].n; t++) {
            int32_t id = ps[p].ids[t];
            if (id < 0 || (uint32_t)id >= vocab || (uint32_t)id >= e->rows)
                return cr_fail(err, CR_ERR_ARG, "prompt %zu token %zu: id %d is outside the vocabulary (%u)", p, t, id,
                               vocab);
            cr_convert_to_f32(e->dtype, (const char *)e->data + (size_t)id * H * es, row, H);
            for (size_t i = 0; i < H; i++) acc[i] += row[i];
        }
    return CR_OK;
}

cr_status cr_gate_cheap_embed(const cr_allocator *alloc, const cr_llm_weight *embed, uint32_t vocab, const cr_id_list *pos, size_t n_pos,
                              const cr_id_list *neg, size_t n_neg, float *out, cr_error *err)
{
    size_t H = embed->cols;
    double *acc = NULL, *nacc = NULL;
    float *row = NULL;
    cr_status st = CR_OK;
    const cr_allocator *A = alloc;
    acc = cr_calloc(A, H, sizeof(double));
    nacc = cr_calloc(A, H, sizeof(double));
    row = cr_calloc(A, H, sizeof(float));
    if (!acc || !nacc || !row) { st = cr_fail(err, CR_ERR_NOMEM, "out of memory computing gates"); goto out; }
    if ((st = sum_embed(embed, vocab, pos, n_pos, acc, row, err))) goto out;
    normalize(acc, H);
    if (n_neg) {
        if ((st = sum_embed(embed, vocab, neg, n_neg, nacc, row, err))) goto out;
        normalize(nacc, H);
        for (size_t i = 0; i < H; i++) acc[i] -= nacc[i];
        normalize(acc, H);
    }
    for (size_t i = 0; i < H; i++) out[i] = (float)acc[i];
out:
    cr_free(A, acc);
    cr_free(A, nacc);
    cr_free(A, row);
    return st;
}

void cr_gate_random_from_uniform(const float *u, size_t n, float *out)
{
    for (size_t i = 0; i < n; i += 2) {
        double r = sqrt(-2.0 * log(1.0 - (double)u[i]));
        double a = 2.0 * M_PI * (double)u[i + 1];
        out[i] = (float)(r * cos(a));
        if (i + 1 < n) out[i + 1] = (float)(r * sin(a));
    }
}

void cr_gate_uniform_from_uniform(const float *u, size_t n, uint32_t hidden, float *out)
{
    double b = 1.0 / sqrt((double)hidden);
    for (size_t i = 0; i < n; i++) out[i] = (float)((2.0 * (double)u[i] - 1.0) * b);
}
