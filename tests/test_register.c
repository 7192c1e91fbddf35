/* Integration tests of POST /v1/sfu: authentication, validation, sign-off, expiry, capacity. */
#include <criterion/criterion.h>

#include <json.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

/* 33 and 34 byte keys: the gateway's, a mock SFU's, an unrelated one, a registration key. */
#define REG_GW_KEY "cmVnaXN0ZXItdGVzdHMtZ2F0ZXdheS1rZXktMDAwMSEh"
#define REG_SFU_KEY "cmVnaXN0ZXItdGVzdHMtc2Z1LWtleS0wMDAwMDAwMiEh"
#define REG_OTHER_KEY "cmVnaXN0ZXItdGVzdHMtb3RoZXIta2V5LTAwMDAwMDMhIQ=="
#define REG_REG_KEY "cmVnaXN0ZXItdGVzdHMtcmVnaXN0cmF0aW9uLWtleS00IQ=="
#define REG_JWT_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
/* An address nothing listens on: registering never contacts the SFU. */
#define REG_FAKE "http://10.9.9.9:8070"
/* The smallest stale_after_ms the config accepts, and the reaper's period. */
#define REG_STALE_MS 1000
#define REG_REAPER_MS 250
/* The /metrics series counting heartbeats with this result. */
#define REG_HEARTBEATS(result) "sfu_gateway_heartbeats_total{result=\"" result "\"}"

/* Starts a one-worker gateway with the gateway key, the TOML text (NULL: none) and
 * extra environment entries (NULL-terminated, may be NULL). */
static struct harness_proc *reg_gateway(const char *toml, const char *const *env_extra)
{
	return harness_gateway_keyed(REG_GW_KEY, env_extra, 1, toml);
}

/* Standard padded base64 of n copies of ch (a key of n bytes). Static buffer. */
static const char *reg_key_of(size_t n, char ch)
{
	static char out[512];
	unsigned char raw[300];

	cr_assert(n <= sizeof(raw));
	memset(raw, ch, n);
	EVP_EncodeBlock((unsigned char *)out, raw, (int)n);
	return out;
}

/* Marks a claim left out of reg_claims_token. */
#define REG_NONE INT64_MIN

/*
 * A heartbeat bearer token signed with key, with exactly the claims given: address,
 * iat and exp relative to now (REG_NONE: absent), sha256 (NULL: absent; "@B" for the
 * hash of body) and seq as JSON text (NULL: absent). Four rotating buffers.
 */
static const char *reg_claims_token(const char *key, const char *address, int64_t iat_rel,
				    int64_t exp_rel, const char *sha256, const char *body,
				    const char *seq)
{
	static char toks[4][4096];
	static int next;
	char claims[1024], *out = toks[next++ % 4];
	long long now = (long long)time(NULL);
	size_t o;

	o = (size_t)snprintf(claims, sizeof(claims), "{\"address\":\"%s\"", address);
	if (iat_rel != REG_NONE)
		o += (size_t)snprintf(claims + o, sizeof(claims) - o, ",\"iat\":%lld",
				      now + (long long)iat_rel);
	if (exp_rel != REG_NONE)
		o += (size_t)snprintf(claims + o, sizeof(claims) - o, ",\"exp\":%lld",
				      now + (long long)exp_rel);
	if (sha256 != NULL)
		o += (size_t)snprintf(claims + o, sizeof(claims) - o, ",\"sha256\":\"%s\"",
				      strcmp(sha256, "@B") == 0 ? harness_body_sha256(body) : sha256);
	if (seq != NULL)
		o += (size_t)snprintf(claims + o, sizeof(claims) - o, ",\"seq\":%s", seq);
	snprintf(claims + o, sizeof(claims) - o, "}");
	snprintf(out, sizeof(toks[0]), "%s", harness_token(REG_JWT_HEADER, claims, key));
	return out;
}

/* A good v2 token for body with an exact seq (decimal text). Rotating buffers. */
static const char *reg_seq_token(const char *address, const char *body, const char *seq)
{
	return reg_claims_token(REG_GW_KEY, address, 0, 60, "@B", body, seq);
}

/* A good v2 token for body, signed with the gateway key (harness_sfu_token's). Rotating
 * buffers, so that a test can keep one to replay it. */
static const char *reg_token(const char *address, const char *body)
{
	static char toks[4][4096];
	static int next;
	char *out = toks[next++ % 4];

	snprintf(out, sizeof(toks[0]), "%s", harness_sfu_token(address, REG_GW_KEY, body));
	return out;
}

/* A heartbeat body for an "up" with the given load. Rotating buffers. */
static const char *reg_up(const char *address, const char *region, const char *key,
			  int sessions)
{
	static char bufs[4][1024];
	static int next;
	char *b = bufs[next++ % 4];

	snprintf(b, sizeof(bufs[0]),
		 "{\"status\":\"up\",\"address\":\"%s\",\"region\":\"%s\",\"key\":\"%s\","
		 "\"channels\":1,\"sessions\":%d,\"cpuUsage\":0.25,\"memoryUsage\":0.5}",
		 address, region, key, sessions);
	return b;
}

static const char *reg_down(const char *address)
{
	static char b[512];

	snprintf(b, sizeof(b), "{\"status\":\"down\",\"address\":\"%s\"}", address);
	return b;
}

/* POST /v1/sfu with a raw Authorization header line (NULL: none). Heap response. */
static struct harness_resp *reg_post_auth(int port, const char *auth_line, const char *body)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	int rc;

	cr_assert_not_null(r);
	rc = harness_post(port, "/v1/sfu", auth_line, body, r);
	cr_assert_eq(rc, 0, "POST /v1/sfu failed: %d", rc);
	return r;
}

/* POST /v1/sfu with "Authorization: Bearer token". Heap response. */
static struct harness_resp *reg_post_bearer(int port, const char *token, const char *body)
{
	char auth[4200];

	snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", token);
	return reg_post_auth(port, auth, body);
}

/* Asserts the status and that the JSON error names needle; frees r. */
static void reg_expect_error(struct harness_resp *r, int status, const char *needle,
			     const char *what)
{
	cr_assert_eq(r->status, status, "%s: status %d, expected %d; body %s", what, r->status,
		     status, r->body);
	if (needle != NULL) {
		const char *err = harness_json_str(r->body, "error");

		cr_assert(strstr(err, needle) != NULL, "%s: error \"%s\" does not name %s", what,
			  err, needle);
	}
	free(r);
}

/* Asserts a 200 {"status": want}; frees r. */
static void reg_expect_reply(struct harness_resp *r, const char *want, const char *what)
{
	cr_assert_eq(r->status, 200, "%s: status %d; body %s", what, r->status, r->body);
	cr_assert_str_eq(harness_json_str(r->body, "status"), want, "%s: body %s", what, r->body);
	free(r);
}

/* A heartbeat signed with the gateway key; asserts the reply. */
static void reg_beat(int port, const char *address, const char *body, const char *want)
{
	reg_expect_reply(harness_heartbeat(port, address, REG_GW_KEY, body), want, address);
}

static int reg_sfus(int port)
{
	return (int)harness_metric(port, "sfu_gateway_registry_sfus");
}

