/*
 * main.c: `livedb simulate`, the wholesale app's command (wholesale.h):
 * its options, who logs in, and the scenarios in turn.
 *
 * Each scenario plays the wholesale app the way its people do, over the
 * public API only: one side acts over HTTP (POST /v1/fn/...), the other
 * watches over the realtime WebSocket, and the scenario checks that the
 * watcher saw the change, and how long after the request.
 *
 *   partner-order     a partner orders; the admin's orders subscription
 *                     sees it added; stock goes down; too much is refused
 *   inventory-update  the admin adjusts stock; the partner sees it; stock
 *                     never goes below 0; a partner may not adjust
 *   price-update      the admin changes a price; the partner sees it; an
 *                     order placed before keeps its price, one after pays
 *                     the new one
 *   order-status      the admin moves an order pending -> confirmed ->
 *                     packed -> shipped; the partner sees each step
 *   stress            N partners order at a total rate R for T seconds;
 *                     throughput, latency percentiles, errors by code; no
 *                     oversell, and the admin saw every order exactly once
 *
 * Who: an admin (--email with --password-stdin, LIVEDB_EMAIL and
 * LIVEDB_PASSWORD, or the demo's DATA/demo-accounts.json) and partners
 * sim-partner-N@sim.livedb that the admin creates, or gives a new random
 * password and enables, at the start, and disables at the end: they can
 * log in only while a simulation runs.
 *
 * What it leaves: scenarios put back what they took (orders they place
 * are cancelled, stock and prices are restored; a shipped order stays, its
 * stock restocked). stress orders its own products (sim-hot-N, made at
 * the start, deleted at the end); its orders stay, marked in their notes.
 *
 * The server is not trusted: every answer is checked for its shape, and
 * every wait has a deadline (--timeout).
 */
#include "sim.h"

#include "../../../src/cli/demo_accounts.h"
#include "../../../src/util/args.h"
#include "../wholesale.h"

/* ------------------------------------------------------------------ all */

typedef struct scenario {
    const char *name;
    int (*run)(sim *s);
} scenario;

static const scenario scenarios[] = {
    {"partner-order", sc_partner_order},
    {"inventory-update", sc_inventory},
    {"price-update", sc_price},
    {"order-status", sc_status},
    {"stress", sc_stress},
};

static int run_all(sim *s)
{
    int results[ARRAY_LEN(scenarios)], bad = 0;
    for (size_t i = 0; i < ARRAY_LEN(scenarios); i++) {
        results[i] = scenarios[i].run(s);
        bad += results[i] != 0;
    }
    printf("\nsummary: %zu of %zu scenarios behaved\n", ARRAY_LEN(scenarios) - (size_t)bad,
           ARRAY_LEN(scenarios));
    for (size_t i = 0; i < ARRAY_LEN(scenarios); i++)
        printf("  %-5s %s\n", results[i] ? "FAIL" : "ok", scenarios[i].name);
    printf("%s\n", bad ? "FAIL" : "PASS");
    fflush(stdout);
    return bad ? 1 : 0;
}

/* The first admin of DIR/demo-accounts.json; 1 when the file is absent,
 * -1 when it is unusable (err). */
static int demo_admin(const char *dir, char *email, size_t elen, char *pw, size_t pwlen,
                      char *err, size_t errlen)
{
    buf_t path = {0};
    buf_printf(&path, "%s/%s", dir, DEMO_ACCOUNTS_FILE);
    json_error_t je;
    json_t *list = json_load_file(path.p, JSON_REJECT_DUPLICATES, &je);
    int rc = -1;
    if (!list && access(path.p, F_OK) != 0) {
        rc = 1;
    } else if (!list) {
        snprintf(err, errlen, "%s: line %d: %s", path.p, je.line, je.text);
    } else {
        for (size_t i = 0; i < json_array_size(list) && rc < 0; i++) {
            json_t *a = json_array_get(list, i);
            const char *e = jstr(a, "email"), *p = jstr(a, "password");
            if (jeq(a, "role", "admin") && e && p && strlen(e) < elen && strlen(p) < pwlen) {
                snprintf(email, elen, "%s", e);
                snprintf(pw, pwlen, "%s", p);
                rc = 0;
            }
        }
        if (rc < 0)
            snprintf(err, errlen, "%s names no admin (an array of {email, role, password})",
                     path.p);
    }
    json_decref(list);
    buf_free(&path);
    return rc;
}

/* ------------------------------------------------------------------ the command */

