/* test_gguf.c — the GGUF writer's pieces: SHA-256 (FIPS 180-4 vectors), the
 * converter's test text and chkhsh formatting, the row conversions against
 * bytes produced by the pinned gguf-py (llama-cpp-python 0.3.36's vendored
 * copy: quants.quantize Q8_0 / Q4_0 / BF16 and numpy astype(float16)) on blocks with
 * exact .5 ties, zeros, random values and an f16-subnormal scale, and the
 * layout (offsets, padding, header size). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "gguf.h"
#include "gguf_pre.h"
#include "harness.h"
#include "hash.h"

static void hex_of(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void sha_hex(const void *data, size_t n, char out[65])
{
    uint8_t d[32];
    cr_sha256(data, n, d);
    hex_of(d, 32, out);
}

TEST(sha256_vectors)
{
    char h[65];
    sha_hex("", 0, h);
    CHECK_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_hex("abc", 3, h);
    CHECK_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha_hex(m, strlen(m), h);
    CHECK_STR(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* 55, 56 and 64 bytes: the padding block boundaries */
    char a[64];
    memset(a, 'a', sizeof a);
    sha_hex(a, 55, h);
    CHECK_STR(h, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    sha_hex(a, 56, h);
    CHECK_STR(h, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
    sha_hex(a, 64, h);
    CHECK_STR(h, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST(chktxt_and_chkhsh)
{
    CHECK_EQ_INT(strlen(cr_gguf_chktxt), CR_GGUF_CHKTXT_LEN);
    char h[65];
    sha_hex(cr_gguf_chktxt, CR_GGUF_CHKTXT_LEN, h);
    CHECK_STR(h, "a36179c1e2b1cfcfbfad1dc779addad2ffc778201e4cf0d538bddeafa2c526da");
    /* Python: sha256(str([128000, 198, 4815]).encode()).hexdigest() and of [] */
    int32_t ids[3] = {128000, 198, 4815};
    cr_error err = {0};
    CHECK(cr_gguf_chkhsh(cr_default_allocator(), ids, 3, h, &err) == CR_OK);
    CHECK_STR(h, "e888472563e49f97a9d5b8ad84394be37b95eb1d13c88753462edb222933a844");
    CHECK(cr_gguf_chkhsh(cr_default_allocator(), ids, 0, h, &err) == CR_OK);
    CHECK_STR(h, "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945");
    CHECK_STR(cr_gguf_pre_lookup("0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5"), "llama-bpe");
    CHECK_STR(cr_gguf_pre_lookup("e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea"), "qwen2");
    CHECK(cr_gguf_pre_lookup("7d572d1dd72e0a834ce8be06261538ae348bc122aa9683accc44c5c6596abcd5") == NULL);
    CHECK(cr_gguf_pre_known("qwen2") && cr_gguf_pre_known("default") == false);
}

/* the blocks of tests/golden/gguf's q8vec: .5 ties (scale exactly 1), zeros,
 * an LCG's values, and a scale below f16's normal range */
static void fill(float *x)
{
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) + 0.5f;
    x[31] = 127.0f;
    for (int j = 32; j < 64; j++) x[j] = 0.0f;
    long long s = 12345;
    for (int j = 64; j < 96; j++) {
        s = (s * 1103515245 + 12345) & 0x7fffffff;
        x[j] = (float)(((double)s / 2147483648.0 - 0.5) * 3.0);
    }
    for (int j = 96; j < 128; j++) x[j] = (float)((double)(j - 111) * 1e-9);
}

static const char Q8_REF[] =
    "003cf0f1f2f3f4f5f6f7f8f9fafbfcfdfeff0102030405060708090a0b0c0d0e0f7f0000000000000000000000000000"
    "0000000000000000000000000000000000000000e62128cd2e9a04fd1bdec1df55abcb254b7f4ef70a21bf35387dd3f2"
    "363eab824a890000899199a1a9b1b9c0c8d0d8e0e8f0f8000810182028303840474f575f676f777f";
static const char BF16_REF[] =
    "78c168c158c148c138c128c118c108c1f0c0d0c0b0c090c060c020c0c0bf00bf003fc03f204060409040b040d040f040"
    "0841184128413841484158416841fe420000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000ee3e16bf063f97bf4c3dfebc9d3ec8be"
    "3bbfc1be7a3f7bbf1bbfdc3e5e3fbb3f673fdcbdf03dc13e40bf1d3f263fb83f03bf28be203f383f7bbfbabf593fb0bf"
    "81b271b25fb24eb23db22cb21bb209b2f1b1ceb1acb189b14eb109b189b00000893009314e318931ac31ce31f1310932"
    "1b322c323d324e325f32713281328932";
static const char F16_REF[] =
    "c0cb40cbc0ca40cac0c940c9c0c840c880c780c680c580c400c300c100be00b80038003e004100438044804580468047"
    "4048c0484049c049404ac04a404bf0570000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000000000007337afb83338b8bc5d2af0a7eb343eb6"
    "d7b90ab6d03bdbbbdab8e436f43adb3d373bddae7d2f063600bae5383139c13d1ab83cb10039c239dabbd0bdc83a81bd"
    "008000800080008000800080008000800080008000800080008000800080000000000000000000000000000000000000"
    "00000000000000000000000000000000";

TEST(row_conversions)
{
    float x[128];
    fill(x);
    uint8_t out[256];
    char hex[2 * sizeof out + 1];
    cr_gguf_row_convert(CR_GGML_Q8_0, x, 128, out);
    hex_of(out, 4 * 34, hex);
    CHECK_STR(hex, Q8_REF);
    cr_gguf_row_convert(CR_GGML_BF16, x, 128, out);
    hex_of(out, 256, hex);
    CHECK_STR(hex, BF16_REF);
    cr_gguf_row_convert(CR_GGML_F16, x, 128, out);
    hex_of(out, 256, hex);
    CHECK_STR(hex, F16_REF);
    /* gguf-py's bf16 NaN: sign and high payload kept, quiet bit set */
    float nan = cr_bits_f32(0xff812345u);
    cr_gguf_row_bf16(&nan, 1, out);
    CHECK(out[0] == 0xc1 && out[1] == 0xff);
}

/* gguf-py's numpy Q4_0 (= ggml's quantize_row_q4_0_ref) of fill()'s four
 * blocks and two more: +3 and -3 tied for the largest magnitude (the first
 * gives the scale's sign), and an all-negative block (its extreme maps to
 * 0, the other end clips at 15) */
static const char Q4_REF[] =
    "f0cb89898989898989897878787878787808008088888888888888888888888888888888dbb1359b756ec858460abc9a"
    "534ddbf633f000808f7f7f6e6e5d5d4c4c3b3b2a2a19190800b6707f67a7969a89797867a7969a897978e63b48483737"
    "373726262626151515150404";

TEST(row_q4_0)
{
    float x[192];
    fill(x);
    for (int j = 128; j < 160; j++) x[j] = (float)((j % 7) - 3) * 0.25f;
    x[128] = 3.0f;
    x[129] = -3.0f;
    for (int j = 160; j < 192; j++) x[j] = (float)(-(double)(j - 159) * 0.2468);
    uint8_t out[6 * 18];
    char hex[2 * sizeof out + 1];
    cr_gguf_row_convert(CR_GGML_Q4_0, x, 192, out);
    hex_of(out, sizeof out, hex);
    CHECK_STR(hex, Q4_REF);
    CHECK(cr_ggml_block_elems(CR_GGML_Q4_0) == 32 && cr_ggml_block_bytes(CR_GGML_Q4_0) == 18);
    /* dequantised (diff): d * (q - 8); exact where the scale is */
    float y[192];
    CHECK(cr_gguf_dequant(CR_GGML_Q4_0, out, 192, y));
    CHECK(y[31] == 127.0f && y[128] == 3.0f && y[32] == 0.0f);
    uint8_t q8[6 * 34];
    cr_gguf_row_convert(CR_GGML_Q8_0, x, 192, q8);
    CHECK(cr_gguf_dequant(CR_GGML_Q8_0, q8, 192, y));
    CHECK(y[31] == 127.0f && y[0] == -16.0f);   /* scale 1: roundf(-15.5) = -16 */
    CHECK(!cr_gguf_dequant(14, q8, 32, y));   /* Q6_K: not read */
}

TEST(layout)
{
    const cr_allocator *a = cr_default_allocator();
    cr_gguf_kv kv;
    cr_gguf_kv_init(&kv, a);
    cr_gguf_kv_str(&kv, "general.architecture", "llama");
    cr_gguf_kv_u32(&kv, "x.n", 7);
    const char *toks[2] = {"a", "bc"};
    cr_gguf_kv_arr_str(&kv, "t", toks, 2);
    cr_gguf_tensor t[2] = {
        {.name = "w", .n_dims = 2, .ne = {32, 3}, .type = CR_GGML_Q8_0},
        {.name = "n", .n_dims = 1, .ne = {5}, .type = CR_GGML_F32},
    };
    uint8_t *h = NULL;
    uint64_t hl = 0, size = 0;
    cr_error err = {0};
    CHECK(cr_gguf_layout(a, &kv, t, 2, &h, &hl, &size, &err) == CR_OK);
    /* 24 + KVs (8+20+4+8+5 = 45; 8+3+4+4 = 19; 8+1+4+4+8+9+10 = 44) + infos (8+1+4+16+4+8 = 41; 8+1+4+8+4+8 = 33) */
    uint64_t raw = 24 + 45 + 19 + 44 + 41 + 33;
    CHECK_EQ_INT(hl, (raw + 31) / 32 * 32);
    CHECK(h && !memcmp(h, "GGUF\3\0\0\0\2\0\0\0\0\0\0\0\3\0\0\0\0\0\0\0", 24));
    CHECK_EQ_INT(t[0].offset, hl);
    CHECK_EQ_INT(t[0].nbytes, 3 * 34);
    CHECK_EQ_INT(t[1].offset, hl + 128);      /* 102 padded to 128 */
    CHECK_EQ_INT(t[1].nbytes, 20);
    CHECK_EQ_INT(size, hl + 128 + 32);
    for (uint64_t i = raw; i < hl; i++) CHECK(h[i] == 0);
    cr_free(a, h);
    /* refusals: a row not a multiple of the block, a repeated name or key */
    t[0].ne[0] = 48;
    CHECK(cr_gguf_layout(a, &kv, t, 2, &h, &hl, &size, &err) == CR_ERR_ARG);
    CHECK_CONTAINS(err.msg, "multiple of 32");
    t[0].ne[0] = 32;
    t[1].name = "w";
    CHECK(cr_gguf_layout(a, &kv, t, 2, &h, &hl, &size, &err) == CR_ERR_ARG);
    CHECK_CONTAINS(err.msg, "appears twice");
    t[1].name = "n";
    cr_gguf_kv_u32(&kv, "x.n", 8);
    CHECK(cr_gguf_layout(a, &kv, t, 2, &h, &hl, &size, &err) == CR_ERR_ARG);
    CHECK_CONTAINS(err.msg, "set twice");
    cr_gguf_kv_free(&kv);
}

int main(void)
{
    RUN(sha256_vectors);
    RUN(chktxt_and_chkhsh);
    RUN(row_conversions);
    RUN(row_q4_0);
    RUN(layout);
    return cr_test_summary();
}
