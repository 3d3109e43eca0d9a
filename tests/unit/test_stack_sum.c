/* test_stack_sum.c — cr.sum_of (stdlib/common.lua) is torch's
 * `torch.stack(list).sum(dim=0)` to the bit (spec/mergekit-0.1.5.md R3):
 * the models in list order on the first 32·⌊N/32⌋ elements (cascaded every
 * 16 values), row_sum's interleaved order on the last N mod 32, the 4·⌊N/4⌋
 * rule under 8 elements. The expected bits were printed by torch 2.15 (CPU,
 * AVX2, one thread) for x_i = cr_test_pattern(i mod 7, j) (f32) times the
 * Python float W[i]: `torch.stack([x_i * W[i] ...]).sum(dim=0)`; each table
 * says how many of its elements a plain list-order sum gets wrong. The
 * method runs through the compiler and the VM with 1 and 4 threads and
 * chunks of 16 elements, so the tail mask (TAIL op) is tested across
 * chunks. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "harness.h"
#include "support/vm_build.h"
#include "support/graph_fixtures.h"
#include "compile.h"
#include "safetensors.h"
#include "vm.h"

/* n = 5, 3x25: 4 elements differ from the sum in list order */
static const uint32_t want_5_3x25[] = {
    0xbf3e6668, 0xbfbc999a, 0xbfdfcccd, 0x3fa7cccc, 0x3edc0000, 0x3f9b999a, 0x3ef8cccd,
    0xbeca6664, 0x3ec80000, 0xbead999c, 0xbf9c3333, 0xbede6668, 0xbf950000, 0xbfb83333,
    0x3fcf6666, 0x3f3d3334, 0x3fc33333, 0x3f4b9998, 0xbdaffff8, 0x3f333334, 0xbcf33340,
    0xbf693333, 0xbe000000, 0xbf5accce, 0xbfde3333, 0x3de33330, 0x3f863334, 0x3feacccd,
    0x3f8d6666, 0x3e64ccd0, 0x3f813333, 0x3e8f3330, 0xbf19ffff, 0x3e3cccd0, 0xbf0b999a,
    0xbfb6999a, 0xbf240000, 0xbfaf6667, 0xbfd2999a, 0x3fb50000, 0x3f086668, 0x3fa8cccc,
    0x3f16cccd, 0xbe95999a, 0x3efccccc, 0xbe7199a0, 0xbf8f0000, 0xbea99998, 0xbf87cccd,
    0xbff8999a, 0xbdc33340, 0x3f57999a, 0x3fd06666, 0x3f660000, 0x3c8ccd00, 0x3f4d9999,
    0x3d966668, 0xbf4ecccc, 0xbcb33340, 0xbf406666, 0xbfd10000, 0x3e5b332c, 0x3f936667,
    0x3ff80000, 0x3f9a999a, 0x3ea73332, 0x3f8e6666, 0x3ec40000, 0xbeff3330, 0x3e933330,
    0xbee26666, 0xbfa96667, 0xbf09999a, 0xbfa23334, 0xbfc56666,
};
/* n = 7, 3x25: 6 elements differ from the sum in list order */
static const uint32_t want_7_3x25[] = {
    0xc0503334, 0xc0872666, 0xbf4c6668, 0xc00e4cce, 0x409ad99a, 0x3f920000, 0x3e2e6668,
    0x403f4ccd, 0xbf35999b, 0xbfd6ffff, 0x3f91cccc, 0xc023cccd, 0xc061e666, 0xbdd66670,
    0xbfc3cccd, 0x40b10ccd, 0x3feacccb, 0x3f5d3334, 0x406bb333, 0xbc800000, 0xbf7c6664,
    0x3fea9998, 0xbfeecccd, 0xc0358000, 0xbc8ccd10, 0xc029e666, 0xbffa9998, 0x4021cccc,
    0x3fc76667, 0x408c0ccd, 0x3f2d9998, 0xbe95999c, 0x4021b333, 0xbf960000, 0xc0091999,
    0x3f2d3333, 0xc0416666, 0xc07f8000, 0xbf113335, 0xbfff0000, 0x40a24000, 0x3faf9998,
    0x3ecd999c, 0x404e199a, 0xbef4ccd0, 0xbfb96665, 0x3faf6666, 0xc0150000, 0xc0531999,
    0xbef5999e, 0xc0478000, 0xc01ae666, 0x40043332, 0x3f8c3334, 0x407a8000, 0x3e5cccc8,
    0xbf413332, 0x4004199a, 0xbfd13334, 0xc026b332, 0x3e5b3332, 0xc01b199a, 0xbfdcfffe,
    0x40309999, 0x3fe50002, 0x40937333, 0x3f68cccd, 0xbd799980, 0x40307fff, 0xbf70cccd,
    0xbff49998, 0x3f686666, 0xc032999a, 0xc070b334, 0xbeac0001,
};
/* n = 20, 3x25: 34 elements differ from the sum in list order */
static const uint32_t want_20_3x25[] = {
    0xc19f8148, 0xc160dc29, 0xc04e9eb8, 0xc063b852, 0x4199eccd, 0x3fd10002, 0x40f08ccc,
    0x412287ae, 0xc0ee63d8, 0xbfc85c28, 0x3f89ae14, 0xc18441eb, 0xc12a5d70, 0x3e35c290,
    0xbe1bd750, 0x41b52c2a, 0x40a13d70, 0x412ec51f, 0x41590666, 0xc0816666, 0x3feb999c,
    0x408f68f5, 0xc152051e, 0xc0e7bd72, 0xc0933ae1, 0xc19491eb, 0x3d35c300, 0x41071d71,
    0x416543d8, 0x4187c290, 0xbf2347b2, 0x40a7e3d8, 0x40fc6667, 0xc11b8667, 0xc0757fff,
    0xbf98f5c2, 0xc1966c29, 0xc14eb1ed, 0xc005f5c0, 0xc01b0f5b, 0x41a301ec, 0x403128f3,
    0x410a70a4, 0x4134b1ec, 0xc0ca0f5c, 0xbedc28e8, 0x400d7fff, 0xc176599a, 0xc1183334,
    0xc0dbe3d9, 0xc1a6bc29, 0xc00e7ae1, 0x40c591ec, 0x4140ef5d, 0x416b30a4, 0xc03a23d8,
    0x403e75c3, 0x40b3bd72, 0xc13fdae2, 0xc0c368f4, 0xc05dcccd, 0xc18b7ccd, 0x3f96fffc,
    0x411947ad, 0x41776e14, 0x4190d7ae, 0x3efeb870, 0x40cc3852, 0x41105d70, 0xc1095c29,
    0xc02cd70b, 0xbd747b00, 0xc18d570a, 0xc13c87ae, 0xbf753332,
};
/* n = 5, 1x7: 2 elements differ from the sum in list order */
static const uint32_t want_5_1x7[] = {
    0xbf3e6668, 0xbfbc999a, 0xbfdfcccd, 0x3fa7cccc, 0x3edc0002, 0x3f9b999a, 0x3ef8cccc,
};

