/* Integration tests of GET /v1/channel: the real daemon in front of mock SFUs, over sockets. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <json.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* 33 and 34 byte keys; the SFU's is padded standard base64 on purpose. */
#define CHAN_GW_KEY "Z2F0ZXdheS1zZWNyZXQta2V5LWZvci10ZXN0cy0wMDAx"
#define CHAN_SFU_KEY "c2Z1LXNlY3JldC1rZXktZm9yLWNoYW5uZWwtdGVzdHMtOQ=="
/* Odoo's header, with Python's json.dumps spacing. */
#define CHAN_ODOO_HEADER "{\"typ\": \"JWT\", \"alg\": \"HS256\"}"
#define CHAN_MAX_MOCKS 6

#define CHAN_ERR_MISSING "{\"error\":\"missing authorization\"}"
#define CHAN_ERR_INVALID "{\"error\":\"invalid token\"}"
#define CHAN_ERR_NO_SFU "{\"error\":\"no SFU instances available\"}"
#define CHAN_ERR_CONTACT "{\"error\":\"failed to contact SFU\"}"
#define CHAN_ERR_RESPONSE "{\"error\":\"invalid SFU response\"}"

/* What one test started: a gateway and the mocks it was configured with. */
struct chan_env {
	struct harness_proc *gw;
	struct harness_proc *mock[CHAN_MAX_MOCKS];
	int n;
};

/* ---- tokens, built here independently of src/common/token.c */

/* A fresh issuer per call: the gateway keeps repeats of (client, iss) on one SFU,
 * which tests of the selection must not trip over. */
static const char *chan_iss(void)
{
	static char bufs[4][96];
	static int seq;
	char *b = bufs[seq % 4];

	snprintf(b, sizeof(bufs[0]), "https://odoo.example.com:channel:%d%03d",
		 (int)getpid() % 100000, seq++);
	return b;
}

/* Odoo's claims with a relative exp, plus extra members (",\"a\": 1" style). */
static const char *chan_claims(const char *iss, const char *extra)
{
	static char buf[2][8192];
	static int next;
	char *b = buf[next++ % 2];

	snprintf(b, sizeof(buf[0]),
		 "{\"iss\": \"%s\", \"key\": \"6f1d7a52-8d67-4c6e-a1f1-0c7e2f6f2f4d\", "
		 "\"exp\": %lld%s}",
		 iss, (long long)time(NULL) + 30, extra ? extra : "");
	return b;
}

/* An Odoo token for a fresh issuer, signed with the gateway key. */
static const char *chan_odoo(void)
{
	return harness_token_ex(CHAN_ODOO_HEADER, chan_claims(chan_iss(), NULL), CHAN_GW_KEY,
				EVP_sha256(), false);
}

/* Length of "header.payload" of a token (up to the second dot), 0 if there is none. */
static size_t chan_signed_len(const char *tok)
{
	const char *d1 = strchr(tok, '.');
	const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;

	return d2 ? (size_t)(d2 - tok) : 0;
}

/* ---- processes */

/* SFU_GATEWAY_NODES for the mocks with the given regions (all with CHAN_SFU_KEY). */
static const char *chan_nodes(struct harness_proc *const *mocks, const char *const *regions,
			      int n)
{
	static char buf[4096];
	size_t o = 0;

	o += (size_t)snprintf(buf + o, sizeof(buf) - o, "SFU_GATEWAY_NODES={\"sfu\":[");
	for (int i = 0; i < n; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o,
				      "%s{\"address\":\"http://127.0.0.1:%d\",\"region\":\"%s\","
				      "\"key\":\"%s\"}",
				      i ? "," : "", mocks[i]->port, regions[i], CHAN_SFU_KEY);
	snprintf(buf + o, sizeof(buf) - o, "]}");
	return buf;
}

/* Starts the gateway with the key, the nodes entry (may be NULL), extra env entries and
 * args (NULL: one worker). */
static struct harness_proc *chan_gateway(const char *nodes, const char *const *env_extra,
					 const char *const *args)
{
	static const char *const one_worker[] = { "--workers", "1", NULL };
	const char *env[16];
	int n = 0;

	env[n++] = "SFU_GATEWAY_KEY=" CHAN_GW_KEY;
	if (nodes != NULL)
		env[n++] = nodes;
	for (int i = 0; env_extra != NULL && env_extra[i] != NULL && n < 15; i++)
		env[n++] = env_extra[i];
	env[n] = NULL;
	return harness_gateway_up(env, args ? args : one_worker);
}

/* Starts n mocks (same extra args each) in the given regions, then the gateway. */
static void chan_start(struct chan_env *e, const char *const *regions, int n,
		       const char *const *mock_args, const char *const *env_extra,
		       const char *const *gw_args)
{
	memset(e, 0, sizeof(*e));
	cr_assert(n <= CHAN_MAX_MOCKS);
	for (int i = 0; i < n; i++) {
		e->mock[i] = harness_mock_start(CHAN_SFU_KEY, mock_args);
		cr_assert_not_null(e->mock[i], "mock %d did not start", i);
	}
	e->n = n;
	e->gw = chan_gateway(chan_nodes(e->mock, regions, n), env_extra, gw_args);
}

/* One gateway in front of one eu-west mock with the given mock args. */
static void chan_start1(struct chan_env *e, const char *const *mock_args)
{
	static const char *const regions[] = { "eu-west" };

	chan_start(e, regions, 1, mock_args, NULL, NULL);
}

/* ---- HTTP */

