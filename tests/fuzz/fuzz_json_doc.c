/*
 * fuzz_json_doc.c: core/doc.c on arbitrary JSON text.
 *
 * Input: DOC [NUL PATCH [NUL WANT_ID]]. The document goes through what a
 * write does (doc_parse_object, doc_take_server_fields, doc_members,
 * doc_compose), the patch through merge_patch as PATCH does. Checks:
 * the depth pre-scan bounds the parsed depth; members and composition are
 * JSON that reads back as the document; merge patch keeps RFC 7396's
 * rules and is idempotent; the patch is not modified.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/core/doc.h"
#include "fuzz.h"

static int depth_of(const json_t *v)
{
    int d = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            int c = depth_of(x);
            if (c > d)
                d = c;
        }
        return d + 1;
    }
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            int c = depth_of(json_array_get(v, i));
            if (c > d)
                d = c;
        }
        return d + 1;
    }
    return 0;
}

static json_t *strict(const char *t, size_t n)
{
    err_t e = {0};
    json_t *v = json_parse_strict(t, n, &e);
    if (v) {
        REQUIRE(e.code == E_OK);
        REQUIRE(depth_of(v) <= DOC_MAX_DEPTH);
        REQUIRE(json_depth_ok(t, n, DOC_MAX_DEPTH));
    } else {
        REQUIRE(e.code == E_BAD_REQUEST);
    }
    err_clear(&e);
    return v;
}

/* Members -> compose -> strict parse gives the object back. */
static void check_compose(const json_t *obj, const char *id)
{
    size_t mlen;
    char *m = doc_members(obj, &mlen);
    REQUIRE(strlen(m) == mlen);
    REQUIRE((mlen == 0) == (json_object_size(obj) == 0));
    buf_t b = {0};
    doc_compose(&b, id, 42, "2026-01-02T03:04:05.678Z", "2026-01-02T03:04:05.678Z", m, mlen);
    free(m);
    json_t *back = strict(b.p, b.len);
    REQUIRE(back != NULL);
    REQUIRE(json_is_object(back));
    json_t *jid = json_object_get(back, "id");
    REQUIRE(json_is_string(jid) && strcmp(json_string_value(jid), id) == 0);
    REQUIRE(json_integer_value(json_object_get(back, "version")) == 42);
    json_object_del(back, "id");
    json_object_del(back, "version");
    json_object_del(back, "created_at");
    json_object_del(back, "updated_at");
    REQUIRE(json_equal(back, obj));
    json_decref(back);
    buf_free(&b);
}

static void check_patch_rules(const json_t *result, const json_t *patch)
{
    if (!json_is_object(patch)) {
        REQUIRE(json_equal(result, patch));
        return;
    }
    REQUIRE(json_is_object(result));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)patch, k, v) {
        json_t *r = json_object_get(result, k);
        if (json_is_null(v))
            REQUIRE(r == NULL);
        else if (!json_is_object(v))
            REQUIRE(r != NULL && json_equal(r, v) && (r != v || !json_is_array(v)));
        else
            REQUIRE(json_is_object(r));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    size_t dlen, plen = 0, wlen = 0;
    const char *patch_text = fuzz_next_part(p, end, &dlen), *want = NULL;
    if (patch_text)
        want = fuzz_next_part(patch_text, end, &plen);
    if (want)
        fuzz_next_part(want, end, &wlen);

    /* The pre-scan alone, at a few limits, on the raw bytes. */
    int d1 = json_depth_ok(p, size, 1), d64 = json_depth_ok(p, size, 64);
    if (d1) /* monotone: within depth 1 is within 64 */
        REQUIRE(d64);

    err_t e = {0};
    json_t *doc = doc_parse_object(p, dlen, &e);
    if (!doc) {
        REQUIRE(e.code == E_BAD_REQUEST);
        err_clear(&e);
    } else {
        REQUIRE(json_is_object(doc));
        json_t *probe = strict(p, dlen);
        REQUIRE(probe && json_equal(probe, doc));
        json_decref(probe);

        char *want_id = want ? strndup(want, wlen) : NULL;
        if (want_id && (strlen(want_id) != wlen || doc_check_id(want_id, wlen, &e))) {
            free(want_id);
            want_id = NULL;
            err_clear(&e);
        }
        char *id = NULL;
        json_t *before = json_deep_copy(doc);
        if (doc_take_server_fields(doc, want_id, &id, &e) == 0) {
            REQUIRE(!json_object_get(doc, "id") && !json_object_get(doc, "version") &&
                    !json_object_get(doc, "created_at") && !json_object_get(doc, "updated_at"));
            json_t *bid = json_object_get(before, "id");
            if (bid) {
                REQUIRE(id && strcmp(id, json_string_value(bid)) == 0);
                REQUIRE(!want_id || strcmp(id, want_id) == 0);
            } else {
                REQUIRE(id == NULL);
            }
            check_compose(doc, id ? id : (want_id ? want_id : "x"));
        } else {
            REQUIRE(e.code == E_BAD_REQUEST);
            REQUIRE(id == NULL);
            err_clear(&e);
        }
        json_decref(before);
        free(id);
        free(want_id);

        json_t *patch = patch_text ? strict(patch_text, plen) : NULL;
        if (patch) {
            char *pbefore = json_dumps(patch, JSON_COMPACT | JSON_ENCODE_ANY);
            json_t *result = merge_patch(json_deep_copy(doc), patch);
            REQUIRE(result != NULL);
            check_patch_rules(result, patch);
            /* Idempotent: applying the patch again changes nothing. */
            json_t *again = merge_patch(json_deep_copy(result), patch);
            REQUIRE(json_equal(again, result));
            json_decref(again);
            char *pafter = json_dumps(patch, JSON_COMPACT | JSON_ENCODE_ANY);
            REQUIRE(strcmp(pbefore, pafter) == 0);
            free(pbefore);
            free(pafter);
            /* What PATCH stores: the server fields dropped again. */
            if (json_is_object(result) && doc_take_server_fields(result, NULL, NULL, &e) == 0 &&
                depth_of(result) <= DOC_MAX_DEPTH)
                check_compose(result, "p");
            err_clear(&e);
            json_decref(result);
            /* A NULL target too. */
            result = merge_patch(NULL, patch);
            check_patch_rules(result, patch);
            json_decref(result);
            json_decref(patch);
        }
        json_decref(doc);
    }
    return 0;
}
