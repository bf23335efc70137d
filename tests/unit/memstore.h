/*
 * memstore.h: a store in memory behind core's txn_methods (core/txn.h),
 * for the unit tests of core/txn.c: what a write means must not depend on
 * SQLite.
 *
 * The whole state is one JSON object; a transaction and a savepoint each
 * keep a deep copy of it to go back to. Unique fields are enforced from
 * the apps' schemas (apps_col), as the SQLite store's unique indexes do.
 * find honours the conditions and the limit, in id order. Faults are the
 * tests' own (test_txn.c wraps any store's table).
 */
#ifndef LIVEDB_TEST_MEMSTORE_H
#define LIVEDB_TEST_MEMSTORE_H

#include <stdbool.h>

#include "../../src/core/txn.h"

typedef struct memstore {
    json_t *state;   /* {"cols":{COL:{ID:{"v","c","b"}}},"changes":[..],"activity":[..],
                        "idem":{..},"creds":{..},"sessions":{..}} */
    json_t *at_begin; /* the state when the transaction began (NULL: none) */
    json_t *at_savepoint;
} memstore;

extern const txn_methods memstore_methods;

memstore *memstore_new(void);
void memstore_free(memstore *m);
/* The stored row's body (borrowed), or NULL. */
const char *memstore_body(memstore *m, const char *col, const char *id);

#endif
