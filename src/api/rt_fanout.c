/*
 * rt_fanout.c: each committed change to the live subscribers it concerns
 * (through the subscription index, core/subs.h), and new activity entries
 * to the _activity subscribers; readers that fall too far behind are
 * closed so that they resume.
 *
 * Frames: each message is one text frame. A change to many subscribers is
 * framed per distinct envelope (subscription id, op), and the frame's
 * bytes are shared by every connection they go to; the document's bytes
 * were encoded once, by the writer.
 */
#include "realtime_int.h"

typedef struct frame_blob {
    int refs;
    size_t len;
    char data[];
} frame_blob;

static void blob_unref(void *p)
{
    frame_blob *b = p;
    if (--b->refs == 0)
        free(b);
}

/* The frames of one change, by (subscription id, op): subscribers that
 * named their subscriptions alike (apps mostly do) get the very same bytes,
 * so a change is encoded once per distinct envelope, not per subscriber. */
#define FRAME_CACHE 8
typedef struct frame_cache {
    struct {
        const char *sub;
        sub_op op;
        frame_blob *blob;
    } e[FRAME_CACHE];
    int n;
    change_t *ch; /* the change they frame: a frame never goes out for another */
} frame_cache;

static void frame_cache_clear(frame_cache *fc)
{
    for (int i = 0; i < fc->n; i++)
        blob_unref(fc->e[i].blob);
    fc->n = 0;
    fc->ch = NULL;
}

/* A change message is its envelope (up to `"doc":`), the document and
 * "}"; a removal has no document. change_head composes the envelope in env
 * (the loop thread's, reused) and the frame's header in fh (*fl bytes),
 * and returns the payload's length. */
static buf_t env;

static size_t change_head(const char *sub, const change_t *ch, sub_op op, unsigned char fh[10],
                          size_t *fl)
{
    env.len = 0;
    buf_puts(&env, "{\"t\":\"change\",\"sub\":");
    buf_put_json_str(&env, sub, strlen(sub));
    buf_puts(&env, ",\"seq\":");
    buf_put_i64(&env, ch->seq);
    buf_puts(&env, ",\"op\":\"");
    buf_puts(&env, sub_op_name(op));
    buf_puts(&env, "\",\"id\":");
    buf_put_json_str(&env, ch->id, strlen(ch->id));
    if (op != SUBOP_REMOVED)
        buf_puts(&env, ",\"doc\":");
    size_t plen = env.len + (op == SUBOP_REMOVED ? 0 : ch->doc_len) + 1;
    *fl = ws_text_header(fh, plen);
    return plen;
}

/* The whole frame in one allocation, to be shared. */
static frame_blob *change_frame(const char *sub, change_t *ch, sub_op op)
{
    unsigned char fh[10];
    size_t fl, plen = change_head(sub, ch, op, fh, &fl);
    frame_blob *f = xmalloc(sizeof *f + fl + plen);
    f->refs = 1;
    f->len = fl + plen;
    char *p = f->data;
    memcpy(p, fh, fl);
    memcpy(p += fl, env.p, env.len);
    p += env.len;
    if (op != SUBOP_REMOVED) {
        memcpy(p, ch->doc, ch->doc_len);
        p += ch->doc_len;
    }
    *p = '}';
    return f;
}

/* The frame copied straight into one connection's output (catch-up: one
 * subscriber, nothing to share): one copy of the document, no allocation. */
static void change_frame_to(conn_t *c, const char *sub, const change_t *ch, sub_op op)
{
    unsigned char fh[10];
    size_t fl;
    change_head(sub, ch, op, fh, &fl);
    conn_out_copy(c, fh, fl);
    conn_out_copy(c, env.p, env.len);
    if (op != SUBOP_REMOVED)
        conn_out_copy(c, ch->doc, ch->doc_len);
    conn_out_copy(c, "}", 1);
}

/* The change message for u. fc (may be NULL) shares frames between the
 * subscribers of one change. */
