/* test_interp.c — cr_vm_run on hand-built programs: bit-exact bf16 linear
 * merge, a two-pass slerp-like program, thread-count independence, COPY
 * with conversion, aux files, the input manifest, CHECK, interruption. */
#include "harness.h"
#include "support/vm_build.h"
#include "vm.h"
#include "hash.h"
#include "memplan.h"

#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmp;

static char *path_in(const char *name)
{
    static char buf[8][512];
    static int i;
    i = (i + 1) % 8;
    snprintf(buf[i], sizeof buf[i], "%s/%s", tmp, name);
    return buf[i];
}

static bool exists(const char *p) { struct stat st; return stat(p, &st) == 0; }

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
/* independent bf16 RNE for the hand computation */
static uint16_t to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float from_bf16(uint16_t h) { return bits_f32((uint32_t)h << 16); }
static float rbf(float f) { return from_bf16(to_bf16(f)); }

static cr_status run(const cr_program *p, const char *out, unsigned threads, const char *isa, cr_error *err)
{
    cr_vm_options o;
    cr_vm_options_init(&o);
    o.out_dir = out;
    o.threads = threads;
    o.quiet = true;
    o.isa = isa;
    return cr_vm_run(p, &o, err);
}

enum { LR = 3, LC = 37 };
static uint16_t la[LR * LC], lb[LR * LC];

/* out = bf16(bf16(a*w1) + bf16(b*w2)), as torch computes it on bf16 tensors */
static void build_linear(cr_program *p, uint64_t chunk)
{
    for (int i = 0; i < LR * LC; i++) {
        la[i] = to_bf16(sinf((float)i * 0.37f) * 3.0f);
        lb[i] = to_bf16(cosf((float)i * 0.11f) - 0.25f);
    }
    const char *na[] = { "w" }, *nb[] = { "w" };
    cr_dtype dt[] = { CR_DTYPE_BF16 };
    uint64_t shape[][2] = { { LR, LC } }, offa, offb;
    const void *da[] = { la }, *db[] = { lb };
    uint64_t sa = vb_write_safetensors(path_in("a.safetensors"), 1, na, dt, shape, da, &offa);
    uint64_t sb = vb_write_safetensors(path_in("b.safetensors"), 1, nb, dt, shape, db, &offb);
    vm_builder b;
    vb_init(&b);
    uint32_t fa = vb_file(&b, path_in("a.safetensors"), sa, 0);
    uint32_t fb = vb_file(&b, path_in("b.safetensors"), sb, 0);
    uint32_t ia = vb_input(&b, fa, CR_DTYPE_BF16, "w", offa, LR * LC * 2, LR, LC, LC);
    uint32_t ib = vb_input(&b, fb, CR_DTYPE_BF16, "w", offb, LR * LC * 2, LR, LC, LC);
    uint32_t o = vb_output(&b, "w", CR_DTYPE_BF16, LR, LC);
    vb_shard(&b, "model.safetensors");
    uint32_t w1 = vb_scalar(&b, 0.3), w2 = vb_scalar(&b, 0.7);
    uint32_t k = vb_kernel_begin(&b, LR, LC, chunk, 4, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, ia, 0, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 1, ib, 0, 0);
    vb_k(&b, CR_OP_SPLAT, CR_DTYPE_NONE, 2, w1, 0, 0);
    vb_k(&b, CR_OP_SPLAT, CR_DTYPE_NONE, 3, w2, 0, 0);
    vb_k(&b, CR_OP_MUL, CR_DTYPE_BF16, 0, 0, 2, 0);
    vb_k(&b, CR_OP_MUL, CR_DTYPE_BF16, 1, 1, 3, 0);
    vb_k(&b, CR_OP_ADD, CR_DTYPE_BF16, 0, 0, 1, 0);
    vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o, 0, 0, 0);
    vb_kernel_end(&b);
    vb_m(&b, CR_OP_PREFETCH, CR_DTYPE_NONE, 0, ia, 0, 0);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k, 0, 0);
    vb_m(&b, CR_OP_RELEASE, CR_DTYPE_NONE, 0, ia, 0, 0);
    vb_m(&b, CR_OP_DONE, CR_DTYPE_NONE, o, 0, 0, 0);
    vb_aux_write(&b, "config.json", "{\"torch_dtype\": \"bfloat16\"}\n");
    vb_aux_copy(&b, "a-copy.safetensors", fa);
    vb_build(&b, p);
}

