/*
 * query.h: list queries: where-clauses, order, limit and cursors.
 *
 * One parsed form serves two evaluators that must agree: query_match()
 * here, in C, for documents in memory (the realtime path), and the SQL that
 * the storage backend builds from the same struct (store/sqlite_query.c).
 * The semantics are written down in docs/API.md "Lists": comparisons are
 * type-strict and a missing field matches nothing.
 */
#ifndef LIVEDB_QUERY_H
#define LIVEDB_QUERY_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "err.h"

#define QUERY_MAX_CONDS 16
#define QUERY_MAX_IN 100
#define QUERY_FIELD_MAX 128
#define QUERY_FIELD_DEPTH 8
#define QUERY_LIMIT_DEFAULT 100
#define QUERY_LIMIT_MAX 1000

typedef enum qop { Q_EQ, Q_NE, Q_LT, Q_LE, Q_GT, Q_GE, Q_IN, Q_CONTAINS } qop;

typedef struct qcond {
    char field[QUERY_FIELD_MAX + 1]; /* "a.b": validated dotted names */
    qop op;
    json_t *value; /* owned: a scalar, or an array of scalars for Q_IN */
} qcond;

typedef struct query {
    qcond conds[QUERY_MAX_CONDS];
    int nconds;
    char order[QUERY_FIELD_MAX + 1]; /* "" = by id */
    bool desc;
    int limit;
    /* Keyset cursor: the last row of the previous page. */
    bool has_after;
    json_t *after_key; /* the order field's value as stored (may be null) */
    char *after_id;
} query_t;

void query_init(query_t *q);
void query_free(query_t *q);

/* Field path check: dotted names, each [A-Za-z_][A-Za-z0-9_]*. */
int query_check_field(const char *f, size_t n, err_t *err);

/* One condition from its parts (the realtime protocol's [field, op, value]);
 * v is borrowed (a reference is taken). */
int query_add_cond(query_t *q, const char *field, size_t flen, const char *opname, size_t oplen,
                   json_t *v, err_t *err);
/* "FIELD:OP:JSON", already percent-decoded. */
int query_add_where(query_t *q, const char *s, size_t n, err_t *err);
/* "FIELD" or "-FIELD". */
int query_set_order(query_t *q, const char *s, size_t n, err_t *err);
int query_set_limit(query_t *q, const char *s, size_t n, err_t *err);
/* The `after` cursor; call after query_set_order (the cursor names it). */
int query_set_after(query_t *q, const char *s, size_t n, err_t *err);

/* Encodes a cursor for the row (key, id) under q's order. Caller frees. */
char *query_cursor_encode(const query_t *q, const json_t *key, const char *id);

/* Looks up a dotted field in a document (borrowed; NULL when missing). */
json_t *query_field(const json_t *doc, const char *field);

/* Whether doc satisfies every condition of q. */
bool query_match(const query_t *q, const json_t *doc);
bool qcond_match(const qcond *c, const json_t *doc);

const char *qop_name(qop op);

/* The order of a list, for a store that sorts in C: the key of doc under
 * q's order as every store orders by it (missing and null first, then
 * numbers with booleans as 0 and 1, integers and reals compared exactly,
 * then strings by bytes, arrays and objects among them as their JSON
 * text); a new reference. query_order_cmp compares two rows (key, id)
 * in q's direction, ties by id; query_after_cursor says whether a row
 * comes after q's cursor (true without one). */
json_t *query_order_key(const query_t *q, const json_t *doc);
int query_order_cmp(const query_t *q, const json_t *ka, const char *ida, const json_t *kb,
                    const char *idb);
bool query_after_cursor(const query_t *q, const json_t *key, const char *id);

/* The comparisons of the matcher, for other evaluators (rules): a
 * three-way compare of two numbers or two strings (*ok false for other
 * pairs), and type-strict equality of scalars (1 == 1.0; null only
 * equals null). */
int query_compare(const json_t *a, const json_t *b, bool *ok);
bool query_scalar_eq(const json_t *a, const json_t *b);

#endif
