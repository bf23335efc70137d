/*
 * admin.c: administration over HTTP (admin only).
 *
 *   GET  /v1/admin/export   every collection as {"COL":[doc, ...], ...}
 *   POST /v1/admin/import   the same shape (or a bare array) back in
 *
 * The export is the command line's `livedb export`, read in one snapshot
 * on the thread pool (never on the loop) into memory, then sent.
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../store/import.h"

typedef struct export_job {
    uv_work_t work;
    conn_t *c;
    const store_opts *where; /* the store's */
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
    store_export(x->where, f, &x->err);
    fclose(f);
}

static void export_after(uv_work_t *w, int status)
{
    export_job *x = w->data;
    (void)status;
    if (respond_ok(x->c, &x->err)) {
        buf_t b = {.p = x->text, .len = x->len, .cap = x->len + 1};
        x->text = NULL;
        conn_respond_buf(x->c, 200, "application/json",
                         "Content-Disposition: attachment; filename=\"export.json\"\r\n", &b);
    }
    err_clear(&x->err);
    conn_unref(x->c);
    free(x->text);
    free(x);
}

void admin_export(app_t *app, conn_t *c, http_req *req)
{
    actor_t who;
    if (api_admin(app, c, req, &who, "only an admin may export"))
        return;
    export_job *x = xcalloc(1, sizeof *x);
    x->c = conn_ref(c);
    x->where = store_where(app->store);
    x->work.data = x;
    uv_queue_work(app->loop, &x->work, export_work, export_after);
}

/* ------------------------------------------------------------------ import */

/* POST /v1/admin/import[?collection=C][&dry_run=1]: the legacy file (or a
 * piece of one: the page sends a large file in slices of at most 1 MiB)
 * into the collections, as `livedb import` does (store/import.h). The answer
 * comes when every record is done:
 *   {"total","created","updated","unchanged","bad","dry_run",
 *    "problems":[{"col","index","id","reason","fields"}]}
 * with the index of each refused record in its collection's array. */
typedef struct import_req {
    conn_t *c;
    bool dry_run;
    json_t *problems;
} import_req;

static void import_bad(void *ctx, const char *col, size_t index, const char *id,
                       const char *reason, const json_t *fields)
{
    import_req *r = ctx;
    json_t *p = json_pack("{sssIss}", "col", col, "index", (json_int_t)index, "reason", reason);
    json_object_set_new(p, "id", id ? json_string(id) : json_null());
    if (fields)
        json_object_set(p, "fields", (json_t *)fields);
    json_array_append_new(r->problems, p);
}

static void import_done(void *ctx, const import_counts *n)
{
    import_req *r = ctx;
    if (conn_open(r->c)) {
        json_t *o = json_pack("{sIsIsIsIsIsbsO}", "total", (json_int_t)n->total, "created",
                              (json_int_t)n->created, "updated", (json_int_t)n->updated,
                              "unchanged", (json_int_t)n->unchanged, "bad", (json_int_t)n->bad,
                              "dry_run", r->dry_run, "problems", r->problems);
        char *text = json_dumps(o, JSON_COMPACT);
        conn_respond(r->c, 200, "application/json", NULL, text, strlen(text));
        free(text);
        json_decref(o);
    }
    conn_unref(r->c);
    json_decref(r->problems);
    free(r);
}

void admin_import(app_t *app, conn_t *c, http_req *req)
{
    actor_t who;
    err_t e = {0};
    if (api_admin(app, c, req, &who, "only an admin may import"))
        return;
    params_t p;
    if (params_parse(&p, req, &e))
        return respond_err(c, &e);
    import_opts o = {.window = 500, .actor = who};
    for (int i = 0; i < p.n && !e.code; i++) {
        if (strcmp(p.kv[i].key, "collection") == 0)
            o.only = p.kv[i].value;
        else if (strcmp(p.kv[i].key, "dry_run") == 0)
            o.dry_run = strcmp(p.kv[i].value, "0") != 0 && strcmp(p.kv[i].value, "false") != 0;
        else
            err_set(&e, E_BAD_REQUEST, "unknown parameter %.40s (collection, dry_run)",
                    p.kv[i].key);
    }
    json_error_t je;
    json_t *root = e.code ? NULL
                          : json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!e.code && !root)
        err_set(&e, E_BAD_REQUEST, "the body is not JSON: %s (line %d, column %d)", je.text,
                je.line, je.column);
    importer *im = e.code ? NULL : import_prepare(root, &o, &e);
    params_free(&p);
    if (!im)
        return respond_err(c, &e);
    import_req *r = xcalloc(1, sizeof *r);
    r->c = conn_ref(c);
    r->dry_run = o.dry_run;
    r->problems = json_array();
    static const import_cb cb = {.bad = import_bad, .done = import_done};
    import_run(im, o.dry_run ? NULL : app->store, &cb, r);
}
