/*
 * feed.h: committed changes, and the in-memory ring of the recent ones.
 *
 * A change is encoded to its JSON text once, by the writer thread, and from
 * then on shared by reference: the ring, long polls, event streams and
 * (later) every WebSocket subscriber send the same bytes.
 *
 * Threads: a change is built on the writer thread and handed over whole;
 * after that, it and the ring belong to the loop thread alone.
 */
#ifndef LIVEDB_FEED_H
#define LIVEDB_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef enum change_op { CH_CREATE, CH_UPDATE, CH_DELETE } change_op;

typedef struct change {
    int refs;
    int64_t seq;
    int64_t version;
    change_op op;
    char *col;
    char *id;
    const char *doc; /* points into json; NULL on delete */
    size_t doc_len;
    char at[25];
    char *json;      /* {"seq":..,"col":..,"id":..,"op":..,"version":..,"doc":..,"at":..} */
    size_t json_len;
    /* The document as it was before this change (NULL on create): what a
     * subscriber's filter and read rule saw, so that "added", "modified"
     * and "removed" can be told apart without per-subscriber state. */
    char *prev;
    size_t prev_len;
    /* Parsed doc and prev, made on first use by change_docs (loop thread). */
    json_t *jdoc, *jprev;
    bool parsed;
    struct change *next; /* list link while owned by a write job */
} change_t;

/* Builds a change; doc may be NULL (delete). */
change_t *change_new(int64_t seq, const char *col, const char *id, change_op op,
                     int64_t version, const char *doc, size_t doc_len, const char *at);
/* Sets the previous version's text (copied). */
void change_set_prev(change_t *ch, const char *prev, size_t len);
/* The parsed document and previous version (borrowed; NULL when absent). */
void change_docs(change_t *ch, const json_t **doc, const json_t **prev);
change_t *change_ref(change_t *ch);
void change_unref(change_t *ch);
const char *change_op_name(change_op op);

typedef struct feed feed_t;

/* A waiter is woken (wake called once, then removed) when changes arrive. */
typedef struct feed_waiter {
    void (*wake)(struct feed_waiter *w);
    struct feed_waiter *prev, *next;
    int linked;
} feed_waiter;

feed_t *feed_new(size_t capacity);
void feed_free(feed_t *f);
/* Appends changes (a list in seq order, linked by next) and wakes waiters.
 * Takes a reference to each. */
void feed_append(feed_t *f, change_t *list);
/* Sets the position before any change was appended (at start-up). */
void feed_set_last(feed_t *f, int64_t seq);
int64_t feed_last(const feed_t *f);
/* The lowest seq held in memory; feed_last+1 when empty. */
int64_t feed_first(const feed_t *f);

/* Collects up to limit changes with seq > since (only of col when col is
 * non-NULL) from memory. since must be >= feed_first-1. References are
 * borrowed; *covered is the position the answer covers. */
int feed_collect(const feed_t *f, int64_t since, const char *col, int limit, change_t **out,
                 int64_t *covered);

void feed_wait(feed_t *f, feed_waiter *w);
void feed_unwait(feed_t *f, feed_waiter *w);

#endif
