/*
 * rt_subs.c: subscriptions: subscribe and unsubscribe, the read rule per
 * subscriber, and the states a subscription moves through (see
 * realtime.c): the snapshot read and sent in chunks, catch-up from the ring
 * or the changes table, live; and the _activity log's subscriptions.
 */
#include "realtime_int.h"

#include "../util/slab.h"

/* ------------------------------------------------------------------ subscriptions */

static rt_sub *sub_ref(rt_sub *u)
{
    u->refs++;
    return u;
}

static void sub_unref(rt_sub *u)
{
    if (--u->refs > 0)
        return;
    rjob_free(u->snap);
    /* The index's entry borrows them; the subscription owns them. */
    query_t *where = (query_t *)u->e.where, *rule_where = (query_t *)u->e.rule_where;
    if (where) {
        query_free(where);
        free(where);
    }
    if (rule_where) {
        query_free(rule_where);
        free(rule_where);
    }
    rule_free(u->rule_post);
    free((char *)u->e.doc_id);
    slab_free(u, sizeof *u + strlen(u->id) + strlen(u->e.col) + 2);
}

/* The small arrays of system subscriptions (and slow sessions). */
void rt_list_add(void ***v, int *n, int *cap, void *x)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *v = xrealloc(*v, (size_t)*cap * sizeof **v);
    }
    (*v)[(*n)++] = x;
}

static void list_remove(void **v, int *n, void *x)
{
    for (int i = 0; i < *n; i++)
        if (v[i] == x) {
            v[i] = v[--*n];
            return;
        }
}

/* Ends a subscription: out of the index and the session's list. */
void rt_sub_end(rt_sub *u)
{
    if (u->dead)
        return;
    u->dead = true;
    app_t *app = u->s->app;
    if (u->indexed)
        subs_remove(&app->rt->index, &u->e);
    if (u->presence)
        list_remove((void **)app->rt->psubs, &app->rt->npsubs, u);
    if (u->activity)
        list_remove((void **)app->rt->asubs, &app->rt->nasubs, u);
    for (rt_sub **p = &u->s->subs; *p; p = &(*p)->next)
        if (*p == u) {
            *p = u->next;
            break;
        }
    u->s->nsubs--;
    metrics_gauge_add(M_WS_SUBS, -1);
    sub_unref(u);
}

/* Ends u and tells the client why. */
static void sub_fail(rt_sub *u, err_t *e)
{
    rt_send_error(u->s, "sub", u->id, e);
    err_clear(e);
    rt_sub_end(u);
}

static void go_live(rt_sub *u)
{
    u->state = SUB_LIVE;
    if (u->since_given) {
        u->since_given = false;
        buf_t b = {0};
        buf_puts(&b, "{\"t\":\"synced\",\"sub\":");
        buf_put_json_str(&b, u->id, strlen(u->id));
        buf_printf(&b, ",\"seq\":%lld}", (long long)u->pos);
        rt_send_buf(u->s, &b);
    }
}

/* Sends c to u if it concerns u, and moves u past it. */
static void offer(rt_sub *u, change_t *ch)
{
    if (ch->seq <= u->pos)
        return;
    if (strcmp(ch->col, u->e.col) == 0) {
        sub_op op = sub_op_of(&u->e, ch);
        if (op != SUBOP_NONE)
            rt_send_change(u, ch, op, NULL);
    }
    u->pos = ch->seq;
}

static void on_catchup_page(rjob *job)
{
    rt_sub *u = job->ctx;
    if (!u->dead) {
        if (job->err.code) {
            sub_fail(u, &job->err);
        } else {
            for (change_t *ch = job->recs; ch; ch = ch->next)
                offer(u, ch);
            if (job->seq > u->pos)
                u->pos = job->seq;
            u->state = SUB_CATCHUP;
            rt_sub_advance(u);
        }
    }
    rt_session *s = u->s;
    sub_unref(u);
    rt_session_unref(s);
    rjob_free(job);
}

