/*
 * test_sql_agree.c: the property that store/sqlite_query.c's SQL and
 * core/query.c's query_match() agree (see sqlite_query.h), on generated
 * documents and queries, and that keyset paging with cursors returns every
 * row once, in the order of one unpaged query.
 *
 * Deterministic: a fixed-seed PRNG. On a disagreement the test prints the
 * smallest form of it (one condition, one document).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "../../src/core/doc.h"
#include "../../src/core/query.h"
#include "../../src/store/sqlite_query.h"
#include "harness.h"

#define NDOCS 300
#define NQUERIES 3000
#define MAX_REPORTS 12

/* ------------------------------------------------------------------ PRNG */

static uint64_t rng_state;

static uint64_t rnd(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int rn(int n) { return (int)(rnd() % (uint64_t)n); }

/* ------------------------------------------------------------------ values */

static const json_int_t ints[] = {
    -3, -2, -1, 0, 1, 2, 3, 1, 2, 100, -100,
    9007199254740992LL,   /* 2^53 */
    9007199254740993LL,   /* 2^53 + 1: not a double */
    INT64_MAX, INT64_MIN, INT64_MAX - 1,
};
static const double reals[] = {
    -0.0, 0.0, 1.0, 2.0, 2.5, -1.5, 0.1, 0.30000000000000004, 1e300, -1e-300, 3.0,
    9007199254740992.0,   /* 2^53 */
    9223372036854775808.0, /* 2^63 */
    -9223372036854775808.0,
    100.5,
};
static const char *const strs[] = {
    "", "a", "b", "ab", "abc", "B", "1", "true", "null", "x", "bc",
    "\xc3\xa9", "\xc3\xa9" "a", "\xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x98\x80",
    "a\"b", "a\\b", "tab\there", "\x01", "a b", "[1]", "{\"x\":1}", "%", "_", "a%",
};

static json_t *gen_scalar(void)
{
    switch (rn(10)) {
    case 0:
    case 1:
    case 2:
        return json_integer(ints[rn((int)ARRAY_LEN(ints))]);
    case 3:
    case 4:
        return json_real(reals[rn((int)ARRAY_LEN(reals))]);
    case 5:
    case 6:
    case 7:
        return json_string(strs[rn((int)ARRAY_LEN(strs))]);
    case 8:
        return json_boolean(rn(2));
    default:
        return json_null();
    }
}

static json_t *gen_value(int depth)
{
    int k = rn(20);
    if (k < 14 || depth > 2)
        return gen_scalar();
    if (k < 17) {
        json_t *a = json_array();
        int n = rn(5);
        for (int i = 0; i < n; i++)
            json_array_append_new(a, rn(8) ? gen_scalar() : gen_value(depth + 1));
        return a;
    }
    json_t *o = json_object();
    static const char *const keys[] = {"x", "y", "z", "w"};
    for (size_t i = 0; i < ARRAY_LEN(keys); i++)
        if (rn(3))
            json_object_set_new(o, keys[i], gen_value(depth + 1));
    return o;
}

static const char *const doc_fields[] = {"a", "b", "n", "s", "t", "arr", "o"};
static const char *const query_fields[] = {
    "a", "b", "n", "s", "t", "arr", "o", "o.x", "o.y", "o.z", "o.z.w", "o.w.x",
    "arr.x", "s.x", "missing", "id", "version",
};

/* ------------------------------------------------------------------ store */

typedef struct gdoc {
    char id[40];
    json_t *doc;   /* the stored document, parsed back as the server would */
    char *body;
} gdoc;

static gdoc docs[NDOCS];
static sqlite3 *db;

static bool id_used(const char *id, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(docs[i].id, id) == 0)
            return true;
    return false;
}

