/*
 * test_vfs.c: store/vfs.c: pages signed on their way to the database file
 * and checked on their way back; a flipped byte anywhere in a page, a
 * zeroed page or a page moved to another place is an error, never data.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../src/store/vfs.h"
#include "harness.h"

TEST(vfs_checksum_sees_every_single_bit)
{
    unsigned char page[4096];
    for (size_t i = 0; i < sizeof page; i++)
        page[i] = (unsigned char)(i * 131 + 7);
    uint64_t base = vfs_page_checksum(page, 4096, 3);
    int missed = 0;
    for (int byte = 0; byte < 4096 - VFS_RESERVE; byte++) {
        for (int bit = 0; bit < 8; bit++) {
            page[byte] ^= (unsigned char)(1 << bit);
            missed += vfs_page_checksum(page, 4096, 3) == base;
            page[byte] ^= (unsigned char)(1 << bit);
        }
    }
    CHECK_INT(missed, 0);
    /* The page number is part of it; a zeroed page does not sum to zero. */
    CHECK(vfs_page_checksum(page, 4096, 4) != base);
    memset(page, 0, sizeof page);
    CHECK(vfs_page_checksum(page, 4096, 1) != 0);
    /* Two flips in the same bit of two words (which cancel in a plain sum). */
    page[8] ^= 0x80;
    page[16] ^= 0x80;
    CHECK(vfs_page_checksum(page, 4096, 1) != vfs_page_checksum((unsigned char[4096]){0}, 4096, 1));
}

static char *tmp_db(void)
{
    char tmpl[] = "/tmp/livedb-vfs-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir)
        return NULL;
    char *path = malloc(strlen(dir) + 16);
    sprintf(path, "%s/t.db", dir);
    return path;
}

static void rm_db(char *path)
{
    char b[512];
    snprintf(b, sizeof b, "%s-wal", path);
    unlink(b);
    snprintf(b, sizeof b, "%s-shm", path);
    unlink(b);
    unlink(path);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    rmdir(path);
    free(path);
}

/* A database of a few hundred rows, written through the shim, checkpointed
 * and closed so that every page is in the main file. */
static bool make_db(const char *path, bool checksums)
{
    vfs_register();
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return false;
    if (checksums)
        vfs_reserve_pages(db);
    char *err = NULL;
    int rc = sqlite3_exec(db,
                          "PRAGMA journal_mode=WAL;"
                          "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
                          "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n"
                          " WHERE i < 400) INSERT INTO t SELECT i, printf('row %d %.*c', i, 200,"
                          " 'x') FROM n;"
                          "PRAGMA wal_checkpoint(TRUNCATE);",
                          NULL, NULL, &err);
    sqlite3_free(err);
    bool ok = rc == SQLITE_OK && vfs_has_checksums(db) == checksums;
    sqlite3_close(db);
    return ok;
}

/* The sum of every row through one open connection. */
static int sum_on(sqlite3 *db, long long *sum)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "SELECT sum(id + length(v)) FROM t", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *sum = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        } else {
            rc = sqlite3_extended_errcode(db);
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* What reading every row answers: SQLITE_OK, or the error. */
static int read_all(const char *path, bool mmap_on, long long *sum)
{
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return SQLITE_CANTOPEN;
    }
    sqlite3_exec(db, mmap_on ? "PRAGMA mmap_size=1000000" : "PRAGMA mmap_size=0", NULL, NULL,
                 NULL);
    int rc = sum_on(db, sum);
    sqlite3_close(db);
    return rc;
}

static void poke(const char *path, long off, unsigned char x)
{
    int fd = open(path, O_RDWR);
    unsigned char b;
    if (pread(fd, &b, 1, off) == 1) {
        b ^= x;
        if (pwrite(fd, &b, 1, off) != 1)
            perror("pwrite");
    }
    close(fd);
}

TEST(vfs_detects_a_flipped_byte_in_every_page)
{
    char *path = tmp_db();
    REQUIRE(path && make_db(path, true));
    long long good = 0;
    REQUIRE(read_all(path, false, &good) == SQLITE_OK);
    CHECK(good > 0);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    int pages = (int)(size / 4096);
    CHECK(pages > 10);
    uint64_t fails0 = vfs_checksum_failures();
    /* One byte in the middle of each data page (page 1 holds the header:
     * a flip there may make the file unreadable in other ways, also fine). */
    for (int pg = 2; pg <= pages; pg++) {
        long off = (long)(pg - 1) * 4096 + 1000 + pg * 7 % 2000;
        poke(path, off, 0x10);
        long long sum = 0;
        int rc = read_all(path, pg % 2 == 0, &sum);
        /* Either the page is not one this query reads (the sum is right),
         * or the read fails: never a wrong answer. */
        if (rc == SQLITE_OK)
            CHECK(sum == good);
        else
            CHECK_INT(rc, SQLITE_IOERR_DATA);
        poke(path, off, 0x10);
    }
    CHECK(vfs_checksum_failures() > fails0);
    long long sum = 0;
    CHECK_INT(read_all(path, true, &sum), SQLITE_OK);
    CHECK(sum == good);
    rm_db(path);
}

