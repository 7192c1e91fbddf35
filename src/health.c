/* GET /v1/health: the gateway's and every SFU's state as JSON, for people and dashboards. */
#include "health.h"

#include <json.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "circuit.h"
#include "log.h"
#include "select.h"

static const char *health_source(uint8_t source)
{
	return source == SFU_SOURCE_STATIC ? "static" : "registered";
}

/* The one word an operator reads first: why this SFU is (not) taking channels. */
static const char *health_state(const struct registry_slot *sl, enum select_verdict v)
{
	uint32_t cb = atomic_load_explicit(&sl->cb_state, memory_order_relaxed);

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

static void health_add_sfu(struct json_object *arr, const struct registry_slot *sl,
			   const struct sfu_record *rec, const struct config_tunables *t,
			   int64_t now_ms, bool *usable)
{
	struct json_object *o = json_object_new_object(), *cb, *req;
	enum select_verdict v = select_usable(sl, &rec->hot, t, now_ms);
	uint64_t assigned = atomic_load_explicit(&sl->assigned, memory_order_relaxed);
	uint32_t max = rec->hot.max_sessions ? rec->hot.max_sessions : t->max_sessions;

	if (v == SELECT_USABLE)
		*usable = true;
	json_object_object_add(o, "address", json_object_new_string(rec->cold.address));
	json_object_object_add(o, "region", json_object_new_string(rec->cold.region));
	json_object_object_add(o, "source", json_object_new_string(health_source(rec->hot.source)));
	json_object_object_add(o, "state", json_object_new_string(health_state(sl, v)));
	json_object_object_add(o, "channels", json_object_new_int64(rec->hot.channels));
	json_object_object_add(o, "sessions", json_object_new_int64(rec->hot.sessions));
	json_object_object_add(o, "cpuUsage", json_object_new_double(rec->hot.cpu));
	json_object_object_add(o, "memoryUsage", json_object_new_double(rec->hot.memory));
	json_object_object_add(o, "maxSessions", json_object_new_int64(max));
	json_object_object_add(o, "assigned", json_object_new_int64((int64_t)assigned));
	json_object_object_add(o, "score", json_object_new_double(select_score(t, &rec->hot, assigned)));
	json_object_object_add(o, "lastHeartbeatAgeMs",
			       rec->hot.has_load || rec->hot.source == SFU_SOURCE_REGISTERED
				       ? json_object_new_int64(now_ms - rec->hot.last_report_ms)
				       : NULL);
	cb = json_object_new_object();
	json_object_object_add(cb, "state", json_object_new_string(circuit_state_name(
						    atomic_load(&sl->cb_state))));
	json_object_object_add(cb, "failures", json_object_new_int64(atomic_load(&sl->cb_failures)));
	json_object_object_add(o, "circuit", cb);
	req = json_object_new_object();
	json_object_object_add(req, "ok", json_object_new_int64((int64_t)atomic_load(&sl->requests_ok)));
	json_object_object_add(req, "failed",
			       json_object_new_int64((int64_t)atomic_load(&sl->requests_failed)));
	json_object_object_add(o, "requests", req);
	json_object_array_add(arr, o);
}

void health_handle(struct worker *w, struct http_conn *c)
{
	struct registry *r = &w->shm->registry;
	struct json_object *root = json_object_new_object(), *arr = json_object_new_array();
	uint32_t end = registry_scan_end(r);
	int64_t now_ms = worker_now_ms();
	struct timespec ts;
	bool usable = false;
	const char *text;
	size_t len;

	worker_refresh_config(w);
	for (uint32_t i = 0; i < end; i++) {
		struct sfu_record rec;

		if (registry_read(r, i, &rec) == 0 && rec.hot.in_use)
			health_add_sfu(arr, &r->slots[i], &rec, &w->live, now_ms, &usable);
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	json_object_object_add(root, "status", json_object_new_string(usable ? "ok" : "unavailable"));
	json_object_object_add(root, "version", json_object_new_string(SFU_VERSION));
	json_object_object_add(root, "uptimeMs",
			       json_object_new_int64((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 -
						     w->shm->started_ms));
	json_object_object_add(root, "workers",
			       json_object_new_int64(atomic_load(&w->shm->n_workers)));
	json_object_object_add(root, "sfus", arr);
	text = json_object_to_json_string_length(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	http_respond_json(c, usable ? 200 : 503, text, len);
	json_object_put(root);
}
