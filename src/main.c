/*
 * main.c: the command line: the usage text and the table of commands,
 * one file each under src/cli/ (and the apps' own, core/apps.h).
 *
 * Exit status: 0 success, 1 failure at run time, 2 bad usage. Errors are
 * one line on stderr that says what is wrong and what to do.
 */
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "cli/backups.h"
#include "cli/cli.h"
#include "core/apps.h"

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

static const struct {
    const char *name;
    int (*main)(int argc, char **argv);
} commands[] = {
    {"serve", cli_serve},       /* cli/serve.c */
    {"export", cli_export},     /* cli/export.c */
    {"import", cli_import},     /* cli/import.c */
    {"account", cli_account},   /* cli/account.c */
    {"activity", cli_activity}, /* cli/activity.c */
    {"verify", cli_verify},     /* cli/activity.c */
    {"backup", cli_backup},     /* cli/backups.c */
    {"backups", cli_backups},   /* cli/backups.c */
    {"restore", cli_restore},   /* cli/backups.c */
};

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
    for (size_t i = 0; i < ARRAY_LEN(commands); i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].main(argc - 2, argv + 2);
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
    return cli_bad_usage("unknown command '%s'", cmd);
}
