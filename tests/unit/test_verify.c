/* test_verify.c — shard content hashes (formats/outhash.h): hashing a file,
 * hex text, adding the hash object to the index text; the VM recording the
 * hashes of what it wrote; and cr_verify_dir (formats/verify_dir.h) on good and
 * damaged directories, one kind of damage each, plus allocation failures. */
#include "harness.h"
#include "support/io_support.h"
#include "support/vm_build.h"
#include "hash.h"
#include "outhash.h"
#include "safetensors.h"
#include "shards.h"
#include "verify_dir.h"
#include "vm.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const cr_allocator *A;
static uint64_t offs[8];   /* tensor offsets vb_write_safetensors reports; unused */

TEST(hex_round_trip)
{
    char hex[17];
    cr_hash_hex(0xEF46DB3751D8E999ull, hex);
    CHECK_STR(hex, "ef46db3751d8e999");
    cr_hash_hex(0, hex);
    CHECK_STR(hex, "0000000000000000");
    uint64_t v = 1;
    CHECK(cr_hash_parse_hex("ef46db3751d8e999", &v) && v == 0xEF46DB3751D8E999ull);
    CHECK(cr_hash_parse_hex("EF46DB3751D8E999", &v) && v == 0xEF46DB3751D8E999ull);
    CHECK(!cr_hash_parse_hex("ef46db3751d8e99", &v));     /* 15 digits */
    CHECK(!cr_hash_parse_hex("ef46db3751d8e9990", &v));   /* 17 */
    CHECK(!cr_hash_parse_hex("ef46db3751d8e99g", &v));
    CHECK(!cr_hash_parse_hex("", &v));
}

TEST(hash_file_is_xxh64_of_its_bytes)
{
    char *dir = io_tmpdir("outhash");
    char *p = io_join(dir, "f.bin");
    /* sizes around the 1 MiB block and the 32-byte stripe */
    size_t sizes[] = { 0, 1, 31, 32, 33, (1u << 20) - 1, 1u << 20, (1u << 20) + 77, 3u << 20 };
    unsigned char *buf = malloc((3u << 20) + 1);
    REQUIRE(buf);
    for (size_t i = 0; i < (3u << 20) + 1; i++) buf[i] = (unsigned char)(i * 2654435761u >> 13);
    for (size_t k = 0; k < CR_ARRAY_LEN(sizes); k++) {
        REQUIRE(io_write_file(p, buf, sizes[k]));
        uint64_t h = 0, n = 99;
        cr_error err = {0};
        CHECK_MSG(cr_hash_path(A, p, &h, &n, &err) == CR_OK, "%s", err.msg);
        CHECK_MSG(h == cr_xxh64(buf, sizes[k], 0), "size %zu", sizes[k]);
        CHECK_EQ_INT(n, sizes[k]);
    }
    /* a file shorter than the size asked for, and a missing file, name the path */
    int fd = open(p, O_RDONLY);
    REQUIRE(fd >= 0);
    uint64_t h;
    cr_error err = {0};
    CHECK(cr_hash_fd(A, fd, (3u << 20) + 10, NULL, p, &h, &err) == CR_ERR_IO);
    CHECK_CONTAINS(err.msg, "f.bin: file ends at byte 3145728");
    volatile int stop = 1;
    CHECK(cr_hash_fd(A, fd, 3u << 20, &stop, p, &h, &err) == CR_ERR_INTERRUPTED);
    close(fd);
    char *missing = io_join(dir, "nope.bin");
    CHECK(cr_hash_path(A, missing, &h, NULL, &err) == CR_ERR_IO);
    CHECK_CONTAINS(err.msg, "nope.bin");
    free(missing);
    free(buf);
    free(p);
    io_rmtree(dir);
    free(dir);
}

static char *index_text(uint32_t n_shards, size_t *len)
{
    cr_shard_plan plan;
    cr_error err = {0};
    uint64_t nbytes[3] = { 600, 600, 600 };
    if (cr_shard_plan_init(&plan, A, nbytes, 3, n_shards == 1 ? 0 : 1000, &err)) return NULL;
    const char *names[3] = { "a", "b", "c" };
    char *t = cr_shard_index_json(&plan, names, "0.1.4", len);
    cr_shard_plan_free(&plan);
    return t;
}

