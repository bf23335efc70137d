/*
 * apply.c: what one write job does to the rows, on the writer thread.
 *
 * Documents (versions and If-Match, access rules, schemas, merge patch),
 * the private tables (credentials, sessions), the change rows, the activity
 * log's hash chain, idempotency keys, and server functions (fn_tx, see
 * store.h). Each job runs inside the group's transaction (writer.c), in a
 * savepoint where it may fail after it wrote.
 */
#include "sqlite_int.h"

/* ------------------------------------------------------------------ writer: collections */

static unsigned hash_str(const char *s)
{
    unsigned h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

/* The statements of a collection, creating its table when new. Runs
 * outside the group transaction (DDL commits on its own). */
static void declared_indexes(store_t *st, colstmts *c);

colstmts *writer_col(store_t *st, const char *col)
{
    unsigned h = hash_str(col) % COLS_BUCKETS;
    for (colstmts *c = st->cols[h]; c; c = c->next)
        if (strcmp(c->name, col) == 0)
            return c;
    buf_t sql = {0};
    buf_printf(&sql, "CREATE TABLE IF NOT EXISTS \"c_%s\"(id TEXT PRIMARY KEY,"
                     " version INTEGER NOT NULL, created_at TEXT NOT NULL,"
                     " updated_at TEXT NOT NULL, body TEXT NOT NULL) WITHOUT ROWID",
               col);
    if (sq_exec(st->wdb, sql.p, NULL)) {
        buf_free(&sql);
        return NULL;
    }
    colstmts *c = xcalloc(1, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", col);
    sql.len = 0;
    buf_printf(&sql, "SELECT version, created_at, body FROM \"c_%s\" WHERE id=?1", col);
    c->sel = sq_prepare(st->wdb, sql.p);
    sql.len = 0;
    buf_printf(&sql, "INSERT INTO \"c_%s\"(id,version,created_at,updated_at,body)"
                     " VALUES(?1,?2,?3,?4,?5)", col);
    c->ins = sq_prepare(st->wdb, sql.p);
    sql.len = 0;
    buf_printf(&sql, "UPDATE \"c_%s\" SET version=?2, updated_at=?4, body=?5 WHERE id=?1", col);
    c->upd = sq_prepare(st->wdb, sql.p);
    sql.len = 0;
    buf_printf(&sql, "DELETE FROM \"c_%s\" WHERE id=?1", col);
    c->del = sq_prepare(st->wdb, sql.p);
    buf_free(&sql);
    if (!c->sel || !c->ins || !c->upd || !c->del) {
        sqlite3_finalize(c->sel);
        sqlite3_finalize(c->ins);
        sqlite3_finalize(c->upd);
        sqlite3_finalize(c->del);
        free(c);
        return NULL;
    }
    char q[200];
    snprintf(q, sizeof q, "SELECT count(*) FROM indexes WHERE col='%s'", col);
    c->nindexes = (int)sq_query_i64(st->wdb, q, 0);
    c->next = st->cols[h];
    st->cols[h] = c;
    declared_indexes(st, c);
    return c;
}

/* An expression index on col.field (unique: a unique one, named after
 * the field's place in the schema so that a violation can name it). DDL
 * outside the group transaction. */
static int create_index(store_t *st, colstmts *c, const char *field, int unique_slot,
                        err_t *err)
{
    buf_t sql = {0};
    int rc;
    if (unique_slot >= 0) {
        buf_printf(&sql, "CREATE UNIQUE INDEX IF NOT EXISTS \"ux_%s_%d\" ON \"c_%s\"(", c->name,
                   unique_slot, c->name);
        sqlq_field_expr(&sql, field);
        buf_puts(&sql, ")");
        rc = sq_exec(st->wdb, sql.p, err);
        buf_free(&sql);
        return rc;
    }
    if (sq_query_i64_text2(st->wdb, "SELECT count(*) FROM indexes WHERE col=?1 AND field=?2", c->name,
                        field) > 0) {
        buf_free(&sql);
        return 0;
    }
    buf_printf(&sql, "SAVEPOINT ix; CREATE INDEX IF NOT EXISTS \"ix_%s_%d\" ON \"c_%s\"(", c->name,
               c->nindexes + 1, c->name);
    sqlq_field_expr(&sql, field);
    buf_printf(&sql, "); INSERT OR IGNORE INTO indexes VALUES('%s','%s','ix_%s_%d'); RELEASE ix;",
               c->name, field, c->name, c->nindexes + 1);
    uint64_t t0 = time_mono_ns();
    rc = sq_exec(st->wdb, sql.p, err);
    if (rc == 0) {
        c->nindexes++;
        log_msg(LOG_INFO, "created index on %s.%s in %.1f ms", c->name, field,
                (double)(time_mono_ns() - t0) / 1e6);
    } else {
        sq_exec(st->wdb, "ROLLBACK TO ix; RELEASE ix;", NULL);
    }
    buf_free(&sql);
    return rc;
}

/* What an app declares for a collection: its unique fields and indexes. */
static void declared_indexes(store_t *st, colstmts *c)
{
    const col_spec *spec = apps_col(c->name);
    if (!spec)
        return;
    for (int i = 0; i < spec->nfields; i++) {
        err_t e = {0};
        if (spec->fields[i].unique && create_index(st, c, spec->fields[i].name, i, &e))
            log_msg(LOG_WARN, "%s.%s is declared unique but is not: %s; not enforced",
                    c->name, spec->fields[i].name, e.msg);
        err_clear(&e);
    }
    for (int i = 0; i < spec->nindexes; i++) {
        err_t e = {0};
        create_index(st, c, spec->indexes[i], -1, &e);
        err_clear(&e);
    }
}

void writer_index(store_t *st, wjob *job)
{
    colstmts *c = writer_col(st, job->index_col);
    if (!c) {
        err_set(&job->err, E_INTERNAL, "cannot create collection table");
        return;
    }
    if (c->nindexes >= st->opts.auto_index_max)
        return;
    create_index(st, c, job->index_field, -1, &job->err);
}

/* ------------------------------------------------------------------ writer: ops */

typedef struct wctx {
    store_t *st;
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

/* ------------------------------------------------------------------ writer: activity */

/* Appends an entry to the activity log, chained to the one before. */
static int log_entry(wctx *w, const char *action, const char *col, const char *id, int64_t vb,
                     int64_t va, const json_t *data)
{
    store_t *st = w->st;
    const actor_t *a = &w->job->actor;
    int64_t seq = st->next_aseq;
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
        buf_puts(&e, ",\"version_before\":");
        if (vb > 0)
            buf_put_i64(&e, vb);
        else
            buf_puts(&e, "null");
        buf_puts(&e, ",\"version_after\":");
        if (va > 0)
            buf_put_i64(&e, va);
        else
            buf_puts(&e, "null");
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
    crypto_generichash_update(&gs, st->last_hash, sizeof st->last_hash);
    crypto_generichash_update(&gs, (const unsigned char *)e.p, e.len);
    crypto_generichash_final(&gs, h, sizeof h);
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    sqlite3_stmt *q = st->ins_activity;
    sqlite3_bind_int64(q, 1, seq);
    sqlite3_bind_int64(q, 2, w->now_ms);
    sqlite3_bind_text(q, 3, a->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, action, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 5, e.p, (int)e.len, SQLITE_STATIC);
    sqlite3_bind_text(q, 6, hex, 64, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    if (rc != SQLITE_DONE) {
        buf_free(&e);
        return sq_err(&w->job->err, st->wdb, rc, "activity");
    }
    st->next_aseq++;
    memcpy(st->last_hash, h, sizeof h);
    activity_rec *r = xcalloc(1, sizeof *r);
    r->seq = seq;
    r->json = buf_take(&e, &r->len);
    *w->atail = r;
    w->atail = &r->next;
    return 0;
}

static int add_change(wctx *w, const char *col, const char *id, change_op op, int64_t version,
                      const char *doc, size_t doc_len, const buf_t *prev)
{
    store_t *st = w->st;
    /* The server's own collections (_accounts) are not the apps' data:
     * their writes are in the activity log, not in the feed. */
    if (col[0] == '_')
        return 0;
    int64_t seq = st->next_seq;
    sqlite3_stmt *s = st->ins_change;
    sqlite3_bind_int64(s, 1, seq);
    sqlite3_bind_text(s, 2, col, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, change_op_name(op), -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, version);
    sqlite3_bind_text(s, 6, w->now, -1, SQLITE_STATIC);
    if (doc)
        sqlite3_bind_text(s, 7, doc, (int)doc_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 7);
    if (prev && prev->p)
        sqlite3_bind_text(s, 8, prev->p, (int)prev->len, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 8);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE)
        return sq_err(&w->job->err, st->wdb, rc, "change insert");
    st->next_seq++;
    change_t *ch = change_new(seq, col, id, op, version, doc, doc_len, w->now);
    if (prev && prev->p)
        change_set_prev(ch, prev->p, prev->len);
    *w->tail = ch;
    w->tail = &ch->next;
    w->job->seq = seq;
    return 0;
}

/* Reads the stored row: 1 found, 0 absent, -1 error. The stored text goes
 * to text (the change's prev) and, parsed, to body, each when asked. */
static int load_row(wctx *w, colstmts *c, const char *id, int64_t *version, char **created,
                    json_t **body, buf_t *text)
{
    sqlite3_stmt *s = c->sel;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int found = 0;
    if (rc == SQLITE_ROW) {
        found = 1;
        *version = sqlite3_column_int64(s, 0);
        if (created)
            *created = xstrdup((const char *)sqlite3_column_text(s, 1));
        if (text)
            buf_put(text, sqlite3_column_text(s, 2), (size_t)sqlite3_column_bytes(s, 2));
        if (body) {
            *body = json_loadb((const char *)sqlite3_column_text(s, 2),
                               (size_t)sqlite3_column_bytes(s, 2), 0, NULL);
            if (!*body) {
                found = -1;
                err_set(&w->job->err, E_INTERNAL, "stored document %s is not JSON", id);
            }
        }
    } else if (rc != SQLITE_DONE) {
        found = sq_err(&w->job->err, w->st->wdb, rc, "read");
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return found;
}

/* "UNIQUE constraint failed: index 'ux_COL_N'": field N of COL's schema. */
static int unique_violation(wctx *w)
{
    const char *msg = sqlite3_errmsg(w->st->wdb);
    const char *ix = strstr(msg, "'ux_");
    const char *us = ix ? strrchr(ix, '_') : NULL;
    char col[65] = "";
    int slot = -1;
    if (us && (size_t)(us - ix - 4) < sizeof col) {
        memcpy(col, ix + 4, (size_t)(us - ix - 4));
        col[us - ix - 4] = '\0';
        slot = atoi(us + 1);
    }
    const col_spec *spec = col[0] ? apps_col(col) : NULL;
    const char *field = spec && slot >= 0 && slot < spec->nfields ? spec->fields[slot].name : "?";
    err_set(&w->job->err, E_INVALID, "another document of %s has this %s", col, field);
    err_details(&w->job->err, json_pack("[{ssss}]", "field", field, "reason",
                                        "must be unique: another document has this value"));
    return -1;
}

static int write_row(wctx *w, sqlite3_stmt *s, const char *id, int64_t version,
                     const char *created, const buf_t *doc)
{
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, version);
    if (created)
        sqlite3_bind_text(s, 3, created, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, w->now, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, doc->p, (int)doc->len, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        return err_set(&w->job->err, E_CONFLICT, "a document with id %s exists", id);
    if (rc == SQLITE_CONSTRAINT_UNIQUE)
        return unique_violation(w);
    if (rc != SQLITE_DONE)
        return sq_err(&w->job->err, w->st->wdb, rc, "write");
    return 0;
}

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

/* Whether the actor may do act on a document of spec's collection; doc is
 * the stored document (update, delete), newdoc the incoming one (create,
 * update). An update or delete of a document the actor may not even read
 * is "not found": its existence is not theirs to learn. */
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

/* The private ops: password hashes and sessions. */
static int run_private(wctx *w, wop *op)
{
    store_t *st = w->st;
    sqlite3_stmt *q = NULL;
    switch (op->kind) {
    case W_CRED:
        q = st->cred_put;
        sqlite3_bind_text(q, 1, op->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, json_string_value(json_object_get(op->doc, "hash")), -1,
                          SQLITE_STATIC);
        break;
    case W_SESSION_ADD:
        q = st->sess_put;
        sqlite3_bind_text(q, 1, op->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, json_string_value(json_object_get(op->doc, "session")), -1,
                          SQLITE_STATIC);
        sqlite3_bind_text(q, 3, json_string_value(json_object_get(op->doc, "account")), -1,
                          SQLITE_STATIC);
        sqlite3_bind_int64(q, 4, w->now_ms);
        sqlite3_bind_int64(q, 5, json_integer_value(json_object_get(op->doc, "expires_at")));
        break;
    case W_SESSION_DEL:
        q = st->sess_del;
        sqlite3_bind_text(q, 1, op->id, -1, SQLITE_STATIC);
        break;
    default: /* W_SESSIONS_DEL */
        q = st->sess_del_account;
        sqlite3_bind_text(q, 1, op->id, -1, SQLITE_STATIC);
        break;
    }
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc == SQLITE_DONE ? 0 : sq_err(&w->job->err, st->wdb, rc, "account");
}

/* Runs one op; appends its answer to out. Every check (version, access,
 * schema) comes before the op's first write: a single op that fails a
 * check has written nothing (see run_job). */
static int run_op(wctx *w, wop *op, buf_t *out, int *status)
{
    *status = 200;
    if (op->kind >= W_CRED) {
        int rc = run_private(w, op);
        if (rc == 0)
            buf_puts(out, "{}");
        return rc;
    }
    colstmts *c = writer_col(w->st, op->col);
    if (!c)
        return err_set(&w->job->err, E_INTERNAL, "cannot open collection %s", op->col);
    bool admin = actor_is_admin(&w->job->actor) || w->trusted;
    int64_t version = 0;
    char *created = NULL;
    json_t *stored = NULL, *newdoc = NULL;
    buf_t doc = {0}, prev = {0};
    int rc = -1;
    change_op chop = CH_UPDATE;

    if (op->kind == W_CREATE || op->kind == W_PUT) {
        size_t mlen;
        char *members = doc_members(op->doc, &mlen);
        int found = 0;
        if (op->kind == W_PUT) {
            found = load_row(w, c, op->id, &version, &created,
                             op->skip_unchanged || !admin ? &stored : NULL, &prev);
            if (found < 0 || check_version(w, op, found, version))
                goto out_members;
        }
        if (!admin) {
            newdoc = with_id(op->doc, op->id);
            if (check_access(w, op, found ? ACT_UPDATE : ACT_CREATE, found ? stored : NULL,
                             newdoc))
                goto out_members;
        }
        if (check_schema(w, op, op->doc))
            goto out_members;
        if (found && stored && op->skip_unchanged) {
            doc_take_server_fields(stored, NULL, NULL, &w->job->err);
            if (json_equal(stored, op->doc)) { /* a re-import: nothing to write */
                buf_put(&doc, prev.p, prev.len);
                rc = 0;
                goto out_members;
            }
        }
        int64_t before = version;
        if (found) {
            version++;
            doc_compose(&doc, op->id, version, created, w->now, members, mlen);
        } else {
            version = 1;
            *status = 201;
            chop = CH_CREATE;
            doc_compose(&doc, op->id, version, w->now, w->now, members, mlen);
        }
        if (doc.len > DOC_MAX_BYTES)
            rc = err_set(&w->job->err, E_PAYLOAD_TOO_LARGE, "the document is over 1 MiB");
        else
            rc = write_row(w, found ? c->upd : c->ins, op->id, version, found ? NULL : w->now,
                           &doc);
        if (rc == 0)
            rc = add_change(w, op->col, op->id, chop, version, doc.p, doc.len, &prev);
        if (rc == 0)
            rc = log_entry(w, found ? "update" : "create", op->col, op->id, before, version, NULL);
    out_members:
        free(members);
    } else if (op->kind == W_PATCH) {
        int found = load_row(w, c, op->id, &version, &created, &stored, &prev);
        if (found < 0 || check_version(w, op, found, version))
            goto done;
        if (!found || (!admin && !access_can_read(&w->job->actor, wauth(w), op->col, stored))) {
            err_set(&w->job->err, E_NOT_FOUND, "no document %s in %s", op->id, op->col);
            goto done;
        }
        json_t *before_doc = admin ? NULL : json_deep_copy(stored);
        stored = merge_patch(stored, op->doc);
        doc_take_server_fields(stored, NULL, NULL, &w->job->err);
        if (!admin) {
            newdoc = with_id(stored, op->id);
            int denied = check_access(w, op, ACT_UPDATE, before_doc, newdoc);
            json_decref(before_doc);
            if (denied)
                goto done;
        }
        if (check_schema(w, op, stored))
            goto done;
        size_t mlen;
        char *members = doc_members(stored, &mlen);
        int64_t before = version++;
        doc_compose(&doc, op->id, version, created, w->now, members, mlen);
        free(members);
        if (doc.len > DOC_MAX_BYTES) {
            err_set(&w->job->err, E_PAYLOAD_TOO_LARGE, "the patched document is over 1 MiB");
            goto done;
        }
        rc = write_row(w, c->upd, op->id, version, NULL, &doc);
        if (rc == 0)
            rc = add_change(w, op->col, op->id, CH_UPDATE, version, doc.p, doc.len, &prev);
        if (rc == 0)
            rc = log_entry(w, "update", op->col, op->id, before, version, NULL);
    } else { /* W_DELETE */
        int found = load_row(w, c, op->id, &version, NULL, admin ? NULL : &stored, &prev);
        if (found < 0 || check_version(w, op, found, version))
            goto done;
        if (!found) {
            err_set(&w->job->err, E_NOT_FOUND, "no document %s in %s", op->id, op->col);
            goto done;
        }
        if (!admin && check_access(w, op, ACT_DELETE, stored, NULL))
            goto done;
        sqlite3_bind_text(c->del, 1, op->id, -1, SQLITE_STATIC);
        int src = sqlite3_step(c->del);
        sqlite3_reset(c->del);
        sqlite3_clear_bindings(c->del);
        if (src != SQLITE_DONE) {
            sq_err(&w->job->err, w->st->wdb, src, "delete");
            goto done;
        }
        buf_puts(&doc, "{\"id\":");
        buf_put_json_str(&doc, op->id, strlen(op->id));
        buf_printf(&doc, ",\"version\":%lld}", (long long)version);
        rc = add_change(w, op->col, op->id, CH_DELETE, version, NULL, 0, &prev);
        if (rc == 0)
            rc = log_entry(w, "delete", op->col, op->id, version, 0, NULL);
    }
done:
    if (rc == 0) {
        buf_put(out, doc.p, doc.len);
        w->job->version = version;
    }
    /* For a server function: the document as written, from the objects at
     * hand (the same members, in the same order, as the stored text), not
     * by parsing that text again. */
    if (rc == 0 && w->want_written && !op->skip_unchanged &&
        (op->kind == W_PATCH || op->kind == W_CREATE || op->kind == W_PUT)) {
        json_t *members = op->kind == W_PATCH ? stored : op->doc;
        json_t *d = json_object();
        json_object_set_new(d, "id", json_string(op->id));
        json_object_set_new(d, "version", json_integer(version));
        json_object_set_new(d, "created_at", json_string(created ? created : w->now));
        json_object_set_new(d, "updated_at", json_string(w->now));
        json_object_update(d, members);
        w->written = d;
    }
    buf_free(&doc);
    buf_free(&prev);
    free(created);
    json_decref(stored);
    json_decref(newdoc);
    return rc;
}

static int idem_lookup(wctx *w)
{
    wjob *job = w->job;
    sqlite3_stmt *s = w->st->idem_get;
    sqlite3_bind_text(s, 1, job->idem_account, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, job->idem_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, time_now_ms() - IDEMPOTENCY_MS);
    int found = 0;
    if (sqlite3_step(s) == SQLITE_ROW) {
        found = 1;
        job->status = sqlite3_column_int(s, 0);
        job->version = sqlite3_column_int64(s, 1);
        buf_put(&job->answer, sqlite3_column_text(s, 2), (size_t)sqlite3_column_bytes(s, 2));
        job->replayed = true;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return found;
}

static int idem_store(wctx *w)
{
    wjob *job = w->job;
    sqlite3_stmt *s = w->st->idem_put;
    sqlite3_bind_text(s, 1, job->idem_account, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, job->idem_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, time_now_ms());
    sqlite3_bind_int(s, 4, job->status);
    sqlite3_bind_int64(s, 5, job->version);
    sqlite3_bind_text(s, 6, job->answer.p, (int)job->answer.len, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? 0 : sq_err(&job->err, w->st->wdb, rc, "idempotency");
}

static bool storage_error(err_code code)
{
    return code == E_INTERNAL || code == E_UNAVAILABLE || code == E_STORAGE_FULL;
}

/* Runs one job. A job of several statements that may fail half-way (a
 * batch, an idempotent request) runs in its own SAVEPOINT and fails alone.
 * A single op makes every check before its first write, so when it fails a
 * check nothing was written and no savepoint is needed; when the disk
 * fails it mid-way, the whole group is rolled back (tx_broken). */
/* ------------------------------------------------------------------ writer: functions */

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
    colstmts *c = writer_col(t->w->st, col);
    if (!c)
        return NULL;
    int64_t version;
    json_t *body = NULL;
    if (load_row(t->w, c, id, &version, NULL, &body, NULL) <= 0)
        return NULL;
    return body;
}

json_t *fn_find(fn_tx *t, const char *col, const query_t *q)
{
    json_t *out = json_array();
    if (!writer_col(t->w->st, col))
        return out;
    sqlq sq;
    sqlq_build_list(&sq, q, col);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(t->w->st->wdb, sq.sql.p, -1, &s, NULL) == SQLITE_OK) {
        sqlq_bind(s, &sq);
        int n = 0;
        while (sqlite3_step(s) == SQLITE_ROW && (q->limit <= 0 || n++ < q->limit))
            json_array_append_new(out, json_loadb((const char *)sqlite3_column_text(s, 0),
                                                  (size_t)sqlite3_column_bytes(s, 0), 0, NULL));
    }
    sqlite3_finalize(s);
    sqlq_free(&sq);
    return out;
}

json_t *fn_write(fn_tx *t, wop_kind kind, const char *col, const char *id, json_t *doc)
{
    wop op = {.kind = kind, .doc = doc, .if_version = -1};
    snprintf(op.col, sizeof op.col, "%s", col);
    if (id) {
        op.id = xstrdup(id);
    } else {
        op.id = xmalloc(DOC_GEN_ID_LEN + 1);
        time_ordered_id(op.id, DOC_GEN_ID_LEN);
    }
    if (doc && kind != W_PATCH)
        doc_take_server_fields(op.doc, NULL, NULL, &t->w->job->err);
    buf_t out = {0};
    int status;
    t->w->want_written = true;
    int rc;
    if (t->w->fn_writes > 0 && vfs_fault(3, 'W')) /* the test seam, vfs.h */
        rc = err_set(&t->w->job->err, E_INTERNAL, "a write failed (LIVEDB_FAULTS)");
    else
        rc = run_op(t->w, &op, &out, &status);
    if (rc == 0)
        t->w->fn_writes++;
    t->w->want_written = false;
    json_t *written = t->w->written;
    t->w->written = NULL;
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

/* A function call: refused or failed, its writes go and the refusal is
 * the call's answer; either way the call is logged. Its writes are undone
 * by its savepoint when the group runs carefully; otherwise there is none,
 * and a call that fails after a write has the group run again carefully. */
static void run_fn(store_t *st, wjob *job, wctx *w)
{
    int64_t seq0 = st->next_seq, aseq0 = st->next_aseq;
    unsigned char hash0[32];
    memcpy(hash0, st->last_hash, sizeof hash0);
    job->seq = seq0 - 1;
    bool sp = st->careful;
    int rc = sp ? sq_step(st->savepoint) : SQLITE_OK;
    if (rc != SQLITE_OK) {
        sq_err(&job->err, st->wdb, rc, "savepoint");
        return;
    }
    fn_tx t = {.w = w};
    json_t *result = NULL;
    w->trusted = true;
    int frc = job->fn(&t, job->fn_args, &result);
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
                sq_step(st->release);
            return;
        }
    }
    json_decref(result);
    /* Undo the call. */
    if (sp) {
        sq_step(st->rollback_to);
        sq_step(st->release);
    } else if (w->fn_writes > 0) {
        /* Its writes cannot be undone alone: the group goes, and unless
         * the disk failed it runs again, carefully, where this call fails
         * alone in its savepoint. */
        st->tx_broken = true;
        st->broken_code = job->err.code ? job->err.code : E_INTERNAL;
        st->rerun = job->err.code != E_UNAVAILABLE && job->err.code != E_STORAGE_FULL &&
                    !sqlite3_get_autocommit(st->wdb);
        return;
    }
    st->next_seq = seq0;
    st->next_aseq = aseq0;
    memcpy(st->last_hash, hash0, sizeof hash0);
    free_changes(job->changes);
    job->changes = NULL;
    activity_free(job->activity);
    job->activity = NULL;
    w->atail = &job->activity;
    w->tail = &job->changes;
    job->answer.len = 0;
    if (!job->err.code)
        err_set(&job->err, E_INTERNAL, "%s failed", job->fn_name);
    /* The disk failed (or SQLite gave the transaction up): the group goes. */
    if (job->err.code == E_UNAVAILABLE || job->err.code == E_STORAGE_FULL ||
        sqlite3_get_autocommit(st->wdb)) {
        st->tx_broken = true;
        st->broken_code = job->err.code;
        return;
    }
    /* A refusal (or a bug): the answer, and the log says so. */
    err_move(&job->fn_err, &job->err);
    json_t *data = json_pack("{sssbss}", "fn", job->fn_name, "ok", 0, "error",
                             err_name(job->fn_err.code));
    log_entry(w, "call", NULL, NULL, 0, 0, data);
    json_decref(data);
}

static void run_job_ops(store_t *st, wjob *job, wctx *w);

void run_job(store_t *st, wjob *job)
{
    wctx w = {.st = st, .job = job, .tail = &job->changes, .atail = &job->activity};
    w.now_ms = time_now_ms();
    time_format_rfc3339(w.now_ms, w.now);
    if (job->kind == WJ_FN)
        run_fn(st, job, &w);
    else
        run_job_ops(st, job, &w);
    json_decref(w.auth);
}

static void run_job_ops(store_t *st, wjob *job, wctx *w)
{
    int64_t seq0 = st->next_seq, aseq0 = st->next_aseq;
    unsigned char hash0[32];
    memcpy(hash0, st->last_hash, sizeof hash0);
    job->seq = seq0 - 1;

    if (job->kind == WJ_PROBE) {
        sqlite3_bind_int64(st->probe, 1, time_now_ms());
        int rc = sq_step(st->probe);
        if (rc != SQLITE_OK)
            sq_err(&job->err, st->wdb, rc, "health probe");
        return;
    }
    bool sp = job->is_batch || job->idem_key || job->nops > 1;
    if (sp) {
        int rc = sq_step(st->savepoint);
        if (rc != SQLITE_OK) {
            sq_err(&job->err, st->wdb, rc, "savepoint");
            return;
        }
    }
    int rc = 0;
    if (job->idem_key && idem_lookup(w)) {
        sq_step(st->release);
        return;
    }
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
        rc = idem_store(w);
    if (rc == 0) {
        if (sp)
            sq_step(st->release);
        return;
    }
    /* Fails alone: undo its rows, give back its seqs, drop its changes. */
    if (!job->err.code)
        err_set(&job->err, E_INTERNAL, "the write failed");
    if (sp) {
        sq_step(st->rollback_to);
        sq_step(st->release);
    } else if (storage_error(job->err.code)) {
        st->tx_broken = true;
        st->broken_code = job->err.code;
    }
    st->next_seq = seq0;
    st->next_aseq = aseq0;
    memcpy(st->last_hash, hash0, sizeof hash0);
    free_changes(job->changes);
    job->changes = NULL;
    activity_free(job->activity);
    job->activity = NULL;
    job->answer.len = 0;
}

