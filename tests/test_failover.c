/* Graceful degradation through real processes: failover, circuit breaker, overload, probes. */
#include <criterion/criterion.h>

#include <json.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define FO_GW_KEY "Zm8tZ2F0ZXdheS1rZXktZm9yLWZhaWxvdmVyLXRlc3RzLTAx"
#define FO_SFU_KEY "Zm8tc2Z1LWtleS1mb3ItZmFpbG92ZXItdGVzdHMtMDAwMg=="
#define FO_ERR_EXHAUSTED "{\"error\":\"no SFU could create the channel\"}"
#define FO_ERR_OVERLOADED "{\"error\":\"all SFUs are overloaded\"}"
#define FO_ERR_UNHEALTHY "{\"error\":\"no healthy SFU available\"}"
/* Sessions a preferred-last mock reports: score 0.25 against 0 for an idle mock, so the
 * faulty (idle) mock is every request's first choice and the fault is always exercised. */
#define FO_BUSY_SESSIONS "50"
#define FO_CHANNEL_200 "sfu_gateway_requests_total{route=\"/v1/channel\",status=\"200\"}"
/* The /metrics series counting circuit transitions to this state. */
#define FO_TRANSITIONS(to) "sfu_gateway_circuit_transitions_total{to=\"" to "\"}"
#define FO_CHANNEL_503 "sfu_gateway_requests_total{route=\"/v1/channel\",status=\"503\"}"
/* Heartbeat load members: sessions, CPU and memory usage (strings). */
#define FO_LOAD(sessions, cpu, memory)                                                     \
	"\"channels\":1,\"sessions\":" sessions ",\"cpuUsage\":" cpu ",\"memoryUsage\":" memory

/* ---- processes */

static struct harness_proc *fo_mock(const char *const *args)
{
	struct harness_proc *m = harness_mock_start(FO_SFU_KEY, args);

	cr_assert_not_null(m, "a mock SFU did not come up");
	return m;
}

/* TOML text: extra (its own sections) then one [[sfu]] per port, all with FO_SFU_KEY. */
static const char *fo_toml(const char *extra, const int *ports, int n)
{
	static char buf[8192];
	size_t o = (size_t)snprintf(buf, sizeof(buf), "%s\n", extra);

	for (int i = 0; i < n; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o,
				      "[[sfu]]\naddress = \"http://127.0.0.1:%d\"\n"
				      "region = \"eu-west\"\nkey = \"%s\"\n",
				      ports[i], FO_SFU_KEY);
	return buf;
}

/* A gateway with the TOML text and the worker count. */
static struct harness_proc *fo_gateway(const char *toml, int workers)
{
	return harness_gateway_keyed(FO_GW_KEY, NULL, workers, toml);
}

/* ---- HTTP */

/* A raw GET /v1/channel with an Odoo token for a fresh issuer (issuer affinity must
 * not pin repeats to one SFU). */
static void fo_channel_req(char *out, size_t outlen)
{
	static int seq;
	char iss[96];

	snprintf(iss, sizeof(iss), "https://odoo-%d.example.com/fo%d", (int)getpid(), seq++);
	harness_channel_req(out, outlen, harness_odoo_token(iss, FO_GW_KEY));
}

/* The Retry-After value of an answer ("" when none). Static buffer. */
static const char *fo_retry_after(const struct harness_call *call)
{
	static char out[32];

	if (!harness_call_header(call, "Retry-After", out, sizeof(out)))
		out[0] = '\0';
	return out;
}

/* One channel request, answered within timeout_ms. */
static void fo_channel(int port, struct harness_call *call, int timeout_ms)
{
	fo_channel_req(call->req, sizeof(call->req));
	harness_batch(port, call, 1, 1, timeout_ms);
}

/* n channel requests over conc connections at a time. Heap array. */
static struct harness_call *fo_channels(int port, int n, int conc, int timeout_ms)
{
	struct harness_call *calls = calloc((size_t)n, sizeof(*calls));

	cr_assert_not_null(calls);
	for (int i = 0; i < n; i++)
		fo_channel_req(calls[i].req, sizeof(calls[i].req));
	harness_batch(port, calls, n, conc, timeout_ms);
	return calls;
}

static const char *fo_json_string(struct json_object *o, const char *field)
{
	struct json_object *v;

	cr_assert(json_object_object_get_ex(o, field, &v), "no field %s", field);
	cr_assert(json_object_is_type(v, json_type_string), "field %s is no string", field);
	return json_object_get_string(v);
}

/* A counter of the mock's /mock/stats. */
static int64_t fo_mock_stat(const struct harness_proc *m, const char *field)
{
	struct json_object *o = harness_get_json(m->port, "/mock/stats", NULL);
	int64_t v = harness_json_int(o, field);

	json_object_put(o);
	return v;
}

static void fo_mock_fault(const struct harness_proc *m, const char *query)
{
	char path[256];

	snprintf(path, sizeof(path), "/mock/fault?%s", query);
	harness_mock_post(m, path, 200);
}

/* Whether the mock's /v1/stats lists a channel with this uuid: the gateway's answer
 * really came from that mock. */
static bool fo_mock_has_channel(const struct harness_proc *m, const char *uuid)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	char pat[80];
	bool found;

	cr_assert_not_null(r);
	cr_assert_eq(harness_get(m->port, "/v1/stats", NULL, r), 0);
	snprintf(pat, sizeof(pat), "\"uuid\":\"%s\"", uuid);
	found = uuid[0] != '\0' && strstr(r->body, pat) != NULL;
	free(r);
	return found;
}

/* /v1/health's entry for the SFU on this port (a new reference), NULL if absent. */
static struct json_object *fo_health_sfu(const struct harness_proc *gw, int port, int *status)
{
	return harness_health_sfu(gw->port, harness_url(port), status);
}

