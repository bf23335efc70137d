/*
 * err.h: the one error type of livedb.
 *
 * Every failure that can reach a client is an err_t: a code from the list
 * in docs/API.md, a message for a person, and optional JSON details. The
 * code decides the HTTP status in one place (err_status), so handlers never
 * pick status numbers for errors themselves.
 */
#ifndef LIVEDB_ERR_H
#define LIVEDB_ERR_H

#include <jansson.h>

typedef enum err_code {
    E_OK = 0,
    E_BAD_REQUEST,
    E_UNAUTHORIZED,
    E_FORBIDDEN,
    E_NOT_FOUND,
    E_METHOD_NOT_ALLOWED,
    E_CONFLICT,
    E_INVALID_TRANSITION,
    E_RESYNC_REQUIRED,
    E_PRECONDITION_FAILED,
    E_PAYLOAD_TOO_LARGE,
    E_HEADERS_TOO_LARGE,
    E_INVALID,
    E_RATE_LIMITED,
    E_UNAVAILABLE,
    E_STORAGE_FULL,
    E_INTERNAL,
    E__CORE, /* the apps' own codes come after (core/apps.h app_def.errors) */
} err_code;

typedef struct err {
    err_code code;
    char msg[240];
    json_t *details; /* owned; NULL when there is nothing to add */
} err_t;

/* Sets the error and returns -1, so that `return err_set(...)` reads well. */
int err_set(err_t *e, err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Takes ownership of details. */
void err_details(err_t *e, json_t *details);
void err_clear(err_t *e);
/* Moves src into dst (dst cleared first). */
void err_move(err_t *dst, err_t *src);

/* A code past the core ones, for an app's error (called by the app
 * registry, core/apps.c, once for each, before any is used). */
err_code err_add(const char *name, int status);

int err_status(err_code code);
const char *err_name(err_code code);

/* ------------------------------------------------------------------ the error body */

/* Appends {"code":"...","message":"..."} (with ,"details":... when there
 * are any): the one spelling of an error for clients, whether it goes out
 * as an HTTP body ({"error":BODY}), a realtime message or a function's
 * result. buf_t is util's. */
struct buf;
void err_body(struct buf *out, const err_t *e);

#endif
