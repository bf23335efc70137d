/*
 * http.c: see http.h.
 *
 * llhttp calls back with pieces of the URL and headers as they arrive; we
 * copy them into one bounded buffer (in->head) and record offsets, then
 * turn the offsets into pointers once the header section is whole. The
 * parser is paused twice per request: at the end of the headers (to check
 * line endings and decide on the body) and at the end of the message (so
 * that one request is handled before the next is parsed).
 */
#include "http.h"

#include <string.h>

enum { PAUSE_NONE, PAUSE_HEADERS, PAUSE_MESSAGE };

static http_in *in_of(llhttp_t *p) { return p->data; }

static int fail(http_in *in, int status, const char *reason)
{
    in->status = status;
    in->reason = reason;
    return -1;
}

static int head_append(http_in *in, const char *at, size_t n)
{
    if (in->head.len + n > HTTP_MAX_HEAD)
        return fail(in, 431, "the header section is over 16 KiB");
    buf_put(&in->head, at, n);
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    http_in *in = in_of(p);
    in->head.len = 0;
    in->body.len = 0;
    in->req.nheaders = 0;
    in->url_len = 0;
    in->in_value = true; /* so that the first field opens a header */
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    http_in *in = in_of(p);
    in->url_len += n;
    return head_append(in, at, n);
}

/* Trailer fields (after the last chunk) come through the header callbacks
 * too. They are counted against the same limit and dropped: appending them
 * to in->head could move the buffer under the request's pointers. */
static int trailer(http_in *in, size_t n)
{
    in->trailer_len += n;
    if (in->trailer_len > HTTP_MAX_HEAD)
        return fail(in, 431, "the trailer section is over 16 KiB");
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    http_in *in = in_of(p);
    if (!in->in_head)
        return trailer(in, n);
    if (in->in_value) {
        if (in->req.nheaders == HTTP_MAX_HEADERS)
            return fail(in, 431, "more than 100 header fields");
        size_t *o = in->hdr_off[in->req.nheaders++];
        o[0] = in->head.len;
        o[1] = o[2] = o[3] = 0;
        in->in_value = false;
    }
    in->hdr_off[in->req.nheaders - 1][1] += n;
    return head_append(in, at, n);
}

static int on_header_field_complete(llhttp_t *p)
{
    http_in *in = in_of(p);
    if (!in->in_head)
        return 0;
    size_t *o = in->hdr_off[in->req.nheaders - 1];
    o[2] = in->head.len;
    o[3] = 0;
    in->in_value = true;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    http_in *in = in_of(p);
    if (!in->in_head)
        return trailer(in, n);
    in->hdr_off[in->req.nheaders - 1][3] += n;
    return head_append(in, at, n);
}

/* RFC 9110 token characters: what a header name may hold. */
static bool is_token(const char *s, size_t n)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c && strchr(extra, c))))
            return false;
    }
    return true;
}

static int on_headers_complete(llhttp_t *p)
{
    http_in *in = in_of(p);
    http_req *r = &in->req;
    if (llhttp_get_http_major(p) != 1)
        return fail(in, 400, "only HTTP/1.0 and HTTP/1.1 are spoken here");
    const char *base = in->head.p ? in->head.p : "";
    for (int i = 0; i < r->nheaders; i++) {
        r->headers[i].name = base + in->hdr_off[i][0];
        r->headers[i].name_len = in->hdr_off[i][1];
        r->headers[i].value = base + in->hdr_off[i][2];
        r->headers[i].value_len = in->hdr_off[i][3];
        if (!is_token(r->headers[i].name, r->headers[i].name_len))
            return fail(in, 400, "a header name holds a character it may not (a space before ':'?)");
    }
    const char *url = base;
    const char *q = memchr(url, '?', in->url_len);
    r->path = url;
    r->path_len = q ? (size_t)(q - url) : in->url_len;
    r->query = q ? q + 1 : NULL;
    r->query_len = q ? in->url_len - r->path_len - 1 : 0;
    r->method = llhttp_get_method(p);
    r->keep_alive = llhttp_should_keep_alive(p);
    size_t n;
    const char *expect = http_header_get(r, "expect", &n);
    r->expect_continue = expect && n == 12 && ascii_casecmp_n(expect, "100-continue", 12) == 0;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > HTTP_MAX_BODY)
        return fail(in, 413, "the body is over 1 MiB");
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0)
        buf_reserve(&in->body, (size_t)p->content_length);
    in->pause_reason = PAUSE_HEADERS;
    return HPE_PAUSED;
}

/* Checks the CRLF after chunk data, from p up to the end of this feed;
 * what is not there yet is checked at the start of the next feed. */
