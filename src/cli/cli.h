/*
 * cli.h: the commands of the command line, one file each; main.c holds
 * the table that names them. Each takes the arguments after its name and
 * returns the process's exit status: 0 done, 1 failed, 2 bad usage.
 */
#ifndef LIVEDB_CLI_H
#define LIVEDB_CLI_H

#include <stdint.h>

#include "../core/txn.h"
#include "../util/args.h"

#define LIVEDB_VERSION "0.1.0"

struct app;

int cli_serve(int argc, char **argv);     /* serve.c */
int cli_export(int argc, char **argv);    /* export.c */
int cli_import(int argc, char **argv);    /* import.c */
int cli_account(int argc, char **argv);   /* account.c */
int cli_activity(int argc, char **argv);  /* activity.c */
int cli_verify(int argc, char **argv);    /* activity.c */
/* backup, backups, restore: backups.h */

/* "livedb: MESSAGE" and where to look, on stderr; returns 2. */
__attribute__((format(printf, 1, 2))) int cli_bad_usage(const char *fmt, ...);
/* The command's options by spec (util/args.h): 0, or 2 after the bad-usage
 * line (with usage, the command's own, after what is wrong). */
int cli_args(int argc, char **argv, const arg_spec *spec, const char *usage);
/* "livedb: [WHAT: ]MESSAGE" of e on stderr, e cleared; returns 1. */
int cli_fail(err_t *e, const char *what);
/* A whole decimal number from lo to hi, or -1. */
int cli_parse_num(const char *s, int64_t lo, int64_t hi, int64_t *out);
/* An ARG_FN parser for --pg-schema (to: a const char *). */
int cli_parse_schema(const char *v, void *to, char *why, size_t n);

/* Where a command's data is: --data DIR (SQLite), or --postgres CONNINFO
 * (default $LIVEDB_POSTGRES) and --pg-schema NAME. CLI_WHERE_OPTS(w) are
 * the three entries of an arg_opt table; cli_where_store fills a store's
 * options from them (over PostgreSQL without a directory: a command runs
 * beside the nodes, whose directories are theirs). */
typedef struct cli_where {
    const char *data, *postgres, *pg_schema;
} cli_where;
#define CLI_WHERE_OPTS(w)                                                                   \
    {"--data", ARG_STR, .to = &(w).data}, {"--postgres", ARG_STR, .to = &(w).postgres},     \
    {"--pg-schema", ARG_FN, .to = &(w).pg_schema, .fn = cli_parse_schema,                   \
     .takes = "a schema name: [a-z_][a-z0-9_]*, up to 63 bytes"}
cli_where cli_where_default(void);
struct store_opts;
void cli_where_store(const cli_where *w, struct store_opts *so);
/* Whether DIR/livedb.db is there (else says so on stderr). */
bool cli_has_database(const char *dir);

/* Fills ops[0..1]: the _accounts document and the password hash. */
void cli_account_ops(wop *ops, const char *id, const char *email, const char *role,
                     const char *name, const char *hash);
/* serve --demo, into an empty data directory only (demo.c). */
void cli_load_demo(struct app *app);

#endif
