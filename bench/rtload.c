/*
 * rtload.c: the realtime load generator of bench/run-realtime.
 *
 * One libuv loop drives many WebSocket clients (livedb's own net/ws, on a
 * client's side; answers read by net/http's http_resp_in) and a
 * few keep-alive HTTP connections that write to livedb, or many Redis
 * connections (hiredis on libuv) for the side-by-side pub/sub figures.
 *
 *   rtload fanout   PORT N SECONDS [--passive]
 *                                       N subscribers of one collection;
 *                                       writes as fast as they keep up
 *                                       (--passive: only listens, for a
 *                                       second process); deliveries/s
 *   rtload latency  PORT N RATE SECONDS N subscribers; RATE durable writes
 *                                       a second; write-to-delivery p50/p99
 *                                       (PORT as W:S1,S2...: writes to port
 *                                       W, subscribers dealt over S1, S2...:
 *                                       nodes of one database)
 *   rtload idle     PORT N              N subscribed connections, then wait
 *                                       (the script reads the server's RSS)
 *   rtload load     PORT COL N          N documents into COL (batches)
 *   rtload snapshot PORT COL RUNS       time to a whole snapshot of COL
 *   rtload catchup  PORT COL SINCE      time to catch up from SINCE
 *   rtload redis-fanout  PORT N SECONDS [--passive]   the same, Redis pub/sub
 *   rtload redis-latency PORT N RATE SECONDS
 *
 * LIVEDB_TOKEN (environment): the token every livedb request carries.
 *
 * Output: one line "key=value ..." on stdout; progress on stderr. Exit 1
 * when something did not work (a refused upgrade, a lost message).
 *
 * Message size: livedb change messages here are about 330 bytes (a 190-byte
 * document in the change envelope); Redis messages are padded to the same.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include "../src/net/http.h"
#include "../src/net/ws.h"

#define CONNECTING_MAX 256 /* connects in flight at once */
#define MSG_PAD 160        /* pad of a written document, for ~330-byte messages */
#define WS_CLIENT_MAX (64u << 20) /* a snapshot message at most */

static uv_loop_t *loop;
static int port;
static int sub_ports[8], nsub_ports; /* "W:S1,S2": the subscribers' nodes */

static int port_of_sub(int idx) { return nsub_ports ? sub_ports[idx % nsub_ports] : port; }
static char auth[256]; /* "Authorization: Bearer TOKEN\r\n" from LIVEDB_TOKEN, or "" */
static const char *mode;

static void die(const char *what)
{
    fprintf(stderr, "rtload: %s\n", what);
    exit(1);
}

static uint64_t now_ns(void) { return uv_hrtime(); }

/* ------------------------------------------------------------------ latency histogram */

#define HIST_US 2000000 /* 1 us buckets up to 2 s */
static uint32_t *hist;
static uint64_t hist_n, hist_over;

static void hist_add(uint64_t ns)
{
    uint64_t us = ns / 1000;
    if (us >= HIST_US)
        hist_over++;
    else
        hist[us]++;
    hist_n++;
}

static double hist_pct(double p)
{
    uint64_t want = (uint64_t)(p * (double)hist_n), seen = 0;
    for (uint64_t i = 0; i < HIST_US; i++) {
        seen += hist[i];
        if (seen > want)
            return (double)i / 1000.0;
    }
    return HIST_US / 1000.0;
}

/* ------------------------------------------------------------------ WebSocket clients */

typedef struct wsc {
    uv_tcp_t tcp;
    uv_connect_t creq;
    http_resp_in resp; /* the upgrade's answer */
    ws_t *ws;          /* then the frames, on a client's side */
    bool upgraded;
    bool keep;         /* keep payloads (to read them) */
    char *payload;     /* the last message, NUL-terminated */
    size_t pcap;
    int frames;        /* text messages received */
    void (*on_msg)(struct wsc *c, const char *msg, size_t len);
    int idx;
    /* catchup: frames read here, not by net/ws (see count_frames) */
    bool counting;
    unsigned char hdr[10];
    size_t hlen, need;    /* header bytes so far, and the header's length */
    uint64_t left;        /* payload bytes of the current frame still to come */
    unsigned char pre[16];
    size_t plen;          /* its first bytes so far */
    int opcode;
} wsc;

