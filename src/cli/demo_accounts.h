/*
 * demo_accounts.h: DIR/demo-accounts.json, mode 0600:
 * [{"email","role","password"}], the accounts `serve --demo` made, for
 * `livedb simulate` (and people) to log in with.
 */
#ifndef LIVEDB_DEMO_ACCOUNTS_H
#define LIVEDB_DEMO_ACCOUNTS_H

#include <stddef.h>

#include <jansson.h>

#define DEMO_ACCOUNTS_FILE "demo-accounts.json"

/* Writes the file whole and renames it into place. Returns 0, or -1 with
 * a message in err. */
int demo_accounts_save(const char *dir, const json_t *accounts, char *err, size_t errlen);

#endif
