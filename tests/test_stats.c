/* Unit tests of the streaming /v1/stats reader: odoo/sfu's real shape, any size, any split. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

/* One channel as odoo/sfu's Channel.getStats() writes it (about 260 bytes). */
static int st_channel(char *out, size_t outlen, unsigned i, unsigned sessions)
{
	return snprintf(out, outlen,
			"{\"createDate\":\"2026-11-27T16:20:40.123Z\","
			"\"uuid\":\"0f5c3a9e-1b2d-4e6f-8a9b-%012u\","
			"\"remoteAddress\":\"203.0.113.%u\","
			"\"sessionsStats\":{\"incomingBitRate\":{\"audio\":0,\"camera\":0,"
			"\"screen\":0,\"total\":0},\"count\":%u,\"cameraCount\":0,"
			"\"screenCount\":0},\"webRtcEnabled\":false}",
			i, i % 256, sessions);
}

/* A /v1/stats answer of n channels with i % 7 sessions each; *sessions gets the sum. */
static char *st_body(unsigned n, uint64_t *sessions, size_t *len)
{
	size_t cap = 64 + (size_t)n * 320, o = 0;
	char *b = malloc(cap);

	cr_assert_not_null(b);
	*sessions = 0;
	b[o++] = '[';
	for (unsigned i = 0; i < n; i++) {
		if (i > 0)
			b[o++] = ',';
		o += (size_t)st_channel(b + o, cap - o, i, i % 7);
		*sessions += i % 7;
	}
	b[o++] = ']';
	b[o] = '\0';
	*len = o;
	return b;
}

static int st_parse(const char *text, uint32_t *ch, uint32_t *se)
{
	return stats_parse(text, strlen(text), ch, se);
}

Test(stats, real_shape)
{
	char one[512];
	char body[1100];
	uint32_t ch = 99, se = 99;

	st_channel(one, sizeof(one), 1, 3);
	snprintf(body, sizeof(body), "[%s,%s]", one, one);
	cr_assert_eq(st_parse(body, &ch, &se), 0);
	cr_assert_eq(ch, 2);
	cr_assert_eq(se, 6);
	cr_assert_eq(st_parse("[]", &ch, &se), 0);
	cr_assert_eq(ch, 0);
	cr_assert_eq(se, 0);
	cr_assert_eq(st_parse(" \r\n\t[ ] \n", &ch, &se), 0);
}

/* 10,000 channels (2.6 MB) fed in every piece size from 1 byte up give the same counts:
 * the state crosses any boundary, including inside escapes, numbers and literals. */
Test(stats, thousands_of_channels_in_any_pieces)
{
	uint64_t want;
	size_t len;
	char *b = st_body(10000, &want, &len);
	static const size_t pieces[] = { 1, 2, 3, 7, 64, 1000, 65536, 1 << 20 };

	cr_assert_gt(len, 2500000);
	for (size_t k = 0; k < sizeof(pieces) / sizeof(pieces[0]); k++) {
		struct stats_parser p;
		uint32_t ch = 0, se = 0;

		stats_init(&p);
		for (size_t o = 0; o < len; o += pieces[k]) {
			size_t n = len - o < pieces[k] ? len - o : pieces[k];

			cr_assert_eq(stats_feed(&p, b + o, n), 0, "piece %zu at %zu", pieces[k], o);
		}
		cr_assert_eq(stats_finish(&p, &ch, &se), 0);
		cr_assert_eq(ch, 10000);
		cr_assert_eq(se, want, "pieces of %zu: %u sessions, want %llu", pieces[k], se,
			     (unsigned long long)want);
	}
	free(b);
}