TEST(linear_bf16_bit_exact)
{
    cr_program p;
    build_linear(&p, 16);
    cr_error err = {0};
    REQUIRE(cr_program_verify(&p, &err) == CR_OK);
    const char *out = path_in("lin1");
    cr_status s = run(&p, out, 1, NULL, &err);
    CHECK_MSG(s == CR_OK, "%s", err.msg);
    size_t len;
    unsigned char *data = vb_read_file(path_in("lin1/model.safetensors"), &len);
    REQUIRE(data);
    CHECK_EQ_INT(len, p.shards[0].file_size);
    CHECK(memcmp(data, p.blobs + p.shards[0].header.off, p.shards[0].header.len) == 0);
    int bad = 0;
    float w1 = (float)0.3, w2 = (float)0.7;
    for (int i = 0; i < LR * LC; i++) {
        uint16_t want = to_bf16(rbf(rbf(from_bf16(la[i]) * w1) + rbf(from_bf16(lb[i]) * w2)));
        uint16_t got;
        memcpy(&got, data + p.outputs[0].offset + 2 * i, 2);
        if (got != want && bad++ < 3) CHECK_MSG(0, "element %d: got %04x want %04x", i, got, want);
    }
    CHECK_EQ_INT(bad, 0);
    free(data);
    data = vb_read_file(path_in("lin1/config.json"), &len);
    CHECK(data && strstr((char *)data, "bfloat16"));
    free(data);
    size_t la_len, lc_len;
    unsigned char *orig = vb_read_file(path_in("a.safetensors"), &la_len);
    unsigned char *copy = vb_read_file(path_in("lin1/a-copy.safetensors"), &lc_len);
    CHECK(orig && copy && la_len == lc_len && !memcmp(orig, copy, la_len));
    free(orig); free(copy);
    CHECK(!exists(path_in("lin1.crucible-tmp-0")));
    cr_program_free(&p);
}

TEST(same_bytes_any_threads_and_isa)
{
    cr_program p;
    build_linear(&p, 8);
    cr_error err = {0};
    const char *outs[] = { "t1", "t2", "t4", "t4b", "scalar" };
    unsigned th[] = { 1, 2, 4, 4, 3 };
    unsigned char *ref = NULL;
    size_t ref_len = 0;
    for (int i = 0; i < 5; i++) {
        cr_status s = run(&p, path_in(outs[i]), th[i], i == 4 ? "scalar" : NULL, &err);
        CHECK_MSG(s == CR_OK, "%s", err.msg);
        char f[600];
        snprintf(f, sizeof f, "%s/model.safetensors", path_in(outs[i]));
        size_t len;
        unsigned char *d = vb_read_file(f, &len);
        REQUIRE(d);
        if (!ref) { ref = d; ref_len = len; continue; }
        CHECK_MSG(len == ref_len && !memcmp(d, ref, len), "run %s differs", outs[i]);
        free(d);
    }
    free(ref);
    cr_program_free(&p);
}

