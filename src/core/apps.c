/*
 * apps.c: see apps.h.
 */
#include "apps.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "doc.h"
#include "query.h"

extern const livedb_asset livedb_assets[];

#define MAX_COLS 64
#define MAX_ROLES 32

static col_spec cols[MAX_COLS];
static int ncols;
static char *roles[MAX_ROLES];
static int nroles;
static char names[256];

const livedb_asset *asset_find(const char *path)
{
    for (const livedb_asset *a = livedb_assets; a->path; a++)
        if (strcmp(a->path, path) == 0)
            return a;
    return NULL;
}

/* ------------------------------------------------------------------ the compiled-in apps */

#define BUILTIN_MAX 32

/* err_base[i]: the code of apps_builtin[i]'s first error. Numbered once,
 * whichever thread asks first (apps_load does, before any other thread). */
static err_code err_base[BUILTIN_MAX];
static pthread_once_t numbered = PTHREAD_ONCE_INIT;

static void number_errors(void)
{
    for (size_t i = 0; apps_builtin[i] && i < BUILTIN_MAX; i++) {
        err_base[i] = E__CORE;
        for (const app_error *e = apps_builtin[i]->errors; e && e->name; e++) {
            err_code c = err_add(e->name, e->status);
            if (e == apps_builtin[i]->errors)
                err_base[i] = c;
        }
    }
}

const app_def *apps_def(const char *name)
{
    for (size_t i = 0; apps_builtin[i]; i++)
        if (strcmp(apps_builtin[i]->name, name) == 0)
            return apps_builtin[i];
    return NULL;
}

err_code apps_err(const app_def *app, int i)
{
    pthread_once(&numbered, number_errors);
    for (size_t k = 0; apps_builtin[k] && k < BUILTIN_MAX; k++)
        if (apps_builtin[k] == app)
            return (err_code)(err_base[k] + i);
    return E_INTERNAL;
}

const app_command *apps_command_at(int i)
{
    for (size_t k = 0; apps_builtin[k]; k++)
        for (const app_command *c = apps_builtin[k]->commands; c && c->name; c++)
            if (i-- == 0)
                return c;
    return NULL;
}

