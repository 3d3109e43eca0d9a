/* test_select.c — exact top-k by magnitude with the radix-select sequence:
 * ties at the threshold kept in element-index order, k = 0 and k = n, and
 * the same mask for any thread count. */
#include "harness.h"
#include "support/vm_build.h"
#include "vm.h"

#include <stdlib.h>

static char *tmp;
enum { MAXN = 40000 };
/* the domain and chunk of the next run_topk (chunks over the VM's 1024-element
 * blocks exercise the tie rank carried between blocks) */
static int N = 1000, CHUNK = 64;
static float vals[MAXN];

static int cmp_desc(const void *a, const void *b)
{
    const int *x = a, *y = b;
    float fx = fabsf(vals[*x]), fy = fabsf(vals[*y]);
    if (fx != fy) return fx > fy ? -1 : 1;
    return *x - *y;   /* ties: lower index first */
}

static void run_topk(uint64_t k, unsigned threads)
{
    char file[512], out[512], shard[600];
    snprintf(file, sizeof file, "%s/v.safetensors", tmp);
    snprintf(out, sizeof out, "%s/topk-%d-%d-%llu-%u", tmp, N, (int)(vals[1] * 1000), (unsigned long long)k, threads);
    const char *nm[] = { "v" };
    cr_dtype dt[] = { CR_DTYPE_F32 };
    uint64_t shape[][2] = { { 0, N } }, off;
    const void *d[] = { vals };
    uint64_t sz = vb_write_safetensors(file, 1, nm, dt, shape, d, &off);
    vm_builder b;
    vb_init(&b);
    uint32_t in = vb_input(&b, vb_file(&b, file, sz, 0), CR_DTYPE_F32, "v", off, N * 4, 1, N, N);
    uint32_t o = vb_output(&b, "mask", CR_DTYPE_F32, 0, N);
    vb_shard(&b, "model.safetensors");
    uint32_t ks = vb_scalar(&b, (double)k), thr = vb_scalar(&b, -1);
    uint32_t x = vb_select(&b, N, CHUNK);
    cr_op seq[] = { CR_OP_HIST_HI, CR_OP_HIST_LO, CR_OP_TIE_COUNT };
    cr_op top[] = { CR_OP_SEL_FIND_HI, CR_OP_SEL_FIND_LO, CR_OP_SEL_PREFIX };
    vb_m(&b, CR_OP_SEL_INIT, CR_DTYPE_NONE, x, ks, 0, 0);
    for (int i = 0; i < 3; i++) {
        uint32_t kk = vb_kernel_begin(&b, 1, N, CHUNK, 1, 0);
        vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, in, 0, 0);
        vb_k(&b, seq[i], CR_DTYPE_NONE, x, 0, 0, 0);
        vb_kernel_end(&b);
        vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, kk, 0, 0);
        vb_m(&b, top[i], CR_DTYPE_NONE, x, 0, 0, 0);
    }
    uint32_t kk = vb_kernel_begin(&b, 1, N, CHUNK, 2, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, in, 0, 0);
    vb_k(&b, CR_OP_TOPK_MASK, CR_DTYPE_NONE, 1, 0, x, 0);
    vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o, 1, 0, 0);
    vb_kernel_end(&b);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, kk, 0, 0);
    vb_m(&b, CR_OP_SEL_VALUE, CR_DTYPE_NONE, thr, x, 0, 0);
    /* store the threshold through a CHECK: thr == expected, else fail */
    cr_program p;
    vb_build(&b, &p);
    cr_error err = {0};
    cr_vm_options opt;
    cr_vm_options_init(&opt);
    opt.out_dir = out; opt.quiet = true; opt.threads = threads;
    cr_status s = cr_vm_run(&p, &opt, &err);
    CHECK_MSG(s == CR_OK, "%s", err.msg);
    snprintf(shard, sizeof shard, "%s/model.safetensors", out);
    size_t len;
    unsigned char *data = vb_read_file(shard, &len);
    REQUIRE(data);
    static int order[MAXN];
    for (int i = 0; i < N; i++) order[i] = i;
    qsort(order, N, sizeof *order, cmp_desc);
    static float want[MAXN];
    memset(want, 0, sizeof want);
    for (uint64_t i = 0; i < k; i++) want[order[i]] = 1;
    int bad = 0, count = 0;
    for (int i = 0; i < N; i++) {
        float g;
        memcpy(&g, data + p.outputs[0].offset + 4 * i, 4);
        count += g == 1;
        if (g != want[i] && bad++ < 3) CHECK_MSG(0, "k=%llu threads=%u element %d (|v|=%g): got %g want %g",
                                               (unsigned long long)k, threads, i, fabsf(vals[i]), g, want[i]);
    }
    CHECK_EQ_INT(count, k);
    free(data);
    cr_program_free(&p);
}