/* GET path with "Authorization: jwt <token>" (none when token is NULL) and extra
 * header lines. The response is heap-allocated (it is large); free it. */
static struct harness_resp *chan_get(int port, const char *path, const char *token,
				     const char *extra)
{
	static char headers[20000];
	struct harness_resp *r = calloc(1, sizeof(*r));
	int rc;

	cr_assert_not_null(r);
	snprintf(headers, sizeof(headers), "%s%s%s%s", token ? "Authorization: jwt " : "",
		 token ? token : "", token ? "\r\n" : "", extra ? extra : "");
	rc = harness_get(port, path, headers, r);
	cr_assert_eq(rc, 0, "GET %s on port %d failed: %s", path, port, strerror(-rc));
	return r;
}

/* Asserts a response's status and, for a JSON error, its exact body and Content-Type. */
static void chan_expect(struct harness_resp *r, int status, const char *body)
{
	char ct[128] = "";

	cr_assert_eq(r->status, status, "status %d, expected %d; body: %s", r->status, status,
		     r->body);
	if (body != NULL) {
		cr_assert_str_eq(r->body, body);
		cr_assert(harness_resp_header(r, "Content-Type", ct, sizeof(ct)),
			  "no Content-Type: %s", r->head);
		cr_assert(strncmp(ct, "application/json", 16) == 0, "Content-Type %s", ct);
	}
	free(r);
}

/* One /v1/channel request with the token; asserts status and body. */
static void chan_assert_token(int port, const char *token, int status, const char *body)
{
	chan_expect(chan_get(port, "/v1/channel", token, NULL), status, body);
}

/* A string member of o, "" when absent or not a string. */
static const char *chan_jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return "";
	return json_object_get_string(v);
}

/* A counter of the mock's /mock/stats. */
static int64_t chan_stat(const struct harness_proc *m, const char *key)
{
	return harness_mock_int(m, "/mock/stats", key);
}

/* The value of the first header of the last /v1/channel request named name
 * (case-insensitive) and how many there were. Points into last. */
static const char *chan_last_header(json_object *last, const char *name, int *count)
{
	json_object *hs;
	const char *first = NULL;
	size_t n;

	*count = 0;
	cr_assert(json_object_object_get_ex(last, "headers", &hs));
	n = json_object_array_length(hs);
	for (size_t i = 0; i < n; i++) {
		json_object *h = json_object_array_get_idx(hs, i);
		const char *hn = json_object_get_string(json_object_array_get_idx(h, 0));

		if (strcasecmp(hn, name) != 0)
			continue;
		if (first == NULL)
			first = json_object_get_string(json_object_array_get_idx(h, 1));
		(*count)++;
	}
	return first;
}

/* A channel request with a query; returns the index of the mock that served it. */
static int chan_route(const struct chan_env *e, const char *query)
{
	char path[256];
	struct harness_resp *r;
	int who;

	snprintf(path, sizeof(path), "/v1/channel%s", query);
	r = chan_get(e->gw->port, path, chan_odoo(), NULL);
	cr_assert_eq(r->status, 200, "%s: status %d %s", path, r->status, r->body);
	who = harness_served_by(e->mock, e->n, r->body);
	cr_assert(who >= 0, "%s: answer from no known mock: %s", path, r->body);
	free(r);
	return who;
}

/* ---- 1. status mapping of the existing gateway */

Test(channel_status, no_authorization, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;

	chan_start1(&e, NULL);
	chan_assert_token(e.gw->port, NULL, 401, CHAN_ERR_MISSING);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 0);
}

Test(channel_status, scheme_without_token, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;

	chan_start1(&e, NULL);
	chan_expect(chan_get(e.gw->port, "/v1/channel", NULL, "Authorization: jwt\r\n"), 401,
		    CHAN_ERR_MISSING);
	chan_expect(chan_get(e.gw->port, "/v1/channel", NULL, "Authorization: jwt \r\n"), 401,
		    CHAN_ERR_MISSING);
	chan_expect(chan_get(e.gw->port, "/v1/channel", NULL, "Authorization:\r\n"), 401,
		    CHAN_ERR_MISSING);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 0);
}

Test(channel_status, bad_token, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;

	chan_start1(&e, NULL);
	chan_assert_token(e.gw->port, "abc.def.ghi", 401, CHAN_ERR_INVALID);
	chan_assert_token(e.gw->port, "garbage", 401, CHAN_ERR_INVALID);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 0);
}

Test(channel_status, empty_registry, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = chan_gateway(NULL, NULL, NULL);

	chan_assert_token(gw->port, chan_odoo(), 503, CHAN_ERR_NO_SFU);
}

Test(channel_status, sfu_unreachable, .fini = harness_cleanup, .timeout = 30)
{
	char nodes[512];
	struct harness_proc *gw;

	/* A port that was free a moment ago: nothing listens there. */
	snprintf(nodes, sizeof(nodes),
		 "SFU_GATEWAY_NODES={\"sfu\":[{\"address\":\"http://127.0.0.1:%d\","
		 "\"region\":\"eu-west\",\"key\":\"%s\"}]}",
		 harness_free_port(), CHAN_SFU_KEY);
	gw = chan_gateway(nodes, NULL, NULL);
	chan_assert_token(gw->port, chan_odoo(), 502, CHAN_ERR_CONTACT);
}

Test(channel_status, sfu_body_without_uuid, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const args[] = { "--garbage", NULL };
	struct chan_env e;

	chan_start1(&e, args);
	chan_assert_token(e.gw->port, chan_odoo(), 502, CHAN_ERR_RESPONSE);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 1);
}

