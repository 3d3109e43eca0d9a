/* test_chunksum.c — mergekit 0.1.5's chunked slerp sums (RSUM_TORCH_CHUNKS,
 * RSSQ_TORCH_CHUNKS) run without the turn.
 *
 * The compiler gives a domain holding such sums chunks of 2^20 elements, so
 * each VM chunk reduces its own 2^20-chunks in its task (vm/refsum.c
 * cr_chunksum_add_at) instead of feeding one in-order stream chunk after
 * chunk. The bits must be those of the in-order state (cr_chunksum_add, a
 * plain sequential reference here), and of the same recipe compiled with
 * 16384-element chunks (the turn path, which .crb files compiled before
 * still take): at 1, 2 and 4 threads, on tensors of 2 and 4 chunks with a
 * short last one, and under a --max-memory below the unbounded peak, where
 * memplan runs the 2^20-chunk kernels streamed in small chunks
 * (CR_MEM_SMALL_CHUNKS) and the peak stays within the budget. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "support/vm_build.h"
#include "support/graph_fixtures.h"
#include "compile.h"
#include "memplan.h"
#include "refsum.h"

static char tmpdir[256];

/* the slerp statistics and a use of each: norms, the dot of the normalised
 * tensors, and an output that carries both */
static const char *body =
    "local a, b = ctx.inputs[1], ctx.inputs[2]\n"
    "local na, nb = cr.torch_chunked_norm(a), cr.torch_chunked_norm(b)\n"
    "local d = cr.torch_chunked_sum((a / na) * (b / nb))\n"
    "return (a * d) * na";

static float chunked(cr_chunksum_kind kind, const float *x, uint64_t n)
{
    float *st = malloc(cr_chunksum_state_bytes(kind, n) + 1);
    cr_chunksum s;
    cr_chunksum_init(&s, kind, n, st);
    cr_chunksum_add(&s, x, n);
    float r = cr_chunksum_finish(&s);
    free(st);
    return r;
}

static float *reference(const float *a, const float *b, uint64_t n)
{
    float na = sqrtf(chunked(CR_CHUNKSUM_TORCH_NORM, a, n)), nb = sqrtf(chunked(CR_CHUNKSUM_TORCH_NORM, b, n));
    float *out = malloc(n * sizeof *out);
    for (uint64_t i = 0; i < n; i++) out[i] = (a[i] / na) * (b[i] / nb);
    float d = chunked(CR_CHUNKSUM_TORCH, out, n);
    for (uint64_t i = 0; i < n; i++) out[i] = (a[i] * d) * na;
    return out;
}

/* compile body over rows x cols (chunk 0: the compiler's choice); the
 * input values in vals[0..1] */
static cr_status compile(uint64_t rows, uint64_t cols, uint64_t chunk, float **vals, cr_graph *g, cr_program *p,
                         cr_error *err)
{
    cr_lua *L;
    uint32_t in[2];
    cr_graph_init(g, cr_default_allocator());
    if (cr_lua_open(cr_default_allocator(), NULL, &L, err)) return CR_ERR_RUNTIME;
    uint32_t d = cr_test_graph_file_inputs(g, tmpdir, rows, cols, 2, in, vals);
    uint32_t r = d == UINT32_MAX ? CR_NO_NODE : cr_test_lua_merge(L, g, d, in, 2, false, body, false, err);
    cr_lua_close(L);
    if (r == CR_NO_NODE) return CR_ERR_CONFIG;
    cr_graph_output o = { .node = r, .domain = d, .name = "t.weight", .dtype = CR_DTYPE_F32, .ndim = 2,
                          .shape = { rows, cols } };
    cr_graph_add_output(g, &o);
    cr_compile_options co = { .chunk = chunk };
    return cr_compile_graph(g, &co, NULL, NULL, 0, p, err);
}

/* the chunk of every kernel holding a *_CHUNKS sum (0: none; UINT64_MAX: they differ) */
static uint64_t chunk_sum_chunk(const cr_program *p)
{
    uint64_t chunk = 0;
    for (uint32_t k = 0; k < p->n_kernels; k++)
        for (uint32_t c = p->kernels[k].code_begin; c < p->kernels[k].code_begin + p->kernels[k].code_len; c++) {
            if (cr_op_chunksum_kind((cr_op)p->code[c].op) < 0) continue;
            chunk = chunk && chunk != p->kernels[k].chunk ? UINT64_MAX : p->kernels[k].chunk;
        }
    return chunk;
}

