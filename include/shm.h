/* Shared memory: the POSIX segment holding the registry, the live config and shared counters. */
#ifndef SFU_SHM_H
#define SFU_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "affinity.h"
#include "budget.h"
#include "config.h"
#include "metrics.h"
#include "registry.h"
#include "seqlock.h"

#define SHM_MAGIC 0x31555346574753ULL /* "SGWFSU1" */
#define SHM_LAYOUT_VERSION 1
#define SHM_NAME_MAX 64

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
 *  master_pid: master at creation; a new master reads it to tell a stale
 *              segment (dead pid) from a running instance.
 *  n_workers:  master, at start and when a reload resizes the set; health
 *              and metrics read it.
 *  started_ms: master (CLOCK_REALTIME ms); health reads it.
 *  budget:     the retry budget; every worker earns and spends (see budget.h).
 *  live:       see struct shm_live.
 *  metrics:    see metrics.h (each process writes its own block).
 *  affinity:   see affinity.h (every worker reads and writes it).
 *  registry:   see registry.h. Must stay last (flexible slot array).
 */
struct shm_layout {
	uint64_t magic;
	uint32_t layout_version;
	uint32_t capacity;
	uint64_t size;
	_Atomic int32_t master_pid;
	_Atomic uint32_t n_workers; /* master: size of the active worker set */
	int64_t started_ms;
	struct budget budget;
	struct shm_live live;
	struct metrics metrics;
	struct affinity_table affinity;
	struct registry registry;
};

struct shm_segment {
	struct shm_layout *layout;
	size_t size;
	char name[SHM_NAME_MAX];
	int owner; /* 1 in the master that created it (unlinks on destroy) */
	int fd; /* kept open: its flock() says "an instance runs" (children inherit it) */
};

/* The segment name for an instance: "/sfu-gateway.<uid>.<port>". */
void shm_name_for(char *out, size_t outlen, uint16_t port);

/*
 * Master: creates the segment with O_CREAT|O_EXCL and mode 0600 and holds an
 * exclusive flock() on it for the life of the instance (its children inherit
 * the lock, so it is free only once every process of the instance is gone).
 * If the name exists and nobody holds its lock (a crashed run), it is
 * unlinked and created again; if the lock is held, -EADDRINUSE. A pid check
 * would be fooled by a zombie or a reused pid; the lock cannot be. Sizes it for capacity
 * registry slots, initialises the registry and maps it shared.
 */
int shm_create(struct shm_segment *seg, const char *name, uint32_t capacity);
/* Unmaps; the owner also unlinks the name. */
void shm_destroy(struct shm_segment *seg);

/* Master: publishes tunables to every process. */
void shm_live_publish(struct shm_layout *l, const struct config_tunables *t);
/* Reader: copies the tunables when the version differs from *version (pass 0
 * the first time). Returns 1 when copied, 0 when unchanged, -EAGAIN when torn
 * too often (keep the old copy). */
int shm_live_refresh(const struct shm_layout *l, struct config_tunables *t, uint64_t *version);

#endif
