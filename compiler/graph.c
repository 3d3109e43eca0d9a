/* graph.c — the graph IR's storage, op table, verifier and dump format.
 *
 * Owns node/input/domain/output storage (growable arrays through the
 * allocator hook, strings in the arena) and the rules every pass must keep:
 * topological order, arity, kinds and domains (cr_graph_verify).
 */
#include <math.h>
#include <string.h>
#include "graph.h"
#include "limits.h"

/* arity of a CR_OPG row: its value operands among a, b, c */
#define OPG_ARITY(kinds) \
    (((kinds)[1] == 'v' || (kinds)[1] == 's') + ((kinds)[2] == 'v' || (kinds)[2] == 's') + ((kinds)[3] == 'v' || (kinds)[3] == 's'))

/* op: the VM op + 1 (0: lowered by the emitter) */
static const struct { const char *name; int arity; uint16_t op; } gop_table[] = {
    [CR_GOP_INPUT] = { "input", 0, 0 },
    [CR_GOP_CONST] = { "const", 0, 0 },
#define CR_OP(name, str, ctx, kinds, flags, red, synopsis)
#define CR_OPG(name, str, ctx, kinds, flags, red, gop, gstr, synopsis) \
    [CR_GOP_##gop] = { gstr, OPG_ARITY(kinds), CR_OP_##name + 1 },
#include "ops.def"
#undef CR_OPG
#undef CR_OP
#define X(name, str, n) [CR_GOP_##name] = { str, n, 0 },
    CR_GOP_LOWERED(X)
#undef X
};
_Static_assert(sizeof gop_table / sizeof gop_table[0] == CR_GOP_COUNT, "a row for every graph op");

const char *cr_gop_name(cr_gop op) { return op < CR_GOP_COUNT ? gop_table[op].name : "?"; }
int cr_gop_arity(cr_gop op) { return op < CR_GOP_COUNT ? gop_table[op].arity : -1; }
cr_op cr_gop_to_op(cr_gop op) { return op < CR_GOP_COUNT && gop_table[op].op ? (cr_op)(gop_table[op].op - 1) : CR_OP_COUNT; }

void cr_graph_init(cr_graph *g, const cr_allocator *alloc)
{
    memset(g, 0, sizeof *g);
    g->alloc = alloc;
    g->max_nodes = CR_LIMIT_GRAPH_NODES;
    cr_arena_init(&g->arena, alloc);
}

void cr_graph_free(cr_graph *g)
{
    cr_free(g->alloc, g->nodes);
    cr_free(g->alloc, g->inputs);
    cr_free(g->alloc, g->domains);
    cr_free(g->alloc, g->outputs);
    cr_free(g->alloc, g->messages);
    cr_free(g->alloc, g->kernel_start);
    cr_free(g->alloc, g->kernel_of);
    cr_arena_free(&g->arena);
    memset(g, 0, sizeof *g);
}

/* grow an array to hold one more item; false on allocation failure */
static bool grow(const cr_allocator *a, void **arr, uint32_t n, uint32_t *cap, size_t item)
{
    if (n < *cap) return true;
    uint32_t nc = *cap ? *cap * 2 : 64;
    void *p = cr_realloc(a, *arr, (size_t)nc * item);
    if (!p) return false;
    *arr = p;
    *cap = nc;
    return true;
}

uint32_t cr_graph_add(cr_graph *g, const cr_node *n)
{
    /* every node is made here, so the limit holds for Lua methods, MoE
     * gates and the per-tensor glue alike */
    if (g->n_nodes >= g->max_nodes) return CR_NO_NODE;
    if (!grow(g->alloc, (void **)&g->nodes, g->n_nodes, &g->cap_nodes, sizeof *n)) return CR_NO_NODE;
    g->nodes[g->n_nodes] = *n;
    return g->n_nodes++;
}

cr_status cr_graph_add_failed(const cr_graph *g, const char *where, cr_error *err)
{
    if (g->n_nodes >= g->max_nodes)
        return cr_fail(err, CR_ERR_LIMIT, "%s: the merge graph reached its limit of %u nodes "
                       "(CR_LIMIT_GRAPH_NODES)", where ? where : "graph", g->max_nodes);
    return cr_fail(err, CR_ERR_NOMEM, "%s: out of memory building the graph", where ? where : "graph");
}

uint32_t cr_graph_add_input(cr_graph *g, const cr_graph_input *in)
{
    if (!grow(g->alloc, (void **)&g->inputs, g->n_inputs, &g->cap_inputs, sizeof *in)) return UINT32_MAX;
    cr_graph_input c = *in;
    if (c.tensor && !(c.tensor = cr_arena_strdup(&g->arena, c.tensor))) return UINT32_MAX;
    if (c.path && !(c.path = cr_arena_strdup(&g->arena, c.path))) return UINT32_MAX;
    const char **strs[] = { &c.model_ref, &c.model_lookup, &c.model_rev, &c.model_dir };
    for (size_t i = 0; i < CR_ARRAY_LEN(strs); i++)
        if (*strs[i] && !(*strs[i] = cr_arena_strdup(&g->arena, *strs[i]))) return UINT32_MAX;
    if (c.blob) {
        void *copy = cr_arena_alloc(&g->arena, (size_t)c.nbytes ? (size_t)c.nbytes : 1);
        if (!copy) return UINT32_MAX;
        memcpy(copy, c.blob, (size_t)c.nbytes);
        c.blob = copy;
    }
    g->inputs[g->n_inputs] = c;
    return g->n_inputs++;
}

uint32_t cr_graph_add_domain(cr_graph *g, uint64_t rows, uint64_t cols, const char *name, int stage)
{
    if (!grow(g->alloc, (void **)&g->domains, g->n_domains, &g->cap_domains, sizeof *g->domains))
        return UINT32_MAX;
    cr_graph_domain d = { rows, cols, name ? cr_arena_strdup(&g->arena, name) : NULL, stage };
    if (name && !d.name) return UINT32_MAX;
    g->domains[g->n_domains] = d;
    return g->n_domains++;
}

uint32_t cr_graph_add_output(cr_graph *g, const cr_graph_output *out)
{
    if (!grow(g->alloc, (void **)&g->outputs, g->n_outputs, &g->cap_outputs, sizeof *out))
        return UINT32_MAX;
    cr_graph_output c = *out;
    if (!(c.name = cr_arena_strdup(&g->arena, out->name))) return UINT32_MAX;
    g->outputs[g->n_outputs] = c;
    return g->n_outputs++;
}

uint32_t cr_graph_add_message(cr_graph *g, const char *msg)
{
    if (!grow(g->alloc, (void **)&g->messages, g->n_messages, &g->cap_messages, sizeof(char *)))
        return UINT32_MAX;
    if (!(g->messages[g->n_messages] = cr_arena_strdup(&g->arena, msg))) return UINT32_MAX;
    return g->n_messages++;
}

/* The kind a node of this op must have given its inputs. */
static int expected_kind(const cr_graph *g, const cr_node *n)
{
    /* an op the VM runs only at top level (ops.def) computes a scalar */
    cr_op vm_op = cr_gop_to_op((cr_gop)n->op);
    if (vm_op != CR_OP_COUNT && cr_op_table[vm_op].ctx == CR_CTX_TOP) return CR_VK_SCALAR;
    switch (n->op) {
    case CR_GOP_INPUT: case CR_GOP_RAND: case CR_GOP_TOPK_MASK: case CR_GOP_ROW_RANK: case CR_GOP_TAIL:
    case CR_GOP_SOFTMAX: case CR_GOP_LORA:
        return CR_VK_TENSOR;
    case CR_GOP_CONST: case CR_GOP_SUM: case CR_GOP_KTH_ABS: case CR_GOP_CHECK:
        return CR_VK_SCALAR;
    case CR_GOP_ROWSUM: case CR_GOP_ROWMAX:
        return CR_VK_ROWS;
    case CR_GOP_COLSUM:
        return CR_VK_COLS;
    default: {
        cr_vkind k = CR_VK_SCALAR;
        for (int i = 0; i < n->n_in; i++) k = cr_vkind_join(k, (cr_vkind)g->nodes[n->in[i]].kind);
        return (int)k;
    }
    }
}

cr_status cr_graph_verify(const cr_graph *g, cr_error *err)
{
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const cr_node *n = &g->nodes[i];
        if (n->flags & CR_NODEF_DEAD) continue;
        if (n->op >= CR_GOP_COUNT)
            return cr_fail(err, CR_ERR_RUNTIME, "graph: node %u has bad op %u", i, n->op);
        const char *name = cr_gop_name(n->op);
        if (n->n_in != cr_gop_arity(n->op))
            return cr_fail(err, CR_ERR_RUNTIME, "graph: node %u (%s) has %u inputs, wants %d",
                           i, name, n->n_in, cr_gop_arity(n->op));
        if (!cr_dtype_name(n->dtype) || !cr_dtype_name(n->rdt))
            return cr_fail(err, CR_ERR_RUNTIME, "graph: node %u (%s) has a bad dtype", i, name);
        /* an op the VM runs only in kernels (ops.def) has no scalar form */
        cr_op vm_op = cr_gop_to_op((cr_gop)n->op);
        if (vm_op != CR_OP_COUNT && cr_op_table[vm_op].ctx == CR_CTX_KERNEL && n->kind == CR_VK_SCALAR)
            return cr_fail(err, CR_ERR_RUNTIME, "graph: node %u (%s) is a scalar of a kernel-only op", i, name);
        for (int k = 0; k < n->n_in; k++) {
            uint32_t in = n->in[k];
            if (in >= i)
                return cr_fail(err, CR_ERR_RUNTIME, "graph: node %u (%s) input %d = %u breaks order",
                               i, name, k, in);
            const cr_node *m = &g->nodes[in];
            if (m->flags & CR_NODEF_DEAD)
                return cr_fail(err, CR_ERR_RUNTIME, "graph: node %u (%s) uses dead node %u", i, name, in);
            if (m->domain != CR_NO_DOMAIN && n->domain != m->domain)
                return cr_fail(err, CR_ERR_RUNTIME, "graph: node %u (%s) mixes domains %u and %u",
                               i, name, n->domain, m->domain);
        }
        if (n->kind != expected_kind(g, n))
            return cr_fail(err, CR_ERR_RUNTIME, "graph: node %u (%s) has kind %u, wants %d",
                           i, name, n->kind, expected_kind(g, n));
        if (n->kind != CR_VK_SCALAR && n->domain >= g->n_domains)
            return cr_fail(err, CR_ERR_RUNTIME, "graph: node %u (%s) has no domain", i, name);
        if (n->op == CR_GOP_INPUT && n->attr >= g->n_inputs)
            return cr_fail(err, CR_ERR_RUNTIME, "graph: node %u reads input %llu of %u", i,
                           (unsigned long long)n->attr, g->n_inputs);
        if (n->op == CR_GOP_LORA) {
            /* A (r x n) and B (m x r): file views whose product is the domain (or its transpose) */
            const cr_node *a = &g->nodes[n->in[0]], *b = &g->nodes[n->in[1]];
            const cr_graph_domain *dm = &g->domains[n->domain];
            if (a->op != CR_GOP_INPUT || b->op != CR_GOP_INPUT || g->inputs[a->attr].scratch ||
                g->inputs[b->attr].scratch)
                return cr_fail(err, CR_ERR_RUNTIME, "graph: node %u (lora) does not read two file inputs", i);
            const cr_graph_input *ia = &g->inputs[a->attr], *ib = &g->inputs[b->attr];
            /* a rectified embedding's domain may be the first rows of the product */
            bool ok = ia->rows == ib->cols && (n->attr ? ia->cols >= dm->rows && ib->rows >= dm->cols
                                                        : ib->rows >= dm->rows && ia->cols >= dm->cols);
            if (!ok)
                return cr_fail(err, CR_ERR_RUNTIME, "graph: node %u (lora) reads [%llux%llu] and [%llux%llu] for "
                               "a [%llux%llu] domain", i, (unsigned long long)ia->rows, (unsigned long long)ia->cols,
                               (unsigned long long)ib->rows, (unsigned long long)ib->cols,
                               (unsigned long long)dm->rows, (unsigned long long)dm->cols);
        }
        if ((n->op == CR_GOP_TOPK_MASK || n->op == CR_GOP_KTH_ABS || n->op == CR_GOP_SUM ||
             n->op == CR_GOP_ROWSUM || n->op == CR_GOP_ROWMAX || n->op == CR_GOP_ROW_RANK ||
             n->op == CR_GOP_SOFTMAX || n->op == CR_GOP_COLSUM) &&
            g->nodes[n->in[0]].kind != CR_VK_TENSOR)
            return cr_fail(err, CR_ERR_RUNTIME, "graph: node %u (%s) reduces a non-tensor", i, name);
    }
    for (uint32_t o = 0; o < g->n_outputs; o++) {
        const cr_graph_output *out = &g->outputs[o];
        if (out->node >= g->n_nodes || (g->nodes[out->node].flags & CR_NODEF_DEAD))
            return cr_fail(err, CR_ERR_RUNTIME, "graph: output %s has no node", out->name);
        if (g->nodes[out->node].kind == CR_VK_ROWS || g->nodes[out->node].kind == CR_VK_COLS)
            return cr_fail(err, CR_ERR_RUNTIME, "graph: output %s is a %s vector", out->name,
                           g->nodes[out->node].kind == CR_VK_ROWS ? "row" : "column");
    }
    return CR_OK;
}

