/* test_moe_hfconfig.c — the config.json of each MoE writer under
 * --mergekit-version 0.1.5, compared byte for byte with what mergekit-moe
 * 0.1.5 (transformers 5.25) writes for the same base config, minus its
 * `transformers_version` line: tests/fixtures/moe_config/NAME.base.json
 * and NAME.WRITER-ExK.json (made by the writers' own _generate_config +
 * save_pretrained; tests/compat/check_moe.py checks whole runs). The bases
 * vary what transformers 5 rewrites: llama3 rope_scaling and rope_theta
 * (-> rope_parameters), no head_dim (computed), no dtype, PreTrainedConfig
 * defaults (dropped), `1e-5` (respelt 1e-05), a mistral base with a
 * sliding window and an int rope_theta, a qwen3 base with sliding layers,
 * a qwen2 base through Qwen2MoeConfig. Under 0.1.4 the base's keys and
 * order are kept. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "infile.h"
#include "limits.h"
#include "moe_hfconfig.h"

static const cr_allocator *AL;

static char *slurp(const char *path)
{
    char *t = NULL;
    size_t n;
    cr_error err = {0};
    if (cr_file_read(AL, path, CR_LIMIT_JSON_BYTES, "fixture", &t, &n, &err)) return NULL;
    return t;
}

/* the writer's config.json for fixture `name` under version v */
static char *run_s(const char *name, cr_moe_arch arch, cr_mk_version v, uint32_t E, uint32_t S, long long k,
                   cr_dtype dt)
{
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/moe_config/%s.base.json", name);
    char *text = slurp(path);
    cJSON *base = text ? cJSON_Parse(text) : NULL;
    const cJSON *I = base ? cJSON_GetObjectItemCaseSensitive(base, "intermediate_size") : NULL;
    cr_moe_hfconfig_in in = { .base = base, .base_text = text, .arch = arch, .mk_version = v, .n_experts = E,
                              .experts_per_token = k, .intermediate = I ? (uint32_t)I->valuedouble : 0,
                              .out_dtype = dt, .n_shared = S, .name_or_path = "base" };
    char *out = NULL;
    size_t len;
    cr_error err = {0};
    if (base && cr_moe_hfconfig(AL, &in, &out, &len, &err)) out = NULL;
    cJSON_Delete(base);
    cr_free(AL, text);
    return out;
}

static char *run(const char *name, cr_moe_arch arch, cr_mk_version v, uint32_t E, long long k, cr_dtype dt)
{
    return run_s(name, arch, v, E, 0, k, dt);
}

static void check_fixture_s(const char *name, const char *expect, cr_moe_arch arch, uint32_t E, uint32_t S,
                            long long k, cr_dtype dt)
{
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/moe_config/%s.%s.json", name, expect);
    char *want = slurp(path);
    char *got = run_s(name, arch, CR_MK_0_1_5, E, S, k, dt);
    CHECK_MSG(want && got, "%s: fixture or output missing", path);
    if (want && got && strcmp(want, got)) {
        /* the first differing line, for the log */
        size_t i = 0, line = 1;
        while (want[i] && want[i] == got[i]) line += want[i++] == '\n';
        CHECK_MSG(false, "%s: line %zu differs:\nwant: %.60s\ngot:  %.60s", path, line,
                  strrchr(want, '\n') ? want + i : want, got + i);
    }
    cr_free(AL, want);
    cr_free(AL, got);
}

static void check_fixture(const char *name, const char *expect, cr_moe_arch arch, uint32_t E, long long k,
                          cr_dtype dt)
{
    check_fixture_s(name, expect, arch, E, 0, k, dt);
}

TEST(v5_matches_mergekit)
{
    check_fixture("llama3", "mixtral-3x1", CR_MOE_ARCH_MIXTRAL, 3, 1, CR_DTYPE_NONE);
    check_fixture("mistral", "mixtral-4x2", CR_MOE_ARCH_MIXTRAL, 4, 2, CR_DTYPE_F32);
    check_fixture("qwen3", "qwen3-2x2", CR_MOE_ARCH_QWEN3, 2, 2, CR_DTYPE_NONE);
    check_fixture("qwen2", "qwen-2x2", CR_MOE_ARCH_QWEN2, 2, 2, CR_DTYPE_F32);
}

