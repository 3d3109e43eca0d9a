/* lua_api.c — the sandboxed Lua state and the `cr` API for merge methods.
 *
 * Owns: the Lua state's allocator (through the cr_allocator hook, with a
 * ceiling), the instruction budget hook, the sandbox environment, symbolic
 * values (userdata wrapping a graph node index) with their arithmetic
 * metamethods and torch's dtype rules, the `cr` functions of
 * spec/lua-api.md, and building `ctx` for one merge call. Lua never touches
 * tensor data: every operation here appends a node to the current graph.
 */
#include "lua_inc.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "limits.h"
#include "lua_api.h"
#include "stdlib_embed.h"
#include "scalar.h"

#define VALUE_META "cr.value"
#define HOOK_EVERY 1000

struct cr_lua {
    const cr_allocator *alloc;
    lua_State *S;
    size_t used, max_bytes;
    long max_instr, budget;
    bool in_call;               /* inside guarded_pcall: allocations are charged to the budget */
    bool alloc_spent;           /* the budget ran out on an allocation (for the message) */
    bool host_oom;              /* the host allocator failed (not the script's limit): CR_ERR_NOMEM */
    double max_seconds, cpu_start;  /* CPU-time backstop of the current call */
    cr_graph *g;                /* graph of the current call; NULL between calls */
    const cr_lua_call *call;    /* current merge call or NULL */
    int sandbox_ref;            /* the read-only base environment */
    char where[256];            /* "file:line" last seen by the hook (memory errors have no traceback) */
};

static cr_lua *get_lua(lua_State *S) { return *(cr_lua **)lua_getextraspace(S); }

/* ---- allocator and limits ---------------------------------------------- */

/* Bytes allocated per instruction of budget. One instruction can copy a
 * whole string (s .. s, string.rep), so a loop of few instructions over a
 * 100 MB string would take days on the instruction count alone; charging
 * allocations too bounds it (worst case, string.rep's byte-wise copy, about
 * 6 ns a byte: 2e8 x 8 bytes in ~10 s). Ordinary methods allocate a few KB. */
#define ALLOC_BYTES_PER_INSTRUCTION 8

static void budget_spent(lua_State *S);

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    cr_lua *L = ud;
    if (!ptr) osize = 0;
    if (nsize == 0) {
        cr_free(L->alloc, ptr);
        L->used -= osize;
        return NULL;
    }
    if (nsize > osize && L->used - osize + nsize > L->max_bytes) return NULL;
    /* the allocation itself goes ahead (an allocator cannot raise a Lua
     * error); a spent budget makes the hook stop the next instruction */
    if (nsize > osize && L->in_call && L->budget >= 0) {
        L->budget -= (long)((nsize - osize) / ALLOC_BYTES_PER_INSTRUCTION);
        if (L->budget < 0) {
            L->alloc_spent = true;
            budget_spent(L->S);
        }
    }
    void *p = cr_realloc(L->alloc, ptr, nsize);
    if (!p) { L->host_oom = true; return NULL; }
    L->used = L->used - osize + nsize;
    return p;
}

static void count_hook(lua_State *S, lua_Debug *ar);

/* Once the budget is spent the hook fires on every instruction, so a script
 * that catches the limit error with pcall and loops on is stopped at its next
 * instruction outside the pcall (with the hook every 1000 instructions it
 * could spend each fresh 1000 inside the pcall forever). */
static void budget_spent(lua_State *S)
{
    lua_sethook(S, count_hook, LUA_MASKCOUNT, 1);
}

static double thread_cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void count_hook(lua_State *S, lua_Debug *ar)
{
    cr_lua *L = get_lua(S);
    /* The deterministic limits are instructions, allocations and the costly
     * library calls charged below. Some single instructions still scan a
     * whole string (s == t, s < t, tonumber(s), utf8.len(s), unpacking a
     * million values): a loop of them over a 100 MB string would take days
     * inside the instruction budget. CPU time per call is the backstop;
     * real methods take milliseconds, so it never decides an honest run. */
    if (thread_cpu_seconds() - L->cpu_start > L->max_seconds) {
        budget_spent(S);
        L->budget = -1;
        luaL_error(S, "time limit exceeded (%d s of CPU time in one call): does the script loop over a "
                   "huge string or table?", (int)L->max_seconds);
    }
    if (lua_getinfo(S, "Sl", ar) && ar->currentline > 0)
        snprintf(L->where, sizeof L->where, "%s:%d", ar->short_src, ar->currentline);
    L->budget -= HOOK_EVERY;
    if (L->budget < 0) {
        budget_spent(S);
        if (L->alloc_spent)
            luaL_error(S, "instruction limit exceeded (%I instructions): allocating memory counts one "
                       "instruction per %d bytes, and this call allocated over %I MiB in all",
                       (lua_Integer)L->max_instr, ALLOC_BYTES_PER_INSTRUCTION,
                       (lua_Integer)((L->max_instr * ALLOC_BYTES_PER_INSTRUCTION) >> 20));
        luaL_error(S, "instruction limit exceeded (%I instructions): does the script loop forever?",
                   (lua_Integer)L->max_instr);
    }
}

