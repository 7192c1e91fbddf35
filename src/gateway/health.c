/* GET /v1/health: the gateway's and every SFU's state as JSON, for people and dashboards. */
#include "health.h"

#include <json.h>
#include <math.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "circuit.h"
#include "clock.h"
#include "keycheck.h"
#include "log.h"
#include "select.h"

static const char *health_source(uint8_t source)
{
	return source == SFU_SOURCE_STATIC ? "static" : "registered";
}

/* The one word an operator reads first: why this SFU is (not) taking channels. */
static const char *health_state(const struct registry_slot *sl, enum select_verdict v,
				enum circuit_state cb)
{
	if (cb == CIRCUIT_HALF_OPEN)
		return "half-open";
	if (cb == CIRCUIT_OPEN)
		return "open";
	if (atomic_load_explicit(&sl->probe_down, memory_order_relaxed))
		return "down";
	switch (v) {
	case SELECT_UNHEALTHY: return "stale";
	case SELECT_OVERLOADED: return "overloaded";
	default: return "up";
	}
}

/* A number as people write it: six significant digits ("0.005", not
 * json-c's "0.0050000000000000001"), and never a NaN or infinity, which are
 * not JSON. */
static struct json_object *health_number(double d)
{
	char buf[32];

	if (!isfinite(d))
		d = 0.0;
	snprintf(buf, sizeof(buf), "%.6g", d);
	return json_object_new_double_s(d, buf);
}

static void health_add_sfu(struct json_object *arr, const struct registry_slot *sl,
			   const struct sfu_record *rec, const struct config_tunables *t,
			   int64_t now_ms, bool *usable)
{
	struct json_object *o = json_object_new_object(), *cb, *req;
	enum select_verdict v = select_usable(sl, &rec->hot, t, now_ms);
	enum circuit_state cs = circuit_effective_state(&sl->cb, now_ms);
	uint64_t assigned = atomic_load_explicit(&sl->assigned, memory_order_relaxed);
	uint32_t cap = select_capacity(t, &rec->hot);

	if (v == SELECT_USABLE)
		*usable = true;
	json_object_object_add(o, "address", json_object_new_string(rec->cold.address));
	json_object_object_add(o, "region", json_object_new_string(rec->cold.region));
	json_object_object_add(o, "source", json_object_new_string(health_source(rec->hot.source)));
	json_object_object_add(o, "state", json_object_new_string(health_state(sl, v, cs)));
	json_object_object_add(o, "channels", json_object_new_int64(rec->hot.channels));
	json_object_object_add(o, "sessions", json_object_new_int64(rec->hot.sessions));
	json_object_object_add(o, "cpuUsage", health_number(rec->hot.cpu));
	json_object_object_add(o, "memoryUsage", health_number(rec->hot.memory));
	/* null: nobody stated a capacity, so sessions never make it overloaded. */
	json_object_object_add(o, "maxSessions", cap ? json_object_new_int64(cap) : NULL);
	json_object_object_add(o, "assigned", json_object_new_int64((int64_t)assigned));
	json_object_object_add(o, "score", health_number(select_score(t, &rec->hot, assigned)));
	json_object_object_add(o, "lastHeartbeatAgeMs",
			       rec->hot.has_load || rec->hot.source == SFU_SOURCE_REGISTERED
				       ? json_object_new_int64(now_ms - rec->hot.last_report_ms)
				       : NULL);
	cb = json_object_new_object();
	json_object_object_add(cb, "state", json_object_new_string(circuit_state_name(cs)));
	json_object_object_add(cb, "failures", json_object_new_int64(circuit_failures(&sl->cb)));
	json_object_object_add(o, "circuit", cb);
	json_object_object_add(o, "keyCheck",
			       json_object_new_string(keycheck_name(atomic_load_explicit(
				       &sl->key_check, memory_order_relaxed))));
	req = json_object_new_object();
	json_object_object_add(req, "ok", json_object_new_int64((int64_t)atomic_load(&sl->requests_ok)));
	json_object_object_add(req, "failed",
			       json_object_new_int64((int64_t)atomic_load(&sl->requests_failed)));
	json_object_object_add(o, "requests", req);
	json_object_array_add(arr, o);
}

void health_handle(struct handler_ctx *x, struct http_conn *c, const struct http_request *req)
{
	struct registry *r = &x->shm->registry;
	struct json_object *root = json_object_new_object(), *arr = json_object_new_array();
	uint32_t end = registry_scan_end(r);
	int64_t now_ms = clock_ms();
	bool usable = false;
	const char *text;
	size_t len;

	(void)req;
	for (uint32_t i = 0; i < end; i++) {
		struct sfu_record rec;

		if (registry_read(r, i, &rec) == 0 && rec.hot.in_use)
			health_add_sfu(arr, &r->slots[i], &rec, x->live, now_ms, &usable);
	}
	json_object_object_add(root, "status", json_object_new_string(usable ? "ok" : "unavailable"));
	json_object_object_add(root, "version", json_object_new_string(SFU_VERSION));
	json_object_object_add(root, "uptimeMs",
			       json_object_new_int64(clock_wall_ms() - x->shm->started_ms));
	json_object_object_add(root, "workers",
			       json_object_new_int64(atomic_load(&x->shm->n_workers)));
	json_object_object_add(root, "sfus", arr);
	text = json_object_to_json_string_length(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	http_respond_json(c, usable ? 200 : 503, text, len);
	json_object_put(root);
}
