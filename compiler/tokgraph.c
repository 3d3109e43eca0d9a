/* tokgraph.c — mergekit 0.1.5's PermutedVocabulary (tokenizer/embed.py;
 * spec/tokenizer-merge.md §3, §5.3), or 0.1.4's PermutedEmbeddings (its
 * first model's dtype, no promotion; §7), as graph nodes: every input's
 * vocabulary tensor becomes an N x H tensor in the output vocabulary.
 *
 * The permutation is a row gather: an input view whose rows come from a
 * table of stored rows (cr_graph_input.rowmap, carried in the program's blob
 * pool, CR_ROWMAP_ZERO for a row of zeros), so it streams by row blocks
 * like any view. Defaults for the tokens some input lacks are built from
 * more gathers of the same tensors:
 *   Y_m = where(has_m, X_m[p_m], D)
 *   D   = where(from_k, X_k[row_k], ... where(from_j, X_j[row_j], avg))
 *   avg = (((0 + X_1[p_1]) + X_2[p_2]) + ...) / count
 * with each add and the division rounded to the promoted dtype, as torch
 * does one `embed + x` at a time; a model that lacks the token adds a zero
 * row, which changes nothing (the sum starts at +0, so it is never -0).
 * The 0/1 masks and the counts are gathers from two tiny constant tensors.
 */
#include <string.h>

#include "config.h"
#include "tokgraph.h"

#define ZERO CR_ROWMAP_ZERO

typedef enum { D_NONE = 0, D_ROW, D_ZERO, D_AVG } dkind;

/* an input view of file tensor `s` gathered by `map` (rows entries), cast
 * to the recipe dtype and then to dt, as GatherTensors and the promotion do */
static uint32_t gather(cr_graph *g, uint32_t d, const cr_graph_input *file, const uint32_t *map, uint64_t rows,
                       cr_dtype recipe, cr_dtype dt)
{
    cr_graph_input gi = *file;
    gi.rows = rows;
    gi.rowmap = map;
    uint32_t ii = cr_graph_add_input(g, &gi);
    if (ii == UINT32_MAX) return CR_NO_NODE;
    cr_node n = { .op = CR_GOP_INPUT, .dtype = (uint8_t)gi.dtype, .rdt = (uint8_t)gi.dtype,
                  .kind = CR_VK_TENSOR, .domain = d, .attr = ii };
    uint32_t node = cr_graph_add(g, &n);
    cr_dtype steps[2] = { recipe, dt };
    for (int i = 0; i < 2 && node != CR_NO_NODE; i++) {
        if (steps[i] == CR_DTYPE_NONE || steps[i] == g->nodes[node].dtype) continue;
        cr_node c = { .op = CR_GOP_MOV, .dtype = (uint8_t)steps[i], .rdt = (uint8_t)steps[i],
                      .kind = CR_VK_TENSOR, .domain = d, .n_in = 1, .in = { node } };
        node = cr_graph_add(g, &c);
    }
    return node;
}

/* rows x cols f32 constant whose row r holds the value r: gathered, the
 * masks (rows 0 and 1) and the counts */
static uint32_t table(cr_graph *g, uint32_t d, uint64_t cols, uint32_t n_vals, const uint32_t *map, uint64_t rows,
                      const cr_allocator *a)
{
    float *v = cr_malloc(a, (size_t)n_vals * (size_t)cols * sizeof *v + 1);
    if (!v) return CR_NO_NODE;
    for (uint32_t r = 0; r < n_vals; r++)
        for (uint64_t c = 0; c < cols; c++) v[r * cols + c] = (float)r;
    cr_graph_input gi = { .dtype = CR_DTYPE_F32, .rows = rows, .cols = cols, .src_rows = n_vals, .src_cols = cols,
                          .tensor = "tokenizer merge table", .nbytes = (uint64_t)n_vals * cols * sizeof *v,
                          .blob = v, .rowmap = map };
    uint32_t ii = cr_graph_add_input(g, &gi);
    cr_free(a, v);
    if (ii == UINT32_MAX) return CR_NO_NODE;
    cr_node n = { .op = CR_GOP_INPUT, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32, .kind = CR_VK_TENSOR,
                  .domain = d, .attr = ii };
    return cr_graph_add(g, &n);
}

