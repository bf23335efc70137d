/*
 * sqlite.c: the SQLite storage backend (see store.h for the contract):
 * errors, opening the database and its connections, closing, and the
 * methods through which core's writes (core/txn.h) reach the rows. The
 * other files of the store are listed in sqlite_int.h.
 *
 * Layout of the database (DIR/livedb.db, WAL, synchronous=FULL):
 *   meta(key, value)                     schema version, health probe
 *   changes(seq PK, col, id, op, version, at, doc, prev)   the change feed;
 *                                        prev is the document before the change
 *   idempotency(account, key, at, status, version, body)
 *   indexes(col, field, name)            automatic and declared indexes
 *   credentials, sessions                password hashes, sessions (private)
 *   activity(seq, at, account, action, entry, hash)   the hash-chained log
 *   "c_NAME"(id PK, version, created_at, updated_at, body)  one per collection
 *
 * seq is assigned by the writer from its own counter, one per change, in
 * commit order. A rolled-back savepoint hands its numbers back, so the feed
 * stays gapless. Pruning keeps at least the newest row, so the counter can
 * always be found again at start-up.
 */
#include "sqlite_int.h"

/* ------------------------------------------------------------------ errors */

err_code sq_code_of(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return E_STORAGE_FULL;
    case SQLITE_IOERR:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return E_UNAVAILABLE;
    default:
        return E_INTERNAL;
    }
}

int sq_err(err_t *err, sqlite3 *db, int rc, const char *what)
{
    log_msg(LOG_ERROR, "sqlite %s: %s (%d)", what, db ? sqlite3_errmsg(db) : "", rc);
    if (sq_code_of(rc) == E_STORAGE_FULL)
        return err_set(err, E_STORAGE_FULL, "the disk is full; nothing was written");
    if (sq_code_of(rc) == E_UNAVAILABLE)
        return err_set(err, E_UNAVAILABLE, "the database is unavailable right now (%s: %s)", what,
                       sqlite3_errstr(rc));
    return err_set(err, E_INTERNAL, "database error during %s", what);
}

int sq_exec(sqlite3 *db, const char *sql, err_t *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        log_msg(LOG_ERROR, "sqlite exec %s: %s", sql, msg ? msg : "");
        sqlite3_free(msg);
        if (err)
            sq_err(err, NULL, rc, "exec");
        return -1;
    }
    return 0;
}

sqlite3_stmt *sq_prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        log_msg(LOG_ERROR, "sqlite prepare %s: %s", sql, sqlite3_errmsg(db));
        return NULL;
    }
    return st;
}

