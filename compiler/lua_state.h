/* lua_state.h — what lua_sandbox.c (the state, its limits, sandbox and
 * protected entries) and lua_api.c (values, `cr`, ctx) share. Internal to
 * compiler/; the public interface is lua_api.h.
 */
#ifndef CR_LUA_STATE_H
#define CR_LUA_STATE_H

#include "lua_inc.h"
#include "lua_api.h"

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

static inline cr_lua *get_lua(lua_State *S) { return *(cr_lua **)lua_getextraspace(S); }

/* pcall with the traceback handler, a fresh budget and the hook on (unless
 * nested in a running call); the error object on failure is a string */
int cr_lua_guarded_pcall(cr_lua *L, int nargs, int nres);
/* Fill err from a failed pcall (message on top of the stack), pop it. */
cr_status cr_lua_failure(cr_lua *L, int status, const char *context, cr_error *err);
/* lua_api.c: register the value metatable; push a new `cr` table */
void cr_lua_open_values(lua_State *S);
void cr_lua_push_api(lua_State *S);

#endif
