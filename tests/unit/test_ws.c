/*
 * test_ws.c: net/ws.c, the WebSocket protocol without sockets: whole
 * messages out of frames cut anywhere, control frames answered, errors
 * closed with the right code, and no wslay context held between messages.
 */
#include <stdio.h>
#include <string.h>

#include "../../src/net/ws.h"
#include "../../src/util/util.h"
#include "harness.h"

typedef struct sink {
    buf_t out;      /* frames the protocol sent */
    buf_t msgs;     /* messages handed up, each followed by '\n' */
    int n;
} sink;

static void on_text(void *ctx, const char *m, size_t n)
{
    sink *s = ctx;
    buf_put(&s->msgs, m, n);
    buf_putc(&s->msgs, '\n');
    s->n++;
}

static void on_send(void *ctx, const void *d, size_t n) { buf_put(&((sink *)ctx)->out, d, n); }

static const ws_cb cbs = {.on_text = on_text, .send = on_send};

/* A masked client frame. */
static void frame(buf_t *b, int fin, int op, const char *p, size_t n)
{
    unsigned char mask[4] = {0x11, 0x22, 0x33, 0x44};
    buf_putc(b, (char)((fin ? 0x80 : 0) | op));
    if (n < 126) {
        buf_putc(b, (char)(0x80 | n));
    } else if (n < 65536) {
        buf_putc(b, (char)(0x80 | 126));
        buf_putc(b, (char)(n >> 8));
        buf_putc(b, (char)n);
    } else {
        buf_putc(b, (char)(0x80 | 127));
        for (int i = 7; i >= 0; i--)
            buf_putc(b, (char)((uint64_t)n >> (8 * i)));
    }
    buf_put(b, mask, 4);
    for (size_t i = 0; i < n; i++)
        buf_putc(b, (char)(p[i] ^ mask[i % 4]));
}

/* The close code of the first close frame sent, 0 when none, 1005 when empty. */
static int close_code(const buf_t *out)
{
    const unsigned char *p = (const unsigned char *)out->p;
    for (size_t i = 0; i + 2 <= out->len;) {
        size_t n = p[i + 1] & 0x7f;
        if ((p[i] & 0x0f) == 0x8)
            return n >= 2 ? p[i + 2] << 8 | p[i + 3] : 1005;
        i += 2 + n;
    }
    return 0;
}

TEST(ws_messages_across_any_cut)
{
    buf_t in = {0};
    frame(&in, 1, 1, "{\"t\":\"ping\"}", 12);
    frame(&in, 0, 1, "hel", 3);
    frame(&in, 1, 9, "p", 1); /* a ping inside a fragmented message */
    frame(&in, 1, 0, "lo", 2);
    char big[70000];
    memset(big, 'x', sizeof big);
    frame(&in, 1, 1, big, sizeof big);
    for (size_t step = 1; step <= in.len; step = step < 64 ? step + 1 : step * 3) {
        sink s = {0};
        ws_t *ws = ws_new(&cbs, &s);
        bool open = true;
        for (size_t i = 0; i < in.len && open; i += step)
            open = ws_feed(ws, in.p + i, in.len - i < step ? in.len - i : step);
        CHECK(open);
        if (!CHECK_INT(s.n, 3))
            FAILF("cut into pieces of %zu bytes", step);
        else
            CHECK(memcmp(s.msgs.p, "{\"t\":\"ping\"}\nhello\nxxx", 22) == 0);
        /* The pong for the ping, and nothing else. */
        CHECK_INT(s.out.len, 3);
        CHECK(s.out.len == 3 && memcmp(s.out.p, "\x8a\x01p", 3) == 0);
        CHECK(!ws_busy(ws)); /* between messages: no wslay context */
        ws_free(ws);
        buf_free(&s.out);
        buf_free(&s.msgs);
    }
    buf_free(&in);
}

TEST(ws_context_only_while_a_message_is_open)
{
    sink s = {0};
    ws_t *ws = ws_new(&cbs, &s);
    CHECK(!ws_busy(ws));
    buf_t in = {0};
    frame(&in, 0, 1, "ab", 2);
    ws_feed(ws, in.p, in.len);
    CHECK(ws_busy(ws)); /* a fragmented message is open */
    in.len = 0;
    frame(&in, 1, 0, "cd", 2);
    ws_feed(ws, in.p, 3); /* part of a frame */
    CHECK_INT(s.n, 0);
    ws_feed(ws, in.p + 3, in.len - 3);
    CHECK_INT(s.n, 1);
    CHECK(!ws_busy(ws));
    in.len = 0;
    frame(&in, 1, 1, "xy", 2);
    ws_feed(ws, in.p, 1); /* one byte of a header */
    ws_feed(ws, in.p + 1, in.len - 1);
    CHECK_INT(s.n, 2);
    CHECK(!ws_busy(ws));
    ws_free(ws);
    buf_free(&in);
    buf_free(&s.out);
    buf_free(&s.msgs);
}

