/* What failed in front of real odoo/sfu processes: a hung SFU, empty iss, large stats, keys, load. */
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

#define FAIL_REQUESTS 20
/* How much slower than an unhurried request one that meets a hung SFU may be: the failover
 * budget (1 s) plus scheduling noise of two shared cores. */
#define FAIL_STOPPED_EXTRA_MS 1000
#define FAIL_MARGIN_MS 250
#define FAIL_BIG_CHANNELS 1000
/* New calls asked for while the full call runs. */
#define FAIL_NEW_CALLS 100
#define FAIL_CALL_SIZE 100
/* Probes often enough that a test sees a change within a second; no other setting. */
#define FAIL_FAST_PROBES "[probe]\ninterval_ms = 300\n"
#define FAIL_ERR_MISSING_ISS "{\"error\":\"missing iss claim\"}"
#define FAIL_PROBES_OK "sfu_gateway_probes_total{result=\"ok\"}"

static int fail_cmp_ms(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* FAIL_REQUESTS sequential channel requests for fresh issuers, each timed into ms[] (sorted
 * on return); returns how many were not 200, the first of them described in first_bad. */
static int fail_run(const struct fleet *f, int64_t *ms, char *first_bad, size_t len)
{
	int bad = 0;

	first_bad[0] = '\0';
	for (int i = 0; i < FAIL_REQUESTS; i++) {
		int64_t t0 = harness_now_ms();
		struct harness_resp *r = fleet_channel(f->gw->port, fleet_issuer(), FLEET_GW_KEY,
						       NULL);

		ms[i] = harness_now_ms() - t0;
		if (r->status != 200 && bad++ == 0)
			snprintf(first_bad, len, "request %d: %d %.200s after %lld ms", i, r->status,
				 r->body, (long long)ms[i]);
		free(r);
	}
	qsort(ms, FAIL_REQUESTS, sizeof(ms[0]), fail_cmp_ms);
	return bad;
}

/* The first line of text containing needle ("" when none). Static buffer. */
static const char *fail_line(const char *text, const char *needle)
{
	static char out[1024];
	const char *hit = strstr(text, needle), *start, *end;

	out[0] = '\0';
	if (hit == NULL)
		return out;
	for (start = hit; start > text && start[-1] != '\n'; start--)
		;
	end = strchr(hit, '\n');
	snprintf(out, sizeof(out), "%.*s", end != NULL ? (int)(end - start) : (int)strlen(start),
		 start);
	return out;
}

/* A GET /v1/channel straight to an SFU, signed with its own key, for issuer iss. */
static void fail_direct_req(char *out, size_t len, const char *iss)
{
	char claims[256];

	snprintf(claims, sizeof(claims), "{\"iss\":\"%s\",\"exp\":%lld}", iss,
		 (long long)time(NULL) + 600);
	snprintf(out, len,
		 "GET " FLEET_CHANNEL_PATH " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		 "Authorization: jwt %s\r\nConnection: close\r\n\r\n",
		 harness_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims, FLEET_SFU_KEY));
}

/* 1. A hung SFU (SIGSTOP: the kernel still accepts its connections, so only a response
 * timer notices) must cost a request at most a second, never a failure. */
