/* Integration tests of load-based selection: real heartbeats and channel requests, mock counts. */
#include <criterion/criterion.h>

#include <json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define BAL_GW_KEY "YmFsYW5jZS10ZXN0cy1nYXRld2F5LWtleS0wMDAwMDAx"
#define BAL_SFU_KEY "YmFsYW5jZS10ZXN0cy1zZnUta2V5LTAwMDAwMDAwMDAy"
#define BAL_MAX_MOCKS 4
#define BAL_BURST_MAX 64

/* What one test started: a gateway and its mocks (registered by heartbeats we send). */
struct bal_env {
	struct harness_proc *gw;
	struct harness_proc *mock[BAL_MAX_MOCKS];
	int n;
};

/* The load one heartbeat reports. */
struct bal_load {
	const char *region;
	int sessions;
	double cpu, memory;
	int max_sessions; /* 0: not sent */
};

/* A gateway with the TOML text (NULL: defaults) and `workers` workers. */
static struct harness_proc *bal_gateway(const char *toml, int workers)
{
	return harness_gateway_keyed(BAL_GW_KEY, NULL, workers, toml);
}

/* Starts n mocks with the extra args (may be NULL). */
static void bal_mocks(struct bal_env *e, int n, const char *const *args)
{
	cr_assert(n <= BAL_MAX_MOCKS);
	for (int i = 0; i < n; i++) {
		e->mock[i] = harness_mock_start(BAL_SFU_KEY, args);
		cr_assert_not_null(e->mock[i], "mock %d did not start", i);
	}
	e->n = n;
}

/* One heartbeat for mock i to gw, as the SFU would send it; asserts a 200. */
static void bal_beat(const struct bal_env *e, const struct harness_proc *gw, int i,
		     const struct bal_load *l)
{
	const char *addr = harness_url(e->mock[i]->port);
	char body[1024], max[48] = "";
	struct harness_resp *r;

	if (l->max_sessions > 0)
		snprintf(max, sizeof(max), ",\"maxSessions\":%d", l->max_sessions);
	snprintf(body, sizeof(body),
		 "{\"status\":\"up\",\"address\":\"%s\",\"region\":\"%s\",\"key\":\"%s\","
		 "\"channels\":0,\"sessions\":%d,\"cpuUsage\":%.4f,\"memoryUsage\":%.4f%s}",
		 addr, l->region ? l->region : "eu-west", BAL_SFU_KEY, l->sessions, l->cpu,
		 l->memory, max);
	r = harness_heartbeat(gw->port, addr, BAL_GW_KEY, body);
	cr_assert_eq(r->status, 200, "heartbeat of mock %d: %d %s", i, r->status, r->body);
	free(r);
}

/* Heartbeats for all mocks of e, in order (so slot i holds mock i). */
static void bal_beat_all(const struct bal_env *e, const struct bal_load *loads)
{
	for (int i = 0; i < e->n; i++)
		bal_beat(e, e->gw, i, &loads[i]);
}

/* An issuer never used before in this process: repeats of one (client, iss)
 * stick to one SFU, which selection tests must not trip over. */
static const char *bal_iss(void)
{
	static char buf[96];
	static int seq;

	snprintf(buf, sizeof(buf), "https://odoo.example.com:channel:%d", seq++);
	return buf;
}

/* One channel request (query may be ""); returns which mock served it. */
static int bal_channel(const struct bal_env *e, const char *query)
{
	char path[256];
	struct harness_resp *r;
	int who;

	snprintf(path, sizeof(path), "/v1/channel%s", query);
	r = harness_channel(e->gw->port, path, bal_iss(), BAL_GW_KEY, NULL);
	cr_assert_eq(r->status, 200, "GET %s: %d %s", path, r->status, r->body);
	who = harness_served_by(e->mock, e->n, r->body);
	cr_assert(who >= 0, "answer from no known mock: %s", r->body);
	free(r);
	return who;
}

