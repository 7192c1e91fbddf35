/* Address: an SFU's address as the gateway names it, "http(s)://host[:port]", checked and normalised. */
#ifndef SFU_ADDRESS_H
#define SFU_ADDRESS_H

#include <stddef.h>

#define ADDRESS_MAX 256 /* "http://host:port", NUL included */

/*
 * Parses an SFU address "http(s)://host[:port]" (no path but a lone "/", no
 * query, no credentials): the scheme and a DNS name are lower-cased, an IPv6
 * literal is written canonically in brackets, and a default port (80, 443)
 * is dropped, so one SFU has one name whichever way it was written. out gets
 * the normalised form. 0 or -EINVAL.
 */
int address_parse(const char *in, char *out, size_t outlen);

#endif