/* The SFU's "state" in /v1/health ("" when absent). Static buffer. */
static const char *fo_state(const struct harness_proc *gw, int port)
{
	static char out[32];
	struct json_object *s = fo_health_sfu(gw, port, NULL);

	out[0] = '\0';
	if (s != NULL)
		snprintf(out, sizeof(out), "%s", fo_json_string(s, "state"));
	json_object_put(s);
	return out;
}

static const char *fo_circuit(const struct harness_proc *gw, int port, int64_t *failures)
{
	static char out[32];
	struct json_object *s = fo_health_sfu(gw, port, NULL), *cb;

	cr_assert_not_null(s);
	cr_assert(json_object_object_get_ex(s, "circuit", &cb));
	snprintf(out, sizeof(out), "%s", fo_json_string(cb, "state"));
	if (failures != NULL)
		*failures = harness_json_int(cb, "failures");
	json_object_put(s);
	return out;
}

/* Polls /v1/health until the SFU's state is want, up to timeout_ms. */
static bool fo_wait_state(const struct harness_proc *gw, int port, const char *want,
			  int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	while (harness_now_ms() < deadline) {
		if (strcmp(fo_state(gw, port), want) == 0)
			return true;
		poll(NULL, 0, 20);
	}
	return false;
}

/* Polls until a probe reported this many sessions for the SFU. */
static void fo_wait_sessions(const struct harness_proc *gw, int port, int64_t sessions)
{
	int64_t deadline = harness_now_ms() + 8000, got = -1;

	while (harness_now_ms() < deadline) {
		struct json_object *s = fo_health_sfu(gw, port, NULL);

		got = s != NULL ? harness_json_int(s, "sessions") : -1;
		json_object_put(s);
		if (got == sessions)
			return;
		poll(NULL, 0, 20);
	}
	cr_assert_fail("SFU on port %d: sessions %lld, want %lld", port, (long long)got,
		       (long long)sessions);
}

/* Polls /metrics until series reaches at least min. */
static void fo_wait_metric(const struct harness_proc *gw, const char *series, double min)
{
	int64_t deadline = harness_now_ms() + 8000;
	double v = -1;

	while (harness_now_ms() < deadline) {
		v = harness_metric(gw->port, series);
		if (v >= min)
			return;
		poll(NULL, 0, 20);
	}
	cr_assert_fail("%s = %g, want >= %g", series, v, min);
}

/* A 200 answer created by mock m (its uuid is in m's channel list). */
static void fo_assert_served_by(const struct harness_call *call, const struct harness_proc *m)
{
	cr_assert_eq(call->status, 200, "status %d body %s", call->status, call->body);
	cr_assert_str_eq(harness_json_str(call->body, "url"), harness_url(m->port), "body %s",
			 call->body);
	cr_assert(fo_mock_has_channel(m, harness_json_str(call->body, "uuid")),
		  "uuid of %s not on the mock on port %d", call->body, m->port);
}

/* ---- failover: one faulty SFU among healthy ones */

#define FO_FAULT_TOML                                                                      \
	"[failover]\nmax_retries = 3\nretry_timeout_ms = 300\nconnect_timeout_ms = 300\n"   \
	"deadline_ms = 2000\n[circuit_breaker]\nfailure_threshold = 1000\n"                \
	"[probe]\ninterval_ms = 3600000\n"

/*
 * The faulty mock (fault_args) is idle and the healthy one reports sessions, so every
 * request tries the faulty one first; each must still be answered 200 by the healthy
 * one within max_ms, and the faulty one must have seen every attempt exactly once.
 */
static struct harness_proc *fo_assert_fault_case(const char *const *fault_args, int64_t min_ms,
						  int64_t max_ms)
{
	static const char *const busy[] = { "--sessions", FO_BUSY_SESSIONS, NULL };
	struct harness_proc *bad = fo_mock(fault_args), *good = fo_mock(busy), *gw;
	int ports[2] = { bad->port, good->port };
	/* A fresh gateway's retry budget holds 3 retries plus 0.2 per request: three
	 * requests that each retry once stay within it. */
	const int n = 3;

	gw = fo_gateway(fo_toml(FO_FAULT_TOML, ports, 2), 2);
	fo_wait_sessions(gw, good->port, 50);
	for (int i = 0; i < n; i++) {
		struct harness_call call;

		fo_channel(gw->port, &call, 5000);
		cr_assert_eq(call.status, 200, "request %d: %d %s", i, call.status, call.body);
		fo_assert_served_by(&call, good);
		cr_assert_leq(call.ms, max_ms, "request %d took %lld ms", i, (long long)call.ms);
		cr_assert_geq(call.ms, min_ms, "request %d took %lld ms", i, (long long)call.ms);
	}
	cr_assert_eq(fo_mock_stat(bad, "channel_requests"), n);
	cr_assert_eq(fo_mock_stat(good, "channel_requests"), n);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_upstream_requests_total"), 2 * n);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_upstream_failures_total"), n);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_retries_total"), n);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_failovers_total"), n);
	cr_assert_eq(harness_metric(gw->port, FO_CHANNEL_200), n);
	return gw;
}

Test(failover, status_5xx_fails_over, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const a[] = { "--fail-status", "500", NULL };

	fo_assert_fault_case(a, 0, 1500);
}

Test(failover, status_503_fails_over, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const a[] = { "--fail-status", "503", NULL };

	fo_assert_fault_case(a, 0, 1500);
}

/* Each attempt is bounded by retry_timeout_ms (300), far below deadline_ms (2000), and
 * the log names the bound that fired: the connection was up, the answer never came. */
Test(failover, hang_bounded_by_retry_timeout, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const a[] = { "--hang", NULL };
	struct harness_proc *gw = fo_assert_fault_case(a, 280, 300 + 700);
	const char *log = harness_log(gw);

	cr_assert(strstr(log, "failed: response timeout") != NULL, "log:\n%s", log);
	cr_assert(strstr(log, "connect timeout") == NULL, "log:\n%s", log);
}

/* With the shipped defaults (no [failover] section), a hung SFU among healthy ones
 * costs a request one attempt's response timeout (800 ms) and never fails it: Odoo
 * gives up at 3 s, and the old defaults (5 s per attempt) spent the whole 2.5 s
 * deadline on the hung SFU and answered 502. */
