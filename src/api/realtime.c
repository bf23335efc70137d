/*
 * realtime.c: GET /v1/realtime, the WebSocket protocol of docs/API.md
 * "Realtime": subscriptions with snapshots and exact resume, presence,
 * heartbeats, and the fan-out of every committed change.
 *
 * A subscription moves through these states:
 *   SNAPSHOT  its documents at one seq are read (reader pool) and sent in
 *             pieces as the connection drains;
 *   CATCHUP   the changes after its position are sent, from the in-memory
 *             ring, or page by page from the changes table (READING) when
 *             the ring no longer holds them;
 *   LIVE      fan-out sends it each new change that concerns it.
 * Its position (pos) is the last seq it has been brought up to; a change
 * at or before pos is never sent again, so each change reaches it at most
 * once and in seq order, whichever path carried it. Snapshots and catch-up
 * are paced by the connection's output (they go on when it drains below
 * 256 KiB); live changes are not paced: a connection whose output grows
 * past --ws-max-pending is closed with 4008, and the client resumes from
 * its last seq.
 *
 * Frames: each message is one text frame. A change to many subscribers is
 * framed per subscriber (the envelope names the subscription and the op),
 * but the document's bytes, encoded once by the writer, are shared.
 *
 * Lifetime: a session lives while its connection is open, and a
 * subscription while it is subscribed; a read in flight holds a reference
 * to both, so that its answer finds them even after they ended.
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/doc.h"
#include "../core/rtproto.h"
#include "../core/subs.h"
#include "../net/ws.h"
#include "../util/log.h"

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
    char id[RT_ID_MAX + 1];
    query_t *where;         /* owned */
    char *doc_id;           /* owned */
    query_t *rule_where;    /* owned: the read rule's conditions for this caller */
    rule_t *rule_post;      /* owned: what else the rule checks, or NULL */
    sub_state state;
    int64_t pos;
    bool since_given;       /* send `synced` when caught up */
    bool presence;          /* on _presence */
    bool activity;          /* on _activity */
    bool indexed;
    bool dead;              /* unsubscribed or its session ended */
    int refs;
    rjob *snap;             /* SNAPSHOT: the read, and the next chunk to send */
    int snap_next;
    rt_sub *next;           /* in the session */
};

struct rt_session {
    app_t *app;
    conn_t *c;
    ws_t *ws;
    /* Who it is, kept small (an idle connection should cost little):
     * who() rebuilds the actor when one is needed. */
    char *who_id, *who_role, *who_email;
    char who_session[17];
    bool who_admin;
    json_t *auth;           /* who as rules see it, made on first use */
    rt_sub *subs;
    int nsubs;
    uint64_t last_rx;       /* loop time (ms) of the last bytes from the client */
    bool in_feed;
    bool slow_noted;        /* in rt->slow */
    bool closed;            /* the connection is gone */
    bool ending;            /* a close was sent: nothing more goes out */
    int refs;
    char pid[17];           /* presence document id */
    json_t *pstate;
    char since[TIME_RFC3339_LEN + 1];
    rt_session *prev, *next;
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
    uv_timer_t ping;
    uint64_t ping_ms;
    size_t max_pending;
};

static void sub_advance(rt_sub *u);

static void session_actor(const rt_session *s, actor_t *a)
{
    memset(a, 0, sizeof *a);
    snprintf(a->id, sizeof a->id, "%s", s->who_id);
    snprintf(a->role, sizeof a->role, "%s", s->who_role);
    snprintf(a->email, sizeof a->email, "%s", s->who_email);
    snprintf(a->session, sizeof a->session, "%s", s->who_session);
}

static const json_t *session_auth(rt_session *s)
{
    if (!s->auth) {
        actor_t a;
        session_actor(s, &a);
        s->auth = actor_auth(&a);
    }
    return s->auth;
}
static void session_unref(rt_session *s);

/* ------------------------------------------------------------------ sending */

static bool can_send(rt_session *s) { return !s->closed && !s->ending; }

/* One text frame whose payload is head + body + tail (copied). */
static void send_frame(rt_session *s, const char *head, size_t hlen, const char *body,
                       size_t blen, const char *tail, size_t tlen)
{
    unsigned char fh[10];
    size_t fl = ws_text_header(fh, hlen + blen + tlen);
    conn_out_copy(s->c, fh, fl);
    conn_out_copy(s->c, head, hlen);
    conn_out_copy(s->c, body, blen);
    conn_out_copy(s->c, tail, tlen);
    metrics_add(M_WS_MESSAGES_OUT, 1);
}

static void send_text(rt_session *s, const char *msg, size_t len)
{
    if (can_send(s))
        send_frame(s, msg, len, NULL, 0, NULL, 0);
}

static void send_buf(rt_session *s, buf_t *b)
{
    send_text(s, b->p, b->len);
    buf_free(b);
}

