/*
 * slab.h: small objects that live as long as a connection, packed.
 *
 * A connection, its WebSocket session and its subscriptions live for
 * hours; the request parser, JSON and reads made while it opens live for
 * microseconds. From one malloc heap, the long-lived land between the
 * short-lived, and when a thousand clients connect at once (after a
 * restart, say) the holes the short-lived leave stay resident for as long
 * as the connections do: 400 bytes a connection on top of their 1,100
 * (docs/BENCHMARKS.md). slab_alloc takes them from 64 KiB slabs of one
 * size class (16-byte steps up to SLAB_MAX), free lists reused first, no
 * header per object.
 *
 * The loop thread only: no locks. Slabs are kept for the next connections,
 * not returned. Under AddressSanitizer it is plain calloc and free, so
 * that a use after free is still caught.
 */
#ifndef LIVEDB_SLAB_H
#define LIVEDB_SLAB_H

#include <stddef.h>

#define SLAB_MAX 1024

/* 1 under AddressSanitizer: pools of this kind then step aside. */
#if defined(__SANITIZE_ADDRESS__)
#define SLAB_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLAB_SANITIZED 1
#endif
#endif
#ifndef SLAB_SANITIZED
#define SLAB_SANITIZED 0
#endif

/* Zeroed memory of n bytes (any n; above SLAB_MAX it is calloc). */
void *slab_alloc(size_t n);
/* Frees what slab_alloc(n) gave, with the same n. */
void slab_free(void *p, size_t n);
/* Bytes in slabs, and of those, bytes handed out (for /metrics, tests). */
void slab_stats(size_t *slab_bytes, size_t *used_bytes);

#endif
