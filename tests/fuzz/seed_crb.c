/* seed_crb.c — writes the fuzz_crb seed corpus: the reliability fixture
 * program (tests/support/rel_support.c) saved as .crb, plus truncated and
 * corrupted copies of it; with a second argument, also the end-to-end
 * fixture of tests/e2e/bad_inputs.sh: FIXTURE_DIR/{a,b}.safetensors and
 * FIXTURE_DIR/linear.crb reading them by that (relative) path. Run by hand
 * from the repository root when the .crb format changes:
 *   clang -D_GNU_SOURCE $(bash -c ". tools/layers.sh; layer_quotes tests") tests/fuzz/seed_crb.c tests/support/vm_build.c tests/support/rel_support.c \
 *     zig-out/lib/libcrucible.a -lyaml -llua5.4 -lcjson -lm -lpthread -o /tmp/seed_crb
 *   /tmp/seed_crb tests/fuzz/corpus/fuzz_crb tests/e2e/fixtures
 */
#include "support/rel_support.h"
#include "support/vm_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put(const char *dir, const char *name, const unsigned char *d, size_t n)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(d, 1, n, f) != n) { perror(p); exit(1); }
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) { fprintf(stderr, "usage: seed_crb OUTDIR [FIXTURE_DIR]\n"); return 2; }
    if (argc == 3) {
        cr_program f;
        char crb[1024];
        snprintf(crb, sizeof crb, "%s/linear.crb", argv[2]);
        cr_error err = {0};
        if (!rel_build_linear(&f, argv[2]) || cr_program_save(&f, crb, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
        cr_program_free(&f);
    }
    char *tmp = vb_tempdir();
    cr_program p;
    if (!rel_build_linear(&p, tmp)) return 1;
    char crb[1024];
    snprintf(crb, sizeof crb, "%s/p.crb", tmp);
    cr_error err = {0};
    if (cr_program_verify(&p, &err) || cr_program_save(&p, crb, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    size_t n;
    unsigned char *d = vb_read_file(crb, &n);
    put(argv[1], "linear.crb", d, n);
    put(argv[1], "truncated-half.crb", d, n / 2);
    put(argv[1], "truncated-16.crb", d, n < 16 ? n : 16);
    unsigned char *c = malloc(n);
    for (size_t at = 8; at < n; at += n / 7) {
        memcpy(c, d, n);
        c[at] ^= 0x5a;
        char name[64];
        snprintf(name, sizeof name, "flip-%zu.crb", at);
        put(argv[1], name, c, n);
    }
    free(c);
    free(d);
    cr_program_free(&p);
    vb_rmtree(tmp);
    free(tmp);
    return 0;
}
