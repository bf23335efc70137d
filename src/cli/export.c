/*
 * export.c: livedb export [--data DIR] [--out FILE]: every collection as
 * one JSON object (store/offline.c reads it); FILE is written whole or
 * not at all.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../store/store.h"

int cli_export(int argc, char **argv)
{
    const char *out = NULL;
    cli_where w = cli_where_default();
    const arg_opt opts[] = {CLI_WHERE_OPTS(w), {"--out", ARG_STR, .to = &out}, {0}};
    if (cli_args(argc, argv, &(arg_spec){.opts = opts}, NULL))
        return 2;
    store_opts where = {0};
    cli_where_store(&w, &where);
    if (!where.postgres && !cli_has_database(w.data))
        return 1;
    /* Into a temporary file, renamed over FILE only when whole. */
    buf_t tmp = {0};
    FILE *f = stdout;
    if (out) {
        buf_printf(&tmp, "%s.tmp", out);
        f = fopen(tmp.p, "wb");
        if (!f) {
            fprintf(stderr, "livedb: cannot write %s: %s\n", tmp.p, strerror(errno));
            buf_free(&tmp);
            return 1;
        }
    }
    err_t e = {0};
    int rc = store_export(&where, f, &e);
    if (rc == 0 && (fflush(f) != 0 || ferror(f)))
        rc = err_set(&e, E_INTERNAL, "write error: %s", strerror(errno));
    if (out) {
        if (rc == 0 && fsync(fileno(f)) != 0)
            rc = err_set(&e, E_INTERNAL, "fsync: %s", strerror(errno));
        fclose(f);
        if (rc == 0 && rename(tmp.p, out) != 0)
            rc = err_set(&e, E_INTERNAL, "rename to %s: %s", out, strerror(errno));
        if (rc)
            unlink(tmp.p);
    }
    buf_free(&tmp);
    if (rc)
        return cli_fail(&e, "export failed");
    return 0;
}
