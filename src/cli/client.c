/*
 * client.c: see client.h.
 *
 * Three layers: a TCP connection (cconn) that outlives its owner until
 * libuv has closed it, so that an owner may let go at any moment (a
 * timeout, a bad answer, free) without waiting for callbacks; an HTTP
 * exchange over it (one request in flight; the answer read by net/http's
 * http_resp_in); and a WebSocket (the upgrade answer the same way, then
 * net/ws on a client's side).
 */
#include "client.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "../net/http.h"
#include "../net/ws.h"
#include "../util/util.h"

#define READ_BUF 16384
/* A keep-alive connection idle longer than this is not reused: the server
 * may be closing it (--idle-timeout) just as we send, and a POST that
 * might have run cannot be sent again. */
#define REUSE_IDLE_NS (2ull * 1000 * 1000 * 1000)

/* ------------------------------------------------------------------ TCP */

typedef struct cconn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_shutdown_t sreq;
    void *owner; /* NULL once the owner let go */
    void (*on_connect)(void *owner, int status);
    void (*on_read)(void *owner, const char *data, ssize_t n); /* n < 0: EOF or an error */
    bool closing;
    char rbuf[READ_BUF];
} cconn;

typedef struct wreq {
    uv_write_t req;
    char data[];
} wreq;

static void conn_freed(uv_handle_t *h) { free(h->data); }

static void conn_close(cconn *c)
{
    if (!c)
        return;
    c->owner = NULL;
    c->closing = true;
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, conn_freed);
}

/* libuv calls a request's callback (here with UV_ECANCELED, when the
 * handle was closed first) before the handle's close callback. */
static void on_shutdown(uv_shutdown_t *r, int status)
{
    (void)status;
    conn_close(r->data);
}

/* Closes once what was written has gone out (a close frame, say). */
static void conn_close_gently(cconn *c)
{
    if (!c)
        return;
    c->owner = NULL;
    if (c->closing)
        return;
    c->closing = true;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        conn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    cconn *c = h->data;
    (void)hint;
    *b = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    cconn *c = s->data;
    if (n == 0)
        return;
    if (!c->owner) {
        conn_close(c);
        return;
    }
    c->on_read(c->owner, b->base, n);
}

static void on_connected(uv_connect_t *r, int status)
{
    cconn *c = r->data;
    if (!c->owner || c->closing) {
        conn_close(c);
        return;
    }
    if (status == 0) {
        uv_tcp_nodelay(&c->tcp, 1);
        status = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_conn_read);
    }
    c->on_connect(c->owner, status);
}

/* Starts a connection; NULL with *uverr set when it cannot even start. */
static cconn *conn_open(uv_loop_t *loop, const client_target *t, void *owner,
                        void (*on_connect)(void *, int),
                        void (*on_read)(void *, const char *, ssize_t), int *uverr)
{
    cconn *c = xcalloc(1, sizeof *c);
    c->owner = owner;
    c->on_connect = on_connect;
    c->on_read = on_read;
    int rc = uv_tcp_init(loop, &c->tcp);
    if (rc) {
        free(c);
        *uverr = rc;
        return NULL;
    }
    c->tcp.data = c;
    c->creq.data = c;
    rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&t->addr, on_connected);
    if (rc) {
        conn_close(c);
        *uverr = rc;
        return NULL;
    }
    return c;
}

static void on_written(uv_write_t *r, int status)
{
    (void)status; /* a failed write shows up as a read error */
    free(r->data);
}

static void conn_write(cconn *c, const void *p, size_t n)
{
    if (c->closing || n == 0)
        return;
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int done = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (done == (int)n)
        return;
    if (done < 0 && done != UV_EAGAIN)
        return; /* the read side reports the broken connection */
    size_t off = done > 0 ? (size_t)done : 0;
    wreq *w = xmalloc(sizeof *w + (n - off));
    memcpy(w->data, (const char *)p + off, n - off);
    w->req.data = w;
    b = uv_buf_init(w->data, (unsigned)(n - off));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
        free(w);
}

/* ------------------------------------------------------------------ targets, waits */