TEST(index_gets_hash_object)
{
    size_t len, out_len;
    char *text = index_text(3, &len);
    REQUIRE(text);
    const char *files[3] = { "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                             "model-00003-of-00003.safetensors" };
    uint64_t hashes[3] = { 1, 0xfedcba9876543210ull, 0xEF46DB3751D8E999ull };
    char *out;
    cr_error err = {0};
    REQUIRE(cr_index_add_hashes(A, text, len, files, hashes, 3, &out, &out_len, &err) == CR_OK);
    /* json.dump(indent=2) layout, the hash object last in metadata */
    CHECK_STR(out,
              "{\n  \"metadata\": {\n    \"total_size\": 1800,\n    \"mergekit_version\": \"0.1.4\",\n"
              "    \"crucible_shard_xxh64\": {\n"
              "      \"model-00001-of-00003.safetensors\": \"0000000000000001\",\n"
              "      \"model-00002-of-00003.safetensors\": \"fedcba9876543210\",\n"
              "      \"model-00003-of-00003.safetensors\": \"ef46db3751d8e999\"\n    }\n  },\n"
              "  \"weight_map\": {\n    \"a\": \"model-00001-of-00003.safetensors\",\n"
              "    \"b\": \"model-00002-of-00003.safetensors\",\n    \"c\": \"model-00003-of-00003.safetensors\"\n  }\n}");
    CHECK_EQ_INT(out_len, strlen(out));
    cJSON *j = cJSON_Parse(out);
    CHECK(j && cJSON_IsObject(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "metadata"), CR_INDEX_HASH_KEY)));
    cJSON_Delete(j);
    cr_free(A, out);
    cr_free(A, text);

    /* other layouts are refused, not mangled */
    const char *bad[] = { "{}", "{\"metadata\": {}}", "{\n  \"metadata\": {\n    \"x\": {\"y\": 1}\n  },\n}",
                          "{\n  \"metadata\": {\n    \"x\": 1," };
    for (size_t i = 0; i < CR_ARRAY_LEN(bad); i++) {
        CHECK(cr_index_add_hashes(A, bad[i], strlen(bad[i]), files, hashes, 3, &out, &out_len, &err) == CR_ERR_FORMAT);
        CHECK_CONTAINS(err.msg, "model.safetensors.index.json");
    }
    /* an empty metadata object takes the key without a comma */
    const char *empty = "{\n  \"metadata\": {\n  },\n  \"weight_map\": {}\n}";
    REQUIRE(cr_index_add_hashes(A, empty, strlen(empty), files, hashes, 1, &out, &out_len, &err) == CR_OK);
    j = cJSON_Parse(out);
    CHECK_MSG(j != NULL, "%s", out);
    cJSON_Delete(j);
    cr_free(A, out);
}

/* ---- a directory written by hand: two shards, index with hashes -------- */

typedef struct fixture {
    char *dir;
    char *shard[2];
    char *index;
} fixture;

static void fixture_write_index(fixture *f, bool with_hashes, const char *total)
{
    uint64_t h[2];
    for (int s = 0; s < 2; s++) {
        cr_error err = {0};
        CHECK(cr_hash_path(A, f->shard[s], &h[s], NULL, &err) == CR_OK);
    }
    char text[2048];
    char hx[2][17];
    cr_hash_hex(h[0], hx[0]);
    cr_hash_hex(h[1], hx[1]);
    char hashes[512] = "";
    if (with_hashes)
        snprintf(hashes, sizeof hashes, ",\n    \"crucible_shard_xxh64\": {\"s1.safetensors\": \"%s\", "
                 "\"s2.safetensors\": \"%s\"}", hx[0], hx[1]);
    snprintf(text, sizeof text, "{\n  \"metadata\": {\n    \"total_size\": %s%s\n  },\n  \"weight_map\": {"
             "\"x\": \"s1.safetensors\", \"y\": \"s1.safetensors\", \"z\": \"s2.safetensors\"}\n}", total, hashes);
    CHECK(io_write_text(f->index, text));
}