/* Polls the registry size until it equals want; false at the deadline. */
static bool reg_wait_sfus(int port, int want, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	while (harness_now_ms() < deadline) {
		if (reg_sfus(port) == want)
			return true;
		poll(NULL, 0, 20);
	}
	return reg_sfus(port) == want;
}

/* GET /v1/channel with an Odoo token for a fresh issuer. Heap response. */
static struct harness_resp *reg_channel(int port)
{
	static int seq;
	char iss[96];

	snprintf(iss, sizeof(iss), "https://odoo.example.com:register:%d", seq++);
	return harness_channel(port, "/v1/channel", iss, REG_GW_KEY, NULL);
}

static bool reg_mock_bool(const struct harness_proc *m, const char *path, const char *field)
{
	json_object *o = harness_mock_json(m, path), *v;
	bool b;

	cr_assert(json_object_object_get_ex(o, field, &v), "no %s in %s", field, path);
	b = json_object_get_boolean(v);
	json_object_put(o);
	return b;
}

/* ---- authentication */

Test(register, auth_failures, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = reg_gateway(NULL, NULL);
	const char *body = reg_up(REG_FAKE, "eu-west", REG_SFU_KEY, 3);
	char auth[4200];

	reg_expect_error(reg_post_auth(gw->port, NULL, body), 401, NULL, "no token");
	snprintf(auth, sizeof(auth), "Authorization: Basic %s\r\n", reg_token(REG_FAKE, body));
	reg_expect_error(reg_post_auth(gw->port, auth, body), 401, NULL, "scheme Basic");
	snprintf(auth, sizeof(auth), "Authorization: Bearer\r\n");
	reg_expect_error(reg_post_auth(gw->port, auth, body), 401, NULL, "Bearer, no token");
	reg_expect_error(harness_heartbeat(gw->port, REG_FAKE, REG_OTHER_KEY, body), 401, NULL,
			 "wrong key");
	reg_expect_error(harness_heartbeat(gw->port, "http://10.9.9.8:8070", REG_GW_KEY, body), 403,
			 NULL, "token for another address");
	reg_expect_error(reg_post_bearer(gw->port,
					 reg_claims_token(REG_GW_KEY, REG_FAKE, -3600, -3540, "@B",
							  body, "7"),
					 body),
			 401, NULL, "expired");
	reg_expect_error(reg_post_bearer(gw->port,
					 reg_claims_token(REG_GW_KEY, REG_FAKE, 0, REG_NONE, "@B",
							  body, "8"),
					 body),
			 401, "exp", "no exp");
	cr_assert_eq(reg_sfus(gw->port), 0, "a rejected heartbeat registered an SFU");
	cr_assert_eq(harness_metric(gw->port, REG_HEARTBEATS("rejected")), 7);

	/* The same body with a proper token is accepted: the failures above were the token's. */
	reg_beat(gw->port, REG_FAKE, body, "registered");
	cr_assert_eq(reg_sfus(gw->port), 1);
	/* The address claim is compared normalised, as the body's address is. */
	reg_expect_reply(harness_heartbeat(gw->port, "HTTP://10.9.9.9:8070/", REG_GW_KEY, body),
			 "updated", "claim spelled differently");
}

/* Authentication comes first: without a good token, a body says nothing (401, never the
 * field-level 400 that would teach an unauthenticated caller the body's rules); with one,
 * the body is validated (400) before its address is compared with the token's (403). */
Test(register, authenticates_before_reading_the_body, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = reg_gateway(NULL, NULL);
	const char *bad = "{\"status\":\"sideways\"}";

	reg_expect_error(reg_post_auth(gw->port, NULL, "{}"), 401, "authorization", "{} no token");
	reg_expect_error(reg_post_auth(gw->port, NULL, bad), 401, NULL, "bad body, no token");
	reg_expect_error(reg_post_auth(gw->port, NULL, "not json"), 401, NULL, "not JSON, no token");
	reg_expect_error(harness_heartbeat(gw->port, REG_FAKE, REG_OTHER_KEY, "{}"), 401, NULL,
			 "{} wrong key");
	/* A good token for the very bytes sent: now the body is judged. */
	reg_expect_error(harness_heartbeat(gw->port, REG_FAKE, REG_GW_KEY, "{}"), 400,
			 "missing field 'status'", "{} good token");
	/* A valid body naming another SFU than the token: 403 after validation. */
	reg_expect_error(harness_heartbeat(gw->port, "http://10.9.9.8:8070", REG_GW_KEY,
					   reg_up(REG_FAKE, "eu-west", REG_SFU_KEY, 1)),
			 403, "address", "other address");
	/* An invalid body with a token for another address is still a 400. */
	reg_expect_error(harness_heartbeat(gw->port, "http://10.9.9.8:8070", REG_GW_KEY, bad), 400,
			 "'status'", "bad body, other address");
	cr_assert_eq(reg_sfus(gw->port), 0);
}

/* ---- heartbeat wire format v2: tokens bound to the body, replays refused */

/* A token of the old format ({address, exp}, no body hash, no seq) is refused with a
 * reason that says what is missing, whatever the body. */
Test(register, old_format_token_refused, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = reg_gateway(NULL, NULL);
	const char *body = reg_up(REG_FAKE, "eu-west", REG_SFU_KEY, 3);

	reg_expect_error(reg_post_bearer(gw->port,
					 reg_claims_token(REG_GW_KEY, REG_FAKE, REG_NONE, 60, NULL,
							  NULL, NULL),
					 body),
			 401, "v2", "address and exp only");
	reg_expect_error(reg_post_bearer(gw->port,
					 reg_claims_token(REG_GW_KEY, REG_FAKE, 0, 60, NULL, NULL,
							  NULL),
					 body),
			 401, "sha256 and seq claims are required", "address, iat and exp");
	reg_expect_error(reg_post_bearer(gw->port,
					 reg_claims_token(REG_GW_KEY, REG_FAKE, 0, 60, "@B", body,
							  NULL),
					 body),
			 401, "seq", "no seq");
	reg_expect_error(reg_post_bearer(gw->port,
					 reg_claims_token(REG_GW_KEY, REG_FAKE, 0, 60, NULL, NULL,
							  "5"),
					 body),
			 401, "sha256", "no sha256");
	cr_assert_eq(reg_sfus(gw->port), 0);
	cr_assert_eq(harness_metric(gw->port, REG_HEARTBEATS("rejected")), 4);
	cr_assert(strstr(harness_log(gw), "not a v2 heartbeat token") != NULL,
		  "the refusal is not logged:\n%s", harness_log(gw));
}

/* A captured token only carries the body it was made for: the same token with another
 * body (another key, another region, even one more space) is refused. */
