/*
 * memstore.c: the in-memory store of memstore.h.
 */
#include "memstore.h"

#include <stdlib.h>
#include <string.h>

#include "../../src/core/apps.h"

memstore *memstore_new(void)
{
    memstore *m = xcalloc(1, sizeof *m);
    m->state = json_pack("{s{}s[]s[]s{}s{}s{}}", "cols", "changes", "activity", "idem", "creds",
                         "sessions");
    return m;
}

void memstore_free(memstore *m)
{
    json_decref(m->state);
    json_decref(m->at_begin);
    json_decref(m->at_savepoint);
    free(m);
}

static json_t *part(memstore *m, const char *name) { return json_object_get(m->state, name); }

static json_t *col_rows(memstore *m, const char *col)
{
    json_t *cols = part(m, "cols"), *c = json_object_get(cols, col);
    if (!c) {
        c = json_object();
        json_object_set_new(cols, col, c);
    }
    return c;
}

const char *memstore_body(memstore *m, const char *col, const char *id)
{
    return json_string_value(json_object_get(json_object_get(col_rows(m, col), id), "b"));
}

/* Goes back to a copy kept earlier (which is used up). */
static void restore(memstore *m, json_t **saved)
{
    if (!*saved)
        return;
    json_decref(m->state);
    m->state = *saved;
    *saved = NULL;
}

static int m_begin(void *s, err_t *err)
{
    memstore *m = s;
    if (m->at_begin)
        return err_set(err, E_INTERNAL, "a transaction is open");
    m->at_begin = json_deep_copy(m->state);
    return 0;
}

static int m_commit(void *s, err_t *err)
{
    memstore *m = s;
    json_decref(m->at_begin);
    m->at_begin = NULL;
    return 0;
}

static void m_rollback(void *s)
{
    memstore *m = s;
    json_decref(m->at_savepoint);
    m->at_savepoint = NULL;
    restore(m, &m->at_begin);
}

static int m_savepoint(void *s, err_t *err)
{
    memstore *m = s;
    if (!m->at_begin || m->at_savepoint)
        return err_set(err, E_INTERNAL, "savepoint outside a transaction, or nested");
    m->at_savepoint = json_deep_copy(m->state);
    return 0;
}

static void m_release(void *s)
{
    memstore *m = s;
    json_decref(m->at_savepoint);
    m->at_savepoint = NULL;
}

static void m_rollback_to(void *s) { restore(s, &((memstore *)s)->at_savepoint); }
static bool m_in_tx(void *s) { return ((memstore *)s)->at_begin != NULL; }

static int m_ensure_col(void *s, const char *col, err_t *err)
{
    col_rows(s, col);
    return 0;
}

static int m_auto_index(void *s, const char *col, const char *field, err_t *err) { return 0; }

static int m_get(void *s, const char *col, const char *id, txn_row *row, err_t *err)
{
    json_t *r = json_object_get(col_rows(s, col), id);
    if (!r)
        return 0;
    row->version = json_integer_value(json_object_get(r, "v"));
    row->created = xstrdup(json_string_value(json_object_get(r, "c")));
    buf_puts(&row->body, json_string_value(json_object_get(r, "b")));
    return TXN_FOUND;
}

/* The schema field whose unique value another document of col holds, or -1. */
static int unique_clash(memstore *m, const char *col, const char *id, const json_t *doc)
{
    const col_spec *spec = apps_col(col);
    for (int i = 0; spec && i < spec->nfields; i++) {
        json_t *v = spec->fields[i].unique ? query_field(doc, spec->fields[i].name) : NULL;
        if (!v)
            continue;
        const char *other;
        json_t *r;
        json_object_foreach(col_rows(m, col), other, r) {
            if (strcmp(other, id) == 0)
                continue;
            json_t *d = json_loads(json_string_value(json_object_get(r, "b")), 0, NULL);
            bool same = json_equal(query_field(d, spec->fields[i].name), v);
            json_decref(d);
            if (same)
                return i;
        }
    }
    return -1;
}

static int m_put(void *s, const char *col, const char *id, int64_t version, const char *created,
                 const char *now, const char *body, size_t len, int *slot, err_t *err)
{
    memstore *m = s;
    json_t *rows = col_rows(m, col), *r = json_object_get(rows, id);
    if (created && r)
        return TXN_EXISTS;
    if (!created && !r)
        return err_set(err, E_INTERNAL, "update of a missing row %s", id);
    json_t *doc = json_loadb(body, len, 0, NULL);
    *slot = unique_clash(m, col, id, doc);
    json_decref(doc);
    if (*slot >= 0)
        return TXN_UNIQUE;
    const char *c = created ? created : json_string_value(json_object_get(r, "c"));
    json_object_set_new(rows, id, json_pack("{sIssssss#}", "v", (json_int_t)version, "c", c, "u",
                                            now, "b", body, (int)len));
    return 0;
}