void rt_send_change(rt_sub *u, change_t *ch, sub_op op, frame_cache *fc)
{
    rt_session *s = u->s;
    if (!rt_can_send(s))
        return;
    if (!fc) {
        change_frame_to(s->c, u->id, ch, op);
        metrics_add(M_WS_MESSAGES_OUT, 1);
        return;
    }
    frame_blob *f = NULL;
    if (fc) {
        INVARIANT(!fc->ch || fc->ch == ch); /* cleared between changes */
        fc->ch = ch;
    }
    for (int i = 0; fc && i < fc->n && !f; i++)
        if (fc->e[i].op == op && strcmp(fc->e[i].sub, u->id) == 0)
            f = fc->e[i].blob;
    if (!f) {
        f = change_frame(u->id, ch, op);
        if (fc && fc->n < FRAME_CACHE) {
            fc->e[fc->n].sub = u->id; /* lives while the change is fanned out */
            fc->e[fc->n].op = op;
            fc->e[fc->n++].blob = f;
            f->refs++;
        }
    } else {
        f->refs++;
    }
    conn_out_ref(s->c, f->data, f->len, blob_unref, f);
    metrics_add(M_WS_MESSAGES_OUT, 1);
}

/* ------------------------------------------------------------------ fan-out */

static void note_if_slow(struct realtime *rt, rt_session *s)
{
    if (!s->slow_noted && conn_out_pending(s->c) > rt->max_pending) {
        s->slow_noted = true;
        rt_list_add((void ***)&rt->slow, &rt->nslow, &rt->cap_slow, s);
        s->refs++;
    }
}

static void fan_one(sub_entry *e, change_t *ch, void *ctx)
{
    rt_sub *u = e->owner;
    if (u->state != SUB_LIVE || ch->seq <= u->pos || !rt_can_send(u->s))
        return;
    sub_op op = sub_op_of(e, ch);
    if (op != SUBOP_NONE) {
        rt_send_change(u, ch, op, ctx);
        note_if_slow(u->s->app->rt, u->s);
    }
    u->pos = ch->seq;
}

/* New activity entries to the admins subscribed to _activity. */
static void fan_activity(struct realtime *rt, activity_rec *list)
{
    for (activity_rec *a = list; a; a = a->next) {
        for (int i = 0; i < rt->nasubs; i++) {
            rt_sub *u = rt->asubs[i];
            if (u->state != SUB_LIVE || a->seq <= u->pos || !rt_can_send(u->s))
                continue;
            rt_send_activity(u, a->json, a->len, a->seq);
            note_if_slow(rt, u->s);
        }
    }
}

void realtime_on_commit(app_t *app, change_t *list, activity_rec *activity)
{
    struct realtime *rt = app->rt;
    for (activity_rec *a = activity; rt && a; a = a->next)
        if (a->seq > rt->last_aseq)
            rt->last_aseq = a->seq;
    if (!rt || !rt->nsessions)
        return;
    frame_cache fc = {0};
    for (change_t *ch = list; ch; ch = ch->next) {
        subs_each(&rt->index, ch, fan_one, &fc);
        frame_cache_clear(&fc);
    }
    if (rt->nasubs)
        fan_activity(rt, activity);
    /* Readers that fell too far behind resume instead of holding memory. */
    for (int i = 0; i < rt->nslow; i++) {
        rt_session *s = rt->slow[i];
        s->slow_noted = false;
        if (rt_can_send(s)) {
            metrics_add(M_WS_SLOW_CLOSED, 1);
            rt_session_close(s, WS_CLOSE_SLOW, "reading too slowly; resume with since");
        }
        rt_session_unref(s);
    }
    rt->nslow = 0;
}

void realtime_revoke(app_t *app, const actor_t *who)
{
    struct realtime *rt = app->rt;
    for (rt_session *s = rt->sessions, *next; s; s = next) {
        next = s->next;
        if (strcmp(s->who_id, who->id) == 0 &&
            (!who->session[0] || strcmp(s->who_session, who->session) == 0))
            rt_session_close(s, WS_CLOSE_ACCESS, "access changed: log in or subscribe again");
    }
}
