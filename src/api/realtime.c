/*
 * realtime.c: GET /v1/realtime, the WebSocket protocol of docs/API.md
 * "Realtime": the upgrade, a session's life (its connection, heartbeats),
 * sending, and the dispatch of each client message. The rest lives beside
 * it, sharing realtime_int.h:
 *   rt_subs.c      subscriptions and their states (snapshot, catch-up, live)
 *   rt_fanout.c    each committed change to the live subscribers, framed once
 *   rt_presence.c  who is here (_presence)
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
 * Lifetime: a session lives while its connection is open, and a
 * subscription while it is subscribed; a read in flight holds a reference
 * to both, so that its answer finds them even after they ended.
 */
#include "realtime_int.h"

#include "../util/slab.h"

void rt_session_actor(const rt_session *s, actor_t *a)
{
    memset(a, 0, sizeof *a);
    snprintf(a->id, sizeof a->id, "%s", s->who_id);
    snprintf(a->role, sizeof a->role, "%s", s->who_role);
    snprintf(a->email, sizeof a->email, "%s", s->who_email);
    snprintf(a->session, sizeof a->session, "%s", s->who_session);
}

const json_t *rt_session_auth(rt_session *s)
{
    if (!s->auth) {
        actor_t a;
        rt_session_actor(s, &a);
        s->auth = actor_auth(&a);
    }
    return s->auth;
}

/* ------------------------------------------------------------------ sending */

bool rt_can_send(rt_session *s) { return !s->closed && !s->ending; }

/* One text frame whose payload is head + body + tail (copied). */
void rt_send_frame(rt_session *s, const char *head, size_t hlen, const char *body,
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
    if (rt_can_send(s))
        rt_send_frame(s, msg, len, NULL, 0, NULL, 0);
}

void rt_send_buf(rt_session *s, buf_t *b)
{
    send_text(s, b->p, b->len);
    buf_free(b);
}

/* {"t":"error","sub":ID,"error":{...}} (sub omitted when id is NULL). */
void rt_send_error(rt_session *s, const char *type_key, const char *id, const err_t *e)
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
    rt_send_buf(s, &b);
}

/* A whole frame, shared by every connection it goes to. */
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
    rt_send_buf(k->s, &b);
    rt_session_unref(k->s);
    free(k);
}

static void handle_call(rt_session *s, rt_msg *m)
{
    rt_call *k = xmalloc(sizeof *k);
    k->s = s;
    s->refs++;
    snprintf(k->id, sizeof k->id, "%s", m->id);
    actor_t who;
    rt_session_actor(s, &who);
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
        rt_send_error(s, m.type == RT_CALL ? "id" : "sub", m.id, &e);
        err_clear(&e);
        return;
    }
    switch (m.type) {
    case RT_PING:
        send_text(s, "{\"t\":\"pong\"}", 12);
        break;
    case RT_SUB:
        rt_handle_sub(s, &m);
        break;
    case RT_UNSUB: {
        rt_sub *u = rt_find_sub(s, m.id);
        if (u) {
            rt_sub_end(u);
        } else {
            err_set(&e, E_NOT_FOUND, "no subscription %s", m.id);
            rt_send_error(s, "sub", m.id, &e);
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
        rt_presence_broadcast(s->app, s, SUBOP_MODIFIED);
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

void rt_session_unref(rt_session *s)
{
    if (--s->refs > 0)
        return;
    ws_free(s->ws);
    json_decref(s->pstate);
    json_decref(s->auth);
    slab_free(s, sizeof *s + strlen(s->who_id) + strlen(s->who_role) + strlen(s->who_email) + 3);
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
    rt_session_unref(s);
}

static void on_drain(conn_t *c, void *ctx)
{
    rt_session *s = ctx;
    (void)c;

    s->refs++;
    for (rt_sub *u = s->subs, *next; u; u = next) {
        next = u->next;
        if (u->state == SUB_SNAPSHOT || u->state == SUB_CATCHUP)
            rt_sub_advance(u);
    }
    rt_session_unref(s);
}

static void on_close(conn_t *c, void *ctx)
{
    rt_session *s = ctx;
    app_t *app = s->app;
    (void)c;
    s->closed = true;
    while (s->subs)
        rt_sub_end(s->subs);
    if (s->prev)
        s->prev->next = s->next;
    else
        app->rt->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    app->rt->nsessions--;
    metrics_gauge_add(M_WS_SESSIONS, -1);
    rt_presence_broadcast(app, s, SUBOP_REMOVED);
    conn_unref(s->c);
    rt_session_unref(s);
}

static const conn_raw_cb raw_callbacks = {
    .on_data = on_data, .on_drain = on_drain, .on_close = on_close};

/* Closes s with code, after what is queued. */
void rt_session_close(rt_session *s, uint16_t code, const char *reason)
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
    /* Who it is follows the struct, in the same allocation. */
    size_t li = strlen(who.id) + 1, lr = strlen(who.role) + 1, le = strlen(who.email) + 1;
    rt_session *s = slab_alloc(sizeof *s + li + lr + le);
    char *tail = (char *)(s + 1);
    s->who_id = memcpy(tail, who.id, li);
    s->who_role = memcpy(tail + li, who.role, lr);
    s->who_email = memcpy(tail + li + lr, who.email, le);
    s->app = app;
    s->c = conn_ref(c);
    s->refs = 1;
    s->ws = ws_new(&ws_callbacks, s);
    snprintf(s->who_session, sizeof s->who_session, "%s", who.session);
    s->who_admin = actor_is_admin(&who);
    s->last_rx = uv_now(app->loop);
    random_id(s->pid, 16);
    s->since_ms = time_now_ms();
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
    rt_presence_broadcast(app, s, SUBOP_ADDED);
}

/* ------------------------------------------------------------------ heartbeat */

static void on_ping(uv_timer_t *t)
{
    app_t *app = t->data;
    uint64_t now = uv_now(app->loop);
    for (rt_session *s = app->rt->sessions, *next; s; s = next) {
        next = s->next;
        if (!rt_can_send(s))
            continue;
        if (now - s->last_rx >= 3 * app->rt->ping_ms) {
            rt_session_close(s, WS_CLOSE_GOING_AWAY, "no data for too long");
            continue;
        }
        conn_out_copy(s->c, ws_ping_frame, sizeof ws_ping_frame);
    }
}

/* ------------------------------------------------------------------ life */

static const hub_listener realtime_listener = {realtime_on_commit, realtime_revoke};

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
    hub_listen(&app->hub, &realtime_listener);
    rt_presence_init(app);
}

void realtime_shutdown(app_t *app)
{
    struct realtime *rt = app->rt;
    for (rt_session *s = rt->sessions, *next; s; s = next) {
        next = s->next; /* rt_session_close may end s at once */
        rt_session_close(s, WS_CLOSE_GOING_AWAY, "the server is shutting down");
    }
    uv_close((uv_handle_t *)&rt->ping, NULL);
    rt_presence_shutdown(app);
}

void realtime_free(app_t *app)
{
    struct realtime *rt = app->rt;
    if (!rt)
        return;
    subs_free(&rt->index);
    rt_presence_free(app);
    free(rt->psubs);
    free(rt->asubs);
    free(rt->slow);
    free(rt);
    app->rt = NULL;
}