Test(channel_status, sfu_body_not_json, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const args[] = { "--garbage-bytes", NULL };
	struct chan_env e;

	chan_start1(&e, args);
	chan_assert_token(e.gw->port, chan_odoo(), 502, CHAN_ERR_RESPONSE);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 1);
}

Test(channel_status, sfu_resets, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const args[] = { "--reset", NULL };
	struct chan_env e;

	chan_start1(&e, args);
	chan_assert_token(e.gw->port, chan_odoo(), 502, CHAN_ERR_CONTACT);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 1);
}

/* An SFU that never answers must not make Odoo (3 s timeout) wait for nothing: the
 * gateway gives up at its deadline (shortened here to keep the test quick). */
Test(channel_status, sfu_hangs, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const regions[] = { "eu-west" };
	static const char *const mock_args[] = { "--hang", NULL };
	const char *args[] = { "--workers", "1", "--config", NULL, NULL };
	struct chan_env e;
	int64_t t0, took;

	args[3] = harness_write_file("deadline.toml",
				     "[failover]\nretry_timeout_ms = 800\ndeadline_ms = 800\n");
	chan_start(&e, regions, 1, mock_args, NULL, args);
	t0 = harness_now_ms();
	chan_assert_token(e.gw->port, chan_odoo(), 502, CHAN_ERR_CONTACT);
	took = harness_now_ms() - t0;
	cr_assert(took >= 700 && took < 2500, "answered after %lld ms", (long long)took);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 1);
}

/* The SFU's non-2xx status comes back as is, with an empty body. */
static void chan_assert_relay(const char *status)
{
	const char *const args[] = { "--fail-status", status, NULL };
	struct chan_env e;
	struct harness_resp *r;
	char cl[32] = "";

	chan_start1(&e, args);
	r = chan_get(e.gw->port, "/v1/channel", chan_odoo(), NULL);
	cr_assert_eq(r->status, atoi(status), "status %d, expected %s", r->status, status);
	cr_assert_eq(r->body_len, 0, "body: %s", r->body);
	if (harness_resp_header(r, "Content-Length", cl, sizeof(cl)))
		cr_assert_str_eq(cl, "0");
	free(r);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 1);
}

Test(channel_status, sfu_status_418, .fini = harness_cleanup, .timeout = 30)
{
	chan_assert_relay("418");
}

Test(channel_status, sfu_status_404, .fini = harness_cleanup, .timeout = 30)
{
	chan_assert_relay("404");
}

Test(channel_status, sfu_status_429, .fini = harness_cleanup, .timeout = 30)
{
	chan_assert_relay("429");
}

Test(channel_status, success_body_verbatim, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;
	struct harness_resp *r, *direct;
	const char *iss = chan_iss();
	char ct[128] = "", want_url[64];

	chan_start1(&e, NULL);
	r = chan_get(e.gw->port, "/v1/channel",
		     harness_token_ex(CHAN_ODOO_HEADER, chan_claims(iss, NULL), CHAN_GW_KEY,
				      EVP_sha256(), false),
		     NULL);
	cr_assert_eq(r->status, 200, "status %d: %s", r->status, r->body);
	cr_assert(harness_resp_header(r, "Content-Type", ct, sizeof(ct)));
	cr_assert(strncmp(ct, "application/json", 16) == 0, "Content-Type %s", ct);
	snprintf(want_url, sizeof(want_url), "http://127.0.0.1:%d", e.mock[0]->port);
	cr_assert_str_eq(harness_json_str(r->body, "url"), want_url);
	cr_assert_eq(strlen(harness_json_str(r->body, "uuid")), 36, "%s", r->body);
	/* The mock is idempotent per (remote, iss) and sees 127.0.0.1 both times, so asking
	 * it directly gives back the very body the gateway must have relayed. */
	direct = chan_get(e.mock[0]->port, "/v1/channel",
			  harness_token_ex(CHAN_ODOO_HEADER, chan_claims(iss, NULL), CHAN_SFU_KEY,
					   EVP_sha256(), false),
			  NULL);
	cr_assert_eq(direct->status, 200);
	cr_assert_eq(r->body_len, direct->body_len, "gateway %s, SFU %s", r->body, direct->body);
	cr_assert(memcmp(r->body, direct->body, r->body_len) == 0, "gateway %s, SFU %s", r->body,
		  direct->body);
	cr_assert_eq(chan_stat(e.mock[0], "channels"), 1);
	free(r);
	free(direct);
}

/* ---- 2. token edge cases */

Test(channel_token, odoo_token, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;

	chan_start1(&e, NULL);
	chan_assert_token(e.gw->port, harness_odoo_token(chan_iss(), CHAN_GW_KEY), 200, NULL);
	cr_assert_eq(chan_stat(e.mock[0], "channels_created"), 1);
}

Test(channel_token, alg_none, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;

	chan_start1(&e, NULL);
	chan_assert_token(e.gw->port,
			  harness_token_ex("{\"typ\": \"JWT\", \"alg\": \"none\"}",
					   chan_claims(chan_iss(), NULL), NULL, NULL, false),
			  401, CHAN_ERR_INVALID);
	/* Nor is an HS256 signature under a header that says none. */
	chan_assert_token(e.gw->port,
			  harness_token_ex("{\"typ\": \"JWT\", \"alg\": \"none\"}",
					   chan_claims(chan_iss(), NULL), CHAN_GW_KEY, EVP_sha256(),
					   false),
			  401, CHAN_ERR_INVALID);
	/* An HS256 header with the signature left off is no better. */
	chan_assert_token(e.gw->port,
			  harness_token_ex(CHAN_ODOO_HEADER, chan_claims(chan_iss(), NULL), NULL,
					   NULL, false),
			  401, CHAN_ERR_INVALID);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 0);
}

