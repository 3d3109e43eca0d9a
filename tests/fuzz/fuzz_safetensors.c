/* fuzz_safetensors.c — libFuzzer target: the safetensors header parser.
 *
 * The input is a whole file, put in a memfd and opened both fully (mmapped,
 * data checked to end at EOF) and header-only. Any accepted file must be
 * self-consistent: every tensor's bytes lie inside the file and lookups by
 * name find it. See fuzz_common.h for the build modes.
 */
#include "fuzz_common.h"
#include "safetensors.h"

static void fuzz_st_check(const cr_st_file *f, bool header_only)
{
    for (uint32_t i = 0; i < f->n_tensors; i++) {
        const cr_st_tensor *t = &f->tensors[i];
        FUZZ_ASSERT(t->end >= t->begin && t->ndim <= CR_MAX_DIMS, "tensor %u", i);
        FUZZ_ASSERT(header_only || f->data_start + t->end <= f->file_size, "tensor %u past EOF", i);
        FUZZ_ASSERT(cr_st_find(f, t->name) == t, "lookup of '%s'", t->name);
        const uint8_t *d = cr_st_data(f, t);
        if (!header_only && t->end > t->begin) {
            volatile uint8_t x = d[0];   /* ASan checks the first and last byte */
            x ^= d[t->end - t->begin - 1];
            (void)x;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_memfd(data, size, path, sizeof path);
    if (fd < 0) return 0;
    for (int mode = 0; mode < 2; mode++) {
        cr_failing_allocator fa;
        fuzz_alloc_begin(&fa);
        cr_st_file f;
        cr_error err = {0};
        unsigned flags = mode ? CR_ST_HEADER_ONLY : 0;
        cr_status s = cr_st_open(&fa.base, path, flags, &f, &err);
        if (s == CR_OK) {
            fuzz_st_check(&f, mode == 1);
            cr_st_close(&f);
        } else {
            FUZZ_ASSERT(err.msg[0] && strstr(err.msg, path), "error does not name the file: %s", err.msg);
        }
        fuzz_alloc_end(&fa, "cr_st_open");
    }
    close(fd);
    return 0;
}