static uint32_t op3(cr_graph *g, uint32_t d, cr_gop op, cr_dtype dt, uint32_t a, uint32_t b, uint32_t c, int n_in)
{
    if (a == CR_NO_NODE || b == CR_NO_NODE || (n_in == 3 && c == CR_NO_NODE)) return CR_NO_NODE;
    cr_node n = { .op = (uint16_t)op, .dtype = (uint8_t)dt, .rdt = (uint8_t)dt, .kind = CR_VK_TENSOR,
                  .domain = d, .n_in = (uint8_t)n_in, .in = { a, b, c } };
    return cr_graph_add(g, &n);
}

cr_status cr_tokgraph_inputs(const cr_tokmerge *tm, const cr_plan *plan, const cr_plan_stage *st, const char *name,
                             uint32_t d, const cr_graph_input *files, uint32_t k, cr_graph *g, uint32_t *nodes,
                             cr_dtype *dt_out, cr_error *err)
{
    const cr_allocator *a = g->alloc;
    uint64_t N = tm->n, R = tm->n_pad, H = files[0].cols;      /* R > N: pad_to_multiple_of */
    /* 0.1.4's PermutedEmbeddings works in its first model's dtype (no
     * promotion): the rows of the others are cast to it */
    bool v014 = tm->mk == CR_MK_0_1_4;
    cr_dtype dt = CR_DTYPE_NONE;
    for (uint32_t j = 0; j < k; j++) {
        if (files[j].cols != H)
            return cr_fail(err, CR_ERR_CONFIG, "%s: Non-vocabulary dimensions must match (%s has %llu columns, %s %llu)",
                           name, plan->models[files[0].model].ref, (unsigned long long)H,
                           plan->models[files[j].model].ref, (unsigned long long)files[j].cols);
        cr_dtype x = st->dtype != CR_DTYPE_NONE ? st->dtype : files[j].dtype;
        dt = !j ? x : v014 ? dt : cr_dtype_promote(dt, x);
    }
    *dt_out = dt;
    int bj = -1;                /* the base among this tensor's inputs (assign_embedding_sources) */
    for (uint32_t j = 0; j < k; j++)
        if (st->base_model >= 0 && files[j].model == (uint32_t)st->base_model) { bj = (int)j; break; }
    /* one block: per input its own rows (pmap), its rows in averages, its
     * donated rows and the rows it donates (from), then the counts */
    size_t per = (size_t)R + 1;
    uint32_t *buf = cr_calloc(a, (size_t)(4 * k + 1) * per, sizeof *buf);
    uint8_t *kind = cr_calloc(a, per, 1);
    if (!buf || !kind) { cr_free(a, buf); cr_free(a, kind); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
    uint32_t *pmap = buf, *avgmap = buf + k * per, *rowmap = buf + 2 * k * per, *from = buf + 3 * k * per;
    uint32_t *cnt = buf + 4 * k * per;
    int32_t *cfg_of = cr_malloc(a, per * sizeof *cfg_of);
    if (!cfg_of) { cr_free(a, buf); cr_free(a, kind); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
    for (uint64_t i = 0; i < N; i++) cfg_of[i] = -1;
    for (uint32_t c = 0; c < st->n_tokens; c++) cfg_of[tm->cfg_id[c]] = (int32_t)c;
    bool any_default = false, any_avg = false;
    uint32_t max_cnt = 1;
    cr_status s = CR_OK;
    for (uint64_t i = 0; i < N && !s; i++) {
        uint32_t have = 0, last = 0;
        const cr_token_cfg *uc = cfg_of[i] >= 0 ? &st->tokens[cfg_of[i]] : NULL;
        bool force = uc && uc->force;
        for (uint32_t j = 0; j < k; j++) {
            int32_t p = tm->perm[files[j].model][i];
            if (p >= 0 && (uint64_t)p >= files[j].src_rows) {
                s = cr_fail(err, CR_ERR_CONFIG, "%s: %s's token '%s' is row %d, but the tensor has %llu rows", name,
                            plan->models[files[j].model].ref, tm->tokens[i], p, (unsigned long long)files[j].src_rows);
                break;
            }
            pmap[j * per + i] = p >= 0 && !force ? (uint32_t)p : ZERO;
            avgmap[j * per + i] = rowmap[j * per + i] = ZERO;
            from[j * per + i] = 0;
            if (p >= 0) { have++; last = j; }
        }
        if (s) break;
        cnt[i] = 1;
        /* 0.1.4 computes the user's source for every configured token,
         * needed or not, and cannot build a zero row: its
         * compute_default_embedding returns an unset variable for `kind:
         * zero`, and the automatic zero source of a token no input has
         * (ZeroEmbedding() without `kind`) fails pydantic validation */
        if (v014 && uc && uc->kind == CR_TOKSRC_ZERO) {
            s = cr_fail(err, CR_ERR_UNSUPPORTED, "%s: tokenizer.tokens.%s: source {kind: zero} fails in mergekit 0.1.4 "
                        "(UnboundLocalError in compute_default_embedding); --mergekit-version 0.1.5 writes a zero row",
                        name, uc->token);
            break;
        }
        if (v014 && !uc && have == 0) {
            s = cr_fail(err, CR_ERR_UNSUPPORTED, "%s: token '%s' is in none of the input models, and mergekit 0.1.4 "
                        "fails building its zero row (ZeroEmbedding: Field required: kind); give it a source under "
                        "tokenizer.tokens, or use --mergekit-version 0.1.5", name, tm->tokens[i]);
            break;
        }
        if (uc && (force || have < k || v014)) {
            /* the user's source (compute_default_embedding) */
            any_default = true;
            if (uc->kind == CR_TOKSRC_ZERO) { kind[i] = D_ZERO; continue; }
            if (uc->kind == CR_TOKSRC_NONE) {
                s = cr_fail(err, CR_ERR_CONFIG, "%s: tokenizer.tokens.%s has no source, but %s: mergekit %s "
                            "fails (NotImplementedError)", name, uc->token,
                            v014 ? "every listed token gets a row"
                                 : force ? "it is forced" : "a model lacks the token", cr_mk_name(tm->mk));
                break;
            }
            int jm = -1;
            for (uint32_t j = 0; j < k && jm < 0; j++)
                if ((int)files[j].model == tm->cfg_model[cfg_of[i]]) jm = (int)j;
            if (jm < 0) {
                s = v014 ? cr_fail(err, CR_ERR_CONFIG, "%s: tokenizer.tokens.%s names model %s, which has no such "
                                   "tensor among this merge's inputs: mergekit 0.1.4 fails (KeyError / \"Model %s "
                                   "referenced but not part of merge\")", name, uc->token, uc->model, uc->model)
                         : cr_fail(err, CR_ERR_CONFIG, "%s: Token '%s' requires a vocabulary weight from model %s, "
                                   "but that weight is missing", name, uc->token, uc->model);
                break;
            }
            long long r = uc->kind == CR_TOKSRC_MODEL ? tm->perm[files[jm].model][i] : tm->cfg_row[cfg_of[i]];
            if (uc->kind == CR_TOKSRC_MODEL && r < 0) {
                s = cr_fail(err, CR_ERR_CONFIG, "%s: Token '%s' not found in model %s", name, uc->token, uc->model);
                break;
            }
            if (r < 0 || (uint64_t)r >= files[jm].src_rows) {
                s = cr_fail(err, CR_ERR_CONFIG, "%s: Token ID %lld out of range for model %s", name, r, uc->model);
                break;
            }
            kind[i] = D_ROW;
            rowmap[jm * per + i] = (uint32_t)r;
            from[jm * per + i] = 1;
            continue;
        }
        kind[i] = have == k ? D_NONE : have == 1 ? D_ROW : have == 0 ? D_ZERO
                  : bj >= 0 && tm->perm[files[bj].model][i] >= 0 ? D_ROW : D_AVG;
        if (kind[i] == D_NONE) continue;
        any_default = true;
        if (kind[i] == D_ROW) {
            uint32_t j = have == 1 ? last : (uint32_t)bj;
            rowmap[j * per + i] = (uint32_t)tm->perm[files[j].model][i];
            from[j * per + i] = 1;
        } else if (kind[i] == D_AVG) {
            any_avg = true;
            for (uint32_t j = 0; j < k; j++) avgmap[j * per + i] = pmap[j * per + i];
            cnt[i] = have;
            if (have > max_cnt) max_cnt = have;
        }
    }
    for (uint64_t i = N; i < R; i++) {      /* padding rows: zeros until the mean below */
        for (uint32_t j = 0; j < k; j++) {
            pmap[j * per + i] = avgmap[j * per + i] = rowmap[j * per + i] = ZERO;
            from[j * per + i] = 0;
        }
        cnt[i] = 1;
    }
    for (uint32_t j = 0; j < k && !s; j++) {
        nodes[j] = gather(g, d, &files[j], pmap + j * per, R, st->dtype, dt);
        if (nodes[j] == CR_NO_NODE) s = cr_graph_add_failed(g, name, err);
    }
    if (!s && any_default) {
        /* D: the averages, then each model's donated rows over them */
        uint32_t D;
        if (any_avg) {
            cr_node z = { .op = CR_GOP_CONST, .dtype = (uint8_t)dt, .rdt = (uint8_t)dt, .kind = CR_VK_SCALAR,
                          .domain = CR_NO_DOMAIN, .value = 0 };
            D = cr_graph_add(g, &z);
            /* 0.1.4: `embed += x` adds x in its own dtype to the running
             * sum (the pair computed in the wider one), rounded to dt */
            for (uint32_t j = 0; j < k && D != CR_NO_NODE; j++)
                D = op3(g, d, CR_GOP_ADD, dt, D,
                        gather(g, d, &files[j], avgmap + j * per, R, st->dtype, v014 ? CR_DTYPE_NONE : dt), 0, 2);
            D = op3(g, d, CR_GOP_DIV, dt, D, table(g, d, H, max_cnt + 1, cnt, R, a), 0, 2);
        } else {
            cr_node z = { .op = CR_GOP_CONST, .dtype = (uint8_t)dt, .rdt = (uint8_t)dt, .kind = CR_VK_SCALAR,
                          .domain = CR_NO_DOMAIN, .value = 0 };
            D = cr_graph_add(g, &z);
        }
        for (uint32_t j = 0; j < k && D != CR_NO_NODE; j++) {
            bool used = false;
            for (uint64_t i = 0; i < N && !used; i++) used = from[j * per + i];
            if (!used) continue;
            D = op3(g, d, CR_GOP_WHERE, dt, table(g, d, H, 2, from + j * per, R, a),
                    gather(g, d, &files[j], rowmap + j * per, R, st->dtype, dt), D, 3);
        }
        /* Y_m: its own row where it has the token, else D */
        for (uint32_t j = 0; j < k && D != CR_NO_NODE; j++) {
            bool all = true;
            for (uint64_t i = 0; i < R; i++) {
                from[j * per + i] = pmap[j * per + i] != ZERO;
                all = all && (i >= N || from[j * per + i]);
            }
            if (all) continue;
            nodes[j] = op3(g, d, CR_GOP_WHERE, dt, table(g, d, H, 2, from + j * per, R, a), nodes[j], D, 3);
            if (nodes[j] == CR_NO_NODE) D = CR_NO_NODE;
        }
        if (D == CR_NO_NODE) s = cr_graph_add_failed(g, name, err);
    }
    if (!s && R > N) {
        /* the padding rows: torch.mean(Y[:N], dim=0), the float32 outer
         * sum of the first N rows divided by N, rounded once to dt */
        for (uint64_t i = 0; i < R; i++) from[i] = i >= N;
        cr_node z = { .op = CR_GOP_CONST, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32, .kind = CR_VK_SCALAR,
                      .domain = CR_NO_DOMAIN, .value = (double)N };
        uint32_t cN = cr_graph_add(g, &z);
        for (uint32_t j = 0; j < k && !s; j++) {
            cr_node cs = { .op = CR_GOP_COLSUM, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32, .kind = CR_VK_COLS,
                           .domain = d, .n_in = 1, .in = { nodes[j] },
                           .attr = CR_SUM_TORCH | ((uint64_t)N << CR_COLSUM_ROWS_SHIFT) };
            uint32_t sum = nodes[j] == CR_NO_NODE || cN == CR_NO_NODE ? CR_NO_NODE : cr_graph_add(g, &cs);
            uint32_t mean = CR_NO_NODE;
            if (sum != CR_NO_NODE) {
                cr_node dv = { .op = CR_GOP_DIV, .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32, .kind = CR_VK_COLS,
                               .domain = d, .n_in = 2, .in = { sum, cN } };
                mean = cr_graph_add(g, &dv);
            }
            if (mean != CR_NO_NODE && dt != CR_DTYPE_F32) {
                cr_node mv = { .op = CR_GOP_MOV, .dtype = (uint8_t)dt, .rdt = (uint8_t)dt, .kind = CR_VK_COLS,
                               .domain = d, .n_in = 1, .in = { mean } };
                mean = cr_graph_add(g, &mv);
            }
            nodes[j] = op3(g, d, CR_GOP_WHERE, dt, table(g, d, H, 2, from, R, a), mean, nodes[j], 3);
            if (nodes[j] == CR_NO_NODE) s = cr_graph_add_failed(g, name, err);
        }
    }
    cr_free(a, buf);
    cr_free(a, kind);
    cr_free(a, cfg_of);
    return s;
}
