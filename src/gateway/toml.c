/* TOML subset parser: turns a config file into a tree, or into one "path:line: reason" error. */
#include "toml.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hex.h"

/* A config file is small; the caps keep pathological input cheap (no quadratic blow-up). */
#define TOML_MAX_SIZE (1024 * 1024)
#define TOML_MAX_KEYS 1024 /* per table: duplicate detection is a linear scan */
#define TOML_MAX_DEPTH 32 /* nested arrays, and parts of a [table.name] */
#define TOML_MAX_NUMBER 256 /* characters of one number token */

/*
 * The public structs are the first member of these, so a pointer to either is a
 * pointer to the other and toml_free() can free what the parser allocated.
 * The flags implement TOML's redefinition rules without widening the interface.
 */
struct toml_ptable {
	struct toml_table pub;
	bool defined; /* opened by its own [header], not only implied by [a.b] */
	size_t cap;
};

struct toml_pvalue {
	struct toml_value pub;
	bool aot; /* an array made by [[name]], which later [[name]] headers extend */
	size_t cap;
};

struct toml_parser {
	const char *s;
	size_t len;
	size_t pos;
	int line;
	const char *name;
	char *err;
	size_t errlen;
	struct toml_table *root;
	struct toml_table *cur;
};

static int toml_fail(struct toml_parser *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int toml_fail(struct toml_parser *p, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (p->errlen > 0)
		snprintf(p->err, p->errlen, "%s:%d: %s", p->name, p->line, why);
	return -EINVAL;
}

const char *toml_type_name(enum toml_type type)
{
	switch (type) {
	case TOML_STRING:
		return "string";
	case TOML_INT:
		return "integer";
	case TOML_FLOAT:
		return "float";
	case TOML_BOOL:
		return "boolean";
	case TOML_ARRAY:
		return "array";
	case TOML_TABLE:
		return "table";
	}
	return "?";
}

static void toml_value_free(struct toml_value *v);

void toml_free(struct toml_table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->keys[i]);
		toml_value_free(t->vals[i]);
	}
	free(t->keys);
	free(t->vals);
	free((struct toml_ptable *)t);
}

/* Recursion is bounded: arrays nest at most TOML_MAX_DEPTH deep, and so do tables. */
static void toml_value_free(struct toml_value *v)
{
	if (v == NULL)
		return;
	switch (v->type) {
	case TOML_STRING:
		free(v->u.s);
		break;
	case TOML_ARRAY:
		for (size_t i = 0; i < v->u.arr.n; i++)
			toml_value_free(v->u.arr.items[i]);
		free(v->u.arr.items);
		break;
	case TOML_TABLE:
		toml_free(v->u.tab);
		break;
	default:
		break;
	}
	free((struct toml_pvalue *)v);
}

const struct toml_value *toml_get(const struct toml_table *t, const char *key)
{
	if (t == NULL || key == NULL)
		return NULL;
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->keys[i], key) == 0)
			return t->vals[i];
	return NULL;
}

static struct toml_value *toml_value_new(enum toml_type type, int line)
{
	struct toml_pvalue *pv = calloc(1, sizeof(*pv));

	if (pv == NULL)
		return NULL;
	pv->pub.type = type;
	pv->pub.line = line;
	return &pv->pub;
}

static struct toml_table *toml_table_new(int line)
{
	struct toml_ptable *pt = calloc(1, sizeof(*pt));

	if (pt == NULL)
		return NULL;
	pt->pub.line = line;
	return &pt->pub;
}

/* Adds key = v to t, taking both on success (and only then). */
static int toml_table_add(struct toml_parser *p, struct toml_table *t, char *key,
			  struct toml_value *v)
{
	struct toml_ptable *pt = (struct toml_ptable *)t;

