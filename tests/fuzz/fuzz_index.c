/* fuzz_index.c — libFuzzer target: model.safetensors.index.json reading.
 *
 * A model directory with two small shards (tensors a, b in
 * model-00001-of-00002.safetensors; c in model-00002-of-00002.safetensors)
 * is made once; each input is written as its index.json and the directory is
 * opened fully and header-only. An accepted index must map every tensor to
 * a shard that holds it. See fuzz_common.h.
 */
#include "fuzz_common.h"
#include "model.h"

static char *fuzz_index_dir, *fuzz_index_path;

static void fuzz_index_cleanup(void)
{
    fuzz_rmtree(fuzz_index_dir);
    free(fuzz_index_dir);
    free(fuzz_index_path);
    fuzz_index_dir = fuzz_index_path = NULL;
}

static bool fuzz_index_init(void)
{
    if (fuzz_index_dir) return true;
    fuzz_index_dir = fuzz_tmpdir("index");
    if (!fuzz_index_dir) return false;
    atexit(fuzz_index_cleanup);
    char *s1 = fuzz_join(fuzz_index_dir, "model-00001-of-00002.safetensors");
    char *s2 = fuzz_join(fuzz_index_dir, "model-00002-of-00002.safetensors");
    char *cfg = fuzz_join(fuzz_index_dir, "config.json");
    fuzz_index_path = fuzz_join(fuzz_index_dir, "model.safetensors.index.json");
    bool ok = s1 && s2 && cfg && fuzz_index_path &&
        fuzz_write_st(s1, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[8,16]}}", 16) &&
        fuzz_write_st(s2, "{\"__metadata__\":{\"format\":\"pt\"},"
                          "\"c\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2) &&
        fuzz_write_file(cfg, "{\"architectures\":[\"LlamaForCausalLM\"]}", 38);
    free(s1); free(s2); free(cfg);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fuzz_index_init()) abort();
    if (!fuzz_write_file(fuzz_index_path, data, size)) abort();
    for (int mode = 0; mode < 2; mode++) {
        cr_failing_allocator fa;
        fuzz_alloc_begin(&fa);
        cr_model m;
        cr_error err = {0};
        cr_status s = cr_model_open(&fa.base, fuzz_index_dir, mode ? CR_ST_HEADER_ONLY : 0, &m, &err);
        if (s == CR_OK) {
            for (uint32_t i = 0; i < m.n_tensors; i++) {
                const cr_model_tensor *t = &m.tensors[i];
                FUZZ_ASSERT(t->shard < m.n_shards, "tensor %u shard %u", i, t->shard);
                FUZZ_ASSERT(cr_model_find(&m, t->info->name) != NULL, "lookup of '%s'", t->info->name);
            }
            cr_model_close(&m);
        } else {
            FUZZ_ASSERT(err.msg[0], "error without a message (%s)", cr_status_name(s));
        }
        fuzz_alloc_end(&fa, "cr_model_open");
    }
    return 0;
}