Test(interop_failures, stopped_sfu_costs_under_a_second, .fini = harness_cleanup,
     .timeout = 150)
{
	struct fleet f;
	int64_t base[FAIL_REQUESTS], hung[FAIL_REQUESTS], limit;
	char first_bad[512];
	int bad;

	fleet_sfus(&f, 3, NULL);
	fleet_gateway(&f, NULL, NULL, NULL);
	bad = fail_run(&f, base, first_bad, sizeof(first_bad));
	cr_assert_eq(bad, 0, "with every SFU up: %s", first_bad);

	cr_assert_eq(kill(f.sfu[1]->pid, SIGSTOP), 0);
	bad = fail_run(&f, hung, first_bad, sizeof(first_bad));
	limit = base[FAIL_REQUESTS / 2] + FAIL_STOPPED_EXTRA_MS + FAIL_MARGIN_MS;
	fprintf(stderr,
		"interop_failures: one of 3 SFUs stopped: %d of %d requests failed; latency "
		"p50 %lld ms, max %lld ms (all SFUs up: p50 %lld ms, max %lld ms; limit %lld ms)\n",
		bad, FAIL_REQUESTS, (long long)hung[FAIL_REQUESTS / 2],
		(long long)hung[FAIL_REQUESTS - 1], (long long)base[FAIL_REQUESTS / 2],
		(long long)base[FAIL_REQUESTS - 1], (long long)limit);
	cr_expect_eq(bad, 0, "%d of %d requests failed with one SFU stopped; first: %s", bad,
		     FAIL_REQUESTS, first_bad);
	cr_expect_leq(hung[FAIL_REQUESTS - 1], limit,
		      "a request took %lld ms with one SFU stopped (limit %lld ms)",
		      (long long)hung[FAIL_REQUESTS - 1], (long long)limit);
	cr_expect_neq(strstr(harness_log(f.gw), "response timeout"), NULL,
		      "the gateway log does not name the response timeout:\n%s",
		      harness_log(f.gw));
	kill(f.sfu[1]->pid, SIGCONT);
}

/* 2. A token with an empty iss is the request's fault: refused at the gateway, as the SFU
 * would, and never held against an SFU's health. */
Test(interop_failures, empty_iss_refused_and_circuits_stay_closed, .fini = harness_cleanup,
     .timeout = 120)
{
	struct fleet f;
	int wrong = 0, refused_ok = 0;
	char first_wrong[512] = "";

	fleet_sfus(&f, 3, NULL);
	fleet_gateway(&f, NULL, NULL, NULL);
	for (int i = 0; i < FAIL_REQUESTS; i++) {
		struct harness_resp *r = fleet_channel(f.gw->port, "", FLEET_GW_KEY, NULL);

		if (r->status == 403 && strcmp(r->body, FAIL_ERR_MISSING_ISS) == 0)
			refused_ok++;
		else if (wrong++ == 0)
			snprintf(first_wrong, sizeof(first_wrong), "token %d: %d %.200s", i,
				 r->status, r->body);
		free(r);
	}
	cr_expect_eq(wrong, 0, "%d of %d empty-iss tokens were not refused with 403 %s; "
		     "first: %s", wrong, FAIL_REQUESTS, FAIL_ERR_MISSING_ISS, first_wrong);
	for (int i = 0; i < f.n; i++)
		cr_expect_eq(fleet_stats_count(f.sfu[i]), 0, "SFU %d got an empty-iss token", i);
	for (int i = 0; i < 5; i++) {
		struct harness_resp *r = fleet_channel(f.gw->port, fleet_issuer(), FLEET_GW_KEY,
						       NULL);

		cr_expect_eq(r->status, 200, "a valid request after the empty-iss tokens: %d %s",
			     r->status, r->body);
		free(r);
	}
	for (int i = 0; i < f.n; i++)
		cr_expect_str_eq(fleet_health_str(f.gw->port, f.sfu[i]->port, "circuit.state"),
				 "closed", "SFU %d's circuit", i);
}

/* 3. /v1/stats of an SFU with 1,000 channels (about 260 KB): read whole by the probe of a
 * static SFU and by the agent of a registered one. */