Test(failover, hung_sfu_with_default_timeouts, .fini = harness_cleanup, .timeout = 60)
{
	static const char *const hang[] = { "--hang", NULL };
	static const char *const busy[] = { "--sessions", FO_BUSY_SESSIONS, NULL };
	struct harness_proc *bad = fo_mock(hang), *good = fo_mock(busy), *gw;
	int ports[2] = { bad->port, good->port };

	gw = fo_gateway(fo_toml("", ports, 2), 2);
	fo_wait_sessions(gw, good->port, 50);
	for (int i = 0; i < 8; i++) {
		struct harness_call call;

		fo_channel(gw->port, &call, 5000);
		cr_assert_eq(call.status, 200, "request %d: %d %s", i, call.status, call.body);
		fo_assert_served_by(&call, good);
		cr_assert_lt(call.ms, 800 + 700, "request %d took %lld ms", i, (long long)call.ms);
	}
	/* The hung SFU's circuit opened after failure_threshold (5) timeouts. */
	cr_assert_eq(fo_mock_stat(bad, "channel_requests"), 5);
	cr_assert_str_eq(fo_circuit(gw, bad->port, NULL), "open");
}

Test(failover, reset_fails_over, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const a[] = { "--reset", NULL };

	fo_assert_fault_case(a, 0, 1500);
}

Test(failover, garbage_2xx_fails_over, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const a[] = { "--garbage", NULL };

	fo_assert_fault_case(a, 0, 1500);
}

Test(failover, garbage_bytes_fails_over, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const a[] = { "--garbage-bytes", NULL };

	fo_assert_fault_case(a, 0, 1500);
}

/* A 4xx means the SFU is alive and refused this request (any SFU would answer the same
 * token so): relayed as is, nothing retried, and never held against the SFU. 401, 403
 * and 404 included: counting them as failures let a request's own fault open circuits. */
Test(failover, every_4xx_relayed_without_retry, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const a[] = { "--fail-status", "429", NULL };
	static const char *const busy[] = { "--sessions", FO_BUSY_SESSIONS, NULL };
	static const char *const statuses[] = { "429", "409", "400", "401", "403", "404" };
	const int n = (int)(sizeof(statuses) / sizeof(statuses[0]));
	struct harness_proc *bad = fo_mock(a), *good = fo_mock(busy), *gw;
	int ports[2] = { bad->port, good->port };

	gw = fo_gateway(fo_toml(FO_FAULT_TOML, ports, 2), 2);
	fo_wait_sessions(gw, good->port, 50);
	for (int i = 0; i < n; i++) {
		char q[32];

		snprintf(q, sizeof(q), "status=%s", statuses[i]);
		fo_mock_fault(bad, q);
		for (int k = 0; k < 2; k++) {
			struct harness_call call;

			fo_channel(gw->port, &call, 5000);
			cr_assert_eq(call.status, atoi(statuses[i]), "got %d %s", call.status,
				     call.body);
			cr_assert_str_empty(call.body);
		}
	}
	cr_assert_eq(fo_mock_stat(bad, "channel_requests"), 2 * n);
	cr_assert_eq(fo_mock_stat(good, "channel_requests"), 0, "the other SFU was tried");
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_upstream_requests_total"), 2 * n);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_retries_total"), 0);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_upstream_failures_total"), 0);
	/* A refusal is not a failure of the SFU. */
	cr_assert_str_eq(fo_circuit(gw, bad->port, NULL), "closed");
}

Test(failover, all_failing_is_503_json, .fini = harness_cleanup, .timeout = 30)
{
	struct harness_proc *m[3] = { fo_mock(NULL), fo_mock(NULL), fo_mock(NULL) }, *gw;
	int ports[3] = { m[0]->port, m[1]->port, m[2]->port };
	struct harness_call call, *warm;
	int64_t before[3];

	gw = fo_gateway(fo_toml(FO_FAULT_TOML, ports, 3), 2);
	/* Healthy traffic first fills the retry budget (0.2 retry per request) so that
	 * the failing requests below can try all three SFUs. */
	warm = fo_channels(gw->port, 10, 2, 10000);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(warm[i].status, 200, "warm-up %d: %d", i, warm[i].status);
	free(warm);
	for (int i = 0; i < 3; i++) {
		before[i] = fo_mock_stat(m[i], "channel_requests");
		fo_mock_fault(m[i], "status=500");
	}
	fo_channel(gw->port, &call, 5000);
	cr_assert_eq(call.status, 503, "got %d %s", call.status, call.body);
	cr_assert_str_eq(call.body, FO_ERR_EXHAUSTED);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(fo_mock_stat(m[i], "channel_requests"), before[i] + 1, "mock %d", i);

	/* Mixed faults end the same way, each SFU tried once. */
	fo_mock_fault(m[0], "mode=reset");
	fo_mock_fault(m[1], "mode=garbage");
	fo_mock_fault(m[2], "status=502");
	fo_channel(gw->port, &call, 5000);
	cr_assert_eq(call.status, 503, "got %d %s", call.status, call.body);
	cr_assert_str_eq(call.body, FO_ERR_EXHAUSTED);
	/* The reset hit a pooled keep-alive connection, which the client may send once
	 * more on a fresh connection (a server closing an idle socket looks the same). */
	cr_assert(fo_mock_stat(m[0], "channel_requests") - before[0] >= 2);
	cr_assert(fo_mock_stat(m[0], "channel_requests") - before[0] <= 3);
	for (int i = 1; i < 3; i++)
		cr_assert_eq(fo_mock_stat(m[i], "channel_requests"), before[i] + 2, "mock %d", i);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_upstream_requests_total"), 10 + 6);
	cr_assert_eq(harness_metric(gw->port, FO_CHANNEL_503), 2);
}

