/*
 * server.c: HTTP connections on libuv. See server.h.
 *
 * A connection is in one of these timer modes:
 *   HEADER  waiting for a whole header section (--header-timeout): a
 *           client that trickles its headers is dropped when it runs out;
 *   BODY    waiting for the body (--idle-timeout);
 *   IDLE    keep-alive between requests (--idle-timeout);
 *   NONE    a request is being handled, or the connection streams;
 *   LINGER  an error answer was sent and our side shut down; what the
 *           client still sends is read and dropped for a moment, so that
 *           the kernel does not reset the connection before the client
 *           has read the answer.
 */
#include "server.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../core/err.h"
#include "../util/log.h"
#include "../util/slab.h"

#define INBUF_MAX (HTTP_MAX_BODY + HTTP_MAX_HEAD + 64 * 1024)
#define LINGER_MS 2000
#define RBUF_SIZE (64 * 1024)
#define RAW_LOW_WATER (256 * 1024) /* on_drain below this many bytes */

typedef enum { T_NONE, T_HEADER, T_BODY, T_IDLE, T_LINGER } tmode;
typedef struct http_side http_side;

/* A connection's place in its timeout's queue. Each queue holds the
 * connections of one timeout length in the order their deadlines come
 * (each joins at the tail with now + the same length), so one timer for the
 * server, set to the earliest head, replaces a uv_timer_t (152 bytes) in
 * every connection. */
typedef struct tlink {
    struct tlink *prev, *next;
} tlink;
enum { TQ_HEADER, TQ_IDLE, TQ_LINGER, TQ_N }; /* BODY and IDLE share --idle-timeout */

struct conn {
    uv_tcp_t tcp;
    tlink tq;          /* its place in a timeout queue (conn_of_tq) */
    uint64_t deadline; /* loop ms, while in a timeout queue */
    server_t *srv;
    http_side *h;      /* NULL once upgraded */
    size_t write_pending;
    void (*on_stream_close)(conn_t *c, void *ctx);
    void *stream_ctx;  /* also the upgraded connection's handler's */
    conn_t *prev, *next;
    /* Upgraded (WebSocket): the handler's callbacks and the output being
     * gathered for the next writev. */
    const conn_raw_cb *raw;
    struct outq *out;
    conn_t *dirty_next;
    int refs;
    uint8_t mode;      /* tmode */
    bool closing : 1;
    bool busy : 1;         /* a request is with the handler */
    bool in_process : 1;   /* process() is on the stack */
    bool streaming : 1;
    bool close_after_write : 1;
    bool eof : 1;
    bool reading : 1;
    bool loopback : 1;
    bool dirty : 1;
    char remote[INET6_ADDRSTRLEN];
};

/* What only an HTTP connection needs, given up at the upgrade: the parser
 * and the input not parsed yet. */
struct http_side {
    http_in in;
    buf_t buf;
    size_t pos;
    /* The request being handled, for the access log. */
    route_id route;
    uint64_t t_req;
    char *xhdr;        /* header lines for every answer to this request (CORS) */
};
#define SPARE_SIDES 32

struct server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_timer_t timer;   /* the earliest deadline of the timeout queues */
    uint64_t timer_at;  /* when it fires; 0: stopped */
    tlink tqs[TQ_N];    /* sentinels */
    uv_check_t flusher; /* writes the gathered output of upgraded connections */
    uv_idle_t kick;     /* active while output waits: the loop must not block */
    conn_t *dirty;      /* upgraded connections with output to write */
    char *rbuf;         /* the read buffer every connection shares (on_alloc) */
    bool listening;
    server_opts opts;
    server_handler handler;
    void *app;
    conn_t conns; /* sentinel */
    http_side *spare[SPARE_SIDES];
    int nspare;
    /* Giving freed memory back (see on_trim_tick). */
    uv_timer_t trim_timer;
    uv_work_t trim_work;
    bool trimming;
    bool trimmed;   /* at the last tick: the end of a burst gets one more */
    unsigned churn; /* connections opened and closed since the last trim */
};

static void process(conn_t *c);
static void read_start(conn_t *c);