static void gen_id(char *out, int n)
{
    static const char alpha[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";
    do {
        int len = 1 + rn(6);
        for (int i = 0; i < len; i++)
            out[i] = alpha[rn((int)sizeof alpha - 1)];
        out[len] = '\0';
    } while (id_used(out, n));
}

static void exec_sql(const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        FAILF("%s: %s", sql, msg ? msg : "?");
    sqlite3_free(msg);
}

static bool setup(uint64_t seed)
{
    rng_state = seed;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK)
        return false;
    exec_sql("CREATE TABLE \"c_t\"(id TEXT PRIMARY KEY, version INTEGER, created_at TEXT,"
             " updated_at TEXT, body TEXT) WITHOUT ROWID");
    sqlite3_stmt *ins = NULL;
    if (sqlite3_prepare_v2(db, "INSERT INTO \"c_t\" VALUES(?1,?2,?3,?4,?5)", -1, &ins, NULL) !=
        SQLITE_OK)
        return false;
    for (int i = 0; i < NDOCS; i++) {
        gdoc *d = &docs[i];
        gen_id(d->id, i);
        json_t *o = json_object();
        for (size_t f = 0; f < ARRAY_LEN(doc_fields); f++)
            if (rn(7))
                json_object_set_new(o, doc_fields[f], gen_value(0));
        size_t mlen;
        char *members = doc_members(o, &mlen);
        json_decref(o);
        int64_t version = 1 + rn(4);
        char created[TIME_RFC3339_LEN + 1], updated[TIME_RFC3339_LEN + 1];
        time_format_rfc3339(1700000000000 + rn(1000000), created);
        time_format_rfc3339(1800000000000 + rn(1000000), updated);
        buf_t b = {0};
        doc_compose(&b, d->id, version, created, updated, members, mlen);
        free(members);
        err_t e = {0};
        d->doc = json_parse_strict(b.p, b.len, &e);
        if (!d->doc) {
            FAILF("generated document is not JSON: %s (%s)", b.p, e.msg);
            err_clear(&e);
            buf_free(&b);
            return false;
        }
        d->body = buf_take(&b, NULL);
        sqlite3_bind_text(ins, 1, d->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 2, version);
        sqlite3_bind_text(ins, 3, created, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 4, updated, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 5, d->body, -1, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE)
            FAILF("insert: %s", sqlite3_errmsg(db));
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    return true;
}

static void teardown(void)
{
    for (int i = 0; i < NDOCS; i++) {
        json_decref(docs[i].doc);
        free(docs[i].body);
        docs[i].doc = NULL;
        docs[i].body = NULL;
    }
    sqlite3_close(db);
    db = NULL;
}

typedef struct row {
    char id[40];
    json_t *key;
} row;

/* Runs the list SQL for q; rows (up to cap) into out; the count, or -1. */
static int run_sql(const query_t *q, row *out, int cap, char **sql_out)
{
    sqlq sq;
    sqlq_build_list(&sq, q, "t");
    if (sql_out)
        *sql_out = strdup(sq.sql.p);
    sqlite3_stmt *s = NULL;
    int n = -1;
    if (sqlite3_prepare_v2(db, sq.sql.p, -1, &s, NULL) != SQLITE_OK) {
        FAILF("prepare: %s: %s", sqlite3_errmsg(db), sq.sql.p);
        goto out;
    }
    if (sqlq_bind(s, &sq) != SQLITE_OK) {
        FAILF("bind: %s: %s", sqlite3_errmsg(db), sq.sql.p);
        goto out;
    }
    n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            FAILF("more rows than %d", cap);
            break;
        }
        const char *id = (const char *)sqlite3_column_text(s, 2);
        snprintf(out[n].id, sizeof out[n].id, "%s", id ? id : "(null)");
        out[n].key = sqlq_value_json(s, 1);
        n++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        FAILF("step: %s: %s", sqlite3_errmsg(db), sq.sql.p);
        n = -1;
    }
out:
    sqlite3_finalize(s);
    sqlq_free(&sq);
    return n;
}

static void free_rows(row *r, int n)
{
    for (int i = 0; i < n; i++) {
        json_decref(r[i].key);
        r[i].key = NULL;
    }
}

static int doc_index(const char *id)
{
    for (int i = 0; i < NDOCS; i++)
        if (strcmp(docs[i].id, id) == 0)
            return i;
    return -1;
}

/* ------------------------------------------------------------------ queries */

static json_t *gen_cmp_value(void)
{
    for (;;) {
        json_t *v = gen_scalar();
        if (json_is_string(v) || json_is_number(v))
            return v;
        json_decref(v);
    }
}

