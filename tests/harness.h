/* harness.h — the smallest test harness that says what failed.
 *
 * Each test binary defines tests with TEST(name) { ... }, lists them in
 * main via RUN(name), and ends with `return cr_test_summary();`, which
 * prints "N passed, M failed" (the line CI reads) and returns non-zero on
 * any failure. CHECK keeps going after a failure; REQUIRE returns from the
 * test. */
#ifndef CR_TEST_HARNESS_H
#define CR_TEST_HARNESS_H

#include <stdio.h>
#include <string.h>
#include <math.h>

/* A TEST that main() forgets to RUN is a build error, not a test that
 * silently never runs: the list in main() is checked by the compiler. */
#pragma GCC diagnostic error "-Wunused-function"

typedef struct cr_test_state {
    int passed, failed;
    int current_failed;
    const char *current;
} cr_test_state;

static cr_test_state cr_test_g;   /* test binaries only; not library state */

#define TEST(name) static void test_##name(void)

#define RUN(name) do {                                              \
        cr_test_g.current = #name;                                  \
        cr_test_g.current_failed = 0;                               \
        test_##name();                                              \
        if (cr_test_g.current_failed) cr_test_g.failed++;           \
        else cr_test_g.passed++;                                    \
    } while (0)

#define CR_TEST_FAIL_(fmt, ...) do {                                \
        fprintf(stderr, "FAIL %s (%s:%d): " fmt "\n",               \
                cr_test_g.current, __FILE__, __LINE__, __VA_ARGS__);\
        cr_test_g.current_failed = 1;                               \
    } while (0)

#define CHECK(cond) do { if (!(cond)) CR_TEST_FAIL_("%s", #cond); } while (0)
#define REQUIRE(cond) do { if (!(cond)) { CR_TEST_FAIL_("%s", #cond); return; } } while (0)
#define CHECK_MSG(cond, ...) do { if (!(cond)) CR_TEST_FAIL_(__VA_ARGS__); } while (0)
#define CHECK_EQ_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
        if (a_ != b_) CR_TEST_FAIL_("%s == %s (%lld != %lld)", #a, #b, a_, b_); } while (0)
#define CHECK_STR(a, b) do { const char *a_ = (a), *b_ = (b);       \
        if (!a_ || !b_ || strcmp(a_, b_)) CR_TEST_FAIL_("%s == %s (\"%s\" != \"%s\")", \
            #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } while (0)
#define CHECK_CONTAINS(hay, needle) do { const char *h_ = (hay), *n_ = (needle); \
        if (!h_ || !strstr(h_, n_)) CR_TEST_FAIL_("\"%s\" contains \"%s\"", h_ ? h_ : "(null)", n_); } while (0)
#define CHECK_NEAR(a, b, tol) do { double a_ = (a), b_ = (b);       \
        if (!(fabs(a_ - b_) <= (tol))) CR_TEST_FAIL_("%s ~ %s (%.9g vs %.9g)", #a, #b, a_, b_); } while (0)

static inline int cr_test_summary(void)
{
    printf("%d passed, %d failed\n", cr_test_g.passed, cr_test_g.failed);
    return cr_test_g.failed ? 1 : 0;
}

#endif
