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

#include "../util/log.h"

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
    st->dir = xstrdup(opts->dir);
    st->lock_fd = -1;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);

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
        err_set(err, E_UNAVAILABLE,
                "data directory %s is in use by another livedb process (or not writable)",
                st->dir);
        goto fail;
    }
    st->be = opts->postgres ? &pg_backend : &sqlite_backend;
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
