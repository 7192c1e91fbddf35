/* Registry: seqlocked SFU slots in shared memory, writers serialised by a robust mutex. */
#include "registry.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "pshared.h"
#include "region.h"

/*
 * registry_find compares only the first hot words (in_use and address_hash)
 * of every slot, and copies the address words of a slot only on a hash match.
 */
#define REGISTRY_FIND_WORDS ((offsetof(struct sfu_hot, address_hash) + 8) / 8)
_Static_assert(offsetof(struct sfu_hot, in_use) + sizeof(uint32_t) <= 8,
	       "in_use must sit in the first hot word");
_Static_assert(REGISTRY_FIND_WORDS <= SFU_HOT_WORDS, "find words within the hot part");
_Static_assert(offsetof(struct sfu_cold, address) == 0, "address must open the cold part");
_Static_assert(CONFIG_ADDRESS_MAX % 8 == 0, "address must be whole words");

_Static_assert(sizeof(struct registry_slot) % _Alignof(struct registry_tomb) == 0,
	       "the tombstones after the slots must be aligned");

size_t registry_size(uint32_t capacity)
{
	return sizeof(struct registry) + (size_t)capacity * sizeof(struct registry_slot) +
	       (size_t)capacity * sizeof(struct registry_tomb);
}

/* The tombstones: capacity of them, right after the slots. */
static struct registry_tomb *registry_tombs(struct registry *r)
{
	return (struct registry_tomb *)(void *)&r->slots[r->capacity];
}

int registry_init(struct registry *r, uint32_t capacity)
{
	int err;

	if (capacity == 0)
		return -EINVAL;
	/* Shared: workers, reaper and master all lock it. Robust: a writer that
	 * dies holding it must not wedge every later writer (see registry_lock). */
	err = pshared_mutex_init(&r->write_lock);
	if (err)
		return err;

	r->capacity = capacity;
	atomic_store(&r->high_water, 0);
	atomic_store(&r->count, 0);
	atomic_store(&r->epoch, 0);
	{
		/* Distinct per registry, even at the same address after a remap. */
		static uint64_t registry_inits;
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		r->instance = ((uint64_t)getpid() << 40) ^ (uint64_t)ts.tv_nsec ^
			      ((uint64_t)ts.tv_sec << 20) ^ ++registry_inits;
	}
	atomic_store(&r->rr_counter, 0);
	atomic_store(&r->repairs, 0);
	atomic_store(&r->writing_slot, -1);
	atomic_store(&r->batch_seq, 0);
	atomic_store(&r->writing_tomb, -1);
	r->tombs_used = 0;
	for (uint32_t i = 0; i < capacity; i++)
		atomic_store_explicit(&r->slots[i].seq, 0, memory_order_relaxed);
	/* The block is zeroed: every tombstone starts free. */
	return 0;
}

uint64_t registry_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
	}
	/* 0 is reserved for "no region": never hand it out. */
	return h ? h : 1;
}

uint32_t registry_scan_end(const struct registry *r)
{
	uint32_t hw = atomic_load_explicit(&r->high_water, memory_order_acquire);

	return hw < r->capacity ? hw : r->capacity;
}

/* ---- writer side: every function below runs with write_lock held ---- */

/* Copies slot i as it is. Only under the lock: no writer can be changing it. */
static void registry_load_locked(const struct registry *r, uint32_t i, struct sfu_record *out)
{
	seqlock_copy_out(&out->hot, r->slots[i].hot, SFU_HOT_WORDS);
	seqlock_copy_out(&out->cold, r->slots[i].cold, SFU_COLD_WORDS);
}

static bool registry_in_use_locked(const struct registry *r, uint32_t i)
{
	struct sfu_hot h;

	seqlock_copy_out(&h, r->slots[i].hot, 1);
	return h.in_use != 0;
}

/*
 * Writes a whole record into slot i. writing_slot names the slot for the
 * whole write section, so that if this process dies inside it, the next
 * locker (EOWNERDEAD) knows which slot may be half-written.
 */
static void registry_store_locked(struct registry *r, uint32_t i, const struct sfu_record *rec)
{
	struct registry_slot *s = &r->slots[i];

	atomic_store(&r->writing_slot, (int32_t)i);
	seqlock_write_begin(&s->seq);
	seqlock_copy_in(s->hot, &rec->hot, SFU_HOT_WORDS);
	seqlock_copy_in(s->cold, &rec->cold, SFU_COLD_WORDS);
	seqlock_write_end(&s->seq);
	atomic_store(&r->writing_slot, -1);
}

static void registry_bump_epoch(struct registry *r)
{
	atomic_fetch_add_explicit(&r->epoch, 1, memory_order_release);
}

/* ---- tombstones: the heartbeat seq of SFUs that left (writers only) ---- */

/* The tombstone of address (hash h), or -1. */
static int registry_tomb_find_locked(struct registry *r, const char *address, uint64_t h)
{
	struct registry_tomb *t = registry_tombs(r);

	/* A start or reload adding thousands of static SFUs searches nothing. */
	if (r->tombs_used == 0)
		return -1;
	for (uint32_t i = 0; i < r->capacity; i++)
		if (t[i].address_hash == h && strncmp(t[i].address, address, CONFIG_ADDRESS_MAX) == 0)
			return (int)i;
	return -1;
}

/* The last heartbeat seq remembered for an address that has no slot, 0 if none. */
static uint64_t registry_tomb_seq_locked(struct registry *r, const char *address)
{
	int i = registry_tomb_find_locked(r, address, registry_hash(address));

	return i >= 0 ? registry_tombs(r)[i].seq : 0;
}

/* Writes tombstone i; writing_tomb names it meanwhile, so that a writer dying
 * here leaves an entry the next locker knows to clear. */
