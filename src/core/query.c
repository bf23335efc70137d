/*
 * query.c: parsing of where/order/limit/after and matching in memory.
 */
#include "query.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../util/util.h"
#include "doc.h"

static const char *const op_names[] = {
    [Q_EQ] = "eq", [Q_NE] = "ne", [Q_LT] = "lt", [Q_LE] = "le",
    [Q_GT] = "gt", [Q_GE] = "ge", [Q_IN] = "in", [Q_CONTAINS] = "contains",
};

const char *qop_name(qop op) { return op_names[op]; }

void query_init(query_t *q)
{
    memset(q, 0, sizeof *q);
    q->limit = QUERY_LIMIT_DEFAULT;
}

void query_free(query_t *q)
{
    for (int i = 0; i < q->nconds; i++)
        json_decref(q->conds[i].value);
    json_decref(q->after_key);
    free(q->after_id);
    memset(q, 0, sizeof *q);
}

/* ------------------------------------------------------------------ parsing */

int query_check_field(const char *f, size_t n, err_t *err)
{
    if (n == 0 || n > QUERY_FIELD_MAX)
        return err_set(err, E_BAD_REQUEST, "field name must be 1-%d characters", QUERY_FIELD_MAX);
    int depth = 1;
    size_t seg = 0; /* length of the current segment */
    for (size_t i = 0; i < n; i++) {
        char c = f[i];
        if (c == '.') {
            if (seg == 0 || ++depth > QUERY_FIELD_DEPTH)
                return err_set(err, E_BAD_REQUEST,
                               "field must be dotted names, at most %d deep", QUERY_FIELD_DEPTH);
            seg = 0;
            continue;
        }
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        int digit = c >= '0' && c <= '9';
        if (!alpha && !(digit && seg > 0))
            return err_set(err, E_BAD_REQUEST,
                           "field names are letters, digits and _ and do not start with a digit");
        seg++;
    }
    if (seg == 0)
        return err_set(err, E_BAD_REQUEST, "field must not end with '.'");
    return 0;
}

static bool is_scalar(const json_t *v)
{
    return json_is_string(v) || json_is_number(v) || json_is_boolean(v) || json_is_null(v);
}

/* Checks that v suits op; NULL when it does, else why not. */
static const char *value_fits(int op, const json_t *v)
{
    if (op == Q_IN) {
        if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > QUERY_MAX_IN)
            return "in takes an array of 1-100 values";
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!is_scalar(json_array_get(v, i)))
                return "in takes an array of scalars";
        return NULL;
    }
    if (op == Q_LT || op == Q_LE || op == Q_GT || op == Q_GE)
        return json_is_string(v) || json_is_number(v)
                   ? NULL
                   : "lt, le, gt and ge compare with a string or a number";
    return is_scalar(v) ? NULL : "this operator takes a scalar (string, number, boolean or null)";
}

static int find_op(const char *name, size_t n)
{
    for (size_t i = 0; i < ARRAY_LEN(op_names); i++)
        if (strlen(op_names[i]) == n && memcmp(op_names[i], name, n) == 0)
            return (int)i;
    return -1;
}

int query_add_cond(query_t *q, const char *field, size_t flen, const char *opname, size_t oplen,
                   json_t *v, err_t *err)
{
    if (q->nconds == QUERY_MAX_CONDS)
        return err_set(err, E_BAD_REQUEST, "at most %d where clauses", QUERY_MAX_CONDS);
    if (query_check_field(field, flen, err))
        return -1;
    int op = find_op(opname, oplen);
    if (op < 0)
        return err_set(err, E_BAD_REQUEST,
                       "unknown where operator (use eq, ne, lt, le, gt, ge, in, contains)");
    const char *why = value_fits(op, v);
    if (why)
        return err_set(err, E_BAD_REQUEST, "where %.*s: %s", (int)flen, field, why);
    qcond *c = &q->conds[q->nconds++];
    memcpy(c->field, field, flen);
    c->field[flen] = '\0';
    c->op = (qop)op;
    c->value = json_incref(v);
    return 0;
}