static void count_frames(wsc *c, const unsigned char *p, size_t len);

static int ws_total, ws_open, ws_connecting, ws_next;
static wsc **wss;
static uint64_t deliveries;
static const char *sub_col = "bench_fan";
static void (*all_ready)(void);
static int ws_ready;

static void on_written(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

static void tcp_write(uv_stream_t *s, const void *p, size_t n)
{
    uv_write_t *w = xmalloc(sizeof *w);
    w->data = xmalloc(n);
    memcpy(w->data, p, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(w, s, &b, 1, on_written) != 0) {
        free(w->data);
        free(w);
    }
}

static void c_send(void *ctx, const void *data, size_t len)
{
    wsc *c = ctx;
    tcp_write((uv_stream_t *)&c->tcp, data, len);
}

static void c_text(void *ctx, const char *msg, size_t len)
{
    wsc *c = ctx;
    c->frames++;
    if (c->keep) { /* the modes that read messages search them as strings */
        if (len + 1 > c->pcap) {
            c->pcap = (len + 1) * 2;
            c->payload = realloc(c->payload, c->pcap);
            if (!c->payload)
                die("out of memory");
        }
        memcpy(c->payload, msg, len);
        c->payload[len] = '\0';
    }
    if (c->on_msg)
        c->on_msg(c, c->keep ? c->payload : "", len);
}

static void c_close(void *ctx, unsigned code, const char *reason, size_t len)
{
    wsc *c = ctx;
    fprintf(stderr, "rtload: connection %d closed by the server: %u %.*s\n", c->idx, code,
            (int)len, reason);
    exit(1);
}

static const ws_cb c_callbacks = {.on_text = c_text, .send = c_send, .on_close = c_close};

static void ws_send_str(wsc *c, const char *text) { ws_send_text(c->ws, text, strlen(text)); }

static char rbuf[256 * 1024];
static void on_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)h;
    (void)s;
    *b = uv_buf_init(rbuf, sizeof rbuf);
}

static void start_connects(void);

/* Subscribers subscribe to sub_col as soon as they are upgraded. */
static void subscribe_on_open(wsc *c)
{
    char sub[160];
    snprintf(sub, sizeof sub, "{\"t\":\"sub\",\"id\":\"s\",\"col\":\"%s\"}", sub_col);
    ws_send_str(c, sub);
}
static void (*on_open)(wsc *c) = subscribe_on_open;

static void on_ws_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    wsc *c = s->data;
    if (n < 0) {
        fprintf(stderr, "rtload: connection %d closed: %s\n", c->idx, uv_strerror((int)n));
        exit(1);
    }
    const char *p = b->base;
    size_t len = (size_t)n;
    if (!c->upgraded) {
        size_t used = 0;
        http_event ev = http_resp_feed(&c->resp, p, len, &used);
        if (ev == HTTP_NEED_MORE)
            return;
        if (ev == HTTP_ERROR || c->resp.status != 101) {
            fprintf(stderr, "rtload: upgrade refused: %d %s %.200s\n", c->resp.status,
                    c->resp.error ? c->resp.error : "",
                    c->resp.body.p ? c->resp.body.p : "");
            exit(1);
        }
        p += used;
        len -= used;
        c->upgraded = true;
        c->ws = ws_new_client(&c_callbacks, c, WS_CLIENT_MAX);
        ws_open++;
        ws_connecting--;
        start_connects();
        on_open(c);
    }
    if (c->counting) {
        count_frames(c, (const unsigned char *)p, len);
        return;
    }
    if (len && !ws_feed(c->ws, p, len))
        die("the server broke the WebSocket protocol");
}

/* catchup measures how fast the server sends 100,000 messages; through
 * net/ws (wslay) this client needed as much CPU as the server, on the same
 * two cores. It needs only each message's first bytes: the server's frames
 * are unmasked, whole text messages (a fragmented one is refused here). */
