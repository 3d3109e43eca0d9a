/* test_program.c — XXH64 and Philox known answers, .crb save/load round
 * trip, corrupted and crafted files rejected with clear messages (and never
 * a crash: every byte of a program is flipped and reloaded), verifier rules,
 * and spec/opcodes.md kept in sync with ops.def. */
#include "harness.h"
#include "support/vm_build.h"
#include "hash.h"
#include "rng.h"
#include "vm.h"

#include <stdlib.h>
#include <unistd.h>

static char *tmp;

TEST(xxh64_known_answers)
{
    CHECK(cr_xxh64("", 0, 0) == 0xEF46DB3751D8E999ull);
    CHECK(cr_xxh64("a", 1, 0) == 0xD24EC4F1A98C6E5Bull);
    CHECK(cr_xxh64("abc", 3, 0) == 0x44BC2CF5AD770999ull);
    const char *t = "Nobody inspects the spammish repetition";
    CHECK(cr_xxh64(t, strlen(t), 0) == 0xFBCEA83C8A378BF1ull);
    /* streaming in uneven pieces gives the one-shot value */
    static unsigned char big[5000];
    for (int i = 0; i < 5000; i++) big[i] = (unsigned char)(i * 131 + 7);
    uint64_t one = cr_xxh64(big, sizeof big, 0);
    cr_xxh64_state h;
    cr_xxh64_init(&h, 0);
    size_t pos = 0, step = 1;
    while (pos < sizeof big) {
        size_t n = CR_MIN(step, sizeof big - pos);
        cr_xxh64_update(&h, big + pos, n);
        pos += n;
        step = step * 3 % 97 + 1;
    }
    CHECK(cr_xxh64_final(&h) == one);
}

TEST(philox_known_answers)
{
    /* Random123 kat_vectors, philox4x32 10 */
    uint32_t out[4];
    uint32_t c0[4] = {0, 0, 0, 0}, k0[2] = {0, 0};
    cr_philox4x32_10(c0, k0, out);
    CHECK(out[0] == 0x6627e8d5u && out[1] == 0xe169c58du && out[2] == 0xbc57ac4cu && out[3] == 0x9b00dbd8u);
    uint32_t c1[4] = {~0u, ~0u, ~0u, ~0u}, k1[2] = {~0u, ~0u};
    cr_philox4x32_10(c1, k1, out);
    CHECK(out[0] == 0x408f276du && out[1] == 0x41c83b0eu && out[2] == 0xa20bc7c6u && out[3] == 0x6d5451fdu);
    uint32_t c2[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, k2[2] = {0xa4093822u, 0x299f31d0u};
    cr_philox4x32_10(c2, k2, out);
    CHECK(out[0] == 0xd16cfe09u && out[1] == 0x94fdccebu && out[2] == 0x5001e420u && out[3] == 0x24126ea1u);
    /* the element mapping: element i uses word i%4 of counter i/4 */
    float u[9];
    cr_rng_uniform(0, 0, 0, u, 9);
    CHECK(u[0] == (float)(0x6627e8d5u >> 8) / 16777216.0f);
    CHECK(u[3] == (float)(0x9b00dbd8u >> 8) / 16777216.0f);
    float v;
    cr_rng_uniform(0, 0, 5, &v, 1);
    CHECK(v == u[5]);
}

/* a small valid program using most tables */
static void build_sample(cr_program *p)
{
    vm_builder b;
    vb_init(&b);
    b.seed = 1234;
    uint32_t f = vb_file(&b, "/nonexistent/in.safetensors", 8 + 64 + 400, 0x1234);
    uint32_t in = vb_input(&b, f, CR_DTYPE_BF16, "layer.0.w", 72, 400, 10, 20, 20);
    uint32_t o = vb_output(&b, "layer.0.w", CR_DTYPE_BF16, 10, 20);
    vb_shard(&b, "model.safetensors");
    vb_aux_write(&b, "config.json", "{}");
    uint32_t s = vb_scalar(&b, 0.5);
    uint32_t w = vb_rowvec(&b, 10);
    uint32_t x = vb_select(&b, 200, 40);
    uint32_t st = vb_stream(&b, 99);
    uint32_t msg = vb_message(&b, "bad");
    uint32_t k = vb_kernel_begin(&b, 10, 20, 40, 3, CR_KERNEL_ROWS);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, in, 0, 0);
    vb_k(&b, CR_OP_RAND, CR_DTYPE_NONE, 1, st, 0, 0);
    vb_k(&b, CR_OP_RSUM_ROW, CR_DTYPE_F64, w, 0, 0, 0);
    vb_k(&b, CR_OP_HIST_HI, CR_DTYPE_NONE, x, 0, 0, 0);
    vb_k(&b, CR_OP_SPLAT, CR_DTYPE_NONE, 2, s, 0, 0);
    vb_k(&b, CR_OP_MUL, CR_DTYPE_BF16, 0, 0, 2, 0);
    vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o, 0, 0, 0);
    vb_kernel_end(&b);
    vb_m(&b, CR_OP_SEL_INIT, CR_DTYPE_NONE, x, s, 0, 0);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k, 0, 0);
    vb_m(&b, CR_OP_CHECK, CR_DTYPE_NONE, 0, s, 0, msg);
    vb_m(&b, CR_OP_DONE, CR_DTYPE_NONE, o, 0, 0, 0);
    vb_build(&b, p);
}

