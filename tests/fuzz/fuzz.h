/*
 * fuzz.h: what every fuzzer in tests/fuzz shares (header only, so the
 * Makefile's rule build/fuzz/fuzz_% = LIBSRC + one fuzz_%.c stays as is).
 *
 * REQUIRE(c): a property the target checks besides memory safety; on
 * failure it names the line (tests/fuzz/run greps for "REQUIRE(") and
 * traps, which libFuzzer reports as a crash and writes the input out.
 * fuzz_next_part: inputs made of NUL-separated parts.
 */
#ifndef LIVEDB_TESTS_FUZZ_H
#define LIVEDB_TESTS_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c)                                                                \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "%s:%d: REQUIRE(%s)\n", __FILE__, __LINE__, #c);      \
            __builtin_trap();                                                     \
        }                                                                         \
    } while (0)

/* The part at p, up to the next NUL or end: its length in *n; returns the
 * start of the part after it, or NULL when this was the last. */
static inline const char *fuzz_next_part(const char *p, const char *end, size_t *n)
{
    const char *z = memchr(p, '\0', (size_t)(end - p));
    *n = (size_t)((z ? z : end) - p);
    return z ? z + 1 : NULL;
}

#endif
