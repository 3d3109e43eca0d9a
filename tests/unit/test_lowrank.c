/* test_lowrank.c — the LOWRANK / LOWRANK_T ops (vm/ops.def, spec/lora.md)
 * against a plain C reference, a float32 fmaf chain over k in order from
 * 0, on odd shapes (SIMD tails, rows longer and shorter than a chunk,
 * chunks that split rows), A and B in float32, bfloat16 and float16, plain
 * and transposed: every element bit for bit, with 1 and 3 threads and every
 * ISA this CPU runs. A program whose views do not make the domain is
 * refused by the loader. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "support/vm_build.h"
#include "dtype.h"
#include "kernels/kernels.h"
#include "safetensors.h"
#include "vm.h"

static char *g_dir;

static const char *path_in(const char *name)
{
    static char buf[8][512];
    static int at;
    char *p = buf[at++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", g_dir, name);
    return p;
}

/* values with every mantissa bit in play, exact in bf16 / f16 when asked */
static float val(uint64_t i, int salt, cr_dtype dt)
{
    float v = (float)(sin((double)i * 0.713 + salt) * (1.0 + (double)(i % 5) / 3.0));
    if (dt == CR_DTYPE_BF16) v = cr_round_bf16(v);
    if (dt == CR_DTYPE_F16) v = cr_round_f16(v);
    return v;
}

static void encode(cr_dtype dt, const float *x, uint64_t n, void *out)
{
    for (uint64_t i = 0; i < n; i++) {
        if (dt == CR_DTYPE_F32) memcpy((char *)out + 4 * i, &x[i], 4);
        else {
            uint16_t h = dt == CR_DTYPE_BF16 ? cr_f32_to_bf16(x[i]) : cr_f32_to_f16(x[i]);
            memcpy((char *)out + 2 * i, &h, 2);
        }
    }
}

typedef struct lr_case { uint64_t m, n, r; cr_dtype da, db; bool t; uint64_t chunk; } lr_case;

/* run one case; returns the number of differing elements (-1: failure) */
static int run_case(const lr_case *c, const char *isa, unsigned threads)
{
    uint64_t m = c->m, n = c->n, r = c->r;
    float *A = malloc(r * n * 4), *B = malloc(m * r * 4), *want = malloc(m * n * 4);
    void *ea = malloc(r * n * 4), *eb = malloc(m * r * 4);
    for (uint64_t i = 0; i < r * n; i++) A[i] = val(i, 1, c->da);
    for (uint64_t i = 0; i < m * r; i++) B[i] = val(i, 2, c->db);
    /* the reference: domain (i, j) of m x n, or of n x m transposed */
    uint64_t rows = c->t ? n : m, cols = c->t ? m : n;
    for (uint64_t i = 0; i < rows; i++)
        for (uint64_t j = 0; j < cols; j++) {
            float acc = 0;
            for (uint64_t k = 0; k < r; k++)
                acc = c->t ? fmaf(B[j * r + k], A[k * n + i], acc) : fmaf(B[i * r + k], A[k * n + j], acc);
            want[i * cols + j] = acc;
        }
    encode(c->da, A, r * n, ea);
    encode(c->db, B, m * r, eb);
    const char *names[] = { "A", "B" };
    cr_dtype dts[] = { c->da, c->db };
    uint64_t shape[][2] = { { r, n }, { m, r } }, off[2];
    const void *data[] = { ea, eb };
    uint64_t size = vb_write_safetensors(path_in("ab.safetensors"), 2, names, dts, shape, data, off);
    vm_builder b;
    vb_init(&b);
    uint32_t f = vb_file(&b, path_in("ab.safetensors"), size, 0);
    uint32_t ia = vb_input(&b, f, c->da, "A", off[0], r * n * cr_dtype_size(c->da), r, n, n);
    uint32_t ib = vb_input(&b, f, c->db, "B", off[1], m * r * cr_dtype_size(c->db), m, r, r);
    uint32_t o = vb_output(&b, "t.weight", CR_DTYPE_F32, rows, cols);
    vb_shard(&b, "model.safetensors");
    uint32_t k = vb_kernel_begin(&b, rows, cols, c->chunk, 1, 0);
    vb_k(&b, c->t ? CR_OP_LOWRANK_T : CR_OP_LOWRANK, CR_DTYPE_NONE, 0, ia, ib, 0);
    vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o, 0, 0, 0);
    vb_kernel_end(&b);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k, 0, 0);
    vb_m(&b, CR_OP_RELEASE, CR_DTYPE_NONE, 0, ia, 0, 0);
    vb_m(&b, CR_OP_RELEASE, CR_DTYPE_NONE, 0, ib, 0, 0);
    vb_m(&b, CR_OP_DONE, CR_DTYPE_NONE, o, 0, 0, 0);
    cr_program p;
    vb_build(&b, &p);
    cr_error err = {0};
    int bad = -1;
    if (cr_program_verify(&p, &err)) {
        fprintf(stderr, "verify: %s\n", err.msg);
    } else {
        cr_vm_options vo;
        cr_vm_options_init(&vo);
        char out[600];
        snprintf(out, sizeof out, "%s/out-%s-%u", g_dir, isa, threads);
        vo.out_dir = out;
        vo.quiet = true;
        vo.threads = threads;
        vo.isa = isa;
        vo.skip_hash = true;
        cr_st_file sf;
        if (cr_vm_run(&p, &vo, &err)) {
            fprintf(stderr, "run: %s\n", err.msg);
        } else {
            char mp[700];
            snprintf(mp, sizeof mp, "%s/model.safetensors", out);
            if (!cr_st_open(cr_default_allocator(), mp, 0, &sf, &err)) {
                const cr_st_tensor *t = cr_st_find(&sf, "t.weight");
                bad = t && t->numel == rows * cols ? 0 : -1;
                for (uint64_t e = 0; bad >= 0 && e < rows * cols; e++) {
                    float got;
                    memcpy(&got, (const char *)cr_st_data(&sf, t) + 4 * e, 4);
                    if (memcmp(&got, &want[e], 4) && bad++ < 3)
                        fprintf(stderr, "%s x%u %llux%llux%llu%s element %llu: want %a have %a\n", isa, threads,
                                (unsigned long long)m, (unsigned long long)n, (unsigned long long)r,
                                c->t ? " T" : "", (unsigned long long)e, want[e], got);
                }
                cr_st_close(&sf);
            }
        }
        vb_rmtree(out);
    }
    cr_program_free(&p);
    free(A); free(B); free(want); free(ea); free(eb);
    return bad;
}