static void frame_done(wsc *c)
{
    if (c->opcode == 1)
        c->on_msg(c, (const char *)c->pre, c->plen);
    else if (c->opcode == 8)
        die("the server closed the WebSocket");
    else if (c->opcode != 9 && c->opcode != 10)
        die("catchup: an unexpected frame (fragmented or binary)");
}

static void count_frames(wsc *c, const unsigned char *p, size_t len)
{
    while (len) {
        if (c->left == 0 && c->hlen < (c->need ? c->need : 2)) {
            c->hdr[c->hlen++] = *p++;
            len--;
            if (c->hlen == 2) {
                if (c->hdr[1] & 0x80)
                    die("catchup: a masked frame from the server");
                unsigned l7 = c->hdr[1] & 0x7f;
                c->need = l7 == 126 ? 4 : l7 == 127 ? 10 : 2;
            }
            if (c->hlen < 2 || c->hlen < c->need)
                continue;
            unsigned l7 = c->hdr[1] & 0x7f;
            uint64_t n = l7;
            if (l7 == 126)
                n = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
            else if (l7 == 127)
                for (int i = 2; i < 10; i++)
                    n = n << 8 | c->hdr[i];
            if (!(c->hdr[0] & 0x80))
                die("catchup: a fragmented message");
            c->opcode = c->hdr[0] & 0x0f;
            c->left = n;
            c->plen = 0;
            c->hlen = c->need = 0;
            if (n == 0)
                frame_done(c);
            continue;
        }
        size_t take = len < c->left ? len : (size_t)c->left;
        size_t keep = sizeof c->pre - 1 - c->plen;
        if (keep > take)
            keep = take;
        memcpy(c->pre + c->plen, p, keep);
        c->plen += keep;
        c->pre[c->plen] = 0;
        p += take;
        len -= take;
        c->left -= take;
        if (c->left == 0)
            frame_done(c);
    }
}

static void on_ws_connect(uv_connect_t *req, int status)
{
    wsc *c = req->data;
    if (status < 0) {
        fprintf(stderr, "rtload: connect %d: %s\n", c->idx, uv_strerror(status));
        exit(1);
    }
    char h[512];
    int n = snprintf(h, sizeof h,
                     "GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s\r\n",
                     port_of_sub(c->idx), auth);
    tcp_write((uv_stream_t *)&c->tcp, h, (size_t)n);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_ws_read);
}

static void start_connects(void)
{
    while (ws_next < ws_total && ws_connecting < CONNECTING_MAX) {
        wsc *c = wss[ws_next];
        c->idx = ws_next++;
        uv_tcp_init(loop, &c->tcp);
        uv_tcp_nodelay(&c->tcp, 1); /* wslay writes a frame's header and payload apart */
        c->tcp.data = c;
        c->creq.data = c;
        struct sockaddr_in a;
        uv_ip4_addr("127.0.0.1", port_of_sub(c->idx), &a);
        ws_connecting++;
        if (uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&a, on_ws_connect) != 0)
            die("uv_tcp_connect");
    }
}

static bool passive; /* fanout: only listen; another rtload writes */
static bool passive_waiting;
static void fan_ready(void);

/* Subscribers: ready once the first message (the snapshot) arrived. */
static void on_sub_msg(wsc *c, const char *msg, size_t len)
{
    (void)msg;
    (void)len;
    if (c->frames == 1) {
        if (++ws_ready == ws_total && all_ready)
            all_ready();
        return;
    }
    if (passive_waiting) {
        passive_waiting = false;
        passive = false; /* now measure as the writer does, without writing */
        fan_ready();
    }
    deliveries++;
}

static void open_subscribers(int n, bool keep, void (*on_msg)(wsc *, const char *, size_t))
{
    ws_total = n;
    wss = calloc((size_t)n, sizeof *wss);
    for (int i = 0; i < n; i++) {
        wsc *c = calloc(1, sizeof *c);
        c->keep = keep;
        c->on_msg = on_msg;
        http_resp_init(&c->resp, 4096);
        wss[i] = c;
    }
    start_connects();
}

