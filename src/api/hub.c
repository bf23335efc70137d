/*
 * hub.c: the commit and revocation fan-out to the modules that registered
 * (see hub.h).
 */
#include "hub.h"

void hub_listen(hub_t *h, const hub_listener *l)
{
    if (NEVER(h->n == HUB_LISTENERS_MAX))
        return;
    h->l[h->n++] = l;
}

void hub_commit(void *hub, change_t *list, activity_rec *activity)
{
    hub_t *h = hub;
    for (int i = 0; i < h->n; i++)
        if (h->l[i]->on_commit)
            h->l[i]->on_commit(h->app, list, activity);
}

void hub_revoke(hub_t *h, const actor_t *who)
{
    for (int i = 0; i < h->n; i++)
        if (h->l[i]->on_revoke)
            h->l[i]->on_revoke(h->app, who);
}
