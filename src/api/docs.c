/*
 * docs.c: documents: get, create, put, patch, delete, list, and batches.
 *
 * Everything a request carries is checked here, on the loop thread,
 * before a job reaches the writer: a bad request costs no disk work and
 * cannot change stored data. The writer decides only what needs the
 * stored state (existence, versions, idempotency).
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/doc.h"
#include "../core/query.h"

#define BATCH_MAX_OPS 1000
#define IDEM_KEY_MAX 255

/* ------------------------------------------------------------------ headers */

/* If-Match: "N", N or W/"N" -> N; "*" -> -2 (must exist); absent -> -1. */
static int parse_if_match(const http_req *req, int64_t *out, err_t *err)
{
    size_t n;
    const char *v = http_header_get(req, "if-match", &n);
    *out = -1;
    if (!v)
        return 0;
    if (n == 1 && v[0] == '*') {
        *out = -2;
        return 0;
    }
    if (n >= 2 && v[0] == 'W' && v[1] == '/') {
        v += 2;
        n -= 2;
    }
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v++;
        n -= 2;
    }
    if (parse_i64(v, n, out) || *out < 0)
        return err_set(err, E_BAD_REQUEST, "If-Match must be a version: \"3\"");
    return 0;
}

static int idempotency_key(const http_req *req, char **out, err_t *err)
{
    size_t n;
    const char *v = http_header_get(req, "idempotency-key", &n);
    *out = NULL;
    if (!v)
        return 0;
    if (n == 0 || n > IDEM_KEY_MAX)
        return err_set(err, E_BAD_REQUEST, "Idempotency-Key must be 1-255 characters");
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x21 || v[i] > 0x7e)
            return err_set(err, E_BAD_REQUEST, "Idempotency-Key must be printable ASCII");
    *out = xstrndup(v, n);
    return 0;
}

/* ------------------------------------------------------------------ answers */

static void etag_header(buf_t *h, int64_t version)
{
    buf_puts(h, "ETag: \"");
    buf_put_i64(h, version);
    buf_puts(h, "\"\r\n");
}

static void on_write_done(wjob *job)
{
    conn_t *c = job->ctx;
    if (respond_ok(c, &job->err)) {
        buf_t h = {0};
        if (!job->is_batch) {
            etag_header(&h, job->version);
            if (job->status == 201 && job->nops == 1) {
                buf_puts(&h, "Location: /v1/c/");
                buf_puts(&h, job->ops[0].col);
                buf_putc(&h, '/');
                buf_puts(&h, job->ops[0].id);
                buf_puts(&h, "\r\n");
            }
        }
        if (job->replayed)
            buf_puts(&h, "Idempotent-Replayed: true\r\n");
        conn_respond_buf(c, job->status, "application/json", h.p, &job->answer);
        buf_free(&h);
    }
    conn_unref(c);
    wjob_free(job);
}

static void submit(app_t *app, conn_t *c, wjob *job)
{
    job->done = on_write_done;
    job->ctx = conn_ref(c);
    store_submit(app->store, job);
}

/* ------------------------------------------------------------------ single writes */

void docs_write(app_t *app, conn_t *c, http_req *req, const char *col, const char *id)
{
    err_t e = {0};
    actor_t who;
    int m = req->method;
    if (api_auth(app, c, req, &who, &e))
        return respond_err(c, &e);
    if (col[0] == '_')
        return respond_simple(c, E_FORBIDDEN, "collections starting with _ are the server's");

    /* Access is the writer's to decide: it holds the stored document the
     * rules may look at. */
    wjob *job = wjob_new(WJ_OPS, 1);
    job->actor = who;
    wop *op = &job->ops[0];
    snprintf(op->col, sizeof op->col, "%s", col);
    if (m != HTTP_POST && parse_if_match(req, &op->if_version, &e))
        goto bad;
    if (m == HTTP_DELETE) {
        op->kind = W_DELETE;
        op->id = xstrdup(id);
        return submit(app, c, job);
    }
    op->doc = doc_parse_object(req->body, req->body_len, &e);
    if (!op->doc)
        goto bad;
    if (doc_take_server_fields(op->doc, id, m == HTTP_POST ? &op->id : NULL, &e))
        goto bad;
    if (m == HTTP_POST) {
        op->kind = W_CREATE;
        if (idempotency_key(req, &job->idem_key, &e))
            goto bad;
        if (job->idem_key)
            job->idem_account = xstrdup(who.id);
        if (!op->id) {
            op->id = xmalloc(DOC_GEN_ID_LEN + 1);
            time_ordered_id(op->id, DOC_GEN_ID_LEN);
        }
    } else {
        op->kind = m == HTTP_PUT ? W_PUT : W_PATCH;
        op->id = xstrdup(id);
    }
    return submit(app, c, job);
bad:
    wjob_free(job);
    respond_err(c, &e);
}

