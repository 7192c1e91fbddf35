/* Integration tests of the external registry source: a mock registry, real gateways and mock SFUs on loopback. */
#include <criterion/criterion.h>

#include <json.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* 34-byte keys: the gateway's, two SFU keys, a static SFU's. */
#define RS_GW_KEY "cmVnc291cmNlLXRlc3RzLWdhdGV3YXkta2V5LTAwMDAwMQ=="
#define RS_K1 "cmVnc291cmNlLXRlc3RzLXNmdS1rZXktb25lLTAwMDAwMg=="
#define RS_K2 "cmVnc291cmNlLXRlc3RzLXNmdS1rZXktdHdvLTAwMDAwMw=="
#define RS_KS "cmVnc291cmNlLXRlc3RzLXN0YXRpYy1rZXktMDAwMDAwNA=="
#define RS_TOKEN "regsource-test-bearer.token_0123456789"
#define RS_POLL_MS 200
#define RS_WAIT_MS 10000
/* An address nothing listens on (nothing is ever sent to it in these tests). */
#define RS_FAKE "http://10.9.9.9:8070"

/* ---- processes */

static struct harness_proc *rs_mock(const char *key)
{
	struct harness_proc *m = harness_mock_start(key, NULL);

	cr_assert_not_null(m, "a mock SFU did not come up");
	return m;
}

static struct harness_proc *rs_registry(const char *const *args)
{
	struct harness_proc *r = harness_registry_start(args);

	cr_assert_not_null(r, "the mock registry did not come up");
	return r;
}

/* The gateway's config: [registry] polling reg every RS_POLL_MS, then extra (more
 * [registry] keys first, then other sections). Static buffer. */
static const char *rs_toml(int reg_port, const char *extra)
{
	static char out[4096];

	snprintf(out, sizeof(out),
		 "[registry]\nurl = \"http://127.0.0.1:%d/sfu-list\"\npoll_ms = %d\n"
		 "min_poll_ms = 100\n%s",
		 reg_port, RS_POLL_MS, extra ? extra : "");
	return out;
}

static struct harness_proc *rs_gateway(const struct harness_proc *reg, const char *extra,
				       int workers)
{
	return harness_gateway_keyed(RS_GW_KEY, NULL, workers, rs_toml(reg->port, extra));
}

/* ---- the registry's document */

/* One entry for an SFU on port with key and extra members (",\"region\":..."). */
static const char *rs_entry(int port, const char *key, const char *extra)
{
	static char bufs[8][1024];
	static int next;
	char *b = bufs[next++ % 8];

	snprintf(b, sizeof(bufs[0]), "{\"address\":\"%s\",\"key\":\"%s\"%s}", harness_url(port),
		 key, extra ? extra : "");
	return b;
}

/* Replaces the mock registry's document; returns the new ETag (static buffer). */
static const char *rs_set_doc(const struct harness_proc *reg, const char *doc)
{
	static char etag[64];
	struct harness_resp *r = calloc(1, sizeof(*r));
	struct json_object *o;

	cr_assert_not_null(r);
	cr_assert_eq(harness_post(reg->port, "/mock/doc", NULL, doc, r), 0);
	cr_assert_eq(r->status, 200, "POST /mock/doc: %d %s", r->status, r->body);
	o = json_tokener_parse(r->body);
	cr_assert_not_null(o);
	snprintf(etag, sizeof(etag), "\"v%lld\"", (long long)harness_json_int(o, "version"));
	json_object_put(o);
	free(r);
	return etag;
}

/* A document of the given entries (NULL-terminated). Static buffer. */
static const char *rs_doc(const char *const *entries)
{
	static char out[16384];
	size_t n = (size_t)snprintf(out, sizeof(out), "{\"sfu\":[");

	for (int i = 0; entries[i] != NULL; i++)
		n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%s", i ? "," : "", entries[i]);
	snprintf(out + n, sizeof(out) - n, "]}");
	return out;
}

static int64_t rs_reg_stat(const struct harness_proc *reg, const char *field)
{
	return harness_mock_int(reg, "/mock/stats", field);
}

/* ---- what the gateway shows */

static struct json_object *rs_health(const struct harness_proc *gw)
{
	struct json_object *root = harness_get_json(gw->port, "/v1/health", NULL);

	cr_assert_not_null(root, "/v1/health is not JSON");
	return root;
}

/* The "registry" object of a health answer (borrowed). */
static struct json_object *rs_regobj(struct json_object *root)
{
	struct json_object *o;

	cr_assert(json_object_object_get_ex(root, "registry", &o) &&
			  json_object_is_type(o, json_type_object),
		  "/v1/health has no registry object: %s", json_object_to_json_string(root));
	return o;
}

/* A string member, NULL when absent or null. */
static const char *rs_str(struct json_object *o, const char *field)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, field, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static struct json_object *rs_sfu(struct json_object *root, const char *address)
{
	struct json_object *arr;

	cr_assert(json_object_object_get_ex(root, "sfus", &arr));
	return harness_json_find(arr, "address", address);
}

/* SFUs of health's list whose source is source. */
static int rs_count_source(struct json_object *root, const char *source)
{
	struct json_object *arr;
	int n = 0;

	cr_assert(json_object_object_get_ex(root, "sfus", &arr));
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		const char *s = rs_str(json_object_array_get_idx(arr, i), "source");

		n += s != NULL && strcmp(s, source) == 0;
	}
	return n;
}

static int64_t rs_polls(struct json_object *root, const char *result)
{
	struct json_object *polls;

	cr_assert(json_object_object_get_ex(rs_regobj(root), "polls", &polls));
	return harness_json_int(polls, result);
}

/* Waits until health's registry object has etag; fails with the health text otherwise. */
static void rs_wait_etag(const struct harness_proc *gw, const char *etag)
{
	int64_t deadline = harness_now_ms() + RS_WAIT_MS;
	char last[2048] = "";

	while (harness_now_ms() < deadline) {
		struct json_object *root = rs_health(gw);
		const char *e = rs_str(rs_regobj(root), "etag");
		bool done = e != NULL && strcmp(e, etag) == 0;

		snprintf(last, sizeof(last), "%s", json_object_to_json_string(rs_regobj(root)));
		json_object_put(root);
		if (done)
			return;
		poll(NULL, 0, 20);
	}
	cr_assert_fail("the gateway never applied the list with ETag %s; last: %s\n%s", etag, last,
		       harness_all_logs());
}

