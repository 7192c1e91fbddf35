/* Active probes: the reaper checks SFUs nobody reports for (GET /v1/noop, then /v1/stats). */
#include "probe.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "http_client.h"
#include "log.h"
#include "stats.h"
#include "tlsstate.h"

/*
 * One probe per SFU at a time: noop first (is it alive?), then stats (how
 * loaded?). A probe fails when either step does and passes when both do.
 * With hysteresis, as HAProxy's fall and rise: [probe] fall failures in a row
 * mark the SFU down for selection, [probe] rise passes in a row bring it back,
 * so that one lost probe (a packet, a GC pause of the SFU) does not take a
 * healthy SFU out, and one lucky probe does not put a flapping one back.
 * A probe never closes an open circuit breaker: only a real
 * channel request proves the SFU can create channels (Envoy users found
 * health checks un-ejecting hosts that still failed real traffic).
 */
struct probe_state {
	uint64_t generation; /* of the slot when last probed */
	int64_t next_ms; /* when the next probe of this slot is due */
	bool in_flight;
	/* Probes in a row that failed / passed; one resets the other. Local to
	 * the reaper (the only prober): a respawned reaper counts afresh from the
	 * verdict that shared memory kept (probe_down). */
	uint32_t fails, passes;
};

struct prober {
	struct registry *r;
	struct metrics_proc *m;
	struct http_client *client;
	struct config_tunables t;
	struct probe_state *st; /* one per registry slot */
};

struct probe_op {
	struct prober *p;
	uint32_t slot;
	uint64_t generation;
	char address[CONFIG_ADDRESS_MAX];
	bool insecure; /* [[sfu]] tls_verify = false */
	bool stats; /* second step */
	/* /v1/stats is read as it arrives: a busy SFU's answer is hundreds of
	 * kilobytes (one object per channel, channels live up to an hour). */
	struct stats_parser parser;
};

static void probe_send(struct probe_op *op);

/*
 * Counts one probe's result and changes the SFU's verdict when the run of
 * results reaches fall (down) or rise (up); why names the failed step and its
 * cause. The log says down or up once per change, with the cause of the last
 * failure.
 */
static void probe_mark(struct probe_op *op, bool passed, const char *why)
{
	struct prober *p = op->p;
	struct registry_slot *sl = &p->r->slots[op->slot];
	struct probe_state *ps = &p->st[op->slot];
	uint32_t fall = p->t.probe_fall ? p->t.probe_fall : 1;
	uint32_t rise = p->t.probe_rise ? p->t.probe_rise : 1;
	struct sfu_hot h;
	bool down;

	/* The slot was freed or given to another SFU while this probe ran: the
	 * result is not the new occupant's. */
	if (registry_read_hot(p->r, op->slot, &h) != 0 || h.generation != op->generation) {
		metrics_add(p->m, passed ? M_PROBES_OK : M_PROBES_FAILED, 1);
		return;
	}
	down = atomic_load(&sl->probe_down) != 0;
	if (passed) {
		ps->fails = 0;
		if (ps->passes < UINT32_MAX)
			ps->passes++;
	} else {
		ps->passes = 0;
		if (ps->fails < UINT32_MAX)
			ps->fails++;
	}
	if (!down && !passed && ps->fails >= fall) {
		atomic_store(&sl->probe_down, 1);
		atomic_fetch_add_explicit(&p->r->health_epoch, 1, memory_order_release);
		log_warn("probe: sfu=%s is down after %u failed probes in a row: %s", op->address,
			 ps->fails, why);
	} else if (down && passed && ps->passes >= rise) {
		atomic_store(&sl->probe_down, 0);
		atomic_fetch_add_explicit(&p->r->health_epoch, 1, memory_order_release);
		log_info("probe: sfu=%s is back up after %u passed probes in a row", op->address,
			 ps->passes);
	} else if (!passed) {
		log_debug("probe: sfu=%s failed (%u in a row, %s): %s", op->address, ps->fails,
			  down ? "down" : "still up", why);
	}
	/* Counted once the verdict is in: whoever sees the count sees its effect. */
	metrics_add(p->m, passed ? M_PROBES_OK : M_PROBES_FAILED, 1);
}

/* Why a probe step failed, for the log line. */
static const char *probe_why(const struct probe_op *op, const struct http_client_result *res,
			     char *buf, size_t len)
{
	const char *step = op->stats ? "GET /v1/stats" : "GET /v1/noop";

	if (res->error == UV_EPROTO && op->stats && op->parser.error != 0)
		snprintf(buf, len, "%s: the answer is not a stats array", step);
	else if (res->error != 0)
		snprintf(buf, len, "%s: %s", step, http_client_strerror(res));
	else
		snprintf(buf, len, "%s answered %d", step, res->status);
	return buf;
}

static int probe_stats_body(void *ctx, const char *at, size_t len)
{
	struct probe_op *op = ctx;

	return stats_feed(&op->parser, at, len);
}

static void probe_finish(struct probe_op *op)
{
	op->p->st[op->slot].in_flight = false;
	free(op);
}

