/*
 * respond.c: what every handler shares: error answers (the body is built
 * by err_body, core/err.c) and the query string, decoded.
 */
#include "respond.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void respond_err(conn_t *c, err_t *e)
{
    conn_respond_error(c, e, NULL);
    err_clear(e);
}

void respond_simple(conn_t *c, err_code code, const char *msg)
{
    err_t e = {0};
    err_set(&e, code, "%s", msg);
    respond_err(c, &e);
}

void respond_method(conn_t *c, const char *allow)
{
    err_t e = {0};
    err_set(&e, E_METHOD_NOT_ALLOWED, "this path takes %s", allow);
    char hdr[96];
    snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
    conn_respond_error(c, &e, hdr);
    err_clear(&e);
}

/* ------------------------------------------------------------------ query string */

/* On error nothing stays allocated in p: callers return without
 * params_free. */
int params_parse(params_t *p, const http_req *r, err_t *err)
{
    memset(p, 0, sizeof *p);
    if (!r->query)
        return 0;
    const char *s = r->query, *end = r->query + r->query_len;
    buf_t k = {0}, v = {0};
    while (s < end) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *stop = amp ? amp : end;
        if (stop > s) {
            const char *eq = memchr(s, '=', (size_t)(stop - s));
            const char *kend = eq ? eq : stop;
            if (p->n == PARAMS_MAX) {
                err_set(err, E_BAD_REQUEST, "more than %d query parameters", PARAMS_MAX);
                goto fail;
            }
            if (http_unescape(s, (size_t)(kend - s), true, &k) ||
                http_unescape(eq ? eq + 1 : stop, eq ? (size_t)(stop - eq - 1) : 0, true, &v)) {
                err_set(err, E_BAD_REQUEST, "bad percent-encoding in the query string");
                goto fail;
            }
            p->kv[p->n].key = buf_take(&k, NULL);
            p->kv[p->n].value = buf_take(&v, &p->kv[p->n].value_len);
            p->n++;
        }
        s = stop + 1;
    }
    return 0;
fail:
    buf_free(&k);
    buf_free(&v);
    params_free(p);
    return -1;
}

void params_free(params_t *p)
{
    for (int i = 0; i < p->n; i++) {
        free(p->kv[i].key);
        free(p->kv[i].value);
    }
    p->n = 0;
}

int params_each(const http_req *r, param_fn one, void *ctx, err_t *err)
{
    params_t p;
    if (params_parse(&p, r, err))
        return -1;
    int rc = 0;
    for (int i = 0; i < p.n && rc == 0; i++)
        rc = one(ctx, p.kv[i].key, p.kv[i].value, p.kv[i].value_len, err);
    params_free(&p);
    return rc;
}

bool respond_ok(conn_t *c, err_t *err)
{
    if (!conn_open(c))
        return false;
    if (err->code) {
        respond_err(c, err);
        return false;
    }
    return true;
}

void respond_items(conn_t *c, const char *name, const buf_t *items, const char *rest)
{
    buf_t b = {0};
    buf_reserve(&b, items->len + strlen(name) + strlen(rest) + 8);
    buf_puts(&b, "{\"");
    buf_puts(&b, name);
    buf_puts(&b, "\":[");
    buf_put(&b, items->p, items->len);
    buf_putc(&b, ']');
    buf_puts(&b, rest);
    conn_respond_buf(c, 200, "application/json", NULL, &b);
}
