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
#include <dirent.h>
#include <string.h>
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
#define LLVMFuzzerTestOneInput fuzz_gguf_one
#include "fuzz/fuzz_gguf.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_pickle_one
#include "fuzz/fuzz_pickle.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_spm_one
#include "fuzz/fuzz_spm.c"
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

/* The targets this binary holds, with the least seeds each corpus must have. */
static const struct target { const char *name; cr_fuzz_fn fn; int min_seeds; } targets[] = {
    { "fuzz_safetensors", fuzz_safetensors_one, 10 },
    { "fuzz_index", fuzz_index_one, 5 },
    { "fuzz_config_json", fuzz_config_json_one, 5 },
    { "fuzz_yaml", fuzz_yaml_one, 10 },
    { "fuzz_crb", fuzz_crb_one, 3 },
    { "fuzz_lua", fuzz_lua_one, 20 },
    { "fuzz_gguf", fuzz_gguf_one, 20 },
    { "fuzz_pickle", fuzz_pickle_one, 50 },
    { "fuzz_spm", fuzz_spm_one, 10 },
};

static const struct target *find_target(const char *name, size_t len)
{
    for (size_t i = 0; i < CR_ARRAY_LEN(targets); i++)
        if (strlen(targets[i].name) == len && !strncmp(targets[i].name, name, len)) return &targets[i];
    return NULL;
}

TEST(replay_every_target)
{
    for (size_t i = 0; i < CR_ARRAY_LEN(targets); i++)
        replay_target(targets[i].name, targets[i].fn, targets[i].min_seeds);
}

/* tools/fuzz.sh builds every tests/fuzz/fuzz_*.c and every corpus folder
 * names a target: a new target or corpus left out of this file fails here */
TEST(every_target_is_replayed)
{
    static const char *const dirs[] = { "tests/fuzz", "tests/fuzz/corpus", "tests/fuzz/crashes" };
    int seen = 0;
    for (size_t k = 0; k < CR_ARRAY_LEN(dirs); k++) {
        DIR *d = opendir(dirs[k]);
        REQUIRE(d || k == 2);
        if (!d) continue;
        for (struct dirent *e; (e = readdir(d));) {
            size_t len = strlen(e->d_name);
            if (strncmp(e->d_name, "fuzz_", 5)) continue;
            if (k == 0 && (len < 3 || strcmp(e->d_name + len - 2, ".c"))) continue;
            if (k == 0) len -= 2;
            CHECK_MSG(find_target(e->d_name, len) != NULL, "%s/%s: not replayed by test_fuzz_replay.c",
                      dirs[k], e->d_name);
            seen += k == 0;
        }
        closedir(d);
    }
    CHECK_EQ_INT(seen, (int)CR_ARRAY_LEN(targets));
}

int main(void)
{
    RUN(replay_every_target);
    RUN(every_target_is_replayed);
    return cr_test_summary();
}
