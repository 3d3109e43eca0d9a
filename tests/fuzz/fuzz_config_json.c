/* fuzz_config_json.c — libFuzzer target: config.json reading and patching.
 *
 * Each input is written as config.json of a one-tensor model directory made
 * once, which is opened and queried with the getters the front end uses;
 * then the same text goes through cr_hf_patch_config with a layer count and
 * dtype taken from the input's first byte. Patched output must be parseable
 * by the getters again (written back and re-opened). See fuzz_common.h.
 */
#include "fuzz_common.h"
#include "hfdir.h"
#include "model.h"

static char *fuzz_cfg_dir, *fuzz_cfg_path;

static void fuzz_cfg_cleanup(void)
{
    fuzz_rmtree(fuzz_cfg_dir);
    free(fuzz_cfg_dir);
    free(fuzz_cfg_path);
    fuzz_cfg_dir = fuzz_cfg_path = NULL;
}

static bool fuzz_cfg_init(void)
{
    if (fuzz_cfg_dir) return true;
    fuzz_cfg_dir = fuzz_tmpdir("config");
    if (!fuzz_cfg_dir) return false;
    atexit(fuzz_cfg_cleanup);
    char *st = fuzz_join(fuzz_cfg_dir, "model.safetensors");
    fuzz_cfg_path = fuzz_join(fuzz_cfg_dir, "config.json");
    bool ok = st && fuzz_cfg_path &&
        fuzz_write_st(st, "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    free(st);
    return ok;
}

static void fuzz_cfg_query(const cr_model *m)
{
    static const char *const keys[] = {
        "num_hidden_layers", "text_config.num_hidden_layers", "hidden_size", "vocab_size",
        "model_type", "torch_dtype", "architectures", "a.b.c.d", "", ".", "..",
    };
    for (size_t i = 0; i < CR_ARRAY_LEN(keys); i++) {
        long long v;
        (void)cr_model_config_int(m, keys[i], &v);
        const char *s = cr_model_config_str(m, keys[i]);
        if (s) (void)strlen(s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fuzz_cfg_init()) abort();
    if (!fuzz_write_file(fuzz_cfg_path, data, size)) abort();
    cr_failing_allocator fa;
    fuzz_alloc_begin(&fa);
    cr_model m;
    cr_error err = {0};
    if (cr_model_open(&fa.base, fuzz_cfg_dir, CR_ST_HEADER_ONLY, &m, &err) == CR_OK) {
        fuzz_cfg_query(&m);
        cr_model_close(&m);
    } else {
        FUZZ_ASSERT(strstr(err.msg, "config.json"), "error does not name config.json: %s", err.msg);
    }
    fuzz_alloc_end(&fa, "cr_model_open");

    unsigned sel = size ? data[0] : 0;
    static const char *const layer_keys[] = { "num_hidden_layers", "text_config.num_hidden_layers",
                                              "n_layer", NULL };
    static const char *const dtypes[] = { "bfloat16", "float16", "float32", NULL };
    cr_hf_config_edit edit = {
        .dtype_name = dtypes[sel & 3],
        .layer_key = layer_keys[(sel >> 2) & 3],
        .n_layers = (long long)(sel >> 4) * 3,
        .dtype_key_only = size > 1 && (data[size - 1] & 1),   /* mergekit 0.1.5's one `dtype` key */
    };
    fuzz_alloc_begin(&fa);
    char *out = NULL;
    size_t out_len = 0;
    cr_status s = cr_hf_patch_config(&fa.base, (const char *)data, size, "donor/config.json", &edit,
                                     &out, &out_len, &err);
    if (s == CR_OK) {
        FUZZ_ASSERT(out && out_len == strlen(out), "patched text length");
        FUZZ_ASSERT(fuzz_write_file(fuzz_cfg_path, out, out_len), "write back");
        cr_free(&fa.base, out);
        cr_model m2;
        cr_error e2 = {0};
        FUZZ_ASSERT(cr_model_open(&fa.base, fuzz_cfg_dir, CR_ST_HEADER_ONLY, &m2, &e2) == CR_OK,
                    "patched config does not re-open: %s", e2.msg);
        cr_model_close(&m2);
    } else {
        FUZZ_ASSERT(out == NULL || s == CR_OK, "output on failure");
        FUZZ_ASSERT(strstr(err.msg, "donor/config.json") || s == CR_ERR_NOMEM,
                    "error does not name the donor: %s", err.msg);
    }
    fuzz_alloc_end(&fa, "cr_hf_patch_config");
    return 0;
}
