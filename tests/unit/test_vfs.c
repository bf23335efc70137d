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
