/* methods.c — the registry of merge methods (compiler/method.h).
 *
 * Owns the Lua state that holds every method table: the built-in files of
 * stdlib/ (embedded; common.lua is the shared helper library, not a method),
 * `lua:PATH` files relative to the recipe's directory, and NAME.lua files
 * under --methods DIR. A method's declaration is read from the table its
 * file returns, once, when the file is first loaded; merge() is only called
 * later by the graph builder.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "lua_inc.h"

#include "method.h"
#include "infile.h"
#include "limits.h"
#include "lua_api.h"
#include "stdlib_embed.h"

typedef struct method_entry {
    cr_method_info info;        /* first: a cr_method_info* is an entry* */
    const char *key;            /* name for built-ins, resolved path for files */
    int ref;                    /* method table in the Lua registry */
    bool from_file;             /* read from the file `key` (lua:PATH, --methods) */
} method_entry;

struct cr_method_registry {
    const cr_allocator *alloc;
    cr_arena arena;
    cr_lua *lua;
    const char *user_dir;
    cr_vec entries;             /* method_entry* */
    const char **builtin;       /* names of built-in methods */
    size_t n_builtin;
};

static method_entry *entry_at(const cr_method_registry *r, size_t i)
{
    return CR_VEC_AT(&r->entries, method_entry *, i);
}

