/*
 * activity.c: the activity log over HTTP.
 *
 *   GET  /v1/activity?since=&until=&actor=&action=&limit=&before=   (admin)
 *        -> {"entries":[...newest first...],"next":SEQ|null}
 *   GET  /v1/activity/export?format=csv|json[&since=]                (admin)
 *        -> every entry, oldest first, streamed
 *   POST /v1/activity {"action","data"}                              (any account)
 *        -> 204, the client's event logged under its account
 *
 * The writer adds the entries (with every write, login, logout...) in the
 * transaction of what they record, chained by hash (store/sqlite.c); this
 * file only reads them and takes the clients' events.
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/map.h"

#define CLIENT_DATA_MAX 4096
#define CLIENT_EVENTS_PER_MIN 120
#define EXPORT_PAGE 1000
#define EXPORT_PENDING_MAX (1024 * 1024)

/* Actions the server writes itself: a client may not pose as the server. */
static const char *const server_actions[] = {
    "create", "update", "delete", "login", "login_failed", "logout", "call", "recovered",
    "backup", "restore", "recovery", "account_add", "import",
};

/* ------------------------------------------------------------------ formats */

/* One CSV field (RFC 4180): quoted when it holds a comma, a quote or a
 * line break; quotes doubled. */
static void csv_field(buf_t *b, const char *s, size_t n)
{
    bool quote = memchr(s, ',', n) || memchr(s, '"', n) || memchr(s, '\n', n) ||
                 memchr(s, '\r', n);
    if (!quote) {
        buf_put(b, s, n);
        return;
    }
    buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            buf_putc(b, '"');
        buf_putc(b, s[i]);
    }
    buf_putc(b, '"');
}

static const char *const csv_columns[] = {"seq", "at", "account", "role", "session", "remote",
                                          "action", "col", "id", "version_before",
                                          "version_after", "data"};

void activity_csv_header(buf_t *b)
{
    for (size_t i = 0; i < ARRAY_LEN(csv_columns); i++) {
        buf_puts(b, i ? "," : "");
        buf_puts(b, csv_columns[i]);
    }
    buf_puts(b, ",hash\r\n");
}

/* One entry (its JSON, and its hash) as a CSV record. */
void activity_csv_row(buf_t *b, const char *entry, size_t len, const char *hash)
{
    json_t *e = json_loadb(entry, len, 0, NULL);
    for (size_t i = 0; i < ARRAY_LEN(csv_columns); i++) {
        if (i)
            buf_putc(b, ',');
        json_t *v = json_object_get(e, csv_columns[i]);
        if (!v || json_is_null(v))
            continue;
        if (json_is_string(v)) {
            csv_field(b, json_string_value(v), json_string_length(v));
        } else {
            char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            csv_field(b, t, strlen(t));
            free(t);
        }
    }
    buf_putc(b, ',');
    buf_puts(b, hash ? hash : "");
    buf_puts(b, "\r\n");
    json_decref(e);
}

/* ------------------------------------------------------------------ query */

static int parse_time(const char *v, int64_t *out, err_t *e, const char *what)
{
    if (time_parse_rfc3339(v, out))
        return err_set(e, E_BAD_REQUEST, "%s must be a time like 2026-11-23T10:00:00Z", what);
    return 0;
}

static void on_page(rjob *job)
{
    conn_t *c = job->ctx;
    if (respond_ok(c, &job->err)) {
        char rest[48] = ",\"next\":null}";
        if (job->count == job->aq.limit && job->seq > 1)
            snprintf(rest, sizeof rest, ",\"next\":%lld}", (long long)job->seq);
        respond_items(c, "entries", &job->out, rest);
    }
    conn_unref(c);
    rjob_free(job);
}

typedef struct activity_params {
    rjob *job;
    bool page;           /* a page: limit and before */
    const char **format; /* an export: format */
} activity_params;

static int activity_param(void *ctx, const char *k, const char *v, size_t n, err_t *e)
{
    activity_params *ap = ctx;
    rjob *job = ap->job;
    activity_query *q = &job->aq;
    int64_t x;
    if (strcmp(k, "since") == 0)
        return parse_time(v, &q->since_ms, e, "since");
    if (strcmp(k, "until") == 0)
        return parse_time(v, &q->until_ms, e, "until");
    if (strcmp(k, "actor") == 0 && n <= DOC_ID_MAX) {
        free(job->aq_actor);
        q->actor = job->aq_actor = xstrndup(v, n);
    } else if (strcmp(k, "action") == 0 && n <= 32) {
        free(job->aq_action);
        q->action = job->aq_action = xstrndup(v, n);
    } else if (ap->page && strcmp(k, "limit") == 0) {
        if (parse_i64(v, n, &x) || x < 1 || x > 1000)
            return err_set(e, E_BAD_REQUEST, "limit must be an integer from 1 to 1000");
        q->limit = (int)x;
    } else if (ap->page && strcmp(k, "before") == 0) {
        if (parse_i64(v, n, &x) || x < 1)
            return err_set(e, E_BAD_REQUEST, "before must be an entry's seq (a next value)");
        q->before_seq = x;
    } else if (!ap->page && strcmp(k, "format") == 0) {
        *ap->format = strcmp(v, "csv") == 0 ? "csv" : strcmp(v, "json") == 0 ? "json" : NULL;
        if (!*ap->format)
            return err_set(e, E_BAD_REQUEST, "format is csv or json");
    } else if (strcmp(k, "token") != 0) {
        return err_set(e, E_BAD_REQUEST,
                       "unknown query parameter %.40s (since, until, actor, action%s)", k,
                       ap->page ? ", limit, before" : ", format");
    }
    return 0;
}