TEST(topk_with_ties)
{
    /* many exact ties (values on a coarse grid, both signs) plus -0/+0 */
    for (int i = 0; i < N; i++) vals[i] = (float)((i * 37) % 11 - 5) * 0.25f;
    vals[3] = -0.0f;
    uint64_t ks[] = { 0, 1, 90, 91, 200, 499, 500, 999, 1000 };
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        run_topk(ks[i], 1);
        run_topk(ks[i], 4);
    }
}

TEST(topk_distinct_and_close_values)
{
    /* values that share the high 16 bits so the low pass decides */
    for (int i = 0; i < N; i++) vals[i] = 1.0f + (float)((i * 7919) % N) * 1e-7f * (i % 2 ? 1 : -1);
    uint64_t ks[] = { 1, 10, 333, 700 };
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) run_topk(ks[i], 3);
}

TEST(topk_ties_across_blocks)
{
    /* chunks of 4096 run as four blocks: thresholds whose ties end inside a
     * block, bf16-grid values (the direct path) and fine ones (two passes) */
    N = MAXN; CHUNK = 4096;
    for (int i = 0; i < N; i++) vals[i] = (float)((i * 37) % 11 - 5) * 0.25f;
    uint64_t ks[] = { 1, 3637, 7000, 20000, 39999 };
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        run_topk(ks[i], 1);
        run_topk(ks[i], 2);
    }
    for (int i = 0; i < N; i++) vals[i] = 1.0f + (float)((i * 7919) % 977) * 1e-7f * (i % 2 ? 1 : -1);
    run_topk(12345, 2);
    N = 1000; CHUNK = 64;
}

TEST(bad_k_is_an_error)
{
    char file[512], out[512];
    snprintf(file, sizeof file, "%s/v.safetensors", tmp);
    snprintf(out, sizeof out, "%s/badk", tmp);
    vm_builder b;
    vb_init(&b);
    uint32_t x = vb_select(&b, N, CHUNK);
    uint32_t ks = vb_scalar(&b, 2.5);
    vb_m(&b, CR_OP_SEL_INIT, CR_DTYPE_NONE, x, ks, 0, 0);
    cr_program p;
    vb_build(&b, &p);
    cr_error err = {0};
    cr_vm_options opt;
    cr_vm_options_init(&opt);
    opt.out_dir = out; opt.quiet = true;
    CHECK_EQ_INT(cr_vm_run(&p, &opt, &err), CR_ERR_RUNTIME);
    CHECK_CONTAINS(err.msg, "whole number");
    /* out of sequence: FIND_LO before FIND_HI */
    p.scalar_init[ks] = 3;
    cr_insn bad[] = { { CR_OP_SEL_INIT, CR_DTYPE_NONE, 0, x, ks, 0, 0 }, { CR_OP_SEL_FIND_LO, CR_DTYPE_NONE, 0, x, 0, 0, 0 } };
    cr_free(p.alloc, p.main);
    p.main = cr_malloc(p.alloc, sizeof bad);
    memcpy(p.main, bad, sizeof bad);
    p.n_main = 2;
    CHECK_EQ_INT(cr_vm_run(&p, &opt, &err), CR_ERR_RUNTIME);
    CHECK_CONTAINS(err.msg, "out of sequence");
    cr_program_free(&p);
}