Test(channel_token, hs512, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;

	chan_start1(&e, NULL);
	chan_assert_token(e.gw->port,
			  harness_token_ex("{\"typ\": \"JWT\", \"alg\": \"HS512\"}",
					   chan_claims(chan_iss(), NULL), CHAN_GW_KEY, EVP_sha512(),
					   false),
			  401, CHAN_ERR_INVALID);
	/* Nor an HS256 signature under a header that says HS512, */
	chan_assert_token(e.gw->port,
			  harness_token_ex("{\"typ\": \"JWT\", \"alg\": \"HS512\"}",
					   chan_claims(chan_iss(), NULL), CHAN_GW_KEY, EVP_sha256(),
					   false),
			  401, CHAN_ERR_INVALID);
	/* nor an HS512 signature under a header that says HS256. */
	chan_assert_token(e.gw->port,
			  harness_token_ex(CHAN_ODOO_HEADER, chan_claims(chan_iss(), NULL),
					   CHAN_GW_KEY, EVP_sha512(), false),
			  401, CHAN_ERR_INVALID);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 0);
}

Test(channel_token, bad_signature, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;
	char tok[4096];
	size_t sig;

	chan_start1(&e, NULL);
	snprintf(tok, sizeof(tok), "%s", chan_odoo());
	sig = chan_signed_len(tok) + 1;
	/* A character in the middle: every one of its bits is significant. */
	tok[sig + 10] = tok[sig + 10] == 'A' ? 'B' : 'A';
	chan_assert_token(e.gw->port, tok, 401, CHAN_ERR_INVALID);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 0);
}

Test(channel_token, signed_with_sfu_key, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;

	chan_start1(&e, NULL);
	chan_assert_token(e.gw->port, harness_odoo_token(chan_iss(), CHAN_SFU_KEY), 401,
			  CHAN_ERR_INVALID);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 0);
}

Test(channel_token, expired, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;
	char claims[512];

	chan_start1(&e, NULL);
	snprintf(claims, sizeof(claims), "{\"iss\": \"%s\", \"exp\": %lld}", chan_iss(),
		 (long long)time(NULL) - 5);
	chan_assert_token(e.gw->port,
			  harness_token_ex(CHAN_ODOO_HEADER, claims, CHAN_GW_KEY, EVP_sha256(),
					   false),
			  401, CHAN_ERR_INVALID);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 0);
}

Test(channel_token, nbf_in_future, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;
	char extra[64];

	chan_start1(&e, NULL);
	snprintf(extra, sizeof(extra), ", \"nbf\": %lld", (long long)time(NULL) + 60);
	chan_assert_token(e.gw->port,
			  harness_token_ex(CHAN_ODOO_HEADER, chan_claims(chan_iss(), extra),
					   CHAN_GW_KEY, EVP_sha256(), false),
			  401, CHAN_ERR_INVALID);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 0);
}

Test(channel_token, iat_skew, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;
	char extra[64];

	chan_start1(&e, NULL);
	/* The SFU refuses iat > now + 60 and accepts anything below. */
	snprintf(extra, sizeof(extra), ", \"iat\": %lld", (long long)time(NULL) + 120);
	chan_assert_token(e.gw->port,
			  harness_token_ex(CHAN_ODOO_HEADER, chan_claims(chan_iss(), extra),
					   CHAN_GW_KEY, EVP_sha256(), false),
			  401, CHAN_ERR_INVALID);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 0);
	snprintf(extra, sizeof(extra), ", \"iat\": %lld", (long long)time(NULL) + 30);
	chan_assert_token(e.gw->port,
			  harness_token_ex(CHAN_ODOO_HEADER, chan_claims(chan_iss(), extra),
					   CHAN_GW_KEY, EVP_sha256(), false),
			  200, NULL);
	cr_assert_eq(chan_stat(e.mock[0], "channels_created"), 1);
}

Test(channel_token, missing_iss, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;
	struct harness_resp *r;
	char claims[256], ct[128] = "";

	chan_start1(&e, NULL);
	snprintf(claims, sizeof(claims), "{\"key\": \"k\", \"exp\": %lld}",
		 (long long)time(NULL) + 30);
	r = chan_get(e.gw->port, "/v1/channel",
		     harness_token_ex(CHAN_ODOO_HEADER, claims, CHAN_GW_KEY, EVP_sha256(),
				      false),
		     NULL);
	cr_assert_eq(r->status, 403, "status %d: %s", r->status, r->body);
	cr_assert(strstr(r->body, "\"error\"") != NULL, "%s", r->body);
	cr_assert(harness_resp_header(r, "Content-Type", ct, sizeof(ct)));
	cr_assert(strncmp(ct, "application/json", 16) == 0, "Content-Type %s", ct);
	free(r);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 0);
}

Test(channel_token, segment_count, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;
	char tok[4096];

	chan_start1(&e, NULL);
	snprintf(tok, sizeof(tok), "%s", chan_odoo());
	*strrchr(tok, '.') = '\0';
	chan_assert_token(e.gw->port, tok, 401, CHAN_ERR_INVALID);
	snprintf(tok, sizeof(tok), "%s.AAAA", chan_odoo());
	chan_assert_token(e.gw->port, tok, 401, CHAN_ERR_INVALID);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 0);
}

