/* pickle.c — the restricted unpickler (pickle.h).
 *
 * A small stack machine over tagged values kept in one arena, so cyclic or
 * shared structures (a dict set into itself, a tuple fetched twice from the
 * memo) cost nothing to free and are never walked recursively. The memo is
 * filled strictly in order (BINPUT n only for n <= entries so far, as every
 * pickler writes it), which bounds it by the stream's length and refuses a
 * huge index without allocating for it. Callables are never called: REDUCE
 * is matched against the few allowed globals and computes their result
 * directly (an empty dict, a tensor record).
 */
#include "pickle.h"

#include <stdio.h>
#include <string.h>

#include "utf8.h"

typedef enum pv_kind {
    PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_STR, PV_TUPLE, PV_LIST, PV_DICT,
    PV_GLOBAL, PV_STORAGE, PV_TENSOR
} pv_kind;

typedef enum pg_kind {
    PG_ODICT, PG_REBUILD_V2, PG_REBUILD_V3, PG_REBUILD_PARAM, PG_STORAGE, PG_DTYPE
} pg_kind;

typedef struct pv pv;
struct pv {
    uint8_t kind;
    uint8_t glob;               /* PV_GLOBAL: pg_kind */
    uint8_t dtype;              /* PV_GLOBAL storage/dtype, PV_STORAGE, PV_TENSOR */
    bool odict;                 /* PV_DICT made by OrderedDict() (BUILD allowed) */
    int64_t i;                  /* PV_INT, PV_BOOL; PV_STORAGE: numel */
    const char *s;              /* PV_STR (NUL-terminated copy); PV_STORAGE: key */
    size_t len;
    pv **items;                 /* n items; a dict's are key, value, key, value ... */
    uint32_t n, cap;
    cr_pickle_tensor *t;        /* PV_TENSOR */
};

typedef struct up {
    cr_arena *ar;
    const uint8_t *p;
    size_t len, pos, op_pos;
    const char *what;
    cr_error *err;
    pv **stack;
    size_t n_stack, cap_stack;
    size_t *marks;
    size_t n_marks, cap_marks;
    pv **memo;
    size_t n_memo, cap_memo;
} up;

#define OOM(u) cr_fail((u)->err, CR_ERR_NOMEM, "%s: out of memory reading the pickle", (u)->what)

/* doubling growth inside the arena (the old block is dropped; total waste
 * is bounded by the final size) */
static bool grow(cr_arena *ar, void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    void *n = cr_arena_alloc(ar, nc * elem);
    if (!n) return false;
    if (*cap) memcpy(n, *arr, *cap * elem);
    *arr = n;
    *cap = nc;
    return true;
}

static pv *pv_new(up *u, pv_kind k)
{
    pv *v = cr_arena_alloc(u->ar, sizeof *v);
    if (v) v->kind = (uint8_t)k;
    return v;
}

static cr_status push(up *u, pv *v)
{
    if (!v) return OOM(u);
    size_t cap = u->cap_stack;
    if (!grow(u->ar, (void **)&u->stack, &cap, u->n_stack + 1, sizeof *u->stack)) return OOM(u);
    u->cap_stack = cap;
    u->stack[u->n_stack++] = v;
    return CR_OK;
}

static cr_status bad(up *u, const char *fmt, const char *detail)
{
    return cr_fail(u->err, CR_ERR_FORMAT, "%s: malformed pickle at byte %zu: %s%s", u->what, u->op_pos, fmt,
                   detail ? detail : "");
}

static cr_status pop(up *u, pv **out)
{
    size_t floor = u->n_marks ? u->marks[u->n_marks - 1] : 0;
    if (u->n_stack <= floor) return bad(u, "stack underflow", NULL);
    *out = u->stack[--u->n_stack];
    return CR_OK;
}

static cr_status need(up *u, size_t n)
{
    if (u->len - u->pos < n)
        return cr_fail(u->err, CR_ERR_FORMAT, "%s: the pickle is truncated (opcode at byte %zu needs %zu more bytes)",
                       u->what, u->op_pos, n);
    return CR_OK;
}

