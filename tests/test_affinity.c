/* Integration tests of issuer affinity: repeats of (client, iss) stay on one SFU, with a TTL. */
#include <criterion/criterion.h>

#include <json.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define AFF_GW_KEY "YWZmaW5pdHktdGVzdHMtZ2F0ZXdheS1rZXktMDAwMDAx"
#define AFF_SFU_KEY "YWZmaW5pdHktdGVzdHMtc2Z1LWtleS0wMDAwMDAwMDAy"
#define AFF_MAX_MOCKS 3
#define AFF_TTL_MS 300
#define AFF_STALE_MS 1000 /* the smallest [registration] stale_after_ms */
#define AFF_CONCURRENT 4

struct aff_env {
	struct harness_proc *gw;
	struct harness_proc *mock[AFF_MAX_MOCKS];
	int n;
};

/* What one channel request returned: which mock and the channel's uuid. */
struct aff_answer {
	int who;
	char uuid[128];
};

/* Starts n mocks, then a two-worker gateway with the TOML text (NULL: defaults):
 * two workers, so that a repeat may well reach another worker than the first
 * request and the shared table is what keeps it on its SFU. */
static void aff_start(struct aff_env *e, int n, const char *toml)
{
	cr_assert(n <= AFF_MAX_MOCKS);
	for (int i = 0; i < n; i++) {
		e->mock[i] = harness_mock_start(AFF_SFU_KEY, NULL);
		cr_assert_not_null(e->mock[i], "mock %d did not start", i);
	}
	e->n = n;
	e->gw = harness_gateway_keyed(AFF_GW_KEY, NULL, 2, harness_slow_failover(toml));
}

/* One heartbeat of mock i ("up" with the sessions, or "down" when sessions < 0). */
static void aff_beat(const struct aff_env *e, int i, int sessions)
{
	const char *addr = harness_url(e->mock[i]->port);
	char body[1024];
	struct harness_resp *r;

	if (sessions < 0)
		snprintf(body, sizeof(body), "{\"status\":\"down\",\"address\":\"%s\"}", addr);
	else
		snprintf(body, sizeof(body),
			 "{\"status\":\"up\",\"address\":\"%s\",\"region\":\"eu-west\",\"key\":\"%s\","
			 "\"channels\":0,\"sessions\":%d,\"cpuUsage\":0.2,\"memoryUsage\":0.2,"
			 "\"maxSessions\":100}",
			 addr, AFF_SFU_KEY, sessions);
	r = harness_heartbeat(e->gw->port, addr, AFF_GW_KEY, body);
	cr_assert_eq(r->status, 200, "heartbeat of mock %d: %d %s", i, r->status, r->body);
	free(r);
}

/* A channel request for iss, with an X-Forwarded-For header when xff is not NULL. */
static struct aff_answer aff_channel(const struct aff_env *e, const char *iss, const char *xff)
{
	char xff_line[256] = "";
	struct harness_resp *r;
	struct aff_answer a = { -1, "" };

	if (xff != NULL)
		snprintf(xff_line, sizeof(xff_line), "X-Forwarded-For: %s\r\n", xff);
	r = harness_channel(e->gw->port, "/v1/channel", iss, AFF_GW_KEY, xff_line);
	cr_assert_eq(r->status, 200, "iss %s: %d %s", iss, r->status, r->body);
	a.who = harness_served_by(e->mock, e->n, r->body);
	cr_assert(a.who >= 0, "answer from no known mock: %s", r->body);
	snprintf(a.uuid, sizeof(a.uuid), "%s", harness_json_str(r->body, "uuid"));
	cr_assert(a.uuid[0] != '\0', "no uuid: %s", r->body);
	free(r);
	return a;
}

/* n requests for the same iss sent at once on n connections, then all answers
 * read: out[k] says which mock served request k and with which channel. */
static void aff_concurrent(const struct aff_env *e, const char *iss, int n, struct aff_answer *out)
{
	static struct harness_call calls[AFF_CONCURRENT];
	const char *tok = harness_odoo_token(iss, AFF_GW_KEY);

	cr_assert(n <= AFF_CONCURRENT);
	for (int k = 0; k < n; k++)
		harness_channel_req(calls[k].req, sizeof(calls[k].req), tok);
	harness_batch(e->gw->port, calls, n, n, 10000);
	for (int k = 0; k < n; k++) {
		const char *body = strstr(calls[k].head, "\r\n\r\n");

		cr_assert(calls[k].done, "request %d got no complete answer", k);
		cr_assert(strncmp(calls[k].head, "HTTP/1.1 200", 12) == 0, "request %d: %.200s", k,
			  calls[k].head);
		cr_assert_not_null(body);
		out[k].who = harness_served_by(e->mock, e->n, calls[k].body);
		cr_assert(out[k].who >= 0, "request %d: no known url: %s", k, calls[k].body);
		snprintf(out[k].uuid, sizeof(out[k].uuid), "%s",
			 harness_json_str(calls[k].body, "uuid"));
	}
}