typedef struct stack_case { int n; uint64_t rows, cols; const uint32_t *want; } stack_case;

static const stack_case cases[] = {
    { 5, 3, 25, want_5_3x25 },
    { 7, 3, 25, want_7_3x25 },
    { 20, 3, 25, want_20_3x25 },
    { 5, 1, 7, want_5_1x7 },
};

static char tmpdir[256];

/* n products of the 7 fixture tensors (input i mod 7) with weights W[i] */
static const char *body_fmt =
    "local W = { 0.35, 0.1, 0.3, 0.15, 0.25, 0.45, 0.2, 0.05, 0.4, 0.6, 0.7, 0.55, 0.65, 0.75, 0.8,\n"
    "            0.85, 0.9, 0.95, 0.12, 0.33 }\n"
    "local t = {}\n"
    "for i = 1, %d do t[i] = ctx.inputs[(i - 1) %% 7 + 1] * W[i] end\n"
    "return cr.sum_of(t)";

static cr_status stack_compile(const stack_case *c, cr_graph *g, cr_program *p, cr_error *err)
{
    cr_lua *L;
    uint32_t in[7];
    char body[512];
    snprintf(body, sizeof body, body_fmt, c->n);
    cr_graph_init(g, cr_default_allocator());
    if (cr_lua_open(cr_default_allocator(), NULL, &L, err)) return CR_ERR_RUNTIME;
    uint32_t d = cr_test_graph_file_inputs(g, tmpdir, c->rows, c->cols, 7, in, NULL);
    uint32_t r = d == UINT32_MAX ? CR_NO_NODE : cr_test_lua_merge(L, g, d, in, 7, false, body, false, err);
    cr_lua_close(L);
    if (r == CR_NO_NODE) return CR_ERR_CONFIG;
    cr_graph_output o = { .node = r, .domain = d, .name = "t.weight", .dtype = CR_DTYPE_F32, .ndim = 2,
                          .shape = { c->rows, c->cols } };
    cr_graph_add_output(g, &o);
    cr_compile_options co = { .chunk = 16 };
    return cr_compile_graph(g, &co, NULL, NULL, 0, p, err);
}

/* run p into tmpdir/name and count the elements differing from want (-1: the run failed) */
static int stack_run(const cr_program *p, const char *name, unsigned threads, const uint32_t *want, uint64_t n,
                     cr_error *err)
{
    char out[512];
    snprintf(out, sizeof out, "%s/%s", tmpdir, name);
    return vb_run_count_diffs(p, out, threads, 0, want, n, name, err);
}

TEST(sum_of_is_torch_stack_sum)
{
    for (size_t ci = 0; ci < CR_ARRAY_LEN(cases); ci++) {
        const stack_case *c = &cases[ci];
        cr_graph g;
        cr_program p;
        cr_error err = {0};
        cr_status st = stack_compile(c, &g, &p, &err);
        CHECK_MSG(st == CR_OK, "n=%d %llux%llu: %s", c->n, (unsigned long long)c->rows,
                  (unsigned long long)c->cols, err.msg);
        if (st == CR_OK) {
            static const unsigned threads[] = { 1, 4 };
            for (size_t ti = 0; ti < CR_ARRAY_LEN(threads); ti++) {
                char name[64];
                snprintf(name, sizeof name, "s%zu_t%u", ci, threads[ti]);
                int bad = stack_run(&p, name, threads[ti], c->want, c->rows * c->cols, &err);
                CHECK_MSG(bad == 0, "n=%d %llux%llu threads %u: %d elements differ %s", c->n,
                          (unsigned long long)c->rows, (unsigned long long)c->cols, threads[ti], bad,
                          bad < 0 ? err.msg : "");
            }
            cr_program_free(&p);
        }
        cr_graph_free(&g);
    }
}

/* tsan: runs the VM with 4 threads; tools/sanitize.sh thread runs this test */
int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/crucible-stacksum-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(sum_of_is_torch_stack_sum);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    return cr_test_summary();
}
