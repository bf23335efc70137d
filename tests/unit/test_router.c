/*
 * test_router.c: api/router.c's query-string parsing (params_parse), the
 * piece of the router that needs no server.
 */
#include <string.h>

#include "../../src/api/api.h"
#include "harness.h"

static int parse(params_t *p, const char *query, err_t *e)
{
    http_req r;
    memset(&r, 0, sizeof r);
    r.path = "/v1/c/t";
    r.path_len = strlen(r.path);
    r.query = query;
    r.query_len = query ? strlen(query) : 0;
    return params_parse(p, &r, e);
}

TEST(params_good)
{
    params_t p;
    err_t e = {0};
    REQUIRE(parse(&p, "where=a%3Aeq%3A%22x%20y%22&limit=5&b=&c&&d=1+2&e=%2B", &e) == 0);
    CHECK_INT(p.n, 6);
    if (p.n == 6) {
        CHECK_STR(p.kv[0].key, "where");
        CHECK_MEM(p.kv[0].value, p.kv[0].value_len, "a:eq:\"x y\"", (size_t)10);
        CHECK_STR(p.kv[1].key, "limit");
        CHECK_MEM(p.kv[1].value, p.kv[1].value_len, "5", (size_t)1);
        CHECK_STR(p.kv[2].key, "b");
        CHECK_INT(p.kv[2].value_len, 0);
        CHECK(p.kv[2].value[0] == '\0');
        CHECK_STR(p.kv[3].key, "c");
        CHECK_INT(p.kv[3].value_len, 0);
        CHECK(p.kv[3].value[0] == '\0');
        CHECK_MEM(p.kv[4].value, p.kv[4].value_len, "1 2", (size_t)3);
        CHECK_MEM(p.kv[5].value, p.kv[5].value_len, "+", (size_t)1);
    }
    params_free(&p);
    CHECK_INT(p.n, 0);

    /* No query at all, and an empty one. */
    REQUIRE(parse(&p, NULL, &e) == 0);
    CHECK_INT(p.n, 0);
    REQUIRE(parse(&p, "", &e) == 0);
    CHECK_INT(p.n, 0);
    params_free(&p);
}

TEST(params_empty_key)
{
    /* "?=x": the key is the empty string (handlers strcmp it and print it
     * in "unknown query parameter %.40s"). Only byte 0 is read so that a
     * missing NUL fails here, not in ASan. */
    params_t p;
    err_t e = {0};
    REQUIRE(parse(&p, "=x", &e) == 0);
    if (CHECK_INT(p.n, 1)) {
        CHECK(p.kv[0].key != NULL && p.kv[0].key[0] == '\0');
        CHECK_MEM(p.kv[0].value, p.kv[0].value_len, "x", (size_t)1);
    }
    params_free(&p);
}

TEST(params_errors_hold_nothing)
{
    /* A refused query string leaves nothing allocated in p: the callers
     * (api/docs.c, api/changes.c) return at once without params_free. */
    const char *bad[] = {"limit=5&x=%00", "a=1&b=%zz", "a=1&%", "a=%0"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        params_t p;
        err_t e = {0};
        CHECK_INT(parse(&p, bad[i], &e), -1);
        CHECK_INT(e.code, E_BAD_REQUEST);
        if (!CHECK_INT(p.n, 0))
            FAILF("params_parse(\"%s\") failed holding %d pairs nobody frees", bad[i], p.n);
        params_free(&p); /* only to keep LeakSanitizer quiet in this test */
        err_clear(&e);
    }
    /* Over PARAMS_MAX pairs. */
    buf_t q = {0};
    for (int i = 0; i <= PARAMS_MAX; i++)
        buf_printf(&q, "%sk%d=v", i ? "&" : "", i);
    params_t p;
    err_t e = {0};
    CHECK_INT(parse(&p, q.p, &e), -1);
    if (!CHECK_INT(p.n, 0))
        FAILF("%d pairs held after refusing %d", p.n, PARAMS_MAX + 1);
    params_free(&p);
    err_clear(&e);
    buf_free(&q);
    /* Exactly PARAMS_MAX is fine. */
    for (int i = 0; i < PARAMS_MAX; i++)
        buf_printf(&q, "%sk%d=v", i ? "&" : "", i);
    CHECK_INT(parse(&p, q.p, &e), 0);
    CHECK_INT(p.n, PARAMS_MAX);
    params_free(&p);
    buf_free(&q);
}
