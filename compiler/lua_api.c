/* lua_api.c — the `cr` API for merge methods.
 *
 * Owns: symbolic values (userdata wrapping a graph node index) with their
 * arithmetic metamethods and torch's dtype rules, the `cr` functions of
 * spec/lua-api.md, and building `ctx` for one merge call. Lua never touches
 * tensor data: every operation here appends a node to the current graph.
 * The state, its limits and sandbox are lua_sandbox.c's.
 */
#include "lua_inc.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "limits.h"
#include "lua_api.h"
#include "lua_state.h"
#include "scalar.h"

#define VALUE_META "cr.value"

/* ---- dtypes ------------------------------------------------------------ */

static const char *dt_name(cr_dtype t)
{
    const char *s = cr_dtype_torch_name(t);
    return s ? s : (cr_dtype_name(t) ? cr_dtype_name(t) : "?");
}

/* torch's promotion of two "category-equal" operands: floats beat ints and
 * bools; two floats by cr_dtype_promote. */
static cr_dtype promote(cr_dtype a, cr_dtype b)
{
    if (a == b) return a;
    bool fa = cr_dtype_is_float(a), fb = cr_dtype_is_float(b);
    if (fa && fb) return cr_dtype_promote(a, b);
    if (fa) return a;
    if (fb) return b;
    if (a == CR_DTYPE_BOOL) return b;
    if (b == CR_DTYPE_BOOL) return a;
    return cr_dtype_size(a) >= cr_dtype_size(b) ? a : b;
}

/* The rounding dtype of a result of logical dtype t. Kernels hold f32, so
 * integer and bool results round as f32 (exact up to 2^24). */
static cr_dtype round_of(cr_lua *L, cr_dtype t)
{
    if (t == CR_DTYPE_F64) return CR_DTYPE_F64;
    if (!cr_dtype_is_float(t)) return CR_DTYPE_F32;
    if (L->call && L->call->precise) return CR_DTYPE_F32;
    return t;
}

static bool parse_dtype(const char *s, cr_dtype *t)
{
    if (cr_dtype_parse_torch(s, t)) return true;
    return cr_dtype_parse(s, t);
}

/* ---- values ------------------------------------------------------------ */

typedef struct lvalue { uint32_t node; } lvalue;

static cr_graph *need_graph(lua_State *S)
{
    cr_lua *L = get_lua(S);
    if (!L->g) luaL_error(S, "tensor values can only be built inside merge()");
    return L->g;
}

static void push_value(lua_State *S, uint32_t node)
{
    lvalue *v = lua_newuserdatauv(S, sizeof *v, 1);
    v->node = node;
    luaL_setmetatable(S, VALUE_META);
}

uint32_t cr_lua_value_node(lua_State *S, int idx)
{
    lvalue *v = luaL_testudata(S, idx, VALUE_META);
    return v ? v->node : CR_NO_NODE;
}

static uint32_t add(lua_State *S, cr_node *n)
{
    cr_graph *g = need_graph(S);
    if (g->n_nodes >= g->max_nodes)
        luaL_error(S, "the merge graph reached its limit of %I nodes (CR_LIMIT_GRAPH_NODES): "
                   "does the method chain operations without bound?", (lua_Integer)g->max_nodes);
    uint32_t id = cr_graph_add(g, n);
    if (id == CR_NO_NODE) {
        get_lua(S)->host_oom = true;
        luaL_error(S, "out of memory building the graph");
    }
    return id;
}

static uint32_t make_const(lua_State *S, double v, cr_dtype t, bool weak)
{
    cr_lua *L = get_lua(S);
    cr_node n = { .op = CR_GOP_CONST, .dtype = t, .rdt = weak ? CR_DTYPE_F64 : round_of(L, t),
                  .kind = CR_VK_SCALAR, .domain = CR_NO_DOMAIN, .flags = weak ? CR_NODEF_WEAK : 0 };
    n.value = cr_scalar_round(n.rdt, v);
    return add(S, &n);
}

/* A NaN number from a method's arithmetic (0/0, math.huge - math.huge) is
 * refused where it enters the graph: it would make every element of the
 * tensor NaN, and here the error can name the method's line. Infinities
 * pass (a clamp bound or a fill value can mean them); what they produce at
 * run time is reported by the VM's NaN/Inf warning. */
static double check_not_nan(lua_State *S, double v)
{
    if (v != v) luaL_error(S, "a NaN number (0/0?) is used as a tensor operand");
    return v;
}

/* The node of argument idx: a value, or a Lua number/boolean as a weak
 * (Python-float-like) constant. */
static uint32_t arg_node(lua_State *S, int idx)
{
    uint32_t n = cr_lua_value_node(S, idx);
    if (n != CR_NO_NODE) return n;
    if (lua_type(S, idx) == LUA_TNUMBER) return make_const(S, check_not_nan(S, lua_tonumber(S, idx)), CR_DTYPE_F64, true);
    if (lua_type(S, idx) == LUA_TBOOLEAN) return make_const(S, lua_toboolean(S, idx), CR_DTYPE_F64, true);
    luaL_typeerror(S, idx, "tensor value or number");
    return CR_NO_NODE;
}

static const cr_node *node_at(lua_State *S, uint32_t id) { return &need_graph(S)->nodes[id]; }

/* torch's result dtype: dimensioned operands (tensors, row vectors) decide
 * over zero-dim scalars, strong values over weak Python numbers, and a
 * float of a lower priority class beats bool/int of a higher one. */
static void result_dtype(lua_State *S, const uint32_t *ins, int n, cr_dtype *dt, bool *weak)
{
    int best_class = -1;   /* 2: dimensioned, 1: zero-dim, 0: weak */
    cr_dtype t = CR_DTYPE_NONE;
    bool any_float_lower = false;
    for (int i = 0; i < n; i++) {
        const cr_node *m = node_at(S, ins[i]);
        int cls = (m->flags & CR_NODEF_WEAK) ? 0 : (m->kind == CR_VK_SCALAR ? 1 : 2);
        if (cls > best_class) { best_class = cls; t = m->dtype; }
        else if (cls == best_class) t = promote(t, m->dtype);
    }
    /* a float of a lower class beats a bool/int of the higher class */
    if (!cr_dtype_is_float(t)) {
        for (int i = 0; i < n; i++) {
            const cr_node *m = node_at(S, ins[i]);
            if (cr_dtype_is_float(m->dtype)) {
                any_float_lower = true;
                t = (m->flags & CR_NODEF_WEAK) ? CR_DTYPE_F32 : m->dtype;
                if (!(m->flags & CR_NODEF_WEAK)) break;
            }
        }
        (void)any_float_lower;
    }
    *weak = best_class == 0;
    *dt = t;
}