static uint64_t le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* the items from the top mark up, as a new container of kind k; pops the mark */
static cr_status take_marked(up *u, pv_kind k, pv **out)
{
    if (!u->n_marks) return bad(u, "no MARK before this opcode", NULL);
    size_t m = u->marks[--u->n_marks];
    pv *v = pv_new(u, k);
    if (!v) return OOM(u);
    size_t n = u->n_stack - m;
    if (n > UINT32_MAX / 2) return cr_fail(u->err, CR_ERR_LIMIT, "%s: a pickle container is too large", u->what);
    v->n = v->cap = (uint32_t)n;
    if (n) {
        v->items = cr_arena_alloc(u->ar, n * sizeof *v->items);
        if (!v->items) return OOM(u);
        memcpy(v->items, u->stack + m, n * sizeof *v->items);
    }
    u->n_stack = m;
    *out = v;
    return CR_OK;
}

static cr_status append_items(up *u, pv *c, pv *const *items, size_t n)
{
    if (!n) return CR_OK;   /* SETITEMS of nothing: c->items may still be NULL (found by fuzz_pickle) */
    size_t cap = c->cap;
    if ((uint64_t)c->n + n > UINT32_MAX / 2) return cr_fail(u->err, CR_ERR_LIMIT, "%s: a pickle container is too large", u->what);
    if (!grow(u->ar, (void **)&c->items, &cap, c->n + n, sizeof *c->items)) return OOM(u);
    c->cap = (uint32_t)cap;
    memcpy(c->items + c->n, items, n * sizeof *items);
    c->n += (uint32_t)n;
    return CR_OK;
}

/* ---- the allowed globals ----------------------------------------------- */

static const struct { const char *name; cr_dtype dtype; } storages[] = {
    {"FloatStorage", CR_DTYPE_F32}, {"DoubleStorage", CR_DTYPE_F64}, {"HalfStorage", CR_DTYPE_F16},
    {"BFloat16Storage", CR_DTYPE_BF16}, {"LongStorage", CR_DTYPE_I64}, {"IntStorage", CR_DTYPE_I32},
    {"ShortStorage", CR_DTYPE_I16}, {"CharStorage", CR_DTYPE_I8}, {"ByteStorage", CR_DTYPE_U8},
    {"BoolStorage", CR_DTYPE_BOOL}, {"UntypedStorage", CR_DTYPE_U8},
};

static const struct { const char *name; cr_dtype dtype; } dtypes[] = {
    {"float32", CR_DTYPE_F32}, {"float", CR_DTYPE_F32}, {"float64", CR_DTYPE_F64}, {"double", CR_DTYPE_F64},
    {"float16", CR_DTYPE_F16}, {"half", CR_DTYPE_F16}, {"bfloat16", CR_DTYPE_BF16}, {"int64", CR_DTYPE_I64},
    {"long", CR_DTYPE_I64}, {"int32", CR_DTYPE_I32}, {"int", CR_DTYPE_I32}, {"int16", CR_DTYPE_I16},
    {"short", CR_DTYPE_I16}, {"int8", CR_DTYPE_I8}, {"uint8", CR_DTYPE_U8}, {"bool", CR_DTYPE_BOOL},
    {"float8_e4m3fn", CR_DTYPE_F8_E4M3}, {"float8_e5m2", CR_DTYPE_F8_E5M2}, {"uint16", CR_DTYPE_U16},
    {"uint32", CR_DTYPE_U32}, {"uint64", CR_DTYPE_U64},
};

