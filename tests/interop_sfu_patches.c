/* The odoo/sfu patches of etc/odoo-sfu with the gateway: hang-ups, trusted proxies, heartbeats. */
#include <criterion/criterion.h>

#include <json.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "interop_fleet.h"

/* The hosts of a deployment, all on loopback. The gateway reaches the SFUs from 127.0.0.1,
 * the kernel's choice of source for 127.0.0.1; the others bind their own source address. */
#define SFP_ODOO "127.0.0.2"
#define SFP_STRANGER "127.0.0.3"
#define SFP_BALANCER "127.0.0.4"
#define SFP_GATEWAYS "127.0.0.1/32"
/* What a client writes to pass for Odoo, or for a proxy forwarding Odoo's request. */
#define SFP_FORGED_ODOO "X-Forwarded-For: " SFP_ODOO "\r\n"
#define SFP_FORGED_OTHER "X-Forwarded-For: 10.66.66.66\r\n"
/* The key that signs the SFUs' heartbeats, another than the gateway key. */
#define SFP_REG_KEY "aW50ZXJvcC1yZWdpc3RyYXRpb24ta2V5LWZvci1zZnUtcGF0Y2hlcw=="
/* An SFU that registers itself sends a heartbeat every 300 ms. */
#define SFP_PING_MS 300
/* The SFUs report this machine's load, which parallel tests push high (that is what
 * max_cpu is for): no overload limit may take an SFU out in these tests. */
#define SFP_NO_OVERLOAD "[overload]\nmax_cpu = 1.0\nmax_memory = 1.0\nmax_load_score = 1000.0\n"
/* How long a sign-off may take to show in a gateway's /v1/health (the SFU waits 2 s at most
 * for the gateways' answers). */
#define SFP_SIGN_OFF_MS 3000
/* The short expiry of the SIGKILL test. */
#define SFP_STALE_MS 3000

/* A patched SFU as deployment (a) runs it: the gateway key for hang-ups, the gateways as the
 * only trusted proxies (PROXY=1 is the harness's default). */
static const char *const sfp_keyed[] = {
	"SFU_GATEWAY_KEY=" FLEET_GW_KEY,
	"TRUSTED_PROXIES=" SFP_GATEWAYS,
	NULL,
};
/* Deployment (c): no gateway key, tokens read without their signature, trusted proxies. */
static const char *const sfp_unverified[] = {
	"DISCONNECT_UNVERIFIED=1",
	"TRUSTED_PROXIES=" SFP_GATEWAYS,
	NULL,
};

/* One call: an SFU behind a gateway, a channel Odoo created through it and its sessions. */
struct sfp_call {
	struct fleet f;
	char uuid[64];
	struct harness_proc *browsers;
};

/* Opens a call on the SFU of c->f: a channel asked through the gateway from src with extra
 * header lines (may be NULL), whose creator the SFU must have recorded as Odoo's address,
 * and n websocket sessions (ids 1 to n) in it. */
static void sfp_call_open(struct sfp_call *c, const char *src, const char *extra, int n)
{
	struct harness_resp *r =
		fleet_channel_from(src, c->f.gw->port, fleet_issuer(), FLEET_GW_KEY, extra);

	snprintf(c->uuid, sizeof(c->uuid), "%s", fleet_uuid(r));
	free(r);
	cr_assert_str_eq(fleet_creator(c->f.sfu[0], c->uuid), SFP_ODOO,
			 "the SFU did not record Odoo's address as the channel's creator");
	c->browsers = harness_ws_sessions(c->f.sfu[0]->port, c->uuid, FLEET_CHANNEL_KEY, n, 1);
	cr_assert_eq(fleet_sessions(c->f.sfu[0], c->uuid), n);
}

/* Odoo's sequence up to the hang-up: one SFU of copy peer with env behind a gateway (with
 * gw_env, may be NULL), and a call of n sessions that Odoo opened from its own address. */
static void sfp_call_start(struct sfp_call *c, enum harness_peer peer, const char *const *env,
			   const char *const *gw_env, int n)
{
	fleet_sfus_peer(&c->f, 1, peer, env);
	fleet_gateway(&c->f, NULL, NULL, gw_env);
	sfp_call_open(c, SFP_ODOO, NULL, n);
}

/* A hang-up of the call's sessions ids from src, signed with key_b64; its status. */
static int sfp_hangup(const struct sfp_call *c, const char *src, const char *key_b64,
		      const char *ids, const char *extra)
{
	return fleet_hangup(c->f.sfu[0], src, key_b64, c->uuid, ids, extra);
}

