/*
 * changes.c: GET /v1/changes: the change feed as pages, long polls and
 * Server-Sent Events.
 *
 * Recent changes are answered from the in-memory ring (core/feed.c) on the
 * loop thread; older ones are read from the changes table on the reader
 * pool. Either way the bytes of a change are the ones the writer encoded.
 * `seq` in every answer is the position it covers, so a client that passes
 * it back as `since` sees every change once, in order.
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/doc.h"

#define FEED_LIMIT_DEFAULT 100
#define FEED_LIMIT_MAX 1000
#define WAIT_MAX_S 60
#define SSE_PAGE 1000
#define SSE_MAX_PENDING (4 * 1024 * 1024)
#define SSE_PING_MS 15000

typedef struct feed_req {
    int64_t since;
    int limit;
    int wait_s;
    char col[COL_NAME_MAX + 1];
    bool has_col;
    bool sse;
    actor_t who;   /* only changes it may read are shown */
    json_t *auth;  /* who as rules see it (owned), NULL for admin */
} feed_req;

/* What a long poll and an event stream share: what was asked and by whom,
 * the connection that is answered, the wait on the ring, and the place in
 * the app's list of its kind (app->polls, app->streams). */
struct feed_sub {
    app_t *app;
    conn_t *c;
    feed_req fr; /* fr.since is the position answered so far */
    feed_waiter w;
    feed_sub *prev, *next;
};

typedef struct long_poll {
    feed_sub s; /* first: a long poll is a feed_sub in app->polls */
    uv_timer_t timer;
} long_poll;

typedef struct sse_stream {
    feed_sub s; /* first: in app->streams */
    bool db_pending;
    bool dead;
    bool ahead; /* its since is past this node's feed: read the database once */
} sse_stream;

/* Several nodes: a client that comes from another node may know a seq this
 * node's feed has not reached yet. The database says whether it exists
 * (410 when not) and what follows it; then the feed goes on from there. */
static bool ahead_of_feed(app_t *app, int64_t since)
{
    return store_shared(app->store) && since > feed_last(app->feed);
}

static void sub_start(feed_sub *s, feed_sub **list, app_t *app, conn_t *c, const feed_req *fr,
                      void (*wake)(feed_waiter *w))
{
    s->app = app;
    s->c = conn_ref(c);
    s->fr = *fr;
    s->w.wake = wake;
    s->next = *list;
    if (*list)
        (*list)->prev = s;
    *list = s;
}

