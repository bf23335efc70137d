/*
 * hub.h: where a commit and a revocation go (hub.c).
 *
 * The store hands each committed job's changes and activity entries to
 * hub_commit, on the loop thread, in commit order. The modules that follow
 * the data register with hub_listen when they start, and are called in the
 * order they registered: the change feed (changes.c: the ring, which
 * wakes long polls and event streams), realtime, snapshots. A revocation
 * (auth.c: a session or an account whose access changed) goes to the same
 * listeners. So no module that serves the data knows of the others, and
 * the hub knows none of them.
 */
#ifndef LIVEDB_HUB_H
#define LIVEDB_HUB_H

#include "../core/access.h"
#include "../core/feed.h"
#include "../core/txn.h"

struct app;

typedef struct hub_listener {
    /* Each may be NULL; app is the hub's. */
    void (*on_commit)(struct app *app, change_t *list, activity_rec *activity);
    void (*on_revoke)(struct app *app, const actor_t *who);
} hub_listener;

#define HUB_LISTENERS_MAX 8

typedef struct hub {
    struct app *app;
    const hub_listener *l[HUB_LISTENERS_MAX];
    int n;
} hub_t;

void hub_listen(hub_t *h, const hub_listener *l);
/* The store's commit callback (store_set_commit_cb); ctx is the hub. */
void hub_commit(void *hub, change_t *list, activity_rec *activity);
void hub_revoke(hub_t *h, const actor_t *who);

#endif