/* tsan: chunks reduce their own 2^20-chunks on the pool threads; tools/sanitize.sh thread runs this test */
TEST(chunks_of_2_20_match_the_turn_path)
{
    static const uint64_t shapes[][2] = { {1030, 1024}, {3073, 1024} };   /* 2^20 + 6144; 3 x 2^20 + 1024 */
    for (size_t si = 0; si < CR_ARRAY_LEN(shapes); si++) {
        const uint64_t rows = shapes[si][0], cols = shapes[si][1], n = rows * cols;
        static const uint64_t chunks[] = { 0, 16384 };
        float *want = NULL;
        for (size_t ci = 0; ci < CR_ARRAY_LEN(chunks); ci++) {
            cr_graph g;
            cr_program p;
            cr_error err = {0};
            float *vals[2] = { NULL, NULL };
            cr_status st = compile(rows, cols, chunks[ci], vals, &g, &p, &err);
            CHECK_MSG(st == CR_OK, "%llux%llu chunk %llu: %s", (unsigned long long)rows, (unsigned long long)cols,
                      (unsigned long long)chunks[ci], err.msg);
            if (st) { cr_graph_free(&g); cr_free(cr_default_allocator(), vals[0]); cr_free(cr_default_allocator(), vals[1]); continue; }
            if (!want) want = reference(vals[0], vals[1], n);
            /* the compiler's choice: whole 2^20-chunks; an explicit chunk is kept */
            uint64_t kc = chunk_sum_chunk(&p);
            if (chunks[ci]) CHECK_EQ_INT((long long)kc, (long long)chunks[ci]);
            else CHECK_MSG(kc == CR_REFSUM_CHUNK, "kernels with chunked sums run chunks of %llu", (unsigned long long)kc);
            static const unsigned threads[] = { 1, 2, 4 };
            for (size_t ti = 0; ti < CR_ARRAY_LEN(threads); ti++) {
                char name[64];
                snprintf(name, sizeof name, "s%zu_c%zu_t%u", si, ci, threads[ti]);
                char out[512];
                snprintf(out, sizeof out, "%s/%s", tmpdir, name);
                int bad = vb_run_count_diffs(&p, out, threads[ti], 0, want, n, name, &err);
                CHECK_MSG(bad == 0, "%s: %d differ %s", name, bad, bad < 0 ? err.msg : "");
            }
            /* streamed under a budget below the unbounded peak: the plan fits it */
            cr_memplan mp;
            REQUIRE(cr_memplan_init(&mp, &p, 2, 0, NULL, &err) == CR_OK);
            /* most of the two inputs must go; the output stream's window is
             * in the unbounded peak but under a budget takes only headroom,
             * so it is taken off first (outstream.h) */
            uint64_t budget = mp.peak - mp.out.bytes - (uint64_t)n * 4;
            cr_memplan_free(&mp);
            st = cr_memplan_init(&mp, &p, 2, budget, NULL, &err);
            CHECK_MSG(st == CR_OK, "shape %zu chunk %llu: plan under %llu: %s", si, (unsigned long long)chunks[ci],
                      (unsigned long long)budget, err.msg);
            if (st == CR_OK) {
                CHECK_MSG(mp.n_streamed > 0, "shape %zu chunk %llu: peak %llu under %llu", si, (unsigned long long)chunks[ci],
                          (unsigned long long)mp.peak, (unsigned long long)budget);
                CHECK(mp.peak <= budget);
                /* the 2^20-chunk kernels stream in small chunks (the turn) */
                uint32_t small = 0;
                for (uint32_t pc = 0; pc < p.n_main; pc++) small += (mp.stream[pc] & CR_MEM_SMALL_CHUNKS) != 0;
                CHECK_EQ_INT(small, chunks[ci] ? 0 : 2);
                cr_memplan_free(&mp);
                char out[512];
                snprintf(out, sizeof out, "%s/s%zu_c%zu_budget", tmpdir, si, ci);
                int bad = vb_run_count_diffs(&p, out, 2, budget, want, n, "budget", &err);
                CHECK_MSG(bad == 0, "streamed: %d differ %s", bad, bad < 0 ? err.msg : "");
            }
            cr_free(cr_default_allocator(), vals[0]);
            cr_free(cr_default_allocator(), vals[1]);
            cr_program_free(&p);
            cr_graph_free(&g);
        }
        free(want);
    }
}

/* the pieces the whole path takes: any split at multiples of a block,
 * fed in chunk order or out of it, gives cr_chunksum_add's bits */
TEST(add_at_equals_in_order_state)
{
    const uint64_t n = 2 * CR_REFSUM_CHUNK + 777;
    float *x = malloc(n * sizeof *x);
    REQUIRE(x);
    for (uint64_t i = 0; i < n; i++) x[i] = sinf((float)i * 0.37f) * (1.0f + (float)(i % 7)) / 8.0f;
    for (int kind = 0; kind < 2; kind++) {
        float want = chunked((cr_chunksum_kind)kind, x, n);
        float *parts = malloc(cr_chunksum_parts_bytes(n));
        void *work = malloc(cr_chunksum_work_bytes(n));
        REQUIRE(parts && work);
        cr_chunksum s;
        cr_chunksum_init_parts(&s, (cr_chunksum_kind)kind, n, parts);
        static const uint64_t steps[] = { 1024, 4096, CR_REFSUM_CHUNK };
        for (size_t si = 0; si < CR_ARRAY_LEN(steps); si++) {
            CHECK(cr_chunksum_pieces_ok(n, steps[si]));
            memset(parts, 0xff, cr_chunksum_parts_bytes(n));
            for (uint64_t c = 3; c-- > 0;)   /* the last chunk first */
                for (uint64_t e = c * CR_REFSUM_CHUNK; e < n && e < (c + 1) * CR_REFSUM_CHUNK; e += steps[si])
                    cr_chunksum_add_at(&s, work, e, x + e, CR_MIN(steps[si], n - e));
            float got = cr_chunksum_finish(&s);
            CHECK_MSG(memcmp(&got, &want, 4) == 0, "kind %d step %llu: %a, want %a", kind,
                      (unsigned long long)steps[si], (double)got, (double)want);
        }
        CHECK(!cr_chunksum_pieces_ok(n, 1000));   /* pieces would straddle cascade groups */
        free(parts);
        free(work);
    }
    free(x);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/crucible-chunksum-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(add_at_equals_in_order_state);
    RUN(chunks_of_2_20_match_the_turn_path);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    return cr_test_summary();
}
