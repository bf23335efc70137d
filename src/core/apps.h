/*
 * apps.h: the apps a server runs (--apps), read from their app.json (built
 * into the binary): the roles they declare, and for each collection its
 * fields (the schema every write must meet) and its access rules.
 *
 *   {"name": "wholesale", "roles": ["partner"],
 *    "collections": {
 *      "orders": {
 *        "fields": {"partner_id": {"type": "string", "required": true},
 *                   "status": {"type": "string", "enum": ["pending", "shipped"]},
 *                   "total_cents": {"type": "integer", "min": 0}},
 *        "indexes": ["partner_id"], "snapshot": false,
 *        "rules": {"read": "doc.partner_id == auth.id", "create": "false",
 *                  "update": "false", "delete": "false"}}}}
 *
 * Field types: string, integer, number, boolean, array, object, null (a
 * list of them allows any). min/max bound numbers, and the length of
 * strings and arrays. unique: no two documents share the value (an index
 * enforces it, so concurrent writers cannot both win).
 *
 * The account role `admin` may do everything; rules decide for every other
 * role. A collection no app declares is open to admin only, and so is an
 * action whose rule is missing.
 *
 * Loaded once at start, before any thread: read-only afterwards, so every
 * thread (the writer, the readers) may read it.
 */
#ifndef LIVEDB_APPS_H
#define LIVEDB_APPS_H

#include <stdbool.h>

#include <jansson.h>

#include "err.h"
#include "rules.h"

typedef enum action { ACT_READ, ACT_CREATE, ACT_UPDATE, ACT_DELETE, ACT__COUNT } action_t;

enum {
    FT_STRING = 1, FT_INTEGER = 2, FT_NUMBER = 4, FT_BOOLEAN = 8,
    FT_ARRAY = 16, FT_OBJECT = 32, FT_NULL = 64,
};

typedef struct field_spec {
    char *name;      /* a field path, as in lists */
    int types;       /* FT_ bits; 0: any */
    bool required, unique;
    json_t *enums;   /* array of allowed values, or NULL */
    bool has_min, has_max;
    double min, max;
} field_spec;

typedef struct col_spec {
    char name[65];
    const char *app;
    field_spec *fields;
    int nfields;
    rule_t *rules[ACT__COUNT]; /* NULL: admin only */
    char **indexes;            /* fields to index at start */
    int nindexes;
    bool snapshot;             /* written to --snapshot-dir (app.json "snapshot": true) */
} col_spec;

/* Loads the apps named in list ("wholesale,studio", "" or "none" for none)
 * and the server's own collections. On error err names the app, the
 * collection and what is wrong. */
int apps_load(const char *list, err_t *err);
void apps_free(void);

/* The spec of a collection, or NULL when no app declares it. */
const col_spec *apps_col(const char *name);
/* Every declared collection, for start-up work (indexes). */
int apps_count(void);
const col_spec *apps_at(int i);
/* admin, or a role an app declares. */
bool apps_role_known(const char *role);
/* The loaded app names ("wholesale,studio"). */
const char *apps_names(void);
/* Whether app `name` is loaded. */
bool apps_has(const char *name);

/* Checks doc (the whole document as it will be stored) against the
 * collection's fields. Returns 0, or -1 with err = 422 invalid and
 * details [{"field","reason"}, ...] naming each bad field. */
int schema_check(const col_spec *c, const json_t *doc, err_t *err);

/* ------------------------------------------------------------------ the compiled-in apps
 *
 * Each folder apps/APP/ with an app.c defines `const app_def app_APP`:
 * what the app brings besides its app.json. The Makefile lists them in
 * build/gen/apps.c (apps_builtin), so no file under src/ names an app:
 * adding one is a folder under apps/. */

struct fn_def; /* api/fn.h: a server function */

/* An error code of the app's own: a name on the wire and its HTTP status.
 * The registry numbers them past E__CORE (apps_err). */
typedef struct app_error {
    const char *name;
    int status;
} app_error;

/* A `livedb NAME ...` command the app adds; main gets what follows NAME.
 * usage: its lines for `livedb help` (each "       livedb NAME ...\n"). */
typedef struct app_command {
    const char *name;
    const char *usage;
    int (*main)(int argc, char **argv);
} app_command;

typedef struct app_def {
    const char *name;               /* its folder, and its name in --apps */
    const struct fn_def *functions; /* ended by a NULL name; NULL: none */
    const app_error *errors;        /* ended by a NULL name; NULL: none */
    const app_command *commands;    /* ended by a NULL name; NULL: none */
} app_def;

/* build/gen/apps.c: every compiled-in app, by folder name, NULL-ended. */
extern const app_def *const apps_builtin[];

/* The compiled-in app called name, or NULL. */
const app_def *apps_def(const char *name);
/* The code of app's errors[i]. */
err_code apps_err(const app_def *app, int i);
/* Any compiled-in app's command called name, or NULL. */
const app_command *apps_command(const char *name);
/* The i-th command of all the compiled-in apps (0, 1, ...), or NULL past
 * the last: for the usage text. */
const app_command *apps_command_at(int i);

/* The embedded files (tools/embed.c). */
typedef struct livedb_asset {
    const char *path;
    const unsigned char *data;
    size_t len;
} livedb_asset;
const livedb_asset *asset_find(const char *path);

#endif