/* {"t":"error","sub":ID,"error":{...}} (sub omitted when id is NULL). */
static void send_error(rt_session *s, const char *type_key, const char *id, const err_t *e)
{
    buf_t b = {0};
    buf_puts(&b, "{\"t\":\"error\"");
    if (id && id[0]) {
        buf_printf(&b, ",\"%s\":", type_key);
        buf_put_json_str(&b, id, strlen(id));
    }
    buf_puts(&b, ",\"error\":");
    err_body(&b, e);
    buf_putc(&b, '}');
    send_buf(s, &b);
}

/* A whole frame, shared by every connection it goes to. */
typedef struct frame_blob {
    int refs;
    size_t len;
    char data[];
} frame_blob;

static void blob_unref(void *p)
{
    frame_blob *b = p;
    if (--b->refs == 0)
        free(b);
}

/* The frames of one change, by (subscription id, op): subscribers that
 * named their subscriptions alike (apps mostly do) get the very same bytes,
 * so a change is encoded once per distinct envelope, not per subscriber. */
#define FRAME_CACHE 8
typedef struct frame_cache {
    struct {
        const char *sub;
        sub_op op;
        frame_blob *blob;
    } e[FRAME_CACHE];
    int n;
} frame_cache;

static void frame_cache_clear(frame_cache *fc)
{
    for (int i = 0; i < fc->n; i++)
        blob_unref(fc->e[i].blob);
    fc->n = 0;
}

static frame_blob *change_frame(const char *sub, change_t *ch, sub_op op)
{
    buf_t b = {0};
    buf_reserve(&b, 128 + ch->doc_len);
    buf_puts(&b, "{\"t\":\"change\",\"sub\":");
    buf_put_json_str(&b, sub, strlen(sub));
    buf_puts(&b, ",\"seq\":");
    buf_put_i64(&b, ch->seq);
    buf_puts(&b, ",\"op\":\"");
    buf_puts(&b, sub_op_name(op));
    buf_puts(&b, "\",\"id\":");
    buf_put_json_str(&b, ch->id, strlen(ch->id));
    if (op == SUBOP_REMOVED) {
        buf_putc(&b, '}');
    } else {
        buf_puts(&b, ",\"doc\":");
        buf_put(&b, ch->doc, ch->doc_len);
        buf_putc(&b, '}');
    }
    unsigned char fh[10];
    size_t fl = ws_text_header(fh, b.len);
    frame_blob *f = xmalloc(sizeof *f + fl + b.len);
    f->refs = 1;
    f->len = fl + b.len;
    memcpy(f->data, fh, fl);
    memcpy(f->data + fl, b.p, b.len);
    buf_free(&b);
    return f;
}

/* The change message for u. fc (may be NULL) shares frames between the
 * subscribers of one change. */
static void send_change(rt_sub *u, change_t *ch, sub_op op, frame_cache *fc)
{
    rt_session *s = u->s;
    if (!can_send(s))
        return;
    frame_blob *f = NULL;
    for (int i = 0; fc && i < fc->n && !f; i++)
        if (fc->e[i].op == op && strcmp(fc->e[i].sub, u->id) == 0)
            f = fc->e[i].blob;
    if (!f) {
        f = change_frame(u->id, ch, op);
        if (fc && fc->n < FRAME_CACHE) {
            fc->e[fc->n].sub = u->id; /* lives while the change is fanned out */
            fc->e[fc->n].op = op;
            fc->e[fc->n++].blob = f;
            f->refs++;
        }
    } else {
        f->refs++;
    }
    conn_out_ref(s->c, f->data, f->len, blob_unref, f);
    metrics_add(M_WS_MESSAGES_OUT, 1);
}

/* ------------------------------------------------------------------ subscriptions */

static rt_sub *sub_ref(rt_sub *u)
{
    u->refs++;
    return u;
}

static void sub_unref(rt_sub *u)
{
    if (--u->refs > 0)
        return;
    rjob_free(u->snap);
    if (u->where) {
        query_free(u->where);
        free(u->where);
    }
    if (u->rule_where) {
        query_free(u->rule_where);
        free(u->rule_where);
    }
    rule_free(u->rule_post);
    free(u->doc_id);
    free(u);
}

/* The small arrays of system subscriptions (and slow sessions). */
static void list_add(void ***v, int *n, int *cap, void *x)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *v = xrealloc(*v, (size_t)*cap * sizeof **v);
    }
    (*v)[(*n)++] = x;
}

static void list_remove(void **v, int *n, void *x)
{
    for (int i = 0; i < *n; i++)
        if (v[i] == x) {
            v[i] = v[--*n];
            return;
        }
}

/* Ends a subscription: out of the index and the session's list. */
static void sub_end(rt_sub *u)
{
    if (u->dead)
        return;
    u->dead = true;
    app_t *app = u->s->app;
    if (u->indexed)
        subs_remove(&app->rt->index, &u->e);
    if (u->presence)
        list_remove((void **)app->rt->psubs, &app->rt->npsubs, u);
    if (u->activity)
        list_remove((void **)app->rt->asubs, &app->rt->nasubs, u);
    for (rt_sub **p = &u->s->subs; *p; p = &(*p)->next)
        if (*p == u) {
            *p = u->next;
            break;
        }
    u->s->nsubs--;
    metrics_gauge_add(M_WS_SUBS, -1);
    sub_unref(u);
}

