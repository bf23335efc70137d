/*
 * import.c: livedb import FILE: the progress bar and the refused records
 * (store/import.c does the work).
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "../core/apps.h"
#include "../core/doc.h"
#include "../store/import.h"
#include "../store/store.h"
#include "../util/log.h"

/* livedb import: store/import.c does the work; this draws the progress bar
 * on a terminal and prints each refused record with where it was. The bar
 * is the log's status line (util/log.h), so that the refused records and
 * the log lines (from the writer thread too) scroll above it. */
typedef struct import_view {
    bool tty;
    bool finished;
    import_counts n;
} import_view;

static void import_bad(void *ctx, const char *col, size_t index, const char *id,
                       const char *reason, const json_t *fields)
{
    /* A schema's refusal: the fields and why say it all. */
    buf_t why = {0}, line = {0};
    for (size_t i = 0; i < json_array_size(fields); i++) {
        json_t *d = json_array_get(fields, i);
        buf_printf(&why, "%s%s %s", i ? "; " : "",
                   json_string_value(json_object_get(d, "field")),
                   json_string_value(json_object_get(d, "reason")));
    }
    buf_printf(&line, "livedb: %s[%zu]%s%s%s: %s", col, index, id ? " (id " : "", id ? id : "",
               id ? ")" : "", why.p ? why.p : reason);
    log_text(line.p);
    buf_free(&line);
    buf_free(&why);
}

static void import_progress(void *ctx, const import_counts *n)
{
    import_view *ci = ctx;
    if (!ci->tty)
        return;
    int width = 40, filled = n->total ? (int)(width * n->done / n->total) : width;
    char bar[96];
    snprintf(bar, sizeof bar, "[%.*s%*s] %ld/%ld", filled,
             "########################################", width - filled, "", n->done, n->total);
    log_status(bar);
}

static void import_done(void *ctx, const import_counts *n)
{
    import_view *ci = ctx;
    ci->n = *n;
    ci->finished = true;
    log_status(NULL);
}

int cli_import(int argc, char **argv)
{
    const char *file = NULL, *only = NULL, *apps = "wholesale,studio";
    cli_where w = cli_where_default();
    int64_t batch = 500;
    bool dry = false;
    const arg_opt opts[] = {
        {"--dry-run", ARG_SET, .to = &dry},
        CLI_WHERE_OPTS(w),
        {"--collection", ARG_STR, .to = &only},
        {"--apps", ARG_STR, .to = &apps},
        {"--batch", ARG_I64, .to = &batch, 1, 100000, "a number from 1 to 100000"},
        {0},
    };
    if (cli_args(argc, argv, &(arg_spec){opts, &file, "FILE"}, NULL))
        return 2;
    if (!file)
        return cli_bad_usage("%s", "import needs a FILE");
    err_t e = {0};
    if (only && doc_check_collection(only, strlen(only), &e)) {
        fprintf(stderr, "livedb: --collection %s: %s\n", only, e.msg);
        err_clear(&e);
        return 2;
    }
    json_error_t je;
    json_t *root = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        fprintf(stderr, "livedb: %s: line %d column %d: %s\n", file, je.line, je.column, je.text);
        return 1;
    }
    if (json_is_array(root) && !only) {
        fprintf(stderr, "livedb: %s is a bare array: say which collection with --collection\n",
                file);
        json_decref(root);
        return 2;
    }
    /* Imported documents meet the apps' schemas like every other write. */
    if (apps_load(apps, &e)) {
        fprintf(stderr, "livedb: %s\n", e.msg);
        err_clear(&e);
        json_decref(root);
        return 2;
    }
    import_opts io = {.only = only, .window = (int)batch, .dry_run = dry};
    io.actor.system = true;
    snprintf(io.actor.remote, sizeof io.actor.remote, "import");
    /* --collection naming a collection the file lacks is bad usage. */
    bool no_such = only && json_is_object(root) && !json_object_get(root, only);
    importer *im = import_prepare(root, &io, &e);
    if (!im) {
        fprintf(stderr, "livedb: %s: %s\n", file, e.msg);
        err_clear(&e);
        apps_free();
        return no_such ? 2 : 1;
    }
    uv_loop_t loop;
    store_t *store = NULL;
    if (!dry) {
        uv_loop_init(&loop);
        store_opts so = {.retain_changes = 1000000, .readers = 1, .auto_index_max = 0};
        cli_where_store(&w, &so);
        if (store_open(&store, &loop, &so, &e)) {
            fprintf(stderr, "livedb: %s\n", e.msg);
            err_clear(&e);
            uv_loop_close(&loop);
            import_free(im);
            apps_free();
            return 1;
        }
    }
    import_view ci = {.tty = isatty(STDERR_FILENO)};
    import_cb cb = {.bad = import_bad, .progress = import_progress, .done = import_done};
    /* The bar from the start, so that what the checks refuse goes above it. */
    import_progress(&ci, &(import_counts){.total = import_total(im)});
    import_run(im, store, &cb, &ci);
    if (!dry) {
        while (!ci.finished)
            uv_run(&loop, UV_RUN_ONCE);
        store_drain(store, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        store_close(store);
        uv_loop_close(&loop);
    }
    apps_free();
    if (dry)
        printf("livedb: dry run: %ld records, %ld good, %ld bad; nothing written\n", ci.n.total,
               ci.n.total - ci.n.bad, ci.n.bad);
    else
        printf("livedb: imported %ld records: %ld created, %ld updated, %ld unchanged, %ld bad\n",
               ci.n.total, ci.n.created, ci.n.updated, ci.n.unchanged, ci.n.bad);
    return ci.n.bad ? 1 : 0;
}