Test(channel_token, oversized, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;
	struct harness_resp *r;
	char extra[8000];
	int pad = 7600; /* a token of about 10 KB */

	chan_start1(&e, NULL);
	memcpy(extra, ", \"pad\": \"", 10);
	memset(extra + 10, 'x', (size_t)pad);
	snprintf(extra + 10 + pad, sizeof(extra) - 10 - (size_t)pad, "\"");
	r = chan_get(e.gw->port, "/v1/channel",
		     harness_token_ex(CHAN_ODOO_HEADER, chan_claims(chan_iss(), extra), CHAN_GW_KEY,
				      EVP_sha256(), false),
		     NULL);
	cr_assert(r->status == 401 || r->status == 431, "status %d", r->status);
	free(r);
	/* The worker survived: the next connection gets an answer. */
	r = chan_get(e.gw->port, "/noop", NULL, NULL);
	cr_assert_eq(r->status, 200);
	free(r);
	cr_assert_eq(chan_stat(e.mock[0], "channel_requests"), 0);
}

/* A large token that still fits the 8 KiB request head goes through. */
Test(channel_token, large_but_legal, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;
	json_object *last;
	char extra[6000];
	const char *tok;
	int pad = 5000;

	chan_start1(&e, NULL);
	memcpy(extra, ", \"pad\": \"", 10);
	memset(extra + 10, 'x', (size_t)pad);
	snprintf(extra + 10 + pad, sizeof(extra) - 10 - (size_t)pad, "\"");
	tok = harness_token_ex(CHAN_ODOO_HEADER, chan_claims(chan_iss(), extra), CHAN_GW_KEY,
			       EVP_sha256(), false);
	cr_assert(strlen(tok) > 6800, "%zu", strlen(tok));
	chan_assert_token(e.gw->port, tok, 200, NULL);
	last = harness_mock_json(e.mock[0], "/mock/last");
	cr_assert(json_object_get_boolean(json_object_object_get(last, "verified")));
	cr_assert(strncmp(chan_jstr(last, "token"), tok, chan_signed_len(tok) + 1) == 0);
	json_object_put(last);
}

/* Padded standard base64 in all three segments, as Node's toString("base64") writes. */
Test(channel_token, standard_base64_padded, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;
	const char *tok = NULL, *hdr = "{\"alg\": \"HS256\"}"; /* 16 bytes: "==" */
	const char *iss = chan_iss();
	json_object *last;
	char extra[64];
	size_t sl;

	chan_start1(&e, NULL);
	/* Find a payload that shows the standard alphabet and padding. */
	for (int i = 0; i < 1000 && tok == NULL; i++) {
		const char *t, *payload_end;

		snprintf(extra, sizeof(extra), ", \"n\": \"?>~%d\"", i);
		t = harness_token_ex(hdr, chan_claims(iss, extra), CHAN_GW_KEY, EVP_sha256(), true);
		payload_end = t + chan_signed_len(t);
		if (strchr(t, '+') && strchr(t, '/') && payload_end[-1] == '=')
			tok = t;
	}
	cr_assert_not_null(tok);
	cr_assert(strstr(tok, "==.") != NULL && tok[strlen(tok) - 1] == '=', "%s", tok);
	chan_assert_token(e.gw->port, tok, 200, NULL);
	last = harness_mock_json(e.mock[0], "/mock/last");
	cr_assert(json_object_get_boolean(json_object_object_get(last, "verified")));
	sl = chan_signed_len(tok);
	cr_assert(strncmp(chan_jstr(last, "token"), tok, sl + 1) == 0,
		  "header and payload changed: %s vs %s", chan_jstr(last, "token"), tok);
	json_object_put(last);
}

Test(channel_token, urlsafe_unpadded, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;
	const char *tok = NULL, *iss = chan_iss();
	char extra[64];

	chan_start1(&e, NULL);
	for (int i = 0; i < 1000 && tok == NULL; i++) {
		const char *t;

		snprintf(extra, sizeof(extra), ", \"n\": \"?>~%d\"", i);
		t = harness_token_ex(CHAN_ODOO_HEADER, chan_claims(iss, extra), CHAN_GW_KEY,
				     EVP_sha256(), false);
		if (strchr(t, '-') && strchr(t, '_'))
			tok = t;
	}
	cr_assert_not_null(tok);
	cr_assert_null(strchr(tok, '='));
	chan_assert_token(e.gw->port, tok, 200, NULL);
	cr_assert_eq(chan_stat(e.mock[0], "channels_created"), 1);
}

Test(channel_token, bearer_scheme, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;
	char h[4096];

	chan_start1(&e, NULL);
	/* The SFU reads the second word whatever the first one is. */
	snprintf(h, sizeof(h), "Authorization: Bearer %s\r\n", chan_odoo());
	chan_expect(chan_get(e.gw->port, "/v1/channel", NULL, h), 200, NULL);
	cr_assert_eq(chan_stat(e.mock[0], "channels_created"), 1);
}

/* ---- 3. re-signing */

