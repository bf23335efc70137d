/*
 * client.h: a small HTTP/1.1 and WebSocket client on libuv, for the
 * command line's own traffic to a running server (livedb simulate).
 *
 * Whatever a server sends is treated as hostile: answers are parsed by
 * llhttp with a cap on their size, WebSocket frames by wslay (ours are
 * masked, as RFC 6455 requires of a client), every message is parsed by
 * jansson, and every exchange has a deadline. A failure is a sentence for
 * a person (client_resp.err, client_ws_error), never an abort or a hang.
 *
 * Any number of connections share one uv_loop_t. Callbacks run on the
 * loop; client_wait() runs it until a condition holds or a deadline
 * passes, so that a scenario reads top to bottom while a stress run keeps
 * many connections busy on the same loop. A callback must never call
 * client_wait() (no nested loops).
 */
#ifndef LIVEDB_CLIENT_H
#define LIVEDB_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <jansson.h>
#include <uv.h>

/* Caps on what a server may send us. */
#define CLIENT_BODY_MAX (64u * 1024 * 1024)
#define CLIENT_WS_MESSAGE_MAX (16u * 1024 * 1024)

/* Where the server is: "http://HOST:PORT", resolved once. */
typedef struct client_target {
    struct sockaddr_storage addr;
    char hostport[300]; /* for the Host header */
    char url[320];      /* as a person wrote it, for messages */
} client_target;

/* Parses and resolves url (http only). Returns 0, or -1 with a message. */
int client_target_parse(const char *url, client_target *t, char *err, size_t errlen);

/* Runs the loop until done(ud) holds (true) or seconds pass (false). */
bool client_wait(uv_loop_t *loop, bool (*done)(void *ud), void *ud, double seconds);
/* Runs the loop until every handle is closed (before uv_loop_close). */
void client_drain(uv_loop_t *loop);

/* ------------------------------------------------------------------ HTTP */

typedef struct client_http client_http;

/* An answer, borrowed for the length of the callback. status 0: none came,
 * err says why (refused, timed out, closed, not HTTP, too big). */
typedef struct client_resp {
    int status;
    const char *body;
    size_t len;
    const char *err;
} client_resp;

typedef void (*client_http_cb)(void *ud, const client_resp *r);

/* One keep-alive connection, opened on the first request and again after
 * a failure; timeout_s bounds each request, connection included. */
client_http *client_http_new(uv_loop_t *loop, const client_target *t, double timeout_s);
/* Closes the connection; an answer still due is dropped without a call. */
void client_http_free(client_http *h);
/* Sends a request (one at a time: -1 while one is in flight). token and
 * body may be NULL; a body is sent as application/json. cb is called
 * once, from the loop, never from inside this call. */
int client_http_send(client_http *h, const char *method, const char *path, const char *token,
                     const char *body, size_t len, client_http_cb cb, void *ud);
bool client_http_busy(const client_http *h);

/* A request and its answer, waited for: what scenarios use. */
typedef struct client_answer {
    int status;    /* 0: no answer (err) */
    json_t *json;  /* the body, when it is JSON */
    char err[256]; /* the transport's failure, or why the body is not JSON */
    double ms;     /* request to answer */
} client_answer;

/* Sends body (may be NULL) and waits; fills a (free it with
 * client_answer_clear). Returns the status (0 on a transport failure). */
int client_call(client_http *h, const char *method, const char *path, const char *token,
                const json_t *body, client_answer *a);
void client_answer_clear(client_answer *a);
/* "422 insufficient_stock: not enough stock ..." or the transport error. */
void client_answer_describe(const client_answer *a, char *out, size_t outlen);

/* ------------------------------------------------------------------ WebSocket */

typedef struct client_ws client_ws;

/* A text message parsed as a JSON object (borrowed), and when it came. */
typedef void (*client_ws_msg_cb)(void *ud, json_t *msg, uint64_t at_ns);

/* Opens a WebSocket to path (e.g. "/v1/realtime") with a bearer token;
 * the upgrade must be done within timeout_s. */
client_ws *client_ws_open(uv_loop_t *loop, const client_target *t, const char *path,
                          const char *token, double timeout_s, client_ws_msg_cb on_msg, void *ud);
/* Sends a close frame and closes; no callback is called after this. */
void client_ws_free(client_ws *ws);
bool client_ws_connecting(const client_ws *ws);
bool client_ws_open_now(const client_ws *ws);
/* Why it is closed (NULL while connecting or open): "closed by the
 * server (4008 ...)", "the server sent a message that is not JSON", ... */
const char *client_ws_error(const client_ws *ws);
/* Sends one text message (JSON). -1 when the connection is not open. */
int client_ws_send(client_ws *ws, const json_t *msg);

#endif