static void registry_tomb_store_locked(struct registry *r, uint32_t i,
				       const struct registry_tomb *t)
{
	struct registry_tomb *slot = &registry_tombs(r)[i];

	if (slot->address_hash == 0 && t->address_hash != 0)
		r->tombs_used++;
	else if (slot->address_hash != 0 && t->address_hash == 0)
		r->tombs_used--;
	atomic_store(&r->writing_tomb, (int32_t)i);
	*slot = *t;
	atomic_store(&r->writing_tomb, -1);
}

/* After a writer died: tombs_used counted again from the tombstones themselves. */
static void registry_tomb_recount_locked(struct registry *r)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < r->capacity; i++)
		n += registry_tombs(r)[i].address_hash != 0;
	r->tombs_used = n;
}

static void registry_tomb_clear_locked(struct registry *r, const char *address)
{
	static const struct registry_tomb zero;
	int i = registry_tomb_find_locked(r, address, registry_hash(address));

	if (i >= 0)
		registry_tomb_store_locked(r, (uint32_t)i, &zero);
}

/*
 * Remembers seq for address: in its own tombstone, else a free one, else the
 * oldest (logged when it was younger than REGISTRY_TOMB_KEEP_MS: a captured
 * heartbeat of the SFU it named could then register that SFU again while its
 * token lives; only capacity SFUs leaving within that time do it).
 */
static void registry_tomb_put_locked(struct registry *r, const char *address, uint64_t seq)
{
	struct registry_tomb *t = registry_tombs(r), next = { .seq = seq };
	uint64_t h = registry_hash(address);
	int64_t now = clock_ms();
	int at = registry_tomb_find_locked(r, address, h);

	for (uint32_t i = 0; at < 0 && i < r->capacity; i++)
		if (t[i].address_hash == 0)
			at = (int)i;
	if (at < 0) {
		at = 0;
		for (uint32_t i = 1; i < r->capacity; i++)
			if (t[i].at_ms < t[at].at_ms)
				at = (int)i;
		if (now - t[at].at_ms < REGISTRY_TOMB_KEEP_MS)
			log_warn("registry: %u SFUs left within %d s; forgot the heartbeat seq of "
				 "%s early",
				 r->capacity, REGISTRY_TOMB_KEEP_MS / 1000, t[at].address);
	}
	next.address_hash = h;
	next.at_ms = now;
	snprintf(next.address, sizeof(next.address), "%s", address);
	registry_tomb_store_locked(r, (uint32_t)at, &next);
}

/* Before slot i is freed: its address's heartbeat seq goes to a tombstone, seq
 * when not 0 (a sign-off's), else the slot's own, if it ever had one. */
static void registry_tomb_slot_seq_locked(struct registry *r, uint32_t i, uint64_t seq)
{
	struct sfu_record cur;

	registry_load_locked(r, i, &cur);
	if (seq == 0)
		seq = cur.cold.hb_seq;
	if (seq != 0) {
		cur.cold.address[sizeof(cur.cold.address) - 1] = '\0';
		registry_tomb_put_locked(r, cur.cold.address, seq);
	}
	explicit_bzero(&cur, sizeof(cur));
}

static void registry_tomb_slot_locked(struct registry *r, uint32_t i)
{
	registry_tomb_slot_seq_locked(r, i, 0);
}

/* Frees slot i: a zeroed record (in_use 0) written in a proper section, once the
 * heartbeat seq is in a tombstone (see registry_tomb_slot_seq_locked). */
static void registry_free_locked(struct registry *r, uint32_t i, uint64_t seq)
{
	static const struct sfu_record zero;

	registry_tomb_slot_seq_locked(r, i, seq);
	registry_store_locked(r, i, &zero);
	atomic_fetch_sub(&r->count, 1);
	registry_bump_epoch(r);
}

/*
 * Slot i was left odd by a writer that died inside its write section: its
 * data is half old, half new, so nothing in it can be trusted. We finish the
 * dead writer's section ourselves with a zeroed record, which frees the slot
 * and makes seq even again. 1 if the slot needed it, else 0.
 */
static int registry_repair_slot_locked(struct registry *r, uint32_t i)
{
	static const struct sfu_record zero;
	struct registry_slot *s = &r->slots[i];
	uint64_t seq = atomic_load_explicit(&s->seq, memory_order_relaxed);

	if ((seq & 1) == 0)
		return 0;
	/* If we die too, the next locker repairs the same slot again. */
	atomic_store(&r->writing_slot, (int32_t)i);
	/* The section is already open (seq odd); the fence plays the role of
	 * seqlock_write_begin's for our own data stores. */
	atomic_thread_fence(memory_order_release);
	seqlock_copy_in(s->hot, &zero.hot, SFU_HOT_WORDS);
	seqlock_copy_in(s->cold, &zero.cold, SFU_COLD_WORDS);
	seqlock_write_end(&s->seq);
	atomic_store(&r->writing_slot, -1);
	atomic_fetch_add(&r->repairs, 1);
	registry_bump_epoch(r);
	log_warn("registry: slot %u was left half-written by a dead writer; freed it", i);
	return 1;
}

/*
 * A batch writer died inside its batch (batch_seq odd, and we hold the lock,
 * so nobody else is in it): the set is part old list, part new. Neither is
 * what the registry said, so every SFU the registry source holds goes, and the
 * batch is closed; the restarted reaper fetches the whole list again. 1 when
 * a batch was open, else 0.
 */
static int registry_close_dead_batch_locked(struct registry *r)
{
	uint32_t hw = registry_scan_end(r), dropped = 0;

	if ((atomic_load_explicit(&r->batch_seq, memory_order_relaxed) & 1) == 0)
		return 0;
	for (uint32_t i = 0; i < hw; i++) {
		struct sfu_hot h;

		seqlock_copy_out(&h, r->slots[i].hot, SFU_HOT_WORDS);
		if (h.in_use && h.source == SFU_SOURCE_REGISTRY) {
			registry_free_locked(r, i, 0);
			dropped++;
		}
	}
	seqlock_write_end(&r->batch_seq);
	log_warn("registry: a batch was left half-applied by a dead writer; dropped the %u "
		 "SFU(s) of the external registry until its list is fetched again",
		 dropped);
	return 1;
}

