/*
 * rtproto.h: the messages of the realtime protocol (docs/API.md
 * "Realtime"), parsed and checked, without any I/O.
 *
 * Client to server, one JSON object per text frame:
 *   {"t":"sub","id":"s1","col":"orders","where":[["status","eq","pending"]],
 *    "doc":"ID","since":S}
 *   {"t":"unsub","id":"s1"}
 *   {"t":"call","id":"r1","fn":"place_order","args":{...}}
 *   {"t":"presence","state":{...}}
 *   {"t":"ping"}
 */
#ifndef LIVEDB_RTPROTO_H
#define LIVEDB_RTPROTO_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "query.h"

#define RT_ID_MAX 64          /* sub and call ids */
#define RT_STATE_MAX 4096     /* bytes of a presence state */

typedef enum rt_type { RT_SUB, RT_UNSUB, RT_CALL, RT_PRESENCE, RT_PING } rt_type;

typedef struct rt_msg {
    rt_type type;
    char id[RT_ID_MAX + 1]; /* sub, unsub, call */
    /* sub */
    char col[65];
    query_t *where;         /* owned; NULL when the sub has no where */
    char *doc;              /* owned; one document's id, or NULL */
    bool has_since;
    int64_t since;
    /* call */
    char fn[65];
    json_t *args;           /* owned; an object ({} when absent) */
    /* presence */
    json_t *state;          /* owned */
} rt_msg;

/* Parses one client message. On error returns -1 with err set (the code
 * is bad_request) and, when the message named one, its id in msg->id so
 * that the answer can say which sub or call failed. */
int rt_parse(const char *text, size_t len, rt_msg *msg, err_t *err);
void rt_msg_free(rt_msg *msg);

/* Whether a collection name is one a client may subscribe to: a user
 * collection, or one of the system ones (_presence, _activity). */
bool rt_col_ok(const char *col, size_t n);

#endif
