/*
 * pg.c: the PostgreSQL store (see pg.h): core/txn.h's txn_methods on one
 * libpq connection, and the schema livedb keeps in the database.
 *
 * Statements go with PQexecParams, values as text parameters, so no value
 * is ever spliced into SQL; only names that were checked (the schema, a
 * collection, a field) are. A statement that fails inside a transaction
 * aborts it in PostgreSQL, so nothing here relies on a failing statement:
 * an insert that may meet an existing id says ON CONFLICT DO NOTHING, and
 * a unique field is looked up before the write (the head's lock makes the
 * writers of every node take turns, so the look-up cannot race).
 */
#include "pg_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <sodium.h>

#include "../core/apps.h"
#include "../util/map.h"
#include "../util/util.h"
#include "vfs.h"

/* ------------------------------------------------------------------ statements */

/* The error of r (or of the connection), as err: E_UNAVAILABLE when the
 * server cannot be reached, E_STORAGE_FULL for a full disk, else internal. */
int pq_fail(pgstore *p, PGresult *r, const char *what, err_t *err)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(p->conn);
    err_code code = E_INTERNAL;
    if (PQstatus(p->conn) != CONNECTION_OK || (state && strncmp(state, "08", 2) == 0) ||
        (state && strncmp(state, "57P", 3) == 0))
        code = E_UNAVAILABLE;
    else if (state && strcmp(state, "53100") == 0)
        code = E_STORAGE_FULL;
    err_set(err, code, "PostgreSQL: %s: %.*s", what, (int)strcspn(msg, "\n"), msg);
    PQclear(r);
    return -1;
}

static bool result_ok(const PGresult *r)
{
    ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

static int flush_inserts(pgstore *p, err_t *err);

/* In pipeline mode: sends sql (one statement) unanswered, after the
 * inserts that wait. */
static int pq_send(pgstore *p, const char *sql, int n, const char *const *v, err_t *err)
{
    if (json_array_size(p->inserts) && flush_inserts(p, err))
        return -1;
    if (!PQsendQueryParams(p->conn, sql, n, NULL, v, NULL, NULL, 0))
        return pq_fail(p, NULL, sql, err);
    p->pending++;
    return 0;
}

/* In pipeline mode: a sync, then the results of everything sent. The last
 * statement's result is returned when keep_last (NULL if it failed); a
 * failure of any marks the transaction failed and sets err. */
static PGresult *pq_sync(pgstore *p, bool keep_last, err_t *err)
{
    PGresult *last = NULL;
    int n = p->pending;
    p->pending = 0;
    if (!PQpipelineSync(p->conn)) {
        pq_fail(p, NULL, "sync", err);
        p->tx_failed = true;
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        PGresult *r, *got = NULL;
        while ((r = PQgetResult(p->conn))) {
            PQclear(got);
            got = r;
        }
        if (!result_ok(got) && !p->tx_failed) {
            p->tx_failed = true;
            pq_fail(p, got, "a statement of the transaction", &p->first_err);
            got = NULL;
        }
        if (i == n - 1 && keep_last && result_ok(got))
            last = got;
        else
            PQclear(got);
    }
    PGresult *r;
    while ((r = PQgetResult(p->conn)) && PQresultStatus(r) != PGRES_PIPELINE_SYNC)
        PQclear(r);
    PQclear(r);
    if (p->tx_failed && !err->code)
        err_set(err, p->first_err.code, "%s", p->first_err.msg);
    return p->tx_failed ? (PQclear(last), NULL) : last;
}

/* Runs sql with n text parameters and waits for its result (tuples or
 * command): in a transaction through the pipeline, with what was sent
 * before it; outside one alone (n == 0: sql may be several statements).
 * NULL with err set when it (or, in a transaction, anything before it)
 * failed. */
PGresult *pq(pgstore *p, const char *sql, int n, const char *const *v, err_t *err)
{
    if (p->piped) {
        if (p->tx_failed || pq_send(p, sql, n, v, err))
            return pq_sync(p, false, err);
        return pq_sync(p, true, err);
    }
    PGresult *r = n ? PQexecParams(p->conn, sql, n, NULL, v, NULL, NULL, 0) : PQexec(p->conn, sql);
    if (result_ok(r))
        return r;
    pq_fail(p, r, sql, err);
    return NULL;
}

/* Runs sql for its effect: in a transaction sent unanswered (a failure
 * shows at the next sync, and the commit fails); outside one at once. 0,
 * or -1 with err set. */
int pq_do(pgstore *p, const char *sql, int n, const char *const *v, err_t *err)
{
    if (p->piped)
        return p->tx_failed ? -1 : pq_send(p, sql, n, v, err);
    PGresult *r = pq(p, sql, n, v, err);
    PQclear(r);
    return r ? 0 : -1;
}

/* How many rows sql touched, or -1 with err set. */
static long pq_count(pgstore *p, const char *sql, int n, const char *const *v, err_t *err)
{
    PGresult *r = pq(p, sql, n, v, err);
    if (!r)
        return -1;
    long k = PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) : atol(PQcmdTuples(r));
    PQclear(r);
    return k;
}


/* ------------------------------------------------------------------ schema */

bool pg_schema_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 63 || !(islower((unsigned char)name[0]) || name[0] == '_'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)name[i]) || isdigit((unsigned char)name[i]) || name[i] == '_'))
            return false;
    return true;
}