/* A dead writer may have died between changing a slot and adjusting count:
 * recompute it from the slots themselves. */
static void registry_recount_locked(struct registry *r)
{
	uint32_t hw = registry_scan_end(r), n = 0;

	for (uint32_t i = 0; i < hw; i++)
		n += registry_in_use_locked(r, i);
	atomic_store(&r->count, n);
}

/*
 * The one way writers take write_lock. When the previous owner died holding
 * it (EOWNERDEAD), the slot it named in writing_slot is repaired and the
 * mutex marked consistent before we go on. *repaired (may be NULL) gets the
 * number of slots repaired. 0, or -EAGAIN when the lock is unusable.
 */
static int registry_lock(struct registry *r, int *repaired)
{
	int err = pthread_mutex_lock(&r->write_lock);
	int32_t ws;
	int n = 0;

	if (repaired)
		*repaired = 0;
	if (err == ENOTRECOVERABLE) {
		log_error("registry: write lock is not recoverable");
		return -EAGAIN;
	}
	if (err != 0 && err != EOWNERDEAD)
		return -err;
	if (err == EOWNERDEAD) {
		ws = atomic_load(&r->writing_slot);
		if (ws >= 0 && (uint32_t)ws < r->capacity)
			n = registry_repair_slot_locked(r, (uint32_t)ws);
		atomic_store(&r->writing_slot, -1);
		/* A half-written tombstone is dropped: one SFU's seq is forgotten. */
		ws = atomic_load(&r->writing_tomb);
		if (ws >= 0 && (uint32_t)ws < r->capacity)
			memset(&registry_tombs(r)[ws], 0, sizeof(struct registry_tomb));
		atomic_store(&r->writing_tomb, -1);
		registry_tomb_recount_locked(r);
		registry_recount_locked(r);
		n += registry_close_dead_batch_locked(r);
		registry_bump_epoch(r);
		log_warn("registry: a writer died holding the write lock; %d slot(s) repaired", n);
		err = pthread_mutex_consistent(&r->write_lock);
		if (err) {
			pthread_mutex_unlock(&r->write_lock);
			return -EAGAIN;
		}
	}
	if (repaired)
		*repaired = n;
	return 0;
}

static void registry_unlock(struct registry *r)
{
	pthread_mutex_unlock(&r->write_lock);
}

/* A new occupant starts with none of the previous one's counters. */
static void registry_reset_counters(struct registry_slot *s)
{
	atomic_store(&s->assigned, 0);
	atomic_store(&s->requests_ok, 0);
	atomic_store(&s->requests_failed, 0);
	circuit_reset(&s->cb);
	atomic_store(&s->key_check, SFU_KEY_UNCHECKED);
	atomic_store(&s->probe_down, 0);
	atomic_store(&s->tls_failure, 0);
}

/* Strings must be terminated inside their fields and the key length sane. */
static bool registry_record_valid(const struct sfu_record *rec)
{
	return rec->cold.address[0] != '\0' &&
	       memchr(rec->cold.address, '\0', sizeof(rec->cold.address)) != NULL &&
	       memchr(rec->cold.region, '\0', sizeof(rec->cold.region)) != NULL &&
	       rec->cold.key_len <= sizeof(rec->cold.key);
}

/* First free slot: reuse one below high_water, else raise high_water. */
static int registry_take_free_locked(struct registry *r)
{
	uint32_t hw = registry_scan_end(r);

	for (uint32_t i = 0; i < hw; i++) {
		if (!registry_in_use_locked(r, i))
			return (int)i;
	}
	if (hw >= r->capacity)
		return -ENOSPC;
	/* Raised before the slot is written: a reader scanning it meanwhile just
	 * sees a free slot, and a writer dying now leaves nothing half-counted. */
	atomic_store_explicit(&r->high_water, hw + 1, memory_order_release);
	return (int)hw;
}

/*
 * heartbeat: rec->cold.hb_seq is a heartbeat's seq, which must be above the one
 * remembered for the address (-ESTALE). Otherwise the remembered seq is kept,
 * whatever rec says.
 */
static int registry_upsert_locked(struct registry *r, const struct sfu_record *rec,
				  bool reset_assigned, uint32_t *slot_out, bool *created,
				  bool heartbeat)
{
	struct sfu_record cur, next = *rec;
	uint64_t epoch, known;
	int i;

	if (!registry_record_valid(rec))
		return -EINVAL;
	next.hot.in_use = 1;
	next.hot.address_hash = registry_hash(next.cold.address);
	next.hot.region_hash = next.cold.region[0] ? registry_hash(next.cold.region) : 0;
	next.hot.region_id = (uint8_t)region_lookup(next.cold.region, strlen(next.cold.region));
	/* Key bytes past key_len are zero, so equal keys give equal records. */
	memset(next.cold.key + next.cold.key_len, 0, sizeof(next.cold.key) - next.cold.key_len);

	/* No writer runs concurrently, so this lock-free find succeeds first try. */
	i = registry_find(r, next.cold.address);
	if (i >= 0) {
		registry_load_locked(r, (uint32_t)i, &cur);
		/* The holder may have changed since the caller looked (a reload, a
		 * list): checked again here, under the lock. */
		if (registry_right(cur.hot.source, next.hot.source) != REGISTRY_RIGHT_ALL)
			return -EPERM;
		if (heartbeat && next.cold.hb_seq <= cur.cold.hb_seq)
			return -ESTALE;
		if (!heartbeat)
			next.cold.hb_seq = cur.cold.hb_seq;
		next.hot.generation = cur.hot.generation;
		registry_store_locked(r, (uint32_t)i, &next);
		/* A new key has not been checked against the SFU yet. */
		if (cur.cold.key_len != next.cold.key_len ||
		    memcmp(cur.cold.key, next.cold.key, sizeof(cur.cold.key)) != 0)
			atomic_store(&r->slots[i].key_check, SFU_KEY_UNCHECKED);
		if (reset_assigned)
			atomic_store(&r->slots[i].assigned, 0);
		registry_bump_epoch(r);
		if (created)
			*created = false;
	} else {
		/* What the address left behind: a replayed heartbeat must not bring it
		 * back, and a new slot carries the seq on. */
		known = registry_tomb_seq_locked(r, next.cold.address);
		if (heartbeat && next.cold.hb_seq <= known)
			return -ESTALE;
		if (!heartbeat)
			next.cold.hb_seq = known;
		i = registry_take_free_locked(r);
		if (i < 0)
			return i;
		if (known != 0)
			registry_tomb_clear_locked(r, next.cold.address);
		/* epoch only grows, so its next value was never any slot's
		 * generation: a reaper holding an old one cannot match. */
		epoch = atomic_load(&r->epoch) + 1;
		next.hot.generation = epoch;
		registry_reset_counters(&r->slots[i]);
		registry_store_locked(r, (uint32_t)i, &next);
		atomic_fetch_add(&r->count, 1);
		atomic_store_explicit(&r->epoch, epoch, memory_order_release);
		if (created)
			*created = true;
	}
	if (slot_out)
		*slot_out = (uint32_t)i;
	return 0;
}

