/* test_torchbin.c — PyTorch .bin checkpoints (torchbin.h, pickle.h) read
 * from files torch.save wrote (tests/e2e/fixtures/torchbin, generate.py):
 * shared storages, views at storage offsets, float8 and uint16 (saved
 * through _rebuild_tensor_v3) give the right bytes; a
 * strided view, the legacy format, compressed entries and a pickle that
 * calls os.system are refused with messages naming what and where; a
 * sharded pytorch_model.bin.index.json model opens; every allocation
 * failure is clean.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "model.h"
#include "pickle.h"
#include "torchbin.h"

#define FX "tests/e2e/fixtures/torchbin/"

static const cr_st_tensor *find(const cr_st_file *f, const char *name)
{
    const cr_st_tensor *t = cr_st_find(f, name);
    CHECK_MSG(t != NULL, "no tensor %s", name);
    return t;
}

static float f32_at(const cr_st_file *f, const cr_st_tensor *t, uint64_t i)
{
    float v;
    memcpy(&v, (const uint8_t *)cr_st_data(f, t) + 4 * i, 4);
    return v;
}

TEST(views_and_shared_storages)
{
    cr_st_file f;
    cr_error err = {0};
    REQUIRE(cr_torchbin_open(cr_default_allocator(), FX "views.bin", 0, &f, &err) == CR_OK);
    CHECK_EQ_INT(f.n_tensors, 12);
    const cr_st_tensor *a = find(&f, "a"), *a2 = find(&f, "a_again"), *rows = find(&f, "rows");
    const cr_st_tensor *last = find(&f, "row_last"), *sc = find(&f, "scalar"), *p = find(&f, "param");
    const cr_st_tensor *bf = find(&f, "bf"), *ids = find(&f, "ids"), *e = find(&f, "empty");
    REQUIRE(a && a2 && rows && last && sc && p && bf && ids && e);
    /* a = arange(24).reshape(4, 6); a_again is the same storage */
    CHECK(a->ndim == 2 && a->shape[0] == 4 && a->shape[1] == 6 && a->dtype == CR_DTYPE_F32);
    CHECK(a2->begin == a->begin && a2->end == a->end);
    for (uint64_t i = 0; i < 24; i++) CHECK(f32_at(&f, a, i) == (float)i);
    /* a[1:3]: storage offset 6; a[3]: offset 18 */
    CHECK(rows->begin == a->begin + 24 && rows->shape[0] == 2 && rows->numel == 12);
    CHECK(f32_at(&f, rows, 0) == 6.0f && f32_at(&f, rows, 11) == 17.0f);
    CHECK(last->ndim == 1 && f32_at(&f, last, 0) == 18.0f && f32_at(&f, last, 5) == 23.0f);
    CHECK(sc->ndim == 0 && sc->numel == 1 && f32_at(&f, sc, 0) == 2.5f);
    CHECK(p->shape[0] == 2 && f32_at(&f, p, 3) == 4.0f);
    CHECK(bf->dtype == CR_DTYPE_BF16 && bf->numel == 5);
    uint16_t h;
    memcpy(&h, (const uint8_t *)cr_st_data(&f, bf) + 2 * 3, 2);
    CHECK(cr_bf16_to_f32(h) == 0.75f);
    int64_t id;
    memcpy(&id, (const uint8_t *)cr_st_data(&f, ids) + 8, 8);
    CHECK(ids->dtype == CR_DTYPE_I64 && id == -1);
    CHECK(e->numel == 0 && e->begin == e->end);
    /* float8 / uint16: _rebuild_tensor_v3 over an UntypedStorage */
    const cr_st_tensor *f8 = find(&f, "f8"), *u16 = find(&f, "u16");
    REQUIRE(f8 && u16);
    const uint8_t *p8 = cr_st_data(&f, f8);
    CHECK(f8->dtype == CR_DTYPE_F8_E4M3 && f8->numel == 3 && f8->end - f8->begin == 3);
    CHECK(p8[0] == 0x38 && p8[1] == 0xb0 && p8[2] == 0x7e);   /* 1.0, -0.5, 448 in e4m3fn */
    uint16_t u;
    memcpy(&u, (const uint8_t *)cr_st_data(&f, u16) + 2, 2);
    CHECK(u16->dtype == CR_DTYPE_U16 && u == 65535);
    CHECK(cr_st_expected_size(&f) == f.file_size);
    cr_st_close(&f);

    REQUIRE(cr_torchbin_open(cr_default_allocator(), FX "views.bin", CR_ST_HEADER_ONLY, &f, &err) == CR_OK);
    CHECK(f.map == NULL && f.n_tensors == 12 && cr_st_expected_size(&f) == f.file_size);
    cr_st_close(&f);
}

