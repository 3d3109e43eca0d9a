/* lua_recipe.h — a whole recipe written as a sandboxed Lua script -> the
 * same cr_plan the YAML front end produces (spec/lua-api.md, "Whole
 * recipes in Lua").
 *
 * The script runs in the method registry's Lua state, under the method
 * sandbox and limits, with one extra global `crucible`: it opens models
 * (headers only; references resolved like YAML ones), looks at their
 * tensors, and declares every output tensor with its sources and either a
 * registered method (built-in, lua:PATH, --methods DIR) or an inline Lua
 * function. The result is one stage whose tensors each name their method,
 * so graph building, passes, bytecode and `explain` are the YAML path's.
 */
#ifndef CR_LUA_RECIPE_H
#define CR_LUA_RECIPE_H

#include "frontend.h"

/* Run the script at `recipe_path` into `out`. Errors (the script's own,
 * with file, line and traceback, or a bad declaration naming the line of
 * the crucible.* call) fail with CR_ERR_CONFIG and one diagnostic in
 * `diags`; CR_ERR_IO when the file cannot be read. On every return `out`
 * is initialised and released with cr_plan_free. */
cr_status cr_frontend_lua(const cr_allocator *alloc, const char *recipe_path,
                          const cr_frontend_options *opt, cr_plan *out, cr_diags *diags,
                          cr_error *err);

/* Is `path` a Lua recipe (it ends in `.lua`)? */
bool cr_recipe_is_lua(const char *path);

/* A recipe file of either kind: `.lua` goes to cr_frontend_lua, anything
 * else to cr_frontend_yaml. */
cr_status cr_frontend_recipe(const cr_allocator *alloc, const char *recipe_path,
                             const cr_frontend_options *opt, cr_plan *out, cr_diags *diags,
                             cr_error *err);

#endif