	if (toml_get(t, key) != NULL)
		return toml_fail(p, "duplicate key '%.64s'", key);
	if (t->n >= TOML_MAX_KEYS)
		return toml_fail(p, "too many keys in one table (at most %d)", TOML_MAX_KEYS);
	if (t->n == pt->cap) {
		size_t cap = pt->cap ? pt->cap * 2 : 8;
		char **keys = realloc(t->keys, cap * sizeof(*keys));

		if (keys == NULL)
			return toml_fail(p, "out of memory");
		t->keys = keys;
		struct toml_value **vals = realloc(t->vals, cap * sizeof(*vals));

		if (vals == NULL)
			return toml_fail(p, "out of memory");
		t->vals = vals;
		pt->cap = cap;
	}
	t->keys[t->n] = key;
	t->vals[t->n] = v;
	t->n++;
	return 0;
}

static int toml_array_add(struct toml_parser *p, struct toml_value *arr, struct toml_value *v)
{
	struct toml_pvalue *pa = (struct toml_pvalue *)arr;

	if (arr->u.arr.n == pa->cap) {
		size_t cap = pa->cap ? pa->cap * 2 : 4;
		struct toml_value **items = realloc(arr->u.arr.items, cap * sizeof(*items));

		if (items == NULL)
			return toml_fail(p, "out of memory");
		arr->u.arr.items = items;
		pa->cap = cap;
	}
	arr->u.arr.items[arr->u.arr.n++] = v;
	return 0;
}

static int toml_peek(const struct toml_parser *p, size_t ahead)
{
	return p->pos + ahead < p->len ? (unsigned char)p->s[p->pos + ahead] : -1;
}

static bool toml_is_control(int c)
{
	return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f;
}

static void toml_skip_ws(struct toml_parser *p)
{
	while (toml_peek(p, 0) == ' ' || toml_peek(p, 0) == '\t')
		p->pos++;
}

/* Skips a comment up to (not including) its newline. */
static int toml_skip_comment(struct toml_parser *p)
{
	int c;

	if (toml_peek(p, 0) != '#')
		return 0;
	while ((c = toml_peek(p, 0)) != -1 && c != '\n') {
		if (c == '\r' && toml_peek(p, 1) == '\n')
			break;
		if (toml_is_control(c))
			return toml_fail(p, "control character in comment");
		p->pos++;
	}
	return 0;
}

/* Consumes one line ending ("\n" or "\r\n"); false when there is none here. */
static bool toml_newline(struct toml_parser *p)
{
	if (toml_peek(p, 0) == '\n') {
		p->pos++;
	} else if (toml_peek(p, 0) == '\r' && toml_peek(p, 1) == '\n') {
		p->pos += 2;
	} else {
		return false;
	}
	p->line++;
	return true;
}

/* After a key/value pair or a header only blanks and a comment may follow. */
static int toml_end_of_line(struct toml_parser *p, const char *after)
{
	int rc;

	toml_skip_ws(p);
	rc = toml_skip_comment(p);
	if (rc < 0)
		return rc;
	if (p->pos >= p->len || toml_newline(p))
		return 0;
	if (toml_peek(p, 0) == '\r')
		return toml_fail(p, "carriage return without a line feed");
	return toml_fail(p, "unexpected text after %s", after);
}

/* Inside arrays, newlines and comments count as blanks. */
static int toml_skip_blank_lines(struct toml_parser *p)
{
	for (;;) {
		int rc;

		toml_skip_ws(p);
		rc = toml_skip_comment(p);
		if (rc < 0)
			return rc;
		if (!toml_newline(p))
			return 0;
	}
}

