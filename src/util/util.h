/*
 * util.h: memory, byte buffers, time and small string helpers shared by
 * every module.
 *
 * Out-of-memory policy, decided once: the x* allocators abort the process
 * with a message. No caller checks for NULL. A server that cannot allocate
 * a few bytes cannot answer anyone correctly; dying loudly lets the
 * supervisor restart it, and the database is durable across that.
 */
#ifndef LIVEDB_UTIL_H
#define LIVEDB_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* A growable byte buffer. p is always NUL-terminated when cap > 0, so a
 * buffer of text can be handed to C string functions. */
typedef struct buf {
    char *p;
    size_t len;
    size_t cap;
} buf_t;

void buf_reserve(buf_t *b, size_t extra);
void buf_put(buf_t *b, const void *data, size_t n);
void buf_puts(buf_t *b, const char *s);
void buf_putc(buf_t *b, char c);
void buf_printf(buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void buf_put_i64(buf_t *b, int64_t v);
/* Appends s as a JSON string literal, quotes included. s must be UTF-8
 * (everything that reaches here has passed jansson or our own checks). */
void buf_put_json_str(buf_t *b, const char *s, size_t n);
/* Hands the bytes to the caller (who frees them) and empties b. */
char *buf_take(buf_t *b, size_t *len);
void buf_free(buf_t *b);

/* Wall-clock milliseconds since the epoch, and monotonic nanoseconds. */
int64_t time_now_ms(void);
uint64_t time_mono_ns(void);
/* RFC 3339 UTC with milliseconds: "2026-11-22T02:35:40.123Z" (24 chars). */
#define TIME_RFC3339_LEN 24
void time_format_rfc3339(int64_t ms, char out[TIME_RFC3339_LEN + 1]);
/* Parses the format above (and any RFC 3339 with offset); -1 on error. */
int time_parse_rfc3339(const char *s, int64_t *ms_out);

/* Strict decimal parse of the whole of [s, s+n): digits only, optional
 * leading '-', no overflow. Returns 0 on success. */
int parse_i64(const char *s, size_t n, int64_t *out);

/* Lower-cases ASCII letters in place. */
void ascii_lower(char *s);
/* Case-insensitive ASCII compare of n bytes. */
int ascii_casecmp_n(const char *a, const char *b, size_t n);

/* Random identifiers: n characters of [A-Za-z0-9] into out (NUL added). */
void random_id(char *out, size_t n);
/* A new document id: 8 characters of the time in ms (base 62, so ids sort
 * by creation time) and n-8 random ones. Ids made later sort later, which
 * keeps inserts at the right edge of the B-tree and lists by id in the
 * order documents were made. n >= 16. */
void time_ordered_id(char *out, size_t n);

/* Invariants, in the spirit of SQLite's assert, ALWAYS and NEVER: checked
 * in debug builds (-DLIVEDB_DEBUG, which the ASan build sets), free in a
 * release build. INVARIANT(x): x holds here, or the code is wrong.
 * ALWAYS(x) / NEVER(x): a condition believed always true / never true that
 * the code still handles; a debug build stops where the belief fails. */
#ifdef LIVEDB_DEBUG
#include <assert.h>
#define INVARIANT(x) assert(x)
#define ALWAYS(x) ((x) ? 1 : (assert(!"ALWAYS(" #x ")"), 0))
#define NEVER(x) ((x) ? (assert(!"NEVER(" #x ")"), 1) : 0)
#else
#define INVARIANT(x) ((void)0)
#define ALWAYS(x) (x)
#define NEVER(x) (x)
#endif

#endif
