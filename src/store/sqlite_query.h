/*
 * sqlite_query.h: a parsed list query (core/query.h) as SQLite SQL.
 *
 * The SQL must agree with query_match() in every case; tests/unit checks
 * the two against each other on generated documents. Field paths and
 * collection names are inlined (both are validated to plain identifiers)
 * because an expression index is only used when the query spells the same
 * expression; values are always bound.
 */
#ifndef LIVEDB_SQLITE_QUERY_H
#define LIVEDB_SQLITE_QUERY_H

#include <sqlite3.h>

#include "../core/query.h"
#include "../util/util.h"

#define SQLQ_MAX_BINDS (QUERY_MAX_CONDS * QUERY_MAX_IN + 8)

typedef struct sqlq {
    buf_t sql;
    /* Values to bind, in order: a JSON scalar, or (when v is NULL) the text
     * s. Both borrowed from the query. */
    struct {
        const json_t *v;
        const char *s;
    } binds[SQLQ_MAX_BINDS];
    int nbinds;
} sqlq;

/* Builds: SELECT body, KEY, id FROM "c_COL" WHERE ... ORDER BY ... LIMIT n
 * (n = q->limit + 1, so the caller knows whether there is a next page; no
 * LIMIT when q->limit is 0, for whole snapshots). */
void sqlq_build_list(sqlq *out, const query_t *q, const char *col);
/* The expression for a field: json_extract(body,'$.a.b'), or id. */
void sqlq_field_expr(buf_t *b, const char *field);
int sqlq_bind(sqlite3_stmt *stmt, const sqlq *q);
void sqlq_free(sqlq *q);
/* Column col of a row as JSON (a page's order key: integer, real, text
 * or null). */
json_t *sqlq_value_json(sqlite3_stmt *s, int col);

#endif
