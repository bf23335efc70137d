/*
 * fuzz_realtime.c: the realtime message path: bytes from a client through
 * net/ws.c (framing, by wslay) into core/rtproto.c (the JSON messages).
 *
 * Input: the first byte picks how the rest is cut into reads (1 to 256
 * bytes each), the rest is what the client sends. Checks, besides memory
 * safety: every message handed up is valid UTF-8 of at most 1 MiB; every
 * byte sent back is a sequence of whole server frames (unmasked, the
 * known opcodes); once the connection is over nothing more is handed up;
 * a parsed message frees cleanly and an error names a code.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/core/rtproto.h"
#include "../../src/net/ws.h"
#include "../../src/util/util.h"
#include "fuzz.h"

typedef struct state {
    buf_t out;
    bool over;
    int messages;
} state;

static bool utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : 9;
        if (k == 9 || i + k >= n + (k ? 0 : 1))
            return k == 0;
        for (size_t j = 1; j <= k; j++)
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
        i += k + 1;
    }
    return true;
}

static void on_text(void *ctx, const char *msg, size_t len)
{
    state *st = ctx;
    REQUIRE(!st->over);
    REQUIRE(len <= WS_MAX_MESSAGE);
    REQUIRE(utf8_ok((const unsigned char *)msg, len));
    st->messages++;
    rt_msg m;
    err_t e = {0};
    if (rt_parse(msg, len, &m, &e) == 0) {
        REQUIRE(m.type <= RT_PING);
        if (m.type == RT_SUB)
            REQUIRE(m.col[0] && rt_col_ok(m.col, strlen(m.col)));
        rt_msg_free(&m);
    } else {
        REQUIRE(e.code == E_BAD_REQUEST);
        REQUIRE(m.where == NULL && m.doc == NULL && m.args == NULL && m.state == NULL);
    }
    err_clear(&e);
}

static void on_send(void *ctx, const void *data, size_t len)
{
    buf_put(&((state *)ctx)->out, data, len);
}

static const ws_cb cbs = {.on_text = on_text, .send = on_send};

/* The server's frames: whole, unmasked, final, known control opcodes. */
static void check_frames(const buf_t *b)
{
    const unsigned char *p = (const unsigned char *)b->p;
    size_t i = 0;
    while (i < b->len) {
        REQUIRE(b->len - i >= 2);
        int op = p[i] & 0x0f;
        REQUIRE((p[i] & 0xf0) == 0x80);           /* FIN, no RSV */
        REQUIRE(op == 0x8 || op == 0x9 || op == 0xA); /* close, ping, pong */
        REQUIRE(!(p[i + 1] & 0x80));              /* unmasked */
        size_t n = p[i + 1] & 0x7f;
        REQUIRE(n <= 125);
        i += 2 + n;
        REQUIRE(i <= b->len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] + 1;
    data++;
    size--;
    state st = {0};
    ws_t *ws = ws_new(&cbs, &st);
    for (size_t i = 0; i < size; i += step) {
        size_t n = size - i < step ? size - i : step;
        if (!ws_feed(ws, (const char *)data + i, n))
            st.over = true;
    }
    if (st.over)
        REQUIRE(ws_closing(ws));
    check_frames(&st.out);
    ws_free(ws);
    buf_free(&st.out);
    return 0;
}
