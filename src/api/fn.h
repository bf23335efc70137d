/*
 * fn.h: the apps' server functions, as the server finds them.
 *
 * Each app's functions.c defines a table of its functions, ended by an
 * entry with a NULL name, that its app_def (core/apps.h) points to;
 * src/api/functions.c finds them through the registry and calls only the
 * functions of the apps served (--apps).
 */
#ifndef LIVEDB_FN_H
#define LIVEDB_FN_H

#include "../store/store.h"

typedef struct fn_def {
    const char *name;
    fn_impl impl;
} fn_def;

/* A document id argument args[name], checked: NULL (and the call failed
 * with 422 invalid naming the field) when it is missing or not an id. */
const char *fn_arg_id(fn_tx *t, const json_t *args, const char *name);

#endif
