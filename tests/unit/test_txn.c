/*
 * test_txn.c: what a write means (core/txn.c), on every store: the
 * in-memory one (memstore.c), the SQLite one (its txn_t driven from this
 * thread while its writer thread waits for jobs that never come) and,
 * when LIVEDB_TEST_PG names a server, the PostgreSQL one (a fresh schema
 * each time).
 * Faults are injected by wrapping either store's method table.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "../../src/store/sqlite_int.h"
#include "harness.h"
#include "../../src/store/pg.h"
#include "memstore.h"

/* ------------------------------------------------------------------ the two stores */

typedef struct fx {
    memstore *mem;
    store_t *st;
    pgstore *pg;
    char schema[64];
    uv_loop_t loop;
    char dir[64];
    txn_t own;
    txn_t *t;
} fx;

/* The PostgreSQL server of the tests (LIVEDB_TEST_PG, a libpq connection
 * string; make test-unit starts a throwaway cluster for it), or NULL. */
static const char *test_pg(void)
{
    const char *ci = getenv("LIVEDB_TEST_PG");
    return ci && *ci ? ci : NULL;
}

static fx *fx_open(fx *f, int which)
{
    memset(f, 0, sizeof *f);
    if (which == 0) {
        f->mem = memstore_new();
        txn_init(&f->own, &memstore_methods, f->mem, 1, 1, NULL);
        f->t = &f->own;
        return f;
    }
    if (which == 2) {
        if (!test_pg())
            return NULL;
        static int n;
        snprintf(f->schema, sizeof f->schema, "t_%d_%d", (int)getpid(), ++n);
        err_t e = {0};
        int64_t seq, aseq;
        unsigned char hash[32];
        if (!(f->pg = pg_open(test_pg(), f->schema, &e)) || pg_head(f->pg, &seq, &aseq, hash, &e)) {
            FAILF("pg_open: %s", e.msg);
            err_clear(&e);
            return NULL;
        }
        txn_init(&f->own, &pg_txn_methods, f->pg, seq, aseq, NULL);
        f->t = &f->own;
        return f;
    }
    snprintf(f->dir, sizeof f->dir, "/tmp/livedb-txn-XXXXXX");
    if (!mkdtemp(f->dir))
        return NULL;
    uv_loop_init(&f->loop);
    store_opts o = {.dir = f->dir, .retain_changes = 1000, .readers = 1, .auto_index_max = 0};
    err_t e = {0};
    if (store_open(&f->st, &f->loop, &o, &e)) {
        FAILF("store_open: %s", e.msg);
        err_clear(&e);
        return NULL;
    }
    f->t = &f->st->txn;
    return f;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}

static void fx_close(fx *f)
{
    if (f->mem)
        memstore_free(f->mem);
    if (f->pg) {
        err_t e = {0};
        pg_close(f->pg);
        if (pg_drop_schema(test_pg(), f->schema, &e))
            FAILF("drop schema %s: %s", f->schema, e.msg);
        err_clear(&e);
    }
    if (f->st) {
        /* The loop's handle first (store_close leaves it to the drain). */
        uv_close((uv_handle_t *)&f->st->async, NULL);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        store_close(f->st);
        uv_loop_close(&f->loop);
        nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    }
}

/* Runs the body once on each store, with f set (PostgreSQL's when
 * LIVEDB_TEST_PG names a server). */
