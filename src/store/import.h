/*
 * import.h: loading legacy JSON into collections, for `livedb import` and
 * POST /v1/admin/import.
 *
 * The input is {"COL":[doc, ...], ...} (the export format) or a bare array
 * of documents for one collection. Every record is checked on its own: an
 * object, with an id, nested at most 64 deep, under 1 MiB, meeting its
 * app's schema, and not the id of an earlier record of the same collection
 * that passed these checks: a refused record takes no id, so a fixed copy
 * after a broken one loads. A bad record is reported with its collection,
 * its index in that array and why, and the good ones load. Each good
 * record is an upsert by id that writes nothing when the stored document is
 * already equal, so a second run adds nothing and a run after a failure
 * finishes the job without duplicates. Records go to the writer a window at
 * a time (group commit does the rest).
 */
#ifndef LIVEDB_IMPORT_H
#define LIVEDB_IMPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "../core/access.h"
#include "../core/err.h"
#include "store.h"

typedef struct import_counts {
    long total, done;
    long created, updated, unchanged; /* written (or found equal) */
    long bad;                         /* refused: by the checks or by the writer */
} import_counts;

typedef struct import_cb {
    /* A refused record: its collection, index in that array, id (NULL when
     * it has none), why, and for a schema's refusal the fields and why. */
    void (*bad)(void *ctx, const char *col, size_t index, const char *id, const char *reason,
                const json_t *fields);
    /* Now and then (every 100 records, and at the end); may be NULL. */
    void (*progress)(void *ctx, const import_counts *n);
    /* Once, when every record is done. */
    void (*done)(void *ctx, const import_counts *n);
} import_cb;

typedef struct import_opts {
    const char *only; /* load only this collection (with a bare array: its name) */
    int window;       /* records in flight at once (default 500) */
    bool dry_run;     /* check everything, write nothing */
    actor_t actor;    /* whose writes these are (the activity log says so) */
} import_opts;

typedef struct importer importer;

/* Takes root. NULL with err (E_BAD_REQUEST) when the whole input is
 * unusable: not an object or array, a bare array without only, an object
 * without the collection only (the message names the ones it has), a
 * collection that is not an array or has a bad name. */
importer *import_prepare(json_t *root, const import_opts *o, err_t *err);

long import_total(const importer *im);

/* Frees an importer that will not run. */
void import_free(importer *im);

/* Runs it: records go to st (NULL for a dry run), the callbacks run on the
 * store's loop (in a dry run, before this returns). The importer frees
 * itself after cb->done. */
void import_run(importer *im, store_t *st, const import_cb *cb, void *ctx);

#endif