/* Waits until the registry's state is state and, when error is not NULL, its last
 * error contains error. */
static void rs_wait_state(const struct harness_proc *gw, const char *state, const char *error)
{
	int64_t deadline = harness_now_ms() + RS_WAIT_MS;
	char last[2048] = "";

	while (harness_now_ms() < deadline) {
		struct json_object *root = rs_health(gw), *o = rs_regobj(root);
		const char *s = rs_str(o, "state"), *e = rs_str(o, "lastError");
		bool done = s != NULL && strcmp(s, state) == 0 &&
			    (error == NULL || (e != NULL && strstr(e, error) != NULL));

		snprintf(last, sizeof(last), "%s", json_object_to_json_string(o));
		json_object_put(root);
		if (done)
			return;
		poll(NULL, 0, 20);
	}
	cr_assert_fail("the registry never reached state %s (error %s); last: %s\n%s", state,
		       error ? error : "-", last, harness_all_logs());
}

/* A channel request for a fresh issuer (affinity never pins it); the index of the mock
 * that served it in mocks (-1: none) and its status. */
static int rs_channel(const struct harness_proc *gw, struct harness_proc *const *mocks, int n,
		      int *status)
{
	static int seq;
	char iss[96];
	struct harness_resp *r;
	int who;

	snprintf(iss, sizeof(iss), "https://odoo.test/regsource-%d-%d", (int)getpid(), seq++);
	r = harness_channel(gw->port, "/v1/channel", iss, RS_GW_KEY, NULL);
	*status = r->status;
	who = r->status == 200 ? harness_served_by(mocks, n, r->body) : -1;
	free(r);
	return who;
}

/* Whether the mock SFU verified the token of the last channel request it got. */
static bool rs_last_verified(const struct harness_proc *m)
{
	struct json_object *o = harness_mock_json(m, "/mock/last"), *v;
	bool ok;

	cr_assert(json_object_object_get_ex(o, "verified", &v));
	ok = json_object_get_boolean(v);
	json_object_put(o);
	return ok;
}

/* Waits until the gateway's log holds needle at least once; returns how many times. */
static int rs_wait_log(const struct harness_proc *gw, const char *needle)
{
	int64_t deadline = harness_now_ms() + RS_WAIT_MS;
	int n = 0;

	while (harness_now_ms() < deadline) {
		char *log = harness_whole_log(gw);

		n = harness_count(log, needle);
		free(log);
		if (n > 0)
			return n;
		poll(NULL, 0, 20);
	}
	return n;
}

/* ---- 200, 304, 200: add, load change, remove */

Test(regsource, etag_flow_adds_updates_and_removes, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_proc *m1 = rs_mock(RS_K1), *m2 = rs_mock(RS_K1), *reg = rs_registry(NULL);
	struct harness_proc *mocks[] = { m1, m2 }, *gw;
	const char *a1 = harness_url(m1->port), *a2 = harness_url(m2->port);
	const char *e[4];
	struct json_object *root, *s, *inm;
	char etag[64];
	int status;
	int64_t deadline;

	e[0] = rs_entry(m1->port, RS_K1, ",\"region\":\"eu-west\"");
	e[1] = NULL;
	snprintf(etag, sizeof(etag), "%s", rs_set_doc(reg, rs_doc(e)));
	gw = rs_gateway(reg, NULL, 2);
	rs_wait_etag(gw, etag);

	root = rs_health(gw);
	cr_assert_str_eq(rs_str(rs_regobj(root), "state"), "ok");
	cr_assert_eq(harness_json_int(rs_regobj(root), "sfus"), 1);
	s = rs_sfu(root, a1);
	cr_assert_not_null(s, "the listed SFU is not in health");
	cr_assert_str_eq(rs_str(s, "source"), "registry");
	cr_assert_str_eq(rs_str(s, "region"), "eu-west");
	cr_assert_null(rs_sfu(root, a2));
	json_object_put(root);
	cr_assert_eq(rs_channel(gw, mocks, 2, &status), 0, "status %d", status);
	cr_assert(rs_last_verified(m1), "the request was not signed with the listed key");

	/* 304s: the same ETag comes back as If-None-Match, and nothing is applied. */
	deadline = harness_now_ms() + RS_WAIT_MS;
	while (rs_reg_stat(reg, "not_modified") < 3 && harness_now_ms() < deadline)
		poll(NULL, 0, 20);
	cr_assert_geq(rs_reg_stat(reg, "not_modified"), 3);
	cr_assert_eq(rs_reg_stat(reg, "ok"), 1, "a second 200 for an unchanged list");
	root = harness_mock_json(reg, "/mock/stats");
	cr_assert(json_object_object_get_ex(root, "last_if_none_match", &inm));
	cr_assert_str_eq(json_object_get_string(inm), etag);
	json_object_put(root);
	root = rs_health(gw);
	cr_assert_geq(rs_polls(root, "notModified"), 3);
	cr_assert_eq(rs_polls(root, "ok"), 1);
	json_object_put(root);

	/* A changed ETag: m1's load changes, m2 is added. */
	e[0] = rs_entry(m1->port, RS_K1,
			",\"region\":\"eu-west\",\"channels\":2,\"sessions\":5,\"cpuUsage\":0.5");
	e[1] = rs_entry(m2->port, RS_K1, NULL);
	e[2] = NULL;
	snprintf(etag, sizeof(etag), "%s", rs_set_doc(reg, rs_doc(e)));
	rs_wait_etag(gw, etag);
	root = rs_health(gw);
	s = rs_sfu(root, a1);
	cr_assert_not_null(s);
	cr_assert_eq(harness_json_int(s, "sessions"), 5);
	cr_assert_eq(harness_json_int(s, "channels"), 2);
	cr_assert_not_null(rs_sfu(root, a2), "the added SFU is missing");
	cr_assert_str_eq(rs_str(rs_sfu(root, a2), "source"), "registry");
	cr_assert_eq(harness_json_int(rs_regobj(root), "sfus"), 2);
	json_object_put(root);

	/* m1 removed. */
	e[0] = rs_entry(m2->port, RS_K1, NULL);
	e[1] = NULL;
	snprintf(etag, sizeof(etag), "%s", rs_set_doc(reg, rs_doc(e)));
	rs_wait_etag(gw, etag);
	root = rs_health(gw);
	cr_assert_null(rs_sfu(root, a1), "the removed SFU is still there");
	cr_assert_not_null(rs_sfu(root, a2));
	cr_assert_eq(rs_polls(root, "ok"), 3);
	json_object_put(root);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(rs_channel(gw, mocks, 2, &status), 1, "status %d", status);
}