static cr_status global(up *u, const char *mod, size_t ml, const char *name, size_t nl)
{
    pv *v = pv_new(u, PV_GLOBAL);
    if (!v) return OOM(u);
#define IS(s, l, lit) ((l) == sizeof(lit) - 1 && !memcmp((s), (lit), (l)))
    bool ok = false;
    if (IS(mod, ml, "collections") && IS(name, nl, "OrderedDict")) { v->glob = PG_ODICT; ok = true; }
    else if (IS(mod, ml, "torch._utils") && IS(name, nl, "_rebuild_tensor_v2")) { v->glob = PG_REBUILD_V2; ok = true; }
    else if (IS(mod, ml, "torch._utils") && IS(name, nl, "_rebuild_tensor_v3")) { v->glob = PG_REBUILD_V3; ok = true; }
    else if (IS(mod, ml, "torch._utils") && IS(name, nl, "_rebuild_parameter")) { v->glob = PG_REBUILD_PARAM; ok = true; }
    else if (IS(mod, ml, "torch") || IS(mod, ml, "torch.storage")) {
        for (size_t i = 0; !ok && i < CR_ARRAY_LEN(storages); i++)
            if (strlen(storages[i].name) == nl && !memcmp(name, storages[i].name, nl)) {
                v->glob = PG_STORAGE;
                v->dtype = (uint8_t)storages[i].dtype;
                ok = true;
            }
        for (size_t i = 0; !ok && IS(mod, ml, "torch") && i < CR_ARRAY_LEN(dtypes); i++)
            if (strlen(dtypes[i].name) == nl && !memcmp(name, dtypes[i].name, nl)) {
                v->glob = PG_DTYPE;
                v->dtype = (uint8_t)dtypes[i].dtype;
                ok = true;
            }
    }
#undef IS
    if (!ok)
        return cr_fail(u->err, CR_ERR_UNSUPPORTED,
                       "%s: the pickle names the global '%.*s.%.*s' (byte %zu), which a PyTorch state dict never "
                       "needs; refusing it (crucible executes nothing from a pickle: only torch tensor rebuilds, "
                       "storages, dtypes and OrderedDict are understood)",
                       u->what, (int)(ml > 200 ? 200 : ml), mod, (int)(nl > 200 ? 200 : nl), name, u->op_pos);
    return push(u, v);
}

static const char *glob_name(const pv *g)
{
    switch (g->glob) {
    case PG_ODICT: return "collections.OrderedDict";
    case PG_REBUILD_V2: return "torch._utils._rebuild_tensor_v2";
    case PG_REBUILD_V3: return "torch._utils._rebuild_tensor_v3";
    case PG_REBUILD_PARAM: return "torch._utils._rebuild_parameter";
    case PG_STORAGE: return "a torch storage class";
    default: return "a torch dtype";
    }
}

static bool int_tuple(const pv *v, uint32_t max, uint64_t *out, uint32_t *n)
{
    if (!v || v->kind != PV_TUPLE || v->n > max) return false;
    for (uint32_t i = 0; i < v->n; i++) {
        if (v->items[i]->kind != PV_INT || v->items[i]->i < 0) return false;
        out[i] = (uint64_t)v->items[i]->i;
    }
    *n = v->n;
    return true;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 * backward_hooks[, metadata]); v3 (what torch.save writes for dtypes
 * without a legacy storage class: float8, uint16/32/64) adds the dtype
 * after backward_hooks, and its storage is untyped (numel counts bytes) */
