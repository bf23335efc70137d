/*
 * test_pg.c: what the PostgreSQL store adds to the others (store/pg.c):
 * writers on several connections, as several nodes are, share one feed and
 * one activity chain; a group that waits for another's lock commits after
 * it, with the larger seqs; nodes that start at once make the schema once.
 * Runs when LIVEDB_TEST_PG names a server (make test-unit starts one).
 */
#include <pthread.h>
#include <stdarg.h>
#include <sys/select.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sodium.h>

#include "../../src/store/pg.h"
#include "harness.h"

static const char *test_pg(void)
{
    const char *ci = getenv("LIVEDB_TEST_PG");
    return ci && *ci ? ci : NULL;
}

/* A node: its own connection and its own txn_t, over one schema. */
typedef struct node {
    pgstore *pg;
    txn_t t;
} node;

static bool node_open(node *n, const char *schema)
{
    err_t e = {0};
    int64_t seq, aseq;
    unsigned char hash[32];
    n->pg = pg_open(test_pg(), schema, &e);
    if (!n->pg || pg_head(n->pg, &seq, &aseq, hash, &e)) {
        FAILF("pg_open %s: %s", schema, e.msg);
        err_clear(&e);
        return false;
    }
    txn_init(&n->t, &pg_txn_methods, n->pg, seq, aseq, NULL);
    return true;
}

static wjob *create_job(const char *id)
{
    wjob *j = wjob_new(WJ_OPS, 1);
    j->actor.system = true;
    j->ops[0].kind = W_CREATE;
    snprintf(j->ops[0].col, sizeof j->ops[0].col, "notes");
    j->ops[0].id = xstrdup(id);
    j->ops[0].doc = json_pack("{ss}", "id", id);
    return j;
}

/* One create through node n; its seq, or -1. */
static int64_t create_on(node *n, const char *id)
{
    wjob *j = create_job(id);
    txn_prepare(&n->t, j);
    int rc = txn_run_group(&n->t, j);
    int64_t seq = rc == 0 && !j->err.code && j->changes ? j->changes->seq : -1;
    wjob_free(j);
    return seq;
}

static void schema_name(char *out, size_t n, const char *what)
{
    snprintf(out, n, "p_%s_%d", what, (int)getpid());
}

static void drop(const char *schema)
{
    err_t e = {0};
    if (pg_drop_schema(test_pg(), schema, &e))
        FAILF("drop %s: %s", schema, e.msg);
    err_clear(&e);
}

/* Two nodes over one fresh schema. */
typedef struct nodes {
    char schema[64];
    node a, b;
} nodes;

/* Opens n for a test named what; false when there is no server to test on
 * (the test is skipped) or they cannot be opened (it fails). */
static bool two_nodes(const char *what, nodes *n)
{
    if (!test_pg())
        return false;
    schema_name(n->schema, sizeof n->schema, what);
    return node_open(&n->a, n->schema) && node_open(&n->b, n->schema);
}

/* The same with only n->a (n->b stays closed). */
static bool one_node(const char *what, nodes *n)
{
    memset(n, 0, sizeof *n);
    if (!test_pg())
        return false;
    schema_name(n->schema, sizeof n->schema, what);
    return node_open(&n->a, n->schema);
}

static void close_nodes(nodes *n)
{
    pg_close(n->a.pg);
    pg_close(n->b.pg);
    drop(n->schema);
}

/* sql (printf-style), run on a connection of its own, as another client
 * of the database would; the caller clears the result (NULL: no answer). */