/* A random where text, and the query it parses into. */
static void gen_where(buf_t *w)
{
    const char *field = query_fields[rn((int)ARRAY_LEN(query_fields))];
    qop op = (qop)rn(8);
    json_t *v;
    if (op == Q_IN) {
        v = json_array();
        int n = 1 + rn(4);
        for (int i = 0; i < n; i++)
            json_array_append_new(v, gen_scalar());
    } else if (op == Q_LT || op == Q_LE || op == Q_GT || op == Q_GE) {
        v = gen_cmp_value();
    } else if (strcmp(field, "id") == 0 && rn(2)) {
        v = json_string(docs[rn(NDOCS)].id);
    } else {
        v = gen_scalar();
    }
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    w->len = 0;
    buf_printf(w, "%s:%s:%s", field, qop_name(op), text);
    free(text);
}

static bool parse_where(query_t *q, const char *w)
{
    err_t e = {0};
    if (query_add_where(q, w, strlen(w), &e)) {
        FAILF("generated where refused: %s: %s", w, e.msg);
        err_clear(&e);
        return false;
    }
    return true;
}

static bool sql_matches_one(const char *where, int di)
{
    query_t q;
    query_init(&q);
    q.limit = 999;
    bool found = false;
    if (parse_where(&q, where)) {
        static row rows[NDOCS + 1];
        int n = run_sql(&q, rows, NDOCS + 1, NULL);
        for (int i = 0; i < n; i++)
            if (strcmp(rows[i].id, docs[di].id) == 0)
                found = true;
        free_rows(rows, n > 0 ? n : 0);
    }
    query_free(&q);
    return found;
}

static bool c_matches_one(const char *where, int di)
{
    query_t q;
    query_init(&q);
    bool r = parse_where(&q, where) && query_match(&q, docs[di].doc);
    query_free(&q);
    return r;
}

/* Reported minimal disagreements, one per kind: the operator, the JSON
 * types of the field and the value, and which side matched. */
static char *reported[MAX_REPORTS];
static int nreported, ndisagree;

static const char *type_name(const json_t *v)
{
    if (!v)
        return "missing";
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "real";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    default: return "null";
    }
}

/* Whether an integer beyond 2^53 meets a real: there a double cannot hold
 * the integer, so C (which compares in double) and SQLite (which compares
 * integers with reals exactly) may part. Such cases are one kind. */
static bool big_int(const json_t *v)
{
    return json_is_integer(v) &&
           (json_integer_value(v) > (1LL << 53) || json_integer_value(v) < -(1LL << 53));
}

static bool has(const json_t *v, bool (*pred)(const json_t *))
{
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (pred(json_array_get(v, i)))
                return true;
        return false;
    }
    return pred(v);
}

static bool is_real(const json_t *v) { return json_is_real(v); }

static bool int_real_mix(const json_t *fv, const json_t *value)
{
    return (has(fv, big_int) && has(value, is_real)) || (has(fv, is_real) && has(value, big_int));
}

