/*
 * pgnodes.c: the write path of livedb nodes over one PostgreSQL, without
 * HTTP: NODES threads, each a node's writer (its own connection, its own
 * txn_t over store/pg.c), commit groups of GROUP creates of ~190-byte
 * documents through core/txn.c for SECONDS, all into one schema, so that
 * every group takes the feed's head row in turn (seq order across nodes).
 *
 *   build/pgnodes CONNINFO NODES GROUP SECONDS [--own-schemas]
 *
 * --own-schemas gives each node a schema of its own: nothing is shared, no
 * head is waited for. It is not a design (the nodes' seqs collide); it is
 * the ceiling that the shared head is measured against.
 *
 * Prints: nodes=N group=G creates=C seconds=S creates_per_s=R groups_per_s=Q
 * and checks that the shared feed's seqs are 1..C with no gap.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "../src/store/pg.h"
#include "../src/util/util.h"

static const char *conninfo;
static int group_size;
static double seconds;
static bool own_schemas;
static atomic_long creates, groups, failures;
static atomic_bool stop;

typedef struct node {
    int i;
    char schema[64];
    pthread_t th;
} node;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *node_main(void *arg)
{
    node *n = arg;
    err_t e = {0};
    pgstore *pg = pg_open(conninfo, n->schema, &e);
    int64_t seq, aseq;
    unsigned char hash[32];
    if (!pg || pg_head(pg, &seq, &aseq, hash, &e)) {
        fprintf(stderr, "pgnodes: node %d: %s\n", n->i, e.msg);
        exit(1);
    }
    txn_t t;
    txn_init(&t, &pg_txn_methods, pg, seq, aseq, NULL);
    long k = 0;
    while (!atomic_load(&stop)) {
        wjob *first = NULL, **tail = &first;
        for (int g = 0; g < group_size; g++) {
            wjob *j = wjob_new(WJ_OPS, 1);
            j->actor.system = true;
            j->ops[0].kind = W_CREATE;
            snprintf(j->ops[0].col, sizeof j->ops[0].col, "bench_items");
            char id[48];
            snprintf(id, sizeof id, "n%d-%ld", n->i, k++);
            j->ops[0].id = xstrdup(id);
            j->ops[0].doc = json_pack("{sssssisiss}", "name", "Bench item with a longer name",
                                      "sku", id, "price_cents", 1299, "stock", 250, "category",
                                      "bench-category-of-items");
            *tail = j;
            tail = &j->next;
        }
        txn_prepare(&t, first);
        txn_run_group(&t, first);
        long ok = 0;
        for (wjob *j = first, *next; j; j = next) {
            next = j->next;
            ok += !j->err.code;
            if (j->err.code && !atomic_load(&stop))
                fprintf(stderr, "pgnodes: %s\n", j->err.msg);
            wjob_free(j);
        }
        atomic_fetch_add(&creates, ok);
        atomic_fetch_add(&failures, group_size - ok);
        atomic_fetch_add(&groups, 1);
    }
    pg_close(pg);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: pgnodes CONNINFO NODES GROUP SECONDS [--own-schemas]\n");
        return 2;
    }
    conninfo = argv[1];
    int nodes = atoi(argv[2]);
    group_size = atoi(argv[3]);
    seconds = atof(argv[4]);
    own_schemas = argc > 5 && strcmp(argv[5], "--own-schemas") == 0;
    if (nodes < 1 || nodes > 64 || group_size < 1 || seconds <= 0)
        return 2;
    node *ns = xcalloc((size_t)nodes, sizeof *ns);
    for (int i = 0; i < nodes; i++) {
        ns[i].i = i;
        snprintf(ns[i].schema, sizeof ns[i].schema, "pgnodes_%d_%d", (int)getpid(),
                 own_schemas ? i : 0);
    }
    /* Make the schema(s) before the clock starts. */
    for (int i = 0; i < (own_schemas ? nodes : 1); i++) {
        err_t e = {0};
        pgstore *p = pg_open(conninfo, ns[i].schema, &e);
        if (!p) {
            fprintf(stderr, "pgnodes: %s\n", e.msg);
            return 1;
        }
        pg_close(p);
    }
    double t0 = now_s();
    for (int i = 0; i < nodes; i++)
        pthread_create(&ns[i].th, NULL, node_main, &ns[i]);
    while (now_s() - t0 < seconds)
        usleep(10000);
    atomic_store(&stop, true);
    for (int i = 0; i < nodes; i++)
        pthread_join(ns[i].th, NULL);
    double secs = now_s() - t0;
    long c = atomic_load(&creates);
    int rc = 0;
    if (!own_schemas) {
        /* Every committed create is one change, seqs 1..c with no gap. */
        PGconn *pc = PQconnectdb(conninfo);
        char sql[200];
        snprintf(sql, sizeof sql, "SELECT count(*), min(seq), max(seq) FROM \"%s\".changes",
                 ns[0].schema);
        PGresult *r = PQexec(pc, sql);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || atol(PQgetvalue(r, 0, 0)) != c ||
            atol(PQgetvalue(r, 0, 1)) != 1 || atol(PQgetvalue(r, 0, 2)) != c) {
            fprintf(stderr, "pgnodes: the feed is not 1..%ld: count %s, min %s, max %s\n", c,
                    PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
            rc = 1;
        }
        PQclear(r);
        PQfinish(pc);
    }
    for (int i = 0; i < (own_schemas ? nodes : 1); i++) {
        err_t e = {0};
        pg_drop_schema(conninfo, ns[i].schema, &e);
        err_clear(&e);
    }
    printf("nodes=%d group=%d creates=%ld failed=%ld seconds=%.2f creates_per_s=%.0f"
           " groups_per_s=%.0f own_schemas=%d\n",
           nodes, group_size, c, atomic_load(&failures), secs, (double)c / secs,
           (double)atomic_load(&groups) / secs, own_schemas);
    free(ns);
    return rc;
}
