/*
 * backups.c: livedb backup, backups, verify BACKUP and restore (see
 * backups.h). Backups may be taken and checked while a server runs on the
 * same data directory; a restore needs it stopped, and takes the data
 * directory's lock to be sure.
 */
#include "backups.h"
#include "cli.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "../store/backup.h"
#include "../util/util.h"

static void print_info(const backup_info *b)
{
    char at[TIME_RFC3339_LEN + 1];
    time_format_rfc3339(b->at_ms, at);
    printf("%-36s  seq %-10lld  %10lld bytes  %s  %s%s%s\n", b->name, (long long)b->seq,
           (long long)b->size, at, b->ok ? "ok" : "BAD", b->ok ? "" : ": ", b->problem);
}

int cli_backup(int argc, char **argv)
{
    const char *data = "./data";
    int keep = 10;
    const arg_opt opts[] = {
        {"--data", ARG_STR, .to = &data},
        {"--keep", ARG_INT, .to = &keep, 0, 100000, "a number of backups (0: keep all)"},
        {0},
    };
    if (cli_args(argc, argv, &(arg_spec){.opts = opts}, "livedb backup [--data DIR] [--keep N]"))
        return 2;
    if (!cli_has_database(data))
        return 1;
    err_t e = {0};
    backup_info b;
    if (backup_take(data, keep, &b, &e))
        return cli_fail(&e, "backup failed");
    printf("%s\n", b.name);
    fprintf(stderr, "livedb: backup %s/backups/%s: seq %lld, %lld bytes, checked ok\n", data,
            b.name, (long long)b.seq, (long long)b.size);
    return 0;
}

int cli_backups(int argc, char **argv)
{
    const char *data = "./data";
    const arg_opt opts[] = {{"--data", ARG_STR, .to = &data}, {0}};
    if (cli_args(argc, argv, &(arg_spec){.opts = opts}, "livedb backups [--data DIR]"))
        return 2;
    backup_info *list;
    size_t n;
    err_t e = {0};
    backup_list(data, &list, &n, &e);
    if (n == 0)
        fprintf(stderr, "livedb: no backups in %s/backups yet\n", data);
    for (size_t i = 0; i < n; i++)
        print_info(&list[i]);
    free(list);
    return 0;
}

int cli_verify_backup(const char *data, const char *name)
{
    err_t e = {0};
    backup_info b;
    if (backup_verify(data, name, &b, &e))
        return cli_fail(&e, "verify FAILED");
    if (!b.ok) {
        fprintf(stderr, "livedb: backup %s FAILED its check: %s\n", name, b.problem);
        return 1;
    }
    printf("livedb: backup %s is sound: integrity check ok, checksum matches, seq %lld\n", name,
           (long long)b.seq);
    return 0;
}

int cli_restore(int argc, char **argv)
{
    const char *data = NULL, *name = NULL;
    const arg_opt opts[] = {{"--data", ARG_STR, .to = &data}, {0}};
    if (cli_args(argc, argv, &(arg_spec){opts, &name, "BACKUP"},
                 "livedb restore --data DIR BACKUP"))
        return 2;
    if (!data || !name)
        return cli_bad_usage("livedb restore --data DIR BACKUP (livedb backups lists them)");
    if (!backup_name_ok(name))
        return cli_bad_usage("BACKUP is a name that livedb backups lists, like"
                           " livedb-20261123T184500123Z.db");
    /* The server holds this lock while it runs. */
    char lock[4096];
    snprintf(lock, sizeof lock, "%s/livedb.lock", data);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "livedb: a server is running on %s (or it cannot be locked): stop it"
                        " first\n", data);
        if (fd >= 0)
            close(fd);
        return 1;
    }
    err_t e = {0};
    char *aside = NULL;
    int rc = 0;
    if (backup_restore(data, name, &aside, &e)) {
        rc = cli_fail(&e, "restore failed");
    } else {
        printf("livedb: restored %s into %s/livedb.db\n", name, data);
        if (aside)
            printf("livedb: the database it replaced was moved to %s (nothing deleted)\n", aside);
    }
    free(aside);
    close(fd);
    return rc;
}
