/*
 * test_rules.c: core/rules.c (parse, evaluate, partial evaluation and the
 * conditions it yields) and the schema checks of core/apps.c.
 */
#include <stdio.h>
#include <string.h>

#include "../../src/core/apps.h"
#include "../../src/core/rules.h"
#include "../../src/util/util.h"
#include "harness.h"

static json_t *J(const char *s) { return json_loads(s, JSON_DECODE_ANY, NULL); }

static int eval(const char *rule, const char *auth, const char *doc, const char *nw)
{
    err_t e = {0};
    rule_t *r = rule_parse(rule, strlen(rule), &e);
    if (!r) {
        FAILF("did not parse: %s: %s", rule, e.msg);
        err_clear(&e);
        return -1;
    }
    json_t *a = auth ? J(auth) : NULL, *d = doc ? J(doc) : NULL, *n = nw ? J(nw) : NULL;
    int v = rule_eval(r, a, d, n);
    json_decref(a);
    json_decref(d);
    json_decref(n);
    rule_free(r);
    return v;
}

TEST(rules_evaluate)
{
    const char *alice = "{\"id\":\"a\",\"role\":\"partner\"}";
    CHECK_INT(eval("auth.role == \"admin\" || doc.partner_id == auth.id", alice,
                   "{\"partner_id\":\"a\"}", NULL), 1);
    CHECK_INT(eval("auth.role == \"admin\" || doc.partner_id == auth.id", alice,
                   "{\"partner_id\":\"b\"}", NULL), 0);
    CHECK_INT(eval("doc.partner_id == auth.id", alice, "{}", NULL), 0); /* missing: null */
    CHECK_INT(eval("doc.x == null", alice, "{}", NULL), 1);
    CHECK_INT(eval("auth.id != null", "null", NULL, NULL), 0);
    CHECK_INT(eval("auth.id != null", alice, NULL, NULL), 1);
    CHECK_INT(eval("auth.role in [\"staff\", \"partner\"]", alice, NULL, NULL), 1);
    CHECK_INT(eval("!(auth.role in [\"staff\"]) && true", alice, NULL, NULL), 1);
    CHECK_INT(eval("doc.n >= 2 && doc.n < 3", NULL, "{\"n\":2.0}", NULL), 1);
    CHECK_INT(eval("doc.n > \"1\"", NULL, "{\"n\":2}", NULL), 0); /* type-strict */
    CHECK_INT(eval("doc.n == 2", NULL, "{\"n\":2.0}", NULL), 1);
    CHECK_INT(eval("new.owner == auth.id", alice, NULL, "{\"owner\":\"a\"}"), 1);
    CHECK_INT(eval("doc.a.b.c == 1", NULL, "{\"a\":{\"b\":{\"c\":1}}}", NULL), 1);
    CHECK_INT(eval("doc.tags", NULL, "{\"tags\":[]}", NULL), 0); /* truthiness */
    CHECK_INT(eval("doc.tags", NULL, "{\"tags\":[1]}", NULL), 1);
    CHECK_INT(eval("false || (true && !false)", NULL, NULL, NULL), 1);
    CHECK_INT(eval("doc == null", NULL, NULL, NULL), 1);
}

TEST(rules_refuse_bad_text)
{
    const char *bad[] = {"", "auth.", "auth..x", "user.id == 1", "doc.x ==", "(true", "true)",
                         "doc.x = 1", "doc.x === 1", "[1, [2]]", "'single'", "doc.1a == 1",
                         "a.b.c.d.e.f.g.h.i == 1", "doc.x == 1 extra", "in", "!", "doc.x in",
                         "\"unterminated", "1.2.3", "doc.x == nul"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        err_t e = {0};
        rule_t *r = rule_parse(bad[i], strlen(bad[i]), &e);
        if (!CHECK(r == NULL))
            FAILF("accepted: %s", bad[i]);
        rule_free(r);
        CHECK(e.code == E_BAD_REQUEST && strstr(e.msg, "rule"));
        err_clear(&e);
    }
    /* Deep nesting is refused, not a stack overflow. */
    buf_t b = {0};
    for (int i = 0; i < 10000; i++)
        buf_putc(&b, '(');
    err_t e = {0};
    CHECK(rule_parse(b.p, b.len, &e) == NULL);
    err_clear(&e);
    b.len = 0;
    for (int i = 0; i < 1000; i++)
        buf_putc(&b, '!');
    buf_puts(&b, "true");
    CHECK(rule_parse(b.p, b.len, &e) == NULL);
    err_clear(&e);
    buf_free(&b);
}

