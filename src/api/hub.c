/*
 * hub.c: the commit and revocation fan-out to the modules that registered
 * (see hub.h).
 */
#include "hub.h"

#include "api.h"

void hub_listen(app_t *app, const hub_listener *l)
{
    if (NEVER(app->nlisteners == HUB_LISTENERS_MAX))
        return;
    app->listeners[app->nlisteners++] = l;
}

void hub_commit(void *appv, change_t *list, activity_rec *activity)
{
    app_t *app = appv;
    for (int i = 0; i < app->nlisteners; i++)
        if (app->listeners[i]->on_commit)
            app->listeners[i]->on_commit(app, list, activity);
}

void hub_revoke(app_t *app, const actor_t *who)
{
    for (int i = 0; i < app->nlisteners; i++)
        if (app->listeners[i]->on_revoke)
            app->listeners[i]->on_revoke(app, who);
}
