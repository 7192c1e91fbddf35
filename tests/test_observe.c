/* Observability through real processes: /v1/health shape and status, /metrics format and counts. */
#include <criterion/criterion.h>

#include <json.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define OB_GW_KEY "b2ItZ2F0ZXdheS1rZXktZm9yLW9ic2VydmUtdGVzdHMtMQ"
#define OB_SFU_KEY "b2Itc2Z1LWtleS1mb3Itb2JzZXJ2ZS10ZXN0cy0wMDAy"
#define OB_PROMTOOL "/usr/bin/promtool"

/* ---- processes */

static struct harness_proc *ob_mock(const char *key, const char *const *args)
{
	struct harness_proc *m = harness_mock_start(key, args);

	cr_assert_not_null(m, "a mock SFU did not come up");
	return m;
}

/* Starts a gateway with the TOML text, the worker count and environment entries
 * (SFU_GATEWAY_KEY=... first; NULL-terminated). */
static struct harness_proc *ob_gateway(const char *toml, int workers, const char *const *env)
{
	return harness_gateway_keyed(NULL, env, workers, toml);
}

/* ---- HTTP */

/* A raw GET /v1/channel with an Odoo token for a fresh issuer (signed with key). The
 * token is also copied to tok_out when given. */
static void ob_channel_req(char *out, size_t outlen, const char *key, char *tok_out,
			   size_t tok_len)
{
	static int seq;
	char iss[96];
	const char *tok;

	snprintf(iss, sizeof(iss), "https://odoo-%d.example.com/ob%d", (int)getpid(), seq++);
	tok = harness_odoo_token(iss, key);
	if (tok_out != NULL)
		snprintf(tok_out, tok_len, "%s", tok);
	harness_channel_req(out, outlen, tok);
}

/* n channel requests signed with OB_GW_KEY, conc at a time; each must be answered
 * with want. */
static void ob_channels(int port, int n, int conc, int want)
{
	struct harness_call *calls = calloc((size_t)n, sizeof(*calls));

	cr_assert_not_null(calls);
	for (int i = 0; i < n; i++)
		ob_channel_req(calls[i].req, sizeof(calls[i].req), OB_GW_KEY, NULL, 0);
	harness_batch(port, calls, n, conc, 30000);
	for (int i = 0; i < n; i++)
		cr_assert_eq(calls[i].status, want, "request %d: %d %s", i, calls[i].status,
			     calls[i].body);
	free(calls);
}

/* GET path; the whole response into a heap buffer the caller frees. */
static struct harness_resp *ob_get(int port, const char *path)
{
	struct harness_resp *r = calloc(1, sizeof(*r));

	cr_assert_not_null(r);
	cr_assert_eq(harness_get(port, path, NULL, r), 0, "GET %s on port %d failed", path, port);
	return r;
}

static struct json_object *ob_field(struct json_object *o, const char *name, enum json_type t)
{
	struct json_object *v = NULL;

	cr_assert(json_object_object_get_ex(o, name, &v), "field %s missing in %s", name,
		  json_object_to_json_string(o));
	cr_assert(json_object_is_type(v, t), "field %s is %s, want %s", name,
		  json_type_to_name(json_object_get_type(v)), json_type_to_name(t));
	return v;
}

static const char *ob_str(struct json_object *o, const char *name)
{
	return json_object_get_string(ob_field(o, name, json_type_string));
}

/* A JSON number (integer or not). */
static double ob_number(struct json_object *o, const char *name)
{
	struct json_object *v = NULL;

	cr_assert(json_object_object_get_ex(o, name, &v), "field %s missing", name);
	cr_assert(json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int),
		  "field %s is %s, want a number", name,
		  json_type_to_name(json_object_get_type(v)));
	return json_object_get_double(v);
}

static int64_t ob_mock_stat(const struct harness_proc *m, const char *field)
{
	struct json_object *o = harness_get_json(m->port, "/mock/stats", NULL);
	int64_t v = json_object_get_int64(ob_field(o, field, json_type_int));

	json_object_put(o);
	return v;
}

