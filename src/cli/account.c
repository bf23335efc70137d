/*
 * account.c: livedb account add, with the server stopped: the password
 * from standard input, hashed with argon2id, the account and its hash
 * written in one batch.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "../api/api.h"
#include "../core/apps.h"
#include "../core/doc.h"
#include "../store/store.h"

/* Adds the ops that create an account (document and password hash). */
void cli_account_ops(wop *ops, const char *id, const char *email, const char *role,
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

/* Opens the store (a data directory: the server must be stopped, it holds the
 * lock), runs one write job, closes. */
static int run_offline(const cli_where *w, wjob *job, oneshot *o)
{
    err_t e = {0};
    uv_loop_init(&o->loop);
    store_opts so = {.retain_changes = 1000000, .readers = 1, .auto_index_max = 0};
    cli_where_store(w, &so);
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

int cli_account(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "add") != 0)
        return cli_bad_usage("%s", "usage: livedb account add --email E --role R [--name N]"
                               " --password-stdin [--data DIR | --postgres CONNINFO]");
    cli_where w = cli_where_default();
    const char *email = NULL, *role = NULL, *name = "", *apps = "wholesale,studio";
    bool from_stdin = false;
    const arg_opt opts[] = {
        {"--password-stdin", ARG_SET, .to = &from_stdin},
        CLI_WHERE_OPTS(w),
        {"--email", ARG_STR, .to = &email},
        {"--role", ARG_STR, .to = &role},
        {"--name", ARG_STR, .to = &name},
        {"--apps", ARG_STR, .to = &apps},
        {0},
    };
    if (cli_args(argc - 1, argv + 1, &(arg_spec){.opts = opts}, NULL))
        return 2;
    if (!email || !role || !from_stdin)
        return cli_bad_usage("%s", "account add needs --email, --role and --password-stdin (the"
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
    cli_account_ops(job->ops, o.id, lower, role, name, hash);
    rc = run_offline(&w, job, &o);
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
