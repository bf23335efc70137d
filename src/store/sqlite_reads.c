/*
 * sqlite_reads.c: read jobs (store_read) on libuv's thread pool, each on one of
 * the read-only connections of the reader pool and inside one read
 * transaction, so that a list and the seq it reports agree; and the
 * accounts, credentials and sessions loaded once at start.
 */
#include "sqlite_int.h"

/* ------------------------------------------------------------------ reads */

static sqlite3 *reader_take(sqstore *st, reader **slot)
{
    pthread_mutex_lock(&st->rmu);
    while (!st->free_readers)
        pthread_cond_wait(&st->rcv, &st->rmu);
    reader *r = st->free_readers;
    st->free_readers = r->next;
    pthread_mutex_unlock(&st->rmu);
    *slot = r;
    return r->db;
}

static void reader_give(sqstore *st, reader *r)
{
    pthread_mutex_lock(&st->rmu);
    r->next = st->free_readers;
    st->free_readers = r;
    pthread_cond_signal(&st->rcv);
    pthread_mutex_unlock(&st->rmu);
}

/* Whether a statement failed because its collection has no table yet (it
 * has no documents). SQLite checks the schema cookie before saying "no such
 * table", but when that read fails it says it anyway: so the cookie is read
 * again here, and a failure there is the I/O error it is, not an empty
 * collection. */
bool no_table(sqlite3 *db)
{
    if (strncmp(sqlite3_errmsg(db), "no such table", 13) != 0)
        return false;
    sqlite3_stmt *st = NULL;
    bool ok = sqlite3_prepare_v2(db, "PRAGMA schema_version", -1, &st, NULL) == SQLITE_OK &&
              sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return ok;
}

static void read_get(rjob *job, sqlite3 *db)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT version, body FROM \"c_%s\" WHERE id=?1", job->col);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        if (!no_table(db))
            sq_err(&job->err, db, sqlite3_errcode(db), "get");
        return;
    }
    sqlite3_bind_text(s, 1, job->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        job->found = true;
        job->version = sqlite3_column_int64(s, 0);
        buf_put(&job->out, sqlite3_column_text(s, 1), (size_t)sqlite3_column_bytes(s, 1));
        if (!store_may_read(job, job->out.p, job->out.len)) {
            job->found = false;
            job->out.len = 0;
        }
    } else if (rc != SQLITE_DONE) {
        sq_err(&job->err, db, rc, "get");
    }
    sqlite3_finalize(s);
}

/* The read rule of job's collection for its actor: -1 (and the error)
 * when nothing may be read; else conditions are added to the query and
 * *post (may be NULL) is checked on every row, *auth with it. */
static int read_scope(rjob *job, rule_t **post, json_t **auth)
{
    *auth = NULL;
    access_scope sc = access_read_scope(&job->actor, job->col, &job->query, post);
    if (sc == ACCESS_NONE)
        return err_set(&job->err, E_FORBIDDEN, "not allowed to read %s", job->col);
    if (*post)
        *auth = actor_auth(&job->actor);
    return 0;
}

static bool row_visible(const rule_t *post, const json_t *auth, sqlite3_stmt *s)
{
    if (!post)
        return true;
    json_t *d = json_loadb((const char *)sqlite3_column_text(s, 0),
                           (size_t)sqlite3_column_bytes(s, 0), 0, NULL);
    bool ok = d && rule_eval(post, auth, d, NULL);
    json_decref(d);
    return ok;
}

