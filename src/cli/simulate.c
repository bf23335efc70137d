/*
 * simulate.c: `livedb simulate` (see simulate.h).
 *
 * Each scenario plays the wholesale app the way its people do, over the
 * public API only: one side acts over HTTP (POST /v1/fn/...), the other
 * watches over the realtime WebSocket, and the scenario checks that the
 * watcher saw the change, and how long after the request.
 *
 *   partner-order     a partner orders; the admin's orders subscription
 *                     sees it added; stock goes down; too much is refused
 *   inventory-update  the admin adjusts stock; the partner sees it; stock
 *                     never goes below 0; a partner may not adjust
 *   price-update      the admin changes a price; the partner sees it; an
 *                     order placed before keeps its price, one after pays
 *                     the new one
 *   order-status      the admin moves an order pending -> confirmed ->
 *                     packed -> shipped; the partner sees each step
 *   stress            N partners order at a total rate R for T seconds;
 *                     throughput, latency percentiles, errors by code; no
 *                     oversell, and the admin saw every order exactly once
 *
 * Who: an admin (--email with --password-stdin, LIVEDB_EMAIL and
 * LIVEDB_PASSWORD, or the demo's DATA/demo-accounts.json) and partners
 * sim-partner-N@sim.livedb that the admin creates, or gives a new random
 * password and enables, at the start, and disables at the end: they can
 * log in only while a simulation runs.
 *
 * What it leaves: scenarios put back what they took (orders they place
 * are cancelled, stock and prices are restored; a shipped order stays, its
 * stock restocked). stress orders its own products (sim-hot-N, made at
 * the start, deleted at the end); its orders stay, marked in their notes.
 *
 * The server is not trusted: every answer is checked for its shape, and
 * every wait has a deadline (--timeout).
 */
#include "simulate.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "../core/doc.h"
#include "../util/map.h"
#include "../util/util.h"
#include "client.h"

#define PARTNERS_MAX 1000
#define PRODUCTS_MAX 100
#define TOKEN_MAX 128
#define SIM_EMAIL_FMT "sim-partner-%d@sim.livedb"
#define SETUP_CONNS 4 /* requests at once while making accounts (hashing is 2 at once) */

/* ------------------------------------------------------------------ state */

typedef struct sim_opts {
    const char *scenario;
    const char *url, *data;
    const char *email;
    char password[1100];
    bool password_given;
    int partners, products;
    double rate, seconds, timeout;
    int64_t stock;
} sim_opts;

typedef struct partner {
    char email[64];
    char id[DOC_ID_MAX + 1];
    char token[TOKEN_MAX];
} partner;

typedef struct product {
    char id[DOC_ID_MAX + 1];
    char name[96];
    int64_t price, stock;
} product;

typedef struct sim {
    sim_opts o;
    uv_loop_t loop;
    client_target t;
    client_http *admin; /* the admin's connection */
    client_http *part;  /* partner 1's connection */
    char admin_email[256];
    char admin_token[TOKEN_MAX];
    partner *partners; /* logged in, made ready by partners_ready */
    int npartners;
    char product_id[DOC_ID_MAX + 1]; /* what the scenarios order */
    bool own_product;                /* made by us: deleted at the end */
    int fails;                       /* checks that failed, in all */
} sim;

/* ------------------------------------------------------------------ output */

/* One line of the report. What the server sent (names, messages) ends up
 * in it: control characters are replaced, so that no answer can drive
 * the terminal. */
__attribute__((format(printf, 2, 0))) static void say(const char *tag, const char *fmt, va_list ap)
{
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    printf("  %-5s %s\n", tag, line);
    fflush(stdout);
}

__attribute__((format(printf, 2, 3))) static void ok(sim *s, const char *fmt, ...)
{
    (void)s;
    va_list ap;
    va_start(ap, fmt);
    say("ok", fmt, ap);
    va_end(ap);
}

/* A check that failed; returns -1 for the caller's convenience. */
__attribute__((format(printf, 2, 3))) static int fail(sim *s, const char *fmt, ...)
{
    s->fails++;
    va_list ap;
    va_start(ap, fmt);
    say("FAIL", fmt, ap);
    va_end(ap);
    return -1;
}

__attribute__((format(printf, 1, 2))) static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say("", fmt, ap);
    va_end(ap);
}

static void heading(const char *name, const char *what)
{
    printf("\n%s: %s\n", name, what);
    fflush(stdout);
}

static double ms_since(uint64_t t0, uint64_t t1) { return (double)(t1 - t0) / 1e6; }

static void money(char out[32], int64_t cents)
{
    snprintf(out, 32, "%s%lld.%02lld", cents < 0 ? "-" : "", llabs(cents) / 100LL,
             llabs(cents) % 100LL);
}

/* ------------------------------------------------------------------ JSON from the server */

static const char *jstr(const json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static bool jint(const json_t *o, const char *k, int64_t *v)
{
    json_t *x = json_object_get(o, k);
    if (!json_is_integer(x))
        return false;
    *v = json_integer_value(x);
    return true;
}

static bool jeq(const json_t *o, const char *k, const char *want)
{
    const char *v = jstr(o, k);
    return v && strcmp(v, want) == 0;
}

/* A document id from the server, before it goes into a path of ours. */
static bool id_ok(const char *id)
{
    err_t e = {0};
    bool good = id && doc_check_id(id, strlen(id), &e) == 0;
    err_clear(&e);
    return good;
}

/* Figures from the server stay in ranges where our arithmetic on them
 * (totals, stock taken) cannot overflow. */
#define PRICE_MAX 1000000000000LL /* cents */
#define STOCK_ABS_MAX 1000000000000000LL

/* A product document, checked. */
static int product_from(const json_t *doc, product *p)
{
    const char *id = jstr(doc, "id"), *name = jstr(doc, "name");
    if (!id_ok(id) || !jint(doc, "price_cents", &p->price) || !jint(doc, "stock", &p->stock) ||
        p->price < 0 || p->price > PRICE_MAX || p->stock < -STOCK_ABS_MAX ||
        p->stock > STOCK_ABS_MAX)
        return -1;
    snprintf(p->id, sizeof p->id, "%s", id);
    snprintf(p->name, sizeof p->name, "%s", name ? name : id);
    return 0;
}

/* ------------------------------------------------------------------ requests */

/* A server function: POST /v1/fn/NAME with args (taken). */
static int call_fn(sim *s, client_http *h, const char *token, const char *name, json_t *args,
                   client_answer *a)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/fn/%s", name);
    int st = client_call(h, "POST", path, token, args, a);
    json_decref(args);
    (void)s;
    return st;
}

static int get_product(sim *s, client_http *h, const char *token, const char *id, product *p)
{
    char path[200], why[300];
    snprintf(path, sizeof path, "/v1/c/products/%s", id);
    client_answer a;
    client_call(h, "GET", path, token, NULL, &a);
    int rc = 0;
    if (a.status != 200 || product_from(a.json, p)) {
        client_answer_describe(&a, why, sizeof why);
        rc = fail(s, "GET %s: %s", path, a.status == 200 ? "not a product" : why);
    }
    client_answer_clear(&a);
    return rc;
}

/* The change-feed position now (from a list answer): subscribing with it as
 * since misses nothing after it. */
static int feed_seq(sim *s, int64_t *seq)
{
    client_answer a;
    client_call(s->admin, "GET", "/v1/c/products?limit=1", s->admin_token, NULL, &a);
    int rc = 0;
    if (a.status != 200 || !jint(a.json, "seq", seq) || *seq < 0) {
        char why[300];
        client_answer_describe(&a, why, sizeof why);
        rc = fail(s, "GET /v1/c/products: no seq in the answer (%s)", why);
    }
    client_answer_clear(&a);
    return rc;
}

/* Requests in parallel over a few connections (account setup, logins). */
typedef struct preq {
    const char *method;
    char path[160];
    const char *token;
    json_t *body; /* the caller's */
    client_answer a;
} preq;

/* ------------------------------------------------------------------ observers */

typedef struct obs_msg {
    json_t *msg;
    uint64_t at;
} obs_msg;

typedef struct observer {
    sim *s;
    const char *who;
    client_ws *ws;
    obs_msg *q;
    size_t n, cap;
} observer;

typedef struct want {
    const char *t, *sub, *op, *id;
    int64_t version;      /* when > 0, doc.version must be this: the write asked for */
    const char *field;    /* when set, doc.field must then be ... */
    const json_t *equals; /* ... this (checked after the match, to say what was wrong) */
} want;

static void obs_on_msg(void *ud, json_t *msg, uint64_t at)
{
    observer *o = ud;
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 64;
        o->q = xrealloc(o->q, o->cap * sizeof *o->q);
    }
    o->q[o->n++] = (obs_msg){json_incref(msg), at};
}

static bool ws_settled(void *ud) { return !client_ws_connecting(ud); }

static int obs_open(sim *s, observer *o, const char *token, const char *who)
{
    *o = (observer){.s = s, .who = who};
    o->ws = client_ws_open(&s->loop, &s->t, "/v1/realtime", token, s->o.timeout, obs_on_msg, o);
    client_wait(&s->loop, ws_settled, o->ws, s->o.timeout + 1);
    if (!client_ws_open_now(o->ws))
        return fail(s, "the %s's realtime connection: %s", who,
                    client_ws_error(o->ws) ? client_ws_error(o->ws) : "did not open");
    return 0;
}

static void obs_close(observer *o)
{
    if (o->ws)
        client_ws_free(o->ws);
    o->ws = NULL;
    for (size_t i = 0; i < o->n; i++)
        json_decref(o->q[i].msg);
    free(o->q);
    o->q = NULL;
    o->n = o->cap = 0;
}

static bool matches(const json_t *m, const want *w)
{
    if (!jeq(m, "t", w->t) || (w->sub && !jeq(m, "sub", w->sub)) ||
        (w->op && !jeq(m, "op", w->op)) || (w->id && !jeq(m, "id", w->id)))
        return false;
    int64_t v;
    return w->version <= 0 ||
           (jint(json_object_get(m, "doc"), "version", &v) && v == w->version);
}

typedef struct obs_wait {
    observer *o;
    size_t seen;
} obs_wait;

