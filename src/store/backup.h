/*
 * backup.h: backups of a data directory, their checks, restore and
 * recovery from a corrupt database.
 *
 * A backup is a consistent snapshot of DATA/livedb.db, taken from one read
 * transaction (writers go on; the snapshot is exactly the commits up to its
 * seq), written to a temporary file, fsynced, renamed into DATA/backups/,
 * the directory fsynced. DATA/backups/manifest.json records each one's
 * seq, size, time and BLAKE2b-256 checksum, and whether its last check
 * passed. A new backup counts only once it has been opened read-only and
 * passed integrity_check (which reads every page, so the page checksums of
 * vfs.h are checked too) and its checksum.
 *
 * Every function here works from a data directory path with connections of
 * its own, so the command line (while a server runs, or not) and the
 * server's own timer share it. The manifest is changed under an flock, so
 * two processes taking backups at once keep both.
 */
#ifndef LIVEDB_BACKUP_H
#define LIVEDB_BACKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/err.h"

#define BACKUP_NAME_MAX 64

typedef struct backup_info {
    char name[BACKUP_NAME_MAX]; /* livedb-20261123T184500123Z.db */
    int64_t seq;                /* the last change it holds */
    int64_t size;
    int64_t at_ms;              /* when it was taken */
    char blake2b[65];           /* hex */
    bool ok;                    /* its last check passed */
    int64_t verified_ms;        /* when it was last checked */
    char problem[160];          /* why not ok */
} backup_info;

/* Takes a backup now, checks it, records it, and removes the oldest beyond
 * keep (0: keep all). *out describes it. */
int backup_take(const char *dir, int keep, backup_info *out, err_t *err);

/* The backups in the manifest, newest first (*out is malloc'd; free it). */
int backup_list(const char *dir, backup_info **out, size_t *n, err_t *err);

/* Checks one backup (integrity_check, its checksum) and records the
 * outcome. E_NOT_FOUND when the manifest has no such name. */
int backup_verify(const char *dir, const char *name, backup_info *out, err_t *err);

/* Whether name could be a backup's (no paths, no surprises). */
bool backup_name_ok(const char *name);

/* Replaces DATA/livedb.db with a copy of a backup (checked first). The
 * database in place, if any, is moved aside into DATA/replaced-TIME/ and
 * never deleted; *aside says where (may be NULL). The server must not be
 * running: the caller holds the data directory's lock. */
int backup_restore(const char *dir, const char *name, char **aside, err_t *err);

/* What the start-up check found and did (backup_recover). */
typedef struct recovery {
    bool recovered;          /* the database was replaced by a backup */
    char backup[BACKUP_NAME_MAX];
    int64_t backup_seq;      /* changes up to here are kept */
    int64_t lost_to;         /* the last seq the damaged database held, or -1 unknown */
    char aside[512];         /* where the damaged files were moved */
    char problem[200];       /* what was wrong with it */
    bool salvaged;           /* kept the database and the sound part of its WAL
                                instead of a backup (backup is then "") */
    int64_t feed_from;       /* the feed goes on from this seq (see below) */
} recovery;

/* The start-up check: first the WAL (SQLite stops reading it at the first
 * damaged frame, silently dropping every commit after it: when whole
 * commits follow a damaged frame, acknowledged writes would be lost), then
 * quick_check of the database. When either is damaged, and auto is true:
 * moves the files aside (never deletes them), and puts in their place the
 * database with the sound part of its WAL when that passes its check
 * (salvage: it is newer than any backup), else the newest backup that
 * passes its check; fills *rec. When auto is false, or nothing passes: an
 * error that says what to do. A missing database is fine (a new one).
 *
 * After a recovery (and a restore) the change feed goes on from a floor
 * (meta feed_floor) past every seq a client may have seen of what was
 * lost: a client resuming from before it gets resync_required instead of
 * silently missing the changes that replaced the lost ones. */
int backup_recover(const char *dir, bool autorecover, recovery *rec, err_t *err);

#endif
