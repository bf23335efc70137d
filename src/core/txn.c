/*
 * txn.c: what a write job does, on the writer thread (see txn.h).
 *
 * A group runs in one transaction of the store's. A job that may fail
 * half-way (a batch, an idempotent request, several ops) runs in a
 * savepoint and fails alone. A single op makes every check before its
 * first write, so when it fails a check nothing was written and no
 * savepoint is needed; when the store fails it mid-way, the whole group
 * goes (tx_broken). Server functions: see txn_t.
 *
 * Whatever undoes writes also gives back their seqs (mark / back_to), so
 * the feed stays gapless: the invariants at the end of a group check it
 * in debug builds.
 */
#include "txn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../util/metrics.h"
#include "apps.h"
#include "doc.h"

/* ------------------------------------------------------------------ jobs */

wjob *wjob_new(wjob_kind kind, int nops)
{
    wjob *job = xcalloc(1, sizeof *job);
    job->kind = kind;
    job->nops = nops;
    job->ops = nops ? xcalloc((size_t)nops, sizeof *job->ops) : NULL;
    for (int i = 0; i < nops; i++)
        job->ops[i].if_version = -1;
    return job;
}

void activity_free(activity_rec *a)
{
    while (a) {
        activity_rec *next = a->next;
        free(a->json);
        free(a);
        a = next;
    }
}

void change_list_free(change_t *ch)
{
    while (ch) {
        change_t *next = ch->next;
        ch->next = NULL;
        change_unref(ch);
        ch = next;
    }
}

void wjob_free(wjob *job)
{
    if (!job)
        return;
    for (int i = 0; i < job->nops; i++) {
        free(job->ops[i].id);
        json_decref(job->ops[i].doc);
    }
    free(job->ops);
    free(job->idem_account);
    free(job->idem_key);
    free(job->index_col);
    free(job->index_field);
    err_clear(&job->err);
    buf_free(&job->answer);
    change_list_free(job->changes);
    activity_free(job->activity);
    json_decref(job->log_data);
    json_decref(job->fn_args);
    err_clear(&job->fn_err);
    free(job);
}

void txn_init(txn_t *t, const txn_methods *m, void *s, int64_t next_seq, int64_t next_aseq,
              const unsigned char *last_hash)
{
    memset(t, 0, sizeof *t);
    t->m = m;
    t->s = s;
    t->next_seq = next_seq;
    t->next_aseq = next_aseq;
    if (last_hash)
        memcpy(t->last_hash, last_hash, sizeof t->last_hash);
}

/* ------------------------------------------------------------------ undo */

/* Where the feed and the log stand: what an undo goes back to. */
typedef struct mark {
    int64_t seq, aseq;
    unsigned char hash[32];
} mark;

static mark mark_now(const txn_t *t)
{
    mark m = {.seq = t->next_seq, .aseq = t->next_aseq};
    memcpy(m.hash, t->last_hash, sizeof m.hash);
    return m;
}

static void back_to(txn_t *t, const mark *m)
{
    t->next_seq = m->seq;
    t->next_aseq = m->aseq;
    memcpy(t->last_hash, m->hash, sizeof t->last_hash);
}

/* What a job produced goes: its changes, log entries and answer. */
static void drop_output(wjob *j)
{
    change_list_free(j->changes);
    j->changes = NULL;
    activity_free(j->activity);
    j->activity = NULL;
    j->answer.len = 0;
}

#ifdef LIVEDB_DEBUG
/* Whether the jobs' changes are the seqs [first, next) with no gap, and
 * their log entries [afirst, anext): the feed's promise. */
static bool gapless(const wjob *jobs, int64_t first, int64_t next, int64_t afirst, int64_t anext)
{
    int64_t want = first, awant = afirst;
    for (const wjob *j = jobs; j; j = j->next) {
        for (const change_t *c = j->changes; c; c = c->next)
            if (c->seq != want++)
                return false;
        for (const activity_rec *a = j->activity; a; a = a->next)
            if (a->seq != awant++)
                return false;
    }
    return want == next && awant == anext;
}
#endif