static bool obs_grew(void *ud)
{
    obs_wait *w = ud;
    return w->o->n > w->seen || client_ws_error(w->o->ws);
}

/* Takes the first message that matches w (the others stay), waiting up
 * to secs. An error message for w's subscription ends the wait. NULL
 * when none came; why says why. The message is the caller's. */
static json_t *obs_take(observer *o, const want *w, double secs, uint64_t *at, char *why,
                        size_t whylen)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)(secs * 1e9);
    size_t scanned = 0;
    for (;;) {
        for (size_t i = scanned; i < o->n; i++) {
            json_t *m = o->q[i].msg;
            if (matches(m, w)) {
                if (at)
                    *at = o->q[i].at;
                memmove(&o->q[i], &o->q[i + 1], (o->n - i - 1) * sizeof *o->q);
                o->n--;
                return m;
            }
            if (jeq(m, "t", "error") && w->sub && jeq(m, "sub", w->sub)) {
                json_t *e = json_object_get(m, "error");
                snprintf(why, whylen, "the server refused subscription %s: %.40s: %.160s", w->sub,
                         jstr(e, "code") ? jstr(e, "code") : "?",
                         jstr(e, "message") ? jstr(e, "message") : "");
                return NULL;
            }
        }
        scanned = o->n;
        if (client_ws_error(o->ws)) {
            snprintf(why, whylen, "%s", client_ws_error(o->ws));
            return NULL;
        }
        uint64_t now = uv_hrtime();
        if (now >= deadline) {
            snprintf(why, whylen, "nothing within %g s", secs);
            return NULL;
        }
        obs_wait ow = {o, o->n};
        client_wait(&o->s->loop, obs_grew, &ow, (double)(deadline - now) / 1e9);
    }
}

/* Subscribes; waits for the whole snapshot (docs, when asked) or, with
 * since >= 0, for synced. */
static int obs_sub(observer *o, const char *id, const char *col, json_t *where, int64_t since,
                   json_t **docs)
{
    sim *s = o->s;
    json_t *m = json_pack("{ssssss}", "t", "sub", "id", id, "col", col);
    if (where)
        json_object_set_new(m, "where", where);
    if (since >= 0)
        json_object_set_new(m, "since", json_integer(since));
    int rc = client_ws_send(o->ws, m);
    json_decref(m);
    if (rc)
        return fail(s, "the %s's realtime connection closed: %s", o->who,
                    client_ws_error(o->ws) ? client_ws_error(o->ws) : "?");
    char why[300];
    if (since >= 0) {
        want w = {.t = "synced", .sub = id};
        json_t *got = obs_take(o, &w, s->o.timeout, NULL, why, sizeof why);
        if (!got)
            return fail(s, "the %s's subscription to %s did not sync: %s", o->who, col, why);
        json_decref(got);
        return 0;
    }
    json_t *all = json_array();
    for (;;) {
        want w = {.t = "snapshot", .sub = id};
        json_t *got = obs_take(o, &w, s->o.timeout, NULL, why, sizeof why);
        if (!got) {
            json_decref(all);
            return fail(s, "no snapshot of %s for the %s: %s", col, o->who, why);
        }
        json_t *d = json_object_get(got, "docs");
        if (!json_is_array(d)) {
            json_decref(got);
            json_decref(all);
            return fail(s, "a snapshot of %s without docs", col);
        }
        json_array_extend(all, d);
        bool more = json_is_true(json_object_get(got, "more"));
        json_decref(got);
        if (!more)
            break;
    }
    if (docs)
        *docs = all;
    else
        json_decref(all);
    return 0;
}

/* Waits for a change (w) and says what it was, with the time since t0. */
static json_t *expect_change(observer *o, const want *w, uint64_t t0, const char *what)
{
    sim *s = o->s;
    char why[300];
    uint64_t at = 0;
    json_t *m = obs_take(o, w, s->o.timeout, &at, why, sizeof why);
    if (!m) {
        fail(s, "the %s did not see %s: %s", o->who, what, why);
        return NULL;
    }
    json_t *v = w->field ? json_object_get(json_object_get(m, "doc"), w->field) : NULL;
    if (w->field && !(v && json_equal(v, (json_t *)w->equals))) {
        char *text = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
        fail(s, "the %s saw the change, but its %s is %.40s", o->who, w->field,
             text ? text : "missing");
        free(text);
    } else {
        ok(s, "the %s saw %s %.1f ms after the request", o->who, what,
           at > t0 ? ms_since(t0, at) : 0.0);
    }
    return m;
}

/* ------------------------------------------------------------------ parallel requests */

typedef struct pool_slot {
    struct pool *p;
    int idx;
    client_http *h;
    int req;
} pool_slot;

typedef struct pool {
    preq *reqs;
    int n, next, done;
    pool_slot slots[SETUP_CONNS];
} pool;

static void pool_issue(pool_slot *sl);

static void on_pool_answer(void *ud, const client_resp *r)
{
    pool_slot *sl = ud;
    preq *q = &sl->p->reqs[sl->req];
    q->a.status = r->status;
    if (r->err)
        snprintf(q->a.err, sizeof q->a.err, "%s", r->err);
    else if (r->len)
        q->a.json = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, NULL);
    if (!r->err && r->len && !q->a.json)
        snprintf(q->a.err, sizeof q->a.err, "%d answer is not JSON", r->status);
    sl->p->done++;
    pool_issue(sl);
}

static void pool_issue(pool_slot *sl)
{
    pool *p = sl->p;
    if (p->next >= p->n)
        return;
    sl->req = p->next++;
    preq *q = &p->reqs[sl->req];
    char *text = q->body ? json_dumps(q->body, JSON_COMPACT) : NULL;
    client_http_send(sl->h, q->method, q->path, q->token, text, text ? strlen(text) : 0,
                     on_pool_answer, sl);
    free(text);
}

static bool pool_done(void *ud)
{
    pool *p = ud;
    return p->done == p->n;
}

/* Runs reqs over SETUP_CONNS connections; each gets its answer. */
static int run_pool(sim *s, preq *reqs, int n)
{
    pool p = {.reqs = reqs, .n = n};
    for (int i = 0; i < SETUP_CONNS; i++) {
        p.slots[i] = (pool_slot){.p = &p, .idx = i,
                                 .h = client_http_new(&s->loop, &s->t, s->o.timeout)};
    }
    for (int i = 0; i < SETUP_CONNS; i++)
        pool_issue(&p.slots[i]);
    /* Each request has its own deadline; this only bounds the sum. */
    client_wait(&s->loop, pool_done, &p, (s->o.timeout + 1) * (n / SETUP_CONNS + 2));
    for (int i = 0; i < SETUP_CONNS; i++)
        client_http_free(p.slots[i].h);
    return p.done == n ? 0 : -1;
}

/* ------------------------------------------------------------------ who: the admin and the partners */

static bool token_ok(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    if (n == 0 || n >= TOKEN_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= 'a' && t[i] <= 'z') ||
              (t[i] >= '0' && t[i] <= '9') || t[i] == '-' || t[i] == '_'))
            return false;
    return true;
}

/* What a login answered: the token and the account's id and role, or
 * why not, for a person. */
static int login_answer(const client_answer *a, const char *email, char token[TOKEN_MAX],
                        char id[DOC_ID_MAX + 1], char role[33], char *why, size_t whylen)
{
    if (a->status == 200) {
        const char *t = jstr(a->json, "token");
        json_t *acct = json_object_get(a->json, "account");
        const char *i = jstr(acct, "id"), *r = jstr(acct, "role");
        if (!token_ok(t) || !id_ok(i) || !r || strlen(r) > 32) {
            snprintf(why, whylen, "the login answer for %s has no token or account%s%s", email,
                     a->json ? "" : ": ", a->json ? "" : a->err);
            return -1;
        }
        snprintf(token, TOKEN_MAX, "%s", t);
        snprintf(id, DOC_ID_MAX + 1, "%s", i);
        snprintf(role, 33, "%s", r);
        return 0;
    }
    char desc[300];
    client_answer_describe(a, desc, sizeof desc);
    if (a->status == 401)
        snprintf(why, whylen, "cannot log in as %s: wrong email or password (%s)", email, desc);
    else if (a->status == 429)
        snprintf(why, whylen, "cannot log in as %s: too many failed logins; wait and retry (%s)",
                 email, desc);
    else if (a->status == 0)
        snprintf(why, whylen, "%s (is the server running? see --url)", desc);
    else
        snprintf(why, whylen, "cannot log in as %s: %s", email, desc);
    return -1;
}

static int admin_login(sim *s)
{
    json_t *body = json_pack("{ssss}", "email", s->o.email, "password", s->o.password);
    client_answer a;
    client_call(s->admin, "POST", "/v1/auth/login", NULL, body, &a);
    json_decref(body);
    char id[DOC_ID_MAX + 1], role[33], why[400];
    int rc = login_answer(&a, s->o.email, s->admin_token, id, role, why, sizeof why);
    client_answer_clear(&a);
    if (rc)
        return fail(s, "%s", why);
    if (strcmp(role, "admin") != 0)
        return fail(s, "%s is a %s, not an admin: simulate needs an admin's account", s->o.email,
                    role);
    snprintf(s->admin_email, sizeof s->admin_email, "%s", s->o.email);
    return 0;
}

/* Partners 1..n (sim-partner-K@sim.livedb): made by the admin, or given a
 * new random password and enabled; then logged in. Passwords live only in
 * this process. */