Test(register, token_is_bound_to_its_body, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = reg_gateway(NULL, NULL);
	const char *body = reg_up(REG_FAKE, "eu-west", REG_SFU_KEY, 3);
	const char *tok = reg_token(REG_FAKE, body);
	char spaced[1024];

	reg_expect_error(reg_post_bearer(gw->port, tok, reg_up(REG_FAKE, "eu-west", REG_OTHER_KEY, 3)),
			 401, "sha256", "another key");
	reg_expect_error(reg_post_bearer(gw->port, tok, reg_up(REG_FAKE, "us-east", REG_SFU_KEY, 3)),
			 401, "sha256", "another region");
	snprintf(spaced, sizeof(spaced), "%s ", body);
	reg_expect_error(reg_post_bearer(gw->port, tok, spaced), 401, "sha256", "a space more");
	reg_expect_error(reg_post_bearer(gw->port, tok, reg_down(REG_FAKE)), 401, "sha256",
			 "a sign-off");
	/* A hash of the right length but of other bytes, and one that is no hash at all. */
	reg_expect_error(reg_post_bearer(gw->port,
					 reg_claims_token(REG_GW_KEY, REG_FAKE, 0, 60,
							  harness_body_sha256(spaced), NULL, "9"),
					 body),
			 401, "sha256", "hash of other bytes");
	reg_expect_error(reg_post_bearer(gw->port,
					 reg_claims_token(REG_GW_KEY, REG_FAKE, 0, 60, "x", NULL, "9"),
					 body),
			 401, "sha256", "not a hash");
	cr_assert_eq(reg_sfus(gw->port), 0);
	/* The token with its own body is fine. */
	reg_expect_reply(reg_post_bearer(gw->port, tok, body), "registered", "its own body");
}

/* The heart of it: a heartbeat captured on the wire cannot register the SFU again after
 * its sign-off, nor after the reaper expired it, nor be played twice while it is live. */
Test(register, replay_after_signoff_refused, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = reg_gateway(NULL, NULL);
	char up[1024], down[512], up_tok[4096], down_tok[4096];

	snprintf(up, sizeof(up), "%s", reg_up(REG_FAKE, "eu-west", REG_SFU_KEY, 3));
	snprintf(down, sizeof(down), "%s", reg_down(REG_FAKE));
	snprintf(up_tok, sizeof(up_tok), "%s", reg_token(REG_FAKE, up));
	reg_expect_reply(reg_post_bearer(gw->port, up_tok, up), "registered", "first heartbeat");
	reg_expect_error(reg_post_bearer(gw->port, up_tok, up), 401, "replayed", "played twice");
	snprintf(down_tok, sizeof(down_tok), "%s", reg_token(REG_FAKE, down));
	reg_expect_reply(reg_post_bearer(gw->port, down_tok, down), "removed", "sign-off");
	cr_assert_eq(reg_sfus(gw->port), 0);

	/* The captured heartbeat, within its token's lifetime: refused, nothing registered. */
	reg_expect_error(reg_post_bearer(gw->port, up_tok, up), 401, "replayed", "replay after sign-off");
	reg_expect_error(reg_post_bearer(gw->port, down_tok, down), 401, "replayed",
			 "sign-off replayed");
	cr_assert_eq(reg_sfus(gw->port), 0, "a replayed heartbeat registered the SFU again");
	cr_assert_eq(harness_metric(gw->port, REG_HEARTBEATS("registered")), 1);

	/* The SFU itself comes back with a fresh heartbeat. */
	reg_beat(gw->port, REG_FAKE, up, "registered");
}

Test(register, replay_after_expiry_refused, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw;
	char toml[128], up[1024], tok[4096];

	snprintf(toml, sizeof(toml), "[registration]\nstale_after_ms = %d\n", REG_STALE_MS);
	gw = reg_gateway(toml, NULL);
	snprintf(up, sizeof(up), "%s", reg_up(REG_FAKE, "eu-west", REG_SFU_KEY, 3));
	snprintf(tok, sizeof(tok), "%s", reg_token(REG_FAKE, up));
	reg_expect_reply(reg_post_bearer(gw->port, tok, up), "registered", "first heartbeat");
	cr_assert(reg_wait_sfus(gw->port, 0, REG_STALE_MS + REG_REAPER_MS + 3000),
		  "the SFU did not expire");
	reg_expect_error(reg_post_bearer(gw->port, tok, up), 401, "replayed", "replay after expiry");
	cr_assert_eq(reg_sfus(gw->port), 0, "a replayed heartbeat brought back an expired SFU");
	reg_beat(gw->port, REG_FAKE, up, "registered");
}

/* seq must grow for each address, registered or static; each address counts on its own;
 * a seq that is not a positive integer in plain digits, or that is ahead of the clock, is
 * refused. */
Test(register, seq_must_increase, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *mock = harness_mock_start(REG_SFU_KEY, NULL);
	const char *b = "http://10.9.9.10:8070";
	struct harness_proc *gw;
	const char *addr, *up;
	char toml[512], far[32];

	cr_assert_not_null(mock);
	addr = harness_url(mock->port);
	snprintf(toml, sizeof(toml), "[[sfu]]\naddress = \"%s\"\nkey = \"%s\"\n", addr,
		 REG_SFU_KEY);
	gw = reg_gateway(toml, NULL);

	up = reg_up(REG_FAKE, "eu-west", REG_SFU_KEY, 1);
	reg_expect_reply(reg_post_bearer(gw->port, reg_seq_token(REG_FAKE, up, "1000"), up),
			 "registered", "seq 1000");
	up = reg_up(REG_FAKE, "eu-west", REG_SFU_KEY, 2);
	reg_expect_error(reg_post_bearer(gw->port, reg_seq_token(REG_FAKE, up, "1000"), up), 401,
			 "replayed", "seq 1000 again, fresh body");
	reg_expect_error(reg_post_bearer(gw->port, reg_seq_token(REG_FAKE, up, "999"), up), 401,
			 "replayed", "seq 999");
	reg_expect_reply(reg_post_bearer(gw->port, reg_seq_token(REG_FAKE, up, "1001"), up),
			 "updated", "seq 1001");
	/* Another address has its own sequence. */
	up = reg_up(b, "eu-west", REG_SFU_KEY, 1);
	reg_expect_reply(reg_post_bearer(gw->port, reg_seq_token(b, up, "5"), up), "registered",
			 "another address, seq 5");
	/* A static SFU's load reports are held to the same rule. */
	up = reg_up(addr, "eu-west", REG_SFU_KEY, 4);
	reg_expect_reply(reg_post_bearer(gw->port, reg_seq_token(addr, up, "70"), up), "updated",
			 "static, seq 70");
	reg_expect_error(reg_post_bearer(gw->port, reg_seq_token(addr, up, "70"), up), 401,
			 "replayed", "static, seq 70 again");
	/* Not a positive integer in plain digits. */
	up = reg_up(REG_FAKE, "eu-west", REG_SFU_KEY, 3);
	{
		static const char *const bad[] = { "\"2000\"", "2000.5", "-2000", "0", "2e3",
						   "null", "[2000]", "9007199254740992" };

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			reg_expect_error(reg_post_bearer(gw->port, reg_seq_token(REG_FAKE, up, bad[i]),
							 up),
					 401, "seq", bad[i]);
	}
	/* ms since the epoch a day ahead: it would lock the SFU out until then. */
	snprintf(far, sizeof(far), "%llu",
		 (unsigned long long)harness_next_seq() + 86400ULL * 1000);
	reg_expect_error(reg_post_bearer(gw->port, reg_seq_token(REG_FAKE, up, far), up), 401,
			 "ahead", "seq a day ahead");
	reg_expect_reply(reg_post_bearer(gw->port, reg_seq_token(REG_FAKE, up, "1002"), up),
			 "updated", "seq 1002");
}