static void read_list(rjob *job, sqlite3 *db)
{
    int64_t seq = sq_query_i64(db, "SELECT max(seq) FROM changes", 0);
    job->seq = seq;
    rule_t *post = NULL;
    json_t *auth = NULL;
    if (read_scope(job, &post, &auth))
        return;
    /* Rows the rule refuses are skipped in C: then SQL cannot stop at the
     * page's end, this loop does. */
    int limit = job->query.limit;
    if (post)
        job->query.limit = 0;
    sqlq q;
    sqlq_build_list(&q, &job->query, job->col);
    job->query.limit = limit;
    sqlite3_stmt *s = NULL;
    buf_t *o = &job->out;
    buf_puts(o, "{\"docs\":[");
    if (sqlite3_prepare_v2(db, q.sql.p, -1, &s, NULL) != SQLITE_OK) {
        if (!no_table(db))
            sq_err(&job->err, db, sqlite3_errcode(db), "list");
        else
            buf_printf(o, "],\"seq\":%lld,\"next\":null}", (long long)seq);
        sqlq_free(&q);
        rule_free(post);
        json_decref(auth);
        return;
    }
    sqlq_bind(s, &q);
    int rc, n = 0;
    json_t *last_key = NULL; /* of the last row sent, for the next cursor */
    char *last_id = NULL;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (!row_visible(post, auth, s))
            continue;
        if (n == job->query.limit)
            break; /* one row more than asked: there is a next page */
        if (n)
            buf_putc(o, ',');
        buf_put(o, sqlite3_column_text(s, 0), (size_t)sqlite3_column_bytes(s, 0));
        n++;
        json_decref(last_key);
        free(last_id);
        last_key = sqlq_value_json(s, 1);
        last_id = xstrdup((const char *)sqlite3_column_text(s, 2));
    }
    char *next = NULL;
    if (rc == SQLITE_ROW && last_id)
        next = query_cursor_encode(&job->query, last_key, last_id);
    json_decref(last_key);
    free(last_id);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        sq_err(&job->err, db, rc, "list");
    } else {
        job->count = n;
        buf_printf(o, "],\"seq\":%lld,\"next\":", (long long)seq);
        if (next)
            buf_put_json_str(o, next, strlen(next));
        else
            buf_puts(o, "null");
        buf_putc(o, '}');
    }
    free(next);
    sqlite3_finalize(s);
    sqlq_free(&q);
    rule_free(post);
    json_decref(auth);
}

static void read_changes(rjob *job, sqlite3 *db)
{
    int64_t last = sq_query_i64(db, "SELECT max(seq) FROM changes", 0);
    int64_t first = sq_query_i64(db, "SELECT min(seq) FROM changes", last + 1);
    if (job->since < first - 1) {
        err_set(&job->err, E_RESYNC_REQUIRED,
                "changes after %lld are no longer retained (oldest is %lld); list again",
                (long long)job->since, (long long)first);
        return;
    }
    const char *sql = job->col_filter
        ? "SELECT seq,col,id,op,version,doc,at,prev FROM changes WHERE seq>?1 AND col=?3"
          " ORDER BY seq LIMIT ?2"
        : "SELECT seq,col,id,op,version,doc,at,prev FROM changes WHERE seq>?1"
          " ORDER BY seq LIMIT ?2";
    change_t **tail = &job->recs;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        sq_err(&job->err, db, sqlite3_errcode(db), "changes");
        return;
    }
    sqlite3_bind_int64(s, 1, job->since);
    sqlite3_bind_int(s, 2, job->limit);
    if (job->col_filter)
        sqlite3_bind_text(s, 3, job->col, -1, SQLITE_STATIC);
    /* n counts rows read (what the limit is on), job->count those the
     * caller may read; a hidden change is still covered by the seq. */
    int rc, n = 0;
    int64_t covered = job->since;
    json_t *auth = actor_is_admin(&job->actor) ? NULL : actor_auth(&job->actor);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        static const change_op ops[256] = {['c'] = CH_CREATE, ['u'] = CH_UPDATE,
                                           ['d'] = CH_DELETE};
        const char *opname = (const char *)sqlite3_column_text(s, 3);
        change_t *ch = change_new(sqlite3_column_int64(s, 0),
                                  (const char *)sqlite3_column_text(s, 1),
                                  (const char *)sqlite3_column_text(s, 2),
                                  ops[(unsigned char)opname[0]], sqlite3_column_int64(s, 4),
                                  (const char *)sqlite3_column_text(s, 5),
                                  (size_t)sqlite3_column_bytes(s, 5),
                                  (const char *)sqlite3_column_text(s, 6));
        if (sqlite3_column_type(s, 7) == SQLITE_TEXT)
            change_set_prev(ch, (const char *)sqlite3_column_text(s, 7),
                            (size_t)sqlite3_column_bytes(s, 7));
        n++;
        covered = ch->seq;
        store_emit_change(job, ch, auth, &tail);
    }
    json_decref(auth);
    if (rc != SQLITE_DONE) {
        sq_err(&job->err, db, rc, "changes");
    } else {
        /* Fewer than asked: everything up to the snapshot's end is covered. */
        job->seq = n < job->limit ? last : covered;
        if (job->seq < job->since)
            job->seq = job->since;
    }
    sqlite3_finalize(s);
}

