/* lua_api.h — the sandboxed Lua state that runs merge methods (lua_sandbox.c) and the `cr`
 * API that turns their arithmetic into graph nodes (spec/lua-api.md).
 *
 * One cr_lua per compilation, used on the compiler thread only. Method files
 * are loaded once (each in its own environment over a read-only sandbox);
 * each merge call gets a fresh instruction budget and the state a fixed
 * memory ceiling, so a runaway or greedy script fails with a diagnostic
 * instead of hanging or exhausting the machine.
 */
#ifndef CR_LUA_API_H
#define CR_LUA_API_H

#include "base.h"
#include "graph.h"
#include "method.h"
#include "mkversion.h"
#include "plan.h"

typedef struct cr_lua cr_lua;
typedef struct lua_State lua_State;

typedef struct cr_lua_limits {
    size_t max_bytes;        /* Lua heap ceiling (0: 256 MiB) */
    long max_instructions;   /* per method load or merge call (0: 200 million) */
    double max_seconds;      /* CPU seconds per load or call (0: CR_LIMIT_LUA_SECONDS) */
} cr_lua_limits;

/* Create a state with the sandbox, the `cr` table and stdlib/common.lua's
 * helpers loaded. limits may be NULL. */
cr_status cr_lua_open(const cr_allocator *alloc, const cr_lua_limits *limits,
                      cr_lua **out, cr_error *err);
void cr_lua_close(cr_lua *L);
lua_State *cr_lua_state(cr_lua *L);

/* Run a method file's text (chunkname like "stdlib/linear.lua") in its own
 * environment and keep the table it returns; *ref identifies it (a registry
 * reference). Errors carry file:line. */
cr_status cr_lua_load_chunk(cr_lua *L, const char *chunkname, const char *text, size_t len,
                            int *ref, cr_error *err);

/* One input of a merge call (the graph node already exists). */
typedef struct cr_lua_input {
    uint32_t node;
    const char *model;          /* reference string */
    const char *tensor;         /* input tensor name */
    bool is_base;
    cr_dtype dtype;
    uint32_t ndim;
    const uint64_t *shape;
    const cr_param_set *params; /* per-model */
} cr_lua_input;

typedef struct cr_lua_call {
    const cr_method_info *method;   /* for parameter kinds and defaults */
    const char *name;               /* output tensor name */
    int layer;
    uint32_t ndim;
    const uint64_t *shape;
    bool is_embed, optional;
    uint32_t domain;
    const cr_lua_input *inputs;
    uint32_t n_inputs;
    const cr_param_set *params;     /* global */
    cr_dtype dtype;                 /* recipe dtype or CR_DTYPE_NONE */
    bool precise;
    uint64_t seed;
    cr_mk_version mk_version;
} cr_lua_call;

/* Call merge(ctx) of the method table `ref`, adding nodes to g. On success
 * *result is the returned value's node. A Lua error, a non-value result or
 * an exceeded limit fails with CR_ERR_CONFIG and a message naming the
 * script's file and line and the output tensor. */
cr_status cr_lua_call_merge(cr_lua *L, int ref, cr_graph *g, const cr_lua_call *call,
                            uint32_t *result, cr_error *err);

/* Evaluate a snippet with the sandbox (tests; also `explain` of Lua
 * expressions). The graph may be NULL when the code builds no values. */
cr_status cr_lua_run_string(cr_lua *L, cr_graph *g, const char *chunkname, const char *code,
                            cr_error *err);

/* Run a whole-recipe script (compiler/lua_recipe.c): the functions of api
 * form the global `crucible` of the script's own environment over the
 * sandbox; each has one upvalue, a userdata holding a void* that is ud
 * while the script runs and NULL after it. Same limits as a method load; a
 * failure fails with CR_ERR_CONFIG and the script's file, line and
 * traceback. */
typedef struct luaL_Reg luaL_Reg;
cr_status cr_lua_run_script(cr_lua *L, const char *chunkname, const char *text, size_t len,
                            const luaL_Reg *api, void *ud, cr_error *err);

/* Run fn(S) with ud as a light userdata at index 1, protected and bounded
 * like a merge call (inside lua_pcall with the traceback handler, the
 * instruction budget and the CPU backstop on; sharing the budget when
 * nested in a running call). Every entry into Lua from C outside lua_api.c
 * goes through here: a metamethod that errors, loops or allocates past the
 * limit fails with CR_ERR_CONFIG (context, if not "", is appended as
 * "while CONTEXT"), the machine's own out-of-memory with CR_ERR_NOMEM.
 * fn reports its own findings through ud and returns 0. */
typedef int (*cr_lua_cfn)(lua_State *S);
cr_status cr_lua_protect(cr_lua *L, cr_lua_cfn fn, void *ud, const char *context, cr_error *err);
/* luaL_unref, protected (the first one allocates). */
void cr_lua_unref(cr_lua *L, int ref);

/* The node a Lua value at stack index idx wraps, or CR_NO_NODE. */
uint32_t cr_lua_value_node(lua_State *S, int idx);



/* The Lua state and method table of a method found in a registry (for the
 * graph builder). CR_ERR_ARG if m does not belong to r. */
cr_status cr_methods_lua(cr_method_registry *r, const cr_method_info *m, cr_lua **L, int *ref,
                         cr_error *err);
/* The registry's Lua state (a Lua recipe runs in it, so that its inline
 * merge functions live beside the method tables). */
cr_lua *cr_methods_state(cr_method_registry *r);
/* Register the function on top of r's Lua stack (popped) as an inline
 * method named `name` declared in `source` (no parameters, base optional,
 * any number of inputs). NULL with err on out of memory. */
const cr_method_info *cr_methods_add_inline(cr_method_registry *r, const char *name,
                                            const char *source, cr_error *err);
#endif
