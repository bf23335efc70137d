/*
 * pg_int.h: what the PostgreSQL backend's files share (private to
 * src/store/).
 *
 *   pg.c        the schema and its migrations, core's txn_methods on one
 *               connection (pipelined), the feed between nodes (pgfeed)
 *   pg_node.c   the store's backend (store_int.h): a node's writer
 *               connection, its readers, the feed on the loop, pruning
 *   pg_reads.c  read jobs and the accounts loaded at start
 */
#ifndef LIVEDB_PG_INT_H
#define LIVEDB_PG_INT_H

#include "pg.h"

#include <stdio.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "../util/map.h"

struct pgstore {
    PGconn *conn;
    char schema[64];
    bool head_locked; /* this transaction holds the head's row */
    /* Inside a transaction the connection is in pipeline mode: a statement
     * whose answer nothing waits for (the inserts of changes and entries,
     * a savepoint) is sent and not waited for; the next statement that
     * needs an answer (a read, a create) carries them to the server in the
     * same round trip, and their results are read with its own. */
    bool piped;
    int pending;      /* sent, results not read */
    bool tx_failed;   /* one of them failed: the transaction cannot commit */
    err_t first_err;  /* what failed first */
    /* "col\tid" of the ids this group's requests create that were free
     * when it took the head (prefetch): their inserts need no answer. */
    map_t free_ids;
    /* The group's change rows and activity entries, as JSON arrays of
     * their columns: nothing reads them back inside the group, so they go
     * to the server as two statements at commit, not two a write. A job's
     * savepoint marks where its own begin (rollback_to cuts them off). */
    json_t *changes, *entries;
    size_t changes_mark, entries_mark;
    /* New documents whose ids were free (prefetch): their rows wait here
     * and go as one multi-row INSERT just before the next statement of the
     * transaction, whatever it is, so the server sees every write in the
     * order core made it and a group of creates costs one statement. */
    json_t *inserts;
};

/* Connects and sets the search path to schema; with make_schema, makes
 * or migrates it first (pg_open). NULL with err set. */
pgstore *pg_connect(const char *conninfo, const char *schema, bool make_schema, err_t *err);

/* Statements (pg.c): pq waits for a result (tuples or command; NULL with
 * err set), pq_do only for success, pq_fail turns a failure into err
 * (E_UNAVAILABLE when the server is gone). pq_reconnect makes a dropped
 * connection again. */
PGresult *pq(pgstore *p, const char *sql, int n, const char *const *v, err_t *err);
int pq_do(pgstore *p, const char *sql, int n, const char *const *v, err_t *err);
int pq_fail(pgstore *p, PGresult *r, const char *what, err_t *err);
int pq_reconnect(pgstore *p, err_t *err);
/* Row i of "SELECT seq, col, id, op, version, doc, at, prev FROM changes"
 * as a change (the caller's). */
change_t *pq_change(const PGresult *r, int i);

/* pg_node.c, pg_reads.c: a reader connection of the node's pool (made
 * or made again when needed; NULL with err set when PostgreSQL cannot be
 * reached), given back after the read; the backend's reads. */
typedef struct store store_t;
typedef struct rjob rjob;
struct store_auth_cb;
pgstore *pgnode_reader_take(store_t *st, err_t *err);
void pgnode_reader_give(store_t *st, pgstore *p);
void pg_read(store_t *st, rjob *job);
int pg_load_auth(store_t *st, const struct store_auth_cb *cb, err_t *err);
/* pg_offline.c: the backend's work with a connection of its own. */
struct store_opts;
int pg_verify(const struct store_opts *where, int64_t *entries, err_t *err);
int pg_activity_each(const struct store_opts *where, int64_t since_ms,
                     void (*row)(void *ctx, const char *entry, size_t len, const char *hash),
                     void *ctx, err_t *err);
int pg_export(const struct store_opts *where, const char *const *cols, FILE *out, err_t *err);

/* field as a jsonb path literal ("a.b" -> {a,b}) in out, for a field name
 * that was checked ([A-Za-z0-9_.]); false for any other. The indexes on
 * fields (pg.c) and the reads that use them (pg_reads.c) spell it alike. */
bool pg_field_path(const char *field, char *out, size_t n);

/* A 64-bit integer as a text parameter, in buf. */
#define I64(buf, x) (snprintf((buf), sizeof(buf), "%lld", (long long)(x)), (buf))

#endif
