/*
 * fuzz_where.c: list queries: core/query.c parsing and matching, and the
 * SQL of store/sqlite_query.c.
 *
 * Input: WHERES [NUL ORDER [NUL LIMIT [NUL AFTER]]], WHERES one clause a
 * line. Checks, besides memory safety: refusals are 400 and leave the
 * query as it was; a cursor read back re-encodes to one that reads back
 * the same; the SQL always prepares and runs; and on a fixed set of
 * documents it selects exactly those query_match() selects (the property
 * tests/unit/test_sql_agree.c checks on generated data). The documents
 * hold no numbers beyond 2^53, where C and SQLite are known to part.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "../../src/core/doc.h"
#include "../../src/core/query.h"
#include "../../src/store/sqlite_query.h"
#include "fuzz.h"

static const char *const doc_texts[] = {
    ("{\"a\":1,\"b\":\"x\",\"s\":\"hello\",\"n\":null,\"t\":true,\"arr\":[1,\"x\",null],"
     "\"o\":{\"x\":1,\"y\":\"a\"}}"),
    "{\"a\":1.0,\"b\":\"\",\"s\":\"h\xc3\xa9llo\",\"t\":false,\"arr\":[],\"o\":{\"x\":{\"z\":1}}}",
    "{\"a\":2.5,\"b\":\"1\",\"s\":\"ab\",\"n\":0,\"arr\":[[1],{\"x\":1},true,2.0]}",
    "{\"a\":-3,\"b\":[\"x\"],\"s\":\"\",\"n\":\"null\",\"o\":[1,2]}",
    "{\"a\":\"1\",\"b\":{\"c\":{\"d\":{\"e\":\"deep\"}}},\"arr\":\"x,y\",\"o\":{\"x\":null}}",
    "{\"a\":true,\"b\":null,\"s\":\"tab\\tquote\\\"\",\"arr\":[false,0,\"\"]}",
    "{\"a\":-0.0,\"b\":1e300,\"s\":\"\xf0\x9f\x98\x80\",\"arr\":[-1e-300,9007199254740992]}",
    "{\"a\":[1,2],\"b\":-9007199254740992,\"o\":{\"x\":0.1,\"y\":0.30000000000000004}}",
    "{}",
};
#define NDOCS (sizeof doc_texts / sizeof doc_texts[0])

static sqlite3 *db;
static json_t *docs[NDOCS];
static char ids[NDOCS][8];

static void init(void)
{
    REQUIRE(sqlite3_open(":memory:", &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE \"c_t\"(id TEXT PRIMARY KEY, version INTEGER,"
                             " created_at TEXT, updated_at TEXT, body TEXT) WITHOUT ROWID",
                         NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_stmt *ins;
    REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO \"c_t\" VALUES(?1,1,'c','u',?2)", -1, &ins,
                               NULL) == SQLITE_OK);
    for (size_t i = 0; i < NDOCS; i++) {
        snprintf(ids[i], sizeof ids[i], "d%zu", i);
        err_t e = {0};
        json_t *o = doc_parse_object(doc_texts[i], strlen(doc_texts[i]), &e);
        REQUIRE(o != NULL);
        size_t mlen;
        char *m = doc_members(o, &mlen);
        json_decref(o);
        buf_t b = {0};
        doc_compose(&b, ids[i], (int64_t)i + 1, "2026-01-01T00:00:00.000Z",
                    "2026-01-01T00:00:00.000Z", m, mlen);
        free(m);
        docs[i] = json_parse_strict(b.p, b.len, &e);
        REQUIRE(docs[i] != NULL);
        sqlite3_bind_text(ins, 1, ids[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 2, b.p, (int)b.len, SQLITE_TRANSIENT);
        REQUIRE(sqlite3_step(ins) == SQLITE_DONE);
        sqlite3_reset(ins);
        buf_free(&b);
    }
    sqlite3_finalize(ins);
}

/* Runs q's SQL; the bit set of the fixed documents it returns. */
static uint32_t run_sql(const query_t *q, int *rows)
{
    sqlq sq;
    sqlq_build_list(&sq, q, "t");
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sq.sql.p, -1, &s, NULL);
    if (rc != SQLITE_OK)
        fprintf(stderr, "prepare: %s\n%s\n", sqlite3_errmsg(db), sq.sql.p);
    REQUIRE(rc == SQLITE_OK);
    REQUIRE(sqlq_bind(s, &sq) == SQLITE_OK);
    uint32_t set = 0;
    *rows = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(s, 2);
        REQUIRE(id && id[0] == 'd');
        int i = atoi(id + 1);
        REQUIRE(i >= 0 && (size_t)i < NDOCS && !(set & (1u << i)));
        set |= 1u << i;
        ++*rows;
    }
    REQUIRE(rc == SQLITE_DONE);
    sqlite3_finalize(s);
    sqlq_free(&sq);
    return set;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!db)
        init();
    const char *p = (const char *)data, *end = p + size;
    size_t wlen, olen = 0, llen = 0, alen = 0;
    const char *order = fuzz_next_part(p, end, &wlen), *limit = NULL, *after = NULL;
    if (order)
        limit = fuzz_next_part(order, end, &olen);
    if (limit)
        after = fuzz_next_part(limit, end, &llen);
    if (after)
        fuzz_next_part(after, end, &alen);

    query_t q;
    query_init(&q);
    err_t e = {0};
    for (const char *l = p; l < p + wlen;) {
        const char *nl = memchr(l, '\n', (size_t)(p + wlen - l));
        size_t n = (size_t)((nl ? nl : p + wlen) - l);
        int before = q.nconds;
        if (query_add_where(&q, l, n, &e) == 0) {
            REQUIRE(q.nconds == before + 1);
            const qcond *c = &q.conds[before];
            REQUIRE(query_check_field(c->field, strlen(c->field), &e) == 0);
            REQUIRE(c->value != NULL);
        } else {
            REQUIRE(e.code == E_BAD_REQUEST && q.nconds == before);
            err_clear(&e);
        }
        l += n + 1;
    }
    if (order && olen) {
        char saved[sizeof q.order];
        memcpy(saved, q.order, sizeof saved);
        bool sdesc = q.desc;
        if (query_set_order(&q, order, olen, &e)) {
            REQUIRE(e.code == E_BAD_REQUEST);
            REQUIRE(memcmp(saved, q.order, sizeof saved) == 0 && sdesc == q.desc);
            err_clear(&e);
        }
    }
    if (limit && llen) {
        int saved = q.limit;
        if (query_set_limit(&q, limit, llen, &e)) {
            REQUIRE(e.code == E_BAD_REQUEST && q.limit == saved);
            err_clear(&e);
        }
        REQUIRE(q.limit >= 1 && q.limit <= QUERY_LIMIT_MAX);
    }
    if (after) {
        if (query_set_after(&q, after, alen, &e) == 0) {
            REQUIRE(q.has_after && q.after_key && q.after_id);
            /* The cursor this key and id encode to reads back the same. */
            char *cur = query_cursor_encode(&q, q.after_key, q.after_id);
            query_t q2;
            query_init(&q2);
            memcpy(q2.order, q.order, sizeof q.order);
            q2.desc = q.desc;
            REQUIRE(query_set_after(&q2, cur, strlen(cur), &e) == 0);
            REQUIRE(json_equal(q2.after_key, q.after_key));
            REQUIRE(strcmp(q2.after_id, q.after_id) == 0);
            query_free(&q2);
            free(cur);
        } else {
            REQUIRE(e.code == E_BAD_REQUEST && !q.has_after);
            err_clear(&e);
        }
    }

    /* C and SQL select the same documents (without the cursor, which only
     * the SQL applies). */
    uint32_t cset = 0;
    for (size_t i = 0; i < NDOCS; i++)
        if (query_match(&q, docs[i]))
            cset |= 1u << i;
    bool has_after = q.has_after;
    int saved_limit = q.limit, rows;
    q.has_after = false;
    q.limit = QUERY_LIMIT_MAX;
    uint32_t sset = run_sql(&q, &rows);
    if (cset != sset) {
        fprintf(stderr, "C selects %#x, SQL %#x\n", cset, sset);
        for (int i = 0; i < q.nconds; i++) {
            char *v = json_dumps(q.conds[i].value, JSON_ENCODE_ANY | JSON_COMPACT);
            fprintf(stderr, "  where %s:%s:%s\n", q.conds[i].field, qop_name(q.conds[i].op), v);
            free(v);
        }
    }
    REQUIRE(cset == sset);
    /* The query as asked (cursor, limit + 1) runs too. */
    q.has_after = has_after;
    q.limit = saved_limit;
    uint32_t paged = run_sql(&q, &rows);
    REQUIRE(rows <= q.limit + 1);
    if (!has_after)
        REQUIRE((paged & ~sset) == 0);
    query_free(&q);
    return 0;
}
