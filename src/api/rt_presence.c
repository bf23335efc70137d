/*
 * rt_presence.c: _presence: each session's presence document (who, since,
 * the state the client set), broadcast to the presence subscribers who
 * may see it, and the snapshot a new subscriber gets.
 *
 * Several nodes (a shared store): each node also says its sessions' comings
 * and goings to the others (store_presence_say), one line each:
 *   + NODE PID DOC   a session came or changed      - NODE PID   it went
 *   h NODE           NODE is alive (every 2 s)      ? NODE       NODE asks
 *                                                                everyone
 * and keeps theirs, so that an admin on any node sees every node's
 * connections. A node not heard of for 7 s is gone (killed): its
 * sessions are removed. Nothing is stored: presence is what is open now.
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
    char since[TIME_RFC3339_LEN + 1];
    time_format_rfc3339(s->since_ms, since);
    buf_puts(b, ",\"since\":\"");
    buf_puts(b, since);
    buf_puts(b, "\"}");
}

static bool presence_visible(rt_sub *u, const char *doc, size_t len)
{
    if (!u->e.where)
        return true;
    json_t *j = json_loadb(doc, len, 0, NULL);
    bool ok = j && sub_matches(&u->e, j);
    json_decref(j);
    return ok;
}

#define HEARTBEAT_MS 2000
#define GONE_MS 7000

/* Another node's session. */
typedef struct remote_pres {
    char node[17];
    char pid[17];
    char *doc;
} remote_pres;

/* Tells every _presence subscriber (but skip's own) that pid came,
 * changed or went. */
static void broadcast(app_t *app, const char *pid, const char *doc, size_t len, sub_op op,
                      const rt_session *skip)
{
    struct realtime *rt = app->rt;
    if (!rt->npsubs)
        return;
    int64_t seq = ++rt->presence_seq;
    for (int i = 0; i < rt->npsubs; i++) {
        rt_sub *u = rt->psubs[i];
        if (u->state != SUB_LIVE || u->s == skip || !presence_visible(u, doc, len))
            continue;
        buf_t b = {0};
        buf_puts(&b, "{\"t\":\"change\",\"sub\":");
        buf_put_json_str(&b, u->id, strlen(u->id));
        buf_printf(&b, ",\"seq\":%lld,\"op\":\"%s\",\"id\":\"%s\"", (long long)seq,
                   sub_op_name(op), pid);
        if (op != SUBOP_REMOVED) {
            buf_puts(&b, ",\"doc\":");
            buf_put(&b, doc, len);
        }
        buf_putc(&b, '}');
        rt_send_buf(u->s, &b);
        u->pos = seq;
    }
}

static void say_session(app_t *app, rt_session *s, sub_op op, const char *doc)
{
    buf_t line = {0};
    if (op == SUBOP_REMOVED)
        buf_printf(&line, "- %s %s", app->rt->node, s->pid);
    else
        buf_printf(&line, "+ %s %s %s", app->rt->node, s->pid, doc);
    store_presence_say(app->store, line.p);
    buf_free(&line);
}

void rt_presence_broadcast(app_t *app, rt_session *s, sub_op op)
{
    struct realtime *rt = app->rt;
    bool shared = store_shared(app->store);
    if (!rt->npsubs && !shared)
        return;
    buf_t doc = {0};
    presence_doc(&doc, s);
    broadcast(app, s->pid, doc.p, doc.len, op, s);
    if (shared)
        say_session(app, s, op, doc.p);
    buf_free(&doc);
}

/* ------------------------------------------------------------------ other nodes */

static void node_seen(struct realtime *rt, const char *node)
{
    int64_t *at = map_get(&rt->nodes, node, strlen(node));
    if (!at) {
        at = xcalloc(1, sizeof *at);
        map_put(&rt->nodes, node, strlen(node), at);
    }
    *at = time_now_ms();
}

static void remote_drop(app_t *app, remote_pres *r)
{
    map_del(&app->rt->remote, r->pid, strlen(r->pid));
    broadcast(app, r->pid, r->doc, strlen(r->doc), SUBOP_REMOVED, NULL);
    free(r->doc);
    free(r);
}

static void announce_all(app_t *app)
{
    for (rt_session *s = app->rt->sessions; s; s = s->next) {
        if (s->closed)
            continue;
        buf_t doc = {0};
        presence_doc(&doc, s);
        say_session(app, s, SUBOP_ADDED, doc.p);
        buf_free(&doc);
    }
}

static void say(app_t *app, char kind)
{
    char line[40];
    snprintf(line, sizeof line, "%c %s", kind, app->rt->node);
    store_presence_say(app->store, line);
}