Test(channel_resign, token_resigned_for_sfu, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;
	json_object *last;
	char tok[4096], want_auth[4200];
	const char *got, *auth;
	size_t sl;
	int count;

	chan_start1(&e, NULL);
	snprintf(tok, sizeof(tok), "%s", chan_odoo());
	chan_assert_token(e.gw->port, tok, 200, NULL);
	last = harness_mock_json(e.mock[0], "/mock/last");
	got = chan_jstr(last, "token");
	sl = chan_signed_len(tok);
	cr_assert(json_object_get_boolean(json_object_object_get(last, "verified")),
		  "the SFU could not verify the forwarded token");
	cr_assert_eq(json_object_get_int(json_object_object_get(last, "status")), 200);
	cr_assert_eq(chan_signed_len(got), sl, "%s vs %s", got, tok);
	cr_assert(memcmp(got, tok, sl + 1) == 0, "header/payload changed: %s vs %s", got, tok);
	cr_assert_str_neq(got, tok, "the gateway's signature was forwarded unchanged");
	/* Exactly one Authorization header, with the scheme word Odoo uses. */
	auth = chan_last_header(last, "Authorization", &count);
	cr_assert_eq(count, 1);
	snprintf(want_auth, sizeof(want_auth), "jwt %s", got);
	cr_assert_str_eq(auth, want_auth);
	json_object_put(last);
}

Test(channel_resign, unknown_claim_survives, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;
	json_object *last;
	char tok[4096];
	const char *iss = chan_iss();
	size_t sl;

	chan_start1(&e, NULL);
	snprintf(tok, sizeof(tok), "%s",
		 harness_token_ex(CHAN_ODOO_HEADER,
			chan_claims(iss, ", \"custom\":{\"a\":[1,2]}, \"z\": \"\\u00e9\""),
				  CHAN_GW_KEY, EVP_sha256(), false));
	chan_assert_token(e.gw->port, tok, 200, NULL);
	last = harness_mock_json(e.mock[0], "/mock/last");
	sl = chan_signed_len(tok);
	cr_assert(json_object_get_boolean(json_object_object_get(last, "verified")));
	cr_assert(strncmp(chan_jstr(last, "token"), tok, sl + 1) == 0, "%s vs %s",
		  chan_jstr(last, "token"), tok);
	cr_assert_str_eq(chan_jstr(last, "iss"), iss);
	json_object_put(last);
}

/* ---- 4. query filtering */

/* The request target the mock saw for a gateway request with this path. */
static void chan_assert_target(const char *path, const char *want)
{
	struct chan_env e;
	json_object *last;

	chan_start1(&e, NULL);
	chan_expect(chan_get(e.gw->port, path, chan_odoo(), NULL), 200, NULL);
	last = harness_mock_json(e.mock[0], "/mock/last");
	cr_assert_str_eq(chan_jstr(last, "target"), want, "for %s", path);
	json_object_put(last);
}

Test(channel_query, hints_removed_rest_kept, .fini = harness_cleanup, .timeout = 30)
{
	chan_assert_target("/v1/channel?webRTC=false&region=eu-west&x=%2Fa%20b&country=FR&y=1&y=2",
			  "/v1/channel?webRTC=false&x=%2Fa%20b&y=1&y=2");
}

Test(channel_query, edges_of_the_list, .fini = harness_cleanup, .timeout = 30)
{
	/* No stray '&' where a hint was first or last; empty values, bare names, '+'
	 * and names that merely contain "region" travel untouched. */
	chan_assert_target("/v1/channel?region=eu-west&a=1&b=&c&d=x+y&regionx=1&xcountry=2"
			  "&country=",
			  "/v1/channel?a=1&b=&c&d=x+y&regionx=1&xcountry=2");
}

Test(channel_query, no_query, .fini = harness_cleanup, .timeout = 30)
{
	chan_assert_target("/v1/channel", "/v1/channel");
}

Test(channel_query, only_region, .fini = harness_cleanup, .timeout = 30)
{
	chan_assert_target("/v1/channel?region=eu-west", "/v1/channel");
}

Test(channel_query, only_hints, .fini = harness_cleanup, .timeout = 30)
{
	chan_assert_target("/v1/channel?country=fr&region=eu-west", "/v1/channel");
}

/* ---- 5. region selection */

/* Four SFUs: eu-west (0), us-east (1), eu-central (2), a custom region (3). */
static void chan_start_regions4(struct chan_env *e)
{
	static const char *const regions[] = { "eu-west", "us-east", "eu-central", "moon-base" };

	chan_start(e, regions, 4, NULL, NULL, NULL);
}

Test(channel_region, region_hint_exact, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;

	chan_start_regions4(&e);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(chan_route(&e, "?region=us-east"), 1);
		cr_assert_eq(chan_route(&e, "?region=eu-central"), 2);
		cr_assert_eq(chan_route(&e, "?region=eu-west"), 0);
	}
}

Test(channel_region, country_hint, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;

	chan_start_regions4(&e);
	cr_assert_eq(chan_route(&e, "?country=fr"), 0);
	cr_assert_eq(chan_route(&e, "?country=FR"), 0);
	cr_assert_eq(chan_route(&e, "?country=Us"), 1);
	cr_assert_eq(chan_route(&e, "?country=pl"), 2);
	cr_assert_eq(chan_route(&e, "?webRTC=false&country=MX"), 1);
}

Test(channel_region, custom_region_exact, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;

	chan_start_regions4(&e);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(chan_route(&e, "?region=moon-base"), 3);
}

Test(channel_region, region_wins_over_country, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;

	chan_start_regions4(&e);
	cr_assert_eq(chan_route(&e, "?region=us-east&country=FR"), 1);
	cr_assert_eq(chan_route(&e, "?country=FR&region=eu-central"), 2);
}

