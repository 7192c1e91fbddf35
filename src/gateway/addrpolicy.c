/* Address policy: which addresses a self-registering SFU may have ([registration] sfu_networks). */
#include "addrpolicy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cidr.h"

/* Never an SFU, whatever the configuration says. */
static const char *const addrpolicy_never_nets[] = {
	"169.254.169.254/32", /* AWS, GCP, Azure, OpenStack... instance metadata */
	"169.254.170.2/32", /* AWS ECS task metadata */
	"100.100.100.200/32", /* Alibaba Cloud metadata */
	"fd00:ec2::254/128", /* AWS instance metadata over IPv6 */
	"0.0.0.0/8", /* "this host": connecting to 0.0.0.0 reaches the loopback */
	"::/128",
	"224.0.0.0/4", /* multicast */
	"ff00::/8",
	"255.255.255.255/32",
};
static const char *const addrpolicy_never_names[] = {
	"localhost", "metadata", "metadata.google.internal", "metadata.goog", "instance-data",
	"instance-data.ec2.internal",
};
/* Refused unless sfu_networks lists them. */
static const char *const addrpolicy_link_local[] = { "169.254.0.0/16", "fe80::/10" };

#define ADDRPOLICY_N(a) (sizeof(a) / sizeof((a)[0]))

/* The networks above, parsed once per process. */
static struct {
	bool ready;
	struct cidr never[ADDRPOLICY_N(addrpolicy_never_nets)];
	struct cidr link_local[ADDRPOLICY_N(addrpolicy_link_local)];
} addrpolicy_nets;

static void addrpolicy_init(void)
{
	if (addrpolicy_nets.ready)
		return;
	/* Constant strings, checked by the tests: they parse. */
	for (size_t i = 0; i < ADDRPOLICY_N(addrpolicy_never_nets); i++)
		cidr_parse(addrpolicy_never_nets[i], &addrpolicy_nets.never[i]);
	for (size_t i = 0; i < ADDRPOLICY_N(addrpolicy_link_local); i++)
		cidr_parse(addrpolicy_link_local[i], &addrpolicy_nets.link_local[i]);
	addrpolicy_nets.ready = true;
}

/* The host of a normalised address, brackets of an IPv6 literal removed, into out;
 * *ip says whether it is an IP literal. 0 or -EINVAL. */
static int addrpolicy_host(const char *address, char *out, size_t outlen, bool *ip)
{
	const char *p = strstr(address, "://"), *end;
	size_t n;

	if (p == NULL)
		return -EINVAL;
	p += 3;
	if (*p == '[') {
		end = strchr(++p, ']');
		*ip = true;
	} else {
		end = strchr(p, ':');
		if (end == NULL)
			end = p + strlen(p);
		/* address_parse lets only dotted decimal IPv4 through as a number. */
		*ip = strspn(p, "0123456789.") == (size_t)(end - p);
	}
	if (end == NULL)
		return -EINVAL;
	n = (size_t)(end - p);
	if (n == 0 || n >= outlen)
		return -EINVAL;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

static bool addrpolicy_name_never(const char *host)
{
	size_t n = strlen(host);

	for (size_t i = 0; i < ADDRPOLICY_N(addrpolicy_never_names); i++)
		if (strcmp(host, addrpolicy_never_names[i]) == 0)
			return true;
	/* RFC 6761: every name under localhost is the loopback. */
	return n > 10 && strcmp(host + n - 10, ".localhost") == 0;
}

int addrpolicy_check(const struct config_tunables *t, const char *address, char *why,
		     size_t whylen)
{
	char host[CONFIG_ADDRESS_MAX];
	bool ip = false;

	addrpolicy_init();
	if (addrpolicy_host(address, host, sizeof(host), &ip) != 0) {
		snprintf(why, whylen, "not an SFU address");
		return -EACCES;
	}
	if (!ip) {
		if (addrpolicy_name_never(host)) {
			snprintf(why, whylen, "%s is a local or cloud metadata name", host);
			return -EACCES;
		}
		if (t->n_sfu_networks > 0) {
			snprintf(why, whylen,
				 "a DNS name; with [registration] sfu_networks set, SFUs register "
				 "by IP address");
			return -EACCES;
		}
		return 0;
	}
	if (cidr_match(addrpolicy_nets.never, ADDRPOLICY_N(addrpolicy_nets.never), host)) {
		snprintf(why, whylen,
			 "%s is a cloud metadata, unspecified, multicast or broadcast address",
			 host);
		return -EACCES;
	}
	if (t->n_sfu_networks > 0) {
		if (!cidr_match(t->sfu_networks, t->n_sfu_networks, host)) {
			snprintf(why, whylen, "%s is outside [registration] sfu_networks", host);
			return -EACCES;
		}
		return 0;
	}
	if (cidr_match(addrpolicy_nets.link_local, ADDRPOLICY_N(addrpolicy_nets.link_local),
		       host)) {
		snprintf(why, whylen,
			 "%s is link-local (list it in [registration] sfu_networks to allow it)",
			 host);
		return -EACCES;
	}
	return 0;
}