/* deadline_ms bounds the whole request: the second attempt only gets what is left. */
Test(failover, deadline_bounds_whole_request, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const a[] = { "--hang", NULL };
	struct harness_proc *m[3] = { fo_mock(a), fo_mock(a), fo_mock(a) }, *gw;
	int ports[3] = { m[0]->port, m[1]->port, m[2]->port };
	struct harness_call call;

	gw = fo_gateway(fo_toml("[failover]\nmax_retries = 3\nretry_timeout_ms = 1500\n"
				"deadline_ms = 2000\n[circuit_breaker]\nfailure_threshold = 1000\n",
				ports, 3),
			1);
	fo_channel(gw->port, &call, 10000);
	cr_assert_eq(call.status, 503, "got %d %s", call.status, call.body);
	cr_assert_str_eq(call.body, FO_ERR_EXHAUSTED);
	cr_assert_geq(call.ms, 1900, "answered after %lld ms", (long long)call.ms);
	cr_assert_leq(call.ms, 2000 + 700, "answered after %lld ms", (long long)call.ms);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_upstream_requests_total"), 2);
	cr_assert_eq(fo_mock_stat(m[0], "channel_requests") +
			     fo_mock_stat(m[1], "channel_requests") +
			     fo_mock_stat(m[2], "channel_requests"),
		     2);
}

/*
 * With the default settings, one broken SFU among healthy ones must stay invisible to
 * clients: each request it fails is retried elsewhere until its circuit opens (after
 * failure_threshold = 5 failures). The retry budget must not refuse those retries.
 */
Test(failover, one_faulty_sfu_invisible_with_defaults, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const a[] = { "--fail-status", "500", NULL };
	static const char *const busy[] = { "--sessions", FO_BUSY_SESSIONS, NULL };
	struct harness_proc *bad = fo_mock(a), *g1 = fo_mock(busy), *g2 = fo_mock(busy), *gw;
	int ports[3] = { bad->port, g1->port, g2->port };

	gw = fo_gateway(fo_toml("", ports, 3), 2);
	fo_wait_sessions(gw, g1->port, 50);
	fo_wait_sessions(gw, g2->port, 50);
	for (int i = 0; i < 8; i++) {
		struct harness_call call;

		fo_channel(gw->port, &call, 5000);
		cr_assert_eq(call.status, 200, "request %d: %d %s (retry budget exhausted: %g)", i,
			     call.status, call.body,
			     harness_metric(gw->port, "sfu_gateway_retry_budget_exhausted_total"));
	}
	cr_assert_eq(fo_mock_stat(bad, "channel_requests"), 5);
	cr_assert_str_eq(fo_circuit(gw, bad->port, NULL), "open");
}

/* ---- circuit breaker */

#define FO_OPEN_MS 500

Test(circuit, opens_probes_once_and_closes, .fini = harness_cleanup, .timeout = 60)
{
	static const char *const a[] = { "--fail-status", "500", NULL };
	static const char *const busy[] = { "--sessions", FO_BUSY_SESSIONS, NULL };
	struct harness_proc *bad = fo_mock(a), *good = fo_mock(busy), *gw;
	int ports[2] = { bad->port, good->port };
	int64_t t3_done, t5_done, failures, c0, c1, deadline;
	struct harness_call call, *burst;

	gw = fo_gateway(fo_toml("[circuit_breaker]\nfailure_threshold = 3\nopen_ms = 500\n"
				"[probe]\ninterval_ms = 3600000\n",
				ports, 2),
			2);
	fo_wait_sessions(gw, good->port, 50);

	/* Three consecutive failures (each request still served by the other SFU). */
	for (int i = 0; i < 3; i++) {
		fo_channel(gw->port, &call, 5000);
		fo_assert_served_by(&call, good);
	}
	t3_done = harness_now_ms();
	cr_assert_eq(fo_mock_stat(bad, "channel_requests"), 3);
	cr_assert_str_eq(fo_circuit(gw, bad->port, &failures), "open");
	cr_assert_eq(failures, 3);
	cr_assert_str_eq(fo_state(gw, bad->port), "open");
	cr_assert_eq(harness_metric(gw->port, FO_TRANSITIONS("open")), 1);

	/* Open: requests continue, the faulty SFU sees none of them. */
	for (int i = 0; i < 5; i++) {
		fo_channel(gw->port, &call, 5000);
		fo_assert_served_by(&call, good);
	}
	t5_done = harness_now_ms();
	c0 = fo_mock_stat(bad, "channel_requests");
	if (t5_done - t3_done < FO_OPEN_MS - 50)
		cr_assert_eq(c0, 3, "an open circuit let traffic through");
	else /* a slow machine: at most the one half-open probe got through */
		cr_assert_leq(c0, 4);

	/* open_ms (+10% jitter) later exactly one of 20 concurrent requests probes it. */
	deadline = t3_done + FO_OPEN_MS + 100;
	if (c0 == 4)
		deadline = t5_done + 2 * FO_OPEN_MS + 150;
	while (harness_now_ms() < deadline)
		poll(NULL, 0, 10);
	/* Health shows the state selection acts on: the open period is over, so the
	 * next request may probe it. */
	cr_assert_str_eq(fo_circuit(gw, bad->port, NULL), "half-open");
	cr_assert_str_eq(fo_state(gw, bad->port), "half-open");
	burst = fo_channels(gw->port, 20, 20, 10000);
	for (int i = 0; i < 20; i++)
		fo_assert_served_by(&burst[i], good);
	free(burst);
	c1 = fo_mock_stat(bad, "channel_requests");
	cr_assert_eq(c1, c0 + 1, "half-open let %lld requests through", (long long)(c1 - c0));
	cr_assert_eq(harness_metric(gw->port, FO_TRANSITIONS("half_open")),
		     (double)(c1 - 3));
	cr_assert_eq(harness_metric(gw->port, FO_TRANSITIONS("open")),
		     (double)(c1 - 3 + 1));
	cr_assert_str_eq(fo_circuit(gw, bad->port, NULL), "open");
	cr_assert_eq(harness_metric(gw->port, FO_TRANSITIONS("closed")), 0);

	/* Healed: the next half-open probe (after the doubled open period) closes it. */
	fo_mock_fault(bad, "mode=ok");
	deadline = harness_now_ms() + 10000;
	while (fo_mock_stat(bad, "channel_requests") == c1 && harness_now_ms() < deadline) {
		fo_channel(gw->port, &call, 5000);
		cr_assert_eq(call.status, 200, "got %d %s", call.status, call.body);
		poll(NULL, 0, 20);
	}
	cr_assert_eq(fo_mock_stat(bad, "channel_requests"), c1 + 1,
		     "no single probe after healing");
	fo_assert_served_by(&call, bad);
	cr_assert_str_eq(fo_circuit(gw, bad->port, &failures), "closed");
	cr_assert_eq(failures, 0);
	cr_assert_str_eq(fo_state(gw, bad->port), "up");
	cr_assert_eq(harness_metric(gw->port, FO_TRANSITIONS("closed")), 1);
	cr_assert_eq(harness_metric(gw->port, FO_TRANSITIONS("half_open")),
		     (double)(c1 - 3 + 1));

	/* Traffic returns: the idle SFU is the best choice again. */
	for (int i = 0; i < 4; i++) {
		fo_channel(gw->port, &call, 5000);
		fo_assert_served_by(&call, bad);
	}
	cr_assert_eq(fo_mock_stat(bad, "channel_requests"), c1 + 5);
}

