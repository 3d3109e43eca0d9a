/* test_limits.c — every hard limit in core/limits.h that an input can reach
 * is enforced with an error naming the file and the limit, at the limit's
 * edge (one past it fails, the limit itself passes where that is cheap to
 * build). The .crb limits are tested by test_interp/verify on branch vm; the
 * Lua limits by the Lua API tests. The largest count limits (tensors per
 * file, weight_map entries) would need headers of ~50 MB and are covered by
 * review and the fuzzers instead.
 */
#include "harness.h"
#include "base.h"
#include "diag.h"
#include "frontend.h"
#include "limits.h"
#include "lua_recipe.h"
#include "moe_config.h"
#include "model.h"
#include "safetensors.h"
#include "yaml_tree.h"
#include "support/io_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* a safetensors file holding header text `json` (padded) and `data` bytes */
static bool write_st(const char *path, const char *json, size_t data_bytes)
{
    size_t n = strlen(json), pad = (8 - n % 8) % 8;
    size_t total = 8 + n + pad + data_bytes;
    unsigned char *buf = calloc(1, total);
    if (!buf) return false;
    uint64_t hl = n + pad;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 8, json, n);
    memset(buf + 8 + n, ' ', pad);
    bool ok = io_write_file(path, buf, total);
    free(buf);
    return ok;
}