#define EACH_STORE(f)                                                                   \
    for (int which_ = 0; which_ < 3; which_++)                                          \
        for (fx f##_s, *f = fx_open(&f##_s, which_); f; fx_close(f), f = NULL)

/* ------------------------------------------------------------------ jobs */

static wjob *op_job(wop_kind kind, const char *col, const char *id, const char *json)
{
    wjob *j = wjob_new(WJ_OPS, 1);
    j->actor.system = true;
    j->ops[0].kind = kind;
    snprintf(j->ops[0].col, sizeof j->ops[0].col, "%s", col);
    j->ops[0].id = xstrdup(id);
    j->ops[0].doc = json ? json_loads(json, 0, NULL) : NULL;
    return j;
}

/* One group of n jobs; they stay the caller's. */
static int run_group(fx *f, int n, wjob **jobs)
{
    for (int i = 0; i < n; i++)
        jobs[i]->next = i + 1 < n ? jobs[i + 1] : NULL;
    txn_prepare(f->t, jobs[0]);
    int rc = txn_run_group(f->t, jobs[0]);
    for (int i = 0; i < n; i++)
        jobs[i]->next = NULL;
    return rc;
}

static int run_one(fx *f, wjob *j) { return run_group(f, 1, &j); }

static void free_all(int n, wjob **jobs)
{
    for (int i = 0; i < n; i++)
        wjob_free(jobs[i]);
}

/* The stored version of col/id (0: none), through the store's own get. */
static int64_t stored_version(fx *f, const char *col, const char *id)
{
    txn_row row = {0};
    err_t e = {0};
    int rc = f->t->m->get(f->t->s, col, id, &row, &e);
    free(row.created);
    buf_free(&row.body);
    err_clear(&e);
    return rc == TXN_FOUND ? row.version : 0;
}

/* ------------------------------------------------------------------ faults */

static const txn_methods *fault_base;
static int fault_commit, fault_change_at, changes_seen;

static int faulty_commit(void *s, err_t *err)
{
    if (fault_commit)
        return err_set(err, E_UNAVAILABLE, "the commit failed (test fault)");
    return fault_base->commit(s, err);
}

static int faulty_change(void *s, const change_t *ch, err_t *err)
{
    if (++changes_seen == fault_change_at)
        return err_set(err, E_STORAGE_FULL, "the disk is full (test fault)");
    return fault_base->append_change(s, ch, err);
}

static txn_methods faulty_m;

/* Puts the fault wrappers in front of f's store. */
static void faults_on(fx *f, int commit, int change_at)
{
    fault_base = f->t->m;
    faulty_m = *fault_base;
    faulty_m.commit = faulty_commit;
    faulty_m.append_change = faulty_change;
    fault_commit = commit;
    fault_change_at = change_at;
    changes_seen = 0;
    f->t->m = &faulty_m;
}

static void faults_off(fx *f) { f->t->m = fault_base; }

/* ------------------------------------------------------------------ writes, the feed, the log */

TEST(txn_writes_feed_and_hash_chain)
{
    EACH_STORE(f) {
        wjob *j[4] = {
            op_job(W_CREATE, "notes", "a", "{\"n\":1}"),
            op_job(W_PUT, "notes", "a", "{\"n\":2}"),
            op_job(W_PATCH, "notes", "a", "{\"m\":3}"),
            op_job(W_DELETE, "notes", "a", NULL),
        };
        unsigned char h[32] = {0};
        CHECK_INT(run_group(f, 4, j), 0);
        static const int status[] = {201, 200, 200, 200};
        int64_t want_seq = 1;
        for (int i = 0; i < 4; i++) {
            CHECK_INT(j[i]->err.code, 0);
            CHECK_INT(j[i]->status, status[i]);
            CHECK_INT(j[i]->version, i < 3 ? i + 1 : 3);
            REQUIRE(j[i]->changes && !j[i]->changes->next);
            CHECK_INT(j[i]->changes->seq, want_seq++);
            REQUIRE(j[i]->activity);
            /* The chain: each hash covers the one before and the entry. */
            crypto_generichash_state gs;
            crypto_generichash_init(&gs, NULL, 0, sizeof h);
            crypto_generichash_update(&gs, h, sizeof h);
            crypto_generichash_update(&gs, (const unsigned char *)j[i]->activity->json,
                                      j[i]->activity->len);
            crypto_generichash_final(&gs, h, sizeof h);
        }
        CHECK(memcmp(h, f->t->last_hash, sizeof h) == 0);
        CHECK_INT(f->t->next_seq, 5);
        CHECK_INT(f->t->next_aseq, 5);
        CHECK(strstr(j[2]->answer.p, "\"m\":3") && strstr(j[2]->answer.p, "\"n\":2"));
        CHECK_INT(stored_version(f, "notes", "a"), 0);
        free_all(4, j);
    }
}

TEST(txn_failed_job_fails_alone_and_gives_its_seqs_back)
{
    EACH_STORE(f) {
        wjob *j[4] = {
            op_job(W_CREATE, "notes", "x", "{}"),
            op_job(W_PUT, "notes", "x", "{}"),
            op_job(W_DELETE, "notes", "nobody", NULL),
            op_job(W_CREATE, "notes", "z", "{}"),
        };
        j[1]->ops[0].if_version = 7;
        CHECK_INT(run_group(f, 4, j), 0);
        CHECK_INT(j[0]->err.code, 0);
        CHECK_INT(j[1]->err.code, E_PRECONDITION_FAILED);
        CHECK_INT(j[2]->err.code, E_NOT_FOUND);
        CHECK(!j[1]->changes && !j[1]->activity && !j[2]->changes);
        CHECK_INT(j[3]->err.code, 0);
        REQUIRE(j[0]->changes && j[3]->changes);
        CHECK_INT(j[3]->changes->seq, j[0]->changes->seq + 1); /* no gap where they failed */
        CHECK_INT(stored_version(f, "notes", "x"), 1);
        free_all(4, j);
    }
}

TEST(txn_batch_is_all_or_none)
{
    EACH_STORE(f) {
        wjob *first = op_job(W_CREATE, "notes", "a", "{}");
        CHECK_INT(run_one(f, first), 0);
        wjob *b = wjob_new(WJ_OPS, 2);
        b->is_batch = true;
        b->actor.system = true;
        const char *ids[] = {"b", "a"};
        for (int i = 0; i < 2; i++) {
            b->ops[i].kind = W_CREATE;
            snprintf(b->ops[i].col, sizeof b->ops[i].col, "notes");
            b->ops[i].id = xstrdup(ids[i]);
            b->ops[i].doc = json_object();
        }
        int64_t seq0 = f->t->next_seq;
        CHECK_INT(run_one(f, b), 0);
        CHECK_INT(b->err.code, E_CONFLICT);
        CHECK_INT(json_integer_value(json_object_get(b->err.details, "index")), 1);
        CHECK_INT(f->t->next_seq, seq0);
        CHECK_INT(stored_version(f, "notes", "b"), 0); /* undone with its savepoint */
        CHECK(!b->changes && b->answer.len == 0);
        wjob_free(first);
        wjob_free(b);
    }
}

TEST(txn_idempotent_request_is_answered_again)
{
    EACH_STORE(f) {
        wjob *j[2];
        for (int i = 0; i < 2; i++) {
            j[i] = op_job(W_CREATE, "notes", i ? "other" : "c", "{}");
            j[i]->idem_account = xstrdup("acct");
            j[i]->idem_key = xstrdup("k1");
        }
        CHECK_INT(run_one(f, j[0]), 0);
        int64_t seq = f->t->next_seq;
        CHECK_INT(run_one(f, j[1]), 0);
        CHECK(j[1]->replayed);
        CHECK_INT(j[1]->status, 201);
        CHECK_MEM(j[1]->answer.p, j[1]->answer.len, j[0]->answer.p, j[0]->answer.len);
        CHECK_INT(f->t->next_seq, seq);
        CHECK_INT(stored_version(f, "notes", "other"), 0);
        free_all(2, j);
    }
}

/* ------------------------------------------------------------------ rules and schemas */

TEST(txn_rules_schemas_and_unique_fields)
{
    err_t e = {0};
    REQUIRE(apps_load("wholesale", &e) == 0);
    EACH_STORE(f) {
        const char *p = "{\"sku\":\"A\",\"name\":\"n\",\"price_cents\":1,\"stock\":1}";
        wjob *j[4] = {
            op_job(W_CREATE, "products", "p1", p),
            op_job(W_CREATE, "products", "p2", p),
            op_job(W_CREATE, "products", "p3", "{\"sku\":\"B\"}"),
            op_job(W_CREATE, "products", "p4", p),
        };
        j[3]->actor.system = false;
        snprintf(j[3]->actor.id, sizeof j[3]->actor.id, "partner1");
        snprintf(j[3]->actor.role, sizeof j[3]->actor.role, "partner");
        CHECK_INT(run_group(f, 4, j), 0);
        CHECK_INT(j[0]->err.code, 0);
        CHECK_INT(j[1]->err.code, E_INVALID);
        CHECK_STR(j[1]->err.msg, "another document of products has this sku");
        CHECK_INT(j[2]->err.code, E_INVALID); /* required fields missing */
        CHECK_INT(j[3]->err.code, E_FORBIDDEN);
        CHECK_INT(stored_version(f, "products", "p2"), 0);
        free_all(4, j);
    }
    apps_free();
}

/* ------------------------------------------------------------------ server functions */

/* take: stock/s {"n"} goes down by args.qty, or the call is refused. */
static int fn_take(fn_tx *t, const json_t *args, json_t **result)
{
    json_t *s = fn_get(t, "stock", "s");
    int64_t n = json_integer_value(json_object_get(s, "n"));
    int64_t qty = json_integer_value(json_object_get(args, "qty"));
    json_decref(s);
    if (n < qty)
        return fn_fail(t, E_CONFLICT, NULL, "only %lld left", (long long)n);
    json_t *w = fn_write(t, W_PATCH, "stock", "s", json_pack("{sI}", "n", (json_int_t)(n - qty)));
    if (!w)
        return -1;
    json_decref(w);
    *result = json_pack("{sI}", "left", (json_int_t)(n - qty));
    return 0;
}

/* Writes, then fails: its write must go, alone. */
static int fn_write_then_fail(fn_tx *t, const json_t *args, json_t **result)
{
    json_t *w = fn_write(t, W_CREATE, "stock", "junk", json_object());
    json_decref(w);
    return fn_fail(t, E_INVALID, NULL, "changed its mind");
}

static wjob *fn_job(fn_impl fn, const char *name, json_t *args)
{
    wjob *j = wjob_new(WJ_FN, 0);
    j->fn = fn;
    snprintf(j->fn_name, sizeof j->fn_name, "%s", name);
    j->fn_args = args;
    j->actor.system = true;
    return j;
}

TEST(txn_functions_never_oversell_and_fail_alone)
{
    EACH_STORE(f) {
        wjob *seed = op_job(W_CREATE, "stock", "s", "{\"n\":3}");
        CHECK_INT(run_one(f, seed), 0);
        wjob *j[4] = {
            fn_job(fn_take, "take", json_pack("{si}", "qty", 2)),
            fn_job(fn_write_then_fail, "write_then_fail", json_object()),
            fn_job(fn_take, "take", json_pack("{si}", "qty", 2)),
            op_job(W_CREATE, "notes", "after", "{}"),
        };
        int64_t seq0 = f->t->next_seq;
        CHECK_INT(run_group(f, 4, j), 0); /* runs again, carefully, after call 2 */
        CHECK_INT(j[0]->err.code, 0);
        CHECK_STR(j[0]->answer.p, "{\"left\":1}");
        CHECK_INT(j[1]->err.code, 0);
        CHECK_INT(j[1]->fn_err.code, E_INVALID); /* refused: the call itself commits */
        CHECK(!j[1]->changes);
        REQUIRE(j[1]->activity);
        CHECK(strstr(j[1]->activity->json, "\"ok\":false") != NULL);
        CHECK_INT(j[2]->fn_err.code, E_CONFLICT); /* one left: no oversell */
        CHECK_INT(j[3]->err.code, 0);
        CHECK_INT(stored_version(f, "stock", "junk"), 0);
        CHECK_INT(stored_version(f, "stock", "s"), 2);
        REQUIRE(j[0]->changes && j[3]->changes);
        CHECK_INT(j[0]->changes->seq, seq0);
        CHECK_INT(j[3]->changes->seq, seq0 + 1);
        CHECK_INT(f->t->next_seq, seq0 + 2);
        wjob_free(seed);
        free_all(4, j);
    }
}

/* ------------------------------------------------------------------ the store fails */

TEST(txn_failed_commit_fails_the_group_and_gives_every_seq_back)
{
    EACH_STORE(f) {
        wjob *j[2] = {op_job(W_CREATE, "notes", "a", "{}"), op_job(W_CREATE, "notes", "b", "{}")};
        int64_t seq0 = f->t->next_seq, aseq0 = f->t->next_aseq;
        faults_on(f, 1, 0);
        CHECK_INT(run_group(f, 2, j), -1);
        faults_off(f);
        for (int i = 0; i < 2; i++) {
            CHECK_INT(j[i]->err.code, E_UNAVAILABLE);
            CHECK(!j[i]->changes && !j[i]->activity && j[i]->answer.len == 0);
        }
        CHECK_INT(f->t->next_seq, seq0);
        CHECK_INT(f->t->next_aseq, aseq0);
        CHECK(!f->t->m->in_tx(f->t->s));
        CHECK_INT(stored_version(f, "notes", "a"), 0);
        free_all(2, j);
    }
}

TEST(txn_disk_failing_midway_takes_the_whole_group)
{
    EACH_STORE(f) {
        wjob *j[2] = {op_job(W_CREATE, "notes", "a", "{}"), op_job(W_CREATE, "notes", "b", "{}")};
        faults_on(f, 0, 2); /* b's change row does not make it */
        CHECK_INT(run_group(f, 2, j), -1);
        faults_off(f);
        CHECK_INT(j[0]->err.code, E_STORAGE_FULL);
        CHECK_INT(j[1]->err.code, E_STORAGE_FULL);
        CHECK_INT(f->t->next_seq, 1);
        CHECK_INT(stored_version(f, "notes", "a"), 0);
        /* And the store takes the next group. */
        wjob *again = op_job(W_CREATE, "notes", "a", "{}");
        CHECK_INT(run_one(f, again), 0);
        CHECK_INT(again->changes ? again->changes->seq : 0, 1);
        free_all(2, j);
        wjob_free(again);
    }
}
