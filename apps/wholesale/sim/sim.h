/*
 * sim.h: what the files of `livedb simulate` (apps/wholesale/sim/) share:
 * the state of a run, the observers, and the helpers each scenario uses.
 * Private to the simulator; the command is wholesale.h simulate_main.
 */
#ifndef LIVEDB_WHOLESALE_SIM_H
#define LIVEDB_WHOLESALE_SIM_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "../../../src/cli/client.h"
#include "../../../src/core/doc.h"
#include "../../../src/util/map.h"
#include "../../../src/util/util.h"

#define PARTNERS_MAX 1000
#define PRODUCTS_MAX 100
#define TOKEN_MAX 128
#define SIM_EMAIL_FMT "sim-partner-%d@sim.livedb"
/* Figures from the server stay in ranges where our arithmetic on them
 * (totals, stock taken) cannot overflow. */
#define PRICE_MAX 1000000000000LL /* cents */
#define STOCK_ABS_MAX 1000000000000000LL
#define SETUP_CONNS 4 /* requests at once while making accounts (hashing is 2 at once) */

/* ------------------------------------------------------------------ state */

#define SPREAD_MAX 8

typedef struct sim_opts {
    const char *scenario;
    const char *url, *data;
    const char *email;
    char password[1100];
    bool password_given;
    int partners, products;
    double rate, seconds, timeout;
    int64_t stock;
    /* stress: more nodes of one database; the partners are dealt over
     * --url and these in turn (the admin stays on --url). */
    const char *spread[SPREAD_MAX];
    int nspread;
} sim_opts;

typedef struct partner {
    char email[64];
    char id[DOC_ID_MAX + 1];
    char token[TOKEN_MAX];
} partner;

typedef struct product {
    char id[DOC_ID_MAX + 1];
    char name[96];
    int64_t price, stock;
} product;

typedef struct sim {
    sim_opts o;
    uv_loop_t loop;
    client_target t;
    client_target spread[SPREAD_MAX]; /* --spread */
    client_http *admin; /* the admin's connection */
    client_http *part;  /* partner 1's connection */
    char admin_email[256];
    char admin_token[TOKEN_MAX];
    partner *partners; /* logged in, made ready by partners_ready */
    int npartners;
    char product_id[DOC_ID_MAX + 1]; /* what the scenarios order */
    bool own_product;                /* made by us: deleted at the end */
    int fails;                       /* checks that failed, in all */
} sim;


/* Requests in parallel over a few connections (account setup, logins). */
typedef struct preq {
    const char *method;
    char path[160];
    const char *token;
    json_t *body; /* the caller's */
    client_answer a;
} preq;

/* ------------------------------------------------------------------ observers */

typedef struct obs_msg {
    json_t *msg;
    uint64_t at;
} obs_msg;

typedef struct observer {
    sim *s;
    const char *who;
    client_ws *ws;
    obs_msg *q;
    size_t n, cap;
} observer;

typedef struct want {
    const char *t, *sub, *op, *id;
    int64_t version;      /* when > 0, doc.version must be this: the write asked for */
    const char *field;    /* when set, doc.field must then be ... */
    const json_t *equals; /* ... this (checked after the match, to say what was wrong) */
} want;

/* ------------------------------------------------------------------ common.c */

__attribute__((format(printf, 2, 3))) void ok(sim *s, const char *fmt, ...);
__attribute__((format(printf, 2, 3))) int fail(sim *s, const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void note(const char *fmt, ...);
int fail_answer(sim *s, client_answer *a, const char *what, const char *wrong);
void heading(const char *name, const char *what);
void money(char out[32], int64_t cents);
const char *jstr(const json_t *o, const char *k);
bool jint(const json_t *o, const char *k, int64_t *v);
bool jeq(const json_t *o, const char *k, const char *expected);
bool id_ok(const char *id);
int product_from(const json_t *doc, product *p);
int call_fn(sim *s, client_http *h, const char *token, const char *name, json_t *args,
                   client_answer *a);
int get_product(sim *s, client_http *h, const char *token, const char *id, product *p);
int feed_seq(sim *s, int64_t *seq);
bool ws_settled(void *ud);
int obs_open(sim *s, observer *o, const char *token, const char *who);
void obs_close(observer *o);
int obs_sub(observer *o, const char *id, const char *col, json_t *where, int64_t since,
                   json_t **docs);
json_t *expect_change(observer *o, const want *w, uint64_t t0, const char *what);
int run_pool(sim *s, preq *reqs, int n);

/* ------------------------------------------------------------------ people.c */

int admin_login(sim *s);
int partners_ready(sim *s, int n);
void partners_disable(sim *s);
int scenario_product(sim *s);
int place(sim *s, const partner *pt, const product *p, int64_t qty, const char *notes,
                 char oid[DOC_ID_MAX + 1], double *ms);
int set_status(sim *s, bool admin, const char *oid, const char *to, const char *refusal,
                      int64_t *version);
int adjust(sim *s, const char *pid, int64_t delta, int64_t *stock_after,
                  int64_t *version, char *why, size_t whylen, int *status);
int set_price(sim *s, const char *pid, int64_t price, int64_t *version);
void cancel(sim *s, observer *watch, const char *sub, const char *oid);
json_t *find_doc(json_t *docs, const char *id);

/* ------------------------------------------------------------------ scenarios.c */

int sc_partner_order(sim *s);
int sc_inventory(sim *s);
int sc_price(sim *s);
int sc_status(sim *s);

/* ------------------------------------------------------------------ stress.c */

int sc_stress(sim *s);

#endif
