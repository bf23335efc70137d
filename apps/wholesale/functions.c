/*
 * functions.c: the wholesale app's server functions (API.md "App:
 * wholesale").
 *
 *   place_order       {items:[{product_id,qty}], notes?, client_order_id?}  partner
 *   set_order_status  {order_id, status}                      admin; a partner may cancel
 *   adjust_inventory  {product_id, delta}                     admin
 *   set_price         {product_id, price_cents}               admin
 *
 * Each runs as one transaction on the writer thread (store.h "server
 * functions"): the stock a call reads cannot change before it commits, so
 * concurrent orders can never oversell, and a refused call writes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/api/fn.h"
#include "../../src/core/doc.h"
#include "wholesale.h"

#define ITEMS_MAX 200
#define QTY_MAX 100000

/* ------------------------------------------------------------------ helpers */

static bool is_admin(fn_tx *t) { return actor_is_admin(fn_actor(t)); }

static bool is_role(fn_tx *t, const char *role) { return strcmp(fn_actor(t)->role, role) == 0; }

static int unknown_args(fn_tx *t, const json_t *args, const char *const *known)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)args, k, v) {
        bool ok = false;
        for (const char *const *n = known; *n && !ok; n++)
            ok = strcmp(*n, k) == 0;
        if (!ok)
            return fn_fail(t, E_INVALID, json_pack("[{ssss}]", "field", k, "reason", "unknown"),
                           "unknown argument %.40s", k);
    }
    return 0;
}

static json_t *product(fn_tx *t, const char *id)
{
    json_t *p = fn_get(t, "products", id);
    if (!p)
        fn_fail(t, E_NOT_FOUND, json_pack("{ss}", "product_id", id), "no product %s", id);
    return p;
}

static json_int_t int_of(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* ------------------------------------------------------------------ place_order */

static int place_order(fn_tx *t, const json_t *args, json_t **result)
{
    static const char *const known[] = {"items", "notes", "client_order_id", NULL};
    if (!is_role(t, "partner"))
        return fn_fail(t, E_FORBIDDEN, NULL, "place_order is for partners");
    if (unknown_args(t, args, known))
        return -1;
    const actor_t *me = fn_actor(t);
    json_t *items = json_object_get(args, "items");
    json_t *notes = json_object_get(args, "notes");
    json_t *coid = json_object_get(args, "client_order_id");
    if (!json_is_array(items) || json_array_size(items) == 0 ||
        json_array_size(items) > ITEMS_MAX)
        return fn_fail(t, E_INVALID,
                       json_pack("[{ssss}]", "field", "items", "reason", "1-200 items"),
                       "items must be a list of 1-200 {product_id, qty}");
    if (notes && !json_is_null(notes) && (!json_is_string(notes) || json_string_length(notes) > 2000))
        return fn_fail(t, E_INVALID,
                       json_pack("[{ssss}]", "field", "notes", "reason", "at most 2000 characters"),
                       "notes must be text of at most 2000 characters");
    if (coid && !json_is_null(coid) &&
        (!json_is_string(coid) || json_string_length(coid) == 0 || json_string_length(coid) > 128))
        return fn_fail(t, E_INVALID,
                       json_pack("[{ssss}]", "field", "client_order_id", "reason", "1-128 characters"),
                       "client_order_id must be 1-128 characters");
    /* The same client_order_id from the same partner: the first order, again. */
    if (json_is_string(coid)) {
        query_t q;
        query_init(&q);
        err_t e = {0};
        json_t *me_id = json_string(me->id);
        query_add_cond(&q, "partner_id", 10, "eq", 2, me_id, &e);
        query_add_cond(&q, "client_order_id", 15, "eq", 2, coid, &e);
        json_decref(me_id);
        q.limit = 1;
        json_t *found = fn_find(t, "orders", &q);
        query_free(&q);
        if (json_array_size(found)) {
            *result = json_pack("{sOsb}", "order", json_array_get(found, 0), "replayed", 1);
            json_decref(found);
            return 0;
        }
        json_decref(found);
    }
    /* The same product twice counts once, with the quantities added. */
    json_t *want = json_object(); /* product_id -> qty */
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        const char *pid = json_string_value(json_object_get(it, "product_id"));
        json_t *qv = json_object_get(it, "qty");
        err_t e = {0};
        if (!json_is_object(it) || !pid || doc_check_id(pid, strlen(pid), &e) ||
            !json_is_integer(qv) || json_integer_value(qv) < 1 ||
            json_integer_value(qv) > QTY_MAX) {
            err_clear(&e);
            json_decref(want);
            char field[32];
            snprintf(field, sizeof field, "items[%zu]", i);
            return fn_fail(t, E_INVALID,
                           json_pack("[{ssss}]", "field", field, "reason",
                                     "{product_id, qty}: an id and a quantity of 1-100000"),
                           "%s must be {product_id, qty} with qty from 1 to %d", field, QTY_MAX);
        }
        json_int_t sum = int_of(want, pid) + json_integer_value(qv);
        json_object_set_new(want, pid, json_integer(sum));
    }
    /* Every product exists, is active, has the stock. */
    json_t *short_of = json_array(), *lines = json_array(), *products = json_object();
    json_int_t total = 0;
    const char *pid;
    json_t *qv;
    int rc = 0;
    json_object_foreach(want, pid, qv) {
        json_t *p = product(t, pid);
        if (!p) {
            rc = -1;
            break;
        }
        json_object_set_new(products, pid, p);
        json_int_t qty = json_integer_value(qv), stock = int_of(p, "stock");
        if (json_is_false(json_object_get(p, "active"))) {
            rc = fn_fail(t, E_INVALID,
                         json_pack("[{ssssss}]", "field", "items", "product_id", pid, "reason",
                                   "not available"),
                         "%s is not available", pid);
            break;
        }
        if (stock < qty)
            json_array_append_new(short_of, json_pack("{sssIsI}", "product_id", pid, "requested",
                                                      (json_int_t)qty, "available",
                                                      (json_int_t)stock));
        json_int_t price = int_of(p, "price_cents");
        total += price * qty;
        json_array_append_new(lines, json_pack("{sssOsIsI}", "product_id", pid, "name",
                                               json_object_get(p, "name"), "qty",
                                               (json_int_t)qty, "price_cents", price));
    }
    if (rc == 0 && json_array_size(short_of)) {
        rc = fn_fail(t, apps_err(&app_wholesale, WHOLESALE_INSUFFICIENT_STOCK), json_incref(short_of),
                     "not enough stock for %zu of the items", json_array_size(short_of));
    }
    /* Take the stock, then write the order. */
    json_object_foreach(want, pid, qv) {
        if (rc)
            break;
        json_t *p = json_object_get(products, pid);
        json_t *patch = json_pack("{sI}", "stock", int_of(p, "stock") - json_integer_value(qv));
        json_t *w = fn_write(t, W_PATCH, "products", pid, patch);
        if (!w)
            rc = -1;
        json_decref(w);
    }
    if (rc == 0) {
        json_t *history =
            json_pack("[{ssssss}]", "status", "pending", "at", fn_now(t), "by", me->id);
        json_t *order = json_pack("{sssOsIsssosOsO}", "partner_id", me->id, "items", lines,
                                  "total_cents", total, "status", "pending", "history", history,
                                  "notes", notes ? notes : json_null(), "client_order_id",
                                  coid ? coid : json_null());
        json_t *w = fn_write(t, W_CREATE, "orders", NULL, order);
        if (w)
            *result = json_pack("{so}", "order", w);
        else
            rc = -1;
    }
    json_decref(want);
    json_decref(short_of);
    json_decref(lines);
    json_decref(products);
    return rc;
}

