/*
 * offline.c: work on a database with a connection of its own, safe while a
 * server runs: verify (the activity hash chain and integrity), the activity
 * log for the command line, and export.
 */
#include "sqlite_int.h"

/* DIR/livedb.db read-only, in a read transaction: one consistent view
 * while a server writes. NULL with err set. */
static sqlite3 *open_snapshot(const char *dir, err_t *err)
{
    buf_t path = {0};
    buf_printf(&path, "%s/livedb.db", dir);
    sqlite3 *db = NULL;
    int rc = sq_open(path.p, true, &db, err);
    buf_free(&path);
    if (rc)
        return NULL;
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    return db;
}

/* ------------------------------------------------------------------ verify */

int sqlite_verify(const store_opts *where, int64_t *entries, err_t *err)
{
    const char *dir = where->dir;
    *entries = 0;
    sqlite3 *db = open_snapshot(dir, err);
    if (!db)
        return -1;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, "SELECT group_concat(integrity_check, '; ') FROM"
                               " pragma_integrity_check(20)", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(s, 0);
        if (!r || strcmp(r, "ok") != 0)
            err_set(err, E_INTERNAL, "the database fails its integrity check: %.180s",
                    r ? r : "(no answer)");
    } else {
        sq_err(err, db, sqlite3_errcode(db), "integrity check");
    }
    sqlite3_finalize(s);
    s = NULL;
    unsigned char h[32] = {0};
    int64_t expect = 0;
    if (!err->code &&
        sqlite3_prepare_v2(db, "SELECT seq, at, account, action, entry, hash FROM activity"
                               " ORDER BY seq", -1, &s, NULL) == SQLITE_OK) {
        while (!err->code && sqlite3_step(s) == SQLITE_ROW) {
            int64_t seq = sqlite3_column_int64(s, 0);
            const char *entry = (const char *)sqlite3_column_text(s, 4);
            size_t n = (size_t)sqlite3_column_bytes(s, 4);
            const char *stored = (const char *)sqlite3_column_text(s, 5);
            store_chain_step(h, &expect, seq, sqlite3_column_int64(s, 1),
                             (const char *)sqlite3_column_text(s, 2),
                             (const char *)sqlite3_column_text(s, 3), entry, n, stored, err);
            (*entries)++;
        }
    } else if (!err->code) {
        sq_err(err, db, sqlite3_errcode(db), "activity");
    }
    sqlite3_finalize(s);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    return err->code ? -1 : 0;
}

/* ------------------------------------------------------------------ activity, offline */

int sqlite_activity_each(const store_opts *where, int64_t since_ms, store_activity_row row,
                         void *ctx, err_t *err)
{
    const char *dir = where->dir;
    sqlite3 *db = open_snapshot(dir, err);
    if (!db)
        return -1;
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT entry, hash FROM activity WHERE at >= ?1 ORDER BY seq",
                                -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, since_ms);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            row(ctx, (const char *)sqlite3_column_text(s, 0), (size_t)sqlite3_column_bytes(s, 0),
                (const char *)sqlite3_column_text(s, 1));
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK)
        sq_err(err, db, rc, "activity");
    sqlite3_finalize(s);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    return err->code ? -1 : 0;
}

/* ------------------------------------------------------------------ export */

/* One collection's documents as a JSON array, ordered by id ([] when it
 * has no table yet). */
static int export_col(sqlite3 *db, const char *col, FILE *out, err_t *err)
{
    buf_t sql = {0};
    buf_printf(&sql, "SELECT body FROM \"c_%s\" ORDER BY id", col);
    sqlite3_stmt *rows = NULL;
    int rc = sqlite3_prepare_v2(db, sql.p, -1, &rows, NULL);
    buf_free(&sql);
    if (rc != SQLITE_OK) {
        if (no_table(db)) {
            fputs("[]", out);
            return 0;
        }
        return sq_err(err, db, rc, "export");
    }
    fputc('[', out);
    int n = 0;
    while ((rc = sqlite3_step(rows)) == SQLITE_ROW) {
        fputs(n++ ? ",\n" : "\n", out);
        fwrite(sqlite3_column_text(rows, 0), 1, (size_t)sqlite3_column_bytes(rows, 0), out);
    }
    sqlite3_finalize(rows);
    if (rc != SQLITE_DONE)
        return sq_err(err, db, rc, "export");
    fputc(']', out);
    return 0;
}

/* Every collection (cols NULL), or those named, from one read transaction. */
static int export_from(const char *dir, const char *const *cols, FILE *out, err_t *err)
{
    sqlite3 *db = open_snapshot(dir, err);
    if (!db)
        return -1;
    sqlite3_stmt *tables = NULL;
    int rc;
    fputc('{', out);
    if (cols) {
        fprintf(out, "\"seq\":%lld", (long long)sq_query_i64(db, "SELECT max(seq) FROM changes", 0));
        for (int i = 0; cols[i] && !err->code; i++) {
            fprintf(out, ",\n\"%s\":", cols[i]);
            export_col(db, cols[i], out, err);
        }
        goto done;
    }
    rc = sqlite3_prepare_v2(db, "SELECT substr(name, 3) FROM sqlite_schema WHERE type='table'"
                                " AND name LIKE 'c\\_%' ESCAPE '\\' AND name NOT LIKE 'c\\_\\_%' ESCAPE '\\'"
                                " ORDER BY name",
                            -1, &tables, NULL);
    if (rc != SQLITE_OK) {
        sq_err(err, db, rc, "export");
        goto done;
    }
    int ncol = 0;
    while (!err->code && (rc = sqlite3_step(tables)) == SQLITE_ROW) {
        fprintf(out, "%s\n\"%s\":", ncol++ ? "," : "", sqlite3_column_text(tables, 0));
        export_col(db, (const char *)sqlite3_column_text(tables, 0), out, err);
    }
    if (!err->code && rc != SQLITE_DONE)
        sq_err(err, db, rc, "export");
done:
    fputs("\n}\n", out);
    sqlite3_finalize(tables);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    return err->code ? -1 : 0;
}

int sqlite_export(const store_opts *where, const char *const *cols, FILE *out, err_t *err)
{
    return export_from(where->dir, cols, out, err);
}