/* Ends u and tells the client why. */
static void sub_fail(rt_sub *u, err_t *e)
{
    send_error(u->s, "sub", u->id, e);
    err_clear(e);
    sub_end(u);
}

static void go_live(rt_sub *u)
{
    u->state = SUB_LIVE;
    if (u->since_given) {
        u->since_given = false;
        buf_t b = {0};
        buf_puts(&b, "{\"t\":\"synced\",\"sub\":");
        buf_put_json_str(&b, u->id, strlen(u->id));
        buf_printf(&b, ",\"seq\":%lld}", (long long)u->pos);
        send_buf(u->s, &b);
    }
}

/* Sends c to u if it concerns u, and moves u past it. */
static void offer(rt_sub *u, change_t *ch)
{
    if (ch->seq <= u->pos)
        return;
    if (strcmp(ch->col, u->e.col) == 0) {
        sub_op op = sub_op_of(&u->e, ch);
        if (op != SUBOP_NONE)
            send_change(u, ch, op, NULL);
    }
    u->pos = ch->seq;
}

static void on_catchup_page(rjob *job)
{
    rt_sub *u = job->ctx;
    if (!u->dead) {
        if (job->err.code) {
            sub_fail(u, &job->err);
        } else {
            for (change_t *ch = job->recs; ch; ch = ch->next)
                offer(u, ch);
            if (job->seq > u->pos)
                u->pos = job->seq;
            u->state = SUB_CATCHUP;
            sub_advance(u);
        }
    }
    rt_session *s = u->s;
    sub_unref(u);
    session_unref(s);
    rjob_free(job);
}

static void send_snapshot_chunk(rt_sub *u)
{
    rjob *job = u->snap;
    snap_chunk *ck = &job->chunks[u->snap_next++];
    bool more = u->snap_next < job->nchunks;
    buf_t b = {0};
    buf_puts(&b, "{\"t\":\"snapshot\",\"sub\":");
    buf_put_json_str(&b, u->id, strlen(u->id));
    buf_printf(&b, ",\"seq\":%lld,\"docs\":[", (long long)job->seq);
    const char *tail = more ? "],\"more\":true}" : "],\"more\":false}";
    send_frame(u->s, b.p, b.len, job->out.p + ck->off, ck->len, tail, strlen(tail));
    buf_free(&b);
}

/* Moves u forward as far as the connection's output allows. */
static void sub_advance(rt_sub *u)
{
    rt_session *s = u->s;
    app_t *app = s->app;
    while (!u->dead && can_send(s)) {
        if (conn_out_pending(s->c) >= PACE_BYTES)
            return; /* on_drain calls again */
        if (u->state == SUB_SNAPSHOT) {
            if (!u->snap)
                return; /* the read is in flight */
            send_snapshot_chunk(u);
            if (u->snap_next == u->snap->nchunks) {
                rjob_free(u->snap);
                u->snap = NULL;
                u->state = SUB_CATCHUP;
            }
            continue;
        }
        if (u->state != SUB_CATCHUP)
            return;
        if (u->presence) {
            go_live(u);
            return;
        }
        if (u->pos >= feed_last(app->feed)) {
            go_live(u);
            return;
        }
        if (u->pos >= feed_first(app->feed) - 1) {
            change_t *chs[CATCHUP_PAGE];
            int64_t covered;
            int n = feed_collect(app->feed, u->pos, u->e.col, CATCHUP_PAGE, chs, &covered);
            for (int i = 0; i < n; i++)
                offer(u, chs[i]);
            if (covered > u->pos)
                u->pos = covered;
            continue;
        }
        if (u->pos < store_first_seq(app->store) - 1) {
            err_t e = {0};
            err_set(&e, E_RESYNC_REQUIRED,
                    "changes after %lld are no longer retained; subscribe again without since",
                    (long long)u->pos);
            sub_fail(u, &e);
            return;
        }
        rjob *job = rjob_new(R_CHANGES);
        /* Every change of the collection: what was visible and is no
         * longer is a `removed` the subscriber must hear. */
        job->actor.system = true;
        job->since = u->pos;
        job->limit = CATCHUP_PAGE;
        job->col_filter = true;
        job->want_recs = true;
        snprintf(job->col, sizeof job->col, "%s", u->e.col);
        job->done = on_catchup_page;
        job->ctx = sub_ref(u);
        s->refs++;
        u->state = SUB_READING;
        store_read(app->store, job);
        return;
    }
}

static void on_snapshot(rjob *job)
{
    rt_sub *u = job->ctx;
    rt_session *s = u->s;
    if (!u->dead) {
        if (job->err.code) {
            sub_fail(u, &job->err);
            rjob_free(job);
        } else {
            u->pos = job->seq;
            u->snap = job;
            u->snap_next = 0;
            sub_advance(u);
        }
    } else {
        rjob_free(job);
    }
    sub_unref(u);
    session_unref(s);
}

/* ------------------------------------------------------------------ presence */