/* ------------------------------------------------------------------ one job's context */

typedef struct wctx {
    txn_t *t;
    wjob *job;
    change_t **tail;      /* where the next change of the job goes */
    activity_rec **atail; /* and its next activity entry */
    char now[TIME_RFC3339_LEN + 1];
    int64_t now_ms;
    json_t *auth;         /* the actor as rules see it, made on first use */
    bool trusted;         /* a server function's writes: no collection rules */
    bool want_written;    /* fn_write: run_op also hands back ... */
    json_t *written;      /* ... the document it wrote, as JSON */
    int fn_writes;        /* a function's writes so far */
} wctx;

static const json_t *wauth(wctx *w)
{
    if (!w->auth)
        w->auth = actor_auth(&w->job->actor);
    return w->auth;
}

/* ------------------------------------------------------------------ the feed and the log */

static void put_version(buf_t *e, const char *key, int64_t v)
{
    buf_puts(e, key);
    if (v > 0)
        buf_put_i64(e, v);
    else
        buf_puts(e, "null");
}

/* Appends an entry to the activity log, chained to the one before:
 * hash = BLAKE2b-256(previous hash || entry text). */
static int log_entry(wctx *w, const char *action, const char *col, const char *id, int64_t vb,
                     int64_t va, const json_t *data)
{
    txn_t *t = w->t;
    const actor_t *a = &w->job->actor;
    int64_t seq = t->next_aseq;
    buf_t e = {0};
    buf_reserve(&e, 256);
    buf_puts(&e, "{\"seq\":");
    buf_put_i64(&e, seq);
    buf_puts(&e, ",\"at\":\"");
    buf_puts(&e, w->now);
    buf_puts(&e, "\",\"account\":");
    buf_put_json_str(&e, a->id, strlen(a->id));
    const char *role = a->system && !a->role[0] ? "system" : a->role;
    buf_puts(&e, ",\"role\":");
    buf_put_json_str(&e, role, strlen(role));
    buf_puts(&e, ",\"session\":");
    buf_put_json_str(&e, a->session, strlen(a->session));
    buf_puts(&e, ",\"remote\":");
    buf_put_json_str(&e, a->remote, strlen(a->remote));
    buf_puts(&e, ",\"action\":");
    buf_put_json_str(&e, action, strlen(action));
    if (col) {
        buf_puts(&e, ",\"col\":");
        buf_put_json_str(&e, col, strlen(col));
        buf_puts(&e, ",\"id\":");
        buf_put_json_str(&e, id, strlen(id));
        put_version(&e, ",\"version_before\":", vb);
        put_version(&e, ",\"version_after\":", va);
    }
    if (data) {
        char *d = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
        buf_puts(&e, ",\"data\":");
        buf_puts(&e, d);
        free(d);
    }
    buf_putc(&e, '}');
    unsigned char h[32];
    crypto_generichash_state gs;
    crypto_generichash_init(&gs, NULL, 0, sizeof h);
    crypto_generichash_update(&gs, t->last_hash, sizeof t->last_hash);
    crypto_generichash_update(&gs, (const unsigned char *)e.p, e.len);
    crypto_generichash_final(&gs, h, sizeof h);
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    if (t->m->append_activity(t->s, seq, w->now_ms, a->id, action, e.p, e.len, hex,
                              &w->job->err)) {
        buf_free(&e);
        return -1;
    }
    t->next_aseq++;
    memcpy(t->last_hash, h, sizeof h);
    activity_rec *r = xcalloc(1, sizeof *r);
    r->seq = seq;
    r->json = buf_take(&e, &r->len);
    *w->atail = r;
    w->atail = &r->next;
    return 0;
}