/* ---- overload */

/* A heartbeat for a registered SFU at address with the given load JSON members. */
static void fo_heartbeat(const struct harness_proc *gw, const char *address, const char *load)
{
	struct harness_resp *r;
	char body[1024];

	snprintf(body, sizeof(body),
		 "{\"status\":\"up\",\"address\":\"%s\",\"region\":\"eu-west\",\"key\":\"%s\",%s}",
		 address, FO_SFU_KEY, load);
	r = harness_heartbeat(gw->port, address, FO_GW_KEY, body);
	cr_assert_eq(r->status, 200, "heartbeat %s: %d %s", address, r->status, r->body);
	free(r);
}

Test(overload, skipped_then_503_retry_after, .fini = harness_cleanup, .timeout = 40)
{
	struct harness_proc *good = fo_mock(NULL), *hot = fo_mock(NULL), *gw;
	char a_good[64], a_hot[64], a_mem[64], a_full[64], a_score[64];
	static const char *const overloaded[] = { "cpu", "memory", "sessions", "score" };
	struct harness_call call;
	int status;
	struct json_object *h;

	gw = fo_gateway("[overload]\nmax_load_score = 0.5\n", 2);
	snprintf(a_good, sizeof(a_good), "http://127.0.0.1:%d", good->port);
	snprintf(a_hot, sizeof(a_hot), "http://127.0.0.1:%d", hot->port);
	/* Never contacted if the overload rules hold: any attempt would count upstream. */
	snprintf(a_mem, sizeof(a_mem), "http://127.0.0.1:%d", harness_free_port());
	snprintf(a_full, sizeof(a_full), "http://127.0.0.1:%d", harness_free_port());
	snprintf(a_score, sizeof(a_score), "http://127.0.0.1:%d", harness_free_port());
	fo_heartbeat(gw, a_hot, FO_LOAD("1", "0.99", "0.1"));
	fo_heartbeat(gw, a_mem, FO_LOAD("1", "0.1", "0.99"));
	fo_heartbeat(gw, a_full, "\"channels\":2,\"sessions\":10,\"maxSessions\":10,"
				 "\"cpuUsage\":0.1,\"memoryUsage\":0.1");
	/* 0.5 × 80/100 + 0.3 × 0.5 = 0.55 > max_load_score, each field under its own limit. */
	fo_heartbeat(gw, a_score, "\"channels\":4,\"sessions\":80,\"maxSessions\":100,"
				  "\"cpuUsage\":0.5,\"memoryUsage\":0.0");
	fo_heartbeat(gw, a_good, FO_LOAD("0", "0.1", "0.1"));
	{
		const char *addrs[] = { a_hot, a_mem, a_full, a_score };

		for (int i = 0; i < 4; i++)
			cr_assert_str_eq(fo_state(gw, atoi(strrchr(addrs[i], ':') + 1)),
					 "overloaded", "the %s-overloaded SFU", overloaded[i]);
	}
	cr_assert_str_eq(fo_state(gw, good->port), "up");

	for (int i = 0; i < 5; i++) {
		fo_channel(gw->port, &call, 5000);
		fo_assert_served_by(&call, good);
	}
	cr_assert_eq(fo_mock_stat(hot, "channel_requests"), 0);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_upstream_requests_total"), 5);

	/* The last one goes over a threshold too: nothing left, 503 with Retry-After. */
	fo_heartbeat(gw, a_good, FO_LOAD("0", "0.97", "0.1"));
	h = harness_get_json(gw->port, "/v1/health", &status);
	cr_assert_eq(status, 503);
	cr_assert_str_eq(fo_json_string(h, "status"), "unavailable");
	json_object_put(h);
	for (int i = 0; i < 3; i++) {
		fo_channel(gw->port, &call, 5000);
		cr_assert_eq(call.status, 503, "got %d %s", call.status, call.body);
		cr_assert_str_eq(call.body, FO_ERR_OVERLOADED);
		cr_assert_str_not_empty(fo_retry_after(&call), "no Retry-After header");
		cr_assert_gt(atoi(fo_retry_after(&call)), 0, "Retry-After: %s",
			     fo_retry_after(&call));
	}
	cr_assert_eq(fo_mock_stat(good, "channel_requests"), 5);
	cr_assert_eq(fo_mock_stat(hot, "channel_requests"), 0);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_upstream_requests_total"), 5);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_overload_rejected_total"), 3);

	/* Load drops: channels flow again. */
	fo_heartbeat(gw, a_good, FO_LOAD("0", "0.2", "0.1"));
	fo_channel(gw->port, &call, 5000);
	fo_assert_served_by(&call, good);
}