Test(interop_failures, thousand_channels_read_by_probe_and_agent, .fini = harness_cleanup,
     .timeout = 120)
{
	static const char *const reg_toml =
		"[registration]\nstale_after_ms = 60000\n"
		"[overload]\nmax_cpu = 1.0\nmax_memory = 1.0\nmax_load_score = 1000.0\n";
	struct fleet f;
	struct harness_proc *reg_gw;
	struct harness_call *calls = calloc(FAIL_BIG_CHANNELS, sizeof(*calls));
	struct harness_resp *r = calloc(1, sizeof(*r));
	char gw_url[64], address[64], length[32] = "?";
	int64_t probed, registered;

	cr_assert(calls != NULL && r != NULL);
	fleet_sfus(&f, 1, NULL);
	for (int i = 0; i < FAIL_BIG_CHANNELS; i++) {
		char iss[64];

		snprintf(iss, sizeof(iss), "https://odoo.example.com:channel:%d", i);
		fail_direct_req(calls[i].req, sizeof(calls[i].req), iss);
	}
	harness_batch(f.sfu[0]->port, calls, FAIL_BIG_CHANNELS, 16, 60000);
	for (int i = 0; i < FAIL_BIG_CHANNELS; i++)
		cr_assert_eq(calls[i].status, 200, "channel %d: %d %s", i, calls[i].status,
			     calls[i].body);
	free(calls);
	harness_get(f.sfu[0]->port, "/v1/stats", NULL, r);
	harness_resp_header(r, "Content-Length", length, sizeof(length));
	free(r);
	fprintf(stderr, "interop_failures: /v1/stats of %d channels is %s bytes\n",
		FAIL_BIG_CHANNELS, length);

	fleet_gateway(&f, FAIL_FAST_PROBES, NULL, NULL);
	reg_gw = harness_gateway_keyed(FLEET_GW_KEY, NULL, 2, reg_toml);
	snprintf(gw_url, sizeof(gw_url), "%s", harness_url(reg_gw->port));
	snprintf(address, sizeof(address), "%s", harness_url(f.sfu[0]->port));
	{
		const char *const args[] = {
			"-g", gw_url, "-i", "300", "-r", "eu-west", "-a", address,
			"-k", FLEET_SFU_KEY, "-K", FLEET_GW_KEY, NULL,
		};

		harness_agent_start(args, NULL);
	}
	probed = fleet_health_wait(f.gw->port, f.sfu[0]->port, "channels", FAIL_BIG_CHANNELS,
				   8000);
	registered = fleet_health_wait(reg_gw->port, f.sfu[0]->port, "channels",
				       FAIL_BIG_CHANNELS, 8000);
	cr_expect_eq(probed, FAIL_BIG_CHANNELS,
		     "the probed static SFU shows %lld channels in /v1/health, not %d",
		     (long long)probed, FAIL_BIG_CHANNELS);
	cr_expect_eq(registered, FAIL_BIG_CHANNELS,
		     "the agent's SFU shows %lld channels in /v1/health (-1: not registered), "
		     "not %d:\n%s",
		     (long long)registered, FAIL_BIG_CHANNELS, harness_all_logs());
	cr_expect_str_eq(fleet_health_str(reg_gw->port, f.sfu[0]->port, "source"), "registered");
}