/* An HTTP side (6.7 KiB) lives from the accept to the upgrade, which for
 * a WebSocket is a few milliseconds. From the heap, a burst of clients
 * connecting leaves holes where they were, between the connections' long-
 * lived parts, and the holes stay resident: 150 bytes a connection (at
 * 10,000 opened at once, docs/BENCHMARKS.md). Mapped, each goes back to the
 * system whole; a few are kept for the next connections. */
static http_side *side_new(server_t *s)
{
#if SLAB_SANITIZED
    (void)s;
    return xcalloc(1, sizeof(http_side)); /* so that AddressSanitizer sees its misuse */
#else
    if (s->nspare) {
        http_side *h = s->spare[--s->nspare];
        memset(h, 0, sizeof *h);
        return h;
    }
    void *p = mmap(NULL, sizeof(http_side), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "livedb: out of memory (mmap of %zu bytes)\n", sizeof(http_side));
        abort();
    }
    return p; /* zeroed */
#endif
}

static void side_free(server_t *s, http_side *h)
{
    http_in_free(&h->in);
    buf_free(&h->buf);
    free(h->xhdr);
#if SLAB_SANITIZED
    (void)s;
    free(h);
#else
    if (s->nspare < SPARE_SIDES)
        s->spare[s->nspare++] = h;
    else
        munmap(h, sizeof *h);
#endif
}

/* ------------------------------------------------------------------ lifetime */

conn_t *conn_ref(conn_t *c)
{
    c->refs++;
    return c;
}

static void raw_free(conn_t *c);

void conn_unref(conn_t *c)
{
    if (--c->refs > 0)
        return;
    if (c->h)
        side_free(c->srv, c->h);
    raw_free(c);
    slab_free(c, sizeof *c);
}

bool conn_open(const conn_t *c) { return !c->closing; }
const char *conn_remote(const conn_t *c) { return c->remote; }
bool conn_is_loopback(const conn_t *c) { return c->loopback; }
void conn_set_route(conn_t *c, route_id r)
{
    if (c->h)
        c->h->route = r;
}

void conn_set_headers(conn_t *c, const char *lines)
{
    if (!c->h)
        return;
    free(c->h->xhdr);
    c->h->xhdr = lines ? xstrdup(lines) : NULL;
}
size_t conn_pending_bytes(const conn_t *c) { return c->write_pending; }

static void on_handle_closed(uv_handle_t *h) { conn_unref(h->data); }

static void tq_unlink(conn_t *c)
{
    if (c->tq.next) {
        c->tq.prev->next = c->tq.next;
        c->tq.next->prev = c->tq.prev;
        c->tq.prev = c->tq.next = NULL;
    }
}

void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->prev->next = c->next;
    c->next->prev = c->prev;
    metrics_gauge_add(M_CONNECTIONS, -1);
    c->srv->churn++;
    if (c->on_stream_close) {
        void (*cb)(conn_t *, void *) = c->on_stream_close;
        c->on_stream_close = NULL;
        cb(c, c->stream_ctx);
    }
    tq_unlink(c);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* ------------------------------------------------------------------ timers */

static conn_t *conn_of_tq(tlink *l) { return (conn_t *)((char *)l - offsetof(conn_t, tq)); }

static void on_timer(uv_timer_t *t);

/* Sets the server's timer to the earliest deadline, if it fires later. */
static void timer_arm(server_t *s, uint64_t at)
{
    if (s->timer_at && s->timer_at <= at)
        return;
    uint64_t now = uv_now(s->loop);
    s->timer_at = at;
    uv_timer_start(&s->timer, on_timer, at > now ? at - now : 0, 0);
}

static void on_timer(uv_timer_t *t)
{
    server_t *s = t->data;
    uint64_t now = uv_now(s->loop), next = 0;
    s->timer_at = 0;
    for (int q = 0; q < TQ_N; q++) {
        tlink *head = &s->tqs[q];
        while (head->next != head) {
            conn_t *c = conn_of_tq(head->next);
            if (c->deadline > now) {
                if (!next || c->deadline < next)
                    next = c->deadline;
                break;
            }
            if (c->mode == T_HEADER && c->h->in.head_started)
                log_msg(LOG_INFO, "dropped %s: headers not complete within %.0f s", c->remote,
                        s->opts.header_timeout);
            conn_close(c); /* unlinks it */
        }
    }
    if (next)
        timer_arm(s, next);
}

