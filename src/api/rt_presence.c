/*
 * rt_presence.c: _presence: each session's presence document (who, since,
 * the state the client set), broadcast to the presence subscribers who
 * may see it, and the snapshot a new subscriber gets.
 */
#include "realtime_int.h"

/* ------------------------------------------------------------------ presence */

static void presence_doc(buf_t *b, rt_session *s)
{
    buf_puts(b, "{\"id\":\"");
    buf_puts(b, s->pid);
    buf_puts(b, "\",\"account\":");
    buf_put_json_str(b, s->who_id, strlen(s->who_id));
    buf_puts(b, ",\"role\":");
    buf_put_json_str(b, s->who_role, strlen(s->who_role));
    buf_puts(b, ",\"state\":");
    if (s->pstate) {
        char *t = json_dumps(s->pstate, JSON_COMPACT | JSON_ENCODE_ANY);
        buf_puts(b, t);
        free(t);
    } else {
        buf_puts(b, "null");
    }
    buf_puts(b, ",\"since\":\"");
    buf_puts(b, s->since);
    buf_puts(b, "\"}");
}

static bool presence_visible(rt_sub *u, const char *doc, size_t len)
{
    if (!u->where)
        return true;
    json_t *j = json_loadb(doc, len, 0, NULL);
    bool ok = j && sub_matches(&u->e, j);
    json_decref(j);
    return ok;
}

/* Tells every _presence subscriber that s came, changed or went. */
void rt_presence_broadcast(app_t *app, rt_session *s, sub_op op)
{
    struct realtime *rt = app->rt;
    if (!rt->npsubs)
        return;
    int64_t seq = ++rt->presence_seq;
    buf_t doc = {0};
    presence_doc(&doc, s);
    for (int i = 0; i < rt->npsubs; i++) {
        rt_sub *u = rt->psubs[i];
        if (u->state != SUB_LIVE || u->s == s || !presence_visible(u, doc.p, doc.len))
            continue;
        buf_t b = {0};
        buf_puts(&b, "{\"t\":\"change\",\"sub\":");
        buf_put_json_str(&b, u->id, strlen(u->id));
        buf_printf(&b, ",\"seq\":%lld,\"op\":\"%s\",\"id\":\"%s\"", (long long)seq,
                   sub_op_name(op), s->pid);
        if (op != SUBOP_REMOVED) {
            buf_puts(&b, ",\"doc\":");
            buf_put(&b, doc.p, doc.len);
        }
        buf_putc(&b, '}');
        rt_send_buf(u->s, &b);
        u->pos = seq;
    }
    buf_free(&doc);
}

void rt_presence_snapshot(rt_sub *u)
{
    app_t *app = u->s->app;
    buf_t docs = {0};
    int n = 0;
    bool first = true;
    for (rt_session *s = app->rt->sessions; s; s = s->next) {
        buf_t d = {0};
        presence_doc(&d, s);
        if (presence_visible(u, d.p, d.len)) {
            if (n)
                buf_putc(&docs, ',');
            buf_put(&docs, d.p, d.len);
            n++;
        }
        buf_free(&d);
        bool last = s->next == NULL;
        if (n == PRESENCE_CHUNK || (last && (n || first))) {
            buf_t b = {0};
            buf_puts(&b, "{\"t\":\"snapshot\",\"sub\":");
            buf_put_json_str(&b, u->id, strlen(u->id));
            buf_printf(&b, ",\"seq\":%lld,\"docs\":[", (long long)app->rt->presence_seq);
            buf_put(&b, docs.p, docs.len);
            buf_printf(&b, "],\"more\":%s}", last ? "false" : "true");
            rt_send_buf(u->s, &b);
            docs.len = 0;
            n = 0;
            first = false;
        }
    }
    buf_free(&docs);
    u->pos = app->rt->presence_seq;
}