int registry_upsert(struct registry *r, const struct sfu_record *rec, bool reset_assigned,
		    uint32_t *slot_out, bool *created)
{
	int err = registry_lock(r, NULL);

	if (err)
		return err;
	err = registry_upsert_locked(r, rec, reset_assigned, slot_out, created,
				     rec->cold.hb_seq != 0);
	registry_unlock(r);
	return err;
}

int registry_remove(struct registry *r, const char *address)
{
	int err = registry_lock(r, NULL);
	int i;

	if (err)
		return err;
	i = registry_find(r, address);
	if (i >= 0)
		registry_free_locked(r, (uint32_t)i, 0);
	registry_unlock(r);
	return i >= 0 ? 0 : -ENOENT;
}

int registry_signoff(struct registry *r, const char *address, uint64_t hb_seq)
{
	size_t len = address ? strnlen(address, CONFIG_ADDRESS_MAX) : 0;
	struct sfu_record cur;
	int err, i;

	if (len == 0 || len >= CONFIG_ADDRESS_MAX || hb_seq == 0)
		return -EINVAL;
	err = registry_lock(r, NULL);
	if (err)
		return err;
	i = registry_find(r, address);
	if (i >= 0) {
		registry_load_locked(r, (uint32_t)i, &cur);
		if (hb_seq <= cur.cold.hb_seq)
			err = -ESTALE;
		else if (!registry_may_remove(cur.hot.source, SFU_SOURCE_REGISTERED))
			err = -EPERM;
		else
			registry_free_locked(r, (uint32_t)i, hb_seq);
	} else if (hb_seq <= registry_tomb_seq_locked(r, address)) {
		err = -ESTALE;
	} else {
		registry_tomb_put_locked(r, address, hb_seq);
		err = -ENOENT;
	}
	registry_unlock(r);
	return err;
}

int registry_remove_slot(struct registry *r, uint32_t i, uint64_t gen, enum sfu_source remover)
{
	struct sfu_hot h;
	int err;

	if (i >= r->capacity)
		return -ENOENT;
	err = registry_lock(r, NULL);
	if (err)
		return err;
	seqlock_copy_out(&h, r->slots[i].hot, SFU_HOT_WORDS);
	if (!h.in_use || h.generation != gen)
		err = -ENOENT;
	else if (!registry_may_remove(h.source, remover))
		err = -EPERM;
	else
		registry_free_locked(r, i, 0);
	registry_unlock(r);
	return err;
}

/* True when config lists address (static SFU lists are short; reload only). */
static bool registry_listed(const struct config_sfu *sfus, size_t n, const char *address)
{
	for (size_t k = 0; k < n; k++) {
		if (strcmp(sfus[k].address, address) == 0)
			return true;
	}
	return false;
}

/* Applies one static SFU: new ones start without load; existing ones (static
 * or registered) keep their load and generation but take the config's
 * region, key, max_sessions and flags, and become static. */
static int registry_apply_static_locked(struct registry *r, const struct config_sfu *c,
					int64_t now_ms)
{
	struct sfu_record rec;
	int i;

	if (c->address[0] == '\0' || !memchr(c->address, '\0', sizeof(c->address)) ||
	    !memchr(c->region, '\0', sizeof(c->region)) || c->key_len > sizeof(c->key))
		return -EINVAL;
	i = registry_find(r, c->address);
	if (i >= 0) {
		registry_load_locked(r, (uint32_t)i, &rec);
		if (rec.hot.source != SFU_SOURCE_STATIC)
			log_info("registry: %s SFU %s is now static",
				 rec.hot.source == SFU_SOURCE_REGISTRY ? "registry" : "registered",
				 c->address);
	} else {
		memset(&rec, 0, sizeof(rec));
		memcpy(rec.cold.address, c->address, sizeof(rec.cold.address));
		rec.hot.has_load = 0;
		rec.hot.last_report_ms = now_ms;
	}
	rec.hot.source = SFU_SOURCE_STATIC;
	rec.hot.max_sessions = c->max_sessions;
	memcpy(rec.cold.region, c->region, sizeof(rec.cold.region));
	memset(rec.cold.key, 0, sizeof(rec.cold.key));
	memcpy(rec.cold.key, c->key, c->key_len);
	rec.cold.key_len = (uint32_t)c->key_len;
	rec.cold.flags = c->tls_verify ? 0 : SFU_FLAG_TLS_NOVERIFY;
	return registry_upsert_locked(r, &rec, false, NULL, NULL, false);
}

