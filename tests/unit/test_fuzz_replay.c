/* test_fuzz_replay.c — replays every committed fuzz input (the seed corpora
 * in tests/fuzz/corpus/TARGET and the fixed crashes in
 * tests/fuzz/crashes/TARGET) through the fuzz targets, built with the normal
 * compiler and no libFuzzer. Each target file is included with its entry
 * point renamed, so this one binary holds them all and `zig build test`
 * needs no extra build step; under -Dsanitize it runs with ASan/UBSan.
 * A crashing input aborts the binary (reported by tests/run.sh); a leak
 * through the allocator hook aborts with the target's message. Runs from
 * the repository root (as tests/run.sh does).
 */
#include "harness.h"

#define CR_REPLAY_NO_MAIN
#include "fuzz/replay.c"

#define LLVMFuzzerTestOneInput fuzz_safetensors_one
#include "fuzz/fuzz_safetensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_index_one
#include "fuzz/fuzz_index.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_config_json_one
#include "fuzz/fuzz_config_json.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_yaml_one
#include "fuzz/fuzz_yaml.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_crb_one
#include "fuzz/fuzz_crb.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_lua_one
#include "fuzz/fuzz_lua.c"
#undef LLVMFuzzerTestOneInput

/* replay corpus + crashes of one target; at least `min_seeds` corpus files */
static void replay_target(const char *name, cr_fuzz_fn fn, int min_seeds)
{
    char dir[256];
    int n = 0;
    snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", name);
    CHECK_MSG(cr_fuzz_replay_path(fn, dir, &n) == 0, "%s unreadable", dir);
    CHECK_MSG(n >= min_seeds, "%s: %d seeds, expected at least %d", dir, n, min_seeds);
    snprintf(dir, sizeof dir, "tests/fuzz/crashes/%s", name);
    struct stat st;
    int n_crash = 0;
    if (!stat(dir, &st)) CHECK_MSG(cr_fuzz_replay_path(fn, dir, &n_crash) == 0, "%s unreadable", dir);
    printf("%-18s %d seeds, %d fixed crashes replayed\n", name, n, n_crash);
}

TEST(safetensors) { replay_target("fuzz_safetensors", fuzz_safetensors_one, 10); }
TEST(index) { replay_target("fuzz_index", fuzz_index_one, 5); }
TEST(config_json) { replay_target("fuzz_config_json", fuzz_config_json_one, 5); }
TEST(yaml) { replay_target("fuzz_yaml", fuzz_yaml_one, 10); }
TEST(crb) { replay_target("fuzz_crb", fuzz_crb_one, 3); }
TEST(lua) { replay_target("fuzz_lua", fuzz_lua_one, 20); }

int main(void)
{
    RUN(safetensors);
    RUN(index);
    RUN(config_json);
    RUN(yaml);
    RUN(crb);
    RUN(lua);
    return cr_test_summary();
}
