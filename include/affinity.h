/* Issuer affinity: which SFU served a (client address, iss) pair, shared by all workers with a TTL. */
#ifndef SFU_AFFINITY_H
#define SFU_AFFINITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "seqlock.h"

#define AFFINITY_ENTRIES 65536 /* power of two */
#define AFFINITY_PROBE 4 /* entries examined per key (linear probing) */

/*
 * odoo/sfu makes a channel idempotent per (remote address, iss): when two
 * participants start the same call at once, they must land on the same SFU
 * or the call splits in two. Every worker reads and writes this table.
 *
 * Each entry is its own seqlock. Writers are not serialised by a lock: a
 * writer claims an entry by moving its sequence from even to odd with a
 * compare-and-swap, and simply skips the entry when another writer holds it
 * (affinity is a preference, never a correctness condition). Readers copy
 * the entry and retry while the sequence is odd or moved, bounded.
 * A writer killed inside its four stores leaves that entry odd: readers and
 * writers then skip it, which costs affinity for the keys probing there and
 * nothing else.
 */
struct affinity_entry {
	seqlock_word seq;
	seqlock_word key; /* affinity_key(); 0 = empty */
	seqlock_word slot; /* registry slot index */
	seqlock_word generation; /* registry generation of that slot when recorded */
	seqlock_word expires_ms; /* CLOCK_MONOTONIC ms */
};

struct affinity_table {
	struct affinity_entry e[AFFINITY_ENTRIES];
};

/* 64-bit hash of (client, iss), never 0. */
uint64_t affinity_key(const char *client, size_t client_len, const char *iss, size_t iss_len);
/* Looks the key up: true with slot and generation when a live entry exists. */
bool affinity_lookup(const struct affinity_table *t, uint64_t key, int64_t now_ms, uint32_t *slot,
		     uint64_t *generation);
/* Records (or refreshes) key -> slot/generation until now_ms + ttl_ms. Returns
 * 0, or -EBUSY when every candidate entry was being written by others. */
int affinity_record(struct affinity_table *t, uint64_t key, uint32_t slot, uint64_t generation,
		    int64_t now_ms, uint32_t ttl_ms);

/* Ends the entry of key now, if there is one (its claim in etcd is gone). */
void affinity_forget(struct affinity_table *t, uint64_t key);
/* The entry of key even when it expired (the SFU an issuer's calls went to
 * last): true with slot and generation while the entry is still there. */
bool affinity_last(const struct affinity_table *t, uint64_t key, uint32_t *slot,
		   uint64_t *generation);

/*
 * Pins key to slot/generation unless a live pin exists already: then that
 * one wins and is returned in *slot / *generation with true. Two workers
 * choosing for the same (client, iss) at the same instant thus agree on one
 * SFU: the entry claim is a compare-and-swap, and the loser reads the
 * winner's pin. Returns false when our pin was recorded (or none could be).
 */
bool affinity_pin(struct affinity_table *t, uint64_t key, uint32_t *slot, uint64_t *generation,
		  int64_t now_ms, uint32_t ttl_ms);

#endif