/* ------------------------------------------------------------------ HTTP writers */

typedef struct httpc {
    uv_tcp_t tcp;
    uv_connect_t creq;
    bool connected, busy;
    http_resp_in resp;
    void (*on_answer)(struct httpc *h, int status);
} httpc;

static void http_reconnect(httpc *h);

static void on_http_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    httpc *h = s->data;
    if (n < 0) {
        /* The server drops connections that stay silent past its header
         * timeout: an idle writer comes back; a busy one is an error. */
        if (h->busy)
            die("writer connection closed with a request in flight");
        http_reconnect(h);
        return;
    }
    const char *p = b->base;
    size_t len = (size_t)n;
    while (len) {
        size_t used = 0;
        http_event ev = http_resp_feed(&h->resp, p, len, &used);
        if (ev == HTTP_NEED_MORE)
            return;
        if (ev == HTTP_ERROR) {
            fprintf(stderr, "rtload: a bad answer: %s\n", h->resp.error);
            exit(1);
        }
        p += used;
        len -= used;
        int status = h->resp.status;
        http_resp_next(&h->resp);
        h->busy = false;
        if (h->on_answer)
            h->on_answer(h, status);
    }
}

static void on_http_connect(uv_connect_t *req, int status)
{
    httpc *h = req->data;
    if (status < 0)
        die("writer connect failed");
    h->connected = true;
    uv_read_start((uv_stream_t *)&h->tcp, on_alloc, on_http_read);
    if (h->on_answer)
        h->on_answer(h, 0);
}

static void http_connect(httpc *h)
{
    h->connected = h->busy = false;
    http_resp_next(&h->resp);
    uv_tcp_init(loop, &h->tcp);
    uv_tcp_nodelay(&h->tcp, 1);
    h->tcp.data = h;
    h->creq.data = h;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    uv_tcp_connect(&h->creq, &h->tcp, (struct sockaddr *)&a, on_http_connect);
}

static void on_http_closed(uv_handle_t *hd) { http_connect(hd->data); }

static void http_reconnect(httpc *h)
{
    h->connected = false;
    uv_close((uv_handle_t *)&h->tcp, on_http_closed);
}

static httpc *http_open(void (*on_answer)(httpc *, int))
{
    httpc *h = calloc(1, sizeof *h);
    h->on_answer = on_answer;
    http_resp_init(&h->resp, 64u << 20);
    http_connect(h);
    return h;
}

static void http_post(httpc *h, const char *path, const char *body, size_t blen)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "POST %s HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                     "%sContent-Length: %zu\r\n\r\n",
                     path, auth, blen);
    char *all = xmalloc((size_t)n + blen);
    memcpy(all, head, (size_t)n);
    memcpy(all + n, body, blen);
    tcp_write((uv_stream_t *)&h->tcp, all, (size_t)n + blen);
    free(all);
    h->busy = true;
}

static char pad[MSG_PAD + 1];

/* A batch of k creates in col; each doc carries ts (ns) for latency. */
static size_t batch_body(char *out, size_t cap, const char *col, int k, uint64_t ts)
{
    size_t n = (size_t)snprintf(out, cap, "{\"ops\":[");
    for (int i = 0; i < k; i++)
        n += (size_t)snprintf(out + n, cap - n,
                              "%s{\"op\":\"create\",\"col\":\"%s\",\"doc\":{\"ts\":%" PRIu64
                              ",\"sku\":\"B-%d\",\"pad\":\"%s\"}}",
                              i ? "," : "", col, ts, i, pad);
    n += (size_t)snprintf(out + n, cap - n, "]}");
    return n;
}

/* ------------------------------------------------------------------ fanout */

#define FAN_BATCH 50
#define FAN_WINDOW 200 /* changes written ahead of the slowest delivery */
static uint64_t written;
static uint64_t t_start, t_end;
static int seconds;
static httpc *writer;
static uv_timer_t stop_timer;
static bool measuring;
static uint64_t deliveries_at_start;

