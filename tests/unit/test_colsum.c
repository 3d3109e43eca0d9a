/* test_colsum.c — per-column values (CR_VK_COLS) end to end.
 *
 * vm/refsum.c's per-column sums agree to the bit with torch 2.15 (CPU,
 * AVX2) on fixed matrices: x.sum(dim=0) and torch.norm(x, dim=0) of
 * x[r][c] = sin(0.37 e) (1 + e mod 7) / 8, e = r * cols + c, printed by
 * torch. A plain C reference of torch's outer reduction (the structure of
 * SumKernel.cpp, one whole column at a time) must give the same bits, and
 * the streamed state must equal it whatever the pieces it is fed in. Then
 * a method using torch_col_sum / torch_col_norm / col_sum / col_norm /
 * col_dot and sin of a column vector runs through the compiler and the VM
 * on odd shapes (7x13, 1x5, 17x1, 37x41) with 1, 2 and 4 threads and small
 * chunks (partial rows), and once streamed under a small --max-memory, and
 * must match the reference element for element. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "harness.h"
#include "support/vm_build.h"
#include "support/graph_fixtures.h"
#include "dtype.h"
#include "compile.h"
#include "emit.h"
#include "layout.h"
#include "memplan.h"
#include "passes.h"
#include "refsum.h"
#include "safetensors.h"
#include "vm.h"

typedef struct col_ref { uint64_t rows, cols; const uint32_t *sum, *norm; } col_ref;

static const uint32_t sum_37x41[] = {
    0x3f89dfdf, 0xbfb336d1, 0x3fcbf166, 0xbf805c28, 0x3fd8f89f, 0xbedbb604, 0x3fc12610,
    0xbf06726e, 0x3f9824ea, 0xbf82f6ee, 0x3f21f776, 0xbf6dc682, 0xbe5ca312, 0xbf529d02,
    0xbe3af020, 0xbf1fe419, 0x3e191e12, 0xbd995e5c, 0xbde75c10, 0x3f4bd012, 0xbddc56f4,
    0x3f560dbe, 0xbdff7684, 0x3f44b989, 0xbf014f9c, 0x3f8f84c2, 0xbf920181, 0x3f80c3ab,
    0xbf9ef0b9, 0x3f5648f0, 0xbfbab038, 0x3f6f6fe6, 0xbfe601cb, 0x3f92cc23, 0xbfcd9047,
    0x3fa3b593, 0xbfa689c0, 0x3fdba3a2, 0xbf8b455a, 0x3ff8456b, 0xbf50179e
};
static const uint32_t norm_37x41[] = {
    0x40184437, 0x4015c72d, 0x401680a2, 0x4018cfa0, 0x401cd5d9, 0x40210ff4, 0x4022fb70,
    0x401d6d44, 0x401599c2, 0x4015a239, 0x401671b2, 0x40196653, 0x401ef100, 0x402562ab,
    0x401fc0bf, 0x401614f9, 0x401652d6, 0x40162070, 0x40168ba1, 0x401991d6, 0x4020475d,
    0x401cce39, 0x4016b0d9, 0x4017cddc, 0x4018375c, 0x40177c24, 0x4016d3d9, 0x4018f935,
    0x4017affc, 0x4016c293, 0x4018730a, 0x401a6291, 0x401b25fe, 0x4019de11, 0x4017a918,
    0x40160ff3, 0x401636cd, 0x40178f66, 0x401a47c6, 0x401d7aea, 0x401f336a
};
static const uint32_t sum_100x3[] = {
    0x3f25f180, 0x3e6e9f50, 0x3f9dd89c
};
static const uint32_t norm_100x3[] = {
    0x407bea9f, 0x407ed813, 0x408020c4
};
static const uint32_t sum_70x40[] = {
    0xbe3c5f34, 0x3dbcc5a0, 0x3ecd2cde, 0x3e3152fc, 0xbe3cb168, 0xbe30fcf0, 0xbdb3e8e0,
    0x3d8c92b0, 0xbd88f7f9, 0xbe945bd8, 0xbe9639b0, 0xbe0d3fc0, 0xbb086d00, 0x3d8e53c8,
    0x3d894b80, 0x3cb226c8, 0x3dbe2510, 0x3ea73aaa, 0x3ed6a5b2, 0x3e349e94, 0xbcfa1c78,
    0xbe3b3830, 0x3cf46a50, 0x3e06c5d4, 0xbe86a12f, 0xbf138032, 0xbe98c41d, 0xbc8f45e0,
    0x3e7a4224, 0xbd949efc, 0xbea25232, 0x3df862f4, 0x3f0fed34, 0x3ea9e8c2, 0x3d771470,
    0xbe6f10fe, 0x3dc00de4, 0x3ed11bb7, 0x3d66d800, 0xbec35282
};
static const uint32_t norm_70x40[] = {
    0x4075270c, 0x40779664, 0x407c00f2, 0x407d1d21, 0x407f9305, 0x407d87ae, 0x407b4444,
    0x407a0dac, 0x4075bfe1, 0x40724b0e, 0x406d3d74, 0x40690413, 0x4063cfa3, 0x405cf4eb,
    0x40554346, 0x404dcf36, 0x40448beb, 0x403d6f27, 0x403539e2, 0x40321ada, 0x402d7790,
    0x40266517, 0x40245531, 0x401f2931, 0x401eff94, 0x401c9a11, 0x4020f882, 0x4025e26b,
    0x402962da, 0x4030a2dd, 0x4036cf08, 0x403e0be1, 0x4044289b, 0x404a1d7c, 0x405197a9,
    0x4059b1ce, 0x40605a81, 0x4068654a, 0x406dae5a, 0x4073ac60
};
static const col_ref col_refs[] = {
    { 37, 41, sum_37x41, norm_37x41 },
    { 100, 3, sum_100x3, norm_100x3 },
    { 70, 40, sum_70x40, norm_70x40 },
};

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static float fillv(uint64_t e) { return (float)(sin((double)e * 0.37) * (double)(1 + e % 7) / 8.0); }

/* ---- the reference: torch's outer reduction, one column at a time -------- */

