/*
 * test_query.c: core/query.c: where/order/limit/after parsing, cursors and
 * query_match semantics (docs/API.md "Lists").
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../../src/core/query.h"
#include "../../src/util/util.h"
#include "harness.h"

static int add_where(query_t *q, const char *s)
{
    err_t e = {0};
    int rc = query_add_where(q, s, strlen(s), &e);
    if (rc) {
        CHECK_INT(rc, -1);
        CHECK_INT(e.code, E_BAD_REQUEST);
        CHECK(e.msg[0] != '\0');
    }
    err_clear(&e);
    return rc;
}

static bool where_ok(const char *s)
{
    query_t q;
    query_init(&q);
    int rc = add_where(&q, s);
    if (rc == 0 && !CHECK_INT(q.nconds, 1))
        FAILF("where %s", s);
    query_free(&q);
    return rc == 0;
}

/* Whether "a:in:[0,1,...]" with n values is taken. */
static bool in_list_ok(int n)
{
    buf_t b = {0};
    buf_puts(&b, "a:in:[");
    for (int i = 0; i < n; i++)
        buf_printf(&b, "%s%d", i ? "," : "", i);
    buf_puts(&b, "]");
    bool ok = where_ok(b.p);
    buf_free(&b);
    return ok;
}

/* Whether "fff...:eq:1" with a field of n bytes is taken. */
static bool long_field_ok(size_t n)
{
    char f[200];
    memset(f, 'f', n);
    strcpy(f + n, ":eq:1");
    return where_ok(f);
}

TEST(where_parse_good)
{
    query_t q;
    query_init(&q);
    CHECK_INT(q.limit, QUERY_LIMIT_DEFAULT);
    REQUIRE(add_where(&q, "status:eq:\"pending\"") == 0);
    CHECK_STR(q.conds[0].field, "status");
    CHECK_INT(q.conds[0].op, Q_EQ);
    CHECK(json_is_string(q.conds[0].value));
    CHECK_STR(json_string_value(q.conds[0].value), "pending");

    /* The value is everything after the second colon, colons included. */
    REQUIRE(add_where(&q, "a.b_2.C:ne:\"x:y:z\"") == 0);
    CHECK_STR(q.conds[1].field, "a.b_2.C");
    CHECK_INT(q.conds[1].op, Q_NE);
    CHECK_STR(json_string_value(q.conds[1].value), "x:y:z");

    REQUIRE(add_where(&q, "n:in:[1,\"x\",null,true,2.5]") == 0);
    CHECK_INT(q.conds[2].op, Q_IN);
    CHECK_INT(json_array_size(q.conds[2].value), 5);

    REQUIRE(add_where(&q, "n:ge:-1.5e3") == 0);
    CHECK_INT(q.conds[3].op, Q_GE);
    CHECK(json_is_real(q.conds[3].value) && json_real_value(q.conds[3].value) == -1500.0);
    query_free(&q);

    const char *good[] = {
        "a:eq:1", "a:eq:null", "a:eq:true", "a:eq:false", "a:eq:\"\"", "a:ne:1.0",
        "a:lt:1", "a:le:\"s\"", "a:gt:-9223372036854775808", "a:ge:1e300",
        "a:contains:\"x\"", "a:contains:1", "a:contains:null", "a:contains:true",
        "_:eq:1", "_a9._b:eq:1", "a.b.c.d.e.f.g.h:eq:1", "a:eq: 1 ", "a:in:[null]",
        "id:eq:\"x\"", "a:eq:\"\\u00e9\"",
    };
    for (size_t i = 0; i < ARRAY_LEN(good); i++)
        if (!CHECK(where_ok(good[i])))
            FAILF("refused %s", good[i]);

    /* 100 values is the most for in. */
    CHECK(in_list_ok(100));

    /* The longest field (128) passes. */
    CHECK(long_field_ok(128));
}