static void fixture_init(fixture *f)
{
    f->dir = io_tmpdir("verify");
    f->shard[0] = io_join(f->dir, "s1.safetensors");
    f->shard[1] = io_join(f->dir, "s2.safetensors");
    f->index = io_join(f->dir, "model.safetensors.index.json");
    float x[6] = { 1, 2, 3, 4, 5, 6 }, y[2] = { 7, 8 }, z[4] = { 9, 10, 11, 12 };
    const char *n1[] = { "x", "y" }, *n2[] = { "z" };
    cr_dtype dt[] = { CR_DTYPE_F32, CR_DTYPE_F32 };
    uint64_t s1[][2] = { { 2, 3 }, { 0, 2 } }, s2[][2] = { { 2, 2 } };
    const void *d1[] = { x, y }, *d2[] = { z };
    CHECK(vb_write_safetensors(f->shard[0], 2, n1, dt, s1, d1, offs) > 0);
    CHECK(vb_write_safetensors(f->shard[1], 1, n2, dt, s2, d2, offs) > 0);
    fixture_write_index(f, true, "48");
}

static void fixture_free(fixture *f)
{
    io_rmtree(f->dir);
    free(f->dir); free(f->shard[0]); free(f->shard[1]); free(f->index);
}

/* verify f->dir; the number of problems, with problem `want` (if given) among them */
static uint32_t verify(const char *dir, cr_verify_report *rep, const char *want)
{
    cr_error err = {0};
    cr_status s = cr_verify_dir(A, dir, rep, &err);
    CHECK_MSG(s == CR_OK, "%s", err.msg);
    if (want) {
        bool found = false;
        for (uint32_t i = 0; i < rep->n_problems; i++) found |= strstr(rep->problems[i], want) != NULL;
        CHECK_MSG(found, "no problem mentions \"%s\" (first: %s)", want, rep->n_problems ? rep->problems[0] : "none");
    }
    return rep->n_problems_total;
}

TEST(verify_good_directory)
{
    fixture f;
    fixture_init(&f);
    cr_verify_report rep;
    CHECK_EQ_INT(verify(f.dir, &rep, NULL), 0);
    CHECK(rep.has_index && rep.hashes_recorded);
    CHECK_EQ_INT(rep.n_shards, 2);
    CHECK_EQ_INT(rep.n_tensors, 3);
    CHECK_EQ_INT(rep.total_bytes, 48);
    CHECK_EQ_INT(rep.n_hash_ok, 2);
    cr_verify_report_free(&rep);
    fixture_free(&f);
}

