/*
 * err.c: error codes to names and HTTP statuses, decided once here.
 */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"

static const struct {
    int status;
    const char *name;
} table[] = {
    [E_OK] = {200, "ok"},
    [E_BAD_REQUEST] = {400, "bad_request"},
    [E_UNAUTHORIZED] = {401, "unauthorized"},
    [E_FORBIDDEN] = {403, "forbidden"},
    [E_NOT_FOUND] = {404, "not_found"},
    [E_METHOD_NOT_ALLOWED] = {405, "method_not_allowed"},
    [E_CONFLICT] = {409, "conflict"},
    [E_INVALID_TRANSITION] = {409, "invalid_transition"},
    [E_RESYNC_REQUIRED] = {410, "resync_required"},
    [E_PRECONDITION_FAILED] = {412, "precondition_failed"},
    [E_PAYLOAD_TOO_LARGE] = {413, "payload_too_large"},
    [E_HEADERS_TOO_LARGE] = {431, "headers_too_large"},
    [E_INVALID] = {422, "invalid"},
    [E_RATE_LIMITED] = {429, "rate_limited"},
    [E_UNAVAILABLE] = {503, "unavailable"},
    [E_STORAGE_FULL] = {507, "storage_full"},
    [E_INTERNAL] = {500, "internal"},
};

/* The apps' codes, E__CORE onwards, in the order the registry added them. */
#define ERR_ADDED_MAX 64
static struct {
    int status;
    const char *name;
} added[ERR_ADDED_MAX];
static int nadded;

err_code err_add(const char *name, int status)
{
    if (nadded == ERR_ADDED_MAX)
        return E_INTERNAL;
    added[nadded].status = status;
    added[nadded].name = name;
    return (err_code)(E__CORE + nadded++);
}

int err_set(err_t *e, err_code code, const char *fmt, ...)
{
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

void err_details(err_t *e, json_t *details)
{
    json_decref(e->details);
    e->details = details;
}

void err_clear(err_t *e)
{
    json_decref(e->details);
    memset(e, 0, sizeof *e);
}

void err_move(err_t *dst, err_t *src)
{
    err_clear(dst);
    *dst = *src;
    memset(src, 0, sizeof *src);
}

int err_status(err_code code)
{
    return code < E__CORE ? table[code].status : added[code - E__CORE].status;
}

const char *err_name(err_code code)
{
    return code < E__CORE ? table[code].name : added[code - E__CORE].name;
}

/* ------------------------------------------------------------------ the error body */

void err_body(buf_t *out, const err_t *e)
{
    buf_puts(out, "{\"code\":\"");
    buf_puts(out, err_name(e->code));
    buf_puts(out, "\",\"message\":");
    buf_put_json_str(out, e->msg, strlen(e->msg));
    if (e->details) {
        char *d = json_dumps(e->details, JSON_COMPACT | JSON_ENCODE_ANY);
        buf_puts(out, ",\"details\":");
        buf_puts(out, d);
        free(d);
    }
    buf_putc(out, '}');
}