/* iat within a minute of now either way, exp at most two minutes after iat. */
Test(register, token_time_window, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = reg_gateway(NULL, NULL);
	const char *up = reg_up(REG_FAKE, "eu-west", REG_SFU_KEY, 1);

	reg_expect_error(reg_post_bearer(gw->port,
					 reg_claims_token(REG_GW_KEY, REG_FAKE, REG_NONE, 60, "@B",
							  up, "11"),
					 up),
			 401, "iat", "no iat");
	reg_expect_error(reg_post_bearer(gw->port,
					 reg_claims_token(REG_GW_KEY, REG_FAKE, -90, 30, "@B", up,
							  "12"),
					 up),
			 401, "too old", "iat 90 s ago");
	reg_expect_error(reg_post_bearer(gw->port,
					 reg_claims_token(REG_GW_KEY, REG_FAKE, 90, 120, "@B", up,
							  "13"),
					 up),
			 401, NULL, "iat 90 s ahead");
	reg_expect_error(reg_post_bearer(gw->port,
					 reg_claims_token(REG_GW_KEY, REG_FAKE, 0, 3600, "@B", up,
							  "14"),
					 up),
			 401, "lifetime", "an hour's lifetime");
	cr_assert_eq(reg_sfus(gw->port), 0);
	/* Both ends of the window are fine. */
	reg_expect_reply(reg_post_bearer(gw->port,
					 reg_claims_token(REG_GW_KEY, REG_FAKE, -50, 70, "@B", up,
							  "15"),
					 up),
			 "registered", "iat 50 s ago, 120 s lifetime");
	reg_expect_reply(reg_post_bearer(gw->port,
					 reg_claims_token(REG_GW_KEY, REG_FAKE, 50, 60, "@B", up,
							  "16"),
					 up),
			 "updated", "iat 50 s ahead");
}

/* ---- validation */

/* One invalid body: its JSON with @A standing for the address, the address the token
 * names, and what the 400's error must contain. */
struct reg_case {
	const char *json;
	const char *address;
	const char *names;
};

#define REG_LOAD "\"channels\":1,\"sessions\":2,\"cpuUsage\":0.1,\"memoryUsage\":0.2"
#define REG_HEAD "\"status\":\"up\",\"address\":\"@A\",\"region\":\"eu-west\""
/* The longest region allowed: 63 characters. */
#define REG_REGION63 "r012345678901234567890123456789012345678901234567890123456789-z"
#define REG_KEYF "\"key\":\"" REG_SFU_KEY "\""

static const struct reg_case reg_cases[] = {
	{ "{\"address\":\"@A\",\"region\":\"eu-west\"," REG_KEYF "," REG_LOAD "}", NULL,
	  "missing field 'status'" },
	{ "{\"status\":\"sideways\",\"address\":\"@A\",\"region\":\"eu-west\"," REG_KEYF "," REG_LOAD "}",
	  NULL, "'status'" },
	{ "{\"status\":1,\"address\":\"@A\",\"region\":\"eu-west\"," REG_KEYF "," REG_LOAD "}", NULL,
	  "'status'" },
	{ "{\"status\":\"up\",\"region\":\"eu-west\"," REG_KEYF "," REG_LOAD "}", NULL,
	  "missing field 'address'" },
	{ "{\"status\":\"up\",\"address\":\"@A\",\"region\":\"eu-west\"," REG_KEYF "," REG_LOAD "}",
	  "http://10.9.9.9:8070/path", "'address'" },
	{ "{\"status\":\"up\",\"address\":\"@A\",\"region\":\"eu-west\"," REG_KEYF "," REG_LOAD "}",
	  "http://10.9.9.9:8070?x=1", "'address'" },
	{ "{\"status\":\"up\",\"address\":\"@A\",\"region\":\"eu-west\"," REG_KEYF "," REG_LOAD "}",
	  "http://user:pw@10.9.9.9:8070", "'address'" },
	{ "{\"status\":\"up\",\"address\":\"@A\",\"region\":\"eu-west\"," REG_KEYF "," REG_LOAD "}",
	  "ftp://10.9.9.9:8070", "'address'" },
	{ "{\"status\":\"down\",\"address\":\"@A\"}", "10.9.9.9:8070", "'address'" },
	{ "{\"status\":\"up\",\"address\":\"@A\",\"region\":\"EU-WEST\"," REG_KEYF "," REG_LOAD "}",
	  NULL, "'region'" },
	{ "{\"status\":\"up\",\"address\":\"@A\",\"region\":\"" REG_REGION63 "x\"," REG_KEYF ","
	  REG_LOAD "}", NULL, "'region'" },
	{ "{\"status\":\"up\",\"address\":\"@A\",\"region\":\"\"," REG_KEYF "," REG_LOAD "}", NULL,
	  "'region'" },
	{ "{" REG_HEAD ",\"key\":\"not*base64!\"," REG_LOAD "}", NULL, "'key'" },
	{ "{" REG_HEAD ",\"key\":\"\"," REG_LOAD "}", NULL, "'key'" },
	{ "{" REG_HEAD ",\"key\":@K129," REG_LOAD "}", NULL, "'key'" },
	{ "{" REG_HEAD "," REG_LOAD "}", NULL, "missing field 'key'" },
	{ "{" REG_HEAD "," REG_KEYF ",\"channels\":-1,\"sessions\":2,\"cpuUsage\":0.1,"
	  "\"memoryUsage\":0.2}", NULL, "'channels'" },
	{ "{" REG_HEAD "," REG_KEYF ",\"channels\":1.5,\"sessions\":2,\"cpuUsage\":0.1,"
	  "\"memoryUsage\":0.2}", NULL, "'channels'" },
	{ "{" REG_HEAD "," REG_KEYF ",\"channels\":\"1\",\"sessions\":2,\"cpuUsage\":0.1,"
	  "\"memoryUsage\":0.2}", NULL, "'channels'" },
	{ "{" REG_HEAD "," REG_KEYF ",\"sessions\":2,\"cpuUsage\":0.1,\"memoryUsage\":0.2}", NULL,
	  "missing field 'channels'" },
	{ "{" REG_HEAD "," REG_KEYF ",\"channels\":1,\"sessions\":-2,\"cpuUsage\":0.1,"
	  "\"memoryUsage\":0.2}", NULL, "'sessions'" },
	{ "{" REG_HEAD "," REG_KEYF ",\"channels\":1,\"sessions\":2.5,\"cpuUsage\":0.1,"
	  "\"memoryUsage\":0.2}", NULL, "'sessions'" },
	{ "{" REG_HEAD "," REG_KEYF ",\"channels\":1,\"sessions\":\"2\",\"cpuUsage\":0.1,"
	  "\"memoryUsage\":0.2}", NULL, "'sessions'" },
	{ "{" REG_HEAD "," REG_KEYF ",\"channels\":1,\"sessions\":2,\"cpuUsage\":1.5,"
	  "\"memoryUsage\":0.2}", NULL, "'cpuUsage'" },
	{ "{" REG_HEAD "," REG_KEYF ",\"channels\":1,\"sessions\":2,\"cpuUsage\":-0.1,"
	  "\"memoryUsage\":0.2}", NULL, "'cpuUsage'" },
	{ "{" REG_HEAD "," REG_KEYF ",\"channels\":1,\"sessions\":2,\"cpuUsage\":\"0.5\","
	  "\"memoryUsage\":0.2}", NULL, "'cpuUsage'" },
	{ "{" REG_HEAD "," REG_KEYF ",\"channels\":1,\"sessions\":2,\"cpuUsage\":0.1,"
	  "\"memoryUsage\":1.01}", NULL, "'memoryUsage'" },
	{ "{" REG_HEAD "," REG_KEYF ",\"channels\":1,\"sessions\":2,\"cpuUsage\":0.1,"
	  "\"memoryUsage\":-1}", NULL, "'memoryUsage'" },
	{ "{" REG_HEAD "," REG_KEYF ",\"channels\":1,\"sessions\":2,\"cpuUsage\":0.1,"
	  "\"memoryUsage\":\"0.2\"}", NULL, "'memoryUsage'" },
	{ "{" REG_HEAD "," REG_KEYF ",\"channels\":1,\"sessions\":2,\"cpuUsage\":0.1,"
	  "\"maxSessions\":-5,\"memoryUsage\":0.2}", NULL, "'maxSessions'" },
	{ "{\"status\":\"up\",", NULL, "JSON" },
	{ "not json at all", NULL, "JSON" },
	{ "[{" REG_HEAD "," REG_KEYF "," REG_LOAD "}]", NULL, "JSON" },
	{ "\"up\"", NULL, "JSON" },
	{ "{" REG_HEAD "," REG_KEYF "," REG_LOAD "} {}", NULL, "JSON" },
};

