/* test_shards.c — mergekit's greedy shard planning, shard names, the index
 * file text and --out-shard-size parsing. */
#include <stdlib.h>
#include <string.h>

#include "shards.h"
#include "harness.h"

TEST(plan_greedy)
{
    cr_shard_plan p;
    cr_error err = {0};
    /* TV15(e): three 600-byte tensors, limit 1K -> three shards */
    uint64_t three[3] = {600, 600, 600};
    REQUIRE(cr_shard_plan_init(&p, cr_default_allocator(), three, 3, 1000, &err) == CR_OK);
    CHECK_EQ_INT(p.n_shards, 3);
    CHECK_EQ_INT(p.total_bytes, 1800);
    CHECK_EQ_INT(p.shard_of[2], 2);
    cr_shard_plan_free(&p);
    /* exactly at the limit stays; one byte over flushes; an oversized
     * tensor sits alone; an empty shard is never flushed */
    uint64_t mix[6] = {400, 600, 1, 5000, 10, 990};
    REQUIRE(cr_shard_plan_init(&p, cr_default_allocator(), mix, 6, 1000, &err) == CR_OK);
    CHECK_EQ_INT(p.n_shards, 4);
    uint32_t want[6] = {0, 0, 1, 2, 3, 3};
    for (int i = 0; i < 6; i++) CHECK_EQ_INT(p.shard_of[i], want[i]);
    CHECK_EQ_INT(p.shard_bytes[0], 1000);
    CHECK_EQ_INT(p.shard_bytes[3], 1000);
    cr_shard_plan_free(&p);
    /* limit 0: one shard */
    REQUIRE(cr_shard_plan_init(&p, cr_default_allocator(), mix, 6, 0, &err) == CR_OK);
    CHECK_EQ_INT(p.n_shards, 1);
    cr_shard_plan_free(&p);
    /* no overflow near UINT64_MAX */
    uint64_t big[2] = {UINT64_MAX - 10, 20};
    REQUIRE(cr_shard_plan_init(&p, cr_default_allocator(), big, 2, UINT64_MAX - 5, &err) == CR_OK);
    CHECK_EQ_INT(p.n_shards, 2);
    cr_shard_plan_free(&p);
}

TEST(names_and_index)
{
    char buf[64];
    cr_shard_file_name(buf, sizeof buf, 0, 1);
    CHECK_STR(buf, "model.safetensors");
    cr_shard_file_name(buf, sizeof buf, 1, 3);
    CHECK_STR(buf, "model-00002-of-00003.safetensors");
    cr_shard_plan p;
    cr_error err = {0};
    uint64_t sizes[3] = {600, 600, 600};
    REQUIRE(cr_shard_plan_init(&p, cr_default_allocator(), sizes, 3, 1000, &err) == CR_OK);
    const char *names[3] = {"b", "a", "caf\xc3\xa9"};
    size_t len;
    char *j = cr_shard_index_json(&p, names, "0.1.4", &len);
    REQUIRE(j);
    const char *want =
        "{\n"
        "  \"metadata\": {\n"
        "    \"total_size\": 1800,\n"
        "    \"mergekit_version\": \"0.1.4\"\n"
        "  },\n"
        "  \"weight_map\": {\n"
        "    \"b\": \"model-00001-of-00003.safetensors\",\n"
        "    \"a\": \"model-00002-of-00003.safetensors\",\n"
        "    \"caf\\u00e9\": \"model-00003-of-00003.safetensors\"\n"
        "  }\n"
        "}";
    CHECK_STR(j, want);
    CHECK_EQ_INT(len, strlen(want));
    free(j);
    cr_shard_plan_free(&p);
}

TEST(parse_size)
{
    uint64_t v;
    cr_error err = {0};
    CHECK(cr_parse_shard_size("5B", &v, &err) == CR_OK && v == 5000000000ull);
    CHECK(cr_parse_shard_size("1K", &v, &err) == CR_OK && v == 1000);
    CHECK(cr_parse_shard_size("2k", &v, &err) == CR_OK && v == 2000);
    CHECK(cr_parse_shard_size("3m", &v, &err) == CR_OK && v == 3000000);
    CHECK(cr_parse_shard_size("4G", &v, &err) == CR_OK && v == 4000000000ull);
    CHECK(cr_parse_shard_size("12345", &v, &err) == CR_OK && v == 12345);
    CHECK(cr_parse_shard_size("0", &v, &err) == CR_OK && v == 0);
    CHECK_EQ_INT(cr_parse_shard_size("5.5B", &v, &err), CR_ERR_ARG);
    CHECK_CONTAINS(err.msg, "5.5B");
    CHECK_EQ_INT(cr_parse_shard_size("", &v, &err), CR_ERR_ARG);
    CHECK_EQ_INT(cr_parse_shard_size("B", &v, &err), CR_ERR_ARG);
    CHECK_EQ_INT(cr_parse_shard_size("-1", &v, &err), CR_ERR_ARG);
    CHECK_EQ_INT(cr_parse_shard_size("5T", &v, &err), CR_ERR_ARG);
    CHECK_EQ_INT(cr_parse_shard_size("99999999999999999999", &v, &err), CR_ERR_ARG);
    CHECK_EQ_INT(cr_parse_shard_size("99999999999B", &v, &err), CR_ERR_ARG);
}

int main(void)
{
    RUN(plan_greedy);
    RUN(names_and_index);
    RUN(parse_size);
    return cr_test_summary();
}
