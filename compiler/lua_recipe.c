/* lua_recipe.c — whole recipes as Lua scripts (compiler/lua_recipe.h).
 *
 * Owns the `crucible` table a recipe script sees (model, merge, settings)
 * and turning what the script declared into a one-stage cr_plan whose
 * tensors each carry their method. The script never touches tensor data:
 * models are opened for their headers, and inline merge functions are
 * registered as methods and only called later by the graph builder, in the
 * same Lua state, exactly like a method file's merge().
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "lua_inc.h"

#include "arch.h"
#include "infile.h"
#include "limits.h"
#include "lua_api.h"
#include "lua_recipe.h"
#include "resolve.h"

typedef struct recipe {
    const cr_allocator *alloc;
    cr_arena *ar;                   /* the plan's */
    const cr_frontend_options *opt;
    cr_method_registry *reg;
    cr_resolve_env env;
    const char *path;
    cr_vec models;                  /* cr_plan_model */
    cr_vec tensors;                 /* cr_plan_tensor */
    cr_dtype dtype, out_dtype;
    int donor;
    long long num_layers;
    int inline_ref;                 /* Lua table: function -> lightuserdata method info */
} recipe;

/* The upvalue is a userdata holding the recipe pointer, cleared when the
 * script ends: an inline merge function that calls crucible.* later (while
 * the graph is built) gets an error instead of a dangling pointer. */
static recipe *self(lua_State *S)
{
    void **p = lua_touserdata(S, lua_upvalueindex(1));
    if (!p || !*p) luaL_error(S, "crucible.* can only be called while the recipe script runs");
    return *p;
}

static const char *adup(lua_State *S, recipe *r, const char *s)
{
    char *d = cr_arena_strdup(r->ar, s);
    if (!d) luaL_error(S, "out of memory");
    return d;
}

static int first_layer_index(const char *name)
{
    /* "<prefix>.<digits>.<rest>": the first all-digit component */
    for (const char *p = name; *p; p++) {
        if (*p != '.' || !isdigit((unsigned char)p[1])) continue;
        const char *q = p + 1;
        long v = 0;
        while (isdigit((unsigned char)*q) && v < 1000000) v = v * 10 + (*q++ - '0');
        if (*q == '.') return (int)v;
    }
    return -1;
}

/* ---- crucible.model ------------------------------------------------------ */

static void set_str_array(lua_State *S, const char *const *a, uint32_t n, const char *field)
{
    lua_createtable(S, (int)n, 0);
    for (uint32_t i = 0; i < n; i++) {
        lua_pushstring(S, a[i]);
        lua_rawseti(S, -2, (lua_Integer)i + 1);
    }
    lua_setfield(S, -2, field);
}