static void send_snapshot_chunk(rt_sub *u)
{
    rjob *job = u->snap;
    snap_chunk *ck = &job->chunks[u->snap_next++];
    bool more = u->snap_next < job->nchunks;
    buf_t b = {0};
    buf_puts(&b, "{\"t\":\"snapshot\",\"sub\":");
    buf_put_json_str(&b, u->id, strlen(u->id));
    buf_printf(&b, ",\"seq\":%lld,\"docs\":[", (long long)job->seq);
    const char *tail = more ? "],\"more\":true}" : "],\"more\":false}";
    rt_send_frame(u->s, b.p, b.len, job->out.p + ck->off, ck->len, tail, strlen(tail));
    buf_free(&b);
}

/* Moves u forward as far as the connection's output allows. */
void rt_sub_advance(rt_sub *u)
{
    rt_session *s = u->s;
    app_t *app = s->app;
    while (!u->dead && rt_can_send(s)) {
        if (conn_out_pending(s->c) >= PACE_BYTES)
            return; /* on_drain calls again */
        if (u->state == SUB_SNAPSHOT) {
            if (!u->snap)
                return; /* the read is in flight */
            send_snapshot_chunk(u);
            if (u->snap_next == u->snap->nchunks) {
                rjob_free(u->snap);
                u->snap = NULL;
                u->state = SUB_CATCHUP;
            }
            continue;
        }
        if (u->state != SUB_CATCHUP)
            return;
        if (u->presence) {
            go_live(u);
            return;
        }
        if (u->pos >= feed_last(app->feed) && !u->ahead) {
            go_live(u);
            return;
        }
        if (u->pos >= feed_first(app->feed) - 1 && !u->ahead) {
            change_t *chs[CATCHUP_PAGE];
            int64_t covered;
            int n = feed_collect(app->feed, u->pos, u->e.col, CATCHUP_PAGE, chs, &covered);
            for (int i = 0; i < n; i++)
                offer(u, chs[i]);
            if (covered > u->pos)
                u->pos = covered;
            continue;
        }
        if (u->pos < store_first_seq(app->store) - 1) {
            err_t e = {0};
            err_set(&e, E_RESYNC_REQUIRED,
                    "changes after %lld are no longer retained; subscribe again without since",
                    (long long)u->pos);
            sub_fail(u, &e);
            return;
        }
        u->ahead = false;
        rjob *job = rjob_new(R_CHANGES);
        /* Every change of the collection: what was visible and is no
         * longer is a `removed` the subscriber must hear. */
        job->actor.system = true;
        job->since = u->pos;
        job->limit = CATCHUP_PAGE;
        job->col_filter = true;
        job->want_recs = true;
        snprintf(job->col, sizeof job->col, "%s", u->e.col);
        job->done = on_catchup_page;
        job->ctx = sub_ref(u);
        s->refs++;
        u->state = SUB_READING;
        store_read(app->store, job);
        return;
    }
}

static void on_snapshot(rjob *job)
{
    rt_sub *u = job->ctx;
    rt_session *s = u->s;
    if (!u->dead) {
        if (job->err.code) {
            sub_fail(u, &job->err);
            rjob_free(job);
        } else {
            u->pos = job->seq;
            u->snap = job;
            u->snap_next = 0;
            rt_sub_advance(u);
        }
    } else {
        rjob_free(job);
    }
    sub_unref(u);
    rt_session_unref(s);
}

/* ------------------------------------------------------------------ messages */

/* The rest of the read rule, for subscribers whose rule is not only
 * equalities (see access_read_scope). */
static bool rule_visible(const sub_entry *e, const json_t *doc)
{
    const rt_sub *u = e->owner;
    return rule_eval(u->rule_post, rt_session_auth(u->s), doc, NULL);
}

/* ------------------------------------------------------------------ _activity */

static void activity_read(rt_sub *u, bool catch_up);

void rt_send_activity(rt_sub *u, const char *entry, size_t len, int64_t seq)
{
    buf_t b = {0};
    buf_puts(&b, "{\"t\":\"change\",\"sub\":");
    buf_put_json_str(&b, u->id, strlen(u->id));
    buf_printf(&b, ",\"seq\":%lld,\"op\":\"added\",\"id\":\"%lld\",\"doc\":", (long long)seq,
               (long long)seq);
    buf_put(&b, entry, len);
    buf_putc(&b, '}');
    rt_send_buf(u->s, &b);
    u->pos = seq;
}