static int m_del(void *s, const char *col, const char *id, err_t *err)
{
    json_object_del(col_rows(s, col), id);
    return 0;
}

static int by_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static json_t *m_find(void *s, const char *col, const query_t *q)
{
    json_t *rows = col_rows(s, col), *out = json_array();
    size_t n = json_object_size(rows), i = 0;
    const char **ids = xcalloc(n + 1, sizeof *ids);
    const char *id;
    json_t *r;
    json_object_foreach(rows, id, r) ids[i++] = id;
    qsort(ids, n, sizeof *ids, by_key);
    for (i = 0; i < n && (q->limit <= 0 || json_array_size(out) < (size_t)q->limit); i++) {
        r = json_object_get(rows, ids[i]);
        json_t *d = json_loads(json_string_value(json_object_get(r, "b")), 0, NULL);
        if (d && query_match(q, d))
            json_array_append(out, d);
        json_decref(d);
    }
    free(ids);
    return out;
}

static int m_append_change(void *s, const change_t *ch, err_t *err)
{
    json_array_append_new(part(s, "changes"),
                          json_pack("{sIssssss}", "seq", (json_int_t)ch->seq, "col", ch->col,
                                    "id", ch->id, "op", change_op_name(ch->op)));
    return 0;
}

static int m_append_activity(void *s, int64_t seq, int64_t at_ms, const char *account,
                             const char *action, const char *entry, size_t len,
                             const char hash_hex[64], err_t *err)
{
    json_array_append_new(part(s, "activity"),
                          json_pack("{sIssss#ss#}", "seq", (json_int_t)seq, "action", action,
                                    "entry", entry, (int)len, "hash", hash_hex, 64));
    return 0;
}

static char *idem_key(const char *account, const char *key)
{
    buf_t b = {0};
    buf_printf(&b, "%s\t%s", account, key);
    return buf_take(&b, NULL);
}

static int m_idem_get(void *s, const char *account, const char *key, int64_t since_ms,
                      int *status, int64_t *version, buf_t *body)
{
    char *k = idem_key(account, key);
    json_t *r = json_object_get(part(s, "idem"), k);
    free(k);
    if (!r || json_integer_value(json_object_get(r, "at")) <= since_ms)
        return 0;
    *status = (int)json_integer_value(json_object_get(r, "status"));
    *version = json_integer_value(json_object_get(r, "version"));
    buf_puts(body, json_string_value(json_object_get(r, "body")));
    return TXN_FOUND;
}

static int m_idem_put(void *s, const char *account, const char *key, int64_t at_ms, int status,
                      int64_t version, const char *body, size_t len, err_t *err)
{
    char *k = idem_key(account, key);
    json_object_set_new(part(s, "idem"), k,
                        json_pack("{sIsisIss#}", "at", (json_int_t)at_ms, "status", status,
                                  "version", (json_int_t)version, "body", body, (int)len));
    free(k);
    return 0;
}

static int m_cred_put(void *s, const char *account, const char *hash, err_t *err)
{
    json_object_set_new(part(s, "creds"), account, json_string(hash));
    return 0;
}

static int m_session_put(void *s, const char *token_hash, const char *session,
                         const char *account, int64_t created_ms, int64_t expires_ms, err_t *err)
{
    json_object_set_new(part(s, "sessions"), token_hash,
                        json_pack("{sssssI}", "session", session, "account", account,
                                  "expires_at", (json_int_t)expires_ms));
    return 0;
}

static int m_session_del(void *s, const char *token_hash, err_t *err)
{
    json_object_del(part(s, "sessions"), token_hash);
    return 0;
}

static int m_sessions_del(void *s, const char *account, err_t *err)
{
    json_t *sessions = part(s, "sessions"), *r;
    const char *k;
    void *tmp;
    json_object_foreach_safe(sessions, tmp, k, r)
        if (strcmp(json_string_value(json_object_get(r, "account")), account) == 0)
            json_object_del(sessions, k);
    return 0;
}

static int m_probe(void *s, int64_t now_ms, err_t *err) { return 0; }

const txn_methods memstore_methods = {TXN_METHODS(m)};
