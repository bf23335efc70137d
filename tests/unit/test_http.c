/*
 * test_http.c: net/http.c, the request parser wrapper, without sockets.
 *
 * The driver below feeds bytes the way src/net/server.c process() does:
 * after HTTP_HEAD_DONE it feeds again even with no bytes left (llhttp
 * completes a body-less message only then), and after HTTP_GOT_REQUEST it
 * takes the request and calls http_in_next before feeding the rest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/net/http.h"
#include "harness.h"

#define MAXREQ 8

typedef struct got {
    int method;
    char *path, *query, *body;
    size_t body_len;
    bool has_query, keep_alive, expect_continue;
    char *host;
    int nheaders;
} got;

typedef struct result {
    got req[MAXREQ];
    int nreq;
    int heads;      /* HTTP_HEAD_DONE events */
    int status;     /* 0, or the status of HTTP_ERROR */
    size_t consumed;
    int head_done_at_req; /* requests completed when the first head ended */
} result;

static char *dupn(const char *s, size_t n) { return s ? xstrndup(s, n) : NULL; }

static void take(result *r, const http_req *q)
{
    if (r->nreq == MAXREQ)
        return;
    got *g = &r->req[r->nreq++];
    g->method = q->method;
    g->path = dupn(q->path, q->path_len);
    g->has_query = q->query != NULL;
    g->query = dupn(q->query, q->query_len);
    g->body = dupn(q->body, q->body_len);
    g->body_len = q->body_len;
    g->keep_alive = q->keep_alive;
    g->expect_continue = q->expect_continue;
    g->nheaders = q->nheaders;
    size_t n;
    const char *h = http_header_get(q, "HOST", &n);
    g->host = dupn(h, n);
}

static void result_free(result *r)
{
    for (int i = 0; i < r->nreq; i++) {
        free(r->req[i].path);
        free(r->req[i].query);
        free(r->req[i].body);
        free(r->req[i].host);
    }
    memset(r, 0, sizeof *r);
}

/* Feeds data in pieces of at most `piece` bytes (0: all at once). */
static void drive(const char *data, size_t len, size_t piece, result *r)
{
    http_in in;
    http_in_init(&in);
    memset(r, 0, sizeof *r);
    r->head_done_at_req = -1;
    size_t pos = 0, avail = 0; /* bytes "received" so far */
    bool kick = false;
    for (int guard = 0; guard < 10000000; guard++) {
        if (pos == avail && !kick) {
            if (avail == len)
                break;
            avail += piece && len - avail > piece ? piece : len - avail;
        }
        kick = false;
        http_event ev;
        size_t n = http_in_feed(&in, data + pos, avail - pos, &ev);
        if (n > avail - pos) {
            FAILF("consumed %zu of %zu bytes", n, avail - pos);
            break;
        }
        pos += n;
        if (ev == HTTP_NEED_MORE) {
            if (pos != avail)
                FAILF("NEED_MORE with %zu bytes left", avail - pos);
            pos = avail;
            continue;
        }
        if (ev == HTTP_HEAD_DONE) {
            if (r->head_done_at_req < 0)
                r->head_done_at_req = r->nreq;
            r->heads++;
            kick = true;
            continue;
        }
        if (ev == HTTP_ERROR) {
            r->status = in.status;
            if (!in.reason)
                FAILF("HTTP_ERROR without a reason");
            /* It stays in error. */
            http_event ev2;
            if (http_in_feed(&in, "x", 1, &ev2) != 0 || ev2 != HTTP_ERROR)
                FAILF("feeding after an error did not answer HTTP_ERROR");
            break;
        }
        take(r, &in.req);
        http_in_next(&in);
        kick = pos < avail;
    }
    r->consumed = pos;
    http_in_free(&in);
}

static const size_t pieces[] = {0, 1, 2, 3, 7, 64};

