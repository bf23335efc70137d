/*
 * main.c: the unit-test runner (see harness.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static test_case *registry;
static const test_case *current;
static bool current_failed;

void test_register(test_case *t)
{
    /* Keep the list sorted by (file, line) so that runs are reproducible
     * whatever order the constructors ran in. */
    test_case **pp = &registry;
    while (*pp) {
        int c = strcmp((*pp)->file, t->file);
        if (c > 0 || (c == 0 && (*pp)->line > t->line))
            break;
        pp = &(*pp)->next;
    }
    t->next = *pp;
    *pp = t;
}

static void fail_header(void)
{
    if (!current_failed)
        printf("FAIL %s (%s)\n", current ? current->name : "?", current ? current->file : "?");
    current_failed = true;
}

bool test_check(bool ok, const char *file, int line, const char *expr)
{
    if (ok)
        return true;
    fail_header();
    printf("  %s:%d: CHECK(%s)\n", file, line, expr);
    return false;
}

bool test_check_int(long long a, long long b, const char *file, int line, const char *ea,
                    const char *eb)
{
    if (a == b)
        return true;
    fail_header();
    printf("  %s:%d: %s == %s: %lld != %lld\n", file, line, ea, eb, a, b);
    return false;
}

static void print_quoted(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n && i < 400; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    if (n > 400)
        printf("...(%zu bytes)", n);
    putchar('"');
}

bool test_check_mem(const void *a, size_t alen, const void *b, size_t blen, const char *file,
                    int line, const char *ea, const char *eb)
{
    if (a && b && alen == blen && (alen == 0 || memcmp(a, b, alen) == 0))
        return true;
    if (!a && !b)
        return true;
    fail_header();
    printf("  %s:%d: %s == %s:\n    got      ", file, line, ea, eb);
    if (a)
        print_quoted(a, alen);
    else
        printf("NULL");
    printf("\n    expected ");
    if (b)
        print_quoted(b, blen);
    else
        printf("NULL");
    printf("\n");
    return false;
}

bool test_check_str(const char *a, const char *b, const char *file, int line, const char *ea,
                    const char *eb)
{
    return test_check_mem(a, a ? strlen(a) : 0, b, b ? strlen(b) : 0, file, line, ea, eb);
}

void test_failf(const char *file, int line, const char *fmt, ...)
{
    fail_header();
    printf("  %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

bool test_current_failed(void) { return current_failed; }

static bool selected(const test_case *t, int argc, char **argv)
{
    if (argc < 2)
        return true;
    for (int i = 1; i < argc; i++)
        if (strstr(t->name, argv[i]) || strstr(t->file, argv[i]))
            return true;
    return false;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int passed = 0, failed = 0;
    for (test_case *t = registry; t; t = t->next) {
        if (!selected(t, argc, argv))
            continue;
        current = t;
        current_failed = false;
        t->fn();
        if (current_failed)
            failed++;
        else
            passed++;
    }
    current = NULL;
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