static const char simulate_usage[] =
    "usage: livedb simulate SCENARIO [--url URL] [--spread URL]... [--data DIR]\n"
    "                       [--email E --password-stdin]\n"
    "                       [--partners N] [--rate R] [--seconds T] [--products N]\n"
    "                       [--stock N] [--timeout S]\n"
    "\n"
    "Drives the wholesale app of a running server as its people would, and checks that\n"
    "each side sees the other's changes live. SCENARIO is one of:\n"
    "  partner-order     a partner orders; the admin's orders subscription sees it\n"
    "  inventory-update  the admin adjusts stock; a partner sees it\n"
    "  price-update      the admin changes a price; a partner sees it; orders keep theirs\n"
    "  order-status      the admin moves an order to shipped; the partner sees each step\n"
    "  stress            partners order at once: orders/s, latency, errors; no oversell,\n"
    "                    and the admin saw every order exactly once\n"
    "  all               the five, then a pass/fail summary\n"
    "\n"
    "  --url URL         the server (default http://127.0.0.1:8080)\n"
    "  --spread URL      stress: another node of the same database; the partners are\n"
    "                    dealt over --url and each --spread in turn (repeatable, 8)\n"
    "  --data DIR        a demo server's data directory: the admin is read from\n"
    "                    DIR/demo-accounts.json (default ./data)\n"
    "  --email E         an admin's email; the password is read from standard input\n"
    "  --password-stdin  (or set LIVEDB_EMAIL and LIVEDB_PASSWORD)\n"
    "  --partners N      stress: partners ordering at once (default 8; 1-1000)\n"
    "  --rate R          stress: orders a second in all (default 0: as fast as answered)\n"
    "  --seconds T       stress: how long (default 5)\n"
    "  --products N      stress: products ordered, made for the run (default 10; 1-100)\n"
    "  --stock N         stress: units of each at the start (default 1000000)\n"
    "  --timeout S       the longest wait for an answer or a change (default 10)\n"
    "\n"
    "Partners sim-partner-N@sim.livedb are made (or reset) by the admin and disabled at\n"
    "the end. Exit status: 0 everything behaved, 1 something did not, 2 bad usage.\n";

__attribute__((format(printf, 1, 2))) static int sim_usage_error(const char *fmt, ...)
{
    char what[2048]; /* the longest: a bad option's value, quoted */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    fprintf(stderr, "livedb simulate: %s\n(run 'livedb simulate --help' for the options)\n", what);
    return 2;
}

static int parse_spread(const char *v, void *to, char *why, size_t n)
{
    sim_opts *o = to;
    if (o->nspread == SPREAD_MAX) {
        snprintf(why, n, "at most %d --spread", SPREAD_MAX);
        return -1;
    }
    o->spread[o->nspread++] = v;
    return 0;
}

static int parse_opts(int argc, char **argv, sim_opts *o)
{
    *o = (sim_opts){.url = "http://127.0.0.1:8080", .data = "./data", .partners = 8,
                    .products = 10, .rate = 0, .seconds = 5, .timeout = 10, .stock = 1000000};
    bool from_stdin = false;
    const arg_opt opts[] = {
        {"--password-stdin", ARG_SET, .to = &from_stdin},
        {"--url", ARG_STR, .to = &o->url},
        {"--spread", ARG_FN, .to = o, .fn = parse_spread, .takes = "another node's URL"},
        {"--data", ARG_STR, .to = &o->data},
        {"--email", ARG_STR, .to = &o->email},
        {"--partners", ARG_INT, .to = &o->partners, 1, PARTNERS_MAX,
         "a whole number from 1 to 1000"},
        {"--products", ARG_INT, .to = &o->products, 1, PRODUCTS_MAX,
         "a whole number from 1 to 100"},
        {"--stock", ARG_I64, .to = &o->stock, 0, 1000000000000, "a whole number from 0 to 1e12"},
        {"--rate", ARG_REAL, .to = &o->rate, .min = 0, .max = 1e7,
         .takes = "a number from 0 to 1e7"},
        {"--seconds", ARG_REAL, .to = &o->seconds, .min = 0.1, .max = 86400,
         .takes = "a number from 0.1 to 86400"},
        {"--timeout", ARG_REAL, .to = &o->timeout, .min = 0.1, .max = 3600,
         .takes = "a number from 0.1 to 3600"},
        {0},
    };
    char why[2048];
    if (args_parse(argc, argv, &(arg_spec){opts, &o->scenario, "scenario"}, why, sizeof why))
        return sim_usage_error("%s", why);
    if (!o->scenario)
        return sim_usage_error("which scenario? partner-order, inventory-update, price-update,"
                               " order-status, stress or all");
    bool known = strcmp(o->scenario, "all") == 0;
    for (size_t i = 0; i < ARRAY_LEN(scenarios) && !known; i++)
        known = strcmp(scenarios[i].name, o->scenario) == 0;
    if (!known)
        return sim_usage_error("no scenario '%s' (partner-order, inventory-update, price-update,"
                               " order-status, stress, all)", o->scenario);
    if (!!o->email != from_stdin)
        return sim_usage_error("--email and --password-stdin go together (the password is read"
                               " from standard input, never from the command line)");
    if (from_stdin) {
        if (!fgets(o->password, sizeof o->password, stdin))
            return sim_usage_error("no password on standard input");
        o->password[strcspn(o->password, "\r\n")] = '\0';
        if (!o->password[0])
            return sim_usage_error("an empty password on standard input");
        o->password_given = true;
    }
    return 0;
}