/* The sum of every sample whose series starts with prefix and contains infix. */
static double ob_sum(const char *text, const char *prefix, const char *infix, int *count)
{
	size_t n = strlen(prefix);
	double sum = 0;

	*count = 0;
	for (const char *p = text; p != NULL && *p != '\0';) {
		const char *eol = strchr(p, '\n'), *sp;
		char line[1024];

		snprintf(line, sizeof(line), "%.*s", eol ? (int)(eol - p) : (int)strlen(p), p);
		sp = strrchr(line, ' ');
		if (strncmp(line, prefix, n) == 0 && sp != NULL && strstr(line, infix) != NULL) {
			sum += strtod(sp + 1, NULL);
			(*count)++;
		}
		p = eol ? eol + 1 : NULL;
	}
	return sum;
}

/* One series of the gateway's /metrics; -1 if absent. */
static double ob_metric(const struct harness_proc *gw, const char *series)
{
	return harness_metric(gw->port, series);
}

/* /v1/health's entry for this address (a new reference), NULL if absent. */
static struct json_object *ob_health_sfu(struct json_object *root, const char *address)
{
	return json_object_get(
		harness_json_find(ob_field(root, "sfus", json_type_array), "address", address));
}

/* Polls /v1/health until the SFU at address has the state, then returns the HTTP status. */
static int ob_wait_state(const struct harness_proc *gw, const char *address, const char *want)
{
	int64_t deadline = harness_now_ms() + 8000;
	char got[32] = "";

	while (harness_now_ms() < deadline) {
		int status;
		struct json_object *root = harness_get_json(gw->port, "/v1/health", &status);
		struct json_object *s = ob_health_sfu(root, address);

		snprintf(got, sizeof(got), "%s",
			 s ? ob_str(s, "state") : "");
		json_object_put(s);
		json_object_put(root);
		if (strcmp(got, want) == 0)
			return status;
		poll(NULL, 0, 20);
	}
	cr_assert_fail("SFU %s: state %s, want %s", address, got, want);
	return 0;
}

/* Polls until a probe reported this many sessions for the SFU. */
static void ob_wait_sessions(const struct harness_proc *gw, const char *address, int64_t want)
{
	int64_t deadline = harness_now_ms() + 8000, got = -1;

	while (harness_now_ms() < deadline) {
		struct json_object *root = harness_get_json(gw->port, "/v1/health", NULL);
		struct json_object *s = ob_health_sfu(root, address);

		got = s ? json_object_get_int64(ob_field(s, "sessions", json_type_int)) : -1;
		json_object_put(s);
		json_object_put(root);
		if (got == want)
			return;
		poll(NULL, 0, 20);
	}
	cr_assert_fail("SFU %s: sessions %lld, want %lld", address, (long long)got,
		       (long long)want);
}

/* POST /v1/sfu for address, signed with reg_key, with the body's remaining members
 * (status, region, key, load); returns the HTTP status. The bearer token is copied to
 * tok_out when given. */
static int ob_heartbeat(const struct harness_proc *gw, const char *reg_key, const char *address,
			const char *members, char *tok_out, size_t tok_len)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	char auth[4096], body[1024];
	const char *tok;
	int status;

	cr_assert_not_null(r);
	tok = harness_sfu_token(address, reg_key);
	if (tok_out != NULL)
		snprintf(tok_out, tok_len, "%s", tok);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", tok);
	snprintf(body, sizeof(body), "{\"address\":\"%s\",%s}", address, members);
	cr_assert_eq(harness_post(gw->port, "/v1/sfu", auth, body, r), 0);
	status = r->status;
	free(r);
	return status;
}

/* ---- health */