/* Each step takes the schema from the version before it to its own. */
static const char *const migrations[PG_SCHEMA_VERSION] = {
    /* 1 */
    "CREATE TABLE docs(col text COLLATE \"C\" NOT NULL, id text COLLATE \"C\" NOT NULL,"
    " version bigint NOT NULL,"
    " created_at text NOT NULL, updated_at text NOT NULL, body text NOT NULL,"
    " PRIMARY KEY(col, id));"
    "CREATE TABLE changes(seq bigint PRIMARY KEY, col text NOT NULL, id text NOT NULL,"
    " op text NOT NULL, version bigint NOT NULL, at text NOT NULL, doc text, prev text);"
    "CREATE TABLE idempotency(account text NOT NULL, key text NOT NULL, at bigint NOT NULL,"
    " status int NOT NULL, version bigint NOT NULL, body text NOT NULL,"
    " PRIMARY KEY(account, key));"
    "CREATE TABLE indexes(col text NOT NULL, field text NOT NULL, name text NOT NULL,"
    " PRIMARY KEY(col, field));"
    "CREATE TABLE credentials(account text PRIMARY KEY, hash text NOT NULL);"
    "CREATE TABLE sessions(token_hash text PRIMARY KEY, session text NOT NULL,"
    " account text NOT NULL, created_at bigint NOT NULL, expires_at bigint NOT NULL);"
    "CREATE INDEX sessions_account ON sessions(account);"
    "CREATE TABLE activity(seq bigint PRIMARY KEY, at bigint NOT NULL, account text NOT NULL,"
    " action text NOT NULL, entry text NOT NULL, hash text NOT NULL);"
    "CREATE INDEX activity_at ON activity(at);"
    "CREATE INDEX activity_account ON activity(account, seq);"
    "CREATE INDEX activity_action ON activity(action, seq);"
    "CREATE TABLE head(one boolean PRIMARY KEY DEFAULT true CHECK (one),"
    " next_seq bigint NOT NULL, next_aseq bigint NOT NULL, last_hash text NOT NULL);"
    "INSERT INTO head VALUES(true, 1, 1, '');",
};

/* Makes the schema, or brings it to PG_SCHEMA_VERSION, under an advisory
 * lock that the nodes starting at once queue on. */
static int migrate(pgstore *p, err_t *err)
{
    char sql[512];
    const char *lock_key[] = {p->schema};
    if (pq_do(p, "SELECT pg_advisory_lock(hashtext('livedb schema ' || $1))", 1, lock_key, err))
        return -1;
    int rc = -1;
    snprintf(sql, sizeof sql,
             "CREATE SCHEMA IF NOT EXISTS \"%s\"; SET search_path TO \"%s\";"
             " CREATE TABLE IF NOT EXISTS meta(key text PRIMARY KEY, value text NOT NULL)",
             p->schema, p->schema);
    if (pq_do(p, sql, 0, NULL, err))
        goto out;
    PGresult *r = pq(p, "SELECT value FROM meta WHERE key = 'schema_version'", 0, NULL, err);
    if (!r)
        goto out;
    int have = PQntuples(r) ? atoi(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    if (have > PG_SCHEMA_VERSION) {
        err_set(err, E_INTERNAL,
                "schema %s is at version %d, newer than this livedb's %d: upgrade livedb",
                p->schema, have, PG_SCHEMA_VERSION);
        goto out;
    }
    for (int v = have + 1; v <= PG_SCHEMA_VERSION; v++) {
        char ver[16];
        const char *args[] = {I64(ver, v)};
        if (pq_do(p, "BEGIN", 0, NULL, err))
            goto out;
        if (pq_do(p, migrations[v - 1], 0, NULL, err) ||
            pq_do(p, "INSERT INTO meta VALUES('schema_version', $1) ON CONFLICT (key)"
                     " DO UPDATE SET value = excluded.value", 1, args, err) ||
            pq_do(p, "COMMIT", 0, NULL, err)) {
            PQclear(PQexec(p->conn, "ROLLBACK"));
            goto out;
        }
    }
    rc = 0;
out:
    PQclear(PQexecParams(p->conn, "SELECT pg_advisory_unlock(hashtext('livedb schema ' || $1))",
                         1, NULL, lock_key, NULL, NULL, 0));
    return rc;
}

/* PostgreSQL's notices (IF NOT EXISTS skipping, CASCADE listing) are not
 * news to livedb. */
static void quiet(void *arg, const char *message) {}

pgstore *pg_connect(const char *conninfo, const char *schema, bool make_schema, err_t *err)
{
    if (!pg_schema_name_ok(schema)) {
        err_set(err, E_BAD_REQUEST, "schema %s: a schema is [a-z_][a-z0-9_]*, up to 63 bytes",
                schema);
        return NULL;
    }
    /* A string libpq cannot read is the caller's mistake, not a server
     * that is away: said at once, never retried. */
    char *why = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &why);
    if (!opts) {
        err_set(err, E_BAD_REQUEST, "PostgreSQL: not a connection string or URL: %.*s",
                why ? (int)strcspn(why, "\n") : 7, why ? why : "invalid");
        PQfreemem(why);
        return NULL;
    }
    PQconninfoFree(opts);
    pgstore *p = xcalloc(1, sizeof *p);
    snprintf(p->schema, sizeof p->schema, "%s", schema);
    map_init(&p->free_ids);
    p->changes = json_array();
    p->entries = json_array();
    p->inserts = json_array();
    p->conn = PQconnectdb(conninfo);
    if (PQstatus(p->conn) != CONNECTION_OK) {
        const char *m = PQerrorMessage(p->conn);
        err_set(err, E_UNAVAILABLE, "PostgreSQL: cannot connect: %.*s", (int)strcspn(m, "\n"), m);
        pg_close(p);
        return NULL;
    }
    PQsetNoticeProcessor(p->conn, quiet, NULL);
    char sql[128];
    snprintf(sql, sizeof sql, "SET search_path TO \"%s\"", p->schema);
    if (make_schema ? migrate(p, err) : pq_do(p, sql, 0, NULL, err)) {
        pg_close(p);
        return NULL;
    }
    return p;
}

