/* Unit tests of who may read the operators' routes: allowed networks and the bearer token. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "access.h"
#include "cidr.h"

static struct config_tunables acc_t;
static struct http_request acc_req;

/* The tunables with these networks (NULL-terminated) and token. */
static void acc_setup(const char *const *nets, const char *token)
{
	memset(&acc_t, 0, sizeof(acc_t));
	for (size_t i = 0; nets != NULL && nets[i] != NULL; i++)
		cr_assert_eq(cidr_parse(nets[i], &acc_t.obs_allow[acc_t.n_obs_allow++]), 0);
	snprintf(acc_t.obs_token, sizeof(acc_t.obs_token), "%s", token);
}

/* A request from peer with one Authorization header (none when NULL). */
static enum access_verdict acc_check(const char *peer, const char *auth)
{
	memset(&acc_req, 0, sizeof(acc_req));
	snprintf(acc_req.peer, sizeof(acc_req.peer), "%s", peer);
	if (auth != NULL) {
		acc_req.headers[0].name = "authorization";
		acc_req.headers[0].name_len = 13;
		acc_req.headers[0].value = auth;
		acc_req.headers[0].value_len = strlen(auth);
		acc_req.n_headers = 1;
	}
	return access_check(&acc_t, &acc_req);
}

Test(access, networks)
{
	static const char *const nets[] = { "127.0.0.0/8", "::1/128", "10.0.0.0/8",
					     "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", NULL };

	acc_setup(nets, "");
	cr_assert_eq(acc_check("127.0.0.1", NULL), ACCESS_OK);
	cr_assert_eq(acc_check("127.9.8.7", NULL), ACCESS_OK);
	cr_assert_eq(acc_check("::1", NULL), ACCESS_OK);
	cr_assert_eq(acc_check("10.200.0.1", NULL), ACCESS_OK);
	cr_assert_eq(acc_check("172.31.255.255", NULL), ACCESS_OK);
	cr_assert_eq(acc_check("192.168.1.1", NULL), ACCESS_OK);
	cr_assert_eq(acc_check("fd12:3456::1", NULL), ACCESS_OK);
	cr_assert_eq(acc_check("172.32.0.1", NULL), ACCESS_ADDRESS);
	cr_assert_eq(acc_check("8.8.8.8", NULL), ACCESS_ADDRESS);
	cr_assert_eq(acc_check("2001:db8::1", NULL), ACCESS_ADDRESS);
	cr_assert_eq(acc_check("unknown", NULL), ACCESS_ADDRESS);
	cr_assert_eq(acc_check("", NULL), ACCESS_ADDRESS);
	/* Refused for its address before any token is looked at. */
	acc_setup(nets, "tok");
	cr_assert_eq(acc_check("8.8.8.8", "Bearer tok"), ACCESS_ADDRESS);
	/* An empty list allows any address. */
	acc_setup(NULL, "");
	cr_assert_eq(acc_check("8.8.8.8", NULL), ACCESS_OK);
	cr_assert_eq(acc_check("unknown", NULL), ACCESS_OK);
}

Test(access, token)
{
	acc_setup(NULL, "s3cr3t-token");
	cr_assert_eq(acc_check("127.0.0.1", "Bearer s3cr3t-token"), ACCESS_OK);
	cr_assert_eq(acc_check("127.0.0.1", "bearer s3cr3t-token"), ACCESS_OK);
	cr_assert_eq(acc_check("127.0.0.1", "BEARER   s3cr3t-token"), ACCESS_OK);
	cr_assert_eq(acc_check("127.0.0.1", NULL), ACCESS_NO_TOKEN);
	cr_assert_eq(acc_check("127.0.0.1", ""), ACCESS_NO_TOKEN);
	cr_assert_eq(acc_check("127.0.0.1", "Bearer"), ACCESS_NO_TOKEN);
	cr_assert_eq(acc_check("127.0.0.1", "s3cr3t-token"), ACCESS_NO_TOKEN);
	cr_assert_eq(acc_check("127.0.0.1", "Basic s3cr3t-token"), ACCESS_NO_TOKEN);
	cr_assert_eq(acc_check("127.0.0.1", "Bearer "), ACCESS_BAD_TOKEN);
	cr_assert_eq(acc_check("127.0.0.1", "Bearer s3cr3t-toke"), ACCESS_BAD_TOKEN);
	cr_assert_eq(acc_check("127.0.0.1", "Bearer s3cr3t-tokenn"), ACCESS_BAD_TOKEN);
	cr_assert_eq(acc_check("127.0.0.1", "Bearer S3CR3T-TOKEN"), ACCESS_BAD_TOKEN);
	cr_assert_eq(acc_check("127.0.0.1", "Bearer s3cr3t-token extra"), ACCESS_BAD_TOKEN);
	/* Without a token set, any or no header will do. */
	acc_setup(NULL, "");
	cr_assert_eq(acc_check("127.0.0.1", NULL), ACCESS_OK);
	cr_assert_eq(acc_check("127.0.0.1", "Bearer whatever"), ACCESS_OK);
}