/* Expands a case's template: @A to the address, @K129 to a 129-byte key. */
static void reg_expand(const char *tmpl, const char *address, char *out, size_t outlen)
{
	size_t o = 0;
	char k129[256];

	snprintf(k129, sizeof(k129), "\"%s\"", reg_key_of(129, 'k'));
	for (const char *p = tmpl; *p != '\0' && o + 1 < outlen;) {
		const char *sub = NULL;

		if (strncmp(p, "@A", 2) == 0) {
			sub = address;
			p += 2;
		} else if (strncmp(p, "@K129", 5) == 0) {
			sub = k129;
			p += 5;
		}
		if (sub != NULL) {
			o += (size_t)snprintf(out + o, outlen - o, "%s", sub);
			continue;
		}
		out[o++] = *p++;
	}
	out[o < outlen ? o : outlen - 1] = '\0';
}

Test(register, validation_names_the_field, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = reg_gateway(NULL, NULL);
	size_t ncases = sizeof(reg_cases) / sizeof(reg_cases[0]);
	char body[2048], what[2300];

	for (size_t i = 0; i < ncases; i++) {
		const struct reg_case *c = &reg_cases[i];
		const char *address = c->address ? c->address : REG_FAKE;

		reg_expand(c->json, address, body, sizeof(body));
		snprintf(what, sizeof(what), "case %zu %s", i, body);
		reg_expect_error(harness_heartbeat(gw->port, address, REG_GW_KEY, body), 400,
				 c->names, what);
	}
	cr_assert_eq(reg_sfus(gw->port), 0, "an invalid heartbeat registered an SFU");

	/* The bounds themselves are valid: a 128-byte key, usages 0 and 1, counts 0,
	 * a 63-character region, maxSessions, and fields the gateway does not know. */
	snprintf(body, sizeof(body),
		 "{\"status\":\"up\",\"address\":\"%s\",\"region\":\"" REG_REGION63 "\","
		 "\"key\":\"%s\",\"channels\":0,\"sessions\":0,\"cpuUsage\":0,"
		 "\"memoryUsage\":1.0,\"maxSessions\":7,\"uptime\":{\"s\":1},\"extra\":[1,2]}",
		 REG_FAKE, reg_key_of(128, 'k'));
	reg_beat(gw->port, REG_FAKE, body, "registered");
	/* A sign-off needs no region, key or load. */
	reg_beat(gw->port, REG_FAKE, reg_down(REG_FAKE), "removed");
	cr_assert_eq(reg_sfus(gw->port), 0);
}

/* What an SFU-side sender may not know: region and the host's CPU and memory. Such a
 * heartbeat registers (no region: it serves when no region hint matches; no usage:
 * scored on sessions alone), and every 400 body is valid JSON, quotes included. */
Test(register, optional_fields_and_error_bodies, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = reg_gateway(NULL, NULL);
	struct harness_resp *r;
	struct json_object *o, *sfus, *sfu, *v;
	char body[1024];

	snprintf(body, sizeof(body),
		 "{\"status\":\"up\",\"address\":\"%s\",\"key\":\"%s\",\"channels\":2,"
		 "\"sessions\":5}", REG_FAKE, REG_SFU_KEY);
	reg_beat(gw->port, REG_FAKE, body, "registered");
	r = calloc(1, sizeof(*r));
	cr_assert_not_null(r);
	cr_assert_eq(harness_get(gw->port, "/v1/health", NULL, r), 0);
	o = json_tokener_parse(r->body);
	cr_assert_not_null(o, "health is not JSON: %s", r->body);
	cr_assert(json_object_object_get_ex(o, "sfus", &sfus));
	cr_assert_eq(json_object_array_length(sfus), 1);
	sfu = json_object_array_get_idx(sfus, 0);
	cr_assert(json_object_object_get_ex(sfu, "region", &v));
	cr_assert_str_eq(json_object_get_string(v), "");
	cr_assert(json_object_object_get_ex(sfu, "sessions", &v));
	cr_assert_eq(json_object_get_int(v), 5);
	cr_assert(json_object_object_get_ex(sfu, "cpuUsage", &v));
	cr_assert_eq(json_object_get_double(v), 0.0);
	json_object_put(o);

	/* A rule quoting "up" and "down" stays valid JSON in the error body. */
	snprintf(body, sizeof(body), "{\"status\":\"sideways\",\"address\":\"%s\"}", REG_FAKE);
	free(r);
	r = harness_heartbeat(gw->port, REG_FAKE, REG_GW_KEY, body);
	cr_assert_eq(r->status, 400);
	o = json_tokener_parse(r->body);
	cr_assert_not_null(o, "the error body is not JSON: %s", r->body);
	cr_assert(json_object_object_get_ex(o, "error", &v));
	cr_assert_str_eq(json_object_get_string(v),
			 "invalid field 'status': must be \"up\" or \"down\"");
	json_object_put(o);
	free(r);
}

/* Bodies at and just over the HTTP server's limit (16 KiB), made of one padding field. */
static char *reg_padded(size_t total)
{
	const char *base = reg_up(REG_FAKE, "eu-west", REG_SFU_KEY, 1);
	size_t bl = strlen(base);
	char *b = malloc(total + 1);

	cr_assert_not_null(b);
	cr_assert(total > bl + 16);
	memcpy(b, base, bl - 1); /* without the closing brace */
	memcpy(b + bl - 1, ",\"pad\":\"", 8);
	memset(b + bl + 7, 'p', total - (bl + 7) - 2);
	memcpy(b + total - 2, "\"}", 2);
	b[total] = '\0';
	return b;
}