static void set_mode(conn_t *c, tmode m)
{
    if (c->closing)
        return;
    c->mode = m;
    tq_unlink(c);
    double secs = 0;
    int q = TQ_IDLE;
    switch (m) {
    case T_HEADER: secs = c->srv->opts.header_timeout; q = TQ_HEADER; break;
    case T_BODY:
    case T_IDLE: secs = c->srv->opts.idle_timeout; break;
    case T_LINGER: secs = LINGER_MS / 1000.0; q = TQ_LINGER; break;
    case T_NONE: return;
    }
    server_t *s = c->srv;
    c->deadline = uv_now(s->loop) + (uint64_t)(secs * 1000);
    tlink *head = &s->tqs[q];
    c->tq.next = head;
    c->tq.prev = head->prev;
    head->prev->next = &c->tq;
    head->prev = &c->tq;
    timer_arm(s, c->deadline);
}

/* ------------------------------------------------------------------ writing */

typedef struct wreq {
    uv_write_t req;
    conn_t *c;
    char *bufs[2];
    size_t len;
} wreq;

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn_t *c = req->data;
    (void)status;
    free(req);
    if (!c->closing) {
        if (c->eof)
            conn_close(c);
        else
            set_mode(c, T_LINGER);
    }
    conn_unref(c);
}

static void maybe_close_after_write(conn_t *c)
{
    if (c->closing || !c->close_after_write || c->write_pending || c->busy)
        return;
    if (c->eof) {
        conn_close(c);
        return;
    }
    uv_shutdown_t *sh = xmalloc(sizeof *sh);
    sh->data = conn_ref(c);
    if (uv_shutdown(sh, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(sh);
        conn_unref(c);
        conn_close(c);
    }
}

static void on_write(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    conn_t *c = w->c;
    c->write_pending -= w->len;
    free(w->bufs[0]);
    free(w->bufs[1]);
    free(w);
    if (status < 0)
        conn_close(c);
    else
        maybe_close_after_write(c);
    conn_unref(c);
}

/* Writes head (and body), taking ownership of both. */
static void write_owned(conn_t *c, char *head, size_t hlen, char *body, size_t blen)
{
    if (c->closing) {
        free(head);
        free(body);
        return;
    }
    wreq *w = xmalloc(sizeof *w);
    w->c = conn_ref(c);
    w->bufs[0] = head;
    w->bufs[1] = body;
    w->len = hlen + blen;
    uv_buf_t bufs[2] = {uv_buf_init(head, (unsigned)hlen), uv_buf_init(body, (unsigned)blen)};
    c->write_pending += w->len;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, blen ? 2 : 1, on_write) != 0) {
        c->write_pending -= w->len;
        free(head);
        free(body);
        free(w);
        conn_close(c);
        conn_unref(c);
    }
}

static void access_log(conn_t *c, int status, size_t bytes)
{
    double secs = (double)(time_mono_ns() - c->h->t_req) / 1e9;
    metrics_http(c->h->route, status, secs);
    if (!log_access_enabled())
        return;
    char at[TIME_RFC3339_LEN + 1];
    time_format_rfc3339(time_now_ms(), at);
    buf_t b = {0};
    buf_reserve(&b, 256);
    buf_puts(&b, "{\"at\":\"");
    buf_puts(&b, at);
    buf_puts(&b, "\",\"remote\":\"");
    buf_puts(&b, c->remote);
    buf_puts(&b, "\",\"method\":\"");
    buf_puts(&b, llhttp_method_name((llhttp_method_t)c->h->in.req.method));
    buf_puts(&b, "\",\"path\":");
    buf_put_json_str(&b, c->h->in.req.path ? c->h->in.req.path : "",
                     c->h->in.req.path ? c->h->in.req.path_len : 0);
    buf_puts(&b, ",\"route\":\"");
    buf_puts(&b, route_name(c->h->route));
    buf_puts(&b, "\",\"status\":");
    buf_put_i64(&b, status);
    /* Milliseconds with three decimals, without the float formatter. */
    int64_t us = (int64_t)(secs * 1e6);
    buf_puts(&b, ",\"ms\":");
    buf_put_i64(&b, us / 1000);
    char frac[5] = {'.', (char)('0' + us % 1000 / 100), (char)('0' + us % 100 / 10),
                    (char)('0' + us % 10), 0};
    buf_puts(&b, frac);
    buf_puts(&b, ",\"bytes\":");
    buf_put_i64(&b, (int64_t)bytes);
    buf_putc(&b, '}');
    log_access_line(b.p, b.len);
    buf_free(&b);
}

