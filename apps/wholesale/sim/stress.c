/*
 * stress.c: `livedb simulate` (main.c), stress: partners ordering at once, and its report.
 */
#include "sim.h"

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

/* Counts the orders answered 200 that the admin's subscription has not
 * seen (*missed) and those it saw that were never answered 200 (*extra). */
static void st_count_unmatched(stress *st, long *missed, long *extra)
{
    *missed = *extra = 0;
    size_t i = 0, kl;
    const char *k;
    void *v;
    while (map_next(&st->orders, &i, &k, &kl, &v)) {
        const st_order *o = v;
        *missed += o->answered && !o->seen;
        *extra += !o->answered && o->seen;
    }
}

static bool st_all_seen(void *ud)
{
    stress *st = ud;
    if (client_ws_error(st->ws) || st->ws_err[0])
        return true;
    long missed, extra;
    st_count_unmatched(st, &missed, &extra);
    return missed == 0;
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
    long missed, extra;
    st_count_unmatched(st, &missed, &extra);
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

int sc_stress(sim *s)
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
    for (int i = 0; i < st.nparts; i++) {
        int node = i % (1 + s->o.nspread);
        client_target *t = node ? &s->spread[node - 1] : &s->t;
        st.parts[i] = (st_partner){.st = &st, .p = &s->partners[i],
                                   .h = client_http_new(&s->loop, t, s->o.timeout)};
    }
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
    map_free_values(&st.orders);
    map_free(&st.partner_ids);
    free(st.lat.v);
    free(st.seen_lat.v);
    free(st.prods);
    free(st.parts);
    return s->fails == fails0 ? 0 : 1;
}
