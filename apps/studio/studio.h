/*
 * studio.h: the studio app's parts, for its own files (app.c lists them).
 */
#ifndef LIVEDB_APP_STUDIO_H
#define LIVEDB_APP_STUDIO_H

#include "../../src/api/fn.h"
#include "../../src/core/apps.h"

extern const app_def app_studio;
extern const fn_def studio_functions[]; /* functions.c */

#endif
