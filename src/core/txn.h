/*
 * txn.h: what a write means, and the table of functions a store fills in
 * to hold it.
 *
 * A write job (wjob) is one request, a batch, a server-function call, a
 * health probe or an index to build. The store's writer takes jobs in
 * groups; for each group core runs every job inside one transaction of
 * the store's (txn_run_group): versions and If-Match, the collections'
 * rules and schemas, merge patch, the change rows of the feed, the
 * activity log's hash chain, idempotency keys, server functions (fn_tx)
 * and the one undo path that gives a failed job's seqs back.
 *
 * The store only stores: it fills a txn_methods table with its begin,
 * commit, savepoints and the rows (like sqlite3_io_methods for a VFS, or
 * Redis's aeApi for an event loop). store/sqlite.c is one such store;
 * tests/unit/memstore.c is another, in memory, for the unit tests.
 *
 * Threads: every txn_* function and every method runs on the store's
 * writer thread, one group at a time.
 */
#ifndef LIVEDB_TXN_H
#define LIVEDB_TXN_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "../util/util.h"
#include "access.h"
#include "err.h"
#include "feed.h"
#include "query.h"

/* How long an idempotency key's answer is given again. */
#define TXN_IDEMPOTENCY_MS (24LL * 3600 * 1000)

/* ------------------------------------------------------------------ jobs */

/* An activity-log entry, as committed: the JSON text of the entry (with
 * its seq and hash), for the `_activity` subscribers. */
typedef struct activity_rec {
    int64_t seq;
    char *json;
    size_t len;
    struct activity_rec *next;
} activity_rec;

/* Document ops, and ops on the private tables the API never shows:
 * W_CRED sets account id's password hash (doc {"hash"}); W_SESSION_ADD
 * stores a session under a token's hash (id; doc {"session","account",
 * "expires_at"}); W_SESSION_DEL forgets one (id: the token hash);
 * W_SESSIONS_DEL forgets every session of account id. */
typedef enum wop_kind {
    W_CREATE, W_PUT, W_PATCH, W_DELETE,
    W_CRED, W_SESSION_ADD, W_SESSION_DEL, W_SESSIONS_DEL,
} wop_kind;

typedef struct wop {
    wop_kind kind;
    char col[65];
    char *id;           /* owned; NULL for a create that wants an id made */
    json_t *doc;        /* owned; the client object (create/put) or patch */
    int64_t if_version; /* -1: no precondition; -2: must exist */
    bool skip_unchanged; /* W_PUT: no write when the stored members are equal */
} wop;

typedef enum wjob_kind { WJ_OPS, WJ_PROBE, WJ_INDEX, WJ_FN } wjob_kind;

/* A server function runs on the writer thread, inside the group's
 * transaction: nothing else writes between what it reads and what it
 * writes, so a check like "stock >= qty" holds until the commit, and a
 * failure undoes all of it. Its writes take the same path as requests
 * (schemas, the change feed, the activity log) but not the collections'
 * rules: the function decides who may do what. */
typedef struct fn_tx fn_tx;
typedef int (*fn_impl)(fn_tx *t, const json_t *args, json_t **result);

/* The stored document (a new reference), or NULL when there is none. */
json_t *fn_get(fn_tx *t, const char *col, const char *id);
/* The documents of col matching q (at most q->limit, 0: all), as an array. */
json_t *fn_find(fn_tx *t, const char *col, const query_t *q);
/* Creates (id may be NULL: one is made), puts, patches or deletes a
 * document; takes doc. Returns the document written (a new reference), or
 * NULL with the error set (the function then returns -1). */
