/* Observability through real processes: /v1/health shape and status, /metrics format and counts. */
#include <criterion/criterion.h>

#include <json.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
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
	snprintf(body, sizeof(body), "{\"address\":\"%s\",%s}", address, members);
	tok = harness_sfu_token(address, reg_key, body);
	if (tok_out != NULL)
		snprintf(tok_out, tok_len, "%s", tok);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", tok);
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

/* ---- access to the operators' routes, and their cost under a flood */

#define OB_OBS_TOKEN "obs-token-5f0c2a7e91d84b36a0e1"

/* GET (or HEAD) path with extra header lines; the whole answer, which the caller frees. */
static struct harness_resp *ob_request(int port, const char *method, const char *path,
				       const char *headers)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	char req[1024];
	int n;

	cr_assert_not_null(r);
	n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n",
		     method, path, headers ? headers : "");
	cr_assert_eq(harness_raw(port, req, (size_t)n, r, 10000), 0, "%s %s failed", method, path);
	return r;
}

static void ob_expect(int port, const char *method, const char *path, const char *headers,
		      int status, const char *body)
{
	struct harness_resp *r = ob_request(port, method, path, headers);

	cr_assert_eq(r->status, status, "%s %s (%s): %d, want %d\n%s%s", method, path,
		     headers ? headers : "no header", r->status, status, r->head, r->body);
	if (body != NULL)
		cr_assert_str_eq(r->body, body, "%s %s", method, path);
	free(r);
}

/* Writes the gateway's config file (renamed into place, so a reload never reads half). */
static const char *ob_config(const char *text)
{
	static char path[512];
	const char *tmp = harness_write_file("obs.toml.new", text);

	snprintf(path, sizeof(path), "%s/obs.toml", harness_tmpdir());
	cr_assert_eq(rename(tmp, path), 0);
	return path;
}

Test(observability, local_monitoring_works_by_default, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const env[] = { "SFU_GATEWAY_KEY=" OB_GW_KEY, NULL };
	struct harness_proc *gw = ob_gateway(NULL, 1, env);

	/* The test runs on loopback, which the default allow-list admits; no token is set. */
	ob_expect(gw->port, "GET", "/metrics", NULL, 200, NULL);
	ob_expect(gw->port, "GET", "/v1/health", NULL, 503, NULL);
	ob_expect(gw->port, "HEAD", "/metrics", NULL, 200, "");
}

Test(observability, allow_list_refuses_other_peers, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const env[] = { "SFU_GATEWAY_KEY=" OB_GW_KEY, NULL };
	const char *args[] = { "--workers", "2", "--config",
			       ob_config("[observability]\nallow = [\"10.0.0.0/8\", \"fd00::/8\"]\n"),
			       NULL };
	struct harness_proc *gw = harness_gateway_up(env, args);
	int64_t deadline;
	struct harness_resp *r;

	for (int i = 0; i < 4; i++) {
		/* Several times: both workers refuse. */
		ob_expect(gw->port, "GET", "/metrics", NULL, 403, "{\"error\":\"address not allowed\"}");
		ob_expect(gw->port, "GET", "/v1/health", NULL, 403,
			  "{\"error\":\"address not allowed\"}");
		ob_expect(gw->port, "HEAD", "/v1/health", NULL, 403, "");
		/* Refused before the method is looked at: nothing tells what is there. */
		ob_expect(gw->port, "POST", "/metrics", NULL, 403, NULL);
	}
	/* Liveness and the API are not operators' routes. */
	ob_expect(gw->port, "GET", "/noop", NULL, 200, "{\"status\":\"ok\"}");
	ob_expect(gw->port, "GET", "/v1/noop", NULL, 200, "{\"result\":\"ok\"}");
	ob_expect(gw->port, "GET", "/v1/channel", NULL, 401, "{\"error\":\"missing authorization\"}");
	cr_assert_neq(strstr(harness_log(gw), "observability: refused /metrics from 127.0.0.1: "
					      "address not allowed"),
		      NULL, "%s", harness_log(gw));

	/* The list changes on reload. */
	ob_config("[observability]\nallow = [\"10.0.0.0/8\", \"127.0.0.1/32\"]\n");
	cr_assert_eq(kill(gw->pid, SIGHUP), 0);
	deadline = harness_now_ms() + 5000;
	do {
		r = ob_request(gw->port, "GET", "/metrics", NULL);
		if (r->status == 200 || harness_now_ms() > deadline)
			break;
		free(r);
		poll(NULL, 0, 20);
	} while (1);
	cr_assert_eq(r->status, 200, "still %d after the reload", r->status);
	free(r);
}