TEST(where_parse_bad)
{
    const char *bad[] = {
        "", ":", "::", "a", "a:eq", "a:eq1", "a:eq:", ":eq:1", "a::1",
        "a:foo:1", "a:EQ:1", "a:eq :1", "a: eq:1", "a:in :[1]", "a:equals:1", "a:contain:1",
        "a:eq:bad", "a:eq:'x'", "a:eq:1 2", "a:eq:{\"x\":1", "a:eq:\"\xff\"", "a:eq:1e400",
        "a:eq:99999999999999999999", "a:eq:NaN", "a:eq:\"a\\u0000\"",
        /* field checks */
        "1a:eq:1", "a..b:eq:1", ".a:eq:1", "a.:eq:1", "a-b:eq:1", "a b:eq:1", "a.1b:eq:1",
        "a$:eq:1", "a[0]:eq:1", "\xc3\xa9:eq:1", "a.b.c.d.e.f.g.h.i:eq:1", "a'b:eq:1",
        /* operator/value classes */
        "a:in:1", "a:in:\"x\"", "a:in:null", "a:in:[]", "a:in:{}", "a:in:[[1]]", "a:in:[{}]",
        "a:in:[1,[2]]", "a:lt:true", "a:le:false", "a:gt:null", "a:ge:[1]", "a:lt:{}",
        "a:eq:[1]", "a:eq:{}", "a:ne:[]", "a:contains:[1]", "a:contains:{\"a\":1}",
        "a:eq:{\"a\":1,\"a\":1}",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        if (!CHECK(!where_ok(bad[i])))
            FAILF("accepted %s", bad[i]);

    CHECK(!in_list_ok(101));
    CHECK(!long_field_ok(129));

    /* Deep values are refused by the depth check, not the stack. */
    buf_t b = {0};
    buf_puts(&b, "a:in:");
    for (int i = 0; i < 100000; i++)
        buf_putc(&b, '[');
    CHECK(!where_ok(b.p));
    buf_free(&b);

    /* Only n bytes count: a where cut before its value is refused. */
    query_t q;
    query_init(&q);
    err_t e = {0};
    CHECK_INT(query_add_where(&q, "a:eq:1", 5, &e), -1);
    err_clear(&e);
    CHECK_INT(query_add_where(&q, "a:eq:12", 6, &e), 0);
    CHECK_INT(json_integer_value(q.conds[0].value), 1);
    query_free(&q);

    /* At most 16 where clauses; a refused one leaves q as it was. */
    query_init(&q);
    for (int i = 0; i < QUERY_MAX_CONDS; i++)
        CHECK_INT(add_where(&q, "a:eq:1"), 0);
    CHECK_INT(add_where(&q, "a:eq:1"), -1);
    CHECK_INT(q.nconds, QUERY_MAX_CONDS);
    query_free(&q);
    query_init(&q);
    CHECK_INT(add_where(&q, "a:in:[]"), -1);
    CHECK_INT(q.nconds, 0);
    query_free(&q);
}

/* Calls a query_set_* with s; a refusal must be a bad request. */
static int set_with(int (*set)(query_t *, const char *, size_t, err_t *), query_t *q,
                    const char *s)
{
    err_t e = {0};
    int rc = set(q, s, strlen(s), &e);
    if (rc)
        CHECK_INT(e.code, E_BAD_REQUEST);
    err_clear(&e);
    return rc;
}

static int set_order(query_t *q, const char *s) { return set_with(query_set_order, q, s); }
static int set_limit(query_t *q, const char *s) { return set_with(query_set_limit, q, s); }

TEST(order_and_limit)
{
    query_t q;
    query_init(&q);
    CHECK_STR(q.order, "");
    CHECK(!q.desc);
    CHECK_INT(set_order(&q, "f"), 0);
    CHECK_STR(q.order, "f");
    CHECK(!q.desc);
    CHECK_INT(set_order(&q, "-a.b"), 0);
    CHECK_STR(q.order, "a.b");
    CHECK(q.desc);
    CHECK_INT(set_order(&q, "id"), 0);
    CHECK_STR(q.order, "id");
    CHECK(!q.desc);
    const char *bad[] = {"", "-", "--f", "+f", "f-", "a..b", "1a", "-1a", "a b", "a.", "f:eq"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        if (!CHECK_INT(set_order(&q, bad[i]), -1))
            FAILF("order %s accepted", bad[i]);
    CHECK_STR(q.order, "id"); /* unchanged by refusals */
    char f[200];
    memset(f, 'f', 129);
    f[129] = '\0';
    CHECK_INT(set_order(&q, f), -1);
    f[0] = '-';
    CHECK_INT(set_order(&q, f), 0); /* "-" + 128 */
    CHECK_INT(strlen(q.order), 128);
    CHECK(q.desc);

    CHECK_INT(set_limit(&q, "1"), 0);
    CHECK_INT(q.limit, 1);
    CHECK_INT(set_limit(&q, "1000"), 0);
    CHECK_INT(q.limit, 1000);
    CHECK_INT(set_limit(&q, "0042"), 0);
    CHECK_INT(q.limit, 42);
    const char *badl[] = {"", "0", "1001", "-1", "abc", "1.5", " 1", "1 ", "+1", "1e3",
                          "99999999999999999999", "-9223372036854775808", "4294967297"};
    for (size_t i = 0; i < ARRAY_LEN(badl); i++)
        if (!CHECK_INT(set_limit(&q, badl[i]), -1))
            FAILF("limit %s accepted", badl[i]);
    CHECK_INT(q.limit, 42);
    query_free(&q);
}

static int set_after(query_t *q, const char *s) { return set_with(query_set_after, q, s); }

static char *b64(const char *text)
{
    size_t n = strlen(text);
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = malloc(cap);
    sodium_bin2base64(out, cap, (const unsigned char *)text, n,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

TEST(cursor_round_trip)
{
    const char *orders[] = {"", "f", "-f", "a.b", "-a.b", "id", "-id"};
    const char *keys[] = {"5", "-9223372036854775808", "0.1", "1e300", "-0.0", "\"x\"",
                          "\"\\u00e9\\\"/+=\"", "null", "\"\"", "true", "false"};
    const char *ids[] = {"x", "Az09_.-", "a-very-long-id-0123456789"};
    for (size_t oi = 0; oi < ARRAY_LEN(orders); oi++) {
        for (size_t ki = 0; ki < ARRAY_LEN(keys); ki++) {
            const char *id = ids[ki % ARRAY_LEN(ids)];
            query_t q;
            query_init(&q);
            if (orders[oi][0])
                CHECK_INT(set_order(&q, orders[oi]), 0);
            json_t *key = json_loads(keys[ki], JSON_DECODE_ANY, NULL);
            REQUIRE(key != NULL);
            char *cur = query_cursor_encode(&q, key, id);
            REQUIRE(cur != NULL);
            /* URL-safe without padding: goes into a query string as is. */
            for (const char *p = cur; *p; p++)
                CHECK((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_');

            query_t q2;
            query_init(&q2);
            if (orders[oi][0])
                CHECK_INT(set_order(&q2, orders[oi]), 0);
            if (CHECK_INT(set_after(&q2, cur), 0)) {
                CHECK(q2.has_after);
                CHECK_STR(q2.after_id, id);
                if (!CHECK(json_equal(q2.after_key, key)))
                    FAILF("order %s key %s", orders[oi], keys[ki]);
                CHECK_INT(json_typeof(q2.after_key), json_typeof(key));
                if (json_is_real(key))
                    CHECK(json_real_value(q2.after_key) == json_real_value(key));
            }
            query_free(&q2);

            /* Any other order refuses the cursor. */
            for (size_t o2 = 0; o2 < ARRAY_LEN(orders); o2++) {
                if (o2 == oi)
                    continue;
                query_init(&q2);
                if (orders[o2][0])
                    CHECK_INT(set_order(&q2, orders[o2]), 0);
                if (!CHECK_INT(set_after(&q2, cur), -1))
                    FAILF("cursor for order '%s' accepted under '%s'", orders[oi], orders[o2]);
                CHECK(!q2.has_after);
                query_free(&q2);
            }
            free(cur);
            json_decref(key);
            query_free(&q);
        }
    }
    /* A NULL key encodes as null. */
    query_t q;
    query_init(&q);
    char *cur = query_cursor_encode(&q, NULL, "x");
    CHECK_INT(set_after(&q, cur), 0);
    CHECK(json_is_null(q.after_key));
    free(cur);
    query_free(&q);
}

TEST(cursor_garbage)
{
    const char *texts[] = {
        "[\"\",1]", "[\"\",1,\"x\",2]", "[\"\",1,2]", "[1,1,\"x\"]", "[\"\",{},\"x\"]",
        "[\"\",[1],\"x\"]", "{\"a\":1}", "\"x\"", "1", "[\"\",1,\"x\"", "[null,1,\"x\"]",
        "[\"\",1,null]", "",
    };
    for (size_t i = 0; i < ARRAY_LEN(texts); i++) {
        query_t q;
        query_init(&q);
        char *c = b64(texts[i]);
        if (!CHECK_INT(set_after(&q, c), -1))
            FAILF("cursor %s accepted", texts[i]);
        CHECK(!q.has_after);
        free(c);
        query_free(&q);
    }
    /* Sanity: the well-formed shape passes. */
    query_t q;
    query_init(&q);
    char *c = b64("[\"\",1,\"x\"]");
    CHECK_INT(set_after(&q, c), 0);
    free(c);
    query_free(&q);

    const char *raw[] = {"", "!!!!", "a", "W10", "WyIiLDEsIngiXQ==", "WyIiLDEsIngiXQ+",
                         "WyIiLDEsIngiXQ/", "WyIiLDEsIng iXQ", "%57yIiLDEsIngiXQ"};
    for (size_t i = 0; i < ARRAY_LEN(raw); i++) {
        query_init(&q);
        if (!CHECK_INT(set_after(&q, raw[i]), -1))
            FAILF("cursor %s accepted", raw[i]);
        query_free(&q);
    }
    /* Over 4096 characters. */
    char *big = malloc(5000);
    memset(big, 'A', 4999);
    big[4999] = '\0';
    query_init(&q);
    CHECK_INT(set_after(&q, big), -1);
    query_free(&q);
    free(big);
}

/* ------------------------------------------------------------------ match */

static json_t *doc_;

static bool m(const char *where)
{
    query_t q;
    query_init(&q);
    bool r = false;
    if (CHECK_INT(add_where(&q, where), 0))
        r = query_match(&q, doc_);
    else
        FAILF("where %s refused", where);
    query_free(&q);
    return r;
}

#define MATCH(w) do { if (!CHECK(m(w))) FAILF("expected a match: %s", w); } while (0)
#define NOMATCH(w) do { if (!CHECK(!m(w))) FAILF("expected no match: %s", w); } while (0)

TEST(match_semantics)
{
    doc_ = json_loads("{\"id\":\"d1\",\"version\":3,\"i\":1,\"r\":1.0,\"h\":2.5,\"s\":\"hello\","
                      "\"e\":\"\",\"one\":\"1\",\"t\":true,\"f\":false,\"z\":null,"
                      "\"arr\":[1,\"x\",null,true,2.5,[9],{\"k\":1}],\"earr\":[],"
                      "\"o\":{\"a\":{\"b\":7},\"s\":\"in\"},\"u\":\"\xc3\xa9t\xc3\xa9\","
                      "\"big\":9223372036854775807}", 0, NULL);
    REQUIRE(doc_ != NULL);

    /* Numbers: 1 == 1.0 both ways, type-strict against strings/booleans. */
    MATCH("i:eq:1");
    MATCH("i:eq:1.0");
    MATCH("r:eq:1");
    MATCH("r:eq:1.0");
    MATCH("i:in:[\"1\",1]");
    NOMATCH("i:eq:\"1\"");
    NOMATCH("one:eq:1");
    MATCH("one:eq:\"1\"");
    NOMATCH("t:eq:1");
    NOMATCH("i:eq:true");
    NOMATCH("f:eq:0");
    NOMATCH("z:eq:0");
    NOMATCH("z:eq:false");
    NOMATCH("e:eq:null");
    MATCH("i:ne:2");
    MATCH("i:ne:\"1\"");   /* present and not equal (type-strict) */
    NOMATCH("i:ne:1.0");
    MATCH("h:gt:2");
    MATCH("h:lt:3");
    MATCH("h:ge:2.5");
    MATCH("h:le:2.5");
    NOMATCH("h:lt:2.5");
    MATCH("i:le:1.0");
    MATCH("i:ge:1");
    NOMATCH("i:gt:1.0");
    MATCH("big:eq:9223372036854775807");
    MATCH("big:gt:9223372036854775806");
    NOMATCH("s:lt:5");
    NOMATCH("s:gt:5");
    NOMATCH("i:lt:\"5\"");
    NOMATCH("i:gt:\"0\"");
    NOMATCH("t:gt:0");
    NOMATCH("z:lt:1");
    NOMATCH("o:gt:0");
    NOMATCH("arr:gt:0");
    /* Strings: byte order. */
    MATCH("s:eq:\"hello\"");
    NOMATCH("s:eq:\"Hello\"");
    MATCH("s:gt:\"Hello\"");    /* 'h' > 'H' */
    MATCH("s:gt:\"hell\"");     /* a prefix sorts first */
    MATCH("s:lt:\"hello!\"");
    MATCH("s:lt:\"i\"");
    MATCH("u:gt:\"z\"");        /* UTF-8 bytes sort above ASCII */
    MATCH("e:eq:\"\"");
    MATCH("e:lt:\"a\"");
    MATCH("e:ge:\"\"");
    /* Booleans and null only with eq/ne (and in). */
    MATCH("t:eq:true");
    NOMATCH("t:eq:false");
    MATCH("t:ne:false");
    NOMATCH("t:ne:true");
    MATCH("f:eq:false");
    MATCH("f:ne:true");
    MATCH("f:ne:null");
    MATCH("z:eq:null");
    NOMATCH("z:ne:null");
    MATCH("z:ne:false");
    MATCH("z:ne:0");
    MATCH("s:ne:null");
    MATCH("z:in:[1,null]");
    MATCH("t:in:[false,true]");
    NOMATCH("t:in:[1,\"true\"]");
    /* A missing field matches nothing, not even ne. */
    NOMATCH("missing:eq:null");
    NOMATCH("missing:ne:null");
    NOMATCH("missing:ne:1");
    NOMATCH("missing:ne:\"x\"");
    NOMATCH("missing:lt:1");
    NOMATCH("missing:in:[null]");
    NOMATCH("missing:contains:\"\"");
    NOMATCH("s.x:ne:1");          /* through a string */
    NOMATCH("arr.x:ne:1");        /* through an array */
    NOMATCH("o.a.c:ne:1");
    NOMATCH("z.a:eq:null");       /* through null */
    /* Dotted paths. */
    MATCH("o.a.b:eq:7");
    MATCH("o.a.b:ge:7.0");
    MATCH("o.s:eq:\"in\"");
    MATCH("o.a:ne:1");            /* an object is present and not 1 */
    NOMATCH("o:eq:null");
    MATCH("o:ne:null");
    /* contains on arrays: an element equal to the value, type-strict. */
    MATCH("arr:contains:1");
    MATCH("arr:contains:1.0");
    MATCH("arr:contains:\"x\"");
    MATCH("arr:contains:null");
    MATCH("arr:contains:true");
    MATCH("arr:contains:2.5");
    NOMATCH("arr:contains:false");
    NOMATCH("arr:contains:\"1\"");
    NOMATCH("arr:contains:9");    /* only inside a nested array */
    NOMATCH("arr:contains:\"\"");  /* no substring search in elements */
    NOMATCH("earr:contains:null");
    /* contains on strings: substring, byte-wise; "" is in every string. */
    MATCH("s:contains:\"ell\"");
    MATCH("s:contains:\"hello\"");
    MATCH("s:contains:\"\"");
    MATCH("e:contains:\"\"");
    MATCH("u:contains:\"t\xc3\xa9\"");
    NOMATCH("s:contains:\"hello!\"");
    NOMATCH("s:contains:\"L\"");
    NOMATCH("s:contains:1");
    NOMATCH("one:contains:1");
    NOMATCH("i:contains:1");       /* a number is neither array nor string */
    NOMATCH("o:contains:\"a\"");
    NOMATCH("t:contains:true");
    NOMATCH("z:contains:null");
    /* eq/ne on containers never equal a scalar. */
    NOMATCH("arr:eq:1");
    MATCH("arr:ne:1");
    NOMATCH("earr:eq:null");
    /* Server fields are fields like the others. */
    MATCH("id:eq:\"d1\"");
    MATCH("version:eq:3");
    MATCH("id:contains:\"1\"");

    /* Conjunction. */
    query_t q;
    query_init(&q);
    CHECK_INT(add_where(&q, "i:eq:1"), 0);
    CHECK_INT(add_where(&q, "s:contains:\"h\""), 0);
    CHECK(query_match(&q, doc_));
    CHECK_INT(add_where(&q, "t:eq:false"), 0);
    CHECK(!query_match(&q, doc_));
    CHECK(qcond_match(&q.conds[0], doc_));
    CHECK(!qcond_match(&q.conds[2], doc_));
    query_free(&q);
    /* No conditions: everything matches. */
    query_init(&q);
    CHECK(query_match(&q, doc_));
    query_free(&q);

    /* query_field. */
    CHECK(query_field(doc_, "o.a.b") == json_object_get(json_object_get(json_object_get(doc_, "o"), "a"), "b"));
    CHECK(query_field(doc_, "o.a.b.c") == NULL);
    CHECK(query_field(doc_, "nope") == NULL);
    CHECK(json_is_null(query_field(doc_, "z")));
    json_t *arr = json_array();
    CHECK(query_field(arr, "a") == NULL);
    json_decref(arr);

    CHECK_STR(qop_name(Q_EQ), "eq");
    CHECK_STR(qop_name(Q_CONTAINS), "contains");
    json_decref(doc_);
    doc_ = NULL;
}

TEST(match_numbers_edges)
{
    doc_ = json_loads("{\"nz\":-0.0,\"z\":0,\"tiny\":5e-324,\"huge\":1e308,"
                      "\"neg\":-9223372036854775808}", 0, NULL);
    REQUIRE(doc_ != NULL);
    MATCH("nz:eq:0");
    MATCH("z:eq:-0.0");
    MATCH("nz:eq:0.0");
    NOMATCH("nz:lt:0");
    MATCH("tiny:gt:0");
    MATCH("huge:gt:9223372036854775807");
    MATCH("neg:lt:-9223372036854775807");
    MATCH("neg:eq:-9223372036854775808");
    MATCH("neg:le:-9.2233720368547758e18");
    json_decref(doc_);
    doc_ = NULL;
}
