/*
 * writer.c: the writer's queue and groups (group commit) and its thread.
 *
 * The loop thread queues jobs (store_submit); the writer takes every job
 * queued, runs them in one transaction (apply.c runs each), commits, and
 * hands them back through the done queue and a uv_async_t, in commit order.
 * A COMMIT that fails fails the whole group, and group_undo gives back the
 * seqs and activity entries it took, so the feed stays gapless.
 */
#include "sqlite_int.h"

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

void free_changes(change_t *ch)
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
    free_changes(job->changes);
    activity_free(job->activity);
    json_decref(job->log_data);
    json_decref(job->fn_args);
    err_clear(&job->fn_err);
    free(job);
}

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
const char *store_dir(const store_t *st) { return st->dir; }

uint64_t store_writer_heartbeat(store_t *st, bool *busy)
{
    *busy = atomic_load(&st->busy) || store_queue_depth(st) > 0;
    return atomic_load(&st->heartbeat);
}


static void prune(store_t *st)
{
    int64_t last = st->next_seq - 1;
    int64_t first = atomic_load(&st->first_seq);
    int64_t keep = st->opts.retain_changes;
    /* Prune in steps of a tenth of the window (at least 1), so the cost is
     * spread and rare. */
    int64_t slack = keep / 10 > 0 ? keep / 10 : 1;
    if (last - first + 1 < keep + slack)
        return;
    int64_t new_first = last - keep + 1;
    char sql[128];
    snprintf(sql, sizeof sql, "DELETE FROM changes WHERE seq < %lld", (long long)new_first);
    if (sq_exec(st->wdb, sql, NULL) == 0)
        atomic_store(&st->first_seq, new_first);
    int64_t now = time_now_ms();
    if (now - st->last_prune_check > 600000) {
        st->last_prune_check = now;
        snprintf(sql, sizeof sql, "DELETE FROM idempotency WHERE at < %lld",
                 (long long)(now - IDEMPOTENCY_MS));
        sq_exec(st->wdb, sql, NULL);
    }
}

/* The group's transaction was rolled back: the feed and the log go back
 * to where they were, and every job to before it ran. */
static void group_undo(store_t *st, wjob *jobs, int64_t seq, int64_t aseq,
                       const unsigned char hash[32])
{
    st->next_seq = seq;
    st->next_aseq = aseq;
    memcpy(st->last_hash, hash, sizeof st->last_hash);
    for (wjob *j = jobs; j; j = j->next) {
        free_changes(j->changes);
        j->changes = NULL;
        activity_free(j->activity);
        j->activity = NULL;
        j->answer.len = 0;
        err_clear(&j->err);
        err_clear(&j->fn_err);
        j->status = 0;
        j->version = 0;
        j->seq = 0;
        j->replayed = false;
    }
}

/* One group: every queued job, one transaction, one fsync. */
static void commit_group(store_t *st, wjob *jobs, int n)
{
    uint64_t t0 = time_mono_ns();
    /* DDL first, each committing alone: tables of new collections and
     * requested indexes. Then the group transaction holds only data. */
    for (wjob *j = jobs; j; j = j->next) {
        if (j->kind == WJ_INDEX)
            writer_index(st, j);
        for (int i = 0; i < j->nops; i++)
            if (j->ops[i].kind < W_CRED) /* private ops have no collection */
                writer_col(st, j->ops[i].col);
    }
    int64_t seq_before = st->next_seq, aseq_before = st->next_aseq;
    unsigned char hash_before[32];
    memcpy(hash_before, st->last_hash, sizeof hash_before);
    err_t txerr = {0};
    uint64_t sync_failures = vfs_thread_sync_failures();
    int rc = atomic_load(&st->failed) ? SQLITE_IOERR_FSYNC : sq_step(st->begin);
    if (atomic_load(&st->failed)) {
        err_set(&txerr, E_UNAVAILABLE,
                "writes are stopped: the disk failed to confirm a write (fsync); check the disk,"
                " then restart livedb");
    } else if (rc != SQLITE_OK) {
        sq_err(&txerr, st->wdb, rc, "begin");
    } else {
        st->careful = false;
        for (;;) {
            st->tx_broken = false;
            st->rerun = false;
            for (wjob *j = jobs; j && !st->rerun; j = j->next) /* rerun: the rest is undone */
                if (j->kind != WJ_INDEX)
                    run_job(st, j);
            if (!st->rerun || st->careful)
                break;
            /* A call failed after a write: all again, a savepoint each. */
            sq_step(st->rollback);
            group_undo(st, jobs, seq_before, aseq_before, hash_before);
            st->careful = true;
            metrics_add(M_GROUP_RERUNS, 1);
            rc = sq_step(st->begin);
            if (rc != SQLITE_OK) {
                sq_err(&txerr, st->wdb, rc, "begin");
                break;
            }
        }
        if (!txerr.code) {
            rc = st->tx_broken ? SQLITE_ABORT : sq_step(st->commit);
            if (rc != SQLITE_OK) {
                if (st->tx_broken)
                    err_set(&txerr, st->broken_code, "a write failed; nothing of its group was kept");
                else
                    sq_err(&txerr, st->wdb, rc, "commit");
                if (!sqlite3_get_autocommit(st->wdb))
                    sq_step(st->rollback);
            }
        }
    }
    if (txerr.code) {
        /* Nothing of this group is durable: every job fails. */
        group_undo(st, jobs, seq_before, aseq_before, hash_before);
        for (wjob *j = jobs; j; j = j->next) {
            j->err.code = txerr.code;
            snprintf(j->err.msg, sizeof j->err.msg, "%s", txerr.msg);
        }
    }
    err_clear(&txerr);
    if (vfs_thread_sync_failures() != sync_failures && !atomic_load(&st->failed)) {
        atomic_store(&st->failed, true);
        log_msg(LOG_ERROR, "an fsync failed: writes are stopped until livedb is restarted"
                           " (what was acknowledged before is safe; check the disk)");
    }
    int64_t committed = st->next_seq - 1;
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
    for (int i = 0; st->opts.app_collections && i < apps_count(); i++)
        writer_col(st, apps_at(i)->name);
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
    while (j) {
        wjob *next = j->next;
        j->next = NULL;
        if ((j->changes || j->activity) && st->commit_cb)
            st->commit_cb(st->commit_ctx, j->changes, j->activity);
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

