/* Text buffer: a growable byte string that rendered answers (/metrics, /v1/health) are written into. */
#include "strbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void strbuf_reset(struct strbuf *b)
{
	b->len = 0;
	b->failed = false;
	if (b->buf != NULL)
		b->buf[0] = '\0';
}

void strbuf_free(struct strbuf *b)
{
	free(b->buf);
	b->buf = NULL;
	b->len = b->cap = 0;
	b->failed = false;
}

/* Makes room for n more bytes and a NUL; false (and failed) when it cannot. */
static bool strbuf_room(struct strbuf *b, size_t n)
{
	size_t cap;
	char *nb;

	if (b->failed)
		return false;
	if (b->len + n + 1 <= b->cap)
		return true;
	if (n > STRBUF_MAX - b->len - 1) {
		b->failed = true;
		return false;
	}
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + n + 1)
		cap *= 2;
	if (cap > STRBUF_MAX)
		cap = STRBUF_MAX;
	nb = realloc(b->buf, cap);
	if (nb == NULL) {
		b->failed = true;
		return false;
	}
	b->buf = nb;
	b->cap = cap;
	return true;
}

void strbuf_put_grow(struct strbuf *b, const char *s, size_t n)
{
	if (!strbuf_room(b, n))
		return;
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	b->buf[b->len] = '\0';
}

void strbuf_puts(struct strbuf *b, const char *s)
{
	strbuf_put(b, s, strlen(s));
}

void strbuf_u64(struct strbuf *b, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do {
		tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	strbuf_put(b, tmp + sizeof(tmp) - n, n);
}

void strbuf_i64(struct strbuf *b, int64_t v)
{
	if (v < 0) {
		strbuf_put(b, "-", 1);
		/* The negation goes through unsigned: INT64_MIN has no positive twin. */
		strbuf_u64(b, (uint64_t)0 - (uint64_t)v);
		return;
	}
	strbuf_u64(b, (uint64_t)v);
}

void strbuf_g(struct strbuf *b, double d)
{
	/* "%g" writes a whole number below 10^6 as its digits alone (-0 keeps its sign). */
	if (d > -1e6 && d < 1e6 && d == (double)(int64_t)d && !(d == 0 && signbit(d))) {
		strbuf_i64(b, (int64_t)d);
		return;
	}
	strbuf_printf(b, "%g", d);
}

void strbuf_ms_seconds(struct strbuf *b, int64_t ms)
{
	uint64_t m;
	char frac[4];

	if (ms < 0)
		strbuf_put(b, "-", 1);
	m = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
	strbuf_u64(b, m / 1000);
	frac[0] = '.';
	frac[1] = (char)('0' + m % 1000 / 100);
	frac[2] = (char)('0' + m % 100 / 10);
	frac[3] = (char)('0' + m % 10);
	strbuf_put(b, frac, 4);
}

void strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!strbuf_room(b, 64))
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if ((size_t)n >= b->cap - b->len) {
		/* Did not fit: grow to the size now known and write it again. */
		if (!strbuf_room(b, (size_t)n))
			return;
		va_start(ap, fmt);
		vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

void strbuf_json(struct strbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const char *run = s;

	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		char esc[6];

		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		strbuf_put(b, run, (size_t)(s - run));
		run = s + 1;
		esc[0] = '\\';
		switch (ch) {
		case '"': esc[1] = '"'; strbuf_put(b, esc, 2); break;
		case '\\': esc[1] = '\\'; strbuf_put(b, esc, 2); break;
		case '\n': esc[1] = 'n'; strbuf_put(b, esc, 2); break;
		case '\r': esc[1] = 'r'; strbuf_put(b, esc, 2); break;
		case '\t': esc[1] = 't'; strbuf_put(b, esc, 2); break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[ch >> 4];
			esc[5] = hex[ch & 15];
			strbuf_put(b, esc, 6);
			break;
		}
	}
	strbuf_put(b, run, (size_t)(s - run));
}
