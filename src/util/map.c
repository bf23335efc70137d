/*
 * map.c: see map.h.
 */
#include "map.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

static char tomb;
#define MAP_TOMB (&tomb)

static size_t hash_bytes(const char *s, size_t n)
{
    /* FNV-1a, 64-bit: keys are short (names and small JSON values). */
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return (size_t)h;
}

void map_init(map_t *m) { memset(m, 0, sizeof *m); }

void map_free(map_t *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key && m->slots[i].key != MAP_TOMB)
            free(m->slots[i].key);
    free(m->slots);
    map_init(m);
}

void map_free_values(map_t *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key && m->slots[i].key != MAP_TOMB)
            free(m->slots[i].value);
    map_free(m);
}

static map_slot *find(const map_t *m, const char *key, size_t klen, size_t h)
{
    if (!m->cap)
        return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        map_slot *s = &m->slots[i];
        if (!s->key)
            return NULL;
        if (s->key != MAP_TOMB && s->hash == h && s->klen == klen &&
            memcmp(s->key, key, klen) == 0)
            return s;
    }
}

static void grow(map_t *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    /* Mostly tombstones: rehash at the same size. */
    if (m->count * 4 < m->cap)
        cap = m->cap;
    map_slot *old = m->slots;
    size_t ocap = m->cap;
    m->slots = xcalloc(cap, sizeof *m->slots);
    m->cap = cap;
    m->used = m->count;
    for (size_t i = 0; i < ocap; i++) {
        map_slot *s = &old[i];
        if (!s->key || s->key == MAP_TOMB)
            continue;
        size_t j = s->hash & (cap - 1);
        while (m->slots[j].key)
            j = (j + 1) & (cap - 1);
        m->slots[j] = *s;
    }
    free(old);
}

void *map_get(const map_t *m, const char *key, size_t klen)
{
    map_slot *s = find(m, key, klen, hash_bytes(key, klen));
    return s ? s->value : NULL;
}

void map_put(map_t *m, const char *key, size_t klen, void *value)
{
    size_t h = hash_bytes(key, klen);
    map_slot *s = find(m, key, klen, h);
    if (s) {
        s->value = value;
        return;
    }
    if ((m->used + 1) * 4 > m->cap * 3)
        grow(m);
    size_t i = h & (m->cap - 1);
    while (m->slots[i].key && m->slots[i].key != MAP_TOMB)
        i = (i + 1) & (m->cap - 1);
    if (!m->slots[i].key)
        m->used++;
    m->slots[i] = (map_slot){.key = xstrndup(key, klen), .klen = klen, .hash = h, .value = value};
    m->count++;
}

void *map_del(map_t *m, const char *key, size_t klen)
{
    map_slot *s = find(m, key, klen, hash_bytes(key, klen));
    if (!s)
        return NULL;
    void *v = s->value;
    free(s->key);
    s->key = MAP_TOMB;
    s->value = NULL;
    m->count--;
    return v;
}

int map_next(const map_t *m, size_t *i, const char **key, size_t *klen, void **value)
{
    for (; *i < m->cap; (*i)++) {
        map_slot *s = &m->slots[*i];
        if (s->key && s->key != MAP_TOMB) {
            *key = s->key;
            *klen = s->klen;
            *value = s->value;
            (*i)++;
            return 1;
        }
    }
    return 0;
}