/* 4. A wrong SFU key shows in /v1/health and /metrics within seconds, logged once. */
Test(interop_failures, key_mismatch_shown_and_logged_once, .fini = harness_cleanup,
     .timeout = 60)
{
	static const char *const keys[] = { FLEET_BAD_KEY, FLEET_SFU_KEY };
	struct fleet f;
	char bad_series[256], good_series[256];
	const char *log;
	int64_t deadline;
	double probes;

	fleet_sfus(&f, 2, NULL);
	fleet_gateway(&f, FAIL_FAST_PROBES, keys, NULL);
	deadline = harness_now_ms() + 5000;
	while (harness_now_ms() < deadline &&
	       (strcmp(fleet_health_str(f.gw->port, f.sfu[0]->port, "keyCheck"), "mismatch") != 0 ||
		strcmp(fleet_health_str(f.gw->port, f.sfu[1]->port, "keyCheck"), "ok") != 0))
		poll(NULL, 0, 100);
	cr_expect_str_eq(fleet_health_str(f.gw->port, f.sfu[0]->port, "keyCheck"), "mismatch",
			 "keyCheck of the SFU configured with a wrong key");
	cr_expect_str_eq(fleet_health_str(f.gw->port, f.sfu[1]->port, "keyCheck"), "ok",
			 "keyCheck of the SFU configured with its key");
	snprintf(bad_series, sizeof(bad_series),
		 "sfu_gateway_sfu_key_mismatch{address=\"%s\",region=\"eu-west\"}",
		 harness_url(f.sfu[0]->port));
	snprintf(good_series, sizeof(good_series),
		 "sfu_gateway_sfu_key_mismatch{address=\"%s\",region=\"eu-west\"}",
		 harness_url(f.sfu[1]->port));
	cr_expect_eq(harness_metric(f.gw->port, bad_series), 1, "%s", bad_series);
	cr_expect_eq(harness_metric(f.gw->port, good_series), 0, "%s", good_series);

	/* Requests and several probes later, still one line. */
	for (int i = 0; i < 5; i++)
		free(fleet_channel(f.gw->port, fleet_issuer(), FLEET_GW_KEY, NULL));
	probes = harness_metric(f.gw->port, FAIL_PROBES_OK);
	deadline = harness_now_ms() + 5000;
	while (harness_now_ms() < deadline &&
	       harness_metric(f.gw->port, FAIL_PROBES_OK) < probes + 6)
		poll(NULL, 0, 100);
	log = harness_log(f.gw);
	cr_expect_eq(harness_count(log, "key mismatch"), 1,
		     "the gateway logged \"key mismatch\" %d times, not once:\n%s",
		     harness_count(log, "key mismatch"), log);
	cr_expect_neq(strstr(fail_line(log, "key mismatch"), harness_url(f.sfu[0]->port)), NULL,
		      "the key mismatch line does not name %s: %s", harness_url(f.sfu[0]->port),
		      fail_line(log, "key mismatch"));
}

/* 5. One full call (100 sessions, the SFU's channel size) on the only SFU, no capacity
 * stated anywhere: nothing is refused for load. */
Test(interop_failures, full_call_refuses_nothing, .fini = harness_cleanup, .timeout = 90)
{
	struct fleet f;
	struct harness_resp *r;
	char iss[96], uuid[64];
	int status = 0, served = 0;
	struct json_object *health;

	fleet_sfus(&f, 1, NULL);
	fleet_gateway(&f, FAIL_FAST_PROBES, NULL, NULL);
	snprintf(iss, sizeof(iss), "%s", fleet_issuer());
	r = fleet_channel(f.gw->port, iss, FLEET_GW_KEY, NULL);
	cr_assert_eq(r->status, 200, "%d %s", r->status, r->body);
	snprintf(uuid, sizeof(uuid), "%s", harness_json_str(r->body, "uuid"));
	free(r);
	harness_ws_sessions(f.sfu[0]->port, uuid, FLEET_CHANNEL_KEY, FAIL_CALL_SIZE, 1);
	cr_assert_eq(fleet_health_wait(f.gw->port, f.sfu[0]->port, "sessions", FAIL_CALL_SIZE,
				       5000),
		     FAIL_CALL_SIZE, "the gateway does not see the call's sessions");

	health = harness_get_json(f.gw->port, "/v1/health", &status);
	cr_expect_eq(status, 200, "/v1/health with one full call: %d %s", status,
		     json_object_to_json_string(health));
	json_object_put(health);
	for (int i = 0; i < FAIL_NEW_CALLS; i++) {
		r = fleet_channel(f.gw->port, fleet_issuer(), FLEET_GW_KEY, NULL);
		cr_expect_eq(r->status, 200, "a new call's channel: %d %s", r->status, r->body);
		served += r->status == 200;
		free(r);
	}
	fprintf(stderr, "interop_failures: one %d-session call running: %d of %d new calls got "
		"a channel\n", FAIL_CALL_SIZE, served, FAIL_NEW_CALLS);
	r = fleet_channel(f.gw->port, iss, FLEET_GW_KEY, NULL);
	cr_expect_eq(r->status, 200, "the running call's issuer again: %d %s", r->status,
		     r->body);
	cr_expect_str_eq(harness_json_str(r->body, "uuid"), uuid,
			 "the running call's issuer got another channel");
	free(r);
}
