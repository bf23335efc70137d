/*
 * server.h: the HTTP server on libuv: connections, timeouts, answers.
 *
 * One loop thread owns every connection. A request is handed to the
 * application's handler whole; the handler answers at once or later (after
 * a write commits or a read finishes on the thread pool). While a request
 * is being handled, the next pipelined one waits in the input buffer, so
 * answers go out in request order.
 *
 * Ownership: a handler that answers later must conn_ref() the connection
 * and conn_unref() it when done; the connection may have closed meanwhile
 * (conn_open() says), in which case the answer is dropped.
 */
#ifndef LIVEDB_SERVER_H
#define LIVEDB_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "../util/metrics.h"
#include "http.h"

typedef struct conn conn_t;
typedef struct server server_t;

typedef void (*server_handler)(void *app, conn_t *c, http_req *req);

typedef struct server_opts {
    const char *host;
    int port;
    double header_timeout; /* seconds */
    double idle_timeout;   /* seconds */
} server_opts;

/* Binds and listens; *bound_port receives the port (for port 0). */
int server_start(server_t **out, uv_loop_t *loop, const server_opts *opts, server_handler h,
                 void *app, int *bound_port, char *errbuf, size_t errlen);
/* Stops accepting new connections. */
void server_stop_accepting(server_t *s);
/* Closes every connection (after their answers are written). */
void server_close_all(server_t *s);
void server_free(server_t *s);

/* ------------------------------------------------------------------ conn */

conn_t *conn_ref(conn_t *c);
void conn_unref(conn_t *c);
bool conn_open(const conn_t *c);
const char *conn_remote(const conn_t *c);
bool conn_is_loopback(const conn_t *c);
/* The route label for the metrics and the access log of this request. */
void conn_set_route(conn_t *c, route_id r);
/* Header lines (each ending in CRLF) added to the answer of the current
 * request, whichever handler gives it (CORS). */
void conn_set_headers(conn_t *c, const char *lines);

/* Answers the current request. headers: extra header lines, each ending in
 * CRLF, or NULL. The body is copied. */
void conn_respond(conn_t *c, int status, const char *content_type, const char *headers,
                  const char *body, size_t len);
/* The same, but takes ownership of the buffer (no copy). */
void conn_respond_buf(conn_t *c, int status, const char *content_type, const char *headers,
                      buf_t *body);
/* {"error":{"code","message","details"}} with the code's status. */
struct err;
void conn_respond_error(conn_t *c, const struct err *e, const char *headers);

/* Streaming (Server-Sent Events): sends the head, then any number of
 * conn_stream_write, until the client or the server closes. on_close runs
 * once when the connection goes away. */
void conn_stream_start(conn_t *c, int status, const char *content_type, const char *headers,
                       void (*on_close)(conn_t *c, void *ctx), void *ctx);
void conn_stream_write(conn_t *c, const char *data, size_t len);
/* Runs hook once when the connection closes (for long polls, which hold
 * a request open without streaming). Replaces any earlier hook. */
void conn_set_close_hook(conn_t *c, void (*hook)(conn_t *c, void *ctx), void *ctx);
/* Bytes written but not yet taken by the kernel. */
size_t conn_pending_bytes(const conn_t *c);
/* Closes the connection (after queued writes). */
void conn_close(conn_t *c);

/* ------------------------------------------------------------------ upgraded */

/* An upgraded connection (WebSocket) is a byte stream. Every callback runs
 * on the loop thread; on_data gets bytes that are valid only during the
 * call (the read buffer is shared by every upgraded connection). */
typedef struct conn_raw_cb {
    void (*on_data)(conn_t *c, void *ctx, const char *data, size_t len);
    /* The output fell below 256 KiB after a write: room for more. */
    void (*on_drain)(conn_t *c, void *ctx);
    /* The connection closed (once). */
    void (*on_close)(conn_t *c, void *ctx);
} conn_raw_cb;

/* Answers the current request with 101 Switching Protocols (headers: the
 * extra header lines) and hands the connection to cb. */
void conn_upgrade(conn_t *c, const char *headers, const conn_raw_cb *cb, void *ctx);
/* Queues bytes (copied). Queued output goes out with one writev per
 * connection at the end of the loop turn. */
void conn_out_copy(conn_t *c, const void *p, size_t n);
/* Queues bytes without copying them: release(owner) runs once they are
 * written or dropped. */
void conn_out_ref(conn_t *c, const void *p, size_t n, void (*release)(void *), void *owner);
/* Bytes queued or being written. */
size_t conn_out_pending(const conn_t *c);
/* Closes once everything queued is written. */
void conn_close_after_output(conn_t *c);

#endif