/* Load from probes counts too: a static SFU at a stated session limit is skipped. */
Test(overload, probed_full_static_sfu, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const full[] = { "--sessions", "100", NULL };
	struct harness_proc *m = fo_mock(full), *gw;
	int ports[1] = { m->port };
	struct harness_call call;

	gw = fo_gateway(fo_toml("[balancing]\nmax_sessions = 100\n", ports, 1), 1);
	fo_wait_sessions(gw, m->port, 100);
	cr_assert_str_eq(fo_state(gw, m->port), "overloaded");
	fo_channel(gw->port, &call, 5000);
	cr_assert_eq(call.status, 503, "got %d %s", call.status, call.body);
	cr_assert_str_eq(call.body, FO_ERR_OVERLOADED);
	cr_assert_str_not_empty(fo_retry_after(&call));
	cr_assert_eq(fo_mock_stat(m, "channel_requests"), 0);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_overload_rejected_total"), 1);
}

/* Without a stated capacity, sessions rank SFUs but never refuse a call: one SFU
 * holding a full 100-session call (odoo/sfu's channel size) still takes new ones, and
 * /v1/health stays 200. */
Test(overload, sessions_without_capacity_never_refuse, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const full[] = { "--sessions", "100", NULL };
	static const char *const fuller[] = { "--sessions", "250", NULL };
	struct harness_proc *a = fo_mock(full), *b = fo_mock(fuller), *gw;
	int ports[2] = { a->port, b->port };
	struct harness_call call;
	struct harness_resp r;

	gw = fo_gateway(fo_toml("", ports, 2), 1);
	fo_wait_sessions(gw, a->port, 100);
	fo_wait_sessions(gw, b->port, 250);
	cr_assert_str_eq(fo_state(gw, a->port), "up");
	cr_assert_str_eq(fo_state(gw, b->port), "up");
	cr_assert_eq(harness_get(gw->port, "/v1/health", NULL, &r), 0);
	cr_assert_eq(r.status, 200, "health: %d %s", r.status, r.body);
	/* The less loaded one wins; every call is served. */
	fo_channel(gw->port, &call, 5000);
	fo_assert_served_by(&call, a);
	for (int i = 0; i < 4; i++) {
		fo_channel(gw->port, &call, 5000);
		cr_assert_eq(call.status, 200, "got %d %s", call.status, call.body);
	}
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_overload_rejected_total"), 0);
}

/* ---- active probes of static SFUs */

#define FO_PROBE_TOML "[probe]\ninterval_ms = 200\ntimeout_ms = 500\n"

Test(probe, dead_sfu_out_and_back, .fini = harness_cleanup, .timeout = 60)
{
	static const char *const busy[] = { "--sessions", "30", NULL };
	struct harness_proc *a = fo_mock(NULL), *b = fo_mock(busy), *gw;
	int ports[2] = { a->port, b->port }, port_a = a->port;
	double up0, failed0, ok0;
	char port_arg[16];
	const char *again[] = { "--port", port_arg, NULL };
	struct json_object *s;
	struct harness_call call;

	gw = fo_gateway(fo_toml(FO_PROBE_TOML, ports, 2), 2);
	/* A probe reports the static mock's sessions. */
	fo_wait_sessions(gw, b->port, 30);
	cr_assert_str_eq(fo_state(gw, port_a), "up");
	fo_wait_metric(gw, "sfu_gateway_probes_total{result=\"ok\"}", 2);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_probes_total{result=\"failed\"}"), 0);

	/* Killed: down within a few probe intervals, and no request goes there. */
	cr_assert_neq(harness_stop(a, SIGKILL, 5000), -1);
	cr_assert(fo_wait_state(gw, port_a, "down", 5000), "state %s", fo_state(gw, port_a));
	cr_assert_geq(harness_metric(gw->port, "sfu_gateway_probes_total{result=\"failed\"}"), 1);
	up0 = harness_metric(gw->port, "sfu_gateway_upstream_requests_total");
	failed0 = harness_metric(gw->port, "sfu_gateway_upstream_failures_total");
	for (int i = 0; i < 6; i++) {
		fo_channel(gw->port, &call, 5000);
		fo_assert_served_by(&call, b);
	}
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_upstream_requests_total"), up0 + 6);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_upstream_failures_total"), failed0);
	s = fo_health_sfu(gw, port_a, NULL);
	cr_assert_not_null(s);
	{
		struct json_object *req;

		cr_assert(json_object_object_get_ex(s, "requests", &req));
		cr_assert_eq(harness_json_int(req, "failed"), 0);
		cr_assert_eq(harness_json_int(req, "ok"), 0);
	}
	json_object_put(s);

	/* Back on the same port: up again, and it serves (it is the idle one). */
	snprintf(port_arg, sizeof(port_arg), "%d", port_a);
	ok0 = harness_metric(gw->port, "sfu_gateway_probes_total{result=\"ok\"}");
	a = fo_mock(again);
	cr_assert_eq(a->port, port_a);
	cr_assert(fo_wait_state(gw, port_a, "up", 5000), "state %s", fo_state(gw, port_a));
	cr_assert_gt(harness_metric(gw->port, "sfu_gateway_probes_total{result=\"ok\"}"), ok0);
	fo_channel(gw->port, &call, 5000);
	fo_assert_served_by(&call, a);
	cr_assert_eq(fo_mock_stat(a, "channel_requests"), 1);
}

#define FO_PROBES(result) "sfu_gateway_probes_total{result=\"" result "\"}"

/* Polls until the probe counter series is exactly want, then returns the SFU's state as
 * it is after that probe: read between two reads of the counter that both say want (the
 * probes are far enough apart for that), so no later probe can have changed it. */
