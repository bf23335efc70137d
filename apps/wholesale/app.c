/*
 * app.c: the wholesale app as the server registers it (core/apps.h): its
 * server functions, its error code, its command. Its collections, roles
 * and rules are in app.json.
 */
#include "wholesale.h"

static const app_error errors[] = {
    [WHOLESALE_INSUFFICIENT_STOCK] = {"insufficient_stock", 422},
    {NULL, 0},
};

static const app_command commands[] = {
    {"simulate",
     "       livedb simulate partner-order|inventory-update|price-update|order-status|stress|all\n"
     "                       [--url URL] [--data DIR] [--partners N] [--rate R] [--seconds T]\n"
     "                       (livedb simulate --help for the rest)\n",
     simulate_main},
    {NULL, NULL, NULL},
};

const app_def app_wholesale = {
    .name = "wholesale",
    .functions = wholesale_functions,
    .errors = errors,
    .commands = commands,
};