/* ---- a key change takes effect for the next request */

Test(regsource, key_change_signs_the_next_request, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_proc *m1 = rs_mock(RS_K1), *reg = rs_registry(NULL), *gw;
	struct harness_proc *mocks[] = { m1 };
	const char *e[2] = { NULL, NULL };
	char etag[64];
	int status;

	e[0] = rs_entry(m1->port, RS_K2, NULL);
	snprintf(etag, sizeof(etag), "%s", rs_set_doc(reg, rs_doc(e)));
	gw = rs_gateway(reg, NULL, 2);
	rs_wait_etag(gw, etag);
	rs_channel(gw, mocks, 1, &status);
	cr_assert_not(rs_last_verified(m1), "signed with a key the list does not give");

	for (int round = 0; round < 3; round++) {
		const char *key = round % 2 == 0 ? RS_K1 : RS_K2;

		e[0] = rs_entry(m1->port, key, NULL);
		snprintf(etag, sizeof(etag), "%s", rs_set_doc(reg, rs_doc(e)));
		rs_wait_etag(gw, etag);
		/* The very next request after the list is applied. */
		rs_channel(gw, mocks, 1, &status);
		if (round % 2 == 0) {
			cr_assert_eq(status, 200);
			cr_assert(rs_last_verified(m1), "round %d: not signed with the new key", round);
		} else {
			cr_assert_not(rs_last_verified(m1), "round %d: signed with the old key", round);
		}
	}
}

/* ---- failures keep the last good list */

struct rs_case {
	const char *toml; /* more [registry] keys */
	const char *fault; /* /mock/fault query, NULL: none */
	const char *bad_entry; /* a document of this one entry, NULL: none */
	int many; /* a document of this many entries, 0: none */
	bool stop; /* stop the registry (unreachable) */
	const char *error; /* what lastError must contain */
};

/* Serves a list, breaks the registry as c says, checks that the last list stays and
 * serves and that the state and log say so once, then repairs it and checks recovery. */
static void rs_fault_case(const struct rs_case *c)
{
	struct harness_proc *m1 = rs_mock(RS_K1), *reg = rs_registry(NULL), *gw;
	struct harness_proc *mocks[] = { m1 };
	const char *a1 = harness_url(m1->port);
	const char *e[4] = { NULL, NULL, NULL, NULL };
	char etag[64], path[256], port[16], *log;
	struct json_object *root;
	int64_t failed0, deadline;
	int status;

	e[0] = rs_entry(m1->port, RS_K1, NULL);
	snprintf(etag, sizeof(etag), "%s", rs_set_doc(reg, rs_doc(e)));
	gw = rs_gateway(reg, c->toml, 2);
	rs_wait_etag(gw, etag);

	/* What a broken answer would bring if it were applied: another list. */
	if (c->bad_entry != NULL) {
		e[0] = c->bad_entry;
		rs_set_doc(reg, rs_doc(e));
	} else if (c->many > 0) {
		char *big = malloc(65536);
		size_t n = (size_t)snprintf(big, 65536, "{\"sfu\":[");

		cr_assert_not_null(big);
		for (int i = 0; i < c->many; i++)
			n += (size_t)snprintf(big + n, 65536 - n, "%s{\"address\":\"http://10.8.0.%d\","
					      "\"key\":\"%s\"}", i ? "," : "", i + 1, RS_K1);
		snprintf(big + n, 65536 - n, "]}");
		rs_set_doc(reg, big);
		free(big);
	} else {
		e[0] = rs_entry(m1->port, RS_K1, NULL);
		e[1] = "{\"address\":\"" RS_FAKE "\",\"key\":\"" RS_K2 "\"}";
		rs_set_doc(reg, rs_doc(e));
	}
	if (c->fault != NULL) {
		snprintf(path, sizeof(path), "/mock/fault?%s", c->fault);
		harness_mock_post(reg, path, 200);
	}
	if (c->stop)
		cr_assert_eq(harness_stop(reg, SIGTERM, 5000), 0);

	root = rs_health(gw);
	failed0 = rs_polls(root, "failed");
	json_object_put(root);
	rs_wait_state(gw, "failing", c->error);
	/* At least two failed fetches, logged once. */
	deadline = harness_now_ms() + RS_WAIT_MS;
	for (;;) {
		root = rs_health(gw);
		if (rs_polls(root, "failed") >= failed0 + 2 || harness_now_ms() > deadline)
			break;
		json_object_put(root);
		poll(NULL, 0, 20);
	}
	cr_assert_geq(rs_polls(root, "failed"), failed0 + 2);
	cr_assert_str_eq(rs_str(rs_regobj(root), "etag"), etag, "the list in use changed");
	cr_assert_eq(rs_count_source(root, "registry"), 1);
	cr_assert_not_null(rs_sfu(root, a1), "the last good list's SFU is gone");
	cr_assert_null(rs_sfu(root, RS_FAKE));
	json_object_put(root);
	log = harness_whole_log(gw);
	cr_assert_eq(harness_count(log, " failing: "), 1,
		     "the failing state is not logged once:\n%s", log);
	free(log);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(rs_channel(gw, mocks, 1, &status), 0, "status %d", status);

	/* Repaired: the next good answer is applied. */
	if (c->stop) {
		snprintf(port, sizeof(port), "%d", reg->port);
		reg = rs_registry((const char *const[]){ "--port", port, NULL });
	}
	harness_mock_post(reg, "/mock/fault?mode=ok", 200);
	e[0] = rs_entry(m1->port, RS_K1, ",\"region\":\"us-east\"");
	e[1] = NULL;
	snprintf(etag, sizeof(etag), "%s", rs_set_doc(reg, rs_doc(e)));
	rs_wait_etag(gw, etag);
	rs_wait_state(gw, "ok", NULL);
}

