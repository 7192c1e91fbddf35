/* Logging: one line per event, "ts level role[pid] msg key=value...", to stderr, a file or syslog. */
#ifndef SFU_LOG_H
#define SFU_LOG_H

#include <stdarg.h>
#include <stdint.h>
#include <sys/types.h>

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Sets where lines go. file may be NULL (stderr); use_syslog wins over file.
 * The file is opened with safefile_open_append: a symbolic link, a hard link,
 * anything but a regular file, or a file of another user than the effective
 * one or the log_set_owner one is refused. Returns 0 or -errno (describe it
 * with safefile_strerror). */
int log_open(const char *file, int use_syslog);
/* Reopens the log file the same way (SIGUSR1, after logrotate moved it); on
 * failure the old file stays in use. 0 or -errno. */
int log_reopen(void);
/* The user the service runs as after dropping privileges: a log file it owns
 * is accepted, and one created by root is given to it (so that it can reopen
 * it after a rotation). (uid_t)-1 (the default) for none. */
void log_set_owner(uid_t owner);
void log_close(void);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* The role printed on every line: "master", "worker", "reaper", "mock"... */
void log_set_role(const char *role);
/* Parses "error", "warn", "info", "debug". 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level level);

void log_write(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_write(LOG_LEVEL_DEBUG, __VA_ARGS__)

/*
 * Lines an unauthenticated client or a failing SFU can cause once per request
 * (a rejected token, a malformed request, a failed upstream attempt) would let
 * a flood of such requests flood the log too. Lines of authenticated state
 * changes (an SFU registered or signed off) are not limited: each happens once
 * per SFU and operators audit them.
 * Such a call site is one cause: it writes at most LOG_LIMIT_BURST lines per
 * LOG_LIMIT_WINDOW_MS per process, counts the rest, and the first line of a
 * later window is preceded by one summary, "<cause>: suppressed N similar
 * lines in the last T s" (log_limit_flush() writes the summary of a cause that
 * went quiet). A line below the log level neither counts nor is written.
 */
#define LOG_LIMIT_BURST 20
#define LOG_LIMIT_WINDOW_MS 1000

/* One cause's state; zero-initialised except cause (see log_limited). */
struct log_limit {
	const char *cause; /* names the lines in the summary: "channel: rejected tokens" */
	enum log_level level; /* of the lines dropped, for their summary */
	int64_t window_ms; /* start of the current window (clock_ms), 0 before the first line */
	uint32_t lines; /* lines written in the current window */
	uint64_t dropped; /* lines dropped since the last summary */
	int64_t first_dropped_ms; /* when the first of them was */
	struct log_limit *next; /* in the process's list of causes that dropped lines */
	int listed;
};

/*
 * The decision for one line of cause l at now_ms: 1 to write it, 0 to drop it.
 * When a summary is due before the line, *summary gets the number of lines
 * dropped and *span_ms the time since the first of them (else *summary is 0).
 */
int log_limit_admit(struct log_limit *l, int64_t now_ms, uint64_t *summary, int64_t *span_ms);
/* A line of cause l, written or counted as log_limit_admit says. */
void log_limited_write(struct log_limit *l, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Writes the summary of every cause whose window is over (all: of every cause)
 * and that dropped lines. A process with limited causes calls it about once a
 * window, and with all at exit, so no count is lost when a flood stops. */
void log_limit_flush(int all);

/* One limited call site: what is a string literal naming its lines (the cause). */
#define log_limited(level, what, ...)                                        \
	do {                                                                 \
		static struct log_limit log_limit_site_ = { .cause = (what) }; \
		log_limited_write(&log_limit_site_, (level), __VA_ARGS__);    \
	} while (0)
#define log_warn_limited(what, ...) log_limited(LOG_LEVEL_WARN, what, __VA_ARGS__)
#define log_info_limited(what, ...) log_limited(LOG_LEVEL_INFO, what, __VA_ARGS__)
#define log_debug_limited(what, ...) log_limited(LOG_LEVEL_DEBUG, what, __VA_ARGS__)

/* Logs at error level and exits 1. Only for start-up failures. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
