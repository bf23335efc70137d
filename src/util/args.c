/*
 * args.c: options from a command's arguments, by a table (see args.h).
 */
#include "args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const arg_opt *find(const arg_opt *opts, const char *name)
{
    for (const arg_opt *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

/* Stores v by o: 0, or -1 for a value o does not take. */
static int store(const arg_opt *o, const char *v, char *why, size_t n)
{
    int64_t x;
    bool number = o->kind == ARG_INT || o->kind == ARG_I64 || o->kind == ARG_SECS;
    if (number && (parse_i64(v, strlen(v), &x) || x < o->lo || x > o->hi))
        return -1;
    switch (o->kind) {
    case ARG_STR:
        *(const char **)o->to = v;
        return 0;
    case ARG_INT:
        *(int *)o->to = (int)x;
        return 0;
    case ARG_I64:
        *(int64_t *)o->to = x;
        return 0;
    case ARG_SECS:
        *(double *)o->to = (double)x;
        return 0;
    case ARG_REAL: {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (errno || end == v || *end || !(d >= o->min && d <= o->max))
            return -1;
        *(double *)o->to = d;
        return 0;
    }
    case ARG_FN:
        return o->fn(v, o->to, why, n) ? -1 : 0;
    default:
        return -1; /* flags take no value */
    }
}

int args_parse(int argc, char **argv, const arg_spec *spec, char *why, size_t n)
{
    why[0] = '\0';
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            if (!spec->arg) {
                snprintf(why, n, "unexpected argument '%s'", a);
                return -1;
            }
            if (*spec->arg) {
                snprintf(why, n, "one %s only, not also '%s'", spec->arg_name, a);
                return -1;
            }
            *spec->arg = a;
            continue;
        }
        const arg_opt *o = find(spec->opts, a);
        if (!o) {
            snprintf(why, n, "unknown option %s", a);
            return -1;
        }
        if (o->kind == ARG_SET || o->kind == ARG_CLEAR) {
            *(bool *)o->to = o->kind == ARG_SET;
            continue;
        }
        if (i + 1 >= argc) {
            snprintf(why, n, "%s needs a value", a);
            return -1;
        }
        const char *v = argv[++i];
        if (store(o, v, why, n)) {
            if (!why[0])
                snprintf(why, n, "%s takes %s, not '%s'", a, o->takes ? o->takes : "a value", v);
            return -1;
        }
    }
    return 0;
}