int client_target_parse(const char *url, client_target *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    snprintf(t->url, sizeof t->url, "%s", url);
    if (strncmp(url, "https://", 8) == 0) {
        snprintf(err, errlen, "%s: https is not supported; give the server's own http:// address",
                 url);
        return -1;
    }
    if (strncmp(url, "http://", 7) != 0) {
        snprintf(err, errlen, "%s: a URL is http://HOST:PORT", url);
        return -1;
    }
    const char *p = url + 7, *end = p + strcspn(p, "/");
    if (*end && strcmp(end, "/") != 0) {
        snprintf(err, errlen, "%s: give the server's address without a path", url);
        return -1;
    }
    size_t n = (size_t)(end - p);
    if (n == 0 || n >= sizeof t->hostport) {
        snprintf(err, errlen, "%s: no host", url);
        return -1;
    }
    memcpy(t->hostport, p, n);
    t->hostport[n] = '\0';
    char host[300], port[8] = "80";
    const char *hp = t->hostport, *colon;
    if (hp[0] == '[') { /* [::1]:8080 */
        const char *close = strchr(hp, ']');
        if (!close || (close[1] && close[1] != ':')) {
            snprintf(err, errlen, "%s: a bad IPv6 address", url);
            return -1;
        }
        snprintf(host, sizeof host, "%.*s", (int)(close - hp - 1), hp + 1);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = strrchr(hp, ':');
        snprintf(host, sizeof host, "%.*s", colon ? (int)(colon - hp) : (int)n, hp);
    }
    if (colon) {
        int64_t pn;
        if (parse_i64(colon + 1, strlen(colon + 1), &pn) || pn < 1 || pn > 65535) {
            snprintf(err, errlen, "%s: the port must be 1-65535", url);
            return -1;
        }
        snprintf(port, sizeof port, "%d", (int)pn);
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "%s: cannot resolve %s: %s", url, host, gai_strerror(rc));
        return -1;
    }
    memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

typedef struct waiter {
    uv_timer_t timer;
    bool fired;
} waiter;

static void on_wait_timer(uv_timer_t *t) { ((waiter *)t->data)->fired = true; }
static void waiter_freed(uv_handle_t *h) { free(h->data); }

bool client_wait(uv_loop_t *loop, bool (*done)(void *ud), void *ud, double seconds)
{
    if (done(ud))
        return true;
    waiter *w = xcalloc(1, sizeof *w);
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_wait_timer, (uint64_t)(seconds * 1000 + 0.5), 0);
    while (!done(ud) && !w->fired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&w->timer, waiter_freed);
    return done(ud);
}

static void close_left(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL); /* a safety net: every owner closes its own */
}

void client_drain(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_NOWAIT);
    uv_walk(loop, close_left, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
}

/* Printable ASCII of at most max bytes of s, for messages about what a
 * server sent. */
static void printable(char *out, size_t outlen, const char *s, size_t n, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < n && i < max && k + 1 < outlen; i++)
        out[k++] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    out[k] = '\0';
}

/* ------------------------------------------------------------------ HTTP */

struct client_http {
    uv_loop_t *loop;
    client_target t;
    double timeout_s;
    cconn *conn;
    bool connected;
    uint64_t idle_since;
    uv_timer_t timer; /* the deadline of the request in flight; a failure to report */
    bool busy;
    buf_t req;        /* the request, until it is written */
    client_http_cb cb;
    void *ud;
    http_resp_in resp; /* the answer (net/http.h) */
    char fail[200]; /* a failure found while sending, reported from the loop */
};

static void http_drop(client_http *h)
{
    conn_close(h->conn);
    h->conn = NULL;
    h->connected = false;
}

/* Ends the request in flight: the callback gets the answer or the failure. */
static void http_deliver(client_http *h, int status, const char *err)
{
    uv_timer_stop(&h->timer);
    h->busy = false;
    h->fail[0] = '\0';
    client_http_cb cb = h->cb;
    void *ud = h->ud;
    h->cb = NULL;
    h->req.len = 0;
    buf_t body = h->resp.body; /* the callback may send the next request */
    h->resp.body = (buf_t){0};
    h->idle_since = uv_hrtime();
    client_resp r = {.status = status, .body = body.p ? body.p : "", .len = body.len, .err = err};
    if (cb)
        cb(ud, &r);
    buf_free(&body);
}

static void on_http_timer(uv_timer_t *t)
{
    client_http *h = t->data;
    if (!h->busy)
        return;
    char msg[200];
    if (h->fail[0]) {
        snprintf(msg, sizeof msg, "%s", h->fail);
    } else {
        snprintf(msg, sizeof msg, "no answer from %.100s within %g s", h->t.url, h->timeout_s);
    }
    http_drop(h);
    http_deliver(h, 0, msg);
}

