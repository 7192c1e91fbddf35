/* GET /v1/health: the gateway's, the external registry's and every SFU's state as JSON, for people and dashboards. */
#include "health.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "circuit.h"
#include "clock.h"
#include "clusterstatus.h"
#include "keycheck.h"
#include "obscache.h"
#include "regstatus.h"
#include "select.h"
#include "strbuf.h"
#include "tlsstate.h"

static const char *health_source(uint8_t source)
{
	switch (source) {
	case SFU_SOURCE_STATIC: return "static";
	case SFU_SOURCE_REGISTRY: return "registry";
	default: return "registered";
	}
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
 * "0.0050000000000000001"), and never a NaN or infinity, which are not JSON. */
static void health_number(struct strbuf *b, double d)
{
	if (!isfinite(d))
		d = 0.0;
	/* "%.6g" is "%g". */
	strbuf_g(b, d);
}

/* The next member's name: ,"name": (the literal is the name). */
#define HEALTH_KEY(b, name) STRBUF_LIT((b), ",\"" name "\":")

/* A member with a string value, escaped. */
#define HEALTH_STR(b, name, value)                         \
	do {                                               \
		STRBUF_LIT((b), ",\"" name "\":\"");      \
		strbuf_json((b), (value));                 \
		STRBUF_LIT((b), "\"");                     \
	} while (0)

/* A member with an integer value. */
#define HEALTH_INT(b, name, value)             \
	do {                                   \
		HEALTH_KEY((b), name);         \
		strbuf_i64((b), (int64_t)(value)); \
	} while (0)

/*
 * One SFU's object. Written straight into the answer, as JSON would print it
 * (one allocation-free pass; building a json-c tree of twenty objects per SFU
 * cost milliseconds per request with a thousand SFUs).
 */
static void health_add_sfu(struct strbuf *b, bool first, const struct registry_slot *sl,
			   const struct sfu_record *rec, const struct config_tunables *t,
			   int64_t now_ms, bool *usable)
{
	enum select_verdict v = select_usable(sl, &rec->hot, t, now_ms);
	enum circuit_state cs = circuit_effective_state(&sl->cb, now_ms);
	uint64_t assigned = atomic_load_explicit(&sl->assigned, memory_order_relaxed);
	uint32_t cap = select_capacity(t, &rec->hot);

	if (v == SELECT_USABLE)
		*usable = true;
	if (first)
		STRBUF_LIT(b, "{\"address\":\"");
	else
		STRBUF_LIT(b, ",{\"address\":\"");
	strbuf_json(b, rec->cold.address);
	STRBUF_LIT(b, "\"");
	HEALTH_STR(b, "region", rec->cold.region);
	HEALTH_STR(b, "source", health_source(rec->hot.source));
	HEALTH_STR(b, "state", health_state(sl, v, cs));
	HEALTH_INT(b, "channels", rec->hot.channels);
	HEALTH_INT(b, "sessions", rec->hot.sessions);
	HEALTH_KEY(b, "cpuUsage");
	health_number(b, rec->hot.cpu);
	HEALTH_KEY(b, "memoryUsage");
	health_number(b, rec->hot.memory);
	/* null: nobody stated a capacity, so sessions never make it overloaded. */
	HEALTH_KEY(b, "maxSessions");
	if (cap)
		strbuf_u64(b, cap);
	else
		STRBUF_LIT(b, "null");
	HEALTH_INT(b, "assigned", assigned);
	HEALTH_KEY(b, "score");
	health_number(b, select_score(t, &rec->hot, assigned));
	HEALTH_KEY(b, "reportedBy");
	switch (rec->hot.reported_by) {
	case SFU_REPORTER_HEARTBEAT: STRBUF_LIT(b, "\"heartbeat\""); break;
	case SFU_REPORTER_CLUSTER: STRBUF_LIT(b, "\"cluster\""); break;
	case SFU_REPORTER_PROBE: STRBUF_LIT(b, "\"probe\""); break;
	case SFU_REPORTER_REGISTRY: STRBUF_LIT(b, "\"registry\""); break;
	default: STRBUF_LIT(b, "null"); break;
	}
	HEALTH_KEY(b, "lastHeartbeatAgeMs");
	if (rec->hot.has_load || rec->hot.source == SFU_SOURCE_REGISTERED)
		strbuf_i64(b, now_ms - rec->hot.last_report_ms);
	else
		STRBUF_LIT(b, "null");
	STRBUF_LIT(b, ",\"circuit\":{\"state\":\"");
	strbuf_puts(b, circuit_state_name(cs));
	STRBUF_LIT(b, "\"");
	HEALTH_INT(b, "failures", circuit_failures(&sl->cb));
	STRBUF_LIT(b, "}");
	HEALTH_STR(b, "keyCheck",
		   keycheck_name(atomic_load_explicit(&sl->key_check, memory_order_relaxed)));
	/* https SFUs: whether the certificate is checked, and why the last
	 * handshake failed (null when it did not). */
	if (strncmp(rec->cold.address, "https://", 8) == 0) {
		const char *why = tlsstate_failure(sl);

		STRBUF_LIT(b, ",\"tls\":{\"verify\":");
		if (tlsstate_verified(&rec->cold))
			STRBUF_LIT(b, "true");
		else
			STRBUF_LIT(b, "false");
		if (why != NULL)
			HEALTH_STR(b, "error", why);
		else
			STRBUF_LIT(b, ",\"error\":null");
		STRBUF_LIT(b, "}");
	}
	STRBUF_LIT(b, ",\"requests\":{\"ok\":");
	strbuf_i64(b, (int64_t)atomic_load(&sl->requests_ok));
	HEALTH_INT(b, "failed", atomic_load(&sl->requests_failed));
	STRBUF_LIT(b, "}}");
}