/* Gather-sized allocations (vm/gatherpool.h), counted through the run's allocator. */
typedef struct counting { const cr_allocator *inner; size_t size[2]; unsigned hits; } counting;
static void *counting_fn(void *ud, void *ptr, size_t n)
{
    counting *c = ud;
    if (!ptr && (n == c->size[0] || n == c->size[1])) c->hits++;
    return c->inner->fn(c->inner->ud, ptr, n);
}

/* two tensors of gn[0] and gn[1] elements, each a TIES-like selection in
 * torch's tie order; returns the gather-sized allocations */
static unsigned run_two_gathers(const char *out, const uint64_t gn[2], uint64_t max_memory, unsigned char **shard,
                                size_t *len)
{
    enum { GCHUNK = 1000 };
    float *v[2];
    for (int t = 0; t < 2; t++) {
        v[t] = malloc(gn[t] * sizeof *v[t]);
        if (!v[t]) return 0;
        for (uint64_t i = 0; i < gn[t]; i++) v[t][i] = (float)((i * (37 + t)) % 11) * 0.25f - 1.25f;   /* ties on a bf16 grid */
    }
    char file[512], path[700];
    snprintf(file, sizeof file, "%s/two.safetensors", tmp);
    const char *nm[] = { "a", "b" };
    cr_dtype dt[] = { CR_DTYPE_F32, CR_DTYPE_F32 };
    uint64_t shape[][2] = { { 0, gn[0] }, { 0, gn[1] } }, off[2];
    const void *d[] = { v[0], v[1] };
    uint64_t sz = vb_write_safetensors(file, 2, nm, dt, shape, d, off);
    free(v[0]);
    free(v[1]);
    vm_builder b;
    vb_init(&b);
    uint32_t f = vb_file(&b, file, sz, 0);
    uint32_t in[2], o[2];
    for (int t = 0; t < 2; t++) in[t] = vb_input(&b, f, CR_DTYPE_F32, nm[t], off[t], gn[t] * 4, 1, gn[t], gn[t]);
    for (int t = 0; t < 2; t++) o[t] = vb_output(&b, nm[t], CR_DTYPE_F32, 0, gn[t]);
    vb_shard(&b, "model.safetensors");
    uint32_t ks = vb_scalar(&b, 1234);
    for (int t = 0; t < 2; t++) {
        uint64_t GN = gn[t];
        uint32_t x = vb_select(&b, GN, GCHUNK);
        cr_op seq[] = { CR_OP_HIST_HI, CR_OP_HIST_LO, CR_OP_TIE_COUNT };
        cr_op top[] = { CR_OP_SEL_FIND_HI, CR_OP_SEL_FIND_LO, CR_OP_SEL_PREFIX };
        vb_m(&b, CR_OP_SEL_INIT, CR_DTYPE_NONE, x, ks, 0, 0);
        for (int i = 0; i < 3; i++) {
            uint32_t kk = vb_kernel_begin(&b, 1, GN, GCHUNK, 1, 0);
            vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, in[t], 0, 0);
            vb_k(&b, seq[i], CR_DTYPE_NONE, x, 0, 0, 0);
            if (i == 2) vb_k(&b, CR_OP_TORCH_DESC, CR_DTYPE_NONE, x, 0, 0, 0);
            vb_kernel_end(&b);
            vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, kk, 0, 0);
            vb_m(&b, top[i], CR_DTYPE_NONE, x, 0, 0, 0);
        }
        uint32_t kk = vb_kernel_begin(&b, 1, GN, GCHUNK, 2, 0);
        vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, in[t], 0, 0);
        vb_k(&b, CR_OP_TOPK_MASK, CR_DTYPE_NONE, 1, 0, x, 0);
        vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o[t], 1, 0, 0);
        vb_kernel_end(&b);
        vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, kk, 0, 0);
        vb_m(&b, CR_OP_RELEASE, CR_DTYPE_NONE, 0, in[t], 0, 0);
    }
    cr_program p;
    vb_build(&b, &p);
    counting c = { cr_default_allocator(), { gn[0] * 4, gn[1] * 4 }, 0 };
    cr_allocator al = { counting_fn, &c };
    cr_error err = {0};
    cr_vm_options opt;
    cr_vm_options_init(&opt);
    opt.out_dir = out; opt.quiet = true; opt.threads = 2; opt.alloc = &al; opt.max_memory = max_memory;
    cr_status st = cr_vm_run(&p, &opt, &err);
    CHECK_MSG(st == CR_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    *shard = vb_read_file(path, len);
    cr_program_free(&p);
    return c.hits;
}

