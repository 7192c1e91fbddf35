/* Tests of the TOML subset parser: every type, every error with its file:line, and garbage. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "toml.h"

/* Parses text that must be valid; the tree is the caller's. */
static struct toml_table *toml_assert_ok(const char *text)
{
	struct toml_table *t = NULL;
	char err[512] = "unset";
	int rc = toml_parse_string(text, "t.toml", &t, err, sizeof(err));

	cr_assert_eq(rc, 0, "parse failed: %s", err);
	cr_assert_not_null(t);
	return t;
}

/* Parses text that must fail with exactly this message. */
static void toml_assert_bad(const char *text, const char *want)
{
	struct toml_table *t = (struct toml_table *)1;
	char err[512] = "";
	int rc = toml_parse_string(text, "t.toml", &t, err, sizeof(err));

	cr_assert_eq(rc, -EINVAL, "expected failure for [%s], got %d", text, rc);
	cr_assert_null(t);
	cr_assert_str_eq(err, want, "input [%s]", text);
}

static const struct toml_value *toml_must(const struct toml_table *t, const char *key,
					  enum toml_type type)
{
	const struct toml_value *v = toml_get(t, key);

	cr_assert_not_null(v, "key %s missing", key);
	cr_assert_eq(v->type, type, "key %s has type %s", key, toml_type_name(v->type));
	return v;
}

Test(toml, strings)
{
	struct toml_table *t = toml_assert_ok("a = \"plain\"\n"
				       "b = \"q\\\" b\\\\ n\\n t\\t r\\r bs\\b ff\\f\"\n"
				       "c = \"\\u00e9\\u20AC\\U0001F600\"\n"
				       "d = 'C:\\path\\no escapes \"here\"'\n"
				       "e = \"\"\n"
				       "f = ''\n"
				       "g = \"tab\there # not a comment\" # a comment\n"
				       "h = \"caf\xc3\xa9\"\n");

	cr_assert_str_eq(toml_must(t, "a", TOML_STRING)->u.s, "plain");
	cr_assert_str_eq(toml_must(t, "b", TOML_STRING)->u.s, "q\" b\\ n\n t\t r\r bs\b ff\f");
	cr_assert_str_eq(toml_must(t, "c", TOML_STRING)->u.s,
			 "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	cr_assert_str_eq(toml_must(t, "d", TOML_STRING)->u.s, "C:\\path\\no escapes \"here\"");
	cr_assert_str_eq(toml_must(t, "e", TOML_STRING)->u.s, "");
	cr_assert_str_eq(toml_must(t, "f", TOML_STRING)->u.s, "");
	cr_assert_str_eq(toml_must(t, "g", TOML_STRING)->u.s, "tab\there # not a comment");
	cr_assert_str_eq(toml_must(t, "h", TOML_STRING)->u.s, "caf\xc3\xa9");
	cr_assert_eq(toml_get(t, "a")->line, 1);
	cr_assert_eq(toml_get(t, "h")->line, 8);
	toml_free(t);
}

Test(toml, integers)
{
	struct toml_table *t = toml_assert_ok("a = 42\nb = -17\nc = +5\nd = 0\ne = -0\nf = 1_000_000\n"
				       "g = 9223372036854775807\nh = -9223372036854775808\n");

	cr_assert_eq(toml_must(t, "a", TOML_INT)->u.i, 42);
	cr_assert_eq(toml_must(t, "b", TOML_INT)->u.i, -17);
	cr_assert_eq(toml_must(t, "c", TOML_INT)->u.i, 5);
	cr_assert_eq(toml_must(t, "d", TOML_INT)->u.i, 0);
	cr_assert_eq(toml_must(t, "e", TOML_INT)->u.i, 0);
	cr_assert_eq(toml_must(t, "f", TOML_INT)->u.i, 1000000);
	cr_assert_eq(toml_must(t, "g", TOML_INT)->u.i, INT64_MAX);
	cr_assert_eq(toml_must(t, "h", TOML_INT)->u.i, INT64_MIN);
	toml_free(t);
}

