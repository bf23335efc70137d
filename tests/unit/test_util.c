/*
 * test_util.c: util/util.c (buffers, JSON strings, integers, time) and
 * net/http.c's http_unescape.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../src/net/http.h"
#include "../../src/util/util.h"
#include "harness.h"

static void json_str_is(const char *in, size_t n, const char *want)
{
    buf_t b = {0};
    buf_put_json_str(&b, in, n);
    CHECK_STR(b.p, want);
    CHECK_INT(b.len, strlen(want));
    /* The result is a JSON string that reads back as the input. */
    json_t *v = json_loadb(b.p, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (CHECK(json_is_string(v)))
        CHECK_MEM(json_string_value(v), json_string_length(v), in, n);
    json_decref(v);
    buf_free(&b);
}

TEST(json_string_escaping)
{
    /* in, its length, the JSON string it must give */
    static const struct {
        const char *in;
        size_t n;
        const char *want;
    } cases[] = {
        {"", 0, "\"\""},
        {"plain", 5, "\"plain\""},
        {"a\"b\\c", 5, "\"a\\\"b\\\\c\""},
        {"\n\r\t", 3, "\"\\n\\r\\t\""},
        {"\b\f", 2, "\"\\u0008\\u000c\""},
        {"\x01\x1f", 2, "\"\\u0001\\u001f\""},
        {"a\0b", 3, "\"a\\u0000b\""},
        {"/ \x7f", 3, "\"/ \x7f\""},
        {"\xc3\xa9\xf0\x9f\x98\x80", 6, "\"\xc3\xa9\xf0\x9f\x98\x80\""},
        {"\"\"", 2, "\"\\\"\\\"\""},
        {"end\\", 4, "\"end\\\\\""},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        json_str_is(cases[i].in, cases[i].n, cases[i].want);
    json_str_is("abc", 2, "\"ab\"");
    /* Appends to what is there. */
    buf_t b = {0};
    buf_puts(&b, "x=");
    buf_put_json_str(&b, "y", 1);
    CHECK_STR(b.p, "x=\"y\"");
    buf_free(&b);
    /* A long run with escapes spread through it. */
    char big[3000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i % 7 == 0 ? '"' : 'a' + (int)(i % 26));
    buf_put_json_str(&b, big, sizeof big);
    json_t *v = json_loadb(b.p, b.len, JSON_DECODE_ANY, NULL);
    CHECK(v && json_string_length(v) == sizeof big &&
          memcmp(json_string_value(v), big, sizeof big) == 0);
    json_decref(v);
    buf_free(&b);
}

TEST(buffers)
{
    buf_t b = {0};
    /* util.h: "p is always NUL-terminated when cap > 0"; taking an empty
     * buffer hands out an empty string. (Only the first byte is read, so
     * that a missing NUL fails here and not in ASan.) */
    size_t len = 99;
    char *p = buf_take(&b, &len);
    CHECK(p != NULL && p[0] == '\0');
    CHECK_INT(len, 0);
    free(p);
    buf_reserve(&b, 10);
    CHECK(b.p != NULL && b.p[0] == '\0');
    buf_free(&b);
    buf_put(&b, "", 0);
    CHECK_STR(b.p, "");
    buf_printf(&b, "%d-%s", 42, "x");
    buf_putc(&b, '!');
    buf_put_i64(&b, INT64_MIN);
    CHECK_STR(b.p, "42-x!-9223372036854775808");
    p = buf_take(&b, &len);
    CHECK_INT(len, strlen(p));
    CHECK(b.p == NULL && b.len == 0 && b.cap == 0);
    free(p);
    for (int i = 0; i < 10000; i++)
        buf_putc(&b, (char)('a' + i % 26));
    CHECK_INT(b.len, 10000);
    CHECK_INT(strlen(b.p), 10000);
    buf_free(&b);
    buf_free(&b);
}

static bool i64(const char *s, int64_t *v) { return parse_i64(s, strlen(s), v) == 0; }

TEST(parse_i64_bounds)
{
    int64_t v = 7;
    CHECK(i64("0", &v) && v == 0);
    CHECK(i64("-0", &v) && v == 0);
    CHECK(i64("42", &v) && v == 42);
    CHECK(i64("-42", &v) && v == -42);
    CHECK(i64("007", &v) && v == 7);
    CHECK(i64("9223372036854775807", &v) && v == INT64_MAX);
    CHECK(i64("-9223372036854775808", &v) && v == INT64_MIN);
    CHECK(i64("9223372036854775806", &v) && v == INT64_MAX - 1);
    v = 7;
    const char *bad[] = {"", "-", "+1", " 1", "1 ", "1a", "a", "1.0", "1e3", "--1", "0x10",
                         "9223372036854775808", "-9223372036854775809",
                         "9999999999999999999", "18446744073709551615",
                         "18446744073709551616", "99999999999999999999",
                         "123456789012345678901234567890"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        if (!CHECK(!i64(bad[i], &v)))
            FAILF("parse_i64 accepted %s", bad[i]);
    CHECK_INT(v, 7); /* untouched on failure */
    /* Only n bytes count. */
    CHECK(parse_i64("123", 2, &v) == 0 && v == 12);
    CHECK(parse_i64("12x", 2, &v) == 0 && v == 12);
    CHECK(parse_i64("1\0", 2, &v) != 0);
}

TEST(time_round_trip)
{
    char out[TIME_RFC3339_LEN + 1];
    int64_t ms = -1;
    time_format_rfc3339(0, out);
    CHECK_STR(out, "1970-01-01T00:00:00.000Z");
    time_format_rfc3339(1700000000123, out);
    CHECK_STR(out, "2023-11-14T22:13:20.123Z");
    time_format_rfc3339(951782400000 - 1, out); /* 2000-02-29 minus 1 ms */
    CHECK_STR(out, "2000-02-28T23:59:59.999Z");
    time_format_rfc3339(951782400000, out);
    CHECK_STR(out, "2000-02-29T00:00:00.000Z");
    time_format_rfc3339(253402300799999, out);
    CHECK_STR(out, "9999-12-31T23:59:59.999Z");

    /* format -> parse is the identity, over ~10000 years. */
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t t = (int64_t)(x % 253402300800000ull);
        time_format_rfc3339(t, out);
        CHECK_INT(strlen(out), TIME_RFC3339_LEN);
        if (!CHECK(time_parse_rfc3339(out, &ms) == 0 && ms == t)) {
            FAILF("%lld -> %s -> %lld", (long long)t, out, (long long)ms);
            break;
        }
    }
    int64_t now = time_now_ms();
    time_format_rfc3339(now, out);
    CHECK(time_parse_rfc3339(out, &ms) == 0 && ms == now);

    /* Other RFC 3339 shapes. */
    CHECK(time_parse_rfc3339("2023-11-14T22:13:20Z", &ms) == 0 && ms == 1700000000000);
    CHECK(time_parse_rfc3339("2023-11-14t22:13:20z", &ms) == 0 && ms == 1700000000000);
    CHECK(time_parse_rfc3339("2023-11-14T22:13:20.1Z", &ms) == 0 && ms == 1700000000100);
    CHECK(time_parse_rfc3339("2023-11-14T22:13:20.123456Z", &ms) == 0 && ms == 1700000000123);
    CHECK(time_parse_rfc3339("2023-11-15T00:13:20+02:00", &ms) == 0 && ms == 1700000000000);
    CHECK(time_parse_rfc3339("2023-11-14T20:43:20.5-01:30", &ms) == 0 &&
          ms == 1700000000500);
    CHECK(time_parse_rfc3339("1970-01-01T00:00:00Z", &ms) == 0 && ms == 0);
    const char *bad[] = {"", "2023-11-14", "2023-11-14T22:13:20", "2023-11-14T22:13:20.Z",
                         "2023-11-14 22:13:20Z", "2023-13-14T22:13:20Z",
                         "2023-00-14T22:13:20Z", "2023-11-00T22:13:20Z",
                         "2023-11-32T22:13:20Z", "2023-11-14T24:13:20Z",
                         "2023-11-14T22:60:20Z", "2023-11-14T22:13:61Z",
                         "2023-11-14T22:13:20+0200", "2023-11-14T22:13:20+02:00x",
                         "2023-11-14T22:13:20Zx", "2023/11/14T22:13:20Z",
                         "2023-1a-14T22:13:20Z", "2023-11-14T22:13:20 Z"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        if (!CHECK(time_parse_rfc3339(bad[i], &ms) == -1))
            FAILF("accepted %s", bad[i]);
}

TEST(ascii_compare_and_ids)
{
    CHECK(ascii_casecmp_n("Content-Length", "content-length", 14) == 0);
    CHECK(ascii_casecmp_n("abc", "abd", 3) != 0);
    CHECK(ascii_casecmp_n("abc", "abd", 2) == 0);
    CHECK(ascii_casecmp_n("\xc3\xa9", "\xc3\x89", 2) != 0); /* ASCII only */
    char id[33];
    random_id(id, 32);
    CHECK_INT(strlen(id), 32);
    for (int i = 0; i < 32; i++)
        CHECK((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
              (id[i] >= '0' && id[i] <= '9'));
    char id2[33];
    random_id(id2, 32);
    CHECK(strcmp(id, id2) != 0);
    random_id(id2, 0);
    CHECK_STR(id2, "");
}

static bool unesc(const char *in, bool plus, const char *want, size_t want_len)
{
    buf_t b = {0};
    buf_puts(&b, "junk"); /* output is replaced, not appended */
    int rc = http_unescape(in, strlen(in), plus, &b);
    bool ok;
    if (want) {
        ok = CHECK_INT(rc, 0) && CHECK_MEM(b.p, b.len, want, want_len);
    } else {
        ok = CHECK_INT(rc, -1);
    }
    if (!ok)
        FAILF("http_unescape(%s)", in);
    buf_free(&b);
    return ok;
}

#define UNESC(in, plus, want) unesc(in, plus, want, sizeof(want) - 1)
#define UNESC_BAD(in) unesc(in, false, NULL, 0)

TEST(unescape)
{
    UNESC("", false, "");
    UNESC("abc", false, "abc");
    UNESC("a%20b", false, "a b");
    UNESC("%41%42", false, "AB");
    UNESC("%2f%2F", false, "//");
    UNESC("%e9", false, "\xe9"); /* bytes, no UTF-8 check here */
    UNESC("%25", false, "%");
    UNESC("%2520", false, "%20"); /* decoded once */
    UNESC("a+b", true, "a b");
    UNESC("a+b", false, "a+b");
    UNESC("%2B", true, "+");
    UNESC("x%3Aeq%3A%221%22", false, "x:eq:\"1\"");
    UNESC("%ff", false, "\xff");
    UNESC("%01", false, "\x01");
    UNESC_BAD("%");
    UNESC_BAD("%4");
    UNESC_BAD("a%");
    UNESC_BAD("a%4");
    UNESC_BAD("%zz");
    UNESC_BAD("%4g");
    UNESC_BAD("%g4");
    UNESC_BAD("% 4");
    UNESC_BAD("%-1");
    UNESC_BAD("%00");
    UNESC_BAD("a%00b");
    UNESC_BAD("ok%2");
    /* An empty input into a fresh buffer gives an empty C string: the
     * router uses the decoded key ("?=x") with strcmp. */
    buf_t b = {0};
    CHECK_INT(http_unescape("", 0, true, &b), 0);
    CHECK(b.p != NULL && b.p[0] == '\0');
    CHECK_INT(b.len, 0);
    buf_free(&b);
    /* Nor when the buffer held an earlier result (router.c split_path
     * reuses one buffer for every path segment: "/v1/c//x"). */
    CHECK_INT(http_unescape("ab", 2, false, &b), 0);
    CHECK_INT(http_unescape("", 0, false, &b), 0);
    CHECK_INT(b.len, 0);
    CHECK(b.p != NULL && b.p[0] == '\0');
    buf_free(&b);
    /* Only n bytes are read. */
    CHECK_INT(http_unescape("%41%", 3, false, &b), 0);
    CHECK_STR(b.p, "A");
    CHECK_INT(http_unescape("%41", 2, false, &b), -1);
    buf_free(&b);
}
