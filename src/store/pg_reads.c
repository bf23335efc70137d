/*
 * pg_reads.c: read jobs of the PostgreSQL backend, each on a connection of
 * the node's reader pool inside one REPEATABLE READ, READ ONLY
 * transaction, so that a list and the seq it reports come from one
 * snapshot (the head row and the documents commit together); and the
 * accounts loaded at start.
 *
 * Lists filter and order in C, with the matcher and the order every store
 * uses (core/query.h: query_match, query_order_key/_cmp), so that a list
 * means on PostgreSQL exactly what it means on SQLite, to the tie and the
 * cursor. Ordered by id they read the collection in pages, in id order,
 * and stop when the page is full; ordered by a field they read the
 * collection and sort it. Either way the rows come through the query's
 * equalities on strings and booleans first, in SQL (prefilter), so that
 * the fields' indexes (pg.c's m_auto_index) find them: a prefilter only
 * lets fewer rows through to the C matcher, never other ones.
 */
#include "pg_int.h"
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

#include "../core/access.h"
#include "../core/rules.h"

#define SCAN_PAGE 500
#define STR_(x) #x
#define STR(x) STR_(x)

static int64_t head_seq(pgstore *p, err_t *err)
{
    PGresult *r = pq(p, "SELECT next_seq - 1 FROM head", 0, NULL, err);
    if (!r)
        return -1;
    int64_t seq = PQntuples(r) ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return seq;
}

static void read_get(rjob *job, pgstore *p)
{
    const char *v[] = {job->col, job->id};
    PGresult *r = pq(p, "SELECT version, body FROM docs WHERE col = $1 AND id = $2", 2, v,
                     &job->err);
    if (!r)
        return;
    if (PQntuples(r) == 1 &&
        store_may_read(job, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1))) {
        job->found = true;
        job->version = atoll(PQgetvalue(r, 0, 0));
        buf_put(&job->out, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1));
    }
    PQclear(r);
}

/* ------------------------------------------------------------------ lists */

typedef struct hit {
    char *id;
    json_t *key;
    char *body;
    size_t len;
} hit;

typedef struct scan {
    rjob *job;
    rule_t *post;
    json_t *auth;
    hit *hits;
    size_t n, cap;
} scan;

static int by_order(const void *a, const void *b, void *q)
{
    const hit *x = a, *y = b;
    return query_order_cmp(q, x->key, x->id, y->key, y->id);
}

/* Takes the row if the query, the cursor and the read rule let it through. */
static void consider(scan *sc, const char *id, const char *body, size_t len)
{
    const query_t *q = &sc->job->query;
    json_t *d = json_loadb(body, len, 0, NULL);
    if (!d)
        return;
    json_t *key = NULL;
    bool ok = query_match(q, d) && (!sc->post || rule_eval(sc->post, sc->auth, d, NULL));
    if (ok) {
        key = query_order_key(q, d);
        ok = query_after_cursor(q, key, id);
    }
    json_decref(d);
    if (!ok) {
        json_decref(key);
        return;
    }
    if (sc->n == sc->cap) {
        sc->cap = sc->cap ? sc->cap * 2 : 64;
        sc->hits = xrealloc(sc->hits, sc->cap * sizeof *sc->hits);
    }
    sc->hits[sc->n++] = (hit){xstrdup(id), key, xstrndup(body, len), len};
}

static void scan_free(scan *sc)
{
    for (size_t i = 0; i < sc->n; i++) {
        free(sc->hits[i].id);
        json_decref(sc->hits[i].key);
        free(sc->hits[i].body);
    }
    free(sc->hits);
    rule_free(sc->post);
    json_decref(sc->auth);
}

/* The query's conditions that SQL can test exactly as query_match does,
 * as " AND ..." on sql, their values as parameters from $(*n + 1) on (in
 * v, owned: the caller frees v[first..*n)). Only equalities of strings and
 * booleans: a number's equality in jsonb (exact) and in the matcher
 * (doubles) can differ, and the other operators order types their own
 * way; those stay the matcher's alone. */
static void prefilter(const query_t *q, buf_t *sql, const char **v, int *n)
{
    for (int i = 0; i < q->nconds; i++) {
        const qcond *c = &q->conds[i];
        char path[160];
        if (c->op != Q_EQ || !(json_is_string(c->value) || json_is_boolean(c->value)))
            continue;
        if (strcmp(c->field, "id") == 0) {
            if (!json_is_string(c->value))
                continue;
            v[*n] = xstrdup(json_string_value(c->value));
            buf_printf(sql, " AND id = $%d", ++*n);
        } else if (pg_field_path(c->field, path, sizeof path)) {
            v[*n] = json_dumps(c->value, JSON_ENCODE_ANY | JSON_COMPACT);
            /* the expression of the index, to the letter */
            buf_printf(sql, " AND (body::jsonb #> '%s') = $%d::jsonb", path, ++*n);
        }
    }
}

