/*
 * simulate.h: `livedb simulate`, the wholesale app driven from outside
 * against a running server, as its people would use it, checking that
 * each side sees the other's changes live.
 *
 *   livedb simulate partner-order | inventory-update | price-update |
 *                   order-status | stress | all  [options]
 *
 * Exit status: 0 when everything behaved, 1 when something did not (or
 * the server could not be reached), 2 on bad usage.
 */
#ifndef LIVEDB_SIMULATE_H
#define LIVEDB_SIMULATE_H

#include <stddef.h>

#include <jansson.h>

/* The command: argv holds what follows "simulate". */
int simulate_main(int argc, char **argv);

/* DIR/demo-accounts.json, mode 0600: [{"email","role","password"}], the
 * accounts `serve --demo` made, for simulate (and people) to log in with.
 * Written whole and renamed into place. Returns 0, or -1 with a message. */
#define SIMULATE_DEMO_ACCOUNTS "demo-accounts.json"
int simulate_save_demo_accounts(const char *dir, const json_t *accounts, char *err,
                                size_t errlen);

#endif