/* How many list conditions the residual of text for auth gives, and in
 * exact whether they say all that the rule does. */
static int residual_conds(const char *text, const json_t *auth, bool *exact)
{
    err_t e = {0};
    bool constant = false;
    rule_t *r = rule_parse(text, strlen(text), &e);
    rule_t *res = rule_partial(r, auth, &constant);
    query_t q;
    query_init(&q);
    int n = rule_residual_conds(res, &q, exact);
    query_free(&q);
    rule_free(res);
    rule_free(r);
    return n;
}

TEST(rules_partial_and_conditions)
{
    err_t e = {0};
    const char *text = "auth.role == \"admin\" || doc.partner_id == auth.id";
    rule_t *r = rule_parse(text, strlen(text), &e);
    REQUIRE(r);
    json_t *admin = J("{\"id\":\"z\",\"role\":\"admin\"}"), *alice = J("{\"id\":\"a\",\"role\":\"p\"}");
    bool constant = false;
    CHECK(rule_partial(r, admin, &constant) == NULL && constant);
    rule_t *res = rule_partial(r, alice, &constant);
    REQUIRE(res);
    query_t q;
    query_init(&q);
    bool exact = false;
    CHECK_INT(rule_residual_conds(res, &q, &exact), 1);
    CHECK(exact);
    CHECK_STR(q.conds[0].field, "partner_id");
    CHECK(json_is_string(q.conds[0].value) && strcmp(json_string_value(q.conds[0].value), "a") == 0);
    query_free(&q);
    rule_free(res);
    /* A residual with more than equalities is not exact. */
    CHECK_INT(residual_conds("doc.owner == auth.id && doc.n > 3", alice, &exact), 1);
    CHECK(!exact);
    /* `null` is never a condition (a missing field is null to rules, not to lists). */
    CHECK_INT(residual_conds("doc.owner == auth.nothing", alice, &exact), 0);
    CHECK(!exact);
    json_decref(admin);
    json_decref(alice);
    rule_free(r);
}

TEST(schema_checks)
{
    err_t e = {0};
    REQUIRE(apps_load("wholesale", &e) == 0);
    const col_spec *c = apps_col("products");
    REQUIRE(c);
    json_t *d = J("{\"sku\":\"A\",\"name\":\"n\",\"price_cents\":0,\"stock\":1}");
    CHECK_INT(schema_check(c, d, &e), 0);
    json_decref(d);
    d = J("{\"sku\":\"\",\"price_cents\":1.5,\"stock\":-1,\"active\":null,\"name\":7}");
    CHECK_INT(schema_check(c, d, &e), -1);
    CHECK_INT(e.code, E_INVALID);
    CHECK_INT(json_array_size(e.details), 5);
    err_clear(&e);
    json_decref(d);
    const col_spec *o = apps_col("orders");
    d = J("{\"partner_id\":\"p\",\"items\":[1],\"total_cents\":1,\"status\":\"pending\","
          "\"notes\":null}");
    CHECK_INT(schema_check(o, d, &e), 0); /* notes may be null */
    json_decref(d);
    d = J("{\"partner_id\":\"p\",\"items\":[],\"total_cents\":1,\"status\":\"gone\"}");
    CHECK_INT(schema_check(o, d, &e), -1);
    CHECK_INT(json_array_size(e.details), 2); /* items too short, status not one of */
    err_clear(&e);
    json_decref(d);
    CHECK(apps_role_known("partner"));
    CHECK(!apps_role_known("staff")); /* studio not loaded */
    CHECK(apps_load("nope", &e) == -1);
    err_clear(&e);
    apps_free();
}