__attribute__((format(printf, 1, 2))) static PGresult *side_sql(const char *fmt, ...)
{
    char sql[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    PGconn *c = PQconnectdb(test_pg());
    PGresult *r = PQexec(c, sql);
    PQfinish(c);
    return r;
}

/* Checks the schema's activity chain from the first entry, as verify does:
 * each hash is BLAKE2b-256 of the one before and the entry. */
static void check_chain(const char *schema, int want_entries)
{
    PGresult *r = side_sql("SELECT seq, entry, hash FROM \"%s\".activity ORDER BY seq", schema);
    REQUIRE(PQresultStatus(r) == PGRES_TUPLES_OK);
    CHECK_INT(PQntuples(r), want_entries);
    unsigned char h[32] = {0};
    for (int i = 0; i < PQntuples(r); i++) {
        CHECK_INT(atoll(PQgetvalue(r, i, 0)), i + 1);
        crypto_generichash_state gs;
        crypto_generichash_init(&gs, NULL, 0, sizeof h);
        crypto_generichash_update(&gs, h, sizeof h);
        crypto_generichash_update(&gs, (const unsigned char *)PQgetvalue(r, i, 1),
                                  (size_t)PQgetlength(r, i, 1));
        crypto_generichash_final(&gs, h, sizeof h);
        char hex[65];
        sodium_bin2hex(hex, sizeof hex, h, sizeof h);
        CHECK_STR(PQgetvalue(r, i, 2), hex);
    }
    PQclear(r);
}

TEST(pg_nodes_share_one_feed_and_one_chain)
{
    nodes n;
    if (!two_nodes("share", &n))
        return;
    /* b's own count is stale after each of a's writes: the head decides. */
    CHECK_INT(create_on(&n.a, "a1"), 1);
    CHECK_INT(create_on(&n.a, "a2"), 2);
    CHECK_INT(create_on(&n.b, "b1"), 3);
    CHECK_INT(create_on(&n.a, "a3"), 4);
    CHECK_INT(create_on(&n.b, "a1"), -1); /* the id is taken, whichever node wrote it */
    CHECK_INT(create_on(&n.b, "b2"), 5);  /* and the failure gave its seq back */
    check_chain(n.schema, 5);
    close_nodes(&n);
}

typedef struct waiter {
    node *n;
    int64_t seq;
    volatile bool done;
} waiter;

static void *write_b(void *arg)
{
    waiter *w = arg;
    w->seq = create_on(w->n, "late");
    w->done = true;
    return NULL;
}

/* A group's transaction opened by hand on nd, holding the head: the seq
 * its first change gets, or -1. */
static int64_t hold_head(node *nd)
{
    err_t e = {0};
    int64_t seq = -1, aseq;
    unsigned char hash[32];
    if (pg_txn_methods.begin(nd->pg, &e) || pg_txn_methods.head(nd->pg, &seq, &aseq, hash, &e)) {
        FAILF("begin and head: %s", e.msg);
        seq = -1;
    }
    err_clear(&e);
    return seq;
}

/* The writes of a create of notes/id with change seq, by hand inside the
 * transaction hold_head opened: 0, or -1. */
static int create_by_hand(node *nd, const char *id, int64_t seq)
{
    static const char at[] = "2026-12-07T00:00:00.000Z";
    char body[64];
    int len = snprintf(body, sizeof body, "{\"id\":\"%s\"}", id);
    err_t e = {0};
    int slot;
    int rc = pg_txn_methods.put(nd->pg, "notes", id, 1, at, at, body, (size_t)len, &slot, &e);
    change_t *ch = change_new(seq, "notes", id, CH_CREATE, 1, body, (size_t)len, at);
    if (rc == 0)
        rc = pg_txn_methods.append_change(nd->pg, ch, &e);
    change_unref(ch);
    err_clear(&e);
    return rc;
}

TEST(pg_a_group_that_waits_commits_after_with_larger_seqs)
{
    nodes n;
    if (!two_nodes("wait", &n))
        return;
    /* a's group holds the head; b's must wait for it, and then follow. */
    CHECK_INT(hold_head(&n.a), 1);
    waiter w = {.n = &n.b};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, write_b, &w) == 0);
    nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL);
    CHECK(!w.done); /* blocked on the head's row */
    /* The rest of a's group by hand: the write, then the commit. */
    err_t e = {0};
    CHECK_INT(create_by_hand(&n.a, "early", 1), 0);
    CHECK_INT(pg_txn_methods.commit(n.a.pg, &e), 0);
    pthread_join(th, NULL);
    CHECK(w.done);
    CHECK_INT(w.seq, 2); /* after a's 1, though b had counted from 1 too */
    err_clear(&e);
    close_nodes(&n);
}

static void *open_one(void *arg)
{
    err_t e = {0};
    pgstore *p = pg_open(test_pg(), arg, &e);
    err_clear(&e);
    if (p)
        pg_close(p);
    return p ? arg : NULL;
}