static int partners_ready(sim *s, int n)
{
    if (s->npartners >= n)
        return 0;
    client_answer a;
    client_call(s->admin, "GET", "/v1/accounts", s->admin_token, NULL, &a);
    json_t *accounts = json_object_get(a.json, "accounts");
    if (a.status != 200 || !json_is_array(accounts)) {
        char why[300];
        client_answer_describe(&a, why, sizeof why);
        client_answer_clear(&a);
        return fail(s, "GET /v1/accounts: %s", a.status == 200 ? "no accounts list" : why);
    }
    partner *ps = xcalloc((size_t)n, sizeof *ps);
    char(*pw)[32] = xcalloc((size_t)n, sizeof *pw);
    preq *reqs = xcalloc((size_t)n, sizeof *reqs);
    int rc = 0;
    for (int k = 0; k < n; k++) {
        snprintf(ps[k].email, sizeof ps[k].email, SIM_EMAIL_FMT, k + 1);
        random_id(pw[k], 24);
        const char *id = NULL;
        for (size_t i = 0; i < json_array_size(accounts) && !id; i++) {
            json_t *ac = json_array_get(accounts, i);
            const char *em = jstr(ac, "email"), *aid = jstr(ac, "id");
            if (em && id_ok(aid) && strcmp(em, ps[k].email) == 0)
                id = aid;
        }
        char name[64];
        snprintf(name, sizeof name, "Simulated partner %d", k + 1);
        reqs[k].token = s->admin_token;
        if (id) {
            reqs[k].method = "PATCH";
            snprintf(reqs[k].path, sizeof reqs[k].path, "/v1/accounts/%s", id);
            reqs[k].body = json_pack("{sssssb}", "password", pw[k], "role", "partner", "disabled", 0);
        } else {
            reqs[k].method = "POST";
            snprintf(reqs[k].path, sizeof reqs[k].path, "/v1/accounts");
            reqs[k].body = json_pack("{ssssssss}", "email", ps[k].email, "role", "partner", "name",
                                     name, "password", pw[k]);
        }
    }
    client_answer_clear(&a);
    run_pool(s, reqs, n);
    for (int k = 0; k < n && rc == 0; k++) {
        int st = reqs[k].a.status;
        if (st != 200 && st != 201) {
            char why[300];
            client_answer_describe(&reqs[k].a, why, sizeof why);
            if (st == 400 && strstr(why, "role"))
                rc = fail(s, "the server has no partner role: is it serving the wholesale app"
                             " (--apps wholesale)? (%s)", why);
            else
                rc = fail(s, "%s %s (%s): %s", reqs[k].method, reqs[k].path, ps[k].email, why);
        }
    }
    for (int k = 0; k < n; k++) {
        json_decref(reqs[k].body);
        client_answer_clear(&reqs[k].a);
        reqs[k] = (preq){.method = "POST", .path = "/v1/auth/login",
                         .body = json_pack("{ssss}", "email", ps[k].email, "password", pw[k])};
    }
    if (rc == 0)
        run_pool(s, reqs, n);
    for (int k = 0; k < n && rc == 0; k++) {
        char role[33], why[400];
        if (login_answer(&reqs[k].a, ps[k].email, ps[k].token, ps[k].id, role, why, sizeof why))
            rc = fail(s, "%s", why);
        else if (strcmp(role, "partner") != 0)
            rc = fail(s, "%s logged in as a %s, not a partner", ps[k].email, role);
    }
    for (int k = 0; k < n; k++) {
        json_decref(reqs[k].body);
        client_answer_clear(&reqs[k].a);
    }
    sodium_memzero(pw, (size_t)n * sizeof *pw);
    free(pw);
    free(reqs);
    if (rc) {
        free(ps);
        return -1;
    }
    free(s->partners);
    s->partners = ps;
    s->npartners = n;
    return 0;
}

/* Disables the partners used: no one can log in as them until the next
 * simulation gives them a new password. */
static void partners_disable(sim *s)
{
    if (s->npartners == 0)
        return;
    preq *reqs = xcalloc((size_t)s->npartners, sizeof *reqs);
    for (int k = 0; k < s->npartners; k++)
        reqs[k] = (preq){.method = "PATCH", .token = s->admin_token,
                         .body = json_pack("{sb}", "disabled", 1)};
    for (int k = 0; k < s->npartners; k++)
        snprintf(reqs[k].path, sizeof reqs[k].path, "/v1/accounts/%s", s->partners[k].id);
    run_pool(s, reqs, s->npartners);
    int bad = 0;
    char why[300] = "";
    for (int k = 0; k < s->npartners; k++) {
        if (reqs[k].a.status != 200 && bad++ == 0)
            client_answer_describe(&reqs[k].a, why, sizeof why);
        json_decref(reqs[k].body);
        client_answer_clear(&reqs[k].a);
    }
    free(reqs);
    if (bad)
        fail(s, "could not disable %d of the simulated partners: %s", bad, why);
}

/* The product the scenarios order: the first active one in stock that is
 * not the simulation's own, or one made for the purpose. */
static int scenario_product(sim *s)
{
    client_answer a;
    client_call(s->admin, "GET", "/v1/c/products?where=stock:ge:10&limit=200", s->admin_token,
                NULL, &a);
    json_t *docs = json_object_get(a.json, "docs");
    if (a.status != 200 || !json_is_array(docs)) {
        char why[300];
        client_answer_describe(&a, why, sizeof why);
        client_answer_clear(&a);
        return fail(s, "GET /v1/c/products: %s", a.status == 200 ? "no docs" : why);
    }
    for (size_t i = 0; i < json_array_size(docs) && !s->product_id[0]; i++) {
        json_t *d = json_array_get(docs, i);
        product p;
        if (product_from(d, &p) == 0 && strncmp(p.id, "sim-", 4) != 0 &&
            !json_is_false(json_object_get(d, "active")) && p.price >= 0 && p.stock >= 10)
            snprintf(s->product_id, sizeof s->product_id, "%s", p.id);
    }
    client_answer_clear(&a);
    if (s->product_id[0])
        return 0;
    json_t *doc = json_pack("{sssssssssisisb}", "sku", "SIM-PRODUCT", "name", "Simulated product",
                            "category", "simulation", "unit", "each", "price_cents", 1000,
                            "stock", 100, "active", 1);
    client_call(s->admin, "PUT", "/v1/c/products/sim-product", s->admin_token, doc, &a);
    json_decref(doc);
    int rc = 0;
    if (a.status == 200 || a.status == 201) {
        snprintf(s->product_id, sizeof s->product_id, "sim-product");
        s->own_product = true;
        note("no product in stock: made sim-product (deleted at the end)");
    } else {
        char why[300];
        client_answer_describe(&a, why, sizeof why);
        rc = fail(s, "PUT /v1/c/products/sim-product: %s", why);
    }
    client_answer_clear(&a);
    return rc;
}

/* ------------------------------------------------------------------ orders */

/* Checks an order answer of one line of product p: the order's shape, its
 * partner and status, and prices taken from the product. */
static int check_order(sim *s, const client_answer *a, const partner *pt, const product *p,
                       int64_t qty, char oid[DOC_ID_MAX + 1])
{
    char why[300];
    if (a->status != 200) {
        client_answer_describe(a, why, sizeof why);
        return fail(s, "place_order: %s", why);
    }
    json_t *o = json_object_get(a->json, "order");
    const char *id = jstr(o, "id");
    json_t *items = json_object_get(o, "items"), *it = json_array_get(items, 0);
    int64_t q = 0, price = 0, total = 0;
    if (!id_ok(id))
        return fail(s, "place_order answered 200 without an order id");
    if (!jeq(o, "partner_id", pt->id))
        return fail(s, "order %s: partner_id is not %s's id", id, pt->email);
    if (!jeq(o, "status", "pending"))
        return fail(s, "order %s: status %.20s, not pending", id,
                    jstr(o, "status") ? jstr(o, "status") : "missing");
    if (json_array_size(items) != 1 || !jeq(it, "product_id", p->id) || !jint(it, "qty", &q) ||
        q != qty || !jint(it, "price_cents", &price) || !jint(o, "total_cents", &total))
        return fail(s, "order %s: its items are not %lld x %s", id, (long long)qty, p->id);
    if (price != p->price || total > PRICE_MAX * 1000 || total != p->price * qty)
        return fail(s, "order %s: price %lld and total %lld, but the product costs %lld", id,
                    (long long)price, (long long)total, (long long)p->price);
    snprintf(oid, DOC_ID_MAX + 1, "%s", id);
    return 0;
}

static int place(sim *s, const partner *pt, const product *p, int64_t qty, const char *notes,
                 char oid[DOC_ID_MAX + 1], double *ms)
{
    client_answer a;
    call_fn(s, s->part, pt->token, "place_order",
            json_pack("{s[{sssI}]ss}", "items", "product_id", p->id, "qty", (json_int_t)qty,
                      "notes", notes),
            &a);
    int rc = check_order(s, &a, pt, p, qty, oid);
    if (ms)
        *ms = a.ms;
    client_answer_clear(&a);
    return rc;
}

/* A status change by who (the admin's or the partner's connection);
 * expect: the status the answer must have, or NULL for "refused with
 * refusal" (a code). */
static int set_status(sim *s, bool admin, const char *oid, const char *to, const char *refusal,
                      int64_t *version)
{
    client_answer a;
    call_fn(s, admin ? s->admin : s->part, admin ? s->admin_token : s->partners[0].token,
            "set_order_status", json_pack("{ssss}", "order_id", oid, "status", to), &a);
    char why[300];
    client_answer_describe(&a, why, sizeof why);
    int rc = 0;
    if (refusal) {
        const char *code = jstr(json_object_get(a.json, "error"), "code");
        if (a.status >= 400 && a.status < 500 && code && strcmp(code, refusal) == 0)
            ok(s, "a partner may not make its order %s: %s", to, why);
        else
            rc = fail(s, "a partner making its order %s: expected %s, got %s", to, refusal,
                      a.status == 200 ? "200 (allowed!)" : why);
    } else if (a.status != 200) {
        rc = fail(s, "set_order_status %s -> %s: %s", oid, to, why);
    } else if (!jeq(json_object_get(a.json, "order"), "status", to) ||
               !jint(json_object_get(a.json, "order"), "version", version)) {
        rc = fail(s, "set_order_status %s -> %s answered another status (or no version)", oid,
                  to);
    }
    client_answer_clear(&a);
    return rc;
}

static int adjust(sim *s, const char *pid, int64_t delta, int64_t *stock_after,
                  int64_t *version, char *why, size_t whylen, int *status)
{
    client_answer a;
    call_fn(s, s->admin, s->admin_token, "adjust_inventory",
            json_pack("{sssI}", "product_id", pid, "delta", (json_int_t)delta), &a);
    *status = a.status;
    client_answer_describe(&a, why, whylen);
    json_t *p = json_object_get(a.json, "product");
    int rc = a.status == 200 && jint(p, "stock", stock_after) && jint(p, "version", version)
                 ? 0
                 : -1;
    if (a.status == 200 && rc)
        snprintf(why, whylen, "adjust_inventory answered 200 without the product's stock");
    client_answer_clear(&a);
    return rc;
}