/* Build an op on argument nodes with automatic kind, domain and dtype. */
static uint32_t build(lua_State *S, cr_gop op, const uint32_t *ins, int n, bool bool_result)
{
    cr_lua *L = get_lua(S);
    cr_node nd = { .op = (uint16_t)op, .n_in = (uint8_t)n, .domain = CR_NO_DOMAIN };
    int kind = CR_VK_SCALAR;
    for (int i = 0; i < n; i++) {
        const cr_node *m = node_at(S, ins[i]);
        nd.in[i] = ins[i];
        kind = (int)cr_vkind_join((cr_vkind)kind, (cr_vkind)m->kind);
        if (m->domain != CR_NO_DOMAIN) {
            if (nd.domain != CR_NO_DOMAIN && nd.domain != m->domain) {
                const cr_graph_domain *a = &L->g->domains[nd.domain], *b = &L->g->domains[m->domain];
                luaL_error(S, "%s: operands belong to different tensors (%s [%Ix%I] and %s [%Ix%I])",
                           cr_gop_name(op), a->name ? a->name : "?", (lua_Integer)a->rows,
                           (lua_Integer)a->cols, b->name ? b->name : "?",
                           (lua_Integer)b->rows, (lua_Integer)b->cols);
            }
            nd.domain = m->domain;
        }
    }
    nd.kind = (uint8_t)kind;
    /* where(c, a, b): the condition does not take part in the dtype */
    cr_dtype dt;
    bool weak;
    if (op == CR_GOP_WHERE) result_dtype(S, ins + 1, 2, &dt, &weak);
    else result_dtype(S, ins, n, &dt, &weak);
    if (bool_result) { dt = CR_DTYPE_BOOL; weak = false; }
    if (weak && kind != CR_VK_SCALAR) weak = false;
    nd.dtype = (uint8_t)dt;
    nd.rdt = (uint8_t)(weak ? CR_DTYPE_F64 : round_of(L, dt));
    if (weak) nd.flags |= CR_NODEF_WEAK;
    return add(S, &nd);
}

static uint32_t build_exact(lua_State *S, cr_gop op, const uint32_t *ins, int n, cr_vkind kind,
                            cr_dtype dt, cr_dtype rdt)
{
    cr_node nd = { .op = (uint16_t)op, .n_in = (uint8_t)n, .kind = (uint8_t)kind,
                   .dtype = (uint8_t)dt, .rdt = (uint8_t)rdt, .domain = CR_NO_DOMAIN };
    for (int i = 0; i < n; i++) {
        nd.in[i] = ins[i];
        if (node_at(S, ins[i])->domain != CR_NO_DOMAIN) nd.domain = node_at(S, ins[i])->domain;
    }
    return add(S, &nd);
}

/* ---- metamethods and cr functions --------------------------------------- */

static int binop(lua_State *S, cr_gop op, bool bool_result)
{
    uint32_t ins[2] = { arg_node(S, 1), arg_node(S, 2) };
    push_value(S, build(S, op, ins, 2, bool_result));
    return 1;
}
static int unop(lua_State *S, cr_gop op, bool bool_result)
{
    uint32_t in = arg_node(S, 1);
    push_value(S, build(S, op, &in, 1, bool_result));
    return 1;
}

#define BIN(fn, op, b) static int fn(lua_State *S) { return binop(S, op, b); }
#define UN(fn, op, b) static int fn(lua_State *S) { return unop(S, op, b); }
BIN(l_add, CR_GOP_ADD, false) BIN(l_sub, CR_GOP_SUB, false) BIN(l_mul, CR_GOP_MUL, false)
BIN(l_div, CR_GOP_DIV, false) BIN(l_min, CR_GOP_MIN, false) BIN(l_max, CR_GOP_MAX, false)
BIN(l_gt, CR_GOP_GT, true) BIN(l_ge, CR_GOP_GE, true) BIN(l_lt, CR_GOP_LT, true)
BIN(l_le, CR_GOP_LE, true) BIN(l_eq, CR_GOP_EQ, true) BIN(l_ne, CR_GOP_NE, true)
BIN(l_and, CR_GOP_AND, true) BIN(l_or, CR_GOP_OR, true)
UN(l_neg, CR_GOP_NEG, false) UN(l_abs, CR_GOP_ABS, false) UN(l_sign, CR_GOP_SIGN, false)
UN(l_sqrt, CR_GOP_SQRT, false) UN(l_exp, CR_GOP_EXP, false) UN(l_log, CR_GOP_LOG, false)
UN(l_not, CR_GOP_NOT, true)

static const char *kind_word(cr_vkind k)
{
    switch (k) {
    case CR_VK_SCALAR: return "scalar";
    case CR_VK_ROWS: return "row vector";
    case CR_VK_COLS: return "column vector";
    case CR_VK_TENSOR: break;
    }
    return "tensor";
}

/* rows: acos/sin/cos also take a row or column vector (per-row or
 * per-column coefficients, e.g. nuslerp); a whole tensor is refused
 * (per-element trig would be a different cost class and no method needs it). */