static void fan_write(httpc *h, int status)
{
    if (status >= 300)
        die("a write failed");
    if (!h->connected || h->busy || !measuring)
        return;
    /* Closed loop: write when deliveries are within the window. */
    if (deliveries + (uint64_t)FAN_WINDOW * (uint64_t)ws_total <
        (written - deliveries_at_start / (uint64_t)ws_total) * (uint64_t)ws_total)
        return;
    static char body[16384];
    size_t n = batch_body(body, sizeof body, sub_col, FAN_BATCH, now_ns());
    http_post(h, "/v1/batch", body, n);
    written += FAN_BATCH;
}

static void on_check_writer(uv_check_t *c)
{
    (void)c;
    if (writer && measuring)
        fan_write(writer, 0);
}

static void fan_stop(uv_timer_t *t)
{
    (void)t;
    t_end = now_ns();
    measuring = false;
    double secs = (double)(t_end - t_start) / 1e9;
    uint64_t got = deliveries - deliveries_at_start;
    printf("deliveries=%" PRIu64 " seconds=%.2f deliveries_per_s=%.0f changes=%" PRIu64
           " subscribers=%d\n",
           got, secs, (double)got / secs, written, ws_total);
    fflush(stdout);
    exit(0);
}


/* Every subscriber is ready: the measured run starts now, and stop() ends
 * it. False when passive: it starts at the writing process's first change. */
static bool measure_from_now(const char *whose, uv_timer_cb stop)
{
    fprintf(stderr, "rtload: %d %ssubscribers ready%s\n", ws_total, whose,
            passive ? " (passive)" : "");
    if (passive) {
        passive_waiting = true;
        return false;
    }
    measuring = true;
    t_start = now_ns();
    uv_timer_init(loop, &stop_timer);
    uv_timer_start(&stop_timer, stop, (uint64_t)seconds * 1000, 0);
    return true;
}

static void fan_ready(void)
{
    if (!measure_from_now("", fan_stop))
        return;
    deliveries_at_start = deliveries;
    written = 0;
    if (writer)
        fan_write(writer, 0);
}

/* ------------------------------------------------------------------ latency */

#define LAT_WRITERS 32
static httpc *lat_writers[LAT_WRITERS];
static uv_timer_t tick;
static int rate;
static uint64_t lat_sent, lat_skipped, lat_due;

static void lat_msg(wsc *c, const char *msg, size_t len)
{
    (void)len;
    if (c->frames == 1) {
        if (++ws_ready == ws_total && all_ready)
            all_ready();
        return;
    }
    const char *ts = strstr(msg, "\"ts\":");
    if (!ts || !measuring)
        return;
    uint64_t sent = strtoull(ts + 5, NULL, 10);
    hist_add(now_ns() - sent);
    deliveries++;
}

static void lat_tick(uv_timer_t *t)
{
    (void)t;
    /* Writes due by now at RATE per second since the start. */
    uint64_t due = (now_ns() - t_start) * (uint64_t)rate / 1000000000u;
    while (lat_due < due) {
        lat_due++;
        httpc *h = NULL;
        for (int i = 0; i < LAT_WRITERS && !h; i++)
            if (lat_writers[i]->connected && !lat_writers[i]->busy)
                h = lat_writers[i];
        if (!h) {
            lat_skipped++;
            continue;
        }
        char body[512];
        int n = snprintf(body, sizeof body, "{\"ts\":%" PRIu64 ",\"sku\":\"L\",\"pad\":\"%s\"}",
                         now_ns(), pad);
        http_post(h, "/v1/c/bench_lat", body, (size_t)n);
        lat_sent++;
    }
}

static void lat_stop(uv_timer_t *t)
{
    (void)t;
    measuring = false;
    printf("writes=%" PRIu64 " skipped=%" PRIu64 " deliveries=%" PRIu64
           " p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f over_2s=%" PRIu64 " subscribers=%d rate=%d\n",
           lat_sent, lat_skipped, hist_n, hist_pct(0.5), hist_pct(0.99), hist_pct(0.999),
           hist_over, ws_total, rate);
    fflush(stdout);
    exit(hist_n ? 0 : 1);
}

