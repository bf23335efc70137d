/*
 * feed.c: change records and the ring of recent changes.
 */
#include "feed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"

static const char *const op_names[] = {"create", "update", "delete"};

const char *change_op_name(change_op op) { return op_names[op]; }

change_t *change_new(int64_t seq, const char *col, const char *id, change_op op,
                     int64_t version, const char *doc, size_t doc_len, const char *at)
{
    change_t *ch = xcalloc(1, sizeof *ch);
    ch->refs = 1;
    ch->seq = seq;
    ch->version = version;
    ch->op = op;
    ch->col = xstrdup(col);
    ch->id = xstrdup(id);
    snprintf(ch->at, sizeof ch->at, "%s", at);

    buf_t b = {0};
    buf_reserve(&b, doc_len + strlen(col) + strlen(id) + 128);
    buf_puts(&b, "{\"seq\":");
    buf_put_i64(&b, seq);
    buf_puts(&b, ",\"col\":");
    buf_put_json_str(&b, col, strlen(col));
    buf_puts(&b, ",\"id\":");
    buf_put_json_str(&b, id, strlen(id));
    buf_puts(&b, ",\"op\":\"");
    buf_puts(&b, op_names[op]);
    buf_puts(&b, "\",\"version\":");
    buf_put_i64(&b, version);
    buf_puts(&b, ",\"doc\":");
    size_t doc_off = b.len;
    if (doc)
        buf_put(&b, doc, doc_len);
    else
        buf_puts(&b, "null");
    buf_puts(&b, ",\"at\":\"");
    buf_puts(&b, at);
    buf_puts(&b, "\"}");
    ch->json = buf_take(&b, &ch->json_len);
    if (doc) {
        ch->doc = ch->json + doc_off;
        ch->doc_len = doc_len;
    }
    return ch;
}

void change_set_prev(change_t *ch, const char *prev, size_t len)
{
    free(ch->prev);
    ch->prev = prev ? xstrndup(prev, len) : NULL;
    ch->prev_len = prev ? len : 0;
}

void change_docs(change_t *ch, const json_t **doc, const json_t **prev)
{
    if (!ch->parsed) {
        /* Stored text the writer composed: valid JSON, parsed without
         * the checks a client's text needs. */
        if (ch->doc)
            ch->jdoc = json_loadb(ch->doc, ch->doc_len, 0, NULL);
        if (ch->prev)
            ch->jprev = json_loadb(ch->prev, ch->prev_len, 0, NULL);
        ch->parsed = true;
    }
    *doc = ch->jdoc;
    *prev = ch->jprev;
}

change_t *change_ref(change_t *ch)
{
    ch->refs++;
    return ch;
}

void change_unref(change_t *ch)
{
    if (!ch || --ch->refs > 0)
        return;
    free(ch->col);
    free(ch->id);
    free(ch->json);
    free(ch->prev);
    json_decref(ch->jdoc);
    json_decref(ch->jprev);
    free(ch);
}

/* ------------------------------------------------------------------ ring */

struct feed {
    change_t **ring;
    size_t cap;
    size_t count;
    size_t head;   /* index of the oldest */
    int64_t last;  /* seq of the newest appended (or set) */
    feed_waiter waiters; /* sentinel of a circular list */
};

feed_t *feed_new(size_t capacity)
{
    feed_t *f = xcalloc(1, sizeof *f);
    f->cap = capacity ? capacity : 1;
    f->ring = xcalloc(f->cap, sizeof *f->ring);
    f->waiters.next = f->waiters.prev = &f->waiters;
    return f;
}

void feed_free(feed_t *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->count; i++)
        change_unref(f->ring[(f->head + i) % f->cap]);
    free(f->ring);
    free(f);
}

void feed_set_last(feed_t *f, int64_t seq) { f->last = seq; }

int64_t feed_last(const feed_t *f) { return f->last; }

int64_t feed_first(const feed_t *f)
{
    return f->count ? f->ring[f->head]->seq : f->last + 1;
}

void feed_append(feed_t *f, change_t *list)
{
    if (!list)
        return;
    for (change_t *ch = list; ch; ch = ch->next) {
        if (f->count == f->cap) {
            change_unref(f->ring[f->head]);
            f->head = (f->head + 1) % f->cap;
            f->count--;
        }
        f->ring[(f->head + f->count) % f->cap] = change_ref(ch);
        f->count++;
        f->last = ch->seq;
    }
    /* Wake every waiter once. A woken waiter may wait again from inside
     * wake, so detach the list first. */
    feed_waiter pending = {0};
    if (f->waiters.next == &f->waiters)
        return;
    pending.next = f->waiters.next;
    pending.prev = f->waiters.prev;
    pending.next->prev = &pending;
    pending.prev->next = &pending;
    f->waiters.next = f->waiters.prev = &f->waiters;
    while (pending.next != &pending) {
        feed_waiter *w = pending.next;
        pending.next = w->next;
        w->next->prev = &pending;
        w->next = w->prev = NULL;
        w->linked = 0;
        w->wake(w);
    }
}

int feed_collect(const feed_t *f, int64_t since, const char *col, int limit, change_t **out,
                 int64_t *covered)
{
    int n = 0;
    *covered = since;
    if (f->count == 0 || since >= f->last) {
        if (since < f->last)
            *covered = f->last;
        return 0;
    }
    int64_t first = f->ring[f->head]->seq;
    size_t start = since < first ? 0 : (size_t)(since - first + 1);
    for (size_t i = start; i < f->count && n < limit; i++) {
        change_t *ch = f->ring[(f->head + i) % f->cap];
        *covered = ch->seq;
        if (col && strcmp(ch->col, col) != 0)
            continue;
        out[n++] = ch;
    }
    return n;
}

void feed_wait(feed_t *f, feed_waiter *w)
{
    if (w->linked)
        return;
    w->next = &f->waiters;
    w->prev = f->waiters.prev;
    f->waiters.prev->next = w;
    f->waiters.prev = w;
    w->linked = 1;
}

void feed_unwait(feed_t *f, feed_waiter *w)
{
    (void)f;
    if (!w->linked)
        return;
    w->prev->next = w->next;
    w->next->prev = w->prev;
    w->next = w->prev = NULL;
    w->linked = 0;
}