pgstore *pg_open(const char *conninfo, const char *schema, err_t *err)
{
    return pg_connect(conninfo, schema, true, err);
}

void pg_close(pgstore *p)
{
    if (!p)
        return;
    PQfinish(p->conn);
    map_free(&p->free_ids);
    json_decref(p->changes);
    json_decref(p->entries);
    json_decref(p->inserts);
    free(p);
}

int pg_drop_schema(const char *conninfo, const char *schema, err_t *err)
{
    if (!pg_schema_name_ok(schema))
        return err_set(err, E_BAD_REQUEST, "not a schema name: %s", schema);
    pgstore p = {.conn = PQconnectdb(conninfo)};
    PQsetNoticeProcessor(p.conn, quiet, NULL);
    char sql[128];
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS \"%s\" CASCADE", schema);
    int rc = PQstatus(p.conn) == CONNECTION_OK ? pq_do(&p, sql, 0, NULL, err)
                                               : pq_fail(&p, NULL, "connect", err);
    PQfinish(p.conn);
    return rc;
}

static int read_head(pgstore *p, const char *sql, int64_t *next_seq, int64_t *next_aseq,
                     unsigned char last_hash[32], err_t *err)
{
    PGresult *r = pq(p, sql, 0, NULL, err);
    if (!r)
        return -1;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return err_set(err, E_INTERNAL, "schema %s has no head row", p->schema);
    }
    *next_seq = atoll(PQgetvalue(r, 0, 0));
    *next_aseq = atoll(PQgetvalue(r, 0, 1));
    /* '' before the first entry; else the newest entry's BLAKE2b-256. */
    const char *hex = PQgetvalue(r, 0, 2);
    size_t n = 0;
    memset(last_hash, 0, 32);
    bool ok = !hex[0] || (strlen(hex) == 64 &&
                          sodium_hex2bin(last_hash, 32, hex, 64, NULL, &n, NULL) == 0 && n == 32);
    PQclear(r);
    if (!ok)
        return err_set(err, E_INTERNAL, "schema %s: the head's hash is damaged", p->schema);
    return 0;
}

int pg_head(pgstore *p, int64_t *next_seq, int64_t *next_aseq, unsigned char last_hash[32],
            err_t *err)
{
    return read_head(p, "SELECT next_seq, next_aseq, last_hash FROM head", next_seq, next_aseq,
                     last_hash, err);
}

/* ------------------------------------------------------------------ transactions */

/* Keeps the first n items of a (the rest go). */
static void cut(json_t *a, size_t n)
{
    while (json_array_size(a) > n)
        json_array_remove(a, json_array_size(a) - 1);
}

/* A connection that PostgreSQL dropped (a restart, a failover, a network
 * cut) is made again before the next transaction; until that works every
 * group fails with 503, and nothing half-done is ever answered 2xx. The
 * session settings (search_path) are set again. */
int pq_reconnect(pgstore *p, err_t *err)
{
    /* An idle connection whose server went away still says OK until it is
     * read: what has arrived is read first (a restarted server's goodbye
     * and the closed socket), so a stale connection is made again here
     * instead of failing the next statement. */
    if (PQconsumeInput(p->conn) && PQstatus(p->conn) == CONNECTION_OK)
        return 0;
    PQreset(p->conn);
    if (PQstatus(p->conn) != CONNECTION_OK)
        return pq_fail(p, NULL, "reconnect", err);
    PQsetNoticeProcessor(p->conn, quiet, NULL);
    char sql[128];
    snprintf(sql, sizeof sql, "SET search_path TO \"%s\"", p->schema);
    return pq_do(p, sql, 0, NULL, err);
}

static int m_begin(void *s, err_t *err)
{
    pgstore *p = s;
    if (pq_reconnect(p, err))
        return -1;
    p->head_locked = p->tx_failed = false;
    json_array_clear(p->changes);
    json_array_clear(p->entries);
    json_array_clear(p->inserts);
    err_clear(&p->first_err);
    if (!PQenterPipelineMode(p->conn))
        return pq_fail(p, NULL, "pipeline mode", err);
    p->piped = true;
    return pq_do(p, "BEGIN", 0, NULL, err);
}

/* The transaction is over (committed or not): the pipeline is drained and
 * the connection back to one statement at a time. */
static void end_tx(pgstore *p)
{
    json_array_clear(p->inserts);
    if (p->pending) {
        err_t e = {0};
        pq_sync(p, false, &e);
        err_clear(&e);
    }
    PQexitPipelineMode(p->conn);
    p->piped = false;
}