/* Appends a change to the feed, with the seq after the last. */
static int add_change(wctx *w, const char *col, const char *id, change_op op, int64_t version,
                      const buf_t *doc, const buf_t *prev)
{
    txn_t *t = w->t;
    /* The server's own collections (_accounts) are not the apps' data:
     * their writes are in the activity log, not in the feed. */
    if (col[0] == '_')
        return 0;
    int64_t seq = t->next_seq;
    change_t *ch = change_new(seq, col, id, op, version, doc ? doc->p : NULL, doc ? doc->len : 0,
                              w->now);
    if (prev && prev->p)
        change_set_prev(ch, prev->p, prev->len);
    if (t->m->append_change(t->s, ch, &w->job->err)) {
        change_unref(ch);
        return -1;
    }
    t->next_seq++;
    *w->tail = ch;
    w->tail = &ch->next;
    w->job->seq = seq;
    return 0;
}

/* ------------------------------------------------------------------ rows */

/* Reads the stored row: 1 found, 0 absent, -1 error. The stored text goes
 * to text (the change's prev) and, parsed, to body, each when asked. */
static int load_row(wctx *w, const char *col, const char *id, int64_t *version, char **created,
                    json_t **body, buf_t *text)
{
    txn_row row = {0};
    int found = w->t->m->get(w->t->s, col, id, &row, &w->job->err);
    if (found == TXN_FOUND) {
        found = 1;
        *version = row.version;
        if (created) {
            *created = row.created;
            row.created = NULL;
        }
        if (body) {
            *body = json_loadb(row.body.p, row.body.len, 0, NULL);
            if (!*body) {
                found = -1;
                err_set(&w->job->err, E_INTERNAL, "stored document %s is not JSON", id);
            }
        }
        if (text) {
            buf_free(text);
            *text = row.body;
            row.body = (buf_t){0};
        }
    }
    free(row.created);
    buf_free(&row.body);
    return found;
}

