/*
 * store.h: durable storage of documents and the change feed.
 *
 * Two backends hold the rows: SQLite (DATA/livedb.db, the default) and
 * PostgreSQL (several nodes over one database). Everything here means the
 * same on both.
 *
 * One writer thread owns the only writing connection and commits groups of
 * jobs (group commit): every job queued while the previous commit was on
 * its way to disk goes into the next transaction, each in its own
 * SAVEPOINT so that one failing job fails alone. A job's answer and its
 * changes are handed back to the loop thread only after COMMIT returned,
 * that is after the WAL is fsynced (synchronous=FULL).
 *
 * Reads run on the libuv thread pool with read-only connections, each in
 * one read transaction, so that a list and the feed position it reports
 * come from one snapshot.
 *
 * Threads: store_submit, store_read and store_want_index are called on the
 * loop thread; every done callback runs on the loop thread.
 */
#ifndef LIVEDB_STORE_H
#define LIVEDB_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "../core/access.h"
#include "../core/err.h"
#include "../core/feed.h"
#include "../core/query.h"
#include "../core/txn.h"
#include "../util/util.h"

typedef struct store store_t;

/* Activity entries (newest first) matching the filters, as JSON objects
 * appended to out with commas; a read on the caller's thread with its own
 * connection (the CLI, and the export stream through the reader pool). */
typedef struct activity_query {
    int64_t since_ms, until_ms;   /* 0: unbounded */
    const char *actor, *action;   /* NULL: any */
    int64_t before_seq;           /* 0: from the newest */
    int64_t after_seq;            /* with ascending: from the oldest after this */
    bool ascending;
    int limit;
} activity_query;

typedef struct store_opts {
    const char *dir;        /* data directory (created if missing) */
    int64_t retain_changes; /* changes kept in the feed table (>= 1) */
    int readers;            /* read-only connections */
    int auto_index_max;     /* automatic indexes per collection */
    /* The start-up check (backup.h backup_recover): with auto_recover, a
     * damaged database is replaced by the newest good backup, and what
     * happened is told in *recovered (may be NULL). */
    bool auto_recover;
    struct recovery *recovered;
    /* Make the served apps' collections before the first job (a server
     * function never creates a table inside its transaction). */
    bool app_collections;
    /* PostgreSQL instead of DATA/livedb.db (NULL: SQLite): a libpq
     * connection string or postgres:// URL, and the schema livedb's tables
     * live in (NULL: "livedb"). dir then holds only the node's own files. */
    const char *postgres;
    const char *pg_schema;
} store_opts;

/* Called on the loop thread with each job's committed changes and
 * activity entries, in commit order, before the job's done callback. */
typedef void (*store_commit_cb)(void *ctx, change_t *ch, activity_rec *activity);

int store_open(store_t **out, uv_loop_t *loop, const store_opts *opts, err_t *err);
void store_set_commit_cb(store_t *st, store_commit_cb cb, void *ctx);
/* Stops taking jobs, lets the writer finish every queued job and delivers
 * their answers; then `done` runs on the loop. */
void store_drain(store_t *st, void (*done)(void *), void *ctx);
void store_close(store_t *st);

/* ------------------------------------------------------------------ writes */

/* The write jobs (wjob, wop) and server functions (fn_tx) are core's:
 * core/txn.h. */

/* Queues a job for the writer; job->done runs later on the loop thread.
 * After store_drain began, the job fails at once with 503. */
void store_submit(store_t *st, wjob *job);

/* Asks for an index on col.field (created in the background, at most
 * auto_index_max per collection). Cheap when it exists already. */
void store_want_index(store_t *st, const char *col, const char *field);

/* ------------------------------------------------------------------ reads */

/* R_SESSION: the session whose token hash is id; out gets
 * {"session":SID,"account":ID,"expires_at":MS} when found. */
typedef enum rjob_kind { R_GET, R_LIST, R_CHANGES, R_SNAPSHOT, R_ACTIVITY, R_SESSION } rjob_kind;

/* A piece of a snapshot: documents [off, off+len) of rjob.out, comma
 * separated, count of them. */
typedef struct snap_chunk {
    size_t off, len;
    int count;
} snap_chunk;

typedef struct rjob {
    rjob_kind kind;
    char col[65];
    char *id;        /* R_GET */
    query_t query;   /* R_LIST, R_SNAPSHOT (every match, ordered by id) */
    int64_t since;   /* R_CHANGES */
    int limit;       /* R_CHANGES */
    bool col_filter; /* R_CHANGES: only changes of col */
    actor_t actor;   /* rules filter what the read returns */
    bool sse;        /* R_CHANGES: out as Server-Sent Events, not a list */
    bool want_recs;  /* R_CHANGES: as change records in recs, not text */
    size_t chunk_bytes; /* R_SNAPSHOT: documents per chunk, in bytes (about) */

    /* Results. */
    err_t err;
    bool found;    /* R_GET */
    int64_t version;
    buf_t out;     /* R_GET: the document; R_LIST: {"docs":[..],"seq":S,"next":..};
                      R_CHANGES: the changes as "c1,c2,..." (no brackets),
                      or as events "id: N\ndata: C\n\n" with sse */
    int64_t seq;   /* R_LIST, R_SNAPSHOT: snapshot position; R_CHANGES: position covered */
    int count;     /* R_LIST / R_CHANGES / R_SNAPSHOT: how many */
    change_t *recs;    /* R_CHANGES with want_recs: list in seq order (owned) */
    snap_chunk *chunks; /* R_SNAPSHOT: at least one (maybe empty) */
    int nchunks;
    activity_query aq;  /* R_ACTIVITY: out gets "e1,e2,..."; seq the last seq */
    int64_t top_seq;    /* R_ACTIVITY: the newest entry in the log when it was read */
    char *aq_actor, *aq_action; /* owned strings behind aq */

    void (*done)(struct rjob *job);
    void *ctx;
    store_t *st;
    uv_work_t work;
} rjob;

