/*
 * app.c: the studio app as the server registers it (core/apps.h): its
 * server functions. Its collections, roles and rules are in app.json.
 */
#include "studio.h"

const app_def app_studio = {
    .name = "studio",
    .functions = studio_functions,
};
