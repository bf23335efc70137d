/*
 * sqlite.c: the SQLite storage backend (see store.h for the contract).
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
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include <sodium.h>

#include "../core/apps.h"
#include "../core/doc.h"
#include "../ops/log.h"
#include "../ops/metrics.h"
#include "backup.h"
#include "sqlite_query.h"
#include "vfs.h"

#define MAX_GROUP 1024          /* jobs in one transaction */
#define IDEMPOTENCY_MS (24LL * 3600 * 1000)
#define COLS_BUCKETS 256

/* Writer-side statements of one collection. */
typedef struct colstmts {
    char name[65];
    sqlite3_stmt *sel, *ins, *upd, *del;
    int nindexes;
    struct colstmts *next;
} colstmts;

typedef struct reader {
    sqlite3 *db;
    struct reader *next;
} reader;

struct store {
    uv_loop_t *loop;
    char *dir;
    char *path;
    int lock_fd;
    store_opts opts;

    /* Writer thread state: touched by the writer only (after start). */
    sqlite3 *wdb;
    sqlite3_stmt *ins_change, *idem_get, *idem_put, *probe;
    sqlite3_stmt *ins_activity, *cred_put, *sess_put, *sess_del, *sess_del_account;
    int64_t next_aseq;            /* the next activity entry's seq */
    unsigned char last_hash[32];  /* the newest entry's hash (zeros: none) */
    /* Transaction control, prepared once: compiling "SAVEPOINT job" for
     * every request cost more than the request's inserts. */
    sqlite3_stmt *begin, *commit, *rollback, *savepoint, *release, *rollback_to;
    bool tx_broken; /* a write failed half-way: the whole group must go */
    err_code broken_code;
    /* Server functions run without a savepoint of their own (its
     * sub-journal copies every page a call touches: 7-15% of the writer's
     * time under place_order). One that fails after a write cannot be
     * undone alone: the group is rolled back and run again, carefully,
     * with a savepoint per call. */
    bool careful; /* this run of the group gives each call a savepoint */
    bool rerun;   /* a call failed after a write: run the group carefully */
    colstmts *cols[COLS_BUCKETS];
    int64_t next_seq;
    int64_t last_prune_check;

    /* Queue into the writer. */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wjob *q_head, *q_tail;
    int q_len;
    bool stopping;  /* no more jobs accepted */
    bool exit_writer;

    /* Done queue back to the loop. */
    uv_async_t async;
    wjob *d_head, *d_tail;
    bool draining;
    void (*drained)(void *);
    void *drained_ctx;
    bool writer_exited;

    store_commit_cb commit_cb;
    void *commit_ctx;

    /* Readers. */
    pthread_mutex_t rmu;
    pthread_cond_t rcv;
    reader *free_readers;
    reader *all_readers;

    /* Indexes known or asked for: "col\tfield" strings (loop thread). */
    char **index_keys;
    size_t n_index_keys;

    _Atomic int64_t committed_seq;
    _Atomic int64_t first_seq;
    _Atomic uint64_t heartbeat;
    atomic_bool busy;
    /* An fsync failed on the writer: nothing is written any more (after a
     * failed fsync the kernel may have dropped the pages it could not
     * write and report the next fsync as fine: PostgreSQL's 2018 lesson).
     * Reads go on; a restart recovers from what is really on disk. */
    atomic_bool failed;
};

/* ------------------------------------------------------------------ errors */

static err_code code_of(int rc)
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

static int db_err(err_t *err, sqlite3 *db, int rc, const char *what)
{
    log_msg(LOG_ERROR, "sqlite %s: %s (%d)", what, db ? sqlite3_errmsg(db) : "", rc);
    if (code_of(rc) == E_STORAGE_FULL)
        return err_set(err, E_STORAGE_FULL, "the disk is full; nothing was written");
    if (code_of(rc) == E_UNAVAILABLE)
        return err_set(err, E_UNAVAILABLE, "the database is unavailable right now (%s: %s)", what,
                       sqlite3_errstr(rc));
    return err_set(err, E_INTERNAL, "database error during %s", what);
}

static int exec(sqlite3 *db, const char *sql, err_t *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        log_msg(LOG_ERROR, "sqlite exec %s: %s", sql, msg ? msg : "");
        sqlite3_free(msg);
        if (err)
            db_err(err, NULL, rc, "exec");
        return -1;
    }
    return 0;
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        log_msg(LOG_ERROR, "sqlite prepare %s: %s", sql, sqlite3_errmsg(db));
        return NULL;
    }
    return st;
}

/* Runs a prepared statement that returns no rows. */
static int step(sqlite3_stmt *stmt)
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

static int open_conn(const char *path, bool readonly, sqlite3 **out, err_t *err)
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

static int64_t query_i64(sqlite3 *db, const char *sql, int64_t dflt)
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
static int64_t query_i64_text2(sqlite3 *db, const char *sql, const char *a, const char *b)
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

static void *writer_main(void *arg);
static void on_done_async(uv_async_t *h);

/* Every page of a livedb database carries a checksum (vfs.h). A new
 * database reserves the room before its first page; one made before
 * checksums existed is rebuilt once, by VACUUM, with the room. */
static int checksum_pages(sqlite3 *db, const char *path, err_t *err)
{
    if (vfs_has_checksums(db))
        return 0;
    int64_t pages = query_i64(db, "PRAGMA page_count", 0);
    if (vfs_reserve_pages(db) != SQLITE_OK)
        return err_set(err, E_INTERNAL, "cannot reserve room for page checksums in %s", path);
    if (pages == 0)
        return 0;
    uint64_t t0 = time_mono_ns();
    if (exec(db, "VACUUM", err))
        return -1;
    log_msg(LOG_INFO, "%s: rebuilt with page checksums (%lld pages, %.0f ms)", path,
            (long long)pages, (double)(time_mono_ns() - t0) / 1e6);
    return 0;
}

static int mkdir_p(const char *dir)
{
    char *tmp = xstrdup(dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
            free(tmp);
            return -1;
        }
        *p = '/';
    }
    int rc = mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
    free(tmp);
    return rc;
}