static int m_head(void *s, int64_t *next_seq, int64_t *next_aseq, unsigned char last_hash[32],
                  err_t *err)
{
    pgstore *p = s;
    if (read_head(p, "SELECT next_seq, next_aseq, last_hash FROM head FOR UPDATE", next_seq,
                  next_aseq, last_hash, err))
        return -1;
    p->head_locked = true;
    return 0;
}

static char *id_key(const char *col, const char *id, size_t *n)
{
    buf_t k = {0};
    buf_printf(&k, "%s\t%s", col, id);
    return buf_take(&k, n);
}

/* One round trip for the whole group: which of the ids its requests create
 * are free (the head's lock keeps them so until the commit). */
static void m_prefetch(void *s, const wjob *jobs)
{
    pgstore *p = s;
    map_free(&p->free_ids);
    map_init(&p->free_ids);
    json_t *pairs = json_array();
    for (const wjob *j = jobs; j; j = j->next)
        for (int i = 0; j->kind == WJ_OPS && i < j->nops; i++)
            if (j->ops[i].kind == W_CREATE && j->ops[i].id)
                json_array_append_new(pairs, json_pack("[ss]", j->ops[i].col, j->ops[i].id));
    if (json_array_size(pairs) > 0) {
        char *arg = json_dumps(pairs, JSON_COMPACT);
        const char *v[] = {arg};
        err_t e = {0};
        PGresult *r = pq(p, "SELECT x->>0, x->>1 FROM jsonb_array_elements($1::jsonb) x"
                            " WHERE NOT EXISTS (SELECT 1 FROM docs d"
                            " WHERE d.col = x->>0 AND d.id = x->>1)", 1, v, &e);
        for (int i = 0; r && i < PQntuples(r); i++) {
            size_t n;
            char *k = id_key(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), &n);
            map_put(&p->free_ids, k, n, p);
            free(k);
        }
        PQclear(r);
        err_clear(&e);
        free(arg);
    }
    json_decref(pairs);
}

/* The columns of a buffered row (a JSON array: integers, strings, nulls)
 * and their types, in the table's order. */
static const char *const change_types[] = {"bigint", "text", "text", "text", "bigint", "text",
                                           "text", "text", NULL};
static const char *const entry_types[] = {"bigint", "bigint", "text", "text", "text", "text",
                                          NULL};
static const char *const doc_types[] = {"text", "text", "bigint", "text", "text", "text", NULL};

/* INSERT INTO ... VALUES ($1::T, ...), (...): the rows as parameters. */
static int insert_rows(pgstore *p, const char *into, json_t *rows, const char *const *types,
                       err_t *err)
{
    int ncol = 0;
    while (types[ncol])
        ncol++;
    size_t nrows = json_array_size(rows);
    buf_t sql = {0};
    const char **v = xcalloc(nrows * (size_t)ncol, sizeof *v);
    char(*ints)[24] = xcalloc(nrows * (size_t)ncol, sizeof *ints);
    buf_puts(&sql, into);
    int k = 0;
    for (size_t r = 0; r < nrows; r++) {
        json_t *row = json_array_get(rows, r);
        buf_puts(&sql, r ? ",(" : " (");
        for (int c = 0; c < ncol; c++, k++) {
            json_t *x = json_array_get(row, (size_t)c);
            if (json_is_integer(x))
                v[k] = I64(ints[k], json_integer_value(x));
            else
                v[k] = json_string_value(x); /* NULL for null */
            buf_printf(&sql, "%s$%d::%s", c ? "," : "", k + 1, types[c]);
        }
        buf_putc(&sql, ')');
    }
    int rc = pq_do(p, sql.p, k, v, err);
    buf_free(&sql);
    free(v);
    free(ints);
    return rc;
}

/* The waiting inserts, one statement (taken out of p->inserts first, so
 * that sending it does not come back here). */
static int flush_inserts(pgstore *p, err_t *err)
{
    json_t *rows = p->inserts;
    p->inserts = json_array();
    int rc = insert_rows(p, "INSERT INTO docs VALUES", rows, doc_types, err);
    json_decref(rows);
    return rc;
}

static int m_commit(void *s, err_t *err)
{
    pgstore *p = s;
    /* The feed's rows and the log's entries, a statement each: one row
     * of parameters a row (text as it is: nothing to escape or parse,
     * which an array of JSON cost PostgreSQL more than the rows). */
    static const char *const into[2] = {"INSERT INTO changes VALUES", "INSERT INTO activity VALUES"};
    json_t *rows[2] = {p->changes, p->entries};
    for (int i = 0; i < 2; i++)
        if (json_array_size(rows[i]))
            insert_rows(p, into[i], rows[i], i == 0 ? change_types : entry_types, err);
    /* The head follows the group's last change and entry (an undone job's
     * were cut off with its seqs, so the buffers are the truth). */
    json_t *lc = json_array_get(p->changes, json_array_size(p->changes) - 1);
    json_t *le = json_array_get(p->entries, json_array_size(p->entries) - 1);
    if (p->head_locked && (lc || le)) {
        char ns[24], na[24];
        const char *v[] = {
            lc ? I64(ns, json_integer_value(json_array_get(lc, 0)) + 1) : NULL,
            le ? I64(na, json_integer_value(json_array_get(le, 0)) + 1) : NULL,
            le ? json_string_value(json_array_get(le, 5)) : NULL,
        };
        pq_do(p, "UPDATE head SET next_seq = coalesce($1::bigint, next_seq),"
                 " next_aseq = coalesce($2::bigint, next_aseq),"
                 " last_hash = coalesce($3, last_hash)", 3, v, err);
    }
    /* Wakes every node's feed, when (and only if) this commits. */
    if (json_array_size(p->changes)) {
        const char *v[] = {p->schema};
        pq_do(p, "SELECT pg_notify('livedb_feed_' || $1, '')", 1, v, err);
    }
    /* Every failure below leaves the transaction open (in_tx) for core's
     * rollback: a COMMIT sent behind a failed statement is not run at all,
     * and the server's transaction would otherwise stay open, aborted,
     * under the next BEGIN. */
    if (err->code)
        return -1;
    if (p->tx_failed)
        return err_set(err, p->first_err.code, "%s", p->first_err.msg);
    PGresult *r = pq(p, "COMMIT", 0, NULL, err);
    if (!r)
        return -1;
    /* COMMIT of a transaction that failed answers ROLLBACK, not an error. */
    bool ok = strcmp(PQcmdStatus(r), "COMMIT") == 0;
    PQclear(r);
    end_tx(p);
    return ok ? 0 : err_set(err, E_INTERNAL, "PostgreSQL rolled the transaction back");
}