Test(regsource, status_500_keeps_the_list, .fini = harness_cleanup, .timeout = 60)
{
	rs_fault_case(&(struct rs_case){ .fault = "mode=status&status=500",
					 .error = "GET answered 500" });
}

Test(regsource, garbage_keeps_the_list, .fini = harness_cleanup, .timeout = 60)
{
	rs_fault_case(&(struct rs_case){ .fault = "mode=garbage", .error = "invalid JSON" });
}

Test(regsource, oversized_keeps_the_list, .fini = harness_cleanup, .timeout = 60)
{
	rs_fault_case(&(struct rs_case){ .toml = "max_bytes = 4096\n",
					 .fault = "mode=oversized&bytes=100000",
					 .error = "larger than [registry] max_bytes = 4096" });
}

Test(regsource, hang_keeps_the_list, .fini = harness_cleanup, .timeout = 60)
{
	rs_fault_case(&(struct rs_case){ .toml = "timeout_ms = 300\n", .fault = "mode=hang",
					 .error = "response timeout" });
}

Test(regsource, slow_answer_keeps_the_list, .fini = harness_cleanup, .timeout = 60)
{
	rs_fault_case(&(struct rs_case){ .toml = "timeout_ms = 300\n",
					 .fault = "mode=delay&ms=2000",
					 .error = "response timeout" });
}

Test(regsource, unreachable_keeps_the_list, .fini = harness_cleanup, .timeout = 60)
{
	rs_fault_case(&(struct rs_case){ .stop = true, .error = "connection refused" });
}

Test(regsource, bad_key_keeps_the_list, .fini = harness_cleanup, .timeout = 60)
{
	rs_fault_case(&(struct rs_case){
		.bad_entry = "{\"address\":\"http://10.8.0.1:8070\",\"key\":\"not base64!\"}",
		.error = "key is not valid base64" });
}

Test(regsource, bad_address_keeps_the_list, .fini = harness_cleanup, .timeout = 60)
{
	rs_fault_case(&(struct rs_case){
		.bad_entry = "{\"address\":\"ftp://10.8.0.1\",\"key\":\"" RS_K1 "\"}",
		.error = "address is invalid" });
}

Test(regsource, bad_region_keeps_the_list, .fini = harness_cleanup, .timeout = 60)
{
	rs_fault_case(&(struct rs_case){
		.bad_entry = "{\"address\":\"http://10.8.0.1\",\"key\":\"" RS_K1
			     "\",\"region\":\"eu\\u0001west\"}",
		.error = "region is invalid" });
}

Test(regsource, too_many_sfus_keeps_the_list, .fini = harness_cleanup, .timeout = 60)
{
	rs_fault_case(&(struct rs_case){ .toml = "max_sfus = 2\n", .many = 3,
					 .error = "more than [registry] max_sfus = 2" });
}

/* ---- a list stale past its age is still used, flagged */

Test(regsource, stale_list_is_used_and_flagged, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_proc *m1 = rs_mock(RS_K1), *reg = rs_registry(NULL), *gw;
	struct harness_proc *mocks[] = { m1 };
	const char *e[2] = { NULL, NULL };
	struct json_object *root;
	char etag[64], *log;
	int status;

	e[0] = rs_entry(m1->port, RS_K1, NULL);
	snprintf(etag, sizeof(etag), "%s", rs_set_doc(reg, rs_doc(e)));
	gw = rs_gateway(reg, "stale_after_ms = 1000\n", 1);
	rs_wait_etag(gw, etag);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_registry_source_stale"), 0);
	harness_mock_post(reg, "/mock/fault?mode=status&status=503", 200);
	rs_wait_state(gw, "stale", "GET answered 503");
	root = rs_health(gw);
	cr_assert(json_object_get_boolean(json_object_object_get(rs_regobj(root), "stale")));
	cr_assert_geq(harness_json_int(rs_regobj(root), "lastSuccessAgeMs"), 1000);
	cr_assert_eq(rs_count_source(root, "registry"), 1);
	json_object_put(root);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_registry_source_stale"), 1);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_registry_source_up"), 0);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_registry_source_sfus"), 1);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(rs_channel(gw, mocks, 1, &status), 0, "status %d", status);
	cr_assert_eq(rs_wait_log(gw, " stale: "), 1, "%s", harness_all_logs());
	/* More failed fetches: still one line. */
	{
		struct json_object *r0 = rs_health(gw);
		int64_t failed = rs_polls(r0, "failed"), deadline = harness_now_ms() + RS_WAIT_MS;

		json_object_put(r0);
		for (;;) {
			r0 = rs_health(gw);
			if (rs_polls(r0, "failed") >= failed + 2 || harness_now_ms() > deadline)
				break;
			json_object_put(r0);
			poll(NULL, 0, 20);
		}
		json_object_put(r0);
	}
	log = harness_whole_log(gw);
	cr_assert_eq(harness_count(log, " stale: "), 1, "%s", log);
	cr_assert_eq(harness_count(log, " failing: "), 1, "%s", log);
	free(log);
}

/* ---- one poller, whatever the number of workers */

/* Milliseconds between the registry's first and n-th list request from now on. */
static int64_t rs_span_of_requests(const struct harness_proc *reg, int n)
{
	int64_t deadline = harness_now_ms() + 30000, t1 = 0, base;

	harness_mock_post(reg, "/mock/reset-stats", 200);
	base = 0;
	while (harness_now_ms() < deadline) {
		int64_t got = rs_reg_stat(reg, "requests") - base;

		if (got >= 1 && t1 == 0)
			t1 = harness_now_ms();
		if (got >= n)
			return harness_now_ms() - t1;
		poll(NULL, 0, 5);
	}
	cr_assert_fail("the registry got fewer than %d requests in 30 s", n);
	return 0;
}