static void presence_doc(buf_t *b, rt_session *s)
{
    buf_puts(b, "{\"id\":\"");
    buf_puts(b, s->pid);
    buf_puts(b, "\",\"account\":");
    buf_put_json_str(b, s->who_id, strlen(s->who_id));
    buf_puts(b, ",\"role\":");
    buf_put_json_str(b, s->who_role, strlen(s->who_role));
    buf_puts(b, ",\"state\":");
    if (s->pstate) {
        char *t = json_dumps(s->pstate, JSON_COMPACT | JSON_ENCODE_ANY);
        buf_puts(b, t);
        free(t);
    } else {
        buf_puts(b, "null");
    }
    buf_puts(b, ",\"since\":\"");
    buf_puts(b, s->since);
    buf_puts(b, "\"}");
}

static bool presence_visible(rt_sub *u, const char *doc, size_t len)
{
    if (!u->where)
        return true;
    json_t *j = json_loadb(doc, len, 0, NULL);
    bool ok = j && sub_matches(&u->e, j);
    json_decref(j);
    return ok;
}

/* Tells every _presence subscriber that s came, changed or went. */
static void presence_broadcast(app_t *app, rt_session *s, sub_op op)
{
    struct realtime *rt = app->rt;
    if (!rt->npsubs)
        return;
    int64_t seq = ++rt->presence_seq;
    buf_t doc = {0};
    presence_doc(&doc, s);
    for (int i = 0; i < rt->npsubs; i++) {
        rt_sub *u = rt->psubs[i];
        if (u->state != SUB_LIVE || u->s == s || !presence_visible(u, doc.p, doc.len))
            continue;
        buf_t b = {0};
        buf_puts(&b, "{\"t\":\"change\",\"sub\":");
        buf_put_json_str(&b, u->id, strlen(u->id));
        buf_printf(&b, ",\"seq\":%lld,\"op\":\"%s\",\"id\":\"%s\"", (long long)seq,
                   sub_op_name(op), s->pid);
        if (op != SUBOP_REMOVED) {
            buf_puts(&b, ",\"doc\":");
            buf_put(&b, doc.p, doc.len);
        }
        buf_putc(&b, '}');
        send_buf(u->s, &b);
        u->pos = seq;
    }
    buf_free(&doc);
}

static void presence_snapshot(rt_sub *u)
{
    app_t *app = u->s->app;
    buf_t docs = {0};
    int n = 0;
    bool first = true;
    for (rt_session *s = app->rt->sessions; s; s = s->next) {
        buf_t d = {0};
        presence_doc(&d, s);
        if (presence_visible(u, d.p, d.len)) {
            if (n)
                buf_putc(&docs, ',');
            buf_put(&docs, d.p, d.len);
            n++;
        }
        buf_free(&d);
        bool last = s->next == NULL;
        if (n == PRESENCE_CHUNK || (last && (n || first))) {
            buf_t b = {0};
            buf_puts(&b, "{\"t\":\"snapshot\",\"sub\":");
            buf_put_json_str(&b, u->id, strlen(u->id));
            buf_printf(&b, ",\"seq\":%lld,\"docs\":[", (long long)app->rt->presence_seq);
            buf_put(&b, docs.p, docs.len);
            buf_printf(&b, "],\"more\":%s}", last ? "false" : "true");
            send_buf(u->s, &b);
            docs.len = 0;
            n = 0;
            first = false;
        }
    }
    buf_free(&docs);
    u->pos = app->rt->presence_seq;
}

/* ------------------------------------------------------------------ messages */

/* The rest of the read rule, for subscribers whose rule is not only
 * equalities (see access_read_scope). */
static bool rule_visible(const sub_entry *e, const json_t *doc)
{
    const rt_sub *u = e->owner;
    return rule_eval(u->rule_post, session_auth(u->s), doc, NULL);
}

/* ------------------------------------------------------------------ _activity */

static void activity_read(rt_sub *u, bool catch_up);

static void send_activity(rt_sub *u, const char *entry, size_t len, int64_t seq)
{
    buf_t b = {0};
    buf_puts(&b, "{\"t\":\"change\",\"sub\":");
    buf_put_json_str(&b, u->id, strlen(u->id));
    buf_printf(&b, ",\"seq\":%lld,\"op\":\"added\",\"id\":\"%lld\",\"doc\":", (long long)seq,
               (long long)seq);
    buf_put(&b, entry, len);
    buf_putc(&b, '}');
    send_buf(u->s, &b);
    u->pos = seq;
}

/* The snapshot (newest first), or a catch-up page (oldest first): entries
 * committed while the subscription was being read were not fanned out to
 * it, so it reads on from where it is until it has them all. */
