/* passes.c — fold, cse, dce and fuse over the graph IR.
 *
 * Every pass rewrites uses through a replacement map and flags removed nodes
 * dead, so indices stay stable and the verifier can run between passes.
 */
#include "scalar.h"
#include <string.h>
#include "passes.h"

/* Rewrite every input and output through repl (repl[i] == i: unchanged). */
static void apply_repl(cr_graph *g, const uint32_t *repl)
{
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        cr_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++) n->in[k] = repl[n->in[k]];
    }
    for (uint32_t o = 0; o < g->n_outputs; o++) g->outputs[o].node = repl[g->outputs[o].node];
    for (uint32_t i = 0; i < g->n_inputs; i++)
        if (g->inputs[i].scratch) g->inputs[i].src_node = repl[g->inputs[i].src_node];
}

static uint32_t *identity_map(cr_graph *g)
{
    uint32_t *r = cr_malloc(g->alloc, sizeof *r * (g->n_nodes ? g->n_nodes : 1));
    if (r) for (uint32_t i = 0; i < g->n_nodes; i++) r[i] = i;
    return r;
}

/* Does rounding to `to` leave every value rounded to `from` unchanged, in a
 * kernel's f32 registers? */
static bool cast_is_noop(cr_dtype from, cr_dtype to)
{
    return from == to || to == CR_DTYPE_F32 || to == CR_DTYPE_F64;
}

cr_status cr_pass_fold(cr_graph *g, cr_error *err)
{
    uint32_t *repl = identity_map(g);
    if (!repl) return cr_fail(err, CR_ERR_NOMEM, "fold: out of memory");
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        cr_node *n = &g->nodes[i];
        if (n->flags & CR_NODEF_DEAD) continue;
        for (int k = 0; k < n->n_in; k++) n->in[k] = repl[n->in[k]];
        bool all_const = n->n_in > 0;
        double a[3] = {0, 0, 0};
        for (int k = 0; k < n->n_in; k++) {
            const cr_node *m = &g->nodes[n->in[k]];
            if (m->op != CR_GOP_CONST) all_const = false;
            else a[k] = m->value;
        }
        double v;
        /* the VM's own value-op semantics (vm/scalar.h), so folding never
         * changes a result */
        if (all_const && n->kind == CR_VK_SCALAR && cr_scalar_apply(cr_gop_to_op(n->op), a[0], a[1], a[2], &v)) {
            n->op = CR_GOP_CONST;
            n->n_in = 0;
            n->value = cr_scalar_round(n->rdt, v);
            n->domain = CR_NO_DOMAIN;
            continue;
        }
        if (n->op == CR_GOP_MOV && n->kind != CR_VK_SCALAR &&
            cast_is_noop(g->nodes[n->in[0]].rdt, n->rdt))
            repl[i] = n->in[0];
    }
    apply_repl(g, repl);
    cr_free(g->alloc, repl);
    return cr_pass_dce(g, err);
}

/* ---- cse ---------------------------------------------------------------- */

static uint64_t node_hash(const cr_node *n)
{
    uint64_t h = 1469598103934665603ull;
    uint64_t parts[8] = { n->op, n->dtype, n->rdt, n->kind, n->flags, n->domain,
                          ((uint64_t)n->in[0] << 32) ^ n->in[1], ((uint64_t)n->in[2] << 32) ^ n->n_in };
    for (int i = 0; i < 8; i++) { h ^= parts[i]; h *= 1099511628211ull; }
    uint64_t vb;
    memcpy(&vb, &n->value, 8);
    h ^= vb; h *= 1099511628211ull;
    h ^= n->attr; h *= 1099511628211ull;
    return h ^ (h >> 29);
}

static bool node_same(const cr_node *a, const cr_node *b)
{
    if (a->op != b->op || a->dtype != b->dtype || a->rdt != b->rdt || a->kind != b->kind ||
        a->flags != b->flags || a->domain != b->domain || a->n_in != b->n_in || a->attr != b->attr)
        return false;
    for (int k = 0; k < a->n_in; k++) if (a->in[k] != b->in[k]) return false;
    return memcmp(&a->value, &b->value, sizeof a->value) == 0;
}

