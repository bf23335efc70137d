/*
 * wholesale.h: the wholesale app's parts, for its own files (app.c lists
 * them): its server functions, its error codes, its `livedb simulate`.
 */
#ifndef LIVEDB_APP_WHOLESALE_H
#define LIVEDB_APP_WHOLESALE_H

#include "../../src/api/fn.h"
#include "../../src/core/apps.h"

extern const app_def app_wholesale;
extern const fn_def wholesale_functions[]; /* functions.c */

/* Its errors, by their index in app_wholesale.errors (apps_err gives the
 * code). */
enum { WHOLESALE_INSUFFICIENT_STOCK };

/* `livedb simulate` (sim/): argv holds what follows "simulate". */
int simulate_main(int argc, char **argv);

#endif