TEST(verify_names_each_damage)
{
    cr_verify_report rep;
    fixture f;

    /* a flipped byte in the data of s2 */
    fixture_init(&f);
    size_t n;
    char *d = io_read_file(f.shard[1], &n);
    REQUIRE(d);
    d[n - 3] ^= 1;
    io_write_file(f.shard[1], d, n);
    free(d);
    CHECK_EQ_INT(verify(f.dir, &rep, "s2.safetensors: content hash mismatch"), 1);
    CHECK_EQ_INT(rep.n_hash_ok, 1);
    cr_verify_report_free(&rep);
    fixture_free(&f);

    /* a missing shard */
    fixture_init(&f);
    unlink(f.shard[0]);
    CHECK_EQ_INT(verify(f.dir, &rep, "s1.safetensors: missing shard (the index maps 2 tensors to it"), 1);
    cr_verify_report_free(&rep);
    fixture_free(&f);

    /* a truncated shard: the reader's message, and the hash differs */
    fixture_init(&f);
    d = io_read_file(f.shard[1], &n);
    REQUIRE(d);
    io_write_file(f.shard[1], d, n - 4);
    free(d);
    CHECK_EQ_INT(verify(f.dir, &rep, "s2.safetensors: file is truncated"), 2);
    cr_verify_report_free(&rep);
    fixture_free(&f);

    /* the index lacks a tensor that s1 holds */
    fixture_init(&f);
    char text[1024];
    snprintf(text, sizeof text, "{\"metadata\": {\"total_size\": 48}, \"weight_map\": {\"x\": \"s1.safetensors\", "
             "\"z\": \"s2.safetensors\"}}");
    io_write_text(f.index, text);
    CHECK_EQ_INT(verify(f.dir, &rep, "s1.safetensors: tensor 'y' is missing from the index"), 1);
    CHECK(!rep.hashes_recorded);
    cr_verify_report_free(&rep);
    fixture_free(&f);

    /* the index maps a tensor to a shard that does not hold it */
    fixture_init(&f);
    io_write_text(f.index, "{\"metadata\": {\"total_size\": 48}, \"weight_map\": {\"x\": \"s1.safetensors\", "
                  "\"y\": \"s1.safetensors\", \"z\": \"s1.safetensors\"}}");
    CHECK(verify(f.dir, &rep, "tensor 'z' is mapped to s1.safetensors, which does not hold it") >= 1);
    cr_verify_report_free(&rep);
    fixture_free(&f);

    /* a tensor held by two shards */
    fixture_init(&f);
    float z[4] = { 0 };
    const char *nz[] = { "z", "x" };
    cr_dtype dt[] = { CR_DTYPE_F32, CR_DTYPE_F32 };
    uint64_t sz[][2] = { { 2, 2 }, { 0, 1 } };
    const void *dz[] = { z, z };
    vb_write_safetensors(f.shard[1], 2, nz, dt, sz, dz, offs);
    fixture_write_index(&f, true, "52");
    CHECK_EQ_INT(verify(f.dir, &rep, "s2.safetensors: tensor 'x' is also in s1.safetensors"), 1);
    cr_verify_report_free(&rep);
    fixture_free(&f);

    /* total_size */
    fixture_init(&f);
    fixture_write_index(&f, true, "47");
    CHECK_EQ_INT(verify(f.dir, &rep, "metadata.total_size is 47 but the shards' tensors hold 48 bytes"), 1);
    cr_verify_report_free(&rep);
    fixture_free(&f);

    /* a hash that is not 16 hex digits; a hash object missing a shard */
    fixture_init(&f);
    io_write_text(f.index, "{\"metadata\": {\"total_size\": 48, \"crucible_shard_xxh64\": {\"s1.safetensors\": \"12\"}},"
                  " \"weight_map\": {\"x\": \"s1.safetensors\", \"y\": \"s1.safetensors\", \"z\": \"s2.safetensors\"}}");
    CHECK_EQ_INT(verify(f.dir, &rep, "['s1.safetensors'] is not 16 hex digits"), 3);
    cr_verify_report_free(&rep);
    CHECK_EQ_INT(verify(f.dir, &rep, "s2.safetensors: no hash recorded for it"), 3);
    cr_verify_report_free(&rep);
    fixture_free(&f);

    /* a tensor mapped twice */
    fixture_init(&f);
    io_write_text(f.index, "{\"metadata\": {\"total_size\": 48}, \"weight_map\": {\"x\": \"s1.safetensors\", "
                  "\"y\": \"s1.safetensors\", \"z\": \"s2.safetensors\", \"x\": \"s1.safetensors\"}}");
    CHECK(verify(f.dir, &rep, "tensor 'x' appears twice in weight_map") >= 1);
    cr_verify_report_free(&rep);
    fixture_free(&f);

    /* not JSON; a shard name with a slash */
    fixture_init(&f);
    io_write_text(f.index, "{\"metadata\": ");
    CHECK_EQ_INT(verify(f.dir, &rep, "model.safetensors.index.json: not valid JSON"), 1);
    cr_verify_report_free(&rep);
    io_write_text(f.index, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {\"x\": \"../s1.safetensors\"}}");
    CHECK(verify(f.dir, &rep, "weight_map entry 'x' does not name a file in the directory") >= 1);
    cr_verify_report_free(&rep);
    fixture_free(&f);
}

TEST(verify_without_hashes_and_without_index)
{
    fixture f;
    fixture_init(&f);
    cr_verify_report rep;
    fixture_write_index(&f, false, "48");
    CHECK_EQ_INT(verify(f.dir, &rep, NULL), 0);
    CHECK(rep.has_index && !rep.hashes_recorded);
    CHECK_EQ_INT(rep.n_hash_ok, 0);
    cr_verify_report_free(&rep);
    /* a lone model.safetensors: structure only */
    unlink(f.index);
    unlink(f.shard[1]);
    char *single = io_join(f.dir, "model.safetensors");
    REQUIRE(rename(f.shard[0], single) == 0);
    CHECK_EQ_INT(verify(f.dir, &rep, NULL), 0);
    CHECK(!rep.has_index && !rep.hashes_recorded);
    CHECK_EQ_INT(rep.n_tensors, 2);
    cr_verify_report_free(&rep);
    truncate(single, 20);
    CHECK_EQ_INT(verify(f.dir, &rep, "model.safetensors"), 1);
    cr_verify_report_free(&rep);
    unlink(single);
    CHECK_EQ_INT(verify(f.dir, &rep, "no model weights"), 1);
    cr_verify_report_free(&rep);
    char *nowhere = io_join(f.dir, "nowhere");
    CHECK_EQ_INT(verify(nowhere, &rep, "nowhere: No such file or directory"), 1);
    cr_verify_report_free(&rep);
    free(nowhere);
    free(single);
    fixture_free(&f);
}

TEST(verify_every_allocation_fails_cleanly)
{
    fixture f;
    fixture_init(&f);
    unlink(f.shard[1]);   /* a problem to report, too */
    int ok_at = -1;
    for (long n = 0; n < 200 && ok_at < 0; n++) {
        cr_failing_allocator fa;
        cr_failing_allocator_init(&fa, cr_default_allocator(), n, false);
        cr_verify_report rep;
        cr_error err = {0};
        cr_status s = cr_verify_dir(&fa.base, f.dir, &rep, &err);
        if (s == CR_OK) { ok_at = (int)n; CHECK_EQ_INT(rep.n_problems_total, 1); }
        else CHECK_MSG(s == CR_ERR_NOMEM, "allocation %ld: %s", n, err.msg);
        cr_verify_report_free(&rep);
        CHECK_MSG(fa.live == 0, "allocation %ld: %ld blocks leaked", n, (long)fa.live);
    }
    CHECK(ok_at > 0);
    fixture_free(&f);
}

/* ---- the VM records the hashes of the shards it wrote ------------------ */

static void warn_cb(void *ud, const char *msg) { snprintf(ud, 256, "%s", msg); }

static void build_two_shards(cr_program *p, const char *in_path, const char *index)
{
    float a[64];
    for (int i = 0; i < 64; i++) a[i] = (float)i * 0.5f - 3.0f;
    const char *na[] = { "a" };
    cr_dtype dt[] = { CR_DTYPE_F32 };
    uint64_t shape[][2] = { { 8, 8 } }, off;
    const void *da[] = { a };
    uint64_t size = vb_write_safetensors(in_path, 1, na, dt, shape, da, &off);
    vm_builder b;
    vb_init(&b);
    uint32_t f = vb_file(&b, in_path, size, 0);
    uint32_t in = vb_input(&b, f, CR_DTYPE_F32, "a", off, 256, 8, 8, 8);
    uint32_t o1 = vb_output(&b, "p", CR_DTYPE_F32, 8, 8);
    vb_shard(&b, "model-00001-of-00002.safetensors");
    uint32_t o2 = vb_output(&b, "q", CR_DTYPE_BF16, 8, 8);
    vb_shard(&b, "model-00002-of-00002.safetensors");
    uint32_t k = vb_kernel_begin(&b, 8, 8, 16, 1, 0);
    vb_k(&b, CR_OP_LOAD, CR_DTYPE_NONE, 0, in, 0, 0);
    vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o1, 0, 0, 0);
    vb_k(&b, CR_OP_STORE, CR_DTYPE_NONE, o2, 0, 0, 0);
    vb_kernel_end(&b);
    vb_m(&b, CR_OP_KERNEL, CR_DTYPE_NONE, 0, k, 0, 0);
    vb_m(&b, CR_OP_DONE, CR_DTYPE_NONE, o1, 0, 0, 0);
    vb_m(&b, CR_OP_DONE, CR_DTYPE_NONE, o2, 0, 0, 0);
    vb_aux_write(&b, CR_INDEX_FILE, index);
    vb_build(&b, p);
}