static char *crb_path(const char *name)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", tmp, name);
    return buf;
}

static void write_bytes(const char *path, const unsigned char *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(d, 1, n, f);
    fclose(f);
}

/* header layout from spec/bytecode.md: body_hash at 80, header size at 16 */
static void rehash(unsigned char *d, size_t n)
{
    uint32_t hs;
    memcpy(&hs, d + 16, 4);
    uint64_t h = cr_xxh64(d + hs, n - hs, 0);
    memcpy(d + hs - 8, &h, 8);     /* the body hash ends the header */
}

TEST(save_load_round_trip)
{
    cr_program p, q;
    build_sample(&p);
    cr_error err = {0};
    REQUIRE(cr_program_verify(&p, &err) == CR_OK);
    CHECK_MSG(cr_program_save(&p, crb_path("a.crb"), &err) == CR_OK, "%s", err.msg);
    CHECK_MSG(cr_program_load(cr_default_allocator(), crb_path("a.crb"), &q, &err) == CR_OK, "%s", err.msg);
    CHECK_EQ_INT(q.n_code, p.n_code);
    CHECK_EQ_INT(q.n_main, p.n_main);
    CHECK(q.seed == 1234);
    CHECK(q.n_blob_bytes == p.n_blob_bytes && !memcmp(q.blobs, p.blobs, p.n_blob_bytes));
    CHECK(!memcmp(q.code, p.code, p.n_code * sizeof *p.code));
    CHECK(!memcmp(q.outputs, p.outputs, p.n_outputs * sizeof *p.outputs));
    CHECK_STR(cr_prog_str(&q, q.inputs[0].name), "layer.0.w");
    /* saving again gives the same bytes (reproducible programs) */
    CHECK(cr_program_save(&q, crb_path("b.crb"), &err) == CR_OK);
    size_t la, lb;
    unsigned char *a = vb_read_file(crb_path("a.crb"), &la), *b2 = vb_read_file(crb_path("b.crb"), &lb);
    CHECK(a && b2 && la == lb && !memcmp(a, b2, la));
    free(a); free(b2);
    cr_program_free(&q);
    cr_program_free(&p);
}

