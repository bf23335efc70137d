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
#include "hub.h"
#include "identity.h"
#include "respond.h"


typedef struct feed_sub feed_sub;
struct realtime;

typedef struct realtime_opts {
    int ping_seconds;       /* server ping interval; silent for 3x this: closed */
    size_t max_pending;     /* output bytes past which a live reader gets 4008 */
} realtime_opts;

typedef struct app {
    /* hub.c: who hears of commits and revocations, in order */
    hub_t hub;

    uv_loop_t *loop;
    store_t *store;
    feed_t *feed;
    server_t *server;
    bool shutting_down;

    /* changes.c */
    feed_sub *streams; /* event streams */
    feed_sub *polls;   /* long polls */
    uv_timer_t ping_timer;

    /* health.c */
    struct health_state *health;

    /* realtime.c */
    struct realtime *rt;

    /* identity.c: accounts and sessions; auth.c: logins */
    identity_t *ident;
    struct auth_state *auth;

    /* backups.c */
    struct backups_state *backups;

    /* snapshot.c (--snapshot-dir) */
    struct snapshots *snapshots;
    /* CORS and WebSocket origins besides the server's own (--allow-origin) */
    const char *const *origins;
    int norigins;
} app_t;

void api_init(app_t *app);
/* Ends long polls and event streams; the store drains after this. */
void api_shutdown(app_t *app);
void api_handle(void *app, conn_t *c, http_req *req);

/* Who is calling (identity_resolve on the app's cache): 401 without a
 * valid token; _optional lets a request without one be anonymous. */
int api_auth(app_t *app, conn_t *c, http_req *req, actor_t *who, err_t *err);
int api_auth_optional(app_t *app, conn_t *c, http_req *req, actor_t *who, err_t *err);
/* Who is calling and the request's body, a JSON object (the caller's);
 * else the answer is sent (401, 400) and NULL. */
json_t *api_auth_body(app_t *app, conn_t *c, http_req *req, actor_t *who);
/* An admin's request: 0; else the answer is sent (401, or 403 saying
 * refusal) and -1. */
int api_admin(app_t *app, conn_t *c, http_req *req, actor_t *who, const char *refusal);

/* Handlers, by resource. */
void docs_get(app_t *app, conn_t *c, http_req *req, const char *col, const char *id);
void docs_write(app_t *app, conn_t *c, http_req *req, const char *col, const char *id);
void docs_list(app_t *app, conn_t *c, http_req *req, const char *col);
void docs_batch(app_t *app, conn_t *c, http_req *req);
void changes_get(app_t *app, conn_t *c, http_req *req);
void changes_init(app_t *app);
void changes_shutdown(app_t *app);
/* Ends the event streams and long polls of an account (or a session). */
void changes_revoke(app_t *app, const actor_t *who);
void health_get(app_t *app, conn_t *c, http_req *req);
void metrics_get(app_t *app, conn_t *c, http_req *req);
void health_init(app_t *app);
void health_shutdown(app_t *app);
void realtime_init(app_t *app, const realtime_opts *o);
void realtime_upgrade(app_t *app, conn_t *c, http_req *req);
/* Closes the realtime connections of an account (or one session). */
void realtime_revoke(app_t *app, const actor_t *who);
/* Closes every WebSocket with 1001; realtime_free after the loop ends. */
void realtime_shutdown(app_t *app);
void realtime_free(app_t *app);

/* auth.c: login (throttled, argon2id on the thread pool), logout, me,
 * the accounts API; identity.h is who a request is. */
int auth_init(app_t *app, int64_t session_ttl_ms, err_t *err);
void auth_free(app_t *app);
void auth_login(app_t *app, conn_t *c, http_req *req);
void auth_logout(app_t *app, conn_t *c, http_req *req);
void auth_me(app_t *app, conn_t *c, http_req *req);
void auth_accounts(app_t *app, conn_t *c, http_req *req, const char *id);
/* argon2id of a password (the command line's `account add`). */
int auth_hash_password(const char *password, char out[128]);
/* What who (an account, or with who->session one session) may see has
 * changed or ended: open realtime connections and event streams of it
 * are closed, and its clients come back with what they may now see. */
void auth_revoked(app_t *app, const actor_t *who);
/* Several nodes: true when the request's token must first be looked up in
 * the database (a session another node made); again (api_handle) then runs
 * with the request once it is known. */
typedef void (*auth_again_fn)(app_t *app, conn_t *c, http_req *req);
bool auth_pending(app_t *app, conn_t *c, http_req *req, auth_again_fn again);

/* activity.c */
void activity_get(app_t *app, conn_t *c, http_req *req);
void activity_post(app_t *app, conn_t *c, http_req *req);
void activity_export(app_t *app, conn_t *c, http_req *req);
void activity_free_state(void);
/* CSV (RFC 4180) of activity entries: the header, and one entry. */
void activity_csv_header(buf_t *b);
void activity_csv_row(buf_t *b, const char *entry, size_t len, const char *hash);

/* web.c: the pages; false when the path names none */
bool web_serve(app_t *app, conn_t *c, http_req *req);
void web_set_root(const char *dir);

/* functions.c: POST /v1/fn/NAME, and `call` over the WebSocket */
void fn_http(app_t *app, conn_t *c, http_req *req, const char *name);
/* Runs fn NAME for who with args (taken); done(ctx, ok, text, len) gets
 * the result object or the error object ({"code","message","details"}). */
void fn_call(app_t *app, const actor_t *who, const char *name, json_t *args,
             void (*done)(void *ctx, err_code code, const char *text, size_t len), void *ctx);

/* admin.c */
void admin_export(app_t *app, conn_t *c, http_req *req);
void admin_import(app_t *app, conn_t *c, http_req *req);

/* backups.c: the timer (interval 0: none), the admin endpoints, and what
 * health and metrics say. backups_health appends the check's JSON and
 * answers whether it is healthy. */
void backups_init(app_t *app, int interval_s, int keep, int max_age_s);
void backups_shutdown(app_t *app);
void backups_http(app_t *app, conn_t *c, http_req *req, const char *name, const char *action);
bool backups_health(app_t *app, buf_t *out, bool detail);
void backups_metrics(app_t *app, buf_t *out);

/* snapshot.c: --snapshot-dir (dir NULL: off). */
int snapshot_init(app_t *app, const char *dir, err_t *err);
void snapshot_shutdown(app_t *app);
void snapshot_free(app_t *app);

#endif