static double bal_assigned(const struct bal_env *e, int i, const char *region)
{
	char series[256];

	snprintf(series, sizeof(series), "sfu_gateway_sfu_assigned{address=\"%s\",region=\"%s\"}",
		 harness_url(e->mock[i]->port), region);
	return harness_metric(e->gw->port, series);
}

/* n sequential requests; counts[i] += requests mock i served. */
static void bal_run(const struct bal_env *e, int n, int *counts)
{
	for (int k = 0; k < n; k++)
		counts[bal_channel(e, "")]++;
}

/* n requests sent at once on n connections, then all answers read; counts[i] +=
 * requests mock i served. Every request must succeed. */
static void bal_burst(const struct bal_env *e, int n, int *counts)
{
	static struct harness_call calls[BAL_BURST_MAX];

	cr_assert(n <= BAL_BURST_MAX);
	for (int k = 0; k < n; k++)
		harness_channel_req(calls[k].req, sizeof(calls[k].req),
				    harness_odoo_token(bal_iss(), BAL_GW_KEY));
	harness_batch(e->gw->port, calls, n, n, 10000);
	for (int k = 0; k < n; k++) {
		int who;

		cr_assert(calls[k].done, "burst request %d got no complete answer", k);
		cr_assert(strncmp(calls[k].head, "HTTP/1.1 200", 12) == 0,
			  "burst request %d: %.200s", k, calls[k].head);
		who = harness_served_by(e->mock, e->n, calls[k].body);
		cr_assert(who >= 0, "burst request %d: no known url: %.300s", k, calls[k].body);
		counts[who]++;
	}
}

/* ---- tests */

Test(balance, idlest_wins, .fini = harness_cleanup, .timeout = 30)
{
	struct bal_env e = { 0 };
	const struct bal_load first[] = { { NULL, 50, 0.2, 0.2, 100 },
					  { NULL, 10, 0.2, 0.2, 100 },
					  { NULL, 30, 0.2, 0.2, 100 } };
	const struct bal_load second[] = { { NULL, 5, 0.2, 0.2, 100 },
					   { NULL, 90, 0.2, 0.2, 100 },
					   { NULL, 30, 0.2, 0.2, 100 } };
	/* Same sessions: the CPU decides. */
	const struct bal_load third[] = { { NULL, 20, 0.9, 0.2, 100 },
					  { NULL, 20, 0.6, 0.2, 100 },
					  { NULL, 20, 0.1, 0.2, 100 } };
	/* maxSessions scales the ratio: 40 of 400 is idler than 20 of 100. */
	const struct bal_load fourth[] = { { NULL, 20, 0.2, 0.2, 100 },
					   { NULL, 40, 0.2, 0.2, 400 },
					   { NULL, 30, 0.2, 0.2, 100 } };

	bal_mocks(&e, 3, NULL);
	e.gw = bal_gateway(NULL, 1);
	bal_beat_all(&e, first);
	cr_assert_eq(bal_channel(&e, ""), 1, "sessions 50/10/30");
	bal_beat_all(&e, second);
	cr_assert_eq(bal_channel(&e, ""), 0, "sessions 5/90/30");
	bal_beat_all(&e, third);
	cr_assert_eq(bal_channel(&e, ""), 2, "cpu 0.9/0.6/0.1");
	bal_beat_all(&e, fourth);
	cr_assert_eq(bal_channel(&e, ""), 1, "sessions 20/100, 40/400, 30/100");
}