static int64_t sfp_sessions(const struct sfp_call *c)
{
	return fleet_sessions(c->f.sfu[0], c->uuid);
}

/* Another host hangs up sessions ids of the call with a token signed with key_b64, once as
 * itself and once with Odoo's address in an X-Forwarded-For it wrote: the SFU answers 200,
 * as for any session it does not find, and the call keeps its n sessions. */
static void sfp_strangers_close_nothing(const struct sfp_call *c, const char *key_b64,
					const char *ids, int64_t n)
{
	cr_assert_eq(sfp_hangup(c, SFP_STRANGER, key_b64, ids, NULL), 200);
	cr_assert_eq(sfp_sessions(c), n, "a hang-up from another address closed a session");
	cr_assert_eq(sfp_hangup(c, SFP_STRANGER, key_b64, ids, SFP_FORGED_ODOO), 200);
	cr_assert_eq(sfp_sessions(c), n,
		     "a forged X-Forwarded-For from a client that is no trusted proxy counted");
}

/* The call's SFU must have logged this warning at start. */
static void sfp_warned(const struct sfp_call *c, const char *warning)
{
	const char *log = harness_log(c->f.sfu[0]);

	cr_assert_not_null(strstr(log, warning), "the SFU did not warn \"%s\":\n%s", warning,
			   log);
}

/* The creator the SFU of f recorded for a channel asked through f's gateway from src with
 * extra header lines (may be NULL). Static buffer. */
static const char *sfp_creator_via(const struct fleet *f, const char *src, const char *extra)
{
	struct harness_resp *r =
		fleet_channel_from(src, f->gw->port, fleet_issuer(), FLEET_GW_KEY, extra);
	const char *creator = fleet_creator(f->sfu[0], fleet_uuid(r));

	free(r);
	return creator;
}

/* 422 is odoo/sfu's answer to a token it cannot verify: behind a gateway, Odoo signs with
 * the gateway key, which an unpatched SFU does not know. The same settings as the patched
 * SFU gets below change nothing here: the unpatched one does not read them. */
Test(interop_sfu_patches, unpatched_sfu_refuses_odoos_hangup, .fini = harness_cleanup,
     .timeout = 60)
{
	struct sfp_call c;

	sfp_call_start(&c, HARNESS_PEER_UPSTREAM, sfp_keyed, NULL, 1);
	cr_assert_eq(sfp_hangup(&c, SFP_ODOO, FLEET_GW_KEY, "1", NULL), 422,
		     "the unpatched SFU took a hang-up signed with the gateway key");
	cr_assert_eq(sfp_sessions(&c), 1, "the unpatched SFU closed a session on a 422");
	/* The call and the address were right: signed with the SFU's own key (which Odoo has
	 * only without a gateway) the same hang-up closes the session. */
	cr_assert_eq(sfp_hangup(&c, SFP_ODOO, FLEET_SFU_KEY, "1", NULL), 200);
	cr_assert_eq(sfp_sessions(&c), 0);
}

Test(interop_sfu_patches, patched_sfu_takes_odoos_hangup, .fini = harness_cleanup,
     .timeout = 60)
{
	struct sfp_call c;
	int rc;

	sfp_call_start(&c, HARNESS_PEER_PATCHED, sfp_keyed, NULL, 2);
	/* The key check stays: a key the SFU was not given is refused from Odoo's address too. */
	cr_assert_eq(sfp_hangup(&c, SFP_ODOO, FLEET_BAD_KEY, "1,2", NULL), 422);
	cr_assert_eq(sfp_sessions(&c), 2, "a token signed with an unknown key closed sessions");
	cr_assert_eq(sfp_hangup(&c, SFP_ODOO, FLEET_GW_KEY, "1", NULL), 200,
		     "the patched SFU refused Odoo's hang-up:\n%s", harness_log(c.f.sfu[0]));
	cr_assert_eq(sfp_sessions(&c), 1, "Odoo's hang-up of session 1 did not close it alone");
	cr_assert_eq(sfp_hangup(&c, SFP_ODOO, FLEET_GW_KEY, "2", NULL), 200);
	cr_assert_eq(sfp_sessions(&c), 0);
	/* The browsers' side: ws_sessions exits 0 once the SFU closed all its sessions. */
	rc = harness_wait_exit(c.browsers->pid, 5000);
	cr_assert_eq(rc, 0, "the browsers' sessions did not close (%d):\n%s", rc,
		     harness_all_logs());
	c.browsers->pid = 0;
	cr_assert_not_null(strstr(harness_log(c.browsers), "session 2 closed"), "%s",
			   harness_log(c.browsers));
}

