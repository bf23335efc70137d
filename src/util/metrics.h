/*
 * metrics.h: counters, gauges and histograms, rendered in the Prometheus
 * text format at GET /metrics.
 *
 * Every update is a relaxed atomic add, so any thread may record without a
 * lock; a scrape reads each number once and may see a histogram mid-way
 * through an update, which Prometheus tolerates.
 */
#ifndef LIVEDB_METRICS_H
#define LIVEDB_METRICS_H

#include <stdint.h>

#include "util.h"

typedef enum metric_id {
    /* gauges */
    M_CONNECTIONS,
    M_WRITER_QUEUE,
    M_FEED_LAST_SEQ,
    M_WS_SESSIONS,
    M_WS_SUBS,
    /* counters */
    M_CHANGES_COMMITTED,
    M_GROUP_RERUNS,
    M_WS_MESSAGES_OUT,
    M_WS_SLOW_CLOSED,
    /* histograms */
    M_REQUEST_SECONDS,
    M_COMMIT_SECONDS,
    M_COMMIT_BATCH,
    M__COUNT
} metric_id;

/* HTTP routes, the `route` label of livedb_http_requests_total. */
typedef enum route_id {
    ROUTE_NONE, /* no route matched, or the request was malformed */
    ROUTE_DOC_GET,
    ROUTE_DOC_PUT,
    ROUTE_DOC_PATCH,
    ROUTE_DOC_DELETE,
    ROUTE_LIST,
    ROUTE_CREATE,
    ROUTE_BATCH,
    ROUTE_CHANGES,
    ROUTE_HEALTH,
    ROUTE_METRICS,
    ROUTE_REALTIME,
    ROUTE_AUTH,
    ROUTE_ACCOUNTS,
    ROUTE_ACTIVITY,
    ROUTE_ADMIN,
    ROUTE_FN,
    ROUTE_WEB,
    ROUTE__COUNT
} route_id;

const char *route_name(route_id r);

void metrics_gauge_set(metric_id m, int64_t v);
void metrics_gauge_add(metric_id m, int64_t delta);
void metrics_add(metric_id m, uint64_t n);
void metrics_observe(metric_id m, double v);
void metrics_http(route_id route, int status, double seconds);
void metrics_render(buf_t *out);

#endif