static void on_activity_read(rjob *job)
{
    rt_sub *u = job->ctx;
    rt_session *s = u->s;
    struct realtime *rt = s->app->rt;
    if (!u->dead && job->err.code) {
        sub_fail(u, &job->err);
    } else if (!u->dead && !job->aq.ascending) {
        buf_t b = {0};
        buf_puts(&b, "{\"t\":\"snapshot\",\"sub\":");
        buf_put_json_str(&b, u->id, strlen(u->id));
        buf_printf(&b, ",\"seq\":%lld,\"docs\":[", (long long)job->top_seq);
        buf_put(&b, job->out.p, job->out.len);
        buf_puts(&b, "],\"more\":false}");
        send_buf(s, &b);
        u->pos = job->top_seq;
    } else if (!u->dead) {
        buf_t arr = {0};
        buf_printf(&arr, "[%.*s]", (int)job->out.len, job->out.p ? job->out.p : "");
        json_t *list = json_loadb(arr.p, arr.len, 0, NULL);
        buf_free(&arr);
        for (size_t i = 0; i < json_array_size(list); i++) {
            json_t *e = json_array_get(list, i);
            char *text = json_dumps(e, JSON_COMPACT);
            send_activity(u, text, strlen(text), json_integer_value(json_object_get(e, "seq")));
            free(text);
        }
        json_decref(list);
    }
    if (!u->dead && !job->err.code) {
        /* (A catch-up that found nothing has nothing more to find.) */
        if (rt && rt->last_aseq > u->pos && (!job->aq.ascending || job->count))
            activity_read(u, true);
        else
            u->state = SUB_LIVE;
    }
    rjob_free(job);
    sub_unref(u);
    session_unref(s);
}

static void activity_read(rt_sub *u, bool catch_up)
{
    rjob *job = rjob_new(R_ACTIVITY);
    session_actor(u->s, &job->actor);
    job->aq.limit = catch_up ? 500 : 100;
    job->aq.ascending = catch_up;
    job->aq.after_seq = u->pos;
    job->done = on_activity_read;
    job->ctx = sub_ref(u);
    u->s->refs++;
    store_read(u->s->app->store, job);
}

/* The newest 100 entries, then each new one as `added`. */
static void activity_snapshot(rt_sub *u)
{
    u->state = SUB_SNAPSHOT;
    activity_read(u, false);
}

static rt_sub *find_sub(rt_session *s, const char *id)
{
    for (rt_sub *u = s->subs; u; u = u->next)
        if (strcmp(u->id, id) == 0)
            return u;
    return NULL;
}

static void handle_sub(rt_session *s, rt_msg *m)
{
    app_t *app = s->app;
    err_t e = {0};
    if (find_sub(s, m->id)) {
        err_set(&e, E_BAD_REQUEST, "a subscription with id %s is open; unsub it first", m->id);
        send_error(s, "sub", m->id, &e);
        err_clear(&e);
        return;
    }
    if (s->nsubs >= SUBS_PER_CONN) {
        err_set(&e, E_BAD_REQUEST, "at most %d subscriptions per connection", SUBS_PER_CONN);
        send_error(s, "sub", m->id, &e);
        err_clear(&e);
        return;
    }
    bool presence = strcmp(m->col, "_presence") == 0;
    bool activity = strcmp(m->col, "_activity") == 0;
    query_t *rule_where = NULL;
    rule_t *post = NULL;
    access_scope scope;
    if (presence || activity) {
        scope = s->who_admin ? ACCESS_ALL : ACCESS_NONE;
    } else {
        rule_where = xmalloc(sizeof *rule_where);
        query_init(rule_where);
        actor_t who;
        session_actor(s, &who);
        scope = access_read_scope(&who, m->col, rule_where, &post);
        if (scope != ACCESS_SOME || rule_where->nconds == 0) {
            query_free(rule_where);
            free(rule_where);
            rule_where = NULL;
        }
    }
    if (scope == ACCESS_NONE) {
        err_set(&e, E_FORBIDDEN, "not allowed to read %s", m->col);
        send_error(s, "sub", m->id, &e);
        err_clear(&e);
        return;
    }
    if (m->has_since && !presence && !activity) {
        int64_t committed = store_committed_seq(app->store);
        if (m->since > committed) {
            err_set(&e, E_RESYNC_REQUIRED,
                    "since %lld is ahead of the feed (last seq %lld): subscribe without since",
                    (long long)m->since, (long long)committed);
        } else if (m->since < store_first_seq(app->store) - 1) {
            err_set(&e, E_RESYNC_REQUIRED,
                    "changes after %lld are no longer retained (oldest is %lld); subscribe"
                    " without since",
                    (long long)m->since, (long long)store_first_seq(app->store));
        }
        if (e.code) {
            send_error(s, "sub", m->id, &e);
            err_clear(&e);
            return;
        }
    }

    rt_sub *u = xcalloc(1, sizeof *u);
    u->refs = 1;
    u->s = s;
    snprintf(u->id, sizeof u->id, "%s", m->id);
    snprintf(u->e.col, sizeof u->e.col, "%s", m->col);
    u->where = m->where;
    m->where = NULL;
    u->doc_id = m->doc;
    m->doc = NULL;
    u->e.where = u->where;
    u->e.doc_id = u->doc_id;
    u->rule_where = rule_where;
    u->rule_post = post;
    u->e.rule_where = rule_where;
    u->e.visible = post ? rule_visible : NULL;
    u->e.owner = u;
    u->presence = presence;
    u->activity = activity;
    u->next = s->subs;
    s->subs = u;
    s->nsubs++;
    metrics_gauge_add(M_WS_SUBS, 1);

    if (presence) {
        presence_snapshot(u);
        u->state = SUB_LIVE;
        struct realtime *rt = app->rt;
        list_add((void ***)&rt->psubs, &rt->npsubs, &rt->cap_psubs, u);
        return;
    }
    if (activity) {
        struct realtime *rt = app->rt;
        list_add((void ***)&rt->asubs, &rt->nasubs, &rt->cap_asubs, u);
        activity_snapshot(u);
        return;
    }
    subs_add(&app->rt->index, &u->e);
    u->indexed = true;
    if (m->has_since) {
        u->pos = m->since;
        u->since_given = true;
        u->state = SUB_CATCHUP;
        sub_advance(u);
        return;
    }
    u->state = SUB_SNAPSHOT;
    rjob *job = rjob_new(R_SNAPSHOT);
    session_actor(s, &job->actor); /* the reader applies the read rule itself */
    snprintf(job->col, sizeof job->col, "%s", u->e.col);
    if (u->where) {
        for (int i = 0; i < u->where->nconds; i++) {
            qcond *c = &u->where->conds[i];
            query_add_cond(&job->query, c->field, strlen(c->field), qop_name(c->op),
                           strlen(qop_name(c->op)), c->value, &e);
        }
    }
    if (u->doc_id) {
        json_t *idv = json_string(u->doc_id);
        query_add_cond(&job->query, "id", 2, "eq", 2, idv, &e);
        json_decref(idv);
    }
    err_clear(&e); /* the conditions were checked when parsed; 17 of them at most */
    job->chunk_bytes = SNAP_CHUNK_BYTES;
    job->done = on_snapshot;
    job->ctx = sub_ref(u);
    s->refs++;
    store_read(app->store, job);
    /* A where on a field with no index gets one, as lists do. */
    if (u->e.pin_field && strcmp(u->e.pin_field, "id") != 0)
        store_want_index(app->store, u->e.col, u->e.pin_field);
}