static size_t toml_utf8_put(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Decodes the escape after a backslash into out; returns the bytes written or -EINVAL. */
static int toml_escape(struct toml_parser *p, char *out)
{
	int c = toml_peek(p, 0);
	int digits = 0;
	uint32_t cp = 0;

	p->pos++;
	switch (c) {
	case 'b':
		*out = '\b';
		return 1;
	case 't':
		*out = '\t';
		return 1;
	case 'n':
		*out = '\n';
		return 1;
	case 'f':
		*out = '\f';
		return 1;
	case 'r':
		*out = '\r';
		return 1;
	case '"':
		*out = '"';
		return 1;
	case '\\':
		*out = '\\';
		return 1;
	case 'u':
		digits = 4;
		break;
	case 'U':
		digits = 8;
		break;
	default:
		return toml_fail(p, "invalid escape sequence in string");
	}
	for (int i = 0; i < digits; i++) {
		int h = hex_digit(toml_peek(p, 0));

		if (h < 0)
			return toml_fail(p, "invalid \\%c escape: expected %d hex digits", c,
					 digits);
		cp = cp << 4 | (uint32_t)h;
		p->pos++;
	}
	if (cp == 0)
		return toml_fail(p, "\\u0000 is not allowed in strings");
	if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return toml_fail(p, "escape is not a Unicode scalar value");
	return (int)toml_utf8_put(cp, out);
}

/*
 * Parses a "basic" or 'literal' single-line string starting at the quote.
 * The decoded text is never longer than the source (an escape shrinks or keeps
 * its size), so the rest of the line bounds the allocation.
 */
static int toml_string(struct toml_parser *p, char **out)
{
	char quote = p->s[p->pos];
	const char *nl;
	size_t room, n = 0;
	char *buf;
	int rc;

	if (toml_peek(p, 1) == quote && toml_peek(p, 2) == quote)
		return toml_fail(p, "multi-line strings are not supported");
	p->pos++;
	nl = memchr(p->s + p->pos, '\n', p->len - p->pos);
	room = (nl ? (size_t)(nl - p->s) : p->len) - p->pos + 1;
	buf = malloc(room);
	if (buf == NULL)
		return toml_fail(p, "out of memory");
	for (;;) {
		int c = toml_peek(p, 0);

		if (c == -1 || c == '\n' || (c == '\r' && toml_peek(p, 1) == '\n')) {
			rc = toml_fail(p, "unterminated string");
			goto fail;
		}
		p->pos++;
		if (c == quote)
			break;
		if (toml_is_control(c)) {
			rc = toml_fail(p, "control character in string");
			goto fail;
		}
		if (c == '\\' && quote == '"') {
			rc = toml_escape(p, buf + n);
			if (rc < 0)
				goto fail;
			n += (size_t)rc;
		} else {
			buf[n++] = (char)c;
		}
	}
	buf[n] = '\0';
	*out = buf;
	return 0;
fail:
	free(buf);
	return rc;
}

static bool toml_is_bare(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

static int toml_key(struct toml_parser *p, char **out)
{
	int c = toml_peek(p, 0);
	size_t start = p->pos;
	int rc;

	if (c == '"' || c == '\'') {
		rc = toml_string(p, out);
		if (rc < 0)
			return rc;
		/* Keys appear in error messages, which must stay on one line. */
		for (const char *k = *out; *k; k++) {
			if (toml_is_control((unsigned char)*k)) {
				free(*out);
				*out = NULL;
				return toml_fail(p, "control characters in keys are not supported");
			}
		}
		return 0;
	}
	while (toml_is_bare(toml_peek(p, 0)))
		p->pos++;
	if (p->pos == start)
		return toml_fail(p, "expected a key");
	*out = strndup(p->s + start, p->pos - start);
	if (*out == NULL)
		return toml_fail(p, "out of memory");
	return 0;
}

/* Copies digits of s[0..n) without the '_' separators, which must sit between digits. */
static bool toml_digits(const char *s, size_t n, char *out, size_t *outn)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '_') {
			bool between = i > 0 && i + 1 < n && s[i - 1] >= '0' && s[i - 1] <= '9' &&
				       s[i + 1] >= '0' && s[i + 1] <= '9';

			if (!between)
				return false;
			continue;
		}
		if (s[i] < '0' || s[i] > '9')
			return false;
		out[(*outn)++] = s[i];
	}
	return true;
}

static bool toml_is_number_char(int c)
{
	return toml_is_bare(c) || c == '+' || c == '.' || c == ':';
}