TEST(pg_nodes_starting_at_once_make_the_schema_once)
{
    if (!test_pg())
        return;
    char schema[64];
    schema_name(schema, sizeof schema, "race");
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&th[i], NULL, open_one, schema) == 0);
    for (int i = 0; i < 4; i++) {
        void *ok;
        pthread_join(th[i], &ok);
        CHECK(ok != NULL);
    }
    PGresult *r = side_sql("SELECT value FROM \"%s\".meta WHERE key = 'schema_version'", schema);
    CHECK_INT(PQntuples(r), 1);
    if (PQntuples(r) == 1)
        CHECK_INT(atoi(PQgetvalue(r, 0, 0)), PG_SCHEMA_VERSION);
    PQclear(r);
    drop(schema);
}

TEST(pg_refuses_a_bad_schema_name_and_an_unreachable_server)
{
    err_t e = {0};
    CHECK(pg_open("host=127.0.0.1 port=1", "livedb", &e) == NULL);
    CHECK_INT(e.code, E_UNAVAILABLE);
    err_clear(&e);
    CHECK(pg_open("host=127.0.0.1 port=1", "Bad\"name", &e) == NULL);
    CHECK_INT(e.code, E_BAD_REQUEST);
    err_clear(&e);
    CHECK(!pg_schema_name_ok(""));
    CHECK(!pg_schema_name_ok("1abc"));
    CHECK(pg_schema_name_ok("livedb_2"));
}

/* ------------------------------------------------------------------ the feed between nodes */

typedef struct seen {
    int64_t seqs[64];
    char ids[64][16];
    int n;
} seen;

static void on_change(void *ctx, change_t *ch)
{
    seen *s = ctx;
    if (s->n < 64) {
        s->seqs[s->n] = ch->seq;
        snprintf(s->ids[s->n], sizeof s->ids[s->n], "%s", ch->id);
        s->n++;
    }
    change_unref(ch);
}

/* Whether the feed's socket becomes readable within ms. */
static bool woken(pgfeed *f, int ms)
{
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(pgfeed_socket(f), &fds);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return select(pgfeed_socket(f) + 1, &fds, NULL, NULL, &tv) == 1;
}

TEST(pg_feed_hears_every_node_commit_once_in_order)
{
    nodes n;
    if (!two_nodes("feed", &n))
        return;
    err_t e = {0};
    pgfeed *f = pgfeed_open(test_pg(), n.schema, 0, &e);
    REQUIRE(f);
    seen s = {0};
    CHECK_INT(pgfeed_read(f, 100, on_change, &s, &e), 0);
    CHECK(!woken(f, 50)); /* nothing committed, nothing to hear */
    CHECK_INT(create_on(&n.a, "x1"), 1);
    CHECK(woken(f, 2000));
    CHECK_INT(create_on(&n.b, "x2"), 2);
    CHECK_INT(create_on(&n.b, "x1"), -1); /* refused: no change, no wake-up of its own */
    CHECK_INT(pgfeed_read(f, 100, on_change, &s, &e), 2);
    CHECK_INT(s.n, 2);
    CHECK_INT(s.seqs[0], 1);
    CHECK_STR(s.ids[0], "x1");
    CHECK_INT(s.seqs[1], 2);
    CHECK_STR(s.ids[1], "x2");
    CHECK_INT(pgfeed_read(f, 100, on_change, &s, &e), 0); /* nothing twice */
    /* A node that comes back resumes after the last change it handed on. */
    int64_t last = pgfeed_last(f);
    pgfeed_close(f);
    CHECK_INT(create_on(&n.a, "x3"), 3);
    f = pgfeed_open(test_pg(), n.schema, last, &e);
    REQUIRE(f);
    CHECK_INT(pgfeed_read(f, 100, on_change, &s, &e), 1);
    CHECK_INT(s.seqs[2], 3);
    CHECK_STR(s.ids[2], "x3");
    /* A page at a time: limit bounds a read, the next read goes on. */
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "y%d", i);
        CHECK_INT(create_on(i % 2 ? &n.a : &n.b, id), 4 + i);
    }
    CHECK_INT(pgfeed_read(f, 3, on_change, &s, &e), 3);
    CHECK_INT(pgfeed_read(f, 3, on_change, &s, &e), 2);
    for (int i = 0; i < s.n; i++)
        CHECK_INT(s.seqs[i], i + 1);
    pgfeed_close(f);
    err_clear(&e);
    close_nodes(&n);
}

/* ------------------------------------------------------------------ faults */

