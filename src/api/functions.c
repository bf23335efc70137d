/*
 * functions.c: server functions, over HTTP and the WebSocket.
 *
 *   POST /v1/fn/NAME   body: the arguments (an object) -> the result
 *   {"t":"call","id":"r1","fn":"NAME","args":{...}}  -> {"t":"result",...}
 *
 * The functions are the apps' (apps/APP/functions.c); only those of the
 * apps served can be called. Each runs as one writer job (store.h: WJ_FN):
 * inside the group's transaction, in its own savepoint, serialised with
 * every other write, so a function's checks hold until it commits.
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/apps.h"
#include "../core/doc.h"
#include "fn.h"

/* The function called name of a served app (core/apps.h registry). */
static const fn_def *find(const char *name)
{
    for (size_t t = 0; apps_builtin[t]; t++)
        for (const fn_def *d = apps_builtin[t]->functions; d && d->name; d++)
            if (strcmp(d->name, name) == 0 && apps_has(apps_builtin[t]->name))
                return d;
    return NULL;
}

typedef struct call {
    void (*done)(void *ctx, err_code code, const char *text, size_t len);
    void *ctx;
} call;

static void on_called(wjob *job)
{
    call *k = job->ctx;
    err_t *e = job->err.code ? &job->err : &job->fn_err;
    if (e->code) {
        buf_t b = {0};
        err_body(&b, e);
        k->done(k->ctx, e->code, b.p, b.len);
        buf_free(&b);
    } else {
        k->done(k->ctx, E_OK, job->answer.p ? job->answer.p : "{}", job->answer.len);
    }
    free(k);
    wjob_free(job);
}

void fn_call(app_t *app, const actor_t *who, const char *name, json_t *args,
             void (*done)(void *ctx, err_code code, const char *text, size_t len), void *ctx)
{
    const fn_def *d = find(name);
    if (!d) {
        json_decref(args);
        err_t e = {0};
        err_set(&e, E_NOT_FOUND, "no server function %.64s", name);
        buf_t b = {0};
        err_body(&b, &e);
        done(ctx, E_NOT_FOUND, b.p, b.len);
        buf_free(&b);
        return;
    }
    wjob *job = wjob_new(WJ_FN, 0);
    job->actor = *who;
    job->fn = d->impl;
    snprintf(job->fn_name, sizeof job->fn_name, "%s", name);
    job->fn_args = args;
    call *k = xmalloc(sizeof *k);
    k->done = done;
    k->ctx = ctx;
    job->done = on_called;
    job->ctx = k;
    store_submit(app->store, job);
}

/* ------------------------------------------------------------------ HTTP */

static void on_http_done(void *ctx, err_code code, const char *text, size_t len)
{
    conn_t *c = ctx;
    if (conn_open(c)) {
        if (code == E_OK) {
            conn_respond(c, 200, "application/json", NULL, text, len);
        } else {
            /* {"code",...} -> {"error":{"code",...}} with the code's status. */
            buf_t b = {0};
            buf_puts(&b, "{\"error\":");
            buf_put(&b, text, len);
            buf_putc(&b, '}');
            conn_respond_buf(c, err_status(code), "application/json", NULL, &b);
        }
    }
    conn_unref(c);
}

void fn_http(app_t *app, conn_t *c, http_req *req, const char *name)
{
    err_t e = {0};
    actor_t who;
    if (api_auth(app, c, req, &who, &e))
        return respond_err(c, &e);
    json_t *args;
    if (req->body_len == 0) {
        args = json_object();
    } else if (!(args = doc_parse_object(req->body, req->body_len, &e))) {
        return respond_err(c, &e);
    }
    fn_call(app, &who, name, args, on_http_done, conn_ref(c));
}
