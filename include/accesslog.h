/* Access log: one JSON line per answered request, buffered per process, written in whole lines. */
#ifndef SFU_ACCESSLOG_H
#define SFU_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * The line of one response, as accesslog_format writes it (JSON lines, one
 * object per line, keys always in this order):
 *   {"time":"2024-05-01T12:00:00.123Z","client":"127.0.0.1","method":"GET",
 *    "path":"/v1/channel?webRTC=false","status":200,"sfu":"http://10.0.0.5:8070",
 *    "attempts":1,"upstream_ms":3.125,"total_ms":3.402}
 * time: when the response was sent (UTC); client: the socket peer; method:
 * null when no request line was parsed (a 400 or 408); path: the request
 * target as received, except that the value of a query parameter whose name
 * says it is secret (token, key, secret, password, auth, signature, jwt...)
 * reads REDACTED, and a target over ACCESSLOG_PATH_MAX bytes is cut and ends
 * in "..."; the Authorization header is never read. sfu: the SFU that
 * answered or was tried last, null when none was; attempts: SFUs tried;
 * upstream_ms: time spent waiting on SFUs, all attempts together, null when
 * none was tried; total_ms: from the request's first byte to its response.
 */
#define ACCESSLOG_PATH_MAX 1024
/* What a process buffers before it writes, and how often it writes anyway. */
#define ACCESSLOG_BUFFER (64 * 1024)
#define ACCESSLOG_FLUSH_MS 500

struct accesslog_entry {
	int64_t wall_ms; /* CLOCK_REALTIME ms of the response */
	const char *client;
	int method; /* llhttp method, or -1 when none was parsed */
	const char *target; /* path?query as received */
	size_t target_len;
	int status;
	const char *sfu; /* NULL when no SFU was tried */
	unsigned attempts;
	int64_t upstream_us; /* meaningful only with sfu */
	int64_t total_us;
};

/*
 * Opens path for appending (the master, at start): the rules of the error
 * log (log.h): no symbolic or hard link, a regular file of the effective user
 * or of owner ((uid_t)-1: none), created 0640 and given to owner when root
 * creates it. "" turns the access log off. 0 or -errno (safefile_strerror).
 * Children inherit the descriptor through fork().
 */
int accesslog_open(const char *path, uid_t owner);
/* SIGUSR1 (after logrotate moved the file): writes what is buffered to the old
 * file, then opens path again; on failure the old file stays in use. */
int accesslog_reopen(void);
/* True when an access log is open in this process. */
bool accesslog_enabled(void);
/* Appends one line to this process's buffer; writes the buffer first when the
 * line would not fit (one write() of whole lines, so the lines of several
 * workers never interleave in the O_APPEND file). */
void accesslog_write(const struct accesslog_entry *e);
/* Writes what is buffered (the flush timer, stop, reopen). */
void accesslog_flush(void);
/* Closes (what is buffered is written first). */
void accesslog_close(void);
/* One line, newline included, into out; its length, or 0 when out is too
 * small (it never is at ACCESSLOG_LINE_MAX: every string escaped at worst). */
#define ACCESSLOG_LINE_MAX (6 * (ACCESSLOG_PATH_MAX + 64 + 512) + 256)
size_t accesslog_format(const struct accesslog_entry *e, char *out, size_t outlen);

#endif
