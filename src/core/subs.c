/*
 * subs.c: see subs.h.
 *
 * Keys: "COL" for the unpinned subscriptions of a collection, and
 * "COL\x1fFIELD\x1fVALUE" for pinned ones, VALUE being the pinned value in
 * a canonical text (so that 5 and 5.0, equal to the matcher, share a key).
 * Each collection also keeps the fields something is pinned on, with a
 * count, so that a change looks up only those.
 */
#include "subs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"

typedef struct pinfield {
    char *name;
    int refs;
    struct pinfield *next;
} pinfield;

/* The subscribers filed under one key, newest first. The key is kept once
 * a bucket, not once a subscriber (an idle connection should cost little). */
struct subs_bucket {
    sub_entry *head;
    size_t len;
    char key[];
};

typedef struct subs_col {
    int refs;
    pinfield *fields;
} subs_col;

void subs_init(subs_t *x)
{
    map_init(&x->buckets);
    map_init(&x->cols);
}

void subs_free(subs_t *x)
{
    size_t i = 0;
    const char *k;
    size_t kl;
    void *v;
    while (map_next(&x->cols, &i, &k, &kl, &v)) {
        subs_col *c = v;
        while (c->fields) {
            pinfield *f = c->fields;
            c->fields = f->next;
            free(f->name);
            free(f);
        }
        free(c);
    }
    map_free(&x->cols);
    map_free_values(&x->buckets);
}

/* A scalar that may be pinned, in canonical text; false for others. */
static bool value_key(buf_t *b, const json_t *v)
{
    if (json_is_string(v)) {
        buf_putc(b, 's');
        buf_put(b, json_string_value(v), json_string_length(v));
    } else if (json_is_integer(v)) {
        buf_putc(b, 'n');
        buf_put_i64(b, json_integer_value(v));
    } else if (json_is_real(v)) {
        double r = json_real_value(v);
        buf_putc(b, 'n');
        if (r == floor(r) && r >= -9223372036854775808.0 && r < 9223372036854775808.0)
            buf_put_i64(b, (int64_t)r);
        else
            buf_printf(b, "%.17g", r);
    } else if (json_is_boolean(v)) {
        buf_puts(b, json_is_true(v) ? "t" : "f");
    } else {
        return false;
    }
    return true;
}

static void bucket_key(buf_t *b, const char *col, const char *field, const json_t *v)
{
    buf_puts(b, col);
    if (field) {
        buf_putc(b, '\x1f');
        buf_puts(b, field);
        buf_putc(b, '\x1f');
        value_key(b, v);
    }
}

void subs_add(subs_t *x, sub_entry *e)
{
    buf_t key = {0};
    const char *field = NULL;
    json_t *idv = NULL;
    const json_t *value = NULL;
    if (e->doc_id) {
        field = "id";
        value = idv = json_string(e->doc_id);
    } else {
        const query_t *qs[2] = {e->where, e->rule_where};
        for (int k = 0; k < 2 && !field; k++) {
            for (int i = 0; qs[k] && i < qs[k]->nconds && !field; i++) {
                const qcond *c = &qs[k]->conds[i];
                buf_t probe = {0};
                if (c->op == Q_EQ && value_key(&probe, c->value)) {
                    field = c->field;
                    value = c->value;
                }
                buf_free(&probe);
            }
        }
    }
    bucket_key(&key, e->col, field, value);
    json_decref(idv);

    subs_col *c = map_get(&x->cols, e->col, strlen(e->col));
    if (!c) {
        c = xcalloc(1, sizeof *c);
        map_put(&x->cols, e->col, strlen(e->col), c);
    }
    c->refs++;
    if (field) {
        pinfield *f = c->fields;
        while (f && strcmp(f->name, field) != 0)
            f = f->next;
        if (!f) {
            f = xcalloc(1, sizeof *f);
            f->name = xstrdup(field);
            f->next = c->fields;
            c->fields = f;
        }
        f->refs++;
        e->pin_field = f->name;
    }
    subs_bucket *b = map_get(&x->buckets, key.p, key.len);
    if (!b) {
        b = xmalloc(sizeof *b + key.len + 1);
        b->head = NULL;
        b->len = key.len;
        memcpy(b->key, key.p, key.len + 1);
        map_put(&x->buckets, b->key, b->len, b);
    }
    buf_free(&key);
    e->bucket = b;
    e->prev = NULL;
    e->next = b->head;
    if (b->head)
        b->head->prev = e;
    b->head = e;
}