static void expect_refused(const char *file, cr_status want, const char *msg1, const char *msg2)
{
    cr_st_file f;
    cr_error err = {0};
    cr_status st = cr_torchbin_open(cr_default_allocator(), file, 0, &f, &err);
    CHECK_MSG(st == want, "%s: status %s, wanted %s (%s)", file, cr_status_name(st), cr_status_name(want), err.msg);
    CHECK_CONTAINS(err.msg, file);
    CHECK_CONTAINS(err.msg, msg1);
    if (msg2) CHECK_CONTAINS(err.msg, msg2);
}

TEST(refusals)
{
    expect_refused(FX "strided.bin", CR_ERR_UNSUPPORTED, "tensor 'w' is a non-contiguous view", "stride [1,6]");
    expect_refused(FX "legacy.bin", CR_ERR_UNSUPPORTED, "legacy (pre-zip", "re-save");
    expect_refused(FX "compressed.bin", CR_ERR_UNSUPPORTED, "is compressed (method 8)", NULL);
    /* os.system pickles as posix.system; the message names it and the file */
    expect_refused(FX "hostile.bin", CR_ERR_UNSUPPORTED, "the global 'posix.system'", "hostile/data.pkl");
}

TEST(sharded_model)
{
    cr_model m;
    cr_error err = {0};
    REQUIRE(cr_model_open(cr_default_allocator(), FX "ft", 0, &m, &err) == CR_OK);
    CHECK_EQ_INT(m.n_shards, 2);
    CHECK_EQ_INT(m.n_tensors, 21);
    CHECK(cr_model_find(&m, "lm_head.weight") && cr_model_find(&m, "model.norm.weight"));
    cr_model_close(&m);
    REQUIRE(cr_model_open(cr_default_allocator(), FX "base", CR_ST_HEADER_ONLY, &m, &err) == CR_OK);
    CHECK_EQ_INT(m.n_shards, 1);
    CHECK_EQ_INT(m.n_tensors, 21);
    cr_model_close(&m);
}

/* hand-written pickles: each refused with the named reason */
static void expect_pickle(const char *bytes, size_t n, cr_status want, const char *msg)
{
    cr_arena ar;
    cr_arena_init(&ar, cr_default_allocator());
    cr_pickle_tensor *t;
    uint32_t nt;
    cr_error err = {0};
    cr_status st = cr_pickle_state_dict(&ar, (const uint8_t *)bytes, n, "p.pkl", &t, &nt, &err);
    CHECK_MSG(st == want, "status %s, wanted %s (%s)", cr_status_name(st), cr_status_name(want), err.msg);
    CHECK_CONTAINS(err.msg, msg);
    cr_arena_free(&ar);
}

#define P(s) s, sizeof(s) - 1
TEST(hostile_pickles)
{
    expect_pickle(P("\x80\x02" "cbuiltins\neval\n" "X\x01\x00\x00\x00" "1" "\x85R."), CR_ERR_UNSUPPORTED,
                  "global 'builtins.eval' (byte 2)");
    expect_pickle(P("\x80\x04\x8c\x05posix\x8c\x06system\x93."), CR_ERR_UNSUPPORTED, "global 'posix.system'");
    expect_pickle(P("\x80\x02" "ctorch\n_load_from_bytes\n."), CR_ERR_UNSUPPORTED, "'torch._load_from_bytes'");
    /* REDUCE of something that is not a global, of a storage class */
    expect_pickle(P("\x80\x02}q\x00)R."), CR_ERR_UNSUPPORTED, "REDUCE at byte 6");
    expect_pickle(P("\x80\x02" "ctorch\nFloatStorage\n)R."), CR_ERR_UNSUPPORTED, "calls a torch storage class");
    expect_pickle(P("\x80\x02}r\xff\xff\xff\xff."), CR_ERR_FORMAT, "memo index 4294967295 is out of order");
    expect_pickle(P("\x80\x02j\xff\xff\xff\x7f."), CR_ERR_FORMAT, "memo index");
    /* a dict that holds itself: read, then refused as not a tensor */
    expect_pickle(P("\x80\x02}q\x00X\x01\x00\x00\x00" "ah\x00s."), CR_ERR_FORMAT, "'a' is not a tensor");
    expect_pickle(P("\x80\x02}X\x05\x00\x00\x00" "ab"), CR_ERR_FORMAT, "truncated");
    expect_pickle(P("\x80\x02}"), CR_ERR_FORMAT, "truncated");
    expect_pickle(P("\x80\x02" "cos\nsystem"), CR_ERR_FORMAT, "truncated");
    expect_pickle(P("\x80\x02" "\x81."), CR_ERR_UNSUPPORTED, "opcode 0x81");
    expect_pickle(P("\x80\x02" "(i__builtin__\nobject\n."), CR_ERR_UNSUPPORTED, "opcode 'i'");
    expect_pickle(P("\x80\x02]b."), CR_ERR_FORMAT, "stack underflow");
    expect_pickle(P("\x80\x02]}b."), CR_ERR_UNSUPPORTED, "BUILD at byte 4");
}

