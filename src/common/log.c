/* Logging: one line per event with timestamp, level, role and pid, to stderr, a file or syslog. */
#include "log.h"

#include "safefile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

static enum log_level log_level = LOG_LEVEL_INFO;
static int log_fd = STDERR_FILENO;
static int log_syslog;
static char log_path[4096];
static char log_role[16] = "main";
static uid_t log_owner = (uid_t)-1;

static const char *const log_names[] = { "error", "warn", "info", "debug" };

int log_open(const char *file, int use_syslog)
{
	log_close();
	if (use_syslog) {
		openlog("sfu-gateway", LOG_PID | LOG_NDELAY, LOG_DAEMON);
		log_syslog = 1;
		return 0;
	}
	if (file == NULL || file[0] == '\0') {
		log_path[0] = '\0';
		return 0;
	}
	if (strlen(file) >= sizeof(log_path))
		return -ENAMETOOLONG;
	snprintf(log_path, sizeof(log_path), "%s", file);
	return log_reopen();
}

int log_reopen(void)
{
	int fd;

	if (log_syslog || log_path[0] == '\0')
		return 0;
	/* O_APPEND keeps lines from several processes whole: each line is one write().
	 * The directory may belong to the service user, who could plant a link to
	 * a file only root may write: safefile refuses links and foreign files. */
	fd = safefile_open_append(log_path, 0640, log_owner);
	if (fd < 0)
		return fd;
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = fd;
	return 0;
}

void log_set_owner(uid_t owner)
{
	log_owner = owner;
}

void log_close(void)
{
	if (log_syslog)
		closelog();
	log_syslog = 0;
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = STDERR_FILENO;
}

void log_set_level(enum log_level level)
{
	log_level = level;
}

enum log_level log_get_level(void)
{
	return log_level;
}

void log_set_role(const char *role)
{
	snprintf(log_role, sizeof(log_role), "%s", role);
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
		if (strcasecmp(s, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "warning") == 0) {
		*out = LOG_LEVEL_WARN;
		return 0;
	}
	return -EINVAL;
}

const char *log_level_name(enum log_level level)
{
	return (unsigned)level < 4 ? log_names[level] : "?";
}

static void log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
	char line[2048];
	int n = 0, m;
	struct timespec ts;
	struct tm tm;

	if (log_syslog) {
		static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
		char msg[1900];

		vsnprintf(msg, sizeof(msg), fmt, ap);
		syslog(prio[level], "%s[%d] %s %s", log_role, (int)getpid(), log_names[level], msg);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s[%d] ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		     tm.tm_sec, ts.tv_nsec / 1000000, log_names[level], log_role, (int)getpid());
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	/* Newlines inside a message would forge extra log lines: flatten them. */
	for (int i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[n++] = '\n';
	/* One write() per line so lines from several processes never interleave. */
	(void)!write(log_fd, line, (size_t)n);
}

void log_write(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (level > log_level)
		return;
	va_start(ap, fmt);
	log_vwrite(level, fmt, ap);
	va_end(ap);
}

/* The causes that dropped lines since their last summary (this process's). */
static struct log_limit *log_limit_list;

int log_limit_admit(struct log_limit *l, int64_t now_ms, uint64_t *summary, int64_t *span_ms)
{
	*summary = 0;
	*span_ms = 0;
	if (l->window_ms == 0 || now_ms - l->window_ms >= LOG_LIMIT_WINDOW_MS) {
		/* A new window: what the earlier ones dropped is summed up first. */
		l->window_ms = now_ms;
		l->lines = 0;
		if (l->dropped > 0) {
			*summary = l->dropped;
			*span_ms = now_ms - l->first_dropped_ms;
			l->dropped = 0;
		}
	}
	if (l->lines < LOG_LIMIT_BURST) {
		l->lines++;
		return 1;
	}
	if (l->dropped++ == 0)
		l->first_dropped_ms = now_ms;
	if (!l->listed) {
		l->listed = 1;
		l->next = log_limit_list;
		log_limit_list = l;
	}
	return 0;
}

static void log_limit_summary(const struct log_limit *l, enum log_level level, uint64_t n,
			      int64_t span_ms)
{
	log_write(level, "%s: suppressed %llu similar lines in the last %.1f s", l->cause,
		  (unsigned long long)n, (double)(span_ms > 0 ? span_ms : 0) / 1000.0);
}

void log_limited_write(struct log_limit *l, enum log_level level, const char *fmt, ...)
{
	uint64_t summary;
	int64_t span;
	va_list ap;

	if (level > log_level)
		return;
	l->level = level;
	if (!log_limit_admit(l, clock_ms(), &summary, &span))
		return;
	if (summary > 0)
		log_limit_summary(l, level, summary, span);
	va_start(ap, fmt);
	log_vwrite(level, fmt, ap);
	va_end(ap);
}

void log_limit_flush(int all)
{
	int64_t now = clock_ms();
	struct log_limit **pp = &log_limit_list;

	while (*pp != NULL) {
		struct log_limit *l = *pp;

		if (l->dropped > 0 && (all || now - l->window_ms >= LOG_LIMIT_WINDOW_MS)) {
			log_limit_summary(l, l->level, l->dropped, now - l->first_dropped_ms);
			l->dropped = 0;
		}
		if (l->dropped == 0) {
			/* Nothing to sum up: off the list until it drops lines again. */
			*pp = l->next;
			l->next = NULL;
			l->listed = 0;
			continue;
		}
		pp = &l->next;
	}
}

void fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, fmt, ap);
	va_end(ap);
	/* A start-up failure must reach the operator at the terminal even when
	 * lines go to a file or syslog. */
	if (log_fd != STDERR_FILENO || log_syslog) {
		char msg[1024];

		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		fprintf(stderr, "sfu-gateway: %s\n", msg);
	}
	exit(1);
}
