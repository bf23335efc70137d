/*
 * fuzz_rules.c: the access-rule language (core/rules.c).
 *
 * Input: the text of a rule. Checks, besides memory safety and bounded
 * recursion: a refusal says "rule"; a parsed rule evaluates on a fixed set
 * of callers and documents; partial evaluation agrees with evaluation
 * (for each caller: the constant, or the residual on every document); and
 * when the residual's equalities say it all ("exact"), the list conditions
 * made from them select exactly the documents the rule accepts, which is
 * what lets a list be filtered in SQL.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/core/rules.h"
#include "fuzz.h"

static const char *const auth_texts[] = {
    "null",
    "{\"id\":\"a\",\"role\":\"partner\",\"email\":\"a@x\"}",
    "{\"id\":\"b\",\"role\":\"staff\",\"email\":\"b@x\"}",
    "{\"id\":\"z\",\"role\":\"admin\",\"n\":2}",
};
static const char *const doc_texts[] = {
    "{\"id\":\"1\",\"partner_id\":\"a\",\"n\":1,\"s\":\"x\",\"t\":true,\"o\":{\"p\":\"a\"}}",
    "{\"id\":\"2\",\"partner_id\":\"b\",\"n\":2.0,\"s\":\"\",\"t\":false,\"arr\":[1,\"a\"]}",
    "{\"id\":\"3\",\"n\":\"2\",\"s\":null,\"owner\":\"z\"}",
    "{\"id\":\"4\",\"partner_id\":null,\"n\":-1e300,\"o\":[]}",
    "{}",
};
#define NA (sizeof auth_texts / sizeof *auth_texts)
#define ND (sizeof doc_texts / sizeof *doc_texts)
static json_t *auths[NA], *docs[ND];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!docs[0]) {
        for (size_t i = 0; i < NA; i++)
            auths[i] = json_loads(auth_texts[i], JSON_DECODE_ANY, NULL);
        for (size_t i = 0; i < ND; i++)
            docs[i] = json_loads(doc_texts[i], 0, NULL);
    }
    err_t e = {0};
    rule_t *r = rule_parse((const char *)data, size, &e);
    if (!r) {
        REQUIRE(e.code == E_BAD_REQUEST && strstr(e.msg, "rule"));
        err_clear(&e);
        return 0;
    }
    REQUIRE(rule_uses(r) >= 0 && rule_uses(r) <= 7);
    for (size_t a = 0; a < NA; a++) {
        bool constant = false;
        rule_t *res = rule_partial(r, auths[a], &constant);
        query_t q;
        query_init(&q);
        bool exact = false;
        if (res)
            rule_residual_conds(res, &q, &exact);
        for (size_t d = 0; d < ND; d++) {
            bool full = rule_eval(r, auths[a], docs[d], NULL);
            bool part = res ? rule_eval(res, auths[a], docs[d], NULL) : constant;
            REQUIRE(full == part);
            if (res && exact)
                REQUIRE(query_match(&q, docs[d]) == full);
        }
        query_free(&q);
        rule_free(res);
    }
    rule_free(r);
    return 0;
}