typedef struct rt_call {
    rt_session *s;
    char id[RT_ID_MAX + 1];
} rt_call;

static void on_call_done(void *ctx, err_code code, const char *text, size_t len)
{
    rt_call *k = ctx;
    buf_t b = {0};
    buf_puts(&b, "{\"t\":\"result\",\"id\":");
    buf_put_json_str(&b, k->id, strlen(k->id));
    buf_puts(&b, code == E_OK ? ",\"ok\":true,\"data\":" : ",\"ok\":false,\"error\":");
    buf_put(&b, text, len);
    buf_putc(&b, '}');
    send_buf(k->s, &b);
    session_unref(k->s);
    free(k);
}

static void handle_call(rt_session *s, rt_msg *m)
{
    rt_call *k = xmalloc(sizeof *k);
    k->s = s;
    s->refs++;
    snprintf(k->id, sizeof k->id, "%s", m->id);
    actor_t who;
    session_actor(s, &who);
    snprintf(who.remote, sizeof who.remote, "%s", conn_remote(s->c));
    json_t *args = m->args;
    m->args = NULL;
    fn_call(s->app, &who, m->fn, args, on_call_done, k);
}

static void on_text(void *ctx, const char *text, size_t len)
{
    rt_session *s = ctx;
    rt_msg m;
    err_t e = {0};
    if (rt_parse(text, len, &m, &e)) {
        send_error(s, m.type == RT_CALL ? "id" : "sub", m.id, &e);
        err_clear(&e);
        return;
    }
    switch (m.type) {
    case RT_PING:
        send_text(s, "{\"t\":\"pong\"}", 12);
        break;
    case RT_SUB:
        handle_sub(s, &m);
        break;
    case RT_UNSUB: {
        rt_sub *u = find_sub(s, m.id);
        if (u) {
            sub_end(u);
        } else {
            err_set(&e, E_NOT_FOUND, "no subscription %s", m.id);
            send_error(s, "sub", m.id, &e);
            err_clear(&e);
        }
        break;
    }
    case RT_CALL:
        handle_call(s, &m);
        break;
    case RT_PRESENCE:
        json_decref(s->pstate);
        s->pstate = json_incref(m.state);
        presence_broadcast(s->app, s, SUBOP_MODIFIED);
        break;
    }
    rt_msg_free(&m);
}

/* ------------------------------------------------------------------ sessions */

static void ws_send(void *ctx, const void *data, size_t len)
{
    rt_session *s = ctx;
    if (!s->closed)
        conn_out_copy(s->c, data, len);
}

static const ws_cb ws_callbacks = {.on_text = on_text, .send = ws_send};

static void session_unref(rt_session *s)
{
    if (--s->refs > 0)
        return;
    ws_free(s->ws);
    json_decref(s->pstate);
    json_decref(s->auth);
    free(s->who_id);
    free(s->who_role);
    free(s->who_email);
    free(s);
}

static void on_data(conn_t *c, void *ctx, const char *data, size_t len)
{
    rt_session *s = ctx;
    (void)c;
    s->last_rx = uv_now(s->app->loop);
    s->in_feed = true;
    s->refs++;
    bool open = ws_feed(s->ws, data, len);
    s->in_feed = false;
    if (!open && !s->closed) {
        s->ending = true;
        conn_close_after_output(s->c);
    }
    session_unref(s);
}

