/*
 * sqlite_int.h: what the SQLite store's files share (private to src/store/).
 *
 * The store is one object (struct store) split across files by what a
 * reader looks for:
 *   sqlite.c   errors, opening, the schema, the txn_methods of core/txn.h
 *              (rows, the feed, the log, savepoints: prepared statements),
 *              closing
 *   writer.c   the writer's queue, groups (group commit), the thread, pruning;
 *              what a job means is core's (core/txn.c)
 *   reads.c    read jobs on the reader pool, and the accounts loaded at start
 *   offline.c  work on a database with a connection of its own: verify,
 *              the activity log for the command line, export
 * Nothing outside src/store/ includes this file.
 */
#ifndef LIVEDB_SQLITE_INT_H
#define LIVEDB_SQLITE_INT_H

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
#include "../util/log.h"
#include "../util/metrics.h"
#include "backup.h"
#include "sqlite_query.h"
#include "vfs.h"

#define MAX_GROUP 1024          /* jobs in one transaction */
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
    /* Transaction control, prepared once: compiling "SAVEPOINT job" for
     * every request cost more than the request's inserts. */
    sqlite3_stmt *begin, *commit, *rollback, *savepoint, *release, *rollback_to;
    colstmts *cols[COLS_BUCKETS];
    /* Core's side of the writer: the next seqs, the log's last hash, the
     * group's state; its methods are this store's (sqlite.c). */
    txn_t txn;
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


/* ------------------------------------------------------------------ shared helpers */

/* sqlite.c */
err_code sq_code_of(int rc);
int sq_err(err_t *err, sqlite3 *db, int rc, const char *what);
int sq_exec(sqlite3 *db, const char *sql, err_t *err);
sqlite3_stmt *sq_prepare(sqlite3 *db, const char *sql);
int sq_step(sqlite3_stmt *stmt);
int sq_open(const char *path, bool readonly, sqlite3 **out, err_t *err);
int64_t sq_query_i64(sqlite3 *db, const char *sql, int64_t dflt);
int64_t sq_query_i64_text2(sqlite3 *db, const char *sql, const char *a, const char *b);

/* writer.c */
void *writer_main(void *arg);
void on_done_async(uv_async_t *h);

/* sqlite.c: the methods core's writes go through. */
extern const txn_methods sqlite_txn_methods;

/* reads.c: whether a read failed because the table is not there (yet). */
bool no_table(sqlite3 *db);

#endif