/* ---- library functions that run long in C ------------------------------ */

/* The hook counts Lua instructions only; a C library function runs to its
 * end unseen. Two can run for hours on small inputs: pattern matching
 * backtracks (string.find(("a"):rep(40), ("a*"):rep(40) .. "b")) and
 * table.move loops over any index range ({} from 1 to 1e12). Wrappers charge
 * each call its worst-case step count against the same budget before it
 * runs: for a pattern, starts x (pattern length + 1) x C(n + k, k) with n
 * the subject's length, k the pattern's repetition items (* + - ?, %b, back
 * references) and starts 1 when anchored, else n + 1; for table.move, the
 * elements moved; for table.insert/remove with a position, the elements
 * shifted. Ordinary uses (patterns on tensor names) cost well under 10^7; a
 * call over the remaining budget fails before it starts. */
enum { CHARGE_FIND, CHARGE_MATCH, CHARGE_GMATCH, CHARGE_GSUB, CHARGE_MOVE, CHARGE_INSERT, CHARGE_REMOVE,
       CHARGE_CONCAT, CHARGE_UNPACK, CHARGE_REP, CHARGE_SORT };

static double pattern_cost(lua_State *S, int kind)
{
    if (lua_type(S, 1) != LUA_TSTRING || lua_type(S, 2) != LUA_TSTRING) return 1;  /* type error or a number */
    size_t n, m;
    lua_tolstring(S, 1, &n);
    const char *p = lua_tolstring(S, 2, &m);
    size_t i = 0, k = 0;
    bool anchored = false;
    if (m && p[0] == '^' && kind != CHARGE_GMATCH) { anchored = true; i = 1; }
    bool plain = kind == CHARGE_FIND && lua_toboolean(S, 4);
    while (!plain && i < m) {
        char c = p[i++];
        if (c == '(' || c == ')') continue;
        if (c == '%' && i < m) {
            char d = p[i++];
            if (d == 'b') { k++; i += 2; continue; }
            if (d >= '0' && d <= '9') { k++; continue; }
            if (d == 'f') continue;              /* its set follows as an ordinary class */
        } else if (c == '[') {
            if (i < m && p[i] == '^') i++;
            do { if (i < m && p[i++] == '%') i++; } while (i < m && p[i] != ']');
            i++;
        }
        if (i < m && (p[i] == '*' || p[i] == '+' || p[i] == '-' || p[i] == '?')) { k++; i++; }
    }
    double cost = (anchored ? 1.0 : (double)n + 1) * ((double)m + 1);
    for (size_t j = 1; j <= k && cost < 1e18; j++) cost *= ((double)n + (double)j) / (double)j;
    return cost;
}

static double move_cost(lua_State *S)
{
    int okf, oke;
    lua_Integer f = lua_tointegerx(S, 2, &okf), e = lua_tointegerx(S, 3, &oke);
    if (!okf || !oke || e < f) return 1;
    return (double)e - (double)f + 1;
}

/* string.rep(s, n [, sep]) loops n times in C; the allocator charges the
 * bytes it copies, but with s and sep both empty it copies nothing and
 * ("").rep("", math.maxinteger) looped for ever. Charged n then. */
static double rep_cost(lua_State *S)
{
    int okn;
    lua_Integer n = lua_tointegerx(S, 2, &okn);
    if (!okn || n <= 1 || lua_type(S, 1) != LUA_TSTRING) return 1;
    size_t l, lsep = 0;
    lua_tolstring(S, 1, &l);
    if (lua_type(S, 3) == LUA_TSTRING) lua_tolstring(S, 3, &lsep);
    return l + lsep ? 1 : (double)n;
}

/* table.concat(t, sep, i, j) and table.unpack(t, i, j) visit every index
 * from i to j (default #t) through lua_geti, which for a table whose
 * __index is a C function costs no instruction: table.concat over 1..1e15
 * of setmetatable({}, {__index = table.concat}) appends "" for ever.
 * Charged the indices visited. */
static double range_cost(lua_State *S, int first)
{
    int oki = 1, okj = 1;
    lua_Integer i = lua_isnoneornil(S, first) ? 1 : lua_tointegerx(S, first, &oki), j;
    if (!lua_isnoneornil(S, first + 1)) j = lua_tointegerx(S, first + 1, &okj);
    else if (lua_type(S, 1) == LUA_TTABLE) j = luaL_len(S, 1);   /* as the function will ask */
    else return 1;
    if (!oki || !okj || j < i) return 1;
    return (double)j - (double)i + 1;
}