static char *format_head(conn_t *c, int status, const char *ctype, const char *headers,
                         long long content_length, size_t *len)
{
    buf_t h = {0};
    buf_reserve(&h, 256);
    buf_puts(&h, "HTTP/1.1 ");
    buf_put_i64(&h, status);
    buf_putc(&h, ' ');
    buf_puts(&h, http_status_text(status));
    if (ctype) {
        buf_puts(&h, "\r\nContent-Type: ");
        buf_puts(&h, ctype);
    }
    if (content_length >= 0) {
        buf_puts(&h, "\r\nContent-Length: ");
        buf_put_i64(&h, content_length);
    }
    buf_puts(&h, "\r\n");
    if (c->close_after_write)
        buf_puts(&h, "Connection: close\r\n");
    if (c->h->xhdr)
        buf_puts(&h, c->h->xhdr);
    if (headers)
        buf_puts(&h, headers);
    buf_puts(&h, "\r\n");
    return buf_take(&h, len);
}

/* The request is answered: make ready for the next one. */
static void finish_request(conn_t *c)
{
    c->busy = false;
    free(c->h->xhdr);
    c->h->xhdr = NULL;
    http_in_next(&c->h->in);
    if (c->closing)
        return;
    if (c->close_after_write) {
        maybe_close_after_write(c);
        return;
    }
    set_mode(c, T_IDLE);
    if (!c->reading && !c->eof)
        read_start(c);
    if (!c->in_process)
        process(c);
}

void conn_respond_buf(conn_t *c, int status, const char *ctype, const char *headers, buf_t *body)
{
    if (!c->busy) { /* answered already (a bug), or the request was dropped */
        buf_free(body);
        return;
    }
    if (!c->h->in.req.keep_alive)
        c->close_after_write = true;
    size_t blen = body ? body->len : 0;
    char *b = body && body->p ? buf_take(body, NULL) : NULL;
    size_t hlen;
    bool head_only = c->h->in.req.method == HTTP_HEAD;
    char *h = format_head(c, status, ctype, headers, (long long)blen, &hlen);
    access_log(c, status, blen);
    if (head_only) {
        free(b);
        b = NULL;
        blen = 0;
    }
    write_owned(c, h, hlen, b, blen);
    finish_request(c);
}

void conn_respond(conn_t *c, int status, const char *ctype, const char *headers,
                  const char *body, size_t len)
{
    buf_t b = {0};
    if (len)
        buf_put(&b, body, len);
    conn_respond_buf(c, status, ctype, headers, &b);
}

void conn_respond_error(conn_t *c, const err_t *e, const char *headers)
{
    buf_t b = {0};
    buf_puts(&b, "{\"error\":");
    err_body(&b, e);
    buf_putc(&b, '}');
    conn_respond_buf(c, err_status(e->code), "application/json", headers, &b);
}

void conn_stream_start(conn_t *c, int status, const char *ctype, const char *headers,
                       void (*on_close)(conn_t *c, void *ctx), void *ctx)
{
    c->streaming = true;
    c->on_stream_close = on_close;
    c->stream_ctx = ctx;
    set_mode(c, T_NONE);
    size_t hlen;
    c->close_after_write = false;
    buf_t hb = {0};
    if (headers)
        buf_puts(&hb, headers);
    buf_puts(&hb, "Connection: close\r\n");
    char *h = format_head(c, status, ctype, hb.p, -1, &hlen);
    buf_free(&hb);
    access_log(c, status, 0);
    write_owned(c, h, hlen, NULL, 0);
}

void conn_set_close_hook(conn_t *c, void (*hook)(conn_t *c, void *ctx), void *ctx)
{
    c->on_stream_close = hook;
    c->stream_ctx = ctx;
}

void conn_stream_write(conn_t *c, const char *data, size_t len)
{
    if (c->closing || !len)
        return;
    write_owned(c, xstrndup(data, len), len, NULL, 0);
}

/* ------------------------------------------------------------------ upgraded */

/* Output of an upgraded connection, gathered during one loop turn and
 * written with one writev: small pieces are copied into `bytes`, large
 * shared ones (documents that go to many connections) are referenced and
 * released when the write completes. */