static int l_model(lua_State *S)
{
    recipe *r = self(S);
    const char *ref = luaL_checkstring(S, 1);
    for (size_t i = 0; i < r->models.len; i++)
        if (!strcmp(CR_VEC_AT(&r->models, cr_plan_model, i).ref, ref))
            luaL_error(S, "model '%s' is opened twice (keep the table crucible.model returned)", ref);
    const char *tried = NULL;
    const char *snapshot = NULL;
    const char *dir = cr_resolve_model_at(&r->env, r->ar, ref, NULL, &snapshot, &tried);
    if (!dir) luaL_error(S, "model '%s' not found (looked in %s)", ref, tried ? tried : "?");
    cr_plan_model pm = { .ref = adup(S, r, ref), .path = dir, .revision = snapshot, .stage = -1 };
    cr_error err = {0};
    if (cr_model_open(r->alloc, dir, r->opt->header_only ? CR_ST_HEADER_ONLY : 0, &pm.model, &err))
        luaL_error(S, "model '%s': %s", ref, err.msg);
    pm.opened = true;
    if (!cr_vec_push(&r->models, &pm)) { cr_model_close(&pm.model); luaL_error(S, "out of memory"); }
    const cr_model *m = &CR_VEC_AT(&r->models, cr_plan_model, r->models.len - 1).model;

    const char **names = cr_arena_alloc(r->ar, sizeof *names * (m->n_tensors + 1));
    if (!names) luaL_error(S, "out of memory");
    for (uint32_t i = 0; i < m->n_tensors; i++) names[i] = m->tensors[i].info->name;
    cr_arch arch;
    if (cr_arch_analyse(r->ar, names, m->n_tensors, &arch)) luaL_error(S, "out of memory");

    lua_newtable(S);
    lua_pushinteger(S, (lua_Integer)r->models.len - 1);
    lua_setfield(S, -2, "_index");
    lua_pushstring(S, ref);
    lua_setfield(S, -2, "ref");
    lua_pushstring(S, dir);
    lua_setfield(S, -2, "path");
    lua_pushinteger(S, arch.n_layers);
    lua_setfield(S, -2, "n_layers");
    if (arch.layer_prefix) { lua_pushstring(S, arch.layer_prefix); lua_setfield(S, -2, "layer_prefix"); }
    set_str_array(S, arch.pre, arch.n_pre, "pre");
    set_str_array(S, arch.post, arch.n_post, "post");
    lua_createtable(S, (int)arch.n_layers, 0);
    for (long long i = 0; i < arch.n_layers; i++) {
        lua_newtable(S);
        set_str_array(S, arch.layers[i].rests, arch.layers[i].n_rests, "rests");
        lua_getfield(S, -1, "rests");
        lua_remove(S, -2);
        lua_rawseti(S, -2, i + 1);
    }
    lua_setfield(S, -2, "layers");
    lua_createtable(S, (int)m->n_tensors, 0);   /* tensors */
    lua_newtable(S);                            /* by_name */
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        const cr_st_tensor *t = m->tensors[i].info;
        lua_newtable(S);
        lua_pushstring(S, t->name);
        lua_setfield(S, -2, "name");
        const char *dn = cr_dtype_torch_name(t->dtype) ? cr_dtype_torch_name(t->dtype) : cr_dtype_name(t->dtype);
        lua_pushstring(S, dn ? dn : "?");
        lua_setfield(S, -2, "dtype");
        lua_createtable(S, (int)t->ndim, 0);
        for (uint32_t d = 0; d < t->ndim; d++) {
            lua_pushinteger(S, (lua_Integer)t->shape[d]);
            lua_rawseti(S, -2, (lua_Integer)d + 1);
        }
        lua_setfield(S, -2, "shape");
        lua_pushinteger(S, (lua_Integer)t->numel);
        lua_setfield(S, -2, "numel");
        int layer = arch.layer_prefix && !strncmp(t->name, arch.layer_prefix, strlen(arch.layer_prefix))
                  ? first_layer_index(t->name + strlen(arch.layer_prefix) - 1) : -1;
        if (layer >= 0) { lua_pushinteger(S, layer); lua_setfield(S, -2, "layer"); }
        lua_pushvalue(S, -1);
        lua_setfield(S, -3, t->name);
        lua_rawseti(S, -3, (lua_Integer)i + 1);
    }
    lua_setfield(S, -3, "by_name");
    lua_setfield(S, -2, "tensors");
    if (r->donor < 0) r->donor = (int)r->models.len - 1;
    return 1;
}

/* ---- crucible.settings --------------------------------------------------- */

static cr_dtype opt_dtype(lua_State *S, int t, const char *field)
{
    cr_dtype dt = CR_DTYPE_NONE;
    if (lua_getfield(S, t, field) != LUA_TNIL) {
        const char *s = lua_tostring(S, -1);
        if (!s || !(cr_dtype_parse_torch(s, &dt) || cr_dtype_parse(s, &dt)) || !cr_dtype_is_float(dt))
            luaL_error(S, "%s = '%s': want bfloat16, float16, float32 or float64", field, s ? s : "?");
    }
    lua_pop(S, 1);
    return dt;
}

