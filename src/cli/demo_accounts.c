/*
 * demo_accounts.c: DIR/demo-accounts.json, the accounts `serve --demo`
 * made (see demo_accounts.h).
 */
#include "demo_accounts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/util.h"

int demo_accounts_save(const char *dir, const json_t *accounts, char *err, size_t errlen)
{
    buf_t path = {0}, tmp = {0};
    buf_printf(&path, "%s/%s", dir, DEMO_ACCOUNTS_FILE);
    buf_printf(&tmp, "%s.tmp", path.p);
    char *text = json_dumps(accounts, JSON_INDENT(1));
    int rc = -1;
    int fd = open(tmp.p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot write %s: %s", tmp.p, strerror(errno));
        goto out;
    }
    size_t len = strlen(text);
    /* fchmod: a file left over by a crash may have been made with another mode. */
    if (fchmod(fd, 0600) != 0 || write(fd, text, len) != (ssize_t)len ||
        write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", tmp.p, strerror(errno));
        close(fd);
        unlink(tmp.p);
        goto out;
    }
    close(fd);
    if (rename(tmp.p, path.p) != 0) {
        snprintf(err, errlen, "cannot rename %s: %s", tmp.p, strerror(errno));
        unlink(tmp.p);
        goto out;
    }
    rc = 0;
out:
    free(text);
    buf_free(&tmp);
    buf_free(&path);
    return rc;
}