/* Fills job->aq from the query string; `page` allows limit and before. */
static int parse_activity_query(const http_req *req, rjob *job, bool page, const char **format,
                                err_t *e)
{
    activity_params ap = {job, page, format};
    job->aq.limit = 100;
    return params_each(req, activity_param, &ap, e);
}

void activity_get(app_t *app, conn_t *c, http_req *req)
{
    actor_t who;
    if (api_admin(app, c, req, &who, "the activity log is for admins"))
        return;
    err_t e = {0};
    rjob *job = rjob_new(R_ACTIVITY);
    job->actor = who;
    if (parse_activity_query(req, job, true, NULL, &e)) {
        rjob_free(job);
        return respond_err(c, &e);
    }
    job->done = on_page;
    job->ctx = conn_ref(c);
    store_read(app->store, job);
}

/* ------------------------------------------------------------------ export */

typedef struct exporter {
    app_t *app;
    conn_t *c;
    bool csv;
    bool first;
    actor_t who;
    activity_query q;
    char *actor, *action;
    uv_timer_t wait; /* while the client reads what was sent */
    bool dead;
    bool reading;
} exporter;

static void export_next(exporter *x);

static void export_free(uv_handle_t *h)
{
    exporter *x = h->data;
    free(x->actor);
    free(x->action);
    free(x);
}

static void export_end(exporter *x)
{
    if (!x->dead) {
        x->dead = true;
        conn_set_close_hook(x->c, NULL, NULL);
        conn_close(x->c); /* the stream ends with the connection */
    }
    conn_unref(x->c);
    uv_close((uv_handle_t *)&x->wait, export_free);
}

static void on_export_closed(conn_t *c, void *ctx)
{
    exporter *x = ctx;
    (void)c;
    x->dead = true;
    if (!x->reading)
        export_end(x);
}

static void on_export_page(rjob *job)
{
    exporter *x = job->ctx;
    x->reading = false;
    if (x->dead) {
        rjob_free(job);
        return export_end(x);
    }
    if (job->err.code) {
        rjob_free(job);
        return export_end(x);
    }
    buf_t b = {0};
    if (x->csv) {
        /* The page is "e1,e2,..." of JSON objects: split them back. */
        json_t *arr = NULL;
        buf_t wrap = {0};
        buf_putc(&wrap, '[');
        buf_put(&wrap, job->out.p, job->out.len);
        buf_putc(&wrap, ']');
        arr = json_loadb(wrap.p, wrap.len, 0, NULL);
        buf_free(&wrap);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            json_t *e = json_array_get(arr, i);
            const char *hash = json_string_value(json_object_get(e, "hash"));
            char *text = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
            activity_csv_row(&b, text, strlen(text), hash);
            free(text);
        }
        json_decref(arr);
    } else if (job->count) {
        if (!x->first)
            buf_puts(&b, ",\n");
        buf_put(&b, job->out.p, job->out.len);
    }
    if (job->count)
        x->first = false;
    bool last = job->count < x->q.limit;
    if (last && !x->csv)
        buf_puts(&b, "]\n");
    if (b.len)
        conn_stream_write(x->c, b.p, b.len);
    buf_free(&b);
    x->q.after_seq = job->seq ? job->seq : x->q.after_seq;
    rjob_free(job);
    if (last)
        return export_end(x);
    export_next(x);
}

static void on_export_wait(uv_timer_t *t) { export_next(t->data); }

static void export_next(exporter *x)
{
    if (x->dead)
        return export_end(x);
    if (conn_pending_bytes(x->c) > EXPORT_PENDING_MAX) {
        uv_timer_start(&x->wait, on_export_wait, 10, 0); /* let the client catch up */
        return;
    }
    rjob *job = rjob_new(R_ACTIVITY);
    job->actor = x->who;
    job->aq = x->q;
    job->done = on_export_page;
    job->ctx = x;
    x->reading = true;
    store_read(x->app->store, job);
}