/* A line another node (or this one) said. */
static void heard(void *ctx, const char *line)
{
    app_t *app = ctx;
    struct realtime *rt = app->rt;
    if (strcmp(line, "*") == 0) { /* the database was away: say everything again */
        say(app, '?');
        announce_all(app);
        return;
    }
    char node[17], pid[17];
    int used = 0;
    if (strlen(line) < 3 || line[1] != ' ' || sscanf(line + 2, "%16s%n", node, &used) != 1 ||
        strcmp(node, rt->node) == 0)
        return;
    const char *rest = line + 2 + used;
    node_seen(rt, node);
    if (line[0] == '?') {
        announce_all(app);
    } else if (line[0] == '+' || line[0] == '-') {
        int n = 0;
        if (sscanf(rest, " %16s%n", pid, &n) != 1)
            return;
        const char *doc = rest + n + (rest[n] == ' ');
        remote_pres *r = map_get(&rt->remote, pid, strlen(pid));
        if (line[0] == '-') {
            if (r)
                remote_drop(app, r);
            return;
        }
        if (!*doc)
            return;
        sub_op op = r ? SUBOP_MODIFIED : SUBOP_ADDED;
        if (!r) {
            r = xcalloc(1, sizeof *r);
            snprintf(r->node, sizeof r->node, "%s", node);
            snprintf(r->pid, sizeof r->pid, "%s", pid);
            map_put(&rt->remote, r->pid, strlen(r->pid), r);
        }
        free(r->doc);
        r->doc = xstrdup(doc);
        broadcast(app, r->pid, r->doc, strlen(r->doc), op, NULL);
    }
}

/* Every HEARTBEAT_MS: this node is alive; nodes not heard of are gone. */
static void on_heartbeat(uv_timer_t *t)
{
    app_t *app = t->data;
    struct realtime *rt = app->rt;
    say(app, 'h');
    int64_t now = time_now_ms();
    size_t i = 0, kl;
    const char *k;
    void *v;
    while (map_next(&rt->remote, &i, &k, &kl, &v)) {
        remote_pres *r = v;
        int64_t *at = map_get(&rt->nodes, r->node, strlen(r->node));
        if (!at || now - *at > GONE_MS)
            remote_drop(app, r);
    }
}

void rt_presence_init(app_t *app)
{
    struct realtime *rt = app->rt;
    map_init(&rt->remote);
    map_init(&rt->nodes);
    random_id(rt->node, 16);
    if (!store_shared(app->store))
        return;
    store_set_presence_cb(app->store, heard, app);
    uv_timer_init(app->loop, &rt->heartbeat);
    rt->heartbeat.data = app;
    uv_timer_start(&rt->heartbeat, on_heartbeat, HEARTBEAT_MS, HEARTBEAT_MS);
    uv_unref((uv_handle_t *)&rt->heartbeat);
    rt->heartbeat_on = true;
    say(app, '?'); /* the others say who is there */
}

void rt_presence_shutdown(app_t *app)
{
    struct realtime *rt = app->rt;
    if (rt->heartbeat_on)
        uv_close((uv_handle_t *)&rt->heartbeat, NULL);
    rt->heartbeat_on = false;
    store_set_presence_cb(app->store, NULL, NULL);
}

void rt_presence_free(app_t *app)
{
    struct realtime *rt = app->rt;
    size_t i = 0, kl;
    const char *k;
    void *v;
    while (map_next(&rt->remote, &i, &k, &kl, &v)) {
        free(((remote_pres *)v)->doc);
        free(v);
    }
    map_free(&rt->remote);
    map_free_values(&rt->nodes);
}

/* Sends docs (comma-separated, n of them) as one piece of the snapshot. */
static void snapshot_piece(rt_sub *u, buf_t *docs, bool more)
{
    buf_t b = {0};
    buf_puts(&b, "{\"t\":\"snapshot\",\"sub\":");
    buf_put_json_str(&b, u->id, strlen(u->id));
    buf_printf(&b, ",\"seq\":%lld,\"docs\":[", (long long)u->s->app->rt->presence_seq);
    buf_put(&b, docs->p, docs->len);
    buf_printf(&b, "],\"more\":%s}", more ? "true" : "false");
    rt_send_buf(u->s, &b);
    docs->len = 0;
}

static void snapshot_add(rt_sub *u, buf_t *docs, int *n, const char *doc, size_t len)
{
    if (!presence_visible(u, doc, len))
        return;
    if (*n == PRESENCE_CHUNK) {
        snapshot_piece(u, docs, true);
        *n = 0;
    }
    if ((*n)++)
        buf_putc(docs, ',');
    buf_put(docs, doc, len);
}

/* This node's sessions, then the other nodes'. */
void rt_presence_snapshot(rt_sub *u)
{
    app_t *app = u->s->app;
    buf_t docs = {0};
    int n = 0;
    for (rt_session *s = app->rt->sessions; s; s = s->next) {
        buf_t d = {0};
        presence_doc(&d, s);
        snapshot_add(u, &docs, &n, d.p, d.len);
        buf_free(&d);
    }
    size_t i = 0, kl;
    const char *k;
    void *v;
    while (map_next(&app->rt->remote, &i, &k, &kl, &v)) {
        const remote_pres *r = v;
        snapshot_add(u, &docs, &n, r->doc, strlen(r->doc));
    }
    snapshot_piece(u, &docs, false);
    buf_free(&docs);
    u->pos = app->rt->presence_seq;
}