static void on_drain(conn_t *c, void *ctx)
{
    rt_session *s = ctx;
    (void)c;

    s->refs++;
    for (rt_sub *u = s->subs, *next; u; u = next) {
        next = u->next;
        if (u->state == SUB_SNAPSHOT || u->state == SUB_CATCHUP)
            sub_advance(u);
    }
    session_unref(s);
}

static void on_close(conn_t *c, void *ctx)
{
    rt_session *s = ctx;
    app_t *app = s->app;
    (void)c;
    s->closed = true;
    while (s->subs)
        sub_end(s->subs);
    if (s->prev)
        s->prev->next = s->next;
    else
        app->rt->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    app->rt->nsessions--;
    metrics_gauge_add(M_WS_SESSIONS, -1);
    presence_broadcast(app, s, SUBOP_REMOVED);
    conn_unref(s->c);
    session_unref(s);
}

static const conn_raw_cb raw_callbacks = {
    .on_data = on_data, .on_drain = on_drain, .on_close = on_close};

/* Closes s with code, after what is queued. */
static void session_close(rt_session *s, uint16_t code, const char *reason)
{
    if (s->closed || s->ending)
        return;
    ws_close(s->ws, code, reason);
    s->ending = true;
    conn_close_after_output(s->c);
}

/* ------------------------------------------------------------------ upgrade */

/* Whether a comma-separated header value holds token (case-insensitive). */
static bool has_token(const char *v, size_t n, const char *token)
{
    size_t tl = strlen(token);
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < n && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == tl && ascii_casecmp_n(v + start, token, tl) == 0)
            return true;
    }
    return false;
}

/* Same origin (the Origin's host:port is the Host the client asked for),
 * or one of --allow-origin exactly. A request without Origin is not from
 * a browser page, so no page can be abusing it. */
static bool origin_ok(app_t *app, const http_req *req)
{
    size_t on, hn;
    const char *o = http_header_get(req, "origin", &on);
    if (!o)
        return true;
    for (int i = 0; i < app->norigins; i++)
        if (strlen(app->origins[i]) == on && memcmp(app->origins[i], o, on) == 0)
            return true;
    const char *h = http_header_get(req, "host", &hn);
    const char *sep = on > 3 ? memmem(o, on, "://", 3) : NULL;
    if (!h || !sep)
        return false;
    const char *auth = sep + 3;
    size_t an = (size_t)(o + on - auth);
    return an == hn && ascii_casecmp_n(auth, h, hn) == 0;
}

void realtime_upgrade(app_t *app, conn_t *c, http_req *req)
{
    err_t e = {0};
    size_t n;
    const char *v;
    if (!(v = http_header_get(req, "upgrade", &n)) || !has_token(v, n, "websocket") ||
        !(v = http_header_get(req, "connection", &n)) || !has_token(v, n, "upgrade")) {
        err_set(&e, E_BAD_REQUEST, "this path takes a WebSocket upgrade (Upgrade: websocket)");
        conn_respond_error(c, &e, "Upgrade: websocket\r\nConnection: Upgrade\r\n");
        err_clear(&e);
        return;
    }
    if (!(v = http_header_get(req, "sec-websocket-version", &n)) || n != 2 ||
        memcmp(v, "13", 2) != 0) {
        err_set(&e, E_BAD_REQUEST, "only WebSocket version 13 is spoken here");
        conn_respond_error(c, &e, "Sec-WebSocket-Version: 13\r\n");
        err_clear(&e);
        return;
    }
    char accept[29];
    if (!(v = http_header_get(req, "sec-websocket-key", &n)) || ws_accept_key(v, n, accept)) {
        respond_simple(c, E_BAD_REQUEST, "Sec-WebSocket-Key must be base64 of 16 bytes");
        return;
    }
    if (!origin_ok(app, req)) {
        respond_simple(c, E_FORBIDDEN,
                       "this Origin may not open a realtime connection (see --allow-origin)");
        return;
    }
    actor_t who;
    if (api_auth(app, c, req, &who, &e)) {
        respond_err(c, &e);
        return;
    }
    if (app->shutting_down) {
        respond_simple(c, E_UNAVAILABLE, "the server is shutting down");
        return;
    }
    rt_session *s = xcalloc(1, sizeof *s);
    s->app = app;
    s->c = conn_ref(c);
    s->refs = 1;
    s->ws = ws_new(&ws_callbacks, s);
    s->who_id = xstrdup(who.id);
    s->who_role = xstrdup(who.role);
    s->who_email = xstrdup(who.email);
    snprintf(s->who_session, sizeof s->who_session, "%s", who.session);
    s->who_admin = actor_is_admin(&who);
    s->last_rx = uv_now(app->loop);
    random_id(s->pid, 16);
    time_format_rfc3339(time_now_ms(), s->since);
    s->next = app->rt->sessions;
    if (s->next)
        s->next->prev = s;
    app->rt->sessions = s;
    app->rt->nsessions++;
    metrics_gauge_add(M_WS_SESSIONS, 1);
    char hdr[160];
    snprintf(hdr, sizeof hdr,
             "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n", accept);
    conn_upgrade(c, hdr, &raw_callbacks, s);
    presence_broadcast(app, s, SUBOP_ADDED);
}