static int set_price(sim *s, const char *pid, int64_t price, int64_t *version)
{
    client_answer a;
    call_fn(s, s->admin, s->admin_token, "set_price",
            json_pack("{sssI}", "product_id", pid, "price_cents", (json_int_t)price), &a);
    int64_t got = -1;
    int rc = 0;
    json_t *p = json_object_get(a.json, "product");
    if (a.status != 200 || !jint(p, "price_cents", &got) || got != price ||
        !jint(p, "version", version)) {
        char why[300];
        client_answer_describe(&a, why, sizeof why);
        rc = fail(s, "set_price %s %lld: %s", pid, (long long)price,
                  a.status == 200 ? "answered another price" : why);
    }
    client_answer_clear(&a);
    return rc;
}

/* The partner cancels its pending order: the stock goes back. */
static void cancel(sim *s, observer *watch, const char *sub, const char *oid)
{
    uint64_t t0 = uv_hrtime();
    int64_t version;
    if (set_status(s, false, oid, "cancelled", NULL, &version))
        return;
    if (watch && watch->ws) {
        json_t *cancelled = json_string("cancelled");
        want w = {.t = "change", .sub = sub, .op = "modified", .id = oid, .version = version,
                  .field = "status", .equals = cancelled};
        json_decref(expect_change(watch, &w, t0, "the order cancelled"));
        json_decref(cancelled);
    }
}

static json_t *find_doc(json_t *docs, const char *id)
{
    for (size_t i = 0; i < json_array_size(docs); i++)
        if (jeq(json_array_get(docs, i), "id", id))
            return json_array_get(docs, i);
    return NULL;
}

/* ------------------------------------------------------------------ partner-order */

static int sc_partner_order(sim *s)
{
    heading("partner-order", "a partner orders; the admin's orders subscription sees it arrive");
    int fails0 = s->fails;
    partner *pt = &s->partners[0];
    observer adm = {0};
    char oid[DOC_ID_MAX + 1] = "", m1[32], why[300];
    product p0, p1;
    int64_t seq, qty = 2;
    double ms;
    if (get_product(s, s->part, pt->token, s->product_id, &p0) || feed_seq(s, &seq) ||
        obs_open(s, &adm, s->admin_token, "admin") ||
        obs_sub(&adm, "o", "orders", NULL, seq, NULL))
        goto out;
    uint64_t t0 = uv_hrtime();
    if (place(s, pt, &p0, qty, "livedb simulate: partner-order", oid, &ms))
        goto out;
    money(m1, p0.price * qty);
    ok(s, "%s ordered %lld x %s: order %s, pending, %s (answered in %.1f ms)", pt->email,
       (long long)qty, p0.name, oid, m1, ms);
    want w = {.t = "change", .sub = "o", .op = "added", .id = oid};
    json_t *m = expect_change(&adm, &w, t0, "the order added");
    if (m && !jeq(json_object_get(m, "doc"), "status", "pending"))
        fail(s, "the order in the admin's change is not pending");
    json_decref(m);
    if (get_product(s, s->part, pt->token, p0.id, &p1))
        goto out;
    if (p1.stock == p0.stock - qty)
        ok(s, "stock of %s went %lld -> %lld", p0.name, (long long)p0.stock, (long long)p1.stock);
    else
        fail(s, "stock of %s is %lld, not %lld - %lld (is someone else ordering?)", p0.name,
             (long long)p1.stock, (long long)p0.stock, (long long)qty);
    /* More than there is: refused with what is available; nothing changes. */
    if (p1.stock < 100000) {
        client_answer a;
        call_fn(s, s->part, pt->token, "place_order",
                json_pack("{s[{sssI}]}", "items", "product_id", p0.id, "qty",
                          (json_int_t)(p1.stock + 1)),
                &a);
        json_t *d = json_array_get(json_object_get(json_object_get(a.json, "error"), "details"), 0);
        int64_t avail = -1;
        client_answer_describe(&a, why, sizeof why);
        if (a.status == 422 && jeq(json_object_get(a.json, "error"), "code", "insufficient_stock") &&
            jint(d, "available", &avail) && avail == p1.stock)
            ok(s, "an order of %lld (one more than in stock) was refused: insufficient_stock,"
                  " %lld available", (long long)(p1.stock + 1), (long long)avail);
        else
            fail(s, "an order of one more than in stock: expected 422 insufficient_stock with"
                    " %lld available, got %s", (long long)p1.stock, why);
        client_answer_clear(&a);
    }
out:
    if (oid[0]) {
        cancel(s, &adm, "o", oid);
        if (get_product(s, s->part, pt->token, p0.id, &p1) == 0) {
            if (p1.stock == p0.stock)
                ok(s, "cancelled it; stock of %s back to %lld", p0.name, (long long)p1.stock);
            else
                fail(s, "cancelled it, but stock of %s is %lld, not %lld", p0.name,
                     (long long)p1.stock, (long long)p0.stock);
        }
    }
    obs_close(&adm);
    return s->fails == fails0 ? 0 : 1;
}

/* ------------------------------------------------------------------ inventory-update */

static int sc_inventory(sim *s)
{
    heading("inventory-update", "the admin adjusts stock; a partner's products subscription sees it");
    int fails0 = s->fails;
    partner *pt = &s->partners[0];
    observer par = {0};
    json_t *docs = NULL;
    product p0;
    int64_t after = 0, added = 0, delta = 7, version;
    int status;
    char why[300];
    if (obs_open(s, &par, pt->token, "partner") || obs_sub(&par, "p", "products", NULL, -1, &docs))
        goto out;
    json_t *d = find_doc(docs, s->product_id);
    if (!d || product_from(d, &p0)) {
        fail(s, "the partner's snapshot of products has no %s", s->product_id);
        goto out;
    }
    ok(s, "the partner's snapshot: %zu products; %s has %lld in stock", json_array_size(docs),
       p0.name, (long long)p0.stock);
    uint64_t t0 = uv_hrtime();
    if (adjust(s, p0.id, delta, &after, &version, why, sizeof why, &status)) {
        fail(s, "adjust_inventory +%lld: %s", (long long)delta, why);
        goto out;
    }
    added = delta;
    if (after != p0.stock + delta)
        fail(s, "adjust_inventory +%lld answered stock %lld, not %lld", (long long)delta,
             (long long)after, (long long)(p0.stock + delta));
    else
        ok(s, "the admin added %lld: stock %lld -> %lld", (long long)delta, (long long)p0.stock,
           (long long)after);
    json_t *want_stock = json_integer(after);
    want w = {.t = "change", .sub = "p", .op = "modified", .id = p0.id, .version = version,
              .field = "stock", .equals = want_stock};
    char what[160];
    snprintf(what, sizeof what, "the stock of %s become %lld", p0.name, (long long)after);
    json_decref(expect_change(&par, &w, t0, what));
    json_decref(want_stock);
    /* Stock never goes below 0. */
    int64_t dummy;
    if (adjust(s, p0.id, -(after + 1), &dummy, &version, why, sizeof why, &status) == 0)
        fail(s, "adjust_inventory -%lld on a stock of %lld was allowed", (long long)(after + 1),
             (long long)after);
    else if (status == 422 && strstr(why, "insufficient_stock"))
        ok(s, "taking %lld from a stock of %lld was refused: %s", (long long)(after + 1),
           (long long)after, why);
    else
        fail(s, "adjust_inventory -%lld: expected 422 insufficient_stock, got %s",
             (long long)(after + 1), why);
    /* Only an admin adjusts. */
    client_answer a;
    call_fn(s, s->part, pt->token, "adjust_inventory",
            json_pack("{sssi}", "product_id", p0.id, "delta", 1), &a);
    client_answer_describe(&a, why, sizeof why);
    if (a.status == 403)
        ok(s, "a partner may not adjust inventory: %s", why);
    else
        fail(s, "a partner adjusting inventory: expected 403, got %s", why);
    client_answer_clear(&a);
out:
    if (added) {
        uint64_t t1 = uv_hrtime();
        if (adjust(s, p0.id, -added, &after, &version, why, sizeof why, &status)) {
            fail(s, "putting the stock back (adjust_inventory -%lld): %s", (long long)added, why);
        } else {
            json_t *back = json_integer(after);
            want wb = {.t = "change", .sub = "p", .op = "modified", .id = p0.id,
                       .version = version, .field = "stock", .equals = back};
            char whatb[160];
            snprintf(whatb, sizeof whatb, "the stock back at %lld", (long long)after);
            json_decref(expect_change(&par, &wb, t1, whatb));
            json_decref(back);
        }
    }
    json_decref(docs);
    obs_close(&par);
    return s->fails == fails0 ? 0 : 1;
}

/* ------------------------------------------------------------------ price-update */

