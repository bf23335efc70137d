/*
 * test_feed.c: core/feed.c: change records, the ring and its waiters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/core/feed.h"
#include "harness.h"

#define AT "2026-01-02T03:04:05.678Z"

static change_t *mk(int64_t seq, const char *col)
{
    char id[32];
    snprintf(id, sizeof id, "d%lld", (long long)seq);
    return change_new(seq, col, id, CH_UPDATE, seq, "{\"x\":1}", 7, AT);
}

/* Appends seqs [from, to] of col one list at a time (batch of `per`),
 * dropping our own references. */
static void append_range(feed_t *f, int64_t from, int64_t to, int per, const char *const *cols,
                         int ncols)
{
    int64_t s = from;
    while (s <= to) {
        change_t *head = NULL, **tail = &head;
        for (int i = 0; i < per && s <= to; i++, s++) {
            change_t *ch = mk(s, cols[s % ncols]);
            *tail = ch;
            tail = &ch->next;
        }
        feed_append(f, head);
        while (head) {
            change_t *next = head->next;
            head->next = NULL;
            change_unref(head);
            head = next;
        }
    }
}

/* One feed_collect checked: the number of changes it returns, the seq of the
 * first (unless want_first is -1) and how far the answer covers (unless
 * want_cov is -1). Returns the number; the changes are left in out for
 * further checks, and a failure names the caller's line. */
#define CHECK_COLLECT(f, since, col, limit, out, want_n, want_first, want_cov)                    \
    check_collect((f), (since), (col), (limit), (out), (want_n), (want_first), (want_cov),        \
                  __FILE__, __LINE__)

static int check_collect(feed_t *f, int64_t since, const char *col, int limit, change_t **out,
                          int want_n, int64_t want_first, int64_t want_cov, const char *file,
                          int line)
{
    int64_t cov = -1;
    int n = feed_collect(f, since, col, limit, out, &cov);
    test_check_int(n, want_n, file, line, "feed_collect(...)", "want_n");
    if (want_first != -1)
        test_check_int(out[0]->seq, want_first, file, line, "out[0]->seq", "want_first");
    if (want_cov != -1)
        test_check_int(cov, want_cov, file, line, "cov", "want_cov");
    return n;
}

