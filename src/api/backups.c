/*
 * backups.c: the server's side of backups (store/backup.h does the work).
 *
 *   every --backup-interval seconds (default 30), when something was
 *   committed since the last one, a backup on the thread pool; the newest
 *   --backup-keep (default 10) are kept
 *
 *   GET  /v1/admin/backups              the list, newest first
 *   POST /v1/admin/backups              take one now -> 201
 *   POST /v1/admin/backups/NAME/verify  check one -> 200 (ok true or false)
 *
 * and what health and metrics say of them: the newest good backup's age,
 * how far behind the database it is, the last check. Health is degraded
 * when the last attempt failed, or when changes have gone without a good
 * backup for longer than --backup-max-age.
 *
 * One backup or check runs at a time; asking meanwhile waits in line.
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/log.h"
#include "../store/backup.h"
#include "../store/vfs.h"

typedef enum bk_kind { BK_TAKE, BK_VERIFY, BK_LIST } bk_kind;

typedef struct bk_job {
    uv_work_t work;
    struct backups_state *b;
    bk_kind kind;
    conn_t *c; /* NULL for the timer's own */
    char name[BACKUP_NAME_MAX];
    backup_info info;
    backup_info *list;
    size_t n;
    err_t err;
    struct bk_job *next;
} bk_job;

typedef struct backups_state {
    app_t *app;
    char *dir;
    int interval_s, keep, max_age_s;
    uv_timer_t timer;
    bool running;
    bool closing; /* the server stops: no new work; close when idle */
    bk_job *queue, **queue_tail;
    int64_t started_ms;
    /* the newest good backup, and the last attempt */
    bool have_good;
    backup_info good;
    bool last_failed;
    char last_error[sizeof(((err_t *)0)->msg)];
    int64_t last_verify_ms;
    bool last_verify_ok;
    uint64_t taken, failed;
} backups_state;

static void run_next(backups_state *b);
static void free_state(uv_handle_t *h);

/* ------------------------------------------------------------------ work */

static void bk_work(uv_work_t *w)
{
    bk_job *j = w->data;
    backups_state *b = j->b;
    switch (j->kind) {
    case BK_TAKE:
        backup_take(b->dir, b->keep, &j->info, &j->err);
        break;
    case BK_VERIFY:
        backup_verify(b->dir, j->name, &j->info, &j->err);
        break;
    case BK_LIST:
        backup_list(b->dir, &j->list, &j->n, &j->err);
        break;
    }
}

static void info_json(buf_t *o, const backup_info *i)
{
    char at[TIME_RFC3339_LEN + 1], ver[TIME_RFC3339_LEN + 1];
    time_format_rfc3339(i->at_ms, at);
    time_format_rfc3339(i->verified_ms, ver);
    buf_printf(o, "{\"name\":\"%s\",\"seq\":%lld,\"size\":%lld,\"at\":\"%s\",\"blake2b\":\"%s\","
                  "\"ok\":%s,\"verified_at\":\"%s\"",
               i->name, (long long)i->seq, (long long)i->size, at, i->blake2b,
               i->ok ? "true" : "false", ver);
    if (i->problem[0]) {
        buf_puts(o, ",\"problem\":");
        buf_put_json_str(o, i->problem, strlen(i->problem));
    }
    buf_putc(o, '}');
}

static void bk_after(uv_work_t *w, int status)
{
    bk_job *j = w->data;
    backups_state *b = j->b;
    (void)status;
    if (j->kind == BK_TAKE) {
        if (j->err.code) {
            b->failed++;
            b->last_failed = true;
            snprintf(b->last_error, sizeof b->last_error, "%s", j->err.msg);
            log_msg(LOG_ERROR, "backup failed: %s", j->err.msg);
        } else {
            b->taken++;
            b->last_failed = false;
            b->last_error[0] = '\0';
            b->have_good = true;
            b->good = j->info;
            b->last_verify_ms = j->info.verified_ms;
            b->last_verify_ok = true;
        }
    } else if (j->kind == BK_VERIFY && !j->err.code) {
        b->last_verify_ms = j->info.verified_ms;
        b->last_verify_ok = j->info.ok;
        if (!j->info.ok && b->have_good && strcmp(b->good.name, j->info.name) == 0)
            b->have_good = false; /* no longer to be relied on */
    }
    if (j->c && conn_open(j->c)) {
        if (j->err.code) {
            respond_err(j->c, &j->err);
        } else if (j->kind == BK_LIST) {
            buf_t o = {0};
            buf_puts(&o, "{\"backups\":[");
            for (size_t i = 0; i < j->n; i++) {
                if (i)
                    buf_putc(&o, ',');
                info_json(&o, &j->list[i]);
            }
            buf_printf(&o, "],\"interval_s\":%d,\"keep\":%d}", b->interval_s, b->keep);
            conn_respond_buf(j->c, 200, "application/json", NULL, &o);
        } else {
            buf_t o = {0};
            buf_puts(&o, "{\"backup\":");
            info_json(&o, &j->info);
            buf_putc(&o, '}');
            conn_respond_buf(j->c, j->kind == BK_TAKE ? 201 : 200, "application/json", NULL, &o);
        }
    }
    if (j->c)
        conn_unref(j->c);
    err_clear(&j->err);
    free(j->list);
    free(j);
    b->running = false;
    if (b->closing) {
        uv_close((uv_handle_t *)&b->timer, free_state);
        return;
    }
    run_next(b);
}

