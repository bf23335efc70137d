/*
 * import.c: legacy JSON into collections (import.h says what is promised).
 *
 * All records are checked before the first is sent, so a dry run and a
 * real run report the same bad records; the writer may still refuse a
 * good-looking record (a unique field taken by a stored document), which is
 * reported the same way. The record's index travels with its job, so every
 * report names where in the file the record was.
 */
#include "import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/apps.h"
#include "../core/doc.h"
#include "../util/util.h"

typedef struct rec {
    const char *col; /* points into the importer's set keys */
    size_t index;
    wjob *job;       /* NULL when the record was refused */
} rec;

struct importer {
    json_t *root, *sets; /* sets: col -> records */
    import_opts o;
    rec *recs;
    size_t nrecs, next;
    int in_flight;
    import_counts n;
    const import_cb *cb;
    void *ctx;
    store_t *st;
};

typedef struct sent {
    importer *im;
    size_t rec;
} sent;

static int json_depth(const json_t *v)
{
    int d = 0;
    const char *k;
    json_t *x;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, x) {
            int dx = json_depth(x);
            d = dx > d ? dx : d;
        }
        return d + 1;
    }
    for (size_t i = 0; json_is_array(v) && i < json_array_size(v); i++) {
        int dx = json_depth(json_array_get(v, i));
        d = dx > d ? dx : d;
    }
    return json_is_array(v) ? d + 1 : 0;
}

/* ------------------------------------------------------------------ prepare */

/* only is not a collection of the object root: an error that names the
 * ones it has (the first few), so that the caller sees what to pick. */
static int no_such_collection(json_t *root, const char *only, err_t *err)
{
    enum { NAMED = 8 };
    buf_t have = {0};
    size_t n = 0;
    const char *col;
    json_t *recs;
    json_object_foreach(root, col, recs) {
        if (n++ < NAMED)
            buf_printf(&have, "%s%.40s", n > 1 ? ", " : "", col);
    }
    if (n > NAMED)
        buf_printf(&have, " and %zu more", n - NAMED);
    err_set(err, E_BAD_REQUEST, "the file has no collection %s (%s%s)", only,
            n ? "it has " : "it has none", n ? have.p : "");
    buf_free(&have);
    return -1;
}

importer *import_prepare(json_t *root, const import_opts *o, err_t *err)
{
    json_t *sets = NULL;
    if (!json_is_array(root) && !json_is_object(root)) {
        err_set(err, E_BAD_REQUEST,
                "the file must hold {\"collection\":[documents]} or an array of documents");
        goto fail;
    }
    if (json_is_array(root) && !o->only) {
        err_set(err, E_BAD_REQUEST, "a bare array of documents needs a collection to go into");
        goto fail;
    }
    if (o->only && doc_check_collection(o->only, strlen(o->only), err))
        goto fail;
    sets = json_object();
    if (json_is_array(root)) {
        json_object_set(sets, o->only, root);
    } else {
        const char *col;
        json_t *recs;
        json_object_foreach(root, col, recs) {
            if (o->only && strcmp(col, o->only) != 0)
                continue;
            if (doc_check_collection(col, strlen(col), err))
                goto fail;
            if (!json_is_array(recs)) {
                err_set(err, E_BAD_REQUEST, "%s must be an array of documents", col);
                goto fail;
            }
            json_object_set(sets, col, recs);
        }
        if (o->only && !json_object_get(root, o->only)) {
            no_such_collection(root, o->only, err);
            goto fail;
        }
    }
    importer *im = xcalloc(1, sizeof *im);
    im->root = root;
    im->sets = sets;
    im->o = *o;
    if (im->o.window < 1)
        im->o.window = 500;
    const char *col;
    json_t *recs;
    json_object_foreach(sets, col, recs) im->n.total += (long)json_array_size(recs);
    im->recs = xcalloc(im->n.total ? (size_t)im->n.total : 1, sizeof *im->recs);
    return im;
fail:
    json_decref(sets);
    json_decref(root);
    return NULL;
}

long import_total(const importer *im) { return im->n.total; }

void import_free(importer *im)
{
    for (size_t i = 0; i < im->nrecs; i++)
        if (im->recs[i].job)
            wjob_free(im->recs[i].job);
    free(im->recs);
    json_decref(im->sets);
    json_decref(im->root);
    free(im);
}

/* ------------------------------------------------------------------ check */

static void report_bad(importer *im, const char *col, size_t index, const char *id,
                       const char *reason, const json_t *fields)
{
    im->n.bad++;
    if (im->cb->bad)
        im->cb->bad(im->ctx, col, index, id, reason, fields);
}

/* Checks one record; a job for it, or NULL when it was refused (and
 * reported). seen: the ids of the records that passed, so far, in this
 * collection. */
