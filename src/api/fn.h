/*
 * fn.h: the apps' server functions, as the server finds them.
 *
 * Each app's functions.c defines a table of its functions, ended by an
 * entry with a NULL name; src/api/functions.c lists the tables and calls
 * only the functions of the apps served (--apps).
 */
#ifndef LIVEDB_FN_H
#define LIVEDB_FN_H

#include "../store/store.h"

typedef struct fn_def {
    const char *app;
    const char *name;
    fn_impl impl;
} fn_def;

extern const fn_def wholesale_functions[];
extern const fn_def studio_functions[];

#endif