/* ------------------------------------------------------------------ set_order_status */

static bool allowed(const char *from, const char *to)
{
    static const char *const moves[][2] = {
        {"pending", "confirmed"}, {"pending", "cancelled"}, {"confirmed", "packed"},
        {"confirmed", "cancelled"}, {"packed", "shipped"}, {"shipped", "delivered"},
    };
    for (size_t i = 0; i < ARRAY_LEN(moves); i++)
        if (strcmp(moves[i][0], from) == 0 && strcmp(moves[i][1], to) == 0)
            return true;
    return false;
}

static int set_order_status(fn_tx *t, const json_t *args, json_t **result)
{
    static const char *const known[] = {"order_id", "status", NULL};
    if (unknown_args(t, args, known))
        return -1;
    const char *oid = fn_arg_id(t, args, "order_id");
    const char *to = json_string_value(json_object_get(args, "status"));
    if (!oid)
        return -1;
    if (!to)
        return fn_fail(t, E_INVALID, json_pack("[{ssss}]", "field", "status", "reason", "required"),
                       "status is required");
    const actor_t *me = fn_actor(t);
    bool admin = is_admin(t);
    json_t *order = fn_get(t, "orders", oid);
    /* A partner learns nothing of orders not its own. */
    if (!order || (!admin && strcmp(json_string_value(json_object_get(order, "partner_id")),
                                    me->id) != 0)) {
        json_decref(order);
        return fn_fail(t, E_NOT_FOUND, NULL, "no order %s", oid);
    }
    const char *from = json_string_value(json_object_get(order, "status"));
    if (!from || !allowed(from, to)) {
        int rc = fn_fail(t, E_INVALID_TRANSITION,
                         json_pack("{ssss}", "from", from ? from : "", "to", to),
                         "an order %s cannot become %s", from ? from : "?", to);
        json_decref(order);
        return rc;
    }
    if (!admin && !(is_role(t, "partner") && strcmp(from, "pending") == 0 &&
                    strcmp(to, "cancelled") == 0)) {
        json_decref(order);
        return fn_fail(t, E_FORBIDDEN, NULL, "a partner may only cancel a pending order");
    }
    int rc = 0;
    /* Cancelling puts the stock back (of the products that still exist). */
    if (strcmp(to, "cancelled") == 0) {
        json_t *items = json_object_get(order, "items");
        for (size_t i = 0; i < json_array_size(items) && rc == 0; i++) {
            json_t *it = json_array_get(items, i);
            const char *pid = json_string_value(json_object_get(it, "product_id"));
            json_t *p = pid ? fn_get(t, "products", pid) : NULL;
            if (!p)
                continue;
            json_t *patch = json_pack("{sI}", "stock", int_of(p, "stock") + int_of(it, "qty"));
            json_t *w = fn_write(t, W_PATCH, "products", pid, patch);
            rc = w ? 0 : -1;
            json_decref(w);
            json_decref(p);
        }
    }
    if (rc == 0) {
        json_t *history = json_deep_copy(json_object_get(order, "history"));
        if (!json_is_array(history)) {
            json_decref(history);
            history = json_array();
        }
        json_array_append_new(history,
                              json_pack("{ssssss}", "status", to, "at", fn_now(t), "by", me->id));
        json_t *w = fn_write(t, W_PATCH, "orders", oid,
                             json_pack("{ssso}", "status", to, "history", history));
        if (w)
            *result = json_pack("{so}", "order", w);
        else
            rc = -1;
    }
    json_decref(order);
    return rc;
}