const app_command *apps_command(const char *name)
{
    const app_command *c;
    for (int i = 0; (c = apps_command_at(i)); i++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

/* The server's own collection of accounts: the public part of an account
 * (password hashes and sessions are in tables the API never shows). */
static const char accounts_json[] =
    "{\"name\":\"livedb\",\"collections\":{\"_accounts\":{"
    "\"fields\":{\"email\":{\"type\":\"string\",\"required\":true,\"unique\":true,\"min\":3,"
    "\"max\":254},\"role\":{\"type\":\"string\",\"required\":true,\"min\":1,\"max\":32},"
    "\"name\":{\"type\":\"string\",\"max\":200},\"disabled\":{\"type\":\"boolean\"}},"
    "\"rules\":{\"read\":\"doc.id == auth.id\"}}}}";

static const char *const action_names[ACT__COUNT] = {"read", "create", "update", "delete"};

static int types_of(json_t *t, int *out)
{
    static const struct {
        const char *name;
        int bit;
    } known[] = {{"string", FT_STRING}, {"integer", FT_INTEGER}, {"number", FT_NUMBER},
                 {"boolean", FT_BOOLEAN}, {"array", FT_ARRAY}, {"object", FT_OBJECT},
                 {"null", FT_NULL}};
    json_t *one = json_is_string(t) ? t : NULL;
    size_t n = one ? 1 : json_array_size(t);
    if (!one && !json_is_array(t))
        return -1;
    *out = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *v = one ? one : json_array_get(t, i);
        int bit = 0;
        for (size_t k = 0; k < ARRAY_LEN(known) && json_is_string(v); k++)
            if (strcmp(json_string_value(v), known[k].name) == 0)
                bit = known[k].bit;
        if (!bit)
            return -1;
        *out |= bit;
    }
    return 0;
}

static int load_field(field_spec *f, const char *name, json_t *def, const char *where, err_t *err)
{
    memset(f, 0, sizeof *f);
    f->name = xstrdup(name);
    err_t e = {0};
    if (query_check_field(name, strlen(name), &e)) {
        err_clear(&e);
        return err_set(err, E_BAD_REQUEST, "%s: field name %s: %s", where, name,
                       "dotted names of letters, digits and _");
    }
    if (!json_is_object(def))
        return err_set(err, E_BAD_REQUEST, "%s.%s: a field is an object", where, name);
    const char *k;
    json_t *v;
    json_object_foreach(def, k, v) {
        if (strcmp(k, "type") == 0) {
            if (types_of(v, &f->types))
                return err_set(err, E_BAD_REQUEST,
                               "%s.%s: type is string, integer, number, boolean, array, object,"
                               " null, or a list of them", where, name);
        } else if (strcmp(k, "required") == 0 || strcmp(k, "unique") == 0) {
            if (!json_is_boolean(v))
                return err_set(err, E_BAD_REQUEST, "%s.%s: %s is true or false", where, name, k);
            *(k[0] == 'r' ? &f->required : &f->unique) = json_is_true(v);
        } else if (strcmp(k, "enum") == 0) {
            if (!json_is_array(v) || json_array_size(v) == 0)
                return err_set(err, E_BAD_REQUEST, "%s.%s: enum is a list of values", where, name);
            f->enums = json_incref(v);
        } else if (strcmp(k, "min") == 0 || strcmp(k, "max") == 0) {
            if (!json_is_number(v))
                return err_set(err, E_BAD_REQUEST, "%s.%s: %s is a number", where, name, k);
            if (k[1] == 'i') {
                f->has_min = true;
                f->min = json_number_value(v);
            } else {
                f->has_max = true;
                f->max = json_number_value(v);
            }
        } else if (strcmp(k, "description") != 0) {
            return err_set(err, E_BAD_REQUEST,
                           "%s.%s: unknown key %s (type, required, unique, enum, min, max)", where,
                           name, k);
        }
    }
    return 0;
}

static int load_app(const char *app, json_t *root, err_t *err)
{
    if (!json_is_object(root))
        return err_set(err, E_BAD_REQUEST, "app %s: app.json is not a JSON object", app);
    json_t *rs = json_object_get(root, "roles");
    for (size_t i = 0; i < json_array_size(rs); i++) {
        const char *r = json_string_value(json_array_get(rs, i));
        if (!r || !r[0] || strlen(r) > 32 || strcmp(r, "admin") == 0)
            return err_set(err, E_BAD_REQUEST, "app %s: roles are names other than admin", app);
        if (!apps_role_known(r) && nroles < MAX_ROLES)
            roles[nroles++] = xstrdup(r);
    }
    json_t *cs = json_object_get(root, "collections");
    if (cs && !json_is_object(cs))
        return err_set(err, E_BAD_REQUEST, "app %s: collections is an object", app);
    const char *name;
    json_t *def;
    json_object_foreach(cs, name, def) {
        char where[160];
        snprintf(where, sizeof where, "app %s, collection %s", app, name);
        err_t e = {0};
        if (name[0] != '_' && doc_check_collection(name, strlen(name), &e)) {
            err_clear(&e);
            return err_set(err, E_BAD_REQUEST, "%s: not a collection name", where);
        }
        if (apps_col(name))
            return err_set(err, E_BAD_REQUEST, "%s: declared by two apps", where);
        if (ncols == MAX_COLS)
            return err_set(err, E_BAD_REQUEST, "%s: more than %d collections", where, MAX_COLS);
        col_spec *c = &cols[ncols++];
        memset(c, 0, sizeof *c);
        snprintf(c->name, sizeof c->name, "%s", name);
        c->app = app;
        json_t *fields = json_object_get(def, "fields");
        if (fields && !json_is_object(fields))
            return err_set(err, E_BAD_REQUEST, "%s: fields is an object", where);
        c->fields = xcalloc(json_object_size(fields) + 1, sizeof *c->fields);
        const char *fname;
        json_t *fdef;
        json_object_foreach(fields, fname, fdef) {
            if (load_field(&c->fields[c->nfields++], fname, fdef, where, err))
                return -1;
        }
        json_t *ix = json_object_get(def, "indexes");
        c->indexes = xcalloc(json_array_size(ix) + 1, sizeof *c->indexes);
        for (size_t i = 0; i < json_array_size(ix); i++) {
            const char *f = json_string_value(json_array_get(ix, i));
            if (!f || query_check_field(f, strlen(f), &e)) {
                err_clear(&e);
                return err_set(err, E_BAD_REQUEST, "%s: indexes are field names", where);
            }
            c->indexes[c->nindexes++] = xstrdup(f);
        }
        json_t *snap = json_object_get(def, "snapshot");
        if (snap && !json_is_boolean(snap))
            return err_set(err, E_BAD_REQUEST, "%s: snapshot is true or false", where);
        c->snapshot = json_is_true(snap);
        json_t *rules = json_object_get(def, "rules");
        if (rules && !json_is_object(rules))
            return err_set(err, E_BAD_REQUEST, "%s: rules is an object", where);
        const char *act;
        json_t *text;
        json_object_foreach(rules, act, text) {
            int a = -1;
            for (int k = 0; k < ACT__COUNT; k++)
                if (strcmp(act, action_names[k]) == 0)
                    a = k;
            if (a < 0 || !json_is_string(text))
                return err_set(err, E_BAD_REQUEST,
                               "%s: rules are read, create, update, delete, each a string", where);
            c->rules[a] = rule_parse(json_string_value(text), json_string_length(text), &e);
            if (!c->rules[a]) {
                err_set(err, E_BAD_REQUEST, "%s, %s rule \"%s\": %s", where, act,
                        json_string_value(text), e.msg + (strncmp(e.msg, "rule: ", 6) ? 0 : 6));
                err_clear(&e);
                return -1;
            }
        }
    }
    return 0;
}

static json_t *parse_asset(const char *path, const char *text, size_t len, err_t *err)
{
    err_t e = {0};
    json_t *root = json_parse_strict(text, len, &e);
    if (!root)
        err_set(err, E_BAD_REQUEST, "%s: %s", path, e.msg);
    err_clear(&e);
    return root;
}

int apps_load(const char *list, err_t *err)
{
    pthread_once(&numbered, number_errors);
    apps_free();
    json_t *own = parse_asset("(built in)", accounts_json, sizeof accounts_json - 1, err);
    if (!own || load_app("livedb", own, err)) {
        json_decref(own);
        return -1;
    }
    json_decref(own);
    if (!list || !list[0] || strcmp(list, "none") == 0)
        return 0;
    char *copy = xstrdup(list);
    int rc = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok && rc == 0;
         tok = strtok_r(NULL, ",", &save)) {
        char path[128];
        snprintf(path, sizeof path, "apps/%s/app.json", tok);
        const livedb_asset *a = strlen(tok) < 64 ? asset_find(path) : NULL;
        if (!a) {
            char known[200] = "";
            for (size_t i = 0; apps_builtin[i]; i++) {
                size_t used = strlen(known);
                snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                         apps_builtin[i]->name);
            }
            rc = err_set(err, E_BAD_REQUEST, "no app called %s (built in: %s)", tok, known);
            break;
        }
        if (apps_has(tok))
            continue;
        json_t *root = parse_asset(path, (const char *)a->data, a->len, err);
        if (!root) {
            rc = -1;
            break;
        }
        size_t used = strlen(names);
        snprintf(names + used, sizeof names - used, "%s%s", used ? "," : "", tok);
        /* The app's name lives as long as the specs that point at it. */
        const char *name = strrchr(names, ',') ? strrchr(names, ',') + 1 : names;
        rc = load_app(name, root, err);
        json_decref(root);
    }
    free(copy);
    return rc;
}