/* Every document matching the query, in one read transaction with the seq
 * it reflects, cut into chunks of about chunk_bytes. */
static void read_snapshot(rjob *job, sqlite3 *db)
{
    job->seq = sq_query_i64(db, "SELECT max(seq) FROM changes", 0);
    job->query.limit = 0;
    store_snapshot_begin(job);
    rule_t *post = NULL;
    json_t *auth = NULL;
    if (read_scope(job, &post, &auth))
        return;
    sqlq q;
    sqlq_build_list(&q, &job->query, job->col);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, q.sql.p, -1, &s, NULL) != SQLITE_OK) {
        if (!no_table(db))
            sq_err(&job->err, db, sqlite3_errcode(db), "snapshot");
        sqlq_free(&q);
        rule_free(post);
        json_decref(auth);
        return;
    }
    sqlq_bind(s, &q);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (row_visible(post, auth, s))
            store_snapshot_add(job, (const char *)sqlite3_column_text(s, 0),
                               (size_t)sqlite3_column_bytes(s, 0));
    }
    if (rc != SQLITE_DONE)
        sq_err(&job->err, db, rc, "snapshot");
    sqlite3_finalize(s);
    sqlq_free(&q);
    rule_free(post);
    json_decref(auth);
}

/* Activity entries, with their hash, as JSON objects joined by commas. */
static void read_activity(rjob *job, sqlite3 *db)
{
    if (!actor_is_admin(&job->actor)) {
        err_set(&job->err, E_FORBIDDEN, "the activity log is for admins");
        return;
    }
    const activity_query *q = &job->aq;
    buf_t sql = {0};
    buf_puts(&sql, "SELECT seq, entry, hash FROM activity WHERE 1");
    if (q->since_ms)
        buf_puts(&sql, " AND at >= ?1");
    if (q->until_ms)
        buf_puts(&sql, " AND at < ?2");
    if (q->actor)
        buf_puts(&sql, " AND account = ?3");
    if (q->action)
        buf_puts(&sql, " AND action = ?4");
    if (q->ascending)
        buf_puts(&sql, " AND seq > ?5 ORDER BY seq ASC");
    else if (q->before_seq)
        buf_puts(&sql, " AND seq < ?5 ORDER BY seq DESC");
    else
        buf_puts(&sql, " ORDER BY seq DESC");
    buf_printf(&sql, " LIMIT %d", q->limit > 0 ? q->limit : 100);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql.p, -1, &s, NULL) != SQLITE_OK) {
        sq_err(&job->err, db, sqlite3_errcode(db), "activity");
        buf_free(&sql);
        return;
    }
    buf_free(&sql);
    sqlite3_bind_int64(s, 1, q->since_ms);
    sqlite3_bind_int64(s, 2, q->until_ms);
    if (q->actor)
        sqlite3_bind_text(s, 3, q->actor, -1, SQLITE_STATIC);
    if (q->action)
        sqlite3_bind_text(s, 4, q->action, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, q->ascending ? q->after_seq : q->before_seq);
    int rc;
    job->seq = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_emit_entry(job, (const char *)sqlite3_column_text(s, 1),
                         (size_t)sqlite3_column_bytes(s, 1),
                         (const char *)sqlite3_column_text(s, 2),
                         (size_t)sqlite3_column_bytes(s, 2));
        job->seq = sqlite3_column_int64(s, 0);
    }
    if (rc != SQLITE_DONE)
        sq_err(&job->err, db, rc, "activity");
    sqlite3_finalize(s);
    /* With no activity yet, a subscriber starts after everything. */
    if (!job->count && !q->ascending)
        job->seq = sq_query_i64(db, "SELECT max(seq) FROM activity", 0);
    /* Where a live subscriber picks up (same read transaction). */
    job->top_seq = sq_query_i64(db, "SELECT max(seq) FROM activity", 0);
}

