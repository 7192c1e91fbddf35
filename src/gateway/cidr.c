/* CIDR: networks written as "10.0.0.0/8" or "fd00::/8", and whether an address falls in one. */
#include "cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

int cidr_parse(const char *s, struct cidr *out)
{
	char buf[INET6_ADDRSTRLEN];
	struct cidr cidr = { .family = AF_INET };
	const char *slash;
	unsigned max = 32, prefix;
	size_t alen;

	if (s == NULL || out == NULL)
		return -EINVAL;
	slash = strchr(s, '/');
	alen = slash ? (size_t)(slash - s) : strlen(s);
	if (alen == 0 || alen >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (inet_pton(AF_INET, buf, cidr.addr) != 1) {
		if (inet_pton(AF_INET6, buf, cidr.addr) != 1)
			return -EINVAL;
		cidr.family = AF_INET6;
		max = 128;
	}
	prefix = max;
	if (slash != NULL) {
		const char *p = slash + 1;

		prefix = 0;
		if (*p == '\0' || strlen(p) > 3)
			return -EINVAL;
		for (; *p != '\0'; p++) {
			if (*p < '0' || *p > '9')
				return -EINVAL;
			prefix = prefix * 10 + (unsigned)(*p - '0');
		}
		if (prefix > max)
			return -EINVAL;
	}
	cidr.prefix = prefix;
	for (unsigned i = 0; i < max / 8; i++) {
		unsigned bits = prefix > i * 8 ? prefix - i * 8 : 0;

		if (bits < 8)
			cidr.addr[i] &= (uint8_t)(0xffu << (8 - bits));
	}
	*out = cidr;
	return 0;
}

bool cidr_match(const struct cidr *nets, size_t n, const char *ip)
{
	struct cidr peer;

	/* An address, not a network: a prefix in it is not an address. */
	if (ip == NULL || strchr(ip, '/') != NULL || cidr_parse(ip, &peer) != 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		const struct cidr *a = &nets[i];
		unsigned full = a->prefix / 8, rest = a->prefix % 8;

		if (a->family != peer.family)
			continue;
		if (memcmp(a->addr, peer.addr, full) != 0)
			continue;
		if (rest != 0 && ((a->addr[full] ^ peer.addr[full]) & (0xff00 >> rest) & 0xff) != 0)
			continue;
		return true;
	}
	return false;
}
