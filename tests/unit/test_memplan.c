/* test_memplan.c — the memory model's arithmetic (vm/memplan.c) on a
 * hand-built program: one kernel adding two 512 KiB bf16 views of one file
 * (plus a second view of the first tensor), then a scratch tensor and a
 * selection. Checks what is counted whole, what streams under a budget,
 * when the budget is refused, and the distinct bytes read. */
#include "harness.h"
#include "memplan.h"

#define KIB 1024ull
#define N 512ull                       /* 512 x 512 bf16 = 512 KiB per view */

typedef struct fixture {
    cr_program p;
    cr_prog_file file;
    cr_prog_input in[3];
    cr_prog_output out;
    cr_prog_kernel k[2];
    cr_prog_scratch scr;
    cr_prog_select sel;
    cr_insn code[8];
    cr_insn main[12];
    uint8_t blobs[16];
} fixture;

static void build(fixture *f, bool with_scratch)
{
    memset(f, 0, sizeof *f);
    memcpy(f->blobs, "out\0in\0", 8);
    cr_program *p = &f->p;
    p->alloc = cr_default_allocator();
    p->blobs = f->blobs;
    p->n_blob_bytes = sizeof f->blobs;
    f->file = (cr_prog_file){ .model = CR_PROG_NO_MODEL, .rel = { 4, 2 }, .path = { 4, 2 }, .size = 2 * N * N * 2 + 4096 };
    p->files = &f->file; p->n_files = 1;
    for (int i = 0; i < 3; i++)
        f->in[i] = (cr_prog_input){ .file = 0, .dtype = CR_DTYPE_BF16, .kind = CR_INPUT_FILE,
                                    .name = { 4, 2 }, .offset = i == 1 ? N * N * 2 : 0,
                                    .nbytes = N * N * 2, .rows = N, .cols = N, .row_stride = N };
    p->inputs = f->in; p->n_inputs = 3;
    f->out = (cr_prog_output){ .name = { 0, 3 }, .dtype = CR_DTYPE_BF16, .nbytes = N * N * 2 };
    p->outputs = &f->out; p->n_outputs = 1;
    f->k[0] = (cr_prog_kernel){ .rows = N, .cols = N, .chunk = 16384, .code_begin = 0, .code_len = 5, .n_regs = 3 };
    f->code[0] = (cr_insn){ .op = CR_OP_LOAD, .dst = 0, .a = 0 };
    f->code[1] = (cr_insn){ .op = CR_OP_LOAD, .dst = 1, .a = 1 };
    f->code[2] = (cr_insn){ .op = CR_OP_LOAD, .dst = 2, .a = 2 };   /* same tensor as input 0 */
    f->code[3] = (cr_insn){ .op = CR_OP_ADD, .dst = 0, .a = 0, .b = 1 };
    f->code[4] = (cr_insn){ .op = CR_OP_STORE, .dst = 0, .a = 0 };
    uint32_t n = 0;
    f->main[n++] = (cr_insn){ .op = CR_OP_KERNEL, .a = 0 };
    f->main[n++] = (cr_insn){ .op = CR_OP_DONE };
    f->main[n++] = (cr_insn){ .op = CR_OP_RELEASE, .a = 0 };
    f->main[n++] = (cr_insn){ .op = CR_OP_RELEASE, .a = 1 };
    f->main[n++] = (cr_insn){ .op = CR_OP_RELEASE, .a = 2 };
    p->n_kernels = 1;
    if (with_scratch) {
        /* a second kernel writes a 4 MiB f32 scratch tensor while a
         * selection counts: both are heap at that step */
        f->scr = (cr_prog_scratch){ .dtype = CR_DTYPE_F32, .numel = 1 << 20 };
        p->scratch = &f->scr; p->n_scratch = 1;
        f->sel = (cr_prog_select){ .n = 1 << 20, .chunk = 16384 };
        p->selects = &f->sel; p->n_selects = 1;
        f->k[1] = (cr_prog_kernel){ .rows = 1024, .cols = 1024, .chunk = 16384, .code_begin = 5, .code_len = 2, .n_regs = 1 };
        f->code[5] = (cr_insn){ .op = CR_OP_SPLAT, .dst = 0, .a = 0 };
        f->code[6] = (cr_insn){ .op = CR_OP_SSTORE, .dst = 0, .a = 0 };
        f->main[n++] = (cr_insn){ .op = CR_OP_SEL_INIT, .dst = 0, .a = 0 };
        f->main[n++] = (cr_insn){ .op = CR_OP_KERNEL, .a = 1 };
        f->main[n++] = (cr_insn){ .op = CR_OP_SEL_FIND_HI, .dst = 0 };
        f->main[n++] = (cr_insn){ .op = CR_OP_SEL_FIND_LO, .dst = 0 };
        f->main[n++] = (cr_insn){ .op = CR_OP_SFREE, .dst = 0 };
        p->n_kernels = 2;
    }
    p->kernels = f->k;
    p->code = f->code; p->n_code = with_scratch ? 7 : 5;
    p->main = f->main; p->n_main = n;
}