/* ---- tests */

Test(affinity, repeat_sticks_even_when_another_is_idler, .fini = harness_cleanup, .timeout = 30)
{
	static const char *iss = "https://odoo.example.com:affinity:repeat";
	struct aff_env e = { 0 };
	struct aff_answer first, again, other;
	int pinned;

	aff_start(&e, 2, NULL);
	aff_beat(&e, 0, 10);
	aff_beat(&e, 1, 10);
	first = aff_channel(&e, iss, NULL);
	pinned = first.who;
	/* Now the pinned SFU is the busiest by far. */
	aff_beat(&e, pinned, 90);
	aff_beat(&e, 1 - pinned, 0);
	for (int k = 0; k < 4; k++) {
		again = aff_channel(&e, iss, NULL);
		cr_assert_eq(again.who, pinned, "repeat %d moved to the idler SFU", k);
		cr_assert_str_eq(again.uuid, first.uuid, "repeat %d got another channel", k);
	}
	cr_assert_eq(harness_metric(e.gw->port, "sfu_gateway_affinity_hits_total"), 4);
	cr_assert_eq(harness_mock_int(e.mock[pinned], "/mock/stats", "channels"), 1,
		     "the SFU made a second channel");
	/* Another issuer is free to go to the idler one. */
	other = aff_channel(&e, "https://odoo.example.com:affinity:other", NULL);
	cr_assert_eq(other.who, 1 - pinned);
	cr_assert_str_neq(other.uuid, first.uuid);
}

/* A repeat of a pinned issuer joins the call running on its SFU: it is served even
 * when that SFU has reached its stated capacity, while a new issuer is refused. */
Test(affinity, repeat_never_refused_for_load, .fini = harness_cleanup, .timeout = 30)
{
	static const char *iss = "https://odoo.example.com:affinity:full";
	struct aff_env e = { 0 };
	struct aff_answer first, again;
	struct harness_resp *r;

	aff_start(&e, 1, NULL);
	aff_beat(&e, 0, 10);
	first = aff_channel(&e, iss, NULL);
	/* Full: sessions reach the heartbeat's maxSessions (100). */
	aff_beat(&e, 0, 100);
	r = harness_channel(e.gw->port, "/v1/channel", "https://odoo.example.com:affinity:new",
			    AFF_GW_KEY, NULL);
	cr_assert_eq(r->status, 503, "a new call on a full SFU: %d %s", r->status, r->body);
	cr_assert_str_eq(r->body, "{\"error\":\"all SFUs are overloaded\"}");
	free(r);
	again = aff_channel(&e, iss, NULL);
	cr_assert_eq(again.who, 0);
	cr_assert_str_eq(again.uuid, first.uuid, "the repeat got another channel");
	cr_assert_eq(harness_metric(e.gw->port, "sfu_gateway_affinity_hits_total"), 1);
}

Test(affinity, distinct_issuers_spread, .fini = harness_cleanup, .timeout = 30)
{
	struct aff_env e = { 0 };
	int counts[2] = { 0, 0 };

	aff_start(&e, 2, NULL);
	aff_beat(&e, 0, 10);
	aff_beat(&e, 1, 10);
	/* Equal SFUs under strategy load: each channel sent makes its SFU the busier
	 * one, so every two consecutive requests go one to each. */
	for (int k = 0; k < 10; k++) {
		char iss[96];
		struct aff_answer a, b;

		snprintf(iss, sizeof(iss), "https://odoo.example.com:affinity:%d:a", k);
		a = aff_channel(&e, iss, NULL);
		snprintf(iss, sizeof(iss), "https://odoo.example.com:affinity:%d:b", k);
		b = aff_channel(&e, iss, NULL);
		cr_assert_neq(a.who, b.who, "pair %d both went to mock %d", k, a.who);
		counts[a.who]++;
		counts[b.who]++;
	}
	cr_assert_eq(counts[0], 10);
	cr_assert_eq(counts[1], 10);
	cr_assert_eq(harness_metric(e.gw->port, "sfu_gateway_affinity_hits_total"), 0);
}