/* ------------------------------------------------------------------ inventory and price */

/* The product_id argument of an admin's call fname that takes the known
 * arguments: NULL when the call failed (not an admin, unknown arguments,
 * no id). */
static const char *admin_product_id(fn_tx *t, const json_t *args, const char *fname,
                                    const char *const *known)
{
    if (!is_admin(t)) {
        fn_fail(t, E_FORBIDDEN, NULL, "%s is for admins", fname);
        return NULL;
    }
    if (unknown_args(t, args, known))
        return NULL;
    return fn_arg_id(t, args, "product_id");
}

static int adjust_inventory(fn_tx *t, const json_t *args, json_t **result)
{
    static const char *const known[] = {"product_id", "delta", NULL};
    const char *pid = admin_product_id(t, args, "adjust_inventory", known);
    if (!pid)
        return -1;
    json_t *d = json_object_get(args, "delta");
    if (!json_is_integer(d) || json_integer_value(d) < -1000000000 ||
        json_integer_value(d) > 1000000000)
        return fn_fail(t, E_INVALID, json_pack("[{ssss}]", "field", "delta", "reason", "an integer"),
                       "delta must be an integer");
    json_t *p = product(t, pid);
    if (!p)
        return -1;
    json_int_t stock = int_of(p, "stock"), next = stock + json_integer_value(d);
    json_decref(p);
    if (next < 0)
        return fn_fail(t, apps_err(&app_wholesale, WHOLESALE_INSUFFICIENT_STOCK),
                       json_pack("[{sssIsI}]", "product_id", pid, "requested",
                                 -json_integer_value(d), "available", stock),
                       "only %lld in stock", (long long)stock);
    json_t *w = fn_write(t, W_PATCH, "products", pid, json_pack("{sI}", "stock", next));
    if (!w)
        return -1;
    *result = json_pack("{so}", "product", w);
    return 0;
}

static int set_price(fn_tx *t, const json_t *args, json_t **result)
{
    static const char *const known[] = {"product_id", "price_cents", NULL};
    const char *pid = admin_product_id(t, args, "set_price", known);
    if (!pid)
        return -1;
    json_t *pc = json_object_get(args, "price_cents");
    if (!json_is_integer(pc) || json_integer_value(pc) < 0 ||
        json_integer_value(pc) > 100000000000LL)
        return fn_fail(t, E_INVALID,
                       json_pack("[{ssss}]", "field", "price_cents", "reason",
                                 "an integer from 0"),
                       "price_cents must be an integer >= 0");
    json_t *p = product(t, pid);
    if (!p)
        return -1;
    json_decref(p);
    /* Orders keep their own copy of each price: only the product changes. */
    json_t *w = fn_write(t, W_PATCH, "products", pid,
                         json_pack("{sO}", "price_cents", pc));
    if (!w)
        return -1;
    *result = json_pack("{so}", "product", w);
    return 0;
}

const fn_def wholesale_functions[] = {
    {"place_order", place_order},
    {"set_order_status", set_order_status},
    {"adjust_inventory", adjust_inventory},
    {"set_price", set_price},
    {NULL, NULL},
};