/* Runs a prepared statement that returns no rows. */
int sq_step(sqlite3_stmt *stmt)
{
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* ------------------------------------------------------------------ open */

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS changes(seq INTEGER PRIMARY KEY, col TEXT NOT NULL,"
    " id TEXT NOT NULL, op TEXT NOT NULL, version INTEGER NOT NULL, at TEXT NOT NULL, doc TEXT,"
    " prev TEXT);"
    "CREATE TABLE IF NOT EXISTS idempotency(account TEXT NOT NULL, key TEXT NOT NULL,"
    " at INTEGER NOT NULL, status INTEGER NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,"
    " PRIMARY KEY(account, key)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS indexes(col TEXT NOT NULL, field TEXT NOT NULL,"
    " name TEXT NOT NULL, PRIMARY KEY(col, field)) WITHOUT ROWID;"
    /* Private: never in the feed, an export or an answer. */
    "CREATE TABLE IF NOT EXISTS credentials(account TEXT PRIMARY KEY, hash TEXT NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS sessions(token_hash TEXT PRIMARY KEY, session TEXT NOT NULL,"
    " account TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS sessions_account ON sessions(account);"
    /* The activity log: entry is the JSON of the entry, hash chains it to
     * the one before (BLAKE2b-256 of the previous hash and the entry). */
    "CREATE TABLE IF NOT EXISTS activity(seq INTEGER PRIMARY KEY, at INTEGER NOT NULL,"
    " account TEXT NOT NULL, action TEXT NOT NULL, entry TEXT NOT NULL, hash TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS activity_at ON activity(at);"
    "CREATE INDEX IF NOT EXISTS activity_account ON activity(account, seq);"
    "CREATE INDEX IF NOT EXISTS activity_action ON activity(action, seq);"
    "INSERT OR IGNORE INTO meta VALUES('schema_version', 1);";

int sq_open(const char *path, bool readonly, sqlite3 **out, err_t *err)
{
    vfs_register();
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    flags |= SQLITE_OPEN_NOMUTEX; /* each connection is used by one thread at a time */
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        err_set(err, E_UNAVAILABLE, "cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_extended_result_codes(db, 1);
    *out = db;
    return 0;
}

int64_t sq_query_i64(sqlite3 *db, const char *sql, int64_t dflt)
{
    sqlite3_stmt *st = NULL;
    int64_t v = dflt;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* A count with two text parameters. */
int64_t sq_query_i64_text2(sqlite3 *db, const char *sql, const char *a, const char *b)
{
    sqlite3_stmt *st = NULL;
    int64_t v = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}


/* Every page of a livedb database carries a checksum (vfs.h). A new
 * database reserves the room before its first page; one made before
 * checksums existed is rebuilt once, by VACUUM, with the room. */
static int checksum_pages(sqlite3 *db, const char *path, err_t *err)
{
    if (vfs_has_checksums(db))
        return 0;
    int64_t pages = sq_query_i64(db, "PRAGMA page_count", 0);
    if (vfs_reserve_pages(db) != SQLITE_OK)
        return err_set(err, E_INTERNAL, "cannot reserve room for page checksums in %s", path);
    if (pages == 0)
        return 0;
    uint64_t t0 = time_mono_ns();
    if (sq_exec(db, "VACUUM", err))
        return -1;
    log_msg(LOG_INFO, "%s: rebuilt with page checksums (%lld pages, %.0f ms)", path,
            (long long)pages, (double)(time_mono_ns() - t0) / 1e6);
    return 0;
}

static int sq_open_backend(store_t *store, err_t *err)
{
    const store_opts *opts = &store->opts;
    sqstore *st = xcalloc(1, sizeof *st);
    st->store = store;
    store->be_state = st;
    store->feed_from_jobs = true;
    pthread_mutex_init(&st->rmu, NULL);
    pthread_cond_init(&st->rcv, NULL);
    buf_t b = {0};
    buf_printf(&b, "%s/livedb.db", store->dir);
    st->path = buf_take(&b, NULL);

    /* Under the lock: check the database, recover it from a backup if it
     * is damaged (or refuse to start). */
    recovery rec_local, *rec = opts->recovered ? opts->recovered : &rec_local;
    if (backup_recover(store->dir, opts->auto_recover, rec, err))
        return -1;

    if (sq_open(st->path, false, &st->wdb, err) || checksum_pages(st->wdb, st->path, err))
        return -1;
    if (sq_exec(st->wdb, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                      "PRAGMA foreign_keys=OFF; PRAGMA mmap_size=1073741824;"
                      /* Checkpoint every 4 MiB of WAL (SQLite's default).
                       * The checkpoint runs inside the commit that passes
                       * the mark, so its length is the p99 of writes: at
                       * 32 MiB it was 35-46 ms, at 4 MiB 11-18 ms with the
                       * same creates/s; at 2 MiB creates were slower
                       * (docs/BENCHMARKS.md, bench/ab-creates). */
                      "PRAGMA wal_autocheckpoint=1024; PRAGMA journal_size_limit=67108864;"
                      /* Each job of a group runs in its own SAVEPOINT, whose
                       * sub-journal keeps the pages it changes: in memory,
                       * not in a temporary file past 64 KiB (a server
                       * function's writes passed it, and its pwrite()s were
                       * a third of the writer's time). */
                      "PRAGMA temp_store=MEMORY;",
             err) ||
        sq_exec(st->wdb, schema, err))
        return -1;
    /* Databases made before the feed kept the previous version. */
    if (sq_query_i64(st->wdb, "SELECT count(*) FROM pragma_table_info('changes') WHERE name='prev'",
                  1) == 0 &&
        sq_exec(st->wdb, "ALTER TABLE changes ADD COLUMN prev TEXT", err))
        return -1;
    st->ins_change = sq_prepare(st->wdb, "INSERT INTO changes(seq,col,id,op,version,at,doc,prev)"
                                      " VALUES(?1,?2,?3,?4,?5,?6,?7,?8)");
    st->idem_get = sq_prepare(st->wdb, "SELECT status, version, body FROM idempotency"
                                    " WHERE account=?1 AND key=?2 AND at>?3");
    st->idem_put = sq_prepare(st->wdb, "INSERT OR REPLACE INTO idempotency(account,key,at,status,"
                                    "version,body) VALUES(?1,?2,?3,?4,?5,?6)");
    st->probe = sq_prepare(st->wdb, "INSERT OR REPLACE INTO meta VALUES('health_probe', ?1)");
    st->ins_activity = sq_prepare(st->wdb, "INSERT INTO activity(seq,at,account,action,entry,hash)"
                                        " VALUES(?1,?2,?3,?4,?5,?6)");
    st->cred_put = sq_prepare(st->wdb, "INSERT OR REPLACE INTO credentials VALUES(?1,?2)");
    st->sess_put = sq_prepare(st->wdb, "INSERT OR REPLACE INTO sessions VALUES(?1,?2,?3,?4,?5)");
    st->sess_del = sq_prepare(st->wdb, "DELETE FROM sessions WHERE token_hash=?1");
    st->sess_del_account = sq_prepare(st->wdb, "DELETE FROM sessions WHERE account=?1");
    st->begin = sq_prepare(st->wdb, "BEGIN IMMEDIATE");
    st->commit = sq_prepare(st->wdb, "COMMIT");
    st->rollback = sq_prepare(st->wdb, "ROLLBACK");
    st->savepoint = sq_prepare(st->wdb, "SAVEPOINT job");
    st->release = sq_prepare(st->wdb, "RELEASE job");
    st->rollback_to = sq_prepare(st->wdb, "ROLLBACK TO job");
    if (!st->ins_change || !st->idem_get || !st->idem_put || !st->probe || !st->begin ||
        !st->ins_activity || !st->cred_put || !st->sess_put || !st->sess_del ||
        !st->sess_del_account ||
        !st->commit || !st->rollback || !st->savepoint || !st->release || !st->rollback_to) {
        err_set(err, E_INTERNAL, "cannot prepare statements");
        return -1;
    }
    int64_t last = sq_query_i64(st->wdb, "SELECT max(seq) FROM changes", 0);
    int64_t first = sq_query_i64(st->wdb, "SELECT min(seq) FROM changes", last + 1);
    /* After a recovery or a restore the feed goes on from a floor past
     * every seq a client may have seen (backup.c), so that resuming from
     * before it is resync_required, never a silent skip. */
    int64_t floor = sq_query_i64(st->wdb, "SELECT value FROM meta WHERE key='feed_floor'", 0);
    if (floor > last + 1) {
        last = floor - 1;
        first = floor;
    }
    atomic_store(&store->committed_seq, last);
    int64_t next_aseq = sq_query_i64(st->wdb, "SELECT max(seq) FROM activity", 0) + 1;
    unsigned char last_hash[32] = {0};
    sqlite3_stmt *lh = sq_prepare(st->wdb, "SELECT hash FROM activity ORDER BY seq DESC LIMIT 1");
    if (lh && sqlite3_step(lh) == SQLITE_ROW && sqlite3_column_bytes(lh, 0) == 64)
        sodium_hex2bin(last_hash, sizeof last_hash, (const char *)sqlite3_column_text(lh, 0), 64,
                       NULL, NULL, NULL);
    sqlite3_finalize(lh);
    txn_init(&store->txn, &sqlite_txn_methods, st, last + 1, next_aseq, last_hash);
    atomic_store(&store->first_seq, first);

    /* Known indexes, so that store_want_index asks only once. */
    sqlite3_stmt *ix = NULL;
    sqlite3_prepare_v2(st->wdb, "SELECT col, field FROM indexes", -1, &ix, NULL);
    while (ix && sqlite3_step(ix) == SQLITE_ROW) {
        store_index_known(store, (const char *)sqlite3_column_text(ix, 0),
                          (const char *)sqlite3_column_text(ix, 1));
    }
    sqlite3_finalize(ix);

    for (int i = 0; i < opts->readers; i++) {
        reader *r = xcalloc(1, sizeof *r);
        if (sq_open(st->path, true, &r->db, err)) {
            free(r);
            return -1;
        }
        sq_exec(r->db, "PRAGMA query_only=1; PRAGMA mmap_size=1073741824;", NULL);
        r->next = st->all_readers;
        st->all_readers = r;
    }
    for (reader *r = st->all_readers; r; r = r->next) {
        /* A second list, so that all_readers stays whole for closing. */
        reader *f = xcalloc(1, sizeof *f);
        f->db = r->db;
        f->next = st->free_readers;
        st->free_readers = f;
    }

    return 0;
}

static void free_cols(sqstore *st)
{
    for (int i = 0; i < COLS_BUCKETS; i++) {
        colstmts *c = st->cols[i];
        while (c) {
            colstmts *next = c->next;
            sqlite3_finalize(c->sel);
            sqlite3_finalize(c->ins);
            sqlite3_finalize(c->upd);
            sqlite3_finalize(c->del);
            free(c);
            c = next;
        }
        st->cols[i] = NULL;
    }
}

static void sq_close(store_t *store)
{
    sqstore *st = store->be_state;
    if (!st)
        return;
    free_cols(st);
    sqlite3_finalize(st->ins_change);
    sqlite3_finalize(st->idem_get);
    sqlite3_finalize(st->idem_put);
    sqlite3_finalize(st->probe);
    sqlite3_finalize(st->ins_activity);
    sqlite3_finalize(st->cred_put);
    sqlite3_finalize(st->sess_put);
    sqlite3_finalize(st->sess_del);
    sqlite3_finalize(st->sess_del_account);
    sqlite3_finalize(st->begin);
    sqlite3_finalize(st->commit);
    sqlite3_finalize(st->rollback);
    sqlite3_finalize(st->savepoint);
    sqlite3_finalize(st->release);
    sqlite3_finalize(st->rollback_to);
    while (st->free_readers) {
        reader *r = st->free_readers;
        st->free_readers = r->next;
        free(r);
    }
    /* The readers first: only the last connection to close checkpoints
     * the WAL into the database and removes it, and a read-only one
     * cannot. */
    while (st->all_readers) {
        reader *r = st->all_readers;
        st->all_readers = r->next;
        sqlite3_close(r->db);
        free(r);
    }
    if (st->wdb) {
        /* The last one: a clean close checkpoints and removes the WAL. */
        int rc = sqlite3_close(st->wdb);
        if (rc != SQLITE_OK)
            log_msg(LOG_WARN, "closing the database: %s (the WAL stays; the next start replays it)",
                    sqlite3_errstr(rc));
    }
    pthread_mutex_destroy(&st->rmu);
    pthread_cond_destroy(&st->rcv);
    free(st->path);
    free(st);
    store->be_state = NULL;
}

static int sq_prune(store_t *store, int64_t first, int64_t idem_before)
{
    sqstore *st = store->be_state;
    char sql[128];
    snprintf(sql, sizeof sql, "DELETE FROM changes WHERE seq < %lld", (long long)first);
    int rc = sq_exec(st->wdb, sql, NULL);
    if (idem_before > 0) {
        snprintf(sql, sizeof sql, "DELETE FROM idempotency WHERE at < %lld",
                 (long long)idem_before);
        sq_exec(st->wdb, sql, NULL);
    }
    return rc;
}

const store_backend sqlite_backend = {
    .name = "sqlite",
    .open = sq_open_backend,
    .read = sqlite_read,
    .load_auth = sqlite_load_auth,
    .prune = sq_prune,
    .close = sq_close,
    .verify = sqlite_verify,
    .activity_each = sqlite_activity_each,
    .export_cols = sqlite_export,
};


/* ------------------------------------------------------------------ core's writes (core/txn.h) */

static unsigned hash_str(const char *s)
{
    unsigned h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static void declared_indexes(sqstore *st, colstmts *c);

/* A collection's writer statements, its table made on first use (DDL: the
 * writer makes them before the group's transaction, txn_prepare). */
static colstmts *writer_col(sqstore *st, const char *col)
{
    unsigned h = hash_str(col) % COLS_BUCKETS;
    for (colstmts *c = st->cols[h]; c; c = c->next)
        if (strcmp(c->name, col) == 0)
            return c;
    buf_t sql = {0};
    buf_printf(&sql, "CREATE TABLE IF NOT EXISTS \"c_%s\"(id TEXT PRIMARY KEY,"
                     " version INTEGER NOT NULL, created_at TEXT NOT NULL,"
                     " updated_at TEXT NOT NULL, body TEXT NOT NULL) WITHOUT ROWID",
               col);
    if (sq_exec(st->wdb, sql.p, NULL)) {
        buf_free(&sql);
        return NULL;
    }
    colstmts *c = xcalloc(1, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", col);
    sql.len = 0;
    buf_printf(&sql, "SELECT version, created_at, body FROM \"c_%s\" WHERE id=?1", col);
    c->sel = sq_prepare(st->wdb, sql.p);
    sql.len = 0;
    buf_printf(&sql, "INSERT INTO \"c_%s\"(id,version,created_at,updated_at,body)"
                     " VALUES(?1,?2,?3,?4,?5)", col);
    c->ins = sq_prepare(st->wdb, sql.p);
    sql.len = 0;
    buf_printf(&sql, "UPDATE \"c_%s\" SET version=?2, updated_at=?4, body=?5 WHERE id=?1", col);
    c->upd = sq_prepare(st->wdb, sql.p);
    sql.len = 0;
    buf_printf(&sql, "DELETE FROM \"c_%s\" WHERE id=?1", col);
    c->del = sq_prepare(st->wdb, sql.p);
    buf_free(&sql);
    if (!c->sel || !c->ins || !c->upd || !c->del) {
        sqlite3_finalize(c->sel);
        sqlite3_finalize(c->ins);
        sqlite3_finalize(c->upd);
        sqlite3_finalize(c->del);
        free(c);
        return NULL;
    }
    char q[200];
    snprintf(q, sizeof q, "SELECT count(*) FROM indexes WHERE col='%s'", col);
    c->nindexes = (int)sq_query_i64(st->wdb, q, 0);
    c->next = st->cols[h];
    st->cols[h] = c;
    declared_indexes(st, c);
    return c;
}

/* An expression index on col.field (unique: a unique one, named after
 * the field's place in the schema so that a violation can name it). DDL
 * outside the group transaction. */
static int create_index(sqstore *st, colstmts *c, const char *field, int unique_slot,
                        err_t *err)
{
    buf_t sql = {0};
    int rc;
    if (unique_slot >= 0) {
        buf_printf(&sql, "CREATE UNIQUE INDEX IF NOT EXISTS \"ux_%s_%d\" ON \"c_%s\"(", c->name,
                   unique_slot, c->name);
        sqlq_field_expr(&sql, field);
        buf_puts(&sql, ")");
        rc = sq_exec(st->wdb, sql.p, err);
        buf_free(&sql);
        return rc;
    }
    if (sq_query_i64_text2(st->wdb, "SELECT count(*) FROM indexes WHERE col=?1 AND field=?2", c->name,
                        field) > 0) {
        buf_free(&sql);
        return 0;
    }
    buf_printf(&sql, "SAVEPOINT ix; CREATE INDEX IF NOT EXISTS \"ix_%s_%d\" ON \"c_%s\"(", c->name,
               c->nindexes + 1, c->name);
    sqlq_field_expr(&sql, field);
    buf_printf(&sql, "); INSERT OR IGNORE INTO indexes VALUES('%s','%s','ix_%s_%d'); RELEASE ix;",
               c->name, field, c->name, c->nindexes + 1);
    uint64_t t0 = time_mono_ns();
    rc = sq_exec(st->wdb, sql.p, err);
    if (rc == 0) {
        c->nindexes++;
        log_msg(LOG_INFO, "created index on %s.%s in %.1f ms", c->name, field,
                (double)(time_mono_ns() - t0) / 1e6);
    } else {
        sq_exec(st->wdb, "ROLLBACK TO ix; RELEASE ix;", NULL);
    }
    buf_free(&sql);
    return rc;
}

/* What an app declares for a collection: its unique fields and indexes. */
static void declared_indexes(sqstore *st, colstmts *c)
{
    const col_spec *spec = apps_col(c->name);
    if (!spec)
        return;
    for (int i = 0; i < spec->nfields; i++) {
        err_t e = {0};
        if (spec->fields[i].unique && create_index(st, c, spec->fields[i].name, i, &e))
            log_msg(LOG_WARN, "%s.%s is declared unique but is not: %s; not enforced",
                    c->name, spec->fields[i].name, e.msg);
        err_clear(&e);
    }
    for (int i = 0; i < spec->nindexes; i++) {
        err_t e = {0};
        create_index(st, c, spec->indexes[i], -1, &e);
        err_clear(&e);
    }
}

static colstmts *col_or_err(sqstore *st, const char *col, err_t *err)
{
    colstmts *c = writer_col(st, col);
    if (!c)
        err_set(err, E_INTERNAL, "cannot open collection %s", col);
    return c;
}

/* Runs a bound statement that returns no rows, and clears it. */
static int step_done(sqstore *st, sqlite3_stmt *q, err_t *err, const char *what)
{
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc == SQLITE_DONE ? 0 : sq_err(err, st->wdb, rc, what);
}

static int step_ok(sqstore *st, sqlite3_stmt *q, err_t *err, const char *what)
{
    int rc = sq_step(q);
    return rc == SQLITE_OK ? 0 : sq_err(err, st->wdb, rc, what);
}

static int m_begin(void *s, err_t *err) { return step_ok(s, ((sqstore *)s)->begin, err, "begin"); }
static int m_commit(void *s, err_t *err) { return step_ok(s, ((sqstore *)s)->commit, err, "commit"); }
static void m_rollback(void *s) { sq_step(((sqstore *)s)->rollback); }
static void m_release(void *s) { sq_step(((sqstore *)s)->release); }
static bool m_in_tx(void *s) { return !sqlite3_get_autocommit(((sqstore *)s)->wdb); }

static int m_savepoint(void *s, err_t *err)
{
    return step_ok(s, ((sqstore *)s)->savepoint, err, "savepoint");
}

static void m_rollback_to(void *s)
{
    sqstore *st = s;
    sq_step(st->rollback_to);
    sq_step(st->release);
}

static int m_ensure_col(void *s, const char *col, err_t *err)
{
    return writer_col(s, col) ? 0 : err_set(err, E_INTERNAL, "cannot create collection table");
}

static int m_auto_index(void *s, const char *col, const char *field, err_t *err)
{
    sqstore *st = s;
    colstmts *c = col_or_err(st, col, err);
    if (!c)
        return -1;
    if (c->nindexes >= st->store->opts.auto_index_max)
        return 0;
    return create_index(st, c, field, -1, err);
}

static int m_get(void *s, const char *col, const char *id, txn_row *row, err_t *err)
{
    sqstore *st = s;
    colstmts *c = col_or_err(st, col, err);
    if (!c)
        return -1;
    sqlite3_stmt *q = c->sel;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    int found = 0;
    if (rc == SQLITE_ROW) {
        found = TXN_FOUND;
        row->version = sqlite3_column_int64(q, 0);
        row->created = xstrdup((const char *)sqlite3_column_text(q, 1));
        buf_put(&row->body, sqlite3_column_text(q, 2), (size_t)sqlite3_column_bytes(q, 2));
    } else if (rc != SQLITE_DONE) {
        found = sq_err(err, st->wdb, rc, "read");
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return found;
}

/* "UNIQUE constraint failed: index 'ux_COL_N'": field N of COL's schema. */
static int unique_slot(sqstore *st)
{
    const char *msg = sqlite3_errmsg(st->wdb);
    const char *ix = strstr(msg, "'ux_");
    const char *us = ix ? strrchr(ix, '_') : NULL;
    return us && us > ix + 3 ? atoi(us + 1) : -1;
}

static int m_put(void *s, const char *col, const char *id, int64_t version, const char *created,
                 const char *now, const char *body, size_t len, int *slot, err_t *err)
{
    sqstore *st = s;
    colstmts *c = col_or_err(st, col, err);
    if (!c)
        return -1;
    sqlite3_stmt *q = created ? c->ins : c->upd;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, version);
    if (created)
        sqlite3_bind_text(q, 3, created, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 5, body, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        return TXN_EXISTS;
    if (rc == SQLITE_CONSTRAINT_UNIQUE) {
        *slot = unique_slot(st);
        return TXN_UNIQUE;
    }
    return rc == SQLITE_DONE ? 0 : sq_err(err, st->wdb, rc, "write");
}

static int m_del(void *s, const char *col, const char *id, err_t *err)
{
    sqstore *st = s;
    colstmts *c = col_or_err(st, col, err);
    if (!c)
        return -1;
    sqlite3_bind_text(c->del, 1, id, -1, SQLITE_STATIC);
    return step_done(st, c->del, err, "delete");
}

static json_t *m_find(void *s, const char *col, const query_t *q)
{
    sqstore *st = s;
    json_t *out = json_array();
    if (!writer_col(st, col))
        return out;
    sqlq sq;
    sqlq_build_list(&sq, q, col);
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(st->wdb, sq.sql.p, -1, &stmt, NULL) == SQLITE_OK) {
        sqlq_bind(stmt, &sq);
        int n = 0;
        while (sqlite3_step(stmt) == SQLITE_ROW && (q->limit <= 0 || n++ < q->limit))
            json_array_append_new(out, json_loadb((const char *)sqlite3_column_text(stmt, 0),
                                                  (size_t)sqlite3_column_bytes(stmt, 0), 0, NULL));
    }
    sqlite3_finalize(stmt);
    sqlq_free(&sq);
    return out;
}

static void bind_text_or_null(sqlite3_stmt *q, int i, const char *p, size_t len)
{
    if (p)
        sqlite3_bind_text(q, i, p, (int)len, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, i);
}

static int m_append_change(void *s, const change_t *ch, err_t *err)
{
    sqstore *st = s;
    sqlite3_stmt *q = st->ins_change;
    sqlite3_bind_int64(q, 1, ch->seq);
    sqlite3_bind_text(q, 2, ch->col, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, ch->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, change_op_name(ch->op), -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 5, ch->version);
    sqlite3_bind_text(q, 6, ch->at, -1, SQLITE_STATIC);
    bind_text_or_null(q, 7, ch->doc, ch->doc_len);
    bind_text_or_null(q, 8, ch->prev, ch->prev_len);
    return step_done(st, q, err, "change insert");
}

static int m_append_activity(void *s, int64_t seq, int64_t at_ms, const char *account,
                             const char *action, const char *entry, size_t len,
                             const char hash_hex[64], err_t *err)
{
    sqstore *st = s;
    sqlite3_stmt *q = st->ins_activity;
    sqlite3_bind_int64(q, 1, seq);
    sqlite3_bind_int64(q, 2, at_ms);
    sqlite3_bind_text(q, 3, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, action, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 5, entry, (int)len, SQLITE_STATIC);
    sqlite3_bind_text(q, 6, hash_hex, 64, SQLITE_STATIC);
    return step_done(st, q, err, "activity");
}

static int m_idem_get(void *s, const char *account, const char *key, int64_t since_ms,
                      int *status, int64_t *version, buf_t *body)
{
    sqlite3_stmt *q = ((sqstore *)s)->idem_get;
    sqlite3_bind_text(q, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, since_ms);
    int found = 0;
    if (sqlite3_step(q) == SQLITE_ROW) {
        found = TXN_FOUND;
        *status = sqlite3_column_int(q, 0);
        *version = sqlite3_column_int64(q, 1);
        buf_put(body, sqlite3_column_text(q, 2), (size_t)sqlite3_column_bytes(q, 2));
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return found;
}

static int m_idem_put(void *s, const char *account, const char *key, int64_t at_ms, int status,
                      int64_t version, const char *body, size_t len, err_t *err)
{
    sqstore *st = s;
    sqlite3_stmt *q = st->idem_put;
    sqlite3_bind_text(q, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, at_ms);
    sqlite3_bind_int(q, 4, status);
    sqlite3_bind_int64(q, 5, version);
    sqlite3_bind_text(q, 6, body, (int)len, SQLITE_STATIC);
    return step_done(st, q, err, "idempotency");
}

static int m_cred_put(void *s, const char *account, const char *hash, err_t *err)
{
    sqstore *st = s;
    sqlite3_bind_text(st->cred_put, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st->cred_put, 2, hash, -1, SQLITE_STATIC);
    return step_done(st, st->cred_put, err, "account");
}

static int m_session_put(void *s, const char *token_hash, const char *session,
                         const char *account, int64_t created_ms, int64_t expires_ms, err_t *err)
{
    sqstore *st = s;
    sqlite3_stmt *q = st->sess_put;
    sqlite3_bind_text(q, 1, token_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, session, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, account, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 4, created_ms);
    sqlite3_bind_int64(q, 5, expires_ms);
    return step_done(st, q, err, "account");
}

static int m_session_del(void *s, const char *token_hash, err_t *err)
{
    sqstore *st = s;
    sqlite3_bind_text(st->sess_del, 1, token_hash, -1, SQLITE_STATIC);
    return step_done(st, st->sess_del, err, "account");
}

static int m_sessions_del(void *s, const char *account, err_t *err)
{
    sqstore *st = s;
    sqlite3_bind_text(st->sess_del_account, 1, account, -1, SQLITE_STATIC);
    return step_done(st, st->sess_del_account, err, "account");
}

static int m_probe(void *s, int64_t now_ms, err_t *err)
{
    sqstore *st = s;
    sqlite3_bind_int64(st->probe, 1, now_ms);
    return step_ok(st, st->probe, err, "health probe");
}

static bool m_write_fault(void *s)
{
    (void)s;
    return vfs_fault(3, 'W'); /* the test seam, vfs.h */
}

const txn_methods sqlite_txn_methods = {TXN_METHODS(m), .write_fault = m_write_fault};