static int sc_price(sim *s)
{
    heading("price-update",
            "the admin changes a price; the partner sees it; orders placed before keep theirs");
    int fails0 = s->fails;
    partner *pt = &s->partners[0];
    observer par = {0};
    json_t *docs = NULL;
    product p0, p1;
    char before[DOC_ID_MAX + 1] = "", later[DOC_ID_MAX + 1] = "", m0[32], m1[32], why[300];
    bool changed = false;
    int64_t version;
    if (obs_open(s, &par, pt->token, "partner") || obs_sub(&par, "p", "products", NULL, -1, &docs))
        goto out;
    json_t *d = find_doc(docs, s->product_id);
    if (!d || product_from(d, &p0)) {
        fail(s, "the partner's snapshot of products has no %s", s->product_id);
        goto out;
    }
    if (place(s, pt, &p0, 1, "livedb simulate: price-update (before)", before, NULL))
        goto out;
    money(m0, p0.price);
    ok(s, "the partner ordered 1 x %s at %s: order %s", p0.name, m0, before);
    p1 = p0;
    p1.price = p0.price + 125;
    money(m1, p1.price);
    uint64_t t0 = uv_hrtime();
    if (set_price(s, p0.id, p1.price, &version))
        goto out;
    changed = true;
    ok(s, "the admin set the price of %s: %s -> %s", p0.name, m0, m1);
    json_t *pj = json_integer(p1.price);
    want w = {.t = "change", .sub = "p", .op = "modified", .id = p0.id, .version = version,
              .field = "price_cents", .equals = pj};
    char what[160];
    snprintf(what, sizeof what, "the new price %s", m1);
    json_decref(expect_change(&par, &w, t0, what));
    json_decref(pj);
    /* The order placed before keeps its price. */
    char path[200];
    snprintf(path, sizeof path, "/v1/c/orders/%s", before);
    client_answer a;
    client_call(s->part, "GET", path, pt->token, NULL, &a);
    json_t *it = json_array_get(json_object_get(a.json, "items"), 0);
    int64_t price = -1, total = -1;
    client_answer_describe(&a, why, sizeof why);
    if (a.status == 200 && jint(it, "price_cents", &price) && jint(a.json, "total_cents", &total) &&
        price == p0.price && total == p0.price)
        ok(s, "order %s still costs %s", before, m0);
    else
        fail(s, "order %s after the price change: %s", before,
             a.status == 200 ? "its price changed with the product's" : why);
    client_answer_clear(&a);
    /* One placed now pays the new price (place checks it). */
    if (place(s, pt, &p1, 1, "livedb simulate: price-update (after)", later, NULL) == 0)
        ok(s, "an order placed now costs %s: order %s", m1, later);
out:
    if (changed) {
        uint64_t t1 = uv_hrtime();
        if (set_price(s, p0.id, p0.price, &version) == 0) {
            json_t *back = json_integer(p0.price);
            want w2 = {.t = "change", .sub = "p", .op = "modified", .id = p0.id,
                       .version = version, .field = "price_cents", .equals = back};
            char what2[160];
            snprintf(what2, sizeof what2, "the price back at %s", m0);
            json_decref(expect_change(&par, &w2, t1, what2));
            json_decref(back);
        }
    }
    if (before[0])
        cancel(s, NULL, NULL, before);
    if (later[0])
        cancel(s, NULL, NULL, later);
    if ((before[0] || later[0]) && get_product(s, s->part, pt->token, s->product_id, &p1) == 0 &&
        p1.stock != p0.stock)
        fail(s, "after cancelling, stock of %s is %lld, not %lld", p0.name, (long long)p1.stock,
             (long long)p0.stock);
    json_decref(docs);
    obs_close(&par);
    return s->fails == fails0 ? 0 : 1;
}

/* ------------------------------------------------------------------ order-status */

static int sc_status(sim *s)
{
    heading("order-status", "the admin moves an order pending -> confirmed -> packed -> shipped;"
                            " the partner sees each step");
    int fails0 = s->fails;
    partner *pt = &s->partners[0];
    observer par = {0};
    product p0;
    int64_t seq, qty = 1, version;
    char oid[DOC_ID_MAX + 1] = "", why[300];
    const char *state = NULL; /* where the order is */
    if (get_product(s, s->part, pt->token, s->product_id, &p0) || feed_seq(s, &seq) ||
        obs_open(s, &par, pt->token, "partner") ||
        obs_sub(&par, "o", "orders", NULL, seq, NULL))
        goto out;
    uint64_t t0 = uv_hrtime();
    if (place(s, pt, &p0, qty, "livedb simulate: order-status", oid, NULL))
        goto out;
    state = "pending";
    ok(s, "the partner ordered %lld x %s: order %s, pending", (long long)qty, p0.name, oid);
    want wa = {.t = "change", .sub = "o", .op = "added", .id = oid};
    json_decref(expect_change(&par, &wa, t0, "its order added to its own orders"));
    static const char *const steps[] = {"confirmed", "packed", "shipped"};
    for (size_t i = 0; i < ARRAY_LEN(steps); i++) {
        t0 = uv_hrtime();
        if (set_status(s, true, oid, steps[i], NULL, &version))
            goto out;
        state = steps[i];
        json_t *st = json_string(steps[i]);
        want w = {.t = "change", .sub = "o", .op = "modified", .id = oid, .version = version,
                  .field = "status", .equals = st};
        char what[64];
        snprintf(what, sizeof what, "its order %s", steps[i]);
        json_t *m = expect_change(&par, &w, t0, what);
        json_t *hist = json_object_get(json_object_get(m, "doc"), "history");
        if (m && (!json_is_array(hist) || json_array_size(hist) != i + 2 ||
                  !jeq(json_array_get(hist, i + 1), "status", steps[i])))
            fail(s, "the order's history does not end with %s", steps[i]);
        json_decref(m);
        json_decref(st);
        if (i == 0)
            set_status(s, false, oid, "packed", "forbidden", &version);
    }
    set_status(s, false, oid, "cancelled", "invalid_transition", &version);
out:
    if (state && strcmp(state, "shipped") == 0) {
        /* Shipped is shipped: restock what it took instead. */
        int64_t after;
        int status;
        if (adjust(s, p0.id, qty, &after, &version, why, sizeof why, &status))
            fail(s, "restocking %s: %s", p0.name, why);
        else
            ok(s, "order %s stays shipped; restocked %lld x %s (stock %lld)", oid, (long long)qty,
               p0.name, (long long)after);
    } else if (state) {
        set_status(s, true, oid, "cancelled", NULL, &version); /* puts the stock back */
    }
    obs_close(&par);
    return s->fails == fails0 ? 0 : 1;
}

/* ------------------------------------------------------------------ stress */

typedef struct st_order {
    uint64_t sent;
    bool answered; /* answered 200 */
    int seen;      /* times the admin's subscription saw it added */
} st_order;

typedef struct st_product {
    char id[32];
    int64_t stock0, stock1, price;
    int64_t ok_units, seen_units;
} st_product;

typedef struct st_partner {
    struct stress *st;
    const partner *p;
    client_http *h;
    bool busy;
    int prod;
    int64_t qty;
    uint64_t sent, not_before;
} st_partner;

typedef struct st_code {
    char code[48];
    long n;
    char first[200];
} st_code;

typedef struct u32s {
    uint32_t *v;
    size_t n, cap;
} u32s;

typedef struct stress {
    sim *s;
    st_partner *parts;
    int nparts;
    st_product *prods;
    int nprods;
    map_t orders;      /* order id -> st_order */
    map_t partner_ids; /* account id -> the partner */
    u32s lat;          /* request to answer, us (every answer) */
    u32s seen_lat;     /* request to the admin's change, us */
    st_code codes[24];
    int ncodes;
    long ok, failed, no_answer, wrong;
    long inflight, issued;
    bool issuing;
    int rr;
    uint64_t t0, t_end, t_last;
    uv_timer_t tick;
    bool tick_closed;
    client_ws *ws;
    bool synced;
    long seen, dups, foreign;
    char ws_err[300];
} stress;

