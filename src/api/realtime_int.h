/*
 * realtime_int.h: what the files of the realtime API share (private to
 * realtime.c, rt_subs.c, rt_fanout.c and rt_presence.c): the session and
 * subscription structs, and the functions one file gives the others.
 */
#ifndef LIVEDB_REALTIME_INT_H
#define LIVEDB_REALTIME_INT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/doc.h"
#include "../core/rtproto.h"
#include "../core/subs.h"
#include "../net/ws.h"
#include "../util/log.h"
#include "../util/map.h"
#include "api.h"

#define SUBS_PER_CONN 100
#define CATCHUP_PAGE 1000        /* changes per step of catch-up */
#define SNAP_CHUNK_BYTES (128 * 1024)
#define PACE_BYTES (1024 * 1024)  /* snapshots and catch-up wait above this */
#define PRESENCE_CHUNK 500

typedef struct rt_session rt_session;
typedef struct rt_sub rt_sub;

typedef enum { SUB_SNAPSHOT, SUB_CATCHUP, SUB_READING, SUB_LIVE } sub_state;

struct rt_sub {
    sub_entry e;            /* first: the index hands back sub_entry* */
    rt_session *s;
    const char *id;         /* in the same allocation, after the struct, with e.col */
    /* e.where, e.doc_id and e.rule_where (the read rule's conditions for
     * this caller) are owned by the subscription. */
    rule_t *rule_post;      /* owned: what else the rule checks, or NULL */
    rjob *snap;             /* SNAPSHOT: the read, and the next chunk to send */
    rt_sub *next;           /* in the session */
    int64_t pos;
    sub_state state;
    int refs;
    int snap_next;
    bool since_given;       /* send `synced` when caught up */
    bool ahead;             /* since is past this node's feed: ask the database */
    bool presence;          /* on _presence */
    bool activity;          /* on _activity */
    bool indexed;
    bool dead;              /* unsubscribed or its session ended */
};

struct rt_session {
    app_t *app;
    conn_t *c;
    ws_t *ws;
    /* Who it is, kept small (an idle connection should cost little):
     * who() rebuilds the actor when one is needed. */
    const char *who_id, *who_role, *who_email; /* after the struct */
    json_t *auth;           /* who as rules see it, made on first use */
    rt_sub *subs;
    json_t *pstate;
    rt_session *prev, *next;
    uint64_t last_rx;       /* loop time (ms) of the last bytes from the client */
    int64_t since_ms;       /* connected at (wall clock) */
    int nsubs;
    int refs;
    char who_session[17];
    char pid[17];           /* presence document id */
    bool who_admin;
    bool in_feed;
    bool slow_noted;        /* in rt->slow */
    bool closed;            /* the connection is gone */
    bool ending;            /* a close was sent: nothing more goes out */
};

struct realtime {
    subs_t index;
    rt_session *sessions;
    int nsessions;
    rt_sub **psubs;         /* the _presence subscriptions: few, an array */
    int npsubs, cap_psubs;
    rt_sub **asubs;         /* the _activity subscriptions, alike */
    int nasubs, cap_asubs;
    int64_t last_aseq;      /* the newest activity entry committed */
    rt_session **slow;      /* sessions past --ws-max-pending in this fan-out */
    int nslow, cap_slow;
    int64_t presence_seq;
    /* Several nodes (rt_presence.c): this node's name, the other nodes'
     * sessions (pid -> remote_pres) and when each node was last heard of
     * (node -> int64_t ms). */
    char node[17];
    map_t remote, nodes;
    uv_timer_t heartbeat;
    bool heartbeat_on;
    uv_timer_t ping;
    uint64_t ping_ms;
    size_t max_pending;
};

/* The frames of one change, shared among its subscribers (rt_fanout.c). */
typedef struct frame_cache frame_cache;

/* rt_fanout.c: the hub's realtime listener (hub.h) */
void realtime_on_commit(app_t *app, change_t *list, activity_rec *activity);
void rt_send_change(rt_sub *u, change_t *ch, sub_op op, frame_cache *fc);

/* realtime.c: sessions and sending */
bool rt_can_send(rt_session *s);
void rt_send_buf(rt_session *s, buf_t *b);
void rt_send_error(rt_session *s, const char *type_key, const char *id, const err_t *e);
void rt_send_frame(rt_session *s, const char *head, size_t hlen, const char *body,
                       size_t blen, const char *tail, size_t tlen);
void rt_session_actor(const rt_session *s, actor_t *a);
const json_t *rt_session_auth(rt_session *s);
void rt_session_close(rt_session *s, uint16_t code, const char *reason);
void rt_session_unref(rt_session *s);

/* rt_presence.c */
void rt_presence_broadcast(app_t *app, rt_session *s, sub_op op);
void rt_presence_snapshot(rt_sub *u);
void rt_presence_init(app_t *app);
void rt_presence_shutdown(app_t *app);
void rt_presence_free(app_t *app);

/* rt_subs.c */
rt_sub *rt_find_sub(rt_session *s, const char *id);
void rt_handle_sub(rt_session *s, rt_msg *m);
void rt_list_add(void ***v, int *n, int *cap, void *x);
void rt_send_activity(rt_sub *u, const char *entry, size_t len, int64_t seq);
void rt_sub_advance(rt_sub *u);
void rt_sub_end(rt_sub *u);

#endif