typedef struct outseg {
    const char *ref;  /* NULL: bytes[off, off+len) */
    size_t off, len;
    void (*release)(void *owner);
    void *owner;
} outseg;

#define OUT_INLINE 4
typedef struct outq {
    buf_t bytes;
    outseg *segs; /* inl, or allocated when more are needed */
    int n, cap;
    size_t len;
    outseg inl[OUT_INLINE];
} outq;

/* Moves src into dst (src left empty). */
static void outq_move(outq *dst, outq *src)
{
    *dst = *src;
    if (src->segs == src->inl)
        dst->segs = dst->inl;
    memset(src, 0, sizeof *src);
}

typedef struct rawwrite {
    uv_write_t req;
    conn_t *c;
    outq q;
} rawwrite;

static void outq_release(outq *q)
{
    for (int i = 0; i < q->n; i++)
        if (q->segs[i].release)
            q->segs[i].release(q->segs[i].owner);
    buf_free(&q->bytes);
    if (q->segs != q->inl)
        free(q->segs);
    memset(q, 0, sizeof *q);
}

static void raw_free(conn_t *c)
{
    if (c->out) {
        outq_release(c->out);
        free(c->out);
        c->out = NULL;
    }
}

static outseg *outq_seg(outq *q)
{
    if (!q->segs) {
        q->segs = q->inl;
        q->cap = OUT_INLINE;
    }
    if (q->n == q->cap) {
        q->cap *= 2;
        if (q->segs == q->inl) {
            q->segs = xmalloc((size_t)q->cap * sizeof *q->segs);
            memcpy(q->segs, q->inl, sizeof q->inl);
        } else {
            q->segs = xrealloc(q->segs, (size_t)q->cap * sizeof *q->segs);
        }
    }
    return &q->segs[q->n++];
}

static void on_kick(uv_idle_t *h) { (void)h; }

static void mark_dirty(conn_t *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->dirty_next = c->srv->dirty;
    c->srv->dirty = conn_ref(c);
    /* Output queued outside the I/O phase (a timer, a write callback)
     * must not wait for the next I/O: an active idle handle keeps the
     * loop from blocking before the check phase flushes it. */
    if (!uv_is_active((uv_handle_t *)&c->srv->kick))
        uv_idle_start(&c->srv->kick, on_kick);
}

void conn_out_copy(conn_t *c, const void *p, size_t n)
{
    if (c->closing || !n)
        return;
    if (!c->out)
        c->out = xcalloc(1, sizeof *c->out);
    outq *q = c->out;
    outseg *last = q->n ? &q->segs[q->n - 1] : NULL;
    if (last && !last->ref && last->off + last->len == q->bytes.len)
        last->len += n; /* extends the copied piece before it */
    else
        *outq_seg(q) = (outseg){.off = q->bytes.len, .len = n};
    buf_put(&q->bytes, p, n);
    q->len += n;
    mark_dirty(c);
}

void conn_out_ref(conn_t *c, const void *p, size_t n, void (*release)(void *), void *owner)
{
    if (c->closing || !n) {
        release(owner);
        return;
    }
    if (!c->out)
        c->out = xcalloc(1, sizeof *c->out);
    *outq_seg(c->out) = (outseg){.ref = p, .len = n, .release = release, .owner = owner};
    c->out->len += n;
    mark_dirty(c);
}

size_t conn_out_pending(const conn_t *c)
{
    return c->write_pending + (c->out ? c->out->len : 0);
}

static void on_raw_write(uv_write_t *req, int status)
{
    rawwrite *w = (rawwrite *)req;
    conn_t *c = w->c;
    c->write_pending -= w->q.len;
    outq_release(&w->q);
    free(w);
    if (status < 0) {
        conn_close(c);
    } else if (c->close_after_write && !c->write_pending && !(c->out && c->out->len)) {
        maybe_close_after_write(c); /* shut down our side, then linger */
    } else if (!c->closing && c->raw->on_drain && conn_out_pending(c) < RAW_LOW_WATER) {
        c->raw->on_drain(c, c->stream_ctx);
    }
    conn_unref(c);
}

/* Writes what c gathered. Most of the time the socket takes it all at
 * once: uv_try_write then needs no request, no callback and no change to
 * the epoll set (a completed uv_write costs an epoll_ctl, which at one
 * message per connection per commit was half the cost of fan-out). What
 * the socket does not take goes out with uv_write. */