static void u32s_push(u32s *a, uint64_t ns)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 4096;
        a->v = xrealloc(a->v, a->cap * sizeof *a->v);
    }
    uint64_t us = ns / 1000;
    a->v[a->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile in ms of sorted values. */
static double pct(const u32s *a, double q)
{
    if (!a->n)
        return 0;
    size_t i = (size_t)(q * (double)a->n);
    return (double)a->v[i < a->n ? i : a->n - 1] / 1000.0;
}

static void st_count(stress *st, const char *code, const char *first)
{
    int i = 0;
    while (i < st->ncodes && strcmp(st->codes[i].code, code) != 0)
        i++;
    if (i == st->ncodes) {
        if (st->ncodes == (int)ARRAY_LEN(st->codes)) {
            i = st->ncodes - 1; /* the last slot takes the rest */
            snprintf(st->codes[i].code, sizeof st->codes[i].code, "(other codes)");
        } else {
            st->ncodes++;
            snprintf(st->codes[i].code, sizeof st->codes[i].code, "%s", code);
            snprintf(st->codes[i].first, sizeof st->codes[i].first, "%s", first ? first : "");
        }
    }
    st->codes[i].n++;
}

static int st_product_index(const stress *st, const char *id)
{
    for (int i = 0; i < st->nprods; i++)
        if (strcmp(st->prods[i].id, id) == 0)
            return i;
    return -1;
}

static st_order *st_order_of(stress *st, const char *id)
{
    size_t n = strlen(id);
    st_order *o = map_get(&st->orders, id, n);
    if (!o) {
        o = xcalloc(1, sizeof *o);
        map_put(&st->orders, id, n, o);
    }
    return o;
}

static void st_issue(st_partner *sp);

/* A 200 answer: the order must be the one asked for. */
static void st_answered_ok(stress *st, st_partner *sp, const client_resp *r, uint64_t now)
{
    json_t *j = json_loadb(r->body, r->len, 0, NULL);
    json_t *o = json_object_get(j, "order");
    json_t *it = json_array_get(json_object_get(o, "items"), 0);
    const char *id = jstr(o, "id");
    int64_t q = 0;
    st_product *p = &st->prods[sp->prod];
    if (!id || strlen(id) > DOC_ID_MAX || !jeq(o, "partner_id", sp->p->id) ||
        !jeq(it, "product_id", p->id) || !jint(it, "qty", &q) || q != sp->qty) {
        st->wrong++;
        st_count(st, "wrong_answer", "a 200 answer that is not the order asked for");
    } else {
        st_order *so = st_order_of(st, id);
        if (so->answered) {
            st->wrong++;
            st_count(st, "wrong_answer", "two orders answered with the same id");
        } else {
            so->answered = true;
            so->sent = sp->sent;
            st->ok++;
            p->ok_units += q;
        }
        (void)now;
    }
    json_decref(j);
}

static void st_on_answer(void *ud, const client_resp *r)
{
    st_partner *sp = ud;
    stress *st = sp->st;
    uint64_t now = uv_hrtime();
    sp->busy = false;
    st->inflight--;
    st->t_last = now;
    if (r->status == 0) {
        st->no_answer++;
        st_count(st, "no_answer", r->err);
        sp->not_before = now + 100 * 1000 * 1000; /* not a tight loop of failures */
    } else {
        u32s_push(&st->lat, now - sp->sent);
        if (r->status == 200) {
            st_answered_ok(st, sp, r, now);
        } else {
            st->failed++;
            json_t *j = json_loadb(r->body, r->len, 0, NULL);
            json_t *e = json_object_get(j, "error");
            const char *code = jstr(e, "code"), *msg = jstr(e, "message");
            char c[48];
            if (code && strlen(code) < sizeof c)
                snprintf(c, sizeof c, "%s", code);
            else
                snprintf(c, sizeof c, "http_%d", r->status);
            char first[200];
            snprintf(first, sizeof first, "%d %s: %.150s", r->status, c, msg ? msg : "");
            st_count(st, c, first);
            json_decref(j);
        }
    }
    if (st->issuing && now < st->t_end && st->s->o.rate == 0 && now >= sp->not_before)
        st_issue(sp);
}

static void st_issue(st_partner *sp)
{
    stress *st = sp->st;
    sp->prod = (int)randombytes_uniform((uint32_t)st->nprods);
    sp->qty = 1 + (int64_t)randombytes_uniform(3);
    char body[256];
    int n = snprintf(body, sizeof body,
                     "{\"items\":[{\"product_id\":\"%s\",\"qty\":%lld}],"
                     "\"notes\":\"livedb simulate stress\"}",
                     st->prods[sp->prod].id, (long long)sp->qty);
    sp->busy = true;
    sp->sent = uv_hrtime();
    st->inflight++;
    st->issued++;
    client_http_send(sp->h, "POST", "/v1/fn/place_order", sp->p->token, body, (size_t)n,
                     st_on_answer, sp);
}

/* Every millisecond: the end of the run, orders due at the asked rate,
 * partners back from a pause after a failure. */
static void st_tick(uv_timer_t *t)
{
    stress *st = t->data;
    uint64_t now = uv_hrtime();
    if (!st->issuing)
        return;
    if (now >= st->t_end) {
        st->issuing = false;
        uv_timer_stop(t);
        return;
    }
    double rate = st->s->o.rate;
    long due = rate > 0 ? (long)(rate * (double)(now - st->t0) / 1e9) + 1 : LONG_MAX;
    for (int k = 0; k < st->nparts && st->issued < due; k++) {
        st_partner *sp = &st->parts[st->rr];
        st->rr = (st->rr + 1) % st->nparts;
        if (!sp->busy && now >= sp->not_before)
            st_issue(sp);
    }
}

/* The admin's subscription: every order of the run, added once. What it
 * saw committed is the truth the stock is checked against. */
static void st_on_msg(void *ud, json_t *m, uint64_t at)
{
    stress *st = ud;
    const char *t = jstr(m, "t");
    if (!t)
        return;
    if (strcmp(t, "synced") == 0) {
        st->synced = true;
        return;
    }
    if (strcmp(t, "error") == 0) {
        json_t *e = json_object_get(m, "error");
        if (!st->ws_err[0])
            snprintf(st->ws_err, sizeof st->ws_err, "the server sent an error: %.40s: %.200s",
                     jstr(e, "code") ? jstr(e, "code") : "?",
                     jstr(e, "message") ? jstr(e, "message") : "");
        return;
    }
    if (strcmp(t, "change") != 0 || !jeq(m, "op", "added"))
        return;
    json_t *doc = json_object_get(m, "doc");
    const char *id = jstr(m, "id"), *pid = jstr(doc, "partner_id");
    if (!id || strlen(id) > DOC_ID_MAX || !pid || !map_get(&st->partner_ids, pid, strlen(pid))) {
        st->foreign++;
        return;
    }
    st_order *o = st_order_of(st, id);
    if (++o->seen > 1) {
        st->dups++;
        return;
    }
    st->seen++;
    if (o->answered)
        u32s_push(&st->seen_lat, at - o->sent);
    json_t *items = json_object_get(doc, "items");
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        const char *prod = jstr(it, "product_id");
        int64_t q;
        int k = prod ? st_product_index(st, prod) : -1;
        if (k >= 0 && jint(it, "qty", &q) && q > 0 && q <= STOCK_ABS_MAX)
            st->prods[k].seen_units += q;
    }
}

static bool st_finished(void *ud)
{
    stress *st = ud;
    return !st->issuing && st->inflight == 0;
}

static bool st_all_seen(void *ud)
{
    stress *st = ud;
    if (client_ws_error(st->ws) || st->ws_err[0])
        return true;
    size_t i = 0, kl;
    const char *k;
    void *v;
    while (map_next(&st->orders, &i, &k, &kl, &v)) {
        st_order *o = v;
        if (o->answered && !o->seen)
            return false;
    }
    return true;
}

static bool st_synced(void *ud)
{
    stress *st = ud;
    return st->synced || st->ws_err[0] || client_ws_error(st->ws);
}

static void st_tick_closed(uv_handle_t *h) { ((stress *)h->data)->tick_closed = true; }

static bool st_tick_gone(void *ud) { return ((stress *)ud)->tick_closed; }

static bool never(void *ud)
{
    (void)ud;
    return false;
}

/* The run's products, sim-hot-01..N: made (or reset) with --stock. */
static int st_products_make(stress *st)
{
    sim *s = st->s;
    preq *reqs = xcalloc((size_t)st->nprods, sizeof *reqs);
    for (int i = 0; i < st->nprods; i++) {
        st_product *p = &st->prods[i];
        snprintf(p->id, sizeof p->id, "sim-hot-%02d", i + 1);
        char sku[32], name[64];
        snprintf(sku, sizeof sku, "SIM-HOT-%02d", i + 1);
        snprintf(name, sizeof name, "Simulated hot product %d", i + 1);
        reqs[i] = (preq){.method = "PUT", .token = s->admin_token};
        snprintf(reqs[i].path, sizeof reqs[i].path, "/v1/c/products/%s", p->id);
        reqs[i].body = json_pack("{sssssssssIsIsb}", "sku", sku, "name", name, "category",
                                 "simulation", "unit", "each", "price_cents",
                                 (json_int_t)(100 * (i + 1)), "stock", (json_int_t)s->o.stock,
                                 "active", 1);
    }
    run_pool(s, reqs, st->nprods);
    int rc = 0;
    for (int i = 0; i < st->nprods; i++) {
        product p;
        if (rc == 0 && ((reqs[i].a.status != 200 && reqs[i].a.status != 201) ||
                        product_from(reqs[i].a.json, &p))) {
            char why[300];
            client_answer_describe(&reqs[i].a, why, sizeof why);
            rc = fail(s, "PUT %s: %s", reqs[i].path, why);
        } else if (rc == 0) {
            st->prods[i].stock0 = p.stock;
            st->prods[i].price = p.price;
        }
        json_decref(reqs[i].body);
        client_answer_clear(&reqs[i].a);
    }
    free(reqs);
    return rc;
}

/* GET (final stock) or DELETE every product of the run. */
static int st_products_each(stress *st, const char *method)
{
    sim *s = st->s;
    preq *reqs = xcalloc((size_t)st->nprods, sizeof *reqs);
    for (int i = 0; i < st->nprods; i++) {
        reqs[i] = (preq){.method = method, .token = s->admin_token};
        snprintf(reqs[i].path, sizeof reqs[i].path, "/v1/c/products/%s", st->prods[i].id);
    }
    run_pool(s, reqs, st->nprods);
    int rc = 0;
    for (int i = 0; i < st->nprods; i++) {
        product p;
        bool get = strcmp(method, "GET") == 0;
        if (reqs[i].a.status != 200 || (get && product_from(reqs[i].a.json, &p))) {
            char why[300];
            client_answer_describe(&reqs[i].a, why, sizeof why);
            if (rc == 0)
                rc = fail(s, "%s %s: %s", method, reqs[i].path, why);
        } else if (get) {
            st->prods[i].stock1 = p.stock;
        }
        client_answer_clear(&reqs[i].a);
    }
    free(reqs);
    return rc;
}