Test(regsource, workers_make_one_request_per_period, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_proc *m1 = rs_mock(RS_K1), *reg = rs_registry(NULL), *gw;
	const char *e[2] = { NULL, NULL };
	char etag[64];
	struct json_object *root;
	int64_t span;

	e[0] = rs_entry(m1->port, RS_K1, NULL);
	snprintf(etag, sizeof(etag), "%s", rs_set_doc(reg, rs_doc(e)));
	gw = rs_gateway(reg, NULL, 4);
	root = rs_health(gw);
	cr_assert_eq(harness_json_int(root, "workers"), 4);
	json_object_put(root);
	rs_wait_etag(gw, etag);
	/* 8 requests take 7 periods from one poller; four pollers would take 7/4. */
	span = rs_span_of_requests(reg, 8);
	cr_assert_geq(span, 7 * RS_POLL_MS - 100, "8 requests in %lld ms: more than one poller",
		      (long long)span);
}

Test(regsource, cache_control_max_age_is_respected, .fini = harness_cleanup, .timeout = 60)
{
	static const char *const args[] = { "--max-age", "1", NULL };
	struct harness_proc *m1 = rs_mock(RS_K1), *reg = rs_registry(args), *gw;
	const char *e[2] = { NULL, NULL };
	char etag[64];
	int64_t span;

	e[0] = rs_entry(m1->port, RS_K1, NULL);
	snprintf(etag, sizeof(etag), "%s", rs_set_doc(reg, rs_doc(e)));
	gw = rs_gateway(reg, NULL, 2);
	rs_wait_etag(gw, etag);
	/* max-age=1: a second between fetches, though poll_ms says 200 ms. */
	span = rs_span_of_requests(reg, 3);
	cr_assert_geq(span, 2 * 1000 - 100, "3 requests in %lld ms with max-age=1",
		      (long long)span);
	/* max-age=0: the floor (min_poll_ms = 100), never a busy loop. */
	harness_mock_post(reg, "/mock/cache?max_age=0", 200);
	span = rs_span_of_requests(reg, 2);
	span = rs_span_of_requests(reg, 6);
	cr_assert_geq(span, 5 * 100 - 50, "6 requests in %lld ms with max-age=0",
		      (long long)span);
	cr_assert_leq(span, 5 * 1000, "max-age=0 still waits a second: %lld ms", (long long)span);
}

/* ---- a reload that changes the URL, under load */

/* Loader processes' shared counters (MAP_SHARED). */
struct rs_load {
	atomic_int stop;
	_Atomic uint64_t ok, failed;
	_Atomic int last_status;
	pid_t pids[2];
};

static void rs_loader(struct rs_load *l, int port)
{
	int64_t deadline = harness_now_ms() + 60000;
	unsigned long seq = 0;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	while (!atomic_load(&l->stop) && harness_now_ms() < deadline) {
		struct harness_resp *r = calloc(1, sizeof(*r));
		char iss[96], headers[4096];

		if (r == NULL)
			_exit(1);
		snprintf(iss, sizeof(iss), "https://odoo.test/rsload-%d-%lu", (int)getpid(), seq++);
		snprintf(headers, sizeof(headers), "Authorization: jwt %s\r\n",
			 harness_odoo_token(iss, RS_GW_KEY));
		if (harness_get(port, "/v1/channel", headers, r) == 0 && r->status == 200) {
			atomic_fetch_add(&l->ok, 1);
		} else {
			atomic_fetch_add(&l->failed, 1);
			atomic_store(&l->last_status, r->status);
		}
		free(r);
	}
}

