/*
 * test_args.c: util/args.c, options read from arguments by a table: every
 * kind of option, and each way an argument list can be wrong.
 */
#include <stdio.h>
#include <string.h>

#include "../../src/util/args.h"
#include "harness.h"

typedef struct opts {
    bool demo, log;
    const char *data, *file;
    int keep;
    int64_t big;
    double secs, rate;
    int odd;
} opts;

static int odd_only(const char *v, void *to, char *why, size_t n)
{
    if (strcmp(v, "2") == 0) {
        snprintf(why, n, "two is even");
        return -1;
    }
    if (strcmp(v, "3") != 0)
        return -1; /* the table's takes says why */
    *(int *)to = 3;
    return 0;
}

/* Parses the words of line (split at spaces) into *o; why is what failed. */
static int parse(const char *line, opts *o, char *why, size_t n)
{
    *o = (opts){.log = true, .data = "./data", .keep = 10};
    const arg_opt table[] = {
        {"--demo", ARG_SET, .to = &o->demo},
        {"--no-log", ARG_CLEAR, .to = &o->log},
        {"--data", ARG_STR, .to = &o->data},
        {"--keep", ARG_INT, .to = &o->keep, 0, 100, "a number from 0 to 100"},
        {"--big", ARG_I64, .to = &o->big, 1, INT64_MAX, "a number >= 1"},
        {"--secs", ARG_SECS, .to = &o->secs, 1, 60, "seconds from 1 to 60"},
        {"--rate", ARG_REAL, .to = &o->rate, .min = 0.5, .max = 2, .takes = "0.5 to 2"},
        {"--odd", ARG_FN, .to = &o->odd, .fn = odd_only, .takes = "3"},
        {0},
    };
    static char words[256];
    char *argv[16];
    int argc = 0;
    snprintf(words, sizeof words, "%s", line);
    for (char *w = strtok(words, " "); w && argc < 16; w = strtok(NULL, " "))
        argv[argc++] = w;
    return args_parse(argc, argv, &(arg_spec){table, &o->file, "FILE"}, why, n);
}

TEST(args_every_kind)
{
    opts o;
    char why[128];
    CHECK_INT(parse("--demo --no-log --data /d --keep 0 --big 9000000000 --secs 60 --rate 1.5 "
                    "--odd 3 f.json",
                    &o, why, sizeof why),
              0);
    CHECK(o.demo);
    CHECK(!o.log);
    CHECK_STR(o.data, "/d");
    CHECK_INT(o.keep, 0);
    CHECK(o.big == 9000000000);
    CHECK(o.secs == 60.0);
    CHECK(o.rate == 1.5);
    CHECK_INT(o.odd, 3);
    CHECK_STR(o.file, "f.json");
    /* Nothing given: the defaults stand. */
    CHECK_INT(parse("", &o, why, sizeof why), 0);
    CHECK(!o.demo && o.log && o.keep == 10 && o.file == NULL);
    CHECK_STR(o.data, "./data");
}

TEST(args_what_is_wrong)
{
    static const struct {
        const char *line, *why;
    } cases[] = {
        {"--nope", "unknown option --nope"},
        {"--data", "--data needs a value"},
        {"--keep 101", "--keep takes a number from 0 to 100, not '101'"},
        {"--keep -1", "--keep takes a number from 0 to 100, not '-1'"},
        {"--keep 1x", "--keep takes a number from 0 to 100, not '1x'"},
        {"--big 0", "--big takes a number >= 1, not '0'"},
        {"--big 99999999999999999999", "--big takes a number >= 1, not '99999999999999999999'"},
        {"--secs 1.5", "--secs takes seconds from 1 to 60, not '1.5'"},
        {"--rate 3", "--rate takes 0.5 to 2, not '3'"},
        {"--rate nan", "--rate takes 0.5 to 2, not 'nan'"},
        {"--rate 1e999", "--rate takes 0.5 to 2, not '1e999'"},
        {"--odd 4", "--odd takes 3, not '4'"},
        {"--odd 2", "two is even"},
        {"a b", "one FILE only, not also 'b'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        opts o;
        char why[128];
        CHECK_INT(parse(cases[i].line, &o, why, sizeof why), -1);
        CHECK_STR(why, cases[i].why);
    }
}

TEST(args_no_positional_taken)
{
    const char *data = NULL;
    const arg_opt table[] = {{"--data", ARG_STR, .to = &data}, {0}};
    char *argv[] = {"stray"};
    char why[64];
    CHECK_INT(args_parse(1, argv, &(arg_spec){.opts = table}, why, sizeof why), -1);
    CHECK_STR(why, "unexpected argument 'stray'");
}