static int model_index(lua_State *S, recipe *r, int idx, const char *what)
{
    if (!lua_istable(S, idx) || lua_getfield(S, idx, "_index") != LUA_TNUMBER)
        luaL_error(S, "%s: want a model from crucible.model()", what);
    lua_Integer i = lua_tointeger(S, -1);
    lua_pop(S, 1);
    if (i < 0 || (size_t)i >= r->models.len) luaL_error(S, "%s: not a model of this recipe", what);
    return (int)i;
}

static int l_settings(lua_State *S)
{
    recipe *r = self(S);
    luaL_checktype(S, 1, LUA_TTABLE);
    lua_pushnil(S);
    while (lua_next(S, 1)) {
        const char *k = lua_type(S, -2) == LUA_TSTRING ? lua_tostring(S, -2) : "?";
        if (strcmp(k, "dtype") && strcmp(k, "out_dtype") && strcmp(k, "donor") && strcmp(k, "num_layers"))
            luaL_error(S, "crucible.settings: unknown field '%s' (dtype, out_dtype, donor, num_layers)", k);
        lua_pop(S, 1);
    }
    cr_dtype d = opt_dtype(S, 1, "dtype");
    if (d != CR_DTYPE_NONE) r->dtype = d;
    d = opt_dtype(S, 1, "out_dtype");
    if (d != CR_DTYPE_NONE) r->out_dtype = d;
    if (lua_getfield(S, 1, "donor") != LUA_TNIL) r->donor = model_index(S, r, lua_gettop(S), "donor");
    lua_pop(S, 1);
    if (lua_getfield(S, 1, "num_layers") != LUA_TNIL) {
        if (!lua_isinteger(S, -1) || lua_tointeger(S, -1) < 0)
            luaL_error(S, "num_layers must be a non-negative integer");
        r->num_layers = lua_tointeger(S, -1);
    }
    lua_pop(S, 1);
    return 0;
}

/* ---- crucible.merge ------------------------------------------------------ */

/* A table of name -> number/boolean at idx into a parameter set. */
static void read_params(lua_State *S, recipe *r, int idx, cr_param_set *out, const char *what)
{
    out->n = 0;
    out->items = NULL;
    if (lua_isnoneornil(S, idx)) return;
    if (!lua_istable(S, idx)) luaL_error(S, "%s: params must be a table", what);
    uint32_t n = 0;
    lua_pushnil(S);
    while (lua_next(S, idx)) { n++; lua_pop(S, 1); }
    if (!n) return;
    out->items = cr_arena_alloc(r->ar, sizeof *out->items * n);
    if (!out->items) luaL_error(S, "out of memory");
    lua_pushnil(S);
    while (lua_next(S, idx)) {
        if (lua_type(S, -2) != LUA_TSTRING) luaL_error(S, "%s: parameter names must be strings", what);
        cr_param_value *v = &out->items[out->n++];
        v->name = adup(S, r, lua_tostring(S, -2));
        v->present = true;
        if (lua_isboolean(S, -1)) v->value = lua_toboolean(S, -1);
        else if (lua_type(S, -1) == LUA_TNUMBER) {
            v->value = lua_tonumber(S, -1);
            /* as in YAML recipes: a NaN or infinite weight poisons every tensor */
            if (!isfinite(v->value))
                luaL_error(S, "%s: parameter '%s' is %f; merge parameters must be finite numbers", what,
                           v->name, v->value);
        }
        else luaL_error(S, "%s: parameter '%s' must be a number or boolean, not a %s", what, v->name,
                        luaL_typename(S, -1));
        lua_pop(S, 1);
    }
}