/* Without --max-memory the pool keeps every freed gather. Under one, a
 * kept gather must fit the room memplan leaves under the predicted peak
 * at every step until it is taken again (memplan.h gather_keep): two
 * 5000-element tensors peak at the second one's histograms, where the
 * first one's gather has no room, so it is freed; a 2^18-element tensor
 * after a 2^20-element one (the peak is the first one's gather) reuses
 * it. The masks are the same each way. */
TEST(gathers_are_kept_between_tensors)
{
    char out[4][512];
    unsigned char *sh[4] = {0};
    size_t n[4] = {0};
    const uint64_t same[2] = { 5000, 5000 }, shrink[2] = { 1000003, 250007 };
    for (int i = 0; i < 4; i++) snprintf(out[i], sizeof out[i], "%s/pool-%d", tmp, i);
    CHECK_EQ_INT(run_two_gathers(out[0], same, 0, &sh[0], &n[0]), 1);
    CHECK_EQ_INT(run_two_gathers(out[1], same, 64ull << 20, &sh[1], &n[1]), 2);   /* no room at the peak: freed */
    CHECK_EQ_INT(run_two_gathers(out[2], shrink, 0, &sh[2], &n[2]), 1);
    CHECK_EQ_INT(run_two_gathers(out[3], shrink, 64ull << 20, &sh[3], &n[3]), 1);   /* room: kept under the budget */
    for (int i = 0; i < 4; i++) REQUIRE(sh[i]);
    CHECK(n[0] == n[1] && memcmp(sh[0], sh[1], n[0]) == 0);
    CHECK(n[2] == n[3] && memcmp(sh[2], sh[3], n[2]) == 0);
    for (int i = 0; i < 4; i++) free(sh[i]);
}

/* A TIES-shaped selection over bf16 values (direct mode), as the emitter
 * writes it: HIST_HI, HIST_LO, the torch tie-order gather, the mask. The
 * HIST_HI pass is HI_GATHER, so without --max-memory it fills the gather
 * with plain keys and both later counting passes are skipped (the inputs
 * are read twice, not three times); under --max-memory the HIST_LO pass
 * fills it instead and only the gathering pass is skipped; without the
 * kernel flags every pass runs. The masks are the same each way. */