cr_status cr_pass_cse(cr_graph *g, cr_error *err)
{
    uint32_t cap = 16;
    while (cap < g->n_nodes * 2u) cap *= 2;
    uint32_t *table = cr_malloc(g->alloc, sizeof *table * cap);
    uint32_t *repl = identity_map(g);
    if (!table || !repl) {
        cr_free(g->alloc, table); cr_free(g->alloc, repl);
        return cr_fail(err, CR_ERR_NOMEM, "cse: out of memory");
    }
    memset(table, 0xff, sizeof *table * cap);
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        cr_node *n = &g->nodes[i];
        if (n->flags & CR_NODEF_DEAD) continue;
        for (int k = 0; k < n->n_in; k++) n->in[k] = repl[n->in[k]];
        uint32_t h = (uint32_t)node_hash(n) & (cap - 1);
        while (table[h] != UINT32_MAX && !node_same(&g->nodes[table[h]], n)) h = (h + 1) & (cap - 1);
        if (table[h] == UINT32_MAX) table[h] = i;
        else { repl[i] = table[h]; n->flags |= CR_NODEF_DEAD; }
    }
    apply_repl(g, repl);
    cr_free(g->alloc, table);
    cr_free(g->alloc, repl);
    return CR_OK;
}

cr_status cr_pass_dce(cr_graph *g, cr_error *err)
{
    uint8_t *live = cr_calloc(g->alloc, g->n_nodes ? g->n_nodes : 1, 1);
    if (!live) return cr_fail(err, CR_ERR_NOMEM, "dce: out of memory");
    for (uint32_t o = 0; o < g->n_outputs; o++) live[g->outputs[o].node] = 1;
    for (uint32_t i = g->n_nodes; i-- > 0;) {
        if (!live[i]) continue;
        const cr_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++) live[n->in[k]] = 1;
        /* a stage output read by a later stage: its producer must live */
        if (n->op == CR_GOP_INPUT && g->inputs[n->attr].scratch) {
            uint32_t s = g->inputs[n->attr].src_node;
            live[s] = 1;
            /* producers have lower indices, so the downward sweep sees them */
        }
    }
    for (uint32_t i = 0; i < g->n_nodes; i++)
        if (!live[i]) g->nodes[i].flags |= CR_NODEF_DEAD;
    cr_free(g->alloc, live);
    return CR_OK;
}

/* ---- fuse ---------------------------------------------------------------- */

static bool is_reduction(uint16_t op)
{
    return op == CR_GOP_SUM || op == CR_GOP_ROWSUM || op == CR_GOP_ROWMAX || op == CR_GOP_COLSUM;
}

cr_status cr_pass_fuse(cr_graph *g, cr_error *err)
{
    uint32_t *lv = cr_graph_levels(g);
    uint32_t *start = cr_calloc(g->alloc, (size_t)g->n_domains + 1, sizeof *start);
    uint32_t *of = cr_malloc(g->alloc, ((size_t)g->n_nodes + 1) * sizeof *of);
    if (!lv || !start || !of) {
        cr_free(g->alloc, lv); cr_free(g->alloc, start); cr_free(g->alloc, of);
        return cr_fail(err, CR_ERR_NOMEM, "fuse: out of memory");
    }
    /* one kernel per level a domain's nodes reach: every item the emitter
     * schedules in a domain is at one of those levels */
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const cr_node *n = &g->nodes[i];
        if (!(n->flags & CR_NODEF_DEAD) && n->domain != CR_NO_DOMAIN)
            start[n->domain + 1] = CR_MAX(start[n->domain + 1], lv[i] + 1);
    }
    for (uint32_t d = 0; d < g->n_domains; d++) start[d + 1] += start[d];
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const cr_node *n = &g->nodes[i];
        of[i] = CR_NO_KERNEL;
        if ((n->flags & CR_NODEF_DEAD) || n->domain == CR_NO_DOMAIN) continue;
        if (is_reduction(n->op)) of[i] = start[n->domain] + lv[n->in[0]];
        else if (n->kind != CR_VK_SCALAR) of[i] = start[n->domain] + lv[i];
    }
    cr_free(g->alloc, lv);
    cr_free(g->alloc, g->kernel_start);
    cr_free(g->alloc, g->kernel_of);
    g->kernel_start = start;
    g->kernel_of = of;
    g->n_kernels = start[g->n_domains];
    return CR_OK;
}
