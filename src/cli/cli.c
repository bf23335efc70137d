/*
 * cli.c: what the commands share: the bad-usage and failure lines, and
 * numbers from arguments.
 */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../store/pg.h"
#include "../store/store.h"
#include "../util/util.h"

int cli_bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "livedb: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(run 'livedb help' for the options)\n");
    return 2;
}

int cli_args(int argc, char **argv, const arg_spec *spec, const char *usage)
{
    char why[512];
    if (args_parse(argc, argv, spec, why, sizeof why) == 0)
        return 0;
    if (usage)
        return cli_bad_usage("%s (%s)", why, usage);
    return cli_bad_usage("%s", why);
}

int cli_fail(err_t *e, const char *what)
{
    fprintf(stderr, "livedb: %s%s%s\n", what ? what : "", what ? ": " : "", e->msg);
    err_clear(e);
    return 1;
}

int cli_parse_num(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    int64_t v;
    if (parse_i64(s, strlen(s), &v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_schema(const char *v, void *to, char *why, size_t n)
{
    if (!pg_schema_name_ok(v))
        return -1;
    *(const char **)to = v;
    return 0;
}

cli_where cli_where_default(void)
{
    const char *pg = getenv("LIVEDB_POSTGRES");
    return (cli_where){.data = "./data", .postgres = pg && pg[0] ? pg : NULL,
                       .pg_schema = "livedb"};
}

void cli_where_store(const cli_where *w, store_opts *so)
{
    bool pg = w->postgres && w->postgres[0];
    so->dir = pg ? NULL : w->data;
    so->postgres = pg ? w->postgres : NULL;
    so->pg_schema = w->pg_schema;
}

bool cli_has_database(const char *dir)
{
    buf_t db = {0};
    buf_printf(&db, "%s/livedb.db", dir);
    FILE *probe = fopen(db.p, "rb");
    buf_free(&db);
    if (!probe) {
        fprintf(stderr, "livedb: no database in %s (is --data right?)\n", dir);
        return false;
    }
    fclose(probe);
    return true;
}
