/*
 * ws.c: see ws.h.
 *
 * Frame boundaries: ws_feed reads each frame's header (2-14 bytes) to find
 * where the frame ends, and passes wslay only runs of whole frames, so
 * that wslay never holds part of a frame between two calls. A frame cut
 * by the network waits in ws->part. The header reading also refuses what
 * cannot be buffered (a data frame over the message limit: 1009) and the
 * frame-level errors wslay would answer with a close frame without a
 * code (control frames over 125 bytes or fragmented, lengths not in their
 * shortest form, a 64-bit length with the top bit set: 1002).
 */
#include "ws.h"

#include <stdlib.h>
#include <string.h>

#include <nettle/sha1.h>
#include <sodium.h>
#include <wslay/wslay.h>

#include "../util/slab.h"
#include "../util/util.h"

struct ws {
    const ws_cb *cb;
    void *ctx;
    wslay_event_context_ptr wctx; /* NULL between messages */
    buf_t part;                   /* an incomplete frame */
    const char *in;               /* bytes being handed to wslay */
    size_t in_len;
    uint64_t msg_len;             /* of the open fragmented message, so far */
    uint64_t max_message;
    const char *refused;          /* what of the peer's we refused, for people */
    bool in_message;              /* a fragmented data message is open */
    bool closing;                 /* a close frame was sent */
    bool done;
    bool in_recv;                 /* inside wslay_event_recv */
    bool client;                  /* our frames masked, the peer's not */
};

const unsigned char ws_ping_frame[2] = {0x89, 0x00};

/* ------------------------------------------------------------------ wslay callbacks */

