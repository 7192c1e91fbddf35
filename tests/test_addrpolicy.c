/* Unit tests of the registration address policy: what a self-registering SFU may be. */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include "addrpolicy.h"
#include "cidr.h"

/* Tunables with these networks as sfu_networks (NULL-terminated; NULL: none). */
static struct config_tunables ap_tunables(const char *const *nets)
{
	struct config_tunables t;

	memset(&t, 0, sizeof(t));
	for (size_t i = 0; nets != NULL && nets[i] != NULL; i++)
		cr_assert_eq(cidr_parse(nets[i], &t.sfu_networks[t.n_sfu_networks++]), 0, "%s",
			     nets[i]);
	return t;
}

static void ap_expect(const struct config_tunables *t, const char *address, bool allowed,
		      const char *needle)
{
	char why[256] = "";
	int rc = addrpolicy_check(t, address, why, sizeof(why));

	cr_expect_eq(rc, allowed ? 0 : -EACCES, "%s: %d (%s)", address, rc, why);
	if (!allowed && needle != NULL)
		cr_expect(strstr(why, needle) != NULL, "%s: reason '%s' lacks '%s'", address, why,
			  needle);
}

/* Never an SFU, with or without networks listed (even networks that contain them). */
static const char *const ap_never[] = {
	"http://169.254.169.254",	"http://169.254.169.254:8070", "http://169.254.170.2",
	"http://100.100.100.200",	"http://[fd00:ec2::254]",     "http://0.0.0.0:8070",
	"http://0.1.2.3",		"http://[::]:8070",	      "http://224.0.0.1",
	"http://239.255.255.250:1900", "http://[ff02::1]",	      "http://255.255.255.255",
	"http://localhost:8070",	"http://localhost",	      "http://sfu.localhost:1",
	"http://metadata.google.internal", "http://metadata",	      "http://metadata.goog",
	"http://instance-data",	"http://instance-data.ec2.internal",
};

Test(addrpolicy, default_policy)
{
	struct config_tunables t = ap_tunables(NULL);

	for (size_t i = 0; i < sizeof(ap_never) / sizeof(ap_never[0]); i++)
		ap_expect(&t, ap_never[i], false, NULL);
	ap_expect(&t, "http://169.254.169.254", false, "metadata");
	ap_expect(&t, "http://metadata.google.internal", false, "metadata");
	ap_expect(&t, "http://169.254.10.10:8070", false, "link-local");
	ap_expect(&t, "http://[fe80::1]:8070", false, "link-local");
	ap_expect(&t, "http://[febf::1]", false, "link-local");
	/* Any other address or name. */
	ap_expect(&t, "http://10.0.0.5:8070", true, NULL);
	ap_expect(&t, "http://127.0.0.1:8070", true, NULL);
	ap_expect(&t, "http://192.168.1.20", true, NULL);
	ap_expect(&t, "http://[::1]:8070", true, NULL);
	ap_expect(&t, "http://[fd00::5]:8070", true, NULL);
	ap_expect(&t, "http://[fec0::1]", true, NULL);
	ap_expect(&t, "http://169.253.255.255", true, NULL);
	ap_expect(&t, "http://sfu1.example.com:8070", true, NULL);
	ap_expect(&t, "http://localhost.example.com", true, NULL);
	ap_expect(&t, "http://metadata.example.com", true, NULL);
}

Test(addrpolicy, networks_listed)
{
	static const char *const nets[] = { "10.0.0.0/8", "fd00::/8", "169.254.0.0/16",
					    "0.0.0.0/0", NULL };
	static const char *const only10[] = { "10.0.0.0/8", NULL };
	struct config_tunables t = ap_tunables(nets), t10 = ap_tunables(only10);

	/* Even a list that contains them does not let these in. */
	for (size_t i = 0; i < sizeof(ap_never) / sizeof(ap_never[0]); i++)
		ap_expect(&t, ap_never[i], false, NULL);
	/* Link-local once listed. */
	ap_expect(&t, "http://169.254.10.10:8070", true, NULL);
	ap_expect(&t, "http://[fd00::5]:8070", true, NULL);
	ap_expect(&t, "http://192.168.1.1", true, NULL);
	/* Only what is listed; names never. */
	ap_expect(&t10, "http://10.1.2.3:8070", true, NULL);
	ap_expect(&t10, "http://11.1.2.3:8070", false, "sfu_networks");
	ap_expect(&t10, "http://127.0.0.1:8070", false, "sfu_networks");
	ap_expect(&t10, "http://[::1]:8070", false, "sfu_networks");
	ap_expect(&t10, "http://169.254.10.10", false, "sfu_networks");
	ap_expect(&t10, "http://sfu1.example.com:8070", false, "DNS name");
	ap_expect(&t, "http://sfu1.example.com", false, "DNS name");
}
