/*
 * http_resp.c: one HTTP/1.1 answer out of a byte stream, for livedb's own
 * clients (the command line's client, bench/rtload). See http.h.
 *
 * What a server sends is hostile like any input: llhttp checks the
 * framing, the header section is bounded (HTTP_MAX_HEAD) and the body by
 * the caller's cap. Interim answers (100 Continue) are skipped; 101 is
 * the answer to an upgrade, and what follows it is the new protocol's.
 */
#include "http.h"

#include <string.h>

static int resp_fail(http_resp_in *r, const char *why)
{
    r->error = why;
    return HPE_USER;
}

static int on_resp_begin(llhttp_t *p)
{
    http_resp_in *r = p->data;
    r->head.len = 0;
    r->body.len = 0;
    r->nheaders = 0;
    r->in_value = true;
    return 0;
}

static int on_resp_field(llhttp_t *p, const char *at, size_t n)
{
    http_resp_in *r = p->data;
    if (r->head.len + n > HTTP_MAX_HEAD)
        return resp_fail(r, "the header section is over 16 KiB");
    if (r->in_value) { /* a new header */
        if (r->nheaders == HTTP_MAX_HEADERS)
            return resp_fail(r, "too many header fields");
        r->hdr_off[r->nheaders][0] = r->hdr_off[r->nheaders][1] = r->head.len;
        r->hdr_off[r->nheaders][2] = r->hdr_off[r->nheaders][3] = r->head.len;
        r->nheaders++;
        r->in_value = false;
    }
    buf_put(&r->head, at, n);
    r->hdr_off[r->nheaders - 1][1] = r->hdr_off[r->nheaders - 1][2] = r->head.len;
    r->hdr_off[r->nheaders - 1][3] = r->head.len;
    return 0;
}

static int on_resp_value(llhttp_t *p, const char *at, size_t n)
{
    http_resp_in *r = p->data;
    if (r->head.len + n > HTTP_MAX_HEAD)
        return resp_fail(r, "the header section is over 16 KiB");
    r->in_value = true;
    buf_put(&r->head, at, n);
    r->hdr_off[r->nheaders - 1][3] = r->head.len;
    return 0;
}

static int on_resp_headers(llhttp_t *p)
{
    /* 2: no body follows an upgrade's answer; llhttp then pauses on it. */
    return llhttp_get_status_code(p) == 101 ? 2 : 0;
}

static int on_resp_body(llhttp_t *p, const char *at, size_t n)
{
    http_resp_in *r = p->data;
    if (r->body.len + n > r->body_max) {
        r->too_big = true;
        return resp_fail(r, "the answer's body is over the limit");
    }
    buf_put(&r->body, at, n);
    return 0;
}

static int on_resp_complete(llhttp_t *p)
{
    http_resp_in *r = p->data;
    int st = llhttp_get_status_code(p);
    if (st >= 100 && st < 200 && st != 101)
        return 0; /* an interim answer: the real one follows */
    r->status = st;
    r->complete = true;
    return st == 101 ? 0 : HPE_PAUSED; /* 101: llhttp stops with HPE_PAUSED_UPGRADE */
}

static const llhttp_settings_t resp_settings = {
    .on_message_begin = on_resp_begin,
    .on_header_field = on_resp_field,
    .on_header_value = on_resp_value,
    .on_headers_complete = on_resp_headers,
    .on_body = on_resp_body,
    .on_message_complete = on_resp_complete,
};

void http_resp_init(http_resp_in *r, size_t body_max)
{
    memset(r, 0, sizeof *r);
    r->body_max = body_max;
    llhttp_init(&r->parser, HTTP_RESPONSE, &resp_settings);
    r->parser.data = r;
}

void http_resp_next(http_resp_in *r)
{
    r->head.len = r->body.len = 0;
    r->nheaders = 0;
    r->status = 0;
    r->complete = r->too_big = false;
    r->error = NULL;
    llhttp_init(&r->parser, HTTP_RESPONSE, &resp_settings);
    r->parser.data = r;
}

void http_resp_free(http_resp_in *r)
{
    buf_free(&r->head);
    buf_free(&r->body);
}

http_event http_resp_feed(http_resp_in *r, const char *data, size_t len, size_t *used)
{
    *used = len;
    if (r->error)
        return HTTP_ERROR;
    if (r->complete) /* bytes after the answer: not ours to read */
        return *used = 0, HTTP_GOT_REQUEST;
    llhttp_errno_t e = llhttp_execute(&r->parser, data, len);
    if (e == HPE_OK)
        return HTTP_NEED_MORE;
    if ((e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) && r->complete) {
        const char *pos = llhttp_get_error_pos(&r->parser);
        *used = pos ? (size_t)(pos - data) : len;
        return HTTP_GOT_REQUEST;
    }
    if (!r->error) {
        const char *why = llhttp_get_error_reason(&r->parser);
        r->error = why && *why ? why : llhttp_errno_name(e);
    }
    return HTTP_ERROR;
}

http_event http_resp_finish(http_resp_in *r)
{
    if (r->complete)
        return HTTP_GOT_REQUEST;
    if (!r->error) {
        llhttp_finish(&r->parser); /* pauses on the end of an answer framed by the end */
        if (r->complete)
            return HTTP_GOT_REQUEST;
    }
    if (!r->error)
        r->error = "the connection closed before the answer was whole";
    return HTTP_ERROR;
}

bool http_resp_keep_alive(const http_resp_in *r)
{
    return r->status != 101 && llhttp_should_keep_alive(&r->parser);
}

const char *http_resp_header(const http_resp_in *r, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (int i = 0; i < r->nheaders; i++) {
        const size_t *o = r->hdr_off[i];
        if (o[1] - o[0] == nl && ascii_casecmp_n(r->head.p + o[0], name, nl) == 0) {
            if (len)
                *len = o[3] - o[2];
            return r->head.p + o[2];
        }
    }
    return NULL;
}
