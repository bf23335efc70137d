/*
 * identity.h: who a request is.
 *
 * The loop thread's cache of accounts (documents of `_accounts`), their
 * password hashes and the sessions, loaded from the store at start and
 * kept in step with what the writer commits, so that checking a token
 * costs a hash and a lookup, no disk. A session token is kept only as its
 * BLAKE2b hash. auth.c (login, logout, the accounts API) is what changes
 * them; everything else only asks.
 */
#ifndef LIVEDB_IDENTITY_H
#define LIVEDB_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/access.h"
#include "../core/doc.h"
#include "../core/err.h"
#include "../net/http.h"
#include "../net/server.h"
#include "../util/util.h"

struct store;
struct wjob;

typedef struct identity identity_t;

typedef struct account {
    char id[DOC_ID_MAX + 1];
    char email[255];  /* lower case */
    char role[33];
    char name[201];
    bool disabled;
    char *hash;       /* argon2id, or NULL */
} account_t;

/* Loads the accounts, hashes and unexpired sessions from the store. */
identity_t *identity_open(struct store *store, err_t *err);
void identity_free(identity_t *ids);

/* Who is calling: the account of the request's token (Authorization:
 * Bearer, or ?token= where browsers cannot set headers). Without a token:
 * E_UNAUTHORIZED if required, else anonymous (id ""). A token that does
 * not stand (unknown, expired, its account disabled) is E_UNAUTHORIZED. */
int identity_resolve(identity_t *ids, conn_t *c, const http_req *req, actor_t *who,
                     bool required, err_t *err);

/* The request's token: 1 and where it is, 0 without one, -1 malformed. */
int identity_bearer(const http_req *req, const char **tok, size_t *n);
/* The hex BLAKE2b-256 of a token, the key sessions are kept under. */
void identity_token_hash(const char *token, size_t n, char out[65]);

const account_t *identity_account(identity_t *ids, const char *id);
const account_t *identity_account_by_email(identity_t *ids, const char *email);
/* {"id","email","role","name","disabled"}: what the API shows of one. */
void identity_account_json(buf_t *b, const account_t *a);
/* {"accounts":[...]} */
void identity_accounts_json(identity_t *ids, buf_t *b);

/* A session the writer has stored (login). */
void identity_session_add(identity_t *ids, const char *th, const char *sid,
                          const char *account, int64_t expires);
/* Forgets one session (only_th: logout) or all of an account (disabled). */
void identity_sessions_drop(identity_t *ids, const char *account, const char *only_th);
/* A committed batch that wrote accounts (the demo, the accounts API):
 * its account documents and password hashes go to the cache. */
void identity_note_job(identity_t *ids, struct wjob *job);

/* ---- several nodes over one database (store_shared): what other nodes
 * commit reaches the cache through the store's auth events. */

/* An account document another node committed (doc NULL: deleted); true
 * when the account's access changed (disabled, deleted, another role), so
 * that its connections must be closed. */
bool identity_account_heard(identity_t *ids, const char *id, const char *doc);
void identity_set_hash(identity_t *ids, const char *account, const char *hash);
/* Forgets the session of token hash th; true (and who: its account and
 * session) when it was cached. */
bool identity_session_end(identity_t *ids, const char *th, actor_t *who);
/* Forgets every cached session (they are looked up again), then loads the
 * accounts and their password hashes again. */
int identity_reload(identity_t *ids, struct store *store, err_t *err);
void identity_forget_sessions(identity_t *ids);
/* Whether the request carries a token the cache does not know and the
 * database has not been asked about (th: its hash); after the look-up,
 * identity_session_add or identity_note_unknown. */
bool identity_unknown_token(identity_t *ids, const http_req *req, char th[65]);
void identity_note_unknown(identity_t *ids, const char *th);

#endif