/* Who the admin is: the flags, the environment, or the demo's file. */
static int credentials(sim_opts *o, char *email_buf, size_t elen)
{
    if (o->password_given)
        return 0;
    const char *e = getenv("LIVEDB_EMAIL"), *p = getenv("LIVEDB_PASSWORD");
    if (e && *e && p && *p) {
        o->email = e;
        snprintf(o->password, sizeof o->password, "%s", p);
        return 0;
    }
    char err[400];
    int rc = demo_admin(o->data, email_buf, elen, o->password, sizeof o->password, err,
                        sizeof err);
    if (rc == 0) {
        o->email = email_buf;
        return 0;
    }
    if (rc > 0)
        return sim_usage_error("no admin to log in as: give --email E --password-stdin, set"
                               " LIVEDB_EMAIL and LIVEDB_PASSWORD, or --data DIR of a server"
                               " started with --demo (%s/%s is not there)",
                               o->data, DEMO_ACCOUNTS_FILE);
    fprintf(stderr, "livedb simulate: %s\n", err);
    return 1;
}

int simulate_main(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
            strcmp(argv[i], "help") == 0) {
            fputs(simulate_usage, stdout);
            return 0;
        }
    sim *s = xcalloc(1, sizeof *s);
    char email_buf[256];
    int rc = parse_opts(argc, argv, &s->o);
    char err[400];
    if (rc == 0 && client_target_parse(s->o.url, &s->t, err, sizeof err)) {
        /* A malformed URL is bad usage; a name that does not resolve is not. */
        rc = strncmp(s->o.url, "http://", 7) == 0 && !strstr(err, "port") ? 1 : 2;
        fprintf(stderr, "livedb simulate: %s\n", err);
    }
    for (int i = 0; rc == 0 && i < s->o.nspread; i++)
        if (client_target_parse(s->o.spread[i], &s->spread[i], err, sizeof err)) {
            fprintf(stderr, "livedb simulate: --spread %s\n", err);
            rc = 2;
        }
    if (rc == 0)
        rc = credentials(&s->o, email_buf, sizeof email_buf);
    if (rc) {
        sodium_memzero(s->o.password, sizeof s->o.password);
        free(s);
        return rc;
    }
    signal(SIGPIPE, SIG_IGN); /* a server that goes away is an answer, not a signal */
    uv_loop_init(&s->loop);
    s->admin = client_http_new(&s->loop, &s->t, s->o.timeout);
    s->part = client_http_new(&s->loop, &s->t, s->o.timeout);
    printf("livedb simulate: %s at %s, as %s\n", s->o.scenario, s->t.url, s->o.email);
    fflush(stdout);
    bool all = strcmp(s->o.scenario, "all") == 0, stress_only = strcmp(s->o.scenario, "stress") == 0;
    if (admin_login(s) == 0 && partners_ready(s, 1) == 0 && (stress_only || scenario_product(s) == 0)) {
        printf("  %-5s partners %s..%d (made ready by the admin; disabled at the end)\n", "",
               s->partners[0].email, stress_only || all ? s->o.partners : 1);
        if (all) {
            rc = run_all(s);
        } else {
            for (size_t i = 0; i < ARRAY_LEN(scenarios); i++)
                if (strcmp(scenarios[i].name, s->o.scenario) == 0)
                    rc = scenarios[i].run(s);
        }
    }
    /* Put back what is ours to put back. */
    if (s->own_product) {
        client_answer a;
        client_call(s->admin, "DELETE", "/v1/c/products/sim-product", s->admin_token, NULL, &a);
        client_answer_clear(&a);
    }
    partners_disable(s);
    if (s->fails && !all)
        printf("%s: FAIL (%d check%s failed)\n", s->o.scenario, s->fails, s->fails == 1 ? "" : "s");
    else if (!all)
        printf("%s: PASS\n", s->o.scenario);
    fflush(stdout);
    rc = s->fails ? 1 : 0;
    client_http_free(s->admin);
    client_http_free(s->part);
    client_drain(&s->loop);
    uv_loop_close(&s->loop);
    sodium_memzero(s->o.password, sizeof s->o.password);
    free(s->partners);
    free(s);
    return rc;
}