int registry_sync_static(struct registry *r, const struct config_sfu *sfus, size_t n,
			 int64_t now_ms)
{
	struct sfu_record rec;
	uint32_t hw;
	int err, ret = 0;

	err = registry_lock(r, NULL);
	if (err)
		return err;
	/* Removals first, so that their slots can take the additions. */
	hw = registry_scan_end(r);
	for (uint32_t i = 0; i < hw; i++) {
		if (!registry_in_use_locked(r, i))
			continue;
		registry_load_locked(r, i, &rec);
		if (rec.hot.source == SFU_SOURCE_STATIC &&
		    !registry_listed(sfus, n, rec.cold.address)) {
			log_info("registry: static SFU %s removed from the config",
				 rec.cold.address);
			registry_free_locked(r, i, 0);
		}
	}
	for (size_t k = 0; k < n; k++) {
		err = registry_apply_static_locked(r, &sfus[k], now_ms);
		if (err == -ENOSPC) {
			log_error("registry: full, static SFU %s not added", sfus[k].address);
			ret = -ENOSPC;
		} else if (err) {
			log_error("registry: static SFU #%zu rejected (%d)", k, err);
		}
	}
	registry_unlock(r);
	return ret;
}

int registry_repair(struct registry *r)
{
	uint32_t hw;
	int err, n;

	/* The lock repairs the slot of a writer that died holding it. */
	err = registry_lock(r, &n);
	if (err)
		return err;
	/* Any slot still odd now has no live writer (we hold the lock): repair
	 * it too, whatever left it so. */
	hw = registry_scan_end(r);
	for (uint32_t i = 0; i < hw; i++)
		n += registry_repair_slot_locked(r, i);
	if (n)
		registry_recount_locked(r);
	n += registry_close_dead_batch_locked(r);
	registry_unlock(r);
	return n;
}

/* ---- reader side: lock-free, bounded, never writes shared memory ---- */

/* Whether slot i holds address (hash h, length len). Copies the address only
 * when the hash matches; a slot that stays torn counts as no match. */
static bool registry_slot_matches(const struct registry_slot *s, const char *address, size_t len,
				  uint64_t h)
{
	char buf[CONFIG_ADDRESS_MAX] __attribute__((aligned(8)));
	size_t nwords = len / 8 + 1; /* the words holding address and its NUL */
	struct sfu_hot hot;
	bool match;

	for (unsigned tries = 0; tries < SEQLOCK_MAX_RETRIES; tries++) {
		uint64_t seq = seqlock_read_begin(&s->seq);

		if (seq & 1)
			continue;
		seqlock_copy_out(&hot, s->hot, REGISTRY_FIND_WORDS);
		match = hot.in_use && hot.address_hash == h;
		if (match) {
			seqlock_copy_out(buf, s->cold, nwords);
			match = memcmp(buf, address, len + 1) == 0;
		}
		if (seqlock_read_valid(&s->seq, seq))
			return match;
	}
	return false;
}

int registry_find(const struct registry *r, const char *address)
{
	size_t len = strnlen(address, CONFIG_ADDRESS_MAX);
	uint32_t end = registry_scan_end(r);
	uint64_t h;

	if (len == 0 || len >= CONFIG_ADDRESS_MAX)
		return -ENOENT;
	h = registry_hash(address);
	for (uint32_t i = 0; i < end; i++) {
		if (registry_slot_matches(&r->slots[i], address, len, h))
			return (int)i;
	}
	return -ENOENT;
}

int registry_read(const struct registry *r, uint32_t i, struct sfu_record *out)
{
	const struct registry_slot *s;

	if (i >= r->capacity)
		return -ENOENT;
	s = &r->slots[i];
	for (unsigned tries = 0; tries < SEQLOCK_MAX_RETRIES; tries++) {
		uint64_t seq = seqlock_read_begin(&s->seq);

		if (seq & 1)
			continue;
		seqlock_copy_out(&out->hot, s->hot, SFU_HOT_WORDS);
		seqlock_copy_out(&out->cold, s->cold, SFU_COLD_WORDS);
		if (!seqlock_read_valid(&s->seq, seq))
			continue;
		if (!out->hot.in_use)
			return -ENOENT;
		/* Writers keep these sane; clamping anyway costs nothing and
		 * keeps a reader safe from any shared-memory scribble. */
		out->cold.address[sizeof(out->cold.address) - 1] = '\0';
		out->cold.region[sizeof(out->cold.region) - 1] = '\0';
		if (out->cold.key_len > sizeof(out->cold.key))
			out->cold.key_len = sizeof(out->cold.key);
		return 0;
	}
	return -EAGAIN;
}

int registry_read_hot(const struct registry *r, uint32_t i, struct sfu_hot *out)
{
	int err;

	if (i >= r->capacity)
		return -ENOENT;
	err = seqlock_read(&r->slots[i].seq, r->slots[i].hot, SFU_HOT_WORDS, out);
	if (err)
		return err;
	return out->in_use ? 0 : -ENOENT;
}

int registry_update_load(struct registry *r, uint32_t i, uint64_t gen,
			 const struct sfu_hot *load, bool reset_assigned, uint64_t hb_seq)
{
	struct sfu_record cur;
	int err;

	if (i >= r->capacity)
		return -ENOENT;
	err = registry_lock(r, NULL);
	if (err)
		return err;
	registry_load_locked(r, i, &cur);
	if (!cur.hot.in_use || cur.hot.generation != gen) {
		registry_unlock(r);
		return -ENOENT;
	}
	if (hb_seq != 0 && hb_seq <= cur.cold.hb_seq) {
		registry_unlock(r);
		return -ESTALE;
	}
	if (hb_seq != 0)
		cur.cold.hb_seq = hb_seq;
	/* Only the load fields move; address, key, region and source stay what
	 * the writer that owns them (config or the SFU's own registration) set. */
	cur.hot.has_load = load->has_load;
	cur.hot.reported_by = load->reported_by;
	cur.hot.sessions = load->sessions;
	cur.hot.channels = load->channels;
	if (load->max_sessions != 0)
		cur.hot.max_sessions = load->max_sessions;
	cur.hot.cpu = load->cpu;
	cur.hot.memory = load->memory;
	cur.hot.last_report_ms = load->last_report_ms;
	registry_store_locked(r, i, &cur);
	if (reset_assigned)
		atomic_store(&r->slots[i].assigned, 0);
	registry_bump_epoch(r);
	registry_unlock(r);
	return 0;
}

