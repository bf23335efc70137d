/*
 * pg_node.c: the PostgreSQL backend of the store (store_int.h): one node of
 * several over one database.
 *
 * A node has three kinds of connection: the writer's (core's txn_methods,
 * pg.c; each group locks the head, so the groups of every node commit one
 * after another in seq order), the readers' (a pool, one read job at a
 * time each, in a REPEATABLE READ snapshot: pg_reads.c), and the feed's
 * (pgfeed: LISTEN, then the changes after the last one handed on). The
 * node's subscribers hear of every change through the feed, its own
 * commits too, so that each node hands on one sequence, in seq order,
 * once: store_committed_seq is where the feed stands.
 *
 * When PostgreSQL goes away, writes fail with 503 (the writer reconnects
 * before each group), reads fail with 503 (each reader reconnects before
 * its read), and the feed retries every FEED_RETRY_MS from where it
 * stood, so that subscribers miss nothing once it is back.
 */
#include "pg_int.h"
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

#include "../util/log.h"

#define FEED_RETRY_MS 500
#define FEED_BATCH 1000

typedef struct pgnode {
    store_t *store;
    char *conninfo;
    char schema[64];
    pgstore *w; /* the writer's */

    /* Readers: connections made when first wanted, up to opts.readers. */
    pthread_mutex_t rmu;
    pthread_cond_t rcv;
    pgstore **idle;
    int nidle, nmade, max;

    /* The feed (loop thread). */
    pgfeed *feed;
    uv_poll_t poll;
    uv_timer_t retry;
    uv_timer_t soon; /* a drain after this node said something */
    bool started;   /* the timer is made */
    bool poll_open; /* the poll handle is made and not yet closed */
    bool closing;
    int64_t feed_last;
    _Atomic bool feed_down;
    char down_why[200];
    pthread_mutex_t why_mu;
} pgnode;

static pgnode *node_of(store_t *st) { return st->be_state; }

/* ------------------------------------------------------------------ readers */

pgstore *pgnode_reader_take(store_t *st, err_t *err)
{
    pgnode *n = node_of(st);
    pthread_mutex_lock(&n->rmu);
    while (!n->nidle && n->nmade >= n->max)
        pthread_cond_wait(&n->rcv, &n->rmu);
    pgstore *p = n->nidle ? n->idle[--n->nidle] : NULL;
    if (!p)
        n->nmade++;
    pthread_mutex_unlock(&n->rmu);
    if (!p) {
        p = pg_connect(n->conninfo, n->schema, false, err);
        if (!p) {
            pthread_mutex_lock(&n->rmu);
            n->nmade--;
            pthread_cond_signal(&n->rcv);
            pthread_mutex_unlock(&n->rmu);
        }
        return p;
    }
    if (pq_reconnect(p, err)) {
        pgnode_reader_give(st, p);
        return NULL;
    }
    return p;
}

void pgnode_reader_give(store_t *st, pgstore *p)
{
    pgnode *n = node_of(st);
    pthread_mutex_lock(&n->rmu);
    n->idle[n->nidle++] = p;
    pthread_cond_signal(&n->rcv);
    pthread_mutex_unlock(&n->rmu);
}

/* ------------------------------------------------------------------ the feed */

static void set_down(pgnode *n, const char *why)
{
    pthread_mutex_lock(&n->why_mu);
    snprintf(n->down_why, sizeof n->down_why, "%s", why);
    pthread_mutex_unlock(&n->why_mu);
    if (!atomic_exchange(&n->feed_down, true))
        log_msg(LOG_ERROR, "the change feed from PostgreSQL stopped: %s (retrying)", why);
}

static void feed_start(pgnode *n);

static void on_retry(uv_timer_t *t) { feed_start(t->data); }

static void poll_closed(uv_handle_t *h) { ((pgnode *)h->data)->poll_open = false; }

static void feed_lost(pgnode *n, const char *why)
{
    if (n->feed) {
        uv_poll_stop(&n->poll);
        uv_close((uv_handle_t *)&n->poll, poll_closed);
    }
    pgfeed_close(n->feed);
    n->feed = NULL;
    set_down(n, why);
    if (!n->closing)
        uv_timer_start(&n->retry, on_retry, FEED_RETRY_MS, 0);
}

typedef struct batch {
    change_t *head, **tail;
} batch;

static void collect(void *ctx, change_t *ch)
{
    batch *b = ctx;
    *b->tail = ch;
    b->tail = &ch->next;
}