/* Ordered by a field: every row that passes, sorted in C. */
static int scan_sorted(scan *sc, pgstore *p, const char *where, const char **v, int nv)
{
    rjob *job = sc->job;
    /* $2 is the by-id scan's cursor: here it is unused, and said so */
    buf_t sql = {0};
    buf_printf(&sql, "SELECT id, body FROM docs WHERE col = $1 AND $2::text IS NULL%s", where);
    PGresult *r = pq(p, sql.p, nv, v, &job->err);
    buf_free(&sql);
    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++)
        consider(sc, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1));
    PQclear(r);
    qsort_r(sc->hits, sc->n, sizeof *sc->hits, by_order, (void *)&job->query);
    return 0;
}

/* Ordered by id: a page at a time, from the cursor on, until want pass. */
static int scan_by_id(scan *sc, pgstore *p, size_t want, const char *where, const char **v, int nv)
{
    rjob *job = sc->job;
    const query_t *q = &job->query;
    char *from = q->has_after ? xstrdup(q->after_id) : NULL;
    /* (ids are COLLATE "C": byte order, SQLite's, and the key's index) */
    buf_t sql = {0};
    buf_printf(&sql, "SELECT id, body FROM docs WHERE col = $1 AND ($2::text IS NULL OR id %c $2)%s"
                     " ORDER BY id%s LIMIT " STR(SCAN_PAGE),
               q->desc ? '<' : '>', where, q->desc ? " DESC" : "");
    int rc = 0;
    for (;;) {
        v[1] = from; /* freed below, before v[1] is read again */
        PGresult *r = pq(p, sql.p, nv, v, &job->err);
        if (!r) {
            rc = -1;
            break;
        }
        int rows = PQntuples(r);
        for (int i = 0; i < rows && (!want || sc->n < want); i++)
            consider(sc, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1));
        free(from);
        from = rows ? xstrdup(PQgetvalue(r, rows - 1, 0)) : NULL;
        PQclear(r);
        if (rows < SCAN_PAGE || (want && sc->n >= want))
            break;
    }
    free(from);
    buf_free(&sql);
    return rc;
}

/* Every row of the query in its order, at most want (0: all). */
static int scan_rows(scan *sc, pgstore *p, size_t want)
{
    rjob *job = sc->job;
    const query_t *q = &job->query;
    bool by_id = !q->order[0] || strcmp(q->order, "id") == 0;
    const char *v[2 + QUERY_MAX_CONDS] = {job->col, NULL};
    int nv = 2;
    buf_t where = {0};
    buf_puts(&where, ""); /* "" when nothing is prefiltered */
    prefilter(q, &where, v, &nv);
    int rc = by_id ? scan_by_id(sc, p, want, where.p, v, nv) : scan_sorted(sc, p, where.p, v, nv);
    for (int i = 2; i < nv; i++)
        free((char *)v[i]); /* prefilter's */
    buf_free(&where);
    return rc;
}
static int scan_open(scan *sc, rjob *job)
{
    *sc = (scan){.job = job};
    access_scope a = access_read_scope(&job->actor, job->col, &job->query, &sc->post);
    if (a == ACCESS_NONE)
        return err_set(&job->err, E_FORBIDDEN, "not allowed to read %s", job->col);
    if (sc->post)
        sc->auth = actor_auth(&job->actor);
    return 0;
}

static void read_list(rjob *job, pgstore *p)
{
    int64_t seq = head_seq(p, &job->err);
    scan sc;
    if (seq < 0 || scan_open(&sc, job))
        return;
    job->seq = seq;
    size_t limit = (size_t)job->query.limit;
    if (scan_rows(&sc, p, limit + 1) == 0) {
        buf_t *o = &job->out;
        buf_puts(o, "{\"docs\":[");
        size_t n = sc.n < limit ? sc.n : limit;
        for (size_t i = 0; i < n; i++) {
            if (i)
                buf_putc(o, ',');
            buf_put(o, sc.hits[i].body, sc.hits[i].len);
        }
        job->count = (int)n;
        buf_printf(o, "],\"seq\":%lld,\"next\":", (long long)seq);
        char *next = sc.n > limit && n
                         ? query_cursor_encode(&job->query, sc.hits[n - 1].key, sc.hits[n - 1].id)
                         : NULL;
        if (next)
            buf_put_json_str(o, next, strlen(next));
        else
            buf_puts(o, "null");
        buf_putc(o, '}');
        free(next);
    }
    scan_free(&sc);
}

