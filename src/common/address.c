/* Address: an SFU's address as the gateway names it, "http(s)://host[:port]", checked and normalised. */
#include "address.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* Whether a label reads as a number to a URL parser (WHATWG's "ends in a number"):
 * decimal digits, or "0x" and hex digits. */
static bool address_label_numeric(const char *l, size_t n)
{
	size_t i = 0;
	bool hex = n >= 2 && l[0] == '0' && l[1] == 'x';

	if (hex)
		i = 2;
	for (; i < n; i++)
		if (!(l[i] >= '0' && l[i] <= '9') &&
		    !(hex && ((l[i] >= 'a' && l[i] <= 'f'))))
			return false;
	return true;
}

/*
 * A DNS name (letters, digits, '-', '_' in dot-separated labels) or a dotted IPv4
 * in its one canonical form. The other ways libc and browsers read as an IPv4
 * address (0x7f.0.0.1, 0177.0.0.1, 2130706433, 127.1) are refused rather than
 * taken for names: the resolver would connect them to the address they alias,
 * and an SFU could then register under a second name for a static SFU's address,
 * or slip past a network allow-list.
 */
static bool address_host_ok(const char *h)
{
	size_t label = 0;
	bool numeric = true;
	struct in_addr a4;
	const char *last = h;

	for (const char *p = h;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || label > 63 || p[-1] == '-' || p[-(long)label] == '-')
				return false;
			if (*p == '\0')
				break;
			label = 0;
			last = p + 1;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_'))
			return false;
		if (*p < '0' || *p > '9')
			numeric = false;
		label++;
	}
	/* All digits and dots must be a real IPv4 address, not "999.1" or "1.2.3". */
	if (numeric)
		return inet_pton(AF_INET, h, &a4) == 1;
	return inet_aton(h, &a4) == 0 && !address_label_numeric(last, strlen(last));
}

int address_parse(const char *in, char *out, size_t outlen)
{
	char host[ADDRESS_MAX], canon[INET6_ADDRSTRLEN];
	const char *scheme, *p, *start;
	unsigned long port = 0, default_port;
	size_t n;
	int w;

	if (in == NULL || out == NULL || strlen(in) >= ADDRESS_MAX)
		return -EINVAL;
	if (strncasecmp(in, "http://", 7) == 0) {
		scheme = "http";
		default_port = 80;
		p = in + 7;
	} else if (strncasecmp(in, "https://", 8) == 0) {
		scheme = "https";
		default_port = 443;
		p = in + 8;
	} else {
		return -EINVAL;
	}
	if (*p == '[') {
		struct in6_addr a6;
		const char *close = strchr(p, ']');

		n = close ? (size_t)(close - p - 1) : 0;
		if (n == 0 || n >= sizeof(canon))
			return -EINVAL;
		memcpy(canon, p + 1, n);
		canon[n] = '\0';
		if (inet_pton(AF_INET6, canon, &a6) != 1)
			return -EINVAL;
		/* An IPv4-mapped address ([::ffff:10.0.0.1]) is that IPv4 address, and
		 * is written so: one SFU, one name. */
		if (IN6_IS_ADDR_V4MAPPED(&a6)) {
			if (inet_ntop(AF_INET, &a6.s6_addr[12], canon, sizeof(canon)) == NULL)
				return -EINVAL;
			snprintf(host, sizeof(host), "%s", canon);
		} else {
			if (inet_ntop(AF_INET6, &a6, canon, sizeof(canon)) == NULL)
				return -EINVAL;
			snprintf(host, sizeof(host), "[%s]", canon);
		}
		p = close + 1;
	} else {
		start = p;
		while (*p != '\0' && *p != ':' && *p != '/')
			p++;
		n = (size_t)(p - start);
		if (n == 0 || n > 253)
			return -EINVAL;
		for (size_t i = 0; i < n; i++)
			host[i] = (start[i] >= 'A' && start[i] <= 'Z') ? (char)(start[i] + 32)
								       : start[i];
		host[n] = '\0';
		if (!address_host_ok(host))
			return -EINVAL;
	}
	if (*p == ':') {
		start = ++p;
		while (*p >= '0' && *p <= '9' && p - start < 6)
			port = port * 10 + (unsigned long)(*p++ - '0');
		if (p == start || p - start > 5 || port < 1 || port > 65535)
			return -EINVAL;
	}
	/* "http://h:1/" is a common way to write the root: accept that slash alone. */
	if (*p == '/' && p[1] == '\0')
		p++;
	if (*p != '\0')
		return -EINVAL;
	if (port == default_port)
		port = 0;
	if (port != 0)
		w = snprintf(out, outlen, "%s://%s:%lu", scheme, host, port);
	else
		w = snprintf(out, outlen, "%s://%s", scheme, host);
	return w < 0 || (size_t)w >= outlen ? -EINVAL : 0;
}

int address_host(const char *address, char *out, size_t outlen)
{
	const char *h = strstr(address, "://"), *end;
	size_t n;

	if (h == NULL)
		return -EINVAL;
	h += 3;
	if (*h == '[') {
		h++;
		end = strchr(h, ']');
	} else {
		end = strchr(h, ':');
		if (end == NULL)
			end = h + strlen(h);
	}
	if (end == NULL || end == h)
		return -EINVAL;
	n = (size_t)(end - h);
	if (n >= outlen)
		return -EINVAL;
	memcpy(out, h, n);
	out[n] = '\0';
	return 0;
}