static void lat_ready(void)
{
    fprintf(stderr, "rtload: %d subscribers ready\n", ws_total);
    measuring = true;
    t_start = now_ns();
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, lat_tick, 1, 1);
    uv_timer_init(loop, &stop_timer);
    uv_timer_start(&stop_timer, lat_stop, (uint64_t)seconds * 1000, 0);
}

/* ------------------------------------------------------------------ idle */

static void idle_ready(void)
{
    printf("ready connections=%d\n", ws_total);
    fflush(stdout);
}

/* ------------------------------------------------------------------ load */

static int load_left, load_batch = 1000;
static const char *load_col;

static void load_next(httpc *h, int status)
{
    if (status >= 300)
        die("a load batch failed");
    if (!h->connected || h->busy)
        return;
    if (load_left <= 0) {
        printf("loaded\n");
        exit(0);
    }
    int k = load_left < load_batch ? load_left : load_batch;
    static char body[1 << 20];
    size_t n = batch_body(body, sizeof body, load_col, k, 0);
    http_post(h, "/v1/batch", body, n);
    load_left -= k;
}

/* ------------------------------------------------------------------ snapshot and catch-up */

static int runs, run_i, docs_seen;
static uint64_t run_t0;
static double *run_ms;
static wsc *one;
static int64_t since_arg;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int count_docs(const char *msg)
{
    /* Each document starts with {"id": in a snapshot. */
    int n = 0;
    for (const char *p = msg; (p = strstr(p, "{\"id\":")); p += 6)
        n++;
    return n;
}

static void snap_send(void)
{
    char sub[160];
    snprintf(sub, sizeof sub, "{\"t\":\"sub\",\"id\":\"r%d\",\"col\":\"%s\"}", run_i, sub_col);
    docs_seen = 0;
    run_t0 = now_ns();
    ws_send_str(one, sub);
}

static void snap_msg(wsc *c, const char *msg, size_t len)
{
    (void)c;
    (void)len;
    if (strncmp(msg, "{\"t\":\"snapshot\"", 15) != 0) {
        fprintf(stderr, "rtload: unexpected %.200s\n", msg);
        exit(1);
    }
    docs_seen += count_docs(msg);
    if (!strstr(msg, "\"more\":false"))
        return;
    run_ms[run_i] = (double)(now_ns() - run_t0) / 1e6;
    char unsub[64];
    snprintf(unsub, sizeof unsub, "{\"t\":\"unsub\",\"id\":\"r%d\"}", run_i);
    ws_send_str(one, unsub);
    if (++run_i < runs) {
        snap_send();
        return;
    }
    double first = run_ms[0];
    qsort(run_ms, (size_t)runs, sizeof *run_ms, cmp_double);
    printf("docs=%d runs=%d first_ms=%.2f median_ms=%.2f min_ms=%.2f max_ms=%.2f\n", docs_seen,
           runs, first, run_ms[runs / 2], run_ms[0], run_ms[runs - 1]);
    exit(0);
}

static int64_t caught;
static void catchup_msg(wsc *c, const char *msg, size_t len)
{
    (void)c;
    (void)len;
    if (strncmp(msg, "{\"t\":\"change\"", 13) == 0) {
        caught++;
        return;
    }
    if (strncmp(msg, "{\"t\":\"synced\"", 13) == 0) {
        double secs = (double)(now_ns() - run_t0) / 1e9;
        printf("changes=%" PRId64 " seconds=%.3f changes_per_s=%.0f\n", caught, secs,
               (double)caught / secs);
        exit(0);
    }
    fprintf(stderr, "rtload: unexpected %.200s\n", msg);
    exit(1);
}

static void one_open(wsc *c)
{
    (void)c;
    if (strcmp(mode, "snapshot") == 0) {
        snap_send();
    } else {
        char sub[160];
        snprintf(sub, sizeof sub, "{\"t\":\"sub\",\"id\":\"c\",\"col\":\"%s\",\"since\":%" PRId64 "}",
                 sub_col, since_arg);
        run_t0 = now_ns();
        ws_send_str(one, sub);
    }
}

