/* Access log: one JSON line per answered request, buffered per process, written in whole lines. */
#include "accesslog.h"

#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "hex.h"
#include "safefile.h"

static int accesslog_fd = -1;
static char accesslog_path[4096];
static uid_t accesslog_owner = (uid_t)-1;
static char accesslog_buf[ACCESSLOG_BUFFER];
static size_t accesslog_len;

/* Query parameters whose values never reach the log, by decoded name
 * (case-insensitive), and names that merely contain one of these. */
static const char *const accesslog_secret_names[] = { "token", "jwt", "key", "secret",
						      "password", "passwd", "auth", "signature",
						      "sig", "credential" };

int accesslog_open(const char *path, uid_t owner)
{
	accesslog_close();
	if (path == NULL || path[0] == '\0') {
		accesslog_path[0] = '\0';
		return 0;
	}
	if (strlen(path) >= sizeof(accesslog_path))
		return -ENAMETOOLONG;
	snprintf(accesslog_path, sizeof(accesslog_path), "%s", path);
	accesslog_owner = owner;
	return accesslog_reopen();
}

int accesslog_reopen(void)
{
	int fd;

	if (accesslog_path[0] == '\0')
		return 0;
	/* Lines buffered before the rotation belong to the old file. */
	accesslog_flush();
	fd = safefile_open_append(accesslog_path, 0640, accesslog_owner);
	if (fd < 0)
		return fd;
	if (accesslog_fd >= 0)
		close(accesslog_fd);
	accesslog_fd = fd;
	return 0;
}

bool accesslog_enabled(void)
{
	return accesslog_fd >= 0;
}

void accesslog_flush(void)
{
	size_t off = 0;

	while (off < accesslog_len && accesslog_fd >= 0) {
		ssize_t n = write(accesslog_fd, accesslog_buf + off, accesslog_len - off);

		if (n < 0 && errno == EINTR)
			continue;
		/* A full disk loses these lines, not the request: there is no one
		 * to tell but the error log, which is likely on the same disk. */
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	accesslog_len = 0;
}

void accesslog_close(void)
{
	accesslog_flush();
	if (accesslog_fd >= 0)
		close(accesslog_fd);
	accesslog_fd = -1;
}

/* Appends s[0..n) as the inside of a JSON string; false when out is full. */
static bool accesslog_escape(char *out, size_t outlen, size_t *o, const char *s, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (*o + 7 > outlen)
			return false;
		if (ch == '"' || ch == '\\') {
			out[(*o)++] = '\\';
			out[(*o)++] = (char)ch;
		} else if (ch < 0x20 || ch >= 0x7f) {
			/* Bytes, not characters: the line stays valid JSON whatever
			 * the client sent, and every byte can be read back. */
			memcpy(out + *o, "\\u00", 4);
			out[*o + 4] = digits[ch >> 4];
			out[*o + 5] = digits[ch & 15];
			*o += 6;
		} else {
			out[(*o)++] = (char)ch;
		}
	}
	return true;
}

static bool accesslog_raw(char *out, size_t outlen, size_t *o, const char *s)
{
	size_t n = strlen(s);

	if (*o + n >= outlen)
		return false;
	memcpy(out + *o, s, n);
	*o += n;
	return true;
}

/* True when a query parameter's name (raw, maybe percent-encoded) names a secret. */
static bool accesslog_secret(const char *name, size_t len)
{
	char dec[64];
	size_t d = 0;

	for (size_t i = 0; i < len && d + 1 < sizeof(dec); i++) {
		if (name[i] == '%' && i + 2 < len && hex_digit(name[i + 1]) >= 0 &&
		    hex_digit(name[i + 2]) >= 0) {
			dec[d++] = (char)(hex_digit(name[i + 1]) * 16 + hex_digit(name[i + 2]));
			i += 2;
		} else {
			dec[d++] = name[i];
		}
	}
	dec[d] = '\0';
	for (size_t k = 0; k < sizeof(accesslog_secret_names) / sizeof(accesslog_secret_names[0]);
	     k++)
		if (strcasestr(dec, accesslog_secret_names[k]) != NULL)
			return true;
	/* A name too long to decode whole is not worth the risk. */
	return d + 1 >= sizeof(dec);
}

