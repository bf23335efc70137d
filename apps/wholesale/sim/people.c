/*
 * people.c: `livedb simulate` (main.c), the admin and the partners; orders, stock and prices as they ask for them.
 */
#include "sim.h"

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

int admin_login(sim *s)
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
int partners_ready(sim *s, int n)
{
    if (s->npartners >= n)
        return 0;
    client_answer a;
    client_call(s->admin, "GET", "/v1/accounts", s->admin_token, NULL, &a);
    json_t *accounts = json_object_get(a.json, "accounts");
    if (a.status != 200 || !json_is_array(accounts)) {
        return fail_answer(s, &a, "GET /v1/accounts", "no accounts list");
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
void partners_disable(sim *s)
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
int scenario_product(sim *s)
{
    client_answer a;
    client_call(s->admin, "GET", "/v1/c/products?where=stock:ge:10&limit=200", s->admin_token,
                NULL, &a);
    json_t *docs = json_object_get(a.json, "docs");
    if (a.status != 200 || !json_is_array(docs)) {
        return fail_answer(s, &a, "GET /v1/c/products", "no docs");
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

int place(sim *s, const partner *pt, const product *p, int64_t qty, const char *notes,
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
int set_status(sim *s, bool admin, const char *oid, const char *to, const char *refusal,
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

int adjust(sim *s, const char *pid, int64_t delta, int64_t *stock_after,
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

int set_price(sim *s, const char *pid, int64_t price, int64_t *version)
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
void cancel(sim *s, observer *watch, const char *sub, const char *oid)
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

json_t *find_doc(json_t *docs, const char *id)
{
    for (size_t i = 0; i < json_array_size(docs); i++)
        if (jeq(json_array_get(docs, i), "id", id))
            return json_array_get(docs, i);
    return NULL;
}