TEST(existing_outdir_refused_unless_force)
{
    cr_program p;
    build_linear(&p, 16);
    cr_error err = {0};
    const char *out = path_in("exists");
    mkdir(out, 0755);
    FILE *f = fopen(path_in("exists/old.txt"), "w");
    fputs("x", f);
    fclose(f);
    CHECK(run(&p, out, 1, NULL, &err) == CR_ERR_ARG);
    CHECK_CONTAINS(err.msg, "not empty");
    cr_vm_options o;
    cr_vm_options_init(&o);
    o.out_dir = out; o.quiet = true; o.force = true;
    CHECK_MSG(cr_vm_run(&p, &o, &err) == CR_OK, "%s", err.msg);
    CHECK(!exists(path_in("exists/old.txt")));
    CHECK(exists(path_in("exists/model.safetensors")));
    cr_program_free(&p);
}

TEST(manifest_size_and_hash_checked_before_work)
{
    cr_program p;
    build_linear(&p, 16);
    cr_error err = {0};
    /* truncated input: size differs */
    p.files[1].size += 2;
    cr_status s = run(&p, path_in("trunc"), 2, NULL, &err);
    CHECK_EQ_INT(s, CR_ERR_RUNTIME);
    CHECK_CONTAINS(err.msg, "b.safetensors");
    CHECK_CONTAINS(err.msg, "truncated");
    CHECK(!exists(path_in("trunc")));
    p.files[1].size -= 2;
    /* wrong hash */
    size_t len;
    unsigned char *d = vb_read_file(path_in("a.safetensors"), &len);
    p.files[0].hash = cr_xxh64(d, len, 0) ^ 1;
    s = run(&p, path_in("hash"), 2, NULL, &err);
    CHECK_EQ_INT(s, CR_ERR_RUNTIME);
    CHECK_CONTAINS(err.msg, "content hash");
    CHECK(!exists(path_in("hash")));
    cr_vm_options o;
    cr_vm_options_init(&o);
    o.out_dir = path_in("hash"); o.quiet = true; o.skip_hash = true;
    CHECK(cr_vm_run(&p, &o, &err) == CR_OK);
    /* right hash passes */
    p.files[0].hash = cr_xxh64(d, len, 0);
    CHECK_MSG(run(&p, path_in("hash2"), 2, NULL, &err) == CR_OK, "%s", err.msg);
    free(d);
    cr_program_free(&p);
}

TEST(interrupt_leaves_nothing)
{
    cr_program p;
    build_linear(&p, 16);
    cr_error err = {0};
    volatile int flag = 1;
    cr_vm_options o;
    cr_vm_options_init(&o);
    o.out_dir = path_in("intr"); o.quiet = true; o.interrupt = &flag;
    CHECK_EQ_INT(cr_vm_run(&p, &o, &err), CR_ERR_INTERRUPTED);
    CHECK(!exists(path_in("intr")));
    char t[600];
    snprintf(t, sizeof t, "%s.crucible-tmp-%ld", path_in("intr"), (long)getpid());
    CHECK(!exists(t));
    cr_program_free(&p);
}