static const char *fo_state_after_probe(const struct harness_proc *gw, int port,
					const char *series, double want)
{
	int64_t deadline = harness_now_ms() + 8000;
	static char state[32];
	double v = -1;

	while (harness_now_ms() < deadline) {
		v = harness_metric(gw->port, series);
		cr_assert_leq(v, want, "%s went past %g to %g: probes too close together", series,
			      want, v);
		if (v == want) {
			snprintf(state, sizeof(state), "%s", fo_state(gw, port));
			v = harness_metric(gw->port, series);
			cr_assert_eq(v, want, "another probe ran while the state was read");
			return state;
		}
		poll(NULL, 0, 10);
	}
	cr_assert_fail("%s = %g, want %g", series, v, want);
	return "";
}

/* Hysteresis with HAProxy's defaults (fall 3, rise 2): two failed probes in a row leave a
 * static SFU up, the third takes it out; then one passed probe leaves it out, the second
 * brings it back. The log says each change once, the down with its cause. */
Test(probe, fall_and_rise, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_proc *m = fo_mock(NULL), *gw;
	int port = m->port;
	double failed0, ok0;
	char down_line[128], up_line[128];
	const char *log;

	gw = fo_gateway(fo_toml("[probe]\ninterval_ms = 700\ntimeout_ms = 300\n", &port, 1), 1);
	fo_wait_metric(gw, FO_PROBES("ok"), 1);
	cr_assert_str_eq(fo_state(gw, port), "up");
	failed0 = harness_metric(gw->port, FO_PROBES("failed"));
	cr_assert_eq(failed0, 0);

	/* Every probe fails from now on (noop answers 500). */
	fo_mock_fault(m, "status=500&all=1");
	cr_assert_str_eq(fo_state_after_probe(gw, port, FO_PROBES("failed"), 1), "up",
			 "one failed probe took the SFU out");
	cr_assert_str_eq(fo_state_after_probe(gw, port, FO_PROBES("failed"), 2), "up",
			 "two failed probes took the SFU out");
	cr_assert_str_eq(fo_state_after_probe(gw, port, FO_PROBES("failed"), 3), "down",
			 "three failed probes left the SFU in");

	/* Healed: probes pass again. */
	fo_mock_fault(m, "mode=ok&all=0");
	ok0 = harness_metric(gw->port, FO_PROBES("ok"));
	cr_assert_str_eq(fo_state_after_probe(gw, port, FO_PROBES("ok"), ok0 + 1), "down",
			 "one passed probe brought the SFU back");
	cr_assert_str_eq(fo_state_after_probe(gw, port, FO_PROBES("ok"), ok0 + 2), "up",
			 "two passed probes left the SFU out");

	snprintf(down_line, sizeof(down_line), "probe: sfu=%s is down", harness_url(port));
	snprintf(up_line, sizeof(up_line), "probe: sfu=%s is back up", harness_url(port));
	log = harness_log(gw);
	cr_assert_eq(harness_count(log, down_line), 1, "down lines:\n%s", log);
	cr_assert_eq(harness_count(log, up_line), 1, "up lines:\n%s", log);
	cr_assert_not_null(strstr(log, "is down after 3 failed probes in a row: GET /v1/noop "
				       "answered 500"),
			   "the down line names the count and the cause:\n%s", log);
	cr_assert_not_null(strstr(log, "is back up after 2 passed probes in a row"), "%s", log);
}

/* fall = rise = 1 is the old, immediate behaviour: one failure out, one success back. */
Test(probe, fall_and_rise_of_one, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_proc *m = fo_mock(NULL), *gw;
	int port = m->port;
	double ok0;

	gw = fo_gateway(fo_toml("[probe]\ninterval_ms = 700\ntimeout_ms = 300\nfall = 1\n"
				"rise = 1\n", &port, 1), 1);
	fo_wait_metric(gw, FO_PROBES("ok"), 1);
	fo_mock_fault(m, "status=500&all=1");
	cr_assert_str_eq(fo_state_after_probe(gw, port, FO_PROBES("failed"), 1), "down");
	fo_mock_fault(m, "mode=ok&all=0");
	ok0 = harness_metric(gw->port, FO_PROBES("ok"));
	cr_assert_str_eq(fo_state_after_probe(gw, port, FO_PROBES("ok"), ok0 + 1), "up");
}

/* What a probe reads from /v1/stats, through the real processes: session counts past 32
 * bits saturate instead of wrapping (one count of 2^32 + 5 would read 5, two of 2^32 - 1
 * would sum to 2^32 - 2), and an answer with anything after its array is no stats answer:
 * the probe fails and says so. */
Test(probe, stats_saturate_and_refuse_trailing_junk, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_proc *m = fo_mock(NULL), *gw;
	int port = m->port;
	const char *log;

	gw = fo_gateway(fo_toml("[probe]\ninterval_ms = 200\ntimeout_ms = 500\nfall = 1\n", &port,
				1),
			1);
	fo_mock_fault(m, "sessions=4294967301");
	fo_wait_sessions(gw, port, 4294967295LL);
	/* Two channels sharing the sessions: each count fits, their sum does not. */
	for (int i = 0; i < 2; i++) {
		char iss[64];
		struct harness_resp *r;

		snprintf(iss, sizeof(iss), "https://odoo.example.com/sat%d", i);
		r = harness_channel(m->port, "/v1/channel", iss, FO_SFU_KEY, NULL);
		cr_assert_eq(r->status, 200, "channel on the mock: %d %s", r->status, r->body);
		free(r);
	}
	fo_mock_fault(m, "sessions=7");
	fo_wait_sessions(gw, port, 7);
	fo_mock_fault(m, "sessions=8589934590");
	fo_wait_sessions(gw, port, 4294967295LL);
	cr_assert_str_eq(fo_state(gw, port), "up");

	/* Junk after the array. */
	fo_mock_fault(m, "trailing=1");
	cr_assert(fo_wait_state(gw, port, "down", 5000), "state %s", fo_state(gw, port));
	log = harness_log(gw);
	cr_assert_not_null(strstr(log, "GET /v1/stats: the answer is not a stats array"), "%s",
			   log);
	fo_mock_fault(m, "trailing=0&sessions=3");
	cr_assert(fo_wait_state(gw, port, "up", 5000), "state %s", fo_state(gw, port));
	fo_wait_sessions(gw, port, 3);
}