static cr_status rebuild_tensor(up *u, const pv *args, bool v3, pv **out)
{
    if (!v3 && args->n != 6 && args->n != 7) return bad(u, "_rebuild_tensor_v2 takes 6 or 7 arguments", NULL);
    if (v3 && args->n != 7 && args->n != 8) return bad(u, "_rebuild_tensor_v3 takes 7 or 8 arguments", NULL);
    const pv *stg = args->items[0], *off = args->items[1];
    if (stg->kind != PV_STORAGE) return bad(u, "_rebuild_tensor_v2's first argument is not a storage", NULL);
    if (off->kind != PV_INT || off->i < 0) return bad(u, "_rebuild_tensor_v2's storage offset is not a non-negative integer", NULL);
    cr_pickle_tensor *t = cr_arena_alloc(u->ar, sizeof *t);
    pv *v = pv_new(u, PV_TENSOR);
    if (!t || !v) return OOM(u);
    uint32_t nd = 0, ns = 0;
    if (!int_tuple(args->items[2], CR_MAX_DIMS, t->shape, &nd))
        return cr_fail(u->err, CR_ERR_UNSUPPORTED, "%s: byte %zu: a tensor's size is not a tuple of at most %d "
                       "non-negative integers", u->what, u->op_pos, CR_MAX_DIMS);
    if (!int_tuple(args->items[3], CR_MAX_DIMS, t->stride, &ns) || ns != nd)
        return bad(u, "a tensor's stride is not a tuple of non-negative integers as long as its size", NULL);
    if (args->items[4]->kind != PV_BOOL) return bad(u, "requires_grad is not a bool", NULL);
    if (args->items[5]->kind != PV_DICT) return bad(u, "backward_hooks is not a dict", NULL);
    t->ndim = nd;
    t->storage = stg->s;
    t->dtype = (cr_dtype)stg->dtype;
    t->storage_numel = (uint64_t)stg->i;
    if (v3) {
        const pv *dt = args->items[6];
        if (dt->kind != PV_GLOBAL || dt->glob != PG_DTYPE) return bad(u, "_rebuild_tensor_v3's dtype is not a torch dtype", NULL);
        if (stg->dtype != CR_DTYPE_U8) return bad(u, "_rebuild_tensor_v3 of a typed storage", NULL);
        t->dtype = (cr_dtype)dt->dtype;
        unsigned es = cr_dtype_size(t->dtype);
        if (t->storage_numel % es) return bad(u, "an untyped storage's size is not a whole number of elements", NULL);
        t->storage_numel /= es;
    }
    t->offset = (uint64_t)off->i;
    uint64_t numel = 1;
    for (uint32_t i = 0; i < nd; i++) {
        if (t->shape[i] && numel > UINT64_MAX / 2 / t->shape[i]) return bad(u, "a tensor's size overflows", NULL);
        numel *= t->shape[i];
    }
    t->numel = numel;
    v->t = t;
    v->dtype = (uint8_t)t->dtype;
    *out = v;
    return CR_OK;
}

static cr_status reduce(up *u)
{
    pv *args, *fn;
    cr_status st;
    if ((st = pop(u, &args)) || (st = pop(u, &fn))) return st;
    if (fn->kind != PV_GLOBAL)
        return cr_fail(u->err, CR_ERR_UNSUPPORTED, "%s: REDUCE at byte %zu calls something that is not an allowed "
                       "global; refusing it (crucible executes nothing from a pickle)", u->what, u->op_pos);
    if (args->kind != PV_TUPLE) return bad(u, "REDUCE's arguments are not a tuple", NULL);
    pv *r = NULL;
    switch (fn->glob) {
    case PG_ODICT:
        if (args->n != 0) return bad(u, "OrderedDict() with arguments", NULL);
        if (!(r = pv_new(u, PV_DICT))) return OOM(u);
        r->odict = true;
        break;
    case PG_REBUILD_V2: case PG_REBUILD_V3:
        if ((st = rebuild_tensor(u, args, fn->glob == PG_REBUILD_V3, &r))) return st;
        break;
    case PG_REBUILD_PARAM:   /* (data, requires_grad, backward_hooks): the data is the tensor */
        if (args->n != 3 || args->items[0]->kind != PV_TENSOR) return bad(u, "_rebuild_parameter's data is not a tensor", NULL);
        r = args->items[0];
        break;
    default:
        return cr_fail(u->err, CR_ERR_UNSUPPORTED, "%s: REDUCE at byte %zu calls %s, which a state dict never calls; "
                       "refusing it", u->what, u->op_pos, glob_name(fn));
    }
    return push(u, r);
}