uint32_t *cr_graph_levels(const cr_graph *g)
{
    uint32_t *lv = cr_calloc(g->alloc, g->n_nodes ? g->n_nodes : 1, sizeof *lv);
    if (!lv) return NULL;
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const cr_node *n = &g->nodes[i];
        if (n->flags & CR_NODEF_DEAD) continue;
        uint32_t m = 0;
        for (int k = 0; k < n->n_in; k++) m = CR_MAX(m, lv[n->in[k]]);
        switch (n->op) {
        case CR_GOP_SUM: case CR_GOP_ROWSUM: case CR_GOP_ROWMAX: case CR_GOP_COLSUM: lv[i] = m + 1; break;
        case CR_GOP_KTH_ABS: lv[i] = m + 2; break;      /* after SEL_FIND_LO */
        case CR_GOP_TOPK_MASK: lv[i] = m + 3; break;    /* after SEL_PREFIX */
        default: lv[i] = m; break;
        }
    }
    return lv;
}

/* The fuse pass's kernels, one a line with the nodes first computed in
 * each ("kernel 3 = @d1 level 0: %4 %5 %7"); a counting sort keeps it
 * linear. Kernels no node starts in (a selection's middle passes) are left
 * out. */
static void dump_kernels(const cr_graph *g, FILE *out)
{
    uint32_t *start = cr_calloc(g->alloc, (size_t)g->n_kernels + 2, sizeof *start);
    uint32_t *list = cr_malloc(g->alloc, ((size_t)g->n_nodes + 1) * sizeof *list);
    if (!start || !list) {
        fprintf(out, "; kernels: out of memory\n");
        goto done;
    }
    for (uint32_t i = 0; i < g->n_nodes; i++)
        if (g->kernel_of[i] != CR_NO_KERNEL) start[g->kernel_of[i] + 2]++;
    for (uint32_t k = 0; k < g->n_kernels; k++) start[k + 2] += start[k + 1];
    for (uint32_t i = 0; i < g->n_nodes; i++)
        if (g->kernel_of[i] != CR_NO_KERNEL) list[start[g->kernel_of[i] + 1]++] = i;
    for (uint32_t d = 0, k = 0; k < g->n_kernels; k++) {
        while (d + 1 < g->n_domains && g->kernel_start[d + 1] <= k) d++;
        if (start[k] == start[k + 1]) continue;
        fprintf(out, "kernel %u = @d%u level %u:", k, d, k - g->kernel_start[d]);
        for (uint32_t j = start[k]; j < start[k + 1]; j++) fprintf(out, " %%%u", list[j]);
        fputc('\n', out);
    }
done:
    cr_free(g->alloc, start);
    cr_free(g->alloc, list);
}