/* ------------------------------------------------------------------ Redis */

static redisAsyncContext **rsubs;
static redisAsyncContext *rpub;
static int rsub_ready;
static uint64_t published;
static char rmsg[512];

static redisAsyncContext *redis_connect(void)
{
    redisAsyncContext *ac = redisAsyncConnect("127.0.0.1", port);
    if (!ac || ac->err)
        die("redis connect");
    redisLibuvAttach(ac, loop);
    return ac;
}

static void rpub_next(void);
static void redis_ready(void);

static void on_published(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    (void)r;
    (void)priv;
    if (strcmp(mode, "redis-fanout") == 0)
        rpub_next();
}

static void rpub_next(void)
{
    if (!measuring || !rpub)
        return;
    while (deliveries + (uint64_t)FAN_WINDOW * (uint64_t)ws_total >=
           published * (uint64_t)ws_total) {
        int n = snprintf(rmsg, sizeof rmsg, "{\"ts\":%" PRIu64 ",\"pad\":\"%s%s\"}", now_ns(), pad,
                         pad);
        redisAsyncCommand(rpub, on_published, NULL, "PUBLISH fan %b", rmsg, (size_t)n);
        published++;
    }
}

static void on_redis_msg(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *r = reply;
    (void)ac;
    (void)priv;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        return;
    if (strcmp(r->element[0]->str, "subscribe") == 0) {
        if (++rsub_ready == ws_total && all_ready)
            all_ready();
        return;
    }
    if (passive_waiting) {
        passive_waiting = false;
        passive = false;
        redis_ready();
    }
    if (!measuring)
        return;
    deliveries++;
    if (strcmp(mode, "redis-latency") == 0) {
        const char *ts = strstr(r->element[2]->str, "\"ts\":");
        if (ts)
            hist_add(now_ns() - strtoull(ts + 5, NULL, 10));
    } else if (deliveries % 1024 == 0) {
        rpub_next();
    }
}

static void rfan_stop(uv_timer_t *t)
{
    (void)t;
    measuring = false;
    double secs = (double)(now_ns() - t_start) / 1e9;
    if (strcmp(mode, "redis-fanout") == 0)
        printf("deliveries=%" PRIu64 " seconds=%.2f deliveries_per_s=%.0f messages=%" PRIu64
               " subscribers=%d\n",
               deliveries, secs, (double)deliveries / secs, published, ws_total);
    else
        printf("writes=%" PRIu64 " deliveries=%" PRIu64 " p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f"
               " subscribers=%d rate=%d\n",
               published, hist_n, hist_pct(0.5), hist_pct(0.99), hist_pct(0.999), ws_total, rate);
    fflush(stdout);
    exit(0);
}

static void rlat_tick(uv_timer_t *t)
{
    (void)t;
    uint64_t due = (now_ns() - t_start) * (uint64_t)rate / 1000000000u;
    while (published < due) {
        int n = snprintf(rmsg, sizeof rmsg, "{\"ts\":%" PRIu64 ",\"pad\":\"%s%s\"}", now_ns(), pad,
                         pad);
        redisAsyncCommand(rpub, on_published, NULL, "PUBLISH fan %b", rmsg, (size_t)n);
        published++;
    }
}

static void redis_ready(void)
{
    if (!measure_from_now("Redis ", rfan_stop))
        return;
    if (strcmp(mode, "redis-fanout") == 0) {
        if (rpub)
            rpub_next();
    } else {
        uv_timer_init(loop, &tick);
        uv_timer_start(&tick, rlat_tick, 1, 1);
    }
}

static int redis_connecting;
static void redis_open_more(void);
static void on_subscribed_once(redisAsyncContext *ac, void *reply, void *priv)
{
    on_redis_msg(ac, reply, priv);
    redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        strcmp(r->element[0]->str, "subscribe") == 0) {
        redis_connecting--;
        redis_open_more();
    }
}

static int redis_next;
static void redis_open_more(void)
{
    while (redis_next < ws_total && redis_connecting < CONNECTING_MAX) {
        rsubs[redis_next] = redis_connect();
        redisAsyncCommand(rsubs[redis_next], on_subscribed_once, NULL, "SUBSCRIBE fan");
        redis_next++;
        redis_connecting++;
    }
}