/* pass 1: dot, |a|^2, |b|^2; top level: the slerp weights; pass 2: output */
TEST(slerp_like_two_pass)
{
    enum { N = 1000 };
    static float a[N], bb[N];
    for (int i = 0; i < N; i++) { a[i] = sinf((float)i * 0.01f); bb[i] = sinf((float)i * 0.01f + 0.5f) * 0.8f; }
    const char *nm[] = { "x" };
    cr_dtype dt[] = { CR_DTYPE_F32 };
    uint64_t shape[][2] = { { 0, N } }, oa, ob;
    const void *da[] = { a }, *db[] = { bb };
    uint64_t sa = vb_write_safetensors(path_in("sa.safetensors"), 1, nm, dt, shape, da, &oa);
    uint64_t sb = vb_write_safetensors(path_in("sb.safetensors"), 1, nm, dt, shape, db, &ob);
    vm_builder b;
    vb_init(&b);
    uint32_t ia = vb_input(&b, vb_file(&b, path_in("sa.safetensors"), sa, 0), CR_DTYPE_F32, "x", oa, N * 4, 1, N, N);
    uint32_t ib = vb_input(&b, vb_file(&b, path_in("sb.safetensors"), sb, 0), CR_DTYPE_F32, "x", ob, N * 4, 1, N, N);
    uint32_t o = vb_output(&b, "x", CR_DTYPE_F32, 0, N);
    vb_shard(&b, "model.safetensors");
    uint32_t dot = vb_scalar(&b, 0), na = vb_scalar(&b, 0), nb = vb_scalar(&b, 0), t = vb_scalar(&b, 0.4);
    uint32_t one = vb_scalar(&b, 1), tmp = vb_scalar(&b, 0), th = vb_scalar(&b, 0), st = vb_scalar(&b, 0);
    uint32_t w1 = vb_scalar(&b, 0), w2 = vb_scalar(&b, 0);
    uint32_t k1 = vb_kernel_begin(&b, 1, N, 96, 3, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, ia, 0, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 1, ib, 0, 0);
    vb_k(&b, CR_OP_MUL, CR_DTYPE_F32, 2, 0, 1, 0);
    vb_k(&b, CR_OP_RSUM, CR_DTYPE_F64, dot, 2, 0, 0);
    vb_k(&b, CR_OP_MUL, CR_DTYPE_F32, 2, 0, 0, 0);
    vb_k(&b, CR_OP_RSUM, CR_DTYPE_F64, na, 2, 0, 0);
    vb_k(&b, CR_OP_MUL, CR_DTYPE_F32, 2, 1, 1, 0);
    vb_k(&b, CR_OP_RSUM, CR_DTYPE_F64, nb, 2, 0, 0);
    vb_kernel_end(&b);
    uint32_t k2 = vb_kernel_begin(&b, 1, N, 96, 3, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, ia, 0, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 1, ib, 0, 0);
    vb_k(&b, CR_OP_SPLAT, CR_DTYPE_NONE, 2, w1, 0, 0);
    vb_k(&b, CR_OP_MUL, CR_DTYPE_F32, 0, 0, 2, 0);
    vb_k(&b, CR_OP_SPLAT, CR_DTYPE_NONE, 2, w2, 0, 0);
    vb_k(&b, CR_OP_MUL, CR_DTYPE_F32, 1, 1, 2, 0);
    vb_k(&b, CR_OP_ADD, CR_DTYPE_F32, 0, 0, 1, 0);
    vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o, 0, 0, 0);
    vb_kernel_end(&b);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k1, 0, 0);
    vb_m(&b, CR_OP_MUL, CR_DTYPE_F64, tmp, na, nb, 0);
    vb_m(&b, CR_OP_SQRT, CR_DTYPE_F64, tmp, tmp, 0, 0);
    vb_m(&b, CR_OP_DIV, CR_DTYPE_F64, tmp, dot, tmp, 0);
    vb_m(&b, CR_OP_ACOS, CR_DTYPE_F64, th, tmp, 0, 0);
    vb_m(&b, CR_OP_SIN, CR_DTYPE_F64, st, th, 0, 0);
    vb_m(&b, CR_OP_SUB, CR_DTYPE_F64, w1, one, t, 0);
    vb_m(&b, CR_OP_MUL, CR_DTYPE_F64, w1, w1, th, 0);
    vb_m(&b, CR_OP_SIN, CR_DTYPE_F64, w1, w1, 0, 0);
    vb_m(&b, CR_OP_DIV, CR_DTYPE_F64, w1, w1, st, 0);
    vb_m(&b, CR_OP_MUL, CR_DTYPE_F64, w2, t, th, 0);
    vb_m(&b, CR_OP_SIN, CR_DTYPE_F64, w2, w2, 0, 0);
    vb_m(&b, CR_OP_DIV, CR_DTYPE_F64, w2, w2, st, 0);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k2, 0, 0);
    cr_program p;
    vb_build(&b, &p);
    cr_error err = {0};
    CHECK_MSG(cr_program_verify(&p, &err) == CR_OK, "%s", err.msg);
    CHECK_MSG(run(&p, path_in("slerp1"), 1, NULL, &err) == CR_OK, "%s", err.msg);
    CHECK_MSG(run(&p, path_in("slerp3"), 3, NULL, &err) == CR_OK, "%s", err.msg);
    double sd = 0, sa2 = 0, sb2 = 0;
    for (int i = 0; i < N; i++) { sd += (double)(a[i] * bb[i]); sa2 += (double)(a[i] * a[i]); sb2 += (double)(bb[i] * bb[i]); }
    double theta = acos(sd / sqrt(sa2 * sb2)), s = sin(theta);
    double x1 = sin(0.6 * theta) / s, x2 = sin(0.4 * theta) / s;
    size_t l1, l3;
    unsigned char *d1 = vb_read_file(path_in("slerp1/model.safetensors"), &l1);
    unsigned char *d3 = vb_read_file(path_in("slerp3/model.safetensors"), &l3);
    REQUIRE(d1 && d3);
    CHECK(l1 == l3 && !memcmp(d1, d3, l1));
    double maxerr = 0;
    for (int i = 0; i < N; i++) {
        float got;
        memcpy(&got, d1 + p.outputs[0].offset + 4 * i, 4);
        double want = x1 * a[i] + x2 * bb[i];
        maxerr = fmax(maxerr, fabs(got - want));
    }
    CHECK_MSG(maxerr < 1e-5, "slerp max error %g", maxerr);
    free(d1); free(d3);
    cr_program_free(&p);
}