/* Everything after the last change handed on, in batches, to the hub. */
static int feed_drain(pgnode *n)
{
    store_t *st = n->store;
    for (;;) {
        batch b = {NULL, &b.head};
        err_t e = {0};
        int got = pgfeed_read(n->feed, FEED_BATCH, collect, &b, &e);
        if (got < 0) {
            feed_lost(n, e.msg);
            err_clear(&e);
            return -1;
        }
        if (b.head) {
            n->feed_last = pgfeed_last(n->feed);
            atomic_store(&st->committed_seq, n->feed_last);
            if (st->commit_cb)
                st->commit_cb(st->commit_ctx, b.head, NULL);
            change_list_free(b.head);
        }
        if (got < FEED_BATCH)
            return 0;
    }
}

static void on_feed(uv_poll_t *h, int status, int events)
{
    pgnode *n = h->data;
    if (status < 0) {
        feed_lost(n, uv_strerror(status));
        return;
    }
    feed_drain(n);
}

static void auth_heard(void *ctx, char kind, const char *key, const char *value)
{
    store_t *st = ((pgnode *)ctx)->store;
    store_auth_event ev = kind == 's' ? STORE_AUTH_SESSION_END
                          : kind == 'a' ? STORE_AUTH_ACCOUNT_END
                          : kind == 'c' && value ? STORE_AUTH_CREDENTIAL
                          : kind == 'u' || kind == 'x' ? STORE_AUTH_ACCOUNT
                                                       : STORE_AUTH_RESYNC;
    if (st->auth_cb)
        st->auth_cb(st->auth_ctx, ev, key, value);
}

static void presence_heard(void *ctx, const char *line)
{
    store_t *st = ((pgnode *)ctx)->store;
    if (st->presence_cb)
        st->presence_cb(st->presence_ctx, line);
}

static void on_soon(uv_timer_t *t)
{
    pgnode *n = t->data;
    if (n->feed)
        feed_drain(n);
}

/* Said on the feed's connection; what it heard meanwhile is handed on in
 * the next turn of the loop (the socket will not wake it for that, and a
 * drain from here could run inside the one that called us). Lost while
 * the feed is away: the nodes say it again when it is back ("*"). */
static void pgnode_presence_say(store_t *st, const char *line)
{
    pgnode *n = node_of(st);
    if (!n->feed)
        return;
    err_t e = {0};
    /* A failure is the connection's: the socket says so to on_feed (not
     * closed from here, which may be inside a read of this feed). */
    pgfeed_say(n->feed, line, &e);
    err_clear(&e);
    uv_timer_start(&n->soon, on_soon, 0, 0);
}

static void feed_start(pgnode *n)
{
    if (n->closing)
        return;
    if (n->poll_open) { /* the last one's close is on its way */
        uv_timer_start(&n->retry, on_retry, 10, 0);
        return;
    }
    err_t e = {0};
    n->feed = pgfeed_open(n->conninfo, n->schema, n->feed_last, &e);
    if (!n->feed) {
        feed_lost(n, e.msg);
        err_clear(&e);
        return;
    }
    pgfeed_on_auth(n->feed, auth_heard, n);
    pgfeed_on_presence(n->feed, presence_heard, n);
    uv_poll_init_socket(n->store->loop, &n->poll, pgfeed_socket(n->feed));
    n->poll.data = n;
    n->poll_open = true;
    uv_poll_start(&n->poll, UV_READABLE, on_feed);
    /* What committed while the feed was away (or before LISTEN); what was
     * said of sessions meanwhile is lost with the connection, so the
     * node's identity is made again from the database. */
    if (feed_drain(n) == 0 && atomic_exchange(&n->feed_down, false)) {
        log_msg(LOG_INFO, "the change feed from PostgreSQL is back at seq %lld",
                (long long)n->feed_last);
        if (n->store->auth_cb)
            n->store->auth_cb(n->store->auth_ctx, STORE_AUTH_RESYNC, "", NULL);
        presence_heard(n, "*");
    }
}

/* This node's own commit is read back before it is answered (one read of
 * the feed, which the commit's notification would have caused anyway). */
static void pgnode_catch_up(store_t *st, int64_t seq)
{
    pgnode *n = node_of(st);
    if (n->feed && n->feed_last < seq)
        feed_drain(n);
}

