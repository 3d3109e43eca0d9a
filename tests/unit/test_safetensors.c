/* test_safetensors.c — the safetensors reader against a corpus of malformed
 * files generated here (each must fail with a message naming the file and,
 * where there is one, the tensor), the writer against the §5.1 byte-exact
 * example, round trips, header-only opening and allocation failures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "harness.h"
#include "support/io_support.h"

static char *g_dir;

/* a file from an explicit length word, header text and n_data bytes of data */
static char *make_file(const char *name, uint64_t len_word, const char *header, size_t n_data)
{
    char *path = io_join(g_dir, name);
    size_t hn = strlen(header);
    size_t total = 8 + hn + n_data;
    unsigned char *buf = calloc(1, total);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(len_word >> (8 * i));
    memcpy(buf + 8, header, hn);
    for (size_t i = 0; i < n_data; i++) buf[8 + hn + i] = (unsigned char)i;
    io_write_file(path, buf, total);
    free(buf);
    return path;
}

static char *make_st(const char *name, const char *header, size_t n_data)
{
    return make_file(name, strlen(header), header, n_data);
}

/* open must fail with CR_ERR_FORMAT and a message naming the file and
 * containing `want` */
static void expect_bad(const char *name, const char *header, size_t n_data, const char *want)
{
    char *path = make_st(name, header, n_data);
    cr_st_file f;
    cr_error err = {0};
    cr_status st = cr_st_open(cr_default_allocator(), path, 0, &f, &err);
    CHECK_MSG(st == CR_ERR_FORMAT, "%s: status %d (%s)", name, st, err.msg);
    CHECK_CONTAINS(err.msg, name);
    CHECK_CONTAINS(err.msg, want);
    free(path);
}

TEST(example_vector)
{
    float b[2] = {1.0f, 2.0f};
    uint16_t a = 0x3f80;
    cr_st_entry e[2] = {
        {.name = "b", .dtype = CR_DTYPE_F32, .ndim = 1, .shape = {2}},
        {.name = "a", .dtype = CR_DTYPE_BF16, .ndim = 1, .shape = {1}},
    };
    const void *data[2] = {b, &a};
    char *path = io_join(g_dir, "example.safetensors");
    cr_error err = {0};
    REQUIRE(cr_st_write_file(cr_default_allocator(), path, e, data, 2, &err) == CR_OK);
    size_t n;
    unsigned char *bytes = (unsigned char *)io_read_file(path, &n);
    CHECK_EQ_INT(n, 162);
    CHECK_EQ_INT(bytes[0], 144);
    for (int i = 1; i < 8; i++) CHECK_EQ_INT(bytes[i], 0);
    const char *want = "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[8,10]}}    ";
    CHECK(!memcmp(bytes + 8, want, 144));
    const unsigned char data_want[10] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0x80, 0x3f};
    CHECK(!memcmp(bytes + 152, data_want, 10));
    CHECK_EQ_INT(e[0].offset, 152);
    CHECK_EQ_INT(e[1].offset, 160);
    free(bytes);

    cr_st_file f;
    REQUIRE(cr_st_open(cr_default_allocator(), path, 0, &f, &err) == CR_OK);
    CHECK_EQ_INT(f.n_tensors, 2);
    CHECK_EQ_INT(f.n_meta, 1);
    CHECK_STR(f.meta_keys[0], "format");
    CHECK_STR(f.meta_values[0], "pt");
    const cr_st_tensor *t = cr_st_find(&f, "a");
    REQUIRE(t);
    CHECK_EQ_INT(t->dtype, CR_DTYPE_BF16);
    CHECK_EQ_INT(*(const uint16_t *)cr_st_data(&f, t), 0x3f80);
    t = cr_st_find(&f, "b");
    REQUIRE(t);
    CHECK(((const float *)cr_st_data(&f, t))[1] == 2.0f);
    CHECK(cr_st_find(&f, "c") == NULL);
    cr_st_close(&f);
    free(path);
}