static int code_for(buf_t *in)
{
    sink s = {0};
    ws_t *ws = ws_new(&cbs, &s);
    bool open = ws_feed(ws, in->p, in->len);
    int code = open ? -1 : close_code(&s.out);
    ws_free(ws);
    buf_free(&s.out);
    buf_free(&s.msgs);
    in->len = 0;
    return code;
}

TEST(ws_errors_close_with_their_codes)
{
    buf_t in = {0};
    buf_put(&in, "\x81\x02hi", 4); /* unmasked */
    CHECK_INT(code_for(&in), WS_CLOSE_PROTOCOL);
    frame(&in, 1, 3, "x", 1); /* reserved opcode */
    CHECK_INT(code_for(&in), WS_CLOSE_PROTOCOL);
    frame(&in, 0, 9, "x", 1); /* fragmented ping */
    CHECK_INT(code_for(&in), WS_CLOSE_PROTOCOL);
    frame(&in, 1, 0, "x", 1); /* continuation of nothing */
    CHECK_INT(code_for(&in), WS_CLOSE_PROTOCOL);
    frame(&in, 1, 1, "\xff", 1); /* bad UTF-8 */
    CHECK_INT(code_for(&in), WS_CLOSE_BAD_DATA);
    frame(&in, 1, 2, "\x01", 1); /* binary */
    CHECK_INT(code_for(&in), WS_CLOSE_UNSUPPORTED);
    frame(&in, 1, 8, "\x03", 1); /* a 1-byte close payload */
    CHECK_INT(code_for(&in), WS_CLOSE_PROTOCOL);
    frame(&in, 1, 8, "\x03\xed", 2); /* close code 1005 may not be sent */
    CHECK_INT(code_for(&in), WS_CLOSE_PROTOCOL);
    frame(&in, 1, 8, "\x03\xe8ok", 4); /* a good close is echoed */
    CHECK_INT(code_for(&in), 1000);
    /* Over the message limit: refused from the header, before the payload. */
    buf_put(&in, "\x81\xff\x00\x00\x00\x00\x00\x10\x00\x01mask", 14);
    CHECK_INT(code_for(&in), WS_CLOSE_TOO_BIG);
    /* 126-length form for 5 bytes: not the shortest form. */
    buf_put(&in, "\x81\xfe\x00\x05mask12345", 13);
    CHECK_INT(code_for(&in), WS_CLOSE_PROTOCOL);
    buf_free(&in);
}

TEST(ws_nothing_after_close)
{
    sink s = {0};
    ws_t *ws = ws_new(&cbs, &s);
    buf_t in = {0};
    frame(&in, 1, 8, "\x03\xe8", 2);
    frame(&in, 1, 1, "late", 4);
    CHECK(!ws_feed(ws, in.p, in.len));
    CHECK_INT(s.n, 0);
    CHECK(ws_closing(ws));
    ws_free(ws);
    buf_free(&in);
    buf_free(&s.out);
}

TEST(ws_server_close_then_client_answer)
{
    sink s = {0};
    ws_t *ws = ws_new(&cbs, &s);
    ws_close(ws, WS_CLOSE_SLOW, "slow");
    CHECK_INT(close_code(&s.out), WS_CLOSE_SLOW);
    buf_t in = {0};
    frame(&in, 1, 1, "{}", 2); /* data after our close is not handed up */
    frame(&in, 1, 8, "\x0f\xa8", 2);
    CHECK(!ws_feed(ws, in.p, in.len));
    CHECK_INT(s.n, 0);
    ws_free(ws);
    buf_free(&in);
    buf_free(&s.out);
}

TEST(ws_text_header_sizes)
{
    unsigned char h[10];
    CHECK_INT(ws_text_header(h, 0), 2);
    CHECK(h[0] == 0x81 && h[1] == 0);
    CHECK_INT(ws_text_header(h, 125), 2);
    CHECK_INT(ws_text_header(h, 126), 4);
    CHECK(h[1] == 126 && h[2] == 0 && h[3] == 126);
    CHECK_INT(ws_text_header(h, 65535), 4);
    CHECK_INT(ws_text_header(h, 65536), 10);
    CHECK(h[1] == 127 && h[7] == 1 && h[8] == 0 && h[9] == 0);
}

