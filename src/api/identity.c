/*
 * identity.c: the cache of accounts, password hashes and sessions that
 * says who a request is (see identity.h). Loop thread only.
 */
#include "identity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../store/store.h"
#include "../util/map.h"

struct identity {
    map_t accounts;  /* id -> account_t */
    map_t by_email;  /* email -> account_t */
    map_t sessions;  /* token hash -> session_t */
    /* Several nodes: tokens the database did not know (token hash -> 1),
     * so that a wrong token costs one look-up, not one a request; and
     * password hashes heard of before their account (id -> hash). */
    map_t unknown;
    map_t early_hashes;
};

#define UNKNOWN_MAX 4096

typedef struct session {
    char token_hash[65];
    char id[17];
    char account[DOC_ID_MAX + 1];
    int64_t expires_at;
} session_t;

void identity_token_hash(const char *token, size_t n, char out[65])
{
    unsigned char h[32];
    crypto_generichash(h, sizeof h, (const unsigned char *)token, n, NULL, 0);
    sodium_bin2hex(out, 65, h, sizeof h);
}

/* ------------------------------------------------------------------ accounts */

void identity_account_json(buf_t *b, const account_t *a)
{
    buf_puts(b, "{\"id\":");
    buf_put_json_str(b, a->id, strlen(a->id));
    buf_puts(b, ",\"email\":");
    buf_put_json_str(b, a->email, strlen(a->email));
    buf_puts(b, ",\"role\":");
    buf_put_json_str(b, a->role, strlen(a->role));
    buf_puts(b, ",\"name\":");
    buf_put_json_str(b, a->name, strlen(a->name));
    buf_puts(b, a->disabled ? ",\"disabled\":true}" : ",\"disabled\":false}");
}

static account_t *account_by_id(identity_t *ids, const char *id)
{
    return map_get(&ids->accounts, id, strlen(id));
}

const account_t *identity_account(identity_t *ids, const char *id) { return account_by_id(ids, id); }

const account_t *identity_account_by_email(identity_t *ids, const char *email)
{
    return map_get(&ids->by_email, email, strlen(email));
}

void identity_accounts_json(identity_t *ids, buf_t *b)
{
    buf_puts(b, "{\"accounts\":[");
    size_t i = 0, kl;
    const char *k;
    void *v;
    int n = 0;
    while (map_next(&ids->accounts, &i, &k, &kl, &v)) {
        if (n++)
            buf_putc(b, ',');
        identity_account_json(b, v);
    }
    buf_puts(b, "]}");
}

/* Takes an account document (the cache follows the feed of _accounts). */
static void account_put(identity_t *ids, const json_t *doc)
{
    const char *id = json_string_value(json_object_get(doc, "id"));
    const char *email = json_string_value(json_object_get(doc, "email"));
    if (!id || !email)
        return;
    account_t *a = account_by_id(ids, id);
    if (!a) {
        a = xcalloc(1, sizeof *a);
        snprintf(a->id, sizeof a->id, "%s", id);
        map_put(&ids->accounts, a->id, strlen(a->id), a);
    } else {
        map_del(&ids->by_email, a->email, strlen(a->email));
    }
    snprintf(a->email, sizeof a->email, "%s", email);
    ascii_lower(a->email);
    const char *role = json_string_value(json_object_get(doc, "role"));
    const char *name = json_string_value(json_object_get(doc, "name"));
    snprintf(a->role, sizeof a->role, "%s", role ? role : "");
    snprintf(a->name, sizeof a->name, "%s", name ? name : "");
    a->disabled = json_is_true(json_object_get(doc, "disabled"));
    map_put(&ids->by_email, a->email, strlen(a->email), a);
    char *early = map_del(&ids->early_hashes, a->id, strlen(a->id));
    if (early) {
        free(a->hash);
        a->hash = early;
    }
}

static void account_drop(identity_t *ids, const char *id)
{
    account_t *a = map_del(&ids->accounts, id, strlen(id));
    if (!a)
        return;
    map_del(&ids->by_email, a->email, strlen(a->email));
    free(a->hash);
    free(a);
}

static void set_hash(identity_t *ids, const char *id, const char *hash)
{
    account_t *a = account_by_id(ids, id);
    if (a) {
        free(a->hash);
        a->hash = xstrdup(hash);
    } else if (hash) {
        free(map_del(&ids->early_hashes, id, strlen(id)));
        if (ids->early_hashes.count < UNKNOWN_MAX)
            map_put(&ids->early_hashes, id, strlen(id), xstrdup(hash));
    }
}