static void m_rollback(void *s)
{
    pgstore *p = s;
    err_t e = {0};
    json_array_clear(p->inserts); /* never sent: nothing to undo */
    /* What was sent goes first (it may hold the failure), so that the
     * ROLLBACK does not land behind it in an aborted pipeline and go
     * unrun. */
    if (p->pending)
        pq_sync(p, false, &e);
    p->tx_failed = false;
    PQclear(pq(p, "ROLLBACK", 0, NULL, &e));
    err_clear(&e);
    end_tx(p);
}

static int m_savepoint(void *s, err_t *err)
{
    pgstore *p = s;
    p->changes_mark = json_array_size(p->changes);
    p->entries_mark = json_array_size(p->entries);
    return pq_do(p, "SAVEPOINT job", 0, NULL, err);
}

static void m_release(void *s)
{
    err_t e = {0};
    pq_do(s, "RELEASE SAVEPOINT job", 0, NULL, &e);
    err_clear(&e);
}

static void m_rollback_to(void *s)
{
    pgstore *p = s;
    cut(p->changes, p->changes_mark);
    cut(p->entries, p->entries_mark);
    err_t e = {0};
    pq_do(s, "ROLLBACK TO SAVEPOINT job", 0, NULL, &e);
    pq_do(s, "RELEASE SAVEPOINT job", 0, NULL, &e);
    err_clear(&e);
}

static bool m_in_tx(void *s) { return ((pgstore *)s)->piped; }

/* ------------------------------------------------------------------ collections */

bool pg_field_path(const char *field, char *out, size_t n)
{
    size_t k = 0;
    out[k++] = '{';
    for (const char *c = field; *c && k + 2 < n; c++) {
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '.')
            return false;
        out[k++] = *c == '.' ? ',' : *c;
    }
    if (k + 2 >= n)
        return false;
    out[k++] = '}';
    out[k] = '\0';
    return true;
}

/* A collection name as documents check it ([A-Za-z0-9_-]), for index names. */
static bool name_ok(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return false;
    return true;
}

/* Every collection shares docs; a declared unique field gets a partial
 * unique index (col = COL) on its value, named ux_COL_SLOT. */
static int m_ensure_col(void *s, const char *col, err_t *err)
{
    pgstore *p = s;
    const col_spec *spec = apps_col(col);
    for (int i = 0; spec && i < spec->nfields; i++) {
        char path[160], sql[512];
        if (!spec->fields[i].unique)
            continue;
        if (!name_ok(col) || !pg_field_path(spec->fields[i].name, path, sizeof path))
            return err_set(err, E_INTERNAL, "cannot index %s.%s", col, spec->fields[i].name);
        snprintf(sql, sizeof sql,
                 "CREATE UNIQUE INDEX IF NOT EXISTS \"ux_%s_%d\" ON docs ((body::jsonb #> '%s'))"
                 " WHERE col = '%s'",
                 col, i, path, col);
        if (pq_do(p, sql, 0, NULL, err))
            return -1;
    }
    return 0;
}

/* At most PG_AUTO_INDEX_MAX a collection, as --auto-index bounds SQLite's;
 * a field asked for again, or past the bound, is a no-op. */
static int m_auto_index(void *s, const char *col, const char *field, err_t *err)
{
    pgstore *p = s;
    char path[160], sql[600];
    if (!name_ok(col) || !pg_field_path(field, path, sizeof path))
        return err_set(err, E_INTERNAL, "cannot index %s.%s", col, field);
    const char *v[] = {col, field};
    long have = pq_count(p, "SELECT 1 FROM indexes WHERE col = $1 AND field = $2", 2, v, err);
    if (have != 0)
        return have < 0 ? -1 : 0;
    PGresult *r = pq(p, "SELECT count(*) FROM indexes WHERE col = $1", 1, v, err);
    if (!r)
        return -1;
    int n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (n >= PG_AUTO_INDEX_MAX)
        return 0;
    snprintf(sql, sizeof sql,
             "CREATE INDEX IF NOT EXISTS \"ix_%s_%d\" ON docs ((body::jsonb #> '%s'))"
             " WHERE col = '%s'",
             col, n, path, col);
    char name[128];
    snprintf(name, sizeof name, "ix_%s_%d", col, n);
    const char *w[] = {col, field, name};
    return pq_do(p, sql, 0, NULL, err) ||
                   pq_do(p, "INSERT INTO indexes VALUES($1, $2, $3) ON CONFLICT DO NOTHING", 3, w,
                         err)
               ? -1
               : 0;
}