/* Another host with Odoo's key, as itself or claiming Odoo's address, closes nothing; Odoo
 * then still can. */
Test(interop_sfu_patches, strangers_close_nothing_with_gateway_key, .fini = harness_cleanup,
     .timeout = 60)
{
	struct sfp_call c;

	sfp_call_start(&c, HARNESS_PEER_PATCHED, sfp_keyed, NULL, 1);
	sfp_strangers_close_nothing(&c, FLEET_GW_KEY, "1", 1);
	cr_assert_eq(sfp_hangup(&c, SFP_ODOO, FLEET_GW_KEY, "1", NULL), 200);
	cr_assert_eq(sfp_sessions(&c), 0, "Odoo could not hang up after the strangers tried");
}

/* The roadmap's address-only mode: the token proves nothing, the address is all that counts,
 * and with trusted proxies a client cannot forge it. */
Test(interop_sfu_patches, unverified_mode_checks_the_address, .fini = harness_cleanup,
     .timeout = 60)
{
	struct sfp_call c;

	sfp_call_start(&c, HARNESS_PEER_PATCHED, sfp_unverified, NULL, 2);
	sfp_warned(&c, "DISCONNECT_UNVERIFIED is set");
	sfp_strangers_close_nothing(&c, FLEET_BAD_KEY, "1,2", 2);
	/* Why it is weaker: from Odoo's address a token signed with any key closes sessions. */
	cr_assert_eq(sfp_hangup(&c, SFP_ODOO, FLEET_BAD_KEY, "2", NULL), 200);
	cr_assert_eq(sfp_sessions(&c), 1);
	cr_assert_eq(sfp_hangup(&c, SFP_ODOO, FLEET_GW_KEY, "1", NULL), 200);
	cr_assert_eq(sfp_sessions(&c), 0);
}

/* Why the address-only mode needs TRUSTED_PROXIES: without it (and PROXY=1, which the
 * gateway needs) the address comes from a header any client writes, so anyone who knows a
 * channel's uuid hangs up its sessions. The SFU warns at start. */
Test(interop_sfu_patches, unverified_without_trusted_proxies_is_open, .fini = harness_cleanup,
     .timeout = 60)
{
	static const char *const env[] = { "DISCONNECT_UNVERIFIED=1", NULL };
	struct sfp_call c;

	sfp_call_start(&c, HARNESS_PEER_PATCHED, env, NULL, 1);
	sfp_warned(&c, "PROXY is set without TRUSTED_PROXIES");
	cr_assert_eq(sfp_hangup(&c, SFP_STRANGER, FLEET_BAD_KEY, "1", SFP_FORGED_ODOO), 200);
	cr_assert_eq(sfp_sessions(&c), 0, "the forged hang-up did not close the session");
}

/* Without trust_proxy the gateway sends only its peer's address, Odoo's, whatever Odoo's
 * request carried: with the gateways as trusted proxies, that is the creator the SFU
 * records, and Odoo's hang-ups match it. */
Test(interop_sfu_patches, creator_is_odoo_without_trust_proxy, .fini = harness_cleanup,
     .timeout = 60)
{
	struct fleet f;

	fleet_sfus_peer(&f, 1, HARNESS_PEER_PATCHED, sfp_keyed);
	fleet_gateway(&f, NULL, NULL, NULL);
	cr_assert_str_eq(sfp_creator_via(&f, SFP_ODOO, NULL), SFP_ODOO);
	cr_assert_str_eq(sfp_creator_via(&f, SFP_ODOO, SFP_FORGED_OTHER), SFP_ODOO);
	cr_assert_str_eq(sfp_creator_via(&f, SFP_STRANGER, SFP_FORGED_ODOO), SFP_STRANGER);
}

/* With trust_proxy the gateway sends the incoming chain plus its peer. A load balancer in
 * front of it appends Odoo's address; with the balancer listed in TRUSTED_PROXIES too, the
 * right-most address that is no trusted proxy is Odoo's, whatever Odoo's request carried to
 * the left of it. Odoo's hang-up then closes the session. */
