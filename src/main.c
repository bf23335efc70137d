/*
 * main.c: the command line.
 *
 *   livedb serve [--data DIR] [--listen HOST:PORT] [--demo] [...]
 *
 * Exit status: 0 success, 1 failure at run time, 2 bad usage. Errors are
 * one line on stderr that says what is wrong and what to do.
 */
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>
#include <uv.h>

#include "api/api.h"
#include "cli/backups.h"
#include "store/import.h"
#include "store/backup.h"
#include "cli/demo_accounts.h"
#include "core/apps.h"
#include "core/doc.h"
#include "util/log.h"
#include "store/store.h"

#define LIVEDB_VERSION "0.1.0"

static const char usage[] =
    "usage: livedb serve [--data DIR] [--listen HOST:PORT] [--demo] [--apps LIST]\n"
    "                    [--retain-changes N] [--feed-memory N] [--header-timeout S]\n"
    "                    [--idle-timeout S] [--auto-index N] [--no-access-log]\n"
    "                    [--allow-origin ORIGIN]... [--ws-ping S] [--ws-max-pending BYTES]\n"
    "                    [--session-hours H] [--web-root DIR]\n"
    "                    [--backup-interval S] [--backup-keep N] [--backup-max-age S]\n"
    "                    [--no-auto-recover] [--snapshot-dir DIR]\n"
    "       livedb account add --email E --role R [--name N] --password-stdin [--data DIR]\n"
    "       livedb activity [--data DIR] [--format json|csv] [--since RFC3339]\n"
    "       livedb verify [--data DIR] [BACKUP]\n"
    "       livedb backup [--data DIR] [--keep N]\n"
    "       livedb backups [--data DIR]\n"
    "       livedb restore --data DIR BACKUP\n"
    "       livedb export [--data DIR] [--out FILE]\n"
    "       livedb import FILE [--data DIR] [--collection C] [--batch N] [--dry-run]\n"
    "       livedb simulate partner-order|inventory-update|price-update|order-status|stress|all\n"
    "                       [--url URL] [--data DIR] [--partners N] [--rate R] [--seconds T]\n"
    "                       (livedb simulate --help for the rest)\n"
    "       livedb help | --version\n"
    "\n"
    "  --data DIR            data directory (default ./data)\n"
    "  --listen HOST:PORT    address to serve on (default 127.0.0.1:8080; port 0 = any)\n"
    "  --demo                load sample data and accounts into an empty data directory\n"
    "  --apps LIST           the apps to serve (default wholesale,studio; none for none)\n"
    "  --retain-changes N    changes kept for resuming clients (default 1000000)\n"
    "  --feed-memory N       recent changes kept in memory (default 65536)\n"
    "  --header-timeout S    drop clients that take longer to send headers (default 10)\n"
    "  --idle-timeout S      close idle keep-alive connections (default 60)\n"
    "  --auto-index N        automatic indexes per collection (default 16)\n"
    "  --no-access-log       no log line per request\n"
    "  --allow-origin ORIGIN a web page origin (https://host:port) that may open realtime\n"
    "                        connections besides the server's own; repeatable\n"
    "  --ws-ping S           realtime ping interval; 3x silent: closed (default 15)\n"
    "  --ws-max-pending B    unsent bytes past which a realtime reader is closed with\n"
    "                        4008 (default 8388608)\n"
    "  --session-hours H     how long a login lasts (default 168; fractions allowed)\n"
    "  --backup-interval S   take a backup every S seconds when something changed\n"
    "                        (default 30; 0: never)\n"
    "  --backup-keep N       backups kept, newest first (default 10; 0: all)\n"
    "  --backup-max-age S    health is degraded when changes have waited longer than S\n"
    "                        seconds for a good backup (default 300)\n"
    "  --no-auto-recover     refuse to start on a damaged database instead of restoring\n"
    "                        the newest good backup\n"
    "  --snapshot-dir DIR    keep DIR/APP.json, a static copy of the apps' snapshot\n"
    "                        collections (studio: users, jobs), rewritten on every change\n"
    "  --web-root DIR        serve the pages and the SDK from this source tree instead of\n"
    "                        the copies built in (edit a page, reload, no rebuild)\n";

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
} serve_opts;

__attribute__((format(printf, 1, 2))) static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "livedb: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(run 'livedb help' for the options)\n");
    return 2;
}

