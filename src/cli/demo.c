/*
 * demo.c: serve --demo: into an empty data directory, an account for each
 * role the apps declare (passwords made at random, printed once and kept
 * in DIR/demo-accounts.json) and each app's demo.json, in one batch.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "../api/api.h"
#include "../core/apps.h"
#include "../core/doc.h"
#include "../store/store.h"
#include "../util/log.h"
#include "demo_accounts.h"

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
    if (job->err.code == E_CONFLICT) {
        /* Several nodes started at once over one database: the first one's
         * demo is there (its marker's create failed the whole batch). */
        printf("livedb: the demo is in the database already (another node loaded it)\n");
    } else if (job->err.code) {
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
void cli_load_demo(app_t *app)
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
    wjob *job = wjob_new(WJ_OPS, (int)json_array_size(docs) + 2 * naccounts + 1);
    job->is_batch = true;
    job->actor.system = true;
    snprintf(job->actor.remote, sizeof job->actor.remote, "demo");
    /* First a marker that can be made once: nodes that start at once over
     * one PostgreSQL load the demo once (the batch is one transaction). */
    job->ops[0].kind = W_CREATE;
    snprintf(job->ops[0].col, sizeof job->ops[0].col, "_demo");
    job->ops[0].id = xstrdup("loaded");
    job->ops[0].doc = json_pack("{ss}", "at", now);
    int k = 1;
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
        cli_account_ops(&job->ops[k], ids[i], d->email, d->role, d->name, hash);
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
