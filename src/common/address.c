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

/* A DNS name (letters, digits, '-', '_' in dot-separated labels) or a dotted IPv4. */
static bool address_host_ok(const char *h)
{
	size_t label = 0;
	bool numeric = true;
	struct in_addr a4;

	for (const char *p = h;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || label > 63 || p[-1] == '-' || p[-(long)label] == '-')
				return false;
			if (*p == '\0')
				break;
			label = 0;
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
	return !numeric || inet_pton(AF_INET, h, &a4) == 1;
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
		if (inet_pton(AF_INET6, canon, &a6) != 1 ||
		    inet_ntop(AF_INET6, &a6, canon, sizeof(canon)) == NULL)
			return -EINVAL;
		snprintf(host, sizeof(host), "[%s]", canon);
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