static int scalar_fn_k(lua_State *S, cr_gop op, bool rows)
{
    uint32_t in = arg_node(S, 1);
    cr_vkind k = node_at(S, in)->kind;
    if (k != CR_VK_SCALAR && !(rows && (k == CR_VK_ROWS || k == CR_VK_COLS)))
        luaL_error(S, "cr.%s takes a scalar%s, got a %s", cr_gop_name(op), rows ? " or a row/column vector" : "",
                   kind_word(k));
    push_value(S, build(S, op, &in, 1, false));
    return 1;
}
static int scalar_fn(lua_State *S, cr_gop op) { return scalar_fn_k(S, op, false); }
static int l_acos(lua_State *S) { return scalar_fn_k(S, CR_GOP_ACOS, true); }
static int l_sin(lua_State *S) { return scalar_fn_k(S, CR_GOP_SIN, true); }
static int l_cos(lua_State *S) { return scalar_fn_k(S, CR_GOP_COS, true); }
/* np.arccos / np.sin / np.cos of a float32 NumPy scalar (vm/npmath.c) */
static int np_scalar_fn(lua_State *S, cr_gop op)
{
    uint32_t in = arg_node(S, 1);
    if (node_at(S, in)->kind != CR_VK_SCALAR || node_at(S, in)->dtype != CR_DTYPE_F32)
        luaL_error(S, "cr.%s takes a float32 scalar", cr_gop_name(op));
    push_value(S, build_exact(S, op, &in, 1, CR_VK_SCALAR, CR_DTYPE_F32, CR_DTYPE_F32));
    return 1;
}
static int l_np_acos(lua_State *S) { return np_scalar_fn(S, CR_GOP_NP_ACOS); }
static int l_np_sin(lua_State *S) { return np_scalar_fn(S, CR_GOP_NP_SIN); }
static int l_np_cos(lua_State *S) { return np_scalar_fn(S, CR_GOP_NP_COS); }
static int l_trunc(lua_State *S) { return scalar_fn(S, CR_GOP_TRUNC); }

static int l_where(lua_State *S)
{
    uint32_t ins[3] = { arg_node(S, 1), arg_node(S, 2), arg_node(S, 3) };
    push_value(S, build(S, CR_GOP_WHERE, ins, 3, false));
    return 1;
}

/* a * b + c with one rounding (torch's contracted addcmul_). Kernel-only:
 * at least one operand must be a tensor, row or column vector. */
static int l_fma(lua_State *S)
{
    uint32_t ins[3] = { arg_node(S, 1), arg_node(S, 2), arg_node(S, 3) };
    if (node_at(S, ins[0])->kind == CR_VK_SCALAR && node_at(S, ins[1])->kind == CR_VK_SCALAR &&
        node_at(S, ins[2])->kind == CR_VK_SCALAR)
        luaL_error(S, "cr.fma needs a tensor, row or column vector operand (scalars: write a * b + c)");
    push_value(S, build(S, CR_GOP_FMA, ins, 3, false));
    return 1;
}

static int l_clamp(lua_State *S)
{
    uint32_t x = arg_node(S, 1), lo = arg_node(S, 2), hi = arg_node(S, 3);
    uint32_t a[2] = { x, lo };
    uint32_t m = build(S, CR_GOP_MAX, a, 2, false);
    /* clamp keeps x's dtype: bounds never promote it */
    get_lua(S)->g->nodes[m].dtype = node_at(S, x)->dtype;
    get_lua(S)->g->nodes[m].rdt = node_at(S, x)->rdt;
    get_lua(S)->g->nodes[m].flags = node_at(S, x)->flags & CR_NODEF_WEAK;
    uint32_t b[2] = { m, hi };
    uint32_t r = build(S, CR_GOP_MIN, b, 2, false);
    get_lua(S)->g->nodes[r].dtype = node_at(S, x)->dtype;
    get_lua(S)->g->nodes[r].rdt = node_at(S, x)->rdt;
    get_lua(S)->g->nodes[r].flags = node_at(S, x)->flags & CR_NODEF_WEAK;
    push_value(S, r);
    return 1;
}

static cr_dtype check_dtype_arg(lua_State *S, int idx)
{
    const char *s = luaL_checkstring(S, idx);
    cr_dtype t;
    if (!parse_dtype(s, &t) || (!cr_dtype_is_float(t) && t != CR_DTYPE_BOOL && t != CR_DTYPE_I64))
        luaL_error(S, "unknown dtype '%s' (bfloat16, float16, float32, float64)", s);
    return t;
}

static int l_cast(lua_State *S)
{
    uint32_t x = arg_node(S, 1);
    cr_dtype t = check_dtype_arg(S, 2);
    const cr_node *m = node_at(S, x);
    push_value(S, build_exact(S, CR_GOP_MOV, &x, 1, m->kind, t, round_of(get_lua(S), t)));
    return 1;
}

static int l_float(lua_State *S)
{
    uint32_t x = arg_node(S, 1);
    if (node_at(S, x)->kind != CR_VK_SCALAR) luaL_error(S, "cr.float takes a scalar");
    uint32_t r = build_exact(S, CR_GOP_MOV, &x, 1, CR_VK_SCALAR, CR_DTYPE_F64, CR_DTYPE_F64);
    get_lua(S)->g->nodes[r].flags |= CR_NODEF_WEAK;
    push_value(S, r);
    return 1;
}

static int l_const(lua_State *S)
{
    double v = check_not_nan(S, luaL_checknumber(S, 1));
    cr_dtype t = check_dtype_arg(S, 2);
    push_value(S, make_const(S, v, t, false));
    return 1;
}

static uint32_t need_tensor(lua_State *S, int idx, const char *what)
{
    uint32_t x = arg_node(S, idx);
    if (node_at(S, x)->kind != CR_VK_TENSOR) luaL_error(S, "%s needs a tensor", what);
    return x;
}

/* the kind of a reduction's result */
static cr_vkind reduced_kind(cr_gop op)
{
    return op == CR_GOP_SUM ? CR_VK_SCALAR : op == CR_GOP_COLSUM ? CR_VK_COLS : CR_VK_ROWS;
}

/* whole-tensor, per-row and per-column sums, accumulated wide and rounded once */
static uint32_t reduce(lua_State *S, cr_gop op, uint32_t x, cr_dtype dt, cr_dtype rdt)
{
    return build_exact(S, op, &x, 1, reduced_kind(op), dt, rdt);
}

static int l_sum(lua_State *S)
{
    uint32_t x = need_tensor(S, 1, "sum");
    cr_dtype dt = node_at(S, x)->dtype;
    push_value(S, reduce(S, CR_GOP_SUM, x, dt, round_of(get_lua(S), dt)));
    return 1;
}

