/*
 * test_subs.c: core/subs.c: which subscriptions a change reaches through
 * the index, and the op it is to each; util/map.c underneath.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/core/subs.h"
#include "../../src/util/map.h"
#include "../../src/util/util.h"
#include "harness.h"

#define AT "2026-01-01T00:00:00.000Z"

static change_t *mk(int64_t seq, const char *id, const char *prev, const char *doc)
{
    change_t *ch = change_new(seq, "t", id, !prev ? CH_CREATE : !doc ? CH_DELETE : CH_UPDATE, 1,
                              doc, doc ? strlen(doc) : 0, AT);
    if (prev)
        change_set_prev(ch, prev, strlen(prev));
    return ch;
}

static query_t *where1(const char *f, const char *op, const char *json)
{
    query_t *q = xmalloc(sizeof *q);
    query_init(q);
    json_t *v = json_loads(json, JSON_DECODE_ANY, NULL);
    err_t e = {0};
    query_add_cond(q, f, strlen(f), op, strlen(op), v, &e);
    json_decref(v);
    return q;
}

static void qfree(query_t *q)
{
    query_free(q);
    free(q);
}

/* The op a new change (see mk) is to e; the change is dropped after. */
static sub_op op_of(const sub_entry *e, int64_t seq, const char *id, const char *prev,
                    const char *doc)
{
    change_t *c = mk(seq, id, prev, doc);
    sub_op op = sub_op_of(e, c);
    change_unref(c);
    return op;
}

TEST(subs_op_follows_before_and_after)
{
    query_t *q = where1("s", "eq", "\"p\"");
    sub_entry e = {.col = "t", .where = q};
    CHECK_INT(op_of(&e, 1, "a", NULL, "{\"id\":\"a\",\"s\":\"p\"}"), SUBOP_ADDED);
    CHECK_INT(op_of(&e, 2, "a", "{\"id\":\"a\",\"s\":\"p\"}", "{\"id\":\"a\",\"s\":\"p\",\"x\":1}"),
              SUBOP_MODIFIED);
    CHECK_INT(op_of(&e, 3, "a", "{\"id\":\"a\",\"s\":\"p\"}", "{\"id\":\"a\",\"s\":\"q\"}"),
              SUBOP_REMOVED);
    CHECK_INT(op_of(&e, 4, "a", "{\"id\":\"a\",\"s\":\"q\"}", "{\"id\":\"a\",\"s\":\"r\"}"),
              SUBOP_NONE);
    CHECK_INT(op_of(&e, 5, "a", "{\"id\":\"a\",\"s\":\"p\"}", NULL), SUBOP_REMOVED);
    CHECK_INT(op_of(&e, 6, "a", "{\"id\":\"a\",\"s\":\"q\"}", NULL), SUBOP_NONE);
    qfree(q);
    /* No filter: create, update, delete map straight to the ops. */
    sub_entry all = {.col = "t"};
    CHECK_INT(op_of(&all, 7, "b", NULL, "{}"), SUBOP_ADDED);
    CHECK_INT(op_of(&all, 8, "b", "{}", "{}"), SUBOP_MODIFIED);
    CHECK_INT(op_of(&all, 9, "b", "{}", NULL), SUBOP_REMOVED);
    /* One document. */
    sub_entry one = {.col = "t", .doc_id = "b"};
    CHECK_INT(op_of(&one, 10, "a", NULL, "{}"), SUBOP_NONE);
}

typedef struct hits {
    const sub_entry *seen[16];
    int n;
} hits;

static void collect(sub_entry *e, change_t *ch, void *ctx)
{
    hits *h = ctx;
    (void)ch;
    if (h->n < 16)
        h->seen[h->n++] = e;
}

static bool saw(const hits *h, const sub_entry *e)
{
    int k = 0;
    for (int i = 0; i < h->n; i++)
        k += h->seen[i] == e;
    return k == 1; /* once, never twice */
}