static void report(const char *where, int di)
{
    query_t q;
    query_init(&q);
    parse_where(&q, where);
    const qcond *c = &q.conds[0];
    json_t *fv = query_field(docs[di].doc, c->field);
    char *ftext = fv ? json_dumps(fv, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("(missing)");
    bool cm = c_matches_one(where, di), sm = sql_matches_one(where, di);
    buf_t kind = {0};
    if (int_real_mix(fv, c->value))
        buf_printf(&kind, "integer beyond 2^53 against a real|%d", cm);
    else
        buf_printf(&kind, "%s|%s|%s|%d", qop_name(c->op), type_name(fv), type_name(c->value), cm);
    if (json_is_array(fv) && c->op == Q_CONTAINS && !int_real_mix(fv, c->value))
        for (size_t i = 0; i < json_array_size(fv); i++)
            buf_printf(&kind, "|%s", type_name(json_array_get(fv, i)));
    ndisagree++;
    bool dup = false;
    for (int i = 0; i < nreported; i++)
        if (strcmp(reported[i], kind.p) == 0)
            dup = true;
    if (!dup && nreported < MAX_REPORTS) {
        char *sql = NULL;
        static row rows[NDOCS + 1];
        int n = run_sql(&q, rows, NDOCS + 1, &sql);
        free_rows(rows, n > 0 ? n : 0);
        reported[nreported++] = buf_take(&kind, NULL);
        FAILF("SQL and query_match disagree: where=%s on field value %s: C %s, SQL %s\n"
              "    doc: %s\n    sql: %s",
              where, ftext, cm ? "matches" : "does not match",
              sm ? "matches" : "does not match", docs[di].body, sql);
        free(sql);
    }
    buf_free(&kind);
    free(ftext);
    query_free(&q);
}

TEST(sql_agrees_with_query_match)
{
    REQUIRE(setup(20260422));
    static row rows[NDOCS + 1];
    buf_t w[3] = {{0}};
    int total_rows = 0, nonempty = 0;
    for (int qi = 0; qi < NQUERIES; qi++) {
        int nc = 1 + rn(3);
        query_t q;
        query_init(&q);
        q.limit = 999;
        bool ok = true;
        for (int i = 0; i < nc; i++) {
            gen_where(&w[i]);
            ok = ok && parse_where(&q, w[i].p);
        }
        if (!ok) {
            query_free(&q);
            break;
        }
        int n = run_sql(&q, rows, NDOCS + 1, NULL);
        if (n < 0) {
            query_free(&q);
            break;
        }
        total_rows += n;
        nonempty += n > 0;
        /* Set of ids from SQL vs from C. */
        bool in_sql[NDOCS] = {false};
        for (int i = 0; i < n; i++) {
            int di = doc_index(rows[i].id);
            if (di < 0 || in_sql[di])
                FAILF("SQL returned unknown or repeated id %s", rows[i].id);
            else
                in_sql[di] = true;
        }
        free_rows(rows, n);
        for (int di = 0; di < NDOCS; di++) {
            bool c = query_match(&q, docs[di].doc);
            if (c == in_sql[di])
                continue;
            /* Narrow down to the one condition that disagrees. */
            bool found = false;
            for (int i = 0; i < nc; i++)
                if (c_matches_one(w[i].p, di) != sql_matches_one(w[i].p, di)) {
                    report(w[i].p, di);
                    found = true;
                    break;
                }
            if (!found)
                FAILF("disagreement on doc %s that no single condition shows", docs[di].id);
        }
        query_free(&q);
    }
    if (ndisagree)
        FAILF("%d disagreements in all (one of each kind shown, at most %d)", ndisagree,
              MAX_REPORTS);
    /* The generator must make queries that select something, or the test
     * proves little. */
    CHECK(nonempty > NQUERIES / 4);
    CHECK(total_rows > NQUERIES * 10);
    for (int i = 0; i < 3; i++)
        buf_free(&w[i]);
    for (int i = 0; i < nreported; i++)
        free(reported[i]);
    nreported = ndisagree = 0;
    teardown();
}

/* ------------------------------------------------------------------ paging */

static const char *const order_fields[] = {
    "a", "n", "s", "t", "o.x", "arr", "o", "id", "version", "missing", "created_at",
};

/* Whether SQLite holds two order keys equal: numbers compare exactly
 * (an integer and a real are equal only when the real is that integer). */
static bool same_key(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b))
        return json_integer_value(a) == json_integer_value(b);
    if (json_is_real(a) && json_is_real(b))
        return json_real_value(a) == json_real_value(b);
    if (json_is_number(a) && json_is_number(b)) {
        const json_t *i = json_is_integer(a) ? a : b, *r = json_is_integer(a) ? b : a;
        double d = json_real_value(r);
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != floor(d))
            return false;
        return (json_int_t)d == json_integer_value(i);
    }
    return json_equal(a, b);
}

/* SQLite's order of two keys: NULL, then numbers (integers and reals
 * compared exactly), then text (bytes). */
static int key_rank(const json_t *k) { return json_is_null(k) ? 0 : json_is_number(k) ? 1 : 2; }

static int key_cmp(const json_t *a, const json_t *b)
{
    int ra = key_rank(a), rb = key_rank(b);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    if (ra == 1) {
        long double x = json_is_integer(a) ? (long double)json_integer_value(a)
                                           : (long double)json_real_value(a);
        long double y = json_is_integer(b) ? (long double)json_integer_value(b)
                                           : (long double)json_real_value(b);
        return (x > y) - (x < y);
    }
    if (ra == 2) {
        size_t la = json_string_length(a), lb = json_string_length(b);
        int c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
        return c ? (c < 0 ? -1 : 1) : (la > lb) - (la < lb);
    }
    return 0;
}

