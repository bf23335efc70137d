/*
 * http.h: one HTTP/1.1 request at a time, out of a byte stream (and, for
 * livedb's own clients, one answer: http_resp_in).
 *
 * A thin, bounded layer over llhttp, kept free of sockets so that the
 * fuzzer can drive it directly. It enforces the limits every request
 * meets before any handler sees it: a 16 KiB header section (431), a 1 MiB
 * body decided from Content-Length before the body is read (413), CRLF
 * line endings only, and llhttp's strict framing rules (Content-Length
 * with Transfer-Encoding, two Content-Lengths, bad chunk sizes: 400).
 */
#ifndef LIVEDB_HTTP_H
#define LIVEDB_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "../util/util.h"

#define HTTP_MAX_HEAD (16 * 1024)
#define HTTP_MAX_BODY (1024 * 1024)
#define HTTP_MAX_HEADERS 100

typedef struct http_header {
    const char *name, *value;
    size_t name_len, value_len;
} http_header;

typedef struct http_req {
    int method;           /* llhttp_method_t */
    const char *path;     /* raw path, before '?' */
    size_t path_len;
    const char *query;    /* raw query after '?', or NULL */
    size_t query_len;
    http_header headers[HTTP_MAX_HEADERS];
    int nheaders;
    const char *body;
    size_t body_len;
    bool keep_alive;
    bool expect_continue;
} http_req;

typedef enum http_event {
    HTTP_NEED_MORE, /* all bytes consumed, no whole request yet */
    HTTP_HEAD_DONE, /* headers complete (body may follow); feed again */
    HTTP_GOT_REQUEST, /* a whole request is ready in in->req */
    HTTP_ERROR,     /* malformed or over a limit: answer in->status, close */
} http_event;

typedef struct http_in {
    llhttp_t parser;
    http_req req;
    buf_t head;          /* url and header bytes of the current request */
    buf_t body;
    int pause_reason;
    bool in_head;
    bool in_value;       /* the last header bytes were of a value */
    char prev;           /* previous head byte, for the bare-LF check */
    int status;          /* with HTTP_ERROR: 400, 413 or 431 */
    const char *reason;  /* with HTTP_ERROR: for the answer */
    size_t hdr_off[HTTP_MAX_HEADERS][4]; /* name/value offsets into head */
    size_t url_len;
    size_t head_bytes;   /* every byte of this request's head, skipped or not */
    size_t trailer_len;  /* bytes of trailer fields (counted, then dropped) */
    bool head_started;   /* some bytes of a request have arrived */
    /* Chunk framing, checked by us: llhttp 8 skips what follows chunk
     * data up to the next LF instead of requiring CRLF there. */
    uint64_t chunk_left;
    int crlf_seen;       /* of the CRLF after chunk data; 2 = none pending */
    const char *feed_end;
} http_in;

void http_in_init(http_in *in);
void http_in_free(http_in *in);
/* Feeds bytes. Returns how many were consumed; *ev says what happened.
 * After HTTP_GOT_REQUEST, handle in->req, then call http_in_next before
 * feeding the rest. */
size_t http_in_feed(http_in *in, const char *data, size_t len, http_event *ev);
void http_in_next(http_in *in);

/* One answer (a client's side: livedb's command line, bench/rtload).
 * Feed it bytes until HTTP_GOT_REQUEST (the answer is whole: status,
 * headers, body) or HTTP_ERROR (error says what); *used is how much of
 * the input belonged to the answer: what follows a 101 is the upgraded
 * protocol's. http_resp_next before the next answer. */
typedef struct http_resp_in {
    llhttp_t parser;
    int status;
    buf_t body;
    size_t body_max;
    buf_t head;                          /* header names and values */
    size_t hdr_off[HTTP_MAX_HEADERS][4]; /* name/value offsets into head */
    int nheaders;
    bool in_value;
    bool complete;
    bool too_big;                        /* the body went over body_max */
    const char *error;
} http_resp_in;

void http_resp_init(http_resp_in *r, size_t body_max);
void http_resp_next(http_resp_in *r);
void http_resp_free(http_resp_in *r);
http_event http_resp_feed(http_resp_in *r, const char *data, size_t len, size_t *used);
/* The connection ended: an answer framed by its end is whole now. */
http_event http_resp_finish(http_resp_in *r);
bool http_resp_keep_alive(const http_resp_in *r);
const char *http_resp_header(const http_resp_in *r, const char *name, size_t *len);

/* Header lookup, case-insensitive; NULL when absent. */
const char *http_header_get(const http_req *r, const char *name, size_t *len);

const char *http_status_text(int status);

/* Percent-decoding (and '+' as space when plus is true) into out; -1 on
 * a bad escape or an encoded NUL. */
int http_unescape(const char *s, size_t n, bool plus, buf_t *out);

#endif
