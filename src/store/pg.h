/*
 * pg.h: the PostgreSQL store (pg.c): the txn_methods of core/txn.h on one
 * libpq connection, in one schema that livedb creates and migrates itself.
 *
 * Every table livedb makes lives in the schema (default "livedb"). Its
 * version is in meta('schema_version'); pg_open brings an older one up to
 * date under an advisory lock, so two nodes that start at once migrate it
 * once. The tables are those of the SQLite store, with the documents of
 * every collection in one table (docs, keyed by col and id) and the feed's
 * head (head: the next seq, the next activity seq, the newest entry's hash)
 * in one row that a group's transaction locks, so that the groups of
 * several nodes commit one after another, in seq order.
 *
 * Threads: a pgstore is used by one thread at a time (the writer's).
 */
#ifndef LIVEDB_PG_H
#define LIVEDB_PG_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/txn.h"

typedef struct pgstore pgstore;

#define PG_SCHEMA_VERSION 1
/* Automatic indexes a collection may get (serve's --auto-index default). */
#define PG_AUTO_INDEX_MAX 16

/* Connects (conninfo: a libpq connection string or a postgres:// URL) and
 * makes or migrates schema. NULL with err set when it cannot. */
pgstore *pg_open(const char *conninfo, const char *schema, err_t *err);
void pg_close(pgstore *p);

/* Whether name may be a schema: [a-z_][a-z0-9_]*, at most 63 bytes. */
bool pg_schema_name_ok(const char *name);

/* Drops the schema and everything in it (tests' throwaway schemas). */
int pg_drop_schema(const char *conninfo, const char *schema, err_t *err);

/* Where the feed and the log stand: the next seqs and the newest activity
 * entry's hash (all zeros: none). */
int pg_head(pgstore *p, int64_t *next_seq, int64_t *next_aseq, unsigned char last_hash[32],
            err_t *err);

extern const txn_methods pg_txn_methods;

/* ------------------------------------------------------------------ the feed between nodes */

/* A node's view of the shared feed: a connection of its own that LISTENs
 * on the schema's channel (a commit with changes notifies it, inside the
 * transaction, so only committed changes wake anyone) and reads the
 * changes after the last one it handed on, in seq order. Because groups
 * commit in seq order (the head's lock), "seq > last" never skips one.
 * A node serves its subscribers from this, its own commits included. */
typedef struct pgfeed pgfeed;

/* From after_seq on (0: the start of the feed). */
pgfeed *pgfeed_open(const char *conninfo, const char *schema, int64_t after_seq, err_t *err);
void pgfeed_close(pgfeed *f);
/* The socket to wait on for notifications (a loop's poll handle). */
int pgfeed_socket(const pgfeed *f);
/* Takes what the socket brought and hands every change after the last one
 * to each(ctx, change) in seq order (the change is the callee's), at most
 * limit; returns how many, or -1 with err when the connection is gone (the
 * caller opens a new pgfeed from pgfeed_last and nothing is lost). */
int pgfeed_read(pgfeed *f, int limit, void (*each)(void *ctx, change_t *ch), void *ctx,
                err_t *err);
int64_t pgfeed_last(const pgfeed *f);
/* What pgfeed_read hears of sessions and passwords on the auth channel,
 * committed by any node: kind 's' a session ended (key: its token hash),
 * 'a' every session of account key ended, 'c' account key's password
 * hash is now value. */
void pgfeed_on_auth(pgfeed *f, void (*cb)(void *ctx, char kind, const char *key,
                                         const char *value), void *ctx);
/* Presence between nodes, on the schema's presence channel: pgfeed_say
 * notifies line (waiting for PostgreSQL's answer; what the connection
 * heard meanwhile waits for the next pgfeed_read), and pgfeed_read hands
 * every line heard, this node's own too, to the callback. */
int pgfeed_say(pgfeed *f, const char *line, err_t *err);
void pgfeed_on_presence(pgfeed *f, void (*cb)(void *ctx, const char *line), void *ctx);

#endif