static int pgnode_start(store_t *st, err_t *err)
{
    pgnode *n = node_of(st);
    uv_timer_init(st->loop, &n->retry);
    n->retry.data = n;
    uv_timer_init(st->loop, &n->soon);
    n->soon.data = n;
    n->started = true;
    feed_start(n);
    return 0;
}

static bool pgnode_up(store_t *st, const char **why)
{
    pgnode *n = node_of(st);
    if (!atomic_load(&n->feed_down))
        return true;
    *why = "PostgreSQL cannot be reached";
    return false;
}

static void pgnode_stop(store_t *st)
{
    pgnode *n = node_of(st);
    if (!n || !n->started || n->closing)
        return;
    n->closing = true;
    if (n->feed) {
        uv_poll_stop(&n->poll);
        uv_close((uv_handle_t *)&n->poll, poll_closed);
    }
    uv_close((uv_handle_t *)&n->retry, NULL);
    uv_close((uv_handle_t *)&n->soon, NULL);
}

/* ------------------------------------------------------------------ the rest */

static int pgnode_prune(store_t *st, int64_t first, int64_t idem_before)
{
    pgnode *n = node_of(st);
    char a[24], b[24];
    const char *v1[] = {I64(a, first)};
    err_t e = {0};
    int rc = pq_do(n->w, "DELETE FROM changes WHERE seq < $1", 1, v1, &e);
    if (rc == 0 && idem_before > 0) {
        const char *v2[] = {I64(b, idem_before)};
        rc = pq_do(n->w, "DELETE FROM idempotency WHERE at < $1", 1, v2, &e);
    }
    err_clear(&e);
    return rc;
}

static void pgnode_close(store_t *st)
{
    pgnode *n = node_of(st);
    if (!n)
        return;
    pgfeed_close(n->feed);
    pg_close(n->w);
    for (int i = 0; i < n->nidle; i++)
        pg_close(n->idle[i]);
    free(n->idle);
    pthread_mutex_destroy(&n->rmu);
    pthread_cond_destroy(&n->rcv);
    pthread_mutex_destroy(&n->why_mu);
    free(n->conninfo);
    free(n);
    st->be_state = NULL;
}


static int pgnode_open(store_t *st, err_t *err)
{
    const store_opts *o = &st->opts;
    pgnode *n = xcalloc(1, sizeof *n);
    n->store = st;
    n->conninfo = xstrdup(o->postgres);
    snprintf(n->schema, sizeof n->schema, "%s", o->pg_schema ? o->pg_schema : "livedb");
    n->max = o->readers;
    n->idle = xcalloc((size_t)n->max, sizeof *n->idle);
    pthread_mutex_init(&n->rmu, NULL);
    pthread_cond_init(&n->rcv, NULL);
    pthread_mutex_init(&n->why_mu, NULL);
    st->be_state = n;
    st->feed_from_jobs = false;
    n->w = pg_open(n->conninfo, n->schema, err);
    if (!n->w)
        return -1;
    int64_t next_seq, next_aseq;
    unsigned char last_hash[32];
    if (pg_head(n->w, &next_seq, &next_aseq, last_hash, err))
        return -1;
    bool any = false;
    for (int i = 0; i < 32; i++)
        any = any || last_hash[i];
    txn_init(&st->txn, &pg_txn_methods, n->w, next_seq, next_aseq, any ? last_hash : NULL);
    /* The feed starts where the database stands: a node's subscribers
     * begin from there (a client resuming from before reads the table). */
    n->feed_last = next_seq - 1;
    atomic_store(&st->committed_seq, next_seq - 1);
    PGresult *r = pq(n->w, "SELECT coalesce(min(seq), 0) FROM changes", 0, NULL, err);
    if (!r)
        return -1;
    int64_t first = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    atomic_store(&st->first_seq, first ? first : next_seq);
    r = pq(n->w, "SELECT col, field FROM indexes", 0, NULL, err);
    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++)
        store_index_known(st, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
    PQclear(r);
    return 0;
}

const store_backend pg_backend = {
    .name = "postgres",
    .open = pgnode_open,
    .read = pg_read,
    .load_auth = pg_load_auth,
    .prune = pgnode_prune,
    .start = pgnode_start,
    .up = pgnode_up,
    .stop = pgnode_stop,
    .close = pgnode_close,
    .presence_say = pgnode_presence_say,
    .catch_up = pgnode_catch_up,
    .verify = pg_verify,
    .activity_each = pg_activity_each,
    .export_cols = pg_export,
};