int store_open(store_t **out, uv_loop_t *loop, const store_opts *opts, err_t *err)
{
    store_t *st = xcalloc(1, sizeof *st);
    st->loop = loop;
    st->opts = *opts;
    if (st->opts.retain_changes < 1)
        st->opts.retain_changes = 1;
    if (st->opts.readers < 1)
        st->opts.readers = 1;
    st->dir = xstrdup(opts->dir);
    st->lock_fd = -1;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    pthread_mutex_init(&st->rmu, NULL);
    pthread_cond_init(&st->rcv, NULL);

    if (mkdir_p(st->dir) != 0) {
        err_set(err, E_UNAVAILABLE, "cannot create data directory %s: %s", st->dir,
                strerror(errno));
        goto fail;
    }
    buf_t b = {0};
    buf_printf(&b, "%s/livedb.lock", st->dir);
    st->lock_fd = open(b.p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    buf_free(&b);
    if (st->lock_fd < 0 || flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        err_set(err, E_UNAVAILABLE,
                "data directory %s is in use by another livedb process (or not writable)",
                st->dir);
        goto fail;
    }
    buf_printf(&b, "%s/livedb.db", st->dir);
    st->path = buf_take(&b, NULL);

    /* Under the lock: check the database, recover it from a backup if it
     * is damaged (or refuse to start). */
    recovery rec_local, *rec = opts->recovered ? opts->recovered : &rec_local;
    if (backup_recover(st->dir, opts->auto_recover, rec, err))
        goto fail;

    if (open_conn(st->path, false, &st->wdb, err) || checksum_pages(st->wdb, st->path, err))
        goto fail;
    if (exec(st->wdb, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                      "PRAGMA foreign_keys=OFF; PRAGMA mmap_size=1073741824;"
                      /* Checkpoint every 32 MiB of WAL, not 4: pages written
                       * by many commits (the feed's tail, inner B-tree
                       * pages) are copied to the database once. */
                      "PRAGMA wal_autocheckpoint=8192; PRAGMA journal_size_limit=67108864;"
                      /* Each job of a group runs in its own SAVEPOINT, whose
                       * sub-journal keeps the pages it changes: in memory,
                       * not in a temporary file past 64 KiB (a server
                       * function's writes passed it, and its pwrite()s were
                       * a third of the writer's time). */
                      "PRAGMA temp_store=MEMORY;",
             err) ||
        exec(st->wdb, schema, err))
        goto fail;
    /* Databases made before the feed kept the previous version. */
    if (query_i64(st->wdb, "SELECT count(*) FROM pragma_table_info('changes') WHERE name='prev'",
                  1) == 0 &&
        exec(st->wdb, "ALTER TABLE changes ADD COLUMN prev TEXT", err))
        goto fail;
    st->ins_change = prepare(st->wdb, "INSERT INTO changes(seq,col,id,op,version,at,doc,prev)"
                                      " VALUES(?1,?2,?3,?4,?5,?6,?7,?8)");
    st->idem_get = prepare(st->wdb, "SELECT status, version, body FROM idempotency"
                                    " WHERE account=?1 AND key=?2 AND at>?3");
    st->idem_put = prepare(st->wdb, "INSERT OR REPLACE INTO idempotency(account,key,at,status,"
                                    "version,body) VALUES(?1,?2,?3,?4,?5,?6)");
    st->probe = prepare(st->wdb, "INSERT OR REPLACE INTO meta VALUES('health_probe', ?1)");
    st->ins_activity = prepare(st->wdb, "INSERT INTO activity(seq,at,account,action,entry,hash)"
                                        " VALUES(?1,?2,?3,?4,?5,?6)");
    st->cred_put = prepare(st->wdb, "INSERT OR REPLACE INTO credentials VALUES(?1,?2)");
    st->sess_put = prepare(st->wdb, "INSERT OR REPLACE INTO sessions VALUES(?1,?2,?3,?4,?5)");
    st->sess_del = prepare(st->wdb, "DELETE FROM sessions WHERE token_hash=?1");
    st->sess_del_account = prepare(st->wdb, "DELETE FROM sessions WHERE account=?1");
    st->begin = prepare(st->wdb, "BEGIN IMMEDIATE");
    st->commit = prepare(st->wdb, "COMMIT");
    st->rollback = prepare(st->wdb, "ROLLBACK");
    st->savepoint = prepare(st->wdb, "SAVEPOINT job");
    st->release = prepare(st->wdb, "RELEASE job");
    st->rollback_to = prepare(st->wdb, "ROLLBACK TO job");
    if (!st->ins_change || !st->idem_get || !st->idem_put || !st->probe || !st->begin ||
        !st->ins_activity || !st->cred_put || !st->sess_put || !st->sess_del ||
        !st->sess_del_account ||
        !st->commit || !st->rollback || !st->savepoint || !st->release || !st->rollback_to) {
        err_set(err, E_INTERNAL, "cannot prepare statements");
        goto fail;
    }
    int64_t last = query_i64(st->wdb, "SELECT max(seq) FROM changes", 0);
    int64_t first = query_i64(st->wdb, "SELECT min(seq) FROM changes", last + 1);
    /* After a recovery or a restore the feed goes on from a floor past
     * every seq a client may have seen (backup.c), so that resuming from
     * before it is resync_required, never a silent skip. */
    int64_t floor = query_i64(st->wdb, "SELECT value FROM meta WHERE key='feed_floor'", 0);
    if (floor > last + 1) {
        last = floor - 1;
        first = floor;
    }
    st->next_seq = last + 1;
    atomic_store(&st->committed_seq, last);
    st->next_aseq = query_i64(st->wdb, "SELECT max(seq) FROM activity", 0) + 1;
    sqlite3_stmt *lh = prepare(st->wdb, "SELECT hash FROM activity ORDER BY seq DESC LIMIT 1");
    if (lh && sqlite3_step(lh) == SQLITE_ROW && sqlite3_column_bytes(lh, 0) == 64)
        sodium_hex2bin(st->last_hash, sizeof st->last_hash, (const char *)sqlite3_column_text(lh, 0),
                       64, NULL, NULL, NULL);
    sqlite3_finalize(lh);
    atomic_store(&st->first_seq, first);
    atomic_store(&st->heartbeat, time_mono_ns());

    /* Known indexes, so that store_want_index asks only once. */
    sqlite3_stmt *ix = NULL;
    sqlite3_prepare_v2(st->wdb, "SELECT col, field FROM indexes", -1, &ix, NULL);
    while (ix && sqlite3_step(ix) == SQLITE_ROW) {
        buf_t k = {0};
        buf_printf(&k, "%s\t%s", sqlite3_column_text(ix, 0), sqlite3_column_text(ix, 1));
        st->index_keys = xrealloc(st->index_keys, (st->n_index_keys + 1) * sizeof(char *));
        st->index_keys[st->n_index_keys++] = buf_take(&k, NULL);
    }
    sqlite3_finalize(ix);

    for (int i = 0; i < st->opts.readers; i++) {
        reader *r = xcalloc(1, sizeof *r);
        if (open_conn(st->path, true, &r->db, err)) {
            free(r);
            goto fail;
        }
        exec(r->db, "PRAGMA query_only=1; PRAGMA mmap_size=1073741824;", NULL);
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

    uv_async_init(loop, &st->async, on_done_async);
    st->async.data = st;
    if (pthread_create(&st->thread, NULL, writer_main, st) != 0) {
        err_set(err, E_INTERNAL, "cannot start the writer thread");
        uv_close((uv_handle_t *)&st->async, NULL);
        goto fail;
    }
    *out = st;
    return 0;
fail:
    st->thread = 0;
    store_close(st);
    return -1;
}

void store_set_commit_cb(store_t *st, store_commit_cb cb, void *ctx)
{
    st->commit_cb = cb;
    st->commit_ctx = ctx;
}

static void free_cols(store_t *st)
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

void store_close(store_t *st)
{
    if (!st)
        return;
    if (st->thread) {
        pthread_mutex_lock(&st->mu);
        st->stopping = true;
        st->exit_writer = true;
        pthread_cond_signal(&st->cv);
        pthread_mutex_unlock(&st->mu);
        pthread_join(st->thread, NULL);
    }
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
    for (size_t i = 0; i < st->n_index_keys; i++)
        free(st->index_keys[i]);
    free(st->index_keys);
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->rmu);
    pthread_cond_destroy(&st->rcv);
    free(st->dir);
    free(st->path);
    free(st);
}

/* ------------------------------------------------------------------ jobs */

wjob *wjob_new(wjob_kind kind, int nops)
{
    wjob *job = xcalloc(1, sizeof *job);
    job->kind = kind;
    job->nops = nops;
    job->ops = nops ? xcalloc((size_t)nops, sizeof *job->ops) : NULL;
    for (int i = 0; i < nops; i++)
        job->ops[i].if_version = -1;
    return job;
}

static void activity_free(activity_rec *a)
{
    while (a) {
        activity_rec *next = a->next;
        free(a->json);
        free(a);
        a = next;
    }
}

static void free_changes(change_t *ch)
{
    while (ch) {
        change_t *next = ch->next;
        ch->next = NULL;
        change_unref(ch);
        ch = next;
    }
}

void wjob_free(wjob *job)
{
    if (!job)
        return;
    for (int i = 0; i < job->nops; i++) {
        free(job->ops[i].id);
        json_decref(job->ops[i].doc);
    }
    free(job->ops);
    free(job->idem_account);
    free(job->idem_key);
    free(job->index_col);
    free(job->index_field);
    err_clear(&job->err);
    buf_free(&job->answer);
    free_changes(job->changes);
    activity_free(job->activity);
    json_decref(job->log_data);
    json_decref(job->fn_args);
    err_clear(&job->fn_err);
    free(job);
}

void store_submit(store_t *st, wjob *job)
{
    job->t_queued = time_mono_ns();
    pthread_mutex_lock(&st->mu);
    if (st->stopping) {
        pthread_mutex_unlock(&st->mu);
        err_set(&job->err, E_UNAVAILABLE, "the server is shutting down");
        job->done(job);
        return;
    }
    job->next = NULL;
    if (st->q_tail)
        st->q_tail->next = job;
    else
        st->q_head = job;
    st->q_tail = job;
    st->q_len++;
    metrics_gauge_set(M_WRITER_QUEUE, st->q_len);
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

void store_drain(store_t *st, void (*done)(void *), void *ctx)
{
    pthread_mutex_lock(&st->mu);
    st->stopping = true;
    st->exit_writer = true;
    st->draining = true;
    st->drained = done;
    st->drained_ctx = ctx;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

int store_queue_depth(store_t *st)
{
    pthread_mutex_lock(&st->mu);
    int n = st->q_len;
    pthread_mutex_unlock(&st->mu);
    return n;
}

int64_t store_committed_seq(const store_t *st) { return atomic_load(&st->committed_seq); }
bool store_failed(const store_t *st) { return atomic_load(&st->failed); }
int64_t store_first_seq(const store_t *st) { return atomic_load(&st->first_seq); }
const char *store_dir(const store_t *st) { return st->dir; }

uint64_t store_writer_heartbeat(store_t *st, bool *busy)
{
    *busy = atomic_load(&st->busy) || store_queue_depth(st) > 0;
    return atomic_load(&st->heartbeat);
}

/* ------------------------------------------------------------------ writer: collections */

static unsigned hash_str(const char *s)
{
    unsigned h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

/* The statements of a collection, creating its table when new. Runs
 * outside the group transaction (DDL commits on its own). */
static void declared_indexes(store_t *st, colstmts *c);

static colstmts *writer_col(store_t *st, const char *col)
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
    if (exec(st->wdb, sql.p, NULL)) {
        buf_free(&sql);
        return NULL;
    }
    colstmts *c = xcalloc(1, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", col);
    sql.len = 0;
    buf_printf(&sql, "SELECT version, created_at, body FROM \"c_%s\" WHERE id=?1", col);
    c->sel = prepare(st->wdb, sql.p);
    sql.len = 0;
    buf_printf(&sql, "INSERT INTO \"c_%s\"(id,version,created_at,updated_at,body)"
                     " VALUES(?1,?2,?3,?4,?5)", col);
    c->ins = prepare(st->wdb, sql.p);
    sql.len = 0;
    buf_printf(&sql, "UPDATE \"c_%s\" SET version=?2, updated_at=?4, body=?5 WHERE id=?1", col);
    c->upd = prepare(st->wdb, sql.p);
    sql.len = 0;
    buf_printf(&sql, "DELETE FROM \"c_%s\" WHERE id=?1", col);
    c->del = prepare(st->wdb, sql.p);
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
    c->nindexes = (int)query_i64(st->wdb, q, 0);
    c->next = st->cols[h];
    st->cols[h] = c;
    declared_indexes(st, c);
    return c;
}

/* An expression index on col.field (unique: a unique one, named after
 * the field's place in the schema so that a violation can name it). DDL
 * outside the group transaction. */
static int create_index(store_t *st, colstmts *c, const char *field, int unique_slot,
                        err_t *err)
{
    buf_t sql = {0};
    int rc;
    if (unique_slot >= 0) {
        buf_printf(&sql, "CREATE UNIQUE INDEX IF NOT EXISTS \"ux_%s_%d\" ON \"c_%s\"(", c->name,
                   unique_slot, c->name);
        sqlq_field_expr(&sql, field);
        buf_puts(&sql, ")");
        rc = exec(st->wdb, sql.p, err);
        buf_free(&sql);
        return rc;
    }
    if (query_i64_text2(st->wdb, "SELECT count(*) FROM indexes WHERE col=?1 AND field=?2", c->name,
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
    rc = exec(st->wdb, sql.p, err);
    if (rc == 0) {
        c->nindexes++;
        log_msg(LOG_INFO, "created index on %s.%s in %.1f ms", c->name, field,
                (double)(time_mono_ns() - t0) / 1e6);
    } else {
        exec(st->wdb, "ROLLBACK TO ix; RELEASE ix;", NULL);
    }
    buf_free(&sql);
    return rc;
}

/* What an app declares for a collection: its unique fields and indexes. */
static void declared_indexes(store_t *st, colstmts *c)
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

static void writer_index(store_t *st, wjob *job)
{
    colstmts *c = writer_col(st, job->index_col);
    if (!c) {
        err_set(&job->err, E_INTERNAL, "cannot create collection table");
        return;
    }
    if (c->nindexes >= st->opts.auto_index_max)
        return;
    create_index(st, c, job->index_field, -1, &job->err);
}

/* ------------------------------------------------------------------ writer: ops */

typedef struct wctx {
    store_t *st;
    wjob *job;
    change_t **tail;      /* where the next change of the job goes */
    activity_rec **atail; /* and its next activity entry */
    char now[TIME_RFC3339_LEN + 1];
    int64_t now_ms;
    json_t *auth;         /* the actor as rules see it, made on first use */
    bool trusted;         /* a server function's writes: no collection rules */
    bool want_written;    /* fn_write: run_op also hands back ... */
    json_t *written;      /* ... the document it wrote, as JSON */
    int fn_writes;        /* a function's writes so far */
} wctx;

static const json_t *wauth(wctx *w)
{
    if (!w->auth)
        w->auth = actor_auth(&w->job->actor);
    return w->auth;
}

/* ------------------------------------------------------------------ writer: activity */

/* Appends an entry to the activity log, chained to the one before. */
static int log_entry(wctx *w, const char *action, const char *col, const char *id, int64_t vb,
                     int64_t va, const json_t *data)
{
    store_t *st = w->st;
    const actor_t *a = &w->job->actor;
    int64_t seq = st->next_aseq;
    buf_t e = {0};
    buf_reserve(&e, 256);
    buf_puts(&e, "{\"seq\":");
    buf_put_i64(&e, seq);
    buf_puts(&e, ",\"at\":\"");
    buf_puts(&e, w->now);
    buf_puts(&e, "\",\"account\":");
    buf_put_json_str(&e, a->id, strlen(a->id));
    const char *role = a->system && !a->role[0] ? "system" : a->role;
    buf_puts(&e, ",\"role\":");
    buf_put_json_str(&e, role, strlen(role));
    buf_puts(&e, ",\"session\":");
    buf_put_json_str(&e, a->session, strlen(a->session));
    buf_puts(&e, ",\"remote\":");
    buf_put_json_str(&e, a->remote, strlen(a->remote));
    buf_puts(&e, ",\"action\":");
    buf_put_json_str(&e, action, strlen(action));
    if (col) {
        buf_puts(&e, ",\"col\":");
        buf_put_json_str(&e, col, strlen(col));
        buf_puts(&e, ",\"id\":");
        buf_put_json_str(&e, id, strlen(id));
        buf_puts(&e, ",\"version_before\":");
        if (vb > 0)
            buf_put_i64(&e, vb);
        else
            buf_puts(&e, "null");
        buf_puts(&e, ",\"version_after\":");
        if (va > 0)
            buf_put_i64(&e, va);
        else
            buf_puts(&e, "null");
    }
    if (data) {
        char *d = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
        buf_puts(&e, ",\"data\":");
        buf_puts(&e, d);
        free(d);
    }
    buf_putc(&e, '}');
    unsigned char h[32];
    crypto_generichash_state gs;
    crypto_generichash_init(&gs, NULL, 0, sizeof h);
    crypto_generichash_update(&gs, st->last_hash, sizeof st->last_hash);
    crypto_generichash_update(&gs, (const unsigned char *)e.p, e.len);
    crypto_generichash_final(&gs, h, sizeof h);
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    sqlite3_stmt *q = st->ins_activity;
    sqlite3_bind_int64(q, 1, seq);
    sqlite3_bind_int64(q, 2, w->now_ms);
    sqlite3_bind_text(q, 3, a->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, action, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 5, e.p, (int)e.len, SQLITE_STATIC);
    sqlite3_bind_text(q, 6, hex, 64, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    if (rc != SQLITE_DONE) {
        buf_free(&e);
        return db_err(&w->job->err, st->wdb, rc, "activity");
    }
    st->next_aseq++;
    memcpy(st->last_hash, h, sizeof h);
    activity_rec *r = xcalloc(1, sizeof *r);
    r->seq = seq;
    r->json = buf_take(&e, &r->len);
    *w->atail = r;
    w->atail = &r->next;
    return 0;
}

static int add_change(wctx *w, const char *col, const char *id, change_op op, int64_t version,
                      const char *doc, size_t doc_len, const buf_t *prev)
{
    store_t *st = w->st;
    /* The server's own collections (_accounts) are not the apps' data:
     * their writes are in the activity log, not in the feed. */
    if (col[0] == '_')
        return 0;
    int64_t seq = st->next_seq;
    sqlite3_stmt *s = st->ins_change;
    sqlite3_bind_int64(s, 1, seq);
    sqlite3_bind_text(s, 2, col, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, change_op_name(op), -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, version);
    sqlite3_bind_text(s, 6, w->now, -1, SQLITE_STATIC);
    if (doc)
        sqlite3_bind_text(s, 7, doc, (int)doc_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 7);
    if (prev && prev->p)
        sqlite3_bind_text(s, 8, prev->p, (int)prev->len, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 8);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE)
        return db_err(&w->job->err, st->wdb, rc, "change insert");
    st->next_seq++;
    change_t *ch = change_new(seq, col, id, op, version, doc, doc_len, w->now);
    if (prev && prev->p)
        change_set_prev(ch, prev->p, prev->len);
    *w->tail = ch;
    w->tail = &ch->next;
    w->job->seq = seq;
    return 0;
}

/* Reads the stored row: 1 found, 0 absent, -1 error. The stored text goes
 * to text (the change's prev) and, parsed, to body, each when asked. */
static int load_row(wctx *w, colstmts *c, const char *id, int64_t *version, char **created,
                    json_t **body, buf_t *text)
{
    sqlite3_stmt *s = c->sel;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int found = 0;
    if (rc == SQLITE_ROW) {
        found = 1;
        *version = sqlite3_column_int64(s, 0);
        if (created)
            *created = xstrdup((const char *)sqlite3_column_text(s, 1));
        if (text)
            buf_put(text, sqlite3_column_text(s, 2), (size_t)sqlite3_column_bytes(s, 2));
        if (body) {
            *body = json_loadb((const char *)sqlite3_column_text(s, 2),
                               (size_t)sqlite3_column_bytes(s, 2), 0, NULL);
            if (!*body) {
                found = -1;
                err_set(&w->job->err, E_INTERNAL, "stored document %s is not JSON", id);
            }
        }
    } else if (rc != SQLITE_DONE) {
        found = db_err(&w->job->err, w->st->wdb, rc, "read");
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return found;
}

/* "UNIQUE constraint failed: index 'ux_COL_N'": field N of COL's schema. */
static int unique_violation(wctx *w)
{
    const char *msg = sqlite3_errmsg(w->st->wdb);
    const char *ix = strstr(msg, "'ux_");
    const char *us = ix ? strrchr(ix, '_') : NULL;
    char col[65] = "";
    int slot = -1;
    if (us && (size_t)(us - ix - 4) < sizeof col) {
        memcpy(col, ix + 4, (size_t)(us - ix - 4));
        col[us - ix - 4] = '\0';
        slot = atoi(us + 1);
    }
    const col_spec *spec = col[0] ? apps_col(col) : NULL;
    const char *field = spec && slot >= 0 && slot < spec->nfields ? spec->fields[slot].name : "?";
    err_set(&w->job->err, E_INVALID, "another document of %s has this %s", col, field);
    err_details(&w->job->err, json_pack("[{ssss}]", "field", field, "reason",
                                        "must be unique: another document has this value"));
    return -1;
}

static int write_row(wctx *w, sqlite3_stmt *s, const char *id, int64_t version,
                     const char *created, const buf_t *doc)
{
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, version);
    if (created)
        sqlite3_bind_text(s, 3, created, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, w->now, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, doc->p, (int)doc->len, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        return err_set(&w->job->err, E_CONFLICT, "a document with id %s exists", id);
    if (rc == SQLITE_CONSTRAINT_UNIQUE)
        return unique_violation(w);
    if (rc != SQLITE_DONE)
        return db_err(&w->job->err, w->st->wdb, rc, "write");
    return 0;
}

static int check_version(wctx *w, const wop *op, int found, int64_t version)
{
    if (op->if_version == -1)
        return 0;
    if (!found)
        return err_set(&w->job->err, E_PRECONDITION_FAILED, "the document does not exist");
    if (op->if_version == -2) /* If-Match: * */
        return 0;
    if (version != op->if_version)
        return err_set(&w->job->err, E_PRECONDITION_FAILED,
                       "the document is at version %lld, not %lld", (long long)version,
                       (long long)op->if_version);
    return 0;
}

/* Whether the actor may do act on a document of spec's collection; doc is
 * the stored document (update, delete), newdoc the incoming one (create,
 * update). An update or delete of a document the actor may not even read
 * is "not found": its existence is not theirs to learn. */
static int check_access(wctx *w, const wop *op, action_t act, const json_t *doc,
                        const json_t *newdoc)
{
    const actor_t *a = &w->job->actor;
    if (actor_is_admin(a) || w->trusted)
        return 0;
    const col_spec *spec = apps_col(op->col);
    const rule_t *r = spec ? spec->rules[act] : NULL;
    if (r && rule_eval(r, wauth(w), doc, newdoc))
        return 0;
    if (doc && !access_can_read(a, wauth(w), op->col, doc))
        return err_set(&w->job->err, E_NOT_FOUND, "no document %s in %s", op->id, op->col);
    static const char *const verbs[] = {"read", "create", "change", "delete"};
    return err_set(&w->job->err, E_FORBIDDEN, "not allowed to %s documents in %s", verbs[act],
                   op->col);
}

/* The incoming document as rules see it: the client's members and the id. */
static json_t *with_id(const json_t *members, const char *id)
{
    json_t *d = json_copy((json_t *)members);
    json_object_set_new(d, "id", json_string(id));
    return d;
}

static int check_schema(wctx *w, const wop *op, const json_t *members)
{
    const col_spec *spec = apps_col(op->col);
    if (!spec || !spec->nfields)
        return 0;
    return schema_check(spec, members, &w->job->err);
}

/* The private ops: password hashes and sessions. */
static int run_private(wctx *w, wop *op)
{
    store_t *st = w->st;
    sqlite3_stmt *q = NULL;
    switch (op->kind) {
    case W_CRED:
        q = st->cred_put;
        sqlite3_bind_text(q, 1, op->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, json_string_value(json_object_get(op->doc, "hash")), -1,
                          SQLITE_STATIC);
        break;
    case W_SESSION_ADD:
        q = st->sess_put;
        sqlite3_bind_text(q, 1, op->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, json_string_value(json_object_get(op->doc, "session")), -1,
                          SQLITE_STATIC);
        sqlite3_bind_text(q, 3, json_string_value(json_object_get(op->doc, "account")), -1,
                          SQLITE_STATIC);
        sqlite3_bind_int64(q, 4, w->now_ms);
        sqlite3_bind_int64(q, 5, json_integer_value(json_object_get(op->doc, "expires_at")));
        break;
    case W_SESSION_DEL:
        q = st->sess_del;
        sqlite3_bind_text(q, 1, op->id, -1, SQLITE_STATIC);
        break;
    default: /* W_SESSIONS_DEL */
        q = st->sess_del_account;
        sqlite3_bind_text(q, 1, op->id, -1, SQLITE_STATIC);
        break;
    }
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc == SQLITE_DONE ? 0 : db_err(&w->job->err, st->wdb, rc, "account");
}

/* Runs one op; appends its answer to out. Every check (version, access,
 * schema) comes before the op's first write: a single op that fails a
 * check has written nothing (see run_job). */
static int run_op(wctx *w, wop *op, buf_t *out, int *status)
{
    *status = 200;
    if (op->kind >= W_CRED) {
        int rc = run_private(w, op);
        if (rc == 0)
            buf_puts(out, "{}");
        return rc;
    }
    colstmts *c = writer_col(w->st, op->col);
    if (!c)
        return err_set(&w->job->err, E_INTERNAL, "cannot open collection %s", op->col);
    bool admin = actor_is_admin(&w->job->actor) || w->trusted;
    int64_t version = 0;
    char *created = NULL;
    json_t *stored = NULL, *newdoc = NULL;
    buf_t doc = {0}, prev = {0};
    int rc = -1;
    change_op chop = CH_UPDATE;

    if (op->kind == W_CREATE || op->kind == W_PUT) {
        size_t mlen;
        char *members = doc_members(op->doc, &mlen);
        int found = 0;
        if (op->kind == W_PUT) {
            found = load_row(w, c, op->id, &version, &created,
                             op->skip_unchanged || !admin ? &stored : NULL, &prev);
            if (found < 0 || check_version(w, op, found, version))
                goto out_members;
        }
        if (!admin) {
            newdoc = with_id(op->doc, op->id);
            if (check_access(w, op, found ? ACT_UPDATE : ACT_CREATE, found ? stored : NULL,
                             newdoc))
                goto out_members;
        }
        if (check_schema(w, op, op->doc))
            goto out_members;
        if (found && stored && op->skip_unchanged) {
            doc_take_server_fields(stored, NULL, NULL, &w->job->err);
            if (json_equal(stored, op->doc)) { /* a re-import: nothing to write */
                buf_put(&doc, prev.p, prev.len);
                rc = 0;
                goto out_members;
            }
        }
        int64_t before = version;
        if (found) {
            version++;
            doc_compose(&doc, op->id, version, created, w->now, members, mlen);
        } else {
            version = 1;
            *status = 201;
            chop = CH_CREATE;
            doc_compose(&doc, op->id, version, w->now, w->now, members, mlen);
        }
        if (doc.len > DOC_MAX_BYTES)
            rc = err_set(&w->job->err, E_PAYLOAD_TOO_LARGE, "the document is over 1 MiB");
        else
            rc = write_row(w, found ? c->upd : c->ins, op->id, version, found ? NULL : w->now,
                           &doc);
        if (rc == 0)
            rc = add_change(w, op->col, op->id, chop, version, doc.p, doc.len, &prev);
        if (rc == 0)
            rc = log_entry(w, found ? "update" : "create", op->col, op->id, before, version, NULL);
    out_members:
        free(members);
    } else if (op->kind == W_PATCH) {
        int found = load_row(w, c, op->id, &version, &created, &stored, &prev);
        if (found < 0 || check_version(w, op, found, version))
            goto done;
        if (!found || (!admin && !access_can_read(&w->job->actor, wauth(w), op->col, stored))) {
            err_set(&w->job->err, E_NOT_FOUND, "no document %s in %s", op->id, op->col);
            goto done;
        }
        json_t *before_doc = admin ? NULL : json_deep_copy(stored);
        stored = merge_patch(stored, op->doc);
        doc_take_server_fields(stored, NULL, NULL, &w->job->err);
        if (!admin) {
            newdoc = with_id(stored, op->id);
            int denied = check_access(w, op, ACT_UPDATE, before_doc, newdoc);
            json_decref(before_doc);
            if (denied)
                goto done;
        }
        if (check_schema(w, op, stored))
            goto done;
        size_t mlen;
        char *members = doc_members(stored, &mlen);
        int64_t before = version++;
        doc_compose(&doc, op->id, version, created, w->now, members, mlen);
        free(members);
        if (doc.len > DOC_MAX_BYTES) {
            err_set(&w->job->err, E_PAYLOAD_TOO_LARGE, "the patched document is over 1 MiB");
            goto done;
        }
        rc = write_row(w, c->upd, op->id, version, NULL, &doc);
        if (rc == 0)
            rc = add_change(w, op->col, op->id, CH_UPDATE, version, doc.p, doc.len, &prev);
        if (rc == 0)
            rc = log_entry(w, "update", op->col, op->id, before, version, NULL);
    } else { /* W_DELETE */
        int found = load_row(w, c, op->id, &version, NULL, admin ? NULL : &stored, &prev);
        if (found < 0 || check_version(w, op, found, version))
            goto done;
        if (!found) {
            err_set(&w->job->err, E_NOT_FOUND, "no document %s in %s", op->id, op->col);
            goto done;
        }
        if (!admin && check_access(w, op, ACT_DELETE, stored, NULL))
            goto done;
        sqlite3_bind_text(c->del, 1, op->id, -1, SQLITE_STATIC);
        int src = sqlite3_step(c->del);
        sqlite3_reset(c->del);
        sqlite3_clear_bindings(c->del);
        if (src != SQLITE_DONE) {
            db_err(&w->job->err, w->st->wdb, src, "delete");
            goto done;
        }
        buf_puts(&doc, "{\"id\":");
        buf_put_json_str(&doc, op->id, strlen(op->id));
        buf_printf(&doc, ",\"version\":%lld}", (long long)version);
        rc = add_change(w, op->col, op->id, CH_DELETE, version, NULL, 0, &prev);
        if (rc == 0)
            rc = log_entry(w, "delete", op->col, op->id, version, 0, NULL);
    }
done:
    if (rc == 0) {
        buf_put(out, doc.p, doc.len);
        w->job->version = version;
    }
    /* For a server function: the document as written, from the objects at
     * hand (the same members, in the same order, as the stored text), not
     * by parsing that text again. */
    if (rc == 0 && w->want_written && !op->skip_unchanged &&
        (op->kind == W_PATCH || op->kind == W_CREATE || op->kind == W_PUT)) {
        json_t *members = op->kind == W_PATCH ? stored : op->doc;
        json_t *d = json_object();
        json_object_set_new(d, "id", json_string(op->id));
        json_object_set_new(d, "version", json_integer(version));
        json_object_set_new(d, "created_at", json_string(created ? created : w->now));
        json_object_set_new(d, "updated_at", json_string(w->now));
        json_object_update(d, members);
        w->written = d;
    }
    buf_free(&doc);
    buf_free(&prev);
    free(created);
    json_decref(stored);
    json_decref(newdoc);
    return rc;
}

static int idem_lookup(wctx *w)
{
    wjob *job = w->job;
    sqlite3_stmt *s = w->st->idem_get;
    sqlite3_bind_text(s, 1, job->idem_account, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, job->idem_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, time_now_ms() - IDEMPOTENCY_MS);
    int found = 0;
    if (sqlite3_step(s) == SQLITE_ROW) {
        found = 1;
        job->status = sqlite3_column_int(s, 0);
        job->version = sqlite3_column_int64(s, 1);
        buf_put(&job->answer, sqlite3_column_text(s, 2), (size_t)sqlite3_column_bytes(s, 2));
        job->replayed = true;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return found;
}

static int idem_store(wctx *w)
{
    wjob *job = w->job;
    sqlite3_stmt *s = w->st->idem_put;
    sqlite3_bind_text(s, 1, job->idem_account, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, job->idem_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, time_now_ms());
    sqlite3_bind_int(s, 4, job->status);
    sqlite3_bind_int64(s, 5, job->version);
    sqlite3_bind_text(s, 6, job->answer.p, (int)job->answer.len, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? 0 : db_err(&job->err, w->st->wdb, rc, "idempotency");
}

static bool storage_error(err_code code)
{
    return code == E_INTERNAL || code == E_UNAVAILABLE || code == E_STORAGE_FULL;
}

/* Runs one job. A job of several statements that may fail half-way (a
 * batch, an idempotent request) runs in its own SAVEPOINT and fails alone.
 * A single op makes every check before its first write, so when it fails a
 * check nothing was written and no savepoint is needed; when the disk
 * fails it mid-way, the whole group is rolled back (tx_broken). */
/* ------------------------------------------------------------------ writer: functions */

struct fn_tx {
    wctx *w;
};

const actor_t *fn_actor(fn_tx *t) { return &t->w->job->actor; }
const char *fn_now(fn_tx *t) { return t->w->now; }

int fn_fail(fn_tx *t, err_code code, json_t *details, const char *fmt, ...)
{
    err_t *e = &t->w->job->err;
    err_clear(e);
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    if (details)
        err_details(e, details);
    return -1;
}

json_t *fn_get(fn_tx *t, const char *col, const char *id)
{
    colstmts *c = writer_col(t->w->st, col);
    if (!c)
        return NULL;
    int64_t version;
    json_t *body = NULL;
    if (load_row(t->w, c, id, &version, NULL, &body, NULL) <= 0)
        return NULL;
    return body;
}

json_t *fn_find(fn_tx *t, const char *col, const query_t *q)
{
    json_t *out = json_array();
    if (!writer_col(t->w->st, col))
        return out;
    sqlq sq;
    sqlq_build_list(&sq, q, col);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(t->w->st->wdb, sq.sql.p, -1, &s, NULL) == SQLITE_OK) {
        sqlq_bind(s, &sq);
        int n = 0;
        while (sqlite3_step(s) == SQLITE_ROW && (q->limit <= 0 || n++ < q->limit))
            json_array_append_new(out, json_loadb((const char *)sqlite3_column_text(s, 0),
                                                  (size_t)sqlite3_column_bytes(s, 0), 0, NULL));
    }
    sqlite3_finalize(s);
    sqlq_free(&sq);
    return out;
}

json_t *fn_write(fn_tx *t, wop_kind kind, const char *col, const char *id, json_t *doc)
{
    wop op = {.kind = kind, .doc = doc, .if_version = -1};
    snprintf(op.col, sizeof op.col, "%s", col);
    if (id) {
        op.id = xstrdup(id);
    } else {
        op.id = xmalloc(DOC_GEN_ID_LEN + 1);
        time_ordered_id(op.id, DOC_GEN_ID_LEN);
    }
    if (doc && kind != W_PATCH)
        doc_take_server_fields(op.doc, NULL, NULL, &t->w->job->err);
    buf_t out = {0};
    int status;
    t->w->want_written = true;
    int rc;
    if (t->w->fn_writes > 0 && vfs_fault(3, 'W')) /* the test seam, vfs.h */
        rc = err_set(&t->w->job->err, E_INTERNAL, "a write failed (LIVEDB_FAULTS)");
    else
        rc = run_op(t->w, &op, &out, &status);
    if (rc == 0)
        t->w->fn_writes++;
    t->w->want_written = false;
    json_t *written = t->w->written;
    t->w->written = NULL;
    if (rc == 0 && !written) /* a delete: {"id","version"} */
        written = json_loadb(out.p, out.len, 0, NULL);
    if (rc != 0) {
        json_decref(written);
        written = NULL;
    }
    buf_free(&out);
    free(op.id);
    json_decref(op.doc);
    return written;
}

/* A function call: refused or failed, its writes go and the refusal is
 * the call's answer; either way the call is logged. Its writes are undone
 * by its savepoint when the group runs carefully; otherwise there is none,
 * and a call that fails after a write has the group run again carefully. */
static void run_fn(store_t *st, wjob *job, wctx *w)
{
    int64_t seq0 = st->next_seq, aseq0 = st->next_aseq;
    unsigned char hash0[32];
    memcpy(hash0, st->last_hash, sizeof hash0);
    job->seq = seq0 - 1;
    bool sp = st->careful;
    int rc = sp ? step(st->savepoint) : SQLITE_OK;
    if (rc != SQLITE_OK) {
        db_err(&job->err, st->wdb, rc, "savepoint");
        return;
    }
    fn_tx t = {.w = w};
    json_t *result = NULL;
    w->trusted = true;
    int frc = job->fn(&t, job->fn_args, &result);
    w->trusted = false;
    if (frc == 0 && !job->err.code) {
        if (!result)
            result = json_object();
        char *text = json_dumps(result, JSON_COMPACT);
        buf_puts(&job->answer, text);
        free(text);
        json_decref(result);
        result = NULL; /* else a failed log entry below frees it a second time */
        job->status = 200;
        json_t *data = json_pack("{sssb}", "fn", job->fn_name, "ok", 1);
        int lrc = log_entry(w, "call", NULL, NULL, 0, 0, data);
        json_decref(data);
        if (lrc == 0) {
            if (sp)
                step(st->release);
            return;
        }
    }
    json_decref(result);
    /* Undo the call. */
    if (sp) {
        step(st->rollback_to);
        step(st->release);
    } else if (w->fn_writes > 0) {
        /* Its writes cannot be undone alone: the group goes, and unless
         * the disk failed it runs again, carefully, where this call fails
         * alone in its savepoint. */
        st->tx_broken = true;
        st->broken_code = job->err.code ? job->err.code : E_INTERNAL;
        st->rerun = job->err.code != E_UNAVAILABLE && job->err.code != E_STORAGE_FULL &&
                    !sqlite3_get_autocommit(st->wdb);
        return;
    }
    st->next_seq = seq0;
    st->next_aseq = aseq0;
    memcpy(st->last_hash, hash0, sizeof hash0);
    free_changes(job->changes);
    job->changes = NULL;
    activity_free(job->activity);
    job->activity = NULL;
    w->atail = &job->activity;
    w->tail = &job->changes;
    job->answer.len = 0;
    if (!job->err.code)
        err_set(&job->err, E_INTERNAL, "%s failed", job->fn_name);
    /* The disk failed (or SQLite gave the transaction up): the group goes. */
    if (job->err.code == E_UNAVAILABLE || job->err.code == E_STORAGE_FULL ||
        sqlite3_get_autocommit(st->wdb)) {
        st->tx_broken = true;
        st->broken_code = job->err.code;
        return;
    }
    /* A refusal (or a bug): the answer, and the log says so. */
    err_move(&job->fn_err, &job->err);
    json_t *data = json_pack("{sssbss}", "fn", job->fn_name, "ok", 0, "error",
                             err_name(job->fn_err.code));
    log_entry(w, "call", NULL, NULL, 0, 0, data);
    json_decref(data);
}

static void run_job_ops(store_t *st, wjob *job, wctx *w);

static void run_job(store_t *st, wjob *job)
{
    wctx w = {.st = st, .job = job, .tail = &job->changes, .atail = &job->activity};
    w.now_ms = time_now_ms();
    time_format_rfc3339(w.now_ms, w.now);
    if (job->kind == WJ_FN)
        run_fn(st, job, &w);
    else
        run_job_ops(st, job, &w);
    json_decref(w.auth);
}

static void run_job_ops(store_t *st, wjob *job, wctx *w)
{
    int64_t seq0 = st->next_seq, aseq0 = st->next_aseq;
    unsigned char hash0[32];
    memcpy(hash0, st->last_hash, sizeof hash0);
    job->seq = seq0 - 1;

    if (job->kind == WJ_PROBE) {
        sqlite3_bind_int64(st->probe, 1, time_now_ms());
        int rc = step(st->probe);
        if (rc != SQLITE_OK)
            db_err(&job->err, st->wdb, rc, "health probe");
        return;
    }
    bool sp = job->is_batch || job->idem_key || job->nops > 1;
    if (sp) {
        int rc = step(st->savepoint);
        if (rc != SQLITE_OK) {
            db_err(&job->err, st->wdb, rc, "savepoint");
            return;
        }
    }
    int rc = 0;
    if (job->idem_key && idem_lookup(w)) {
        step(st->release);
        return;
    }
    if (job->is_batch)
        buf_puts(&job->answer, "{\"results\":[");
    for (int i = 0; i < job->nops && rc == 0; i++) {
        if (i)
            buf_putc(&job->answer, ',');
        int status = 200;
        rc = run_op(w, &job->ops[i], &job->answer, &status);
        if (rc && job->is_batch) {
            json_t *d = json_pack("{si}", "index", i);
            if (job->err.details && json_is_object(job->err.details))
                json_object_update(d, job->err.details);
            else if (job->err.details) /* the fields a schema refused */
                json_object_set(d, "fields", job->err.details);
            err_details(&job->err, d);
        }
        job->status = job->is_batch ? 200 : status;
    }
    if (rc == 0 && job->log_action[0])
        rc = log_entry(w, job->log_action, NULL, NULL, 0, 0, job->log_data);
    if (rc == 0 && job->is_batch)
        buf_printf(&job->answer, "],\"seq\":%lld}", (long long)job->seq);
    if (rc == 0 && job->idem_key)
        rc = idem_store(w);
    if (rc == 0) {
        if (sp)
            step(st->release);
        return;
    }
    /* Fails alone: undo its rows, give back its seqs, drop its changes. */
    if (!job->err.code)
        err_set(&job->err, E_INTERNAL, "the write failed");
    if (sp) {
        step(st->rollback_to);
        step(st->release);
    } else if (storage_error(job->err.code)) {
        st->tx_broken = true;
        st->broken_code = job->err.code;
    }
    st->next_seq = seq0;
    st->next_aseq = aseq0;
    memcpy(st->last_hash, hash0, sizeof hash0);
    free_changes(job->changes);
    job->changes = NULL;
    activity_free(job->activity);
    job->activity = NULL;
    job->answer.len = 0;
}

static void prune(store_t *st)
{
    int64_t last = st->next_seq - 1;
    int64_t first = atomic_load(&st->first_seq);
    int64_t keep = st->opts.retain_changes;
    /* Prune in steps of a tenth of the window (at least 1), so the cost is
     * spread and rare. */
    int64_t slack = keep / 10 > 0 ? keep / 10 : 1;
    if (last - first + 1 < keep + slack)
        return;
    int64_t new_first = last - keep + 1;
    char sql[128];
    snprintf(sql, sizeof sql, "DELETE FROM changes WHERE seq < %lld", (long long)new_first);
    if (exec(st->wdb, sql, NULL) == 0)
        atomic_store(&st->first_seq, new_first);
    int64_t now = time_now_ms();
    if (now - st->last_prune_check > 600000) {
        st->last_prune_check = now;
        snprintf(sql, sizeof sql, "DELETE FROM idempotency WHERE at < %lld",
                 (long long)(now - IDEMPOTENCY_MS));
        exec(st->wdb, sql, NULL);
    }
}

/* The group's transaction was rolled back: the feed and the log go back
 * to where they were, and every job to before it ran. */
static void group_undo(store_t *st, wjob *jobs, int64_t seq, int64_t aseq,
                       const unsigned char hash[32])
{
    st->next_seq = seq;
    st->next_aseq = aseq;
    memcpy(st->last_hash, hash, sizeof st->last_hash);
    for (wjob *j = jobs; j; j = j->next) {
        free_changes(j->changes);
        j->changes = NULL;
        activity_free(j->activity);
        j->activity = NULL;
        j->answer.len = 0;
        err_clear(&j->err);
        err_clear(&j->fn_err);
        j->status = 0;
        j->version = 0;
        j->seq = 0;
        j->replayed = false;
    }
}

/* One group: every queued job, one transaction, one fsync. */
static void commit_group(store_t *st, wjob *jobs, int n)
{
    uint64_t t0 = time_mono_ns();
    /* DDL first, each committing alone: tables of new collections and
     * requested indexes. Then the group transaction holds only data. */
    for (wjob *j = jobs; j; j = j->next) {
        if (j->kind == WJ_INDEX)
            writer_index(st, j);
        for (int i = 0; i < j->nops; i++)
            if (j->ops[i].kind < W_CRED) /* private ops have no collection */
                writer_col(st, j->ops[i].col);
    }
    int64_t seq_before = st->next_seq, aseq_before = st->next_aseq;
    unsigned char hash_before[32];
    memcpy(hash_before, st->last_hash, sizeof hash_before);
    err_t txerr = {0};
    uint64_t sync_failures = vfs_thread_sync_failures();
    int rc = atomic_load(&st->failed) ? SQLITE_IOERR_FSYNC : step(st->begin);
    if (atomic_load(&st->failed)) {
        err_set(&txerr, E_UNAVAILABLE,
                "writes are stopped: the disk failed to confirm a write (fsync); check the disk,"
                " then restart livedb");
    } else if (rc != SQLITE_OK) {
        db_err(&txerr, st->wdb, rc, "begin");
    } else {
        st->careful = false;
        for (;;) {
            st->tx_broken = false;
            st->rerun = false;
            for (wjob *j = jobs; j && !st->rerun; j = j->next) /* rerun: the rest is undone */
                if (j->kind != WJ_INDEX)
                    run_job(st, j);
            if (!st->rerun || st->careful)
                break;
            /* A call failed after a write: all again, a savepoint each. */
            step(st->rollback);
            group_undo(st, jobs, seq_before, aseq_before, hash_before);
            st->careful = true;
            metrics_add(M_GROUP_RERUNS, 1);
            rc = step(st->begin);
            if (rc != SQLITE_OK) {
                db_err(&txerr, st->wdb, rc, "begin");
                break;
            }
        }
        if (!txerr.code) {
            rc = st->tx_broken ? SQLITE_ABORT : step(st->commit);
            if (rc != SQLITE_OK) {
                if (st->tx_broken)
                    err_set(&txerr, st->broken_code, "a write failed; nothing of its group was kept");
                else
                    db_err(&txerr, st->wdb, rc, "commit");
                if (!sqlite3_get_autocommit(st->wdb))
                    step(st->rollback);
            }
        }
    }
    if (txerr.code) {
        /* Nothing of this group is durable: every job fails. */
        group_undo(st, jobs, seq_before, aseq_before, hash_before);
        for (wjob *j = jobs; j; j = j->next) {
            j->err.code = txerr.code;
            snprintf(j->err.msg, sizeof j->err.msg, "%s", txerr.msg);
        }
    }
    err_clear(&txerr);
    if (vfs_thread_sync_failures() != sync_failures && !atomic_load(&st->failed)) {
        atomic_store(&st->failed, true);
        log_msg(LOG_ERROR, "an fsync failed: writes are stopped until livedb is restarted"
                           " (what was acknowledged before is safe; check the disk)");
    }
    int64_t committed = st->next_seq - 1;
    atomic_store(&st->committed_seq, committed);
    uint64_t t1 = time_mono_ns();
    metrics_observe(M_COMMIT_SECONDS, (double)(t1 - t0) / 1e9);
    metrics_observe(M_COMMIT_BATCH, n);
    metrics_add(M_CHANGES_COMMITTED, (uint64_t)(committed - seq_before + 1));
    prune(st);
}

static void *writer_main(void *arg)
{
    store_t *st = arg;
    /* The apps' collections exist before any job: a server function never
     * creates a table inside its transaction. */
    for (int i = 0; st->opts.app_collections && i < apps_count(); i++)
        writer_col(st, apps_at(i)->name);
    for (;;) {
        pthread_mutex_lock(&st->mu);
        while (!st->q_head && !st->exit_writer)
            pthread_cond_wait(&st->cv, &st->mu);
        if (!st->q_head && st->exit_writer) {
            pthread_mutex_unlock(&st->mu);
            break;
        }
        wjob *head = st->q_head, *tail = head;
        int n = 1;
        while (tail->next && n < MAX_GROUP) {
            tail = tail->next;
            n++;
        }
        st->q_head = tail->next;
        if (!st->q_head)
            st->q_tail = NULL;
        tail->next = NULL;
        st->q_len -= n;
        metrics_gauge_set(M_WRITER_QUEUE, st->q_len);
        atomic_store(&st->busy, true);
        pthread_mutex_unlock(&st->mu);

        commit_group(st, head, n);

        pthread_mutex_lock(&st->mu);
        if (st->d_tail)
            st->d_tail->next = head;
        else
            st->d_head = head;
        st->d_tail = tail;
        pthread_mutex_unlock(&st->mu);
        atomic_store(&st->heartbeat, time_mono_ns());
        atomic_store(&st->busy, false);
        uv_async_send(&st->async);
    }
    pthread_mutex_lock(&st->mu);
    st->writer_exited = true;
    pthread_mutex_unlock(&st->mu);
    uv_async_send(&st->async);
    return NULL;
}

/* Loop thread: answers in commit order. */
static void on_done_async(uv_async_t *h)
{
    store_t *st = h->data;
    pthread_mutex_lock(&st->mu);
    wjob *j = st->d_head;
    st->d_head = st->d_tail = NULL;
    bool exited = st->writer_exited;
    pthread_mutex_unlock(&st->mu);
    while (j) {
        wjob *next = j->next;
        j->next = NULL;
        if ((j->changes || j->activity) && st->commit_cb)
            st->commit_cb(st->commit_ctx, j->changes, j->activity);
        j->done(j);
        j = next;
    }
    if (exited && st->draining && st->thread) {
        void (*cb)(void *) = st->drained;
        pthread_join(st->thread, NULL);
        st->thread = 0;
        uv_close((uv_handle_t *)&st->async, NULL);
        if (cb)
            cb(st->drained_ctx);
    }
}

/* ------------------------------------------------------------------ indexes */

void store_want_index(store_t *st, const char *col, const char *field)
{
    if (st->opts.auto_index_max <= 0 || strcmp(field, "id") == 0)
        return;
    buf_t k = {0};
    buf_printf(&k, "%s\t%s", col, field);
    size_t per_col = 0, clen = strlen(col);
    for (size_t i = 0; i < st->n_index_keys; i++) {
        if (strcmp(st->index_keys[i], k.p) == 0) {
            buf_free(&k);
            return;
        }
        if (strncmp(st->index_keys[i], col, clen) == 0 && st->index_keys[i][clen] == '\t')
            per_col++;
    }
    if (per_col >= (size_t)st->opts.auto_index_max) {
        buf_free(&k);
        return;
    }
    st->index_keys = xrealloc(st->index_keys, (st->n_index_keys + 1) * sizeof(char *));
    st->index_keys[st->n_index_keys++] = buf_take(&k, NULL);
    wjob *job = wjob_new(WJ_INDEX, 0);
    job->index_col = xstrdup(col);
    job->index_field = xstrdup(field);
    job->done = wjob_free;
    store_submit(st, job);
}

/* ------------------------------------------------------------------ reads */

rjob *rjob_new(rjob_kind kind)
{
    rjob *job = xcalloc(1, sizeof *job);
    job->kind = kind;
    query_init(&job->query);
    return job;
}

void rjob_free(rjob *job)
{
    if (!job)
        return;
    free(job->id);
    query_free(&job->query);
    err_clear(&job->err);
    buf_free(&job->out);
    free_changes(job->recs);
    free(job->chunks);
    free(job->aq_actor);
    free(job->aq_action);
    free(job);
}

static sqlite3 *reader_take(store_t *st, reader **slot)
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

static void reader_give(store_t *st, reader *r)
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
static bool no_table(sqlite3 *db)
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
            db_err(&job->err, db, sqlite3_errcode(db), "get");
        return;
    }
    sqlite3_bind_text(s, 1, job->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        job->found = true;
        job->version = sqlite3_column_int64(s, 0);
        buf_put(&job->out, sqlite3_column_text(s, 1), (size_t)sqlite3_column_bytes(s, 1));
        if (!actor_is_admin(&job->actor)) {
            /* A document the caller may not read does not exist for them. */
            json_t *d = json_loadb(job->out.p, job->out.len, 0, NULL);
            json_t *auth = actor_auth(&job->actor);
            if (!access_can_read(&job->actor, auth, job->col, d)) {
                job->found = false;
                job->out.len = 0;
            }
            json_decref(auth);
            json_decref(d);
        }
    } else if (rc != SQLITE_DONE) {
        db_err(&job->err, db, rc, "get");
    }
    sqlite3_finalize(s);
}

static json_t *sql_value_json(sqlite3_stmt *s, int col)
{
    switch (sqlite3_column_type(s, col)) {
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(s, col));
    case SQLITE_FLOAT:
        return json_real(sqlite3_column_double(s, col));
    case SQLITE_TEXT:
        return json_stringn((const char *)sqlite3_column_text(s, col),
                            (size_t)sqlite3_column_bytes(s, col));
    default:
        return json_null();
    }
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
    int64_t seq = query_i64(db, "SELECT max(seq) FROM changes", 0);
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
            db_err(&job->err, db, sqlite3_errcode(db), "list");
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
        last_key = sql_value_json(s, 1);
        last_id = xstrdup((const char *)sqlite3_column_text(s, 2));
    }
    char *next = NULL;
    if (rc == SQLITE_ROW && last_id)
        next = query_cursor_encode(&job->query, last_key, last_id);
    json_decref(last_key);
    free(last_id);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        db_err(&job->err, db, rc, "list");
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
    int64_t last = query_i64(db, "SELECT max(seq) FROM changes", 0);
    int64_t first = query_i64(db, "SELECT min(seq) FROM changes", last + 1);
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
        db_err(&job->err, db, sqlite3_errcode(db), "changes");
        return;
    }
    sqlite3_bind_int64(s, 1, job->since);
    sqlite3_bind_int(s, 2, job->limit);
    if (job->col_filter)
        sqlite3_bind_text(s, 3, job->col, -1, SQLITE_STATIC);
    /* n counts rows read (what the limit is on), shown those the caller
     * may read; a hidden change is still covered by the answer's seq. */
    int rc, n = 0, shown = 0;
    int64_t covered = job->since;
    bool admin = actor_is_admin(&job->actor);
    json_t *auth = admin ? NULL : actor_auth(&job->actor);
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
        if (!admin && !access_change_visible(&job->actor, auth, ch)) {
            change_unref(ch);
            continue; /* covered, not shown */
        }
        shown++;
        if (job->want_recs) {
            *tail = change_ref(ch);
            tail = &ch->next;
        } else if (job->sse) {
            buf_printf(&job->out, "id: %lld\ndata: ", (long long)ch->seq);
            buf_put(&job->out, ch->json, ch->json_len);
            buf_puts(&job->out, "\n\n");
        } else {
            if (shown > 1)
                buf_putc(&job->out, ',');
            buf_put(&job->out, ch->json, ch->json_len);
        }
        change_unref(ch);
    }
    json_decref(auth);
    if (rc != SQLITE_DONE) {
        db_err(&job->err, db, rc, "changes");
    } else {
        /* Fewer than asked: everything up to the snapshot's end is covered. */
        job->seq = n < job->limit ? last : covered;
        if (job->seq < job->since)
            job->seq = job->since;
        job->count = shown;
    }
    sqlite3_finalize(s);
}

/* Every document matching the query, in one read transaction with the seq
 * it reflects, cut into chunks of about chunk_bytes. */
static void read_snapshot(rjob *job, sqlite3 *db)
{
    job->seq = query_i64(db, "SELECT max(seq) FROM changes", 0);
    job->query.limit = 0;
    size_t cap = 4;
    job->chunks = xcalloc(cap, sizeof *job->chunks);
    job->nchunks = 1;
    rule_t *post = NULL;
    json_t *auth = NULL;
    if (read_scope(job, &post, &auth))
        return;
    sqlq q;
    sqlq_build_list(&q, &job->query, job->col);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, q.sql.p, -1, &s, NULL) != SQLITE_OK) {
        if (!no_table(db))
            db_err(&job->err, db, sqlite3_errcode(db), "snapshot");
        sqlq_free(&q);
        rule_free(post);
        json_decref(auth);
        return;
    }
    sqlq_bind(s, &q);
    int rc;
    snap_chunk *ck = &job->chunks[0];
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (!row_visible(post, auth, s))
            continue;
        if (ck->count && ck->len >= job->chunk_bytes) {
            if ((size_t)job->nchunks == cap) {
                cap *= 2;
                job->chunks = xrealloc(job->chunks, cap * sizeof *job->chunks);
            }
            ck = &job->chunks[job->nchunks++];
            *ck = (snap_chunk){.off = job->out.len};
        }
        if (ck->count)
            buf_putc(&job->out, ',');
        buf_put(&job->out, sqlite3_column_text(s, 0), (size_t)sqlite3_column_bytes(s, 0));
        ck->len = job->out.len - ck->off;
        ck->count++;
        job->count++;
    }
    if (rc != SQLITE_DONE)
        db_err(&job->err, db, rc, "snapshot");
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
        db_err(&job->err, db, sqlite3_errcode(db), "activity");
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
        const char *e = (const char *)sqlite3_column_text(s, 1);
        size_t n = (size_t)sqlite3_column_bytes(s, 1);
        if (job->count++)
            buf_putc(&job->out, ',');
        if (n > 1 && e[n - 1] == '}') {
            buf_put(&job->out, e, n - 1);
            buf_puts(&job->out, ",\"hash\":\"");
            buf_put(&job->out, sqlite3_column_text(s, 2), (size_t)sqlite3_column_bytes(s, 2));
            buf_puts(&job->out, "\"}");
        } else {
            buf_put(&job->out, e, n);
        }
        job->seq = sqlite3_column_int64(s, 0);
    }
    if (rc != SQLITE_DONE)
        db_err(&job->err, db, rc, "activity");
    sqlite3_finalize(s);
    /* With no activity yet, a subscriber starts after everything. */
    if (!job->count && !q->ascending)
        job->seq = query_i64(db, "SELECT max(seq) FROM activity", 0);
    /* Where a live subscriber picks up (same read transaction). */
    job->top_seq = query_i64(db, "SELECT max(seq) FROM activity", 0);
}