TEST(st_header_length)
{
    char *dir = io_tmpdir("limits");
    char *p = io_join(dir, "big.safetensors");
    unsigned char hdr[16] = {0};
    uint64_t n = CR_LIMIT_ST_HEADER + 1;
    for (int i = 0; i < 8; i++) hdr[i] = (unsigned char)(n >> (8 * i));
    REQUIRE(io_write_file(p, hdr, sizeof hdr));
    cr_st_file f;
    cr_error err = {0};
    CHECK_EQ_INT(cr_st_open(cr_default_allocator(), p, 0, &f, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "exceeds the limit");
    CHECK_CONTAINS(err.msg, "big.safetensors");
    io_rmtree(dir);
    free(p);
    free(dir);
}

TEST(st_rank)
{
    char *dir = io_tmpdir("limits");
    char *p = io_join(dir, "rank.safetensors");
    /* rank 8 is fine, rank 9 is not */
    REQUIRE(write_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4));
    cr_st_file f;
    cr_error err = {0};
    CHECK_EQ_INT(cr_st_open(cr_default_allocator(), p, 0, &f, &err), CR_OK);
    cr_st_close(&f);
    REQUIRE(write_st(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4));
    CHECK_EQ_INT(cr_st_open(cr_default_allocator(), p, 0, &f, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "'t'");
    CHECK_CONTAINS(err.msg, "8 dimensions");
    io_rmtree(dir);
    free(p);
    free(dir);
}

TEST(st_name_length)
{
    char *dir = io_tmpdir("limits");
    char *p = io_join(dir, "name.safetensors");
    size_t len = CR_LIMIT_NAME + 1;
    char *json = malloc(len + 128);
    REQUIRE(json);
    for (int pass = 0; pass < 2; pass++) {
        size_t nl = pass ? len : CR_LIMIT_NAME;
        char *q = json;
        q += sprintf(q, "{\"");
        memset(q, 'n', nl);
        q += nl;
        sprintf(q, "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
        REQUIRE(write_st(p, json, 4));
        cr_st_file f;
        cr_error err = {0};
        cr_status s = cr_st_open(cr_default_allocator(), p, 0, &f, &err);
        if (!pass) { CHECK_EQ_INT(s, CR_OK); cr_st_close(&f); }
        else { CHECK_EQ_INT(s, CR_ERR_LIMIT); CHECK_CONTAINS(err.msg, "limit 4096"); }
    }
    free(json);
    io_rmtree(dir);
    free(p);
    free(dir);
}

TEST(model_shards_and_index)
{
    /* a weight_map naming a file outside the directory is refused before
     * anything is opened; the shard-count limit shares the code path */
    char *dir = io_tmpdir("limits");
    char *idx = io_join(dir, "model.safetensors.index.json");
    REQUIRE(io_write_text(idx, "{\"weight_map\":{\"a\":\"../x.safetensors\"}}"));
    cr_model m;
    cr_error err = {0};
    CHECK_EQ_INT(cr_model_open(cr_default_allocator(), dir, 0, &m, &err), CR_ERR_FORMAT);
    CHECK_CONTAINS(err.msg, "not a file in the model directory");
    io_rmtree(dir);
    free(idx);
    free(dir);
}

/* parse YAML text; returns the status and the first diagnostic's text */
static cr_status parse_yaml(const char *text, size_t len, char *first, size_t cap)
{
    cr_diags d;
    cr_diags_init(&d, cr_default_allocator());
    cr_ytree t;
    cr_error err = {0};
    cr_status s = cr_ytree_parse(cr_default_allocator(), "limits.yml", text, len, &t, &d, &err);
    first[0] = 0;
    if (d.items.len) snprintf(first, cap, "%s", CR_VEC_AT(&d.items, cr_diag, 0).msg);
    cr_ytree_free(&t);
    cr_diags_free(&d);
    return s;
}

TEST(yaml_depth)
{
    char msg[512];
    for (int extra = 0; extra < 2; extra++) {
        int depth = CR_LIMIT_YAML_DEPTH + extra;
        char *t = malloc((size_t)depth * 2 + 8);
        REQUIRE(t);
        size_t n = 0;
        for (int i = 0; i < depth; i++) t[n++] = '[';
        t[n++] = '1';
        for (int i = 0; i < depth; i++) t[n++] = ']';
        cr_status s = parse_yaml(t, n, msg, sizeof msg);
        if (!extra) CHECK_EQ_INT(s, CR_OK);
        else { CHECK_EQ_INT(s, CR_ERR_CONFIG); CHECK_CONTAINS(msg, "nesting deeper than 64"); }
        free(t);
    }
}

TEST(yaml_aliases)
{
    char msg[512];
    for (int extra = 0; extra < 2; extra++) {
        int n_alias = CR_LIMIT_YAML_ALIASES + extra;
        size_t cap = (size_t)n_alias * 8 + 64;
        char *t = malloc(cap);
        REQUIRE(t);
        size_t n = (size_t)sprintf(t, "a: &x 1\nb: [");
        for (int i = 0; i < n_alias; i++) n += (size_t)sprintf(t + n, "%s*x", i ? "," : "");
        n += (size_t)sprintf(t + n, "]\n");
        cr_status s = parse_yaml(t, n, msg, sizeof msg);
        if (!extra) CHECK_EQ_INT(s, CR_OK);
        else { CHECK_EQ_INT(s, CR_ERR_CONFIG); CHECK_CONTAINS(msg, "aliases"); }
        free(t);
    }
}

TEST(yaml_alias_bomb)
{
    /* nine levels of ten-fold aliases: 10^9 nodes if expanded */
    char t[4096];
    size_t n = (size_t)sprintf(t, "a0: &a0 [1,1,1,1,1,1,1,1,1,1]\n");
    for (int i = 1; i < 9; i++) {
        n += (size_t)sprintf(t + n, "a%d: &a%d [", i, i);
        for (int j = 0; j < 10; j++) n += (size_t)sprintf(t + n, "%s*a%d", j ? "," : "", i - 1);
        n += (size_t)sprintf(t + n, "]\n");
    }
    char msg[512];
    CHECK_EQ_INT(parse_yaml(t, n, msg, sizeof msg), CR_ERR_CONFIG);
    CHECK_CONTAINS(msg, "alias bomb");
}

TEST(yaml_documents)
{
    char msg[512];
    for (int extra = 0; extra < 2; extra++) {
        int docs = CR_LIMIT_YAML_DOCS + extra;
        char *t = malloc((size_t)docs * 16 + 16);
        REQUIRE(t);
        size_t n = 0;
        for (int i = 0; i < docs; i++) n += (size_t)sprintf(t + n, "---\nx: %d\n", i);
        cr_status s = parse_yaml(t, n, msg, sizeof msg);
        if (!extra) CHECK_EQ_INT(s, CR_OK);
        else { CHECK_EQ_INT(s, CR_ERR_CONFIG); CHECK_CONTAINS(msg, "documents"); }
        free(t);
    }
}

/* a recipe of exactly CR_LIMIT_RECIPE_BYTES is read; one byte more is
 * refused, whichever reader takes it (YAML tree, YAML and Lua front ends,
 * MoE config). The exact size used to be refused by the front end, and
 * 16 MiB - 1 by the Lua one. */
static void write_recipe(const char *path, size_t n, const char *head)
{
    char *t = malloc(n);
    REQUIRE(t);
    memset(t, '#', n);
    memcpy(t, head, strlen(head));
    for (size_t i = strlen(head); i < n; i += 4096) t[i] = '\n';
    if (strstr(path, ".lua")) {     /* one long Lua comment */
        memcpy(t, "--[[", 4);
        memcpy(t + n - 2, "]]", 2);
    }
    REQUIRE(io_write_file(path, t, n));
    free(t);
}

static cr_status load_recipe(const char *path, int how, char *msg, size_t cap)
{
    cr_diags d;
    cr_diags_init(&d, cr_default_allocator());
    cr_error err = {0};
    cr_status s;
    if (how == 0) {
        cr_ytree tree;
        s = cr_ytree_load(cr_default_allocator(), path, &tree, &d, &err);
        cr_ytree_free(&tree);
    } else if (how == 1) {
        cr_plan plan;
        cr_frontend_options opt = {.no_env = true, .header_only = true};
        s = cr_frontend_recipe(cr_default_allocator(), path, &opt, &plan, &d, &err);
        cr_plan_free(&plan);
    } else {
        cr_moe_config c;
        s = cr_moe_config_load(cr_default_allocator(), path, &c, &d, &err);
        cr_moe_config_free(&c);
    }
    snprintf(msg, cap, "%s", err.msg);
    cr_diags_free(&d);
    return s;
}

TEST(recipe_bytes)
{
    char *dir = io_tmpdir("limits");
    static const struct { const char *name; int how; } cases[] = {
        { "tree.yml", 0 }, { "front.yml", 1 }, { "front.lua", 1 }, { "moe.yml", 2 },
    };
    for (size_t c = 0; c < CR_ARRAY_LEN(cases); c++) {
        char *p = io_join(dir, cases[c].name);
        char msg[1024];
        for (int extra = 0; extra <= 1; extra++) {
            write_recipe(p, (size_t)CR_LIMIT_RECIPE_BYTES + (size_t)extra, "# a comment\n");
            cr_status s = load_recipe(p, cases[c].how, msg, sizeof msg);
            if (!extra) {
                /* read whole: what follows is about its (empty) content */
                CHECK_MSG(s != CR_ERR_LIMIT, "%s at the limit: %s", cases[c].name, msg);
            } else {
                CHECK_MSG(s == CR_ERR_LIMIT, "%s one byte over: status %s: %s", cases[c].name, cr_status_name(s), msg);
                CHECK_CONTAINS(msg, cases[c].name);
                CHECK_CONTAINS(msg, "larger than 16 MiB");
            }
        }
        free(p);
    }
    io_rmtree(dir);
    free(dir);
}

TEST(param_depth)
{
    /* conditional parameter lists nested past CR_LIMIT_PARAM_DEPTH are a
     * recipe error naming the spot, not unbounded recursion */
    char t[8192];
    size_t n = (size_t)sprintf(t, "merge_method: linear\nmodels:\n  - model: a\n    parameters:\n      weight: ");
    int depth = CR_LIMIT_PARAM_DEPTH + 3;
    for (int i = 0; i < depth; i++) n += (size_t)sprintf(t + n, "[{filter: x, value: ");
    n += (size_t)sprintf(t + n, "1");
    for (int i = 0; i < depth; i++) n += (size_t)sprintf(t + n, "}]");
    n += (size_t)sprintf(t + n, "\ndtype: float32\n");
    cr_diags d;
    cr_diags_init(&d, cr_default_allocator());
    cr_plan plan;
    cr_error err = {0};
    cr_frontend_options opt = {.no_env = true, .header_only = true};
    cr_status s = cr_frontend_yaml_text(cr_default_allocator(), "/nonexistent/deep.yml", t, n, &opt,
                                        &plan, &d, &err);
    CHECK(s != CR_OK);
    bool found = false;
    for (size_t i = 0; i < d.items.len; i++)
        if (strstr(CR_VEC_AT(&d.items, cr_diag, i).msg, "nested more than")) found = true;
    CHECK_MSG(found, "no 'nested more than' diagnostic (status %s)", cr_status_name(s));
    cr_plan_free(&plan);
    cr_diags_free(&d);
}

int main(void)
{
    RUN(st_header_length);
    RUN(st_rank);
    RUN(st_name_length);
    RUN(model_shards_and_index);
    RUN(yaml_depth);
    RUN(yaml_aliases);
    RUN(yaml_alias_bomb);
    RUN(yaml_documents);
    RUN(recipe_bytes);
    RUN(param_depth);
    return cr_test_summary();
}