void subs_remove(subs_t *x, sub_entry *e)
{
    subs_bucket *b = e->bucket;
    if (!b)
        return;
    if (e->prev)
        e->prev->next = e->next;
    else
        b->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    if (!b->head) {
        map_del(&x->buckets, b->key, b->len);
        free(b);
    }
    subs_col *c = map_get(&x->cols, e->col, strlen(e->col));
    if (c && e->pin_field) {
        for (pinfield **pf = &c->fields; *pf; pf = &(*pf)->next) {
            if (strcmp((*pf)->name, e->pin_field) == 0) {
                if (--(*pf)->refs == 0) {
                    pinfield *dead = *pf;
                    *pf = dead->next;
                    free(dead->name);
                    free(dead);
                }
                break;
            }
        }
    }
    if (c && --c->refs == 0) {
        map_del(&x->cols, e->col, strlen(e->col));
        free(c);
    }
    e->bucket = NULL;
    e->pin_field = NULL;
    e->prev = e->next = NULL;
}

static void visit(subs_t *x, const char *key, size_t klen, change_t *ch,
                  void (*fn)(sub_entry *, change_t *, void *), void *ctx)
{
    subs_bucket *b = map_get(&x->buckets, key, klen);
    for (sub_entry *e = b ? b->head : NULL; e;) {
        sub_entry *next = e->next;
        fn(e, ch, ctx);
        e = next;
    }
}

void subs_each(subs_t *x, change_t *ch, void (*fn)(sub_entry *e, change_t *ch, void *ctx),
               void *ctx)
{
    subs_col *c = map_get(&x->cols, ch->col, strlen(ch->col));
    if (!c)
        return;
    visit(x, ch->col, strlen(ch->col), ch, fn, ctx);
    if (!c->fields)
        return;
    const json_t *doc, *prev;
    change_docs(ch, &doc, &prev);
    buf_t a = {0}, b = {0};
    for (pinfield *f = c->fields; f; f = f->next) {
        /* "id" is not in the parsed body when it is a delete: use ch->id. */
        json_t *idv = NULL;
        const json_t *va = NULL, *vb = NULL;
        if (strcmp(f->name, "id") == 0) {
            va = idv = json_string(ch->id);
        } else {
            va = doc ? query_field(doc, f->name) : NULL;
            vb = prev ? query_field(prev, f->name) : NULL;
        }
        a.len = b.len = 0;
        if (va) {
            bucket_key(&a, ch->col, f->name, va);
            visit(x, a.p, a.len, ch, fn, ctx);
        }
        if (vb) {
            bucket_key(&b, ch->col, f->name, vb);
            if (!va || a.len != b.len || memcmp(a.p, b.p, a.len) != 0)
                visit(x, b.p, b.len, ch, fn, ctx);
        }
        json_decref(idv);
    }
    buf_free(&a);
    buf_free(&b);
}

/* ------------------------------------------------------------------ ops */

bool sub_matches(const sub_entry *e, const json_t *doc)
{
    if (!doc)
        return false;
    if (e->where && !query_match(e->where, doc))
        return false;
    if (e->rule_where && !query_match(e->rule_where, doc))
        return false;
    return !e->visible || e->visible(e, doc);
}

sub_op sub_op_of(const sub_entry *e, change_t *ch)
{
    if (e->doc_id && strcmp(e->doc_id, ch->id) != 0)
        return SUBOP_NONE;
    bool before, after;
    if (!e->where && !e->rule_where && !e->visible) {
        /* The common case needs no parsing. */
        before = ch->prev != NULL;
        after = ch->doc != NULL;
    } else {
        const json_t *doc, *prev;
        change_docs(ch, &doc, &prev);
        before = sub_matches(e, prev);
        after = sub_matches(e, doc);
    }
    if (after)
        return before ? SUBOP_MODIFIED : SUBOP_ADDED;
    return before ? SUBOP_REMOVED : SUBOP_NONE;
}

const char *sub_op_name(sub_op op)
{
    static const char *const names[] = {"none", "added", "modified", "removed"};
    return names[op];
}
