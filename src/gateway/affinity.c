/* Issuer affinity: which SFU served a (client address, iss) pair, shared by all workers with a TTL. */
#include "affinity.h"

#include <errno.h>
#include <string.h>

#define AFFINITY_WORDS 4 /* key, slot, generation, expires_ms */

struct affinity_copy {
	uint64_t key, slot, generation, expires_ms;
};

uint64_t affinity_key(const char *client, size_t client_len, const char *iss, size_t iss_len)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < client_len; i++)
		h = (h ^ (uint8_t)client[i]) * 1099511628211ULL;
	/* A separator no address contains, so ("a","bc") and ("ab","c") differ. */
	h = (h ^ 0xffu) * 1099511628211ULL;
	for (size_t i = 0; i < iss_len; i++)
		h = (h ^ (uint8_t)iss[i]) * 1099511628211ULL;
	return h != 0 ? h : 1;
}

/* Bounded seqlock read of one entry; false when it stayed torn or held. */
static bool affinity_read(const struct affinity_entry *e, struct affinity_copy *out)
{
	return seqlock_read(&e->seq, &e->key, AFFINITY_WORDS, out) == 0;
}

/* The entry holding key, copied into *c; NULL when none could be read. */
static const struct affinity_entry *affinity_find(const struct affinity_table *t, uint64_t key,
						  struct affinity_copy *c)
{
	for (unsigned p = 0; p < AFFINITY_PROBE; p++) {
		const struct affinity_entry *e = &t->e[(key + p) & (AFFINITY_ENTRIES - 1)];

		/* Cheap pre-check on the key word alone before the full copy. */
		if (atomic_load_explicit(&e->key, memory_order_relaxed) != key)
			continue;
		if (affinity_read(e, c) && c->key == key)
			return e;
	}
	return NULL;
}

bool affinity_lookup(const struct affinity_table *t, uint64_t key, int64_t now_ms, uint32_t *slot,
		     uint64_t *generation)
{
	struct affinity_copy c;

	if (affinity_find(t, key, &c) == NULL || (int64_t)c.expires_ms <= now_ms)
		return false;
	*slot = (uint32_t)c.slot;
	*generation = c.generation;
	return true;
}

/* Claims an entry for writing: even -> odd by CAS, so concurrent writers
 * never interleave their stores. False when another writer holds it. */
static bool affinity_claim(struct affinity_entry *e, uint64_t *seq)
{
	uint64_t s = atomic_load_explicit(&e->seq, memory_order_relaxed);

	if (s & 1)
		return false;
	if (!atomic_compare_exchange_strong_explicit(&e->seq, &s, s + 1, memory_order_relaxed,
						     memory_order_relaxed))
		return false;
	/* As in seqlock_write_begin: the data stores must not pass the odd count. */
	atomic_thread_fence(memory_order_release);
	*seq = s;
	return true;
}

int affinity_record(struct affinity_table *t, uint64_t key, uint32_t slot, uint64_t generation,
		    int64_t now_ms, uint32_t ttl_ms)
{
	struct affinity_entry *target = NULL;
	int64_t oldest = INT64_MAX;
	struct affinity_copy c = { key, slot, generation, (uint64_t)(now_ms + ttl_ms) };
	uint64_t s;

	/* Prefer the entry holding this key, then an empty or expired one, then
	 * the one expiring first. */
	for (unsigned p = 0; p < AFFINITY_PROBE; p++) {
		struct affinity_entry *e = &t->e[(key + p) & (AFFINITY_ENTRIES - 1)];
		struct affinity_copy cur;

		if (!affinity_read(e, &cur))
			continue;
		if (cur.key == key) {
			target = e;
			break;
		}
		if (cur.key == 0 || (int64_t)cur.expires_ms <= now_ms) {
			if (oldest != INT64_MIN) {
				target = e;
				oldest = INT64_MIN;
			}
		} else if ((int64_t)cur.expires_ms < oldest) {
			target = e;
			oldest = (int64_t)cur.expires_ms;
		}
	}
	if (target == NULL || !affinity_claim(target, &s))
		return -EBUSY;
	seqlock_copy_in(&target->key, &c, AFFINITY_WORDS);
	atomic_store_explicit(&target->seq, s + 2, memory_order_release);
	return 0;
}

bool affinity_pin(struct affinity_table *t, uint64_t key, uint32_t *slot, uint64_t *generation,
		  int64_t now_ms, uint32_t ttl_ms)
{
	/* A lost claim means another writer was in the entry this instant,
	 * maybe pinning the same key: look again before trying again. */
	for (int tries = 0; tries < 4; tries++) {
		uint32_t s;
		uint64_t g;

		if (affinity_lookup(t, key, now_ms, &s, &g)) {
			*slot = s;
			*generation = g;
			return true;
		}
		if (affinity_record(t, key, *slot, *generation, now_ms, ttl_ms) == 0)
			return false;
	}
	return false;
}

void affinity_forget(struct affinity_table *t, uint64_t key)
{
	struct affinity_copy cur;
	/* The table is the caller's to write: the entry found is one of its own. */
	struct affinity_entry *e = (struct affinity_entry *)affinity_find(t, key, &cur);
	uint64_t s;

	if (e == NULL || !affinity_claim(e, &s))
		return;
	/* Expired, not emptied: affinity_last still names its SFU. */
	cur.expires_ms = 0;
	seqlock_copy_in(&e->key, &cur, AFFINITY_WORDS);
	atomic_store_explicit(&e->seq, s + 2, memory_order_release);
}

bool affinity_last(const struct affinity_table *t, uint64_t key, uint32_t *slot,
		   uint64_t *generation)
{
	struct affinity_copy c;

	if (affinity_find(t, key, &c) == NULL)
		return false;
	*slot = (uint32_t)c.slot;
	*generation = c.generation;
	return true;
}