void apps_free(void)
{
    for (int i = 0; i < ncols; i++) {
        col_spec *c = &cols[i];
        for (int k = 0; k < c->nfields; k++) {
            free(c->fields[k].name);
            json_decref(c->fields[k].enums);
        }
        free(c->fields);
        for (int k = 0; k < c->nindexes; k++)
            free(c->indexes[k]);
        free(c->indexes);
        for (int k = 0; k < ACT__COUNT; k++)
            rule_free(c->rules[k]);
    }
    ncols = 0;
    for (int i = 0; i < nroles; i++)
        free(roles[i]);
    nroles = 0;
    names[0] = '\0';
}

const col_spec *apps_col(const char *name)
{
    for (int i = 0; i < ncols; i++)
        if (strcmp(cols[i].name, name) == 0)
            return &cols[i];
    return NULL;
}

int apps_count(void) { return ncols; }
const col_spec *apps_at(int i) { return &cols[i]; }
const char *apps_names(void) { return names; }

bool apps_has(const char *name)
{
    size_t n = strlen(name);
    for (const char *p = names; *p;) {
        const char *comma = strchr(p, ',');
        size_t k = comma ? (size_t)(comma - p) : strlen(p);
        if (k == n && memcmp(p, name, n) == 0)
            return true;
        p += k + (comma ? 1 : 0);
    }
    return false;
}

