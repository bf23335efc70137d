/*
 * doc.c: document validation, composition and RFC 7396 merge patch.
 */
#include "doc.h"

#include <stdlib.h>
#include <string.h>

static const char *const server_fields[] = {"id", "version", "created_at", "updated_at"};

int doc_check_collection(const char *name, size_t n, err_t *err)
{
    if (n == 0 || n > COL_NAME_MAX)
        return err_set(err, E_BAD_REQUEST, "collection name must be 1-64 characters");
    if (name[0] < 'a' || name[0] > 'z')
        return err_set(err, E_BAD_REQUEST,
                       "collection name must start with a lowercase letter (a-z)");
    for (size_t i = 1; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return err_set(err, E_BAD_REQUEST,
                           "collection name may hold only a-z, 0-9 and _");
    }
    return 0;
}

int doc_check_id(const char *id, size_t n, err_t *err)
{
    if (n == 0 || n > DOC_ID_MAX)
        return err_set(err, E_BAD_REQUEST, "id must be 1-128 characters");
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return err_set(err, E_BAD_REQUEST, "id may hold only A-Z, a-z, 0-9, _, . and -");
    }
    return 0;
}

int json_depth_ok(const char *text, size_t len, int max_depth)
{
    int depth = 0;
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++; /* skip the escaped byte; \uXXXX digits are harmless */
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth)
                return 0;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return 1;
}

json_t *json_parse_strict(const char *text, size_t len, err_t *err)
{
    if (!json_depth_ok(text, len, DOC_MAX_DEPTH)) {
        err_set(err, E_BAD_REQUEST, "JSON is nested deeper than %d levels", DOC_MAX_DEPTH);
        return NULL;
    }
    json_error_t je;
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!v) {
        err_set(err, E_BAD_REQUEST, "invalid JSON at line %d column %d: %s", je.line,
                je.column, je.text);
        return NULL;
    }
    return v;
}

json_t *doc_parse_object(const char *text, size_t len, err_t *err)
{
    json_t *v = json_parse_strict(text, len, err);
    if (v && !json_is_object(v)) {
        json_decref(v);
        err_set(err, E_BAD_REQUEST, "the body must be a JSON object");
        return NULL;
    }
    return v;
}

int doc_take_server_fields(json_t *obj, const char *want_id, char **id_out, err_t *err)
{
    json_t *id = json_object_get(obj, "id");
    if (id) {
        if (!json_is_string(id))
            return err_set(err, E_BAD_REQUEST, "id must be a string");
        const char *s = json_string_value(id);
        size_t n = json_string_length(id);
        if (doc_check_id(s, n, err))
            return -1;
        if (want_id && (strlen(want_id) != n || memcmp(want_id, s, n) != 0))
            return err_set(err, E_BAD_REQUEST, "the id in the body differs from the id in the URL");
        if (id_out)
            *id_out = xstrndup(s, n);
    }
    for (size_t i = 0; i < ARRAY_LEN(server_fields); i++)
        json_object_del(obj, server_fields[i]);
    return 0;
}

char *doc_members(const json_t *obj, size_t *len)
{
    size_t n = 0;
    char *text = json_dumps(obj, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) /* only on allocation failure inside jansson */
        abort();
    n = strlen(text);
    /* Drop the braces: "{...}" -> "...". */
    memmove(text, text + 1, n - 2);
    text[n - 2] = '\0';
    *len = n - 2;
    return text;
}

void doc_compose(buf_t *out, const char *id, int64_t version, const char *created_at,
                 const char *updated_at, const char *members, size_t members_len)
{
    buf_reserve(out, members_len + strlen(id) + 96);
    buf_puts(out, "{\"id\":");
    buf_put_json_str(out, id, strlen(id));
    buf_puts(out, ",\"version\":");
    buf_put_i64(out, version);
    buf_puts(out, ",\"created_at\":\"");
    buf_puts(out, created_at);
    buf_puts(out, "\",\"updated_at\":\"");
    buf_puts(out, updated_at);
    buf_putc(out, '"');
    if (members_len) {
        buf_putc(out, ',');
        buf_put(out, members, members_len);
    }
    buf_putc(out, '}');
}

json_t *merge_patch(json_t *target, const json_t *patch)
{
    if (!json_is_object(patch)) {
        json_decref(target);
        return json_deep_copy(patch);
    }
    if (!json_is_object(target)) {
        json_decref(target);
        target = json_object();
    }
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)patch, key, value) {
        if (json_is_null(value)) {
            json_object_del(target, key);
        } else {
            json_t *cur = json_object_get(target, key);
            json_incref(cur);
            json_object_set_new(target, key, merge_patch(cur, value));
        }
    }
    return target;
}
