/* CIDR: networks written as "10.0.0.0/8" or "fd00::/8", and whether an address falls in one. */
#ifndef SFU_CIDR_H
#define SFU_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Plain data (it lives in the live config in shared memory). */
struct cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16]; /* network address, masked to the prefix */
	unsigned prefix;
};

/* Parses "10.0.0.0/8", "::1/128" or a host ("192.168.1.7", a full-length
 * prefix); host bits are masked off. 0 or -EINVAL. */
int cidr_parse(const char *s, struct cidr *out);
/* True when the address (IPv4 or IPv6 text) falls in one of the n networks;
 * an address that does not parse falls in none. */
bool cidr_match(const struct cidr *nets, size_t n, const char *ip);

#endif
