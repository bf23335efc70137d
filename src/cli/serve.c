/*
 * serve.c: livedb serve, the server: its options, the start-up order
 * (apps, store and its recovery, identity and logins, the feed, the API
 * and the hub's listeners, realtime, backups, snapshots, the listener),
 * and the stop on SIGTERM/SIGINT that finishes the writes in flight.
 */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <sqlite3.h>
#include <unistd.h>
#include <uv.h>

#include "../api/api.h"
#include "../core/apps.h"
#include "../store/backup.h"
#include "../store/store.h"
#include "../util/log.h"

typedef struct serve_opts {
    const char *data;
    char host[256];
    int port;
    bool demo;
    int64_t retain;
    int64_t feed_memory;
    double header_timeout, idle_timeout;
    int auto_index;
    bool access_log;
    const char *origins[16];
    int norigins;
    int ws_ping;
    int64_t ws_max_pending;
    const char *apps;
    const char *web_root;
    double session_hours;
    int backup_interval, backup_keep, backup_max_age;
    bool auto_recover;
    const char *snapshot_dir;
    const char *postgres, *pg_schema;
} serve_opts;

static int parse_listen(const char *s, void *to, char *why, size_t n)
{
    serve_opts *o = to;
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof o->host)
        return -1;
    const char *h = s;
    size_t hn = (size_t)(colon - s);
    if (h[0] == '[' && h[hn - 1] == ']') { /* [::1]:8080 */
        h++;
        hn -= 2;
    }
    int64_t port;
    if (cli_parse_num(colon + 1, 0, 65535, &port))
        return -1;
    memcpy(o->host, h, hn);
    o->host[hn] = '\0';
    o->port = (int)port;
    return 0;
}

static int parse_origin(const char *v, void *to, char *why, size_t n)
{
    serve_opts *o = to;
    if (o->norigins == (int)ARRAY_LEN(o->origins)) {
        snprintf(why, n, "at most %d --allow-origin", (int)ARRAY_LEN(o->origins));
        return -1;
    }
    if (!strstr(v, "://") || v[strlen(v) - 1] == '/')
        return -1;
    o->origins[o->norigins++] = v;
    return 0;
}

static int parse_hours(const char *v, void *to, char *why, size_t n)
{
    char *end;
    double h = strtod(v, &end);
    if (*end || end == v || !(h >= 0.0002 && h <= 24 * 366))
        return -1;
    *(double *)to = h;
    return 0;
}

static int parse_serve(int argc, char **argv, serve_opts *o)
{
    *o = (serve_opts){.data = "./data", .host = "127.0.0.1", .port = 8080,
                      .retain = 1000000, .feed_memory = 65536, .header_timeout = 10,
                      .idle_timeout = 60, .auto_index = 16, .access_log = true,
                      .ws_ping = 15, .ws_max_pending = 8 * 1024 * 1024,
                      .apps = "wholesale,studio", .session_hours = 168,
                      .backup_interval = 30, .backup_keep = 10, .backup_max_age = 300,
                      .auto_recover = true, .postgres = getenv("LIVEDB_POSTGRES"),
                      .pg_schema = "livedb"};
    const arg_opt opts[] = {
        {"--demo", ARG_SET, .to = &o->demo},
        {"--no-access-log", ARG_CLEAR, .to = &o->access_log},
        {"--no-auto-recover", ARG_CLEAR, .to = &o->auto_recover},
        {"--data", ARG_STR, .to = &o->data},
        {"--apps", ARG_STR, .to = &o->apps},
        {"--web-root", ARG_STR, .to = &o->web_root},
        {"--snapshot-dir", ARG_STR, .to = &o->snapshot_dir},
        {"--postgres", ARG_STR, .to = &o->postgres},
        {"--pg-schema", ARG_FN, .to = &o->pg_schema, .fn = cli_parse_schema,
         .takes = "a schema name: [a-z_][a-z0-9_]*, up to 63 bytes"},
        {"--listen", ARG_FN, .to = o, .takes = "HOST:PORT", .fn = parse_listen},
        {"--allow-origin", ARG_FN, .to = o, .fn = parse_origin,
         .takes = "an origin like https://shop.example:8443"},
        {"--session-hours", ARG_FN, .to = &o->session_hours, .fn = parse_hours,
         .takes = "hours from 0.0002 to 8784"},
        {"--retain-changes", ARG_I64, .to = &o->retain, 1, INT64_MAX / 2, "a number >= 1"},
        {"--feed-memory", ARG_I64, .to = &o->feed_memory, 1, 100000000,
         "a number from 1 to 100000000"},
        {"--header-timeout", ARG_SECS, .to = &o->header_timeout, 1, 3600, "seconds from 1 to 3600"},
        {"--idle-timeout", ARG_SECS, .to = &o->idle_timeout, 1, 86400, "seconds from 1 to 86400"},
        {"--backup-interval", ARG_INT, .to = &o->backup_interval, 0, 86400 * 7,
         "seconds from 0 to 604800"},
        {"--backup-keep", ARG_INT, .to = &o->backup_keep, 0, 100000,
         "a number from 0 (all) to 100000"},
        {"--backup-max-age", ARG_INT, .to = &o->backup_max_age, 1, 86400 * 30,
         "seconds from 1 to 2592000"},
        {"--ws-ping", ARG_INT, .to = &o->ws_ping, 1, 3600, "seconds from 1 to 3600"},
        {"--ws-max-pending", ARG_I64, .to = &o->ws_max_pending, 4096, (int64_t)1 << 32,
         "bytes from 4096 to 4294967296"},
        {"--auto-index", ARG_INT, .to = &o->auto_index, 0, 64, "a number from 0 to 64"},
        {0},
    };
    return cli_args(argc, argv, &(arg_spec){.opts = opts}, NULL);
}