bool apps_role_known(const char *role)
{
    if (strcmp(role, "admin") == 0)
        return true;
    for (int i = 0; i < nroles; i++)
        if (strcmp(roles[i], role) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------------ schema */

static int type_bit(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING: return FT_STRING;
    case JSON_INTEGER: return FT_INTEGER | FT_NUMBER;
    case JSON_REAL: return FT_NUMBER;
    case JSON_TRUE:
    case JSON_FALSE: return FT_BOOLEAN;
    case JSON_ARRAY: return FT_ARRAY;
    case JSON_OBJECT: return FT_OBJECT;
    default: return FT_NULL;
    }
}

static void bad(json_t *details, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void bad(json_t *details, const char *field, const char *fmt, ...)
{
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    json_array_append_new(details, json_pack("{ssss}", "field", field, "reason", why));
}

static size_t utf8_chars(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xc0) != 0x80;
    return k;
}

int schema_check(const col_spec *c, const json_t *doc, err_t *err)
{
    json_t *details = json_array();
    for (int i = 0; i < c->nfields; i++) {
        const field_spec *f = &c->fields[i];
        const json_t *v = query_field(doc, f->name);
        if (!v || json_is_null(v)) {
            if (f->required)
                bad(details, f->name, "is required");
            else if (v && f->types && !(f->types & FT_NULL))
                bad(details, f->name, "may not be null");
            continue;
        }
        if (f->types && !(type_bit(v) & f->types)) {
            bad(details, f->name, "must be %s",
                f->types & FT_INTEGER && !(f->types & FT_NUMBER) ? "an integer"
                : f->types & FT_NUMBER                          ? "a number"
                : f->types & FT_STRING                          ? "a string"
                : f->types & FT_BOOLEAN                         ? "true or false"
                : f->types & FT_ARRAY                           ? "an array"
                                                                : "an object");
            continue;
        }
        if (f->enums) {
            bool hit = false;
            for (size_t k = 0; k < json_array_size(f->enums) && !hit; k++)
                hit = query_scalar_eq(v, json_array_get(f->enums, k));
            if (!hit) {
                char *list = json_dumps(f->enums, JSON_COMPACT);
                bad(details, f->name, "must be one of %s", list);
                free(list);
                continue;
            }
        }
        double x;
        const char *unit = "";
        if (json_is_number(v)) {
            x = json_number_value(v);
        } else if (json_is_string(v)) {
            x = (double)utf8_chars(json_string_value(v), json_string_length(v));
            unit = " characters";
        } else if (json_is_array(v)) {
            x = (double)json_array_size(v);
            unit = " items";
        } else {
            continue;
        }
        if (f->has_min && x < f->min && f->min == 1 && *unit)
            bad(details, f->name, "must not be empty");
        else if (f->has_min && x < f->min)
            bad(details, f->name, "must be at least %g%s", f->min, unit);
        else if (f->has_max && x > f->max)
            bad(details, f->name, "must be at most %g%s", f->max, unit);
    }
    if (json_array_size(details) == 0) {
        json_decref(details);
        return 0;
    }
    err_set(err, E_INVALID, "the document does not meet the schema of %s", c->name);
    err_details(err, details);
    return -1;
}
