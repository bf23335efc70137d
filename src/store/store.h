/*
 * store.h: durable storage of documents and the change feed.
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

#include "../core/err.h"
#include "../core/feed.h"
#include "../core/query.h"
#include "../util/util.h"

typedef struct store store_t;

typedef struct store_opts {
    const char *dir;        /* data directory (created if missing) */
    int64_t retain_changes; /* changes kept in the feed table (>= 1) */
    int readers;            /* read-only connections */
    int auto_index_max;     /* automatic indexes per collection */
} store_opts;

/* Called on the loop thread with each committed change, in seq order,
 * before the done callbacks of the jobs of that commit. Takes a reference. */
typedef void (*store_commit_cb)(void *ctx, change_t *ch);

int store_open(store_t **out, uv_loop_t *loop, const store_opts *opts, err_t *err);
void store_set_commit_cb(store_t *st, store_commit_cb cb, void *ctx);
/* Stops taking jobs, lets the writer finish every queued job and delivers
 * their answers; then `done` runs on the loop. */
void store_drain(store_t *st, void (*done)(void *), void *ctx);
void store_close(store_t *st);

/* ------------------------------------------------------------------ writes */

typedef enum wop_kind { W_CREATE, W_PUT, W_PATCH, W_DELETE } wop_kind;

typedef struct wop {
    wop_kind kind;
    char col[65];
    char *id;           /* owned; NULL for a create that wants an id made */
    json_t *doc;        /* owned; the client object (create/put) or patch */
    int64_t if_version; /* -1: no precondition; -2: must exist */
    bool skip_unchanged; /* W_PUT: no write when the stored members are equal */
} wop;

typedef enum wjob_kind { WJ_OPS, WJ_PROBE, WJ_INDEX } wjob_kind;

typedef struct wjob {
    wjob_kind kind;
    /* WJ_OPS: one op (a single request) or many (a batch: all or none). */
    wop *ops;
    int nops;
    bool is_batch;
    /* Idempotency: when key is set, the first successful answer for
     * (account, key) is stored with the writes and given again. */
    char *idem_account;
    char *idem_key;
    /* WJ_INDEX */
    char *index_col, *index_field;

    /* Filled by the writer. On success: status and answer (the document,
     * {"id","version"} for delete, or {"results":[..],"seq":S} for a
     * batch); on failure: err (with details.index for a batch). */
    err_t err;
    int status;
    buf_t answer;
    int64_t version; /* of the single op's document (for ETag) */
    int64_t seq;     /* feed position after this job */
    bool replayed;   /* answered from the idempotency table */
    change_t *changes; /* list in seq order, owned until delivered */

    void (*done)(struct wjob *job);
    void *ctx;
    struct wjob *next;
    uint64_t t_queued;
} wjob;

wjob *wjob_new(wjob_kind kind, int nops);
void wjob_free(wjob *job);
/* Queues a job for the writer; job->done runs later on the loop thread.
 * After store_drain began, the job fails at once with 503. */
void store_submit(store_t *st, wjob *job);

/* Asks for an index on col.field (created in the background, at most
 * auto_index_max per collection). Cheap when it exists already. */
void store_want_index(store_t *st, const char *col, const char *field);

/* ------------------------------------------------------------------ reads */

typedef enum rjob_kind { R_GET, R_LIST, R_CHANGES, R_SNAPSHOT } rjob_kind;

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

    void (*done)(struct rjob *job);
    void *ctx;
    store_t *st;
    uv_work_t work;
} rjob;

rjob *rjob_new(rjob_kind kind);
void rjob_free(rjob *job);
void store_read(store_t *st, rjob *job);

/* ------------------------------------------------------------------ export */

/* Writes every collection as one JSON object {"COL":[doc, ...], ...} from
 * one read snapshot of the database in dir. Safe while a server runs. */
int store_export(const char *dir, FILE *out, err_t *err);

/* ------------------------------------------------------------------ state */

/* The seq of the last durable commit (any thread). */
int64_t store_committed_seq(const store_t *st);
/* The oldest seq still in the feed table; a `since` below first-1 is gone. */
int64_t store_first_seq(const store_t *st);
/* Jobs waiting for the writer. */
int store_queue_depth(store_t *st);
/* Monotonic ns of the writer's last progress, and whether it is busy. */
uint64_t store_writer_heartbeat(store_t *st, bool *busy);
const char *store_dir(const store_t *st);

#endif