/* ---- the whole set: views, precedence and batches ---- */

int registry_view_begin(const struct registry *r, uint64_t *seq)
{
	int64_t deadline = 0;

	for (unsigned spins = 0;; spins++) {
		uint64_t s = atomic_load_explicit(&r->batch_seq, memory_order_acquire);

		if ((s & 1) == 0) {
			*seq = s;
			return 0;
		}
		/* A live batch ends within microseconds: spin a little, then give
		 * the writer the CPU (it may share ours), up to the bound. */
		if (spins < 256)
			continue;
		if (deadline == 0)
			deadline = clock_us() + REGISTRY_VIEW_WAIT_US;
		else if (clock_us() > deadline)
			return -EAGAIN;
		sched_yield();
	}
}

bool registry_view_valid(const struct registry *r, uint64_t seq)
{
	return seqlock_read_valid(&r->batch_seq, seq);
}

uint64_t registry_batch_seq(const struct registry *r)
{
	return atomic_load_explicit(&r->batch_seq, memory_order_acquire);
}

enum registry_right registry_right(enum sfu_source holder, enum sfu_source writer)
{
	/* Config wins over everything; a source owns what it holds; nobody
	 * holds a free slot. */
	if (holder == SFU_SOURCE_NONE || holder == writer || writer == SFU_SOURCE_STATIC)
		return REGISTRY_RIGHT_ALL;
	switch (writer) {
	case SFU_SOURCE_REGISTRY:
		/* The list takes over a self-registered SFU, never a static one. */
		return holder == SFU_SOURCE_STATIC ? REGISTRY_RIGHT_NONE : REGISTRY_RIGHT_ALL;
	case SFU_SOURCE_REGISTERED:
		/* An SFU's heartbeats are the freshest word on its load, but its
		 * membership, key and region belong to whoever listed it. */
		return REGISTRY_RIGHT_LOAD;
	default:
		return REGISTRY_RIGHT_NONE;
	}
}

bool registry_may_remove(enum sfu_source holder, enum sfu_source remover)
{
	return holder == remover;
}

/*
 * The batch writer's plan: an open-addressing index of the slots in use (and
 * of the additions planned so far) by address hash, so that finding where
 * each listed SFU goes costs O(1) instead of a scan of the registry.
 */
struct registry_index {
	uint64_t *hash;
	int64_t *ref; /* slot i as i, planned addition of recs[k] as -(k + 1); 0 hash = empty */
	size_t mask;
};

static int registry_index_init(struct registry_index *x, size_t n)
{
	size_t size = 16;

	while (size < 2 * n + 2)
		size *= 2;
	x->hash = calloc(size, sizeof(*x->hash));
	x->ref = calloc(size, sizeof(*x->ref));
	x->mask = size - 1;
	return x->hash != NULL && x->ref != NULL ? 0 : -ENOMEM;
}

static void registry_index_free(struct registry_index *x)
{
	free(x->hash);
	free(x->ref);
}

/* The entry holding address (hash h): its position, or where it would go. */
static size_t registry_index_find(const struct registry *r, const struct registry_index *x,
				  const struct sfu_record *recs, const char *address, uint64_t h,
				  bool *found)
{
	size_t pos = h & x->mask;

	for (;; pos = (pos + 1) & x->mask) {
		char buf[CONFIG_ADDRESS_MAX] __attribute__((aligned(8)));
		const char *other;

		if (x->hash[pos] == 0) {
			*found = false;
			return pos;
		}
		if (x->hash[pos] != h)
			continue;
		if (x->ref[pos] >= 0) {
			seqlock_copy_out(buf, r->slots[x->ref[pos]].cold, CONFIG_ADDRESS_MAX / 8);
			buf[sizeof(buf) - 1] = '\0';
			other = buf;
		} else {
			other = recs[-x->ref[pos] - 1].cold.address;
		}
		if (strcmp(other, address) == 0) {
			*found = true;
			return pos;
		}
	}
}

enum registry_step { STEP_ADD, STEP_UPDATE, STEP_SAME, STEP_IGNORE };

/* What the list makes of slot cur's record (next), for an SFU the list may set. */
static void registry_next_record(const struct sfu_record *cur, const struct sfu_record *in,
				 int64_t now_ms, uint32_t heartbeat_fresh_ms, struct sfu_record *next,
				 bool *load_from_list)
{
	bool fresh_heartbeat = SFU_REPORTER_IS_HEARTBEAT(cur->hot.reported_by) &&
			       now_ms - cur->hot.last_report_ms <= (int64_t)heartbeat_fresh_ms;

	*next = *cur;
	next->hot.source = SFU_SOURCE_REGISTRY;
	next->hot.max_sessions = in->hot.max_sessions;
	memcpy(next->cold.region, in->cold.region, sizeof(next->cold.region));
	memcpy(next->cold.key, in->cold.key, sizeof(next->cold.key));
	next->cold.key_len = in->cold.key_len;
	next->hot.region_hash = in->hot.region_hash;
	next->hot.region_id = in->hot.region_id;
	*load_from_list = false;
	if (in->hot.has_load && !fresh_heartbeat) {
		next->hot.has_load = 1;
		next->hot.reported_by = SFU_REPORTER_REGISTRY;
		next->hot.sessions = in->hot.sessions;
		next->hot.channels = in->hot.channels;
		next->hot.cpu = in->hot.cpu;
		next->hot.memory = in->hot.memory;
		/* Unchanged figures keep their time, so the slot is not rewritten
		 * and the age says how long they have held. */
		if (cur->hot.reported_by != SFU_REPORTER_REGISTRY || !cur->hot.has_load ||
		    cur->hot.sessions != in->hot.sessions ||
		    cur->hot.channels != in->hot.channels || cur->hot.cpu != in->hot.cpu ||
		    cur->hot.memory != in->hot.memory) {
			next->hot.last_report_ms = now_ms;
			*load_from_list = true;
		}
	} else if (!in->hot.has_load && cur->hot.reported_by == SFU_REPORTER_REGISTRY) {
		/* The list stopped giving load: figures nobody refreshes any more
		 * must not steer selection (probes take over). */
		next->hot.has_load = 0;
		next->hot.reported_by = SFU_REPORTER_NONE;
		next->hot.sessions = next->hot.channels = 0;
		next->hot.cpu = next->hot.memory = 0.0;
	}
}

