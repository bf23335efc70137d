/*
 * test_rtproto.c: core/rtproto.c, the realtime protocol's messages.
 */
#include <string.h>

#include "../../src/core/rtproto.h"
#include "../../src/util/util.h"
#include "harness.h"

static int parse(const char *s, rt_msg *m)
{
    err_t e = {0};
    int rc = rt_parse(s, strlen(s), m, &e);
    err_clear(&e);
    return rc;
}

TEST(rtproto_good)
{
    rt_msg m;
    REQUIRE(parse("{\"t\":\"sub\",\"id\":\"s1\",\"col\":\"orders\",\"where\":[[\"status\",\"eq\","
                  "\"pending\"],[\"n\",\"in\",[1,2]]],\"since\":7}", &m) == 0);
    CHECK_INT(m.type, RT_SUB);
    CHECK_STR(m.id, "s1");
    CHECK_STR(m.col, "orders");
    CHECK(m.where && m.where->nconds == 2);
    CHECK(m.has_since && m.since == 7);
    rt_msg_free(&m);
    REQUIRE(parse("{\"t\":\"sub\",\"id\":\"d\",\"col\":\"_presence\",\"doc\":\"x-1\"}", &m) == 0);
    CHECK_STR(m.doc, "x-1");
    CHECK(!m.has_since && !m.where);
    rt_msg_free(&m);
    REQUIRE(parse("{\"t\":\"call\",\"id\":\"r\",\"fn\":\"place_order\"}", &m) == 0);
    CHECK(json_is_object(m.args));
    rt_msg_free(&m);
    REQUIRE(parse("{\"t\":\"presence\",\"state\":{\"page\":\"/\"}}", &m) == 0);
    CHECK(json_is_object(m.state));
    rt_msg_free(&m);
    REQUIRE(parse("{\"t\":\"ping\"}", &m) == 0);
    CHECK_INT(m.type, RT_PING);
    rt_msg_free(&m);
}

TEST(rtproto_bad_names_the_id)
{
    const char *bad[] = {
        "", "[]", "{}", "{\"t\":1}", "{\"t\":\"x\"}", "{\"t\":\"sub\",\"id\":\"s\"}",
        "{\"t\":\"sub\",\"id\":\"s\",\"col\":\"_nope\"}", "{\"t\":\"sub\",\"id\":\"s\",\"col\":\"A\"}",
        "{\"t\":\"sub\",\"id\":\"s\",\"col\":\"c\",\"since\":-1}",
        "{\"t\":\"sub\",\"id\":\"s\",\"col\":\"c\",\"since\":1.5}",
        "{\"t\":\"sub\",\"id\":\"s\",\"col\":\"c\",\"where\":[[\"a\",\"eq\",[1]]]}",
        "{\"t\":\"sub\",\"id\":\"s\",\"col\":\"c\",\"where\":{}}",
        "{\"t\":\"sub\",\"id\":\"s\",\"col\":\"c\",\"doc\":\"a b\"}",
        "{\"t\":\"sub\",\"id\":\"a\\u0001\",\"col\":\"c\"}",
        "{\"t\":\"call\",\"id\":\"s\",\"fn\":\"f\",\"args\":5}",
        "{\"t\":\"ping\",\"t\":\"ping\"}",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        rt_msg m;
        err_t e = {0};
        if (!CHECK_INT(rt_parse(bad[i], strlen(bad[i]), &m, &e), -1))
            FAILF("accepted: %s", bad[i]);
        CHECK_INT(e.code, E_BAD_REQUEST);
        CHECK(m.where == NULL && m.doc == NULL && m.args == NULL && m.state == NULL);
        if (strstr(bad[i], "\"id\":\"s\""))
            CHECK_STR(m.id, "s");
        err_clear(&e);
    }
}