/* Ends every other connection to the database, as a PostgreSQL restart
 * or a failover does to a node's. */
static void terminate_others(void)
{
    PQclear(side_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                     " AND backend_type = 'client backend'"));
}

TEST(pg_a_dropped_connection_fails_the_group_in_flight_then_reconnects)
{
    nodes n;
    if (!one_node("drop", &n))
        return;
    CHECK_INT(create_on(&n.a, "before"), 1);
    terminate_others();
    /* The group that meets the dropped connection fails, with 503. */
    wjob *j = create_job("lost");
    txn_prepare(&n.a.t, j);
    CHECK_INT(txn_run_group(&n.a.t, j), -1);
    CHECK_INT(j->err.code, E_UNAVAILABLE);
    wjob_free(j);
    /* The next one finds a new connection, and the feed goes on gapless. */
    CHECK_INT(create_on(&n.a, "after"), 2);
    CHECK_INT(create_on(&n.a, "lost"), 3); /* it was never written */
    check_chain(n.schema, 3);
    close_nodes(&n);
}

/* ------------------------------------------------------------------ promises across nodes */

/* take: stock/s {"n"} goes down by one, or the call is refused. */
static int fn_take_one(fn_tx *t, const json_t *args, json_t **result)
{
    json_t *s = fn_get(t, "stock", "s");
    int64_t n = json_integer_value(json_object_get(s, "n"));
    json_decref(s);
    if (n < 1)
        return fn_fail(t, E_CONFLICT, NULL, "sold out");
    json_t *w = fn_write(t, W_PATCH, "stock", "s", json_pack("{sI}", "n", (json_int_t)(n - 1)));
    if (!w)
        return -1;
    json_decref(w);
    *result = json_object();
    return 0;
}

typedef struct taker {
    node *n;
    int sold, refused;
} taker;

/* Calls take in groups of 4 until refused 8 times. */
static void *take_until_sold_out(void *arg)
{
    taker *tk = arg;
    while (tk->refused < 8) {
        wjob *j[4], *first = NULL;
        for (int i = 3; i >= 0; i--) {
            j[i] = wjob_new(WJ_FN, 0);
            j[i]->fn = fn_take_one;
            snprintf(j[i]->fn_name, sizeof j[i]->fn_name, "take");
            j[i]->fn_args = json_object();
            j[i]->actor.system = true;
            j[i]->next = first;
            first = j[i];
        }
        txn_prepare(&tk->n->t, first);
        txn_run_group(&tk->n->t, first);
        for (int i = 0; i < 4; i++) {
            if (j[i]->err.code == 0 && j[i]->status == 200)
                tk->sold++;
            else
                tk->refused++;
            j[i]->next = NULL;
            wjob_free(j[i]);
        }
    }
    return NULL;
}

TEST(pg_a_function_never_oversells_from_two_nodes_at_once)
{
    nodes n;
    if (!two_nodes("sell", &n))
        return;
    wjob *j = wjob_new(WJ_OPS, 1);
    j->actor.system = true;
    j->ops[0].kind = W_CREATE;
    snprintf(j->ops[0].col, sizeof j->ops[0].col, "stock");
    j->ops[0].id = xstrdup("s");
    j->ops[0].doc = json_pack("{si}", "n", 100);
    txn_prepare(&n.a.t, j);
    CHECK_INT(txn_run_group(&n.a.t, j), 0);
    wjob_free(j);
    taker ta = {.n = &n.a}, tb = {.n = &n.b};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, take_until_sold_out, &tb) == 0);
    take_until_sold_out(&ta);
    pthread_join(th, NULL);
    CHECK_INT(ta.sold + tb.sold, 100); /* every unit once, none twice */
    CHECK(ta.sold > 0 && tb.sold > 0); /* both nodes sold */
    /* One chain across both: the create; a sale's write and its call; a
     * refused call. */
    check_chain(n.schema, 1 + 2 * (ta.sold + tb.sold) + ta.refused + tb.refused);
    close_nodes(&n);
}

