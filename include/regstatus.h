/* Registry status: the external registry source's state in shared memory, written by the reaper, read by health and metrics. */
#ifndef SFU_REGSTATUS_H
#define SFU_REGSTATUS_H

#include <stdatomic.h>
#include <stdint.h>

#include "seqlock.h"

#define REGSTATUS_URL_MAX 512
#define REGSTATUS_ETAG_MAX 128
#define REGSTATUS_ERROR_MAX 192

/*
 * The source's state, as health and metrics name it:
 *  off      no [registry] url;
 *  pending  configured, no answer yet;
 *  ok       the last fetch succeeded (a 200 applied, or a 304);
 *  failing  the last fetch failed; the last good list (if any) is in use;
 *  stale    no good answer for [registry] stale_after_ms: the list is still
 *           used, and flagged.
 */
enum regstatus_state {
	REGSTATUS_OFF = 0,
	REGSTATUS_PENDING = 1,
	REGSTATUS_OK = 2,
	REGSTATUS_FAILING = 3,
	REGSTATUS_STALE = 4,
};

/* Poll results counted in struct regstatus.polls. */
enum regstatus_poll { REGSTATUS_POLL_OK = 0, REGSTATUS_POLL_NOT_MODIFIED, REGSTATUS_POLL_FAILED,
		      REGSTATUS_POLL__COUNT };

/* What the reaper publishes after every fetch and configuration change.
 * Plain data, whole words; times are CLOCK_MONOTONIC ms, 0 = never. */
struct regstatus_data {
	uint32_t configured; /* 1 while [registry] url is set */
	uint32_t last_ok; /* 1 when the last fetch succeeded */
	uint32_t sfus; /* SFUs of the list in use (entries with status "up") */
	uint32_t ignored; /* of those, addresses a static SFU holds */
	int64_t last_success_ms; /* last 200 applied or 304 */
	int64_t list_ms; /* when the list in use arrived (its 200) */
	int64_t last_error_ms; /* last failed fetch */
	char url[REGSTATUS_URL_MAX]; /* the URL polled, without its query */
	char etag[REGSTATUS_ETAG_MAX]; /* of the list in use, "" = none */
	char last_error[REGSTATUS_ERROR_MAX]; /* why the last failure failed, "" = none */
};

#define REGSTATUS_WORDS (sizeof(struct regstatus_data) / 8)
_Static_assert(sizeof(struct regstatus_data) % 8 == 0, "regstatus data must be whole words");

/*
 * In the shared segment. Writer: the reaper only (one process), which
 * publishes the whole data block under seq. Readers: every worker (health,
 * metrics), with a bounded seqlock read. The counters beside it are atomics
 * the reaper adds to and readers load.
 */
struct regstatus {
	seqlock_word seq;
	seqlock_word words[REGSTATUS_WORDS];
	_Atomic uint64_t polls[REGSTATUS_POLL__COUNT];
	_Atomic uint64_t last_apply_us; /* parse and apply of the last 200 */
	_Atomic uint64_t last_window_us; /* how long that 200's batch held readers off */
};

/* Reaper: publishes d. A block left odd by a reaper that died inside a publish
 * is closed first (there is no other writer). */
void regstatus_publish(struct regstatus *s, const struct regstatus_data *d);
/* Readers: a consistent copy. 0, or -EAGAIN when torn too often. */
int regstatus_read(const struct regstatus *s, struct regstatus_data *out);
/* The one verdict health, metrics and the reaper's log lines use. */
enum regstatus_state regstatus_state(const struct regstatus_data *d, int64_t now_ms,
				     uint32_t stale_after_ms);
const char *regstatus_state_name(enum regstatus_state st);

#endif
