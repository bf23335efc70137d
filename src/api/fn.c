/*
 * fn.c: helpers for the apps' server functions (see fn.h), so that each
 * app does not check its arguments its own way.
 */
#include "fn.h"

#include <string.h>

#include "../core/doc.h"

const char *fn_arg_id(fn_tx *t, const json_t *args, const char *name)
{
    const char *v = json_string_value(json_object_get(args, name));
    err_t e = {0};
    if (!v || doc_check_id(v, strlen(v), &e)) {
        err_clear(&e);
        fn_fail(t, E_INVALID, json_pack("[{ssss}]", "field", name, "reason", "must be an id"),
                "%s must be a document id", name);
        return NULL;
    }
    return v;
}