static ssize_t recv_cb(wslay_event_context_ptr wctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    ws_t *ws = user;
    (void)flags;
    if (ws->in_len == 0) {
        wslay_event_set_error(wctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < ws->in_len ? len : ws->in_len;
    memcpy(buf, ws->in, n);
    ws->in += n;
    ws->in_len -= n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr wctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    ws_t *ws = user;
    (void)wctx;
    (void)flags;
    ws->cb->send(ws->ctx, data, len); /* always takes everything: no partial frames */
    return (ssize_t)len;
}

static void on_msg(wslay_event_context_ptr wctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user)
{
    ws_t *ws = user;
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
        if (!ws->closing)
            ws->cb->on_text(ws->ctx, (const char *)arg->msg, arg->msg_length);
        break;
    case WSLAY_BINARY_FRAME:
        /* The protocol is JSON text; binary data is refused (RFC 6455 7.4.1). */
        if (!ws->closing) {
            ws->refused = "a binary message (the protocol is JSON text)";
            wslay_event_queue_close(wctx, WS_CLOSE_UNSUPPORTED,
                                    (const uint8_t *)"text frames only", 16);
            wslay_event_shutdown_read(wctx); /* over: nothing more is read */
            ws->closing = true;
        }
        break;
    case WSLAY_CONNECTION_CLOSE:
        ws->closing = true; /* wslay has queued the answering close frame */
        if (ws->cb->on_close)
            ws->cb->on_close(ws->ctx, arg->status_code,
                             arg->msg_length > 2 ? (const char *)arg->msg + 2 : "",
                             arg->msg_length > 2 ? arg->msg_length - 2 : 0);
        break;
    default: /* ping (answered by wslay) and pong */
        break;
    }
}

static int genmask_cb(wslay_event_context_ptr wctx, uint8_t *buf, size_t len, void *user)
{
    (void)wctx;
    (void)user;
    randombytes_buf(buf, len);
    return 0;
}

static wslay_event_context_ptr context(ws_t *ws)
{
    if (!ws->wctx) {
        static const struct wslay_event_callbacks cbs = {
            .recv_callback = recv_cb,
            .send_callback = send_cb,
            .genmask_callback = genmask_cb,
            .on_msg_recv_callback = on_msg,
        };
        if ((ws->client ? wslay_event_context_client_init(&ws->wctx, &cbs, ws)
                        : wslay_event_context_server_init(&ws->wctx, &cbs, ws)) != 0)
            abort(); /* out of memory: the policy of util.h */
        wslay_event_config_set_max_recv_msg_length(ws->wctx, ws->max_message);
    }
    return ws->wctx;
}

/* ------------------------------------------------------------------ life */

ws_t *ws_new(const ws_cb *cb, void *ctx)
{
    ws_t *ws = slab_alloc(sizeof *ws);
    ws->cb = cb;
    ws->ctx = ctx;
    ws->max_message = WS_MAX_MESSAGE;
    return ws;
}

ws_t *ws_new_client(const ws_cb *cb, void *ctx, uint64_t max_message)
{
    ws_t *ws = ws_new(cb, ctx);
    ws->client = true;
    ws->max_message = max_message;
    return ws;
}

void ws_free(ws_t *ws)
{
    if (!ws)
        return;
    if (ws->wctx)
        wslay_event_context_free(ws->wctx);
    buf_free(&ws->part);
    slab_free(ws, sizeof *ws);
}

bool ws_closing(const ws_t *ws) { return ws->closing || ws->done; }
const char *ws_refused(const ws_t *ws) { return ws->refused; }
bool ws_busy(const ws_t *ws) { return ws->wctx != NULL; }

/* Sends what wslay queued, and notes when the connection is over. */
static void flush(ws_t *ws)
{
    if (!ws->wctx)
        return;
    wslay_event_send(ws->wctx);
    if (!wslay_event_get_read_enabled(ws->wctx) || wslay_event_get_close_sent(ws->wctx)) {
        ws->closing = true;
        /* Over when both closes crossed, or when we refused the peer's
         * frames (read is off): nothing it says can matter now. */
        if (!wslay_event_get_read_enabled(ws->wctx) ||
            (wslay_event_get_close_sent(ws->wctx) && wslay_event_get_close_received(ws->wctx)))
            ws->done = true;
    }
}

void ws_send_text(ws_t *ws, const char *text, size_t len)
{
    if (ws->closing || ws->done)
        return;
    struct wslay_event_msg m = {.opcode = WSLAY_TEXT_FRAME, .msg = (const uint8_t *)text,
                                .msg_length = len};
    wslay_event_queue_msg(context(ws), &m); /* wslay copies it */
    if (!ws->in_recv) /* else deliver() sends it when wslay returns */
        flush(ws);
}

void ws_close(ws_t *ws, uint16_t code, const char *reason)
{
    if (ws->closing || ws->done)
        return;
    wslay_event_queue_close(context(ws), code, (const uint8_t *)reason,
                            reason ? strlen(reason) : 0);
    ws->closing = true;
    if (!ws->in_recv) /* else deliver() sends it when wslay returns */
        flush(ws);
}

/* Refuses the peer's frames with a close code of ours. */
static void fail(ws_t *ws, uint16_t code)
{
    ws->refused = code == WS_CLOSE_TOO_BIG ? "a message over the size limit"
                                           : "a frame that breaks RFC 6455";
    if (!ws->closing)
        wslay_event_queue_close(context(ws), code, NULL, 0);
    ws->closing = true;
    ws->done = true;
    wslay_event_shutdown_read(context(ws));
    wslay_event_send(ws->wctx);
}

/* ------------------------------------------------------------------ frames */

size_t ws_text_header(unsigned char out[10], uint64_t len)
{
    out[0] = 0x81; /* FIN, text */
    if (len < 126) {
        out[1] = (unsigned char)len;
        return 2;
    }
    if (len < 65536) {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
    return 10;
}

/* Reads one frame header at p. Returns the frame's whole length, 0 when
 * more bytes are needed, or -code when the frame must be refused. */
static int64_t frame_size(ws_t *ws, const unsigned char *p, size_t n)
{
    if (n < 2)
        return 0;
    int fin = p[0] >> 7, opcode = p[0] & 0x0f, masked = p[1] >> 7;
    uint64_t len = p[1] & 0x7f;
    size_t hdr = 2;
    if (opcode & 0x08) {
        /* Control frames: short and whole; a close payload is empty or a
         * 2-byte code and a reason (wslay takes 1 byte as "no code"). */
        if (len > 125 || !fin || (opcode == 0x8 && len == 1))
            return -WS_CLOSE_PROTOCOL;
    } else if (len == 126) {
        if (n < 4)
            return 0;
        len = (uint64_t)p[2] << 8 | p[3];
        if (len < 126)
            return -WS_CLOSE_PROTOCOL;
        hdr = 4;
    } else if (len == 127) {
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        if (len >> 63 || len < 65536)
            return -WS_CLOSE_PROTOCOL;
        hdr = 10;
    }
    if (masked != !ws->client)
        return -WS_CLOSE_PROTOCOL; /* clients mask, servers do not (RFC 6455 5.1) */
    if (!(opcode & 0x08)) {
        uint64_t total = opcode == 0 && ws->in_message ? ws->msg_len + len : len;
        if (total > ws->max_message)
            return -WS_CLOSE_TOO_BIG;
    }
    return (int64_t)(hdr + (masked ? 4 : 0) + len);
}

/* The payload length of a frame whose header frame_size accepted. */
static uint64_t payload_len(const unsigned char *p)
{
    uint64_t len = p[1] & 0x7f;
    if (len == 126)
        return (uint64_t)p[2] << 8 | p[3];
    if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
    }
    return len;
}

/* Notes the message state a frame leaves behind (wslay refuses the
 * sequences that make no sense; this only tracks the sensible ones). */
static void track(ws_t *ws, const unsigned char *p)
{
    int fin = p[0] >> 7, opcode = p[0] & 0x0f;
    if (opcode == 1 || opcode == 2) {
        ws->in_message = !fin;
        ws->msg_len = payload_len(p);
    } else if (opcode == 0) {
        ws->msg_len += payload_len(p);
        if (fin)
            ws->in_message = false;
    }
}

/* Hands whole frames [p, p+n) to wslay. */
static void deliver(ws_t *ws, const char *p, size_t n)
{
    ws->in = p;
    ws->in_len = n;
    ws->in_recv = true;
    wslay_event_recv(context(ws));
    ws->in_recv = false;
    ws->in_len = 0;
    flush(ws);
}

bool ws_feed(ws_t *ws, const char *data, size_t len)
{
    const char *p = data, *end = data + len;
    while (!ws->done && p < end) {
        if (ws->part.len) {
            /* Complete the frame that was cut: header first, then the rest. */
            int64_t need;
            while ((need = frame_size(ws, (const unsigned char *)ws->part.p, ws->part.len)) == 0 &&
                   p < end)
                buf_putc(&ws->part, *p++);
            if (need < 0) {
                fail(ws, (uint16_t)-need);
                break;
            }
            if (need == 0)
                break;
            size_t take = (size_t)need - ws->part.len;
            if (take > (size_t)(end - p))
                take = (size_t)(end - p);
            buf_put(&ws->part, p, take);
            p += take;
            if (ws->part.len < (size_t)need)
                break;
            track(ws, (const unsigned char *)ws->part.p);
            deliver(ws, ws->part.p, ws->part.len);
            buf_free(&ws->part);
            continue;
        }
        /* The longest run of whole frames in the input. */
        const char *run = p;
        int64_t sz = 0;
        while (p < end && (sz = frame_size(ws, (const unsigned char *)p, (size_t)(end - p))) > 0 &&
               (uint64_t)sz <= (uint64_t)(end - p)) {
            track(ws, (const unsigned char *)p);
            p += sz;
        }
        if (p > run)
            deliver(ws, run, (size_t)(p - run));
        if (ws->done)
            break;
        if (sz < 0) {
            fail(ws, (uint16_t)-sz);
            break;
        }
        if (p < end) { /* a frame cut short: keep it */
            buf_put(&ws->part, p, (size_t)(end - p));
            p = end;
        }
    }
    /* Between messages with nothing pending: give the 8 KiB back (a
     * server's many idle connections; a client keeps its one). */
    if (ws->wctx && !ws->client && !ws->closing && !ws->done && !ws->in_message && !ws->part.len) {
        wslay_event_context_free(ws->wctx);
        ws->wctx = NULL;
    }
    return !ws->done;
}

/* ------------------------------------------------------------------ handshake */

int ws_accept_key(const char *key, size_t n, char out[29])
{
    unsigned char raw[32];
    size_t rawlen = 0;
    if (n != 24 || sodium_base642bin(raw, sizeof raw, key, n, NULL, &rawlen, NULL,
                                     sodium_base64_VARIANT_ORIGINAL) != 0 ||
        rawlen != 16)
        return -1;
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    struct sha1_ctx sha;
    uint8_t digest[SHA1_DIGEST_SIZE];
    sha1_init(&sha);
    sha1_update(&sha, n, (const uint8_t *)key);
    sha1_update(&sha, sizeof guid - 1, (const uint8_t *)guid);
    sha1_digest(&sha, sizeof digest, digest);
    sodium_bin2base64(out, 29, digest, sizeof digest, sodium_base64_VARIANT_ORIGINAL);
    return 0;
}