/* Every documented health field with its type; the shared ones of both SFUs. */
static void ob_check_sfu_shape(struct json_object *s)
{
	struct json_object *cb, *req;

	ob_field(s, "address", json_type_string);
	ob_field(s, "region", json_type_string);
	ob_field(s, "source", json_type_string);
	ob_field(s, "state", json_type_string);
	cr_assert_geq(json_object_get_int64(ob_field(s, "channels", json_type_int)), 0);
	cr_assert_geq(json_object_get_int64(ob_field(s, "sessions", json_type_int)), 0);
	ob_number(s, "cpuUsage");
	ob_number(s, "memoryUsage");
	cr_assert_gt(json_object_get_int64(ob_field(s, "maxSessions", json_type_int)), 0);
	ob_field(s, "keyCheck", json_type_string);
	cr_assert_geq(ob_number(s, "score"), 0.0);
	cr_assert_geq(json_object_get_int64(ob_field(s, "lastHeartbeatAgeMs", json_type_int)), 0);
	cb = ob_field(s, "circuit", json_type_object);
	cr_assert_str_eq(ob_str(cb, "state"), "closed");
	cr_assert_eq(json_object_get_int64(ob_field(cb, "failures", json_type_int)), 0);
	req = ob_field(s, "requests", json_type_object);
	ob_field(req, "ok", json_type_int);
	cr_assert_eq(json_object_get_int64(ob_field(req, "failed", json_type_int)), 0);
}

Test(health, every_field_with_its_type, .fini = harness_cleanup, .timeout = 40)
{
	static const char *const env[] = { "SFU_GATEWAY_KEY=" OB_GW_KEY, NULL };
	static const char *const sessions[] = { "--sessions", "7", NULL };
	struct harness_proc *st = ob_mock(OB_SFU_KEY, sessions), *reg = ob_mock(OB_SFU_KEY, NULL);
	struct harness_proc *gw;
	struct json_object *root, *s, *req;
	const char *a_st = harness_url(st->port), *a_reg = harness_url(reg->port);
	char toml[1024], members[512];
	int64_t t0 = harness_now_ms(), elapsed;
	int status;

	snprintf(toml, sizeof(toml),
		 "[probe]\ninterval_ms = 200\n[[sfu]]\naddress = \"%s\"\nregion = \"eu-west\"\n"
		 "key = \"%s\"\nmax_sessions = 70\n",
		 a_st, OB_SFU_KEY);
	gw = ob_gateway(toml, 2, env);
	snprintf(members, sizeof(members),
		 "\"status\":\"up\",\"region\":\"us-east\",\"key\":\"%s\",\"channels\":3,"
		 "\"sessions\":12,\"maxSessions\":40,\"cpuUsage\":0.25,\"memoryUsage\":0.5",
		 OB_SFU_KEY);
	cr_assert_eq(ob_heartbeat(gw, OB_GW_KEY, a_reg, members, NULL, 0), 200);
	ob_wait_sessions(gw, a_st, 7);
	/* One channel, to the least loaded (the static one: 0.5 × 7/70 < 0.325). */
	ob_channels(gw->port, 1, 1, 200);

	root = harness_get_json(gw->port, "/v1/health", &status);
	elapsed = harness_now_ms() - t0;
	cr_assert_eq(status, 200);
	cr_assert_str_eq(ob_str(root, "status"), "ok");
	cr_assert_str_not_empty(ob_str(root, "version"));
	cr_assert_geq(json_object_get_int64(ob_field(root, "uptimeMs", json_type_int)), 0);
	cr_assert_leq(json_object_get_int64(ob_field(root, "uptimeMs", json_type_int)), elapsed);
	cr_assert_eq(json_object_get_int64(ob_field(root, "workers", json_type_int)), 2);
	cr_assert_eq(json_object_array_length(ob_field(root, "sfus", json_type_array)), 2);

	s = ob_health_sfu(root, a_st);
	cr_assert_not_null(s);
	ob_check_sfu_shape(s);
	cr_assert_str_eq(ob_str(s, "region"), "eu-west");
	cr_assert_str_eq(ob_str(s, "source"), "static");
	cr_assert_str_eq(ob_str(s, "state"), "up");
	cr_assert_eq(json_object_get_int64(ob_field(s, "sessions", json_type_int)), 7);
	cr_assert_eq(json_object_get_int64(ob_field(s, "maxSessions", json_type_int)), 70);
	req = ob_field(s, "requests", json_type_object);
	cr_assert_eq(json_object_get_int64(ob_field(req, "ok", json_type_int)), 1);
	json_object_put(s);

	s = ob_health_sfu(root, a_reg);
	cr_assert_not_null(s);
	ob_check_sfu_shape(s);
	cr_assert_str_eq(ob_str(s, "region"), "us-east");
	cr_assert_str_eq(ob_str(s, "source"),
			 "registered");
	cr_assert_str_eq(ob_str(s, "state"), "up");
	cr_assert_eq(json_object_get_int64(ob_field(s, "channels", json_type_int)), 3);
	cr_assert_eq(json_object_get_int64(ob_field(s, "sessions", json_type_int)), 12);
	cr_assert_eq(json_object_get_int64(ob_field(s, "maxSessions", json_type_int)), 40);
	cr_assert_float_eq(ob_number(s, "cpuUsage"), 0.25, 1e-9);
	cr_assert_float_eq(ob_number(s, "memoryUsage"), 0.5, 1e-9);
	/* 0.5 × 12/40 + 0.3 × 0.25 + 0.2 × 0.5 */
	cr_assert_float_eq(ob_number(s, "score"), 0.325, 1e-6);
	cr_assert_leq(json_object_get_int64(ob_field(s, "lastHeartbeatAgeMs", json_type_int)),
		      elapsed);
	req = ob_field(s, "requests", json_type_object);
	cr_assert_eq(json_object_get_int64(ob_field(req, "ok", json_type_int)), 0);
	json_object_put(s);
	json_object_put(root);
	cr_assert_eq(ob_mock_stat(st, "channel_requests"), 1);

	/* Numbers as people write them, not json-c's 17 significant digits. */
	{
		struct harness_resp *r = calloc(1, sizeof(*r));

		cr_assert_not_null(r);
		cr_assert_eq(harness_get(gw->port, "/v1/health", NULL, r), 0);
		cr_assert(strstr(r->body, "\"score\":0.325,") != NULL, "%s", r->body);
		cr_assert(strstr(r->body, "00000") == NULL, "%s", r->body);
		free(r);
	}
}

