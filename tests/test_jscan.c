/* Unit tests of the allocation-free JSON scanner. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"

static int jscan_t_scan(const char *text)
{
	return jscan_object(text, strlen(text), NULL, NULL);
}

Test(jscan, accepts_valid_objects)
{
	static const char *const ok[] = {
		"{}", " { } ", "{\"a\":1}", "{\"a\": -0.5e+10, \"b\": [1, 2, {\"c\": null}]}",
		"{\"typ\": \"JWT\", \"alg\": \"HS256\"}", "{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\"}",
		"{\"a\":true,\"b\":false,\"c\":null}", "{\"n\":0}", "{\"n\":-0}", "{\"n\":1E5}",
		"{\"deep\":[[[[[[[[[[1]]]]]]]]]]}", "{\"a\":\"\xc3\xa9\"}", "\t\r\n{\"a\":{}}\n",
		"{\"a\":1,\"a\":2}",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		cr_expect_eq(jscan_t_scan(ok[i]), 0, "rejected: %s", ok[i]);
}

Test(jscan, rejects_invalid_documents)
{
	static const char *const bad[] = {
		"", "[]", "1", "\"s\"", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}",
		"{a:1}", "{'a':1}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":1e}",
		"{\"a\":+1}", "{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":tru}", "{\"a\":nul}",
		"{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}", "{\"a\":\"\\u12G4\"}", "{\"a\":\"unterminated}",
		"{\"a\":1} x", "{\"a\":1}{}", "{\"a\":[1,]}", "{\"a\":[1 2]}", "{\"a\" 1}",
		"{\"a\":\"tab\there\"}", "{\"a\":1 /* c */}", "{\"a\":True}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(jscan_t_scan(bad[i]), -EINVAL, "accepted: %s", bad[i]);
	/* A NUL byte anywhere is invalid, inside a string too. */
	cr_expect_eq(jscan_object("{\"a\":\"x\0y\"}", 11, NULL, NULL), -EINVAL);
	cr_expect_eq(jscan_object("{\"a\":1}\0", 8, NULL, NULL), -EINVAL);
}

Test(jscan, depth_is_bounded)
{
	char buf[400];
	size_t n = 0;

	n += (size_t)sprintf(buf + n, "{\"a\":");
	for (int i = 0; i < JSCAN_MAX_DEPTH + 5; i++)
		buf[n++] = '[';
	for (int i = 0; i < JSCAN_MAX_DEPTH + 5; i++)
		buf[n++] = ']';
	buf[n++] = '}';
	cr_expect_eq(jscan_object(buf, n, NULL, NULL), -EINVAL);
}

struct jscan_t_seen {
	int n;
	char keys[8][16];
	enum jscan_type types[8];
	struct jscan_member last;
};

static int jscan_t_collect(const struct jscan_member *m, void *ctx)
{
	struct jscan_t_seen *s = ctx;

	if (s->n < 8) {
		snprintf(s->keys[s->n], sizeof(s->keys[0]), "%.*s", (int)m->key_len, m->key);
		s->types[s->n] = m->type;
	}
	s->n++;
	s->last = *m;
	return 0;
}

Test(jscan, reports_top_level_members_in_order)
{
	const char *t = "{\"s\":\"x\",\"n\":-1.5,\"o\":{\"in\":1},\"a\":[],\"t\":true,\"z\":null}";
	struct jscan_t_seen s = { 0 };

	cr_assert_eq(jscan_object(t, strlen(t), jscan_t_collect, &s), 0);
	cr_assert_eq(s.n, 6, "nested members must not be reported");
	cr_expect_str_eq(s.keys[0], "s");
	cr_expect_eq(s.types[0], JSCAN_STRING);
	cr_expect_eq(s.types[1], JSCAN_NUMBER);
	cr_expect_eq(s.types[2], JSCAN_OBJECT);
	cr_expect_eq(s.types[3], JSCAN_ARRAY);
	cr_expect_eq(s.types[4], JSCAN_TRUE);
	cr_expect_eq(s.types[5], JSCAN_NULL);
}

static int jscan_t_stop(const struct jscan_member *m, void *ctx)
{
	(void)m;
	(void)ctx;
	return 42;
}

Test(jscan, callback_can_stop)
{
	cr_expect_eq(jscan_object("{\"a\":1,\"b\":2}", 13, jscan_t_stop, NULL), 42);
}