static int l_row_sum(lua_State *S)
{
    uint32_t x = need_tensor(S, 1, "row_sum");
    cr_dtype dt = node_at(S, x)->dtype;
    push_value(S, reduce(S, CR_GOP_ROWSUM, x, dt, round_of(get_lua(S), dt)));
    return 1;
}

static int l_col_sum(lua_State *S)
{
    uint32_t x = need_tensor(S, 1, "col_sum");
    cr_dtype dt = node_at(S, x)->dtype;
    push_value(S, reduce(S, CR_GOP_COLSUM, x, dt, round_of(get_lua(S), dt)));
    return 1;
}

static int l_row_max(lua_State *S)
{
    uint32_t x = need_tensor(S, 1, "row_max");
    cr_dtype dt = node_at(S, x)->dtype;
    push_value(S, reduce(S, CR_GOP_ROWMAX, x, dt, round_of(get_lua(S), dt)));
    return 1;
}

static int l_mean(lua_State *S)
{
    uint32_t x = need_tensor(S, 1, "mean");
    cr_lua *L = get_lua(S);
    cr_dtype dt = node_at(S, x)->dtype;
    const cr_graph_domain *d = &L->g->domains[node_at(S, x)->domain];
    uint32_t s = reduce(S, CR_GOP_SUM, x, CR_DTYPE_F32, CR_DTYPE_F32);
    uint32_t ins[2] = { s, make_const(S, (double)(d->rows * d->cols), CR_DTYPE_F64, true) };
    push_value(S, build_exact(S, CR_GOP_DIV, ins, 2, CR_VK_SCALAR, dt, round_of(L, dt)));
    return 1;
}

/* sum (whole, per row or per column) of a*b with exact f32 products, rounded once */
static uint32_t dot_like(lua_State *S, uint32_t a, uint32_t b, cr_gop red, bool root)
{
    cr_lua *L = get_lua(S);
    cr_dtype dt = promote(node_at(S, a)->dtype, node_at(S, b)->dtype);
    uint32_t ins[2] = { a, b };
    uint32_t p = build_exact(S, CR_GOP_MUL, ins, 2, CR_VK_TENSOR, CR_DTYPE_F32, CR_DTYPE_F32);
    cr_vkind k = reduced_kind(red);
    if (!root) return reduce(S, red, p, dt, round_of(L, dt));
    uint32_t s = reduce(S, red, p, CR_DTYPE_F32, CR_DTYPE_F32);
    return build_exact(S, CR_GOP_SQRT, &s, 1, k, dt, round_of(L, dt));
}

static int l_dot(lua_State *S)
{
    push_value(S, dot_like(S, need_tensor(S, 1, "dot"), need_tensor(S, 2, "dot"), CR_GOP_SUM, false));
    return 1;
}
static int l_row_dot(lua_State *S)
{
    push_value(S, dot_like(S, need_tensor(S, 1, "row_dot"), need_tensor(S, 2, "row_dot"),
                           CR_GOP_ROWSUM, false));
    return 1;
}
static int l_col_dot(lua_State *S)
{
    push_value(S, dot_like(S, need_tensor(S, 1, "col_dot"), need_tensor(S, 2, "col_dot"),
                           CR_GOP_COLSUM, false));
    return 1;
}
static int l_norm(lua_State *S)
{
    uint32_t x = need_tensor(S, 1, "norm");
    push_value(S, dot_like(S, x, x, CR_GOP_SUM, true));
    return 1;
}
/* A float32 reduction in a library's summation order: `red` is SUM (whole
 * tensor, a scalar), ROWSUM or COLSUM. NumPy's (slerp.py): np.sum in
 * pairwise order, np.linalg.norm = sqrt(BLAS sdot(x, x)); torch's: norm-2,
 * and the row / column sums of x.sum(dim=-1 / 0) and torch.norm(x, dim=...).
 * `what` names the functions in the error. */
static uint32_t library_reduce(lua_State *S, uint32_t x, cr_gop red, cr_sum_order order, const char *what)
{
    if (node_at(S, x)->dtype != CR_DTYPE_F32) luaL_error(S, "%s need a float32 tensor", what);
    cr_node nd = { .op = (uint16_t)red, .n_in = 1, .kind = (uint8_t)reduced_kind(red),
                   .dtype = CR_DTYPE_F32, .rdt = CR_DTYPE_F32, .domain = node_at(S, x)->domain, .attr = order };
    nd.in[0] = x;
    return add(S, &nd);
}
#define NP_REDUCERS "np_sum, np_norm and torch_norm"
#define ROW_REDUCERS "torch_row_sum/torch_row_norm"
#define COL_REDUCERS "torch_col_sum/torch_col_norm"
#define CHUNK_REDUCERS "torch_chunked_sum/torch_chunked_norm"
static int l_np_sum(lua_State *S)
{
    push_value(S, library_reduce(S, need_tensor(S, 1, "np_sum"), CR_GOP_SUM, CR_SUM_NUMPY, NP_REDUCERS));
    return 1;
}
static int l_np_norm(lua_State *S)
{
    uint32_t s = library_reduce(S, need_tensor(S, 1, "np_norm"), CR_GOP_SUM, CR_SUM_BLAS_SSQ, NP_REDUCERS);
    push_value(S, build_exact(S, CR_GOP_SQRT, &s, 1, CR_VK_SCALAR, CR_DTYPE_F32, CR_DTYPE_F32));
    return 1;
}
/* torch's CPU sum of a tensor (x.sum() in mergekit's torch code): float32
 * cascade order over the values, rounded to x's dtype. */