/* ------------------------------------------------------------------ rows */

static int m_get(void *s, const char *col, const char *id, txn_row *row, err_t *err)
{
    const char *v[] = {col, id};
    PGresult *r = pq(s, "SELECT version, created_at, body FROM docs WHERE col = $1 AND id = $2",
                     2, v, err);
    if (!r)
        return -1;
    int found = PQntuples(r) == 1;
    if (found) {
        row->version = atoll(PQgetvalue(r, 0, 0));
        row->created = xstrdup(PQgetvalue(r, 0, 1));
        buf_put(&row->body, PQgetvalue(r, 0, 2), (size_t)PQgetlength(r, 0, 2));
    }
    PQclear(r);
    return found ? TXN_FOUND : 0;
}

/* The declared unique field whose value doc shares with another document
 * of col (its slot), -1 for none, -2 with err set. */
static int unique_clash(pgstore *p, const char *col, const char *id, const char *body,
                        size_t len, err_t *err)
{
    const col_spec *spec = apps_col(col);
    int slot = -1;
    json_t *doc = NULL;
    for (int i = 0; spec && i < spec->nfields && slot == -1; i++) {
        if (!spec->fields[i].unique)
            continue;
        if (!doc && !(doc = json_loadb(body, len, 0, NULL)))
            break;
        json_t *val = query_field(doc, spec->fields[i].name);
        char path[160];
        if (!val || !pg_field_path(spec->fields[i].name, path, sizeof path))
            continue;
        char *vj = json_dumps(val, JSON_ENCODE_ANY | JSON_COMPACT);
        const char *v[] = {col, id, path, vj};
        long k = pq_count(p, "SELECT 1 FROM docs WHERE col = $1 AND id <> $2"
                             " AND body::jsonb #> $3::text[] = $4::jsonb LIMIT 1", 4, v, err);
        free(vj);
        slot = k < 0 ? -2 : k > 0 ? i : -1;
    }
    json_decref(doc);
    return slot;
}

static int put_row(pgstore *p, const char *col, const char *id, int64_t version,
                   const char *created, const char *now, const char *body, size_t len, int *slot,
                   err_t *err)
{
    *slot = unique_clash(p, col, id, body, len, err);
    if (*slot == -2)
        return -1;
    if (*slot >= 0)
        return TXN_UNIQUE;
    char ver[24];
    char *text = xstrndup(body, len);
    const char *ins[] = {col, id, I64(ver, version), created, now, text};
    const char *upd[] = {col, id, ver, now, text};
    /* A new version goes unanswered: core read the row in this same
     * transaction, and the head's lock keeps every other writer out. */
    if (!created) {
        int rc = pq_do(p, "UPDATE docs SET version = $3, updated_at = $4, body = $5"
                          " WHERE col = $1 AND id = $2", 5, upd, err);
        free(text);
        return rc;
    }
    size_t kn;
    char *k = id_key(col, id, &kn);
    bool known_free = map_del(&p->free_ids, k, kn) != NULL;
    free(k);
    if (known_free && p->piped) { /* a clash here fails the transaction, never a row */
        json_t *row = json_array();
        json_array_append_new(row, json_string_nocheck(col));
        json_array_append_new(row, json_string_nocheck(id));
        json_array_append_new(row, json_integer(version));
        json_array_append_new(row, json_string_nocheck(created));
        json_array_append_new(row, json_string_nocheck(now));
        json_array_append_new(row, json_stringn_nocheck(text, len));
        json_array_append_new(p->inserts, row);
        free(text);
        /* A statement's parameters are at most 65,535. */
        return json_array_size(p->inserts) >= 1000 ? flush_inserts(p, err) : 0;
    }
    long n = pq_count(p, "INSERT INTO docs VALUES($1, $2, $3, $4, $5, $6)"
                         " ON CONFLICT (col, id) DO NOTHING", 6, ins, err);
    free(text);
    if (n < 0)
        return -1;
    return n == 0 ? TXN_EXISTS : 0;
}

static int auth_notify(pgstore *p, char kind, const char *key, const char *value, err_t *err);

/* An account's document goes to the other nodes too (their caches of who
 * may do what). */
static int m_put(void *s, const char *col, const char *id, int64_t version, const char *created,
                 const char *now, const char *body, size_t len, int *slot, err_t *err)
{
    int rc = put_row(s, col, id, version, created, now, body, len, slot, err);
    if (rc == 0 && strcmp(col, "_accounts") == 0) {
        char *text = xstrndup(body, len);
        rc = auth_notify(s, 'u', id, text, err);
        free(text);
    }
    return rc;
}

static int m_del(void *s, const char *col, const char *id, err_t *err)
{
    const char *v[] = {col, id};
    return pq_do(s, "DELETE FROM docs WHERE col = $1 AND id = $2", 2, v, err) ||
           (strcmp(col, "_accounts") == 0 && auth_notify(s, 'x', id, NULL, err)) ? -1 : 0;
}

/* The documents of col matching q, in id order: the filter runs here, with
 * the evaluator that every list uses (query_match). */