Test(affinity, key_is_first_forwarded_for_entry, .fini = harness_cleanup, .timeout = 30)
{
	static const char *iss = "https://odoo.example.com:affinity:xff";
	struct aff_env e = { 0 };
	struct aff_answer c1, c2, again;

	aff_start(&e, 2, "[gateway]\ntrust_proxy = true\n");
	aff_beat(&e, 0, 10);
	aff_beat(&e, 1, 10);
	/* Two clients, one issuer: the second is a new key and goes to the other,
	 * now idler, SFU. */
	c1 = aff_channel(&e, iss, "203.0.113.7");
	c2 = aff_channel(&e, iss, "198.51.100.9");
	cr_assert_neq(c1.who, c2.who, "two clients of one issuer shared an SFU");
	/* Each client's SFU made the busier one in turn: the pins hold regardless. */
	aff_beat(&e, c1.who, 80);
	aff_beat(&e, c2.who, 0);
	for (int k = 0; k < 3; k++) {
		/* Same first entry, whatever proxies were added behind it. */
		again = aff_channel(&e, iss, "203.0.113.7, 10.0.0.1");
		cr_assert_eq(again.who, c1.who, "client 1 moved");
		cr_assert_str_eq(again.uuid, c1.uuid);
	}
	aff_beat(&e, c1.who, 0);
	aff_beat(&e, c2.who, 80);
	for (int k = 0; k < 3; k++) {
		again = aff_channel(&e, iss, "198.51.100.9");
		cr_assert_eq(again.who, c2.who, "client 2 moved");
		cr_assert_str_eq(again.uuid, c2.uuid);
	}
	/* A third client is a new key: load decides. */
	again = aff_channel(&e, iss, "192.0.2.44");
	cr_assert_eq(again.who, c1.who, "a new client followed another client's pin");
	cr_assert_eq(harness_metric(e.gw->port, "sfu_gateway_affinity_hits_total"), 6);
}

Test(affinity, forwarded_for_ignored_without_trust_proxy, .fini = harness_cleanup, .timeout = 30)
{
	static const char *iss = "https://odoo.example.com:affinity:untrusted";
	struct aff_env e = { 0 };
	struct aff_answer c1, c2;

	aff_start(&e, 2, NULL);
	aff_beat(&e, 0, 10);
	aff_beat(&e, 1, 10);
	/* Without trust_proxy the client is the peer, 127.0.0.1, for both. */
	c1 = aff_channel(&e, iss, "203.0.113.7");
	c2 = aff_channel(&e, iss, "198.51.100.9");
	cr_assert_eq(c1.who, c2.who, "a spoofable header split the issuer's call");
	cr_assert_str_eq(c1.uuid, c2.uuid);
}

Test(affinity, signoff_moves_the_repeat, .fini = harness_cleanup, .timeout = 30)
{
	static const char *iss = "https://odoo.example.com:affinity:signoff";
	struct aff_env e = { 0 };
	struct aff_answer first, moved, again;
	int pinned, other;

	aff_start(&e, 3, NULL);
	aff_beat(&e, 0, 10);
	aff_beat(&e, 1, 30);
	first = aff_channel(&e, iss, NULL);
	cr_assert_eq(first.who, 0);
	pinned = first.who;
	other = 1;

	/* The pinned SFU leaves; a third one registers, very busy, and may take
	 * its freed slot: the pin must not follow the slot to it. */
	aff_beat(&e, pinned, -1);
	aff_beat(&e, 2, 95);
	moved = aff_channel(&e, iss, NULL);
	cr_assert_eq(moved.who, other, "the repeat went to mock %d", moved.who);
	cr_assert_str_neq(moved.uuid, first.uuid);

	/* The SFU comes back, idle: the issuer now stays where its call moved. */
	aff_beat(&e, pinned, 0);
	again = aff_channel(&e, iss, NULL);
	cr_assert_eq(again.who, other, "the repeat went back to mock %d", again.who);
	cr_assert_str_eq(again.uuid, moved.uuid);
}