static int parse_num(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    int64_t v;
    if (parse_i64(s, strlen(s), &v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_listen(const char *s, serve_opts *o)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof o->host)
        return -1;
    const char *h = s;
    size_t hn = (size_t)(colon - s);
    if (h[0] == '[' && h[hn - 1] == ']') { /* [::1]:8080 */
        h++;
        hn -= 2;
    }
    memcpy(o->host, h, hn);
    o->host[hn] = '\0';
    int64_t port;
    if (parse_num(colon + 1, 0, 65535, &port))
        return -1;
    o->port = (int)port;
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
                      .auto_recover = true};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n;
        if (strcmp(a, "--demo") == 0) {
            o->demo = true;
            continue;
        }
        if (strcmp(a, "--no-access-log") == 0) {
            o->access_log = false;
            continue;
        }
        if (strcmp(a, "--no-auto-recover") == 0) {
            o->auto_recover = false;
            continue;
        }
        if (!v)
            return bad_usage("%s needs a value", a);
        i++;
        if (strcmp(a, "--data") == 0) {
            o->data = v;
        } else if (strcmp(a, "--listen") == 0) {
            if (parse_listen(v, o))
                return bad_usage("--listen takes HOST:PORT, not '%s'", v);
        } else if (strcmp(a, "--retain-changes") == 0) {
            if (parse_num(v, 1, INT64_MAX / 2, &n))
                return bad_usage("--retain-changes takes a number >= 1, not '%s'", v);
            o->retain = n;
        } else if (strcmp(a, "--feed-memory") == 0) {
            if (parse_num(v, 1, 100000000, &n))
                return bad_usage("--feed-memory takes a number from 1 to 100000000, not '%s'", v);
            o->feed_memory = n;
        } else if (strcmp(a, "--header-timeout") == 0) {
            if (parse_num(v, 1, 3600, &n))
                return bad_usage("--header-timeout takes seconds from 1 to 3600, not '%s'", v);
            o->header_timeout = (double)n;
        } else if (strcmp(a, "--idle-timeout") == 0) {
            if (parse_num(v, 1, 86400, &n))
                return bad_usage("--idle-timeout takes seconds from 1 to 86400, not '%s'", v);
            o->idle_timeout = (double)n;
        } else if (strcmp(a, "--allow-origin") == 0) {
            if (o->norigins == (int)ARRAY_LEN(o->origins))
                return bad_usage("at most %d --allow-origin", (int)ARRAY_LEN(o->origins));
            if (!strstr(v, "://") || v[strlen(v) - 1] == '/')
                return bad_usage("--allow-origin takes an origin like https://shop.example:8443,"
                                 " not '%s'", v);
            o->origins[o->norigins++] = v;
        } else if (strcmp(a, "--apps") == 0) {
            o->apps = v;
        } else if (strcmp(a, "--web-root") == 0) {
            o->web_root = v;
        } else if (strcmp(a, "--snapshot-dir") == 0) {
            o->snapshot_dir = v;
        } else if (strcmp(a, "--backup-interval") == 0) {
            if (parse_num(v, 0, 86400 * 7, &n))
                return bad_usage("--backup-interval takes seconds from 0 to 604800, not '%s'", v);
            o->backup_interval = (int)n;
        } else if (strcmp(a, "--backup-keep") == 0) {
            if (parse_num(v, 0, 100000, &n))
                return bad_usage("--backup-keep takes a number from 0 (all) to 100000, not '%s'",
                                 v);
            o->backup_keep = (int)n;
        } else if (strcmp(a, "--backup-max-age") == 0) {
            if (parse_num(v, 1, 86400 * 30, &n))
                return bad_usage("--backup-max-age takes seconds from 1 to 2592000, not '%s'", v);
            o->backup_max_age = (int)n;
        } else if (strcmp(a, "--session-hours") == 0) {
            char *end;
            double h = strtod(v, &end);
            if (*end || end == v || !(h >= 0.0002 && h <= 24 * 366))
                return bad_usage("--session-hours takes hours from 0.0002 to 8784, not '%s'", v);
            o->session_hours = h;
        } else if (strcmp(a, "--ws-ping") == 0) {
            if (parse_num(v, 1, 3600, &n))
                return bad_usage("--ws-ping takes seconds from 1 to 3600, not '%s'", v);
            o->ws_ping = (int)n;
        } else if (strcmp(a, "--ws-max-pending") == 0) {
            if (parse_num(v, 4096, (int64_t)1 << 32, &n))
                return bad_usage("--ws-max-pending takes bytes from 4096 to 4294967296, not '%s'",
                                 v);
            o->ws_max_pending = n;
        } else if (strcmp(a, "--auto-index") == 0) {
            if (parse_num(v, 0, 64, &n))
                return bad_usage("--auto-index takes a number from 0 to 64, not '%s'", v);
            o->auto_index = (int)n;
        } else {
            return bad_usage("unknown option %s", a);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ demo */

/* Demo accounts: an admin, and one account of each role the apps declare
 * (three partners for wholesale). Passwords are made at random and
 * printed once, when the demo is loaded. */
typedef struct demo_account {
    const char *email, *role, *name;
    const char *app; /* made only when this app is served (NULL: always) */
    char password[13];
} demo_account;

static demo_account demo_accounts[] = {
    {"admin@demo.livedb", "admin", "Alex Admin", NULL, ""},
    {"north@demo.livedb", "partner", "North Deli", "wholesale", ""},
    {"harbor@demo.livedb", "partner", "Harbor Cafe", "wholesale", ""},
    {"grove@demo.livedb", "partner", "Grove Market", "wholesale", ""},
    {"studio@demo.livedb", "admin", "Robin Producer", "studio", ""},
    {"staff@demo.livedb", "staff", "Sam Staff", "studio", ""},
};

static bool demo_wanted(const demo_account *d)
{
    return apps_role_known(d->role) && (!d->app || apps_has(d->app));
}

static void on_demo_done(wjob *job)
{
    if (job->err.code) {
        log_msg(LOG_ERROR, "demo data: %s", job->err.msg);
    } else {
        identity_note_job(((app_t *)job->ctx)->ident, job); /* the accounts, for logins */
        printf("livedb: demo data loaded; accounts (email / password):\n");
        for (size_t i = 0; i < ARRAY_LEN(demo_accounts); i++)
            if (demo_accounts[i].password[0])
                printf("livedb:   %-20s %-8s %s\n", demo_accounts[i].email, demo_accounts[i].role,
                       demo_accounts[i].password);
        /* Also kept for `livedb simulate` (and people), readable by the owner only. */
        json_t *list = json_array();
        for (size_t i = 0; i < ARRAY_LEN(demo_accounts); i++)
            if (demo_accounts[i].password[0])
                json_array_append_new(list, json_pack("{ssssss}", "email", demo_accounts[i].email,
                                                      "role", demo_accounts[i].role, "password",
                                                      demo_accounts[i].password));
        char err[300];
        app_t *app = job->ctx;
        if (demo_accounts_save(store_dir(app->store), list, err, sizeof err))
            log_msg(LOG_WARN, "demo accounts: %s", err);
        else
            printf("livedb:   (also in %s/%s, readable by its owner only)\n",
                   store_dir(app->store), DEMO_ACCOUNTS_FILE);
        json_decref(list);
    }
    fflush(stdout);
    wjob_free(job);
}

/* Adds the ops that create an account (document and password hash). */
static void account_ops(wop *ops, const char *id, const char *email, const char *role,
                        const char *name, const char *hash)
{
    ops[0].kind = W_CREATE;
    snprintf(ops[0].col, sizeof ops[0].col, "_accounts");
    ops[0].id = xstrdup(id);
    ops[0].doc = json_pack("{sssssssb}", "email", email, "role", role, "name", name ? name : "",
                           "disabled", 0);
    ops[1].kind = W_CRED;
    ops[1].id = xstrdup(id);
    ops[1].doc = json_pack("{ss}", "hash", hash);
}

/* "$account:EMAIL" -> that demo account's id, "$now" -> the time, in every
 * string of v (the apps' demo.json refer to the accounts made here). */
static json_t *demo_fill(json_t *v, char ids[][DOC_GEN_ID_LEN + 1], const char *now)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(s, "$now") == 0)
            return json_string(now);
        for (size_t i = 0; strncmp(s, "$account:", 9) == 0 && i < ARRAY_LEN(demo_accounts); i++)
            if (strcmp(s + 9, demo_accounts[i].email) == 0)
                return json_string(ids[i]);
        return json_incref(v);
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        for (size_t i = 0; i < json_array_size(v); i++)
            json_array_append_new(a, demo_fill(json_array_get(v, i), ids, now));
        return a;
    }
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) json_object_set_new(o, k, demo_fill(x, ids, now));
        return o;
    }
    return json_incref(v);
}

