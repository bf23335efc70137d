/*
 * store_int.h: what the store's files share (private to src/store/).
 *
 * The store is one object (struct store) with two halves:
 *   store.c, writer.c  the part every backend shares: opening the data
 *                      directory and its lock, the writer's queue, its
 *                      groups (group commit) and its thread, the done queue
 *                      back to the loop, read jobs on the thread pool;
 *                      what a write job means is core's (core/txn.c)
 *   a backend          where the rows live: SQLite (sqlite.c, sqlite_reads.c,
 *                      offline.c) or PostgreSQL (pg.c, pg_node.c,
 *                      pg_reads.c). It fills core's txn_methods for the
 *                      writer and the store_backend table below for the rest.
 * Nothing outside src/store/ includes this file.
 */
#ifndef LIVEDB_STORE_INT_H
#define LIVEDB_STORE_INT_H

#include "store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#define MAX_GROUP 1024 /* jobs in one transaction */

typedef void (*store_activity_row)(void *ctx, const char *entry, size_t len, const char *hash);

/* What differs between backends, beyond core's txn_methods. */
typedef struct store_backend {
    const char *name; /* "sqlite", "postgres" */
    /* Fills st->be_state and st->txn (txn_init) and the feed's position
     * (committed_seq, first_seq), under the data directory's lock. */
    int (*open)(store_t *st, err_t *err);
    /* On a thread of the pool: the read, inside one read snapshot. */
    void (*read)(store_t *st, rjob *job);
    /* At start, before serving (store_load_auth). */
    int (*load_auth)(store_t *st, const store_auth_cb *cb, err_t *err);
    /* On the writer thread after a group: drops changes before first and,
     * when idem_before > 0, idempotency records older than it. 0 when
     * done. */
    int (*prune)(store_t *st, int64_t first, int64_t idem_before);
    /* May be NULL. On the loop thread once the writer runs: start what
     * hands committed changes on (PostgreSQL: the shared feed). */
    int (*start)(store_t *st, err_t *err);
    /* May be NULL. Whether the backend can serve at the moment (false
     * while PostgreSQL is unreachable), and why not. */
    bool (*up)(store_t *st, const char **why);
    /* May be NULL (the jobs carry their changes). On the loop thread,
     * before the answers of jobs whose changes go up to seq: hand on what
     * the feed has up to there, so that a client that was answered finds
     * its own write in this node's feed (read your writes). */
    void (*catch_up)(store_t *st, int64_t seq);
    /* May be NULL (no other nodes). On the loop thread: presence said to
     * every node (store_presence_say). */
    void (*presence_say)(store_t *st, const char *line);
    /* May be NULL. On the loop thread when draining begins. */
    void (*stop)(store_t *st);
    /* After the writer stopped: frees the backend's state. */
    void (*close)(store_t *st);

    /* Work with a connection of its own, on where (store.h: verify,
     * activity_each, export_cols; cols NULL: every collection). */
    int (*verify)(const store_opts *where, int64_t *entries, err_t *err);
    int (*activity_each)(const store_opts *where, int64_t since_ms, store_activity_row row,
                         void *ctx, err_t *err);
    int (*export_cols)(const store_opts *where, const char *const *cols, FILE *out, err_t *err);
} store_backend;

struct store {
    uv_loop_t *loop;
    char *dir;
    int lock_fd;
    store_opts opts;
    const store_backend *be;
    void *be_state; /* the backend's (sqstore, pgnode) */

    /* Core's side of the writer: the next seqs, the log's last hash, the
     * group's state; its methods are the backend's. Writer thread only. */
    txn_t txn;
    int64_t last_prune_check;
    /* Whether committed changes reach commit_cb from the jobs (SQLite: one
     * writer, commit order is job order) or from the backend's feed
     * (PostgreSQL: every node's commits, in seq order). */
    bool feed_from_jobs;

    /* Queue into the writer. */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wjob *q_head, *q_tail;
    int q_len;
    bool stopping; /* no more jobs accepted */
    bool exit_writer;

    /* Done queue back to the loop. */
    uv_async_t async;
    wjob *d_head, *d_tail;
    bool draining;
    bool stopped;
    void (*drained)(void *);
    void *drained_ctx;
    bool writer_exited;

    store_commit_cb commit_cb;
    void *commit_ctx;
    store_auth_event_cb auth_cb;
    void *auth_ctx;
    void (*presence_cb)(void *ctx, const char *line);
    void *presence_ctx;

    /* Indexes known or asked for: "col\tfield" strings (loop thread). */
    char **index_keys;
    size_t n_index_keys;

    _Atomic int64_t committed_seq;
    _Atomic int64_t first_seq;
    _Atomic uint64_t heartbeat;
    atomic_bool busy;
    /* Writes are stopped for good: on SQLite, an fsync failed (after a
     * failed fsync the kernel may have dropped the pages it could not
     * write and report the next fsync as fine: PostgreSQL's 2018 lesson).
     * Reads go on; a restart recovers from what is really on disk. */
    atomic_bool failed;
};

/* writer.c */
void *writer_main(void *arg);
void on_done_async(uv_async_t *h);
/* Remembers that col.field has an index (at open: the indexes made). */
void store_index_known(store_t *st, const char *col, const char *field);

/* The backends (sqlite.c, pg_node.c). */
extern const store_backend sqlite_backend, pg_backend;

/* One entry of the activity log's hash chain, read in seq order: h is the
 * hash so far (zeros before the first), *expect the seq it must have (0:
 * any). 0, or -1 with err naming the entry that breaks the chain. */
int store_chain_step(unsigned char h[32], int64_t *expect, int64_t seq, int64_t at_ms,
                     const char *account, const char *action, const char *entry, size_t n,
                     const char *stored, err_t *err);


/* Reads that every backend shares the result shape of: a document the
 * caller may not read does not exist for them (R_GET). */
bool store_may_read(const rjob *job, const char *body, size_t len);
/* R_CHANGES: a change read (taken), shown to job's actor if auth (NULL:
 * an admin) lets it see it, in the form job asks for; true when shown
 * (job->count counts those). R_ACTIVITY: an entry, with its hash. */
bool store_emit_change(rjob *job, change_t *ch, const json_t *auth, change_t ***tail);
void store_emit_entry(rjob *job, const char *entry, size_t n, const char *hash, size_t hn);
/* R_SNAPSHOT: its first (empty) chunk; then each document, a new chunk
 * when the last one holds chunk_bytes. */
void store_snapshot_begin(rjob *job);
void store_snapshot_add(rjob *job, const char *doc, size_t len);

#endif
