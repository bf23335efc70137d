/*
 * auth.c: logging in and out, and the accounts API.
 *
 *   POST  /v1/auth/login    {"email","password"} -> {"token","account"}
 *   POST  /v1/auth/logout   -> 204
 *   GET   /v1/auth/me       -> {"account"}
 *   GET   /v1/accounts      (admin) every account
 *   POST  /v1/accounts      (admin) {"email","role","name","password"} -> 201 account
 *   PATCH /v1/accounts/ID   (admin) {"role","name","disabled","password"} -> account
 *
 * Accounts are documents of `_accounts` (email, role, name, disabled);
 * password hashes (argon2id) and sessions live in private tables the API
 * never shows. A session token is 256 random bits, given to the client
 * once and kept only as its BLAKE2b hash: a stolen database holds no
 * usable token. identity.c caches all three on the loop thread and says
 * who a request is; this file is what changes them.
 *
 * Hashing a password takes tens of milliseconds and 19 MiB: it runs on the
 * thread pool, at most HASH_MAX at once, with a bounded queue behind.
 * Failed logins are counted per email and per address; past the limit,
 * 429 with Retry-After, even for the right password.
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../core/doc.h"
#include "../util/log.h"
#include "../util/map.h"

#define HASH_MAX 2          /* argon2id hashes at once */
#define HASH_QUEUE 64       /* waiting beyond those: 503 */
#define PW_OPS 2            /* argon2id t=2, m=19 MiB, p=1 (OWASP's minimum) */
#define PW_MEM (19u * 1024 * 1024)
#define FAIL_WINDOW_MS (15 * 60 * 1000)
#define FAIL_MAX_EMAIL 5
#define FAIL_MAX_ADDR 20
#define TOKEN_BYTES 32

typedef struct failures {
    int count;
    int64_t since;
} failures_t;

/* A password to hash or check on the thread pool. */
typedef struct hash_job {
    uv_work_t work;
    app_t *app;
    conn_t *c;
    char *password;
    char *hash;        /* check: the stored hash; make: the result */
    bool check, ok;
    void (*after)(struct hash_job *h);
    json_t *body;      /* the request, for after */
    actor_t who;
    char target[DOC_ID_MAX + 1];
    struct hash_job *next;
} hash_job;

struct auth_state {
    map_t failures;  /* "e:EMAIL" / "a:ADDR" -> failures_t */
    int64_t ttl_ms;
    int hashing;
    hash_job *queue, *queue_tail;
    int queued;
    char dummy_hash[crypto_pwhash_STRBYTES]; /* checked for unknown emails */
};

/* ------------------------------------------------------------------ who is asking */

int api_auth(app_t *app, conn_t *c, http_req *req, actor_t *who, err_t *err)
{
    return identity_resolve(app->ident, c, req, who, true, err);
}

int api_auth_optional(app_t *app, conn_t *c, http_req *req, actor_t *who, err_t *err)
{
    return identity_resolve(app->ident, c, req, who, false, err);
}

json_t *api_auth_body(app_t *app, conn_t *c, http_req *req, actor_t *who)
{
    err_t e = {0};
    json_t *body = NULL;
    if (api_auth(app, c, req, who, &e) || !(body = doc_parse_object(req->body, req->body_len, &e)))
        respond_err(c, &e);
    return body;
}