static void http_fail_later(client_http *h, const char *msg)
{
    snprintf(h->fail, sizeof h->fail, "%s", msg);
    uv_timer_start(&h->timer, on_http_timer, 0, 0);
}

static void on_http_read(void *owner, const char *data, ssize_t n)
{
    client_http *h = owner;
    char msg[240];
    if (!h->busy) { /* nothing asked: a server that talks out of turn */
        http_drop(h);
        return;
    }
    http_event ev;
    size_t used = 0;
    if (n < 0) {
        if (n == UV_EOF && http_resp_finish(&h->resp) == HTTP_GOT_REQUEST) {
            http_drop(h);
            http_deliver(h, h->resp.status, NULL);
            return;
        }
        if (n == UV_EOF)
            snprintf(msg, sizeof msg, "%.100s closed the connection before answering", h->t.url);
        else
            snprintf(msg, sizeof msg, "connection to %.100s: %s", h->t.url, uv_strerror((int)n));
        http_drop(h);
        http_deliver(h, 0, msg);
        return;
    }
    ev = http_resp_feed(&h->resp, data, (size_t)n, &used);
    if (ev == HTTP_NEED_MORE)
        return; /* more to come */
    if (ev == HTTP_GOT_REQUEST) {
        /* Bytes past the answer were never asked for, and a server that
         * ends the connection says so: either way, a new one next time. */
        if (used < (size_t)n || !http_resp_keep_alive(&h->resp))
            http_drop(h);
        http_deliver(h, h->resp.status, NULL);
        return;
    }
    if (h->resp.too_big)
        snprintf(msg, sizeof msg, "the answer of %.100s is over %u MiB", h->t.url,
                 CLIENT_BODY_MAX >> 20);
    else
        snprintf(msg, sizeof msg, "the answer of %.100s is not HTTP/1.1 (%s)", h->t.url,
                 h->resp.error);
    http_drop(h);
    http_deliver(h, 0, msg);
}

static void on_http_connect(void *owner, int status)
{
    client_http *h = owner;
    if (status != 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "cannot connect to %.100s: %s", h->t.url, uv_strerror(status));
        http_drop(h);
        if (h->busy)
            http_deliver(h, 0, msg);
        return;
    }
    h->connected = true;
    if (h->busy && h->req.len)
        conn_write(h->conn, h->req.p, h->req.len);
}

client_http *client_http_new(uv_loop_t *loop, const client_target *t, double timeout_s)
{
    client_http *h = xcalloc(1, sizeof *h);
    h->loop = loop;
    h->t = *t;
    h->timeout_s = timeout_s;
    http_resp_init(&h->resp, CLIENT_BODY_MAX);
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    return h;
}

static void http_freed(uv_handle_t *hd)
{
    client_http *h = hd->data;
    buf_free(&h->req);
    http_resp_free(&h->resp);
    free(h);
}

void client_http_free(client_http *h)
{
    if (!h)
        return;
    http_drop(h);
    h->busy = false;
    h->cb = NULL;
    uv_close((uv_handle_t *)&h->timer, http_freed);
}

bool client_http_busy(const client_http *h) { return h->busy; }

int client_http_send(client_http *h, const char *method, const char *path, const char *token,
                     const char *body, size_t len, client_http_cb cb, void *ud)
{
    if (h->busy)
        return -1;
    h->busy = true;
    h->cb = cb;
    h->ud = ud;
    http_resp_next(&h->resp);
    h->req.len = 0;
    buf_printf(&h->req, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, h->t.hostport);
    if (token)
        buf_printf(&h->req, "Authorization: Bearer %s\r\n", token);
    if (body)
        buf_printf(&h->req, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", len);
    else
        buf_puts(&h->req, "Content-Length: 0\r\n\r\n");
    if (body)
        buf_put(&h->req, body, len);
    uv_timer_start(&h->timer, on_http_timer, (uint64_t)(h->timeout_s * 1000 + 0.5), 0);
    if (h->conn && h->connected && uv_hrtime() - h->idle_since > REUSE_IDLE_NS)
        http_drop(h);
    if (h->conn) {
        if (h->connected)
            conn_write(h->conn, h->req.p, h->req.len);
        return 0; /* else written once connected */
    }
    int uverr = 0;
    h->conn = conn_open(h->loop, &h->t, h, on_http_connect, on_http_read, &uverr);
    if (!h->conn) {
        char msg[200];
        snprintf(msg, sizeof msg, "cannot connect to %.100s: %s", h->t.url, uv_strerror(uverr));
        http_fail_later(h, msg);
    }
    return 0;
}

/* ------------------------------------------------------------------ HTTP, waited for */

typedef struct call_state {
    bool done;
    client_answer *a;
    uint64_t t0;
} call_state;

static void on_call_answer(void *ud, const client_resp *r)
{
    call_state *cs = ud;
    client_answer *a = cs->a;
    cs->done = true;
    a->status = r->status;
    a->ms = (double)(uv_hrtime() - cs->t0) / 1e6;
    if (r->err) {
        snprintf(a->err, sizeof a->err, "%s", r->err);
        return;
    }
    if (r->len == 0)
        return;
    json_error_t je;
    a->json = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &je);
    if (!a->json) {
        char head[80];
        printable(head, sizeof head, r->body, r->len, 60);
        snprintf(a->err, sizeof a->err, "%d answer is not JSON (%.80s): %.60s", r->status, je.text,
                 head);
    }
}

