/* test_hasher.c — the shard hasher thread (vm/hasher.h): the digests the
 * VM records are those of the finished files, whatever order the tensors
 * are written in, and the bytes left to hash after the last write are only
 * those after the frontier (none, with opt.hash_sync), not the whole file.
 */
#include "harness.h"
#include "support/vm_build.h"
#include "hash.h"
#include "io.h"
#include "outhash.h"
#include "vm.h"

#include <stdlib.h>
#include <string.h>

static char *tmp;

static char *path_in(const char *name)
{
    static char buf[8][512];
    static int i;
    i = (i + 1) % 8;
    snprintf(buf[i], sizeof buf[i], "%s/%s", tmp, name);
    return buf[i];
}

enum { R = 7, C = 301, N_OUT = 3 };
static float src[R * C];

static const char *const shard_names[] = { "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors" };

/* outputs x, y (shard 1) and z (shard 2), each the input times a
 * different weight, computed in the order y, z, x: shard 1's first tensor
 * in file order is written last */
static void build(cr_program *p)
{
    for (int i = 0; i < R * C; i++) src[i] = (float)i * 0.25f - 100.0f;
    const char *nm[] = { "t" };
    cr_dtype dt[] = { CR_DTYPE_F32 };
    uint64_t shape[][2] = { { R, C } }, off;
    const void *d[] = { src };
    uint64_t sz = vb_write_safetensors(path_in("in.safetensors"), 1, nm, dt, shape, d, &off);
    vm_builder b;
    vb_init(&b);
    uint32_t f = vb_file(&b, path_in("in.safetensors"), sz, 0);
    uint32_t in = vb_input(&b, f, CR_DTYPE_F32, "t", off, R * C * 4, R, C, C);
    uint32_t o[N_OUT];
    o[0] = vb_output(&b, "x", CR_DTYPE_F32, R, C);
    o[1] = vb_output(&b, "y", CR_DTYPE_F32, R, C);
    vb_shard(&b, shard_names[0]);
    o[2] = vb_output(&b, "z", CR_DTYPE_F32, R, C);
    vb_shard(&b, shard_names[1]);
    static const int order[N_OUT] = { 1, 2, 0 };
    for (int i = 0; i < N_OUT; i++) {
        uint32_t w = vb_scalar(&b, 1.0 + order[i]);
        uint32_t k = vb_kernel_begin(&b, R, C, 128, 2, 0);
        vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, in, 0, 0);
        vb_k(&b, CR_OP_SPLAT, CR_DTYPE_NONE, 1, w, 0, 0);
        vb_k(&b, CR_OP_MUL, CR_DTYPE_F32, 0, 0, 1, 0);
        vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o[order[i]], 0, 0, 0);
        vb_kernel_end(&b);
        vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k, 0, 0);
        vb_m(&b, CR_OP_DONE, CR_DTYPE_NONE, o[order[i]], 0, 0, 0);
    }
    vb_aux_write(&b, "model.safetensors.index.json",
                 "{\n  \"metadata\": {\n    \"total_size\": 25284\n  },\n  \"weight_map\": {}\n}\n");
    vb_build(&b, p);
}

/* every shard's recorded hash is the finished file's */
static void check_index(const char *out)
{
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", out);
    size_t len;
    unsigned char *index = vb_read_file(path, &len);
    REQUIRE(index);
    char *text = malloc(len + 1);
    REQUIRE(text);
    memcpy(text, index, len);
    text[len] = 0;
    for (int s = 0; s < 2; s++) {
        snprintf(path, sizeof path, "%s/%s", out, shard_names[s]);
        uint64_t h;
        cr_error err = {0};
        CHECK_MSG(cr_hash_path(cr_default_allocator(), path, &h, NULL, &err) == CR_OK, "%s", err.msg);
        char want[80], hex[17];
        cr_hash_hex(h, hex);
        snprintf(want, sizeof want, "\"%s\": \"%s\"", shard_names[s], hex);
        CHECK_MSG(strstr(text, want) != NULL, "%s not in %s", want, text);
    }
    free(text);
    free(index);
}

/* with hash_sync, each completed tensor is hashed before the next write, so
 * nothing is left after the last one (hashing the finished files left
 * every byte of both shards); without it the digests are the same */
TEST(shard_hashes_follow_the_written_prefix)
{
    cr_program p;
    build(&p);
    uint64_t file_bytes = p.shards[0].file_size + p.shards[1].file_size;
    static const unsigned threads[] = { 1, 3 };
    for (int sync = 0; sync < 2; sync++) {
        for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
            for (int mem = 0; mem < 2; mem++) {
                cr_vm_stats st = {0};
                cr_vm_options o;
                cr_vm_options_init(&o);
                char name[32];
                snprintf(name, sizeof name, "out%d_%zu_%d", sync, t, mem);
                o.out_dir = path_in(name);
                o.threads = threads[t];
                o.max_memory = mem ? (uint64_t)32 << 20 : 0;
                o.quiet = true;
                o.stats = &st;
                o.hash_sync = sync;
                o.no_output_stream = true;   /* the hasher serves the shards the stream does not */
                cr_error err = {0};
                CHECK_MSG(cr_vm_run(&p, &o, &err) == CR_OK, "%s", err.msg);
                check_index(o.out_dir);
                if (sync) CHECK_EQ_INT(st.hash_tail_bytes, 0);
                else CHECK(st.hash_tail_bytes <= file_bytes);
            }
        }
    }
    cr_program_free(&p);
}

/* a write that fails at any point of the run stops it with that error:
 * the hasher thread is stopped and freed (no hang; ASan/TSan see no leak
 * or race), whether it was waiting, hashing or done */
TEST(failed_write_mid_merge_stops_the_hasher)
{
    cr_program p;
    build(&p);
    for (int sync = 0; sync < 2; sync++) {
        for (long at = 0; at < 40; at++) {
            cr_failing_io fio;
            cr_failing_io_init(&fio, cr_posix_io(), at, CR_IO_FAULT_EIO);
            cr_vm_options o;
            cr_vm_options_init(&o);
            char name[32];
            snprintf(name, sizeof name, "fail%d_%ld", sync, at);
            o.out_dir = path_in(name);
            o.threads = 2;
            o.quiet = true;
            o.io = &fio.base;
            o.hash_sync = sync;
            o.no_output_stream = true;
            cr_error err = {0};
            cr_status s = cr_vm_run(&p, &o, &err);
            CHECK_MSG(fio.failed ? s != CR_OK : s == CR_OK, "fail_at %ld: status %d, %s", at, (int)s, err.msg);
            if (!s) check_index(o.out_dir);
        }
    }
    cr_program_free(&p);
}

/* tsan: the hasher thread against the VM's writers */
int main(void)
{
    tmp = vb_tempdir();
    if (!tmp) { fprintf(stderr, "no temp dir\n"); return 1; }
    RUN(shard_hashes_follow_the_written_prefix);
    RUN(failed_write_mid_merge_stops_the_hasher);
    vb_rmtree(tmp);
    free(tmp);
    return cr_test_summary();
}
