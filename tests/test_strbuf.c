/* Unit tests of the text buffer that /metrics and /v1/health are rendered into. */
#include <criterion/criterion.h>

#include <json.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "strbuf.h"

Test(strbuf, integers_as_printf_writes_them)
{
	static const uint64_t u[] = { 0, 1, 9, 10, 99, 100, 12345, 4294967295ULL, UINT64_MAX };
	static const int64_t s[] = { 0, -1, 1, -9, -10, 1000, INT64_MAX, INT64_MIN };
	struct strbuf b = { 0 };
	char want[64];

	for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
		strbuf_reset(&b);
		strbuf_u64(&b, u[i]);
		snprintf(want, sizeof(want), "%llu", (unsigned long long)u[i]);
		cr_assert_str_eq(b.buf, want);
		cr_assert_eq(b.len, strlen(want));
	}
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		strbuf_reset(&b);
		strbuf_i64(&b, s[i]);
		snprintf(want, sizeof(want), "%lld", (long long)s[i]);
		cr_assert_str_eq(b.buf, want);
	}
	strbuf_free(&b);
}

Test(strbuf, milliseconds_as_seconds_with_three_decimals)
{
	static const int64_t ms[] = { 0, 1, 9, 10, 999, 1000, 1001, 123456, -1, -1250, 86400000 };
	struct strbuf b = { 0 };
	char want[64];

	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
		strbuf_reset(&b);
		strbuf_ms_seconds(&b, ms[i]);
		snprintf(want, sizeof(want), "%.3f", (double)ms[i] / 1000.0);
		cr_assert_str_eq(b.buf, want, "%lld ms", (long long)ms[i]);
	}
	strbuf_free(&b);
}

Test(strbuf, grows_and_printf_fits_any_length)
{
	struct strbuf b = { 0 };
	char big[10000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (int i = 0; i < 100; i++)
		strbuf_printf(&b, "%d:%s;", i, i % 10 == 0 ? big : "y");
	cr_assert_not(b.failed);
	cr_assert_eq(b.len, strlen(b.buf));
	cr_assert_eq(strncmp(b.buf, "0:xxx", 5), 0);
	cr_assert_neq(strstr(b.buf, ";99:y;"), NULL);
	strbuf_reset(&b);
	cr_assert_eq(b.len, 0);
	cr_assert_str_eq(b.buf, "");
	strbuf_free(&b);
}

/* Every byte, escaped, parses back (json-c) to the same string. */
Test(strbuf, json_strings_round_trip)
{
	struct strbuf b = { 0 };
	char in[256];
	struct json_object *o;

	for (int i = 1; i < 256; i++)
		in[i - 1] = (char)(i < 128 ? i : 'a' + i % 26);
	in[255] = '\0';
	strbuf_puts(&b, "{\"s\":\"");
	strbuf_json(&b, in);
	strbuf_puts(&b, "\",\"u\":\"");
	strbuf_json(&b, "r\xc3\xa9gion \"eu\"\\west");
	strbuf_puts(&b, "\"}");
	o = json_tokener_parse(b.buf);
	cr_assert_not_null(o, "not JSON: %s", b.buf);
	cr_assert_str_eq(json_object_get_string(json_object_object_get(o, "s")), in);
	cr_assert_str_eq(json_object_get_string(json_object_object_get(o, "u")),
			 "r\xc3\xa9gion \"eu\"\\west");
	json_object_put(o);
	strbuf_free(&b);
}

Test(strbuf, stops_at_its_limit_and_says_so)
{
	struct strbuf b = { 0 };
	static char chunk[1 << 20];

	memset(chunk, 'z', sizeof(chunk));
	for (size_t i = 0; i <= STRBUF_MAX / sizeof(chunk); i++)
		strbuf_put(&b, chunk, sizeof(chunk));
	cr_assert(b.failed);
	cr_assert_lt(b.len, STRBUF_MAX);
	/* Nothing more is appended once it failed. */
	strbuf_puts(&b, "more");
	cr_assert_eq(b.buf[b.len - 1], 'z');
	strbuf_free(&b);
}

Test(strbuf, doubles_as_printf_g_writes_them)
{
	static const double d[] = { 0.0, -0.0, 1.0, -1.0, 0.5, 0.005, 0.123456789, 12.5,
				    999999.0, 1000000.0, -999999.0, 1e-7, 123456789.0, 3.0e15,
				    0.1 + 0.2, 1.0 / 3.0, 100.0, 42.0, NAN, INFINITY };
	struct strbuf b = { 0 };
	char want[64];

	for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
		strbuf_reset(&b);
		strbuf_g(&b, d[i]);
		snprintf(want, sizeof(want), "%g", d[i]);
		cr_assert_str_eq(b.buf, want, "%.17g", d[i]);
	}
	strbuf_free(&b);
}
