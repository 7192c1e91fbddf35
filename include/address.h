/* Address: an SFU's address as the gateway names it, "http(s)://host[:port]", checked and normalised. */
#ifndef SFU_ADDRESS_H
#define SFU_ADDRESS_H

#include <stddef.h>

#define ADDRESS_MAX 256 /* "http://host:port", NUL included */

/*
 * Parses an SFU address "http(s)://host[:port]" (no path but a lone "/", no
 * query, no credentials): the scheme and a DNS name are lower-cased, an IPv6
 * literal is written canonically in brackets (an IPv4-mapped one as its IPv4
 * address), and a default port (80, 443) is dropped, so one SFU has one name
 * whichever way it was written. An IPv4 address must be dotted decimal: the
 * other forms a resolver reads as one (0x7f.0.0.1, 0177.0.0.1, 2130706433,
 * 127.1) and names whose last label is a number are refused. out gets the
 * normalised form. 0 or -EINVAL.
 */
int address_parse(const char *in, char *out, size_t outlen);
/* The host of a normalised address: a DNS name, or an IP literal without its
 * brackets. 0 or -EINVAL (not an address, or out too small). */
int address_host(const char *address, char *out, size_t outlen);

#endif