int query_add_where(query_t *q, const char *s, size_t n, err_t *err)
{
    const char *c1 = memchr(s, ':', n);
    const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(s + n - c1 - 1)) : NULL;
    if (!c2)
        return err_set(err, E_BAD_REQUEST, "where must be FIELD:OP:JSON");
    size_t flen = (size_t)(c1 - s), oplen = (size_t)(c2 - c1 - 1);
    if (q->nconds == QUERY_MAX_CONDS)
        return err_set(err, E_BAD_REQUEST, "at most %d where clauses", QUERY_MAX_CONDS);
    if (query_check_field(s, flen, err))
        return -1;
    if (find_op(c1 + 1, oplen) < 0)
        return err_set(err, E_BAD_REQUEST,
                       "unknown where operator (use eq, ne, lt, le, gt, ge, in, contains)");
    const char *vtext = c2 + 1;
    size_t vlen = (size_t)(s + n - vtext);
    err_t perr = {0};
    json_t *v = json_parse_strict(vtext, vlen, &perr);
    if (!v) {
        err_set(err, E_BAD_REQUEST, "where value for %.*s is not JSON (strings are quoted: "
                "status:eq:\"pending\")", (int)flen, s);
        err_clear(&perr);
        return -1;
    }
    int rc = query_add_cond(q, s, flen, c1 + 1, oplen, v, err);
    json_decref(v);
    return rc;
}

int query_set_order(query_t *q, const char *s, size_t n, err_t *err)
{
    bool desc = n > 0 && s[0] == '-';
    if (desc) {
        s++;
        n--;
    }
    if (query_check_field(s, n, err))
        return -1;
    memcpy(q->order, s, n);
    q->order[n] = '\0';
    q->desc = desc;
    return 0;
}

int query_set_limit(query_t *q, const char *s, size_t n, err_t *err)
{
    int64_t v;
    if (parse_i64(s, n, &v) || v < 1 || v > QUERY_LIMIT_MAX)
        return err_set(err, E_BAD_REQUEST, "limit must be an integer from 1 to %d",
                       QUERY_LIMIT_MAX);
    q->limit = (int)v;
    return 0;
}

/* A cursor is base64url(JSON ["ORDER", KEY, "ID"]), where ORDER is the order
 * spec it was made under ("" for id, "-f" for descending f). */
static void order_spec(const query_t *q, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s", q->desc ? "-" : "", q->order);
}