/* The target with secret query values replaced, escaped, cut at ACCESSLOG_PATH_MAX. */
static bool accesslog_target(char *out, size_t outlen, size_t *o, const char *t, size_t n)
{
	bool cut = n > ACCESSLOG_PATH_MAX;
	const char *q;
	size_t path_len, i;

	if (cut)
		n = ACCESSLOG_PATH_MAX;
	q = memchr(t, '?', n);
	path_len = q != NULL ? (size_t)(q - t) + 1 : n;
	if (!accesslog_escape(out, outlen, o, t, path_len))
		return false;
	for (i = path_len; i < n;) {
		const char *seg = t + i;
		const char *amp = memchr(seg, '&', n - i);
		size_t len = amp ? (size_t)(amp - seg) : n - i;
		const char *eq = memchr(seg, '=', len);
		size_t nlen = eq ? (size_t)(eq - seg) : len;

		if (eq != NULL && accesslog_secret(seg, nlen)) {
			if (!accesslog_escape(out, outlen, o, seg, nlen + 1) ||
			    !accesslog_raw(out, outlen, o, "REDACTED"))
				return false;
		} else if (!accesslog_escape(out, outlen, o, seg, len)) {
			return false;
		}
		i += len;
		if (amp != NULL) {
			if (!accesslog_raw(out, outlen, o, "&"))
				return false;
			i++;
		}
	}
	return !cut || accesslog_raw(out, outlen, o, "...");
}

/* "2024-05-01T12:00:00.123Z"; the part up to the seconds is computed once a second. */
static void accesslog_time(int64_t wall_ms, char out[80])
{
	static time_t cached_sec = -1;
	static char cached[64];
	time_t sec = (time_t)(wall_ms / 1000);

	if (sec != cached_sec) {
		struct tm tm;

		gmtime_r(&sec, &tm);
		snprintf(cached, sizeof(cached), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		cached_sec = sec;
	}
	snprintf(out, 80, "%s.%03dZ", cached, (int)(wall_ms % 1000));
}

size_t accesslog_format(const struct accesslog_entry *e, char *out, size_t outlen)
{
	char ts[80], num[96];
	size_t o = 0;

	accesslog_time(e->wall_ms, ts);
	if (!accesslog_raw(out, outlen, &o, "{\"time\":\"") || !accesslog_raw(out, outlen, &o, ts) ||
	    !accesslog_raw(out, outlen, &o, "\",\"client\":\"") ||
	    !accesslog_escape(out, outlen, &o, e->client, strlen(e->client)))
		return 0;
	if (e->method >= 0) {
		if (!accesslog_raw(out, outlen, &o, "\",\"method\":\"") ||
		    !accesslog_raw(out, outlen, &o, llhttp_method_name((llhttp_method_t)e->method)) ||
		    !accesslog_raw(out, outlen, &o, "\",\"path\":\""))
			return 0;
	} else if (!accesslog_raw(out, outlen, &o, "\",\"method\":null,\"path\":\"")) {
		return 0;
	}
	if (!accesslog_target(out, outlen, &o, e->target, e->target_len))
		return 0;
	snprintf(num, sizeof(num), "\",\"status\":%d,\"sfu\":", e->status);
	if (!accesslog_raw(out, outlen, &o, num))
		return 0;
	if (e->sfu != NULL) {
		if (!accesslog_raw(out, outlen, &o, "\"") ||
		    !accesslog_escape(out, outlen, &o, e->sfu, strlen(e->sfu)))
			return 0;
		snprintf(num, sizeof(num), "\",\"attempts\":%u,\"upstream_ms\":%.3f,", e->attempts,
			 (double)e->upstream_us / 1000.0);
	} else {
		snprintf(num, sizeof(num), "null,\"attempts\":%u,\"upstream_ms\":null,", e->attempts);
	}
	if (!accesslog_raw(out, outlen, &o, num))
		return 0;
	snprintf(num, sizeof(num), "\"total_ms\":%.3f}\n", (double)e->total_us / 1000.0);
	if (!accesslog_raw(out, outlen, &o, num))
		return 0;
	return o;
}

void accesslog_write(const struct accesslog_entry *e)
{
	char line[ACCESSLOG_LINE_MAX];
	size_t n;

	if (accesslog_fd < 0)
		return;
	/* Format in place when the worst case fits, else aside and copy. */
	if (sizeof(accesslog_buf) - accesslog_len >= sizeof(line)) {
		accesslog_len += accesslog_format(e, accesslog_buf + accesslog_len,
						  sizeof(accesslog_buf) - accesslog_len);
		return;
	}
	n = accesslog_format(e, line, sizeof(line));
	if (n > sizeof(accesslog_buf) - accesslog_len)
		accesslog_flush();
	memcpy(accesslog_buf + accesslog_len, line, n);
	accesslog_len += n;
}
