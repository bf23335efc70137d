/*
 * rules.h: access rules, small boolean expressions over the caller (auth),
 * the stored document (doc) and the incoming one (new):
 *
 *     auth.role == "admin" || doc.partner_id == auth.id
 *     auth.id != null && new.owner == auth.id
 *     auth.role in ["staff", "manager"] && !doc.archived
 *
 * Grammar (whitespace between tokens is free):
 *     expr    := and ("||" and)*
 *     and     := unary ("&&" unary)*
 *     unary   := "!" unary | cmp
 *     cmp     := operand (("=="|"!="|"<"|"<="|">"|">="|"in") operand)?
 *     operand := path | string | number | true | false | null
 *              | "[" (literal ("," literal)*)? "]" | "(" expr ")"
 *     path    := ("auth" | "doc" | "new") ("." name)*
 *
 * Values are JSON values; a path that does not exist is null. Comparisons
 * are type-strict as in lists: == holds between equal values of one type
 * (1 == 1.0); <, <=, >, >= hold only between two numbers or two strings;
 * `x in [..]` holds when x equals an element. An operand standing alone is
 * true when it is true, a non-zero number, a non-empty string, array or
 * object. A rule is parsed once, when the server starts; a rule that does
 * not parse stops the start with the message and the column.
 *
 * Partial evaluation: once the caller is known (auth), a read rule often
 * reduces to true, false, or conditions on the document alone
 * ("doc.partner_id == 'u42'"); rule_residual_conds turns the equalities of
 * such a residual into list conditions, so that a list is filtered in SQL
 * and a realtime subscription can be indexed by the value.
 */
#ifndef LIVEDB_RULES_H
#define LIVEDB_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "err.h"
#include "query.h"

#define RULE_MAX_LEN 2048
#define RULE_MAX_DEPTH 32

typedef struct rule rule_t;

/* Parses text; NULL with err (bad_request, message with the column). */
rule_t *rule_parse(const char *text, size_t len, err_t *err);
void rule_free(rule_t *r);
/* The text it was parsed from. */
const char *rule_text(const rule_t *r);

/* What the rule reads: bit 1 auth, 2 doc, 4 new. */
int rule_uses(const rule_t *r);

/* Evaluates; auth, doc and new may be NULL (then every path in them is
 * null). */
bool rule_eval(const rule_t *r, const json_t *auth, const json_t *doc, const json_t *newdoc);

/* The rule with auth (and new) known: NULL when it is constant, with
 * *constant set; else a residual over doc (caller frees with rule_free). */
rule_t *rule_partial(const rule_t *r, const json_t *auth, bool *constant);

/* When the residual is a conjunction that implies equalities
 * doc.FIELD == CONST (CONST not null), adds those to q as eq conditions
 * and returns how many; *exact is true when the residual is exactly those
 * equalities (nothing else to check). */
int rule_residual_conds(const rule_t *residual, query_t *q, bool *exact);

#endif