/* A member whose value is the time since a CLOCK_MONOTONIC instant, null for never. */
static void health_age(struct strbuf *b, const char *member, int64_t since_ms, int64_t now_ms)
{
	STRBUF_LIT(b, ",\"");
	strbuf_puts(b, member);
	STRBUF_LIT(b, "\":");
	if (since_ms != 0)
		strbuf_i64(b, now_ms - since_ms);
	else
		STRBUF_LIT(b, "null");
}

/* A member with a string value, null when empty. */
static void health_str_or_null(struct strbuf *b, const char *member, const char *value)
{
	STRBUF_LIT(b, ",\"");
	strbuf_puts(b, member);
	STRBUF_LIT(b, "\":");
	if (value[0] == '\0') {
		STRBUF_LIT(b, "null");
		return;
	}
	STRBUF_LIT(b, "\"");
	strbuf_json(b, value);
	STRBUF_LIT(b, "\"");
}

/* The external registry source: where it is, how it answers, its list. The
 * token is never part of it, and the URL is shown without its query. */
static void health_registry(struct strbuf *b, const struct regstatus *rs,
			    const struct config_tunables *t, int64_t now_ms)
{
	struct regstatus_data d;
	enum regstatus_state st;

	if (regstatus_read(rs, &d) != 0) {
		STRBUF_LIT(b, ",\"registry\":{\"state\":\"unknown\"}");
		return;
	}
	st = regstatus_state(&d, now_ms, t->registry_stale_after_ms);
	STRBUF_LIT(b, ",\"registry\":{\"state\":\"");
	strbuf_puts(b, regstatus_state_name(st));
	STRBUF_LIT(b, "\"");
	if (st == REGSTATUS_OFF) {
		STRBUF_LIT(b, "}");
		return;
	}
	HEALTH_STR(b, "url", d.url);
	if (st == REGSTATUS_STALE)
		STRBUF_LIT(b, ",\"stale\":true");
	else
		STRBUF_LIT(b, ",\"stale\":false");
	HEALTH_INT(b, "sfus", d.sfus);
	HEALTH_INT(b, "ignored", d.ignored);
	health_str_or_null(b, "etag", d.etag);
	health_age(b, "listAgeMs", d.list_ms, now_ms);
	health_age(b, "lastSuccessAgeMs", d.last_success_ms, now_ms);
	health_str_or_null(b, "lastError", d.last_error);
	health_age(b, "lastErrorAgeMs", d.last_error_ms, now_ms);
	STRBUF_LIT(b, ",\"polls\":{\"ok\":");
	strbuf_u64(b, atomic_load(&rs->polls[REGSTATUS_POLL_OK]));
	HEALTH_INT(b, "notModified", atomic_load(&rs->polls[REGSTATUS_POLL_NOT_MODIFIED]));
	HEALTH_INT(b, "failed", atomic_load(&rs->polls[REGSTATUS_POLL_FAILED]));
	STRBUF_LIT(b, "}}");
}

/* The cluster: the etcd connection's state, where, and what flowed. */
static void health_cluster(struct strbuf *b, const struct shm_layout *shm, int64_t now_ms,
			   enum cluster_state *state)
{
	const struct clusterstatus *cs = &shm->clusterstatus;
	struct clusterstatus_data d;

