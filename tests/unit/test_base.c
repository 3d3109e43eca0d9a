/* test_base.c — allocator hook, fault injection, arena, vectors, errors. */
#include "harness.h"
#include "base.h"
#include "program.h"

TEST(failing_allocator_fails_nth)
{
    cr_failing_allocator fa;
    cr_failing_allocator_init(&fa, cr_default_allocator(), 1, false);
    void *a = cr_malloc(&fa.base, 8);
    void *b = cr_malloc(&fa.base, 8);
    void *c = cr_malloc(&fa.base, 8);
    CHECK(a != NULL);
    CHECK(b == NULL);
    CHECK(c != NULL);
    cr_free(&fa.base, a);
    cr_free(&fa.base, c);
    CHECK_EQ_INT(fa.live, 0);
}

TEST(arena_and_vec)
{
    cr_arena ar;
    cr_arena_init(&ar, cr_default_allocator());
    char *s = cr_arena_printf(&ar, "%s-%d", "layer", 7);
    CHECK_STR(s, "layer-7");
    for (int i = 0; i < 10000; i++) REQUIRE(cr_arena_alloc(&ar, 100));
    cr_arena_free(&ar);

    cr_vec v;
    cr_vec_init(&v, cr_default_allocator(), sizeof(int));
    for (int i = 0; i < 100; i++) REQUIRE(cr_vec_push(&v, &i));
    CHECK_EQ_INT(v.len, 100);
    CHECK_EQ_INT(CR_VEC_AT(&v, int, 42), 42);
    cr_vec_free(&v);
}

TEST(error_messages)
{
    cr_error err = {0};
    cr_status s = cr_fail(&err, CR_ERR_FORMAT, "%s: header too short", "x.safetensors");
    CHECK_EQ_INT(s, CR_ERR_FORMAT);
    CHECK_STR(err.msg, "x.safetensors: header too short");
    cr_fail_errno(&err, 2, "open %s", "y");
    CHECK_CONTAINS(err.msg, "open y: No such file");
}

TEST(path_join)
{
    static const char *cases[][3] = {
        { "dir", "x", "dir/x" }, { "dir/", "x", "dir/x" }, { "dir//", "x", "dir/x" },
        { "/", "x", "/x" }, { "", "x", "/x" }, { "a/b", "c.json", "a/b/c.json" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *p = cr_path_join(cr_default_allocator(), cases[i][0], cases[i][1]);
        REQUIRE(p);
        CHECK_STR(p, cases[i][2]);
        cr_free(cr_default_allocator(), p);
    }
    cr_failing_allocator fa;
    cr_failing_allocator_init(&fa, cr_default_allocator(), 0, false);
    CHECK(cr_path_join(&fa.base, "dir", "x") == NULL);
}

TEST(op_table_is_complete)
{
    for (int i = 0; i < CR_OP_COUNT; i++) {
        CHECK(cr_op_table[i].name != NULL);
        CHECK_EQ_INT(strlen(cr_op_table[i].kinds), 4);
        CHECK(cr_op_table[i].synopsis && cr_op_table[i].synopsis[0]);
    }
}

int main(void)
{
    RUN(failing_allocator_fails_nth);
    RUN(arena_and_vec);
    RUN(error_messages);
    RUN(path_join);
    RUN(op_table_is_complete);
    return cr_test_summary();
}