TEST(pg_a_retry_on_another_node_answers_the_first_result)
{
    nodes n;
    if (!two_nodes("idem", &n))
        return;
    wjob *j[2];
    for (int i = 0; i < 2; i++) {
        j[i] = create_job("once");
        j[i]->idem_account = xstrdup("acct");
        j[i]->idem_key = xstrdup("k1");
        node *on = i ? &n.b : &n.a;
        txn_prepare(&on->t, j[i]);
        CHECK_INT(txn_run_group(&on->t, j[i]), 0);
        CHECK_INT(j[i]->err.code, 0);
        CHECK_INT(j[i]->status, 201);
    }
    CHECK(!j[0]->replayed);
    CHECK(j[1]->replayed); /* b answered what a had, wrote nothing */
    CHECK_MEM(j[1]->answer.p, j[1]->answer.len, j[0]->answer.p, j[0]->answer.len);
    CHECK_INT(create_on(&n.b, "next"), 2); /* the retry took no seq */
    wjob_free(j[0]);
    wjob_free(j[1]);
    close_nodes(&n);
}

TEST(pg_refuses_a_schema_newer_than_itself)
{
    if (!test_pg())
        return;
    char schema[64];
    schema_name(schema, sizeof schema, "newer");
    err_t e = {0};
    pgstore *p = pg_open(test_pg(), schema, &e);
    REQUIRE(p);
    pg_close(p);
    PQclear(side_sql("UPDATE \"%s\".meta SET value = '99' WHERE key = 'schema_version'", schema));
    CHECK(pg_open(test_pg(), schema, &e) == NULL);
    CHECK(strstr(e.msg, "newer than this livedb") != NULL);
    err_clear(&e);
    drop(schema);
}

TEST(pg_a_write_that_fails_in_the_pipeline_fails_its_group_and_not_the_next)
{
    nodes n;
    if (!two_nodes("fail", &n))
        return;
    /* a's group learns that "dup" is free; then another writer, outside
     * livedb's lock, takes it, so a's unanswered insert fails in the
     * pipeline and the commit must not be run. */
    wjob *j = create_job("dup");
    int64_t seq = hold_head(&n.a);
    REQUIRE(seq == 1);
    pg_txn_methods.prefetch(n.a.pg, j);
    PGresult *r = side_sql("INSERT INTO \"%s\".docs VALUES('notes', 'dup', 1, 'x', 'x', '{}')",
                           n.schema);
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    CHECK_INT(create_by_hand(&n.a, "dup", seq), 0); /* sent, not yet answered */
    err_t e = {0};
    CHECK_INT(pg_txn_methods.commit(n.a.pg, &e), -1);
    CHECK(e.code != 0);
    err_clear(&e);
    REQUIRE(pg_txn_methods.in_tx(n.a.pg)); /* as core sees it: roll back */
    pg_txn_methods.rollback(n.a.pg);
    CHECK(!pg_txn_methods.in_tx(n.a.pg));
    /* Nothing of the group stayed, and the connection is fit for the next. */
    CHECK_INT(create_on(&n.a, "fresh"), 1);
    CHECK_INT(create_on(&n.b, "dup"), -1); /* the other writer's row */
    check_chain(n.schema, 1);
    wjob_free(j);
    close_nodes(&n);
}

TEST(pg_automatic_indexes_are_bounded_per_collection)
{
    nodes n;
    if (!one_node("ix", &n))
        return;
    err_t e = {0};
    for (int i = 0; i < PG_AUTO_INDEX_MAX + 4; i++) {
        char f[16];
        snprintf(f, sizeof f, "f%d", i);
        CHECK_INT(pg_txn_methods.auto_index(n.a.pg, "notes", f, &e), 0);
        CHECK_INT(pg_txn_methods.auto_index(n.a.pg, "notes", f, &e), 0); /* again: no-op */
    }
    CHECK_INT(pg_txn_methods.auto_index(n.a.pg, "notes", "bad'field", &e), -1);
    err_clear(&e);
    PGresult *r = side_sql("SELECT (SELECT count(*) FROM \"%s\".indexes),"
                           " (SELECT count(*) FROM pg_indexes"
                           " WHERE schemaname = '%s' AND indexname LIKE 'ix_%%')",
                           n.schema, n.schema);
    REQUIRE(PQresultStatus(r) == PGRES_TUPLES_OK);
    CHECK_INT(atoi(PQgetvalue(r, 0, 0)), PG_AUTO_INDEX_MAX);
    CHECK_INT(atoi(PQgetvalue(r, 0, 1)), PG_AUTO_INDEX_MAX);
    PQclear(r);
    close_nodes(&n);
}