/* One order spec, one page size, an optional where: pages vs one list. */
static void check_paging(const char *order, int page, const char *where)
{
    static row all[NDOCS + 1], pg[NDOCS + 2], paged[NDOCS + 1];
    err_t e = {0};
    query_t q;
    query_init(&q);
    q.limit = 999;
    if (query_set_order(&q, order, strlen(order), &e)) {
        FAILF("order %s refused: %s", order, e.msg);
        err_clear(&e);
        return;
    }
    if (where)
        parse_where(&q, where);
    int nall = run_sql(&q, all, NDOCS + 1, NULL);
    query_free(&q);
    if (nall < 0)
        return;
    if (!where && !CHECK_INT(nall, NDOCS))
        FAILF("order %s", order);

    /* Documented order: missing/null keys first ascending, last with '-';
     * ties (equal keys) by id in the same direction. */
    bool desc = order[0] == '-';
    bool seen_null = false, seen_nonnull = false;
    for (int i = 0; i < nall; i++) {
        bool isnull = json_is_null(all[i].key);
        if (isnull ? (!desc && seen_nonnull) : (desc && seen_null)) {
            FAILF("order %s: a %s key after a %s one at row %d", order,
                  isnull ? "null" : "non-null", isnull ? "non-null" : "null", i);
            break;
        }
        seen_null = seen_null || isnull;
        seen_nonnull = seen_nonnull || !isnull;
        if (i > 0 && (desc ? key_cmp(all[i - 1].key, all[i].key) < 0
                           : key_cmp(all[i - 1].key, all[i].key) > 0)) {
            char *k1 = json_dumps(all[i - 1].key, JSON_ENCODE_ANY);
            char *k2 = json_dumps(all[i].key, JSON_ENCODE_ANY);
            FAILF("order %s: key %s before key %s", order, k1, k2);
            free(k1);
            free(k2);
            break;
        }
        if (i > 0 && same_key(all[i - 1].key, all[i].key)) {
            int c = strcmp(all[i - 1].id, all[i].id);
            if (desc ? c <= 0 : c >= 0) {
                FAILF("order %s: tie not broken by id: %s then %s", order, all[i - 1].id,
                      all[i].id);
                break;
            }
        }
    }

    int npaged = 0;
    char *cursor = NULL;
    for (int round = 0; round <= NDOCS + 1; round++) {
        query_init(&q);
        q.limit = page;
        query_set_order(&q, order, strlen(order), &e);
        if (where)
            parse_where(&q, where);
        if (cursor && query_set_after(&q, cursor, strlen(cursor), &e)) {
            FAILF("order %s: own cursor refused: %s", order, e.msg);
            err_clear(&e);
            query_free(&q);
            break;
        }
        free(cursor);
        cursor = NULL;
        int n = run_sql(&q, pg, NDOCS + 2, NULL);
        if (n < 0) {
            query_free(&q);
            break;
        }
        if (n > page + 1)
            FAILF("order %s: page of %d rows with limit %d", order, n, page);
        int take = n < page ? n : page;
        for (int i = 0; i < take && npaged < NDOCS + 1; i++) {
            memcpy(paged[npaged].id, pg[i].id, sizeof paged[npaged].id);
            paged[npaged].key = json_incref(pg[i].key);
            npaged++;
        }
        if (n == page + 1)
            cursor = query_cursor_encode(&q, pg[page - 1].key, pg[page - 1].id);
        free_rows(pg, n);
        query_free(&q);
        if (!cursor || npaged > NDOCS)
            break;
    }
    free(cursor);

    bool same = npaged == nall;
    for (int i = 0; same && i < nall; i++)
        same = strcmp(paged[i].id, all[i].id) == 0;
    if (!same) {
        int i = 0;
        while (i < nall && i < npaged && strcmp(paged[i].id, all[i].id) == 0)
            i++;
        char *k1 = i < nall ? json_dumps(all[i].key, JSON_ENCODE_ANY) : NULL;
        char *k2 = i < npaged ? json_dumps(paged[i].key, JSON_ENCODE_ANY) : NULL;
        char *kp = i > 0 ? json_dumps(all[i - 1].key, JSON_ENCODE_ANY) : NULL;
        FAILF("order=%s page=%d where=%s: paged %d rows, unpaged %d; first difference at row "
              "%d: unpaged %s (key %s), paged %s (key %s); previous row %s (key %s)",
              order, page, where ? where : "-", npaged, nall, i,
              i < nall ? all[i].id : "(end)", k1 ? k1 : "-",
              i < npaged ? paged[i].id : "(end)", k2 ? k2 : "-",
              i > 0 ? all[i - 1].id : "-", kp ? kp : "-");
        free(k1);
        free(k2);
        free(kp);
    }
    free_rows(all, nall);
    free_rows(paged, npaged);
}