/* The demo: accounts, then each app's demo.json (documents by collection),
 * in one batch, into an empty data directory only. */
static void load_demo(app_t *app)
{
    store_t *st = app->store;
    if (store_committed_seq(st) != 0)
        return;
    char ids[ARRAY_LEN(demo_accounts)][DOC_GEN_ID_LEN + 1];
    char now[TIME_RFC3339_LEN + 1];
    time_format_rfc3339(time_now_ms(), now);
    json_t *docs = json_array(); /* [col, doc] pairs */
    const char *names = apps_names();
    while (*names) {
        const char *comma = strchr(names, ',');
        size_t n = comma ? (size_t)(comma - names) : strlen(names);
        char path[128];
        snprintf(path, sizeof path, "apps/%.*s/demo.json", (int)n, names);
        const livedb_asset *a = asset_find(path);
        json_t *root = a ? json_loadb((const char *)a->data, a->len, 0, NULL) : NULL;
        const char *col;
        json_t *list;
        json_object_foreach(root, col, list) {
            for (size_t i = 0; i < json_array_size(list); i++)
                json_array_append_new(docs, json_pack("[sO]", col, json_array_get(list, i)));
        }
        json_decref(root);
        names += n + (comma ? 1 : 0);
    }
    int naccounts = 0;
    for (size_t i = 0; i < ARRAY_LEN(demo_accounts); i++) {
        time_ordered_id(ids[i], DOC_GEN_ID_LEN);
        if (demo_wanted(&demo_accounts[i]))
            naccounts++;
    }
    wjob *job = wjob_new(WJ_OPS, (int)json_array_size(docs) + 2 * naccounts);
    job->is_batch = true;
    job->actor.system = true;
    snprintf(job->actor.remote, sizeof job->actor.remote, "demo");
    int k = 0;
    for (size_t i = 0; i < ARRAY_LEN(demo_accounts); i++) {
        demo_account *d = &demo_accounts[i];
        if (!demo_wanted(d))
            continue;
        random_id(d->password, 12);
        char hash[128];
        if (auth_hash_password(d->password, hash) != 0) {
            d->password[0] = '\0';
            continue;
        }
        account_ops(&job->ops[k], ids[i], d->email, d->role, d->name, hash);
        k += 2;
    }
    for (size_t i = 0; i < json_array_size(docs); i++) {
        json_t *pair = json_array_get(docs, i);
        json_t *doc = demo_fill(json_array_get(pair, 1), ids, now);
        wop *op = &job->ops[k++];
        op->kind = W_PUT;
        snprintf(op->col, sizeof op->col, "%s", json_string_value(json_array_get(pair, 0)));
        op->id = xstrdup(json_string_value(json_object_get(doc, "id")));
        json_object_del(doc, "id");
        op->doc = doc;
    }
    job->nops = k;
    json_decref(docs);
    job->done = on_demo_done;
    job->ctx = app;
    store_submit(st, job);
}

