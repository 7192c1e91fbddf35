/* TOML subset parser: the part of TOML the config uses; everything else is a file:line error. */
#ifndef SFU_TOML_H
#define SFU_TOML_H

#include <stddef.h>
#include <stdint.h>

/*
 * Supported: comments, bare and "quoted" keys, dotted keys are NOT supported
 * (a clear error), basic "strings" with escapes (\" \\ \n \t \r \b \f \uXXXX
 * \UXXXXXXXX), 'literal strings', decimal integers (with _ separators and sign),
 * floats (fraction and/or exponent), true/false, arrays (single- or multi-line,
 * trailing comma allowed, values of any supported type), [table] and
 * [table.sub] headers, [[array.of.tables]]. Redefining a key or a table is an
 * error. Not supported (error): inline tables, dates/times, multi-line strings,
 * hex/octal/binary integers, inf/nan.
 * Input must be UTF-8 without NUL bytes (a leading BOM is skipped); control
 * characters are refused in strings, keys and comments, so every key can be
 * quoted in a one-line message. Limits: 1 MiB of input, 1024 keys per table,
 * 32 nested arrays, 32 parts in a [table.name]. Messages never quote a value.
 */

enum toml_type { TOML_STRING, TOML_INT, TOML_FLOAT, TOML_BOOL, TOML_ARRAY, TOML_TABLE };

struct toml_table;

struct toml_value {
	enum toml_type type;
	int line; /* 1-based line of the value in the source */
	union {
		char *s; /* TOML_STRING: NUL-terminated, UTF-8 (may not contain NUL) */
		int64_t i; /* TOML_INT */
		double f; /* TOML_FLOAT */
		int b; /* TOML_BOOL: 0 or 1 */
		struct {
			struct toml_value **items;
			size_t n;
		} arr; /* TOML_ARRAY (an array of tables holds TOML_TABLE items) */
		struct toml_table *tab; /* TOML_TABLE */
	} u;
};

struct toml_table {
	size_t n;
	char **keys; /* in source order */
	struct toml_value **vals;
	int line; /* line of the header that opened it (0 for the root) */
};

/* Parses a file. On error returns -EINVAL (syntax) or -errno (I/O) and writes
 * "path:line: reason" (or "path: strerror") into err. *out is NULL on error. */
int toml_parse_file(const char *path, struct toml_table **out, char *err, size_t errlen);
/* Same on a NUL-terminated string; name stands for the path in messages. */
int toml_parse_string(const char *text, const char *name, struct toml_table **out, char *err,
		      size_t errlen);
/* Looks a key up in one table (no dots). NULL when absent. */
const struct toml_value *toml_get(const struct toml_table *t, const char *key);
const char *toml_type_name(enum toml_type type);
void toml_free(struct toml_table *t);

#endif