/* The snapshot (newest first), or a catch-up page (oldest first): entries
 * committed while the subscription was being read were not fanned out to
 * it, so it reads on from where it is until it has them all. */
static void on_activity_read(rjob *job)
{
    rt_sub *u = job->ctx;
    rt_session *s = u->s;
    struct realtime *rt = s->app->rt;
    if (!u->dead && job->err.code) {
        sub_fail(u, &job->err);
    } else if (!u->dead && !job->aq.ascending) {
        buf_t b = {0};
        buf_puts(&b, "{\"t\":\"snapshot\",\"sub\":");
        buf_put_json_str(&b, u->id, strlen(u->id));
        buf_printf(&b, ",\"seq\":%lld,\"docs\":[", (long long)job->top_seq);
        buf_put(&b, job->out.p, job->out.len);
        buf_puts(&b, "],\"more\":false}");
        rt_send_buf(s, &b);
        u->pos = job->top_seq;
    } else if (!u->dead) {
        buf_t arr = {0};
        buf_printf(&arr, "[%.*s]", (int)job->out.len, job->out.p ? job->out.p : "");
        json_t *list = json_loadb(arr.p, arr.len, 0, NULL);
        buf_free(&arr);
        for (size_t i = 0; i < json_array_size(list); i++) {
            json_t *e = json_array_get(list, i);
            char *text = json_dumps(e, JSON_COMPACT);
            rt_send_activity(u, text, strlen(text), json_integer_value(json_object_get(e, "seq")));
            free(text);
        }
        json_decref(list);
    }
    if (!u->dead && !job->err.code) {
        /* (A catch-up that found nothing has nothing more to find.) */
        if (rt && rt->last_aseq > u->pos && (!job->aq.ascending || job->count))
            activity_read(u, true);
        else
            u->state = SUB_LIVE;
    }
    rjob_free(job);
    sub_unref(u);
    rt_session_unref(s);
}

static void activity_read(rt_sub *u, bool catch_up)
{
    rjob *job = rjob_new(R_ACTIVITY);
    rt_session_actor(u->s, &job->actor);
    job->aq.limit = catch_up ? 500 : 100;
    job->aq.ascending = catch_up;
    job->aq.after_seq = u->pos;
    job->done = on_activity_read;
    job->ctx = sub_ref(u);
    u->s->refs++;
    store_read(u->s->app->store, job);
}

/* The newest 100 entries, then each new one as `added`. */
static void activity_snapshot(rt_sub *u)
{
    u->state = SUB_SNAPSHOT;
    activity_read(u, false);
}

rt_sub *rt_find_sub(rt_session *s, const char *id)
{
    for (rt_sub *u = s->subs; u; u = u->next)
        if (strcmp(u->id, id) == 0)
            return u;
    return NULL;
}

