/*
 * health.c: GET /v1/health and GET /metrics.
 *
 * Health is decided from real checks: a write to the database (a probe
 * through the writer, at most one a second, shared by every caller that
 * asks meanwhile), the writer's progress while it has work, the free
 * space of the data directory, and the backups (backups.c).
 */
#include "api.h"

#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#define PROBE_FRESH_MS 1000
#define PROBE_TIMEOUT_MS 2000
#define WRITER_SLOW_NS (5ull * 1000000000)
#define WRITER_STUCK_NS (30ull * 1000000000)
#define DISK_LOW_BYTES (256ull * 1024 * 1024)

typedef struct waiter {
    conn_t *c;
    bool detail;
    struct waiter *next;
} waiter;

typedef struct health_state {
    app_t *app;
    int64_t probe_at_ms;  /* when the last probe finished */
    bool probe_ok;
    err_code probe_code;
    char probe_msg[sizeof(((err_t *)0)->msg)];
    double probe_ms;
    bool in_flight;
    wjob *job;            /* the probe in flight, if any */
    uint64_t probe_started;
    waiter *waiting;
    uv_timer_t timeout;
} health_state;

/* Everyone gets the status of each check; the numbers (free bytes, queue,
 * timings) go to an admin, or to the machine itself (loopback). */
static void answer(health_state *h, conn_t *c, bool detail)
{
    app_t *app = h->app;
    bool busy;
    uint64_t beat = store_writer_heartbeat(app->store, &busy);
    uint64_t since_beat = time_mono_ns() - beat;
    const char *writer = !busy ? "ok" : since_beat > WRITER_STUCK_NS ? "stuck"
                                      : since_beat > WRITER_SLOW_NS  ? "slow"
                                                                     : "ok";
    struct statvfs vfs;
    unsigned long long free_bytes = 0;
    if (statvfs(store_dir(app->store), &vfs) == 0)
        free_bytes = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
    const char *disk = free_bytes < DISK_LOW_BYTES ? "low" : "ok";

    buf_t bk = {0};
    bool backups_ok = backups_health(app, &bk, detail);
    bool failed = store_failed(app->store);

    /* A node over PostgreSQL that cannot reach it (a restart, a failover)
     * reconnects by itself: degraded, not down; its writes answer 503. */
    const char *down_why;
    bool up = store_up(app->store, &down_why);
    bool reconnecting = store_shared(app->store) &&
                        (!up || (!h->probe_ok && h->probe_code == E_UNAVAILABLE));
    const char *status = "ok";
    if (reconnecting)
        status = "degraded";
    else if (!h->probe_ok || failed || strcmp(writer, "stuck") == 0)
        status = "down";
    else if (strcmp(writer, "ok") != 0 || strcmp(disk, "ok") != 0 || !backups_ok)
        status = "degraded";
    const char *database = failed         ? "failed"
                           : reconnecting ? "reconnecting"
                           : h->probe_ok  ? "ok"
                                          : "failing";

    buf_t b = {0};
    if (!detail) {
        buf_printf(&b, "{\"status\":\"%s\",\"checks\":{\"database\":{\"status\":\"%s\"},"
                       "\"writer\":{\"status\":\"%s\"},\"disk\":{\"status\":\"%s\"},"
                       "\"backups\":%s}}",
                   status, database, writer, disk, bk.p);
        buf_free(&bk);
        conn_respond_buf(c, strcmp(status, "down") == 0 ? 503 : 200, "application/json",
                         "Cache-Control: no-store\r\n", &b);
        return;
    }
    buf_printf(&b, "{\"status\":\"%s\",\"checks\":{\"database\":{\"status\":\"%s\",\"ms\":%.3f",
               status, database, h->probe_ms);
    if (failed) {
        const char *why = "writes are stopped: the disk failed to confirm a write (fsync);"
                          " check the disk, then restart livedb";
        buf_puts(&b, ",\"message\":");
        buf_put_json_str(&b, why, strlen(why));
    } else if (!h->probe_ok) {
        buf_puts(&b, ",\"message\":");
        buf_put_json_str(&b, h->probe_msg, strlen(h->probe_msg));
    } else if (!up) {
        buf_puts(&b, ",\"message\":");
        buf_put_json_str(&b, down_why, strlen(down_why));
    }
    buf_printf(&b, "},\"writer\":{\"status\":\"%s\",\"queue\":%d,\"idle_ms\":%llu},"
                   "\"disk\":{\"status\":\"%s\",\"free_bytes\":%llu},\"backups\":%s},"
                   "\"seq\":%lld}",
               writer, store_queue_depth(app->store),
               busy ? (unsigned long long)(since_beat / 1000000) : 0ull, disk, free_bytes,
               bk.p, (long long)store_committed_seq(app->store));
    buf_free(&bk);
    conn_respond_buf(c, strcmp(status, "down") == 0 ? 503 : 200, "application/json",
                     "Cache-Control: no-store\r\n", &b);
}