/* BINPERSID: ('storage', StorageClass, key, location, numel) */
static cr_status persid(up *u)
{
    pv *pid;
    cr_status st = pop(u, &pid);
    if (st) return st;
    if (pid->kind != PV_TUPLE || pid->n != 5 || pid->items[0]->kind != PV_STR || strcmp(pid->items[0]->s, "storage") ||
        pid->items[1]->kind != PV_GLOBAL || pid->items[1]->glob != PG_STORAGE || pid->items[2]->kind != PV_STR ||
        pid->items[3]->kind != PV_STR || pid->items[4]->kind != PV_INT || pid->items[4]->i < 0)
        return bad(u, "a persistent id is not ('storage', StorageClass, key, location, numel)", NULL);
    const char *key = pid->items[2]->s;
    if (!*key || strchr(key, '/') || strlen(key) > 64 || strstr(key, ".."))
        return bad(u, "a storage key is not a plain name: ", key);
    pv *v = pv_new(u, PV_STORAGE);
    if (!v) return OOM(u);
    v->s = key;
    v->dtype = pid->items[1]->dtype;
    v->i = pid->items[4]->i;
    return push(u, v);
}

static cr_status memo_put(up *u, uint64_t idx)
{
    if (!u->n_stack) return bad(u, "memo store from an empty stack", NULL);
    if (idx > u->n_memo) {
        char buf[32];
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)idx);
        return cr_fail(u->err, CR_ERR_FORMAT, "%s: malformed pickle at byte %zu: memo index %s is out of order "
                       "(%zu entries so far)", u->what, u->op_pos, buf, u->n_memo);
    }
    if (idx == u->n_memo) {
        size_t cap = u->cap_memo;
        if (!grow(u->ar, (void **)&u->memo, &cap, u->n_memo + 1, sizeof *u->memo)) return OOM(u);
        u->cap_memo = cap;
        u->n_memo++;
    }
    u->memo[idx] = u->stack[u->n_stack - 1];
    return CR_OK;
}

static cr_status memo_get(up *u, uint64_t idx)
{
    if (idx >= u->n_memo) {
        char buf[32];
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)idx);
        return bad(u, "memo index not stored: ", buf);
    }
    return push(u, u->memo[idx]);
}

static cr_status str_value(up *u, size_t n)
{
    cr_status st = need(u, n);
    if (st) return st;
    const char *s = (const char *)u->p + u->pos;
    size_t badpos;
    if (!cr_utf8_check(s, n, &badpos)) return bad(u, "a string is not valid UTF-8", NULL);
    pv *v = pv_new(u, PV_STR);
    if (!v || !(v->s = cr_arena_strndup(u->ar, s, n))) return OOM(u);
    v->len = n;
    u->pos += n;
    return push(u, v);
}

static cr_status int_value(up *u, int64_t i)
{
    pv *v = pv_new(u, PV_INT);
    if (v) v->i = i;
    return push(u, v);
}

static cr_status setitems(up *u, pv *d, pv *const *kv, size_t n)
{
    if (d->kind != PV_DICT) return bad(u, "SETITEM on something that is not a dict", NULL);
    return append_items(u, d, kv, n);
}

