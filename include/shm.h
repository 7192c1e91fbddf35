/* Shared memory: the POSIX segment holding the registry, the live config and shared counters. */
#ifndef SFU_SHM_H
#define SFU_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "affinity.h"
#include "budget.h"
#include "clusterq.h"
#include "clusterstatus.h"
#include "lease.h"
#include "config.h"
#include "metrics.h"
#include "registry.h"
#include "regstatus.h"
#include "seqlock.h"

#define SHM_MAGIC 0x31555346574753ULL /* "SGWFSU1" */
/* Bump on any change of struct shm_layout or of what it contains: a binary
 * upgrade (upgrade.h) hands the segment to a new binary, which refuses a
 * version other than its own rather than misread it. tests/test_upgrade.c
 * holds a fingerprint of the layout and fails when it moves alone. magic,
 * layout_version, capacity and size stay the first fields in every version,
 * so that any version can read another's. */
#ifndef SHM_LAYOUT_VERSION /* the Makefile builds a test binary with another */
#define SHM_LAYOUT_VERSION 6
#endif

#define SHM_TUNABLE_WORDS (sizeof(struct config_tunables) / 8)
_Static_assert(sizeof(struct config_tunables) % 8 == 0, "tunables must be whole words");

/*
 * The live config. Writer: the master (start and reload). Readers: every
 * worker and the reaper, which copy it under the seqlock when version moved.
 */
struct shm_live {
	seqlock_word seq;
	_Atomic uint64_t version; /* bumped after each publish; readers compare */
	seqlock_word words[SHM_TUNABLE_WORDS];
};

/*
 * The segment. Field writers / readers:
 *  magic, layout_version, size, capacity: master at creation; all read.
 *  n_workers:  master, at start and when a reload resizes the set (after a
 *              binary upgrade, the new master); health and metrics read it.
 *  started_ms: master at creation (CLOCK_REALTIME ms); health reads it. A
 *              binary upgrade keeps it: the uptime is the segment's.
 *  budget:     the retry budget; every worker earns and spends (see budget.h).
 *  reaper_lease: which reaper sweeps, probes and polls (lease.h). While a
 *              binary upgrade runs two masters, each has a reaper and only
 *              the holder works. Reapers take, renew and release it; a master
 *              releases it for a reaper of its own that died.
 *  live:       see struct shm_live.
 *  metrics:    see metrics.h (each process writes its own block).
 *  affinity:   see affinity.h (every worker reads and writes it).
 *  regstatus:  the external registry source's state (see regstatus.h: the
 *              reaper writes, health and metrics read).
 *  clusterstatus: the etcd connection's state (see clusterstatus.h: the
 *              reaper writes; workers, health and metrics read).
 *  clusterq:   heartbeats on their way to etcd (see clusterq.h: workers
 *              push, the reaper pops).
 *  registry:   see registry.h. Must stay last (flexible slot array).
 */
struct shm_layout {
	uint64_t magic;
	uint32_t layout_version;
	uint32_t capacity;
	uint64_t size;
	_Atomic uint32_t n_workers; /* master: size of the active worker set */
	uint32_t pad;
	int64_t started_ms;
	struct budget budget;
	struct lease reaper_lease;
	struct shm_live live;
	struct metrics metrics;
	struct affinity_table affinity;
	struct regstatus regstatus;
	struct clusterstatus clusterstatus;
	struct clusterq clusterq;
	struct registry registry;
};

struct shm_segment {
	struct shm_layout *layout;
	size_t size;
	/* The segment's only handle besides the mappings: the master keeps it so
	 * that the segment can be handed on by descriptor; children close it. */
	int fd;
};

/*
 * Master: creates the segment under a random name with O_CREAT|O_EXCL and
 * mode 0600 and removes the name at once (shm_unlink), before anything is
 * written: children inherit the mapping through fork(), nothing in /dev/shm
 * ever shows the registry (which holds every SFU key), and nothing is left
 * behind whatever ends the processes, kill -9 included. Whether an instance
 * already runs is the instance lock's business (instance.h). Sizes the
 * segment for capacity registry slots, initialises the registry and maps it
 * shared. 0 or -errno.
 */
int shm_create(struct shm_segment *seg, uint32_t capacity);
/*
 * New master of a binary upgrade: maps the segment the old master handed on
 * as descriptor fd (upgrade.h), after checking that it is one: a regular
 * shared-memory file with SHM_MAGIC, this binary's SHM_LAYOUT_VERSION, and
 * the size its capacity implies. Nothing is written. Returns 0; or -EPROTO
 * (another layout version), -EINVAL (not a segment of ours, or a size that
 * does not match) or -errno, with the reason in err.
 */
int shm_adopt(struct shm_segment *seg, int fd, char *err, size_t errlen);
/* Unmaps and closes the descriptor. */
void shm_destroy(struct shm_segment *seg);

/* Master: publishes tunables to every process. */
void shm_live_publish(struct shm_layout *l, const struct config_tunables *t);
/* Reader: copies the tunables when the version differs from *version (pass 0
 * the first time). Returns 1 when copied, 0 when unchanged, -EAGAIN when torn
 * too often (keep the old copy). */
int shm_live_refresh(const struct shm_layout *l, struct config_tunables *t, uint64_t *version);

#endif