/* Distances between the contract's centres (haversine, R = 6371 km):
 * eu-south→eu-west 1105, →eu-central 1181; eu-north→eu-central 808, →eu-west 1546;
 * af-south→eu-west 8722, →eu-central 8865; sa-west→us-east 8078, →eu-central 12516;
 * sa-east→us-east 7636, →eu-central 10245; ap-northeast→eu-central 8917, →us-east 10895. */
Test(channel_region, nearest_region_four, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;

	chan_start_regions4(&e);
	cr_assert_eq(chan_route(&e, "?region=eu-south"), 0);
	cr_assert_eq(chan_route(&e, "?region=eu-north"), 2);
	cr_assert_eq(chan_route(&e, "?region=af-south"), 0);
	cr_assert_eq(chan_route(&e, "?country=SE"), 2);
}

Test(channel_region, nearest_region_two, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const regions[] = { "eu-central", "us-east" };
	struct chan_env e;

	chan_start(&e, regions, 2, NULL, NULL, NULL);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(chan_route(&e, "?region=eu-south"), 0);
		cr_assert_eq(chan_route(&e, "?region=sa-west"), 1);
		cr_assert_eq(chan_route(&e, "?country=BR"), 1);
		cr_assert_eq(chan_route(&e, "?region=ap-northeast"), 0);
		cr_assert_eq(chan_route(&e, "?country=ZA"), 0);
	}
}

Test(channel_region, no_match_any_sfu, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;
	int hits[CHAN_MAX_MOCKS] = { 0 };

	chan_start_regions4(&e);
	/* No hint that matches: every SFU is a candidate, so the equal ones share. */
	for (int i = 0; i < 4; i++)
		hits[chan_route(&e, "?region=mars")]++;
	for (int i = 0; i < 4; i++)
		hits[chan_route(&e, "?country=ZZ")]++;
	for (int i = 0; i < 4; i++)
		hits[chan_route(&e, "")]++;
	for (int i = 0; i < 4; i++)
		cr_assert(hits[i] > 0, "mock %d (%d/%d/%d/%d) never chosen", i, hits[0], hits[1],
			  hits[2], hits[3]);
}

/* ---- 6. round-robin, shared by the workers */

Test(channel_rr, shared_counter, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const regions[] = { "eu-west", "eu-west", "us-east" };
	const char *args[] = { "--workers", "2", "--config", NULL, NULL };
	struct chan_env e;
	int who[30];

	args[3] = harness_write_file("rr.toml", "[balancing]\nstrategy = \"round-robin\"\n");
	chan_start(&e, regions, 3, NULL, NULL, args);
	for (int i = 0; i < 30; i++)
		who[i] = chan_route(&e, "");
	/* The kernel spreads the 30 connections over both workers; one counter in shared
	 * memory still makes the sequence strictly cyclic, where per-worker counters
	 * would repeat an SFU whenever the worker changes. */
	cr_assert(who[0] != who[1] && who[1] != who[2] && who[0] != who[2], "%d %d %d", who[0],
		  who[1], who[2]);
	for (int i = 3; i < 30; i++)
		cr_assert_eq(who[i], who[i % 3], "request %d went to mock %d, not %d", i, who[i],
			     who[i % 3]);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(chan_stat(e.mock[i], "channel_requests"), 10, "mock %d", i);
}

/* ---- 7. X-Forwarded-For and X-Forwarded-Host */

/* The single X-Forwarded-For value the mock saw for one request with extra headers. */
static void chan_assert_xff(const struct chan_env *e, const char *extra, const char *want)
{
	json_object *last;
	const char *xff;
	int count;

	chan_expect(chan_get(e->gw->port, "/v1/channel", chan_odoo(), extra), 200, NULL);
	last = harness_mock_json(e->mock[0], "/mock/last");
	xff = chan_last_header(last, "X-Forwarded-For", &count);
	cr_assert_eq(count, 1, "%d X-Forwarded-For headers", count);
	cr_assert_str_eq(xff, want);
	json_object_put(last);
}

Test(channel_xff, untrusted_ignored, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;

	chan_start1(&e, NULL);
	chan_assert_xff(&e, "X-Forwarded-For: 1.2.3.4\r\n", "127.0.0.1");
	chan_assert_xff(&e, NULL, "127.0.0.1");
}

static void chan_assert_trusted(const char *value)
{
	static const char *const regions[] = { "eu-west" };
	char var[64];
	const char *env[] = { var, NULL };
	struct chan_env e;

	snprintf(var, sizeof(var), "SFU_GATEWAY_TRUST_PROXY=%s", value);
	chan_start(&e, regions, 1, NULL, env, NULL);
	chan_assert_xff(&e, "X-Forwarded-For: 1.2.3.4\r\n", "1.2.3.4, 127.0.0.1");
	chan_assert_xff(&e, "X-Forwarded-For: 1.2.3.4, 10.0.0.1\r\n",
		       "1.2.3.4, 10.0.0.1, 127.0.0.1");
	chan_assert_xff(&e, NULL, "127.0.0.1");
}

Test(channel_xff, trusted_1, .fini = harness_cleanup, .timeout = 30)
{
	chan_assert_trusted("1");
}

Test(channel_xff, trusted_true, .fini = harness_cleanup, .timeout = 30)
{
	chan_assert_trusted("true");
}

