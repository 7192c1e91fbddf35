/* The gateway's contract with odoo/sfu, shown against the real SFU instead of the mock. */
#include <criterion/criterion.h>

#include <json.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "interop_fleet.h"

/* Probes often enough that a test sees a change within a second. */
#define CON_FAST_PROBES "[probe]\ninterval_ms = 300\n"
/* Registered SFUs expire only after a minute: what leaves sooner was signed off. The agent
 * reports the host's load, which parallel tests push high: no overload limit may bite. */
#define CON_REGISTRATION                                                               \
	"[registration]\nstale_after_ms = 60000\n"                                     \
	"[overload]\nmax_cpu = 1.0\nmax_memory = 1.0\nmax_load_score = 1000.0\n"

/* A channel through the gateway for iss with extra header lines; its uuid (static, 4 slots). */
static const char *con_channel(const struct fleet *f, const char *iss, const char *extra)
{
	struct harness_resp *r = fleet_channel(f->gw->port, iss, FLEET_GW_KEY, extra);
	const char *uuid = fleet_uuid(r);

	free(r);
	return uuid;
}

Test(interop_contract, channel_through_gateway, .fini = harness_cleanup, .timeout = 60)
{
	struct fleet f;
	struct harness_resp *r;
	struct json_object *ch, *v;
	const char *uuid;

	fleet_sfus(&f, 1, NULL);
	fleet_gateway(&f, NULL, NULL, NULL);
	r = fleet_channel(f.gw->port, fleet_issuer(), FLEET_GW_KEY, NULL);
	uuid = fleet_uuid(r);
	/* The url is the SFU's own (PUBLIC_IP:PORT): the gateway sends no X-Forwarded-Host. */
	cr_assert_str_eq(harness_json_str(r->body, "url"), harness_url(f.sfu[0]->port));
	free(r);
	ch = fleet_stats_channel(f.sfu[0], uuid);
	cr_assert_not_null(ch, "the SFU does not list the channel the gateway returned");
	cr_assert(json_object_object_get_ex(ch, "webRtcEnabled", &v));
	cr_assert(!json_object_get_boolean(v), "webRTC=false was not forwarded");
	cr_assert_eq(fleet_stats_sessions(ch), 0);
	json_object_put(ch);
	cr_assert_str_eq(fleet_creator(f.sfu[0], uuid), "127.0.0.1");
}

Test(interop_contract, idempotent_per_issuer_and_client, .fini = harness_cleanup, .timeout = 60)
{
	static const char *const env[] = { "SFU_GATEWAY_TRUST_PROXY=1", NULL };
	struct fleet f;
	char a[64], a_again[64], x[64], x_again[64], y[64], b[64], iss[96];

	fleet_sfus(&f, 1, NULL);
	fleet_gateway(&f, NULL, NULL, env);
	snprintf(iss, sizeof(iss), "%s", fleet_issuer());
	snprintf(a, sizeof(a), "%s", con_channel(&f, iss, NULL));
	snprintf(a_again, sizeof(a_again), "%s", con_channel(&f, iss, NULL));
	/* Another Odoo behind the trusted proxy: same issuer, another client address. */
	snprintf(x, sizeof(x), "%s", con_channel(&f, iss, "X-Forwarded-For: 10.20.30.40\r\n"));
	snprintf(x_again, sizeof(x_again), "%s",
		 con_channel(&f, iss, "X-Forwarded-For: 10.20.30.40\r\n"));
	snprintf(y, sizeof(y), "%s", con_channel(&f, iss, "X-Forwarded-For: 10.20.30.41\r\n"));
	snprintf(b, sizeof(b), "%s", con_channel(&f, fleet_issuer(), NULL));

	cr_assert_str_eq(a, a_again, "the same issuer from the same client got a new channel");
	cr_assert_str_eq(x, x_again, "the same issuer from the same client got a new channel");
	cr_assert_str_neq(a, x, "two clients with one issuer share a channel");
	cr_assert_str_neq(x, y, "two clients with one issuer share a channel");
	cr_assert_str_neq(a, b, "two issuers from one client share a channel");
	cr_assert_eq(fleet_stats_count(f.sfu[0]), 4);
	/* PROXY mode: the SFU records the first X-Forwarded-For entry the gateway sent. */
	cr_assert_str_eq(fleet_creator(f.sfu[0], a), "127.0.0.1");
	cr_assert_str_eq(fleet_creator(f.sfu[0], x), "10.20.30.40");
	cr_assert_str_eq(fleet_creator(f.sfu[0], y), "10.20.30.41");
}