char *query_cursor_encode(const query_t *q, const json_t *key, const char *id)
{
    char spec[QUERY_FIELD_MAX + 2];
    order_spec(q, spec, sizeof spec);
    json_t *arr = json_pack("[sOs]", spec, key ? (json_t *)key : json_null(), id);
    char *text = json_dumps(arr, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(arr);
    size_t tlen = strlen(text);
    size_t cap = sodium_base64_ENCODED_LEN(tlen, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = xmalloc(cap);
    sodium_bin2base64(out, cap, (const unsigned char *)text, tlen,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    free(text);
    return out;
}

int query_set_after(query_t *q, const char *s, size_t n, err_t *err)
{
    if (n == 0 || n > 4096)
        return err_set(err, E_BAD_REQUEST, "after: not a cursor from this query");
    unsigned char *bin = xmalloc(n);
    size_t blen = 0;
    int rc = sodium_base642bin(bin, n, s, n, NULL, &blen, NULL,
                               sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    json_t *arr = NULL;
    if (rc == 0)
        arr = json_loadb((const char *)bin, blen, JSON_REJECT_DUPLICATES, NULL);
    free(bin);
    char spec[QUERY_FIELD_MAX + 2];
    order_spec(q, spec, sizeof spec);
    json_t *jspec = json_array_get(arr, 0), *key = json_array_get(arr, 1),
           *id = json_array_get(arr, 2);
    if (!json_is_array(arr) || json_array_size(arr) != 3 || !json_is_string(jspec) ||
        !json_is_string(id) || !key || json_is_object(key) || json_is_array(key)) {
        json_decref(arr);
        return err_set(err, E_BAD_REQUEST, "after: not a cursor from this query");
    }
    if (strcmp(json_string_value(jspec), spec) != 0) {
        json_decref(arr);
        return err_set(err, E_BAD_REQUEST, "after: the cursor was made for another order");
    }
    q->has_after = true;
    q->after_key = json_incref(key);
    q->after_id = xstrdup(json_string_value(id));
    json_decref(arr);
    return 0;
}

/* ------------------------------------------------------------------ matching */

json_t *query_field(const json_t *doc, const char *field)
{
    const json_t *cur = doc;
    const char *p = field;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (!json_is_object(cur))
            return NULL;
        cur = json_object_getn(cur, p, n);
        if (!cur || !dot)
            return (json_t *)cur;
        p = dot + 1;
    }
}

/* An integer against a real, exactly, as SQLite compares them (converting
 * the integer to double would call 2^53+1 equal to 2^53). JSON has no NaN. */
static int int_real_cmp(int64_t i, double r)
{
    if (r >= 9223372036854775808.0)
        return -1;
    if (r < -9223372036854775808.0)
        return 1;
    int64_t t = (int64_t)r; /* in range now; truncates toward zero */
    if (i != t)
        return i < t ? -1 : 1;
    double frac = r - (double)t; /* exact: t is r without its fraction */
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

/* Three-way compare of two values of one class; *ok = false when their
 * classes differ (type-strict: then no ordering holds). */
static int compare(const json_t *a, const json_t *b, bool *ok)
{
    *ok = true;
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b)) {
            json_int_t x = json_integer_value(a), y = json_integer_value(b);
            return (x > y) - (x < y);
        }
        if (json_is_integer(a))
            return int_real_cmp(json_integer_value(a), json_real_value(b));
        if (json_is_integer(b))
            return -int_real_cmp(json_integer_value(b), json_real_value(a));
        double x = json_real_value(a), y = json_real_value(b);
        return (x > y) - (x < y);
    }
    if (json_is_string(a) && json_is_string(b)) {
        size_t la = json_string_length(a), lb = json_string_length(b);
        int c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
        if (c)
            return c < 0 ? -1 : 1;
        return (la > lb) - (la < lb);
    }
    *ok = false;
    return 0;
}

static bool scalar_eq(const json_t *field, const json_t *v);

int query_compare(const json_t *a, const json_t *b, bool *ok) { return compare(a, b, ok); }

bool query_scalar_eq(const json_t *a, const json_t *b) { return scalar_eq(a, b); }

static bool scalar_eq(const json_t *field, const json_t *v)
{
    if (json_is_boolean(v) || json_is_null(v))
        return json_typeof(field) == json_typeof(v);
    bool ok;
    int c = compare(field, v, &ok);
    return ok && c == 0;
}

bool qcond_match(const qcond *c, const json_t *doc)
{
    const json_t *f = query_field(doc, c->field);
    if (!f)
        return false;
    bool ok;
    int cmp;
    switch (c->op) {
    case Q_EQ:
        return scalar_eq(f, c->value);
    case Q_NE:
        return !scalar_eq(f, c->value);
    case Q_LT:
    case Q_LE:
    case Q_GT:
    case Q_GE:
        cmp = compare(f, c->value, &ok);
        if (!ok)
            return false;
        return c->op == Q_LT ? cmp < 0 : c->op == Q_LE ? cmp <= 0 : c->op == Q_GT ? cmp > 0
                                                                                : cmp >= 0;
    case Q_IN:
        for (size_t i = 0; i < json_array_size(c->value); i++)
            if (scalar_eq(f, json_array_get(c->value, i)))
                return true;
        return false;
    case Q_CONTAINS:
        if (json_is_array(f)) {
            for (size_t i = 0; i < json_array_size(f); i++)
                if (scalar_eq(json_array_get(f, i), c->value))
                    return true;
            return false;
        }
        if (json_is_string(f) && json_is_string(c->value)) {
            size_t hl = json_string_length(f), nl = json_string_length(c->value);
            if (nl == 0)
                return true;
            return nl <= hl && memmem(json_string_value(f), hl, json_string_value(c->value), nl);
        }
        return false;
    }
    return false;
}

bool query_match(const query_t *q, const json_t *doc)
{
    for (int i = 0; i < q->nconds; i++)
        if (!qcond_match(&q->conds[i], doc))
            return false;
    return true;
}

/* ------------------------------------------------------------------ order */

json_t *query_order_key(const query_t *q, const json_t *doc)
{
    const char *field = q->order[0] ? q->order : "id";
    const json_t *v = query_field(doc, field);
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_TRUE:
        return json_integer(1);
    case JSON_FALSE:
        return json_integer(0);
    case JSON_INTEGER:
    case JSON_REAL:
    case JSON_STRING:
        return json_incref((json_t *)v);
    case JSON_OBJECT:
    case JSON_ARRAY: {
        char *text = json_dumps(v, JSON_COMPACT);
        json_t *s = json_string(text ? text : "");
        free(text);
        return s;
    }
    default:
        return json_null();
    }
}

/* null, then numbers (exactly), then text (bytes). */
static int key_cmp(const json_t *a, const json_t *b)
{
    int ra = json_is_null(a) ? 0 : json_is_number(a) ? 1 : 2;
    int rb = json_is_null(b) ? 0 : json_is_number(b) ? 1 : 2;
    if (ra != rb)
        return ra < rb ? -1 : 1;
    if (ra == 0)
        return 0;
    bool ok;
    return compare(a, b, &ok);
}

int query_order_cmp(const query_t *q, const json_t *ka, const char *ida, const json_t *kb,
                    const char *idb)
{
    int c = key_cmp(ka, kb);
    if (c == 0) {
        c = strcmp(ida, idb);
        c = (c > 0) - (c < 0);
    }
    return q->desc ? -c : c;
}

bool query_after_cursor(const query_t *q, const json_t *key, const char *id)
{
    return !q->has_after || query_order_cmp(q, key, id, q->after_key, q->after_id) > 0;
}
