/* lua_sandbox.c — the sandboxed Lua state that merge methods and Lua
 * recipes run in.
 *
 * Owns: the state's allocator (through the cr_allocator hook, with a
 * ceiling), the instruction budget hook and CPU backstop, the charges for
 * library functions that loop in C, the sandbox environment (and its
 * xpcall, setmetatable and load), the traceback handler, and the protected
 * entries every call from C into Lua goes through (spec/reliability.md
 * §1.1, §8.3): opening the state, loading chunks, running recipe scripts.
 * The `cr` API and values are lua_api.c's.
 */
#include "lua_inc.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "limits.h"
#include "lua_api.h"
#include "lua_state.h"
#include "stdlib_embed.h"

#define HOOK_EVERY 1000

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
    cr_lua_push_api(S);
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
cr_status cr_lua_failure(cr_lua *L, int status, const char *context, cr_error *err)
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
int cr_lua_guarded_pcall(cr_lua *L, int nargs, int nres)
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
    int status = cr_lua_guarded_pcall(L, 1, 0);
    return status == LUA_OK ? CR_OK : cr_lua_failure(L, status, context, err);
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
    cr_lua_open_values(S);
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
    int status = cr_lua_guarded_pcall(L, 0, 0);
    cr_status st = status == LUA_OK ? CR_OK : cr_lua_failure(L, status, "creating the Lua state", err);
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
    if (status != LUA_OK) return cr_lua_failure(L, status, "", err);
    lua_pushcfunction(S, load_body);
    lua_insert(S, -2);
    status = cr_lua_guarded_pcall(L, 1, 1);
    if (status != LUA_OK) return cr_lua_failure(L, status, "", err);
    *ref = (int)lua_tointeger(S, -1);
    lua_pop(S, 1);
    if (*ref == LUA_NOREF) return cr_fail(err, CR_ERR_CONFIG, "%s: the file must return a table", chunkname);
    return CR_OK;
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
    if (status != LUA_OK) return cr_lua_failure(L, status, "", err);
    lua_rawgeti(S, LUA_REGISTRYINDEX, L->sandbox_ref);
    lua_setupvalue(S, -2, 1);
    lua_pushcfunction(S, run_string_body);
    lua_insert(S, -2);
    L->g = g;
    status = cr_lua_guarded_pcall(L, 1, 0);
    L->g = NULL;
    if (status != LUA_OK) return cr_lua_failure(L, status, "", err);
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
    if (status != LUA_OK) return cr_lua_failure(L, status, "", err);
    script_args a = { .api = api, .ud = ud, .cell_ref = LUA_NOREF };
    lua_pushcfunction(S, script_body);
    lua_insert(S, -2);
    lua_pushlightuserdata(S, &a);
    status = cr_lua_guarded_pcall(L, 2, 0);
    /* the functions may outlive the script (an inline merge function can
     * keep `crucible`): from now on they find no recipe */
    if (a.cell) *a.cell = NULL;
    if (a.cell_ref != LUA_NOREF) cr_lua_unref(L, a.cell_ref);
    if (status != LUA_OK) return cr_lua_failure(L, status, "", err);
    return CR_OK;
}