static void run_next(backups_state *b)
{
    if (b->running || !b->queue)
        return;
    bk_job *j = b->queue;
    b->queue = j->next;
    if (!b->queue)
        b->queue_tail = &b->queue;
    b->running = true;
    j->work.data = j;
    uv_queue_work(b->app->loop, &j->work, bk_work, bk_after);
}

static void enqueue(backups_state *b, bk_kind kind, conn_t *c, const char *name)
{
    bk_job *j = xcalloc(1, sizeof *j);
    j->b = b;
    j->kind = kind;
    j->c = c ? conn_ref(c) : NULL;
    if (name)
        snprintf(j->name, sizeof j->name, "%s", name);
    *b->queue_tail = j;
    b->queue_tail = &j->next;
    run_next(b);
}

/* ------------------------------------------------------------------ timer */

static bool behind(const backups_state *b)
{
    int64_t seq = store_committed_seq(b->app->store);
    return b->have_good ? seq > b->good.seq : seq > 0;
}

static void on_tick(uv_timer_t *t)
{
    backups_state *b = t->data;
    if (b->running || b->queue || !behind(b))
        return;
    enqueue(b, BK_TAKE, NULL, NULL);
}

void backups_init(app_t *app, int interval_s, int keep, int max_age_s)
{
    backups_state *b = xcalloc(1, sizeof *b);
    b->app = app;
    b->dir = xstrdup(store_dir(app->store));
    b->interval_s = interval_s;
    b->keep = keep;
    b->max_age_s = max_age_s;
    b->queue_tail = &b->queue;
    b->started_ms = time_now_ms();
    backup_info *list;
    size_t n;
    err_t e = {0};
    if (backup_list(b->dir, &list, &n, &e) == 0) {
        for (size_t i = 0; i < n && !b->have_good; i++)
            if (list[i].ok) {
                b->have_good = true;
                b->good = list[i];
            }
        if (n) {
            b->last_verify_ms = list[0].verified_ms;
            b->last_verify_ok = list[0].ok;
        }
        free(list);
    }
    err_clear(&e);
    uv_timer_init(app->loop, &b->timer);
    b->timer.data = b;
    if (interval_s > 0)
        uv_timer_start(&b->timer, on_tick, (uint64_t)interval_s * 1000,
                       (uint64_t)interval_s * 1000);
    app->backups = b;
}

static void free_state(uv_handle_t *h)
{
    backups_state *b = h->data;
    free(b->dir);
    free(b);
}

void backups_shutdown(app_t *app)
{
    backups_state *b = app->backups;
    if (!b)
        return;
    /* A backup under way finishes (the loop waits for it); none start. */
    while (b->queue) {
        bk_job *j = b->queue;
        b->queue = j->next;
        if (j->c) {
            if (conn_open(j->c))
                respond_simple(j->c, E_UNAVAILABLE, "the server is shutting down");
            conn_unref(j->c);
        }
        free(j);
    }
    b->queue_tail = &b->queue;
    uv_timer_stop(&b->timer);
    b->closing = true;
    app->backups = NULL;
    if (!b->running)
        uv_close((uv_handle_t *)&b->timer, free_state);
}

/* ------------------------------------------------------------------ health, metrics */

/* "ok", "off", "stale", "failing" or "none" (nothing yet, nothing due). */
static const char *status_of(const backups_state *b)
{
    if (b->last_failed)
        return "failing";
    if (!behind(b))
        return b->have_good ? "ok" : "none";
    int64_t since = b->have_good ? b->good.at_ms : b->started_ms;
    if (time_now_ms() - since > (int64_t)b->max_age_s * 1000)
        return b->interval_s > 0 ? "stale" : "off";
    return b->interval_s > 0 ? "ok" : "off";
}

