/* lua_api.h — the sandboxed Lua state that runs merge methods and the `cr`
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

/* Run a whole-recipe script (compiler/lua_recipe.c): the table on top of
 * the stack becomes the global `crucible` of the script's own environment
 * over the sandbox, and is popped. Same limits as a method load; a failure
 * fails with CR_ERR_CONFIG and the script's file, line and traceback. */
cr_status cr_lua_run_script(cr_lua *L, const char *chunkname, const char *text, size_t len,
                            cr_error *err);

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
