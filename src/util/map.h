/*
 * map.h: a hash map from byte-string keys to pointers.
 *
 * Open addressing with linear probing, keys copied in, values borrowed.
 * Used by the realtime index (collection -> subscribers, pinned value ->
 * subscribers), where lookups happen once per change and must not depend
 * on how many keys there are.
 */
#ifndef LIVEDB_MAP_H
#define LIVEDB_MAP_H

#include <stddef.h>

typedef struct map_slot {
    char *key; /* NULL: empty; MAP_TOMB: deleted */
    size_t klen;
    size_t hash;
    void *value;
} map_slot;

typedef struct map {
    map_slot *slots;
    size_t cap;   /* a power of two, or 0 */
    size_t count; /* live keys */
    size_t used;  /* live keys and tombstones */
} map_t;

void map_init(map_t *m);
/* Frees the keys and the table, not the values. */
void map_free(map_t *m);
/* The same, and free() on every value (maps that own malloc'd values). */
void map_free_values(map_t *m);
void *map_get(const map_t *m, const char *key, size_t klen);
/* Sets key to value (value must not be NULL). */
void map_put(map_t *m, const char *key, size_t klen, void *value);
/* Removes key; returns its value or NULL. */
void *map_del(map_t *m, const char *key, size_t klen);

/* Iteration: for (size_t i = 0; map_next(m, &i, &k, &kl, &v);) */
int map_next(const map_t *m, size_t *i, const char **key, size_t *klen, void **value);

#endif
