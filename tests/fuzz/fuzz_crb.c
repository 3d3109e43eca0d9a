/* fuzz_crb.c — libFuzzer target: the bytecode loader (cr_program_load,
 * which verifies). The input is a whole .crb file in a memfd. A program the
 * loader accepts is verified a second time (verify must be idempotent) and
 * freed; the allocator checks nothing leaks. See fuzz_common.h.
 */
#include "fuzz_common.h"
#include "program.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_memfd(data, size, path, sizeof path);
    if (fd < 0) return 0;
    cr_failing_allocator fa;
    fuzz_alloc_begin(&fa);
    cr_program p;
    cr_error err = {0};
    cr_status s = cr_program_load(&fa.base, path, &p, &err);
    if (s == CR_OK) {
        cr_error e2 = {0};
        FUZZ_ASSERT(cr_program_verify(&p, &e2) == CR_OK, "loaded program fails verify: %s", e2.msg);
        cr_program_free(&p);
    } else {
        FUZZ_ASSERT(err.msg[0], "error without a message (%s)", cr_status_name(s));
    }
    fuzz_alloc_end(&fa, "cr_program_load");
    close(fd);
    return 0;
}
