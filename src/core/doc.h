/*
 * doc.h: what a document is.
 *
 * A document is a JSON object. The server owns four fields (id, version,
 * created_at, updated_at) and writes them first; everything else is the
 * client's ("members"). Stored and sent documents are one compact JSON text
 * composed as {server fields, members}, so that reads hand out stored
 * bytes without parsing them again.
 */
#ifndef LIVEDB_DOC_H
#define LIVEDB_DOC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../util/util.h"
#include "err.h"

#define DOC_MAX_BYTES (1024 * 1024)
#define DOC_MAX_DEPTH 64
#define DOC_ID_MAX 128
#define COL_NAME_MAX 64
#define DOC_GEN_ID_LEN 20

/* [a-z][a-z0-9_]{0,63}; reserved: names starting with '_' are refused
 * here (the server's own collections never pass through this check). */
int doc_check_collection(const char *name, size_t n, err_t *err);
/* 1-128 of [A-Za-z0-9_.-]. */
int doc_check_id(const char *id, size_t n, err_t *err);

/* Whether the JSON text nests arrays/objects at most max_depth deep.
 * A byte scan that runs before the parser, so that a deep bomb costs no
 * allocation. Text that is not JSON may pass; the parser refuses it. */
int json_depth_ok(const char *text, size_t len, int max_depth);

/* Strict parse of any JSON value: depth, duplicates, UTF-8, NUL, numbers. */
json_t *json_parse_strict(const char *text, size_t len, err_t *err);

/* Parses a request body that must be a JSON object (a document or a
 * patch). Returns a new reference or NULL with err set (400). */
json_t *doc_parse_object(const char *text, size_t len, err_t *err);

/* Removes the server-owned fields from a client object. When the object
 * carries an "id": it must be a valid id and, when want_id is given, equal
 * to it; *id_out (may be NULL) receives a copy of it. */
int doc_take_server_fields(json_t *obj, const char *want_id, char **id_out, err_t *err);

/* The client members of obj as compact JSON text without the braces
 * ("" for {}). Caller frees. */
char *doc_members(const json_t *obj, size_t *len);

/* Writes {"id":..,"version":..,"created_at":..,"updated_at":..,MEMBERS}. */
void doc_compose(buf_t *out, const char *id, int64_t version, const char *created_at,
                 const char *updated_at, const char *members, size_t members_len);

/* RFC 7396 JSON merge patch. Takes ownership of target (may be NULL) and
 * returns the patched value (a new reference). patch is borrowed. */
json_t *merge_patch(json_t *target, const json_t *patch);

#endif