/* Read the declaration of the table on top of the stack into e. */
static cr_status read_decl(cr_method_registry *r, lua_State *S, const char *source,
                           const char *default_name, method_entry *e, cr_error *err)
{
    cr_method_info *m = &e->info;
    int t = lua_gettop(S);
    m->source = cr_arena_strdup(&r->arena, source);
    lua_getfield(S, t, "name");
    m->name = cr_arena_strdup(&r->arena, lua_isstring(S, -1) ? lua_tostring(S, -1) : default_name);
    lua_getfield(S, t, "pretty");
    m->pretty = cr_arena_strdup(&r->arena, lua_isstring(S, -1) ? lua_tostring(S, -1) : m->name);
    lua_getfield(S, t, "url");
    m->url = lua_isstring(S, -1) ? cr_arena_strdup(&r->arena, lua_tostring(S, -1)) : NULL;
    lua_pop(S, 3);
    if (!m->source || !m->name || !m->pretty) return cr_fail(err, CR_ERR_NOMEM, "out of memory");

    lua_getfield(S, t, "base");
    const char *base = lua_isstring(S, -1) ? lua_tostring(S, -1) : "unused";
    if (!strcmp(base, "required")) m->base = CR_BASE_REQUIRED;
    else if (!strcmp(base, "optional")) m->base = CR_BASE_OPTIONAL;
    else if (!strcmp(base, "unused")) m->base = CR_BASE_UNUSED;
    else {
        cr_fail(err, CR_ERR_CONFIG, "%s: base = '%s' (want \"required\", \"optional\" or \"unused\")",
                source, base);
        lua_pop(S, 1);
        return CR_ERR_CONFIG;
    }
    lua_pop(S, 1);

    m->min_inputs = 1;
    m->max_inputs = -1;
    if (lua_getfield(S, t, "inputs") == LUA_TTABLE) {
        if (lua_getfield(S, -1, "min") == LUA_TNUMBER) m->min_inputs = (int)lua_tointeger(S, -1);
        if (lua_getfield(S, -2, "max") == LUA_TNUMBER) m->max_inputs = (int)lua_tointeger(S, -1);
        lua_pop(S, 2);
    }
    lua_pop(S, 1);

    if (lua_getfield(S, t, "merge") != LUA_TFUNCTION) {
        lua_pop(S, 1);
        return cr_fail(err, CR_ERR_CONFIG, "%s: the returned table has no merge function", source);
    }
    lua_pop(S, 1);

    if (lua_getfield(S, t, "params") == LUA_TTABLE) {
        /* the entries that are there (a __len could claim 10^15 of them) */
        lua_Integer n = (lua_Integer)lua_rawlen(S, -1);
        cr_param_decl *ps = n ? cr_arena_alloc(&r->arena, sizeof *ps * (size_t)n) : NULL;
        if (n && !ps) { lua_pop(S, 1); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
        for (lua_Integer i = 1; i <= n; i++) {
            cr_param_decl *p = &ps[i - 1];
            lua_rawgeti(S, -1, i);
            if (!lua_istable(S, -1) || lua_getfield(S, -1, "name") != LUA_TSTRING) {
                lua_pop(S, 3);
                return cr_fail(err, CR_ERR_CONFIG, "%s: params[%lld] has no name", source, (long long)i);
            }
            p->name = cr_arena_strdup(&r->arena, lua_tostring(S, -1));
            lua_getfield(S, -2, "scope");
            p->scope = lua_isstring(S, -1) && !strcmp(lua_tostring(S, -1), "model") ? CR_PARAM_MODEL
                                                                                     : CR_PARAM_GLOBAL;
            lua_getfield(S, -3, "kind");
            p->kind = lua_isstring(S, -1) && !strcmp(lua_tostring(S, -1), "bool") ? CR_PARAM_BOOL
                                                                                   : CR_PARAM_NUMBER;
            lua_getfield(S, -4, "required");
            p->required = lua_toboolean(S, -1);
            lua_getfield(S, -5, "default");
            if (lua_isboolean(S, -1)) { p->has_default = true; p->dflt = lua_toboolean(S, -1); }
            else if (lua_isnumber(S, -1)) { p->has_default = true; p->dflt = lua_tonumber(S, -1); }
            lua_pop(S, 6);
            if (!p->name) { lua_pop(S, 1); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
        }
        m->params = ps;
        m->n_params = (uint32_t)n;
    }
    lua_pop(S, 1);
    return CR_OK;
}

typedef struct decl_read {
    cr_method_registry *r;
    const char *source, *default_name;
    method_entry *e;
    cr_error *err;
    cr_status st;
} decl_read;

/* protected (cr_lua_protect): the declaration table is the script's, and
 * any field read may run its metamethods (__index, __len), which may
 * error, loop or allocate past the limit */
static int read_decl_body(lua_State *S)
{
    decl_read *d = lua_touserdata(S, 1);
    lua_rawgeti(S, LUA_REGISTRYINDEX, d->e->ref);
    d->st = read_decl(d->r, S, d->source, d->default_name, d->e, d->err);
    return 0;
}

/* Load one method file's text and register it under key. */
static cr_status load_method(cr_method_registry *r, const char *key, const char *source,
                             const char *default_name, const char *text, size_t len,
                             method_entry **out, cr_error *err)
{
    int ref;
    cr_status st = cr_lua_load_chunk(r->lua, source, text, len, &ref, err);
    if (st) return st;
    method_entry *e = cr_arena_alloc(&r->arena, sizeof *e);
    if (!e || !(e->key = cr_arena_strdup(&r->arena, key))) {
        cr_lua_unref(r->lua, ref);
        return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    }
    e->ref = ref;
    e->from_file = false;
    decl_read d = { .r = r, .source = source, .default_name = default_name, .e = e, .err = err };
    char context[600];
    snprintf(context, sizeof context, "reading the declaration of %s", source);
    st = cr_lua_protect(r->lua, read_decl_body, &d, context, err);
    if (!st) st = d.st;
    if (st) return st;
    if (!cr_vec_push(&r->entries, &e)) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    *out = e;
    return CR_OK;
}

cr_status cr_methods_open(const cr_allocator *alloc, const char *user_dir,
                          cr_method_registry **out, cr_error *err)
{
    return cr_methods_open_limits(alloc, user_dir, NULL, out, err);
}

cr_status cr_methods_open_limits(const cr_allocator *alloc, const char *user_dir,
                                 const cr_lua_limits *limits, cr_method_registry **out, cr_error *err)
{
    *out = NULL;
    cr_method_registry *r = cr_calloc(alloc, 1, sizeof *r);
    if (!r) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    r->alloc = alloc;
    cr_arena_init(&r->arena, alloc);
    cr_vec_init(&r->entries, alloc, sizeof(method_entry *));
    cr_status st = cr_lua_open(alloc, limits, &r->lua, err);
    if (st) { cr_methods_close(r); return st; }
    if (user_dir && !(r->user_dir = cr_arena_strdup(&r->arena, user_dir))) {
        cr_methods_close(r);
        return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    }
    r->builtin = cr_arena_alloc(&r->arena, sizeof(char *) * (cr_stdlib_n_files + 1));
    if (!r->builtin) { cr_methods_close(r); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
    for (size_t i = 0; i < cr_stdlib_n_files; i++) {
        const cr_embedded_file *f = &cr_stdlib_files[i];
        if (!strcmp(f->name, "common.lua") || f->name[0] == '_') continue;
        char source[300], stem[256];
        snprintf(source, sizeof source, "stdlib/%s", f->name);
        snprintf(stem, sizeof stem, "%.*s", (int)(strlen(f->name) > 4 ? strlen(f->name) - 4 : 0), f->name);
        method_entry *e;
        st = load_method(r, stem, source, stem, f->data, f->len, &e, err);
        if (st) { cr_methods_close(r); return st; }
        /* the key of a built-in is its declared name */
        e->key = e->info.name;
        r->builtin[r->n_builtin++] = e->info.name;
    }
    *out = r;
    return CR_OK;
}

void cr_methods_close(cr_method_registry *r)
{
    if (!r) return;
    cr_lua_close(r->lua);
    cr_vec_free(&r->entries);
    cr_arena_free(&r->arena);
    cr_free(r->alloc, r);
}

/* Read a whole file with the registry's allocator (at most the recipe limit). */
static char *slurp(const cr_allocator *a, const char *path, size_t *len, cr_error *err)
{
    char *buf;
    return cr_file_read(a, path, CR_LIMIT_RECIPE_BYTES, "method file", &buf, len, err) ? NULL : buf;
}

static const cr_method_info *load_file(cr_method_registry *r, const char *path,
                                       const char *default_name, cr_error *err)
{
    for (size_t i = 0; i < r->entries.len; i++)
        if (!strcmp(entry_at(r, i)->key, path)) return &entry_at(r, i)->info;
    size_t len;
    char *text = slurp(r->alloc, path, &len, err);
    if (!text) return NULL;
    method_entry *e;
    cr_status st = load_method(r, path, path, default_name, text, len, &e, err);
    cr_free(r->alloc, text);
    if (st) return NULL;
    e->from_file = true;
    return &e->info;
}

const cr_method_info *cr_methods_find(cr_method_registry *r, const char *name,
                                      const char *relative_to, cr_error *err)
{
    char path[4096];
    if (!strncmp(name, "lua:", 4)) {
        const char *p = name + 4;
        if (p[0] == '/' || !relative_to || !relative_to[0]) snprintf(path, sizeof path, "%s", p);
        else snprintf(path, sizeof path, "%s/%s", relative_to, p);
        const char *base = strrchr(p, '/');
        base = base ? base + 1 : p;
        char stem[256];
        size_t bl = strlen(base);
        snprintf(stem, sizeof stem, "%.*s", (int)(bl > 4 && !strcmp(base + bl - 4, ".lua") ? bl - 4 : bl), base);
        return load_file(r, path, stem, err);
    }
    for (size_t i = 0; i < r->n_builtin; i++)
        if (!strcmp(r->builtin[i], name)) {
            for (size_t j = 0; j < r->entries.len; j++)
                if (entry_at(r, j)->info.name == r->builtin[i]) return &entry_at(r, j)->info;
        }
    if (r->user_dir && !strchr(name, '/')) {
        snprintf(path, sizeof path, "%s/%s.lua", r->user_dir, name);
        FILE *f = fopen(path, "rb");
        if (f) {
            fclose(f);
            return load_file(r, path, name, err);
        }
    }
    cr_fail(err, CR_ERR_CONFIG, "unknown merge method '%s'%s", name,
            r->user_dir ? " (not built in, and not in the --methods directory)" : "");
    return NULL;
}

void cr_methods_each_file(const cr_method_registry *r, void (*fn)(void *ud, const char *path), void *ud)
{
    for (size_t i = 0; i < r->entries.len; i++)
        if (entry_at(r, i)->from_file) fn(ud, entry_at(r, i)->key);
}

size_t cr_methods_builtin_names(const cr_method_registry *r, const char *const **names)
{
    *names = r->builtin;
    return r->n_builtin;
}

const cr_param_decl *cr_method_param(const cr_method_info *m, const char *name)
{
    for (uint32_t i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

cr_status cr_methods_lua(cr_method_registry *r, const cr_method_info *m, cr_lua **L, int *ref,
                         cr_error *err)
{
    for (size_t i = 0; i < r->entries.len; i++)
        if (&entry_at(r, i)->info == m) {
            *L = r->lua;
            *ref = entry_at(r, i)->ref;
            return CR_OK;
        }
    return cr_fail(err, CR_ERR_ARG, "method %s is not from this registry", m && m->name ? m->name : "?");
}

cr_lua *cr_methods_state(cr_method_registry *r) { return r->lua; }

const cr_method_info *cr_methods_add_inline(cr_method_registry *r, const char *name,
                                            const char *source, cr_error *err)
{
    lua_State *S = cr_lua_state(r->lua);
    lua_newtable(S);
    lua_insert(S, -2);
    lua_setfield(S, -2, "merge");
    int ref = luaL_ref(S, LUA_REGISTRYINDEX);
    method_entry *e = cr_arena_alloc(&r->arena, sizeof *e);
    if (!e) { luaL_unref(S, LUA_REGISTRYINDEX, ref); cr_fail(err, CR_ERR_NOMEM, "out of memory"); return NULL; }
    e->ref = ref;
    e->from_file = false;
    e->info.name = cr_arena_strdup(&r->arena, name);
    e->info.pretty = e->info.name;
    e->info.source = cr_arena_strdup(&r->arena, source);
    e->info.base = CR_BASE_OPTIONAL;
    e->info.min_inputs = 0;
    e->info.max_inputs = -1;
    /* keyed by a name no file path can have, so lookups never find it */
    e->key = cr_arena_printf(&r->arena, "\001inline:%s:%zu", name, r->entries.len);
    if (!e->info.name || !e->info.source || !e->key || !cr_vec_push(&r->entries, &e)) {
        cr_fail(err, CR_ERR_NOMEM, "out of memory");
        return NULL;
    }
    return &e->info;
}
