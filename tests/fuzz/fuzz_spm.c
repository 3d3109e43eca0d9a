/* fuzz_spm.c — libFuzzer target: the SentencePiece model reader
 * (formats/spm_model.h), which `convert` and `merge … OUT.gguf` run on a
 * model's tokenizer.model.
 *
 * An accepted model must be self-consistent: at least one piece, every
 * piece's text non-empty and NUL-terminated inside its storage, a known
 * type, exactly one unknown piece. Seeds: tests/fuzz/corpus/fuzz_spm (the
 * golden tests' tokenizer.model, a hand-made minimal model, truncations).
 * See fuzz_common.h for the build modes.
 */
#include "fuzz_common.h"
#include "spm_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cr_failing_allocator fa;
    fuzz_alloc_begin(&fa);
    cr_spm_model m;
    cr_error err = {0};
    cr_status s = cr_spm_parse(&fa.base, data, size, "fuzz.model", &m, &err);
    if (s == CR_OK) {
        FUZZ_ASSERT(m.n_pieces > 0, "no pieces accepted");
        uint32_t n_unk = 0;
        for (uint32_t i = 0; i < m.n_pieces; i++) {
            FUZZ_ASSERT(m.pieces[i].text[0], "piece %u empty", i);
            FUZZ_ASSERT(m.pieces[i].type >= CR_SPM_NORMAL && m.pieces[i].type <= CR_SPM_BYTE, "piece %u type", i);
            n_unk += m.pieces[i].type == CR_SPM_UNKNOWN;
            volatile size_t n = strlen(m.pieces[i].text);   /* ASan checks the terminator */
            (void)n;
        }
        FUZZ_ASSERT(n_unk == 1, "%u unknown pieces", n_unk);
        cr_spm_free(&m);
    } else {
        FUZZ_ASSERT(err.msg[0] && strstr(err.msg, "fuzz.model"), "error does not name the file: %s", err.msg);
    }
    fuzz_alloc_end(&fa, "cr_spm_parse");
    return 0;
}