static bool call_done(void *ud) { return ((call_state *)ud)->done; }

int client_call(client_http *h, const char *method, const char *path, const char *token,
                const json_t *body, client_answer *a)
{
    memset(a, 0, sizeof *a);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    call_state cs = {.a = a, .t0 = uv_hrtime()};
    if (client_http_send(h, method, path, token, text, text ? strlen(text) : 0, on_call_answer,
                         &cs) != 0) {
        free(text);
        snprintf(a->err, sizeof a->err, "a request is already in flight on this connection");
        return 0;
    }
    free(text);
    /* The request's own timer ends it; the margin only guards that. */
    if (!client_wait(h->loop, call_done, &cs, h->timeout_s + 5)) {
        http_drop(h);
        h->busy = false;
        h->cb = NULL;
        uv_timer_stop(&h->timer);
        snprintf(a->err, sizeof a->err, "no answer from %.100s within %g s", h->t.url, h->timeout_s);
        a->status = 0;
    }
    return a->status;
}

void client_answer_clear(client_answer *a)
{
    json_decref(a->json);
    a->json = NULL;
}

/* An answer's {"error":{"code","message"}}, made printable: whether it
 * has a code. */
static bool error_object(const json_t *answer, char code[64], char msg[200])
{
    json_t *e = json_object_get(answer, "error");
    const char *cs = json_string_value(json_object_get(e, "code"));
    const char *ms = json_string_value(json_object_get(e, "message"));
    code[0] = msg[0] = '\0';
    if (cs)
        printable(code, 64, cs, strlen(cs), 60);
    if (ms)
        printable(msg, 200, ms, strlen(ms), 190);
    return cs != NULL;
}

void client_answer_describe(const client_answer *a, char *out, size_t outlen)
{
    if (a->status == 0) {
        snprintf(out, outlen, "%s", a->err);
        return;
    }
    char c[64], m[200];
    if (error_object(a->json, c, m))
        snprintf(out, outlen, "%d %s: %s", a->status, c, m);
    else if (a->err[0])
        snprintf(out, outlen, "%s", a->err);
    else
        snprintf(out, outlen, "%d (no error object in the answer)", a->status);
}

/* ------------------------------------------------------------------ WebSocket */

enum { WS_CONNECTING, WS_HANDSHAKE, WS_OPEN, WS_CLOSED };

struct client_ws {
    uv_loop_t *loop;
    client_target t;
    cconn *conn;
    uv_timer_t timer; /* the upgrade's deadline */
    int state;
    double timeout_s;
    buf_t request;
    char accept_want[29];
    http_resp_in resp; /* the upgrade's answer (net/http.h) */
    ws_t *ws;          /* then the frames (net/ws.h, a client's side) */
    buf_t out;
    bool in_feed;
    bool free_pending;
    char err[256];
    client_ws_msg_cb on_msg;
    void *ud;
};

static void ws_fail(client_ws *ws, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Notes why the connection is over; the caller closes it (never from
 * inside a frame callback: see ws_end). */
static void ws_fail(client_ws *ws, const char *fmt, ...)
{
    if (ws->state == WS_CLOSED)
        return;
    ws->state = WS_CLOSED;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ws->err, sizeof ws->err, fmt, ap);
    va_end(ap);
    uv_timer_stop(&ws->timer);
}

