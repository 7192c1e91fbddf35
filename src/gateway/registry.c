/* Registry: seqlocked SFU slots in shared memory, writers serialised by a robust mutex. */
#include "registry.h"

#include <errno.h>
#include <unistd.h>
#include <time.h>
#include <string.h>

#include "log.h"
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

size_t registry_size(uint32_t capacity)
{
	return sizeof(struct registry) + (size_t)capacity * sizeof(struct registry_slot);
}

int registry_init(struct registry *r, uint32_t capacity)
{
	pthread_mutexattr_t attr;
	int err;

	if (capacity == 0)
		return -EINVAL;
	err = pthread_mutexattr_init(&attr);
	if (err)
		return -err;
	/* Shared: workers, reaper and master all lock it. Robust: a writer that
	 * dies holding it must not wedge every later writer (see registry_lock). */
	err = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	if (err == 0)
		err = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	if (err == 0)
		err = pthread_mutex_init(&r->write_lock, &attr);
	pthread_mutexattr_destroy(&attr);
	if (err)
		return -err;

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
	for (uint32_t i = 0; i < capacity; i++)
		atomic_store_explicit(&r->slots[i].seq, 0, memory_order_relaxed);
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

/* Frees slot i: a zeroed record (in_use 0) written in a proper section. */
static void registry_free_locked(struct registry *r, uint32_t i)
{
	static const struct sfu_record zero;

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
		registry_recount_locked(r);
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

static int registry_upsert_locked(struct registry *r, const struct sfu_record *rec,
				  bool reset_assigned, uint32_t *slot_out, bool *created)
{
	struct sfu_record cur, next = *rec;
	uint64_t epoch;
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
		i = registry_take_free_locked(r);
		if (i < 0)
			return i;
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
	err = registry_upsert_locked(r, rec, reset_assigned, slot_out, created);
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
		registry_free_locked(r, (uint32_t)i);
	registry_unlock(r);
	return i >= 0 ? 0 : -ENOENT;
}

int registry_remove_slot(struct registry *r, uint32_t i, uint64_t gen)
{
	struct sfu_hot h;
	int err;

	if (i >= r->capacity)
		return -ENOENT;
	err = registry_lock(r, NULL);
	if (err)
		return err;
	seqlock_copy_out(&h, r->slots[i].hot, SFU_HOT_WORDS);
	if (h.in_use && h.generation == gen)
		registry_free_locked(r, i);
	else
		err = -ENOENT;
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
 * region, key and max_sessions, and become static. */
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
			log_info("registry: registered SFU %s is now static", c->address);
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
	return registry_upsert_locked(r, &rec, false, NULL, NULL);
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
			registry_free_locked(r, i);
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
			 const struct sfu_hot *load, bool reset_assigned)
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
