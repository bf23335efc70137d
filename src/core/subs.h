/*
 * subs.h: which subscriptions a change concerns, and what it is to each.
 *
 * Subscriptions are indexed by collection, and where a filter pins a field
 * to one value (`status eq "pending"`, or one document's id) by that
 * value, so that a change costs in proportion to the subscribers it
 * concerns: those of its collection without a pin, plus those pinned to
 * the value the document had before or has after.
 *
 * What a change is to a subscriber follows from the document before and
 * after it (change_t keeps both): added (matches now, did not), modified
 * (matched and matches), removed (matched, and is deleted or no longer
 * matches), or nothing.
 *
 * Loop thread only.
 */
#ifndef LIVEDB_SUBS_H
#define LIVEDB_SUBS_H

#include <stdbool.h>

#include "feed.h"
#include "query.h"
#include "../util/map.h"

typedef enum sub_op { SUBOP_NONE, SUBOP_ADDED, SUBOP_MODIFIED, SUBOP_REMOVED } sub_op;

typedef struct sub_entry sub_entry;
typedef struct subs_bucket subs_bucket;
struct sub_entry {
    const char *col;        /* borrowed */
    const query_t *where;   /* borrowed; NULL: every document */
    const char *doc_id;     /* borrowed; NULL: any document */
    /* The read rule's conditions for this subscriber (e.g. partner_id ==
     * its account), borrowed, or NULL; they may pin it like where does. */
    const query_t *rule_where;
    /* What else the read rule wants checked, or NULL. */
    bool (*visible)(const sub_entry *e, const json_t *doc);
    void *owner;
    /* Set by subs_add. */
    subs_bucket *bucket;    /* what it is filed under */
    const char *pin_field;  /* NULL: unpinned */
    sub_entry *prev, *next;
};

typedef struct subs {
    map_t buckets;          /* key -> sub_entry* (list head) */
    map_t cols;             /* col -> struct subs_col* */
} subs_t;

void subs_init(subs_t *x);
void subs_free(subs_t *x);
/* Files e (its col, where, doc_id set) under the best key. */
void subs_add(subs_t *x, sub_entry *e);
void subs_remove(subs_t *x, sub_entry *e);

/* Calls fn for every subscription the change may concern. fn may not add
 * or remove subscriptions. */
void subs_each(subs_t *x, change_t *ch, void (*fn)(sub_entry *e, change_t *ch, void *ctx),
               void *ctx);

/* Whether doc is one e shows. */
bool sub_matches(const sub_entry *e, const json_t *doc);
/* What the change is to e. */
sub_op sub_op_of(const sub_entry *e, change_t *ch);
const char *sub_op_name(sub_op op);

#endif