/* Integers, floats, and clear errors for the number-like forms the subset leaves out. */
static int toml_number(struct toml_parser *p, struct toml_value *v)
{
	const char *tok = p->s + p->pos;
	size_t n = 0, i = 0, o = 0, start;
	char buf[TOML_MAX_NUMBER + 8];
	bool is_float = false;

	while (toml_is_number_char(toml_peek(p, n)))
		n++;
	p->pos += n;
	if (n > TOML_MAX_NUMBER)
		return toml_fail(p, "number is too long");
	if (n == 4 && (memcmp(tok + 1, "inf", 3) == 0 || memcmp(tok + 1, "nan", 3) == 0))
		return toml_fail(p, "inf and nan are not supported");
	if (memchr(tok, ':', n) != NULL ||
	    (n >= 5 && memchr("0123456789", tok[0], 10) && tok[4] == '-'))
		return toml_fail(p, "dates and times are not supported");
	if (tok[i] == '+' || tok[i] == '-')
		buf[o++] = tok[i++];
	if (n - i >= 2 && tok[i] == '0' && (tok[i + 1] == 'x' || tok[i + 1] == 'o' ||
					    tok[i + 1] == 'b'))
		return toml_fail(p, "hexadecimal, octal and binary integers are not supported");
	/* Integer part: no leading zeros, as TOML says. */
	start = i;
	while (i < n && (toml_is_bare(tok[i]) && tok[i] != 'e' && tok[i] != 'E' && tok[i] != '-'))
		i++;
	if (!toml_digits(tok + start, i - start, buf, &o) || (tok[start] == '0' && i - start > 1))
		return toml_fail(p, "invalid number");
	if (i < n && tok[i] == '.') {
		is_float = true;
		buf[o++] = tok[i++];
		start = i;
		while (i < n && tok[i] != 'e' && tok[i] != 'E')
			i++;
		if (!toml_digits(tok + start, i - start, buf, &o))
			return toml_fail(p, "invalid number");
	}
	if (i < n && (tok[i] == 'e' || tok[i] == 'E')) {
		is_float = true;
		buf[o++] = tok[i++];
		if (i < n && (tok[i] == '+' || tok[i] == '-'))
			buf[o++] = tok[i++];
		if (!toml_digits(tok + i, n - i, buf, &o))
			return toml_fail(p, "invalid number");
		i = n;
	}
	if (i != n)
		return toml_fail(p, "invalid number");
	buf[o] = '\0';
	errno = 0;
	if (is_float) {
		v->type = TOML_FLOAT;
		v->u.f = strtod(buf, NULL);
		if (!isfinite(v->u.f))
			return toml_fail(p, "float out of range");
	} else {
		v->type = TOML_INT;
		v->u.i = strtoll(buf, NULL, 10);
		if (errno == ERANGE)
			return toml_fail(p, "integer out of range");
	}
	return 0;
}

static int toml_value(struct toml_parser *p, int depth, struct toml_value **out);

static int toml_array(struct toml_parser *p, int depth, struct toml_value *arr)
{
	int rc;

	if (depth >= TOML_MAX_DEPTH)
		return toml_fail(p, "arrays nested too deeply (at most %d)", TOML_MAX_DEPTH);
	p->pos++;
	for (;;) {
		struct toml_value *item = NULL;

		rc = toml_skip_blank_lines(p);
		if (rc < 0)
			return rc;
		if (toml_peek(p, 0) == ']')
			break;
		rc = toml_value(p, depth + 1, &item);
		if (rc < 0)
			return rc;
		rc = toml_array_add(p, arr, item);
		if (rc < 0) {
			toml_value_free(item);
			return rc;
		}
		rc = toml_skip_blank_lines(p);
		if (rc < 0)
			return rc;
		if (toml_peek(p, 0) == ',') {
			p->pos++;
			continue;
		}
		if (toml_peek(p, 0) == ']')
			break;
		if (toml_peek(p, 0) == -1)
			return toml_fail(p, "unterminated array");
		return toml_fail(p, "expected ',' or ']' in array");
	}
	p->pos++;
	return 0;
}

