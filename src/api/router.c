/*
 * router.c: which handler answers a request, and the checks every request
 * passes on its way there (identity, path shape, query string).
 *
 *   GET    /v1/health                    health.c
 *   GET    /metrics                      health.c
 *   GET    /v1/changes                   changes.c
 *   GET    /v1/realtime (WebSocket)      realtime.c
 *   POST   /v1/batch                     docs.c
 *   GET    /v1/c/COL          POST       docs.c
 *   GET    /v1/c/COL/ID       PUT PATCH DELETE   docs.c
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/doc.h"

/* ------------------------------------------------------------------ CORS */

/* A browser page from an origin in --allow-origin may call the API: its
 * origin is named back exactly (never `*`, never reflected unchecked, never
 * `null`). Tokens travel in the Authorization header, so no credentials
 * (cookies) are allowed. Same-origin pages need none of this. */
static bool cors_origin(app_t *app, const http_req *req, const char **origin, size_t *n)
{
    *origin = http_header_get(req, "origin", n);
    if (!*origin)
        return false;
    for (int i = 0; i < app->norigins; i++)
        if (strlen(app->origins[i]) == *n && memcmp(app->origins[i], *origin, *n) == 0)
            return true;
    return false;
}

static bool cors(app_t *app, conn_t *c, http_req *req)
{
    const char *o;
    size_t n;
    bool allowed = cors_origin(app, req, &o, &n);
    if (req->method == HTTP_OPTIONS) {
        if (o && !allowed) {
            respond_simple(c, E_FORBIDDEN, "this origin may not call the API (--allow-origin)");
            return true;
        }
        buf_t h = {0};
        if (allowed)
            buf_printf(&h, "Access-Control-Allow-Origin: %.*s\r\nVary: Origin\r\n"
                           "Access-Control-Allow-Methods: GET, POST, PUT, PATCH, DELETE\r\n"
                           "Access-Control-Allow-Headers: Authorization, Content-Type, If-Match,"
                           " Idempotency-Key, Last-Event-ID\r\n"
                           "Access-Control-Max-Age: 600\r\n",
                       (int)n, o);
        buf_puts(&h, "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n");
        conn_respond(c, 204, NULL, h.p, NULL, 0);
        buf_free(&h);
        return true;
    }
    if (allowed) {
        buf_t h = {0};
        buf_printf(&h, "Access-Control-Allow-Origin: %.*s\r\nVary: Origin\r\n"
                       "Access-Control-Expose-Headers: ETag, Location, Retry-After\r\n",
                   (int)n, o);
        conn_set_headers(c, h.p);
        buf_free(&h);
    }
    return false;
}

/* ------------------------------------------------------------------ routing */

/* Splits path into at most 5 decoded segments. -1 on bad encoding. */
static int split_path(const http_req *req, char seg[5][DOC_ID_MAX * 3 + 1], int *nseg)
{
    *nseg = 0;
    const char *s = req->path, *end = req->path + req->path_len;
    if (s == end || *s != '/')
        return -1;
    s++;
    buf_t tmp = {0};
    while (s <= end) {
        const char *slash = memchr(s, '/', (size_t)(end - s));
        const char *stop = slash ? slash : end;
        if (*nseg == 5) { /* deeper than any route: not found, not malformed */
            *nseg = 6;
            break;
        }
        if ((size_t)(stop - s) > DOC_ID_MAX * 3) {
            buf_free(&tmp);
            return -1;
        }
        if (http_unescape(s, (size_t)(stop - s), false, &tmp)) {
            buf_free(&tmp);
            return -1;
        }
        memcpy(seg[*nseg], tmp.p, tmp.len + 1);
        (*nseg)++;
        if (!slash)
            break;
        s = slash + 1;
    }
    buf_free(&tmp);
    return 0;
}

/* ------------------------------------------------------------------ routes */

typedef void (*handler_fn)(app_t *app, conn_t *c, http_req *req);

/* The paths that one method answers: /v1/DIR, or /v1/DIR/NAME. */
typedef struct fixed_route {
    const char *dir, *name;
    route_id route;
    int method; /* HTTP_GET (HEAD too) or HTTP_POST */
    handler_fn fn;
} fixed_route;

static const fixed_route fixed_routes[] = {
    {"health", NULL, ROUTE_HEALTH, HTTP_GET, health_get},
    {"changes", NULL, ROUTE_CHANGES, HTTP_GET, changes_get},
    {"realtime", NULL, ROUTE_REALTIME, HTTP_GET, realtime_upgrade},
    {"batch", NULL, ROUTE_BATCH, HTTP_POST, docs_batch},
    {"auth", "login", ROUTE_AUTH, HTTP_POST, auth_login},
    {"auth", "logout", ROUTE_AUTH, HTTP_POST, auth_logout},
    {"auth", "me", ROUTE_AUTH, HTTP_GET, auth_me},
    {"activity", "export", ROUTE_ACTIVITY, HTTP_GET, activity_export},
    {"admin", "import", ROUTE_ADMIN, HTTP_POST, admin_import},
    {"admin", "export", ROUTE_ADMIN, HTTP_GET, admin_export},
};