Test(interop_sfu_patches, creator_is_odoo_behind_a_balancer, .fini = harness_cleanup,
     .timeout = 60)
{
	static const char *const env[] = {
		"SFU_GATEWAY_KEY=" FLEET_GW_KEY,
		"TRUSTED_PROXIES=" SFP_GATEWAYS "," SFP_BALANCER "/32",
		NULL,
	};
	static const char *const gw_env[] = { "SFU_GATEWAY_TRUST_PROXY=1", NULL };
	struct sfp_call c;

	fleet_sfus_peer(&c.f, 1, HARNESS_PEER_PATCHED, env);
	fleet_gateway(&c.f, NULL, NULL, gw_env);
	cr_assert_str_eq(sfp_creator_via(&c.f, SFP_BALANCER, SFP_FORGED_ODOO), SFP_ODOO);
	/* Odoo straight to the gateway, past the balancer. */
	cr_assert_str_eq(sfp_creator_via(&c.f, SFP_ODOO, NULL), SFP_ODOO);
	/* Whatever Odoo's request carried, the balancer appended Odoo's own address. */
	sfp_call_open(&c, SFP_BALANCER, "X-Forwarded-For: 10.66.66.66, " SFP_ODOO "\r\n", 1);
	cr_assert_eq(sfp_hangup(&c, SFP_ODOO, FLEET_GW_KEY, "1", NULL), 200);
	cr_assert_eq(sfp_sessions(&c), 0, "Odoo behind the balancer could not hang up");
}

/* The same balancer left out of TRUSTED_PROXIES: the SFU takes it for the client, so the
 * channel belongs to the balancer's address and Odoo's hang-ups close nothing. */
Test(interop_sfu_patches, balancer_left_out_of_trusted_proxies, .fini = harness_cleanup,
     .timeout = 60)
{
	static const char *const gw_env[] = { "SFU_GATEWAY_TRUST_PROXY=1", NULL };
	struct fleet f;
	struct harness_resp *r;
	char uuid[64];

	fleet_sfus_peer(&f, 1, HARNESS_PEER_PATCHED, sfp_keyed);
	fleet_gateway(&f, NULL, NULL, gw_env);
	r = fleet_channel_from(SFP_BALANCER, f.gw->port, fleet_issuer(), FLEET_GW_KEY,
			       SFP_FORGED_ODOO);
	snprintf(uuid, sizeof(uuid), "%s", fleet_uuid(r));
	free(r);
	cr_assert_str_eq(fleet_creator(f.sfu[0], uuid), SFP_BALANCER);
	harness_ws_sessions(f.sfu[0]->port, uuid, FLEET_CHANNEL_KEY, 1, 1);
	cr_assert_eq(fleet_hangup(f.sfu[0], SFP_ODOO, FLEET_GW_KEY, uuid, "1", NULL), 200);
	cr_assert_eq(fleet_sessions(f.sfu[0], uuid), 1);
}

/* ---- heartbeats from the patched SFU itself */

/* Two gateways that take registrations signed with SFP_REG_KEY and expire an SFU after
 * stale_ms without a heartbeat. */
static void sfp_gateways(struct harness_proc *gw[2], int stale_ms)
{
	char toml[512];

	snprintf(toml, sizeof(toml),
		 "[registration]\nkey = \"" SFP_REG_KEY "\"\nstale_after_ms = %d\n" SFP_NO_OVERLOAD,
		 stale_ms);
	for (int i = 0; i < 2; i++)
		gw[i] = harness_gateway_keyed(FLEET_GW_KEY, NULL, 2, toml);
}

/* A patched SFU that registers itself with both gateways, in region eu-west, at the address
 * SFU_ADDRESS names; waits until both list it as registered and up. */
static struct harness_proc *sfp_registering_sfu(struct harness_proc *const gw[2])
{
	static char urls[128], address[96], port_env[32], ping[64];
	int port = harness_free_port();
	const char *const env[] = {
		urls,
		"SFU_GATEWAY_REGISTRATION_KEY=" SFP_REG_KEY,
		"SFU_REGION=eu-west",
		address,
		ping,
		port_env,
		NULL,
	};
	struct harness_proc *sfu;

	snprintf(urls, sizeof(urls), "SFU_GATEWAY_URL=%s,%s", harness_url(gw[0]->port),
		 harness_url(gw[1]->port));
	snprintf(address, sizeof(address), "SFU_ADDRESS=%s", harness_url(port));
	snprintf(ping, sizeof(ping), "SFU_GATEWAY_PING_INTERVAL=%d", SFP_PING_MS);
	snprintf(port_env, sizeof(port_env), "PORT=%d", port);
	sfu = harness_real_sfu_up_peer(HARNESS_PEER_PATCHED, FLEET_SFU_KEY, env);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(fleet_health_wait(gw[i]->port, port, "channels", 0, 5000), 0,
			     "the SFU did not register with gateway %d:\n%s", i, harness_all_logs());
		cr_assert_str_eq(fleet_health_str(gw[i]->port, port, "source"), "registered");
		cr_assert_str_eq(fleet_health_str(gw[i]->port, port, "region"), "eu-west");
		cr_assert_str_eq(fleet_health_str(gw[i]->port, port, "state"), "up",
				 "gateway %d: %s", i, harness_all_logs());
	}
	return sfu;
}

