/*
 * log.h: structured logs on stderr, one JSON object per line.
 *
 * log_msg may be called from any thread; each line goes out in one
 * write(2). Access lines (one per HTTP request) come from the loop thread
 * and are buffered and written once per loop iteration, so that logging
 * every request costs one system call per batch, not per request.
 * Nothing secret is ever logged: no bodies, no tokens, no query strings.
 *
 * A command on a terminal may keep a status line at the foot of stderr
 * (livedb import's progress bar). While it is shown, every line written
 * here (log_msg, log_text) clears it, goes out, and draws it again below,
 * in one write(2) under a lock, so that a line from any thread lands on a
 * line of its own and the status line stays last.
 */
#ifndef LIVEDB_LOG_H
#define LIVEDB_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One line of plain text (not JSON), without its newline: a command's own
 * report on stderr, above the status line. Any thread. */
void log_text(const char *line);

/* Shows text (one line, no newline) as the status line, drawn over the one
 * before; NULL ends it: its last text stays, on a line of its own. Any
 * thread, but one command draws it; only on a terminal. */
void log_status(const char *text);

/* Access log: start flushing on loop; enabled=false drops access lines. */
void log_access_start(uv_loop_t *loop, bool enabled);
bool log_access_enabled(void);
/* Appends one complete line (without the newline). Loop thread only. */
void log_access_line(const char *line, size_t n);
void log_access_stop(void);

#endif