/* Only sessionsStats.count counts (odoo/sfu never sends anything else); last member wins. */
Test(stats, members_and_duplicates)
{
	uint32_t ch, se;

	cr_assert_eq(st_parse("[{\"sessionsCount\":4},{\"sessionsStats\":{\"count\":2}}]", &ch, &se),
		     0);
	cr_assert_eq(ch, 2);
	cr_assert_eq(se, 2);
	/* Duplicates: the last one, as JSON.parse keeps it. */
	cr_assert_eq(st_parse("[{\"sessionsStats\":{\"count\":2,\"count\":9}}]", &ch, &se), 0);
	cr_assert_eq(se, 9);
	cr_assert_eq(st_parse("[{\"sessionsStats\":{\"count\":2},\"sessionsStats\":{}}]", &ch, &se),
		     0);
	cr_assert_eq(se, 0);
	cr_assert_eq(st_parse("[{\"sessionsStats\":{\"count\":2},\"sessionsStats\":null}]", &ch, &se),
		     0);
	cr_assert_eq(se, 0);
	/* A name written with escapes is the same name. */
	cr_assert_eq(st_parse("[{\"sessions\\u0053tats\":{\"c\\u006funt\":5}}]", &ch, &se), 0);
	cr_assert_eq(se, 5);
	/* Counts elsewhere are not counted: nested deeper, or outside a channel. */
	cr_assert_eq(st_parse("[{\"x\":{\"sessionsStats\":{\"count\":5}}},[{\"sessionsStats\":{\"count\":3}}]]",
			      &ch, &se),
		     0);
	cr_assert_eq(ch, 2);
	cr_assert_eq(se, 0);
	/* Counts that are not non-negative integers count 0. */
	cr_assert_eq(st_parse("[{\"sessionsStats\":{\"count\":-3}},{\"sessionsStats\":{\"count\":2.5}},"
			      "{\"sessionsStats\":{\"count\":1e2}},{\"sessionsStats\":{\"count\":\"7\"}},"
			      "{\"sessionsStats\":{\"count\":true}}]",
			      &ch, &se),
		     0);
	cr_assert_eq(ch, 5);
	cr_assert_eq(se, 0);
	/* Elements that are not objects are channels too (the array's length). */
	cr_assert_eq(st_parse("[1,\"a\",null,[],{}]", &ch, &se), 0);
	cr_assert_eq(ch, 5);
}

/* Sums saturate instead of wrapping (a huge count once wrapped the total to 0). */
Test(stats, sums_saturate)
{
	uint32_t ch, se;

	cr_assert_eq(st_parse("[{\"sessionsStats\":{\"count\":4294967295}},{\"sessionsStats\":{\"count\":1}}]", &ch, &se), 0);
	cr_assert_eq(se, UINT32_MAX);
	cr_assert_eq(st_parse("[{\"sessionsStats\":{\"count\":18446744073709551615}},{\"sessionsStats\":{\"count\":1}}]", &ch,
			      &se),
		     0);
	cr_assert_eq(se, UINT32_MAX);
	cr_assert_eq(st_parse("[{\"sessionsStats\":{\"count\":99999999999999999999999999}}]", &ch, &se), 0);
	cr_assert_eq(se, UINT32_MAX);
}

/* Strict JSON, like JSON.parse: anything else is refused, and the refusal sticks. */
Test(stats, malformed_refused)
{
	static const char *const bad[] = {
		"", " ", "{}", "1", "\"x\"", "null", "[", "[1,]", "[,1]", "[1 2]", "[{\"a\"}]",
		"[{\"a\":}]", "[{\"a\":1,}]", "[{1:2}]", "[] x", "[][]", "[01]", "[1.]", "[.5]",
		"[1e]", "[-]", "[tru]", "[True]", "[nul]", "[\"\\x\"]", "[\"\\u12G4\"]",
		"[\"a\nb\"]", "[\"abc]", "[{\"a\":1]", "[}", "[1]]", "// c\n[]", "[NaN]",
		"[Infinity]", "['a']",
	};
	uint32_t ch, se;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(st_parse(bad[i], &ch, &se), -EINVAL, "accepted: %s", bad[i]);
}

/* Nesting is bounded; the bound itself is accepted. */
Test(stats, depth_bounded)
{
	char deep[STATS_DEPTH_MAX * 2 + 8];
	size_t o = 0;
	uint32_t ch, se;

	for (int i = 0; i < STATS_DEPTH_MAX; i++)
		deep[o++] = '[';
	for (int i = 0; i < STATS_DEPTH_MAX; i++)
		deep[o++] = ']';
	deep[o] = '\0';
	cr_assert_eq(stats_parse(deep, o, &ch, &se), 0);
	memmove(deep + 1, deep, o + 1);
	deep[0] = '[';
	deep[o + 1] = ']';
	deep[o + 2] = '\0';
	cr_assert_eq(stats_parse(deep, o + 2, &ch, &se), -EINVAL);
}

/* An error is sticky: later bytes and finish keep refusing. */
Test(stats, error_sticks)
{
	struct stats_parser p;
	uint32_t ch, se;

	stats_init(&p);
	cr_assert_eq(stats_feed(&p, "[1,,", 4), -EINVAL);
	cr_assert_eq(stats_feed(&p, "2]", 2), -EINVAL);
	cr_assert_eq(stats_finish(&p, &ch, &se), -EINVAL);
	/* A document cut short is not complete. */
	stats_init(&p);
	cr_assert_eq(stats_feed(&p, "[{\"x\":3}", 8), 0);
	cr_assert_eq(stats_finish(&p, &ch, &se), -EINVAL);
}