/* Parameters a method does not declare are mistakes in a script. */
static void check_params(lua_State *S, const cr_method_info *m, const cr_param_set *s, const char *what)
{
    if (!m->n_params && m->min_inputs == 0) return;   /* inline: no declarations */
    for (uint32_t i = 0; i < s->n; i++)
        if (!cr_method_param(m, s->items[i].name))
            luaL_error(S, "%s: '%s' is not a parameter of method '%s'", what, s->items[i].name, m->name);
}

/* per-model set: the input's own values, then the merge's for model-scope
 * names it lacks (YAML's top-level `parameters:` do the same) */
static void merge_sets(lua_State *S, recipe *r, cr_param_set *src, const cr_param_set *global)
{
    if (!global->n) return;
    cr_param_value *items = cr_arena_alloc(r->ar, sizeof *items * (src->n + global->n));
    if (!items) luaL_error(S, "out of memory");
    uint32_t n = 0;
    for (uint32_t i = 0; i < src->n; i++) items[n++] = src->items[i];
    for (uint32_t i = 0; i < global->n; i++)
        if (!cr_param_has(src, global->items[i].name)) items[n++] = global->items[i];
    src->items = items;
    src->n = n;
}

static const cr_method_info *method_arg(lua_State *S, recipe *r, int idx, const char *out_name)
{
    cr_error err = {0};
    if (lua_type(S, idx) == LUA_TSTRING) {
        const cr_method_info *m = cr_methods_find(r->reg, lua_tostring(S, idx), r->env.recipe_dir, &err);
        if (!m) luaL_error(S, "%s: %s", out_name, err.msg);
        return m;
    }
    if (lua_type(S, idx) != LUA_TFUNCTION)
        luaL_error(S, "%s: method must be a method name or a function(ctx)", out_name);
    /* one registration per distinct function */
    if (r->inline_ref == LUA_NOREF) {
        lua_newtable(S);
        r->inline_ref = luaL_ref(S, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(S, LUA_REGISTRYINDEX, r->inline_ref);
    lua_pushvalue(S, idx);
    lua_rawget(S, -2);
    if (lua_islightuserdata(S, -1)) {
        const cr_method_info *m = lua_touserdata(S, -1);
        lua_pop(S, 2);
        return m;
    }
    lua_pop(S, 1);
    lua_Debug ar;
    lua_pushvalue(S, idx);
    lua_getinfo(S, ">S", &ar);
    char name[64];
    snprintf(name, sizeof name, "inline@%d", ar.linedefined);
    lua_pushvalue(S, idx);
    const cr_method_info *m = cr_methods_add_inline(r->reg, name, r->path, &err);
    if (!m) luaL_error(S, "%s", err.msg);
    lua_pushvalue(S, idx);
    lua_pushlightuserdata(S, (void *)m);
    lua_rawset(S, -3);
    lua_pop(S, 1);
    return m;
}

/* An output name must be one the safetensors writer can write and a
 * reader find: not empty, at most CR_LIMIT_NAME bytes (what the reader
 * accepts), not the header's reserved "__metadata__" key, and no control
 * characters (a NUL would cut the name short; the others are refused by
 * JSON readers and print as terminal escapes). The name itself is not
 * quoted in the message: it may be 5000 bytes or hold escapes. */
static void check_output_name(lua_State *S, const char *name, size_t len)
{
    if (!len) luaL_error(S, "crucible.merge: the output tensor name is empty");
    if (len > CR_LIMIT_NAME)
        luaL_error(S, "crucible.merge: the output tensor name is %I bytes long (limit %d)",
                   (lua_Integer)len, (int)CR_LIMIT_NAME);
    if (!strcmp(name, "__metadata__"))
        luaL_error(S, "crucible.merge: the output tensor name '__metadata__' is reserved by the safetensors format");
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) {
            char byte[8];   /* lua_pushfstring has no %x */
            snprintf(byte, sizeof byte, "0x%02x", (unsigned char)name[i]);
            luaL_error(S, "crucible.merge: the output tensor name has a control character (byte %s at offset %I)",
                       byte, (lua_Integer)i);
        }
}

static int l_merge(lua_State *S)
{
    recipe *r = self(S);
    luaL_checktype(S, 1, LUA_TTABLE);
    lua_settop(S, 1);
    if (lua_getfield(S, 1, "name") != LUA_TSTRING) luaL_error(S, "crucible.merge: name (the output tensor) is required");
    size_t name_len;
    const char *name = lua_tolstring(S, -1, &name_len);
    check_output_name(S, name, name_len);
    name = adup(S, r, name);
    lua_pop(S, 1);
    for (size_t i = 0; i < r->tensors.len; i++)
        if (!strcmp(CR_VEC_AT(&r->tensors, cr_plan_tensor, i).name, name))
            luaL_error(S, "%s: output tensor declared twice", name);
    lua_getfield(S, 1, "method");
    const cr_method_info *m = method_arg(S, r, 2, name);
    lua_pop(S, 1);

    cr_plan_tensor t = { .name = name, .method = m, .is_embed = cr_arch_is_embed(name) };
    lua_Debug ar;
    if (lua_getstack(S, 1, &ar) && lua_getinfo(S, "Sl", &ar))
        t.loc = (cr_src_loc){ .file = r->path, .line = ar.currentline, .col = 1 };
    if (lua_getfield(S, 1, "layer") != LUA_TNIL) {
        if (!lua_isinteger(S, -1)) luaL_error(S, "%s: layer must be an integer", name);
        t.layer = (int)lua_tointeger(S, -1);
    } else {
        t.layer = first_layer_index(name);
    }
    lua_pop(S, 1);
    if (lua_getfield(S, 1, "embed") != LUA_TNIL) t.is_embed = lua_toboolean(S, -1);
    lua_pop(S, 1);
    lua_getfield(S, 1, "params");
    read_params(S, r, lua_gettop(S), &t.params, name);
    lua_pop(S, 1);
    check_params(S, m, &t.params, name);

    if (lua_getfield(S, 1, "inputs") != LUA_TTABLE) luaL_error(S, "%s: inputs must be a list", name);
    int li = lua_gettop(S);
    lua_Integer n = luaL_len(S, li);
    if (n < 1 || n > 64) luaL_error(S, "%s: want 1 to 64 inputs, got %d", name, (int)n);
    t.sources = cr_arena_alloc(r->ar, sizeof *t.sources * (size_t)n);
    if (!t.sources) luaL_error(S, "out of memory");
    int n_base = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(S, li, i);
        int e = lua_gettop(S);
        if (!lua_istable(S, e)) luaL_error(S, "%s: inputs[%d] must be {model, tensor_name, ...}", name, (int)i);
        cr_plan_source *s = &t.sources[t.n_sources++];
        if (lua_getfield(S, e, "model") == LUA_TNIL) { lua_pop(S, 1); lua_rawgeti(S, e, 1); }
        s->model = (uint32_t)model_index(S, r, lua_gettop(S), "inputs[].model");
        lua_pop(S, 1);
        if (lua_getfield(S, e, "tensor") == LUA_TNIL) { lua_pop(S, 1); lua_rawgeti(S, e, 2); }
        const char *tn = lua_isnil(S, -1) ? name : lua_tostring(S, -1);
        if (!tn) luaL_error(S, "%s: inputs[%d].tensor must be a string", name, (int)i);
        s->tensor = adup(S, r, tn);
        lua_pop(S, 1);
        const cr_plan_model *pm = &CR_VEC_AT(&r->models, cr_plan_model, s->model);
        const cr_model_tensor *mt = cr_model_find(&pm->model, s->tensor);
        if (!mt) luaL_error(S, "%s: model '%s' has no tensor '%s'", name, pm->ref, s->tensor);
        s->dtype = mt->info->dtype;
        s->ndim = mt->info->ndim;
        memcpy(s->shape, mt->info->shape, sizeof s->shape);
        lua_getfield(S, e, "base");
        s->is_base = lua_toboolean(S, -1);
        n_base += s->is_base;
        lua_pop(S, 1);
        lua_getfield(S, e, "params");
        read_params(S, r, lua_gettop(S), &s->params, name);
        lua_pop(S, 1);
        check_params(S, m, &s->params, name);
        merge_sets(S, r, &s->params, &t.params);
        lua_pop(S, 1);
    }
    lua_pop(S, 1);
    int others = (int)t.n_sources - n_base;
    if (n_base > 1) luaL_error(S, "%s: more than one input is marked base", name);
    if (m->base == CR_BASE_REQUIRED && !n_base)
        luaL_error(S, "%s: method '%s' needs an input marked base = true", name, m->name);
    if (others < m->min_inputs || (m->max_inputs >= 0 && others > m->max_inputs))
        luaL_error(S, "%s: method '%s' takes %d..%d non-base inputs, got %d", name, m->name,
                   m->min_inputs, m->max_inputs, others);
    for (uint32_t i = 0; i < m->n_params; i++) {
        const cr_param_decl *d = &m->params[i];
        if (!d->required) continue;
        if (d->scope == CR_PARAM_GLOBAL && !cr_param_has(&t.params, d->name))
            luaL_error(S, "%s: method '%s' needs parameter '%s'", name, m->name, d->name);
        for (uint32_t k = 0; d->scope == CR_PARAM_MODEL && k < t.n_sources; k++)
            if (!t.sources[k].is_base && !cr_param_has(&t.sources[k].params, d->name))
                luaL_error(S, "%s: method '%s' needs parameter '%s' for input %d", name, m->name,
                           d->name, (int)k + 1);
    }
    if (!cr_vec_push(&r->tensors, &t)) luaL_error(S, "out of memory");
    return 0;
}