Test(probe, closed_port_never_used, .fini = harness_cleanup, .timeout = 40)
{
	struct harness_proc *b = fo_mock(NULL), *gw;
	int ports[2] = { harness_free_port(), b->port };
	struct harness_call *calls;

	gw = fo_gateway(fo_toml(FO_PROBE_TOML, ports, 2), 2);
	cr_assert(fo_wait_state(gw, ports[0], "down", 5000), "state %s", fo_state(gw, ports[0]));
	cr_assert_str_eq(fo_state(gw, b->port), "up");
	calls = fo_channels(gw->port, 20, 4, 10000);
	for (int i = 0; i < 20; i++)
		fo_assert_served_by(&calls[i], b);
	free(calls);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_upstream_requests_total"), 20);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_upstream_failures_total"), 0);
	cr_assert_eq(fo_mock_stat(b, "channel_requests"), 20);
}

/* Probes pass (noop and stats are fine) but channels fail: the open circuit stays open,
 * only real traffic may close it. */
Test(probe, never_closes_circuit, .fini = harness_cleanup, .timeout = 40)
{
	static const char *const a[] = { "--fail-status", "500", NULL };
	static const char *const busy[] = { "--sessions", FO_BUSY_SESSIONS, NULL };
	struct harness_proc *bad = fo_mock(a), *good = fo_mock(busy), *gw;
	int ports[2] = { bad->port, good->port };
	struct harness_call call;
	double ok0;

	gw = fo_gateway(fo_toml("[circuit_breaker]\nfailure_threshold = 1\nopen_ms = 60000\n"
				FO_PROBE_TOML, ports, 2),
			1);
	fo_wait_sessions(gw, good->port, 50);
	fo_channel(gw->port, &call, 5000);
	fo_assert_served_by(&call, good);
	cr_assert_str_eq(fo_circuit(gw, bad->port, NULL), "open");
	ok0 = harness_metric(gw->port, "sfu_gateway_probes_total{result=\"ok\"}");
	fo_wait_metric(gw, "sfu_gateway_probes_total{result=\"ok\"}", ok0 + 6);
	cr_assert_str_eq(fo_circuit(gw, bad->port, NULL), "open");
	cr_assert_str_eq(fo_state(gw, bad->port), "open");
	fo_channel(gw->port, &call, 5000);
	fo_assert_served_by(&call, good);
	cr_assert_eq(fo_mock_stat(bad, "channel_requests"), 1);
}

/* ---- retry budget: a fleet-wide outage must not multiply the load */

#define FO_BUDGET_R 100

/* Three static SFUs that passed their first probe, then died; probes far apart so only
 * the request path notices. */
static struct harness_proc *fo_dead_fleet(const char *circuit_toml)
{
	struct harness_proc *m[3] = { fo_mock(NULL), fo_mock(NULL), fo_mock(NULL) }, *gw;
	int ports[3] = { m[0]->port, m[1]->port, m[2]->port };
	char toml[512];

	snprintf(toml, sizeof(toml), "%s[probe]\ninterval_ms = 3600000\n", circuit_toml);
	gw = fo_gateway(fo_toml(toml, ports, 3), 2);
	fo_wait_metric(gw, "sfu_gateway_probes_total{result=\"ok\"}", 3);
	for (int i = 0; i < 3; i++)
		cr_assert_neq(harness_stop(m[i], SIGKILL, 5000), -1);
	for (int i = 0; i < 3; i++)
		cr_assert_str_eq(fo_state(gw, ports[i]), "up");
	return gw;
}

Test(circuit, retry_budget_bounds_attempts, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_proc *gw = fo_dead_fleet("[circuit_breaker]\nfailure_threshold = 1000\n");
	struct harness_call *calls = fo_channels(gw->port, FO_BUDGET_R, 10, 30000);
	double attempts;

	for (int i = 0; i < FO_BUDGET_R; i++)
		cr_assert(calls[i].status == 502 || calls[i].status == 503, "request %d: %d %s", i,
			  calls[i].status, calls[i].body);
	free(calls);
	attempts = harness_metric(gw->port, "sfu_gateway_upstream_requests_total");
	cr_log_info("retry budget: %g attempts for %d requests", attempts, FO_BUDGET_R);
	cr_assert_geq(attempts, FO_BUDGET_R);
	cr_assert_leq(attempts, 1.2 * FO_BUDGET_R + 3, "%g upstream attempts for %d requests",
		      attempts, FO_BUDGET_R);
}

/* Default thresholds: once every circuit is open, 503 comes without any attempt. */
Test(circuit, open_fleet_answers_without_attempts, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_proc *gw = fo_dead_fleet("");
	struct harness_call call;
	int64_t deadline = harness_now_ms() + 10000;
	double attempts;

	do {
		fo_channel(gw->port, &call, 5000);
		cr_assert(call.status == 502 || call.status == 503, "got %d %s", call.status,
			  call.body);
	} while (strcmp(call.body, FO_ERR_UNHEALTHY) != 0 && harness_now_ms() < deadline);
	cr_assert_str_eq(call.body, FO_ERR_UNHEALTHY);
	cr_assert_str_not_empty(fo_retry_after(&call));
	/* Every attempt lands on a closed circuit and counts toward its five failures. */
	attempts = harness_metric(gw->port, "sfu_gateway_upstream_requests_total");
	cr_assert_eq(attempts, 15, "%g attempts before every circuit opened", attempts);
	cr_assert_eq(harness_metric(gw->port, FO_TRANSITIONS("open")), 3);
	for (int i = 0; i < 20; i++) {
		fo_channel(gw->port, &call, 5000);
		cr_assert_eq(call.status, 503);
		cr_assert_str_eq(call.body, FO_ERR_UNHEALTHY);
	}
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_upstream_requests_total"), attempts);
}
