/*
 * pg_offline.c: the command line's work on a PostgreSQL store, each with a
 * connection of its own inside one REPEATABLE READ snapshot, safe while
 * the nodes run: verify (the activity hash chain, and the head against
 * it), the activity log, export. The same answers as offline.c's for
 * SQLite, in the same shapes, so that data moves between the modes.
 */
#include "pg_int.h"
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* A connection in a read snapshot of where's schema, which must exist
 * (these commands never make one). */
static pgstore *open_snapshot(const store_opts *where, err_t *err)
{
    const char *schema = where->pg_schema ? where->pg_schema : "livedb";
    pgstore *p = pg_connect(where->postgres, schema, false, err);
    if (!p)
        return NULL;
    const char *v[] = {schema};
    PGresult *r = pq(p, "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1, v, err);
    bool there = r && PQntuples(r) == 1;
    PQclear(r);
    if (r && !there)
        err_set(err, E_NOT_FOUND, "PostgreSQL has no livedb schema %s (is --pg-schema right?)",
                schema);
    if (!there || pq_do(p, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, err)) {
        pg_close(p);
        return NULL;
    }
    return p;
}

static void close_snapshot(pgstore *p)
{
    err_t e = {0};
    pq_do(p, "COMMIT", 0, NULL, &e);
    err_clear(&e);
    pg_close(p);
}

int pg_verify(const store_opts *where, int64_t *entries, err_t *err)
{
    *entries = 0;
    pgstore *p = open_snapshot(where, err);
    if (!p)
        return -1;
    PGresult *r = pq(p, "SELECT seq, at, account, action, entry, hash FROM activity ORDER BY seq",
                     0, NULL, err);
    unsigned char h[32] = {0};
    int64_t expect = 0, last = 0;
    for (int i = 0; r && i < PQntuples(r) && !err->code; i++) {
        last = atoll(PQgetvalue(r, i, 0));
        store_chain_step(h, &expect, last, atoll(PQgetvalue(r, i, 1)), PQgetvalue(r, i, 2),
                         PQgetvalue(r, i, 3), PQgetvalue(r, i, 4),
                         (size_t)PQgetlength(r, i, 4), PQgetvalue(r, i, 5), err);
        (*entries)++;
    }
    PQclear(r);
    /* The head, which the next entry chains from, agrees with the log. */
    int64_t next_seq, next_aseq;
    unsigned char head_hash[32];
    if (!err->code && pg_head(p, &next_seq, &next_aseq, head_hash, err) == 0) {
        if (next_aseq != last + 1)
            err_set(err, E_INTERNAL, "the head says the next activity entry is %lld, but the"
                    " log ends at %lld", (long long)next_aseq, (long long)last);
        else if (sodium_memcmp(head_hash, h, 32) != 0)
            err_set(err, E_INTERNAL, "the head's hash is not that of the log's last entry"
                    " (%lld)", (long long)last);
    }
    close_snapshot(p);
    return err->code ? -1 : 0;
}

int pg_activity_each(const store_opts *where, int64_t since_ms, store_activity_row row,
                     void *ctx, err_t *err)
{
    pgstore *p = open_snapshot(where, err);
    if (!p)
        return -1;
    char since[24];
    const char *v[] = {I64(since, since_ms)};
    PGresult *r = pq(p, "SELECT entry, hash FROM activity WHERE at >= $1 ORDER BY seq", 1, v,
                     err);
    for (int i = 0; r && i < PQntuples(r); i++)
        row(ctx, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0), PQgetvalue(r, i, 1));
    PQclear(r);
    close_snapshot(p);
    return err->code ? -1 : 0;
}

static int export_col(pgstore *p, const char *col, FILE *out, err_t *err)
{
    const char *v[] = {col};
    PGresult *r = pq(p, "SELECT body FROM docs WHERE col = $1 ORDER BY id", 1, v, err);
    if (!r)
        return -1;
    fputc('[', out);
    for (int i = 0; i < PQntuples(r); i++) {
        fputs(i ? ",\n" : "\n", out);
        fwrite(PQgetvalue(r, i, 0), 1, (size_t)PQgetlength(r, i, 0), out);
    }
    fputc(']', out);
    PQclear(r);
    return 0;
}

int pg_export(const store_opts *where, const char *const *cols, FILE *out, err_t *err)
{
    pgstore *p = open_snapshot(where, err);
    if (!p)
        return -1;
    fputc('{', out);
    if (cols) {
        PGresult *r = pq(p, "SELECT next_seq - 1 FROM head", 0, NULL, err);
        if (r)
            fprintf(out, "\"seq\":%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        for (int i = 0; r && cols[i] && !err->code; i++) {
            fprintf(out, ",\n\"%s\":", cols[i]);
            export_col(p, cols[i], out, err);
        }
    } else {
        /* The apps' collections, not the server's own (_accounts). */
        PGresult *r = pq(p, "SELECT DISTINCT col FROM docs WHERE col NOT LIKE '\\_%' ORDER BY col",
                         0, NULL, err);
        for (int i = 0; r && i < PQntuples(r) && !err->code; i++) {
            fprintf(out, "%s\n\"%s\":", i ? "," : "", PQgetvalue(r, i, 0));
            export_col(p, PQgetvalue(r, i, 0), out, err);
        }
        PQclear(r);
    }
    fputs("\n}\n", out);
    close_snapshot(p);
    return err->code ? -1 : 0;
}
