/* method_builtin_table.c — TEMPORARY hard-coded method registry.
 *
 * !!! Temporary: the real registry reads each method's declaration from its
 * Lua file (the stdlib Lua files, branch `graph`). This file implements method.h
 * with a fixed table of mergekit's 20 methods (merge-methods.md §3) so the
 * front end can validate recipes before that lands. The coordinator deletes
 * this file when the Lua registry is merged; nothing else includes it or
 * depends on anything beyond method.h. `lua:` methods and --methods DIR are
 * refused here with "not supported yet".
 */
#include "method.h"

#include <string.h>

struct cr_method_registry {
    const cr_allocator *alloc;
};

#define P_GLOBAL_NUM(n, d) { n, CR_PARAM_GLOBAL, CR_PARAM_NUMBER, false, true, d }
#define P_GLOBAL_BOOL(n, d) { n, CR_PARAM_GLOBAL, CR_PARAM_BOOL, false, true, d }
#define P_GLOBAL_REQ(n) { n, CR_PARAM_GLOBAL, CR_PARAM_NUMBER, true, false, 0 }
#define P_MODEL_NUM(n, d) { n, CR_PARAM_MODEL, CR_PARAM_NUMBER, false, true, d }
#define P_MODEL_REQ(n) { n, CR_PARAM_MODEL, CR_PARAM_NUMBER, true, false, 0 }
#define P_MODEL_NONE(n) { n, CR_PARAM_MODEL, CR_PARAM_NUMBER, false, false, 0 }

static const cr_param_decl p_linear[] = { P_GLOBAL_BOOL("normalize", 1), P_MODEL_REQ("weight") };
static const cr_param_decl p_slerp[] = { P_GLOBAL_REQ("t") };
static const cr_param_decl p_nuslerp[] = {
    P_GLOBAL_BOOL("nuslerp_row_wise", 0), P_GLOBAL_BOOL("nuslerp_flatten", 1), P_MODEL_REQ("weight") };
/* Decorator-defined methods test truthiness, not 0/1: declared as numbers. */
static const cr_param_decl p_multislerp[] = {
    P_GLOBAL_NUM("normalize_weights", 1), P_GLOBAL_NUM("eps", 1e-8), P_MODEL_REQ("weight") };
static const cr_param_decl p_karcher[] = { P_GLOBAL_NUM("max_iter", 10), P_GLOBAL_NUM("tol", 1e-5) };
#define GTA(norm, resc) \
    P_GLOBAL_BOOL("int8_mask", 0), P_GLOBAL_BOOL("normalize", norm), P_GLOBAL_BOOL("rescale", resc), \
    P_GLOBAL_NUM("lambda", 1.0), P_MODEL_REQ("weight"), P_MODEL_NUM("density", 1.0)
static const cr_param_decl p_task_arithmetic[] = { GTA(0, 0) };
static const cr_param_decl p_ties[] = { GTA(1, 0) };
static const cr_param_decl p_dare_ties[] = { GTA(0, 1) };
static const cr_param_decl p_dare_linear[] = { GTA(0, 1) };
static const cr_param_decl p_breadcrumbs[] = { GTA(0, 0), P_MODEL_NUM("gamma", 0.01) };
static const cr_param_decl p_breadcrumbs_ties[] = { GTA(0, 0), P_MODEL_NUM("gamma", 0.01) };
static const cr_param_decl p_della[] = { GTA(1, 1), P_MODEL_NUM("epsilon", 0.15) };
static const cr_param_decl p_della_linear[] = { GTA(0, 1), P_MODEL_NUM("epsilon", 0.15) };
static const cr_param_decl p_sce[] = { P_GLOBAL_NUM("int8_mask", 0), P_GLOBAL_NUM("select_topk", 1.0) };
static const cr_param_decl p_ram[] = { P_GLOBAL_NUM("epsilon", 1e-5) };
static const cr_param_decl p_ramplus[] = {
    P_GLOBAL_NUM("r", 0.1), P_GLOBAL_NUM("alpha", 0.2), P_GLOBAL_NUM("epsilon", 1e-5) };
static const cr_param_decl p_model_stock[] = { P_GLOBAL_BOOL("filter_wise", 0) };
static const cr_param_decl p_nearswap[] = { P_GLOBAL_REQ("t") };
static const cr_param_decl p_passthrough[] = { P_MODEL_NONE("scale") };

#define M(name, pretty, url, base, lo, hi, params) \
    { name, pretty, url, "builtin:" name, base, lo, hi, params, (uint32_t)CR_ARRAY_LEN(params) }
#define M0(name, pretty, url, base, lo, hi) \
    { name, pretty, url, "builtin:" name, base, lo, hi, NULL, 0 }