/* Feeds req cut in each of the piece sizes above and hands each result to
 * check (which sees the request text and the piece size too). */
static void drive_each_piece(const char *req,
                             void (*check)(const result *r, const char *req, size_t piece))
{
    for (size_t i = 0; i < ARRAY_LEN(pieces); i++) {
        result r;
        drive(req, strlen(req), pieces[i], &r);
        check(&r, req, pieces[i]);
        result_free(&r);
    }
}

static void simple_get_is(const result *r, const char *req, size_t piece)
{
    if (!CHECK_INT(r->nreq, 1) || !CHECK_INT(r->status, 0)) {
        FAILF("piece %zu", piece);
        return;
    }
    const got *g = &r->req[0];
    CHECK_INT(g->method, HTTP_GET);
    CHECK_STR(g->path, "/v1/c/todos");
    CHECK(g->has_query);
    CHECK_STR(g->query, "where=a%3Aeq%3A1&limit=5");
    CHECK_STR(g->host, "example.com");
    CHECK_INT(g->nheaders, 3);
    CHECK_INT(g->body_len, 0);
    CHECK(g->keep_alive);
    CHECK(!g->expect_continue);
    CHECK_INT(r->heads, 1);
    CHECK_INT(r->consumed, strlen(req));
}

TEST(http_simple_get)
{
    const char *req = "GET /v1/c/todos?where=a%3Aeq%3A1&limit=5 HTTP/1.1\r\n"
                      "Host: example.com\r\nAccept: */*\r\nX-Empty:\r\n\r\n";
    drive_each_piece(req, simple_get_is);
}

TEST(http_headers_lookup)
{
    http_in in;
    http_in_init(&in);
    const char *req = "POST /x HTTP/1.1\r\nHost: h\r\ncontent-LENGTH: 3\r\n"
                      "Expect: 100-Continue\r\nX-A: 1\r\nX-A: 2\r\n\r\n";
    http_event ev;
    size_t n = http_in_feed(&in, req, strlen(req), &ev);
    CHECK_INT(ev, HTTP_HEAD_DONE);
    CHECK_INT(n, strlen(req));
    size_t len = 0;
    const char *v = http_header_get(&in.req, "Content-Length", &len);
    CHECK(v && len == 1 && v[0] == '3');
    v = http_header_get(&in.req, "x-a", &len); /* the first of two */
    CHECK(v && len == 1 && v[0] == '1');
    CHECK(http_header_get(&in.req, "x-b", &len) == NULL);
    CHECK(http_header_get(&in.req, "x", NULL) == NULL);
    CHECK(in.req.expect_continue);
    CHECK(in.req.query == NULL);
    CHECK_INT(in.req.method, HTTP_POST);
    n = http_in_feed(&in, "abc", 3, &ev);
    CHECK_INT(ev, HTTP_GOT_REQUEST);
    CHECK_INT(n, 3);
    CHECK_MEM(in.req.body, in.req.body_len, "abc", (size_t)3);
    http_in_free(&in);
    CHECK_STR(http_status_text(431), "Request Header Fields Too Large");
    CHECK_STR(http_status_text(413), "Payload Too Large");
    CHECK_STR(http_status_text(599), "Unknown");
}

static void content_length_is(const result *r, const char *req, size_t piece)
{
    (void)piece;
    if (CHECK_INT(r->nreq, 1)) {
        CHECK_INT(r->req[0].method, HTTP_POST);
        CHECK_STR(r->req[0].body, "hello world");
        CHECK_INT(r->req[0].body_len, 11);
        CHECK(!r->req[0].has_query);
        CHECK_INT(r->head_done_at_req, 0);
    }
    CHECK_INT(r->status, 0);
}

TEST(http_body_content_length)
{
    const char *req = "POST /v1/c/todos HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world";
    drive_each_piece(req, content_length_is);
}

