/*
 * sqlite_query.c: where/order/cursor to SQL. See sqlite_query.h.
 */
#include "sqlite_query.h"

#include <string.h>

void sqlq_field_expr(buf_t *b, const char *field)
{
    if (strcmp(field, "id") == 0) {
        buf_puts(b, "id");
        return;
    }
    buf_puts(b, "json_extract(body,'$.");
    buf_puts(b, field);
    buf_puts(b, "')");
}

static void json_type_expr(buf_t *b, const char *field)
{
    buf_puts(b, "json_type(body,'$.");
    buf_puts(b, field);
    buf_puts(b, "')");
}

static void bind(sqlq *q, const json_t *v)
{
    q->binds[q->nbinds].v = v;
    q->binds[q->nbinds++].s = NULL;
    buf_putc(&q->sql, '?');
}

static void bind_text(sqlq *q, const char *text)
{
    q->binds[q->nbinds].v = NULL;
    q->binds[q->nbinds++].s = text;
    buf_putc(&q->sql, '?');
}

/* The SQL of "field equals the scalar v", type-strict. `val` and `type` are
 * the expressions for the field's SQL value and its json type. */
static void eq_expr(sqlq *q, const char *val, const char *type, const json_t *v)
{
    buf_t *s = &q->sql;
    if (json_is_true(v)) {
        buf_printf(s, "(%s=1 AND %s='true')", val, type);
    } else if (json_is_false(v)) {
        buf_printf(s, "(%s=0 AND %s='false')", val, type);
    } else if (json_is_null(v)) {
        buf_printf(s, "(%s IS NULL AND %s='null')", val, type);
    } else if (json_is_string(v)) {
        buf_printf(s, "(%s=", val);
        bind(q, v);
        buf_printf(s, " AND %s='text')", type);
    } else {
        buf_printf(s, "(%s=", val);
        bind(q, v);
        buf_printf(s, " AND %s IN ('integer','real'))", type);
    }
}

static void cond_expr(sqlq *q, const qcond *c)
{
    buf_t *s = &q->sql;
    buf_t val = {0}, type = {0};
    sqlq_field_expr(&val, c->field);
    json_type_expr(&type, c->field);
    static const char *const cmp[] = {[Q_LT] = "<", [Q_LE] = "<=", [Q_GT] = ">", [Q_GE] = ">="};
    switch (c->op) {
    case Q_EQ:
        eq_expr(q, val.p, type.p, c->value);
        break;
    case Q_NE:
        buf_printf(s, "(%s IS NOT NULL AND NOT ", type.p);
        eq_expr(q, val.p, type.p, c->value);
        buf_putc(s, ')');
        break;
    case Q_LT:
    case Q_LE:
    case Q_GT:
    case Q_GE:
        buf_printf(s, "(%s%s", val.p, cmp[c->op]);
        bind(q, c->value);
        if (json_is_string(c->value))
            buf_printf(s, " AND %s='text')", type.p);
        else
            buf_printf(s, " AND %s IN ('integer','real'))", type.p);
        break;
    case Q_IN:
        buf_putc(s, '(');
        for (size_t i = 0; i < json_array_size(c->value); i++) {
            if (i)
                buf_puts(s, " OR ");
            eq_expr(q, val.p, type.p, json_array_get(c->value, i));
        }
        buf_putc(s, ')');
        break;
    case Q_CONTAINS:
        buf_printf(s, "(CASE %s WHEN 'array' THEN EXISTS(SELECT 1 FROM json_each(body,'$.%s') je"
                      " WHERE ", type.p, c->field);
        eq_expr(q, "je.value", "je.type", c->value);
        buf_putc(s, ')');
        if (json_is_string(c->value)) {
            buf_printf(s, " WHEN 'text' THEN instr(%s,", val.p);
            bind(q, c->value);
            buf_puts(s, ")>0");
        }
        buf_puts(s, " ELSE 0 END)");
        break;
    }
    buf_free(&val);
    buf_free(&type);
}

