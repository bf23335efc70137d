/*
 * harness.h: a small unit-test harness.
 *
 * Each test file defines tests with TEST(name) { ... }; a constructor adds
 * them to one registry, and tests/unit/main.c runs them in (file, line)
 * order. Checks do not stop a test (except REQUIRE); every failed check
 * prints file:line and the expression. The run ends with exactly one line
 * "N passed, N failed" (tests) and exits non-zero when any test failed.
 *
 *   build/unit             run every test
 *   build/unit WORD...     run the tests whose name contains one of WORDs
 */
#ifndef LIVEDB_TEST_HARNESS_H
#define LIVEDB_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct test_case {
    const char *name;
    const char *file;
    int line;
    void (*fn)(void);
    struct test_case *next;
} test_case;

void test_register(test_case *t);

/* Record a check; false when it failed (the current test then fails). */
bool test_check(bool ok, const char *file, int line, const char *expr);
bool test_check_int(long long a, long long b, const char *file, int line, const char *ea,
                    const char *eb);
bool test_check_str(const char *a, const char *b, const char *file, int line, const char *ea,
                    const char *eb);
bool test_check_mem(const void *a, size_t alen, const void *b, size_t blen, const char *file,
                    int line, const char *ea, const char *eb);
/* A failure with a free-form message (for property tests). */
void test_failf(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Whether the running test has failed so far. */
bool test_current_failed(void);

#define TEST(fn_)                                                                 \
    static void fn_(void);                                                        \
    static test_case fn_##_case_ = {#fn_, __FILE__, __LINE__, fn_, NULL};         \
    __attribute__((constructor)) static void fn_##_register_(void)                \
    {                                                                             \
        test_register(&fn_##_case_);                                              \
    }                                                                             \
    static void fn_(void)

#define CHECK(e) test_check((e) ? true : false, __FILE__, __LINE__, #e)
/* Stops the test (returns from it) when e is false. */
#define REQUIRE(e)                                                                \
    do {                                                                          \
        if (!CHECK(e))                                                            \
            return;                                                               \
    } while (0)
#define CHECK_INT(a, b)                                                           \
    test_check_int((long long)(a), (long long)(b), __FILE__, __LINE__, #a, #b)
/* NUL-terminated strings; NULL is allowed on either side. */
#define CHECK_STR(a, b) test_check_str((a), (b), __FILE__, __LINE__, #a, #b)
#define CHECK_MEM(a, alen, b, blen)                                               \
    test_check_mem((a), (alen), (b), (blen), __FILE__, __LINE__, #a, #b)
#define FAILF(...) test_failf(__FILE__, __LINE__, __VA_ARGS__)

#endif