static int check_crlf(http_in *in, const char *p)
{
    for (; in->crlf_seen < 2 && p < in->feed_end; p++, in->crlf_seen++)
        if (*p != "\r\n"[in->crlf_seen])
            return fail(in, 400, "chunk data must be followed by CRLF");
    return 0;
}

static int on_chunk_header(llhttp_t *p)
{
    http_in *in = in_of(p);
    in->chunk_left = p->content_length;
    in->crlf_seen = 2;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    http_in *in = in_of(p);
    if (in->body.len + n > HTTP_MAX_BODY)
        return fail(in, 413, "the body is over 1 MiB");
    buf_put(&in->body, at, n);
    if (p->flags & F_CHUNKED) {
        in->chunk_left -= n < in->chunk_left ? n : in->chunk_left;
        if (in->chunk_left == 0) {
            in->crlf_seen = 0;
            return check_crlf(in, at + n);
        }
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    http_in *in = in_of(p);
    in->req.body = in->body.p ? in->body.p : "";
    in->req.body_len = in->body.len;
    in->pause_reason = PAUSE_MESSAGE;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_header = on_chunk_header,
    .on_message_complete = on_message_complete,
};

void http_in_init(http_in *in)
{
    memset(in, 0, sizeof *in);
    llhttp_init(&in->parser, HTTP_REQUEST, &settings);
    in->parser.data = in;
    in->in_head = true;
    in->crlf_seen = 2;
}

void http_in_free(http_in *in)
{
    buf_free(&in->head);
    buf_free(&in->body);
}

/* Header lines end in CRLF; a bare LF is a smuggling shape (a proxy in
 * front may split lines differently than we do), so it is refused. */
static bool bare_lf(http_in *in, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n' && in->prev != '\r')
            return true;
        in->prev = p[i];
    }
    return false;
}

size_t http_in_feed(http_in *in, const char *data, size_t len, http_event *ev)
{
    if (in->status) {
        *ev = HTTP_ERROR;
        return 0;
    }
    if (len)
        in->head_started = true;
    in->feed_end = data + len;
    if (in->crlf_seen < 2 && check_crlf(in, data)) {
        *ev = HTTP_ERROR;
        return 0;
    }
    in->pause_reason = PAUSE_NONE;
    llhttp_errno_t e = llhttp_execute(&in->parser, data, len);
    size_t used = len;
    if (e == HPE_PAUSED)
        used = (size_t)(llhttp_get_error_pos(&in->parser) - data);
    if (in->in_head && bare_lf(in, data, used)) {
        fail(in, 400, "header lines must end in CRLF");
        *ev = HTTP_ERROR;
        return used;
    }
    /* The limit is on every byte of the header section, including the
     * whitespace llhttp skips without a callback. */
    if (in->in_head && (in->head_bytes += used) > HTTP_MAX_HEAD) {
        if (!in->status)
            fail(in, 431, "the header section is over 16 KiB");
        *ev = HTTP_ERROR;
        return used;
    }
    if (e == HPE_OK) {
        *ev = HTTP_NEED_MORE;
        return len;
    }
    if (e == HPE_PAUSED && in->pause_reason == PAUSE_HEADERS) {
        in->in_head = false;
        llhttp_resume(&in->parser);
        *ev = HTTP_HEAD_DONE;
        return used;
    }
    if (e == HPE_PAUSED && in->pause_reason == PAUSE_MESSAGE) {
        *ev = HTTP_GOT_REQUEST;
        return used;
    }
    if (!in->status)
        fail(in, 400, llhttp_get_error_reason(&in->parser)
                          ? llhttp_get_error_reason(&in->parser)
                          : "malformed HTTP request");
    *ev = HTTP_ERROR;
    return used;
}

void http_in_next(http_in *in)
{
    llhttp_resume(&in->parser);
    in->in_head = true;
    in->prev = 0;
    in->head_started = false;
    in->crlf_seen = 2;
    in->head_bytes = 0;
    in->trailer_len = 0;
    in->head.len = 0;
    in->body.len = 0;
    /* A large body buffer is not kept for the next request. */
    if (in->body.cap > 64 * 1024)
        buf_free(&in->body);
}

const char *http_header_get(const http_req *r, const char *name, size_t *len)
{
    size_t n = strlen(name);
    for (int i = 0; i < r->nheaders; i++) {
        const http_header *h = &r->headers[i];
        if (h->name_len == n && ascii_casecmp_n(h->name, name, n) == 0) {
            if (len)
                *len = h->value_len;
            return h->value;
        }
    }
    return NULL;
}

const char *http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 507: return "Insufficient Storage";
    default: return "Unknown";
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int http_unescape(const char *s, size_t n, bool plus, buf_t *out)
{
    out->len = 0;
    buf_reserve(out, n);
    out->p[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus) {
            c = ' ';
        }
        buf_putc(out, c);
    }
    return 0;
}