int api_admin(app_t *app, conn_t *c, http_req *req, actor_t *who, const char *refusal)
{
    err_t e = {0};
    if (api_auth(app, c, req, who, &e)) {
        respond_err(c, &e);
        return -1;
    }
    if (!actor_is_admin(who)) {
        respond_simple(c, E_FORBIDDEN, refusal);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ throttling */

static failures_t *fails(app_t *app, const char *kind, const char *key, bool make)
{
    char k[300];
    snprintf(k, sizeof k, "%s:%s", kind, key);
    failures_t *f = map_get(&app->auth->failures, k, strlen(k));
    int64_t now = time_now_ms();
    if (f && now - f->since > FAIL_WINDOW_MS) {
        f->count = 0;
        f->since = now;
    }
    if (!f && make) {
        /* Bound the table: forget the lot when it grows past reason
         * (only windows already counting would be lost). */
        if (app->auth->failures.count > 100000)
            map_free_values(&app->auth->failures);
        f = xcalloc(1, sizeof *f);
        f->since = now;
        map_put(&app->auth->failures, k, strlen(k), f);
    }
    return f;
}

/* Seconds until the caller may try again, or 0. */
static int64_t throttled(app_t *app, const char *email, const char *addr)
{
    failures_t *fe = fails(app, "e", email, false), *fa = fails(app, "a", addr, false);
    int64_t now = time_now_ms(), wait = 0;
    if (fe && fe->count >= FAIL_MAX_EMAIL)
        wait = fe->since + FAIL_WINDOW_MS - now;
    if (fa && fa->count >= FAIL_MAX_ADDR && fa->since + FAIL_WINDOW_MS - now > wait)
        wait = fa->since + FAIL_WINDOW_MS - now;
    return wait > 0 ? (wait + 999) / 1000 : 0;
}

static void record_failure(app_t *app, const char *email, const char *addr)
{
    fails(app, "e", email, true)->count++;
    fails(app, "a", addr, true)->count++;
}

/* ------------------------------------------------------------------ hashing */

static void hash_work(uv_work_t *w)
{
    hash_job *h = w->data;
    if (h->check) {
        h->ok = crypto_pwhash_str_verify(h->hash, h->password, strlen(h->password)) == 0;
    } else {
        h->hash = xmalloc(crypto_pwhash_STRBYTES);
        h->ok = crypto_pwhash_str_alg(h->hash, h->password, strlen(h->password), PW_OPS, PW_MEM,
                                      crypto_pwhash_ALG_ARGON2ID13) == 0;
    }
    sodium_memzero(h->password, strlen(h->password));
}

static void hash_start(hash_job *h);

static void hash_after(uv_work_t *w, int status)
{
    hash_job *h = w->data;
    struct auth_state *as = h->app->auth;
    as->hashing--;
    if (status == UV_ECANCELED)
        h->ok = false;
    h->after(h);
    if (as->queue) {
        hash_job *next = as->queue;
        as->queue = next->next;
        if (!as->queue)
            as->queue_tail = NULL;
        as->queued--;
        hash_start(next);
    }
    conn_unref(h->c);
    free(h->password);
    free(h->hash);
    json_decref(h->body);
    free(h);
}

static void hash_start(hash_job *h)
{
    h->app->auth->hashing++;
    h->work.data = h;
    uv_queue_work(h->app->loop, &h->work, hash_work, hash_after);
}

/* Queues a hash; false (and 503) when too many wait already. */
static bool hash_submit(app_t *app, conn_t *c, hash_job *h)
{
    struct auth_state *as = app->auth;
    h->app = app;
    h->c = conn_ref(c);
    if (as->hashing < HASH_MAX) {
        hash_start(h);
        return true;
    }
    if (as->queued >= HASH_QUEUE) {
        conn_unref(c);
        return false;
    }
    h->next = NULL;
    if (as->queue_tail)
        as->queue_tail->next = h;
    else
        as->queue = h;
    as->queue_tail = h;
    as->queued++;
    return true;
}

static hash_job *hash_new(const char *password, const char *hash, bool check)
{
    hash_job *h = xcalloc(1, sizeof *h);
    h->password = xstrdup(password);
    h->hash = hash ? xstrdup(hash) : NULL;
    h->check = check;
    return h;
}

static void respond_busy(conn_t *c)
{
    err_t e = {0};
    err_set(&e, E_UNAVAILABLE, "too many logins at once; try again in a second");
    conn_respond_error(c, &e, "Retry-After: 1\r\n");
    err_clear(&e);
}

/* ------------------------------------------------------------------ activity helpers */

static void on_logged(wjob *job) { wjob_free(job); }

/* Logs an event of the caller (failed login...) in its own transaction. */
static void log_event(app_t *app, const actor_t *who, const char *action, json_t *data)
{
    wjob *job = wjob_new(WJ_OPS, 0);
    job->actor = *who;
    snprintf(job->log_action, sizeof job->log_action, "%s", action);
    job->log_data = data;
    job->done = on_logged;
    store_submit(app->store, job);
}

/* ------------------------------------------------------------------ login */

typedef struct login_ctx {
    conn_t *c;
    app_t *app;
    char token[64];
    char th[65];
    char sid[17];
    char account[DOC_ID_MAX + 1];
    int64_t expires;
} login_ctx;

static void on_session_stored(wjob *job)
{
    login_ctx *l = job->ctx;
    if (!job->err.code)
        identity_session_add(l->app->ident, l->th, l->sid, l->account, l->expires);
    if (respond_ok(l->c, &job->err)) {
        const account_t *a = identity_account(l->app->ident, l->account);
        buf_t b = {0};
        buf_puts(&b, "{\"token\":\"");
        buf_puts(&b, l->token);
        buf_printf(&b, "\",\"expires_at\":%lld,\"account\":", (long long)l->expires);
        if (a)
            identity_account_json(&b, a);
        else
            buf_puts(&b, "null");
        buf_putc(&b, '}');
        conn_respond_buf(l->c, 200, "application/json", "Cache-Control: no-store\r\n", &b);
    }
    sodium_memzero(l->token, sizeof l->token);
    conn_unref(l->c);
    free(l);
    wjob_free(job);
}

static void on_login_checked(hash_job *h)
{
    app_t *app = h->app;
    conn_t *c = h->c;
    const char *email = json_string_value(json_object_get(h->body, "email"));
    const account_t *a = h->target[0] ? identity_account(app->ident, h->target) : NULL;
    if (!h->ok || !a || a->disabled) {
        record_failure(app, email, h->who.remote);
        log_event(app, &h->who, "login_failed", json_pack("{ss}", "email", email));
        if (conn_open(c))
            respond_simple(c, E_UNAUTHORIZED, "wrong email or password");
        return;
    }
    /* A good login clears the email's count (not the address's). */
    failures_t *fe = fails(app, "e", email, false);
    if (fe)
        fe->count = 0;
    login_ctx *l = xcalloc(1, sizeof *l);
    l->c = conn_ref(c);
    l->app = app;
    unsigned char raw[TOKEN_BYTES];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(l->token, sizeof l->token, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
    identity_token_hash(l->token, strlen(l->token), l->th);
    random_id(l->sid, 16);
    snprintf(l->account, sizeof l->account, "%s", a->id);
    l->expires = time_now_ms() + app->auth->ttl_ms;

    wjob *job = wjob_new(WJ_OPS, 1);
    job->actor = h->who;
    snprintf(job->actor.id, sizeof job->actor.id, "%s", a->id);
    snprintf(job->actor.role, sizeof job->actor.role, "%s", a->role);
    snprintf(job->actor.email, sizeof job->actor.email, "%s", a->email);
    snprintf(job->actor.session, sizeof job->actor.session, "%s", l->sid);
    wop *op = &job->ops[0];
    op->kind = W_SESSION_ADD;
    op->id = xstrdup(l->th);
    op->doc = json_pack("{sssssI}", "session", l->sid, "account", a->id, "expires_at",
                        (json_int_t)l->expires);
    snprintf(job->log_action, sizeof job->log_action, "login");
    job->done = on_session_stored;
    job->ctx = l;
    store_submit(app->store, job);
}

void auth_login(app_t *app, conn_t *c, http_req *req)
{
    err_t e = {0};
    json_t *body = doc_parse_object(req->body, req->body_len, &e);
    if (!body)
        return respond_err(c, &e);
    json_t *em = json_object_get(body, "email"), *pw = json_object_get(body, "password");
    if (!json_is_string(em) || !json_is_string(pw) || json_string_length(em) == 0 ||
        json_string_length(em) > 254 || json_string_length(pw) > 1024) {
        json_decref(body);
        return respond_simple(c, E_BAD_REQUEST,
                              "the body is {\"email\": \"...\", \"password\": \"...\"}");
    }
    char email[255];
    snprintf(email, sizeof email, "%s", json_string_value(em));
    ascii_lower(email);
    json_object_set_new(body, "email", json_string(email));
    int64_t wait = throttled(app, email, conn_remote(c));
    if (wait) {
        json_decref(body);
        err_set(&e, E_RATE_LIMITED, "too many failed logins; try again in %lld s",
                (long long)wait);
        char hdr[64];
        snprintf(hdr, sizeof hdr, "Retry-After: %lld\r\n", (long long)wait);
        conn_respond_error(c, &e, hdr);
        return err_clear(&e);
    }
    const account_t *a = identity_account_by_email(app->ident, email);
    /* Unknown emails are checked against a dummy hash, so that answers
     * take as long whether the account exists or not. */
    const char *hash = a && a->hash && !a->disabled ? a->hash : app->auth->dummy_hash;
    hash_job *h = hash_new(json_string_value(pw), hash, true);
    h->body = body;
    h->after = on_login_checked;
    if (a && a->hash && !a->disabled)
        snprintf(h->target, sizeof h->target, "%s", a->id);
    memset(&h->who, 0, sizeof h->who);
    snprintf(h->who.remote, sizeof h->who.remote, "%s", conn_remote(c));
    if (!hash_submit(app, c, h)) {
        free(h->password);
        free(h->hash);
        json_decref(h->body);
        free(h);
        respond_busy(c);
    }
}

/* ------------------------------------------------------------------ logout, me */

typedef struct logout_ctx {
    conn_t *c;
    app_t *app;
    char th[65];
    actor_t who;
} logout_ctx;

static void on_logged_out(wjob *job)
{
    logout_ctx *l = job->ctx;
    if (!job->err.code) {
        identity_sessions_drop(l->app->ident, NULL, l->th);
        auth_revoked(l->app, &l->who);
    }
    if (respond_ok(l->c, &job->err))
        conn_respond(l->c, 204, NULL, NULL, NULL, 0);
    conn_unref(l->c);
    free(l);
    wjob_free(job);
}

void auth_logout(app_t *app, conn_t *c, http_req *req)
{
    err_t e = {0};
    actor_t who;
    if (api_auth(app, c, req, &who, &e))
        return respond_err(c, &e);
    const char *tok;
    size_t n;
    identity_bearer(req, &tok, &n);
    logout_ctx *l = xcalloc(1, sizeof *l);
    l->c = conn_ref(c);
    l->app = app;
    l->who = who;
    identity_token_hash(tok, n, l->th);
    wjob *job = wjob_new(WJ_OPS, 1);
    job->actor = who;
    job->ops[0].kind = W_SESSION_DEL;
    job->ops[0].id = xstrdup(l->th);
    snprintf(job->log_action, sizeof job->log_action, "logout");
    job->done = on_logged_out;
    job->ctx = l;
    store_submit(app->store, job);
}

void auth_me(app_t *app, conn_t *c, http_req *req)
{
    err_t e = {0};
    actor_t who;
    if (api_auth(app, c, req, &who, &e))
        return respond_err(c, &e);
    const account_t *a = identity_account(app->ident, who.id);
    buf_t b = {0};
    buf_puts(&b, "{\"account\":");
    identity_account_json(&b, a);
    buf_printf(&b, ",\"session\":\"%s\"}", who.session);
    conn_respond_buf(c, 200, "application/json", NULL, &b);
}

/* ------------------------------------------------------------------ accounts (admin) */

static void accounts_list(app_t *app, conn_t *c)
{
    buf_t b = {0};
    identity_accounts_json(app->ident, &b);
    conn_respond_buf(c, 200, "application/json", NULL, &b);
}

typedef struct acct_ctx {
    conn_t *c;
    app_t *app;
    char id[DOC_ID_MAX + 1];
    bool create;
} acct_ctx;

static void on_account_written(wjob *job)
{
    acct_ctx *x = job->ctx;
    if (!job->err.code) {
        const account_t *a = identity_account(x->app->ident, x->id);
        char old_role[33] = "";
        bool was_disabled = a && a->disabled;
        if (a)
            snprintf(old_role, sizeof old_role, "%s", a->role);
        identity_note_job(x->app->ident, job);
        a = identity_account(x->app->ident, x->id);
        /* A disabled account loses its sessions (the writer deleted them),
         * and one whose role changed what its connections may see. Other
         * nodes hear of it from the store (on_auth_event). */
        if (a && a->disabled && !was_disabled)
            identity_sessions_drop(x->app->ident, a->id, NULL);
        if (a && ((a->disabled && !was_disabled) ||
                  (old_role[0] && strcmp(old_role, a->role) != 0))) {
            actor_t who = {0};
            snprintf(who.id, sizeof who.id, "%s", a->id);
            auth_revoked(x->app, &who);
        }
        if (conn_open(x->c)) {
            buf_t b = {0};
            if (a)
                identity_account_json(&b, a);
            conn_respond_buf(x->c, x->create ? 201 : 200, "application/json", NULL, &b);
        }
    } else if (conn_open(x->c)) {
        if (job->err.code == E_INVALID && strstr(job->err.msg, "another document"))
            respond_simple(x->c, E_CONFLICT, "an account with this email exists");
        else
            respond_err(x->c, &job->err);
    }
    conn_unref(x->c);
    free(x);
    wjob_free(job);
}

/* Submits the account write (doc: members to put or patch) and, with a
 * hash, the new password. */
static void account_write(app_t *app, conn_t *c, const actor_t *who, const char *id,
                          bool create, json_t *doc, char *hash, bool drop_sessions)
{
    int nops = 1 + (hash != NULL) + drop_sessions;
    wjob *job = wjob_new(WJ_OPS, nops);
    job->is_batch = true; /* all or nothing; auth_note_job reads the results */
    job->actor = *who;
    wop *op = &job->ops[0];
    op->kind = create ? W_CREATE : W_PATCH;
    snprintf(op->col, sizeof op->col, "_accounts");
    op->id = xstrdup(id);
    op->doc = doc;
    int k = 1;
    if (hash) {
        job->ops[k].kind = W_CRED;
        job->ops[k].id = xstrdup(id);
        job->ops[k++].doc = json_pack("{ss}", "hash", hash);
    }
    if (drop_sessions) {
        job->ops[k].kind = W_SESSIONS_DEL;
        job->ops[k++].id = xstrdup(id);
    }
    acct_ctx *x = xcalloc(1, sizeof *x);
    x->c = conn_ref(c);
    x->app = app;
    x->create = create;
    snprintf(x->id, sizeof x->id, "%s", id);
    free(hash); /* the job holds it */
    job->done = on_account_written;
    job->ctx = x;
    store_submit(app->store, job);
}

static int check_account_fields(json_t *body, bool create, err_t *e)
{
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v) {
        if (strcmp(k, "email") && strcmp(k, "role") && strcmp(k, "name") &&
            strcmp(k, "password") && strcmp(k, "disabled"))
            return err_set(e, E_BAD_REQUEST,
                           "unknown field %.40s (email, role, name, password, disabled)", k);
    }
    json_t *role = json_object_get(body, "role"), *pw = json_object_get(body, "password");
    json_t *em = json_object_get(body, "email");
    if (create && (!json_is_string(em) || !json_is_string(role) || !json_is_string(pw)))
        return err_set(e, E_BAD_REQUEST, "an account needs email, role and password");
    if (em && (!json_is_string(em) || !strchr(json_string_value(em), '@') ||
               json_string_length(em) > 254))
        return err_set(e, E_BAD_REQUEST, "email must be an email address");
    if (role && (!json_is_string(role) || !apps_role_known(json_string_value(role))))
        return err_set(e, E_BAD_REQUEST, "role must be admin or a role an app declares");
    if (pw && (!json_is_string(pw) || json_string_length(pw) < 8 || json_string_length(pw) > 1024))
        return err_set(e, E_BAD_REQUEST, "a password is 8-1024 characters");
    json_t *d = json_object_get(body, "disabled");
    if (d && !json_is_boolean(d))
        return err_set(e, E_BAD_REQUEST, "disabled is true or false");
    json_t *n = json_object_get(body, "name");
    if (n && (!json_is_string(n) || json_string_length(n) > 200))
        return err_set(e, E_BAD_REQUEST, "name is a string of at most 200 characters");
    return 0;
}

static void on_new_password(hash_job *h)
{
    if (!h->ok) {
        if (conn_open(h->c))
            respond_simple(h->c, E_INTERNAL, "could not hash the password");
        return;
    }
    json_t *body = h->body;
    json_object_del(body, "password");
    bool create = !h->target[0];
    char id[DOC_ID_MAX + 1];
    if (create) {
        time_ordered_id(id, DOC_GEN_ID_LEN);
        if (!json_object_get(body, "disabled"))
            json_object_set_new(body, "disabled", json_false());
    } else {
        snprintf(id, sizeof id, "%s", h->target);
    }
    char *hash = h->hash;
    h->hash = NULL;
    bool drop = json_is_true(json_object_get(body, "disabled")) && !create;
    account_write(h->app, h->c, &h->who, id, create, json_incref(body), hash, drop);
}

void auth_accounts(app_t *app, conn_t *c, http_req *req, const char *id)
{
    actor_t who;
    if (api_admin(app, c, req, &who, "only an admin may do this"))
        return;
    int m = req->method == HTTP_HEAD ? HTTP_GET : req->method;
    if (!id && m == HTTP_GET)
        return accounts_list(app, c);
    err_t e = {0};
    if (!id && m != HTTP_POST)
        return respond_simple(c, E_METHOD_NOT_ALLOWED, "this path takes GET, POST");
    if (id && m == HTTP_GET) {
        const account_t *a = identity_account(app->ident, id);
        if (!a)
            return respond_simple(c, E_NOT_FOUND, "no such account");
        buf_t b = {0};
        identity_account_json(&b, a);
        return conn_respond_buf(c, 200, "application/json", NULL, &b);
    }
    if (id && m != HTTP_PATCH)
        return respond_simple(c, E_METHOD_NOT_ALLOWED, "this path takes GET, PATCH");
    if (id && !identity_account(app->ident, id))
        return respond_simple(c, E_NOT_FOUND, "no such account");
    json_t *body = doc_parse_object(req->body, req->body_len, &e);
    if (!body || check_account_fields(body, !id, &e)) {
        json_decref(body);
        return respond_err(c, &e);
    }
    json_t *em = json_object_get(body, "email");
    if (em) {
        char email[255];
        snprintf(email, sizeof email, "%s", json_string_value(em));
        ascii_lower(email);
        const account_t *other = identity_account_by_email(app->ident, email);
        if (other && (!id || strcmp(other->id, id) != 0)) {
            json_decref(body);
            return respond_simple(c, E_CONFLICT, "an account with this email exists");
        }
        json_object_set_new(body, "email", json_string(email));
    }
    json_t *pw = json_object_get(body, "password");
    if (!pw) {
        bool drop = json_is_true(json_object_get(body, "disabled"));
        return account_write(app, c, &who, id, false, body, NULL, drop);
    }
    hash_job *h = hash_new(json_string_value(pw), NULL, false);
    h->body = body;
    h->who = who;
    h->after = on_new_password;
    if (id)
        snprintf(h->target, sizeof h->target, "%s", id);
    if (!hash_submit(app, c, h)) {
        free(h->password);
        json_decref(h->body);
        free(h);
        respond_busy(c);
    }
}

void auth_revoked(app_t *app, const actor_t *who)
{
    hub_revoke(&app->hub, who);
}

/* ------------------------------------------------------------------ what every node commits */

/* Accounts, sessions and passwords that another node changed (this
 * node's own come back too, and change nothing the second time). */
static void on_auth_event(void *ctx, store_auth_event ev, const char *key, const char *value)
{
    app_t *app = ctx;
    actor_t who = {0};
    switch (ev) {
    case STORE_AUTH_SESSION_END:
        if (identity_session_end(app->ident, key, &who))
            auth_revoked(app, &who);
        break;
    case STORE_AUTH_ACCOUNT_END:
        identity_sessions_drop(app->ident, key, NULL);
        snprintf(who.id, sizeof who.id, "%s", key);
        auth_revoked(app, &who);
        break;
    case STORE_AUTH_CREDENTIAL:
        identity_set_hash(app->ident, key, value);
        break;
    case STORE_AUTH_ACCOUNT:
        /* One disabled, deleted or given another role loses its sessions
         * and its connections. */
        if (identity_account_heard(app->ident, key, value)) {
            const account_t *a = identity_account(app->ident, key);
            if (!a || a->disabled)
                identity_sessions_drop(app->ident, key, NULL);
            snprintf(who.id, sizeof who.id, "%s", key);
            auth_revoked(app, &who);
        }
        break;
    case STORE_AUTH_RESYNC: {
        err_t e = {0};
        if (identity_reload(app->ident, app->store, &e))
            log_msg(LOG_WARN, "reloading the accounts: %s", e.msg);
        err_clear(&e);
        break;
    }
    }
}

/* A token this node has not seen may be a session another node made a
 * moment ago: asked of the database once, then the request runs again. */
typedef struct lookup_ctx {
    app_t *app;
    conn_t *c;
    http_req *req;
    auth_again_fn again;
    char th[65];
} lookup_ctx;

static void on_session_looked_up(rjob *job)
{
    lookup_ctx *l = job->ctx;
    app_t *app = l->app;
    json_t *s = job->found ? json_loadb(job->out.p, job->out.len, 0, NULL) : NULL;
    const char *sid = json_string_value(json_object_get(s, "session"));
    const char *account = json_string_value(json_object_get(s, "account"));
    if (job->err.code) {
        if (conn_open(l->c))
            respond_err(l->c, &job->err);
    } else {
        if (sid && account)
            identity_session_add(app->ident, l->th, sid, account,
                                 json_integer_value(json_object_get(s, "expires_at")));
        else
            identity_note_unknown(app->ident, l->th);
        if (conn_open(l->c) && !app->shutting_down)
            l->again(app, l->c, l->req);
        else if (conn_open(l->c))
            respond_simple(l->c, E_UNAVAILABLE, "the server is shutting down");
    }
    json_decref(s);
    conn_unref(l->c);
    free(l);
    rjob_free(job);
}

bool auth_pending(app_t *app, conn_t *c, http_req *req, auth_again_fn again)
{
    char th[65];
    if (!store_shared(app->store) || !identity_unknown_token(app->ident, req, th))
        return false;
    lookup_ctx *l = xcalloc(1, sizeof *l);
    l->app = app;
    l->c = conn_ref(c);
    l->req = req;
    l->again = again;
    memcpy(l->th, th, sizeof th);
    rjob *job = rjob_new(R_SESSION);
    job->id = xstrdup(th);
    job->done = on_session_looked_up;
    job->ctx = l;
    store_read(app->store, job);
    return true;
}

/* ------------------------------------------------------------------ life */

int auth_init(app_t *app, int64_t session_ttl_ms, err_t *err)
{
    struct auth_state *as = xcalloc(1, sizeof *as);
    map_init(&as->failures);
    as->ttl_ms = session_ttl_ms;
    app->auth = as;
    store_set_auth_event_cb(app->store, on_auth_event, app);
    /* A real argon2id hash of a random password, for unknown emails. */
    unsigned char rnd[16];
    randombytes_buf(rnd, sizeof rnd);
    if (crypto_pwhash_str_alg(as->dummy_hash, (const char *)rnd, sizeof rnd, PW_OPS, PW_MEM,
                              crypto_pwhash_ALG_ARGON2ID13) != 0)
        return err_set(err, E_INTERNAL, "argon2id is not available (out of memory?)");
    return 0;
}

void auth_free(app_t *app)
{
    struct auth_state *as = app->auth;
    if (!as)
        return;
    map_free_values(&as->failures);
    free(as);
    app->auth = NULL;
}

/* ------------------------------------------------------------------ command line */

int auth_hash_password(const char *password, char out[128])
{
    return crypto_pwhash_str_alg(out, password, strlen(password), PW_OPS, PW_MEM,
                                 crypto_pwhash_ALG_ARGON2ID13);
}
