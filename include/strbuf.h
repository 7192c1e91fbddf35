/* Text buffer: a growable byte string that rendered answers (/metrics, /v1/health) are written into. */
#ifndef SFU_STRBUF_H
#define SFU_STRBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Never larger than this: a rendering that would be is a failure. */
#define STRBUF_MAX ((size_t)64 << 20)

/*
 * Appends never fail loudly: when memory runs out (or STRBUF_MAX is reached)
 * the buffer stops growing and remembers it in failed, which the caller checks
 * once at the end. buf is NUL-terminated whenever len > 0 and not failed.
 */
struct strbuf {
	char *buf;
	size_t len, cap;
	bool failed;
};

/* Empties the buffer, keeping its memory for the next rendering. */
void strbuf_reset(struct strbuf *b);
void strbuf_free(struct strbuf *b);
/* The slow path of strbuf_put: grows the buffer first. */
void strbuf_put_grow(struct strbuf *b, const char *s, size_t n);

/* Renderings are thousands of short pieces: the common case is inline. */
static inline void strbuf_put(struct strbuf *b, const char *s, size_t n)
{
	if (b->len + n < b->cap && !b->failed) {
		memcpy(b->buf + b->len, s, n);
		b->len += n;
		b->buf[b->len] = '\0';
		return;
	}
	strbuf_put_grow(b, s, n);
}

/* A string literal, without strlen. */
#define STRBUF_LIT(b, lit) strbuf_put((b), (lit), sizeof(lit) - 1)

void strbuf_puts(struct strbuf *b, const char *s);
/* Decimal integers, without printf. */
void strbuf_u64(struct strbuf *b, uint64_t v);
void strbuf_i64(struct strbuf *b, int64_t v);
/* d as printf's "%g" writes it (six significant digits); whole numbers below a
 * million, which most reported figures are, without printf. */
void strbuf_g(struct strbuf *b, double d);
/* ms / 1000 with three decimals ("-1.250", "3.000"), as printf's "%.3f" would write it. */
void strbuf_ms_seconds(struct strbuf *b, int64_t ms);
void strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as the contents of a JSON string (without the quotes): ", \ and control
 * characters escaped; other bytes, UTF-8 included, as they are. */
void strbuf_json(struct strbuf *b, const char *s);

#endif
