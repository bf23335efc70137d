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

int cli_activity(int argc, char **argv)
{
    const char *data = "./data", *format = "json";
    int64_t since = 0;
    for (int i = 0; i < argc; i++) {
        if (i + 1 >= argc)
            return cli_bad_usage("%s needs a value", argv[i]);
        const char *a = argv[i], *v = argv[++i];
        if (strcmp(a, "--data") == 0)
            data = v;
        else if (strcmp(a, "--format") == 0 && (strcmp(v, "json") == 0 || strcmp(v, "csv") == 0))
            format = v;
        else if (strcmp(a, "--since") == 0 && time_parse_rfc3339(v, &since) == 0)
            ;
        else
            return cli_bad_usage("bad option %s %s (--data DIR, --format json|csv, --since"
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

int cli_verify(int argc, char **argv)
{
    const char *data = "./data", *backup = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
            data = argv[++i];
        else if (argv[i][0] != '-' && !backup)
            backup = argv[i];
        else
            return cli_bad_usage("unknown option %s (livedb verify [--data DIR] [BACKUP])", argv[i]);
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
