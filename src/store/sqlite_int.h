/*
 * sqlite_int.h: what the SQLite backend's files share (private to
 * src/store/).
 *
 *   sqlite.c        errors, opening, the schema, the txn_methods of
 *                   core/txn.h (rows, the feed, the log, savepoints:
 *                   prepared statements), closing
 *   sqlite_reads.c  read jobs on the reader pool, and the accounts loaded
 *                   at start
 *   offline.c       work on a database with a connection of its own:
 *                   verify, the activity log for the command line, export
 * The queue, the groups and the thread are the store's (store_int.h).
 */
#ifndef LIVEDB_SQLITE_INT_H
#define LIVEDB_SQLITE_INT_H

#include "store_int.h"

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

/* The SQLite backend's state (store->be_state). */
typedef struct sqstore {
    store_t *store;
    char *path;

    /* Writer thread state: touched by the writer only (after start). */
    sqlite3 *wdb;
    sqlite3_stmt *ins_change, *idem_get, *idem_put, *probe;
    sqlite3_stmt *ins_activity, *cred_put, *sess_put, *sess_del, *sess_del_account;
    /* Transaction control, prepared once: compiling "SAVEPOINT job" for
     * every request cost more than the request's inserts. */
    sqlite3_stmt *begin, *commit, *rollback, *savepoint, *release, *rollback_to;
    colstmts *cols[COLS_BUCKETS];

    /* Readers. */
    pthread_mutex_t rmu;
    pthread_cond_t rcv;
    reader *free_readers;
    reader *all_readers;
} sqstore;


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

/* sqlite.c: the methods core's writes go through. */
extern const txn_methods sqlite_txn_methods;

/* sqlite_reads.c: whether a read failed because the table is not there
 * (yet); the backend's read and load_auth. */
bool no_table(sqlite3 *db);
void sqlite_read(store_t *st, rjob *job);
/* offline.c: the backend's work with a connection of its own. */
int sqlite_verify(const store_opts *where, int64_t *entries, err_t *err);
int sqlite_activity_each(const store_opts *where, int64_t since_ms, store_activity_row row,
                         void *ctx, err_t *err);
int sqlite_export(const store_opts *where, const char *const *cols, FILE *out, err_t *err);
int sqlite_load_auth(store_t *st, const store_auth_cb *cb, err_t *err);

#endif