Test(toml, floats)
{
	struct toml_table *t = toml_assert_ok("a = 0.5\nb = -3.25\nc = 1e3\nd = 6.626e-34\ne = 2E+2\n"
				       "f = 1_000.000_1\ng = +0.0\nh = 0e0\n");

	cr_assert_float_eq(toml_must(t, "a", TOML_FLOAT)->u.f, 0.5, 1e-12);
	cr_assert_float_eq(toml_must(t, "b", TOML_FLOAT)->u.f, -3.25, 1e-12);
	cr_assert_float_eq(toml_must(t, "c", TOML_FLOAT)->u.f, 1000.0, 1e-9);
	cr_assert_float_eq(toml_must(t, "d", TOML_FLOAT)->u.f, 6.626e-34, 1e-40);
	cr_assert_float_eq(toml_must(t, "e", TOML_FLOAT)->u.f, 200.0, 1e-9);
	cr_assert_float_eq(toml_must(t, "f", TOML_FLOAT)->u.f, 1000.0001, 1e-9);
	cr_assert_float_eq(toml_must(t, "g", TOML_FLOAT)->u.f, 0.0, 1e-12);
	cr_assert_float_eq(toml_must(t, "h", TOML_FLOAT)->u.f, 0.0, 1e-12);
	toml_free(t);
}

Test(toml, booleans_and_keys)
{
	struct toml_table *t = toml_assert_ok("yes = true\nno = false\n\"quoted key\" = 1\n'lit' = 2\n"
				       "bare-key_9 = 3\n\"\" = 4\n");

	cr_assert_eq(toml_must(t, "yes", TOML_BOOL)->u.b, 1);
	cr_assert_eq(toml_must(t, "no", TOML_BOOL)->u.b, 0);
	cr_assert_eq(toml_must(t, "quoted key", TOML_INT)->u.i, 1);
	cr_assert_eq(toml_must(t, "lit", TOML_INT)->u.i, 2);
	cr_assert_eq(toml_must(t, "bare-key_9", TOML_INT)->u.i, 3);
	cr_assert_eq(toml_must(t, "", TOML_INT)->u.i, 4);
	cr_assert_null(toml_get(t, "missing"));
	cr_assert_str_eq(t->keys[0], "yes");
	cr_assert_str_eq(t->keys[5], "");
	toml_free(t);
}

Test(toml, arrays)
{
	struct toml_table *t = toml_assert_ok("a = []\n"
				       "b = [1, 2, 3,]\n"
				       "c = [ # opening comment\n"
				       "  \"x\", # first\n"
				       "\n"
				       "  'y'\n"
				       "]\n"
				       "d = [[1, 2], [\"mixed\", 1.5, true], []]\n"
				       "e = 7\n");
	const struct toml_value *d;

	cr_assert_eq(toml_must(t, "a", TOML_ARRAY)->u.arr.n, 0);
	cr_assert_eq(toml_must(t, "b", TOML_ARRAY)->u.arr.n, 3);
	cr_assert_eq(toml_get(t, "b")->u.arr.items[2]->u.i, 3);
	cr_assert_eq(toml_must(t, "c", TOML_ARRAY)->u.arr.n, 2);
	cr_assert_str_eq(toml_get(t, "c")->u.arr.items[1]->u.s, "y");
	cr_assert_eq(toml_get(t, "c")->u.arr.items[1]->line, 6);
	d = toml_must(t, "d", TOML_ARRAY);
	cr_assert_eq(d->u.arr.n, 3);
	cr_assert_eq(d->u.arr.items[1]->u.arr.items[2]->type, TOML_BOOL);
	cr_assert_eq(d->u.arr.items[2]->u.arr.n, 0);
	cr_assert_eq(toml_must(t, "e", TOML_INT)->line, 9);
	toml_free(t);
}

Test(toml, tables_and_arrays_of_tables)
{
	struct toml_table *t = toml_assert_ok("top = 1\n"
				       "[gateway]\n"
				       "port = 8071\n"
				       "[ balancing . weights ]\n"
				       "cpu = 0.3\n"
				       "[balancing]\n"
				       "strategy = \"load\"\n"
				       "[[sfu]]\n"
				       "address = \"a\"\n"
				       "[sfu.extra]\n"
				       "x = 1\n"
				       "[[sfu]]\n"
				       "address = \"b\"\n");
	const struct toml_value *bal, *sfu;

	cr_assert_eq(toml_must(t, "top", TOML_INT)->u.i, 1);
	cr_assert_eq(toml_must(toml_must(t, "gateway", TOML_TABLE)->u.tab, "port", TOML_INT)->u.i,
		     8071);
	bal = toml_must(t, "balancing", TOML_TABLE);
	cr_assert_eq(bal->u.tab->line, 6, "an explicit header moves the line");
	cr_assert_float_eq(toml_must(toml_must(bal->u.tab, "weights", TOML_TABLE)->u.tab, "cpu",
				     TOML_FLOAT)->u.f, 0.3, 1e-12);
	cr_assert_str_eq(toml_must(bal->u.tab, "strategy", TOML_STRING)->u.s, "load");
	sfu = toml_must(t, "sfu", TOML_ARRAY);
	cr_assert_eq(sfu->u.arr.n, 2);
	cr_assert_eq(sfu->u.arr.items[0]->type, TOML_TABLE);
	cr_assert_eq(sfu->u.arr.items[0]->u.tab->line, 8);
	cr_assert_str_eq(toml_must(sfu->u.arr.items[1]->u.tab, "address", TOML_STRING)->u.s, "b");
	cr_assert_not_null(toml_get(sfu->u.arr.items[0]->u.tab, "extra"));
	cr_assert_null(toml_get(sfu->u.arr.items[1]->u.tab, "extra"));
	cr_assert_eq(t->line, 0);
	toml_free(t);
}