/* The order a store that sorts in C uses (query_order_key/_cmp, the
 * PostgreSQL store's lists) is SQLite's, row for row, key for key. */
static const query_t *sort_q;
static json_t *sort_keys[NDOCS];

static int by_order(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    return query_order_cmp(sort_q, sort_keys[i], docs[i].id, sort_keys[j], docs[j].id);
}

static void check_c_order(const char *order, const char *where)
{
    static row all[NDOCS + 1];
    err_t e = {0};
    query_t q;
    query_init(&q);
    q.limit = 999;
    query_set_order(&q, order, strlen(order), &e);
    if (where)
        parse_where(&q, where);
    int nall = run_sql(&q, all, NDOCS + 1, NULL);
    static int idx[NDOCS];
    int n = 0;
    for (int i = 0; i < NDOCS; i++) {
        sort_keys[i] = query_order_key(&q, docs[i].doc);
        if (query_match(&q, docs[i].doc))
            idx[n++] = i;
    }
    sort_q = &q;
    qsort(idx, (size_t)n, sizeof *idx, by_order);
    if (nall >= 0 && !CHECK_INT(n, nall))
        FAILF("order=%s where=%s: C matched %d rows, SQLite %d", order, where ? where : "-", n,
              nall);
    for (int i = 0; nall >= 0 && i < n && i < nall; i++) {
        if (strcmp(docs[idx[i]].id, all[i].id) != 0 || !same_key(sort_keys[idx[i]], all[i].key)) {
            char *k1 = json_dumps(sort_keys[idx[i]], JSON_ENCODE_ANY);
            char *k2 = json_dumps(all[i].key, JSON_ENCODE_ANY);
            FAILF("order=%s where=%s: row %d is %s (key %s) in C, %s (key %s) in SQLite", order,
                  where ? where : "-", i, docs[idx[i]].id, k1, all[i].id, k2);
            free(k1);
            free(k2);
            break;
        }
        /* And the cursor of each row: exactly the rows after it follow. */
        if (i % 37 == 0) {
            q.has_after = true;
            q.after_key = sort_keys[idx[i]];
            q.after_id = docs[idx[i]].id;
            for (int k = 0; k < n; k++)
                if (query_after_cursor(&q, sort_keys[idx[k]], docs[idx[k]].id) != (k > i)) {
                    FAILF("order=%s: row %d after the cursor of row %d is %s", order, k, i,
                          k > i ? "not" : "yes");
                    break;
                }
            q.has_after = false;
            q.after_key = NULL;
            q.after_id = NULL;
        }
    }
    for (int i = 0; i < NDOCS; i++)
        json_decref(sort_keys[i]);
    if (nall >= 0)
        free_rows(all, nall);
    query_free(&q);
}

TEST(c_order_is_sqlite_order)
{
    REQUIRE(setup(20261207));
    buf_t spec = {0}, w = {0};
    for (size_t oi = 0; oi < ARRAY_LEN(order_fields); oi++) {
        for (int desc = 0; desc < 2; desc++) {
            spec.len = 0;
            buf_printf(&spec, "%s%s", desc ? "-" : "", order_fields[oi]);
            check_c_order(spec.p, NULL);
            for (int k = 0; k < 5; k++) {
                gen_where(&w);
                check_c_order(spec.p, w.p);
            }
        }
    }
    buf_free(&spec);
    buf_free(&w);
    teardown();
}

TEST(sql_paging_with_cursors)
{
    REQUIRE(setup(20260423));
    static const int pages[] = {1, 7, 50};
    buf_t spec = {0}, w = {0};
    for (size_t oi = 0; oi < ARRAY_LEN(order_fields); oi++) {
        for (int desc = 0; desc < 2; desc++) {
            spec.len = 0;
            buf_printf(&spec, "%s%s", desc ? "-" : "", order_fields[oi]);
            for (size_t pi = 0; pi < ARRAY_LEN(pages); pi++) {
                int before = test_current_failed();
                check_paging(spec.p, pages[pi], NULL);
                gen_where(&w);
                check_paging(spec.p, pages[pi], w.p);
                if (!before && test_current_failed())
                    break; /* one report per order is enough */
            }
        }
    }
    buf_free(&spec);
    buf_free(&w);
    teardown();
}