static void read_snapshot(rjob *job, pgstore *p)
{
    job->query.limit = 0;
    store_snapshot_begin(job);
    int64_t seq = head_seq(p, &job->err);
    scan sc;
    if (seq < 0 || scan_open(&sc, job))
        return;
    job->seq = seq;
    if (scan_rows(&sc, p, 0) == 0)
        for (size_t i = 0; i < sc.n; i++)
            store_snapshot_add(job, sc.hits[i].body, sc.hits[i].len);
    scan_free(&sc);
}

/* ------------------------------------------------------------------ the feed, the log */

static void read_changes(rjob *job, pgstore *p)
{
    PGresult *r = pq(p, "SELECT (SELECT next_seq - 1 FROM head), (SELECT min(seq) FROM changes)",
                     0, NULL, &job->err);
    if (!r)
        return;
    int64_t last = atoll(PQgetvalue(r, 0, 0));
    int64_t first = PQgetisnull(r, 0, 1) ? last + 1 : atoll(PQgetvalue(r, 0, 1));
    PQclear(r);
    if (job->since < first - 1) {
        err_set(&job->err, E_RESYNC_REQUIRED,
                "changes after %lld are no longer retained (oldest is %lld); list again",
                (long long)job->since, (long long)first);
        return;
    }
    if (job->since > last) {
        err_set(&job->err, E_RESYNC_REQUIRED,
                "since %lld is ahead of the feed (last seq %lld): not a seq of this database;"
                " list again", (long long)job->since, (long long)last);
        return;
    }
    char since[24], lim[16];
    const char *v[] = {I64(since, job->since), I64(lim, job->limit), job->col};
    r = pq(p, job->col_filter
                  ? "SELECT seq, col, id, op, version, doc, at, prev FROM changes"
                    " WHERE seq > $1 AND col = $3 ORDER BY seq LIMIT $2"
                  : "SELECT seq, col, id, op, version, doc, at, prev FROM changes"
                    " WHERE seq > $1 ORDER BY seq LIMIT $2",
           job->col_filter ? 3 : 2, v, &job->err);
    if (!r)
        return;
    int rows = PQntuples(r);
    int64_t covered = job->since;
    json_t *auth = actor_is_admin(&job->actor) ? NULL : actor_auth(&job->actor);
    change_t **tail = &job->recs;
    for (int i = 0; i < rows; i++) {
        change_t *ch = pq_change(r, i);
        covered = ch->seq;
        store_emit_change(job, ch, auth, &tail);
    }
    PQclear(r);
    json_decref(auth);
    /* Fewer than asked: everything up to the snapshot's end is covered. */
    job->seq = rows < job->limit ? last : covered;
    if (job->seq < job->since)
        job->seq = job->since;
}

static void read_activity(rjob *job, pgstore *p)
{
    if (!actor_is_admin(&job->actor)) {
        err_set(&job->err, E_FORBIDDEN, "the activity log is for admins");
        return;
    }
    const activity_query *q = &job->aq;
    char b[4][24];
    const char *v[5];
    int n = 0;
    buf_t sql = {0};
    buf_puts(&sql, "SELECT seq, entry, hash FROM activity WHERE true");
    if (q->since_ms) {
        v[n] = I64(b[0], q->since_ms);
        buf_printf(&sql, " AND at >= $%d", ++n);
    }
    if (q->until_ms) {
        v[n] = I64(b[1], q->until_ms);
        buf_printf(&sql, " AND at < $%d", ++n);
    }
    if (q->actor) {
        v[n] = q->actor;
        buf_printf(&sql, " AND account = $%d", ++n);
    }
    if (q->action) {
        v[n] = q->action;
        buf_printf(&sql, " AND action = $%d", ++n);
    }
    if (q->ascending) {
        v[n] = I64(b[2], q->after_seq);
        buf_printf(&sql, " AND seq > $%d ORDER BY seq ASC", ++n);
    } else if (q->before_seq) {
        v[n] = I64(b[3], q->before_seq);
        buf_printf(&sql, " AND seq < $%d ORDER BY seq DESC", ++n);
    } else {
        buf_puts(&sql, " ORDER BY seq DESC");
    }
    buf_printf(&sql, " LIMIT %d", q->limit > 0 ? q->limit : 100);
    PGresult *r = pq(p, sql.p, n, v, &job->err);
    buf_free(&sql);
    if (!r)
        return;
    job->seq = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        store_emit_entry(job, PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1),
                         PQgetvalue(r, i, 2), (size_t)PQgetlength(r, i, 2));
        job->seq = atoll(PQgetvalue(r, i, 0));
    }
    PQclear(r);
    /* Where a live subscriber picks up (same snapshot); with no entries
     * yet, after everything. */
    r = pq(p, "SELECT next_aseq - 1 FROM head", 0, NULL, &job->err);
    if (!r)
        return;
    job->top_seq = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!job->count && !q->ascending)
        job->seq = job->top_seq;
}