static json_t *m_find(void *s, const char *col, const query_t *q)
{
    err_t e = {0};
    const char *v[] = {col};
    json_t *out = json_array();
    PGresult *r = pq(s, "SELECT body FROM docs WHERE col = $1 ORDER BY id", 1, v,
                     &e);
    for (int i = 0; r && i < PQntuples(r); i++) {
        if (q->limit > 0 && json_array_size(out) >= (size_t)q->limit)
            break;
        json_t *d = json_loadb(PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0), 0, NULL);
        if (d && query_match(q, d))
            json_array_append(out, d);
        json_decref(d);
    }
    PQclear(r);
    err_clear(&e);
    return out;
}

/* ------------------------------------------------------------------ feed and log */

/* A JSON string of n bytes, or null (NULL p). */
static json_t *text_or_null(const char *p, size_t n)
{
    return p ? json_stringn(p, n) : json_null();
}

static int m_append_change(void *s, const change_t *ch, err_t *err)
{
    pgstore *p = s;
    json_t *row = json_pack("[IsssIsoo]", (json_int_t)ch->seq, ch->col, ch->id,
                            change_op_name(ch->op), (json_int_t)ch->version, ch->at,
                            text_or_null(ch->doc, ch->doc_len),
                            text_or_null(ch->prev, ch->prev_len));
    if (!row)
        return err_set(err, E_INTERNAL, "change %lld is not UTF-8", (long long)ch->seq);
    json_array_append_new(p->changes, row);
    return 0;
}

static int m_append_activity(void *s, int64_t seq, int64_t at_ms, const char *account,
                             const char *action, const char *entry, size_t len,
                             const char hash_hex[64], err_t *err)
{
    pgstore *p = s;
    json_t *row = json_pack("[IIsss%s%]", (json_int_t)seq, (json_int_t)at_ms, account, action,
                            entry, len, hash_hex, (size_t)64);
    if (!row)
        return err_set(err, E_INTERNAL, "activity entry %lld is not UTF-8", (long long)seq);
    json_array_append_new(p->entries, row);
    return 0;
}

/* ------------------------------------------------------------------ private tables */

static int m_idem_get(void *s, const char *account, const char *key, int64_t since_ms,
                      int *status, int64_t *version, buf_t *body)
{
    err_t e = {0};
    char since[24];
    const char *v[] = {account, key, I64(since, since_ms)};
    PGresult *r = pq(s, "SELECT status, version, body FROM idempotency"
                        " WHERE account = $1 AND key = $2 AND at > $3", 3, v, &e);
    if (!r) {
        err_clear(&e);
        return -1;
    }
    int found = PQntuples(r) == 1;
    if (found) {
        *status = atoi(PQgetvalue(r, 0, 0));
        *version = atoll(PQgetvalue(r, 0, 1));
        buf_put(body, PQgetvalue(r, 0, 2), (size_t)PQgetlength(r, 0, 2));
    }
    PQclear(r);
    return found ? TXN_FOUND : 0;
}

static int m_idem_put(void *s, const char *account, const char *key, int64_t at_ms, int status,
                      int64_t version, const char *body, size_t len, err_t *err)
{
    char at[24], st[16], ver[24];
    char *text = xstrndup(body, len);
    const char *v[] = {account, key, I64(at, at_ms), I64(st, status), I64(ver, version), text};
    int rc = pq_do(s, "INSERT INTO idempotency VALUES($1, $2, $3, $4, $5, $6)"
                      " ON CONFLICT (account, key) DO UPDATE SET at = excluded.at,"
                      " status = excluded.status, version = excluded.version,"
                      " body = excluded.body", 6, v, err);
    free(text);
    return rc;
}

/* What the other nodes must hear of a session or a password, as a
 * notification on the schema's auth channel: sent with the transaction's
 * commit, dropped with its rollback (or its job's savepoint). */
static int auth_notify(pgstore *p, char kind, const char *key, const char *value, err_t *err)
{
    buf_t b = {0};
    buf_printf(&b, "%c %s%s%s", kind, key, value ? " " : "", value ? value : "");
    char channel[80];
    snprintf(channel, sizeof channel, "livedb_auth_%s", p->schema);
    const char *v[] = {channel, b.p};
    int rc = pq_do(p, "SELECT pg_notify($1, $2)", 2, v, err);
    buf_free(&b);
    return rc;
}

static int m_cred_put(void *s, const char *account, const char *hash, err_t *err)
{
    const char *v[] = {account, hash};
    return pq_do(s, "INSERT INTO credentials VALUES($1, $2)"
                    " ON CONFLICT (account) DO UPDATE SET hash = excluded.hash", 2, v, err) ||
           auth_notify(s, 'c', account, hash, err);
}

static int m_session_put(void *s, const char *token_hash, const char *session,
                         const char *account, int64_t created_ms, int64_t expires_ms, err_t *err)
{
    char c[24], x[24];
    const char *v[] = {token_hash, session, account, I64(c, created_ms), I64(x, expires_ms)};
    return pq_do(s, "INSERT INTO sessions VALUES($1, $2, $3, $4, $5) ON CONFLICT (token_hash)"
                    " DO UPDATE SET session = excluded.session, account = excluded.account,"
                    " created_at = excluded.created_at, expires_at = excluded.expires_at",
                 5, v, err);
}

static int m_session_del(void *s, const char *token_hash, err_t *err)
{
    const char *v[] = {token_hash};
    return pq_do(s, "DELETE FROM sessions WHERE token_hash = $1", 1, v, err) ||
           auth_notify(s, 's', token_hash, NULL, err);
}