/* ------------------------------------------------------------------ fan-out */

static void note_if_slow(struct realtime *rt, rt_session *s)
{
    if (!s->slow_noted && conn_out_pending(s->c) > rt->max_pending) {
        s->slow_noted = true;
        list_add((void ***)&rt->slow, &rt->nslow, &rt->cap_slow, s);
        s->refs++;
    }
}

static void fan_one(sub_entry *e, change_t *ch, void *ctx)
{
    rt_sub *u = e->owner;
    if (u->state != SUB_LIVE || ch->seq <= u->pos || !can_send(u->s))
        return;
    sub_op op = sub_op_of(e, ch);
    if (op != SUBOP_NONE) {
        send_change(u, ch, op, ctx);
        note_if_slow(u->s->app->rt, u->s);
    }
    u->pos = ch->seq;
}

/* New activity entries to the admins subscribed to _activity. */
static void fan_activity(struct realtime *rt, activity_rec *list)
{
    for (activity_rec *a = list; a; a = a->next) {
        for (int i = 0; i < rt->nasubs; i++) {
            rt_sub *u = rt->asubs[i];
            if (u->state != SUB_LIVE || a->seq <= u->pos || !can_send(u->s))
                continue;
            send_activity(u, a->json, a->len, a->seq);
            note_if_slow(rt, u->s);
        }
    }
}

void realtime_on_commit(app_t *app, change_t *list, activity_rec *activity)
{
    struct realtime *rt = app->rt;
    for (activity_rec *a = activity; rt && a; a = a->next)
        if (a->seq > rt->last_aseq)
            rt->last_aseq = a->seq;
    if (!rt || !rt->nsessions)
        return;
    frame_cache fc = {0};
    for (change_t *ch = list; ch; ch = ch->next) {
        subs_each(&rt->index, ch, fan_one, &fc);
        frame_cache_clear(&fc);
    }
    if (rt->nasubs)
        fan_activity(rt, activity);
    /* Readers that fell too far behind resume instead of holding memory. */
    for (int i = 0; i < rt->nslow; i++) {
        rt_session *s = rt->slow[i];
        s->slow_noted = false;
        if (can_send(s)) {
            metrics_add(M_WS_SLOW_CLOSED, 1);
            session_close(s, WS_CLOSE_SLOW, "reading too slowly; resume with since");
        }
        session_unref(s);
    }
    rt->nslow = 0;
}

void realtime_revoke(app_t *app, const actor_t *who)
{
    struct realtime *rt = app->rt;
    for (rt_session *s = rt->sessions, *next; s; s = next) {
        next = s->next;
        if (strcmp(s->who_id, who->id) == 0 &&
            (!who->session[0] || strcmp(s->who_session, who->session) == 0))
            session_close(s, WS_CLOSE_ACCESS, "access changed: log in or subscribe again");
    }
}

/* ------------------------------------------------------------------ heartbeat */

static void on_ping(uv_timer_t *t)
{
    app_t *app = t->data;
    uint64_t now = uv_now(app->loop);
    for (rt_session *s = app->rt->sessions, *next; s; s = next) {
        next = s->next;
        if (!can_send(s))
            continue;
        if (now - s->last_rx >= 3 * app->rt->ping_ms) {
            session_close(s, WS_CLOSE_GOING_AWAY, "no data for too long");
            continue;
        }
        conn_out_copy(s->c, ws_ping_frame, sizeof ws_ping_frame);
    }
}

/* ------------------------------------------------------------------ life */

void realtime_init(app_t *app, const realtime_opts *o)
{
    struct realtime *rt = xcalloc(1, sizeof *rt);
    subs_init(&rt->index);
    rt->ping_ms = (uint64_t)(o->ping_seconds > 0 ? o->ping_seconds : 15) * 1000;
    rt->max_pending = o->max_pending ? o->max_pending : 8 * 1024 * 1024;
    app->rt = rt;
    uv_timer_init(app->loop, &rt->ping);
    rt->ping.data = app;
    uv_timer_start(&rt->ping, on_ping, rt->ping_ms, rt->ping_ms);
    uv_unref((uv_handle_t *)&rt->ping);
}

void realtime_shutdown(app_t *app)
{
    struct realtime *rt = app->rt;
    for (rt_session *s = rt->sessions, *next; s; s = next) {
        next = s->next; /* session_close may end s at once */
        session_close(s, WS_CLOSE_GOING_AWAY, "the server is shutting down");
    }
    uv_close((uv_handle_t *)&rt->ping, NULL);
}

void realtime_free(app_t *app)
{
    struct realtime *rt = app->rt;
    if (!rt)
        return;
    subs_free(&rt->index);
    free(rt->psubs);
    free(rt->asubs);
    free(rt->slow);
    free(rt);
    app->rt = NULL;
}