TEST(layout_order_and_escaping)
{
    /* wide dtypes first; ties by name bytes; names with quotes and
     * non-ASCII are escaped the serde_json way (UTF-8 kept raw) */
    cr_st_entry e[4] = {
        {.name = "z", .dtype = CR_DTYPE_BF16, .ndim = 0},
        {.name = "b\"q\xc3\xa9", .dtype = CR_DTYPE_F32, .ndim = 2, .shape = {1, 1}},
        {.name = "a\n", .dtype = CR_DTYPE_F32, .ndim = 1, .shape = {0}},
        {.name = "m", .dtype = CR_DTYPE_I64, .ndim = 1, .shape = {1}},
    };
    uint8_t *h;
    uint64_t hl, fs;
    cr_error err = {0};
    REQUIRE(cr_st_layout(cr_default_allocator(), e, 4, NULL, 0, &h, &hl, &fs, &err) == CR_OK);
    const char *json = (const char *)h + 8;
    const char *pm = strstr(json, "\"m\""), *pa = strstr(json, "\"a\\n\""), *pb = strstr(json, "\"b\\\"q\xc3\xa9\"");
    const char *pz = strstr(json, "\"z\"");
    REQUIRE(pm && pa && pb && pz);
    CHECK(pm < pa && pa < pb && pb < pz);
    CHECK_EQ_INT((hl - 8) % 8, 0);
    CHECK_EQ_INT(e[3].offset, hl);          /* I64 first */
    CHECK_EQ_INT(e[2].offset, hl + 8);      /* empty F32 */
    CHECK_EQ_INT(e[1].offset, hl + 8);
    CHECK_EQ_INT(e[0].offset, hl + 12);
    CHECK_EQ_INT(fs, hl + 14);
    free(h);

    cr_st_entry dup[2] = {{.name = "x", .dtype = CR_DTYPE_F32}, {.name = "x", .dtype = CR_DTYPE_F16}};
    CHECK(cr_st_layout(cr_default_allocator(), dup, 2, NULL, 0, &h, &hl, &fs, &err) == CR_ERR_ARG);
    CHECK_CONTAINS(err.msg, "duplicate");
}

TEST(roundtrip_many)
{
    enum { N = 37 };
    cr_st_entry e[N];
    char names[N][16];
    float *data[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "t.%d", i);
        e[i] = (cr_st_entry){.name = names[i], .dtype = CR_DTYPE_F32, .ndim = 2, .shape = {(uint64_t)i % 5, 3}};
        data[i] = malloc(sizeof(float) * 15 + 4);
        for (int j = 0; j < 15; j++) data[i][j] = (float)(i * 100 + j);
    }
    char *path = io_join(g_dir, "many.safetensors");
    cr_error err = {0};
    REQUIRE(cr_st_write_file(cr_default_allocator(), path, e, (const void *const *)data, N, &err) == CR_OK);
    cr_st_file f;
    REQUIRE(cr_st_open(cr_default_allocator(), path, 0, &f, &err) == CR_OK);
    CHECK_EQ_INT(f.n_tensors, N);
    for (int i = 0; i < N; i++) {
        const cr_st_tensor *t = cr_st_find(&f, names[i]);
        REQUIRE(t);
        CHECK_EQ_INT(t->numel, (i % 5) * 3);
        /* released pages read back from the file unchanged */
        cr_st_release(&f, t);
        cr_st_release_bytes(&f, t, 4, 1000);
        const float *d = cr_st_data(&f, t);
        for (uint64_t j = 0; j < t->numel; j++) CHECK(d[j] == (float)(i * 100 + (int)j));
    }
    cr_st_close(&f);
    for (int i = 0; i < N; i++) free(data[i]);
    free(path);
}