/* every hostile-* seed of fuzz_pickle (make_pickle_seeds.py) is refused
 * with a message; the valid-* ones are read */
TEST(hostile_corpus_refused)
{
    const char *dir = "tests/fuzz/corpus/fuzz_pickle";
    DIR *d = opendir(dir);
    REQUIRE(d != NULL);
    int n_hostile = 0, n_valid = 0;
    for (struct dirent *e; (e = readdir(d));) {
        bool hostile = !strncmp(e->d_name, "hostile-", 8), valid = !strncmp(e->d_name, "valid-", 6);
        if (!hostile && !valid) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *fp = fopen(path, "rb");
        REQUIRE(fp != NULL);
        static uint8_t buf[1 << 20];
        size_t n = fread(buf, 1, sizeof buf, fp);
        fclose(fp);
        uint8_t *data = malloc(n ? n : 1);
        REQUIRE(data != NULL);
        memcpy(data, buf, n);
        cr_error err = {0};
        cr_status st;
        if (n >= 2 && data[0] == 'P' && data[1] == 'K') {
            cr_st_file f;
            st = cr_torchbin_open_mem(cr_default_allocator(), e->d_name, data, n, &f, &err);
            if (st == CR_OK) cr_st_close(&f);
        } else {
            cr_arena ar;
            cr_arena_init(&ar, cr_default_allocator());
            cr_pickle_tensor *t;
            uint32_t nt;
            st = cr_pickle_state_dict(&ar, data, n, e->d_name, &t, &nt, &err);
            cr_arena_free(&ar);
        }
        free(data);
        if (hostile) {
            n_hostile++;
            CHECK_MSG(st != CR_OK, "%s was accepted", e->d_name);
            CHECK_MSG(st == CR_ERR_FORMAT || st == CR_ERR_UNSUPPORTED || st == CR_ERR_LIMIT, "%s: %s", e->d_name,
                      cr_status_name(st));
            CHECK_CONTAINS(err.msg, e->d_name);
            if (getenv("CR_SHOW")) printf("%s\n", err.msg);
        } else {
            n_valid++;
            CHECK_MSG(st == CR_OK, "%s: %s", e->d_name, err.msg);
        }
    }
    closedir(d);
    CHECK(n_hostile >= 50 && n_valid >= 3);
    printf("fuzz_pickle corpus: %d hostile refused, %d valid read\n", n_hostile, n_valid);
}

TEST(allocation_failures)
{
    int ok = 0;
    for (long k = 0; k < 400; k++) {
        cr_failing_allocator fa;
        cr_failing_allocator_init(&fa, cr_default_allocator(), k, false);
        cr_st_file f;
        cr_error err = {0};
        cr_status st = cr_torchbin_open(&fa.base, FX "views.bin", 0, &f, &err);
        CHECK_MSG(st == CR_OK || st == CR_ERR_NOMEM, "k=%ld: %s", k, err.msg);
        if (st == CR_OK) { ok++; cr_st_close(&f); }
        CHECK_EQ_INT(fa.live, 0);
    }
    CHECK(ok > 0);
}

int main(void)
{
    RUN(views_and_shared_storages);
    RUN(refusals);
    RUN(sharded_model);
    RUN(hostile_pickles);
    RUN(hostile_corpus_refused);
    RUN(allocation_failures);
    return cr_test_summary();
}