Test(interop_contract, untrusted_forwarded_for_ignored, .fini = harness_cleanup, .timeout = 60)
{
	struct fleet f;
	char plain[64], spoofed[64], iss[96];

	fleet_sfus(&f, 1, NULL);
	fleet_gateway(&f, NULL, NULL, NULL);
	snprintf(iss, sizeof(iss), "%s", fleet_issuer());
	snprintf(plain, sizeof(plain), "%s", con_channel(&f, iss, NULL));
	snprintf(spoofed, sizeof(spoofed), "%s",
		 con_channel(&f, iss, "X-Forwarded-For: 10.66.66.66\r\n"));
	/* Without trust_proxy the client's own header is not passed on as its address. */
	cr_assert_str_eq(plain, spoofed);
	cr_assert_str_eq(fleet_creator(f.sfu[0], plain), "127.0.0.1");
	cr_assert_eq(fleet_stats_count(f.sfu[0]), 1);
}

Test(interop_contract, forwarded_address_owns_disconnect, .fini = harness_cleanup, .timeout = 60)
{
	static const char *const env[] = { "SFU_GATEWAY_TRUST_PROXY=1", NULL };
	struct fleet f;
	char uuid[64];

	fleet_sfus(&f, 1, NULL);
	fleet_gateway(&f, NULL, NULL, env);
	snprintf(uuid, sizeof(uuid), "%s",
		 con_channel(&f, fleet_issuer(), "X-Forwarded-For: 10.7.7.7\r\n"));
	harness_ws_sessions(f.sfu[0]->port, uuid, FLEET_CHANNEL_KEY, 2, 1);
	cr_assert_eq(fleet_sessions(f.sfu[0], uuid), 2);
	/* Odoo hangs up straight at the SFU. From another address the SFU touches nothing
	 * (it answers 200 all the same); from the address the gateway forwarded, it kicks. */
	cr_assert_eq(fleet_hangup(f.sfu[0], NULL, FLEET_SFU_KEY, uuid, "1,2", NULL), 200);
	cr_assert_eq(fleet_sessions(f.sfu[0], uuid), 2, "a stranger disconnected sessions");
	cr_assert_eq(fleet_hangup(f.sfu[0], NULL, FLEET_SFU_KEY, uuid, "1",
				  "X-Forwarded-For: 10.7.7.7\r\n"),
		     200);
	cr_assert_eq(fleet_sessions(f.sfu[0], uuid), 1, "the channel's creator could not hang up");
}

Test(interop_contract, probe_reads_stats_and_sessions, .fini = harness_cleanup, .timeout = 60)
{
	struct fleet f;
	char uuid[64];

	fleet_sfus(&f, 1, NULL);
	fleet_gateway(&f, CON_FAST_PROBES, NULL, NULL);
	snprintf(uuid, sizeof(uuid), "%s", con_channel(&f, fleet_issuer(), NULL));
	cr_assert_eq(fleet_health_wait(f.gw->port, f.sfu[0]->port, "channels", 1, 5000), 1);
	harness_ws_sessions(f.sfu[0]->port, uuid, FLEET_CHANNEL_KEY, 3, 1);
	cr_assert_eq(fleet_sessions(f.sfu[0], uuid), 3);
	cr_assert_eq(fleet_health_wait(f.gw->port, f.sfu[0]->port, "sessions", 3, 5000), 3,
		     "/v1/health does not show the SFU's sessions");
	cr_assert_str_eq(fleet_health_str(f.gw->port, f.sfu[0]->port, "source"), "static");
	cr_assert_eq(fleet_health_wait(f.gw->port, f.sfu[0]->port, "channels", 1, 0), 1);
}