json_t *fn_write(fn_tx *t, wop_kind kind, const char *col, const char *id, json_t *doc);
const actor_t *fn_actor(fn_tx *t);
/* The transaction's time, RFC 3339. */
const char *fn_now(fn_tx *t);
/* Fails the call with code and message (details taken, may be NULL); -1. */
int fn_fail(fn_tx *t, err_code code, json_t *details, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

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
    /* WJ_FN: the function, its name and arguments (owned). The answer is
     * its result; a refusal of the function is in fn_err (the job itself
     * commits: the call is logged either way). */
    fn_impl fn;
    char fn_name[65];
    json_t *fn_args;
    err_t fn_err;
    /* Who asks: rules apply to it (unless system or admin), and every
     * write is logged under its name. */
    actor_t actor;
    /* An activity entry the job adds besides its writes (login, logout,
     * a client's event...): action and data (owned, may be NULL). */
    char log_action[33];
    json_t *log_data;

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
    activity_rec *activity; /* the entries it logged, owned */

    void (*done)(struct wjob *job);
    void *ctx;
    struct wjob *next;
    uint64_t t_queued;
} wjob;

wjob *wjob_new(wjob_kind kind, int nops);
void wjob_free(wjob *job);
void activity_free(activity_rec *a);
/* Drops a list of changes (each change_unref'd). */
void change_list_free(change_t *ch);

/* ------------------------------------------------------------------ the store's side */

/* What put and get say besides 0 and -1. */
enum { TXN_FOUND = 1, TXN_EXISTS = 2, TXN_UNIQUE = 3 };

/* A stored document row. */
typedef struct txn_row {
    int64_t version;
    char *created;  /* owned (RFC 3339) */
    buf_t body;     /* the stored text */
} txn_row;

/* Every method gets the store (s) it was given with the table. Those that
 * take err set it when they fail (-1), with the codes of err.h:
 * E_STORAGE_FULL and E_UNAVAILABLE for the disk, E_INTERNAL otherwise. */
typedef struct txn_methods {
    /* The group's transaction, and a savepoint inside it (one at a time:
     * a job's). rollback_to undoes the savepoint's writes and ends it. */
    int (*begin)(void *s, err_t *err);
    int (*commit)(void *s, err_t *err);
    void (*rollback)(void *s);
    int (*savepoint)(void *s, err_t *err);
    void (*release)(void *s);
    void (*rollback_to)(void *s);
    /* Whether a transaction is still open: a store may give one up on its
     * own (SQLite does after some I/O errors). */
    bool (*in_tx)(void *s);

    /* Outside a transaction (DDL commits alone): a collection's table
     * with the app's declared unique fields and indexes; an automatic
     * index on col.field (the store bounds how many). */
    int (*ensure_col)(void *s, const char *col, err_t *err);
    int (*auto_index)(void *s, const char *col, const char *field, err_t *err);

    /* Rows: get gives TXN_FOUND (row filled), 0 (none) or -1. put writes
     * a new row (created set: an insert, TXN_EXISTS when the id is taken)
     * or a new version (created NULL); TXN_UNIQUE with *slot, the schema
     * field whose unique value another document holds. */
    int (*get)(void *s, const char *col, const char *id, txn_row *row, err_t *err);
    int (*put)(void *s, const char *col, const char *id, int64_t version, const char *created,
               const char *now, const char *body, size_t len, int *slot, err_t *err);
    int (*del)(void *s, const char *col, const char *id, err_t *err);
    /* The documents of col matching q, as a JSON array (never NULL). */
    json_t *(*find)(void *s, const char *col, const query_t *q);

    /* The feed and the log. */
    int (*append_change)(void *s, const change_t *ch, err_t *err);
    int (*append_activity)(void *s, int64_t seq, int64_t at_ms, const char *account,
                           const char *action, const char *entry, size_t len,
                           const char hash_hex[64], err_t *err);

    /* Idempotency: the answer stored for (account, key) at or after
     * since_ms: TXN_FOUND, 0 or -1; and storing one. */
    int (*idem_get)(void *s, const char *account, const char *key, int64_t since_ms,
                    int *status, int64_t *version, buf_t *body);
    int (*idem_put)(void *s, const char *account, const char *key, int64_t at_ms, int status,
                    int64_t version, const char *body, size_t len, err_t *err);

    /* The private tables: password hashes and sessions. */
    int (*cred_put)(void *s, const char *account, const char *hash, err_t *err);
    int (*session_put)(void *s, const char *token_hash, const char *session,
                       const char *account, int64_t created_ms, int64_t expires_ms, err_t *err);
    int (*session_del)(void *s, const char *token_hash, err_t *err);
    int (*sessions_del)(void *s, const char *account, err_t *err);

    /* The health probe: a small write that proves the disk takes them. */
    int (*probe)(void *s, int64_t now_ms, err_t *err);

    /* A test seam (may be NULL): true when a server function's write
     * after its first is to fail, to test the undo of a call. */
    bool (*write_fault)(void *s);

    /* A store that several writers share (may be NULL: this process is
     * the only writer, and txn_t's own count is the truth). Called just
     * after begin: where the feed and the log stand now, under a lock that
     * the transaction holds until it ends, so that groups commit one after
     * another in seq order; the store writes the new head at commit. */
    int (*head)(void *s, int64_t *next_seq, int64_t *next_aseq, unsigned char last_hash[32],
                err_t *err);
    /* May be NULL. Just after head: the group's jobs, for a store that
     * learns in one round trip which of the ids they create are free (and
     * then need not wait for the answer of each insert). A failure here
     * only costs that: put still answers TXN_EXISTS. */
    void (*prefetch)(void *s, const wjob *jobs);
} txn_methods;