Test(balance, weights_change_the_winner, .fini = harness_cleanup, .timeout = 30)
{
	struct bal_env e = { 0 };
	/* A: no sessions, busy CPU. B: 40 % sessions, idle CPU. Same memory. */
	const struct bal_load loads[] = { { NULL, 0, 0.9, 0.1, 100 }, { NULL, 40, 0.0, 0.1, 100 } };
	struct harness_proc *sess, *mem;
	int counts[2] = { 0, 0 };

	bal_mocks(&e, 2, NULL);
	/* Defaults 0.5/0.3/0.2: A = 0.27 + 0.02, B = 0.20 + 0.02: B. */
	e.gw = bal_gateway(NULL, 1);
	bal_beat_all(&e, loads);
	cr_assert_eq(bal_channel(&e, ""), 1, "default weights");

	/* Sessions first: A = 0.09 + 0.02, B = 0.40 + 0.02: A. */
	sess = bal_gateway("[balancing.weights]\nsessions = 1.0\ncpu = 0.1\nmemory = 0.2\n", 1);
	e.gw = sess;
	bal_beat_all(&e, loads);
	cr_assert_eq(bal_channel(&e, ""), 0, "sessions weight 1.0, cpu 0.1");

	/* Memory alone: both score 0.1, an exact tie, which goes round-robin. */
	mem = bal_gateway("[balancing.weights]\nsessions = 0\ncpu = 0\nmemory = 1\n", 1);
	e.gw = mem;
	bal_beat_all(&e, loads);
	bal_run(&e, 10, counts);
	cr_assert_eq(counts[0], 5, "tie: %d/%d", counts[0], counts[1]);
	cr_assert_eq(counts[1], 5, "tie: %d/%d", counts[0], counts[1]);
}

Test(balance, burst_reaches_all_idlest_most, .fini = harness_cleanup, .timeout = 30)
{
	struct bal_env e = { 0 };
	const struct bal_load loads[] = { { NULL, 20, 0.3, 0.3, 100 },
					  { NULL, 25, 0.3, 0.3, 100 },
					  { NULL, 30, 0.3, 0.3, 100 } };
	int counts[3] = { 0, 0, 0 };

	bal_mocks(&e, 3, NULL);
	e.gw = bal_gateway(NULL, 2);
	bal_beat_all(&e, loads);
	bal_run(&e, 30, counts);
	cr_log_info("sequential burst 20/25/30: %d/%d/%d", counts[0], counts[1], counts[2]);
	/* Counting assignments fills the levels: 5 to A brings it to 25, 10 more
	 * (5 each) bring A and B to 30, the last 15 (5 each) bring all to 35. */
	cr_assert_eq(counts[0], 15, "A got %d", counts[0]);
	cr_assert_eq(counts[1], 10, "B got %d", counts[1]);
	cr_assert_eq(counts[2], 5, "C got %d", counts[2]);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(harness_mock_int(e.mock[i], "/mock/stats", "channel_requests"),
			     counts[i], "mock %d counted otherwise", i);
}

/*
 * The same burst, but all 30 requests in flight at once (each SFU answers after
 * 100 ms, as a real one under load may). Selection must count a channel as load
 * when it sends it: counting only when the SFU's answer arrives lets every
 * request of the burst see the same loads and herd onto the idlest SFU.
 */
Test(balance, concurrent_burst_does_not_herd, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const slow[] = { "--delay-ms", "100", NULL };
	struct bal_env e = { 0 };
	const struct bal_load loads[] = { { NULL, 20, 0.3, 0.3, 100 },
					  { NULL, 25, 0.3, 0.3, 100 },
					  { NULL, 30, 0.3, 0.3, 100 } };
	int counts[3] = { 0, 0, 0 };

	bal_mocks(&e, 3, slow);
	e.gw = bal_gateway(NULL, 2);
	bal_beat_all(&e, loads);
	bal_burst(&e, 30, counts);
	cr_log_info("concurrent burst 20/25/30: %d/%d/%d", counts[0], counts[1], counts[2]);
	cr_assert(counts[2] >= 1 && counts[1] >= 1, "the burst herded: %d/%d/%d", counts[0],
		  counts[1], counts[2]);
	cr_assert(counts[0] >= counts[1] && counts[1] >= counts[2], "order: %d/%d/%d", counts[0],
		  counts[1], counts[2]);
	cr_assert_leq(counts[0], 20, "the idlest took %d of 30", counts[0]);
}

