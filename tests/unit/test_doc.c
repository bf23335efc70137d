/*
 * test_doc.c: core/doc.c: names, ids, JSON checks, composition and
 * RFC 7396 merge patch.
 */
#include <stdlib.h>
#include <string.h>

#include "../../src/core/doc.h"
#include "harness.h"

/* Whether check (doc_check_collection or doc_check_id) takes s; a refusal
 * must be a bad request. */
static int name_ok(int (*check)(const char *, size_t, err_t *), const char *s, size_t n)
{
    err_t e = {0};
    int rc = check(s, n, &e);
    if (rc)
        CHECK_INT(e.code, E_BAD_REQUEST);
    err_clear(&e);
    return rc == 0;
}

static int coll_ok(const char *s, size_t n) { return name_ok(doc_check_collection, s, n); }
static int id_ok(const char *s, size_t n) { return name_ok(doc_check_id, s, n); }

/* A name, its length and whether it is taken. */
typedef struct name_case {
    const char *s;
    size_t n;
    bool ok;
} name_case;

/* One check a case; a failure names the case. */
static void names_are(int (*ok)(const char *, size_t), const name_case *cases, size_t ncases)
{
    for (size_t i = 0; i < ncases; i++)
        if (!CHECK(ok(cases[i].s, cases[i].n) == cases[i].ok))
            FAILF("case %zu: \"%.*s\" (%zu bytes)", i, (int)cases[i].n, cases[i].s, cases[i].n);
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

TEST(collection_names)
{
    static char s[200]; /* long names: the first n bytes of s */
    memset(s, 'a', sizeof s);
    static const name_case cases[] = {
        {s, 63, true},
        {s, 64, true},
        {s, 65, false},
        {s, 128, false},
        {"", 0, false},
        {"a", 1, true},
        {"a_b9", 4, true},
        {"z0", 2, true},
        {"_a", 2, false}, /* reserved */
        {"_", 1, false},
        {"A", 1, false},
        {"aB", 2, false},
        {"1a", 2, false},
        {"a-b", 3, false},
        {"a.b", 3, false},
        {"a b", 3, false},
        {"a/b", 3, false},
        {"a\"", 2, false},
        {"\xc3\xa9", 2, false},
        {"a\0b", 3, false},
        {"ab/", 2, true}, /* only n bytes are looked at */
    };
    names_are(coll_ok, cases, ARRAY_LEN(cases));
}

TEST(doc_ids)
{
    static char s[200]; /* long names: the first n bytes of s */
    memset(s, 'x', sizeof s);
    static const name_case cases[] = {
        {"", 0, false},
        {"x", 1, true},
        {"Az09_.-", 7, true},
        {".", 1, true},
        {"-", 1, true},
        {"a b", 3, false},
        {"a/b", 3, false},
        {"a%2F", 4, false},
        {"a:b", 3, false},
        {"a\"b", 3, false},
        {"a+b", 3, false},
        {"\xc3\xa9", 2, false},
        {"a\0", 2, false},
        {"a\n", 2, false},
        {s, 64, true},
        {s, 65, true},
        {s, 128, true},
        {s, 129, false},
    };
    names_are(id_ok, cases, ARRAY_LEN(cases));
}

/* "[[[...]]]" nested depth deep, with optional text in the middle. */
static char *nest(int depth, const char *mid)
{
    size_t ml = strlen(mid);
    char *s = malloc((size_t)depth * 2 + ml + 1);
    memset(s, '[', (size_t)depth);
    memcpy(s + depth, mid, ml);
    memset(s + depth + ml, ']', (size_t)depth);
    s[depth * 2 + ml] = '\0';
    return s;
}

TEST(json_depth)
{
    char *s64 = nest(64, ""), *s65 = nest(65, "");
    CHECK(json_depth_ok(s64, strlen(s64), 64));
    CHECK(!json_depth_ok(s65, strlen(s65), 64));
    CHECK(json_depth_ok(s65, strlen(s65), 65));
    free(s64);
    free(s65);

    /* Objects count as arrays do. */
    buf_t b = {0};
    for (int i = 0; i < 65; i++)
        buf_puts(&b, "{\"a\":");
    buf_puts(&b, "1");
    for (int i = 0; i < 65; i++)
        buf_putc(&b, '}');
    CHECK(!json_depth_ok(b.p, b.len, 64));
    CHECK(json_depth_ok(b.p, b.len, 65));
    buf_free(&b);

    /* Brackets inside strings do not count. */
    char *in_str = repeat('[', 200);
    buf_puts(&b, "[\"");
    buf_puts(&b, in_str);
    buf_puts(&b, "\"]");
    CHECK(json_depth_ok(b.p, b.len, 1));
    buf_free(&b);

    /* An escaped quote does not end the string... */
    buf_puts(&b, "[\"\\\"");
    buf_puts(&b, in_str);
    buf_puts(&b, "\"]");
    CHECK(json_depth_ok(b.p, b.len, 1));
    buf_free(&b);

    /* ...but an escaped backslash before the quote does. */
    buf_puts(&b, "[\"\\\\\",");
    buf_puts(&b, "[[]]");
    buf_puts(&b, "]");
    CHECK(!json_depth_ok(b.p, b.len, 2));
    CHECK(json_depth_ok(b.p, b.len, 3));
    buf_free(&b);

    /* Closing brackets free depth for later siblings. */
    CHECK(json_depth_ok("[[],[],[[]]]", 12, 3));
    CHECK(!json_depth_ok("[[],[],[[[]]]]", 14, 3));
    /* Only len bytes are scanned. */
    CHECK(json_depth_ok("[[[", 1, 1));
    free(in_str);
}

static json_t *parse(const char *text, size_t len, err_code *code)
{
    err_t e = {0};
    json_t *v = json_parse_strict(text, len, &e);
    *code = e.code;
    if (!v && e.code == E_OK)
        FAILF("json_parse_strict failed without an error code");
    err_clear(&e);
    return v;
}

static bool parses(const char *text) /* NUL-terminated text */
{
    err_code code;
    json_t *v = parse(text, strlen(text), &code);
    if (!v)
        CHECK_INT(code, E_BAD_REQUEST);
    json_decref(v);
    return v != NULL;
}

/* A text and whether it parses. */
typedef struct parse_case {
    const char *text;
    bool ok;
} parse_case;

/* One check a case; a failure names the case. */
static void parses_are(const parse_case *cases, size_t ncases)
{
    for (size_t i = 0; i < ncases; i++)
        if (!CHECK(parses(cases[i].text) == cases[i].ok))
            FAILF("case %zu: %s", i, cases[i].text);
}

TEST(json_strict)
{
    static const parse_case texts[] = {
        {"{\"a\":1,\"b\":2}", true},
        {"1", true},
        {"\"x\"", true},
        {"null", true},
        {"[1,2.5,\"\\u00e9\",\"\xc3\xa9\",\"\xf0\x9f\x98\x80\"]", true},
        {"", false},
        {"{", false},
        {"{\"a\":1,}", false},
        {"{\"a\":1} x", false},
        {"NaN", false},
        {"Infinity", false},
        {"{'a':1}", false},
        /* Duplicates, at any depth. */
        {"{\"a\":1,\"a\":2}", false},
        {"{\"x\":{\"a\":1,\"a\":1}}", false},
        {"[{\"a\":1,\"b\":1,\"a\":3}]", false},
        {"[{\"a\":1},{\"a\":1}]", true},
        /* Bad UTF-8: a lone continuation byte, a truncated sequence, an
         * overlong encoding, a surrogate encoded in UTF-8, 0xff. */
        {"\"\x80\"", false},
        {"\"\xc3\"", false},
        {"\"\xc0\xaf\"", false},
        {"\"\xed\xa0\x80\"", false},
        {"\"\xff\"", false},
        {"{\"\xff\":1}", false},
        /* A lone surrogate escape. */
        {"\"\\ud800\"", false},
        /* NUL: escaped, raw inside a string, raw after the value. */
        {"\"a\\u0000b\"", false},
        {"{\"a\\u0000\":1}", false},
    };
    parses_are(texts, ARRAY_LEN(texts));
    err_code code;
    json_t *v = parse("\"a\0b\"", 5, &code);
    CHECK(v == NULL);
    json_decref(v);
    v = parse("{\"a\":1}\0", 8, &code);
    CHECK(v == NULL);
    json_decref(v);
    /* Numbers. */
    static const parse_case numbers[] = {
        {"1e400", false},
        {"-1e400", false},
        {"[1e400]", false},
        {"1e300", true},
        {"9223372036854775807", true},
        {"-9223372036854775808", true},
        {"9223372036854775808", false},
        {"-9223372036854775809", false},
        {"{\"a\":18446744073709551616}", false},
        {"01", false},
        {"+1", false},
        {".5", false},
    };
    parses_are(numbers, ARRAY_LEN(numbers));
    v = parse("9223372036854775807", 19, &code);
    REQUIRE(v != NULL);
    CHECK(json_is_integer(v) && json_integer_value(v) == INT64_MAX);
    json_decref(v);
    v = parse("1.0", 3, &code);
    REQUIRE(v != NULL);
    CHECK(json_is_real(v) && json_real_value(v) == 1.0);
    json_decref(v);
    /* Depth: 64 is fine, 65 is refused before parsing. */
    char *s64 = nest(64, "1"), *s65 = nest(65, "1");
    CHECK(parses(s64));
    CHECK(!parses(s65));
    free(s64);
    free(s65);
}

TEST(parse_object)
{
    err_t e = {0};
    json_t *v = doc_parse_object("{\"a\":1}", 7, &e);
    CHECK(json_is_object(v));
    json_decref(v);
    const char *not_objects[] = {"[1]", "1", "\"a\"", "null", "true", "", "{"};
    for (size_t i = 0; i < ARRAY_LEN(not_objects); i++) {
        v = doc_parse_object(not_objects[i], strlen(not_objects[i]), &e);
        CHECK(v == NULL);
        CHECK_INT(e.code, E_BAD_REQUEST);
        CHECK_INT(err_status(e.code), 400);
        json_decref(v);
        err_clear(&e);
    }
}

static json_t *J(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    if (!v)
        FAILF("bad test JSON %s: %s", text, je.text);
    return v;
}

TEST(server_fields)
{
    err_t e = {0};
    char *id = NULL;
    json_t *o = J("{\"id\":\"x1\",\"version\":9,\"created_at\":1,\"updated_at\":\"u\",\"a\":1}");
    CHECK_INT(doc_take_server_fields(o, "x1", &id, &e), 0);
    CHECK_STR(id, "x1");
    char *t = json_dumps(o, JSON_COMPACT);
    CHECK_STR(t, "{\"a\":1}");
    free(t);
    free(id);
    id = NULL;
    json_decref(o);

    /* No want_id: any valid id is taken. */
    o = J("{\"id\":\"y\",\"b\":2}");
    CHECK_INT(doc_take_server_fields(o, NULL, &id, &e), 0);
    CHECK_STR(id, "y");
    CHECK(json_object_get(o, "id") == NULL);
    free(id);
    id = NULL;
    json_decref(o);

    /* No id in the body: *id_out is left alone, server fields still go. */
    o = J("{\"version\":3,\"b\":2}");
    CHECK_INT(doc_take_server_fields(o, "z", &id, &e), 0);
    CHECK(id == NULL);
    CHECK_INT(json_object_size(o), 1);
    json_decref(o);

    /* id_out may be NULL. */
    o = J("{\"id\":\"z\"}");
    CHECK_INT(doc_take_server_fields(o, "z", NULL, &e), 0);
    CHECK_INT(json_object_size(o), 0);
    json_decref(o);

    const char *bad[] = {
        "{\"id\":\"other\"}",  /* differs from want_id */
        "{\"id\":\"x\"}",      /* a prefix of want_id */
        "{\"id\":\"x1x\"}",    /* want_id is a prefix */
        "{\"id\":1}",          /* not a string */
        "{\"id\":null}",
        "{\"id\":[\"x1\"]}",
        "{\"id\":\"\"}",       /* not a valid id */
        "{\"id\":\"x 1\"}",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        o = J(bad[i]);
        int rc = doc_take_server_fields(o, "x1", &id, &e);
        if (!CHECK_INT(rc, -1))
            FAILF("accepted %s", bad[i]);
        CHECK_INT(e.code, E_BAD_REQUEST);
        CHECK(id == NULL);
        free(id);
        id = NULL;
        err_clear(&e);
        json_decref(o);
    }
    /* Invalid ids are refused even without want_id. */
    o = J("{\"id\":\"a/b\"}");
    CHECK_INT(doc_take_server_fields(o, NULL, NULL, &e), -1);
    err_clear(&e);
    json_decref(o);
    /* An id with an embedded NUL (jansson can hold one) is refused. */
    o = json_object();
    json_object_set_new(o, "id", json_stringn("x1\0y", 4));
    CHECK_INT(doc_take_server_fields(o, "x1", NULL, &e), -1);
    err_clear(&e);
    json_decref(o);
}

TEST(members_and_compose)
{
    size_t n = 99;
    json_t *o = J("{\"a\":1,\"b\":[1,\"x\",null],\"c\":{\"d\":true},\"e\":\"\\u00e9\\n\",\"f\":1.5}");
    char *m = doc_members(o, &n);
    CHECK_STR(m, "\"a\":1,\"b\":[1,\"x\",null],\"c\":{\"d\":true},\"e\":\"\xc3\xa9\\n\",\"f\":1.5");
    CHECK_INT(n, strlen(m));

    buf_t b = {0};
    doc_compose(&b, "x1", 7, "2026-01-02T03:04:05.678Z", "2026-01-02T03:04:06.000Z", m, n);
    CHECK_STR(b.p, "{\"id\":\"x1\",\"version\":7,\"created_at\":\"2026-01-02T03:04:05.678Z\","
                   "\"updated_at\":\"2026-01-02T03:04:06.000Z\",\"a\":1,\"b\":[1,\"x\",null],"
                   "\"c\":{\"d\":true},\"e\":\"\xc3\xa9\\n\",\"f\":1.5}");
    CHECK_INT(b.len, strlen(b.p));
    /* The composition is JSON and holds what went in. */
    json_t *back = json_loadb(b.p, b.len, JSON_REJECT_DUPLICATES, NULL);
    CHECK(back != NULL);
    CHECK_INT(json_integer_value(json_object_get(back, "version")), 7);
    json_decref(back);
    buf_free(&b);
    free(m);
    json_decref(o);

    o = json_object();
    m = doc_members(o, &n);
    CHECK_STR(m, "");
    CHECK_INT(n, 0);
    doc_compose(&b, "y", 1, "c", "u", m, n);
    CHECK_STR(b.p, "{\"id\":\"y\",\"version\":1,\"created_at\":\"c\",\"updated_at\":\"u\"}");
    buf_free(&b);
    free(m);
    json_decref(o);

    /* Large and negative versions; members are appended verbatim. */
    doc_compose(&b, "a.b-c_d", INT64_MAX, "c", "u", "\"k\":0", 5);
    CHECK_STR(b.p, "{\"id\":\"a.b-c_d\",\"version\":9223372036854775807,\"created_at\":\"c\","
                   "\"updated_at\":\"u\",\"k\":0}");
    buf_free(&b);
    /* Appends to what the buffer holds. */
    buf_puts(&b, "[");
    doc_compose(&b, "q", -1, "c", "u", NULL, 0);
    CHECK_STR(b.p, "[{\"id\":\"q\",\"version\":-1,\"created_at\":\"c\",\"updated_at\":\"u\"}");
    buf_free(&b);

    /* Members round-trip through parse -> members -> compose -> parse. */
    const char *texts[] = {"{\"z\":1,\"a\":2}", "{\"s\":\"\\\"\\\\\\/\\b\\f\\t\\u0001\"}",
                           "{\"n\":-0.0,\"m\":1e300,\"k\":-9223372036854775808}"};
    for (size_t i = 0; i < ARRAY_LEN(texts); i++) {
        o = J(texts[i]);
        m = doc_members(o, &n);
        doc_compose(&b, "id", 1, "c", "u", m, n);
        back = json_loadb(b.p, b.len, 0, NULL);
        CHECK(back != NULL);
        json_object_del(back, "id");
        json_object_del(back, "version");
        json_object_del(back, "created_at");
        json_object_del(back, "updated_at");
        if (!CHECK(json_equal(back, o)))
            FAILF("round trip of %s gave %s", texts[i], b.p);
        json_decref(back);
        buf_free(&b);
        free(m);
        json_decref(o);
    }
}

TEST(merge_patch_rfc7396_appendix_a)
{
    /* RFC 7396 Appendix A, every example: original, patch, result. */
    static const char *const cases[][3] = {
        {"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
        {"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
        {"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
        {"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
        {"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
        {"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
        {"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}"},
        {"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
        {"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"},
        {"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"},
        {"{\"a\":\"foo\"}", "null", "null"},
        {"{\"a\":\"foo\"}", "\"bar\"", "\"bar\""},
        {"{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"},
        {"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
        {"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        json_t *target = J(cases[i][0]), *patch = J(cases[i][1]), *want = J(cases[i][2]);
        char *patch_before = json_dumps(patch, JSON_COMPACT | JSON_ENCODE_ANY);
        json_t *got = merge_patch(target, patch);
        if (!CHECK(got != NULL && json_equal(got, want))) {
            char *g = got ? json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            FAILF("example %zu: %s + %s = %s, want %s", i + 1, cases[i][0], cases[i][1],
                  g ? g : "NULL", cases[i][2]);
            free(g);
        }
        /* The patch is borrowed and left as it was. */
        char *patch_after = json_dumps(patch, JSON_COMPACT | JSON_ENCODE_ANY);
        CHECK_STR(patch_after, patch_before);
        /* The result does not share the patch's containers. */
        if (got && json_is_object(patch) && json_object_get(patch, "a") &&
            (json_is_object(json_object_get(patch, "a")) || json_is_array(json_object_get(patch, "a"))))
            CHECK(json_object_get(got, "a") != json_object_get(patch, "a"));
        free(patch_before);
        free(patch_after);
        json_decref(got);
        json_decref(patch);
        json_decref(want);
    }
}

/* got equals the JSON text want; a failure names the caller's line. */
#define CHECK_JSON_IS(got, want) check_json_is((got), (want), __FILE__, __LINE__, #got)

static void check_json_is(const json_t *got, const char *want, const char *file, int line,
                          const char *egot)
{
    json_t *w = J(want);
    test_check(json_equal(got, w), file, line, egot);
    json_decref(w);
}

TEST(merge_patch_more)
{
    /* A NULL target behaves as a missing one. */
    json_t *patch = J("{\"a\":{\"b\":null,\"c\":1}}");
    json_t *got = merge_patch(NULL, patch);
    CHECK_JSON_IS(got, "{\"a\":{\"c\":1}}");
    json_decref(got);
    json_decref(patch);

    /* Deep merge keeps siblings, and patching with {} changes nothing. */
    json_t *t = J("{\"a\":{\"x\":1,\"y\":{\"z\":2}},\"b\":3}");
    patch = J("{\"a\":{\"y\":{\"w\":4}}}");
    got = merge_patch(t, patch);
    CHECK_JSON_IS(got, "{\"a\":{\"x\":1,\"y\":{\"z\":2,\"w\":4}},\"b\":3}");
    json_decref(patch);
    patch = J("{}");
    got = merge_patch(got, patch);
    CHECK_JSON_IS(got, "{\"a\":{\"x\":1,\"y\":{\"z\":2,\"w\":4}},\"b\":3}");
    json_decref(got);
    json_decref(patch);

    /* A target that is shared elsewhere: the caller's other reference sees
     * the object patched in place (documented ownership transfer), and
     * nothing leaks or is freed twice. */
    t = J("{\"a\":1}");
    json_incref(t);
    patch = J("{\"b\":2}");
    got = merge_patch(t, patch);
    CHECK(json_equal(got, t));
    json_decref(got);
    json_decref(t);
    json_decref(patch);
}