Test(register, body_limit, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = reg_gateway(NULL, NULL);
	char *at = reg_padded(16384), *over = reg_padded(16385);

	cr_assert_eq(strlen(at), 16384);
	reg_expect_error(harness_heartbeat(gw->port, REG_FAKE, REG_GW_KEY, over), 413, NULL,
			 "16385 bytes");
	cr_assert_eq(reg_sfus(gw->port), 0);
	reg_beat(gw->port, REG_FAKE, at, "registered");
	free(at);
	free(over);
}

/* ---- life cycle */

Test(register, signoff_and_reregistration, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *mock = harness_mock_start(REG_SFU_KEY, NULL);
	struct harness_proc *gw;
	const char *addr;
	struct harness_resp *r;

	cr_assert_not_null(mock);
	addr = harness_url(mock->port);
	gw = reg_gateway(NULL, NULL);
	r = reg_channel(gw->port);
	reg_expect_error(r, 503, NULL, "empty registry");

	reg_beat(gw->port, addr, reg_up(addr, "eu-west", REG_SFU_KEY, 3), "registered");
	cr_assert_eq(reg_sfus(gw->port), 1);
	reg_beat(gw->port, addr, reg_up(addr, "eu-west", REG_SFU_KEY, 4), "updated");
	cr_assert_eq(reg_sfus(gw->port), 1, "an update added a slot");
	cr_assert_eq(harness_metric(gw->port,
				    "sfu_gateway_sfu_sessions{address=\"http://127.0.0.1:"),
		     -1, "sanity: a partial label never matches");

	r = reg_channel(gw->port);
	cr_assert_eq(r->status, 200, "channel via the registered SFU: %d %s", r->status, r->body);
	free(r);
	cr_assert_eq(harness_mock_int(mock, "/mock/stats", "channel_requests"), 1);

	/* The sign-off takes effect before its reply: no polling needed. */
	reg_beat(gw->port, addr, reg_down(addr), "removed");
	cr_assert_eq(reg_sfus(gw->port), 0, "signed-off SFU still in the registry");
	r = reg_channel(gw->port);
	reg_expect_error(r, 503, NULL, "after sign-off");
	cr_assert_eq(harness_mock_int(mock, "/mock/stats", "channel_requests"), 1,
		     "a channel request reached the signed-off SFU");
	/* Signing off twice is harmless. */
	reg_beat(gw->port, addr, reg_down(addr), "removed");

	reg_beat(gw->port, addr, reg_up(addr, "eu-west", REG_SFU_KEY, 0), "registered");
	reg_beat(gw->port, addr, reg_up(addr, "eu-west", REG_SFU_KEY, 0), "updated");
	r = reg_channel(gw->port);
	cr_assert_eq(r->status, 200, "channel after re-registration: %d %s", r->status, r->body);
	free(r);
	cr_assert_eq(harness_metric(gw->port, REG_HEARTBEATS("registered")), 2);
	cr_assert_eq(harness_metric(gw->port, REG_HEARTBEATS("updated")), 2);
	cr_assert_eq(harness_metric(gw->port, REG_HEARTBEATS("removed")), 2);
}

Test(register, registered_sfu_serves_channels, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = reg_gateway(NULL, NULL);
	struct harness_proc *mock;
	char url[64], sessions[160];
	const char *args[16];
	struct harness_resp *r;
	json_object *last, *v;
	int64_t deadline;
	int n = 0;

	/* The mock registers itself, with its own key, which the gateway never saw. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", gw->port);
	args[n++] = "--heartbeat";
	args[n++] = url;
	args[n++] = "--heartbeat-interval-ms";
	args[n++] = "200";
	args[n++] = "--region";
	args[n++] = "eu-west";
	args[n++] = "--registration-key";
	args[n++] = REG_GW_KEY;
	args[n++] = "--sessions";
	args[n++] = "17";
	args[n] = NULL;
	mock = harness_mock_start(REG_SFU_KEY, args);
	cr_assert_not_null(mock);
	cr_assert(reg_wait_sfus(gw->port, 1, 5000), "the mock's heartbeat did not register it");
	snprintf(sessions, sizeof(sessions),
		 "sfu_gateway_sfu_sessions{address=\"%s\",region=\"eu-west\"}",
		 harness_url(mock->port));
	cr_assert_eq(harness_metric(gw->port, sessions), 17, "reported sessions");

	r = reg_channel(gw->port);
	cr_assert_eq(r->status, 200, "status %d %s", r->status, r->body);
	cr_assert_str_eq(harness_json_str(r->body, "url"), harness_url(mock->port));
	free(r);
	last = harness_mock_json(mock, "/mock/last");
	cr_assert(json_object_object_get_ex(last, "verified", &v));
	cr_assert(json_object_get_boolean(v), "the mock could not verify the re-signed token");
	json_object_put(last);

	/* The mock's own sign-off removes it. Periodic heartbeats stop first, and
	 * the sign-off waits for one still in flight, which could land after it. */
	harness_mock_post(mock, "/mock/fault?heartbeat=off", 200);
	deadline = harness_now_ms() + 5000;
	while (harness_mock_int(mock, "/mock/stats", "heartbeats_sent") !=
	       harness_mock_int(mock, "/mock/stats", "heartbeats_ok") +
		       harness_mock_int(mock, "/mock/stats", "heartbeats_failed")) {
		cr_assert(harness_now_ms() < deadline, "a heartbeat of the mock never finished");
		poll(NULL, 0, 10);
	}
	cr_assert_eq(harness_mock_int(mock, "/mock/stats", "heartbeats_failed"), 0);
	harness_mock_post(mock, "/mock/heartbeat?status=down", 202);
	cr_assert(reg_wait_sfus(gw->port, 0, 5000), "the mock's sign-off did not remove it");
	reg_expect_error(reg_channel(gw->port), 503, NULL, "after the mock signed off");
	cr_assert(reg_mock_bool(mock, "/mock/last", "verified"));
}

/* ---- expiry */