void identity_set_hash(identity_t *ids, const char *account, const char *hash)
{
    set_hash(ids, account, hash);
}

bool identity_account_heard(identity_t *ids, const char *id, const char *doc)
{
    const account_t *a = account_by_id(ids, id);
    char role[33] = "";
    bool was_disabled = a && a->disabled, known = a != NULL;
    if (a)
        snprintf(role, sizeof role, "%s", a->role);
    json_t *d = doc ? json_loads(doc, 0, NULL) : NULL;
    if (d)
        account_put(ids, d);
    else
        account_drop(ids, id);
    json_decref(d);
    a = account_by_id(ids, id);
    return known && (!a || a->disabled != was_disabled || strcmp(a->role, role) != 0);
}

/* ------------------------------------------------------------------ sessions */

void identity_session_add(identity_t *ids, const char *th, const char *sid, const char *account,
                          int64_t expires)
{
    session_t *s = xcalloc(1, sizeof *s);
    snprintf(s->token_hash, sizeof s->token_hash, "%s", th);
    snprintf(s->id, sizeof s->id, "%s", sid);
    snprintf(s->account, sizeof s->account, "%s", account);
    s->expires_at = expires;
    session_t *old = map_del(&ids->sessions, th, strlen(th));
    free(old);
    map_put(&ids->sessions, s->token_hash, strlen(s->token_hash), s);
}

/* Forgets the sessions of an account (disabled), or one (logout). */
void identity_sessions_drop(identity_t *ids, const char *account, const char *only_th)
{
    map_t *m = &ids->sessions;
    if (only_th) {
        free(map_del(m, only_th, strlen(only_th)));
        return;
    }
    size_t i = 0, kl;
    const char *k;
    void *v;
    while (map_next(m, &i, &k, &kl, &v)) {
        session_t *s = v;
        if (strcmp(s->account, account) == 0) {
            map_del(m, k, kl);
            free(s);
        }
    }
}

bool identity_session_end(identity_t *ids, const char *th, actor_t *who)
{
    session_t *s = map_del(&ids->sessions, th, strlen(th));
    if (!s)
        return false;
    memset(who, 0, sizeof *who);
    snprintf(who->id, sizeof who->id, "%s", s->account);
    snprintf(who->session, sizeof who->session, "%s", s->id);
    free(s);
    return true;
}

void identity_forget_sessions(identity_t *ids)
{
    map_free_values(&ids->sessions);
    map_init(&ids->sessions);
}

bool identity_unknown_token(identity_t *ids, const http_req *req, char th[65])
{
    const char *tok;
    size_t n;
    if (identity_bearer(req, &tok, &n) != 1 || n > 128)
        return false;
    identity_token_hash(tok, n, th);
    return !map_get(&ids->sessions, th, 64) && !map_get(&ids->unknown, th, 64);
}

void identity_note_unknown(identity_t *ids, const char *th)
{
    if (ids->unknown.count >= UNKNOWN_MAX) {
        map_free_values(&ids->unknown);
        map_init(&ids->unknown);
    }
    if (!map_get(&ids->unknown, th, strlen(th))) {
        char *k = xstrdup(th);
        map_put(&ids->unknown, k, strlen(k), k);
    }
}

/* ------------------------------------------------------------------ who is asking */

int identity_bearer(const http_req *req, const char **tok, size_t *n)
{
    size_t hl;
    const char *h = http_header_get(req, "authorization", &hl);
    if (h) {
        if (hl < 8 || ascii_casecmp_n(h, "bearer ", 7) != 0)
            return -1;
        *tok = h + 7;
        *n = hl - 7;
        while (*n && **tok == ' ') {
            (*tok)++;
            (*n)--;
        }
        return *n ? 1 : -1;
    }
    /* ?token=: browsers' WebSocket and EventSource cannot set headers. */
    const char *q = req->query;
    for (size_t i = 0; q && i + 6 <= req->query_len; i++) {
        if ((i == 0 || q[i - 1] == '&') && memcmp(q + i, "token=", 6) == 0) {
            const char *v = q + i + 6, *end = memchr(v, '&', req->query_len - i - 6);
            *tok = v;
            *n = end ? (size_t)(end - v) : req->query_len - i - 6;
            return *n ? 1 : -1;
        }
    }
    return 0;
}