/* What the run found: figures, then the checks. */
static void st_report(stress *st, double secs)
{
    sim *s = st->s;
    qsort(st->lat.v, st->lat.n, sizeof *st->lat.v, cmp_u32);
    qsort(st->seen_lat.v, st->seen_lat.n, sizeof *st->seen_lat.v, cmp_u32);
    double rate = secs > 0 ? (double)st->ok / secs : 0;
    note("orders    %ld placed in %.2f s: %.1f orders/s (%ld asked%s)", st->ok, secs, rate,
         st->issued, s->o.rate > 0 ? "" : ", as fast as answered");
    if (s->o.rate > 0 && (double)st->issued < 0.95 * s->o.rate * s->o.seconds)
        note("          the asked rate of %g/s was not reached: the server (or this machine)"
             " answered slower", s->o.rate);
    note("latency   p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, max %.2f ms (%zu answers)",
         pct(&st->lat, 0.50), pct(&st->lat, 0.95), pct(&st->lat, 0.99), pct(&st->lat, 1.0),
         st->lat.n);
    long bad = 0;
    if (st->ncodes == 0) {
        note("errors    none");
    } else {
        for (int i = 0; i < st->ncodes; i++) {
            bool expected = strcmp(st->codes[i].code, "insufficient_stock") == 0;
            note("errors    %-20s %6ld  (first: %s)%s", st->codes[i].code, st->codes[i].n,
                 st->codes[i].first, expected ? "  -- expected when stock runs out" : "");
            if (!expected)
                bad += st->codes[i].n;
        }
    }
    if (bad)
        fail(s, "%ld orders failed for another reason than insufficient stock", bad);
    /* No oversell: what left each product's stock is what its orders took. */
    long oversold = 0;
    int64_t units = 0;
    bool truth = !client_ws_error(st->ws) && !st->ws_err[0];
    for (int i = 0; i < st->nprods; i++) {
        st_product *p = &st->prods[i];
        int64_t taken = p->stock0 - p->stock1;
        units += p->ok_units;
        if (p->stock1 < 0) {
            oversold++;
            fail(s, "%s: stock is %lld, below zero", p->id, (long long)p->stock1);
        } else if (st->no_answer == 0 && taken != p->ok_units) {
            oversold++;
            fail(s, "%s: stock went %lld -> %lld (-%lld) but the orders answered 200 took %lld",
                 p->id, (long long)p->stock0, (long long)p->stock1, (long long)taken,
                 (long long)p->ok_units);
        } else if (truth && taken != p->seen_units) {
            oversold++;
            fail(s, "%s: stock went down by %lld but the orders committed (seen by the admin)"
                    " took %lld", p->id, (long long)taken, (long long)p->seen_units);
        }
    }
    int64_t lowest = INT64_MAX;
    for (int i = 0; i < st->nprods; i++)
        lowest = st->prods[i].stock1 < lowest ? st->prods[i].stock1 : lowest;
    if (!oversold)
        ok(s, "no oversell: for each of %d products, stock taken == units in its orders (%lld"
              " units in %ld orders; lowest stock left %lld)",
           st->nprods, (long long)units, st->ok, (long long)lowest);
    /* The admin saw each order exactly once. */
    long missed = 0, extra = 0;
    size_t i = 0, kl;
    const char *k;
    void *v;
    while (map_next(&st->orders, &i, &k, &kl, &v)) {
        st_order *o = v;
        if (o->answered && !o->seen)
            missed++;
        if (!o->answered && o->seen)
            extra++;
    }
    if (!truth)
        fail(s, "the admin's orders subscription failed: %s",
             st->ws_err[0] ? st->ws_err : client_ws_error(st->ws));
    if (missed)
        fail(s, "the admin's subscription missed %ld of the %ld orders", missed, st->ok);
    if (st->dups)
        fail(s, "the admin's subscription saw %ld orders more than once", st->dups);
    if (extra > st->no_answer + st->wrong)
        fail(s, "the admin's subscription saw %ld orders that were never answered 200", extra);
    if (truth && !missed && !st->dups)
        ok(s, "the admin's orders subscription saw each of the %ld orders exactly once"
              " (p50 %.2f ms, p99 %.2f ms after the request)",
           st->ok, pct(&st->seen_lat, 0.50), pct(&st->seen_lat, 0.99));
    printf("  result: orders=%ld seconds=%.2f orders_per_s=%.1f p50_ms=%.2f p95_ms=%.2f"
           " p99_ms=%.2f max_ms=%.2f errors=%ld no_answer=%ld oversold=%ld missed=%ld"
           " duplicates=%ld\n",
           st->ok, secs, rate, pct(&st->lat, 0.50), pct(&st->lat, 0.95), pct(&st->lat, 0.99),
           pct(&st->lat, 1.0), st->failed + st->wrong, st->no_answer, oversold, missed, st->dups);
    fflush(stdout);
}

static int sc_stress(sim *s)
{
    char rate[64];
    if (s->o.rate > 0)
        snprintf(rate, sizeof rate, "%g orders/s in all", s->o.rate);
    else
        snprintf(rate, sizeof rate, "as fast as answered");
    char what[300];
    snprintf(what, sizeof what,
             "%d partners order %s for %g s, over %d products of %lld units each",
             s->o.partners, rate, s->o.seconds, s->o.products, (long long)s->o.stock);
    heading("stress", what);
    int fails0 = s->fails;
    stress st = {.s = s, .nparts = s->o.partners, .nprods = s->o.products};
    map_init(&st.orders);
    map_init(&st.partner_ids);
    st.prods = xcalloc((size_t)st.nprods, sizeof *st.prods);
    st.parts = xcalloc((size_t)st.nparts, sizeof *st.parts);
    uv_timer_init(&s->loop, &st.tick);
    st.tick.data = &st;
    bool made = false;
    int64_t seq;
    if (partners_ready(s, st.nparts) || st_products_make(&st))
        goto out;
    made = true;
    if (feed_seq(s, &seq))
        goto out;
    /* The admin watches the orders from now on (no snapshot: since). */
    st.ws = client_ws_open(&s->loop, &s->t, "/v1/realtime", s->admin_token, s->o.timeout,
                           st_on_msg, &st);
    json_t *ids = json_array();
    for (int i = 0; i < st.nparts; i++) {
        map_put(&st.partner_ids, s->partners[i].id, strlen(s->partners[i].id), &s->partners[i]);
        json_array_append_new(ids, json_string(s->partners[i].id));
    }
    json_t *sub = json_pack("{sssssssI}", "t", "sub", "id", "st", "col", "orders", "since",
                            (json_int_t)seq);
    if (st.nparts <= 100) /* "in" takes at most 100 values */
        json_object_set_new(sub, "where", json_pack("[[sso]]", "partner_id", "in", ids));
    else
        json_decref(ids);
    client_wait(&s->loop, ws_settled, st.ws, s->o.timeout + 1);
    if (client_ws_send(st.ws, sub) != 0) {
        json_decref(sub);
        fail(s, "the admin's realtime connection: %s",
             client_ws_error(st.ws) ? client_ws_error(st.ws) : "did not open");
        goto out;
    }
    json_decref(sub);
    client_wait(&s->loop, st_synced, &st, s->o.timeout);
    if (!st.synced) {
        fail(s, "the admin's orders subscription did not sync: %s",
             st.ws_err[0] ? st.ws_err
                          : client_ws_error(st.ws) ? client_ws_error(st.ws) : "no answer");
        goto out;
    }
    for (int i = 0; i < st.nparts; i++)
        st.parts[i] = (st_partner){.st = &st, .p = &s->partners[i],
                                   .h = client_http_new(&s->loop, &s->t, s->o.timeout)};
    /* Go (bench/run-orders reads this line to know the timed part began). */
    note("go: %d partners ordering", st.nparts);
    st.t0 = st.t_last = uv_hrtime();
    st.t_end = st.t0 + (uint64_t)(s->o.seconds * 1e9);
    st.issuing = true;
    uv_timer_start(&st.tick, st_tick, 1, 1);
    if (s->o.rate == 0)
        for (int i = 0; i < st.nparts; i++)
            st_issue(&st.parts[i]);
    client_wait(&s->loop, st_finished, &st, s->o.seconds + s->o.timeout + 5);
    st.issuing = false;
    uv_timer_stop(&st.tick);
    double secs = (double)(st.t_last - st.t0) / 1e9;
    /* Every answered order should reach the admin; then a moment for
     * any duplicate to show. */
    client_wait(&s->loop, st_all_seen, &st, s->o.timeout);
    client_wait(&s->loop, never, NULL, 0.3);
    if (st_products_each(&st, "GET") == 0)
        st_report(&st, secs);
out:
    for (int i = 0; i < st.nparts; i++)
        client_http_free(st.parts[i].h);
    if (st.ws)
        client_ws_free(st.ws);
    if (made && st_products_each(&st, "DELETE") == 0)
        note("deleted the run's products (sim-hot-01..%02d); its %ld orders stay", st.nprods,
             st.ok);
    uv_close((uv_handle_t *)&st.tick, st_tick_closed);
    client_wait(&s->loop, st_tick_gone, &st, 5); /* st is on this stack */
    size_t i = 0, kl;
    const char *k;
    void *v;
    while (map_next(&st.orders, &i, &k, &kl, &v))
        free(v);
    map_free(&st.orders);
    map_free(&st.partner_ids);
    free(st.lat.v);
    free(st.seen_lat.v);
    free(st.prods);
    free(st.parts);
    return s->fails == fails0 ? 0 : 1;
}

/* ------------------------------------------------------------------ all */

typedef struct scenario {
    const char *name;
    int (*run)(sim *s);
} scenario;

static const scenario scenarios[] = {
    {"partner-order", sc_partner_order},
    {"inventory-update", sc_inventory},
    {"price-update", sc_price},
    {"order-status", sc_status},
    {"stress", sc_stress},
};

static int run_all(sim *s)
{
    int results[ARRAY_LEN(scenarios)], bad = 0;
    for (size_t i = 0; i < ARRAY_LEN(scenarios); i++) {
        results[i] = scenarios[i].run(s);
        bad += results[i] != 0;
    }
    printf("\nsummary: %zu of %zu scenarios behaved\n", ARRAY_LEN(scenarios) - (size_t)bad,
           ARRAY_LEN(scenarios));
    for (size_t i = 0; i < ARRAY_LEN(scenarios); i++)
        printf("  %-5s %s\n", results[i] ? "FAIL" : "ok", scenarios[i].name);
    printf("%s\n", bad ? "FAIL" : "PASS");
    fflush(stdout);
    return bad ? 1 : 0;
}

/* ------------------------------------------------------------------ the demo's accounts */

int simulate_save_demo_accounts(const char *dir, const json_t *accounts, char *err, size_t errlen)
{
    buf_t path = {0}, tmp = {0};
    buf_printf(&path, "%s/%s", dir, SIMULATE_DEMO_ACCOUNTS);
    buf_printf(&tmp, "%s.tmp", path.p);
    char *text = json_dumps(accounts, JSON_INDENT(1));
    int rc = -1;
    int fd = open(tmp.p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot write %s: %s", tmp.p, strerror(errno));
        goto out;
    }
    size_t len = strlen(text);
    /* fchmod: a file left over by a crash may have been made with another mode. */
    if (fchmod(fd, 0600) != 0 || write(fd, text, len) != (ssize_t)len ||
        write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", tmp.p, strerror(errno));
        close(fd);
        unlink(tmp.p);
        goto out;
    }
    close(fd);
    if (rename(tmp.p, path.p) != 0) {
        snprintf(err, errlen, "cannot rename %s: %s", tmp.p, strerror(errno));
        unlink(tmp.p);
        goto out;
    }
    rc = 0;
out:
    free(text);
    buf_free(&tmp);
    buf_free(&path);
    return rc;
}

/* The first admin of DIR/demo-accounts.json; 1 when the file is absent,
 * -1 when it is unusable (err). */