Test(register, stale_expiry_timing, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *mock = harness_mock_start(REG_SFU_KEY, NULL);
	struct harness_proc *gw;
	char toml[1024];
	int64_t before, after, gone = -1, seen_until, hold_until;
	struct harness_resp *r;

	cr_assert_not_null(mock);
	/* A static SFU next to the registered one: it must never expire. */
	snprintf(toml, sizeof(toml),
		 "[registration]\nstale_after_ms = %d\n\n[[sfu]]\naddress = \"%s\"\n"
		 "region = \"eu-west\"\nkey = \"%s\"\n",
		 REG_STALE_MS, harness_url(mock->port), REG_SFU_KEY);
	gw = reg_gateway(toml, NULL);
	cr_assert_eq(reg_sfus(gw->port), 1, "the static SFU");

	before = harness_now_ms();
	reg_beat(gw->port, REG_FAKE, reg_up(REG_FAKE, "us-east", REG_OTHER_KEY, 1), "registered");
	after = harness_now_ms();
	cr_assert_eq(reg_sfus(gw->port), 2);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_expired_total"), 0);

	/* Poll until it is gone. A poll that ends before before + stale_after_ms
	 * must still see it (it was stamped after `before`); it must be gone by
	 * after + stale_after_ms + one reaper period + margin. */
	seen_until = before;
	while (harness_now_ms() < after + REG_STALE_MS + REG_REAPER_MS + harness_slow_ms(1000)) {
		int n = reg_sfus(gw->port);
		int64_t t = harness_now_ms();

		if (n == 1) {
			gone = t;
			break;
		}
		cr_assert_eq(n, 2, "registry size %d", n);
		seen_until = t;
		poll(NULL, 0, 10);
	}
	cr_assert(gone >= 0, "the stale SFU was never removed");
	cr_assert_geq(gone - before, REG_STALE_MS, "removed %lld ms after its heartbeat",
		      (long long)(gone - before));
	/* The margin covers scheduling; valgrind, which slows the reaper, gets more. */
	cr_assert_leq(gone - after, REG_STALE_MS + REG_REAPER_MS + harness_slow_ms(250),
		      "removed only %lld ms after its heartbeat (last seen at %lld ms)",
		      (long long)(gone - after), (long long)(seen_until - after));
	cr_log_info("stale SFU removed %lld..%lld ms after its heartbeat",
		    (long long)(seen_until - after), (long long)(gone - before));
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_expired_total"), 1);
	cr_assert(strstr(harness_log(gw), "expired sfu=" REG_FAKE) != NULL,
		  "no log line for the expiry");

	/* The static SFU was configured before the registered one heartbeated, so it
	 * is older: it would have gone already. Watch it for another full period. */
	hold_until = harness_now_ms() + REG_STALE_MS + 2 * REG_REAPER_MS;
	while (harness_now_ms() < hold_until) {
		cr_assert_eq(reg_sfus(gw->port), 1, "the static SFU expired");
		poll(NULL, 0, 50);
	}
	r = reg_channel(gw->port);
	cr_assert_eq(r->status, 200, "static SFU: %d %s", r->status, r->body);
	cr_assert_str_eq(harness_json_str(r->body, "url"), harness_url(mock->port));
	free(r);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_expired_total"), 1);
}

Test(register, heartbeats_keep_it_alive, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw;
	char toml[256];
	int64_t until;

	snprintf(toml, sizeof(toml), "[registration]\nstale_after_ms = %d\n", REG_STALE_MS);
	gw = reg_gateway(toml, NULL);
	reg_beat(gw->port, REG_FAKE, reg_up(REG_FAKE, "eu-west", REG_SFU_KEY, 1), "registered");
	/* Heartbeats at a third of stale_after_ms for three times stale_after_ms. */
	until = harness_now_ms() + 3 * REG_STALE_MS;
	while (harness_now_ms() < until) {
		poll(NULL, 0, REG_STALE_MS / 3);
		reg_beat(gw->port, REG_FAKE, reg_up(REG_FAKE, "eu-west", REG_SFU_KEY, 1),
			 "updated");
	}
	cr_assert_eq(reg_sfus(gw->port), 1);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_expired_total"), 0);
}

/* ---- static SFUs, capacity, allow-list, registration key */

Test(register, static_key_conflict, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *mock = harness_mock_start(REG_SFU_KEY, NULL);
	struct harness_proc *gw;
	const char *addr;
	char toml[1024], series[256];
	struct harness_resp *r;

	cr_assert_not_null(mock);
	addr = harness_url(mock->port);
	snprintf(toml, sizeof(toml), "[[sfu]]\naddress = \"%s\"\nregion = \"eu-west\"\nkey = \"%s\"\n",
		 addr, REG_SFU_KEY);
	gw = reg_gateway(toml, NULL);
	snprintf(series, sizeof(series),
		 "sfu_gateway_sfu_sessions{address=\"%s\",region=\"eu-west\"}", addr);
	cr_assert_eq(harness_metric(gw->port, series), 0);

	reg_expect_error(harness_heartbeat(gw->port, addr, REG_GW_KEY,
					   reg_up(addr, "eu-west", REG_OTHER_KEY, 40)),
			 409, "key", "static SFU, other key");
	cr_assert_eq(harness_metric(gw->port, series), 0, "a refused heartbeat changed the load");

	/* The configured key, even from a heartbeat naming another region: load only. */
	reg_beat(gw->port, addr, reg_up(addr, "us-east", REG_SFU_KEY, 42), "updated");
	cr_assert_eq(harness_metric(gw->port, series), 42, "the load of the static SFU");
	cr_assert_eq(reg_sfus(gw->port), 1);

	/* A static SFU cannot sign itself off; it keeps serving with its configured key. */
	reg_expect_error(harness_heartbeat(gw->port, addr, REG_GW_KEY, reg_down(addr)), 409, NULL,
			 "static sign-off");
	cr_assert_eq(reg_sfus(gw->port), 1);
	r = reg_channel(gw->port);
	cr_assert_eq(r->status, 200, "%d %s", r->status, r->body);
	free(r);
	cr_assert(reg_mock_bool(mock, "/mock/last", "verified"));
}

Test(register, registry_full, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = reg_gateway("[gateway]\nmax_sfus = 2\n", NULL);
	const char *a = "http://10.0.0.1:8070", *b = "http://10.0.0.2:8070";
	const char *c = "http://10.0.0.3:8070";

	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_registry_capacity"), 2);
	reg_beat(gw->port, a, reg_up(a, "eu-west", REG_SFU_KEY, 1), "registered");
	reg_beat(gw->port, b, reg_up(b, "eu-west", REG_SFU_KEY, 1), "registered");
	reg_expect_error(harness_heartbeat(gw->port, c, REG_GW_KEY,
					   reg_up(c, "eu-west", REG_SFU_KEY, 1)),
			 503, "full", "third SFU");
	cr_assert_eq(reg_sfus(gw->port), 2);
	/* A full registry still takes updates of its members. */
	reg_beat(gw->port, a, reg_up(a, "eu-west", REG_SFU_KEY, 9), "updated");
	/* and a sign-off frees a slot for the third. */
	reg_beat(gw->port, b, reg_down(b), "removed");
	reg_beat(gw->port, c, reg_up(c, "eu-west", REG_SFU_KEY, 1), "registered");
	cr_assert_eq(reg_sfus(gw->port), 2);
}

Test(register, allow_list, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *deny = reg_gateway("[registration]\nallow = [\"10.0.0.0/8\"]\n", NULL);
	struct harness_proc *permit =
		reg_gateway("[registration]\nallow = [\"192.168.0.0/16\", \"127.0.0.0/8\"]\n", NULL);
	const char *body = reg_up(REG_FAKE, "eu-west", REG_SFU_KEY, 1);

	reg_expect_error(harness_heartbeat(deny->port, REG_FAKE, REG_GW_KEY, body), 403, NULL,
			 "127.0.0.1 outside 10.0.0.0/8");
	cr_assert_eq(reg_sfus(deny->port), 0);
	/* Before the token is even looked at: no token is still 403, not 401. */
	reg_expect_error(reg_post_auth(deny->port, NULL, body), 403, NULL, "not allowed, no token");
	reg_beat(permit->port, REG_FAKE, body, "registered");
	cr_assert_eq(reg_sfus(permit->port), 1);
}