/* 200 "ok" exactly while some SFU can take a channel. */
Test(health, status_follows_usable_sfus, .fini = harness_cleanup, .timeout = 40)
{
	static const char *const env[] = { "SFU_GATEWAY_KEY=" OB_GW_KEY, NULL };
	struct harness_proc *reg = ob_mock(OB_SFU_KEY, NULL), *gw;
	const char *dead = harness_url(harness_free_port()), *a_reg = harness_url(reg->port);
	char toml[512], members[512];
	struct json_object *root;
	int status;

	/* No SFU at all. */
	gw = ob_gateway("", 1, env);
	root = harness_get_json(gw->port, "/v1/health", &status);
	cr_assert_eq(status, 503);
	cr_assert_str_eq(ob_str(root, "status"),
			 "unavailable");
	cr_assert_eq(json_object_array_length(ob_field(root, "sfus", json_type_array)), 0);
	json_object_put(root);
	harness_stop(gw, SIGTERM, 5000);

	/* Only a static SFU that probes find down. */
	snprintf(toml, sizeof(toml),
		 "[probe]\ninterval_ms = 200\n[[sfu]]\naddress = \"%s\"\nkey = \"%s\"\n", dead,
		 OB_SFU_KEY);
	gw = ob_gateway(toml, 2, env);
	cr_assert_eq(ob_wait_state(gw, dead, "down"), 503);

	/* A registered one comes: ok. */
	snprintf(members, sizeof(members),
		 "\"status\":\"up\",\"region\":\"eu-west\",\"key\":\"%s\",\"channels\":0,"
		 "\"sessions\":0,\"cpuUsage\":0.1,\"memoryUsage\":0.1",
		 OB_SFU_KEY);
	cr_assert_eq(ob_heartbeat(gw, OB_GW_KEY, a_reg, members, NULL, 0), 200);
	root = harness_get_json(gw->port, "/v1/health", &status);
	cr_assert_eq(status, 200);
	cr_assert_str_eq(ob_str(root, "status"), "ok");
	json_object_put(root);
	ob_channels(gw->port, 2, 1, 200);

	/* Over its CPU limit: nothing usable again. */
	snprintf(members, sizeof(members),
		 "\"status\":\"up\",\"region\":\"eu-west\",\"key\":\"%s\",\"channels\":0,"
		 "\"sessions\":0,\"cpuUsage\":0.99,\"memoryUsage\":0.1",
		 OB_SFU_KEY);
	cr_assert_eq(ob_heartbeat(gw, OB_GW_KEY, a_reg, members, NULL, 0), 200);
	cr_assert_eq(ob_wait_state(gw, a_reg, "overloaded"), 503);

	/* Signed off: gone, still 503. */
	cr_assert_eq(ob_heartbeat(gw, OB_GW_KEY, a_reg, "\"status\":\"down\"", NULL, 0), 200);
	root = harness_get_json(gw->port, "/v1/health", &status);
	cr_assert_eq(status, 503);
	cr_assert_str_eq(ob_str(root, "status"),
			 "unavailable");
	cr_assert_eq(json_object_array_length(ob_field(root, "sfus", json_type_array)), 1);
	json_object_put(root);
}

