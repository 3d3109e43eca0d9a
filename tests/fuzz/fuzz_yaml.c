/* fuzz_yaml.c — libFuzzer target: the whole YAML front end
 * (cr_frontend_yaml_text) on an in-memory recipe.
 *
 * Three tiny Mistral-layout models (mistral-base, mistral-ft-a,
 * mistral-ft-b; 4 layers, hidden 8) are synthesised once in a temporary
 * models directory; each input is compiled against it header-only, as
 * `plan` does. Whatever the input, the call must return with every
 * diagnostic carrying a message, and an accepted recipe yields a plan.
 * See fuzz_common.h.
 */
#include "fuzz_common.h"
#include "frontend.h"
#include "support/front_support.h"

static char *fuzz_yaml_dir, *fuzz_yaml_models, *fuzz_yaml_name;

static void fuzz_yaml_cleanup(void)
{
    fuzz_rmtree(fuzz_yaml_dir);
    free(fuzz_yaml_dir);
    free(fuzz_yaml_models);
    free(fuzz_yaml_name);
    fuzz_yaml_dir = fuzz_yaml_models = fuzz_yaml_name = NULL;
}

static bool fuzz_yaml_init(void)
{
    if (fuzz_yaml_dir) return true;
    fuzz_yaml_dir = fuzz_tmpdir("yaml");
    if (!fuzz_yaml_dir) return false;
    atexit(fuzz_yaml_cleanup);
    fuzz_yaml_models = fuzz_join(fuzz_yaml_dir, "models");
    fuzz_yaml_name = fuzz_join(fuzz_yaml_dir, "recipe.yml");
    if (!fuzz_yaml_models || !fuzz_yaml_name) return false;
    front_model_spec m = { .arch = "MistralForCausalLM", .layers = 4, .hidden = 8, .intermediate = 16,
                           .vocab = 32, .dtype = "BF16", .lm_head = true };
    bool ok = front_write_model(fuzz_yaml_models, "mistral-base", &m) &&
              front_write_model(fuzz_yaml_models, "mistral-ft-a", &m);
    m.dtype = "F32";
    ok = ok && front_write_model(fuzz_yaml_models, "mistral-ft-b", &m);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fuzz_yaml_init()) abort();
    cr_failing_allocator fa;
    fuzz_alloc_begin(&fa);
    cr_diags d;
    cr_diags_init(&d, &fa.base);
    cr_plan plan;
    cr_error err = {0};
    cr_frontend_options opt = { .models_dir = fuzz_yaml_models, .header_only = true, .no_env = true };
    cr_status s = cr_frontend_yaml_text(&fa.base, fuzz_yaml_name, (const char *)data, size, &opt,
                                        &plan, &d, &err);
    for (size_t i = 0; i < d.items.len; i++)
        FUZZ_ASSERT(CR_VEC_AT(&d.items, cr_diag, i).msg != NULL, "diagnostic %zu without a message", i);
    if (s == CR_OK) FUZZ_ASSERT(d.n_errors == 0, "CR_OK with %d errors", d.n_errors);
    else if (s == CR_ERR_CONFIG) FUZZ_ASSERT(d.n_errors > 0 || d.oom, "CR_ERR_CONFIG without a diagnostic");
    cr_plan_free(&plan);
    cr_diags_free(&d);
    fuzz_alloc_end(&fa, "cr_frontend_yaml_text");
    return 0;
}