/* A mapped page is checked once a second at most, not at every visit
 * (vfs.c): a connection that stays open must still find a page changed
 * under it (not through SQLite) within about a second. */
TEST(vfs_mapped_pages_changed_under_an_open_connection_are_found)
{
    char *path = tmp_db();
    REQUIRE(path && make_db(path, true));
    sqlite3 *db;
    REQUIRE(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_exec(db, "PRAGMA mmap_size=1000000", NULL, NULL, NULL);
    long long good = 0;
    REQUIRE(sum_on(db, &good) == SQLITE_OK);
    /* A byte of a leaf page's row data, which the sum reads. */
    long off = 5 * 4096 + 3000;
    poke(path, off, 0x10);
    int rc = SQLITE_OK;
    for (int i = 0; i < 40 && rc == SQLITE_OK; i++) {
        long long sum = 0;
        rc = sum_on(db, &sum); /* may still read it, for up to a second */
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK_INT(rc, SQLITE_IOERR_DATA); /* within 2 s */
    poke(path, off, 0x10);
    long long sum = 0;
    CHECK_INT(sum_on(db, &sum), SQLITE_OK);
    CHECK(sum == good);
    sqlite3_close(db);
    rm_db(path);
}

TEST(vfs_integrity_check_reads_every_page)
{
    char *path = tmp_db();
    REQUIRE(path && make_db(path, true));
    poke(path, 3 * 4096 + 100, 0x01); /* page 4: whatever it holds */
    sqlite3 *db;
    REQUIRE(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL);
    int rc = sqlite3_step(st);
    bool ok = rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
    CHECK(!ok);
    sqlite3_finalize(st);
    sqlite3_close(db);
    rm_db(path);
}

TEST(vfs_leaves_databases_without_room_alone)
{
    char *path = tmp_db();
    REQUIRE(path && make_db(path, false));
    long long sum = 0;
    CHECK_INT(read_all(path, false, &sum), SQLITE_OK);
    CHECK(sum > 0);
    rm_db(path);
}

/* Copies path to to, byte for byte (what a kill -9 leaves on disk). */
static bool copy_file(const char *path, const char *to)
{
    FILE *a = fopen(path, "rb"), *b = fopen(to, "wb");
    bool ok = a && b;
    char buf[65536];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, a)) > 0)
        ok = fwrite(buf, 1, n, b) == n;
    if (a)
        fclose(a);
    if (b)
        fclose(b);
    return ok;
}

static long long count_rows(const char *path)
{
    sqlite3 *db;
    long long n = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

/* The WAL's writes are gathered into one write a commit (vfs.c): every
 * commit must still be in the file when it returns (a copy of the files
 * then, as a kill -9 leaves them, holds it), other connections must see
 * it at once, and a transaction larger than the gathering buffer (its
 * pages spill to the WAL before the commit) must come out whole. */
TEST(vfs_gathered_wal_writes_are_in_the_file_at_each_commit)
{
    char *path = tmp_db();
    REQUIRE(path && make_db(path, true));
    sqlite3 *w, *r;
    REQUIRE(sqlite3_open(path, &w) == SQLITE_OK);
    REQUIRE(sqlite3_open_v2(path, &r, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_exec(w, "PRAGMA synchronous=FULL; PRAGMA cache_size=20; PRAGMA wal_autocheckpoint=0",
                 NULL, NULL, NULL);
    char copy[600], wal[600], copy_wal[600];
    snprintf(copy, sizeof copy, "%s.copy", path);
    snprintf(wal, sizeof wal, "%s-wal", path);
    snprintf(copy_wal, sizeof copy_wal, "%s.copy-wal", path);
    long long rows = 400;
    for (int k = 0; k < 12; k++) {
        /* Small commits, and then some past 120 KiB (spilled with a cache
         * of 20 pages). */
        int n = k < 8 ? 3 : 600;
        char sql[300];
        snprintf(sql, sizeof sql,
                 "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d)"
                 " INSERT INTO t(v) SELECT printf('k%d %%d %%.*c', i, 300, 'y') FROM n;",
                 n, k);
        REQUIRE(sqlite3_exec(w, sql, NULL, NULL, NULL) == SQLITE_OK);
        rows += n;
        long long seen = 0;
        sqlite3_stmt *st;
        REQUIRE(sqlite3_prepare_v2(r, "SELECT count(*) FROM t", -1, &st, NULL) == SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW)
            seen = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        CHECK_INT(seen, rows);
        REQUIRE(copy_file(path, copy) && copy_file(wal, copy_wal));
        CHECK_INT(count_rows(copy), rows);
        unlink(copy);
        unlink(copy_wal);
        char shm[620];
        snprintf(shm, sizeof shm, "%s-shm", copy);
        unlink(shm);
    }
    sqlite3_close(r);
    sqlite3_close(w);
    CHECK_INT(count_rows(path), rows);
    rm_db(path);
}