static int l_torch_sum(lua_State *S)
{
    uint32_t x = need_tensor(S, 1, "torch_sum");
    cr_dtype dt = node_at(S, x)->dtype;
    cr_node nd = { .op = CR_GOP_SUM, .n_in = 1, .kind = CR_VK_SCALAR, .dtype = (uint8_t)dt,
                   .rdt = (uint8_t)round_of(get_lua(S), dt), .domain = node_at(S, x)->domain,
                   .attr = CR_SUM_TORCH };
    nd.in[0] = x;
    push_value(S, add(S, &nd));
    return 1;
}
/* torch.norm(x) of a float32 tensor (torch's norm-2 order, sqrt in f32). */
static int l_torch_norm(lua_State *S)
{
    uint32_t s = library_reduce(S, need_tensor(S, 1, "torch_norm"), CR_GOP_SUM, CR_SUM_TORCH_SSQ, NP_REDUCERS);
    push_value(S, build_exact(S, CR_GOP_SQRT, &s, 1, CR_VK_SCALAR, CR_DTYPE_F32, CR_DTYPE_F32));
    return 1;
}
/* mergekit 0.1.5's slerp statistics of a float32 tensor (slerp.py,
 * chunks of 2^20 elements): the torch sum of the chunks' torch sums, and
 * the torch norm of the chunks' torch norms. Up to 2^20 elements they are
 * torch_sum and torch_norm. */
static int l_torch_chunked_sum(lua_State *S)
{
    push_value(S, library_reduce(S, need_tensor(S, 1, "torch_chunked_sum"), CR_GOP_SUM, CR_SUM_TORCH_CHUNKS,
                                 CHUNK_REDUCERS));
    return 1;
}
static int l_torch_chunked_norm(lua_State *S)
{
    uint32_t s = library_reduce(S, need_tensor(S, 1, "torch_chunked_norm"), CR_GOP_SUM, CR_SUM_TORCH_SSQ_CHUNKS,
                                CHUNK_REDUCERS);
    push_value(S, build_exact(S, CR_GOP_SQRT, &s, 1, CR_VK_SCALAR, CR_DTYPE_F32, CR_DTYPE_F32));
    return 1;
}
/* x.sum(dim=-1): a bf16/f16 x takes torch's reduced-float order (16 values
 * loaded, the float halves added) and rounds to its dtype, as l_torch_sum */
static int l_torch_row_sum(lua_State *S)
{
    uint32_t x = need_tensor(S, 1, "torch_row_sum");
    cr_dtype dt = node_at(S, x)->dtype;
    if (dt != CR_DTYPE_BF16 && dt != CR_DTYPE_F16) {
        push_value(S, library_reduce(S, x, CR_GOP_ROWSUM, CR_SUM_TORCH, ROW_REDUCERS));
        return 1;
    }
    cr_node nd = { .op = CR_GOP_ROWSUM, .n_in = 1, .kind = CR_VK_ROWS, .dtype = (uint8_t)dt,
                   .rdt = (uint8_t)round_of(get_lua(S), dt), .domain = node_at(S, x)->domain,
                   .attr = CR_SUM_TORCH };
    nd.in[0] = x;
    push_value(S, add(S, &nd));
    return 1;
}
static int l_torch_row_norm(lua_State *S)
{
    uint32_t s = library_reduce(S, need_tensor(S, 1, "torch_row_norm"), CR_GOP_ROWSUM, CR_SUM_TORCH_SSQ, ROW_REDUCERS);
    push_value(S, build_exact(S, CR_GOP_SQRT, &s, 1, CR_VK_ROWS, CR_DTYPE_F32, CR_DTYPE_F32));
    return 1;
}
/* x.sum(dim=0) and torch.norm(x, dim=0) of a float32 tensor: torch's outer
 * reduction order per column (vm/refsum.c). A one-column tensor is a
 * contiguous vector to torch (its inner, whole-tensor order): the result is
 * then the scalar torch_sum / torch_norm, which broadcasts the same way. */
static bool one_column(lua_State *S, uint32_t x)
{
    const cr_node *n = node_at(S, x);
    return n->domain != CR_NO_DOMAIN && get_lua(S)->g->domains[n->domain].cols == 1;
}
static int l_torch_col_sum(lua_State *S)
{
    uint32_t x = need_tensor(S, 1, "torch_col_sum");
    cr_gop red = one_column(S, x) ? CR_GOP_SUM : CR_GOP_COLSUM;
    push_value(S, library_reduce(S, x, red, CR_SUM_TORCH, COL_REDUCERS));
    return 1;
}
static int l_torch_col_norm(lua_State *S)
{
    uint32_t x = need_tensor(S, 1, "torch_col_norm");
    cr_gop red = one_column(S, x) ? CR_GOP_SUM : CR_GOP_COLSUM;
    uint32_t s = library_reduce(S, x, red, CR_SUM_TORCH_SSQ, COL_REDUCERS);
    push_value(S, build_exact(S, CR_GOP_SQRT, &s, 1, reduced_kind(red), CR_DTYPE_F32, CR_DTYPE_F32));
    return 1;
}
static int l_col_norm(lua_State *S)
{
    uint32_t x = need_tensor(S, 1, "col_norm");
    push_value(S, dot_like(S, x, x, CR_GOP_COLSUM, true));
    return 1;
}
static int l_row_norm(lua_State *S)
{
    uint32_t x = need_tensor(S, 1, "row_norm");
    push_value(S, dot_like(S, x, x, CR_GOP_ROWSUM, true));
    return 1;
}

/* k of a selection over tensor x: a constant k is checked here, where the
 * error names the method's line; a computed one by the VM, whose message
 * names the tensor. */
static uint32_t k_arg(lua_State *S, int idx, uint32_t x, const char *what)
{
    if (lua_type(S, idx) == LUA_TNUMBER) {
        lua_Number k = lua_tonumber(S, idx);
        if (!(k >= 0) || k != floor(k))
            luaL_error(S, "%s: k must be a non-negative integer, got %f", what, (lua_Number)k);
        const cr_graph *g = need_graph(S);
        uint32_t dom = node_at(S, x)->domain;
        const cr_graph_domain *d = dom < g->n_domains ? &g->domains[dom] : NULL;
        double n = d ? (double)d->rows * (double)d->cols : INFINITY;
        if (k > n)
            luaL_error(S, "%s: k = %f is more than the %I elements of tensor %s", what, (lua_Number)k,
                       (lua_Integer)n, d->name ? d->name : "?");
        return make_const(S, k, CR_DTYPE_F64, true);
    }
    uint32_t k = arg_node(S, idx);
    if (node_at(S, k)->kind != CR_VK_SCALAR) luaL_error(S, "k must be a number or a scalar");
    return k;
}