void rt_handle_sub(rt_session *s, rt_msg *m)
{
    app_t *app = s->app;
    err_t e = {0};
    if (rt_find_sub(s, m->id)) {
        err_set(&e, E_BAD_REQUEST, "a subscription with id %s is open; unsub it first", m->id);
        rt_send_error(s, "sub", m->id, &e);
        err_clear(&e);
        return;
    }
    if (s->nsubs >= SUBS_PER_CONN) {
        err_set(&e, E_BAD_REQUEST, "at most %d subscriptions per connection", SUBS_PER_CONN);
        rt_send_error(s, "sub", m->id, &e);
        err_clear(&e);
        return;
    }
    bool presence = strcmp(m->col, "_presence") == 0;
    bool activity = strcmp(m->col, "_activity") == 0;
    query_t *rule_where = NULL;
    rule_t *post = NULL;
    access_scope scope;
    if (presence || activity) {
        scope = s->who_admin ? ACCESS_ALL : ACCESS_NONE;
    } else {
        rule_where = xmalloc(sizeof *rule_where);
        query_init(rule_where);
        actor_t who;
        rt_session_actor(s, &who);
        scope = access_read_scope(&who, m->col, rule_where, &post);
        if (scope != ACCESS_SOME || rule_where->nconds == 0) {
            query_free(rule_where);
            free(rule_where);
            rule_where = NULL;
        }
    }
    if (scope == ACCESS_NONE) {
        err_set(&e, E_FORBIDDEN, "not allowed to read %s", m->col);
        rt_send_error(s, "sub", m->id, &e);
        err_clear(&e);
        return;
    }
    if (m->has_since && !presence && !activity) {
        /* Several nodes: a seq from another node may be past this node's
         * feed for a moment; the database says whether it is one (u->ahead:
         * the catch-up reads it first, 410 when not). */
        int64_t committed = store_committed_seq(app->store);
        if (m->since > committed && !store_shared(app->store)) {
            err_set(&e, E_RESYNC_REQUIRED,
                    "since %lld is ahead of the feed (last seq %lld): subscribe without since",
                    (long long)m->since, (long long)committed);
        } else if (m->since < store_first_seq(app->store) - 1) {
            err_set(&e, E_RESYNC_REQUIRED,
                    "changes after %lld are no longer retained (oldest is %lld); subscribe"
                    " without since",
                    (long long)m->since, (long long)store_first_seq(app->store));
        }
        if (e.code) {
            rt_send_error(s, "sub", m->id, &e);
            err_clear(&e);
            return;
        }
    }

    /* The id and the collection's name follow the struct, as long as they
     * are (an idle subscription should cost little). */
    size_t idlen = strlen(m->id), collen = strlen(m->col);
    rt_sub *u = slab_alloc(sizeof *u + idlen + collen + 2);
    char *tail = (char *)(u + 1);
    memcpy(tail, m->id, idlen + 1);
    memcpy(tail + idlen + 1, m->col, collen + 1);
    u->id = tail;
    u->e.col = tail + idlen + 1;
    u->refs = 1;
    u->s = s;
    u->e.where = m->where;
    m->where = NULL;
    u->e.doc_id = m->doc;
    m->doc = NULL;
    u->rule_post = post;
    u->e.rule_where = rule_where;
    u->e.visible = post ? rule_visible : NULL;
    u->e.owner = u;
    u->presence = presence;
    u->activity = activity;
    u->next = s->subs;
    s->subs = u;
    s->nsubs++;
    metrics_gauge_add(M_WS_SUBS, 1);

    if (presence) {
        rt_presence_snapshot(u);
        u->state = SUB_LIVE;
        struct realtime *rt = app->rt;
        rt_list_add((void ***)&rt->psubs, &rt->npsubs, &rt->cap_psubs, u);
        return;
    }
    if (activity) {
        struct realtime *rt = app->rt;
        rt_list_add((void ***)&rt->asubs, &rt->nasubs, &rt->cap_asubs, u);
        activity_snapshot(u);
        return;
    }
    subs_add(&app->rt->index, &u->e);
    u->indexed = true;
    if (m->has_since) {
        u->pos = m->since;
        u->since_given = true;
        u->ahead = store_shared(app->store) && m->since > feed_last(app->feed);
        u->state = SUB_CATCHUP;
        rt_sub_advance(u);
        return;
    }
    u->state = SUB_SNAPSHOT;
    rjob *job = rjob_new(R_SNAPSHOT);
    rt_session_actor(s, &job->actor); /* the reader applies the read rule itself */
    snprintf(job->col, sizeof job->col, "%s", u->e.col);
    if (u->e.where) {
        for (int i = 0; i < u->e.where->nconds; i++) {
            const qcond *c = &u->e.where->conds[i];
            query_add_cond(&job->query, c->field, strlen(c->field), qop_name(c->op),
                           strlen(qop_name(c->op)), c->value, &e);
        }
    }
    if (u->e.doc_id) {
        json_t *idv = json_string(u->e.doc_id);
        query_add_cond(&job->query, "id", 2, "eq", 2, idv, &e);
        json_decref(idv);
    }
    err_clear(&e); /* the conditions were checked when parsed; 17 of them at most */
    job->chunk_bytes = SNAP_CHUNK_BYTES;
    job->done = on_snapshot;
    job->ctx = sub_ref(u);
    s->refs++;
    store_read(app->store, job);
    /* A where on a field with no index gets one, as lists do. */
    if (u->e.pin_field && strcmp(u->e.pin_field, "id") != 0)
        store_want_index(app->store, u->e.col, u->e.pin_field);
}
