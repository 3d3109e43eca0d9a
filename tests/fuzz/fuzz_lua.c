/* fuzz_lua.c — libFuzzer target: Lua method files and whole Lua recipes.
 *
 * The first byte picks the mode, the rest is the Lua text:
 *   0  a method file: written to method.lua and loaded through the method
 *      registry as `lua:method.lua` (cr_methods_find: sandboxed load and
 *      declaration checks);
 *   1  a whole recipe: written to recipes/recipe.lua and compiled
 *      (cr_compile, compiler/pipeline.h: every crucible.merge, inline
 *      functions included, runs its merge call);
 *   2  a method file used by a fixed YAML recipe (three models, base
 *      model-a) and compiled: the method's merge function runs on every
 *      tensor;
 *   3  the body of a function hook(t, k) that a fixed method file (see
 *      fuzz_lua_decl_tail) calls for every field read from its declaration
 *      table (k a field name: its metatable's __index, so reading the
 *      declaration runs it), in merge as the xpcall'd function (t = ctx,
 *      k = 'call') and as that xpcall's message handler (t = the error,
 *      k = 'handler'); then used like mode 2. Its seeds (d-*.lua) error with odd objects,
 *      loop, allocate, and return tables with metatables of their own.
 * Three tiny Mistral-layout models (a, b, c; 2 layers, hidden 8) are
 * synthesised once in a temporary directory, with examples/methods/
 * median.lua copied to methods/ so recipe seeds can name it. Everything
 * runs header-only under the registry's sandbox and its limits
 * lowered to FUZZ_LUA_INSTRUCTIONS instructions and FUZZ_LUA_BYTES of heap
 * per load or merge call, so that a runaway script costs a fraction of a
 * second (the defaults of core/limits.h are 10-20 times that). Whatever the
 * input, the calls must return, every diagnostic carrying a message, and
 * nothing may leak. See fuzz_common.h.
 */
#include "fuzz_common.h"
#include "compile.h"
#include "lua_api.h"
#include "frontend.h"
#include "graph.h"
#include "lua_recipe.h"
#include "method.h"
#include "pipeline.h"
#include "support/front_support.h"

#define FUZZ_LUA_INSTRUCTIONS 10000000L
#define FUZZ_LUA_BYTES ((size_t)64 << 20)

/* mode 3: the input is the body of hook(t, k) */
static const char fuzz_lua_decl_head[] = "local function hook(t, k)\n";
static const char fuzz_lua_decl_tail[] =
    "\nend\n"
    "local decl = { name = 'fz', inputs = { min = 1 }, params = { { name = 'weight', scope = 'model' } },\n"
    "  merge = function(ctx)\n"
    "    local ok, v = xpcall(hook, function(e) return hook(e, 'handler') end, ctx, 'call')\n"
    "    if ok and v ~= nil then return v end\n"
    "    return ctx.inputs[1]\n"
    "  end }\n"
    "return setmetatable({}, { __index = function(t, k)\n"
    "  local v = hook(t, k)\n"
    "  if v ~= nil then return v end\n"
    "  return decl[k]\n"
    "end })\n";

static char *fuzz_lua_dir, *fuzz_lua_models, *fuzz_lua_method, *fuzz_lua_recipe, *fuzz_lua_yaml;

static void fuzz_lua_cleanup(void)
{
    fuzz_rmtree(fuzz_lua_dir);
    free(fuzz_lua_dir);
    free(fuzz_lua_models);
    free(fuzz_lua_method);
    free(fuzz_lua_recipe);
    free(fuzz_lua_yaml);
    fuzz_lua_dir = fuzz_lua_models = fuzz_lua_method = fuzz_lua_recipe = fuzz_lua_yaml = NULL;
}

/* copy a repository file (relative to the repo root) into the fixture; a
 * missing source is tolerated (the fuzzer may run from elsewhere) */
static void fuzz_lua_copy(const char *from, const char *to)
{
    FILE *f = fopen(from, "rb");
    if (!f) return;
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    fuzz_write_file(to, buf, n);
}

