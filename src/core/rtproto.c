/*
 * rtproto.c: see rtproto.h.
 */
#include "rtproto.h"

#include <string.h>

#include "doc.h"

static const char *const system_cols[] = {"_presence", "_activity"};

bool rt_col_ok(const char *col, size_t n)
{
    for (size_t i = 0; i < sizeof system_cols / sizeof *system_cols; i++)
        if (strlen(system_cols[i]) == n && memcmp(system_cols[i], col, n) == 0)
            return true;
    err_t e = {0};
    bool ok = doc_check_collection(col, n, &e) == 0;
    err_clear(&e);
    return ok;
}

static int id_field(json_t *o, const char *name, char *out, size_t cap, bool required,
                    err_t *err)
{
    json_t *v = json_object_get(o, name);
    if (!v) {
        if (required)
            return err_set(err, E_BAD_REQUEST, "\"%s\" is required", name);
        return 0;
    }
    size_t n = json_is_string(v) ? json_string_length(v) : 0;
    if (n == 0 || n >= cap)
        return err_set(err, E_BAD_REQUEST, "\"%s\" must be a string of 1-%zu characters", name,
                       cap - 1);
    const char *s = json_string_value(v);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            return err_set(err, E_BAD_REQUEST, "\"%s\" holds a control character", name);
    memcpy(out, s, n + 1);
    return 0;
}

static int parse_where(json_t *w, query_t **out, err_t *err)
{
    if (!json_is_array(w))
        return err_set(err, E_BAD_REQUEST, "\"where\" is a list of [field, op, value]");
    if (json_array_size(w) == 0)
        return 0;
    query_t *q = xmalloc(sizeof *q);
    query_init(q);
    for (size_t i = 0; i < json_array_size(w); i++) {
        json_t *c = json_array_get(w, i);
        json_t *f = json_array_get(c, 0), *op = json_array_get(c, 1), *v = json_array_get(c, 2);
        if (!json_is_array(c) || json_array_size(c) != 3 || !json_is_string(f) ||
            !json_is_string(op)) {
            query_free(q);
            free(q);
            return err_set(err, E_BAD_REQUEST, "\"where\"[%zu] must be [field, op, value]", i);
        }
        if (query_add_cond(q, json_string_value(f), json_string_length(f), json_string_value(op),
                           json_string_length(op), v, err)) {
            query_free(q);
            free(q);
            return -1;
        }
    }
    *out = q;
    return 0;
}

static int parse_sub(json_t *o, rt_msg *m, err_t *err)
{
    if (id_field(o, "col", m->col, sizeof m->col, true, err))
        return -1;
    if (!rt_col_ok(m->col, strlen(m->col)))
        return err_set(err, E_BAD_REQUEST, "no collection may be called %s", m->col);
    json_t *w = json_object_get(o, "where");
    if (w && !json_is_null(w) && parse_where(w, &m->where, err))
        return -1;
    json_t *d = json_object_get(o, "doc");
    if (d && !json_is_null(d)) {
        if (!json_is_string(d) ||
            doc_check_id(json_string_value(d), json_string_length(d), err))
            return err->code ? -1 : err_set(err, E_BAD_REQUEST, "\"doc\" must be an id");
        m->doc = xstrdup(json_string_value(d));
    }
    json_t *s = json_object_get(o, "since");
    if (s && !json_is_null(s)) {
        if (!json_is_integer(s) || json_integer_value(s) < 0)
            return err_set(err, E_BAD_REQUEST, "\"since\" must be a seq (an integer >= 0)");
        m->has_since = true;
        m->since = json_integer_value(s);
    }
    return 0;
}

int rt_parse(const char *text, size_t len, rt_msg *m, err_t *err)
{
    memset(m, 0, sizeof *m);
    json_t *o = json_parse_strict(text, len, err);
    if (!o)
        return -1;
    int rc = -1;
    if (!json_is_object(o)) {
        err_set(err, E_BAD_REQUEST, "a message is a JSON object with a \"t\"");
        goto out;
    }
    /* The id first, so that an error about the rest can name it. */
    json_t *t = json_object_get(o, "t");
    const char *type = json_string_value(t);
    if (!type) {
        err_set(err, E_BAD_REQUEST, "a message needs \"t\": sub, unsub, call, presence or ping");
        goto out;
    }
    if (strcmp(type, "ping") == 0) {
        m->type = RT_PING;
        rc = 0;
    } else if (strcmp(type, "sub") == 0) {
        m->type = RT_SUB;
        rc = id_field(o, "id", m->id, sizeof m->id, true, err) || parse_sub(o, m, err) ? -1 : 0;
    } else if (strcmp(type, "unsub") == 0) {
        m->type = RT_UNSUB;
        rc = id_field(o, "id", m->id, sizeof m->id, true, err);
    } else if (strcmp(type, "call") == 0) {
        m->type = RT_CALL;
        if (id_field(o, "id", m->id, sizeof m->id, true, err) ||
            id_field(o, "fn", m->fn, sizeof m->fn, true, err))
            goto out;
        json_t *a = json_object_get(o, "args");
        if (a && !json_is_null(a) && !json_is_object(a)) {
            err_set(err, E_BAD_REQUEST, "\"args\" must be an object");
            goto out;
        }
        m->args = a && json_is_object(a) ? json_incref(a) : json_object();
        rc = 0;
    } else if (strcmp(type, "presence") == 0) {
        m->type = RT_PRESENCE;
        json_t *s = json_object_get(o, "state");
        if (!s) {
            err_set(err, E_BAD_REQUEST, "presence needs \"state\"");
            goto out;
        }
        char *txt = json_dumps(s, JSON_COMPACT | JSON_ENCODE_ANY);
        size_t n = txt ? strlen(txt) : 0;
        free(txt);
        if (n > RT_STATE_MAX) {
            err_set(err, E_BAD_REQUEST, "a presence state is at most %d bytes", RT_STATE_MAX);
            goto out;
        }
        m->state = json_incref(s);
        rc = 0;
    } else {
        err_set(err, E_BAD_REQUEST, "unknown message type (use sub, unsub, call, presence, ping)");
    }
out:
    json_decref(o);
    if (rc)
        rt_msg_free(m);
    return rc;
}

void rt_msg_free(rt_msg *m)
{
    if (m->where) {
        query_free(m->where);
        free(m->where);
    }
    free(m->doc);
    json_decref(m->args);
    json_decref(m->state);
    m->where = NULL;
    m->doc = NULL;
    m->args = m->state = NULL;
}
