/* Circuit breaker per SFU, shared by all workers: consecutive failures open it, one probe closes it. */
#ifndef SFU_CIRCUIT_H
#define SFU_CIRCUIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"

enum circuit_state { CIRCUIT_CLOSED = 0, CIRCUIT_OPEN = 1, CIRCUIT_HALF_OPEN = 2 };

/* The longest an open period grows to, as a multiple of open_ms. */
#define CIRCUIT_MAX_MULTIPLIER 8

/*
 * One SFU's breaker, in its registry slot in shared memory. Only this
 * module reads or writes these fields; every worker calls it. All zero is a
 * closed circuit with no history (what a slot's new occupant starts with).
 *  state            enum circuit_state
 *  failures         consecutive failures counted (reset by a success)
 *  openings         consecutive openings, which lengthen the open period
 *  open_until_ms    CLOCK_MONOTONIC ms until which an open circuit stays open
 *  probe_until_ms   until when the one half-open probe request holds its
 *                   claim (a claim left by a dead worker expires)
 */
struct circuit {
	_Atomic uint32_t state;
	_Atomic uint32_t failures;
	_Atomic uint32_t openings;
	uint32_t pad;
	_Atomic int64_t open_until_ms;
	_Atomic int64_t probe_until_ms;
};

/*
 * Closed: requests flow; failure_threshold consecutive failures open it.
 * Open: no request until open_until; each consecutive opening lasts
 * open_ms × openings (capped at CIRCUIT_MAX_MULTIPLIER, +0..10% jitter so
 * workers' probes do not arrive as a herd). Half-open: exactly one request
 * across all workers may try the SFU (a claim with an expiry, so a worker
 * that dies holding it cannot block the SFU forever); its success closes the
 * circuit, its failure opens it again for longer. Active probes never close
 * a circuit: only real traffic proves an SFU can create channels.
 *
 * Every change of whether the SFU may be chosen bumps *health_epoch (the
 * registry's), on which selection caches its lists of usable SFUs.
 */

/* May a request be sent to this SFU now without a claim (closed)? */
bool circuit_closed(const struct circuit *c);
/* Could this SFU take the half-open probe now (open and its time is up,
 * and no other request holds the claim)? */
bool circuit_probe_ready(const struct circuit *c, int64_t now_ms);
/* Claims the single half-open probe until now_ms + hold_ms. True when this
 * caller got it; the caller then reports the outcome. */
bool circuit_claim_probe(struct circuit *c, _Atomic uint64_t *health_epoch, int64_t now_ms,
			 uint32_t hold_ms, struct metrics_proc *m);
/* Gives back a half-open probe claim that will not be used (the request
 * went elsewhere), so another request may probe at once. */
void circuit_release_probe(struct circuit *c, _Atomic uint64_t *health_epoch);
void circuit_success(struct circuit *c, _Atomic uint64_t *health_epoch, struct metrics_proc *m);
void circuit_failure(struct circuit *c, _Atomic uint64_t *health_epoch,
		     const struct config_tunables *t, int64_t now_ms, struct metrics_proc *m);
/* A slot given to another SFU starts closed, with no history. */
void circuit_reset(struct circuit *c);
/* The next instant (CLOCK_MONOTONIC ms) at which this circuit's usability can
 * change without a request (an open period or a probe claim ends);
 * INT64_MAX when none is pending. */
int64_t circuit_next_change(const struct circuit *c, int64_t now_ms);
/* The state selection acts on now: an open circuit whose period ended
 * reads half-open. */
enum circuit_state circuit_effective_state(const struct circuit *c, int64_t now_ms);
/* Consecutive failures counted so far. */
uint32_t circuit_failures(const struct circuit *c);
const char *circuit_state_name(uint32_t state);

#endif