static bool toml_word(const struct toml_parser *p, const char *w)
{
	size_t n = strlen(w);

	return p->len - p->pos >= n && memcmp(p->s + p->pos, w, n) == 0 &&
	       !toml_is_bare(toml_peek(p, n));
}

static int toml_value(struct toml_parser *p, int depth, struct toml_value **out)
{
	int c = toml_peek(p, 0);
	struct toml_value *v;
	int rc;

	if (c == '{')
		return toml_fail(p, "inline tables are not supported");
	if (c == -1 || c == '\n' || c == '\r' || c == '#' || c == ',' || c == ']')
		return toml_fail(p, p->pos >= p->len ? "unexpected end of file: expected a value"
						     : "expected a value");
	v = toml_value_new(TOML_STRING, p->line);
	if (v == NULL)
		return toml_fail(p, "out of memory");
	if (c == '"' || c == '\'') {
		rc = toml_string(p, &v->u.s);
	} else if (c == '[') {
		v->type = TOML_ARRAY;
		rc = toml_array(p, depth, v);
	} else if (toml_word(p, "true") || toml_word(p, "false")) {
		v->type = TOML_BOOL;
		v->u.b = c == 't';
		p->pos += v->u.b ? 4 : 5;
		rc = 0;
	} else if (toml_word(p, "inf") || toml_word(p, "nan")) {
		v->type = TOML_INT;
		rc = toml_fail(p, "inf and nan are not supported");
	} else if ((c >= '0' && c <= '9') || c == '+' || c == '-') {
		v->type = TOML_INT;
		rc = toml_number(p, v);
	} else {
		v->type = TOML_INT;
		rc = toml_fail(p, "invalid value (strings must be quoted)");
	}
	if (rc < 0) {
		toml_value_free(v);
		return rc;
	}
	*out = v;
	return 0;
}

static int toml_keyval(struct toml_parser *p)
{
	struct toml_value *v = NULL;
	char *key = NULL;
	int rc;

	rc = toml_key(p, &key);
	if (rc < 0)
		return rc;
	toml_skip_ws(p);
	if (toml_peek(p, 0) == '.') {
		rc = toml_fail(p, "dotted keys are not supported");
		goto fail;
	}
	if (toml_peek(p, 0) != '=') {
		rc = toml_fail(p, "expected '=' after key");
		goto fail;
	}
	p->pos++;
	toml_skip_ws(p);
	rc = toml_value(p, 0, &v);
	if (rc < 0)
		goto fail;
	/* Report a duplicate on the key's line even when the value spans lines. */
	{
		int line = p->line;

		p->line = v->line;
		rc = toml_table_add(p, p->cur, key, v);
		p->line = line;
	}
	if (rc < 0)
		goto fail;
	return toml_end_of_line(p, "value");
fail:
	free(key);
	toml_value_free(v);
	return rc;
}

/* Writes "a.b.c" for messages. */
static void toml_join(char *const *parts, int n, char *out, size_t outlen)
{
	size_t o = 0;

	out[0] = '\0';
	for (int i = 0; i < n && o < outlen; i++)
		o += (size_t)snprintf(out + o, outlen - o, "%s%.64s", i ? "." : "", parts[i]);
}

/* Finds or creates the table parts[i] names inside t for a header's intermediate parts. */
static int toml_descend(struct toml_parser *p, struct toml_table **t, char *part)
{
	const struct toml_value *v = toml_get(*t, part);
	struct toml_value *nv;
	char *key;
	int rc;

	if (v != NULL && v->type == TOML_TABLE) {
		*t = v->u.tab;
		return 0;
	}
	if (v != NULL && v->type == TOML_ARRAY && ((const struct toml_pvalue *)v)->aot) {
		*t = v->u.arr.items[v->u.arr.n - 1]->u.tab;
		return 0;
	}
	if (v != NULL)
		return toml_fail(p, "key '%.64s' is already defined and is not a table", part);
	nv = toml_value_new(TOML_TABLE, p->line);
	key = strdup(part);
	if (nv == NULL || key == NULL || (nv->u.tab = toml_table_new(p->line)) == NULL) {
		free(key);
		toml_value_free(nv);
		return toml_fail(p, "out of memory");
	}
	rc = toml_table_add(p, *t, key, nv);
	if (rc < 0) {
		free(key);
		toml_value_free(nv);
		return rc;
	}
	*t = nv->u.tab;
	return 0;
}