/* table.sort(t) compares and swaps about n log2 n times through lua_geti/
 * lua_seti: with a C __index/__newindex and a __len of 2^31 it sorts
 * nothing for hours, without an instruction or an allocation. */
static double sort_cost(lua_State *S)
{
    if (lua_type(S, 1) != LUA_TTABLE) return 1;
    double n = (double)luaL_len(S, 1);
    return n > 1 ? n * log2(n) : 1;
}

/* table.insert(t, pos, v) and table.remove(t, pos) shift #t - pos elements
 * (#t may come from __len, so it is asked the same way the function will) */
static double shift_cost(lua_State *S, int kind)
{
    int okp;
    lua_Integer pos = lua_tointegerx(S, 2, &okp);
    bool has_pos = kind == CHARGE_INSERT ? lua_gettop(S) == 3 : lua_gettop(S) >= 2;   /* insert(t, v) appends */
    if (!has_pos || !okp || lua_type(S, 1) != LUA_TTABLE) return 1;
    lua_Integer n = luaL_len(S, 1);
    return n >= pos ? (double)n - (double)pos + 1 : 1;
}

static int charged_call(lua_State *S)
{
    cr_lua *L = get_lua(S);
    int kind = (int)lua_tointeger(S, lua_upvalueindex(2));
    static const char *const what[] = { "string pattern", "string pattern", "string pattern",
        "string pattern", "table.move", "table.insert/remove", "table.insert/remove", "table.concat",
        "table.unpack", "string.rep", "table.sort" };
    double cost = kind == CHARGE_MOVE ? move_cost(S)
                : kind == CHARGE_INSERT || kind == CHARGE_REMOVE ? shift_cost(S, kind)
                : kind == CHARGE_CONCAT ? range_cost(S, 3)
                : kind == CHARGE_UNPACK ? range_cost(S, 2)
                : kind == CHARGE_REP ? rep_cost(S)
                : kind == CHARGE_SORT ? sort_cost(S)
                : pattern_cost(S, kind);
    if (cost > (double)L->budget) {
        char steps[32];   /* lua_pushfstring has no %g with a precision */
        snprintf(steps, sizeof steps, "%.3g", cost);
        L->budget = -1;
        budget_spent(S);
        luaL_error(S, "instruction limit exceeded: this %s call could take %s steps, over what is left "
                   "of the budget of %I instructions", what[kind], steps, (lua_Integer)L->max_instr);
    }
    L->budget -= (long)cost;
    int n = lua_gettop(S);
    lua_pushvalue(S, lua_upvalueindex(1));
    lua_insert(S, 1);
    lua_call(S, n, LUA_MULTRET);
    return lua_gettop(S);
}

/* setmetatable without __gc: Lua runs finalizers with hooks off (lgc.c
 * GCTM), during any collection or lua_close, so no budget could stop one
 * that loops. Lua 5.4 marks a table for finalization only when its
 * metatable has __gc at setmetatable time, so checking here suffices. */
static int safe_setmetatable(lua_State *S)
{
    lua_pushliteral(S, "__gc");
    if (lua_type(S, 2) == LUA_TTABLE && lua_rawget(S, 2) != LUA_TNIL)
        return luaL_error(S, "setmetatable: __gc metamethods are not allowed in a merge method "
                          "(finalizers run outside the instruction limit)");
    lua_settop(S, 2);
    lua_pushvalue(S, lua_upvalueindex(1));
    lua_insert(S, 1);
    lua_call(S, 2, 1);
    return 1;
}

/* xpcall(f, msgh, ...) without a message handler inside the error: Lua
 * calls msgh at the point of the error, before unwinding, and when the
 * error is the budget's own (raised by the count hook) that point is inside
 * the hook, where Lua has hooks switched off (ldo.c luaD_hook clears
 * allowhook and only the enclosing pcall restores it): a handler that loops
 * there ran forever, past both the instruction budget and the CPU
 * backstop, which are checked in the hook. Here f runs under a plain pcall
 * and msgh is called after the stack has unwound, as an ordinary hooked
 * call (also protected: an error in msgh becomes the second result, where
 * Lua would call msgh again). The sandbox has no debug library, so a
 * handler cannot tell the difference; memory errors skip msgh, as in Lua. */