/* The ring holds seqs first..last; a failure names the caller's line. */
#define CHECK_HOLDS(f, first, last)                                                               \
    do {                                                                                          \
        test_check_int(feed_first(f), (first), __FILE__, __LINE__, "feed_first(" #f ")", #first); \
        test_check_int(feed_last(f), (last), __FILE__, __LINE__, "feed_last(" #f ")", #last);     \
    } while (0)

TEST(change_records)
{
    change_t *ch = change_new(12, "todos", "a\"b", CH_CREATE, 1, "{\"k\":[1,2]}", 11, AT);
    CHECK_STR(ch->json, "{\"seq\":12,\"col\":\"todos\",\"id\":\"a\\\"b\",\"op\":\"create\","
                        "\"version\":1,\"doc\":{\"k\":[1,2]},\"at\":\"" AT "\"}");
    CHECK_INT(ch->json_len, strlen(ch->json));
    CHECK_MEM(ch->doc, ch->doc_len, "{\"k\":[1,2]}", (size_t)11);
    CHECK(ch->doc > ch->json && ch->doc < ch->json + ch->json_len);
    CHECK_STR(ch->at, AT);
    CHECK_STR(ch->col, "todos");
    CHECK_INT(ch->refs, 1);
    CHECK(change_ref(ch) == ch);
    CHECK_INT(ch->refs, 2);
    change_unref(ch);
    change_unref(ch);
    change_unref(NULL);

    ch = change_new(13, "todos", "x", CH_DELETE, 4, NULL, 0, AT);
    CHECK_STR(ch->json, "{\"seq\":13,\"col\":\"todos\",\"id\":\"x\",\"op\":\"delete\","
                        "\"version\":4,\"doc\":null,\"at\":\"" AT "\"}");
    CHECK(ch->doc == NULL);
    CHECK_INT(ch->doc_len, 0);
    change_unref(ch);
    CHECK_STR(change_op_name(CH_UPDATE), "update");
}

TEST(ring_wraparound)
{
    static const char *const cols[] = {"a"};
    feed_t *f = feed_new(4);
    CHECK_INT(feed_last(f), 0);
    CHECK_INT(feed_first(f), 1);
    change_t *out[16];
    CHECK_COLLECT(f, 0, NULL, 16, out, 0, -1, 0);

    append_range(f, 1, 3, 1, cols, 1);
    CHECK_HOLDS(f, 1, 3);
    /* Wrap around several times, with single and batched appends. */
    append_range(f, 4, 10, 1, cols, 1);
    CHECK_HOLDS(f, 7, 10);
    append_range(f, 11, 17, 3, cols, 1);
    CHECK_HOLDS(f, 14, 17);
    /* A batch longer than the ring keeps its newest. */
    append_range(f, 18, 27, 10, cols, 1);
    CHECK_HOLDS(f, 24, 27);

    int n = CHECK_COLLECT(f, 23, NULL, 16, out, 4, -1, 27);
    for (int i = 0; i < n; i++) {
        CHECK_INT(out[i]->seq, 24 + i);
        CHECK_INT(out[i]->refs, 1); /* only the ring holds them */
    }
    feed_free(f);

    /* Capacity 1 (and 0, which means 1). */
    f = feed_new(0);
    append_range(f, 1, 5, 2, cols, 1);
    CHECK_INT(feed_first(f), 5);
    CHECK_COLLECT(f, 4, NULL, 16, out, 1, 5, -1);
    feed_free(f);
    feed_free(NULL);
}

TEST(collect_edges)
{
    static const char *const cols[] = {"a"};
    feed_t *f = feed_new(8);
    feed_set_last(f, 100);
    CHECK_INT(feed_last(f), 100);
    CHECK_INT(feed_first(f), 101);
    change_t *out[16];
    /* Empty ring at the start-up position. */
    CHECK_COLLECT(f, 100, NULL, 10, out, 0, -1, 100);

    append_range(f, 101, 110, 1, cols, 1); /* holds 103..110 */
    CHECK_INT(feed_first(f), 103);
    /* since = first - 1: everything held. */
    CHECK_COLLECT(f, 102, NULL, 16, out, 8, 103, 110);
    CHECK_INT(out[7]->seq, 110);
    /* since = first: all but the first. */
    CHECK_COLLECT(f, 103, NULL, 16, out, 7, 104, -1);
    /* since inside. */
    CHECK_COLLECT(f, 107, NULL, 16, out, 3, 108, 110);
    /* since = last - 1, last, beyond. */
    CHECK_COLLECT(f, 109, NULL, 16, out, 1, 110, 110);
    CHECK_COLLECT(f, 110, NULL, 16, out, 0, -1, 110);
    CHECK_COLLECT(f, 111, NULL, 16, out, 0, -1, 111); /* covers only what was asked */
    /* limit: the answer covers up to the last change returned. */
    CHECK_COLLECT(f, 102, NULL, 3, out, 3, -1, 105);
    CHECK_INT(out[2]->seq, 105);
    CHECK_COLLECT(f, 105, NULL, 3, out, 3, 106, 108);
    CHECK_COLLECT(f, 108, NULL, 3, out, 2, -1, 110);
    feed_free(f);
}

TEST(collect_col_filter)
{
    /* seq % 3: 0 -> "b", 1 -> "a", 2 -> "c" */
    static const char *const cols[] = {"b", "a", "c"};
    feed_t *f = feed_new(6);
    append_range(f, 1, 10, 4, cols, 3); /* holds 5..10: c a b c a b... */
    CHECK_INT(feed_first(f), 5);
    change_t *out[16];
    CHECK_COLLECT(f, 4, "a", 16, out, 2, 7, 10);
    CHECK_INT(out[1]->seq, 10);
    /* Changes of other collections after the last match are still covered. */
    CHECK_COLLECT(f, 4, "c", 16, out, 2, 5, 10);
    CHECK_INT(out[1]->seq, 8);
    /* With a limit, coverage stops at the last one returned. */
    CHECK_COLLECT(f, 4, "b", 1, out, 1, 6, 6);
    CHECK_COLLECT(f, 6, "b", 1, out, 1, 9, 9);
    /* No match at all: covered to the end anyway. */
    CHECK_COLLECT(f, 4, "zz", 16, out, 0, -1, 10);
    /* A prefix of a name is another name. */
    CHECK_COLLECT(f, 4, "", 16, out, 0, -1, -1);
    feed_free(f);
}

typedef struct counter {
    feed_waiter w;
    int woken;
    feed_t *f;
    int rewait; /* times to wait again from inside wake */
    int64_t seen_last;
} counter;

static void on_wake(feed_waiter *w)
{
    counter *c = (counter *)w;
    c->woken++;
    c->seen_last = feed_last(c->f);
    CHECK(!w->linked);
    if (c->rewait > 0) {
        c->rewait--;
        feed_wait(c->f, w);
    }
}

TEST(waiters)
{
    static const char *const cols[] = {"a"};
    feed_t *f = feed_new(4);
    counter c1 = {.w.wake = on_wake, .f = f}, c2 = c1, c3 = c1;
    feed_wait(f, &c1.w);
    feed_wait(f, &c2.w);
    feed_wait(f, &c2.w); /* twice is once */
    feed_wait(f, &c3.w);
    CHECK(c1.w.linked && c2.w.linked && c3.w.linked);
    feed_unwait(f, &c2.w);
    CHECK(!c2.w.linked);
    feed_unwait(f, &c2.w); /* twice is harmless */

    /* A batch of three changes wakes each waiter once, after all are in. */
    append_range(f, 1, 3, 3, cols, 1);
    CHECK_INT(c1.woken, 1);
    CHECK_INT(c2.woken, 0);
    CHECK_INT(c3.woken, 1);
    CHECK_INT(c1.seen_last, 3);
    CHECK(!c1.w.linked && !c3.w.linked);
    /* Woken waiters are removed: the next append wakes nobody. */
    append_range(f, 4, 4, 1, cols, 1);
    CHECK_INT(c1.woken, 1);
    CHECK_INT(c3.woken, 1);
    /* An empty append wakes nobody. */
    feed_wait(f, &c1.w);
    feed_append(f, NULL);
    CHECK_INT(c1.woken, 1);
    CHECK(c1.w.linked);

    /* A waiter that waits again from inside wake is woken once per append,
     * not in a loop, and is linked again afterwards. */
    c3.rewait = 2;
    feed_wait(f, &c3.w);
    append_range(f, 5, 5, 1, cols, 1);
    CHECK_INT(c1.woken, 2);
    CHECK_INT(c3.woken, 2);
    CHECK(c3.w.linked);
    append_range(f, 6, 6, 1, cols, 1);
    CHECK_INT(c3.woken, 3);
    CHECK(c3.w.linked);
    append_range(f, 7, 7, 1, cols, 1);
    CHECK_INT(c3.woken, 4);
    CHECK(!c3.w.linked);
    CHECK_INT(c1.woken, 2);

    /* Removing one in the middle of three keeps the others. */
    feed_wait(f, &c1.w);
    feed_wait(f, &c2.w);
    feed_wait(f, &c3.w);
    feed_unwait(f, &c2.w);
    append_range(f, 8, 8, 1, cols, 1);
    CHECK_INT(c1.woken, 3);
    CHECK_INT(c2.woken, 0);
    CHECK_INT(c3.woken, 5);
    /* Removing the only one. */
    feed_wait(f, &c2.w);
    feed_unwait(f, &c2.w);
    append_range(f, 9, 9, 1, cols, 1);
    CHECK_INT(c2.woken, 0);
    feed_free(f);
}

/* A waiter that removes another pending waiter from inside its wake. */
typedef struct killer {
    feed_waiter w;
    feed_t *f;
    counter *victim;
    int woken;
} killer;

static void on_wake_kill(feed_waiter *w)
{
    killer *k = (killer *)w;
    k->woken++;
    feed_unwait(k->f, &k->victim->w);
}

TEST(waiter_removed_during_wake)
{
    static const char *const cols[] = {"a"};
    feed_t *f = feed_new(4);
    counter victim = {.w.wake = on_wake, .f = f};
    killer k = {.w.wake = on_wake_kill, .f = f, .victim = &victim};
    feed_wait(f, &k.w);
    feed_wait(f, &victim.w);
    append_range(f, 1, 1, 1, cols, 1);
    CHECK_INT(k.woken, 1);
    /* The victim was unlinked before its turn: it is not woken, and the
     * feed's own list is intact. */
    CHECK_INT(victim.woken, 0);
    CHECK(!victim.w.linked);
    feed_wait(f, &victim.w);
    append_range(f, 2, 2, 1, cols, 1);
    CHECK_INT(victim.woken, 1);
    feed_free(f);
}
