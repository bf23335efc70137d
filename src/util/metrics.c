/*
 * metrics.c: see metrics.h.
 */
#include "metrics.h"

#include <stdatomic.h>
#include <string.h>

#define MAX_BUCKETS 16

typedef enum { GAUGE, COUNTER, HISTOGRAM } mtype;

typedef struct mdef {
    const char *name;
    const char *help;
    mtype type;
    double bounds[MAX_BUCKETS]; /* upper bounds, ascending; 0 ends the list */
} mdef;

static const mdef defs[M__COUNT] = {
    [M_CONNECTIONS] = {"livedb_connections_open", "Open client connections.", GAUGE, {0}},
    [M_WRITER_QUEUE] = {"livedb_writer_queue_depth", "Write jobs waiting for the writer.", GAUGE,
                        {0}},
    [M_FEED_LAST_SEQ] = {"livedb_feed_last_seq", "Seq of the newest committed change.", GAUGE,
                         {0}},
    [M_WS_SESSIONS] = {"livedb_realtime_connections", "Open WebSocket connections.", GAUGE, {0}},
    [M_WS_SUBS] = {"livedb_realtime_subscriptions", "Open realtime subscriptions.", GAUGE, {0}},
    [M_CHANGES_COMMITTED] = {"livedb_changes_committed_total", "Changes committed.", COUNTER,
                             {0}},
    [M_GROUP_RERUNS] = {"livedb_commit_group_reruns_total",
                        "Groups run again with a savepoint per call: a server function"
                        " failed after a write.",
                        COUNTER, {0}},
    [M_WS_MESSAGES_OUT] = {"livedb_realtime_messages_total",
                           "Realtime messages sent (snapshots, changes, answers).", COUNTER, {0}},
    [M_WS_SLOW_CLOSED] = {"livedb_realtime_slow_closed_total",
                          "WebSocket connections closed with 4008 for reading too slowly.",
                          COUNTER, {0}},
    [M_REQUEST_SECONDS] = {"livedb_http_request_duration_seconds",
                           "Time from a whole request to its answer.", HISTOGRAM,
                           {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                            0.1, 0.25, 0.5, 1, 2.5, 10}},
    [M_COMMIT_SECONDS] = {"livedb_commit_duration_seconds",
                          "Time of one group commit, fsync included.", HISTOGRAM,
                          {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                           0.25, 1}},
    [M_COMMIT_BATCH] = {"livedb_commit_batch_size", "Jobs committed in one transaction.",
                        HISTOGRAM, {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}},
};

typedef struct mval {
    _Atomic int64_t value;              /* gauge, counter */
    _Atomic uint64_t buckets[MAX_BUCKETS + 1]; /* histogram (+Inf last) */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_micro;         /* sum in millionths */
} mval;

static mval vals[M__COUNT];

static const char *const route_names[ROUTE__COUNT] = {
    [ROUTE_NONE] = "none",         [ROUTE_DOC_GET] = "doc_get",
    [ROUTE_DOC_PUT] = "doc_put",   [ROUTE_DOC_PATCH] = "doc_patch",
    [ROUTE_DOC_DELETE] = "doc_delete", [ROUTE_LIST] = "list",
    [ROUTE_CREATE] = "create",     [ROUTE_BATCH] = "batch",
    [ROUTE_CHANGES] = "changes",   [ROUTE_HEALTH] = "health",
    [ROUTE_METRICS] = "metrics",   [ROUTE_REALTIME] = "realtime",
    [ROUTE_AUTH] = "auth",         [ROUTE_ACCOUNTS] = "accounts",
    [ROUTE_ACTIVITY] = "activity", [ROUTE_ADMIN] = "admin",
    [ROUTE_FN] = "fn",             [ROUTE_WEB] = "web",
};

const char *route_name(route_id r) { return route_names[r]; }

/* HTTP counters by route and status (100-599). */
static _Atomic uint64_t http_counts[ROUTE__COUNT][500];

void metrics_gauge_set(metric_id m, int64_t v)
{
    atomic_store_explicit(&vals[m].value, v, memory_order_relaxed);
}

void metrics_gauge_add(metric_id m, int64_t delta)
{
    atomic_fetch_add_explicit(&vals[m].value, delta, memory_order_relaxed);
}

void metrics_add(metric_id m, uint64_t n)
{
    atomic_fetch_add_explicit(&vals[m].value, (int64_t)n, memory_order_relaxed);
}

void metrics_observe(metric_id m, double v)
{
    const mdef *d = &defs[m];
    int i = 0;
    while (i < MAX_BUCKETS && d->bounds[i] != 0 && v > d->bounds[i])
        i++;
    if (i < MAX_BUCKETS && d->bounds[i] == 0)
        i = MAX_BUCKETS; /* +Inf */
    atomic_fetch_add_explicit(&vals[m].buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&vals[m].count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&vals[m].sum_micro, (uint64_t)(v * 1e6), memory_order_relaxed);
}

void metrics_http(route_id route, int status, double seconds)
{
    if (status >= 100 && status < 600)
        atomic_fetch_add_explicit(&http_counts[route][status - 100], 1, memory_order_relaxed);
    metrics_observe(M_REQUEST_SECONDS, seconds);
}

static void render_one(buf_t *out, metric_id m)
{
    const mdef *d = &defs[m];
    static const char *const types[] = {"gauge", "counter", "histogram"};
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", d->name, d->help, d->name, types[d->type]);
    if (d->type != HISTOGRAM) {
        buf_printf(out, "%s %lld\n", d->name,
                   (long long)atomic_load_explicit(&vals[m].value, memory_order_relaxed));
        return;
    }
    uint64_t cum = 0;
    for (int i = 0; i < MAX_BUCKETS && d->bounds[i] != 0; i++) {
        cum += atomic_load_explicit(&vals[m].buckets[i], memory_order_relaxed);
        buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", d->name, d->bounds[i],
                   (unsigned long long)cum);
    }
    cum += atomic_load_explicit(&vals[m].buckets[MAX_BUCKETS], memory_order_relaxed);
    buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", d->name, (unsigned long long)cum);
    buf_printf(out, "%s_sum %.6f\n%s_count %llu\n", d->name,
               (double)atomic_load_explicit(&vals[m].sum_micro, memory_order_relaxed) / 1e6,
               d->name, (unsigned long long)cum);
}

void metrics_render(buf_t *out)
{
    buf_puts(out, "# HELP livedb_http_requests_total HTTP requests answered, by route and status.\n"
                  "# TYPE livedb_http_requests_total counter\n");
    for (int r = 0; r < ROUTE__COUNT; r++)
        for (int s = 0; s < 500; s++) {
            uint64_t n = atomic_load_explicit(&http_counts[r][s], memory_order_relaxed);
            if (n)
                buf_printf(out, "livedb_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                           route_names[r], s + 100, (unsigned long long)n);
        }
    for (int m = 0; m < M__COUNT; m++)
        render_one(out, (metric_id)m);
}
