/*
 * common.c: `livedb simulate` (main.c), output, JSON from the server, requests, observers, parallel requests.
 */
#include "sim.h"

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

__attribute__((format(printf, 2, 3))) void ok(sim *s, const char *fmt, ...)
{
    (void)s;
    va_list ap;
    va_start(ap, fmt);
    say("ok", fmt, ap);
    va_end(ap);
}

/* A check that failed; returns -1 for the caller's convenience. */
__attribute__((format(printf, 2, 3))) int fail(sim *s, const char *fmt, ...)
{
    s->fails++;
    va_list ap;
    va_start(ap, fmt);
    say("FAIL", fmt, ap);
    va_end(ap);
    return -1;
}

__attribute__((format(printf, 1, 2))) void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say("", fmt, ap);
    va_end(ap);
}

void heading(const char *name, const char *what)
{
    printf("\n%s: %s\n", name, what);
    fflush(stdout);
}

static double ms_since(uint64_t t0, uint64_t t1) { return (double)(t1 - t0) / 1e6; }

void money(char out[32], int64_t cents)
{
    snprintf(out, 32, "%s%lld.%02lld", cents < 0 ? "-" : "", llabs(cents) / 100LL,
             llabs(cents) % 100LL);
}

/* A request whose answer was not what it should be: "WHAT: " and, when it
 * was a 200, wrong (what was missing), else the server's error. Clears a. */
int fail_answer(sim *s, client_answer *a, const char *what, const char *wrong)
{
    char why[300];
    client_answer_describe(a, why, sizeof why);
    int status = a->status;
    client_answer_clear(a);
    return fail(s, "%s: %s", what, status == 200 ? wrong : why);
}

/* ------------------------------------------------------------------ JSON from the server */

const char *jstr(const json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

bool jint(const json_t *o, const char *k, int64_t *v)
{
    json_t *x = json_object_get(o, k);
    if (!json_is_integer(x))
        return false;
    *v = json_integer_value(x);
    return true;
}

bool jeq(const json_t *o, const char *k, const char *expected)
{
    const char *v = jstr(o, k);
    return v && strcmp(v, expected) == 0;
}

/* A document id from the server, before it goes into a path of ours. */
bool id_ok(const char *id)
{
    err_t e = {0};
    bool good = id && doc_check_id(id, strlen(id), &e) == 0;
    err_clear(&e);
    return good;
}

/* A product document, checked. */
int product_from(const json_t *doc, product *p)
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
int call_fn(sim *s, client_http *h, const char *token, const char *name, json_t *args,
                   client_answer *a)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/fn/%s", name);
    int st = client_call(h, "POST", path, token, args, a);
    json_decref(args);
    (void)s;
    return st;
}

int get_product(sim *s, client_http *h, const char *token, const char *id, product *p)
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
int feed_seq(sim *s, int64_t *seq)
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
static void obs_on_msg(void *ud, json_t *msg, uint64_t at)
{
    observer *o = ud;
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 64;
        o->q = xrealloc(o->q, o->cap * sizeof *o->q);
    }
    o->q[o->n++] = (obs_msg){json_incref(msg), at};
}

bool ws_settled(void *ud) { return !client_ws_connecting(ud); }

int obs_open(sim *s, observer *o, const char *token, const char *who)
{
    *o = (observer){.s = s, .who = who};
    o->ws = client_ws_open(&s->loop, &s->t, "/v1/realtime", token, s->o.timeout, obs_on_msg, o);
    client_wait(&s->loop, ws_settled, o->ws, s->o.timeout + 1);
    if (!client_ws_open_now(o->ws))
        return fail(s, "the %s's realtime connection: %s", who,
                    client_ws_error(o->ws) ? client_ws_error(o->ws) : "did not open");
    return 0;
}

void obs_close(observer *o)
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
int obs_sub(observer *o, const char *id, const char *col, json_t *where, int64_t since,
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
json_t *expect_change(observer *o, const want *w, uint64_t t0, const char *what)
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
int run_pool(sim *s, preq *reqs, int n)
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