/* acos/sin/cos inside a kernel (per-row coefficients): each element is
 * libm's f64 result rounded to float32, and a bf16 instruction rounds on */
TEST(kernel_trig_correctly_rounded)
{
    enum { N = 777 };
    static float a[N];
    /* runs of three equal values (a row value broadcast), some negative zeros */
    for (int i = 0; i < N; i++) a[i] = -1.0f + 2.0f * (float)(i / 3) / (N / 3) + ((i / 3) % 7 ? 0.0f : 1e-7f * (float)i);
    a[400] = 0.0f; a[401] = -0.0f; a[402] = 0.0f;
    a[0] = -1.0f; a[N - 1] = 1.0f;
    const char *nm[] = { "x" };
    cr_dtype dt[] = { CR_DTYPE_F32 };
    uint64_t shape[][2] = { { 0, N } }, oa;
    const void *da[] = { a };
    uint64_t sa = vb_write_safetensors(path_in("trig.safetensors"), 1, nm, dt, shape, da, &oa);
    vm_builder b;
    vb_init(&b);
    uint32_t ia = vb_input(&b, vb_file(&b, path_in("trig.safetensors"), sa, 0), CR_DTYPE_F32, "x", oa, N * 4, 1, N, N);
    const char *onames[] = { "acos", "sin", "cos", "acos_bf16" };
    uint32_t o[4];
    for (int j = 0; j < 4; j++) o[j] = vb_output(&b, onames[j], CR_DTYPE_F32, 0, N);
    vb_shard(&b, "model.safetensors");
    uint32_t k = vb_kernel_begin(&b, 1, N, 100, 2, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, ia, 0, 0);
    vb_k(&b, CR_OP_ACOS, CR_DTYPE_F32, 1, 0, 0, 0);
    vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o[0], 1, 0, 0);
    vb_k(&b, CR_OP_SIN, CR_DTYPE_F32, 1, 0, 0, 0);
    vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o[1], 1, 0, 0);
    vb_k(&b, CR_OP_COS, CR_DTYPE_F32, 1, 0, 0, 0);
    vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o[2], 1, 0, 0);
    vb_k(&b, CR_OP_ACOS, CR_DTYPE_BF16, 1, 0, 0, 0);
    vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o[3], 1, 0, 0);
    vb_kernel_end(&b);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k, 0, 0);
    cr_program p;
    vb_build(&b, &p);
    cr_error err = {0};
    CHECK_MSG(cr_program_verify(&p, &err) == CR_OK, "%s", err.msg);
    CHECK_MSG(run(&p, path_in("trig"), 2, NULL, &err) == CR_OK, "%s", err.msg);
    size_t len;
    unsigned char *d = vb_read_file(path_in("trig/model.safetensors"), &len);
    REQUIRE(d);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        float g[4];
        for (int j = 0; j < 4; j++) memcpy(&g[j], d + p.outputs[o[j]].offset + 4 * (size_t)i, 4);
        double x = a[i];
        if (f32_bits(g[0]) != f32_bits((float)acos(x))) bad++;
        if (f32_bits(g[1]) != f32_bits((float)sin(x))) bad++;
        if (f32_bits(g[2]) != f32_bits((float)cos(x))) bad++;
        if (f32_bits(g[3]) != f32_bits(rbf((float)acos(x)))) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    free(d);
    cr_program_free(&p);
}

