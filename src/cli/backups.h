/*
 * backups.h: the command line's backup commands (store/backup.h does the
 * work):
 *
 *   livedb backup  [--data DIR] [--keep N]   take one now, print its name
 *   livedb backups [--data DIR]              list them, newest first
 *   livedb verify  [--data DIR] BACKUP       check one backup
 *   livedb restore --data DIR BACKUP         the server must be stopped
 *
 * Each returns the process's exit status: 0 done, 1 failed, 2 bad usage.
 */
#ifndef LIVEDB_CLI_BACKUPS_H
#define LIVEDB_CLI_BACKUPS_H

int cli_backup(int argc, char **argv);
int cli_backups(int argc, char **argv);
int cli_verify_backup(const char *data, const char *name);
int cli_restore(int argc, char **argv);

#endif