static int demo_admin(const char *dir, char *email, size_t elen, char *pw, size_t pwlen,
                      char *err, size_t errlen)
{
    buf_t path = {0};
    buf_printf(&path, "%s/%s", dir, SIMULATE_DEMO_ACCOUNTS);
    json_error_t je;
    json_t *list = json_load_file(path.p, JSON_REJECT_DUPLICATES, &je);
    int rc = -1;
    if (!list && access(path.p, F_OK) != 0) {
        rc = 1;
    } else if (!list) {
        snprintf(err, errlen, "%s: line %d: %s", path.p, je.line, je.text);
    } else {
        for (size_t i = 0; i < json_array_size(list) && rc < 0; i++) {
            json_t *a = json_array_get(list, i);
            const char *e = jstr(a, "email"), *p = jstr(a, "password");
            if (jeq(a, "role", "admin") && e && p && strlen(e) < elen && strlen(p) < pwlen) {
                snprintf(email, elen, "%s", e);
                snprintf(pw, pwlen, "%s", p);
                rc = 0;
            }
        }
        if (rc < 0)
            snprintf(err, errlen, "%s names no admin (an array of {email, role, password})",
                     path.p);
    }
    json_decref(list);
    buf_free(&path);
    return rc;
}

/* ------------------------------------------------------------------ the command */

static const char simulate_usage[] =
    "usage: livedb simulate SCENARIO [--url URL] [--data DIR] [--email E --password-stdin]\n"
    "                       [--partners N] [--rate R] [--seconds T] [--products N]\n"
    "                       [--stock N] [--timeout S]\n"
    "\n"
    "Drives the wholesale app of a running server as its people would, and checks that\n"
    "each side sees the other's changes live. SCENARIO is one of:\n"
    "  partner-order     a partner orders; the admin's orders subscription sees it\n"
    "  inventory-update  the admin adjusts stock; a partner sees it\n"
    "  price-update      the admin changes a price; a partner sees it; orders keep theirs\n"
    "  order-status      the admin moves an order to shipped; the partner sees each step\n"
    "  stress            partners order at once: orders/s, latency, errors; no oversell,\n"
    "                    and the admin saw every order exactly once\n"
    "  all               the five, then a pass/fail summary\n"
    "\n"
    "  --url URL         the server (default http://127.0.0.1:8080)\n"
    "  --data DIR        a demo server's data directory: the admin is read from\n"
    "                    DIR/demo-accounts.json (default ./data)\n"
    "  --email E         an admin's email; the password is read from standard input\n"
    "  --password-stdin  (or set LIVEDB_EMAIL and LIVEDB_PASSWORD)\n"
    "  --partners N      stress: partners ordering at once (default 8; 1-1000)\n"
    "  --rate R          stress: orders a second in all (default 0: as fast as answered)\n"
    "  --seconds T       stress: how long (default 5)\n"
    "  --products N      stress: products ordered, made for the run (default 10; 1-100)\n"
    "  --stock N         stress: units of each at the start (default 1000000)\n"
    "  --timeout S       the longest wait for an answer or a change (default 10)\n"
    "\n"
    "Partners sim-partner-N@sim.livedb are made (or reset) by the admin and disabled at\n"
    "the end. Exit status: 0 everything behaved, 1 something did not, 2 bad usage.\n";

__attribute__((format(printf, 1, 2))) static int sim_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "livedb simulate: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(run 'livedb simulate --help' for the options)\n");
    return 2;
}

static int num_opt(const char *name, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= lo && d <= hi))
        return sim_usage_error("%s takes a number from %g to %g, not '%s'", name, lo, hi, v);
    *out = d;
    return 0;
}

static int parse_opts(int argc, char **argv, sim_opts *o)
{
    *o = (sim_opts){.url = "http://127.0.0.1:8080", .data = "./data", .partners = 8,
                    .products = 10, .rate = 0, .seconds = 5, .timeout = 10, .stock = 1000000};
    bool from_stdin = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        double d;
        if (strcmp(a, "--password-stdin") == 0) {
            from_stdin = true;
            continue;
        }
        if (a[0] != '-') {
            if (o->scenario)
                return sim_usage_error("one scenario at a time, not also '%s'", a);
            o->scenario = a;
            continue;
        }
        if (i + 1 >= argc)
            return sim_usage_error("%s needs a value", a);
        const char *v = argv[++i];
        if (strcmp(a, "--url") == 0) {
            o->url = v;
        } else if (strcmp(a, "--data") == 0) {
            o->data = v;
        } else if (strcmp(a, "--email") == 0) {
            o->email = v;
        } else if (strcmp(a, "--partners") == 0) {
            if (num_opt(a, v, 1, PARTNERS_MAX, &d) || d != (int)d)
                return d != (int)d ? sim_usage_error("--partners takes a whole number") : 2;
            o->partners = (int)d;
        } else if (strcmp(a, "--products") == 0) {
            if (num_opt(a, v, 1, PRODUCTS_MAX, &d) || d != (int)d)
                return d != (int)d ? sim_usage_error("--products takes a whole number") : 2;
            o->products = (int)d;
        } else if (strcmp(a, "--stock") == 0) {
            if (num_opt(a, v, 0, 1e12, &d) || d != (double)(int64_t)d)
                return d != (double)(int64_t)d ? sim_usage_error("--stock takes a whole number")
                                               : 2;
            o->stock = (int64_t)d;
        } else if (strcmp(a, "--rate") == 0) {
            if (num_opt(a, v, 0, 1e7, &o->rate))
                return 2;
        } else if (strcmp(a, "--seconds") == 0) {
            if (num_opt(a, v, 0.1, 86400, &o->seconds))
                return 2;
        } else if (strcmp(a, "--timeout") == 0) {
            if (num_opt(a, v, 0.1, 3600, &o->timeout))
                return 2;
        } else {
            return sim_usage_error("unknown option %s", a);
        }
    }
    if (!o->scenario)
        return sim_usage_error("which scenario? partner-order, inventory-update, price-update,"
                               " order-status, stress or all");
    bool known = strcmp(o->scenario, "all") == 0;
    for (size_t i = 0; i < ARRAY_LEN(scenarios) && !known; i++)
        known = strcmp(scenarios[i].name, o->scenario) == 0;
    if (!known)
        return sim_usage_error("no scenario '%s' (partner-order, inventory-update, price-update,"
                               " order-status, stress, all)", o->scenario);
    if (!!o->email != from_stdin)
        return sim_usage_error("--email and --password-stdin go together (the password is read"
                               " from standard input, never from the command line)");
    if (from_stdin) {
        if (!fgets(o->password, sizeof o->password, stdin))
            return sim_usage_error("no password on standard input");
        o->password[strcspn(o->password, "\r\n")] = '\0';
        if (!o->password[0])
            return sim_usage_error("an empty password on standard input");
        o->password_given = true;
    }
    return 0;
}

/* Who the admin is: the flags, the environment, or the demo's file. */
static int credentials(sim_opts *o, char *email_buf, size_t elen)
{
    if (o->password_given)
        return 0;
    const char *e = getenv("LIVEDB_EMAIL"), *p = getenv("LIVEDB_PASSWORD");
    if (e && *e && p && *p) {
        o->email = e;
        snprintf(o->password, sizeof o->password, "%s", p);
        return 0;
    }
    char err[400];
    int rc = demo_admin(o->data, email_buf, elen, o->password, sizeof o->password, err,
                        sizeof err);
    if (rc == 0) {
        o->email = email_buf;
        return 0;
    }
    if (rc > 0)
        return sim_usage_error("no admin to log in as: give --email E --password-stdin, set"
                               " LIVEDB_EMAIL and LIVEDB_PASSWORD, or --data DIR of a server"
                               " started with --demo (%s/%s is not there)",
                               o->data, SIMULATE_DEMO_ACCOUNTS);
    fprintf(stderr, "livedb simulate: %s\n", err);
    return 1;
}

int simulate_main(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
            strcmp(argv[i], "help") == 0) {
            fputs(simulate_usage, stdout);
            return 0;
        }
    sim *s = xcalloc(1, sizeof *s);
    char email_buf[256];
    int rc = parse_opts(argc, argv, &s->o);
    char err[400];
    if (rc == 0 && client_target_parse(s->o.url, &s->t, err, sizeof err)) {
        /* A malformed URL is bad usage; a name that does not resolve is not. */
        rc = strncmp(s->o.url, "http://", 7) == 0 && !strstr(err, "port") ? 1 : 2;
        fprintf(stderr, "livedb simulate: %s\n", err);
    }
    if (rc == 0)
        rc = credentials(&s->o, email_buf, sizeof email_buf);
    if (rc) {
        sodium_memzero(s->o.password, sizeof s->o.password);
        free(s);
        return rc;
    }
    signal(SIGPIPE, SIG_IGN); /* a server that goes away is an answer, not a signal */
    uv_loop_init(&s->loop);
    s->admin = client_http_new(&s->loop, &s->t, s->o.timeout);
    s->part = client_http_new(&s->loop, &s->t, s->o.timeout);
    printf("livedb simulate: %s at %s, as %s\n", s->o.scenario, s->t.url, s->o.email);
    fflush(stdout);
    bool all = strcmp(s->o.scenario, "all") == 0, stress_only = strcmp(s->o.scenario, "stress") == 0;
    if (admin_login(s) == 0 && partners_ready(s, 1) == 0 && (stress_only || scenario_product(s) == 0)) {
        printf("  %-5s partners %s..%d (made ready by the admin; disabled at the end)\n", "",
               s->partners[0].email, stress_only || all ? s->o.partners : 1);
        if (all) {
            rc = run_all(s);
        } else {
            for (size_t i = 0; i < ARRAY_LEN(scenarios); i++)
                if (strcmp(scenarios[i].name, s->o.scenario) == 0)
                    rc = scenarios[i].run(s);
        }
    }
    /* Put back what is ours to put back. */
    if (s->own_product) {
        client_answer a;
        client_call(s->admin, "DELETE", "/v1/c/products/sim-product", s->admin_token, NULL, &a);
        client_answer_clear(&a);
    }
    partners_disable(s);
    if (s->fails && !all)
        printf("%s: FAIL (%d check%s failed)\n", s->o.scenario, s->fails, s->fails == 1 ? "" : "s");
    else if (!all)
        printf("%s: PASS\n", s->o.scenario);
    fflush(stdout);
    rc = s->fails ? 1 : 0;
    client_http_free(s->admin);
    client_http_free(s->part);
    client_drain(&s->loop);
    uv_loop_close(&s->loop);
    sodium_memzero(s->o.password, sizeof s->o.password);
    free(s->partners);
    free(s);
    return rc;
}
