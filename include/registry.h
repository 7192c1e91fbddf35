/* Registry: the fixed-capacity table of SFU slots in shared memory, one seqlock per slot. */
#ifndef SFU_REGISTRY_H
#define SFU_REGISTRY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "circuit.h"
#include "config.h"
#include "seqlock.h"

enum sfu_source { SFU_SOURCE_NONE = 0, SFU_SOURCE_STATIC = 1, SFU_SOURCE_REGISTERED = 2 };
/* Who reported an SFU's load: its heartbeats, or the reaper's probes of an
 * SFU that sends none (probes skip SFUs whose heartbeats are fresh). */
enum sfu_reporter { SFU_REPORTER_NONE = 0, SFU_REPORTER_HEARTBEAT = 1, SFU_REPORTER_PROBE = 2 };
/* What the reaper's key check found: does the SFU accept tokens signed with
 * the key the gateway holds for it? */
enum sfu_key_check {
	SFU_KEY_UNCHECKED = 0, /* not checked yet (new SFU, or its key changed) */
	SFU_KEY_OK = 1, /* the SFU accepted a token signed with it */
	SFU_KEY_MISMATCH = 2, /* the SFU refused it: every channel sent there fails */
	SFU_KEY_UNKNOWN = 3, /* no verdict: unreachable, or an unexpected answer */
};

/*
 * The part of an SFU that selection reads for every candidate. Kept small (and
 * separate from the cold part) so that scanning 1,000 slots copies 1,000 × 64
 * bytes, not 1,000 × 512. Plain data; size a multiple of 8.
 */
struct sfu_hot {
	uint32_t in_use; /* 1 while the slot holds an SFU */
	uint8_t source; /* enum sfu_source */
	uint8_t region_id; /* region.h id of cold.region, 0 = not a known region */
	uint8_t has_load; /* 1 once a heartbeat or probe reported load */
	uint8_t reported_by; /* enum sfu_reporter: who reported the load */
	uint64_t address_hash; /* registry_hash(cold.address): cheap lookup by address */
	uint64_t region_hash; /* registry_hash(cold.region): exact match of unknown regions */
	uint64_t generation; /* changes whenever the slot is given to another SFU */
	uint32_t sessions, channels;
	uint32_t max_sessions; /* 0 = not reported / not configured */
	uint32_t pad1;
	double cpu, memory; /* 0..1 */
	int64_t last_report_ms; /* CLOCK_MONOTONIC ms of the last heartbeat/probe/config */
};

/* The rest: read only for the chosen SFU, for health, and by writers. */
struct sfu_cold {
	char address[CONFIG_ADDRESS_MAX]; /* normalised, NUL-terminated */
	char region[CONFIG_REGION_MAX]; /* NUL-terminated, "" = none */
	uint8_t key[CONFIG_KEY_MAX];
	uint32_t key_len;
	uint32_t pad;
};

struct sfu_record {
	struct sfu_hot hot;
	struct sfu_cold cold;
};

#define SFU_HOT_WORDS (sizeof(struct sfu_hot) / 8)
#define SFU_COLD_WORDS (sizeof(struct sfu_cold) / 8)
_Static_assert(sizeof(struct sfu_hot) % 8 == 0, "hot part must be whole words");
_Static_assert(sizeof(struct sfu_cold) % 8 == 0, "cold part must be whole words");

/*
 * One slot. Writers: whoever holds registry.write_lock (a worker handling a
 * heartbeat, the reaper expiring, the master syncing static SFUs on start and
 * reload). Readers: every worker (selection, forwarding, health), the reaper.
 * seq/hot/cold: seqlocked as a unit (readers may copy hot alone).
 * The counters below the seqlocked words are independent atomics that any
 * worker bumps without the writer lock.
 */
struct registry_slot {
	seqlock_word seq; /* even = stable, odd = being written */
	seqlock_word hot[SFU_HOT_WORDS];
	seqlock_word cold[SFU_COLD_WORDS];

	/* Channels this gateway sent to the SFU since its last load report
	 * (workers add 1 per assignment; the heartbeat writer resets it to 0). */
	_Atomic uint64_t assigned __attribute__((aligned(64)));
	/* 1 while the reaper's active probes find the SFU unreachable (reaper
	 * writes; workers read; only SFUs without heartbeats are probed). */
	_Atomic uint32_t probe_down;
	uint32_t pad2;
	/* The circuit breaker: only circuit.c reads or writes it (any worker
	 * calls it). assigned, probe_down and the circuit share one cache line:
	 * selection reads exactly these per SFU it considers. */
	struct circuit cb;
	/* Requests forwarded to this SFU that succeeded / failed (workers). */
	_Atomic uint64_t requests_ok;
	_Atomic uint64_t requests_failed;
	/* enum sfu_key_check. Writers: the reaper's key check (keycheck.c), and
	 * registry writers, which reset it to unchecked when the slot gets a new
	 * SFU or a new key. Readers: health and metrics. */
	_Atomic uint32_t key_check;
} __attribute__((aligned(64)));

_Static_assert(offsetof(struct registry_slot, assigned) / 64 ==
		       (offsetof(struct registry_slot, cb) + sizeof(struct circuit) - 1) / 64,
	       "selection's per-SFU reads must share one cache line");

