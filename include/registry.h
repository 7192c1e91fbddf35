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

/* Who holds an SFU: the config (static), its own heartbeats (registered), or
 * the external registry's list (registry). registry_right() says what each
 * source may change on an SFU another one holds. */
enum sfu_source {
	SFU_SOURCE_NONE = 0,
	SFU_SOURCE_STATIC = 1,
	SFU_SOURCE_REGISTERED = 2,
	SFU_SOURCE_REGISTRY = 3,
};
/* Who reported an SFU's load: its heartbeats (to this gateway, or to another
 * gateway of the cluster, learned from etcd: the SFU's own word either way),
 * the reaper's probes of an SFU nobody else reports for (probes skip SFUs
 * whose heartbeats are fresh), or the external registry's list. */
enum sfu_reporter {
	SFU_REPORTER_NONE = 0,
	SFU_REPORTER_HEARTBEAT = 1,
	SFU_REPORTER_PROBE = 2,
	SFU_REPORTER_REGISTRY = 3,
	SFU_REPORTER_CLUSTER = 4,
};
/* Whether the load came from the SFU's own heartbeats, whichever gateway heard them. */
#define SFU_REPORTER_IS_HEARTBEAT(r) \
	((r) == SFU_REPORTER_HEARTBEAT || (r) == SFU_REPORTER_CLUSTER)
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
	uint32_t flags; /* SFU_FLAG_*: a static SFU's options from its [[sfu]] entry; 0 otherwise */
	/* The "seq" of the last heartbeat accepted for this address, 0 for none:
	 * a heartbeat must carry a larger one (replays fail). Read and written by
	 * registry writers only, under write_lock; kept in a tombstone when the
	 * slot is freed, and taken back when the address gets a slot again. */
	uint64_t hb_seq;
};

/* Its https certificate is not verified ([[sfu]] tls_verify = false). Registered
 * SFUs are always verified: a heartbeat cannot turn verification off. */
#define SFU_FLAG_TLS_NOVERIFY 1u

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
 * heartbeat, the reaper expiring or applying the external registry's list,
 * the master syncing static SFUs on start and reload). Readers: every worker (selection, forwarding, health), the reaper.
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
	/* The verdict of the last TLS handshake with the SFU: 0 (succeeded, or
	 * none yet), else why it failed (tls_failure_text). Writers: tlsstate.c
	 * only, for every worker and the reaper after a handshake, and registry
	 * writers, which reset it to 0 for a new occupant. Readers: health and
	 * metrics. */
	_Atomic int64_t tls_failure;
} __attribute__((aligned(64)));

_Static_assert(offsetof(struct registry_slot, assigned) / 64 ==
		       (offsetof(struct registry_slot, cb) + sizeof(struct circuit) - 1) / 64,
	       "selection's per-SFU reads must share one cache line");

/*
 * What the registry remembers of an SFU that left (signed off, expired,
 * removed from the config) for as long as a captured heartbeat of it could
 * still be replayed: the last heartbeat seq accepted for its address.
 * Read and written by registry writers only, under write_lock; at_ms is the
 * CLOCK_MONOTONIC ms of the write, which picks the entry to reuse when all
 * are taken (the oldest).
 */
struct registry_tomb {
	uint64_t address_hash; /* registry_hash(address), 0 = free entry */
	uint64_t seq;
	int64_t at_ms;
	char address[CONFIG_ADDRESS_MAX];
};
/* How long a tombstone is worth keeping: at least as long as a heartbeat token
 * can be replayed (heartbeat.c asserts it), with room to spare. Reusing a
 * younger one, when capacity SFUs left within this time, is logged. */
#define REGISTRY_TOMB_KEEP_MS 300000

