/*
 * writer.c: the writer's queue and groups (group commit) and its thread.
 *
 * The loop thread queues jobs (store_submit); the writer takes every job
 * queued and has core run them in one transaction (core/txn.c: what each
 * job means, the commit, the undo that keeps the feed gapless), then hands
 * them back through the done queue and a uv_async_t, in commit order.
 * What a job means is core's; where its rows go is the backend's.
 */
#include "store_int.h"

#include <string.h>

#include "../core/apps.h"
#include "../util/log.h"
#include "../util/metrics.h"
#include "vfs.h"

void store_submit(store_t *st, wjob *job)
{
    job->t_queued = time_mono_ns();
    pthread_mutex_lock(&st->mu);
    if (st->stopping) {
        pthread_mutex_unlock(&st->mu);
        err_set(&job->err, E_UNAVAILABLE, "the server is shutting down");
        job->done(job);
        return;
    }
    job->next = NULL;
    if (st->q_tail)
        st->q_tail->next = job;
    else
        st->q_head = job;
    st->q_tail = job;
    st->q_len++;
    metrics_gauge_set(M_WRITER_QUEUE, st->q_len);
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

void store_drain(store_t *st, void (*done)(void *), void *ctx)
{
    pthread_mutex_lock(&st->mu);
    st->stopping = true;
    st->exit_writer = true;
    st->draining = true;
    st->drained = done;
    st->drained_ctx = ctx;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    if (st->be->stop && !st->stopped)
        st->be->stop(st);
    st->stopped = true;
}

int store_queue_depth(store_t *st)
{
    pthread_mutex_lock(&st->mu);
    int n = st->q_len;
    pthread_mutex_unlock(&st->mu);
    return n;
}

int64_t store_committed_seq(const store_t *st) { return atomic_load(&st->committed_seq); }
bool store_failed(const store_t *st) { return atomic_load(&st->failed); }
int64_t store_first_seq(const store_t *st) { return atomic_load(&st->first_seq); }

void store_index_known(store_t *st, const char *col, const char *field)
{
    buf_t k = {0};
    buf_printf(&k, "%s\t%s", col, field);
    st->index_keys = xrealloc(st->index_keys, (st->n_index_keys + 1) * sizeof(char *));
    st->index_keys[st->n_index_keys++] = buf_take(&k, NULL);
}
const char *store_dir(const store_t *st) { return st->dir; }

uint64_t store_writer_heartbeat(store_t *st, bool *busy)
{
    *busy = atomic_load(&st->busy) || store_queue_depth(st) > 0;
    return atomic_load(&st->heartbeat);
}


static void prune(store_t *st)
{
    int64_t last = st->txn.next_seq - 1;
    int64_t first = atomic_load(&st->first_seq);
    int64_t keep = st->opts.retain_changes;
    /* Prune in steps of a tenth of the window (at least 1), so the cost is
     * spread and rare. */
    int64_t slack = keep / 10 > 0 ? keep / 10 : 1;
    if (last - first + 1 < keep + slack)
        return;
    int64_t new_first = last - keep + 1;
    int64_t now = time_now_ms(), idem_before = 0;
    if (now - st->last_prune_check > 600000) {
        st->last_prune_check = now;
        idem_before = now - TXN_IDEMPOTENCY_MS;
    }
    if (st->be->prune(st, new_first, idem_before) == 0)
        atomic_store(&st->first_seq, new_first);
}

/* One group: every queued job, one transaction, one fsync. */
static void commit_group(store_t *st, wjob *jobs, int n)
{
    uint64_t t0 = time_mono_ns();
    int64_t seq_before = st->txn.next_seq;
    uint64_t sync_failures = vfs_thread_sync_failures();
    if (atomic_load(&st->failed)) {
        txn_refuse_group(jobs, E_UNAVAILABLE,
                         "writes are stopped: the disk failed to confirm a write (fsync); check"
                         " the disk, then restart livedb");
    } else {
        /* DDL first, each committing alone: tables of new collections and
         * requested indexes. Then the group transaction holds only data. */
        txn_prepare(&st->txn, jobs);
        txn_run_group(&st->txn, jobs);
    }
    if (vfs_thread_sync_failures() != sync_failures && !atomic_load(&st->failed)) {
        atomic_store(&st->failed, true);
        log_msg(LOG_ERROR, "an fsync failed: writes are stopped until livedb is restarted"
                           " (what was acknowledged before is safe; check the disk)");
    }
    int64_t committed = st->txn.next_seq - 1;
    /* A backend with a feed of its own moves committed_seq as the feed
     * hands the changes on. */
    if (st->feed_from_jobs)
        atomic_store(&st->committed_seq, committed);
    uint64_t t1 = time_mono_ns();
    metrics_observe(M_COMMIT_SECONDS, (double)(t1 - t0) / 1e9);
    metrics_observe(M_COMMIT_BATCH, n);
    metrics_add(M_CHANGES_COMMITTED, (uint64_t)(committed - seq_before + 1));
    prune(st);
}

void *writer_main(void *arg)
{
    store_t *st = arg;
    /* The apps' collections exist before any job: a server function never
     * creates a table inside its transaction. */
    for (int i = 0; st->opts.app_collections && i < apps_count(); i++) {
        err_t e = {0};
        st->txn.m->ensure_col(st->txn.s, apps_at(i)->name, &e);
        err_clear(&e);
    }
    for (;;) {
        pthread_mutex_lock(&st->mu);
        while (!st->q_head && !st->exit_writer)
            pthread_cond_wait(&st->cv, &st->mu);
        if (!st->q_head && st->exit_writer) {
            pthread_mutex_unlock(&st->mu);
            break;
        }
        wjob *head = st->q_head, *tail = head;
        int n = 1;
        while (tail->next && n < MAX_GROUP) {
            tail = tail->next;
            n++;
        }
        st->q_head = tail->next;
        if (!st->q_head)
            st->q_tail = NULL;
        tail->next = NULL;
        st->q_len -= n;
        metrics_gauge_set(M_WRITER_QUEUE, st->q_len);
        atomic_store(&st->busy, true);
        pthread_mutex_unlock(&st->mu);

        commit_group(st, head, n);

        pthread_mutex_lock(&st->mu);
        if (st->d_tail)
            st->d_tail->next = head;
        else
            st->d_head = head;
        st->d_tail = tail;
        pthread_mutex_unlock(&st->mu);
        atomic_store(&st->heartbeat, time_mono_ns());
        atomic_store(&st->busy, false);
        uv_async_send(&st->async);
    }
    pthread_mutex_lock(&st->mu);
    st->writer_exited = true;
    pthread_mutex_unlock(&st->mu);
    uv_async_send(&st->async);
    return NULL;
}

/* Loop thread: answers in commit order. */
void on_done_async(uv_async_t *h)
{
    store_t *st = h->data;
    pthread_mutex_lock(&st->mu);
    wjob *j = st->d_head;
    st->d_head = st->d_tail = NULL;
    bool exited = st->writer_exited;
    pthread_mutex_unlock(&st->mu);
    if (st->be->catch_up) {
        int64_t top = 0;
        for (wjob *k = j; k; k = k->next)
            for (change_t *ch = k->changes; ch; ch = ch->next)
                top = ch->seq > top ? ch->seq : top;
        if (top > atomic_load(&st->committed_seq))
            st->be->catch_up(st, top);
    }
    while (j) {
        wjob *next = j->next;
        j->next = NULL;
        /* From a backend with a feed of its own, the changes come
         * through it (in the seq order of every node's commits). */
        change_t *ch = st->feed_from_jobs ? j->changes : NULL;
        if ((ch || j->activity) && st->commit_cb)
            st->commit_cb(st->commit_ctx, ch, j->activity);
        j->done(j);
        j = next;
    }
    if (exited && st->draining && st->thread) {
        void (*cb)(void *) = st->drained;
        pthread_join(st->thread, NULL);
        st->thread = 0;
        uv_close((uv_handle_t *)&st->async, NULL);
        if (cb)
            cb(st->drained_ctx);
    }
}

/* ------------------------------------------------------------------ indexes */

void store_want_index(store_t *st, const char *col, const char *field)
{
    if (st->opts.auto_index_max <= 0 || strcmp(field, "id") == 0)
        return;
    buf_t k = {0};
    buf_printf(&k, "%s\t%s", col, field);
    size_t per_col = 0, clen = strlen(col);
    for (size_t i = 0; i < st->n_index_keys; i++) {
        if (strcmp(st->index_keys[i], k.p) == 0) {
            buf_free(&k);
            return;
        }
        if (strncmp(st->index_keys[i], col, clen) == 0 && st->index_keys[i][clen] == '\t')
            per_col++;
    }
    if (per_col >= (size_t)st->opts.auto_index_max) {
        buf_free(&k);
        return;
    }
    st->index_keys = xrealloc(st->index_keys, (st->n_index_keys + 1) * sizeof(char *));
    st->index_keys[st->n_index_keys++] = buf_take(&k, NULL);
    wjob *job = wjob_new(WJ_INDEX, 0);
    job->index_col = xstrdup(col);
    job->index_field = xstrdup(field);
    job->done = wjob_free;
    store_submit(st, job);
}

