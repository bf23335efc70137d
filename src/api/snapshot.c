/*
 * snapshot.c: --snapshot-dir DIR, a static copy of an app's data for when
 * the server cannot be reached.
 *
 * For each served app with collections marked "snapshot": true in its
 * app.json (the studio's users and jobs), DIR/APP.json holds
 *   {"app":"studio","generated_at":"...","seq":S,"users":[...],"jobs":[...]}
 * read in one transaction at seq S. It is rewritten after every commit
 * batch that touches those collections (batches that land while one is
 * being written are folded into the next; when the server stops, what is
 * not written yet goes out before it exits), to a temporary name and
 * renamed, so a static host never serves half a file. The seed's
 * dashboard fell back to such a file when its database could not be
 * reached; a static host (or a CDN) can serve DIR next to the pages.
 *
 * The file holds what the app's staff may read: put DIR where only they
 * can fetch it.
 */
#include "api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/apps.h"
#include "../util/log.h"

#define SNAPSHOT_APPS_MAX 8
#define SNAPSHOT_DELAY_MS 100 /* commits within this fold into one write */

typedef struct snap_app {
    char name[33];
    const char *cols[32 + 1]; /* NULL-terminated */
    bool dirty, running;
    uv_work_t work;
    struct snapshots *s;
    err_t err;
} snap_app;

typedef struct snapshots {
    app_t *app;
    char *dir;
    const store_opts *where; /* the store's */
    snap_app apps[SNAPSHOT_APPS_MAX];
    int napps;
    uv_timer_t timer;
    bool closing;
    int running;
} snapshots;

static void snap_work(uv_work_t *w)
{
    snap_app *a = w->data;
    snapshots *s = a->s;
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) {
        err_set(&a->err, E_INTERNAL, "out of memory");
        return;
    }
    int rc = store_export_cols(s->where, a->cols, mem, &a->err);
    fclose(mem);
    if (rc == 0 && len > 1) {
        char now[TIME_RFC3339_LEN + 1];
        time_format_rfc3339(time_now_ms(), now);
        buf_t path = {0}, tmp = {0};
        buf_printf(&path, "%s/%s.json", s->dir, a->name);
        buf_printf(&tmp, "%s/.%s.json.tmp", s->dir, a->name);
        FILE *f = fopen(tmp.p, "wb");
        /* {"seq":...} -> {"app":..,"generated_at":..,"seq":...} */
        if (!f || fprintf(f, "{\"app\":\"%s\",\"generated_at\":\"%s\",", a->name, now) < 0 ||
            fwrite(text + 1, 1, len - 1, f) != len - 1 || fclose(f) != 0 ||
            rename(tmp.p, path.p) != 0) {
            err_set(&a->err, E_UNAVAILABLE, "cannot write %s: %s", path.p, strerror(errno));
            unlink(tmp.p);
        }
        buf_free(&path);
        buf_free(&tmp);
    }
    free(text);
}

static void start(snapshots *s);
static void on_timer(uv_timer_t *t);

static void close_timer(snapshots *s)
{
    if (!uv_is_closing((uv_handle_t *)&s->timer))
        uv_close((uv_handle_t *)&s->timer, NULL);
}

static void snap_after(uv_work_t *w, int status)
{
    snap_app *a = w->data;
    snapshots *s = a->s;
    (void)status;
    if (a->err.code)
        log_msg(LOG_ERROR, "snapshot of %s: %s", a->name, a->err.msg);
    err_clear(&a->err);
    a->running = false;
    s->running--;
    /* Changed while it was being written: again, at once when stopping
     * (the file must end with the last commit), else after the delay. */
    if (a->dirty && s->closing)
        start(s);
    else if (a->dirty)
        uv_timer_start(&s->timer, on_timer, SNAPSHOT_DELAY_MS, 0);
    if (s->closing && s->running == 0)
        close_timer(s);
}

static void start(snapshots *s)
{
    for (int i = 0; i < s->napps; i++) {
        snap_app *a = &s->apps[i];
        if (!a->dirty || a->running)
            continue;
        a->dirty = false;
        a->running = true;
        s->running++;
        a->work.data = a;
        uv_queue_work(s->app->loop, &a->work, snap_work, snap_after);
    }
}

static void on_timer(uv_timer_t *t) { start(t->data); }

static void snapshot_note(app_t *app, change_t *list, activity_rec *activity)
{
    snapshots *s = app->snapshots;
    if (!s)
        return;
    bool any = false;
    for (const change_t *ch = list; ch; ch = ch->next) {
        const col_spec *c = apps_col(ch->col);
        if (!c || !c->snapshot)
            continue;
        for (int i = 0; i < s->napps; i++)
            if (strcmp(s->apps[i].name, c->app) == 0 && !s->apps[i].dirty) {
                s->apps[i].dirty = true;
                any = true;
            }
    }
    /* Writes still in flight when the server stops commit after
     * snapshot_shutdown: they are written at once, not left out. */
    if (any && s->closing)
        start(s);
    else if (any && !uv_is_active((uv_handle_t *)&s->timer))
        uv_timer_start(&s->timer, on_timer, SNAPSHOT_DELAY_MS, 0);
}

static const hub_listener snapshot_listener = {snapshot_note, NULL};

int snapshot_init(app_t *app, const char *dir, err_t *err)
{
    if (!dir)
        return 0;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return err_set(err, E_UNAVAILABLE, "--snapshot-dir %s: %s", dir, strerror(errno));
    snapshots *s = xcalloc(1, sizeof *s);
    s->app = app;
    s->dir = xstrdup(dir);
    s->where = store_where(app->store);
    for (int i = 0; i < apps_count(); i++) {
        const col_spec *c = apps_at(i);
        if (!c->snapshot)
            continue;
        snap_app *a = NULL;
        for (int k = 0; k < s->napps && !a; k++)
            if (strcmp(s->apps[k].name, c->app) == 0)
                a = &s->apps[k];
        if (!a && s->napps < SNAPSHOT_APPS_MAX) {
            a = &s->apps[s->napps++];
            snprintf(a->name, sizeof a->name, "%s", c->app);
            a->s = s;
        }
        size_t n = 0;
        while (a && a->cols[n])
            n++;
        if (a && n + 1 < ARRAY_LEN(a->cols))
            a->cols[n] = c->name;
    }
    uv_timer_init(app->loop, &s->timer);
    s->timer.data = s;
    app->snapshots = s;
    hub_listen(&app->hub, &snapshot_listener);
    if (s->napps == 0)
        log_msg(LOG_WARN, "--snapshot-dir %s: no app served here has collections to snapshot",
                dir);
    /* A first copy at start, so the file exists before the first change. */
    for (int i = 0; i < s->napps; i++)
        s->apps[i].dirty = true;
    start(s);
    return 0;
}

void snapshot_shutdown(app_t *app)
{
    snapshots *s = app->snapshots;
    if (!s)
        return;
    s->closing = true;
    uv_timer_stop(&s->timer);
    /* Changes waiting for the delay go out now: a stopped server's file
     * is what the pages fall back to, so it must not miss the last ones. */
    start(s);
    if (s->running == 0)
        close_timer(s);
}

void snapshot_free(app_t *app)
{
    snapshots *s = app->snapshots;
    if (!s)
        return;
    free(s->dir);
    free(s);
    app->snapshots = NULL;
}
