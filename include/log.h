/* Logging: one line per event, "ts level role[pid] msg key=value...", to stderr, a file or syslog. */
#ifndef SFU_LOG_H
#define SFU_LOG_H

#include <stdarg.h>

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Sets where lines go. file may be NULL (stderr); use_syslog wins over file.
 * Returns 0 or -errno (open() of the file failed). */
int log_open(const char *file, int use_syslog);
/* Reopens the log file (SIGUSR1, after logrotate moved it). 0 or -errno. */
int log_reopen(void);
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

/* Logs at error level and exits 1. Only for start-up failures. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