static void ws_write_out(client_ws *ws)
{
    if (ws->out.len && ws->conn)
        conn_write(ws->conn, ws->out.p, ws->out.len);
    ws->out.len = 0;
}

static void ws_end(client_ws *ws)
{
    if (ws->state != WS_CLOSED || ws->in_feed)
        return;
    ws_write_out(ws); /* the answering close frame, if any */
    conn_close_gently(ws->conn);
    ws->conn = NULL;
}

/* ------------------------------------------------------------------ frames (ws_t callbacks) */

static void ws_on_text(void *ctx, const char *msg, size_t len)
{
    client_ws *ws = ctx;
    if (ws->state != WS_OPEN)
        return;
    json_error_t je;
    json_t *m = json_loadb(msg, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(m)) {
        char head[80];
        printable(head, sizeof head, msg, len, 60);
        ws_fail(ws, "the server sent a message that is not a JSON object (%s): %s",
                m ? "not an object" : je.text, head);
    } else if (ws->on_msg) {
        ws->on_msg(ws->ud, m, uv_hrtime());
    }
    json_decref(m);
}

static void ws_on_send(void *ctx, const void *data, size_t len)
{
    client_ws *ws = ctx;
    buf_put(&ws->out, data, len); /* written in one piece when ws_t returns */
}

static void ws_on_close(void *ctx, unsigned code, const char *reason, size_t len)
{
    client_ws *ws = ctx;
    char r[130] = "";
    if (len)
        printable(r, sizeof r, reason, len, 120);
    ws_fail(ws, "the server closed the WebSocket (%u%s%s)", code, r[0] ? " " : "", r);
}

static const ws_cb client_ws_cb = {
    .on_text = ws_on_text,
    .send = ws_on_send,
    .on_close = ws_on_close,
};

static void ws_freed(uv_handle_t *h)
{
    client_ws *ws = h->data;
    buf_free(&ws->request);
    buf_free(&ws->out);
    http_resp_free(&ws->resp);
    ws_free(ws->ws);
    free(ws);
}

static void ws_really_free(client_ws *ws)
{
    ws->on_msg = NULL;
    if (ws->state == WS_OPEN && ws->ws) {
        ws_close(ws->ws, WS_CLOSE_NORMAL, "done");
        ws_write_out(ws);
    }
    if (ws->state != WS_CLOSED)
        ws->state = WS_CLOSED;
    ws_end(ws);
    uv_close((uv_handle_t *)&ws->timer, ws_freed);
}

/* Frames from the server: to ws_t, and what it made (pongs, the
 * answering close) back out. */
static void ws_input(client_ws *ws, const char *data, size_t n)
{
    ws->in_feed = true;
    bool open = ws_feed(ws->ws, data, n);
    ws->in_feed = false;
    if (ws->free_pending) {
        ws_really_free(ws);
        return;
    }
    ws_write_out(ws);
    if (!open && ws_refused(ws->ws))
        ws_fail(ws, "the server sent %s", ws_refused(ws->ws));
    else if (!open)
        ws_fail(ws, "the WebSocket closed");
    ws_end(ws);
}

/* ------------------------------------------------------------------ the upgrade */

/* The refusal of an upgrade: "401 unauthorized: no token ..." */
static void ws_upgrade_refused(client_ws *ws)
{
    const buf_t *b = &ws->resp.body;
    json_t *j = json_loadb(b->p ? b->p : "", b->len, 0, NULL);
    char c[64], m[200];
    error_object(j, c, m);
    ws_fail(ws, "the server refused the WebSocket upgrade: %d %s%s%s", ws->resp.status, c,
            m[0] ? ": " : "", m);
    json_decref(j);
}

static void ws_upgraded(client_ws *ws, const char *rest, size_t restlen)
{
    size_t al = 0, ul = 0;
    const char *accept = http_resp_header(&ws->resp, "sec-websocket-accept", &al);
    const char *upgrade = http_resp_header(&ws->resp, "upgrade", &ul);
    if (!accept || al != 28 || memcmp(accept, ws->accept_want, 28) != 0 || !upgrade ||
        ul != 9 || ascii_casecmp_n(upgrade, "websocket", 9) != 0) {
        ws_fail(ws, "the server's upgrade answer is wrong (Sec-WebSocket-Accept or Upgrade)");
        return;
    }
    ws->ws = ws_new_client(&client_ws_cb, ws, CLIENT_WS_MESSAGE_MAX);
    ws->state = WS_OPEN;
    uv_timer_stop(&ws->timer);
    if (restlen)
        ws_input(ws, rest, restlen);
}

