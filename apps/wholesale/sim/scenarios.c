/*
 * scenarios.c: `livedb simulate` (main.c), the four scenarios: partner-order, inventory-update, price-update, order-status.
 */
#include "sim.h"

/* Partner pt's products subscription "p" on par, and the scenarios'
 * product as its snapshot shows it (p0). */
static int watch_products(sim *s, observer *par, const partner *pt, json_t **docs, product *p0)
{
    if (obs_open(s, par, pt->token, "partner") || obs_sub(par, "p", "products", NULL, -1, docs))
        return -1;
    json_t *d = find_doc(*docs, s->product_id);
    if (!d || product_from(d, p0))
        return fail(s, "the partner's snapshot of products has no %s", s->product_id);
    return 0;
}

/* ------------------------------------------------------------------ partner-order */

int sc_partner_order(sim *s)
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

int sc_inventory(sim *s)
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
    if (watch_products(s, &par, pt, &docs, &p0))
        goto out;
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

int sc_price(sim *s)
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
    if (watch_products(s, &par, pt, &docs, &p0))
        goto out;
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

int sc_status(sim *s)
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