/* The list's record as a slot would hold it (hashes, region id, clean key). */
static int registry_prepare(const struct sfu_record *in, int64_t now_ms, struct sfu_record *out)
{
	if (!registry_record_valid(in))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	memcpy(&out->cold, &in->cold, sizeof(out->cold));
	memset(out->cold.key + out->cold.key_len, 0, sizeof(out->cold.key) - out->cold.key_len);
	out->hot.in_use = 1;
	out->hot.source = SFU_SOURCE_REGISTRY;
	out->hot.address_hash = registry_hash(out->cold.address);
	out->hot.region_hash = out->cold.region[0] ? registry_hash(out->cold.region) : 0;
	out->hot.region_id = (uint8_t)region_lookup(out->cold.region, strlen(out->cold.region));
	out->hot.max_sessions = in->hot.max_sessions;
	out->hot.last_report_ms = now_ms;
	if (in->hot.has_load) {
		out->hot.has_load = 1;
		out->hot.reported_by = SFU_REPORTER_REGISTRY;
		out->hot.sessions = in->hot.sessions;
		out->hot.channels = in->hot.channels;
		out->hot.cpu = in->hot.cpu;
		out->hot.memory = in->hot.memory;
	}
	return 0;
}

/* Everything the batch needs, decided under the lock before the batch opens. */
#define REGISTRY_PLAN_RESET_ASSIGNED 1 /* the list's load replaces our estimate */
#define REGISTRY_PLAN_NEW_KEY 2 /* the key changes: not checked against the SFU yet */
struct registry_plan {
	struct sfu_record *next; /* per listed SFU: the record to write */
	uint8_t *step; /* per listed SFU: enum registry_step */
	uint8_t *flags; /* per listed SFU: REGISTRY_PLAN_* */
	int32_t *slot; /* per listed SFU: its slot (additions: -1 until placed) */
	uint8_t *kept; /* per slot below high_water: listed again */
	uint32_t *free_slots; /* free slots below high_water, then the removed ones */
	uint32_t n_free;
	uint32_t changes; /* slots the batch writes: nothing to do when 0 */
};

static void registry_plan_free(struct registry_plan *p, size_t n)
{
	if (p->next != NULL)
		explicit_bzero(p->next, (n ? n : 1) * sizeof(*p->next)); /* keys */
	free(p->next);
	free(p->step);
	free(p->flags);
	free(p->slot);
	free(p->kept);
	free(p->free_slots);
}

static int registry_plan_locked(struct registry *r, const struct sfu_record *recs, size_t n,
				int64_t now_ms, uint32_t heartbeat_fresh_ms,
				struct registry_plan *p)
{
	uint32_t hw = registry_scan_end(r), adds = 0, removals = 0;
	struct registry_index x = { NULL, NULL, 0 };
	int rc;

	p->next = calloc(n ? n : 1, sizeof(*p->next));
	p->step = calloc(n ? n : 1, 1);
	p->flags = calloc(n ? n : 1, 1);
	p->slot = calloc(n ? n : 1, sizeof(*p->slot));
	p->kept = calloc(hw ? hw : 1, 1);
	p->free_slots = calloc((size_t)hw + 1, sizeof(*p->free_slots));
	rc = registry_index_init(&x, (size_t)hw + n);
	if (p->next == NULL || p->step == NULL || p->flags == NULL || p->slot == NULL ||
	    p->kept == NULL || p->free_slots == NULL || rc != 0) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < hw; i++) {
		struct sfu_hot h;
		bool found;
		size_t pos;

		seqlock_copy_out(&h, r->slots[i].hot, SFU_HOT_WORDS);
		if (!h.in_use) {
			p->free_slots[p->n_free++] = i;
			continue;
		}
		{
			char buf[CONFIG_ADDRESS_MAX] __attribute__((aligned(8)));

			seqlock_copy_out(buf, r->slots[i].cold, CONFIG_ADDRESS_MAX / 8);
			buf[sizeof(buf) - 1] = '\0';
			pos = registry_index_find(r, &x, recs, buf, h.address_hash, &found);
		}
		if (!found) {
			x.hash[pos] = h.address_hash;
			x.ref[pos] = i;
		}
	}
	for (size_t k = 0; k < n; k++) {
		struct sfu_record cur;
		bool found, load;
		size_t pos;

		rc = registry_prepare(&recs[k], now_ms, &p->next[k]);
		if (rc != 0)
			goto out;
		pos = registry_index_find(r, &x, recs, p->next[k].cold.address,
					  p->next[k].hot.address_hash, &found);
		p->slot[k] = -1;
		if (!found) {
			/* A listed SFU that had left carries on the seq it left behind. */
			p->next[k].cold.hb_seq = registry_tomb_seq_locked(r, p->next[k].cold.address);
			x.hash[pos] = p->next[k].hot.address_hash;
			x.ref[pos] = -(int64_t)k - 1;
			p->step[k] = STEP_ADD;
			adds++;
			continue;
		}
		if (x.ref[pos] < 0) { /* listed twice */
			rc = -EINVAL;
			goto out;
		}
		p->slot[k] = (int32_t)x.ref[pos];
		/* Marked even when ignored: a static SFU is not the list's to remove. */
		p->kept[x.ref[pos]] = 1;
		/* Entries that map to the same slot twice were caught above; mark
		 * the slot's entry as taken by this listing. */
		x.ref[pos] = -(int64_t)k - 1;
		registry_load_locked(r, (uint32_t)p->slot[k], &cur);
		if (registry_right(cur.hot.source, SFU_SOURCE_REGISTRY) != REGISTRY_RIGHT_ALL) {
			p->step[k] = STEP_IGNORE;
			continue;
		}
		{
			struct sfu_record listed = p->next[k];

			registry_next_record(&cur, &listed, now_ms, heartbeat_fresh_ms, &p->next[k],
					     &load);
			explicit_bzero(&listed, sizeof(listed));
		}
		/* The SFU's own heartbeats keep their sequence under the list. */
		p->next[k].cold.hb_seq = cur.cold.hb_seq;
		if (load)
			p->flags[k] |= REGISTRY_PLAN_RESET_ASSIGNED;
		if (cur.cold.key_len != p->next[k].cold.key_len ||
		    CRYPTO_memcmp(cur.cold.key, p->next[k].cold.key, sizeof(cur.cold.key)) != 0)
			p->flags[k] |= REGISTRY_PLAN_NEW_KEY;
		p->step[k] = memcmp(&cur, &p->next[k], sizeof(cur)) == 0 ? STEP_SAME : STEP_UPDATE;
		p->changes += p->step[k] == STEP_UPDATE;
		explicit_bzero(&cur, sizeof(cur));
	}
	for (uint32_t i = 0; i < hw; i++) {
		struct sfu_hot h;

		seqlock_copy_out(&h, r->slots[i].hot, SFU_HOT_WORDS);
		if (h.in_use && !p->kept[i] && registry_may_remove(h.source, SFU_SOURCE_REGISTRY))
			removals++;
	}
	/* All or nothing: additions go to free slots, removed ones, then new ones. */
	if ((uint64_t)adds > (uint64_t)p->n_free + removals + (r->capacity - hw)) {
		rc = -ENOSPC;
		goto out;
	}
	p->changes += adds + removals;
	rc = 0;