static void on_ws_read(void *owner, const char *data, ssize_t n)
{
    client_ws *ws = owner;
    if (n < 0) {
        if (ws->state == WS_HANDSHAKE || ws->state == WS_OPEN)
            ws_fail(ws, "%s", n == UV_EOF ? "the server closed the connection"
                                          : uv_strerror((int)n));
        ws_end(ws);
        return;
    }
    if (ws->state == WS_OPEN) {
        ws_input(ws, data, (size_t)n);
        return;
    }
    if (ws->state != WS_HANDSHAKE)
        return;
    size_t used = 0;
    http_event ev = http_resp_feed(&ws->resp, data, (size_t)n, &used);
    if (ev == HTTP_GOT_REQUEST && ws->resp.status == 101)
        ws_upgraded(ws, data + used, (size_t)n - used);
    else if (ev == HTTP_GOT_REQUEST)
        ws_upgrade_refused(ws);
    else if (ev == HTTP_ERROR)
        ws_fail(ws, "the server's answer to the upgrade is not HTTP/1.1 (%s)", ws->resp.error);
    ws_end(ws);
}

static void on_ws_connect(void *owner, int status)
{
    client_ws *ws = owner;
    if (status != 0) {
        ws_fail(ws, "cannot connect to %.100s: %s", ws->t.url, uv_strerror(status));
        ws_end(ws);
        return;
    }
    ws->state = WS_HANDSHAKE;
    conn_write(ws->conn, ws->request.p, ws->request.len);
}

static void on_ws_timer(uv_timer_t *t)
{
    client_ws *ws = t->data;
    if (ws->state == WS_CONNECTING || ws->state == WS_HANDSHAKE) {
        ws_fail(ws, "no WebSocket upgrade from %.100s within %g s", ws->t.url, ws->timeout_s);
        ws_end(ws);
    }
}

client_ws *client_ws_open(uv_loop_t *loop, const client_target *t, const char *path,
                          const char *token, double timeout_s, client_ws_msg_cb on_msg, void *ud)
{
    client_ws *ws = xcalloc(1, sizeof *ws);
    ws->loop = loop;
    ws->t = *t;
    ws->timeout_s = timeout_s;
    ws->on_msg = on_msg;
    ws->ud = ud;
    ws->state = WS_CONNECTING;
    uv_timer_init(loop, &ws->timer);
    ws->timer.data = ws;
    unsigned char raw[16];
    char key[25];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(key, sizeof key, raw, sizeof raw, sodium_base64_VARIANT_ORIGINAL);
    ws_accept_key(key, strlen(key), ws->accept_want);
    buf_printf(&ws->request,
               "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n",
               path, t->hostport, key);
    if (token)
        buf_printf(&ws->request, "Authorization: Bearer %s\r\n", token);
    buf_puts(&ws->request, "\r\n");
    http_resp_init(&ws->resp, 4096);
    uv_timer_start(&ws->timer, on_ws_timer, (uint64_t)(timeout_s * 1000 + 0.5), 0);
    int uverr = 0;
    ws->conn = conn_open(loop, t, ws, on_ws_connect, on_ws_read, &uverr);
    if (!ws->conn)
        ws_fail(ws, "cannot connect to %.100s: %s", t->url, uv_strerror(uverr));
    return ws;
}

void client_ws_free(client_ws *ws)
{
    if (!ws)
        return;
    ws->on_msg = NULL;
    if (ws->in_feed) { /* from inside its own callback: after ws_feed returns */
        ws->free_pending = true;
        return;
    }
    ws_really_free(ws);
}

bool client_ws_connecting(const client_ws *ws)
{
    return ws->state == WS_CONNECTING || ws->state == WS_HANDSHAKE;
}

bool client_ws_open_now(const client_ws *ws) { return ws->state == WS_OPEN; }

const char *client_ws_error(const client_ws *ws)
{
    return ws->state == WS_CLOSED ? ws->err : NULL;
}

int client_ws_send(client_ws *ws, const json_t *msg)
{
    if (ws->state != WS_OPEN || !ws->ws)
        return -1;
    char *text = json_dumps(msg, JSON_COMPACT);
    ws_send_text(ws->ws, text, strlen(text)); /* ws_t copies it */
    free(text);
    if (!ws->in_feed) /* else written when ws_feed returns */
        ws_write_out(ws);
    return 0;
}