/*
 * The registry header, followed by capacity slots. Lives in shared memory;
 * every field's writer and readers:
 *  capacity      master at init; read by all.
 *  high_water    writers (under write_lock) raise it; readers scan [0, high_water).
 *  count         writers; health/metrics read it.
 *  epoch         writers bump it after every change; readers may cache on it.
 *  rr_counter    workers fetch_add it: one round-robin sequence across workers.
 *  write_lock    process-shared robust mutex serialising all writers; a writer
 *                that dies holding it is detected by the next locker (EOWNERDEAD),
 *                which repairs the slot named by writing_slot.
 *  writing_slot  the slot index a writer is changing, -1 when none (under write_lock).
 *                Every write section is: writing_slot = i; seqlock_write_begin;
 *                copy; seqlock_write_end; writing_slot = -1. So a slot left odd
 *                by a dead writer is always the one writing_slot names; the
 *                repair frees it (its data is half old, half new) with a zeroed
 *                record written as the rest of the dead writer's section.
 */
struct registry {
	uint32_t capacity;
	_Atomic uint32_t high_water;
	uint64_t instance; /* random at init: tells registries apart in caches keyed on epoch */
	_Atomic uint32_t count;
	uint32_t pad;
	_Atomic uint64_t epoch;
	/* Bumped by any worker or the reaper when an SFU's usability changes
	 * without a slot write: a circuit opens, closes or gives its probe away,
	 * a probe finds it down or up. Round-robin selection caches on it. */
	_Atomic uint64_t health_epoch;
	_Atomic uint64_t rr_counter;
	_Atomic uint64_t repairs; /* slots repaired after a writer died */
	pthread_mutex_t write_lock;
	_Atomic int32_t writing_slot;
	struct registry_slot slots[] __attribute__((aligned(64)));
};

/* Bytes needed for a registry of capacity slots. */
size_t registry_size(uint32_t capacity);
/* Initialises a zeroed block of registry_size(capacity) bytes in shared memory.
 * 0 or -errno (pthread_mutexattr_* failures). */
int registry_init(struct registry *r, uint32_t capacity);
/* FNV-1a 64 of a NUL-terminated string (never 0). */
uint64_t registry_hash(const char *s);

/*
 * Inserts or updates the SFU whose cold.address equals rec->cold.address.
 * The caller fills rec completely except hot.in_use, hot.address_hash,
 * hot.region_hash, hot.region_id and hot.generation, which the registry sets.
 * On update of an existing slot, the generation is kept; when reset_assigned,
 * slot.assigned is set to 0 (a fresh load report replaces our estimate).
 * *slot_out (may be NULL) gets the slot index, *created whether it was new.
 * Returns 0, -ENOSPC when full, -EAGAIN if the lock could not be repaired,
 * -EINVAL for an empty or unterminated address/region or key_len > CONFIG_KEY_MAX.
 */
int registry_upsert(struct registry *r, const struct sfu_record *rec, bool reset_assigned,
		    uint32_t *slot_out, bool *created);
/* Updates only the load fields of slot i (has_load, reported_by, sessions,
 * channels, cpu, memory, last_report_ms, and max_sessions when non-zero in
 * load) if it still holds generation gen: address, key, region and source
 * stay as their owner set them, whatever a concurrent reload did.
 * 0, -ENOENT (freed or reused), -EAGAIN (lock not recoverable). */
int registry_update_load(struct registry *r, uint32_t i, uint64_t gen,
			 const struct sfu_hot *load, bool reset_assigned);
/* Removes the SFU with that address. 0 or -ENOENT (or -EAGAIN as above). */
int registry_remove(struct registry *r, const char *address);
/* Removes slot i if it still holds generation gen (reaper: no race with a
 * re-registration). 0, -ENOENT (free or different generation). */
int registry_remove_slot(struct registry *r, uint32_t i, uint64_t gen);
/* Finds the slot holding address. Index, or -ENOENT. Lock-free. */
int registry_find(const struct registry *r, const char *address);
/* Lock-free bounded reads of slot i. 0, -ENOENT (slot free), -EAGAIN (torn
 * too often: treat as unavailable). */
int registry_read(const struct registry *r, uint32_t i, struct sfu_record *out);
int registry_read_hot(const struct registry *r, uint32_t i, struct sfu_hot *out);
/* Number of slots to scan: [0, registry_scan_end()). */
uint32_t registry_scan_end(const struct registry *r);

/*
 * Master, at start and after a reload: makes the static SFUs in the registry
 * equal to sfus[0..n): adds new ones, updates region/key/max_sessions of
 * existing ones (a registered SFU with a now-static address becomes static),
 * removes static ones no longer listed. Registered SFUs are left alone.
 * Returns 0 or -ENOSPC (some did not fit; the rest were applied).
 */
int registry_sync_static(struct registry *r, const struct config_sfu *sfus, size_t n,
			 int64_t now_ms);

/* Master: after a child died, repairs a slot left odd by a writer that died
 * (the robust mutex also does this at the next lock), then frees any other
 * slot found odd while it holds the lock (no writer can be inside it).
 * Returns slots repaired, or -EAGAIN if the lock is unrecoverable. A repaired
 * slot is freed: a static SFU comes back at the next registry_sync_static,
 * a registered one at its next heartbeat. */
int registry_repair(struct registry *r);

#endif