static const lr_case cases[] = {
    { 5, 37, 3, CR_DTYPE_BF16, CR_DTYPE_BF16, false, 16 },
    { 19, 20, 1, CR_DTYPE_F32, CR_DTYPE_F32, false, 7 },
    { 33, 17, 16, CR_DTYPE_F32, CR_DTYPE_BF16, false, 100 },
    { 20, 67, 4, CR_DTYPE_F16, CR_DTYPE_F32, true, 13 },
    { 3, 70, 9, CR_DTYPE_BF16, CR_DTYPE_F32, true, 4096 },
    { 40, 41, 64, CR_DTYPE_F32, CR_DTYPE_F32, false, 333 },
};

TEST(matches_fma_chain_on_every_isa)
{
    static const char *const isas[] = { "scalar", "avx2", "avx512" };
    for (size_t ci = 0; ci < CR_ARRAY_LEN(cases); ci++)
        for (size_t i = 0; i < CR_ARRAY_LEN(isas); i++) {
            const cr_kernels *kern;
            cr_error err = {0};
            if (cr_kernels_pick(isas[i], &kern, &err)) continue;   /* this CPU lacks it */
            for (unsigned th = 1; th <= 3; th += 2) {
                int bad = run_case(&cases[ci], isas[i], th);
                CHECK_MSG(bad == 0, "case %zu on %s with %u threads: %d elements differ", ci, isas[i], th, bad);
            }
        }
}

TEST(loader_checks_the_shapes)
{
    /* B has 6 rows but the domain 5: refused before running */
    vm_builder b;
    vb_init(&b);
    uint32_t f = vb_file(&b, path_in("none.safetensors"), 1000, 0);
    uint32_t ia = vb_input(&b, f, CR_DTYPE_F32, "A", 8, 3 * 7 * 4, 3, 7, 7);
    uint32_t ib = vb_input(&b, f, CR_DTYPE_F32, "B", 200, 4 * 3 * 4, 4, 3, 3);
    uint32_t o = vb_output(&b, "t.weight", CR_DTYPE_F32, 5, 7);
    vb_shard(&b, "model.safetensors");
    uint32_t k = vb_kernel_begin(&b, 5, 7, 64, 1, 0);
    vb_k(&b, CR_OP_LOWRANK, CR_DTYPE_NONE, 0, ia, ib, 0);
    vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o, 0, 0, 0);
    vb_kernel_end(&b);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k, 0, 0);
    cr_program p;
    vb_build(&b, &p);
    cr_error err = {0};
    CHECK(cr_program_verify(&p, &err) == CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "(lowrank) in kernel 0: inputs A [3x7] and B [4x3] do not make a [5x7] domain");
    cr_program_free(&p);
}

/* tsan: runs threads; tools/sanitize.sh thread runs this test */
int main(void)
{
    g_dir = vb_tempdir();
    RUN(matches_fma_chain_on_every_isa);
    RUN(loader_checks_the_shapes);
    vb_rmtree(g_dir);
    free(g_dir);
    return cr_test_summary();
}