/* cr.topk_mask(x, k [, ties]): ties "index" (default), "torch_desc"
 * (torch.argsort(|x|, descending=True)[:k]) or "torch_asc" (the last k of
 * torch.sort(|x|).indices) or "torch_topk" (torch.topk(|x|, k)): which
 * elements equal to the k-th largest magnitude are kept when not all of
 * them fit. */
static int l_topk_mask(lua_State *S)
{
    static const char *const names[] = { "index", "torch_desc", "torch_asc", "torch_topk", NULL };
    uint32_t x = need_tensor(S, 1, "topk_mask");
    uint32_t ins[2] = { x, k_arg(S, 2, x, "topk_mask") };
    int ties = luaL_checkoption(S, 3, "index", names);
    cr_node nd = { .op = CR_GOP_TOPK_MASK, .n_in = 2, .kind = CR_VK_TENSOR, .dtype = CR_DTYPE_BOOL,
                   .rdt = CR_DTYPE_F32, .domain = node_at(S, ins[0])->domain, .attr = (uint64_t)ties };
    nd.in[0] = ins[0];
    nd.in[1] = ins[1];
    push_value(S, add(S, &nd));
    return 1;
}

static int l_kth_abs(lua_State *S)
{
    uint32_t x = need_tensor(S, 1, "kth_largest_abs");
    uint32_t ins[2] = { x, k_arg(S, 2, x, "kth_largest_abs") };
    cr_dtype dt = node_at(S, ins[0])->dtype;
    push_value(S, build_exact(S, CR_GOP_KTH_ABS, ins, 2, CR_VK_SCALAR, dt, round_of(get_lua(S), dt)));
    return 1;
}

static int l_row_rank(lua_State *S)
{
    uint32_t x = need_tensor(S, 1, "row_rank");
    cr_dtype dt = node_at(S, x)->dtype;
    push_value(S, build_exact(S, CR_GOP_ROW_RANK, &x, 1, CR_VK_TENSOR, dt, round_of(get_lua(S), dt)));
    return 1;
}

/* F.softmax(x, dim=-1) as torch's CPU kernel computes it (vm/torchsoftmax.c):
 * x's dtype picks the float32 or the reduced-float kernel and the rounding */
static int l_torch_softmax_rows(lua_State *S)
{
    uint32_t x = need_tensor(S, 1, "torch_softmax_rows");
    cr_dtype dt = node_at(S, x)->dtype;
    if (!cr_dtype_is_float(dt)) luaL_error(S, "torch_softmax_rows needs a float tensor");
    push_value(S, build_exact(S, CR_GOP_SOFTMAX, &x, 1, CR_VK_TENSOR, dt, round_of(get_lua(S), dt)));
    return 1;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) { h ^= s[i]; h *= 1099511628211ull; }
    return h;
}

static int l_rand(lua_State *S)
{
    cr_lua *L = get_lua(S);
    need_graph(S);
    if (!L->call) luaL_error(S, "cr.rand needs a merge call");
    size_t n;
    const char *key = luaL_tolstring(S, 2, &n);   /* numbers and strings alike */
    uint64_t h = fnv1a(1469598103934665603ull, L->call->name, strlen(L->call->name) + 1);
    h = fnv1a(h, key, n);
    cr_node nd = { .op = CR_GOP_RAND, .kind = CR_VK_TENSOR, .dtype = CR_DTYPE_F32,
                   .rdt = CR_DTYPE_F32, .domain = L->call->domain, .attr = h };
    push_value(S, add(S, &nd));
    return 1;
}

/* 1 on the last m elements of x's tensor (flattened, element order), 0
 * elsewhere: which elements torch's stacked sum adds in its tail order
 * (common.lua sum_of). m is a Lua integer >= 0. */
static int l_tail_mask(lua_State *S)
{
    uint32_t x = need_tensor(S, 1, "tail_mask");
    if (!lua_isinteger(S, 2) || lua_tointeger(S, 2) < 0) luaL_error(S, "cr.tail_mask: the count must be an integer >= 0");
    uint32_t m = make_const(S, (double)lua_tointeger(S, 2), CR_DTYPE_F64, false);
    cr_node nd = { .op = CR_GOP_TAIL, .n_in = 1, .in = { m }, .kind = CR_VK_TENSOR, .dtype = CR_DTYPE_BOOL,
                   .rdt = CR_DTYPE_F32, .domain = node_at(S, x)->domain };
    push_value(S, add(S, &nd));
    return 1;
}

static int l_error(lua_State *S)
{
    const char *msg = luaL_checkstring(S, 1);
    luaL_where(S, 1);
    lua_pushstring(S, msg);
    lua_concat(S, 2);
    return lua_error(S);
}

static int l_promote(lua_State *S)
{
    cr_dtype a = check_dtype_arg(S, 1), b = check_dtype_arg(S, 2);
    lua_pushstring(S, dt_name(promote(a, b)));
    return 1;
}