/* COPY: bit copy of a strided slice; f32 -> bf16 conversion; CHECK failing */
TEST(copy_slice_convert_and_check)
{
    enum { R = 4, C = 6 };
    float src[R * C];
    for (int i = 0; i < R * C; i++) src[i] = (float)i + 0.123f;
    const char *nm[] = { "m" };
    cr_dtype dt[] = { CR_DTYPE_F32 };
    uint64_t shape[][2] = { { R, C } }, off;
    const void *d[] = { src };
    uint64_t sz = vb_write_safetensors(path_in("c.safetensors"), 1, nm, dt, shape, d, &off);
    vm_builder b;
    vb_init(&b);
    uint32_t f = vb_file(&b, path_in("c.safetensors"), sz, 0);
    /* rows 1..3, cols 0..3 of the 4x6 matrix */
    uint32_t slice = vb_input(&b, f, CR_DTYPE_F32, "m", off + C * 4, (R - 1) * C * 4, R - 1, 4, C);
    uint32_t whole = vb_input(&b, f, CR_DTYPE_F32, "m", off, R * C * 4, R, C, C);
    uint32_t o1 = vb_output(&b, "slice", CR_DTYPE_F32, R - 1, 4);
    uint32_t o2 = vb_output(&b, "half", CR_DTYPE_BF16, R, C);
    vb_shard(&b, "model.safetensors");
    uint32_t ok = vb_scalar(&b, 1);
    uint32_t msg = vb_message(&b, "weights must sum to a non-zero value");
    vb_m(&b, CR_OP_COPY, CR_DTYPE_NONE, o1, slice, 0, 0);
    vb_m(&b, CR_OP_COPY, CR_DTYPE_NONE, o2, whole, 0, 0);
    vb_m(&b, CR_OP_CHECK, CR_DTYPE_NONE, 0, ok, 0, msg);
    cr_program p;
    vb_build(&b, &p);
    cr_error err = {0};
    CHECK_MSG(run(&p, path_in("copy"), 2, NULL, &err) == CR_OK, "%s", err.msg);
    size_t len;
    unsigned char *out = vb_read_file(path_in("copy/model.safetensors"), &len);
    REQUIRE(out);
    for (int r = 0; r < R - 1; r++)
        for (int c = 0; c < 4; c++) {
            float v;
            memcpy(&v, out + p.outputs[0].offset + (r * 4 + c) * 4, 4);
            CHECK(v == src[(r + 1) * C + c]);
        }
    for (int i = 0; i < R * C; i++) {
        uint16_t h;
        memcpy(&h, out + p.outputs[1].offset + 2 * i, 2);
        CHECK_EQ_INT(h, to_bf16(src[i]));
    }
    free(out);
    p.scalar_init[ok] = 0;
    CHECK_EQ_INT(run(&p, path_in("check"), 2, NULL, &err), CR_ERR_RUNTIME);
    CHECK_STR(err.msg, "weights must sum to a non-zero value");
    CHECK(!exists(path_in("check")));
    cr_program_free(&p);
}