/* The designators of every method a store must fill, for a store whose
 * functions are named P_begin, P_commit, ... (the optional ones, such as
 * write_fault and head, follow in the store's own table):
 *     const txn_methods my_methods = {TXN_METHODS(m), .head = m_head};  */
#define TXN_METHODS(P)                                                                   \
    .begin = P##_begin, .commit = P##_commit, .rollback = P##_rollback,                  \
    .savepoint = P##_savepoint, .release = P##_release, .rollback_to = P##_rollback_to,  \
    .in_tx = P##_in_tx, .ensure_col = P##_ensure_col, .auto_index = P##_auto_index,      \
    .get = P##_get, .put = P##_put, .del = P##_del, .find = P##_find,                    \
    .append_change = P##_append_change, .append_activity = P##_append_activity,          \
    .idem_get = P##_idem_get, .idem_put = P##_idem_put, .cred_put = P##_cred_put,        \
    .session_put = P##_session_put, .session_del = P##_session_del,                      \
    .sessions_del = P##_sessions_del, .probe = P##_probe

/* ------------------------------------------------------------------ core's side */

/* The writer's state between groups. */
typedef struct txn {
    const txn_methods *m;
    void *s;
    int64_t next_seq;            /* the next change's seq */
    int64_t next_aseq;           /* the next activity entry's seq */
    unsigned char last_hash[32]; /* the newest entry's hash (zeros: none) */

    /* Within a group. Server functions run without a savepoint of their
     * own (SQLite's sub-journal copies every page a call touches: 7-15% of
     * the writer's time under place_order). One that fails after a write
     * cannot be undone alone: the group is rolled back and run again,
     * carefully, with a savepoint per call. */
    bool careful;     /* this run of the group gives each call a savepoint */
    bool rerun;       /* a call failed after a write: run the group carefully */
    bool tx_broken;   /* a write failed half-way: the whole group must go */
    err_code broken_code;
} txn_t;

/* From where the store's feed and log stand (last_hash NULL: no entry). */
void txn_init(txn_t *t, const txn_methods *m, void *s, int64_t next_seq, int64_t next_aseq,
              const unsigned char *last_hash);

/* Before a group's transaction: the tables its ops need and the indexes
 * its WJ_INDEX jobs ask for. */
void txn_prepare(txn_t *t, wjob *jobs);

/* Runs the jobs (a list through next) in one transaction and commits.
 * Each job ends with its answer or its error; when the group cannot
 * commit, every job fails with the reason and the seqs go back. Returns
 * 0 when the group committed. */
int txn_run_group(txn_t *t, wjob *jobs);

/* Fails every job of a group that will not run (the store refuses
 * writes), with code and msg. */
void txn_refuse_group(wjob *jobs, err_code code, const char *msg);

#endif