void activity_export(app_t *app, conn_t *c, http_req *req)
{
    actor_t who;
    if (api_admin(app, c, req, &who, "the activity log is for admins"))
        return;
    err_t e = {0};
    const char *format = "json";
    rjob *probe = rjob_new(R_ACTIVITY);
    if (parse_activity_query(req, probe, false, &format, &e)) {
        rjob_free(probe);
        return respond_err(c, &e);
    }
    exporter *x = xcalloc(1, sizeof *x);
    x->app = app;
    x->c = conn_ref(c);
    x->csv = strcmp(format, "csv") == 0;
    x->first = true;
    x->who = who;
    x->q = probe->aq;
    x->q.ascending = true;
    x->q.limit = EXPORT_PAGE;
    x->actor = probe->aq_actor;
    x->action = probe->aq_action;
    probe->aq_actor = probe->aq_action = NULL;
    x->q.actor = x->actor;
    x->q.action = x->action;
    rjob_free(probe);
    uv_timer_init(app->loop, &x->wait);
    x->wait.data = x;
    conn_stream_start(c, 200, x->csv ? "text/csv; charset=utf-8" : "application/json",
                      x->csv ? "Content-Disposition: attachment; filename=\"activity.csv\"\r\n"
                             : "Content-Disposition: attachment; filename=\"activity.json\"\r\n",
                      on_export_closed, x);
    if (x->csv) {
        buf_t b = {0};
        activity_csv_header(&b);
        conn_stream_write(c, b.p, b.len);
        buf_free(&b);
    } else {
        conn_stream_write(c, "[\n", 2);
    }
    export_next(x);
}

/* ------------------------------------------------------------------ client events */

typedef struct rate {
    int count;
    int64_t since;
} rate_t;

static map_t client_rates; /* session -> rate_t (loop thread) */

static bool over_rate(const char *session)
{
    int64_t now = time_now_ms();
    rate_t *r = map_get(&client_rates, session, strlen(session));
    if (!r) {
        if (client_rates.count > 100000)
            map_free_values(&client_rates);
        r = xcalloc(1, sizeof *r);
        r->since = now;
        map_put(&client_rates, session, strlen(session), r);
    }
    if (now - r->since > 60000) {
        r->since = now;
        r->count = 0;
    }
    return ++r->count > CLIENT_EVENTS_PER_MIN;
}

static void on_event_logged(wjob *job)
{
    conn_t *c = job->ctx;
    if (respond_ok(c, &job->err))
        conn_respond(c, 204, NULL, NULL, NULL, 0);
    conn_unref(c);
    wjob_free(job);
}

void activity_post(app_t *app, conn_t *c, http_req *req)
{
    err_t e = {0};
    actor_t who;
    json_t *body = api_auth_body(app, c, req, &who);
    if (!body)
        return;
    json_t *act = json_object_get(body, "action"), *data = json_object_get(body, "data");
    const char *a = json_string_value(act);
    size_t an = a ? json_string_length(act) : 0;
    bool ok = a && an >= 1 && an <= 32;
    for (size_t i = 0; ok && i < an; i++)
        ok = (a[i] >= 'a' && a[i] <= 'z') || a[i] == '_' || a[i] == '.' ||
             (i && a[i] >= '0' && a[i] <= '9');
    for (size_t i = 0; ok && i < ARRAY_LEN(server_actions); i++)
        ok = strcmp(a, server_actions[i]) != 0;
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v) {
        if (strcmp(k, "action") && strcmp(k, "data"))
            ok = false;
    }
    char *dtext = data ? json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    bool small = !dtext || strlen(dtext) <= CLIENT_DATA_MAX;
    free(dtext);
    if (!ok || (data && !json_is_object(data)) || !small) {
        json_decref(body);
        return respond_simple(c, E_BAD_REQUEST,
                              "the body is {\"action\": \"page_view\", \"data\": {...}}: an action"
                              " of a-z, 0-9, _ and . (not one the server logs itself), data an"
                              " object of at most 4096 bytes");
    }
    if (over_rate(who.session)) {
        json_decref(body);
        err_set(&e, E_RATE_LIMITED, "at most %d events a minute per session",
                CLIENT_EVENTS_PER_MIN);
        conn_respond_error(c, &e, "Retry-After: 60\r\n");
        return err_clear(&e);
    }
    wjob *job = wjob_new(WJ_OPS, 0);
    job->actor = who;
    snprintf(job->log_action, sizeof job->log_action, "%s", a);
    job->log_data = data ? json_incref(data) : NULL;
    job->done = on_event_logged;
    job->ctx = conn_ref(c);
    json_decref(body);
    store_submit(app->store, job);
}

void activity_free_state(void) { map_free_values(&client_rates); }
