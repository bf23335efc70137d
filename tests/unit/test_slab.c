/*
 * test_slab.c: util/slab.c, the pool of connections' long-lived objects.
 */
#include <stdint.h>
#include <string.h>

#include "../../src/util/slab.h"
#include "harness.h"

TEST(slab_gives_zeroed_distinct_memory_and_reuses_what_is_freed)
{
    enum { N = 5000 }; /* several slabs of each size */
    static unsigned char *p[N];
    static const size_t sizes[] = {1, 15, 16, 17, 100, 432, 1024};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        for (int i = 0; i < N; i++) {
            p[i] = slab_alloc(n);
            bool zero = true;
            for (size_t j = 0; j < n; j++)
                zero = zero && p[i][j] == 0;
            CHECK(zero);
            memset(p[i], 0xA5, n); /* dirty, for the next round's check */
            if (i > 0 && n >= 16) /* no overlap with the one before */
                CHECK(p[i] + n <= p[i - 1] || p[i - 1] + n <= p[i]);
        }
        size_t slabs0, used0;
        slab_stats(&slabs0, &used0);
        for (int i = 0; i < N; i += 2)
            slab_free(p[i], n);
        /* What was freed comes back (zeroed), before any new slab. */
        for (int i = 0; i < N; i += 2) {
            p[i] = slab_alloc(n);
            CHECK(p[i][0] == 0 && p[i][n - 1] == 0);
        }
        size_t slabs1, used1;
        slab_stats(&slabs1, &used1);
        CHECK_INT(slabs1, slabs0);
        CHECK_INT(used1, used0);
        for (int i = 0; i < N; i++)
            slab_free(p[i], n);
    }
}

TEST(slab_sizes_past_its_classes_are_plain_allocations)
{
    unsigned char *big = slab_alloc(SLAB_MAX + 1);
    CHECK(big[0] == 0 && big[SLAB_MAX] == 0);
    slab_free(big, SLAB_MAX + 1);
    slab_free(NULL, 100); /* nothing */
    unsigned char *none = slab_alloc(0);
    CHECK(none != NULL);
    slab_free(none, 0);
}