static void probe_on_response(const struct http_client_result *res, void *ctx)
{
	struct probe_op *op = ctx;
	struct prober *p = op->p;
	bool ok = res->error == 0 && res->status == 200;
	struct sfu_hot load;
	char why[224];

	if (res->tls_handshake)
		tlsstate_record(p->r, op->slot, op->generation, op->address, res);
	if (!ok) {
		probe_mark(op, false, probe_why(op, res, why, sizeof(why)));
		probe_finish(op);
		return;
	}
	if (!op->stats) {
		op->stats = true;
		probe_send(op);
		return;
	}
	/* A probe passes only when both steps do: an SFU whose load cannot be
	 * read would otherwise be scored on figures that stopped changing. */
	memset(&load, 0, sizeof(load));
	if (stats_finish(&op->parser, &load.channels, &load.sessions) != 0) {
		probe_mark(op, false, "GET /v1/stats: the answer is not a stats array");
		probe_finish(op);
		return;
	}
	load.has_load = 1;
	load.reported_by = SFU_REPORTER_PROBE;
	load.last_report_ms = clock_ms();
	registry_update_load(p->r, op->slot, op->generation, &load, true, 0);
	probe_mark(op, true, NULL);
	probe_finish(op);
}

static void probe_send(struct probe_op *op)
{
	struct prober *p = op->p;
	struct http_client_req req;
	const char *target = op->stats ? "/v1/stats" : "/v1/noop";

	memset(&req, 0, sizeof(req));
	req.method = "GET";
	req.target = target;
	req.target_len = strlen(target);
	if (op->stats) {
		stats_init(&op->parser);
		req.on_body = probe_stats_body;
	}
	req.timeout_ms = p->t.probe_timeout_ms;
	req.tls_insecure = op->insecure;
	req.connect_timeout_ms = p->t.connect_timeout_ms < p->t.probe_timeout_ms
					 ? p->t.connect_timeout_ms
					 : p->t.probe_timeout_ms;
	if (http_client_request(p->client, op->address, &req, probe_on_response, op) != 0) {
		probe_mark(op, false, "the address cannot be used");
		probe_finish(op);
	}
}

/*
 * Who is probed: SFUs the gateway keeps whatever they say, and whose load
 * nobody else reports. Static SFUs, and SFUs of the external registry whose
 * list gives no load, unless their own heartbeats are fresh (the SFU's word
 * on its health). Registered SFUs are never probed: their heartbeats
 * stopping expires them.
 */
static bool prober_wanted(const struct sfu_hot *h, const struct config_tunables *t, int64_t now_ms)
{
	if (SFU_REPORTER_IS_HEARTBEAT(h->reported_by) &&
	    now_ms - h->last_report_ms <= (int64_t)t->stale_after_ms)
		return false;
	switch (h->source) {
	case SFU_SOURCE_STATIC:
		return true;
	case SFU_SOURCE_REGISTRY:
		return h->reported_by != SFU_REPORTER_REGISTRY;
	default:
		return false;
	}
}

void prober_tick(struct prober *p, const struct config_tunables *t, int64_t now_ms)
{
	uint32_t end = registry_scan_end(p->r);

	p->t = *t;
	tlsstate_apply(p->client, t, "probe");
	if (t->probe_interval_ms == 0)
		return;
	for (uint32_t i = 0; i < end && i < p->r->capacity; i++) {
		struct probe_state *ps = &p->st[i];
		struct sfu_record rec;
		struct probe_op *op;

		if (ps->in_flight || registry_read(p->r, i, &rec) != 0 || !rec.hot.in_use)
			continue;
		if (ps->generation != rec.hot.generation) {
			/* A new occupant: probe it now. */
			ps->generation = rec.hot.generation;
			ps->next_ms = 0;
			ps->fails = ps->passes = 0;
		}
		if (!prober_wanted(&rec.hot, t, now_ms)) {
			/* Someone else reports now: an old probe verdict no longer holds. */
			if (atomic_exchange(&p->r->slots[i].probe_down, 0) != 0)
				atomic_fetch_add_explicit(&p->r->health_epoch, 1,
							  memory_order_release);
			continue;
		}
		if (now_ms < ps->next_ms)
			continue;
		op = calloc(1, sizeof(*op));
		if (op == NULL)
			return;
		op->p = p;
		op->slot = i;
		op->generation = rec.hot.generation;
		memcpy(op->address, rec.cold.address, sizeof(op->address));
		op->insecure = !tlsstate_verified(&rec.cold);
		ps->in_flight = true;
		/* Spread probes over the interval instead of firing them in one burst. */
		ps->next_ms = now_ms + t->probe_interval_ms - (int64_t)(rand() % (t->probe_interval_ms / 10 + 1));
		probe_send(op);
	}
}

int prober_new(struct prober **out, uv_loop_t *loop, struct registry *r, struct metrics_proc *m)
{
	struct prober *p = calloc(1, sizeof(*p));
	int rc;

	if (p == NULL)
		return -ENOMEM;
	p->st = calloc(r->capacity, sizeof(*p->st));
	if (p->st == NULL) {
		free(p);
		return -ENOMEM;
	}
	rc = http_client_new(&p->client, loop);
	if (rc != 0) {
		free(p->st);
		free(p);
		return rc;
	}
	p->r = r;
	p->m = m;
	http_client_on_tls(p->client, tlsstate_count, m);
	*out = p;
	return 0;
}

void prober_free(struct prober *p)
{
	if (p == NULL)
		return;
	http_client_free(p->client);
	/* Probes in flight still reference p->st; the process exits right after. */
}
