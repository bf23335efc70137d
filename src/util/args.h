/*
 * args.h: a command's options read from its arguments by a table, so that
 * each option is one line: its name, where its value goes and what it
 * takes. Unknown options, missing and bad values and stray arguments come
 * back as one sentence for the user; the caller prints it its own way.
 *
 *   int64_t keep = 10;
 *   const char *data = "./data";
 *   const arg_opt opts[] = {
 *       {"--data", ARG_STR, .to = &data},
 *       {"--keep", ARG_I64, .to = &keep, 0, 100000, "a number from 0 to 100000"},
 *       {0},
 *   };
 *   char why[256];
 *   if (args_parse(argc, argv, &(arg_spec){.opts = opts}, why, sizeof why)) ...
 */
#ifndef LIVEDB_ARGS_H
#define LIVEDB_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum arg_kind {
    ARG_SET,   /* a flag: *(bool *)to = true */
    ARG_CLEAR, /* a flag: *(bool *)to = false */
    ARG_STR,   /* *(const char **)to = the value (argv's own string) */
    ARG_INT,   /* *(int *)to: a whole number from lo to hi */
    ARG_I64,   /* *(int64_t *)to: likewise */
    ARG_SECS,  /* *(double *)to: whole seconds from lo to hi */
    ARG_REAL,  /* *(double *)to: a number from min to max */
    ARG_FN,    /* fn(value, to, why, n): 0, or -1 (with why, or its takes) */
} arg_kind;

typedef struct arg_opt {
    const char *name; /* "--data" */
    arg_kind kind;
    void *to;
    int64_t lo, hi;    /* ARG_INT, ARG_I64, ARG_SECS */
    const char *takes; /* a good value, for "NAME takes TAKES, not 'VALUE'" */
    int (*fn)(const char *value, void *to, char *why, size_t n);
    double min, max; /* ARG_REAL */
} arg_opt;

typedef struct arg_spec {
    const arg_opt *opts;  /* ends with {0} */
    const char **arg;     /* where the one argument that is no option goes; NULL: none */
    const char *arg_name; /* what it is ("FILE"), for "one FILE only" */
} arg_spec;

/* Reads argv[0..argc) by spec: 0, or -1 with why (what is wrong). */
int args_parse(int argc, char **argv, const arg_spec *spec, char *why, size_t n);

#endif