/* Opens [name] (aot false) or appends to [[name]] (aot true): makes it p->cur. */
static int toml_open(struct toml_parser *p, struct toml_table *parent, char *last, bool aot,
		     const char *full)
{
	struct toml_value *v = (struct toml_value *)toml_get(parent, last);
	struct toml_value *arr = NULL, *tv = NULL;
	char *key = NULL;
	int rc;

	if (!aot && v != NULL && v->type == TOML_TABLE) {
		struct toml_ptable *pt = (struct toml_ptable *)v->u.tab;

		if (pt->defined)
			return toml_fail(p, "duplicate table [%s]", full);
		pt->defined = true;
		pt->pub.line = p->line;
		p->cur = v->u.tab;
		return 0;
	}
	if (aot && v != NULL && !(v->type == TOML_ARRAY && ((struct toml_pvalue *)v)->aot))
		return toml_fail(p, "[[%s]]: '%.64s' is already defined and is not an array of "
				    "tables", full, last);
	if (!aot && v != NULL)
		return toml_fail(p, "duplicate key '%.64s' (table [%s])", last, full);

	tv = toml_value_new(TOML_TABLE, p->line);
	if (tv == NULL || (tv->u.tab = toml_table_new(p->line)) == NULL) {
		rc = toml_fail(p, "out of memory");
		goto fail;
	}
	((struct toml_ptable *)tv->u.tab)->defined = true;
	if (aot && v == NULL) {
		arr = toml_value_new(TOML_ARRAY, p->line);
		key = strdup(last);
		if (arr == NULL || key == NULL) {
			rc = toml_fail(p, "out of memory");
			goto fail;
		}
		((struct toml_pvalue *)arr)->aot = true;
		rc = toml_array_add(p, arr, tv);
		if (rc < 0)
			goto fail;
		p->cur = tv->u.tab;
		tv = NULL; /* owned by arr now */
		rc = toml_table_add(p, parent, key, arr);
		if (rc < 0)
			goto fail;
		return 0;
	}
	if (aot) {
		rc = toml_array_add(p, v, tv);
		if (rc < 0)
			goto fail;
		p->cur = tv->u.tab;
		return 0;
	}
	key = strdup(last);
	if (key == NULL) {
		rc = toml_fail(p, "out of memory");
		goto fail;
	}
	rc = toml_table_add(p, parent, key, tv);
	if (rc < 0)
		goto fail;
	p->cur = tv->u.tab;
	return 0;
fail:
	free(key);
	toml_value_free(tv);
	toml_value_free(arr);
	return rc;
}

static int toml_header(struct toml_parser *p)
{
	char *parts[TOML_MAX_DEPTH];
	char full[TOML_MAX_DEPTH * 66];
	struct toml_table *t = p->root;
	bool aot = toml_peek(p, 1) == '[';
	int n = 0, rc;

	p->pos += aot ? 2 : 1;
	for (;;) {
		toml_skip_ws(p);
		if (n == TOML_MAX_DEPTH) {
			rc = toml_fail(p, "table name has too many parts (at most %d)",
				       TOML_MAX_DEPTH);
			goto out;
		}
		rc = toml_key(p, &parts[n]);
		if (rc < 0)
			goto out;
		n++;
		toml_skip_ws(p);
		if (toml_peek(p, 0) != '.')
			break;
		p->pos++;
	}
	if (toml_peek(p, 0) != ']' || (aot && toml_peek(p, 1) != ']')) {
		rc = toml_fail(p, aot ? "expected ']]' to close the table header"
				      : "expected ']' to close the table header");
		goto out;
	}
	p->pos += aot ? 2 : 1;
	toml_join(parts, n, full, sizeof(full));
	for (int i = 0; i < n - 1; i++) {
		rc = toml_descend(p, &t, parts[i]);
		if (rc < 0)
			goto out;
	}
	rc = toml_open(p, t, parts[n - 1], aot, full);
	if (rc < 0)
		goto out;
	rc = toml_end_of_line(p, "table header");
out:
	for (int i = 0; i < n; i++)
		free(parts[i]);
	return rc;
}

