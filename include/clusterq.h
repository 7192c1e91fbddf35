/* Cluster queue: the heartbeats workers accepted, in shared memory on their way to etcd through the reaper. */
#ifndef SFU_CLUSTERQ_H
#define SFU_CLUSTERQ_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Entries the queue holds; a worker finding it full drops its entry (counted):
 * the SFU's next heartbeat carries the same news. 1,000 SFUs every 10 s are
 * 100 entries a second, which the reaper takes within milliseconds. */
#define CLUSTERQ_CAP 1024

enum clusterq_op { CLUSTERQ_PUT = 1, CLUSTERQ_DELETE = 2 };

/* One accepted heartbeat (PUT) or sign-off (DELETE). Plain data. */
struct clusterq_entry {
	uint32_t op; /* enum clusterq_op */
	uint32_t key_len;
	uint64_t seq; /* the heartbeat token's seq */
	int64_t at_ms; /* CLOCK_MONOTONIC ms when the worker accepted it */
	uint32_t sessions, channels, max_sessions, pad;
	double cpu, memory;
	char address[CONFIG_ADDRESS_MAX]; /* normalised, NUL-terminated */
	char region[CONFIG_REGION_MAX]; /* "" = none */
	uint8_t key[CONFIG_KEY_MAX]; /* the SFU's key (PUT) */
};

/*
 * In the shared segment: a bounded ring, many producers, one consumer.
 *  lock        process-shared robust mutex serialising producers (workers in
 *              the heartbeat handler); held for one entry copy, never across
 *              a system call. A producer that dies holding it has not moved
 *              tail yet: the next one (EOWNERDEAD) just marks it consistent
 *              and overwrites the half-written entry.
 *  tail        next entry to fill; written by producers under lock (release
 *              store after the entry is complete); read by the consumer.
 *  head        next entry to take; written by the consumer only (the reaper
 *              holding the reaper lease), read by producers to see room.
 *  pushed, dropped  counters producers add to; health and metrics read them.
 * The consumer wipes each entry it took (keys) before moving head past it.
 */
struct clusterq {
	pthread_mutex_t lock;
	_Atomic uint64_t tail;
	_Atomic uint64_t head;
	_Atomic uint64_t pushed;
	_Atomic uint64_t dropped;
	struct clusterq_entry e[CLUSTERQ_CAP];
};

/* Initialises a zeroed queue in shared memory. 0 or -errno. */
int clusterq_init(struct clusterq *q);
/* Producer: appends a copy of e and wakes the consumer. 0, -ENOSPC (full:
 * dropped and counted) or -EAGAIN (the lock cannot be had; counted too). */
int clusterq_push(struct clusterq *q, const struct clusterq_entry *e);
/* Consumer: takes up to max entries, oldest first, into out. Returns how many. */
size_t clusterq_pop(struct clusterq *q, struct clusterq_entry *out, size_t max);

/*
 * The consumer's wake-up: an eventfd the master opens before it forks, so its
 * workers and reaper inherit it (a binary upgrade's new master opens its own;
 * the reaper also drains the queue on its tick, so nothing waits long for a
 * wake-up that went to the other master's reaper). 0 or -errno.
 */
int clusterq_wake_open(void);
/* The descriptor to poll for readability, -1 when none. */
int clusterq_wake_fd(void);
/* Consumer: resets the descriptor after a wake-up. */
void clusterq_wake_clear(void);

#endif