static const luaL_Reg cr_funcs[] = {
    {"abs", l_abs}, {"sign", l_sign}, {"sqrt", l_sqrt}, {"exp", l_exp}, {"log", l_log},
    {"min", l_min}, {"max", l_max}, {"clamp", l_clamp}, {"where", l_where}, {"fma", l_fma},
    {"gt", l_gt}, {"ge", l_ge}, {"lt", l_lt}, {"le", l_le}, {"eq", l_eq}, {"ne", l_ne},
    {"land", l_and}, {"lor", l_or}, {"lnot", l_not}, {"neg", l_neg},
    {"add", l_add}, {"sub", l_sub}, {"mul", l_mul}, {"div", l_div},
    {"cast", l_cast}, {"float", l_float}, {"const", l_const},
    {"sum", l_sum}, {"mean", l_mean}, {"norm", l_norm}, {"dot", l_dot},
    {"row_sum", l_row_sum}, {"row_max", l_row_max}, {"row_norm", l_row_norm}, {"row_dot", l_row_dot},
    {"col_sum", l_col_sum}, {"col_norm", l_col_norm}, {"col_dot", l_col_dot},
    {"np_sum", l_np_sum}, {"np_norm", l_np_norm}, {"torch_sum", l_torch_sum},
    {"torch_norm", l_torch_norm}, {"torch_chunked_sum", l_torch_chunked_sum},
    {"torch_chunked_norm", l_torch_chunked_norm}, {"torch_row_sum", l_torch_row_sum}, {"torch_row_norm", l_torch_row_norm},
    {"torch_col_sum", l_torch_col_sum}, {"torch_col_norm", l_torch_col_norm},
    {"acos", l_acos}, {"sin", l_sin}, {"cos", l_cos}, {"trunc", l_trunc},
    {"np_acos", l_np_acos}, {"np_sin", l_np_sin}, {"np_cos", l_np_cos},
    {"topk_mask", l_topk_mask}, {"kth_largest_abs", l_kth_abs}, {"row_rank", l_row_rank},
    {"torch_softmax_rows", l_torch_softmax_rows},
    {"rand", l_rand}, {"tail_mask", l_tail_mask}, {"error", l_error}, {"promote", l_promote},
    {NULL, NULL}
};

/* v.kind, v.dtype, v.shape, v.numel, attributes of inputs, then methods */
static int value_index(lua_State *S)
{
    cr_lua *L = get_lua(S);
    uint32_t id = cr_lua_value_node(S, 1);
    const char *k = lua_tostring(S, 2);
    if (k && L->g && id < L->g->n_nodes) {
        const cr_node *n = &L->g->nodes[id];
        if (!strcmp(k, "kind")) {
            lua_pushstring(S, n->kind == CR_VK_TENSOR ? "tensor" : n->kind == CR_VK_ROWS ? "rows"
                              : n->kind == CR_VK_COLS ? "cols" : "scalar");
            return 1;
        }
        if (!strcmp(k, "dtype")) { lua_pushstring(S, dt_name(n->dtype)); return 1; }
    }
    if (lua_getiuservalue(S, 1, 1) == LUA_TTABLE) {
        lua_pushvalue(S, 2);
        if (lua_rawget(S, -2) != LUA_TNIL) return 1;
        lua_pop(S, 1);
    }
    lua_pop(S, 1);
    if (k && L->g && id < L->g->n_nodes) {
        const cr_node *n = &L->g->nodes[id];
        uint64_t rows = 1, cols = 1;
        if (n->domain != CR_NO_DOMAIN) { rows = L->g->domains[n->domain].rows; cols = L->g->domains[n->domain].cols; }
        if (!strcmp(k, "numel")) {
            lua_pushinteger(S, (lua_Integer)(n->kind == CR_VK_TENSOR ? rows * cols : n->kind == CR_VK_ROWS ? rows
                                             : n->kind == CR_VK_COLS ? cols : 1));
            return 1;
        }
        if (!strcmp(k, "shape")) {
            lua_newtable(S);
            if (n->kind == CR_VK_TENSOR) { lua_pushinteger(S, (lua_Integer)rows); lua_rawseti(S, -2, 1);
                                           lua_pushinteger(S, (lua_Integer)cols); lua_rawseti(S, -2, 2); }
            if (n->kind == CR_VK_ROWS) { lua_pushinteger(S, (lua_Integer)rows); lua_rawseti(S, -2, 1); }
            if (n->kind == CR_VK_COLS) { lua_pushinteger(S, (lua_Integer)cols); lua_rawseti(S, -2, 1); }
            return 1;
        }
    }
    /* methods: x:cast("float32"), x:sum(), x:abs() ... */
    lua_rawgeti(S, LUA_REGISTRYINDEX, L->sandbox_ref);
    lua_getfield(S, -1, "cr");
    lua_pushvalue(S, 2);
    lua_gettable(S, -2);
    return 1;
}

static int value_tostring(lua_State *S)
{
    cr_lua *L = get_lua(S);
    uint32_t id = cr_lua_value_node(S, 1);
    if (L->g && id < L->g->n_nodes) {
        const cr_node *n = &L->g->nodes[id];
        lua_pushfstring(S, "<%s %s %%%d>", n->kind == CR_VK_TENSOR ? "tensor" : n->kind == CR_VK_ROWS ? "rows"
                        : n->kind == CR_VK_COLS ? "cols" : "scalar",
                        dt_name(n->dtype), (int)id);
    } else {
        lua_pushfstring(S, "<value %%%d>", (int)id);
    }
    return 1;
}

void cr_lua_open_values(lua_State *S)
{
    luaL_newmetatable(S, VALUE_META);
    static const luaL_Reg meta[] = {
        {"__add", l_add}, {"__sub", l_sub}, {"__mul", l_mul}, {"__div", l_div}, {"__unm", l_neg},
        {"__index", value_index}, {"__tostring", value_tostring},
        {NULL, NULL}};
    luaL_setfuncs(S, meta, 0);
    /* getmetatable(value) answers this string, not the table: a script
     * that could edit it might add __gc (Lua marks each new value for a
     * finalizer, run with hooks off: an unbounded loop at lua_close) or
     * change arithmetic for every other method in this state */
    lua_pushliteral(S, VALUE_META);
    lua_setfield(S, -2, "__metatable");
    lua_pop(S, 1);
}

void cr_lua_push_api(lua_State *S) { luaL_newlib(S, cr_funcs); }

/* ---- ctx ---------------------------------------------------------------- */

static void push_shape(lua_State *S, uint32_t ndim, const uint64_t *shape)
{
    lua_createtable(S, (int)ndim, 0);
    for (uint32_t i = 0; i < ndim; i++) {
        lua_pushinteger(S, (lua_Integer)shape[i]);
        lua_rawseti(S, -2, (lua_Integer)i + 1);
    }
}

static const cr_param_value *find_param(const cr_param_set *set, const char *name)
{
    for (uint32_t i = 0; set && i < set->n; i++)
        if (set->items[i].present && !strcmp(set->items[i].name, name)) return &set->items[i];
    return NULL;
}