static const cr_method_info methods[] = {
    M("linear", "Linear", "https://arxiv.org/abs/2203.05482", CR_BASE_UNUSED, 1, -1, p_linear),
    M("slerp", "SLERP", "https://en.wikipedia.org/wiki/Slerp", CR_BASE_REQUIRED, 1, 1, p_slerp),
    M("nuslerp", "NuSLERP", NULL, CR_BASE_OPTIONAL, 2, 2, p_nuslerp),
    M("multislerp", "Multi-SLERP", "https://goddard.blog/posts/multislerp-wow-what-a-cool-idea",
      CR_BASE_OPTIONAL, 1, -1, p_multislerp),
    M("karcher", "Karcher Mean", "https://en.wikipedia.org/wiki/Karcher_mean", CR_BASE_UNUSED, 1, -1, p_karcher),
    M("task_arithmetic", "Task Arithmetic", "https://arxiv.org/abs/2212.04089", CR_BASE_REQUIRED, 1, -1,
      p_task_arithmetic),
    M("ties", "TIES", "https://arxiv.org/abs/2306.01708", CR_BASE_REQUIRED, 1, -1, p_ties),
    M("dare_ties", "DARE TIES", "https://arxiv.org/abs/2311.03099", CR_BASE_REQUIRED, 1, -1, p_dare_ties),
    M("dare_linear", "Linear DARE", "https://arxiv.org/abs/2311.03099", CR_BASE_REQUIRED, 1, -1, p_dare_linear),
    M("breadcrumbs", "Model Breadcrumbs", "https://arxiv.org/abs/2312.06795", CR_BASE_REQUIRED, 1, -1,
      p_breadcrumbs),
    M("breadcrumbs_ties", "Model Breadcrumbs with TIES", "https://arxiv.org/abs/2312.06795",
      CR_BASE_REQUIRED, 1, -1, p_breadcrumbs_ties),
    M("della", "DELLA", "https://arxiv.org/abs/2406.11617", CR_BASE_REQUIRED, 1, -1, p_della),
    M("della_linear", "Linear DELLA", "https://arxiv.org/abs/2406.11617", CR_BASE_REQUIRED, 1, -1, p_della_linear),
    M("sce", "SCE", "https://arxiv.org/abs/2408.07990", CR_BASE_REQUIRED, 0, -1, p_sce),
    M("ram", "Reinforced Agent Merging", "https://arxiv.org/abs/2601.13572", CR_BASE_REQUIRED, 0, -1, p_ram),
    M("ramplus_tl", "Reinforced Agent Merging Plus (Tensor-Local)", "https://arxiv.org/abs/2601.13572",
      CR_BASE_REQUIRED, 0, -1, p_ramplus),
    M("model_stock", "Model Stock", "https://arxiv.org/abs/2403.19522", CR_BASE_REQUIRED, 2, -1, p_model_stock),
    M("nearswap", "NearSwap", "https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001",
      CR_BASE_REQUIRED, 1, 1, p_nearswap),
    M0("arcee_fusion", "Arcee Fusion", "https://arcee.ai", CR_BASE_REQUIRED, 1, 1),
    M("passthrough", "Passthrough", NULL, CR_BASE_UNUSED, 1, 1, p_passthrough),
};

static const char *const method_names[] = {
    "linear", "slerp", "nuslerp", "multislerp", "karcher", "task_arithmetic", "ties",
    "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear",
    "sce", "ram", "ramplus_tl", "model_stock", "nearswap", "arcee_fusion", "passthrough",
};

_Static_assert(CR_ARRAY_LEN(methods) == CR_ARRAY_LEN(method_names), "method name list out of sync");

cr_status cr_methods_open(const cr_allocator *alloc, const char *user_dir,
                          cr_method_registry **out, cr_error *err)
{
    *out = NULL;
    if (user_dir)
        return cr_fail(err, CR_ERR_UNSUPPORTED,
                       "--methods %s: user method directories are not supported yet (Lua registry pending)",
                       user_dir);
    cr_method_registry *r = cr_malloc(alloc, sizeof *r);
    if (!r) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    r->alloc = alloc;
    *out = r;
    return CR_OK;
}

void cr_methods_close(cr_method_registry *r)
{
    if (r) cr_free(r->alloc, r);
}

const cr_method_info *cr_methods_find(cr_method_registry *r, const char *name,
                                      const char *relative_to, cr_error *err)
{
    (void)r;
    (void)relative_to;
    if (!strncmp(name, "lua:", 4)) {
        cr_fail(err, CR_ERR_UNSUPPORTED, "%s: Lua merge methods are not supported yet", name);
        return NULL;
    }
    for (size_t i = 0; i < CR_ARRAY_LEN(methods); i++)
        if (!strcmp(methods[i].name, name)) return &methods[i];
    cr_fail(err, CR_ERR_CONFIG, "unknown merge method '%s'", name);
    return NULL;
}

size_t cr_methods_builtin_names(const cr_method_registry *r, const char *const **names)
{
    (void)r;
    *names = method_names;
    return CR_ARRAY_LEN(method_names);
}

const cr_param_decl *cr_method_param(const cr_method_info *m, const char *name)
{
    for (uint32_t i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}