static cr_status step(up *u, uint8_t op, bool *stop)
{
    cr_status st = CR_OK;
    pv *a, *b, *c;
    switch (op) {
    case 0x80:   /* PROTO */
        if ((st = need(u, 1))) return st;
        if (u->p[u->pos] < 2 || u->p[u->pos] > 5) return bad(u, "unsupported pickle protocol", NULL);
        u->pos++;
        return CR_OK;
    case 0x95:   /* FRAME: an 8-byte length hint */
        if ((st = need(u, 8))) return st;
        u->pos += 8;
        return CR_OK;
    case '.': *stop = true; return CR_OK;
    case '(': {
        size_t cap = u->cap_marks;
        if (!grow(u->ar, (void **)&u->marks, &cap, u->n_marks + 1, sizeof *u->marks)) return OOM(u);
        u->cap_marks = cap;
        u->marks[u->n_marks++] = u->n_stack;
        return CR_OK;
    }
    case '}': return push(u, pv_new(u, PV_DICT));
    case ']': return push(u, pv_new(u, PV_LIST));
    case ')': return push(u, pv_new(u, PV_TUPLE));
    case 'N': return push(u, pv_new(u, PV_NONE));
    case 0x88: case 0x89:   /* NEWTRUE, NEWFALSE */
        if (!(a = pv_new(u, PV_BOOL))) return OOM(u);
        a->i = op == 0x88;
        return push(u, a);
    case 't': if ((st = take_marked(u, PV_TUPLE, &a))) return st; return push(u, a);
    case 'l': if ((st = take_marked(u, PV_LIST, &a))) return st; return push(u, a);
    case 'd':
        if ((st = take_marked(u, PV_DICT, &a))) return st;
        if (a->n % 2) return bad(u, "DICT with an odd number of items", NULL);
        return push(u, a);
    case 0x85: case 0x86: case 0x87: {   /* TUPLE1..3 */
        uint32_t n = (uint32_t)(op - 0x84);
        pv *it[3];
        for (uint32_t i = n; i-- > 0;)
            if ((st = pop(u, &it[i]))) return st;
        if (!(a = pv_new(u, PV_TUPLE)) || !(a->items = cr_arena_alloc(u->ar, n * sizeof *a->items))) return OOM(u);
        memcpy(a->items, it, n * sizeof *it);
        a->n = a->cap = n;
        return push(u, a);
    }
    case 'K': if ((st = need(u, 1))) return st; u->pos += 1; return int_value(u, (int64_t)le(u->p + u->pos - 1, 1));
    case 'M': if ((st = need(u, 2))) return st; u->pos += 2; return int_value(u, (int64_t)le(u->p + u->pos - 2, 2));
    case 'J': if ((st = need(u, 4))) return st; u->pos += 4; return int_value(u, (int32_t)(uint32_t)le(u->p + u->pos - 4, 4));
    case 0x8a: {   /* LONG1: n little-endian two's-complement bytes */
        if ((st = need(u, 1))) return st;
        unsigned n = u->p[u->pos++];
        if (n > 8) return bad(u, "an integer wider than 64 bits", NULL);
        if ((st = need(u, n))) return st;
        uint64_t v = le(u->p + u->pos, n);
        if (n && n < 8 && (u->p[u->pos + n - 1] & 0x80)) v |= ~0ull << (8 * n);
        u->pos += n;
        return int_value(u, (int64_t)v);
    }
    case 'G': {   /* BINFLOAT, big-endian */
        if ((st = need(u, 8))) return st;
        if (!(a = pv_new(u, PV_FLOAT))) return OOM(u);
        u->pos += 8;
        return push(u, a);
    }
    case 'X': if ((st = need(u, 4))) return st; u->pos += 4; return str_value(u, (size_t)le(u->p + u->pos - 4, 4));
    case 0x8c: if ((st = need(u, 1))) return st; u->pos += 1; return str_value(u, u->p[u->pos - 1]);
    case 0x8d: {
        if ((st = need(u, 8))) return st;
        uint64_t n = le(u->p + u->pos, 8);
        u->pos += 8;
        if (n > u->len - u->pos) return need(u, (size_t)-1);
        return str_value(u, (size_t)n);
    }
    case 'c': {   /* GLOBAL "module\nname\n" */
        const char *s = (const char *)u->p + u->pos;
        size_t rest = u->len - u->pos;
        const char *nl1 = memchr(s, '\n', rest);
        const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', rest - (size_t)(nl1 + 1 - s)) : NULL;
        if (!nl2) return cr_fail(u->err, CR_ERR_FORMAT, "%s: the pickle is truncated (GLOBAL at byte %zu)", u->what, u->op_pos);
        u->pos += (size_t)(nl2 + 1 - s);
        return global(u, s, (size_t)(nl1 - s), nl1 + 1, (size_t)(nl2 - nl1 - 1));
    }
    case 0x93:   /* STACK_GLOBAL */
        if ((st = pop(u, &b)) || (st = pop(u, &a))) return st;
        if (a->kind != PV_STR || b->kind != PV_STR) return bad(u, "STACK_GLOBAL of non-strings", NULL);
        return global(u, a->s, a->len, b->s, b->len);
    case 'q': if ((st = need(u, 1))) return st; u->pos += 1; return memo_put(u, u->p[u->pos - 1]);
    case 'r': if ((st = need(u, 4))) return st; u->pos += 4; return memo_put(u, le(u->p + u->pos - 4, 4));
    case 0x94: return memo_put(u, u->n_memo);
    case 'h': if ((st = need(u, 1))) return st; u->pos += 1; return memo_get(u, u->p[u->pos - 1]);
    case 'j': if ((st = need(u, 4))) return st; u->pos += 4; return memo_get(u, le(u->p + u->pos - 4, 4));
    case '0': return pop(u, &a);
    case '1':
        if (!u->n_marks) return bad(u, "POP_MARK without a MARK", NULL);
        u->n_stack = u->marks[--u->n_marks];
        return CR_OK;
    case '2':
        if ((st = pop(u, &a))) return st;
        if ((st = push(u, a))) return st;
        return push(u, a);
    case 's':
        if ((st = pop(u, &c)) || (st = pop(u, &b)) || (st = pop(u, &a))) return st;
        {
            pv *kv[2] = {b, c};
            if ((st = setitems(u, a, kv, 2))) return st;
        }
        return push(u, a);
    case 'u': case 'a': case 'e': {   /* SETITEMS, APPEND(S) */
        if (op != 'a') {
            if ((st = take_marked(u, PV_TUPLE, &b))) return st;
        } else {
            if ((st = pop(u, &c))) return st;
            if (!(b = pv_new(u, PV_TUPLE)) || !(b->items = cr_arena_alloc(u->ar, sizeof *b->items))) return OOM(u);
            b->items[0] = c;
            b->n = 1;
        }
        if ((st = pop(u, &a))) return st;
        if (op == 'u') {
            if (b->n % 2) return bad(u, "SETITEMS with an odd number of items", NULL);
            if ((st = setitems(u, a, b->items, b->n))) return st;
        } else {
            if (a->kind != PV_LIST) return bad(u, "APPEND to something that is not a list", NULL);
            if ((st = append_items(u, a, b->items, b->n))) return st;
        }
        return push(u, a);
    }
    case 'b':   /* BUILD: only OrderedDict's state (its _metadata), which is dropped */
        if ((st = pop(u, &b)) || (st = pop(u, &a))) return st;
        if (a->kind != PV_DICT || !a->odict)
            return cr_fail(u->err, CR_ERR_UNSUPPORTED, "%s: BUILD at byte %zu sets the state of something that is "
                           "not an OrderedDict; refusing it", u->what, u->op_pos);
        return push(u, a);
    case 'R': return reduce(u);
    case 'Q': return persid(u);
    default:
        if (op >= 0x20 && op < 0x7f)
            return cr_fail(u->err, CR_ERR_UNSUPPORTED, "%s: the pickle uses opcode '%c' (0x%02x) at byte %zu, which a "
                           "PyTorch state dict never needs; refusing it", u->what, op, op, u->op_pos);
        return cr_fail(u->err, CR_ERR_UNSUPPORTED, "%s: the pickle uses opcode 0x%02x at byte %zu, which a PyTorch "
                       "state dict never needs; refusing it", u->what, op, u->op_pos);
    }
}