/* ------------------------------------------------------------------ main */

static int arg_int(char **argv, int i, int argc)
{
    if (i >= argc)
        die("missing argument (see the top of bench/rtload.c)");
    return atoi(argv[i]);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        die("usage: rtload MODE PORT ... (see the top of bench/rtload.c)");
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    memset(pad, 'p', MSG_PAD);
    const char *tok = getenv("LIVEDB_TOKEN");
    if (tok && *tok)
        snprintf(auth, sizeof auth, "Authorization: Bearer %.200s\r\n", tok);
    loop = uv_default_loop();
    mode = argv[1];
    port = arg_int(argv, 2, argc);
    for (const char *sp = strchr(argv[2], ':'); sp && nsub_ports < 8; sp = strchr(sp, ',')) {
        sub_ports[nsub_ports++] = atoi(++sp);
    }
    hist = calloc(HIST_US, sizeof *hist);
    uv_check_t chk;
    if (strcmp(mode, "fanout") == 0) {
        int n = arg_int(argv, 3, argc);
        seconds = arg_int(argv, 4, argc);
        all_ready = fan_ready;
        passive = argc > 5 && strcmp(argv[5], "--passive") == 0;
        if (!passive)
            writer = http_open(fan_write);
        uv_check_init(loop, &chk);
        uv_check_start(&chk, on_check_writer);
        open_subscribers(n, false, on_sub_msg);
    } else if (strcmp(mode, "latency") == 0) {
        int n = arg_int(argv, 3, argc);
        rate = arg_int(argv, 4, argc);
        seconds = arg_int(argv, 5, argc);
        sub_col = "bench_lat";
        all_ready = lat_ready;
        for (int i = 0; i < LAT_WRITERS; i++)
            lat_writers[i] = http_open(NULL);
        open_subscribers(n, true, lat_msg);
    } else if (strcmp(mode, "idle") == 0) {
        int n = arg_int(argv, 3, argc);
        sub_col = "bench_idle";
        all_ready = idle_ready;
        open_subscribers(n, false, on_sub_msg);
    } else if (strcmp(mode, "load") == 0) {
        if (argc < 5)
            die("usage: rtload load PORT COL N");
        load_col = argv[3];
        load_left = arg_int(argv, 4, argc);
        http_open(load_next);
    } else if (strcmp(mode, "snapshot") == 0 || strcmp(mode, "catchup") == 0) {
        if (argc < 5)
            die("usage: rtload snapshot|catchup PORT COL RUNS|SINCE");
        sub_col = argv[3];
        if (strcmp(mode, "snapshot") == 0) {
            runs = arg_int(argv, 4, argc);
            run_ms = calloc((size_t)runs, sizeof *run_ms);
        } else {
            since_arg = strtoll(argv[4], NULL, 10);
        }
        ws_total = 1;
        wss = calloc(1, sizeof *wss);
        one = calloc(1, sizeof *one);
        one->keep = true;
        one->on_msg = strcmp(mode, "snapshot") == 0 ? snap_msg : catchup_msg;
        one->counting = strcmp(mode, "catchup") == 0;
        http_resp_init(&one->resp, 4096);
        wss[0] = one;
        on_open = one_open;
        start_connects();
    } else if (strcmp(mode, "redis-fanout") == 0 || strcmp(mode, "redis-latency") == 0) {
        ws_total = arg_int(argv, 3, argc);
        if (strcmp(mode, "redis-latency") == 0) {
            rate = arg_int(argv, 4, argc);
            seconds = arg_int(argv, 5, argc);
        } else {
            seconds = arg_int(argv, 4, argc);
            passive = argc > 5 && strcmp(argv[5], "--passive") == 0;
        }
        all_ready = redis_ready;
        rsubs = calloc((size_t)ws_total, sizeof *rsubs);
        if (!passive)
            rpub = redis_connect();
        redis_open_more();
    } else {
        die("unknown mode");
    }
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