TEST(subs_index_reaches_exactly_the_candidates)
{
    subs_t x;
    subs_init(&x);
    query_t *qp = where1("s", "eq", "\"p\""), *qq = where1("s", "eq", "\"q\"");
    query_t *qn = where1("n", "eq", "5"), *qgt = where1("n", "gt", "1");
    sub_entry all = {.col = "t"}, other = {.col = "u"};
    sub_entry sp = {.col = "t", .where = qp}, sq = {.col = "t", .where = qq};
    sub_entry sn = {.col = "t", .where = qn}, sgt = {.col = "t", .where = qgt};
    sub_entry doc = {.col = "t", .doc_id = "a"};
    sub_entry *es[] = {&all, &other, &sp, &sq, &sn, &sgt, &doc};
    for (size_t i = 0; i < ARRAY_LEN(es); i++)
        subs_add(&x, es[i]);
    CHECK(sp.pin_field && strcmp(sp.pin_field, "s") == 0);
    CHECK(sgt.pin_field == NULL); /* gt pins nothing */

    /* s: p -> q reaches the p and q subs, and n=5.0 reaches the n=5 sub. */
    change_t *c = mk(1, "a", "{\"s\":\"p\",\"n\":5.0}", "{\"s\":\"q\",\"n\":2}");
    hits h = {0};
    subs_each(&x, c, collect, &h);
    CHECK(saw(&h, &all));
    CHECK(saw(&h, &sp));
    CHECK(saw(&h, &sq));
    CHECK(saw(&h, &sn));
    CHECK(saw(&h, &sgt));
    CHECK(saw(&h, &doc));
    CHECK(!saw(&h, &other));
    CHECK_INT(h.n, 6);
    CHECK_INT(sub_op_of(&sp, c), SUBOP_REMOVED);
    CHECK_INT(sub_op_of(&sq, c), SUBOP_ADDED);
    CHECK_INT(sub_op_of(&sn, c), SUBOP_REMOVED);
    change_unref(c);

    /* A change of another document with s unchanged reaches p once. */
    c = mk(2, "zz", "{\"s\":\"p\"}", "{\"s\":\"p\"}");
    h.n = 0;
    subs_each(&x, c, collect, &h);
    CHECK(saw(&h, &sp));
    CHECK(!saw(&h, &sq));
    CHECK(!saw(&h, &doc));
    change_unref(c);

    /* Removing subscriptions empties the index. */
    for (size_t i = 0; i < ARRAY_LEN(es); i++)
        subs_remove(&x, es[i]);
    CHECK_INT(x.buckets.count, 0);
    CHECK_INT(x.cols.count, 0);
    subs_free(&x);
    qfree(qp);
    qfree(qq);
    qfree(qn);
    qfree(qgt);
}

TEST(map_put_get_del_grow)
{
    map_t m;
    map_init(&m);
    char k[16];
    static int vals[2000];
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "k%d", i);
        map_put(&m, k, strlen(k), &vals[i]);
    }
    CHECK_INT(m.count, 2000);
    bool ok = true;
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "k%d", i);
        ok = ok && map_get(&m, k, strlen(k)) == &vals[i];
    }
    CHECK(ok);
    for (int i = 0; i < 2000; i += 2) {
        snprintf(k, sizeof k, "k%d", i);
        CHECK(map_del(&m, k, strlen(k)) == &vals[i]);
    }
    CHECK_INT(m.count, 1000);
    CHECK(map_get(&m, "k0", 2) == NULL);
    CHECK(map_get(&m, "k1", 2) == &vals[1]);
    /* Keys may hold any byte, NUL included. */
    map_put(&m, "a\0b", 3, &vals[0]);
    CHECK(map_get(&m, "a\0b", 3) == &vals[0]);
    CHECK(map_get(&m, "a", 1) == NULL);
    size_t i = 0, n = 0, kl;
    const char *key;
    void *v;
    while (map_next(&m, &i, &key, &kl, &v))
        n++;
    CHECK_INT(n, 1001);
    map_free(&m);
}