Test(interop_contract, agent_registers_real_sfu_and_signs_off, .fini = harness_cleanup,
     .timeout = 60)
{
	struct fleet f = { 0 };
	struct harness_proc *agent;
	char gw_url[64], address[64], uuid[64];
	int64_t deadline;
	struct json_object *s = NULL;

	fleet_sfus(&f, 1, NULL);
	f.n = 0; /* no static SFU: the agent registers it */
	f.gw = harness_gateway_keyed(FLEET_GW_KEY, NULL, 2, CON_REGISTRATION);
	snprintf(gw_url, sizeof(gw_url), "%s", harness_url(f.gw->port));
	snprintf(address, sizeof(address), "%s", harness_url(f.sfu[0]->port));
	{
		const char *const args[] = {
			"-g", gw_url, "-i", "300", "-r", "eu-west", "-a", address,
			"-k", FLEET_SFU_KEY, "-K", FLEET_GW_KEY, NULL,
		};

		agent = harness_agent_start(args, NULL);
	}
	cr_assert_eq(fleet_health_wait(f.gw->port, f.sfu[0]->port, "channels", 0, 5000), 0,
		     "the agent did not register the real SFU:\n%s", harness_all_logs());
	cr_assert_str_eq(fleet_health_str(f.gw->port, f.sfu[0]->port, "source"), "registered");
	snprintf(uuid, sizeof(uuid), "%s", con_channel(&f, fleet_issuer(), NULL));
	harness_ws_sessions(f.sfu[0]->port, uuid, FLEET_CHANNEL_KEY, 4, 1);
	cr_assert_eq(fleet_health_wait(f.gw->port, f.sfu[0]->port, "sessions", 4, 5000), 4,
		     "the registered SFU's sessions do not show:\n%s", harness_all_logs());
	cr_assert_eq(fleet_health_wait(f.gw->port, f.sfu[0]->port, "channels", 1, 0), 1);

	/* SIGTERM: the agent signs the SFU off at once and exits 0. */
	cr_assert_eq(harness_stop(agent, SIGTERM, 5000), 0, "the agent did not exit 0");
	deadline = harness_now_ms() + 3000;
	do {
		json_object_put(s);
		s = harness_health_sfu(f.gw->port, address, NULL);
		if (s == NULL)
			break;
		poll(NULL, 0, 50);
	} while (harness_now_ms() < deadline);
	cr_assert_null(s, "the SFU is still listed after the agent's sign-off: %s",
		       json_object_to_json_string(s));
}

Test(interop_contract, sigkill_fails_over, .fini = harness_cleanup, .timeout = 90)
{
	struct fleet f;
	int served[FLEET_MAX] = { 0 };

	fleet_sfus(&f, 3, NULL);
	fleet_gateway(&f, NULL, NULL, NULL);
	cr_assert_eq(harness_stop(f.sfu[1], SIGKILL, 5000) & 0x7f, SIGKILL);
	for (int i = 0; i < 20; i++) {
		struct harness_resp *r =
			fleet_channel(f.gw->port, fleet_issuer(), FLEET_GW_KEY, NULL);
		int who = harness_served_by(f.sfu, f.n, r->body);

		cr_assert_eq(r->status, 200, "request %d with an SFU killed: %d %s", i, r->status,
			     r->body);
		cr_assert(who == 0 || who == 2, "request %d: url of no live SFU: %s", i, r->body);
		served[who]++;
		free(r);
	}
	cr_assert_eq(served[0] + served[2], 20);
	cr_assert_eq(fleet_stats_count(f.sfu[0]) + fleet_stats_count(f.sfu[2]), 20);
}

Test(interop_contract, wrong_gateway_key_refused, .fini = harness_cleanup, .timeout = 60)
{
	struct fleet f;
	struct harness_resp *r;

	fleet_sfus(&f, 1, NULL);
	fleet_gateway(&f, NULL, NULL, NULL);
	r = fleet_channel(f.gw->port, fleet_issuer(), FLEET_BAD_KEY, NULL);
	cr_assert_eq(r->status, 401);
	cr_assert_str_eq(r->body, "{\"error\":\"invalid token\"}");
	free(r);
	cr_assert_eq(fleet_stats_count(f.sfu[0]), 0, "a refused token reached the SFU");
}

Test(interop_contract, wrong_sfu_key_fails_over, .fini = harness_cleanup, .timeout = 60)
{
	static const char *const keys[] = { FLEET_BAD_KEY, NULL };
	struct fleet f;
	struct harness_resp *r;

	fleet_sfus(&f, 2, NULL);
	/* What a key mismatch looks like on the real SFU: 500 with an empty body. */
	r = fleet_channel(f.sfu[0]->port, fleet_issuer(), FLEET_BAD_KEY, NULL);
	cr_assert_eq(r->status, 500);
	cr_assert_eq(r->body_len, 0, "%s", r->body);
	free(r);
	fleet_gateway(&f, NULL, keys, NULL);
	for (int i = 0; i < 10; i++) {
		r = fleet_channel(f.gw->port, fleet_issuer(), FLEET_GW_KEY, NULL);
		cr_assert_eq(r->status, 200, "request %d: %d %s", i, r->status, r->body);
		cr_assert_eq(harness_served_by(f.sfu, f.n, r->body), 1, "%s", r->body);
		free(r);
	}
	cr_assert_eq(fleet_stats_count(f.sfu[0]), 0);
	cr_assert_eq(fleet_stats_count(f.sfu[1]), 10);
}