Test(jscan, strings_decode)
{
	const char *t = "{\"k\\u0065y\":\"a\\\"b\\\\c\\/d\\u00e9\\ud83d\\ude00\\n\"}";
	struct jscan_t_seen s = { 0 };
	char out[64];

	cr_assert_eq(jscan_object(t, strlen(t), jscan_t_collect, &s), 0);
	cr_expect(jscan_key_is(&s.last, "key"), "escaped key must compare decoded");
	cr_expect(!jscan_key_is(&s.last, "ke"));
	cr_assert_eq(jscan_string(&s.last, out, sizeof(out)), 14);
	cr_expect_str_eq(out, "a\"b\\c/d\xc3\xa9\xf0\x9f\x98\x80\n");
	cr_expect_eq(jscan_string(&s.last, out, 5), -ENOSPC);
	/* A lone surrogate cannot be decoded; \u0000 is counted. */
	t = "{\"a\":\"\\ud800x\"}";
	cr_assert_eq(jscan_object(t, strlen(t), jscan_t_collect, &s), 0);
	cr_expect_eq(jscan_string(&s.last, out, sizeof(out)), -EINVAL);
	t = "{\"a\":\"x\\u0000y\"}";
	cr_assert_eq(jscan_object(t, strlen(t), jscan_t_collect, &s), 0);
	cr_expect_eq(jscan_string(&s.last, out, sizeof(out)), 3);
}

/* An escaped string needs exactly the room its decoded bytes and the NUL take,
 * as the same string written plainly does. */
Test(jscan, escaped_strings_fit_exactly)
{
	const char *t = "{\"a\":\"HS\\u00325\\u0036\"}";
	struct jscan_t_seen s = { 0 };
	char out[8];

	cr_assert_eq(jscan_object(t, strlen(t), jscan_t_collect, &s), 0);
	cr_assert_eq(jscan_string(&s.last, out, 6), 5);
	cr_expect_str_eq(out, "HS256");
	cr_expect_eq(jscan_string(&s.last, out, 5), -ENOSPC);
	/* Two, three and four byte code points: exactly their size. */
	t = "{\"a\":\"\\u00e9\\u20ac\\ud83d\\ude00\"}";
	cr_assert_eq(jscan_object(t, strlen(t), jscan_t_collect, &s), 0);
	{
		char big[10];

		cr_assert_eq(jscan_string(&s.last, big, 10), 9);
		cr_expect_str_eq(big, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
		cr_expect_eq(jscan_string(&s.last, big, 9), -ENOSPC);
	}
}

Test(jscan, numbers)
{
	static const struct {
		const char *text;
		int64_t want;
	} cases[] = {
		{ "{\"n\":1700000000}", 1700000000 }, { "{\"n\":-7}", -7 }, { "{\"n\":1.9}", 1 },
		{ "{\"n\":-1.9}", -1 }, { "{\"n\":1e3}", 1000 }, { "{\"n\":1e400}", INT64_MAX },
		{ "{\"n\":-1e400}", INT64_MIN }, { "{\"n\":0.0}", 0 },
	};
	struct jscan_t_seen s = { 0 };
	int64_t v;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		s.n = 0;
		cr_assert_eq(jscan_object(cases[i].text, strlen(cases[i].text), jscan_t_collect, &s), 0);
		cr_assert_eq(jscan_int64(&s.last, &v), 0);
		cr_expect_eq(v, cases[i].want, "%s gave %lld", cases[i].text, (long long)v);
	}
	cr_assert_eq(jscan_object("{\"n\":\"1\"}", 9, jscan_t_collect, &s), 0);
	cr_expect_eq(jscan_int64(&s.last, &v), -EINVAL, "a string is not a number");
}

/* Builds {"n":<prefix><zeros x count><suffix>} in a heap buffer. */
static char *jscan_t_long_number(const char *prefix, size_t zeros, const char *suffix)
{
	size_t pl = strlen(prefix), sl = strlen(suffix);
	char *t = malloc(6 + pl + zeros + sl + 2);

	cr_assert_not_null(t);
	memcpy(t, "{\"n\":", 5);
	memcpy(t + 5, prefix, pl);
	memset(t + 5 + pl, '0', zeros);
	memcpy(t + 5 + pl + zeros, suffix, sl);
	memcpy(t + 5 + pl + zeros + sl, "}", 2);
	return t;
}

