/* Circuit breaker per SFU, shared by all workers: consecutive failures open it, one probe closes it. */
#ifndef SFU_CIRCUIT_H
#define SFU_CIRCUIT_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "registry.h"

enum circuit_state { CIRCUIT_CLOSED = 0, CIRCUIT_OPEN = 1, CIRCUIT_HALF_OPEN = 2 };

/* The longest an open period grows to, as a multiple of open_ms. */
#define CIRCUIT_MAX_MULTIPLIER 8

/*
 * Closed: requests flow; failure_threshold consecutive failures open it.
 * Open: no request until open_until; each consecutive opening lasts
 * open_ms × openings (capped at CIRCUIT_MAX_MULTIPLIER, +0..10% jitter so
 * workers' probes do not arrive as a herd). Half-open: exactly one request
 * across all workers may try the SFU (a claim with an expiry, so a worker
 * that dies holding it cannot block the SFU forever); its success closes the
 * circuit, its failure opens it again for longer. Active probes never close
 * a circuit: only real traffic proves an SFU can create channels.
 */

/* May a request be sent to this SFU now without a claim (closed)? */
bool circuit_closed(const struct registry_slot *s);
/* Could this SFU take the half-open probe now (open and its time is up,
 * and no other request holds the claim)? */
bool circuit_probe_ready(const struct registry_slot *s, int64_t now_ms);
/* Claims the single half-open probe until now_ms + hold_ms. True when this
 * caller got it; the caller then reports the outcome. */
bool circuit_claim_probe(struct registry *r, struct registry_slot *s, int64_t now_ms,
			 uint32_t hold_ms, struct metrics_proc *m);
/* s belongs to r; a change of usability bumps r->health_epoch. */
void circuit_success(struct registry *r, struct registry_slot *s, struct metrics_proc *m);
void circuit_failure(struct registry *r, struct registry_slot *s, const struct config_tunables *t,
		     int64_t now_ms, struct metrics_proc *m);
/* Gives back a half-open probe claim that will not be used (the request
 * went elsewhere), so another request may probe at once. */
void circuit_release_probe(struct registry *r, struct registry_slot *s);
/* The next instant (CLOCK_MONOTONIC ms) at which this circuit's usability can
 * change without a request (an open period or a probe claim ends);
 * INT64_MAX when none is pending. */
int64_t circuit_next_change(const struct registry_slot *s, int64_t now_ms);
/* The state selection acts on now: an open circuit whose period ended
 * reads half-open. */
enum circuit_state circuit_effective_state(const struct registry_slot *s, int64_t now_ms);
/* Consecutive failures counted so far. */
uint32_t circuit_failures(const struct registry_slot *s);
const char *circuit_state_name(uint32_t state);

#endif
