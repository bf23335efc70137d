/*
 * store.c: opening and closing a store, whichever backend holds the rows,
 * and read jobs on libuv's thread pool (the backend runs each inside one
 * read snapshot).
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "../util/log.h"

static const store_backend *backend_of(const store_opts *where)
{
    return where->postgres ? &pg_backend : &sqlite_backend;
}

static int mkdir_p(const char *dir)
{
    char *tmp = xstrdup(dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
            free(tmp);
            return -1;
        }
        *p = '/';
    }
    int rc = mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
    free(tmp);
    return rc;
}

int store_open(store_t **out, uv_loop_t *loop, const store_opts *opts, err_t *err)
{
    store_t *st = xcalloc(1, sizeof *st);
    st->loop = loop;
    st->opts = *opts;
    if (st->opts.retain_changes < 1)
        st->opts.retain_changes = 1;
    if (st->opts.readers < 1)
        st->opts.readers = 1;
    st->dir = opts->dir ? xstrdup(opts->dir) : NULL;
    st->lock_fd = -1;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);

    /* A command's store over PostgreSQL needs no directory of its own. */
    if (!st->dir && !opts->postgres) {
        err_set(err, E_INTERNAL, "a store needs a data directory or PostgreSQL");
        goto fail;
    }
    if (!st->dir)
        goto open;
    if (mkdir_p(st->dir) != 0) {
        err_set(err, E_UNAVAILABLE, "cannot create data directory %s: %s", st->dir,
                strerror(errno));
        goto fail;
    }
    buf_t b = {0};
    buf_printf(&b, "%s/livedb.lock", st->dir);
    st->lock_fd = open(b.p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    buf_free(&b);
    if (st->lock_fd < 0 || flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        err_set(err, E_CONFLICT,
                "data directory %s is in use by another livedb process (or not writable)",
                st->dir);
        goto fail;
    }
open:
    st->be = backend_of(opts);
    if (st->be->open(st, err))
        goto fail;
    atomic_store(&st->heartbeat, time_mono_ns());

    uv_async_init(loop, &st->async, on_done_async);
    st->async.data = st;
    if (pthread_create(&st->thread, NULL, writer_main, st) != 0) {
        err_set(err, E_INTERNAL, "cannot start the writer thread");
        uv_close((uv_handle_t *)&st->async, NULL);
        goto fail;
    }
    if (st->be->start && st->be->start(st, err)) {
        store_close(st);
        return -1;
    }
    *out = st;
    return 0;
fail:
    st->thread = 0;
    store_close(st);
    return -1;
}

void store_set_commit_cb(store_t *st, store_commit_cb cb, void *ctx)
{
    st->commit_cb = cb;
    st->commit_ctx = ctx;
}

void store_set_auth_event_cb(store_t *st, store_auth_event_cb cb, void *ctx)
{
    st->auth_cb = cb;
    st->auth_ctx = ctx;
}

bool store_shared(const store_t *st) { return !st->feed_from_jobs; }

void store_presence_say(store_t *st, const char *line)
{
    if (st->be->presence_say && strlen(line) <= STORE_PRESENCE_MAX)
        st->be->presence_say(st, line);
}

void store_set_presence_cb(store_t *st, void (*cb)(void *ctx, const char *line), void *ctx)
{
    st->presence_cb = cb;
    st->presence_ctx = ctx;
}

void store_close(store_t *st)
{
    if (!st)
        return;
    if (st->thread) {
        pthread_mutex_lock(&st->mu);
        st->stopping = true;
        st->exit_writer = true;
        pthread_cond_signal(&st->cv);
        pthread_mutex_unlock(&st->mu);
        pthread_join(st->thread, NULL);
    }
    if (st->be && !st->stopped && st->be->stop)
        st->be->stop(st);
    if (st->be)
        st->be->close(st);
    for (size_t i = 0; i < st->n_index_keys; i++)
        free(st->index_keys[i]);
    free(st->index_keys);
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st->dir);
    free(st);
}

const char *store_backend_name(const store_t *st) { return st->be->name; }

bool store_up(store_t *st, const char **why)
{
    *why = NULL;
    return !st->be->up || st->be->up(st, why);
}

/* ------------------------------------------------------------------ reads */

rjob *rjob_new(rjob_kind kind)
{
    rjob *job = xcalloc(1, sizeof *job);
    job->kind = kind;
    query_init(&job->query);
    return job;
}

void rjob_free(rjob *job)
{
    if (!job)
        return;
    free(job->id);
    query_free(&job->query);
    err_clear(&job->err);
    buf_free(&job->out);
    change_list_free(job->recs);
    free(job->chunks);
    free(job->aq_actor);
    free(job->aq_action);
    free(job);
}

bool store_may_read(const rjob *job, const char *body, size_t len)
{
    if (actor_is_admin(&job->actor))
        return true;
    json_t *d = json_loadb(body, len, 0, NULL);
    json_t *auth = actor_auth(&job->actor);
    bool ok = access_can_read(&job->actor, auth, job->col, d);
    json_decref(auth);
    json_decref(d);
    return ok;
}

