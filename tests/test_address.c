/* Unit tests of SFU address parsing: what is accepted, how it is normalised, what is refused. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "address.h"

Test(address, parse_and_normalise)
{
	static const struct {
		const char *in, *out;
	} good[] = {
		{ "http://10.0.0.3:8070", "http://10.0.0.3:8070" },
		{ "HTTP://SFU.Example.COM:8070/", "http://sfu.example.com:8070" },
		{ "https://sfu.example.com", "https://sfu.example.com" },
		{ "https://sfu.example.com:443", "https://sfu.example.com" },
		{ "http://h:80", "http://h" },
		{ "http://h:443", "http://h:443" },
		{ "http://[::1]:8070", "http://[::1]:8070" },
		{ "http://[0:0::1]", "http://[::1]" },
		{ "https://[FE80::1]:1/", "https://[fe80::1]:1" },
		{ "http://sfu_1:8070", "http://sfu_1:8070" },
		{ "http://a-b.c-d.e:65535", "http://a-b.c-d.e:65535" },
		{ "http://localhost:08070", "http://localhost:8070" },
		{ "http://1.2.3.4", "http://1.2.3.4" },
		/* IPv4-mapped IPv6 is the IPv4 address it maps. */
		{ "http://[::ffff:127.0.0.1]:8070", "http://127.0.0.1:8070" },
		{ "http://[::FFFF:7f00:1]", "http://127.0.0.1" },
		{ "https://[0:0:0:0:0:ffff:a00:1]:443", "https://10.0.0.1" },
		/* Names that merely contain digits or hex-looking labels. */
		{ "http://0x7f.example.com", "http://0x7f.example.com" },
		{ "http://sfu.0xg", "http://sfu.0xg" },
		{ "http://1e100.net", "http://1e100.net" },
	};
	static const char *const bad[] = {
		"", "http://", "http:///", "http://:8070", "ftp://a", "http:/a", "a:8070", "//a",
		"http://a:0", "http://a:65536", "http://a:", "http://a:-1", "http://a:80a",
		"http://a:123456", "http://a/path", "http://a//", "http://a/?", "http://a?x=1",
		"http://a#f", "http://user@a", "http://user:pw@a:1", "http://a b", " http://a",
		"http://a\t", "http://a\n", "http://[::1", "http://[zz]:1", "http://[::1]x",
		"http://[]", "http://[1.2.3.4]", "http://[fe80::1%eth0]", "http://-a.com",
		"http://a-.com", "http://a..com", "http://.a", "http://a.", "http://999.1.1.1",
		"http://1.2.3", "http://123", "http://\xc3\xa9.com", "http://a\\b", "http://a%20b",
		"http://a;b", "https//a",
		/* The other spellings of an IPv4 address: each would alias a dotted one. */
		"http://0x7f.0.0.1:8070", "http://0x7F.0.0.1", "http://0x7f000001",
		"http://2130706433:8070", "http://0177.0.0.1", "http://017700000001",
		"http://127.1", "http://127.0.1", "http://127.000.0.1", "http://0x7f.1",
		"http://1.2.3.4.5", "http://08.0.0.1",
		/* A name ending in a number is read as an IPv4 address by URL parsers. */
		"http://sfu.123", "http://sfu.0x1f", "http://a.0x",
	};
	char out[ADDRESS_MAX], host[300];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		memset(out, 'x', sizeof(out));
		cr_assert_eq(address_parse(good[i].in, out, sizeof(out)), 0, "%s",
			     good[i].in);
		cr_assert_str_eq(out, good[i].out);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(address_parse(bad[i], out, sizeof(out)), -EINVAL, "[%s]",
			     bad[i]);
	/* Label of 63 is fine, 64 is not; the output buffer must fit. */
	snprintf(host, sizeof(host), "http://%063d.example", 0);
	cr_assert_eq(address_parse(host, out, sizeof(out)), 0);
	snprintf(host, sizeof(host), "http://%064d.example", 0);
	cr_assert_eq(address_parse(host, out, sizeof(out)), -EINVAL);
	cr_assert_eq(address_parse("http://abc:1", out, 12), -EINVAL);
	cr_assert_eq(address_parse("http://abc:1", out, 13), 0);
	cr_assert_eq(address_parse(NULL, out, sizeof(out)), -EINVAL);
	memset(host, 'a', sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	memcpy(host, "http://", 7);
	cr_assert_eq(address_parse(host, out, sizeof(out)), -EINVAL);
}