void sqlq_build_list(sqlq *out, const query_t *q, const char *col)
{
    memset(out, 0, sizeof *out);
    buf_t *s = &out->sql;
    buf_t key = {0};
    if (q->order[0])
        sqlq_field_expr(&key, q->order);
    else
        buf_puts(&key, "id");
    buf_printf(s, "SELECT body, %s, id FROM \"c_%s\"", key.p, col);
    int nterms = 0;
    for (int i = 0; i < q->nconds; i++) {
        buf_puts(s, nterms++ ? " AND " : " WHERE ");
        cond_expr(out, &q->conds[i]);
    }
    if (q->has_after) {
        /* Keyset pagination: rows strictly after (key, id) in the order.
         * SQLite sorts NULL first, so ascending NULL keys come first and
         * descending ones last. */
        buf_puts(s, nterms++ ? " AND " : " WHERE ");
        const char *k = key.p, *gt = q->desc ? "<" : ">";
        if (strcmp(k, "id") == 0) {
            buf_printf(s, "id%s", gt);
            bind_text(out, q->after_id);
        } else if (json_is_null(q->after_key)) {
            if (q->desc) {
                buf_printf(s, "(%s IS NULL AND id<", k);
                bind_text(out, q->after_id);
                buf_putc(s, ')');
            } else {
                buf_printf(s, "((%s IS NULL AND id>", k);
                bind_text(out, q->after_id);
                buf_printf(s, ") OR %s IS NOT NULL)", k);
            }
        } else {
            buf_printf(s, "(%s%s", k, gt);
            bind(out, q->after_key);
            buf_printf(s, " OR (%s=", k);
            bind(out, q->after_key);
            buf_printf(s, " AND id%s", gt);
            bind_text(out, q->after_id);
            buf_putc(s, ')');
            if (q->desc)
                buf_printf(s, " OR %s IS NULL", k);
            buf_putc(s, ')');
        }
    }
    buf_printf(s, " ORDER BY ");
    if (q->order[0] && strcmp(q->order, "id") != 0)
        buf_printf(s, "%s %s, ", key.p, q->desc ? "DESC" : "ASC");
    buf_printf(s, "id %s", q->desc ? "DESC" : "ASC");
    if (q->limit > 0)
        buf_printf(s, " LIMIT %d", q->limit + 1);
    buf_free(&key);
}

int sqlq_bind(sqlite3_stmt *stmt, const sqlq *q)
{
    for (int i = 0; i < q->nbinds; i++) {
        const json_t *v = q->binds[i].v;
        int rc;
        if (!v)
            rc = sqlite3_bind_text(stmt, i + 1, q->binds[i].s, -1, SQLITE_STATIC);
        else if (json_is_string(v))
            rc = sqlite3_bind_text(stmt, i + 1, json_string_value(v),
                                   (int)json_string_length(v), SQLITE_STATIC);
        else if (json_is_integer(v))
            rc = sqlite3_bind_int64(stmt, i + 1, json_integer_value(v));
        else if (json_is_real(v))
            rc = sqlite3_bind_double(stmt, i + 1, json_real_value(v));
        else if (json_is_boolean(v))
            rc = sqlite3_bind_int(stmt, i + 1, json_is_true(v));
        else
            rc = sqlite3_bind_null(stmt, i + 1);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

void sqlq_free(sqlq *q) { buf_free(&q->sql); }

json_t *sqlq_value_json(sqlite3_stmt *s, int col)
{
    switch (sqlite3_column_type(s, col)) {
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(s, col));
    case SQLITE_FLOAT:
        return json_real(sqlite3_column_double(s, col));
    case SQLITE_TEXT:
        return json_stringn((const char *)sqlite3_column_text(s, col),
                            (size_t)sqlite3_column_bytes(s, col));
    default:
        return json_null();
    }
}