bool store_emit_change(rjob *job, change_t *ch, const json_t *auth, change_t ***tail)
{
    if (auth && !access_change_visible(&job->actor, auth, ch)) {
        change_unref(ch);
        return false; /* covered, not shown */
    }
    if (job->want_recs) {
        **tail = change_ref(ch);
        *tail = &ch->next;
    } else if (job->sse) {
        buf_printf(&job->out, "id: %lld\ndata: ", (long long)ch->seq);
        buf_put(&job->out, ch->json, ch->json_len);
        buf_puts(&job->out, "\n\n");
    } else {
        if (job->count)
            buf_putc(&job->out, ',');
        buf_put(&job->out, ch->json, ch->json_len);
    }
    job->count++;
    change_unref(ch);
    return true;
}

void store_snapshot_begin(rjob *job)
{
    job->chunks = xcalloc(1, sizeof *job->chunks);
    job->nchunks = 1;
}

void store_snapshot_add(rjob *job, const char *doc, size_t len)
{
    snap_chunk *ck = &job->chunks[job->nchunks - 1];
    if (ck->count && ck->len >= job->chunk_bytes) {
        /* The array holds the next power of two of nchunks: full at one. */
        if ((job->nchunks & (job->nchunks - 1)) == 0)
            job->chunks = xrealloc(job->chunks, 2 * (size_t)job->nchunks * sizeof *job->chunks);
        ck = &job->chunks[job->nchunks++];
        *ck = (snap_chunk){.off = job->out.len};
    }
    if (ck->count)
        buf_putc(&job->out, ',');
    buf_put(&job->out, doc, len);
    ck->len = job->out.len - ck->off;
    ck->count++;
    job->count++;
}

void store_emit_entry(rjob *job, const char *entry, size_t n, const char *hash, size_t hn)
{
    if (job->count++)
        buf_putc(&job->out, ',');
    if (n > 1 && entry[n - 1] == '}') {
        buf_put(&job->out, entry, n - 1);
        buf_puts(&job->out, ",\"hash\":\"");
        buf_put(&job->out, hash, hn);
        buf_puts(&job->out, "\"}");
    } else {
        buf_put(&job->out, entry, n);
    }
}

static void read_work(uv_work_t *req)
{
    rjob *job = req->data;
    job->st->be->read(job->st, job);
}

static void read_after(uv_work_t *req, int status)
{
    rjob *job = req->data;
    if (status == UV_ECANCELED && !job->err.code)
        err_set(&job->err, E_UNAVAILABLE, "the server is shutting down");
    job->done(job);
}

void store_read(store_t *st, rjob *job)
{
    job->st = st;
    job->work.data = job;
    uv_queue_work(st->loop, &job->work, read_work, read_after);
}

int store_load_auth(store_t *st, const store_auth_cb *cb, err_t *err)
{
    return st->be->load_auth(st, cb, err);
}

/* ------------------------------------------------------------------ the log's chain */

int store_chain_step(unsigned char h[32], int64_t *expect, int64_t seq, int64_t at_ms,
                     const char *account, const char *action, const char *entry, size_t n,
                     const char *stored, err_t *err)
{
    if (*expect && seq != *expect)
        return err_set(err, E_INTERNAL, "activity entry %lld is missing (the log jumps from %lld"
                       " to %lld)", (long long)*expect, (long long)*expect - 1, (long long)seq);
    *expect = seq + 1;
    crypto_generichash_state gs;
    crypto_generichash_init(&gs, NULL, 0, 32);
    crypto_generichash_update(&gs, h, 32);
    crypto_generichash_update(&gs, (const unsigned char *)entry, n);
    crypto_generichash_final(&gs, h, 32);
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, h, 32);
    json_t *e = json_loadb(entry, n, 0, NULL);
    const char *eacc = json_string_value(json_object_get(e, "account"));
    const char *eact = json_string_value(json_object_get(e, "action"));
    int64_t eat_ms = -1;
    const char *eat = json_string_value(json_object_get(e, "at"));
    if (eat)
        time_parse_rfc3339(eat, &eat_ms);
    if (!stored || strcmp(hex, stored) != 0)
        err_set(err, E_INTERNAL, "activity entry %lld was changed: its hash does not"
                " follow from the entries before it", (long long)seq);
    else if (!e || json_integer_value(json_object_get(e, "seq")) != seq || !eacc || !eact ||
             !account || strcmp(eacc, account) != 0 || !action || strcmp(eact, action) != 0 ||
             eat_ms != at_ms)
        err_set(err, E_INTERNAL, "activity entry %lld was changed: its columns do not"
                " match its entry", (long long)seq);
    json_decref(e);
    return err->code ? -1 : 0;
}

/* ------------------------------------------------------------------ offline work */

int store_verify(const store_opts *where, int64_t *entries, err_t *err)
{
    return backend_of(where)->verify(where, entries, err);
}

int store_activity_each(const store_opts *where, int64_t since_ms,
                        void (*row)(void *ctx, const char *entry, size_t len, const char *hash),
                        void *ctx, err_t *err)
{
    return backend_of(where)->activity_each(where, since_ms, row, ctx, err);
}

int store_export(const store_opts *where, FILE *out, err_t *err)
{
    return store_export_cols(where, NULL, out, err);
}

int store_export_cols(const store_opts *where, const char *const *cols, FILE *out, err_t *err)
{
    return backend_of(where)->export_cols(where, cols, out, err);
}

const store_opts *store_where(const store_t *st) { return &st->opts; }