static int safe_xpcall(lua_State *S)
{
    int n = lua_gettop(S);
    luaL_checktype(S, 2, LUA_TFUNCTION);
    lua_pushboolean(S, 1);   /* first result */
    lua_pushvalue(S, 1);     /* the function */
    lua_rotate(S, 3, 2);     /* below its arguments */
    int status = lua_pcall(S, n - 2, LUA_MULTRET, 0);
    if (status == LUA_OK) return lua_gettop(S) - 2;
    /* stack: f, msgh, true, error */
    lua_pushboolean(S, 0);
    if (status == LUA_ERRMEM) {
        lua_insert(S, -2);
        return 2;
    }
    lua_pushvalue(S, 2);
    lua_pushvalue(S, -3);
    lua_pcall(S, 1, 1, 0);   /* msgh's result, or its error */
    return 2;
}

/* replace lib.name (the real library table, which string methods use) */
static void charge_field(lua_State *S, const char *lib, const char *name, int kind)
{
    lua_getglobal(S, lib);
    lua_getfield(S, -1, name);
    lua_pushinteger(S, kind);
    lua_pushcclosure(S, charged_call, 2);
    lua_setfield(S, -2, name);
    lua_pop(S, 1);
}

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

/* The node of argument idx: a value, or a Lua number/boolean as a weak
 * (Python-float-like) constant. */
