/* JSON scanning without allocation: validates a document and walks the members of its top object. */
#ifndef SFU_JSCAN_H
#define SFU_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * The hot path reads three small JSON objects per channel request (the
 * token's header and claims, the SFU's answer) and needs a handful of their
 * top-level fields. A general parser builds a tree of heap objects for that
 * (json-c also creates a locale per parse); this scanner validates the
 * whole text against RFC 8259 in one pass and reports each top-level member
 * with pointers into the text. Nested values are validated and skipped.
 * Duplicate keys are all reported in order, so "last wins" as in JSON.parse.
 * Strings may hold any bytes >= 0x20 (UTF-8 is not checked, as JSON.parse
 * does not either); nesting deeper than JSCAN_MAX_DEPTH is rejected.
 */
#define JSCAN_MAX_DEPTH 64

enum jscan_type { JSCAN_STRING, JSCAN_NUMBER, JSCAN_TRUE, JSCAN_FALSE, JSCAN_NULL, JSCAN_OBJECT,
		  JSCAN_ARRAY };

struct jscan_member {
	const char *key; /* between the quotes, escapes not decoded */
	size_t key_len;
	bool key_escaped; /* the key holds a backslash escape */
	enum jscan_type type;
	const char *val; /* strings: between the quotes; others: the value's text */
	size_t val_len;
	bool val_escaped; /* a string value holds a backslash escape */
};

/* Called per top-level member; a non-zero return stops the scan and is returned. */
typedef int (*jscan_fn)(const struct jscan_member *m, void *ctx);

/* Validates text[0..len) as one JSON object (surrounding whitespace allowed)
 * and calls fn for each member. 0, -EINVAL (not valid JSON, or not an
 * object), or fn's non-zero value. fn may be NULL (validation only). */
int jscan_object(const char *text, size_t len, jscan_fn fn, void *ctx);
/* Whether the member's key, decoded, equals name (NUL-terminated). */
bool jscan_key_is(const struct jscan_member *m, const char *name);
/* Decodes a string value (escapes, \u surrogate pairs to UTF-8) into out and
 * NUL-terminates it. Length (which counts a decoded \u0000: callers that need
 * a C string check for it), or -ENOSPC, or -EINVAL (not a string, or a lone
 * surrogate). */
ssize_t jscan_string(const struct jscan_member *m, char *out, size_t outcap);
/* A number value as int64, fractions truncated toward zero, clamped to the
 * int64 range. 0 or -EINVAL (not a number). */
int jscan_int64(const struct jscan_member *m, int64_t *out);
/* A number value as double. 0 or -EINVAL. */
int jscan_double(const struct jscan_member *m, double *out);

#endif