/*
 * The registry header, followed by capacity slots, then capacity tombstones
 * (registry_tombs()). Lives in shared memory;
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
 *  writing_tomb  the tombstone a writer is changing, -1 when none (under
 *                write_lock); the repair clears it, forgetting that one seq.
 *  tombs_used    tombstones in use (writers, under write_lock; nobody else reads
 *                it): while it is 0, nothing needs to search them.
 *  batch_seq     the registry-wide batch sequence, a seqlock word over the whole
 *                set of slots. Writer: registry_apply_source (the reaper applying
 *                the external registry's list, under write_lock) makes it odd
 *                before its first slot write and even after its last slot write
 *                and its epoch bump. Readers that look at the set as a whole (the
 *                selection scan and its snapshot build, the affinity pin, health,
 *                metrics) call registry_view_begin() before and
 *                registry_view_valid() after, and retry (bounded) when a batch
 *                ran meanwhile. A reader of one slot needs only the slot's seqlock.
 *
 * Why a batch word rather than staging a new set and publishing it with one
 * epoch bump: the slots are where every SFU's live counters sit (circuit,
 * assignments, requests, key check), so a staged copy would either move them
 * or double the table, and every reader would need one more indirection on the
 * hot path. The batch word costs readers one load before and one after a
 * scan (a snapshot is rebuilt only when epoch or batch_seq moved), and lets a
 * 200 that changes three SFUs of a thousand write three slots. The writer
 * prepares everything (parse, validation, the plan of which slot gets what)
 * before it opens the batch, so the odd window holds only the slot stores:
 * tens of microseconds for a thousand changed SFUs. Readers that find it odd
 * spin, then yield, for at most REGISTRY_VIEW_WAIT_US, and then give up like a
 * torn slot read (-EAGAIN): that happens only when the batch writer died inside
 * its batch. The next locker then sees batch_seq odd (EOWNERDEAD), drops every
 * SFU of the registry source (the set is half old, half new: neither is true),
 * closes the batch, and the restarted reaper fetches the whole list again.
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
	_Atomic int32_t writing_tomb;
	uint32_t tombs_used;
	uint32_t pad2;
	seqlock_word batch_seq;
	struct registry_slot slots[] __attribute__((aligned(64)));
};

/* How long a reader waits for a batch to end before it gives up (-EAGAIN). */
#define REGISTRY_VIEW_WAIT_US 50000

/* Bytes needed for a registry of capacity slots (and as many tombstones). */
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
 * A heartbeat sets rec->cold.hb_seq to its seq (not 0): it must then be above the
 * last seq accepted for that address, in its slot or in a tombstone, else
 * -ESTALE and nothing changes. With hb_seq 0 nothing is checked and the seq
 * remembered for the address is kept.
 * *slot_out (may be NULL) gets the slot index, *created whether it was new.
 * Returns 0, -ESTALE, -ENOSPC when full, -EAGAIN if the lock could not be repaired,
 * -EINVAL for an empty or unterminated address/region or key_len > CONFIG_KEY_MAX.
 */
int registry_upsert(struct registry *r, const struct sfu_record *rec, bool reset_assigned,
		    uint32_t *slot_out, bool *created);
/* Updates only the load fields of slot i (has_load, reported_by, sessions,
 * channels, cpu, memory, last_report_ms, and max_sessions when non-zero in
 * load) if it still holds generation gen: address, key, region and source
 * stay as their owner set them, whatever a concurrent reload did.
 * hb_seq is a heartbeat's seq (checked and remembered as by registry_upsert),
 * 0 for a probe. 0, -ESTALE, -ENOENT (freed or reused), -EAGAIN (lock not
 * recoverable). */
int registry_update_load(struct registry *r, uint32_t i, uint64_t gen,
			 const struct sfu_hot *load, bool reset_assigned, uint64_t hb_seq);
/*
 * A heartbeat's sign-off: hb_seq (not 0) must be above the last seq accepted for
 * the address (else -ESTALE); it is remembered in a tombstone whether or not the
 * address had a slot, so that the SFU's earlier heartbeats cannot register it
 * again. An SFU its heartbeats may not remove (registry_may_remove: a static
 * one, or one the external registry lists) stays (-EPERM, nothing changes).
 * 0 (removed), -ENOENT (no such SFU; its seq is remembered), -ESTALE, -EPERM,
 * -EINVAL, -EAGAIN.
 */
int registry_signoff(struct registry *r, const char *address, uint64_t hb_seq);
/* Removes the SFU with that address. 0 or -ENOENT (or -EAGAIN as above). */
int registry_remove(struct registry *r, const char *address);
/* Removes slot i if it still holds generation gen and registry_may_remove
 * lets remover remove it (reaper, sign-offs: no race with a re-registration
 * or a takeover). 0, -ENOENT (free or different generation), -EPERM (held by
 * a source remover may not remove). */
int registry_remove_slot(struct registry *r, uint32_t i, uint64_t gen, enum sfu_source remover);
/* Finds the slot holding address. Index, or -ENOENT. Lock-free. */
int registry_find(const struct registry *r, const char *address);
/* Lock-free bounded reads of slot i. 0, -ENOENT (slot free), -EAGAIN (torn
 * too often: treat as unavailable). */
int registry_read(const struct registry *r, uint32_t i, struct sfu_record *out);
int registry_read_hot(const struct registry *r, uint32_t i, struct sfu_hot *out);
/* Number of slots to scan: [0, registry_scan_end()). */
uint32_t registry_scan_end(const struct registry *r);