/* ---- the front end ------------------------------------------------------- */

static char *slurp(const cr_allocator *a, const char *path, size_t *len, cr_error *err)
{
    char *buf;
    return cr_file_read(a, path, CR_LIMIT_RECIPE_BYTES, "recipe", &buf, len, err) ? NULL : buf;
}

/* Models into the plan (also after a failure, so that cr_plan_free closes
 * every opened model). */
static void publish_models(recipe *r, cr_plan *out)
{
    out->models = r->models.len ? cr_arena_alloc(&out->arena, sizeof *out->models * r->models.len) : NULL;
    if (!out->models) {
        for (size_t i = 0; i < r->models.len; i++)
            cr_model_close(&CR_VEC_AT(&r->models, cr_plan_model, i).model);
        return;
    }
    memcpy(out->models, r->models.data, sizeof *out->models * r->models.len);
    out->n_models = (uint32_t)r->models.len;
}

static cr_status make_stage(recipe *r, cr_plan *out, cr_error *err)
{
    if (!r->tensors.len) return cr_fail(err, CR_ERR_CONFIG, "%s: the script declared no output tensor (crucible.merge)", r->path);
    cr_plan_stage *st = cr_arena_alloc(&out->arena, sizeof *st);
    cr_plan_tensor *ts = cr_arena_alloc(&out->arena, sizeof *ts * r->tensors.len);
    if (!st || !ts) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    memcpy(ts, r->tensors.data, sizeof *ts * r->tensors.len);
    st->name = "merge";
    st->method = ts[0].method;
    st->method_loc = ts[0].loc;
    st->base_model = -1;
    for (uint32_t k = 0; k < ts[0].n_sources; k++)
        if (ts[0].sources[k].is_base) st->base_model = (int)ts[0].sources[k].model;
    st->dtype = r->dtype;
    st->out_dtype = r->out_dtype;
    st->tensors = ts;
    st->n_tensors = (uint32_t)r->tensors.len;
    st->donor_model = r->donor;
    st->num_layers_out = r->num_layers;
    st->recipe_text = out->recipe_text;
    if (r->donor >= 0) {
        static const char *const keys[] = { "num_hidden_layers", "n_layer", "num_layers",
                                            "text_config.num_hidden_layers" };
        long long v;
        for (size_t i = 0; i < CR_ARRAY_LEN(keys) && !st->num_layers_key; i++)
            if (cr_model_config_int(&out->models[r->donor].model, keys[i], &v)) st->num_layers_key = keys[i];
    }
    if (st->num_layers_out >= 0 && !st->num_layers_key)
        return cr_fail(err, CR_ERR_CONFIG, "%s: num_layers is set but the donor's config.json has no layer count", r->path);
    out->stages = st;
    out->n_stages = 1;
    return CR_OK;
}