static void read_session(rjob *job, pgstore *p)
{
    const char *v[] = {job->id};
    PGresult *r = pq(p, "SELECT json_build_object('session', session, 'account', account,"
                        " 'expires_at', expires_at) FROM sessions WHERE token_hash = $1",
                     1, v, &job->err);
    if (!r)
        return;
    if (PQntuples(r) == 1) {
        job->found = true;
        buf_put(&job->out, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    }
    PQclear(r);
}

static void (*const readers[])(rjob *, pgstore *) = {
    [R_GET] = read_get,
    [R_LIST] = read_list,
    [R_CHANGES] = read_changes,
    [R_SNAPSHOT] = read_snapshot,
    [R_ACTIVITY] = read_activity,
    [R_SESSION] = read_session,
};

/* A read's snapshot. A connection of the pool that PostgreSQL closed while
 * it was idle (a restart) may only say so now: it is made again, once,
 * and the read goes on (it wrote nothing). */
static int begin_read(pgstore *p, err_t *err)
{
    const char *sql = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    if (pq_do(p, sql, 0, NULL, err) == 0)
        return 0;
    if (err->code != E_UNAVAILABLE || PQstatus(p->conn) == CONNECTION_OK)
        return -1;
    err_clear(err);
    return pq_reconnect(p, err) ? -1 : pq_do(p, sql, 0, NULL, err);
}

void pg_read(store_t *st, rjob *job)
{
    pgstore *p = pgnode_reader_take(st, &job->err);
    if (!p)
        return;
    if (begin_read(p, &job->err) == 0) {
        if ((size_t)job->kind < sizeof readers / sizeof *readers && readers[job->kind])
            readers[job->kind](job, p);
        else
            err_set(&job->err, E_INTERNAL, "unknown read");
        err_t e = {0};
        pq_do(p, "COMMIT", 0, NULL, &e);
        err_clear(&e);
    }
    pgnode_reader_give(st, p);
}

/* ------------------------------------------------------------------ accounts */

int pg_load_auth(store_t *st, const store_auth_cb *cb, err_t *err)
{
    pgstore *p = pgnode_reader_take(st, err);
    if (!p)
        return -1;
    int rc = -1;
    PGresult *a = NULL, *c = NULL, *s = NULL;
    char now[24];
    const char *v[] = {I64(now, time_now_ms())};
    if (begin_read(p, err) ||
        !(a = pq(p, "SELECT body FROM docs WHERE col = '_accounts'", 0, NULL, err)) ||
        !(c = pq(p, "SELECT account, hash FROM credentials", 0, NULL, err)) ||
        !(s = pq(p, "SELECT token_hash, session, account, expires_at FROM sessions"
                    " WHERE expires_at > $1", 1, v, err)))
        goto out;
    for (int i = 0; i < PQntuples(a); i++)
        cb->account(cb->ctx, PQgetvalue(a, i, 0), (size_t)PQgetlength(a, i, 0));
    for (int i = 0; i < PQntuples(c); i++)
        cb->credential(cb->ctx, PQgetvalue(c, i, 0), PQgetvalue(c, i, 1));
    for (int i = 0; i < PQntuples(s); i++)
        cb->session(cb->ctx, PQgetvalue(s, i, 0), PQgetvalue(s, i, 1), PQgetvalue(s, i, 2),
                    atoll(PQgetvalue(s, i, 3)));
    rc = 0;
out:
    PQclear(a);
    PQclear(c);
    PQclear(s);
    err_t e = {0};
    pq_do(p, "COMMIT", 0, NULL, &e);
    err_clear(&e);
    pgnode_reader_give(st, p);
    return rc;
}