Test(toml, line_endings_bom_and_empty)
{
	struct toml_table *t =
		toml_assert_ok("\xef\xbb\xbf# bom\r\na = 1\r\n\r\n[s]\r\nb = \"x\" # c\r\n");

	cr_assert_eq(toml_must(t, "a", TOML_INT)->line, 2);
	cr_assert_str_eq(toml_must(toml_must(t, "s", TOML_TABLE)->u.tab, "b", TOML_STRING)->u.s,
			 "x");
	toml_free(t);
	t = toml_assert_ok("");
	cr_assert_eq(t->n, 0);
	toml_free(t);
	t = toml_assert_ok("\n  \t\n# only comments\n");
	cr_assert_eq(t->n, 0);
	toml_free(t);
}

Test(toml, unsupported_features)
{
	static const char radix[] =
		"t.toml:1: hexadecimal, octal and binary integers are not supported";

	toml_assert_bad("a = 1\nb = { x = 1 }\n", "t.toml:2: inline tables are not supported");
	toml_assert_bad("a.b = 1\n", "t.toml:1: dotted keys are not supported");
	toml_assert_bad("a = \"\"\"x\"\"\"\n", "t.toml:1: multi-line strings are not supported");
	toml_assert_bad("\n\na = '''x'''\n", "t.toml:3: multi-line strings are not supported");
	toml_assert_bad("d = 1979-05-27\n", "t.toml:1: dates and times are not supported");
	toml_assert_bad("d = 07:32:00\n", "t.toml:1: dates and times are not supported");
	toml_assert_bad("d = 1979-05-27T07:32:00Z\n", "t.toml:1: dates and times are not supported");
	toml_assert_bad("h = 0xff\n", radix);
	toml_assert_bad("h = 0o17\n", radix);
	toml_assert_bad("h = 0b101\n", radix);
	toml_assert_bad("f = inf\n", "t.toml:1: inf and nan are not supported");
	toml_assert_bad("f = -inf\n", "t.toml:1: inf and nan are not supported");
	toml_assert_bad("f = nan\n", "t.toml:1: inf and nan are not supported");
	toml_assert_bad("f = +nan\n", "t.toml:1: inf and nan are not supported");
}

Test(toml, duplicates)
{
	toml_assert_bad("[gateway]\nport = 1\nport = 2\n", "t.toml:3: duplicate key 'port'");
	toml_assert_bad("[a]\n[a]\n", "t.toml:2: duplicate table [a]");
	toml_assert_bad("[a.b]\nx = 1\n[a.b]\n", "t.toml:3: duplicate table [a.b]");
	toml_assert_bad("[a]\nx = 1\n[a.x]\n", "t.toml:3: duplicate key 'x' (table [a.x])");
}

Test(toml, redefinitions)
{
	struct toml_table *t;

	/* Implicitly created by [a.b], then defined once: allowed. */
	t = toml_assert_ok("[a.b]\nx = 1\n[a]\ny = 2\n");
	toml_free(t);
	toml_assert_bad("[a.b]\n[a]\nb = 1\n", "t.toml:3: duplicate key 'b'");
	toml_assert_bad("a = []\n[[a]]\n",
		 "t.toml:2: [[a]]: 'a' is already defined and is not an array of tables");
	toml_assert_bad("[[a]]\n[a]\n", "t.toml:2: duplicate key 'a' (table [a])");
	toml_assert_bad("[a]\n[[a]]\n",
		 "t.toml:2: [[a]]: 'a' is already defined and is not an array of tables");
	toml_assert_bad("a = 1\n[a.b]\n", "t.toml:2: key 'a' is already defined and is not a table");
}