TEST(whole_views_mapped_once)
{
    fixture f;
    build(&f, false);
    cr_memplan mp;
    cr_error err = {0};
    REQUIRE(cr_memplan_init(&mp, &f.p, 2, 0, NULL, &err) == CR_OK);
    CHECK_EQ_INT(mp.threads, 2);
    /* two distinct tensors, 512 KiB each (64 KiB aligned): the third view
     * shares input 0's pages */
    CHECK_EQ_INT(mp.peak_mapped, 1024 * KIB);
    CHECK_EQ_INT(mp.peak_heap, 0);
    CHECK_EQ_INT(mp.peak, mp.fixed + mp.peak_mapped);
    CHECK_EQ_INT(mp.n_streamed, 0);
    CHECK(mp.fixed >= CR_MEM_BASELINE);
    /* per thread: three registers one block long (3 x 1024 x 4 bytes) and
     * the STORE's staged chunk (16384 bf16 = 32 KiB) */
    uint64_t per_thread = 3 * CR_KERNEL_BLOCK * 4 + 16384 * 2;
    CHECK(mp.fixed - CR_MEM_BASELINE >= 2 * per_thread);
    CHECK(mp.fixed - CR_MEM_BASELINE < 2 * per_thread + 2 * 4096 + 256 * KIB);
    CHECK_EQ_INT(cr_memplan_file_bytes(&f.p), 1024 * KIB);
    cr_memplan_free(&mp);
}

TEST(budget_streams_then_refuses)
{
    fixture f;
    build(&f, false);
    cr_memplan whole, mp;
    cr_error err = {0};
    REQUIRE(cr_memplan_init(&whole, &f.p, 1, 0, NULL, &err) == CR_OK);
    /* room for the fixed part and 900 KiB: the kernel streams, each view
     * holding 6 x 16384 x 2 + 192 KiB = 384 KiB */
    REQUIRE(cr_memplan_init(&mp, &f.p, 1, whole.fixed + 900 * KIB, NULL, &err) == CR_OK);
    CHECK_EQ_INT(mp.n_streamed, 1);
    CHECK_EQ_INT(mp.stream[0], 1);
    CHECK_EQ_INT(mp.peak_mapped, 2 * 384 * KIB);
    CHECK(mp.peak <= whole.fixed + 900 * KIB);
    cr_memplan_free(&mp);
    /* with 2 threads the windows double and the thread buffers grow: it
     * runs on 1 thread instead */
    REQUIRE(cr_memplan_init(&mp, &f.p, 2, whole.fixed + 900 * KIB, NULL, &err) == CR_OK);
    CHECK_EQ_INT(mp.threads, 1);
    cr_memplan_free(&mp);
    /* below the fixed part: refused, naming the output and the budget */
    CHECK_EQ_INT(cr_memplan_init(&mp, &f.p, 1, whole.fixed + 100 * KIB, NULL, &err), CR_ERR_LIMIT);
    CHECK_CONTAINS(err.msg, "out needs about");
    CHECK_CONTAINS(err.msg, "--max-memory allows");
    CHECK(mp.stream == NULL);
    cr_memplan_free(&whole);
}

TEST(scratch_and_selection_are_heap)
{
    fixture f;
    build(&f, true);
    cr_memplan mp;
    cr_error err = {0};
    REQUIRE(cr_memplan_init(&mp, &f.p, 2, 0, NULL, &err) == CR_OK);
    /* at kernel 1: 4 MiB scratch (+1 byte, page-rounded), two 512 KiB
     * histograms and 64 tie counts; the views were released before it */
    CHECK_EQ_INT(mp.peak_pc, 6);
    CHECK_EQ_INT(mp.peak_mapped, 0);
    CHECK_EQ_INT(mp.peak_heap, 4 * 1024 * KIB + 4096 + 2 * 512 * KIB + 64 * 8);
    cr_memplan_free(&mp);
}

/* a kernel with a row op (ROWRANK) runs blocks of whole rows, as few as
 * make CR_KERNEL_BLOCK elements, not its whole chunk as one block; one
 * without a row op runs CR_KERNEL_BLOCK; a chunk of whole rows smaller than
 * that block is one block */
TEST(row_kernels_block_whole_rows)
{
    fixture f;
    build(&f, false);
    cr_prog_kernel *k = &f.k[0];
    CHECK(cr_kernel_block(&f.p, k) == CR_KERNEL_BLOCK);
    f.code[3] = (cr_insn){ .op = CR_OP_ROWRANK, .dst = 0, .a = 0 };
    k->flags = CR_KERNEL_ROWS;
    static const struct { uint64_t cols, chunk, block; } want[] = {
        { 512, 16384, 1024 }, { 2048, 16384, 2048 }, { 5632, 5632, 5632 }, { 100, 16300, 1100 },
        { 3000, 15000, 3000 }, { 64, 512, 512 },
    };
    for (size_t i = 0; i < CR_ARRAY_LEN(want); i++) {
        k->cols = want[i].cols;
        k->chunk = want[i].chunk;
        CHECK_MSG(cr_kernel_block(&f.p, k) == want[i].block, "cols %llu chunk %llu: block %llu, want %llu",
                  (unsigned long long)want[i].cols, (unsigned long long)want[i].chunk,
                  (unsigned long long)cr_kernel_block(&f.p, k), (unsigned long long)want[i].block);
    }
}

int main(void)
{
    RUN(whole_views_mapped_once);
    RUN(budget_streams_then_refuses);
    RUN(scratch_and_selection_are_heap);
    RUN(row_kernels_block_whole_rows);
    return cr_test_summary();
}