/* ------------------------------------------------------------------ serve */

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

static int cmd_serve(int argc, char **argv)
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
    if (apps_load(o.apps, &e)) {
        fprintf(stderr, "livedb: %s\n", e.msg);
        err_clear(&e);
        return 1;
    }
    if (o.web_root)
        web_set_root(o.web_root);
    runtime *rt = xcalloc(1, sizeof *rt);
    uv_loop_t *loop = uv_default_loop();
    app_t *app = &rt->app;
    app->loop = loop;
    recovery rec;
    store_opts so = {.dir = o.data, .retain_changes = o.retain, .readers = 4,
                     .auto_index_max = o.auto_index, .auto_recover = o.auto_recover,
                     .recovered = &rec, .app_collections = true};
    if (store_open(&app->store, loop, &so, &e)) {
        fprintf(stderr, "livedb: %s\n", e.msg);
        err_clear(&e);
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
        load_demo(app);

    char hostbuf[300];
    if (strchr(o.host, ':'))
        snprintf(hostbuf, sizeof hostbuf, "[%s]", o.host);
    else
        snprintf(hostbuf, sizeof hostbuf, "%s", o.host);
    printf("livedb: listening on http://%s:%d\n", hostbuf, port);
    fflush(stdout);
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

/* ------------------------------------------------------------------ export */

static int cmd_export(int argc, char **argv)
{
    const char *data = "./data", *out = NULL;
    for (int i = 0; i < argc; i++) {
        if (i + 1 >= argc)
            return bad_usage("%s needs a value", argv[i]);
        if (strcmp(argv[i], "--data") == 0)
            data = argv[++i];
        else if (strcmp(argv[i], "--out") == 0)
            out = argv[++i];
        else
            return bad_usage("unknown option %s", argv[i]);
    }
    buf_t db = {0};
    buf_printf(&db, "%s/livedb.db", data);
    FILE *probe = fopen(db.p, "rb");
    buf_free(&db);
    if (!probe) {
        fprintf(stderr, "livedb: no database in %s (is --data right?)\n", data);
        return 1;
    }
    fclose(probe);
    /* Into a temporary file, renamed over FILE only when whole. */
    buf_t tmp = {0};
    FILE *f = stdout;
    if (out) {
        buf_printf(&tmp, "%s.tmp", out);
        f = fopen(tmp.p, "wb");
        if (!f) {
            fprintf(stderr, "livedb: cannot write %s: %s\n", tmp.p, strerror(errno));
            buf_free(&tmp);
            return 1;
        }
    }
    err_t e = {0};
    int rc = store_export(data, f, &e);
    if (rc == 0 && (fflush(f) != 0 || ferror(f)))
        rc = err_set(&e, E_INTERNAL, "write error: %s", strerror(errno));
    if (out) {
        if (rc == 0 && fsync(fileno(f)) != 0)
            rc = err_set(&e, E_INTERNAL, "fsync: %s", strerror(errno));
        fclose(f);
        if (rc == 0 && rename(tmp.p, out) != 0)
            rc = err_set(&e, E_INTERNAL, "rename to %s: %s", out, strerror(errno));
        if (rc)
            unlink(tmp.p);
    }
    buf_free(&tmp);
    if (rc) {
        fprintf(stderr, "livedb: export failed: %s\n", e.msg);
        err_clear(&e);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ import */

/* livedb import: store/import.c does the work; this draws the progress bar
 * on a terminal and prints each refused record with where it was. The bar
 * is the log's status line (util/log.h), so that the refused records and
 * the log lines (from the writer thread too) scroll above it. */
typedef struct cli_import {
    bool tty;
    bool finished;
    import_counts n;
} cli_import;

static void import_bad(void *ctx, const char *col, size_t index, const char *id,
                       const char *reason, const json_t *fields)
{
    /* A schema's refusal: the fields and why say it all. */
    buf_t why = {0}, line = {0};
    for (size_t i = 0; i < json_array_size(fields); i++) {
        json_t *d = json_array_get(fields, i);
        buf_printf(&why, "%s%s %s", i ? "; " : "",
                   json_string_value(json_object_get(d, "field")),
                   json_string_value(json_object_get(d, "reason")));
    }
    buf_printf(&line, "livedb: %s[%zu]%s%s%s: %s", col, index, id ? " (id " : "", id ? id : "",
               id ? ")" : "", why.p ? why.p : reason);
    log_text(line.p);
    buf_free(&line);
    buf_free(&why);
}

static void import_progress(void *ctx, const import_counts *n)
{
    cli_import *ci = ctx;
    if (!ci->tty)
        return;
    int width = 40, filled = n->total ? (int)(width * n->done / n->total) : width;
    char bar[96];
    snprintf(bar, sizeof bar, "[%.*s%*s] %ld/%ld", filled,
             "########################################", width - filled, "", n->done, n->total);
    log_status(bar);
}

static void import_done(void *ctx, const import_counts *n)
{
    cli_import *ci = ctx;
    ci->n = *n;
    ci->finished = true;
    log_status(NULL);
}

static int cmd_import(int argc, char **argv)
{
    const char *file = NULL, *data = "./data", *only = NULL, *apps = "wholesale,studio";
    int64_t batch = 500;
    bool dry = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--dry-run") == 0) {
            dry = true;
        } else if (a[0] == '-' && a[1] == '-') {
            if (i + 1 >= argc)
                return bad_usage("%s needs a value", a);
            const char *v = argv[++i];
            if (strcmp(a, "--data") == 0)
                data = v;
            else if (strcmp(a, "--collection") == 0)
                only = v;
            else if (strcmp(a, "--apps") == 0)
                apps = v;
            else if (strcmp(a, "--batch") == 0) {
                if (parse_num(v, 1, 100000, &batch))
                    return bad_usage("--batch takes a number from 1 to 100000, not '%s'", v);
            } else
                return bad_usage("unknown option %s", a);
        } else if (!file) {
            file = a;
        } else {
            return bad_usage("one FILE only, not also '%s'", a);
        }
    }
    if (!file)
        return bad_usage("%s", "import needs a FILE");
    err_t e = {0};
    if (only && doc_check_collection(only, strlen(only), &e)) {
        fprintf(stderr, "livedb: --collection %s: %s\n", only, e.msg);
        err_clear(&e);
        return 2;
    }
    json_error_t je;
    json_t *root = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        fprintf(stderr, "livedb: %s: line %d column %d: %s\n", file, je.line, je.column, je.text);
        return 1;
    }
    if (json_is_array(root) && !only) {
        fprintf(stderr, "livedb: %s is a bare array: say which collection with --collection\n",
                file);
        json_decref(root);
        return 2;
    }
    /* Imported documents meet the apps' schemas like every other write. */
    if (apps_load(apps, &e)) {
        fprintf(stderr, "livedb: %s\n", e.msg);
        err_clear(&e);
        json_decref(root);
        return 2;
    }
    import_opts io = {.only = only, .window = (int)batch, .dry_run = dry};
    io.actor.system = true;
    snprintf(io.actor.remote, sizeof io.actor.remote, "import");
    /* --collection naming a collection the file lacks is bad usage. */
    bool no_such = only && json_is_object(root) && !json_object_get(root, only);
    importer *im = import_prepare(root, &io, &e);
    if (!im) {
        fprintf(stderr, "livedb: %s: %s\n", file, e.msg);
        err_clear(&e);
        apps_free();
        return no_such ? 2 : 1;
    }
    uv_loop_t loop;
    store_t *store = NULL;
    if (!dry) {
        uv_loop_init(&loop);
        store_opts so = {.dir = data, .retain_changes = 1000000, .readers = 1, .auto_index_max = 0};
        if (store_open(&store, &loop, &so, &e)) {
            fprintf(stderr, "livedb: %s\n", e.msg);
            err_clear(&e);
            uv_loop_close(&loop);
            import_free(im);
            apps_free();
            return 1;
        }
    }
    cli_import ci = {.tty = isatty(STDERR_FILENO)};
    import_cb cb = {.bad = import_bad, .progress = import_progress, .done = import_done};
    /* The bar from the start, so that what the checks refuse goes above it. */
    import_progress(&ci, &(import_counts){.total = import_total(im)});
    import_run(im, store, &cb, &ci);
    if (!dry) {
        while (!ci.finished)
            uv_run(&loop, UV_RUN_ONCE);
        store_drain(store, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        store_close(store);
        uv_loop_close(&loop);
    }
    apps_free();
    if (dry)
        printf("livedb: dry run: %ld records, %ld good, %ld bad; nothing written\n", ci.n.total,
               ci.n.total - ci.n.bad, ci.n.bad);
    else
        printf("livedb: imported %ld records: %ld created, %ld updated, %ld unchanged, %ld bad\n",
               ci.n.total, ci.n.created, ci.n.updated, ci.n.unchanged, ci.n.bad);
    return ci.n.bad ? 1 : 0;
}

/* ------------------------------------------------------------------ account */

typedef struct oneshot {
    uv_loop_t loop;
    store_t *store;
    bool done;
    err_t err;
    char id[DOC_GEN_ID_LEN + 1];
} oneshot;

static void on_oneshot_done(wjob *job)
{
    oneshot *o = job->ctx;
    o->done = true;
    if (job->err.code)
        err_move(&o->err, &job->err);
    wjob_free(job);
}

/* Opens the data directory (the server must be stopped: it holds the
 * lock), runs one write job, closes. */
static int run_offline(const char *data, wjob *job, oneshot *o)
{
    err_t e = {0};
    uv_loop_init(&o->loop);
    store_opts so = {.dir = data, .retain_changes = 1000000, .readers = 1, .auto_index_max = 0};
    if (store_open(&o->store, &o->loop, &so, &e)) {
        fprintf(stderr, "livedb: %s\n", e.msg);
        err_clear(&e);
        wjob_free(job);
        uv_loop_close(&o->loop);
        return 1;
    }
    job->done = on_oneshot_done;
    job->ctx = o;
    store_submit(o->store, job);
    while (!o->done)
        uv_run(&o->loop, UV_RUN_ONCE);
    store_drain(o->store, NULL, NULL);
    uv_run(&o->loop, UV_RUN_DEFAULT);
    store_close(o->store);
    uv_loop_close(&o->loop);
    return 0;
}

static int cmd_account(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "add") != 0)
        return bad_usage("%s", "usage: livedb account add --email E --role R [--name N]"
                               " --password-stdin [--data DIR]");
    const char *data = "./data", *email = NULL, *role = NULL, *name = "", *apps = "wholesale,studio";
    bool from_stdin = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--password-stdin") == 0) {
            from_stdin = true;
            continue;
        }
        if (i + 1 >= argc)
            return bad_usage("%s needs a value", a);
        const char *v = argv[++i];
        if (strcmp(a, "--data") == 0)
            data = v;
        else if (strcmp(a, "--email") == 0)
            email = v;
        else if (strcmp(a, "--role") == 0)
            role = v;
        else if (strcmp(a, "--name") == 0)
            name = v;
        else if (strcmp(a, "--apps") == 0)
            apps = v;
        else
            return bad_usage("unknown option %s", a);
    }
    if (!email || !role || !from_stdin)
        return bad_usage("%s", "account add needs --email, --role and --password-stdin (the"
                               " password is read from standard input, never from the command"
                               " line)");
    err_t e = {0};
    if (apps_load(apps, &e)) {
        fprintf(stderr, "livedb: %s\n", e.msg);
        err_clear(&e);
        return 2;
    }
    int rc = 2;
    char lower[255];
    snprintf(lower, sizeof lower, "%s", email);
    for (char *p = lower; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p += 32;
    if (!strchr(lower, '@') || strlen(email) > 254) {
        fprintf(stderr, "livedb: --email must be an email address\n");
        goto out;
    }
    if (!apps_role_known(role)) {
        fprintf(stderr, "livedb: --role %s: the roles are admin and those the apps declare\n",
                role);
        goto out;
    }
    char pw[1100];
    if (!fgets(pw, sizeof pw, stdin)) {
        fprintf(stderr, "livedb: no password on standard input\n");
        goto out;
    }
    pw[strcspn(pw, "\r\n")] = '\0';
    if (strlen(pw) < 8 || strlen(pw) > 1024) {
        fprintf(stderr, "livedb: a password is 8-1024 characters\n");
        sodium_memzero(pw, sizeof pw);
        goto out;
    }
    char hash[128];
    int hrc = auth_hash_password(pw, hash);
    sodium_memzero(pw, sizeof pw);
    if (hrc != 0) {
        fprintf(stderr, "livedb: could not hash the password (out of memory?)\n");
        rc = 1;
        goto out;
    }
    oneshot o = {0};
    time_ordered_id(o.id, DOC_GEN_ID_LEN);
    wjob *job = wjob_new(WJ_OPS, 2);
    job->is_batch = true;
    job->actor.system = true;
    snprintf(job->actor.remote, sizeof job->actor.remote, "command line");
    account_ops(job->ops, o.id, lower, role, name, hash);
    rc = run_offline(data, job, &o);
    if (rc == 0 && o.err.code) {
        if (o.err.code == E_INVALID && strstr(o.err.msg, "another document"))
            fprintf(stderr, "livedb: an account with email %s exists\n", lower);
        else
            fprintf(stderr, "livedb: %s\n", o.err.msg);
        err_clear(&o.err);
        rc = 1;
    } else if (rc == 0) {
        printf("livedb: account %s (%s, %s) added\n", o.id, lower, role);
    }
out:
    apps_free();
    return rc;
}