static void sub_unlink(feed_sub *s, feed_sub **list)
{
    feed_unwait(s->app->feed, &s->w);
    if (s->prev)
        s->prev->next = s->next;
    else
        *list = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

/* Is s asked for by who (any session of it, when who names none)? */
static bool sub_of(const feed_sub *s, const actor_t *who)
{
    return strcmp(s->fr.who.id, who->id) == 0 &&
           (!who->session[0] || strcmp(s->fr.who.session, who->session) == 0);
}

/* ------------------------------------------------------------------ parsing */

static int feed_param(void *ctx, const char *k, const char *v, size_t n, err_t *e)
{
    feed_req *fr = ctx;
    int64_t x;
    if (strcmp(k, "since") == 0) {
        if (parse_i64(v, n, &x) || x < 0)
            return err_set(e, E_BAD_REQUEST, "since must be an integer >= 0");
        fr->since = x;
    } else if (strcmp(k, "limit") == 0) {
        if (parse_i64(v, n, &x) || x < 1 || x > FEED_LIMIT_MAX)
            return err_set(e, E_BAD_REQUEST, "limit must be an integer from 1 to %d",
                           FEED_LIMIT_MAX);
        fr->limit = (int)x;
    } else if (strcmp(k, "wait") == 0) {
        if (parse_i64(v, n, &x) || x < 0 || x > WAIT_MAX_S)
            return err_set(e, E_BAD_REQUEST, "wait must be whole seconds from 0 to %d",
                           WAIT_MAX_S);
        fr->wait_s = (int)x;
    } else if (strcmp(k, "col") == 0) {
        if (doc_check_collection(v, n, e))
            return -1;
        snprintf(fr->col, sizeof fr->col, "%s", v);
        fr->has_col = true;
    } else if (strcmp(k, "token") != 0) {
        /* token is read by api_auth (EventSource cannot set headers) */
        return err_set(e, E_BAD_REQUEST,
                       "unknown query parameter %.40s (use since, limit, col, wait)", k);
    }
    return 0;
}

static int parse_feed_req(const http_req *req, feed_req *fr, err_t *e)
{
    memset(fr, 0, sizeof *fr);
    fr->limit = FEED_LIMIT_DEFAULT;
    if (params_each(req, feed_param, fr, e))
        return -1;
    size_t n;
    const char *accept = http_header_get(req, "accept", &n);
    fr->sse = accept && memmem(accept, n, "text/event-stream", 17);
    const char *last = http_header_get(req, "last-event-id", &n);
    if (fr->sse && last && n) {
        int64_t x;
        if (parse_i64(last, n, &x) || x < 0)
            return err_set(e, E_BAD_REQUEST, "Last-Event-ID must be a seq");
        fr->since = x;
    }
    return 0;
}

/* ------------------------------------------------------------------ pages */

static void respond_page(conn_t *c, change_t **chs, int n, int64_t covered)
{
    buf_t b = {0};
    buf_puts(&b, "{\"changes\":[");
    for (int i = 0; i < n; i++) {
        if (i)
            buf_putc(&b, ',');
        buf_put(&b, chs[i]->json, chs[i]->json_len);
    }
    buf_printf(&b, "],\"seq\":%lld}", (long long)covered);
    conn_respond_buf(c, 200, "application/json", NULL, &b);
}

/* Collects from memory what fr->who may read; returns how many. Changes
 * it may not read are covered (the seq moves past them) but not shown. */
static int collect(app_t *app, feed_req *fr, change_t **out, int64_t *covered)
{
    int n = feed_collect(app->feed, fr->since, fr->has_col ? fr->col : NULL, fr->limit, out,
                         covered);
    if (!fr->auth)
        return n;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (access_change_visible(&fr->who, fr->auth, out[i]))
            out[k++] = out[i];
    return k;
}

static void feed_req_free(feed_req *fr)
{
    json_decref(fr->auth);
    fr->auth = NULL;
}

static void on_db_page(rjob *job)
{
    conn_t *c = job->ctx;
    if (respond_ok(c, &job->err)) {
        char rest[48];
        snprintf(rest, sizeof rest, ",\"seq\":%lld}", (long long)job->seq);
        respond_items(c, "changes", &job->out, rest);
    }
    conn_unref(c);
    rjob_free(job);
}

static rjob *db_read(app_t *app, const feed_req *fr, int limit, bool sse)
{
    rjob *job = rjob_new(R_CHANGES);
    job->actor = fr->who;
    job->since = fr->since;
    job->limit = limit;
    job->sse = sse;
    if (fr->has_col) {
        job->col_filter = true;
        snprintf(job->col, sizeof job->col, "%s", fr->col);
    }
    (void)app;
    return job;
}

/* ------------------------------------------------------------------ long poll */

static void lp_free(uv_handle_t *h) { free(h->data); }

static void lp_finish(long_poll *lp, bool answer)
{
    feed_sub *s = &lp->s;
    sub_unlink(s, &s->app->polls);
    uv_timer_stop(&lp->timer);
    conn_set_close_hook(s->c, NULL, NULL);
    if (answer && conn_open(s->c)) {
        change_t *chs[FEED_LIMIT_MAX];
        int64_t covered;
        int n = collect(s->app, &s->fr, chs, &covered);
        respond_page(s->c, chs, n, covered);
    }
    feed_req_free(&s->fr);
    conn_unref(s->c);
    uv_close((uv_handle_t *)&lp->timer, lp_free);
}

static void lp_wake(feed_waiter *w)
{
    long_poll *lp = (long_poll *)((char *)w - offsetof(long_poll, s.w));
    change_t *chs[FEED_LIMIT_MAX];
    int64_t covered;
    int n = collect(lp->s.app, &lp->s.fr, chs, &covered);
    if (n > 0) {
        lp_finish(lp, true);
        return;
    }
    /* Only changes of other collections: skip past them and wait on. */
    lp->s.fr.since = covered;
    feed_wait(lp->s.app->feed, &lp->s.w);
}

static void lp_timeout(uv_timer_t *t) { lp_finish(t->data, true); }

static void lp_conn_closed(conn_t *c, void *ctx)
{
    (void)c;
    lp_finish(ctx, false);
}

static void long_poll_start(app_t *app, conn_t *c, const feed_req *fr)
{
    long_poll *lp = xcalloc(1, sizeof *lp);
    sub_start(&lp->s, &app->polls, app, c, fr, lp_wake);
    uv_timer_init(app->loop, &lp->timer);
    lp->timer.data = lp;
    uv_timer_start(&lp->timer, lp_timeout, (uint64_t)fr->wait_s * 1000, 0);
    conn_set_close_hook(c, lp_conn_closed, lp);
    feed_wait(app->feed, &lp->s.w);
}

/* ------------------------------------------------------------------ SSE */

static void sse_pump(sse_stream *ss);

static void sse_free(sse_stream *ss)
{
    feed_req_free(&ss->s.fr);
    free(ss);
}

static void sse_conn_closed(conn_t *c, void *ctx)
{
    sse_stream *ss = ctx;
    (void)c;
    ss->dead = true;
    sub_unlink(&ss->s, &ss->s.app->streams);
    conn_unref(ss->s.c);
    if (!ss->db_pending)
        sse_free(ss);
}

static void sse_wake(feed_waiter *w)
{
    sse_pump((sse_stream *)((char *)w - offsetof(sse_stream, s.w)));
}

static void on_sse_db_page(rjob *job)
{
    sse_stream *ss = job->ctx;
    ss->db_pending = false;
    if (ss->dead) {
        sse_free(ss);
    } else if (job->err.code) {
        buf_t b = {0};
        buf_puts(&b, "event: error\ndata: {\"error\":");
        err_body(&b, &job->err);
        buf_puts(&b, "}\n\n");
        conn_stream_write(ss->s.c, b.p, b.len);
        buf_free(&b);
        conn_close(ss->s.c);
    } else {
        conn_stream_write(ss->s.c, job->out.p, job->out.len);
        ss->s.fr.since = job->seq;
        sse_pump(ss);
    }
    rjob_free(job);
}

static void sse_pump(sse_stream *ss)
{
    feed_sub *s = &ss->s;
    app_t *app = s->app;
    while (!ss->dead && !ss->db_pending) {
        if (conn_pending_bytes(s->c) > SSE_MAX_PENDING) {
            /* A reader this slow resumes with Last-Event-ID instead. */
            conn_close(s->c);
            return;
        }
        if (s->fr.since < feed_first(app->feed) - 1 || ss->ahead) {
            ss->ahead = false;
            rjob *job = db_read(app, &s->fr, SSE_PAGE, true);
            job->done = on_sse_db_page;
            job->ctx = ss;
            ss->db_pending = true;
            store_read(app->store, job);
            return;
        }
        change_t *chs[SSE_PAGE];
        int64_t covered;
        feed_req fr = s->fr;
        fr.limit = SSE_PAGE;
        int n = collect(app, &fr, chs, &covered);
        buf_t b = {0};
        for (int i = 0; i < n; i++) {
            buf_printf(&b, "id: %lld\ndata: ", (long long)chs[i]->seq);
            buf_put(&b, chs[i]->json, chs[i]->json_len);
            buf_puts(&b, "\n\n");
        }
        conn_stream_write(s->c, b.p, b.len);
        buf_free(&b);
        s->fr.since = covered;
        if (n < SSE_PAGE) {
            feed_wait(app->feed, &s->w);
            return;
        }
    }
}

static void sse_start(app_t *app, conn_t *c, const feed_req *fr)
{
    sse_stream *ss = xcalloc(1, sizeof *ss);
    ss->ahead = ahead_of_feed(app, fr->since);
    sub_start(&ss->s, &app->streams, app, c, fr, sse_wake);
    conn_stream_start(c, 200, "text/event-stream; charset=utf-8",
                      "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\n", sse_conn_closed,
                      ss);
    conn_stream_write(c, "retry: 1000\n\n", 13);
    sse_pump(ss);
}

/* Several nodes, an event stream whose since is past this node's feed:
 * the database says first whether the seq is one (else 410, before any
 * stream), then the stream starts (and reads what follows from it). */
typedef struct sse_probe {
    app_t *app;
    conn_t *c;
    feed_req fr;
} sse_probe;

static void on_sse_probe(rjob *job)
{
    sse_probe *p = job->ctx;
    bool go = conn_open(p->c) && !p->app->shutting_down && !job->err.code;
    if (go) {
        sse_start(p->app, p->c, &p->fr); /* takes fr.auth */
    } else {
        if (conn_open(p->c) && job->err.code)
            respond_err(p->c, &job->err);
        feed_req_free(&p->fr);
    }
    conn_unref(p->c);
    free(p);
    rjob_free(job);
}

static void sse_start_checked(app_t *app, conn_t *c, const feed_req *fr)
{
    if (!ahead_of_feed(app, fr->since))
        return sse_start(app, c, fr);
    sse_probe *p = xcalloc(1, sizeof *p);
    p->app = app;
    p->c = conn_ref(c);
    p->fr = *fr;
    rjob *job = db_read(app, fr, 1, true);
    job->done = on_sse_probe;
    job->ctx = p;
    store_read(app->store, job);
}

static void on_ping(uv_timer_t *t)
{
    app_t *app = t->data;
    for (feed_sub *s = app->streams; s; s = s->next)
        conn_stream_write(s->c, ": ping\n\n", 8);
}

/* ------------------------------------------------------------------ entry */

void changes_get(app_t *app, conn_t *c, http_req *req)
{
    err_t e = {0};
    actor_t who;
    feed_req fr;
    if (api_auth(app, c, req, &who, &e) || parse_feed_req(req, &fr, &e))
        return respond_err(c, &e);
    fr.who = who;
    int64_t committed = store_committed_seq(app->store);
    if (fr.since > committed && !store_shared(app->store)) {
        err_set(&e, E_RESYNC_REQUIRED,
                "since %lld is ahead of the feed (last seq %lld): the data was replaced;"
                " list again",
                (long long)fr.since, (long long)committed);
        return respond_err(c, &e);
    }
    if (fr.since < store_first_seq(app->store) - 1) {
        err_set(&e, E_RESYNC_REQUIRED,
                "changes after %lld are no longer retained (oldest is %lld); list again",
                (long long)fr.since, (long long)store_first_seq(app->store));
        return respond_err(c, &e);
    }
    if (!actor_is_admin(&who))
        fr.auth = actor_auth(&who);
    if (fr.sse)
        return sse_start_checked(app, c, &fr); /* takes fr.auth */
    if (fr.since < feed_first(app->feed) - 1 || ahead_of_feed(app, fr.since)) {
        rjob *job = db_read(app, &fr, fr.limit, false);
        job->done = on_db_page;
        job->ctx = conn_ref(c);
        store_read(app->store, job);
        feed_req_free(&fr);
        return;
    }
    change_t *chs[FEED_LIMIT_MAX];
    int64_t covered;
    int n = collect(app, &fr, chs, &covered);
    if (n > 0 || fr.wait_s == 0) {
        feed_req_free(&fr);
        return respond_page(c, chs, n, covered);
    }
    fr.since = covered;
    long_poll_start(app, c, &fr); /* takes fr.auth */
}

void changes_revoke(app_t *app, const actor_t *who)
{
    for (feed_sub *s = app->polls, *next; s; s = next) {
        next = s->next;
        if (sub_of(s, who)) {
            conn_t *c = conn_ref(s->c);
            lp_finish((long_poll *)s, false);
            conn_close(c);
            conn_unref(c);
        }
    }
    for (feed_sub *s = app->streams, *next; s; s = next) {
        next = s->next;
        if (sub_of(s, who))
            conn_close(s->c);
    }
}

/* Committed changes into the ring: long polls and event streams wait on
 * it (feed waiters), and so does realtime catch-up. First of the hub's
 * listeners, so that every later one finds the ring up to date. */
static void changes_commit(app_t *app, change_t *list, activity_rec *activity)
{
    if (list) {
        feed_append(app->feed, list);
        metrics_gauge_set(M_FEED_LAST_SEQ, feed_last(app->feed));
    }
}

static const hub_listener changes_listener = {changes_commit, changes_revoke};

void changes_init(app_t *app)
{
    hub_listen(&app->hub, &changes_listener);
    feed_set_last(app->feed, store_committed_seq(app->store));
    metrics_gauge_set(M_FEED_LAST_SEQ, feed_last(app->feed));
    uv_timer_init(app->loop, &app->ping_timer);
    app->ping_timer.data = app;
    uv_timer_start(&app->ping_timer, on_ping, SSE_PING_MS, SSE_PING_MS);
}

void changes_shutdown(app_t *app)
{
    while (app->polls)
        lp_finish((long_poll *)app->polls, true);
    while (app->streams)
        conn_close(app->streams->c); /* unlinks via sse_conn_closed */
    uv_close((uv_handle_t *)&app->ping_timer, NULL);
}