TEST(v4_keeps_the_base_layout)
{
    char *s = run("llama3", CR_MOE_ARCH_MIXTRAL, CR_MK_0_1_4, 3, 1, CR_DTYPE_BF16);
    REQUIRE(s);
    /* base order and spelling kept, keys appended, no transformers-5 rewrite */
    CHECK(strstr(s, "\"rope_scaling\": {") && strstr(s, "\"rope_theta\": 500000.0"));
    CHECK(strstr(s, "\"rms_norm_eps\": 1e-5,"));
    CHECK(!strstr(s, "rope_parameters") && !strstr(s, "\"dtype\""));
    CHECK(strstr(s, "\"torch_dtype\": \"bfloat16\""));
    CHECK(strstr(s, "\"num_local_experts\": 3") && strstr(s, "\"num_experts_per_tok\": 1"));
    CHECK(!strncmp(s, "{\n  \"architectures\": [\n    \"MixtralForCausalLM\"\n  ],\n  \"attention_bias\"", 68));
    CHECK(strstr(s, "\"num_local_experts\"") > strstr(s, "\"vocab_size\""));   /* appended */
    cr_free(AL, s);
    s = run("qwen3", CR_MOE_ARCH_QWEN3, CR_MK_0_1_4, 2, 2, CR_DTYPE_NONE);
    REQUIRE(s);
    CHECK(strstr(s, "\"Qwen3MoeForCausalLM\"") && strstr(s, "\"model_type\": \"qwen3_moe\""));
    CHECK(strstr(s, "\"num_experts\": 2") && strstr(s, "\"moe_intermediate_size\": 64"));
    CHECK(strstr(s, "\"norm_topk_prob\": true") && !strstr(s, "torch_dtype") && !strstr(s, "\"dtype\""));
    cr_free(AL, s);
}

/* DeepSeek: base_config.to_dict() + its keys, json.dump(indent=4), as
 * mergekit-moe 0.1.5 wrote for crucible synth llama (bf16, one shared
 * expert) and mistral (f32, none) bases and for the llama3 fixture; `_name_or_path` is the base_model
 * string (here "base") */
TEST(deepseek_v5_matches_mergekit)
{
    check_fixture_s("synth-llama", "deepseek-2x2s1", CR_MOE_ARCH_DEEPSEEK, 2, 1, 2, CR_DTYPE_BF16);
    check_fixture_s("synth-mistral", "deepseek-3x1", CR_MOE_ARCH_DEEPSEEK, 3, 0, 1, CR_DTYPE_F32);
    /* llama3 rope, no dtype (null), eos list, a key no class declares (after
     * model_type), the base's own _name_or_path / transformers_version
     * replaced: DeepseekMoE()._generate_config on the loaded base */
    check_fixture_s("llama3", "deepseek-3x1s1", CR_MOE_ARCH_DEEPSEEK, 3, 1, 1, CR_DTYPE_F16);
}

/* under 0.1.4 (transformers 4's to_dict) it is refused, not guessed */
TEST(deepseek_v4_refused)
{
    cJSON *o = cJSON_CreateObject();
    cr_moe_hfconfig_in in = { .base = o, .arch = CR_MOE_ARCH_DEEPSEEK, .mk_version = CR_MK_0_1_4 };
    char *t;
    size_t n;
    cr_error err = {0};
    CHECK_EQ_INT(cr_moe_hfconfig(AL, &in, &t, &n, &err), CR_ERR_UNSUPPORTED);
    cJSON_Delete(o);
}

int main(void)
{
    AL = cr_default_allocator();
    RUN(v5_matches_mergekit);
    RUN(v4_keeps_the_base_layout);
    RUN(deepseek_v5_matches_mergekit);
    RUN(deepseek_v4_refused);
    return cr_test_summary();
}