static int m_sessions_del(void *s, const char *account, err_t *err)
{
    const char *v[] = {account};
    return pq_do(s, "DELETE FROM sessions WHERE account = $1", 1, v, err) ||
           auth_notify(s, 'a', account, NULL, err);
}

static int m_probe(void *s, int64_t now_ms, err_t *err)
{
    char at[24];
    const char *v[] = {I64(at, now_ms)};
    return pq_do(s, "INSERT INTO meta VALUES('health_probe', $1)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value", 1, v, err);
}

/* ------------------------------------------------------------------ the feed between nodes */

change_t *pq_change(const PGresult *r, int i)
{
    const char *op = PQgetvalue(r, i, 3);
    change_t *ch = change_new(atoll(PQgetvalue(r, i, 0)), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                              op[0] == 'c' ? CH_CREATE : op[0] == 'u' ? CH_UPDATE : CH_DELETE,
                              atoll(PQgetvalue(r, i, 4)),
                              PQgetisnull(r, i, 5) ? NULL : PQgetvalue(r, i, 5),
                              (size_t)PQgetlength(r, i, 5), PQgetvalue(r, i, 6));
    if (!PQgetisnull(r, i, 7))
        change_set_prev(ch, PQgetvalue(r, i, 7), (size_t)PQgetlength(r, i, 7));
    return ch;
}

struct pgfeed {
    pgstore *p; /* its own connection, out of any transaction */
    int64_t last;
    void (*on_auth)(void *ctx, char kind, const char *key, const char *value);
    void *auth_ctx;
    void (*on_presence)(void *ctx, const char *line);
    void *presence_ctx;
};

void pgfeed_on_presence(pgfeed *f, void (*cb)(void *ctx, const char *line), void *ctx)
{
    f->on_presence = cb;
    f->presence_ctx = ctx;
}

int pgfeed_say(pgfeed *f, const char *line, err_t *err)
{
    char channel[80];
    snprintf(channel, sizeof channel, "livedb_presence_%s", f->p->schema);
    const char *v[] = {channel, line};
    return pq_do(f->p, "SELECT pg_notify($1, $2)", 2, v, err);
}

void pgfeed_on_auth(pgfeed *f, void (*cb)(void *ctx, char kind, const char *key,
                                         const char *value), void *ctx)
{
    f->on_auth = cb;
    f->auth_ctx = ctx;
}

/* "K KEY[ VALUE]" from auth_notify. */
static void auth_heard(pgfeed *f, const char *payload)
{
    if (!f->on_auth || !payload[0] || payload[1] != ' ')
        return;
    char *key = xstrdup(payload + 2);
    char *value = strchr(key, ' ');
    if (value)
        *value++ = '\0';
    f->on_auth(f->auth_ctx, payload[0], key, value);
    free(key);
}

pgfeed *pgfeed_open(const char *conninfo, const char *schema, int64_t after_seq, err_t *err)
{
    pgstore *p = pg_open(conninfo, schema, err);
    if (!p)
        return NULL;
    pgfeed *f = xcalloc(1, sizeof *f);
    f->p = p;
    f->last = after_seq;
    char sql[300];
    snprintf(sql, sizeof sql, "LISTEN livedb_feed_%s; LISTEN livedb_auth_%s;"
             " LISTEN livedb_presence_%s", schema, schema, schema);
    if (pq_do(p, sql, 0, NULL, err)) {
        pgfeed_close(f);
        return NULL;
    }
    return f;
}

void pgfeed_close(pgfeed *f)
{
    if (!f)
        return;
    pg_close(f->p);
    free(f);
}

int pgfeed_socket(const pgfeed *f) { return PQsocket(f->p->conn); }
int64_t pgfeed_last(const pgfeed *f) { return f->last; }

int pgfeed_read(pgfeed *f, int limit, void (*each)(void *ctx, change_t *ch), void *ctx,
                err_t *err)
{
    pgstore *p = f->p;
    /* The notifications only say "look": each read takes all there is. */
    if (!PQconsumeInput(p->conn))
        return pq_fail(p, NULL, "the feed's connection", err);
    PGnotify *n;
    while ((n = PQnotifies(p->conn))) {
        if (strncmp(n->relname, "livedb_auth_", 12) == 0)
            auth_heard(f, n->extra);
        else if (strncmp(n->relname, "livedb_presence_", 16) == 0 && f->on_presence)
            f->on_presence(f->presence_ctx, n->extra);
        PQfreemem(n);
    }
    char after[24], lim[16];
    const char *v[] = {I64(after, f->last), I64(lim, limit)};
    PGresult *r = pq(p, "SELECT seq, col, id, op, version, doc, at, prev FROM changes"
                        " WHERE seq > $1 ORDER BY seq LIMIT $2", 2, v, err);
    if (!r)
        return -1;
    int rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        change_t *ch = pq_change(r, i);
        INVARIANT(i == 0 || ch->seq == f->last + 1); /* commits come in seq order */
        f->last = ch->seq;
        each(ctx, ch);
    }
    PQclear(r);
    return rows;
}

/* The test seam of vfs.h, as on SQLite: a server function's second write
 * fails (LIVEDB_FAULTS byte 3 'W'). */
static bool m_write_fault(void *s) { return vfs_fault(3, 'W'); }

const txn_methods pg_txn_methods = {TXN_METHODS(m), .head = m_head, .prefetch = m_prefetch,
                                    .write_fault = m_write_fault};