void cr_graph_dump(const cr_graph *g, FILE *out)
{
    static const char kc[] = "srtc";
    for (uint32_t i = 0; i < g->n_nodes; i++) {
        const cr_node *n = &g->nodes[i];
        if (n->flags & CR_NODEF_DEAD) continue;
        fprintf(out, "%%%u = %s.%c %s", i, cr_dtype_name(n->dtype), kc[n->kind], cr_gop_name(n->op));
        for (int k = 0; k < n->n_in; k++) fprintf(out, "%s%%%u", k ? ", " : " ", n->in[k]);
        if (n->op == CR_GOP_CONST) fprintf(out, " %.17g", n->value);
        if (n->op == CR_GOP_INPUT) {
            const cr_graph_input *in = &g->inputs[n->attr];
            if (in->scratch) fprintf(out, " scratch(%%%u)", in->src_node);
            else fprintf(out, " m%u:%s", in->model, in->tensor);
            fprintf(out, " [%llux%llu]", (unsigned long long)in->rows, (unsigned long long)in->cols);
        }
        if (n->op == CR_GOP_RAND) fprintf(out, " key=%016llx", (unsigned long long)n->attr);
        if (n->op == CR_GOP_LORA && n->attr) fprintf(out, " transposed");
        if ((n->op == CR_GOP_SUM || n->op == CR_GOP_ROWSUM || n->op == CR_GOP_COLSUM) && n->attr) {
            static const char *const order[] = { "wide", "numpy", "blas-ssq", "torch", "torch-ssq",
                                                 "torch-chunks", "torch-ssq-chunks" };
            fprintf(out, " order=%s", n->attr < CR_ARRAY_LEN(order) ? order[n->attr] : "?");
        }
        if (n->op == CR_GOP_TOPK_MASK && n->attr)
            fprintf(out, " ties=%s", n->attr == CR_TIES_TORCH_DESC ? "torch-desc"
                                    : n->attr == CR_TIES_TORCH_ASC ? "torch-asc" : "torch-topk");
        if (n->rdt != n->dtype) fprintf(out, " round=%s", cr_dtype_name(n->rdt));
        if (n->flags & CR_NODEF_WEAK) fprintf(out, " weak");
        if (n->domain != CR_NO_DOMAIN) fprintf(out, " @d%u", n->domain);
        fputc('\n', out);
    }
    for (uint32_t o = 0; o < g->n_outputs; o++)
        fprintf(out, "out %s = %%%u as %s\n", g->outputs[o].name, g->outputs[o].node,
                cr_dtype_name(g->outputs[o].dtype));
    if (g->kernel_of) dump_kernels(g, out);
}
