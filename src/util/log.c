/*
 * log.c: see log.h.
 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w <= 0)
            return; /* stderr gone: nothing better to do */
        p += w;
        n -= (size_t)w;
    }
}

/* ------------------------------------------------------------------ lines */

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static bool status_on; /* a status line is shown; it and status: under out_lock */
static buf_t status;

/* One whole line (with its newline) to stderr, above the status line. */
static void put_line(const char *p, size_t n)
{
    pthread_mutex_lock(&out_lock);
    if (!status_on) {
        write_all(p, n);
    } else {
        buf_t b = {0};
        buf_puts(&b, "\r\033[K");
        buf_put(&b, p, n);
        buf_putc(&b, '\r');
        buf_put(&b, status.p, status.len);
        write_all(b.p, b.len);
        buf_free(&b);
    }
    pthread_mutex_unlock(&out_lock);
}

void log_text(const char *line)
{
    buf_t b = {0};
    buf_puts(&b, line);
    buf_putc(&b, '\n');
    put_line(b.p, b.len);
    buf_free(&b);
}

void log_status(const char *text)
{
    pthread_mutex_lock(&out_lock);
    if (text) {
        size_t n = strlen(text);
        buf_t b = {0};
        buf_putc(&b, '\r');
        buf_put(&b, text, n);
        if (status_on && n < status.len) /* shorter: the rest of the old one goes */
            buf_puts(&b, "\033[K");
        write_all(b.p, b.len);
        buf_free(&b);
        status.len = 0;
        buf_put(&status, text, n);
        status_on = true;
    } else if (status_on) {
        write_all("\n", 1);
        status_on = false;
        buf_free(&status);
    }
    pthread_mutex_unlock(&out_lock);
}

/* ------------------------------------------------------------------ messages */

void log_msg(int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char at[TIME_RFC3339_LEN + 1];
    time_format_rfc3339(time_now_ms(), at);
    buf_t b = {0};
    buf_printf(&b, "{\"at\":\"%s\",\"level\":\"%s\",\"msg\":", at, level_names[level]);
    buf_put_json_str(&b, msg, strlen(msg));
    buf_puts(&b, "}\n");
    put_line(b.p, b.len);
    buf_free(&b);
}

/* ------------------------------------------------------------------ access */

static uv_check_t flusher;
static bool access_on;
static bool started;
static buf_t pending;

static void flush(void)
{
    if (pending.len) {
        write_all(pending.p, pending.len);
        pending.len = 0;
    }
}

static void on_check(uv_check_t *h)
{
    (void)h;
    flush();
}

void log_access_start(uv_loop_t *loop, bool enabled)
{
    access_on = enabled;
    if (!enabled)
        return;
    uv_check_init(loop, &flusher);
    uv_check_start(&flusher, on_check);
    uv_unref((uv_handle_t *)&flusher);
    started = true;
}

bool log_access_enabled(void) { return access_on; }

void log_access_line(const char *line, size_t n)
{
    if (!access_on)
        return;
    buf_put(&pending, line, n);
    buf_putc(&pending, '\n');
    if (pending.len > 64 * 1024)
        flush();
}

void log_access_stop(void)
{
    flush();
    buf_free(&pending);
    if (started) {
        uv_close((uv_handle_t *)&flusher, NULL);
        started = false;
    }
    access_on = false;
}