/* ------------------------------------------------------------------ activity, verify */

typedef struct dump {
    bool csv;
    long n;
    FILE *out;
} dump;

static void dump_row(void *ctx, const char *entry, size_t len, const char *hash)
{
    dump *d = ctx;
    if (d->csv) {
        buf_t b = {0};
        activity_csv_row(&b, entry, len, hash);
        fwrite(b.p, 1, b.len, d->out);
        buf_free(&b);
    } else {
        fputs(d->n ? ",\n" : "\n", d->out);
        if (len > 1 && entry[len - 1] == '}') {
            fwrite(entry, 1, len - 1, d->out);
            fprintf(d->out, ",\"hash\":\"%s\"}", hash);
        } else {
            fwrite(entry, 1, len, d->out);
        }
    }
    d->n++;
}

static int cmd_activity(int argc, char **argv)
{
    const char *data = "./data", *format = "json";
    int64_t since = 0;
    for (int i = 0; i < argc; i++) {
        if (i + 1 >= argc)
            return bad_usage("%s needs a value", argv[i]);
        const char *a = argv[i], *v = argv[++i];
        if (strcmp(a, "--data") == 0)
            data = v;
        else if (strcmp(a, "--format") == 0 && (strcmp(v, "json") == 0 || strcmp(v, "csv") == 0))
            format = v;
        else if (strcmp(a, "--since") == 0 && time_parse_rfc3339(v, &since) == 0)
            ;
        else
            return bad_usage("bad option %s %s (--data DIR, --format json|csv, --since"
                             " 2026-11-23T00:00:00Z)", a, v);
    }
    dump d = {.csv = strcmp(format, "csv") == 0, .out = stdout};
    if (d.csv) {
        buf_t b = {0};
        activity_csv_header(&b);
        fwrite(b.p, 1, b.len, stdout);
        buf_free(&b);
    } else {
        fputc('[', stdout);
    }
    err_t e = {0};
    int rc = store_activity_each(data, since, dump_row, &d, &e);
    if (!d.csv)
        fputs("\n]\n", stdout);
    if (rc) {
        fprintf(stderr, "livedb: %s\n", e.msg);
        err_clear(&e);
        return 1;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

static int cmd_verify(int argc, char **argv)
{
    const char *data = "./data", *backup = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
            data = argv[++i];
        else if (argv[i][0] != '-' && !backup)
            backup = argv[i];
        else
            return bad_usage("unknown option %s (livedb verify [--data DIR] [BACKUP])", argv[i]);
    }
    if (backup)
        return cli_verify_backup(data, backup);
    err_t e = {0};
    int64_t n = 0;
    if (store_verify(data, &n, &e)) {
        fprintf(stderr, "livedb: verify FAILED: %s\n", e.msg);
        err_clear(&e);
        return 1;
    }
    printf("livedb: %s/livedb.db is sound: integrity check ok, %lld activity entries chained"
           " unbroken\n", data, (long long)n);
    return 0;
}

int main(int argc, char **argv)
{
    /* libsodium's ChaCha20 generator, keyed once from the kernel, instead
     * of one getrandom() system call for every id and token. */
    randombytes_set_implementation(&randombytes_internal_implementation);
    if (sodium_init() < 0) {
        fprintf(stderr, "livedb: libsodium failed to start\n");
        return 1;
    }
    /* The writer's groups allocate and free a few MiB each (SQLite's
     * page cache and savepoint journals, JSON): with glibc's defaults the
     * heap was given back to the kernel and grown again for every group. */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 8 << 20);
    if (argc < 2)
        return fputs(usage, stderr), 2;
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 2, argv + 2);
    if (strcmp(cmd, "export") == 0)
        return cmd_export(argc - 2, argv + 2);
    if (strcmp(cmd, "import") == 0)
        return cmd_import(argc - 2, argv + 2);
    if (strcmp(cmd, "account") == 0)
        return cmd_account(argc - 2, argv + 2);
    if (strcmp(cmd, "activity") == 0)
        return cmd_activity(argc - 2, argv + 2);
    if (strcmp(cmd, "verify") == 0)
        return cmd_verify(argc - 2, argv + 2);
    if (strcmp(cmd, "backup") == 0)
        return cli_backup(argc - 2, argv + 2);
    if (strcmp(cmd, "backups") == 0)
        return cli_backups(argc - 2, argv + 2);
    if (strcmp(cmd, "restore") == 0)
        return cli_restore(argc - 2, argv + 2);
    const app_command *app_cmd = apps_command(cmd); /* an app's own (core/apps.h) */
    if (app_cmd)
        return app_cmd->main(argc - 2, argv + 2);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("livedb %s\n", LIVEDB_VERSION);
        return 0;
    }
    return bad_usage("unknown command '%s'", cmd);
}