static void run_bf16_ties(const char *out, uint64_t max_memory, bool mark, cr_vm_stats *st, unsigned char **shard,
                          size_t *len)
{
    enum { GN = 7000, GCHUNK = 1024 };
    static float v[GN];
    for (int i = 0; i < GN; i++) v[i] = (float)((i * 37) % 11 - 5) * 0.125f;   /* ties on a bf16 grid */
    char file[512], path[700];
    snprintf(file, sizeof file, "%s/bf16.safetensors", tmp);
    const char *nm[] = { "a" };
    cr_dtype dt[] = { CR_DTYPE_F32 };
    uint64_t shape[][2] = { { 0, GN } }, off;
    const void *d[] = { v };
    uint64_t sz = vb_write_safetensors(file, 1, nm, dt, shape, d, &off);
    vm_builder b;
    vb_init(&b);
    uint32_t in = vb_input(&b, vb_file(&b, file, sz, 0), CR_DTYPE_F32, "a", off, GN * 4, 1, GN, GN);
    uint32_t o = vb_output(&b, "a", CR_DTYPE_F32, 0, GN);
    vb_shard(&b, "model.safetensors");
    uint32_t ks = vb_scalar(&b, 2345);
    uint32_t x = vb_select(&b, GN, GCHUNK);
    cr_op seq[] = { CR_OP_HIST_HI, CR_OP_HIST_LO, CR_OP_TIE_COUNT };
    cr_op top[] = { CR_OP_SEL_FIND_HI, CR_OP_SEL_FIND_LO, CR_OP_SEL_PREFIX };
    vb_m(&b, CR_OP_SEL_INIT, CR_DTYPE_NONE, x, ks, 0, 0);
    for (int i = 0; i < 3; i++) {
        uint32_t kk = vb_kernel_begin(&b, 1, GN, GCHUNK, 2, 0);
        vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, in, 0, 0);
        vb_k(&b, CR_OP_ADD, CR_DTYPE_BF16, 1, 0, 0, 0);   /* 2v: bf16 values */
        vb_k(&b, seq[i], CR_DTYPE_NONE, x, 1, 0, 0);
        if (i == 2) vb_k(&b, CR_OP_TORCH_DESC, CR_DTYPE_NONE, x, 1, 0, 0);
        vb_kernel_end(&b);
        vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, kk, 0, 0);
        vb_m(&b, top[i], CR_DTYPE_NONE, x, 0, 0, 0);
    }
    uint32_t kk = vb_kernel_begin(&b, 1, GN, GCHUNK, 2, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, in, 0, 0);
    vb_k(&b, CR_OP_ADD, CR_DTYPE_BF16, 1, 0, 0, 0);
    vb_k(&b, CR_OP_TOPK_MASK, CR_DTYPE_NONE, 0, 1, x, 0);
    vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o, 0, 0, 0);
    vb_kernel_end(&b);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, kk, 0, 0);
    cr_program p;
    vb_build(&b, &p);
    if (mark) cr_program_mark_kernels(&p);
    cr_error err = {0};
    cr_vm_options opt;
    cr_vm_options_init(&opt);
    opt.out_dir = out; opt.quiet = true; opt.threads = 3; opt.max_memory = max_memory; opt.stats = st;
    cr_status rs = cr_vm_run(&p, &opt, &err);
    CHECK_MSG(rs == CR_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    *shard = vb_read_file(path, len);
    cr_program_free(&p);
}

TEST(bf16_ties_skip_counting_passes)
{
    const char *names[] = { "bf16-pool", "bf16-budget", "bf16-unmarked" };
    uint64_t budget[] = { 0, 64ull << 20, 0 };
    bool mark[] = { true, true, false };
    uint32_t want_idle[] = { 2, 1, 0 };
    unsigned char *data[3] = { NULL, NULL, NULL };
    size_t len[3] = { 0, 0, 0 };
    for (int r = 0; r < 3; r++) {
        char out[512];
        snprintf(out, sizeof out, "%s/%s", tmp, names[r]);
        cr_vm_stats st;
        memset(&st, 0, sizeof st);
        run_bf16_ties(out, budget[r], mark[r], &st, &data[r], &len[r]);
        CHECK_MSG(st.kernels_idle == want_idle[r] && st.kernels_run == 4 - want_idle[r],
                  "%s: %u kernels idle, %u run; want %u idle", names[r], st.kernels_idle, st.kernels_run, want_idle[r]);
    }
    REQUIRE(data[0] && data[1] && data[2]);
    CHECK(len[0] == len[1] && len[0] == len[2] && memcmp(data[0], data[1], len[0]) == 0 &&
          memcmp(data[0], data[2], len[0]) == 0);
    for (int r = 0; r < 3; r++) free(data[r]);
}

int main(void)
{
    tmp = vb_tempdir();
    if (!tmp) return 1;
    RUN(topk_with_ties);
    RUN(topk_distinct_and_close_values);
    RUN(topk_ties_across_blocks);
    RUN(bad_k_is_an_error);
    RUN(gathers_are_kept_between_tensors);
    RUN(bf16_ties_skip_counting_passes);
    vb_rmtree(tmp);
    free(tmp);
    return cr_test_summary();
}