static struct rs_load *rs_load_start(int port)
{
	struct rs_load *l = mmap(NULL, sizeof(*l), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(l, MAP_FAILED);
	memset(l, 0, sizeof(*l));
	for (int i = 0; i < 2; i++) {
		pid_t pid = fork();

		cr_assert_geq(pid, 0);
		if (pid == 0) {
			rs_loader(l, port);
			_exit(0);
		}
		l->pids[i] = pid;
	}
	return l;
}

static void rs_load_wait(struct rs_load *l, uint64_t n)
{
	int64_t deadline = harness_now_ms() + RS_WAIT_MS;

	while (atomic_load(&l->ok) < n && harness_now_ms() < deadline)
		poll(NULL, 0, 5);
	cr_assert_geq(atomic_load(&l->ok), n, "the load got %llu answers, %llu failed",
		      (unsigned long long)atomic_load(&l->ok),
		      (unsigned long long)atomic_load(&l->failed));
}

static void rs_load_stop(struct rs_load *l)
{
	atomic_store(&l->stop, 1);
	for (int i = 0; i < 2; i++)
		if (harness_wait_exit(l->pids[i], 10000) < 0) {
			kill(l->pids[i], SIGKILL);
			waitpid(l->pids[i], NULL, 0);
		}
}

/* Sends SIGHUP and waits for the master's "reloaded" line. */
static void rs_reload(const struct harness_proc *gw)
{
	char *log = harness_whole_log(gw);
	int before = harness_count(log, "master: reloaded");
	int64_t deadline = harness_now_ms() + RS_WAIT_MS;

	free(log);
	cr_assert_eq(kill(gw->pid, SIGHUP), 0);
	while (harness_now_ms() < deadline) {
		int now;

		log = harness_whole_log(gw);
		now = harness_count(log, "master: reloaded");
		free(log);
		if (now > before)
			return;
		poll(NULL, 0, 10);
	}
	cr_assert_fail("the gateway did not reload:\n%s", harness_all_logs());
}

Test(regsource, reload_switches_sources_under_load, .fini = harness_cleanup, .timeout = 90)
{
	struct harness_proc *m1 = rs_mock(RS_K1), *m2 = rs_mock(RS_K2), *m3 = rs_mock(RS_KS);
	struct harness_proc *r1 = rs_registry(NULL), *r2 = rs_registry(NULL), *gw;
	const char *e[2] = { NULL, NULL };
	const char *args[6], *path;
	char etag1[64], etag2[64], toml[4096], r2_url[128];
	struct json_object *root;
	struct rs_load *l;
	int64_t r1_requests, m1_requests, deadline;
	uint64_t ok_at_switch;

	e[0] = rs_entry(m1->port, RS_K1, NULL);
	snprintf(etag1, sizeof(etag1), "%s", rs_set_doc(r1, rs_doc(e)));
	/* Twice, so that the two sources' ETags differ. */
	e[0] = rs_entry(m2->port, RS_K2, NULL);
	rs_set_doc(r2, rs_doc(e));
	snprintf(etag2, sizeof(etag2), "%s", rs_set_doc(r2, rs_doc(e)));
	cr_assert_str_neq(etag1, etag2);
	path = harness_write_file("switch.toml", rs_toml(r1->port, NULL));
	args[0] = "--config";
	args[1] = path;
	args[2] = "--workers";
	args[3] = "2";
	args[4] = NULL;
	gw = harness_gateway_up((const char *const[]){ "SFU_GATEWAY_KEY=" RS_GW_KEY, NULL }, args);
	rs_wait_etag(gw, etag1);
	/* The old source answers late and always in full (no ETag), and the URL changes
	 * just after it got a request: its answer comes after the switch, and must not be
	 * applied. The new one answers late too: the old list serves until it does. */
	harness_mock_post(r1, "/mock/etag?on=0", 200);
	harness_mock_post(r1, "/mock/fault?mode=delay&ms=1500", 200);
	harness_mock_post(r2, "/mock/fault?mode=delay&ms=300", 200);

	l = rs_load_start(gw->port);
	rs_load_wait(l, 50);
	harness_write_file("switch.toml", rs_toml(r2->port, NULL));
	r1_requests = rs_reg_stat(r1, "requests");
	deadline = harness_now_ms() + RS_WAIT_MS;
	while (rs_reg_stat(r1, "requests") == r1_requests && harness_now_ms() < deadline)
		poll(NULL, 0, 2);
	rs_reload(gw);
	rs_wait_etag(gw, etag2);
	ok_at_switch = atomic_load(&l->ok);
	root = rs_health(gw);
	snprintf(r2_url, sizeof(r2_url), "http://127.0.0.1:%d/sfu-list", r2->port);
	cr_assert_str_eq(rs_str(rs_regobj(root), "url"), r2_url);
	cr_assert_null(rs_sfu(root, harness_url(m1->port)), "the old source's SFU stayed");
	cr_assert_not_null(rs_sfu(root, harness_url(m2->port)));
	json_object_put(root);
	/* From now on the old source's SFU gets nothing, though its late answer comes. */
	rs_load_wait(l, ok_at_switch + 50);
	m1_requests = harness_mock_int(m1, "/mock/stats", "channel_requests");
	r1_requests = rs_reg_stat(r1, "requests");
	deadline = harness_now_ms() + RS_WAIT_MS;
	while (rs_reg_stat(r1, "delayed_sent") < rs_reg_stat(r1, "faulted") &&
	       harness_now_ms() < deadline)
		poll(NULL, 0, 20);
	cr_assert_eq(rs_reg_stat(r1, "delayed_sent"), rs_reg_stat(r1, "faulted"));
	rs_load_wait(l, atomic_load(&l->ok) + 300);
	rs_load_stop(l);
	cr_assert_eq(harness_mock_int(m1, "/mock/stats", "channel_requests"), m1_requests,
		     "the old source's late answer was applied: its SFU served again");
	root = rs_health(gw);
	cr_assert_null(rs_sfu(root, harness_url(m1->port)));
	cr_assert_not_null(rs_sfu(root, harness_url(m2->port)));
	json_object_put(root);
	cr_assert_eq(atomic_load(&l->failed), 0, "%llu requests failed around the reload "
		     "(last status %d) of %llu",
		     (unsigned long long)atomic_load(&l->failed), atomic_load(&l->last_status),
		     (unsigned long long)atomic_load(&l->ok));
	cr_assert_gt(harness_mock_int(m2, "/mock/stats", "channel_requests"), 0);
	cr_assert_eq(rs_reg_stat(r1, "requests"), r1_requests, "the old registry is still polled");

	/* No URL: the registry's SFUs go; the config's stay. */
	snprintf(toml, sizeof(toml),
		 "[registry]\nurl = \"\"\n[[sfu]]\naddress = \"%s\"\nkey = \"%s\"\n",
		 harness_url(m3->port), RS_KS);
	harness_write_file("switch.toml", toml);
	rs_reload(gw);
	deadline = harness_now_ms() + RS_WAIT_MS;
	for (;;) {
		root = rs_health(gw);
		if (rs_count_source(root, "registry") == 0 || harness_now_ms() > deadline)
			break;
		json_object_put(root);
		poll(NULL, 0, 20);
	}
	cr_assert_eq(rs_count_source(root, "registry"), 0);
	cr_assert_eq(rs_count_source(root, "static"), 1);
	cr_assert_str_eq(rs_str(rs_regobj(root), "state"), "off");
	json_object_put(root);
}

/* ---- precedence between the config, heartbeats and the list */

/* A heartbeat for mock m with these members (its key among them); its status. */
static int rs_heartbeat(const struct harness_proc *gw, const struct harness_proc *m,
			const char *members)
{
	char body[2048];
	struct harness_resp *r;
	int status;

	snprintf(body, sizeof(body), "{\"address\":\"%s\",%s}", harness_url(m->port), members);
	r = harness_heartbeat(gw->port, harness_url(m->port), RS_GW_KEY, body);
	status = r->status;
	free(r);
	return status;
}

Test(regsource, precedence_between_sources, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_proc *st = rs_mock(RS_KS), *hb = rs_mock(RS_K1), *other = rs_mock(RS_K2);
	struct harness_proc *reg = rs_registry(NULL), *gw;
	const char *e[3] = { NULL, NULL, NULL };
	char etag[64], extra[1024], members[512], *log;
	struct json_object *root, *s;
	int64_t deadline;

	snprintf(extra, sizeof(extra),
		 "[registration]\nstale_after_ms = 1000\n[probe]\ninterval_ms = 100000\n"
		 "[[sfu]]\naddress = \"%s\"\nkey = \"%s\"\nregion = \"eu-west\"\n",
		 harness_url(st->port), RS_KS);
	gw = rs_gateway(reg, extra, 1);
	/* A self-registered SFU, before the list names it. */
	snprintf(members, sizeof(members),
		 "\"status\":\"up\",\"key\":\"%s\",\"channels\":1,\"sessions\":3", RS_K2);
	cr_assert_eq(rs_heartbeat(gw, hb, members), 200);
	root = rs_health(gw);
	cr_assert_str_eq(rs_str(rs_sfu(root, harness_url(hb->port)), "source"), "registered");
	json_object_put(root);

	/* The list names the static SFU (another key, another region) and the registered one. */
	e[0] = rs_entry(st->port, RS_K2, ",\"region\":\"us-east\"");
	e[1] = rs_entry(hb->port, RS_K1, ",\"region\":\"ap-south\"");
	snprintf(etag, sizeof(etag), "%s", rs_set_doc(reg, rs_doc(e)));
	rs_wait_etag(gw, etag);
	root = rs_health(gw);
	s = rs_sfu(root, harness_url(st->port));
	cr_assert_str_eq(rs_str(s, "source"), "static", "the config lost its SFU to the list");
	cr_assert_str_eq(rs_str(s, "region"), "eu-west");
	s = rs_sfu(root, harness_url(hb->port));
	cr_assert_str_eq(rs_str(s, "source"), "registry", "the list did not take it over");
	cr_assert_str_eq(rs_str(s, "region"), "ap-south");
	cr_assert_eq(harness_json_int(s, "sessions"), 3, "the takeover lost its load");
	cr_assert_eq(harness_json_int(rs_regobj(root), "ignored"), 1);
	json_object_put(root);
	log = harness_whole_log(gw);
	cr_assert_eq(harness_count(log, "a static SFU: the config's entry wins"), 1, "%s", log);
	free(log);

	/* Its heartbeats may report load with the listed key, never change it or sign off. */
	snprintf(members, sizeof(members),
		 "\"status\":\"up\",\"key\":\"%s\",\"channels\":2,\"sessions\":9", RS_K2);
	cr_assert_eq(rs_heartbeat(gw, hb, members), 409);
	snprintf(members, sizeof(members),
		 "\"status\":\"up\",\"key\":\"%s\",\"channels\":2,\"sessions\":9", RS_K1);
	cr_assert_eq(rs_heartbeat(gw, hb, members), 200);
	cr_assert_eq(rs_heartbeat(gw, hb, "\"status\":\"down\""), 409);
	root = rs_health(gw);
	s = rs_sfu(root, harness_url(hb->port));
	cr_assert_str_eq(rs_str(s, "source"), "registry");
	cr_assert_eq(harness_json_int(s, "sessions"), 9);
	json_object_put(root);

	/* Heartbeats stopping expire a registered SFU, never one the list holds. */
	snprintf(members, sizeof(members),
		 "\"status\":\"up\",\"key\":\"%s\",\"channels\":0,\"sessions\":0", RS_K2);
	cr_assert_eq(rs_heartbeat(gw, other, members), 200);
	deadline = harness_now_ms() + RS_WAIT_MS;
	for (;;) {
		root = rs_health(gw);
		if (rs_sfu(root, harness_url(other->port)) == NULL || harness_now_ms() > deadline)
			break;
		json_object_put(root);
		poll(NULL, 0, 50);
	}
	cr_assert_null(rs_sfu(root, harness_url(other->port)), "the registered SFU did not expire");
	cr_assert_not_null(rs_sfu(root, harness_url(hb->port)), "the list's SFU expired");
	json_object_put(root);

	/* Removed from the list: gone, though it sent heartbeats. */
	e[0] = rs_entry(st->port, RS_K2, NULL);
	e[1] = NULL;
	snprintf(etag, sizeof(etag), "%s", rs_set_doc(reg, rs_doc(e)));
	rs_wait_etag(gw, etag);
	root = rs_health(gw);
	cr_assert_null(rs_sfu(root, harness_url(hb->port)));
	cr_assert_str_eq(rs_str(rs_sfu(root, harness_url(st->port)), "source"), "static");
	json_object_put(root);
}

/* ---- the token: sent, never shown */

Test(regsource, token_is_sent_and_never_shown, .fini = harness_cleanup, .timeout = 60)
{
	static const char *const args[] = { "--token", RS_TOKEN, NULL };
	struct harness_proc *m1 = rs_mock(RS_K1), *reg = rs_registry(args), *gw;
	const char *e[2] = { NULL, NULL };
	struct harness_resp *r = calloc(1, sizeof(*r));
	char etag[64], *log;
	struct json_object *o, *v;

	cr_assert_not_null(r);
	e[0] = rs_entry(m1->port, RS_K1, NULL);
	snprintf(etag, sizeof(etag), "%s", rs_set_doc(reg, rs_doc(e)));
	gw = rs_gateway(reg, "token = \"" RS_TOKEN "\"\n", 2);
	rs_wait_etag(gw, etag);
	o = harness_mock_json(reg, "/mock/stats");
	cr_assert(json_object_object_get_ex(o, "last_authorized", &v) && json_object_get_boolean(v));
	cr_assert_eq(json_object_get_int64(json_object_object_get(o, "unauthorized")), 0);
	json_object_put(o);
	cr_assert_eq(harness_get(gw->port, "/v1/health", NULL, r), 0);
	cr_assert_null(strstr(r->body, RS_TOKEN), "health shows the token");
	cr_assert_eq(harness_get(gw->port, "/metrics", NULL, r), 0);
	cr_assert_null(strstr(r->body, RS_TOKEN), "metrics show the token");
	cr_assert_null(strstr(r->body, "regsource-test-bearer"), "metrics show the token");
	log = harness_whole_log(gw);
	cr_assert_null(strstr(log, "regsource-test-bearer"), "the log shows the token");
	free(log);
	free(r);
}

Test(regsource, wrong_token_fails_and_is_not_shown, .fini = harness_cleanup, .timeout = 60)
{
	static const char *const args[] = { "--token", RS_TOKEN, NULL };
	struct harness_proc *m1 = rs_mock(RS_K1), *reg = rs_registry(args), *gw;
	const char *e[2] = { NULL, NULL };
	char *log;

	e[0] = rs_entry(m1->port, RS_K1, NULL);
	rs_set_doc(reg, rs_doc(e));
	gw = rs_gateway(reg, "token = \"not-the-token\"\n", 1);
	rs_wait_state(gw, "failing", "GET answered 401");
	log = harness_whole_log(gw);
	cr_assert_null(strstr(log, "not-the-token"), "the log shows the token");
	free(log);
}

/* ---- /metrics */

Test(regsource, metrics_are_promtool_clean, .fini = harness_cleanup, .timeout = 60)
{
	struct harness_proc *m1 = rs_mock(RS_K1), *reg = rs_registry(NULL), *gw;
	const char *e[2] = { NULL, NULL };
	struct harness_resp *r = calloc(1, sizeof(*r));
	char etag[64], cmd[1024], path[300];
	FILE *f;
	int st;

	cr_assert_not_null(r);
	e[0] = rs_entry(m1->port, RS_K1, NULL);
	snprintf(etag, sizeof(etag), "%s", rs_set_doc(reg, rs_doc(e)));
	gw = rs_gateway(reg, NULL, 2);
	rs_wait_etag(gw, etag);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_registry_source_configured"), 1);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_registry_source_up"), 1);
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_registry_source_sfus"), 1);
	cr_assert_geq(harness_metric(gw->port,
				     "sfu_gateway_registry_source_polls_total{result=\"ok\"}"), 1);
	cr_assert_geq(harness_metric(gw->port, "sfu_gateway_registry_source_list_age_seconds"), 0);
	harness_mock_post(reg, "/mock/fault?mode=status&status=500", 200);
	rs_wait_state(gw, "failing", "500");
	cr_assert_eq(harness_metric(gw->port, "sfu_gateway_registry_source_up"), 0);
	cr_assert_geq(harness_metric(gw->port,
				     "sfu_gateway_registry_source_polls_total{result=\"failed\"}"),
		      1);
	cr_assert_eq(harness_get(gw->port, "/metrics", NULL, r), 0);
	cr_assert_eq(r->status, 200);
	snprintf(path, sizeof(path), "%s/metrics.txt", harness_tmpdir());
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fwrite(r->body, 1, r->body_len, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < '%s' >'%s.out' 2>&1", path,
		 path);
	st = system(cmd);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char out[4096] = "";
		size_t n = 0;

		snprintf(cmd, sizeof(cmd), "%s.out", path);
		f = fopen(cmd, "r");
		if (f != NULL) {
			n = fread(out, 1, sizeof(out) - 1, f);
			fclose(f);
		}
		out[n] = '\0';
		cr_assert_fail("promtool check metrics failed: %s", out);
	}
	free(r);
}