static void raw_flush(conn_t *c)
{
    outq *q = c->out;
    if (c->closing || !q || !q->n)
        return;
    uv_buf_t stackbufs[64];
    uv_buf_t *bufs = q->n <= 64 ? stackbufs : xmalloc((size_t)q->n * sizeof *bufs);
    for (int i = 0; i < q->n; i++) {
        outseg *g = &q->segs[i];
        bufs[i] = uv_buf_init(g->ref ? (char *)g->ref : q->bytes.p + g->off, (unsigned)g->len);
    }
    int nbufs = q->n;
    int done = c->write_pending ? UV_EAGAIN : uv_try_write((uv_stream_t *)&c->tcp, bufs,
                                                           (unsigned)nbufs);
    if (done < 0 && done != UV_EAGAIN) {
        if (bufs != stackbufs)
            free(bufs);
        conn_close(c);
        return;
    }
    size_t sent = done > 0 ? (size_t)done : 0;
    if (sent == q->len) {
        if (bufs != stackbufs)
            free(bufs);
        /* An idle connection keeps no queue (208 bytes): the next output
         * makes one. */
        outq_release(q);
        free(q);
        c->out = NULL;
        if (c->close_after_write && !c->write_pending)
            maybe_close_after_write(c);
        else if (c->raw->on_drain && !c->write_pending)
            c->raw->on_drain(c, c->stream_ctx);
        return;
    }
    /* Skip what was written; the rest is queued. */
    int first = 0;
    while (sent >= bufs[first].len) {
        sent -= bufs[first].len;
        first++;
    }
    bufs[first].base += sent;
    bufs[first].len -= sent;
    rawwrite *w = xmalloc(sizeof *w);
    w->c = conn_ref(c);
    outq_move(&w->q, q);
    free(q);
    c->out = NULL;
    c->write_pending += w->q.len;
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs + first, (unsigned)(nbufs - first),
                      on_raw_write);
    if (bufs != stackbufs)
        free(bufs);
    if (rc != 0) {
        c->write_pending -= w->q.len;
        outq_release(&w->q);
        free(w);
        conn_close(c);
        conn_unref(c);
    }
}

static void on_flush(uv_check_t *h)
{
    server_t *s = h->data;
    conn_t *c = s->dirty;
    s->dirty = NULL;
    uv_idle_stop(&s->kick);
    while (c) {
        conn_t *next = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
        raw_flush(c);
        conn_unref(c);
        c = next;
    }
}

void conn_close_after_output(conn_t *c)
{
    if (c->closing)
        return;
    c->close_after_write = true;
    if (!c->write_pending && !(c->out && c->out->len))
        maybe_close_after_write(c);
}

void conn_upgrade(conn_t *c, const char *headers, const conn_raw_cb *cb, void *ctx)
{
    size_t hlen;
    char *h = format_head(c, 101, NULL, headers, -1, &hlen);
    access_log(c, 101, 0);
    c->streaming = true;
    c->busy = false;
    set_mode(c, T_NONE);
    c->raw = cb;
    c->on_stream_close = cb->on_close;
    c->stream_ctx = ctx;
    conn_out_copy(c, h, hlen);
    free(h);
    /* Bytes the client sent right after its request are already frames. */
    buf_t rest = {0};
    if (c->h->pos < c->h->buf.len)
        buf_put(&rest, c->h->buf.p + c->h->pos, c->h->buf.len - c->h->pos);
    side_free(c->srv, c->h);
    c->h = NULL;
    if (!c->reading && !c->eof)
        read_start(c);
    if (rest.len)
        cb->on_data(c, ctx, rest.p, rest.len);
    buf_free(&rest);
}

