/* Unit tests of CIDR parsing and matching: the registration allow-list's rules. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "cidr.h"

Test(cidr, parse)
{
	static const struct {
		const char *in;
		int family;
		unsigned prefix;
		const char *addr;
	} good[] = {
		{ "10.1.2.3/8", AF_INET, 8, "10.0.0.0" },
		{ "192.168.1.7", AF_INET, 32, "192.168.1.7" },
		{ "1.2.3.4/23", AF_INET, 23, "1.2.2.0" },
		{ "255.255.255.255/0", AF_INET, 0, "0.0.0.0" },
		{ "10.0.0.1/32", AF_INET, 32, "10.0.0.1" },
		{ "::1/128", AF_INET6, 128, "::1" },
		{ "2001:db8:ffff::ff/33", AF_INET6, 33, "2001:db8:8000::" },
		{ "fe80::1", AF_INET6, 128, "fe80::1" },
		{ "::ffff:10.1.2.3/104", AF_INET6, 104, "::ffff:10.0.0.0" },
		{ "::/0", AF_INET6, 0, "::" },
	};
	static const char *const bad[] = {
		"", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/8/8", "10.0.0.0/+8",
		"10.0.0.0/ 8", "10.0.0/8", "abc", "10.0.0.0/0008", "1.2.3.4 ", "[::1]/128",
		"10.0.0.0/-1", "1:2:3:4:5:6:7:8:9", "10.0.0.0/8x",
	};
	struct cidr c;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		uint8_t want[16] = { 0 };

		cr_assert_eq(cidr_parse(good[i].in, &c), 0, "%s", good[i].in);
		cr_assert_eq(c.family, good[i].family, "%s", good[i].in);
		cr_assert_eq(c.prefix, good[i].prefix, "%s", good[i].in);
		cr_assert_eq(inet_pton(good[i].family, good[i].addr, want), 1);
		cr_assert_eq(memcmp(c.addr, want, 16), 0, "%s", good[i].in);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(cidr_parse(bad[i], &c), -EINVAL, "[%s]", bad[i]);
	cr_assert_eq(cidr_parse(NULL, &c), -EINVAL);
}

/* Matching: prefixes at and off byte boundaries, both families, nothing across them. */
Test(cidr, match)
{
	static const char *const list[] = { "10.0.0.0/8", "192.168.1.128/25", "fd00::/8",
					    "2001:db8::1" };
	struct cidr nets[4];

	for (int i = 0; i < 4; i++)
		cr_assert_eq(cidr_parse(list[i], &nets[i]), 0);
	cr_assert(cidr_match(nets, 4, "10.255.1.2"));
	cr_assert_not(cidr_match(nets, 4, "11.0.0.1"));
	cr_assert(cidr_match(nets, 4, "192.168.1.128"));
	cr_assert(cidr_match(nets, 4, "192.168.1.255"));
	cr_assert_not(cidr_match(nets, 4, "192.168.1.127"));
	cr_assert(cidr_match(nets, 4, "fdab::7"));
	cr_assert_not(cidr_match(nets, 4, "fe80::1"));
	cr_assert(cidr_match(nets, 4, "2001:db8::1"));
	cr_assert_not(cidr_match(nets, 4, "2001:db8::2"));
	/* An IPv4 network does not match an IPv6 address, even a mapped one. */
	cr_assert_not(cidr_match(nets, 4, "::ffff:10.0.0.1"));
	/* What does not parse matches nothing; an empty list matches nothing. */
	cr_assert_not(cidr_match(nets, 4, "10.0.0.1/8"));
	cr_assert_not(cidr_match(nets, 4, "localhost"));
	cr_assert_not(cidr_match(nets, 4, ""));
	cr_assert_not(cidr_match(nets, 0, "10.0.0.1"));
	/* /0 matches its whole family. */
	cr_assert_eq(cidr_parse("0.0.0.0/0", &nets[0]), 0);
	cr_assert(cidr_match(nets, 1, "203.0.113.9"));
	cr_assert_not(cidr_match(nets, 1, "::1"));
}