static void read_work(uv_work_t *req)
{
    rjob *job = req->data;
    reader *r;
    sqlite3 *db = reader_take(job->st, &r);
    /* One read transaction: every statement below sees one snapshot. */
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    switch (job->kind) {
    case R_GET:
        read_get(job, db);
        break;
    case R_LIST:
        read_list(job, db);
        break;
    case R_CHANGES:
        read_changes(job, db);
        break;
    case R_SNAPSHOT:
        read_snapshot(job, db);
        break;
    case R_ACTIVITY:
        read_activity(job, db);
        break;
    default:
        err_set(&job->err, E_INTERNAL, "unknown read");
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    reader_give(job->st, r);
}

static void read_after(uv_work_t *req, int status)
{
    rjob *job = req->data;
    if (status == UV_ECANCELED && !job->err.code)
        err_set(&job->err, E_UNAVAILABLE, "the server is shutting down");
    job->done(job);
}

void store_read(store_t *st, rjob *job)
{
    job->st = st;
    job->work.data = job;
    uv_queue_work(st->loop, &job->work, read_work, read_after);
}

/* ------------------------------------------------------------------ accounts */

int store_load_auth(store_t *st, const store_auth_cb *cb, err_t *err)
{
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
    return rc == SQLITE_OK ? 0 : db_err(err, db, rc, "loading accounts");
}

/* ------------------------------------------------------------------ verify */

int store_verify(const char *dir, int64_t *entries, err_t *err)
{
    buf_t path = {0};
    buf_printf(&path, "%s/livedb.db", dir);
    sqlite3 *db = NULL;
    *entries = 0;
    int rc = open_conn(path.p, true, &db, err);
    buf_free(&path);
    if (rc)
        return -1;
    sqlite3_stmt *s = NULL;
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    if (sqlite3_prepare_v2(db, "SELECT group_concat(integrity_check, '; ') FROM"
                               " pragma_integrity_check(20)", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(s, 0);
        if (!r || strcmp(r, "ok") != 0)
            err_set(err, E_INTERNAL, "the database fails its integrity check: %.180s",
                    r ? r : "(no answer)");
    } else {
        db_err(err, db, sqlite3_errcode(db), "integrity check");
    }
    sqlite3_finalize(s);
    s = NULL;
    unsigned char h[32] = {0};
    int64_t expect = 0;
    if (!err->code &&
        sqlite3_prepare_v2(db, "SELECT seq, at, account, action, entry, hash FROM activity"
                               " ORDER BY seq", -1, &s, NULL) == SQLITE_OK) {
        while (!err->code && sqlite3_step(s) == SQLITE_ROW) {
            int64_t seq = sqlite3_column_int64(s, 0);
            const char *entry = (const char *)sqlite3_column_text(s, 4);
            size_t n = (size_t)sqlite3_column_bytes(s, 4);
            const char *stored = (const char *)sqlite3_column_text(s, 5);
            if (expect && seq != expect) {
                err_set(err, E_INTERNAL, "activity entry %lld is missing (the log jumps from %lld"
                        " to %lld)", (long long)expect, (long long)expect - 1, (long long)seq);
                break;
            }
            expect = seq + 1;
            crypto_generichash_state gs;
            crypto_generichash_init(&gs, NULL, 0, sizeof h);
            crypto_generichash_update(&gs, h, sizeof h);
            crypto_generichash_update(&gs, (const unsigned char *)entry, n);
            crypto_generichash_final(&gs, h, sizeof h);
            char hex[65];
            sodium_bin2hex(hex, sizeof hex, h, sizeof h);
            json_t *e = json_loadb(entry, n, 0, NULL);
            json_t *eseq = json_object_get(e, "seq");
            const char *eacc = json_string_value(json_object_get(e, "account"));
            const char *eact = json_string_value(json_object_get(e, "action"));
            int64_t at_ms = -1;
            const char *eat = json_string_value(json_object_get(e, "at"));
            if (eat)
                time_parse_rfc3339(eat, &at_ms);
            if (!stored || strcmp(hex, stored) != 0)
                err_set(err, E_INTERNAL, "activity entry %lld was changed: its hash does not"
                        " follow from the entries before it", (long long)seq);
            else if (!e || json_integer_value(eseq) != seq || !eacc || !eact ||
                     strcmp(eacc, (const char *)sqlite3_column_text(s, 2)) != 0 ||
                     strcmp(eact, (const char *)sqlite3_column_text(s, 3)) != 0 ||
                     at_ms != sqlite3_column_int64(s, 1))
                err_set(err, E_INTERNAL, "activity entry %lld was changed: its columns do not"
                        " match its entry", (long long)seq);
            json_decref(e);
            (*entries)++;
        }
    } else if (!err->code) {
        db_err(err, db, sqlite3_errcode(db), "activity");
    }
    sqlite3_finalize(s);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    return err->code ? -1 : 0;
}

/* ------------------------------------------------------------------ activity, offline */

int store_activity_each(const char *dir, int64_t since_ms,
                        void (*row)(void *ctx, const char *entry, size_t len, const char *hash),
                        void *ctx, err_t *err)
{
    buf_t path = {0};
    buf_printf(&path, "%s/livedb.db", dir);
    sqlite3 *db = NULL;
    int rc = open_conn(path.p, true, &db, err);
    buf_free(&path);
    if (rc)
        return -1;
    sqlite3_stmt *s = NULL;
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    rc = sqlite3_prepare_v2(db, "SELECT entry, hash FROM activity WHERE at >= ?1 ORDER BY seq",
                            -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, since_ms);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            row(ctx, (const char *)sqlite3_column_text(s, 0), (size_t)sqlite3_column_bytes(s, 0),
                (const char *)sqlite3_column_text(s, 1));
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK)
        db_err(err, db, rc, "activity");
    sqlite3_finalize(s);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    return err->code ? -1 : 0;
}

/* ------------------------------------------------------------------ export */

/* One collection's documents as a JSON array, ordered by id ([] when it
 * has no table yet). */
static int export_col(sqlite3 *db, const char *col, FILE *out, err_t *err)
{
    buf_t sql = {0};
    buf_printf(&sql, "SELECT body FROM \"c_%s\" ORDER BY id", col);
    sqlite3_stmt *rows = NULL;
    int rc = sqlite3_prepare_v2(db, sql.p, -1, &rows, NULL);
    buf_free(&sql);
    if (rc != SQLITE_OK) {
        if (no_table(db)) {
            fputs("[]", out);
            return 0;
        }
        return db_err(err, db, rc, "export");
    }
    fputc('[', out);
    int n = 0;
    while ((rc = sqlite3_step(rows)) == SQLITE_ROW) {
        fputs(n++ ? ",\n" : "\n", out);
        fwrite(sqlite3_column_text(rows, 0), 1, (size_t)sqlite3_column_bytes(rows, 0), out);
    }
    sqlite3_finalize(rows);
    if (rc != SQLITE_DONE)
        return db_err(err, db, rc, "export");
    fputc(']', out);
    return 0;
}

/* Every collection (cols NULL), or those named, from one read transaction. */
static int export_from(const char *dir, const char *const *cols, FILE *out, err_t *err)
{
    buf_t path = {0};
    buf_printf(&path, "%s/livedb.db", dir);
    sqlite3 *db = NULL;
    int rc = open_conn(path.p, true, &db, err);
    buf_free(&path);
    if (rc)
        return -1;
    sqlite3_stmt *tables = NULL;
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    fputc('{', out);
    if (cols) {
        fprintf(out, "\"seq\":%lld", (long long)query_i64(db, "SELECT max(seq) FROM changes", 0));
        for (int i = 0; cols[i] && !err->code; i++) {
            fprintf(out, ",\n\"%s\":", cols[i]);
            export_col(db, cols[i], out, err);
        }
        goto done;
    }
    rc = sqlite3_prepare_v2(db, "SELECT substr(name, 3) FROM sqlite_schema WHERE type='table'"
                                " AND name LIKE 'c\\_%' ESCAPE '\\' AND name NOT LIKE 'c\\_\\_%' ESCAPE '\\'"
                                " ORDER BY name",
                            -1, &tables, NULL);
    if (rc != SQLITE_OK) {
        db_err(err, db, rc, "export");
        goto done;
    }
    int ncol = 0;
    while (!err->code && (rc = sqlite3_step(tables)) == SQLITE_ROW) {
        fprintf(out, "%s\n\"%s\":", ncol++ ? "," : "", sqlite3_column_text(tables, 0));
        export_col(db, (const char *)sqlite3_column_text(tables, 0), out, err);
    }
    if (!err->code && rc != SQLITE_DONE)
        db_err(err, db, rc, "export");
done:
    fputs("\n}\n", out);
    sqlite3_finalize(tables);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    return err->code ? -1 : 0;
}

int store_export(const char *dir, FILE *out, err_t *err) { return export_from(dir, NULL, out, err); }

int store_export_cols(const char *dir, const char *const *cols, FILE *out, err_t *err)
{
    return export_from(dir, cols, out, err);
}
