/* fuzz_gguf.c — libFuzzer target: the GGUF reader (formats/gguf_read.h).
 *
 * The input is a whole file, put in a memfd and opened. An accepted file
 * must be self-consistent: every value and every tensor's bytes lie inside
 * the file, offsets are packed in order, names are unique. Seeds:
 * tests/fuzz/make_gguf_seeds.py. See fuzz_common.h for the build modes.
 */
#include "fuzz_common.h"
#include "gguf_read.h"

static void fuzz_gguf_check(const cr_gguf_file *f)
{
    for (uint64_t i = 0; i < f->n_kv; i++) {
        FUZZ_ASSERT(f->kv[i].value_off <= f->size, "key %llu value past EOF", (unsigned long long)i);
        FUZZ_ASSERT(f->kv[i].key[0], "empty key");
    }
    uint64_t expect = f->data_start;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const cr_gguf_tensor_info *t = &f->tensors[i];
        FUZZ_ASSERT(t->offset == expect, "tensor %llu not packed", (unsigned long long)i);
        FUZZ_ASSERT(t->offset + t->nbytes <= f->size, "tensor %llu past EOF", (unsigned long long)i);
        FUZZ_ASSERT(cr_gguf_type_info(t->type, NULL, NULL), "tensor %llu type", (unsigned long long)i);
        for (uint64_t j = 0; j < i; j++) FUZZ_ASSERT(strcmp(f->tensors[j].name, t->name), "duplicate '%s'", t->name);
        if (t->nbytes) {
            volatile uint8_t x = f->map[t->offset];   /* ASan checks the first and last byte */
            x ^= f->map[t->offset + t->nbytes - 1];
            (void)x;
        }
        expect += (t->nbytes + f->alignment - 1) / f->alignment * f->alignment;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_memfd(data, size, path, sizeof path);
    if (fd < 0) return 0;
    cr_failing_allocator fa;
    fuzz_alloc_begin(&fa);
    cr_gguf_file f;
    cr_error err = {0};
    cr_status s = cr_gguf_open(&fa.base, path, &f, &err);
    if (s == CR_OK) {
        fuzz_gguf_check(&f);
        cr_gguf_close(&f);
    } else {
        FUZZ_ASSERT(err.msg[0] && strstr(err.msg, path), "error does not name the file: %s", err.msg);
    }
    fuzz_alloc_end(&fa, "cr_gguf_open");
    close(fd);
    return 0;
}