TEST(corrupted_files_rejected)
{
    cr_program p, q;
    build_sample(&p);
    cr_error err = {0};
    REQUIRE(cr_program_save(&p, crb_path("c.crb"), &err) == CR_OK);
    size_t n;
    unsigned char *d = vb_read_file(crb_path("c.crb"), &n);
    REQUIRE(d);
    unsigned char *m = malloc(n);

    memcpy(m, d, n); m[0] = 'X';
    write_bytes(crb_path("bad.crb"), m, n);
    CHECK_EQ_INT(cr_program_load(cr_default_allocator(), crb_path("bad.crb"), &q, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "bad magic");

    memcpy(m, d, n); m[8] = 9;
    write_bytes(crb_path("bad.crb"), m, n);
    CHECK_EQ_INT(cr_program_load(cr_default_allocator(), crb_path("bad.crb"), &q, &err), CR_ERR_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "format version 9");

    memcpy(m, d, n); m[12] = 1; m[13] = 2; m[14] = 3; m[15] = 4;
    write_bytes(crb_path("bad.crb"), m, n);
    CHECK_EQ_INT(cr_program_load(cr_default_allocator(), crb_path("bad.crb"), &q, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "byte order");

    write_bytes(crb_path("bad.crb"), d, n - 8);
    CHECK_EQ_INT(cr_program_load(cr_default_allocator(), crb_path("bad.crb"), &q, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "truncated");

    write_bytes(crb_path("bad.crb"), d, 10);
    CHECK_EQ_INT(cr_program_load(cr_default_allocator(), crb_path("bad.crb"), &q, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "too short");

    memcpy(m, d, n); m[40] ^= 1;    /* op table fingerprint: another crucible's instruction set */
    write_bytes(crb_path("bad.crb"), m, n);
    CHECK_EQ_INT(cr_program_load(cr_default_allocator(), crb_path("bad.crb"), &q, &err), CR_ERR_UNSUPPORTED);
    CHECK_CONTAINS(err.msg, "another instruction set");
    CHECK_CONTAINS(err.msg, "compile the recipe again");

    memcpy(m, d, n); m[n - 20] ^= 0x40;
    write_bytes(crb_path("bad.crb"), m, n);
    CHECK_EQ_INT(cr_program_load(cr_default_allocator(), crb_path("bad.crb"), &q, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "corrupted");

    /* crafted: a valid checksum over a bad operand. Find the code section's
     * LOAD (op 31... whatever its number) by its input operand and point the
     * register past n_regs. */
    memcpy(m, d, n);
    size_t found = 0;
    for (size_t i = 0; i + sizeof(cr_insn) <= n; i += 4) {
        cr_insn in;
        memcpy(&in, m + i, sizeof in);
        if (in.op == CR_OP_RAND && in.dst == 1 && in.a == 0) { found = i; break; }
    }
    REQUIRE(found);
    uint32_t big = 200;
    memcpy(m + found + 4, &big, 4);
    rehash(m, n);
    write_bytes(crb_path("bad.crb"), m, n);
    CHECK_EQ_INT(cr_program_load(cr_default_allocator(), crb_path("bad.crb"), &q, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "register 200 out of range");
    CHECK_CONTAINS(err.msg, "bad.crb");

    /* every single-byte change, re-checksummed, loads or fails cleanly */
    int accepted = 0;
    uint32_t header_size;
    memcpy(&header_size, d + 16, 4);
    for (size_t i = header_size; i < n; i++) {
        memcpy(m, d, n);
        m[i] ^= (unsigned char)(1u << (i % 8));
        rehash(m, n);
        write_bytes(crb_path("fuzz.crb"), m, n);
        if (cr_program_load(cr_default_allocator(), crb_path("fuzz.crb"), &q, &err) == CR_OK) {
            accepted++;
            cr_program_free(&q);
        }
    }
    CHECK(accepted < (int)n / 2);   /* most changes are caught by the verifier */
    free(m);
    free(d);
    cr_program_free(&p);
}

static cr_status verify_with(void (*mutate)(cr_program *), cr_error *err)
{
    cr_program p;
    build_sample(&p);
    mutate(&p);
    cr_status s = cr_program_verify(&p, err);
    cr_program_free(&p);
    return s;
}

static void m_kernel_op_top(cr_program *p) { p->main[3].op = CR_OP_LOAD; }
static void m_top_op_kernel(cr_program *p) { p->code[4].op = CR_OP_SEL_FIND_HI; p->code[4].dst = 0; p->code[4].a = 0; }
static void m_view_past_file(cr_program *p) { p->inputs[0].offset = 100; }
static void m_output_overlap(cr_program *p) { p->shards[0].file_size += 8; p->outputs[0].nbytes -= 0; p->outputs[0].offset += 8; p->outputs[0].offset -= 16; }
static void m_chunk_not_rows(cr_program *p) { p->kernels[0].chunk = 30; p->selects[0].chunk = 30; }
static void m_read_before_write(cr_program *p) { p->code[5].b = 1; p->code[1].op = CR_OP_SPLAT; p->code[1].a = 0; p->code[1].dst = 2; }
static void m_bad_dtype(cr_program *p) { p->code[5].dtype = CR_DTYPE_I32; }
static void m_slash_name(cr_program *p) { memcpy(p->blobs + p->shards[0].file_name.off, "../x", 4); }
static void m_nonzero_unused(cr_program *p) { p->main[1].c = 5; }
static void m_select_domain(cr_program *p) { p->selects[0].n = 199; }
/* the sample kernel stores an output and counts no ties or gathers */
static void m_false_ties_only(cr_program *p) { p->kernels[0].flags |= CR_KERNEL_TIES_ONLY; }
static void m_false_early_gather(cr_program *p) { p->kernels[0].flags |= CR_KERNEL_EARLY_GATHER; }
static void m_false_hi_gather(cr_program *p) { p->kernels[0].flags |= CR_KERNEL_HI_GATHER; }
/* row gathers (tokenizer merging): a table of the wrong length, and one
 * whose first entry (text bytes of the pool) names a row past the tensor */
static void m_rowmap_short(cr_program *p) { p->inputs[0].rowmap = (cr_blob){ 0, p->inputs[0].rows * 4 - 4 }; }
static void m_rowmap_past(cr_program *p)
{
    uint64_t len = p->inputs[0].rows * 4, off = 0;
    while (off + len <= p->n_blob_bytes) {
        uint32_t v;
        memcpy(&v, p->blobs + off, 4);
        if (v && v != CR_ROWMAP_ZERO && v > p->inputs[0].nbytes) break;
        off += 4;
    }
    p->inputs[0].rowmap = (cr_blob){ off, len };
}

TEST(verifier_rules)
{
    cr_error err = {0};
    CHECK_EQ_INT(verify_with(m_kernel_op_top, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "kernel op load at top level");
    CHECK_EQ_INT(verify_with(m_top_op_kernel, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "top-level op sel_find_hi inside kernel");
    CHECK_EQ_INT(verify_with(m_view_past_file, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "past the end of /nonexistent/in.safetensors");
    CHECK_EQ_INT(verify_with(m_output_overlap, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "outside the data of shard");
    CHECK_EQ_INT(verify_with(m_chunk_not_rows, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "not a multiple of cols");
    CHECK_EQ_INT(verify_with(m_read_before_write, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "read before it is written");
    CHECK_EQ_INT(verify_with(m_bad_dtype, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "invalid dtype");
    CHECK_EQ_INT(verify_with(m_slash_name, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "plain name inside OUT_DIR");
    CHECK_EQ_INT(verify_with(m_nonzero_unused, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "unused operand");
    CHECK_EQ_INT(verify_with(m_select_domain, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "selection 0 is over 199");
    CHECK_EQ_INT(verify_with(m_false_ties_only, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "flagged ties-only");
    CHECK_EQ_INT(verify_with(m_false_early_gather, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "flagged early-gather");
    CHECK_EQ_INT(verify_with(m_false_hi_gather, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "flagged hi-gather");
    CHECK_EQ_INT(verify_with(m_rowmap_short, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "bad row table");
    CHECK_EQ_INT(verify_with(m_rowmap_past, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "row table entry 0");
}

/* The compiler's kernel facts: a kernel of tie counts and torch gathers is
 * TIES_ONLY, the HIST_LO pass of a torch-ordered selection EARLY_GATHER
 * (and TIES_ONLY: in direct mode it only counts ties), the HIST_HI pass of
 * one over bf16 values (a bf16 view, or an op rounded to BF16) HI_GATHER
 * but not over f32 values, and no flag is set on a kernel with other
 * effects. */
TEST(kernel_flags_marked_and_checked)
{
    vm_builder b;
    vb_init(&b);
    uint32_t f = vb_file(&b, "/nonexistent/in.safetensors", 8 + 64 + 400, 0);
    uint32_t in = vb_input(&b, f, CR_DTYPE_BF16, "w", 72, 400, 10, 20, 20);
    uint32_t o = vb_output(&b, "w", CR_DTYPE_BF16, 10, 20);
    vb_shard(&b, "model.safetensors");
    uint32_t s = vb_scalar(&b, 7);
    uint32_t x = vb_select(&b, 200, 40);
    uint32_t k0 = vb_kernel_begin(&b, 10, 20, 40, 2, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, in, 0, 0);
    vb_k(&b, CR_OP_SUB, CR_DTYPE_BF16, 1, 0, 0, 0);
    vb_k(&b, CR_OP_HIST_HI, CR_DTYPE_NONE, x, 1, 0, 0);
    vb_kernel_end(&b);
    uint32_t k0f = vb_kernel_begin(&b, 10, 20, 40, 2, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, in, 0, 0);
    vb_k(&b, CR_OP_SUB, CR_DTYPE_F32, 1, 0, 0, 0);
    vb_k(&b, CR_OP_HIST_HI, CR_DTYPE_NONE, x, 1, 0, 0);
    vb_kernel_end(&b);
    uint32_t k1 = vb_kernel_begin(&b, 10, 20, 40, 1, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, in, 0, 0);
    vb_k(&b, CR_OP_HIST_LO, CR_DTYPE_NONE, x, 0, 0, 0);
    vb_kernel_end(&b);
    uint32_t k2 = vb_kernel_begin(&b, 10, 20, 40, 1, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, in, 0, 0);
    vb_k(&b, CR_OP_TIE_COUNT, CR_DTYPE_NONE, x, 0, 0, 0);
    vb_k(&b, CR_OP_TORCH_DESC, CR_DTYPE_NONE, x, 0, 0, 0);
    vb_kernel_end(&b);
    uint32_t k3 = vb_kernel_begin(&b, 10, 20, 40, 2, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, in, 0, 0);
    vb_k(&b, CR_OP_TOPK_MASK, CR_DTYPE_NONE, 1, 0, x, 0);
    vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o, 1, 0, 0);
    vb_kernel_end(&b);
    vb_m(&b, CR_OP_SEL_INIT, CR_DTYPE_NONE, x, s, 0, 0);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k0, 0, 0);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k0f, 0, 0);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k1, 0, 0);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k2, 0, 0);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k3, 0, 0);
    cr_program p;
    vb_build(&b, &p);
    cr_program_mark_kernels(&p);
    CHECK_EQ_INT(p.kernels[k0].flags, CR_KERNEL_HI_GATHER);
    CHECK_EQ_INT(p.kernels[k0f].flags, 0);
    CHECK_EQ_INT(p.kernels[k1].flags, CR_KERNEL_EARLY_GATHER | CR_KERNEL_TIES_ONLY);
    CHECK_EQ_INT(p.kernels[k2].flags, CR_KERNEL_TIES_ONLY);
    CHECK_EQ_INT(p.kernels[k3].flags, 0);
    cr_error err = {0};
    CHECK_MSG(cr_program_verify(&p, &err) == CR_OK, "%s", err.msg);
    cr_program_free(&p);
}

TEST(two_outputs_overlap)
{
    vm_builder b;
    vb_init(&b);
    vb_output(&b, "a", CR_DTYPE_F32, 2, 2);
    vb_output(&b, "b", CR_DTYPE_F32, 2, 2);
    vb_shard(&b, "m.safetensors");
    cr_program p;
    vb_build(&b, &p);
    cr_error err = {0};
    CHECK(cr_program_verify(&p, &err) == CR_OK);
    p.outputs[1].offset -= 4;
    CHECK_EQ_INT(cr_program_verify(&p, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "outputs a and b overlap");
    cr_program_free(&p);
}

TEST(opcodes_md_is_current)
{
    char *gen = NULL;
    size_t glen = 0;
    FILE *f = open_memstream(&gen, &glen);
    cr_ops_markdown(f);
    fclose(f);
    size_t len;
    unsigned char *file = vb_read_file("spec/opcodes.md", &len);
    CHECK_MSG(file != NULL, "%s", "spec/opcodes.md missing (run from the repo root)");
    CHECK_MSG(file && len == glen && !memcmp(file, gen, len),
              "%s", "spec/opcodes.md is stale: regenerate with `crucible ops --markdown > spec/opcodes.md`");
    free(file);
    free(gen);
}

TEST(explain_lists_everything)
{
    cr_program p;
    build_sample(&p);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    cr_program_explain(&p, f);
    fclose(f);
    CHECK_CONTAINS(out, "sel_init");
    CHECK_CONTAINS(out, "kernel");
    CHECK_CONTAINS(out, "rsum_row");
    CHECK_CONTAINS(out, "layer.0.w");
    CHECK_CONTAINS(out, "model.safetensors");
    free(out);
    cr_program_free(&p);
}

int main(void)
{
    tmp = vb_tempdir();
    if (!tmp) return 1;
    RUN(xxh64_known_answers);
    RUN(philox_known_answers);
    RUN(save_load_round_trip);
    RUN(corrupted_files_rejected);
    RUN(verifier_rules);
    RUN(kernel_flags_marked_and_checked);
    RUN(two_outputs_overlap);
    RUN(opcodes_md_is_current);
    RUN(explain_lists_everything);
    vb_rmtree(tmp);
    free(tmp);
    return cr_test_summary();
}