static void chunked_is(const result *r, const char *req, size_t piece)
{
    (void)piece;
    if (CHECK_INT(r->nreq, 1)) {
        CHECK_INT(r->req[0].method, HTTP_PUT);
        CHECK_STR(r->req[0].body, "hello world0123456789");
    }
    CHECK_INT(r->status, 0);
}

TEST(http_body_chunked)
{
    const char *req = "PUT /v1/c/t/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n6;ext=1\r\n world\r\nA\r\n0123456789\r\n0\r\n\r\n";
    drive_each_piece(req, chunked_is);
}

static bool in_head(const http_in *in, const char *p, size_t n)
{
    return in->head.p && p >= in->head.p && p + n <= in->head.p + in->head.len;
}

TEST(http_chunked_trailers)
{
    /* Trailer fields after the last chunk: the request that comes out must
     * still point at live bytes (the trailer's bytes go through the same
     * header callbacks; when they grow the head buffer, pointers made at
     * the end of the header section must not dangle). Pointers are only
     * compared here, and read only when they are inside the buffer, so
     * that a failure is a failed check and not an ASan abort. */
    buf_t b = {0};
    buf_printf(&b, "POST /v1/c/t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "3\r\nabc\r\n0\r\nX-Trailer: %0300d\r\n\r\n", 0);
    http_in in;
    http_in_init(&in);
    http_event ev = HTTP_NEED_MORE;
    size_t used = 0;
    for (int k = 0; k < 6 && ev != HTTP_GOT_REQUEST && ev != HTTP_ERROR; k++)
        used += http_in_feed(&in, b.p + used, b.len - used, &ev);
    if (CHECK_INT(ev, HTTP_GOT_REQUEST)) {
        const http_req *r = &in.req;
        if (CHECK(in_head(&in, r->path, r->path_len)))
            CHECK_MEM(r->path, r->path_len, "/v1/c/t", (size_t)7);
        else
            FAILF("req.path points outside the head buffer after a trailer");
        /* Whether trailers show as headers or not, every header points at
         * live bytes. */
        CHECK(r->nheaders >= 2 && r->nheaders <= HTTP_MAX_HEADERS);
        bool ok = true;
        for (int i = 0; i < r->nheaders && i < HTTP_MAX_HEADERS; i++)
            ok = ok && in_head(&in, r->headers[i].name, r->headers[i].name_len) &&
                 in_head(&in, r->headers[i].value, r->headers[i].value_len);
        CHECK(ok);
        CHECK_MEM(r->body, r->body_len, "abc", (size_t)3);
    }
    http_in_free(&in);
    buf_free(&b);
}

static void pipelined_is(const result *r, const char *req, size_t piece)
{
    CHECK_INT(r->status, 0);
    if (!CHECK_INT(r->nreq, 3)) {
        FAILF("piece %zu", piece);
        return;
    }
    CHECK_INT(r->req[0].method, HTTP_GET);
    CHECK_STR(r->req[0].path, "/a");
    CHECK_STR(r->req[0].query, "x=1");
    CHECK_STR(r->req[0].host, "one");
    CHECK_INT(r->req[0].body_len, 0);
    CHECK_INT(r->req[1].method, HTTP_POST);
    CHECK_STR(r->req[1].path, "/b");
    CHECK(!r->req[1].has_query);
    CHECK_STR(r->req[1].host, "two");
    CHECK_STR(r->req[1].body, "body");
    CHECK(r->req[1].keep_alive);
    CHECK_INT(r->req[2].method, HTTP_DELETE);
    CHECK_STR(r->req[2].path, "/c");
    CHECK_STR(r->req[2].host, "three");
    CHECK_INT(r->req[2].body_len, 0); /* not the previous body */
    CHECK(!r->req[2].keep_alive);
    CHECK_INT(r->heads, 3);
}

TEST(http_pipelined)
{
    const char *req = "GET /a?x=1 HTTP/1.1\r\nHost: one\r\n\r\n"
                      "POST /b HTTP/1.1\r\nHost: two\r\nContent-Length: 4\r\n\r\nbody"
                      "DELETE /c HTTP/1.1\r\nHost: three\r\nConnection: close\r\n\r\n";
    drive_each_piece(req, pipelined_is);
}

TEST(http_keep_alive)
{
    result r;
    const char *r10 = "GET / HTTP/1.0\r\n\r\n";
    drive(r10, strlen(r10), 0, &r);
    CHECK_INT(r.nreq, 1);
    CHECK(!r.req[0].keep_alive);
    result_free(&r);
    const char *r10ka = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    drive(r10ka, strlen(r10ka), 0, &r);
    CHECK_INT(r.nreq, 1);
    CHECK(r.req[0].keep_alive);
    result_free(&r);
}

/* Every way of cutting data ends in HTTP_ERROR with status (0: in no
 * error and no request). One failure line per case. */
static void expect_status(int line, const char *what, const char *data, size_t len, int status)
{
    static const size_t ps[] = {0, 1, 13, 4096};
    buf_t bad = {0};
    for (size_t i = 0; i < ARRAY_LEN(ps); i++) {
        if (ps[i] == 1 && len > 64 * 1024)
            continue; /* slow, and 13 covers piecewise feeding */
        result r;
        drive(data, len, ps[i], &r);
        if (r.status != status || r.nreq != 0)
            buf_printf(&bad, " [piece %zu: status %d, %d requests]", ps[i], r.status, r.nreq);
        result_free(&r);
    }
    if (bad.len)
        test_failf(__FILE__, line, "%.60s%s: want status %d, got%s", what,
                   strlen(what) > 60 ? "..." : "", status, bad.p);
    buf_free(&bad);
}

#define EXPECT_STATUS(s, st) expect_status(__LINE__, s, s, strlen(s), st)
#define EXPECT_STATUS_N(what, p, n, st) expect_status(__LINE__, what, p, n, st)

/* Request builders for the limit tests: the bytes are those the tests
 * spelled out before, made in one place. */

/* head, then n copies of c, then tail. */
static void put_filled(buf_t *b, const char *head, char c, int n, const char *tail)
{
    buf_puts(b, head);
    for (int i = 0; i < n; i++)
        buf_putc(b, c);
    buf_puts(b, tail);
}

/* "GET / HTTP/1.1", n header lines "X-<i>: <value>" (i zero-padded to
 * digits), the blank line. */
static void put_headers_req(buf_t *b, int n, int digits, const char *value)
{
    buf_puts(b, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < n; i++)
        buf_printf(b, "X-%0*d: %s\r\n", digits, i, value);
    buf_puts(b, "\r\n");
}

/* A chunked POST of n chunks of 64 KiB ('a', 'b', ... each), then the last
 * chunk. */
static void put_chunked_req(buf_t *b, int n)
{
    static char chunk[65536];
    buf_puts(b, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < n; i++) {
        buf_puts(b, "10000\r\n");
        memset(chunk, 'a' + i, sizeof chunk);
        buf_put(b, chunk, sizeof chunk);
        buf_puts(b, "\r\n");
    }
    buf_puts(b, "0\r\n\r\n");
}

/* n zeros, as "%0<n>d" of 0 printed them. */
static const char *zeros(int n)
{
    static char z[256];
    memset(z, '0', (size_t)n);
    z[n] = '\0';
    return z;
}

TEST(http_header_limit)
{
    /* One header value making the section over 16 KiB: 431. */
    buf_t b = {0};
    put_filled(&b, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ", 'a', 17000, "\r\n\r\n");
    EXPECT_STATUS_N("17000-byte header", b.p, b.len, 431);
    buf_free(&b);

    /* Many small headers over 16 KiB in all: 431. */
    put_headers_req(&b, 90, 1, zeros(200));
    EXPECT_STATUS_N("90 headers of 200 bytes", b.p, b.len, 431);
    buf_free(&b);

    /* A long URL: 431 too (the URL is in the header section). */
    put_filled(&b, "GET /", 'u', 17000, " HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_STATUS_N("17000-byte URL", b.p, b.len, 431);
    buf_free(&b);

    /* More than 100 header fields: 431. */
    put_headers_req(&b, 101, 1, "v");
    EXPECT_STATUS_N("101 headers", b.p, b.len, 431);
    buf_free(&b);

    /* Just under the limit, and exactly 100 headers, pass. */
    put_headers_req(&b, 100, 2, zeros(100));
    result r;
    drive(b.p, b.len, 0, &r);
    CHECK_INT(r.status, 0);
    CHECK_INT(r.nreq, 1);
    if (r.nreq)
        CHECK_INT(r.req[0].nheaders, 100);
    result_free(&r);
    drive(b.p, b.len, 1, &r);
    CHECK_INT(r.nreq, 1);
    result_free(&r);
    buf_free(&b);
}

TEST(http_header_limit_counts_skipped_bytes)
{
    buf_t b = {0};
    /* The limit is on the bytes of the header section, not only on the
     * bytes the parser hands to callbacks: whitespace that llhttp skips
     * (before a value, between the URL and the version) counts too. */
    put_filled(&b, "GET / HTTP/1.1\r\nHost: h\r\nX:", ' ', 17000, "v\r\n\r\n");
    EXPECT_STATUS_N("17000 spaces before a header value", b.p, b.len, 431);
    buf_free(&b);
    put_filled(&b, "GET /", ' ', 17000, "HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_STATUS_N("17000 spaces in the request line", b.p, b.len, 431);
    buf_free(&b);
}

TEST(http_body_limits)
{
    /* Content-Length over 1 MiB: 413 as soon as the headers end, before
     * any body byte. */
    const char *big = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\n";
    EXPECT_STATUS(big, 413);
    const char *huge = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999\r\n\r\n";
    EXPECT_STATUS(huge, 413);
    result r;
    drive(big, strlen(big), 0, &r);
    CHECK_INT(r.heads, 0);
    CHECK_INT(r.consumed, strlen(big));
    result_free(&r);

    /* Exactly 1 MiB is allowed. */
    buf_t b = {0};
    buf_puts(&b, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1048576\r\n\r\n");
    buf_reserve(&b, HTTP_MAX_BODY);
    memset(b.p + b.len, 'x', HTTP_MAX_BODY);
    b.len += HTTP_MAX_BODY;
    b.p[b.len] = '\0';
    drive(b.p, b.len, 0, &r);
    CHECK_INT(r.status, 0);
    if (CHECK_INT(r.nreq, 1))
        CHECK_INT(r.req[0].body_len, HTTP_MAX_BODY);
    result_free(&r);
    drive(b.p, b.len, 1000, &r);
    CHECK_INT(r.nreq, 1);
    result_free(&r);
    buf_free(&b);

    /* A chunked body over 1 MiB: 413 while reading it. */
    put_chunked_req(&b, 17);
    EXPECT_STATUS_N("chunked 17 x 64 KiB", b.p, b.len, 413);
    drive(b.p, b.len, 0, &r);
    CHECK_INT(r.heads, 1); /* the headers were fine */
    result_free(&r);
    buf_free(&b);

    /* A chunked body of exactly 1 MiB passes. */
    put_chunked_req(&b, 16);
    drive(b.p, b.len, 777, &r);
    CHECK_INT(r.status, 0);
    if (CHECK_INT(r.nreq, 1))
        CHECK_INT(r.req[0].body_len, HTTP_MAX_BODY);
    result_free(&r);
    buf_free(&b);
}

static void second_fails(const result *r, const char *req, size_t piece)
{
    (void)piece;
    CHECK_INT(r->nreq, 1);
    CHECK_INT(r->status, 400);
}

TEST(http_framing_errors)
{
    EXPECT_STATUS("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400);
    EXPECT_STATUS("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                  "Content-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400);
    EXPECT_STATUS("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                  "Content-Length: 3\r\n\r\nabc", 400);
    EXPECT_STATUS("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                  "Content-Length: 4\r\n\r\nabcd", 400);
    EXPECT_STATUS("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400);
    EXPECT_STATUS("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n", 400);
    EXPECT_STATUS("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "zz\r\nabc\r\n0\r\n\r\n", 400);
    EXPECT_STATUS("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "-1\r\nabc\r\n0\r\n\r\n", 400);
    EXPECT_STATUS("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "ffffffffffffffffff\r\n", 400);
    EXPECT_STATUS("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "3\r\nabcX\r\n0\r\n\r\n", 400);
    /* Bare LF line endings, in the request line or any header line. */
    EXPECT_STATUS("GET / HTTP/1.1\nHost: h\n\n", 400);
    EXPECT_STATUS("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400);
    EXPECT_STATUS("GET / HTTP/1.1\r\nHost: h\r\n\n", 400);
    EXPECT_STATUS("GET / HTTP/1.1\r\nHost: h\r\nX: y\n\r\n", 400);
    /* Not HTTP. */
    EXPECT_STATUS("HELLO\r\n\r\n", 400);
    EXPECT_STATUS("GET / HTTP/9.9\r\n\r\n", 400);
    EXPECT_STATUS("GET / HTTP/1.1\r\nHost: h\r\n\r", 0); /* incomplete: no answer yet */
    /* Header names are RFC 9110 tokens. */
    EXPECT_STATUS("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400);
    EXPECT_STATUS("GET / HTTP/1.1\r\n: empty-name\r\n\r\n", 400);
    EXPECT_STATUS("GET / HTTP/1.1\r\nX\"y: z\r\n\r\n", 400);
    /* HTTP/1.x only. */
    EXPECT_STATUS("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 400);
    EXPECT_STATUS("GET /\r\n\r\n", 400);
    /* Whitespace between a field name and its colon (RFC 9112 5.1: MUST
     * be 400), and a first header line that starts with whitespace. */
    EXPECT_STATUS("POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello", 400);
    EXPECT_STATUS("POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400);
    EXPECT_STATUS("POST / HTTP/1.1\r\n Content-Length: 5\r\n\r\nhello", 400);
    /* Transfer codings other than a final chunked. */
    EXPECT_STATUS("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nhello", 400);
    EXPECT_STATUS("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
                  "5\r\nhello\r\n0\r\n\r\n", 400);
    EXPECT_STATUS("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
                  400);
    /* A bare LF after a good first request fails the second one only. */
    const char *two = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\nHost: h\r\n\r\n";
    drive_each_piece(two, second_fails);
}

/* ---------------------------------------------------------------- answers (http_resp_in) */

/* Feeds an answer in pieces of `step` bytes; the event of the last feed,
 * with *rest the bytes after the answer. */
static http_event resp_feed_steps(http_resp_in *r, const char *a, size_t step, size_t *rest)
{
    size_t n = strlen(a), pos = 0;
    http_event ev = HTTP_NEED_MORE;
    while (pos < n && ev == HTTP_NEED_MORE) {
        size_t k = n - pos < step ? n - pos : step, used = 0;
        ev = http_resp_feed(r, a + pos, k, &used);
        pos += used;
    }
    *rest = n - pos;
    return ev;
}

TEST(http_resp_any_cut)
{
    const char *a = "HTTP/1.1 100 Continue\r\n\r\n"
                    "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                    "X-Long: " "0123456789" "\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
    for (size_t step = 1; step <= strlen(a); step++) {
        http_resp_in r;
        http_resp_init(&r, 1024);
        size_t rest;
        REQUIRE(resp_feed_steps(&r, a, step, &rest) == HTTP_GOT_REQUEST);
        CHECK_INT(r.status, 201);
        CHECK_INT(rest, 0);
        CHECK_MEM(r.body.p, r.body.len, "{\"a\":1}", 7);
        size_t hl = 0;
        const char *h = http_resp_header(&r, "content-type", &hl);
        CHECK(h && hl == 16 && memcmp(h, "application/json", 16) == 0);
        CHECK(http_resp_header(&r, "x-missing", NULL) == NULL);
        CHECK(http_resp_keep_alive(&r));
        http_resp_free(&r);
    }
}

TEST(http_resp_upgrade_leaves_the_frames)
{
    http_resp_in r;
    http_resp_init(&r, 1024);
    const char *a = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\n\r\n\x81\x02hi";
    size_t used = 0;
    CHECK(http_resp_feed(&r, a, strlen(a), &used) == HTTP_GOT_REQUEST);
    CHECK_INT(r.status, 101);
    CHECK_INT(strlen(a) - used, 4); /* the frame is not the answer's */
    CHECK(!http_resp_keep_alive(&r));
    http_resp_free(&r);
}

TEST(http_resp_next_answer_and_eof_framing)
{
    http_resp_in r;
    http_resp_init(&r, 1024);
    const char *two = "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    size_t used = 0;
    CHECK(http_resp_feed(&r, two, strlen(two), &used) == HTTP_GOT_REQUEST);
    CHECK_INT(r.status, 204);
    http_resp_next(&r);
    size_t u2 = 0;
    CHECK(http_resp_feed(&r, two + used, strlen(two) - used, &u2) == HTTP_GOT_REQUEST);
    CHECK_INT(r.status, 200);
    CHECK_MEM(r.body.p, r.body.len, "ok", 2);
    /* A body that ends with the connection is whole only then. */
    http_resp_next(&r);
    const char *eof = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it";
    CHECK(http_resp_feed(&r, eof, strlen(eof), &used) == HTTP_NEED_MORE);
    CHECK(http_resp_finish(&r) == HTTP_GOT_REQUEST);
    CHECK_MEM(r.body.p, r.body.len, "all of it", 9);
    /* Cut short by the end: an error, not an answer. */
    http_resp_next(&r);
    const char *cut = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    CHECK(http_resp_feed(&r, cut, strlen(cut), &used) == HTTP_NEED_MORE);
    CHECK(http_resp_finish(&r) == HTTP_ERROR);
    CHECK(r.error != NULL);
    http_resp_free(&r);
}

TEST(http_resp_hostile_answers)
{
    const char *bad[] = {
        "SMTP ready\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        http_resp_in r;
        http_resp_init(&r, 1024);
        size_t used;
        CHECK(http_resp_feed(&r, bad[i], strlen(bad[i]), &used) == HTTP_ERROR);
        CHECK(r.error && *r.error);
        CHECK(!r.too_big);
        /* And it stays refused. */
        CHECK(http_resp_feed(&r, "HTTP/1.1 200 OK\r\n\r\n", 19, &used) == HTTP_ERROR);
        http_resp_free(&r);
    }
    /* A body over the cap: refused as too big, whatever comes after. */
    http_resp_in r;
    http_resp_init(&r, 4);
    const char *big = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n12345";
    size_t used;
    CHECK(http_resp_feed(&r, big, strlen(big), &used) == HTTP_ERROR);
    CHECK(r.too_big);
    http_resp_free(&r);
    /* A header section over 16 KiB. */
    http_resp_init(&r, 4);
    buf_t b = {0};
    buf_puts(&b, "HTTP/1.1 200 OK\r\nX: ");
    for (int i = 0; i < 17 * 1024; i++)
        buf_putc(&b, 'a');
    CHECK(http_resp_feed(&r, b.p, b.len, &used) == HTTP_ERROR);
    http_resp_free(&r);
    buf_free(&b);
}