typedef struct runtime {
    app_t app;
    uv_signal_t sigterm, sigint;
    bool stopping;
} runtime;

static void on_drained(void *ctx)
{
    runtime *rt = ctx;
    server_close_all(rt->app.server);
    log_access_stop();
    uv_close((uv_handle_t *)&rt->sigterm, NULL);
    uv_close((uv_handle_t *)&rt->sigint, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    runtime *rt = s->data;
    if (rt->stopping)
        return;
    rt->stopping = true;
    log_msg(LOG_INFO, "%s: stopping; finishing writes in flight",
            signum == SIGTERM ? "SIGTERM" : "SIGINT");
    server_stop_accepting(rt->app.server);
    api_shutdown(&rt->app);
    store_drain(rt->app.store, on_drained, rt);
}

static void on_recovery_logged(wjob *job) { wjob_free(job); }

/* The start-up check replaced a damaged database: the activity log says
 * so, with what was kept and what was lost, as stderr already did. */
static void log_recovery(app_t *app, const recovery *rec)
{
    wjob *job = wjob_new(WJ_OPS, 0);
    job->actor.system = true;
    snprintf(job->actor.role, sizeof job->actor.role, "system");
    snprintf(job->log_action, sizeof job->log_action, "recovered");
    job->log_data = json_pack("{sssIsssssIsbsI}", "backup", rec->backup, "kept_to_seq",
                              (json_int_t)rec->backup_seq, "problem", rec->problem, "moved_to",
                              rec->aside, "lost_to_seq", (json_int_t)rec->lost_to, "salvaged",
                              rec->salvaged, "feed_from", (json_int_t)rec->feed_from);
    job->done = on_recovery_logged;
    store_submit(app->store, job);
    fprintf(stderr, "livedb: RECOVERED: the database %s; %s%s (changes up to seq %lld kept; the"
                    " feed goes on from seq %lld). The damaged files are in %s\n",
            rec->problem, rec->salvaged ? "kept the database and the sound part of its WAL"
                                        : "restored backup ",
            rec->backup, (long long)rec->backup_seq, (long long)rec->feed_from, rec->aside);
}

/* Opens the store; PostgreSQL that cannot be reached yet (it starts after
 * livedb, or restarts) is tried again every second, saying so, until it
 * answers or a signal stops the wait. */
static volatile sig_atomic_t start_stopped;
static void on_start_signal(int sig) { start_stopped = 1; }

static int open_store(app_t *app, uv_loop_t *loop, const store_opts *so)
{
    struct sigaction sa = {.sa_handler = on_start_signal}, old_term, old_int;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    int rc = 0;
    for (int attempt = 0;; attempt++) {
        err_t e = {0};
        if (store_open(&app->store, loop, so, &e) == 0)
            break;
        if (!so->postgres || e.code != E_UNAVAILABLE || start_stopped) {
            fprintf(stderr, "livedb: %s\n", e.msg);
            err_clear(&e);
            rc = -1;
            break;
        }
        if (attempt == 0 || attempt % 30 == 0)
            fprintf(stderr, "livedb: %s; trying again every second (Ctrl-C to stop)\n", e.msg);
        err_clear(&e);
        sleep(1);
        if (start_stopped) {
            rc = -1;
            break;
        }
    }
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    return rc;
}

int cli_serve(int argc, char **argv)
{
    serve_opts o;
    int rc = parse_serve(argc, argv, &o);
    if (rc)
        return rc;
    signal(SIGPIPE, SIG_IGN);
    /* Every connection is a descriptor: take all the hard limit allows, as
     * Redis and nginx do, instead of the 1024 a shell often starts with. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* libuv's thread pool runs the four readers, at most two password
     * hashes and a backup: size it before first use. */
    setenv("UV_THREADPOOL_SIZE", "7", 0);

    err_t e = {0};
    if (apps_load(o.apps, &e))
        return cli_fail(&e, NULL);
    if (o.web_root)
        web_set_root(o.web_root);
    runtime *rt = xcalloc(1, sizeof *rt);
    uv_loop_t *loop = uv_default_loop();
    app_t *app = &rt->app;
    app->loop = loop;
    recovery rec = {0};
    store_opts so = {.dir = o.data, .retain_changes = o.retain, .readers = 4,
                     .auto_index_max = o.auto_index, .auto_recover = o.auto_recover,
                     .recovered = &rec, .app_collections = true,
                     .postgres = o.postgres && o.postgres[0] ? o.postgres : NULL,
                     .pg_schema = o.pg_schema};
    if (open_store(app, loop, &so)) {
        free(rt);
        apps_free();
        return 1;
    }
    if (!(app->ident = identity_open(app->store, &e)) || auth_init(app, (int64_t)(o.session_hours * 3600 * 1000), &e)) {
        fprintf(stderr, "livedb: %s\n", e.msg);
        err_clear(&e);
        store_drain(app->store, NULL, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        store_close(app->store);
        auth_free(app);
        identity_free(app->ident);
        free(rt);
        apps_free();
        return 1;
    }
    if (rec.recovered)
        log_recovery(app, &rec);
    app->feed = feed_new((size_t)o.feed_memory);
    api_init(app);
    app->origins = o.origins;
    app->norigins = o.norigins;
    /* The hub's listeners in the order they hear of a commit: the feed
     * (api_init), realtime, snapshots. */
    realtime_opts ro = {.ping_seconds = o.ws_ping, .max_pending = (size_t)o.ws_max_pending};
    realtime_init(app, &ro);
    /* A PostgreSQL store's backups are PostgreSQL's (pg_dump, PITR). */
    if (!so.postgres)
        backups_init(app, o.backup_interval, o.backup_keep, o.backup_max_age);
    if (snapshot_init(app, o.snapshot_dir, &e)) {
        fprintf(stderr, "livedb: %s\n", e.msg);
        err_clear(&e);
        o.snapshot_dir = NULL; /* serve anyway: the live data matters more */
    }
    log_access_start(loop, o.access_log);

    server_opts sv = {.host = o.host, .port = o.port, .header_timeout = o.header_timeout,
                      .idle_timeout = o.idle_timeout};
    int port = 0;
    char errbuf[256];
    if (server_start(&app->server, loop, &sv, api_handle, app, &port, errbuf, sizeof errbuf)) {
        fprintf(stderr, "livedb: %s (is another server using the port?)\n", errbuf);
        api_shutdown(app);
        store_drain(app->store, NULL, NULL);
        log_access_stop();
        uv_run(loop, UV_RUN_NOWAIT);
        realtime_free(app);
        auth_free(app);
        identity_free(app->ident);
        store_close(app->store);
        feed_free(app->feed);
        free(rt);
        apps_free();
        return 1;
    }
    uv_signal_init(loop, &rt->sigterm);
    uv_signal_init(loop, &rt->sigint);
    rt->sigterm.data = rt->sigint.data = rt;
    uv_signal_start(&rt->sigterm, on_signal, SIGTERM);
    uv_signal_start(&rt->sigint, on_signal, SIGINT);
    if (o.demo)
        cli_load_demo(app);

    char hostbuf[300];
    if (strchr(o.host, ':'))
        snprintf(hostbuf, sizeof hostbuf, "[%s]", o.host);
    else
        snprintf(hostbuf, sizeof hostbuf, "%s", o.host);
    printf("livedb: listening on http://%s:%d\n", hostbuf, port);
    fflush(stdout);
    if (so.postgres)
        log_msg(LOG_INFO, "serving PostgreSQL schema %s (this node's files in %s) on %s:%d"
                " (livedb %s)", o.pg_schema, store_dir(app->store), hostbuf, port,
                LIVEDB_VERSION);
    else
        log_msg(LOG_INFO, "serving %s on %s:%d (livedb %s, SQLite %s)", store_dir(app->store),
                hostbuf, port, LIVEDB_VERSION, sqlite3_libversion());

    uv_run(loop, UV_RUN_DEFAULT);

    realtime_free(app);
    auth_free(app);
    identity_free(app->ident);
    snapshot_free(app);
    activity_free_state();
    store_close(app->store);
    feed_free(app->feed);
    server_free(app->server);
    apps_free();
    uv_loop_close(loop);
    free(rt);
    log_msg(LOG_INFO, "stopped cleanly");
    return 0;
}