/* ------------------------------------------------------------------ get */

static void on_get_done(rjob *job)
{
    conn_t *c = job->ctx;
    if (respond_ok(c, &job->err)) {
        if (!job->found) {
            char msg[256];
            snprintf(msg, sizeof msg, "no document %s in %s", job->id, job->col);
            respond_simple(c, E_NOT_FOUND, msg);
        } else {
            buf_t h = {0};
            etag_header(&h, job->version);
            conn_respond_buf(c, 200, "application/json", h.p, &job->out);
            buf_free(&h);
        }
    }
    conn_unref(c);
    rjob_free(job);
}

void docs_get(app_t *app, conn_t *c, http_req *req, const char *col, const char *id)
{
    err_t e = {0};
    actor_t who;
    if (api_auth(app, c, req, &who, &e))
        return respond_err(c, &e);
    rjob *job = rjob_new(R_GET);
    job->actor = who;
    snprintf(job->col, sizeof job->col, "%s", col);
    job->id = xstrdup(id);
    job->done = on_get_done;
    job->ctx = conn_ref(c);
    store_read(app->store, job);
}

/* ------------------------------------------------------------------ list */

static void on_list_done(rjob *job)
{
    conn_t *c = job->ctx;
    if (respond_ok(c, &job->err))
        conn_respond_buf(c, 200, "application/json", NULL, &job->out);
    conn_unref(c);
    rjob_free(job);
}

void docs_list(app_t *app, conn_t *c, http_req *req, const char *col)
{
    err_t e = {0};
    actor_t who;
    params_t p;
    if (api_auth(app, c, req, &who, &e))
        return respond_err(c, &e);
    if (params_parse(&p, req, &e))
        return respond_err(c, &e);
    rjob *job = rjob_new(R_LIST);
    job->actor = who;
    snprintf(job->col, sizeof job->col, "%s", col);
    query_t *q = &job->query;
    const char *after = NULL;
    size_t after_len = 0;
    int rc = 0;
    /* Order before after: the cursor names the order it was made for. */
    for (int i = 0; i < p.n && rc == 0; i++) {
        const char *k = p.kv[i].key, *v = p.kv[i].value;
        size_t n = p.kv[i].value_len;
        if (strcmp(k, "where") == 0)
            rc = query_add_where(q, v, n, &e);
        else if (strcmp(k, "order") == 0)
            rc = query_set_order(q, v, n, &e);
        else if (strcmp(k, "limit") == 0)
            rc = query_set_limit(q, v, n, &e);
        else if (strcmp(k, "after") == 0) {
            after = v;
            after_len = n;
        } else
            rc = err_set(&e, E_BAD_REQUEST,
                         "unknown query parameter %.40s (use where, order, limit, after)", k);
    }
    if (rc == 0 && after)
        rc = query_set_after(q, after, after_len, &e);
    if (rc) {
        params_free(&p);
        rjob_free(job);
        return respond_err(c, &e);
    }
    params_free(&p);
    for (int i = 0; i < q->nconds; i++)
        store_want_index(app->store, col, q->conds[i].field);
    if (q->order[0])
        store_want_index(app->store, col, q->order);
    job->done = on_list_done;
    job->ctx = conn_ref(c);
    store_read(app->store, job);
}

/* ------------------------------------------------------------------ batch */

