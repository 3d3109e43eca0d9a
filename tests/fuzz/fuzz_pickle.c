/* fuzz_pickle.c — libFuzzer target: PyTorch .bin checkpoints (torchbin.h)
 * and the restricted unpickler under them (pickle.h).
 *
 * An input that starts like a zip ("PK") is read whole as a .bin file from
 * memory; any other input is a data.pkl stream on its own. Nothing in a
 * pickle is ever executed; an accepted input must give tensors whose bytes
 * lie inside the file (the first and last byte are touched, so ASan sees a
 * range that is not) and whose names look up. The corpus
 * (tests/fuzz/corpus/fuzz_pickle, make_pickle_seeds.py) holds the torch.save
 * fixtures, their truncations and the hostile pickles, every one of which
 * must be refused. See fuzz_common.h.
 */
#include "fuzz_common.h"
#include "pickle.h"
#include "torchbin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cr_failing_allocator fa;
    fuzz_alloc_begin(&fa);
    cr_error err = {0};
    if (size >= 2 && data[0] == 'P' && data[1] == 'K') {
        cr_st_file f;
        cr_status s = cr_torchbin_open_mem(&fa.base, "fuzz.bin", data, size, &f, &err);
        if (s == CR_OK) {
            for (uint32_t i = 0; i < f.n_tensors; i++) {
                const cr_st_tensor *t = &f.tensors[i];
                FUZZ_ASSERT(t->begin <= t->end && t->end <= size && t->ndim <= CR_MAX_DIMS, "tensor %u range", i);
                FUZZ_ASSERT(t->end - t->begin == t->numel * cr_dtype_size(t->dtype), "tensor %u size", i);
                FUZZ_ASSERT(cr_st_find(&f, t->name) == t, "lookup of '%s'", t->name);
                if (t->end > t->begin) {
                    volatile uint8_t x = data[t->begin];
                    x ^= data[t->end - 1];
                    (void)x;
                }
            }
            cr_st_close(&f);
        } else {
            FUZZ_ASSERT(err.msg[0], "error without a message (%s)", cr_status_name(s));
        }
    } else {
        cr_arena ar;
        cr_arena_init(&ar, &fa.base);
        cr_pickle_tensor *t;
        uint32_t n;
        cr_status s = cr_pickle_state_dict(&ar, data, size, "fuzz.pkl", &t, &n, &err);
        if (s == CR_OK) {
            for (uint32_t i = 0; i < n; i++)
                FUZZ_ASSERT(t[i].offset + t[i].numel <= t[i].storage_numel && t[i].ndim <= CR_MAX_DIMS,
                            "tensor %u outside its storage", i);
        } else {
            FUZZ_ASSERT(err.msg[0], "error without a message (%s)", cr_status_name(s));
        }
        cr_arena_free(&ar);
    }
    fuzz_alloc_end(&fa, "fuzz_pickle");
    return 0;
}
