/*
 * backup.c: backups, their checks, restore, and the start-up recovery
 * (backup.h says what each promises).
 *
 * Files, all inside the data directory:
 *   livedb.db                     the database (with -wal and -shm)
 *   backups/livedb-TIME.db        one backup: a plain (rollback-journal)
 *                                 SQLite file with page checksums
 *   backups/manifest.json         {"backups":[{name,seq,size,at,blake2b,ok,
 *                                 verified_at,problem}]}, oldest first
 *   backups/.lock                 flock'd while the manifest changes
 *   corrupt-TIME/, replaced-TIME/ databases moved aside, never deleted
 *
 * Every file that must survive a crash is written to a temporary name,
 * fsynced, renamed, and its directory fsynced.
 */
#include "backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>

#include "../util/log.h"
#include "../util/util.h"
#include "vfs.h"

/* ------------------------------------------------------------------ files */

static char *path_of(const char *dir, const char *a, const char *b)
{
    buf_t p = {0};
    buf_printf(&p, "%s/%s%s%s", dir, a, b ? "/" : "", b ? b : "");
    return buf_take(&p, NULL);
}

static int fsync_path(const char *path, bool is_dir)
{
    int fd = open(path, (is_dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* BLAKE2b-256 of a whole file, in hex. */
static int file_hash(const char *path, char hex[65], int64_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    unsigned char buf[65536];
    size_t n;
    int64_t total = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        crypto_generichash_update(&st, buf, n);
        total += (int64_t)n;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return -1;
    unsigned char h[32];
    crypto_generichash_final(&st, h, sizeof h);
    sodium_bin2hex(hex, 65, h, sizeof h);
    if (size)
        *size = total;
    return 0;
}

/* Copies a file to dst (through a temporary name, fsynced, renamed). */
static int copy_file(const char *src, const char *dst, err_t *err)
{
    buf_t tmp = {0};
    buf_printf(&tmp, "%s.tmp", dst);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = open(tmp.p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = -1;
    if (in < 0 || out < 0) {
        err_set(err, E_UNAVAILABLE, "cannot copy %s to %s: %s", src, dst, strerror(errno));
        goto done;
    }
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0) {
                err_set(err, errno == ENOSPC ? E_STORAGE_FULL : E_UNAVAILABLE,
                        "cannot write %s: %s", tmp.p, strerror(errno));
                goto done;
            }
            off += w;
        }
    }
    if (n < 0 || fsync(out) != 0) {
        err_set(err, E_UNAVAILABLE, "cannot copy %s: %s", src, strerror(errno));
        goto done;
    }
    close(out);
    out = -1;
    if (rename(tmp.p, dst) != 0) {
        err_set(err, E_UNAVAILABLE, "cannot rename %s: %s", tmp.p, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    if (rc)
        unlink(tmp.p);
    buf_free(&tmp);
    return rc;
}

static void stamp(int64_t ms, char *out, size_t cap)
{
    char t[32];
    time_format_rfc3339(ms, t); /* 2026-11-23T18:45:00.123Z */
    /* -> 20261123T184500123Z: a file name that sorts by time. */
    size_t j = 0;
    for (size_t i = 0; t[i] && j + 1 < cap; i++)
        if (t[i] != '-' && t[i] != ':' && t[i] != '.')
            out[j++] = t[i];
    out[j] = '\0';
}

bool backup_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n < 11 || n >= BACKUP_NAME_MAX || strncmp(name, "livedb-", 7) != 0 ||
        strcmp(name + n - 3, ".db") != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(name[i] >= 'A' && name[i] <= 'Z') && !(name[i] >= 'a' && name[i] <= 'z') &&
            !(name[i] >= '0' && name[i] <= '9') && name[i] != '-' && name[i] != '.')
            return false;
    return strstr(name, "..") == NULL;
}

/* ------------------------------------------------------------------ manifest */

static int lock_backups(const char *dir, err_t *err)
{
    char *bdir = path_of(dir, "backups", NULL);
    if (mkdir(bdir, 0700) != 0 && errno != EEXIST) {
        err_set(err, E_UNAVAILABLE, "cannot create %s: %s", bdir, strerror(errno));
        free(bdir);
        return -1;
    }
    char *lock = path_of(dir, "backups", ".lock");
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        err_set(err, E_UNAVAILABLE, "cannot lock %s: %s", lock, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    free(lock);
    free(bdir);
    return fd;
}

static void unlock_backups(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock */
}

static json_t *manifest_load(const char *dir)
{
    char *p = path_of(dir, "backups", "manifest.json");
    json_t *m = json_load_file(p, 0, NULL);
    free(p);
    if (!json_is_object(m) || !json_is_array(json_object_get(m, "backups"))) {
        json_decref(m);
        m = json_pack("{s[]}", "backups");
    }
    return m;
}

static int manifest_save(const char *dir, json_t *m, err_t *err)
{
    char *p = path_of(dir, "backups", "manifest.json");
    char *tmp = path_of(dir, "backups", "manifest.json.tmp");
    char *bdir = path_of(dir, "backups", NULL);
    int rc = -1;
    if (json_dump_file(m, tmp, JSON_INDENT(1)) != 0 || fsync_path(tmp, false) != 0 ||
        rename(tmp, p) != 0 || fsync_path(bdir, true) != 0)
        err_set(err, errno == ENOSPC ? E_STORAGE_FULL : E_UNAVAILABLE,
                "cannot write %s: %s", p, strerror(errno));
    else
        rc = 0;
    free(p);
    free(tmp);
    free(bdir);
    return rc;
}

static void info_from(const json_t *o, backup_info *b)
{
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", json_string_value(json_object_get(o, "name")));
    b->seq = json_integer_value(json_object_get(o, "seq"));
    b->size = json_integer_value(json_object_get(o, "size"));
    b->at_ms = json_integer_value(json_object_get(o, "at"));
    const char *h = json_string_value(json_object_get(o, "blake2b"));
    snprintf(b->blake2b, sizeof b->blake2b, "%s", h ? h : "");
    b->ok = json_is_true(json_object_get(o, "ok"));
    b->verified_ms = json_integer_value(json_object_get(o, "verified_at"));
    const char *pr = json_string_value(json_object_get(o, "problem"));
    snprintf(b->problem, sizeof b->problem, "%s", pr ? pr : "");
}

static json_t *info_json(const backup_info *b)
{
    json_t *o = json_pack("{sssIsIsIsssbsI}", "name", b->name, "seq", (json_int_t)b->seq,
                          "size", (json_int_t)b->size, "at", (json_int_t)b->at_ms, "blake2b",
                          b->blake2b, "ok", b->ok, "verified_at", (json_int_t)b->verified_ms);
    if (b->problem[0])
        json_object_set_new(o, "problem", json_string(b->problem));
    return o;
}

static json_t *manifest_find(json_t *m, const char *name, size_t *index)
{
    json_t *arr = json_object_get(m, "backups");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        const char *n = json_string_value(json_object_get(o, "name"));
        if (n && strcmp(n, name) == 0) {
            if (index)
                *index = i;
            return o;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ checks */

/* The feed position a database is at: its last change, or the floor it
 * goes on from after a recovery (whichever is later). */
static int64_t last_seq(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT max(coalesce((SELECT max(seq) FROM changes), 0),"
                           " coalesce((SELECT value - 1 FROM meta WHERE key = 'feed_floor'), 0))",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Opens a database file and runs integrity_check (full: every page and
 * index) or quick_check. 0 when it passes; else problem says why. */
static int db_check(const char *path, bool full, bool readonly, int64_t *seq, char *problem,
                    size_t cap)
{
    vfs_register();
    sqlite3 *db = NULL;
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(problem, cap, "will not open: %s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return -1;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(db, full ? "PRAGMA integrity_check(1)" : "PRAGMA quick_check(1)", -1,
                            &st, NULL);
    int ok = -1;
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        if (r && strcmp(r, "ok") == 0)
            ok = 0;
        else
            snprintf(problem, cap, "fails its %s: %.120s", full ? "integrity check" : "quick check",
                     r ? r : "");
    } else {
        snprintf(problem, cap, "cannot be read: %s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    if (ok == 0 && seq) {
        *seq = last_seq(db);
        if (*seq < 0) {
            snprintf(problem, cap, "is not a livedb database (no change feed)");
            ok = -1;
        }
    }
    sqlite3_close(db);
    return ok;
}

/* Checks a backup file (at path) against what the manifest says of it. */
static void check_file(const char *p, backup_info *b)
{
    char hex[65];
    int64_t size = 0, seq = -1;
    b->ok = false;
    b->problem[0] = '\0';
    b->verified_ms = time_now_ms();
    if (file_hash(p, hex, &size) != 0)
        snprintf(b->problem, sizeof b->problem, "the file cannot be read: %s", strerror(errno));
    else if (b->blake2b[0] && strcmp(hex, b->blake2b) != 0)
        snprintf(b->problem, sizeof b->problem,
                 "its checksum differs from the one recorded: the file was changed");
    else if (db_check(p, true, true, &seq, b->problem, sizeof b->problem) == 0) {
        if (b->seq && seq != b->seq)
            snprintf(b->problem, sizeof b->problem, "holds seq %lld, not %lld as recorded",
                     (long long)seq, (long long)b->seq);
        else
            b->ok = true;
    }
    if (!b->blake2b[0] && b->ok)
        snprintf(b->blake2b, sizeof b->blake2b, "%s", hex);
    b->size = size;
}

static void check_backup(const char *dir, backup_info *b)
{
    char *p = path_of(dir, "backups", b->name);
    check_file(p, b);
    free(p);
}

/* ------------------------------------------------------------------ take */

/* Gives an empty destination its page 1: the source's page size and
 * reserved bytes, written now, before any other page. An SQLite code. */
static int prime_dest(sqlite3 *src, sqlite3 *dst)
{
    sqlite3_stmt *st = NULL;
    int size = 0;
    if (sqlite3_prepare_v2(src, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        size = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (size < 512)
        return SQLITE_ERROR;
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA page_size=%d", size);
    int rc = sqlite3_exec(dst, sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK && vfs_has_checksums(src))
        rc = vfs_reserve_pages(dst);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(dst, "PRAGMA user_version=0", NULL, NULL, NULL);
    return rc;
}

/* The snapshot: one read transaction on the live database gives both the
 * seq and every page at that seq; the online backup API copies the pages
 * (checked on the way by the VFS) while writers go on. */
static int snapshot_to(const char *src_path, const char *dst_path, int64_t *seq, err_t *err)
{
    vfs_register();
    sqlite3 *src = NULL, *dst = NULL;
    sqlite3_backup *bk = NULL;
    int rc = -1;
    if (sqlite3_open_v2(src_path, &src, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        err_set(err, E_UNAVAILABLE, "cannot open %s: %s", src_path, sqlite3_errmsg(src));
        goto done;
    }
    sqlite3_busy_timeout(src, 5000);
    if (sqlite3_exec(src, "PRAGMA query_only=1; BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        (*seq = last_seq(src)) < 0) {
        err_set(err, E_UNAVAILABLE, "cannot read %s: %s", src_path, sqlite3_errmsg(src));
        goto done;
    }
    if (sqlite3_open_v2(dst_path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        err_set(err, E_UNAVAILABLE, "cannot create %s: %s", dst_path, sqlite3_errmsg(dst));
        goto done;
    }
    /* The VFS learns that a file's pages carry checksums from its page 1
     * (vfs.c read_header), and signs only once it knows. A copy bigger than
     * the page cache spills pages to the new file before page 1, so they
     * would go out unsigned and the backup would fail its check: write a
     * page 1 with the source's page size and reserve first. */
    int brc = prime_dest(src, dst);
    if (brc == SQLITE_OK) {
        bk = sqlite3_backup_init(dst, "main", src, "main");
        brc = bk ? sqlite3_backup_step(bk, -1) : sqlite3_errcode(dst);
        if (bk)
            sqlite3_backup_finish(bk);
    }
    if (brc != SQLITE_DONE) {
        int code = (brc & 0xff) == SQLITE_FULL ? E_STORAGE_FULL : E_UNAVAILABLE;
        err_set(err, code, "the backup could not be written: %s",
                (brc & 0xff) == SQLITE_FULL ? "the disk is full" : sqlite3_errstr(brc));
        goto done;
    }
    /* A backup is one self-contained file: no WAL beside it. */
    if (sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK) {
        err_set(err, E_UNAVAILABLE, "cannot finish %s: %s", dst_path, sqlite3_errmsg(dst));
        goto done;
    }
    rc = 0;
done:
    sqlite3_close(dst);
    if (src)
        sqlite3_exec(src, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(src);
    return rc;
}

/* Takes the oldest backups beyond keep out of the manifest; returns their
 * names, whose files go only once the manifest without them is on disk (a
 * kill in between leaves an unnamed file, never a name without a file). */
static json_t *rotate(json_t *m, int keep)
{
    json_t *arr = json_object_get(m, "backups");
    json_t *gone = json_array();
    while (keep > 0 && json_array_size(arr) > (size_t)keep) {
        json_t *name = json_object_get(json_array_get(arr, 0), "name");
        if (json_is_string(name) && backup_name_ok(json_string_value(name)))
            json_array_append(gone, name);
        json_array_remove(arr, 0);
    }
    return gone;
}

static void remove_rotated(const char *dir, json_t *gone)
{
    size_t i;
    json_t *name;
    json_array_foreach(gone, i, name) {
        char *p = path_of(dir, "backups", json_string_value(name));
        if (unlink(p) != 0 && errno != ENOENT)
            log_msg(LOG_WARN, "cannot remove old backup %s: %s", p, strerror(errno));
        free(p);
    }
}

/* Removes what a backup killed half-way left (.taking-NAME.db and its
 * -journal: a partial copy as big as the database). Only under the lock,
 * which a taker holds until it is done or dead: any such file is stale. */
static void remove_stale(const char *bdir)
{
    DIR *d = opendir(bdir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, ".taking-", 8) != 0)
            continue;
        char *p = path_of(bdir, e->d_name, NULL);
        if (unlink(p) == 0)
            log_msg(LOG_WARN, "removed %s, left by a backup that did not finish", p);
        free(p);
    }
    closedir(d);
}

int backup_take(const char *dir, int keep, backup_info *out, err_t *err)
{
    uint64_t t0 = time_mono_ns();
    int lock = lock_backups(dir, err);
    if (lock < 0)
        return -1;
    backup_info b = {.at_ms = time_now_ms()};
    char ts[32];
    stamp(b.at_ms, ts, sizeof ts);
    snprintf(b.name, sizeof b.name, "livedb-%s.db", ts);
    json_t *m = manifest_load(dir);
    for (int i = 2; manifest_find(m, b.name, NULL) && i < 100; i++)
        snprintf(b.name, sizeof b.name, "livedb-%s-%d.db", ts, i);
    char *src = path_of(dir, "livedb.db", NULL);
    char *final = path_of(dir, "backups", b.name);
    char *bdir = path_of(dir, "backups", NULL);
    buf_t tmp = {0};
    buf_printf(&tmp, "%s/.taking-%s", bdir, b.name);
    remove_stale(bdir);
    int rc = -1;
    if (snapshot_to(src, tmp.p, &b.seq, err))
        goto done;
    if (fsync_path(tmp.p, false) != 0 || file_hash(tmp.p, b.blake2b, &b.size) != 0) {
        err_set(err, E_UNAVAILABLE, "cannot sync %s: %s", tmp.p, strerror(errno));
        goto done;
    }
    /* It counts once it reads back whole. Checked before it takes its
     * name: a kill during the check (the long part) leaves a .taking- file
     * that the next backup removes, not a backup the manifest lacks. */
    int64_t seq = b.seq;
    check_file(tmp.p, &b);
    if (!b.ok) {
        err_set(err, E_INTERNAL, "the new backup %s failed its check (%s); it was removed",
                b.name, b.problem);
        goto done;
    }
    b.seq = seq;
    if (rename(tmp.p, final) != 0 || fsync_path(bdir, true) != 0) {
        err_set(err, E_UNAVAILABLE, "cannot put the backup in place: %s", strerror(errno));
        unlink(final);
        goto done;
    }
    json_array_append_new(json_object_get(m, "backups"), info_json(&b));
    json_t *gone = rotate(m, keep);
    if (manifest_save(dir, m, err)) {
        json_decref(gone);
        unlink(final);
        goto done;
    }
    remove_rotated(dir, gone);
    json_decref(gone);
    log_msg(LOG_INFO, "backup %s: seq %lld, %lld bytes, %.0f ms", b.name, (long long)b.seq,
            (long long)b.size, (double)(time_mono_ns() - t0) / 1e6);
    if (out)
        *out = b;
    rc = 0;
done:
    if (rc)
        unlink(tmp.p);
    buf_free(&tmp);
    free(src);
    free(final);
    free(bdir);
    json_decref(m);
    unlock_backups(lock);
    return rc;
}

/* ------------------------------------------------------------------ list, verify */

int backup_list(const char *dir, backup_info **out, size_t *n, err_t *err)
{
    json_t *m = manifest_load(dir);
    json_t *arr = json_object_get(m, "backups");
    size_t count = json_array_size(arr);
    backup_info *v = xcalloc(count ? count : 1, sizeof *v);
    for (size_t i = 0; i < count; i++)
        info_from(json_array_get(arr, count - 1 - i), &v[i]);
    json_decref(m);
    *out = v;
    *n = count;
    return 0;
}

int backup_verify(const char *dir, const char *name, backup_info *out, err_t *err)
{
    if (!backup_name_ok(name))
        return err_set(err, E_BAD_REQUEST, "'%.80s' is not a backup name", name);
    int lock = lock_backups(dir, err);
    if (lock < 0)
        return -1;
    json_t *m = manifest_load(dir);
    size_t index;
    json_t *o = manifest_find(m, name, &index);
    int rc = -1;
    if (!o) {
        err_set(err, E_NOT_FOUND, "no backup %s", name);
        goto done;
    }
    backup_info b;
    info_from(o, &b);
    check_backup(dir, &b);
    json_array_set_new(json_object_get(m, "backups"), index, info_json(&b));
    if (manifest_save(dir, m, err))
        goto done;
    if (!b.ok)
        log_msg(LOG_ERROR, "backup %s failed its check: %s", b.name, b.problem);
    if (out)
        *out = b;
    rc = 0;
done:
    json_decref(m);
    unlock_backups(lock);
    return rc;
}

/* ------------------------------------------------------------------ restore, recover */

/* Moves livedb.db and its -wal/-shm into DATA/PREFIX-TIME/. */
static int move_aside(const char *dir, const char *prefix, char *where, size_t cap, err_t *err)
{
    char ts[32];
    stamp(time_now_ms(), ts, sizeof ts);
    snprintf(where, cap, "%s/%s-%s", dir, prefix, ts);
    if (mkdir(where, 0700) != 0)
        return err_set(err, E_UNAVAILABLE, "cannot create %s: %s", where, strerror(errno));
    static const char *const names[] = {"livedb.db", "livedb.db-wal", "livedb.db-shm"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        char *from = path_of(dir, names[i], NULL);
        char *to = path_of(where, names[i], NULL);
        int r = rename(from, to);
        int e = errno;
        free(from);
        free(to);
        if (r != 0 && e != ENOENT)
            return err_set(err, E_UNAVAILABLE, "cannot move %s aside: %s", names[i], strerror(e));
    }
    if (fsync_path(where, true) != 0 || fsync_path(dir, true) != 0)
        return err_set(err, E_UNAVAILABLE, "cannot sync %s: %s", dir, strerror(errno));
    return 0;
}

/* Puts a checked backup in place of the (moved-aside) database. */
static int put_in_place(const char *dir, const char *name, err_t *err)
{
    char *src = path_of(dir, "backups", name);
    char *dst = path_of(dir, "livedb.db", NULL);
    int rc = copy_file(src, dst, err);
    if (rc == 0 && fsync_path(dir, true) != 0)
        rc = err_set(err, E_UNAVAILABLE, "cannot sync %s: %s", dir, strerror(errno));
    free(src);
    free(dst);
    return rc;
}

/* The last seq a damaged database still tells, or -1. */
static int64_t damaged_last_seq(const char *path)
{
    sqlite3 *db = NULL;
    int64_t v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK)
        v = last_seq(db);
    sqlite3_close(db);
    return v;
}

/* ------------------------------------------------------------------ the WAL */

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* SQLite's WAL checksum (its file format, section 4.1) over n bytes (a
 * multiple of 8), words big- or little-endian as the header's magic says. */
static void wal_sum(const unsigned char *p, size_t n, bool big, uint32_t s[2])
{
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint32_t x0, x1;
        if (big) {
            x0 = get_be32(p + i);
            x1 = get_be32(p + i + 4);
        } else {
            memcpy(&x0, p + i, 4);
            memcpy(&x1, p + i + 4, 4);
        }
        s[0] += x0 + s[1];
        s[1] += x1 + s[0];
    }
}

typedef struct wal_state {
    bool damaged;      /* whole commits follow a frame that fails its check */
    long bad_frame;    /* the first such frame (1-based; 0: the header) */
    long commits_lost; /* commits after it */
    off_t sound_bytes; /* the header and every frame up to the last sound commit */
} wal_state;

/* Reads a WAL the way SQLite's recovery does (frames of the header's salts,
 * each checksum chained to the one before), and goes on past the first
 * frame that fails (a bad checksum or a salt not this WAL's) to count the
 * commits of this WAL after it. */
/* The page size the database's header gives (offset 16: 1 means 65536),
 * 0 when it cannot be read. */
static uint32_t db_page_size(const char *db)
{
    unsigned char b[18];
    FILE *f = fopen(db, "rb");
    size_t got = f ? fread(b, 1, sizeof b, f) : 0;
    if (f)
        fclose(f);
    if (got != sizeof b)
        return 0;
    uint32_t ps = (uint32_t)b[16] << 8 | b[17];
    return ps == 1 ? 65536 : ps;
}

static bool valid_page_size(uint32_t ps)
{
    return ps >= 512 && ps <= 65536 && (ps & (ps - 1)) == 0;
}

/* Whether frame f (of fsz bytes) chains from the checksum state s. */
static bool frame_chains(const unsigned char *f, size_t fsz, bool big, const uint32_t s[2])
{
    uint32_t t[2] = {s[0], s[1]};
    wal_sum(f, 8, big, t);
    wal_sum(f + 24, fsz - 24, big, t);
    return t[0] == get_be32(f + 16) && t[1] == get_be32(f + 20);
}

/* Reads a WAL the way SQLite's recovery does (frames of the header's salts,
 * each checksum chained to the one before), and goes on past the first
 * frame that fails (a bad checksum or a salt not this WAL's) to count the
 * commits of this WAL after it. db is the database the WAL belongs to. */
static int wal_scan(const char *path, const char *db, wal_state *w)
{
    memset(w, 0, sizeof *w);
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0; /* no WAL: nothing to check */
    unsigned char hdr[32];
    if (fread(hdr, 1, 32, f) != 32) {
        fclose(f);
        return 0;
    }
    uint32_t magic = get_be32(hdr), ps = get_be32(hdr + 8);
    bool shape = (magic & 0xFFFFFFFE) == 0x377f0682 && valid_page_size(ps);
    bool big = magic & 1;
    uint32_t s[2] = {0, 0};
    wal_sum(hdr, 24, big, s);
    bool hdr_bad = !shape || s[0] != get_be32(hdr + 24) || s[1] != get_be32(hdr + 28);
    if (!shape)
        ps = db_page_size(db);
    if (!valid_page_size(ps)) {
        fclose(f);
        return 0;
    }
    size_t fsz = 24 + ps;
    unsigned char *frame = xmalloc(fsz);
    unsigned char salts[8];
    memcpy(salts, hdr + 16, 8);
    /* A header that fails its check makes SQLite ignore the whole WAL.
     * Torn by a crash, it holds at most the one unacknowledged commit that
     * was being written; with more, one of its bytes was damaged after the
     * fact. Its frames are then found by the first one, which shares a salt
     * word with the header and chains from its stored checksum (or, when
     * the stored checksum is the damaged part, from the one its bytes give),
     * in the byte order its magic says (either, when the magic is damaged).
     * Every commit among them is lost: none of the WAL is sound. */
    if (hdr_bad) {
        bool found = false;
        if (fread(frame, 1, fsz, f) == fsz &&
            (memcmp(frame + 8, hdr + 16, 4) == 0 || memcmp(frame + 12, hdr + 20, 4) == 0)) {
            for (int order = 0; order < 2 && !found; order++) {
                bool b = (magic & 0xFFFFFFFE) == 0x377f0682 ? big : order == 1;
                uint32_t computed[2] = {0, 0};
                wal_sum(hdr, 24, b, computed);
                const uint32_t stored[2] = {get_be32(hdr + 24), get_be32(hdr + 28)};
                const uint32_t *from = frame_chains(frame, fsz, b, stored)     ? stored
                                       : frame_chains(frame, fsz, b, computed) ? computed
                                                                               : NULL;
                if (from) {
                    found = true;
                    big = b;
                    s[0] = from[0];
                    s[1] = from[1];
                }
            }
        }
        if (!found) {
            free(frame);
            fclose(f);
            return 0; /* no frame of its own: ignored as SQLite does, nothing lost */
        }
        memcpy(salts, frame + 8, 8);
        fseeko(f, 32, SEEK_SET);
    }
    bool broken = false;
    long n = 0;
    off_t at = 32;
    w->sound_bytes = hdr_bad ? 0 : 32;
    while (fread(frame, 1, fsz, f) == fsz) {
        n++;
        at += (off_t)fsz;
        if (memcmp(frame + 8, salts, 8) != 0) {
            /* Not of this WAL's salts: SQLite's end of the log. Frames of
             * an earlier WAL are all that may follow one honestly (each
             * reset draws new salts and writes from the first frame on),
             * so a frame of this WAL's salts after it means the salt
             * itself was damaged (the checksums do not cover it). */
            if (!broken) {
                broken = true;
                w->bad_frame = n;
            }
            continue;
        }
        bool commit = get_be32(frame + 4) != 0;
        if (!broken) {
            if (frame_chains(frame, fsz, big, s)) {
                s[0] = get_be32(frame + 16);
                s[1] = get_be32(frame + 20);
                if (commit && hdr_bad)
                    w->commits_lost++;
                else if (commit)
                    w->sound_bytes = at;
                continue;
            }
            broken = true;
            w->bad_frame = n;
        }
        if (commit)
            w->commits_lost++;
    }
    free(frame);
    fclose(f);
    /* One commit after the bad frame may be the last one, torn by a crash
     * before its fsync finished (never acknowledged). Two or more: the
     * first of them was fsynced, answered, and would be lost. */
    if (hdr_bad)
        w->bad_frame = 0; /* the damage begins at the header */
    w->damaged = (broken || hdr_bad) && w->commits_lost >= 2;
    if (w->commits_lost == 1) {
        char what[40] = "the header";
        if (!hdr_bad)
            snprintf(what, sizeof what, "frame %ld", w->bad_frame);
        log_msg(LOG_WARN, "%s: %s fails its check and one commit follows it: a last write torn by a"
                          " crash (it was never acknowledged); SQLite drops it",
                path, what);
    }
    return 0;
}

/* Copies the first n bytes of src to dst (fsynced). */
static int copy_prefix(const char *src, const char *dst, off_t n, err_t *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = -1;
    char buf[65536];
    while (in >= 0 && out >= 0 && n > 0) {
        ssize_t r = read(in, buf, n < (off_t)sizeof buf ? (size_t)n : sizeof buf);
        if (r <= 0 || write(out, buf, (size_t)r) != r)
            break;
        n -= r;
    }
    if (in >= 0 && out >= 0 && n == 0 && fsync(out) == 0)
        rc = 0;
    else
        err_set(err, E_UNAVAILABLE, "cannot copy %s: %s", src, strerror(errno));
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return rc;
}

/* ------------------------------------------------------------------ restore, recover */

/* Sets where the feed goes on from in the database put in place: past
 * both what it holds and the last seq the replaced database told (-1:
 * unknown, then far past it). */
static int set_feed_floor(const char *dir, int64_t kept, int64_t lost_to, int64_t *floor,
                          err_t *err)
{
    *floor = lost_to >= 0 ? (lost_to > kept ? lost_to : kept) + 2 : kept + 1000000000;
    char *path = path_of(dir, "livedb.db", NULL);
    sqlite3 *db = NULL;
    char sql[128];
    snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO meta VALUES('feed_floor', %lld)",
             (long long)*floor);
    vfs_register();
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        err_set(err, E_UNAVAILABLE, "cannot mark the feed in %s: %s", path,
                db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    free(path);
    return rc == SQLITE_OK ? 0 : -1;
}

int backup_restore(const char *dir, const char *name, char **aside, err_t *err)
{
    backup_info b;
    if (backup_verify(dir, name, &b, err))
        return -1;
    if (!b.ok)
        return err_set(err, E_INVALID, "backup %s failed its check (%s): not restored", name,
                       b.problem);
    char where[512] = "";
    char *db = path_of(dir, "livedb.db", NULL);
    bool exists = access(db, F_OK) == 0;
    int64_t replaced_to = exists ? damaged_last_seq(db) : 0, floor;
    free(db);
    if (exists && move_aside(dir, "replaced", where, sizeof where, err))
        return -1;
    if (put_in_place(dir, name, err) || set_feed_floor(dir, b.seq, replaced_to, &floor, err))
        return -1;
    if (aside)
        *aside = exists ? xstrdup(where) : NULL;
    log_msg(LOG_WARN, "restored backup %s (seq %lld)%s%s", name, (long long)b.seq,
            exists ? "; the database it replaced is in " : "", where);
    return 0;
}


/* Salvage after a damaged WAL: the database file and the WAL up to its
 * last sound commit, copied into place from where they were moved. The
 * damaged frame and everything after it stay only in the moved copy. */
static int salvage(const char *dir, const char *aside, off_t wal_bytes, int64_t *seq, char *problem,
                   size_t cap, err_t *err)
{
    char *from_db = path_of(aside, "livedb.db", NULL), *from_wal = path_of(aside, "livedb.db-wal", NULL);
    char *db = path_of(dir, "livedb.db", NULL), *wal = path_of(dir, "livedb.db-wal", NULL);
    int rc = copy_file(from_db, db, err) || copy_prefix(from_wal, wal, wal_bytes, err) ||
                     fsync_path(dir, true) != 0
                 ? -1
                 : db_check(db, false, false, seq, problem, cap);
    if (rc) { /* leave nothing half-made: the backup goes in instead */
        unlink(db);
        unlink(wal);
        char *shm = path_of(dir, "livedb.db-shm", NULL);
        unlink(shm);
        free(shm);
    }
    free(from_db);
    free(from_wal);
    free(db);
    free(wal);
    return rc;
}

int backup_recover(const char *dir, bool autorecover, recovery *rec, err_t *err)
{
    memset(rec, 0, sizeof *rec);
    rec->lost_to = -1;
    char *db = path_of(dir, "livedb.db", NULL), *walp = path_of(dir, "livedb.db-wal", NULL);
    int rc = 0;
    struct stat sb;
    wal_state w;
    if (stat(db, &sb) != 0 || sb.st_size == 0)
        goto done; /* a new database */
    wal_scan(walp, db, &w);
    if (w.damaged) {
        if (w.bad_frame)
            snprintf(rec->problem, sizeof rec->problem,
                     "has a damaged write-ahead log: frame %ld fails its check and %ld commits"
                     " after it would be dropped",
                     w.bad_frame, w.commits_lost);
        else
            snprintf(rec->problem, sizeof rec->problem,
                     "has a damaged write-ahead log: its header fails its check and its %ld"
                     " commits would be dropped",
                     w.commits_lost);
    } else if (db_check(db, false, false, NULL, rec->problem, sizeof rec->problem) == 0) {
        goto done;
    }
    log_msg(LOG_ERROR, "the database %s %s", db, rec->problem);
    if (!autorecover) {
        rc = err_set(err, E_UNAVAILABLE,
                     "the database %s %s; not starting (--no-auto-recover). Restore a backup"
                     " with: livedb restore --data %s BACKUP (livedb backups lists them)",
                     db, rec->problem, dir);
        goto done;
    }
    /* The newest backup that passes its check (a salvage may not need it,
     * but without one to fall back on nothing is moved). */
    backup_info *list;
    size_t n;
    backup_list(dir, &list, &n, err);
    const backup_info *good = NULL;
    backup_info checked;
    for (size_t i = 0; i < n && !good; i++) {
        if (backup_verify(dir, list[i].name, &checked, err) == 0 && checked.ok)
            good = &checked;
        err_clear(err);
    }
    free(list);
    if (!good && !w.damaged) {
        rc = err_set(err, E_UNAVAILABLE,
                     "the database %s %s, and there is no backup that passes its check to"
                     " recover from. It was left as it is; move it aside to start empty",
                     db, rec->problem);
        goto done;
    }
    if (!w.damaged)
        rec->lost_to = damaged_last_seq(db); /* what it still tells; -1 when nothing */
    if (move_aside(dir, "corrupt", rec->aside, sizeof rec->aside, err)) {
        rc = -1;
        goto done;
    }
    char why[200];
    int64_t kept = 0;
    if (w.damaged && salvage(dir, rec->aside, w.sound_bytes, &kept, why, sizeof why, err) == 0) {
        rec->salvaged = true;
        rec->backup_seq = kept;
    } else if (good) {
        err_clear(err);
        if (put_in_place(dir, good->name, err)) {
            rc = -1;
            goto done;
        }
        snprintf(rec->backup, sizeof rec->backup, "%s", good->name);
        rec->backup_seq = good->seq;
    } else {
        rc = err_set(err, E_UNAVAILABLE,
                     "the database %s %s; what could be saved of it fails its check, and there is"
                     " no backup that passes its check. The files were moved to %s",
                     db, rec->problem, rec->aside);
        goto done;
    }
    rec->recovered = true;
    if (rec->lost_to >= 0 && rec->lost_to <= rec->backup_seq)
        rec->lost_to = rec->backup_seq; /* nothing after what was kept was lost */
    if (set_feed_floor(dir, rec->backup_seq, rec->lost_to, &rec->feed_from, err)) {
        rc = -1;
        goto done;
    }
    log_msg(LOG_ERROR,
            "RECOVERED %s%s: changes up to seq %lld are kept; %s%lld%s are lost; the feed goes on"
            " from seq %lld (clients resuming from before it resync). The damaged files are in %s",
            rec->salvaged ? "the database and the sound part of its WAL" : "from backup ",
            rec->backup, (long long)rec->backup_seq,
            rec->lost_to > rec->backup_seq ? "changes after it, up to seq " : "changes after it (seq > ",
            (long long)(rec->lost_to > rec->backup_seq ? rec->lost_to : rec->backup_seq),
            rec->lost_to > rec->backup_seq ? "," : ", the end unknown)", (long long)rec->feed_from,
            rec->aside);
done:
    free(db);
    free(walp);
    return rc;
}