Test(observability, token_required_when_set, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const env[] = { "SFU_GATEWAY_KEY=" OB_GW_KEY, NULL };
	struct harness_proc *gw = ob_gateway("[observability]\ntoken = \"" OB_OBS_TOKEN "\"\n", 2, env);
	static const char *const wrong[] = {
		"Authorization: Bearer wrong\r\n",
		"Authorization: Bearer " OB_OBS_TOKEN "x\r\n",
		"Authorization: Bearer obs-token-5f0c2a7e91d84b36a0e\r\n",
		"Authorization: Bearer " OB_OBS_TOKEN " " OB_OBS_TOKEN "\r\n",
	};
	static const char *const missing[] = {
		NULL,
		"Authorization: jwt " OB_OBS_TOKEN "\r\n",
		"Authorization: " OB_OBS_TOKEN "\r\n",
		"Authorization: Basic b2JzOnRva2Vu\r\n",
		"Authorization: Bearer \r\n",
	};
	struct harness_resp *r;
	char value[128];

	for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		ob_expect(gw->port, "GET", "/metrics", wrong[i], 401, "{\"error\":\"invalid token\"}");
		ob_expect(gw->port, "GET", "/v1/health", wrong[i], 401, "{\"error\":\"invalid token\"}");
	}
	for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++)
		ob_expect(gw->port, "GET", "/metrics", missing[i], 401,
			  "{\"error\":\"missing authorization\"}");
	r = ob_request(gw->port, "GET", "/metrics", NULL);
	cr_assert(harness_resp_header(r, "WWW-Authenticate", value, sizeof(value)), "%s", r->head);
	cr_assert_str_eq(value, "Bearer realm=\"sfu-gateway\"");
	free(r);

	/* The token, with the scheme in any case. */
	ob_expect(gw->port, "GET", "/metrics", "Authorization: Bearer " OB_OBS_TOKEN "\r\n", 200, NULL);
	ob_expect(gw->port, "GET", "/metrics", "authorization: bearer " OB_OBS_TOKEN "\r\n", 200, NULL);
	ob_expect(gw->port, "GET", "/v1/health", "Authorization: BEARER " OB_OBS_TOKEN "\r\n", 503,
		  NULL);
	/* Liveness needs none. */
	ob_expect(gw->port, "GET", "/noop", NULL, 200, NULL);
	/* Refusals are logged, the token never. */
	cr_assert_neq(strstr(harness_log(gw), "observability: refused /metrics from 127.0.0.1: "
					      "wrong token"),
		      NULL, "%s", harness_log(gw));
	cr_assert_null(strstr(harness_log(gw), OB_OBS_TOKEN), "the log shows the token");
	r = ob_request(gw->port, "GET", "/metrics", "Authorization: Bearer " OB_OBS_TOKEN "\r\n");
	cr_assert_null(strstr(r->body, OB_OBS_TOKEN), "/metrics shows the token");
	free(r);
	r = ob_request(gw->port, "GET", "/v1/health", "Authorization: Bearer " OB_OBS_TOKEN "\r\n");
	cr_assert_null(strstr(r->body, OB_OBS_TOKEN), "/v1/health shows the token");
	free(r);
}