/* ---- probes: for listed SFUs the list gives no load for */

/* Waits until the SFU at address shows state in health. */
static void rs_wait_sfu_state(const struct harness_proc *gw, const char *address, const char *state)
{
	int64_t deadline = harness_now_ms() + RS_WAIT_MS;
	char last[1024] = "absent";

	while (harness_now_ms() < deadline) {
		struct json_object *root = rs_health(gw), *s = rs_sfu(root, address);
		bool done = s != NULL && rs_str(s, "state") != NULL &&
			    strcmp(rs_str(s, "state"), state) == 0;

		if (s != NULL)
			snprintf(last, sizeof(last), "%s", json_object_to_json_string(s));
		json_object_put(root);
		if (done)
			return;
		poll(NULL, 0, 20);
	}
	cr_assert_fail("%s never reached state %s; last: %s", address, state, last);
}

Test(regsource, listed_sfus_are_probed_when_the_list_gives_no_load, .fini = harness_cleanup,
     .timeout = 60)
{
	struct harness_proc *reg = rs_registry(NULL), *gw;
	char dead1[64], dead2[64], e1[512], e2[512], doc[1200], etag[64];
	struct json_object *root;

	snprintf(dead1, sizeof(dead1), "%s", harness_url(harness_free_port()));
	snprintf(dead2, sizeof(dead2), "%s", harness_url(harness_free_port()));
	snprintf(e1, sizeof(e1), "{\"address\":\"%s\",\"key\":\"%s\"}", dead1, RS_K1);
	snprintf(e2, sizeof(e2),
		 "{\"address\":\"%s\",\"key\":\"%s\",\"channels\":0,\"sessions\":0}", dead2,
		 RS_K1);
	snprintf(doc, sizeof(doc), "{\"sfu\":[%s,%s]}", e1, e2);
	snprintf(etag, sizeof(etag), "%s", rs_set_doc(reg, doc));
	gw = rs_gateway(reg, "[probe]\ninterval_ms = 200\ntimeout_ms = 200\n", 1);
	rs_wait_etag(gw, etag);
	/* Without load in the list: probed, found down. */
	rs_wait_sfu_state(gw, dead1, "down");
	/* With load in the list: the list is its word, no probe. */
	root = rs_health(gw);
	cr_assert_str_eq(rs_str(rs_sfu(root, dead2), "state"), "up");
	json_object_put(root);
	/* The list starts giving dead1's load: the old probe verdict no longer holds. */
	snprintf(e1, sizeof(e1), "{\"address\":\"%s\",\"key\":\"%s\",\"channels\":1,\"sessions\":2}",
		 dead1, RS_K1);
	snprintf(doc, sizeof(doc), "{\"sfu\":[%s,%s]}", e1, e2);
	snprintf(etag, sizeof(etag), "%s", rs_set_doc(reg, doc));
	rs_wait_etag(gw, etag);
	rs_wait_sfu_state(gw, dead1, "up");
}