bool backups_health(app_t *app, buf_t *out, bool detail)
{
    backups_state *b = app->backups;
    if (!b) {
        buf_puts(out, "{\"status\":\"off\"}");
        return true;
    }
    const char *st = status_of(b);
    buf_printf(out, "{\"status\":\"%s\"", st);
    if (detail) {
        if (b->have_good) {
            char at[TIME_RFC3339_LEN + 1];
            time_format_rfc3339(b->good.at_ms, at);
            buf_printf(out, ",\"newest\":\"%s\",\"at\":\"%s\",\"age_s\":%lld,\"seq\":%lld",
                       b->good.name, at, (long long)((time_now_ms() - b->good.at_ms) / 1000),
                       (long long)b->good.seq);
        }
        buf_printf(out, ",\"behind\":%lld,\"interval_s\":%d,\"max_age_s\":%d",
                   (long long)(store_committed_seq(app->store) -
                               (b->have_good ? b->good.seq : 0)),
                   b->interval_s, b->max_age_s);
        if (b->last_verify_ms) {
            char at[TIME_RFC3339_LEN + 1];
            time_format_rfc3339(b->last_verify_ms, at);
            buf_printf(out, ",\"last_verified_at\":\"%s\",\"last_verify_ok\":%s", at,
                       b->last_verify_ok ? "true" : "false");
        }
        if (b->last_failed) {
            buf_puts(out, ",\"message\":");
            buf_put_json_str(out, b->last_error, strlen(b->last_error));
        }
    }
    buf_putc(out, '}');
    return strcmp(st, "stale") != 0 && strcmp(st, "failing") != 0;
}

void backups_metrics(app_t *app, buf_t *out)
{
    backups_state *b = app->backups;
    buf_printf(out, "# HELP livedb_page_checksum_failures_total Database pages that failed"
                    " their checksum.\n# TYPE livedb_page_checksum_failures_total counter\n"
                    "livedb_page_checksum_failures_total %llu\n",
               (unsigned long long)vfs_checksum_failures());
    if (!b)
        return;
    buf_printf(out,
               "# HELP livedb_backups_total Backups taken and checked.\n"
               "# TYPE livedb_backups_total counter\nlivedb_backups_total %llu\n"
               "# HELP livedb_backup_failures_total Backups that failed.\n"
               "# TYPE livedb_backup_failures_total counter\nlivedb_backup_failures_total %llu\n",
               (unsigned long long)b->taken, (unsigned long long)b->failed);
    if (b->have_good)
        buf_printf(out,
                   "# HELP livedb_backup_age_seconds Age of the newest good backup.\n"
                   "# TYPE livedb_backup_age_seconds gauge\nlivedb_backup_age_seconds %.3f\n"
                   "# HELP livedb_backup_seq Last change in the newest good backup.\n"
                   "# TYPE livedb_backup_seq gauge\nlivedb_backup_seq %lld\n",
                   (double)(time_now_ms() - b->good.at_ms) / 1000, (long long)b->good.seq);
    if (b->last_verify_ms)
        buf_printf(out,
                   "# HELP livedb_backup_last_verify_ok Whether the last backup check passed.\n"
                   "# TYPE livedb_backup_last_verify_ok gauge\nlivedb_backup_last_verify_ok %d\n"
                   "# HELP livedb_backup_last_verify_timestamp_seconds When it ran.\n"
                   "# TYPE livedb_backup_last_verify_timestamp_seconds gauge\n"
                   "livedb_backup_last_verify_timestamp_seconds %.3f\n",
                   b->last_verify_ok ? 1 : 0, (double)b->last_verify_ms / 1000);
}

/* ------------------------------------------------------------------ HTTP */

void backups_http(app_t *app, conn_t *c, http_req *req, const char *name, const char *action)
{
    actor_t who;
    if (api_admin(app, c, req, &who, "backups are for admins"))
        return;
    backups_state *b = app->backups;
    if (!b && store_shared(app->store))
        return respond_simple(c, E_CONFLICT, "this node's data is in PostgreSQL, whose backups are"
                                             " PostgreSQL's: pg_dump, or base backups and WAL"
                                             " archiving (docs/OPERATIONS.md)");
    if (!b)
        return respond_simple(c, E_UNAVAILABLE, "the server is shutting down");
    int m = req->method == HTTP_HEAD ? HTTP_GET : req->method;
    if (!name) {
        if (m == HTTP_GET)
            return enqueue(b, BK_LIST, c, NULL);
        if (m == HTTP_POST)
            return enqueue(b, BK_TAKE, c, NULL);
        return respond_method(c, "GET, POST");
    }
    if (!action || strcmp(action, "verify") != 0)
        return respond_simple(c, E_NOT_FOUND, "no such path (/v1/admin/backups/NAME/verify)");
    if (m != HTTP_POST)
        return respond_method(c, "POST");
    if (!backup_name_ok(name))
        return respond_simple(c, E_BAD_REQUEST, "not a backup name");
    enqueue(b, BK_VERIFY, c, name);
}