Test(observability, bad_settings_are_refused, .fini = harness_cleanup, .timeout = 30)
{
	static const char *const bad[][2] = {
		{ "[observability]\nallow = [\"10.0.0.0/33\"]\n", "[observability] allow[0]" },
		{ "[observability]\nallow = \"10.0.0.0/8\"\n", "[observability] allow" },
		{ "[observability]\ntoken = \"two words\"\n", "[observability] token is invalid" },
		{ "[observability]\nmax_age_ms = 60001\n", "[observability] max_age_ms" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		static const char *const env[] = { "SFU_GATEWAY_KEY=" OB_GW_KEY, NULL };
		const char *args[] = { "--check-config", "--config", ob_config(bad[i][0]), NULL };
		struct harness_proc *p = NULL;

		cr_assert_eq(harness_gateway_run(env, args, 10000, &p), 1, "%s", bad[i][0]);
		cr_assert_neq(strstr(harness_log(p), bad[i][1]), NULL, "no '%s' in: %s", bad[i][1],
			      harness_log(p));
		/* The invalid token is not echoed. */
		cr_assert_null(strstr(harness_log(p), "two words"), "%s", harness_log(p));
	}
}

#define OB_FLOOD_SFUS 1000
#define OB_FLOOD_MAX_AGE_MS 300
#define OB_FLOOD_CONNS 4
#define OB_FLOOD_CHECKS 5
#define OB_FLOOD_WARMUP 1000 /* answers of the flood before the checks */

/* Reads what is there on a flood connection; *left counts down the bytes of the answer
 * being read (-1 before its head is whole). Returns answers completed, or -1 when the
 * connection broke. */
static int ob_flood_read(int fd, char *head, size_t *head_len, long *left)
{
	static char buf[1 << 16];
	ssize_t n = read(fd, buf, sizeof(buf));
	int done = 0;

	if (n <= 0)
		return -1;
	for (ssize_t i = 0; i < n;) {
		if (*left < 0) {
			/* Still in the head: collect it up to the blank line. */
			const char *cl;

			if (*head_len + 1 >= 4096)
				return -1;
			head[(*head_len)++] = buf[i++];
			head[*head_len] = '\0';
			if (*head_len < 4 || strcmp(head + *head_len - 4, "\r\n\r\n") != 0)
				continue;
			cl = strcasestr(head, "\r\nContent-Length: ");
			if (cl == NULL || strncmp(head, "HTTP/1.1 200 ", 13) != 0)
				return -1;
			*left = strtol(cl + 18, NULL, 10);
			*head_len = 0;
		}
		if ((ssize_t)*left > n - i) {
			*left -= (long)(n - i);
			break;
		}
		i += (ssize_t)*left;
		*left = -1;
		done++;
	}
	return done;
}

/* A /metrics flood from its own process: OB_FLOOD_CONNS keep-alive connections each
 * asking again as soon as an answer (which must be 200) is in, until killed (or after
 * 60 s). *answers (shared memory) counts the answers. */
static pid_t ob_flood_start(int port, _Atomic long *answers)
{
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
		static char heads[OB_FLOOD_CONNS][4096];
		struct pollfd pf[OB_FLOOD_CONNS];
		size_t head_len[OB_FLOOD_CONNS] = { 0 };
		long left[OB_FLOOD_CONNS];
		int64_t end = harness_now_ms() + 60000;

		for (int i = 0; i < OB_FLOOD_CONNS; i++) {
			struct sockaddr_in sa = { .sin_family = AF_INET,
						  .sin_port = htons((uint16_t)port),
						  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

			pf[i] = (struct pollfd){ socket(AF_INET, SOCK_STREAM, 0), POLLIN, 0 };
			left[i] = -1;
			if (pf[i].fd < 0 ||
			    connect(pf[i].fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
			    write(pf[i].fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1)
				_exit(1);
		}
		while (harness_now_ms() < end) {
			if (poll(pf, OB_FLOOD_CONNS, 100) <= 0)
				continue;
			for (int i = 0; i < OB_FLOOD_CONNS; i++) {
				int done;

				if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
				done = ob_flood_read(pf[i].fd, heads[i], &head_len[i], &left[i]);
				if (done < 0)
					_exit(1);
				atomic_fetch_add(answers, done);
				for (; done > 0; done--)
					if (write(pf[i].fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1)
						_exit(1);
			}
		}
		_exit(0);
	}
	return pid;
}

/*
 * With a thousand SFUs and /metrics asked for in a loop, workers answer from a
 * rendering that is never older than [observability] max_age_ms: every change
 * shows within it (plus the time to ask), and every scrape is whole.
 */
Test(observability, answers_stay_fresh_under_a_flood, .fini = harness_cleanup, .timeout = 90)
{
	static const char *const env[] = { "SFU_GATEWAY_KEY=" OB_GW_KEY, NULL };
	struct harness_proc *m = ob_mock(OB_SFU_KEY, NULL), *gw;
	size_t cap = 160 * (OB_FLOOD_SFUS + 8), o = 0;
	char *toml = malloc(cap);
	_Atomic long *answers = mmap(NULL, sizeof(*answers), PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t flood;
	int stale_seen = 0;
	int64_t worst = 0, deadline;

	cr_assert_not_null(toml);
	o += (size_t)snprintf(toml + o, cap - o,
			      "[observability]\nmax_age_ms = %d\n\n[[sfu]]\naddress = \"%s\"\n"
			      "region = \"eu-west\"\nkey = \"%s\"\n",
			      OB_FLOOD_MAX_AGE_MS, harness_url(m->port), OB_SFU_KEY);
	/* The rest listen nowhere: 127.1.x.y, port 9, on loopback, refused at once. */
	for (int i = 1; i < OB_FLOOD_SFUS; i++)
		o += (size_t)snprintf(toml + o, cap - o,
				      "[[sfu]]\naddress = \"http://127.1.%d.%d:9\"\n"
				      "region = \"ap-south\"\nkey = \"%s\"\n",
				      i / 256, i % 256, OB_SFU_KEY);
	cr_assert_lt(o, cap);
	gw = ob_gateway(toml, 2, env);
	free(toml);
	cr_assert_eq(ob_metric(gw, "sfu_gateway_registry_sfus"), OB_FLOOD_SFUS);
	cr_assert_neq(answers, MAP_FAILED);
	*answers = 0;
	flood = ob_flood_start(gw->port, answers);
	/* Long enough that rendering every answer would have taken far more than the
	 * workers' budget: from here on they serve saved renderings. */
	deadline = harness_now_ms() + 30000;
	while (atomic_load(answers) < OB_FLOOD_WARMUP && harness_now_ms() < deadline) {
		cr_assert_eq(waitpid(flood, NULL, WNOHANG), 0, "the flood stopped");
		poll(NULL, 0, 10);
	}
	cr_assert_geq(atomic_load(answers), OB_FLOOD_WARMUP, "the flood got only %ld answers",
		      atomic_load(answers));
	for (int k = 1; k <= OB_FLOOD_CHECKS; k++) {
		struct harness_resp *r;
		int64_t t0, waited;
		double seen = 0;
		int status;

		r = harness_channel(gw->port, "/v1/channel?region=eu-west",
				    "https://odoo.test:channel:flood", OB_GW_KEY, NULL);
		status = r->status;
		free(r);
		cr_assert_eq(status, 200, "channel request %d during the flood: %d", k, status);
		t0 = harness_now_ms();
		for (;;) {
			r = ob_get(gw->port, "/metrics");
			cr_assert_eq(r->status, 200);
			seen = harness_series(r->body, "sfu_gateway_requests_total{route=\"/v1/channel\","
							 "status=\"200\"}");
			free(r);
			waited = harness_now_ms() - t0;
			if (seen >= k || waited > 10 * OB_FLOOD_MAX_AGE_MS)
				break;
			stale_seen++;
		}
		cr_assert_eq(seen, k, "the channel request %d did not show in /metrics after %lld ms",
			     k, (long long)waited);
		worst = waited > worst ? waited : worst;
	}
	cr_assert_eq(waitpid(flood, NULL, WNOHANG), 0, "the flood stopped early");
	kill(flood, SIGKILL);
	waitpid(flood, NULL, 0);
	/* Never older than max_age: generous room for asking on a loaded machine. */
	cr_assert_leq(worst, OB_FLOOD_MAX_AGE_MS + 1500, "a change took %lld ms to show",
		      (long long)worst);
	cr_log_info("answers_stay_fresh_under_a_flood: %ld flood answers, %d stale scrapes, "
		    "worst delay %lld ms",
		    atomic_load(answers), stale_seen, (long long)worst);
	munmap((void *)answers, sizeof(*answers));
}