/* parameters of one scope: declared ones with defaults and kinds; without a
 * method (tests), every present value as a number */
static void push_params(lua_State *S, const cr_method_info *m, cr_param_scope scope,
                        const cr_param_set *set)
{
    lua_newtable(S);
    if (!m) {
        for (uint32_t i = 0; set && i < set->n; i++) {
            if (!set->items[i].present) continue;
            lua_pushnumber(S, set->items[i].value);
            lua_setfield(S, -2, set->items[i].name);
        }
        return;
    }
    for (uint32_t i = 0; i < m->n_params; i++) {
        const cr_param_decl *d = &m->params[i];
        if (d->scope != scope) continue;
        const cr_param_value *pv = find_param(set, d->name);
        if (!pv && !d->has_default) continue;
        double v = pv ? pv->value : d->dflt;
        if (d->kind == CR_PARAM_BOOL) lua_pushboolean(S, v != 0);
        else lua_pushnumber(S, v);
        lua_setfield(S, -2, d->name);
    }
}

static void push_input(lua_State *S, const cr_lua_call *c, uint32_t i)
{
    const cr_lua_input *in = &c->inputs[i];
    push_value(S, in->node);
    lua_newtable(S);
    lua_pushstring(S, in->model ? in->model : "");
    lua_setfield(S, -2, "model");
    lua_pushinteger(S, (lua_Integer)i + 1);
    lua_setfield(S, -2, "index");
    lua_pushboolean(S, in->is_base);
    lua_setfield(S, -2, "is_base");
    lua_pushstring(S, in->tensor ? in->tensor : "");
    lua_setfield(S, -2, "name");
    push_shape(S, in->ndim, in->shape);
    lua_setfield(S, -2, "shape");
    uint64_t numel = 1;
    for (uint32_t d = 0; d < in->ndim; d++) numel *= in->shape[d];
    lua_pushinteger(S, (lua_Integer)numel);
    lua_setfield(S, -2, "numel");
    push_params(S, c->method, CR_PARAM_MODEL, in->params);
    lua_setfield(S, -2, "params");
    lua_setiuservalue(S, -2, 1);
}

static int build_ctx(lua_State *S)
{
    cr_lua *L = get_lua(S);
    const cr_lua_call *c = L->call;
    lua_newtable(S);
    lua_pushstring(S, c->name);
    lua_setfield(S, -2, "name");
    if (c->layer >= 0) { lua_pushinteger(S, c->layer); lua_setfield(S, -2, "layer"); }
    push_shape(S, c->ndim, c->shape);
    lua_setfield(S, -2, "shape");
    lua_pushboolean(S, c->is_embed);
    lua_setfield(S, -2, "is_embed");
    lua_pushboolean(S, c->optional);
    lua_setfield(S, -2, "optional");
    lua_pushboolean(S, c->precise);
    lua_setfield(S, -2, "precise");
    lua_pushstring(S, cr_mk_name(c->mk_version));
    lua_setfield(S, -2, "mergekit_version");
    lua_pushinteger(S, (lua_Integer)c->seed);
    lua_setfield(S, -2, "seed");
    if (c->dtype != CR_DTYPE_NONE) { lua_pushstring(S, dt_name(c->dtype)); lua_setfield(S, -2, "dtype"); }
    push_params(S, c->method, CR_PARAM_GLOBAL, c->params);
    lua_setfield(S, -2, "params");
    lua_createtable(S, (int)c->n_inputs, 0);   /* inputs */
    lua_newtable(S);                           /* others */
    int n_others = 0;
    for (uint32_t i = 0; i < c->n_inputs; i++) {
        push_input(S, c, i);
        if (c->inputs[i].is_base) {
            lua_pushvalue(S, -1);
            lua_setfield(S, -5, "base");
        } else {
            lua_pushvalue(S, -1);
            lua_rawseti(S, -3, ++n_others);
        }
        lua_rawseti(S, -3, (lua_Integer)i + 1);
    }
    lua_setfield(S, -3, "others");
    lua_setfield(S, -2, "inputs");
    return 1;
}

/* protected: ctx = build_ctx(); return method.merge(ctx) */
static int call_merge(lua_State *S)
{
    /* stack: method table */
    if (lua_getfield(S, 1, "merge") != LUA_TFUNCTION)
        return luaL_error(S, "the method has no merge function");
    build_ctx(S);
    lua_call(S, 1, 1);
    return 1;
}

cr_status cr_lua_call_merge(cr_lua *L, int ref, cr_graph *g, const cr_lua_call *call,
                            uint32_t *result, cr_error *err)
{
    lua_State *S = L->S;
    char context[600];
    snprintf(context, sizeof context, "merging tensor '%s'%s%s", call->name,
             call->method ? " with method " : "", call->method ? call->method->name : "");
    L->g = g;
    L->call = call;
    lua_pushcfunction(S, call_merge);
    lua_rawgeti(S, LUA_REGISTRYINDEX, ref);
    int status = cr_lua_guarded_pcall(L, 1, 1);
    cr_status st = CR_OK;
    if (status != LUA_OK) {
        st = cr_lua_failure(L, status, context, err);
    } else {
        uint32_t n = cr_lua_value_node(S, -1);
        if (n == CR_NO_NODE && lua_type(S, -1) == LUA_TNUMBER) {
            n = CR_NO_NODE;
        }
        if (n == CR_NO_NODE || g->nodes[n].kind == CR_VK_ROWS || g->nodes[n].kind == CR_VK_COLS) {
            st = cr_fail(err, CR_ERR_CONFIG, "%s: merge returned %s, not a tensor value (%s)",
                         call->method && call->method->source ? call->method->source : "method",
                         luaL_typename(S, -1), context);
        } else if (g->nodes[n].domain != CR_NO_DOMAIN && g->nodes[n].domain != call->domain) {
            st = cr_fail(err, CR_ERR_CONFIG, "%s: merge returned a value of another tensor (%s)",
                         call->method && call->method->source ? call->method->source : "method", context);
        } else {
            *result = n;
        }
        lua_pop(S, 1);
    }
    L->g = NULL;
    L->call = NULL;
    return st;
}