static void answer_all(health_state *h)
{
    while (h->waiting) {
        waiter *w = h->waiting;
        h->waiting = w->next;
        if (conn_open(w->c))
            answer(h, w->c, w->detail);
        conn_unref(w->c);
        free(w);
    }
}

static void on_probe_done(wjob *job)
{
    health_state *h = job->ctx;
    if (h) {
        h->job = NULL;
        h->probe_ok = job->err.code == E_OK;
        h->probe_code = job->err.code;
        snprintf(h->probe_msg, sizeof h->probe_msg, "%s", job->err.msg);
        h->probe_ms = (double)(time_mono_ns() - h->probe_started) / 1e6;
        h->probe_at_ms = time_now_ms();
        h->in_flight = false;
        uv_timer_stop(&h->timeout);
        answer_all(h);
    }
    wjob_free(job);
}

static void on_probe_timeout(uv_timer_t *t)
{
    health_state *h = t->data;
    h->probe_ok = false;
    h->probe_code = E_UNAVAILABLE;
    snprintf(h->probe_msg, sizeof h->probe_msg, "a write did not commit within %d ms",
             PROBE_TIMEOUT_MS);
    h->probe_ms = PROBE_TIMEOUT_MS;
    answer_all(h);
}

void health_get(app_t *app, conn_t *c, http_req *req)
{
    health_state *h = app->health;
    actor_t who;
    err_t e = {0};
    bool detail = conn_is_loopback(c) ||
                  (api_auth_optional(app, c, req, &who, &e) == 0 && who.id[0] &&
                   actor_is_admin(&who));
    err_clear(&e);
    if (!h->in_flight && time_now_ms() - h->probe_at_ms < PROBE_FRESH_MS) {
        answer(h, c, detail);
        return;
    }
    waiter *w = xmalloc(sizeof *w);
    w->c = conn_ref(c);
    w->detail = detail;
    w->next = h->waiting;
    h->waiting = w;
    if (h->in_flight)
        return;
    h->in_flight = true;
    h->probe_started = time_mono_ns();
    uv_timer_start(&h->timeout, on_probe_timeout, PROBE_TIMEOUT_MS, 0);
    wjob *job = wjob_new(WJ_PROBE, 0);
    job->done = on_probe_done;
    job->ctx = h;
    h->job = job; /* before submit: a refused job is done at once */
    store_submit(app->store, job);
}

void metrics_get(app_t *app, conn_t *c, http_req *req)
{
    /* The local machine's scraper, or an admin. */
    if (!conn_is_loopback(c)) {
        actor_t who;
        if (api_admin(app, c, req, &who, "metrics are for admins (or from loopback)"))
            return;
    }
    buf_t b = {0};
    metrics_render(&b);
    backups_metrics(app, &b);
    conn_respond_buf(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, &b);
}

void health_init(app_t *app)
{
    health_state *h = xcalloc(1, sizeof *h);
    h->app = app;
    h->probe_ok = true;
    uv_timer_init(app->loop, &h->timeout);
    h->timeout.data = h;
    app->health = h;
}

static void free_health(uv_handle_t *t) { free(t->data); }

void health_shutdown(app_t *app)
{
    health_state *h = app->health;
    answer_all(h);
    if (h->job) /* its answer comes after we are gone: detach it */
        h->job->ctx = NULL;
    uv_timer_stop(&h->timeout);
    uv_close((uv_handle_t *)&h->timeout, free_health);
    app->health = NULL;
}