Test(channel_xff, never_forwarded_host, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const proxy[] = { "--proxy", NULL };
	struct chan_env e;
	struct harness_resp *r;
	json_object *last;
	char want[64];
	int count;

	chan_start1(&e, proxy);
	r = chan_get(e.gw->port, "/v1/channel", chan_odoo(),
		     "X-Forwarded-Host: evil.example.com\r\nX-Forwarded-For: 9.9.9.9\r\n");
	cr_assert_eq(r->status, 200, "%d %s", r->status, r->body);
	/* A proxy-mode SFU would have answered with the forwarded host. */
	snprintf(want, sizeof(want), "http://127.0.0.1:%d", e.mock[0]->port);
	cr_assert_str_eq(harness_json_str(r->body, "url"), want);
	free(r);
	last = harness_mock_json(e.mock[0], "/mock/last");
	cr_assert_null(chan_last_header(last, "X-Forwarded-Host", &count));
	cr_assert_eq(count, 0);
	/* Not trusted: the proxy-mode SFU keys the channel on the real client. */
	cr_assert_str_eq(chan_jstr(last, "remote"), "127.0.0.1");
	json_object_put(last);
}

Test(channel_xff, proxy_mode_idempotent, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const proxy[] = { "--proxy", NULL };
	struct chan_env e;
	struct harness_resp *r;
	const char *iss = chan_iss(), *other = chan_iss();
	char uuid1[64], uuid2[64], uuid3[64];

	chan_start1(&e, proxy);
	r = chan_get(e.gw->port, "/v1/channel", harness_odoo_token(iss, CHAN_GW_KEY), NULL);
	cr_assert_eq(r->status, 200);
	snprintf(uuid1, sizeof(uuid1), "%s", harness_json_str(r->body, "uuid"));
	free(r);
	r = chan_get(e.gw->port, "/v1/channel", harness_odoo_token(iss, CHAN_GW_KEY), NULL);
	cr_assert_eq(r->status, 200);
	snprintf(uuid2, sizeof(uuid2), "%s", harness_json_str(r->body, "uuid"));
	free(r);
	r = chan_get(e.gw->port, "/v1/channel", harness_odoo_token(other, CHAN_GW_KEY), NULL);
	cr_assert_eq(r->status, 200);
	snprintf(uuid3, sizeof(uuid3), "%s", harness_json_str(r->body, "uuid"));
	free(r);
	cr_assert_eq(strlen(uuid1), 36);
	cr_assert_str_eq(uuid1, uuid2);
	cr_assert_str_neq(uuid1, uuid3);
	cr_assert_eq(chan_stat(e.mock[0], "channels"), 2);
}

/* One HTTP/1.1 GET over IPv6 to [::1]:port; returns the status, 0 on failure. */
static int chan_get6(int port, const char *path, const char *token)
{
	struct sockaddr_in6 sa;
	char req[8192], buf[8192];
	size_t got = 0;
	int fd, n, status = 0;
	int64_t deadline = harness_now_ms() + 10000;

	fd = socket(AF_INET6, SOCK_STREAM, 0);
	cr_assert(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin6_family = AF_INET6;
	sa.sin6_port = htons((uint16_t)port);
	sa.sin6_addr = in6addr_loopback;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		goto out;
	n = snprintf(req, sizeof(req),
		     "GET %s HTTP/1.1\r\nHost: [::1]\r\nAuthorization: jwt %s\r\n"
		     "Connection: close\r\n\r\n",
		     path, token);
	if (write(fd, req, (size_t)n) != n)
		goto out;
	while (got < sizeof(buf) - 1 && harness_now_ms() < deadline) {
		struct pollfd pf = { fd, POLLIN, 0 };
		ssize_t r;

		if (poll(&pf, 1, 100) <= 0)
			continue;
		r = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	buf[got] = '\0';
	sscanf(buf, "HTTP/1.%*d %d", &status);
out:
	close(fd);
	return status;
}

Test(channel_xff, mapped_ipv4_plain, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const regions[] = { "eu-west" };
	static const char *const args[] = { "--workers", "1", "--bind", "::", NULL };
	struct chan_env e;
	json_object *last;
	const char *xff;
	int count;

	chan_start(&e, regions, 1, NULL, NULL, args);
	/* harness_raw connects over IPv4: on a dual-stack socket the peer is
	 * ::ffff:127.0.0.1, which the SFU must see as the plain address. */
	chan_assert_xff(&e, NULL, "127.0.0.1");
	/* A genuine IPv6 peer stays IPv6. */
	cr_assert_eq(chan_get6(e.gw->port, "/v1/channel", chan_odoo()), 200);
	last = harness_mock_json(e.mock[0], "/mock/last");
	xff = chan_last_header(last, "X-Forwarded-For", &count);
	cr_assert_eq(count, 1);
	cr_assert_str_eq(xff, "::1");
	json_object_put(last);
}

/* ---- 8. keep-alive to the SFU */

Test(channel_keepalive, reuses_connections, .fini = harness_cleanup, .timeout = 30)
{
	struct chan_env e;
	json_object *st;
	int64_t conns;

	chan_start1(&e, NULL);
	/* Start counting after the gateway came up (a startup probe may have connected). */
	harness_mock_post(e.mock[0], "/mock/reset-stats", 200);
	for (int i = 0; i < 20; i++)
		chan_assert_token(e.gw->port, chan_odoo(), 200, NULL);
	st = harness_mock_json(e.mock[0], "/mock/stats");
	cr_assert_eq(json_object_get_int64(json_object_object_get(st, "channel_requests")), 20);
	/* The count includes this stats request's own connection. */
	conns = json_object_get_int64(json_object_object_get(st, "connections")) - 1;
	json_object_put(st);
	cr_assert(conns >= 1 && conns <= 3, "%lld upstream connections for 20 requests",
		  (long long)conns);
}