TEST(vm_records_shard_hashes)
{
    char *dir = io_tmpdir("vmhash");
    char *in = io_join(dir, "in.safetensors");
    const char *index = "{\n  \"metadata\": {\n    \"total_size\": 384,\n    \"mergekit_version\": \"0.1.4\"\n  },\n"
                        "  \"weight_map\": {\n    \"p\": \"model-00001-of-00002.safetensors\",\n"
                        "    \"q\": \"model-00002-of-00002.safetensors\"\n  }\n}";
    cr_program p;
    build_two_shards(&p, in, index);
    cr_error err = {0};
    REQUIRE(cr_program_verify(&p, &err) == CR_OK);
    for (unsigned threads = 1; threads <= 3; threads += 2) {
        char name[32];
        snprintf(name, sizeof name, "out%u", threads);
        char *out = io_join(dir, name);
        cr_vm_options o;
        cr_vm_options_init(&o);
        o.out_dir = out;
        o.threads = threads;
        o.quiet = true;
        cr_status s = cr_vm_run(&p, &o, &err);
        CHECK_MSG(s == CR_OK, "%s", err.msg);
        char *ip = io_join(out, CR_INDEX_FILE);
        char *text = io_read_file(ip, NULL);
        REQUIRE(text);
        for (int sh = 1; sh <= 2; sh++) {
            char fn[64], *sp, want[96], hex[17];
            snprintf(fn, sizeof fn, "model-0000%d-of-00002.safetensors", sh);
            sp = io_join(out, fn);
            uint64_t h;
            CHECK(cr_hash_path(A, sp, &h, NULL, &err) == CR_OK);
            cr_hash_hex(h, hex);
            snprintf(want, sizeof want, "\"%s\": \"%s\"", fn, hex);
            CHECK_CONTAINS(text, want);
            free(sp);
        }
        CHECK_CONTAINS(text, "\"weight_map\": {\n    \"p\": \"model-00001-of-00002.safetensors\",");
        cr_verify_report rep;
        CHECK_EQ_INT(verify(out, &rep, NULL), 0);
        CHECK(rep.hashes_recorded);
        CHECK_EQ_INT(rep.n_hash_ok, 2);
        cr_verify_report_free(&rep);
        free(text);
        free(ip);
        free(out);
    }
    cr_program_free(&p);

    /* an index in another layout (a hand-made .crb) is written as it is, with a warning */
    build_two_shards(&p, in, "{\"weight_map\": {\"p\": \"model-00001-of-00002.safetensors\", "
                             "\"q\": \"model-00002-of-00002.safetensors\"}, \"metadata\": {\"total_size\": 384}}");
    REQUIRE(cr_program_verify(&p, &err) == CR_OK);
    char *out = io_join(dir, "odd");
    char warned[256] = "";
    cr_vm_options o;
    cr_vm_options_init(&o);
    o.out_dir = out;
    o.quiet = true;
    o.warn = warn_cb;
    o.warn_ud = warned;
    CHECK(cr_vm_run(&p, &o, &err) == CR_OK);
    CHECK_CONTAINS(warned, "shard hashes not recorded");
    cr_verify_report rep;
    CHECK_EQ_INT(verify(out, &rep, NULL), 0);
    CHECK(!rep.hashes_recorded);
    cr_verify_report_free(&rep);
    cr_program_free(&p);
    free(out);
    free(in);
    io_rmtree(dir);
    free(dir);
}

int main(void)
{
    A = cr_default_allocator();
    RUN(hex_round_trip);
    RUN(hash_file_is_xxh64_of_its_bytes);
    RUN(index_gets_hash_object);
    RUN(verify_good_directory);
    RUN(verify_names_each_damage);
    RUN(verify_without_hashes_and_without_index);
    RUN(verify_every_allocation_fails_cleanly);
    RUN(vm_records_shard_hashes);
    return cr_test_summary();
}