TEST(malformed_corpus)
{
    const char *ok_hdr = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    /* a good file first, so the corpus tests the checks and not the helper */
    char *good = make_st("good.safetensors", ok_hdr, 16);
    cr_st_file f;
    cr_error err = {0};
    CHECK(cr_st_open(cr_default_allocator(), good, 0, &f, &err) == CR_OK);
    cr_st_close(&f);
    free(good);

    expect_bad("truncated.safetensors", ok_hdr, 10, "truncated");
    expect_bad("trailing.safetensors", ok_hdr, 20, "4 trailing bytes");
    expect_bad("invalid_json.safetensors", "{\"x\":{\"dtype\":\"F32\",", 0, "not valid JSON");
    expect_bad("not_object.safetensors", "[1,2,3]", 0, "not a JSON object");
    expect_bad("garbage_after.safetensors", "{} x", 0, "after its JSON object");
    expect_bad("bad_utf8.safetensors", "{\"\xff\":1}", 0, "UTF-8");
    expect_bad("unknown_dtype.safetensors", "{\"x\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1,
               "tensor 'x': unknown dtype 'F4'");
    expect_bad("mismatch.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,10]}}", 10,
               "tensor 'x': data_offsets [0,10] but shape [2,2] F32 needs 16 bytes");
    expect_bad("negative_dim.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
               "tensor 'x': shape entry 0");
    expect_bad("fraction_dim.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
               "shape entry 0");
    expect_bad("overflow.safetensors",
               "{\"x\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "overflows");
    expect_bad("rank.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
               "rank 9");
    expect_bad("no_offsets.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, "data_offsets");
    expect_bad("entry_not_object.safetensors", "{\"x\":5}", 0, "tensor 'x': header entry is not a JSON object");
    expect_bad("overlap.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap tensor 'a'");
    expect_bad("gap.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20, "gap of 4 bytes");
    expect_bad("not_from_zero.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", 4,
               "must begin at 0");
    expect_bad("duplicate.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate tensor name 'a'");
    expect_bad("meta_nonstring.safetensors", "{\"__metadata__\":{\"format\":1}}", 0, "not a string");
    expect_bad("meta_not_object.safetensors", "{\"__metadata__\":[]}", 0, "__metadata__");
    expect_bad("backwards.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 0,
               "end before");

    /* length word problems */
    const char *names[3] = {"tiny.safetensors", "past_eof.safetensors", "huge_header.safetensors"};
    char *p0 = io_join(g_dir, names[0]);
    io_write_file(p0, "\x02\0\0", 3);
    char *p1 = make_file(names[1], 1000, "{}", 0);
    char *p2 = make_file(names[2], 200000000ull, "{}", 0);
    char *p3 = make_file("wrap.safetensors", UINT64_MAX - 4, "{}", 0);
    char *paths[4] = {p0, p1, p2, p3};
    const char *wants[4] = {"too small", "runs past the end", "exceeds the limit", "exceeds the limit"};
    for (int i = 0; i < 4; i++) {
        cr_status st = cr_st_open(cr_default_allocator(), paths[i], 0, &f, &err);
        CHECK_EQ_INT(st, CR_ERR_FORMAT);
        CHECK_CONTAINS(err.msg, paths[i]);
        CHECK_CONTAINS(err.msg, wants[i]);
        free(paths[i]);
    }
    /* a missing file is an I/O error naming it */
    char *missing = io_join(g_dir, "missing.safetensors");
    CHECK_EQ_INT(cr_st_open(cr_default_allocator(), missing, 0, &f, &err), CR_ERR_IO);
    CHECK_CONTAINS(err.msg, "missing.safetensors");
    free(missing);
}

/* a file whose header is the n bytes at `header` (which may hold NULs) */
static char *make_bytes(const char *name, const char *header, size_t hn, size_t n_data)
{
    char *path = io_join(g_dir, name);
    size_t total = 8 + hn + n_data;
    unsigned char *buf = calloc(1, total);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hn >> (8 * i));
    memcpy(buf + 8, header, hn);
    io_write_file(path, buf, total);
    free(buf);
    return path;
}

static void expect_bad_bytes(const char *name, const char *header, size_t hn, size_t n_data, const char *want)
{
    char *path = make_bytes(name, header, hn, n_data);
    cr_st_file f;
    cr_error err = {0};
    cr_status st = cr_st_open(cr_default_allocator(), path, 0, &f, &err);
    CHECK_MSG(st == CR_ERR_FORMAT, "%s: status %d (%s)", name, st, err.msg);
    if (st == CR_OK) cr_st_close(&f);
    CHECK_CONTAINS(err.msg, name);
    CHECK_CONTAINS(err.msg, want);
    free(path);
}

/* Control characters in the header's JSON strings: serde_json refuses them
 * raw, cJSON took them, and a NUL cut the name short ("a<NUL>b" became
 * "a", which could stand for another tensor). An escaped \u0000 is refused
 * too (a C string cannot hold it); other escaped controls are valid JSON
 * and kept in the name. */
TEST(control_characters)
{
#define HDR(s) s, sizeof(s) - 1
    expect_bad_bytes("nul_in_name.safetensors",
                     HDR("{\"a\0b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"), 4,
                     "raw control character U+0000 inside a JSON string at header byte 3");
    expect_bad_bytes("nul_alias.safetensors",
                     HDR("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                         "\"a\0x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}"), 8, "U+0000");
    expect_bad_bytes("esc_in_dtype.safetensors",
                     HDR("{\"a\":{\"dtype\":\"F32\x1b\",\"shape\":[1],\"data_offsets\":[0,4]}}"), 4, "U+001B");
    expect_bad_bytes("ctl_in_metadata.safetensors",
                     HDR("{\"__metadata__\":{\"format\":\"pt\x01\"},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"), 4, "U+0001");
    expect_bad_bytes("escaped_nul.safetensors",
                     HDR("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"), 4,
                     "\\u0000");
    expect_bad_bytes("ctl_between_tokens.safetensors",
                     HDR("{\x01\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"), 4,
                     "outside a JSON string");
    expect_bad_bytes("nul_padding.safetensors",
                     HDR("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}\0\0\0"), 4,
                     "outside a JSON string");

    /* an escaped backslash before "u0000" is not the escape */
    char *p = make_bytes("backslash_u.safetensors",
                         HDR("{\"a\\\\u0000\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"), 4);
    cr_st_file f;
    cr_error err = {0};
    CHECK_MSG(cr_st_open(cr_default_allocator(), p, 0, &f, &err) == CR_OK, "%s", err.msg);
    if (f.n_tensors == 1) CHECK_STR(f.tensors[0].name, "a\\u0000");
    cr_st_close(&f);
    free(p);

    /* an escaped ESC is a valid name, kept; an error naming it shows it
     * escaped for the terminal, never the raw byte */
    p = make_bytes("esc_name.safetensors",
                   HDR("{\"x\\u001b[31m\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"), 4);
    CHECK_MSG(cr_st_open(cr_default_allocator(), p, 0, &f, &err) == CR_OK, "%s", err.msg);
    if (f.n_tensors == 1) CHECK_STR(f.tensors[0].name, "x\x1b[31m");
    cr_st_close(&f);
    free(p);
    p = make_bytes("esc_name_bad.safetensors",
                   HDR("{\"x\\u001b[31m\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}"), 4);
    CHECK(cr_st_open(cr_default_allocator(), p, 0, &f, &err) == CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "tensor 'x\\x1b[31m'");
    CHECK_MSG(!strchr(err.msg, 0x1b), "raw ESC in the message: %s", err.msg);
    free(p);
#undef HDR
}

TEST(header_only)
{
    const char *hdr = "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}  ";
    char *path = make_st("trunc_ok.safetensors", hdr, 3);
    cr_st_file f;
    cr_error err = {0};
    CHECK_EQ_INT(cr_st_open(cr_default_allocator(), path, 0, &f, &err), CR_ERR_FORMAT);
    REQUIRE(cr_st_open(cr_default_allocator(), path, CR_ST_HEADER_ONLY, &f, &err) == CR_OK);
    CHECK(f.map == NULL);
    const cr_st_tensor *t = cr_st_find(&f, "x");
    REQUIRE(t);
    CHECK_EQ_INT(t->numel, 4);
    CHECK(cr_st_data(&f, t) == NULL);
    cr_st_close(&f);
    free(path);
    /* header-only still validates the header */
    path = make_st("trunc_bad.safetensors", "{\"x\":{\"dtype\":\"Q\",\"shape\":[4],\"data_offsets\":[0,16]}}", 0);
    CHECK_EQ_INT(cr_st_open(cr_default_allocator(), path, CR_ST_HEADER_ONLY, &f, &err), CR_ERR_FORMAT);
    free(path);
}

TEST(whitespace_and_empty)
{
    cr_st_file f;
    cr_error err = {0};
    char *p = make_st("empty.safetensors", "{}      ", 0);
    REQUIRE(cr_st_open(cr_default_allocator(), p, 0, &f, &err) == CR_OK);
    CHECK_EQ_INT(f.n_tensors, 0);
    cr_st_close(&f);
    free(p);
    p = make_st("leading_ws.safetensors", " {\"s\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,2]}}", 2);
    REQUIRE(cr_st_open(cr_default_allocator(), p, 0, &f, &err) == CR_OK);
    CHECK_EQ_INT(f.tensors[0].ndim, 0);
    CHECK_EQ_INT(f.tensors[0].numel, 1);
    cr_st_close(&f);
    free(p);
}

TEST(allocation_failures)
{
    char *path = make_st("alloc.safetensors",
                         "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
    int ok = 0;
    for (long k = 0; k < 40; k++) {
        cr_failing_allocator fa;
        cr_failing_allocator_init(&fa, cr_default_allocator(), k, false);
        cr_st_file f;
        cr_error err = {0};
        cr_status st = cr_st_open(&fa.base, path, 0, &f, &err);
        CHECK(st == CR_OK || st == CR_ERR_NOMEM);
        if (st == CR_OK) { ok++; CHECK(cr_st_find(&f, "b") != NULL); cr_st_close(&f); }
        CHECK_EQ_INT(fa.live, 0);
    }
    CHECK(ok > 0);
    free(path);
}

int main(void)
{
    g_dir = io_tmpdir("st");
    if (!g_dir) { fprintf(stderr, "cannot create a temporary directory\n"); return 1; }
    RUN(example_vector);
    RUN(layout_order_and_escaping);
    RUN(roundtrip_many);
    RUN(malformed_corpus);
    RUN(control_characters);
    RUN(header_only);
    RUN(whitespace_and_empty);
    RUN(allocation_failures);
    io_rmtree(g_dir);
    free(g_dir);
    return cr_test_summary();
}