out:
	registry_index_free(&x);
	return rc;
}

/* The batch itself: only stores, in one odd window of batch_seq. */
static void registry_batch_locked(struct registry *r, size_t n, struct registry_plan *p,
				  struct registry_batch *out)
{
	uint32_t hw = registry_scan_end(r);
	uint64_t gen = atomic_load(&r->epoch);
	uint32_t next_free = 0;
	int64_t t0 = clock_us();

	seqlock_write_begin(&r->batch_seq);
	for (uint32_t i = 0; i < hw; i++) {
		static const struct sfu_record zero;
		struct sfu_hot h;

		if (p->kept[i])
			continue;
		seqlock_copy_out(&h, r->slots[i].hot, SFU_HOT_WORDS);
		if (!h.in_use || !registry_may_remove(h.source, SFU_SOURCE_REGISTRY))
			continue;
		registry_tomb_slot_locked(r, i);
		registry_store_locked(r, i, &zero);
		atomic_fetch_sub(&r->count, 1);
		p->free_slots[p->n_free++] = i;
		out->removed++;
	}
	for (size_t k = 0; k < n; k++) {
		struct registry_slot *s;
		uint32_t i;

		switch (p->step[k]) {
		case STEP_IGNORE:
			out->ignored++;
			continue;
		case STEP_SAME:
			out->unchanged++;
			continue;
		case STEP_UPDATE:
			i = (uint32_t)p->slot[k];
			s = &r->slots[i];
			registry_store_locked(r, i, &p->next[k]);
			if (p->flags[k] & REGISTRY_PLAN_NEW_KEY)
				atomic_store(&s->key_check, SFU_KEY_UNCHECKED);
			if (p->flags[k] & REGISTRY_PLAN_RESET_ASSIGNED)
				atomic_store(&s->assigned, 0);
			out->updated++;
			continue;
		case STEP_ADD:
			break;
		}
		if (next_free < p->n_free) {
			i = p->free_slots[next_free++];
		} else {
			i = registry_scan_end(r);
			/* Raised before the slot is written, as registry_take_free_locked does. */
			atomic_store_explicit(&r->high_water, i + 1, memory_order_release);
		}
		/* epoch only grows, so these were never any slot's generation. */
		p->next[k].hot.generation = ++gen;
		registry_reset_counters(&r->slots[i]);
		registry_store_locked(r, i, &p->next[k]);
		atomic_fetch_add(&r->count, 1);
		out->added++;
	}
	/* One epoch step past every generation handed out, before the batch
	 * closes: a reader that sees the batch closed sees the new epoch too. */
	atomic_store_explicit(&r->epoch, gen + 1, memory_order_release);
	seqlock_write_end(&r->batch_seq);
	out->window_us = (uint32_t)(clock_us() - t0);
}

int registry_apply_source(struct registry *r, const struct sfu_record *recs, size_t n,
			  int64_t now_ms, uint32_t heartbeat_fresh_ms, uint8_t *ignored,
			  struct registry_batch *out)
{
	struct registry_plan p;
	struct registry_batch st;
	int rc;

	memset(&p, 0, sizeof(p));
	memset(&st, 0, sizeof(st));
	rc = registry_lock(r, NULL);
	if (rc != 0)
		return rc;
	rc = registry_plan_locked(r, recs, n, now_ms, heartbeat_fresh_ms, &p);
	if (rc == 0 && p.changes == 0) {
		/* Nothing moves: no batch, so no reader retries or rebuilds. */
		for (size_t k = 0; k < n; k++) {
			st.ignored += p.step[k] == STEP_IGNORE;
			st.unchanged += p.step[k] == STEP_SAME;
		}
	} else if (rc == 0) {
		registry_batch_locked(r, n, &p, &st);
	}
	if (rc == 0 && ignored != NULL)
		for (size_t k = 0; k < n; k++)
			ignored[k] = p.step[k] == STEP_IGNORE;
	registry_unlock(r);
	registry_plan_free(&p, n);
	if (out != NULL)
		*out = st;
	return rc;
}