/*
 * A consistent view of the whole set (see batch_seq above): *seq gets the
 * batch sequence to pass to registry_view_valid() once the reads are done.
 * Waits while a batch is being applied; 0, or -EAGAIN after
 * REGISTRY_VIEW_WAIT_US (a batch writer died inside its batch).
 */
int registry_view_begin(const struct registry *r, uint64_t *seq);
/* True when no batch began or ended since registry_view_begin gave seq. */
bool registry_view_valid(const struct registry *r, uint64_t seq);
/* The batch sequence now (even or odd), for caches keyed on it. */
uint64_t registry_batch_seq(const struct registry *r);

/*
 * Precedence between the sources, field by field: what a writer of source
 * `writer` may change on an SFU that `holder` holds. The one table every
 * writer consults:
 *
 *   holder \ writer   config (static)   registry list     heartbeat
 *   none              all               all               all
 *   static            all               none (ignored)    load, same key only
 *   registry          all (config wins) all               load, same key only
 *   registered        all (takes over)  all (takes over)  all
 *
 * "all" sets address, region, key, max_sessions and source (load and the
 * slot's generation and counters are kept on a takeover); "load" sets the
 * load fields only, and a heartbeat whose key differs from the holder's is
 * refused. Removal follows the holder: a source removes only SFUs it holds
 * (registry_may_remove).
 */
enum registry_right { REGISTRY_RIGHT_ALL = 0, REGISTRY_RIGHT_LOAD = 1, REGISTRY_RIGHT_NONE = 2 };
enum registry_right registry_right(enum sfu_source holder, enum sfu_source writer);
/* Whether remover may remove (sign off, expire, drop from a list) an SFU holder holds. */
bool registry_may_remove(enum sfu_source holder, enum sfu_source remover);

/*
 * Master, at start and after a reload: makes the static SFUs in the registry
 * equal to sfus[0..n): adds new ones, updates region/key/max_sessions of
 * existing ones (a registered SFU with a now-static address becomes static),
 * removes static ones no longer listed. Registered SFUs are left alone.
 * Returns 0 or -ENOSPC (some did not fit; the rest were applied).
 */
int registry_sync_static(struct registry *r, const struct config_sfu *sfus, size_t n,
			 int64_t now_ms);

/* What registry_apply_source did. */
struct registry_batch {
	uint32_t added, updated, unchanged, removed;
	uint32_t ignored; /* entries whose address a static SFU holds */
	uint32_t window_us; /* how long batch_seq stayed odd (readers waited at most this) */
};

/*
 * Reaper: makes the SFUs held by the external registry equal to recs[0..n),
 * in one batch no view-checked reader sees half-done. The caller fills each
 * record's cold part (address, region, key) and max_sessions, and, when the
 * list gives load, has_load = 1 with sessions, channels, cpu and memory; the
 * registry sets everything else. Addresses must be distinct. Per address:
 *  - new: added, without load unless the list gives it;
 *  - held by the registry or by heartbeats: region, key and max_sessions
 *    from the list, source registry; the list's load replaces the slot's
 *    unless a heartbeat reported within heartbeat_fresh_ms (the SFU's own
 *    word is fresher), and a slot whose load came from an earlier list loses
 *    it when the list stops giving it (probes take over);
 *  - held by the config: ignored (ignored[k] = 1 when ignored is not NULL).
 * SFUs the registry held that recs does not list are removed. Slots whose
 * record would not change are not written. Nothing is applied when the
 * additions do not fit (-ENOSPC), a record is invalid or two share an address
 * (-EINVAL), or memory runs out (-ENOMEM); -EAGAIN as registry_upsert.
 */
int registry_apply_source(struct registry *r, const struct sfu_record *recs, size_t n,
			  int64_t now_ms, uint32_t heartbeat_fresh_ms, uint8_t *ignored,
			  struct registry_batch *out);

/* Master: after a child died, repairs a slot left odd by a writer that died
 * (the robust mutex also does this at the next lock), then frees any other
 * slot found odd while it holds the lock (no writer can be inside it), and
 * closes a batch left open (dropping the registry source's SFUs, see
 * batch_seq); a closed batch counts as one repair.
 * Returns slots repaired, or -EAGAIN if the lock is unrecoverable. A repaired
 * slot is freed: a static SFU comes back at the next registry_sync_static,
 * a registered one at its next heartbeat. */
int registry_repair(struct registry *r);

#endif