/* ------------------------------------------------------------------ reading */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    conn_t *c = h->data;
    (void)suggested;
    /* Every read lands in one buffer that all connections share: its bytes
     * are consumed (or, for HTTP, copied into the connection's input as
     * long as they wait to be parsed) before the next read of any
     * connection, so an idle connection holds no read buffer. */
    *out = uv_buf_init(c->srv->rbuf, RBUF_SIZE);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    conn_t *c = s->data;
    if (c->raw) {
        if (nread < 0) {
            c->eof = true;
            conn_close(c);
        } else if (nread > 0 && c->mode != T_LINGER && !c->close_after_write) {
            c->raw->on_data(c, c->stream_ctx, b->base, (size_t)nread);
        }
        return;
    }
    if (nread < 0) {
        c->eof = true;
        uv_read_stop(s);
        c->reading = false;
        if (c->streaming || c->mode == T_LINGER || nread != UV_EOF) {
            conn_close(c);
            return;
        }
        /* The client is done sending: answer the requests it sent, then
         * close (process closes when nothing is left). */
        c->close_after_write = true;
        if (!c->busy)
            process(c);
        return;
    }
    if (nread == 0)
        return;
    if (c->mode == T_LINGER || c->streaming)
        return; /* dropped */
    buf_put(&c->h->buf, b->base, (size_t)nread);
    process(c);
}

static void read_start(conn_t *c)
{
    c->reading = true;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void respond_parse_error(conn_t *c)
{
    err_t e = {0};
    err_code code = c->h->in.status == 413   ? E_PAYLOAD_TOO_LARGE
                    : c->h->in.status == 431 ? E_HEADERS_TOO_LARGE
                                          : E_BAD_REQUEST;
    err_set(&e, code, "%s", c->h->in.reason ? c->h->in.reason : "malformed HTTP request");
    c->busy = true;
    c->h->t_req = time_mono_ns();
    c->h->route = ROUTE_NONE;
    c->close_after_write = true;
    c->h->in.req.keep_alive = false;
    conn_respond_error(c, &e, NULL);
    err_clear(&e);
}

static void process(conn_t *c)
{
    c->in_process = true;
    /* After the headers, feed once more even with no bytes left: llhttp
     * completes a message without a body only when called again. */
    bool kick = false;
    while (!c->busy && !c->closing && !c->streaming && c->mode != T_LINGER &&
           (c->h->pos < c->h->buf.len || kick)) {
        kick = false;
        http_event ev;
        size_t n = http_in_feed(&c->h->in, c->h->buf.p + c->h->pos, c->h->buf.len - c->h->pos, &ev);
        c->h->pos += n;
        if (ev == HTTP_NEED_MORE) {
            if (c->mode == T_IDLE && c->h->in.head_started)
                set_mode(c, T_HEADER);
            break;
        }
        if (ev == HTTP_HEAD_DONE) {
            set_mode(c, T_BODY);
            if (c->h->in.req.expect_continue)
                write_owned(c, xstrdup("HTTP/1.1 100 Continue\r\n\r\n"), 25, NULL, 0);
            kick = true;
            continue;
        }
        if (ev == HTTP_ERROR) {
            respond_parse_error(c);
            break;
        }
        /* HTTP_GOT_REQUEST */
        set_mode(c, T_NONE);
        c->busy = true;
        c->h->t_req = time_mono_ns();
        c->h->route = ROUTE_NONE;
        c->srv->handler(c->srv->app, c, &c->h->in.req);
    }
    c->in_process = false;
    if (c->closing || !c->h)
        return; /* closed, or upgraded by the handler */
    /* Keep the input buffer small: drop what was parsed. */
    if (c->h->pos == c->h->buf.len) {
        c->h->buf.len = c->h->pos = 0;
        if (!c->busy)
            buf_free(&c->h->buf); /* between requests a connection holds no input */
    } else if (c->h->pos > 64 * 1024) {
        memmove(c->h->buf.p, c->h->buf.p + c->h->pos, c->h->buf.len - c->h->pos);
        c->h->buf.len -= c->h->pos;
        c->h->pos = 0;
    }
    /* A client pipelining while we work may fill us up: stop reading. */
    if (c->busy && c->h->buf.len > INBUF_MAX && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    if (c->eof && !c->busy && !c->write_pending)
        conn_close(c);
}

/* ------------------------------------------------------------------ accept */

static void on_connection(uv_stream_t *l, int status)
{
    server_t *s = l->data;
    if (status < 0)
        return;
    conn_t *c = slab_alloc(sizeof *c);
    c->srv = s;
    c->refs = 1;
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    c->h = side_new(s);
    http_in_init(&c->h->in);
    c->next = &s->conns;
    c->prev = s->conns.prev;
    s->conns.prev->next = c;
    s->conns.prev = c;
    metrics_gauge_add(M_CONNECTIONS, 1);
    s->churn++;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    snprintf(c->remote, sizeof c->remote, "unknown");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            uv_ip4_name(a, c->remote, sizeof c->remote);
            c->loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, c->remote, sizeof c->remote);
            c->loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
                          (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127);
        }
    }
    set_mode(c, T_HEADER);
    read_start(c);
}