/* Numbers too long for jscan_double's buffer (found by tests/fuzz/fuzz_jscan):
 * they were read as +-HUGE_VAL by their sign alone, so 0.000...1 was infinite
 * and an exp claim written that way never expired. strtod on the whole text
 * is the reference. */
Test(jscan, long_numbers_keep_their_value)
{
	static const struct {
		const char *prefix;
		size_t zeros;
		const char *suffix;
		int64_t want;
	} cases[] = {
		{ "0.", 600, "1", 0 },
		{ "-0.", 600, "5", 0 },
		{ "1", 520, "e-520", 1 },
		{ "1700000030.", 700, "", 1700000030 },
		{ "-1699999999", 0, ".99", -1699999999 },
		{ "0.", 2000, "", 0 },
		{ "-", 0, "0", 0 },
		{ "12345678901234567890", 600, "E-610", 1234567890 },
		{ "9", 600, "", INT64_MAX },
		{ "-9", 600, "", INT64_MIN },
		{ "1", 0, "e-99999999999999999999999", 0 },
		{ "0.", 700, "1e999999999999999999999", INT64_MAX },
	};
	struct jscan_t_seen s = { 0 };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *t = jscan_t_long_number(cases[i].prefix, cases[i].zeros, cases[i].suffix);
		char *num;
		double d, want;
		int64_t v;

		s.n = 0;
		cr_assert_eq(jscan_object(t, strlen(t), jscan_t_collect, &s), 0, "case %zu", i);
		num = strndup(s.last.val, s.last.val_len);
		want = strtod(num, NULL);
		cr_assert_eq(jscan_double(&s.last, &d), 0);
		cr_expect_eq(d, want, "case %zu (%zu chars): %g, strtod says %g", i,
			     s.last.val_len, d, want);
		cr_assert_eq(jscan_int64(&s.last, &v), 0);
		cr_expect_eq(v, cases[i].want, "case %zu gave %lld", i, (long long)v);
		free(num);
		free(t);
	}
}

/* Many significant digits: the value strtod gives for the whole text, digit
 * strings from a fixed pseudo-random sequence. */
Test(jscan, long_numbers_many_digits)
{
	unsigned r = 777;

	for (int round = 0; round < 200; round++) {
		size_t digits = 400 + (size_t)(r % 1200);
		char *t = malloc(digits + 64), *num;
		struct jscan_t_seen s = { 0 };
		size_t n = 0;
		double d;

		cr_assert_not_null(t);
		n += (size_t)sprintf(t, "{\"n\":%s", round & 1 ? "-" : "");
		for (size_t i = 0; i < digits; i++) {
			r = r * 1103515245u + 12345u;
			t[n++] = (char)('0' + (i == 0 ? 1 + (r >> 16) % 9 : (r >> 16) % 10));
			if (i == (size_t)round % 50)
				t[n++] = '.';
		}
		n += (size_t)sprintf(t + n, "e%d}", (int)(r % 800) - 400 - (int)digits);
		cr_assert_eq(jscan_object(t, n, jscan_t_collect, &s), 0);
		num = strndup(s.last.val, s.last.val_len);
		cr_assert_eq(jscan_double(&s.last, &d), 0);
		cr_expect_eq(d, strtod(num, NULL), "round %d: %.17g for %.40s...", round, d, num);
		free(num);
		free(t);
	}
}

/* Random bytes and random cuts of valid documents never crash or overread
 * (ASan watches the exact-size heap copies). */
Test(jscan, random_input_is_safe, .timeout = 20)
{
	static const char seed[] = "{\"iss\": \"https://o:channel:1\", \"exp\": 1.5e9, "
				   "\"a\": [true, false, null, {\"b\": \"\\u00e9\"}]}";
	unsigned r = 12345;

	for (int i = 0; i < 50000; i++) {
		size_t len = (size_t)(r % sizeof(seed));
		char *buf = malloc(len ? len : 1);

		memcpy(buf, seed, len);
		r = r * 1103515245u + 12345u;
		if (len > 0 && (i & 1))
			buf[r % len] = (char)(r >> 16);
		(void)jscan_object(buf, len, NULL, NULL);
		free(buf);
	}
	cr_expect_eq(jscan_object(seed, sizeof(seed) - 1, NULL, NULL), 0);
}