static unsigned clog2(uint64_t x)
{
    unsigned r = 0;
    while (((uint64_t)1 << r) < x) r++;
    return r;
}

/* multi_row_sum over `size` rows of `lanes` values; lane k of row i is
 * x[(i * lanes + k) * stride] */
static void ref_multi_row_sum(const float *x, uint64_t stride, unsigned lanes, uint64_t size, float *res)
{
    unsigned lp = clog2(size) / 4;
    if (lp < 4) lp = 4;
    uint64_t step = (uint64_t)1 << lp, mask = step - 1;
    float acc[4][4] = {{0}};
    uint64_t i = 0;
    while (i + step <= size) {
        for (uint64_t j = 0; j < step; j++, i++)
            for (unsigned k = 0; k < lanes; k++) acc[0][k] += x[(i * lanes + k) * stride];
        for (unsigned j = 1; j < 4; j++) {
            for (unsigned k = 0; k < lanes; k++) { acc[j][k] += acc[j - 1][k]; acc[j - 1][k] = 0; }
            if (i & (mask << (j * lp))) break;
        }
    }
    for (; i < size; i++)
        for (unsigned k = 0; k < lanes; k++) acc[0][k] += x[(i * lanes + k) * stride];
    for (unsigned j = 1; j < 4; j++)
        for (unsigned k = 0; k < lanes; k++) acc[0][k] += acc[j][k];
    for (unsigned k = 0; k < lanes; k++) res[k] = acc[0][k];
}

/* x.sum(dim=0)[c]: whole 32-column groups (4 under 8 columns) one chain,
 * the rest row_sum's four interleaved chains */
static float ref_col_sum(const float *m, uint64_t rows, uint64_t cols, uint64_t c)
{
    const float *x = m + c;
    uint64_t chained = cols >= 8 ? cols / 32 * 32 : cols / 4 * 4;
    float r[4];
    if (c < chained) {
        ref_multi_row_sum(x, cols, 1, rows, r);
        return r[0];
    }
    ref_multi_row_sum(x, cols, 4, rows / 4, r);
    for (uint64_t i = rows / 4 * 4; i < rows; i++) r[0] += x[i * cols];
    for (unsigned k = 1; k < 4; k++) r[0] += r[k];
    return r[0];
}

static float ref_col_ssq(const float *m, uint64_t rows, uint64_t cols, uint64_t c)
{
    float a = 0;
    for (uint64_t r = 0; r < rows; r++) {
        float p = m[r * cols + c] * m[r * cols + c];
        a += p;
    }
    return a;
}

static double ref_col_wide(const float *m, uint64_t rows, uint64_t cols, uint64_t c)
{
    double a = 0;
    for (uint64_t r = 0; r < rows; r++) a += (double)m[r * cols + c];
    return a;
}

