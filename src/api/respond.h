/*
 * respond.h: error answers and the query string, for every handler
 * (respond.c).
 */
#ifndef LIVEDB_RESPOND_H
#define LIVEDB_RESPOND_H

#include <stdbool.h>

#include "../core/err.h"
#include "../net/http.h"
#include "../net/server.h"

/* Parsed query string: decoded key/value pairs. */
#define PARAMS_MAX 64
typedef struct params {
    int n;
    struct {
        char *key, *value;
        size_t value_len;
    } kv[PARAMS_MAX];
} params_t;

int params_parse(params_t *p, const http_req *r, err_t *err);
void params_free(params_t *p);
/* Calls one() for each query parameter, in order, until one fails (returns
 * nonzero with err set); the values last only for the call. */
typedef int (*param_fn)(void *ctx, const char *key, const char *value, size_t len, err_t *err);
int params_each(const http_req *r, param_fn one, void *ctx, err_t *err);

void respond_err(conn_t *c, err_t *e);
void respond_simple(conn_t *c, err_code code, const char *msg);
/* A finished job's connection: true when it is still open and the job
 * went well (the caller answers); when the job failed, its error is the
 * answer and false. The caller lets go of c either way. */
bool respond_ok(conn_t *c, err_t *err);
/* 200 {"NAME":[ITEMS]REST}: a page of items already encoded (comma
 * separated); rest is the members after the list and the closing brace. */
void respond_items(conn_t *c, const char *name, const buf_t *items, const char *rest);
/* 405 with the Allow header. */
void respond_method(conn_t *c, const char *allow);

#endif