static uint32_t arg_node(lua_State *S, int idx)
{
    uint32_t n = cr_lua_value_node(S, idx);
    if (n != CR_NO_NODE) return n;
    if (lua_type(S, idx) == LUA_TNUMBER) return make_const(S, lua_tonumber(S, idx), CR_DTYPE_F64, true);
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
    double v = luaL_checknumber(S, 1);
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
static int l_torch_row_sum(lua_State *S)
{
    push_value(S, library_reduce(S, need_tensor(S, 1, "torch_row_sum"), CR_GOP_ROWSUM, CR_SUM_TORCH, ROW_REDUCERS));
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

static uint32_t k_arg(lua_State *S, int idx)
{
    if (lua_type(S, idx) == LUA_TNUMBER) {
        lua_Number k = lua_tonumber(S, idx);
        if (!(k >= 0) || k != floor(k)) luaL_error(S, "k must be a non-negative integer, got %f", (lua_Number)k);
        return make_const(S, k, CR_DTYPE_F64, true);
    }
    uint32_t k = arg_node(S, idx);
    if (node_at(S, k)->kind != CR_VK_SCALAR) luaL_error(S, "k must be a number or a scalar");
    return k;
}

/* cr.topk_mask(x, k [, ties]): ties "index" (default), "torch_desc"
 * (torch.argsort(|x|, descending=True)[:k]) or "torch_asc" (the last k of
 * torch.sort(|x|).indices): which elements equal to the k-th largest
 * magnitude are kept when not all of them fit. */
static int l_topk_mask(lua_State *S)
{
    static const char *const names[] = { "index", "torch_desc", "torch_asc", NULL };
    uint32_t ins[2] = { need_tensor(S, 1, "topk_mask"), k_arg(S, 2) };
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
    uint32_t ins[2] = { need_tensor(S, 1, "kth_largest_abs"), k_arg(S, 2) };
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
    {"min", l_min}, {"max", l_max}, {"clamp", l_clamp}, {"where", l_where},
    {"gt", l_gt}, {"ge", l_ge}, {"lt", l_lt}, {"le", l_le}, {"eq", l_eq}, {"ne", l_ne},
    {"land", l_and}, {"lor", l_or}, {"lnot", l_not}, {"neg", l_neg},
    {"add", l_add}, {"sub", l_sub}, {"mul", l_mul}, {"div", l_div},
    {"cast", l_cast}, {"float", l_float}, {"const", l_const},
    {"sum", l_sum}, {"mean", l_mean}, {"norm", l_norm}, {"dot", l_dot},
    {"row_sum", l_row_sum}, {"row_max", l_row_max}, {"row_norm", l_row_norm}, {"row_dot", l_row_dot},
    {"col_sum", l_col_sum}, {"col_norm", l_col_norm}, {"col_dot", l_col_dot},
    {"np_sum", l_np_sum}, {"np_norm", l_np_norm}, {"torch_sum", l_torch_sum},
    {"torch_norm", l_torch_norm}, {"torch_row_sum", l_torch_row_sum}, {"torch_row_norm", l_torch_row_norm},
    {"torch_col_sum", l_torch_col_sum}, {"torch_col_norm", l_torch_col_norm},
    {"acos", l_acos}, {"sin", l_sin}, {"cos", l_cos}, {"trunc", l_trunc},
    {"np_acos", l_np_acos}, {"np_sin", l_np_sin}, {"np_cos", l_np_cos},
    {"topk_mask", l_topk_mask}, {"kth_largest_abs", l_kth_abs}, {"row_rank", l_row_rank},
    {"rand", l_rand}, {"error", l_error}, {"promote", l_promote},
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

/* ---- sandbox ------------------------------------------------------------ */

/* load(chunk [, name [, mode [, env]]]): text only, sandboxed environment */
static int safe_load(lua_State *S)
{
    cr_lua *L = get_lua(S);
    size_t n;
    const char *s = luaL_checklstring(S, 1, &n);
    const char *name = luaL_optstring(S, 2, "=(load)");
    int status = luaL_loadbufferx(S, s, n, name, "t");
    if (status != LUA_OK) { lua_pushnil(S); lua_insert(S, -2); return 2; }
    if (!lua_isnoneornil(S, 4)) lua_pushvalue(S, 4);
    else lua_rawgeti(S, LUA_REGISTRYINDEX, L->sandbox_ref);
    if (!lua_setupvalue(S, -2, 1)) lua_pop(S, 1);
    return 1;
}

static void copy_fields(lua_State *S, int dst, const char *lib, const char *const *skip)
{
    lua_getglobal(S, lib);
    lua_newtable(S);
    lua_pushnil(S);
    while (lua_next(S, -3)) {
        bool skipped = false;
        for (const char *const *k = skip; k && *k; k++)
            if (lua_type(S, -2) == LUA_TSTRING && !strcmp(lua_tostring(S, -2), *k)) skipped = true;
        if (skipped) { lua_pop(S, 1); continue; }
        lua_pushvalue(S, -2);
        lua_insert(S, -2);
        lua_rawset(S, -4);
    }
    lua_setfield(S, dst, lib);
    lua_pop(S, 1);
}

static void build_sandbox(lua_State *S, cr_lua *L)
{
    static const char *const base_ok[] = {
        "assert", "error", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget", "rawlen",
        "rawset", "select", "setmetatable", "getmetatable", "tonumber", "tostring", "type",
        "xpcall", "_VERSION", NULL };
    static const char *const math_skip[] = { "random", "randomseed", NULL };
    static const char *const string_skip[] = { "dump", NULL };
    charge_field(S, "string", "find", CHARGE_FIND);
    charge_field(S, "string", "match", CHARGE_MATCH);
    charge_field(S, "string", "gmatch", CHARGE_GMATCH);
    charge_field(S, "string", "gsub", CHARGE_GSUB);
    charge_field(S, "table", "move", CHARGE_MOVE);
    charge_field(S, "table", "insert", CHARGE_INSERT);
    charge_field(S, "table", "remove", CHARGE_REMOVE);
    charge_field(S, "table", "concat", CHARGE_CONCAT);
    charge_field(S, "table", "unpack", CHARGE_UNPACK);
    charge_field(S, "string", "rep", CHARGE_REP);
    charge_field(S, "table", "sort", CHARGE_SORT);
    lua_newtable(S);
    int sb = lua_gettop(S);
    for (const char *const *k = base_ok; *k; k++) {
        lua_getglobal(S, *k);
        lua_setfield(S, sb, *k);
    }
    lua_getglobal(S, "setmetatable");
    lua_pushcclosure(S, safe_setmetatable, 1);
    lua_setfield(S, sb, "setmetatable");
    lua_pushcfunction(S, safe_xpcall);
    lua_setfield(S, sb, "xpcall");
    lua_pushcfunction(S, safe_load);
    lua_setfield(S, sb, "load");
    copy_fields(S, sb, "string", string_skip);
    copy_fields(S, sb, "table", NULL);
    copy_fields(S, sb, "math", math_skip);
    copy_fields(S, sb, "utf8", NULL);
    /* string methods ("x"):rep() go through the real string table; take
     * string.dump out of it so no binary chunk can be produced at all */
    lua_getglobal(S, "string");
    lua_pushnil(S);
    lua_setfield(S, -2, "dump");
    lua_pop(S, 1);
    /* and the strings' metatable is read-only too (its __index is that real
     * string table, shared by every method in this state) */
    lua_pushliteral(S, "");
    lua_getmetatable(S, -1);
    lua_pushliteral(S, "string");
    lua_setfield(S, -2, "__metatable");
    lua_pop(S, 2);
    luaL_newlib(S, cr_funcs);
    lua_setfield(S, sb, "cr");
    lua_pushvalue(S, sb);
    lua_setfield(S, sb, "_G");
    L->sandbox_ref = luaL_ref(S, LUA_REGISTRYINDEX);
}

/* The message handler of every protected entry. A string (or number)
 * error already names its file:line (luaL_where); any other error object
 * (error({}), error(nil), a table with __tostring) is named by its type and
 * the script line that raised it, found on the stack. Its __tostring is not
 * called: no script code runs inside the handler. */
static int traceback(lua_State *S)
{
    const char *msg = lua_tostring(S, 1);
    if (!msg) {
        lua_Debug ar;
        int level = 1;
        while (lua_getstack(S, level++, &ar))
            if (lua_getinfo(S, "Sl", &ar) && ar.currentline > 0) {
                lua_pushfstring(S, "%s:%d: ", ar.short_src, ar.currentline);
                break;
            }
        if (lua_gettop(S) == 1) lua_pushliteral(S, "");
        msg = lua_pushfstring(S, "%serror object is a %s value", lua_tostring(S, 2), luaL_typename(S, 1));
    }
    luaL_traceback(S, S, msg, 1);
    return 1;
}

/* Fill err from a failed pcall (message on top of the stack) and pop it. */
static cr_status lua_failure(cr_lua *L, int status, const char *context, cr_error *err)
{
    lua_State *S = L->S;
    /* raw: a number would be converted in place, allocating outside a pcall */
    const char *msg = lua_type(S, -1) == LUA_TSTRING ? lua_tostring(S, -1) : NULL;
    /* the machine ran out of memory, not the script: the host's error */
    cr_status st = L->host_oom ? CR_ERR_NOMEM : CR_ERR_CONFIG;
    L->host_oom = false;
    if (st == CR_ERR_NOMEM)
        cr_fail(err, st, "out of memory%s%s%s%s", context[0] ? " " : "", context,
                L->where[0] ? " near " : "", L->where);
    else if (status == LUA_ERRMEM || !msg)
        cr_fail(err, st, "%s%sLua memory limit (%zu MiB) exceeded%s%s", context,
                context[0] ? ": " : "", L->max_bytes >> 20, L->where[0] ? " near " : "", L->where);
    else
        cr_fail(err, st, "%s%s%s", msg, context[0] ? "\n  while " : "", context);
    lua_pop(S, 1);
    lua_gc(S, LUA_GCCOLLECT);
    return st;
}

/* pcall with the traceback handler, a fresh budget and the hook on (unless nested) */
static int guarded_pcall(cr_lua *L, int nargs, int nres)
{
    lua_State *S = L->S;
    int base = lua_gettop(S) - nargs;
    if (!lua_checkstack(S, 8)) {   /* cannot raise: growing the stack failed */
        lua_settop(S, base - 1);
        lua_pushnil(S);            /* in the function's slot: read as the memory limit */
        return LUA_ERRMEM;
    }
    lua_pushcfunction(S, traceback);
    lua_insert(S, base);
    /* A Lua recipe loads method files from inside its own call
     * (crucible.merge -> cr_methods_find -> cr_lua_load_chunk): the inner
     * call shares the outer budget and leaves the hook on, or the recipe
     * would go on unhooked with a fresh budget after its first method. */
    bool outer = !L->in_call;
    if (outer) {
        L->budget = L->max_instr;
        L->where[0] = 0;
        lua_sethook(S, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
        L->in_call = true;
        L->alloc_spent = false;
        L->cpu_start = thread_cpu_seconds();
    }
    int status = lua_pcall(S, nargs, nres, base);
    if (outer) {
        L->in_call = false;
        lua_sethook(S, NULL, 0, 0);
    }
    lua_remove(S, base);
    return status;
}

/* ---- protected entries -------------------------------------------------- *
 * Every entry into Lua from C runs inside guarded_pcall: the traceback
 * handler, and the budget and the hook on. Outside one, a Lua error (a
 * metamethod's, or the memory limit on any allocation: pushing a string,
 * a new table, luaL_ref growing the registry) has nowhere to go but the
 * panic function, and Lua code run there is unhooked. So the C side only
 * pushes C functions, light userdata, integers and registry references
 * between calls; the work happens in the bodies below. */

/* Reached only by a bug (an unprotected call): say so before Lua aborts. */
static int panic(lua_State *S)
{
    fprintf(stderr, "crucible: internal error: Lua error outside a protected call: %s\n",
            lua_type(S, -1) == LUA_TSTRING ? lua_tostring(S, -1) : "(not a string)");
    return 0;
}

cr_status cr_lua_protect(cr_lua *L, cr_lua_cfn fn, void *ud, const char *context, cr_error *err)
{
    lua_State *S = L->S;
    lua_pushcfunction(S, fn);
    lua_pushlightuserdata(S, ud);
    int status = guarded_pcall(L, 1, 0);
    return status == LUA_OK ? CR_OK : lua_failure(L, status, context, err);
}

static int unref_body(lua_State *S)
{
    luaL_unref(S, LUA_REGISTRYINDEX, (int)lua_tointeger(S, 1));
    return 0;
}

void cr_lua_unref(cr_lua *L, int ref)
{
    /* the first unref adds the free list's key to the registry: it allocates */
    lua_State *S = L->S;
    lua_pushcfunction(S, unref_body);
    lua_pushinteger(S, ref);
    if (lua_pcall(S, 1, 0, 0) != LUA_OK) lua_pop(S, 1);   /* out of memory: the slot stays taken */
}

/* protected: the libraries, the value metatable and the sandbox */
static int open_body(lua_State *S)
{
    cr_lua *L = get_lua(S);
    luaL_requiref(S, LUA_GNAME, luaopen_base, 1);
    luaL_requiref(S, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(S, LUA_TABLIBNAME, luaopen_table, 1);
    luaL_requiref(S, LUA_MATHLIBNAME, luaopen_math, 1);
    luaL_requiref(S, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    lua_pop(S, 5);
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
    build_sandbox(S, L);
    return 0;
}

/* protected: common.lua's table (a light userdata holding its reference)
 * joins `cr` */
static int join_common(lua_State *S)
{
    cr_lua *L = get_lua(S);
    int ref = *(int *)lua_touserdata(S, 1);
    lua_rawgeti(S, LUA_REGISTRYINDEX, ref);
    lua_rawgeti(S, LUA_REGISTRYINDEX, L->sandbox_ref);
    lua_getfield(S, -1, "cr");
    lua_pushnil(S);
    while (lua_next(S, -4)) {
        lua_pushvalue(S, -2);
        lua_insert(S, -2);
        lua_rawset(S, -4);
    }
    luaL_unref(S, LUA_REGISTRYINDEX, ref);
    return 0;
}

static cr_status load_common(cr_lua *L, cr_error *err)
{
    for (size_t i = 0; i < cr_stdlib_n_files; i++) {
        if (strcmp(cr_stdlib_files[i].name, "common.lua")) continue;
        int ref;
        cr_status st = cr_lua_load_chunk(L, "stdlib/common.lua", cr_stdlib_files[i].data,
                                         cr_stdlib_files[i].len, &ref, err);
        if (st) return st;
        /* common.lua returns a table of helpers: they join `cr` */
        st = cr_lua_protect(L, join_common, &ref, "loading stdlib/common.lua", err);
        if (st) return st;
    }
    return CR_OK;
}

cr_status cr_lua_open(const cr_allocator *alloc, const cr_lua_limits *limits, cr_lua **out,
                      cr_error *err)
{
    *out = NULL;
    cr_lua *L = cr_calloc(alloc, 1, sizeof *L);
    if (!L) return cr_fail(err, CR_ERR_NOMEM, "out of memory creating the Lua state");
    L->alloc = alloc;
    L->max_bytes = limits && limits->max_bytes ? limits->max_bytes : CR_LIMIT_LUA_BYTES;
    L->max_instr = limits && limits->max_instructions ? limits->max_instructions : CR_LIMIT_LUA_INSTRUCTIONS;
    L->max_seconds = limits && limits->max_seconds > 0 ? limits->max_seconds : CR_LIMIT_LUA_SECONDS;
    L->sandbox_ref = LUA_NOREF;
    L->S = lua_newstate(l_alloc, L);
    if (!L->S) { cr_free(alloc, L); return cr_fail(err, CR_ERR_NOMEM, "out of memory creating the Lua state"); }
    *(cr_lua **)lua_getextraspace(L->S) = L;
    lua_atpanic(L->S, panic);
    lua_pushcfunction(L->S, open_body);
    int status = guarded_pcall(L, 0, 0);
    cr_status st = status == LUA_OK ? CR_OK : lua_failure(L, status, "creating the Lua state", err);
    if (!st) st = load_common(L, err);
    if (st) { cr_lua_close(L); return st; }
    *out = L;
    return CR_OK;
}

void cr_lua_close(cr_lua *L)
{
    if (!L) return;
    /* no script code runs here: finalizers (__gc) are refused by
     * setmetatable, and no to-be-closed variable is open between calls */
    if (L->S) lua_close(L->S);
    cr_free(L->alloc, L);
}

lua_State *cr_lua_state(cr_lua *L) { return L->S; }

/* Set a loaded chunk's environment: its own table, reading through to the
 * sandbox, so that globals a method sets stay its own. The table is on top
 * of the stack. */
static void own_environment(lua_State *S, cr_lua *L)
{
    lua_newtable(S);
    lua_rawgeti(S, LUA_REGISTRYINDEX, L->sandbox_ref);
    lua_setfield(S, -2, "__index");
    lua_pushboolean(S, 0);
    lua_setfield(S, -2, "__metatable");
    lua_setmetatable(S, -2);
}

/* protected: run the chunk at 1 in its own environment; a table result is
 * kept in the registry: returns its reference, or LUA_NOREF */
static int load_body(lua_State *S)
{
    cr_lua *L = get_lua(S);
    lua_newtable(S);
    own_environment(S, L);
    lua_setupvalue(S, 1, 1);
    lua_settop(S, 1);
    lua_call(S, 0, 1);
    lua_pushinteger(S, lua_istable(S, -1) ? luaL_ref(S, LUA_REGISTRYINDEX) : LUA_NOREF);
    return 1;
}

cr_status cr_lua_load_chunk(cr_lua *L, const char *chunkname, const char *text, size_t len,
                            int *ref, cr_error *err)
{
    lua_State *S = L->S;
    char name[512];
    snprintf(name, sizeof name, "@%s", chunkname);
    int status = luaL_loadbufferx(S, text, len, name, "t");   /* protected itself */
    if (status != LUA_OK) return lua_failure(L, status, "", err);
    lua_pushcfunction(S, load_body);
    lua_insert(S, -2);
    status = guarded_pcall(L, 1, 1);
    if (status != LUA_OK) return lua_failure(L, status, "", err);
    *ref = (int)lua_tointeger(S, -1);
    lua_pop(S, 1);
    if (*ref == LUA_NOREF) return cr_fail(err, CR_ERR_CONFIG, "%s: the file must return a table", chunkname);
    return CR_OK;
}

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
    int status = guarded_pcall(L, 1, 1);
    cr_status st = CR_OK;
    if (status != LUA_OK) {
        st = lua_failure(L, status, context, err);
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

static int run_string_body(lua_State *S)
{
    lua_call(S, 0, 0);
    return 0;
}

cr_status cr_lua_run_string(cr_lua *L, cr_graph *g, const char *chunkname, const char *code,
                            cr_error *err)
{
    lua_State *S = L->S;
    char name[512];
    snprintf(name, sizeof name, "@%s", chunkname);
    int status = luaL_loadbufferx(S, code, strlen(code), name, "t");
    if (status != LUA_OK) return lua_failure(L, status, "", err);
    lua_rawgeti(S, LUA_REGISTRYINDEX, L->sandbox_ref);
    lua_setupvalue(S, -2, 1);
    lua_pushcfunction(S, run_string_body);
    lua_insert(S, -2);
    L->g = g;
    status = guarded_pcall(L, 1, 0);
    L->g = NULL;
    if (status != LUA_OK) return lua_failure(L, status, "", err);
    return CR_OK;
}

/* ---- whole-recipe scripts ------------------------------------------------ */

typedef struct script_args {
    const luaL_Reg *api;
    void *ud;
    void **cell;        /* the functions' upvalue, cleared when the script ends */
    int cell_ref;       /* keeps the cell alive until then */
} script_args;

/* protected: 1 the chunk, 2 its script_args; the `crucible` table is built
 * here, and the chunk runs in its own environment with it as a global */
static int script_body(lua_State *S)
{
    cr_lua *L = get_lua(S);
    script_args *a = lua_touserdata(S, 2);
    lua_newtable(S);                                  /* 3: environment */
    lua_newtable(S);                                  /* 4: crucible */
    void **cell = lua_newuserdatauv(S, sizeof *cell, 0);
    *cell = a->ud;
    lua_pushvalue(S, -1);
    a->cell_ref = luaL_ref(S, LUA_REGISTRYINDEX);
    a->cell = cell;   /* only now: until the ref holds it, a collection may free it */
    luaL_setfuncs(S, a->api, 1);
    lua_setfield(S, 3, "crucible");
    own_environment(S, L);
    lua_setupvalue(S, 1, 1);
    lua_settop(S, 1);
    lua_call(S, 0, 0);
    return 0;
}

cr_status cr_lua_run_script(cr_lua *L, const char *chunkname, const char *text, size_t len,
                            const luaL_Reg *api, void *ud, cr_error *err)
{
    lua_State *S = L->S;
    char name[512];
    snprintf(name, sizeof name, "@%s", chunkname);
    int status = luaL_loadbufferx(S, text, len, name, "t");
    if (status != LUA_OK) return lua_failure(L, status, "", err);
    script_args a = { .api = api, .ud = ud, .cell_ref = LUA_NOREF };
    lua_pushcfunction(S, script_body);
    lua_insert(S, -2);
    lua_pushlightuserdata(S, &a);
    status = guarded_pcall(L, 2, 0);
    /* the functions may outlive the script (an inline merge function can
     * keep `crucible`): from now on they find no recipe */
    if (a.cell) *a.cell = NULL;
    if (a.cell_ref != LUA_NOREF) cr_lua_unref(L, a.cell_ref);
    if (status != LUA_OK) return lua_failure(L, status, "", err);
    return CR_OK;
}