rjob *rjob_new(rjob_kind kind);
void rjob_free(rjob *job);
void store_read(store_t *st, rjob *job);

/* ------------------------------------------------------------------ accounts */

/* At start, before serving: every account document, password hash and
 * live session, handed to the callbacks. */
typedef struct store_auth_cb {
    void (*account)(void *ctx, const char *doc, size_t len);
    void (*credential)(void *ctx, const char *account, const char *hash);
    void (*session)(void *ctx, const char *token_hash, const char *session, const char *account,
                    int64_t expires_at);
    void *ctx;
} store_auth_cb;
int store_load_auth(store_t *st, const store_auth_cb *cb, err_t *err);

/* Several nodes over one database: what a node changed of the accounts,
 * sessions and passwords, on the loop thread of every node, after it
 * committed. key is a token hash (STORE_AUTH_SESSION_END), an account id
 * (the others); value the new password hash (STORE_AUTH_CREDENTIAL), the
 * account's document (STORE_AUTH_ACCOUNT; NULL: deleted). STORE_AUTH_RESYNC:
 * the node may have missed some (PostgreSQL was away): forget the cached
 * sessions (they are looked up again, R_SESSION) and load the rest again.
 * Whether the store has other nodes at all: store_shared. */
typedef enum store_auth_event {
    STORE_AUTH_SESSION_END,
    STORE_AUTH_ACCOUNT_END,
    STORE_AUTH_CREDENTIAL,
    STORE_AUTH_ACCOUNT,
    STORE_AUTH_RESYNC,
} store_auth_event;
typedef void (*store_auth_event_cb)(void *ctx, store_auth_event ev, const char *key,
                                    const char *value);
void store_set_auth_event_cb(store_t *st, store_auth_event_cb cb, void *ctx);
bool store_shared(const store_t *st);

/* Several nodes: presence, which is not data (nothing is stored): a line
 * of text (at most STORE_PRESENCE_MAX bytes) this node says to every node,
 * itself included, and what they say, on the loop thread. "*" heard: the
 * node may have missed some (the database was away). Nothing happens on a
 * store without other nodes. */
#define STORE_PRESENCE_MAX 7900
void store_presence_say(store_t *st, const char *line);
void store_set_presence_cb(store_t *st, void (*cb)(void *ctx, const char *line), void *ctx);

/* ------------------------------------------------------------------ activity */

/* The offline work below takes where the data is: where->dir
 * (DATA/livedb.db) or where->postgres and where->pg_schema; a running
 * store's own: store_where. */
const store_opts *store_where(const store_t *st);

/* Checks the activity log's hash chain (and, on SQLite, the database's
 * integrity): 0 when sound; -1 with err naming the first broken entry.
 * *entries gets how many were checked. */
int store_verify(const store_opts *where, int64_t *entries, err_t *err);

/* Every activity entry from since_ms on, oldest first, read with a
 * connection of its own (the command line). */
int store_activity_each(const store_opts *where, int64_t since_ms,
                        void (*row)(void *ctx, const char *entry, size_t len, const char *hash),
                        void *ctx, err_t *err);

/* ------------------------------------------------------------------ export */

/* Writes every collection as one JSON object {"COL":[doc, ...], ...} from
 * one read snapshot of the database. Safe while a server runs. */
int store_export(const store_opts *where, FILE *out, err_t *err);
/* The same for the named collections only (NULL-terminated), inside an
 * object that also holds the seq they were read at:
 * {"seq":S,"COL":[...],...}. */
int store_export_cols(const store_opts *where, const char *const *cols, FILE *out, err_t *err);

/* ------------------------------------------------------------------ state */

/* The seq of the last durable commit (any thread). */
int64_t store_committed_seq(const store_t *st);
/* Whether writes are stopped for good (an fsync failed; see sqlite.c). */
bool store_failed(const store_t *st);
/* The oldest seq still in the feed table; a `since` below first-1 is gone. */
int64_t store_first_seq(const store_t *st);
/* Jobs waiting for the writer. */
int store_queue_depth(store_t *st);
/* Monotonic ns of the writer's last progress, and whether it is busy. */
uint64_t store_writer_heartbeat(store_t *st, bool *busy);
const char *store_dir(const store_t *st);
/* "sqlite" or "postgres". */
const char *store_backend_name(const store_t *st);
/* Whether the database can be reached now; *why says why not. */
bool store_up(store_t *st, const char **why);

#endif