Test(balance, round_robin_ignores_load, .fini = harness_cleanup, .timeout = 30)
{
	struct bal_env e = { 0 };
	const struct bal_load loads[] = { { NULL, 0, 0.0, 0.0, 100 },
					  { NULL, 50, 0.5, 0.5, 100 },
					  { NULL, 90, 0.9, 0.9, 100 } };
	int counts[3] = { 0, 0, 0 }, prev = -1;

	bal_mocks(&e, 3, NULL);
	e.gw = bal_gateway("[balancing]\nstrategy = \"round-robin\"\n", 2);
	bal_beat_all(&e, loads);
	for (int k = 0; k < 30; k++) {
		int who = bal_channel(&e, "");

		cr_assert_neq(who, prev, "request %d went to mock %d twice in a row", k, who);
		prev = who;
		counts[who]++;
	}
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(counts[i], 10, "round-robin: %d/%d/%d", counts[0], counts[1],
			     counts[2]);
		cr_assert_eq(harness_mock_int(e.mock[i], "/mock/stats", "channel_requests"), 10);
	}
}

Test(balance, region_hint_beats_load, .fini = harness_cleanup, .timeout = 30)
{
	struct bal_env e = { 0 };
	const struct bal_load loads[] = { { "eu-west", 80, 0.7, 0.7, 100 },
					  { "us-east", 5, 0.1, 0.1, 100 },
					  { "ap-southeast", 10, 0.1, 0.1, 100 } };

	bal_mocks(&e, 3, NULL);
	e.gw = bal_gateway(NULL, 1);
	bal_beat_all(&e, loads);
	for (int k = 0; k < 3; k++) {
		cr_assert_eq(bal_channel(&e, "?region=eu-west"), 0, "region=eu-west");
		cr_assert_eq(bal_channel(&e, "?country=FR"), 0, "country=FR");
	}
	cr_assert_eq(bal_channel(&e, ""), 1, "no hint: the idlest");
	/* A region without an SFU: the nearest one that has one, busy or not. */
	cr_assert_eq(bal_channel(&e, "?region=sa-east"), 1, "region=sa-east -> us-east");
	cr_assert_eq(bal_channel(&e, "?region=eu-central"), 0, "region=eu-central -> eu-west");
	cr_assert_eq(bal_channel(&e, "?region=ap-southeast"), 2, "region=ap-southeast");
}

Test(balance, fresh_heartbeat_resets_assigned, .fini = harness_cleanup, .timeout = 30)
{
	struct bal_env e = { 0 };
	const struct bal_load loads[] = { { NULL, 10, 0.2, 0.2, 100 },
					  { NULL, 20, 0.2, 0.2, 100 } };

	bal_mocks(&e, 2, NULL);
	e.gw = bal_gateway(NULL, 2);
	bal_beat_all(&e, loads);
	/* A at 10 + k stays below B at 20 for ten requests. */
	for (int k = 0; k < 10; k++)
		cr_assert_eq(bal_channel(&e, ""), 0, "request %d", k);
	cr_assert_eq(bal_assigned(&e, 0, "eu-west"), 10);
	cr_assert_eq(bal_assigned(&e, 1, "eu-west"), 0);
	/* B's report does not touch A's estimate. */
	bal_beat(&e, e.gw, 1, &loads[1]);
	cr_assert_eq(bal_assigned(&e, 0, "eu-west"), 10);

	/* A reports 10 sessions again: its estimate restarts from there, so the
	 * next five go to A too (without the reset, A and B would tie at 20). */
	bal_beat(&e, e.gw, 0, &loads[0]);
	cr_assert_eq(bal_assigned(&e, 0, "eu-west"), 0, "the heartbeat kept the estimate");
	for (int k = 0; k < 5; k++)
		cr_assert_eq(bal_channel(&e, ""), 0, "after the report, request %d", k);
	cr_assert_eq(bal_assigned(&e, 0, "eu-west"), 5);
	cr_assert_eq(harness_mock_int(e.mock[0], "/mock/stats", "channel_requests"), 15);
	cr_assert_eq(harness_mock_int(e.mock[1], "/mock/stats", "channel_requests"), 0);
}
