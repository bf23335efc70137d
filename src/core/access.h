/*
 * access.h: who is asking (an actor), and what the apps' rules let them
 * read and write.
 *
 * One place decides access for every path data takes: document reads and
 * lists (api/docs.c, store/sqlite.c), writes (checked by the writer, which
 * holds the stored document), the change feed, and realtime subscriptions.
 * The admin role, and the server's own work (system), may do everything;
 * every other role may do what its collection's rule allows, and nothing
 * in a collection no app declares.
 */
#ifndef LIVEDB_ACCESS_H
#define LIVEDB_ACCESS_H

#include <stdbool.h>

#include <jansson.h>

#include "apps.h"
#include "doc.h"
#include "feed.h"
#include "query.h"
#include "rules.h"

typedef struct actor {
    char id[DOC_ID_MAX + 1]; /* account id; "" when anonymous */
    char role[33];
    char email[255];
    char session[17];        /* the session's id (never its token) */
    char remote[64];         /* the client's address */
    bool system;             /* the server's own work: no rules apply */
} actor_t;

/* The object rules see as `auth`: {"id","role","email"}, or null. */
json_t *actor_auth(const actor_t *a);
bool actor_is_admin(const actor_t *a);

/* Whether a may read doc (a whole document) of col. */
bool access_can_read(const actor_t *a, const json_t *auth, const char *col, const json_t *doc);

/* Whether a change belongs in a's feed: a may read the document after it
 * (for a delete, before it). Parses the change's documents (see
 * change_docs: on one thread at a time). */
bool access_change_visible(const actor_t *a, const json_t *auth, change_t *ch);

/* Read access to a whole collection, for lists, feeds and subscriptions:
 *   ACCESS_ALL   everything (no filter)
 *   ACCESS_NONE  nothing
 *   ACCESS_SOME  documents the residual rule accepts; its equalities on
 *                document fields are added to q when q is not NULL (so
 *                that SQL filters and realtime pins use them), and
 *                *post (rule_free it) is what must still be checked on
 *                each document, or NULL when the conditions say it all. */
typedef enum { ACCESS_NONE, ACCESS_SOME, ACCESS_ALL } access_scope;
access_scope access_read_scope(const actor_t *a, const char *col, query_t *q, rule_t **post);

#endif