/* Rejects NUL bytes and invalid UTF-8 up front, so the grammar below only sees text. */
static int toml_check_text(struct toml_parser *p)
{
	const unsigned char *s = (const unsigned char *)p->s;
	size_t i = 0;

	while (i < p->len) {
		unsigned c = s[i];
		size_t need;
		uint32_t cp, min;

		if (c < 0x80) {
			if (c == 0)
				return toml_fail(p, "NUL byte in file");
			if (c == '\n')
				p->line++;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
			min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
			min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return toml_fail(p, "invalid UTF-8");
		}
		if (p->len - i <= need)
			return toml_fail(p, "invalid UTF-8");
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return toml_fail(p, "invalid UTF-8");
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return toml_fail(p, "invalid UTF-8");
		i += need + 1;
	}
	p->line = 1;
	return 0;
}

static int toml_parse(const char *text, size_t len, const char *name, struct toml_table **out,
		      char *err, size_t errlen)
{
	struct toml_parser p = {
		.s = text, .len = len, .line = 1, .name = name ? name : "<string>",
		.err = err, .errlen = errlen,
	};
	int rc;

	*out = NULL;
	if (errlen > 0)
		err[0] = '\0';
	if (len > TOML_MAX_SIZE) {
		p.line = 1;
		return toml_fail(&p, "file is larger than %d bytes", TOML_MAX_SIZE);
	}
	rc = toml_check_text(&p);
	if (rc < 0)
		return rc;
	p.root = toml_table_new(0);
	if (p.root == NULL)
		return toml_fail(&p, "out of memory");
	((struct toml_ptable *)p.root)->defined = true;
	p.cur = p.root;
	/* A UTF-8 byte order mark is harmless: skip it. */
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		p.pos = 3;
	while (p.pos < p.len) {
		int c;

		toml_skip_ws(&p);
		c = toml_peek(&p, 0);
		if (c == -1)
			break;
		if (c == '#' || c == '\n' || c == '\r')
			rc = toml_end_of_line(&p, "comment");
		else if (c == '[')
			rc = toml_header(&p);
		else
			rc = toml_keyval(&p);
		if (rc < 0) {
			toml_free(p.root);
			return rc;
		}
	}
	*out = p.root;
	return 0;
}

int toml_parse_string(const char *text, const char *name, struct toml_table **out, char *err,
		      size_t errlen)
{
	return toml_parse(text, strlen(text), name, out, err, errlen);
}

int toml_parse_file(const char *path, struct toml_table **out, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int fd, rc;

	*out = NULL;
	if (errlen > 0)
		err[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	/* Read one byte past the cap so an oversized file is detected, not truncated. */
	for (;;) {
		ssize_t got;

		if (len == cap) {
			char *nb;

			cap = cap ? cap * 2 : 4096;
			if (cap > TOML_MAX_SIZE + 1)
				cap = TOML_MAX_SIZE + 1;
			if (len == cap) {
				break;
			}
			nb = realloc(buf, cap);
			if (nb == NULL) {
				rc = -ENOMEM;
				snprintf(err, errlen, "%s: %s", path, strerror(ENOMEM));
				goto out;
			}
			buf = nb;
		}
		got = read(fd, buf + len, cap - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = -errno;
			snprintf(err, errlen, "%s: %s", path, strerror(-rc));
			goto out;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	rc = toml_parse(buf ? buf : "", len, path, out, err, errlen);
out:
	close(fd);
	free(buf);
	return rc;
}
