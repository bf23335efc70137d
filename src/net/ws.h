/*
 * ws.h: the WebSocket protocol (RFC 6455) of one connection, a server's
 * side (or a client's: ws_new_client), without sockets, so that the
 * fuzzer can drive it directly.
 *
 * wslay checks and reassembles what arrives (masking, reserved bits,
 * opcodes, fragmentation, control frames, UTF-8 of text and close reasons,
 * close codes, the message size limit) and answers pings and closes. The
 * application sees whole text messages. Data frames going out are framed
 * by the caller with ws_text_header: fan-out sends one change to many
 * connections and shares the document bytes between them, which wslay's
 * queue (a copy per message) cannot do.
 *
 * A wslay context holds 8 KiB of buffers. An idle connection needs none
 * of its state, so the context lives only while a frame or a fragmented
 * message is under way: ws.c hands wslay whole frames (it reads just
 * enough of each header to know where the frame ends) and frees the
 * context at each message boundary. An idle connection costs a few dozen
 * bytes here.
 */
#ifndef LIVEDB_WS_H
#define LIVEDB_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_MAX_MESSAGE (1024 * 1024)

/* Close codes used by livedb. */
#define WS_CLOSE_NORMAL 1000
#define WS_CLOSE_GOING_AWAY 1001
#define WS_CLOSE_PROTOCOL 1002
#define WS_CLOSE_UNSUPPORTED 1003
#define WS_CLOSE_BAD_DATA 1007
#define WS_CLOSE_TOO_BIG 1009
#define WS_CLOSE_ACCESS 4003 /* the account's access changed or ended */
#define WS_CLOSE_SLOW 4008

typedef struct ws ws_t;

typedef struct ws_cb {
    /* A whole text message: valid UTF-8, at most WS_MAX_MESSAGE bytes. */
    void (*on_text)(void *ctx, const char *msg, size_t len);
    /* Bytes for the peer (the frames the protocol makes: pong, close). */
    void (*send)(void *ctx, const void *data, size_t len);
    /* Optional: the peer's close frame arrived (code 1005: none given). */
    void (*on_close)(void *ctx, unsigned code, const char *reason, size_t len);
} ws_cb;

/* A server's side of one connection (messages up to WS_MAX_MESSAGE). */
ws_t *ws_new(const ws_cb *cb, void *ctx);
/* A client's side (livedb's command line, bench/rtload): our frames are
 * masked and the server's must not be; messages up to max_message. */
ws_t *ws_new_client(const ws_cb *cb, void *ctx, uint64_t max_message);
void ws_free(ws_t *ws);

/* Feeds bytes from the peer. Returns false once the connection is over
 * (the close handshake is done, or a protocol error was answered with a
 * close frame): the caller closes it when its output is written. */
bool ws_feed(ws_t *ws, const char *data, size_t len);
/* Queues one text message (wslay frames and, for a client, masks it);
 * sent at once, or when ws_feed returns if called from on_text. */
void ws_send_text(ws_t *ws, const char *text, size_t len);
/* Starts the close handshake (no-op when it has started). */
void ws_close(ws_t *ws, uint16_t code, const char *reason);
bool ws_closing(const ws_t *ws);
/* What of the peer's ended the connection ("a binary message ..."), when
 * this side refused it; NULL otherwise. */
const char *ws_refused(const ws_t *ws);
/* Whether a wslay context is held now (for tests of the idle cost). */
bool ws_busy(const ws_t *ws);

/* The header of an unmasked final text frame with len payload bytes;
 * returns its length (2, 4 or 10). */
size_t ws_text_header(unsigned char out[10], uint64_t len);
/* The 2-byte ping frame with no payload. */
extern const unsigned char ws_ping_frame[2];

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: out gets 28 characters and
 * a NUL. Returns -1 when the key is not base64 of 16 bytes. */
int ws_accept_key(const char *key, size_t n, char out[29]);

#endif