/* dict -> table of tensors, each checked to lie contiguously in its storage */
static cr_status extract(up *u, const pv *d, cr_pickle_tensor **out, uint32_t *n_out)
{
    if (d->kind != PV_DICT)
        return cr_fail(u->err, CR_ERR_FORMAT, "%s: the pickle holds no dict of tensors (not a state dict)", u->what);
    uint32_t n = d->n / 2;
    if (n > CR_LIMIT_MODEL_TENSORS)
        return cr_fail(u->err, CR_ERR_LIMIT, "%s: %u tensors (limit %u)", u->what, n, CR_LIMIT_MODEL_TENSORS);
    cr_pickle_tensor *ts = cr_arena_alloc(u->ar, (n ? n : 1) * sizeof *ts);
    if (!ts) return OOM(u);
    for (uint32_t i = 0; i < n; i++) {
        const pv *k = d->items[2 * i], *v = d->items[2 * i + 1];
        if (k->kind != PV_STR || !k->len || k->len > CR_LIMIT_NAME || memchr(k->s, 0, k->len))
            return cr_fail(u->err, CR_ERR_FORMAT, "%s: a key of the state dict is not a tensor name", u->what);
        if (v->kind != PV_TENSOR)
            return cr_fail(u->err, CR_ERR_FORMAT, "%s: '%s' is not a tensor (a training checkpoint rather than a "
                           "state dict? save model.state_dict())", u->what, k->s);
        cr_pickle_tensor *t = &ts[i];
        *t = *v->t;
        t->name = k->s;
        unsigned es = cr_dtype_size(t->dtype);
        /* contiguous: every dimension longer than 1 has the row-major stride */
        uint64_t want = 1;
        bool contiguous = true;
        for (uint32_t j = t->ndim; j-- > 0;) {
            if (t->shape[j] != 1 && t->stride[j] != want) contiguous = false;
            want *= t->shape[j];
        }
        if (t->numel && !contiguous) {
            char sh[160] = "", sd[160] = "";
            size_t a = 0, b = 0;
            for (uint32_t j = 0; j < t->ndim; j++) {
                a += (size_t)snprintf(sh + a, sizeof sh - a, "%s%llu", j ? "," : "", (unsigned long long)t->shape[j]);
                b += (size_t)snprintf(sd + b, sizeof sd - b, "%s%llu", j ? "," : "", (unsigned long long)t->stride[j]);
                if (a >= sizeof sh || b >= sizeof sd) break;
            }
            return cr_fail(u->err, CR_ERR_UNSUPPORTED, "%s: tensor '%s' is a non-contiguous view (shape [%s], stride [%s]); "
                           "crucible reads tensors in place and does not materialise strided views (save it with "
                           ".contiguous(), or convert the model to safetensors)", u->what, k->s, sh, sd);
        }
        if (t->offset > t->storage_numel || t->numel > t->storage_numel - t->offset)
            return cr_fail(u->err, CR_ERR_FORMAT, "%s: tensor '%s' (elements %llu..%llu) lies outside its storage '%s' "
                           "of %llu elements", u->what, k->s, (unsigned long long)t->offset,
                           (unsigned long long)(t->offset + t->numel), t->storage, (unsigned long long)t->storage_numel);
        if (t->storage_numel > UINT64_MAX / 16 / (es ? es : 1))
            return cr_fail(u->err, CR_ERR_FORMAT, "%s: storage '%s' is too large", u->what, t->storage);
    }
    *out = ts;
    *n_out = n;
    return CR_OK;
}

cr_status cr_pickle_state_dict(cr_arena *ar, const uint8_t *data, size_t len, const char *what,
                               cr_pickle_tensor **out, uint32_t *n_out, cr_error *err)
{
    *out = NULL;
    *n_out = 0;
    up u = { .ar = ar, .p = data, .len = len, .what = what, .err = err };
    bool stop = false;
    while (!stop) {
        if (u.pos >= u.len)
            return cr_fail(err, CR_ERR_FORMAT, "%s: the pickle is truncated (no STOP opcode in %zu bytes)", what, len);
        u.op_pos = u.pos;
        uint8_t op = u.p[u.pos++];
        cr_status st = step(&u, op, &stop);
        if (st) return st;
    }
    if (u.n_stack != 1 || u.n_marks)
        return cr_fail(err, CR_ERR_FORMAT, "%s: malformed pickle: %zu values left at STOP", what, u.n_stack);
    return extract(&u, u.stack[0], out, n_out);
}