cr_status cr_frontend_lua(const cr_allocator *alloc, const char *recipe_path,
                          const cr_frontend_options *opt, cr_plan *out, cr_diags *diags,
                          cr_error *err)
{
    static const cr_frontend_options defaults = { 0 };
    if (!opt) opt = &defaults;
    memset(out, 0, sizeof *out);
    cr_arena_init(&out->arena, alloc);
    size_t len;
    char *text = slurp(alloc, recipe_path, &len, err);
    if (!text) return err->status ? err->status : CR_ERR_IO;
    out->recipe_path = cr_arena_strdup(&out->arena, recipe_path);
    out->recipe_text = cr_arena_strndup(&out->arena, text, len);
    recipe r = { .alloc = alloc, .ar = &out->arena, .opt = opt, .reg = opt->methods,
                 .path = out->recipe_path, .donor = -1, .num_layers = -1,
                 .dtype = CR_DTYPE_NONE, .out_dtype = CR_DTYPE_NONE, .inline_ref = LUA_NOREF };
    cr_vec_init(&r.models, alloc, sizeof(cr_plan_model));
    cr_vec_init(&r.tensors, alloc, sizeof(cr_plan_tensor));
    cr_status st = CR_OK;
    if (!out->recipe_path || !out->recipe_text) st = cr_fail(err, CR_ERR_NOMEM, "out of memory");
    if (!st && !r.reg) {
        st = cr_methods_open(alloc, NULL, &r.reg, err);
        if (!st) out->owned_methods = r.reg;
    }
    if (!st) {
        cr_resolve_env_init(&r.env, &out->arena, recipe_path, opt->models_dir, !opt->no_env);
        static const luaL_Reg fns[] = {
            { "model", l_model }, { "merge", l_merge }, { "settings", l_settings }, { NULL, NULL } };
        cr_lua *L = cr_methods_state(r.reg);
        st = cr_lua_run_script(L, out->recipe_path, text, len, fns, &r, err);
        if (r.inline_ref != LUA_NOREF) cr_lua_unref(L, r.inline_ref);
    }
    cr_free(alloc, text);
    publish_models(&r, out);
    if (!st) st = make_stage(&r, out, err);
    if (st == CR_ERR_CONFIG) {
        cr_src_loc loc = { .file = out->recipe_path };
        cr_diag_add(diags, CR_DIAG_ERROR, loc, NULL, NULL, "%s", err->msg);
    }
    cr_vec_free(&r.models);
    cr_vec_free(&r.tensors);
    return st;
}

bool cr_recipe_is_lua(const char *path)
{
    size_t n = strlen(path);
    return n > 4 && !strcmp(path + n - 4, ".lua");
}

cr_status cr_frontend_recipe(const cr_allocator *alloc, const char *recipe_path,
                             const cr_frontend_options *opt, cr_plan *out, cr_diags *diags,
                             cr_error *err)
{
    if (cr_recipe_is_lua(recipe_path))
        return cr_frontend_lua(alloc, recipe_path, opt, out, diags, err);
    return cr_frontend_yaml(alloc, recipe_path, opt, out, diags, err);
}