/* feed s the matrix in pieces of `piece` elements (0: all at once) */
static void feed(cr_colsum *s, const float *m, uint64_t n, uint64_t piece)
{
    if (!piece) piece = n ? n : 1;
    for (uint64_t e = 0; e < n; e += piece) cr_colsum_add(s, m + e, n - e < piece ? n - e : piece);
}

TEST(torch_bits_on_fixed_matrices)
{
    for (size_t t = 0; t < CR_ARRAY_LEN(col_refs); t++) {
        const col_ref *cr = &col_refs[t];
        uint64_t n = cr->rows * cr->cols;
        float *m = malloc(n * sizeof *m);
        double *out = malloc(cr->cols * sizeof *out);
        void *st = malloc(cr_colsum_state_bytes(CR_COLSUM_TORCH, cr->cols));
        REQUIRE(m && out && st);
        for (uint64_t e = 0; e < n; e++) m[e] = fillv(e);
        int bad_ref = 0, bad_sum = 0, bad_norm = 0;
        for (uint64_t c = 0; c < cr->cols; c++) {
            bad_ref += bits(ref_col_sum(m, cr->rows, cr->cols, c)) != cr->sum[c];
            bad_ref += bits(sqrtf(ref_col_ssq(m, cr->rows, cr->cols, c))) != cr->norm[c];
        }
        cr_colsum s;
        cr_colsum_init(&s, CR_COLSUM_TORCH, cr->rows, cr->cols, st);
        feed(&s, m, n, 7);
        cr_colsum_finish(&s, out);
        for (uint64_t c = 0; c < cr->cols; c++) bad_sum += bits((float)out[c]) != cr->sum[c];
        cr_colsum_init(&s, CR_COLSUM_TORCH_SSQ, cr->rows, cr->cols, st);
        feed(&s, m, n, 0);
        cr_colsum_finish(&s, out);
        for (uint64_t c = 0; c < cr->cols; c++) bad_norm += bits(sqrtf((float)out[c])) != cr->norm[c];
        CHECK_MSG(bad_ref == 0, "%llux%llu: C reference differs from torch in %d values",
                  (unsigned long long)cr->rows, (unsigned long long)cr->cols, bad_ref);
        CHECK_MSG(bad_sum == 0 && bad_norm == 0, "%llux%llu: %d sums, %d norms differ from torch",
                  (unsigned long long)cr->rows, (unsigned long long)cr->cols, bad_sum, bad_norm);
        /* and the wide f64 sum is a different order: it must differ somewhere */
        cr_colsum_init(&s, CR_COLSUM_WIDE, cr->rows, cr->cols, st);
        feed(&s, m, n, 0);
        cr_colsum_finish(&s, out);
        int differ = 0;
        for (uint64_t c = 0; c < cr->cols; c++) differ += bits((float)out[c]) != cr->sum[c];
        CHECK(cr->cols < 8 || differ > 0);
        free(m); free(out); free(st);
    }
}

TEST(streamed_state_equals_reference_on_odd_shapes)
{
    static const uint64_t shapes[][2] = { {7, 13}, {1, 5}, {17, 1}, {2, 9}, {33, 33}, {40, 8}, {100, 3},
                                          {300, 70}, {5, 2}, {65, 100} };
    for (size_t si = 0; si < CR_ARRAY_LEN(shapes); si++) {
        uint64_t rows = shapes[si][0], cols = shapes[si][1], n = rows * cols;
        float *m = malloc(n * sizeof *m);
        double *out = malloc(cols * sizeof *out);
        void *st = malloc(cr_colsum_state_bytes(CR_COLSUM_TORCH, cols));
        REQUIRE(m && out && st);
        for (uint64_t e = 0; e < n; e++) m[e] = fillv(e * 3 + si) * (float)(1 + (e % 5));
        const uint64_t pieces[] = { 0, 1, 3, cols, 7 * cols + 5, 16 };
        int bad = 0;
        for (size_t pi = 0; pi < CR_ARRAY_LEN(pieces); pi++) {
            for (int kind = CR_COLSUM_WIDE; kind <= CR_COLSUM_TORCH_SSQ; kind++) {
                cr_colsum s;
                cr_colsum_init(&s, (cr_colsum_kind)kind, rows, cols, st);
                feed(&s, m, n, pieces[pi]);
                cr_colsum_finish(&s, out);
                for (uint64_t c = 0; c < cols; c++) {
                    double want = kind == CR_COLSUM_WIDE ? ref_col_wide(m, rows, cols, c)
                                : kind == CR_COLSUM_TORCH ? (double)ref_col_sum(m, rows, cols, c)
                                : (double)ref_col_ssq(m, rows, cols, c);
                    if (want != out[c] && bad++ < 4)
                        fprintf(stderr, "%llux%llu kind %d piece %llu col %llu: want %.9g have %.9g\n",
                                (unsigned long long)rows, (unsigned long long)cols, kind,
                                (unsigned long long)pieces[pi], (unsigned long long)c, want, out[c]);
                }
            }
        }
        CHECK_EQ_INT(bad, 0);
        free(m); free(out); free(st);
    }
}