static int write_row(wctx *w, const char *col, const char *id, int64_t version,
                     const char *created, const buf_t *doc)
{
    int slot = -1;
    int rc = w->t->m->put(w->t->s, col, id, version, created, w->now, doc->p, doc->len, &slot,
                          &w->job->err);
    if (rc == TXN_EXISTS)
        return err_set(&w->job->err, E_CONFLICT, "a document with id %s exists", id);
    if (rc == TXN_UNIQUE) {
        const col_spec *spec = apps_col(col);
        const char *field =
            spec && slot >= 0 && slot < spec->nfields ? spec->fields[slot].name : "?";
        err_set(&w->job->err, E_INVALID, "another document of %s has this %s", col, field);
        err_details(&w->job->err, json_pack("[{ssss}]", "field", field, "reason",
                                            "must be unique: another document has this value"));
        return -1;
    }
    return rc == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ checks */

static int check_version(wctx *w, const wop *op, int found, int64_t version)
{
    if (op->if_version == -1)
        return 0;
    if (!found)
        return err_set(&w->job->err, E_PRECONDITION_FAILED, "the document does not exist");
    if (op->if_version == -2) /* If-Match: * */
        return 0;
    if (version != op->if_version)
        return err_set(&w->job->err, E_PRECONDITION_FAILED,
                       "the document is at version %lld, not %lld", (long long)version,
                       (long long)op->if_version);
    return 0;
}

/* Whether the actor may do act on a document of the op's collection; doc
 * is the stored document (update, delete), newdoc the incoming one
 * (create, update). An update or delete of a document the actor may not
 * even read is "not found": its existence is not theirs to learn. */
static int check_access(wctx *w, const wop *op, action_t act, const json_t *doc,
                        const json_t *newdoc)
{
    const actor_t *a = &w->job->actor;
    if (actor_is_admin(a) || w->trusted)
        return 0;
    const col_spec *spec = apps_col(op->col);
    const rule_t *r = spec ? spec->rules[act] : NULL;
    if (r && rule_eval(r, wauth(w), doc, newdoc))
        return 0;
    if (doc && !access_can_read(a, wauth(w), op->col, doc))
        return err_set(&w->job->err, E_NOT_FOUND, "no document %s in %s", op->id, op->col);
    static const char *const verbs[] = {"read", "create", "change", "delete"};
    return err_set(&w->job->err, E_FORBIDDEN, "not allowed to %s documents in %s", verbs[act],
                   op->col);
}

/* The incoming document as rules see it: the client's members and the id. */
static json_t *with_id(const json_t *members, const char *id)
{
    json_t *d = json_copy((json_t *)members);
    json_object_set_new(d, "id", json_string(id));
    return d;
}

static int check_schema(wctx *w, const wop *op, const json_t *members)
{
    const col_spec *spec = apps_col(op->col);
    if (!spec || !spec->nfields)
        return 0;
    return schema_check(spec, members, &w->job->err);
}

/* ------------------------------------------------------------------ ops */

/* The private ops: password hashes and sessions. */
static int run_private(wctx *w, const wop *op)
{
    const txn_methods *m = w->t->m;
    void *s = w->t->s;
    err_t *err = &w->job->err;
    const json_t *d = op->doc;
    switch (op->kind) {
    case W_CRED:
        return m->cred_put(s, op->id, json_string_value(json_object_get(d, "hash")), err);
    case W_SESSION_ADD:
        return m->session_put(s, op->id, json_string_value(json_object_get(d, "session")),
                              json_string_value(json_object_get(d, "account")), w->now_ms,
                              json_integer_value(json_object_get(d, "expires_at")), err);
    case W_SESSION_DEL:
        return m->session_del(s, op->id, err);
    default: /* W_SESSIONS_DEL */
        return m->sessions_del(s, op->id, err);
    }
}

/* What one document op leaves for run_op to hand out. */
typedef struct opres {
    int64_t version;
    char *created; /* owned; NULL: made now */
    json_t *stored; /* owned: the stored members (patch: as patched) */
    buf_t doc;     /* the answer: the document as stored, or {"id","version"} */
} opres;

/* Create or put. */
static int op_put(wctx *w, const wop *op, bool admin, int *status, opres *r)
{
    size_t mlen;
    char *members = doc_members(op->doc, &mlen);
    json_t *newdoc = NULL;
    buf_t prev = {0};
    int found = 0, rc = -1;
    if (op->kind == W_PUT) {
        found = load_row(w, op->col, op->id, &r->version, &r->created,
                         op->skip_unchanged || !admin ? &r->stored : NULL, &prev);
        if (found < 0 || check_version(w, op, found, r->version))
            goto out;
    }
    if (!admin) {
        newdoc = with_id(op->doc, op->id);
        if (check_access(w, op, found ? ACT_UPDATE : ACT_CREATE, found ? r->stored : NULL,
                         newdoc))
            goto out;
    }
    if (check_schema(w, op, op->doc))
        goto out;
    if (found && r->stored && op->skip_unchanged) {
        doc_take_server_fields(r->stored, NULL, NULL, &w->job->err);
        if (json_equal(r->stored, op->doc)) { /* a re-import: nothing to write */
            buf_put(&r->doc, prev.p, prev.len);
            rc = 0;
            goto out;
        }
    }
    int64_t before = r->version;
    change_op chop = CH_UPDATE;
    if (found) {
        r->version++;
        doc_compose(&r->doc, op->id, r->version, r->created, w->now, members, mlen);
    } else {
        r->version = 1;
        *status = 201;
        chop = CH_CREATE;
        doc_compose(&r->doc, op->id, r->version, w->now, w->now, members, mlen);
    }
    if (r->doc.len > DOC_MAX_BYTES)
        rc = err_set(&w->job->err, E_PAYLOAD_TOO_LARGE, "the document is over 1 MiB");
    else
        rc = write_row(w, op->col, op->id, r->version, found ? NULL : w->now, &r->doc);
    if (rc == 0)
        rc = add_change(w, op->col, op->id, chop, r->version, &r->doc, &prev);
    if (rc == 0)
        rc = log_entry(w, found ? "update" : "create", op->col, op->id, before, r->version, NULL);
out:
    free(members);
    json_decref(newdoc);
    buf_free(&prev);
    return rc;
}

static int op_patch(wctx *w, const wop *op, bool admin, opres *r)
{
    buf_t prev = {0};
    int rc = -1;
    int found = load_row(w, op->col, op->id, &r->version, &r->created, &r->stored, &prev);
    if (found < 0 || check_version(w, op, found, r->version))
        goto out;
    if (!found || (!admin && !access_can_read(&w->job->actor, wauth(w), op->col, r->stored))) {
        err_set(&w->job->err, E_NOT_FOUND, "no document %s in %s", op->id, op->col);
        goto out;
    }
    json_t *before_doc = admin ? NULL : json_deep_copy(r->stored);
    r->stored = merge_patch(r->stored, op->doc);
    doc_take_server_fields(r->stored, NULL, NULL, &w->job->err);
    if (!admin) {
        json_t *newdoc = with_id(r->stored, op->id);
        int denied = check_access(w, op, ACT_UPDATE, before_doc, newdoc);
        json_decref(before_doc);
        json_decref(newdoc);
        if (denied)
            goto out;
    }
    if (check_schema(w, op, r->stored))
        goto out;
    size_t mlen;
    char *members = doc_members(r->stored, &mlen);
    int64_t before = r->version++;
    doc_compose(&r->doc, op->id, r->version, r->created, w->now, members, mlen);
    free(members);
    if (r->doc.len > DOC_MAX_BYTES) {
        err_set(&w->job->err, E_PAYLOAD_TOO_LARGE, "the patched document is over 1 MiB");
        goto out;
    }
    rc = write_row(w, op->col, op->id, r->version, NULL, &r->doc);
    if (rc == 0)
        rc = add_change(w, op->col, op->id, CH_UPDATE, r->version, &r->doc, &prev);
    if (rc == 0)
        rc = log_entry(w, "update", op->col, op->id, before, r->version, NULL);
out:
    buf_free(&prev);
    return rc;
}

static int op_delete(wctx *w, const wop *op, bool admin, opres *r)
{
    buf_t prev = {0};
    int rc = -1;
    int found = load_row(w, op->col, op->id, &r->version, NULL, admin ? NULL : &r->stored, &prev);
    if (found < 0 || check_version(w, op, found, r->version))
        goto out;
    if (!found) {
        err_set(&w->job->err, E_NOT_FOUND, "no document %s in %s", op->id, op->col);
        goto out;
    }
    if (!admin && check_access(w, op, ACT_DELETE, r->stored, NULL))
        goto out;
    if (w->t->m->del(w->t->s, op->col, op->id, &w->job->err))
        goto out;
    buf_puts(&r->doc, "{\"id\":");
    buf_put_json_str(&r->doc, op->id, strlen(op->id));
    buf_printf(&r->doc, ",\"version\":%lld}", (long long)r->version);
    rc = add_change(w, op->col, op->id, CH_DELETE, r->version, NULL, &prev);
    if (rc == 0)
        rc = log_entry(w, "delete", op->col, op->id, r->version, 0, NULL);
out:
    buf_free(&prev);
    return rc;
}

/* Runs one op; appends its answer to out. Every check (version, access,
 * schema) comes before the op's first write: a single op that fails a
 * check has written nothing (see run_job_ops). */
static int run_op(wctx *w, wop *op, buf_t *out, int *status)
{
    *status = 200;
    if (op->kind >= W_CRED) {
        int rc = run_private(w, op);
        if (rc == 0)
            buf_puts(out, "{}");
        return rc;
    }
    bool admin = actor_is_admin(&w->job->actor) || w->trusted;
    opres r = {0};
    int rc = op->kind == W_PATCH    ? op_patch(w, op, admin, &r)
             : op->kind == W_DELETE ? op_delete(w, op, admin, &r)
                                    : op_put(w, op, admin, status, &r);
    if (rc == 0) {
        buf_put(out, r.doc.p, r.doc.len);
        w->job->version = r.version;
    }
    /* For a server function: the document as written, from the objects at
     * hand (the same members, in the same order, as the stored text), not
     * by parsing that text again. */
    if (rc == 0 && w->want_written && !op->skip_unchanged &&
        (op->kind == W_PATCH || op->kind == W_CREATE || op->kind == W_PUT)) {
        json_t *members = op->kind == W_PATCH ? r.stored : op->doc;
        json_t *d = json_object();
        json_object_set_new(d, "id", json_string(op->id));
        json_object_set_new(d, "version", json_integer(r.version));
        json_object_set_new(d, "created_at", json_string(r.created ? r.created : w->now));
        json_object_set_new(d, "updated_at", json_string(w->now));
        json_object_update(d, members);
        w->written = d;
    }
    buf_free(&r.doc);
    free(r.created);
    json_decref(r.stored);
    return rc;
}

/* ------------------------------------------------------------------ server functions */

struct fn_tx {
    wctx *w;
};

const actor_t *fn_actor(fn_tx *t) { return &t->w->job->actor; }
const char *fn_now(fn_tx *t) { return t->w->now; }

int fn_fail(fn_tx *t, err_code code, json_t *details, const char *fmt, ...)
{
    err_t *e = &t->w->job->err;
    err_clear(e);
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    if (details)
        err_details(e, details);
    return -1;
}

json_t *fn_get(fn_tx *t, const char *col, const char *id)
{
    int64_t version;
    json_t *body = NULL;
    if (load_row(t->w, col, id, &version, NULL, &body, NULL) <= 0)
        return NULL;
    return body;
}

json_t *fn_find(fn_tx *t, const char *col, const query_t *q)
{
    return t->w->t->m->find(t->w->t->s, col, q);
}

json_t *fn_write(fn_tx *t, wop_kind kind, const char *col, const char *id, json_t *doc)
{
    wctx *w = t->w;
    wop op = {.kind = kind, .doc = doc, .if_version = -1};
    snprintf(op.col, sizeof op.col, "%s", col);
    if (id) {
        op.id = xstrdup(id);
    } else {
        op.id = xmalloc(DOC_GEN_ID_LEN + 1);
        time_ordered_id(op.id, DOC_GEN_ID_LEN);
    }
    if (doc && kind != W_PATCH)
        doc_take_server_fields(op.doc, NULL, NULL, &w->job->err);
    buf_t out = {0};
    int status;
    w->want_written = true;
    int rc;
    const txn_methods *m = w->t->m;
    if (w->fn_writes > 0 && m->write_fault && m->write_fault(w->t->s))
        rc = err_set(&w->job->err, E_INTERNAL, "a write failed (LIVEDB_FAULTS)");
    else
        rc = run_op(w, &op, &out, &status);
    if (rc == 0)
        w->fn_writes++;
    w->want_written = false;
    json_t *written = w->written;
    w->written = NULL;
    if (rc == 0 && !written) /* a delete: {"id","version"} */
        written = json_loadb(out.p, out.len, 0, NULL);
    if (rc != 0) {
        json_decref(written);
        written = NULL;
    }
    buf_free(&out);
    free(op.id);
    json_decref(op.doc);
    return written;
}

static bool disk_error(err_code code) { return code == E_UNAVAILABLE || code == E_STORAGE_FULL; }

/* A function call: refused or failed, its writes go and the refusal is
 * the call's answer; either way the call is logged. Its writes are undone
 * by its savepoint when the group runs carefully; otherwise there is none,
 * and a call that fails after a write has the group run again carefully. */
static void run_fn(wctx *w)
{
    txn_t *t = w->t;
    wjob *job = w->job;
    mark m0 = mark_now(t);
    job->seq = m0.seq - 1;
    bool sp = t->careful;
    if (sp && t->m->savepoint(t->s, &job->err))
        return;
    fn_tx ft = {.w = w};
    json_t *result = NULL;
    w->trusted = true;
    int frc = job->fn(&ft, job->fn_args, &result);
    w->trusted = false;
    if (frc == 0 && !job->err.code) {
        if (!result)
            result = json_object();
        char *text = json_dumps(result, JSON_COMPACT);
        buf_puts(&job->answer, text);
        free(text);
        json_decref(result);
        result = NULL; /* else a failed log entry below frees it a second time */
        job->status = 200;
        json_t *data = json_pack("{sssb}", "fn", job->fn_name, "ok", 1);
        int lrc = log_entry(w, "call", NULL, NULL, 0, 0, data);
        json_decref(data);
        if (lrc == 0) {
            if (sp)
                t->m->release(t->s);
            return;
        }
    }
    json_decref(result);
    /* Undo the call. */
    if (sp) {
        t->m->rollback_to(t->s);
    } else if (w->fn_writes > 0) {
        /* Its writes cannot be undone alone: the group goes, and unless
         * the disk failed it runs again, carefully, where this call fails
         * alone in its savepoint. */
        t->tx_broken = true;
        t->broken_code = job->err.code ? job->err.code : E_INTERNAL;
        t->rerun = !disk_error(job->err.code) && t->m->in_tx(t->s);
        return;
    }
    back_to(t, &m0);
    drop_output(job);
    w->atail = &job->activity;
    w->tail = &job->changes;
    if (!job->err.code)
        err_set(&job->err, E_INTERNAL, "%s failed", job->fn_name);
    /* The disk failed (or the store gave the transaction up): the group goes. */
    if (disk_error(job->err.code) || !t->m->in_tx(t->s)) {
        t->tx_broken = true;
        t->broken_code = job->err.code;
        return;
    }
    /* A refusal (or a bug): the answer, and the log says so. */
    err_move(&job->fn_err, &job->err);
    json_t *data = json_pack("{sssbss}", "fn", job->fn_name, "ok", 0, "error",
                             err_name(job->fn_err.code));
    log_entry(w, "call", NULL, NULL, 0, 0, data);
    json_decref(data);
}

/* ------------------------------------------------------------------ requests */

static bool storage_error(err_code code) { return code == E_INTERNAL || disk_error(code); }

static void run_job_ops(wctx *w)
{
    txn_t *t = w->t;
    wjob *job = w->job;
    mark m0 = mark_now(t);
    job->seq = m0.seq - 1;

    if (job->kind == WJ_PROBE) {
        t->m->probe(t->s, time_now_ms(), &job->err);
        return;
    }
    bool sp = job->is_batch || job->idem_key || job->nops > 1;
    if (sp && t->m->savepoint(t->s, &job->err))
        return;
    if (job->idem_key &&
        t->m->idem_get(t->s, job->idem_account, job->idem_key, time_now_ms() - TXN_IDEMPOTENCY_MS,
                       &job->status, &job->version, &job->answer) == TXN_FOUND) {
        job->replayed = true;
        t->m->release(t->s);
        return;
    }
    int rc = 0;
    if (job->is_batch)
        buf_puts(&job->answer, "{\"results\":[");
    for (int i = 0; i < job->nops && rc == 0; i++) {
        if (i)
            buf_putc(&job->answer, ',');
        int status = 200;
        rc = run_op(w, &job->ops[i], &job->answer, &status);
        if (rc && job->is_batch) {
            json_t *d = json_pack("{si}", "index", i);
            if (job->err.details && json_is_object(job->err.details))
                json_object_update(d, job->err.details);
            else if (job->err.details) /* the fields a schema refused */
                json_object_set(d, "fields", job->err.details);
            err_details(&job->err, d);
        }
        job->status = job->is_batch ? 200 : status;
    }
    if (rc == 0 && job->log_action[0])
        rc = log_entry(w, job->log_action, NULL, NULL, 0, 0, job->log_data);
    if (rc == 0 && job->is_batch)
        buf_printf(&job->answer, "],\"seq\":%lld}", (long long)job->seq);
    if (rc == 0 && job->idem_key)
        rc = t->m->idem_put(t->s, job->idem_account, job->idem_key, time_now_ms(), job->status,
                            job->version, job->answer.p, job->answer.len, &job->err);
    if (rc == 0) {
        if (sp)
            t->m->release(t->s);
        return;
    }
    /* Fails alone: undo its rows, give back its seqs, drop its changes. */
    if (!job->err.code)
        err_set(&job->err, E_INTERNAL, "the write failed");
    if (sp) {
        t->m->rollback_to(t->s);
    } else if (storage_error(job->err.code)) {
        t->tx_broken = true;
        t->broken_code = job->err.code;
    }
    back_to(t, &m0);
    drop_output(job);
}

static void run_job(txn_t *t, wjob *job)
{
    wctx w = {.t = t, .job = job, .tail = &job->changes, .atail = &job->activity};
    w.now_ms = time_now_ms();
    time_format_rfc3339(w.now_ms, w.now);
    if (job->kind == WJ_FN)
        run_fn(&w);
    else
        run_job_ops(&w);
    json_decref(w.auth);
}

/* ------------------------------------------------------------------ groups */

void txn_prepare(txn_t *t, wjob *jobs)
{
    for (wjob *j = jobs; j; j = j->next) {
        if (j->kind == WJ_INDEX) {
            if (t->m->ensure_col(t->s, j->index_col, &j->err) == 0)
                t->m->auto_index(t->s, j->index_col, j->index_field, &j->err);
            continue;
        }
        for (int i = 0; i < j->nops; i++)
            if (j->ops[i].kind < W_CRED) { /* private ops have no collection */
                err_t e = {0};
                t->m->ensure_col(t->s, j->ops[i].col, &e);
                err_clear(&e); /* the op fails on its own when the table is missing */
            }
    }
}

/* The group's transaction was rolled back: the feed and the log go back
 * to where they were, and every job to before it ran. */
static void group_undo(txn_t *t, wjob *jobs, const mark *m0)
{
    back_to(t, m0);
    for (wjob *j = jobs; j; j = j->next) {
        drop_output(j);
        err_clear(&j->err);
        err_clear(&j->fn_err);
        j->status = 0;
        j->version = 0;
        j->seq = 0;
        j->replayed = false;
    }
    INVARIANT(gapless(jobs, m0->seq, t->next_seq, m0->aseq, t->next_aseq));
}

void txn_refuse_group(wjob *jobs, err_code code, const char *msg)
{
    for (wjob *j = jobs; j; j = j->next) {
        j->err.code = code;
        snprintf(j->err.msg, sizeof j->err.msg, "%s", msg);
    }
}

/* The group's transaction; on a shared store, from where its head stands. */
static int group_begin(txn_t *t, const wjob *jobs, err_t *err)
{
    if (t->m->begin(t->s, err))
        return -1;
    if (t->m->head && t->m->head(t->s, &t->next_seq, &t->next_aseq, t->last_hash, err)) {
        t->m->rollback(t->s);
        return -1;
    }
    if (t->m->prefetch)
        t->m->prefetch(t->s, jobs);
    return 0;
}

int txn_run_group(txn_t *t, wjob *jobs)
{
    const txn_methods *m = t->m;
    err_t txerr = {0};
    int began = group_begin(t, jobs, &txerr);
    mark m0 = mark_now(t);
    if (began == 0) {
        t->careful = false;
        for (;;) {
            t->tx_broken = false;
            t->rerun = false;
            for (wjob *j = jobs; j && !t->rerun; j = j->next) /* rerun: the rest is undone */
                if (j->kind != WJ_INDEX)
                    run_job(t, j);
            if (!t->rerun || t->careful)
                break;
            /* A call failed after a write: all again, a savepoint each. */
            m->rollback(t->s);
            group_undo(t, jobs, &m0);
            t->careful = true;
            metrics_add(M_GROUP_RERUNS, 1);
            if (group_begin(t, jobs, &txerr))
                break;
            m0 = mark_now(t);
        }
        if (!txerr.code) {
            if (t->tx_broken)
                err_set(&txerr, t->broken_code, "a write failed; nothing of its group was kept");
            else if (m->commit(t->s, &txerr) && NEVER(!txerr.code))
                err_set(&txerr, E_INTERNAL, "the commit failed");
            if (txerr.code && m->in_tx(t->s))
                m->rollback(t->s);
        }
    }
    int rc = 0;
    if (txerr.code) {
        /* Nothing of this group is durable: every job fails. */
        group_undo(t, jobs, &m0);
        txn_refuse_group(jobs, txerr.code, txerr.msg);
        rc = -1;
    }
    INVARIANT(gapless(jobs, m0.seq, t->next_seq, m0.aseq, t->next_aseq));
    err_clear(&txerr);
    return rc;
}
