/*
 * slab.c: see slab.h.
 */
#include "slab.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#if SLAB_SANITIZED

void *slab_alloc(size_t n) { return xcalloc(1, n ? n : 1); }
void slab_free(void *p, size_t n)
{
    (void)n;
    free(p);
}
void slab_stats(size_t *slab_bytes, size_t *used_bytes) { *slab_bytes = *used_bytes = 0; }

#else

#define STEP 16
#define NCLASS (SLAB_MAX / STEP)
#define SLAB_BYTES (64 * 1024)

typedef struct freeobj {
    struct freeobj *next;
} freeobj;

typedef struct sclass {
    freeobj *free;
    char *fresh, *end; /* the newest slab's part never handed out */
} sclass;

static sclass classes[NCLASS];
static size_t slab_total, used_total;

static size_t class_size(size_t n) { return (n + STEP - 1) / STEP * STEP; }

void *slab_alloc(size_t n)
{
    if (n == 0 || n > SLAB_MAX)
        return xcalloc(1, n ? n : 1);
    size_t sz = class_size(n);
    sclass *c = &classes[sz / STEP - 1];
    void *p;
    if (c->free) {
        p = c->free;
        c->free = c->free->next;
    } else {
        if (c->fresh == NULL || (size_t)(c->end - c->fresh) < sz) {
            c->fresh = xmalloc(SLAB_BYTES);
            c->end = c->fresh + SLAB_BYTES / sz * sz;
            slab_total += SLAB_BYTES;
        }
        p = c->fresh;
        c->fresh += sz;
    }
    used_total += sz;
    return memset(p, 0, sz);
}

void slab_free(void *p, size_t n)
{
    if (!p)
        return;
    if (n == 0 || n > SLAB_MAX) {
        free(p);
        return;
    }
    size_t sz = class_size(n);
    sclass *c = &classes[sz / STEP - 1];
    freeobj *f = p;
    f->next = c->free;
    c->free = f;
    used_total -= sz;
}

void slab_stats(size_t *slab_bytes, size_t *used_bytes)
{
    *slab_bytes = slab_total;
    *used_bytes = used_total;
}

#endif