static wjob *check_record(importer *im, const char *col, size_t index, json_t *r, json_t *seen)
{
    err_t e = {0};
    char *id = NULL;
    char why[160];
    if (!json_is_object(r)) {
        report_bad(im, col, index, NULL, "not a JSON object", NULL);
        return NULL;
    }
    const char *rid = json_string_value(json_object_get(r, "id"));
    if (json_depth(r) > DOC_MAX_DEPTH) {
        snprintf(why, sizeof why, "nested deeper than %d", DOC_MAX_DEPTH);
        report_bad(im, col, index, rid, why, NULL);
        return NULL;
    }
    json_t *doc = json_deep_copy(r);
    if (doc_take_server_fields(doc, NULL, &id, &e) || !id) {
        report_bad(im, col, index, rid, e.code ? e.msg : "no id (import keeps ids: it needs one)",
                   NULL);
        goto refused;
    }
    json_t *first = json_object_get(seen, id);
    if (first) {
        snprintf(why, sizeof why, "the same id as %s[%lld], which is loaded instead", col,
                 (long long)json_integer_value(first));
        report_bad(im, col, index, id, why, NULL);
        goto refused;
    }
    size_t mlen;
    free(doc_members(doc, &mlen));
    if (mlen > DOC_MAX_BYTES - 256) {
        report_bad(im, col, index, id, "over 1 MiB", NULL);
        goto refused;
    }
    const col_spec *spec = apps_col(col);
    if (spec && schema_check(spec, doc, &e)) {
        report_bad(im, col, index, id, e.msg, e.details);
        goto refused;
    }
    /* Only a record that loads takes its id: a later copy of a refused
     * one (the hand-fixed duplicate a legacy file often has) loads. */
    json_object_set_new(seen, id, json_integer((json_int_t)index));
    wjob *job = wjob_new(WJ_OPS, 1);
    job->actor = im->o.actor;
    wop *op = &job->ops[0];
    op->kind = W_PUT;
    op->skip_unchanged = true;
    snprintf(op->col, sizeof op->col, "%s", col);
    op->id = id;
    op->doc = doc;
    return job;
refused:
    err_clear(&e);
    free(id);
    json_decref(doc);
    return NULL;
}

/* ------------------------------------------------------------------ run */

static void progress(importer *im)
{
    if (im->cb->progress)
        im->cb->progress(im->ctx, &im->n);
}

static void finish(importer *im)
{
    progress(im);
    im->cb->done(im->ctx, &im->n);
    import_free(im);
}

static void send_more(importer *im);

static void on_written(wjob *job)
{
    sent *s = job->ctx;
    importer *im = s->im;
    const rec *r = &im->recs[s->rec];
    im->in_flight--;
    im->n.done++;
    if (job->err.code) {
        report_bad(im, r->col, r->index, job->ops[0].id, job->err.msg,
                   json_is_array(job->err.details) ? job->err.details : NULL);
    } else if (job->status == 201) {
        im->n.created++;
    } else if (job->changes) {
        im->n.updated++;
    } else {
        im->n.unchanged++;
    }
    if (im->n.done % 100 == 0)
        progress(im);
    free(s);
    wjob_free(job);
    send_more(im);
}

static void send_more(importer *im)
{
    while (im->next < im->nrecs && im->in_flight < im->o.window) {
        rec *r = &im->recs[im->next];
        wjob *job = r->job;
        r->job = NULL;
        size_t i = im->next++;
        if (!job)
            continue;
        sent *s = xmalloc(sizeof *s);
        s->im = im;
        s->rec = i;
        job->done = on_written;
        job->ctx = s;
        im->in_flight++;
        store_submit(im->st, job);
    }
    if (im->next == im->nrecs && im->in_flight == 0)
        finish(im);
}

void import_run(importer *im, store_t *st, const import_cb *cb, void *ctx)
{
    im->cb = cb;
    im->ctx = ctx;
    im->st = st;
    /* Check every record first: a dry run and a real one report alike. */
    const char *col;
    json_t *recs;
    json_object_foreach(im->sets, col, recs) {
        json_t *seen = json_object();
        for (size_t i = 0; i < json_array_size(recs); i++) {
            rec *r = &im->recs[im->nrecs++];
            r->col = col;
            r->index = i;
            r->job = check_record(im, col, i, json_array_get(recs, i), seen);
            if (!r->job)
                im->n.done++;
            else if (im->o.dry_run || !st) {
                wjob_free(r->job);
                r->job = NULL;
                im->n.done++;
            }
        }
        json_decref(seen);
    }
    if (im->o.dry_run || !st) {
        im->next = im->nrecs;
        finish(im);
        return;
    }
    progress(im);
    send_more(im);
}