Test(toml, string_errors)
{
	toml_assert_bad("a = 1\n\n\n\n\n\n\n\nb = \"open\n", "t.toml:9: unterminated string");
	toml_assert_bad("a = 'open\n", "t.toml:1: unterminated string");
	toml_assert_bad("a = \"open", "t.toml:1: unterminated string");
	toml_assert_bad("a = \"bad \\x escape\"\n", "t.toml:1: invalid escape sequence in string");
	toml_assert_bad("a = \"\\u12\"\n", "t.toml:1: invalid \\u escape: expected 4 hex digits");
	toml_assert_bad("a = \"\\UD800\"\n", "t.toml:1: invalid \\U escape: expected 8 hex digits");
	toml_assert_bad("a = \"\\uD800\"\n", "t.toml:1: escape is not a Unicode scalar value");
	toml_assert_bad("a = \"\\U00110000\"\n", "t.toml:1: escape is not a Unicode scalar value");
	toml_assert_bad("a = \"\\u0000\"\n", "t.toml:1: \\u0000 is not allowed in strings");
	toml_assert_bad("a = \"ctl\x01\"\n", "t.toml:1: control character in string");
	toml_assert_bad("a = 'ctl\x7f'\n", "t.toml:1: control character in string");
	toml_assert_bad("a = \"cr\rx\"\n", "t.toml:1: control character in string");
	toml_assert_bad("# bell \x07\n", "t.toml:1: control character in comment");
	toml_assert_bad("\"a\\nb\" = 1\n", "t.toml:1: control characters in keys are not supported");
}

Test(toml, number_errors)
{
	toml_assert_bad("a = 012\n", "t.toml:1: invalid number");
	toml_assert_bad("a = 1__0\n", "t.toml:1: invalid number");
	toml_assert_bad("a = _1\n", "t.toml:1: invalid value (strings must be quoted)");
	toml_assert_bad("a = 1_\n", "t.toml:1: invalid number");
	toml_assert_bad("a = 1.\n", "t.toml:1: invalid number");
	toml_assert_bad("a = .5\n", "t.toml:1: invalid value (strings must be quoted)");
	toml_assert_bad("a = 1e\n", "t.toml:1: invalid number");
	toml_assert_bad("a = 1.e5\n", "t.toml:1: invalid number");
	toml_assert_bad("a = 1x\n", "t.toml:1: invalid number");
	toml_assert_bad("a = --1\n", "t.toml:1: invalid number");
	toml_assert_bad("a = 1.2.3\n", "t.toml:1: invalid number");
	toml_assert_bad("a = 9223372036854775808\n", "t.toml:1: integer out of range");
	toml_assert_bad("a = -9223372036854775809\n", "t.toml:1: integer out of range");
	toml_assert_bad("a = 1e400\n", "t.toml:1: float out of range");
}

Test(toml, syntax_errors)
{
	toml_assert_bad("a =\n", "t.toml:1: expected a value");
	toml_assert_bad("a = # nothing\n", "t.toml:1: expected a value");
	toml_assert_bad("a = ", "t.toml:1: unexpected end of file: expected a value");
	toml_assert_bad("a 1\n", "t.toml:1: expected '=' after key");
	toml_assert_bad("= 1\n", "t.toml:1: expected a key");
	toml_assert_bad("a = 1 2\n", "t.toml:1: unexpected text after value");
	toml_assert_bad("a = hello\n", "t.toml:1: invalid value (strings must be quoted)");
	toml_assert_bad("a = True\n", "t.toml:1: invalid value (strings must be quoted)");
	toml_assert_bad("a = truex\n", "t.toml:1: invalid value (strings must be quoted)");
	toml_assert_bad("[a] b = 1\n", "t.toml:1: unexpected text after table header");
	toml_assert_bad("[a\n", "t.toml:1: expected ']' to close the table header");
	toml_assert_bad("[[a]\n", "t.toml:1: expected ']]' to close the table header");
	toml_assert_bad("[]\n", "t.toml:1: expected a key");
	toml_assert_bad("[a.]\n", "t.toml:1: expected a key");
	toml_assert_bad("a = [1\n\n", "t.toml:3: unterminated array");
	toml_assert_bad("a = [1 2]\n", "t.toml:1: expected ',' or ']' in array");
	toml_assert_bad("a = [,]\n", "t.toml:1: expected a value");
	toml_assert_bad("a = 1\rb = 2\n", "t.toml:1: carriage return without a line feed");
	toml_assert_bad("a = 1\n\xff\n", "t.toml:2: invalid UTF-8");
	toml_assert_bad("a = \"\xc0\x80\"\n", "t.toml:1: invalid UTF-8");
	toml_assert_bad("\n\na = \"\xed\xa0\x80\"\n", "t.toml:3: invalid UTF-8");
	toml_assert_bad("a = \"\xe2\x82\"", "t.toml:1: invalid UTF-8");
}

