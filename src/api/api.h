/*
 * api.h: the HTTP API: routing and the state the handlers share.
 *
 * Each resource has its own file (docs.c, changes.c, health.c); router.c
 * matches a request to one of them. Handlers run on the loop thread; those
 * that need the disk hand a job to the store and answer from its callback.
 */
#ifndef LIVEDB_API_H
#define LIVEDB_API_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "../core/err.h"
#include "../core/feed.h"
#include "../net/server.h"
#include "../store/store.h"

/* Who is calling. Until accounts exist every caller is the anonymous
 * admin; this is where the identity from the token will go, and
 * api_allowed is where every access check is made. */
typedef struct auth {
    const char *account; /* "" for anonymous */
    const char *role;
} auth_t;

typedef enum access { ACCESS_READ, ACCESS_CREATE, ACCESS_UPDATE, ACCESS_DELETE } access_t;

typedef struct sse_stream sse_stream;
typedef struct long_poll long_poll;
struct realtime;

typedef struct realtime_opts {
    int ping_seconds;       /* server ping interval; silent for 3x this: closed */
    size_t max_pending;     /* output bytes past which a live reader gets 4008 */
    const char *const *origins; /* --allow-origin values */
    int norigins;
} realtime_opts;

typedef struct app {
    uv_loop_t *loop;
    store_t *store;
    feed_t *feed;
    server_t *server;
    bool shutting_down;

    /* changes.c */
    sse_stream *streams;
    long_poll *polls;
    uv_timer_t ping_timer;

    /* health.c */
    struct health_state *health;

    /* realtime.c */
    struct realtime *rt;
} app_t;

/* Parsed query string: decoded key/value pairs. */
#define PARAMS_MAX 64
typedef struct params {
    int n;
    struct {
        char *key, *value;
        size_t value_len;
    } kv[PARAMS_MAX];
} params_t;

int params_parse(params_t *p, const http_req *r, err_t *err);
void params_free(params_t *p);

void api_init(app_t *app);
/* Ends long polls and event streams; the store drains after this. */
void api_shutdown(app_t *app);
void api_handle(void *app, conn_t *c, http_req *req);

bool api_allowed(const auth_t *who, access_t what, const char *col);
int api_auth(app_t *app, conn_t *c, http_req *req, auth_t *who, err_t *err);

/* Handlers, by resource. */
void docs_get(app_t *app, conn_t *c, http_req *req, const char *col, const char *id);
void docs_write(app_t *app, conn_t *c, http_req *req, const char *col, const char *id);
void docs_list(app_t *app, conn_t *c, http_req *req, const char *col);
void docs_batch(app_t *app, conn_t *c, http_req *req);
void changes_get(app_t *app, conn_t *c, http_req *req);
void changes_init(app_t *app);
void changes_shutdown(app_t *app);
void changes_on_commit(void *app, change_t *list);
void health_get(app_t *app, conn_t *c, http_req *req);
void metrics_get(app_t *app, conn_t *c, http_req *req);
void health_init(app_t *app);
void health_shutdown(app_t *app);
void realtime_init(app_t *app, const realtime_opts *o);
void realtime_upgrade(app_t *app, conn_t *c, http_req *req);
void realtime_on_commit(app_t *app, change_t *list);
/* Closes every WebSocket with 1001; realtime_free after the loop ends. */
void realtime_shutdown(app_t *app);
void realtime_free(app_t *app);

/* Shared helpers. */
void respond_err(conn_t *c, err_t *e);
void respond_simple(conn_t *c, err_code code, const char *msg);

#endif
