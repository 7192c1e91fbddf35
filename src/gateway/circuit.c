/* Circuit breaker per SFU, shared by all workers: consecutive failures open it, one probe closes it. */
#include "circuit.h"

#include <stdatomic.h>
#include <stdlib.h>

/* Selection caches which SFUs are usable; tell it this one changed. */
static void circuit_health_changed(_Atomic uint64_t *health_epoch)
{
	atomic_fetch_add_explicit(health_epoch, 1, memory_order_release);
}

bool circuit_closed(const struct circuit *c)
{
	return atomic_load_explicit(&c->state, memory_order_relaxed) == CIRCUIT_CLOSED;
}

bool circuit_probe_ready(const struct circuit *c, int64_t now_ms)
{
	uint32_t st = atomic_load_explicit(&c->state, memory_order_relaxed);

	if (st == CIRCUIT_CLOSED)
		return false;
	return atomic_load_explicit(&c->open_until_ms, memory_order_relaxed) <= now_ms &&
	       atomic_load_explicit(&c->probe_until_ms, memory_order_relaxed) <= now_ms;
}

bool circuit_claim_probe(struct circuit *c, _Atomic uint64_t *health_epoch, int64_t now_ms,
			 uint32_t hold_ms, struct metrics_proc *m)
{
	int64_t held = atomic_load_explicit(&c->probe_until_ms, memory_order_relaxed);

	if (!circuit_probe_ready(c, now_ms))
		return false;
	/* One CAS decides between workers racing for the same probe. */
	if (!atomic_compare_exchange_strong(&c->probe_until_ms, &held, now_ms + hold_ms))
		return false;
	if (atomic_exchange(&c->state, CIRCUIT_HALF_OPEN) != CIRCUIT_HALF_OPEN)
		metrics_add(m, M_CIRCUIT_HALF_OPENED, 1);
	circuit_health_changed(health_epoch);
	return true;
}

void circuit_success(struct circuit *c, _Atomic uint64_t *health_epoch, struct metrics_proc *m)
{
	atomic_store_explicit(&c->failures, 0, memory_order_relaxed);
	if (atomic_load_explicit(&c->state, memory_order_relaxed) == CIRCUIT_CLOSED)
		return;
	if (atomic_exchange(&c->state, CIRCUIT_CLOSED) != CIRCUIT_CLOSED) {
		atomic_store(&c->openings, 0);
		atomic_store(&c->probe_until_ms, 0);
		metrics_add(m, M_CIRCUIT_CLOSED, 1);
		circuit_health_changed(health_epoch);
	}
}

/*
 * When the next open period ends: open_ms × (consecutive openings + 1),
 * capped, plus up to 10% jitter so workers and gateways do not probe as a
 * herd. It is stored BEFORE the state turns open, so nobody ever sees an
 * open circuit with a stale (past) end and probes it at once.
 */
static void circuit_arm(struct circuit *c, const struct config_tunables *t, int64_t now_ms)
{
	uint32_t n = atomic_load(&c->openings) + 1;
	uint64_t ms = (uint64_t)t->open_ms * (n < CIRCUIT_MAX_MULTIPLIER ? n : CIRCUIT_MAX_MULTIPLIER);

	ms += ms > 10 ? (uint64_t)rand() % (ms / 10) : 0;
	atomic_store(&c->open_until_ms, now_ms + (int64_t)ms);
	atomic_store(&c->probe_until_ms, 0);
}

void circuit_failure(struct circuit *c, _Atomic uint64_t *health_epoch, const struct config_tunables *t,
		     int64_t now_ms, struct metrics_proc *m)
{
	uint32_t f = atomic_fetch_add(&c->failures, 1) + 1;
	uint32_t st = atomic_load(&c->state);

	if (st == CIRCUIT_OPEN)
		return;
	/* A failed half-open probe re-opens at once; a closed circuit opens
	 * after failure_threshold consecutive failures. */
	if (st == CIRCUIT_CLOSED && (t->failure_threshold == 0 || f < t->failure_threshold))
		return;
	circuit_arm(c, t, now_ms);
	if (atomic_compare_exchange_strong(&c->state, &st, CIRCUIT_OPEN)) {
		atomic_fetch_add(&c->openings, 1);
		metrics_add(m, M_CIRCUIT_OPENED, 1);
	}
	/* Also after a failed half-open probe: its claim is gone. */
	circuit_health_changed(health_epoch);
}

void circuit_release_probe(struct circuit *c, _Atomic uint64_t *health_epoch)
{
	if (circuit_closed(c))
		return;
	atomic_store_explicit(&c->probe_until_ms, 0, memory_order_relaxed);
	/* The SFU may be chosen again at once: cached usable lists must know. */
	circuit_health_changed(health_epoch);
}

void circuit_reset(struct circuit *c)
{
	atomic_store(&c->state, CIRCUIT_CLOSED);
	atomic_store(&c->failures, 0);
	atomic_store(&c->openings, 0);
	atomic_store(&c->open_until_ms, 0);
	atomic_store(&c->probe_until_ms, 0);
}

int64_t circuit_next_change(const struct circuit *c, int64_t now_ms)
{
	int64_t open_until, probe_until, next = INT64_MAX;

	if (circuit_closed(c))
		return next;
	open_until = atomic_load_explicit(&c->open_until_ms, memory_order_relaxed);
	probe_until = atomic_load_explicit(&c->probe_until_ms, memory_order_relaxed);
	if (open_until > now_ms)
		next = open_until;
	if (probe_until > now_ms && probe_until < next)
		next = probe_until;
	return next;
}

enum circuit_state circuit_effective_state(const struct circuit *c, int64_t now_ms)
{
	uint32_t st = atomic_load_explicit(&c->state, memory_order_relaxed);

	/* An open circuit whose period ended is half-open in effect: the next
	 * request may probe it. */
	if (st == CIRCUIT_OPEN && circuit_probe_ready(c, now_ms))
		return CIRCUIT_HALF_OPEN;
	return st == CIRCUIT_HALF_OPEN ? CIRCUIT_HALF_OPEN
	       : st == CIRCUIT_OPEN	? CIRCUIT_OPEN
					: CIRCUIT_CLOSED;
}

uint32_t circuit_failures(const struct circuit *c)
{
	return atomic_load_explicit(&c->failures, memory_order_relaxed);
}

const char *circuit_state_name(uint32_t state)
{
	switch (state) {
	case CIRCUIT_CLOSED: return "closed";
	case CIRCUIT_OPEN: return "open";
	case CIRCUIT_HALF_OPEN: return "half-open";
	default: return "unknown";
	}
}