static int batch_op(wop *op, json_t *o, err_t *e)
{
    static const char *const kinds[] = {[W_CREATE] = "create", [W_PUT] = "put",
                                        [W_PATCH] = "patch", [W_DELETE] = "delete"};
    if (!json_is_object(o))
        return err_set(e, E_BAD_REQUEST, "each op is an object");
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (strcmp(key, "op") && strcmp(key, "col") && strcmp(key, "id") && strcmp(key, "doc") &&
            strcmp(key, "if_version"))
            return err_set(e, E_BAD_REQUEST, "unknown op field %.40s", key);
    }
    const char *kind = json_string_value(json_object_get(o, "op"));
    int k = -1;
    for (int i = 0; kind && i < 4; i++)
        if (strcmp(kind, kinds[i]) == 0)
            k = i;
    if (k < 0)
        return err_set(e, E_BAD_REQUEST, "op must be create, put, patch or delete");
    op->kind = (wop_kind)k;
    json_t *col = json_object_get(o, "col");
    if (!json_is_string(col))
        return err_set(e, E_BAD_REQUEST, "col must be a string");
    if (doc_check_collection(json_string_value(col), json_string_length(col), e))
        return -1;
    snprintf(op->col, sizeof op->col, "%s", json_string_value(col));
    json_t *id = json_object_get(o, "id");
    if (id) {
        if (!json_is_string(id))
            return err_set(e, E_BAD_REQUEST, "id must be a string");
        if (doc_check_id(json_string_value(id), json_string_length(id), e))
            return -1;
        op->id = xstrdup(json_string_value(id));
    } else if (op->kind != W_CREATE) {
        return err_set(e, E_BAD_REQUEST, "%s needs an id", kinds[k]);
    }
    json_t *iv = json_object_get(o, "if_version");
    if (iv) {
        if (!json_is_integer(iv) || json_integer_value(iv) < 0)
            return err_set(e, E_BAD_REQUEST, "if_version must be an integer >= 0");
        op->if_version = json_integer_value(iv);
    }
    json_t *doc = json_object_get(o, "doc");
    if (op->kind == W_DELETE) {
        if (doc)
            return err_set(e, E_BAD_REQUEST, "delete takes no doc");
        return 0;
    }
    if (!json_is_object(doc))
        return err_set(e, E_BAD_REQUEST, "%s needs a doc object", kinds[k]);
    op->doc = json_incref(doc);
    char *body_id = NULL;
    if (doc_take_server_fields(op->doc, op->id, op->id ? NULL : &body_id, e))
        return -1;
    if (!op->id) {
        op->id = body_id;
        if (!op->id) {
            op->id = xmalloc(DOC_GEN_ID_LEN + 1);
            time_ordered_id(op->id, DOC_GEN_ID_LEN);
        }
    }
    return 0;
}

void docs_batch(app_t *app, conn_t *c, http_req *req)
{
    err_t e = {0};
    actor_t who;
    json_t *body = api_auth_body(app, c, req, &who);
    if (!body)
        return;
    json_t *ops = json_object_get(body, "ops");
    if (!json_is_array(ops) || json_array_size(ops) == 0 ||
        json_array_size(ops) > BATCH_MAX_OPS || json_object_size(body) != 1) {
        json_decref(body);
        return respond_simple(c, E_BAD_REQUEST,
                              "the body must be {\"ops\":[...]} with 1-1000 ops");
    }
    int n = (int)json_array_size(ops);
    wjob *job = wjob_new(WJ_OPS, n);
    job->is_batch = true;
    job->actor = who;
    for (int i = 0; i < n; i++) {
        wop *op = &job->ops[i];
        batch_op(op, json_array_get(ops, (size_t)i), &e);
        if (e.code) {
            err_details(&e, json_pack("{si}", "index", i));
            json_decref(body);
            wjob_free(job);
            return respond_err(c, &e);
        }
    }
    json_decref(body);
    if (idempotency_key(req, &job->idem_key, &e)) {
        wjob_free(job);
        return respond_err(c, &e);
    }
    if (job->idem_key)
        job->idem_account = xstrdup(who.id);
    submit(app, c, job);
}