/* Waits up to timeout_ms until neither gateway lists address; returns the ms it took from
 * since (harness_now_ms()), or -1 when one still lists it. */
static int64_t sfp_gone_from_both(struct harness_proc *const gw[2], const char *address,
				  int64_t since, int timeout_ms)
{
	int64_t deadline = since + timeout_ms;

	for (;;) {
		int listed = 0;

		for (int i = 0; i < 2; i++) {
			struct json_object *s = harness_health_sfu(gw[i]->port, address, NULL);

			listed += s != NULL;
			json_object_put(s);
		}
		if (listed == 0)
			return harness_now_ms() - since;
		if (harness_now_ms() >= deadline)
			return -1;
		poll(NULL, 0, 50);
	}
}

Test(interop_sfu_patches, sfu_registers_with_two_gateways_and_signs_off,
     .fini = harness_cleanup, .timeout = 90)
{
	struct harness_proc *gw[2], *sfu;
	char address[64], uuid[2][64];
	int64_t t0, took;
	int status;

	/* Registrations expire after a minute: what leaves sooner was signed off. */
	sfp_gateways(gw, 60000);
	sfu = sfp_registering_sfu(gw);
	snprintf(address, sizeof(address), "%s", harness_url(sfu->port));
	for (int i = 0; i < 2; i++) {
		struct harness_resp *r = fleet_channel(gw[i]->port, fleet_issuer(), FLEET_GW_KEY, NULL);

		snprintf(uuid[i], sizeof(uuid[i]), "%s", fleet_uuid(r));
		cr_assert_str_eq(harness_json_str(r->body, "url"), address,
				 "gateway %d did not send the channel to the registered SFU", i);
		free(r);
	}
	cr_assert_eq(fleet_stats_count(sfu), 2);
	harness_ws_sessions(sfu->port, uuid[0], FLEET_CHANNEL_KEY, 3, 1);
	/* The heartbeats carry the SFU's own counts, to both gateways. */
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(fleet_health_wait(gw[i]->port, sfu->port, "channels", 2, 5000), 2);
		cr_assert_eq(fleet_health_wait(gw[i]->port, sfu->port, "sessions", 3, 5000), 3,
			     "gateway %d does not show the SFU's sessions", i);
	}

	t0 = harness_now_ms();
	status = harness_stop(sfu, SIGTERM, 5000);
	cr_assert(status == 0, "the SFU did not exit 0 on SIGTERM (status %d):\n%s", status,
		  harness_all_logs());
	took = sfp_gone_from_both(gw, address, t0, SFP_SIGN_OFF_MS);
	cr_assert_geq(took, 0, "a gateway still lists the SFU %d ms after its SIGTERM:\n%s",
		      SFP_SIGN_OFF_MS, harness_all_logs());
	fprintf(stderr, "interop_sfu_patches: signed off from both gateways %lld ms after SIGTERM\n",
		(long long)took);
}

Test(interop_sfu_patches, sfu_expires_after_sigkill, .fini = harness_cleanup, .timeout = 90)
{
	struct harness_proc *gw[2], *sfu;
	char address[64];
	int64_t t0, took;

	sfp_gateways(gw, SFP_STALE_MS);
	sfu = sfp_registering_sfu(gw);
	snprintf(address, sizeof(address), "%s", harness_url(sfu->port));
	t0 = harness_now_ms();
	cr_assert_eq(harness_stop(sfu, SIGKILL, 5000) & 0x7f, SIGKILL);
	/* Nothing was signed off: both still list the SFU until its heartbeats are stale. */
	for (int i = 0; i < 2; i++) {
		struct json_object *s = harness_health_sfu(gw[i]->port, address, NULL);

		cr_assert_not_null(s, "gateway %d dropped the SFU at once after SIGKILL", i);
		json_object_put(s);
	}
	took = sfp_gone_from_both(gw, address, t0, SFP_STALE_MS + 3000);
	cr_assert_geq(took, 0, "a gateway still lists the SFU %d ms after its SIGKILL:\n%s",
		      SFP_STALE_MS + 3000, harness_all_logs());
	/* Its last heartbeat was at most an interval (plus scheduling) before the kill. */
	cr_assert_geq(took, SFP_STALE_MS / 2, "the SFU left after %lld ms, before it was stale",
		      (long long)took);
	fprintf(stderr, "interop_sfu_patches: expired from both gateways %lld ms after SIGKILL\n",
		(long long)took);
}