static bool fuzz_lua_init(void)
{
    if (fuzz_lua_dir) return true;
    fuzz_lua_dir = fuzz_tmpdir("lua");
    if (!fuzz_lua_dir) return false;
    atexit(fuzz_lua_cleanup);
    fuzz_lua_models = fuzz_join(fuzz_lua_dir, "models");
    fuzz_lua_method = fuzz_join(fuzz_lua_dir, "method.lua");
    fuzz_lua_recipe = fuzz_join(fuzz_lua_dir, "recipes/recipe.lua");
    fuzz_lua_yaml = fuzz_join(fuzz_lua_dir, "recipe.yml");
    char *recipes = fuzz_join(fuzz_lua_dir, "recipes"), *methods = fuzz_join(fuzz_lua_dir, "methods");
    bool ok = fuzz_lua_models && fuzz_lua_method && fuzz_lua_recipe && fuzz_lua_yaml && recipes &&
              methods && !mkdir(recipes, 0700) && !mkdir(methods, 0700);
    if (ok) {
        char *median = fuzz_join(methods, "median.lua");
        if (median) fuzz_lua_copy("examples/methods/median.lua", median);
        free(median);
    }
    free(recipes);
    free(methods);
    if (!ok) return false;
    front_model_spec m = { .arch = "MistralForCausalLM", .layers = 2, .hidden = 8, .intermediate = 16,
                           .vocab = 32, .dtype = "BF16", .lm_head = true };
    ok = front_write_model(fuzz_lua_models, "a", &m) && front_write_model(fuzz_lua_models, "b", &m);
    m.dtype = "F32";
    return ok && front_write_model(fuzz_lua_models, "c", &m);
}

static void fuzz_lua_check_diags(const cr_diags *d, cr_status s)
{
    for (size_t i = 0; i < d->items.len; i++)
        FUZZ_ASSERT(CR_VEC_AT(&d->items, cr_diag, i).msg != NULL, "diagnostic %zu without a message", i);
    if (s == CR_OK) FUZZ_ASSERT(d->n_errors == 0, "CR_OK with %d errors", d->n_errors);
    else if (s == CR_ERR_CONFIG) FUZZ_ASSERT(d->n_errors > 0 || d->oom, "CR_ERR_CONFIG without a diagnostic");
}

/* the whole pipeline on YAML text or a recipe file */
static void fuzz_lua_compile(const cr_allocator *a, cr_method_registry *reg, const char *yaml)
{
    cr_error err = {0};
    cr_pipeline_options o = { .alloc = a, .path = yaml ? fuzz_lua_yaml : fuzz_lua_recipe, .text = yaml,
                              .text_len = yaml ? strlen(yaml) : 0, .models_dir = fuzz_lua_models, .methods = reg,
                              .header_only = true, .no_env = true };
    cr_compile_result r;
    cr_status s = cr_compile(&o, &r, &err);
    if (s == CR_OK || r.failed == CR_STAGE_FRONTEND) fuzz_lua_check_diags(&r.diags, s);
    else FUZZ_ASSERT(err.msg[0] != 0, "compile failed without a message");
    cr_compile_result_free(&r);
}

static const char fuzz_lua_yaml_text[] =
    "merge_method: lua:method.lua\n"
    "base_model: a\n"
    "models:\n"
    "  - model: a\n"
    "  - model: b\n"
    "    parameters: {weight: 0.5, density: 0.5}\n"
    "  - model: c\n"
    "    parameters: {weight: 0.25, density: 0.7}\n"
    "parameters: {t: 0.5, lambda: 1.0, normalize: true}\n"
    "dtype: bfloat16\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fuzz_lua_init()) abort();
    if (size < 1) return 0;
    int mode = data[0] % 4;
    if (mode == 3) {
        size_t nh = sizeof fuzz_lua_decl_head - 1, nt = sizeof fuzz_lua_decl_tail - 1;
        char *text = malloc(nh + size - 1 + nt);
        if (!text) abort();
        memcpy(text, fuzz_lua_decl_head, nh);
        memcpy(text + nh, data + 1, size - 1);
        memcpy(text + nh + size - 1, fuzz_lua_decl_tail, nt);
        bool ok = fuzz_write_file(fuzz_lua_method, text, nh + size - 1 + nt);
        free(text);
        if (!ok) abort();
    } else if (!fuzz_write_file(mode == 1 ? fuzz_lua_recipe : fuzz_lua_method, data + 1, size - 1)) {
        abort();
    }
    cr_failing_allocator fa;
    fuzz_alloc_begin(&fa);
    cr_method_registry *reg = NULL;
    cr_error err = {0};
    cr_lua_limits lim = { .max_bytes = FUZZ_LUA_BYTES, .max_instructions = FUZZ_LUA_INSTRUCTIONS };
    if (cr_methods_open_limits(&fa.base, NULL, &lim, &reg, &err)) abort();
    if (mode == 0) {
        const cr_method_info *m = cr_methods_find(reg, "lua:method.lua", fuzz_lua_dir, &err);
        if (m) FUZZ_ASSERT(m->name && m->name[0], "method without a name");
        else FUZZ_ASSERT(err.msg[0] != 0, "method load failed without a message");
    } else {
        fuzz_lua_compile(&fa.base, reg, mode == 1 ? NULL : fuzz_lua_yaml_text);
    }
    cr_methods_close(reg);
    fuzz_alloc_end(&fa, "fuzz_lua");
    return 0;
}