Test(toml, nesting_limits)
{
	char text[512];
	struct toml_table *t;
	size_t o;

	/* 32 nested arrays are fine, 33 are not. */
	o = (size_t)snprintf(text, sizeof(text), "a = ");
	for (int i = 0; i < 32; i++)
		text[o++] = '[';
	for (int i = 0; i < 32; i++)
		text[o++] = ']';
	text[o] = '\0';
	t = toml_assert_ok(text);
	toml_free(t);
	o = (size_t)snprintf(text, sizeof(text), "a = ");
	for (int i = 0; i < 33; i++)
		text[o++] = '[';
	text[o] = '\0';
	toml_assert_bad(text, "t.toml:1: arrays nested too deeply (at most 32)");

	o = 0;
	text[o++] = '[';
	for (int i = 0; i < 33; i++)
		o += (size_t)snprintf(text + o, sizeof(text) - o, "%sa", i ? "." : "");
	snprintf(text + o, sizeof(text) - o, "]\n");
	toml_assert_bad(text, "t.toml:1: table name has too many parts (at most 32)");
}

Test(toml, deep_nesting_does_not_recurse_away, .timeout = 10)
{
	/* A megabyte of '[' stops at the depth cap instead of exhausting the stack. */
	size_t n = 1000000;
	char *text = malloc(n + 8);
	struct toml_table *t = NULL;
	char err[256];

	cr_assert_not_null(text);
	memcpy(text, "a = ", 4);
	memset(text + 4, '[', n - 4);
	text[n] = '\0';
	cr_assert_eq(toml_parse_string(text, "t.toml", &t, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.toml:1: arrays nested too deeply (at most 32)");
	free(text);
}

Test(toml, long_lines_and_size_cap, .timeout = 10)
{
	size_t n = 900000;
	char *text = malloc(2 * 1024 * 1024 + 16);
	struct toml_table *t = NULL;
	char err[256];

	cr_assert_not_null(text);
	/* A 900 kB string on one line is fine. */
	memcpy(text, "a = \"", 5);
	memset(text + 5, 'x', n);
	memcpy(text + 5 + n, "\"\n", 3);
	cr_assert_eq(toml_parse_string(text, "t.toml", &t, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(strlen(toml_get(t, "a")->u.s), n);
	toml_free(t);
	/* Over the 1 MiB cap: refused up front. */
	memset(text, '#', 2 * 1024 * 1024);
	text[2 * 1024 * 1024] = '\0';
	cr_assert_eq(toml_parse_string(text, "t.toml", &t, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.toml:1: file is larger than 1048576 bytes");
	free(text);
}

Test(toml, too_many_keys)
{
	size_t cap = 1100 * 16, o = 0;
	char *text = malloc(cap);
	struct toml_table *t = NULL;
	char err[256];

	cr_assert_not_null(text);
	for (int i = 0; i < 1025; i++)
		o += (size_t)snprintf(text + o, cap - o, "k%d = %d\n", i, i);
	cr_assert_eq(toml_parse_string(text, "t.toml", &t, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.toml:1025: too many keys in one table (at most 1024)");
	free(text);
}

Test(toml, error_buffer_is_always_terminated)
{
	struct toml_table *t = NULL;
	char err[8];

	memset(err, 'x', sizeof(err));
	cr_assert_eq(toml_parse_string("a = {", "t.toml", &t, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "t.toml:");
	cr_assert_eq(toml_parse_string("a = {", "t.toml", &t, err, 0), -EINVAL);
	cr_assert_null(t);
}

static char toml_dir[] = "/tmp/test_toml.XXXXXX";

static void toml_dir_setup(void)
{
	cr_assert_not_null(mkdtemp(toml_dir));
}

static void toml_dir_teardown(void)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/f.toml", toml_dir);
	unlink(path);
	rmdir(toml_dir);
}

static void toml_write(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	cr_assert_not_null(f);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

Test(toml, files, .init = toml_dir_setup, .fini = toml_dir_teardown)
{
	static const char nul_file[] = "a = 1\nb = \"x\0y\"\n";
	char path[PATH_MAX], err[PATH_MAX + 64], want[PATH_MAX + 64];
	struct toml_table *t = NULL;

	snprintf(path, sizeof(path), "%s/f.toml", toml_dir);
	toml_write(path, "[gateway]\nport = 1\n", 19);
	cr_assert_eq(toml_parse_file(path, &t, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(toml_get(toml_get(t, "gateway")->u.tab, "port")->u.i, 1);
	toml_free(t);

	toml_write(path, nul_file, sizeof(nul_file) - 1);
	cr_assert_eq(toml_parse_file(path, &t, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:2: NUL byte in file", path);
	cr_assert_str_eq(err, want);
	cr_assert_null(t);

	toml_write(path, "[gateway]\nport = 1\nport = 2\n", 27);
	cr_assert_eq(toml_parse_file(path, &t, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:3: duplicate key 'port'", path);
	cr_assert_str_eq(err, want);

	cr_assert_eq(toml_parse_file(toml_dir, &t, err, sizeof(err)), -EISDIR);
	snprintf(want, sizeof(want), "%s: %s", toml_dir, strerror(EISDIR));
	cr_assert_str_eq(err, want);
	unlink(path);
	cr_assert_eq(toml_parse_file(path, &t, err, sizeof(err)), -ENOENT);
	snprintf(want, sizeof(want), "%s: %s", path, strerror(ENOENT));
	cr_assert_str_eq(err, want);
	cr_assert_null(t);
}

Test(toml, type_names)
{
	cr_assert_str_eq(toml_type_name(TOML_STRING), "string");
	cr_assert_str_eq(toml_type_name(TOML_INT), "integer");
	cr_assert_str_eq(toml_type_name(TOML_FLOAT), "float");
	cr_assert_str_eq(toml_type_name(TOML_BOOL), "boolean");
	cr_assert_str_eq(toml_type_name(TOML_ARRAY), "array");
	cr_assert_str_eq(toml_type_name(TOML_TABLE), "table");
	toml_free(NULL);
	cr_assert_null(toml_get(NULL, "a"));
}

/* xorshift32: a fixed seed keeps the garbage reproducible. */
static uint32_t toml_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* Whatever the input, the parser returns a tree or a one-line "t.toml:N: ..." error. */
static void toml_assert_any(const char *text)
{
	struct toml_table *t = NULL;
	char err[512];
	int rc = toml_parse_string(text, "t.toml", &t, err, sizeof(err));

	if (rc == 0) {
		cr_assert_not_null(t);
		toml_free(t);
		return;
	}
	cr_assert_eq(rc, -EINVAL);
	cr_assert_null(t);
	cr_assert_eq(strncmp(err, "t.toml:", 7), 0, "bad error [%s]", err);
	cr_assert_null(strchr(err, '\n'), "multi-line error [%s]", err);
}

Test(toml, garbage_never_crashes, .timeout = 30)
{
	static const char seed_doc[] = "# c\n[gateway]\nport = 8071\nkey = \"abc\\u00e9\"\n"
				       "w = [1, [2.5, 'x'], true,]\n[[sfu]]\naddress = 'a'\n"
				       "[a.b.c]\nx = -1_0e+2\n";
	static const char alphabet[] = "[]{}=.,#\"'\\\n\r\t _-+:0123456789"
				       "eExtrufalsninf\xc3\xa9\xff";
	uint32_t seed = 0x12345678;
	char buf[256];

	for (int round = 0; round < 20000; round++) {
		size_t n = toml_rand(&seed) % (sizeof(buf) - 1);

		if (round % 2 == 0) {
			/* Random bytes from an alphabet of the grammar's own characters. */
			for (size_t i = 0; i < n; i++)
				buf[i] = alphabet[toml_rand(&seed) % (sizeof(alphabet) - 1)];
			buf[n] = '\0';
		} else {
			/* A valid document with a few bytes changed, cut short at random. */
			n = sizeof(seed_doc) - 1;
			memcpy(buf, seed_doc, n + 1);
			for (int k = 0; k < 3; k++)
				buf[toml_rand(&seed) % n] = (char)(toml_rand(&seed) % 255 + 1);
			buf[toml_rand(&seed) % (n + 1)] = '\0';
		}
		toml_assert_any(buf);
	}
}