static void free_server_cb(uv_handle_t *h) { free(h->data); }

/* After many connections came or went, the heap has free pages in its
 * middle that free() does not give back (it trims only its top):
 * malloc_trim does, on the thread pool, so that the loop does not wait for
 * its walk of the heap. 10,000 WebSockets opened at once then cost 70
 * bytes a connection less (docs/BENCHMARKS.md). */
#define TRIM_CHURN 1024
#define TRIM_EVERY_MS 2000

static void trim_work(uv_work_t *w)
{
    (void)w;
    malloc_trim(0);
}

static void trim_done(uv_work_t *w, int status)
{
    (void)status;
    server_t *s = w->data;
    s->trimming = false;
}

static void on_trim_tick(uv_timer_t *t)
{
    server_t *s = t->data;
    bool tail = s->trimmed && s->churn > 0;
    s->trimmed = false;
    if (s->trimming || (s->churn < TRIM_CHURN && !tail))
        return;
    s->churn = 0;
    s->trimmed = true;
    s->trimming = true;
    s->trim_work.data = s;
    uv_queue_work(s->loop, &s->trim_work, trim_work, trim_done);
}

int server_start(server_t **out, uv_loop_t *loop, const server_opts *opts, server_handler h,
                 void *app, int *bound_port, char *errbuf, size_t errlen)
{
    server_t *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->opts = *opts;
    s->handler = h;
    s->app = app;
    s->conns.next = s->conns.prev = &s->conns;
    for (int q = 0; q < TQ_N; q++)
        s->tqs[q].next = s->tqs[q].prev = &s->tqs[q];
    struct sockaddr_storage addr;
    int rc = strchr(opts->host, ':')
                 ? uv_ip6_addr(opts->host, opts->port, (struct sockaddr_in6 *)&addr)
                 : uv_ip4_addr(opts->host, opts->port, (struct sockaddr_in *)&addr);
    if (rc != 0) {
        snprintf(errbuf, errlen, "bad listen address %s", opts->host);
        free(s);
        return -1;
    }
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 4096, on_connection);
    if (rc != 0) {
        snprintf(errbuf, errlen, "cannot listen on %s:%d: %s", opts->host, opts->port,
                 uv_strerror(rc));
        uv_close((uv_handle_t *)&s->listener, free_server_cb);
        return -1;
    }
    s->listening = true;
    s->rbuf = xmalloc(RBUF_SIZE);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_unref((uv_handle_t *)&s->timer);
    uv_timer_init(loop, &s->trim_timer);
    s->trim_timer.data = s;
    uv_timer_start(&s->trim_timer, on_trim_tick, TRIM_EVERY_MS, TRIM_EVERY_MS);
    uv_unref((uv_handle_t *)&s->trim_timer);
    uv_check_init(loop, &s->flusher);
    s->flusher.data = s;
    uv_check_start(&s->flusher, on_flush);
    uv_unref((uv_handle_t *)&s->flusher);
    uv_idle_init(loop, &s->kick);
    uv_unref((uv_handle_t *)&s->kick);
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen);
    *bound_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    *out = s;
    return 0;
}

void server_stop_accepting(server_t *s)
{
    if (s->listening) {
        s->listening = false;
        uv_close((uv_handle_t *)&s->listener, NULL);
    }
}

void server_close_all(server_t *s)
{
    while (s->conns.next != &s->conns)
        conn_close(s->conns.next);
    on_flush(&s->flusher); /* drops the references of the dirty list */
    uv_close((uv_handle_t *)&s->flusher, NULL);
    uv_close((uv_handle_t *)&s->kick, NULL);
    uv_close((uv_handle_t *)&s->timer, NULL);
    uv_close((uv_handle_t *)&s->trim_timer, NULL);
}

void server_free(server_t *s)
{
    while (s->nspare)
        munmap(s->spare[--s->nspare], sizeof(http_side));
    free(s->rbuf);
    free(s);
}