int identity_resolve(identity_t *ids, conn_t *c, const http_req *req, actor_t *who,
                     bool required, err_t *err)
{
    memset(who, 0, sizeof *who);
    snprintf(who->remote, sizeof who->remote, "%s", conn_remote(c));
    const char *tok;
    size_t n;
    int has = identity_bearer(req, &tok, &n);
    if (has < 0)
        return err_set(err, E_UNAUTHORIZED, "Authorization must be: Bearer TOKEN");
    if (has == 0)
        return required ? err_set(err, E_UNAUTHORIZED, "log in first (POST /v1/auth/login)")
                        : 0;
    if (n > 128)
        return err_set(err, E_UNAUTHORIZED, "not a valid token");
    char th[65];
    identity_token_hash(tok, n, th);
    session_t *s = map_get(&ids->sessions, th, 64);
    /* The lookup is by hash, so timing tells nothing about any token; the
     * compare that follows is constant-time anyway. */
    if (!s || sodium_memcmp(s->token_hash, th, 64) != 0)
        return err_set(err, E_UNAUTHORIZED, "not a valid token (logged out?); log in again");
    if (s->expires_at <= time_now_ms())
        return err_set(err, E_UNAUTHORIZED, "the session has expired; log in again");
    account_t *a = account_by_id(ids, s->account);
    if (!a || a->disabled)
        return err_set(err, E_UNAUTHORIZED, "this account is disabled");
    snprintf(who->id, sizeof who->id, "%s", a->id);
    snprintf(who->role, sizeof who->role, "%s", a->role);
    snprintf(who->email, sizeof who->email, "%s", a->email);
    snprintf(who->session, sizeof who->session, "%s", s->id);
    return 0;
}

/* ------------------------------------------------------------------ committed account writes */

/* After a batch that wrote accounts commits: the documents of _accounts
 * (from the batch's results) and the password hashes go to the cache. */
void identity_note_job(identity_t *ids, wjob *job)
{
    json_t *ans = json_loadb(job->answer.p, job->answer.len, 0, NULL);
    json_t *results = json_object_get(ans, "results");
    for (int i = 0; i < job->nops; i++) {
        wop *op = &job->ops[i];
        if (op->kind == W_CRED)
            set_hash(ids, op->id, json_string_value(json_object_get(op->doc, "hash")));
        else if (strcmp(op->col, "_accounts") == 0 && op->kind != W_DELETE)
            account_put(ids, json_array_get(results, (size_t)i));
        else if (strcmp(op->col, "_accounts") == 0)
            account_drop(ids, op->id);
    }
    json_decref(ans);
}

/* ------------------------------------------------------------------ life */

static void on_account_loaded(void *ctx, const char *doc, size_t len)
{
    json_t *d = json_loadb(doc, len, 0, NULL);
    account_put(ctx, d);
    json_decref(d);
}

static void on_credential_loaded(void *ctx, const char *account, const char *hash)
{
    set_hash(ctx, account, hash);
}

static void on_session_loaded(void *ctx, const char *th, const char *sid, const char *account,
                              int64_t expires)
{
    if (expires > time_now_ms())
        identity_session_add(ctx, th, sid, account, expires);
}

static void on_session_skipped(void *ctx, const char *th, const char *sid, const char *account,
                               int64_t expires)
{
}

int identity_reload(identity_t *ids, store_t *store, err_t *err)
{
    identity_forget_sessions(ids);
    store_auth_cb cb = {.account = on_account_loaded, .credential = on_credential_loaded,
                        .session = on_session_skipped, .ctx = ids};
    return store_load_auth(store, &cb, err);
}

identity_t *identity_open(store_t *store, err_t *err)
{
    identity_t *ids = xcalloc(1, sizeof *ids);
    map_init(&ids->accounts);
    map_init(&ids->by_email);
    map_init(&ids->sessions);
    map_init(&ids->unknown);
    map_init(&ids->early_hashes);
    store_auth_cb cb = {.account = on_account_loaded, .credential = on_credential_loaded,
                        .session = on_session_loaded, .ctx = ids};
    if (store_load_auth(store, &cb, err)) {
        identity_free(ids);
        return NULL;
    }
    return ids;
}

void identity_free(identity_t *ids)
{
    if (!ids)
        return;
    size_t i = 0, kl;
    const char *k;
    void *v;
    while (map_next(&ids->accounts, &i, &k, &kl, &v)) {
        free(((account_t *)v)->hash);
        free(v);
    }
    map_free_values(&ids->sessions);
    map_free_values(&ids->unknown);
    map_free_values(&ids->early_hashes);
    map_free(&ids->accounts);
    map_free(&ids->by_email);
    free(ids);
}