/* ---- through the compiler and the VM ----------------------------------- */

static char tmpdir[256];

static const char *col_body =
    "local x, y = ctx.inputs[1], ctx.inputs[2]\n"
    "local a = x * cr.const(0.1, 'float32') + y * cr.const(0.37, 'float32')\n"
    "local b = y * cr.const(0.3, 'float32') - x * cr.const(0.07, 'float32')\n"
    "local ts, tn = cr.torch_col_sum(a * b), cr.torch_col_norm(a)\n"
    "local cs, wn, cd = a:col_sum(), b:col_norm(), cr.col_dot(a, b)\n"
    "return a * ts + b * tn + cs * cr.const(0.5, 'float32') + cr.sin(ts) * wn - cd";

/* the same arithmetic in C, float by float (no contraction: one operation
 * a statement) */
static float *col_reference(uint64_t rows, uint64_t cols)
{
    uint64_t n = rows * cols;
    float *a = malloc(n * 4), *b = malloc(n * 4), *p = malloc(n * 4), *q = malloc(n * 4), *out = malloc(n * 4);
    float *ts = malloc(cols * 4), *tn = malloc(cols * 4), *cs = malloc(cols * 4), *wn = malloc(cols * 4),
          *cd = malloc(cols * 4), *col = malloc(rows * 4);
    for (uint64_t e = 0; e < n; e++) {
        float x = cr_test_pattern(0, e), y = cr_test_pattern(1, e);
        float x1 = x * 0.1f, y1 = y * 0.37f, y2 = y * 0.3f, x2 = x * 0.07f;
        a[e] = x1 + y1;
        b[e] = y2 - x2;
        p[e] = a[e] * b[e];
        q[e] = b[e] * b[e];
    }
    for (uint64_t c = 0; c < cols; c++) {
        if (cols == 1) {   /* torch: a contiguous vector, the whole-tensor order */
            memcpy(col, p, rows * 4);
            ts[c] = cr_refsum_torch(col, rows, false);
            tn[c] = sqrtf(cr_refsum_torch_ssq(a, rows));
        } else {
            ts[c] = ref_col_sum(p, rows, cols, c);
            tn[c] = sqrtf(ref_col_ssq(a, rows, cols, c));
        }
        cs[c] = (float)ref_col_wide(a, rows, cols, c);
        wn[c] = sqrtf((float)ref_col_wide(q, rows, cols, c));
        cd[c] = (float)ref_col_wide(p, rows, cols, c);
    }
    for (uint64_t e = 0; e < n; e++) {
        uint64_t c = e % cols;
        float t1 = a[e] * ts[c], t2 = b[e] * tn[c], t3 = cs[c] * 0.5f;
        float s = (float)sin((double)ts[c]);
        float t4 = s * wn[c];
        float u = t1 + t2;
        u = u + t3;
        u = u + t4;
        out[e] = u - cd[c];
    }
    free(a); free(b); free(p); free(q); free(ts); free(tn); free(cs); free(wn); free(cd); free(col);
    return out;
}

