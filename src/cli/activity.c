/*
 * activity.c: livedb activity [--format json|csv] [--since T]: the
 * activity log with each entry's hash, from a data directory; and livedb
 * verify: the database's integrity and its hash chain, or one backup.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../api/api.h"
#include "../store/store.h"
#include "backups.h"

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

static int parse_format(const char *v, void *to, char *why, size_t n)
{
    if (strcmp(v, "json") != 0 && strcmp(v, "csv") != 0)
        return -1;
    *(const char **)to = v;
    return 0;
}

static int parse_since(const char *v, void *to, char *why, size_t n)
{
    return time_parse_rfc3339(v, to);
}

int cli_activity(int argc, char **argv)
{
    const char *format = "json";
    cli_where w = cli_where_default();
    int64_t since = 0;
    const arg_opt opts[] = {
        CLI_WHERE_OPTS(w),
        {"--format", ARG_FN, .to = &format, .fn = parse_format, .takes = "json or csv"},
        {"--since", ARG_FN, .to = &since, .fn = parse_since,
         .takes = "a time like 2026-11-23T00:00:00Z"},
        {0},
    };
    if (cli_args(argc, argv, &(arg_spec){.opts = opts}, NULL))
        return 2;
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
    store_opts where = {0};
    cli_where_store(&w, &where);
    int rc = store_activity_each(&where, since, dump_row, &d, &e);
    if (!d.csv)
        fputs("\n]\n", stdout);
    if (rc)
        return cli_fail(&e, NULL);
    return fflush(stdout) == 0 ? 0 : 1;
}

int cli_verify(int argc, char **argv)
{
    const char *backup = NULL;
    cli_where w = cli_where_default();
    const arg_opt opts[] = {CLI_WHERE_OPTS(w), {0}};
    if (cli_args(argc, argv, &(arg_spec){opts, &backup, "BACKUP"},
                 "livedb verify [--data DIR | --postgres CONNINFO] [BACKUP]"))
        return 2;
    store_opts where = {0};
    cli_where_store(&w, &where);
    if (backup && where.postgres)
        return cli_bad_usage("%s", "a PostgreSQL store's backups are PostgreSQL's (pg_dump,"
                                   " pg_basebackup): verify BACKUP is for a --data directory");
    if (backup)
        return cli_verify_backup(w.data, backup);
    err_t e = {0};
    int64_t n = 0;
    if (store_verify(&where, &n, &e))
        return cli_fail(&e, "verify FAILED");
    if (where.postgres)
        printf("livedb: PostgreSQL schema %s is sound: %lld activity entries chained unbroken,"
               " the head agrees\n", where.pg_schema, (long long)n);
    else
        printf("livedb: %s/livedb.db is sound: integrity check ok, %lld activity entries chained"
               " unbroken\n", w.data, (long long)n);
    return 0;
}