TEST(ws_accept_key_rfc_example)
{
    char out[29];
    CHECK_INT(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out), 0);
    CHECK_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK_INT(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ", 22, out), -1);
    CHECK_INT(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=!", 24, out), -1);
    CHECK_INT(ws_accept_key("AAAAAAAAAAAAAAAAAAAAAAAAAAA=", 28, out), -1);
}

/* ---------------------------------------------------------------- a client's side */

typedef struct peer {
    sink s;
    unsigned close_code;
    char reason[32];
} peer;

static void peer_close(void *ctx, unsigned code, const char *r, size_t n)
{
    peer *p = ctx;
    p->close_code = code;
    snprintf(p->reason, sizeof p->reason, "%.*s", (int)n, r);
}

static const ws_cb peer_cbs = {.on_text = on_text, .send = on_send, .on_close = peer_close};

TEST(ws_client_and_server_talk)
{
    peer srv = {0}, cli = {0};
    ws_t *server = ws_new(&peer_cbs, &srv);
    ws_t *client = ws_new_client(&peer_cbs, &cli, 64);
    /* The client's message goes out masked; the server reads it. */
    ws_send_text(client, "{\"t\":\"sub\"}", 11);
    REQUIRE(cli.s.out.len == 2 + 4 + 11);
    CHECK((unsigned char)cli.s.out.p[1] & 0x80);
    CHECK(ws_feed(server, cli.s.out.p, cli.s.out.len));
    CHECK_MEM(srv.s.msgs.p, srv.s.msgs.len, "{\"t\":\"sub\"}\n", 12);
    /* The server's frame (unmasked), cut anywhere, reaches the client whole. */
    unsigned char h[10];
    size_t hl = ws_text_header(h, 5);
    buf_t in = {0};
    buf_put(&in, h, hl);
    buf_put(&in, "hello", 5);
    for (size_t i = 0; i < in.len; i++)
        CHECK(ws_feed(client, in.p + i, 1));
    CHECK_MEM(cli.s.msgs.p, cli.s.msgs.len, "hello\n", 6);
    /* The server closes with a code and a reason: the client hears both,
     * answers, and is done. */
    ws_close(server, WS_CLOSE_ACCESS, "revoked");
    CHECK(!ws_feed(client, srv.s.out.p, srv.s.out.len));
    CHECK_INT(cli.close_code, WS_CLOSE_ACCESS);
    CHECK_STR(cli.reason, "revoked");
    CHECK(ws_refused(client) == NULL);
    ws_free(server);
    ws_free(client);
    buf_free(&in);
    buf_free(&srv.s.out);
    buf_free(&srv.s.msgs);
    buf_free(&cli.s.out);
    buf_free(&cli.s.msgs);
}

TEST(ws_client_refuses_what_a_server_may_not_send)
{
    struct { const char *bytes; size_t n; int code; const char *why; } cases[] = {
        {"\x82\x01\x01", 3, WS_CLOSE_UNSUPPORTED, "a binary message"},  /* binary */
        {"\x81\x81mask\x01", 7, WS_CLOSE_PROTOCOL, "RFC 6455"},         /* masked */
        {"\x81\x7e\x00\x80", 4, WS_CLOSE_TOO_BIG, "size limit"},        /* 128 > 64 */
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        peer cli = {0};
        ws_t *client = ws_new_client(&peer_cbs, &cli, 64);
        CHECK(!ws_feed(client, cases[i].bytes, cases[i].n));
        CHECK_INT(cli.s.n, 0);
        /* Our close frame is masked: skip the 2-byte header and 4-byte key. */
        REQUIRE(cli.s.out.len >= 8);
        const unsigned char *o = (const unsigned char *)cli.s.out.p;
        CHECK_INT((o[0] & 0x0f), 0x8);
        CHECK_INT(((o[6] ^ o[2]) << 8 | (o[7] ^ o[3])), cases[i].code);
        REQUIRE(ws_refused(client));
        CHECK(strstr(ws_refused(client), cases[i].why) != NULL);
        ws_free(client);
        buf_free(&cli.s.out);
        buf_free(&cli.s.msgs);
    }
}