/* RAND: deterministic, in [0,1), independent of chunking and threads */
TEST(rand_is_counter_based)
{
    enum { N = 300 };
    float ref[N];
    for (int pass = 0; pass < 2; pass++) {
        vm_builder b;
        vb_init(&b);
        b.seed = 42;
        uint32_t o = vb_output(&b, "r", CR_DTYPE_F32, 0, N);
        vb_shard(&b, "model.safetensors");
        uint32_t st = vb_stream(&b, 7);
        uint32_t k = vb_kernel_begin(&b, 1, N, pass ? 7 : 64, 1, 0);
        vb_k(&b, CR_OP_RAND, CR_DTYPE_NONE, 0, st, 0, 0);
        vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o, 0, 0, 0);
        vb_kernel_end(&b);
        vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k, 0, 0);
        cr_program p;
        vb_build(&b, &p);
        cr_error err = {0};
        const char *out = path_in(pass ? "rand2" : "rand1");
        CHECK_MSG(run(&p, out, pass ? 2 : 1, NULL, &err) == CR_OK, "%s", err.msg);
        char f[600];
        snprintf(f, sizeof f, "%s/model.safetensors", out);
        size_t len;
        unsigned char *d = vb_read_file(f, &len);
        REQUIRE(d);
        double mean = 0;
        for (int i = 0; i < N; i++) {
            float v;
            memcpy(&v, d + p.outputs[0].offset + 4 * i, 4);
            CHECK(v >= 0 && v < 1);
            mean += v / N;
            if (pass) CHECK(v == ref[i]); else ref[i] = v;
        }
        CHECK(mean > 0.4 && mean < 0.6);
        free(d);
        cr_program_free(&p);
    }
}

/* `crucible plan` counts the thread buffers a run allocates (runbuf.h):
 * the VM's count of what setup allocated equals memplan's, whatever the
 * thread count and chunk (setup once allocated a chunk of 64 Ki elements
 * per register, which the plan did not count) */
TEST(plan_thread_bytes_are_what_setup_allocates)
{
    static const uint64_t chunks[] = { 16, 64, 200 };
    static const unsigned threads[] = { 1, 3 };
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
            cr_program p;
            build_linear(&p, chunks[c]);
            cr_error err = {0};
            cr_vm_stats st = {0};
            cr_vm_options o;
            cr_vm_options_init(&o);
            char name[32];
            snprintf(name, sizeof name, "tb%zu_%zu", c, t);
            o.out_dir = path_in(name);
            o.threads = threads[t];
            o.quiet = true;
            o.stats = &st;
            CHECK_MSG(cr_vm_run(&p, &o, &err) == CR_OK, "%s", err.msg);
            cr_memplan mp;
            REQUIRE(cr_memplan_init(&mp, &p, threads[t], 0, NULL, &err) == CR_OK);
            CHECK_EQ_INT(st.threads, mp.threads);
            CHECK_EQ_INT(st.thread_bytes, mp.thread_bytes);
            CHECK(st.thread_bytes > 0);
            cr_memplan_free(&mp);
            cr_program_free(&p);
        }
    }
}

/* tsan: runs threads; tools/sanitize.sh thread runs this test */
int main(void)
{
    tmp = vb_tempdir();
    if (!tmp) { fprintf(stderr, "no temp dir\n"); return 1; }
    RUN(linear_bf16_bit_exact);
    RUN(same_bytes_any_threads_and_isa);
    RUN(existing_outdir_refused_unless_force);
    RUN(manifest_size_and_hash_checked_before_work);
    RUN(interrupt_leaves_nothing);
    RUN(slerp_like_two_pass);
    RUN(kernel_trig_correctly_rounded);
    RUN(copy_slice_convert_and_check);
    RUN(rand_is_counter_based);
    RUN(plan_thread_bytes_are_what_setup_allocates);
    vb_rmtree(tmp);
    free(tmp);
    return cr_test_summary();
}