Test(affinity, expiry_of_the_pinned_sfu_moves_the_repeat, .fini = harness_cleanup,
     .timeout = 30)
{
	static const char *iss = "https://odoo.example.com:affinity:expiry";
	static const char *const busy[] = { "--sessions", "50", NULL };
	struct aff_env e = { 0 };
	struct aff_answer first, moved;
	char toml[512];
	int64_t deadline;
	int n = 0;

	/* Mock 1 is static (never expires) and busy, in its /v1/stats as in its
	 * heartbeat, so a probe landing before the first request agrees with the
	 * heartbeat; mock 0 registers and then goes silent. */
	e.mock[1] = harness_mock_start(AFF_SFU_KEY, busy);
	cr_assert_not_null(e.mock[1]);
	snprintf(toml, sizeof(toml),
		 "[registration]\nstale_after_ms = %d\n\n[[sfu]]\naddress = \"%s\"\n"
		 "region = \"eu-west\"\nkey = \"%s\"\n",
		 harness_slow_ms(AFF_STALE_MS), harness_url(e.mock[1]->port), AFF_SFU_KEY);
	e.mock[0] = harness_mock_start(AFF_SFU_KEY, NULL);
	cr_assert_not_null(e.mock[0]);
	e.gw = harness_gateway_keyed(AFF_GW_KEY, NULL, 2, harness_slow_failover(toml));
	cr_assert_not_null(e.gw);
	e.n = 2;
	aff_beat(&e, 1, 50);
	aff_beat(&e, 0, 0);
	first = aff_channel(&e, iss, NULL);
	cr_assert_eq(first.who, 0, "the idle registered SFU");

	deadline = harness_now_ms() + harness_slow_ms(AFF_STALE_MS + 2000);
	while (harness_now_ms() < deadline) {
		n = (int)harness_metric(e.gw->port, "sfu_gateway_registry_sfus");
		if (n == 1)
			break;
		poll(NULL, 0, 20);
	}
	cr_assert_eq(n, 1, "the silent SFU did not expire");
	moved = aff_channel(&e, iss, NULL);
	cr_assert_eq(moved.who, 1, "the repeat still went to the expired SFU");
}

Test(affinity, pin_expires_after_ttl, .fini = harness_cleanup, .timeout = 30)
{
	static const char *iss = "https://odoo.example.com:affinity:ttl";
	struct aff_env e = { 0 };
	struct aff_answer first, again, later;
	char toml[64];
	int64_t pinned_at, until;
	int ttl = harness_slow_ms(AFF_TTL_MS);

	snprintf(toml, sizeof(toml), "[affinity]\nttl_ms = %d\n", ttl);
	aff_start(&e, 2, toml);
	aff_beat(&e, 0, 0);
	aff_beat(&e, 1, 10);
	first = aff_channel(&e, iss, NULL);
	pinned_at = harness_now_ms();
	cr_assert_eq(first.who, 0);
	aff_beat(&e, 0, 50);
	aff_beat(&e, 1, 0);
	/* Within the TTL: still pinned, and the SFU answers with the same channel. */
	again = aff_channel(&e, iss, NULL);
	cr_assert(harness_now_ms() - pinned_at < ttl, "too slow to test within the TTL");
	cr_assert_eq(again.who, 0, "pin lost within the TTL");
	pinned_at = harness_now_ms();

	/* Past the TTL (counted from the last use, which refreshed it): load decides. */
	until = pinned_at + ttl + 50;
	while (harness_now_ms() < until)
		poll(NULL, 0, (int)(until - harness_now_ms()));
	later = aff_channel(&e, iss, NULL);
	cr_assert_eq(later.who, 1, "the pin outlived ttl_ms");
	cr_assert_eq(harness_metric(e.gw->port, "sfu_gateway_affinity_hits_total"), 1);
}

/*
 * The case affinity exists for: participants of one call asking for
 * its channel at the same moment, while no answer has come back yet. They must
 * all reach one SFU, which then gives them one channel; equal SFUs make it a
 * tie, which round-robin would split.
 */
Test(affinity, simultaneous_first_requests_share_a_channel, .fini = harness_cleanup,
     .timeout = 30)
{
	static const char *const slow[] = { "--delay-ms", "150", NULL };
	struct aff_env e = { 0 };
	struct aff_answer out[AFF_CONCURRENT];

	for (int i = 0; i < 2; i++) {
		e.mock[i] = harness_mock_start(AFF_SFU_KEY, slow);
		cr_assert_not_null(e.mock[i]);
	}
	e.n = 2;
	e.gw = harness_gateway_keyed(AFF_GW_KEY, NULL, 2, harness_slow_failover(NULL));
	cr_assert_not_null(e.gw);
	aff_beat(&e, 0, 10);
	aff_beat(&e, 1, 10);
	aff_concurrent(&e, "https://odoo.example.com:affinity:together", AFF_CONCURRENT, out);
	for (int k = 1; k < AFF_CONCURRENT; k++) {
		cr_assert_eq(out[k].who, out[0].who,
			     "the call split: request 0 on mock %d, request %d on mock %d",
			     out[0].who, k, out[k].who);
		cr_assert_str_eq(out[k].uuid, out[0].uuid);
	}
}
