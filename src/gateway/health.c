/* GET /v1/health: the gateway's and every SFU's state as JSON, for people and dashboards. */
#include "health.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "circuit.h"
#include "clock.h"
#include "keycheck.h"
#include "obscache.h"
#include "select.h"
#include "strbuf.h"

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
 * "0.0050000000000000001"), and never a NaN or infinity, which are not JSON. */
static void health_number(struct strbuf *b, double d)
{
	if (!isfinite(d))
		d = 0.0;
	strbuf_printf(b, "%.6g", d);
}

/* One member "name": whose value the caller appends; first is the object's first member. */
static void health_key(struct strbuf *b, const char *name, bool first)
{
	strbuf_put(b, first ? "\"" : ",\"", first ? 1 : 2);
	strbuf_puts(b, name);
	strbuf_put(b, "\":", 2);
}

static void health_str(struct strbuf *b, const char *name, const char *value)
{
	health_key(b, name, false);
	strbuf_put(b, "\"", 1);
	strbuf_json(b, value);
	strbuf_put(b, "\"", 1);
}

static void health_int(struct strbuf *b, const char *name, int64_t v)
{
	health_key(b, name, false);
	strbuf_i64(b, v);
}

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
	strbuf_put(b, first ? "{\"address\":\"" : ",{\"address\":\"", first ? 12 : 13);
	strbuf_json(b, rec->cold.address);
	strbuf_put(b, "\"", 1);
	health_str(b, "region", rec->cold.region);
	health_str(b, "source", health_source(rec->hot.source));
	health_str(b, "state", health_state(sl, v, cs));
	health_int(b, "channels", rec->hot.channels);
	health_int(b, "sessions", rec->hot.sessions);
	health_key(b, "cpuUsage", false);
	health_number(b, rec->hot.cpu);
	health_key(b, "memoryUsage", false);
	health_number(b, rec->hot.memory);
	/* null: nobody stated a capacity, so sessions never make it overloaded. */
	health_key(b, "maxSessions", false);
	if (cap)
		strbuf_u64(b, cap);
	else
		strbuf_puts(b, "null");
	health_int(b, "assigned", (int64_t)assigned);
	health_key(b, "score", false);
	health_number(b, select_score(t, &rec->hot, assigned));
	health_key(b, "lastHeartbeatAgeMs", false);
	if (rec->hot.has_load || rec->hot.source == SFU_SOURCE_REGISTERED)
		strbuf_i64(b, now_ms - rec->hot.last_report_ms);
	else
		strbuf_puts(b, "null");
	health_key(b, "circuit", false);
	strbuf_put(b, "{", 1);
	health_key(b, "state", true);
	strbuf_put(b, "\"", 1);
	strbuf_puts(b, circuit_state_name(cs));
	strbuf_put(b, "\"", 1);
	health_int(b, "failures", circuit_failures(&sl->cb));
	strbuf_put(b, "}", 1);
	health_str(b, "keyCheck",
		   keycheck_name(atomic_load_explicit(&sl->key_check, memory_order_relaxed)));
	health_key(b, "requests", false);
	strbuf_put(b, "{", 1);
	health_key(b, "ok", true);
	strbuf_i64(b, (int64_t)atomic_load(&sl->requests_ok));
	health_int(b, "failed", (int64_t)atomic_load(&sl->requests_failed));
	strbuf_put(b, "}}", 2);
}

/* The SFU array of a rendering, before the head that needs its verdict (kept between
 * renderings, like the answer itself). */
static struct strbuf health_sfus;

/* Renders the answer into b; returns its status (200 while an SFU is usable,
 * else 503), or -ENOMEM. */
static int health_render(struct handler_ctx *x, struct strbuf *b)
{
	struct registry *r = &x->shm->registry;
	uint32_t end = registry_scan_end(r);
	int64_t now_ms = clock_ms();
	bool usable = false, first = true;

	strbuf_reset(&health_sfus);
	for (uint32_t i = 0; i < end; i++) {
		struct sfu_record rec;

		if (registry_read(r, i, &rec) == 0 && rec.hot.in_use) {
			health_add_sfu(&health_sfus, first, &r->slots[i], &rec, x->live, now_ms,
				       &usable);
			first = false;
		}
	}
	strbuf_puts(b, usable ? "{\"status\":\"ok\"" : "{\"status\":\"unavailable\"");
	health_str(b, "version", SFU_VERSION);
	health_int(b, "uptimeMs", clock_wall_ms() - x->shm->started_ms);
	health_int(b, "workers", atomic_load(&x->shm->n_workers));
	health_key(b, "sfus", false);
	strbuf_put(b, "[", 1);
	strbuf_put(b, health_sfus.buf != NULL ? health_sfus.buf : "", health_sfus.len);
	strbuf_put(b, "]}", 2);
	if (b->failed || health_sfus.failed) {
		strbuf_free(&health_sfus);
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
