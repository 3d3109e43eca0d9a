/* rel_support.c — the reliability tests' fixture program (rel_support.h),
 * built with tests/support/vm_build so it needs no compiler. */
#include "rel_support.h"
#include "vm_build.h"

#include <math.h>
#include <stdio.h>

bool rel_build_linear(cr_program *p, const char *dir)
{
    enum { R = 3, C = 37 };
    static uint16_t a[R * C], b[R * C];
    static float na[5], nb[5];
    for (int i = 0; i < R * C; i++) {
        float fa = sinf((float)i * 0.37f) * 3.0f, fb = cosf((float)i * 0.11f) - 0.25f;
        uint32_t ua, ub;
        memcpy(&ua, &fa, 4);
        memcpy(&ub, &fb, 4);
        a[i] = (uint16_t)(ua >> 16);
        b[i] = (uint16_t)(ub >> 16);
    }
    for (int i = 0; i < 5; i++) { na[i] = (float)i; nb[i] = 1.0f - (float)i; }
    char pa[1024], pb[1024];
    snprintf(pa, sizeof pa, "%s/a.safetensors", dir);
    snprintf(pb, sizeof pb, "%s/b.safetensors", dir);
    const char *names[] = { "n", "w" };
    cr_dtype dt[] = { CR_DTYPE_F32, CR_DTYPE_BF16 };
    uint64_t shape[][2] = { { 0, 5 }, { R, C } }, offa[2], offb[2];
    const void *da[] = { na, a }, *db[] = { nb, b };
    uint64_t sa = vb_write_safetensors(pa, 2, names, dt, shape, da, offa);
    uint64_t sb = vb_write_safetensors(pb, 2, names, dt, shape, db, offb);
    if (!sa || !sb) return false;
    vm_builder v;
    vb_init(&v);
    uint32_t fa = vb_file(&v, pa, sa, 0), fb = vb_file(&v, pb, sb, 0);
    uint32_t iwa = vb_input(&v, fa, CR_DTYPE_BF16, "w", offa[1], R * C * 2, R, C, C);
    uint32_t iwb = vb_input(&v, fb, CR_DTYPE_BF16, "w", offb[1], R * C * 2, R, C, C);
    uint32_t ina = vb_input(&v, fa, CR_DTYPE_F32, "n", offa[0], 20, 1, 5, 5);
    uint32_t inb = vb_input(&v, fb, CR_DTYPE_F32, "n", offb[0], 20, 1, 5, 5);
    uint32_t on = vb_output(&v, "n", CR_DTYPE_F32, 0, 5);
    uint32_t ow = vb_output(&v, "w", CR_DTYPE_BF16, R, C);
    vb_shard(&v, "model.safetensors");
    uint32_t w1 = vb_scalar(&v, 0.3), w2 = vb_scalar(&v, 0.7);
    uint32_t k[2];
    const uint32_t in_a[2] = { iwa, ina }, in_b[2] = { iwb, inb }, outs[2] = { ow, on };
    const uint64_t rows[2] = { R, 1 }, cols[2] = { C, 5 };
    const cr_dtype kdt[2] = { CR_DTYPE_BF16, CR_DTYPE_F32 };
    for (int j = 0; j < 2; j++) {
        k[j] = vb_kernel_begin(&v, rows[j], cols[j], 16, 4, 0);
        vb_k(&v, CR_OP_LOAD, CR_DTYPE_NONE, 0, in_a[j], 0, 0);
        vb_k(&v, CR_OP_LOAD, CR_DTYPE_NONE, 1, in_b[j], 0, 0);
        vb_k(&v, CR_OP_SPLAT, CR_DTYPE_NONE, 2, w1, 0, 0);
        vb_k(&v, CR_OP_SPLAT, CR_DTYPE_NONE, 3, w2, 0, 0);
        vb_k(&v, CR_OP_MUL, kdt[j], 0, 0, 2, 0);
        vb_k(&v, CR_OP_MUL, kdt[j], 1, 1, 3, 0);
        vb_k(&v, CR_OP_ADD, kdt[j], 0, 0, 1, 0);
        vb_k(&v, CR_OP_STORE, CR_DTYPE_NONE, outs[j], 0, 0, 0);
        vb_kernel_end(&v);
    }
    for (int j = 0; j < 2; j++) {
        vb_m(&v, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k[j], 0, 0);
        vb_m(&v, CR_OP_DONE, CR_DTYPE_NONE, outs[j], 0, 0, 0);
    }
    vb_aux_write(&v, "config.json", "{\"torch_dtype\": \"bfloat16\"}\n");
    vb_aux_copy(&v, "a-copy.safetensors", fa);
    vb_build(&v, p);
    return true;
}