Test(register, registration_key, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const env[] = { "SFU_GATEWAY_REGISTRATION_KEY=" REG_REG_KEY, NULL };
	struct harness_proc *mock = harness_mock_start(REG_SFU_KEY, NULL);
	struct harness_proc *gw;
	const char *addr;
	struct harness_resp *r;

	cr_assert_not_null(mock);
	addr = harness_url(mock->port);
	gw = reg_gateway(NULL, env);
	/* Once a registration key is set, the gateway key no longer registers. */
	reg_expect_error(harness_heartbeat(gw->port, addr, REG_GW_KEY,
					   reg_up(addr, "eu-west", REG_SFU_KEY, 1)),
			 401, NULL, "signed with the gateway key");
	cr_assert_eq(reg_sfus(gw->port), 0);
	reg_expect_reply(harness_heartbeat(gw->port, addr, REG_REG_KEY,
					   reg_up(addr, "eu-west", REG_SFU_KEY, 1)),
			 "registered", "signed with the registration key");
	/* Odoo's tokens are still checked with the gateway key. */
	r = reg_channel(gw->port);
	cr_assert_eq(r->status, 200, "%d %s", r->status, r->body);
	free(r);
	cr_assert(reg_mock_bool(mock, "/mock/last", "verified"));
}

/* ---- which addresses may register */

/* Heartbeat of an "up" for address, signed for it; asserts the status and that the error
 * names needle (NULL: any). */
static void reg_expect_address(int port, const char *address, int status, const char *needle)
{
	char what[300];

	snprintf(what, sizeof(what), "address %s", address);
	if (status == 200)
		reg_expect_reply(harness_heartbeat(port, address, REG_GW_KEY,
						   reg_up(address, "eu-west", REG_SFU_KEY, 1)),
				 "registered", what);
	else
		reg_expect_error(harness_heartbeat(port, address, REG_GW_KEY,
						   reg_up(address, "eu-west", REG_SFU_KEY, 1)),
				 status, needle, what);
}

/* By default: no link-local, metadata, unspecified or localhost address, no https, no odd
 * spelling of an IPv4 address; other IP addresses and DNS names register. */
Test(register, address_policy_default, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw = reg_gateway(NULL, NULL);
	static const char *const refused[] = {
		"http://169.254.169.254",	"http://169.254.169.254:80",
		"http://metadata.google.internal", "http://metadata.google.internal:8070",
		"http://169.254.10.10:8070",	"http://[fe80::1]:8070",
		"http://[fd00:ec2::254]",	"http://100.100.100.200",
		"http://localhost:8070",	"http://0.0.0.0:8070",
		"http://[::]:8070",		"http://224.0.0.1:8070",
	};
	static const char *const invalid[] = {
		"http://0x7f.0.0.1:8070", "http://2130706433:8070", "http://0177.0.0.1:8070",
		"http://127.1:8070",	  "http://0x7f000001:8070",
	};

	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		reg_expect_address(gw->port, refused[i], 403, "address not allowed for an SFU");
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		reg_expect_address(gw->port, invalid[i], 400, "'address'");
	cr_assert_eq(reg_sfus(gw->port), 0, "a refused address was registered");
	cr_assert(strstr(harness_log(gw), "refused sfu=http://169.254.169.254") != NULL,
		  "no log line for the refusal:\n%s", harness_log(gw));

	reg_expect_address(gw->port, REG_FAKE, 200, NULL);
	reg_expect_address(gw->port, "http://sfu1.example.com:8070", 200, NULL);
	reg_expect_address(gw->port, "http://[fd00::9]:8070", 200, NULL);
	/* https SFUs register too: the gateway reaches them over TLS. */
	reg_expect_address(gw->port, "https://sfu.example.com", 200, NULL);
	reg_expect_address(gw->port, "https://10.9.9.9:8443", 200, NULL);
	cr_assert_eq(reg_sfus(gw->port), 5);
	/* A sign-off is heard from any address: it only removes. */
	reg_beat(gw->port, "http://169.254.10.10:8070", reg_down("http://169.254.10.10:8070"),
		 "removed");
}

/* With sfu_networks, only IP addresses inside them; metadata endpoints never. */
Test(register, address_policy_networks, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *gw =
		reg_gateway("[registration]\nsfu_networks = [\"10.0.0.0/8\", \"169.254.0.0/16\"]\n",
			    NULL);

	reg_expect_address(gw->port, "http://10.9.9.9:8070", 200, NULL);
	reg_expect_address(gw->port, "http://169.254.10.10:8070", 200, NULL);
	reg_expect_address(gw->port, "http://169.254.169.254", 403, "metadata");
	reg_expect_address(gw->port, "http://192.168.1.1:8070", 403, "sfu_networks");
	reg_expect_address(gw->port, "http://127.0.0.1:8070", 403, "sfu_networks");
	reg_expect_address(gw->port, "http://sfu1.example.com:8070", 403, "DNS name");
	reg_expect_address(gw->port, "http://[::ffff:192.168.1.1]:8070", 403, "sfu_networks");
	cr_assert_eq(reg_sfus(gw->port), 2);
}

/* Another spelling of a static SFU's address is that SFU: an IPv4-mapped IPv6 address
 * reaches the static entry (its key cannot change), and hex or decimal spellings are
 * refused, so no second registration can shadow the static SFU with another key. */
Test(register, static_sfu_cannot_be_aliased, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *mock = harness_mock_start(REG_SFU_KEY, NULL);
	struct harness_proc *gw;
	char toml[512], alias[4][96];
	struct harness_resp *r;

	cr_assert_not_null(mock);
	snprintf(toml, sizeof(toml), "[[sfu]]\naddress = \"%s\"\nkey = \"%s\"\n",
		 harness_url(mock->port), REG_SFU_KEY);
	gw = reg_gateway(toml, NULL);
	snprintf(alias[0], sizeof(alias[0]), "http://[::ffff:127.0.0.1]:%d", mock->port);
	snprintf(alias[1], sizeof(alias[1]), "http://0x7f.0.0.1:%d", mock->port);
	snprintf(alias[2], sizeof(alias[2]), "http://2130706433:%d", mock->port);
	snprintf(alias[3], sizeof(alias[3]), "http://0177.0.0.1:%d", mock->port);
	reg_expect_error(harness_heartbeat(gw->port, alias[0], REG_GW_KEY,
					   reg_up(alias[0], "eu-west", REG_OTHER_KEY, 1)),
			 409, "static", "mapped IPv6, another key");
	for (int i = 1; i < 4; i++)
		reg_expect_error(harness_heartbeat(gw->port, alias[i], REG_GW_KEY,
						   reg_up(alias[i], "eu-west", REG_OTHER_KEY, 1)),
				 400, "'address'", alias[i]);
	cr_assert_eq(reg_sfus(gw->port), 1, "an alias got a slot of its own");
	/* The mapped spelling with the configured key is the static SFU reporting load. */
	reg_expect_reply(harness_heartbeat(gw->port, alias[0], REG_GW_KEY,
					   reg_up(alias[0], "eu-west", REG_SFU_KEY, 1)),
			 "updated", "mapped IPv6, the static SFU's key");
	cr_assert_eq(reg_sfus(gw->port), 1);
	r = reg_channel(gw->port);
	cr_assert_eq(r->status, 200, "%d %s", r->status, r->body);
	free(r);
	cr_assert(reg_mock_bool(mock, "/mock/last", "verified"), "the static key was changed");
}