/* Answers the request when its path is one of fixed_routes. */
static bool route_fixed(app_t *app, conn_t *c, http_req *req, char (*seg)[DOC_ID_MAX * 3 + 1],
                        int n, int m)
{
    for (size_t i = 0; i < sizeof fixed_routes / sizeof *fixed_routes; i++) {
        const fixed_route *r = &fixed_routes[i];
        if (n != (r->name ? 3 : 2) || strcmp(seg[1], r->dir) != 0 ||
            (r->name && strcmp(seg[2], r->name) != 0))
            continue;
        conn_set_route(c, r->route);
        if (m != r->method)
            respond_method(c, r->method == HTTP_GET ? "GET" : "POST");
        else
            r->fn(app, c, req);
        return true;
    }
    return false;
}

static void route_again(app_t *app, conn_t *c, http_req *req) { api_handle(app, c, req); }

void api_handle(void *appv, conn_t *c, http_req *req)
{
    app_t *app = appv;
    char seg[5][DOC_ID_MAX * 3 + 1];
    int n;
    int m = req->method == HTTP_HEAD ? HTTP_GET : req->method;
    if (split_path(req, seg, &n) != 0) {
        respond_simple(c, E_BAD_REQUEST, "bad path: bad percent-encoding or a segment too long");
        return;
    }
    if (cors(app, c, req))
        return;
    if (n == 1 && strcmp(seg[0], "metrics") == 0) {
        conn_set_route(c, ROUTE_METRICS);
        if (m != HTTP_GET)
            return respond_method(c, "GET");
        return metrics_get(app, c, req);
    }
    if (n < 2 || strcmp(seg[0], "v1") != 0) {
        if (web_serve(app, c, req))
            return;
        respond_simple(c, E_NOT_FOUND, "no such path; the API is under /v1/");
        return;
    }
    if (app->shutting_down) {
        respond_simple(c, E_UNAVAILABLE, "the server is shutting down");
        return;
    }
    if (auth_pending(app, c, req, route_again))
        return;
    if (route_fixed(app, c, req, seg, n, m))
        return;
    if (n == 3 && strcmp(seg[1], "auth") == 0) {
        conn_set_route(c, ROUTE_AUTH);
        return respond_simple(c, E_NOT_FOUND, "no such path (login, logout, me)");
    }
    if ((n == 2 || n == 3) && strcmp(seg[1], "accounts") == 0) {
        conn_set_route(c, ROUTE_ACCOUNTS);
        err_t e = {0};
        if (n == 3 && doc_check_id(seg[2], strlen(seg[2]), &e))
            return respond_err(c, &e);
        return auth_accounts(app, c, req, n == 3 ? seg[2] : NULL);
    }
    if ((n == 2 || n == 3) && strcmp(seg[1], "activity") == 0) {
        conn_set_route(c, ROUTE_ACTIVITY);
        if (n == 3) /* not export: that is a fixed route */
            return respond_simple(c, E_NOT_FOUND, "no such path (/v1/activity/export)");
        if (m == HTTP_GET)
            return activity_get(app, c, req);
        if (m == HTTP_POST)
            return activity_post(app, c, req);
        return respond_method(c, "GET, POST");
    }
    if (n == 3 && strcmp(seg[1], "fn") == 0) {
        conn_set_route(c, ROUTE_FN);
        if (m != HTTP_POST)
            return respond_method(c, "POST");
        return fn_http(app, c, req, seg[2]);
    }
    if (n >= 3 && strcmp(seg[1], "admin") == 0 && strcmp(seg[2], "backups") == 0) {
        conn_set_route(c, ROUTE_ADMIN);
        if (n > 5)
            return respond_simple(c, E_NOT_FOUND, "no such path");
        return backups_http(app, c, req, n >= 4 ? seg[3] : NULL, n == 5 ? seg[4] : NULL);
    }
    if ((n == 3 || n == 4) && strcmp(seg[1], "c") == 0) {
        err_t e = {0};
        if (doc_check_collection(seg[2], strlen(seg[2]), &e)) {
            respond_err(c, &e);
            return;
        }
        if (n == 3) {
            if (m == HTTP_GET) {
                conn_set_route(c, ROUTE_LIST);
                return docs_list(app, c, req, seg[2]);
            }
            if (m == HTTP_POST) {
                conn_set_route(c, ROUTE_CREATE);
                return docs_write(app, c, req, seg[2], NULL);
            }
            return respond_method(c, "GET, POST");
        }
        if (doc_check_id(seg[3], strlen(seg[3]), &e)) {
            respond_err(c, &e);
            return;
        }
        if (m == HTTP_GET) {
            conn_set_route(c, ROUTE_DOC_GET);
            return docs_get(app, c, req, seg[2], seg[3]);
        }
        route_id r = m == HTTP_PUT     ? ROUTE_DOC_PUT
                     : m == HTTP_PATCH ? ROUTE_DOC_PATCH
                     : m == HTTP_DELETE ? ROUTE_DOC_DELETE
                                        : ROUTE_NONE;
        if (r == ROUTE_NONE)
            return respond_method(c, "GET, PUT, PATCH, DELETE");
        conn_set_route(c, r);
        return docs_write(app, c, req, seg[2], seg[3]);
    }
    respond_simple(c, E_NOT_FOUND, "no such path");
}

void api_init(app_t *app)
{
    app->hub.app = app;
    store_set_commit_cb(app->store, hub_commit, &app->hub);
    changes_init(app);
    health_init(app);
}

void api_shutdown(app_t *app)
{
    app->shutting_down = true;
    if (app->rt)
        realtime_shutdown(app);
    changes_shutdown(app);
    health_shutdown(app);
    backups_shutdown(app);
    snapshot_shutdown(app);
}