	*state = CLUSTER_OFF;
	if (clusterstatus_read(cs, &d) != 0) {
		STRBUF_LIT(b, ",\"cluster\":{\"state\":\"unknown\"}");
		return;
	}
	*state = (enum cluster_state)d.state;
	STRBUF_LIT(b, ",\"cluster\":{\"state\":\"");
	strbuf_puts(b, clusterstatus_state_name((enum cluster_state)d.state));
	STRBUF_LIT(b, "\"");
	if (d.state == CLUSTER_OFF) {
		STRBUF_LIT(b, "}");
		return;
	}
	HEALTH_STR(b, "endpoint", d.endpoint_url);
	HEALTH_INT(b, "revision", d.revision);
	health_age(b, "sinceMs", d.since_ms, now_ms);
	health_age(b, "lastOkAgeMs", d.last_ok_ms, now_ms);
	health_str_or_null(b, "lastError", d.last_error);
	STRBUF_LIT(b, ",\"writes\":{\"put\":");
	strbuf_u64(b, atomic_load(&cs->counters[CLUSTER_C_PUTS]));
	HEALTH_INT(b, "delete", atomic_load(&cs->counters[CLUSTER_C_DELETES]));
	HEALTH_INT(b, "dropped", atomic_load(&cs->counters[CLUSTER_C_STALE_DROPPED]) +
					 atomic_load(&shm->clusterq.dropped));
	STRBUF_LIT(b, "},\"events\":");
	strbuf_u64(b, atomic_load(&cs->counters[CLUSTER_C_EVENTS]));
	HEALTH_INT(b, "removed", atomic_load(&cs->counters[CLUSTER_C_REMOVED]));
	STRBUF_LIT(b, "}");
}

/* Views of the set tried before health shows what it read anyway (a batch
 * writer that died leaves the batch open until the master repairs it). */
#define HEALTH_VIEW_TRIES 4

/* The SFU array of a rendering, before the head that needs its verdict (kept between
 * renderings, like the answer itself). */
static struct strbuf health_sfus;
/* The cluster's object, rendered before the head that shows its state. */
static struct strbuf health_head;

/* Renders the answer into b; returns its status (200 while an SFU is usable,
 * else 503), or -ENOMEM. */
static int health_render(struct handler_ctx *x, struct strbuf *b)
{
	struct registry *r = &x->shm->registry;
	int64_t now_ms = clock_ms();
	enum cluster_state cstate;
	bool usable = false;

	/* Every SFU from one view of the set: a list being applied meanwhile
	 * shows either whole or not at all. */
	for (int tries = 0; tries < HEALTH_VIEW_TRIES; tries++) {
		uint64_t batch = 0;
		bool viewed = registry_view_begin(r, &batch) == 0, first = true;
		uint32_t end = registry_scan_end(r);

		strbuf_reset(&health_sfus);
		usable = false;
		for (uint32_t i = 0; i < end; i++) {
			struct sfu_record rec;

			if (registry_read(r, i, &rec) == 0 && rec.hot.in_use) {
				health_add_sfu(&health_sfus, first, &r->slots[i], &rec, x->live,
					       now_ms, &usable);
				first = false;
			}
		}
		if (viewed && registry_view_valid(r, batch))
			break;
	}
	/* The cluster's part is rendered aside first: its state shows in the
	 * top-level status ("degraded": serving, but from a view etcd no longer
	 * refreshes). */
	strbuf_reset(&health_head);
	health_cluster(&health_head, x->shm, now_ms, &cstate);
	if (!usable)
		STRBUF_LIT(b, "{\"status\":\"unavailable\"");
	else if (cstate == CLUSTER_DEGRADED)
		STRBUF_LIT(b, "{\"status\":\"degraded\"");
	else
		STRBUF_LIT(b, "{\"status\":\"ok\"");
	HEALTH_STR(b, "version", SFU_VERSION);
	HEALTH_INT(b, "uptimeMs", clock_wall_ms() - x->shm->started_ms);
	HEALTH_INT(b, "workers", atomic_load(&x->shm->n_workers));
	health_registry(b, &x->shm->regstatus, x->live, now_ms);
	strbuf_put(b, health_head.buf != NULL ? health_head.buf : "", health_head.len);
	STRBUF_LIT(b, ",\"sfus\":[");
	strbuf_put(b, health_sfus.buf != NULL ? health_sfus.buf : "", health_sfus.len);
	STRBUF_LIT(b, "]}");
	if (b->failed || health_sfus.failed || health_head.failed) {
		strbuf_free(&health_sfus);
		strbuf_free(&health_head);
		return -ENOMEM;
	}
	return usable ? 200 : 503;
}

/* This worker's last rendering and its render budget (obscache.h). */
static struct obscache health_cache;

void health_handle(struct handler_ctx *x, struct http_conn *c, const struct http_request *req)
{
	struct obscache *oc = &health_cache;
	int64_t start = clock_us();

	(void)req;
	if (obscache_must_render(oc, start, x->live->obs_max_age_ms)) {
		struct strbuf *text = obscache_begin(oc);
		int status = text != NULL ? health_render(x, text) : -ENOMEM;

		if (status < 0) {
			obscache_abort(oc);
			http_respond_error(c, 503, "out of memory", NULL);
			return;
		}
		obscache_commit(oc, status, start, clock_us());
	}
	obscache_send(oc, c, "application/json");
}
