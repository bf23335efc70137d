/*
 * admin.c: administration over HTTP (admin only).
 *
 *   GET /v1/admin/export   every collection as {"COL":[doc, ...], ...}
 *
 * The export is the command line's `livedb export`, read in one snapshot
 * on the thread pool (never on the loop) into memory, then sent.
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct export_job {
    uv_work_t work;
    conn_t *c;
    char *dir;
    char *text;
    size_t len;
    err_t err;
} export_job;

static void export_work(uv_work_t *w)
{
    export_job *x = w->data;
    FILE *f = open_memstream(&x->text, &x->len);
    if (!f) {
        err_set(&x->err, E_INTERNAL, "out of memory");
        return;
    }
    store_export(x->dir, f, &x->err);
    fclose(f);
}

static void export_after(uv_work_t *w, int status)
{
    export_job *x = w->data;
    (void)status;
    if (conn_open(x->c)) {
        if (x->err.code) {
            respond_err(x->c, &x->err);
        } else {
            buf_t b = {.p = x->text, .len = x->len, .cap = x->len + 1};
            x->text = NULL;
            conn_respond_buf(x->c, 200, "application/json",
                             "Content-Disposition: attachment; filename=\"export.json\"\r\n", &b);
        }
    }
    err_clear(&x->err);
    conn_unref(x->c);
    free(x->text);
    free(x->dir);
    free(x);
}

void admin_export(app_t *app, conn_t *c, http_req *req)
{
    actor_t who;
    err_t e = {0};
    if (api_auth(app, c, req, &who, &e))
        return respond_err(c, &e);
    if (!actor_is_admin(&who))
        return respond_simple(c, E_FORBIDDEN, "only an admin may export");
    export_job *x = xcalloc(1, sizeof *x);
    x->c = conn_ref(c);
    x->dir = xstrdup(store_dir(app->store));
    x->work.data = x;
    uv_queue_work(app->loop, &x->work, export_work, export_after);
}