/* ---- metrics */

/* Runs promtool check metrics on text; returns its exit status, its output in out. */
static int ob_promtool(const char *text, char *out, size_t outlen)
{
	char cmd[600], path[512];
	FILE *p, *f;
	size_t n = 0;
	int st;

	snprintf(path, sizeof(path), "%s/promtool.out", harness_tmpdir());
	snprintf(cmd, sizeof(cmd), OB_PROMTOOL " check metrics >'%s' 2>&1", path);
	p = popen(cmd, "w");
	cr_assert_not_null(p, "cannot run " OB_PROMTOOL);
	fwrite(text, 1, strlen(text), p);
	st = pclose(p);
	out[0] = '\0';
	f = fopen(path, "r");
	if (f != NULL) {
		n = fread(out, 1, outlen - 1, f);
		fclose(f);
	}
	out[n] = '\0';
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Test(metrics, promtool_accepts_mixed_workload, .fini = harness_cleanup, .timeout = 60)
{
	static const char *const env[] = { "SFU_GATEWAY_KEY=" OB_GW_KEY, NULL };
	static const char *const fail[] = { "--fail-status", "500", NULL };
	static const char *const busy[] = { "--sessions", "50", NULL };
	struct harness_proc *good = ob_mock(OB_SFU_KEY, busy), *bad = ob_mock(OB_SFU_KEY, fail);
	struct harness_proc *reg = ob_mock(OB_SFU_KEY, NULL), *gw;
	char a_reg[64], toml[2048], members[512], out[4096];
	struct harness_resp *r;
	int64_t deadline;
	int rc;

	snprintf(a_reg, sizeof(a_reg), "%s", harness_url(reg->port));
	/* A free-text region with a quote, a backslash and UTF-8 tests label escaping. */
	snprintf(toml, sizeof(toml),
		 "[circuit_breaker]\nfailure_threshold = 2\nopen_ms = 100\n"
		 "[probe]\ninterval_ms = 200\n"
		 "[[sfu]]\naddress = \"%s\"\nregion = \"eu-west\"\nkey = \"%s\"\n"
		 "[[sfu]]\naddress = \"%s\"\nregion = \"r\\\"1\\\\ \\u00e9\"\nkey = \"%s\"\n"
		 "[[sfu]]\naddress = \"%s\"\nregion = \"gone\"\nkey = \"%s\"\n",
		 harness_url(good->port), OB_SFU_KEY, harness_url(bad->port), OB_SFU_KEY,
		 harness_url(harness_free_port()), OB_SFU_KEY);
	gw = ob_gateway(toml, 2, env);
	ob_wait_sessions(gw, harness_url(good->port), 50);

	/* Heartbeats: registered, updated, rejected (wrong key), removed; a second one stays. */
	snprintf(members, sizeof(members),
		 "\"status\":\"up\",\"region\":\"us-east\",\"key\":\"%s\",\"channels\":1,"
		 "\"sessions\":80,\"maxSessions\":100,\"cpuUsage\":0.5,\"memoryUsage\":0.25",
		 OB_SFU_KEY);
	cr_assert_eq(ob_heartbeat(gw, OB_GW_KEY, a_reg, members, NULL, 0), 200);
	cr_assert_eq(ob_heartbeat(gw, OB_GW_KEY, a_reg, members, NULL, 0), 200);
	cr_assert_eq(ob_heartbeat(gw, OB_SFU_KEY, a_reg, members, NULL, 0), 401);
	cr_assert_eq(ob_heartbeat(gw, OB_GW_KEY, "http://127.0.0.1:9", "\"status\":\"down\"",
				  NULL, 0),
		     200);

	/* Channels: successes, failovers, the circuit opening and half-opening, refusals. */
	ob_channels(gw->port, 3, 1, 200);
	deadline = harness_now_ms() + 10000;
	while (ob_metric(gw, "sfu_gateway_circuit_transitions_total{to=\"half_open\"}") < 1 &&
	       harness_now_ms() < deadline) {
		ob_channels(gw->port, 1, 1, 200);
		poll(NULL, 0, 30);
	}
	cr_assert_geq(ob_metric(gw, "sfu_gateway_circuit_transitions_total{to=\"open\"}"), 1);
	cr_assert_geq(ob_metric(gw, "sfu_gateway_circuit_transitions_total{to=\"half_open\"}"), 1);
	ob_channels(gw->port, 20, 5, 200);
	{
		struct harness_resp *x = ob_get(gw->port, "/v1/channel");

		cr_assert_eq(x->status, 401);
		free(x);
		x = ob_get(gw->port, "/nope");
		cr_assert_eq(x->status, 404);
		free(x);
		x = ob_get(gw->port, "/v1/health");
		cr_assert_eq(x->status, 200);
		free(x);
	}
	cr_assert_geq(ob_metric(gw, "sfu_gateway_heartbeats_total{result=\"registered\"}"), 1);
	cr_assert_geq(ob_metric(gw, "sfu_gateway_heartbeats_total{result=\"rejected\"}"), 1);
	cr_assert_geq(ob_metric(gw, "sfu_gateway_probes_total{result=\"failed\"}"), 1);

	r = ob_get(gw->port, "/metrics");
	cr_assert_eq(r->status, 200);
	cr_assert(strstr(r->head, "text/plain") != NULL, "head: %s", r->head);
	rc = ob_promtool(r->body, out, sizeof(out));
	cr_assert_eq(rc, 0, "promtool check metrics exited %d:\n%s\n---\n%s", rc, out, r->body);
	cr_assert_str_empty(out, "promtool: %s", out);
	free(r);
}

/* ---- no key material */

#define OB_NKEYS 4

/* The forms a secret could leak in: base64 (std/url, padded or not), hex, raw. */
static void ob_key_forms(const unsigned char *key, size_t len, char forms[7][256])
{
	static const char hexl[] = "0123456789abcdef", hexu[] = "0123456789ABCDEF";
	size_t n;

	cr_assert_leq(len, 64);
	EVP_EncodeBlock((unsigned char *)forms[0], key, (int)len);
	memcpy(forms[1], forms[0], 256);
	n = strlen(forms[1]);
	while (n > 0 && forms[1][n - 1] == '=')
		forms[1][--n] = '\0';
	memcpy(forms[2], forms[1], 256);
	memcpy(forms[3], forms[0], 256);
	for (int f = 2; f <= 3; f++)
		for (char *c = forms[f]; *c; c++)
			*c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
	for (size_t i = 0; i < len; i++) {
		forms[4][2 * i] = hexl[key[i] >> 4];
		forms[4][2 * i + 1] = hexl[key[i] & 15];
		forms[5][2 * i] = hexu[key[i] >> 4];
		forms[5][2 * i + 1] = hexu[key[i] & 15];
	}
	forms[4][2 * len] = forms[5][2 * len] = '\0';
	memcpy(forms[6], key, len);
	forms[6][len] = '\0';
}

/* Neither the secret nor its first 16 characters (a leaked part is a leak) are in text. */
static void ob_assert_absent(const char *what, const char *text, size_t text_len,
			     const char *secret, size_t secret_len)
{
	size_t part = secret_len < 16 ? secret_len : 16;

	cr_assert_geq(secret_len, 8);
	cr_assert_null(memmem(text, text_len, secret, secret_len), "%s leaks a secret", what);
	cr_assert_null(memmem(text, text_len, secret, part), "%s leaks part of a secret", what);
}

Test(metrics, no_key_material, .fini = harness_cleanup, .timeout = 40)
{
	unsigned char keys[OB_NKEYS][32];
	char forms[OB_NKEYS][7][256], env_gw[320], env_reg[320], toml[1024], members[512];
	char tokens[8][4096];
	int ntok = 0;
	const char *env[3];
	struct harness_proc *st, *reg, *gw;
	struct harness_resp *pages[2];

	/* Gateway, registration, static SFU and registered SFU keys, distinct bytes. */
	for (int k = 0; k < OB_NKEYS; k++) {
		for (int j = 0; j < 32; j++)
			keys[k][j] = (unsigned char)(j * 37 + k * 101 + 11 + (j * j) % 7);
		ob_key_forms(keys[k], 32, forms[k]);
	}
	snprintf(env_gw, sizeof(env_gw), "SFU_GATEWAY_KEY=%s", forms[0][0]);
	snprintf(env_reg, sizeof(env_reg), "SFU_GATEWAY_REGISTRATION_KEY=%s", forms[1][2]);
	env[0] = env_gw;
	env[1] = env_reg;
	env[2] = NULL;
	st = ob_mock(forms[2][0], NULL);
	reg = ob_mock(forms[3][0], NULL);
	snprintf(toml, sizeof(toml),
		 "[probe]\ninterval_ms = 200\n[[sfu]]\naddress = \"%s\"\nregion = \"eu-west\"\n"
		 "key = \"%s\"\n",
		 harness_url(st->port), forms[2][0]);
	gw = ob_gateway(toml, 2, env);
	snprintf(members, sizeof(members),
		 "\"status\":\"up\",\"region\":\"eu-west\",\"key\":\"%s\",\"channels\":0,"
		 "\"sessions\":0,\"cpuUsage\":0,\"memoryUsage\":0",
		 forms[3][2]);
	cr_assert_eq(ob_heartbeat(gw, forms[1][0], harness_url(reg->port), members, tokens[ntok],
				  sizeof(tokens[0])),
		     200);
	ntok++;
	/* Channels to both SFUs (both idle, so they take turns); the tokens they
	 * received are secrets too. */
	for (int i = 0; i < 4; i++) {
		struct harness_call call;

		ob_channel_req(call.req, sizeof(call.req), forms[0][0], tokens[ntok],
			       sizeof(tokens[0]));
		ntok++;
		harness_batch(gw->port, &call, 1, 1, 10000);
		cr_assert_eq(call.status, 200, "%d %s", call.status, call.body);
	}
	for (int m = 0; m < 2; m++) {
		struct harness_resp *last = ob_get(m ? reg->port : st->port, "/mock/last");

		cr_assert_eq(last->status, 200, "mock %d got no channel request", m);
		snprintf(tokens[ntok++], sizeof(tokens[0]), "%s",
			 harness_json_str(last->body, "token"));
		cr_assert_str_not_empty(tokens[ntok - 1]);
		free(last);
	}
	pages[0] = ob_get(gw->port, "/v1/health");
	pages[1] = ob_get(gw->port, "/metrics");
	for (int p = 0; p < 2; p++) {
		const char *what = p ? "/metrics" : "/v1/health";
		const char *text = pages[p]->head;
		size_t hl = strlen(pages[p]->head);

		cr_assert_eq(pages[p]->status, 200);
		cr_assert_gt(pages[p]->body_len, 100);
		for (int k = 0; k < OB_NKEYS; k++)
			for (int f = 0; f < 7; f++) {
				size_t fl = f == 6 ? 32 : strlen(forms[k][f]);

				ob_assert_absent(what, text, hl, forms[k][f], fl);
				ob_assert_absent(what, pages[p]->body, pages[p]->body_len,
						 forms[k][f], fl);
			}
		for (int t = 0; t < ntok; t++) {
			const char *sig = strrchr(tokens[t], '.');

			ob_assert_absent(what, pages[p]->body, pages[p]->body_len, tokens[t],
					 strlen(tokens[t]));
			cr_assert_not_null(sig);
			ob_assert_absent(what, pages[p]->body, pages[p]->body_len, sig + 1,
					 strlen(sig + 1));
		}
	}
	free(pages[0]);
	free(pages[1]);
}

/* ---- exact counters */

#define OB_EXACT_N 200

Test(metrics, counters_exact_across_workers, .fini = harness_cleanup, .timeout = 60)
{
	static const char *const env[] = { "SFU_GATEWAY_KEY=" OB_GW_KEY, NULL };
	struct harness_proc *m[2] = { ob_mock(OB_SFU_KEY, NULL), ob_mock(OB_SFU_KEY, NULL) }, *gw;
	char toml[1024];
	struct harness_resp *r;
	int count;
	double ok, failed;

	snprintf(toml, sizeof(toml),
		 "[[sfu]]\naddress = \"%s\"\nregion = \"eu-west\"\nkey = \"%s\"\n"
		 "[[sfu]]\naddress = \"%s\"\nregion = \"us-east\"\nkey = \"%s\"\n",
		 harness_url(m[0]->port), OB_SFU_KEY, harness_url(m[1]->port), OB_SFU_KEY);
	gw = ob_gateway(toml, 2, env);
	ob_channels(gw->port, OB_EXACT_N, 8, 200);

	r = ob_get(gw->port, "/metrics");
	cr_assert_eq(r->status, 200);
	cr_assert_eq(harness_series(r->body,
			       "sfu_gateway_requests_total{route=\"/v1/channel\",status=\"200\"}"),
		     OB_EXACT_N, "%s", r->body);
	cr_assert_eq(ob_sum(r->body, "sfu_gateway_requests_total{route=\"/v1/channel\"", "",
			    &count),
		     OB_EXACT_N);
	cr_assert_eq(harness_series(r->body, "sfu_gateway_upstream_requests_total"), OB_EXACT_N);
	cr_assert_eq(harness_series(r->body, "sfu_gateway_upstream_failures_total"), 0);
	cr_assert_eq(harness_series(r->body, "sfu_gateway_retries_total"), 0);
	cr_assert_eq(harness_series(r->body, "sfu_gateway_upstream_latency_seconds_count"),
		     OB_EXACT_N);
	cr_assert_eq(harness_series(r->body,
				    "sfu_gateway_upstream_latency_seconds_bucket{le=\"+Inf\"}"),
		     OB_EXACT_N);
	ok = ob_sum(r->body, "sfu_gateway_sfu_requests_total{", "result=\"ok\"", &count);
	cr_assert_eq(count, 2);
	cr_assert_eq(ok, OB_EXACT_N);
	failed = ob_sum(r->body, "sfu_gateway_sfu_requests_total{", "result=\"failed\"", &count);
	cr_assert_eq(count, 2);
	cr_assert_eq(failed, 0);
	/* Both workers answered some: the totals above are sums over processes. */
	cr_assert_eq(ob_sum(r->body, "sfu_gateway_connections_total{", "", &count) >= OB_EXACT_N,
		     true);
	cr_assert_eq(count, 2);
	for (int w = 0; w < 2; w++) {
		char series[80];

		snprintf(series, sizeof(series), "sfu_gateway_connections_total{worker=\"%d\"}", w);
		cr_assert_gt(harness_series(r->body, series), 0, "worker %d accepted nothing", w);
	}
	free(r);
	cr_assert_eq(ob_mock_stat(m[0], "channel_requests") +
			     ob_mock_stat(m[1], "channel_requests"),
		     OB_EXACT_N);
}