static void read_session(rjob *job, sqlite3 *db)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, "SELECT session, account, expires_at FROM sessions"
                               " WHERE token_hash = ?1", -1, &s, NULL) != SQLITE_OK) {
        sq_err(&job->err, db, sqlite3_errcode(db), "session");
        return;
    }
    sqlite3_bind_text(s, 1, job->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        job->found = true;
        json_t *o = json_pack("{sssssI}", "session", sqlite3_column_text(s, 0), "account",
                              sqlite3_column_text(s, 1), "expires_at",
                              (json_int_t)sqlite3_column_int64(s, 2));
        char *t = json_dumps(o, JSON_COMPACT);
        buf_puts(&job->out, t);
        free(t);
        json_decref(o);
    } else if (rc != SQLITE_DONE) {
        sq_err(&job->err, db, rc, "session");
    }
    sqlite3_finalize(s);
}

/* Each kind of read, in rjob_kind's order. */
static void (*const readers[])(rjob *, sqlite3 *) = {
    [R_GET] = read_get,
    [R_LIST] = read_list,
    [R_CHANGES] = read_changes,
    [R_SNAPSHOT] = read_snapshot,
    [R_ACTIVITY] = read_activity,
    [R_SESSION] = read_session,
};

void sqlite_read(store_t *store, rjob *job)
{
    sqstore *st = store->be_state;
    reader *r;
    sqlite3 *db = reader_take(st, &r);
    /* One read transaction: every statement below sees one snapshot. */
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    if ((size_t)job->kind < sizeof readers / sizeof *readers && readers[job->kind])
        readers[job->kind](job, db);
    else
        err_set(&job->err, E_INTERNAL, "unknown read");
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    reader_give(st, r);
}

/* ------------------------------------------------------------------ accounts */

int sqlite_load_auth(store_t *store, const store_auth_cb *cb, err_t *err)
{
    sqstore *st = store->be_state;
    /* At start, before the writer has work: the writer's connection is
     * idle, and the table of accounts may not exist yet. */
    sqlite3 *db = st->all_readers ? st->all_readers->db : st->wdb;
    sqlite3_stmt *s = NULL;
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    if (sqlite3_prepare_v2(db, "SELECT body FROM \"c__accounts\"", -1, &s, NULL) == SQLITE_OK) {
        while (sqlite3_step(s) == SQLITE_ROW)
            cb->account(cb->ctx, (const char *)sqlite3_column_text(s, 0),
                        (size_t)sqlite3_column_bytes(s, 0));
    }
    sqlite3_finalize(s);
    s = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT account, hash FROM credentials", -1, &s, NULL);
    while (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        cb->credential(cb->ctx, (const char *)sqlite3_column_text(s, 0),
                       (const char *)sqlite3_column_text(s, 1));
    sqlite3_finalize(s);
    s = NULL;
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "SELECT token_hash, session, account, expires_at FROM sessions"
                                    " WHERE expires_at > ?1", -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, time_now_ms());
        while (sqlite3_step(s) == SQLITE_ROW)
            cb->session(cb->ctx, (const char *)sqlite3_column_text(s, 0),
                        (const char *)sqlite3_column_text(s, 1),
                        (const char *)sqlite3_column_text(s, 2), sqlite3_column_int64(s, 3));
    }
    sqlite3_finalize(s);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sq_err(err, db, rc, "loading accounts");
}