/* compile col_body over a rows x cols domain into p (chunk 0: the default) */
static cr_status col_compile(uint64_t rows, uint64_t cols, uint64_t chunk, cr_graph *g, cr_program *p, cr_error *err)
{
    cr_lua *L;
    uint32_t in[3];
    cr_graph_init(g, cr_default_allocator());
    if (cr_lua_open(cr_default_allocator(), NULL, &L, err)) return CR_ERR_RUNTIME;
    cr_status st = CR_ERR_CONFIG;
    uint32_t d = cr_test_graph_file_inputs(g, tmpdir, rows, cols, 2, in, NULL);
    uint32_t r = d == UINT32_MAX ? CR_NO_NODE : cr_test_lua_merge(L, g, d, in, 2, false, col_body, false, err);
    cr_lua_close(L);
    if (r == CR_NO_NODE) return st;
    cr_graph_output o = { .node = r, .domain = d, .name = "t.weight", .dtype = CR_DTYPE_F32, .ndim = 2,
                          .shape = { rows, cols } };
    cr_graph_add_output(g, &o);
    cr_compile_options co = { .chunk = chunk };
    return cr_compile_graph(g, &co, NULL, NULL, 0, p, err);
}

/* run p into tmpdir/name and count the elements differing from want (-1: the run failed) */
static int col_run(const cr_program *p, const char *name, unsigned threads, uint64_t max_memory,
                   const float *want, uint64_t n, cr_error *err)
{
    char out[512];
    snprintf(out, sizeof out, "%s/%s", tmpdir, name);
    return vb_run_count_diffs(p, out, threads, max_memory, want, n, name, err);
}

TEST(vm_matches_reference_any_threads)
{
    static const uint64_t shapes[][2] = { {7, 13}, {1, 5}, {17, 1}, {37, 41} };
    for (size_t si = 0; si < CR_ARRAY_LEN(shapes); si++) {
        uint64_t rows = shapes[si][0], cols = shapes[si][1];
        cr_graph g;
        cr_program p;
        cr_error err = {0};
        cr_status st = col_compile(rows, cols, 16, &g, &p, &err);
        CHECK_MSG(st == CR_OK, "%llux%llu: %s", (unsigned long long)rows, (unsigned long long)cols, err.msg);
        if (st == CR_OK) {
            float *want = col_reference(rows, cols);
            static const unsigned threads[] = { 1, 2, 4 };
            for (size_t ti = 0; ti < CR_ARRAY_LEN(threads); ti++) {
                char name[64];
                snprintf(name, sizeof name, "c%zu_t%u", si, threads[ti]);
                int bad = col_run(&p, name, threads[ti], 0, want, rows * cols, &err);
                CHECK_MSG(bad == 0, "%llux%llu threads %u: %d differ %s", (unsigned long long)rows,
                          (unsigned long long)cols, threads[ti], bad, bad < 0 ? err.msg : "");
            }
            free(want);
            cr_program_free(&p);
        }
        cr_graph_free(&g);
    }
}

/* a domain big enough that its mapped inputs matter: under a budget below
 * the unbounded peak the kernels stream, and the numbers do not change */
TEST(vm_streamed_under_small_budget)
{
    const uint64_t rows = 700, cols = 1500;
    cr_graph g;
    cr_program p;
    cr_error err = {0};
    cr_status st = col_compile(rows, cols, 0, &g, &p, &err);
    if (st) fprintf(stderr, "compile: %s\n", err.msg);
    REQUIRE(st == CR_OK);
    cr_memplan mp;
    REQUIRE(cr_memplan_init(&mp, &p, 2, 0, NULL, &err) == CR_OK);
    uint64_t peak = mp.peak;
    CHECK_EQ_INT(mp.n_streamed, 0);
    cr_memplan_free(&mp);
    uint64_t budget = peak - (6u << 20);   /* two 4.2 MB inputs: most of them must go */
    st = cr_memplan_init(&mp, &p, 2, budget, NULL, &err);
    CHECK_MSG(st == CR_OK, "%s", err.msg);
    if (st == CR_OK) {
        CHECK(mp.n_streamed > 0);
        CHECK(mp.peak <= budget);
        cr_memplan_free(&mp);
    }
    float *want = col_reference(rows, cols);
    int bad = col_run(&p, "big_free", 2, 0, want, rows * cols, &err);
    CHECK_MSG(bad == 0, "unbounded: %d differ %s", bad, bad < 0 ? err.msg : "");
    bad = col_run(&p, "big_budget", 2, budget, want, rows * cols, &err);
    CHECK_MSG(bad == 0, "streamed: %d differ %s", bad, bad < 0 ? err.msg : "");
    free(want);
    cr_program_free(&p);
    cr_graph_free(&g);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/crucible-colsum-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(torch_bits_on_fixed_matrices);
    RUN(streamed_state_equals_reference_on_odd_shapes);
    RUN(vm_matches_reference_any_threads);
    RUN(vm_streamed_under_small_budget);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    return cr_test_summary();
}
